//! The start-up and navigation queries of tools that cannot run here (DBeaver, DataGrip,
//! Metabase, Grafana), kept as fixtures in tests/clients/fixtures/*.sql, each naming where it
//! comes from. Every query is sent as those tools' drivers send it: Parse with parameter types
//! left to the server, text parameters, then results in text and again in binary format. Each
//! must succeed, and return rows where its fixture says so.
//!
//! A fixture file is a list of blocks:
//!
//! ```text
//! -- query: columns of a table
//! -- source: path/in/the/tool's/repository
//! -- params: shop | customers
//! -- expect: rows
//! SELECT ... WHERE n.nspname = $1 AND c.relname = $2
//! ```
//!
//! `expect` is `rows` (at least one), `empty` or absent (either). A parameter written
//! `oid:namespace NAME`, `oid:table SCHEMA.NAME` or `oid:database NAME` is that object's oid.
//!
//! A query polygate cannot answer yet says why in an `-- unsupported: REASON` header. It must
//! still fail: the day it succeeds, this test fails until the header goes, so the list of
//! gaps stays true. The test prints them.

// Test helpers: an index out of range is a failed test, with its line.
#![allow(clippy::indexing_slicing)]

use std::fmt::Write as _;
use std::path::Path;

use mongodb::bson::doc;
use polygate_tests::backends::{self, Backend, PgDatabase};
use polygate_tests::gateway::TestGateway;
use polygate_tests::mongo::MongoDatabase;
use polygate_tests::search::SearchIndices;
use polygate_tests::wire::{Fetched, WireClient, WireFormat};
use serde_json::json;

/// One query of a fixture file.
#[derive(Debug, Default)]
struct FixtureQuery {
    name: String,
    line: usize,
    params: Vec<String>,
    expect: Option<Expect>,
    unsupported: Option<String>,
    sql: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Expect {
    Rows,
    Empty,
}

/// Parses a fixture file; errors name the line.
fn parse_fixture(text: &str) -> anyhow::Result<Vec<FixtureQuery>> {
    let mut queries: Vec<FixtureQuery> = Vec::new();
    let mut in_header = false;
    for (index, line) in text.lines().enumerate() {
        let number = index + 1;
        if let Some(name) = line.strip_prefix("-- query:") {
            queries.push(FixtureQuery {
                name: name.trim().to_owned(),
                line: number,
                ..FixtureQuery::default()
            });
            in_header = true;
            continue;
        }
        let Some(query) = queries.last_mut() else {
            continue; // the file's own header comments
        };
        if in_header && let Some(header) = line.strip_prefix("-- ") {
            let (key, value) = header
                .split_once(':')
                .ok_or_else(|| anyhow::anyhow!("line {number}: a header is `-- key: value`"))?;
            let value = value.trim();
            match key {
                "source" => {}
                "unsupported" => query.unsupported = Some(value.to_owned()),
                "params" => query.params = value.split(" | ").map(str::to_owned).collect(),
                "expect" => {
                    query.expect = Some(match value {
                        "rows" => Expect::Rows,
                        "empty" => Expect::Empty,
                        other => anyhow::bail!("line {number}: unknown expectation {other:?}"),
                    })
                }
                other => anyhow::bail!("line {number}: unknown header {other:?}"),
            }
            continue;
        }
        in_header = false;
        query.sql.push_str(line);
        query.sql.push('\n');
    }
    for query in &mut queries {
        let sql = query.sql.trim().trim_end_matches(';').trim_end();
        anyhow::ensure!(!sql.is_empty(), "line {}: no SQL", query.line);
        query.sql = sql.to_owned();
    }
    Ok(queries)
}

/// The value bound for `param`: itself, or the oid it names.
async fn param_value(client: &mut WireClient, param: &str) -> anyhow::Result<String> {
    let Some(object) = param.strip_prefix("oid:") else {
        return Ok(param.to_owned());
    };
    let (sql, args): (&str, Vec<&str>) = match object.split_once(' ') {
        Some(("namespace", name)) => (
            "SELECT oid FROM pg_namespace WHERE nspname = $1",
            vec![name],
        ),
        Some(("database", name)) => ("SELECT oid FROM pg_database WHERE datname = $1", vec![name]),
        Some(("table", name)) => {
            let (schema, table) = name
                .split_once('.')
                .ok_or_else(|| anyhow::anyhow!("{param}: a table is SCHEMA.NAME"))?;
            (
                "SELECT c.oid FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relname = $2",
                vec![schema, table],
            )
        }
        _ => anyhow::bail!("{param}: unknown object kind"),
    };
    let fetched = run(client, sql, &args, WireFormat::Text)
        .await?
        .map_err(|e| anyhow::anyhow!("looking up {param}: {e}"))?;
    let row = fetched
        .first()
        .and_then(|f| f.rows.first())
        .ok_or_else(|| anyhow::anyhow!("{param}: no such object"))?;
    let value = row[0]
        .as_ref()
        .ok_or_else(|| anyhow::anyhow!("{param}: NULL oid"))?;
    Ok(String::from_utf8(value.clone())?)
}

/// Runs `sql` with text parameters of unspecified type, results in `format`.
async fn run(
    client: &mut WireClient,
    sql: &str,
    params: &[&str],
    format: WireFormat,
) -> anyhow::Result<Result<Vec<Fetched>, String>> {
    let types = vec![0; params.len()];
    let values: Vec<Option<&[u8]>> = params.iter().map(|p| Some(p.as_bytes())).collect();
    Ok(client
        .query(sql, &types, &values, WireFormat::Text, format, 0)
        .await?
        .map_err(|e| format!("{} {}", e.code, e.message)))
}

/// Runs every query of `file`, adding a line to `failures` for each one that fails.
async fn check_file(
    client: &mut WireClient,
    file: &Path,
    failures: &mut String,
) -> anyhow::Result<usize> {
    let name = file.file_name().unwrap_or_default().to_string_lossy();
    let queries = parse_fixture(&std::fs::read_to_string(file)?)
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    anyhow::ensure!(!queries.is_empty(), "{name}: no queries");
    for query in &queries {
        let mut params = Vec::new();
        for param in &query.params {
            params.push(param_value(client, param).await?);
        }
        let params: Vec<&str> = params.iter().map(String::as_str).collect();
        let mut problem = None;
        for format in [WireFormat::Text, WireFormat::Binary] {
            problem = match run(client, &query.sql, &params, format).await? {
                Err(error) => Some(format!("({format:?} results) {error}")),
                Ok(fetched) => {
                    let rows: usize = fetched.iter().map(|f| f.rows.len()).sum();
                    match query.expect {
                        Some(Expect::Rows) if rows == 0 => {
                            Some(format!("({format:?} results) no rows"))
                        }
                        Some(Expect::Empty) if rows > 0 => {
                            Some(format!("({format:?} results) {rows} rows"))
                        }
                        _ => None,
                    }
                }
            };
            if problem.is_some() {
                break;
            }
        }
        let place = format!("{name}:{} {}", query.line, query.name);
        match (problem, &query.unsupported) {
            (Some(problem), None) => writeln!(failures, "{place}: {problem}")?,
            (None, Some(_)) => writeln!(
                failures,
                "{place}: now succeeds; remove its `unsupported` header"
            )?,
            (Some(problem), Some(reason)) => {
                eprintln!("unsupported: {place}: {reason}\n    {problem}")
            }
            (None, None) => {}
        }
    }
    Ok(queries.len())
}

#[test]
fn fixture_files_parse() {
    let queries = parse_fixture(
        "-- a file comment\n\n-- query: one\n-- source: x.java\n-- params: a | oid:table s.t\n\
         -- expect: rows\nSELECT $1,\n  -- a comment in the SQL\n  $2;\n\n-- query: two\nSELECT 2\n",
    )
    .unwrap();
    assert_eq!(queries.len(), 2);
    assert_eq!(queries[0].params, ["a", "oid:table s.t"]);
    assert_eq!(queries[0].expect, Some(Expect::Rows));
    assert_eq!(
        queries[0].sql,
        "SELECT $1,\n  -- a comment in the SQL\n  $2"
    );
    assert_eq!((queries[1].line, queries[1].expect), (11, None));
    assert!(parse_fixture("-- query: x\n-- expect: maybe\nSELECT 1").is_err());
    let gap = parse_fixture("-- query: x\n-- unsupported: no pg_locks\nSELECT 1").unwrap();
    assert_eq!(gap[0].unsupported.as_deref(), Some("no pg_locks"));
    assert!(parse_fixture("-- query: x\n").is_err());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tool_start_up_and_navigation_queries_succeed() -> anyhow::Result<()> {
    let (Some(pg_url), Some(mongo_url), Some(es_url)) = (
        backends::require(Backend::Postgres, "client_fixtures"),
        backends::require(Backend::Mongo, "client_fixtures"),
        backends::require(Backend::Search, "client_fixtures"),
    ) else {
        return Ok(());
    };
    let pg = PgDatabase::create(&pg_url, "client_fixtures").await?;
    pg.client()
        .await?
        .batch_execute(
            "CREATE TABLE accounts (id int8 PRIMARY KEY, owner text NOT NULL, \
                 balance numeric(12,2) DEFAULT 0, tags text[], opened timestamptz);
             COMMENT ON TABLE accounts IS 'bank accounts';
             INSERT INTO accounts VALUES (1, 'ada', 10.5, '{a,b}', now());",
        )
        .await?;
    let mongo = MongoDatabase::create(&mongo_url, "client_fixtures").await?;
    mongo
        .db()
        .collection("profiles")
        .insert_one(doc! { "name": "ada", "address": { "city": "London" }, "langs": ["en"] })
        .await?;
    let mut search = SearchIndices::create(&es_url, "client_fixtures");
    search
        .create_index(
            "notes",
            json!({ "properties": { "text": { "type": "text" }, "at": { "type": "date" } } }),
        )
        .await?;

    let data = polygate_tests::repo_root().join("examples/demo/data");
    let gateway = TestGateway::with_catalog(&format!(
        "[sources.shop]\nkind = \"files\"\nroot = \"{}\"\n\n\
         [sources.bank]\nkind = \"postgres\"\nurl = \"{}\"\n\n{}\n{}",
        data.display(),
        pg.url,
        mongo.source("docs", ""),
        search.source("search", ""),
    ))
    .await?;
    let mut client = WireClient::connect(gateway.port(), "polygate").await?;

    let mut files: Vec<_> =
        std::fs::read_dir(polygate_tests::repo_root().join("tests/clients/fixtures"))?
            .map(|entry| entry.map(|e| e.path()))
            .collect::<Result<_, _>>()?;
    files.retain(|path| path.extension().is_some_and(|e| e == "sql"));
    files.sort();
    let names: Vec<_> = files
        .iter()
        .filter_map(|f| f.file_stem()?.to_str())
        .collect();
    assert_eq!(names, ["datagrip", "dbeaver", "grafana", "metabase"]);

    // Grafana's "Save & test": pgx pings with "-- ping", lib/pq with ";", by the simple query
    // protocol; each is answered EmptyQueryResponse.
    let pinger = gateway.connect().await?;
    for ping in ["-- ping", ";"] {
        let messages = pinger.simple_query(ping).await?;
        assert!(
            messages
                .iter()
                .all(|m| !matches!(m, tokio_postgres::SimpleQueryMessage::Row(_))),
            "{ping:?} returned rows"
        );
    }

    let mut failures = String::new();
    for file in &files {
        let count = check_file(&mut client, file, &mut failures).await?;
        eprintln!("{}: {count} queries", file.display());
    }
    assert!(failures.is_empty(), "failing fixture queries:\n{failures}");

    drop(gateway);
    search.delete().await?;
    mongo.drop_database().await?;
    pg.drop_database().await?;
    Ok(())
}
