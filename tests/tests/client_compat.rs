//! Real clients against a live gateway over PostgreSQL, MongoDB and Elasticsearch sources:
//! psycopg 3 and SQLAlchemy 2 (Python), node-postgres, and pgjdbc, each authenticating by
//! SCRAM-SHA-256 and asserting the rows it gets (the scripts are in tests/clients/).
//! tests/clients.sh installs them; tokio-postgres's binary format is covered by
//! postgres_types.rs, psql by client_psql.rs.

use std::path::Path;
use std::process::Command;

use mongodb::bson::doc;
use polygate_tests::backends::{self, Backend, PgDatabase, loud};
use polygate_tests::gateway::TestGateway;
use polygate_tests::mongo::MongoDatabase;
use polygate_tests::search::SearchIndices;
use serde_json::json;

const PG_FIXTURE: &str = r#"
CREATE TABLE customers (id int4 PRIMARY KEY, name text NOT NULL, country text, joined timestamp, credit numeric(10,2));
INSERT INTO customers VALUES
    (1, 'Ada', 'NL', '2020-05-17 08:30:00', 100.50),
    (2, 'Bob', 'NL', '2021-01-01 00:00:00', 0.50),
    (3, 'Cy', 'US', '2022-02-02 00:00:00', 7.00);
CREATE TABLE types (id int4, i2 int2, i4 int4, i8 int8, f4 float4, f8 float8, n numeric(12,3),
    t text, b bool, d date, ts timestamp, tz timestamptz, by bytea, ai int4[], at text[]);
INSERT INTO types VALUES
    (1, -32768, 2147483647, -9223372036854775808, 1.5, 2.25, 1234.567, 'ünïcödé ''q''', true,
     '2024-02-29', '2024-02-29 23:59:59.123456', '2024-03-01 12:00:00+00', '\x00ff',
     '{1,NULL,3}', '{"a b",NULL,""}'),
    (2, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL);
"#;

const USER: &str = "app";
const PASSWORD: &str = "s3cret";

/// The environment variable `name`, or `None` (after saying so) when the client is missing.
fn client_setting(name: &str) -> anyhow::Result<Option<String>> {
    match std::env::var(name) {
        Ok(value) if !value.is_empty() => Ok(Some(value)),
        _ => {
            let message = format!("{name} is not set (tests/run.sh installs the clients)");
            if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
                anyhow::bail!("{message}; under CI a missing client is a failure");
            }
            loud(&format!("SKIPPED: {message}"));
            Ok(None)
        }
    }
}

/// Runs `command` with the gateway's connection settings; it must print "ok".
fn run_client(
    name: &str,
    command: &mut Command,
    gateway: &TestGateway,
    reviews: &str,
) -> anyhow::Result<()> {
    let output = command
        .env("PGHOST", "127.0.0.1")
        .env("PGPORT", gateway.port().to_string())
        .env("PGUSER", USER)
        .env("PGPASSWORD", PASSWORD)
        .env("PGDATABASE", "polygate")
        .env("REVIEWS", reviews)
        .output()?;
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    anyhow::ensure!(
        output.status.success() && stdout.trim_end().ends_with("ok"),
        "{name} failed ({}):\n{stdout}\n{stderr}",
        output.status
    );
    eprintln!("{name}: ok");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn python_node_and_java_clients_read_every_store() -> anyhow::Result<()> {
    let (Some(pg_url), Some(mongo_url), Some(es_url)) = (
        backends::require(Backend::Postgres, "client_compat"),
        backends::require(Backend::Mongo, "client_compat"),
        backends::require(Backend::Search, "client_compat"),
    ) else {
        return Ok(());
    };
    let (Some(python), Some(node_path), Some(jar)) = (
        client_setting("POLYGATE_TEST_CLIENT_PYTHON")?,
        client_setting("POLYGATE_TEST_CLIENT_NODE_PATH")?,
        client_setting("POLYGATE_TEST_PGJDBC_JAR")?,
    ) else {
        return Ok(());
    };

    let pg = PgDatabase::create(&pg_url, "client_compat").await?;
    pg.client().await?.batch_execute(PG_FIXTURE).await?;
    let mongo = MongoDatabase::create(&mongo_url, "client_compat").await?;
    mongo
        .db()
        .collection("orders")
        .insert_many([
            doc! { "customer_id": 1, "amount": 10.5 },
            doc! { "customer_id": 1, "amount": 20.0 },
            doc! { "customer_id": 2, "amount": 5.25 },
            doc! { "customer_id": 3, "amount": 7.0 },
        ])
        .await?;
    let mut search = SearchIndices::create(&es_url, "client_compat");
    search
        .create_index(
            "reviews",
            json!({ "properties": {
                "customer_id": { "type": "integer" },
                "stars": { "type": "integer" },
                "text": { "type": "text" },
            }}),
        )
        .await?;
    search
        .bulk(
            "reviews",
            &[
                (
                    "1".into(),
                    json!({ "customer_id": 1, "stars": 5, "text": "great" }),
                ),
                (
                    "2".into(),
                    json!({ "customer_id": 2, "stars": 3, "text": "fine" }),
                ),
                (
                    "3".into(),
                    json!({ "customer_id": 3, "stars": 4, "text": "good" }),
                ),
            ],
        )
        .await?;
    let reviews = search.name("reviews");

    let gateway = TestGateway::with_catalog(&format!(
        "[gateway]\nauth = \"scram-sha-256\"\n[gateway.users]\n{USER} = \"{PASSWORD}\"\n\n\
         [sources.pg]\nkind = \"postgres\"\nurl = \"{}\"\n\n{}\n{}",
        pg.url,
        mongo.source("mongo", ""),
        search.source("search", ""),
    ))
    .await?;
    let clients = polygate_tests::repo_root().join("tests/clients");

    run_client(
        "psycopg and SQLAlchemy",
        Command::new(&python).arg(clients.join("client.py")),
        &gateway,
        &reviews,
    )?;
    run_client(
        "node-postgres",
        Command::new("node")
            .arg(clients.join("client.js"))
            .env("NODE_PATH", &node_path),
        &gateway,
        &reviews,
    )?;
    let classes = tempfile::tempdir()?;
    compile_java(&clients.join("Client.java"), classes.path(), &jar)?;
    run_client(
        "pgjdbc",
        Command::new("java")
            .arg("-cp")
            .arg(format!("{}:{jar}", classes.path().display()))
            .arg("Client"),
        &gateway,
        &reviews,
    )?;

    drop(gateway);
    search.delete().await?;
    mongo.drop_database().await?;
    pg.drop_database().await?;
    Ok(())
}

fn compile_java(source: &Path, out: &Path, jar: &str) -> anyhow::Result<()> {
    let output = Command::new("javac")
        .arg("-cp")
        .arg(jar)
        .arg("-d")
        .arg(out)
        .arg(source)
        .output()?;
    anyhow::ensure!(
        output.status.success(),
        "javac: {}",
        String::from_utf8_lossy(&output.stderr)
    );
    Ok(())
}
