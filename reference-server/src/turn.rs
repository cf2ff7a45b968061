//! Plays a model script as one turn: events into the socket's writer channel, waits for replies,
//! token pacing, and exactly one terminal event. Every wait also watches the turn's stop signal, so a
//! `cancel` is acknowledged at once and a closing socket ends the turn silently.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{json, Value};
use tokio::sync::{mpsc, oneshot, watch, Notify};

use crate::fault::{self, Fault};
use crate::model::{split_tokens, Action, Answer, Replies, Script};
use crate::state::{AppState, Outgoing, TurnGuard};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stop {
    Running,
    /// The client sent `cancel`: the turn ends with `cancelled`.
    Cancel,
    /// The socket is going away: the turn ends without a terminal event.
    Abort,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReplyKind {
    Confirmation,
    Human,
}

#[derive(Debug)]
pub enum Reply {
    Confirmation(bool),
    Human(String),
}

/// The request a turn is waiting on (at most one at a time).
pub struct PendingRequest {
    pub request_id: String,
    pub kind: ReplyKind,
    pub tx: oneshot::Sender<Reply>,
}

pub type PendingSlot = Arc<Mutex<Option<PendingRequest>>>;

/// The turn currently running on a socket, as the reader loop sees it.
pub struct ActiveTurn {
    pub turn_id: String,
    pub stop: Arc<watch::Sender<Stop>>,
}

pub type TurnSlot = Arc<tokio::sync::Mutex<Option<ActiveTurn>>>;

pub struct TurnCtx {
    pub state: Arc<AppState>,
    pub session_id: String,
    pub turn_id: String,
    pub out: mpsc::Sender<Outgoing>,
    pub stop: watch::Receiver<Stop>,
    pub pending: PendingSlot,
    pub slot: TurnSlot,
    /// The injected fault, if any (`fault.rs`); `None` in every normal server.
    pub fault: Option<Fault>,
    /// `tcp-reset` only: notified when the turn wants the connection dropped.
    pub sever: Option<Arc<Notify>>,
}

enum Outcome {
    Final { content: String, token_count: u64 },
    Error { code: &'static str, message: String },
    Interrupted(Stop),
}

/// Why the script stopped early.
struct Interrupt(Stop);

async fn stopped(rx: &mut watch::Receiver<Stop>) -> Stop {
    match rx.wait_for(|s| *s != Stop::Running).await {
        Ok(s) => *s,
        // The socket dropped its side: nobody is listening any more.
        Err(_) => Stop::Abort,
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl TurnCtx {
    fn stamp(&self, mut ev: Value) -> Outgoing {
        if let Some(o) = ev.as_object_mut() {
            o.insert("turn_id".into(), json!(self.turn_id));
        }
        Outgoing::event(&ev)
    }

    async fn emit(&mut self, ev: Value) -> Result<(), Interrupt> {
        let msg = self.stamp(ev);
        tokio::select! {
            biased;
            s = stopped(&mut self.stop) => Err(Interrupt(s)),
            r = self.out.send(msg) => r.map_err(|_| Interrupt(Stop::Abort)),
        }
    }

    async fn pause(&mut self, d: Duration) -> Result<(), Interrupt> {
        if d.is_zero() {
            return Ok(());
        }
        tokio::select! {
            biased;
            s = stopped(&mut self.stop) => Err(Interrupt(s)),
            _ = tokio::time::sleep(d) => Ok(()),
        }
    }

    /// Opens a request, emits `ev` (which carries the request id), and waits for the matching reply.
    /// `Ok(None)` means the reply deadline passed.
    async fn ask(
        &mut self,
        kind: ReplyKind,
        request_id: &str,
        ev: Value,
    ) -> Result<Option<Reply>, Interrupt> {
        let (tx, rx) = oneshot::channel();
        // Registered before the event goes out, so that an immediate reply finds it open.
        *lock(&self.pending) = Some(PendingRequest {
            request_id: request_id.to_owned(),
            kind,
            tx,
        });
        let result = async {
            self.emit(ev).await?;
            let timeout = self.state.config.reply_timeout;
            tokio::select! {
                biased;
                s = stopped(&mut self.stop) => Err(Interrupt(s)),
                r = rx => Ok(r.ok()),
                _ = tokio::time::sleep(timeout) => Ok(None),
            }
        }
        .await;
        let mut p = lock(&self.pending);
        if p.as_ref().is_some_and(|p| p.request_id == request_id) {
            *p = None;
        }
        result
    }

    async fn play(&mut self, mut script: Script) -> Result<Outcome, Interrupt> {
        if let Some(f) = self.fault {
            f.rewrite_script(&mut script);
        }
        let pace = script.pace.unwrap_or(self.state.config.token_pace);
        let mut replies = Replies::default();
        for action in script.actions {
            match action {
                Action::Emit(ev) => self.emit(ev).await?,
                Action::Fail { code, message } => return Ok(Outcome::Error { code, message }),
                Action::Confirm {
                    tool,
                    arguments,
                    prompt,
                    on_approve,
                } => {
                    let sid = self.session_id.clone();
                    let request_id = self
                        .state
                        .with_store(move |s| s.next_request_id(&sid))
                        .await;
                    let ev = json!({"type": "confirmation_request", "request_id": request_id, "tool": tool,
                        "arguments": arguments, "prompt": prompt});
                    if self.fault == Some(Fault::ConfirmationIgnored) {
                        // Asks, but goes on at once as if denied: no reply awaited, no result sent.
                        self.emit(ev).await?;
                        continue;
                    }
                    let approved = match self.ask(ReplyKind::Confirmation, &request_id, ev).await? {
                        Some(Reply::Confirmation(a)) => a,
                        _ => {
                            return Ok(Outcome::Error {
                                code: "CONFIRMATION_TIMEOUT",
                                message: format!("no confirmation_reply for {request_id} in time"),
                            })
                        }
                    };
                    replies.approved = Some(approved);
                    self.emit(json!({"type": "confirmation_result", "request_id": request_id, "approved": approved}))
                        .await?;
                    if approved || self.fault == Some(Fault::GuardedToolAfterDeny) {
                        for ev in on_approve {
                            self.emit(ev).await?;
                        }
                    }
                }
                Action::AskHuman { question } => {
                    let sid = self.session_id.clone();
                    let request_id = self
                        .state
                        .with_store(move |s| s.next_request_id(&sid))
                        .await;
                    let ev = json!({"type": "ask_human", "request_id": request_id, "question": question});
                    match self.ask(ReplyKind::Human, &request_id, ev).await? {
                        Some(Reply::Human(text)) => replies.human = Some(text),
                        _ => {
                            return Ok(Outcome::Error {
                                code: "HUMAN_REPLY_TIMEOUT",
                                message: format!("no human_reply for {request_id} in time"),
                            })
                        }
                    }
                }
                Action::Answer(answer) => return self.stream(answer, &replies, pace).await,
            }
        }
        // Scripts always end with an answer or a failure; an empty script still ends the turn.
        Ok(Outcome::Final {
            content: String::new(),
            token_count: 0,
        })
    }

    /// Queues token frames already serialized (see [`token_frame`]); an empty batch is a no-op.
    async fn emit_frames(&mut self, batch: &mut Vec<String>) -> Result<(), Interrupt> {
        if batch.is_empty() {
            return Ok(());
        }
        let msg = Outgoing::Frames(std::mem::take(batch));
        tokio::select! {
            biased;
            s = stopped(&mut self.stop) => Err(Interrupt(s)),
            r = self.out.send(msg) => r.map_err(|_| Interrupt(Stop::Abort)),
        }
    }

    async fn stream(
        &mut self,
        answer: Answer,
        replies: &Replies,
        pace: Duration,
    ) -> Result<Outcome, Interrupt> {
        let pace = match self.fault {
            Some(Fault::SlowDrip) => fault::SLOW_DRIP_PACE,
            _ => pace,
        };
        // `#long=N` words are written into one reusable string; other answers are split once.
        let rendered = match &answer {
            Answer::Long(_) => String::new(),
            Answer::Parts(_) => answer.render(replies),
        };
        let parts = match &answer {
            Answer::Long(_) => Vec::new(),
            Answer::Parts(_) => split_tokens(&rendered),
        };
        let total = match &answer {
            Answer::Long(n) => *n,
            Answer::Parts(_) => parts.len() as u64,
        };
        // At zero pace tokens go to the writer in batches; with a pace each is sent on its own, at
        // its time. A stop is noticed between batches, and the writer's queue is bounded anyway.
        let batch_len = if pace.is_zero() { TOKEN_BATCH } else { 1 };
        let turn_id = serde_json::to_string(&self.turn_id).unwrap_or_default();
        let mut content = String::new();
        let mut word = String::new();
        let mut batch: Vec<String> = Vec::with_capacity(batch_len);
        let mut index = 0u64;
        for i in 0..total {
            let tok = match &answer {
                Answer::Long(_) => {
                    word.clear();
                    push_long_word(&mut word, i);
                    word.as_str()
                }
                Answer::Parts(_) => parts[i as usize],
            };
            if index > 0 && !pace.is_zero() {
                self.pause(pace).await?;
            }
            if let Some(f) = self.fault {
                // Faults act at an exact point of the stream: everything before it goes out first.
                self.emit_frames(&mut batch).await?;
                self.stream_fault(f, index).await?;
                if f == Fault::TokensMismatch && i + 1 == total {
                    // The last token is lost on the way, but the answer still has it.
                    content.push_str(tok);
                    break;
                }
            }
            batch.push(token_frame(&turn_id, index, tok));
            content.push_str(tok);
            index += 1;
            if batch.len() >= batch_len {
                self.emit_frames(&mut batch).await?;
            }
        }
        self.emit_frames(&mut batch).await?;
        Ok(Outcome::Final {
            content,
            token_count: index,
        })
    }
}

/// Token frames per writer message at zero pace.
const TOKEN_BATCH: usize = 64;

/// The `i`-th word of a `#long` answer (as [`crate::model::long_word`]), appended without a
/// temporary string.
fn push_long_word(out: &mut String, i: u64) {
    if i > 0 {
        out.push(' ');
    }
    out.push('w');
    push_u64(out, i);
}

fn push_u64(out: &mut String, n: u64) {
    use std::fmt::Write as _;
    // Writing into a String cannot fail.
    let _ = write!(out, "{n}");
}

/// Appends `s` as a JSON string, escaped exactly as `serde_json` escapes it.
fn push_json_str(out: &mut String, s: &str) {
    if s.bytes().any(|b| b < 0x20 || b == b'"' || b == b'\\') {
        out.push_str(&serde_json::to_string(s).unwrap_or_default());
    } else {
        out.push('"');
        out.push_str(s);
        out.push('"');
    }
}

/// A `token` event serialized directly, byte for byte what serializing
/// `{"type":"token","index":..,"content":..,"turn_id":..}` as a `Value` gives (keys in `serde_json`'s
/// sorted order), without building the `Value`: the per-token cost of a long stream.
/// `turn_id` is already a JSON string.
fn token_frame(turn_id: &str, index: u64, content: &str) -> String {
    let mut f = String::with_capacity(56 + turn_id.len() + content.len());
    f.push_str("{\"content\":");
    push_json_str(&mut f, content);
    f.push_str(",\"index\":");
    push_u64(&mut f, index);
    f.push_str(",\"turn_id\":");
    f.push_str(turn_id);
    f.push_str(",\"type\":\"token\"}");
    f
}

impl TurnCtx {
    /// Mid-stream faults, before token `index` is sent: `stall-mid-stream` stops sending (and waits
    /// for the turn to be stopped), `tcp-reset` asks the connection to drop and then waits the same way.
    async fn stream_fault(&mut self, f: Fault, index: u64) -> Result<(), Interrupt> {
        if index != fault::TOKENS_BEFORE_BREAK {
            return Ok(());
        }
        match f {
            Fault::StallMidStream => Err(Interrupt(stopped(&mut self.stop).await)),
            Fault::TcpReset => {
                if let Some(n) = &self.sever {
                    n.notify_one();
                }
                Err(Interrupt(stopped(&mut self.stop).await))
            }
            _ => Ok(()),
        }
    }
}

/// Runs one turn to its end. `turn_started` has been sent by the caller. The terminal event is sent
/// while holding the socket's turn slot, so a `cancel` either reaches a running turn or is answered
/// with `NO_ACTIVE_TURN`, never lost in between, and a next `message` starts only after the terminal
/// event is queued.
pub async fn run_turn(mut ctx: TurnCtx, script: Script) {
    let _guard = TurnGuard::new(&ctx.state);
    let outcome = match ctx.play(script).await {
        Ok(o) => o,
        Err(Interrupt(s)) => Outcome::Interrupted(s),
    };
    let slot = ctx.slot.clone();
    let mut slot = slot.lock().await;
    // A cancel that came in after the script finished but before the slot was taken still wins.
    let stop_now = *ctx.stop.borrow();
    let outcome = match (stop_now, outcome) {
        (Stop::Abort, _) | (_, Outcome::Interrupted(Stop::Abort)) => None,
        (Stop::Cancel, _) | (_, Outcome::Interrupted(_)) => {
            Some(json!({"type": "cancelled", "reason": "client_cancel"}))
        }
        (_, Outcome::Error { code, message }) => {
            Some(json!({"type": "error", "code": code, "message": message}))
        }
        (
            _,
            Outcome::Final {
                content,
                token_count,
            },
        ) => {
            let (sid, tid, answer) = (ctx.session_id.clone(), ctx.turn_id.clone(), content.clone());
            if let Err(e) = ctx
                .state
                .with_store(move |s| s.finish_turn(&sid, &tid, &answer))
                .await
            {
                tracing::error!(session = %ctx.session_id, turn = %ctx.turn_id, "cannot save history: {e}");
            }
            Some(json!({"type": "final_answer", "content": content, "token_count": token_count}))
        }
    };
    if let Some(ev) = outcome {
        // Faults that break the end of a turn: the terminal twice, or a token after it.
        let after = match ctx.fault {
            Some(Fault::SecondTerminal) => Some(ev.clone()),
            Some(Fault::TokenAfterTerminal) if ev["type"] == "final_answer" => {
                Some(json!({"type": "token", "index": ev["token_count"], "content": "."}))
            }
            _ => None,
        };
        for ev in std::iter::once(ev).chain(after) {
            let msg = ctx.stamp(ev);
            // Only an abort may interrupt the terminal event: a cancel now is too late to matter.
            let mut stop = ctx.stop.clone();
            tokio::select! {
                biased;
                _ = stop.wait_for(|s| *s == Stop::Abort) => {}
                _ = ctx.out.send(msg) => {}
            }
        }
    }
    lock(&ctx.pending).take();
    *slot = None;
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::long_word;

    #[test]
    fn token_frames_are_what_serde_json_writes() {
        let turn_id = "t-1\"x";
        let tid = serde_json::to_string(turn_id).unwrap();
        for (i, content) in [
            "w0",
            " w1",
            "",
            "quote \" and \\ backslash",
            "tab\tnew\nline\u{1}\u{7f}",
            " é 漢字 😀",
        ]
        .into_iter()
        .enumerate()
        {
            let index = [0, 7, 10, 12345, u64::MAX, 1_000_000][i];
            let want =
                json!({"type": "token", "index": index, "content": content, "turn_id": turn_id})
                    .to_string();
            assert_eq!(token_frame(&tid, index, content), want);
        }
    }

    #[test]
    fn long_words_are_written_in_place() {
        for i in [0, 1, 9, 10, 99, 100, 123_456, u64::MAX] {
            let mut w = String::from("junk");
            w.clear();
            push_long_word(&mut w, i);
            assert_eq!(w, long_word(i));
        }
    }
}
