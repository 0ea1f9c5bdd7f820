//! The `postgres` connector: tables, views, materialized views and foreign tables of
//! PostgreSQL schemas as relations.
//!
//! This is the connector's first stage: discovery, type mapping, and streamed scans that read
//! only the columns a query needs. Values travel as query parameters or quoted identifiers,
//! never spliced text, and every remote session is read-only with UTC as its time zone.

mod decode;
mod filter;
mod options;
mod order;
mod scan;
mod subplan;
mod tls;
mod types;

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::catalog::TableProvider;
use deadpool_postgres::{
    Manager, ManagerConfig, Object, Pool, PoolError, RecyclingMethod, Runtime, TimeoutType,
};
use polygate_connector_core::remote_scan::RemoteTable;
use polygate_connector_core::subplan::{SourceFinder, SubPlanSource};
use polygate_connector_core::{
    Connector, ConnectorError, ConnectorFactory, NameFilter, Namespace, OptionError, SourceContext,
    TableRef,
};
use tokio_postgres::Client;

pub use options::PostgresOptions;
pub use tls::TlsMode;

use scan::{PostgresTable, RelationSize};
use types::PgColumn;

/// Builds [`PostgresConnector`]s from `kind = "postgres"` sources.
pub struct PostgresConnectorFactory;

impl ConnectorFactory for PostgresConnectorFactory {
    type Options = PostgresOptions;
    const KIND: &'static str = "postgres";

    fn create(
        context: &SourceContext,
        options: PostgresOptions,
    ) -> Result<Arc<dyn Connector>, OptionError> {
        Ok(Arc::new(PostgresConnector::new(context, options)?))
    }

    fn source_finder() -> Option<SourceFinder> {
        Some(|provider| {
            let table = provider.downcast_ref::<RemoteTable<PostgresTable>>()?;
            Some(Arc::clone(table.relation().remote()) as Arc<dyn SubPlanSource>)
        })
    }
}

/// Reads one PostgreSQL database.
#[derive(Debug)]
pub struct PostgresConnector {
    remote: Arc<Remote>,
    schemas: Vec<String>,
    names: NameFilter,
    /// The precision and scale unconstrained `numeric` columns read as; `None` for text.
    unconstrained_numeric: Option<(u8, i8)>,
}

/// How long a query waits for a free connection of a source's pool before failing.
const POOL_WAIT: Duration = Duration::from_secs(30);

/// How to reach a source's server and what to ask of it, shared by the source's tables.
#[derive(Debug)]
pub(crate) struct Remote {
    /// The source's name, for errors and EXPLAIN.
    pub(crate) source: String,
    /// A bounded pool of sessions to the server, created lazily.
    pool: Pool,
    connect_timeout: Duration,
    /// The TLS connector of the source's sessions, also for their cancel requests.
    pub(crate) tls: tls::Connector,
    /// Whether filters may be evaluated by PostgreSQL.
    pub(crate) pushdown: bool,
    /// The fewest pages a `ctid` range partition of a parallel scan reads.
    pub(crate) partition_pages: u64,
    /// Held while a parallel scan takes its sessions, so that two parallel scans never each
    /// hold part of the pool while waiting for the rest.
    pub(crate) parallel_sessions: tokio::sync::Mutex<()>,
    /// The longest a scan waits for its next rows (`response_timeout_secs`).
    pub(crate) response_timeout: Duration,
}

/// Half of `pool_size`, rounded up: see [`Remote::scan_share`].
fn scan_share(pool_size: usize) -> usize {
    pool_size.div_ceil(2).max(1)
}

/// The most sessions one source may open: far above what a PostgreSQL server allows by
/// default (`max_connections = 100`).
const MAX_POOL_SIZE: usize = 1000;

impl Remote {
    /// The most sessions the source's pool holds.
    pub(crate) fn pool_size(&self) -> usize {
        self.pool.status().max_size
    }

    /// The most sessions one parallel scan takes: half the pool (rounded up), so that a scan
    /// of a large table leaves sessions for the source's other queries.
    pub(crate) fn scan_share(&self) -> usize {
        scan_share(self.pool_size())
    }

    /// A session from the pool; it returns to the pool when dropped.
    pub(crate) async fn connect(&self) -> Result<Object, ConnectorError> {
        self.pool.get().await.map_err(|error| match error {
            PoolError::Timeout(TimeoutType::Wait) => ConnectorError::Unavailable(format!(
                "all {} connections busy for {}s",
                self.pool.status().max_size,
                POOL_WAIT.as_secs()
            )),
            PoolError::Timeout(_) => ConnectorError::Unavailable(format!(
                "no answer within {}s",
                self.connect_timeout.as_secs()
            )),
            PoolError::Backend(error) => ConnectorError::Unavailable(with_causes(&error)),
            other => ConnectorError::Unavailable(other.to_string()),
        })
    }
}

impl PostgresConnector {
    /// Validates `options` for the source described by `context`.
    pub fn new(context: &SourceContext, options: PostgresOptions) -> Result<Self, OptionError> {
        let mut config: tokio_postgres::Config = options.url.parse().map_err(|e| {
            OptionError::new("url", format!("not a PostgreSQL connection URL: {e}"))
        })?;
        let connect_timeout = Duration::from_secs(options.connect_timeout_secs);
        // Read-only and UTC for every remote session, whatever the server's defaults are.
        let mut session_options = "-c default_transaction_read_only=on -c TimeZone=UTC".to_owned();
        if options.statement_timeout_secs > 0 {
            session_options.push_str(&format!(
                " -c statement_timeout={}s",
                options.statement_timeout_secs
            ));
        }
        config
            .options(&session_options)
            .application_name("polygate")
            .connect_timeout(connect_timeout);
        if options.schemas.is_empty() {
            return Err(OptionError::new("schemas", "must name at least one schema"));
        }
        let unconstrained_numeric = options::numeric_mapping(&options.unconstrained_numeric)
            .map_err(|e| OptionError::new("unconstrained_numeric", e))?;
        if options.partition_pages == 0 {
            return Err(OptionError::new("partition_pages", "must be at least 1"));
        }
        // The pool sizes its slots by this number when it is made, so an absurd value would
        // be an allocation, not just a limit.
        if !(1..=MAX_POOL_SIZE).contains(&options.pool_size) {
            return Err(OptionError::new(
                "pool_size",
                format!("must be between 1 and {MAX_POOL_SIZE}"),
            ));
        }
        let ca_file = options
            .tls_ca_file
            .as_ref()
            .map(|f| context.base_dir.join(f));
        let (tls, ssl_mode) = tls::connector(options.tls, ca_file.as_deref())?;
        config.ssl_mode(ssl_mode);
        let manager = Manager::from_config(
            config,
            tls.0.clone(),
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(options.pool_size)
            .wait_timeout(Some(POOL_WAIT))
            .create_timeout(Some(connect_timeout))
            .runtime(Runtime::Tokio1)
            .build()
            .map_err(|e| OptionError::new("pool_size", e.to_string()))?;
        Ok(Self {
            remote: Arc::new(Remote {
                source: context.name.clone(),
                pool,
                connect_timeout,
                tls,
                pushdown: options.pushdown,
                partition_pages: options.partition_pages,
                parallel_sessions: tokio::sync::Mutex::new(()),
                response_timeout: context.response_timeout,
            }),
            schemas: options.schemas,
            names: NameFilter::new(options.include, options.exclude),
            unconstrained_numeric,
        })
    }

    /// Whether the include and exclude patterns expose table `name`.
    fn exposes(&self, name: &str) -> bool {
        self.names.exposes(name)
    }

    /// What PostgreSQL knows of the relation's size: its row estimate (`reltuples`; tables
    /// never analyzed, and views, have none), and its pages when it can be scanned in `ctid`
    /// ranges (tables and materialized views on PostgreSQL 14 and later).
    async fn size(client: &Client, table: &TableRef) -> Result<RelationSize, ConnectorError> {
        let row = client
            .query_opt(
                "SELECT c.reltuples::float8, c.relpages::int8, c.relkind::text, \
                 current_setting('server_version_num')::int4 \
                 FROM pg_catalog.pg_class c \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relname = $2",
                &[&table.namespace, &table.name],
            )
            .await
            .map_err(|e| query_error(&e))?;
        let Some(row) = row else {
            return Ok(RelationSize::default());
        };
        let estimate: f64 = row.get(0);
        let pages: i64 = row.get(1);
        let kind: &str = row.get(2);
        let version: i32 = row.get(3);
        let ranges = matches!(kind, "r" | "m") && version >= 140_000 && pages > 0;
        Ok(RelationSize {
            // A negative reltuples means "never analyzed"; zero may mean the same on older
            // servers.
            rows: (estimate > 0.0).then_some(estimate as usize),
            pages: ranges.then_some(pages as u64),
        })
    }

    async fn connect(&self) -> Result<Object, ConnectorError> {
        self.remote.connect().await
    }

    async fn columns(
        &self,
        client: &Client,
        table: &TableRef,
    ) -> Result<Vec<PgColumn>, ConnectorError> {
        let rows = client
            .query(
                "SELECT a.attname, a.atttypid::int8, format_type(a.atttypid, a.atttypmod), a.attnotnull \
                 FROM pg_catalog.pg_attribute a \
                 JOIN pg_catalog.pg_class c ON c.oid = a.attrelid \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 WHERE n.nspname = $1 AND c.relname = $2 AND a.attnum > 0 AND NOT a.attisdropped \
                 ORDER BY a.attnum",
                &[&table.namespace, &table.name],
            )
            .await
            .map_err(|e| query_error(&e))?;
        if rows.is_empty() {
            return Err(ConnectorError::NotFound(format!(
                "{}.{}",
                self.remote.source, table
            )));
        }
        Ok(rows
            .iter()
            .map(|row| {
                let mut column = PgColumn::new(
                    row.get(0),
                    row.get::<_, i64>(1) as u32,
                    row.get(2),
                    row.get(3),
                );
                if let Some((precision, scale)) = self.unconstrained_numeric {
                    column = column.with_unconstrained_numeric(precision, scale);
                }
                if column.read_as_text() {
                    tracing::info!(
                        source = %self.remote.source,
                        "column {}.{} of type {} is read as text",
                        table,
                        column.name,
                        column.type_name
                    );
                }
                column
            })
            .collect())
    }
}

/// An error with its chain of causes: tokio-postgres says "error connecting to server" and
/// keeps the useful part ("connection refused") in its source.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let inner_text = inner.to_string();
        if !text.contains(&inner_text) {
            text.push_str(": ");
            text.push_str(&inner_text);
        }
        cause = inner.source();
    }
    text
}

/// A failed query: the server is gone (unavailable) or refused it (an error of the data).
pub(crate) fn query_error(error: &tokio_postgres::Error) -> ConnectorError {
    let Some(db) = error.as_db_error() else {
        // No answer from the server: the connection broke or could not be made.
        return ConnectorError::Unavailable(with_causes(error));
    };
    let message = db.message().to_owned();
    match db.code().code() {
        // Class 08: connection exceptions, as the server itself reports them.
        code if code.starts_with("08") => ConnectorError::Unavailable(message),
        // Class 57: an administrator's command or a shutdown ended the session, or the
        // source's `statement_timeout_secs` (57014) canceled the statement.
        "57014" => ConnectorError::TimedOut(message),
        code if code.starts_with("57") => ConnectorError::Interrupted(message),
        // Class 53: too many connections, out of memory or disk on the server.
        code if code.starts_with("53") => ConnectorError::Overloaded(message),
        _ if error.is_closed() => ConnectorError::Unavailable(message),
        _ => ConnectorError::InvalidData(message),
    }
}

#[async_trait]
impl Connector for PostgresConnector {
    fn kind(&self) -> &'static str {
        PostgresConnectorFactory::KIND
    }

    async fn discover(&self) -> Result<Vec<Namespace>, ConnectorError> {
        let client = self.connect().await?;
        let rows = client
            .query(
                "SELECT n.nspname, c.relname FROM pg_catalog.pg_class c \
                 JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace \
                 WHERE c.relkind IN ('r', 'p', 'v', 'm', 'f') AND n.nspname = ANY($1) \
                 ORDER BY c.relname COLLATE \"C\"",
                &[&self.schemas],
            )
            .await
            .map_err(|e| query_error(&e))?;
        Ok(self
            .schemas
            .iter()
            .map(|schema| Namespace {
                name: schema.clone(),
                tables: rows
                    .iter()
                    .filter(|r| r.get::<_, &str>(0) == schema)
                    .map(|r| r.get::<_, String>(1))
                    .filter(|table| self.exposes(table))
                    .collect(),
            })
            .collect())
    }

    async fn table_provider(
        &self,
        table: &TableRef,
    ) -> Result<Arc<dyn TableProvider>, ConnectorError> {
        if !self.exposes(&table.name) {
            return Err(ConnectorError::NotFound(format!(
                "{}.{}",
                self.remote.source, table
            )));
        }
        let client = self.connect().await?;
        let columns = self.columns(&client, table).await?;
        let size = Self::size(&client, table).await?;
        let schema: SchemaRef = Arc::new(Schema::new(
            columns
                .iter()
                .map(PgColumn::arrow_field)
                .collect::<Vec<_>>(),
        ));
        Ok(Arc::new(RemoteTable::new(PostgresTable::new(
            Arc::clone(&self.remote),
            table.clone(),
            columns,
            schema,
            size,
        ))))
    }
}

#[cfg(test)]
mod tests {
    use super::scan_share;

    #[test]
    fn one_parallel_scan_leaves_sessions_for_other_queries() {
        let shares: Vec<(usize, usize)> = [1, 2, 3, 4, 8, 1000]
            .into_iter()
            .map(|pool| (pool, scan_share(pool)))
            .collect();
        assert_eq!(
            shares,
            [(1, 1), (2, 1), (3, 2), (4, 2), (8, 4), (1000, 500)]
        );
    }
}
