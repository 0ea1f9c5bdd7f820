//! The types of document fields as polygate presents them, how a sample of documents infers
//! them, and how catalog.toml declares them.
//!
//! Inference takes the union of the fields seen in the sample and widens each field's type
//! over every value seen:
//!
//! | values seen                               | column type                           |
//! | ----------------------------------------- | ------------------------------------- |
//! | int32 only                                | Int32                                 |
//! | int32 and int64                           | Int64                                 |
//! | int32/int64 and double                    | Float64                               |
//! | int32/int64 and Decimal128                | Decimal128(38, largest scale seen)    |
//! | documents                                 | Struct of the union of their fields   |
//! | arrays, or arrays and scalars             | List of the union of the elements     |
//! | null only                                 | Utf8 (always NULL)                    |
//! | any other mix of types                    | Utf8 holding canonical Extended JSON  |
//!
//! A missing field and a BSON null both read as NULL.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Fields, TimeUnit};
use mongodb::bson::RawBsonRef;
use mongodb::bson::spec::BinarySubtype;

/// The largest scale a Decimal128 column takes; values need at most 34 digits.
const MAX_DECIMAL_SCALE: i8 = 38;

/// The type of a field, as inferred or declared.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum FieldType {
    /// Only nulls were seen.
    Null,
    Bool,
    Int32,
    Int64,
    Double,
    /// Decimal128 values, read as Decimal128(38, scale).
    Decimal(i8),
    String,
    /// ObjectIds, read as their 24-digit lowercase hex.
    ObjectId,
    /// BSON dates: milliseconds since the epoch, UTC.
    Date,
    /// BSON timestamps (seconds and an ordinal), read as their seconds, UTC.
    Timestamp,
    Binary,
    /// Binary values of the UUID subtype, read as their hyphenated text.
    Uuid,
    /// Regular expressions, JavaScript, symbols, MinKey and MaxKey, read as text.
    Text,
    /// Any value, read as its canonical Extended JSON.
    Json,
    /// Embedded documents, with their fields in name order.
    Document(BTreeMap<String, FieldType>),
    /// Arrays (and scalars, read as one-element arrays) of a type.
    Array(Box<FieldType>),
}

impl FieldType {
    /// The type of one value, arrays and documents included.
    pub(crate) fn of(value: RawBsonRef<'_>) -> Self {
        match value {
            RawBsonRef::Null | RawBsonRef::Undefined => Self::Null,
            RawBsonRef::Boolean(_) => Self::Bool,
            RawBsonRef::Int32(_) => Self::Int32,
            RawBsonRef::Int64(_) => Self::Int64,
            RawBsonRef::Double(_) => Self::Double,
            RawBsonRef::Decimal128(d) => Self::Decimal(
                crate::decimal::Bid::decode(d.bytes())
                    .finite_scale()
                    .unwrap_or(0)
                    .clamp(0, MAX_DECIMAL_SCALE),
            ),
            RawBsonRef::String(_) => Self::String,
            RawBsonRef::ObjectId(_) => Self::ObjectId,
            RawBsonRef::DateTime(_) => Self::Date,
            RawBsonRef::Timestamp(_) => Self::Timestamp,
            RawBsonRef::Binary(b) if b.subtype == BinarySubtype::Uuid && b.bytes.len() == 16 => {
                Self::Uuid
            }
            RawBsonRef::Binary(_) => Self::Binary,
            RawBsonRef::RegularExpression(_)
            | RawBsonRef::JavaScriptCode(_)
            | RawBsonRef::JavaScriptCodeWithScope(_)
            | RawBsonRef::Symbol(_)
            | RawBsonRef::MinKey
            | RawBsonRef::MaxKey
            | RawBsonRef::DbPointer(_) => Self::Text,
            RawBsonRef::Document(document) => {
                let mut fields = BTreeMap::new();
                for element in document.iter().flatten() {
                    let (name, value) = element;
                    merge_into(&mut fields, name, Self::of(value));
                }
                Self::Document(fields)
            }
            RawBsonRef::Array(array) => {
                let mut element = Self::Null;
                for value in array.into_iter().flatten() {
                    element = element.widen(Self::of(value));
                }
                Self::Array(Box::new(element))
            }
        }
    }

    /// The narrowest type holding the values of both `self` and `other`.
    pub(crate) fn widen(self, other: Self) -> Self {
        use FieldType::*;
        match (self, other) {
            (a, b) if a == b => a,
            (Null, b) => b,
            (a, Null) => a,
            (Int32, Int64) | (Int64, Int32) => Int64,
            (Int32 | Int64 | Double, Int32 | Int64 | Double) => Double,
            (Decimal(a), Decimal(b)) => Decimal(a.max(b)),
            (Decimal(s), Int32 | Int64) | (Int32 | Int64, Decimal(s)) => Decimal(s),
            (Document(mut a), Document(b)) => {
                for (name, field) in b {
                    merge_into(&mut a, &name, field);
                }
                Document(a)
            }
            (Array(a), Array(b)) => Array(Box::new(a.widen(*b))),
            (Array(a), scalar) | (scalar, Array(a)) => Array(Box::new(a.widen(scalar))),
            _ => Json,
        }
    }

    /// The Arrow type of the column.
    pub(crate) fn arrow_type(&self) -> DataType {
        match self {
            Self::Null | Self::String | Self::ObjectId | Self::Uuid | Self::Text | Self::Json => {
                DataType::Utf8
            }
            Self::Bool => DataType::Boolean,
            Self::Int32 => DataType::Int32,
            Self::Int64 => DataType::Int64,
            Self::Double => DataType::Float64,
            Self::Decimal(scale) => DataType::Decimal128(38, *scale),
            Self::Date => DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
            Self::Timestamp => DataType::Timestamp(TimeUnit::Second, Some("UTC".into())),
            Self::Binary => DataType::Binary,
            Self::Document(fields) => DataType::Struct(struct_fields(fields)),
            Self::Array(element) => {
                DataType::List(Arc::new(Field::new("item", element.arrow_type(), true)))
            }
        }
    }

    /// The type's name in catalog.toml declarations and messages.
    pub(crate) fn name(&self) -> String {
        match self {
            Self::Null => "null".into(),
            Self::Bool => "bool".into(),
            Self::Int32 => "int32".into(),
            Self::Int64 => "int64".into(),
            Self::Double => "double".into(),
            Self::Decimal(scale) => format!("decimal(38,{scale})"),
            Self::String => "text".into(),
            Self::ObjectId => "objectid".into(),
            Self::Date => "date".into(),
            Self::Timestamp => "timestamp".into(),
            Self::Binary => "binary".into(),
            Self::Uuid => "uuid".into(),
            Self::Text => "text".into(),
            Self::Json => "json".into(),
            Self::Document(_) => "document".into(),
            Self::Array(element) => format!("list<{}>", element.name()),
        }
    }

    /// Parses a declared type: `bool`, `int32`, `int64`, `double`, `decimal(P,S)`, `text`,
    /// `objectid`, `date`, `timestamp`, `binary`, `uuid`, `json`, `list<T>`.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if let Some(inner) = text.strip_prefix("list<").and_then(|t| t.strip_suffix('>')) {
            return Ok(Self::Array(Box::new(Self::parse(inner)?)));
        }
        if let Some(inner) = text
            .strip_prefix("decimal(")
            .and_then(|t| t.strip_suffix(')'))
        {
            let scale = inner
                .split_once(',')
                .map_or(inner, |(_, scale)| scale)
                .trim();
            return match scale.parse::<i8>() {
                Ok(scale) if (0..=MAX_DECIMAL_SCALE).contains(&scale) => Ok(Self::Decimal(scale)),
                _ => Err(format!(
                    "decimal scale must be between 0 and {MAX_DECIMAL_SCALE}, got {text:?}"
                )),
            };
        }
        Ok(match text {
            "bool" | "boolean" => Self::Bool,
            "int32" | "int" | "integer" => Self::Int32,
            "int64" | "long" | "bigint" => Self::Int64,
            "double" | "float8" => Self::Double,
            "text" | "string" => Self::String,
            "objectid" => Self::ObjectId,
            "date" | "timestamptz" => Self::Date,
            "timestamp" => Self::Timestamp,
            "binary" | "bytea" => Self::Binary,
            "uuid" => Self::Uuid,
            "json" => Self::Json,
            other => {
                return Err(format!(
                    "unknown type {other:?}: expected bool, int32, int64, double, decimal(P,S), \
                     text, objectid, date, timestamp, binary, uuid, json or list<TYPE>"
                ));
            }
        })
    }

    /// Whether a value of this column is a single value of one BSON type family, so that
    /// MongoDB's comparisons of it agree with SQL's.
    pub(crate) fn is_scalar(&self) -> bool {
        !matches!(
            self,
            Self::Document(_) | Self::Array(_) | Self::Json | Self::Null
        )
    }
}

/// Adds a field seen as `field` to `fields`, widening what was seen before.
pub(crate) fn merge_into(fields: &mut BTreeMap<String, FieldType>, name: &str, field: FieldType) {
    match fields.remove(name) {
        Some(seen) => fields.insert(name.to_owned(), seen.widen(field)),
        None => fields.insert(name.to_owned(), field),
    };
}

/// The Arrow fields of a document's fields.
pub(crate) fn struct_fields(fields: &BTreeMap<String, FieldType>) -> Fields {
    fields
        .iter()
        .map(|(name, field)| Field::new(name, field.arrow_type(), true))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::FieldType::{self, *};
    use std::collections::BTreeMap;

    #[test]
    fn widening_follows_the_documented_rules() {
        let cases = [
            (Int32, Int32, Int32),
            (Int32, Int64, Int64),
            (Int64, Double, Double),
            (Int32, Double, Double),
            (Int64, Decimal(2), Decimal(2)),
            (Decimal(2), Decimal(4), Decimal(4)),
            (Null, String, String),
            (Date, Null, Date),
            (String, Int32, Json),
            (Bool, Int32, Json),
            (Decimal(2), Double, Json),
            (Date, Timestamp, Json),
            (ObjectId, String, Json),
            (Array(Box::new(Int32)), Int64, Array(Box::new(Int64))),
            (String, Array(Box::new(String)), Array(Box::new(String))),
            (
                Array(Box::new(Null)),
                Array(Box::new(Double)),
                Array(Box::new(Double)),
            ),
            (
                Array(Box::new(String)),
                Document(BTreeMap::new()),
                Array(Box::new(Json)),
            ),
        ];
        for (a, b, expected) in cases {
            assert_eq!(a.clone().widen(b.clone()), expected, "{a:?} + {b:?}");
            assert_eq!(b.clone().widen(a.clone()), expected, "{b:?} + {a:?}");
        }
    }

    #[test]
    fn documents_widen_field_by_field() {
        let a = Document(BTreeMap::from([
            ("x".to_owned(), Int32),
            ("y".to_owned(), String),
        ]));
        let b = Document(BTreeMap::from([
            ("x".to_owned(), Int64),
            ("z".to_owned(), Bool),
        ]));
        assert_eq!(
            a.widen(b),
            Document(BTreeMap::from([
                ("x".to_owned(), Int64),
                ("y".to_owned(), String),
                ("z".to_owned(), Bool),
            ]))
        );
    }

    #[test]
    fn declared_types_parse() {
        assert_eq!(FieldType::parse("decimal(12,2)"), Ok(Decimal(2)));
        assert_eq!(FieldType::parse("list<int64>"), Ok(Array(Box::new(Int64))));
        assert_eq!(
            FieldType::parse("list<list<text>>"),
            Ok(Array(Box::new(Array(Box::new(String)))))
        );
        assert_eq!(FieldType::parse(" json "), Ok(Json));
        for bad in ["decimal(10,40)", "varchar", "list<nope>", ""] {
            assert!(FieldType::parse(bad).is_err(), "{bad}");
        }
    }
}
