//! The command line as people type it: what it offers, and mistakes refused at once, before a
//! minutes-long run starts (or, worse, runs something else than asked).

use std::process::{Command, Output};

fn bench(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rsvp-bench"))
        .args(args)
        // Not a `cargo run`: nothing is built.
        .env_remove("CARGO")
        .output()
        .expect("rsvp-bench runs")
}

fn refused(args: &[&str], says: &str) {
    let started = std::time::Instant::now();
    let output = bench(args);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success(), "{args:?} was accepted: {stderr}");
    assert!(stderr.contains(says), "{args:?}: {stderr}");
    assert!(
        started.elapsed() < std::time::Duration::from_secs(3),
        "{args:?} was refused only after {:?}",
        started.elapsed()
    );
}

#[test]
fn every_scenario_is_offered() {
    let output = bench(&["--help"]);
    assert!(output.status.success());
    let help = String::from_utf8_lossy(&output.stdout);
    for scenario in ["compare", "lists", "crowd", "ceiling"] {
        assert!(help.contains(scenario), "{scenario} missing from:\n{help}");
    }
}

#[test]
fn misspelt_names_are_refused_before_anything_runs() {
    let out = tempfile_free_dir();
    // The crowd measured the machine's ceiling (seconds) before reading its backends, and ran on
    // loopback whatever `--network` said.
    refused(&["crowd", "--backends", "mysql", "--out", &out], "mysql");
    refused(&["crowd", "--topologies", "mesh", "--out", &out], "mesh");
    refused(&["crowd", "--network", "wan", "--out", &out], "wan");
    refused(&["compare", "--network", "wan", "--out", &out], "wan");
    assert!(
        !std::path::Path::new(&out).exists(),
        "a refused run wrote {out}"
    );
}

/// A directory name under the system's temporary directory that does not exist.
fn tempfile_free_dir() -> String {
    std::env::temp_dir()
        .join(format!("rsvp-bench-cli-{}", std::process::id()))
        .display()
        .to_string()
}
