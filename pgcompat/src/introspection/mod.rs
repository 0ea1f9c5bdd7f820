//! What clients learn about the database: `pg_catalog`, `information_schema`, the search path,
//! and the PostgreSQL functions their start-up and navigation queries call.
//!
//! psql's `\d` commands, JDBC's `DatabaseMetaData`, DBeaver, DataGrip, Metabase and Grafana all
//! read `pg_catalog` or `information_schema`. `pg_catalog` comes from `datafusion-pg-catalog`,
//! fed by [`SourcesInfo`] so that it lists every source's tables with PostgreSQL type OIDs;
//! `information_schema` is [`information_schema::InformationSchema`]. Both are computed when a
//! query reads them, from the catalog as it is then (a reload shows at once).

mod functions;
mod information_schema;
mod pg_catalog;
mod system_columns;
mod system_table;

use std::sync::{Arc, RwLock};

use std::collections::HashMap;

use async_trait::async_trait;
use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type, SchemaRef};
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result};
use datafusion::prelude::SessionContext;
use datafusion_pg_catalog::pg_catalog::catalog_info::CatalogInfo;
use datafusion_pg_catalog::pg_catalog::{PgCatalogSchemaProvider, PgCatalogStaticTables};

use crate::settings::Settings;
use pg_catalog::{
    PgCatalog, SessionRoles, View, ViewFunction, available_extensions, pg_locks, pg_user,
    time_zones, with_aggregate_oids, with_typed_arrays,
};

pub use functions::if_found_udf;
pub use information_schema::{pg_type_name, sql_type_name};
pub use system_table::SystemTable;

/// The schema DataFusion resolves unqualified table names in. It is not listed: it stands for
/// the schemas of `search_path`, searched in order.
pub const SEARCH_PATH_SCHEMA: &str = "pg_search_path";
/// PostgreSQL's own catalog schema.
pub const PG_CATALOG: &str = "pg_catalog";
/// The SQL-standard catalog schema.
pub const INFORMATION_SCHEMA: &str = "information_schema";

/// What a session's introspection reads: who is connected, to which database, with which
/// settings.
#[derive(Debug)]
pub struct SessionInfo {
    /// The user name the client connected as.
    pub user: String,
    /// The database name the client connected to (the catalog's name in SQL).
    pub database: String,
    /// The session's parameters, shared with `SET` and `SHOW`.
    pub settings: Arc<RwLock<Settings>>,
    /// Every source's schemas.
    pub sources: Arc<dyn CatalogProvider>,
    /// When the gateway started (`pg_postmaster_start_time()`).
    pub started: std::time::SystemTime,
}

impl SessionInfo {
    /// A copy of the session's settings now.
    pub fn settings(&self) -> Settings {
        self.settings
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    /// The schemas of `search_path` that exist, in order (`$user` becomes the user's name):
    /// what `current_schemas(false)` returns.
    pub fn current_schemas(&self) -> Vec<String> {
        let existing = self.sources.schema_names();
        self.settings()
            .search_path()
            .into_iter()
            .map(|schema| {
                if schema == "$user" {
                    self.user.clone()
                } else {
                    schema
                }
            })
            .filter(|schema| existing.contains(schema))
            .collect()
    }
}

/// The tables that never change from one gateway to another (pg_type, pg_proc, ...), loaded
/// once per gateway, and the type OIDs by name for `to_regtype`.
#[derive(Debug, Clone)]
pub struct StaticTables(
    Arc<PgCatalogStaticTables>,
    Arc<HashMap<String, i32>>,
    /// The views of `pg_catalog` that are the same for every session (`pg_locks`, and the
    /// time zones as of the gateway's start).
    Arc<Vec<View>>,
);

impl StaticTables {
    /// Loads them.
    pub fn load() -> Result<Self> {
        let mut tables = PgCatalogStaticTables::try_new()?;
        tables.pg_constraint = Arc::new(with_typed_arrays(
            &tables.pg_constraint,
            &[
                ("conkey", DataType::Int16),
                ("confkey", DataType::Int16),
                ("confdelsetcols", DataType::Int16),
                ("conpfeqop", DataType::Int32),
                ("conppeqop", DataType::Int32),
                ("conffeqop", DataType::Int32),
                ("conexclop", DataType::Int32),
            ],
        )?);
        tables.pg_index = Arc::new(with_typed_arrays(
            &tables.pg_index,
            &[
                ("indkey", DataType::Int16),
                ("indcollation", DataType::Int32),
                ("indclass", DataType::Int32),
                ("indoption", DataType::Int16),
            ],
        )?);
        // `aclitem[]`, a text array to clients (psql's `\dp` and `\l` print them with
        // `array_to_string`).
        for (table, acl) in [
            (&mut tables.pg_proc, "proacl"),
            (&mut tables.pg_type, "typacl"),
            (&mut tables.pg_language, "lanacl"),
            (&mut tables.pg_tablespace, "spcacl"),
            (&mut tables.pg_largeobject_metadata, "lomacl"),
            (&mut tables.pg_foreign_data_wrapper, "fdwacl"),
            (&mut tables.pg_foreign_server, "srvacl"),
            (&mut tables.pg_default_acl, "defaclacl"),
        ] {
            *table = Arc::new(with_typed_arrays(table, &[(acl, DataType::Utf8)])?);
        }
        tables.pg_aggregate = Arc::new(with_aggregate_oids(&tables.pg_aggregate, &tables.pg_proc)?);
        let mut types = HashMap::new();
        for batch in tables.pg_type.data() {
            let (Some(oids), Some(names)) =
                (batch.column_by_name("oid"), batch.column_by_name("typname"))
            else {
                continue;
            };
            let oids = cast(oids, &DataType::Int64)?;
            let names = cast(names, &DataType::Utf8)?;
            let (oids, names) = (oids.as_primitive::<Int64Type>(), names.as_string::<i32>());
            for row in 0..batch.num_rows() {
                if let (true, true, Ok(oid)) = (
                    oids.is_valid(row),
                    names.is_valid(row),
                    i32::try_from(oids.value(row)),
                ) {
                    types.insert(names.value(row).to_owned(), oid);
                }
            }
        }
        let [names, abbrevs] = time_zones()?;
        let [extension_versions, extensions] = available_extensions(&tables.pg_extension)?;
        let views = vec![
            ("pg_available_extension_versions", extension_versions),
            ("pg_available_extensions", extensions),
            ("pg_locks", pg_locks()?),
            ("pg_timezone_names", names),
            ("pg_timezone_abbrevs", abbrevs),
        ];
        Ok(Self(Arc::new(tables), Arc::new(types), Arc::new(views)))
    }

    /// The view of `pg_catalog` named `name` that is the same for every session.
    pub fn view(&self, name: &str) -> Option<Arc<dyn TableProvider>> {
        self.2
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| Arc::clone(t))
    }

    /// The OID of the type named `name` (`int4`, `integer`, `text`, `_int4`), if there is one.
    pub fn type_oid(&self, name: &str) -> Option<i32> {
        let name = name.trim().to_ascii_lowercase();
        let name = match name.strip_prefix("pg_catalog.").unwrap_or(&name) {
            "integer" | "int" => "int4",
            "bigint" => "int8",
            "smallint" => "int2",
            "boolean" => "bool",
            "real" => "float4",
            "double precision" => "float8",
            "character varying" => "varchar",
            "timestamp without time zone" => "timestamp",
            "timestamp with time zone" => "timestamptz",
            "decimal" => "numeric",
            other => other,
        };
        self.1.get(name).copied()
    }
}

/// Installs a session's catalog, system schemas and functions into `ctx`.
///
/// `sources` is the catalog of every source; the session sees it under its database's name,
/// together with `pg_catalog`, `information_schema` and the search path.
pub fn install(
    ctx: &SessionContext,
    static_tables: &StaticTables,
    session: Arc<SessionInfo>,
) -> Result<()> {
    let sources = Arc::clone(&session.sources);
    let info = SourcesInfo {
        database: session.database.clone(),
        sources: Arc::clone(&sources),
    };
    let library = Arc::new(PgCatalogSchemaProvider::try_new(
        info.clone(),
        Arc::clone(&static_tables.0),
        SessionRoles {
            user: session.user.clone(),
        },
    )?);
    let pg_catalog: Arc<dyn SchemaProvider> = Arc::new(PgCatalog {
        library,
        views: std::iter::once(("pg_user", pg_user(&session.user)?))
            .chain(static_tables.2.iter().cloned())
            .collect(),
    });
    let catalog = SessionCatalog {
        sources: Arc::clone(&sources),
        pg_catalog: pg_catalog.clone(),
        information_schema: Arc::new(information_schema::InformationSchema::new(info)),
        search_path: Arc::new(SearchPath {
            pg_catalog,
            session: Arc::clone(&session),
        }),
    };
    ctx.register_catalog(&session.database, Arc::new(catalog));
    functions::register(ctx, static_tables, session);
    Ok(())
}

/// The catalog a session sees: the sources' schemas and the system schemas.
#[derive(Debug)]
struct SessionCatalog {
    sources: Arc<dyn CatalogProvider>,
    pg_catalog: Arc<dyn SchemaProvider>,
    information_schema: Arc<dyn SchemaProvider>,
    search_path: Arc<dyn SchemaProvider>,
}

impl CatalogProvider for SessionCatalog {
    fn schema_names(&self) -> Vec<String> {
        let mut names = self.sources.schema_names();
        names.extend([PG_CATALOG.to_owned(), INFORMATION_SCHEMA.to_owned()]);
        names
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        match name {
            PG_CATALOG => Some(Arc::clone(&self.pg_catalog)),
            INFORMATION_SCHEMA => Some(Arc::clone(&self.information_schema)),
            SEARCH_PATH_SCHEMA => Some(Arc::clone(&self.search_path)),
            _ => self.sources.schema(name),
        }
    }
}

/// Unqualified table names: `pg_catalog` first (as in PostgreSQL), then each schema of
/// `search_path` in order.
#[derive(Debug)]
struct SearchPath {
    pg_catalog: Arc<dyn SchemaProvider>,
    session: Arc<SessionInfo>,
}

impl SearchPath {
    fn schemas(&self) -> Vec<Arc<dyn SchemaProvider>> {
        std::iter::once(Arc::clone(&self.pg_catalog))
            .chain(
                self.session
                    .current_schemas()
                    .iter()
                    .filter_map(|name| self.session.sources.schema(name)),
            )
            .collect()
    }
}

#[async_trait]
impl SchemaProvider for SearchPath {
    fn table_names(&self) -> Vec<String> {
        let mut names: Vec<String> = self
            .schemas()
            .iter()
            .skip(1)
            .flat_map(|schema| schema.table_names())
            .collect();
        names.sort();
        names.dedup();
        names
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        for schema in self.schemas() {
            if schema.table_exist(name) {
                return schema.table(name).await;
            }
        }
        Ok(None)
    }

    fn table_exist(&self, name: &str) -> bool {
        self.schemas().iter().any(|schema| schema.table_exist(name))
    }
}

/// The sources' schemas and tables, as `pg_catalog` and `information_schema` list them.
///
/// A source that cannot describe a table (it is down, or the table went away) leaves that
/// table out of the listing, with a warning in the log, instead of failing psql's `\dt` for
/// every other source.
#[derive(Debug, Clone)]
pub struct SourcesInfo {
    database: String,
    sources: Arc<dyn CatalogProvider>,
}

impl SourcesInfo {
    fn is_system(schema: &str) -> bool {
        schema == PG_CATALOG || schema == INFORMATION_SCHEMA
    }

    /// Every source schema with its tables, in name order.
    pub fn tables(&self) -> Vec<(String, Vec<String>)> {
        let mut schemas: Vec<(String, Vec<String>)> = self
            .sources
            .schema_names()
            .into_iter()
            .map(|name| {
                let mut tables = self
                    .sources
                    .schema(&name)
                    .map(|schema| schema.table_names())
                    .unwrap_or_default();
                tables.sort();
                (name, tables)
            })
            .collect();
        schemas.sort();
        schemas
    }

    /// A table's columns, or `None` when its source cannot say now.
    pub async fn columns(&self, schema: &str, table: &str) -> Option<SchemaRef> {
        let provider = self.sources.schema(schema)?;
        match provider.table(table).await {
            Ok(table) => table.map(|t| t.schema()),
            Err(error) => {
                tracing::warn!(%schema, %table, "left out of the catalog listing: {error}");
                None
            }
        }
    }

    /// The database's name.
    pub fn database(&self) -> &str {
        &self.database
    }
}

#[async_trait]
impl CatalogInfo for SourcesInfo {
    async fn catalog_names(&self) -> Result<Vec<String>, DataFusionError> {
        Ok(vec![self.database.clone()])
    }

    async fn schema_names(&self, catalog: &str) -> Result<Option<Vec<String>>, DataFusionError> {
        if catalog != self.database {
            return Ok(None);
        }
        let mut names = self.sources.schema_names();
        names.sort();
        names.extend([PG_CATALOG.to_owned(), INFORMATION_SCHEMA.to_owned()]);
        Ok(Some(names))
    }

    async fn table_names(
        &self,
        catalog: &str,
        schema: &str,
    ) -> Result<Option<Vec<String>>, DataFusionError> {
        if catalog != self.database {
            return Ok(None);
        }
        if Self::is_system(schema) {
            return Ok(Some(Vec::new()));
        }
        Ok(self.sources.schema(schema).map(|s| {
            let mut names = s.table_names();
            names.sort();
            names
        }))
    }

    async fn table_schema(
        &self,
        catalog: &str,
        schema: &str,
        table: &str,
    ) -> Result<Option<SchemaRef>, DataFusionError> {
        if catalog != self.database || Self::is_system(schema) {
            return Ok(None);
        }
        Ok(self.columns(schema, table).await)
    }

    async fn table_type(
        &self,
        catalog: &str,
        schema: &str,
        table: &str,
    ) -> Result<Option<TableType>, DataFusionError> {
        if catalog != self.database || Self::is_system(schema) {
            return Ok(None);
        }
        let Some(provider) = self.sources.schema(schema) else {
            return Ok(None);
        };
        Ok(provider.table_type(table).await.unwrap_or(None))
    }
}
