//! PostgreSQL column types and the Arrow types they read as.

use std::sync::Arc;

use chrono::{DateTime, NaiveDate, NaiveDateTime, Utc};
use datafusion::arrow::array::{
    ArrayRef, BooleanBuilder, Date32Builder, Float32Builder, Float64Builder, Int16Builder,
    Int32Builder, Int64Builder, StringBuilder, TimestampMicrosecondBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, TimeUnit};
use tokio_postgres::Row;
use tokio_postgres::types::Type;

/// How a column is read: the Arrow type, and the decoding that fills it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Bool,
    Int16,
    Int32,
    Int64,
    Float32,
    Float64,
    Text,
    Date,
    Timestamp,
    TimestampTz,
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
    /// Whether the column is fetched as its text form (types without a native mapping yet).
    as_text: bool,
}

impl PgColumn {
    pub(crate) fn new(name: String, oid: u32, type_name: String, not_null: bool) -> Self {
        let native = match Type::from_oid(oid) {
            Some(Type::BOOL) => Some(Kind::Bool),
            Some(Type::INT2) => Some(Kind::Int16),
            Some(Type::INT4) => Some(Kind::Int32),
            Some(Type::INT8) => Some(Kind::Int64),
            Some(Type::FLOAT4) => Some(Kind::Float32),
            Some(Type::FLOAT8) => Some(Kind::Float64),
            Some(Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME) => Some(Kind::Text),
            Some(Type::DATE) => Some(Kind::Date),
            Some(Type::TIMESTAMP) => Some(Kind::Timestamp),
            Some(Type::TIMESTAMPTZ) => Some(Kind::TimestampTz),
            _ => None,
        };
        Self {
            name,
            type_name,
            not_null,
            blank_padded: oid == Type::BPCHAR.oid(),
            kind: native.unwrap_or(Kind::Text),
            as_text: native.is_none(),
        }
    }

    /// Whether the column has no native mapping and is read as text (never dropped).
    pub(crate) fn read_as_text(&self) -> bool {
        self.as_text
    }

    /// Whether the column is `char(n)`, whose comparisons ignore trailing blanks.
    pub(crate) fn is_blank_padded(&self) -> bool {
        self.blank_padded
    }

    pub(crate) fn arrow_field(&self) -> Field {
        let data_type = match self.kind {
            Kind::Bool => DataType::Boolean,
            Kind::Int16 => DataType::Int16,
            Kind::Int32 => DataType::Int32,
            Kind::Int64 => DataType::Int64,
            Kind::Float32 => DataType::Float32,
            Kind::Float64 => DataType::Float64,
            Kind::Text => DataType::Utf8,
            Kind::Date => DataType::Date32,
            Kind::Timestamp => DataType::Timestamp(TimeUnit::Microsecond, None),
            Kind::TimestampTz => DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        };
        Field::new(&self.name, data_type, !self.not_null)
    }

    /// The column in a select list: its quoted name, cast to text where it is read as text.
    pub(crate) fn select_expr(&self) -> String {
        let quoted = quote_ident(&self.name);
        if self.as_text {
            format!("{quoted}::text")
        } else {
            quoted
        }
    }

    pub(crate) fn builder(&self, capacity: usize) -> ColumnBuilder {
        match self.kind {
            Kind::Bool => ColumnBuilder::Bool(BooleanBuilder::with_capacity(capacity)),
            Kind::Int16 => ColumnBuilder::Int16(Int16Builder::with_capacity(capacity)),
            Kind::Int32 => ColumnBuilder::Int32(Int32Builder::with_capacity(capacity)),
            Kind::Int64 => ColumnBuilder::Int64(Int64Builder::with_capacity(capacity)),
            Kind::Float32 => ColumnBuilder::Float32(Float32Builder::with_capacity(capacity)),
            Kind::Float64 => ColumnBuilder::Float64(Float64Builder::with_capacity(capacity)),
            Kind::Text => {
                ColumnBuilder::Text(StringBuilder::with_capacity(capacity, capacity * 16))
            }
            Kind::Date => ColumnBuilder::Date(Date32Builder::with_capacity(capacity)),
            Kind::Timestamp => {
                ColumnBuilder::Timestamp(TimestampMicrosecondBuilder::with_capacity(capacity))
            }
            Kind::TimestampTz => ColumnBuilder::Timestamp(
                TimestampMicrosecondBuilder::with_capacity(capacity).with_timezone("UTC"),
            ),
        }
    }
}

/// Quotes an identifier for PostgreSQL: always, so that any name (mixed case, spaces, quotes)
/// means exactly itself.
pub(crate) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
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
    Date(Date32Builder),
    Timestamp(TimestampMicrosecondBuilder),
}

impl ColumnBuilder {
    /// Appends the value of column `index` of `row`.
    pub(crate) fn append(&mut self, row: &Row, index: usize) -> Result<(), tokio_postgres::Error> {
        match self {
            Self::Bool(b) => b.append_option(row.try_get::<_, Option<bool>>(index)?),
            Self::Int16(b) => b.append_option(row.try_get::<_, Option<i16>>(index)?),
            Self::Int32(b) => b.append_option(row.try_get::<_, Option<i32>>(index)?),
            Self::Int64(b) => b.append_option(row.try_get::<_, Option<i64>>(index)?),
            Self::Float32(b) => b.append_option(row.try_get::<_, Option<f32>>(index)?),
            Self::Float64(b) => b.append_option(row.try_get::<_, Option<f64>>(index)?),
            Self::Text(b) => b.append_option(row.try_get::<_, Option<&str>>(index)?),
            Self::Date(b) => b.append_option(
                row.try_get::<_, Option<NaiveDate>>(index)?
                    .map(|d| (d - NaiveDate::default()).num_days() as i32),
            ),
            Self::Timestamp(b) => {
                let micros = if *row.columns()[index].type_() == Type::TIMESTAMPTZ {
                    row.try_get::<_, Option<DateTime<Utc>>>(index)?
                        .map(|t| t.timestamp_micros())
                } else {
                    row.try_get::<_, Option<NaiveDateTime>>(index)?
                        .map(|t| t.and_utc().timestamp_micros())
                };
                b.append_option(micros)
            }
        }
        Ok(())
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
            Self::Date(b) => Arc::new(b.finish()),
            Self::Timestamp(b) => Arc::new(b.finish()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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
        let numeric = PgColumn::new("price".into(), 1700, "numeric(10,2)".into(), false);
        assert!(numeric.read_as_text());
        assert_eq!(numeric.select_expr(), "\"price\"::text");
        assert_eq!(numeric.arrow_field().data_type(), &DataType::Utf8);
        let id = PgColumn::new("id".into(), 20, "bigint".into(), true);
        assert!(!id.read_as_text());
        assert_eq!(id.arrow_field(), Field::new("id", DataType::Int64, false));
    }
}
