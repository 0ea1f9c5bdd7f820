//! Scalar subqueries over the system catalogs, reshaped on the resolved plan into ones
//! DataFusion decorrelates.
//!
//! Clients introspect with correlated lookups such as SQLAlchemy's and pgjdbc's
//! `(SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d WHERE d.adrelid = a.attrelid AND
//! d.adnum = a.attnum AND a.atthasdef)`. PostgreSQL runs them row by row; DataFusion turns them
//! into joins, and only for some shapes. The rules below give them those shapes, and apply only
//! where every table the subquery reads is a system table ([`SystemTable`], known by the
//! provider its scans read) and the subquery is correlated (DataFusion found outer
//! references in it). A subquery over a source is never touched: there PostgreSQL's "more than
//! one row" error must not become a silent answer, while a catalog lookup is by key and finds
//! at most one row.
//!
//! | rule | PostgreSQL form | reshaped as |
//! |---|---|---|
//! | `guarded_lookup` | `CASE WHEN c THEN (lookup) [ELSE NULL] END`, `c` not TRUE where a lookup of its own finds nothing | the lookup filtered by `c` (lookups in `c` join its FROM) |
//! | `fold_outer_conditions` | a condition on the enclosing row alone; a comparison of inner and outer values other than `=` | folded into an `inner = outer` condition |
//! | `aggregate_lookup` | a lookup of one value | `first_value` of it |
//! | `lift_outer_columns` | a lookup whose value reads the enclosing row | the value computed outside, each inner column looked up on its own |

use std::sync::Arc;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchemaRef, Result, Spans};
use datafusion::functions_aggregate::first_last::first_value;
use datafusion::logical_expr::expr::ScalarFunction;
use datafusion::logical_expr::expr_rewriter::NamePreserver;
use datafusion::logical_expr::utils::{conjunction, split_conjunction_owned};
use datafusion::logical_expr::{
    BinaryExpr, Case, Expr, LogicalPlan, LogicalPlanBuilder, Operator, ScalarUDF, Subquery, lit,
};
use datafusion::optimizer::AnalyzerRule;

use crate::introspection::SystemTable;

/// The analyzer rule; see the module's documentation.
#[derive(Debug)]
pub struct CatalogSubqueries {
    /// `pg_if_found`, which `lift_outer_columns` calls.
    if_found: Arc<ScalarUDF>,
}

impl Default for CatalogSubqueries {
    fn default() -> Self {
        Self {
            if_found: Arc::new(crate::introspection::if_found_udf()),
        }
    }
}

impl AnalyzerRule for CatalogSubqueries {
    fn name(&self) -> &str {
        "pg_catalog_subqueries"
    }

    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        plan.transform_up_with_subqueries(|node| self.rewrite_node(node))
            .data()
    }
}

impl CatalogSubqueries {
    /// Rewrites the expressions of `node`, keeping their names, where `node` reads one input
    /// (the enclosing row of its subqueries is a row of that input).
    fn rewrite_node(&self, node: LogicalPlan) -> Result<Transformed<LogicalPlan>> {
        let outer = match node.inputs().as_slice() {
            [input] => Arc::clone(input.schema()),
            _ => return Ok(Transformed::no(node)),
        };
        if !has_subquery(&node) {
            return Ok(Transformed::no(node));
        }
        let names = NamePreserver::new(&node);
        let rewritten = node.map_expressions(|expr| {
            let name = names.save(&expr);
            let rewritten = expr
                .transform_down(|e| Ok(guarded_lookup(e, &outer)))?
                .transform_data(|e| e.transform_up(|e| Ok(self.reshape(e, &outer))))?;
            Ok(rewritten.update_data(|e| name.restore(e)))
        })?;
        match rewritten.transformed {
            true => rewritten.map_data(LogicalPlan::recompute_schema),
            false => Ok(rewritten),
        }
    }

    /// `aggregate_lookup` or `lift_outer_columns`, after `fold_outer_conditions`.
    fn reshape(&self, expr: Expr, outer: &DFSchemaRef) -> Transformed<Expr> {
        let Expr::ScalarSubquery(subquery) = &expr else {
            return Transformed::no(expr);
        };
        let Some(lookup) = Lookup::of(subquery) else {
            return Transformed::no(expr);
        };
        let lookup = Lookup {
            predicate: lookup.predicate.map(fold_outer_conditions),
            ..lookup
        };
        let reshaped = match Side::of(&lookup.value) {
            Side::Outer | Side::Mixed => self.lift_outer_columns(lookup, outer),
            _ => lookup.first_value(lookup.value.clone()),
        };
        match reshaped {
            Some(reshaped) => Transformed::yes(reshaped),
            None => Transformed::no(expr),
        }
    }

    /// A lookup whose value reads the enclosing row (SQLAlchemy's `(SELECT
    /// json_build_object('always', a.attidentity = 'a', 'start', s.seqstart) FROM pg_sequence
    /// s WHERE s.seqrelid = a.attrelid)`) as that value computed in the enclosing query, each
    /// inner column a lookup of its own, and NULL where the lookup finds no row:
    /// `pg_if_found((lookup of true), json_build_object('always', a.attidentity = 'a',
    /// 'start', (lookup of s.seqstart)))`.
    fn lift_outer_columns(&self, lookup: Lookup, outer: &DFSchemaRef) -> Option<Expr> {
        let mut lifted = true;
        let value = lookup
            .value
            .clone()
            .transform_up(|e| {
                Ok(match e {
                    Expr::Column(column) => match lookup.first_value(Expr::Column(column)) {
                        Some(inner) => Transformed::yes(inner),
                        None => {
                            lifted = false;
                            Transformed::no(lit(false))
                        }
                    },
                    // Only references to the enclosing query itself can move into it.
                    Expr::OuterReferenceColumn(_, column) if outer.has_column(&column) => {
                        Transformed::yes(Expr::Column(column))
                    }
                    Expr::OuterReferenceColumn(..) => {
                        lifted = false;
                        Transformed::no(e)
                    }
                    other => Transformed::no(other),
                })
            })
            .data()
            .ok()?;
        let found = lookup.first_value(lit(true))?;
        lifted.then(|| {
            Expr::ScalarFunction(ScalarFunction::new_udf(
                Arc::clone(&self.if_found),
                vec![found, value],
            ))
        })
    }
}

/// A correlated scalar subquery over system tables, as the planner builds it:
/// `Projection: value` over an optional `Filter: predicate` over joins and scans of system
/// tables, with no outer reference below the filter.
#[derive(Debug, Clone)]
struct Lookup {
    value: Expr,
    predicate: Option<Expr>,
    from: LogicalPlan,
}

impl Lookup {
    fn of(subquery: &Subquery) -> Option<Self> {
        if subquery.outer_ref_columns.is_empty() {
            return None;
        }
        Self::of_plan(&subquery.subquery)
    }

    fn of_plan(plan: &LogicalPlan) -> Option<Self> {
        let LogicalPlan::Projection(projection) = plan else {
            return None;
        };
        let [value] = projection.expr.as_slice() else {
            return None;
        };
        let value = match value {
            Expr::Alias(alias) => alias.expr.as_ref().clone(),
            other => other.clone(),
        };
        let (predicate, from) = match projection.input.as_ref() {
            LogicalPlan::Filter(filter) => (Some(filter.predicate.clone()), &filter.input),
            _ => (None, &projection.input),
        };
        reads_only_system_tables(from).then(|| Self {
            value,
            predicate,
            from: from.as_ref().clone(),
        })
    }

    /// `(SELECT first_value(value) FROM ... WHERE predicate)`: at most one row, as DataFusion
    /// wants a correlated scalar subquery.
    fn first_value(&self, value: Expr) -> Option<Expr> {
        let mut plan = LogicalPlanBuilder::from(self.from.clone());
        if let Some(predicate) = &self.predicate {
            plan = plan.filter(predicate.clone()).ok()?;
        }
        let plan = plan
            .aggregate(Vec::<Expr>::new(), vec![first_value(value, vec![])])
            .ok()?
            .build()
            .ok()?;
        Some(scalar_subquery(plan))
    }
}

/// `CASE WHEN c THEN (lookup) [ELSE NULL] END` as the lookup filtered by `c`: DataFusion cannot
/// run a correlated subquery inside CASE, and the lookup finds no row, hence NULL, where `c`
/// does not hold.
///
/// The lookups of `c` itself (SQLAlchemy's `(SELECT typcollation FROM pg_type WHERE oid =
/// a.atttypid) != a.attcollation`) join the subquery's FROM, their conditions its WHERE, and
/// their value takes their place: where one finds no row, `c` was NULL and the answer NULL;
/// now no row is left, and the answer is NULL.
fn guarded_lookup(expr: Expr, outer: &DFSchemaRef) -> Transformed<Expr> {
    let Expr::Case(Case {
        expr: None,
        when_then_expr,
        else_expr,
    }) = &expr
    else {
        return Transformed::no(expr);
    };
    let else_is_null = match else_expr.as_deref() {
        None => true,
        Some(Expr::Literal(value, _)) => value.is_null(),
        Some(_) => false,
    };
    let [(condition, then)] = when_then_expr.as_slice() else {
        return Transformed::no(expr);
    };
    let (true, Expr::ScalarSubquery(subquery)) = (else_is_null, then.as_ref()) else {
        return Transformed::no(expr);
    };
    let Some(lookup) = Lookup::of(subquery) else {
        return Transformed::no(expr);
    };
    match guard(lookup, condition, outer) {
        Some(guarded) => Transformed::yes(guarded),
        None => Transformed::no(expr),
    }
}

fn guard(lookup: Lookup, condition: &Expr, outer: &DFSchemaRef) -> Option<Expr> {
    if condition.contains_outer() || !not_true_without(condition) {
        return None;
    }
    let mut from = LogicalPlanBuilder::from(lookup.from);
    let mut conditions: Vec<Expr> = lookup.predicate.into_iter().collect();
    let mut movable = true;
    let condition = condition
        .clone()
        .transform_up(|e| {
            Ok(match e {
                Expr::ScalarSubquery(ref inner) => {
                    let joined = Lookup::of_plan(&inner.subquery)
                        .and_then(|l| Some((from.clone().cross_join(l.from.clone()).ok()?, l)));
                    match joined {
                        Some((joined, l)) => {
                            from = joined;
                            conditions.extend(l.predicate);
                            Transformed::yes(l.value)
                        }
                        None => {
                            movable = false;
                            Transformed::no(e)
                        }
                    }
                }
                Expr::Column(column) => match outer.qualified_field_from_column(&column) {
                    Ok((_, field)) => {
                        Transformed::yes(Expr::OuterReferenceColumn(Arc::clone(field), column))
                    }
                    Err(_) => {
                        movable = false;
                        Transformed::no(Expr::Column(column))
                    }
                },
                Expr::Exists(_) | Expr::InSubquery(_) | Expr::SetComparison(_) => {
                    movable = false;
                    Transformed::no(e)
                }
                other => Transformed::no(other),
            })
        })
        .data()
        .ok()?;
    if !movable {
        return None;
    }
    conditions.push(condition);
    let plan = from
        .filter(conjunction(conditions)?)
        .ok()?
        .project(vec![lookup.value])
        .ok()?
        .build()
        .ok()?;
    Some(scalar_subquery(plan))
}

/// Is `condition` short of TRUE whenever a subquery in it is NULL? Only then may a lookup
/// that finds no row (NULL) become a join that leaves no row: `(lookup) = 'x' AND p` yes,
/// `(lookup) IS NULL` or `(lookup) = 'x' OR p` no.
fn not_true_without(condition: &Expr) -> bool {
    match condition {
        Expr::BinaryExpr(BinaryExpr {
            left,
            op: Operator::And,
            right,
        }) => not_true_without(left) && not_true_without(right),
        other => null_without(other),
    }
}

/// Is `expr` NULL whenever a subquery in it is NULL (comparisons, arithmetic, casts, negation
/// over the subqueries), or free of subqueries?
fn null_without(expr: &Expr) -> bool {
    match expr {
        Expr::ScalarSubquery(_) => true,
        Expr::BinaryExpr(BinaryExpr {
            left,
            op:
                Operator::Eq
                | Operator::NotEq
                | Operator::Lt
                | Operator::LtEq
                | Operator::Gt
                | Operator::GtEq
                | Operator::Plus
                | Operator::Minus
                | Operator::Multiply
                | Operator::Divide
                | Operator::Modulo
                | Operator::StringConcat,
            right,
        }) => null_without(left) && null_without(right),
        Expr::Not(inner) | Expr::Negative(inner) => null_without(inner),
        Expr::Cast(cast) => null_without(&cast.expr),
        Expr::TryCast(cast) => null_without(&cast.expr),
        other => !other.exists(|e| Ok(is_subquery(e))).unwrap_or(true),
    }
}

/// Rewrites the conditions of a lookup so that DataFusion can decorrelate them.
///
/// DataFusion joins a correlated subquery on its conditions that compare inner columns with
/// outer values. It cannot plan a condition on outer columns alone (psql's `... AND
/// a.atthasdef`), nor a comparison of outer and inner values other than those (`a.attcollation
/// <> t.typcollation`). With some `inner = outer` condition among the conjuncts:
/// - an outer-only condition `p` is folded into it as `inner = CASE WHEN p THEN outer END`:
///   when `p` does not hold, no row matches, as before;
/// - in the other conditions, `outer` is replaced by `inner`, equal to it in every row that
///   matches.
fn fold_outer_conditions(predicate: Expr) -> Expr {
    let conjuncts = split_conjunction_owned(predicate.clone());
    let pairs: Vec<(Expr, Expr)> = conjuncts.iter().filter_map(equality).collect();
    if pairs.is_empty() {
        return predicate;
    }
    // An equality is Mixed, so it stays among `kept`, and outer-only conditions always have
    // one to fold into.
    let (outer_only, mut kept): (Vec<Expr>, Vec<Expr>) = conjuncts
        .into_iter()
        .partition(|c| Side::of(c) == Side::Outer);
    for conjunct in &mut kept {
        if Side::of(conjunct) != Side::Mixed || equality(conjunct).is_some() {
            continue;
        }
        let replaced = conjunct.clone().transform_down(|e| {
            Ok(match pairs.iter().find(|(_, outer)| *outer == e) {
                Some((inner, _)) => Transformed::new(inner.clone(), true, TreeNodeRecursion::Jump),
                None => Transformed::no(e),
            })
        });
        if let Ok(replaced) = replaced {
            *conjunct = replaced.data;
        }
    }
    if let Some(condition) = conjunction(outer_only)
        && let Some(Expr::BinaryExpr(BinaryExpr { left, right, .. })) =
            kept.iter_mut().find(|c| equality(c).is_some())
    {
        let outer = if Side::of(left) == Side::Outer {
            left
        } else {
            right
        };
        let guarded = Expr::Case(Case {
            expr: None,
            when_then_expr: vec![(Box::new(condition), outer.clone())],
            else_expr: None,
        });
        **outer = guarded;
    }
    conjunction(kept).unwrap_or(predicate)
}

/// `(inner, outer)` of an `inner = outer` condition.
fn equality(expr: &Expr) -> Option<(Expr, Expr)> {
    let Expr::BinaryExpr(BinaryExpr {
        left,
        op: Operator::Eq,
        right,
    }) = expr
    else {
        return None;
    };
    match (Side::of(left), Side::of(right)) {
        (Side::Inner, Side::Outer) => Some((left.as_ref().clone(), right.as_ref().clone())),
        (Side::Outer, Side::Inner) => Some((right.as_ref().clone(), left.as_ref().clone())),
        _ => None,
    }
}

/// Which side of a correlated subquery an expression reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    /// No column at all.
    Constant,
    /// Only the subquery's own tables.
    Inner,
    /// Only the enclosing query's columns.
    Outer,
    /// Both.
    Mixed,
    /// A subquery: not touched.
    Unknown,
}

impl Side {
    fn of(expr: &Expr) -> Self {
        let (mut inner, mut outer, mut unknown) = (false, false, false);
        let _ = expr.apply(|e| {
            match e {
                Expr::Column(_) => inner = true,
                Expr::OuterReferenceColumn(..) => outer = true,
                e if is_subquery(e) => unknown = true,
                _ => {}
            }
            Ok(TreeNodeRecursion::Continue)
        });
        match (unknown, inner, outer) {
            (true, _, _) => Self::Unknown,
            (false, true, true) => Self::Mixed,
            (false, false, true) => Self::Outer,
            (false, true, false) => Self::Inner,
            (false, false, false) => Self::Constant,
        }
    }
}

/// Does `plan` read system tables, at least one, through joins and aliases only, with no
/// reference to an enclosing query?
fn reads_only_system_tables(plan: &LogicalPlan) -> bool {
    let (mut scans, mut only) = (0, true);
    let _ = plan.apply(|node| {
        match node {
            LogicalPlan::TableScan(scan) if SystemTable::is_source(&scan.source) => scans += 1,
            LogicalPlan::SubqueryAlias(_) | LogicalPlan::Join(_) => {}
            _ => only = false,
        }
        only &= !node.contains_outer_reference();
        Ok(match only {
            true => TreeNodeRecursion::Continue,
            false => TreeNodeRecursion::Stop,
        })
    });
    only && scans > 0
}

/// Does any expression of `node` hold a scalar subquery?
fn has_subquery(node: &LogicalPlan) -> bool {
    let mut found = false;
    let _ = node.apply_expressions(|expr| {
        found |= expr
            .exists(|e| Ok(matches!(e, Expr::ScalarSubquery(_))))
            .unwrap_or(false);
        Ok(match found {
            true => TreeNodeRecursion::Stop,
            false => TreeNodeRecursion::Continue,
        })
    });
    found
}

/// Is `expr` a subquery of any kind (scalar, EXISTS, IN, ANY/ALL)?
fn is_subquery(expr: &Expr) -> bool {
    matches!(
        expr,
        Expr::ScalarSubquery(_) | Expr::Exists(_) | Expr::InSubquery(_) | Expr::SetComparison(_)
    )
}

fn scalar_subquery(plan: LogicalPlan) -> Expr {
    Expr::ScalarSubquery(Subquery {
        outer_ref_columns: plan.all_out_ref_exprs(),
        subquery: Arc::new(plan),
        spans: Spans::new(),
    })
}
