//! catalog.toml edits reach a running gateway; unreachable sources do not stop the others.

// Test helpers: a failed expectation is a failed test, with its message.
#![allow(clippy::expect_used)]

use std::path::Path;
use std::time::{Duration, Instant};

use polygate_tests::gateway::TestGateway;
use tokio_postgres::Client;

/// How long a reload may take to be visible: "within a few seconds".
const VISIBLE_WITHIN: Duration = Duration::from_secs(5);

fn demo_data() -> String {
    polygate_tests::repo_root()
        .join("examples/demo/data")
        .display()
        .to_string()
}

fn shop_source() -> String {
    format!(
        "[sources.shop]\nkind = \"files\"\nroot = \"{}\"\n",
        demo_data()
    )
}

fn write_table(dir: &Path, name: &str, rows: usize) {
    std::fs::create_dir_all(dir).expect("mkdir");
    let mut csv = String::from("n\n");
    for i in 0..rows {
        csv.push_str(&format!("{i}\n"));
    }
    std::fs::write(dir.join(format!("{name}.csv")), csv).expect("write csv");
}

/// Polls `sql` until it returns a count, or the deadline passes.
async fn count_within(client: &Client, sql: &str, within: Duration) -> Result<i64, String> {
    let deadline = Instant::now() + within;
    loop {
        match client.query_one(sql, &[]).await {
            Ok(row) => return Ok(row.get(0)),
            Err(error) if Instant::now() >= deadline => {
                return Err(error.as_db_error().map_or_else(
                    || error.to_string(),
                    |e| format!("{}: {}", e.code().code(), e.message()),
                ));
            }
            Err(_) => tokio::time::sleep(Duration::from_millis(100)).await,
        }
    }
}

/// The SQLSTATE `sql` fails with.
async fn error_code(client: &Client, sql: &str) -> Option<String> {
    let error = client.query(sql, &[]).await.err()?;
    error.code().map(|c| c.code().to_owned())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn edits_apply_to_open_sessions_without_restart() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let catalog = dir.path().join("catalog.toml");
    std::fs::write(&catalog, shop_source())?;
    let gateway = TestGateway::start(&catalog).await?;
    let _watch = polygate::reload::watch(gateway.catalog.clone())?;
    // This session is opened before any edit and used throughout.
    let client = gateway.connect().await?;
    assert_eq!(
        error_code(&client, "SELECT count(*) FROM extra.numbers")
            .await
            .as_deref(),
        Some("42P01")
    );

    // Adding a source makes it queryable.
    write_table(&dir.path().join("extra"), "numbers", 7);
    let added = format!(
        "{}\n[sources.extra]\nkind = \"files\"\nroot = \"extra\"\n",
        shop_source()
    );
    std::fs::write(&catalog, &added)?;
    let count = count_within(
        &client,
        "SELECT count(*) FROM extra.numbers",
        VISIBLE_WITHIN,
    )
    .await;
    assert_eq!(count, Ok(7), "the added source did not become queryable");

    // An invalid edit is rejected and the catalog in force stays.
    std::fs::write(
        &catalog,
        format!("{added}\n[sources.broken]\nkind = \"nope\"\n"),
    )?;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert_eq!(
        client
            .query_one("SELECT count(*) FROM extra.numbers", &[])
            .await?
            .get::<_, i64>(0),
        7
    );
    assert_eq!(
        error_code(&client, "SELECT 1 FROM broken.x")
            .await
            .as_deref(),
        Some("42P01")
    );

    // Changed options apply: the same source now reads another directory.
    write_table(&dir.path().join("extra2"), "numbers", 3);
    std::fs::write(
        &catalog,
        added.replace("root = \"extra\"", "root = \"extra2\""),
    )?;
    let deadline = Instant::now() + VISIBLE_WITHIN;
    while count_within(
        &client,
        "SELECT count(*) FROM extra.numbers",
        VISIBLE_WITHIN,
    )
    .await
        != Ok(3)
    {
        assert!(Instant::now() < deadline, "the changed root did not apply");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }

    // Removing the source makes it disappear; the others keep serving.
    std::fs::write(&catalog, shop_source())?;
    let deadline = Instant::now() + VISIBLE_WITHIN;
    while error_code(&client, "SELECT count(*) FROM extra.numbers")
        .await
        .as_deref()
        != Some("42P01")
    {
        assert!(
            Instant::now() < deadline,
            "the removed source is still queryable"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(
        client
            .query_one("SELECT count(*) FROM shop.customers", &[])
            .await?
            .get::<_, i64>(0),
        10
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sighup_reloads_the_catalog() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let catalog = dir.path().join("catalog.toml");
    std::fs::write(&catalog, shop_source())?;
    let gateway = TestGateway::start(&catalog).await?;
    let client = gateway.connect().await?;
    // The edit happens before the watch starts, so only the signal can apply it.
    write_table(&dir.path().join("hup"), "numbers", 4);
    std::fs::write(
        &catalog,
        format!(
            "{}\n[sources.hup]\nkind = \"files\"\nroot = \"hup\"\n",
            shop_source()
        ),
    )?;
    let _watch = polygate::reload::watch(gateway.catalog.clone())?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(
        error_code(&client, "SELECT count(*) FROM hup.numbers")
            .await
            .as_deref(),
        Some("42P01")
    );
    let status = std::process::Command::new("kill")
        .args(["-HUP", &std::process::id().to_string()])
        .status()?;
    assert!(status.success());
    let count = count_within(&client, "SELECT count(*) FROM hup.numbers", VISIBLE_WITHIN).await;
    assert_eq!(count, Ok(4));
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unreachable_sources_are_reported_retried_and_do_not_stop_the_others() -> anyhow::Result<()>
{
    let dir = tempfile::tempdir()?;
    // A port nothing listens on: bind one, note it, close it.
    let closed_port = std::net::TcpListener::bind("127.0.0.1:0")?
        .local_addr()?
        .port();
    let catalog = dir.path().join("catalog.toml");
    std::fs::write(
        &catalog,
        format!(
            "{}\n[sources.late]\nkind = \"files\"\nroot = \"late\"\n\n\
             [sources.down]\nkind = \"postgres\"\nurl = \"postgres://nobody@127.0.0.1:{closed_port}/db\"\nconnect_timeout_secs = 2\n",
            shop_source()
        ),
    )?;
    let gateway = TestGateway::start(&catalog).await?;
    let client = gateway.connect().await?;

    // The reachable source serves.
    assert_eq!(
        client
            .query_one("SELECT count(*) FROM shop.orders", &[])
            .await?
            .get::<_, i64>(0),
        14
    );

    // The unreachable ones answer 08006, naming the source.
    for (source, table) in [("down", "t"), ("late", "numbers")] {
        let error = client
            .query(&format!("SELECT * FROM {source}.{table}"), &[])
            .await
            .expect_err("unavailable");
        let db = error.as_db_error().expect("a server error");
        assert_eq!(db.code().code(), "08006", "{db:?}");
        assert!(
            db.message().contains(&format!("source {source}")),
            "{}",
            db.message()
        );
    }
    let status = gateway.catalog.status();
    let state = |name: &str| {
        status
            .iter()
            .find(|s| s.name == name)
            .map(|s| format!("{:?}", s.state))
            .unwrap_or_default()
    };
    assert!(state("down").contains("Unavailable"), "{}", state("down"));
    assert!(
        state("down").to_lowercase().contains("refused"),
        "{}",
        state("down")
    );
    assert!(state("shop").contains("Ready"), "{}", state("shop"));

    // Once the store appears, the background retry picks it up with no reload.
    write_table(&dir.path().join("late"), "numbers", 5);
    let count = count_within(
        &client,
        "SELECT count(*) FROM late.numbers",
        Duration::from_secs(10),
    )
    .await;
    assert_eq!(count, Ok(5));
    Ok(())
}

/// Regression: a reload whose file had lost its `auth` line (or its whole `[gateway]` table)
/// was applied, and the start-up handler read the missing method as `trust`, letting any
/// user in without a password. Such an edit is now rejected like any invalid edit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_edit_cannot_remove_authentication_or_size_a_pool_absurdly() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    let catalog = dir.path().join("catalog.toml");
    let gateway_table =
        "[gateway]\nauth = \"scram-sha-256\"\n[gateway.users]\nalice = \"secret\"\n";
    let secured = format!("{gateway_table}\n{}", shop_source());
    std::fs::write(&catalog, &secured)?;
    let gateway = TestGateway::start(&catalog).await?;
    let refused = |user: &'static str| {
        let url = format!(
            "host=127.0.0.1 port={} user={user} dbname=polygate",
            gateway.port()
        );
        async move {
            tokio_postgres::connect(&url, tokio_postgres::NoTls)
                .await
                .is_err()
        }
    };
    assert!(
        refused("nobody").await,
        "an unknown user got in before any edit"
    );

    let unreachable_pg = |pool_size: &str| {
        format!(
            "{secured}\n[sources.crm]\nkind = \"postgres\"\n\
             url = \"postgres://reader@127.0.0.1:1/crm\"\npool_size = {pool_size}\n"
        )
    };
    let edits = [
        (
            "without auth",
            secured.replace("auth = \"scram-sha-256\"\n", ""),
            "gateway.auth",
        ),
        ("without [gateway]", shop_source(), "gateway.auth"),
        ("pool_size 0", unreachable_pg("0"), "pool_size"),
        (
            "pool_size 10^12",
            unreachable_pg("1000000000000"),
            "pool_size",
        ),
    ];
    for (what, text, key) in edits {
        std::fs::write(&catalog, &text)?;
        let error = match gateway.catalog.reload().await {
            Ok(summary) => anyhow::bail!("the edit {what} was applied: {summary:?}"),
            Err(error) => error.to_string(),
        };
        assert!(error.contains(key), "{what}: {error}");
        assert!(
            gateway.catalog.config().gateway.auth.is_some(),
            "{what}: the catalog in force lost its auth"
        );
        assert!(refused("nobody").await, "{what}: an unknown user got in");
        assert!(
            refused("tester").await,
            "{what}: a user without a password got in"
        );
    }
    // Writing trust out is an operator's explicit choice, and applies.
    std::fs::write(
        &catalog,
        format!("[gateway]\nauth = \"trust\"\n\n{}", shop_source()),
    )?;
    gateway.catalog.reload().await?;
    assert!(!refused("tester").await, "an explicit trust did not apply");
    Ok(())
}

/// An edit that drops `tls_required = true` would let clients in without TLS: it takes a
/// restart, not a reload.
#[tokio::test]
async fn an_edit_cannot_stop_requiring_tls() -> anyhow::Result<()> {
    let dir = tempfile::tempdir()?;
    // Only the files' presence is checked when the catalog loads; no server reads them here.
    std::fs::write(dir.path().join("server.crt"), "")?;
    std::fs::write(dir.path().join("server.key"), "")?;
    let catalog = dir.path().join("catalog.toml");
    let gateway_table = "[gateway]\nauth = \"trust\"\ntls_cert_file = \"server.crt\"\n\
                         tls_key_file = \"server.key\"\n";
    std::fs::write(
        &catalog,
        format!("{gateway_table}tls_required = true\n\n{}", shop_source()),
    )?;
    let live = polygate_catalog::Catalog::load(&catalog).await?;
    std::fs::write(&catalog, format!("{gateway_table}\n{}", shop_source()))?;
    let error = live
        .reload()
        .await
        .expect_err("the edit dropped tls_required");
    assert!(
        error.to_string().contains("gateway.tls_required"),
        "{error}"
    );
    assert!(live.config().gateway.tls_required);
    Ok(())
}
