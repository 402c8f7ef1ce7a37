//! One sqlx and one SQLite library in the workspace, no TLS stack in after-durable,
//! and after-runtime without any of it (`cargo tree`, read from `Cargo.lock`).

use std::collections::BTreeSet;
use std::process::Command;

fn cargo_tree(args: &[&str]) -> String {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let output = Command::new(cargo)
        .arg("tree")
        .args(args)
        .current_dir(concat!(env!("CARGO_MANIFEST_DIR"), "/.."))
        .output()
        .expect("run cargo tree");
    assert!(
        output.status.success(),
        "cargo tree {args:?} failed: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// The versions of `name` in a `--prefix none` listing.
fn versions(tree: &str, name: &str) -> BTreeSet<String> {
    tree.lines()
        .filter_map(|line| line.strip_prefix(&format!("{name} v")))
        .map(|rest| {
            rest.split_whitespace()
                .next()
                .unwrap_or_default()
                .to_owned()
        })
        .collect()
}

#[test]
fn one_sqlx_and_one_libsqlite3_sys_in_the_tree() {
    // `-d` lists a package twice when the same version is built for the host too
    // (apalis-sqlite's query macros open SQLite at compile time); outside proc
    // macros it must not appear at all.
    let duplicates = cargo_tree(&["-d", "--workspace", "--all-features", "-e", "no-proc-macro"]);
    for name in ["sqlx", "sqlx-core", "sqlx-sqlite", "libsqlite3-sys"] {
        assert!(
            !duplicates
                .lines()
                .any(|l| l.starts_with(&format!("{name} v"))),
            "{name} is duplicated:\n{duplicates}"
        );
    }
    let all = cargo_tree(&["--workspace", "--all-features", "--prefix", "none"]);
    for name in ["sqlx", "libsqlite3-sys"] {
        let found = versions(&all, name);
        assert_eq!(found.len(), 1, "{name}: {found:?}");
    }
}

#[test]
fn after_durable_pulls_no_tls_stack() {
    let tree = cargo_tree(&[
        "-p",
        "after-durable",
        "--all-features",
        "-e",
        "normal",
        "--prefix",
        "none",
    ]);
    for tls in ["rustls", "native-tls", "openssl", "webpki"] {
        assert!(
            !tree.lines().any(|l| l.starts_with(tls)),
            "after-durable depends on {tls}"
        );
    }
}

#[test]
fn after_runtime_gains_no_dependency() {
    let tree = cargo_tree(&[
        "-p",
        "after-runtime",
        "--all-features",
        "-e",
        "normal",
        "--prefix",
        "none",
    ]);
    for name in [
        "sqlx",
        "apalis",
        "libsqlite3-sys",
        "after-durable",
        "serde_json",
    ] {
        assert!(
            !tree
                .lines()
                .any(|l| l.starts_with(&format!("{name} ")) || l.starts_with(&format!("{name}-"))),
            "after-runtime depends on {name}"
        );
    }
}
