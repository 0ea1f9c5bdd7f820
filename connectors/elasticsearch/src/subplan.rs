//! Aggregates over one index, run by the cluster: the single-source sub-plans core's rule
//! offers, compiled into a `_count` request or a search with aggregations.
//!
//! What is compiled, and why it is exact:
//! - `GROUP BY` on single-valued keyword, integer, boolean and date fields (and text through
//!   its plain keyword sub-field): a `composite` aggregation of `terms` sources, paged by
//!   `after_key`, whose `missing_bucket` puts missing and null values in one group, as SQL
//!   groups NULLs.
//! - `count(*)`: each bucket's `doc_count`, or with no GROUP BY `_count` (alone) or the exact
//!   `hits.total`.
//! - `count(x)`: `value_count`, on the same fields as GROUP BY: exact, since every value is
//!   indexed unchanged and the field holds one value per document.
//! - `min`, `max` of byte, short and integer fields and of millisecond dates: the cluster
//!   answers in doubles, which hold every such value exactly.
//! - `sum` and `avg` of byte, short and integer fields: `sum` is added up in doubles, exact
//!   while every partial sum is below 2^53. The request also asks for `min`, `max` and
//!   `value_count`, and a bucket whose largest magnitude times its count could pass 2^53 is
//!   an error, never a rounded sum. `avg` is that sum divided by the count, as DataFusion
//!   divides.
//!
//! Not compiled: `count(DISTINCT x)` (the `cardinality` aggregation is approximate), sums and
//! extremes of longs, unsigned longs and floating-point fields (doubles cannot hold them, or
//! summation order changes their rounding), anything over lists, and every other function.
//! A sub-plan holding any of them is declined and DataFusion computes it from a scan.

use std::fmt;
use std::sync::Arc;

use datafusion::arrow::array::{RecordBatch, RecordBatchOptions};
use datafusion::arrow::datatypes::{DataType, SchemaRef, TimeUnit};
use datafusion::catalog::Session;
use datafusion::common::{DFSchemaRef, ScalarValue};
use datafusion::datasource::source_as_provider;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::{SendableRecordBatchStream, TaskContext};
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::{Expr, LogicalPlan};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_plan::stream::RecordBatchStreamAdapter;
use polygate_connector_core::prefetch::Prefetched;
use polygate_connector_core::remote_scan::{RemoteScan, RemoteScanExec, RemoteTable};
use polygate_connector_core::subplan::{NativeQuery, SubPlanSource, returns_planned_types};
use polygate_connector_core::{ConnectorError, SourceError, SourceSettings};
use reqwest::Method;
use serde_json::{Map, Value, json};

use crate::filter::{FieldPath, filter, safe_name};
use crate::remote::{Remote, path_segment};
use crate::scan::IndexTable;
use crate::schema::{Field, IntegerWidth, Kind};

/// Buckets per composite page.
const BUCKETS_PER_PAGE: usize = 1_000;

/// The largest magnitude a double holds every integer up to.
const EXACT_IN_DOUBLE: f64 = 9_007_199_254_740_992.0;

impl SubPlanSource for Remote {
    fn settings(&self) -> &SourceSettings {
        &self.settings
    }

    fn compile(&self, plan: &LogicalPlan) -> Option<Arc<dyn NativeQuery>> {
        let compiled = compile(plan)?;
        let types = compiled
            .outputs
            .iter()
            .map(|output| output.data_type.clone());
        if !returns_planned_types(plan, types) {
            return None;
        }
        Some(Arc::new(CompiledAggregate {
            schema: Arc::new(plan.schema().as_arrow().clone()),
            ..compiled
        }))
    }
}

/// A column of the relation below the aggregate.
#[derive(Debug, Clone)]
enum Input {
    /// A field of the index.
    Field(Field),
    /// A metadata column, which nothing here aggregates.
    Metadata,
}

/// The scan below an aggregate: its index, filters and columns in plan order.
struct Scanned {
    remote: Arc<Remote>,
    index: String,
    query: Option<Value>,
    columns: Vec<Input>,
    schema: DFSchemaRef,
}

impl Scanned {
    fn input(&self, expr: &Expr) -> Option<&Input> {
        let Expr::Column(column) = unalias(expr) else {
            return None;
        };
        self.columns.get(self.schema.index_of_column(column).ok()?)
    }

    /// The path a field's values are indexed unchanged under, for a single-valued field.
    fn indexed_path(&self, expr: &Expr) -> Option<(String, Field)> {
        let Input::Field(field) = self.input(expr)? else {
            return None;
        };
        if !safe_name(&field.name) {
            return None;
        }
        let path = FieldPath {
            dotted: field.name.clone(),
            field: field.clone(),
        };
        Some((path.ordered_path()?, field.clone()))
    }
}

/// How one output column is read from a bucket (or from the whole answer).
#[derive(Debug, Clone)]
enum Reading {
    /// The group key `k{i}`.
    Key(usize),
    /// The documents counted.
    Count,
    /// `value_count` `a{i}`.
    ValueCount(usize),
    /// `min` or `max` `a{i}`.
    Extreme(usize),
    /// `sum` of `a{i}`, guarded by `a{i}_min`, `a{i}_max`, `a{i}_n`.
    Sum(usize),
    /// `avg`: the guarded sum of `a{i}` over `a{i}_n`.
    Average(usize),
}

#[derive(Debug, Clone)]
struct Output {
    reading: Reading,
    data_type: DataType,
}

/// A compiled aggregate: the request that answers it and how to read each output column.
#[derive(Debug, Clone)]
struct CompiledAggregate {
    remote: Arc<Remote>,
    index: String,
    query: Option<Value>,
    /// Composite sources, one per GROUP BY key; none for a global aggregate.
    keys: Vec<Value>,
    metrics: Map<String, Value>,
    outputs: Vec<Output>,
    schema: SchemaRef,
}

fn compile(plan: &LogicalPlan) -> Option<CompiledAggregate> {
    match plan {
        LogicalPlan::SubqueryAlias(alias) => compile(&alias.input),
        LogicalPlan::Projection(projection) => {
            let inner = compile(&projection.input)?;
            let schema = projection.input.schema();
            let outputs = projection
                .expr
                .iter()
                .map(|expr| match unalias(expr) {
                    Expr::Column(column) => inner
                        .outputs
                        .get(schema.index_of_column(column).ok()?)
                        .cloned(),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()?;
            Some(CompiledAggregate { outputs, ..inner })
        }
        LogicalPlan::Aggregate(aggregate) => {
            let scanned = scanned(&aggregate.input)?;
            let mut keys = Vec::new();
            let mut outputs = Vec::new();
            for (i, expr) in aggregate.group_expr.iter().enumerate() {
                let (path, field) = scanned.indexed_path(expr)?;
                if matches!(field.kind, Kind::Date { nanos: true, .. }) {
                    return None;
                }
                keys.push(json!({ format!("k{i}"): {
                    "terms": { "field": path, "missing_bucket": true }
                } }));
                outputs.push(Output {
                    reading: Reading::Key(i),
                    data_type: field.kind.data_type(),
                });
            }
            let mut metrics = Map::new();
            for (i, expr) in aggregate.aggr_expr.iter().enumerate() {
                let Expr::AggregateFunction(function) = unalias(expr) else {
                    return None;
                };
                outputs.push(metric(&scanned, function, i, &mut metrics)?);
            }
            Some(CompiledAggregate {
                remote: Arc::clone(&scanned.remote),
                index: scanned.index.clone(),
                query: scanned.query,
                keys,
                metrics,
                outputs,
                schema: Arc::new(aggregate.schema.as_arrow().clone()),
            })
        }
        _ => None,
    }
}

/// The scan an aggregate reads, through aliases and projections of columns.
fn scanned(plan: &LogicalPlan) -> Option<Scanned> {
    match plan {
        LogicalPlan::TableScan(scan) => {
            let provider = source_as_provider(&scan.source).ok()?;
            let table = provider
                .downcast_ref::<RemoteTable<IndexTable>>()?
                .relation();
            if scan.fetch.is_some() {
                return None;
            }
            let queries = scan
                .filters
                .iter()
                .map(|expr| filter(table.fields(), expr))
                .collect::<Option<Vec<_>>>()?;
            let query = match queries.len() {
                0 => None,
                1 => queries.into_iter().next(),
                _ => Some(json!({ "bool": { "filter": queries } })),
            };
            let indices: Vec<usize> = match &scan.projection {
                Some(p) => p.clone(),
                None => (0..table.schema_ref().fields().len()).collect(),
            };
            let columns = indices
                .iter()
                .map(|&i| match table.field_at(i) {
                    Some(field) => Input::Field(field.clone()),
                    None => Input::Metadata,
                })
                .collect();
            Some(Scanned {
                remote: Arc::clone(table.remote()),
                index: table.index().to_owned(),
                query,
                columns,
                schema: Arc::clone(&scan.projected_schema),
            })
        }
        LogicalPlan::SubqueryAlias(alias) => {
            let mut scanned = scanned(&alias.input)?;
            scanned.schema = Arc::clone(&alias.schema);
            Some(scanned)
        }
        LogicalPlan::Projection(projection) => {
            let mut scanned = scanned(&projection.input)?;
            let columns = projection
                .expr
                .iter()
                .map(|expr| match unalias(expr) {
                    Expr::Column(_) => scanned.input(expr).cloned(),
                    _ => None,
                })
                .collect::<Option<Vec<_>>>()?;
            scanned.columns = columns;
            scanned.schema = Arc::clone(&projection.schema);
            Some(scanned)
        }
        _ => None,
    }
}

/// One aggregate function: its aggregations added to `metrics` as `a{i}...`, and how its
/// output reads them.
fn metric(
    scanned: &Scanned,
    function: &AggregateFunction,
    i: usize,
    metrics: &mut Map<String, Value>,
) -> Option<Output> {
    let params = &function.params;
    if params.filter.is_some() || !params.order_by.is_empty() || params.distinct {
        return None;
    }
    let name = function.func.name();
    // count(*) arrives as count(1).
    if name == "count"
        && matches!(params.args.as_slice(), [Expr::Literal(value, _)] if !value.is_null())
    {
        return Some(Output {
            reading: Reading::Count,
            data_type: DataType::Int64,
        });
    }
    let [arg] = params.args.as_slice() else {
        return None;
    };
    let (arg, cast) = match unalias(arg) {
        Expr::Cast(cast) => (cast.expr.as_ref(), Some(cast.field.data_type().clone())),
        other => (other, None),
    };
    let (path, field) = scanned.indexed_path(arg)?;
    let small_integer = matches!(
        field.kind,
        Kind::Integer(IntegerWidth::Byte | IntegerWidth::Short | IntegerWidth::Integer)
    );
    let key = format!("a{i}");
    let aggregation = |kind: &str| json!({ kind: { "field": path } });
    match (name, cast) {
        ("count", None) => {
            metrics.insert(key, aggregation("value_count"));
            Some(Output {
                reading: Reading::ValueCount(i),
                data_type: DataType::Int64,
            })
        }
        ("min" | "max", None)
            if small_integer || matches!(field.kind, Kind::Date { nanos: false, .. }) =>
        {
            metrics.insert(key, aggregation(name));
            Some(Output {
                reading: Reading::Extreme(i),
                data_type: field.kind.data_type(),
            })
        }
        ("sum", None | Some(DataType::Int64)) | ("avg", Some(DataType::Float64))
            if small_integer =>
        {
            metrics.insert(format!("{key}_min"), aggregation("min"));
            metrics.insert(format!("{key}_max"), aggregation("max"));
            metrics.insert(format!("{key}_n"), aggregation("value_count"));
            metrics.insert(key, aggregation("sum"));
            Some(if name == "sum" {
                Output {
                    reading: Reading::Sum(i),
                    data_type: DataType::Int64,
                }
            } else {
                Output {
                    reading: Reading::Average(i),
                    data_type: DataType::Float64,
                }
            })
        }
        _ => None,
    }
}

fn unalias(expr: &Expr) -> &Expr {
    match expr {
        Expr::Alias(alias) => unalias(&alias.expr),
        other => other,
    }
}

impl CompiledAggregate {
    /// Whether the answer is one `_count` request.
    fn counts_only(&self) -> bool {
        self.keys.is_empty()
            && self
                .outputs
                .iter()
                .all(|o| matches!(o.reading, Reading::Count))
    }

    /// The request body; `after` continues a composite aggregation.
    fn body(&self, after: Option<&Value>) -> Value {
        let mut body = Map::new();
        if let Some(query) = &self.query {
            body.insert("query".into(), query.clone());
        }
        if self.counts_only() {
            return Value::Object(body);
        }
        body.insert("size".into(), Value::from(0));
        if self.keys.is_empty() {
            body.insert("track_total_hits".into(), Value::Bool(true));
            if !self.metrics.is_empty() {
                body.insert("aggs".into(), Value::Object(self.metrics.clone()));
            }
        } else {
            let mut composite = Map::new();
            composite.insert("size".into(), Value::from(BUCKETS_PER_PAGE));
            composite.insert("sources".into(), Value::Array(self.keys.clone()));
            if let Some(after) = after {
                composite.insert("after".into(), after.clone());
            }
            let mut groups = Map::new();
            groups.insert("composite".into(), Value::Object(composite));
            if !self.metrics.is_empty() {
                groups.insert("aggs".into(), Value::Object(self.metrics.clone()));
            }
            body.insert("track_total_hits".into(), Value::Bool(false));
            body.insert("aggs".into(), json!({ "groups": groups }));
        }
        Value::Object(body)
    }

    fn path(&self) -> String {
        let endpoint = if self.counts_only() {
            "_count"
        } else {
            "_search"
        };
        format!("/{}/{endpoint}", path_segment(&self.index))
    }

    fn error(&self, message: String) -> DataFusionError {
        SourceError::into_datafusion(
            &self.remote.settings.name,
            ConnectorError::InvalidData(message),
        )
    }

    /// Runs the requests and returns the rows, a batch per page.
    async fn run(self: Arc<Self>, sender: tokio::sync::mpsc::Sender<Result<RecordBatch>>) {
        if let Err(error) = self.pages(&sender).await {
            let _ = sender.send(Err(error)).await;
        }
    }

    async fn pages(&self, sender: &tokio::sync::mpsc::Sender<Result<RecordBatch>>) -> Result<()> {
        let mut after: Option<Value> = None;
        loop {
            let answer = self
                .remote
                .json(Method::POST, &self.path(), Some(&self.body(after.as_ref())))
                .await
                .map_err(|e| SourceError::into_datafusion(&self.remote.settings.name, e))?;
            let failed_shards = answer
                .pointer("/_shards/failed")
                .and_then(Value::as_u64)
                .unwrap_or(0);
            if answer.get("timed_out") == Some(&Value::Bool(true)) || failed_shards > 0 {
                return Err(SourceError::into_datafusion(
                    &self.remote.settings.name,
                    ConnectorError::Unavailable(format!(
                        "the aggregation over {} failed on some shards: {}",
                        self.index,
                        answer.get("_shards").unwrap_or(&Value::Null)
                    )),
                ));
            }
            if self.keys.is_empty() {
                let count = if self.counts_only() {
                    answer.get("count").and_then(Value::as_u64)
                } else {
                    let relation = answer.pointer("/hits/total/relation");
                    (relation.and_then(Value::as_str) == Some("eq"))
                        .then(|| answer.pointer("/hits/total/value"))
                        .flatten()
                        .and_then(Value::as_u64)
                };
                let count = count.ok_or_else(|| {
                    self.error(format!("the count of {} is missing or inexact", self.index))
                })?;
                let metrics = answer.get("aggregations").unwrap_or(&Value::Null);
                let row = self.row(&Value::Null, count, metrics)?;
                let _ = sender.send(self.batch(vec![row])).await;
                return Ok(());
            }
            let buckets = answer
                .pointer("/aggregations/groups/buckets")
                .and_then(Value::as_array)
                .ok_or_else(|| {
                    self.error(format!(
                        "the aggregation over {} has no buckets",
                        self.index
                    ))
                })?;
            let rows = buckets
                .iter()
                .map(|bucket| {
                    let count = bucket.get("doc_count").and_then(Value::as_u64).unwrap_or(0);
                    let key = bucket.get("key").unwrap_or(&Value::Null);
                    self.row(key, count, bucket)
                })
                .collect::<Result<Vec<_>>>()?;
            if !rows.is_empty() && sender.send(self.batch(rows)).await.is_err() {
                return Ok(());
            }
            match answer.pointer("/aggregations/groups/after_key") {
                Some(key) if buckets.len() >= BUCKETS_PER_PAGE => after = Some(key.clone()),
                _ => return Ok(()),
            }
        }
    }

    /// One output row from a bucket's key, document count and metrics.
    fn row(&self, key: &Value, count: u64, metrics: &Value) -> Result<Vec<ScalarValue>> {
        let number = |name: String| {
            metrics
                .get(name.as_str())
                .and_then(|metric| metric.get("value"))
                .and_then(Value::as_f64)
        };
        self.outputs
            .iter()
            .map(|output| {
                let data_type = &output.data_type;
                match &output.reading {
                    Reading::Key(i) => {
                        scalar(key.get(format!("k{i}")).unwrap_or(&Value::Null), data_type)
                            .ok_or_else(|| self.error(format!("an unreadable group key {key}")))
                    }
                    Reading::Count => Ok(ScalarValue::Int64(Some(count as i64))),
                    Reading::ValueCount(i) => Ok(ScalarValue::Int64(Some(
                        number(format!("a{i}")).unwrap_or(0.0) as i64,
                    ))),
                    Reading::Extreme(i) => match number(format!("a{i}")) {
                        None => ScalarValue::try_from(data_type),
                        Some(v) => scalar(&Value::from(v as i64), data_type)
                            .ok_or_else(|| self.error(format!("an unreadable minimum {v}"))),
                    },
                    Reading::Sum(i) | Reading::Average(i) => {
                        let values = number(format!("a{i}_n")).unwrap_or(0.0);
                        if values == 0.0 {
                            return ScalarValue::try_from(data_type);
                        }
                        let magnitude = number(format!("a{i}_min"))
                            .unwrap_or(0.0)
                            .abs()
                            .max(number(format!("a{i}_max")).unwrap_or(0.0).abs());
                        if magnitude * values > EXACT_IN_DOUBLE {
                            return Err(self.error(format!(
                                "a sum over {} could pass 2^53, where the cluster's doubles \
                                 round it; set pushdown = false for this source to sum it exactly",
                                self.index
                            )));
                        }
                        let sum = number(format!("a{i}")).unwrap_or(0.0);
                        Ok(match output.reading {
                            Reading::Sum(_) => ScalarValue::Int64(Some(sum as i64)),
                            _ => ScalarValue::Float64(Some(sum / values)),
                        })
                    }
                }
            })
            .collect()
    }

    #[allow(
        clippy::indexing_slicing,
        reason = "every row is made by `row`, which gives one value per output"
    )]
    fn batch(&self, rows: Vec<Vec<ScalarValue>>) -> Result<RecordBatch> {
        let columns = (0..self.outputs.len())
            .map(|c| ScalarValue::iter_to_array(rows.iter().map(|row| row[c].clone())))
            .collect::<Result<Vec<_>>>()?;
        // A projection may keep no column of an aggregate, only its row count.
        let options = RecordBatchOptions::new().with_row_count(Some(rows.len()));
        Ok(RecordBatch::try_new_with_options(
            Arc::clone(&self.schema),
            columns,
            &options,
        )?)
    }
}

/// A group key or metric as the column's type; `None` when it cannot be one.
fn scalar(value: &Value, data_type: &DataType) -> Option<ScalarValue> {
    if value.is_null() {
        return ScalarValue::try_from(data_type).ok();
    }
    let integer = || {
        value.as_i64().or_else(|| {
            value
                .as_f64()
                .filter(|v| v.fract() == 0.0)
                .map(|v| v as i64)
        })
    };
    Some(match data_type {
        DataType::Utf8 => ScalarValue::Utf8(Some(value.as_str()?.to_owned())),
        DataType::Int8 => ScalarValue::Int8(Some(i8::try_from(integer()?).ok()?)),
        DataType::Int16 => ScalarValue::Int16(Some(i16::try_from(integer()?).ok()?)),
        DataType::Int32 => ScalarValue::Int32(Some(i32::try_from(integer()?).ok()?)),
        DataType::Int64 => ScalarValue::Int64(Some(integer()?)),
        DataType::UInt64 => ScalarValue::UInt64(Some(value.as_u64()?)),
        DataType::Boolean => ScalarValue::Boolean(Some(match value {
            Value::Bool(b) => *b,
            Value::Number(n) => n.as_i64()? != 0,
            Value::String(s) => s == "true",
            _ => return None,
        })),
        DataType::Timestamp(TimeUnit::Millisecond, zone) => {
            ScalarValue::TimestampMillisecond(Some(integer()?), zone.clone())
        }
        _ => return None,
    })
}

impl NativeQuery for CompiledAggregate {
    fn describe(&self) -> String {
        format!("index={}, {}", self.index, self.describe_request())
    }

    fn execution_plan(&self, _session: &dyn Session) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(RemoteScanExec::new(SearchAggregate(Arc::new(
            self.clone(),
        )))))
    }
}

impl CompiledAggregate {
    fn describe_request(&self) -> String {
        format!("path={}, body={}", self.path(), self.body(None))
    }
}

/// Runs a compiled aggregate: one partition, a batch per page of buckets.
#[derive(Debug, Clone)]
struct SearchAggregate(Arc<CompiledAggregate>);

impl RemoteScan for SearchAggregate {
    const NAME: &'static str = "SearchAggregateExec";

    /// An aggregate takes no further sort, limit or projection: `with_*` are the defaults.
    fn settings(&self) -> &SourceSettings {
        &self.0.remote.settings
    }

    fn schema(&self) -> &SchemaRef {
        &self.0.schema
    }

    fn row_estimate(&self) -> Option<usize> {
        None
    }

    fn limit(&self) -> Option<usize> {
        None
    }

    fn partitions(&self) -> usize {
        1
    }

    fn fmt_native(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "source={}, index={}, {}",
            self.0.remote.settings.name,
            self.0.index,
            self.0.describe_request()
        )
    }

    fn open(
        &self,
        _partition: usize,
        _context: &Arc<TaskContext>,
    ) -> Result<SendableRecordBatchStream> {
        let aggregate = Arc::clone(&self.0);
        let batches = Prefetched::spawn(|sender| aggregate.run(sender));
        let batches = futures::stream::unfold(batches, |mut batches| async move {
            let batch = batches.next().await?;
            Some((batch, batches))
        });
        Ok(Box::pin(RecordBatchStreamAdapter::new(
            Arc::clone(&self.0.schema),
            batches,
        )))
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use datafusion::arrow::datatypes::{Field as ArrowField, Schema};

    use super::*;
    use crate::remote::Auth;

    fn compiled(outputs: Vec<Output>) -> CompiledAggregate {
        let remote = Remote::new(
            SourceSettings::new(&polygate_connector_core::SourceContext::new("s", "."), true),
            vec!["http://127.0.0.1:9".into()],
            Auth::None,
            None,
            Duration::from_secs(1),
            Duration::from_secs(1),
        )
        .unwrap();
        let schema = Schema::new(
            outputs
                .iter()
                .enumerate()
                .map(|(i, o)| ArrowField::new(format!("c{i}"), o.data_type.clone(), true))
                .collect::<Vec<_>>(),
        );
        CompiledAggregate {
            remote: Arc::new(remote),
            index: "i".into(),
            query: None,
            keys: vec![json!({ "k0": { "terms": { "field": "k", "missing_bucket": true } } })],
            metrics: Map::new(),
            outputs,
            schema: Arc::new(schema),
        }
    }

    fn output(reading: Reading, data_type: DataType) -> Output {
        Output { reading, data_type }
    }

    /// A bucket as the composite aggregation documentation shows them.
    #[test]
    fn buckets_read_as_rows_of_the_planned_types() {
        let aggregate = compiled(vec![
            output(Reading::Key(0), DataType::Utf8),
            output(Reading::Count, DataType::Int64),
            output(Reading::ValueCount(1), DataType::Int64),
            output(Reading::Extreme(2), DataType::Int32),
            output(Reading::Sum(3), DataType::Int64),
            output(Reading::Average(3), DataType::Float64),
        ]);
        let bucket = json!({
            "key": { "k0": "red" }, "doc_count": 4,
            "a1": { "value": 3 }, "a2": { "value": -7.0 },
            "a3": { "value": 10.0 }, "a3_n": { "value": 4 },
            "a3_min": { "value": -7.0 }, "a3_max": { "value": 9.0 },
        });
        let row = aggregate.row(&bucket["key"], 4, &bucket).unwrap();
        assert_eq!(
            row,
            vec![
                ScalarValue::Utf8(Some("red".into())),
                ScalarValue::Int64(Some(4)),
                ScalarValue::Int64(Some(3)),
                ScalarValue::Int32(Some(-7)),
                ScalarValue::Int64(Some(10)),
                ScalarValue::Float64(Some(2.5)),
            ]
        );
        // A group of missing keys and no values: NULL key, NULL extremes and sums.
        let empty = json!({
            "key": { "k0": null }, "doc_count": 2,
            "a1": { "value": 0 }, "a2": { "value": null },
            "a3": { "value": 0.0 }, "a3_n": { "value": 0 },
            "a3_min": { "value": null }, "a3_max": { "value": null },
        });
        let row = aggregate.row(&empty["key"], 2, &empty).unwrap();
        assert_eq!(
            row,
            vec![
                ScalarValue::Utf8(None),
                ScalarValue::Int64(Some(2)),
                ScalarValue::Int64(Some(0)),
                ScalarValue::Int32(None),
                ScalarValue::Int64(None),
                ScalarValue::Float64(None),
            ]
        );
    }

    #[test]
    fn a_sum_the_cluster_may_have_rounded_is_an_error() {
        let aggregate = compiled(vec![output(Reading::Sum(0), DataType::Int64)]);
        let bucket = json!({
            "a0": { "value": 9.007199254740992e15 }, "a0_n": { "value": 4_194_305 },
            "a0_min": { "value": 0.0 }, "a0_max": { "value": 2_147_483_647.0 },
        });
        let error = aggregate.row(&Value::Null, 4_194_305, &bucket).unwrap_err();
        assert!(error.to_string().contains("2^53"), "{error}");
    }

    #[test]
    fn keys_convert_to_their_column_types() {
        let cases = [
            (
                json!(true),
                DataType::Boolean,
                ScalarValue::Boolean(Some(true)),
            ),
            (
                json!(0),
                DataType::Boolean,
                ScalarValue::Boolean(Some(false)),
            ),
            (json!(-5), DataType::Int8, ScalarValue::Int8(Some(-5))),
            (
                json!(1_704_153_600_000i64),
                DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into())),
                ScalarValue::TimestampMillisecond(Some(1_704_153_600_000), Some("UTC".into())),
            ),
            (
                json!(u64::MAX),
                DataType::UInt64,
                ScalarValue::UInt64(Some(u64::MAX)),
            ),
        ];
        for (value, data_type, expected) in cases {
            assert_eq!(scalar(&value, &data_type), Some(expected), "{value}");
        }
        assert_eq!(scalar(&json!(300), &DataType::Int8), None);
        assert_eq!(scalar(&json!("x"), &DataType::Int32), None);
    }
}
