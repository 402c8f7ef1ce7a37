//! The import directions ARCHITECTURE.md describes, checked on the source: the
//! leaves import nothing of the engine (the runtime, the scope, the executor), and
//! the only cycles are the runtime with the scope and the runtime with the executor.

use std::path::Path;

/// Files that import nothing of the engine.
const LEAVES: [&str; 9] = [
    "config.rs",
    "error.rs",
    "job.rs",
    "log.rs",
    "metrics.rs",
    "outcome.rs",
    "request.rs",
    "stats.rs",
    "task.rs",
];

/// The engine's files.
const ENGINE_FILES: [&str; 7] = [
    "executor.rs",
    "runtime/mod.rs",
    "runtime/shutdown.rs",
    "runtime/state.rs",
    "scope.rs",
    "scope/current.rs",
    "scope/release.rs",
];

/// The engine's parts, as a path names them.
const ENGINE: [&str; 3] = ["runtime", "scope", "executor"];

fn source(file: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("src").join(file);
    std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// The engine parts `file` names in its code (comments left out).
fn engine_imports(file: &str) -> Vec<&'static str> {
    let code: String = source(file)
        .lines()
        .filter(|line| !line.trim_start().starts_with("//"))
        .collect::<Vec<_>>()
        .join("\n");
    ENGINE
        .into_iter()
        .filter(|part| code.contains(&format!("crate::{part}")))
        .collect()
}

#[test]
fn the_leaves_import_nothing_of_the_engine() {
    for leaf in LEAVES {
        assert!(
            engine_imports(leaf).is_empty(),
            "{leaf} imports {:?}",
            engine_imports(leaf)
        );
    }
}

#[test]
fn the_only_cycles_are_the_runtime_with_the_scope_and_with_the_executor() {
    // The scope never reaches the executor, and its guard and task-locals reach the
    // runtime only through the scope.
    for file in ["scope.rs", "scope/current.rs", "scope/release.rs"] {
        assert!(!engine_imports(file).contains(&"executor"), "{file}");
    }
    for file in ["scope/current.rs", "scope/release.rs"] {
        assert!(!engine_imports(file).contains(&"runtime"), "{file}");
    }
    assert_eq!(engine_imports("scope.rs"), ["runtime"]);
    assert_eq!(engine_imports("executor.rs"), ["runtime", "scope"]);
    // Above the engine: `Cookies` reads the scope, and nothing imports it back.
    assert_eq!(engine_imports("context.rs"), ["scope"]);
    for file in ENGINE_FILES {
        assert!(!source(file).contains("crate::context"), "{file}");
    }
    // The state is plain data: it names the scope it holds, and nothing that runs.
    assert_eq!(engine_imports("runtime/state.rs"), ["scope"]);
}
