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
use datafusion::logical_expr::{Expr, Operator};
use polygate_connector_core::predicate::{
    self, Leaves, LikeToken, Translated, integer_literal, string_literal, timestamp_nanos,
};
use serde_json::{Value, json};

use crate::fulltext::FullText;
use crate::schema::{Field, IntegerWidth, Kind};

/// The query selecting the documents where `expr` is TRUE, when the cluster answers it
/// exactly.
pub(crate) fn filter(fields: &dyn Fields, expr: &Expr) -> Option<Value> {
    predicate::when_true(&Dsl(fields), expr)
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

    /// The path the cluster sorts this field by in DataFusion's order, if any: the ordered
    /// paths, and doubles indexed as they are read (not `scaled_float`, rounded when
    /// indexed). Lucene orders `-0.0` before `0.0` as DataFusion does, and JSON holds no NaN
    /// or infinity.
    pub fn sort_path(&self) -> Option<String> {
        match self.field.kind {
            Kind::Double { scaled: false } if !self.field.list && self.field.searchable => {
                Some(self.dotted.clone())
            }
            _ => self.ordered_path(),
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

/// The leaves of query DSL filters over `Fields`.
struct Dsl<'a>(&'a dyn Fields);

impl Leaves for Dsl<'_> {
    type Filter = Value;
    type Field = FieldPath;
    type Value = Value;

    fn all(&self, queries: Vec<Value>) -> Value {
        all(queries)
    }

    fn any(&self, queries: Vec<Value>) -> Value {
        any(queries)
    }

    fn column(&self, column: &Column) -> Option<FieldPath> {
        self.0.column(column)
    }

    fn nested(&self, path: FieldPath, name: &str) -> Option<FieldPath> {
        let Kind::Object(children) = &path.field.kind else {
            return None;
        };
        if path.field.list || !safe_name(name) {
            return None;
        }
        let field = children.iter().find(|f| f.name == name)?.clone();
        Some(FieldPath {
            dotted: format!("{}.{name}", path.dotted),
            field,
        })
    }

    fn literal(&self, path: &FieldPath, value: &ScalarValue) -> Option<Value> {
        literal(&path.field, value)
    }

    fn comparison(
        &self,
        path: &FieldPath,
        op: Operator,
        value: Value,
    ) -> Option<Translated<Value>> {
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
        Some(Translated::exact(when_true, when_false))
    }

    fn is_null(&self, path: &FieldPath) -> Option<Translated<Value>> {
        let exists = json!({ "exists": { "field": path.exists_path()? } });
        Some(Translated::exact(none(vec![exists.clone()]), exists))
    }

    fn in_list(&self, path: &FieldPath, values: Vec<Value>) -> Option<Translated<Value>> {
        let targets = values
            .iter()
            .map(|v| path.equality_path(v))
            .collect::<Option<Vec<String>>>()?;
        let target = targets.first()?.clone();
        let is_in = json!({ "terms": { target: values } });
        let not_in = path
            .exists_path()
            .map(|exists| not_matching(&exists, is_in.clone()));
        Translated::new(Some(is_in), not_in)
    }

    fn between(&self, path: &FieldPath, low: Value, high: Value) -> Option<Translated<Value>> {
        let target = path.ordered_path()?;
        let inside = range(
            path,
            &target,
            &[("gte", low.clone()), ("lte", high.clone())],
        );
        let outside = any(vec![
            range(path, &target, &[("lt", low)]),
            range(path, &target, &[("gt", high)]),
        ]);
        Some(Translated::exact(inside, outside))
    }

    fn like(&self, path: &FieldPath, pattern: &[LikeToken]) -> Option<Translated<Value>> {
        if !matches!(path.field.kind, Kind::Keyword { .. } | Kind::Text { .. }) {
            return None;
        }
        let target = path.ordered_path()?;
        let matches = like_query(&target, pattern);
        let differs = path
            .exists_path()
            .map(|exists| not_matching(&exists, matches.clone()));
        Translated::new(Some(matches), differs)
    }

    fn boolean(&self, path: &FieldPath) -> Option<Translated<Value>> {
        if path.field.kind != Kind::Boolean || path.field.list {
            return None;
        }
        let target = path.ordered_path()?;
        Some(Translated::exact(
            json!({ "term": { target.clone(): { "value": true } } }),
            json!({ "term": { target: { "value": false } } }),
        ))
    }

    /// `match(text, 'words')` and `match_phrase(text, 'words')`.
    fn function(&self, expr: &Expr) -> Option<Translated<Value>> {
        let (kind, column, query) = FullText::of(expr)?;
        let path = predicate::field(self, column)?;
        if !matches!(path.field.kind, Kind::Text { .. }) || path.field.list {
            return None;
        }
        let Expr::Literal(query, _) = query else {
            return None;
        };
        let query = string_literal(query)?;
        let matches = json!({ kind.name(): { path.dotted.clone(): { "query": query } } });
        // A text field indexes every value, so `exists` on it is "not NULL".
        let differs = not_matching(&path.dotted, matches.clone());
        Some(Translated::exact(matches, differs))
    }
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

/// `LIKE pattern` as a `term` query when it has no wildcards, a `prefix` query when it is
/// literal characters and one final `%`, or else a `wildcard` query in which every
/// character but `%` and `_` is literal.
fn like_query(target: &str, tokens: &[LikeToken]) -> Value {
    let literal: String = tokens
        .iter()
        .map_while(|t| match t {
            LikeToken::Char(c) => Some(*c),
            _ => None,
        })
        .collect();
    match tokens.get(literal.chars().count()..).unwrap_or_default() {
        [] => json!({ "term": { target: { "value": literal } } }),
        [LikeToken::Many] => json!({ "prefix": { target: { "value": literal } } }),
        _ => {
            let mut wildcard = String::new();
            for token in tokens {
                match token {
                    LikeToken::Char(c) => {
                        if matches!(c, '*' | '?' | '\\') {
                            wildcard.push('\\');
                        }
                        wildcard.push(*c);
                    }
                    LikeToken::Many => wildcard.push('*'),
                    LikeToken::One => wildcard.push('?'),
                }
            }
            json!({ "wildcard": { target: { "value": wildcard } } })
        }
    }
}

/// The JSON value of a literal compared with `field`, when the cluster compares them exactly
/// as SQL compares the literal with the column.
pub(crate) fn literal(field: &Field, value: &ScalarValue) -> Option<Value> {
    Some(match &field.kind {
        Kind::Integer(width) => {
            let v = integer_literal(value)?;
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
        Kind::UnsignedLong => Value::from(u64::try_from(integer_literal(value)?).ok()?),
        Kind::Keyword { .. } | Kind::Text { .. } => Value::from(string_literal(value)?),
        Kind::Boolean => match value {
            ScalarValue::Boolean(Some(b)) => Value::from(*b),
            _ => return None,
        },
        Kind::Date { .. } => {
            let ns = timestamp_nanos(value)?;
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
