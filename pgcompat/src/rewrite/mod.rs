//! Rewrites that make PostgreSQL's SQL, as clients write it, plan in DataFusion with
//! PostgreSQL's answer. They come after `datafusion-pg-catalog`'s own (`::regclass` of a
//! literal, `OPERATOR(...)`, `COLLATE`, ...; see [`crate::parser`]) and are of two kinds:
//!
//! - **Syntax rules** ([`syntax::RULES`]) rewrite the statement before it is planned, one
//!   expression at a time: forms of PostgreSQL's grammar that DataFusion lacks, each with a
//!   form it has. They read nothing but the statement.
//! - **Plan rules** rewrite the resolved plan, as DataFusion analyzer rules:
//!   [`CatalogSubqueries`] reshapes scalar subqueries over the system catalogs that DataFusion
//!   cannot decorrelate as written, knowing a catalog table by the provider a scan reads and a
//!   correlation by DataFusion's outer references, not by names; then
//!   [`DistinctCorrelationNames`] renames the same-named columns of a correlated condition,
//!   which DataFusion's decorrelation would otherwise take for one.
//!
//! Every rule has a name, the reason it exists (the form, who writes it, why DataFusion needs
//! another), and its own table of cases in the tests.

mod catalog_subqueries;
mod correlation_names;
mod syntax;

use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::execution::SessionStateBuilder;
use datafusion::optimizer::AnalyzerRule;
use datafusion::optimizer::analyzer::Analyzer;
use datafusion::optimizer::analyzer::type_coercion::TypeCoercion;

use datafusion::sql::sqlparser::ast::{Expr, Statement, VisitMut, visit_expressions_mut};

pub use catalog_subqueries::CatalogSubqueries;
pub use correlation_names::DistinctCorrelationNames;
pub use syntax::{RULES, backslash_escaped};

/// `pg_if_found(found, value)`: `value` where `found` is true, else NULL (a CASE DataFusion
/// evaluates with subqueries in it); see [`CatalogSubqueries`].
pub const IF_FOUND_FUNCTION: &str = "pg_if_found";

/// `pg_empty_if_null(list)`: `list` with an empty list where it is NULL; see the rule
/// `array_of_unnest`.
pub const EMPTY_IF_NULL_FUNCTION: &str = "pg_empty_if_null";

/// `pg_expandarray(list)`: the list's elements as `(x, n)` structs, `n` the 1-based position;
/// see the rule `expand_array`.
pub const EXPAND_ARRAY_FUNCTION: &str = "pg_expandarray";

/// The function the rule `like_escape` calls; see [`backslash_escaped`].
pub const LIKE_ESCAPE_FUNCTION: &str = "pg_like_escape";

/// One rewrite of PostgreSQL syntax into syntax DataFusion plans.
#[derive(Debug, Clone, Copy)]
pub struct SyntaxRule {
    /// The rule's name.
    pub name: &'static str,
    /// The form it rewrites, the clients that write it, and why DataFusion needs another.
    pub reason: &'static str,
    /// The expression that replaces `expr`, or `None` where the rule does not apply.
    pub apply: fn(&Expr) -> Option<Expr>,
}

/// Applies every syntax rule to `statement`.
///
/// First, while the expressions are as written, select-list columns a rule will change get
/// the names PostgreSQL gives them. Then every expression, innermost first, goes through the
/// rules in order, each seeing what the one before made of it.
pub fn rewrite(statement: &mut Statement) {
    let _ = statement.visit(&mut syntax::PostgresColumnNames);
    let _ = visit_expressions_mut(statement, |expr| {
        for rule in RULES {
            if let Some(rewritten) = (rule.apply)(expr) {
                *expr = rewritten;
            }
        }
        ControlFlow::<()>::Continue(())
    });
}

/// `builder` with the plan rules among its analyzer rules, in order, before type coercion,
/// which then types what they make as it types what a client writes.
pub fn with_plan_rules(mut builder: SessionStateBuilder) -> SessionStateBuilder {
    let rules = builder
        .analyzer_rules()
        .get_or_insert_with(|| Analyzer::new().rules);
    let at = rules
        .iter()
        .position(|rule| rule.name() == TypeCoercion::new().name())
        .unwrap_or(rules.len());
    rules.insert(at, Arc::new(DistinctCorrelationNames));
    rules.insert(at, Arc::new(CatalogSubqueries::default()));
    builder
}

#[cfg(test)]
mod tests;
