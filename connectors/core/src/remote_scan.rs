//! The skeleton every connector's remote read is built on: [`RemoteTable`], the table
//! provider, generic over the connector's [`RemoteRelation`]; and [`RemoteScanExec`], the
//! execution plan, generic over the connector's [`RemoteScan`].
//!
//! The skeleton owns what is the same for every store: which filters, limits, sorts and
//! projections a scan is offered (none of them when the source says `pushdown = false`), plan
//! properties and partitions, row estimates, EXPLAIN's naming and the store's answer bound. A
//! connector supplies only its native query (which filters it computes exactly, how it takes
//! a sort, a limit, a projection, and how EXPLAIN shows it), its partition plan and its reader.

use std::fmt::{self, Debug};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::TreeNodeRecursion;
use datafusion::common::{Result, Statistics, internal_err};
use datafusion::datasource::TableType;
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::{Expr, TableProviderFilterPushDown};
use datafusion::physical_expr::{PhysicalExpr, PhysicalSortExpr};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::{
    DisplayAs, DisplayFormatType, ExecutionPlan, PlanProperties, SortOrderPushdownResult,
};

use crate::SourceSettings;
use crate::scan::{estimated_rows, partition_statistics, remote_stream, scan_properties};

/// A relation of a store, as a connector reads it. [`RemoteTable`] presents it to DataFusion.
#[async_trait]
pub trait RemoteRelation: Debug + Send + Sync + 'static {
    /// The relation's Arrow schema, as polygate presents it.
    fn schema(&self) -> SchemaRef;

    /// The relation's source: when it does not push down, scans are offered no filter and
    /// no limit.
    fn settings(&self) -> &SourceSettings;

    /// Whether the store selects exactly the rows where `filter` is TRUE, as DataFusion would.
    fn filters_exactly(&self, filter: &Expr) -> bool;

    /// The scan of the columns `columns` (indices into the schema) of the rows where every
    /// one of `filters` is TRUE (each one [`RemoteRelation::filters_exactly`] accepted),
    /// returning at most `limit` rows in any order.
    async fn scan(
        &self,
        state: &dyn Session,
        columns: Vec<usize>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>>;
}

/// The table provider of a [`RemoteRelation`].
#[derive(Debug)]
pub struct RemoteTable<R>(R);

impl<R: RemoteRelation> RemoteTable<R> {
    /// The provider that scans `relation`.
    pub fn new(relation: R) -> Self {
        Self(relation)
    }

    /// The relation this provider scans.
    pub fn relation(&self) -> &R {
        &self.0
    }
}

#[async_trait]
impl<R: RemoteRelation> TableProvider for RemoteTable<R> {
    fn schema(&self) -> SchemaRef {
        self.0.schema()
    }

    fn table_type(&self) -> TableType {
        TableType::Base
    }

    /// `Exact` for each filter the store computes exactly, while the source pushes down;
    /// `Unsupported` for the rest, which DataFusion computes. Never `Inexact`: a filter run
    /// twice is no safer than one run once exactly, and an approximate one is a wrong answer
    /// waiting.
    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        let pushdown = self.0.settings().pushdown;
        Ok(filters
            .iter()
            .map(|filter| {
                if pushdown && self.0.filters_exactly(filter) {
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
        let columns = match projection {
            Some(projection) => projection.clone(),
            None => (0..self.0.schema().fields().len()).collect(),
        };
        // DataFusion hands a scan only the filters reported Exact, and a limit only where no
        // filter stays above the scan; with `pushdown = false` it is offered neither.
        let pushdown = self.0.settings().pushdown;
        let filters = if pushdown { filters } else { &[] };
        let limit = limit.filter(|_| pushdown);
        self.0.scan(state, columns, filters, limit).await
    }
}

/// A connector's native read: one query of its store, split into partitions.
///
/// Every method but [`RemoteScan::open`] is planning: it must not reach the store.
pub trait RemoteScan: Debug + Clone + Send + Sync + 'static {
    /// The execution plan's name, as EXPLAIN shows it (`PostgresScanExec`, ...).
    const NAME: &'static str;

    /// The source the query runs on: its name, its answer bound, and whether it runs work
    /// in the store (when not, the exec takes no sort, limit or projection).
    fn settings(&self) -> &SourceSettings;

    /// The schema of the rows the query returns.
    fn schema(&self) -> &SchemaRef;

    /// The store's estimate of the rows the query reads before any filter, if it has one.
    fn row_estimate(&self) -> Option<usize>;

    /// The most rows the query returns, when it has a limit.
    fn limit(&self) -> Option<usize>;

    /// How many partitions the query is split into (at least one).
    fn partitions(&self) -> usize;

    /// The query as EXPLAIN shows it, after `NAME: `: the source, the relation, the partition
    /// plan and the native text, with values elided.
    fn fmt_native(&self, f: &mut fmt::Formatter) -> fmt::Result;

    /// This query returning at most `limit` rows, in whatever order it has; `None` when the
    /// store cannot take the limit.
    fn with_limit(&self, _limit: Option<usize>) -> Option<Self> {
        None
    }

    /// This query returning its rows in exactly `order`, as DataFusion orders them (NULLs,
    /// collation, NaN and all); `None` when the store cannot sort so.
    fn with_sort(&self, _order: &[PhysicalSortExpr]) -> Option<Self> {
        None
    }

    /// This query returning the rows of `projection` over its own; `None` when the store
    /// cannot compute them exactly.
    fn with_projection(&self, _projection: &ProjectionExec) -> Option<Self> {
        None
    }

    /// Starts partition `partition` (below [`RemoteScan::partitions`]) and streams its rows.
    fn open(
        &self,
        partition: usize,
        context: &Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream>;
}

/// The execution plan of a [`RemoteScan`].
#[derive(Debug)]
pub struct RemoteScanExec<S> {
    scan: S,
    /// The order the query guarantees within each partition, once it took a sort.
    ordering: Option<Vec<PhysicalSortExpr>>,
    properties: Arc<PlanProperties>,
    /// Always inexact: they come from the store's statistics.
    statistics: Arc<Statistics>,
}

impl<S: RemoteScan> RemoteScanExec<S> {
    /// The plan that runs `scan`, its rows in no particular order.
    pub fn new(scan: S) -> Self {
        Self::ordered(scan, None)
    }

    fn ordered(scan: S, ordering: Option<Vec<PhysicalSortExpr>>) -> Self {
        let schema = Arc::clone(scan.schema());
        let properties =
            scan_properties(Arc::clone(&schema), ordering.as_deref(), scan.partitions());
        // An estimate of the whole relation: filters only lower it, a limit caps it.
        let rows = estimated_rows(scan.row_estimate(), scan.limit());
        let statistics = Statistics::new_unknown(&schema).with_num_rows(rows);
        Self {
            scan,
            ordering,
            properties: Arc::new(properties),
            statistics: Arc::new(statistics),
        }
    }

    /// The query this plan runs.
    pub fn scan(&self) -> &S {
        &self.scan
    }
}

impl<S: RemoteScan> DisplayAs for RemoteScanExec<S> {
    fn fmt_as(&self, _format: DisplayFormatType, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "{}: ", S::NAME)?;
        self.scan.fmt_native(f)
    }
}

impl<S: RemoteScan> ExecutionPlan for RemoteScanExec<S> {
    fn name(&self) -> &'static str {
        S::NAME
    }

    fn properties(&self) -> &Arc<PlanProperties> {
        &self.properties
    }

    fn fetch(&self) -> Option<usize> {
        self.scan.limit()
    }

    /// ORDER BY ... LIMIT: when the store orders exactly as DataFusion, the query sorts and
    /// DataFusion's sort goes; the optimizer then hands the limit down through
    /// [`ExecutionPlan::with_fetch`]. A query already limited picked its rows in no particular
    /// order, and one already sorted keeps its order.
    fn try_pushdown_sort(
        &self,
        order: &[PhysicalSortExpr],
    ) -> Result<SortOrderPushdownResult<Arc<dyn ExecutionPlan>>> {
        if !self.scan.settings().pushdown || self.scan.limit().is_some() || self.ordering.is_some()
        {
            return Ok(SortOrderPushdownResult::Unsupported);
        }
        Ok(match self.scan.with_sort(order) {
            Some(sorted) => SortOrderPushdownResult::Exact {
                inner: Arc::new(Self::ordered(sorted, Some(order.to_vec()))),
            },
            None => SortOrderPushdownResult::Unsupported,
        })
    }

    fn with_fetch(&self, limit: Option<usize>) -> Option<Arc<dyn ExecutionPlan>> {
        if !self.scan.settings().pushdown {
            return None;
        }
        let limit = match (self.scan.limit(), limit) {
            (Some(current), Some(new)) => Some(current.min(new)),
            (current, new) => current.or(new),
        };
        let limited = self.scan.with_limit(limit)?;
        Some(Arc::new(Self::ordered(limited, self.ordering.clone())))
    }

    /// A projection the store computes (nested fields, say) is read instead of computed.
    fn try_swapping_with_projection(
        &self,
        projection: &ProjectionExec,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        if !self.scan.settings().pushdown || self.ordering.is_some() {
            return Ok(None);
        }
        Ok(self
            .scan
            .with_projection(projection)
            .map(|projected| Arc::new(Self::new(projected)) as Arc<dyn ExecutionPlan>))
    }

    fn children(&self) -> Vec<&Arc<dyn ExecutionPlan>> {
        vec![]
    }

    fn partition_statistics(&self, partition: Option<usize>) -> Result<Arc<Statistics>> {
        // Partitions of about equal size: an equal share of the estimate each.
        Ok(partition_statistics(
            &self.statistics,
            self.scan.schema(),
            self.scan.partitions(),
            partition,
        ))
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
            internal_err!("{} has no children to replace", S::NAME)
        }
    }

    fn execute(
        &self,
        partition: usize,
        context: Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let partitions = self.scan.partitions().max(1);
        if partition >= partitions {
            return internal_err!(
                "{} has {partitions} partitions, asked for {partition}",
                S::NAME
            );
        }
        let stream = self.scan.open(partition, &context)?;
        let source = self.scan.settings();
        Ok(remote_stream(stream, &source.name, source.response_timeout))
    }
}
