//! Rendering helpers shared by the text-based reporters (terminal, JUnit, TAP, HTML):
//! durations, truncation, step labels, transcript excerpts and the re-run command.
//!
//! Lines carry a [`Tone`] rather than colour codes so the same rendering serves the
//! coloured terminal and the plain-text reports.

use std::collections::BTreeSet;
use std::time::Duration;

use crate::runner::{
    Direction, Failure, FrameKind, FrameRecord, ScenarioResult, StepRef, Transcript,
};

/// How a piece of text should stand out; the terminal maps tones to colours.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Tone {
    Normal,
    Strong,
    Dim,
    Bad,
    Good,
    Warn,
}

/// One output line made of toned spans.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Line(pub Vec<(Tone, String)>);

impl Line {
    pub fn new() -> Self {
        Line(Vec::new())
    }

    pub fn plain(text: impl Into<String>) -> Self {
        Line(vec![(Tone::Normal, text.into())])
    }

    pub fn push(mut self, tone: Tone, text: impl Into<String>) -> Self {
        self.0.push((tone, text.into()));
        self
    }

    /// The text without tones.
    pub fn text(&self) -> String {
        self.0.iter().map(|(_, s)| s.as_str()).collect()
    }
}

/// Human duration: sub-second values in milliseconds, the rest in seconds.
pub fn fmt_duration(d: Duration) -> String {
    let ms = d.as_secs_f64() * 1000.0;
    if ms < 1000.0 {
        format!("{ms:.1} ms")
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}

/// Microseconds since scenario start, as `+12.345 ms`.
pub fn fmt_offset_us(at_us: u64) -> String {
    format!("+{:.3} ms", at_us as f64 / 1000.0)
}

/// Cuts `s` to at most `max` characters (not bytes, so no code point is split),
/// marking the cut with the number of characters left out.
pub fn truncate(s: &str, max: usize) -> String {
    let count = s.chars().count();
    if count <= max {
        return s.to_string();
    }
    let kept: String = s.chars().take(max).collect();
    format!("{kept}… (+{} chars)", count - max)
}

/// Makes control characters visible so one payload stays on one line.
pub fn one_line(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if c.is_control() => out.push_str(&c.escape_unicode().to_string()),
            c => out.push(c),
        }
    }
    out
}

/// `step 3 expect "wait for reply" at file:line:col`.
pub fn step_label(step: &StepRef) -> String {
    match &step.name {
        Some(name) => format!(
            "step {} {} {:?} at {}",
            step.index + 1,
            step.keyword,
            name,
            step.location
        ),
        None => format!(
            "step {} {} at {}",
            step.index + 1,
            step.keyword,
            step.location
        ),
    }
}

pub fn direction_arrow(dir: Direction) -> &'static str {
    match dir {
        Direction::Sent => "→",
        Direction::Received => "←",
    }
}

pub fn kind_name(kind: FrameKind) -> &'static str {
    match kind {
        FrameKind::Text => "text",
        FrameKind::Binary => "binary",
        FrameKind::Ping => "ping",
        FrameKind::Pong => "pong",
        FrameKind::Close => "close",
        FrameKind::Handshake => "handshake",
        FrameKind::End => "end",
    }
}

/// The payload of a frame as one short line: the text (or note) truncated to `max` chars.
pub fn frame_payload(frame: &FrameRecord, max: usize) -> String {
    let mut parts = Vec::new();
    if let Some(note) = &frame.note {
        parts.push(note.as_str());
    }
    if let Some(text) = &frame.text {
        parts.push(text.as_str());
    }
    let joined = parts.join("  ");
    truncate(&one_line(&joined), max)
}

/// The connection a failure is about: explicit, else the offending frame's.
pub fn failure_conn(failure: &Failure) -> Option<&str> {
    failure
        .conn
        .as_deref()
        .or(failure.frame.as_ref().map(|f| f.conn.as_str()))
}

/// Finds the transcript a failure refers to.
pub fn failure_transcript<'a>(
    result: &'a ScenarioResult,
    failure: &Failure,
) -> Option<&'a Transcript> {
    let conn = failure_conn(failure)?;
    result.transcripts.iter().find(|t| t.conn == conn)
}

/// The frames worth showing: the last `n` frames or, when frames are marked (they failed a
/// check), a window of `n` frames that ends shortly after the last marked frame, moved back if
/// needed so the first marked frame (the one that stopped the scenario) is always shown.
pub fn frame_window<'a>(
    transcript: &'a Transcript,
    marked: &BTreeSet<u64>,
    n: usize,
) -> &'a [FrameRecord] {
    let frames = &transcript.frames;
    if n == 0 || frames.is_empty() {
        return &frames[..0];
    }
    let positions: Vec<usize> = frames
        .iter()
        .enumerate()
        .filter(|(_, f)| marked.contains(&f.seq))
        .map(|(i, _)| i)
        .collect();
    let (Some(&first), Some(&last)) = (positions.first(), positions.last()) else {
        return &frames[frames.len().saturating_sub(n)..];
    };
    // Two frames of context after the last marked one, when the window has room for them.
    let mut end = (last + 1 + 2.min(n.saturating_sub(1))).min(frames.len());
    let mut start = end.saturating_sub(n);
    if first < start {
        start = first;
        end = (start + n).min(frames.len());
    }
    &frames[start..end]
}

/// Lines showing a transcript excerpt (a header, then one line per frame), marked frames
/// flagged with `>>`.
pub fn transcript_lines(
    transcript: &Transcript,
    marked: &BTreeSet<u64>,
    n: usize,
    payload_max: usize,
) -> Vec<Line> {
    let window = frame_window(transcript, marked, n);
    let mut lines = Vec::new();
    let (before, after) = match (window.first(), window.last()) {
        (Some(first), Some(last)) => {
            let pos = |seq| {
                transcript
                    .frames
                    .iter()
                    .position(|g| g.seq == seq)
                    .unwrap_or(0)
            };
            (
                pos(first.seq) as u64 + transcript.dropped,
                transcript.frames.len() - 1 - pos(last.seq),
            )
        }
        _ => (transcript.dropped, 0),
    };
    let mut hidden = Vec::new();
    if before > 0 {
        hidden.push(format!("{before} earlier"));
    }
    if after > 0 {
        hidden.push(format!("{after} later"));
    }
    lines.push(Line::new().push(
        Tone::Dim,
        format!(
            "{} of {} frame(s) on {} ({}){}",
            window.len(),
            transcript.frames.len() as u64 + transcript.dropped,
            transcript.conn,
            transcript.url,
            if hidden.is_empty() {
                String::new()
            } else {
                format!(", {} not shown", hidden.join(" and "))
            }
        ),
    ));
    for frame in window {
        let is_marked = marked.contains(&frame.seq);
        let marker = if is_marked { ">> " } else { "   " };
        let tone = if is_marked { Tone::Bad } else { Tone::Normal };
        lines.push(
            Line::new()
                .push(tone, marker)
                .push(Tone::Dim, format!("{:>12} ", fmt_offset_us(frame.at_us)))
                .push(
                    tone,
                    format!(
                        "{} {:<9} ",
                        direction_arrow(frame.dir),
                        kind_name(frame.kind)
                    ),
                )
                .push(tone, frame_payload(frame, payload_max)),
        );
    }
    lines
}

/// Quotes a shell word only when it needs it (POSIX single quotes).
pub fn shell_quote(s: &str) -> String {
    let safe = !s.is_empty()
        && s.chars()
            .all(|c| c.is_ascii_alphanumeric() || "-_./:=@%+,".contains(c));
    if safe {
        s.to_string()
    } else {
        format!("'{}'", s.replace('\'', "'\\''"))
    }
}

/// The `--target` worth repeating from a run's target: a WebSocket URL, not the description
/// of the embedded reference server (which the re-run starts again by itself).
pub fn rerun_target(run_target: &str) -> Option<&str> {
    let t = run_target.trim();
    (t.starts_with("ws://") || t.starts_with("wss://")).then_some(t)
}

/// The command that re-runs just this scenario.
pub fn rerun_command(result: &ScenarioResult, target: Option<&str>) -> String {
    let mut cmd = format!(
        "wschat-check run {} --filter {}",
        shell_quote(&result.file),
        shell_quote(&result.name)
    );
    if let Some(t) = target {
        cmd.push_str(" --target ");
        cmd.push_str(&shell_quote(t));
    }
    cmd
}

/// Options for [`scenario_failure_blocks`].
#[derive(Debug, Clone, Copy)]
pub struct FailureRender {
    /// How many transcript frames to show.
    pub frames: usize,
    /// Maximum characters of a payload.
    pub payload_max: usize,
}

impl Default for FailureRender {
    fn default() -> Self {
        FailureRender {
            frames: 8,
            payload_max: 160,
        }
    }
}

/// Everything known about one failure except the transcript, as lines (no indentation).
pub fn failure_lines(failure: &Failure) -> Vec<Line> {
    let mut lines = vec![Line::new()
        .push(Tone::Bad, format!("[{}] ", kind_label(failure)))
        .push(Tone::Strong, failure.message.clone())];
    if let Some(step) = &failure.step {
        lines.push(
            Line::new()
                .push(Tone::Dim, "at ")
                .push(Tone::Normal, step_label(step)),
        );
    }
    if let Some(expected) = &failure.expected {
        lines.push(
            Line::new()
                .push(Tone::Dim, "expected: ")
                .push(Tone::Normal, expected.clone()),
        );
    }
    for d in &failure.detail {
        lines.push(
            Line::new()
                .push(Tone::Dim, "  ")
                .push(Tone::Normal, d.clone()),
        );
    }
    if let Some(s) = &failure.schema {
        let mut l = Line::new().push(Tone::Dim, "schema: ");
        if let Some(t) = &s.event_type {
            l = l.push(Tone::Normal, format!("event {t:?}, "));
        }
        l = l.push(
            Tone::Normal,
            format!(
                "at {} keyword `{}` (schema {}): {}",
                if s.instance_path.is_empty() {
                    "/"
                } else {
                    &s.instance_path
                },
                s.keyword,
                s.schema_path,
                s.message
            ),
        );
        lines.push(l);
    }
    if let Some(rule) = &failure.rule {
        lines.push(
            Line::new()
                .push(Tone::Dim, "rule: ")
                .push(Tone::Normal, rule.clone()),
        );
    }
    if let Some(frame) = &failure.frame {
        lines.push(
            Line::new()
                .push(Tone::Dim, "frame: ")
                .push(Tone::Normal, format!("#{} on {}", frame.seq, frame.conn)),
        );
    }
    lines
}

/// All failures of a scenario as blocks (the first line of a block is its heading): one per
/// failure, then one transcript excerpt per connection the failures refer to, shown once with
/// every frame that failed a check marked.
pub fn scenario_failure_blocks(result: &ScenarioResult, opts: FailureRender) -> Vec<Vec<Line>> {
    let mut blocks: Vec<Vec<Line>> = result.failures.iter().map(failure_lines).collect();
    let mut conns: Vec<&str> = Vec::new();
    for f in &result.failures {
        if let Some(c) = failure_conn(f) {
            if !conns.contains(&c) {
                conns.push(c);
            }
        }
    }
    for conn in conns {
        let Some(t) = result.transcripts.iter().find(|t| t.conn == conn) else {
            continue;
        };
        let marked: BTreeSet<u64> = result
            .failures
            .iter()
            .filter_map(|f| f.frame.as_ref())
            .filter(|fr| fr.conn == conn)
            .map(|fr| fr.seq)
            .collect();
        blocks.push(transcript_lines(t, &marked, opts.frames, opts.payload_max));
    }
    blocks
}

/// The failure kind as written in reports (`expectation`, `schema`, ...).
pub fn kind_label(failure: &Failure) -> String {
    serde_json::to_value(failure.kind)
        .ok()
        .and_then(|v| v.as_str().map(str::to_string))
        .unwrap_or_else(|| format!("{:?}", failure.kind))
}

/// A plain-text rendering of all failures of a scenario (for JUnit bodies), indented like
/// the terminal output.
pub fn failures_text(result: &ScenarioResult, opts: FailureRender) -> String {
    let mut out = String::new();
    for block in scenario_failure_blocks(result, opts) {
        for (i, l) in block.iter().enumerate() {
            out.push_str(if i == 0 { "" } else { "  " });
            out.push_str(&l.text());
            out.push('\n');
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::sample;

    #[test]
    fn durations() {
        assert_eq!(fmt_duration(Duration::from_micros(1500)), "1.5 ms");
        assert_eq!(fmt_duration(Duration::from_millis(2500)), "2.50 s");
        assert_eq!(fmt_offset_us(12_345), "+12.345 ms");
    }

    #[test]
    fn truncate_counts_chars_not_bytes() {
        assert_eq!(truncate("héllo", 10), "héllo");
        assert_eq!(truncate("ééééé", 2), "éé… (+3 chars)");
    }

    #[test]
    fn one_line_escapes_controls() {
        assert_eq!(one_line("a\nb\tc\u{1}"), "a\\nb\\tc\\u{1}");
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(shell_quote("scenarios/a.yaml"), "scenarios/a.yaml");
        assert_eq!(shell_quote("two words"), "'two words'");
        assert_eq!(shell_quote("it's"), "'it'\\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn rerun_command_names_file_filter_and_target() {
        let r = sample::failed_must();
        assert_eq!(
            rerun_command(&r, Some("ws://h:1/ws?x=1&y=2")),
            "wschat-check run scenarios/chat/stream.yaml --filter 'tokens arrive in order' \
             --target 'ws://h:1/ws?x=1&y=2'"
        );
        assert!(!rerun_command(&r, None).contains("--target"));
        assert_eq!(rerun_target("wss://h/ws"), Some("wss://h/ws"));
        assert_eq!(
            rerun_target("embedded reference server at ws://127.0.0.1:1"),
            None
        );
    }

    #[test]
    fn window_keeps_the_marked_frames() {
        let t = sample::long_transcript("main", 20);
        let set = |v: &[u64]| v.iter().copied().collect::<BTreeSet<u64>>();
        let seqs = |w: &[FrameRecord]| w.iter().map(|f| f.seq).collect::<Vec<_>>();
        // Marked frame early: the window ends just after it, not at the tail.
        assert_eq!(seqs(frame_window(&t, &set(&[3]), 4)), vec![2, 3, 4, 5]);
        assert_eq!(seqs(frame_window(&t, &set(&[]), 3)), vec![17, 18, 19]);
        assert_eq!(seqs(frame_window(&t, &set(&[10]), 1)), vec![10]);
        assert!(frame_window(&t, &set(&[10]), 0).is_empty());
        // Marks far apart: the first (the one that stopped the scenario) wins.
        assert_eq!(seqs(frame_window(&t, &set(&[2, 15]), 3)), vec![2, 3, 4]);
        // Marks close together: both shown, with context after the last.
        assert_eq!(seqs(frame_window(&t, &set(&[5, 6]), 4)), vec![5, 6, 7, 8]);
    }

    #[test]
    fn transcript_header_counts_hidden_frames() {
        let t = sample::long_transcript("main", 20);
        let lines = transcript_lines(&t, &[3].into_iter().collect(), 4, 80);
        assert_eq!(
            lines[0].text(),
            "4 of 20 frame(s) on main (ws://127.0.0.1:4000/ws), 2 earlier and 14 later not shown"
        );
        assert_eq!(lines.len(), 5);
        assert!(lines[2].text().starts_with(">> "), "{:?}", lines[2]);
    }

    #[test]
    fn failure_lines_carry_all_parts() {
        let r = sample::failed_must();
        let text = failures_text(&r, FailureRender::default());
        assert!(text.contains("[schema] "), "{text}");
        assert!(
            text.contains("step 3 expect \"first token\" at scenarios/chat/stream.yaml:14:7"),
            "{text}"
        );
        assert!(text.contains("keyword `required`"), "{text}");
        assert!(text.contains("rule: R4"), "{text}");
        // The connection's transcript appears once, with both failing frames marked.
        assert_eq!(text.matches("of 6 frame(s) on main").count(), 1, "{text}");
        assert_eq!(text.matches("\n  >> ").count(), 2, "{text}");
    }
}
