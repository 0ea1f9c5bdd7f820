//! The translation table: each case is a filter and the condition and parameters sent for it,
//! or `None` when it stays with DataFusion.

use datafusion::prelude::{col, lit};

use super::*;

fn columns() -> Vec<PgColumn> {
    vec![
        PgColumn::new("id".into(), 20, "bigint".into(), true),
        PgColumn::new("id2".into(), 20, "bigint".into(), false),
        PgColumn::new("small".into(), 23, "integer".into(), false),
        PgColumn::new("name".into(), 25, "text".into(), false),
        PgColumn::new("code".into(), 1042, "character(3)".into(), false),
        PgColumn::new("price".into(), 701, "double precision".into(), false),
        PgColumn::new("born".into(), 1082, "date".into(), false),
        PgColumn::new(
            "seen".into(),
            1114,
            "timestamp without time zone".into(),
            false,
        ),
        PgColumn::new("at".into(), 1184, "timestamp with time zone".into(), false),
        PgColumn::new("amount".into(), 1700, "numeric".into(), false),
        PgColumn::new("Mixed \"Case\"".into(), 16, "boolean".into(), false),
    ]
}

fn check(expr: Expr, expected: Option<(&str, Vec<Param>)>) {
    let columns = columns();
    let got = FilterSql::translate(&columns, 1, &expr);
    let expected = expected.map(|(sql, params)| (sql.to_owned(), params));
    assert_eq!(got, expected, "{expr}");
}

fn text(s: &str) -> Param {
    Param::Text(s.to_owned())
}

#[test]
fn comparisons_on_ordered_types_are_pushed() {
    check(
        col("id").eq(lit(5_i64)),
        Some(("(\"id\" = $1::int8)", vec![Param::Int64(5)])),
    );
    check(
        col("id").not_eq(lit(5_i64)),
        Some(("(\"id\" <> $1::int8)", vec![Param::Int64(5)])),
    );
    check(
        lit(5_i64).lt(col("id")),
        Some(("($1::int8 < \"id\")", vec![Param::Int64(5)])),
    );
    check(
        col("small").gt_eq(lit(7_i32)),
        Some(("(\"small\" >= $1::int8)", vec![Param::Int64(7)])),
    );
    check(
        col("id").lt_eq(col("id2")),
        Some(("(\"id\" <= \"id2\")", vec![])),
    );
    check(
        col("born").gt(lit(ScalarValue::Date32(Some(19_000)))),
        Some((
            "(\"born\" > $1::date)",
            vec![Param::Date("2022-01-08".parse().expect("date"))],
        )),
    );
    check(
        col("seen").lt(lit(ScalarValue::TimestampMicrosecond(
            Some(1_700_000_000_000_000),
            None,
        ))),
        Some((
            "(\"seen\" < $1::timestamp)",
            vec![Param::Timestamp(
                "2023-11-14T22:13:20".parse().expect("timestamp"),
            )],
        )),
    );
    check(
        col("at").lt(lit(ScalarValue::TimestampMicrosecond(
            Some(0),
            Some("UTC".into()),
        ))),
        Some((
            "(\"at\" < $1::timestamptz)",
            vec![Param::TimestampTz(
                DateTime::from_timestamp_micros(0).expect("epoch"),
            )],
        )),
    );
    check(
        col("Mixed \"Case\"").eq(lit(true)),
        Some((
            "(\"Mixed \"\"Case\"\"\" = $1::bool)",
            vec![Param::Bool(true)],
        )),
    );
}

#[test]
fn text_is_pushed_with_ranges_in_byte_order() {
    check(
        col("name").eq(lit("Ada")),
        Some(("(\"name\" = $1::text)", vec![text("Ada")])),
    );
    check(
        col("name").not_eq(lit("Ada")),
        Some(("(\"name\" <> $1::text)", vec![text("Ada")])),
    );
    check(
        col("name").gt(lit("Ada")),
        Some(("(\"name\" COLLATE \"C\" > $1::text)", vec![text("Ada")])),
    );
    check(
        lit("Ada").lt_eq(col("name")),
        Some(("($1::text <= \"name\" COLLATE \"C\")", vec![text("Ada")])),
    );
    check(
        col("name").between(lit("a"), lit("b")),
        Some((
            "(\"name\" COLLATE \"C\" BETWEEN $1::text AND $2::text)",
            vec![text("a"), text("b")],
        )),
    );
    check(
        col("name").like(lit("A%")),
        Some(("(\"name\" LIKE $1::text)", vec![text("A%")])),
    );
    check(
        col("name").not_like(lit("A\\%%")),
        Some(("(\"name\" NOT LIKE $1::text)", vec![text("A\\%%")])),
    );
    check(col("name").ilike(lit("a%")), None);
    // Columns read as text are compared on the text PostgreSQL sends.
    check(
        col("amount").eq(lit("12.50")),
        Some(("(\"amount\"::text = $1::text)", vec![text("12.50")])),
    );
}

#[test]
fn floats_and_blank_padded_text_stay_with_datafusion() {
    check(col("price").eq(lit(1.5_f64)), None);
    check(
        col("price").is_null(),
        Some(("(\"price\" IS NULL)", vec![])),
    );
    check(col("code").eq(lit("ab")), None);
    check(col("code").like(lit("ab%")), None);
}

#[test]
fn hostile_values_are_parameters_never_sql() {
    for hostile in [
        "x' OR 1=1 --",
        "x\\' OR 1=1 --",
        "'; DROP TABLE t; --",
        "$1",
        "\"",
        "ü 🐘",
    ] {
        let columns = columns();
        let (sql, params) =
            FilterSql::translate(&columns, 1, &col("name").eq(lit(hostile))).expect("pushed");
        assert_eq!(sql, "(\"name\" = $1::text)");
        assert_eq!(params, vec![text(hostile)]);
    }
}

#[test]
fn logic_in_lists_and_between() {
    check(
        col("id")
            .eq(lit(1_i64))
            .and(col("name").eq(lit("a")).or(col("id").is_not_null())),
        Some((
            "((\"id\" = $1::int8) AND ((\"name\" = $2::text) OR (\"id\" IS NOT NULL)))",
            vec![Param::Int64(1), text("a")],
        )),
    );
    check(
        Expr::Not(Box::new(col("id").eq(lit(1_i64)))),
        Some(("(NOT (\"id\" = $1::int8))", vec![Param::Int64(1)])),
    );
    check(
        col("id").in_list(vec![lit(1_i64), lit(2_i64)], false),
        Some((
            "(\"id\" = ANY($1::int8[]))",
            vec![Param::Int64List(vec![Some(1), Some(2)])],
        )),
    );
    check(
        col("name").in_list(vec![lit("a"), lit("b")], true),
        Some((
            "(\"name\" <> ALL($1::text[]))",
            vec![Param::TextList(vec![Some("a".into()), Some("b".into())])],
        )),
    );
    check(
        col("id").between(lit(1_i64), lit(9_i64)),
        Some((
            "(\"id\" BETWEEN $1::int8 AND $2::int8)",
            vec![Param::Int64(1), Param::Int64(9)],
        )),
    );
    check(
        col("id").not_between(lit(1_i64), lit(9_i64)),
        Some((
            "(\"id\" NOT BETWEEN $1::int8 AND $2::int8)",
            vec![Param::Int64(1), Param::Int64(9)],
        )),
    );
    // One part that cannot be pushed keeps the whole expression local.
    check(
        col("id").eq(lit(1_i64)).or(col("price").gt(lit(1.0_f64))),
        None,
    );
}

#[test]
fn anything_unproven_stays_with_datafusion() {
    // A literal of another type than the column: a cast this module does not reason about.
    check(col("id").eq(lit(5_i32)), None);
    check(col("id").eq(lit("5")), None);
    // Expressions over columns.
    check((col("id") + lit(1_i64)).eq(lit(5_i64)), None);
    check(col("unknown").eq(lit(5_i64)), None);
    check(lit(1_i64).eq(lit(1_i64)), None);
    // Columns of different types.
    check(col("id").eq(col("small")), None);
}

#[test]
fn numbering_starts_where_asked() {
    let columns = columns();
    let (sql, _) = FilterSql::translate(&columns, 4, &col("id").between(lit(1_i64), lit(2_i64)))
        .expect("pushed");
    assert_eq!(sql, "(\"id\" BETWEEN $4::int8 AND $5::int8)");
}

#[test]
fn boolean_columns_are_conditions() {
    check(
        col("Mixed \"Case\""),
        Some(("(\"Mixed \"\"Case\"\"\")", vec![])),
    );
    check(
        (!col("Mixed \"Case\"")).or(col("id").eq(lit(1_i64))),
        Some((
            "((NOT (\"Mixed \"\"Case\"\"\")) OR (\"id\" = $1::int8))",
            vec![Param::Int64(1)],
        )),
    );
    // Only booleans: a bare column of another type is not a condition.
    check(col("id"), None);
}
