//! One self-contained HTML file: inline CSS, no script, no network. Summary and verdict,
//! every scenario with its steps and failures, and each connection's transcript as a
//! timeline (sent and received columns) with the frames that failed a check highlighted and
//! linked from the failure.
//!
//! Everything from the run is escaped; nothing is ever inserted as markup.

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::io::Write;
use std::path::Path;

use crate::runner::{Direction, ScenarioResult, Status, StepOutcome, Transcript};

use super::render;
use super::terminal::level_name;
use super::{to_io, write_file_atomically, Report, Verdict};

/// Longest payload shown per frame; the JSON report has the rest.
const PAYLOAD_MAX: usize = 4096;

/// Escapes text for element content and quoted attribute values.
pub fn esc(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

const CSS: &str = r#"
:root{--pass:#1a7f37;--fail:#cf222e;--warn:#9a6700;--dim:#57606a;--bg:#f6f8fa;--line:#d0d7de}
body{font:14px/1.45 system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:0 auto;max-width:1200px;padding:1rem 2rem;color:#1f2328}
h1{margin:.2rem 0}h2{font-size:1.1rem;margin:0 0 .3rem}
code,pre,.mono{font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace;font-size:12.5px}
pre{margin:0;white-space:pre-wrap;word-break:break-all}
.verdict{display:inline-block;font-weight:700;padding:.2rem .6rem;border-radius:4px;color:#fff}
.v-conformant{background:var(--pass)}.v-conformant_with_warnings{background:var(--warn)}.v-not_conformant{background:var(--fail)}
table{border-collapse:collapse;margin:.5rem 0}th,td{border:1px solid var(--line);padding:.2rem .5rem;text-align:left;vertical-align:top}
th{background:var(--bg)}td.n{text-align:right}
.badge{display:inline-block;min-width:3.2rem;text-align:center;font-weight:700;border-radius:3px;color:#fff;padding:0 .3rem;margin-right:.4rem}
.b-passed{background:var(--pass)}.b-failed{background:var(--fail)}.b-skipped{background:var(--dim)}.b-flaky{background:var(--warn)}
.scenario{border:1px solid var(--line);border-radius:6px;padding:.7rem 1rem;margin:1rem 0}
.scenario.failed{border-left:5px solid var(--fail)}.scenario.flaky{border-left:5px solid var(--warn)}
.meta{color:var(--dim);margin:.1rem 0 .5rem}
.failure{background:#ffebe9;border:1px solid #ffcecb;border-radius:4px;padding:.5rem .8rem;margin:.5rem 0}
.failure .kind{font-weight:700;color:var(--fail)}
.steps li.failed{color:var(--fail);font-weight:600}.steps li.notrun{color:var(--dim)}
.timeline{width:100%;table-layout:fixed}.timeline col.seq{width:3.5rem}.timeline col.t{width:7.5rem}
.timeline tr.bad td{background:#ffebe9;outline:2px solid var(--fail)}
.timeline td.sent{background:#f0f6ff}.timeline td.recv{background:#f3fff0}
.kind-tag{color:var(--dim);font-size:11px;text-transform:uppercase;margin-right:.3rem}
nav ul{columns:2;list-style:none;padding:0}nav li{margin:.1rem 0}
a{color:#0969da}
"#;

pub fn write_html(report: &Report, mut w: impl Write) -> std::io::Result<()> {
    let s = render_html(report);
    w.write_all(s.as_bytes())
}

/// The whole document.
pub fn render_html(report: &Report) -> String {
    let mut h = String::with_capacity(64 * 1024);
    let verdict_class = match report.summary.verdict {
        Verdict::Conformant => "conformant",
        Verdict::ConformantWithWarnings => "conformant_with_warnings",
        Verdict::NotConformant => "not_conformant",
    };
    let _ = write!(
        h,
        "<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n\
         <meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n\
         <title>wschat-check report: {}</title>\n<style>{CSS}</style>\n</head>\n<body>\n",
        esc(report.summary.verdict.as_str())
    );
    let _ = write!(
        h,
        "<header>\n<h1>wschat-check report</h1>\n<p><span class=\"verdict v-{verdict_class}\">{}</span></p>\n",
        esc(report.summary.verdict.as_str())
    );
    let _ = write!(
        h,
        "<table class=\"run\">\n<tr><th>target</th><td class=\"mono\">{}</td></tr>\n\
         <tr><th>started</th><td>{}</td></tr>\n<tr><th>duration</th><td>{}</td></tr>\n\
         <tr><th>jobs</th><td>{}</td></tr>\n<tr><th>tool</th><td>{} {}</td></tr>\n</table>\n",
        esc(&report.run.target),
        esc(&report.run.started_at),
        esc(&render::fmt_duration(report.summary.duration)),
        report.run.jobs,
        esc(&report.tool.name),
        esc(&report.tool.version),
    );
    h.push_str(
        "<table class=\"levels\">\n<tr><th>level</th><th>passed</th><th>failed</th><th>skipped</th><th>flaky</th></tr>\n",
    );
    for (level, c) in report.summary.by_level.iter() {
        let _ = writeln!(
            h,
            "<tr><th>{}</th><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
            level_name(level),
            c.passed,
            c.failed,
            c.skipped,
            c.flaky
        );
    }
    let _ = writeln!(
        h,
        "<tr><th>total</th><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>\n</table>\n</header>",
        report.summary.passed, report.summary.failed, report.summary.skipped, report.summary.flaky
    );

    h.push_str("<nav>\n<h2>Scenarios</h2>\n<ul>\n");
    for (i, s) in report.scenarios.iter().enumerate() {
        let _ = writeln!(
            h,
            "<li>{} <a href=\"#s{i}\">{}</a> <span class=\"meta\">({})</span></li>",
            badge(s.status),
            esc(&s.name),
            level_name(s.level)
        );
    }
    h.push_str("</ul>\n</nav>\n<main>\n");
    for (i, s) in report.scenarios.iter().enumerate() {
        scenario(&mut h, i, s, &report.run.target);
    }
    h.push_str("</main>\n</body>\n</html>\n");
    h
}

fn status_word(st: Status) -> &'static str {
    match st {
        Status::Passed => "passed",
        Status::Failed => "failed",
        Status::Skipped => "skipped",
        Status::Flaky => "flaky",
    }
}

fn badge(st: Status) -> String {
    let label = match st {
        Status::Passed => "PASS",
        Status::Failed => "FAIL",
        Status::Skipped => "SKIP",
        Status::Flaky => "FLAKY",
    };
    format!("<span class=\"badge b-{}\">{label}</span>", status_word(st))
}

fn frame_id(scenario: usize, conn_index: usize, seq: u64) -> String {
    format!("s{scenario}-c{conn_index}-f{seq}")
}

fn scenario(h: &mut String, i: usize, s: &ScenarioResult, target: &str) {
    let _ = writeln!(
        h,
        "<section class=\"scenario {}\" id=\"s{i}\">\n<h2>{}{}</h2>",
        status_word(s.status),
        badge(s.status),
        esc(&s.name)
    );
    let mut meta = vec![
        level_name(s.level).to_string(),
        render::fmt_duration(s.duration),
        s.location.clone(),
    ];
    if s.attempts > 1 {
        meta.push(format!("{} attempts", s.attempts));
    }
    if !s.tags.is_empty() {
        meta.push(format!("tags: {}", s.tags.join(", ")));
    }
    let _ = writeln!(h, "<p class=\"meta mono\">{}</p>", esc(&meta.join(" · ")));
    if let Some(d) = &s.description {
        let _ = writeln!(h, "<p>{}</p>", esc(d));
    }
    if let Some(r) = &s.skip_reason {
        let _ = writeln!(h, "<p><strong>Skipped:</strong> {}</p>", esc(r));
    }
    if !s.steps.is_empty() {
        h.push_str("<ol class=\"steps\">\n");
        for st in &s.steps {
            let (class, word) = match st.outcome {
                StepOutcome::Passed => ("passed", "passed"),
                StepOutcome::Failed => ("failed", "failed"),
                StepOutcome::NotRun => ("notrun", "not run"),
            };
            let name = st
                .name
                .as_ref()
                .map(|n| format!(" “{}”", esc(n)))
                .unwrap_or_default();
            let _ = writeln!(
                h,
                "<li class=\"{class}\"><code>{}</code>{name} <span class=\"meta mono\">{} · {} · {}</span></li>",
                esc(&st.keyword),
                esc(&st.location),
                word,
                esc(&render::fmt_duration(st.duration))
            );
        }
        h.push_str("</ol>\n");
    }
    for f in &s.failures {
        h.push_str("<div class=\"failure\">\n");
        let _ = writeln!(
            h,
            "<p><span class=\"kind\">[{}]</span> {}</p>",
            esc(&render::kind_label(f)),
            esc(&f.message)
        );
        if let Some(step) = &f.step {
            let _ = writeln!(
                h,
                "<p>at <code>{}</code></p>",
                esc(&render::step_label(step))
            );
        }
        if let Some(e) = &f.expected {
            let _ = writeln!(h, "<p>expected: <code>{}</code></p>", esc(e));
        }
        if !f.detail.is_empty() {
            h.push_str("<ul>\n");
            for d in &f.detail {
                let _ = writeln!(h, "<li><code>{}</code></li>", esc(d));
            }
            h.push_str("</ul>\n");
        }
        if let Some(sv) = &f.schema {
            let _ = writeln!(
                h,
                "<p>schema{}: at <code>{}</code>, keyword <code>{}</code>, schema path <code>{}</code>: {}</p>",
                sv.event_type.as_ref().map(|t| format!(" of <code>{}</code>", esc(t))).unwrap_or_default(),
                esc(if sv.instance_path.is_empty() { "/" } else { &sv.instance_path }),
                esc(&sv.keyword),
                esc(&sv.schema_path),
                esc(&sv.message)
            );
        }
        if let Some(r) = &f.rule {
            let _ = writeln!(h, "<p>rule: <code>{}</code></p>", esc(r));
        }
        if let Some(fr) = &f.frame {
            if let Some(ci) = s.transcripts.iter().position(|t| t.conn == fr.conn) {
                let _ = writeln!(
                    h,
                    "<p>frame: <a href=\"#{}\">#{} on {}</a></p>",
                    frame_id(i, ci, fr.seq),
                    fr.seq,
                    esc(&fr.conn)
                );
            }
        }
        h.push_str("</div>\n");
    }
    if s.status == Status::Failed {
        let _ = writeln!(
            h,
            "<p>re-run: <code>{}</code></p>",
            esc(&render::rerun_command(s, render::rerun_target(target)))
        );
    }
    for (ci, t) in s.transcripts.iter().enumerate() {
        let marked: BTreeSet<u64> = s
            .failures
            .iter()
            .filter_map(|f| f.frame.as_ref())
            .filter(|fr| fr.conn == t.conn)
            .map(|fr| fr.seq)
            .collect();
        transcript(h, i, ci, t, &marked, s.status == Status::Failed);
    }
    if !s.timings.is_empty() {
        h.push_str(
            "<table class=\"timings\">\n<tr><th>conn</th><th>connect</th><th>first event</th><th>first token</th>\
             <th>max token gap</th><th>turn</th><th>cancel ack</th></tr>\n",
        );
        for t in &s.timings {
            let ms = |v: Option<f64>| {
                v.map(|v| format!("{v:.1} ms"))
                    .unwrap_or_else(|| "–".into())
            };
            let _ = writeln!(
                h,
                "<tr><td>{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td><td class=\"n\">{}</td></tr>",
                esc(&t.conn),
                ms(t.connect_ms),
                ms(t.first_event_ms),
                ms(t.first_token_ms),
                ms(t.max_token_gap_ms),
                ms(t.turn_ms),
                ms(t.cancel_ack_ms)
            );
        }
        h.push_str("</table>\n");
    }
    h.push_str("</section>\n");
}

fn transcript(
    h: &mut String,
    si: usize,
    ci: usize,
    t: &Transcript,
    marked: &BTreeSet<u64>,
    open: bool,
) {
    let _ = writeln!(
        h,
        "<details{}>\n<summary>connection <code>{}</code> · <code>{}</code> · {} frame(s){}</summary>",
        if open { " open" } else { "" },
        esc(&t.conn),
        esc(&t.url),
        t.frames.len(),
        if t.dropped > 0 {
            format!(" ({} earlier dropped)", t.dropped)
        } else {
            String::new()
        }
    );
    h.push_str(
        "<table class=\"timeline\"><colgroup><col class=\"seq\"><col class=\"t\"><col><col></colgroup>\n\
         <tr><th>#</th><th>time</th><th>sent</th><th>received</th></tr>\n",
    );
    for f in &t.frames {
        let payload = frame_payload(f);
        let cell = format!(
            "<span class=\"kind-tag\">{}</span>{}{}",
            render::kind_name(f.kind),
            f.note
                .as_ref()
                .map(|n| format!("<span class=\"meta\">{}</span>", esc(n)))
                .unwrap_or_default(),
            if payload.is_empty() {
                String::new()
            } else {
                format!("<pre>{}</pre>", esc(&payload))
            }
        );
        let (sent, recv) = match f.dir {
            Direction::Sent => (cell, String::new()),
            Direction::Received => (String::new(), cell),
        };
        let _ = writeln!(
            h,
            "<tr id=\"{}\"{}><td class=\"n\">{}</td><td class=\"mono\">{}</td><td class=\"sent\">{sent}</td><td class=\"recv\">{recv}</td></tr>",
            frame_id(si, ci, f.seq),
            if marked.contains(&f.seq) { " class=\"bad\"" } else { "" },
            f.seq,
            esc(&render::fmt_offset_us(f.at_us)),
        );
    }
    h.push_str("</table>\n</details>\n");
}

/// The frame's text exactly as it was on the wire (re-serializing the parsed JSON would
/// reorder keys), bounded.
fn frame_payload(f: &crate::runner::FrameRecord) -> String {
    render::truncate(f.text.as_deref().unwrap_or(""), PAYLOAD_MAX)
}

/// Writes the self-contained HTML report of a finished run to `path` (atomically).
pub fn write_file(path: &Path, report: &Report) -> std::io::Result<()> {
    write_file_atomically(path, |w| write_html(report, w)).map_err(to_io)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::report::{sample, Collector};

    fn html() -> String {
        let mut c = Collector::default();
        for e in sample::events() {
            c.on_event(&e);
        }
        render_html(&c.report())
    }

    #[test]
    fn snapshot() {
        let h = html();
        insta::with_settings!({filters => vec![
            (r"\d+\.\d+ m?s", "[DURATION]"),
            (r"wschat-check \d+\.\d+\.\d+", "wschat-check [VERSION]"),
        ]}, { insta::assert_snapshot!("html_full_run", h) });
    }

    #[test]
    fn escapes_everything() {
        assert_eq!(
            esc(r#"<a href="x">'&'</a>"#),
            "&lt;a href=&quot;x&quot;&gt;&#39;&amp;&#39;&lt;/a&gt;"
        );
        let h = html();
        // The sample's frame text and description contain markup; it must appear escaped only.
        assert!(!h.contains("<b>&</b>"), "raw payload markup leaked");
        assert!(h.contains("hi &lt;b&gt;&amp;&lt;/b&gt;"));
        assert!(h.contains("numbered &lt;0..n&gt; &amp; concatenate"));
    }

    #[test]
    fn self_contained() {
        let h = html();
        assert!(h.starts_with("<!DOCTYPE html>"));
        assert!(!h.contains("<script"), "no script needed");
        assert!(
            !h.contains("http://") && !h.contains("https://"),
            "no network references"
        );
        assert!(!h.contains("<link"));
    }

    #[test]
    fn offending_frames_are_highlighted_and_linked() {
        let h = html();
        assert!(h.contains("<tr id=\"s1-c0-f3\" class=\"bad\">"), "{h}");
        assert!(h.contains("<tr id=\"s1-c0-f4\" class=\"bad\">"));
        assert!(h.contains("<tr id=\"s1-c0-f2\"><td"));
        assert!(h.contains("<a href=\"#s1-c0-f3\">#3 on main</a>"));
        assert!(h.contains("v-not_conformant"));
    }

    #[test]
    fn sent_and_received_columns() {
        let h = html();
        let start = h.find("<tr id=\"s1-c0-f2\"").unwrap();
        let row = &h[start..start + h[start..].find("</tr>").unwrap()];
        // Frame 2 is sent: its payload is in the sent cell, the received cell is empty.
        assert!(
            row.contains("<td class=\"sent\"><span class=\"kind-tag\">text</span>"),
            "{row}"
        );
        assert!(row.ends_with("<td class=\"recv\"></td>"), "{row}");
        let start = h.find("<tr id=\"s1-c0-f3\"").unwrap();
        let row = &h[start..start + h[start..].find("</tr>").unwrap()];
        assert!(
            row.contains("<td class=\"sent\"></td><td class=\"recv\">"),
            "{row}"
        );
    }
}
