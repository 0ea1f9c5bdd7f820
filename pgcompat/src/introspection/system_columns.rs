//! PostgreSQL's `xmin` system column on `pg_catalog`'s tables, and the `xid` type it has.
//!
//! DataGrip reads `xmin` of catalog rows and compares `age(xmin)` with the transaction it
//! saw last, to introspect only what changed. polygate has no transactions: every catalog row
//! it shows is, in PostgreSQL's terms, frozen. So `xmin` is `FrozenTransactionId` (2), and
//! `age()` of it is the largest age there is, as PostgreSQL answers for frozen rows: a client
//! comparing ages always sees every object as changed, and introspects it again.
//!
//! One difference remains: PostgreSQL's system columns are hidden from `SELECT *`, and
//! DataFusion has no hidden columns, so `SELECT * FROM pg_catalog.pg_class` lists `xmin` last.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Schema, SchemaRef};
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::config::ConfigOptions;
use datafusion::common::{ScalarValue, exec_err};
use datafusion::datasource::TableType;
use datafusion::error::Result;
use datafusion::logical_expr::planner::TypePlanner;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature,
    TableProviderFilterPushDown, Volatility,
};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::ScalarFunctionExpr;
use datafusion::physical_expr::expressions::{CastExpr, Column, Literal};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::sql::sqlparser::ast::{DataType as SqlDataType, ObjectNamePart};
use datafusion_pg_catalog::pg_catalog::oid_type_planner::PgOidTypePlanner;

use super::pg_catalog::parse_array_column;

/// The system column's name.
pub const XMIN: &str = "xmin";
/// `FrozenTransactionId`: the `xmin` of a row older than every transaction.
pub const FROZEN_XID: i64 = 2;
/// What `age()` answers for a frozen (or any special) transaction id.
pub const FROZEN_AGE: i32 = i32::MAX;

/// A catalog table with an `xmin` column after its own, the columns PostgreSQL has that
/// `datafusion-pg-catalog`'s table lacks (`pg_class.reloptions`), NULL in every row, and the
/// columns of [`RETYPED`] cast to PostgreSQL's type.
#[derive(Debug)]
pub struct WithXmin {
    inner: Arc<dyn TableProvider>,
    schema: SchemaRef,
    /// The value of each column after the inner table's.
    added: Vec<ScalarValue>,
}

/// A column a table of the library lacks.
struct Missing {
    table: &'static str,
    column: &'static str,
    data_type: fn() -> DataType,
}

const MISSING: &[Missing] = &[
    Missing {
        table: "pg_class",
        column: "reloptions",
        data_type: text_array,
    },
    Missing {
        table: "pg_class",
        column: "relacl",
        data_type: text_array,
    },
];

/// A column of a table of the library whose type differs from PostgreSQL's in a way clients
/// notice, and the type it is cast to.
struct Retyped {
    table: &'static str,
    column: &'static str,
    data_type: fn() -> DataType,
}

/// `aclitem[]` is a text array to clients (DataGrip unions `pg_tablespace.spcacl` with
/// `pg_database.datacl`); the library builds these as text or `int4[]`, always NULL. The
/// static tables' ACLs, which have values, are parsed when they load (`with_typed_arrays`).
const RETYPED: &[Retyped] = &[
    Retyped {
        table: "pg_database",
        column: "datacl",
        data_type: text_array,
    },
    Retyped {
        table: "pg_namespace",
        column: "nspacl",
        data_type: text_array,
    },
    Retyped {
        table: "pg_attribute",
        column: "attacl",
        data_type: text_array,
    },
];

fn text_array() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
}

impl WithXmin {
    /// `inner`, the table `name`, with `xmin` unless it has a column of that name already,
    /// and with the columns of [`MISSING`] it lacks.
    pub fn wrap(name: &str, inner: Arc<dyn TableProvider>) -> Arc<dyn TableProvider> {
        let own = inner.schema();
        let mut fields: Vec<FieldRef> = own.fields().iter().cloned().collect();
        let mut retyped = false;
        for retype in RETYPED.iter().filter(|r| r.table == name) {
            if let Ok(index) = own.index_of(retype.column)
                && let Some(field) = fields.get_mut(index)
            {
                *field = Arc::new(field.as_ref().clone().with_data_type((retype.data_type)()));
                retyped = true;
            }
        }
        let mut added = Vec::new();
        for missing in MISSING {
            if missing.table == name && own.field_with_name(missing.column).is_err() {
                let data_type = (missing.data_type)();
                added.push(ScalarValue::try_from(&data_type).unwrap_or(ScalarValue::Null));
                fields.push(Arc::new(Field::new(missing.column, data_type, true)));
            }
        }
        if own.field_with_name(XMIN).is_err() {
            added.push(ScalarValue::Int64(Some(FROZEN_XID)));
            fields.push(Arc::new(Field::new(XMIN, DataType::Int64, false)));
        }
        if added.is_empty() && !retyped {
            return inner;
        }
        let schema = Arc::new(Schema::new_with_metadata(fields, own.metadata().clone()));
        Arc::new(Self {
            inner,
            schema,
            added,
        })
    }
}

#[async_trait]
impl TableProvider for WithXmin {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(vec![
            TableProviderFilterPushDown::Unsupported;
            filters.len()
        ])
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        _filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let own = self.inner.schema().fields().len();
        let wanted: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.schema.fields().len()).collect(),
        };
        let inner_columns: Vec<usize> = wanted.iter().copied().filter(|&i| i < own).collect();
        let input = self
            .inner
            .scan(state, Some(&inner_columns), &[], limit)
            .await?;
        let mut next = 0;
        let mut exprs: Vec<(Arc<dyn PhysicalExpr>, String)> = Vec::with_capacity(wanted.len());
        for &index in &wanted {
            let name = self.schema.field(index).name().clone();
            if index < own {
                let column: Arc<dyn PhysicalExpr> = Arc::new(Column::new(&name, next));
                let data_type = self.schema.field(index).data_type();
                let column: Arc<dyn PhysicalExpr> = match input.schema().field(next).data_type() {
                    same if same == data_type => column,
                    // Text as a text array: `{a,b}` parsed, NULL kept NULL (a cast would
                    // give `{NULL}`).
                    DataType::Utf8 => Arc::new(ScalarFunctionExpr::new(
                        TEXT_ARRAY,
                        Arc::new(ScalarUDF::new_from_impl(TextArray::default())),
                        vec![column],
                        Arc::new(Field::new(&name, data_type.clone(), true)),
                        Arc::new(ConfigOptions::default()),
                    )),
                    _ => Arc::new(CastExpr::new(column, data_type.clone(), None)),
                };
                exprs.push((column, name));
                next += 1;
            } else {
                let value = Literal::new(self.added[index - own].clone());
                exprs.push((Arc::new(value), name));
            }
        }
        Ok(Arc::new(ProjectionExec::try_new(exprs, input)?))
    }
}

const TEXT_ARRAY: &str = "pg_text_array";

/// A PostgreSQL text array literal (`{a,"b c"}`) as a list of text.
#[derive(Debug, PartialEq, Eq, Hash)]
struct TextArray {
    signature: Signature,
}

impl Default for TextArray {
    fn default() -> Self {
        Self {
            signature: Signature::exact(vec![DataType::Utf8], Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for TextArray {
    fn name(&self) -> &str {
        TEXT_ARRAY
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(text_array())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [text] = args.args.as_slice() else {
            return exec_err!("{TEXT_ARRAY} takes one argument");
        };
        let texts = text.to_array(args.number_rows)?;
        Ok(ColumnarValue::Array(parse_array_column(
            &texts,
            &DataType::Utf8,
        )?))
    }
}

/// The PostgreSQL type names of casts: `datafusion-pg-catalog`'s (oid aliases,
/// `pg_catalog.*` builtins), and `xid`/`xid8`, as 64-bit integers.
#[derive(Debug, Default)]
pub struct PgTypePlanner(PgOidTypePlanner);

impl TypePlanner for PgTypePlanner {
    fn plan_type_field(&self, sql_type: &SqlDataType) -> Result<Option<FieldRef>> {
        if let SqlDataType::Custom(name, args) = sql_type
            && args.is_empty()
            && let Some(ObjectNamePart::Identifier(last)) = name.0.last()
            && matches!(last.value.to_ascii_lowercase().as_str(), "xid" | "xid8")
        {
            return Ok(Some(Arc::new(Field::new("", DataType::Int64, true))));
        }
        self.0.plan_type_field(sql_type)
    }
}
