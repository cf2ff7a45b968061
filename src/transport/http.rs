//! HTTP steps: one `reqwest::Client` per run, requests with a timeout, captures by JSON pointer or JSONPath.

use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::scenario::CapturePath;

#[derive(Debug, thiserror::Error)]
pub enum HttpError {
    #[error("could not build the HTTP client: {0}")]
    Client(String),
    #[error("invalid HTTP request to {url}: {message}")]
    Request { url: String, message: String },
    #[error("{method} {url} timed out after {}", humantime::format_duration(*.after))]
    Timeout {
        method: String,
        url: String,
        after: Duration,
    },
    #[error("{method} {url} failed: {message}")]
    Transport {
        method: String,
        url: String,
        message: String,
    },
}

/// A request body.
#[derive(Debug, Clone)]
pub enum Body {
    Json(Value),
    Text(String),
}

#[derive(Debug, Clone)]
pub struct HttpRequest {
    pub method: String,
    pub url: String,
    pub headers: Vec<(String, String)>,
    pub query: Vec<(String, String)>,
    pub body: Option<Body>,
    pub timeout: Duration,
}

#[derive(Debug, Clone)]
pub struct HttpResponse {
    pub status: u16,
    /// `201 Created`.
    pub status_line: String,
    pub headers: Vec<(String, String)>,
    pub body: String,
    /// The body parsed as JSON, when it is JSON.
    pub json: Option<Value>,
    pub duration: Duration,
}

/// Idle keep-alive connections kept per host for reuse. reqwest keeps any number for 90 s by
/// default: in load mode a burst of session-creating `http` steps leaves thousands of idle
/// connections behind (with 10,000 virtual users about 7,600, each with hyper's read and write
/// buffers and dispatch channel: ~19 KiB per session, a third of the harness's heap). A run
/// reuses at most as many connections as it has requests in flight, so a small pool keeps the
/// reuse of ordinary runs; connections beyond it are closed when their response is read.
const MAX_IDLE_PER_HOST: usize = 32;

/// The run's HTTP client.
#[derive(Clone)]
pub struct HttpClient {
    client: reqwest::Client,
}

impl HttpClient {
    /// `tls`: the custom config of `--ca-cert`/`--insecure`, or `None` for the platform's roots.
    pub fn new(tls: Option<Arc<rustls::ClientConfig>>) -> Result<Self, HttpError> {
        let mut builder = reqwest::Client::builder()
            .user_agent(concat!("wschat-check/", env!("CARGO_PKG_VERSION")))
            .pool_max_idle_per_host(MAX_IDLE_PER_HOST);
        if let Some(cfg) = tls {
            builder = builder.tls_backend_preconfigured((*cfg).clone());
        }
        let client = builder
            .build()
            .map_err(|e| HttpError::Client(error_chain(&e)))?;
        Ok(HttpClient { client })
    }

    pub async fn execute(&self, req: &HttpRequest) -> Result<HttpResponse, HttpError> {
        let method = reqwest::Method::from_bytes(req.method.to_ascii_uppercase().as_bytes())
            .map_err(|e| HttpError::Request {
                url: req.url.clone(),
                message: format!("method '{}': {e}", req.method),
            })?;
        let shown_url = super::ws::redact_url(&req.url);
        let mut builder = self
            .client
            .request(method.clone(), &req.url)
            .timeout(req.timeout);
        for (k, v) in &req.headers {
            builder = builder.header(k.as_str(), v.as_str());
        }
        if !req.query.is_empty() {
            builder = builder.query(&req.query);
        }
        builder = match &req.body {
            Some(Body::Json(v)) => builder.json(v),
            Some(Body::Text(t)) => builder.body(t.clone()),
            None => builder,
        };
        let request = builder.build().map_err(|e| HttpError::Request {
            url: shown_url.clone(),
            message: error_chain(&e),
        })?;
        let started = Instant::now();
        let fail = |e: reqwest::Error| {
            if e.is_timeout() {
                HttpError::Timeout {
                    method: method.to_string(),
                    url: shown_url.clone(),
                    after: req.timeout,
                }
            } else {
                HttpError::Transport {
                    method: method.to_string(),
                    url: shown_url.clone(),
                    message: error_chain(&e),
                }
            }
        };
        let resp = self.client.execute(request).await.map_err(fail)?;
        let status = resp.status();
        let headers = resp
            .headers()
            .iter()
            .map(|(k, v)| {
                (
                    k.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect();
        let bytes = resp.bytes().await.map_err(fail)?;
        let json = serde_json::from_slice(&bytes).ok();
        Ok(HttpResponse {
            status: status.as_u16(),
            status_line: format!(
                "{} {}",
                status.as_u16(),
                status.canonical_reason().unwrap_or("")
            )
            .trim_end()
            .to_owned(),
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
            json,
            duration: started.elapsed(),
        })
    }
}

/// The whole `source()` chain of an error on one line ("error sending request: tcp connect: refused").
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cur = e.source();
    while let Some(s) = cur {
        let m = s.to_string();
        if !out.contains(&m) {
            out.push_str(": ");
            out.push_str(&m);
        }
        cur = s.source();
    }
    out
}

/// Reads a captured value: a JSON pointer, or a JSONPath that must select exactly one node.
pub fn capture(value: &Value, path: &CapturePath) -> Result<Value, String> {
    match path {
        CapturePath::Pointer(p) => value
            .pointer(p)
            .cloned()
            .ok_or_else(|| format!("JSON pointer {p} selects nothing")),
        CapturePath::JsonPath(expr) => {
            let parsed = serde_json_path::JsonPath::parse(expr)
                .map_err(|e| format!("JSONPath {expr}: {e}"))?;
            let nodes = parsed.query(value);
            match nodes.len() {
                0 => Err(format!("JSONPath {expr} selects nothing")),
                1 => Ok(nodes.first().cloned().unwrap_or(Value::Null)),
                n => Err(format!(
                    "JSONPath {expr} selects {n} values; a capture needs exactly one"
                )),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio::net::TcpListener;

    #[test]
    fn captures() {
        let v = json!({"session_id": "s1", "history": [{"role": "user"}, {"role": "assistant"}]});
        assert_eq!(
            capture(&v, &CapturePath::Pointer("/session_id".into())).unwrap(),
            json!("s1")
        );
        assert_eq!(
            capture(&v, &CapturePath::JsonPath("$.history[1].role".into())).unwrap(),
            json!("assistant")
        );
        let e = capture(&v, &CapturePath::JsonPath("$.history[*].role".into())).unwrap_err();
        assert!(e.contains("selects 2 values"), "{e}");
        let e = capture(&v, &CapturePath::Pointer("/nope".into())).unwrap_err();
        assert_eq!(e, "JSON pointer /nope selects nothing");
    }

    /// A one-request HTTP server that records what it got and answers `response`.
    async fn one_shot(response: &'static str) -> (String, tokio::sync::oneshot::Receiver<String>) {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (tx, rx) = tokio::sync::oneshot::channel();
        tokio::spawn(async move {
            let (mut tcp, _) = listener.accept().await.unwrap();
            let mut buf = vec![0u8; 8192];
            let mut got = Vec::new();
            // Read until the end of the headers plus the declared body.
            loop {
                let n = tcp.read(&mut buf).await.unwrap();
                if n == 0 {
                    break;
                }
                got.extend_from_slice(&buf[..n]);
                let text = String::from_utf8_lossy(&got).to_string();
                if let Some(end) = text.find("\r\n\r\n") {
                    let len = text
                        .lines()
                        .find_map(|l| {
                            l.to_ascii_lowercase()
                                .strip_prefix("content-length: ")
                                .map(|v| v.trim().parse::<usize>().unwrap())
                        })
                        .unwrap_or(0);
                    if got.len() >= end + 4 + len {
                        break;
                    }
                }
            }
            let _ = tx.send(String::from_utf8_lossy(&got).to_string());
            tcp.write_all(response.as_bytes()).await.unwrap();
            let _ = tcp.shutdown().await;
        });
        (format!("http://{addr}"), rx)
    }

    #[tokio::test]
    async fn post_json_with_query_and_headers() {
        let (base, got) = one_shot(
            "HTTP/1.1 201 Created\r\ncontent-type: application/json\r\ncontent-length: 20\r\nconnection: close\r\n\r\n{\"session_id\":\"s-1\"}",
        )
        .await;
        let client = HttpClient::new(None).unwrap();
        let resp = client
            .execute(&HttpRequest {
                method: "post".into(),
                url: format!("{base}/api/v1/sessions"),
                headers: vec![("Authorization".into(), "Bearer abc".into())],
                query: vec![("verbose".into(), "1".into())],
                body: Some(Body::Json(json!({"title": "demo"}))),
                timeout: Duration::from_secs(5),
            })
            .await
            .unwrap();
        assert_eq!(resp.status, 201);
        assert_eq!(resp.status_line, "201 Created");
        assert_eq!(resp.json.unwrap()["session_id"], "s-1");
        let req = got.await.unwrap();
        assert!(
            req.starts_with("POST /api/v1/sessions?verbose=1 HTTP/1.1"),
            "{req}"
        );
        assert!(
            req.to_ascii_lowercase()
                .contains("authorization: bearer abc"),
            "{req}"
        );
        assert!(req.ends_with(r#"{"title":"demo"}"#), "{req}");
    }

    #[tokio::test]
    async fn closed_port_fails_cleanly() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        drop(listener);
        let client = HttpClient::new(None).unwrap();
        let err = client
            .execute(&HttpRequest {
                method: "GET".into(),
                url: format!("http://{addr}/healthz"),
                headers: vec![],
                query: vec![],
                body: None,
                timeout: Duration::from_secs(5),
            })
            .await
            .unwrap_err();
        assert!(matches!(err, HttpError::Transport { .. }), "{err:?}");
        assert!(
            err.to_string()
                .starts_with(&format!("GET http://{addr}/healthz failed:")),
            "{err}"
        );
    }

    #[tokio::test]
    async fn timeout_is_reported() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let (hold_tx, hold_rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let (_tcp, _) = listener.accept().await.unwrap();
            // Hold the socket open without answering until the test is done.
            let _ = hold_rx.await;
        });
        let client = HttpClient::new(None).unwrap();
        let err = client
            .execute(&HttpRequest {
                method: "GET".into(),
                url: format!("http://{addr}/slow"),
                headers: vec![],
                query: vec![],
                body: None,
                timeout: Duration::from_millis(200),
            })
            .await
            .unwrap_err();
        drop(hold_tx);
        assert!(matches!(err, HttpError::Timeout { .. }), "{err:?}");
        assert_eq!(
            err.to_string(),
            format!("GET http://{addr}/slow timed out after 200ms")
        );
    }
}
