//! PostgreSQL column types and the Arrow types they read as.

use std::sync::Arc;

use datafusion::arrow::array::NullBufferBuilder;
use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Decimal128Builder, Float32Builder, Float64Builder,
    Int16Builder, Int32Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::array::{
    BinaryBuilder, IntervalMonthDayNanoBuilder, ListArray, Time64MicrosecondBuilder,
};
use datafusion::arrow::buffer::OffsetBuffer;
use datafusion::arrow::datatypes::{
    DataType, Field, FieldRef, IntervalMonthDayNano, IntervalUnit, TimeUnit,
};
use polygate_connector_core::scan::{canonical_f32, canonical_f64};
use tokio_postgres::types::{FromSql, Type};

/// How a column is read: the Arrow type, and the decoding that fills it.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Kind {
    Bool,
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    Text,
    /// `numeric(p,s)` with p <= 38: exact in a Decimal128.
    Decimal(u8, i8),
    Date,
    Timestamp,
    TimestampTz,
    Time,
    Bytes,
    Interval,
    /// A one-dimensional array of the element kind.
    List(Box<Kind>),
}

/// One column of a remote relation.
#[derive(Debug, Clone)]
pub(crate) struct PgColumn {
    /// The column's name, exactly as PostgreSQL spells it.
    pub(crate) name: String,
    /// The type as PostgreSQL prints it (`numeric(10,2)`).
    pub(crate) type_name: String,
    not_null: bool,
    /// `char(n)`: PostgreSQL compares it ignoring trailing blanks.
    blank_padded: bool,
    kind: Kind,
    /// Whether the column is fetched as its text form.
    as_text: bool,
    /// Whether that is only because the type has no mapping yet.
    fallback: bool,
    /// How SQL refers to the column when it is not the relation's own (a derived table's
    /// column, already converted): then it is used as is.
    reference: Option<String>,
}

impl Kind {
    /// The Arrow type values of this kind are read as.
    fn data_type(&self) -> DataType {
        match self {
            Self::Bool => DataType::Boolean,
            Self::Int16 => DataType::Int16,
            Self::Int32 => DataType::Int32,
            Self::Int64 => DataType::Int64,
            Self::Float32 => DataType::Float32,
            Self::Float64 => DataType::Float64,
            Self::Text => DataType::Utf8,
            Self::Decimal(precision, scale) => DataType::Decimal128(*precision, *scale),
            Self::Date => DataType::Date32,
            Self::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            Self::TimestampTz => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            Self::Time => DataType::Time64(TimeUnit::Microsecond),
            Self::Bytes => DataType::Binary,
            Self::Interval => DataType::Interval(IntervalUnit::MonthDayNano),
            Self::List(element) => {
                DataType::List(Arc::new(Field::new("item", element.data_type(), true)))
            }
        }
    }

    /// The kind that reads `data_type`, if there is one.
    fn of_arrow(data_type: &DataType) -> Option<Self> {
        Some(match data_type {
            DataType::Boolean => Self::Bool,
            DataType::Int16 => Self::Int16,
            DataType::Int32 => Self::Int32,
            DataType::Int64 => Self::Int64,
            DataType::Float32 => Self::Float32,
            DataType::Float64 => Self::Float64,
            DataType::Utf8 => Self::Text,
            DataType::Decimal128(precision, scale) if (0..=*precision as i8).contains(scale) => {
                Self::Decimal(*precision, *scale)
            }
            DataType::Date32 => Self::Date,
            DataType::Timestamp(TimeUnit::Microsecond, None) => Self::Timestamp,
            DataType::Timestamp(TimeUnit::Microsecond, Some(zone)) if zone.as_ref() == "UTC" => {
                Self::TimestampTz
            }
            DataType::Time64(TimeUnit::Microsecond) => Self::Time,
            DataType::Binary => Self::Bytes,
            DataType::Interval(IntervalUnit::MonthDayNano) => Self::Interval,
            _ => return None,
        })
    }

    /// The PostgreSQL type whose binary values this kind decodes.
    fn pg_type(&self) -> String {
        match self {
            Self::Bool => "bool".into(),
            Self::Int16 => "int2".into(),
            Self::Int32 => "int4".into(),
            Self::Int64 => "int8".into(),
            Self::Float32 => "float4".into(),
            Self::Float64 => "float8".into(),
            Self::Text => "text".into(),
            Self::Decimal(precision, scale) => format!("numeric({precision},{scale})"),
            Self::List(element) => format!("{}[]", element.pg_type()),
            Self::Date => "date".into(),
            Self::Timestamp => "timestamp".into(),
            Self::TimestampTz => "timestamptz".into(),
            Self::Time => "time".into(),
            Self::Bytes => "bytea".into(),
            Self::Interval => "interval".into(),
        }
    }
}

impl PgColumn {
    pub(crate) fn new(name: String, oid: u32, type_name: String, not_null: bool) -> Self {
        let native = Self::kind_of(oid, &type_name);
        // Types whose text form is their mapping: identifiers, documents and addresses that
        // read and compare as the strings PostgreSQL prints.
        let textual = matches!(
            Type::from_oid(oid),
            Some(
                Type::UUID
                    | Type::JSON
                    | Type::JSONB
                    | Type::INET
                    | Type::CIDR
                    | Type::MACADDR
                    | Type::MACADDR8
                    | Type::XML
                    | Type::INTERVAL
            )
        );
        Self {
            name,
            type_name,
            not_null,
            blank_padded: oid == Type::BPCHAR.oid(),
            kind: native.clone().unwrap_or(Kind::Text),
            as_text: native.is_none(),
            fallback: native.is_none() && !textual,
            reference: None,
        }
    }

    /// The native kind of type `oid`, if it has one: arrays of native kinds are lists.
    fn kind_of(oid: u32, type_name: &str) -> Option<Kind> {
        let ty = Type::from_oid(oid)?;
        if let tokio_postgres::types::Kind::Array(element) = ty.kind() {
            // `numeric(p,s)[]` prints as `numeric(p,s)[]`: the element's precision is there.
            let element_name = type_name.strip_suffix("[]").unwrap_or(type_name);
            return match Self::kind_of(element.oid(), element_name)? {
                // Arrays of arrays are multi-dimensional arrays, read as text.
                Kind::List(_) => None,
                element => Some(Kind::List(Box::new(element))),
            };
        }
        match ty {
            Type::BOOL => Some(Kind::Bool),
            Type::INT2 => Some(Kind::Int16),
            Type::INT4 => Some(Kind::Int32),
            Type::INT8 => Some(Kind::Int64),
            Type::FLOAT4 => Some(Kind::Float32),
            Type::FLOAT8 => Some(Kind::Float64),
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME => Some(Kind::Text),
            Type::DATE => Some(Kind::Date),
            Type::NUMERIC => decimal_of(type_name),
            Type::TIMESTAMP => Some(Kind::Timestamp),
            Type::TIMESTAMPTZ => Some(Kind::TimestampTz),
            Type::TIME => Some(Kind::Time),
            Type::BYTEA => Some(Kind::Bytes),
            // Intervals decode natively (`Kind::Interval`), but the gateway's present wire
            // encoder (arrow-pg 0.16) sends a NULL interval as a zero interval: until the
            // gateway encodes them itself they are read in PostgreSQL's text form.
            Type::INTERVAL => None,
            _ => None,
        }
    }

    /// Reads an unconstrained `numeric` column as `numeric(precision, scale)`: exactly, or with
    /// an error for a value that does not fit (never rounded). Other columns are unchanged.
    pub(crate) fn with_unconstrained_numeric(self, precision: u8, scale: i8) -> Self {
        if self.type_name != "numeric" || !self.as_text {
            return self;
        }
        match decimal_of(&format!("numeric({precision},{scale})")) {
            Some(kind) => Self {
                kind,
                as_text: false,
                fallback: false,
                ..self
            },
            None => self,
        }
    }

    /// Whether the column is read as text only because its type has no mapping yet (it is
    /// never dropped); types mapped to their text form by design are not.
    pub(crate) fn read_as_text(&self) -> bool {
        self.fallback
    }

    /// Whether PostgreSQL compares, sorts and deduplicates values of this column as
    /// DataFusion does for its Arrow values. Not floats (`-0.0`, `NaN`), `char(n)` (trailing
    /// blanks) or intervals (PostgreSQL equates `1 day` and `24 hours`, DataFusion compares
    /// fields).
    pub(crate) fn compares_exactly(&self) -> bool {
        !self.blank_padded
            && !matches!(
                self.kind,
                Kind::Float32 | Kind::Float64 | Kind::Interval | Kind::List(_)
            )
    }

    /// Whether PostgreSQL sorts values of this column in DataFusion's order, up to ties that
    /// SQL leaves in any order: the columns that compare exactly, and floats. PostgreSQL puts
    /// NaN above every number, as DataFusion does with the positive NaN every NaN decodes to
    /// (see [`canonical_f64`](polygate_connector_core::scan::canonical_f64)); it ties `-0.0` with `0.0`, which DataFusion orders first.
    pub(crate) fn orders_exactly(&self) -> bool {
        self.compares_exactly()
            || (!self.blank_padded && matches!(self.kind, Kind::Float32 | Kind::Float64))
    }

    pub(crate) fn arrow_field(&self) -> Field {
        Field::new(&self.name, self.kind.data_type(), !self.not_null)
    }

    /// A column of a derived relation (a sub-query of a pushed sub-plan), read from SQL
    /// `reference` as `data_type`, or `None` when polygate cannot read that Arrow type back.
    pub(crate) fn derived(
        name: impl Into<String>,
        data_type: &DataType,
        blank_padded: bool,
        reference: String,
    ) -> Option<Self> {
        let kind = Kind::of_arrow(data_type)?;
        Some(Self {
            name: name.into(),
            type_name: kind.pg_type(),
            not_null: false,
            blank_padded,
            kind,
            as_text: false,
            fallback: false,
            reference: Some(reference),
        })
    }

    /// The same column under another SQL reference.
    pub(crate) fn referenced_as(&self, reference: String) -> Self {
        Self {
            as_text: false,
            fallback: false,
            reference: Some(reference),
            type_name: self.kind.pg_type(),
            ..self.clone()
        }
    }

    /// The PostgreSQL type values of this column are read as.
    pub(crate) fn pg_type(&self) -> String {
        self.kind.pg_type()
    }

    /// The column in a select list: its quoted name, cast to text where it is read as text.
    pub(crate) fn select_expr(&self) -> String {
        if let Some(reference) = &self.reference {
            return reference.clone();
        }
        let quoted = quote_ident(&self.name);
        if self.as_text {
            format!("{quoted}::text")
        } else {
            quoted
        }
    }

    pub(crate) fn builder(&self, capacity: usize) -> ColumnBuilder {
        self.kind.builder(capacity)
    }
}

impl Kind {
    #[allow(
        clippy::expect_used,
        reason = "a Decimal kind is only made by `decimal_of`, which validates its precision and scale"
    )]
    fn builder(&self, capacity: usize) -> ColumnBuilder {
        match *self {
            Kind::Bool => ColumnBuilder::Bool(BooleanBuilder::with_capacity(capacity)),
            Kind::Int16 => ColumnBuilder::Int16(Int16Builder::with_capacity(capacity)),
            Kind::Int32 => ColumnBuilder::Int32(Int32Builder::with_capacity(capacity)),
            Kind::Int64 => ColumnBuilder::Int64(Int64Builder::with_capacity(capacity)),
            Kind::Float32 => ColumnBuilder::Float32(Float32Builder::with_capacity(capacity)),
            Kind::Float64 => ColumnBuilder::Float64(Float64Builder::with_capacity(capacity)),
            Kind::Text => {
                ColumnBuilder::Text(StringBuilder::with_capacity(capacity, capacity * 16))
            }
            Kind::Decimal(precision, scale) => ColumnBuilder::Decimal(
                Decimal128Builder::with_capacity(capacity)
                    .with_precision_and_scale(precision, scale)
                    .expect("precision and scale were validated by decimal_of"),
                scale,
            ),
            Kind::Date => ColumnBuilder::Date(Date32Builder::with_capacity(capacity)),
            Kind::Timestamp => {
                ColumnBuilder::Timestamp(TimestampMicrosecondBuilder::with_capacity(capacity))
            }
            Kind::TimestampTz => ColumnBuilder::Timestamp(
                TimestampMicrosecondBuilder::with_capacity(capacity).with_timezone("UTC"),
            ),
            Kind::Time => ColumnBuilder::Time(Time64MicrosecondBuilder::with_capacity(capacity)),
            Kind::Bytes => {
                ColumnBuilder::Bytes(BinaryBuilder::with_capacity(capacity, capacity * 16))
            }
            Kind::Interval => {
                ColumnBuilder::Interval(IntervalMonthDayNanoBuilder::with_capacity(capacity))
            }
            Kind::List(ref element) => ColumnBuilder::List(Box::new(ListColumn {
                field: Arc::new(Field::new("item", element.data_type(), true)),
                offsets: vec![0],
                nulls: NullBufferBuilder::new(capacity),
                values: element.builder(capacity),
            })),
        }
    }
}

/// The Decimal128 type of `numeric(p,s)` (as `format_type` prints it), or `None` when the
/// column has no precision (unconstrained `numeric`, whose values need not fit any one scale)
/// or one beyond Decimal128's 38 digits: those are read as text, never rounded.
fn decimal_of(type_name: &str) -> Option<Kind> {
    let inner = type_name.strip_prefix("numeric(")?.strip_suffix(')')?;
    let (precision, scale) = inner.split_once(',').unwrap_or((inner, "0"));
    let precision: u8 = precision.trim().parse().ok()?;
    let scale: i8 = scale.trim().parse().ok()?;
    (1..=38).contains(&precision).then_some(())?;
    (0..=precision as i8)
        .contains(&scale)
        .then_some(Kind::Decimal(precision, scale))
}

/// A `numeric` value in PostgreSQL's binary format: a sign, a weight, and base-10000 digits.
struct PgNumeric<'a>(&'a [u8]);

impl<'a> FromSql<'a> for PgNumeric<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Self(raw))
    }

    fn accepts(ty: &Type) -> bool {
        *ty == Type::NUMERIC
    }
}

impl PgNumeric<'_> {
    /// The value times 10^`scale`, exactly, or why it cannot be.
    fn scaled(&self, scale: i8) -> Result<i128, String> {
        let word = |i: usize| -> Result<i16, String> {
            self.0
                .get(i * 2..)
                .and_then(<[u8]>::first_chunk)
                .map(|&b| i16::from_be_bytes(b))
                .ok_or_else(|| "truncated numeric value".to_owned())
        };
        let digits = usize::try_from(word(0)?).map_err(|_| "invalid numeric value")?;
        let weight = i32::from(word(1)?);
        let sign = word(2)? as u16;
        let negative = match sign {
            0x0000 => false,
            0x4000 => true,
            0xC000 => return Err("NaN cannot be a decimal".to_owned()),
            _ => return Err("an infinite value cannot be a decimal".to_owned()),
        };
        let mut value: i128 = 0;
        for i in 0..digits {
            let digit = i128::from(word(4 + i)?);
            // This digit's power of ten once the value is scaled.
            let exponent = 4 * (weight - i as i32) + i32::from(scale);
            let term = if exponent >= 0 {
                10_i128
                    .checked_pow(exponent as u32)
                    .and_then(|p| p.checked_mul(digit))
                    .ok_or("value out of range for its declared precision")?
            } else {
                let divisor = 10_i128.checked_pow((-exponent) as u32).unwrap_or(i128::MAX);
                if digit % divisor != 0 {
                    return Err("value has more digits than its declared scale".to_owned());
                }
                digit / divisor
            };
            value = value
                .checked_add(term)
                .ok_or("value out of range for its declared precision")?;
        }
        Ok(if negative { -value } else { value })
    }
}

/// Quotes an identifier for PostgreSQL: always, so that any name (mixed case, spaces, quotes)
/// means exactly itself.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

/// Microseconds from the Unix epoch to PostgreSQL's (2000-01-01), in which the binary format
/// counts timestamps.
const PG_EPOCH_MICROS: i64 = 946_684_800_000_000;
/// Days from the Unix epoch to PostgreSQL's.
const PG_EPOCH_DAYS: i32 = 10_957;

/// A value in PostgreSQL's binary format, of any type: the bytes the decoders below read.
pub(crate) struct RawValue<'a>(pub(crate) &'a [u8]);

impl<'a> FromSql<'a> for RawValue<'a> {
    fn from_sql(_: &Type, raw: &'a [u8]) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(Self(raw))
    }

    fn accepts(_: &Type) -> bool {
        true
    }
}

/// The `N` bytes of a fixed-width value.
fn fixed<const N: usize>(raw: &[u8]) -> Result<[u8; N], String> {
    raw.try_into()
        .map_err(|_| format!("expected {N} bytes in the binary value, got {}", raw.len()))
}

/// Accumulates one column of a batch.
pub(crate) enum ColumnBuilder {
    Bool(BooleanBuilder),
    Int16(Int16Builder),
    Int32(Int32Builder),
    Int64(Int64Builder),
    Float32(Float32Builder),
    Float64(Float64Builder),
    Text(StringBuilder),
    /// The builder, and the scale values are converted to.
    Decimal(Decimal128Builder, i8),
    Date(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder),
    Time(Time64MicrosecondBuilder),
    Bytes(BinaryBuilder),
    Interval(IntervalMonthDayNanoBuilder),
    List(Box<ListColumn>),
}

/// Accumulates a list column: the offsets and validity of the lists, and their elements.
pub(crate) struct ListColumn {
    field: FieldRef,
    offsets: Vec<i32>,
    nulls: NullBufferBuilder,
    values: ColumnBuilder,
}

impl ListColumn {
    /// Appends one array in PostgreSQL's binary format: dimensions, a has-nulls flag, the
    /// element type, each dimension's length and lower bound, then the elements.
    fn append(&mut self, raw: &[u8]) -> Result<(), String> {
        let word = |at: usize| -> Result<i32, String> {
            raw.get(at..)
                .and_then(<[u8]>::first_chunk)
                .map(|&b| i32::from_be_bytes(b))
                .ok_or_else(|| "truncated array value".to_owned())
        };
        let dimensions = word(0)?;
        let mut at = 12;
        let length = match dimensions {
            0 => 0,
            1 => {
                at += 8;
                usize::try_from(word(12)?).map_err(|_| "invalid array length")?
            }
            _ => return Err("multi-dimensional arrays cannot be read as lists".to_owned()),
        };
        for _ in 0..length {
            let size = word(at)?;
            at += 4;
            if size < 0 {
                self.values.append_raw(None)?;
                continue;
            }
            let end = at + size as usize;
            let element = raw.get(at..end).ok_or("truncated array element")?;
            self.values.append_raw(Some(element))?;
            at = end;
        }
        let last = *self.offsets.last().unwrap_or(&0);
        let next = i32::try_from(length)
            .ok()
            .and_then(|n| last.checked_add(n))
            .ok_or("too many list elements in one batch")?;
        self.offsets.push(next);
        self.nulls.append_non_null();
        Ok(())
    }

    fn append_null(&mut self) {
        let last = *self.offsets.last().unwrap_or(&0);
        self.offsets.push(last);
        self.nulls.append_null();
    }

    fn finish(&mut self) -> ArrayRef {
        let offsets = OffsetBuffer::new(std::mem::replace(&mut self.offsets, vec![0]).into());
        Arc::new(ListArray::new(
            Arc::clone(&self.field),
            offsets,
            self.values.finish(),
            self.nulls.finish(),
        ))
    }
}

impl ColumnBuilder {
    /// Appends one value in PostgreSQL's binary format, `None` being NULL.
    ///
    /// Decodes straight from the bytes the server sent: no allocation per value.
    pub(crate) fn append_raw(&mut self, raw: Option<&[u8]>) -> Result<(), String> {
        let Some(raw) = raw else {
            self.append_null();
            return Ok(());
        };
        match self {
            Self::Bool(b) => b.append_value(fixed::<1>(raw)?[0] != 0),
            Self::Int16(b) => b.append_value(i16::from_be_bytes(fixed(raw)?)),
            Self::Int32(b) => b.append_value(i32::from_be_bytes(fixed(raw)?)),
            Self::Int64(b) => b.append_value(i64::from_be_bytes(fixed(raw)?)),
            // Every NaN as the positive one: PostgreSQL does not tell them apart, and sorts
            // them above every number, where DataFusion sorts only the positive NaN.
            Self::Float32(b) => b.append_value(canonical_f32(f32::from_be_bytes(fixed(raw)?))),
            Self::Float64(b) => b.append_value(canonical_f64(f64::from_be_bytes(fixed(raw)?))),
            Self::Text(b) => b.append_value(
                std::str::from_utf8(raw).map_err(|e| format!("text is not UTF-8: {e}"))?,
            ),
            Self::Decimal(b, scale) => b.append_value(PgNumeric(raw).scaled(*scale)?),
            Self::Date(b) => {
                let days = i32::from_be_bytes(fixed(raw)?);
                if days == i32::MAX || days == i32::MIN {
                    return Err("an infinite date has no Arrow value".to_owned());
                }
                b.append_value(
                    days.checked_add(PG_EPOCH_DAYS)
                        .ok_or("date out of Arrow's range")?,
                )
            }
            Self::Time(b) => b.append_value(i64::from_be_bytes(fixed(raw)?)),
            Self::List(b) => b.append(raw)?,
            Self::Bytes(b) => b.append_value(raw),
            Self::Interval(b) => {
                let raw = fixed::<16>(raw)?;
                let [
                    m0,
                    m1,
                    m2,
                    m3,
                    m4,
                    m5,
                    m6,
                    m7,
                    d0,
                    d1,
                    d2,
                    d3,
                    n0,
                    n1,
                    n2,
                    n3,
                ] = raw;
                let micros = i64::from_be_bytes([m0, m1, m2, m3, m4, m5, m6, m7]);
                b.append_value(IntervalMonthDayNano {
                    months: i32::from_be_bytes([n0, n1, n2, n3]),
                    days: i32::from_be_bytes([d0, d1, d2, d3]),
                    nanoseconds: micros
                        .checked_mul(1000)
                        .ok_or("interval out of Arrow's range")?,
                })
            }
            Self::Timestamp(b) => {
                let micros = i64::from_be_bytes(fixed(raw)?);
                if micros == i64::MAX || micros == i64::MIN {
                    return Err("an infinite timestamp has no Arrow value".to_owned());
                }
                b.append_value(
                    micros
                        .checked_add(PG_EPOCH_MICROS)
                        .ok_or("timestamp out of Arrow's range")?,
                )
            }
        }
        Ok(())
    }

    fn append_null(&mut self) {
        match self {
            Self::Bool(b) => b.append_null(),
            Self::Int16(b) => b.append_null(),
            Self::Int32(b) => b.append_null(),
            Self::Int64(b) => b.append_null(),
            Self::Float32(b) => b.append_null(),
            Self::Float64(b) => b.append_null(),
            Self::Text(b) => b.append_null(),
            Self::Decimal(b, _) => b.append_null(),
            Self::Date(b) => b.append_null(),
            Self::Timestamp(b) => b.append_null(),
            Self::Time(b) => b.append_null(),
            Self::Bytes(b) => b.append_null(),
            Self::Interval(b) => b.append_null(),
            Self::List(b) => b.append_null(),
        }
    }

    pub(crate) fn finish(&mut self) -> ArrayRef {
        match self {
            Self::Bool(b) => Arc::new(b.finish()),
            Self::Int16(b) => Arc::new(b.finish()),
            Self::Int32(b) => Arc::new(b.finish()),
            Self::Int64(b) => Arc::new(b.finish()),
            Self::Float32(b) => Arc::new(b.finish()),
            Self::Float64(b) => Arc::new(b.finish()),
            Self::Text(b) => Arc::new(b.finish()),
            Self::Decimal(b, _) => Arc::new(b.finish()),
            Self::Date(b) => Arc::new(b.finish()),
            Self::Timestamp(b) => Arc::new(b.finish()),
            Self::Time(b) => Arc::new(b.finish()),
            Self::Bytes(b) => Arc::new(b.finish()),
            Self::Interval(b) => Arc::new(b.finish()),
            Self::List(b) => b.finish(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// PostgreSQL's binary numeric: ndigits, weight, sign, dscale, then base-10000 digits.
    fn numeric(weight: i16, sign: u16, dscale: u16, digits: &[i16]) -> Vec<u8> {
        let mut bytes = Vec::new();
        for word in [digits.len() as i16, weight, sign as i16, dscale as i16] {
            bytes.extend_from_slice(&word.to_be_bytes());
        }
        for digit in digits {
            bytes.extend_from_slice(&digit.to_be_bytes());
        }
        bytes
    }

    #[test]
    fn decodes_numeric_exactly() {
        let check = |bytes: Vec<u8>, scale: i8, expected: Result<i128, &str>| {
            assert_eq!(
                PgNumeric(&bytes).scaled(scale),
                expected.map_err(str::to_owned),
                "{bytes:?} at scale {scale}"
            );
        };
        check(numeric(0, 0, 2, &[1, 2500]), 2, Ok(125)); // 1.25
        check(numeric(0, 0x4000, 2, &[120, 5000]), 2, Ok(-12050)); // -120.50
        check(numeric(0, 0, 0, &[]), 2, Ok(0)); // 0
        check(numeric(1, 0, 0, &[12, 3456]), 0, Ok(123_456)); // 123456
        check(numeric(-1, 0, 4, &[5]), 4, Ok(5)); // 0.0005
        check(numeric(-2, 0, 8, &[1]), 8, Ok(1)); // 0.00000001
        // 38 nines at scale 0: ten words, the first holding two digits.
        let mut nines = vec![99_i16];
        nines.extend([9999; 9]);
        check(numeric(9, 0, 0, &nines), 0, Ok(10_i128.pow(38) - 1));
        check(
            numeric(0, 0xC000, 0, &[]),
            2,
            Err("NaN cannot be a decimal"),
        );
        check(
            numeric(0, 0xD000, 0, &[]),
            2,
            Err("an infinite value cannot be a decimal"),
        );
        check(
            numeric(0, 0, 4, &[1, 2345]),
            2,
            Err("value has more digits than its declared scale"),
        );
        check(numeric(0, 0, 0, &[1]), 0, Ok(1));
        check(vec![0, 1], 0, Err("truncated numeric value"));
    }

    #[test]
    fn numeric_types_map_by_precision() {
        let check = |type_name: &str, expected: Option<Kind>| {
            assert_eq!(decimal_of(type_name), expected, "{type_name}")
        };
        check("numeric(10,2)", Some(Kind::Decimal(10, 2)));
        check("numeric(38,0)", Some(Kind::Decimal(38, 0)));
        check("numeric(5)", Some(Kind::Decimal(5, 0)));
        check("numeric", None);
        check("numeric(39,2)", None);
        check("numeric(4,6)", None);
    }

    #[test]
    fn binary_values_decode_into_arrow() {
        use datafusion::arrow::array::{Array, AsArray};
        use datafusion::arrow::datatypes::{IntervalMonthDayNanoType, Time64MicrosecondType};

        let mut interval = ColumnBuilder::Interval(IntervalMonthDayNanoBuilder::new());
        // 1 year 2 mons 3 days 04:05:06.789: microseconds, days, months.
        let mut raw = 14_706_789_000_i64.to_be_bytes().to_vec();
        raw.extend_from_slice(&3_i32.to_be_bytes());
        raw.extend_from_slice(&14_i32.to_be_bytes());
        interval.append_raw(Some(&raw)).expect("decodes");
        interval.append_raw(None).expect("NULL");
        assert!(interval.append_raw(Some(&raw[..12])).is_err());
        let array = interval.finish();
        let array = array.as_primitive::<IntervalMonthDayNanoType>();
        assert_eq!(
            array.value(0),
            IntervalMonthDayNano::new(14, 3, 14_706_789_000_000)
        );
        assert!(array.is_null(1));

        let mut time = ColumnBuilder::Time(Time64MicrosecondBuilder::new());
        time.append_raw(Some(&86_399_999_999_i64.to_be_bytes()))
            .expect("decodes");
        let array = time.finish();
        assert_eq!(
            array.as_primitive::<Time64MicrosecondType>().value(0),
            86_399_999_999
        );

        let mut timestamp = ColumnBuilder::Timestamp(TimestampMicrosecondBuilder::new());
        let error = timestamp
            .append_raw(Some(&i64::MAX.to_be_bytes()))
            .expect_err("infinity");
        assert!(error.contains("infinite timestamp"), "{error}");
    }

    #[test]
    fn identifiers_are_always_quoted() {
        let check = |name: &str, expected: &str| assert_eq!(quote_ident(name), expected);
        check("orders", "\"orders\"");
        check("Mixed Case", "\"Mixed Case\"");
        check("a\"b", "\"a\"\"b\"");
        check("x\"; DROP TABLE t; --", "\"x\"\"; DROP TABLE t; --\"");
    }

    #[test]
    fn unmapped_types_read_as_text_and_are_kept() {
        let numeric = PgColumn::new("price".into(), 1700, "numeric".into(), false);
        assert!(numeric.read_as_text());
        assert_eq!(numeric.select_expr(), "\"price\"::text");
        assert_eq!(numeric.arrow_field().data_type(), &DataType::Utf8);
        // A type mapped to its text form by design: read as text, without a notice.
        let uuid = PgColumn::new("key".into(), 2950, "uuid".into(), false);
        assert!(!uuid.read_as_text());
        assert_eq!(uuid.select_expr(), "\"key\"::text");
        assert_eq!(uuid.arrow_field().data_type(), &DataType::Utf8);
        // A type with no mapping: read as text, with a notice.
        let point = PgColumn::new("at".into(), 600, "point".into(), false);
        assert!(point.read_as_text());
        assert_eq!(point.select_expr(), "\"at\"::text");
        let id = PgColumn::new("id".into(), 20, "bigint".into(), true);
        assert!(!id.read_as_text());
        assert_eq!(id.arrow_field(), Field::new("id", DataType::Int64, false));
    }
}
