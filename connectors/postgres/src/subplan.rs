//! Whole sub-plans over one PostgreSQL source, compiled into one statement.
//!
//! [`polygate_connector_core::subplan`] offers this source every sub-plan whose tables are all
//! its own; this module answers with SQL, or declines. It accepts only the operators below,
//! each with the reasoning that makes PostgreSQL's answer exactly DataFusion's:
//! - table scans with their projection, pushed filters ([`crate::filter`]) and limit;
//! - projections of columns; filters (also `HAVING`) through [`crate::filter`];
//! - aggregates `count(*)`, `count([DISTINCT] x)`, `sum`, `min`, `max` and `avg`, grouped by
//!   columns. Every result is cast to the Arrow type DataFusion declared for it (`sum(int8)`
//!   is `numeric` in PostgreSQL, `int8` in DataFusion; an overflow is an error in PostgreSQL
//!   where DataFusion wraps, never a different value). Floats are summed and averaged in
//!   float8, as DataFusion does; they are never grouped, joined, deduplicated or compared
//!   (`-0.0` and `NaN` order differently). `min`/`max` of text use `COLLATE "C"`, DataFusion's
//!   byte order. `char(n)` columns are never grouped, joined or compared: PostgreSQL ignores
//!   their trailing blanks;
//! - inner, left, right and full joins on equal columns of one type, with a filter; semi and
//!   anti joins (`IN`, `EXISTS`, `NOT EXISTS`) as `[NOT] EXISTS`, but not the null-aware anti
//!   join of `NOT IN`, whose NULL rules differ;
//! - `UNION ALL`, `DISTINCT`, ORDER BY (as in [`crate::order`]), LIMIT and OFFSET.
//!
//! Each operator becomes a `SELECT` over its inputs as derived tables, its output columns named
//! `c0`, `c1`, ... by position: the names and qualifiers of DataFusion's plan never reach the
//! SQL, so no name can clash or be misread. Values are bind parameters, as in scans.

use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::catalog::Session;
use datafusion::common::{DFSchema, JoinType, NullEquality, Result};
use datafusion::datasource::source_as_provider;
use datafusion::logical_expr::expr::{AggregateFunction, AggregateFunctionParams, Alias};
use datafusion::logical_expr::{
    Aggregate, Distinct, Expr, FetchType, Filter, Join, Limit, LogicalPlan, Projection, SkipType,
    Sort, TableScan, Union,
};
use datafusion::physical_plan::ExecutionPlan;
use polygate_connector_core::SourceSettings;
use polygate_connector_core::remote_scan::RemoteTable;
use polygate_connector_core::subplan::{NativeQuery, SubPlanSource};

use crate::filter::{FilterSql, Param};
use crate::order::order_term;
use crate::remote::Remote;
use crate::scan::{PostgresScan, PostgresScanExec, PostgresTable};
use crate::schema::{PgColumn, quote_ident};

impl SubPlanSource for Remote {
    fn settings(&self) -> &SourceSettings {
        &self.settings
    }

    fn compile(&self, plan: &LogicalPlan) -> Option<Arc<dyn NativeQuery>> {
        let mut compiler = Compiler {
            remote: self,
            shared: None,
            params: Vec::new(),
            aliases: 0,
        };
        let relation = compiler.relation(plan)?;
        let schema: SchemaRef = Arc::new(plan.schema().as_arrow().clone());
        // The statement must yield exactly the types DataFusion planned for.
        let columns = relation
            .columns
            .iter()
            .zip(schema.fields())
            .enumerate()
            .map(|(i, (column, field))| {
                (column.arrow_field().data_type() == field.data_type())
                    .then(|| column.referenced_as(output_name(i)))
            })
            .collect::<Option<Vec<_>>>()?;
        if columns.len() != schema.fields().len() {
            return None;
        }
        Some(Arc::new(PostgresQuery {
            remote: compiler.shared?,
            // Wrapped, so that an ORDER BY or LIMIT pushed later applies to the whole result.
            sql: format!("SELECT * FROM ({}) AS \"q\"", relation.sql),
            params: compiler.params,
            columns,
            schema,
        }))
    }
}

/// A compiled sub-plan: one statement, its parameters and its output.
#[derive(Debug)]
struct PostgresQuery {
    remote: Arc<Remote>,
    sql: String,
    params: Vec<Param>,
    columns: Vec<PgColumn>,
    schema: SchemaRef,
}

impl NativeQuery for PostgresQuery {
    fn describe(&self) -> String {
        self.sql.clone()
    }

    fn execution_plan(&self, session: &dyn Session) -> Result<Arc<dyn ExecutionPlan>> {
        Ok(Arc::new(PostgresScanExec::new(PostgresScan::statement(
            Arc::clone(&self.remote),
            self.sql.clone(),
            self.params.clone(),
            self.columns.clone(),
            Arc::clone(&self.schema),
            session.config().batch_size(),
        ))))
    }
}

/// A compiled operator: a `SELECT` whose output columns are named `c0`, `c1`, ...
struct Relation {
    sql: String,
    /// The output columns, with the types they are read as.
    columns: Vec<PgColumn>,
}

struct Compiler<'a> {
    remote: &'a Remote,
    /// The source's shared handle, taken from its first table.
    shared: Option<Arc<Remote>>,
    params: Vec<Param>,
    aliases: usize,
}

/// The name of output column `index` of every compiled operator.
fn output_name(index: usize) -> String {
    quote_ident(&format!("c{index}"))
}

/// `expressions` as a select list naming its columns by position.
fn select_list(expressions: &[String]) -> String {
    expressions
        .iter()
        .enumerate()
        .map(|(i, e)| format!("{e} AS {}", output_name(i)))
        .collect::<Vec<_>>()
        .join(", ")
}

/// The expressions that read `columns` unchanged.
fn references(columns: &[PgColumn]) -> Vec<String> {
    columns.iter().map(PgColumn::select_expr).collect()
}

/// Whether PostgreSQL compares, groups and deduplicates values of `column` exactly as
/// DataFusion (see [`PgColumn::compares_exactly`]).
fn has_exact_equality(column: &PgColumn) -> bool {
    column.compares_exactly()
}

impl Compiler<'_> {
    fn relation(&mut self, plan: &LogicalPlan) -> Option<Relation> {
        match plan {
            LogicalPlan::TableScan(scan) => self.scan(scan),
            LogicalPlan::Projection(projection) => self.projection(projection),
            LogicalPlan::Filter(filter) => self.filter(filter),
            LogicalPlan::Aggregate(aggregate) => self.aggregate(aggregate),
            LogicalPlan::Sort(sort) => self.sort(sort),
            LogicalPlan::Limit(limit) => self.limit(limit),
            LogicalPlan::SubqueryAlias(alias) => self.relation(&alias.input),
            LogicalPlan::Join(join) => self.join(join),
            LogicalPlan::Union(union) => self.union(union),
            LogicalPlan::Distinct(Distinct::All(input)) => self.distinct(input),
            _ => None,
        }
    }

    /// `plan` as a derived table: its `FROM` item and its columns as referenced from outside.
    fn derived(&mut self, plan: &LogicalPlan) -> Option<(String, Vec<PgColumn>)> {
        let relation = self.relation(plan)?;
        self.aliases += 1;
        let alias = quote_ident(&format!("t{}", self.aliases));
        let columns = relation
            .columns
            .iter()
            .enumerate()
            .map(|(i, c)| c.referenced_as(format!("{alias}.{}", output_name(i))))
            .collect();
        Some((format!("({}) AS {alias}", relation.sql), columns))
    }

    fn scan(&mut self, scan: &TableScan) -> Option<Relation> {
        let provider = source_as_provider(&scan.source).ok()?;
        let table = provider
            .downcast_ref::<RemoteTable<PostgresTable>>()?
            .relation();
        if !std::ptr::eq(Arc::as_ptr(table.remote()), self.remote) {
            return None;
        }
        self.shared
            .get_or_insert_with(|| Arc::clone(table.remote()));
        let all = table.columns();
        let columns: Vec<PgColumn> = match &scan.projection {
            Some(indices) => indices
                .iter()
                .map(|&i| all.get(i).cloned())
                .collect::<Option<_>>()?,
            None => all.to_vec(),
        };
        let mut sql = format!(
            "SELECT {} FROM {}",
            select_list(&references(&columns)),
            table.quoted_name()
        );
        let mut conditions = Vec::new();
        for filter in &scan.filters {
            let (condition, mut bound) = FilterSql::translate(all, self.params.len() + 1, filter)?;
            conditions.push(condition);
            self.params.append(&mut bound);
        }
        if !conditions.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&conditions.join(" AND "));
        }
        if let Some(fetch) = scan.fetch {
            sql.push_str(&format!(" LIMIT {fetch}"));
        }
        Some(Relation { sql, columns })
    }

    fn projection(&mut self, projection: &Projection) -> Option<Relation> {
        let (from, input) = self.derived(&projection.input)?;
        let schema = projection.input.schema();
        let columns = projection
            .expr
            .iter()
            .map(|expr| column_of(&input, schema, unalias(expr)).cloned())
            .collect::<Option<Vec<_>>>()?;
        let sql = format!("SELECT {} FROM {from}", select_list(&references(&columns)));
        Some(Relation { sql, columns })
    }

    fn filter(&mut self, filter: &Filter) -> Option<Relation> {
        let (from, columns) = self.derived(&filter.input)?;
        let (condition, mut bound) = FilterSql::translate_in(
            &columns,
            filter.input.schema(),
            self.params.len() + 1,
            &filter.predicate,
        )?;
        self.params.append(&mut bound);
        let sql = format!(
            "SELECT {} FROM {from} WHERE {condition}",
            select_list(&references(&columns))
        );
        Some(Relation { sql, columns })
    }

    fn aggregate(&mut self, aggregate: &Aggregate) -> Option<Relation> {
        let (from, input) = self.derived(&aggregate.input)?;
        let schema = aggregate.input.schema();
        let mut expressions = Vec::new();
        let mut columns = Vec::new();
        let mut groups = Vec::new();
        for expr in &aggregate.group_expr {
            let column = column_of(&input, schema, expr)?;
            if !has_exact_equality(column) {
                return None;
            }
            groups.push(column.select_expr());
            expressions.push(column.select_expr());
            columns.push(column.clone());
        }
        let outputs = aggregate.schema.fields().iter().skip(groups.len());
        for (expr, field) in aggregate.aggr_expr.iter().zip(outputs) {
            let Expr::AggregateFunction(function) = unalias(expr) else {
                return None;
            };
            let call = aggregate_sql(&input, schema, function, field.data_type())?;
            let column = PgColumn::derived(field.name(), field.data_type(), false, String::new())?;
            expressions.push(format!("({call})::{}", column.pg_type()));
            columns.push(column);
        }
        let mut sql = format!("SELECT {} FROM {from}", select_list(&expressions));
        if !groups.is_empty() {
            sql.push_str(" GROUP BY ");
            sql.push_str(&groups.join(", "));
        }
        Some(Relation { sql, columns })
    }

    fn sort(&mut self, sort: &Sort) -> Option<Relation> {
        let (from, columns) = self.derived(&sort.input)?;
        let schema = sort.input.schema();
        let terms = sort
            .expr
            .iter()
            .map(|term| {
                let column = column_of(&columns, schema, &term.expr)?;
                order_term(column, !term.asc, term.nulls_first)
            })
            .collect::<Option<Vec<_>>>()?;
        let mut sql = format!(
            "SELECT {} FROM {from} ORDER BY {}",
            select_list(&references(&columns)),
            terms.join(", ")
        );
        if let Some(fetch) = sort.fetch {
            sql.push_str(&format!(" LIMIT {fetch}"));
        }
        Some(Relation { sql, columns })
    }

    fn limit(&mut self, limit: &Limit) -> Option<Relation> {
        let SkipType::Literal(skip) = limit.get_skip_type().ok()? else {
            return None;
        };
        let FetchType::Literal(fetch) = limit.get_fetch_type().ok()? else {
            return None;
        };
        let (from, columns) = self.derived(&limit.input)?;
        // Both are numbers DataFusion computed, not user text.
        let mut sql = format!("SELECT {} FROM {from}", select_list(&references(&columns)));
        if let Some(fetch) = fetch {
            sql.push_str(&format!(" LIMIT {fetch}"));
        }
        if skip > 0 {
            sql.push_str(&format!(" OFFSET {skip}"));
        }
        Some(Relation { sql, columns })
    }

    fn join(&mut self, join: &Join) -> Option<Relation> {
        // Semi and anti joins (IN, EXISTS, NOT EXISTS) keep one side's rows: EXISTS over the
        // other. A null-aware anti join (NOT IN) is declined: its NULL rules differ.
        let kind = match join.join_type {
            JoinType::Inner => "JOIN",
            JoinType::Left => "LEFT JOIN",
            JoinType::Right => "RIGHT JOIN",
            JoinType::Full => "FULL JOIN",
            JoinType::LeftSemi | JoinType::RightSemi => "EXISTS",
            JoinType::LeftAnti | JoinType::RightAnti => "NOT EXISTS",
            _ => return None,
        };
        if join.null_aware {
            return None;
        }
        let kept_side = match join.join_type {
            JoinType::LeftSemi | JoinType::LeftAnti => Some(true),
            JoinType::RightSemi | JoinType::RightAnti => Some(false),
            _ => None,
        };
        let (left_from, left) = self.derived(&join.left)?;
        let (right_from, right) = self.derived(&join.right)?;
        let mut conditions = Vec::new();
        for (l, r) in &join.on {
            let l = column_of(&left, join.left.schema(), l)?;
            let r = column_of(&right, join.right.schema(), r)?;
            if !has_exact_equality(l)
                || !has_exact_equality(r)
                || l.arrow_field().data_type() != r.arrow_field().data_type()
            {
                return None;
            }
            let equals = match join.null_equality {
                NullEquality::NullEqualsNothing => "=",
                NullEquality::NullEqualsNull => "IS NOT DISTINCT FROM",
            };
            conditions.push(format!(
                "({} {equals} {})",
                l.select_expr(),
                r.select_expr()
            ));
        }
        let left_width = left.len();
        let both: Vec<PgColumn> = left.into_iter().chain(right).collect();
        if let Some(filter) = &join.filter {
            // The filter may read both sides, whatever the join keeps.
            let schema = join.left.schema().join(join.right.schema()).ok()?;
            let (condition, mut bound) =
                FilterSql::translate_in(&both, &schema, self.params.len() + 1, filter)?;
            self.params.append(&mut bound);
            conditions.push(condition);
        }
        if conditions.is_empty() {
            conditions.push("TRUE".to_owned());
        }
        let conditions = conditions.join(" AND ");
        let Some(keep_left) = kept_side else {
            let sql = format!(
                "SELECT {} FROM {left_from} {kind} {right_from} ON {conditions}",
                select_list(&references(&both))
            );
            return Some(Relation { sql, columns: both });
        };
        let (left, right) = both.split_at_checked(left_width)?;
        let (kept, kept_from, other_from) = if keep_left {
            (left.to_vec(), left_from, right_from)
        } else {
            (right.to_vec(), right_from, left_from)
        };
        let sql = format!(
            "SELECT {} FROM {kept_from} WHERE {kind} (SELECT FROM {other_from} WHERE {conditions})",
            select_list(&references(&kept))
        );
        Some(Relation { sql, columns: kept })
    }

    fn union(&mut self, union: &Union) -> Option<Relation> {
        let mut branches = Vec::new();
        let mut columns: Option<Vec<PgColumn>> = None;
        for input in &union.inputs {
            let relation = self.relation(input)?;
            // Every branch must already have the union's types: DataFusion's coercions are
            // projections this module does not translate.
            let same = relation
                .columns
                .iter()
                .zip(union.schema.fields())
                .all(|(c, f)| c.arrow_field().data_type() == f.data_type());
            if !same || relation.columns.len() != union.schema.fields().len() {
                return None;
            }
            branches.push(format!("({})", relation.sql));
            columns.get_or_insert(relation.columns);
        }
        Some(Relation {
            sql: branches.join(" UNION ALL "),
            columns: columns?,
        })
    }

    fn distinct(&mut self, input: &LogicalPlan) -> Option<Relation> {
        let (from, columns) = self.derived(input)?;
        if !columns.iter().all(has_exact_equality) {
            return None;
        }
        let sql = format!(
            "SELECT DISTINCT {} FROM {from}",
            select_list(&references(&columns))
        );
        Some(Relation { sql, columns })
    }
}

/// `expr` without its alias.
fn unalias(expr: &Expr) -> &Expr {
    match expr {
        Expr::Alias(Alias { expr, .. }) => unalias(expr),
        other => other,
    }
}

/// The column of `columns` (the fields of `schema`) that `expr` names, if it is a column.
fn column_of<'c>(columns: &'c [PgColumn], schema: &DFSchema, expr: &Expr) -> Option<&'c PgColumn> {
    match expr {
        Expr::Column(column) => columns.get(schema.maybe_index_of_column(column)?),
        _ => None,
    }
}

/// The SQL call of an aggregate function whose result DataFusion types as `output`.
fn aggregate_sql(
    input: &[PgColumn],
    schema: &DFSchema,
    function: &AggregateFunction,
    output: &DataType,
) -> Option<String> {
    let AggregateFunctionParams {
        args,
        distinct,
        filter: None,
        order_by,
        null_treatment: None,
    } = &function.params
    else {
        return None;
    };
    if !order_by.is_empty() {
        return None;
    }
    let name = function.func.name();
    let [arg] = args.as_slice() else {
        return None;
    };
    // count(*) arrives as count of a non-null literal.
    if name == "count"
        && !distinct
        && let Expr::Literal(value, _) = arg
    {
        return (!value.is_null()).then(|| "count(*)".to_owned());
    }
    let (argument, column) = argument_sql(input, schema, arg)?;
    let data_type = column.arrow_field().data_type().clone();
    let is_float = matches!(data_type, DataType::Float32 | DataType::Float64);
    if *distinct && !has_exact_equality(&column) {
        return None;
    }
    let distinct = if *distinct { "DISTINCT " } else { "" };
    match name {
        "count" => Some(format!("count({distinct}{argument})")),
        "sum" | "avg" if is_float => {
            // In float8 like DataFusion, whatever PostgreSQL would sum float4 in.
            if *output != DataType::Float64 {
                return None;
            }
            Some(format!("{name}({distinct}({argument})::float8)"))
        }
        "avg" if data_type.is_integer() && *output == DataType::Float64 => {
            // DataFusion averages integers as float8 values.
            Some(format!("avg({distinct}({argument})::float8)"))
        }
        "sum" if data_type.is_integer() || matches!(data_type, DataType::Decimal128(..)) => {
            Some(format!("sum({distinct}{argument})"))
        }
        "min" | "max" => {
            // PostgreSQL has no min/max of booleans or bytea.
            if !column.compares_exactly()
                || matches!(data_type, DataType::Boolean | DataType::Binary)
            {
                return None;
            }
            let collate = if data_type == DataType::Utf8 {
                " COLLATE \"C\""
            } else {
                ""
            };
            Some(format!("{name}({distinct}{argument}{collate})"))
        }
        _ => None,
    }
}

/// An aggregate's argument: a column, or a column cast to a type that holds every value of
/// its own exactly as PostgreSQL converts it (DataFusion widens `sum`'s and `avg`'s inputs),
/// with the column it reads as.
fn argument_sql(input: &[PgColumn], schema: &DFSchema, arg: &Expr) -> Option<(String, PgColumn)> {
    match arg {
        Expr::Column(_) => {
            let column = column_of(input, schema, arg)?;
            Some((column.select_expr(), column.clone()))
        }
        Expr::Cast(cast) => {
            let column = column_of(input, schema, &cast.expr)?;
            let from = column.arrow_field().data_type().clone();
            let to = cast.field.data_type();
            let exact = match (&from, to) {
                // Integers widen exactly; integers and float4 become float8 by rounding to
                // nearest in both engines.
                (from, DataType::Int64) => from.is_integer() && from != &DataType::UInt64,
                (from, DataType::Float64) => from.is_integer() || from == &DataType::Float32,
                (DataType::Decimal128(p1, s1), DataType::Decimal128(p2, s2)) => {
                    s1 == s2 && p1 <= p2
                }
                _ => false,
            };
            if !exact {
                return None;
            }
            let converted = PgColumn::derived(&column.name, to, false, String::new())?;
            Some((
                format!("({})::{}", column.select_expr(), converted.pg_type()),
                converted,
            ))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests;
