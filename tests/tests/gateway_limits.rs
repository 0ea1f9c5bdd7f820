//! The gateway's own limits and stops, on statements DataFusion computes itself (no store
//! needed): statement_timeout, CancelRequest, the connection limit, the memory limit, the row
//! limit, idle_session_timeout and graceful shutdown.

use std::time::{Duration, Instant};

use polygate_tests::backends::server_message;
use polygate_tests::gateway::TestGateway;

/// Works for minutes unless stopped.
const SLOW: &str = "SELECT sum(value) FROM generate_series(1, 100000000000)";

fn sqlstate(error: &tokio_postgres::Error) -> String {
    error
        .code()
        .map(|c| c.code().to_owned())
        .unwrap_or_else(|| format!("no SQLSTATE: {error}"))
}

/// Runs `sql` expecting an error, within a minute.
async fn fails(
    client: &tokio_postgres::Client,
    sql: &str,
) -> anyhow::Result<tokio_postgres::Error> {
    match tokio::time::timeout(Duration::from_secs(60), client.simple_query(sql)).await? {
        Ok(_) => anyhow::bail!("{sql} succeeded"),
        Err(error) => Ok(error),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_timeout_and_cancel_requests_stop_statements_with_57014() -> anyhow::Result<()> {
    let gateway = TestGateway::demo().await?;
    let client = gateway.connect().await?;

    client.batch_execute("SET statement_timeout = 300").await?;
    let started = Instant::now();
    let error = fails(&client, SLOW).await?;
    assert_eq!(sqlstate(&error), "57014", "{}", server_message(&error));
    assert!(server_message(&error).contains("statement timeout"));
    assert!(started.elapsed() < Duration::from_secs(30));
    // The session goes on, and the timeout applies to the next statement only if it is slow.
    let rows = client
        .simple_query("SELECT count(*) FROM shop.customers")
        .await?;
    assert!(!rows.is_empty());

    client.batch_execute("SET statement_timeout = 0").await?;
    let token = client.cancel_token();
    let canceler = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        token.cancel_query(tokio_postgres::NoTls).await
    });
    let error = fails(&client, SLOW).await?;
    canceler.await??;
    assert_eq!(sqlstate(&error), "57014", "{}", server_message(&error));
    assert!(server_message(&error).contains("user request"));

    // Extended protocol too.
    let token = client.cancel_token();
    let canceler = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(500)).await;
        token.cancel_query(tokio_postgres::NoTls).await
    });
    let error = client.query(SLOW, &[]).await.expect_err("canceled");
    canceler.await??;
    assert_eq!(sqlstate(&error), "57014");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_default_statement_timeout_applies_to_every_session() -> anyhow::Result<()> {
    let gateway = TestGateway::demo_with("statement_timeout_secs = 1").await?;
    let client = gateway.connect().await?;
    let shown = polygate_tests::text_rows(&client, "SHOW statement_timeout").await?;
    assert_eq!(shown, [[Some("1000".to_owned())]]);
    let error = fails(&client, SLOW).await?;
    assert_eq!(sqlstate(&error), "57014");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_limit_are_refused_with_53300() -> anyhow::Result<()> {
    let gateway = TestGateway::demo_with("max_connections = 2").await?;
    let first = gateway.connect().await?;
    let second = gateway.connect().await?;
    let error = gateway
        .connect()
        .await
        .expect_err("a third connection is refused");
    let error = error
        .downcast_ref::<tokio_postgres::Error>()
        .map(sqlstate)
        .unwrap_or_else(|| format!("{error:#}"));
    assert_eq!(error, "53300");
    // The ones in are served.
    first.simple_query("SELECT 1").await?;
    second.simple_query("SELECT 1").await?;
    // A slot freed is a slot to take.
    drop(first);
    let started = Instant::now();
    loop {
        match gateway.connect().await {
            Ok(client) => {
                client.simple_query("SELECT 1").await?;
                break;
            }
            Err(error) => {
                anyhow::ensure!(started.elapsed() < Duration::from_secs(10), "{error:#}");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_query_over_the_memory_limit_fails_with_53200_and_others_run() -> anyhow::Result<()> {
    let gateway = TestGateway::demo_with("memory_limit_mb = 8").await?;
    let heavy = gateway.connect().await?;
    let light = gateway.connect().await?;
    let big = tokio::spawn(async move {
        heavy
            .simple_query(
                "SELECT count(*) FROM generate_series(1, 4000000) a \
                 JOIN generate_series(1, 4000000) b ON a.value = b.value",
            )
            .await
    });
    for _ in 0..5 {
        let rows = polygate_tests::text_rows(&light, "SELECT count(*) FROM shop.orders").await?;
        assert_eq!(rows.len(), 1);
    }
    let error = big
        .await?
        .expect_err("the join's hash table does not fit in 8 MB");
    assert_eq!(sqlstate(&error), "53200", "{}", server_message(&error));
    let rows = polygate_tests::text_rows(&light, "SELECT count(*) FROM shop.orders").await?;
    assert_eq!(rows.len(), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn results_over_max_result_rows_fail_with_54000() -> anyhow::Result<()> {
    let gateway = TestGateway::demo_with("max_result_rows = 5").await?;
    let client = gateway.connect().await?;
    let rows = polygate_tests::text_rows(&client, "SELECT * FROM generate_series(1, 5)").await?;
    assert_eq!(rows.len(), 5);
    let error = fails(&client, "SELECT * FROM generate_series(1, 6)").await?;
    assert_eq!(sqlstate(&error), "54000", "{}", server_message(&error));
    // Aggregates over more rows are fine: the limit is on what is sent.
    let rows =
        polygate_tests::text_rows(&client, "SELECT count(*) FROM generate_series(1, 100)").await?;
    assert_eq!(rows, [[Some("100".to_owned())]]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn idle_sessions_are_closed_after_idle_session_timeout() -> anyhow::Result<()> {
    let gateway = TestGateway::demo().await?;
    let client = gateway.connect().await?;
    client
        .batch_execute("SET idle_session_timeout = '600ms'")
        .await?;
    // Busy for longer than the timeout: only idleness counts.
    client
        .simple_query("SELECT count(*) FROM generate_series(1, 30000000)")
        .await?;
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let error = client
        .simple_query("SELECT 1")
        .await
        .expect_err("the idle connection was closed");
    assert!(error.is_closed() || error.code().is_none(), "{error}");
    // Other sessions are not affected.
    let other = gateway.connect().await?;
    other.simple_query("SELECT 1").await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn shutdown_lets_short_statements_finish_then_cancels_the_rest() -> anyhow::Result<()> {
    let gateway = TestGateway::demo().await?;
    let port = gateway.port();
    let slow_client = gateway.connect().await?;
    let short_client = gateway.connect().await?;
    let slow = tokio::spawn(async move { slow_client.simple_query(SLOW).await });
    let short = tokio::spawn(async move {
        short_client
            .simple_query("SELECT count(*) FROM generate_series(1, 20000000)")
            .await
    });
    tokio::time::sleep(Duration::from_millis(300)).await;
    let started = Instant::now();
    gateway.shutdown(Duration::from_secs(3)).await;
    let took = started.elapsed();
    // The short statement finished within the grace.
    short
        .await?
        .map_err(|e| anyhow::anyhow!("short: {}", server_message(&e)))?;
    // The slow one was canceled at its end.
    let error = slow.await?.expect_err("canceled at the end of the grace");
    assert_eq!(sqlstate(&error), "57P01", "{}", server_message(&error));
    assert!(
        took >= Duration::from_secs(3) && took < Duration::from_secs(15),
        "{took:?}"
    );
    // No new connections.
    let refused = tokio_postgres::connect(
        &format!("host=127.0.0.1 port={port} user=tester dbname=polygate connect_timeout=5"),
        tokio_postgres::NoTls,
    )
    .await;
    assert!(refused.is_err(), "the listener is closed");
    Ok(())
}

/// Regression: `SET datafusion.execution.batch_size = 68719476736` let the next scan size its
/// buffers by that number and abort the process; an unbounded `target_partitions` opened as
/// many remote statements and search slices. Clients may set a few options, within bounds.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn datafusion_options_are_bounded_and_the_rest_refused() -> anyhow::Result<()> {
    let gateway = TestGateway::demo().await?;
    let client = gateway.connect().await?;
    let refused = [
        ("SET datafusion.execution.batch_size = 68719476736", "22023"),
        ("SET datafusion.execution.batch_size = 0", "22023"),
        (
            "SET datafusion.execution.target_partitions = 1000000",
            "22023",
        ),
        ("SET datafusion.execution.target_partitions = -1", "22023"),
        ("SET datafusion.optimizer.max_passes = 1000000000", "42501"),
        (
            "SET datafusion.execution.sort_spill_reservation_bytes = 1",
            "42501",
        ),
        ("SET datafusion.no_such_option = 1", "42704"),
    ];
    for (sql, code) in refused {
        let error = fails(&client, sql).await?;
        assert_eq!(sqlstate(&error), code, "{sql}: {}", server_message(&error));
    }
    let shown = client
        .simple_query("SHOW datafusion.execution.batch_size")
        .await?
        .into_iter()
        .find_map(|message| match message {
            tokio_postgres::SimpleQueryMessage::Row(row) => row.get(0).map(str::to_owned),
            _ => None,
        });
    assert_eq!(
        shown.as_deref(),
        Some("8192"),
        "a refused SET changed the option"
    );
    client
        .batch_execute(
            "SET datafusion.execution.batch_size = 65536; \
             SET datafusion.execution.target_partitions = 64",
        )
        .await?;
    let rows = client
        .query_one("SELECT count(*) FROM shop.customers", &[])
        .await?;
    assert_eq!(rows.get::<_, i64>(0), 10);
    Ok(())
}
