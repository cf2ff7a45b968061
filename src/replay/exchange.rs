//! The HTTP side of the replay server: every accepted TCP connection starts with an HTTP request;
//! a WebSocket upgrade goes on to the frame player, any other request is answered with the next
//! recorded `http` exchange (`docs/TRANSCRIPT.md`, "Replay", "HTTP requests").
//!
//! The request head is read here (not by the WebSocket layer) to tell the two apart, so the bytes
//! already read are handed back through [`Prefixed`] for the upgrade.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::net::TcpStream;

/// Bound on a request head (request line and headers).
const MAX_HEAD: usize = 64 * 1024;
/// Bound on a request body the replay reads (and ignores: bodies are not compared).
const MAX_BODY: usize = 16 * 1024 * 1024;

/// Why a request could not be read.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    #[error("the client closed the connection before a full request head")]
    Eof,
    #[error("the request head is longer than {MAX_HEAD} bytes")]
    HeadTooLong,
    #[error("the request body of {0} bytes is longer than {MAX_BODY} bytes")]
    BodyTooLong(usize),
    #[error("malformed request: {0}")]
    Malformed(String),
    #[error("reading the request failed: {0}")]
    Io(#[from] io::Error),
}

/// The parts of a request head the replay uses.
#[derive(Debug, Clone, PartialEq)]
pub struct Head {
    pub method: String,
    /// The request target's path (without the query).
    pub path: String,
    pub headers: Vec<(String, String)>,
}

impl Head {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// A WebSocket upgrade request (`Upgrade: websocket`).
    pub fn is_upgrade(&self) -> bool {
        self.header("upgrade").is_some_and(|v| {
            v.split(',')
                .any(|p| p.trim().eq_ignore_ascii_case("websocket"))
        })
    }

    fn content_length(&self) -> Result<usize, ReadError> {
        match self.header("content-length") {
            None => Ok(0),
            Some(v) => v
                .trim()
                .parse()
                .map_err(|_| ReadError::Malformed(format!("Content-Length '{v}' is not a number"))),
        }
    }
}

/// Reads a request head; returns it and every byte read so far (head and what followed it).
pub async fn read_head(stream: &mut TcpStream) -> Result<(Head, Vec<u8>), ReadError> {
    let mut buf = Vec::with_capacity(1024);
    let mut chunk = [0u8; 4096];
    loop {
        if let Some(end) = find_head_end(&buf) {
            let head = parse_head(&buf[..end])?;
            return Ok((head, buf));
        }
        if buf.len() > MAX_HEAD {
            return Err(ReadError::HeadTooLong);
        }
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(ReadError::Eof);
        }
        buf.extend_from_slice(&chunk[..n]);
    }
}

/// Reads (and drops) the body of a plain request whose head `read_head` returned with `buf`.
/// Chunked bodies are not supported: the harness sends `Content-Length`.
pub async fn skip_body(stream: &mut TcpStream, head: &Head, buf: &[u8]) -> Result<(), ReadError> {
    let len = head.content_length()?;
    if len > MAX_BODY {
        return Err(ReadError::BodyTooLong(len));
    }
    let head_end = find_head_end(buf).unwrap_or(buf.len());
    let mut have = buf.len() - head_end;
    let mut chunk = [0u8; 8192];
    while have < len {
        let n = stream.read(&mut chunk).await?;
        if n == 0 {
            return Err(ReadError::Eof);
        }
        have += n;
    }
    Ok(())
}

/// The index just past the blank line ending the head.
fn find_head_end(buf: &[u8]) -> Option<usize> {
    buf.windows(4).position(|w| w == b"\r\n\r\n").map(|i| i + 4)
}

fn parse_head(raw: &[u8]) -> Result<Head, ReadError> {
    let text = std::str::from_utf8(raw)
        .map_err(|_| ReadError::Malformed("the request head is not UTF-8".into()))?;
    let mut lines = text.split("\r\n");
    let line = lines.next().unwrap_or("");
    let mut parts = line.split(' ');
    let (Some(method), Some(target), Some(version)) = (parts.next(), parts.next(), parts.next())
    else {
        return Err(ReadError::Malformed(format!("request line '{line}'")));
    };
    if !version.starts_with("HTTP/") || method.is_empty() {
        return Err(ReadError::Malformed(format!("request line '{line}'")));
    }
    // An absolute-form target (`http://host/path`) is reduced to its path.
    let target = target.split_once("://").map_or(target, |(_, rest)| {
        rest.find('/').map_or("/", |i| &rest[i..])
    });
    let path = target.split(['?', '#']).next().unwrap_or("/").to_owned();
    let mut headers = Vec::new();
    for l in lines.filter(|l| !l.is_empty()) {
        let (k, v) = l
            .split_once(':')
            .ok_or_else(|| ReadError::Malformed(format!("header line '{l}'")))?;
        headers.push((k.trim().to_owned(), v.trim().to_owned()));
    }
    Ok(Head {
        method: method.to_ascii_uppercase(),
        path,
        headers,
    })
}

/// Writes a complete response and closes the connection (`Connection: close`, so a pooling client
/// never reuses it).
pub async fn respond(
    stream: &mut TcpStream,
    status: u16,
    content_type: Option<&str>,
    body: &str,
    within: Duration,
) -> io::Result<()> {
    let reason = http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("");
    let mut out = format!("HTTP/1.1 {status} {reason}\r\n");
    if let Some(ct) = content_type {
        out.push_str(&format!("content-type: {ct}\r\n"));
    }
    out.push_str(&format!(
        "content-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    ));
    out.push_str(body);
    tokio::time::timeout(within, async {
        stream.write_all(out.as_bytes()).await?;
        stream.shutdown().await
    })
    .await
    .map_err(|_| io::Error::new(io::ErrorKind::TimedOut, "writing the response timed out"))?
}

/// A JSON error body in the protocol's error shape (`{"error": {"code", "message"}}`).
pub fn error_body(code: &str, message: &str) -> String {
    serde_json::json!({ "error": { "code": code, "message": message } }).to_string()
}

/// A stream that yields `prefix` before reading from `inner`: the bytes of the request head that
/// were read to tell an upgrade from a plain request.
pub struct Prefixed {
    prefix: Vec<u8>,
    pos: usize,
    inner: TcpStream,
}

impl Prefixed {
    pub fn new(prefix: Vec<u8>, inner: TcpStream) -> Self {
        Prefixed {
            prefix,
            pos: 0,
            inner,
        }
    }
}

impl AsyncRead for Prefixed {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.pos < self.prefix.len() {
            let n = (self.prefix.len() - self.pos).min(buf.remaining());
            let start = self.pos;
            buf.put_slice(&self.prefix[start..start + n]);
            self.pos += n;
            return Poll::Ready(Ok(()));
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl AsyncWrite for Prefixed {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn heads() {
        let h = parse_head(
            b"post /api/v1/sessions?x=1 HTTP/1.1\r\nHost: h\r\nContent-Length: 12\r\n\r\n",
        )
        .unwrap();
        assert_eq!(h.method, "POST");
        assert_eq!(h.path, "/api/v1/sessions");
        assert_eq!(h.content_length().unwrap(), 12);
        assert!(!h.is_upgrade());
        let h =
            parse_head(b"GET http://h:1/ws/a?t=1 HTTP/1.1\r\nUpgrade: WebSocket\r\n\r\n").unwrap();
        assert_eq!(h.path, "/ws/a");
        assert!(h.is_upgrade());
        let e = parse_head(b"garbage\r\n\r\n").unwrap_err();
        assert!(e.to_string().contains("request line 'garbage'"), "{e}");
        assert_eq!(find_head_end(b"GET / HTTP/1.1\r\n\r\nbody"), Some(18));
    }
}
