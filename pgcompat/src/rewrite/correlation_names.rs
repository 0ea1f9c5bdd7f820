//! Correlated subqueries whose conditions read two inner columns of the same name, made
//! distinct before DataFusion decorrelates them.
//!
//! DataFusion 55 turns a correlated subquery into a join on its correlated conditions, under an
//! alias of the subquery (`__scalar_sq_1`) that keeps the columns' names and drops their
//! qualifiers. `(SELECT count(*) FROM t x, t y WHERE x.k = o.k AND y.k = o.j)` then joins on
//! `__scalar_sq_1.k = o.k AND __scalar_sq_1.k = o.j`, one column for two, and the answer is
//! silently wrong: rows repeated or lost. PostgreSQL answers it, and so must polygate. The rule
//! gives every inner column of a correlated condition whose name another one shares a name of
//! its own, computed by a projection under the condition: `x.k AS __pg_correlated_1`.

use std::collections::HashMap;

use datafusion::common::config::ConfigOptions;
use datafusion::common::tree_node::{Transformed, TransformedResult, TreeNode};
use datafusion::common::{Column, Result};
use datafusion::logical_expr::utils::{conjunction, split_conjunction_owned};
use datafusion::logical_expr::{Expr, LogicalPlan, LogicalPlanBuilder};
use datafusion::optimizer::AnalyzerRule;

/// The analyzer rule; see the module's documentation.
#[derive(Debug, Default)]
pub struct DistinctCorrelationNames;

impl AnalyzerRule for DistinctCorrelationNames {
    fn name(&self) -> &str {
        "pg_distinct_correlation_names"
    }

    fn analyze(&self, plan: LogicalPlan, _config: &ConfigOptions) -> Result<LogicalPlan> {
        let mut renamed = 0;
        plan.transform_up_with_subqueries(|node| distinct_names(node, &mut renamed))
            .data()
    }
}

/// The prefix of the names the rule gives.
const PREFIX: &str = "__pg_correlated_";

/// A filter whose correlated conditions read same-named inner columns, over a projection that
/// names each of those columns anew, under one that gives back the filter's columns; the
/// filter's conditions read the new names.
fn distinct_names(node: LogicalPlan, renamed: &mut usize) -> Result<Transformed<LogicalPlan>> {
    let LogicalPlan::Filter(filter) = &node else {
        return Ok(Transformed::no(node));
    };
    if !filter.predicate.contains_outer() {
        return Ok(Transformed::no(node));
    }
    let conjuncts = split_conjunction_owned(filter.predicate.clone());
    let mut inner: Vec<Column> = Vec::new();
    for conjunct in conjuncts.iter().filter(|c| c.contains_outer()) {
        for column in conjunct.column_refs() {
            if !inner.contains(column) {
                inner.push(column.clone());
            }
        }
    }
    let clashing: Vec<Column> = inner
        .iter()
        .filter(|column| inner.iter().filter(|c| c.name == column.name).count() > 1)
        .cloned()
        .collect();
    if clashing.is_empty() {
        return Ok(Transformed::no(node));
    }
    let input = filter.input.as_ref();
    let mut exprs: Vec<Expr> = input
        .schema()
        .columns()
        .into_iter()
        .map(Expr::Column)
        .collect();
    let mut names = HashMap::new();
    for column in clashing {
        *renamed += 1;
        let name = format!("{PREFIX}{renamed}");
        exprs.push(Expr::Column(column.clone()).alias(&name));
        names.insert(column, Column::new_unqualified(name));
    }
    let conjuncts = conjuncts
        .into_iter()
        .map(|conjunct| match conjunct.contains_outer() {
            false => Ok(conjunct),
            true => conjunct
                .transform(|e| {
                    Ok(match e {
                        Expr::Column(column) => match names.get(&column) {
                            Some(name) => Transformed::yes(Expr::Column(name.clone())),
                            None => Transformed::no(Expr::Column(column)),
                        },
                        other => Transformed::no(other),
                    })
                })
                .data(),
        })
        .collect::<Result<Vec<Expr>>>()?;
    let Some(predicate) = conjunction(conjuncts) else {
        return Ok(Transformed::no(node));
    };
    // The plan above sees the columns it saw: DataFusion's decorrelation adds the renamed
    // ones to this projection itself when it pulls the conditions up through it.
    let columns: Vec<Expr> = input
        .schema()
        .columns()
        .into_iter()
        .map(Expr::Column)
        .collect();
    let plan = LogicalPlanBuilder::from(input.clone())
        .project(exprs)?
        .filter(predicate)?
        .project(columns)?
        .build()?;
    Ok(Transformed::yes(plan))
}
