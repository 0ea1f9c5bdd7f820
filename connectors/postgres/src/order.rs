//! ORDER BY pushed to PostgreSQL: DataFusion's required ordering in, an ORDER BY clause out.
//!
//! The order is pushed (and reported exact, which removes DataFusion's sort) only when
//! PostgreSQL orders exactly as DataFusion does:
//! - integers, booleans, dates and timestamps order identically;
//! - text orders by bytes in DataFusion, so PostgreSQL is asked for `COLLATE "C"`, which
//!   also orders by bytes, whatever the column's own collation (columns read as `::text` too);
//! - floats order alike (NaN above every number in both, every NaN read as the positive
//!   one), but for `-0.0`, which DataFusion orders before `0.0` and PostgreSQL ties with it:
//!   SQL leaves ties in any order, so that is no reason to sort a large relation locally;
//! - `char(n)` is not pushed: PostgreSQL ignores trailing blanks, DataFusion sees them;
//! - NULLS FIRST / LAST is always spelled out, since the engines' defaults differ.

use datafusion::arrow::datatypes::DataType;
use datafusion::physical_expr::PhysicalSortExpr;
use datafusion::physical_expr::expressions::Column;

use crate::schema::PgColumn;

/// The ORDER BY clause (without the keywords) for `order` over the scan's `columns`, or
/// `None` when PostgreSQL cannot produce exactly that order.
pub(crate) fn order_by_sql(columns: &[PgColumn], order: &[PhysicalSortExpr]) -> Option<String> {
    if order.is_empty() {
        return None;
    }
    let terms = order
        .iter()
        .map(|sort| {
            let column = columns.get(sort.expr.downcast_ref::<Column>()?.index())?;
            order_term(column, sort.options.descending, sort.options.nulls_first)
        })
        .collect::<Option<Vec<_>>>()?;
    Some(terms.join(", "))
}

/// One ORDER BY term for `column`, or `None` when PostgreSQL cannot order it as DataFusion.
pub(crate) fn order_term(column: &PgColumn, descending: bool, nulls_first: bool) -> Option<String> {
    if !column.orders_exactly() {
        return None;
    }
    let collate = match column.arrow_field().data_type() {
        DataType::Utf8 => " COLLATE \"C\"",
        _ => "",
    };
    let direction = if descending { "DESC" } else { "ASC" };
    let nulls = if nulls_first { "FIRST" } else { "LAST" };
    Some(format!(
        "{}{collate} {direction} NULLS {nulls}",
        column.select_expr()
    ))
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    use datafusion::arrow::compute::SortOptions;

    use super::*;

    fn columns() -> Vec<PgColumn> {
        vec![
            PgColumn::new("id".into(), 20, "bigint".into(), true),
            PgColumn::new("name".into(), 25, "text".into(), false),
            PgColumn::new("price".into(), 701, "double precision".into(), false),
            PgColumn::new("code".into(), 1042, "character(3)".into(), false),
            PgColumn::new("amount".into(), 1700, "numeric".into(), false),
            PgColumn::new("born".into(), 1082, "date".into(), false),
        ]
    }

    fn sort(name: &str, index: usize, descending: bool, nulls_first: bool) -> PhysicalSortExpr {
        PhysicalSortExpr::new(
            Arc::new(Column::new(name, index)),
            SortOptions {
                descending,
                nulls_first,
            },
        )
    }

    fn check(order: &[PhysicalSortExpr], expected: Option<&str>) {
        assert_eq!(
            order_by_sql(&columns(), order).as_deref(),
            expected,
            "{order:?}"
        );
    }

    #[test]
    fn pushes_orders_postgres_reproduces_exactly() {
        check(
            &[sort("id", 0, false, false)],
            Some("\"id\" ASC NULLS LAST"),
        );
        check(
            &[sort("id", 0, true, true)],
            Some("\"id\" DESC NULLS FIRST"),
        );
        check(
            &[sort("name", 1, false, true), sort("id", 0, true, false)],
            Some("\"name\" COLLATE \"C\" ASC NULLS FIRST, \"id\" DESC NULLS LAST"),
        );
        check(
            &[sort("amount", 4, false, false)],
            Some("\"amount\"::text COLLATE \"C\" ASC NULLS LAST"),
        );
        check(
            &[sort("born", 5, true, false)],
            Some("\"born\" DESC NULLS LAST"),
        );
        // Floats: NaN on top in both; -0.0 and 0.0 tie in PostgreSQL, which SQL allows.
        check(
            &[sort("price", 2, true, true), sort("id", 0, false, false)],
            Some("\"price\" DESC NULLS FIRST, \"id\" ASC NULLS LAST"),
        );
    }

    #[test]
    fn keeps_orders_postgres_would_not_reproduce() {
        check(&[sort("code", 3, false, false)], None);
        check(
            &[sort("id", 0, false, false), sort("code", 3, false, false)],
            None,
        );
        check(&[sort("nope", 9, false, false)], None);
        check(&[], None);
    }
}
