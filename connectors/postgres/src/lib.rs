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
mod query;
mod remote;
mod scan;
mod schema;
mod subplan;
mod tls;

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::{Schema, SchemaRef};
use datafusion::catalog::TableProvider;
use deadpool_postgres::{Manager, ManagerConfig, Object, Pool, RecyclingMethod, Runtime};
use polygate_connector_core::remote_scan::RemoteTable;
use polygate_connector_core::subplan::{SourceFinder, SubPlanSource};
use polygate_connector_core::{
    Connector, ConnectorError, ConnectorFactory, NameFilter, Namespace, OptionError, SourceContext,
    SourceSettings, TableRef,
};
use tokio_postgres::Client;

pub use options::PostgresOptions;
pub use tls::TlsMode;

use remote::{MAX_POOL_SIZE, POOL_WAIT, Remote, query_error};
use scan::{PostgresTable, RelationSize};
use schema::PgColumn;

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

impl PostgresConnector {
    /// Validates `options` for the source described by `context`.
    pub fn new(context: &SourceContext, options: PostgresOptions) -> Result<Self, OptionError> {
        let mut config: tokio_postgres::Config = options.url.parse().map_err(|e| {
            OptionError::new("url", format!("not a PostgreSQL connection URL: {e}"))
        })?;
        let connect_timeout = OptionError::seconds(
            "connect_timeout_secs",
            options.connect_timeout_secs,
            1..=OptionError::MAX_CONNECT_SECS,
        )?;
        // PostgreSQL takes at most 2^31 - 1 milliseconds; 0 sets no limit.
        OptionError::seconds(
            "statement_timeout_secs",
            options.statement_timeout_secs,
            0..=2_147_483,
        )?;
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
                settings: SourceSettings::new(context, options.pushdown),
                pool,
                connect_timeout,
                tls,
                partition_pages: options.partition_pages,
                parallel_sessions: tokio::sync::Mutex::new(()),
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
                self.remote.settings.name, table
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
                        source = %self.remote.settings.name,
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
                self.remote.settings.name, table
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
