//! Scanning a collection: a table provider, and an execution plan that streams an aggregation
//! pipeline's raw batches into Arrow record batches.

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, RecordBatchOptions};
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::arrow::record_batch::RecordBatch;
use datafusion::catalog::Session;
use datafusion::common::ScalarValue;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::ScalarFunctionExpr;
use datafusion::physical_expr::{PhysicalExpr, PhysicalSortExpr};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::expressions::{Column, Literal};
use datafusion::physical_plan::projection::ProjectionExec;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use futures::StreamExt;
use mongodb::bson::{Bson, Document, RawBsonRef, doc};
use mongodb::raw_batch_cursor::{RawBatch, RawBatchCursor};
use polygate_connector_core::prefetch::{Prefetched, open_detached};
use polygate_connector_core::remote_scan::{RemoteRelation, RemoteScan, RemoteScanExec};
use polygate_connector_core::scan::{partitions, scan_filters};
use polygate_connector_core::{ConnectorError, SourceError, SourceSettings, TableRef};

use crate::decode::{RecordDecoder, extended_json};
use crate::filter::{filter, safe_name};
use crate::order::{SortKey, is_flag, sort_stage};
use crate::query::Pipeline;
use crate::remote::Remote;
use crate::schema::CollectionSchema;
use crate::types::FieldType;

/// A collection as a relation.
#[derive(Debug)]
pub(crate) struct MongoTable {
    remote: Arc<Remote>,
    collection: TableRef,
    schema: Arc<CollectionSchema>,
    /// `estimatedDocumentCount`, for join ordering and partitioning.
    estimate: Option<u64>,
}

impl MongoTable {
    pub(crate) fn new(
        remote: Arc<Remote>,
        collection: TableRef,
        schema: Arc<CollectionSchema>,
        estimate: Option<u64>,
    ) -> Self {
        Self {
            remote,
            collection,
            schema,
            estimate,
        }
    }

    pub(crate) fn remote(&self) -> &Arc<Remote> {
        &self.remote
    }

    pub(crate) fn collection(&self) -> &TableRef {
        &self.collection
    }

    pub(crate) fn collection_schema(&self) -> &Arc<CollectionSchema> {
        &self.schema
    }

    /// The `_id` ranges a whole-collection scan is split into: none for small collections,
    /// limited scans, and collections whose sampled `_id`s are not all ObjectIds.
    async fn ranges(&self, state: &dyn Session) -> Result<Vec<Document>> {
        let Some(count) = self.estimate else {
            return Ok(Vec::new());
        };
        let parts = partitions(
            count,
            self.remote.partition_documents,
            state.config().target_partitions(),
        );
        if parts < 2 {
            return Ok(Vec::new());
        }
        let ids = self
            .remote
            .sample_ids(&self.collection, parts * 10)
            .await
            .map_err(|e| SourceError::into_datafusion(&self.remote.settings.name, e))?;
        Ok(id_ranges(ids, parts))
    }
}

/// Splits a sample of `_id`s into `parts` ranges of ObjectIds covering every `_id`: the first
/// also takes every `_id` that is not an ObjectId, so no document is missed whatever the
/// sample saw.
fn id_ranges(ids: Vec<Bson>, parts: usize) -> Vec<Document> {
    let mut ids: Vec<_> = ids
        .into_iter()
        .filter_map(|id| match id {
            Bson::ObjectId(id) => Some(id),
            _ => None,
        })
        .collect();
    ids.sort();
    ids.dedup();
    let mut bounds: Vec<_> = (1..parts)
        .filter_map(|i| ids.get(i * ids.len() / parts).copied())
        .collect();
    bounds.dedup();
    let (Some(&first), Some(&last)) = (bounds.first(), bounds.last()) else {
        return Vec::new();
    };
    let mut ranges = vec![doc! { "$or": [
        { "_id": { "$lt": first } },
        { "_id": { "$not": { "$type": "objectId" } } },
    ] }];
    for (&low, &high) in bounds.iter().zip(bounds.iter().skip(1)) {
        ranges.push(doc! { "_id": { "$gte": low, "$lt": high } });
    }
    ranges.push(doc! { "_id": { "$gte": last } });
    ranges
}

#[async_trait]
impl RemoteRelation for MongoTable {
    fn schema(&self) -> SchemaRef {
        Arc::clone(self.schema.arrow())
    }

    fn settings(&self) -> &SourceSettings {
        &self.remote.settings
    }

    /// When MongoDB selects exactly the documents for which it is TRUE (see
    /// [`crate::filter`]).
    fn filters_exactly(&self, expr: &Expr) -> bool {
        filter(self.schema.as_ref(), expr).is_some()
    }

    async fn scan(
        &self,
        state: &dyn Session,
        indices: Vec<usize>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        let projected = self.schema.project(&indices).ok_or_else(|| {
            DataFusionError::Internal(format!(
                "projection {indices:?} is outside the {} columns of collection {}",
                self.schema.columns().len(),
                self.collection
            ))
        })?;
        let mut conditions = scan_filters(filters, |expr| filter(self.schema.as_ref(), expr))?;
        let scan = ScanQuery {
            filter: match conditions.len() {
                0 => None,
                1 => conditions.pop(),
                _ => Some(doc! { "$and": conditions }),
            },
            sort: None,
            limit,
            columns: projected
                .columns()
                .iter()
                .map(|(name, field)| ScanColumn::top_level(name, field))
                .collect(),
        };
        let ranges = if limit.is_none() {
            self.ranges(state).await?
        } else {
            Vec::new()
        };
        Ok(Arc::new(MongoScanExec::new(MongoScan::new(
            Arc::clone(&self.remote),
            self.collection.clone(),
            Arc::clone(projected.arrow()),
            Reading::Scan(Box::new(scan)),
            ranges,
            self.estimate,
            state.config().batch_size(),
        ))))
    }
}

/// A scan of one collection's fields: `$match`, `$sort`, `$limit`, `$project`.
#[derive(Debug, Clone)]
pub(crate) struct ScanQuery {
    filter: Option<Document>,
    /// The `$sort` and, for keys whose NULLs go where MongoDB would not put them, the
    /// `$addFields` of their null flags.
    sort: Option<(Document, Document)>,
    limit: Option<usize>,
    /// The fields read, in output order.
    columns: Vec<ScanColumn>,
}

/// A field a scan reads: a top-level field, or a nested one a projection asked for.
#[derive(Debug, Clone)]
struct ScanColumn {
    /// The field's name in the documents the pipeline returns.
    key: String,
    /// Its dotted path in the collection's documents; the key for top-level fields.
    path: String,
    field: FieldType,
}

impl ScanColumn {
    fn top_level(name: &str, field: &FieldType) -> Self {
        Self {
            key: name.to_owned(),
            path: name.to_owned(),
            field: field.clone(),
        }
    }

    fn nested(&self) -> bool {
        self.key != self.path
    }

    /// Whether `$sort` and `$type` can address the field by its path (nested paths are made
    /// of safe names only).
    fn addressable(&self) -> bool {
        self.nested() || safe_name(&self.path)
    }
}

/// The prefix of the keys nested fields are projected to; no column may have such a name.
const NESTED_KEY: &str = "__polygate_path_";

impl ScanQuery {
    fn pipeline(&self) -> Pipeline {
        let mut stages = Vec::new();
        if let Some(filter) = &self.filter {
            stages.push(doc! { "$match": filter.clone() });
        }
        if let Some((flags, sort)) = &self.sort {
            if !flags.is_empty() {
                stages.push(doc! { "$addFields": flags.clone() });
            }
            stages.push(doc! { "$sort": sort.clone() });
        }
        if let Some(limit) = self.limit {
            stages.push(doc! { "$limit": limit as i64 });
        }
        // Names the query language cannot project are read from whole documents. `_id` is
        // always read: errors name the document they found.
        if self.columns.iter().all(|c| safe_name(&c.key)) {
            let mut project = doc! { "_id": 1 };
            for column in &self.columns {
                if column.nested() {
                    project.insert(&column.key, format!("${}", column.path));
                } else {
                    project.insert(&column.key, 1);
                }
            }
            stages.push(doc! { "$project": project });
        }
        Pipeline { stages }
    }

    /// The flags and `$sort` for `order`, when MongoDB orders exactly as DataFusion (see
    /// [`crate::order`]).
    fn sort_for(&self, order: &[PhysicalSortExpr]) -> Option<(Document, Document)> {
        if self.columns.iter().any(|c| is_flag(&c.key)) {
            return None;
        }
        let keys = order
            .iter()
            .map(|key| {
                let column = key.expr.downcast_ref::<Column>()?;
                let scan_column = self.columns.get(column.index())?;
                // A nested field sorts by its path, before the projection names it.
                scan_column.addressable().then_some(SortKey {
                    path: &scan_column.path,
                    field: &scan_column.field,
                    descending: key.options.descending,
                    nulls_first: key.options.nulls_first,
                })
            })
            .collect::<Option<Vec<_>>>()?;
        sort_stage(keys)
    }
}

/// What a scan reads.
#[derive(Debug, Clone)]
pub(crate) enum Reading {
    /// Fields of a collection.
    Scan(Box<ScanQuery>),
    /// The output of a compiled sub-plan: fields `c0`, `c1`, ... typed `columns`.
    SubPlan {
        pipeline: Pipeline,
        columns: Vec<FieldType>,
        /// For an aggregate without GROUP BY, the row to return when no document matched
        /// (MongoDB returns none; SQL returns one): `Some(0)` for counts, `None` for NULL.
        empty_row: Option<Vec<Option<i64>>>,
    },
}

impl Reading {
    fn pipeline(&self) -> Pipeline {
        match self {
            Self::Scan(scan) => scan.pipeline(),
            Self::SubPlan { pipeline, .. } => pipeline.clone(),
        }
    }

    fn decoder(&self) -> RecordDecoder {
        match self {
            Self::Scan(scan) => {
                RecordDecoder::new("", scan.columns.iter().map(|c| (c.key.as_str(), &c.field)))
            }
            Self::SubPlan { columns, .. } => {
                let names: Vec<String> = (0..columns.len()).map(|i| format!("c{i}")).collect();
                RecordDecoder::new("", names.iter().map(String::as_str).zip(columns.iter()))
            }
        }
    }
}

/// The physical scan of a collection, or of a compiled sub-plan.
pub(crate) type MongoScanExec = RemoteScanExec<MongoScan>;

/// One aggregation pipeline per partition, streamed in raw batches. EXPLAIN shows the
/// pipeline with values elided.
#[derive(Debug, Clone)]
pub(crate) struct MongoScan {
    remote: Arc<Remote>,
    collection: TableRef,
    schema: SchemaRef,
    reading: Reading,
    /// The `_id` ranges of a parallel scan, one per partition; empty for one partition.
    ranges: Vec<Document>,
    estimate: Option<u64>,
    batch_size: usize,
}

impl MongoScan {
    pub(crate) fn new(
        remote: Arc<Remote>,
        collection: TableRef,
        schema: SchemaRef,
        reading: Reading,
        ranges: Vec<Document>,
        estimate: Option<u64>,
        batch_size: usize,
    ) -> Self {
        Self {
            remote,
            collection,
            schema,
            reading,
            ranges,
            estimate,
            batch_size,
        }
    }

    fn scan(&self) -> Option<&ScanQuery> {
        match &self.reading {
            Reading::Scan(scan) => Some(scan),
            Reading::SubPlan { .. } => None,
        }
    }

    /// This scan reading `scan`: a sorted or limited scan is one pipeline.
    fn whole(&self, scan: ScanQuery) -> Self {
        Self {
            reading: Reading::Scan(Box::new(scan)),
            ranges: Vec::new(),
            ..self.clone()
        }
    }
}

impl RemoteScan for MongoScan {
    const NAME: &'static str = "MongoScanExec";

    fn settings(&self) -> &SourceSettings {
        &self.remote.settings
    }

    fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    fn row_estimate(&self) -> Option<usize> {
        // A sub-plan's rows are not the collection's.
        self.scan().and(self.estimate).map(|rows| rows as usize)
    }

    fn limit(&self) -> Option<usize> {
        self.scan().and_then(|scan| scan.limit)
    }

    fn partitions(&self) -> usize {
        self.ranges.len().max(1)
    }

    fn fmt_native(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "source={}, collection={}",
            self.remote.settings.name, self.collection
        )?;
        if !self.ranges.is_empty() {
            write!(f, ", partitions={} (_id ranges)", self.ranges.len())?;
        }
        write!(f, ", pipeline={}", self.reading.pipeline().describe())
    }

    fn with_limit(&self, limit: Option<usize>) -> Option<Self> {
        let scan = self.scan()?;
        Some(self.whole(ScanQuery {
            limit,
            ..scan.clone()
        }))
    }

    /// When MongoDB orders exactly as DataFusion (see [`ScanQuery::sort_for`]).
    fn with_sort(&self, order: &[PhysicalSortExpr]) -> Option<Self> {
        let scan = self.scan()?;
        let sort = scan.sort_for(order)?;
        Some(self.whole(ScanQuery {
            sort: Some(sort),
            ..scan.clone()
        }))
    }

    /// Projections of nested fields (`addr['city']`) read only those fields: the pipeline's
    /// `$project` names each by its path, and the projection goes.
    fn with_projection(&self, projection: &ProjectionExec) -> Option<Self> {
        let scan = self.scan()?;
        if !scan.columns.iter().all(|c| safe_name(&c.key))
            || scan.columns.iter().any(|c| c.key.starts_with(NESTED_KEY))
        {
            return None;
        }
        let mut columns = Vec::new();
        let mut any_nested = false;
        for (i, item) in projection.expr().iter().enumerate() {
            let (index, names) = field_access(&item.expr)?;
            let base = scan.columns.get(index)?;
            if names.is_empty() {
                columns.push(base.clone());
                continue;
            }
            let mut field = &base.field;
            let mut path = base.path.clone();
            for name in names {
                let FieldType::Document(fields) = field else {
                    return None;
                };
                let inner = fields.get(name)?;
                if !safe_name(name) {
                    return None;
                }
                field = inner;
                path = format!("{path}.{name}");
            }
            any_nested = true;
            columns.push(ScanColumn {
                key: format!("{NESTED_KEY}{i}"),
                path,
                field: field.clone(),
            });
        }
        if !any_nested {
            return None;
        }
        let schema = projection.schema();
        for (field, column) in schema.fields().iter().zip(&columns) {
            if field.data_type() != &column.field.arrow_type() {
                return None;
            }
        }
        Some(Self {
            schema,
            reading: Reading::Scan(Box::new(ScanQuery {
                columns,
                ..scan.clone()
            })),
            ..self.clone()
        })
    }

    fn open(
        &self,
        partition: usize,
        _context: &Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let stages = self
            .reading
            .pipeline()
            .for_range(self.ranges.get(partition));
        let empty_row = match &self.reading {
            Reading::SubPlan { empty_row, .. } => empty_row.clone(),
            Reading::Scan(_) => None,
        };
        let reader = BatchReader {
            remote: Arc::clone(&self.remote),
            collection: self.collection.clone(),
            schema: Arc::clone(&self.schema),
            decoder: self.reading.decoder(),
            rows: 0,
            total: 0,
            batch_size: self.batch_size,
            empty_row,
        };
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.schema),
            reader.stream(stages),
        )))
    }
}

/// The column and the field names of `get_field(column, name, ...)` (nested or not), or of
/// a bare column (no names).
fn field_access(expr: &Arc<dyn PhysicalExpr>) -> Option<(usize, Vec<&str>)> {
    if let Some(column) = expr.downcast_ref::<Column>() {
        return Some((column.index(), Vec::new()));
    }
    let function = expr.downcast_ref::<ScalarFunctionExpr>()?;
    if function.name() != "get_field" {
        return None;
    }
    let (base, names) = function.args().split_first()?;
    let (index, mut path) = field_access(base)?;
    for name in names {
        match name.downcast_ref::<Literal>()?.value() {
            ScalarValue::Utf8(Some(name)) => path.push(name.as_str()),
            _ => return None,
        }
    }
    Some((index, path))
}

/// A cursor's batches, read one ahead by a task of the scan's own: the server prepares the
/// next batch while this one decodes. Dropping the result aborts the task, whose drop of the
/// cursor kills it on the server.
fn prefetch(mut cursor: RawBatchCursor) -> Prefetched<mongodb::error::Result<RawBatch>> {
    Prefetched::spawn(|sender| async move {
        while let Some(batch) = cursor.next().await {
            let failed = batch.is_err();
            if sender.send(batch).await.is_err() || failed {
                break;
            }
        }
    })
}

/// Runs the pipeline's opening `aggregate` to its answer even when the scan is dropped first
/// (a LIMIT met, a cancel, a client gone): only the driver's cursor, once it exists, can kill
/// the server's. The wait is bounded by `timeout`.
async fn open_cursor(
    collection: mongodb::Collection<Document>,
    stages: Vec<Document>,
    batch_size: u32,
    timeout: std::time::Duration,
) -> std::result::Result<RawBatchCursor, ConnectorError> {
    let opening = open_detached(async move {
        tokio::time::timeout(
            timeout,
            collection.aggregate(stages).batch_size(batch_size).batch(),
        )
        .await
    });
    match opening.await? {
        Ok(Ok(cursor)) => Ok(cursor),
        Ok(Err(e)) => Err(crate::remote::driver_error(&e)),
        Err(_) => Err(ConnectorError::Unavailable(format!(
            "no answer to the pipeline's opening command within {} s (response_timeout_secs)",
            timeout.as_secs()
        ))),
    }
}

/// Decodes a pipeline's raw batches into record batches of about `batch_size` rows.
struct BatchReader {
    remote: Arc<Remote>,
    collection: TableRef,
    schema: SchemaRef,
    decoder: RecordDecoder,
    rows: usize,
    total: usize,
    batch_size: usize,
    empty_row: Option<Vec<Option<i64>>>,
}

impl BatchReader {
    fn stream(
        self,
        stages: Vec<Document>,
    ) -> impl futures::Stream<Item = Result<RecordBatch>> + Send + 'static {
        let source = self.remote.settings.name.clone();
        futures::stream::once(async move {
            let collection = self
                .remote
                .database(&self.collection.namespace)
                .await
                .map_err(|e| SourceError::into_datafusion(&source, e))?
                .collection::<Document>(&self.collection.name);
            let cursor = open_cursor(
                collection,
                stages,
                self.remote.batch_size,
                self.remote.settings.response_timeout,
            )
            .await
            .map_err(|e| SourceError::into_datafusion(&source, e))?;
            Ok::<_, DataFusionError>(futures::stream::try_unfold(
                (self, prefetch(cursor), false),
                |(mut reader, mut batches, done)| async move {
                    if done {
                        return Ok(None);
                    }
                    loop {
                        match batches.next().await {
                            Some(batch) => {
                                let batch = batch
                                    .map_err(|e| reader.error(crate::remote::driver_error(&e)))?;
                                let documents = batch
                                    .doc_slices()
                                    .map_err(|e| reader.error(crate::remote::driver_error(&e)))?;
                                for document in documents {
                                    let document = document.map_err(|e| {
                                        reader.error(ConnectorError::InvalidData(format!(
                                            "malformed BSON from the server: {e}"
                                        )))
                                    })?;
                                    let RawBsonRef::Document(document) = document else {
                                        continue;
                                    };
                                    reader
                                        .decoder
                                        .append(document)
                                        .map_err(|e| reader.decode_error(document, &e))?;
                                    reader.rows += 1;
                                }
                                if reader.rows >= reader.batch_size {
                                    let batch = reader.finish()?;
                                    return Ok(Some((batch, (reader, batches, false))));
                                }
                            }
                            None => {
                                if reader.rows == 0
                                    && reader.total == 0
                                    && let Some(batch) = reader.empty_batch()?
                                {
                                    return Ok(Some((batch, (reader, batches, true))));
                                }
                                if reader.rows == 0 {
                                    return Ok(None);
                                }
                                let batch = reader.finish()?;
                                return Ok(Some((batch, (reader, batches, true))));
                            }
                        }
                    }
                },
            ))
        })
        .map(|result| match result {
            Ok(stream) => stream.boxed(),
            Err(e) => futures::stream::once(async move { Err(e) }).boxed(),
        })
        .flatten()
    }

    fn error(&self, error: ConnectorError) -> DataFusionError {
        SourceError::into_datafusion(&self.remote.settings.name, error)
    }

    fn decode_error(
        &self,
        document: &mongodb::bson::RawDocument,
        error: &crate::decode::DecodeError,
    ) -> DataFusionError {
        let id = document
            .get("_id")
            .ok()
            .flatten()
            .map_or_else(|| "?".to_owned(), extended_json);
        self.error(ConnectorError::InvalidData(format!(
            "collection {}, document _id {id}, field {}: {}; declare the field's type in \
             [sources.{}.collections.{}.columns] or raise sample_size",
            self.collection,
            error.path,
            error.message,
            self.remote.settings.name,
            self.collection.name
        )))
    }

    fn finish(&mut self) -> Result<RecordBatch> {
        let columns: Vec<ArrayRef> = self.decoder.finish();
        let options = RecordBatchOptions::new().with_row_count(Some(self.rows));
        self.total += self.rows;
        self.rows = 0;
        Ok(RecordBatch::try_new_with_options(
            Arc::clone(&self.schema),
            columns,
            &options,
        )?)
    }

    /// SQL's one row of an aggregate over no rows.
    fn empty_batch(&mut self) -> Result<Option<RecordBatch>> {
        let Some(values) = self.empty_row.take() else {
            return Ok(None);
        };
        let mut document = mongodb::bson::RawDocumentBuf::new();
        for (i, value) in values.iter().enumerate() {
            if let Some(v) = value {
                document.append(format!("c{i}"), *v);
            }
        }
        self.decoder
            .append(&document)
            .map_err(|e| DataFusionError::Internal(format!("empty aggregate row: {e:?}")))?;
        self.rows = 1;
        self.finish().map(Some)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::oid::ObjectId;

    #[test]
    fn id_ranges_cover_every_id_once() {
        let ids: Vec<Bson> = (0..100u8)
            .map(|i| {
                let mut bytes = [0u8; 12];
                bytes[11] = i;
                Bson::ObjectId(ObjectId::from_bytes(bytes))
            })
            .collect();
        let ranges = id_ranges(ids, 4);
        assert_eq!(ranges.len(), 4);
        assert!(ranges[0].get_array("$or").is_ok());
        assert!(id_ranges(vec![Bson::Int32(1), Bson::Int32(2)], 2).is_empty());
        // A sample with a few other `_id`s still splits the ObjectIds.
        let mut mixed: Vec<Bson> = (0..20u8)
            .map(|i| {
                let mut bytes = [0u8; 12];
                bytes[11] = i;
                Bson::ObjectId(ObjectId::from_bytes(bytes))
            })
            .collect();
        mixed.push(Bson::String("text".into()));
        assert_eq!(id_ranges(mixed, 2).len(), 2);
    }
}
