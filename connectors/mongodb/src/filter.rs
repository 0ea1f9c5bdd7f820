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
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Like, Operator};
use mongodb::bson::oid::ObjectId;
use mongodb::bson::{Bson, DateTime, Decimal128, Document, doc};
use polygate_connector_core::depth::within_pushdown_depth;

use crate::decimal::Bid;
use crate::schema::CollectionSchema;
use crate::types::FieldType;

/// A predicate as the filters matching the documents where it is TRUE and where it is FALSE.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Translated {
    pub(crate) when_true: Document,
    pub(crate) when_false: Document,
}

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

/// Translates `expr`, or returns `None` when MongoDB could not evaluate it exactly.
pub(crate) fn translate(schema: &dyn Fields, expr: &Expr) -> Option<Translated> {
    // A deeper expression would overflow the stack of this recursive translation; it stays
    // with DataFusion.
    if !within_pushdown_depth(expr) {
        return None;
    }
    translate_expr(schema, expr)
}

fn translate_expr(schema: &dyn Fields, expr: &Expr) -> Option<Translated> {
    match expr {
        Expr::BinaryExpr(BinaryExpr { left, op, right }) => match op {
            Operator::And | Operator::Or => {
                let left = translate_expr(schema, left)?;
                let right = translate_expr(schema, right)?;
                let (t, f) = (
                    vec![left.when_true, right.when_true],
                    vec![left.when_false, right.when_false],
                );
                Some(if *op == Operator::And {
                    Translated {
                        when_true: doc! { "$and": t },
                        when_false: doc! { "$or": f },
                    }
                } else {
                    Translated {
                        when_true: doc! { "$or": t },
                        when_false: doc! { "$and": f },
                    }
                })
            }
            _ => {
                let (path, op, value) = match (field_path(schema, left), field_path(schema, right))
                {
                    (Some(path), None) => (path, *op, right.as_ref()),
                    (None, Some(path)) => (path, op.swap()?, left.as_ref()),
                    _ => return None,
                };
                let value = literal(&path.field, value)?;
                comparison(&path, op, value)
            }
        },
        Expr::Not(inner) => {
            let inner = translate_expr(schema, inner)?;
            Some(Translated {
                when_true: inner.when_false,
                when_false: inner.when_true,
            })
        }
        Expr::IsNull(inner) | Expr::IsNotNull(inner) => {
            let path = field_path(schema, inner)?;
            if matches!(path.field, FieldType::Array(_) | FieldType::Json) {
                return None;
            }
            let null = doc! { &path.dotted: { "$eq": Bson::Null } };
            let not_null = doc! { &path.dotted: { "$ne": Bson::Null } };
            Some(if matches!(expr, Expr::IsNull(_)) {
                Translated {
                    when_true: null,
                    when_false: not_null,
                }
            } else {
                Translated {
                    when_true: not_null,
                    when_false: null,
                }
            })
        }
        Expr::InList(in_list) => {
            let path = field_path(schema, &in_list.expr)?;
            let values = in_list
                .list
                .iter()
                .map(|value| literal(&path.field, value))
                .collect::<Option<Vec<Bson>>>()?;
            let mut excluded = values.clone();
            excluded.push(Bson::Null);
            let is_in = doc! { &path.dotted: { "$in": values } };
            let not_in = doc! { &path.dotted: { "$nin": excluded } };
            Some(if in_list.negated {
                Translated {
                    when_true: not_in,
                    when_false: is_in,
                }
            } else {
                Translated {
                    when_true: is_in,
                    when_false: not_in,
                }
            })
        }
        Expr::Between(Between {
            expr,
            negated,
            low,
            high,
        }) => {
            let path = field_path(schema, expr)?;
            let low = literal(&path.field, low)?;
            let high = literal(&path.field, high)?;
            let inside = doc! { &path.dotted: { "$gte": low.clone(), "$lte": high.clone() } };
            let outside = doc! { "$or": [
                { &path.dotted: { "$lt": low } },
                { &path.dotted: { "$gt": high } },
            ] };
            Some(if *negated {
                Translated {
                    when_true: outside,
                    when_false: inside,
                }
            } else {
                Translated {
                    when_true: inside,
                    when_false: outside,
                }
            })
        }
        Expr::Like(Like {
            negated,
            expr,
            pattern,
            escape_char: None | Some('\\'),
            case_insensitive: false,
        }) => {
            let path = field_path(schema, expr)?;
            if path.field != FieldType::String {
                return None;
            }
            let Expr::Literal(ScalarValue::Utf8(Some(pattern)), _) = pattern.as_ref() else {
                return None;
            };
            let regex = like_regex(pattern)?;
            let matches = doc! { &path.dotted: { "$regex": regex.clone() } };
            let differs = doc! { &path.dotted: { "$type": "string", "$not": { "$regex": regex } } };
            Some(if *negated {
                Translated {
                    when_true: differs,
                    when_false: matches,
                }
            } else {
                Translated {
                    when_true: matches,
                    when_false: differs,
                }
            })
        }
        // A boolean column on its own.
        other => {
            let path = field_path(schema, other)?;
            if path.field != FieldType::Bool {
                return None;
            }
            Some(Translated {
                when_true: doc! { &path.dotted: { "$eq": true } },
                when_false: doc! { &path.dotted: { "$eq": false } },
            })
        }
    }
}

/// The comparison `path op value`, for both truth values.
fn comparison(path: &FieldPath, op: Operator, value: Bson) -> Option<Translated> {
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
    Some(Translated {
        when_true,
        when_false,
    })
}

/// The field `expr` addresses (a column, or `get_field` into a document column), when every
/// step of its path can be written as a dotted path through documents.
pub(crate) fn field_path(schema: &dyn Fields, expr: &Expr) -> Option<FieldPath> {
    match expr {
        Expr::Column(column) => schema.column(column),
        Expr::ScalarFunction(function) if function.func.name() == "get_field" => {
            let (base, names) = function.args.split_first()?;
            let mut path = field_path(schema, base)?;
            for name in names {
                let Expr::Literal(ScalarValue::Utf8(Some(name)), _) = name else {
                    return None;
                };
                let FieldType::Document(fields) = &path.field else {
                    return None;
                };
                let field = fields.get(name)?.clone();
                if !safe_name(name) {
                    return None;
                }
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

/// Whether a field name can be one step of a dotted path in a query filter.
pub(crate) fn safe_name(name: &str) -> bool {
    !name.is_empty() && !name.contains(['.', '\0']) && !name.starts_with('$')
}

/// The BSON value of a literal compared with a field of type `field`, when MongoDB compares
/// them exactly as SQL compares the literal with the column.
pub(crate) fn literal(field: &FieldType, expr: &Expr) -> Option<Bson> {
    let Expr::Literal(value, _) = expr else {
        return None;
    };
    Some(match (field, value) {
        (FieldType::Int32 | FieldType::Int64 | FieldType::Decimal(_), value)
            if integer(value).is_some() =>
        {
            Bson::Int64(integer(value)?)
        }
        (FieldType::Decimal(_), ScalarValue::Decimal128(Some(v), _, scale)) => {
            Bson::Decimal128(Decimal128::from_bytes(Bid::encode(*v, *scale)?))
        }
        (
            FieldType::String,
            ScalarValue::Utf8(Some(s))
            | ScalarValue::LargeUtf8(Some(s))
            | ScalarValue::Utf8View(Some(s)),
        ) => Bson::String(s.clone()),
        (
            FieldType::ObjectId,
            ScalarValue::Utf8(Some(s))
            | ScalarValue::LargeUtf8(Some(s))
            | ScalarValue::Utf8View(Some(s)),
        ) => {
            // Only the text polygate itself shows: 24 lowercase hex digits.
            if s.len() != 24 || !s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f')) {
                return None;
            }
            Bson::ObjectId(ObjectId::parse_str(s).ok()?)
        }
        (FieldType::Bool, ScalarValue::Boolean(Some(b))) => Bson::Boolean(*b),
        (FieldType::Date, ScalarValue::TimestampMillisecond(Some(ms), _)) => {
            Bson::DateTime(DateTime::from_millis(*ms))
        }
        (FieldType::Date, ScalarValue::TimestampSecond(Some(s), _)) => {
            Bson::DateTime(DateTime::from_millis(s.checked_mul(1000)?))
        }
        (FieldType::Date, ScalarValue::TimestampMicrosecond(Some(us), _)) if us % 1000 == 0 => {
            Bson::DateTime(DateTime::from_millis(us / 1000))
        }
        (FieldType::Date, ScalarValue::TimestampNanosecond(Some(ns), _)) if ns % 1_000_000 == 0 => {
            Bson::DateTime(DateTime::from_millis(ns / 1_000_000))
        }
        _ => return None,
    })
}

fn integer(value: &ScalarValue) -> Option<i64> {
    match value {
        ScalarValue::Int8(Some(v)) => Some(i64::from(*v)),
        ScalarValue::Int16(Some(v)) => Some(i64::from(*v)),
        ScalarValue::Int32(Some(v)) => Some(i64::from(*v)),
        ScalarValue::Int64(Some(v)) => Some(*v),
        ScalarValue::UInt8(Some(v)) => Some(i64::from(*v)),
        ScalarValue::UInt16(Some(v)) => Some(i64::from(*v)),
        ScalarValue::UInt32(Some(v)) => Some(i64::from(*v)),
        ScalarValue::UInt64(Some(v)) => i64::try_from(*v).ok(),
        _ => None,
    }
}

/// A LIKE pattern (backslash escapes) as a regular expression matching whole strings:
/// `%` any run of characters, `_` one character, everything else literally.
pub(crate) fn like_regex(pattern: &str) -> Option<String> {
    // MongoDB refuses regular expressions holding NUL.
    if pattern.contains('\0') {
        return None;
    }
    let mut regex = String::from("^");
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        match c {
            '%' => regex.push_str(r"[\s\S]*"),
            '_' => regex.push_str(r"[\s\S]"),
            '\\' => push_literal(&mut regex, chars.next()?),
            c => push_literal(&mut regex, c),
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
