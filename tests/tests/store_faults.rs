//! A store that fails under a running statement: the client gets the SQLSTATE PostgreSQL
//! would give for it (08006, or 57P01 when an administrator ended the session) naming the
//! source, other sources keep answering, and the source serves again once the store does.

use std::time::{Duration, Instant};

use polygate_tests::backends::{self, Backend, PgDatabase};
use polygate_tests::gateway::TestGateway;
use polygate_tests::wire::WireClient;
use postgres_protocol::IsNull;
use postgres_protocol::message::frontend;

/// Regression: a PostgreSQL session terminated under a scan reached the client as 22000
/// "invalid data".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pg_terminate_backend_during_a_scan_is_57p01_naming_the_source() -> anyhow::Result<()> {
    let Some(admin_url) = backends::require(
        Backend::Postgres,
        "pg_terminate_backend_during_a_scan_is_57p01_naming_the_source",
    ) else {
        return Ok(());
    };
    let database = PgDatabase::create(&admin_url, "faults").await?;
    let pg = database.client().await?;
    pg.batch_execute(
        "CREATE VIEW slow AS SELECT pg_sleep(60)::text AS x;
         CREATE TABLE t AS SELECT 1 AS n;",
    )
    .await?;
    let name: String = pg.query_one("SELECT current_database()", &[]).await?.get(0);
    let admin = backends::connect(&admin_url).await?;
    let demo = polygate_tests::repo_root().join("examples/demo/data");
    let gateway = TestGateway::with_catalog(&format!(
        "[sources.crm]\nkind = \"postgres\"\nurl = \"{}\"\npool_size = 2\n\n\
         [sources.shop]\nkind = \"files\"\nroot = \"{}\"\n",
        database.url,
        demo.display()
    ))
    .await?;
    let client = gateway.connect().await?;
    let other = gateway.connect().await?;

    let scan = tokio::spawn(async move {
        let outcome = client.query("SELECT x FROM crm.slow", &[]).await;
        (client, outcome)
    });
    // Wait for the statement to run on the server, then end its session there.
    let deadline = Instant::now() + Duration::from_secs(10);
    let terminated = loop {
        let ended: i64 = admin
            .query_one(
                "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity \
                 WHERE datname = $1 AND application_name = 'polygate' \
                 AND query LIKE '%slow%' AND state = 'active'",
                &[&name],
            )
            .await?
            .get(0);
        if ended > 0 || Instant::now() > deadline {
            break Instant::now();
        }
        // Another source answers meanwhile, promptly.
        let started = Instant::now();
        let row = other
            .query_one("SELECT count(*) FROM shop.customers", &[])
            .await?;
        assert_eq!(row.get::<_, i64>(0), 10);
        assert!(started.elapsed() < Duration::from_secs(1));
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    let (client, outcome) = tokio::time::timeout(Duration::from_secs(5), scan).await??;
    let error = outcome.expect_err("the scan's session was terminated");
    let code = error.code().map(|c| c.code().to_owned());
    let message = backends::server_message(&error);
    assert_eq!(code.as_deref(), Some("57P01"), "{message}");
    assert!(message.contains("administrator command"), "{message}");
    assert!(message.contains("source crm"), "{message}");
    assert!(
        terminated.elapsed() < Duration::from_secs(2),
        "the error came {:?} after the termination",
        terminated.elapsed()
    );
    assert!(
        !message.contains("Error {"),
        "a Debug dump reached the client: {message}"
    );

    // The source serves again at once, with no more sessions than its pool holds.
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        match client.query_one("SELECT n FROM crm.t", &[]).await {
            Ok(row) => {
                assert_eq!(row.get::<_, i32>(0), 1);
                break;
            }
            Err(error) if Instant::now() < deadline => {
                eprintln!("not yet: {}", backends::server_message(&error));
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            Err(error) => anyhow::bail!("the source did not come back: {error}"),
        }
    }
    let sessions = backends::gateway_sessions(&admin, &name, &[]).await?;
    assert!(sessions <= 2, "{sessions} sessions for a pool of 2");
    drop(gateway);
    database.drop_database().await?;
    Ok(())
}

/// A client that stops reading while rows are pending: the statement still ends at its
/// `statement_timeout`, and with it the remote statement and the session it held.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_is_stopped_at_statement_timeout() -> anyhow::Result<()> {
    let Some(admin_url) = backends::require(
        Backend::Postgres,
        "a_client_that_stops_reading_is_stopped_at_statement_timeout",
    ) else {
        return Ok(());
    };
    let database = PgDatabase::create(&admin_url, "slowreader").await?;
    let pg = database.client().await?;
    pg.batch_execute(
        "CREATE TABLE big AS SELECT i, md5(i::text) || md5(i::text) AS s \
         FROM generate_series(1, 2000000) AS i;",
    )
    .await?;
    let name: String = pg.query_one("SELECT current_database()", &[]).await?.get(0);
    let admin = backends::connect(&admin_url).await?;
    let gateway = TestGateway::with_catalog(&format!(
        "[gateway]\nstatement_timeout_secs = 1\n\n\
         [sources.crm]\nkind = \"postgres\"\nurl = \"{}\"\npool_size = 2\n",
        database.url
    ))
    .await?;
    let active = || backends::gateway_sessions(&admin, &name, &["active", "idle in transaction"]);

    for simple in [false, true] {
        // A query, by the simple protocol or by Parse, Bind, Execute without a row limit and
        // Sync: then not a byte read.
        let mut client = WireClient::connect(gateway.port(), "polygate").await?;
        let mut out = bytes::BytesMut::new();
        if simple {
            frontend::query("SELECT i, s FROM crm.big", &mut out)?;
        } else {
            frontend::parse("", "SELECT i, s FROM crm.big", std::iter::empty(), &mut out)?;
            frontend::bind(
                "",
                "",
                std::iter::empty::<i16>(),
                std::iter::empty::<()>(),
                |(), _| Ok(IsNull::No),
                [0_i16],
                &mut out,
            )
            .map_err(|_| anyhow::anyhow!("cannot encode Bind"))?;
            frontend::execute("", 0, &mut out)?;
            frontend::sync(&mut out);
        }
        client.send_raw(&out).await?;

        // The scan runs on the server while the gateway fills the socket...
        let started = "the scan never started";
        backends::wait_for(Duration::from_secs(10), started, active, |n| n > 0).await?;
        // ...and is gone within the timeout and 5 s, the client still connected and silent.
        let outlived =
            format!("the remote statement outlived statement_timeout (simple protocol: {simple})");
        backends::wait_for(Duration::from_secs(1 + 5), &outlived, active, |n| n == 0).await?;
        drop(client);
    }
    drop(gateway);
    database.drop_database().await?;
    Ok(())
}

/// Regression: a named portal read for one row and then abandoned (the client synced and
/// went silent, still connected) kept its remote statement running until the client left.
/// As in PostgreSQL, the Sync that ends the implicit transaction closes every portal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_abandoned_portal_ends_its_remote_statement() -> anyhow::Result<()> {
    let Some(admin_url) = backends::require(
        Backend::Postgres,
        "an_abandoned_portal_ends_its_remote_statement",
    ) else {
        return Ok(());
    };
    let database = PgDatabase::create(&admin_url, "abandoned").await?;
    let pg = database.client().await?;
    pg.batch_execute(
        "CREATE TABLE big AS SELECT i, md5(i::text) || md5(i::text) AS s \
         FROM generate_series(1, 2000000) AS i;",
    )
    .await?;
    let name: String = pg.query_one("SELECT current_database()", &[]).await?.get(0);
    let admin = backends::connect(&admin_url).await?;
    let gateway = TestGateway::with_catalog(&format!(
        "[sources.crm]\nkind = \"postgres\"\nurl = \"{}\"\npool_size = 2\n",
        database.url
    ))
    .await?;
    let active = || backends::gateway_sessions(&admin, &name, &["active", "idle in transaction"]);

    let mut client = WireClient::connect(gateway.port(), "polygate").await?;
    let mut out = bytes::BytesMut::new();
    frontend::parse(
        "s",
        "SELECT i, s FROM crm.big",
        std::iter::empty(),
        &mut out,
    )?;
    frontend::bind(
        "p",
        "s",
        std::iter::empty::<i16>(),
        std::iter::empty::<()>(),
        |(), _| Ok(IsNull::No),
        [0_i16],
        &mut out,
    )
    .map_err(|_| anyhow::anyhow!("cannot encode Bind"))?;
    frontend::execute("p", 1, &mut out)?;
    frontend::sync(&mut out);
    client.send_raw(&out).await?;

    // The Execute answered its row (so the statement runs on the server), then the Sync
    // was answered; the client stays connected and silent. The statement is gone within 5 s.
    client
        .until_ready()
        .await?
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let running = "the abandoned portal's remote statement is still running";
    backends::wait_for(Duration::from_secs(5), running, active, |n| n == 0).await?;
    drop(client);
    drop(gateway);
    database.drop_database().await?;
    Ok(())
}

/// Regression: a client that sent Terminate and closed during a statement that had no rows to
/// send yet was not noticed (its goodbye was still unread, so the socket did not look
/// closed), and its remote statement ran to its end. A TLS client's close_notify is the same
/// case: bytes pending, then the FIN.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_terminates_mid_statement_ends_its_remote_statement() -> anyhow::Result<()> {
    let Some(admin_url) = backends::require(
        Backend::Postgres,
        "a_client_that_terminates_mid_statement_ends_its_remote_statement",
    ) else {
        return Ok(());
    };
    let database = PgDatabase::create(&admin_url, "terminate").await?;
    let pg = database.client().await?;
    pg.batch_execute("CREATE VIEW slow AS SELECT pg_sleep(60)::text AS x")
        .await?;
    let name: String = pg.query_one("SELECT current_database()", &[]).await?.get(0);
    let admin = backends::connect(&admin_url).await?;
    let gateway = TestGateway::with_catalog(&format!(
        "[sources.crm]\nkind = \"postgres\"\nurl = \"{}\"\npool_size = 2\n",
        database.url
    ))
    .await?;
    let active = || backends::gateway_sessions(&admin, &name, &["active"]);

    let mut client = WireClient::connect(gateway.port(), "polygate").await?;
    let mut out = bytes::BytesMut::new();
    frontend::query("SELECT x FROM crm.slow", &mut out)?;
    client.send_raw(&out).await?;
    let started = "the statement never started";
    backends::wait_for(Duration::from_secs(10), started, active, |n| n > 0).await?;
    // Terminate, then a FIN: nothing left for the gateway to read but its own goodbye.
    client.terminate().await?;
    let outlived = "the remote statement outlived its client by 5 s";
    backends::wait_for(Duration::from_secs(5), outlived, active, |n| n == 0).await?;
    drop(client);
    drop(gateway);
    database.drop_database().await?;
    Ok(())
}
