//! Tokens: HS256 JWTs with `sub` and `exp`, and `nbf` when present (section 3). Minting for tests
//! and the dev endpoint, verification, and finding a token on a request.

use std::collections::HashMap;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use http::HeaderMap;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};

/// The claims the server reads. Unknown claims are ignored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Claims {
    pub sub: String,
    pub exp: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub iat: Option<u64>,
    /// Not before (RFC 7519 §4.1.5): the token MUST NOT be accepted earlier, give or take
    /// [`NBF_LEEWAY`].
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub admin: Option<bool>,
}

/// How far in the future a token's `nbf` may lie and the token still be accepted: clock skew
/// between the issuer and this server (docs/PROTOCOL.md section 3). `exp` has no leeway.
pub const NBF_LEEWAY: Duration = Duration::from_secs(30);

impl Claims {
    pub fn is_admin(&self) -> bool {
        self.admin == Some(true)
    }
}

/// Why a presented token was refused; maps one to one onto the protocol codes.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AuthError {
    #[error("token is invalid: {0}")]
    Invalid(String),
    #[error("token has expired")]
    Expired,
}

impl AuthError {
    pub fn code(&self) -> &'static str {
        match self {
            AuthError::Invalid(_) => "AUTH_INVALID",
            AuthError::Expired => "AUTH_EXPIRED",
        }
    }
}

fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

/// Mints an HS256 token for `user_id` valid for `ttl` (claims `sub`, `exp`, `iat`, and `admin` when set).
pub fn mint_token(secret: &str, user_id: &str, admin: bool, ttl: Duration) -> String {
    let iat = now_secs();
    let claims = Claims {
        sub: user_id.to_owned(),
        exp: iat.saturating_add(ttl.as_secs()),
        iat: Some(iat),
        nbf: None,
        admin: admin.then_some(true),
    };
    // Encoding HS256 claims with an HMAC key cannot fail: the key family matches the algorithm and
    // the claims always serialize.
    jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &claims,
        &EncodingKey::from_secret(secret.as_bytes()),
    )
    .expect("HS256 encoding of plain claims")
}

/// Verifies `token` (HS256 only, `sub` and `exp` required, no leeway on `exp`; an `nbf` more than
/// [`NBF_LEEWAY`] ahead is refused).
pub fn verify_token(secret: &str, token: &str) -> Result<Claims, AuthError> {
    let mut validation = Validation::new(Algorithm::HS256);
    validation.set_required_spec_claims(&["exp", "sub"]);
    // A token a second past its `exp` is expired: scenarios mint tokens that expired moments ago.
    validation.leeway = 0;
    let data = jsonwebtoken::decode::<Claims>(
        token,
        &DecodingKey::from_secret(secret.as_bytes()),
        &validation,
    )
    .map_err(|e| match e.kind() {
        ErrorKind::ExpiredSignature => AuthError::Expired,
        ErrorKind::InvalidSignature => AuthError::Invalid("bad signature".into()),
        ErrorKind::InvalidAlgorithm
        | ErrorKind::InvalidAlgorithmName
        | ErrorKind::MissingAlgorithm => AuthError::Invalid("algorithm must be HS256".into()),
        ErrorKind::MissingRequiredClaim(c) => AuthError::Invalid(format!("missing claim '{c}'")),
        ErrorKind::InvalidToken | ErrorKind::Base64(_) | ErrorKind::Utf8(_) => {
            AuthError::Invalid("malformed token".into())
        }
        // A header naming an algorithm jsonwebtoken does not know (e.g. `none`) fails as JSON.
        ErrorKind::Json(_) => {
            AuthError::Invalid("malformed header or claims (only HS256 is accepted)".into())
        }
        other => AuthError::Invalid(format!("{other:?}")),
    })?;
    let claims = data.claims;
    // Checked here rather than by jsonwebtoken, whose one leeway would apply to `exp` too.
    if let Some(nbf) = claims.nbf {
        let now = now_secs();
        if nbf > now.saturating_add(NBF_LEEWAY.as_secs()) {
            return Err(AuthError::Invalid(format!(
                "not valid yet: its 'nbf' is {} s ahead",
                nbf - now
            )));
        }
    }
    if claims.sub.is_empty() || claims.sub.chars().count() > 128 {
        return Err(AuthError::Invalid(
            "claim 'sub' must be 1 to 128 characters".into(),
        ));
    }
    Ok(claims)
}

/// Tokens that verified under one secret, with their claims: clients reconnect with the same token,
/// and checking an HS256 signature (base64, HMAC, two JSON documents) was the largest cost of a
/// WebSocket handshake. Only a success is kept, and only its expiry can change later (under the same
/// secret the same token verifies the same way), so a hit re-checks `exp` as [`verify_token`] does.
pub struct VerifiedTokens {
    secret: String,
    map: std::sync::Mutex<HashMap<String, Claims>>,
}

/// Entries kept at most; the cache starts over when full (a bound, not a policy).
const VERIFIED_TOKENS_MAX: usize = 1024;

impl VerifiedTokens {
    pub fn new(secret: &str) -> VerifiedTokens {
        VerifiedTokens {
            secret: secret.to_owned(),
            map: std::sync::Mutex::new(HashMap::new()),
        }
    }

    /// [`verify_token`] with this cache's secret, remembering successes.
    pub fn verify(&self, token: &str) -> Result<Claims, AuthError> {
        let lock = || self.map.lock().unwrap_or_else(|p| p.into_inner());
        let hit = lock().get(token).cloned();
        if let Some(c) = hit {
            // `exp` with no leeway, as jsonwebtoken checks it: expired once `exp` < now.
            if c.exp < now_secs() {
                lock().remove(token);
                return Err(AuthError::Expired);
            }
            return Ok(c);
        }
        let claims = verify_token(&self.secret, token)?;
        let mut map = lock();
        if map.len() >= VERIFIED_TOKENS_MAX {
            map.clear();
        }
        map.insert(token.to_owned(), claims.clone());
        Ok(claims)
    }
}

/// Removes an optional `Bearer ` prefix (case-insensitive scheme, as HTTP auth schemes are).
pub fn strip_bearer(value: &str) -> &str {
    let v = value.trim();
    match v.get(..7) {
        Some(p) if p.eq_ignore_ascii_case("bearer ") => v[7..].trim_start(),
        _ => v,
    }
}

/// The token presented on a handshake or REST call: the `Authorization` header first, then the
/// `token` query parameter, then `api_key`. `None` means no credentials were presented at all.
pub fn token_from_request(headers: &HeaderMap, query: &HashMap<String, String>) -> Option<String> {
    if let Some(h) = headers.get(http::header::AUTHORIZATION) {
        // A header that is not valid text is still a presented (and invalid) credential.
        let raw = h.to_str().unwrap_or("");
        return Some(strip_bearer(raw).to_owned());
    }
    query
        .get("token")
        .or_else(|| query.get("api_key"))
        .map(|t| t.to_owned())
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    const SECRET: &str = "unit-test-secret";

    fn b64(s: &str) -> String {
        // Small URL-safe base64 without padding, enough to hand-craft tokens in tests.
        const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let b = s.as_bytes();
        let mut out = String::new();
        for chunk in b.chunks(3) {
            let n = chunk.len();
            let v = (chunk[0] as u32) << 16
                | (*chunk.get(1).unwrap_or(&0) as u32) << 8
                | *chunk.get(2).unwrap_or(&0) as u32;
            for i in 0..=n {
                out.push(T[((v >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }

    #[test]
    fn minted_token_round_trips() {
        let t = mint_token(SECRET, "alice", true, Duration::from_secs(60));
        let c = verify_token(SECRET, &t).unwrap();
        assert_eq!(c.sub, "alice");
        assert!(c.is_admin());
        assert!(c.exp >= now_secs() + 59);
        let t = mint_token(SECRET, "bob", false, Duration::from_secs(60));
        assert!(!verify_token(SECRET, &t).unwrap().is_admin());
    }

    #[test]
    fn verified_tokens_cache_successes_and_still_expire() {
        let cache = VerifiedTokens::new(SECRET);
        let t = mint_token(SECRET, "alice", false, Duration::from_secs(60));
        assert_eq!(cache.verify(&t).unwrap().sub, "alice");
        assert_eq!(cache.verify(&t), verify_token(SECRET, &t));
        // Refusals are not kept: each is verified, and fails, again.
        let other = mint_token("other", "alice", false, Duration::from_secs(60));
        for _ in 0..2 {
            assert!(matches!(cache.verify(&other), Err(AuthError::Invalid(_))));
        }
        assert_eq!(cache.map.lock().unwrap().len(), 1);
        // A kept token whose `exp` has passed since is expired, and leaves the cache.
        cache.map.lock().unwrap().get_mut(&t).unwrap().exp = now_secs() - 1;
        assert_eq!(cache.verify(&t), Err(AuthError::Expired));
        assert!(cache.map.lock().unwrap().is_empty());
    }

    #[test]
    fn a_token_not_valid_yet_is_refused_beyond_the_leeway() {
        let with_nbf = |nbf: u64| {
            let claims = Claims {
                sub: "a".into(),
                exp: now_secs() + 7200,
                iat: None,
                nbf: Some(nbf),
                admin: None,
            };
            jsonwebtoken::encode(
                &Header::new(Algorithm::HS256),
                &claims,
                &EncodingKey::from_secret(SECRET.as_bytes()),
            )
            .unwrap()
        };
        let e = verify_token(SECRET, &with_nbf(now_secs() + 3600)).unwrap_err();
        assert!(
            matches!(&e, AuthError::Invalid(m) if m.contains("'nbf'")),
            "{e:?}"
        );
        assert_eq!(e.code(), "AUTH_INVALID");
        // Within the leeway (clock skew) and in the past: accepted.
        let skew = NBF_LEEWAY.as_secs() - 10;
        assert!(verify_token(SECRET, &with_nbf(now_secs() + skew)).is_ok());
        assert!(verify_token(SECRET, &with_nbf(now_secs() - 60)).is_ok());
        // The cache refuses it too (a refusal is never kept).
        let cache = VerifiedTokens::new(SECRET);
        assert!(cache.verify(&with_nbf(now_secs() + 3600)).is_err());
    }

    #[test]
    fn wrong_secret_is_invalid() {
        let t = mint_token("other", "alice", false, Duration::from_secs(60));
        assert!(matches!(
            verify_token(SECRET, &t),
            Err(AuthError::Invalid(_))
        ));
    }

    #[test]
    fn expired_is_expired() {
        let claims = Claims {
            sub: "a".into(),
            exp: now_secs() - 10,
            iat: None,
            nbf: None,
            admin: None,
        };
        let t = jsonwebtoken::encode(
            &Header::new(Algorithm::HS256),
            &claims,
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap();
        assert_eq!(verify_token(SECRET, &t), Err(AuthError::Expired));
        assert_eq!(AuthError::Expired.code(), "AUTH_EXPIRED");
    }

    #[test]
    fn alg_none_and_other_algorithms_are_invalid() {
        let body = b64(&format!(r#"{{"sub":"a","exp":{}}}"#, now_secs() + 100));
        let none = format!("{}.{}.", b64(r#"{"alg":"none","typ":"JWT"}"#), body);
        assert!(matches!(
            verify_token(SECRET, &none),
            Err(AuthError::Invalid(_))
        ));
        let hs512 = jsonwebtoken::encode(
            &Header::new(Algorithm::HS512),
            &Claims {
                sub: "a".into(),
                exp: now_secs() + 100,
                iat: None,
                nbf: None,
                admin: None,
            },
            &EncodingKey::from_secret(SECRET.as_bytes()),
        )
        .unwrap();
        assert!(matches!(
            verify_token(SECRET, &hs512),
            Err(AuthError::Invalid(_))
        ));
    }

    #[test]
    fn missing_sub_or_exp_is_invalid() {
        #[derive(Serialize)]
        struct NoSub {
            exp: u64,
        }
        #[derive(Serialize)]
        struct NoExp {
            sub: String,
        }
        let key = EncodingKey::from_secret(SECRET.as_bytes());
        let h = Header::new(Algorithm::HS256);
        let t = jsonwebtoken::encode(
            &h,
            &NoSub {
                exp: now_secs() + 100,
            },
            &key,
        )
        .unwrap();
        assert!(matches!(
            verify_token(SECRET, &t),
            Err(AuthError::Invalid(_))
        ));
        let t = jsonwebtoken::encode(&h, &NoExp { sub: "a".into() }, &key).unwrap();
        assert!(matches!(
            verify_token(SECRET, &t),
            Err(AuthError::Invalid(_))
        ));
        assert!(matches!(
            verify_token(SECRET, "garbage"),
            Err(AuthError::Invalid(_))
        ));
        assert!(matches!(
            verify_token(SECRET, ""),
            Err(AuthError::Invalid(_))
        ));
    }

    #[test]
    fn extraction_prefers_header_then_token_then_api_key() {
        let mut q = HashMap::new();
        let mut h = HeaderMap::new();
        assert_eq!(token_from_request(&h, &q), None);
        q.insert("api_key".to_string(), "k".to_string());
        assert_eq!(token_from_request(&h, &q).as_deref(), Some("k"));
        q.insert("token".to_string(), "t".to_string());
        assert_eq!(token_from_request(&h, &q).as_deref(), Some("t"));
        h.insert(
            http::header::AUTHORIZATION,
            HeaderValue::from_static("Bearer hdr"),
        );
        assert_eq!(token_from_request(&h, &q).as_deref(), Some("hdr"));
        assert_eq!(strip_bearer("bearer  x"), "x");
        assert_eq!(strip_bearer("x"), "x");
    }
}
