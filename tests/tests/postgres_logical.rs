//! The PostgreSQL test cluster decodes its WAL logically, as a cache's change feed (pgoutput
//! on a `polygate_*` replication slot) needs: `wal_level = logical`, slots to spare, and a
//! publication's changes readable through pgoutput.

use polygate_tests::backends::{self, Backend, PgDatabase};

#[tokio::test]
async fn the_test_cluster_decodes_changes_with_pgoutput() -> anyhow::Result<()> {
    let test = "the_test_cluster_decodes_changes_with_pgoutput";
    let Some(admin_url) = backends::require(Backend::Postgres, test) else {
        return Ok(());
    };
    let database = PgDatabase::create(&admin_url, "logical").await?;
    let client = database.client().await?;
    let wal_level: String = client.query_one("SHOW wal_level", &[]).await?.get(0);
    assert_eq!(wal_level, "logical");

    client
        .batch_execute(
            "CREATE TABLE t (id int8 PRIMARY KEY, v text);
             CREATE PUBLICATION polygate_probe FOR TABLE t;",
        )
        .await?;
    // Slots belong to the cluster, not the database: a name of this run's own.
    let slot = format!("polygate_{}", backends::unique_name("probe"));
    client
        .execute(
            "SELECT pg_create_logical_replication_slot($1, 'pgoutput')",
            &[&slot],
        )
        .await?;
    let changes = async {
        client
            .batch_execute(
                "INSERT INTO t VALUES (1, 'a'), (2, 'b');
                 UPDATE t SET v = 'c' WHERE id = 1;
                 DELETE FROM t WHERE id = 2;",
            )
            .await?;
        // pgoutput's messages, by their first byte: Begin, Relation (once), Insert, Update,
        // Delete, Commit (one query message, one transaction). Decoding reads what the WAL
        // writer has flushed, which `synchronous_commit = off` leaves to it (every 200 ms).
        let mut kinds = String::new();
        for _ in 0..50 {
            kinds = client
                .query(
                    "SELECT chr(get_byte(data, 0)) FROM pg_logical_slot_peek_binary_changes($1, \
                     NULL, NULL, 'proto_version', '1', 'publication_names', 'polygate_probe')",
                    &[&slot],
                )
                .await?
                .iter()
                .map(|row| row.get::<_, String>(0))
                .collect();
            if kinds.ends_with('C') {
                break;
            }
            tokio::time::sleep(std::time::Duration::from_millis(100)).await;
        }
        anyhow::Ok(kinds)
    }
    .await;
    // The slot goes whatever happened: it would hold WAL, and its database, for good.
    client
        .execute("SELECT pg_drop_replication_slot($1)", &[&slot])
        .await?;
    assert_eq!(changes?, "BRIIUDC");
    drop(client);
    database.drop_database().await
}
