//! The `mongodb` connector against the real Mongo-wire server: every BSON type read back,
//! schemas inferred from heterogeneous documents, hostile field names and values, parallel
//! `_id` range scans, cursors closed after LIMIT, and a join with PostgreSQL.

use mongodb::bson::oid::ObjectId;
use mongodb::bson::spec::BinarySubtype;
use mongodb::bson::{Binary, Bson, DateTime, Decimal128, Document, Regex, Timestamp, doc};
use polygate_tests::backends::{self, Backend, PgDatabase};
use polygate_tests::gateway::TestGateway;
use polygate_tests::mongo::MongoDatabase;
use tokio_postgres::Client;

/// The rows of `sql` in PostgreSQL's text format.
async fn rows(client: &Client, sql: &str) -> anyhow::Result<Vec<Vec<Option<String>>>> {
    polygate_tests::text_rows(client, sql).await
}

/// The one row of `sql`, its NULLs as `NULL`.
async fn row(client: &Client, sql: &str) -> anyhow::Result<Vec<String>> {
    let mut all = rows(client, sql).await?;
    anyhow::ensure!(all.len() == 1, "{sql}: {} rows", all.len());
    Ok(all
        .remove(0)
        .into_iter()
        .map(|v| v.unwrap_or_else(|| "NULL".to_owned()))
        .collect())
}

/// The physical plan of `sql`, one string.
async fn plan(client: &Client, sql: &str) -> anyhow::Result<String> {
    Ok(rows(client, &format!("EXPLAIN {sql}"))
        .await?
        .into_iter()
        .map(|r| r.into_iter().flatten().collect::<Vec<_>>().join(" "))
        .collect::<Vec<_>>()
        .join("\n"))
}

fn oid(n: u8) -> ObjectId {
    let mut bytes = [0u8; 12];
    bytes[0] = 0x65;
    bytes[11] = n;
    ObjectId::from_bytes(bytes)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_bson_type_round_trips_through_an_inferred_schema() -> anyhow::Result<()> {
    let Some(url) = backends::require(Backend::Mongo, "mongodb_types") else {
        return Ok(());
    };
    let mongo = MongoDatabase::create(&url, "mongodb_types").await?;
    let uuid = [
        0x12, 0x3e, 0x45, 0x67, 0xe8, 0x9b, 0x12, 0xd3, 0xa4, 0x56, 0x42, 0x66, 0x14, 0x17, 0x40,
        0x00,
    ];
    let documents = vec![
        doc! {
            "_id": oid(1),
            "i32": 7_i32,
            "i64": 5_000_000_000_i64,
            "num": 1_i32,
            "dbl": 1.5,
            "dec": "12.345".parse::<Decimal128>()?,
            "s": "text",
            "b": true,
            "d": DateTime::from_millis(1_700_000_000_123),
            "ts": Timestamp { time: 1_700_000_000, increment: 7 },
            "bin": Binary { subtype: BinarySubtype::Generic, bytes: vec![1, 2, 255] },
            "uuid": Binary { subtype: BinarySubtype::Uuid, bytes: uuid.to_vec() },
            "re": Regex { pattern: "ab+c".into(), options: "i".into() },
            "js": Bson::JavaScriptCode("function () { return 1; }".into()),
            "lo": Bson::MinKey,
            "hi": Bson::MaxKey,
            "oid": oid(9),
            "addr": { "city": "Paris", "geo": { "lat": 48_i32, "deep": { "level": "three" } } },
            "tags": ["a", "b"],
            "items": [{ "sku": "x", "n": 1_i32 }, { "sku": "y", "n": 2_i64 }],
            "one_or_many": "solo",
            "mixed": 1_i32,
        },
        doc! {
            "_id": oid(2),
            "num": 2.5,
            "dec": 3_i32,
            "addr": { "city": "Berlin" },
            "tags": [],
            "items": [],
            "one_or_many": ["x", "y"],
            "mixed": "one",
            "i32": Bson::Null,
        },
        doc! { "_id": oid(3), "mixed": { "k": [1_i32] } },
    ];
    mongo
        .db()
        .collection::<Document>("types")
        .insert_many(documents)
        .await?;
    let gateway = TestGateway::with_catalog(&mongo.source("m", "")).await?;
    let client = gateway.connect().await?;

    // Inferred types, by the documented widening rules.
    let types = row(
        &client,
        "SELECT arrow_typeof(_id), arrow_typeof(i32), arrow_typeof(i64), arrow_typeof(num), \
         arrow_typeof(dec), arrow_typeof(d), arrow_typeof(ts), arrow_typeof(bin), \
         arrow_typeof(uuid), arrow_typeof(tags), arrow_typeof(one_or_many), arrow_typeof(mixed), \
         arrow_typeof(addr['geo']['deep']['level']), arrow_typeof(items) \
         FROM m.types LIMIT 1",
    )
    .await?;
    assert_eq!(
        types,
        [
            "Utf8",
            "Int32",
            "Int64",
            "Float64",
            "Decimal128(38, 3)",
            "Timestamp(ms, \"UTC\")",
            "Timestamp(s, \"UTC\")",
            "Binary",
            "Utf8",
            "List(Utf8)",
            "List(Utf8)",
            "Utf8",
            "Utf8",
            "List(Struct(\"n\": Int64, \"sku\": Utf8))",
        ]
    );

    // Every value of the first document.
    let first = row(
        &client,
        "SELECT _id, i32, i64, num, dbl, dec, s, b, CAST(d AS VARCHAR), CAST(ts AS VARCHAR), \
         encode(bin, 'hex'), uuid, re, js, lo, hi, oid, addr['city'], addr['geo']['lat'], \
         addr['geo']['deep']['level'], array_to_string(tags, ','), items[2]['sku'], \
         items[2]['n'], array_to_string(one_or_many, ','), mixed \
         FROM m.types WHERE _id = '650000000000000000000001'",
    )
    .await?;
    let expected = [
        "650000000000000000000001",
        "7",
        "5000000000",
        // A double (int32 and double widen to Float64), in the gateway's float spelling.
        "1.0",
        "1.5",
        "12.345",
        "text",
        "t",
        "2023-11-14T22:13:20.123Z",
        "2023-11-14T22:13:20Z",
        "0102ff",
        "123e4567-e89b-12d3-a456-426614174000",
        "/ab+c/i",
        "function () { return 1; }",
        "MinKey",
        "MaxKey",
        "650000000000000000000009",
        "Paris",
        "48",
        "three",
        "a,b",
        "y",
        "2",
        "solo",
        r#"{"$numberInt":"1"}"#,
    ];
    assert_eq!(first, expected);

    // Missing fields and nulls read as NULL; a scalar where others hold arrays is a list.
    let second = row(
        &client,
        "SELECT i32, i64, num, dec, addr['city'], addr['geo'], cardinality(tags), \
         cardinality(items), array_to_string(one_or_many, ','), mixed \
         FROM m.types WHERE _id = '650000000000000000000002'",
    )
    .await?;
    assert_eq!(
        second,
        [
            "NULL", "NULL", "2.5", "3.000", "Berlin", "NULL", "0", "0", "x,y", r#""one""#
        ]
    );
    let third = row(
        &client,
        "SELECT mixed, addr IS NULL, tags IS NULL FROM m.types WHERE _id = '650000000000000000000003'",
    )
    .await?;
    assert_eq!(third, [r#"{"k":[{"$numberInt":"1"}]}"#, "t", "t"]);

    // Whole documents, and lists of documents, reach clients as jsonb.
    let documents =
        "SELECT addr['geo']['deep'], items FROM m.types WHERE _id = '650000000000000000000001'";
    let described = client.prepare(documents).await?;
    let types: Vec<_> = described
        .columns()
        .iter()
        .map(|c| c.type_().clone())
        .collect();
    assert_eq!(
        types,
        [
            tokio_postgres::types::Type::JSONB,
            tokio_postgres::types::Type::JSONB
        ]
    );
    let documents = row(&client, documents).await?;
    assert_eq!(documents[0], r#"{"level":"three"}"#);
    assert!(
        documents[1].starts_with(r#"[{"n":"#) && documents[1].contains(r#""sku":"y""#),
        "{documents:?}"
    );

    // Projections of nested fields read only those fields.
    let sql = "SELECT addr['geo']['deep']['level'] AS level, addr['city'], _id FROM m.types \
               ORDER BY addr['city'] NULLS FIRST LIMIT 2";
    let explained = plan(&client, sql).await?;
    assert!(
        explained.contains(
            r#""__polygate_path_0": "$addr.geo.deep.level", "__polygate_path_1": "$addr.city""#
        ),
        "{explained}"
    );
    assert!(!explained.contains("ProjectionExec"), "{explained}");
    assert_eq!(
        rows(&client, sql).await?,
        [
            [None, None, Some("650000000000000000000003".to_owned())],
            [
                None,
                Some("Berlin".to_owned()),
                Some("650000000000000000000002".to_owned())
            ],
        ]
    );

    // Filters on nested fields are pushed as dotted paths.
    let sql = "SELECT _id FROM m.types WHERE addr['geo']['lat'] = 48";
    let explained = plan(&client, sql).await?;
    assert!(
        explained.contains(r#"{ "$match": { "addr.geo.lat": { "$eq": "?int64" } } }"#),
        "{explained}"
    );
    assert!(!explained.contains("FilterExec"), "{explained}");
    assert_eq!(rows(&client, sql).await?.len(), 1);
    drop(gateway);
    mongo.drop_database().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn declarations_in_the_catalog_win_over_inference() -> anyhow::Result<()> {
    let Some(url) = backends::require(Backend::Mongo, "mongodb_declared") else {
        return Ok(());
    };
    let mongo = MongoDatabase::create(&url, "mongodb_declared").await?;
    mongo
        .db()
        .collection::<Document>("c")
        .insert_many([
            doc! { "price": 1_i32, "payload": { "a": 1_i32 }, "city": { "name": "Oslo" } },
            doc! { "price": "12.50".parse::<Decimal128>()?, "payload": [1_i32, 2_i32] },
        ])
        .await?;
    let gateway = TestGateway::with_catalog(&mongo.source(
        "m",
        "[sources.m.collections.c.columns]\nprice = \"decimal(10,2)\"\npayload = \"json\"\n\"city.name\" = \"text\"\n",
    ))
    .await?;
    let client = gateway.connect().await?;
    let all = rows(
        &client,
        "SELECT arrow_typeof(price), price, payload, city['name'] FROM m.c ORDER BY price",
    )
    .await?;
    assert_eq!(
        all,
        [
            [
                "Decimal128(38, 2)",
                "1.00",
                r#"{"a":{"$numberInt":"1"}}"#,
                "Oslo"
            ]
            .map(|v| Some(v.to_owned()))
            .to_vec(),
            vec![
                Some("Decimal128(38, 2)".to_owned()),
                Some("12.50".to_owned()),
                Some(r#"[{"$numberInt":"1"},{"$numberInt":"2"}]"#.to_owned()),
                None
            ],
        ]
    );
    drop(gateway);
    mongo.drop_database().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_value_the_schema_did_not_foresee_is_an_error_naming_it() -> anyhow::Result<()> {
    let Some(url) = backends::require(Backend::Mongo, "mongodb_mismatch") else {
        return Ok(());
    };
    let mongo = MongoDatabase::create(&url, "mongodb_mismatch").await?;
    let collection = mongo.db().collection::<Document>("c");
    collection
        .insert_one(doc! { "_id": 1_i32, "n": 1_i32 })
        .await?;
    // Sampling sees one document only.
    let gateway = TestGateway::with_catalog(&mongo.source("m", "sample_size = 1")).await?;
    let client = gateway.connect().await?;
    assert_eq!(rows(&client, "SELECT n FROM m.c").await?.len(), 1);
    collection
        .insert_one(doc! { "_id": 2_i32, "n": "two" })
        .await?;
    let error = client
        .simple_query("SELECT n FROM m.c")
        .await
        .expect_err("a string in an int32 column");
    let message = backends::server_message(&error);
    assert!(
        message.contains(
            "document _id {\"$numberInt\":\"2\"}, field n: a string value in a column of type int32"
        ),
        "{message}"
    );
    drop(gateway);
    mongo.drop_database().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hostile_field_names_and_values_are_read_not_run() -> anyhow::Result<()> {
    let Some(url) = backends::require(Backend::Mongo, "mongodb_hostile") else {
        return Ok(());
    };
    let mongo = MongoDatabase::create(&url, "mongodb_hostile").await?;
    let values = [
        "$where",
        "$gt",
        "{\"$gt\": \"\"}",
        "'; db.dropDatabase(); '",
        "\"quoted\"",
        "a.b",
        "$$ROOT",
        "function () { return true; }",
        "Zoë 🚀",
        ".*",
        "^$",
    ];
    let mut documents = Vec::new();
    for (i, value) in values.iter().enumerate() {
        documents.push(doc! {
            "_id": i as i32,
            "v": *value,
            "dotted.name": i as i32,
            "$dollar": *value,
            "k": { "x.y": i as i32 % 2 },
        });
    }
    let collection = mongo.db().collection::<Document>("h");
    collection.insert_many(documents).await?;
    let gateway = TestGateway::with_catalog(&mongo.source("m", "")).await?;
    let client = gateway.connect().await?;
    for (i, value) in values.iter().enumerate() {
        let quoted = value.replace('\'', "''");
        for sql in [
            format!("SELECT _id FROM m.h WHERE v = '{quoted}'"),
            format!("SELECT _id FROM m.h WHERE v IN ('{quoted}', 'nothing')"),
            format!(
                "SELECT _id FROM m.h WHERE v LIKE '{}'",
                quoted.replace('%', "\\%").replace('_', "\\_")
            ),
        ] {
            assert_eq!(rows(&client, &sql).await?, [[Some(i.to_string())]], "{sql}");
        }
        let others = rows(
            &client,
            &format!("SELECT count(*) FROM m.h WHERE v <> '{quoted}'"),
        )
        .await?;
        assert_eq!(others, [[Some((values.len() - 1).to_string())]], "{value}");
    }
    // Names holding `.` are read and grouped through $getField, never as paths.
    let grouped = rows(
        &client,
        "SELECT \"dotted.name\" % 3 AS r, count(*) FROM m.h GROUP BY r ORDER BY r",
    )
    .await?;
    assert_eq!(grouped.len(), 3);
    let sum = row(
        &client,
        "SELECT sum(\"dotted.name\"), count(DISTINCT \"dotted.name\") FROM m.h",
    )
    .await?;
    assert_eq!(sum, ["55", "11"]);
    let dollar = rows(
        &client,
        "SELECT \"$dollar\" FROM m.h WHERE \"$dollar\" = '$where'",
    )
    .await?;
    assert_eq!(dollar, [[Some("$where".to_owned())]]);
    let grouped = rows(
        &client,
        "SELECT \"$dollar\", count(*) FROM m.h GROUP BY \"$dollar\" HAVING \"$dollar\" LIKE '$%' ORDER BY 1",
    )
    .await?;
    assert_eq!(
        grouped,
        [["$$ROOT", "1"], ["$gt", "1"], ["$where", "1"]]
            .map(|r| r.map(|v| Some(v.to_owned())).to_vec())
    );
    let nested = row(&client, "SELECT count(*) FROM m.h WHERE k['x.y'] = 1").await?;
    assert_eq!(nested, ["5"]);
    // The collection is intact.
    assert_eq!(
        collection.count_documents(doc! {}).await?,
        values.len() as u64
    );
    drop(gateway);
    mongo.drop_database().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_collections_are_read_in_parallel_id_ranges_missing_nothing() -> anyhow::Result<()> {
    let Some(url) = backends::require(Backend::Mongo, "mongodb_parallel") else {
        return Ok(());
    };
    let mongo = MongoDatabase::create(&url, "mongodb_parallel").await?;
    let collection = mongo.db().collection::<Document>("big");
    let mut documents: Vec<Document> = (0..2000).map(|n| doc! { "n": n }).collect();
    // `_id`s that are not ObjectIds, which no range of ObjectIds holds.
    documents.extend((0..5).map(|n| doc! { "_id": format!("text {n}"), "n": 10_000 + n }));
    documents.push(doc! { "_id": 42_i64, "n": 20_000 });
    collection.insert_many(documents).await?;
    let gateway =
        TestGateway::with_catalog(&mongo.source("m", "partition_documents = 500")).await?;
    let client = gateway.connect().await?;
    client
        .simple_query("SET datafusion.execution.target_partitions = 4")
        .await?;
    let sql = "SELECT n FROM m.big";
    let explained = plan(&client, sql).await?;
    assert!(
        explained.contains("partitions=4 (_id ranges)"),
        "{explained}"
    );
    let mut seen: Vec<i64> = rows(&client, sql)
        .await?
        .into_iter()
        .map(|r| r[0].as_deref().unwrap_or("-1").parse().unwrap_or(-1))
        .collect();
    seen.sort_unstable();
    let mut expected: Vec<i64> = (0..2000).collect();
    expected.extend(10_000..10_005);
    expected.push(20_000);
    assert_eq!(seen, expected);
    // estimatedDocumentCount, an inexact statistic for join ordering.
    client
        .simple_query("SET datafusion.explain.show_statistics = true")
        .await?;
    let explained = plan(&client, sql).await?;
    assert!(explained.contains("Rows=Inexact(2006)"), "{explained}");
    drop(gateway);
    mongo.drop_database().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn limited_queries_leave_no_cursor_open() -> anyhow::Result<()> {
    let Some(url) = backends::require(Backend::Mongo, "mongodb_cursors") else {
        return Ok(());
    };
    let mongo = MongoDatabase::create(&url, "mongodb_cursors").await?;
    let collection = mongo.db().collection::<Document>("c");
    collection
        .insert_many((0..3000).map(|n| doc! { "n": n, "pad": "x".repeat(100) }))
        .await?;
    let gateway = TestGateway::with_catalog(&mongo.source("m", "batch_size = 100")).await?;
    let client = gateway.connect().await?;
    let open = || async {
        let status = mongo
            .client
            .database("admin")
            .run_command(doc! { "serverStatus": 1 })
            .await?;
        let open = status
            .get_document("metrics")
            .and_then(|m| m.get_document("cursor"))
            .and_then(|c| c.get_document("open"))
            .map(|o| o.get("total").cloned());
        anyhow::Ok(match open {
            Ok(Some(Bson::Int64(n))) => n,
            Ok(Some(Bson::Int32(n))) => i64::from(n),
            other => anyhow::bail!("serverStatus has no metrics.cursor.open.total: {other:?}"),
        })
    };
    let before = open().await?;
    for i in 0..200 {
        // A filter DataFusion keeps (on a double) stops the scan after one row: the cursor
        // is dropped with batches left on the server.
        let got = rows(
            &client,
            &format!(
                "SELECT n FROM m.c WHERE CAST(n AS DOUBLE) >= {} LIMIT 1",
                i % 7
            ),
        )
        .await?;
        assert_eq!(got.len(), 1);
    }
    // Kills are sent in the background as cursors drop: give them a moment.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        let now = open().await?;
        if now <= before {
            break;
        }
        anyhow::ensure!(
            std::time::Instant::now() < deadline,
            "{} cursors left open",
            now - before
        );
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    drop(gateway);
    mongo.drop_database().await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_collection_joins_a_postgresql_table_with_both_filters_pushed() -> anyhow::Result<()> {
    let Some(pg_admin) = backends::require(Backend::Postgres, "mongodb_join") else {
        return Ok(());
    };
    let Some(url) = backends::require(Backend::Mongo, "mongodb_join") else {
        return Ok(());
    };
    let pg = PgDatabase::create(&pg_admin, "mongodb_join").await?;
    pg.client()
        .await?
        .batch_execute(
            "CREATE TABLE customers (id int8 PRIMARY KEY, name text, country text);
             INSERT INTO customers SELECT i, 'customer ' || i, (ARRAY['NL','GB','US'])[1 + i % 3]
             FROM generate_series(1, 30) AS i;",
        )
        .await?;
    let mongo = MongoDatabase::create(&url, "mongodb_join").await?;
    mongo
        .db()
        .collection::<Document>("orders")
        .insert_many((1..=120).map(|i: i64| {
            doc! {
                "customer_id": i % 35,
                "status": if i % 4 == 0 { "shipped" } else { "pending" },
                "total": i * 10,
            }
        }))
        .await?;
    let catalog = format!(
        "{}\n[sources.pg]\nkind = \"postgres\"\nurl = \"{}\"\n",
        mongo.source("m", ""),
        pg.url
    );
    let gateway = TestGateway::with_catalog(&catalog).await?;
    let client = gateway.connect().await?;
    let sql = "SELECT c.name, sum(o.total) AS total FROM m.orders o \
               JOIN pg.customers c ON c.id = o.customer_id \
               WHERE o.status = 'shipped' AND c.country = 'NL' \
               GROUP BY c.name ORDER BY c.name";
    let explained = plan(&client, sql).await?;
    assert!(
        explained.contains(r#"{ "$match": { "status": { "$eq": "?string" } } }"#),
        "{explained}"
    );
    assert!(
        explained.contains(r#"WHERE ("country" = $1::text)"#),
        "{explained}"
    );
    assert!(!explained.contains("FilterExec"), "{explained}");
    let got = rows(&client, sql).await?;
    // The same join computed here.
    let mut expected = std::collections::BTreeMap::<String, i64>::new();
    for i in 1..=120_i64 {
        let customer = i % 35;
        if i % 4 == 0 && (1..=30).contains(&customer) && (1 + customer % 3) == 1 {
            *expected.entry(format!("customer {customer}")).or_default() += i * 10;
        }
    }
    let expected: Vec<Vec<Option<String>>> = expected
        .into_iter()
        .map(|(name, total)| vec![Some(name), Some(total.to_string())])
        .collect();
    assert!(!expected.is_empty());
    assert_eq!(got, expected);
    drop(gateway);
    pg.drop_database().await?;
    mongo.drop_database().await
}
