//! DataFusion sessions over the catalog, and the read-only statement runner they share.

use std::sync::{Arc, RwLock};

use datafusion::execution::memory_pool::{FairSpillPool, MemoryPool, UnboundedMemoryPool};
use datafusion::execution::runtime_env::{RuntimeEnv, RuntimeEnvBuilder};
use datafusion::execution::{SendableRecordBatchStream, SessionStateBuilder};
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::parser::Statement as DfStatement;
use datafusion::sql::sqlparser::ast::Statement;
use polygate_catalog::pushdown::{with_connector_functions, with_sub_plan_pushdown};
use polygate_catalog::{Catalog, GatewayConfig};

use crate::errors::GatewayError;
use crate::introspection::{self, SEARCH_PATH_SCHEMA, SessionInfo, StaticTables};
use crate::parser::PgParser;
use crate::rewrite;
use crate::settings::{SessionDefaults, SettingError, Settings};
use crate::statement::Command;

/// The database name `polygate query` uses, and the one assumed when a client names none.
pub const DEFAULT_DATABASE: &str = "polygate";
/// The user name assumed when a client names none.
pub const DEFAULT_USER: &str = "polygate";

/// What every session of one gateway shares: the catalog, DataFusion's runtime (memory pool,
/// object stores, caches), and the gateway's limits.
#[derive(Debug, Clone)]
pub struct Engine {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    catalog: Arc<Catalog>,
    runtime: Arc<RuntimeEnv>,
    static_tables: StaticTables,
    parser: PgParser,
    defaults: SessionDefaults,
    max_result_rows: Option<u64>,
    /// When this engine was made: the gateway's start.
    started: std::time::SystemTime,
}

/// One session: its DataFusion context and what introspection reads of it.
#[derive(Clone)]
pub struct QuerySession {
    /// Plans and runs its queries.
    pub ctx: SessionContext,
    /// Its user, database and settings.
    pub info: Arc<SessionInfo>,
}

impl QuerySession {
    /// Is `name` one of DataFusion's own options (`datafusion.execution.target_partitions`)?
    pub fn is_datafusion_option(name: &str) -> bool {
        name.starts_with("datafusion.")
    }

    /// `SET datafusion.* = value`, or back to its default when `value` is `None`.
    pub fn set_datafusion_option(
        &self,
        name: &str,
        value: Option<&str>,
    ) -> Result<(), GatewayError> {
        let default = datafusion::config::ConfigOptions::new()
            .entries()
            .into_iter()
            .find(|entry| entry.key == name)
            .ok_or_else(|| SettingError::Unknown(name.to_owned()))?
            .value;
        let value = match value {
            // PostgreSQL's spelling of a boolean, as `SET x = true` reads.
            Some("on") => "true".to_owned(),
            Some("off") => "false".to_owned(),
            Some(value) => value.to_owned(),
            None => default.unwrap_or_default(),
        };
        let state = self.ctx.state_ref();
        let mut state = state.write();
        state
            .config_mut()
            .options_mut()
            .set(name, &value)
            .map_err(|_| SettingError::Invalid {
                name: name.to_owned(),
                value,
            })?;
        Ok(())
    }

    /// `SHOW datafusion.*`.
    pub fn datafusion_option(&self, name: &str) -> Result<String, GatewayError> {
        let entry = self
            .ctx
            .state()
            .config_options()
            .entries()
            .into_iter()
            .find(|entry| entry.key == name)
            .ok_or_else(|| SettingError::Unknown(name.to_owned()))?;
        Ok(entry.value.unwrap_or_default())
    }
}

impl Engine {
    /// An engine over `catalog`, with the limits of its `[gateway]` table.
    pub fn new(catalog: Arc<Catalog>) -> Result<Self, GatewayError> {
        let gateway = catalog.config().gateway.clone();
        Self::with_config(catalog, &gateway)
    }

    /// An engine over `catalog` with the limits of `gateway`.
    pub fn with_config(
        catalog: Arc<Catalog>,
        gateway: &GatewayConfig,
    ) -> Result<Self, GatewayError> {
        // Queries share the memory limit fairly; one over its share fails with 53200 while the
        // others go on.
        let pool: Arc<dyn MemoryPool> = match gateway.memory_limit {
            Some(bytes) => Arc::new(FairSpillPool::new(bytes)),
            None => Arc::new(UnboundedMemoryPool::default()),
        };
        let runtime = RuntimeEnvBuilder::new()
            .with_memory_pool(pool)
            .build_arc()?;
        Ok(Self {
            inner: Arc::new(Inner {
                catalog,
                runtime,
                static_tables: StaticTables::load()?,
                parser: PgParser::new(),
                defaults: SessionDefaults {
                    statement_timeout: gateway.statement_timeout,
                    idle_session_timeout: gateway.idle_session_timeout,
                },
                max_result_rows: gateway.max_result_rows,
                started: std::time::SystemTime::now(),
            }),
        })
    }

    /// The catalog this engine reads.
    pub fn catalog(&self) -> &Arc<Catalog> {
        &self.inner.catalog
    }

    /// The most rows one result may have, if the gateway limits them.
    pub fn max_result_rows(&self) -> Option<u64> {
        self.inner.max_result_rows
    }

    /// Settings for a new session, from the gateway's defaults.
    pub fn new_settings(&self) -> Settings {
        Settings::new(&self.inner.defaults)
    }

    /// A session for `user` connected to `database`.
    ///
    /// The catalog is registered under the database's name, so that three-part names
    /// `database.source.table` resolve as in PostgreSQL, where the first part is the current
    /// database. Unqualified names resolve through `search_path`.
    pub fn session(
        &self,
        database: &str,
        user: &str,
        settings: Settings,
    ) -> Result<QuerySession, GatewayError> {
        let config = SessionConfig::new()
            .with_create_default_catalog_and_schema(false)
            .with_default_catalog_and_schema(database, SEARCH_PATH_SCHEMA)
            .with_information_schema(false);
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(Arc::clone(&self.inner.runtime))
            .with_default_features();
        let ctx = SessionContext::new_with_state(
            with_connector_functions(with_sub_plan_pushdown(state)).build(),
        );
        let info = Arc::new(SessionInfo {
            user: user.to_owned(),
            database: database.to_owned(),
            settings: Arc::new(RwLock::new(settings)),
            sources: self.inner.catalog.catalog_provider(),
            started: self.inner.started,
        });
        introspection::install(&ctx, &self.inner.static_tables, Arc::clone(&info))?;
        Ok(QuerySession { ctx, info })
    }

    /// A session for the default user with the gateway's default settings (`polygate query`,
    /// benchmarks).
    pub fn default_session(&self, database: &str) -> Result<QuerySession, GatewayError> {
        self.session(database, DEFAULT_USER, self.new_settings())
    }

    /// Splits `sql` into statements and classifies them, refusing writes (25006).
    ///
    /// PostgreSQL clients' catalog queries are rewritten on the way into forms DataFusion
    /// plans (`'t'::regclass`, `OPERATOR(pg_catalog.~)`, `COLLATE`, `ANY(array)`).
    pub fn parse(&self, sql: &str) -> Result<Vec<Command>, GatewayError> {
        let statements = self
            .inner
            .parser
            .parse(sql)
            .map_err(|e| GatewayError::Syntax(e.to_string()))?;
        statements
            .into_iter()
            .map(|mut statement| {
                rewrite::rewrite(&mut statement);
                Command::classify(statement)
            })
            .collect()
    }
}

/// Plans one query.
pub async fn plan(ctx: &SessionContext, statement: Statement) -> Result<LogicalPlan, GatewayError> {
    let plan = ctx
        .state()
        .statement_to_plan(DfStatement::Statement(Box::new(statement)))
        .await?;
    ensure_read_only(&plan)?;
    Ok(plan)
}

/// A second guard after [`Command::classify`]: no plan that writes is ever executed.
fn ensure_read_only(plan: &LogicalPlan) -> Result<(), GatewayError> {
    let what = match plan {
        LogicalPlan::Dml(dml) => Some(dml.op.to_string()),
        LogicalPlan::Ddl(ddl) => Some(ddl.name().to_owned()),
        LogicalPlan::Copy(_) => Some("COPY".to_owned()),
        LogicalPlan::Statement(statement) => Some(statement.name().to_owned()),
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
