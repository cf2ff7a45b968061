//! Network transports: WebSocket connections (reader task + channel) and HTTP steps.

pub mod http;
pub mod tls;
pub mod ws;
