//! A client that stops reading while rows are pending, over OpenSearch and MongoDB: its
//! statement ends at `statement_timeout`, and within 5 s the store holds no point in time or
//! cursor of it. (PostgreSQL's case is in `store_faults.rs`.)
//!
//! The checks count the stores' open points in time and cursors, so they run in a test binary
//! of their own: cargo runs test binaries one at a time.

use std::time::{Duration, Instant};

use mongodb::bson::{Document, doc};
use polygate_tests::backends::{self, Backend};
use polygate_tests::gateway::TestGateway;
use polygate_tests::mongo::MongoDatabase;
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
/// gateway's statement timeout (`timeout`) and 5 s.
async fn a_silent_client_leaves_nothing_open<F, Fut>(
    gateway: &TestGateway,
    timeout: Duration,
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
    let sent = Instant::now();
    let deadline = sent + timeout;
    while open().await? <= before {
        anyhow::ensure!(Instant::now() < deadline, "the scan never opened a {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let opened = Instant::now();
    eprintln!(
        "the {what} was seen {:?} after the query was sent",
        opened - sent
    );
    let deadline = sent + timeout + Duration::from_secs(5);
    loop {
        let left = open().await?.saturating_sub(before);
        if left == 0 {
            eprintln!(
                "the {what} was closed {:?} after the query was sent",
                sent.elapsed()
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
        Duration::from_secs(1),
        &format!("SELECT n, s FROM s.\"{index}\""),
        "point in time",
        open,
    )
    .await?;
    drop(gateway);
    search.delete().await?;
    Ok(())
}

/// The server's open cursors, all databases and clients together.
async fn open_cursors(mongo: &MongoDatabase) -> anyhow::Result<u64> {
    let status = mongo
        .client
        .database("admin")
        .run_command(doc! { "serverStatus": 1 })
        .await?;
    let total = status
        .get_document("metrics")?
        .get_document("cursor")?
        .get_document("open")?
        .get("total")
        .ok_or_else(|| anyhow::anyhow!("serverStatus has no metrics.cursor.open.total"))?;
    Ok(match total {
        mongodb::bson::Bson::Int32(n) => u64::try_from(*n)?,
        mongodb::bson::Bson::Int64(n) => u64::try_from(*n)?,
        other => anyhow::bail!("metrics.cursor.open.total is {other}"),
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_client_leaves_no_mongodb_cursor() -> anyhow::Result<()> {
    let Some(url) = backends::require(Backend::Mongo, "a_silent_client_leaves_no_mongodb_cursor")
    else {
        return Ok(());
    };
    let mongo = MongoDatabase::create(&url, "silent").await?;
    let text = "e".repeat(TEXT);
    let documents: Vec<Document> = (0..DOCUMENTS)
        .map(|n| doc! { "_id": i64::try_from(n).unwrap_or_default(), "s": &text })
        .collect();
    mongo
        .db()
        .collection::<Document>("wide")
        .insert_many(documents)
        .await?;
    // Batches of 100 documents: the cursor stays open for the whole scan. The test server
    // takes a second or two to open the scan's cursor.
    let gateway = TestGateway::with_catalog(&format!(
        "[gateway]\nstatement_timeout_secs = 5\n\n{}",
        mongo.source("docs", "batch_size = 100\nsample_size = 10")
    ))
    .await?;
    let open = || open_cursors(&mongo);
    a_silent_client_leaves_nothing_open(
        &gateway,
        Duration::from_secs(5),
        "SELECT _id, s FROM docs.wide",
        "cursor",
        open,
    )
    .await?;
    a_scan_stopped_while_its_cursor_opens_leaves_no_cursor(&gateway, &mongo).await?;
    drop(gateway);
    mongo.drop_database().await?;
    Ok(())
}

/// A statement that times out while the store is still opening its cursor: the server makes
/// the cursor before it answers, so the scan must take the answer and kill the cursor, not
/// drop the command in flight. The test server takes over a second to open this cursor; the
/// statement has 200 ms.
async fn a_scan_stopped_while_its_cursor_opens_leaves_no_cursor(
    gateway: &TestGateway,
    mongo: &MongoDatabase,
) -> anyhow::Result<()> {
    let before = open_cursors(mongo).await?;
    let mut client = WireClient::connect(gateway.port(), "polygate").await?;
    let mut out = bytes::BytesMut::new();
    frontend::query("SET statement_timeout = 200", &mut out)?;
    client.send_raw(&out).await?;
    client
        .until_ready()
        .await?
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    out.clear();
    frontend::query("SELECT _id, s FROM docs.wide", &mut out)?;
    let sent = Instant::now();
    client.send_raw(&out).await?;
    let answer = client.until_ready().await?;
    let Err(error) = answer else {
        anyhow::bail!("the statement outlived its 200 ms");
    };
    assert_eq!(error.code, "57014", "{error:?}");
    // Let the store answer the opening command, then expect its cursor gone.
    tokio::time::sleep((sent + Duration::from_secs(3)).saturating_duration_since(Instant::now()))
        .await;
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let left = open_cursors(mongo).await?.saturating_sub(before);
        if left == 0 {
            return Ok(());
        }
        anyhow::ensure!(
            Instant::now() < deadline,
            "{left} cursor(s) left open by a statement stopped while they opened"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
