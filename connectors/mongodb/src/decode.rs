//! Raw BSON documents decoded straight into Arrow builders: no intermediate `Document`, no
//! serde structs. A document's fields are walked once, in the order they are stored.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BinaryBuilder, BooleanBuilder, Decimal128Builder, Float64Builder, Int32Builder,
    Int64Builder, ListArray, NullBufferBuilder, StringBuilder, StructArray,
    TimestampMillisecondBuilder, TimestampSecondBuilder,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{Field, FieldRef, Fields};
use mongodb::bson::spec::BinarySubtype;
use mongodb::bson::{Bson, RawBsonRef, RawDocument};
use polygate_connector_core::scan::canonical_f64;

use crate::decimal::Bid;
use crate::types::{FieldType, struct_fields};

/// A value that does not fit its column's type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecodeError {
    /// The field's path (`address.city`, `tags[]`).
    pub(crate) path: String,
    /// What is wrong.
    pub(crate) message: String,
}

/// Appends documents' fields to the columns of a record batch (or of a struct).
#[derive(Debug)]
pub(crate) struct RecordDecoder {
    index: HashMap<String, usize>,
    columns: Vec<ColumnBuilder>,
    seen: Vec<bool>,
}

impl RecordDecoder {
    /// A decoder of the fields `columns` (name and type), in that order; `path` prefixes the
    /// names in errors.
    pub(crate) fn new<'a>(
        path: &str,
        columns: impl IntoIterator<Item = (&'a str, &'a FieldType)>,
    ) -> Self {
        let mut index = HashMap::new();
        let mut builders = Vec::new();
        for (name, field) in columns {
            index.insert(name.to_owned(), builders.len());
            builders.push(ColumnBuilder::new(&join_path(path, name), field));
        }
        Self {
            index,
            seen: vec![false; builders.len()],
            columns: builders,
        }
    }

    /// Appends one document: each column its field, or NULL when the field is missing.
    #[allow(
        clippy::indexing_slicing,
        reason = "`new` maps each name to its position in `columns`, and `columns` and `seen` \
                  keep that length"
    )]
    pub(crate) fn append(&mut self, document: &RawDocument) -> Result<(), DecodeError> {
        self.seen.fill(false);
        for element in document.iter() {
            let (name, value) = element.map_err(|e| DecodeError {
                path: String::new(),
                message: format!("malformed BSON: {e}"),
            })?;
            if let Some(&i) = self.index.get(name) {
                // A repeated key keeps its first value.
                if !self.seen[i] {
                    self.seen[i] = true;
                    self.columns[i].append(value)?;
                }
            }
        }
        for (column, seen) in self.columns.iter_mut().zip(&self.seen) {
            if !seen {
                column.append_null();
            }
        }
        Ok(())
    }

    /// The columns' arrays, in declaration order; the builders start over.
    pub(crate) fn finish(&mut self) -> Vec<ArrayRef> {
        self.columns.iter_mut().map(ColumnBuilder::finish).collect()
    }

    /// Appends a row of NULLs: the fields of a NULL struct.
    fn append_null_row(&mut self) {
        for column in &mut self.columns {
            column.append_null();
        }
    }
}

fn join_path(parent: &str, name: &str) -> String {
    if parent.is_empty() {
        name.to_owned()
    } else {
        format!("{parent}.{name}")
    }
}

/// The builder of one column.
#[derive(Debug)]
struct ColumnBuilder {
    path: String,
    field: FieldType,
    values: Values,
}

#[derive(Debug)]
enum Values {
    Utf8(StringBuilder),
    Bool(BooleanBuilder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Double(Float64Builder),
    Decimal(Decimal128Builder, i8),
    Date(TimestampMillisecondBuilder),
    Timestamp(TimestampSecondBuilder),
    Binary(BinaryBuilder),
    Struct {
        fields: Fields,
        record: Box<RecordDecoder>,
        validity: NullBufferBuilder,
    },
    List {
        item: FieldRef,
        element: Box<ColumnBuilder>,
        offsets: Vec<i32>,
        validity: NullBufferBuilder,
    },
}

impl ColumnBuilder {
    fn new(path: &str, field: &FieldType) -> Self {
        let values = match field {
            FieldType::Null
            | FieldType::String
            | FieldType::ObjectId
            | FieldType::Uuid
            | FieldType::Text
            | FieldType::Json => Values::Utf8(StringBuilder::new()),
            FieldType::Bool => Values::Bool(BooleanBuilder::new()),
            FieldType::Int32 => Values::Int32(Int32Builder::new()),
            FieldType::Int64 => Values::Int64(Int64Builder::new()),
            FieldType::Double => Values::Double(Float64Builder::new()),
            FieldType::Decimal(scale) => Values::Decimal(
                Decimal128Builder::new().with_data_type(field.arrow_type()),
                *scale,
            ),
            FieldType::Date => {
                Values::Date(TimestampMillisecondBuilder::new().with_timezone("UTC"))
            }
            FieldType::Timestamp => {
                Values::Timestamp(TimestampSecondBuilder::new().with_timezone("UTC"))
            }
            FieldType::Binary => Values::Binary(BinaryBuilder::new()),
            FieldType::Document(fields) => Values::Struct {
                fields: struct_fields(fields),
                record: Box::new(RecordDecoder::new(
                    path,
                    fields.iter().map(|(name, field)| (name.as_str(), field)),
                )),
                validity: NullBufferBuilder::new(0),
            },
            FieldType::Array(element) => Values::List {
                item: Arc::new(Field::new("item", element.arrow_type(), true)),
                element: Box::new(ColumnBuilder::new(&format!("{path}[]"), element)),
                offsets: vec![0],
                validity: NullBufferBuilder::new(0),
            },
        };
        Self {
            path: path.to_owned(),
            field: field.clone(),
            values,
        }
    }

    fn mismatch(&self, value: RawBsonRef<'_>) -> DecodeError {
        DecodeError {
            path: self.path.clone(),
            message: format!(
                "a {} value in a column of type {}",
                bson_type_name(value),
                self.field.name()
            ),
        }
    }

    fn append(&mut self, value: RawBsonRef<'_>) -> Result<(), DecodeError> {
        if matches!(value, RawBsonRef::Null | RawBsonRef::Undefined) {
            self.append_null();
            return Ok(());
        }
        let field = &self.field;
        let ok = match (&mut self.values, value) {
            (Values::Utf8(b), value) => match (field, value) {
                (FieldType::String, RawBsonRef::String(s) | RawBsonRef::Symbol(s)) => {
                    b.append_value(s);
                    true
                }
                (FieldType::ObjectId, RawBsonRef::ObjectId(id)) => {
                    b.append_value(id.to_hex());
                    true
                }
                (FieldType::Uuid, RawBsonRef::Binary(bin))
                    if bin.subtype == BinarySubtype::Uuid && bin.bytes.len() == 16 =>
                {
                    b.append_value(uuid_text(bin.bytes));
                    true
                }
                (FieldType::Text, value) => match text_of(value) {
                    Some(text) => {
                        b.append_value(text);
                        true
                    }
                    None => false,
                },
                (FieldType::Json | FieldType::Null, value) => {
                    b.append_value(extended_json(value));
                    true
                }
                _ => false,
            },
            (Values::Bool(b), RawBsonRef::Boolean(v)) => {
                b.append_value(v);
                true
            }
            (Values::Int32(b), RawBsonRef::Int32(v)) => {
                b.append_value(v);
                true
            }
            (Values::Int32(b), RawBsonRef::Int64(v)) => match i32::try_from(v) {
                Ok(v) => {
                    b.append_value(v);
                    true
                }
                Err(_) => false,
            },
            (Values::Int64(b), RawBsonRef::Int64(v)) => {
                b.append_value(v);
                true
            }
            (Values::Int64(b), RawBsonRef::Int32(v)) => {
                b.append_value(i64::from(v));
                true
            }
            (Values::Double(b), RawBsonRef::Double(v)) => {
                b.append_value(canonical_f64(v));
                true
            }
            (Values::Double(b), RawBsonRef::Int32(v)) => {
                b.append_value(f64::from(v));
                true
            }
            (Values::Double(b), RawBsonRef::Int64(v)) => {
                b.append_value(v as f64);
                true
            }
            (Values::Decimal(b, scale), RawBsonRef::Decimal128(d)) => {
                let unscaled = Bid::decode(d.bytes())
                    .to_unscaled(*scale)
                    .map_err(|message| DecodeError {
                        path: self.path.clone(),
                        message,
                    })?;
                b.append_value(unscaled);
                true
            }
            (Values::Decimal(b, scale), RawBsonRef::Int32(v)) => {
                append_integer_decimal(b, i64::from(v), *scale)
            }
            (Values::Decimal(b, scale), RawBsonRef::Int64(v)) => {
                append_integer_decimal(b, v, *scale)
            }
            (Values::Date(b), RawBsonRef::DateTime(v)) => {
                b.append_value(v.timestamp_millis());
                true
            }
            (Values::Timestamp(b), RawBsonRef::Timestamp(v)) => {
                b.append_value(i64::from(v.time));
                true
            }
            (Values::Binary(b), RawBsonRef::Binary(v)) => {
                b.append_value(v.bytes);
                true
            }
            (
                Values::Struct {
                    record, validity, ..
                },
                RawBsonRef::Document(document),
            ) => {
                record.append(document)?;
                validity.append_non_null();
                true
            }
            (
                Values::List {
                    element,
                    offsets,
                    validity,
                    ..
                },
                value,
            ) => {
                let last = offsets.last().copied().unwrap_or(0);
                let count = match value {
                    RawBsonRef::Array(array) => {
                        let mut count = 0;
                        for item in array {
                            let item = item.map_err(|e| DecodeError {
                                path: element.path.clone(),
                                message: format!("malformed BSON: {e}"),
                            })?;
                            element.append(item)?;
                            count += 1;
                        }
                        count
                    }
                    // A scalar where other documents hold an array: one element.
                    scalar => {
                        element.append(scalar)?;
                        1
                    }
                };
                offsets.push(last + count);
                validity.append_non_null();
                true
            }
            _ => false,
        };
        if ok {
            Ok(())
        } else {
            Err(self.mismatch(value))
        }
    }

    fn append_null(&mut self) {
        match &mut self.values {
            Values::Utf8(b) => b.append_null(),
            Values::Bool(b) => b.append_null(),
            Values::Int32(b) => b.append_null(),
            Values::Int64(b) => b.append_null(),
            Values::Double(b) => b.append_null(),
            Values::Decimal(b, _) => b.append_null(),
            Values::Date(b) => b.append_null(),
            Values::Timestamp(b) => b.append_null(),
            Values::Binary(b) => b.append_null(),
            Values::Struct {
                record, validity, ..
            } => {
                record.append_null_row();
                validity.append_null();
            }
            Values::List {
                offsets, validity, ..
            } => {
                offsets.push(offsets.last().copied().unwrap_or(0));
                validity.append_null();
            }
        }
    }

    fn finish(&mut self) -> ArrayRef {
        match &mut self.values {
            Values::Utf8(b) => Arc::new(b.finish()),
            Values::Bool(b) => Arc::new(b.finish()),
            Values::Int32(b) => Arc::new(b.finish()),
            Values::Int64(b) => Arc::new(b.finish()),
            Values::Double(b) => Arc::new(b.finish()),
            Values::Decimal(b, _) => Arc::new(b.finish()),
            Values::Date(b) => Arc::new(b.finish()),
            Values::Timestamp(b) => Arc::new(b.finish()),
            Values::Binary(b) => Arc::new(b.finish()),
            Values::Struct {
                fields,
                record,
                validity,
            } => {
                let len = validity.len();
                let children = record.finish();
                if fields.is_empty() {
                    return Arc::new(StructArray::new_empty_fields(len, validity.finish()));
                }
                Arc::new(StructArray::new(
                    fields.clone(),
                    children,
                    validity.finish(),
                ))
            }
            Values::List {
                item,
                element,
                offsets,
                validity,
            } => {
                let values = element.finish();
                let offsets = OffsetBuffer::new(std::mem::replace(offsets, vec![0]).into());
                Arc::new(ListArray::new(
                    Arc::clone(item),
                    offsets,
                    values,
                    validity.finish(),
                ))
            }
        }
    }
}

fn append_integer_decimal(builder: &mut Decimal128Builder, value: i64, scale: i8) -> bool {
    match 10i128
        .checked_pow(scale as u32)
        .and_then(|f| i128::from(value).checked_mul(f))
    {
        Some(unscaled) => {
            builder.append_value(unscaled);
            true
        }
        None => false,
    }
}

/// The hyphenated lowercase text of a UUID's 16 bytes.
fn uuid_text(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(36);
    for (i, byte) in bytes.iter().enumerate() {
        if matches!(i, 4 | 6 | 8 | 10) {
            text.push('-');
        }
        text.push_str(&format!("{byte:02x}"));
    }
    text
}

/// The text of a value read as text: regular expressions as `/pattern/options`, JavaScript
/// as its code, MinKey and MaxKey by name.
fn text_of(value: RawBsonRef<'_>) -> Option<String> {
    Some(match value {
        RawBsonRef::String(s) | RawBsonRef::Symbol(s) | RawBsonRef::JavaScriptCode(s) => {
            s.to_owned()
        }
        RawBsonRef::JavaScriptCodeWithScope(code) => code.code.to_owned(),
        RawBsonRef::RegularExpression(regex) => format!("/{}/{}", regex.pattern, regex.options),
        RawBsonRef::MinKey => "MinKey".to_owned(),
        RawBsonRef::MaxKey => "MaxKey".to_owned(),
        RawBsonRef::DbPointer(_) => extended_json(value),
        _ => return None,
    })
}

/// The value's canonical Extended JSON.
pub(crate) fn extended_json(value: RawBsonRef<'_>) -> String {
    match Bson::try_from(value) {
        Ok(bson) => bson.into_canonical_extjson().to_string(),
        Err(e) => format!("{{\"$invalid\": {:?}}}", e.to_string()),
    }
}

/// The BSON type's name, as MongoDB's `$type` spells it.
pub(crate) fn bson_type_name(value: RawBsonRef<'_>) -> &'static str {
    match value {
        RawBsonRef::Double(_) => "double",
        RawBsonRef::String(_) => "string",
        RawBsonRef::Array(_) => "array",
        RawBsonRef::Document(_) => "object",
        RawBsonRef::Boolean(_) => "bool",
        RawBsonRef::Null => "null",
        RawBsonRef::RegularExpression(_) => "regex",
        RawBsonRef::JavaScriptCode(_) => "javascript",
        RawBsonRef::JavaScriptCodeWithScope(_) => "javascriptWithScope",
        RawBsonRef::Int32(_) => "int",
        RawBsonRef::Int64(_) => "long",
        RawBsonRef::Timestamp(_) => "timestamp",
        RawBsonRef::Binary(_) => "binData",
        RawBsonRef::ObjectId(_) => "objectId",
        RawBsonRef::DateTime(_) => "date",
        RawBsonRef::Symbol(_) => "symbol",
        RawBsonRef::Decimal128(_) => "decimal",
        RawBsonRef::Undefined => "undefined",
        RawBsonRef::MaxKey => "maxKey",
        RawBsonRef::MinKey => "minKey",
        RawBsonRef::DbPointer(_) => "dbPointer",
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Array, AsArray};
    use datafusion::arrow::datatypes::Int64Type;
    use mongodb::bson::{RawDocumentBuf, doc, rawdoc};

    fn decode(
        fields: &[(&str, FieldType)],
        docs: &[RawDocumentBuf],
    ) -> Result<Vec<ArrayRef>, DecodeError> {
        let mut decoder = RecordDecoder::new("", fields.iter().map(|(n, f)| (*n, f)));
        for d in docs {
            decoder.append(d)?;
        }
        Ok(decoder.finish())
    }

    #[test]
    fn missing_and_null_fields_read_as_null_and_ints_widen() {
        let docs = [
            rawdoc! { "a": 1_i32 },
            rawdoc! { "a": 2_i64, "b": "x" },
            rawdoc! { "a": null },
            rawdoc! {},
        ];
        let arrays =
            decode(&[("a", FieldType::Int64), ("b", FieldType::String)], &docs).expect("decodes");
        let a = arrays[0].as_primitive::<Int64Type>();
        assert_eq!(
            a.iter().collect::<Vec<_>>(),
            vec![Some(1), Some(2), None, None]
        );
        assert_eq!(arrays[1].null_count(), 3);
    }

    #[test]
    fn scalars_read_as_one_element_lists_and_documents_as_structs() {
        let docs = [
            rawdoc! { "t": ["a", "b"], "s": { "x": 1_i32, "y": { "z": true } } },
            rawdoc! { "t": "c", "s": { "x": 2_i32 } },
            rawdoc! { "t": [] },
        ];
        let list = FieldType::Array(Box::new(FieldType::String));
        let nested = FieldType::of(RawBsonRef::Document(&rawdoc! { "z": true }));
        let strukt = FieldType::Document(
            [("x".to_owned(), FieldType::Int32), ("y".to_owned(), nested)].into(),
        );
        let arrays = decode(&[("t", list), ("s", strukt)], &docs).expect("decodes");
        let lists = arrays[0].as_list::<i32>();
        assert_eq!(lists.value_offsets(), &[0, 2, 3, 3]);
        let structs = arrays[1].as_struct();
        assert!(structs.is_null(2));
        assert_eq!(structs.column(1).as_struct().null_count(), 2);
    }

    #[test]
    fn a_value_of_another_type_is_an_error_naming_its_path() {
        let docs = [rawdoc! { "s": { "x": "not a number" } }];
        let strukt = FieldType::Document([("x".to_owned(), FieldType::Int64)].into());
        let error = decode(&[("s", strukt)], &docs).expect_err("mismatch");
        assert_eq!(error.path, "s.x");
        assert_eq!(error.message, "a string value in a column of type int64");
    }

    #[test]
    fn conflicting_values_read_as_canonical_extended_json() {
        let docs = [
            rawdoc! { "j": 1_i32 },
            rawdoc! { "j": "x" },
            rawdoc! { "j": { "$gt": 1.5 } },
        ];
        let arrays = decode(&[("j", FieldType::Json)], &docs).expect("decodes");
        let text = arrays[0].as_string::<i32>();
        assert_eq!(text.value(0), r#"{"$numberInt":"1"}"#);
        assert_eq!(text.value(1), r#""x""#);
        assert_eq!(text.value(2), r#"{"$gt":{"$numberDouble":"1.5"}}"#);
        let _ = doc! {};
    }
}
