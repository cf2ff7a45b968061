//! The WebSocket endpoint: handshake checks (refusals before upgrading), then one task per socket.
//!
//! Per socket: a writer task owns the sink and drains an mpsc channel; the reader loop (this task)
//! handles every client frame, including `ping`, `cancel` and replies while a turn runs; each turn runs
//! as its own task (`turn.rs`) and sends into the same channel.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use futures_util::stream::{SplitSink, SplitStream};
use futures_util::{SinkExt, StreamExt};
use http::{HeaderMap, StatusCode};
use serde_json::{json, Value};
use tokio::sync::{mpsc, watch, Notify};
use tokio::task::JoinHandle;
use tokio::time::{sleep_until, Instant};

use crate::auth::{self, strip_bearer, AuthError, Claims};
use crate::fault::{self, Fault};
use crate::model;
use crate::protocol::{
    closing_event, error_event, parse_client_message, pong_event, pong_text, ClientMessage,
    PROTOCOL,
};
use crate::rest::ApiError;
use crate::state::{AppState, ConnGuard, Outgoing, UserSlot};
use crate::turn::{self, ActiveTurn, PendingSlot, Reply, ReplyKind, Stop, TurnCtx, TurnSlot};

/// Events queued per socket before a turn waits for the writer (back-pressure for long streams).
const CHANNEL_CAPACITY: usize = 64;
/// Bytes of frames tungstenite collects before it writes to the socket without a flush. The buffer
/// only grows as far as a socket's writes need it: an idle socket that got `connected` holds one
/// small frame's worth.
const WRITE_BUFFER_BYTES: usize = 16 * 1024;
/// After the server sends a close frame, how long it waits for the client's close.
const CLOSE_GRACE: Duration = Duration::from_secs(2);
/// How long a closing socket waits for its turn task to stop.
const TURN_STOP_GRACE: Duration = Duration::from_secs(2);

/// `GET /api/v1/chat/ws/{session_id}`.
pub async fn ws_handler(
    State(state): State<Arc<AppState>>,
    session_id: Result<Path<String>, PathRejection>,
    headers: HeaderMap,
    query: Result<Query<HashMap<String, String>>, QueryRejection>,
    ws: Result<WebSocketUpgrade, WebSocketUpgradeRejection>,
) -> Response {
    let ws = match ws {
        Ok(ws) => ws,
        Err(e) => {
            return ApiError::new(
                StatusCode::BAD_REQUEST,
                "BAD_REQUEST",
                format!("not a WebSocket upgrade: {e}"),
            )
            .into_response()
        }
    };
    let Ok(Query(query)) = query else {
        return ApiError::new(
            StatusCode::BAD_REQUEST,
            "BAD_REQUEST",
            "the query string is malformed",
        )
        .into_response();
    };
    // Cross-site WebSocket hijacking: a browser page of another origin opening a socket.
    let origin = headers
        .get(http::header::ORIGIN)
        .map(|o| o.to_str().unwrap_or("(not text)"));
    if !state.config.origin_allowed(origin) {
        return ApiError::new(
            StatusCode::FORBIDDEN,
            "ORIGIN_NOT_ALLOWED",
            format!(
                "origin '{}' may not open a WebSocket here",
                origin.unwrap_or_default()
            ),
        )
        .into_response();
    }
    let session_id = match crate::rest::session_id(session_id) {
        Ok(id) => id,
        Err(e) => return e.into_response(),
    };
    if state.is_shutting_down() {
        return ApiError::new(
            StatusCode::SERVICE_UNAVAILABLE,
            "SHUTTING_DOWN",
            "the server is shutting down",
        )
        .into_response();
    }
    let Some(owner) = state.store.session_owner(&session_id) else {
        return ApiError::new(
            StatusCode::NOT_FOUND,
            "SESSION_NOT_FOUND",
            format!("no session '{session_id}'"),
        )
        .into_response();
    };
    let fault = Fault::from_config(&state.config.fault);
    let handshake_user = match auth::token_from_request(&headers, &query) {
        None => None,
        Some(token) => {
            let claims = match state.tokens.verify(&token) {
                Ok(c) => c,
                Err(_) if fault == Some(Fault::AuthAcceptsBadToken) => owner_claims(&owner),
                Err(e) => return ApiError::unauthorized(&e).into_response(),
            };
            if claims.sub != owner && fault != Some(Fault::AcceptsOtherUsersSession) {
                return ApiError::new(
                    StatusCode::FORBIDDEN,
                    "SESSION_FORBIDDEN",
                    format!("session '{session_id}' belongs to another user"),
                )
                .into_response();
            }
            let Some(slot) = state.reserve_user_slot(&claims.sub) else {
                return ApiError::new(
                    StatusCode::TOO_MANY_REQUESTS,
                    "TOO_MANY_CONNECTIONS",
                    format!(
                        "user '{}' already holds {} open sockets",
                        claims.sub, state.config.max_connections_per_user
                    ),
                )
                .into_response();
            };
            Some((claims, slot))
        }
    };
    tracing::debug!(session = %session_id, handshake_auth = handshake_user.is_some(), "websocket upgrade");
    let limit = state.config.hard_max_message_bytes;
    ws.protocols([PROTOCOL])
        .max_message_size(limit)
        // A frame somewhat over the hard limit is still read in full (then refused as a message with
        // 1009): leaving its payload unread in the socket would turn our close into a TCP reset that
        // can destroy the close frame before the client reads it. Frames declaring more than 16x the
        // limit are refused at their header.
        .max_frame_size(limit.saturating_mul(16))
        // Idle sockets stay cheap: a small read buffer. Frames are collected up to
        // WRITE_BUFFER_BYTES and go out when the writer flushes (whenever its queue is momentarily
        // empty): with no buffer every frame of a token stream was a system call of its own.
        .read_buffer_size(4096)
        .write_buffer_size(WRITE_BUFFER_BYTES)
        .on_upgrade(move |socket| async move {
            let conn = Connection::new(state, session_id, owner, socket, handshake_user, fault);
            conn.run().await;
        })
}

/// Token bucket: `rate` per second, at most `burst` stored.
struct TokenBucket {
    rate: f64,
    burst: f64,
    tokens: f64,
    last: Instant,
}

impl TokenBucket {
    fn new(rate: u32, burst: u32) -> TokenBucket {
        TokenBucket {
            rate: rate as f64,
            burst: burst as f64,
            tokens: burst as f64,
            last: Instant::now(),
        }
    }

    fn take(&mut self, now: Instant) -> bool {
        let elapsed = now.saturating_duration_since(self.last).as_secs_f64();
        self.last = now;
        self.tokens = (self.tokens + elapsed * self.rate).min(self.burst);
        if self.tokens >= 1.0 {
            self.tokens -= 1.0;
            true
        } else {
            false
        }
    }
}

/// Claims that let anyone in as the session owner (`auth-accepts-bad-token`).
fn owner_claims(owner: &str) -> Claims {
    Claims {
        sub: owner.to_owned(),
        exp: 0,
        iat: None,
        nbf: None,
        admin: None,
    }
}

/// Resolves when the turn asks for the connection to be dropped (`tcp-reset`); never without it.
async fn severed(n: Option<&Notify>) {
    match n {
        Some(n) => n.notified().await,
        None => std::future::pending().await,
    }
}

/// Why the reader loop ended.
enum End {
    /// The client closed or the TCP connection ended: nothing more to send.
    ClientGone,
    /// `tcp-reset`: drop the connection now, without a close frame.
    Sever,
    /// The client broke the WebSocket protocol (RFC 6455 7.1.7, "fail the connection"): a close
    /// frame with this code, then the TCP end. No close is awaited: the stream is unusable.
    Fail { code: u16, text: &'static str },
    /// The server closes: optionally a `closing` event, then a close frame.
    Close {
        reason: Option<&'static str>,
        code: u16,
        text: &'static str,
    },
}

struct Connection {
    state: Arc<AppState>,
    session_id: String,
    owner: String,
    user: Option<String>,
    out: mpsc::Sender<Outgoing>,
    stream: SplitStream<WebSocket>,
    writer: JoinHandle<()>,
    guard: ConnGuard,
    user_slot: Option<UserSlot>,
    turn_slot: TurnSlot,
    pending: PendingSlot,
    /// The running turn's task and stop signal (also reachable through `turn_slot`, but that lock is
    /// held while a turn queues its terminal event, and aborting must not wait for it).
    turn: Option<(JoinHandle<()>, Arc<watch::Sender<Stop>>)>,
    bucket: TokenBucket,
    /// The injected fault, if any (`fault.rs`).
    fault: Option<Fault>,
    /// `tcp-reset` only: a turn notifies it to have the connection dropped.
    sever: Option<Arc<Notify>>,
}

impl Connection {
    fn new(
        state: Arc<AppState>,
        session_id: String,
        owner: String,
        socket: WebSocket,
        handshake_user: Option<(Claims, UserSlot)>,
        fault: Option<Fault>,
    ) -> Connection {
        let guard = state.connection_opened();
        let (sink, stream) = socket.split();
        let (out, rx) = mpsc::channel(CHANNEL_CAPACITY);
        let writer = tokio::spawn(writer_loop(sink, rx));
        let (user, user_slot) = match handshake_user {
            Some((claims, slot)) => (Some(claims.sub), Some(slot)),
            None => (None, None),
        };
        let bucket = TokenBucket::new(state.config.rate_limit_per_sec, state.config.rate_burst);
        Connection {
            state,
            session_id,
            owner,
            user,
            out,
            stream,
            writer,
            guard,
            user_slot,
            turn_slot: Arc::new(tokio::sync::Mutex::new(None)),
            pending: Arc::new(std::sync::Mutex::new(None)),
            turn: None,
            bucket,
            fault,
            sever: (fault == Some(Fault::TcpReset)).then(|| Arc::new(Notify::new())),
        }
    }

    async fn send(&self, ev: Value) {
        // A failed send means the writer is gone (socket dead); the reader notices on its next read.
        let _ = self.out.send(Outgoing::event(&ev)).await;
    }

    async fn send_error(&self, code: &str, message: &str) {
        self.send(error_event(code, message)).await;
    }

    async fn connected(&mut self) {
        let user = self.user.clone().unwrap_or_default();
        if self.fault == Some(Fault::NoConnected) {
            self.state.register_socket(self.guard.id, self.out.clone());
            return;
        }
        let len = self.state.store.history_len(&self.session_id).unwrap_or(0);
        self.send(
            json!({"type": "connected", "session_id": self.session_id, "user_id": user,
            "protocol": PROTOCOL, "resumed": len > 0, "history_length": len}),
        )
        .await;
        // Only now may broadcasts reach this socket: `connected` is queued first (R1). Registered
        // before it, an admin broadcast in between went out ahead of `connected`, which the suite
        // caught at `-j 16` (`connected-first`, one run in forty).
        self.state.register_socket(self.guard.id, self.out.clone());
    }

    async fn run(mut self) {
        if self.fault == Some(Fault::WrongFirstEvent) {
            self.send(json!({"type": "broadcast", "content": "welcome", "from": "server"}))
                .await;
        }
        if self.user.is_some() {
            self.connected().await;
        }
        let end = self.read_loop().await;
        self.stop_turn().await;
        match end {
            End::ClientGone => {}
            // The writer dies with whatever it still holds; the socket goes when `self` is dropped.
            End::Sever => self.writer.abort(),
            End::Fail { code, text } => {
                let _ = self.out.send(Outgoing::Close(code, text)).await;
            }
            End::Close { reason, code, text } => {
                if let Some(r) = reason {
                    self.send(closing_event(r)).await;
                }
                let code = fault::close_code(self.fault, code);
                let _ = self.out.send(Outgoing::Close(code, text)).await;
                // Wait (bounded) for the client's close frame so the close handshake completes.
                let stream = &mut self.stream;
                let _ = tokio::time::timeout(CLOSE_GRACE, async {
                    while let Some(Ok(_)) = stream.next().await {}
                })
                .await;
            }
        }
        // The broadcast registry holds a sender of this socket too: without this the writer would
        // wait out the whole grace period, holding the socket and the user's connection slot.
        self.state.unregister_socket(self.guard.id);
        let Connection {
            out,
            writer,
            guard,
            user_slot,
            ..
        } = self;
        // The writer ends once every sender is gone and the channel is drained (a client that stopped
        // reading cannot hold us beyond the grace).
        drop(out);
        let mut writer = writer;
        if tokio::time::timeout(CLOSE_GRACE, &mut writer)
            .await
            .is_err()
        {
            writer.abort();
        }
        drop(guard);
        drop(user_slot);
    }

    async fn read_loop(&mut self) -> End {
        let cfg = &self.state.config;
        let (idle_timeout, auth_timeout) = (cfg.idle_timeout, cfg.auth_timeout);
        let auth_deadline = Instant::now() + auth_timeout;
        let mut idle_deadline = Instant::now() + idle_timeout;
        let mut shutdown = self.state.shutdown.subscribe();
        let sever = self.sever.clone();
        // The waits are made once and polled again on every frame: made anew per frame, each timer
        // was inserted into and removed from the timer wheel, and the shutdown waiter into the
        // shared list of every socket's waiters, for every frame.
        let shutting_down = shutdown.wait_for(|s| *s);
        tokio::pin!(shutting_down);
        let sever_wait = severed(sever.as_deref());
        tokio::pin!(sever_wait);
        let auth_timer = sleep_until(auth_deadline);
        tokio::pin!(auth_timer);
        // Armed at the first deadline and moved only when it fires: a frame just moves the deadline.
        let idle_timer = sleep_until(idle_deadline);
        tokio::pin!(idle_timer);
        loop {
            let frame = tokio::select! {
                biased;
                _ = &mut shutting_down => {
                    return End::Close { reason: Some("shutdown"), code: 1001, text: "server shutting down" };
                }
                _ = &mut sever_wait => return End::Sever,
                _ = &mut auth_timer, if self.user.is_none() => {
                    return End::Close { reason: Some("auth_timeout"), code: 4408, text: "authentication timeout" };
                }
                _ = &mut idle_timer => {
                    if idle_timer.deadline() >= idle_deadline {
                        return End::Close { reason: Some("idle_timeout"), code: 4000, text: "idle timeout" };
                    }
                    idle_timer.as_mut().reset(idle_deadline);
                    continue;
                }
                f = self.stream.next() => f,
            };
            let msg = match frame {
                None => return End::ClientGone,
                Some(Err(e)) => {
                    if is_capacity_error(&e) {
                        tracing::debug!(session = %self.session_id, "frame over the hard limit: {e}");
                        return End::Close {
                            reason: None,
                            code: 1009,
                            text: "message too big",
                        };
                    }
                    if let Some((code, text)) = violation(&e) {
                        tracing::debug!(session = %self.session_id, "protocol violation: {e}");
                        return End::Fail { code, text };
                    }
                    tracing::debug!(session = %self.session_id, "socket error: {e}");
                    return End::ClientGone;
                }
                Some(Ok(m)) => m,
            };
            let now = Instant::now();
            idle_deadline = now + idle_timeout;
            let data_len = match &msg {
                Message::Text(t) => t.len(),
                Message::Binary(b) => b.len(),
                // Control frames: tungstenite answers pings itself; a close is answered the same way and
                // the next read reports the end.
                Message::Ping(_) | Message::Pong(_) | Message::Close(_) => continue,
            };
            if !self.bucket.take(now) {
                self.send_error("RATE_LIMITED", "too many messages; this one was dropped")
                    .await;
                continue;
            }
            if data_len > self.state.config.max_message_bytes {
                let m = format!(
                    "frame of {data_len} bytes exceeds the limit of {} bytes",
                    self.state.config.max_message_bytes
                );
                self.refuse("MESSAGE_TOO_LARGE", &m).await;
                continue;
            }
            let text = match msg {
                Message::Text(t) => t,
                _ => {
                    self.refuse(
                        "BINARY_NOT_SUPPORTED",
                        "binary frames are not part of the protocol",
                    )
                    .await;
                    continue;
                }
            };
            let parsed = parse_client_message(text.as_str());
            if self.user.is_none() {
                if let Some(end) = self.unauthenticated(parsed).await {
                    return end;
                }
                continue;
            }
            match parsed {
                Err(e) if e.code == "INVALID_JSON" && self.fault == Some(Fault::BadJsonCloses) => {
                    return End::Close {
                        reason: None,
                        code: 1003,
                        text: "invalid JSON",
                    };
                }
                Err(e) => self.send_error(e.code, &e.message).await,
                Ok(m) => {
                    if let Some(end) = self.handle(m, text.as_str()).await {
                        return end;
                    }
                }
            }
        }
    }

    /// Before authentication every refusal is `AUTH_REQUIRED` (R1), naming the actual problem.
    async fn refuse(&self, code: &str, message: &str) {
        if self.user.is_none() {
            self.send_error("AUTH_REQUIRED", &format!("authenticate first ({message})"))
                .await;
        } else {
            self.send_error(code, message).await;
        }
    }

    async fn unauthenticated(
        &mut self,
        parsed: Result<ClientMessage, crate::protocol::ParseError>,
    ) -> Option<End> {
        let token = match parsed {
            Ok(ClientMessage::Auth { token }) => token,
            Ok(_) => {
                self.send_error(
                    "AUTH_REQUIRED",
                    "send {\"type\":\"auth\",\"token\":\"...\"} first",
                )
                .await;
                return None;
            }
            Err(e) => {
                self.send_error(
                    "AUTH_REQUIRED",
                    &format!("authenticate first ({})", e.message),
                )
                .await;
                return None;
            }
        };
        let token = strip_bearer(&token);
        let claims = match self.state.tokens.verify(token) {
            Ok(c) => c,
            Err(_) if self.fault == Some(Fault::AuthAcceptsBadToken) => owner_claims(&self.owner),
            Err(e) => {
                let message = match &e {
                    AuthError::Invalid(why) => format!("token is invalid: {why}"),
                    AuthError::Expired => "token has expired".to_owned(),
                };
                self.send(json!({"type": "auth_error", "code": e.code(), "message": message}))
                    .await;
                return Some(End::Close {
                    reason: None,
                    code: 4401,
                    text: "authentication failed",
                });
            }
        };
        if claims.sub != self.owner && self.fault != Some(Fault::AcceptsOtherUsersSession) {
            self.send(json!({"type": "auth_error", "code": "SESSION_FORBIDDEN",
                "message": format!("session '{}' belongs to another user", self.session_id)}))
                .await;
            return Some(End::Close {
                reason: None,
                code: 4403,
                text: "session forbidden",
            });
        }
        self.user_slot = Some(self.state.track_user(&claims.sub));
        self.send(json!({"type": "auth_success", "user_id": claims.sub}))
            .await;
        self.user = Some(claims.sub);
        self.connected().await;
        None
    }

    /// `frame`: the text the message was parsed from (a `pong` echoes the nonce's exact text).
    async fn handle(&mut self, msg: ClientMessage, frame: &str) -> Option<End> {
        match msg {
            ClientMessage::Message { content, client_id } => {
                return self.start_turn(content, client_id).await
            }
            ClientMessage::Auth { .. } => {
                self.send_error(
                    "ALREADY_AUTHENTICATED",
                    "this connection is already authenticated",
                )
                .await
            }
            ClientMessage::Ping { nonce } => match self.fault {
                Some(Fault::MissingPong) => {}
                Some(Fault::PongWrongNonce) => {
                    self.send(pong_event(fault::double_encoded(nonce))).await
                }
                _ => {
                    let pong = pong_text(frame, nonce.as_ref());
                    let _ = self.out.send(Outgoing::Text(pong)).await;
                }
            },
            ClientMessage::Cancel { turn_id } => {
                let slot = self.turn_slot.lock().await;
                match slot.as_ref() {
                    Some(t) if turn_id.as_ref().is_none_or(|id| *id == t.turn_id) => {
                        match self.fault {
                            Some(Fault::CancelIgnored) => {}
                            Some(Fault::CancelLate) => cancel_late(t.stop.clone()),
                            _ => {
                                t.stop.send_replace(Stop::Cancel);
                            }
                        }
                    }
                    Some(t) => {
                        let m = format!(
                            "turn '{}' is not running (running: '{}')",
                            turn_id.unwrap_or_default(),
                            t.turn_id
                        );
                        drop(slot);
                        self.send_error("NO_ACTIVE_TURN", &m).await;
                    }
                    None => {
                        drop(slot);
                        self.send_error("NO_ACTIVE_TURN", "no turn is running")
                            .await;
                    }
                }
            }
            ClientMessage::ConfirmationReply {
                request_id,
                approved,
            } => {
                self.reply(
                    ReplyKind::Confirmation,
                    request_id,
                    Reply::Confirmation(approved),
                )
                .await
            }
            ClientMessage::HumanReply {
                request_id,
                content,
            } => {
                self.reply(ReplyKind::Human, request_id, Reply::Human(content))
                    .await
            }
        }
        None
    }

    async fn reply(&self, kind: ReplyKind, request_id: String, reply: Reply) {
        let open = {
            let mut p = self.pending.lock().unwrap_or_else(|p| p.into_inner());
            match p.take() {
                Some(req) if req.request_id == request_id && req.kind == kind => Some(req),
                other => {
                    *p = other;
                    None
                }
            }
        };
        match open {
            // If the turn stopped waiting in the meantime (cancel, timeout) the reply is moot.
            Some(req) => {
                let _ = req.tx.send(reply);
            }
            None => {
                let what = match kind {
                    ReplyKind::Confirmation => "confirmation",
                    ReplyKind::Human => "question",
                };
                self.send(json!({"type": "error", "code": "UNKNOWN_REQUEST",
                    "message": format!("no open {what} request '{request_id}'"), "request_id": request_id}))
                .await;
            }
        }
    }

    /// Starts a turn; `Some` ends the connection.
    async fn start_turn(&mut self, content: String, client_id: Option<String>) -> Option<End> {
        if content.trim().is_empty() {
            self.send_error("EMPTY_MESSAGE", "the message content is empty")
                .await;
            return None;
        }
        let mut slot = self.turn_slot.clone().lock_owned().await;
        if slot.is_some() {
            drop(slot);
            let mut ev = error_event(
                "TURN_IN_PROGRESS",
                "a turn is already running on this connection",
            );
            if let Some(c) = client_id {
                ev["client_id"] = json!(c);
            }
            self.send(ev).await;
            return None;
        }
        // The previous turn's task has released the slot and is finishing; reap it.
        if let Some((h, _)) = self.turn.take() {
            let _ = h.await;
        }
        let (sid, text) = (self.session_id.clone(), content.clone());
        let turn_id = match self
            .state
            .with_store(move |s| s.begin_turn(&sid, &text))
            .await
        {
            Ok(Some(t)) => t,
            // Sessions are never deleted, and a store that cannot write is not something the client
            // can fix: both are the unexpected internal failure of close code 1011.
            Ok(None) => {
                tracing::error!(session = %self.session_id, "session vanished while connected");
                return Some(End::Close {
                    reason: None,
                    code: 1011,
                    text: "session vanished",
                });
            }
            Err(e) => {
                tracing::error!(session = %self.session_id, "cannot save history: {e}");
                return Some(End::Close {
                    reason: None,
                    code: 1011,
                    text: "internal error",
                });
            }
        };
        let script = model::script(&content, &self.state.store.skills());
        let mut started = json!({"type": "turn_started", "turn_id": turn_id});
        if let Some(c) = client_id {
            started["client_id"] = json!(c);
        }
        self.send(started).await;
        let (stop_tx, stop_rx) = watch::channel(Stop::Running);
        let stop_tx = Arc::new(stop_tx);
        *slot = Some(ActiveTurn {
            turn_id: turn_id.clone(),
            stop: stop_tx.clone(),
        });
        drop(slot);
        let ctx = TurnCtx {
            state: self.state.clone(),
            session_id: self.session_id.clone(),
            turn_id,
            out: self.out.clone(),
            stop: stop_rx,
            pending: self.pending.clone(),
            slot: self.turn_slot.clone(),
            fault: self.fault,
            sever: self.sever.clone(),
        };
        self.turn = Some((tokio::spawn(turn::run_turn(ctx, script)), stop_tx));
        None
    }

    /// Ends the running turn, if any, without a terminal event (the socket is going away).
    async fn stop_turn(&mut self) {
        if let Some((mut h, stop)) = self.turn.take() {
            stop.send_replace(Stop::Abort);
            if tokio::time::timeout(TURN_STOP_GRACE, &mut h).await.is_err() {
                h.abort();
            }
        }
    }
}

/// `cancel-late`: the turn is cancelled after a delay, unless it has stopped by then (a socket that
/// is closing must not have its `Abort` overwritten).
fn cancel_late(stop: Arc<watch::Sender<Stop>>) {
    tokio::spawn(async move {
        tokio::time::sleep(fault::CANCEL_LATE_DELAY).await;
        stop.send_if_modified(|s| {
            let running = *s == Stop::Running;
            if running {
                *s = Stop::Cancel;
            }
            running
        });
    });
}

/// A frame over the hard limit surfaces as tungstenite's capacity error, wrapped by axum.
fn is_capacity_error(e: &axum::Error) -> bool {
    use std::error::Error as _;
    let mut src = e.source();
    while let Some(s) = src {
        if let Some(t) = s.downcast_ref::<tungstenite::Error>() {
            return matches!(t, tungstenite::Error::Capacity(_));
        }
        src = s.source();
    }
    false
}

/// The close code for a client's protocol violation (RFC 6455 7.4.1): 1007 for a text frame that
/// is not UTF-8, 1002 for any other malformed frame; `None` when the client just went away.
fn violation(e: &axum::Error) -> Option<(u16, &'static str)> {
    use std::error::Error as _;
    use tungstenite::error::ProtocolError;
    let mut src = e.source();
    while let Some(s) = src {
        if let Some(t) = s.downcast_ref::<tungstenite::Error>() {
            return match t {
                tungstenite::Error::Utf8(_) => Some((1007, "invalid UTF-8 in a text frame")),
                // The TCP stream ended without a close frame: nobody left to tell.
                tungstenite::Error::Protocol(ProtocolError::ResetWithoutClosingHandshake) => None,
                tungstenite::Error::Protocol(_) => Some((1002, "protocol error")),
                _ => None,
            };
        }
        src = s.source();
    }
    None
}

/// Frames written per flush at most, so a long stream still reaches the client in steady pieces.
const FRAMES_PER_FLUSH: usize = 256;

async fn writer_loop(mut sink: SplitSink<WebSocket, Message>, mut rx: mpsc::Receiver<Outgoing>) {
    while let Some(first) = rx.recv().await {
        // Batch what is already queued into one flush: long token streams would otherwise cost a
        // system call per token.
        let mut next = Some(first);
        let mut frames = 0;
        while let Some(msg) = next.take() {
            match msg {
                Outgoing::Text(t) => {
                    if sink.feed(Message::Text(t.into())).await.is_err() {
                        return;
                    }
                    frames += 1;
                }
                Outgoing::Frames(ts) => {
                    frames += ts.len();
                    for t in ts {
                        if sink.feed(Message::Text(t.into())).await.is_err() {
                            return;
                        }
                    }
                }
                Outgoing::Close(code, reason) => {
                    let _ = sink
                        .send(Message::Close(Some(CloseFrame {
                            code,
                            reason: reason.into(),
                        })))
                        .await;
                    return;
                }
            }
            if frames < FRAMES_PER_FLUSH {
                next = rx.try_recv().ok();
            }
        }
        if sink.flush().await.is_err() {
            return;
        }
    }
    let _ = sink.close().await;
}
