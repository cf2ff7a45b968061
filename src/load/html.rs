//! Self-contained HTML report of a load run: summary tables, one inline SVG histogram per latency
//! metric, and a per-second time series of sessions/s and p99. No scripts, fonts or network.

use std::fmt::Write as _;

use super::stats::{Bucket, LoadReport, METRICS};

fn esc(s: &str) -> String {
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

fn ms(v: Option<f64>) -> String {
    v.map(|v| format!("{v:.2}")).unwrap_or_else(|| "–".into())
}

const W: f64 = 560.0;
const H: f64 = 140.0;

fn histogram_svg(buckets: &[Bucket]) -> String {
    if buckets.is_empty() {
        return "<p class=\"muted\">no samples</p>".into();
    }
    let max = buckets.iter().map(|b| b.count).max().unwrap_or(1).max(1) as f64;
    let bw = W / buckets.len() as f64;
    let mut s = format!(
        "<svg viewBox=\"0 0 {W} {}\" width=\"{W}\" height=\"{}\" role=\"img\">",
        H + 20.0,
        H + 20.0
    );
    for (i, b) in buckets.iter().enumerate() {
        let h = (b.count as f64 / max) * H;
        let _ = write!(
            s,
            "<rect x=\"{:.1}\" y=\"{:.1}\" width=\"{:.1}\" height=\"{:.1}\" fill=\"#4a78c2\"><title>{:.3}–{:.3} ms: {}</title></rect>",
            i as f64 * bw + 0.5,
            H - h,
            (bw - 1.0).max(0.5),
            h,
            b.from_ms,
            b.to_ms,
            b.count
        );
    }
    let first = buckets.first().map(|b| b.from_ms).unwrap_or(0.0);
    let last = buckets.last().map(|b| b.to_ms).unwrap_or(0.0);
    let _ = write!(
        s,
        "<text x=\"0\" y=\"{}\" font-size=\"11\">{first:.2} ms</text><text x=\"{W}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\">{last:.2} ms (log scale)</text></svg>",
        H + 15.0,
        H + 15.0
    );
    s
}

fn series_svg(points: &[(f64, f64)], colour: &str, unit: &str) -> String {
    if points.is_empty() {
        return "<p class=\"muted\">no samples</p>".into();
    }
    let max_x = points.iter().map(|p| p.0).fold(1.0, f64::max);
    let max_y = points.iter().map(|p| p.1).fold(0.0, f64::max).max(1e-9);
    let path: Vec<String> = points
        .iter()
        .map(|(x, y)| format!("{:.1},{:.1}", x / max_x * W, H - y / max_y * H))
        .collect();
    format!(
        "<svg viewBox=\"0 0 {W} {}\" width=\"{W}\" height=\"{}\" role=\"img\"><polyline fill=\"none\" stroke=\"{colour}\" stroke-width=\"2\" points=\"{}\"/><text x=\"0\" y=\"12\" font-size=\"11\">max {max_y:.2} {unit}</text><text x=\"{W}\" y=\"{}\" font-size=\"11\" text-anchor=\"end\">{max_x:.0} s</text></svg>",
        H + 20.0,
        H + 20.0,
        path.join(" "),
        H + 15.0
    )
}

/// Renders the report as one HTML document.
pub fn render(r: &LoadReport) -> String {
    let mut s = String::new();
    let _ = write!(
        s,
        "<!doctype html><html lang=\"en\"><head><meta charset=\"utf-8\"><title>Load: {}</title><style>\
body{{font:14px/1.4 system-ui,sans-serif;margin:2em;color:#222}}table{{border-collapse:collapse;margin:.5em 0 1.5em}}\
td,th{{border:1px solid #ccc;padding:3px 8px;text-align:right}}th:first-child,td:first-child{{text-align:left}}\
.pass{{color:#1a7f37}}.fail{{color:#c62828}}.muted{{color:#777}}h2{{margin-top:1.5em}}</style></head><body>",
        esc(&r.meta.scenario)
    );
    let _ = write!(
        s,
        "<h1>Load: {} <span class=\"{}\">{}</span></h1><p>Target: {}<br>Started {} · {:.1} s · {} user(s){}{} · schema sample 1 in {}</p>",
        esc(&r.meta.scenario),
        esc(&r.verdict),
        esc(&r.verdict.to_uppercase()),
        esc(&r.meta.target),
        esc(&r.meta.started_at),
        r.elapsed_s,
        r.meta.users,
        r.meta
            .arrival_rate
            .map(|a| format!(" · arrival {a}/s"))
            .unwrap_or_default(),
        r.meta
            .iterations
            .map(|n| format!(" · {n} iteration(s)"))
            .unwrap_or_default(),
        r.meta.schema_sample
    );
    let _ = write!(
        s,
        "<table><tr><th>sessions</th><th>passed</th><th>failed</th><th>sessions/s</th><th>frames</th><th>frames/s</th><th>error rate</th></tr>\
<tr><td>{}</td><td>{}</td><td>{}</td><td>{:.1}</td><td>{}</td><td>{:.0}</td><td>{:.2}%</td></tr></table>",
        r.sessions.total,
        r.sessions.passed,
        r.sessions.failed,
        r.throughput.sessions_per_s,
        r.frames,
        r.throughput.frames_per_s,
        r.errors.rate * 100.0
    );
    s.push_str("<h2>Latency (ms)</h2><table><tr><th>metric</th><th>count</th><th>p50</th><th>p90</th><th>p99</th><th>max</th><th>mean</th></tr>");
    for (key, _) in METRICS {
        if let Some(p) = r.latency_ms.get(key) {
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                esc(&p.label),
                p.count,
                ms(p.p50),
                ms(p.p90),
                ms(p.p99),
                ms(p.max),
                ms(p.mean)
            );
        }
    }
    s.push_str("</table>");
    if !r.errors.by_class.is_empty() {
        s.push_str("<h2>Errors</h2><table><tr><th>class</th><th>count</th><th>example</th></tr>");
        for e in &r.errors.by_class {
            let _ = write!(
                s,
                "<tr><td>{}</td><td>{}</td><td style=\"text-align:left\">{}</td></tr>",
                esc(&e.class),
                e.count,
                esc(&e.example)
            );
        }
        s.push_str("</table>");
    }
    s.push_str("<h2>Over time</h2><h3>Sessions per second</h3>");
    let sessions: Vec<(f64, f64)> = r
        .timeline
        .iter()
        .map(|t| (t.second as f64, t.sessions as f64))
        .collect();
    s.push_str(&series_svg(&sessions, "#4a78c2", "sessions/s"));
    s.push_str("<h3>p99 of whole sessions per second</h3>");
    let p99: Vec<(f64, f64)> = r
        .timeline
        .iter()
        .filter_map(|t| t.p99_ms.map(|p| (t.second as f64, p)))
        .collect();
    s.push_str(&series_svg(&p99, "#c2664a", "ms"));
    s.push_str("<h2>Histograms</h2>");
    for (key, label) in METRICS {
        if let Some(b) = r.histograms.get(key) {
            if b.is_empty() {
                continue;
            }
            let _ = write!(s, "<h3>{}</h3>", esc(label));
            s.push_str(&histogram_svg(b));
        }
    }
    s.push_str("</body></html>\n");
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::load::stats::{ReportMeta, Stats};
    use std::time::Duration;

    #[test]
    fn html_is_self_contained_and_escaped() {
        let stats = Stats::new();
        let r = stats.report(
            ReportMeta {
                scenario: "<script>x</script>".into(),
                target: "t".into(),
                started_at: "now".into(),
                users: 1,
                arrival_rate: None,
                duration_s: None,
                iterations: Some(1),
                ramp_s: 0.0,
                schema_sample: 1,
                max_error_rate: None,
            },
            Duration::from_secs(1),
        );
        let html = render(&r);
        assert!(!html.contains("<script>"));
        assert!(html.contains("&lt;script&gt;"));
        assert!(!html.contains("http://") && !html.contains("https://"));
    }
}
