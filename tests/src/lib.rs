//! polygate's end-to-end test harness.
//!
//! [`gateway`] runs a real gateway in the test process on a free loopback port; [`backends`]
//! finds the real servers the suite runs against (started by `tests/run.sh`) and gives each
//! test its own namespace in them; [`slt`] drives sqllogictest files through a PostgreSQL
//! client; [`wire`] is a minimal extended-protocol client for what tokio-postgres cannot ask
//! (text-format results and parameters).

pub mod backends;
pub mod gateway;
pub mod mongo;
pub mod slt;
pub mod wire;

use std::path::PathBuf;

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives in the repository")
        .to_path_buf()
}
