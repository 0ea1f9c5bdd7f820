//! Sub-plan pushdown for every connector kind that supports it.

use std::sync::Arc;

use datafusion::execution::SessionStateBuilder;
use polygate_connector_core::subplan::{SubPlanQueryPlanner, SubPlanRule};

use crate::kinds::KINDS;

/// Adds the rule that hands single-source sub-plans (aggregates, joins, unions) to the
/// sources able to run them, and the planner for the nodes it leaves.
///
/// The rule goes after DataFusion's own optimizer rules, so that the sub-plans it sees have
/// their filters pushed and their columns pruned.
pub fn with_sub_plan_pushdown(builder: SessionStateBuilder) -> SessionStateBuilder {
    let finders = KINDS.iter().filter_map(|kind| (kind.source_finder)());
    builder
        .with_optimizer_rule(Arc::new(SubPlanRule::new(finders.collect())))
        .with_query_planner(Arc::new(SubPlanQueryPlanner))
}

/// Adds the SQL functions of every connector kind (full-text search), so that a query can
/// use them whichever sources it reads.
pub fn with_connector_functions(mut builder: SessionStateBuilder) -> SessionStateBuilder {
    builder
        .scalar_functions()
        .get_or_insert_with(Vec::new)
        .extend(KINDS.iter().flat_map(|kind| (kind.functions)()));
    builder
}
