//! Single-source sub-plans compiled into one aggregation pipeline.
//!
//! A sub-plan over one collection (filters already pushed into its scan) becomes `$match`,
//! then for each aggregate a `$group` and a `$project` that names its outputs `c0`, `c1`, ...,
//! then `$match` for HAVING, `$sort` and `$limit`. What is compiled, and why it is exact:
//! - GROUP BY on scalar columns other than doubles; missing and null fields group together
//!   (`$ifNull`), as SQL's NULLs do.
//! - `count(*)`, `count(x)` (documents whose field is neither missing nor null),
//!   `count(DISTINCT x)` (`$addToSet` without null), `sum` of integers and decimals (NULL,
//!   not 0, over no values), `min`, `max` (MongoDB skips missing and null, as SQL skips
//!   NULLs), and `avg` of integers. Doubles are not aggregated remotely: summation order
//!   changes their rounding, and NaN and -0 compare differently.
//! - An aggregate without GROUP BY returns one row even over no documents (counts 0, the
//!   rest NULL), as in SQL.
//! - Projections of columns, `HAVING` through [`crate::filter`], `ORDER BY` through the
//!   same rules as scans, `LIMIT` and `OFFSET`.
//!
//! Joins and unions are not compiled: each side is scanned on its own.

use std::sync::Arc;

use datafusion::arrow::datatypes::DataType;
use datafusion::catalog::Session;
use datafusion::common::{Column, DFSchemaRef, Result};
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::expr::AggregateFunction;
use datafusion::logical_expr::{Expr, LogicalPlan, SortExpr};
use datafusion::physical_plan::ExecutionPlan;
use mongodb::bson::{Bson, Document, doc};
use polygate_connector_core::remote_scan::RemoteTable;
use polygate_connector_core::subplan::{NativeQuery, SubPlanSource, returns_planned_types};
use polygate_connector_core::{SourceSettings, TableRef};

use crate::filter::{FieldPath, Fields, filter, safe_name};
use crate::order::{SortKey, sort_stage};
use crate::query::Pipeline;
use crate::remote::Remote;
use crate::scan::{MongoScan, MongoScanExec, MongoTable, Reading};
use crate::types::FieldType;

impl SubPlanSource for Remote {
    fn settings(&self) -> &SourceSettings {
        &self.settings
    }

    fn compile(&self, plan: &LogicalPlan) -> Option<Arc<dyn NativeQuery>> {
        let stage = compile(plan)?;
        let types = stage.outputs.iter().map(|output| output.field.arrow_type());
        if !returns_planned_types(plan, types) {
            return None;
        }
        let mut project = doc! { "_id": 0 };
        for (i, output) in stage.outputs.iter().enumerate() {
            project.insert(format!("c{i}"), output.expr.clone());
        }
        let mut stages = stage.stages;
        stages.push(doc! { "$project": project });
        let empty_row = stage
            .global
            .then(|| stage.outputs.iter().map(|o| o.empty).collect());
        Some(Arc::new(CompiledPipeline {
            remote: stage.remote,
            collection: stage.collection,
            pipeline: Pipeline { stages },
            columns: stage.outputs.iter().map(|o| o.field.clone()).collect(),
            schema: Arc::clone(plan.schema()),
            empty_row,
        }))
    }
}

/// A compiled sub-plan.
#[derive(Debug)]
struct CompiledPipeline {
    remote: Arc<Remote>,
    collection: TableRef,
    pipeline: Pipeline,
    columns: Vec<FieldType>,
    schema: DFSchemaRef,
    empty_row: Option<Vec<Option<i64>>>,
}

impl NativeQuery for CompiledPipeline {
    fn describe(&self) -> String {
        format!(
            "collection={}, pipeline={}",
            self.collection,
            self.pipeline.describe()
        )
    }

    fn execution_plan(&self, session: &dyn Session) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(MongoScanExec::new(MongoScan::new(
            Arc::clone(&self.remote),
            self.collection.clone(),
            Arc::new(self.schema.as_arrow().clone()),
            Reading::SubPlan {
                pipeline: self.pipeline.clone(),
                columns: self.columns.clone(),
                empty_row: self.empty_row.clone(),
            },
            Vec::new(),
            None,
            session.config().batch_size(),
        ))))
    }
}

/// One output column of a compiled stage.
#[derive(Debug, Clone)]
struct Output {
    /// The aggregation expression that reads it (`"$c0"`, `"$price"`).
    expr: Bson,
    field: FieldType,
    /// The dotted path `$match` and `$sort` address it by, when it is a field.
    path: Option<String>,
    /// Its value in the row of an aggregate over no documents: `Some(0)` for counts.
    empty: Option<i64>,
}

/// A plan compiled so far: the pipeline, and the columns of the plan's schema.
struct Stage {
    remote: Arc<Remote>,
    collection: TableRef,
    stages: Vec<Document>,
    outputs: Vec<Output>,
    schema: DFSchemaRef,
    /// Whether the last aggregate had no GROUP BY (and so must return one row).
    global: bool,
}

impl Fields for Stage {
    fn column(&self, column: &Column) -> Option<FieldPath> {
        let index = self.schema.index_of_column(column).ok()?;
        let output = self.outputs.get(index)?;
        Some(FieldPath {
            dotted: output.path.clone()?,
            field: output.field.clone(),
        })
    }
}

impl Stage {
    fn output_of(&self, expr: &Expr) -> Option<&Output> {
        match expr {
            Expr::Column(column) => self.outputs.get(self.schema.index_of_column(column).ok()?),
            _ => None,
        }
    }

    /// The stage's outputs renamed to `c0`, `c1`, ... by a `$project`, so that what follows
    /// addresses them by safe names.
    fn flatten(&mut self) {
        let mut project = doc! { "_id": 0 };
        for (i, output) in self.outputs.iter_mut().enumerate() {
            project.insert(format!("c{i}"), output.expr.clone());
            output.expr = Bson::String(format!("$c{i}"));
            output.path = Some(format!("c{i}"));
        }
        self.stages.push(doc! { "$project": project });
    }
}

fn compile(plan: &LogicalPlan) -> Option<Stage> {
    match plan {
        LogicalPlan::TableScan(scan) => {
            let provider = source_as_provider(&scan.source).ok()?;
            let table = provider
                .downcast_ref::<RemoteTable<MongoTable>>()?
                .relation();
            let schema = table.collection_schema();
            let mut stages = Vec::new();
            let mut conditions = Vec::new();
            for predicate in &scan.filters {
                conditions.push(Bson::Document(filter(schema.as_ref(), predicate)?));
            }
            if !conditions.is_empty() {
                stages.push(doc! { "$match": { "$and": conditions } });
            }
            if let Some(fetch) = scan.fetch {
                stages.push(doc! { "$limit": fetch as i64 });
            }
            let indices: Vec<usize> = match &scan.projection {
                Some(p) => p.clone(),
                None => (0..schema.columns().len()).collect(),
            };
            let outputs = indices
                .iter()
                .map(|&i| {
                    let (name, field) = schema.columns().get(i)?;
                    Some(Output {
                        expr: field_ref(name),
                        field: field.clone(),
                        path: safe_name(name).then(|| name.clone()),
                        empty: None,
                    })
                })
                .collect::<Option<_>>()?;
            Some(Stage {
                remote: Arc::clone(table.remote()),
                collection: table.collection().clone(),
                stages,
                outputs,
                schema: Arc::clone(&scan.projected_schema),
                global: false,
            })
        }
        LogicalPlan::SubqueryAlias(alias) => {
            let mut stage = compile(&alias.input)?;
            stage.schema = Arc::clone(&alias.schema);
            Some(stage)
        }
        LogicalPlan::Projection(projection) => {
            let mut stage = compile(&projection.input)?;
            let outputs = projection
                .expr
                .iter()
                .map(|expr| stage.output_of(unalias(expr)).cloned())
                .collect::<Option<Vec<_>>>()?;
            stage.outputs = outputs;
            stage.schema = Arc::clone(&projection.schema);
            Some(stage)
        }
        LogicalPlan::Filter(filter) => {
            let mut stage = compile(&filter.input)?;
            if stage.global {
                return None;
            }
            let condition = crate::filter::filter(&stage, &filter.predicate)?;
            stage.stages.push(doc! { "$match": condition });
            Some(stage)
        }
        LogicalPlan::Aggregate(aggregate) => {
            let mut stage = compile(&aggregate.input)?;
            if stage.global {
                return None;
            }
            let mut key = Document::new();
            let mut outputs = Vec::new();
            for (i, expr) in aggregate.group_expr.iter().enumerate() {
                let output = stage.output_of(unalias(expr))?;
                if !output.field.is_scalar() || output.field == FieldType::Double {
                    return None;
                }
                key.insert(
                    format!("k{i}"),
                    doc! { "$ifNull": [output.expr.clone(), Bson::Null] },
                );
                outputs.push(Output {
                    expr: Bson::String(format!("$_id.k{i}")),
                    field: output.field.clone(),
                    path: None,
                    empty: None,
                });
            }
            let mut group =
                doc! { "_id": if key.is_empty() { Bson::Null } else { Bson::Document(key) } };
            for (i, expr) in aggregate.aggr_expr.iter().enumerate() {
                let Expr::AggregateFunction(function) = unalias(expr) else {
                    return None;
                };
                outputs.push(aggregate_output(&stage, function, i, &mut group)?);
            }
            stage.stages.push(doc! { "$group": group });
            stage.outputs = outputs;
            stage.schema = Arc::clone(&aggregate.schema);
            stage.global = aggregate.group_expr.is_empty();
            stage.flatten();
            Some(stage)
        }
        LogicalPlan::Sort(sort) => {
            let mut stage = compile(&sort.input)?;
            if stage.global {
                return None;
            }
            let (flags, keys) = sort_keys(&stage, &sort.expr)?;
            if !flags.is_empty() {
                stage.stages.push(doc! { "$addFields": flags });
            }
            stage.stages.push(doc! { "$sort": keys });
            if let Some(fetch) = sort.fetch {
                stage.stages.push(doc! { "$limit": fetch as i64 });
            }
            Some(stage)
        }
        LogicalPlan::Limit(limit) => {
            let mut stage = compile(&limit.input)?;
            if stage.global {
                return None;
            }
            let skip = match limit.get_skip_type().ok()? {
                datafusion::logical_expr::SkipType::Literal(skip) => skip,
                _ => return None,
            };
            let fetch = match limit.get_fetch_type().ok()? {
                datafusion::logical_expr::FetchType::Literal(fetch) => fetch,
                _ => return None,
            };
            if skip > 0 {
                stage.stages.push(doc! { "$skip": skip as i64 });
            }
            // A sort's own fetch below may already be this limit, or a smaller one.
            let limited = |stage: &Document| {
                stage
                    .get_i64("$limit")
                    .is_ok_and(|limit| fetch.is_some_and(|fetch| limit <= fetch as i64))
            };
            if let Some(fetch) = fetch
                && !(skip == 0 && stage.stages.last().is_some_and(limited))
            {
                stage.stages.push(doc! { "$limit": fetch as i64 });
            }
            Some(stage)
        }
        _ => None,
    }
}

/// The expression reading top-level field `name`: `"$name"`, or `$getField` for names the
/// path syntax cannot hold (`a.b`, `$x`).
fn field_ref(name: &str) -> Bson {
    if safe_name(name) {
        Bson::String(format!("${name}"))
    } else {
        Bson::Document(doc! {
            "$getField": { "field": { "$literal": name }, "input": "$$ROOT" }
        })
    }
}

fn unalias(expr: &Expr) -> &Expr {
    match expr {
        Expr::Alias(alias) => unalias(&alias.expr),
        other => other,
    }
}

/// One aggregate: its accumulators added to `group` as `a{i}` (and `n{i}`), and the output
/// reading them.
fn aggregate_output(
    stage: &Stage,
    function: &AggregateFunction,
    i: usize,
    group: &mut Document,
) -> Option<Output> {
    let params = &function.params;
    if params.filter.is_some() || !params.order_by.is_empty() {
        return None;
    }
    let name = function.func.name();
    let accumulator = format!("a{i}");
    let output = |expr: Bson, field: FieldType, empty: Option<i64>| Output {
        expr,
        field,
        path: None,
        empty,
    };
    // count(*) arrives as count(1).
    if name == "count"
        && !params.distinct
        && matches!(params.args.as_slice(), [Expr::Literal(value, _)] if !value.is_null())
    {
        group.insert(&accumulator, doc! { "$sum": 1 });
        return Some(output(
            Bson::String(format!("${accumulator}")),
            FieldType::Int64,
            Some(0),
        ));
    }
    let [arg] = params.args.as_slice() else {
        return None;
    };
    let (input, cast) = match unalias(arg) {
        Expr::Cast(cast) => (
            stage.output_of(&cast.expr)?,
            Some(cast.field.data_type().clone()),
        ),
        other => (stage.output_of(other)?, None),
    };
    let field = &input.field;
    let value = input.expr.clone();
    let present = doc! { "$cond": [
        { "$in": [{ "$type": value.clone() }, ["missing", "null"]] }, 0, 1
    ] };
    let integer = matches!(field, FieldType::Int32 | FieldType::Int64);
    match (name, params.distinct, cast) {
        ("count", false, None) if field.is_scalar() => {
            group.insert(&accumulator, doc! { "$sum": present });
            Some(output(
                Bson::String(format!("${accumulator}")),
                FieldType::Int64,
                Some(0),
            ))
        }
        ("count", true, None) if field.is_scalar() && *field != FieldType::Double => {
            group.insert(&accumulator, doc! { "$addToSet": value });
            Some(output(
                Bson::Document(doc! {
                    "$size": { "$setDifference": [format!("${accumulator}"), [Bson::Null]] }
                }),
                FieldType::Int64,
                Some(0),
            ))
        }
        ("sum", false, cast)
            if (integer && matches!(cast, None | Some(DataType::Int64)))
                || (matches!(field, FieldType::Decimal(_)) && cast.is_none()) =>
        {
            let counted = format!("n{i}");
            group.insert(&accumulator, doc! { "$sum": value });
            group.insert(&counted, doc! { "$sum": present });
            let result = if integer {
                FieldType::Int64
            } else {
                field.clone()
            };
            Some(output(
                Bson::Document(doc! {
                    "$cond": [{ "$eq": [format!("${counted}"), 0] }, Bson::Null, format!("${accumulator}")]
                }),
                result,
                None,
            ))
        }
        ("min" | "max", false, None) if field.is_scalar() && *field != FieldType::Double => {
            group.insert(&accumulator, doc! { format!("${name}"): value });
            Some(output(
                Bson::String(format!("${accumulator}")),
                field.clone(),
                None,
            ))
        }
        ("avg", false, Some(DataType::Float64)) if integer => {
            group.insert(&accumulator, doc! { "$avg": value });
            Some(output(
                Bson::String(format!("${accumulator}")),
                FieldType::Double,
                None,
            ))
        }
        _ => None,
    }
}

/// The flags and `$sort` of a compiled stage, when MongoDB orders exactly as DataFusion
/// (see [`crate::order`]).
fn sort_keys(stage: &Stage, order: &[SortExpr]) -> Option<(Document, Document)> {
    let keys = order
        .iter()
        .map(|key| {
            let output = stage.output_of(&key.expr)?;
            Some(SortKey {
                path: output.path.as_deref()?,
                field: &output.field,
                descending: !key.asc,
                nulls_first: key.nulls_first,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    sort_stage(keys)
}
