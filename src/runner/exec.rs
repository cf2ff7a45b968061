//! Executes one scenario: renders vars, runs its steps in order over real connections, and builds
//! its [`ScenarioResult`].

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;
use std::time::{Duration, Instant};

use serde_json::Value;
use tokio_tungstenite::tungstenite::Message;

use super::conn::{render_frame, shorten, Checks, Conn, Pump};
use super::resolver::{ScenarioResolver, VarsResolver};
use super::result::*;
use super::RunShared;
use crate::scenario::{
    Captures, CloseCodeExpect, CloseStep, CollectStep, ConcatTarget, ConnectStep, DurationBound,
    ExpectCloseStep, ExpectNoneStep, ExpectPongStep, ExpectStep, HttpBody, HttpStep, MatchSpec,
    Matcher, Scenario, SendPayload, SendStep, Step, StepKind, Template, TemplateError,
    TimingMetric, TimingStep, Url,
};
use crate::transport::http::{capture, Body, HttpRequest};
use crate::transport::ws::{self, ConnectError, ConnectRequest};

/// How many received frames a failure shows.
const LAST_FRAMES: usize = 5;

fn failure(kind: FailureKind, message: impl Into<String>) -> Failure {
    Failure {
        kind,
        message: message.into(),
        step: None,
        expected: None,
        detail: Vec::new(),
        schema: None,
        rule: None,
        frame: None,
        conn: None,
    }
}

fn fmt_dur(d: Duration) -> String {
    humantime::format_duration(Duration::from_micros(d.as_micros() as u64 / 1000 * 1000))
        .to_string()
}

/// A render failure, with the fix when a builtin lacks its input.
fn template_failure(t: &Template, e: &TemplateError) -> Failure {
    let hint = match e {
        TemplateError::Unresolved { name } => match name.split_once(':') {
            Some((p, _)) if p.starts_with("jwt") && p != "jwt_none" => Some(
                "minting tokens needs a secret: set auth.jwt_secret in wschat-suite.yaml (the embedded server provides its own)"
                    .to_owned(),
            ),
            Some(("env", var)) => Some(format!("environment variable {var} is not set")),
            None if name == "token" => Some("auth.token is not set in wschat-suite.yaml".to_owned()),
            _ => None,
        },
        _ => None,
    };
    let mut message = format!("cannot render {t}: {e}");
    if let Some(h) = hint {
        message.push_str(&format!(" ({h})"));
    }
    failure(FailureKind::Template, message)
}

/// Why waiting for an event stopped without one.
enum WaitEnd {
    Timeout,
    Ended,
    /// The per-event checks failed.
    Checks(Vec<Failure>),
}

/// The result of a scenario that did not run (yet): status `passed`, one attempt, no steps.
fn blank_result(sc: &Scenario) -> ScenarioResult {
    ScenarioResult {
        name: sc.name.clone(),
        description: sc.description.clone(),
        location: sc.loc.to_string(),
        file: sc.loc.file.display().to_string(),
        level: sc.level,
        tags: sc.tags.clone(),
        status: Status::Passed,
        skip_reason: None,
        duration: Duration::ZERO,
        attempts: 1,
        steps: Vec::new(),
        failures: Vec::new(),
        transcripts: Vec::new(),
        timings: Vec::new(),
        http: Vec::new(),
    }
}

/// A scenario reported as skipped without running: every step `not_run`, zero attempts.
/// Used for unset `requires`, live gating and scenarios `--fail-fast` kept from starting.
pub(crate) fn skipped_result(sc: &Scenario, reason: String) -> ScenarioResult {
    let mut result = blank_result(sc);
    result.status = Status::Skipped;
    result.attempts = 0;
    result.skip_reason = Some(reason);
    result.steps = not_run(&sc.steps, 0);
    result
}

/// A scenario whose run panicked: failed, with the panic as an `internal` failure.
pub(crate) fn internal_failure(sc: &Scenario, panic: String) -> ScenarioResult {
    let mut result = blank_result(sc);
    result.status = Status::Failed;
    result.steps = not_run(&sc.steps, 0);
    result.failures.push(failure(
        FailureKind::Internal,
        format!("internal error: the harness panicked while running this scenario: {panic}"),
    ));
    result
}

/// Runs one scenario to its result.
pub(crate) async fn run_scenario(shared: Arc<RunShared>, sc: &Scenario) -> ScenarioResult {
    let started = Instant::now();
    let mut result = blank_result(sc);
    let missing: Vec<&str> = sc
        .requires
        .iter()
        .filter(|v| std::env::var_os(v).is_none_or(|x| x.is_empty()))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        return skipped_result(
            sc,
            if missing.len() == 1 {
                format!(
                    "requires environment variable {}, which is not set",
                    missing[0]
                )
            } else {
                format!(
                    "requires environment variables {}, which are not set",
                    missing.join(", ")
                )
            },
        );
    }

    let mut ex = Exec {
        checks: Checks {
            schemas: shared.schemas.clone(),
            rules: shared.rules.clone(),
            discriminator: shared.config.discriminator.clone(),
            ignore: shared.config.ignore.iter().cloned().collect(),
            start: started,
            schema_sample: shared.schema_sample,
            codec: shared.config.codec,
            timing: shared.timing.clone(),
        },
        shared: shared.clone(),
        vars: BTreeMap::new(),
        captures: BTreeMap::new(),
        conns: Vec::new(),
        retired: Vec::new(),
        http_log: Vec::new(),
    };
    match ex.render_vars(sc) {
        Ok(()) => {
            for (i, step) in sc.steps.iter().enumerate() {
                let t0 = Instant::now();
                let outcome = ex.step(step).await;
                let step_ref = StepRef {
                    index: i,
                    keyword: step.kind.keyword().to_owned(),
                    name: step.name.clone(),
                    location: step.loc.to_string(),
                };
                let ok = outcome.is_ok();
                result.steps.push(StepResult {
                    index: i,
                    keyword: step_ref.keyword.clone(),
                    name: step.name.clone(),
                    location: step_ref.location.clone(),
                    outcome: if ok {
                        StepOutcome::Passed
                    } else {
                        StepOutcome::Failed
                    },
                    duration: t0.elapsed(),
                });
                if let Err(mut fs) = outcome {
                    for f in &mut fs {
                        f.step.get_or_insert_with(|| step_ref.clone());
                    }
                    result.failures.extend(fs);
                    result.steps.extend(not_run(&sc.steps, i + 1));
                    break;
                }
            }
        }
        Err(f) => {
            result.failures.push(f);
            result.steps = not_run(&sc.steps, 0);
        }
    }
    // Frames that arrived since the last step are checked too; then the end-of-scenario rules.
    for conn in ex.conns.iter_mut().chain(ex.retired.iter_mut()) {
        conn.drain(&ex.checks);
        result.failures.extend(conn.take_pending());
        result.failures.extend(conn.finish_rules());
    }
    for conn in ex.conns.iter_mut() {
        conn.close_quietly(&ex.checks).await;
    }
    let mut conns = std::mem::take(&mut ex.retired);
    conns.append(&mut ex.conns);
    let restore_json = shared.transcript_json || !result.failures.is_empty();
    for conn in conns {
        result.timings.push(conn.timing.report(&conn.name));
        result
            .transcripts
            .push(conn.into_transcript(restore_json, &ex.checks));
    }
    result.http = std::mem::take(&mut ex.http_log);
    if !result.failures.is_empty() {
        result.status = Status::Failed;
    }
    result.duration = started.elapsed();
    result
}

fn not_run(steps: &[Step], from: usize) -> Vec<StepResult> {
    steps
        .iter()
        .enumerate()
        .skip(from)
        .map(|(i, s)| StepResult {
            index: i,
            keyword: s.kind.keyword().to_owned(),
            name: s.name.clone(),
            location: s.loc.to_string(),
            outcome: StepOutcome::NotRun,
            duration: Duration::ZERO,
        })
        .collect()
}

struct Exec {
    shared: Arc<RunShared>,
    checks: Checks,
    vars: BTreeMap<String, Value>,
    captures: BTreeMap<String, Value>,
    conns: Vec<Conn>,
    /// Connections replaced by a later `connect` with the same name (kept for their transcripts).
    retired: Vec<Conn>,
    /// The HTTP exchanges made so far (kept in the result for `record`).
    http_log: Vec<HttpExchange>,
}

type StepResultT = Result<(), Vec<Failure>>;

/// `now + d`, saturating: the loader refuses durations over `MAX_DURATION`, and a deadline past
/// what the clock can represent waits "forever" (30 years) rather than panicking.
fn deadline_after(d: Duration) -> tokio::time::Instant {
    let now = tokio::time::Instant::now();
    now.checked_add(d)
        .unwrap_or_else(|| now + Duration::from_secs(30 * 365 * 24 * 3600))
}

fn one(f: Failure) -> Vec<Failure> {
    vec![f]
}

impl Exec {
    fn render_vars(&mut self, sc: &Scenario) -> Result<(), Failure> {
        let run = &self.shared.values;
        let mut vars = BTreeMap::new();
        for (layer, what) in [(&self.shared.config.vars, "suite"), (&sc.vars, "scenario")] {
            for (k, t) in layer {
                let v = t.render(&VarsResolver { run, vars: &vars }).map_err(|e| {
                    failure(FailureKind::Template, format!("{what} var '{k}': {e}"))
                })?;
                vars.insert(k.clone(), v);
            }
        }
        self.vars = vars;
        Ok(())
    }

    fn render(&self, t: &Template) -> Result<Value, Failure> {
        t.render(&self.resolver())
            .map_err(|e| template_failure(t, &e))
    }

    fn render_string(&self, t: &Template) -> Result<String, Failure> {
        t.render_string(&self.resolver())
            .map_err(|e| template_failure(t, &e))
    }

    fn compile(&self, spec: &MatchSpec) -> Result<Matcher, Failure> {
        spec.compile(&self.resolver()).map_err(|e| {
            failure(
                FailureKind::Template,
                format!("cannot compile matcher {spec}: {e}"),
            )
        })
    }

    fn resolver(&self) -> ScenarioResolver<'_> {
        ScenarioResolver {
            run: &self.shared.values,
            vars: &self.vars,
            captures: &self.captures,
        }
    }

    fn expect_timeout(&self, step: Option<Duration>) -> Duration {
        step.unwrap_or(self.shared.expect_timeout)
    }

    fn conn_index(&self, name: &str) -> Result<usize, Failure> {
        self.conns
            .iter()
            .position(|c| c.name == name)
            .ok_or_else(|| {
                let known: Vec<&str> = self.conns.iter().map(|c| c.name.as_str()).collect();
                let mut f = failure(
                    FailureKind::Transport,
                    if known.is_empty() {
                        format!("no connection '{name}' is open (no connect step ran before)")
                    } else {
                        format!(
                            "no connection '{name}' is open (open: {})",
                            known.join(", ")
                        )
                    },
                );
                f.conn = Some(name.to_owned());
                f
            })
    }

    /// Checks the other connections' arrived frames so their violations surface promptly.
    fn drain_others(&mut self, except: usize) -> Vec<Failure> {
        let mut out = Vec::new();
        for (i, c) in self.conns.iter_mut().enumerate() {
            if i != except {
                c.drain(&self.checks);
                out.extend(c.take_pending());
            }
        }
        out
    }

    fn apply_captures(
        &mut self,
        captures: &Captures,
        v: &Value,
        what: &str,
    ) -> Result<(), Failure> {
        for (name, path) in captures {
            let got = capture(v, path).map_err(|e| {
                let mut f = failure(
                    FailureKind::Expectation,
                    format!("capture '{name}' from {what}: {e}"),
                );
                f.detail
                    .push(format!("{what}: {}", shorten(&v.to_string(), 300)));
                f
            })?;
            self.captures.insert(name.clone(), got);
        }
        Ok(())
    }

    async fn step(&mut self, step: &Step) -> StepResultT {
        // Each step's future is boxed: inline, the scenario's future would be as large as the
        // largest step (the `http` step holds reqwest's request future) for its whole life, ~8 KiB
        // per session in load mode. Boxed, a session holds only the running step's state; one
        // allocation per step is nothing next to the step's own I/O.
        let r = match &step.kind {
            StepKind::Http(s) => Box::pin(self.http(s)).await.map_err(one),
            StepKind::Connect(s) => Box::pin(self.connect(s)).await.map_err(one),
            StepKind::Send(s) => Box::pin(self.send(s)).await,
            StepKind::Expect(s) => Box::pin(self.expect(s)).await,
            StepKind::ExpectPong(s) => Box::pin(self.expect_pong(s)).await,
            StepKind::Collect(s) => Box::pin(self.collect(s)).await,
            StepKind::ExpectNone(s) => Box::pin(self.expect_none(s)).await,
            StepKind::ExpectClose(s) => Box::pin(self.expect_close(s)).await,
            StepKind::Close(s) => Box::pin(self.close(s)).await,
            StepKind::Sleep(d) => {
                tokio::time::sleep(*d).await;
                Ok(())
            }
            StepKind::Timing(s) => self.timing(s).map_err(one),
        };
        r?;
        // Violations on any connection found during this step fail it.
        let pending = self.drain_others(usize::MAX);
        if pending.is_empty() {
            Ok(())
        } else {
            Err(pending)
        }
    }

    // ---- http ----

    async fn http(&mut self, s: &HttpStep) -> Result<(), Failure> {
        let url = match &s.url {
            Url::Path(p) => join(&self.shared.values.http_base, &self.render_string(p)?),
            Url::Absolute(u) => self.render_string(u)?,
        };
        let mut headers = Vec::new();
        for (k, t) in &s.headers {
            headers.push((k.clone(), self.render_string(t)?));
        }
        let mut query = Vec::new();
        for (k, t) in &s.query {
            query.push((k.clone(), self.render_string(t)?));
        }
        let body = match &s.body {
            Some(HttpBody::Json(t)) => Some(Body::Json(self.render(t)?)),
            Some(HttpBody::Text(t)) => Some(Body::Text(self.render_string(t)?)),
            None => None,
        };
        let req = HttpRequest {
            method: s.method.clone(),
            url,
            headers,
            query,
            body,
            timeout: s.timeout.unwrap_or(self.shared.config.timeouts.http),
        };
        let sent_at = Instant::now();
        let resp = self.shared.http.execute(&req).await.map_err(|e| {
            let kind = match e {
                crate::transport::http::HttpError::Timeout { .. } => FailureKind::Timeout,
                _ => FailureKind::Http,
            };
            failure(kind, e.to_string())
        })?;
        self.http_log.push(exchange_of(
            &req,
            &resp,
            sent_at.saturating_duration_since(self.checks.start),
        ));
        let shown = format!(
            "{} {}",
            req.method.to_ascii_uppercase(),
            ws::redact_url(&req.url)
        );
        let status_ok = if s.status.is_empty() {
            (200..300).contains(&resp.status)
        } else {
            s.status.contains(&resp.status)
        };
        let expected_status = if s.status.is_empty() {
            "any 2xx".to_owned()
        } else {
            s.status
                .iter()
                .map(u16::to_string)
                .collect::<Vec<_>>()
                .join(" or ")
        };
        if !status_ok {
            let mut f = failure(
                FailureKind::Http,
                format!(
                    "{shown}: expected status {expected_status}, got {}",
                    resp.status_line
                ),
            );
            f.expected = Some(format!("status {expected_status}"));
            f.detail.push(format!("body: {}", shorten(&resp.body, 500)));
            return Err(f);
        }
        let json = resp.json.clone().unwrap_or(Value::Null);
        if let Some(spec) = &s.matcher {
            let m = self.compile(spec)?;
            if resp.json.is_none() {
                let mut f = failure(
                    FailureKind::Expectation,
                    format!("{shown}: the response body is not JSON"),
                );
                f.expected = Some(m.to_string());
                f.detail.push(format!("body: {}", shorten(&resp.body, 500)));
                return Err(f);
            }
            if let Err(mm) = m.check(&json) {
                let mut f = failure(
                    FailureKind::Expectation,
                    format!("{shown}: response body does not match: {mm}"),
                );
                f.expected = Some(m.to_string());
                f.detail.push(format!("body: {}", shorten(&resp.body, 500)));
                return Err(f);
            }
        }
        self.apply_captures(&s.capture, &json, "the response body")
    }

    // ---- connect ----

    async fn connect(&mut self, s: &ConnectStep) -> Result<(), Failure> {
        let mut url = match &s.url {
            Url::Path(p) => join(&self.shared.values.target, &self.render_string(p)?),
            Url::Absolute(u) => self.render_string(u)?,
        };
        if !s.query.is_empty() {
            let mut pairs = Vec::new();
            for (k, t) in &s.query {
                pairs.push(format!("{}={}", encode(k), encode(&self.render_string(t)?)));
            }
            url.push(if url.contains('?') { '&' } else { '?' });
            url.push_str(&pairs.join("&"));
        }
        let mut headers = Vec::new();
        for (k, t) in &s.headers {
            headers.push((k.clone(), self.render_string(t)?));
        }
        let req = ConnectRequest {
            url: url.clone(),
            headers,
            subprotocols: s.subprotocols.clone(),
            timeout: s.timeout.unwrap_or(self.shared.config.timeouts.connect),
            max_frame_bytes: self.shared.config.max_frame_bytes,
            tls: self.shared.ws_tls.clone(),
            read_buffer: self.shared.read_buffer,
        };
        let shown = ws::redact_url(&url);
        let sent_at = Instant::now();
        let attempt = ws::connect(&req).await;
        if let Err(ConnectError::Refused(r)) = &attempt {
            // A refused upgrade is an HTTP exchange: kept so `record` can write the refusal.
            self.http_log.push(refusal_exchange(
                &req,
                &s.conn,
                r,
                sent_at.saturating_duration_since(self.checks.start),
                sent_at.elapsed(),
            ));
        }
        if let Some(refusal) = &s.expect_refusal {
            return match attempt {
                Ok(conn) => {
                    let mut f = failure(
                        FailureKind::Handshake,
                        format!(
                            "expected the upgrade to be refused with {}, but the server accepted it ({} Switching Protocols)",
                            refusal.status, conn.handshake.status
                        ),
                    );
                    f.conn = Some(s.conn.clone());
                    f.expected = Some(format!("HTTP {}", refusal.status));
                    f.detail.push(format!("url: {shown}"));
                    Err(f)
                }
                Err(ConnectError::Refused(r)) => {
                    let mut f = failure(FailureKind::Handshake, String::new());
                    f.conn = Some(s.conn.clone());
                    f.detail.push(format!("body: {}", shorten(&r.body, 500)));
                    f.detail.extend(r.header_lines());
                    if r.status != refusal.status {
                        f.message = format!(
                            "expected the upgrade to be refused with {}, got {}",
                            refusal.status, r.status_line
                        );
                        if let Some(h) = r.hint() {
                            f.detail.insert(1, format!("hint: {h}"));
                        }
                        f.expected = Some(format!("HTTP {}", refusal.status));
                        return Err(f);
                    }
                    if let Some(spec) = &refusal.body {
                        let m = self.compile(spec)?;
                        let body = r.json.clone().unwrap_or(Value::Null);
                        if let Err(mm) = m.check(&body) {
                            f.kind = FailureKind::Expectation;
                            f.message = format!("refusal body does not match: {mm}");
                            f.expected = Some(m.to_string());
                            return Err(f);
                        }
                    }
                    Ok(())
                }
                Err(e) => {
                    let mut f = failure(FailureKind::Transport, e.to_string());
                    f.conn = Some(s.conn.clone());
                    f.expected = Some(format!("HTTP {} refusal", refusal.status));
                    Err(f)
                }
            };
        }
        let wsconn = match attempt {
            Ok(c) => c,
            Err(e) => {
                let kind = match &e {
                    ConnectError::Refused(_) => FailureKind::Handshake,
                    ConnectError::Timeout { .. } => FailureKind::Timeout,
                    _ => FailureKind::Transport,
                };
                let mut f = failure(kind, e.to_string());
                f.conn = Some(s.conn.clone());
                if let ConnectError::Refused(r) = &e {
                    f.expected = Some("101 Switching Protocols".into());
                    f.detail.push(format!("url: {shown}"));
                    if let Some(h) = r.hint() {
                        f.detail.push(format!("hint: {h}"));
                    }
                    f.detail.extend(r.header_lines());
                }
                return Err(f);
            }
        };
        let connected_at = wsconn.handshake.completed_at;
        let conn = Conn::new(s.conn.clone(), shown, wsconn, &self.checks, connected_at);
        if let Some(pos) = self.conns.iter().position(|c| c.name == s.conn) {
            let mut old = self.conns.remove(pos);
            old.close_quietly(&self.checks).await;
            self.retired.reserve_exact(1);
            self.retired.push(old);
        }
        // A `Conn` is large (~800 bytes) and a Vec's first growth makes room for four: most
        // scenarios open one connection, and in load mode the three spare slots cost ~2.4 KiB a session.
        self.conns.reserve_exact(1);
        self.conns.push(conn);
        if let Some(expected) = &s.expect_subprotocol {
            let conn = self.conns.last().expect("just pushed");
            if conn.subprotocol() != expected.as_deref() {
                let show = |p: Option<&str>| p.map_or("none".to_owned(), |p| format!("'{p}'"));
                let mut f = failure(
                    FailureKind::Handshake,
                    format!(
                        "expected subprotocol {} to be selected, got {}",
                        show(expected.as_deref()),
                        show(conn.subprotocol())
                    ),
                );
                f.conn = Some(s.conn.clone());
                return Err(f);
            }
        }
        Ok(())
    }

    // ---- send ----

    async fn send(&mut self, s: &SendStep) -> StepResultT {
        let i = self.conn_index(&s.conn).map_err(one)?;
        let msg = match &s.payload {
            SendPayload::Json(t) => Message::text(self.render(t).map_err(one)?.to_string()),
            SendPayload::Text(t) => Message::text(self.render_string(t).map_err(one)?),
            SendPayload::Binary(b) => Message::binary(b.clone()),
            SendPayload::Ping(b) => Message::Ping(b.clone().into()),
        };
        let conn = &mut self.conns[i];
        // Frames that arrived before this send are checked first, so failures keep their order.
        conn.drain(&self.checks);
        let pending = conn.take_pending();
        if !pending.is_empty() {
            return Err(pending);
        }
        if let Err(e) = conn.send(msg, &self.checks).await {
            let mut f = failure(
                FailureKind::Transport,
                format!("send on '{}' failed: {e}", conn.name),
            );
            f.conn = Some(conn.name.clone());
            if conn.ended.is_some() || conn.close_frame.is_some() {
                f.detail.push(conn.end_description());
            }
            return Err(one(f));
        }
        let pending = conn.take_pending();
        if !pending.is_empty() {
            return Err(pending);
        }
        Ok(())
    }

    /// Waits for the next visible event of connection `i` at or after `*pos`.
    async fn wait_event(
        &mut self,
        i: usize,
        pos: &mut u64,
        deadline: tokio::time::Instant,
    ) -> Result<u64, WaitEnd> {
        let conn = &mut self.conns[i];
        loop {
            if conn.has_pending() {
                return Err(WaitEnd::Checks(conn.take_pending()));
            }
            if let Some((seq, _)) = conn.event_from(*pos, &self.checks) {
                return Ok(seq);
            }
            *pos = (*pos).max(conn.next_seq());
            match conn.pump(deadline, &self.checks).await {
                Pump::Got => continue,
                Pump::Timeout => return Err(WaitEnd::Timeout),
                Pump::Ended => {
                    if conn.has_pending() {
                        return Err(WaitEnd::Checks(conn.take_pending()));
                    }
                    return Err(WaitEnd::Ended);
                }
            }
        }
    }

    fn event(&self, i: usize, seq: u64) -> &Value {
        self.conns[i]
            .frame(seq)
            .and_then(|f| f.json.as_ref())
            .expect("wait_event returns seqs of JSON events in the transcript")
    }

    /// A failure for a wait that ended without the wanted event.
    fn wait_failure(
        &self,
        i: usize,
        end: WaitEnd,
        what: &str,
        timeout: Duration,
        candidate: Option<(u64, String)>,
    ) -> Vec<Failure> {
        let conn = &self.conns[i];
        let mut f = match end {
            WaitEnd::Checks(fs) => return fs,
            WaitEnd::Timeout => failure(
                FailureKind::Timeout,
                format!(
                    "timed out after {} on '{}' waiting for {what}",
                    fmt_dur(timeout),
                    conn.name
                ),
            ),
            WaitEnd::Ended => failure(
                FailureKind::Transport,
                format!(
                    "{} while waiting on '{}' for {what}",
                    conn.end_description(),
                    conn.name
                ),
            ),
        };
        f.conn = Some(conn.name.clone());
        if let Some((seq, why)) = candidate {
            if let Some(fr) = conn.frame(seq) {
                f.detail
                    .push(format!("nearest candidate {}", render_frame(fr)));
            }
            f.detail.push(format!("  did not match {why}"));
            f.frame = Some(FrameRef {
                conn: conn.name.clone(),
                seq,
            });
        }
        let last = conn.last_frames(LAST_FRAMES);
        if last.is_empty() {
            f.detail
                .push("nothing was received on this connection".into());
        } else {
            f.detail
                .push(format!("last {} received frames:", last.len()));
            f.detail.extend(last.into_iter().map(|l| format!("  {l}")));
        }
        vec![f]
    }

    // ---- expect ----

    async fn expect(&mut self, s: &ExpectStep) -> StepResultT {
        let i = self.conn_index(&s.conn).map_err(one)?;
        let m = self.compile(&s.matcher).map_err(one)?;
        let timeout = self.expect_timeout(s.timeout);
        let deadline = deadline_after(timeout);
        let wanted_type = m
            .required_str(&self.checks.discriminator)
            .map(str::to_owned);
        let mut pos = self.conns[i].cursor;
        // The nearest candidate: the latest event of the wanted type, else the latest event.
        let mut candidate: Option<(u64, bool)> = None;
        loop {
            let seq = match self.wait_event(i, &mut pos, deadline).await {
                Ok(seq) => seq,
                Err(end) => {
                    // The candidate may have left the capped transcript during a flood.
                    let why = candidate.and_then(|(seq, _)| {
                        let ev = self.conns[i].frame(seq)?.json.as_ref()?;
                        Some((seq, self.mismatch_text(&m, ev)))
                    });
                    let mut fs =
                        self.wait_failure(i, end, &format!("an event matching {m}"), timeout, why);
                    fs[0].expected.get_or_insert_with(|| m.to_string());
                    return Err(fs);
                }
            };
            pos = seq + 1;
            let ev = self.event(i, seq);
            let same_type = match &wanted_type {
                Some(t) => self.checks.event_type(ev) == Some(t.as_str()),
                None => true,
            };
            // The fast path: an event of another type cannot match.
            let matched = same_type && m.matches(ev);
            if matched {
                let ev = ev.clone();
                let conn = &mut self.conns[i];
                conn.cursor = seq + 1;
                // Behind the cursor now: no later step reads these `Value`s (see `release_json`).
                conn.release_json(seq);
                if let Some((c, _)) = candidate {
                    conn.release_json(c);
                }
                return self
                    .apply_captures(&s.capture, &ev, "the matched event")
                    .map_err(one);
            }
            if !s.skip {
                let conn = &self.conns[i];
                let mut f = failure(
                    FailureKind::Expectation,
                    format!(
                        "the next event on '{}' does not match (skip: false)",
                        conn.name
                    ),
                );
                f.expected = Some(m.to_string());
                f.detail.push(format!(
                    "got {}",
                    render_frame(conn.frame(seq).expect("seq is in the transcript"))
                ));
                f.detail.push(format!("  {}", self.mismatch_text(&m, ev)));
                f.frame = Some(FrameRef {
                    conn: conn.name.clone(),
                    seq,
                });
                f.conn = Some(conn.name.clone());
                self.conns[i].cursor = seq + 1;
                return Err(one(f));
            }
            // Examined and skipped: only the candidate's `Value` is read again (for the failure).
            if same_type || candidate.is_none_or(|(_, typed)| !typed) {
                if let Some((c, _)) = candidate {
                    self.conns[i].release_json(c);
                }
                candidate = Some((seq, same_type && wanted_type.is_some()));
            } else {
                self.conns[i].release_json(seq);
            }
        }
    }

    fn mismatch_text(&self, m: &Matcher, ev: &Value) -> String {
        match m.check(ev) {
            Err(mm) => mm.to_string(),
            Ok(()) => "(it matches now)".into(),
        }
    }

    // ---- expect_pong ----

    async fn expect_pong(&mut self, s: &ExpectPongStep) -> StepResultT {
        let i = self.conn_index(&s.conn).map_err(one)?;
        let timeout = self.expect_timeout(s.timeout);
        let deadline = deadline_after(timeout);
        let mut seen = Vec::new();
        loop {
            let conn = &mut self.conns[i];
            if conn.has_pending() {
                return Err(conn.take_pending());
            }
            while let Some((seq, payload)) = conn.pong_from(conn.pong_cursor) {
                conn.pong_cursor = seq + 1;
                match &s.payload {
                    Some(p) if *p != payload => {
                        seen.push(String::from_utf8_lossy(&payload).into_owned())
                    }
                    _ => return Ok(()),
                }
            }
            let what = match &s.payload {
                Some(p) => format!("a Pong frame with payload {:?}", String::from_utf8_lossy(p)),
                None => "a Pong frame".to_owned(),
            };
            let end = match conn.pump(deadline, &self.checks).await {
                Pump::Got => continue,
                Pump::Timeout => WaitEnd::Timeout,
                Pump::Ended => WaitEnd::Ended,
            };
            let mut fs = self.wait_failure(i, end, &what, timeout, None);
            if !seen.is_empty() {
                fs[0]
                    .detail
                    .insert(0, format!("Pong payloads received instead: {seen:?}"));
            }
            return Err(fs);
        }
    }

    // ---- collect ----

    async fn collect(&mut self, s: &CollectStep) -> StepResultT {
        let i = self.conn_index(&s.conn).map_err(one)?;
        let until = match &s.until {
            Some(u) => Some(self.compile(u).map_err(one)?),
            None => None,
        };
        let timeout = self.expect_timeout(s.timeout);
        let deadline = deadline_after(timeout);
        let mut each = Vec::new();
        for e in &s.assert.each {
            each.push((e.event_type.clone(), self.compile(&e.matcher).map_err(one)?));
        }
        let mut st = CollectState::default();
        let concat = s.assert.concat.clone();
        let mut pos = self.conns[i].cursor;
        let what = match (&until, s.quiet) {
            (Some(u), None) => format!("the end of the collection ({u})"),
            (Some(u), Some(q)) => format!(
                "the end of the collection ({u}, or {} without an event)",
                fmt_dur(q)
            ),
            (None, Some(q)) => format!("{} without an event", fmt_dur(q)),
            (None, None) => unreachable!("the loader requires until or quiet"),
        };
        // With `quiet`, the collection also ends once no visible event has arrived for that long,
        // counted from the step's start or the arrival (as stamped by the reader) of the last one.
        let mut last_arrival = tokio::time::Instant::now();
        // The seq of the `until` event; `None` when the silence ended the collection.
        let until_seq: Option<u64> = loop {
            let wait_until = match s.quiet {
                Some(q) => deadline.min(last_arrival + q),
                None => deadline,
            };
            let seq = match self.wait_event(i, &mut pos, wait_until).await {
                Ok(seq) => seq,
                Err(WaitEnd::Timeout) if wait_until < deadline => break None,
                Err(end) => {
                    let mut fs = self.wait_failure(i, end, &what, timeout, None);
                    if let Some(u) = &until {
                        fs[0].expected.get_or_insert_with(|| u.to_string());
                    }
                    fs[0]
                        .detail
                        .insert(0, format!("collected so far: {}", st.summary()));
                    return Err(fs);
                }
            };
            pos = seq + 1;
            if let Some(at) = self.conns[i].frame(seq).map(|f| f.at_us) {
                let at =
                    tokio::time::Instant::from_std(self.checks.start + Duration::from_micros(at));
                last_arrival = last_arrival.max(at);
            }
            let ev = self.event(i, seq);
            let ty = self.checks.event_type(ev).unwrap_or("").to_owned();
            st.add(seq, &ty, ev, concat.as_ref(), &each);
            if until.as_ref().is_some_and(|u| u.matches(ev)) {
                break Some(seq);
            }
            // Collected: the state holds what the assertions need; the `Value` is not read again.
            self.conns[i].release_json(seq);
        };
        self.conns[i].cursor = until_seq.map_or(pos, |u| u + 1);
        let conn_name = self.conns[i].name.clone();
        let fail = |msg: String, expected: Option<String>, st: &CollectState| {
            let mut f = failure(
                FailureKind::Expectation,
                format!("collect on '{conn_name}': {msg}"),
            );
            f.expected = expected;
            f.conn = Some(conn_name.clone());
            f.detail.push(format!("collected: {}", st.summary()));
            f
        };
        let a = &s.assert;
        for (ty, spec) in &a.count {
            let m = self.compile(spec).map_err(one)?;
            let n = st.count(ty);
            if let Err(mm) = m.check(&Value::from(n)) {
                return Err(one(fail(
                    format!("count of '{ty}' is {n}, expected {m} ({})", mm.reason),
                    Some(format!("count {ty}: {m}")),
                    &st,
                )));
            }
        }
        for ty in &a.present {
            if st.count(ty) == 0 {
                return Err(one(fail(
                    format!("no '{ty}' event in the collection"),
                    Some(format!("present: {ty}")),
                    &st,
                )));
            }
        }
        for ty in &a.absent {
            if let Some(&(seq, _)) = st.first.get(ty) {
                let mut f = fail(
                    format!("'{ty}' appeared {} time(s) in the collection", st.count(ty)),
                    Some(format!("absent: {ty}")),
                    &st,
                );
                if let Some(fr) = self.conns[i].frame(seq) {
                    f.detail.push(format!("first: {}", render_frame(fr)));
                }
                f.frame = Some(FrameRef {
                    conn: conn_name.clone(),
                    seq,
                });
                return Err(one(f));
            }
        }
        let mut prev: Option<(&str, usize)> = None;
        for ty in &a.order {
            let Some(&(_, idx)) = st.first.get(ty) else {
                return Err(one(fail(
                    format!("order: no '{ty}' event in the collection"),
                    Some(format!("order: {}", a.order.join(" → "))),
                    &st,
                )));
            };
            if let Some((pty, pidx)) = prev {
                if idx < pidx {
                    return Err(one(fail(
                        format!("order: the first '{ty}' (event {idx} of the collection) comes before the first '{pty}' (event {pidx})"),
                        Some(format!("order: {}", a.order.join(" → "))),
                        &st,
                    )));
                }
            }
            prev = Some((ty, idx));
        }
        for (before, after) in &a.all_before {
            let Some(&(_, first_after)) = st.first.get(after) else {
                return Err(one(fail(
                    format!("all_before: no '{after}' event in the collection"),
                    Some(format!("every {before} before the first {after}")),
                    &st,
                )));
            };
            if let Some(&(seq, last_before)) = st.last.get(before) {
                if last_before > first_after {
                    let mut f = fail(
                        format!("all_before: a '{before}' (event {last_before}) comes after the first '{after}' (event {first_after})"),
                        Some(format!("every {before} before the first {after}")),
                        &st,
                    );
                    f.frame = Some(FrameRef {
                        conn: conn_name.clone(),
                        seq,
                    });
                    return Err(one(f));
                }
            }
        }
        if let Some(c) = &concat {
            if let Some(err) = &st.concat_error {
                return Err(one(fail(format!("concat: {err}"), None, &st)));
            }
            match &c.target {
                ConcatTarget::Match(spec) => {
                    let m = self.compile(spec).map_err(one)?;
                    if let Err(mm) = m.check(&Value::String(st.concat.clone())) {
                        let mut f = fail(
                            format!(
                                "concat: the {} '{}' {} concatenate to {} chars that do not match {m} ({})",
                                st.count(&c.items),
                                c.items,
                                c.field,
                                st.concat.chars().count(),
                                mm.reason
                            ),
                            Some(format!("concat of {}{} matches {m}", c.items, c.field)),
                            &st,
                        );
                        f.detail
                            .push(format!("concatenated: {}", shorten(&st.concat, 240)));
                        return Err(one(f));
                    }
                }
                ConcatTarget::Event { event, field } => {
                    let Some(target) = st.concat_target.clone() else {
                        return Err(one(fail(
                            format!("concat: no '{event}' event with {field} in the collection"),
                            Some(format!(
                                "concat of {}{} equals {event}{field}",
                                c.items, c.field
                            )),
                            &st,
                        )));
                    };
                    let target_str = match &target {
                        Value::String(s) => s.clone(),
                        other => other.to_string(),
                    };
                    if st.concat != target_str {
                        let at = st
                            .concat
                            .char_indices()
                            .zip(target_str.chars())
                            .find(|((_, a), b)| a != b)
                            .map(|((i, _), _)| i)
                            .unwrap_or(st.concat.len().min(target_str.len()));
                        let mut f = fail(
                            format!(
                                "concat: the {} '{}' {} concatenate to {} chars that differ from {event}{field} ({} chars) at byte {at}",
                                st.count(&c.items),
                                c.items,
                                c.field,
                                st.concat.chars().count(),
                                target_str.chars().count()
                            ),
                            Some(format!("concat of {}{} equals {event}{field}", c.items, c.field)),
                            &st,
                        );
                        f.detail.push(format!(
                            "concatenated: {}",
                            shorten(&st.concat[at.min(st.concat.len())..], 120)
                        ));
                        f.detail.push(format!(
                            "expected:     {}",
                            shorten(&target_str[at.min(target_str.len())..], 120)
                        ));
                        return Err(one(f));
                    }
                }
            }
        }
        if let Some((seq, ty, why)) = &st.each_failure {
            let mut f = fail(
                format!("each '{ty}': event #{seq} does not match: {why}"),
                None,
                &st,
            );
            if let Some(fr) = self.conns[i].frame(*seq) {
                f.detail.push(format!("event: {}", render_frame(fr)));
            }
            f.frame = Some(FrameRef {
                conn: conn_name.clone(),
                seq: *seq,
            });
            return Err(one(f));
        }
        match until_seq {
            Some(u) => {
                let ev = self.event(i, u).clone();
                self.apply_captures(&s.capture, &ev, "the `until` event")
                    .map_err(one)
            }
            None if s.capture.is_empty() => Ok(()),
            None => Err(one(fail(
                format!(
                    "the collection ended by silence ({} without an event), so there is no `until` event to capture from",
                    fmt_dur(s.quiet.unwrap_or_default())
                ),
                None,
                &st,
            ))),
        }
    }

    // ---- expect_none ----

    async fn expect_none(&mut self, s: &ExpectNoneStep) -> StepResultT {
        let i = self.conn_index(&s.conn).map_err(one)?;
        let m = self.compile(&s.matcher).map_err(one)?;
        let deadline = deadline_after(s.within);
        let mut pos = self.conns[i].cursor;
        loop {
            match self.wait_event(i, &mut pos, deadline).await {
                Ok(seq) => {
                    pos = seq + 1;
                    let ev = self.event(i, seq);
                    if m.matches(ev) {
                        let conn = &self.conns[i];
                        let mut f = failure(
                            FailureKind::Expectation,
                            format!(
                                "an event matching {m} arrived on '{}' within {}",
                                conn.name,
                                fmt_dur(s.within)
                            ),
                        );
                        f.expected = Some(format!("no event matching {m}"));
                        f.detail.push(format!(
                            "got {}",
                            render_frame(conn.frame(seq).expect("in transcript"))
                        ));
                        f.frame = Some(FrameRef {
                            conn: conn.name.clone(),
                            seq,
                        });
                        f.conn = Some(conn.name.clone());
                        return Err(one(f));
                    }
                }
                Err(WaitEnd::Checks(fs)) => return Err(fs),
                // Nothing more arrived in the window, or nothing more can arrive.
                Err(WaitEnd::Timeout | WaitEnd::Ended) => return Ok(()),
            }
        }
    }

    // ---- expect_close ----

    async fn expect_close(&mut self, s: &ExpectCloseStep) -> StepResultT {
        let i = self.conn_index(&s.conn).map_err(one)?;
        let reason_m = match &s.reason {
            Some(spec) => Some(self.compile(spec).map_err(one)?),
            None => None,
        };
        let timeout = self.expect_timeout(s.timeout);
        let deadline = deadline_after(timeout);
        let expected = match &s.code {
            CloseCodeExpect::Any => "a close frame".to_owned(),
            CloseCodeExpect::Code(c) => format!("a close frame with code {c}"),
            CloseCodeExpect::NoFrame => "the connection to end without a close frame".to_owned(),
        };
        loop {
            let conn = &mut self.conns[i];
            if conn.has_pending() {
                return Err(conn.take_pending());
            }
            if s.strict {
                if let Some((seq, _)) = conn.event_from(conn.cursor, &self.checks) {
                    let mut f = failure(
                        FailureKind::Expectation,
                        format!(
                            "expected {expected} on '{}' (strict), got an event first",
                            conn.name
                        ),
                    );
                    f.detail.push(format!(
                        "got {}",
                        render_frame(conn.frame(seq).expect("in transcript"))
                    ));
                    f.frame = Some(FrameRef {
                        conn: conn.name.clone(),
                        seq,
                    });
                    f.conn = Some(conn.name.clone());
                    return Err(one(f));
                }
            }
            let done = match s.code {
                CloseCodeExpect::NoFrame => conn.close_frame.is_some() || conn.ended.is_some(),
                _ => conn.close_frame.is_some() || conn.ended.is_some(),
            };
            if done {
                conn.settle_close(&self.checks).await;
                conn.cursor = conn.next_seq();
                let name = conn.name.clone();
                let mk = |msg: String| {
                    let mut f = failure(FailureKind::Expectation, msg);
                    f.expected = Some(expected.clone());
                    f.conn = Some(name.clone());
                    f
                };
                return match (&s.code, &conn.close_frame) {
                    (CloseCodeExpect::NoFrame, None) => Ok(()),
                    (CloseCodeExpect::NoFrame, Some(_)) => Err(one(mk(format!(
                        "expected the connection to end without a close frame, but {}",
                        conn.end_description()
                    )))),
                    (_, None) => {
                        let mut f = mk(format!(
                            "expected {expected} on '{name}', but {}",
                            conn.end_description()
                        ));
                        f.kind = FailureKind::Transport;
                        Err(one(f))
                    }
                    (CloseCodeExpect::Code(c), Some(Some((code, reason)))) if c != code => {
                        Err(one(mk(format!(
                            "expected close code {c} on '{name}', got {code}{}",
                            if reason.is_empty() {
                                String::new()
                            } else {
                                format!(" ({reason})")
                            }
                        ))))
                    }
                    (CloseCodeExpect::Code(c), Some(None)) => Err(one(mk(format!(
                        "expected close code {c} on '{name}', got a close frame without a code"
                    )))),
                    (_, Some(frame)) => {
                        let reason = frame.as_ref().map(|(_, r)| r.clone()).unwrap_or_default();
                        if let Some(m) = &reason_m {
                            if let Err(mm) = m.check(&Value::String(reason.clone())) {
                                let mut f = mk(format!(
                                    "close reason {reason:?} on '{name}' does not match: {mm}"
                                ));
                                f.expected = Some(format!("reason {m}"));
                                return Err(one(f));
                            }
                        }
                        Ok(())
                    }
                };
            }
            match conn.pump(deadline, &self.checks).await {
                Pump::Got | Pump::Ended => continue,
                Pump::Timeout => {
                    let mut fs = self.wait_failure(i, WaitEnd::Timeout, &expected, timeout, None);
                    fs[0].expected = Some(expected);
                    return Err(fs);
                }
            }
        }
    }

    // ---- close ----

    async fn close(&mut self, s: &CloseStep) -> StepResultT {
        let i = self.conn_index(&s.conn).map_err(one)?;
        let timeout = self.shared.expect_timeout;
        let conn = &mut self.conns[i];
        conn.drain(&self.checks);
        if conn.ended.is_some() || conn.close_frame.is_some() {
            let mut f = failure(
                FailureKind::Transport,
                format!("cannot close '{}': {}", conn.name, conn.end_description()),
            );
            f.conn = Some(conn.name.clone());
            return Err(one(f));
        }
        let frame = tokio_tungstenite::tungstenite::protocol::CloseFrame {
            code: s.code.into(),
            reason: s.reason.as_str().into(),
        };
        if let Err(e) = conn.send(Message::Close(Some(frame)), &self.checks).await {
            let mut f = failure(
                FailureKind::Transport,
                format!("sending the close frame on '{}' failed: {e}", conn.name),
            );
            f.conn = Some(conn.name.clone());
            return Err(one(f));
        }
        let deadline = deadline_after(timeout);
        loop {
            let conn = &mut self.conns[i];
            if conn.close_frame.is_some() || conn.ended.is_some() {
                conn.settle_close(&self.checks).await;
                let pending = conn.take_pending();
                return if pending.is_empty() {
                    Ok(())
                } else {
                    Err(pending)
                };
            }
            match conn.pump(deadline, &self.checks).await {
                Pump::Got | Pump::Ended => continue,
                Pump::Timeout => {
                    let mut f = failure(
                        FailureKind::Timeout,
                        format!(
                            "the server did not answer the close frame on '{}' within {}",
                            conn.name,
                            fmt_dur(timeout)
                        ),
                    );
                    f.conn = Some(conn.name.clone());
                    return Err(one(f));
                }
            }
        }
    }

    // ---- timing ----

    fn timing(&mut self, s: &TimingStep) -> Result<(), Failure> {
        let i = self.conn_index(&s.conn)?;
        let conn = &mut self.conns[i];
        conn.drain(&self.checks);
        let t = &conn.timing;
        for (metric, bound) in &s.bounds {
            let (name, value, hint) = match metric {
                TimingMetric::Connect => ("connect", t.connect, "no connect completed"),
                TimingMetric::FirstEvent => ("first_event", t.first_event, "no event was received"),
                TimingMetric::FirstToken => (
                    "first_token",
                    t.first_token,
                    "no `message` was sent, or no `token` followed it",
                ),
                TimingMetric::MaxTokenGap => (
                    "max_token_gap",
                    t.max_token_gap,
                    "the last turn had fewer than two tokens",
                ),
                TimingMetric::Turn => ("turn", t.turn, "the last turn has not ended"),
                TimingMetric::CancelAck => (
                    "cancel_ack",
                    t.cancel_ack,
                    "no `cancel` was acknowledged with `cancelled`",
                ),
            };
            let expected = describe_bound(name, bound);
            let Some(v) = value else {
                let mut f = failure(
                    FailureKind::Timing,
                    format!("{name} on '{}' was not measured ({hint})", conn.name),
                );
                f.expected = Some(expected);
                f.conn = Some(conn.name.clone());
                return Err(f);
            };
            let low = bound.min.is_some_and(|m| v < m);
            let high = bound.max.is_some_and(|m| v > m);
            if low || high {
                let mut f = failure(
                    FailureKind::Timing,
                    format!(
                        "{name} on '{}' was {}, expected {}",
                        conn.name,
                        fmt_dur(v),
                        expected_text(bound)
                    ),
                );
                f.expected = Some(expected);
                f.conn = Some(conn.name.clone());
                return Err(f);
            }
        }
        Ok(())
    }
}

fn expected_text(b: &DurationBound) -> String {
    match (b.min, b.max) {
        (Some(lo), Some(hi)) => format!("between {} and {}", fmt_dur(lo), fmt_dur(hi)),
        (Some(lo), None) => format!("≥ {}", fmt_dur(lo)),
        (None, Some(hi)) => format!("≤ {}", fmt_dur(hi)),
        (None, None) => "any".into(),
    }
}

fn describe_bound(name: &str, b: &DurationBound) -> String {
    format!("{name} {}", expected_text(b))
}

/// Counters and partial results of a `collect`, updated event by event (nothing is stored per event).
#[derive(Default)]
struct CollectState {
    n: usize,
    counts: HashMap<String, usize>,
    /// type → (seq, index in the collection) of its first and last occurrence.
    first: HashMap<String, (u64, usize)>,
    last: HashMap<String, (u64, usize)>,
    concat: String,
    concat_error: Option<String>,
    concat_target: Option<Value>,
    each_failure: Option<(u64, String, String)>,
}

impl CollectState {
    fn add(
        &mut self,
        seq: u64,
        ty: &str,
        ev: &Value,
        concat: Option<&crate::scenario::ConcatAssert>,
        each: &[(String, Matcher)],
    ) {
        let idx = self.n;
        self.n += 1;
        *self.counts.entry(ty.to_owned()).or_insert(0) += 1;
        self.first.entry(ty.to_owned()).or_insert((seq, idx));
        self.last.insert(ty.to_owned(), (seq, idx));
        if let Some(c) = concat {
            if ty == c.items && self.concat_error.is_none() {
                match ev.pointer(&c.field) {
                    Some(Value::String(s)) => self.concat.push_str(s),
                    other => {
                        self.concat_error = Some(format!(
                            "'{}' event #{seq} has no string at {} (got {})",
                            c.items,
                            c.field,
                            other.map_or("nothing".to_owned(), |v| v.to_string())
                        ))
                    }
                }
            }
            if let crate::scenario::ConcatTarget::Event { event, field } = &c.target {
                if ty == event && self.concat_target.is_none() {
                    self.concat_target = ev.pointer(field).cloned();
                }
            }
        }
        if self.each_failure.is_none() {
            for (t, m) in each {
                if t == ty {
                    if let Err(mm) = m.check(ev) {
                        self.each_failure = Some((seq, ty.to_owned(), mm.to_string()));
                        break;
                    }
                }
            }
        }
    }

    fn count(&self, ty: &str) -> usize {
        self.counts.get(ty).copied().unwrap_or(0)
    }

    fn summary(&self) -> String {
        if self.n == 0 {
            return "no events".into();
        }
        let mut by_first: Vec<(&String, &usize)> = self.counts.iter().collect();
        by_first.sort_by_key(|(t, _)| self.first.get(*t).map(|f| f.1));
        let parts: Vec<String> = by_first.iter().map(|(t, n)| format!("{t}×{n}")).collect();
        format!("{} events ({})", self.n, parts.join(", "))
    }
}

/// Joins a base URL and a path (`ws://h:1` + `/a` → `ws://h:1/a`).
pub(crate) fn join(base: &str, path: &str) -> String {
    if path.is_empty() {
        return base.to_owned();
    }
    if path.starts_with('/') {
        format!("{}{path}", base.trim_end_matches('/'))
    } else {
        format!("{}/{path}", base.trim_end_matches('/'))
    }
}

/// Percent-encodes a query component (RFC 3986 unreserved characters stay).
/// The record of one HTTP exchange: the URL as requested (query included), tokens masked as in
/// sent frames.
fn exchange_of(
    req: &HttpRequest,
    resp: &crate::transport::http::HttpResponse,
    at: Duration,
) -> HttpExchange {
    use super::conn::redact_text;
    let mut url = req.url.clone();
    if !req.query.is_empty() {
        let pairs: Vec<String> = req
            .query
            .iter()
            .map(|(k, v)| format!("{}={}", encode(k), encode(v)))
            .collect();
        url.push(if url.contains('?') { '&' } else { '?' });
        url.push_str(&pairs.join("&"));
    }
    HttpExchange {
        at_us: at.as_micros() as u64,
        method: req.method.to_ascii_uppercase(),
        url: ws::redact_url(&url),
        request_headers: req
            .headers
            .iter()
            .map(|(k, v)| (k.clone(), redact_text(v)))
            .collect(),
        request_body: req.body.as_ref().map(|b| match b {
            Body::Json(v) => redact_text(&v.to_string()),
            Body::Text(t) => redact_text(t),
        }),
        status: resp.status,
        content_type: resp
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| v.clone()),
        response_body: redact_text(&resp.body),
        duration_ms: resp.duration.as_secs_f64() * 1000.0,
        upgrade_conn: None,
    }
}

/// The record of a refused WebSocket upgrade of connection `conn`.
fn refusal_exchange(
    req: &ConnectRequest,
    conn: &str,
    r: &ws::Refusal,
    at: Duration,
    took: Duration,
) -> HttpExchange {
    use super::conn::redact_text;
    let mut request_headers: Vec<(String, String)> = req
        .headers
        .iter()
        .map(|(k, v)| (k.clone(), redact_text(v)))
        .collect();
    if !req.subprotocols.is_empty() {
        request_headers.push(("Sec-WebSocket-Protocol".into(), req.subprotocols.join(", ")));
    }
    HttpExchange {
        at_us: at.as_micros() as u64,
        method: "GET".into(),
        url: ws::redact_url(&req.url),
        request_headers,
        request_body: None,
        status: r.status,
        content_type: r
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case("content-type"))
            .map(|(_, v)| v.clone()),
        response_body: redact_text(&r.body),
        duration_ms: took.as_secs_f64() * 1000.0,
        upgrade_conn: Some(conn.to_owned()),
    }
}

pub(crate) fn encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn url_helpers() {
        assert_eq!(join("ws://h:1", "/a/b"), "ws://h:1/a/b");
        assert_eq!(join("ws://h:1/", "a"), "ws://h:1/a");
        assert_eq!(encode("a b&c=é"), "a%20b%26c%3D%C3%A9");
    }

    #[test]
    fn collect_state_counts_orders_and_concats() {
        let c = crate::scenario::ConcatAssert {
            items: "token".into(),
            field: "/content".into(),
            target: crate::scenario::ConcatTarget::Event {
                event: "final_answer".into(),
                field: "/content".into(),
            },
        };
        let each = vec![(
            "token".to_owned(),
            Matcher::new(&serde_json::json!({"turn_id": "t1"})).unwrap(),
        )];
        let mut st = CollectState::default();
        let evs = [
            serde_json::json!({"type": "turn_started", "turn_id": "t1"}),
            serde_json::json!({"type": "token", "turn_id": "t1", "content": "a"}),
            serde_json::json!({"type": "token", "turn_id": "t2", "content": "b"}),
            serde_json::json!({"type": "final_answer", "turn_id": "t1", "content": "ab"}),
        ];
        for (i, e) in evs.iter().enumerate() {
            st.add(
                i as u64 + 10,
                e["type"].as_str().unwrap(),
                e,
                Some(&c),
                &each,
            );
        }
        assert_eq!(st.count("token"), 2);
        assert_eq!(st.first["token"], (11, 1));
        assert_eq!(st.last["token"], (12, 2));
        assert_eq!(st.concat, "ab");
        assert_eq!(st.concat_target, Some(serde_json::json!("ab")));
        let (seq, ty, why) = st.each_failure.clone().unwrap();
        assert_eq!((seq, ty.as_str()), (12, "token"));
        assert!(why.contains("/turn_id"), "{why}");
        assert_eq!(
            st.summary(),
            "4 events (turn_started×1, token×2, final_answer×1)"
        );
    }
}
