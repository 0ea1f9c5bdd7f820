//! Each rule's table of cases: syntax rules on statements, plan rules on a bare DataFusion
//! session with `pg_catalog` installed over one in-memory source.

use std::sync::{Arc, RwLock};

use datafusion::arrow::array::{Int32Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::catalog::{
    CatalogProvider, MemoryCatalogProvider, MemorySchemaProvider, SchemaProvider,
};
use datafusion::datasource::MemTable;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

use super::*;
use crate::introspection::{self, SEARCH_PATH_SCHEMA, SessionInfo, StaticTables};
use crate::parser::PgParser;
use crate::settings::{SessionDefaults, Settings};
use crate::statement::Command;

/// `sql` parsed, rewritten by the syntax rules and printed.
fn rewritten(sql: &str) -> String {
    let mut statement = Parser::parse_sql(&PostgreSqlDialect {}, sql)
        .expect("parses")
        .remove(0);
    rewrite(&mut statement);
    statement.to_string()
}

#[test]
fn every_rule_has_a_name_and_a_reason() {
    let mut names: Vec<&str> = RULES.iter().map(|rule| rule.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), RULES.len(), "rule names are unique");
    for rule in RULES {
        assert!(rule.reason.len() > 40, "{}: say why", rule.name);
    }
}

#[test]
fn patterns_are_escaped_by_backslashes() {
    let cases = [
        ("pg/_%", '/', "pg\\_%"),
        ("a//b", '/', "a\\/b"),
        ("100#%", '#', "100\\%"),
        ("back\\slash", '/', "back\\\\slash"),
        ("plain", '/', "plain"),
    ];
    for (pattern, escape, expected) in cases {
        assert_eq!(backslash_escaped(pattern, escape), expected, "{pattern}");
    }
}

#[test]
fn like_escape() {
    let cases = [
        (
            "SELECT 1 WHERE a NOT LIKE $1 || '%' ESCAPE '/' AND b ILIKE 'x' ESCAPE '\\'",
            "SELECT 1 WHERE a NOT LIKE pg_like_escape(($1 || '%'), '/') ESCAPE '\\' AND b ILIKE 'x' ESCAPE '\\'",
        ),
        (
            "SELECT 1 WHERE a LIKE 'x' ESCAPE ''''",
            "SELECT 1 WHERE a LIKE pg_like_escape(('x'), '''') ESCAPE '\\'",
        ),
        ("SELECT 1 WHERE a LIKE 'x%'", "SELECT 1 WHERE a LIKE 'x%'"),
    ];
    for (sql, expected) in cases {
        assert_eq!(rewritten(sql), expected, "{sql}");
    }
}

#[test]
fn regclass_of_text() {
    let cases = [
        (
            "SELECT col_description(CAST(CAST(FORMAT('%I.%I', t.s, t.n) AS REGCLASS) AS OID), 1), CAST(a.attrelid AS REGCLASS) FROM t, pg_attribute a",
            "SELECT col_description(CAST((SELECT first_value(pg_regclass.pg_oid) FROM (SELECT c.oid AS pg_oid, c.relname AS pg_relname, n.nspname AS pg_nspname FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON c.relnamespace = n.oid) AS pg_regclass WHERE pg_regclass.pg_nspname = CASE WHEN array_length(parse_ident(FORMAT('%I.%I', t.s, t.n)), 1) = 2 THEN parse_ident(FORMAT('%I.%I', t.s, t.n))[1] ELSE current_schema() END AND pg_regclass.pg_relname = parse_ident(FORMAT('%I.%I', t.s, t.n))[CAST(array_length(parse_ident(FORMAT('%I.%I', t.s, t.n)), 1) AS BIGINT)]) AS OID), 1), CAST(a.attrelid AS REGCLASS) FROM t, pg_attribute a",
        ),
        // An oid to a name is the other way round; a literal is the library's.
        (
            "SELECT CAST(attrelid AS regclass), 't'::regclass FROM a",
            "SELECT CAST(attrelid AS REGCLASS), 't'::REGCLASS FROM a",
        ),
    ];
    for (sql, expected) in cases {
        assert_eq!(rewritten(sql), expected, "{sql}");
    }
}

#[test]
fn generate_subscripts() {
    let sql = "SELECT unnest(i.indkey) AS attnum, generate_subscripts(i.indkey, $1::INTEGER) AS ord FROM pg_catalog.pg_index i";
    assert_eq!(
        rewritten(sql),
        "SELECT unnest(i.indkey) AS attnum, unnest(range(array_lower(i.indkey, $1::INTEGER), array_upper(i.indkey, $1::INTEGER) + 1)) AS ord FROM pg_catalog.pg_index i"
    );
}

#[test]
fn array_of_unnest() {
    let cases = [
        // DataGrip's exclusion operators: a map.
        (
            "SELECT array(SELECT unnest::regoper::varchar FROM unnest(conexclop)) FROM pg_catalog.pg_constraint",
            "SELECT array_transform(pg_empty_if_null(conexclop), pg_element -> pg_element::regoper::VARCHAR) AS \"array\" FROM pg_catalog.pg_constraint",
        ),
        // DataGrip's extension updates: a filter reading the enclosing row.
        (
            "SELECT array(SELECT unnest FROM unnest(available_versions) WHERE unnest > extversion) FROM e",
            "SELECT array_filter(pg_empty_if_null(available_versions), pg_element -> pg_element > extversion) AS \"array\" FROM e",
        ),
        // Aliases name the element; a qualified reference too.
        (
            "SELECT ARRAY(SELECT v.k * 2 FROM unnest(a) AS v(k) WHERE k > 1) FROM t",
            "SELECT array_transform(array_filter(pg_empty_if_null(a), pg_element -> pg_element > 1), pg_element -> pg_element * 2) AS \"array\" FROM t",
        ),
        (
            "SELECT ARRAY(SELECT u FROM unnest(t.a) u) FROM t",
            "SELECT pg_empty_if_null(t.a) AS \"array\" FROM t",
        ),
        // Other subqueries, and ordered ones, are left alone.
        (
            "SELECT ARRAY(SELECT x FROM t2 WHERE t2.id = t.id) FROM t",
            "SELECT ARRAY(SELECT x FROM t2 WHERE t2.id = t.id) FROM t",
        ),
        (
            "SELECT ARRAY(SELECT u FROM unnest(a) u ORDER BY u) FROM t",
            "SELECT ARRAY(SELECT u FROM UNNEST(a) u ORDER BY u) FROM t",
        ),
        // Quoted names are exact: "U" is the outer column, u the element.
        (
            "SELECT ARRAY(SELECT u FROM unnest(a) u WHERE u > \"U\") FROM t",
            "SELECT array_filter(pg_empty_if_null(a), pg_element -> pg_element > \"U\") AS \"array\" FROM t",
        ),
        // Inside a catalog subquery, still a lambda (the plan rules see it later).
        (
            "SELECT (SELECT ARRAY(SELECT u FROM unnest(c.conkey) u WHERE u > 1) FROM pg_catalog.pg_constraint c WHERE c.conrelid = t.oid) FROM t",
            "SELECT (SELECT array_filter(pg_empty_if_null(c.conkey), pg_element -> pg_element > 1) AS \"array\" FROM pg_catalog.pg_constraint c WHERE c.conrelid = t.oid) FROM t",
        ),
        (
            "SELECT ARRAY(SELECT u FROM unnest(a) u WHERE u IN (SELECT x FROM s)) FROM t",
            "SELECT ARRAY(SELECT u FROM UNNEST(a) u WHERE u IN (SELECT x FROM s)) FROM t",
        ),
        (
            "SELECT ARRAY(SELECT count(*) FROM unnest(a) u) FROM t",
            "SELECT ARRAY(SELECT count(*) FROM UNNEST(a) u) FROM t",
        ),
        (
            "SELECT ARRAY(SELECT DISTINCT u FROM unnest(a) u) FROM t",
            "SELECT ARRAY(SELECT DISTINCT u FROM UNNEST(a) u) FROM t",
        ),
    ];
    for (sql, expected) in cases {
        assert_eq!(rewritten(sql), expected, "{sql}");
    }
}

#[test]
fn expand_array_and_field_selection() {
    let cases = [
        (
            "SELECT (information_schema._pg_expandarray(i.indkey)).n AS key_seq, information_schema._pg_expandarray(i.indkey) AS keys FROM pg_catalog.pg_index i",
            "SELECT (unnest(pg_expandarray(i.indkey))).'n' AS key_seq, unnest(pg_expandarray(i.indkey)) AS keys FROM pg_catalog.pg_index i",
        ),
        (
            "SELECT * FROM r WHERE r.a_attnum = (r.KEYS).X AND (r.keys).\"N\" = 1",
            "SELECT * FROM r WHERE r.a_attnum = (r.KEYS).'x' AND (r.keys).'N' = 1",
        ),
        // Unaliased, the columns have PostgreSQL's names.
        (
            "SELECT (information_schema._pg_expandarray(a)).n, information_schema._pg_expandarray(a) FROM t",
            "SELECT (unnest(pg_expandarray(a))).'n' AS \"n\", unnest(pg_expandarray(a)) AS \"_pg_expandarray\" FROM t",
        ),
        // Not a name another column has (DataFusion allows none twice), nor beside `*`.
        (
            "SELECT r.n, (r.keys).n FROM r",
            "SELECT r.n, (r.keys).'n' FROM r",
        ),
        (
            "SELECT *, (r.keys).n FROM r",
            "SELECT *, (r.keys).'n' FROM r",
        ),
        // Names before a subscript name the column (pgjdbc's getIndexInfo).
        (
            "SELECT tmp.I_INDOPTION[tmp.ORDINAL_POSITION - 1] & 1 FROM tmp",
            "SELECT tmp.I_INDOPTION[tmp.ORDINAL_POSITION - 1] & 1 FROM tmp",
        ),
    ];
    for (sql, expected) in cases {
        assert_eq!(rewritten(sql), expected, "{sql}");
    }
}

/// A bare DataFusion session with PostgreSQL's catalogs, the plan rules, and one source
/// schema `public` holding `t(k int4 NOT NULL, v text)` with rows (1, 'a') and (2, 'b'), and
/// `u`, of the same columns, empty.
fn session() -> SessionContext {
    let config = SessionConfig::new()
        .with_create_default_catalog_and_schema(false)
        .with_default_catalog_and_schema("polygate", SEARCH_PATH_SCHEMA);
    let state = SessionStateBuilder::new()
        .with_config(config)
        .with_default_features();
    let ctx = SessionContext::new_with_state(with_plan_rules(state).build());
    let schema = Arc::new(Schema::new(vec![
        Field::new("k", DataType::Int32, false),
        Field::new("v", DataType::Utf8, true),
    ]));
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            Arc::new(Int32Array::from(vec![1, 2])),
            Arc::new(StringArray::from(vec!["a", "b"])),
        ],
    )
    .expect("a batch");
    let public = MemorySchemaProvider::new();
    let empty = MemTable::try_new(Arc::clone(&schema), vec![vec![]]).expect("a table");
    public
        .register_table(
            "t".to_owned(),
            Arc::new(MemTable::try_new(schema, vec![vec![batch]]).expect("a table")),
        )
        .expect("registers");
    public
        .register_table("u".to_owned(), Arc::new(empty))
        .expect("registers");
    let sources = MemoryCatalogProvider::new();
    sources
        .register_schema("public", Arc::new(public))
        .expect("registers");
    let info = SessionInfo {
        user: "u".to_owned(),
        database: "polygate".to_owned(),
        settings: Arc::new(RwLock::new(Settings::new(&SessionDefaults::default()))),
        sources: Arc::new(sources),
        started: std::time::SystemTime::now(),
    };
    let tables = StaticTables::load().expect("static tables");
    introspection::install(&ctx, &tables, Arc::new(info)).expect("installs");
    ctx
}

/// The answer to `sql`, one line a row with columns joined by `|`, or the error.
async fn answer(ctx: &SessionContext, sql: &str) -> Result<Vec<String>, String> {
    let (plan, _) = analyzed(ctx, sql).await?;
    let batches = ctx
        .execute_logical_plan(plan)
        .await
        .map_err(|e| e.to_string())?
        .collect()
        .await
        .map_err(|e| e.to_string())?;
    let mut rows = Vec::new();
    for batch in &batches {
        for row in 0..batch.num_rows() {
            let cells: Vec<String> = batch
                .columns()
                .iter()
                .map(|column| {
                    datafusion::arrow::util::display::array_value_to_string(column, row)
                        .unwrap_or_default()
                })
                .collect();
            rows.push(cells.join("|"));
        }
    }
    Ok(rows)
}

/// The plan of `sql`, and the analyzed plan printed.
async fn analyzed(
    ctx: &SessionContext,
    sql: &str,
) -> Result<(datafusion::logical_expr::LogicalPlan, String), String> {
    let mut commands = crate::commands(&PgParser::new(), sql).map_err(|e| e.to_string())?;
    let Some(Command::Query(statement)) = commands.pop() else {
        return Err("not a query".to_owned());
    };
    let state = ctx.state();
    let plan = state
        .statement_to_plan(DfStatement::Statement(statement))
        .await
        .map_err(|e| e.to_string())?;
    let analyzed = state
        .analyzer()
        .execute_and_check(plan.clone(), state.config_options(), |_, _| {})
        .map_err(|e| e.to_string())?;
    Ok((plan, analyzed.display_indent().to_string()))
}

/// The columns of `t` in `pg_attribute`, for the enclosing queries below.
const ATTRIBUTES: &str = "FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c ON \
                          a.attrelid = c.oid WHERE c.relname = 't' ORDER BY a.attnum";

#[tokio::test]
async fn catalog_lookups_are_reshaped_and_answer_as_postgresql() {
    let ctx = session();
    // (rule, select list over `a`, the analyzed plan shows, PostgreSQL's answer)
    let cases = [
        (
            "aggregate_lookup",
            "a.attname, (SELECT t.typname FROM pg_catalog.pg_type t WHERE t.oid = a.atttypid)",
            "first_value(t.typname)",
            vec!["k|int4", "v|text"],
        ),
        (
            "guarded_lookup",
            "a.attname, CASE WHEN a.attnum = 1 THEN (SELECT t.typname FROM pg_catalog.pg_type t \
             WHERE t.oid = a.atttypid) ELSE NULL END",
            "first_value(t.typname)",
            vec!["k|int4", "v|"],
        ),
        (
            "guarded_lookup, with a lookup in its condition",
            "a.attname, CASE WHEN (SELECT t.typname FROM pg_catalog.pg_type t WHERE t.oid = \
             a.atttypid) = 'text' THEN (SELECT k.relname FROM pg_catalog.pg_class k WHERE \
             k.relnamespace = c.relnamespace AND k.relname = 't') END",
            "first_value(k.relname)",
            vec!["k|", "v|t"],
        ),
        (
            "fold_outer_conditions",
            "a.attname, (SELECT t.typname FROM pg_catalog.pg_type t WHERE t.oid = a.atttypid \
             AND a.attnum = 2)",
            "CASE WHEN",
            vec!["k|", "v|text"],
        ),
        (
            "fold_outer_conditions, an outer value compared otherwise",
            "a.attname, (SELECT t.typname FROM pg_catalog.pg_type t WHERE t.oid = a.atttypid \
             AND t.typlen <> a.atttypid)",
            "!= t.oid",
            vec!["k|int4", "v|text"],
        ),
        (
            "guarded_lookup refused: a condition TRUE where its lookup finds no row",
            "a.attname, CASE WHEN (SELECT d.adbin FROM pg_catalog.pg_attrdef d WHERE \
             d.adrelid = a.attrelid AND d.adnum = a.attnum) IS NULL THEN (SELECT t.typname \
             FROM pg_catalog.pg_type t WHERE t.oid = a.atttypid) END",
            "first_value(t.typname)",
            vec!["k|int4", "v|text"],
        ),
        (
            "lift_outer_columns",
            "a.attname, (SELECT a.attname || ':' || t.typname FROM pg_catalog.pg_type t WHERE \
             t.oid = a.atttypid)",
            "pg_if_found",
            vec!["k|k:int4", "v|v:text"],
        ),
        (
            "lift_outer_columns, no row found",
            "a.attname, (SELECT a.attname || t.typname FROM pg_catalog.pg_type t WHERE t.oid = \
             a.atttypid + 100000)",
            "pg_if_found",
            vec!["k|", "v|"],
        ),
    ];
    for (rule, select, shown, expected) in cases {
        let sql = format!("SELECT {select} {ATTRIBUTES}");
        let (_, plan) = analyzed(&ctx, &sql).await.expect(rule);
        assert!(plan.contains(shown), "{rule}: {plan}");
        let expected: Vec<String> = expected.into_iter().map(str::to_owned).collect();
        assert_eq!(answer(&ctx, &sql).await, Ok(expected), "{rule}");
    }
}

#[tokio::test]
async fn a_computed_regclass_reads_the_enclosing_row() {
    let ctx = session();
    // The name's columns are the enclosing query's, whatever the lookup's own tables are.
    let sql = "SELECT c.relname, CAST(CAST(c.relname AS text) AS regclass)::oid = c.oid AS a, \
               CAST(relname || '' AS regclass)::oid = c.oid AS b FROM pg_catalog.pg_class c \
               WHERE c.relname IN ('t', 'u') ORDER BY c.relname";
    assert_eq!(
        answer(&ctx, sql).await,
        Ok(vec!["t|true|true".to_owned(), "u|true|true".to_owned()])
    );
}

#[tokio::test]
async fn like_escape_accepts_no_escape_character() {
    let ctx = session();
    let sql = "SELECT 'a\\b' LIKE 'a\\b' ESCAPE '', 'a%' LIKE 'a/%' ESCAPE '/', 'ab' LIKE 'a/%' ESCAPE '/'";
    assert_eq!(
        answer(&ctx, sql).await,
        Ok(vec!["true|true|false".to_owned()])
    );
}

#[tokio::test]
async fn subqueries_over_sources_are_left_to_datafusion() {
    let ctx = session();
    // Not aggregated into one silent answer: refused, as DataFusion refuses it.
    let error = answer(
        &ctx,
        "SELECT (SELECT u.v FROM public.t u WHERE u.k = t.k) FROM public.t",
    )
    .await
    .expect_err("not reshaped");
    assert!(error.contains("must be aggregated"), "{error}");
    // Uncorrelated, or aggregated already: as written.
    assert_eq!(
        answer(&ctx, "SELECT (SELECT count(*) FROM public.t) AS n").await,
        Ok(vec!["2".to_owned()])
    );
    assert_eq!(
        answer(
            &ctx,
            "SELECT t.k, (SELECT count(*) FROM pg_catalog.pg_attribute a JOIN pg_catalog.pg_class c \
             ON a.attrelid = c.oid WHERE c.relname = 't' AND a.attnum = t.k) FROM public.t ORDER BY t.k"
        )
        .await,
        Ok(vec!["1|1".to_owned(), "2|1".to_owned()])
    );
}

#[tokio::test]
async fn correlated_columns_of_one_name_stay_apart() {
    let ctx = session();
    // (query, PostgreSQL's answer)
    let cases = [
        (
            "SELECT o.k, (SELECT count(*) FROM public.t x, public.t y WHERE x.k = o.k AND y.k = o.k) \
             FROM public.t o ORDER BY o.k"
                .to_owned(),
            vec!["1|1", "2|1"],
        ),
        (
            "SELECT o.k, (SELECT count(*) FROM public.t x, public.t y WHERE x.k = o.k AND y.k = \
             3 - o.k) FROM public.t o ORDER BY o.k"
                .to_owned(),
            vec!["1|1", "2|1"],
        ),
        (
            "SELECT o.k FROM public.t o WHERE EXISTS (SELECT 1 FROM public.t x, public.t y WHERE \
             x.k = o.k AND y.k = 3 - o.k AND y.v = 'b') ORDER BY o.k"
                .to_owned(),
            vec!["1"],
        ),
        // A guarded lookup whose condition's lookup joins its FROM: two `oid`s.
        (
            format!(
                "SELECT a.attname, CASE WHEN (SELECT t.typname FROM pg_catalog.pg_type t WHERE \
                 t.oid = a.atttypid) = 'text' THEN (SELECT n.nspname FROM pg_catalog.pg_namespace \
                 n WHERE n.oid = c.relnamespace) END {ATTRIBUTES}"
            ),
            vec!["k|", "v|public"],
        ),
    ];
    for (sql, expected) in cases {
        let expected: Vec<String> = expected.into_iter().map(str::to_owned).collect();
        assert_eq!(answer(&ctx, &sql).await, Ok(expected), "{sql}");
    }
}
