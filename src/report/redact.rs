//! Secret redaction, applied to every result before any reporter sees it.
//!
//! Named secrets (`--secret NAME=VALUE`, `WSCHAT_TOKEN`) are replaced by `***NAME***`.
//! Independently of configuration, `Authorization` header values, `token`/`api_key` query
//! parameter values and JWT-looking strings are always replaced, because a report is the kind
//! of file that gets attached to bug reports.

use std::borrow::Cow;

use regex::{Captures, Regex};
use serde_json::Value;

use crate::runner::{RunEvent, RunInfo, ScenarioResult};

use super::ReportError;

/// Environment variables whose values are always treated as secrets.
pub const ENV_SECRETS: &[&str] = &["WSCHAT_TOKEN"];

/// The shortest value redacted as a named secret, in characters. A shorter one would rewrite
/// ordinary text that merely contains it (`WSCHAT_TOKEN=x` turned `text-turn` into
/// `te***WSCHAT_TOKEN***t-turn`): `--secret` refuses it, other sources (`WSCHAT_TOKEN`, a
/// credential-named `--var`) are not redacted, with a warning. A value that short is no real
/// secret either.
pub const MIN_SECRET_LEN: usize = 8;

/// A named secret value.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret {
    pub name: String,
    pub value: String,
}

impl std::fmt::Debug for Secret {
    // Never print the value, even in debug output.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Secret({}=***)", self.name)
    }
}

impl Secret {
    pub fn new(name: impl Into<String>, value: impl Into<String>) -> Self {
        Secret {
            name: name.into(),
            value: value.into(),
        }
    }

    /// Parses a `--secret NAME=VALUE` argument.
    pub fn parse_arg(arg: &str) -> Result<Self, ReportError> {
        let err = |message: &str| ReportError::Secret {
            // The argument holds the secret: show only its name part.
            arg: arg.split('=').next().unwrap_or("").to_string() + "=…",
            message: message.to_string(),
        };
        let (name, value) = arg
            .split_once('=')
            .ok_or_else(|| err("expected NAME=VALUE"))?;
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
        {
            return Err(err("NAME must be letters, digits, '_' or '-'"));
        }
        if value.is_empty() {
            return Err(err("VALUE is empty"));
        }
        if value.chars().count() < MIN_SECRET_LEN {
            return Err(err(&format!(
                "VALUE is shorter than {MIN_SECRET_LEN} characters: too short to redact safely (it would rewrite ordinary text such as scenario names)"
            )));
        }
        Ok(Secret::new(name, value))
    }
}

impl std::str::FromStr for Secret {
    type Err = ReportError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Secret::parse_arg(s)
    }
}

pub struct Redactor {
    /// (needle, replacement); longest needle first so a secret that contains another is
    /// replaced whole.
    needles: Vec<(String, String)>,
    /// Names of secrets left out because their value is shorter than [`MIN_SECRET_LEN`].
    too_short: Vec<String>,
    authorization: Regex,
    query: Regex,
    jwt: Regex,
}

impl std::fmt::Debug for Redactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Redactor")
            .field("secrets", &self.needles.len())
            .finish()
    }
}

impl Default for Redactor {
    fn default() -> Self {
        Redactor::new([])
    }
}

impl Redactor {
    pub fn new(secrets: impl IntoIterator<Item = Secret>) -> Self {
        let mut r = Redactor {
            needles: Vec::new(),
            too_short: Vec::new(),
            // `Authorization: Bearer x`, `"authorization":"x"`, `authorization=x`; the value
            // runs to the end of the quoted string, line or field.
            authorization: Regex::new(r#"(?i)(authorization["']?\s*[:=]\s*["']?)([^"'\r\n,;}&]+)"#)
                .expect("static regex"),
            query: Regex::new(r#"(?i)([?&](token|api_key|apikey|access_token)=)([^&#\s"'<>]+)"#)
                .expect("static regex"),
            jwt: Regex::new(r"\beyJ[A-Za-z0-9_-]+\.[A-Za-z0-9_-]+\.[A-Za-z0-9_-]*")
                .expect("static regex"),
        };
        for s in secrets {
            r.add(s);
        }
        r
    }

    pub fn add(&mut self, secret: Secret) {
        if secret.value.is_empty() {
            return;
        }
        if secret.value.chars().count() < MIN_SECRET_LEN {
            if !self.too_short.contains(&secret.name) {
                self.too_short.push(secret.name);
            }
            return;
        }
        let replacement = format!("***{}***", secret.name);
        // Frames hold raw JSON text, where a secret with quotes or backslashes appears escaped.
        let escaped = serde_json::to_string(&secret.value).expect("string serializes");
        let escaped = &escaped[1..escaped.len() - 1];
        if escaped != secret.value {
            self.needles
                .push((escaped.to_string(), replacement.clone()));
        }
        self.needles.push((secret.value, replacement));
        self.needles.sort_by_key(|n| std::cmp::Reverse(n.0.len()));
        self.needles.dedup_by(|a, b| a.0 == b.0);
    }

    /// Adds the values of [`ENV_SECRETS`] that are set.
    pub fn add_env_tokens(&mut self) {
        self.add_env_tokens_with(|name| std::env::var(name).ok());
    }

    /// One line per secret that is not redacted because it is too short (empty when all are).
    pub fn warnings(&self) -> Vec<String> {
        self.too_short
            .iter()
            .map(|name| {
                format!(
                    "warning: the value of {name} is shorter than {MIN_SECRET_LEN} characters and is not redacted from reports: a value that short would rewrite ordinary text (such as scenario names)"
                )
            })
            .collect()
    }

    /// [`Redactor::add_env_tokens`] reading variables through `get`.
    pub fn add_env_tokens_with(&mut self, get: impl Fn(&str) -> Option<String>) {
        for name in ENV_SECRETS {
            if let Some(v) = get(name) {
                self.add(Secret::new(*name, v));
            }
        }
    }

    pub fn redact_str<'a>(&self, s: &'a str) -> Cow<'a, str> {
        let mut out: Cow<'a, str> = Cow::Borrowed(s);
        for (needle, replacement) in &self.needles {
            if out.contains(needle.as_str()) {
                out = Cow::Owned(out.replace(needle.as_str(), replacement));
            }
        }
        out = replace_cow(out, &self.authorization, |c: &Captures| {
            format!("{}***AUTHORIZATION***", &c[1])
        });
        out = replace_cow(out, &self.query, |c: &Captures| {
            format!("{}***{}***", &c[1], c[2].to_ascii_uppercase())
        });
        out = replace_cow(out, &self.jwt, |_: &Captures| "***JWT***".to_string());
        out
    }

    pub fn redact_string(&self, s: &mut String) {
        if let Cow::Owned(new) = self.redact_str(s) {
            *s = new;
        }
    }

    fn redact_opt(&self, s: &mut Option<String>) {
        if let Some(s) = s {
            self.redact_string(s);
        }
    }

    pub fn redact_value(&self, v: &mut Value) {
        match v {
            Value::String(s) => self.redact_string(s),
            Value::Array(a) => a.iter_mut().for_each(|v| self.redact_value(v)),
            Value::Object(o) => {
                for (k, v) in o.iter_mut() {
                    if k.eq_ignore_ascii_case("authorization") && v.is_string() {
                        *v = Value::String("***AUTHORIZATION***".into());
                    } else {
                        self.redact_value(v);
                    }
                }
            }
            _ => {}
        }
    }

    pub fn redact_result(&self, r: &mut ScenarioResult) {
        self.redact_string(&mut r.name);
        self.redact_opt(&mut r.description);
        self.redact_opt(&mut r.skip_reason);
        r.tags.iter_mut().for_each(|t| self.redact_string(t));
        for s in &mut r.steps {
            self.redact_opt(&mut s.name);
        }
        for f in &mut r.failures {
            self.redact_string(&mut f.message);
            self.redact_opt(&mut f.expected);
            f.detail.iter_mut().for_each(|d| self.redact_string(d));
            if let Some(step) = &mut f.step {
                self.redact_opt(&mut step.name);
            }
            if let Some(s) = &mut f.schema {
                self.redact_string(&mut s.message);
                self.redact_opt(&mut s.event_type);
            }
        }
        for t in &mut r.transcripts {
            self.redact_string(&mut t.url);
            for fr in &mut t.frames {
                self.redact_opt(&mut fr.text);
                self.redact_opt(&mut fr.note);
                if let Some(j) = &mut fr.json {
                    self.redact_value(j);
                }
            }
        }
    }

    pub fn redact_run_info(&self, info: &mut RunInfo) {
        self.redact_string(&mut info.target);
    }

    pub fn redact_event(&self, event: &mut RunEvent) {
        match event {
            RunEvent::RunStarted(info) => self.redact_run_info(info),
            RunEvent::ScenarioStarted { name, .. } => self.redact_string(name),
            RunEvent::ScenarioFinished { result, .. } => self.redact_result(result),
            RunEvent::RunFinished(_) => {}
        }
    }
}

fn replace_cow<'a>(
    s: Cow<'a, str>,
    re: &Regex,
    rep: impl FnMut(&Captures) -> String,
) -> Cow<'a, str> {
    match re.replace_all(&s, rep) {
        Cow::Borrowed(_) => s,
        Cow::Owned(o) => Cow::Owned(o),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::sample;

    const JWT: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJl";

    #[test]
    fn named_secrets_are_replaced_longest_first() {
        let r = Redactor::new([
            Secret::new("SHORT", "abcdefgh"),
            Secret::new("LONG", "abcdefghijkl"),
        ]);
        assert_eq!(
            r.redact_str("x abcdefghijkl y abcdefgh"),
            "x ***LONG*** y ***SHORT***"
        );
        assert!(matches!(r.redact_str("nothing here"), Cow::Borrowed(_)));
    }

    #[test]
    fn json_escaped_secret_is_replaced_in_raw_frames() {
        let r = Redactor::new([Secret::new("PW", "pass\"word")]);
        assert_eq!(
            r.redact_str(r#"{"pw":"pass\"word"}"#),
            r#"{"pw":"***PW***"}"#
        );
    }

    #[test]
    fn authorization_values_are_always_redacted() {
        let r = Redactor::default();
        assert_eq!(
            r.redact_str("GET /ws\r\nAuthorization: Bearer abc.def\r\nHost: x"),
            "GET /ws\r\nAuthorization: ***AUTHORIZATION***\r\nHost: x"
        );
        assert_eq!(
            r.redact_str(r#"{"authorization": "Basic Zm9v", "x": 1}"#),
            r#"{"authorization": "***AUTHORIZATION***", "x": 1}"#
        );
        // Prose that merely mentions the header stays readable.
        assert_eq!(
            r.redact_str("Authorization header missing"),
            "Authorization header missing"
        );
    }

    #[test]
    fn token_query_parameters_are_redacted() {
        let r = Redactor::default();
        assert_eq!(
            r.redact_str("ws://h/ws?session=1&token=s3cr3t&x=2"),
            "ws://h/ws?session=1&token=***TOKEN***&x=2"
        );
        assert_eq!(
            r.redact_str("ws://h/ws?api_key=k#frag"),
            "ws://h/ws?api_key=***API_KEY***#frag"
        );
        // A parameter that only ends in "token" is not a token parameter.
        assert_eq!(r.redact_str("ws://h/?mytoken=v"), "ws://h/?mytoken=v");
    }

    #[test]
    fn jwts_are_redacted_anywhere() {
        let r = Redactor::default();
        let s = format!(r#"{{"type":"auth","token":"Bearer {JWT}"}}"#);
        assert_eq!(
            r.redact_str(&s),
            r#"{"type":"auth","token":"Bearer ***JWT***"}"#
        );
        assert_eq!(r.redact_str("eyJnot-a-jwt"), "eyJnot-a-jwt");
    }

    #[test]
    fn json_values_redact_strings_and_authorization_keys() {
        let r = Redactor::new([Secret::new("K", "sekret-value")]);
        let mut v =
            serde_json::json!({"Authorization": "x", "a": ["sekret-value!", {"b": JWT}], "n": 1});
        r.redact_value(&mut v);
        assert_eq!(
            v,
            serde_json::json!({"Authorization": "***AUTHORIZATION***", "a": ["***K***!", {"b": "***JWT***"}], "n": 1})
        );
    }

    #[test]
    fn whole_result_is_redacted() {
        let r = Redactor::new([Secret::new("MSG", "hi <b>&</b>")]);
        let mut res = sample::failed_must();
        res.failures[0].detail.push(format!("token was {JWT}"));
        r.redact_result(&mut res);
        let text = serde_json::to_string(&res).unwrap();
        assert!(!text.contains(JWT), "{text}");
        assert!(!text.contains("Bearer abc.def"), "{text}");
        assert!(!text.contains("hi <b>"), "{text}");
        assert!(text.contains("***MSG***"), "{text}");
        assert!(text.contains("***AUTHORIZATION***"), "{text}");
        // The parsed JSON of the frame is redacted too, not only its text.
        let frame = &res.transcripts[0].frames[2];
        assert_eq!(frame.json.as_ref().unwrap()["auth"], "***JWT***");
    }

    #[test]
    fn secret_args_parse_and_never_echo_the_value() {
        let s: Secret = "API_KEY=a=b-c-d-e".parse().unwrap();
        assert_eq!(s, Secret::new("API_KEY", "a=b-c-d-e"));
        assert_eq!(format!("{s:?}"), "Secret(API_KEY=***)");
        let e = Secret::parse_arg("novalue").unwrap_err().to_string();
        assert!(e.contains("NAME=VALUE"), "{e}");
        let e = Secret::parse_arg("bad name=topsecret")
            .unwrap_err()
            .to_string();
        assert!(!e.contains("topsecret"), "{e}");
        assert!(Secret::parse_arg("EMPTY=").is_err());
        let e = Secret::parse_arg("SHORT=x").unwrap_err().to_string();
        assert!(e.contains("shorter than 8 characters"), "{e}");
        assert!(!e.contains("=x"), "{e}");
    }

    #[test]
    fn secrets_too_short_to_redact_safely_are_left_out_with_a_warning() {
        let mut r = Redactor::new([Secret::new("PIN", "1234")]);
        r.add_env_tokens_with(|n| (n == "WSCHAT_TOKEN").then(|| "x".to_owned()));
        // Ordinary text that contains the values stays as it is.
        assert_eq!(r.redact_str("text-turn 1234"), "text-turn 1234");
        let w = r.warnings();
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(w[0].contains("PIN is shorter than 8 characters"), "{w:?}");
        assert!(w[1].contains("WSCHAT_TOKEN"), "{w:?}");
        // Long enough: redacted, no warning.
        let mut r = Redactor::default();
        r.add_env_tokens_with(|_| Some("tok-123456".to_owned()));
        assert!(r.warnings().is_empty());
        assert_eq!(r.redact_str("a tok-123456"), "a ***WSCHAT_TOKEN***");
    }

    #[test]
    fn env_token_is_a_named_secret() {
        let mut r = Redactor::default();
        r.add_env_tokens_with(|name| {
            (name == "WSCHAT_TOKEN").then(|| "opaque-static-token".to_string())
        });
        assert_eq!(
            r.redact_str("sent opaque-static-token"),
            "sent ***WSCHAT_TOKEN***"
        );
    }

    #[test]
    fn run_info_target_is_redacted() {
        let r = Redactor::default();
        let mut info = sample::run_info();
        info.target = "wss://h/ws?token=abc".into();
        r.redact_run_info(&mut info);
        assert_eq!(info.target, "wss://h/ws?token=***TOKEN***");
    }
}
