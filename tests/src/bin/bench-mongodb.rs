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
use std::time::Instant;

use anyhow::{Context, bail};
use futures::StreamExt;
use mongodb::bson::{DateTime, Document, doc};
use polygate::engine::Engine;
use polygate_catalog::Catalog;
use polygate_tests::bench::{Measure, cpu_time, explain, query, report, scan};

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
    let engine = Engine::new(Arc::clone(&catalog))?;

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
