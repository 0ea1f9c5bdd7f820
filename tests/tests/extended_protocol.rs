//! The extended query protocol: parameters of each common type, text and binary results,
//! portals fetched a few rows at a time.

use chrono::{NaiveDate, NaiveDateTime};
use polygate_tests::gateway::TestGateway;
use polygate_tests::wire::{WireClient, WireFormat};

/// OIDs of the types clients declare for parameters.
const INT8: u32 = 20;
const TEXT: u32 = 25;
const FLOAT8: u32 = 701;
const BOOL: u32 = 16;
const DATE: u32 = 1082;
const TIMESTAMP: u32 = 1114;

#[tokio::test]
async fn binds_parameters_of_each_type_with_binary_results() -> anyhow::Result<()> {
    let gateway = TestGateway::demo().await?;
    let client = gateway.connect().await?;

    let rows = client
        .query(
            "SELECT order_id, status FROM shop.orders WHERE customer_id = $1 ORDER BY order_id",
            &[&3_i64],
        )
        .await?;
    let got: Vec<(i64, String)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        got,
        [(1004, "cancelled".to_owned()), (1005, "shipped".to_owned())]
    );

    let rows = client
        .query(
            "SELECT id FROM shop.customers WHERE name = $1",
            &[&"Grace Hopper"],
        )
        .await?;
    assert_eq!(
        rows.iter().map(|r| r.get::<_, i64>(0)).collect::<Vec<_>>(),
        [2]
    );

    let rows = client
        .query(
            "SELECT order_id, amount FROM shop.orders WHERE amount > $1 ORDER BY order_id",
            &[&500.0_f64],
        )
        .await?;
    let got: Vec<(i64, f64)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(got, [(1007, 510.0), (1010, 999.0)]);

    let rows = client
        .query(
            "SELECT count(*) FROM shop.customers WHERE vip = $1",
            &[&true],
        )
        .await?;
    assert_eq!(rows[0].get::<_, i64>(0), 3);

    let rows = client
        .query(
            "SELECT name, signup_date FROM shop.customers WHERE signup_date >= $1 ORDER BY id",
            &[&NaiveDate::from_ymd_opt(2024, 6, 7).expect("valid date")],
        )
        .await?;
    let got: Vec<(String, NaiveDate)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        got.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>(),
        ["Margaret Hamilton", "Tim Berners-Lee", "Frances Allen"]
    );
    assert_eq!(
        got[0].1,
        NaiveDate::from_ymd_opt(2024, 6, 7).expect("valid date")
    );

    let since: NaiveDateTime = "2024-08-07T00:00:00".parse()?;
    let rows = client
        .query(
            "SELECT order_id, ordered_at FROM shop.orders WHERE ordered_at > $1 ORDER BY order_id",
            &[&since],
        )
        .await?;
    let got: Vec<(i64, NaiveDateTime)> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(
        got,
        [
            (1009, "2024-08-07T10:00:00".parse()?),
            (1013, "2024-08-08T15:00:00".parse()?),
            (1014, "2024-08-09T16:20:00".parse()?),
        ]
    );
    Ok(())
}

#[tokio::test]
async fn prepared_statement_runs_again_with_new_values() -> anyhow::Result<()> {
    let gateway = TestGateway::demo().await?;
    let client = gateway.connect().await?;
    let statement = client
        .prepare("SELECT count(*) FROM shop.orders WHERE status = $1")
        .await?;
    let mut counts = Vec::new();
    for status in ["shipped", "pending", "cancelled", "lost"] {
        counts.push(
            client
                .query_one(&statement, &[&status])
                .await?
                .get::<_, i64>(0),
        );
    }
    assert_eq!(counts, [8, 4, 2, 0]);
    Ok(())
}

/// Text-format parameters (as JDBC and psql's `\bind` send them), with text and binary results.
#[tokio::test]
async fn text_parameters_with_text_and_binary_results() -> anyhow::Result<()> {
    let gateway = TestGateway::demo().await?;
    let mut client = WireClient::connect(gateway.port(), "polygate").await?;
    let sql = "SELECT order_id, amount, status FROM shop.orders \
               WHERE customer_id = $1 AND status = $2 AND amount > $3 AND ordered_at > $4 \
               ORDER BY order_id";
    let params: [Option<&[u8]>; 4] = [
        Some(b"1"),
        Some(b"shipped"),
        Some(b"10.5"),
        Some(b"2024-08-01 00:00:00"),
    ];
    let types = [INT8, TEXT, FLOAT8, TIMESTAMP];

    let text = client
        .query(sql, &types, &params, WireFormat::Text, WireFormat::Text, 0)
        .await?
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let rows: Vec<Vec<String>> = text[0]
        .rows
        .iter()
        .map(|r| {
            r.iter()
                .map(|v| String::from_utf8_lossy(v.as_deref().unwrap_or(b"NULL")).into_owned())
                .collect()
        })
        .collect();
    // Floats are compared by value: the text encoder prints 35.0 where PostgreSQL prints 35
    // (text encodings are the subject of the client-compatibility work).
    let amounts: Vec<f64> = rows
        .iter()
        .map(|r| r[1].parse().expect("a float"))
        .collect();
    assert_eq!(amounts, [120.5, 35.0]);
    let others: Vec<[&str; 2]> = rows
        .iter()
        .map(|r| [r[0].as_str(), r[2].as_str()])
        .collect();
    assert_eq!(others, [["1001", "shipped"], ["1002", "shipped"]]);

    let binary = client
        .query(
            sql,
            &types,
            &params,
            WireFormat::Text,
            WireFormat::Binary,
            0,
        )
        .await?
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let first = &binary[0].rows[0];
    assert_eq!(first[0].as_deref(), Some(&1001_i64.to_be_bytes()[..]));
    assert_eq!(first[1].as_deref(), Some(&120.5_f64.to_be_bytes()[..]));
    assert_eq!(first[2].as_deref(), Some(&b"shipped"[..]));

    // bool and date as text parameters; the server infers the types (OID 0).
    let fetched = client
        .query(
            "SELECT id FROM shop.customers WHERE vip = $1 AND signup_date < $2 ORDER BY id",
            &[0, 0],
            &[Some(b"true"), Some(b"2024-04-01")],
            WireFormat::Text,
            WireFormat::Text,
            0,
        )
        .await?
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let ids: Vec<&[u8]> = fetched[0]
        .rows
        .iter()
        .map(|r| r[0].as_deref().unwrap_or_default())
        .collect();
    assert_eq!(ids, [&b"1"[..], b"2"]);
    let _ = (BOOL, DATE);
    Ok(())
}

/// A portal executed with a row limit answers PortalSuspended until its rows run out.
#[tokio::test]
async fn portal_fetched_three_rows_at_a_time() -> anyhow::Result<()> {
    let gateway = TestGateway::demo().await?;
    let mut client = WireClient::connect(gateway.port(), "polygate").await?;
    let fetches = client
        .query(
            "SELECT order_id FROM shop.orders ORDER BY order_id",
            &[],
            &[],
            WireFormat::Text,
            WireFormat::Text,
            3,
        )
        .await?
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let sizes: Vec<usize> = fetches.iter().map(|f| f.rows.len()).collect();
    assert_eq!(sizes, [3, 3, 3, 3, 2]);
    assert!(fetches[..4].iter().all(|f| f.suspended));
    assert!(!fetches[4].suspended);
    let ids: Vec<String> = fetches
        .iter()
        .flat_map(|f| &f.rows)
        .map(|r| String::from_utf8_lossy(r[0].as_deref().unwrap_or_default()).into_owned())
        .collect();
    assert_eq!(ids.first().map(String::as_str), Some("1001"));
    assert_eq!(ids.last().map(String::as_str), Some("1014"));
    assert_eq!(ids.len(), 14);
    Ok(())
}

#[tokio::test]
async fn errors_carry_sqlstates() -> anyhow::Result<()> {
    let gateway = TestGateway::demo().await?;
    let client = gateway.connect().await?;
    let code = |e: tokio_postgres::Error| e.code().map(|c| c.code().to_owned());
    let error = client
        .query("SELECT * FROM shop.ordrs", &[])
        .await
        .expect_err("no such table");
    assert_eq!(code(error), Some("42P01".into()));
    let error = client
        .query("SELECT nope FROM shop.orders", &[])
        .await
        .expect_err("no such column");
    assert_eq!(code(error), Some("42703".into()));
    let error = client.query("SELEC 1", &[]).await.expect_err("syntax");
    assert_eq!(code(error), Some("42601".into()));
    let error = client
        .query(
            "INSERT INTO shop.orders VALUES (1, 1, 1.0, 'x', now())",
            &[],
        )
        .await
        .expect_err("read-only");
    assert_eq!(code(error), Some("25006".into()));
    // The session survives its errors.
    assert_eq!(
        client
            .query_one("SELECT 1::bigint", &[])
            .await?
            .get::<_, i64>(0),
        1
    );
    Ok(())
}

/// Many clients at once, each with its own session, each getting its own rows.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_clients_each_get_their_rows() -> anyhow::Result<()> {
    let gateway = TestGateway::demo().await?;
    let mut tasks = Vec::new();
    for customer in 1..=10_i64 {
        let url = gateway.url("polygate");
        tasks.push(tokio::spawn(async move {
            let client = polygate_tests::backends::connect(&url).await?;
            let mut counts = Vec::new();
            for _ in 0..5 {
                let row = client
                    .query_one(
                        "SELECT count(*) FROM shop.orders WHERE customer_id = $1",
                        &[&customer],
                    )
                    .await?;
                counts.push(row.get::<_, i64>(0));
            }
            anyhow::Ok((customer, counts))
        }));
    }
    let expected_orders = [2, 2, 2, 1, 1, 2, 1, 1, 1, 1];
    for task in tasks {
        let (customer, counts) = task.await??;
        let expected = expected_orders[(customer - 1) as usize];
        assert_eq!(counts, vec![expected; 5], "customer {customer}");
    }
    Ok(())
}

/// Regression: pgwire's text decoder undid `''` doubling in text-format parameters, so `a''`
/// arrived as `a'` and `WHERE s = $1` missed the row PostgreSQL finds. Values must arrive byte
/// for byte, in text and in binary format, typed by the client or inferred.
#[tokio::test]
async fn text_format_parameters_arrive_byte_for_byte() -> anyhow::Result<()> {
    let gateway = TestGateway::demo().await?;
    let mut client = WireClient::connect(gateway.port(), "polygate").await?;
    let large = "x'".repeat(512 * 1024);
    let values = [
        "a''",
        "''",
        "'",
        "\\",
        "\\'",
        "x' OR 1=1 --",
        "{a,b}",
        "",
        "ünïcødé ✓ 𝄞",
        large.as_str(),
    ];
    let rows = "(VALUES ('a'''''), (''''''), (''''), ('\\'), ('\\'''), \
                ('x'' OR 1=1 --'), ('{a,b}'), (''), ('ünïcødé ✓ 𝄞')) AS t(s)";
    for value in values {
        for format in [WireFormat::Text, WireFormat::Binary] {
            for declared in [0, TEXT] {
                let echoed = client
                    .query(
                        "SELECT $1::text",
                        &[declared],
                        &[Some(value.as_bytes())],
                        format,
                        WireFormat::Text,
                        0,
                    )
                    .await?
                    .map_err(|e| anyhow::anyhow!("{e:?}"))?;
                let got = echoed[0].rows[0][0].as_deref().unwrap_or_default();
                assert!(
                    got == value.as_bytes(),
                    "{format:?} parameter of type {declared}: sent {} bytes, got {} ({:?}...)",
                    value.len(),
                    got.len(),
                    String::from_utf8_lossy(&got[..got.len().min(20)])
                );
                let matched = client
                    .query(
                        &format!("SELECT count(*) FROM {rows} WHERE s = $1"),
                        &[declared],
                        &[Some(value.as_bytes())],
                        format,
                        WireFormat::Text,
                        0,
                    )
                    .await?
                    .map_err(|e| anyhow::anyhow!("{e:?}"))?;
                let expected: &[u8] = if value.len() > 1000 { b"0" } else { b"1" };
                assert_eq!(
                    matched[0].rows[0][0].as_deref(),
                    Some(expected),
                    "{format:?} parameter {value:?} of type {declared}"
                );
            }
        }
    }
    Ok(())
}

/// The same values, as text and binary parameters of a filter PostgreSQL runs: polygate
/// selects exactly the rows PostgreSQL itself selects.
#[tokio::test]
async fn text_format_parameters_select_postgresqls_rows() -> anyhow::Result<()> {
    let Some(admin_url) = polygate_tests::backends::require(
        polygate_tests::backends::Backend::Postgres,
        "text_format_parameters_select_postgresqls_rows",
    ) else {
        return Ok(());
    };
    let database = polygate_tests::backends::PgDatabase::create(&admin_url, "params").await?;
    let pg = database.client().await?;
    let values = [
        "a''",
        "a'",
        "''",
        "'",
        "\\",
        "\\'",
        "x' OR 1=1 --",
        "",
        "ünïcødé ✓ 𝄞",
    ];
    pg.batch_execute("CREATE TABLE t (id int, s text)").await?;
    for (id, value) in values.iter().enumerate() {
        pg.execute(
            "INSERT INTO t VALUES ($1, $2)",
            &[&i32::try_from(id)?, value],
        )
        .await?;
    }
    let gateway = TestGateway::with_catalog(&format!(
        "[sources.pg]\nkind = \"postgres\"\nurl = \"{}\"\n",
        database.url
    ))
    .await?;
    let mut client = WireClient::connect(gateway.port(), "polygate").await?;
    for value in values {
        let direct: Vec<i32> = pg
            .query("SELECT id FROM t WHERE s = $1 ORDER BY id", &[&value])
            .await?
            .iter()
            .map(|row| row.get(0))
            .collect();
        assert_eq!(direct.len(), 1, "{value:?}");
        for format in [WireFormat::Text, WireFormat::Binary] {
            let fetched = client
                .query(
                    "SELECT id FROM pg.t WHERE s = $1 ORDER BY id",
                    &[0],
                    &[Some(value.as_bytes())],
                    format,
                    WireFormat::Text,
                    0,
                )
                .await?
                .map_err(|e| anyhow::anyhow!("{e:?}"))?;
            let ours: Vec<i32> = fetched[0]
                .rows
                .iter()
                .map(|row| {
                    String::from_utf8_lossy(row[0].as_deref().unwrap_or_default())
                        .parse()
                        .unwrap_or(-1)
                })
                .collect();
            assert_eq!(ours, direct, "{format:?} parameter {value:?}");
        }
    }
    drop(gateway);
    database.drop_database().await?;
    Ok(())
}

/// `statement_timeout` bounds each Execute, as in PostgreSQL: a portal read a few rows at a
/// time, with pauses longer than the timeout between Executes, is not canceled for the time
/// the client spent between them.
#[tokio::test]
async fn statement_timeout_times_each_execute_of_a_portal() -> anyhow::Result<()> {
    let gateway = TestGateway::demo_with("statement_timeout_secs = 1").await?;
    let mut client = WireClient::connect(gateway.port(), "polygate").await?;
    client.pause_between_executes = std::time::Duration::from_millis(1500);
    let fetches = client
        .query(
            "SELECT value FROM generate_series(1, 6) ORDER BY value",
            &[],
            &[],
            WireFormat::Text,
            WireFormat::Text,
            2,
        )
        .await?
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let sizes: Vec<usize> = fetches.iter().map(|f| f.rows.len()).collect();
    assert_eq!(sizes, [2, 2, 2, 0]);
    Ok(())
}
