//! Scanning a PostgreSQL relation: a table provider, and a partition that streams rows into
//! Arrow batches.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::stats::Precision;
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Statistics, internal_err};
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::PhysicalSortExpr;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalExpr};
use datafusion::physical_plan::SortOrderPushdownResult;
use datafusion::physical_plan::coop::make_cooperative;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType, SchedulingType};
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, Partitioning, PlanProperties,
};
use futures::{StreamExt, TryStreamExt};
use polygate_connector_core::{ConnectorError, SourceError, TableRef};

use crate::Remote;
use crate::decode::{BatchAssembler, CopyDecoder};
use crate::filter::{FilterSql, Param};
use crate::order::order_by_sql;
use crate::types::{PgColumn, quote_ident};

/// A remote relation.
#[derive(Debug)]
pub(crate) struct PostgresTable {
    remote: Arc<Remote>,
    table: TableRef,
    columns: Vec<PgColumn>,
    schema: SchemaRef,
    /// PostgreSQL's estimate of the row count, for DataFusion's join ordering.
    row_estimate: Option<usize>,
}

impl PostgresTable {
    pub(crate) fn new(
        remote: Arc<Remote>,
        table: TableRef,
        columns: Vec<PgColumn>,
        schema: SchemaRef,
        row_estimate: Option<usize>,
    ) -> Self {
        Self {
            remote,
            table,
            columns,
            schema,
            row_estimate,
        }
    }

    pub(crate) fn remote(&self) -> &Arc<Remote> {
        &self.remote
    }

    pub(crate) fn columns(&self) -> &[PgColumn] {
        &self.columns
    }

    /// The relation's schema-qualified name, quoted.
    pub(crate) fn quoted_name(&self) -> String {
        format!(
            "{}.{}",
            quote_ident(&self.table.namespace),
            quote_ident(&self.table.name)
        )
    }
}

#[async_trait]
impl TableProvider for PostgresTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    /// A filter is `Exact` when PostgreSQL computes exactly DataFusion's answer for it (see
    /// [`crate::filter`]); every other filter stays with DataFusion.
    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        Ok(filters
            .iter()
            .map(|filter| {
                if self.remote.pushdown && FilterSql::translate(&self.columns, 1, filter).is_some()
                {
                    TableProviderFilterPushDown::Exact
                } else {
                    TableProviderFilterPushDown::Unsupported
                }
            })
            .collect())
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let indices: Vec<usize> = match projection {
            Some(p) => p.clone(),
            None => (0..self.columns.len()).collect(),
        };
        let schema = Arc::new(self.schema.project(&indices)?);
        let columns: Vec<PgColumn> = indices.iter().map(|&i| self.columns[i].clone()).collect();
        // count(*) needs rows but no columns: PostgreSQL selects empty rows.
        let select_list = columns
            .iter()
            .map(PgColumn::select_expr)
            .collect::<Vec<_>>()
            .join(", ");
        let mut base_sql = format!("SELECT {select_list} FROM {}", self.quoted_name());
        // Only filters reported Exact reach the scan; each becomes one conjunct.
        let mut params: Vec<Param> = Vec::new();
        let mut conditions = Vec::new();
        for filter in filters {
            let (condition, mut bound) =
                FilterSql::translate(&self.columns, params.len() + 1, filter).ok_or_else(|| {
                    DataFusionError::Internal(format!("filter {filter} was not reported pushable"))
                })?;
            conditions.push(condition);
            params.append(&mut bound);
        }
        if !conditions.is_empty() {
            base_sql.push_str(" WHERE ");
            base_sql.push_str(&conditions.join(" AND "));
        }
        let partition = Arc::new(PostgresPartition {
            remote: Arc::clone(&self.remote),
            base_sql,
            order_by: None,
            limit,
            params,
            columns,
            schema: Arc::clone(&schema),
            batch_size: state.config().batch_size(),
        });
        Ok(Arc::new(PostgresScanExec::new(
            partition,
            self.row_estimate,
            None,
        )))
    }
}

/// The physical scan of a PostgreSQL relation: one remote statement, streamed.
///
/// EXPLAIN shows the statement as sent, values as `$n` with their types, never their contents.
#[derive(Debug)]
pub(crate) struct PostgresScanExec {
    partition: Arc<PostgresPartition>,
    /// PostgreSQL's estimate of the relation's rows.
    row_estimate: Option<usize>,
    /// The order the statement's ORDER BY guarantees, if it has one.
    ordering: Option<Vec<PhysicalSortExpr>>,
    properties: Arc<PlanProperties>,
    /// Row estimates, always inexact: they come from PostgreSQL's statistics.
    statistics: Arc<Statistics>,
}

impl PostgresScanExec {
    /// The scan of a whole statement compiled from a sub-plan, its output typed as `columns`.
    pub(crate) fn for_statement(
        remote: Arc<Remote>,
        sql: String,
        params: Vec<Param>,
        columns: Vec<PgColumn>,
        schema: SchemaRef,
        batch_size: usize,
    ) -> Self {
        let partition = PostgresPartition {
            remote,
            base_sql: sql,
            order_by: None,
            limit: None,
            params,
            columns,
            schema,
            batch_size,
        };
        Self::new(Arc::new(partition), None, None)
    }

    fn new(
        partition: Arc<PostgresPartition>,
        row_estimate: Option<usize>,
        ordering: Option<Vec<PhysicalSortExpr>>,
    ) -> Self {
        let schema = Arc::clone(&partition.schema);
        let equivalences = match &ordering {
            Some(ordering) => EquivalenceProperties::new_with_orderings(schema, [ordering.clone()]),
            None => EquivalenceProperties::new(schema),
        };
        let properties = PlanProperties::new(
            equivalences,
            Partitioning::UnknownPartitioning(1),
            EmissionType::Incremental,
            Boundedness::Bounded,
        )
        .with_scheduling_type(SchedulingType::Cooperative);
        // An estimate of the whole relation: filters only lower it, a limit caps it.
        let rows = match (row_estimate, partition.limit) {
            (Some(rows), Some(limit)) => Precision::Inexact(rows.min(limit)),
            (Some(rows), None) => Precision::Inexact(rows),
            (None, _) => Precision::Absent,
        };
        let statistics = Statistics::new_unknown(&partition.schema).with_num_rows(rows);
        Self {
            partition,
            row_estimate,
            ordering,
            properties: Arc::new(properties),
            statistics: Arc::new(statistics),
        }
    }
}

impl DisplayAs for PostgresScanExec {
    fn fmt_as(&self, _format: DisplayFormatType, f: &mut std::fmt::Formatter) -> std::fmt::Result {
        write!(
            f,
            "PostgresScanExec: source={}, sql={}",
            self.partition.remote.source,
            self.partition.sql()
        )
    }
}

impl ExecutionPlan for PostgresScanExec {
    fn name(&self) -> &'static str {
        "PostgresScanExec"
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn fetch(&self) -> Option<usize> {
        self.partition.limit
    }

    /// ORDER BY ... LIMIT: when PostgreSQL orders exactly as DataFusion (see [`crate::order`]),
    /// the statement sorts and DataFusion's sort goes; the optimizer then hands the limit
    /// down through [`ExecutionPlan::with_fetch`].
    fn try_pushdown_sort(
        &self,
        order: &[PhysicalSortExpr],
    ) -> Result<SortOrderPushdownResult<Arc<dyn ExecutionPlan>>> {
        // A statement already limited picked its rows in no particular order.
        if self.partition.limit.is_some() || self.ordering.is_some() {
            return Ok(SortOrderPushdownResult::Unsupported);
        }
        let Some(order_by) = order_by_sql(&self.partition.columns, order) else {
            return Ok(SortOrderPushdownResult::Unsupported);
        };
        let partition = PostgresPartition {
            order_by: Some(order_by),
            ..(*self.partition).clone()
        };
        let inner = Self::new(Arc::new(partition), self.row_estimate, Some(order.to_vec()));
        Ok(SortOrderPushdownResult::Exact {
            inner: Arc::new(inner),
        })
    }

    fn with_fetch(&self, limit: Option<usize>) -> Option<Arc<dyn ExecutionPlan>> {
        let limit = match (self.partition.limit, limit) {
            (Some(current), Some(new)) => Some(current.min(new)),
            (current, new) => current.or(new),
        };
        let partition = PostgresPartition {
            limit,
            ..(*self.partition).clone()
        };
        Some(Arc::new(Self::new(
            Arc::new(partition),
            self.row_estimate,
            self.ordering.clone(),
        )))
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn partition_statistics(&self, _partition: Option<usize>) -> Result<Arc<Statistics>> {
        // One partition: its statistics are the scan's.
        Ok(Arc::clone(&self.statistics))
    }

    fn apply_expressions(
        &self,
        _f: &mut dyn FnMut(&Arc<dyn PhysicalExpr>) -> Result<TreeNodeRecursion>,
    ) -> Result<TreeNodeRecursion> {
        Ok(TreeNodeRecursion::Continue)
    }

    fn with_new_children(
        self: Arc<Self>,
        children: Vec<Arc<dyn ExecutionPlan>>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        if children.is_empty() {
            Ok(self)
        } else {
            internal_err!("PostgresScanExec has no children to replace")
        }
    }

    fn execute(
        &self,
        partition: usize,
        _context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        if partition != 0 {
            return internal_err!("PostgresScanExec has one partition, asked for {partition}");
        }
        // Cooperative, so that a fast remote stream cannot starve the other tasks of a worker.
        Ok(make_cooperative(self.partition.stream()))
    }
}

/// Cancels a remote statement that is dropped before it finished.
///
/// Closing the connection alone would leave the statement running until the server next tries
/// to send a row; a statement still sorting or aggregating would run to its end.
struct CancelOnDrop(Option<tokio_postgres::CancelToken>);

impl CancelOnDrop {
    /// The statement finished: nothing to cancel.
    fn disarm(&mut self) {
        self.0 = None;
    }
}

impl Drop for CancelOnDrop {
    fn drop(&mut self) {
        let Some(token) = self.0.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(runtime) => {
                runtime.spawn(async move {
                    if let Err(error) = token.cancel_query(tokio_postgres::NoTls).await {
                        tracing::debug!(%error, "could not cancel a remote statement");
                    }
                });
            }
            Err(_) => tracing::debug!("no runtime to cancel a remote statement from"),
        }
    }
}

/// The rows of a running statement, as they arrive.
enum Rows {
    /// `COPY ... TO STDOUT (FORMAT binary)`, in chunks of any size.
    Copy(
        std::pin::Pin<Box<tokio_postgres::CopyOutStream>>,
        CopyDecoder,
    ),
    /// Binary `DataRow`s.
    Data(std::pin::Pin<Box<tokio_postgres::RowStream>>),
}

/// A statement being read into batches, with what must live as long as it.
struct Reading {
    rows: Rows,
    assembler: BatchAssembler,
    /// The pooled session the statement runs on; back to the pool when reading ends.
    _client: deadpool_postgres::Object,
    cancel: CancelOnDrop,
    done: bool,
}

impl Reading {
    /// The next batch and the reading that follows it, or `None` at the end.
    async fn next(mut self) -> Result<Option<(RecordBatch, Self)>, ConnectorError> {
        loop {
            if let Some(batch) = self.assembler.pop() {
                return Ok(Some((batch, self)));
            }
            if self.done {
                return Ok(None);
            }
            match &mut self.rows {
                Rows::Copy(stream, decoder) => match stream.next().await {
                    Some(chunk) => {
                        let chunk = chunk.map_err(|e| crate::query_error(&e))?;
                        decoder.feed(&chunk, &mut self.assembler)?;
                    }
                    None => {
                        decoder.finish()?;
                        self.end()?;
                    }
                },
                Rows::Data(stream) => match stream.next().await {
                    Some(row) => {
                        let row = row.map_err(|e| crate::query_error(&e))?;
                        self.assembler.append_row(&row)?;
                    }
                    None => self.end()?,
                },
            }
        }
    }

    /// The statement completed: nothing left to cancel, the last rows make a batch.
    fn end(&mut self) -> Result<(), ConnectorError> {
        self.cancel.disarm();
        self.done = true;
        self.assembler.flush()
    }
}

/// One remote query, streamed.
#[derive(Debug, Clone)]
struct PostgresPartition {
    remote: Arc<Remote>,
    /// SELECT, FROM and WHERE.
    base_sql: String,
    /// The ORDER BY clause, without its keywords.
    order_by: Option<String>,
    limit: Option<usize>,
    params: Vec<Param>,
    columns: Vec<PgColumn>,
    schema: SchemaRef,
    batch_size: usize,
}

impl PostgresPartition {
    /// The statement sent to PostgreSQL.
    fn sql(&self) -> String {
        let mut sql = self.base_sql.clone();
        if let Some(order_by) = &self.order_by {
            sql.push_str(" ORDER BY ");
            sql.push_str(order_by);
        }
        // The limit is a number polygate computed, not user text.
        if let Some(limit) = self.limit {
            sql.push_str(&format!(" LIMIT {limit}"));
        }
        sql
    }

    /// Runs the statement, turning rows into batches as they arrive.
    ///
    /// A statement without parameters is read through `COPY ... TO STDOUT (FORMAT binary)`,
    /// the server's fastest way out; one with parameters (which COPY cannot take) as binary
    /// rows of an extended-protocol query.
    fn stream(&self) -> SendableRecordBatchStream {
        let remote = Arc::clone(&self.remote);
        let sql = self.sql();
        let params = self.params.clone();
        let source = self.remote.source.clone();
        let fail = move |e| SourceError::into_datafusion(source.clone(), e);
        let assembler = BatchAssembler::new(
            self.columns.clone(),
            Arc::clone(&self.schema),
            self.batch_size,
        );
        let batches = futures::stream::once(async move {
            let client = remote.connect().await.map_err(&fail)?;
            // Armed before the statement is sent: PostgreSQL does not flush BindComplete
            // before running the statement, so `query_raw` may wait until the first rows, and a
            // scan dropped meanwhile must still cancel it. The client lives as long as the row
            // stream. When the stream ends the statement is done; when it is dropped before
            // that (the client went away, a limit was met, the query failed elsewhere), the
            // guard cancels the statement on the server.
            let cancel = CancelOnDrop(Some(client.cancel_token()));
            let rows = if params.is_empty() {
                let copy = format!("COPY ({sql}) TO STDOUT (FORMAT binary)");
                let stream = client
                    .copy_out(copy.as_str())
                    .await
                    .map_err(|e| fail(crate::query_error(&e)))?;
                Rows::Copy(Box::pin(stream), CopyDecoder::new())
            } else {
                let stream = client
                    .query_raw(sql.as_str(), params.iter().map(Param::as_sql))
                    .await
                    .map_err(|e| fail(crate::query_error(&e)))?;
                Rows::Data(Box::pin(stream))
            };
            let reading = Reading {
                rows,
                assembler,
                _client: client,
                cancel,
                done: false,
            };
            Ok::<_, DataFusionError>(futures::stream::try_unfold(reading, move |reading| {
                let fail = fail.clone();
                async move { reading.next().await.map_err(fail) }
            }))
        })
        .try_flatten();
        Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            batches,
        ))
    }
}
