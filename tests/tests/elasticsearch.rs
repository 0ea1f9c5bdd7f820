//! The `elasticsearch` connector against the OpenSearch-compatible test server: every mapped
//! type read back, filters pushed with the same rows as without, hostile values, scans past
//! 10,000 hits by point in time and by scroll, and no search context left open after LIMIT.

use polygate_tests::backends::{self, Backend};
use polygate_tests::gateway::TestGateway;
use polygate_tests::search::SearchIndices;
use serde_json::{Value, json};
use tokio_postgres::Client;

/// The rows of `sql` in PostgreSQL's text format, NULL as `NULL`.
async fn rows(client: &Client, sql: &str) -> anyhow::Result<Vec<Vec<String>>> {
    Ok(polygate_tests::text_rows(client, sql)
        .await?
        .into_iter()
        .map(|row| {
            row.into_iter()
                .map(|v| v.unwrap_or_else(|| "NULL".to_owned()))
                .collect()
        })
        .collect())
}

/// The physical plan of `sql`, one string.
async fn plan(client: &Client, sql: &str) -> anyhow::Result<String> {
    Ok(rows(client, &format!("EXPLAIN {sql}"))
        .await?
        .into_iter()
        .map(|r| r.join(" "))
        .collect::<Vec<_>>()
        .join("\n"))
}

fn documents(values: Vec<Value>) -> Vec<(String, Value)> {
    values
        .into_iter()
        .enumerate()
        .map(|(i, v)| ((i + 1).to_string(), v))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_mapped_type_round_trips() -> anyhow::Result<()> {
    let Some(url) = backends::require(Backend::Search, "es_types") else {
        return Ok(());
    };
    let mut search = SearchIndices::create(&url, "es_types");
    search
        .create_index(
            "all",
            json!({ "properties": {
                "title": {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 256}}},
                "k": {"type": "keyword"},
                "l": {"type": "long"}, "i": {"type": "integer"}, "s": {"type": "short"},
                "b": {"type": "byte"}, "u": {"type": "unsigned_long"},
                "d": {"type": "double"}, "f": {"type": "float"},
                "sf": {"type": "scaled_float", "scaling_factor": 100},
                "ok": {"type": "boolean"},
                "day": {"type": "date", "format": "dd/MM/yyyy HH:mm||epoch_millis"},
                "at": {"type": "date"},
                "ns": {"type": "date_nanos"},
                "ip": {"type": "ip"},
                "o": {"properties": {"a": {"type": "keyword"},
                       "deep": {"properties": {"z": {"type": "long"}}}}},
                "ne": {"type": "nested", "properties": {"x": {"type": "integer"}}},
                "g": {"type": "geo_point"},
                "tags": {"type": "keyword"},
                "shape": {"type": "geo_shape"},
            }}),
        )
        .await?;
    search
        .bulk(
            "all",
            &documents(vec![
                json!({
                    "title": "Red shoes", "k": "a", "l": 5_000_000_000i64, "i": 7, "s": 300,
                    "b": -3, "u": 18_000_000_000_000_000_000u64, "d": 1.5, "f": 0.25, "sf": 1.23,
                    "ok": true, "day": "02/01/2024 03:04", "at": "2024-01-02T03:04:05.678Z",
                    "ns": "2024-01-02T03:04:05.123456789Z", "ip": "10.0.0.1",
                    "o": {"a": "x", "deep": {"z": 9}}, "ne": [{"x": 1}, {"x": 2}],
                    "g": {"lat": 1.5, "lon": 2.5}, "tags": ["p", "q"],
                    "shape": {"type": "point", "coordinates": [1.0, 2.0]},
                }),
                json!({
                    "title": "Blue shoes", "k": "b", "l": "42", "day": 1_700_000_000_000i64,
                    "o.a": "y", "g": "3.5,4.5", "tags": "solo", "ok": "false",
                }),
                json!({ "k": "c" }),
            ]),
        )
        .await?;
    let index = search.name("all");
    let gateway = TestGateway::with_catalog(&search.source("es", "")).await?;
    let client = gateway.connect().await?;

    let got = rows(
        &client,
        &format!(
            "SELECT _id, _index, title, k, l, i, s, b, u, d, f, sf, ok, day, at, ns, ip, \
             o['a'], o['deep']['z'], ne, g['lat'], g['lon'], tags, shape, arrow_cast(ns, 'Int64') \
             FROM es.\"{index}\" ORDER BY _id"
        ),
    )
    .await?;
    let expected = vec![
        vec![
            "1",
            &index,
            "Red shoes",
            "a",
            "5000000000",
            "7",
            "300",
            "-3",
            "18000000000000000000",
            "1.5",
            "0.25",
            "1.23",
            "t",
            "2024-01-02 03:04:00.000000+00",
            "2024-01-02 03:04:05.678000+00",
            // The wire's timestamptz holds microseconds; the column holds nanoseconds.
            "2024-01-02 03:04:05.123456+00",
            "10.0.0.1",
            "x",
            "9",
            // Nested documents reach clients as jsonb, field names kept.
            r#"[{"x":1},{"x":2}]"#,
            "1.5",
            "2.5",
            "{p,q}",
            r#"{"coordinates":[1.0,2.0],"type":"point"}"#,
            "1704164645123456789",
        ],
        vec![
            "2",
            &index,
            "Blue shoes",
            "b",
            "42",
            "NULL",
            "NULL",
            "NULL",
            "NULL",
            "NULL",
            "NULL",
            "NULL",
            "f",
            "2023-11-14 22:13:20.000000+00",
            "NULL",
            "NULL",
            "NULL",
            "y",
            "NULL",
            "NULL",
            "3.5",
            "4.5",
            "{solo}",
            "NULL",
            "NULL",
        ],
        vec![
            "3", &index, "NULL", "c", "NULL", "NULL", "NULL", "NULL", "NULL", "NULL", "NULL",
            "NULL", "NULL", "NULL", "NULL", "NULL", "NULL", "NULL", "NULL", "NULL", "NULL", "NULL",
            "NULL", "NULL", "NULL",
        ],
    ];
    let expected: Vec<Vec<String>> = expected
        .into_iter()
        .map(|r| r.into_iter().map(str::to_owned).collect())
        .collect();
    assert_eq!(got, expected);

    // Column types: the mapping's, lists where the sample saw arrays, JSON for geo_shape.
    let types = rows(
        &client,
        &format!(
            "SELECT arrow_typeof(l), arrow_typeof(u), arrow_typeof(sf), arrow_typeof(tags), \
             arrow_typeof(ns), arrow_typeof(ne), arrow_typeof(shape) FROM es.\"{index}\" LIMIT 1"
        ),
    )
    .await?;
    assert_eq!(
        types[0],
        vec![
            "Int64",
            "UInt64",
            "Float64",
            "List(Utf8)",
            "Timestamp(ns, \"UTC\")",
            "List(Struct(\"x\": Int32))",
            "Utf8"
        ]
    );
    search.delete().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scans_past_ten_thousand_hits_read_every_document_and_close_their_contexts()
-> anyhow::Result<()> {
    let Some(url) = backends::require(Backend::Search, "es_scans") else {
        return Ok(());
    };
    let mut search = SearchIndices::create(&url, "es_scans");
    search
        .create_index(
            "big",
            json!({ "properties": { "n": {"type": "long"}, "k": {"type": "keyword"},
                                    "f": {"type": "double"} } }),
        )
        .await?;
    const DOCUMENTS: i64 = 12_500;
    let all: Vec<(String, Value)> = (0..DOCUMENTS)
        .map(|n| {
            (
                format!("d{n}"),
                json!({ "n": n, "k": format!("k{}", n % 10), "f": (n % 3) as f64 }),
            )
        })
        .collect();
    search.bulk("big", &all).await?;
    let index = search.name("big");
    let expected = vec![vec![
        DOCUMENTS.to_string(),
        (DOCUMENTS * (DOCUMENTS - 1) / 2).to_string(),
        DOCUMENTS.to_string(),
    ]];
    let whole = format!("SELECT count(*), sum(n), count(DISTINCT _id) FROM s.\"{index}\"");
    // Point in time with search_after, scroll, and both sliced into parallel partitions.
    for (extra, slices) in [
        ("paging = \"point_in_time\"\npage_size = 3000", false),
        ("paging = \"scroll\"\npage_size = 3000", false),
        (
            "paging = \"point_in_time\"\npartition_documents = 4000",
            true,
        ),
        ("paging = \"scroll\"\npartition_documents = 4000", true),
    ] {
        let gateway = TestGateway::with_catalog(&search.source("s", extra)).await?;
        let client = gateway.connect().await?;
        assert_eq!(rows(&client, &whole).await?, expected, "{extra}");
        let explained = plan(&client, &whole).await?;
        assert_eq!(
            explained.contains("slices=2"),
            slices,
            "{extra}: {explained}"
        );
    }

    // A LIMIT over a filter the cluster cannot answer (doubles) stops a paged scan early:
    // its point in time is closed as the scan is dropped.
    let gateway = TestGateway::with_catalog(
        &search.source("s", "paging = \"point_in_time\"\npage_size = 100"),
    )
    .await?;
    let client = gateway.connect().await?;
    // On one partition the scan feeds the LIMIT directly. (Above a round-robin
    // repartition, DataFusion keeps reading the scan into its buffers after the LIMIT is
    // met, so the scan ends by itself rather than by being dropped.)
    client
        .simple_query("SET datafusion.execution.target_partitions = 1")
        .await?;
    let before = search.open_points_in_time().await?;
    let limited = format!("SELECT n FROM s.\"{index}\" WHERE f = 2 LIMIT 1");
    assert!(plan(&client, &limited).await?.contains("FilterExec"));
    for _ in 0..200 {
        assert_eq!(rows(&client, &limited).await?.len(), 1);
    }
    // Closes are sent in the background as scans drop: give them a moment.
    let mut open = usize::MAX;
    for _ in 0..50 {
        open = search.open_points_in_time().await?;
        if open <= before {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    assert!(
        open <= before,
        "{open} points in time left open (had {before})"
    );
    search.delete().await?;
    Ok(())
}

/// A gateway serving `search`'s indices as source `on`, and as source `off` with
/// `pushdown = false`, and a client of it.
async fn on_and_off(search: &SearchIndices) -> anyhow::Result<(TestGateway, Client)> {
    let catalog = format!(
        "{}\n{}",
        search.source("on", ""),
        search.source("off", "pushdown = false")
    );
    let gateway = TestGateway::with_catalog(&catalog).await?;
    let client = gateway.connect().await?;
    Ok((gateway, client))
}

/// Runs `query("on")` and `query("off")` (the same index with `pushdown = false`), checks that
/// they select the same rows and that the filter `predicate` was pushed, and returns the rows
/// and the pushed plan.
async fn pushed_equals_local(
    client: &Client,
    predicate: &str,
    query: impl Fn(&str) -> String,
) -> anyhow::Result<(Vec<Vec<String>>, String)> {
    let pushed = rows(client, &query("on")).await?;
    let local = rows(client, &query("off")).await?;
    assert_eq!(pushed, local, "{predicate}");
    let explained = plan(client, &query("on")).await?;
    assert!(
        !explained.contains("FilterExec"),
        "{predicate} was not pushed: {explained}"
    );
    Ok((pushed, explained))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn pushed_filters_select_the_rows_sql_does() -> anyhow::Result<()> {
    let Some(url) = backends::require(Backend::Search, "es_filters") else {
        return Ok(());
    };
    let mut search = SearchIndices::create(&url, "es_filters");
    search
        .create_index(
            "t",
            json!({ "properties": {
                "k": {"type": "keyword"},
                "title": {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 20}}},
                "n": {"type": "integer"},
                "ok": {"type": "boolean"},
                "at": {"type": "date"},
                "o": {"properties": {"a": {"type": "keyword"}}},
            }}),
        )
        .await?;
    // Every value of k is a hostile string: query_string syntax, quotes, backslashes,
    // wildcards. Some documents lack fields, some hold explicit nulls.
    let hostile = [
        r#"+a -b = && || > < ! ( ) { } [ ] ^ " ~ * ? : \ /"#,
        "*",
        "?",
        r"\",
        r#"a"b"#,
        "it's",
        "title:x OR *:*",
        "ab*",
        "Ünïcødé",
        "",
    ];
    let mut values = Vec::new();
    for i in 0..40usize {
        let mut document = serde_json::Map::new();
        if i % 7 != 3 {
            document.insert("k".into(), Value::from(hostile[i % hostile.len()]));
        } else if i % 2 == 0 {
            document.insert("k".into(), Value::Null);
        }
        if i % 5 != 0 {
            document.insert("n".into(), Value::from((i % 9) as i64 - 2));
        }
        if i % 4 != 1 {
            document.insert("ok".into(), Value::from(i % 3 == 0));
        }
        let title = if i % 6 == 0 {
            "a title much longer than twenty characters".to_owned()
        } else {
            format!("Title {}", i % 4)
        };
        document.insert("title".into(), Value::from(title));
        document.insert(
            "at".into(),
            Value::from(format!("2024-01-{:02}T00:00:00Z", 1 + i % 28)),
        );
        if i % 3 != 2 {
            document.insert("o".into(), json!({ "a": format!("x{}", i % 3) }));
        }
        values.push(Value::Object(document));
    }
    search.bulk("t", &documents(values)).await?;
    let index = search.name("t");
    let (_gateway, client) = on_and_off(&search).await?;
    let predicates = [
        format!("k = '{}'", hostile[0].replace('\'', "''")),
        "k = '*'".to_owned(),
        "k = '?'".to_owned(),
        r"k = '\'".to_owned(),
        "k = ''".to_owned(),
        "k <> '*'".to_owned(),
        "NOT (k = 'it''s')".to_owned(),
        "k IN ('*', 'ab*', 'a\"b')".to_owned(),
        "k NOT IN ('*', 'ab*')".to_owned(),
        "k LIKE 'ab%'".to_owned(),
        "k LIKE '%*%'".to_owned(),
        r"k LIKE '%\\%'".to_owned(),
        "k LIKE '_'".to_owned(),
        "k NOT LIKE '%b%'".to_owned(),
        "k IS NULL".to_owned(),
        "k IS NOT NULL".to_owned(),
        "k > 'a' AND k <= 'it''s'".to_owned(),
        "n = 3".to_owned(),
        "n <> 3".to_owned(),
        "n NOT IN (0, 1)".to_owned(),
        "n BETWEEN -1 AND 2".to_owned(),
        "NOT (n BETWEEN -1 AND 2)".to_owned(),
        "n < 0 OR ok".to_owned(),
        "NOT ok".to_owned(),
        "ok IS NULL".to_owned(),
        "title = 'Title 1'".to_owned(),
        "title <> 'Title 1'".to_owned(),
        "title IN ('Title 2', 'Title 3')".to_owned(),
        "at >= TIMESTAMP '2024-01-10 00:00:00' AND at < TIMESTAMP '2024-01-20 00:00:00'".to_owned(),
        "o['a'] = 'x1'".to_owned(),
        "o['a'] <> 'x1'".to_owned(),
        "NOT (k = '*' OR n > 2)".to_owned(),
    ];
    for predicate in &predicates {
        let query = |source: &str| {
            format!("SELECT _id FROM {source}.\"{index}\" WHERE {predicate} ORDER BY _id")
        };
        let (selected, _) = pushed_equals_local(&client, predicate, query).await?;
        assert!(
            !selected.is_empty(),
            "{predicate} selects no rows: a weak case"
        );
    }
    // Long titles are not in title.keyword (ignore_above 20), yet `<>` is exact: `exists`
    // asks the text field, and a long title never equals a short literal.
    let count = |source: &str| {
        format!("SELECT count(*) FROM {source}.\"{index}\" WHERE title <> 'Title 1'")
    };
    assert!(!plan(&client, &count("on")).await?.contains("FilterExec"));
    assert_eq!(
        rows(&client, &count("on")).await?,
        rows(&client, &count("off")).await?
    );
    assert_eq!(
        rows(&client, &count("on")).await?,
        vec![vec!["30".to_owned()]]
    );
    // `=` with a literal longer than ignore_above is left to DataFusion.
    let longer = format!(
        "SELECT count(*) FROM on.\"{index}\" WHERE title = 'a title much longer than twenty characters'"
    );
    assert!(plan(&client, &longer).await?.contains("FilterExec"));
    assert_eq!(rows(&client, &longer).await?, vec![vec!["7".to_owned()]]);
    // The rows an analysed match would wrongly add are not there: `=` on text is exact.
    let exact = rows(
        &client,
        &format!("SELECT count(*) FROM on.\"{index}\" WHERE title = 'Title'"),
    )
    .await?;
    assert_eq!(exact, vec![vec!["0".to_owned()]]);
    search.delete().await?;
    Ok(())
}

/// Ranges with an empty-string bound: servers differ on `""` as a bound (the test server reads
/// `lt: ""` as no bound; Elasticsearch before 7.11 matched nothing with `gt: ""`), so none is
/// sent, and the rows are SQL's: nothing is `< ''`, every value is `>= ''`, and a missing or
/// null field is in neither a predicate's rows nor its negation's.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn empty_string_bounds_select_the_rows_sql_does() -> anyhow::Result<()> {
    let Some(url) = backends::require(Backend::Search, "es_empty_bounds") else {
        return Ok(());
    };
    let mut search = SearchIndices::create(&url, "es_empty_bounds");
    search
        .create_index(
            "t",
            json!({ "properties": {
                "s": {"type": "keyword"},
                "body": {"type": "text", "fields": {"raw": {"type": "keyword"}}},
                "o": {"properties": {"a": {"type": "keyword"}}},
            }}),
        )
        .await?;
    // Two empty strings, values on both sides of 'Zz' in byte order, then a document without
    // the fields and one with explicit nulls.
    let values = ["", "a", "A", "Zz", "Zz!", "zz", " ", "é", "Z", "", "0"];
    let mut sources: Vec<Value> = values
        .iter()
        .map(|v| json!({ "s": v, "body": v, "o": { "a": v } }))
        .collect();
    sources.push(json!({}));
    sources.push(json!({ "s": null, "body": null, "o": { "a": null } }));
    search.bulk("t", &documents(sources)).await?;
    let index = search.name("t");
    let (_gateway, client) = on_and_off(&search).await?;
    // (predicate on `{c}`, how many of the 13 documents SQL selects)
    let cases = [
        ("{c} < ''", 0),
        ("{c} <= ''", 2),
        ("{c} > ''", 9),
        ("{c} >= ''", 11),
        ("'' > {c}", 0),
        ("NOT ({c} < '')", 11),
        ("NOT ({c} <= '')", 9),
        ("{c} BETWEEN '' AND 'Zz'", 7),
        ("{c} NOT BETWEEN '' AND 'Zz'", 4),
        ("NOT ({c} BETWEEN '' AND 'Zz')", 4),
        ("{c} BETWEEN '' AND ''", 2),
        ("{c} NOT BETWEEN '' AND ''", 9),
        ("{c} BETWEEN 'a' AND ''", 0),
        ("{c} NOT BETWEEN 'a' AND ''", 11),
        ("{c} < '' OR {c} > 'Zz'", 4),
    ];
    for column in ["s", "body", "o['a']"] {
        for (case, count) in cases {
            let predicate = case.replace("{c}", column);
            let query = |source: &str| {
                format!("SELECT _id FROM {source}.\"{index}\" WHERE {predicate} ORDER BY _id")
            };
            let (selected, explained) = pushed_equals_local(&client, &predicate, query).await?;
            assert_eq!(selected.len(), count, "{predicate}");
            for bound in ["lt", "lte", "gt", "gte"] {
                assert!(
                    !explained.contains(&format!(r#""{bound}":"""#)),
                    "{predicate} sent an empty bound: {explained}"
                );
            }
        }
    }
    search.delete().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn full_text_search_joins_other_stores_in_relevance_order() -> anyhow::Result<()> {
    let (Some(es_url), Some(pg_url), Some(mongo_url)) = (
        backends::require(Backend::Search, "es_match"),
        backends::require(Backend::Postgres, "es_match"),
        backends::require(Backend::Mongo, "es_match"),
    ) else {
        return Ok(());
    };
    let mut search = SearchIndices::create(&es_url, "es_match");
    search
        .create_index(
            "products",
            json!({ "properties": {
                "sku": {"type": "keyword"},
                "description": {"type": "text", "fields": {"keyword": {"type": "keyword"}}},
            }}),
        )
        .await?;
    let descriptions = [
        ("p1", Some("Red shoes for running, red and fast")),
        ("p2", Some("Blue shoes")),
        ("p3", Some("Red hat")),
        ("p4", Some("Green socks")),
        ("p5", Some("red shoes red shoes red shoes")),
        ("p6", Some("Shoes, shoes, shoes")),
        ("p7", None),
        ("p8", Some("A red-shoes bundle")),
    ];
    let products: Vec<(String, Value)> = descriptions
        .iter()
        .map(|(sku, description)| {
            let mut document = json!({ "sku": sku });
            if let Some(text) = description {
                document["description"] = Value::from(*text);
            }
            ((*sku).to_owned(), document)
        })
        .collect();
    search.bulk("products", &products).await?;
    let index = search.name("products");

    // Stock in PostgreSQL for every product but p6; reviews in MongoDB for every one but p3.
    let pg = backends::PgDatabase::create(&pg_url, "es_match").await?;
    pg.client()
        .await?
        .batch_execute(
            "CREATE TABLE stock (sku text PRIMARY KEY, qty int);
             INSERT INTO stock SELECT 'p' || i, i * 10 FROM generate_series(1, 8) i WHERE i <> 6;",
        )
        .await?;
    let mongo = polygate_tests::mongo::MongoDatabase::create(&mongo_url, "es_match").await?;
    let reviews: Vec<mongodb::bson::Document> = (1..=8)
        .filter(|i| *i != 3)
        .map(|i| mongodb::bson::doc! { "sku": format!("p{i}"), "stars": i % 5 + 1 })
        .collect();
    mongo
        .db()
        .collection::<mongodb::bson::Document>("reviews")
        .insert_many(reviews)
        .await?;

    let catalog = format!(
        "{}\n{}\n{}\n[sources.pg]\nkind = \"postgres\"\nurl = \"{}\"\n",
        search.source("es", ""),
        search.source("es_local", "pushdown = false"),
        mongo.source("mongo", ""),
        pg.url
    );
    let gateway = TestGateway::with_catalog(&catalog).await?;
    let client = gateway.connect().await?;

    // The reference: the cluster's own scores for the same query.
    let answer = search
        .request(
            reqwest::Method::POST,
            &format!("/{index}/_search"),
            Some(
                json!({ "query": { "match": { "description": "red shoes" } }, "size": 100 })
                    .to_string(),
            ),
        )
        .await?;
    let mut expected: Vec<(String, f32)> = answer["hits"]["hits"]
        .as_array()
        .unwrap()
        .iter()
        .map(|hit| {
            (
                hit["_id"].as_str().unwrap().to_owned(),
                hit["_score"].as_f64().unwrap() as f32,
            )
        })
        .filter(|(sku, _)| sku != "p6" && sku != "p3")
        .collect();
    expected.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(&b.0)));
    let skus: Vec<&str> = expected.iter().map(|(s, _)| s.as_str()).collect();
    assert_eq!(
        {
            let mut sorted = skus.clone();
            sorted.sort_unstable();
            sorted
        },
        ["p1", "p2", "p5", "p8"]
    );
    assert_eq!(skus[0], "p5", "the most relevant product first");

    let join = format!(
        "SELECT p.sku, s.qty, r.stars, p._score
           FROM es.\"{index}\" p
           JOIN pg.stock s ON s.sku = p.sku
           JOIN mongo.reviews r ON r.sku = p.sku
          WHERE match(p.description, 'red shoes')
          ORDER BY p._score DESC, p.sku"
    );
    let got = rows(&client, &join).await?;
    let got_skus: Vec<&str> = got.iter().map(|r| r[0].as_str()).collect();
    assert_eq!(got_skus, skus);
    for (row, (sku, score)) in got.iter().zip(&expected) {
        let i: i64 = sku[1..].parse()?;
        assert_eq!(row[1], (i * 10).to_string(), "{sku}'s stock");
        assert_eq!(row[2], (i % 5 + 1).to_string(), "{sku}'s stars");
        assert_eq!(row[3].parse::<f32>()?, *score, "{sku}'s score");
    }
    let explained = plan(&client, &join).await?;
    assert!(
        explained.contains(r#""must":[{"match":{"description":{"query":"red shoes"}}}]"#)
            || explained.contains(r#""query":{"bool":{"must":[{"match""#),
        "match is not in the search: {explained}"
    );
    let physical = explained.split("physical_plan").nth(1).unwrap_or_default();
    assert!(
        !physical
            .lines()
            .any(|line| line.contains("FilterExec") && line.contains("match")),
        "match was evaluated by polygate: {explained}"
    );

    // The same words found by polygate's own evaluation, on a source that pushes nothing.
    for (function, expected) in [
        ("match", vec!["p1", "p2", "p3", "p5", "p6", "p8"]),
        ("match_phrase", vec!["p1", "p5", "p8"]),
    ] {
        for source in ["es", "es_local"] {
            let sql = format!(
                "SELECT sku FROM {source}.\"{index}\" WHERE {function}(description, 'Red SHOES') \
                 ORDER BY sku"
            );
            let got: Vec<String> = rows(&client, &sql)
                .await?
                .into_iter()
                .map(|r| r[0].clone())
                .collect();
            assert_eq!(got, expected, "{sql}");
        }
    }
    // NOT match keeps SQL's NULL: p7 has no description and is in neither answer.
    let not_matching = format!(
        "SELECT sku FROM es.\"{index}\" WHERE NOT match(description, 'shoes') ORDER BY sku"
    );
    assert_eq!(
        rows(&client, &not_matching).await?,
        vec![vec!["p3".to_owned()], vec!["p4".to_owned()]]
    );
    // Without a full-text query there is no relevance.
    let unscored = format!("SELECT DISTINCT _score FROM es.\"{index}\"");
    assert_eq!(
        rows(&client, &unscored).await?,
        vec![vec!["NULL".to_owned()]]
    );
    // Hostile words are words: no query syntax reaches the cluster.
    let hostile = format!(
        "SELECT count(*) FROM es.\"{index}\" WHERE match(description, 'shoes OR *:* \"\\\\ AND -red')"
    );
    let local = hostile.replace("es.", "es_local.");
    assert_eq!(rows(&client, &hostile).await?, rows(&client, &local).await?);

    search.delete().await?;
    pg.drop_database().await?;
    mongo.drop_database().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn order_by_limit_is_sorted_by_the_index() -> anyhow::Result<()> {
    let Some(url) = backends::require(Backend::Search, "es_sort") else {
        return Ok(());
    };
    let mut search = SearchIndices::create(&url, "es_sort");
    search
        .create_index(
            "t",
            json!({ "properties": {
                "k": {"type": "keyword"},
                "n": {"type": "integer"},
                "at": {"type": "date"},
                "title": {"type": "text", "fields": {"keyword": {"type": "keyword"}}},
                "f": {"type": "double"},
            }}),
        )
        .await?;
    let mut values = Vec::new();
    for i in 0..60usize {
        let mut document = serde_json::Map::new();
        match i % 9 {
            0 => {}
            1 => {
                document.insert("k".into(), Value::Null);
            }
            _ => {
                document.insert("k".into(), Value::from(format!("k{:02}", (i * 7) % 23)));
            }
        }
        if i % 8 != 5 {
            document.insert("n".into(), Value::from((i * 13 % 41) as i64 - 20));
        }
        if i % 6 != 2 {
            document.insert(
                "at".into(),
                Value::from(format!("2024-03-{:02}T10:00:00Z", 1 + (i * 5) % 28)),
            );
        }
        document.insert(
            "title".into(),
            Value::from(format!("Title {}", (i * 11) % 17)),
        );
        document.insert("f".into(), Value::from(i as f64 / 4.0));
        values.push(Value::Object(document));
    }
    search.bulk("t", &documents(values)).await?;
    let index = search.name("t");
    let catalog = format!(
        "{}\n{}\n{}",
        search.source("on", "page_size = 7"),
        search.source("scrolled", "page_size = 7\npaging = \"scroll\""),
        search.source("off", "pushdown = false"),
    );
    let gateway = TestGateway::with_catalog(&catalog).await?;
    let client = gateway.connect().await?;
    let queries = [
        "SELECT k, n FROM {t} ORDER BY k, n LIMIT 25",
        "SELECT k, n FROM {t} ORDER BY k DESC, n LIMIT 25",
        "SELECT k, n FROM {t} ORDER BY k NULLS FIRST, n DESC NULLS LAST LIMIT 20",
        "SELECT n FROM {t} ORDER BY n NULLS FIRST LIMIT 30",
        "SELECT at, n FROM {t} ORDER BY at DESC NULLS LAST, n LIMIT 12",
        "SELECT title, n FROM {t} ORDER BY title, n DESC LIMIT 20",
        "SELECT k FROM {t} WHERE n > 3 ORDER BY k LIMIT 10",
    ];
    for query in queries {
        let sql = |source: &str| query.replace("{t}", &format!("{source}.\"{index}\""));
        let local = rows(&client, &sql("off")).await?;
        assert!(local.len() >= 10, "{query}: a weak case");
        for source in ["on", "scrolled"] {
            assert_eq!(
                rows(&client, &sql(source)).await?,
                local,
                "{source}: {query}"
            );
            let explained = plan(&client, &sql(source)).await?;
            assert!(
                !explained.contains("SortExec") && explained.contains(r#""sort":[{"#),
                "{source}: {query} was not sorted by the index: {explained}"
            );
        }
    }
    let paging = |source: &str, limit: usize| {
        format!("SELECT k FROM {source}.\"{index}\" ORDER BY k LIMIT {limit}")
    };
    assert!(
        plan(&client, &paging("on", 20))
            .await?
            .contains("paging=point in time")
    );
    assert!(
        plan(&client, &paging("scrolled", 20))
            .await?
            .contains("paging=scroll")
    );
    assert!(
        plan(&client, &paging("on", 5))
            .await?
            .contains("paging=one request")
    );
    // Doubles are sorted by the index too: it indexes them as read.
    let doubles = format!("SELECT f FROM on.\"{index}\" ORDER BY f DESC LIMIT 5");
    let explained = plan(&client, &doubles).await?;
    assert!(
        !explained.contains("SortExec") && explained.contains(r#""sort":[{"f""#),
        "{explained}"
    );
    assert_eq!(
        rows(&client, &doubles).await?,
        rows(&client, &doubles.replace("on.", "off.")).await?
    );
    search.delete().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aggregates_run_in_the_index_with_the_answers_polygate_computes() -> anyhow::Result<()> {
    let Some(url) = backends::require(Backend::Search, "es_aggregates") else {
        return Ok(());
    };
    let mut search = SearchIndices::create(&url, "es_aggregates");
    search
        .create_index(
            "t",
            json!({ "properties": {
                "g": {"type": "keyword"},
                "g2": {"type": "keyword"},
                "title": {"type": "text", "fields": {"keyword": {"type": "keyword"}}},
                "n": {"type": "integer"},
                "at": {"type": "date"},
                "ok": {"type": "boolean"},
                "f": {"type": "double"},
            }}),
        )
        .await?;
    // 1,500 groups of g: the composite aggregation takes two pages.
    let mut values = Vec::new();
    for i in 0..3_100usize {
        let mut document = serde_json::Map::new();
        match i % 31 {
            0 => {}
            1 => {
                document.insert("g".into(), Value::Null);
            }
            _ => {
                document.insert("g".into(), Value::from(format!("g{:04}", i % 1_500)));
            }
        }
        document.insert("g2".into(), Value::from(format!("h{}", i % 3)));
        document.insert("title".into(), Value::from(format!("Title {}", i % 4)));
        if i % 7 != 4 {
            document.insert("n".into(), Value::from((i * 37 % 1_001) as i64 - 500));
        }
        if i % 5 != 3 {
            document.insert(
                "at".into(),
                Value::from(format!("2024-05-{:02}T{:02}:00:00Z", 1 + i % 28, i % 24)),
            );
        }
        if i % 9 != 8 {
            document.insert("ok".into(), Value::from(i % 2 == 0));
        }
        document.insert("f".into(), Value::from(i as f64 / 8.0));
        values.push(Value::Object(document));
    }
    search.bulk("t", &documents(values)).await?;
    let index = search.name("t");
    let catalog = format!(
        "{}\n{}",
        search.source("on", ""),
        search.source("off", "pushdown = false"),
    );
    let gateway = TestGateway::with_catalog(&catalog).await?;
    let client = gateway.connect().await?;
    let pushed = [
        "SELECT count(*) FROM {t}",
        "SELECT count(*) FROM {t} WHERE n > 3 AND g LIKE 'g1%'",
        "SELECT count(*), count(n), sum(n), min(n), max(n), avg(n), min(at), max(at), count(ok) FROM {t}",
        "SELECT count(*), sum(n), min(n), avg(n) FROM {t} WHERE n > 1000",
        "SELECT g, count(*), sum(n), count(at) FROM {t} GROUP BY g ORDER BY g NULLS FIRST",
        "SELECT ok, count(*), avg(n), min(at) FROM {t} GROUP BY ok ORDER BY ok",
        "SELECT g2, ok, count(n), max(at), max(n) FROM {t} WHERE ok GROUP BY g2, ok ORDER BY 1, 2",
        "SELECT title, count(*) FROM {t} GROUP BY title ORDER BY title",
        "SELECT g, count(*) FROM {t} WHERE n > 1000 GROUP BY g",
        "SELECT count(*) AS c, g2 FROM {t} GROUP BY g2 HAVING count(*) > 1000 ORDER BY g2",
    ];
    let local_aggregate = |plan: &str| {
        plan.lines()
            .any(|l| l.trim_start().starts_with("AggregateExec"))
    };
    for query in pushed {
        let sql = |source: &str| query.replace("{t}", &format!("{source}.\"{index}\""));
        let expected = rows(&client, &sql("off")).await?;
        assert_eq!(rows(&client, &sql("on")).await?, expected, "{query}");
        let explained = plan(&client, &sql("on")).await?;
        assert!(
            explained.contains("SearchAggregateExec") && !local_aggregate(&explained),
            "{query} was not aggregated by the index: {explained}"
        );
    }
    // Every residue of i % 1500 occurs with a value, and the documents without one make
    // the NULL group: 1,501 groups, two composite pages.
    let groups = |source: &str| {
        format!("SELECT count(*) FROM (SELECT g FROM {source}.\"{index}\" GROUP BY g)")
    };
    assert_eq!(
        rows(&client, &groups("on")).await?,
        vec![vec!["1501".to_owned()]]
    );
    assert_eq!(
        rows(&client, &groups("off")).await?,
        vec![vec!["1501".to_owned()]]
    );
    let count = format!("SELECT count(*) FROM on.\"{index}\"");
    assert!(plan(&client, &count).await?.contains("_count"));
    assert_eq!(rows(&client, &count).await?, vec![vec!["3100".to_owned()]]);
    // Approximate or inexact in the cluster: computed by polygate. (count(DISTINCT g) is
    // planned as a GROUP BY g, which the index answers exactly, then counted here; the
    // approximate `cardinality` aggregation is never used.)
    let local = [
        "SELECT count(DISTINCT g) FROM {t}",
        "SELECT sum(f) FROM {t}",
        "SELECT g2, avg(f) FROM {t} GROUP BY g2 ORDER BY g2",
    ];
    for query in local {
        let sql = |source: &str| query.replace("{t}", &format!("{source}.\"{index}\""));
        let explained = plan(&client, &sql("on")).await?;
        assert!(
            local_aggregate(&explained) && !explained.contains("cardinality"),
            "{query}: {explained}"
        );
        assert_eq!(
            rows(&client, &sql("on")).await?,
            rows(&client, &sql("off")).await?
        );
    }
    search.delete().await?;
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_field_source_does_not_keep_is_an_error_not_a_null() -> anyhow::Result<()> {
    let Some(url) = backends::require(Backend::Search, "es_no_source") else {
        return Ok(());
    };
    let mut search = SearchIndices::create(&url, "es_no_source");
    search
        .create_index(
            "t",
            json!({ "_source": { "enabled": false }, "properties": { "k": {"type": "keyword"} } }),
        )
        .await?;
    search
        .bulk(
            "t",
            &documents(vec![json!({ "k": "a" }), json!({ "k": "b" })]),
        )
        .await?;
    let index = search.name("t");
    let gateway = TestGateway::with_catalog(&search.source("s", "")).await?;
    let client = gateway.connect().await?;
    let error = rows(&client, &format!("SELECT k FROM s.\"{index}\""))
        .await
        .expect_err("a column _source does not keep cannot be read");
    assert!(
        error.to_string().contains("does not keep _source"),
        "{error}"
    );
    // What does not need _source still works.
    assert_eq!(
        rows(
            &client,
            &format!("SELECT _id FROM s.\"{index}\" ORDER BY _id")
        )
        .await?,
        vec![vec!["1".to_owned()], vec!["2".to_owned()]]
    );
    assert_eq!(
        rows(
            &client,
            &format!("SELECT count(*) FROM s.\"{index}\" WHERE k = 'a'")
        )
        .await?,
        vec![vec!["1".to_owned()]]
    );
    search.delete().await?;
    Ok(())
}
