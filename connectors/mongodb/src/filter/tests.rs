//! The translation table: SQL predicates and the filters they become, or `None` where MongoDB
//! could not evaluate them exactly.

use std::collections::BTreeMap;

use datafusion::functions::core::expr_fn::get_field;
use datafusion::logical_expr::{col, lit};
use datafusion::prelude::Expr;
use mongodb::bson::Document;

use polygate_connector_core::predicate::like_tokens;

use super::{filter, like_regex};
use crate::schema::{CollectionSchema, Inference};
use crate::types::FieldType;

fn schema() -> CollectionSchema {
    let declared = BTreeMap::from([
        ("n".to_owned(), FieldType::Int64),
        ("i".to_owned(), FieldType::Int32),
        ("s".to_owned(), FieldType::String),
        ("b".to_owned(), FieldType::Bool),
        ("f".to_owned(), FieldType::Double),
        ("d".to_owned(), FieldType::Decimal(2)),
        (
            "t".to_owned(),
            FieldType::Array(Box::new(FieldType::String)),
        ),
        ("j".to_owned(), FieldType::Json),
        ("a.city".to_owned(), FieldType::String),
        ("a.geo.lat".to_owned(), FieldType::Int64),
        ("we.ird".to_owned(), FieldType::Int64),
    ]);
    Inference::default().into_schema(&declared, true)
}

fn true_filter(expr: Expr) -> Option<String> {
    filter(&schema(), &expr).map(|document| relaxed(&document))
}

fn relaxed(document: &Document) -> String {
    mongodb::bson::Bson::Document(document.clone())
        .into_relaxed_extjson()
        .to_string()
}

#[test]
fn predicates_translate_exactly_or_not_at_all() {
    let cases: Vec<(Expr, Option<&str>)> = vec![
        (col("n").eq(lit(5i64)), Some(r#"{"n":{"$eq":5}}"#)),
        (lit(5i64).lt(col("n")), Some(r#"{"n":{"$gt":5}}"#)),
        // <> never matches missing or null fields.
        (
            col("n").not_eq(lit(5i64)),
            Some(r#"{"n":{"$nin":[5,null]}}"#),
        ),
        (
            col("s").in_list(vec![lit("a"), lit("$gt")], true),
            Some(r#"{"s":{"$nin":["a","$gt",null]}}"#),
        ),
        (
            col("s").in_list(vec![lit("a")], false),
            Some(r#"{"s":{"$in":["a"]}}"#),
        ),
        // NOT p is "p is false": NULLs stay out.
        (
            Expr::Not(Box::new(col("n").gt(lit(3i64)))),
            Some(r#"{"n":{"$lte":3}}"#),
        ),
        (
            Expr::Not(Box::new(col("n").eq(lit(1i64)).or(col("s").eq(lit("x"))))),
            Some(r#"{"$and":[{"n":{"$nin":[1,null]}},{"s":{"$nin":["x",null]}}]}"#),
        ),
        (col("n").is_null(), Some(r#"{"n":{"$eq":null}}"#)),
        (col("a").is_not_null(), Some(r#"{"a":{"$ne":null}}"#)),
        (
            col("n").between(lit(1i64), lit(9i64)),
            Some(r#"{"n":{"$gte":1,"$lte":9}}"#),
        ),
        (
            col("s").like(lit("a%b_c.")),
            Some(r#"{"s":{"$regex":"^a[\\s\\S]*b[\\s\\S]c\\.(?![\\s\\S])"}}"#),
        ),
        (col("b"), Some(r#"{"b":{"$eq":true}}"#)),
        (
            get_field(get_field(col("a"), "geo"), "lat").lt_eq(lit(3i64)),
            Some(r#"{"a.geo.lat":{"$lte":3}}"#),
        ),
        (
            get_field(col("a"), "city").eq(lit("Paris")),
            Some(r#"{"a.city":{"$eq":"Paris"}}"#),
        ),
        // Exact only for the types whose comparisons agree.
        (col("f").eq(lit(1.5f64)), None),
        (col("t").is_null(), None),
        (col("j").eq(lit("x")), None),
        (col("we.ird").eq(lit(1i64)), None),
        (col("s").ilike(lit("a%")), None),
        (col("s").like(lit("ends with escape \\")), None),
        (col("s").like(lit("nul\0")), None),
        ((col("n") + lit(1i64)).eq(lit(2i64)), None),
        (col("n").eq(col("i")), None),
    ];
    for (expr, expected) in cases {
        assert_eq!(true_filter(expr.clone()).as_deref(), expected, "{expr}");
    }
}

fn regex(pattern: &str) -> Option<String> {
    like_regex(&like_tokens(pattern)?)
}

#[test]
fn like_patterns_escape_every_regex_character() {
    assert_eq!(regex(r"a\%b\_c\\").as_deref(), Some(r"^a\%b_c\\(?![\s\S])"));
    assert_eq!(
        regex("$where.*+?()[]{}|^").as_deref(),
        Some(r"^\$where\.\*\+\?\(\)\[\]\{\}\|\^(?![\s\S])")
    );
    assert_eq!(regex("é_").as_deref(), Some(r"^é[\s\S](?![\s\S])"));
}
