//! The compilation table: each case is a query over two tables of one source and the
//! statement its sub-plan becomes, or `None` when no sub-plan is pushed. Compiled through
//! DataFusion's real optimizer with core's rule installed, as a session does.

use datafusion::arrow::datatypes::Schema;
use datafusion::execution::SessionStateBuilder;
use datafusion::prelude::SessionContext;
use polygate_connector_core::subplan::{SubPlanQueryPlanner, SubPlanRule};
use polygate_connector_core::{ConnectorFactory, SourceContext, TableRef};

use super::*;
use crate::scan::RelationSize;
use crate::{PostgresConnector, PostgresConnectorFactory, PostgresOptions};

fn remote(pushdown: bool) -> Arc<Remote> {
    let context = SourceContext::new("pg", ".");
    let options = PostgresOptions {
        url: "postgres://nobody@127.0.0.1:1/none".into(),
        schemas: vec!["public".into()],
        connect_timeout_secs: 1,
        pushdown,
        pool_size: 1,
        statement_timeout_secs: 0,
        partition_pages: 4096,
        tls: crate::TlsMode::Prefer,
        tls_ca_file: None,
        unconstrained_numeric: "text".into(),
        include: Vec::new(),
        exclude: Vec::new(),
    };
    let connector = PostgresConnector::new(&context, options).expect("valid options");
    Arc::clone(&connector.remote)
}

fn table(
    remote: &Arc<Remote>,
    name: &str,
    columns: Vec<PgColumn>,
) -> Arc<RemoteTable<PostgresTable>> {
    let schema = Arc::new(Schema::new(
        columns
            .iter()
            .map(PgColumn::arrow_field)
            .collect::<Vec<_>>(),
    ));
    Arc::new(RemoteTable::new(PostgresTable::new(
        Arc::clone(remote),
        TableRef::new("public", name),
        columns,
        schema,
        RelationSize {
            rows: Some(1000),
            pages: None,
        },
    )))
}

/// A session over `orders` and `customers` of one source, and `other` of another.
fn session(pushdown: bool) -> SessionContext {
    let finder = PostgresConnectorFactory::source_finder().expect("postgres has a finder");
    let state = SessionStateBuilder::new()
        .with_default_features()
        .with_optimizer_rule(Arc::new(SubPlanRule::new(vec![finder])))
        .with_query_planner(Arc::new(SubPlanQueryPlanner))
        .build();
    let ctx = SessionContext::new_with_state(state);
    let source = remote(pushdown);
    let orders = table(
        &source,
        "orders",
        vec![
            PgColumn::new("id".into(), 20, "bigint".into(), true),
            PgColumn::new("customer_id".into(), 20, "bigint".into(), false),
            PgColumn::new("qty".into(), 23, "integer".into(), false),
            PgColumn::new("weight".into(), 701, "double precision".into(), false),
            PgColumn::new("amount".into(), 1700, "numeric(10,2)".into(), false),
            PgColumn::new("status".into(), 25, "text".into(), false),
        ],
    );
    let customers = table(
        &source,
        "customers",
        vec![
            PgColumn::new("id".into(), 20, "bigint".into(), true),
            PgColumn::new("name".into(), 25, "text".into(), false),
            PgColumn::new("code".into(), 1042, "character(3)".into(), false),
            PgColumn::new("vip".into(), 16, "boolean".into(), false),
        ],
    );
    let other = table(
        &remote(pushdown),
        "other",
        vec![PgColumn::new("id".into(), 20, "bigint".into(), true)],
    );
    ctx.register_table("orders", orders).expect("registers");
    ctx.register_table("customers", customers)
        .expect("registers");
    ctx.register_table("other", other).expect("registers");
    ctx
}

/// The statement of the sub-plan pushed for `sql`, if one is.
async fn compiled(ctx: &SessionContext, sql: &str) -> Option<String> {
    let plan = ctx
        .sql(sql)
        .await
        .expect("plans")
        .into_optimized_plan()
        .expect("optimizes");
    let text = plan.display_indent().to_string();
    let line = text
        .lines()
        .find(|l| l.contains("SubPlan: source=pg, query="))?;
    Some(line.split_once("query=")?.1.to_owned())
}

#[tokio::test]
async fn sub_plans_compile_to_one_statement() {
    let ctx = session(true);
    let cases: &[(&str, Option<&str>)] = &[
        (
            "SELECT status, count(*), sum(amount), max(status), avg(qty) FROM orders GROUP BY status",
            Some(
                "SELECT * FROM (SELECT \"t2\".\"c0\" AS \"c0\", \"t2\".\"c1\" AS \"c1\", \"t2\".\"c2\" AS \"c2\", \"t2\".\"c3\" AS \"c3\", \"t2\".\"c4\" AS \"c4\" FROM (SELECT \"t1\".\"c2\" AS \"c0\", (count(*))::int8 AS \"c1\", (sum(\"t1\".\"c1\"))::numeric(20,2) AS \"c2\", (max(\"t1\".\"c2\" COLLATE \"C\"))::text AS \"c3\", (avg(((\"t1\".\"c0\")::float8)::float8))::float8 AS \"c4\" FROM (SELECT \"qty\" AS \"c0\", \"amount\" AS \"c1\", \"status\" AS \"c2\" FROM \"public\".\"orders\") AS \"t1\" GROUP BY \"t1\".\"c2\") AS \"t2\") AS \"q\"",
            ),
        ),
        (
            "SELECT c.name, count(*) FROM customers c JOIN orders o ON o.customer_id = c.id WHERE o.status = 'x' GROUP BY c.name",
            Some(
                "SELECT * FROM (SELECT \"t5\".\"c0\" AS \"c0\", \"t5\".\"c1\" AS \"c1\" FROM (SELECT \"t4\".\"c0\" AS \"c0\", (count(*))::int8 AS \"c1\" FROM (SELECT \"t3\".\"c1\" AS \"c0\" FROM (SELECT \"t1\".\"c0\" AS \"c0\", \"t1\".\"c1\" AS \"c1\", \"t2\".\"c0\" AS \"c2\" FROM (SELECT \"id\" AS \"c0\", \"name\" AS \"c1\" FROM \"public\".\"customers\") AS \"t1\" JOIN (SELECT \"customer_id\" AS \"c0\" FROM \"public\".\"orders\" WHERE (\"status\" = $1::text)) AS \"t2\" ON (\"t1\".\"c0\" = \"t2\".\"c0\")) AS \"t3\") AS \"t4\" GROUP BY \"t4\".\"c0\") AS \"t5\") AS \"q\"",
            ),
        ),
        (
            "SELECT id FROM orders UNION ALL SELECT id FROM customers",
            Some(
                "SELECT * FROM ((SELECT \"id\" AS \"c0\" FROM \"public\".\"orders\") UNION ALL (SELECT \"id\" AS \"c0\" FROM \"public\".\"customers\")) AS \"q\"",
            ),
        ),
        // Not pushed: grouping or deduplicating floats and char(n).
        ("SELECT weight, count(*) FROM orders GROUP BY weight", None),
        ("SELECT DISTINCT code FROM customers", None),
        ("SELECT min(weight) FROM orders", None),
        ("SELECT count(DISTINCT weight) FROM orders", None),
        // Not pushed: a join with a table of another source.
        (
            "SELECT count(*) FROM orders o JOIN other t ON t.id = o.id",
            None,
        ),
        // Not pushed: an aggregate function this module has not reasoned about.
        ("SELECT stddev(qty) FROM orders", None),
        // A plain scan is the table provider's, not a sub-plan.
        (
            "SELECT id FROM orders WHERE qty > 3 ORDER BY id LIMIT 2",
            None,
        ),
    ];
    for (sql, expected) in cases {
        assert_eq!(compiled(&ctx, sql).await.as_deref(), *expected, "{sql}");
    }
}

#[tokio::test]
async fn nothing_is_compiled_with_pushdown_off() {
    let ctx = session(false);
    let sql = "SELECT status, count(*) FROM orders GROUP BY status";
    assert_eq!(compiled(&ctx, sql).await, None);
}

#[tokio::test]
async fn an_aggregate_under_a_local_operator_is_still_pushed() {
    // The projection's arithmetic stays with DataFusion; the aggregate below it is pushed.
    let ctx = session(true);
    let sql = "SELECT status, count(*) + 1 FROM orders GROUP BY status";
    let statement = compiled(&ctx, sql).await.expect("the aggregate is pushed");
    assert!(statement.contains("GROUP BY"), "{statement}");
}
