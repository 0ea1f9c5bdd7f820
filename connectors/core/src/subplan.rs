//! Whole sub-plans run by one source: the mechanism every connector plugs its native query
//! builder into (SQL for PostgreSQL, a pipeline for MongoDB, a search body for Elasticsearch).
//!
//! [`SubPlanRule`] is a DataFusion optimizer rule. It runs after DataFusion's own rules, so
//! the plans it sees already have their filters pushed into the scans and their columns pruned.
//! Walking the plan from the root, it offers each sub-tree whose table scans all belong to one
//! source (the same [`SubPlanSource`] object) to that source, largest first. A source that can
//! run the whole sub-tree with exactly DataFusion's semantics returns a [`NativeQuery`]; the
//! sub-tree is then replaced by a [`SubPlanNode`], which [`SubPlanPlanner`] turns into the
//! query's execution plan. A source that cannot returns `None`, and its parts are offered in
//! turn.
//!
//! Only sub-trees that hold work a scan alone cannot take (an aggregate, a join, a union, a
//! `DISTINCT`) are offered: filters, projections, ORDER BY and LIMIT over one table are pushed
//! into the scan by the table provider itself.

use std::cmp::Ordering;
use std::fmt::{self, Debug};
use std::hash::{Hash, Hasher};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::DataType;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::tree_node::{Transformed, TreeNode, TreeNodeRecursion};
use datafusion::common::{DFSchemaRef, Result, internal_err};
use datafusion::datasource::source_as_provider;
use datafusion::execution::context::QueryPlanner;
use datafusion::logical_expr::physical_planning_context::PhysicalPlanningContext;
use datafusion::logical_expr::{
    Expr, Extension, LogicalPlan, UserDefinedLogicalNode, UserDefinedLogicalNodeCore,
};
use datafusion::optimizer::{OptimizerConfig, OptimizerRule};
use datafusion::physical_plan::ExecutionPlan;
use datafusion::physical_planner::{DefaultPhysicalPlanner, ExtensionPlanner, PhysicalPlanner};

use crate::SourceSettings;

/// A source able to run sub-plans over its own tables as one native query.
///
/// Sub-plans combine only tables whose providers return the same `SubPlanSource` object (the
/// same `Arc`): one source of catalog.toml, in one configuration.
pub trait SubPlanSource: Debug + Send + Sync {
    /// The source: its name, for EXPLAIN, and whether it runs work in the store (the rule
    /// offers nothing to a source that does not).
    fn settings(&self) -> &SourceSettings;

    /// Compiles `plan` into one native query, or returns `None` when any part of it cannot
    /// be run with exactly DataFusion's semantics. Every table scan of `plan` belongs to this
    /// source.
    fn compile(&self, plan: &LogicalPlan) -> Option<Arc<dyn NativeQuery>>;
}

/// A sub-plan compiled for its source.
pub trait NativeQuery: Debug + Send + Sync {
    /// The query as EXPLAIN shows it: the native text with values shown as placeholders and
    /// their types, never their contents.
    fn describe(&self) -> String;

    /// The execution plan that runs the query and streams its rows.
    fn execution_plan(&self, session: &dyn Session) -> Result<Arc<dyn ExecutionPlan>>;
}

/// Whether a compiled query's outputs, of `types`, are exactly the columns DataFusion planned
/// for `plan`: a query that would return another type (a count as a double, say) is declined.
pub fn returns_planned_types(
    plan: &LogicalPlan,
    types: impl ExactSizeIterator<Item = DataType>,
) -> bool {
    let expected = plan.schema();
    expected.fields().len() == types.len()
        && expected
            .fields()
            .iter()
            .zip(types)
            .all(|(field, output)| field.data_type() == &output)
}

/// Finds the [`SubPlanSource`] behind a table provider of one connector kind, if it is one of
/// that kind's.
pub type SourceFinder = fn(&dyn TableProvider) -> Option<Arc<dyn SubPlanSource>>;

/// The optimizer rule that hands single-source sub-plans to their source.
#[derive(Debug)]
pub struct SubPlanRule {
    finders: Vec<SourceFinder>,
}

impl SubPlanRule {
    /// A rule that recognises the providers `finders` know.
    pub fn new(finders: Vec<SourceFinder>) -> Self {
        Self { finders }
    }

    /// The source of a provider, if a finder knows it.
    fn source_of(&self, provider: &dyn TableProvider) -> Option<Arc<dyn SubPlanSource>> {
        self.finders.iter().find_map(|find| find(provider))
    }

    /// The one source all of `plan`'s table scans belong to, if there is one and every node
    /// of the plan is a plain relational operator (no extension nodes, no subquery plans).
    fn single_source(&self, plan: &LogicalPlan) -> Option<Arc<dyn SubPlanSource>> {
        let mut found: Option<Arc<dyn SubPlanSource>> = None;
        let mut alone = true;
        plan.apply(|node| {
            let source = match node {
                LogicalPlan::TableScan(scan) => source_as_provider(&scan.source)
                    .ok()
                    .and_then(|provider| self.source_of(provider.as_ref())),
                LogicalPlan::Extension(_)
                | LogicalPlan::Subquery(_)
                | LogicalPlan::RecursiveQuery(_)
                | LogicalPlan::EmptyRelation(_)
                | LogicalPlan::Values(_) => None,
                _ => return Ok(TreeNodeRecursion::Continue),
            };
            match (source, &found) {
                (Some(source), None) => found = Some(source),
                (Some(source), Some(first)) if same_source(&source, first) => {}
                _ => alone = false,
            }
            Ok(if alone {
                TreeNodeRecursion::Continue
            } else {
                TreeNodeRecursion::Stop
            })
        })
        .ok()?;
        if alone { found } else { None }
    }
}

/// Whether two handles are the same source object.
fn same_source(a: &Arc<dyn SubPlanSource>, b: &Arc<dyn SubPlanSource>) -> bool {
    std::ptr::addr_eq(Arc::as_ptr(a), Arc::as_ptr(b))
}

/// Whether `plan` holds work that a table provider cannot take by itself.
fn worth_offering(plan: &LogicalPlan) -> bool {
    plan.exists(|node| {
        Ok(matches!(
            node,
            LogicalPlan::Aggregate(_)
                | LogicalPlan::Join(_)
                | LogicalPlan::Union(_)
                | LogicalPlan::Distinct(_)
        ))
    })
    .unwrap_or(false)
}

impl OptimizerRule for SubPlanRule {
    fn name(&self) -> &str {
        "single_source_sub_plans"
    }

    fn supports_rewrite(&self) -> bool {
        true
    }

    fn rewrite(
        &self,
        plan: LogicalPlan,
        _config: &dyn OptimizerConfig,
    ) -> Result<Transformed<LogicalPlan>> {
        plan.transform_down(|node| {
            if matches!(node, LogicalPlan::Extension(_)) || !worth_offering(&node) {
                return Ok(Transformed::no(node));
            }
            let Some(source) = self.single_source(&node) else {
                return Ok(Transformed::no(node));
            };
            if !source.settings().pushdown {
                return Ok(Transformed::no(node));
            }
            let Some(query) = source.compile(&node) else {
                return Ok(Transformed::no(node));
            };
            let replaced = SubPlanNode {
                source: source.settings().name.clone(),
                schema: Arc::clone(node.schema()),
                plan: Arc::new(node),
                query,
            };
            Ok(Transformed::new(
                LogicalPlan::Extension(Extension {
                    node: Arc::new(replaced),
                }),
                true,
                TreeNodeRecursion::Jump,
            ))
        })
    }
}

/// A sub-plan its source runs as one native query. A leaf: DataFusion's rules do not look
/// inside it.
#[derive(Debug, Clone)]
pub struct SubPlanNode {
    source: String,
    schema: DFSchemaRef,
    /// The sub-plan it replaces, which defines its identity.
    plan: Arc<LogicalPlan>,
    query: Arc<dyn NativeQuery>,
}

impl PartialEq for SubPlanNode {
    fn eq(&self, other: &Self) -> bool {
        self.source == other.source && self.plan == other.plan
    }
}

impl Eq for SubPlanNode {}

impl PartialOrd for SubPlanNode {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        match self.source.partial_cmp(&other.source)? {
            Ordering::Equal => self.plan.partial_cmp(&other.plan),
            unequal => Some(unequal),
        }
    }
}

impl Hash for SubPlanNode {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.source.hash(state);
        self.plan.hash(state);
    }
}

impl UserDefinedLogicalNodeCore for SubPlanNode {
    fn name(&self) -> &str {
        "SubPlan"
    }

    fn inputs(&self) -> Vec<&LogicalPlan> {
        vec![]
    }

    fn schema(&self) -> &DFSchemaRef {
        &self.schema
    }

    fn expressions(&self) -> Vec<Expr> {
        vec![]
    }

    fn fmt_for_explain(&self, f: &mut fmt::Formatter) -> fmt::Result {
        write!(
            f,
            "SubPlan: source={}, query={}",
            self.source,
            self.query.describe()
        )
    }

    fn with_exprs_and_inputs(&self, exprs: Vec<Expr>, inputs: Vec<LogicalPlan>) -> Result<Self> {
        if !exprs.is_empty() || !inputs.is_empty() {
            return internal_err!("SubPlan has no expressions or inputs to replace");
        }
        Ok(self.clone())
    }
}

/// Plans [`SubPlanNode`]s: each becomes its native query's execution plan.
#[derive(Debug, Default)]
pub struct SubPlanPlanner;

#[async_trait]
impl ExtensionPlanner for SubPlanPlanner {
    async fn plan_extension(
        &self,
        _planner: &dyn PhysicalPlanner,
        node: &dyn UserDefinedLogicalNode,
        _logical_inputs: &[&LogicalPlan],
        _physical_inputs: &[Arc<dyn ExecutionPlan>],
        session: &dyn Session,
        _planning_ctx: &PhysicalPlanningContext,
    ) -> Result<Option<Arc<dyn ExecutionPlan>>> {
        match node.as_any().downcast_ref::<SubPlanNode>() {
            Some(node) => node.query.execution_plan(session).map(Some),
            None => Ok(None),
        }
    }
}

/// DataFusion's query planner, with [`SubPlanPlanner`] for sub-plan nodes.
#[derive(Debug, Default)]
pub struct SubPlanQueryPlanner;

#[async_trait]
impl QueryPlanner for SubPlanQueryPlanner {
    async fn create_physical_plan(
        &self,
        logical_plan: &LogicalPlan,
        session: &dyn Session,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        DefaultPhysicalPlanner::with_extension_planners(vec![Arc::new(SubPlanPlanner)])
            .create_physical_plan(logical_plan, session)
            .await
    }
}
