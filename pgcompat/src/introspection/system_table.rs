//! The mark of a system table: every table of `pg_catalog` and `information_schema` is handed
//! to DataFusion as a [`SystemTable`], so that rules on a resolved plan know a catalog table by
//! the provider a scan reads, whatever name or alias the query gave it.

use std::borrow::Cow;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{Constraints, Statistics};
use datafusion::datasource::{TableType, source_as_provider};
use datafusion::error::Result;
use datafusion::logical_expr::{Expr, LogicalPlan, TableProviderFilterPushDown, TableSource};
use datafusion::physical_plan::ExecutionPlan;

/// A table of `pg_catalog` or `information_schema`; it reads as the table it wraps.
#[derive(Debug)]
pub struct SystemTable(Arc<dyn TableProvider>);

impl SystemTable {
    /// `table`, marked as a system table.
    pub fn wrap(table: Arc<dyn TableProvider>) -> Arc<dyn TableProvider> {
        Arc::new(Self(table))
    }

    /// Does a scan of `source` read a system table?
    pub fn is_source(source: &Arc<dyn TableSource>) -> bool {
        source_as_provider(source).is_ok_and(|provider| provider.downcast_ref::<Self>().is_some())
    }
}

#[async_trait]
impl TableProvider for SystemTable {
    fn schema(&self) -> SchemaRef {
        self.0.schema()
    }

    fn constraints(&self) -> Option<&Constraints> {
        self.0.constraints()
    }

    fn table_type(&self) -> TableType {
        self.0.table_type()
    }

    fn get_table_definition(&self) -> Option<&str> {
        self.0.get_table_definition()
    }

    fn get_logical_plan(&self) -> Option<Cow<'_, LogicalPlan>> {
        self.0.get_logical_plan()
    }

    fn get_column_default(&self, column: &str) -> Option<&Expr> {
        self.0.get_column_default(column)
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.0.scan(state, projection, filters, limit).await
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        self.0.supports_filters_pushdown(filters)
    }

    fn statistics(&self) -> Option<Statistics> {
        self.0.statistics()
    }
}
