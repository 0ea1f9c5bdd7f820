//! Parallel scans of large PostgreSQL tables: `ctid` ranges read by several sessions that
//! share one snapshot, against a real PostgreSQL.

use std::time::{Duration, Instant};

use polygate_tests::backends::{self, Backend, PgDatabase};
use polygate_tests::gateway::TestGateway;
use tokio_postgres::{Client, SimpleQueryMessage};

async fn first_row(client: &Client, sql: &str) -> anyhow::Result<Vec<Option<String>>> {
    let messages = client
        .simple_query(sql)
        .await
        .map_err(|e| anyhow::anyhow!("{sql}: {e:?}"))?;
    messages
        .into_iter()
        .find_map(|m| match m {
            SimpleQueryMessage::Row(row) => Some(
                (0..row.len())
                    .map(|i| row.get(i).map(str::to_owned))
                    .collect(),
            ),
            _ => None,
        })
        .ok_or_else(|| anyhow::anyhow!("{sql}: no row"))
}

async fn plan(client: &Client, sql: &str) -> anyhow::Result<String> {
    let messages = client.simple_query(&format!("EXPLAIN {sql}")).await?;
    Ok(messages
        .into_iter()
        .filter_map(|m| match m {
            SimpleQueryMessage::Row(row) => row.get(1).map(str::to_owned),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n"))
}

/// Sessions of database `name` still inside a transaction or running a statement, other than
/// the asking one.
async fn busy_sessions(admin: &Client, name: &str) -> anyhow::Result<i64> {
    Ok(admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity WHERE datname = $1 \
             AND pid <> pg_backend_pid() AND state <> 'idle'",
            &[&name],
        )
        .await?
        .get(0))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn large_tables_are_read_in_parallel_ranges_that_cover_every_row_once() -> anyhow::Result<()>
{
    let Some(admin_url) = backends::require(Backend::Postgres, "postgres_parallel") else {
        return Ok(());
    };
    let db = PgDatabase::create(&admin_url, "parallel").await?;
    let pg = db.client().await?;
    pg.batch_execute(
        "CREATE TABLE big (id int8, s text);
         INSERT INTO big SELECT i, md5(i::text) FROM generate_series(1, 200000) AS i;
         DELETE FROM big WHERE id % 10 = 0;",
    )
    .await?;
    // On its own: VACUUM cannot run in a multi-statement query's transaction.
    pg.batch_execute("VACUUM ANALYZE big").await?;
    let dir = tempfile::tempdir()?;
    let path = dir.path().join("catalog.toml");
    // Small ranges, so that a table of ~1,500 pages splits; `local` keeps every aggregate in
    // polygate, so that the rows themselves are counted after a parallel read.
    std::fs::write(
        &path,
        format!(
            "[sources.pg]\nkind = \"postgres\"\nurl = \"{url}\"\npartition_pages = 100\n\n\
             [sources.local]\nkind = \"postgres\"\nurl = \"{url}\"\npartition_pages = 100\npushdown = false\n",
            url = db.url
        ),
    )?;
    let gateway = TestGateway::start(&path).await?;
    let client = gateway.connect().await?;
    client
        .simple_query("SET datafusion.execution.target_partitions = 4")
        .await?;

    let explained = plan(&client, "SELECT id, s FROM local.big").await?;
    assert!(
        explained.contains("partitions=4 (ctid ranges, one snapshot)"),
        "{explained}"
    );

    let check = "SELECT count(*), count(DISTINCT id), sum(id), min(id), max(id), count(DISTINCT s)";
    let ours = first_row(&client, &format!("{check} FROM local.big")).await?;
    let theirs = first_row(&pg, &format!("{check} FROM big")).await?;
    assert_eq!(ours, theirs);
    assert_eq!(ours[0].as_deref(), Some("180000"));

    // A limit reached early drops the partitions' streams: their sessions, inside their
    // snapshot transactions, are closed rather than pooled, and nothing keeps running.
    let rows = first_row(&client, "SELECT id FROM local.big WHERE id % 7 = 3 LIMIT 5").await?;
    assert_eq!(rows.len(), 1);
    let admin = backends::connect(&admin_url).await?;
    let name = db.url.rsplit('/').next().unwrap_or_default().to_owned();
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        let busy = busy_sessions(&admin, &name).await?;
        if busy == 0 {
            break;
        }
        if Instant::now() >= deadline {
            let rows = admin
                .query(
                    "SELECT state, query FROM pg_stat_activity WHERE datname = $1 \
                     AND pid <> pg_backend_pid() AND state <> 'idle'",
                    &[&name],
                )
                .await?;
            let sessions: Vec<String> = rows
                .iter()
                .map(|r| format!("{}: {}", r.get::<_, String>(0), r.get::<_, String>(1)))
                .collect();
            anyhow::bail!("{busy} sessions still busy after 5 s: {sessions:#?}");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The pool still serves: sessions closed inside a transaction were replaced.
    let again = first_row(&client, &format!("{check} FROM local.big")).await?;
    assert_eq!(again, theirs);

    // ORDER BY ... LIMIT and small tables read as one statement.
    let explained = plan(&client, "SELECT id FROM pg.big ORDER BY id LIMIT 3").await?;
    assert!(!explained.contains("partitions="), "{explained}");
    drop(gateway);
    db.drop_database().await?;
    Ok(())
}
