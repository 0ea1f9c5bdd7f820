//! The query DSL leaves: SQL predicates and the queries they become, or `None`.

use datafusion::logical_expr::{col, lit};
use datafusion::prelude::get_field;

use super::*;
use crate::dates::DateFormats;
use crate::schema::ExactField;

fn fields() -> Vec<Field> {
    let field = |name: &str, kind: Kind| Field {
        name: name.to_owned(),
        kind,
        list: false,
        searchable: true,
    };
    vec![
        field("k", Kind::Keyword { ignore_above: None }),
        field(
            "short",
            Kind::Keyword {
                ignore_above: Some(5),
            },
        ),
        field(
            "title",
            Kind::Text {
                exact: Some(ExactField {
                    name: "keyword".into(),
                    ignore_above: Some(256),
                }),
            },
        ),
        field(
            "body",
            Kind::Text {
                exact: Some(ExactField {
                    name: "raw".into(),
                    ignore_above: None,
                }),
            },
        ),
        field("prose", Kind::Text { exact: None }),
        field("n", Kind::Integer(IntegerWidth::Integer)),
        field("f", Kind::Double { scaled: false }),
        field("ok", Kind::Boolean),
        field(
            "d",
            Kind::Date {
                formats: DateFormats::default_for_mapping(),
                nanos: false,
            },
        ),
        field("ip", Kind::Ip),
        field(
            "o",
            Kind::Object(vec![field("a", Kind::Keyword { ignore_above: None })]),
        ),
        Field {
            name: "tags".into(),
            kind: Kind::Keyword { ignore_above: None },
            list: true,
            searchable: true,
        },
        Field {
            name: "defaulted".into(),
            kind: Kind::Keyword { ignore_above: None },
            list: false,
            searchable: false,
        },
    ]
}

/// `value` with every object's keys in order, whether or not serde_json preserves insertion
/// order in this build (a feature another crate of the workspace may turn on).
fn sorted(value: Value) -> Value {
    match value {
        Value::Object(map) => {
            let mut entries: Vec<(String, Value)> = map.into_iter().collect();
            entries.sort_by(|a, b| a.0.cmp(&b.0));
            Value::Object(entries.into_iter().map(|(k, v)| (k, sorted(v))).collect())
        }
        Value::Array(items) => Value::Array(items.into_iter().map(sorted).collect()),
        other => other,
    }
}

/// Both truth values' queries, as text with sorted keys ("-" where not exact).
fn t(expr: Expr) -> Option<(String, String)> {
    let fields = fields();
    let text = |q: Option<Value>| q.map_or_else(|| "-".to_owned(), |q| sorted(q).to_string());
    predicate::translate(&Dsl(&fields), &expr).map(|t| (text(t.when_true), text(t.when_false)))
}

fn exists(field: &str) -> String {
    format!(r#"{{"exists":{{"field":"{field}"}}}}"#)
}

fn not_matching(field: &str, query: &str) -> String {
    format!(
        r#"{{"bool":{{"filter":[{}],"must_not":[{query}]}}}}"#,
        exists(field)
    )
}

#[test]
fn comparisons_translate_for_both_truth_values() {
    let term_k = r#"{"term":{"k":{"value":"x"}}}"#;
    // (expression, TRUE query, FALSE query)
    let cases: Vec<(Expr, String, String)> = vec![
        (col("k").eq(lit("x")), term_k.into(), not_matching("k", term_k)),
        (col("k").not_eq(lit("x")), not_matching("k", term_k), term_k.into()),
        (
            lit("x").eq(col("k")),
            term_k.into(),
            not_matching("k", term_k),
        ),
        (
            col("n").lt(lit(5)),
            r#"{"range":{"n":{"lt":5}}}"#.into(),
            r#"{"range":{"n":{"gte":5}}}"#.into(),
        ),
        (
            col("k").gt_eq(lit("m")),
            r#"{"range":{"k":{"gte":"m"}}}"#.into(),
            r#"{"range":{"k":{"lt":"m"}}}"#.into(),
        ),
        (
            col("ok"),
            r#"{"term":{"ok":{"value":true}}}"#.into(),
            r#"{"term":{"ok":{"value":false}}}"#.into(),
        ),
        (
            col("k").is_null(),
            format!(r#"{{"bool":{{"must_not":[{}]}}}}"#, exists("k")),
            exists("k"),
        ),
        (
            col("k").in_list(vec![lit("a"), lit("b")], true),
            not_matching("k", r#"{"terms":{"k":["a","b"]}}"#),
            r#"{"terms":{"k":["a","b"]}}"#.into(),
        ),
        (
            col("n").between(lit(1), lit(9)),
            r#"{"range":{"n":{"gte":1,"lte":9}}}"#.into(),
            r#"{"bool":{"minimum_should_match":1,"should":[{"range":{"n":{"lt":1}}},{"range":{"n":{"gt":9}}}]}}"#.into(),
        ),
        (
            get_field(col("o"), "a").eq(lit("x")),
            r#"{"term":{"o.a":{"value":"x"}}}"#.into(),
            not_matching("o.a", r#"{"term":{"o.a":{"value":"x"}}}"#),
        ),
    ];
    for (expr, when_true, when_false) in cases {
        assert_eq!(t(expr.clone()), Some((when_true, when_false)), "{expr}");
    }
}

/// Whether any `range` query in `query` has an empty-string bound.
fn has_empty_bound(query: &Value) -> bool {
    match query {
        Value::Object(map) => map.iter().any(|(key, value)| {
            let empty_bound = key == "range"
                && value.as_object().is_some_and(|fields| {
                    fields.values().any(|body| {
                        body.as_object()
                            .is_some_and(|b| b.values().any(|v| v.as_str() == Some("")))
                    })
                });
            empty_bound || has_empty_bound(value)
        }),
        Value::Array(items) => items.iter().any(has_empty_bound),
        _ => false,
    }
}

#[test]
fn empty_string_bounds_never_reach_a_range() {
    let none = r#"{"match_none":{}}"#;
    let empty = |field: &str| format!(r#"{{"term":{{"{field}":{{"value":""}}}}}}"#);
    let range =
        |field: &str, op: &str, v: &str| format!(r#"{{"range":{{"{field}":{{"{op}":"{v}"}}}}}}"#);
    let either =
        |a: &str, b: &str| format!(r#"{{"bool":{{"minimum_should_match":1,"should":[{a},{b}]}}}}"#);
    let both = |a: &str, b: &str| format!(r#"{{"bool":{{"filter":[{a},{b}]}}}}"#);
    // (expression, TRUE query, FALSE query): every one leaves missing and null fields out.
    let cases: Vec<(Expr, String, String)> = vec![
        (col("k").lt(lit("")), none.into(), exists("k")),
        (
            col("k").lt_eq(lit("")),
            empty("k"),
            not_matching("k", &empty("k")),
        ),
        (
            col("k").gt(lit("")),
            not_matching("k", &empty("k")),
            empty("k"),
        ),
        (col("k").gt_eq(lit("")), exists("k"), none.into()),
        // `'' > k` is `k < ''`.
        (lit("").gt(col("k")), none.into(), exists("k")),
        (!col("k").lt(lit("")), exists("k"), none.into()),
        (
            !col("k").lt_eq(lit("")),
            not_matching("k", &empty("k")),
            empty("k"),
        ),
        (
            col("k").between(lit(""), lit("Zz")),
            range("k", "lte", "Zz"),
            either(none, &range("k", "gt", "Zz")),
        ),
        (
            col("k").not_between(lit(""), lit("Zz")),
            either(none, &range("k", "gt", "Zz")),
            range("k", "lte", "Zz"),
        ),
        (
            col("k").between(lit(""), lit("")),
            empty("k"),
            either(none, &not_matching("k", &empty("k"))),
        ),
        (
            col("k").between(lit("a"), lit("")),
            both(&range("k", "gte", "a"), &empty("k")),
            either(&range("k", "lt", "a"), &not_matching("k", &empty("k"))),
        ),
        // What DataFusion's simplifier makes of `k BETWEEN '' AND 'Zz'` and its negation.
        (
            col("k").gt_eq(lit("")).and(col("k").lt_eq(lit("Zz"))),
            both(&exists("k"), &range("k", "lte", "Zz")),
            either(none, &range("k", "gt", "Zz")),
        ),
        (
            col("k").lt(lit("")).or(col("k").gt(lit("Zz"))),
            either(none, &range("k", "gt", "Zz")),
            both(&exists("k"), &range("k", "lte", "Zz")),
        ),
        // A text field's keyword sub-field answers both the term and `exists`.
        (col("body").gt_eq(lit("")), exists("body.raw"), none.into()),
        (
            col("body").gt(lit("")),
            not_matching("body.raw", &empty("body.raw")),
            empty("body.raw"),
        ),
        (
            get_field(col("o"), "a").lt_eq(lit("")),
            empty("o.a"),
            not_matching("o.a", &empty("o.a")),
        ),
    ];
    for (expr, when_true, when_false) in cases {
        assert_eq!(t(expr.clone()), Some((when_true, when_false)), "{expr}");
        let translated = predicate::translate(&Dsl(&fields()), &expr).unwrap();
        for query in [translated.when_true, translated.when_false]
            .iter()
            .flatten()
        {
            assert!(!has_empty_bound(query), "{expr}: {query}");
        }
    }
    // Fields without an ordered path still push no range, empty bound or not.
    assert_eq!(t(col("title").lt(lit(""))), None);
    assert_eq!(t(col("short").gt_eq(lit(""))), None);
    // A non-empty bound is unchanged.
    assert_eq!(
        t(col("k").lt(lit(" "))),
        Some((range("k", "lt", " "), range("k", "gte", " ")))
    );
}

#[test]
fn text_fields_compare_through_their_keyword_subfield() {
    let term = r#"{"term":{"title.keyword":{"value":"Red shoes"}}}"#;
    assert_eq!(
        t(col("title").eq(lit("Red shoes"))),
        Some((term.to_owned(), not_matching("title", term)))
    );
    // Longer than ignore_above: the sub-field does not hold such values.
    assert_eq!(t(col("title").eq(lit("x".repeat(257)))), None);
    // Ranges and patterns need every value indexed: `raw` has no ignore_above, `keyword` has.
    assert_eq!(t(col("title").gt(lit("a"))), None);
    assert_eq!(
        t(col("body").gt(lit("a"))).map(|t| t.0),
        Some(r#"{"range":{"body.raw":{"gt":"a"}}}"#.to_owned())
    );
    assert_eq!(t(col("prose").eq(lit("a"))), None);
}

#[test]
fn a_keyword_with_ignore_above_pushes_only_short_equalities() {
    let term = r#"{"term":{"short":{"value":"abc"}}}"#;
    // TRUE is exact; FALSE would need `exists`, which misses the unindexed long values.
    assert_eq!(
        t(col("short").eq(lit("abc"))),
        Some((term.to_owned(), "-".to_owned()))
    );
    assert_eq!(
        t(col("short").not_eq(lit("abc"))),
        Some(("-".to_owned(), term.to_owned()))
    );
    assert_eq!(
        t(!col("short").not_eq(lit("abc"))).map(|t| t.0),
        Some(term.to_owned())
    );
    let fields = fields();
    assert_eq!(filter(&fields, &col("short").not_eq(lit("abc"))), None);
    assert_eq!(t(col("short").eq(lit("abcdef"))), None);
    assert_eq!(t(col("short").gt(lit("a"))), None);
    assert_eq!(t(col("short").is_null()), None);
}

#[test]
fn like_becomes_term_prefix_or_escaped_wildcard() {
    let cases = [
        ("abc", r#"{"term":{"k":{"value":"abc"}}}"#),
        ("ab%", r#"{"prefix":{"k":{"value":"ab"}}}"#),
        (r"a\%b%", r#"{"prefix":{"k":{"value":"a%b"}}}"#),
        ("a_c", r#"{"wildcard":{"k":{"value":"a?c"}}}"#),
        ("%b*?%", r#"{"wildcard":{"k":{"value":"*b\\*\\?*"}}}"#),
        (r"%\\%", r#"{"wildcard":{"k":{"value":"*\\\\*"}}}"#),
    ];
    for (pattern, query) in cases {
        let translated = t(col("k").like(lit(pattern))).map(|t| t.0);
        assert_eq!(translated.as_deref(), Some(query), "{pattern}");
    }
    assert_eq!(t(col("k").ilike(lit("a%"))), None);
    assert_eq!(t(col("n").like(lit("1%"))), None);
}

#[test]
fn and_or_not_keep_three_valued_logic() {
    let a = r#"{"term":{"k":{"value":"a"}}}"#;
    let b = r#"{"term":{"n":{"value":1}}}"#;
    let (when_true, when_false) = t(col("k").eq(lit("a")).and(col("n").eq(lit(1)))).unwrap();
    assert_eq!(when_true, format!(r#"{{"bool":{{"filter":[{a},{b}]}}}}"#));
    assert_eq!(
        when_false,
        format!(
            r#"{{"bool":{{"minimum_should_match":1,"should":[{},{}]}}}}"#,
            not_matching("k", a),
            not_matching("n", b)
        )
    );
    let (not_true, _) = t(!(col("k").eq(lit("a")))).unwrap();
    assert_eq!(not_true, not_matching("k", a));
}

#[test]
fn what_the_cluster_cannot_answer_exactly_is_not_pushed() {
    let unpushed = [
        col("f").eq(lit(0.0)),
        col("ip").eq(lit("10.0.0.1")),
        col("tags").eq(lit("a")),
        col("n").eq(lit(5_000_000_000i64)),
        col("n").eq(lit("5")),
        col("k").eq(col("prose")),
        col("ok").lt(lit(true)),
        col("o").is_null(),
        col("d").eq(lit(ScalarValue::TimestampMicrosecond(Some(1_500), None))),
    ];
    for expr in unpushed {
        assert_eq!(t(expr.clone()), None, "{expr}");
    }
    assert_eq!(
        t(col("d").gt(lit(ScalarValue::TimestampMillisecond(
            Some(1_700_000_000_000),
            None
        ))))
        .map(|t| t.0),
        Some(r#"{"range":{"d":{"format":"epoch_millis","gt":1700000000000}}}"#.to_owned())
    );
}

#[test]
fn hostile_values_stay_values() {
    let hostile = r#"*:* OR title:"x" \ ?{}[]^~!"#;
    let (when_true, _) = t(col("k").eq(lit(hostile))).unwrap();
    let parsed: Value = serde_json::from_str(&when_true).unwrap();
    assert_eq!(parsed["term"]["k"]["value"], Value::from(hostile));
}

#[test]
fn full_text_functions_become_match_queries_on_text_fields() {
    let functions = crate::fulltext::functions();
    let call = |name: &str, column: &str, query: &str| {
        let udf = functions.iter().find(|f| f.name() == name).unwrap();
        udf.call(vec![col(column), lit(query)])
    };
    let matches = r#"{"match":{"prose":{"query":"red \"shoes\" *"}}}"#;
    assert_eq!(
        t(call("match", "prose", r#"red "shoes" *"#)),
        Some((matches.to_owned(), not_matching("prose", matches)))
    );
    let phrase = r#"{"match_phrase":{"title":{"query":"red shoes"}}}"#;
    assert_eq!(
        t(!call("match_phrase", "title", "red shoes")),
        Some((not_matching("title", phrase), phrase.to_owned()))
    );
    // Not text: a keyword's match is a term query, which SQL's evaluation would not be.
    assert_eq!(t(call("match", "k", "red")), None);
    assert_eq!(t(call("match", "tags", "red")), None);
}

#[test]
fn fields_indexed_differently_from_their_source_are_not_pushed() {
    assert_eq!(t(col("defaulted").eq(lit("x"))), None);
    assert_eq!(t(col("defaulted").is_null()), None);
}
