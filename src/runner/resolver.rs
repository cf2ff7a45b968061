//! Run-time values for `${...}` placeholders: variables, captures and builtins (see docs/SCENARIOS.md).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use serde_json::{json, Value};

use crate::scenario::Resolver;

/// Values that are the same for every scenario of a run.
#[derive(Debug, Clone, Default)]
pub struct RunValues {
    /// The WebSocket target (`ws://host:port`).
    pub target: String,
    /// The HTTP base URL (`http://host:port`).
    pub http_base: String,
    /// HS256 secret for the `jwt*` builtins.
    pub jwt_secret: Option<String>,
    /// The suite's fixed token (`${token}`).
    pub token: Option<String>,
    /// `--var name=value`.
    pub cli_vars: BTreeMap<String, String>,
    /// Extra claims of every `${jwt*:USER}` token (the suite's `auth.claims`), e.g. a
    /// `customer_id` a server requires. `sub`, `exp` and `iat` are the builtin's own.
    pub claims: serde_json::Map<String, Value>,
}

/// The resolver a scenario renders its templates with.
pub struct ScenarioResolver<'a> {
    pub run: &'a RunValues,
    /// Suite vars, then scenario vars layered over them (already rendered).
    pub vars: &'a BTreeMap<String, Value>,
    /// Values captured by earlier steps.
    pub captures: &'a BTreeMap<String, Value>,
}

/// How long `${jwt:USER}` tokens live.
const TOKEN_TTL: Duration = Duration::from_secs(3600);

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// The token kinds of the `jwt*` builtins.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    Valid,
    Admin,
    Expired,
    /// Valid signature and `exp`, but `nbf` an hour ahead: not valid yet (RFC 7519 §4.1.5).
    NotYetValid,
    BadSignature,
    AlgNone,
}

impl TokenKind {
    pub fn from_prefix(prefix: &str) -> Option<TokenKind> {
        Some(match prefix {
            "jwt" => TokenKind::Valid,
            "jwt_admin" => TokenKind::Admin,
            "jwt_expired" => TokenKind::Expired,
            "jwt_not_yet_valid" => TokenKind::NotYetValid,
            "jwt_bad_signature" => TokenKind::BadSignature,
            "jwt_none" => TokenKind::AlgNone,
            _ => return None,
        })
    }
}

/// Mints a token of `kind` for `user`. `alg: none` tokens need no secret.
pub fn mint(kind: TokenKind, user: &str, secret: Option<&str>, ttl: Duration) -> Option<String> {
    mint_with_claims(kind, user, secret, ttl, &serde_json::Map::new())
}

/// [`mint`] with extra claims added to the payload (they never replace `sub`, `exp`, `iat`).
pub fn mint_with_claims(
    kind: TokenKind,
    user: &str,
    secret: Option<&str>,
    ttl: Duration,
    extra: &serde_json::Map<String, Value>,
) -> Option<String> {
    let now = now_secs();
    let exp = match kind {
        TokenKind::Expired => now.saturating_sub(3600),
        _ => now + ttl.as_secs(),
    };
    let mut claims = json!({"sub": user, "exp": exp, "iat": now});
    if kind == TokenKind::NotYetValid {
        claims["nbf"] = json!(now + 3600);
        claims["exp"] = json!(now + 3600 + ttl.as_secs());
    }
    if let Value::Object(map) = &mut claims {
        for (k, v) in extra {
            if !map.contains_key(k) {
                map.insert(k.clone(), v.clone());
            }
        }
    }
    if kind == TokenKind::Admin {
        claims["admin"] = Value::Bool(true);
    }
    if kind == TokenKind::AlgNone {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"none","typ":"JWT"}"#);
        let payload = URL_SAFE_NO_PAD.encode(claims.to_string());
        return Some(format!("{header}.{payload}."));
    }
    let secret = secret?;
    let key = if kind == TokenKind::BadSignature {
        // Any other key: the signature is well-formed but does not verify.
        format!("not-{secret}-{}", uuid::Uuid::new_v4())
    } else {
        secret.to_owned()
    };
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(key.as_bytes()),
    )
    .ok()
}

/// A fresh random secret (two UUID v4s: 244 random bits).
pub fn random_secret() -> String {
    format!(
        "{}{}",
        uuid::Uuid::new_v4().simple(),
        uuid::Uuid::new_v4().simple()
    )
}

impl RunValues {
    /// Builtins that do not depend on the scenario.
    pub fn builtin(&self, name: &str) -> Option<Value> {
        if let Some((prefix, arg)) = name.split_once(':') {
            if prefix == "env" {
                return crate::scenario::template::env_with_default(arg, |n| std::env::var(n).ok())
                    .map(Value::String);
            }
            if prefix == "repeat" {
                let (n, text) = crate::scenario::template::parse_repeat(arg).ok()?;
                return Some(Value::String(text.repeat(n)));
            }
            let kind = TokenKind::from_prefix(prefix)?;
            return mint_with_claims(
                kind,
                arg,
                self.jwt_secret.as_deref(),
                TOKEN_TTL,
                &self.claims,
            )
            .map(Value::String);
        }
        match name {
            "target" => Some(Value::String(self.target.clone())),
            "http_base" => Some(Value::String(self.http_base.clone())),
            "token" => self.token.clone().map(Value::String),
            "uuid" => Some(Value::String(uuid::Uuid::new_v4().to_string())),
            _ => None,
        }
    }
}

impl Resolver for ScenarioResolver<'_> {
    fn resolve(&self, name: &str) -> Option<Value> {
        // The latest capture wins, so a step can refresh a value (a new turn id) for later steps;
        // a --var overrides what the files say.
        if let Some(v) = self.captures.get(name) {
            return Some(v.clone());
        }
        if let Some(v) = self.run.cli_vars.get(name) {
            return Some(Value::String(v.clone()));
        }
        if let Some(v) = self.vars.get(name) {
            return Some(v.clone());
        }
        self.run.builtin(name)
    }
}

/// A resolver over run values and a fixed var map (used to render suite and scenario vars).
pub struct VarsResolver<'a> {
    pub run: &'a RunValues,
    pub vars: &'a BTreeMap<String, Value>,
}

impl Resolver for VarsResolver<'_> {
    fn resolve(&self, name: &str) -> Option<Value> {
        if let Some(v) = self.run.cli_vars.get(name) {
            return Some(Value::String(v.clone()));
        }
        if let Some(v) = self.vars.get(name) {
            return Some(v.clone());
        }
        self.run.builtin(name)
    }
}

/// Shared run values behind an `Arc` for the scenario tasks.
pub type SharedRunValues = Arc<RunValues>;

#[cfg(test)]
mod tests {
    use super::*;

    fn decode(part: &str) -> Value {
        serde_json::from_slice(&URL_SAFE_NO_PAD.decode(part).unwrap()).unwrap()
    }

    #[test]
    fn tokens_verify_as_intended() {
        let secret = "s3cret";
        let verify = |t: &str| {
            let mut v = jsonwebtoken::Validation::new(Algorithm::HS256);
            v.leeway = 0;
            jsonwebtoken::decode::<Value>(
                t,
                &jsonwebtoken::DecodingKey::from_secret(secret.as_bytes()),
                &v,
            )
        };
        let t = mint(TokenKind::Valid, "alice", Some(secret), TOKEN_TTL).unwrap();
        let claims = verify(&t).unwrap().claims;
        assert_eq!(claims["sub"], "alice");
        assert!(claims.get("admin").is_none());
        let t = mint(TokenKind::Admin, "root", Some(secret), TOKEN_TTL).unwrap();
        assert_eq!(verify(&t).unwrap().claims["admin"], true);
        let t = mint(TokenKind::Expired, "alice", Some(secret), TOKEN_TTL).unwrap();
        assert_eq!(
            verify(&t).unwrap_err().kind(),
            &jsonwebtoken::errors::ErrorKind::ExpiredSignature
        );
        let t = mint(TokenKind::NotYetValid, "alice", Some(secret), TOKEN_TTL).unwrap();
        let claims = verify(&t).unwrap().claims;
        let (nbf, iat, exp) = (
            claims["nbf"].as_u64().unwrap(),
            claims["iat"].as_u64().unwrap(),
            claims["exp"].as_u64().unwrap(),
        );
        assert_eq!(nbf, iat + 3600, "{claims}");
        assert!(exp > nbf, "{claims}");
        assert_eq!(
            TokenKind::from_prefix("jwt_not_yet_valid"),
            Some(TokenKind::NotYetValid)
        );
        let t = mint(TokenKind::BadSignature, "alice", Some(secret), TOKEN_TTL).unwrap();
        assert_eq!(
            verify(&t).unwrap_err().kind(),
            &jsonwebtoken::errors::ErrorKind::InvalidSignature
        );
        let t = mint(TokenKind::AlgNone, "alice", None, TOKEN_TTL).unwrap();
        let parts: Vec<&str> = t.split('.').collect();
        assert_eq!(parts.len(), 3);
        assert_eq!(decode(parts[0])["alg"], "none");
        assert_eq!(decode(parts[1])["sub"], "alice");
        assert_eq!(parts[2], "");
        assert!(mint(TokenKind::Valid, "alice", None, TOKEN_TTL).is_none());
    }

    #[test]
    fn custom_claims_repeat_and_env_defaults() {
        let run = RunValues {
            jwt_secret: Some("s3cret".into()),
            claims: [
                ("customer_id".to_owned(), json!("c-1")),
                ("sub".to_owned(), json!("x")),
            ]
            .into_iter()
            .collect(),
            ..Default::default()
        };
        let t = run.builtin("jwt:alice").unwrap();
        let payload = decode(t.as_str().unwrap().split('.').nth(1).unwrap());
        assert_eq!(payload["customer_id"], "c-1");
        // The builtin's own claims win over configured ones.
        assert_eq!(payload["sub"], "alice");
        assert_eq!(run.builtin("repeat:3:ab"), Some(json!("ababab")));
        assert_eq!(
            run.builtin("repeat:1100000:a")
                .unwrap()
                .as_str()
                .unwrap()
                .len(),
            1_100_000
        );
        assert_eq!(run.builtin("repeat:x:a"), None);
        assert_eq!(
            run.builtin("env:WSCHAT_SURELY_UNSET_VAR:-fallback"),
            Some(json!("fallback"))
        );
        assert_eq!(run.builtin("env:WSCHAT_SURELY_UNSET_VAR"), None);
    }

    #[test]
    fn lookup_order() {
        let run = RunValues {
            target: "ws://t".into(),
            http_base: "http://t".into(),
            cli_vars: [("user".to_owned(), "cli".to_owned())].into(),
            ..Default::default()
        };
        let vars: BTreeMap<String, Value> = [
            ("user".to_owned(), json!("file")),
            ("n".to_owned(), json!(3)),
        ]
        .into();
        let mut captures = BTreeMap::new();
        let r = ScenarioResolver {
            run: &run,
            vars: &vars,
            captures: &captures,
        };
        assert_eq!(r.resolve("user"), Some(json!("cli")));
        assert_eq!(r.resolve("n"), Some(json!(3)));
        assert_eq!(r.resolve("target"), Some(json!("ws://t")));
        assert_eq!(r.resolve("token"), None);
        assert_eq!(r.resolve("nope"), None);
        let a = r.resolve("uuid").unwrap();
        assert_ne!(a, r.resolve("uuid").unwrap());
        captures.insert("n".to_owned(), json!(4));
        let r = ScenarioResolver {
            run: &run,
            vars: &vars,
            captures: &captures,
        };
        assert_eq!(r.resolve("n"), Some(json!(4)));
    }
}
