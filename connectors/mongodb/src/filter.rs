//! SQL predicates as MongoDB query filters (`$match`), only where MongoDB selects exactly the
//! documents whose predicate is TRUE under SQL's three-valued logic.
//!
//! Every predicate is translated twice: the filter matching the documents where it is TRUE,
//! and the filter matching those where it is FALSE. `NOT p` is then "p is FALSE", never
//! `$nor`/`$not` of the TRUE filter, which would also keep the documents where `p` is NULL:
//! that is how `<>` and `NOT IN` come to exclude missing and null fields, as SQL does.
//!
//! What is pushed, on fields whose column is a single scalar type (never arrays, whose
//! predicates match when any element does, and never Extended JSON columns):
//! - `=`, `<>`, `<`, `<=`, `>`, `>=`, `IN`, `NOT IN`, `BETWEEN` against literals, on int32,
//!   int64, Decimal128, string, bool, date and ObjectId fields. MongoDB compares numbers by
//!   value across numeric types, strings by their UTF-8 bytes as DataFusion does, and only
//!   values of the literal's type family, so a missing or null field never matches.
//! - `IS [NOT] NULL` (missing and null alike) on scalar and document fields.
//! - `LIKE` with the default backslash escape on string fields, as an anchored regular
//!   expression in which every character of the pattern but `%` and `_` is literal.
//! - `AND`, `OR`, `NOT` of the above, on top-level and nested (`s['a']['b']`) fields.
//!
//! Not pushed: doubles (NaN and -0 compare differently), casts, arithmetic, functions, ILIKE,
//! field names containing `.` or `$` or NUL (the query language cannot address them), and
//! literals MongoDB cannot hold exactly. Values are BSON values, never text; every comparison
//! goes through an operator (`$eq`), so a string value is never read as an operator or path.

use datafusion::common::{Column, ScalarValue};
use datafusion::logical_expr::{Expr, Operator};
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{Bson, DateTime, Decimal128, Document, doc};
use polygate_connector_core::predicate::{
    self, Leaves, LikeToken, Translated, integer_literal, string_literal, timestamp_nanos,
};

use crate::decimal::Bid;
use crate::schema::CollectionSchema;
use crate::types::FieldType;

/// A field a filter can address with a dotted path.
#[derive(Debug, Clone)]
pub(crate) struct FieldPath {
    pub(crate) dotted: String,
    pub(crate) field: FieldType,
}

/// Resolves the columns of a predicate to the fields they read.
pub(crate) trait Fields {
    /// The field column `column` reads, if a dotted path can address it.
    fn column(&self, column: &Column) -> Option<FieldPath>;
}

impl Fields for CollectionSchema {
    fn column(&self, column: &Column) -> Option<FieldPath> {
        let field = self.field(&column.name)?;
        safe_name(&column.name).then(|| FieldPath {
            dotted: column.name.clone(),
            field: field.clone(),
        })
    }
}

/// The `$match` filter selecting the documents where `expr` is TRUE, when MongoDB evaluates
/// it exactly.
pub(crate) fn filter(fields: &dyn Fields, expr: &Expr) -> Option<Document> {
    predicate::when_true(&Match(fields), expr)
}

/// The leaves of `$match` filters over `Fields`.
struct Match<'a>(&'a dyn Fields);

impl Leaves for Match<'_> {
    type Filter = Document;
    type Field = FieldPath;
    type Value = Bson;

    fn all(&self, filters: Vec<Document>) -> Document {
        doc! { "$and": filters }
    }

    fn any(&self, filters: Vec<Document>) -> Document {
        doc! { "$or": filters }
    }

    fn column(&self, column: &Column) -> Option<FieldPath> {
        self.0.column(column)
    }

    fn nested(&self, path: FieldPath, name: &str) -> Option<FieldPath> {
        let FieldType::Document(fields) = &path.field else {
            return None;
        };
        let field = fields.get(name)?.clone();
        safe_name(name).then(|| FieldPath {
            dotted: format!("{}.{name}", path.dotted),
            field,
        })
    }

    fn literal(&self, path: &FieldPath, value: &ScalarValue) -> Option<Bson> {
        literal(&path.field, value)
    }

    fn comparison(
        &self,
        path: &FieldPath,
        op: Operator,
        value: Bson,
    ) -> Option<Translated<Document>> {
        let field = path.dotted.as_str();
        let (when_true, when_false) = match op {
            Operator::Eq => (
                doc! { field: { "$eq": value.clone() } },
                doc! { field: { "$nin": [value, Bson::Null] } },
            ),
            Operator::NotEq => (
                doc! { field: { "$nin": [value.clone(), Bson::Null] } },
                doc! { field: { "$eq": value } },
            ),
            Operator::Lt => (
                doc! { field: { "$lt": value.clone() } },
                doc! { field: { "$gte": value } },
            ),
            Operator::LtEq => (
                doc! { field: { "$lte": value.clone() } },
                doc! { field: { "$gt": value } },
            ),
            Operator::Gt => (
                doc! { field: { "$gt": value.clone() } },
                doc! { field: { "$lte": value } },
            ),
            Operator::GtEq => (
                doc! { field: { "$gte": value.clone() } },
                doc! { field: { "$lt": value } },
            ),
            _ => return None,
        };
        Some(Translated::exact(when_true, when_false))
    }

    fn is_null(&self, path: &FieldPath) -> Option<Translated<Document>> {
        if matches!(path.field, FieldType::Array(_) | FieldType::Json) {
            return None;
        }
        Some(Translated::exact(
            doc! { &path.dotted: { "$eq": Bson::Null } },
            doc! { &path.dotted: { "$ne": Bson::Null } },
        ))
    }

    fn in_list(&self, path: &FieldPath, values: Vec<Bson>) -> Option<Translated<Document>> {
        let mut excluded = values.clone();
        excluded.push(Bson::Null);
        Some(Translated::exact(
            doc! { &path.dotted: { "$in": values } },
            doc! { &path.dotted: { "$nin": excluded } },
        ))
    }

    fn between(&self, path: &FieldPath, low: Bson, high: Bson) -> Option<Translated<Document>> {
        Some(Translated::exact(
            doc! { &path.dotted: { "$gte": low.clone(), "$lte": high.clone() } },
            doc! { "$or": [
                { &path.dotted: { "$lt": low } },
                { &path.dotted: { "$gt": high } },
            ] },
        ))
    }

    fn like(&self, path: &FieldPath, pattern: &[LikeToken]) -> Option<Translated<Document>> {
        if path.field != FieldType::String {
            return None;
        }
        let regex = like_regex(pattern)?;
        Some(Translated::exact(
            doc! { &path.dotted: { "$regex": regex.clone() } },
            doc! { &path.dotted: { "$type": "string", "$not": { "$regex": regex } } },
        ))
    }

    fn boolean(&self, path: &FieldPath) -> Option<Translated<Document>> {
        (path.field == FieldType::Bool).then(|| {
            Translated::exact(
                doc! { &path.dotted: { "$eq": true } },
                doc! { &path.dotted: { "$eq": false } },
            )
        })
    }
}

/// Whether a field name can be one step of a dotted path in a query filter.
pub(crate) fn safe_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(['.', '\0']) && !name.starts_with('$')
}

/// The BSON value of a literal compared with a field of type `field`, when MongoDB compares
/// them exactly as SQL compares the literal with the column.
pub(crate) fn literal(field: &FieldType, value: &ScalarValue) -> Option<Bson> {
    Some(match (field, value) {
        (FieldType::Int32 | FieldType::Int64 | FieldType::Decimal(_), value)
            if integer_literal(value).is_some() =>
        {
            Bson::Int64(i64::try_from(integer_literal(value)?).ok()?)
        }
        (FieldType::Decimal(_), ScalarValue::Decimal128(Some(v), _, scale)) => {
            Bson::Decimal128(Decimal128::from_bytes(Bid::encode(*v, *scale)?))
        }
        (FieldType::String, value) => Bson::String(string_literal(value)?.to_owned()),
        (FieldType::ObjectId, value) => {
            let s = string_literal(value)?;
            // Only the text polygate itself shows: 24 lowercase hex digits.
            if s.len() != 24 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                return None;
            }
            Bson::ObjectId(ObjectId::parse_str(s).ok()?)
        }
        (FieldType::Bool, ScalarValue::Boolean(Some(b))) => Bson::Boolean(*b),
        (FieldType::Date, value) => {
            let ns = timestamp_nanos(value)?;
            // MongoDB keeps milliseconds: a finer literal would be rounded.
            if ns % 1_000_000 != 0 {
                return None;
            }
            Bson::DateTime(DateTime::from_millis(i64::try_from(ns / 1_000_000).ok()?))
        }
        _ => return None,
    })
}

/// A LIKE pattern as a regular expression matching whole strings: `%` any run of
/// characters, `_` one character, everything else literally.
pub(crate) fn like_regex(pattern: &[LikeToken]) -> Option<String> {
    let mut regex = String::from("^");
    for token in pattern {
        match token {
            // MongoDB refuses regular expressions holding NUL.
            LikeToken::Char('\0') => return None,
            LikeToken::Char(c) => push_literal(&mut regex, *c),
            LikeToken::Many => regex.push_str(r"[\s\S]*"),
            LikeToken::One => regex.push_str(r"[\s\S]"),
        }
    }
    // `$` would also match before a final newline; this matches only at the very end.
    regex.push_str(r"(?![\s\S])");
    Some(regex)
}

fn push_literal(regex: &mut String, c: char) {
    if c.is_ascii() && !c.is_ascii_alphanumeric() && c != '_' {
        regex.push('\\');
    }
    regex.push(c);
}

#[cfg(test)]
mod tests;
