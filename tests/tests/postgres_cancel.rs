//! Remote statements end with the client: a client killed mid-scan, or many `LIMIT 1`
//! queries, leave nothing running on PostgreSQL.

use std::time::{Duration, Instant};

use futures::StreamExt;
use polygate_tests::backends::{self, Backend, PgDatabase};
use polygate_tests::gateway::TestGateway;
use tokio_postgres::Client;

/// polygate's statements on `database` that are still running, as PostgreSQL reports them.
async fn running(admin: &Client, database: &str) -> anyhow::Result<i64> {
    backends::gateway_sessions(admin, database, &["active"]).await
}

/// polygate's sessions on `database`, idle pooled ones included.
async fn sessions(admin: &Client, database: &str) -> anyhow::Result<i64> {
    backends::gateway_sessions(admin, database, &[]).await
}

/// Waits until `probe` returns 0, for at most `within`; returns how long it took.
async fn until_zero<F, Fut>(within: Duration, probe: F) -> anyhow::Result<Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<i64>>,
{
    backends::wait_for(within, "still there", probe, |count| count == 0).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_client_and_limit_churn_leave_nothing_running() -> anyhow::Result<()> {
    let Some(admin_url) = backends::require(
        Backend::Postgres,
        "killed_client_and_limit_churn_leave_nothing_running",
    ) else {
        return Ok(());
    };
    let database = PgDatabase::create(&admin_url, "cancel").await?;
    let pg = database.client().await?;
    pg.batch_execute(
        "CREATE TABLE big AS SELECT i, md5(i::text) AS s FROM generate_series(1, 1000000) AS i;
         CREATE VIEW slow AS SELECT pg_sleep(60)::text AS x;",
    )
    .await?;
    let name: String = pg.query_one("SELECT current_database()", &[]).await?.get(0);
    let admin = backends::connect(&admin_url).await?;

    let dir = tempfile::tempdir()?;
    let catalog = dir.path().join("catalog.toml");
    std::fs::write(
        &catalog,
        format!(
            "[sources.pg]\nkind = \"postgres\"\nurl = \"{}\"\npool_size = 2\n",
            database.url
        ),
    )?;
    let gateway = TestGateway::start(&catalog).await?;

    // A client reads the first rows of a full scan, then its process "dies": the connection
    // is dropped without a word.
    let (client, connection) =
        tokio_postgres::connect(&gateway.url("polygate"), tokio_postgres::NoTls).await?;
    let connection = tokio::spawn(connection);
    let rows = client
        .query_raw("SELECT i, s FROM pg.big", std::iter::empty::<i64>())
        .await?;
    let first: Vec<_> = rows.take(10).collect().await;
    assert_eq!(first.len(), 10);
    assert!(
        running(&admin, &name).await? >= 1,
        "the scan should be running on the server"
    );
    connection.abort();
    drop(client);
    let gone_after = until_zero(Duration::from_secs(5), || running(&admin, &name)).await?;
    eprintln!("remote statement gone {gone_after:?} after the client was killed");

    // A statement that works long before its first row: dropping the scan's stream must
    // cancel it on the server (closing the connection alone would not be noticed before the
    // server next sends a row, here a minute later).
    let ctx = polygate::engine::Engine::new(gateway.catalog.clone())?
        .default_session("polygate")?
        .ctx;
    let mut stream = ctx
        .sql("SELECT x FROM pg.slow")
        .await?
        .execute_stream()
        .await?;
    let first = tokio::time::timeout(Duration::from_millis(1500), stream.next()).await;
    assert!(first.is_err(), "the view should still be sleeping");
    assert!(
        running(&admin, &name).await? >= 1,
        "the sleep should be running on the server"
    );
    drop(stream);
    let gone_after = until_zero(Duration::from_secs(5), || running(&admin, &name)).await?;
    eprintln!("sleeping statement cancelled {gone_after:?} after its stream was dropped");

    // LIMIT churn: each query stops its scan early; nothing stays open or running.
    let client = gateway.connect().await?;
    for _ in 0..50 {
        let row = client
            .query_one("SELECT i FROM pg.big LIMIT 1", &[])
            .await?;
        assert!(row.get::<_, i32>(0) >= 1);
    }
    until_zero(Duration::from_secs(5), || running(&admin, &name)).await?;
    // Sessions are pooled: idle ones stay, never more than the pool's size.
    assert!(sessions(&admin, &name).await? <= 2);

    // More concurrent scans than pooled sessions: they queue, all answer, the bound holds.
    let mut scans = Vec::new();
    for k in 2..8_i32 {
        let url = gateway.url("polygate");
        scans.push(tokio::spawn(async move {
            let client = backends::connect(&url).await?;
            let row = client
                .query_one(
                    &format!("SELECT count(*) FROM pg.big WHERE i % {k} = 0"),
                    &[],
                )
                .await?;
            anyhow::Ok((k, row.get::<_, i64>(0)))
        }));
    }
    let mut most = 0;
    while scans.iter().any(|s| !s.is_finished()) {
        most = most.max(sessions(&admin, &name).await?);
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    for scan in scans {
        let (k, count) = scan.await??;
        assert_eq!(count, 1_000_000 / i64::from(k), "i % {k} = 0");
    }
    assert!((1..=2).contains(&most), "{most} sessions for a pool of 2");

    drop(client);
    drop(gateway);
    database.drop_database().await?;
    Ok(())
}

/// The three ways a client stops a statement through the gateway, each ending the remote
/// statement within 5 s: a CancelRequest while rows stream (answered 57014), a CancelRequest
/// before the first row, and a client that disconnects while the store is still working.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancel_requests_and_disconnects_end_remote_statements() -> anyhow::Result<()> {
    let Some(admin_url) = backends::require(Backend::Postgres, "cancel_requests") else {
        return Ok(());
    };
    let database = PgDatabase::create(&admin_url, "cancel_requests").await?;
    database
        .client()
        .await?
        .batch_execute(
            "CREATE TABLE big AS SELECT i, md5(i::text) AS s FROM generate_series(1, 1000000) AS i;
             CREATE VIEW slow AS SELECT pg_sleep(60)::text AS x;",
        )
        .await?;
    let name: String = database
        .client()
        .await?
        .query_one("SELECT current_database()", &[])
        .await?
        .get(0);
    let admin = backends::connect(&admin_url).await?;
    let gateway = TestGateway::with_catalog(&format!(
        "[sources.pg]\nkind = \"postgres\"\nurl = \"{}\"\npool_size = 2\n",
        database.url
    ))
    .await?;

    // CancelRequest while rows are streaming.
    let client = gateway.connect().await?;
    let rows = client
        .query_raw("SELECT i, s FROM pg.big", std::iter::empty::<i64>())
        .await?;
    futures::pin_mut!(rows);
    for _ in 0..10 {
        rows.next().await.expect("a row")?;
    }
    client
        .cancel_token()
        .cancel_query(tokio_postgres::NoTls)
        .await?;
    let error = loop {
        match tokio::time::timeout(Duration::from_secs(10), rows.next()).await? {
            Some(Ok(_)) => continue,
            Some(Err(error)) => break error,
            None => anyhow::bail!("the canceled scan ran to its end"),
        }
    };
    assert_eq!(
        error.code().map(|c| c.code()),
        Some("57014"),
        "{}",
        backends::server_message(&error)
    );
    let gone = until_zero(Duration::from_secs(5), || running(&admin, &name)).await?;
    eprintln!("streaming statement gone {gone:?} after the CancelRequest");
    // The session goes on.
    let one: i64 = client.query_one("SELECT 1", &[]).await?.get(0);
    assert_eq!(one, 1);

    // CancelRequest while the store works before its first row.
    let token = client.cancel_token();
    let canceler = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(800)).await;
        token.cancel_query(tokio_postgres::NoTls).await
    });
    let error = client
        .simple_query("SELECT x FROM pg.slow")
        .await
        .expect_err("canceled");
    canceler.await??;
    assert_eq!(error.code().map(|c| c.code()), Some("57014"));
    until_zero(Duration::from_secs(5), || running(&admin, &name)).await?;

    // A client that goes away while the store works: the gateway notices without a row to
    // send, and cancels.
    let (client, connection) =
        tokio_postgres::connect(&gateway.url("polygate"), tokio_postgres::NoTls).await?;
    let connection = tokio::spawn(connection);
    let query = tokio::spawn(async move { client.simple_query("SELECT x FROM pg.slow").await });
    let started = Instant::now();
    while running(&admin, &name).await? == 0 {
        anyhow::ensure!(
            started.elapsed() < Duration::from_secs(10),
            "the sleep never started"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    connection.abort();
    query.abort();
    let gone = until_zero(Duration::from_secs(5), || running(&admin, &name)).await?;
    eprintln!("sleeping statement gone {gone:?} after its client disconnected");

    drop(gateway);
    database.drop_database().await?;
    Ok(())
}

/// A scan that fails in polygate (a value with no Arrow form) cancels its statement; the cancel
/// request travels on a connection of its own and may land late, so the session it was sent
/// for must never serve another statement. With one pooled session, every query after a
/// failed one would otherwise risk being cancelled in its place.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_statement_never_cancels_the_next_one() -> anyhow::Result<()> {
    let Some(admin_url) = backends::require(Backend::Postgres, "cancel_next") else {
        return Ok(());
    };
    let db = PgDatabase::create(&admin_url, "cancel_next").await?;
    db.client()
        .await?
        .batch_execute(
            // The statement that fails has already ended when its cancel request arrives:
            // the request would hit whatever the session runs next.
            "CREATE TABLE bad (id int8, at timestamp);
             INSERT INTO bad VALUES (1, '2000-01-01'), (2, 'infinity');
             CREATE TABLE good AS SELECT i AS id FROM generate_series(1, 200000) AS i;",
        )
        .await?;
    let gateway = TestGateway::with_catalog(&format!(
        "[sources.pg]\nkind = \"postgres\"\nurl = \"{}\"\npool_size = 1\n",
        db.url
    ))
    .await?;
    let client = gateway.connect().await?;
    for round in 0..20 {
        let error = client
            .simple_query("SELECT at FROM pg.bad")
            .await
            .expect_err("an infinite timestamp cannot be read");
        let message = backends::server_message(&error);
        assert!(
            message.contains("infinite timestamp"),
            "round {round}: {message}"
        );
        client
            .simple_query("SELECT id FROM pg.good")
            .await
            .map_err(|e| anyhow::anyhow!("round {round}: {e:?}"))?;
    }
    drop(gateway);
    db.drop_database().await?;
    Ok(())
}
