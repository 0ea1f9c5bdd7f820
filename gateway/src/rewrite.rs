//! Rewrites of PostgreSQL syntax that DataFusion does not plan as written, applied after
//! `datafusion-pg-catalog`'s own (which cover `::regclass`, `OPERATOR(...)`, `COLLATE`, ...).
//!
//! - `x LIKE p ESCAPE 'c'` with an escape character other than a backslash (SQLAlchemy writes
//!   `ESCAPE '/'`): DataFusion only takes the backslash, so `p` becomes
//!   `pg_like_escape(p, 'c')`, the same pattern escaped by backslashes.
//! - A scalar subquery over catalog tables only (`(SELECT pg_get_expr(adbin, adrelid) FROM
//!   pg_catalog.pg_attrdef WHERE ...)`, as SQLAlchemy and JDBC write them): DataFusion wants a
//!   correlated scalar subquery aggregated, so its one column becomes `first_value(...)`.
//!   Catalog lookups are by key and return at most one row; subqueries over sources are left
//!   alone, where PostgreSQL's "more than one row" error must not turn into a silent answer.
//! - `CASE WHEN c THEN (SELECT ... catalog ...) ELSE NULL END`: DataFusion cannot run a
//!   correlated subquery inside CASE, so `c` moves into the subquery's WHERE, which gives the
//!   same NULL when `c` does not hold.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    Expr, GroupByExpr, Query, Select, SelectItem, SetExpr, Statement, TableFactor, Value,
    visit_expressions_mut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

/// The function the LIKE rewrite calls; see [`backslash_escaped`].
pub const LIKE_ESCAPE_FUNCTION: &str = "pg_like_escape";

/// Applies every rewrite to `statement`.
pub fn rewrite(statement: &mut Statement) {
    let _ = visit_expressions_mut(statement, |expr| {
        if let Expr::Like {
            pattern,
            escape_char,
            ..
        }
        | Expr::ILike {
            pattern,
            escape_char,
            ..
        } = expr
            && let Some(escape) = escape_char.as_ref().and_then(|e| escape_text(&e.value))
            && escape != "\\"
            && let Some(rewritten) = call_like_escape(pattern, &escape)
        {
            **pattern = rewritten;
            *escape_char = Some(Value::SingleQuotedString("\\".to_owned()).into());
        }
        if let Some(subquery) = guarded_catalog_subquery(expr) {
            *expr = subquery;
        }
        if let Expr::Subquery(query) = expr {
            aggregate_catalog_subquery(query);
        }
        ControlFlow::<()>::Continue(())
    });
}

/// `CASE WHEN c THEN (catalog subquery) [ELSE NULL] END` as the subquery filtered by `c`.
fn guarded_catalog_subquery(expr: &Expr) -> Option<Expr> {
    let Expr::Case {
        operand: None,
        conditions,
        else_result,
        ..
    } = expr
    else {
        return None;
    };
    let [when] = conditions.as_slice() else {
        return None;
    };
    let else_is_null = match else_result.as_deref() {
        None => true,
        Some(Expr::Value(value)) => matches!(value.value, Value::Null),
        Some(_) => false,
    };
    let Expr::Subquery(query) = &when.result else {
        return None;
    };
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    if !else_is_null || !reads_only_catalog(select) {
        return None;
    }
    let mut query = query.clone();
    let SetExpr::Select(select) = query.body.as_mut() else {
        return None;
    };
    let condition = Expr::Nested(Box::new(when.condition.clone()));
    select.selection = Some(match select.selection.take() {
        Some(selection) => parse_expr(&format!("({selection}) AND {condition}"))?,
        None => condition,
    });
    aggregate_catalog_subquery(&mut query);
    Some(Expr::Subquery(query))
}

/// Wraps the single column of a scalar subquery over catalog tables in `first_value`.
fn aggregate_catalog_subquery(query: &mut Query) {
    let SetExpr::Select(select) = query.body.as_mut() else {
        return;
    };
    let ungrouped = matches!(&select.group_by, GroupByExpr::Expressions(e, _) if e.is_empty());
    if !ungrouped
        || !reads_only_catalog(select)
        || select.projection.len() != 1
        || select.having.is_some()
    {
        return;
    }
    let expr = match &mut select.projection[0] {
        SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } => expr,
        _ => return,
    };
    if is_aggregate(expr) {
        return;
    }
    if let Some(wrapped) = parse_expr(&format!("first_value({expr})")) {
        *expr = wrapped;
    }
}

/// Does `select` read catalog tables, and nothing else?
fn reads_only_catalog(select: &Select) -> bool {
    !select.from.is_empty()
        && select.from.iter().all(|from| {
            is_catalog_table(&from.relation)
                && from
                    .joins
                    .iter()
                    .all(|join| is_catalog_table(&join.relation))
        })
}

fn is_catalog_table(relation: &TableFactor) -> bool {
    let TableFactor::Table { name, .. } = relation else {
        return false;
    };
    let parts: Vec<String> = name
        .0
        .iter()
        .filter_map(|part| part.as_ident())
        .map(|ident| ident.value.to_ascii_lowercase())
        .collect();
    match parts.as_slice() {
        [schema, _] => schema == "pg_catalog" || schema == "information_schema",
        [table] => table.starts_with("pg_"),
        _ => false,
    }
}

fn is_aggregate(expr: &Expr) -> bool {
    const AGGREGATES: &[&str] = &[
        "count",
        "min",
        "max",
        "sum",
        "avg",
        "array_agg",
        "string_agg",
        "bool_and",
        "bool_or",
        "json_agg",
        "jsonb_agg",
        "first_value",
        "last_value",
    ];
    match expr {
        Expr::Function(function) => {
            let name = function.name.to_string().to_ascii_lowercase();
            let name = name.rsplit('.').next().unwrap_or(&name);
            AGGREGATES.contains(&name)
        }
        Expr::Nested(inner) | Expr::Cast { expr: inner, .. } => is_aggregate(inner),
        _ => false,
    }
}

fn parse_expr(sql: &str) -> Option<Expr> {
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(sql)
        .ok()?
        .parse_expr()
        .ok()
}

fn escape_text(value: &Value) -> Option<String> {
    match value {
        Value::SingleQuotedString(s) | Value::EscapedStringLiteral(s) => Some(s.clone()),
        _ => None,
    }
}

fn call_like_escape(pattern: &Expr, escape: &str) -> Option<Expr> {
    let quoted = escape.replace('\'', "''");
    parse_expr(&format!("{LIKE_ESCAPE_FUNCTION}(({pattern}), '{quoted}')"))
}

/// `pattern`, whose escape character is `escape`, rewritten to escape with a backslash:
/// `escape` followed by a character becomes a backslash and that character, and a backslash
/// of the pattern (an ordinary character there) becomes an escaped backslash.
pub fn backslash_escaped(pattern: &str, escape: char) -> String {
    let mut out = String::with_capacity(pattern.len() + 4);
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c == escape {
            out.push('\\');
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else if c == '\\' {
            out.push_str("\\\\");
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

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
    fn scalar_subqueries_over_the_catalog_are_aggregated_and_others_are_not() {
        let cases = [
            (
                "SELECT (SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_catalog.pg_attrdef d WHERE d.adrelid = a.attrelid) FROM pg_attribute a",
                "SELECT (SELECT first_value(pg_get_expr(d.adbin, d.adrelid)) FROM pg_catalog.pg_attrdef d WHERE d.adrelid = a.attrelid) FROM pg_attribute a",
            ),
            (
                "SELECT CASE WHEN a.atthasdef THEN (SELECT d.adbin FROM pg_catalog.pg_attrdef d WHERE d.adnum = a.attnum) ELSE NULL END FROM pg_attribute a",
                "SELECT (SELECT first_value(d.adbin) FROM pg_catalog.pg_attrdef d WHERE (d.adnum = a.attnum) AND (a.atthasdef)) FROM pg_attribute a",
            ),
            (
                "SELECT (SELECT count(*) FROM pg_class) AS n",
                "SELECT (SELECT count(*) FROM pg_class) AS n",
            ),
            (
                "SELECT (SELECT o.total FROM shop.orders o WHERE o.id = c.id) FROM shop.customers c",
                "SELECT (SELECT o.total FROM shop.orders o WHERE o.id = c.id) FROM shop.customers c",
            ),
        ];
        for (sql, expected) in cases {
            let mut statement = Parser::parse_sql(&PostgreSqlDialect {}, sql)
                .expect("parses")
                .remove(0);
            rewrite(&mut statement);
            assert_eq!(statement.to_string(), expected);
        }
    }

    #[test]
    fn like_with_another_escape_calls_the_function() {
        let sql = "SELECT 1 WHERE a NOT LIKE $1 || '%' ESCAPE '/' AND b ILIKE 'x' ESCAPE '\\'";
        let mut statement = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .expect("parses")
            .remove(0);
        rewrite(&mut statement);
        assert_eq!(
            statement.to_string(),
            "SELECT 1 WHERE a NOT LIKE pg_like_escape(($1 || '%'), '/') ESCAPE '\\' AND b ILIKE 'x' ESCAPE '\\'"
        );
    }
}
