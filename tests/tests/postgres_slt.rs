//! Runs every `tests/slt/postgres/*.slt` file three times: against PostgreSQL itself, through
//! polygate with pushdown, and through polygate with pushdown disabled.
//!
//! The files query schema `pg` of a database loaded from `tests/slt/postgres/fixture.sql`.
//! PostgreSQL resolves `pg.table` to that schema; polygate to its source `pg`, which maps the
//! same schema. The same expected rows must therefore come out of PostgreSQL and of both
//! gateways: every pushed query returns what PostgreSQL returns, with and without pushdown.
//! Records labelled `onlyif pushdown` (EXPLAIN plans) run on the pushdown gateway only.

use polygate_tests::backends::{self, Backend, PgDatabase};
use polygate_tests::gateway::TestGateway;
use polygate_tests::slt::PgSlt;

/// A runner whose connections go to the server at `url`, as `engine`, with `labels`.
fn runner(
    url: &str,
    engine: &'static str,
    labels: &[&str],
) -> sqllogictest::Runner<PgSlt, impl sqllogictest::MakeConnection<Conn = PgSlt>> {
    let url = url.to_owned();
    let mut runner = sqllogictest::Runner::new(move || {
        let url = url.clone();
        async move {
            let client = backends::connect(&url)
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))
                .expect("connects");
            Ok::<_, polygate_tests::slt::SltError>(PgSlt::new(client, engine).normalized())
        }
    });
    for label in labels {
        runner.add_label(label);
    }
    runner
}

/// Runs `file` against the server at `url`, with `labels`.
async fn run_file(
    url: &str,
    engine: &'static str,
    labels: &[&str],
    file: &std::path::Path,
) -> Result<(), String> {
    runner(url, engine, labels)
        .run_file_async(file)
        .await
        .map_err(|e| format!("{} on {engine}: {e}", file.display()))
}

/// Rewrites the expected output of `file` with what the server at `url` returns.
async fn complete_file(url: &str, file: &std::path::Path) -> anyhow::Result<()> {
    runner(url, "polygate", &["polygate", "pushdown"])
        .update_test_file(
            file,
            " ",
            sqllogictest::default_validator,
            sqllogictest::default_normalizer,
            sqllogictest::default_column_validator,
        )
        .await
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))
}

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

    let mut files: Vec<_> = std::fs::read_dir(&root)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    anyhow::ensure!(!files.is_empty(), "no .slt files in {}", root.display());
    let mut failures = Vec::new();
    for file in &files {
        // POLYGATE_SLT_COMPLETE=1 rewrites the files' expected output with the pushdown
        // gateway's, which the three runs below then hold against PostgreSQL's.
        if std::env::var_os("POLYGATE_SLT_COMPLETE").is_some() {
            complete_file(&pushed.url("polygate"), file).await?;
        }
        let runs = [
            run_file(&direct, "postgres", &["postgres"], file).await,
            run_file(
                &pushed.url("polygate"),
                "polygate",
                &["polygate", "pushdown"],
                file,
            )
            .await,
            run_file(&local.url("polygate"), "polygate", &["polygate"], file).await,
        ];
        failures.extend(runs.into_iter().filter_map(Result::err));
    }
    drop((pushed, local));
    db.drop_database().await?;
    anyhow::ensure!(failures.is_empty(), "\n{}", failures.join("\n\n"));
    Ok(())
}
