//! Runs every `tests/slt/mongodb/*.slt` file three times: against PostgreSQL holding the
//! reference data, through polygate with pushdown, and through polygate with pushdown off.
//!
//! `tests/slt/mongodb/fixture.sql` is loaded into PostgreSQL as schema `mongo`, then copied
//! into collections of a MongoDB database with missing and null fields, mixed int32/int64
//! values and Decimal128 (see `polygate_tests::mongo`). PostgreSQL resolves `mongo.orders` to
//! its schema, polygate to its source `mongo`, which serves the copy: every query must return
//! what PostgreSQL computes from the same data. Records labelled `onlyif pushdown` (EXPLAIN
//! plans) run on the pushdown gateway only.

use polygate_tests::backends::{self, Backend, PgDatabase};
use polygate_tests::gateway::TestGateway;
use polygate_tests::mongo::MongoDatabase;
use polygate_tests::slt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mongodb_slt_files_agree_with_postgresql_with_and_without_pushdown() -> anyhow::Result<()> {
    let Some(admin) = backends::require(Backend::Postgres, "mongodb_slt") else {
        return Ok(());
    };
    let Some(mongo_url) = backends::require(Backend::Mongo, "mongodb_slt") else {
        return Ok(());
    };
    let root = polygate_tests::repo_root().join("tests/slt/mongodb");
    let pg = PgDatabase::create(&admin, "mongodb_slt").await?;
    let fixture = std::fs::read_to_string(root.join("fixture.sql"))?;
    let client = pg.client().await?;
    client.batch_execute(&fixture).await?;
    // EXPLAIN plans name the database: a fixed name, emptied first.
    let mongo = MongoDatabase::named(&mongo_url, "polygate_slt").await?;
    mongo.db().drop().await?;
    mongo.copy_from_postgres(&client, "mongo").await?;

    let pushed = TestGateway::with_catalog(&mongo.source("mongo", "pushdown = true")).await?;
    let local = TestGateway::with_catalog(&mongo.source("mongo", "pushdown = false")).await?;
    // PostgreSQL prints timestamptz in the session's time zone; polygate in UTC.
    let direct = format!("{}?options=-c%20TimeZone%3DUTC", pg.url);
    let failures = slt::run_three_ways(
        &root,
        &direct,
        &pushed.url("polygate"),
        &local.url("polygate"),
    )
    .await?;
    drop((pushed, local));
    pg.drop_database().await?;
    mongo.drop_database().await?;
    anyhow::ensure!(failures.is_empty(), "\n{}", failures.join("\n\n"));
    Ok(())
}
