//! Scanning a PostgreSQL relation: a table provider, and a partition that streams rows into
//! Arrow batches.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::Session;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::PhysicalSortExpr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::{StreamExt, TryStreamExt};
use polygate_connector_core::remote_scan::{RemoteRelation, RemoteScan, RemoteScanExec};
use polygate_connector_core::scan::{partitions, scan_filters};
use polygate_connector_core::{ConnectorError, SourceError, SourceSettings, TableRef};

use deadpool_postgres::Object;

use crate::decode::{BatchAssembler, CopyDecoder};
use crate::filter::{FilterSql, Param};
use crate::order::order_by_sql;
use crate::query::{CtidRange, PostgresPartition};
use crate::remote::Remote;
use crate::schema::{PgColumn, quote_ident};

/// A remote relation.
#[derive(Debug)]
pub(crate) struct PostgresTable {
    remote: Arc<Remote>,
    table: TableRef,
    columns: Vec<PgColumn>,
    schema: SchemaRef,
    size: RelationSize,
}

/// What PostgreSQL knows of a relation's size.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct RelationSize {
    /// The estimated row count, for DataFusion's join ordering.
    pub(crate) rows: Option<usize>,
    /// The pages, when the relation can be scanned in `ctid` ranges.
    pub(crate) pages: Option<u64>,
}

impl PostgresTable {
    pub(crate) fn new(
        remote: Arc<Remote>,
        table: TableRef,
        columns: Vec<PgColumn>,
        schema: SchemaRef,
        size: RelationSize,
    ) -> Self {
        Self {
            remote,
            table,
            columns,
            schema,
            size,
        }
    }

    /// The `ctid` ranges a scan of the whole relation is split into: none (one partition)
    /// for small relations, views, old servers and limited scans.
    fn ranges(&self, state: &dyn Session, limit: Option<usize>) -> Vec<CtidRange> {
        let Some(pages) = self.size.pages else {
            return Vec::new();
        };
        if limit.is_some() {
            return Vec::new();
        }
        let most = state
            .config()
            .target_partitions()
            .min(self.remote.scan_share());
        let parts = partitions(pages, self.remote.partition_pages, most);
        if parts < 2 {
            return Vec::new();
        }
        CtidRange::split(pages, parts as u64)
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
impl RemoteRelation for PostgresTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn settings(&self) -> &SourceSettings {
        &self.remote.settings
    }

    /// When PostgreSQL computes exactly DataFusion's answer for it (see [`crate::filter`]).
    fn filters_exactly(&self, filter: &Expr) -> bool {
        FilterSql::translate(&self.columns, 1, filter).is_some()
    }

    async fn scan(
        &self,
        state: &dyn Session,
        indices: Vec<usize>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let schema = Arc::new(self.schema.project(&indices)?);
        let columns: Vec<PgColumn> = indices.iter().map(|&i| self.columns[i].clone()).collect();
        // count(*) needs rows but no columns: PostgreSQL selects empty rows.
        let select_list = columns
            .iter()
            .map(PgColumn::select_expr)
            .collect::<Vec<_>>()
            .join(", ");
        let mut base_sql = format!("SELECT {select_list} FROM {}", self.quoted_name());
        // Each filter becomes one conjunct.
        let mut params: Vec<Param> = Vec::new();
        let conditions = scan_filters(filters, |filter| {
            let (condition, mut bound) =
                FilterSql::translate(&self.columns, params.len() + 1, filter)?;
            params.append(&mut bound);
            Some(condition)
        })?;
        if !conditions.is_empty() {
            base_sql.push_str(" WHERE ");
            base_sql.push_str(&conditions.join(" AND "));
        }
        let partition = PostgresPartition {
            remote: Arc::clone(&self.remote),
            base_sql,
            has_where: !conditions.is_empty(),
            ctid: None,
            session: None,
            order_by: None,
            limit,
            params,
            columns,
            schema: Arc::clone(&schema),
            batch_size: state.config().batch_size(),
        };
        Ok(Arc::new(PostgresScanExec::new(PostgresScan::new(
            partition,
            self.size.rows,
            self.ranges(state, limit),
        ))))
    }
}

/// The physical scan of a PostgreSQL relation or of a compiled sub-plan.
pub(crate) type PostgresScanExec = RemoteScanExec<PostgresScan>;

/// One remote statement, streamed; in `ctid` ranges on sessions sharing one snapshot for a
/// parallel scan.
///
/// EXPLAIN shows the statement as sent, values as `$n` with their types, never their contents.
#[derive(Debug, Clone)]
pub(crate) struct PostgresScan {
    /// The statement, for the whole relation.
    partition: Arc<PostgresPartition>,
    /// The `ctid` ranges of a parallel scan, one per partition; empty for one partition.
    ranges: Vec<CtidRange>,
    /// The sessions of a parallel scan, sharing one snapshot.
    snapshot: Option<Arc<SharedSnapshot>>,
    /// PostgreSQL's estimate of the relation's rows.
    row_estimate: Option<usize>,
}

impl PostgresScan {
    /// The scan of a whole statement compiled from a sub-plan, its output typed as `columns`.
    pub(crate) fn statement(
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
            has_where: false,
            ctid: None,
            session: None,
            order_by: None,
            limit: None,
            params,
            columns,
            schema,
            batch_size,
        };
        Self::new(partition, None, Vec::new())
    }

    fn new(
        partition: PostgresPartition,
        row_estimate: Option<usize>,
        ranges: Vec<CtidRange>,
    ) -> Self {
        let snapshot = (ranges.len() > 1).then(|| {
            Arc::new(SharedSnapshot::new(
                Arc::clone(&partition.remote),
                ranges.len(),
            ))
        });
        Self {
            partition: Arc::new(partition),
            ranges,
            snapshot,
            row_estimate,
        }
    }

    /// One statement for the whole relation, changed by `change`: a sorted or limited
    /// statement is not split.
    fn whole(&self, change: impl FnOnce(&mut PostgresPartition)) -> Self {
        let mut partition = (*self.partition).clone();
        change(&mut partition);
        Self::new(partition, self.row_estimate, Vec::new())
    }
}

impl RemoteScan for PostgresScan {
    const NAME: &'static str = "PostgresScanExec";

    fn settings(&self) -> &SourceSettings {
        &self.partition.remote.settings
    }

    fn schema(&self) -> &SchemaRef {
        &self.partition.schema
    }

    fn row_estimate(&self) -> Option<usize> {
        self.row_estimate
    }

    fn limit(&self) -> Option<usize> {
        self.partition.limit
    }

    fn partitions(&self) -> usize {
        self.ranges.len().max(1)
    }

    fn fmt_native(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(f, "source={}", self.partition.remote.settings.name)?;
        if !self.ranges.is_empty() {
            write!(
                f,
                ", partitions={} (ctid ranges, one snapshot)",
                self.ranges.len()
            )?;
        }
        write!(f, ", sql={}", self.partition.sql())
    }

    fn with_limit(&self, limit: Option<usize>) -> Option<Self> {
        Some(self.whole(|partition| partition.limit = limit))
    }

    /// When PostgreSQL orders exactly as DataFusion (see [`crate::order`]).
    fn with_sort(&self, order: &[PhysicalSortExpr]) -> Option<Self> {
        let order_by = order_by_sql(&self.partition.columns, order)?;
        Some(self.whole(|partition| partition.order_by = Some(order_by)))
    }

    fn open(
        &self,
        partition: usize,
        _context: &Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        Ok(match (&self.snapshot, self.ranges.get(partition)) {
            (Some(snapshot), Some(range)) => PostgresPartition {
                ctid: Some(*range),
                session: Some((Arc::clone(snapshot), partition)),
                ..(*self.partition).clone()
            }
            .stream(),
            _ => self.partition.stream(),
        })
    }
}

/// The longest a cancel request may wait for the server.
const CANCEL_WAIT: std::time::Duration = std::time::Duration::from_secs(10);

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
    /// The session the statement runs on.
    client: PooledSession,
    done: bool,
}

/// A session of the source's pool, and the statement it runs.
///
/// A session dropped while its statement runs cancels the statement on the server (closing the
/// connection alone would leave a statement that sorts or aggregates running to its end) and
/// is closed: were it pooled, the cancel request, which travels on a connection of its own,
/// could reach the next statement it runs. A session in a transaction of its own (a parallel
/// scan's snapshot) is committed at the end of its statement and closed if dropped before:
/// never pooled inside a transaction.
pub(crate) struct PooledSession {
    client: Option<Object>,
    transaction: bool,
    /// The running statement's cancel token, while it runs.
    cancel: Option<tokio_postgres::CancelToken>,
    /// How cancel requests reach the server: as the session did.
    tls: crate::tls::Connector,
}

impl PooledSession {
    fn new(remote: &Remote, client: Object, transaction: bool) -> Self {
        Self {
            client: Some(client),
            transaction,
            cancel: None,
            tls: remote.tls.clone(),
        }
    }

    /// A statement is about to be sent: cancel it if the session is dropped.
    fn arm(&mut self) {
        self.cancel = self.client.as_ref().map(|c| c.cancel_token());
    }

    /// The statement finished: nothing to cancel.
    fn finished(&mut self) {
        self.cancel = None;
    }

    /// Commits the session's transaction, if it has one.
    async fn commit(&mut self) -> Result<(), ConnectorError> {
        if self.transaction
            && let Some(client) = &self.client
        {
            client
                .batch_execute("COMMIT")
                .await
                .map_err(|e| crate::remote::query_error(&e))?;
            self.transaction = false;
        }
        Ok(())
    }
}

impl std::ops::Deref for PooledSession {
    type Target = Object;

    #[allow(
        clippy::expect_used,
        reason = "`client` is `Some` from construction until `drop` takes it"
    )]
    fn deref(&self) -> &Object {
        self.client
            .as_ref()
            .expect("a session is present until it is dropped")
    }
}

impl Drop for PooledSession {
    fn drop(&mut self) {
        if let Some(token) = self.cancel.take() {
            match tokio::runtime::Handle::try_current() {
                Ok(runtime) => {
                    let tls = self.tls.0.clone();
                    runtime.spawn(async move {
                        // Bounded: a server that stopped answering never answers a cancel
                        // either, and the task must not outlive it.
                        match tokio::time::timeout(CANCEL_WAIT, token.cancel_query(tls)).await {
                            Ok(Ok(())) => {}
                            Ok(Err(error)) => {
                                tracing::debug!(%error, "could not cancel a remote statement")
                            }
                            Err(_) => {
                                tracing::debug!("a remote statement's cancel went unanswered")
                            }
                        }
                    });
                }
                Err(_) => tracing::debug!("no runtime to cancel a remote statement from"),
            }
        } else if !self.transaction {
            return;
        }
        if let Some(client) = self.client.take() {
            drop(Object::take(client));
        }
    }
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
                        let chunk = chunk.map_err(|e| crate::remote::query_error(&e))?;
                        decoder.feed(&chunk, &mut self.assembler)?;
                    }
                    None => {
                        decoder.finish()?;
                        self.end().await?;
                    }
                },
                Rows::Data(stream) => match stream.next().await {
                    Some(row) => {
                        let row = row.map_err(|e| crate::remote::query_error(&e))?;
                        self.assembler.append_row(&row)?;
                    }
                    None => self.end().await?,
                },
            }
        }
    }

    /// The statement completed: nothing left to cancel, the last rows make a batch.
    async fn end(&mut self) -> Result<(), ConnectorError> {
        self.client.finished();
        self.client.commit().await?;
        self.done = true;
        self.assembler.flush()
    }
}

impl PostgresPartition {
    /// Runs the statement, turning rows into batches as they arrive.
    ///
    /// A statement without parameters is read through `COPY ... TO STDOUT (FORMAT binary)`,
    /// the server's fastest way out; one with parameters (which COPY cannot take) as binary
    /// rows of an extended-protocol query.
    fn stream(&self) -> SendableRecordBatchStream {
        let remote = Arc::clone(&self.remote);
        let sql = self.sql();
        let params = self.params.clone();
        let source = self.remote.settings.name.clone();
        let fail = move |e| SourceError::into_datafusion(source.clone(), e);
        let assembler = BatchAssembler::new(
            self.columns.clone(),
            Arc::clone(&self.schema),
            self.batch_size,
        );
        let session = self.session.clone();
        let batches = futures::stream::once(async move {
            let mut client = match &session {
                Some((snapshot, index)) => snapshot.take(*index).await.map_err(&fail)?,
                None => PooledSession::new(&remote, remote.connect().await.map_err(&fail)?, false),
            };
            // Armed before the statement is sent: PostgreSQL does not flush BindComplete
            // before running the statement, so `query_raw` may wait until the first rows, and a
            // scan dropped meanwhile must still cancel it. The session lives as long as the row
            // stream. When the stream ends the statement is done; when it is dropped before
            // that (the client went away, a limit was met, the query failed elsewhere), the
            // session cancels the statement on the server and is closed.
            client.arm();
            let started = if params.is_empty() {
                let copy = format!("COPY ({sql}) TO STDOUT (FORMAT binary)");
                client
                    .copy_out(copy.as_str())
                    .await
                    .map(|stream| Rows::Copy(Box::pin(stream), CopyDecoder::new()))
            } else {
                client
                    .query_raw(sql.as_str(), params.iter().map(Param::as_sql))
                    .await
                    .map(|stream| Rows::Data(Box::pin(stream)))
            };
            let rows = match started {
                Ok(rows) => rows,
                Err(error) => {
                    // Refused by the server: there is nothing left to cancel.
                    client.finished();
                    return Err(fail(crate::remote::query_error(&error)));
                }
            };
            let reading = Reading {
                rows,
                assembler,
                client,
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

/// The sessions of one parallel scan, in transactions that share one snapshot: every
/// partition sees the relation as of the same moment.
///
/// The first partition to start takes every session at once (under the source's
/// `parallel_sessions` lock, so that concurrent parallel scans cannot each hold part of the
/// pool while waiting for the rest), exports the first session's snapshot and imports it into
/// the others, as `pg_dump --jobs` does. Sessions left untaken are closed, not pooled: they are
/// inside a transaction (see [`PooledSession`]).
pub(crate) struct SharedSnapshot {
    remote: Arc<Remote>,
    count: usize,
    sessions: tokio::sync::OnceCell<Result<Vec<std::sync::Mutex<Option<PooledSession>>>, String>>,
}

impl std::fmt::Debug for SharedSnapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SharedSnapshot")
            .field("count", &self.count)
            .finish_non_exhaustive()
    }
}

impl SharedSnapshot {
    fn new(remote: Arc<Remote>, count: usize) -> Self {
        Self {
            remote,
            count,
            sessions: tokio::sync::OnceCell::new(),
        }
    }

    /// The session of partition `index`, in its snapshot transaction.
    async fn take(&self, index: usize) -> Result<PooledSession, ConnectorError> {
        let sessions = self
            .sessions
            .get_or_init(|| async { self.open().await.map_err(|e| e.to_string()) })
            .await
            .as_ref()
            .map_err(|e| ConnectorError::Unavailable(e.clone()))?;
        let slot = sessions
            .get(index)
            .ok_or_else(|| ConnectorError::InvalidData(format!("no partition {index}")))?;
        slot.lock()
            .map_err(|_| ConnectorError::InvalidData("a partition failed to start".into()))?
            .take()
            .ok_or_else(|| ConnectorError::InvalidData(format!("partition {index} ran twice")))
    }

    /// Takes the scan's sessions and starts their transactions on one snapshot. A session
    /// is closed, not pooled, if anything fails or the scan is dropped meanwhile.
    async fn open(&self) -> Result<Vec<std::sync::Mutex<Option<PooledSession>>>, ConnectorError> {
        const BEGIN: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY";
        let fail = |e: tokio_postgres::Error| crate::remote::query_error(&e);
        let mut sessions = Vec::with_capacity(self.count);
        {
            let _turn = self.remote.parallel_sessions.lock().await;
            for _ in 0..self.count {
                sessions.push(PooledSession::new(
                    &self.remote,
                    self.remote.connect().await?,
                    true,
                ));
            }
        }
        let Some((leader, followers)) = sessions.split_first() else {
            // A scan of no partitions has no snapshot to share.
            return Ok(Vec::new());
        };
        leader.batch_execute(BEGIN).await.map_err(fail)?;
        let id: String = leader
            .query_one("SELECT pg_export_snapshot()", &[])
            .await
            .map_err(fail)?
            .get(0);
        // A server-made identifier (`00000003-0000001B-1`); checked before it is quoted.
        if id.is_empty() || !id.chars().all(|c| c.is_ascii_hexdigit() || c == '-') {
            return Err(ConnectorError::InvalidData(format!(
                "unexpected snapshot identifier {id:?}"
            )));
        }
        for follower in followers {
            follower
                .batch_execute(&format!("{BEGIN}; SET TRANSACTION SNAPSHOT '{id}'"))
                .await
                .map_err(fail)?;
        }
        Ok(sessions
            .into_iter()
            .map(|s| std::sync::Mutex::new(Some(s)))
            .collect())
    }
}
