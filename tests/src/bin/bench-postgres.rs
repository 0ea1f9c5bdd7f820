//! PostgreSQL read benchmarks, each measured side by side with its reference in one run.
//!
//! 1. Full scan: a table of (int8, int8, text, float8, timestamptz) read in full by the
//!    `postgres` connector into Arrow batches (discarded), versus
//!    `psql -c "COPY (SELECT ...) TO STDOUT (FORMAT binary)" > /dev/null`.
//! 2. GROUP BY: `SELECT k, count(*), sum(f) FROM t GROUP BY k` run by psql through the
//!    gateway, versus the same SQL run by psql on PostgreSQL directly.
//! 3. Egress: the whole table (`SELECT *`, every column) fetched by psql through the gateway,
//!    versus psql on PostgreSQL directly; and the same with tokio-postgres in binary format.
//!
//! Runs alternate between the two sides; the medians and their ratio are printed.
//!
//!   bench-postgres URL [ROWS] [RUNS]      (benches/postgres.sh starts a server and runs it)

// A benchmark tool, not the gateway: an index out of range ends the run with its line.
#![allow(clippy::indexing_slicing)]

use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use polygate::engine::Engine;
use polygate::pg::Server;
use polygate_catalog::Catalog;

const TABLE: &str = "bench_scan";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .context("usage: bench-postgres URL [ROWS] [RUNS]")?;
    let rows: i64 = args.next().map_or(Ok(5_000_000), |a| a.parse())?;
    let runs: usize = args.next().map_or(Ok(5), |a| a.parse())?;

    prepare(&url, rows).await?;
    let dir = tempfile::tempdir()?;
    let catalog_path = dir.path().join("catalog.toml");
    std::fs::write(
        &catalog_path,
        format!("[sources.pg]\nkind = \"postgres\"\nurl = \"{url}\"\n"),
    )?;
    let catalog = Catalog::load(&catalog_path).await?;
    let engine = Engine::new(Arc::clone(&catalog))?;

    println!("rows: {rows}, runs per side: {runs}");
    let explain = engine
        .default_session("polygate")?
        .ctx
        .sql(&format!("EXPLAIN SELECT * FROM pg.{TABLE}"))
        .await?
        .collect()
        .await?;
    let plan = datafusion_plan_text(&explain);
    println!("scan plan: {}", plan.trim());
    let copy_sql = format!("COPY (SELECT * FROM {TABLE}) TO STDOUT (FORMAT binary)");
    let (mut psql_copy, mut connector) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        psql_copy.push(psql(&url, &copy_sql)?);
        connector.push(scan(&engine, rows).await?);
    }
    report(
        "full scan",
        "psql COPY binary",
        &psql_copy,
        "connector into Arrow",
        &connector,
    );

    let server = Server::start(engine, "127.0.0.1:0".parse()?).await?;
    let gateway_url = format!(
        "postgresql://bench@127.0.0.1:{}/polygate",
        server.local_addr().port()
    );
    let group = |table: &str| format!("SELECT k, count(*), sum(f) FROM {table} GROUP BY k");
    let (mut direct, mut through) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        direct.push(psql(&url, &group(TABLE))?);
        through.push(psql(&gateway_url, &group(&format!("pg.{TABLE}")))?);
    }
    report(
        "GROUP BY",
        "psql on PostgreSQL",
        &direct,
        "psql through polygate",
        &through,
    );

    let all = |table: &str| format!("SELECT * FROM {table}");
    let (mut direct, mut through) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        direct.push(psql(&url, &all(TABLE))?);
        through.push(psql(&gateway_url, &all(&format!("pg.{TABLE}")))?);
    }
    report(
        "egress, psql (text)",
        "psql on PostgreSQL",
        &direct,
        "psql through polygate",
        &through,
    );
    let (mut direct, mut through) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        direct.push(fetch_binary(&url, &all(TABLE), rows).await?);
        through.push(fetch_binary(&gateway_url, &all(&format!("pg.{TABLE}")), rows).await?);
    }
    report(
        "egress, tokio-postgres (binary)",
        "on PostgreSQL",
        &direct,
        "through polygate",
        &through,
    );
    let (mut direct, mut through) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        direct.push(fetch_binary_apart(&url, &all(TABLE), rows).await?);
        through.push(fetch_binary_apart(&gateway_url, &all(&format!("pg.{TABLE}")), rows).await?);
    }
    report(
        "egress, tokio-postgres (binary), client on a runtime of its own",
        "on PostgreSQL",
        &direct,
        "through polygate",
        &through,
    );
    Ok(())
}

/// [`fetch_binary`] on a single-threaded runtime of its own, as a client program would run:
/// above, the client shares this process's two worker threads with the gateway it measures.
async fn fetch_binary_apart(url: &str, sql: &str, rows: i64) -> anyhow::Result<Duration> {
    let (url, sql) = (url.to_owned(), sql.to_owned());
    tokio::task::spawn_blocking(move || {
        tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()?
            .block_on(fetch_binary(&url, &sql, rows))
    })
    .await?
}

/// Fetches every row of `sql` with tokio-postgres (binary format, rows streamed and
/// discarded); the elapsed time, connection included.
async fn fetch_binary(url: &str, sql: &str, rows: i64) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    let connection = tokio::spawn(connection);
    let stream = client.query_raw(sql, std::iter::empty::<i64>()).await?;
    futures::pin_mut!(stream);
    let mut seen = 0;
    while let Some(row) = stream.next().await {
        row?;
        seen += 1;
    }
    if seen != rows {
        bail!("{sql}: {seen} rows of {rows}");
    }
    drop(client);
    let _ = connection.await;
    Ok(start.elapsed())
}

/// Creates the table with `rows` rows, unless it already has them.
async fn prepare(url: &str, rows: i64) -> anyhow::Result<()> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let existing = client
        .query_opt(&format!("SELECT count(*) FROM {TABLE}"), &[])
        .await
        .ok()
        .flatten()
        .map(|row| row.get::<_, i64>(0));
    if existing == Some(rows) {
        return Ok(());
    }
    println!("creating {TABLE} with {rows} rows");
    // One statement at a time: VACUUM cannot run inside the implicit transaction of a
    // multi-statement query.
    for statement in [
        format!("DROP TABLE IF EXISTS {TABLE}"),
        format!("CREATE TABLE {TABLE} (id int8, k int8, s text, f float8, t timestamptz)"),
        format!(
            "INSERT INTO {TABLE}
             SELECT i, i % 1000, md5(i::text), i * 0.25,
                    TIMESTAMPTZ '2024-01-01 00:00:00+00' + i * INTERVAL '1 second'
             FROM generate_series(1, {rows}) AS i"
        ),
        format!("VACUUM ANALYZE {TABLE}"),
    ] {
        client
            .batch_execute(&statement)
            .await
            .with_context(|| statement.clone())?;
    }
    Ok(())
}

/// Runs `sql` with psql, output discarded; the elapsed time.
fn psql(url: &str, sql: &str) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let status = Command::new("psql")
        .args(["-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", url, "-c", sql])
        .stdout(Stdio::null())
        .status()
        .context("runs psql")?;
    if !status.success() {
        bail!("psql failed on {sql}");
    }
    Ok(start.elapsed())
}

/// Scans the whole table through the connector; the elapsed time.
async fn scan(engine: &Engine, rows: i64) -> anyhow::Result<Duration> {
    let start = Instant::now();
    let ctx = engine.default_session("polygate")?.ctx;
    let mut stream = ctx
        .sql(&format!("SELECT * FROM pg.{TABLE}"))
        .await?
        .execute_stream()
        .await?;
    let mut seen = 0;
    while let Some(batch) = stream.next().await {
        seen += batch?.num_rows();
    }
    if seen as i64 != rows {
        bail!("scanned {seen} rows of {rows}");
    }
    Ok(start.elapsed())
}

fn median(times: &[Duration]) -> Duration {
    let mut sorted = times.to_vec();
    sorted.sort();
    sorted[sorted.len() / 2]
}

fn report(what: &str, reference: &str, base: &[Duration], subject: &str, measured: &[Duration]) {
    let (base, measured) = (median(base), median(measured));
    println!(
        "{what}: {reference} {:.3} s, {subject} {:.3} s, ratio {:.2}",
        base.as_secs_f64(),
        measured.as_secs_f64(),
        measured.as_secs_f64() / base.as_secs_f64()
    );
}

/// The physical plan of an EXPLAIN result.
fn datafusion_plan_text(batches: &[datafusion::arrow::record_batch::RecordBatch]) -> String {
    use datafusion::arrow::array::AsArray;
    let mut text = String::new();
    for batch in batches {
        let kinds = batch.column(0).as_string::<i32>();
        let plans = batch.column(1).as_string::<i32>();
        for row in 0..batch.num_rows() {
            if kinds.value(row) == "physical_plan" {
                text.push_str(plans.value(row));
            }
        }
    }
    text
}
