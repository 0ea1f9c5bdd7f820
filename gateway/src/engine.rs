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
use polygate_pgcompat::introspection::{self, SEARCH_PATH_SCHEMA, SessionInfo, StaticTables};
use polygate_pgcompat::parser::PgParser;
use polygate_pgcompat::rewrite::with_plan_rules;
use polygate_pgcompat::settings::{SessionDefaults, SettingError, Settings};
use polygate_pgcompat::statement::Command;

use crate::errors::GatewayError;

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

/// The DataFusion options a client may `SET`, and the values each takes. The rest are the
/// gateway's: `batch_size` sizes every scan's buffers and `target_partitions` the number of
/// remote statements, cursors and search slices one query opens, so an unbounded value from
/// one client could exhaust the gateway's memory or a store's limits for everyone.
pub const CLIENT_OPTIONS: &[(&str, ClientOption)] = &[
    // A store's own limits stay far above this (Elasticsearch allows 300 open slices).
    (
        "datafusion.execution.target_partitions",
        ClientOption::Integer { min: 1, max: 64 },
    ),
    (
        "datafusion.execution.batch_size",
        ClientOption::Integer {
            min: 1,
            max: 65_536,
        },
    ),
    (
        "datafusion.explain.physical_plan_only",
        ClientOption::Boolean,
    ),
    (
        "datafusion.explain.logical_plan_only",
        ClientOption::Boolean,
    ),
    ("datafusion.explain.show_statistics", ClientOption::Boolean),
    ("datafusion.explain.show_schema", ClientOption::Boolean),
    ("datafusion.explain.show_sizes", ClientOption::Boolean),
    (
        "datafusion.explain.format",
        ClientOption::OneOf(&["indent", "tree"]),
    ),
];

/// The values a client may give one DataFusion option.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ClientOption {
    /// A whole number in `min..=max`.
    Integer {
        /// The smallest value.
        min: u64,
        /// The largest value.
        max: u64,
    },
    /// `true` or `false`.
    Boolean,
    /// One of these words.
    OneOf(&'static [&'static str]),
}

impl ClientOption {
    /// Refuses `value` unless the option takes it: 22023, as PostgreSQL refuses a value out
    /// of a parameter's range.
    fn check(self, name: &str, value: &str) -> Result<(), SettingError> {
        let invalid = || SettingError::Invalid {
            name: name.to_owned(),
            value: value.to_owned(),
        };
        match self {
            Self::Integer { min, max } => {
                let number: u64 =
                    value
                        .trim()
                        .parse()
                        .map_err(|_| match value.trim().parse::<i128>() {
                            Ok(_) => SettingError::OutOfRange {
                                name: name.to_owned(),
                                value: value.to_owned(),
                                min,
                                max,
                            },
                            Err(_) => invalid(),
                        })?;
                if (min..=max).contains(&number) {
                    Ok(())
                } else {
                    Err(SettingError::OutOfRange {
                        name: name.to_owned(),
                        value: value.to_owned(),
                        min,
                        max,
                    })
                }
            }
            Self::Boolean => match value {
                "true" | "false" => Ok(()),
                _ => Err(invalid()),
            },
            Self::OneOf(words) => match words.contains(&value) {
                true => Ok(()),
                false => Err(invalid()),
            },
        }
    }
}

impl QuerySession {
    /// Is `name` one of DataFusion's own options (`datafusion.execution.target_partitions`)?
    pub fn is_datafusion_option(name: &str) -> bool {
        name.starts_with("datafusion.")
    }

    /// `SET datafusion.* = value`, or back to its default when `value` is `None`. Only the
    /// options of [`CLIENT_OPTIONS`] may be set, within their bounds.
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
        let allowed = CLIENT_OPTIONS
            .iter()
            .find(|(option, _)| *option == name)
            .map(|(_, allowed)| allowed)
            .ok_or_else(|| SettingError::PermissionDenied(name.to_owned()))?;
        let resetting = value.is_none();
        let value = match value {
            // PostgreSQL's spelling of a boolean, as `SET x = true` reads.
            Some("on") => "true".to_owned(),
            Some("off") => "false".to_owned(),
            Some(value) => value.to_owned(),
            None => default.unwrap_or_default(),
        };
        // A reset returns to DataFusion's default, which may lie outside what a client may
        // choose (target_partitions is the machine's core count).
        if !resetting {
            allowed.check(name, &value)?;
        }
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
        let gateway = catalog.gateway();
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
        let state = with_plan_rules(with_sub_plan_pushdown(state));
        let ctx = SessionContext::new_with_state(with_connector_functions(state).build());
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
        Ok(polygate_pgcompat::commands(&self.inner.parser, sql)?)
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
        Some(what) => Err(GatewayError::read_only(what)),
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

#[cfg(test)]
mod tests {
    use super::*;

    fn check(name: &str, value: &str) -> Result<(), String> {
        let (_, allowed) = CLIENT_OPTIONS
            .iter()
            .find(|(option, _)| *option == name)
            .expect("a client option");
        allowed
            .check(name, value)
            .map_err(|e| format!("{}: {e}", e.code()))
    }

    #[test]
    fn client_options_are_bounded() {
        let partitions = "datafusion.execution.target_partitions";
        let batch = "datafusion.execution.batch_size";
        assert_eq!(check(partitions, "4"), Ok(()));
        assert_eq!(check(batch, "8192"), Ok(()));
        assert_eq!(check("datafusion.explain.format", "tree"), Ok(()));
        assert_eq!(
            check(batch, "68719476736"),
            Err(
                "22023: 68719476736 is outside the valid range for parameter \
                 \"datafusion.execution.batch_size\" (1 .. 65536)"
                    .to_owned()
            )
        );
        assert!(check(partitions, "0").is_err_and(|e| e.starts_with("22023")));
        assert!(check(partitions, "-1").is_err_and(|e| e.starts_with("22023")));
        assert!(check(partitions, "100000").is_err_and(|e| e.starts_with("22023")));
        assert!(check(partitions, "many").is_err_and(|e| e.starts_with("22023")));
        assert!(check("datafusion.explain.show_schema", "yes").is_err());
        assert!(check("datafusion.explain.format", "graphviz").is_err());
    }

    #[test]
    fn every_client_option_is_one_of_datafusions() {
        let known = datafusion::config::ConfigOptions::new().entries();
        for (name, _) in CLIENT_OPTIONS {
            assert!(known.iter().any(|entry| entry.key == *name), "{name}");
        }
    }
}
