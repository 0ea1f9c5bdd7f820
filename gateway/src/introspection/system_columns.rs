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
use datafusion::common::ScalarValue;
use datafusion::datasource::TableType;
use datafusion::error::Result;
use datafusion::logical_expr::planner::TypePlanner;
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::PhysicalExpr;
use datafusion::physical_expr::expressions::{Column, Literal};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::sql::sqlparser::ast::{DataType as SqlDataType, ObjectNamePart};
use datafusion_pg_catalog::pg_catalog::oid_type_planner::PgOidTypePlanner;

/// The system column's name.
pub const XMIN: &str = "xmin";
/// `FrozenTransactionId`: the `xmin` of a row older than every transaction.
pub const FROZEN_XID: i64 = 2;
/// What `age()` answers for a frozen (or any special) transaction id.
pub const FROZEN_AGE: i32 = i32::MAX;

/// A catalog table with an `xmin` column after its own, and the columns PostgreSQL has that
/// `datafusion-pg-catalog`'s table lacks (`pg_class.reloptions`), NULL in every row.
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

const MISSING: &[Missing] = &[Missing {
    table: "pg_class",
    column: "reloptions",
    data_type: text_array,
}];

fn text_array() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
}

impl WithXmin {
    /// `inner`, the table `name`, with `xmin` unless it has a column of that name already,
    /// and with the columns of [`MISSING`] it lacks.
    pub fn wrap(name: &str, inner: Arc<dyn TableProvider>) -> Arc<dyn TableProvider> {
        let own = inner.schema();
        let mut fields: Vec<FieldRef> = own.fields().iter().cloned().collect();
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
        if added.is_empty() {
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
                exprs.push((Arc::new(Column::new(&name, next)), name));
                next += 1;
            } else {
                let value = Literal::new(self.added[index - own].clone());
                exprs.push((Arc::new(value), name));
            }
        }
        Ok(Arc::new(ProjectionExec::try_new(exprs, input)?))
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
