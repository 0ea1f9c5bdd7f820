//! Source options of the `postgres` kind that change what a source exposes or allows,
//! against a real PostgreSQL.

use polygate_tests::backends::{self, Backend, PgDatabase};
use polygate_tests::gateway::TestGateway;

/// The names of the tables the gateway lists for source `pg`.
fn listed(gateway: &TestGateway) -> Vec<String> {
    let mut names: Vec<String> = gateway
        .catalog
        .status()
        .into_iter()
        .filter(|s| s.name == "pg")
        .flat_map(|s| s.tables)
        .collect();
    names.sort();
    names
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn include_and_exclude_patterns_choose_the_tables() -> anyhow::Result<()> {
    let Some(admin) = backends::require(Backend::Postgres, "include_and_exclude") else {
        return Ok(());
    };
    let db = PgDatabase::create(&admin, "include_exclude").await?;
    db.client()
        .await?
        .batch_execute(
            "CREATE TABLE keep_a (id int8); CREATE TABLE keep_b (id int8);
             CREATE TABLE tmp_x (id int8); CREATE TABLE other (id int8);",
        )
        .await?;
    let gateway = TestGateway::with_catalog(&format!(
            "[sources.pg]\nkind = \"postgres\"\nurl = \"{}\"\ninclude = [\"keep_*\", \"tmp_?\"]\nexclude = [\"*_b\"]\n",
            db.url
        )).await?;
    assert_eq!(listed(&gateway), ["pg.keep_a", "pg.tmp_x"]);
    let client = gateway.connect().await?;
    client.simple_query("SELECT * FROM pg.keep_a").await?;
    for hidden in ["keep_b", "other"] {
        let error = client
            .simple_query(&format!("SELECT * FROM pg.{hidden}"))
            .await
            .expect_err("an excluded table is not there");
        assert_eq!(error.code().map(|c| c.code()), Some("42P01"), "{error:?}");
    }
    drop(gateway);
    db.drop_database().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn statement_timeout_stops_long_remote_statements() -> anyhow::Result<()> {
    let Some(admin) = backends::require(Backend::Postgres, "statement_timeout") else {
        return Ok(());
    };
    let db = PgDatabase::create(&admin, "statement_timeout").await?;
    db.client()
        .await?
        .batch_execute("CREATE VIEW slow AS SELECT pg_sleep(30)::text AS slept, 1::int8 AS n")
        .await?;
    let gateway = TestGateway::with_catalog(&format!(
        "[sources.pg]\nkind = \"postgres\"\nurl = \"{}\"\nstatement_timeout_secs = 1\n",
        db.url
    ))
    .await?;
    let client = gateway.connect().await?;
    let started = std::time::Instant::now();
    let error = client
        .simple_query("SELECT n FROM pg.slow")
        .await
        .expect_err("the server cancels the statement");
    let message = backends::server_message(&error);
    assert!(message.contains("statement timeout"), "{message}");
    // Well before the 30 s the statement would have run (no timing threshold beyond that).
    assert!(started.elapsed() < std::time::Duration::from_secs(25));
    drop(gateway);
    db.drop_database().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn unconstrained_numeric_reads_as_the_configured_decimal_or_fails_clearly()
-> anyhow::Result<()> {
    let Some(admin) = backends::require(Backend::Postgres, "unconstrained_numeric") else {
        return Ok(());
    };
    let db = PgDatabase::create(&admin, "unconstrained_numeric").await?;
    db.client()
        .await?
        .batch_execute(
            "CREATE TABLE fits (id int4, n numeric);
             INSERT INTO fits VALUES (1, 1.5), (2, -123456789012.0123456789), (3, NULL), (4, 0);
             CREATE TABLE too_fine (n numeric);
             INSERT INTO too_fine VALUES (0.00000000001);
             CREATE TABLE not_a_number (n numeric);
             INSERT INTO not_a_number VALUES ('NaN');",
        )
        .await?;
    let gateway = TestGateway::with_catalog(&format!(
            "[sources.pg]\nkind = \"postgres\"\nurl = \"{}\"\nunconstrained_numeric = \"decimal(38,10)\"\n\n\
             [sources.text]\nkind = \"postgres\"\nurl = \"{}\"\n",
            db.url, db.url
        )).await?;
    let client = gateway.connect().await?;
    // Exact decimals, with the configured scale.
    let rows = client
        .query(
            "SELECT n::text, arrow_typeof(n) FROM pg.fits ORDER BY id",
            &[],
        )
        .await?;
    let values: Vec<Option<String>> = rows.iter().map(|r| r.get(0)).collect();
    assert_eq!(
        values,
        [
            Some("1.5000000000".to_owned()),
            Some("-123456789012.0123456789".to_owned()),
            None,
            Some("0.0000000000".to_owned()),
        ]
    );
    assert_eq!(rows[0].get::<_, String>(1), "Decimal128(38, 10)");
    // The default keeps PostgreSQL's text form.
    let row = client
        .query_one("SELECT n, arrow_typeof(n) FROM text.fits WHERE id = 2", &[])
        .await?;
    assert_eq!(row.get::<_, String>(0), "-123456789012.0123456789");
    assert_eq!(row.get::<_, String>(1), "Utf8");
    // A value the decimal cannot hold is an error naming the column, never rounded.
    for (table, expected) in [
        ("too_fine", "more digits than its declared scale"),
        ("not_a_number", "NaN cannot be a decimal"),
    ] {
        let error = client
            .simple_query(&format!("SELECT n FROM pg.{table}"))
            .await
            .expect_err("the value does not fit");
        let message = backends::server_message(&error);
        assert!(
            message.contains("column n") && message.contains(expected),
            "{message}"
        );
    }
    drop(gateway);
    db.drop_database().await?;
    Ok(())
}
