//! MongoDB read benchmarks, each measured side by side with its reference in one run.
//!
//! 1. Full scan: a collection of documents (int32, int64, string, double, date, an array and
//!    an embedded document) read in full by the `mongodb` connector into Arrow batches
//!    (discarded), on one cursor, versus iterating the same pipeline's raw batches with the
//!    driver and no decoding. The server's own speed bounds both; the connector's own CPU
//!    time per document is reported beside the ratio.
//! 2. GROUP BY: `SELECT k, count(*), sum(n) FROM bench GROUP BY k` run as one `$group`
//!    pipeline (pushdown on) versus computed by DataFusion over a scan (pushdown off).
//!
//! Runs alternate between the two sides; the medians and their ratio are printed.
//!
//!   bench-mongodb URL [DOCUMENTS] [RUNS]      (benches/mongodb.sh starts a server and runs it)

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures::StreamExt;
use mongodb::bson::{DateTime, Document, doc};
use polygate::engine::Engine;
use polygate_catalog::Catalog;

const DATABASE: &str = "polygate_bench";
const COLLECTION: &str = "bench";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .context("usage: bench-mongodb URL [DOCUMENTS] [RUNS]")?;
    let documents: i64 = args.next().map_or(Ok(500_000), |a| a.parse())?;
    let runs: usize = args.next().map_or(Ok(5), |a| a.parse())?;

    let client = mongodb::Client::with_uri_str(&url).await?;
    let collection = client.database(DATABASE).collection::<Document>(COLLECTION);
    prepare(&collection, documents).await?;

    let dir = tempfile::tempdir()?;
    let catalog_path = dir.path().join("catalog.toml");
    std::fs::write(
        &catalog_path,
        format!(
            "[sources.m]\nkind = \"mongodb\"\nurl = \"{url}\"\ndatabase = \"{DATABASE}\"\n\n\
             [sources.local]\nkind = \"mongodb\"\nurl = \"{url}\"\ndatabase = \"{DATABASE}\"\n\
             pushdown = false\n"
        ),
    )?;
    let catalog = Catalog::load(&catalog_path).await?;
    let engine = Engine::new(Arc::clone(&catalog));

    println!("documents: {documents}, runs per side: {runs}");
    let scan_sql = format!("SELECT * FROM m.{COLLECTION}");
    let plan = explain(&engine, &scan_sql).await?;
    println!("scan plan: {}", plan.trim());
    let pipeline = vec![doc! { "$project": {
        "_id": 1, "f": 1, "k": 1, "n": 1, "nested": 1, "s": 1, "t": 1, "tags": 1
    } }];
    if !plan.contains(r#"{ "$project": { "_id": 1, "f": 1, "k": 1, "n": 1, "nested": 1, "s": 1, "t": 1, "tags": 1 } }"#) {
        bail!("the connector's pipeline is not the reference's: {plan}");
    }
    let (mut raw, mut connector) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        raw.push(raw_scan(&collection, pipeline.clone(), documents).await?);
        connector.push(scan(&engine, &scan_sql, documents).await?);
    }
    let (raw_cpu, connector_cpu) = report(
        "full scan (one cursor)",
        "raw batches, no decoding",
        &raw,
        "connector into Arrow",
        &connector,
    );
    println!(
        "connector CPU per document: {:.0} ns in all, {:.0} ns beyond raw iteration",
        connector_cpu.as_nanos() as f64 / documents as f64,
        connector_cpu.saturating_sub(raw_cpu).as_nanos() as f64 / documents as f64
    );

    let group =
        |source: &str| format!("SELECT k, count(*), sum(n) FROM {source}.{COLLECTION} GROUP BY k");
    println!(
        "pushed plan: {}",
        explain(&engine, &group("m")).await?.trim()
    );
    let (mut local, mut pushed) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        local.push(query(&engine, &group("local"), 100).await?);
        pushed.push(query(&engine, &group("m"), 100).await?);
    }
    report(
        "GROUP BY",
        "computed by DataFusion",
        &local,
        "pushed as $group",
        &pushed,
    );
    Ok(())
}

/// Fills the collection with `documents` documents, unless it already has them.
async fn prepare(collection: &mongodb::Collection<Document>, documents: i64) -> anyhow::Result<()> {
    if collection.count_documents(doc! {}).await? == documents as u64 {
        return Ok(());
    }
    println!("creating {COLLECTION} with {documents} documents");
    collection.drop().await?;
    let mut next = 0;
    while next < documents {
        let end = (next + 10_000).min(documents);
        collection
            .insert_many((next..end).map(|i| {
                doc! {
                    "k": (i % 100) as i32,
                    "n": i,
                    "s": format!("name {i}"),
                    "f": i as f64 * 0.25,
                    "t": DateTime::from_millis(1_700_000_000_000 + i * 1000),
                    "tags": ["a", format!("t{}", i % 7)],
                    "nested": { "x": i as i32, "y": "why" },
                }
            }))
            .await?;
        next = end;
    }
    Ok(())
}

/// This process's CPU time so far (user and system), from /proc.
fn cpu_time() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap_or_default();
    // The fields after the command name, which is in parentheses.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<u64>().ok())
            .unwrap_or(0)
    };
    // utime and stime are fields 14 and 15 of the file, 12 and 13 after the name.
    Duration::from_millis((ticks(11) + ticks(12)) * 10)
}

struct Measure {
    wall: Duration,
    cpu: Duration,
    /// Until the first batch arrived: planning, the server running the pipeline, and the
    /// first reply.
    first: Duration,
}

/// Iterates the pipeline's raw batches, counting documents, decoding nothing.
async fn raw_scan(
    collection: &mongodb::Collection<Document>,
    pipeline: Vec<Document>,
    documents: i64,
) -> anyhow::Result<Measure> {
    let (start, cpu) = (Instant::now(), cpu_time());
    let mut cursor = collection
        .aggregate(pipeline)
        .batch_size(10_000)
        .batch()
        .await?;
    let (mut seen, mut first) = (0, None);
    while let Some(batch) = cursor.next().await {
        first.get_or_insert_with(|| start.elapsed());
        seen += batch?.doc_slices()?.into_iter().count();
    }
    if seen as i64 != documents {
        bail!("iterated {seen} documents of {documents}");
    }
    Ok(Measure {
        wall: start.elapsed(),
        cpu: cpu_time() - cpu,
        first: first.unwrap_or_default(),
    })
}

/// Scans the whole collection through the connector on one cursor.
async fn scan(engine: &Engine, sql: &str, documents: i64) -> anyhow::Result<Measure> {
    let ctx = engine.session("polygate");
    ctx.sql("SET datafusion.execution.target_partitions = 1")
        .await?
        .collect()
        .await?;
    let (start, cpu) = (Instant::now(), cpu_time());
    let mut stream = ctx.sql(sql).await?.execute_stream().await?;
    let (mut seen, mut first) = (0, None);
    while let Some(batch) = stream.next().await {
        first.get_or_insert_with(|| start.elapsed());
        seen += batch?.num_rows();
    }
    if seen as i64 != documents {
        bail!("scanned {seen} rows of {documents}");
    }
    Ok(Measure {
        wall: start.elapsed(),
        cpu: cpu_time() - cpu,
        first: first.unwrap_or_default(),
    })
}

/// Runs `sql`, expecting `rows` rows.
async fn query(engine: &Engine, sql: &str, rows: usize) -> anyhow::Result<Measure> {
    let (start, cpu) = (Instant::now(), cpu_time());
    let batches = engine.session("polygate").sql(sql).await?.collect().await?;
    let seen: usize = batches.iter().map(|b| b.num_rows()).sum();
    if seen != rows {
        bail!("{sql}: {seen} rows, expected {rows}");
    }
    let wall = start.elapsed();
    Ok(Measure {
        wall,
        cpu: cpu_time() - cpu,
        first: wall,
    })
}

fn median(values: impl Iterator<Item = Duration>) -> Duration {
    let mut sorted: Vec<Duration> = values.collect();
    sorted.sort();
    sorted[sorted.len() / 2]
}

/// Prints the medians and their ratio; returns the median CPU times.
fn report(
    what: &str,
    reference: &str,
    base: &[Measure],
    subject: &str,
    measured: &[Measure],
) -> (Duration, Duration) {
    let (base_wall, measured_wall) = (
        median(base.iter().map(|m| m.wall)),
        median(measured.iter().map(|m| m.wall)),
    );
    let (base_cpu, measured_cpu) = (
        median(base.iter().map(|m| m.cpu)),
        median(measured.iter().map(|m| m.cpu)),
    );
    let (base_first, measured_first) = (
        median(base.iter().map(|m| m.first)),
        median(measured.iter().map(|m| m.first)),
    );
    let all = |measures: &[Measure]| {
        let walls: Vec<String> = measures
            .iter()
            .map(|m| format!("{:.1}", m.wall.as_secs_f64()))
            .collect();
        walls.join(" ")
    };
    println!(
        "{what}: {reference} {:.3} s (cpu {:.3} s, first batch {:.3} s), {subject} {:.3} s \
         (cpu {:.3} s, first batch {:.3} s), ratio {:.2}",
        base_wall.as_secs_f64(),
        base_cpu.as_secs_f64(),
        base_first.as_secs_f64(),
        measured_wall.as_secs_f64(),
        measured_cpu.as_secs_f64(),
        measured_first.as_secs_f64(),
        measured_wall.as_secs_f64() / base_wall.as_secs_f64()
    );
    println!(
        "  every run, s: {reference}: {}; {subject}: {}",
        all(base),
        all(measured)
    );
    (base_cpu, measured_cpu)
}

/// The physical plan of `sql`.
async fn explain(engine: &Engine, sql: &str) -> anyhow::Result<String> {
    use datafusion::arrow::array::AsArray;
    let batches = engine
        .session("polygate")
        .sql(&format!("EXPLAIN {sql}"))
        .await?
        .collect()
        .await?;
    let mut text = String::new();
    for batch in &batches {
        let kinds = batch.column(0).as_string::<i32>();
        let plans = batch.column(1).as_string::<i32>();
        for row in 0..batch.num_rows() {
            if kinds.value(row) == "physical_plan" {
                text.push_str(plans.value(row));
            }
        }
    }
    Ok(text)
}
