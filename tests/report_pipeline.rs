//! The reporting pipeline as the CLI drives it: `ReportOptions::build`, events through the
//! set (redacted once for every reporter), files written, the exit decision; and shards
//! merged back into one report that every writer can render.

use std::path::{Path, PathBuf};

use wschat_check::report::json::read_json_report;
use wschat_check::report::merge::merge_files;
use wschat_check::report::{sample, Report, ReportOptions, Reporter, Secret, Verdict};
use wschat_check::runner::RunEvent;
use wschat_check::scenario::Level;

const JWT: &str = "eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiJhIn0.c2lnbmF0dXJl";

fn dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!(
        "wschat-report-pipeline-{}-{name}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

fn options(d: &Path) -> ReportOptions {
    ReportOptions {
        json: Some(d.join("out/report.json")),
        junit: Some(d.join("out/junit.xml")),
        tap: Some(d.join("out/report.tap")),
        html: Some(d.join("out/report.html")),
        secrets: vec![Secret::parse_arg("MSG=hi <b>&</b>").unwrap()],
        env_secrets: false,
        terminal: false,
        ..ReportOptions::default()
    }
}

fn run(opts: &ReportOptions, events: &[RunEvent]) -> wschat_check::report::Decision {
    let mut set = opts.build().unwrap();
    for e in events {
        set.on_event(e);
    }
    set.finish().unwrap();
    set.decision()
}

#[test]
fn every_file_is_written_and_redacted() {
    let d = dir("all");
    let opts = options(&d);
    let decision = run(&opts, &sample::events());
    assert!(!decision.success);
    assert_eq!(decision.verdict, Verdict::NotConformant);
    assert_eq!(decision.new_failures, vec!["tokens arrive in order"]);

    for name in ["report.json", "junit.xml", "report.tap", "report.html"] {
        let text = std::fs::read_to_string(d.join("out").join(name)).unwrap();
        assert!(!text.is_empty(), "{name} is empty");
        assert!(!text.contains(JWT), "{name} leaks a JWT");
        assert!(
            !text.contains("Bearer abc.def"),
            "{name} leaks an Authorization header"
        );
        assert!(!text.contains("hi <b>"), "{name} leaks a --secret value");
    }
    let html = std::fs::read_to_string(d.join("out/report.html")).unwrap();
    assert!(html.contains("***MSG***"));
    let report = read_json_report(&d.join("out/report.json")).unwrap();
    assert_eq!(report.summary.verdict, Verdict::NotConformant);
}

#[test]
fn baseline_turns_a_known_failure_into_success_and_flags_stale_entries() {
    let d = dir("baseline");
    let baseline = d.join("baseline.yaml");
    std::fs::write(
        &baseline,
        "- name: tokens arrive in order\n  reason: tracked upstream\n",
    )
    .unwrap();
    let mut opts = options(&d);
    opts.baseline = Some(baseline.clone());
    let decision = run(&opts, &sample::events());
    assert!(decision.success, "{decision:?}");
    assert_eq!(decision.known_failures.len(), 1);

    std::fs::write(
        &baseline,
        "[\"tokens arrive in order\", \"history endpoint\"]",
    )
    .unwrap();
    let decision = run(&opts, &sample::events());
    assert!(!decision.success);
    assert_eq!(decision.stale, vec!["history endpoint"]);

    // A stricter threshold makes the should failure count.
    std::fs::write(&baseline, "- tokens arrive in order\n").unwrap();
    opts.fail_level = Level::Should;
    let decision = run(&opts, &sample::events());
    assert_eq!(
        decision.new_failures,
        vec!["cancel is acknowledged quickly"]
    );
}

#[test]
fn unreadable_baseline_fails_before_the_run() {
    let d = dir("nobaseline");
    let mut opts = options(&d);
    opts.baseline = Some(d.join("missing.yaml"));
    let err = opts
        .build()
        .err()
        .expect("missing baseline is an error")
        .to_string();
    assert!(err.contains("missing.yaml"), "{err}");
}

#[test]
fn unwritable_report_path_is_an_error_naming_it() {
    let d = dir("unwritable");
    // A file where a directory is needed.
    std::fs::write(d.join("blocker"), "x").unwrap();
    let mut opts = options(&d);
    opts.json = Some(d.join("blocker/report.json"));
    let mut set = opts.build().unwrap();
    for e in sample::events() {
        set.on_event(&e);
    }
    let err = set.finish().unwrap_err().to_string();
    assert!(err.contains("blocker"), "{err}");
    // The other reporters still wrote their files.
    assert!(d.join("out/junit.xml").exists());
}

#[test]
fn shards_merge_into_the_same_verdict_and_render() {
    let d = dir("merge");
    let all = sample::events();
    let (mut a, mut b): (Vec<RunEvent>, Vec<RunEvent>) = (vec![], vec![]);
    for e in all {
        match &e {
            RunEvent::ScenarioFinished { index, .. } if *index % 2 == 0 => a.push(e),
            RunEvent::ScenarioFinished { .. } => b.push(e),
            _ => {
                a.push(e.clone());
                b.push(e);
            }
        }
    }
    let mut paths = vec![];
    for (name, events) in [("a", &a), ("b", &b)] {
        let mut o = options(&d.join(name));
        o.junit = None;
        o.tap = None;
        o.html = None;
        run(&o, events);
        paths.push(d.join(name).join("out/report.json"));
    }
    let merged: Report = merge_files(&paths).unwrap();
    assert_eq!(merged.scenarios.len(), 6);
    assert_eq!(merged.summary.verdict, Verdict::NotConformant);
    assert_eq!(merged.summary.failed, 2);

    // Any writer renders the merged report.
    let mut o = options(&d.join("merged"));
    o.json = Some(d.join("merged/report.json"));
    let mut set = o.build().unwrap();
    set.replay(&merged).unwrap();
    assert!(!set.decision().success);
    assert!(d.join("merged/out/junit.xml").exists());
    assert_eq!(
        read_json_report(&d.join("merged/report.json"))
            .unwrap()
            .scenarios
            .len(),
        6
    );

    // Shards that overlap are refused, naming both files.
    let err = merge_files(&[paths[0].clone(), paths[0].clone()])
        .unwrap_err()
        .to_string();
    assert!(err.contains("appears in"), "{err}");
}
