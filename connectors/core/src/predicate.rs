//! SQL predicates as a store's native filters, under SQL's three-valued logic: the translation
//! shared by every connector whose store has no NULL-aware boolean logic of its own (MongoDB's
//! `$match`, Elasticsearch's query DSL).
//!
//! Every predicate is translated twice: the filter matching the rows where it is TRUE, and the
//! one matching those where it is FALSE. A row where it is NULL matches neither. `NOT p` is
//! then "p is FALSE", never the store's negation of the TRUE filter, which would also keep the
//! rows where `p` is NULL: that is how `<>` and `NOT IN` come to exclude missing and null
//! fields, as SQL does. `p AND q` is TRUE where both are TRUE and FALSE where either is FALSE;
//! `OR` the other way round.
//!
//! This module walks the expression (AND, OR, NOT, IS [NOT] NULL, IN, BETWEEN, LIKE,
//! comparisons either way round, boolean columns, nested fields) and asks the connector's
//! [`Leaves`] for the filters of each leaf. A leaf may know only one of its two filters (the
//! store cannot say "has a value and does not match" for every field); a predicate whose TRUE
//! filter is unknown is not pushed.

use datafusion::common::{Column, ScalarValue};
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Like, Operator};

use crate::depth::within_pushdown_depth;

/// A predicate as the native filters matching the rows where it is TRUE and where it is
/// FALSE, each when the store answers it exactly.
#[derive(Debug, Clone, PartialEq)]
pub struct Translated<F> {
    /// The rows where the predicate is TRUE.
    pub when_true: Option<F>,
    /// The rows where the predicate is FALSE.
    pub when_false: Option<F>,
}

impl<F> Translated<F> {
    /// A predicate with both filters.
    pub fn exact(when_true: F, when_false: F) -> Self {
        Self {
            when_true: Some(when_true),
            when_false: Some(when_false),
        }
    }

    /// A predicate with the filters known; `None` when neither is.
    pub fn new(when_true: Option<F>, when_false: Option<F>) -> Option<Self> {
        (when_true.is_some() || when_false.is_some()).then_some(Self {
            when_true,
            when_false,
        })
    }

    /// `NOT` this predicate: TRUE where it is FALSE and FALSE where it is TRUE.
    pub fn negated(self) -> Self {
        Self {
            when_true: self.when_false,
            when_false: self.when_true,
        }
    }

    /// This predicate, negated when `negate` (`NOT IN`, `NOT BETWEEN`, `NOT LIKE`).
    pub fn negated_if(self, negate: bool) -> Self {
        if negate { self.negated() } else { self }
    }
}

/// One step of a LIKE pattern.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LikeToken {
    /// A character matched as itself (escaped or not).
    Char(char),
    /// `%`: any run of characters, the empty one included.
    Many,
    /// `_`: exactly one character.
    One,
}

/// A LIKE pattern with the default backslash escape, as tokens; `None` for a pattern ending
/// in a lone escape, which is an error in SQL and stays with DataFusion.
pub fn like_tokens(pattern: &str) -> Option<Vec<LikeToken>> {
    let mut tokens = Vec::with_capacity(pattern.len());
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        tokens.push(match c {
            '\\' => LikeToken::Char(chars.next()?),
            '%' => LikeToken::Many,
            '_' => LikeToken::One,
            c => LikeToken::Char(c),
        });
    }
    Some(tokens)
}

/// An integer literal of any width, signed or not.
pub fn integer_literal(value: &ScalarValue) -> Option<i128> {
    Some(match value {
        ScalarValue::Int8(Some(v)) => i128::from(*v),
        ScalarValue::Int16(Some(v)) => i128::from(*v),
        ScalarValue::Int32(Some(v)) => i128::from(*v),
        ScalarValue::Int64(Some(v)) => i128::from(*v),
        ScalarValue::UInt8(Some(v)) => i128::from(*v),
        ScalarValue::UInt16(Some(v)) => i128::from(*v),
        ScalarValue::UInt32(Some(v)) => i128::from(*v),
        ScalarValue::UInt64(Some(v)) => i128::from(*v),
        _ => return None,
    })
}

/// A string literal, of any of Arrow's string types.
pub fn string_literal(value: &ScalarValue) -> Option<&str> {
    match value {
        ScalarValue::Utf8(Some(s))
        | ScalarValue::LargeUtf8(Some(s))
        | ScalarValue::Utf8View(Some(s)) => Some(s),
        _ => None,
    }
}

/// A timestamp literal in nanoseconds, whatever its unit.
pub fn timestamp_nanos(value: &ScalarValue) -> Option<i128> {
    Some(match value {
        ScalarValue::TimestampSecond(Some(v), _) => i128::from(*v) * 1_000_000_000,
        ScalarValue::TimestampMillisecond(Some(v), _) => i128::from(*v) * 1_000_000,
        ScalarValue::TimestampMicrosecond(Some(v), _) => i128::from(*v) * 1_000,
        ScalarValue::TimestampNanosecond(Some(v), _) => i128::from(*v),
        _ => return None,
    })
}

/// What a connector contributes to the translation: how it addresses fields, which literals
/// it compares exactly, and the native filters of each kind of leaf.
///
/// Every method returns `None` where the store would not compute exactly SQL's answer; the
/// predicate then stays with DataFusion.
pub trait Leaves {
    /// A native filter (a BSON document, a JSON query).
    type Filter: Clone;
    /// A field a filter can address.
    type Field;
    /// A literal as the store compares it.
    type Value: Clone;

    /// The filter matching rows that match every one of `filters`.
    fn all(&self, filters: Vec<Self::Filter>) -> Self::Filter;

    /// The filter matching rows that match any of `filters`.
    fn any(&self, filters: Vec<Self::Filter>) -> Self::Filter;

    /// The field a column reads, if a filter can address it.
    fn column(&self, column: &Column) -> Option<Self::Field>;

    /// The field `name` inside `field` (`field['name']`), if a filter can address it.
    fn nested(&self, field: Self::Field, name: &str) -> Option<Self::Field>;

    /// `value` as the store compares it with `field`, when it compares exactly as SQL does.
    fn literal(&self, field: &Self::Field, value: &ScalarValue) -> Option<Self::Value>;

    /// `field op value`, `op` one of `=`, `<>`, `<`, `<=`, `>`, `>=`.
    fn comparison(
        &self,
        field: &Self::Field,
        op: Operator,
        value: Self::Value,
    ) -> Option<Translated<Self::Filter>>;

    /// `field IS NULL` (missing and null alike).
    fn is_null(&self, field: &Self::Field) -> Option<Translated<Self::Filter>>;

    /// `field IN (values)`.
    fn in_list(
        &self,
        field: &Self::Field,
        values: Vec<Self::Value>,
    ) -> Option<Translated<Self::Filter>>;

    /// `field BETWEEN low AND high`.
    fn between(
        &self,
        field: &Self::Field,
        low: Self::Value,
        high: Self::Value,
    ) -> Option<Translated<Self::Filter>>;

    /// `field LIKE pattern`, case-sensitive.
    fn like(&self, field: &Self::Field, pattern: &[LikeToken]) -> Option<Translated<Self::Filter>>;

    /// A boolean field on its own.
    fn boolean(&self, field: &Self::Field) -> Option<Translated<Self::Filter>>;

    /// A function call the store evaluates itself (full-text search, say).
    fn function(&self, _expr: &Expr) -> Option<Translated<Self::Filter>> {
        None
    }
}

/// Translates `expr`, or returns `None` when the store could not evaluate it exactly.
pub fn translate<L: Leaves>(leaves: &L, expr: &Expr) -> Option<Translated<L::Filter>> {
    // A deeper expression would overflow the stack of this recursive translation; it stays
    // with DataFusion.
    if !within_pushdown_depth(expr) {
        return None;
    }
    Translation(leaves).expr(expr)
}

/// The filter selecting the rows where `expr` is TRUE, when the store answers it exactly.
pub fn when_true<L: Leaves>(leaves: &L, expr: &Expr) -> Option<L::Filter> {
    translate(leaves, expr)?.when_true
}

/// The field `expr` addresses: a column, or `get_field` into one, step by step.
pub fn field<L: Leaves>(leaves: &L, expr: &Expr) -> Option<L::Field> {
    match expr {
        Expr::Column(column) => leaves.column(column),
        Expr::ScalarFunction(function) if function.func.name() == "get_field" => {
            let (base, names) = function.args.split_first()?;
            names.iter().try_fold(field(leaves, base)?, |path, name| {
                let Expr::Literal(ScalarValue::Utf8(Some(name)), _) = name else {
                    return None;
                };
                leaves.nested(path, name)
            })
        }
        _ => None,
    }
}

struct Translation<'a, L>(&'a L);

impl<L: Leaves> Translation<'_, L> {
    fn expr(&self, expr: &Expr) -> Option<Translated<L::Filter>> {
        let leaves = self.0;
        match expr {
            Expr::BinaryExpr(BinaryExpr {
                left,
                op: op @ (Operator::And | Operator::Or),
                right,
            }) => {
                let left = self.expr(left)?;
                let right = self.expr(right)?;
                let both = |a: Option<L::Filter>, b: Option<L::Filter>| Some(vec![a?, b?]);
                let when_true = both(left.when_true, right.when_true);
                let when_false = both(left.when_false, right.when_false);
                if *op == Operator::And {
                    Translated::new(
                        when_true.map(|f| leaves.all(f)),
                        when_false.map(|f| leaves.any(f)),
                    )
                } else {
                    Translated::new(
                        when_true.map(|f| leaves.any(f)),
                        when_false.map(|f| leaves.all(f)),
                    )
                }
            }
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => {
                let (path, op, value) = match (field(leaves, left), field(leaves, right)) {
                    (Some(path), None) => (path, *op, right.as_ref()),
                    (None, Some(path)) => (path, op.swap()?, left.as_ref()),
                    _ => return None,
                };
                if !matches!(
                    op,
                    Operator::Eq
                        | Operator::NotEq
                        | Operator::Lt
                        | Operator::LtEq
                        | Operator::Gt
                        | Operator::GtEq
                ) {
                    return None;
                }
                let value = self.literal(&path, value)?;
                leaves.comparison(&path, op, value)
            }
            Expr::Not(inner) => Some(self.expr(inner)?.negated()),
            Expr::IsNull(inner) => leaves.is_null(&field(leaves, inner)?),
            Expr::IsNotNull(inner) => Some(leaves.is_null(&field(leaves, inner)?)?.negated()),
            Expr::InList(in_list) => {
                let path = field(leaves, &in_list.expr)?;
                let values = in_list
                    .list
                    .iter()
                    .map(|value| self.literal(&path, value))
                    .collect::<Option<Vec<_>>>()?;
                Some(leaves.in_list(&path, values)?.negated_if(in_list.negated))
            }
            Expr::Between(Between {
                expr,
                negated,
                low,
                high,
            }) => {
                let path = field(leaves, expr)?;
                let low = self.literal(&path, low)?;
                let high = self.literal(&path, high)?;
                Some(leaves.between(&path, low, high)?.negated_if(*negated))
            }
            Expr::Like(Like {
                negated,
                expr,
                pattern,
                escape_char: None | Some('\\'),
                case_insensitive: false,
            }) => {
                let path = field(leaves, expr)?;
                let Expr::Literal(ScalarValue::Utf8(Some(pattern)), _) = pattern.as_ref() else {
                    return None;
                };
                let tokens = like_tokens(pattern)?;
                Some(leaves.like(&path, &tokens)?.negated_if(*negated))
            }
            other => match leaves.function(other) {
                Some(translated) => Some(translated),
                None => leaves.boolean(&field(leaves, other)?),
            },
        }
    }

    fn literal(&self, path: &L::Field, expr: &Expr) -> Option<L::Value> {
        let Expr::Literal(value, _) = expr else {
            return None;
        };
        self.0.literal(path, value)
    }
}

#[cfg(test)]
mod tests;
