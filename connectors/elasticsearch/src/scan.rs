//! An index as a DataFusion table: the search each scan sends, and the pages it reads.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, Float32Builder, RecordBatchOptions, StringBuilder};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::Session;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::PhysicalSortExpr;
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use polygate_connector_core::prefetch::{Prefetched, open_detached};
use polygate_connector_core::remote_scan::{RemoteRelation, RemoteScan, RemoteScanExec};
use polygate_connector_core::scan::{partitions, scan_filters};
use polygate_connector_core::{ConnectorError, SourceError, SourceSettings};
use reqwest::Method;
use serde::Deserialize;
use serde_json::{Map, Value, json};
use tokio::sync::mpsc;

use crate::decode::RecordDecoder;
use crate::filter::filter;
use crate::fulltext::has_full_text;
use crate::order::sort_for;
use crate::query::{Column, Mode, Search};
use crate::remote::{Flavour, Remote, path_segment};
use crate::schema::{Field, METADATA_COLUMNS};

/// How scans page through an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Paging {
    /// Point in time and `search_after` where the cluster sorts by `_shard_doc`
    /// (Elasticsearch 7.12+, OpenSearch 3.3+), scroll elsewhere.
    Auto,
    /// Always a point in time with `search_after`.
    PointInTime,
    /// Always a scroll.
    Scroll,
}

/// How long a point in time or scroll lives between two pages.
const KEEP_ALIVE: &str = "2m";

/// What a source's scans share.
#[derive(Debug)]
pub(crate) struct ScanSettings {
    pub page_size: usize,
    pub partition_documents: u64,
    pub paging: Paging,
}

/// An index (or alias, or pattern) of a source.
#[derive(Debug)]
pub(crate) struct IndexTable {
    remote: Arc<Remote>,
    settings: Arc<ScanSettings>,
    index: String,
    fields: Arc<Vec<Field>>,
    schema: SchemaRef,
    /// Top-level fields `_source` does not keep, with the reason: a scan cannot read them.
    unkept: Arc<BTreeMap<String, String>>,
    estimate: Option<u64>,
}

impl IndexTable {
    pub fn new(
        remote: Arc<Remote>,
        settings: Arc<ScanSettings>,
        index: String,
        fields: Arc<Vec<Field>>,
        schema: SchemaRef,
        unkept: Arc<BTreeMap<String, String>>,
        estimate: Option<u64>,
    ) -> Self {
        Self {
            remote,
            settings,
            index,
            fields,
            schema,
            unkept,
            estimate,
        }
    }

    pub fn remote(&self) -> &Arc<Remote> {
        &self.remote
    }

    /// The index, alias or pattern this table reads.
    pub fn index(&self) -> &str {
        &self.index
    }

    pub fn fields(&self) -> &Vec<Field> {
        &self.fields
    }

    pub fn schema_ref(&self) -> &SchemaRef {
        &self.schema
    }

    /// The field behind column `i`, unless it is a metadata column.
    pub fn field_at(&self, i: usize) -> Option<&Field> {
        self.fields.get(i.checked_sub(METADATA_COLUMNS)?)
    }
}

#[async_trait]
impl RemoteRelation for IndexTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }

    fn settings(&self) -> &SourceSettings {
        &self.remote.settings
    }

    /// When the cluster selects exactly the documents for which it is TRUE (see
    /// [`crate::filter`]).
    fn filters_exactly(&self, expr: &Expr) -> bool {
        filter(self.fields.as_ref(), expr).is_some()
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Vec<usize>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let schema = Arc::new(self.schema.project(&projection)?);
        let columns: Vec<Column> = projection
            .iter()
            .map(|&i| match i {
                0 => Column::Id,
                1 => Column::Index,
                2 => Column::Score,
                i => Column::Field(self.fields[i - METADATA_COLUMNS].clone()),
            })
            .collect();
        for column in &columns {
            if let Column::Field(field) = column
                && let Some(reason) = self.unkept.get(&field.name)
            {
                return Err(SourceError::into_datafusion(
                    &self.remote.settings.name,
                    ConnectorError::InvalidData(format!(
                        "{reason}: polygate reads documents from _source, so it cannot read \
                         column {} (its aggregates, counts, _id and _index still work)",
                        field.name
                    )),
                ));
            }
        }
        let mut search = Search {
            filters: Vec::new(),
            relevance: Vec::new(),
            sort: Vec::new(),
            columns,
            limit,
        };
        let queries = scan_filters(filters, |expr| filter(self.fields.as_ref(), expr))?;
        for (expr, query) in filters.iter().zip(queries) {
            // Full-text conditions select and score; the others only select.
            if has_full_text(expr) {
                search.relevance.push(query);
            } else {
                search.filters.push(query);
            }
        }
        let slices = match (self.estimate, search.limit) {
            (Some(documents), None) => partitions(
                documents,
                self.settings.partition_documents,
                state.config().target_partitions(),
            ),
            _ => 1,
        };
        let flavour = self
            .remote
            .flavour()
            .await
            .map_err(|e| SourceError::into_datafusion(&self.remote.settings.name, e))?;
        let point_in_time = match self.settings.paging {
            Paging::Auto => flavour.sorts_by_shard_doc(),
            Paging::PointInTime => true,
            Paging::Scroll => false,
        };
        Ok(Arc::new(SearchExec::new(IndexSearch {
            remote: Arc::clone(&self.remote),
            settings: Arc::clone(&self.settings),
            index: self.index.clone(),
            schema,
            search,
            layout: Layout {
                slices,
                point_in_time,
            },
            estimate: self.estimate,
        })))
    }
}

/// How a scan's hits are split and ordered.
#[derive(Debug, Clone)]
struct Layout {
    /// Partitions, each a slice of the search.
    slices: usize,
    /// Whether pages come from a point in time (else from a scroll).
    point_in_time: bool,
}

/// Scans an index.
pub(crate) type SearchExec = RemoteScanExec<IndexSearch>;

/// One search per partition, paged.
#[derive(Debug, Clone)]
pub(crate) struct IndexSearch {
    remote: Arc<Remote>,
    settings: Arc<ScanSettings>,
    index: String,
    schema: SchemaRef,
    search: Search,
    layout: Layout,
    estimate: Option<u64>,
}

impl IndexSearch {
    /// This scan with another search, in the same slices.
    fn with_search(&self, search: Search) -> Self {
        Self {
            search,
            ..self.clone()
        }
    }

    /// How the partitions page.
    fn mode(&self) -> Mode {
        match self.search.limit {
            Some(limit) if limit <= self.settings.page_size && self.layout.slices == 1 => {
                Mode::OneRequest
            }
            _ if self.layout.point_in_time => Mode::PointInTime,
            _ => Mode::Scroll,
        }
    }
}

impl RemoteScan for IndexSearch {
    const NAME: &'static str = "SearchExec";

    fn settings(&self) -> &SourceSettings {
        &self.remote.settings
    }

    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn row_estimate(&self) -> Option<usize> {
        self.estimate.map(|rows| rows as usize)
    }

    fn limit(&self) -> Option<usize> {
        self.search.limit
    }

    fn partitions(&self) -> usize {
        self.layout.slices.max(1)
    }

    fn fmt_native(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "source={}, index={}",
            self.remote.settings.name, self.index
        )?;
        let mode = self.mode();
        write!(f, ", paging={mode}")?;
        if self.layout.slices > 1 {
            write!(f, ", slices={}", self.layout.slices)?;
        }
        let size = self
            .search
            .limit
            .unwrap_or(usize::MAX)
            .min(self.settings.page_size);
        write!(f, ", body={}", Value::Object(self.search.body(mode, size)))
    }

    fn with_limit(&self, limit: Option<usize>) -> Option<Self> {
        Some(self.with_search(Search {
            limit,
            ..self.search.clone()
        }))
    }

    /// When the cluster sorts exactly as DataFusion (see [`sort_for`]).
    fn with_sort(&self, order: &[PhysicalSortExpr]) -> Option<Self> {
        let sort = sort_for(&self.search, order)?;
        Some(self.with_search(Search {
            sort,
            ..self.search.clone()
        }))
    }

    fn open(
        &self,
        partition: usize,
        _context: &Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let slices = self.layout.slices;
        let pager = Pager {
            remote: Arc::clone(&self.remote),
            index: self.index.clone(),
            search: self.search.clone(),
            page_size: self.settings.page_size,
            mode: self.mode(),
            slice: (slices > 1).then_some((partition, slices)),
        };
        let fields: Vec<Field> = self
            .search
            .columns
            .iter()
            .filter_map(|c| match c {
                Column::Field(f) => Some(f.clone()),
                _ => None,
            })
            .collect();
        let reader = PageReader {
            source: self.remote.settings.name.clone(),
            schema: Arc::clone(&self.schema),
            columns: self.search.columns.clone(),
            scores: self.search.scores(),
            decoder: RecordDecoder::new("", &fields),
        };
        // The next page is fetched while this one decodes; dropping the stream aborts the
        // fetching task, whose context guard then closes the point in time or scroll.
        let pages = Prefetched::spawn(|sender| pager.run(sender));
        let stream =
            futures::stream::try_unfold((reader, pages), |(mut reader, mut pages)| async move {
                match pages.next().await {
                    Some(Ok(page)) => {
                        let batch = reader.decode(page)?;
                        Ok(Some((batch, (reader, pages))))
                    }
                    Some(Err(e)) => Err(e),
                    None => Ok(None),
                }
            });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            stream,
        )))
    }
}

/// One page of hits, as the cluster sent it.
#[derive(Debug, Deserialize)]
struct SearchResponse {
    #[serde(default)]
    pit_id: Option<String>,
    #[serde(rename = "_scroll_id", default)]
    scroll_id: Option<String>,
    #[serde(default)]
    timed_out: bool,
    #[serde(rename = "_shards", default)]
    shards: Option<Shards>,
    hits: Hits,
}

#[derive(Debug, Deserialize)]
struct Shards {
    #[serde(default)]
    failed: u64,
    #[serde(default)]
    failures: Vec<Value>,
}

#[derive(Debug, Deserialize)]
struct Hits {
    hits: Vec<Hit>,
}

#[derive(Debug, Deserialize)]
struct Hit {
    #[serde(rename = "_id")]
    id: String,
    #[serde(rename = "_index")]
    index: String,
    #[serde(rename = "_score", default)]
    score: Option<f32>,
    #[serde(rename = "_source", default)]
    source: Option<Map<String, Value>>,
    #[serde(default)]
    sort: Option<Vec<Value>>,
}

/// A search context to close when the scan ends or is dropped.
#[derive(Debug)]
enum Context {
    PointInTime(String),
    Scroll(String),
}

/// Closes its context when dropped, in the background: a scan cancelled or stopped by a
/// LIMIT leaves nothing open on the cluster.
struct ContextGuard {
    remote: Arc<Remote>,
    flavour: Flavour,
    context: Option<Context>,
}

impl ContextGuard {
    fn request(&self) -> Option<(&'static str, Value)> {
        match self.context.as_ref()? {
            Context::PointInTime(id) => Some(self.flavour.close_point_in_time(id)),
            Context::Scroll(id) => Some(("/_search/scroll", json!({ "scroll_id": [id] }))),
        }
    }

    async fn close(mut self) -> Result<(), ConnectorError> {
        if let Some((path, body)) = self.request() {
            self.context = None;
            self.remote
                .request(Method::DELETE, path, Some(&body))
                .await?;
        }
        Ok(())
    }
}

impl Drop for ContextGuard {
    fn drop(&mut self) {
        let Some((path, body)) = self.request() else {
            return;
        };
        let remote = Arc::clone(&self.remote);
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move {
                if let Err(error) = remote.request(Method::DELETE, path, Some(&body)).await {
                    tracing::warn!(source = %remote.settings.name, %error, "closing a search context");
                }
            });
        }
    }
}

/// Fetches the pages of one partition's search, in order.
struct Pager {
    remote: Arc<Remote>,
    index: String,
    search: Search,
    page_size: usize,
    mode: Mode,
    slice: Option<(usize, usize)>,
}

impl Pager {
    fn error(&self, error: ConnectorError) -> DataFusionError {
        SourceError::into_datafusion(&self.remote.settings.name, error)
    }

    /// Sends every page to `pages`, closing the search context at the end.
    async fn run(self, pages: mpsc::Sender<Result<Vec<Hit>>>) {
        if let Err(error) = self.pages(&pages).await {
            let _ = pages.send(Err(error)).await;
        }
    }

    async fn pages(&self, pages: &mpsc::Sender<Result<Vec<Hit>>>) -> Result<()> {
        if self.mode == Mode::OneRequest {
            let limit = self.search.limit.unwrap_or(self.page_size);
            let body = self.search.body(Mode::OneRequest, limit);
            let path = format!("/{}/_search", path_segment(&self.index));
            let page = self.send(&path, &Value::Object(body)).await?;
            let _ = pages.send(Ok(page.hits.hits)).await;
            return Ok(());
        }
        let flavour = self.remote.flavour().await.map_err(|e| self.error(e))?;
        let point_in_time = self.mode == Mode::PointInTime;
        let mut left = self.search.limit.unwrap_or(usize::MAX);
        let mut body = self.search.body(self.mode, self.page_size.min(left));
        if let Some((id, max)) = self.slice {
            body.insert("slice".into(), json!({ "id": id, "max": max }));
        }
        // The point in time, or the scroll context the first page opens, is taken into its
        // guard even if the scan is dropped while the cluster makes it.
        let remote = Arc::clone(&self.remote);
        let (mut guard, mut page) = if point_in_time {
            let (path, key) = flavour.open_point_in_time(&self.index, KEEP_ALIVE);
            let guard = open_detached(async move {
                let opened = remote.json(Method::POST, &path, None).await?;
                let id = opened.get(key).and_then(Value::as_str).ok_or_else(|| {
                    ConnectorError::InvalidData(format!("opening a point in time gave no {key}"))
                })?;
                Ok(ContextGuard {
                    context: Some(Context::PointInTime(id.to_owned())),
                    remote,
                    flavour,
                })
            })
            .await?
            .map_err(|e| self.error(e))?;
            if let Some(Context::PointInTime(id)) = &guard.context {
                body.insert("pit".into(), json!({ "id": id, "keep_alive": KEEP_ALIVE }));
            }
            let page = self.send("/_search", &Value::Object(body.clone())).await?;
            (guard, page)
        } else {
            let path = format!("/{}/_search?scroll={KEEP_ALIVE}", path_segment(&self.index));
            let index = self.index.clone();
            let first = Value::Object(body.clone());
            open_detached(async move {
                let mut page = search(&remote, &index, &path, &first).await?;
                let guard = ContextGuard {
                    context: page.scroll_id.take().map(Context::Scroll),
                    remote,
                    flavour,
                };
                Ok::<_, DataFusionError>((guard, page))
            })
            .await??
        };
        loop {
            if let Some(id) = page.pit_id.take() {
                body.insert("pit".into(), json!({ "id": id, "keep_alive": KEEP_ALIVE }));
                guard.context = Some(Context::PointInTime(id));
            }
            if let Some(id) = page.scroll_id.take() {
                guard.context = Some(Context::Scroll(id));
            }
            let mut hits = page.hits.hits;
            let full = hits.len() >= self.page_size.min(left);
            hits.truncate(left);
            left -= hits.len();
            let after = hits.last().and_then(|hit| hit.sort.clone());
            if !hits.is_empty() && pages.send(Ok(hits)).await.is_err() {
                // The scan was dropped: the guard closes the context.
                return Ok(());
            }
            if !full || left == 0 {
                break;
            }
            page = if point_in_time {
                let Some(after) = after else {
                    return Err(self.error(ConnectorError::InvalidData(
                        "a hit of a point-in-time search has no sort values".into(),
                    )));
                };
                body.insert("search_after".into(), Value::Array(after));
                body.insert("size".into(), Value::from(self.page_size.min(left)));
                self.send("/_search", &Value::Object(body.clone())).await?
            } else {
                let Some(Context::Scroll(id)) = &guard.context else {
                    return Err(self.error(ConnectorError::InvalidData(
                        "a scroll search gave no scroll id".into(),
                    )));
                };
                let next = json!({ "scroll": KEEP_ALIVE, "scroll_id": id });
                self.send("/_search/scroll", &next).await?
            };
        }
        guard.close().await.map_err(|e| self.error(e))
    }

    /// Sends one search of the partition's index and reads its page.
    async fn send(&self, path: &str, body: &Value) -> Result<SearchResponse> {
        search(&self.remote, &self.index, path, body).await
    }
}

/// Sends one search of `index` and reads its page; shard failures and timeouts are errors,
/// never fewer rows.
async fn search(remote: &Remote, index: &str, path: &str, body: &Value) -> Result<SearchResponse> {
    let error = |e| SourceError::into_datafusion(&remote.settings.name, e);
    let bytes = remote
        .request(Method::POST, path, Some(body))
        .await
        .map_err(error)?;
    let page: SearchResponse = serde_json::from_slice(&bytes).map_err(|e| {
        error(ConnectorError::InvalidData(format!(
            "unreadable search answer: {e}"
        )))
    })?;
    if page.timed_out {
        return Err(error(ConnectorError::Unavailable(format!(
            "the search of {index} timed out"
        ))));
    }
    if let Some(shards) = &page.shards
        && shards.failed > 0
    {
        let first = shards
            .failures
            .first()
            .map(|f| f.to_string())
            .unwrap_or_default();
        return Err(error(ConnectorError::Unavailable(format!(
            "{} shard(s) of {index} failed: {first}",
            shards.failed
        ))));
    }
    Ok(page)
}

/// Decodes pages of hits into record batches.
struct PageReader {
    source: String,
    schema: SchemaRef,
    columns: Vec<Column>,
    /// Whether `_score` reads the hits' scores (else it is NULL).
    scores: bool,
    decoder: RecordDecoder,
}

impl PageReader {
    fn decode(&mut self, hits: Vec<Hit>) -> Result<RecordBatch> {
        let mut ids = StringBuilder::new();
        let mut indices = StringBuilder::new();
        let mut scores = Float32Builder::with_capacity(hits.len());
        let empty = Map::new();
        for hit in &hits {
            ids.append_value(&hit.id);
            indices.append_value(&hit.index);
            scores.append_option(hit.score.filter(|_| self.scores));
            self.decoder
                .append(hit.source.as_ref().unwrap_or(&empty))
                .map_err(|e| {
                    SourceError::into_datafusion(
                        &self.source,
                        ConnectorError::InvalidData(format!(
                            "index {}, document _id {}, field {}: {}",
                            hit.index, hit.id, e.path, e.message
                        )),
                    )
                })?;
        }
        let mut fields = self.decoder.finish().into_iter();
        let (ids, indices, scores): (ArrayRef, ArrayRef, ArrayRef) = (
            Arc::new(ids.finish()),
            Arc::new(indices.finish()),
            Arc::new(scores.finish()),
        );
        let mut arrays = Vec::with_capacity(self.columns.len());
        for column in &self.columns {
            arrays.push(match column {
                Column::Id => Arc::clone(&ids),
                Column::Index => Arc::clone(&indices),
                Column::Score => Arc::clone(&scores),
                Column::Field(_) => fields.next().ok_or_else(|| {
                    DataFusionError::Internal("fewer decoded fields than columns".into())
                })?,
            });
        }
        let options = RecordBatchOptions::new().with_row_count(Some(hits.len()));
        Ok(RecordBatch::try_new_with_options(
            Arc::clone(&self.schema),
            arrays,
            &options,
        )?)
    }
}
