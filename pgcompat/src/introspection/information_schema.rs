//! `information_schema`, with PostgreSQL's column names and type names.
//!
//! DataFusion has an `information_schema` of its own, but it names types as Arrow does
//! (`Int32`, `Utf8`); clients that read `information_schema.columns` (Metabase, DataGrip,
//! SQLAlchemy, Grafana) expect `integer` and `text`. The tables are computed when a query reads
//! them; polygate has no keys or constraints to declare, so those tables are empty.

use std::sync::Arc;

use arrow_pg::datatypes::into_pg_type;
use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, Int32Builder, RecordBatch, StringBuilder};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::datasource::{MemTable, TableType};
use datafusion::error::Result;

use super::system_table::SystemTable;
use super::{INFORMATION_SCHEMA, PG_CATALOG, SourcesInfo};

const TABLES: &[&str] = &[
    "columns",
    "key_column_usage",
    "referential_constraints",
    "schemata",
    "table_constraints",
    "tables",
    "views",
];

/// The `information_schema` schema of one session.
#[derive(Debug)]
pub struct InformationSchema {
    info: SourcesInfo,
}

impl InformationSchema {
    /// Lists what `info` holds.
    pub fn new(info: SourcesInfo) -> Self {
        Self { info }
    }

    async fn build(&self, name: &str) -> Result<Option<RecordBatch>> {
        Ok(Some(match name {
            "schemata" => self.schemata()?,
            "tables" => self.tables()?,
            "columns" => self.columns().await?,
            "views" => RecordBatch::new_empty(text_schema(&[
                "table_catalog",
                "table_schema",
                "table_name",
                "view_definition",
            ])),
            "table_constraints" => RecordBatch::new_empty(text_schema(&[
                "constraint_catalog",
                "constraint_schema",
                "constraint_name",
                "table_catalog",
                "table_schema",
                "table_name",
                "constraint_type",
                "is_deferrable",
                "initially_deferred",
            ])),
            "key_column_usage" => RecordBatch::new_empty(text_schema(&[
                "constraint_catalog",
                "constraint_schema",
                "constraint_name",
                "table_catalog",
                "table_schema",
                "table_name",
                "column_name",
                "ordinal_position",
            ])),
            "referential_constraints" => RecordBatch::new_empty(text_schema(&[
                "constraint_catalog",
                "constraint_schema",
                "constraint_name",
                "unique_constraint_catalog",
                "unique_constraint_schema",
                "unique_constraint_name",
                "match_option",
                "update_rule",
                "delete_rule",
            ])),
            _ => return Ok(None),
        }))
    }

    fn schemata(&self) -> Result<RecordBatch> {
        let mut rows = Rows::new(&["catalog_name", "schema_name", "schema_owner"]);
        let schemas = self.info.tables().into_iter().map(|(schema, _)| schema);
        for schema in schemas.chain([PG_CATALOG.to_owned(), INFORMATION_SCHEMA.to_owned()]) {
            rows.text(self.info.database());
            rows.text(&schema);
            rows.text("polygate");
        }
        rows.finish()
    }

    fn tables(&self) -> Result<RecordBatch> {
        let mut rows = Rows::new(&[
            "table_catalog",
            "table_schema",
            "table_name",
            "table_type",
            "is_insertable_into",
            "is_typed",
        ]);
        for (schema, tables) in self.info.tables() {
            for table in tables {
                rows.text(self.info.database());
                rows.text(&schema);
                rows.text(&table);
                rows.text("BASE TABLE");
                rows.text("NO");
                rows.text("NO");
            }
        }
        rows.finish()
    }

    async fn columns(&self) -> Result<RecordBatch> {
        let mut rows = Rows::with_types(&[
            ("table_catalog", false),
            ("table_schema", false),
            ("table_name", false),
            ("column_name", false),
            ("ordinal_position", true),
            ("column_default", false),
            ("is_nullable", false),
            ("data_type", false),
            ("character_maximum_length", true),
            ("numeric_precision", true),
            ("numeric_scale", true),
            ("datetime_precision", true),
            ("udt_catalog", false),
            ("udt_schema", false),
            ("udt_name", false),
            ("is_identity", false),
            ("is_generated", false),
            ("is_updatable", false),
        ]);
        for (schema, tables) in self.info.tables() {
            for table in tables {
                let Some(columns) = self.info.columns(&schema, &table).await else {
                    continue;
                };
                for (position, field) in columns.fields().iter().enumerate() {
                    let udt_name = pg_type_name(field.data_type());
                    let (precision, scale) = numeric_precision(field.data_type());
                    rows.text(self.info.database());
                    rows.text(&schema);
                    rows.text(&table);
                    rows.text(field.name());
                    rows.int(Some(position as i32 + 1));
                    rows.null_text();
                    rows.text(if field.is_nullable() { "YES" } else { "NO" });
                    rows.text(sql_type_name(&udt_name));
                    rows.int(None);
                    rows.int(precision);
                    rows.int(scale);
                    rows.int(datetime_precision(field.data_type()));
                    rows.text(self.info.database());
                    rows.text(PG_CATALOG);
                    rows.text(&udt_name);
                    rows.text("NO");
                    rows.text("NEVER");
                    rows.text("NO");
                }
            }
        }
        rows.finish()
    }
}

#[async_trait]
impl SchemaProvider for InformationSchema {
    fn table_names(&self) -> Vec<String> {
        TABLES.iter().map(|t| (*t).to_owned()).collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let Some(batch) = self.build(&name.to_ascii_lowercase()).await? else {
            return Ok(None);
        };
        let table = MemTable::try_new(batch.schema(), vec![vec![batch]])?;
        Ok(Some(SystemTable::wrap(Arc::new(table))))
    }

    fn table_exist(&self, name: &str) -> bool {
        TABLES.contains(&name.to_ascii_lowercase().as_str())
    }

    async fn table_type(&self, _name: &str) -> Result<Option<TableType>> {
        Ok(Some(TableType::View))
    }
}

/// The name of the PostgreSQL type a column of `data_type` is sent as (`int8`, `_text`): the
/// mapping of `arrow-pg`, which encodes the gateway's results, so that the catalog and the
/// wire agree.
pub fn pg_type_name(data_type: &DataType) -> String {
    into_pg_type(data_type).map_or_else(|_| "text".to_owned(), |t| t.name().to_owned())
}

/// The name `information_schema.columns.data_type` gives the PostgreSQL type named `udt_name`.
pub fn sql_type_name(udt_name: &str) -> &str {
    // Array types are named after their element with a leading underscore (`_int4`).
    if udt_name.starts_with('_') {
        return "ARRAY";
    }
    match udt_name {
        "bool" => "boolean",
        "int2" => "smallint",
        "int4" => "integer",
        "int8" => "bigint",
        "float4" => "real",
        "float8" => "double precision",
        "varchar" => "character varying",
        "bpchar" => "character",
        "char" => "\"char\"",
        "time" => "time without time zone",
        "timetz" => "time with time zone",
        "timestamp" => "timestamp without time zone",
        "timestamptz" => "timestamp with time zone",
        other => other,
    }
}

fn numeric_precision(data_type: &DataType) -> (Option<i32>, Option<i32>) {
    match data_type {
        DataType::Int8 | DataType::Int16 | DataType::UInt8 => (Some(16), Some(0)),
        DataType::Int32 | DataType::UInt16 => (Some(32), Some(0)),
        DataType::Int64 | DataType::UInt32 | DataType::UInt64 => (Some(64), Some(0)),
        DataType::Float32 => (Some(24), None),
        DataType::Float64 => (Some(53), None),
        DataType::Decimal128(p, s) | DataType::Decimal256(p, s) => {
            (Some(i32::from(*p)), Some(i32::from(*s)))
        }
        _ => (None, None),
    }
}

fn datetime_precision(data_type: &DataType) -> Option<i32> {
    match data_type {
        DataType::Date32 | DataType::Date64 => Some(0),
        DataType::Timestamp(..) | DataType::Time32(_) | DataType::Time64(_) => Some(6),
        DataType::Interval(_) | DataType::Duration(_) => Some(6),
        _ => None,
    }
}

fn text_schema(names: &[&str]) -> SchemaRef {
    Arc::new(Schema::new(
        names
            .iter()
            .map(|name| Field::new(*name, DataType::Utf8, true))
            .collect::<Vec<_>>(),
    ))
}

/// Builds a table column by column, one value at a time, row after row.
struct Rows {
    schema: SchemaRef,
    texts: Vec<StringBuilder>,
    ints: Vec<Int32Builder>,
    /// For each column: is it an integer column, and its index among its kind.
    layout: Vec<(bool, usize)>,
    next: usize,
}

#[allow(
    clippy::indexing_slicing,
    reason = "`with_types` gives each column its position among the builders of its kind, \
              `next` cycles below `layout.len()`, and every table here is a fixed list of \
              columns filled with values of the kinds they declare (asserted in debug builds)"
)]
impl Rows {
    fn new(names: &[&str]) -> Self {
        let columns: Vec<(&str, bool)> = names.iter().map(|n| (*n, false)).collect();
        Self::with_types(&columns)
    }

    /// `columns` are (name, is an int4 column).
    fn with_types(columns: &[(&str, bool)]) -> Self {
        let mut layout = Vec::new();
        let (mut texts, mut ints) = (0, 0);
        for (_, is_int) in columns {
            if *is_int {
                layout.push((true, ints));
                ints += 1;
            } else {
                layout.push((false, texts));
                texts += 1;
            }
        }
        let schema = Arc::new(Schema::new(
            columns
                .iter()
                .map(|(name, is_int)| {
                    let data_type = if *is_int {
                        DataType::Int32
                    } else {
                        DataType::Utf8
                    };
                    Field::new(*name, data_type, true)
                })
                .collect::<Vec<_>>(),
        ));
        Self {
            schema,
            texts: (0..texts).map(|_| StringBuilder::new()).collect(),
            ints: (0..ints).map(|_| Int32Builder::new()).collect(),
            layout,
            next: 0,
        }
    }

    fn slot(&mut self, is_int: bool) -> usize {
        let (column_is_int, index) = self.layout[self.next];
        debug_assert_eq!(column_is_int, is_int, "column {} type", self.next);
        self.next = (self.next + 1) % self.layout.len();
        index
    }

    fn text(&mut self, value: &str) {
        let index = self.slot(false);
        self.texts[index].append_value(value);
    }

    fn null_text(&mut self) {
        let index = self.slot(false);
        self.texts[index].append_null();
    }

    fn int(&mut self, value: Option<i32>) {
        let index = self.slot(true);
        self.ints[index].append_option(value);
    }

    fn finish(mut self) -> Result<RecordBatch> {
        let columns: Vec<ArrayRef> = self
            .layout
            .iter()
            .map(|(is_int, index)| -> ArrayRef {
                if *is_int {
                    Arc::new(self.ints[*index].finish())
                } else {
                    Arc::new(self.texts[*index].finish())
                }
            })
            .collect();
        Ok(RecordBatch::try_new(self.schema, columns)?)
    }
}

#[cfg(test)]
mod tests {
    use datafusion::arrow::datatypes::TimeUnit;

    use super::*;

    #[test]
    fn columns_are_named_as_postgresql_names_their_types() {
        let list = |item| DataType::List(Arc::new(Field::new("item", item, true)));
        let utc = Some("UTC".into());
        let cases = [
            (DataType::Boolean, "bool", "boolean"),
            (DataType::Int16, "int2", "smallint"),
            (DataType::Int32, "int4", "integer"),
            (DataType::Int64, "int8", "bigint"),
            (DataType::Float32, "float4", "real"),
            (DataType::Float64, "float8", "double precision"),
            (DataType::Decimal128(10, 2), "numeric", "numeric"),
            (DataType::Utf8, "text", "text"),
            (DataType::Date32, "date", "date"),
            (
                DataType::Timestamp(TimeUnit::Microsecond, None),
                "timestamp",
                "timestamp without time zone",
            ),
            (
                DataType::Timestamp(TimeUnit::Microsecond, utc),
                "timestamptz",
                "timestamp with time zone",
            ),
            (
                DataType::Time64(TimeUnit::Microsecond),
                "time",
                "time without time zone",
            ),
            (list(DataType::Int32), "_int4", "ARRAY"),
            (DataType::Binary, "bytea", "bytea"),
        ];
        for (data_type, udt_name, sql_name) in cases {
            assert_eq!(pg_type_name(&data_type), udt_name, "{data_type}");
            assert_eq!(sql_type_name(udt_name), sql_name, "{data_type}");
        }
    }
}
