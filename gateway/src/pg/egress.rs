//! Arrow batches into DataRow messages, a column at a time.
//!
//! A batch's rows are written into one buffer, and each DataRow is a slice of it: no
//! allocation per row or per value. Each column gets a writer chosen once per batch from its
//! Arrow type and the PostgreSQL type and format the client was told: integers, booleans,
//! strings, floats (binary), dates and timestamps (binary) are written directly; every other
//! column goes through arrow-pg's encoder for that one value, into the same buffer, so that
//! each type keeps exactly one encoding.
//!
//! Documents (Struct, Map, and lists that are not PostgreSQL arrays: lists of documents or of
//! lists) are sent as `jsonb`, written by arrow-json. [`pg_fields`] says so in the row
//! description, and every result's description comes from it.

use std::sync::Arc;

use arrow_pg::datatypes::arrow_schema_to_pg_fields;
use arrow_pg::encoder::{Encoder, encode_value};
use bytes::{BufMut, BytesMut};
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Date32Array, Float32Array, Float64Array, Int16Array,
    Int32Array, Int64Array, TimestampMicrosecondArray,
};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Schema, TimeUnit};
use datafusion::arrow::json::writer::{EncoderOptions, NullableEncoder, make_encoder};
use datafusion::arrow::record_batch::RecordBatch;
use pgwire::api::Type;
use pgwire::api::portal::Format;
use pgwire::api::results::{FieldFormat, FieldInfo};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::data::DataRow;
use pgwire::types::ToSqlText;
use pgwire::types::format::FormatOptions;
use polygate_pgcompat::settings::Settings;
use postgres_types::{IsNull, ToSql};

/// Seconds from the Unix epoch to PostgreSQL's (2000-01-01).
const PG_EPOCH_SECONDS: i64 = 946_684_800;
/// Days from the Unix epoch to PostgreSQL's.
const PG_EPOCH_DAYS: i32 = 10_957;

/// Is a column of `data_type` sent as `jsonb`: a document, or a list PostgreSQL has no array
/// type for?
pub fn is_json(data_type: &DataType) -> bool {
    match data_type {
        DataType::Struct(_) | DataType::Map(..) | DataType::Union(..) => true,
        DataType::List(item)
        | DataType::LargeList(item)
        | DataType::FixedSizeList(item, _)
        | DataType::ListView(item)
        | DataType::LargeListView(item) => {
            matches!(
                item.data_type(),
                DataType::Struct(_)
                    | DataType::Map(..)
                    | DataType::Union(..)
                    | DataType::List(_)
                    | DataType::LargeList(_)
                    | DataType::FixedSizeList(..)
                    | DataType::ListView(_)
                    | DataType::LargeListView(_)
            )
        }
        _ => false,
    }
}

/// The row description of a result with `schema`: arrow-pg's types, except documents, which
/// are `jsonb`.
pub fn pg_fields(
    schema: &Schema,
    format: &Format,
    options: Option<Arc<FormatOptions>>,
) -> PgWireResult<Vec<FieldInfo>> {
    // arrow-pg describes the other columns; documents stand in as text for it.
    let described = Schema::new(
        schema
            .fields()
            .iter()
            .map(|field| {
                if is_json(field.data_type()) {
                    Field::new(field.name(), DataType::Utf8, field.is_nullable())
                } else {
                    field.as_ref().clone()
                }
            })
            .collect::<Vec<_>>(),
    );
    let mut fields = arrow_schema_to_pg_fields(&described, format, options.clone())?;
    for ((index, field), pg_field) in schema.fields().iter().enumerate().zip(&mut fields) {
        if is_json(field.data_type()) {
            let mut info = FieldInfo::new(
                field.name().clone(),
                None,
                None,
                Type::JSONB,
                format.format_for(index),
            );
            if let Some(options) = &options {
                info = info.with_format_options(Arc::clone(options));
            }
            *pg_field = info;
        }
    }
    Ok(fields)
}

/// How one column is written.
enum Column<'a> {
    Int16(&'a Int16Array, FieldFormat),
    Int32(&'a Int32Array, FieldFormat),
    Int64(&'a Int64Array, FieldFormat),
    Bool(&'a BooleanArray, FieldFormat),
    /// Text in either format: the bytes are the same.
    Utf8(&'a ArrayRef),
    Float32(&'a Float32Array),
    Float64(&'a Float64Array),
    Date(&'a Date32Array),
    Timestamp(&'a TimestampMicrosecondArray),
    /// A document as `jsonb`, by arrow-json; the buffer is reused from value to value.
    Json(NullableEncoder<'a>, FieldFormat, Vec<u8>),
    /// arrow-pg's encoder, one value at a time.
    Other(&'a ArrayRef, &'a Field),
}

impl<'a> Column<'a> {
    fn new(
        array: &'a ArrayRef,
        field: &'a FieldRef,
        pg: &FieldInfo,
        json: &'a EncoderOptions,
    ) -> PgWireResult<Self> {
        let (pg_type, format) = (pg.datatype(), pg.format());
        let binary = format == FieldFormat::Binary;
        if is_json(array.data_type()) && pg_type == &Type::JSONB {
            let encoder = make_encoder(field, array.as_ref(), json)
                .map_err(|e| PgWireError::ApiError(Box::new(e)))?;
            return Ok(Self::Json(encoder, format, Vec::new()));
        }
        Ok(match (array.data_type(), pg_type) {
            (DataType::Int16, &Type::INT2) => Self::Int16(array.as_primitive(), format),
            (DataType::Int32, &Type::INT4) => Self::Int32(array.as_primitive(), format),
            (DataType::Int64, &Type::INT8) => Self::Int64(array.as_primitive(), format),
            (DataType::Boolean, &Type::BOOL) => Self::Bool(array.as_boolean(), format),
            (
                DataType::Utf8 | DataType::LargeUtf8 | DataType::Utf8View,
                &Type::TEXT | &Type::VARCHAR,
            ) => Self::Utf8(array),
            (DataType::Float32, &Type::FLOAT4) if binary => Self::Float32(array.as_primitive()),
            (DataType::Float64, &Type::FLOAT8) if binary => Self::Float64(array.as_primitive()),
            (DataType::Date32, &Type::DATE) if binary => Self::Date(array.as_primitive()),
            (
                DataType::Timestamp(TimeUnit::Microsecond, _),
                &Type::TIMESTAMP | &Type::TIMESTAMPTZ,
            ) if binary => Self::Timestamp(array.as_primitive()),
            _ => Self::Other(array, field),
        })
    }

    /// A guess of the bytes one value takes, length prefix included, to size the buffer.
    fn width(&self) -> usize {
        4 + match self {
            Self::Int16(..) => 6,
            Self::Int32(..) | Self::Float32(_) | Self::Date(_) => 11,
            Self::Int64(..) | Self::Float64(_) | Self::Timestamp(_) => 20,
            Self::Bool(..) => 1,
            Self::Utf8(_) | Self::Other(..) => 16,
            Self::Json(..) => 64,
        }
    }
}

/// Encodes every row of `batch` as DataRows, for the columns described by `fields`.
pub fn encode_batch(
    fields: &Arc<Vec<FieldInfo>>,
    batch: &RecordBatch,
) -> PgWireResult<Vec<DataRow>> {
    if batch.num_columns() != fields.len() {
        return Err(PgWireError::ApiError(
            format!(
                "a batch of {} columns for {} fields",
                batch.num_columns(),
                fields.len()
            )
            .into(),
        ));
    }
    let schema = batch.schema();
    let json = EncoderOptions::default();
    let mut columns: Vec<Column<'_>> = batch
        .columns()
        .iter()
        .zip(schema.fields().iter())
        .zip(fields.iter())
        .map(|((array, field), pg)| Column::new(array, field, pg, &json))
        .collect::<PgWireResult<_>>()?;
    let row_width: usize = columns.iter().map(Column::width).sum();
    let mut buffer = BytesMut::with_capacity(row_width * batch.num_rows());
    let mut rows = Vec::with_capacity(batch.num_rows());
    let field_count = i16::try_from(columns.len())
        .map_err(|_| PgWireError::ApiError("more than 32767 columns".into()))?;
    for row in 0..batch.num_rows() {
        for (column, field) in columns.iter_mut().zip(fields.iter()) {
            write_value(&mut buffer, column, row, field)?;
        }
        rows.push(DataRow::new(buffer.split(), field_count));
    }
    Ok(rows)
}

fn write_value(
    out: &mut BytesMut,
    column: &mut Column<'_>,
    row: usize,
    pg: &FieldInfo,
) -> PgWireResult<()> {
    let is_null = match column {
        Column::Json(encoder, format, scratch) => {
            if encoder.is_null(row) {
                out.put_i32(-1);
                return Ok(());
            }
            scratch.clear();
            encoder.encode(row, scratch);
            // jsonb's binary format is a version byte, then the text.
            let version = usize::from(*format == FieldFormat::Binary);
            put_length(out, scratch.len() + version)?;
            if version == 1 {
                out.put_u8(1);
            }
            out.put_slice(scratch);
            return Ok(());
        }
        Column::Int16(a, _) => a.is_null(row),
        Column::Int32(a, _) => a.is_null(row),
        Column::Int64(a, _) => a.is_null(row),
        Column::Bool(a, _) => a.is_null(row),
        Column::Utf8(a) => a.is_null(row),
        Column::Float32(a) => a.is_null(row),
        Column::Float64(a) => a.is_null(row),
        Column::Date(a) => a.is_null(row),
        Column::Timestamp(a) => a.is_null(row),
        Column::Other(array, field) => {
            return encode_value(&mut Writer { out }, array, row, field, pg);
        }
    };
    if is_null {
        out.put_i32(-1);
        return Ok(());
    }
    match column {
        Column::Int16(a, format) => integer(out, i64::from(a.value(row)), *format, |o, v| {
            o.put_i16(v as i16)
        }),
        Column::Int32(a, format) => integer(out, i64::from(a.value(row)), *format, |o, v| {
            o.put_i32(v as i32)
        }),
        Column::Int64(a, format) => integer(out, a.value(row), *format, |o, v| o.put_i64(v)),
        Column::Bool(a, format) => {
            out.put_i32(1);
            let value = a.value(row);
            match format {
                FieldFormat::Text => out.put_u8(if value { b't' } else { b'f' }),
                FieldFormat::Binary => out.put_u8(u8::from(value)),
            }
        }
        Column::Utf8(array) => {
            let text = string_at(array, row);
            put_length(out, text.len())?;
            out.put_slice(text.as_bytes());
        }
        Column::Float32(a) => {
            out.put_i32(4);
            out.put_f32(a.value(row));
        }
        Column::Float64(a) => {
            out.put_i32(8);
            out.put_f64(a.value(row));
        }
        Column::Date(a) => {
            out.put_i32(4);
            out.put_i32(a.value(row) - PG_EPOCH_DAYS);
        }
        Column::Timestamp(a) => {
            out.put_i32(8);
            out.put_i64(a.value(row) - PG_EPOCH_SECONDS * 1_000_000);
        }
        Column::Other(..) | Column::Json(..) => unreachable!("written above"),
    }
    Ok(())
}

#[allow(
    clippy::indexing_slicing,
    reason = "`start` was `out.len()` before the four bytes of the length were put"
)]
fn integer(
    out: &mut BytesMut,
    value: i64,
    format: FieldFormat,
    binary: impl Fn(&mut BytesMut, i64),
) {
    match format {
        FieldFormat::Text => {
            let mut digits = itoa::Buffer::new();
            let text = digits.format(value);
            out.put_i32(text.len() as i32);
            out.put_slice(text.as_bytes());
        }
        FieldFormat::Binary => {
            let start = out.len();
            out.put_i32(0);
            binary(out, value);
            let length = (out.len() - start - 4) as i32;
            out[start..start + 4].copy_from_slice(&length.to_be_bytes());
        }
    }
}

fn string_at(array: &ArrayRef, row: usize) -> &str {
    match array.data_type() {
        DataType::LargeUtf8 => array.as_string::<i64>().value(row),
        DataType::Utf8View => array.as_string_view().value(row),
        _ => array.as_string::<i32>().value(row),
    }
}

fn put_length(out: &mut BytesMut, length: usize) -> PgWireResult<()> {
    let length = i32::try_from(length)
        .map_err(|_| PgWireError::ApiError("a value longer than 2 GiB".into()))?;
    out.put_i32(length);
    Ok(())
}

/// arrow-pg's encoder writing one value into the batch's buffer, as pgwire's DataRowEncoder
/// would into a row of its own.
struct Writer<'a> {
    out: &'a mut BytesMut,
}

impl Encoder for Writer<'_> {
    type Item = ();

    #[allow(
        clippy::indexing_slicing,
        reason = "`start` was `out.len()` before the four bytes of the length were put"
    )]
    fn encode_field<T>(&mut self, value: &T, pg_field: &FieldInfo) -> PgWireResult<()>
    where
        T: ToSql + ToSqlText + Sized,
    {
        let start = self.out.len();
        self.out.put_i32(-1);
        let is_null = match pg_field.format() {
            FieldFormat::Text => {
                value.to_sql_text(pg_field.datatype(), self.out, pg_field.format_options())?
            }
            FieldFormat::Binary => value.to_sql(pg_field.datatype(), self.out)?,
        };
        if let IsNull::No = is_null {
            let length = i32::try_from(self.out.len() - start - 4)
                .map_err(|_| PgWireError::ApiError("a value longer than 2 GiB".into()))?;
            self.out[start..start + 4].copy_from_slice(&length.to_be_bytes());
        }
        Ok(())
    }

    fn take_row(&mut self) -> Self::Item {}
}

/// How values are written in text format, as the client's settings ask.
pub(super) fn format_options(settings: &Settings) -> FormatOptions {
    let mut options = FormatOptions::default();
    options.date_style = settings.get("datestyle").unwrap_or_default();
    options.interval_style = settings.get("intervalstyle").unwrap_or_default();
    options.bytea_output = settings.get("bytea_output").unwrap_or_default();
    if let Ok(digits) = settings
        .get("extra_float_digits")
        .unwrap_or_default()
        .parse()
    {
        options.extra_float_digits = digits;
    }
    options.time_zone = settings.get("timezone").unwrap_or_default();
    options
}

#[cfg(test)]
mod tests;
