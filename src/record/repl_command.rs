//! The input language of `record --interactive`: one command per line.

use std::time::Duration;

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine as _;

/// The help text (`:help`).
pub const HELP: &str = "\
commands (one per line; ${env:NAME} and ${env:NAME:-default} are replaced first):
  {...} or [...]            send the line as a text frame (JSON; sent even when it does not parse)
  any text                  send it as a text frame (plain-text protocols)
  :text TEXT                send TEXT verbatim (also text starting with { or :)
  :binary BASE64            send a binary frame
  :ping [PAYLOAD]           send a Ping control frame (its pong is recorded)
  :close [CODE [REASON]]    close the newest connection (default 1000) and wait for the server's close
  :connect [PATH|URL]       open another connection (a path on the target's origin; none: the target)
  :http METHOD PATH|URL [BODY]  an HTTP request (a JSON BODY is sent as application/json)
  :wait [DURATION]          wait until the server is quiet for --settle (at most DURATION or --timeout)
  :wait TYPE [DURATION]     wait for a received event whose discriminator is TYPE
  :wait close [DURATION]    wait for the server to close
  :sleep DURATION           wait, recording what arrives
  :help, :quit              this text; end the session (also end of input)";

/// What `:wait` waits for; each with an optional bound.
#[derive(Debug, Clone, PartialEq)]
pub enum Wait {
    Quiet(Option<Duration>),
    Type(String, Option<Duration>),
    Close(Option<Duration>),
}

impl Wait {
    pub fn label(&self) -> String {
        match self {
            Wait::Quiet(_) => "silence".into(),
            Wait::Type(t, _) => format!("an event of type {t:?}"),
            Wait::Close(_) => "the server's close".into(),
        }
    }
}

#[derive(Debug, Clone, PartialEq)]
pub enum Command {
    Json(String),
    Text(String),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Close(u16, String),
    Connect(Option<String>),
    Http {
        method: String,
        target: String,
        body: Option<String>,
    },
    Wait(Wait),
    Sleep(Duration),
    Help,
    Quit,
}

/// `${env:NAME}` / `${env:NAME:-default}` replaced; `$${` keeps a literal `${`.
pub fn render_env(s: &str) -> Result<String, String> {
    let mut out = String::new();
    let mut rest = s;
    while let Some(i) = rest.find("${") {
        if i > 0 && rest[..i].ends_with('$') {
            out.push_str(&rest[..i - 1]);
            out.push_str("${");
            rest = &rest[i + 2..];
            continue;
        }
        out.push_str(&rest[..i]);
        let after = &rest[i + 2..];
        let Some(end) = after.find('}') else {
            return Err(format!("unclosed ${{ in {s:?}"));
        };
        let inner = &after[..end];
        let Some(spec) = inner.strip_prefix("env:") else {
            return Err(format!(
                "${{{inner}}}: only ${{env:NAME}} and ${{env:NAME:-default}} are known here"
            ));
        };
        let (name, default) = match spec.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (spec, None),
        };
        match (std::env::var(name).ok().filter(|v| !v.is_empty()), default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => return Err(format!("environment variable {name} is not set")),
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
}

fn duration(s: &str) -> Result<Duration, String> {
    crate::scenario::load::parse_duration(s)
}

/// Parses one input line; `Ok(None)` for a blank line.
pub fn parse(line: &str) -> Result<Option<Command>, String> {
    let line = line.strip_suffix('\r').unwrap_or(line);
    if line.trim().is_empty() {
        return Ok(None);
    }
    let Some(cmd) = line.strip_prefix(':') else {
        let text = render_env(line)?;
        let t = text.trim_start();
        return Ok(Some(if t.starts_with('{') || t.starts_with('[') {
            if serde_json::from_str::<serde_json::Value>(&text).is_err() {
                eprintln!("note: this line is not valid JSON; it is sent as typed");
            }
            Command::Json(text)
        } else {
            Command::Text(text)
        }));
    };
    let (name, arg) = match cmd.split_once(char::is_whitespace) {
        Some((n, a)) => (n, a.trim()),
        None => (cmd, ""),
    };
    let arg_opt = (!arg.is_empty()).then_some(arg);
    Ok(Some(match name {
        "text" => Command::Text(render_env(arg)?),
        "binary" => Command::Binary(
            B64.decode(render_env(arg)?.trim())
                .map_err(|e| format!(":binary takes base64: {e}"))?,
        ),
        "ping" => Command::Ping(render_env(arg)?.into_bytes()),
        "close" => {
            let (code, reason) = match arg.split_once(char::is_whitespace) {
                Some((c, r)) => (c, r.trim()),
                None => (arg, ""),
            };
            let code = if code.is_empty() {
                1000
            } else {
                code.parse::<u16>()
                    .map_err(|_| format!(":close takes a close code (1000, 4000, ...), got {code:?}"))?
            };
            Command::Close(code, reason.to_owned())
        }
        "connect" => Command::Connect(arg_opt.map(render_env).transpose()?),
        "http" => {
            let mut parts = arg.splitn(3, char::is_whitespace);
            let (Some(method), Some(target)) = (parts.next(), parts.next()) else {
                return Err(":http takes METHOD PATH|URL [BODY]".into());
            };
            if method.is_empty() || target.is_empty() {
                return Err(":http takes METHOD PATH|URL [BODY]".into());
            }
            Command::Http {
                method: method.to_ascii_uppercase(),
                target: render_env(target)?,
                body: parts.next().map(|b| render_env(b.trim())).transpose()?,
            }
        }
        "wait" => {
            let mut parts = arg.split_whitespace();
            match (parts.next(), parts.next()) {
                (None, _) => Command::Wait(Wait::Quiet(None)),
                (Some(a), None) => match duration(a) {
                    Ok(d) => Command::Wait(Wait::Quiet(Some(d))),
                    Err(_) if a == "close" => Command::Wait(Wait::Close(None)),
                    Err(_) => Command::Wait(Wait::Type(a.to_owned(), None)),
                },
                (Some(a), Some(b)) => {
                    let d = Some(duration(b)?);
                    if a == "close" {
                        Command::Wait(Wait::Close(d))
                    } else {
                        Command::Wait(Wait::Type(a.to_owned(), d))
                    }
                }
            }
        }
        "sleep" => Command::Sleep(duration(arg)?),
        "help" => Command::Help,
        "quit" | "exit" => Command::Quit,
        other => {
            return Err(format!(
                "unknown command :{other} (known: :text :binary :ping :close :connect :http :wait :sleep :help :quit)"
            ))
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines() {
        assert_eq!(parse("").unwrap(), None);
        assert_eq!(
            parse(r#"{"type":"x"}"#).unwrap(),
            Some(Command::Json(r#"{"type":"x"}"#.into()))
        );
        assert_eq!(parse("{bad").unwrap(), Some(Command::Json("{bad".into())));
        assert_eq!(
            parse("hello there").unwrap(),
            Some(Command::Text("hello there".into()))
        );
        assert_eq!(parse(":text {x").unwrap(), Some(Command::Text("{x".into())));
        assert_eq!(
            parse(":close").unwrap(),
            Some(Command::Close(1000, String::new()))
        );
        assert_eq!(
            parse(":close 4000 bye now").unwrap(),
            Some(Command::Close(4000, "bye now".into()))
        );
        assert_eq!(
            parse(":wait").unwrap(),
            Some(Command::Wait(Wait::Quiet(None)))
        );
        assert_eq!(
            parse(":wait 2s").unwrap(),
            Some(Command::Wait(Wait::Quiet(Some(Duration::from_secs(2)))))
        );
        assert_eq!(
            parse(":wait token").unwrap(),
            Some(Command::Wait(Wait::Type("token".into(), None)))
        );
        assert_eq!(
            parse(":wait close 1s").unwrap(),
            Some(Command::Wait(Wait::Close(Some(Duration::from_secs(1)))))
        );
        assert_eq!(
            parse(r#":http post /api {"a":1}"#).unwrap(),
            Some(Command::Http {
                method: "POST".into(),
                target: "/api".into(),
                body: Some(r#"{"a":1}"#.into())
            })
        );
        assert!(parse(":frobnicate")
            .unwrap_err()
            .contains("unknown command :frobnicate"));
        assert!(parse(":close abc").is_err());
        assert!(parse(":http GET").is_err());
    }

    #[test]
    fn env_templates() {
        std::env::set_var("WSCHAT_REPL_TEST_VAR", "v1");
        assert_eq!(
            render_env("a ${env:WSCHAT_REPL_TEST_VAR} b").unwrap(),
            "a v1 b"
        );
        assert_eq!(render_env("${env:WSCHAT_REPL_UNSET:-d}").unwrap(), "d");
        assert_eq!(render_env("$${env:X}").unwrap(), "${env:X}");
        assert!(render_env("${env:WSCHAT_REPL_UNSET}")
            .unwrap_err()
            .contains("not set"));
        assert!(render_env("${jwt:x}").is_err());
    }
}
