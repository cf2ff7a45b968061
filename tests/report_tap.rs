//! The TAP report is read by a real TAP consumer: Perl's TAP::Parser (the engine behind
//! `prove`), which also parses the YAML diagnostics blocks. Without perl/TAP::Parser the check
//! is skipped with a printed reason.

use std::io::Write;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use wschat_check::report::{sample, tap, Collector};
use wschat_check::runner::RunEvent;
use wschat_check::scenario::Level;

/// Prints what TAP::Parser understood: counts, parse errors and the keys of each YAML block.
const PARSE: &str = r#"
my $t = do { local $/; <STDIN> };
my $p = TAP::Parser->new({ tap => $t });
while (my $r = $p->next) {
    if ($r->is_yaml) {
        my $d = $r->data;
        print "yaml ", (ref $d eq 'HASH' ? join(',', sort keys %$d) : 'NOT A MAP'), "\n";
    }
}
printf "version=%d plan=%s passed=%d failed=%d skipped=%d parse_errors=%d\n",
    $p->version, $p->plan, scalar($p->passed), scalar($p->failed),
    scalar($p->skipped), scalar($p->parse_errors);
print "error: $_\n" for $p->parse_errors;
"#;

fn parser_available() -> bool {
    let ok = Command::new("perl")
        .args(["-MTAP::Parser", "-e", "1"])
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    if !ok {
        eprintln!("SKIPPED: perl with TAP::Parser not found; TAP consumer check not run");
    }
    ok
}

fn tap(events: &[RunEvent], name: &str) -> String {
    let dir = std::env::temp_dir().join(format!("wschat-report-tap-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path: PathBuf = dir.join(name);
    let mut c = Collector::default();
    for e in events {
        c.on_event(e);
    }
    tap::write_file(&path, &c.into_report()).unwrap();
    std::fs::read_to_string(&path).unwrap()
}

fn parse(text: &str) -> String {
    let mut child = Command::new("perl")
        .args(["-MTAP::Parser", "-e", PARSE])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run perl");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(text.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

#[test]
fn tap_parser_reads_the_failing_run() {
    if !parser_available() {
        return;
    }
    let out = parse(&tap(&sample::events(), "fail.tap"));
    assert!(
        out.contains("version=13 plan=1..6 passed=4 failed=2 skipped=1 parse_errors=0"),
        "{out}"
    );
    // Both failures carry a YAML map with the agreed keys.
    let yaml: Vec<&str> = out.lines().filter(|l| l.starts_with("yaml ")).collect();
    assert_eq!(yaml.len(), 2, "{out}");
    for l in yaml {
        assert_eq!(
            l,
            "yaml at,duration_ms,failures,kind,level,message,rerun,severity"
        );
    }
}

#[test]
fn tap_parser_reads_a_passing_run_with_skips() {
    if !parser_available() {
        return;
    }
    let results = [
        sample::passed("a", Level::Must),
        sample::skipped("b # tricky\nname", Level::May, "requires: binary"),
        sample::flaky("c", Level::Should),
    ];
    let mut events = vec![RunEvent::RunStarted(sample::run_info())];
    for (i, r) in results.iter().enumerate() {
        events.push(RunEvent::ScenarioFinished {
            index: i,
            result: Box::new(r.clone()),
        });
    }
    let out = parse(&tap(&events, "pass.tap"));
    assert!(
        out.contains("version=13 plan=1..3 passed=3 failed=0 skipped=1 parse_errors=0"),
        "{out}"
    );
}

#[test]
fn tap_parser_catches_a_broken_plan() {
    if !parser_available() {
        return;
    }
    // The checks above must be able to fail: a plan that does not match is a parse error.
    let out = parse("TAP version 13\n1..3\nok 1 - a\n");
    assert!(!out.contains("parse_errors=0"), "{out}");
}
