//! The REST API of section 9. Every error is `{"error":{"code","message"}}` with a JSON content type.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{Path, State};
use axum::response::{IntoResponse, Response};
use axum::Json;
use http::{HeaderMap, StatusCode};
use serde_json::{json, Map, Value};

use crate::auth::{self, AuthError, Claims};
use crate::protocol::PROTOCOL;
use crate::state::{AppState, Outgoing};
use crate::store::Skill;

/// How long a broadcast waits for one socket's queue before counting it as not delivered.
const BROADCAST_SEND_TIMEOUT: Duration = Duration::from_secs(1);

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ApiError {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl ApiError {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
        ApiError {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn unauthorized(e: &AuthError) -> ApiError {
        ApiError::new(StatusCode::UNAUTHORIZED, e.code(), e.to_string())
    }

    fn invalid(message: impl Into<String>) -> ApiError {
        ApiError::new(StatusCode::BAD_REQUEST, "INVALID_MESSAGE", message)
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (
            self.status,
            Json(json!({"error": {"code": self.code, "message": self.message}})),
        )
            .into_response()
    }
}

type ApiResult = Result<Response, ApiError>;

fn authenticate(state: &AppState, headers: &HeaderMap) -> Result<Claims, ApiError> {
    let Some(value) = headers.get(http::header::AUTHORIZATION) else {
        return Err(ApiError::new(
            StatusCode::UNAUTHORIZED,
            "AUTH_INVALID",
            "missing 'Authorization: Bearer <token>' header",
        ));
    };
    let token = auth::strip_bearer(value.to_str().unwrap_or(""));
    state
        .tokens
        .verify(token)
        .map_err(|e| ApiError::unauthorized(&e))
}

/// The request body, or the JSON error for one that could not be read: over the body limit
/// (2 MiB, axum's default) it is 413 `PAYLOAD_TOO_LARGE`, not axum's plain-text answer.
fn read_body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, ApiError> {
    body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::new(
                StatusCode::PAYLOAD_TOO_LARGE,
                "PAYLOAD_TOO_LARGE",
                "the request body exceeds 2 MiB",
            )
        } else {
            ApiError::new(
                StatusCode::BAD_REQUEST,
                "INVALID_JSON",
                format!("the body could not be read: {e}"),
            )
        }
    })
}

/// A session id from the path; one that is not valid UTF-8 (`%FF`) names no session.
pub fn session_id(id: Result<Path<String>, PathRejection>) -> Result<String, ApiError> {
    match id {
        Ok(Path(id)) => Ok(id),
        Err(_) => Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "SESSION_NOT_FOUND",
            "no session has that id (it is not valid UTF-8)",
        )),
    }
}

/// Parses a JSON object body; an empty body is `None` when `optional`.
fn object_body(body: &Bytes, optional: bool) -> Result<Option<Map<String, Value>>, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return if optional {
            Ok(None)
        } else {
            Err(ApiError::new(
                StatusCode::BAD_REQUEST,
                "INVALID_JSON",
                "a JSON object body is required",
            ))
        };
    }
    match serde_json::from_slice::<Value>(body) {
        Ok(Value::Object(m)) => Ok(Some(m)),
        Ok(_) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_JSON",
            "the body must be a JSON object",
        )),
        Err(e) => Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "INVALID_JSON",
            format!("the body is not JSON: {e}"),
        )),
    }
}

fn only_fields(m: &Map<String, Value>, allowed: &[&str]) -> Result<(), ApiError> {
    match m.keys().find(|k| !allowed.contains(&k.as_str())) {
        Some(k) => Err(ApiError::invalid(format!(
            "unknown field '{k}' (allowed: {})",
            allowed.join(", ")
        ))),
        None => Ok(()),
    }
}

fn opt_string(m: &Map<String, Value>, name: &str) -> Result<Option<String>, ApiError> {
    match m.get(name) {
        None => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.clone())),
        Some(_) => Err(ApiError::invalid(format!("'{name}' must be a string"))),
    }
}

fn string(m: &Map<String, Value>, name: &str) -> Result<String, ApiError> {
    opt_string(m, name)?
        .ok_or_else(|| ApiError::invalid(format!("the string field '{name}' is required")))
}

/// `POST /api/v1/sessions`
pub async fn create_session(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let claims = authenticate(&state, &headers)?;
    let body = read_body(body)?;
    let title = match object_body(&body, true)? {
        None => None,
        Some(m) => {
            only_fields(&m, &["title"])?;
            opt_string(&m, "title")?
        }
    };
    let user = claims.sub.clone();
    let session = state
        .with_store(move |s| s.create_session(&user, title))
        .await
        .map_err(|e| {
            tracing::error!("cannot create session: {e}");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL_ERROR",
                "cannot save the session",
            )
        })?;
    let body = json!({"session_id": session.session_id, "user_id": session.user_id, "created_at": session.created_at});
    Ok((StatusCode::CREATED, Json(body)).into_response())
}

/// `GET /api/v1/sessions/{id}`
pub async fn get_session(
    State(state): State<Arc<AppState>>,
    id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
) -> ApiResult {
    let claims = authenticate(&state, &headers)?;
    let id = session_id(id)?;
    let Some(s) = state.store.session(&id) else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "SESSION_NOT_FOUND",
            format!("no session '{id}'"),
        ));
    };
    if s.user_id != claims.sub {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "SESSION_FORBIDDEN",
            format!("session '{id}' belongs to another user"),
        ));
    }
    Ok(Json(json!({
        "session_id": s.session_id,
        "user_id": s.user_id,
        "created_at": s.created_at,
        "title": s.title,
        "history": s.history,
    }))
    .into_response())
}

/// `POST /api/v1/skills`
pub async fn create_skill(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    authenticate(&state, &headers)?;
    let body = read_body(body)?;
    let m = object_body(&body, false)?.unwrap_or_default();
    only_fields(&m, &["name", "keywords", "description"])?;
    let name = string(&m, "name")?;
    if name.trim().is_empty() {
        return Err(ApiError::invalid("'name' must not be empty"));
    }
    let keywords = match m.get("keywords") {
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|k| match k {
                Value::String(s) if !s.trim().is_empty() => Ok(s.clone()),
                _ => Err(ApiError::invalid(
                    "every keyword must be a non-empty string",
                )),
            })
            .collect::<Result<Vec<_>, _>>()?,
        _ => {
            return Err(ApiError::invalid(
                "'keywords' must be an array of at least one string",
            ))
        }
    };
    let description = opt_string(&m, "description")?;
    let skill = Skill {
        name: name.clone(),
        keywords: keywords.clone(),
        description,
    };
    state
        .with_store(move |s| s.add_skill(skill))
        .await
        .map_err(|e| {
            tracing::error!("cannot save skill: {e}");
            ApiError::new(
                StatusCode::INTERNAL_SERVER_ERROR,
                "INTERNAL_ERROR",
                "cannot save the skill",
            )
        })?;
    Ok((
        StatusCode::CREATED,
        Json(json!({"name": name, "keywords": keywords})),
    )
        .into_response())
}

/// `GET /api/v1/status`
pub async fn status(State(state): State<Arc<AppState>>) -> Json<Value> {
    Json(json!({
        "protocol": PROTOCOL,
        "active_connections": *state.active_connections.borrow(),
        "sessions": state.store.session_count(),
        "turns_in_flight": state.turns_in_flight.load(std::sync::atomic::Ordering::Relaxed),
        "uptime_seconds": state.started.elapsed().as_secs(),
    }))
}

/// `POST /api/v1/admin/broadcast`
pub async fn broadcast(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    let claims = authenticate(&state, &headers)?;
    if !claims.is_admin() {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "ADMIN_REQUIRED",
            "this endpoint needs an admin token",
        ));
    }
    let body = read_body(body)?;
    let m = object_body(&body, false)?.unwrap_or_default();
    only_fields(&m, &["content"])?;
    let content = string(&m, "content")?;
    let ev = Outgoing::event(&json!({"type": "broadcast", "content": content, "from": claims.sub}));
    let sends = state.sockets().into_iter().map(|tx| {
        let ev = ev.clone();
        async move {
            matches!(
                tokio::time::timeout(BROADCAST_SEND_TIMEOUT, tx.send(ev)).await,
                Ok(Ok(()))
            )
        }
    });
    let delivered = futures_util::future::join_all(sends)
        .await
        .into_iter()
        .filter(|ok| *ok)
        .count();
    Ok(Json(json!({"delivered": delivered})).into_response())
}

/// `GET /healthz`
pub async fn healthz() -> Json<Value> {
    Json(json!({"status": "ok"}))
}

/// `POST /api/v1/dev/token` (only with `dev`)
pub async fn dev_token(
    State(state): State<Arc<AppState>>,
    body: Result<Bytes, BytesRejection>,
) -> ApiResult {
    if !state.config.dev {
        return Err(not_found_error());
    }
    let body = read_body(body)?;
    let m = object_body(&body, false)?.unwrap_or_default();
    only_fields(&m, &["user_id", "admin", "ttl_seconds"])?;
    let user = string(&m, "user_id")?;
    if user.is_empty() || user.chars().count() > 128 {
        return Err(ApiError::invalid("'user_id' must be 1 to 128 characters"));
    }
    let admin = match m.get("admin") {
        None => false,
        Some(Value::Bool(b)) => *b,
        Some(_) => return Err(ApiError::invalid("'admin' must be a boolean")),
    };
    // JSON Schema's `integer`: any number without a fractional part (`60`, `60.0`, `6e1`).
    let ttl = match m.get("ttl_seconds") {
        None => 3600,
        Some(v) => match (v.as_u64(), v.as_f64()) {
            (Some(n), _) if n > 0 => n,
            (None, Some(f)) if f.is_finite() && f.fract() == 0.0 && f >= 1.0 => f as u64,
            _ => {
                return Err(ApiError::invalid(
                    "'ttl_seconds' must be a positive integer",
                ))
            }
        },
    };
    let token = auth::mint_token(
        &state.config.jwt_secret,
        &user,
        admin,
        Duration::from_secs(ttl),
    );
    Ok(Json(json!({"token": token})).into_response())
}

fn not_found_error() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "NOT_FOUND", "no such endpoint")
}

pub async fn not_found() -> ApiError {
    not_found_error()
}

pub async fn method_not_allowed() -> ApiError {
    ApiError::new(
        StatusCode::METHOD_NOT_ALLOWED,
        "METHOD_NOT_ALLOWED",
        "this method is not allowed here",
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_parsing_distinguishes_json_and_shape_errors() {
        assert_eq!(object_body(&Bytes::from_static(b"  "), true).unwrap(), None);
        assert_eq!(
            object_body(&Bytes::from_static(b""), false)
                .unwrap_err()
                .code,
            "INVALID_JSON"
        );
        assert_eq!(
            object_body(&Bytes::from_static(b"[1]"), false)
                .unwrap_err()
                .code,
            "INVALID_JSON"
        );
        let m = object_body(&Bytes::from_static(br#"{"a":1}"#), false)
            .unwrap()
            .unwrap();
        assert_eq!(only_fields(&m, &["b"]).unwrap_err().code, "INVALID_MESSAGE");
        assert_eq!(string(&m, "a").unwrap_err().code, "INVALID_MESSAGE");
    }
}
