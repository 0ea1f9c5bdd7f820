//! No scroll is left open when scans stop early. The check clears every scroll of the search
//! server (`DELETE /_search/scroll/_all`, whose answer counts what it freed), so it runs in a
//! test binary of its own: cargo runs test binaries one at a time, and nothing else uses the
//! server meanwhile.

use polygate_tests::backends::{self, Backend};
use polygate_tests::gateway::TestGateway;
use polygate_tests::search::SearchIndices;
use serde_json::{Value, json};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scans_stopped_by_a_limit_close_their_scrolls() -> anyhow::Result<()> {
    let Some(url) = backends::require(Backend::Search, "es_scrolls") else {
        return Ok(());
    };
    let mut search = SearchIndices::create(&url, "es_scrolls");
    search
        .create_index(
            "t",
            json!({ "properties": { "n": {"type": "long"}, "f": {"type": "double"} } }),
        )
        .await?;
    let documents: Vec<(String, Value)> = (0..2_000)
        .map(|n| (n.to_string(), json!({ "n": n, "f": (n % 3) as f64 })))
        .collect();
    search.bulk("t", &documents).await?;
    let index = search.name("t");
    let gateway =
        TestGateway::with_catalog(&search.source("s", "paging = \"scroll\"\npage_size = 100"))
            .await?;
    let client = gateway.connect().await?;
    client
        .simple_query("SET datafusion.execution.target_partitions = 1")
        .await?;
    // The cluster answers 404 when there was no scroll to free.
    let clear_all = || async {
        let text = reqwest::Client::new()
            .delete(format!("{}/_search/scroll/_all", search.url))
            .send()
            .await?
            .text()
            .await?;
        let answer: Value = serde_json::from_str(&text)?;
        anyhow::ensure!(answer["succeeded"] == Value::Bool(true), "{answer}");
        anyhow::Ok(answer["num_freed"].as_u64().unwrap_or(0))
    };
    clear_all().await?;
    // The filter on a double stays with polygate, so the LIMIT cannot reach the scan: each
    // query opens a scroll, reads its first page and drops the scan.
    let limited = format!("SELECT n FROM s.\"{index}\" WHERE f = 2 LIMIT 1");
    for _ in 0..200 {
        let rows = polygate_tests::text_rows(&client, &limited).await?;
        assert_eq!(rows.len(), 1);
    }
    // A whole scan closes its scroll at its end.
    let whole = format!("SELECT count(*) FROM s.\"{index}\" WHERE f = 2");
    let counted = polygate_tests::text_rows(&client, &whole).await?;
    assert_eq!(counted[0][0].as_deref(), Some("666"));
    // The closes of dropped scans are sent in the background: let them arrive.
    tokio::time::sleep(std::time::Duration::from_secs(2)).await;
    let left = clear_all().await?;
    assert_eq!(left, 0, "{left} scrolls left open by 201 scans");
    search.delete().await?;
    Ok(())
}
