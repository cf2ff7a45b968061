//! Server configuration. The defaults are the values `docs/PROTOCOL.md` names for the reference server.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::PathBuf;
use std::time::Duration;

/// The longest duration any setting may have: 365 days.
pub const MAX_DURATION: Duration = Duration::from_secs(365 * 24 * 3600);

/// Everything the reference server can be tuned with. `Config::default()` suits tests: a loopback port
/// chosen by the OS, no token pacing, in-memory storage.
#[derive(Debug, Clone)]
pub struct Config {
    /// Address to listen on; port 0 lets the OS choose.
    pub bind: SocketAddr,
    /// HS256 secret that signs and verifies tokens. Empty: `start` generates a random one
    /// (see `ServerHandle::jwt_secret`).
    pub jwt_secret: String,
    /// Pause between two `token` events of a turn (`#pace=MS` overrides it per turn).
    pub token_pace: Duration,
    /// How long a socket opened without credentials may wait for its `auth` message.
    pub auth_timeout: Duration,
    /// A socket with no client frame for this long is closed with 4000.
    pub idle_timeout: Duration,
    /// How long a turn waits for a `confirmation_reply` or `human_reply`.
    pub reply_timeout: Duration,
    /// A connection whose request head (request line and headers) is not complete this long after
    /// it was opened, or after its previous response on a keep-alive connection, is closed.
    pub header_read_timeout: Duration,
    /// Connections that may wait for their first complete request head at once; one more closes
    /// the one that has waited longest.
    pub max_pending_heads: usize,
    /// Soft limit: a larger frame gets `MESSAGE_TOO_LARGE` and the connection stays open.
    pub max_message_bytes: usize,
    /// Hard limit: a larger frame closes the connection with 1009.
    pub hard_max_message_bytes: usize,
    /// Token-bucket refill rate for client messages, per connection.
    pub rate_limit_per_sec: u32,
    /// Token-bucket capacity.
    pub rate_burst: u32,
    /// Open sockets one user may hold at once (handshake authentication only).
    pub max_connections_per_user: usize,
    /// Origins a WebSocket upgrade may come from (`https://app.example.com`). Empty: every origin
    /// (the default, for non-browser clients). When set, an upgrade whose `Origin` header is
    /// present and not listed is refused with 403 `ORIGIN_NOT_ALLOWED`; one without `Origin`
    /// (not a browser) is not affected.
    pub allowed_origins: Vec<String>,
    /// With a folder, sessions, history and skills are persisted there (redb) and survive a restart.
    pub data_dir: Option<PathBuf>,
    /// Enables `POST /api/v1/dev/token` and the token button of the test page.
    pub dev: bool,
    /// A deliberate protocol violation by name (`fault.rs`, `docs/FAULTS.md`); testing only.
    pub fault: Option<String>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            bind: SocketAddr::from((Ipv4Addr::LOCALHOST, 0)),
            jwt_secret: String::new(),
            token_pace: Duration::ZERO,
            auth_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(300),
            reply_timeout: Duration::from_secs(60),
            header_read_timeout: Duration::from_secs(10),
            max_pending_heads: 1024,
            max_message_bytes: 65_536,
            hard_max_message_bytes: 1024 * 1024,
            rate_limit_per_sec: 20,
            rate_burst: 40,
            max_connections_per_user: 16,
            allowed_origins: Vec::new(),
            data_dir: None,
            dev: false,
            fault: None,
        }
    }
}

impl Config {
    /// Whether an upgrade with this `Origin` header (`None`: none sent) may proceed.
    pub fn origin_allowed(&self, origin: Option<&str>) -> bool {
        let Some(origin) = origin else {
            return true;
        };
        if self.allowed_origins.is_empty() {
            return true;
        }
        // Scheme and host are case-insensitive (RFC 6454 §6.1 serializes them in lower case).
        let norm = |o: &str| o.trim().trim_end_matches('/').to_ascii_lowercase();
        let origin = norm(origin);
        self.allowed_origins.iter().any(|a| norm(a) == origin)
    }

    /// Checks the combinations that would make the server misbehave rather than fail loudly.
    pub fn validate(&self) -> Result<(), String> {
        if self.hard_max_message_bytes < self.max_message_bytes {
            return Err(format!(
                "hard_max_message_bytes ({}) must be at least max_message_bytes ({})",
                self.hard_max_message_bytes, self.max_message_bytes
            ));
        }
        if self.rate_limit_per_sec == 0 || self.rate_burst == 0 {
            return Err("rate_limit_per_sec and rate_burst must be at least 1".into());
        }
        if self.max_connections_per_user == 0 {
            return Err("max_connections_per_user must be at least 1".into());
        }
        if self.max_pending_heads == 0 {
            return Err("max_pending_heads must be at least 1".into());
        }
        for (name, d) in [
            ("auth_timeout", self.auth_timeout),
            ("idle_timeout", self.idle_timeout),
            ("reply_timeout", self.reply_timeout),
            ("header_read_timeout", self.header_read_timeout),
        ] {
            if d.is_zero() {
                return Err(format!("{name} must be greater than zero"));
            }
        }
        // Every one of them becomes a deadline (now + duration) in each socket task: a longer one
        // cannot be represented and used to panic the task right after `connected`.
        for (name, d) in [
            ("auth_timeout", self.auth_timeout),
            ("idle_timeout", self.idle_timeout),
            ("reply_timeout", self.reply_timeout),
            ("header_read_timeout", self.header_read_timeout),
            ("token_pace", self.token_pace),
        ] {
            if d > MAX_DURATION {
                return Err(format!(
                    "{name} is {}, more than the maximum of 365 days",
                    humantime::format_duration(d)
                ));
            }
        }
        if let Some(bad) = self
            .allowed_origins
            .iter()
            .find(|o| !o.contains("://") && o.as_str() != "null")
        {
            return Err(format!(
                "allowed origin '{bad}' is not an origin: write scheme://host[:port], e.g. https://app.example.com"
            ));
        }
        if let Some(name) = &self.fault {
            name.parse::<crate::fault::Fault>()
                .map_err(|e| e.to_string())?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_match_the_protocol_document() {
        let c = Config::default();
        assert_eq!(c.bind.port(), 0);
        assert!(c.bind.ip().is_loopback());
        assert_eq!(c.auth_timeout, Duration::from_secs(5));
        assert_eq!(c.idle_timeout, Duration::from_secs(300));
        assert_eq!(c.reply_timeout, Duration::from_secs(60));
        assert_eq!(c.max_message_bytes, 65_536);
        assert_eq!(c.hard_max_message_bytes, 1 << 20);
        assert_eq!((c.rate_limit_per_sec, c.rate_burst), (20, 40));
        assert_eq!(c.max_connections_per_user, 16);
        assert!(c.data_dir.is_none() && !c.dev);
    }

    #[test]
    fn validate_rejects_durations_no_deadline_can_hold() {
        let huge = Duration::from_secs(9_223_372_036_854_775_808);
        for set in [
            (|c: &mut Config, d| c.auth_timeout = d) as fn(&mut Config, Duration),
            |c, d| c.idle_timeout = d,
            |c, d| c.reply_timeout = d,
            |c, d| c.header_read_timeout = d,
            |c, d| c.token_pace = d,
        ] {
            let mut c = Config::default();
            set(&mut c, huge);
            let e = c.validate().unwrap_err();
            assert!(e.contains("more than the maximum of 365 days"), "{e}");
            set(&mut c, MAX_DURATION);
            assert!(c.validate().is_ok());
        }
        let c = Config {
            max_pending_heads: 0,
            ..Config::default()
        };
        assert!(c.validate().unwrap_err().contains("max_pending_heads"));
    }

    #[test]
    fn origins_are_checked_only_with_an_allow_list() {
        let mut c = Config::default();
        assert!(c.origin_allowed(Some("https://evil.example")));
        assert!(c.origin_allowed(None));
        c.allowed_origins = vec!["https://App.example.com/".into()];
        assert!(c.validate().is_ok());
        assert!(c.origin_allowed(Some("https://app.example.com")));
        assert!(!c.origin_allowed(Some("https://evil.example")));
        assert!(!c.origin_allowed(Some("null")));
        assert!(!c.origin_allowed(Some("http://app.example.com")));
        assert!(c.origin_allowed(None), "non-browser clients send no Origin");
        c.allowed_origins = vec!["app.example.com".into()];
        assert!(c.validate().unwrap_err().contains("not an origin"));
    }

    #[test]
    fn validate_rejects_inverted_limits() {
        let mut c = Config::default();
        assert!(c.validate().is_ok());
        c.hard_max_message_bytes = 10;
        assert!(c.validate().unwrap_err().contains("hard_max_message_bytes"));
    }
}
