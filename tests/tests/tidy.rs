//! Rules of the code's shape that no compiler checks, as rust-analyzer's tidy test keeps
//! them: every module says what it is for, the wire protocol stays in the gateway's protocol
//! module, concrete connector crates are named only by the catalog's registry of kinds, and no
//! source file grows past a size one reader can hold (see ARCHITECTURE.md).

use std::path::{Path, PathBuf};

/// The most lines a non-test source file may have. The largest today is the gateway's
/// session (`gateway/src/pg/session.rs`, 1,021 lines: both query protocols); past this, a file
/// holds more than one concern and is split.
const MAX_LINES: usize = 1_200;

/// The concrete connector crates.
const CONNECTOR_CRATES: &[&str] = &[
    "polygate_connector_files",
    "polygate_connector_postgres",
    "polygate_connector_mongodb",
    "polygate_connector_elasticsearch",
];

/// The Rust sources of the workspace, relative to its root, with their text.
fn sources() -> Vec<(String, String)> {
    let root = polygate_tests::repo_root();
    let mut files = Vec::new();
    for top in ["catalog", "connectors", "pgcompat", "gateway", "tests"] {
        collect(&root.join(top), &mut files);
    }
    files
        .into_iter()
        .filter_map(|path| {
            let text = std::fs::read_to_string(&path).ok()?;
            let relative = path
                .strip_prefix(&root)
                .ok()?
                .to_string_lossy()
                .into_owned();
            Some((relative, text))
        })
        .collect()
}

fn collect(dir: &Path, files: &mut Vec<PathBuf>) {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        if path.is_dir() {
            // Build output and installed clients are not the project's sources.
            if name != "target" && !name.to_string_lossy().starts_with('.') {
                collect(&path, files);
            }
        } else if path.extension().is_some_and(|e| e == "rs") {
            files.push(path);
        }
    }
}

/// Whether `path` is test code: an integration test, a `tests.rs` module or the test crate.
fn is_test(path: &str) -> bool {
    path.starts_with("tests/") || path.contains("/tests/") || path.ends_with("/tests.rs")
}

/// The code of `text`: its lines without `//` comments.
fn code_lines(text: &str) -> impl Iterator<Item = &str> {
    text.lines()
        .filter(|line| !line.trim_start().starts_with("//"))
}

#[test]
fn every_module_says_what_it_is_for() {
    let undocumented: Vec<String> = sources()
        .into_iter()
        .filter(|(_, text)| !text.trim_start().starts_with("//!"))
        .map(|(path, _)| path)
        .collect();
    assert!(
        undocumented.is_empty(),
        "modules without a `//!` doc: {undocumented:#?}"
    );
}

#[test]
fn pgwire_is_spoken_only_by_the_protocol_module() {
    let users: Vec<String> = sources()
        .into_iter()
        .filter(|(path, text)| {
            !path.starts_with("gateway/src/pg/")
                && !is_test(path)
                && code_lines(text).any(|line| line.contains("pgwire::"))
        })
        .map(|(path, _)| path)
        .collect();
    assert!(
        users.is_empty(),
        "pgwire outside gateway/src/pg/: {users:#?}"
    );
}

#[test]
fn postgresql_compatibility_knows_neither_the_wire_nor_the_catalog() {
    let manifest = std::fs::read_to_string(polygate_tests::repo_root().join("pgcompat/Cargo.toml"))
        .expect("pgcompat/Cargo.toml");
    for crate_name in ["pgwire", "polygate-catalog", "polygate-connector"] {
        assert!(
            !manifest
                .lines()
                .any(|line| line.trim_start().starts_with(crate_name)),
            "pgcompat depends on {crate_name}"
        );
    }
}

#[test]
fn only_the_registry_names_connector_crates() {
    let naming: Vec<String> = sources()
        .into_iter()
        .filter(|(path, text)| {
            path != "catalog/src/kinds.rs"
                && !is_test(path)
                && code_lines(text).any(|line| {
                    CONNECTOR_CRATES.iter().any(|name| {
                        // A crate may name itself (its doc tests, its own paths).
                        let own = name.trim_start_matches("polygate_connector_");
                        line.contains(name) && !path.starts_with(&format!("connectors/{own}/"))
                    })
                })
        })
        .map(|(path, _)| path)
        .collect();
    assert!(
        naming.is_empty(),
        "connector crates are named only in catalog/src/kinds.rs: {naming:#?}"
    );
}

#[test]
fn no_source_file_outgrows_one_reader() {
    let large: Vec<(String, usize)> = sources()
        .into_iter()
        .filter(|(path, _)| !is_test(path))
        .map(|(path, text)| (path, text.lines().count()))
        .filter(|(_, lines)| *lines > MAX_LINES)
        .collect();
    assert!(
        large.is_empty(),
        "files over {MAX_LINES} lines (split them by concern): {large:?}"
    );
}
