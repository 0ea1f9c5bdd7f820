//! SQL predicates as query DSL filters, only where the cluster selects exactly the documents
//! whose predicate is TRUE under SQL's three-valued logic.
//!
//! Every predicate is translated twice: the query matching the documents where it is TRUE,
//! and the one matching those where it is FALSE. `NOT p` is "p is FALSE", never `must_not` of
//! the TRUE query, which would also keep the documents where the field is missing: that is
//! how `<>` and `NOT IN` come to exclude missing and null fields, as SQL does.
//!
//! What is pushed, on fields whose column is one scalar (never lists: a term matches when any
//! element does):
//! - `=`, `<>`, `IN`, `NOT IN` on keyword, integer, boolean and date fields, and on text
//!   fields through their plain keyword sub-field (`title.keyword`); `<`, `<=`, `>`, `>=`,
//!   `BETWEEN` on the same but text; `LIKE` as `prefix` or escaped `wildcard` on keywords;
//!   `IS [NOT] NULL` through `exists`.
//! - A keyword with `ignore_above` does not index longer values: `=` and `IN` with values no
//!   longer than it are exact, nothing else is (the long values would be missed).
//! - A range bound that is the empty string is never sent: `< ''` matches nothing, `>= ''`
//!   is `exists`, `<= ''` a `term` on `''` and `> ''` `exists` less that term (see `range`).
//! - `match(text, 'words')` and `match_phrase(text, 'words')` on text fields, as `match` and
//!   `match_phrase` queries: their meaning is the cluster's analyzer (`fulltext.rs`).
//! - `AND`, `OR`, `NOT` of the above, on top-level and object (`o['a']`) fields.
//!
//! Not pushed: analysed text without a keyword sub-field (`=` on it is not string equality),
//! normalized keywords, floating-point fields (`-0.0` and `0.0` are different terms), ip
//! fields (one address has several spellings), geo points, JSON columns, casts and
//! functions. Values are JSON values inside `term`/`terms`/`range`/`prefix`/`wildcard`
//! queries, never query strings; wildcard patterns escape `*`, `?` and `\`.

use datafusion::common::{Column, ScalarValue};
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Like, Operator};
use polygate_connector_core::depth::within_pushdown_depth;
use serde_json::{Value, json};

use crate::fulltext::FullText;
use crate::mapping::{Field, IntegerWidth, Kind};

/// A predicate as the queries matching the documents where it is TRUE and where it is FALSE,
/// each when the cluster can answer it exactly.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Translated {
    pub when_true: Option<Value>,
    pub when_false: Option<Value>,
}

impl Translated {
    fn new(when_true: Option<Value>, when_false: Option<Value>) -> Option<Self> {
        (when_true.is_some() || when_false.is_some()).then_some(Self {
            when_true,
            when_false,
        })
    }

    fn negated(self) -> Self {
        Self {
            when_true: self.when_false,
            when_false: self.when_true,
        }
    }

    fn negated_if(self, negate: bool) -> Self {
        if negate { self.negated() } else { self }
    }
}

/// The query selecting the documents where `expr` is TRUE, when the cluster answers it
/// exactly.
pub(crate) fn filter(fields: &dyn Fields, expr: &Expr) -> Option<Value> {
    translate(fields, expr)?.when_true
}

/// A field a query can address: its dotted path and how it reads.
#[derive(Debug, Clone)]
pub(crate) struct FieldPath {
    pub dotted: String,
    pub field: Field,
}

/// How a field can be queried exactly.
enum Exactness {
    /// Every value is indexed unchanged under `path`: all comparisons are exact.
    Full { path: String },
    /// Values up to `limit` characters are indexed unchanged under `path`; `exists` is
    /// answered by `exists_path`.
    ShortValues {
        path: String,
        limit: u32,
        exists_path: String,
    },
}

impl FieldPath {
    /// Where equality on this field is exact, if anywhere.
    fn exactness(&self) -> Option<Exactness> {
        if self.field.list || !self.field.searchable {
            return None;
        }
        let dotted = &self.dotted;
        match &self.field.kind {
            Kind::Keyword { ignore_above: None } => Some(Exactness::Full {
                path: dotted.clone(),
            }),
            Kind::Keyword {
                ignore_above: Some(limit),
            } => Some(Exactness::ShortValues {
                path: dotted.clone(),
                limit: *limit,
                exists_path: dotted.clone(),
            }),
            Kind::Text { exact: Some(exact) } => {
                let path = format!("{dotted}.{}", exact.name);
                Some(match exact.ignore_above {
                    // The text field itself indexes every value: it answers `exists`.
                    None => Exactness::ShortValues {
                        path,
                        limit: u32::MAX,
                        exists_path: dotted.clone(),
                    },
                    Some(limit) => Exactness::ShortValues {
                        path,
                        limit,
                        exists_path: dotted.clone(),
                    },
                })
            }
            Kind::Integer(_) | Kind::UnsignedLong | Kind::Boolean | Kind::Date { .. } => {
                Some(Exactness::Full {
                    path: dotted.clone(),
                })
            }
            _ => None,
        }
    }

    /// The path `exists` answers for, when it is exactly "the column is not NULL".
    fn exists_path(&self) -> Option<String> {
        match self.exactness()? {
            Exactness::Full { path } => Some(path),
            Exactness::ShortValues {
                exists_path, path, ..
            } if exists_path != path => Some(exists_path),
            // A keyword with ignore_above does not index long values: `exists` misses them.
            Exactness::ShortValues { .. } => None,
        }
    }

    /// The path ranges and patterns are exact on, if any.
    pub fn ordered_path(&self) -> Option<String> {
        match self.exactness()? {
            Exactness::Full { path } => Some(path),
            Exactness::ShortValues {
                path,
                limit: u32::MAX,
                ..
            } => Some(path),
            Exactness::ShortValues { .. } => None,
        }
    }

    /// The path equality with `value` is exact on, if any.
    fn equality_path(&self, value: &Value) -> Option<String> {
        match self.exactness()? {
            Exactness::Full { path } => Some(path),
            Exactness::ShortValues { path, limit, .. } => {
                let length = value.as_str().map_or(0, |s| s.chars().count());
                (length <= limit as usize).then_some(path)
            }
        }
    }
}

/// Resolves the columns of a predicate to the fields they read.
pub(crate) trait Fields {
    fn column(&self, column: &Column) -> Option<FieldPath>;
}

impl Fields for Vec<Field> {
    fn column(&self, column: &Column) -> Option<FieldPath> {
        let field = self.iter().find(|f| f.name == column.name)?;
        safe_name(&field.name).then(|| FieldPath {
            dotted: field.name.clone(),
            field: field.clone(),
        })
    }
}

/// Whether a field name can be one step of a path in a query: no wildcard characters, which
/// some queries expand.
pub(crate) fn safe_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(['*', '?', '.']) && !name.starts_with('_')
}

/// Translates `expr`, or returns `None` when the cluster could not evaluate it exactly.
pub(crate) fn translate(fields: &dyn Fields, expr: &Expr) -> Option<Translated> {
    // A deeper expression would overflow the stack of this recursive translation; it stays
    // with DataFusion.
    if !within_pushdown_depth(expr) {
        return None;
    }
    translate_expr(fields, expr)
}

fn translate_expr(fields: &dyn Fields, expr: &Expr) -> Option<Translated> {
    match expr {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => match op {
            Operator::And | Operator::Or => {
                let left = translate_expr(fields, left)?;
                let right = translate_expr(fields, right)?;
                let both = |a: Option<Value>, b: Option<Value>| Some(vec![a?, b?]);
                let t = both(left.when_true, right.when_true);
                let f = both(left.when_false, right.when_false);
                if *op == Operator::And {
                    Translated::new(t.map(all), f.map(any))
                } else {
                    Translated::new(t.map(any), f.map(all))
                }
            }
            _ => {
                let (path, op, value) = match (field_path(fields, left), field_path(fields, right))
                {
                    (Some(path), None) => (path, *op, right.as_ref()),
                    (None, Some(path)) => (path, op.swap()?, left.as_ref()),
                    _ => return None,
                };
                let value = literal(&path.field, value)?;
                comparison(&path, op, value)
            }
        },
        Expr::Not(inner) => Some(translate_expr(fields, inner)?.negated()),
        Expr::IsNull(inner) | Expr::IsNotNull(inner) => {
            let path = field_path(fields, inner)?;
            let exists = json!({ "exists": { "field": path.exists_path()? } });
            let missing = none(vec![exists.clone()]);
            Translated::new(Some(exists), Some(missing))
                .map(|t| t.negated_if(matches!(expr, Expr::IsNull(_))))
        }
        Expr::InList(in_list) => {
            let path = field_path(fields, &in_list.expr)?;
            let values = in_list
                .list
                .iter()
                .map(|value| literal(&path.field, value))
                .collect::<Option<Vec<Value>>>()?;
            let target = values
                .iter()
                .map(|v| path.equality_path(v))
                .collect::<Option<Vec<String>>>()?;
            let target = target.first()?.clone();
            let is_in = json!({ "terms": { target: values } });
            let not_in = path
                .exists_path()
                .map(|exists| not_matching(&exists, is_in.clone()));
            Translated::new(Some(is_in), not_in).map(|t| t.negated_if(in_list.negated))
        }
        Expr::Between(Between {
            expr,
            negated,
            low,
            high,
        }) => {
            let path = field_path(fields, expr)?;
            let target = path.ordered_path()?;
            let low = literal(&path.field, low)?;
            let high = literal(&path.field, high)?;
            let inside = range(
                &path,
                &target,
                &[("gte", low.clone()), ("lte", high.clone())],
            );
            let outside = any(vec![
                range(&path, &target, &[("lt", low)]),
                range(&path, &target, &[("gt", high)]),
            ]);
            Translated::new(Some(inside), Some(outside)).map(|t| t.negated_if(*negated))
        }
        Expr::Like(Like {
            negated,
            expr,
            pattern,
            escape_char: None | Some('\\'),
            case_insensitive: false,
        }) => {
            let path = field_path(fields, expr)?;
            if !matches!(path.field.kind, Kind::Keyword { .. } | Kind::Text { .. }) {
                return None;
            }
            let target = path.ordered_path()?;
            let Expr::Literal(ScalarValue::Utf8(Some(pattern)), _) = pattern.as_ref() else {
                return None;
            };
            let matches = like_query(&target, pattern)?;
            let differs = path
                .exists_path()
                .map(|exists| not_matching(&exists, matches.clone()));
            Translated::new(Some(matches), differs).map(|t| t.negated_if(*negated))
        }
        Expr::ScalarFunction(_) if FullText::of(expr).is_some() => {
            let (kind, column, query) = FullText::of(expr)?;
            let path = field_path(fields, column)?;
            if !matches!(path.field.kind, Kind::Text { .. }) || path.field.list {
                return None;
            }
            let Expr::Literal(
                ScalarValue::Utf8(Some(query))
                | ScalarValue::LargeUtf8(Some(query))
                | ScalarValue::Utf8View(Some(query)),
                _,
            ) = query
            else {
                return None;
            };
            let matches = json!({ kind.name(): { path.dotted.clone(): { "query": query } } });
            // A text field indexes every value, so `exists` on it is "not NULL".
            let differs = not_matching(&path.dotted, matches.clone());
            Translated::new(Some(matches), Some(differs))
        }
        // A boolean column on its own.
        other => {
            let path = field_path(fields, other)?;
            if path.field.kind != Kind::Boolean || path.field.list {
                return None;
            }
            let target = path.ordered_path()?;
            Translated::new(
                Some(json!({ "term": { target.clone(): { "value": true } } })),
                Some(json!({ "term": { target: { "value": false } } })),
            )
        }
    }
}

/// The comparison `path op value`, for both truth values.
fn comparison(path: &FieldPath, op: Operator, value: Value) -> Option<Translated> {
    let (when_true, when_false) = match op {
        Operator::Eq | Operator::NotEq => {
            let target = path.equality_path(&value)?;
            let equal = json!({ "term": { target: { "value": value } } });
            let unequal = path
                .exists_path()
                .map(|exists| not_matching(&exists, equal.clone()));
            return Translated::new(Some(equal), unequal)
                .map(|t| t.negated_if(op == Operator::NotEq));
        }
        Operator::Lt | Operator::LtEq | Operator::Gt | Operator::GtEq => {
            let target = path.ordered_path()?;
            if matches!(path.field.kind, Kind::Boolean) {
                return None;
            }
            let (operator, opposite) = match op {
                Operator::Lt => ("lt", "gte"),
                Operator::LtEq => ("lte", "gt"),
                Operator::Gt => ("gt", "lte"),
                _ => ("gte", "lt"),
            };
            (
                range(path, &target, &[(operator, value.clone())]),
                range(path, &target, &[(opposite, value)]),
            )
        }
        _ => return None,
    };
    Translated::new(Some(when_true), Some(when_false))
}

/// The documents whose value at `target` is within every bound: a `range` query, where dates
/// are compared as epoch milliseconds.
///
/// An empty string is never sent as a bound. Servers disagree on it (Elasticsearch before 7.11
/// matched nothing with `gt: ""`, elastic/elasticsearch#63386; the OpenSearch-compatible test
/// server takes `lt: ""` and `lte: ""` for no bound at all), yet what it means for a value that
/// is there is plain in byte order: every value is `>= ''`, none is `< ''`, `<= ''` is `= ''`
/// and `> ''` is `<> ''`. Those stand in for it, as `match_none`, `exists` and a `term` on
/// `''`, each of which, like a range, matches no document whose field is missing or null: the
/// queries for TRUE and for FALSE both leave those out. `target` indexes every value (it is an
/// ordered path), so `exists` on it is "not NULL".
fn range(path: &FieldPath, target: &str, bounds: &[(&str, Value)]) -> Value {
    let empty = || json!({ "term": { target: { "value": "" } } });
    let mut body = serde_json::Map::new();
    let mut filter = Vec::new();
    let mut must_not = Vec::new();
    for (operator, value) in bounds {
        if value.as_str() != Some("") {
            body.insert((*operator).to_owned(), value.clone());
            continue;
        }
        match *operator {
            "lt" => return json!({ "match_none": {} }),
            "lte" => filter.push(empty()),
            "gt" => must_not.push(empty()),
            // `gte`: true of every value.
            _ => {}
        }
    }
    if !body.is_empty() {
        if let Kind::Date { .. } = path.field.kind {
            body.insert("format".to_owned(), Value::from("epoch_millis"));
        }
        filter.insert(0, json!({ "range": { target: body } }));
    }
    if filter.is_empty() {
        filter.push(json!({ "exists": { "field": target } }));
    }
    if must_not.is_empty()
        && filter.len() == 1
        && let Some(only) = filter.pop()
    {
        return only;
    }
    let mut clauses = serde_json::Map::new();
    clauses.insert("filter".to_owned(), Value::from(filter));
    if !must_not.is_empty() {
        clauses.insert("must_not".to_owned(), Value::from(must_not));
    }
    json!({ "bool": clauses })
}

/// Documents whose field has a value and does not match `query`.
fn not_matching(exists: &str, query: Value) -> Value {
    json!({ "bool": {
        "filter": [{ "exists": { "field": exists } }],
        "must_not": [query],
    } })
}

fn all(queries: Vec<Value>) -> Value {
    json!({ "bool": { "filter": queries } })
}

fn any(queries: Vec<Value>) -> Value {
    json!({ "bool": { "should": queries, "minimum_should_match": 1 } })
}

fn none(queries: Vec<Value>) -> Value {
    json!({ "bool": { "must_not": queries } })
}

/// One step of a LIKE pattern.
#[derive(Clone, Copy, PartialEq)]
enum Token {
    Char(char),
    /// `%`
    Many,
    /// `_`
    One,
}

/// `LIKE pattern` (backslash escapes) as a `term` query when it has no wildcards, a
/// `prefix` query when it is literal characters and one final `%`, or else a `wildcard`
/// query in which every character but `%` and `_` is literal.
fn like_query(target: &str, pattern: &str) -> Option<Value> {
    let mut tokens = Vec::new();
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        tokens.push(match c {
            // An escape before nothing is an error in SQL: leave it to DataFusion.
            '\\' => Token::Char(chars.next()?),
            '%' => Token::Many,
            '_' => Token::One,
            c => Token::Char(c),
        });
    }
    let literal: String = tokens
        .iter()
        .map_while(|t| match t {
            Token::Char(c) => Some(*c),
            _ => None,
        })
        .collect();
    let rest = tokens.get(literal.chars().count()..)?;
    Some(match rest {
        [] => json!({ "term": { target: { "value": literal } } }),
        [Token::Many] => json!({ "prefix": { target: { "value": literal } } }),
        _ => {
            let mut wildcard = String::new();
            for token in &tokens {
                match token {
                    Token::Char(c) => {
                        if matches!(c, '*' | '?' | '\\') {
                            wildcard.push('\\');
                        }
                        wildcard.push(*c);
                    }
                    Token::Many => wildcard.push('*'),
                    Token::One => wildcard.push('?'),
                }
            }
            json!({ "wildcard": { target: { "value": wildcard } } })
        }
    })
}

/// The field `expr` addresses (a column, or `get_field` into an object column).
pub(crate) fn field_path(fields: &dyn Fields, expr: &Expr) -> Option<FieldPath> {
    match expr {
        Expr::Column(column) => fields.column(column),
        Expr::ScalarFunction(function) if function.func.name() == "get_field" => {
            let (base, names) = function.args.split_first()?;
            let mut path = field_path(fields, base)?;
            for name in names {
                let Expr::Literal(ScalarValue::Utf8(Some(name)), _) = name else {
                    return None;
                };
                let Kind::Object(children) = &path.field.kind else {
                    return None;
                };
                if path.field.list || !safe_name(name) {
                    return None;
                }
                let field = children.iter().find(|f| &f.name == name)?.clone();
                path = FieldPath {
                    dotted: format!("{}.{name}", path.dotted),
                    field,
                };
            }
            Some(path)
        }
        _ => None,
    }
}

/// The JSON value of a literal compared with `field`, when the cluster compares them exactly
/// as SQL compares the literal with the column.
pub(crate) fn literal(field: &Field, expr: &Expr) -> Option<Value> {
    let Expr::Literal(value, _) = expr else {
        return None;
    };
    let integer = || -> Option<i128> {
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
    };
    Some(match &field.kind {
        Kind::Integer(width) => {
            let v = integer()?;
            let fits = match width {
                IntegerWidth::Byte => i8::try_from(v).is_ok(),
                IntegerWidth::Short => i16::try_from(v).is_ok(),
                IntegerWidth::Integer => i32::try_from(v).is_ok(),
                IntegerWidth::Long => i64::try_from(v).is_ok(),
            };
            // A value outside the type's range: leave it to DataFusion.
            if !fits {
                return None;
            }
            Value::from(i64::try_from(v).ok()?)
        }
        Kind::UnsignedLong => Value::from(u64::try_from(integer()?).ok()?),
        Kind::Keyword { .. } | Kind::Text { .. } => match value {
            ScalarValue::Utf8(Some(s))
            | ScalarValue::LargeUtf8(Some(s))
            | ScalarValue::Utf8View(Some(s)) => Value::from(s.as_str()),
            _ => return None,
        },
        Kind::Boolean => match value {
            ScalarValue::Boolean(Some(b)) => Value::from(*b),
            _ => return None,
        },
        Kind::Date { .. } => {
            let ns: i128 = match value {
                ScalarValue::TimestampSecond(Some(v), _) => i128::from(*v) * 1_000_000_000,
                ScalarValue::TimestampMillisecond(Some(v), _) => i128::from(*v) * 1_000_000,
                ScalarValue::TimestampMicrosecond(Some(v), _) => i128::from(*v) * 1_000,
                ScalarValue::TimestampNanosecond(Some(v), _) => i128::from(*v),
                _ => return None,
            };
            // The cluster compares at its own precision: a finer literal would be rounded.
            if ns % 1_000_000 != 0 {
                return None;
            }
            Value::from(i64::try_from(ns / 1_000_000).ok()?)
        }
        _ => return None,
    })
}

#[cfg(test)]
mod tests;
