//! Stores that freeze or go down under a running gateway, one test per store kind.
//!
//! Each store is a real server reached through a relay ([`FaultyLink`]) that the test freezes
//! (what a `kill -STOP`ped store looks like: connections accepted, never answered) or takes
//! down (what a shut-down store looks like), during a scan, during planning and during a
//! reload. Throughout, the client gets 08006 naming the source within the source's response
//! timeout and a second, a query on another source answers within a second, and a user removed
//! by the reload is refused at once; once the store is back, the next query succeeds within
//! 10 s.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use mongodb::bson::doc;
use polygate_tests::backends::{self, Backend, PgDatabase};
use polygate_tests::faults::{FaultyLink, Link};
use polygate_tests::gateway::TestGateway;
use polygate_tests::mongo::MongoDatabase;
use polygate_tests::search::SearchIndices;
use serde_json::{Value, json};

/// The sources' `response_timeout_secs` in these tests.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a store may take to serve again once it is back.
const RECOVERY: Duration = Duration::from_secs(10);

/// The store under test, as the gateway sees it through the relay.
struct Store<'a> {
    /// The source's name.
    source: &'a str,
    /// Its `[sources.NAME]` table, with the relay's URL and `response_timeout_secs`.
    table: String,
    /// A query scanning the store, and how many rows it returns.
    query: String,
    rows: usize,
    /// Bytes only a scan sends, after its first request (a later page, a cursor's next
    /// batch) or as its statement: freezing when they are sent freezes the store mid-scan.
    scan_bytes: &'a [u8],
}

const USERS: &str =
    "[gateway]\nauth = \"scram-sha-256\"\n\n[gateway.users]\nalice = \"alice-pw\"\n";

fn catalog(users: &str, store: &Store<'_>) -> String {
    let demo = polygate_tests::repo_root().join("examples/demo/data");
    format!(
        "{users}\n{}\n[sources.shop]\nkind = \"files\"\nroot = \"{}\"\n",
        store.table,
        demo.display()
    )
}

async fn connect(gateway: &TestGateway, user: &str) -> anyhow::Result<tokio_postgres::Client> {
    backends::connect(&format!(
        "host=127.0.0.1 port={} user={user} password={user}-pw dbname=polygate",
        gateway.port()
    ))
    .await
}

/// Asks another source every 100 ms, remembering the slowest answer.
struct Watchdog {
    stop: Arc<AtomicBool>,
    task: tokio::task::JoinHandle<anyhow::Result<Duration>>,
}

impl Watchdog {
    async fn start(gateway: &TestGateway) -> anyhow::Result<Self> {
        let client = connect(gateway, "alice").await?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopped = Arc::clone(&stop);
        let task = tokio::spawn(async move {
            let mut slowest = Duration::ZERO;
            while !stopped.load(Ordering::Relaxed) {
                let started = Instant::now();
                let answer = tokio::time::timeout(
                    Duration::from_secs(10),
                    client.query_one("SELECT count(*) FROM shop.customers", &[]),
                )
                .await??;
                anyhow::ensure!(answer.get::<_, i64>(0) == 10);
                slowest = slowest.max(started.elapsed());
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            Ok(slowest)
        });
        Ok(Self { stop, task })
    }

    async fn slowest(self) -> anyhow::Result<Duration> {
        self.stop.store(true, Ordering::Relaxed);
        self.task.await?
    }
}

/// Runs `sql`, which must fail with 08006 naming `source`; returns how long after `since`
/// (the fault, once it happened) the error came.
async fn fails_with_08006(
    client: &tokio_postgres::Client,
    sql: &str,
    source: &str,
    link: &FaultyLink,
) -> anyhow::Result<Duration> {
    let query = client.query(sql, &[]);
    tokio::pin!(query);
    // The fault's moment: at once for a link already down or frozen, or when its trigger fires.
    let mut fault = link.fired().then(Instant::now);
    let give_up = tokio::time::Instant::now() + Duration::from_secs(30);
    let outcome = loop {
        tokio::select! {
            outcome = &mut query => break outcome,
            _ = tokio::time::sleep(Duration::from_millis(5)), if fault.is_none() => {
                if link.fired() {
                    fault = Some(Instant::now());
                }
            }
            _ = tokio::time::sleep_until(give_up) => {
                anyhow::bail!("{sql}: no answer within 30 s");
            }
        }
    };
    // A fault that failed the query before the next look at the link happened just now.
    let fault = fault
        .or_else(|| link.fired().then(Instant::now))
        .ok_or_else(|| anyhow::anyhow!("{sql}: the fault never happened"))?;
    let error = match outcome {
        Ok(rows) => anyhow::bail!("{sql}: {} rows from a failed store", rows.len()),
        Err(error) => error,
    };
    let message = backends::server_message(&error);
    let code = error.code().map(|c| c.code().to_owned());
    anyhow::ensure!(code.as_deref() == Some("08006"), "{code:?}: {message}");
    anyhow::ensure!(message.contains(&format!("source {source}")), "{message}");
    anyhow::ensure!(!message.contains("Error {"), "a Debug dump: {message}");
    Ok(fault.elapsed())
}

/// Runs `store.query` until it answers every row, for at most [`RECOVERY`].
async fn recovers(client: &tokio_postgres::Client, store: &Store<'_>) -> anyhow::Result<()> {
    let deadline = Instant::now() + RECOVERY;
    loop {
        match client.query(&store.query, &[]).await {
            Ok(rows) => {
                anyhow::ensure!(rows.len() == store.rows, "{} rows", rows.len());
                return Ok(());
            }
            Err(error) if Instant::now() < deadline => {
                eprintln!("not yet: {}", backends::server_message(&error));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(error) => anyhow::bail!(
                "source {} did not come back within {RECOVERY:?}: {}",
                store.source,
                backends::server_message(&error)
            ),
        }
    }
}

/// Freezes and takes down `link` during a scan, during planning and during a reload of the
/// gateway serving `store`. Returns the gateway (with the store back) for checks of the
/// store's own.
async fn survives(dir: &Path, store: &Store<'_>, link: &FaultyLink) -> anyhow::Result<TestGateway> {
    let file = dir.join("catalog.toml");
    let with_bob = format!("{USERS}bob = \"bob-pw\"\n");
    std::fs::write(&file, catalog(&with_bob, store))?;
    let gateway = TestGateway::start(&file).await?;
    let client = connect(&gateway, "alice").await?;
    recovers(&client, store).await?;
    let watchdog = Watchdog::start(&gateway).await?;
    let within = RESPONSE_TIMEOUT + Duration::from_secs(1);

    // Frozen, then down, during a scan.
    for fault in [Link::Frozen, Link::Down] {
        link.set_when_sent(store.scan_bytes, fault);
        let after = fails_with_08006(&client, &store.query, store.source, link).await?;
        eprintln!(
            "{}: {fault:?} during a scan: 08006 after {after:?}",
            store.source
        );
        anyhow::ensure!(
            after <= within,
            "{fault:?} during a scan: the error came {after:?} after"
        );
        link.set(Link::Open);
        recovers(&client, store).await?;
    }

    // Frozen during planning: the store was discovered, so the first thing a query asks of
    // it is its relation's schema.
    link.set(Link::Frozen);
    let after = fails_with_08006(&client, &store.query, store.source, link).await?;
    eprintln!(
        "{}: frozen during planning: 08006 after {after:?}",
        store.source
    );
    anyhow::ensure!(
        after <= within,
        "frozen during planning: the error came {after:?} after"
    );

    // Frozen during a reload that removes bob: bob is refused at once, while the reload
    // waits (boundedly) on the store.
    std::fs::write(&file, catalog(USERS, store))?;
    let reloading = {
        let catalog = Arc::clone(&gateway.catalog);
        tokio::spawn(async move { catalog.reload().await })
    };
    let edited = Instant::now();
    let refused = loop {
        match connect(&gateway, "bob").await {
            Err(error) => {
                let code = error
                    .downcast_ref::<tokio_postgres::Error>()
                    .and_then(|e| e.code())
                    .map(|c| c.code().to_owned());
                anyhow::ensure!(code.as_deref() == Some("28P01"), "bob: {error:#}");
                break edited.elapsed();
            }
            Ok(_) if edited.elapsed() < Duration::from_secs(1) => {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            Ok(_) => anyhow::bail!("bob still gets in 1 s after the edit that removed him"),
        }
    };
    let after = fails_with_08006(&client, &store.query, store.source, link).await?;
    eprintln!(
        "{}: frozen during a reload: bob refused after {refused:?}, 08006 after {after:?}",
        store.source
    );
    anyhow::ensure!(
        after <= within,
        "frozen during a reload: the error came {after:?} after"
    );
    tokio::time::timeout(RECOVERY, reloading).await???;
    link.set(Link::Open);
    recovers(&client, store).await?;

    let slowest = watchdog.slowest().await?;
    eprintln!(
        "{}: the other source's slowest answer: {slowest:?}",
        store.source
    );
    anyhow::ensure!(
        slowest < Duration::from_secs(1),
        "another source took {slowest:?} to answer while {} failed",
        store.source
    );
    Ok(gateway)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_postgres_store_that_freezes_or_goes_down() -> anyhow::Result<()> {
    let Some(admin_url) = backends::require(
        Backend::Postgres,
        "a_postgres_store_that_freezes_or_goes_down",
    ) else {
        return Ok(());
    };
    let database = PgDatabase::create(&admin_url, "stalled").await?;
    let pg = database.client().await?;
    pg.batch_execute("CREATE TABLE t AS SELECT n FROM generate_series(1, 100) AS n")
        .await?;
    let name: String = pg.query_one("SELECT current_database()", &[]).await?.get(0);
    let link = FaultyLink::to_url(&database.url).await?;
    let store = Store {
        source: "crm",
        table: format!(
            "[sources.crm]\nkind = \"postgres\"\nurl = \"{}\"\npool_size = 2\n\
             connect_timeout_secs = 2\nresponse_timeout_secs = {}\n",
            link.url(&database.url)?,
            RESPONSE_TIMEOUT.as_secs()
        ),
        query: "SELECT n FROM crm.t".to_owned(),
        rows: 100,
        scan_bytes: b"COPY (",
    };
    let dir = tempfile::tempdir()?;
    let gateway = survives(dir.path(), &store, &link).await?;

    // The store shows no more sessions than the source's pool holds, once the sessions the
    // gateway closed while the store was frozen have ended there too.
    let admin = backends::connect(&admin_url).await?;
    let sessions = || backends::gateway_sessions(&admin, &name, &[]);
    let more = "more sessions than the pool of 2";
    backends::wait_for(Duration::from_secs(5), more, sessions, |n| n <= 2).await?;
    drop(gateway);
    drop(link);
    database.drop_database().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mongodb_store_that_freezes_or_goes_down() -> anyhow::Result<()> {
    let Some(url) = backends::require(Backend::Mongo, "a_mongodb_store_that_freezes_or_goes_down")
    else {
        return Ok(());
    };
    let mongo = MongoDatabase::create(&url, "stalled").await?;
    let documents: Vec<_> = (1..=100).map(|n| doc! { "_id": n, "n": n }).collect();
    mongo
        .db()
        .collection::<mongodb::bson::Document>("items")
        .insert_many(documents)
        .await?;
    let link = FaultyLink::to_url(&url).await?;
    let store = Store {
        source: "docs",
        // Batches of 10 documents: the scan's second batch is its first getMore.
        table: format!(
            "[sources.docs]\nkind = \"mongodb\"\nurl = \"{}/?directConnection=true\"\n\
             database = \"{}\"\nbatch_size = 10\nconnect_timeout_secs = 2\n\
             response_timeout_secs = {}\n",
            link.url(&url)?.trim_end_matches('/'),
            mongo.name,
            RESPONSE_TIMEOUT.as_secs()
        ),
        query: "SELECT n FROM docs.items".to_owned(),
        rows: 100,
        scan_bytes: b"getMore",
    };
    let dir = tempfile::tempdir()?;
    let gateway = survives(dir.path(), &store, &link).await?;
    drop(gateway);
    drop(link);
    mongo.drop_database().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_opensearch_store_that_freezes_or_goes_down() -> anyhow::Result<()> {
    let Some(url) = backends::require(
        Backend::Search,
        "an_opensearch_store_that_freezes_or_goes_down",
    ) else {
        return Ok(());
    };
    let mut search = SearchIndices::create(&url, "stalled");
    search
        .create_index("items", json!({ "properties": { "n": {"type": "long"} } }))
        .await?;
    let documents: Vec<(String, Value)> = (1..=100)
        .map(|n| (n.to_string(), json!({ "n": n })))
        .collect();
    search.bulk("items", &documents).await?;
    let index = search.name("items");
    let link = FaultyLink::to_url(&url).await?;
    let relayed = link.url(&url)?;
    let store = Store {
        source: "s",
        // Pages of 10 hits: the scan's second page is its first scroll request.
        table: format!(
            "[sources.s]\nkind = \"elasticsearch\"\nurl = \"{relayed}\"\ninclude = [\"{}_*\"]\n\
             paging = \"scroll\"\npage_size = 10\nconnect_timeout_secs = 2\n\
             response_timeout_secs = {}\n",
            search.prefix,
            RESPONSE_TIMEOUT.as_secs()
        ),
        query: format!("SELECT n FROM s.\"{index}\""),
        rows: 100,
        scan_bytes: b"_search/scroll",
    };
    let dir = tempfile::tempdir()?;
    let gateway = survives(dir.path(), &store, &link).await?;
    drop(gateway);
    drop(link);
    search.delete().await?;
    Ok(())
}
