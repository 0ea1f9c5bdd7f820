//! Elasticsearch/OpenSearch read benchmarks, each measured side by side with its reference in
//! one run.
//!
//! 1. Full scan: an index of documents (integer, long, keyword, double, date, an array and an
//!    object) read in full by the `elasticsearch` connector into Arrow batches (discarded), on
//!    one partition, versus the same requests sent by hand: the same point in time, bodies
//!    and page size, each page's bytes read and only its last `sort` values looked up for
//!    `search_after`, no hit decoded. The server's own speed bounds both; the connector's
//!    own CPU time per document is reported beside the ratio.
//! 2. GROUP BY: `SELECT k, count(*), sum(n) FROM bench GROUP BY k` run as a composite
//!    aggregation (pushdown on) versus computed by DataFusion over a scan (pushdown off).
//!
//! Runs alternate between the two sides; the medians and their ratio are printed.
//!
//!   bench-elasticsearch URL [DOCUMENTS] [RUNS]   (benches/elasticsearch.sh starts a server)

// A benchmark tool, not the gateway: an index out of range ends the run with its line.
#![allow(clippy::indexing_slicing)]

use std::sync::Arc;
use std::time::Instant;

use anyhow::{Context, bail};
use polygate::engine::Engine;
use polygate_catalog::Catalog;
use polygate_tests::bench::{Measure, cpu_time, explain, query, report, scan};
use serde_json::{Value, json};

const INDEX: &str = "polygate_bench";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let mut args = std::env::args().skip(1);
    let url = args
        .next()
        .context("usage: bench-elasticsearch URL [DOCUMENTS] [RUNS]")?;
    let url = url.trim_end_matches('/').to_owned();
    let documents: i64 = args.next().map_or(Ok(500_000), |a| a.parse())?;
    let runs: usize = args.next().map_or(Ok(5), |a| a.parse())?;
    let http = reqwest::Client::new();
    prepare(&http, &url, documents).await?;

    let dir = tempfile::tempdir()?;
    let catalog_path = dir.path().join("catalog.toml");
    std::fs::write(
        &catalog_path,
        format!(
            "[sources.e]\nkind = \"elasticsearch\"\nurl = \"{url}\"\ninclude = [\"{INDEX}\"]\n\
             paging = \"point_in_time\"\n\n\
             [sources.local]\nkind = \"elasticsearch\"\nurl = \"{url}\"\n\
             include = [\"{INDEX}\"]\npaging = \"point_in_time\"\npushdown = false\n"
        ),
    )?;
    let catalog = Catalog::load(&catalog_path).await?;
    let engine = Engine::new(Arc::clone(&catalog))?;

    println!("documents: {documents}, runs per side: {runs}");
    let scan_sql = format!("SELECT * FROM e.{INDEX}");
    let ctx = engine.default_session("polygate")?.ctx;
    ctx.sql("SET datafusion.execution.target_partitions = 1")
        .await?
        .collect()
        .await?;
    let plan = polygate_tests::bench::explain_in(&ctx, &scan_sql).await?;
    println!("scan plan: {}", plan.trim());
    // The reference sends the connector's own first body.
    let body: Value = plan
        .split_once("body=")
        .map(|(_, body)| serde_json::from_str(body.lines().next().unwrap_or_default()))
        .context("the scan plan shows no body")??;
    if !plan.contains("paging=point in time") {
        bail!("the connector does not page by point in time: {plan}");
    }
    let (mut raw, mut connector) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        raw.push(raw_scan(&http, &url, &body, documents).await?);
        connector.push(scan(&engine, &scan_sql, documents).await?);
    }
    let (raw_cpu, connector_cpu) = report(
        "full scan (one partition)",
        "raw pages, no decoding",
        &raw,
        "connector into Arrow",
        &connector,
    );
    println!(
        "connector CPU per document: {:.0} ns in all, {:.0} ns beyond raw paging",
        connector_cpu.as_nanos() as f64 / documents as f64,
        connector_cpu.saturating_sub(raw_cpu).as_nanos() as f64 / documents as f64
    );

    let group =
        |source: &str| format!("SELECT k, count(*), sum(n) FROM {source}.{INDEX} GROUP BY k");
    let pushed_plan = explain(&engine, &group("e")).await?;
    println!("pushed plan: {}", pushed_plan.trim());
    if !pushed_plan.contains("composite") {
        bail!("the GROUP BY is not a composite aggregation: {pushed_plan}");
    }
    let (mut local, mut pushed) = (Vec::new(), Vec::new());
    for _ in 0..runs {
        local.push(query(&engine, &group("local"), 100).await?);
        pushed.push(query(&engine, &group("e"), 100).await?);
    }
    report(
        "GROUP BY",
        "computed by DataFusion",
        &local,
        "pushed as a composite aggregation",
        &pushed,
    );
    Ok(())
}

/// Sends a request and parses its JSON answer; a status other than 2xx is an error.
async fn send(
    http: &reqwest::Client,
    method: reqwest::Method,
    url: &str,
    body: Option<String>,
) -> anyhow::Result<Value> {
    let mut request = http.request(method, url);
    if let Some(body) = body {
        let content_type = if url.contains("_bulk") {
            "application/x-ndjson"
        } else {
            "application/json"
        };
        request = request.header("content-type", content_type).body(body);
    }
    let response = request.send().await?;
    let status = response.status();
    let text = response.text().await?;
    if !status.is_success() {
        bail!("{url}: {status}: {text}");
    }
    Ok(serde_json::from_str(&text)?)
}

/// Fills the index with `documents` documents, unless it already has them.
async fn prepare(http: &reqwest::Client, url: &str, documents: i64) -> anyhow::Result<()> {
    let count = send(
        http,
        reqwest::Method::GET,
        &format!("{url}/{INDEX}/_count"),
        None,
    )
    .await;
    if count.ok().and_then(|c| c["count"].as_i64()) == Some(documents) {
        return Ok(());
    }
    println!("creating {INDEX} with {documents} documents");
    let _ = send(
        http,
        reqwest::Method::DELETE,
        &format!("{url}/{INDEX}"),
        None,
    )
    .await;
    let mappings = json!({ "mappings": { "properties": {
        "k": {"type": "integer"}, "n": {"type": "integer"}, "s": {"type": "keyword"},
        "f": {"type": "double"}, "t": {"type": "date"}, "tags": {"type": "keyword"},
        "nested": {"properties": {"x": {"type": "integer"}, "y": {"type": "keyword"}}},
    } } });
    send(
        http,
        reqwest::Method::PUT,
        &format!("{url}/{INDEX}"),
        Some(mappings.to_string()),
    )
    .await?;
    let mut next = 0;
    while next < documents {
        let end = (next + 5_000).min(documents);
        let mut body = String::new();
        for i in next..end {
            body.push_str(&json!({ "index": { "_id": i.to_string() } }).to_string());
            body.push('\n');
            let document = json!({
                "k": i % 100,
                "n": i,
                "s": format!("name {i}"),
                "f": i as f64 * 0.25,
                "t": 1_700_000_000_000i64 + i * 1000,
                "tags": ["a", format!("t{}", i % 7)],
                "nested": { "x": i, "y": "why" },
            });
            body.push_str(&document.to_string());
            body.push('\n');
        }
        let refresh = if end == documents {
            "?refresh=true"
        } else {
            ""
        };
        let answer = send(
            http,
            reqwest::Method::POST,
            &format!("{url}/{INDEX}/_bulk{refresh}"),
            Some(body),
        )
        .await?;
        if answer["errors"] != Value::Bool(false) {
            bail!("bulk indexing failed");
        }
        next = end;
    }
    Ok(())
}

/// Pages through the index as the connector does, reading each page's bytes and decoding
/// only the last hit's `sort` values.
async fn raw_scan(
    http: &reqwest::Client,
    url: &str,
    body: &Value,
    documents: i64,
) -> anyhow::Result<Measure> {
    let (start, cpu) = (Instant::now(), cpu_time());
    let opened = send(
        http,
        reqwest::Method::POST,
        &format!("{url}/{INDEX}/_search/point_in_time?keep_alive=2m"),
        None,
    )
    .await?;
    let pit = opened["pit_id"].as_str().context("no pit_id")?.to_owned();
    let mut body = body.clone();
    body["pit"] = json!({ "id": pit, "keep_alive": "2m" });
    let page_size = body["size"].as_u64().context("no size")? as usize;
    let (mut seen, mut first) = (0usize, None);
    loop {
        let bytes = http
            .post(format!("{url}/_search"))
            .header("content-type", "application/json")
            .body(body.to_string())
            .send()
            .await?
            .error_for_status()?
            .bytes()
            .await?;
        first.get_or_insert_with(|| start.elapsed());
        let hits = count(&bytes, b"\"_id\":");
        seen += hits;
        if hits < page_size {
            break;
        }
        body["search_after"] = last_sort(&bytes).context("a full page without sort values")?;
    }
    send(
        http,
        reqwest::Method::DELETE,
        &format!("{url}/_search/point_in_time"),
        Some(json!({ "pit_id": [pit] }).to_string()),
    )
    .await?;
    if seen as i64 != documents {
        bail!("paged {seen} hits of {documents}");
    }
    Ok(Measure {
        wall: start.elapsed(),
        cpu: cpu_time() - cpu,
        first: first.unwrap_or_default(),
    })
}

/// How many times `needle` occurs in `haystack`.
fn count(haystack: &[u8], needle: &[u8]) -> usize {
    haystack
        .windows(needle.len())
        .filter(|w| *w == needle)
        .count()
}

/// The last `"sort":[...]` array of a page: the `search_after` of the next.
fn last_sort(page: &[u8]) -> Option<Value> {
    let key = b"\"sort\":[";
    let at = page.windows(key.len()).rposition(|w| w == key)? + key.len() - 1;
    let end = at + page[at..].iter().position(|&b| b == b']')?;
    serde_json::from_slice(&page[at..=end]).ok()
}
