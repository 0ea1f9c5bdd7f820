//! Hits' `_source` documents into Arrow columns.
//!
//! `_source` holds each document as it was sent, so the reading follows what the cluster does
//! when it indexes one: a dotted key (`"a.b": 1`) is the field `b` of the object `a`, a
//! one-element array is its element, numbers in strings are numbers, and a scalar in a list
//! column is a list of one. A value the column's type cannot hold is an error naming the
//! field; nothing is silently dropped.

use std::collections::HashMap;
use std::sync::Arc;

use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, Float32Builder, Float64Builder, Int8Builder, Int16Builder,
    Int32Builder, Int64Builder, ListArray, NullBufferBuilder, StringBuilder, StructArray,
    TimestampMillisecondBuilder, TimestampNanosecondBuilder, UInt64Builder,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{Field as ArrowField, FieldRef, Fields};
use serde_json::{Map, Value};

use crate::schema::{Field, IntegerWidth, Kind};

/// A value that does not fit its column.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct DecodeError {
    /// The field's path (`address.city`, `tags[]`).
    pub path: String,
    pub message: String,
}

/// Appends documents' fields to the columns of a record batch (or of a struct).
#[derive(Debug)]
pub(crate) struct RecordDecoder {
    index: HashMap<String, usize>,
    columns: Vec<ColumnBuilder>,
    seen: Vec<bool>,
}

impl RecordDecoder {
    /// A decoder of `fields`, in that order; `path` prefixes their names in errors.
    pub fn new<'a>(path: &str, fields: impl IntoIterator<Item = &'a Field>) -> Self {
        let mut index = HashMap::new();
        let mut columns = Vec::new();
        for field in fields {
            index.insert(field.name.clone(), columns.len());
            columns.push(ColumnBuilder::new(&join_path(path, &field.name), field));
        }
        Self {
            index,
            seen: vec![false; columns.len()],
            columns,
        }
    }

    /// Appends one object: each column its field, or NULL when the field is missing.
    #[allow(
        clippy::indexing_slicing,
        reason = "`new` maps each name to its position in `columns`, and `columns` and `seen` \
                  keep that length"
    )]
    pub fn append(&mut self, object: &Map<String, Value>) -> Result<(), DecodeError> {
        self.seen.fill(false);
        let mut dotted: Option<Map<String, Value>> = None;
        for (key, value) in object {
            if let Some(&i) = self.index.get(key.as_str()) {
                if !self.seen[i] {
                    self.seen[i] = true;
                    self.columns[i].append(value)?;
                }
            } else if key.contains('.') {
                nest(dotted.get_or_insert_with(Map::new), key, value.clone());
            }
        }
        if let Some(dotted) = dotted {
            // `"a.b": 1` is the field b of a: read what dotted keys spell as objects, merged
            // with the object fields of the same name.
            for (key, value) in dotted {
                let Some(&i) = self.index.get(key.as_str()) else {
                    continue;
                };
                if self.seen[i] {
                    return Err(DecodeError {
                        path: self.columns[i].path.clone(),
                        message: "given both as an object and with dotted keys".to_owned(),
                    });
                }
                self.seen[i] = true;
                self.columns[i].append(&value)?;
            }
        }
        for (column, seen) in self.columns.iter_mut().zip(&self.seen) {
            if !seen {
                column.append_null();
            }
        }
        Ok(())
    }

    /// The columns' arrays, in order; the builders start over.
    pub fn finish(&mut self) -> Vec<ArrayRef> {
        self.columns.iter_mut().map(ColumnBuilder::finish).collect()
    }

    fn append_null_row(&mut self) {
        for column in &mut self.columns {
            column.append_null();
        }
    }
}

/// Puts `value` at the dotted `path` inside `object`.
fn nest(object: &mut Map<String, Value>, path: &str, value: Value) {
    match path.split_once('.') {
        None => {
            object.insert(path.to_owned(), value);
        }
        Some((head, rest)) => {
            let child = object
                .entry(head.to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            if let Value::Object(child) = child {
                nest(child, rest, value);
            }
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
    kind: Kind,
    values: Values,
}

#[derive(Debug)]
enum Values {
    Utf8(StringBuilder),
    Bool(BooleanBuilder),
    Int8(Int8Builder),
    Int16(Int16Builder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    UInt64(UInt64Builder),
    Float32(Float32Builder),
    Float64(Float64Builder),
    Millis(TimestampMillisecondBuilder),
    Nanos(TimestampNanosecondBuilder),
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
    fn new(path: &str, field: &Field) -> Self {
        if field.list {
            let element = Field {
                list: false,
                ..field.clone()
            };
            return Self {
                path: path.to_owned(),
                kind: field.kind.clone(),
                values: Values::List {
                    item: Arc::new(ArrowField::new("item", field.kind.data_type(), true)),
                    element: Box::new(ColumnBuilder::new(&format!("{path}[]"), &element)),
                    offsets: vec![0],
                    validity: NullBufferBuilder::new(0),
                },
            };
        }
        let values = match &field.kind {
            Kind::Keyword { .. } | Kind::Text { .. } | Kind::Ip | Kind::Json { .. } => {
                Values::Utf8(StringBuilder::new())
            }
            Kind::Integer(IntegerWidth::Byte) => Values::Int8(Int8Builder::new()),
            Kind::Integer(IntegerWidth::Short) => Values::Int16(Int16Builder::new()),
            Kind::Integer(IntegerWidth::Integer) => Values::Int32(Int32Builder::new()),
            Kind::Integer(IntegerWidth::Long) => Values::Int64(Int64Builder::new()),
            Kind::UnsignedLong => Values::UInt64(UInt64Builder::new()),
            Kind::Float => Values::Float32(Float32Builder::new()),
            Kind::Double { .. } => Values::Float64(Float64Builder::new()),
            Kind::Boolean => Values::Bool(BooleanBuilder::new()),
            Kind::Date { nanos: false, .. } => {
                Values::Millis(TimestampMillisecondBuilder::new().with_timezone("UTC"))
            }
            Kind::Date { nanos: true, .. } => {
                Values::Nanos(TimestampNanosecondBuilder::new().with_timezone("UTC"))
            }
            Kind::Object(children) => Values::Struct {
                fields: children.iter().map(Field::arrow_field).collect(),
                record: Box::new(RecordDecoder::new(path, children)),
                validity: NullBufferBuilder::new(0),
            },
            Kind::GeoPoint => {
                let children = [
                    Field {
                        name: "lat".to_owned(),
                        kind: Kind::Double { scaled: false },
                        list: false,
                        searchable: false,
                    },
                    Field {
                        name: "lon".to_owned(),
                        kind: Kind::Double { scaled: false },
                        list: false,
                        searchable: false,
                    },
                ];
                Values::Struct {
                    fields: children.iter().map(Field::arrow_field).collect(),
                    record: Box::new(RecordDecoder::new(path, &children)),
                    validity: NullBufferBuilder::new(0),
                }
            }
        };
        Self {
            path: path.to_owned(),
            kind: field.kind.clone(),
            values,
        }
    }

    fn error(&self, message: impl Into<String>) -> DecodeError {
        DecodeError {
            path: self.path.clone(),
            message: message.into(),
        }
    }

    fn mismatch(&self, value: &Value) -> DecodeError {
        let shown = value.to_string();
        let shown = if shown.len() > 60 {
            format!("{}...", &shown[..shown.floor_char_boundary(60)])
        } else {
            shown
        };
        self.error(format!("{shown} does not read as {}", self.kind_name()))
    }

    fn kind_name(&self) -> &'static str {
        match &self.kind {
            Kind::Keyword { .. } => "a keyword",
            Kind::Text { .. } => "text",
            Kind::Integer(IntegerWidth::Byte) => "a byte",
            Kind::Integer(IntegerWidth::Short) => "a short",
            Kind::Integer(IntegerWidth::Integer) => "an integer",
            Kind::Integer(IntegerWidth::Long) => "a long",
            Kind::UnsignedLong => "an unsigned_long",
            Kind::Float => "a float",
            Kind::Double { .. } => "a double",
            Kind::Boolean => "a boolean",
            Kind::Date { .. } => "a date in the field's format",
            Kind::Ip => "an ip",
            Kind::Object(_) => "an object",
            Kind::GeoPoint => "a geo_point",
            Kind::Json { .. } => "JSON",
        }
    }

    fn append(&mut self, value: &Value) -> Result<(), DecodeError> {
        if let Values::List {
            element,
            offsets,
            validity,
            ..
        } = &mut self.values
        {
            let start = offsets.last().copied().unwrap_or(0);
            let added = match value {
                Value::Null => {
                    offsets.push(start);
                    validity.append_null();
                    return Ok(());
                }
                // A geo_point's own array form ([lon, lat]) is one point.
                Value::Array(items) if !is_point_array(&element.kind, items) => {
                    for item in items {
                        element.append(item)?;
                    }
                    items.len()
                }
                // A scalar in a list column is a list of one.
                scalar => {
                    element.append(scalar)?;
                    1
                }
            };
            let end = i32::try_from(added)
                .ok()
                .and_then(|n| start.checked_add(n))
                .ok_or_else(|| DecodeError {
                    path: self.path.clone(),
                    message: "more list elements than a batch can hold".to_owned(),
                })?;
            offsets.push(end);
            validity.append_non_null();
            return Ok(());
        }
        let value = match value {
            Value::Null => {
                self.append_null();
                return Ok(());
            }
            Value::Array(items) if !is_point_array(&self.kind, items) => match items.as_slice() {
                // The cluster indexes [] as missing and [x] as x.
                [] => {
                    self.append_null();
                    return Ok(());
                }
                [one] => one,
                _ => {
                    return Err(self.error(
                        "holds an array, but its column is not a list: add the field to the \
                         index's `arrays` in catalog.toml",
                    ));
                }
            },
            value => value,
        };
        let ok = match &mut self.values {
            Values::Utf8(b) => match (&self.kind, value) {
                (Kind::Json { .. }, value) => {
                    b.append_value(value.to_string());
                    true
                }
                (_, Value::String(s)) => {
                    b.append_value(s);
                    true
                }
                // The cluster indexes numbers and booleans in keyword fields as their text.
                (Kind::Keyword { .. } | Kind::Text { .. }, Value::Number(n)) => {
                    b.append_value(n.to_string());
                    true
                }
                (Kind::Keyword { .. } | Kind::Text { .. }, Value::Bool(v)) => {
                    b.append_value(if *v { "true" } else { "false" });
                    true
                }
                _ => false,
            },
            Values::Bool(b) => match value {
                Value::Bool(v) => {
                    b.append_value(*v);
                    true
                }
                Value::String(s) if s == "true" => {
                    b.append_value(true);
                    true
                }
                Value::String(s) if s == "false" || s.is_empty() => {
                    b.append_value(false);
                    true
                }
                _ => false,
            },
            Values::Int8(b) => append_integer(value, |v| i8::try_from(v).ok(), b),
            Values::Int16(b) => append_integer(value, |v| i16::try_from(v).ok(), b),
            Values::Int32(b) => append_integer(value, |v| i32::try_from(v).ok(), b),
            Values::Int64(b) => append_integer(value, |v| i64::try_from(v).ok(), b),
            Values::UInt64(b) => append_integer(value, |v| u64::try_from(v).ok(), b),
            Values::Float32(b) => match number(value) {
                Some(v) if v.is_finite() => {
                    b.append_value(v as f32);
                    true
                }
                _ => false,
            },
            Values::Float64(b) => match number(value) {
                Some(v) if v.is_finite() => {
                    b.append_value(v);
                    true
                }
                _ => false,
            },
            Values::Millis(b) => match date_nanos(&self.kind, value) {
                Some(nanos) => {
                    b.append_value(nanos.div_euclid(1_000_000));
                    true
                }
                None => false,
            },
            Values::Nanos(b) => match date_nanos(&self.kind, value) {
                Some(nanos) => {
                    b.append_value(nanos);
                    true
                }
                None => false,
            },
            Values::Struct {
                record, validity, ..
            } => {
                let object = if matches!(self.kind, Kind::GeoPoint) {
                    geo_point(value)
                } else {
                    value.as_object().cloned()
                };
                match object {
                    Some(object) => {
                        record.append(&object)?;
                        validity.append_non_null();
                        true
                    }
                    None => false,
                }
            }
            Values::List { .. } => unreachable!("lists are appended above"),
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
            Values::Int8(b) => b.append_null(),
            Values::Int16(b) => b.append_null(),
            Values::Int32(b) => b.append_null(),
            Values::Int64(b) => b.append_null(),
            Values::UInt64(b) => b.append_null(),
            Values::Float32(b) => b.append_null(),
            Values::Float64(b) => b.append_null(),
            Values::Millis(b) => b.append_null(),
            Values::Nanos(b) => b.append_null(),
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
            Values::Int8(b) => Arc::new(b.finish()),
            Values::Int16(b) => Arc::new(b.finish()),
            Values::Int32(b) => Arc::new(b.finish()),
            Values::Int64(b) => Arc::new(b.finish()),
            Values::UInt64(b) => Arc::new(b.finish()),
            Values::Float32(b) => Arc::new(b.finish()),
            Values::Float64(b) => Arc::new(b.finish()),
            Values::Millis(b) => Arc::new(b.finish()),
            Values::Nanos(b) => Arc::new(b.finish()),
            Values::Struct {
                fields,
                record,
                validity,
            } => {
                let children = record.finish();
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

/// `[lon, lat]`: one geo_point in its array form, not an array of points.
fn is_point_array(kind: &Kind, items: &[Value]) -> bool {
    matches!(kind, Kind::GeoPoint) && items.len() == 2 && items.iter().all(Value::is_number)
}

/// A JSON number, or a string holding one, as the cluster coerces it.
fn number(value: &Value) -> Option<f64> {
    match value {
        Value::Number(n) => n.as_f64(),
        Value::String(s) => s.trim().parse().ok(),
        _ => None,
    }
}

/// An integer as the cluster indexes it: integers as they are, numbers with a fraction
/// truncated toward zero (`coerce`), numbers in strings read as numbers.
fn append_integer<T, B>(value: &Value, fit: impl Fn(i128) -> Option<T>, builder: &mut B) -> bool
where
    B: IntegerAppend<T>,
{
    let whole: Option<i128> = match value {
        Value::Number(n) => n
            .as_i64()
            .map(i128::from)
            .or_else(|| n.as_u64().map(i128::from))
            .or_else(|| n.as_f64().and_then(truncate)),
        Value::String(s) => {
            let s = s.trim();
            s.parse::<i128>()
                .ok()
                .or_else(|| s.parse::<f64>().ok().and_then(truncate))
        }
        _ => None,
    };
    match whole.and_then(fit) {
        Some(v) => {
            builder.append(v);
            true
        }
        None => false,
    }
}

fn truncate(v: f64) -> Option<i128> {
    (v.is_finite() && v.abs() < 1.8e19).then(|| v.trunc() as i128)
}

trait IntegerAppend<T> {
    fn append(&mut self, value: T);
}

macro_rules! integer_append {
    ($($builder:ty => $t:ty),*) => {
        $(impl IntegerAppend<$t> for $builder {
            fn append(&mut self, value: $t) {
                self.append_value(value);
            }
        })*
    };
}

integer_append!(Int8Builder => i8, Int16Builder => i16, Int32Builder => i32,
    Int64Builder => i64, UInt64Builder => u64);

fn date_nanos(kind: &Kind, value: &Value) -> Option<i64> {
    let Kind::Date { formats, .. } = kind else {
        return None;
    };
    match value {
        Value::String(s) => formats.string_nanos(s).ok(),
        Value::Number(n) => formats.number_nanos(n.as_f64()?, &n.to_string()).ok(),
        _ => None,
    }
}

/// A geo_point in any of the forms the cluster takes: `{lat, lon}`, `"lat,lon"`,
/// `[lon, lat]`, `"POINT (lon lat)"`, or a geohash.
fn geo_point(value: &Value) -> Option<Map<String, Value>> {
    let (lat, lon) = match value {
        Value::Object(o) => (number(o.get("lat")?)?, number(o.get("lon")?)?),
        Value::Array(items) => (number(items.get(1)?)?, number(items.first()?)?),
        Value::String(s) => {
            let s = s.trim();
            if let Some((lat, lon)) = s.split_once(',') {
                (lat.trim().parse().ok()?, lon.trim().parse().ok()?)
            } else if let Some(inner) = s
                .strip_prefix("POINT")
                .map(str::trim)
                .and_then(|r| r.strip_prefix('('))
                .and_then(|r| r.strip_suffix(')'))
            {
                let mut parts = inner.split_whitespace();
                let lon: f64 = parts.next()?.parse().ok()?;
                let lat: f64 = parts.next()?.parse().ok()?;
                (lat, lon)
            } else {
                geohash(s)?
            }
        }
        _ => return None,
    };
    if !(-90.0..=90.0).contains(&lat) || !(-180.0..=180.0).contains(&lon) {
        return None;
    }
    let mut point = Map::new();
    point.insert("lat".to_owned(), Value::from(lat));
    point.insert("lon".to_owned(), Value::from(lon));
    Some(point)
}

/// The centre of a geohash cell.
fn geohash(hash: &str) -> Option<(f64, f64)> {
    const BASE32: &[u8] = b"0123456789bcdefghjkmnpqrstuvwxyz";
    if hash.is_empty() || hash.len() > 12 {
        return None;
    }
    let (mut lat, mut lon) = ((-90.0f64, 90.0f64), (-180.0f64, 180.0f64));
    let mut even = true;
    for c in hash.bytes() {
        let bits = BASE32.iter().position(|&b| b == c.to_ascii_lowercase())?;
        for shift in (0..5).rev() {
            let bit = (bits >> shift) & 1 == 1;
            let range = if even { &mut lon } else { &mut lat };
            let mid = (range.0 + range.1) / 2.0;
            if bit {
                range.0 = mid;
            } else {
                range.1 = mid;
            }
            even = !even;
        }
    }
    Some(((lat.0 + lat.1) / 2.0, (lon.0 + lon.1) / 2.0))
}

#[cfg(test)]
mod tests;
