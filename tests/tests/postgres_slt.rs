//! Runs every `tests/slt/postgres/*.slt` file three times: against PostgreSQL itself, through
//! polygate with pushdown, and through polygate with pushdown disabled.
//!
//! The files query schema `pg` of a database loaded from `tests/slt/postgres/fixture.sql`.
//! PostgreSQL resolves `pg.table` to that schema; polygate to its source `pg`, which maps the
//! same schema. The same expected rows must therefore come out of PostgreSQL and of both
//! gateways: every pushed query returns what PostgreSQL returns, with and without pushdown.
//! Records labelled `onlyif pushdown` (EXPLAIN plans) run on the pushdown gateway only.

// Test helpers: a failed expectation is a failed test, with its message.
#![allow(clippy::expect_used)]

use polygate_tests::backends::{self, Backend, PgDatabase};
use polygate_tests::gateway::TestGateway;
use polygate_tests::slt;

/// A catalog serving the test database as source `pg`.
fn catalog(dir: &std::path::Path, name: &str, url: &str, pushdown: bool) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(
        &path,
        format!(
            "[sources.pg]\nkind = \"postgres\"\nurl = \"{url}\"\nschemas = [\"pg\"]\npushdown = {pushdown}\n"
        ),
    )
    .expect("writes the catalog");
    path
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_slt_files_agree_with_postgresql_with_and_without_pushdown() -> anyhow::Result<()>
{
    let Some(admin) = backends::require(Backend::Postgres, "postgres_slt") else {
        return Ok(());
    };
    let root = polygate_tests::repo_root().join("tests/slt/postgres");
    let db = PgDatabase::create(&admin, "postgres_slt").await?;
    let fixture = std::fs::read_to_string(root.join("fixture.sql"))?;
    db.client().await?.batch_execute(&fixture).await?;

    let dir = tempfile::tempdir()?;
    let pushed = TestGateway::start(&catalog(dir.path(), "on.toml", &db.url, true)).await?;
    let local = TestGateway::start(&catalog(dir.path(), "off.toml", &db.url, false)).await?;
    // PostgreSQL prints timestamptz in the session's time zone; polygate in UTC.
    let direct = format!("{}?options=-c%20TimeZone%3DUTC", db.url);

    let failures = slt::run_three_ways(
        &root,
        &direct,
        &pushed.url("polygate"),
        &local.url("polygate"),
    )
    .await?;
    drop((pushed, local));
    db.drop_database().await?;
    anyhow::ensure!(failures.is_empty(), "\n{}", failures.join("\n\n"));
    Ok(())
}
