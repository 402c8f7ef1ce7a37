//! Compile-time behaviour of `#[with_after]` and `after!`, with trybuild.
//!
//! `pass/` cases must compile on any compiler. `fail/` cases compare rustc's messages
//! with `.stderr` snapshots, whose wording drifts between compiler versions; they run
//! only on the version recorded in `ui/RUSTC_VERSION` (regenerate with
//! `TRYBUILD=overwrite cargo test --test ui`, read the diff, and update that file).

use std::process::Command;

#[test]
fn ui() {
    let cases = trybuild::TestCases::new();
    cases.pass("tests/ui/pass/*.rs");
    match snapshot_compiler_mismatch() {
        None => cases.compile_fail("tests/ui/fail/*.rs"),
        Some(reason) => println!("skipping tests/ui/fail: {reason}"),
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
    (current != recorded)
        .then(|| format!("snapshots were made with rustc {recorded}, this is rustc {current}"))
}
