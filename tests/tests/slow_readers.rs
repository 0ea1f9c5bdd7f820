//! A client that stops reading while rows are pending, over OpenSearch: its statement ends at
//! `statement_timeout`, and within 5 s the cluster holds no point in time of it.
//! (PostgreSQL's case is in `store_faults.rs`.)
//!
//! The check counts the cluster's points in time, so it runs in a test binary of its own:
//! cargo runs test binaries one at a time.

use std::time::{Duration, Instant};

use polygate_tests::backends::{self, Backend};
use polygate_tests::gateway::TestGateway;
use polygate_tests::search::SearchIndices;
use polygate_tests::wire::WireClient;
use postgres_protocol::message::frontend;
use serde_json::{Value, json};

/// 20,000 documents of 1 kB each: 20 MB, far more than the sockets between the gateway and
/// a client that reads nothing can hold.
const DOCUMENTS: usize = 20_000;
const TEXT: usize = 1_000;

/// Sends `sql` by the simple protocol and reads nothing; waits for `open` (the store's open
/// cursors or contexts) to rise, then for it to fall back to where it was within the
/// gateway's 1 s statement timeout and 5 s.
async fn a_silent_client_leaves_nothing_open<F, Fut>(
    gateway: &TestGateway,
    sql: &str,
    what: &str,
    open: F,
) -> anyhow::Result<()>
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<u64>>,
{
    let before = open().await?;
    let mut client = WireClient::connect_with_small_window(gateway.port(), "polygate").await?;
    let mut out = bytes::BytesMut::new();
    frontend::query(sql, &mut out)?;
    client.send_raw(&out).await?;
    let deadline = Instant::now() + Duration::from_secs(10);
    while open().await? <= before {
        anyhow::ensure!(Instant::now() < deadline, "the scan never opened a {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let opened = Instant::now();
    let deadline = opened + Duration::from_secs(1 + 5);
    loop {
        let left = open().await?.saturating_sub(before);
        if left == 0 {
            eprintln!(
                "the {what} was closed {:?} after it was seen",
                opened.elapsed()
            );
            break;
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{left} {what}(s) outlived statement_timeout by 5 s"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    drop(client);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_leaves_no_point_in_time() -> anyhow::Result<()> {
    let Some(url) = backends::require(Backend::Search, "a_silent_client_leaves_no_point_in_time")
    else {
        return Ok(());
    };
    let mut search = SearchIndices::create(&url, "silent");
    search
        .create_index(
            "wide",
            json!({ "properties": { "n": {"type": "long"}, "s": {"type": "keyword", "index": false} } }),
        )
        .await?;
    let text = "e".repeat(TEXT);
    let documents: Vec<(String, Value)> = (0..DOCUMENTS)
        .map(|n| (n.to_string(), json!({ "n": n, "s": text })))
        .collect();
    search.bulk("wide", &documents).await?;
    let index = search.name("wide");
    let gateway = TestGateway::with_catalog(&format!(
        "[gateway]\nstatement_timeout_secs = 1\n\n{}",
        search.source("s", "paging = \"point_in_time\"\npage_size = 500")
    ))
    .await?;
    let open = || async { anyhow::Ok(search.open_points_in_time().await? as u64) };
    a_silent_client_leaves_nothing_open(
        &gateway,
        &format!("SELECT n, s FROM s.\"{index}\""),
        "point in time",
        open,
    )
    .await?;
    drop(gateway);
    search.delete().await?;
    Ok(())
}
