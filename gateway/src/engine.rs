//! DataFusion sessions over the catalog, and the read-only statement runner they share.

use std::sync::Arc;

use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::{SendableRecordBatchStream, SessionStateBuilder};
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::{DFParserBuilder, Statement};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use polygate_catalog::Catalog;
use polygate_catalog::pushdown::{with_connector_functions, with_sub_plan_pushdown};

use crate::errors::GatewayError;

/// The database name `polygate query` uses, and the one assumed when a client names none.
pub const DEFAULT_DATABASE: &str = "polygate";

/// What every session of one gateway shares: the catalog and DataFusion's runtime (memory
/// pool, object stores, caches).
#[derive(Debug, Clone)]
pub struct Engine {
    catalog: Arc<Catalog>,
    runtime: Arc<RuntimeEnv>,
}

impl Engine {
    /// An engine over `catalog`.
    pub fn new(catalog: Arc<Catalog>) -> Self {
        Self {
            catalog,
            runtime: Arc::new(RuntimeEnv::default()),
        }
    }

    /// The catalog this engine reads.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.catalog
    }

    /// A session for a client connected to `database`.
    ///
    /// The catalog is registered under the database's name, so that three-part names
    /// `database.source.table` resolve as in PostgreSQL, where the first part is the current
    /// database.
    pub fn session(&self, database: &str) -> SessionContext {
        let config = SessionConfig::new()
            .with_create_default_catalog_and_schema(false)
            .with_default_catalog_and_schema(database, "public")
            .with_information_schema(false);
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(Arc::clone(&self.runtime))
            .with_default_features();
        let ctx = SessionContext::new_with_state(
            with_connector_functions(with_sub_plan_pushdown(state)).build(),
        );
        ctx.register_catalog(database, self.catalog.catalog_provider());
        ctx
    }
}

/// Splits `sql` into statements (PostgreSQL dialect).
pub fn parse(sql: &str) -> Result<Vec<Statement>, GatewayError> {
    let statements = DFParserBuilder::new(sql)
        .with_dialect(&PostgreSqlDialect {})
        .build()
        .and_then(|mut parser| parser.parse_statements())?;
    Ok(statements.into_iter().collect())
}

/// Plans one statement, refusing anything that would write.
pub async fn plan(ctx: &SessionContext, statement: Statement) -> Result<LogicalPlan, GatewayError> {
    let plan = ctx.state().statement_to_plan(statement).await?;
    ensure_read_only(&plan)?;
    Ok(plan)
}

/// polygate never changes a store: DML, DDL and COPY are refused before anything runs.
fn ensure_read_only(plan: &LogicalPlan) -> Result<(), GatewayError> {
    let what = match plan {
        LogicalPlan::Dml(dml) => Some(dml.op.to_string()),
        LogicalPlan::Ddl(ddl) => Some(ddl.name().to_owned()),
        LogicalPlan::Copy(_) => Some("COPY".to_owned()),
        _ => None,
    };
    match what {
        Some(what) => Err(GatewayError::ReadOnly(what)),
        None => Ok(()),
    }
}

/// Optimizes and starts executing `plan`, returning its result as a stream of batches.
pub async fn execute(
    ctx: &SessionContext,
    plan: LogicalPlan,
) -> Result<SendableRecordBatchStream, GatewayError> {
    let frame = ctx.execute_logical_plan(plan).await?;
    Ok(frame.execute_stream().await?)
}
