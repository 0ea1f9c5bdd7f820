//! Runs every `tests/slt/elasticsearch/*.slt` file three times: against PostgreSQL holding the
//! reference data, through polygate with pushdown, and through polygate with pushdown off.
//!
//! `tests/slt/elasticsearch/fixture.sql` is loaded into PostgreSQL as schema `search`, then
//! copied into indices of the same names with the mappings of `mappings.json` (missing fields
//! and explicit nulls alternating, see `polygate_tests::search`). PostgreSQL resolves
//! `search.products` to its schema, polygate to its source `search`, which serves the copy:
//! every query must return what PostgreSQL computes from the same data. Records labelled
//! `onlyif pushdown` (EXPLAIN plans) run on the pushdown gateway only; `skipif postgres`
//! records (full-text search, which PostgreSQL spells differently) on both gateways.

use polygate_tests::backends::{self, Backend, PgDatabase};
use polygate_tests::gateway::TestGateway;
use polygate_tests::search::SearchIndices;
use polygate_tests::slt;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn elasticsearch_slt_files_agree_with_postgresql_with_and_without_pushdown()
-> anyhow::Result<()> {
    let Some(admin) = backends::require(Backend::Postgres, "elasticsearch_slt") else {
        return Ok(());
    };
    let Some(es_url) = backends::require(Backend::Search, "elasticsearch_slt") else {
        return Ok(());
    };
    let root = polygate_tests::repo_root().join("tests/slt/elasticsearch");
    let pg = PgDatabase::create(&admin, "elasticsearch_slt").await?;
    let client = pg.client().await?;
    client
        .batch_execute(&std::fs::read_to_string(root.join("fixture.sql"))?)
        .await?;
    let mappings: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(root.join("mappings.json"))?)?;
    let mut search = SearchIndices::create(&es_url, "elasticsearch_slt");
    let indices = search
        .copy_from_postgres(&client, "search", &mappings)
        .await?;

    // The indices have the tables' names: the sources expose exactly those.
    let include = indices
        .iter()
        .map(|name| format!("\"{name}\""))
        .collect::<Vec<_>>()
        .join(", ");
    let source = |pushdown: bool| {
        format!(
            "[sources.search]\nkind = \"elasticsearch\"\nurl = \"{}\"\ninclude = [{include}]\n\
             pushdown = {pushdown}\n",
            search.url
        )
    };
    let pushed = TestGateway::with_catalog(&source(true)).await?;
    let local = TestGateway::with_catalog(&source(false)).await?;
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
    search.delete().await?;
    anyhow::ensure!(failures.is_empty(), "\n{}", failures.join("\n\n"));
    Ok(())
}
