//! The Elasticsearch flavour's request paths, against answers written from Elasticsearch 8's
//! REST API documentation (`GET /`, `_alias`, `_mapping`, `_count`, `_pit`, `_search` with
//! `pit` and `search_after`, `DELETE /_pit`). The test server speaks OpenSearch; these
//! fixtures are what tells the two apart, and prove polygate takes Elasticsearch's paths.

use std::sync::{Arc, Mutex, PoisonError};

use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::prelude::SessionContext;
use polygate_connector_core::{ConnectorFactory, SourceContext, TableRef};
use polygate_connector_elasticsearch::{ElasticConnectorFactory, ElasticOptions};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpListener;

/// One request the fixture server received.
#[derive(Debug, Clone)]
struct Request {
    method: String,
    target: String,
    /// The `Authorization` header, if any.
    authorization: Option<String>,
    body: Value,
}

type Answer = dyn Fn(&Request) -> Value + Send + Sync;

/// An HTTP/1.1 server answering every request with `answer`'s JSON, recording them.
async fn fixture_server(
    answer: Arc<Answer>,
) -> std::io::Result<(String, Arc<Mutex<Vec<Request>>>)> {
    let listener = TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}", listener.local_addr()?);
    let log = Arc::new(Mutex::new(Vec::new()));
    let requests = Arc::clone(&log);
    tokio::spawn(async move {
        while let Ok((stream, _)) = listener.accept().await {
            let (answer, requests) = (Arc::clone(&answer), Arc::clone(&requests));
            tokio::spawn(async move {
                let _ = serve(stream, answer.as_ref(), &requests).await;
            });
        }
    });
    Ok((url, log))
}

/// Answers the requests of one connection until the client closes it.
async fn serve(
    stream: tokio::net::TcpStream,
    answer: &Answer,
    requests: &Mutex<Vec<Request>>,
) -> std::io::Result<()> {
    let mut stream = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if stream.read_line(&mut line).await? == 0 {
            return Ok(());
        }
        let mut parts = line.split_whitespace();
        let (method, target) = (
            parts.next().unwrap_or_default().to_owned(),
            parts.next().unwrap_or_default().to_owned(),
        );
        let (mut length, mut authorization) = (0, None);
        loop {
            let mut header = String::new();
            stream.read_line(&mut header).await?;
            let header = header.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("content-length") {
                    length = value.trim().parse().unwrap_or(0);
                } else if name.eq_ignore_ascii_case("authorization") {
                    authorization = Some(value.trim().to_owned());
                }
            }
        }
        let mut body = vec![0; length];
        stream.read_exact(&mut body).await?;
        let request = Request {
            method,
            target,
            authorization,
            body: serde_json::from_slice(&body).unwrap_or(Value::Null),
        };
        let reply = answer(&request).to_string();
        requests
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(request);
        let response = format!(
            "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\n\
             x-elastic-product: Elasticsearch\r\ncontent-length: {}\r\n\r\n{reply}",
            reply.len()
        );
        stream.get_mut().write_all(response.as_bytes()).await?;
    }
}

const PIT_ID: &str = "46ToAwMDaWR5BXV1aWQyKwZub2RlXzMAAAAAAAAAACoBYwADaWR4BXV1aWQxAgZub2RlXzEAAAAAAAAAAAEBYQADaWR5BXV1aWQyKgZub2RlXzIAAAAAAAAAAAwBYgACBXV1aWQyAAAFdXVpZDEAAQltYXRjaF9hbGw_gAAAAA==";

fn hit(id: &str, source: Value, sort: Value) -> Value {
    json!({ "_index": "orders", "_id": id, "_score": null, "_source": source, "sort": sort })
}

/// A single-node Elasticsearch 8.15 cluster with one index, `orders`, of three documents.
fn elasticsearch_8(request: &Request) -> Value {
    let path = request.target.split('?').next().unwrap_or_default();
    match (request.method.as_str(), path) {
        ("GET", "/") => json!({
            "name": "node-1",
            "cluster_name": "docs",
            "cluster_uuid": "2nM7ic-3RZKb0lAU1DJ4qA",
            "version": {
                "number": "8.15.0",
                "build_flavor": "default",
                "build_type": "docker",
                "build_hash": "1a77947f34deddb41af25e6f0ddb8e830159c179",
                "build_date": "2024-08-05T10:05:34.233336849Z",
                "build_snapshot": false,
                "lucene_version": "9.11.1",
                "minimum_wire_compatibility_version": "7.17.0",
                "minimum_index_compatibility_version": "7.0.0"
            },
            "tagline": "You Know, for Search"
        }),
        ("GET", "/_alias") => {
            json!({ "orders": { "aliases": {} }, ".kibana_1": { "aliases": {} } })
        }
        ("GET", "/orders/_mapping") => json!({ "orders": { "mappings": { "properties": {
            "status": { "type": "keyword" },
            "amount": { "type": "integer" },
            "placed": { "type": "date", "format": "strict_date_optional_time||epoch_millis" },
        } } } }),
        ("GET", "/orders/_count") => json!({
            "count": 3,
            "_shards": { "total": 1, "successful": 1, "skipped": 0, "failed": 0 }
        }),
        // The schema sample.
        ("POST", "/orders/_search") => json!({
            "took": 1, "timed_out": false,
            "_shards": { "total": 1, "successful": 1, "skipped": 0, "failed": 0 },
            "hits": { "max_score": 1.0, "hits": [] }
        }),
        ("POST", "/orders/_pit") => json!({ "id": PIT_ID }),
        ("POST", "/_search") => {
            let after = request.body.get("search_after").cloned();
            let hits = match after {
                None => vec![
                    hit(
                        "1",
                        json!({ "status": "open", "amount": 10, "placed": "2024-01-02T03:04:05Z" }),
                        json!([0]),
                    ),
                    hit(
                        "2",
                        json!({ "status": "paid", "amount": 20, "placed": 1704164645000i64 }),
                        json!([1]),
                    ),
                ],
                Some(after) if after == json!([1]) => vec![hit(
                    "3",
                    json!({ "status": "open", "placed": "2024-01-03" }),
                    json!([2]),
                )],
                Some(_) => Vec::new(),
            };
            json!({
                "pit_id": PIT_ID,
                "took": 2, "timed_out": false,
                "_shards": { "total": 1, "successful": 1, "skipped": 0, "failed": 0 },
                "hits": { "total": { "value": 3, "relation": "eq" }, "max_score": null, "hits": hits }
            })
        }
        ("DELETE", "/_pit") => json!({ "succeeded": true, "num_freed": 1 }),
        _ => json!({ "error": format!("no fixture for {} {}", request.method, request.target) }),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elasticsearch_reads_through_its_own_point_in_time_endpoints() {
    let (url, requests) = fixture_server(Arc::new(elasticsearch_8)).await.unwrap();
    let options: ElasticOptions = toml::from_str(&format!(
        "url = \"{url}\"\npage_size = 2\npaging = \"point_in_time\""
    ))
    .unwrap();
    let context = SourceContext::new("es", ".");
    let connector = ElasticConnectorFactory::create(&context, options).unwrap();
    let namespaces = connector.discover().await.unwrap();
    assert_eq!(
        namespaces[0].tables,
        ["orders"],
        "hidden indices are not tables"
    );
    let provider = connector
        .table_provider(&TableRef::new("indices", "orders"))
        .await
        .unwrap();
    let ctx = SessionContext::new();
    ctx.register_table("orders", provider).unwrap();
    let batches = ctx
        .sql("SELECT _id, status, amount, placed FROM orders")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    let table = pretty_format_batches(&batches).unwrap().to_string();
    assert_eq!(
        table,
        "\
+-----+--------+--------+----------------------+
| _id | status | amount | placed               |
+-----+--------+--------+----------------------+
| 1   | open   | 10     | 2024-01-02T03:04:05Z |
| 2   | paid   | 20     | 2024-01-02T03:04:05Z |
| 3   | open   |        | 2024-01-03T00:00:00Z |
+-----+--------+--------+----------------------+"
    );

    // Elasticsearch's endpoints, in order, and the point in time closed at the end.
    let requests = requests.lock().unwrap().clone();
    let scan: Vec<String> = requests
        .iter()
        .skip_while(|r| !r.target.starts_with("/orders/_pit"))
        .map(|r| format!("{} {}", r.method, r.target))
        .collect();
    assert_eq!(
        scan,
        [
            "POST /orders/_pit?keep_alive=2m",
            "POST /_search",
            "POST /_search",
            "DELETE /_pit",
        ]
    );
    let searches: Vec<&Request> = requests.iter().filter(|r| r.target == "/_search").collect();
    assert_eq!(searches[0].body["pit"]["id"], PIT_ID);
    assert_eq!(searches[0].body["sort"], json!([{ "_shard_doc": "asc" }]));
    assert_eq!(searches[1].body["search_after"], json!([1]));
    let close = requests.last().unwrap();
    assert_eq!(close.body, json!({ "id": PIT_ID }));
}

/// Elasticsearch 7.10, before `_shard_doc`: scans page by scroll, whatever the index.
fn elasticsearch_7_10(request: &Request) -> Value {
    let path = request.target.split('?').next().unwrap_or_default();
    let page = |hits: Vec<Value>| {
        json!({
            "_scroll_id": "FGluY2x1ZGVfY29udGV4dF91dWlkDXF1ZXJ5QW5kRmV0Y2gBFkNwcVdFMGVlUmFDMVFaSnlQRk5QQ2cAAAAAAAAA5hZhZWVRbHNyd1NYZVp3X1FQNUx6bXN3",
            "took": 1, "timed_out": false,
            "_shards": { "total": 1, "successful": 1, "skipped": 0, "failed": 0 },
            "hits": { "total": { "value": 3, "relation": "eq" }, "max_score": null, "hits": hits }
        })
    };
    match (request.method.as_str(), path) {
        ("GET", "/") => json!({
            "name": "node-1", "cluster_name": "docs",
            "version": { "number": "7.10.2", "build_flavor": "default", "lucene_version": "8.7.0" },
            "tagline": "You Know, for Search"
        }),
        ("POST", "/orders/_search") if request.target.contains("scroll=") => page(vec![
            hit("1", json!({ "status": "open" }), json!([0])),
            hit("2", json!({ "status": "paid" }), json!([1])),
        ]),
        ("POST", "/_search/scroll") => {
            page(vec![hit("3", json!({ "status": "open" }), json!([2]))])
        }
        ("DELETE", "/_search/scroll") => json!({ "succeeded": true, "num_freed": 1 }),
        _ => elasticsearch_8(request),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elasticsearch_before_7_12_reads_by_scroll() {
    let (url, requests) = fixture_server(Arc::new(elasticsearch_7_10)).await.unwrap();
    let options: ElasticOptions =
        toml::from_str(&format!("url = \"{url}\"\npage_size = 2\nsample_size = 0")).unwrap();
    let context = SourceContext::new("es", ".");
    let connector = ElasticConnectorFactory::create(&context, options).unwrap();
    connector.discover().await.unwrap();
    let provider = connector
        .table_provider(&TableRef::new("indices", "orders"))
        .await
        .unwrap();
    let ctx = SessionContext::new();
    ctx.register_table("orders", provider).unwrap();
    let batches = ctx
        .sql("SELECT _id, status FROM orders")
        .await
        .unwrap()
        .collect()
        .await
        .unwrap();
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 3);
    let requests = requests.lock().unwrap().clone();
    let scan: Vec<String> = requests
        .iter()
        .skip_while(|r| !r.target.contains("scroll="))
        .map(|r| format!("{} {}", r.method, r.target))
        .collect();
    assert_eq!(
        scan,
        [
            "POST /orders/_search?scroll=2m",
            "POST /_search/scroll",
            "DELETE /_search/scroll",
        ]
    );
    let first = requests
        .iter()
        .find(|r| r.target.contains("scroll="))
        .unwrap();
    assert_eq!(first.body["sort"], json!(["_doc"]));
    assert!(
        first.body.get("track_total_hits").is_none(),
        "a scroll must count its hits"
    );
    let close = requests.last().unwrap();
    assert!(
        close.body["scroll_id"][0]
            .as_str()
            .unwrap()
            .starts_with("FGluY2x1ZGVf")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_request_carries_the_configured_credentials() {
    // Basic authentication (catalog.toml's `${VAR}` is expanded before the connector sees the
    // password), and an API key in its `id:key` form, sent base64-encoded.
    for (options, expected) in [
        (
            "username = \"reader\"\npassword = \"s3cr:t\"",
            // base64("reader:s3cr:t")
            "Basic cmVhZGVyOnMzY3I6dA==",
        ),
        (
            "api_key = \"VuaCfGcBCdbkQm-e5aOx:ui2lp2axTNmsyakw9tvNnw\"",
            // base64 of the id:key pair, as the API key documentation shows
            "ApiKey VnVhQ2ZHY0JDZGJrUW0tZTVhT3g6dWkybHAyYXhUTm1zeWFrdzl0dk5udw==",
        ),
    ] {
        let (url, requests) = fixture_server(Arc::new(elasticsearch_8)).await.unwrap();
        let options: ElasticOptions =
            toml::from_str(&format!("url = \"{url}\"\n{options}")).unwrap();
        let context = SourceContext::new("es", ".");
        let connector = ElasticConnectorFactory::create(&context, options).unwrap();
        connector.discover().await.unwrap();
        connector
            .table_provider(&TableRef::new("indices", "orders"))
            .await
            .unwrap();
        let requests = requests.lock().unwrap().clone();
        assert!(requests.len() >= 3);
        for request in &requests {
            assert_eq!(
                request.authorization.as_deref(),
                Some(expected),
                "{} {}",
                request.method,
                request.target
            );
        }
    }
}
