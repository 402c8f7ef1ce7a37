//! Compile-time behaviour of `#[with_after]` and `after!`, with trybuild.
//!
//! `pass/` cases must compile on any compiler. `fail/` cases compare rustc's messages
//! with `.stderr` snapshots, whose wording drifts between compiler versions; they run
//! only on the version recorded in `ui/RUSTC_VERSION` (regenerate with
//! `TRYBUILD=overwrite cargo test --test ui`, read the diff, and update that file).
//! On any other compiler each skipped case is named on stderr, with the reason, even
//! when the test passes.

use std::io::Write;
use std::path::Path;
use std::process::Command;

#[test]
fn ui() {
    let mismatch = snapshot_compiler_mismatch();
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    if mismatch.is_none() {
        cases.compile_fail("tests/ui/fail/*.rs");
    }
    // trybuild runs the cases when they are dropped; the skips are said after them,
    // next to the test's result.
    drop(cases);
    if let Some(reason) = mismatch {
        report_skipped(&reason);
    }
}

/// One line per skipped case, written to the process's stderr directly: the test
/// harness captures `println!` and `eprintln!` of passing tests, and a skip must not
/// go unseen.
fn report_skipped(reason: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/ui/fail");
    let mut cases: Vec<String> = std::fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("read {}: {e}", dir.display()))
        .filter_map(|entry| {
            let name = entry.ok()?.file_name().into_string().ok()?;
            name.ends_with(".rs").then_some(name)
        })
        .collect();
    cases.sort();
    assert!(!cases.is_empty(), "no fail cases in {}", dir.display());
    let mut stderr = std::io::stderr().lock();
    for case in &cases {
        writeln!(
            stderr,
            "SKIPPED UI fail case tests/ui/fail/{case}: {reason}"
        )
        .expect("write to stderr");
    }
}

/// Why the `.stderr` snapshots cannot be compared on this compiler, if they cannot.
fn snapshot_compiler_mismatch() -> Option<String> {
    let recorded = include_str!("ui/RUSTC_VERSION").trim();
    let rustc = std::env::var("RUSTC").unwrap_or_else(|_| "rustc".to_owned());
    let output = match Command::new(&rustc).arg("--version").output() {
        Ok(output) => output,
        Err(err) => return Some(format!("cannot run `{rustc} --version`: {err}")),
    };
    let version = String::from_utf8_lossy(&output.stdout);
    let current = version.split_whitespace().nth(1).unwrap_or("unknown");
    (current != recorded).then(|| {
        format!(
            "its .stderr snapshot was made with rustc {recorded}, this is rustc {current} \
             (see tests/ui.rs)"
        )
    })
}
