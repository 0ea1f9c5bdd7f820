//! A smoke test against a real PostgreSQL: the demo's data loaded into a database of the
//! test's own, read through polygate's `postgres` source (alone and joined with the `files`
//! source) and compared with the same queries run on PostgreSQL directly.

// Test helpers: an index out of range is a failed test, with its line.
#![allow(clippy::indexing_slicing)]

use polygate_tests::backends::{self, Backend, PgDatabase};
use polygate_tests::gateway::TestGateway;
use tokio_postgres::Client;

/// A text value in a form that compares values, not spellings: today's text encodings print
/// float8 35 as `35.0` and timestamps with `.000000`, where PostgreSQL prints `35` and no
/// fraction. Exact text encodings are pinned by the client-compatibility tests.
fn normalize(cell: Option<String>) -> Option<String> {
    let cell = cell?;
    if let Ok(float) = cell.parse::<f64>() {
        return Some(format!("{float}"));
    }
    let bytes = cell.as_bytes();
    let timestamp = bytes.len() > 19 && bytes[4] == b'-' && bytes[10] == b' ' && bytes[19] == b'.';
    if timestamp {
        return Some(cell.trim_end_matches('0').trim_end_matches('.').to_owned());
    }
    Some(cell)
}

/// The rows of `sql` in PostgreSQL's text format, normalized (see [`normalize`]).
async fn text_rows(client: &Client, sql: &str) -> anyhow::Result<Vec<Vec<Option<String>>>> {
    Ok(polygate_tests::text_rows(client, sql)
        .await?
        .into_iter()
        .map(|row| row.into_iter().map(normalize).collect())
        .collect())
}

/// Copies the demo's customers and orders into PostgreSQL, reading them through polygate.
async fn load_demo(gateway: &Client, pg: &Client) -> anyhow::Result<()> {
    pg.batch_execute(
        "CREATE TABLE customers (id int8 PRIMARY KEY, name text NOT NULL, country text, signup_date date, vip bool);
         CREATE TABLE \"Order Lines\" (order_id int8, customer_id int8, amount float8, status varchar(20), ordered_at timestamp, price numeric(10,2));",
    )
    .await?;
    for row in gateway
        .query(
            "SELECT id, name, country, signup_date, vip FROM shop.customers",
            &[],
        )
        .await?
    {
        pg.execute(
            "INSERT INTO customers VALUES ($1, $2, $3, $4, $5)",
            &[
                &row.get::<_, i64>(0),
                &row.get::<_, String>(1),
                &row.get::<_, Option<String>>(2),
                &row.get::<_, Option<chrono::NaiveDate>>(3),
                &row.get::<_, Option<bool>>(4),
            ],
        )
        .await?;
    }
    for row in gateway
        .query(
            "SELECT order_id, customer_id, amount, status, ordered_at FROM shop.orders",
            &[],
        )
        .await?
    {
        let amount: Option<f64> = row.get(2);
        pg.execute(
            "INSERT INTO \"Order Lines\" VALUES ($1, $2, $3, $4, $5, $3::float8::numeric(10,2))",
            &[
                &row.get::<_, i64>(0),
                &row.get::<_, i64>(1),
                &amount,
                &row.get::<_, String>(3),
                &row.get::<_, chrono::NaiveDateTime>(4),
            ],
        )
        .await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_source_matches_postgres() -> anyhow::Result<()> {
    let Some(admin_url) = backends::require(Backend::Postgres, "postgres_source_matches_postgres")
    else {
        return Ok(());
    };
    let database = PgDatabase::create(&admin_url, "smoke").await?;
    let pg = database.client().await?;
    // A second schema, with a table named like one of the default schema's.
    pg.batch_execute(
        "CREATE SCHEMA billing;
         CREATE TABLE billing.invoices (id int8, total float8);
         INSERT INTO billing.invoices VALUES (1, 10.5), (2, 20.0);
         CREATE TABLE billing.customers (id int8);
         INSERT INTO billing.customers VALUES (42);
         CREATE TABLE decimals (id int8, exact numeric(38,10), money numeric(12,2), free numeric);
         INSERT INTO decimals VALUES
           (1, 9999999999999999999999999999.9999999999, 1234567890.12, 1e40),
           (2, -9999999999999999999999999999.9999999999, -0.01, 'NaN'),
           (3, 0.0000000001, 0, 0.5),
           (4, NULL, NULL, NULL),
           (5, -12.5, 99.99, -3);",
    )
    .await?;

    let dir = tempfile::tempdir()?;
    let catalog = dir.path().join("catalog.toml");
    let demo = polygate_tests::repo_root().join("examples/demo/data");
    std::fs::write(
        &catalog,
        format!(
            "[sources.shop]\nkind = \"files\"\nroot = \"{}\"\n\n[sources.pg]\nkind = \"postgres\"\nurl = \"{}\"\nschemas = [\"public\", \"billing\"]\n",
            demo.display(),
            database.url
        ),
    )?;
    // Load through a gateway over the files only, then bring up the catalog with both.
    let files_only = TestGateway::demo().await?;
    load_demo(&files_only.connect().await?, &pg).await?;
    drop(files_only);
    let gateway = TestGateway::start(&catalog).await?;
    let client = gateway.connect().await?;

    // (through polygate, directly on PostgreSQL)
    let cases = [
        (
            "SELECT id, name, country, signup_date, vip FROM pg.customers ORDER BY id",
            "SELECT id, name, country, signup_date, vip FROM customers ORDER BY id",
        ),
        (
            "SELECT order_id, amount, status, ordered_at, price FROM pg.\"Order Lines\" ORDER BY order_id",
            "SELECT order_id, amount, status, ordered_at, price FROM \"Order Lines\" ORDER BY order_id",
        ),
        (
            "SELECT country, count(*), count(vip) FROM pg.customers GROUP BY country ORDER BY country",
            "SELECT country, count(*), count(vip) FROM customers GROUP BY country ORDER BY country",
        ),
        (
            "SELECT count(*) FROM pg.\"Order Lines\" WHERE amount IS NULL",
            "SELECT count(*) FROM \"Order Lines\" WHERE amount IS NULL",
        ),
        // Cross-store: PostgreSQL customers with the Parquet orders of the files source.
        (
            "SELECT c.name, count(*), round(sum(o.amount)::numeric, 2)::text FROM pg.customers c \
             JOIN shop.orders o ON o.customer_id = c.id WHERE o.status <> 'cancelled' \
             GROUP BY c.name ORDER BY c.name",
            "SELECT c.name, count(*), round(sum(o.amount)::numeric, 2)::text FROM customers c \
             JOIN \"Order Lines\" o ON o.customer_id = c.id WHERE o.status <> 'cancelled' \
             GROUP BY c.name ORDER BY c.name",
        ),
        (
            "SELECT count(*) FROM pg.customers LIMIT 1",
            "SELECT count(*) FROM customers LIMIT 1",
        ),
    ];
    for (through_polygate, direct) in cases {
        let got = text_rows(&client, through_polygate).await?;
        let expected = text_rows(&pg, direct).await?;
        assert!(!expected.is_empty(), "{direct} returned nothing");
        assert_eq!(got, expected, "{through_polygate}");
    }

    // numeric(p,s) reads exactly as Decimal128(p,s), all 38 digits; unconstrained numeric as
    // its text. Compared as exact text: no float normalization here.
    let exact_cases = [
        (
            "SELECT id, exact::text, money::text, free FROM pg.decimals ORDER BY id",
            "SELECT id::text, exact::text, money::text, free::text FROM decimals ORDER BY id",
        ),
        (
            "SELECT sum(money)::text, min(exact)::text, max(exact)::text FROM pg.decimals",
            "SELECT sum(money)::text, min(exact)::text, max(exact)::text FROM decimals",
        ),
    ];
    for (through_polygate, direct) in exact_cases {
        let got = polygate_tests::text_rows(&client, through_polygate).await?;
        let expected = polygate_tests::text_rows(&pg, direct).await?;
        assert_eq!(got, expected, "{through_polygate}");
    }
    assert!(
        polygate_tests::text_rows(&client, "SELECT exact::text FROM pg.decimals WHERE id = 1")
            .await?
            .concat()
            .contains(&Some("9999999999999999999999999999.9999999999".to_owned()))
    );

    // The naming rule: the first schema is the source's own name, the others "source.schema";
    // the default schema's customers keep the short name.
    let (short, qualified, invoices) = (
        text_rows(&client, "SELECT count(*) FROM pg.customers").await?,
        text_rows(&client, "SELECT id FROM \"pg.billing\".customers").await?,
        text_rows(&client, "SELECT sum(total) FROM \"pg.billing\".invoices").await?,
    );
    assert_eq!(short, [[Some("10".to_owned())]]);
    assert_eq!(qualified, [[Some("42".to_owned())]]);
    assert_eq!(invoices, [[Some("30.5".to_owned())]]);

    let schema = gateway
        .catalog
        .status()
        .into_iter()
        .find(|s| s.name == "pg")
        .map(|s| s.tables)
        .unwrap_or_default();
    assert_eq!(
        schema,
        [
            "pg.\"Order Lines\"",
            "pg.customers",
            "pg.decimals",
            "\"pg.billing\".customers",
            "\"pg.billing\".invoices",
        ]
    );

    drop(client);
    drop(gateway);
    database.drop_database().await?;
    Ok(())
}
