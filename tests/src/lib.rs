//! polygate's end-to-end test harness.
//!
//! [`gateway`] runs a real gateway in the test process on a free loopback port; [`backends`]
//! finds the real servers the suite runs against (started by `tests/run.sh`) and gives each
//! test its own namespace in them; [`slt`] drives sqllogictest files through a PostgreSQL
//! client; [`wire`] is a minimal extended-protocol client for what tokio-postgres cannot ask
//! (text-format results and parameters).

// Test support: a failed expectation or an index out of range here is a failed test, with
// its message.
#![allow(clippy::expect_used, clippy::indexing_slicing)]

pub mod backends;
pub mod bench;
pub mod faults;
pub mod gateway;
pub mod mongo;
pub mod search;
pub mod slt;
pub mod tls;
pub mod wire;

use std::path::PathBuf;

/// The repository's root directory.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("the tests crate lives in the repository")
        .to_path_buf()
}

/// The rows of `sql` run by the simple query protocol, exactly as sent in PostgreSQL's text
/// format, NULL as `None`.
pub async fn text_rows(
    client: &tokio_postgres::Client,
    sql: &str,
) -> anyhow::Result<Vec<Vec<Option<String>>>> {
    Ok(client
        .simple_query(sql)
        .await
        .map_err(|e| anyhow::anyhow!("{sql}: {e}: {}", backends::server_message(&e)))?
        .into_iter()
        .filter_map(|m| match m {
            tokio_postgres::SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_owned))
                    .collect(),
            ),
            _ => None,
        })
        .collect())
}
