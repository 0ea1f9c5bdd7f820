//! The shared three-valued logic, over a toy store whose filters are text: `a=1` and the like,
//! `(x & y)` for all, `(x | y)` for any. Each connector keeps the table of its own leaves.

use datafusion::common::{Column, ScalarValue};
use datafusion::functions::core::expr_fn::get_field;
use datafusion::logical_expr::{Expr, Operator, col, lit};

use super::{Leaves, LikeToken, Translated, like_tokens, translate};

/// Fields `a` (integer), `s` (string, whose FALSE filters the store cannot write), `b`
/// (boolean) and `o` (an object holding `x`, an integer).
struct Toy;

impl Leaves for Toy {
    type Filter = String;
    type Field = String;
    type Value = String;

    fn all(&self, filters: Vec<String>) -> String {
        format!("({})", filters.join(" & "))
    }

    fn any(&self, filters: Vec<String>) -> String {
        format!("({})", filters.join(" | "))
    }

    fn column(&self, column: &Column) -> Option<String> {
        ["a", "s", "b", "o"]
            .contains(&column.name.as_str())
            .then(|| column.name.clone())
    }

    fn nested(&self, field: String, name: &str) -> Option<String> {
        (field == "o" && name == "x").then(|| format!("{field}.{name}"))
    }

    fn literal(&self, field: &String, value: &ScalarValue) -> Option<String> {
        match (field.as_str(), value) {
            ("a" | "o.x", ScalarValue::Int32(Some(v))) => Some(v.to_string()),
            ("s", ScalarValue::Utf8(Some(v))) => Some(format!("'{v}'")),
            _ => None,
        }
    }

    fn comparison(
        &self,
        field: &String,
        op: Operator,
        value: String,
    ) -> Option<Translated<String>> {
        let negated = op.negate()?;
        let when_false = (field != "s").then(|| format!("{field}{negated}{value}"));
        Translated::new(Some(format!("{field}{op}{value}")), when_false)
    }

    fn is_null(&self, field: &String) -> Option<Translated<String>> {
        Some(Translated::exact(format!("{field}?"), format!("{field}!")))
    }

    fn in_list(&self, field: &String, values: Vec<String>) -> Option<Translated<String>> {
        let list = values.join(",");
        Some(Translated::exact(
            format!("{field}∈{list}"),
            format!("{field}∉{list}"),
        ))
    }

    fn between(&self, field: &String, low: String, high: String) -> Option<Translated<String>> {
        Some(Translated::exact(
            format!("{low}≤{field}≤{high}"),
            format!("{field}<{low}|{field}>{high}"),
        ))
    }

    fn like(&self, field: &String, pattern: &[LikeToken]) -> Option<Translated<String>> {
        let pattern: String = pattern
            .iter()
            .map(|token| match token {
                LikeToken::Char(c) => *c,
                LikeToken::Many => '*',
                LikeToken::One => '?',
            })
            .collect();
        Translated::new(Some(format!("{field}~{pattern}")), None)
    }

    fn boolean(&self, field: &String) -> Option<Translated<String>> {
        (field == "b").then(|| Translated::exact(field.clone(), format!("¬{field}")))
    }
}

/// The filters for TRUE and for FALSE.
type Both = Option<(Option<String>, Option<String>)>;

fn t(expr: Expr) -> Both {
    translate(&Toy, &expr).map(|t| (t.when_true, t.when_false))
}

fn both(when_true: &str, when_false: &str) -> Both {
    Some((Some(when_true.into()), Some(when_false.into())))
}

#[test]
fn predicates_translate_for_both_truth_values() {
    let cases: Vec<(Expr, Both)> = vec![
        (col("a").eq(lit(1)), both("a=1", "a!=1")),
        // A literal on the left: the operator turns round.
        (lit(1).lt(col("a")), both("a>1", "a<=1")),
        (col("a").not_eq(lit(1)), both("a!=1", "a=1")),
        // NOT is "FALSE", never the store's negation of TRUE.
        (!col("a").eq(lit(1)), both("a!=1", "a=1")),
        (col("a").is_null(), both("a?", "a!")),
        (col("a").is_not_null(), both("a!", "a?")),
        (
            col("a").eq(lit(1)).and(col("b")),
            both("(a=1 & b)", "(a!=1 | ¬b)"),
        ),
        (
            col("a").eq(lit(1)).or(col("b")),
            both("(a=1 | b)", "(a!=1 & ¬b)"),
        ),
        (
            !(col("a").eq(lit(1)).or(col("b"))),
            both("(a!=1 & ¬b)", "(a=1 | b)"),
        ),
        (
            col("a").in_list(vec![lit(1), lit(2)], false),
            both("a∈1,2", "a∉1,2"),
        ),
        (
            col("a").in_list(vec![lit(1), lit(2)], true),
            both("a∉1,2", "a∈1,2"),
        ),
        (col("a").between(lit(1), lit(5)), both("1≤a≤5", "a<1|a>5")),
        (
            col("a").not_between(lit(1), lit(5)),
            both("a<1|a>5", "1≤a≤5"),
        ),
        (col("b"), both("b", "¬b")),
        (!col("b"), both("¬b", "b")),
        (
            get_field(col("o"), "x").gt_eq(lit(3)),
            both("o.x>=3", "o.x<3"),
        ),
        // A leaf the store can only say TRUE of.
        (col("s").eq(lit("x")), Some((Some("s='x'".into()), None))),
        (!col("s").eq(lit("x")), Some((None, Some("s='x'".into())))),
        (
            col("s").eq(lit("x")).or(col("b")),
            Some((Some("(s='x' | b)".into()), None)),
        ),
        (
            col("s").like(lit(r"a\%_%")),
            Some((Some("s~a%?*".into()), None)),
        ),
        (
            col("s").not_like(lit("a%")),
            Some((None, Some("s~a*".into()))),
        ),
        // Nothing else.
        (col("s").like(lit(r"a\")), None),
        (col("s").ilike(lit("a%")), None),
        (col("a").eq(lit("1")), None),
        (col("a").eq(col("a")), None),
        (col("zz").eq(lit(1)), None),
        (get_field(col("o"), "y").eq(lit(1)), None),
        ((col("a") + lit(1)).eq(lit(2)), None),
        (col("a").eq(lit(1)).and(col("zz").eq(lit(1))), None),
        (col("a"), None),
        (
            Expr::BinaryExpr(datafusion::logical_expr::BinaryExpr::new(
                Box::new(col("a")),
                Operator::Plus,
                Box::new(lit(1)),
            )),
            None,
        ),
    ];
    for (expr, expected) in cases {
        assert_eq!(t(expr.clone()), expected, "{expr}");
    }
}

#[test]
fn a_predicate_too_deep_to_translate_stays_with_datafusion() {
    let deep = (0..super::super::depth::MAX_PUSHDOWN_DEPTH).fold(col("a").eq(lit(0)), |expr, i| {
        expr.or(col("a").eq(lit(i as i32)))
    });
    assert_eq!(t(deep), None);
    let shallow = (0..10).fold(col("a").eq(lit(0)), |expr, i| expr.or(col("a").eq(lit(i))));
    assert!(t(shallow).is_some());
}

#[test]
fn like_patterns_read_their_escapes() {
    use LikeToken::{Char, Many, One};
    assert_eq!(like_tokens(""), Some(vec![]));
    assert_eq!(like_tokens("a%_"), Some(vec![Char('a'), Many, One]));
    assert_eq!(
        like_tokens(r"\%\_\\é"),
        Some(vec![Char('%'), Char('_'), Char('\\'), Char('é')])
    );
    assert_eq!(like_tokens(r"ab\"), None);
}
