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
mod system_columns;

use std::sync::{Arc, RwLock};

use std::collections::HashMap;

use async_trait::async_trait;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int32Array, IntervalMonthDayNanoArray, ListArray,
    RecordBatch, StringArray, new_null_array,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, Field, Int64Type, IntervalMonthDayNano, IntervalUnit, Schema, SchemaRef, TimeUnit,
};
use datafusion::arrow::ipc::writer::FileWriter;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::datasource::{MemTable, TableType};
use datafusion::error::{DataFusionError, Result};
use datafusion::prelude::SessionContext;
use datafusion_pg_catalog::pg_catalog::catalog_info::CatalogInfo;
use datafusion_pg_catalog::pg_catalog::context::{PgCatalogContextProvider, Role};
use datafusion_pg_catalog::pg_catalog::{
    ArrowTable, PgCatalogSchemaProvider, PgCatalogStaticTables,
};

use crate::settings::Settings;

pub use information_schema::sql_type_name;

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
    /// `pg_timezone_names` and `pg_timezone_abbrevs`, as of the gateway's start.
    Arc<[Arc<dyn TableProvider>; 2]>,
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
        Ok(Self(
            Arc::new(tables),
            Arc::new(types),
            Arc::new(time_zones()?),
        ))
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
        views: vec![
            ("pg_user", pg_user(&session.user)?),
            ("pg_locks", pg_locks()?),
            ("pg_timezone_names", Arc::clone(&static_tables.2[0])),
            ("pg_timezone_abbrevs", Arc::clone(&static_tables.2[1])),
        ],
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

/// `pg_catalog`: the library's tables, each with the `xmin` system column, and the views it
/// does not have (`pg_user`, `pg_locks`).
#[derive(Debug)]
struct PgCatalog {
    library: Arc<dyn SchemaProvider>,
    /// Views of our own, by name.
    views: Vec<(&'static str, Arc<dyn TableProvider>)>,
}

impl PgCatalog {
    fn view(&self, name: &str) -> Option<&Arc<dyn TableProvider>> {
        self.views.iter().find(|(n, _)| *n == name).map(|(_, t)| t)
    }
}

#[async_trait]
impl SchemaProvider for PgCatalog {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.library.table_names();
        names.extend(self.views.iter().map(|(name, _)| (*name).to_owned()));
        names
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        if let Some(view) = self.view(name) {
            return Ok(Some(Arc::clone(view)));
        }
        Ok(self
            .library
            .table(name)
            .await?
            .map(|table| system_columns::WithXmin::wrap(name, table)))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.view(name).is_some() || self.library.table_exist(name)
    }
}

/// `pg_timezone_names` and `pg_timezone_abbrevs` as of now, from the IANA database that
/// chrono-tz carries: each zone with its current abbreviation, UTC offset and whether daylight
/// saving time is in effect; each abbreviation in use now, once.
fn time_zones() -> Result<[Arc<dyn TableProvider>; 2]> {
    use chrono_tz::{OffsetComponents, OffsetName};
    let now = chrono::Utc::now().naive_utc();
    let interval = DataType::Interval(IntervalUnit::MonthDayNano);
    let (mut names, mut abbrevs, mut offsets, mut dst) = (vec![], vec![], vec![], vec![]);
    let mut by_abbrev = std::collections::BTreeMap::new();
    for zone in chrono_tz::TZ_VARIANTS {
        let offset = chrono::TimeZone::offset_from_utc_datetime(&zone, &now);
        let total = offset.base_utc_offset() + offset.dst_offset();
        let nanos = total.num_nanoseconds().unwrap_or(0);
        let is_dst = !offset.dst_offset().is_zero();
        let abbrev = offset.abbreviation().unwrap_or_default().to_owned();
        by_abbrev.entry(abbrev.clone()).or_insert((nanos, is_dst));
        names.push(zone.name().to_owned());
        abbrevs.push(abbrev);
        offsets.push(IntervalMonthDayNano::new(0, 0, nanos));
        dst.push(is_dst);
    }
    let field = |name: &str, data_type: &DataType| Field::new(name, data_type.clone(), false);
    let names_schema = Arc::new(Schema::new(vec![
        field("name", &DataType::Utf8),
        field("abbrev", &DataType::Utf8),
        field("utc_offset", &interval),
        field("is_dst", &DataType::Boolean),
    ]));
    let names = RecordBatch::try_new(
        Arc::clone(&names_schema),
        vec![
            Arc::new(StringArray::from(names)),
            Arc::new(StringArray::from(abbrevs)),
            Arc::new(IntervalMonthDayNanoArray::from(offsets)),
            Arc::new(BooleanArray::from(dst)),
        ],
    )?;
    let abbrevs_schema = Arc::new(Schema::new(vec![
        field("abbrev", &DataType::Utf8),
        field("utc_offset", &interval),
        field("is_dst", &DataType::Boolean),
    ]));
    let abbrevs = RecordBatch::try_new(
        Arc::clone(&abbrevs_schema),
        vec![
            Arc::new(StringArray::from_iter_values(by_abbrev.keys())),
            Arc::new(IntervalMonthDayNanoArray::from_iter_values(
                by_abbrev
                    .values()
                    .map(|(nanos, _)| IntervalMonthDayNano::new(0, 0, *nanos)),
            )),
            Arc::new(BooleanArray::from_iter(
                by_abbrev.values().map(|(_, is_dst)| Some(*is_dst)),
            )),
        ],
    )?;
    Ok([
        Arc::new(MemTable::try_new(names_schema, vec![vec![names]])?),
        Arc::new(MemTable::try_new(abbrevs_schema, vec![vec![abbrevs]])?),
    ])
}

/// `pg_locks`, with PostgreSQL's columns and no rows: polygate takes no locks in any store
/// (its reads are snapshots or cursors), and has no transactions to hold them.
fn pg_locks() -> Result<Arc<dyn TableProvider>> {
    let column = |name: &str, data_type: DataType| Field::new(name, data_type, true);
    let schema = Arc::new(Schema::new(vec![
        column("locktype", DataType::Utf8),
        column("database", DataType::Int32),
        column("relation", DataType::Int32),
        column("page", DataType::Int32),
        column("tuple", DataType::Int16),
        column("virtualxid", DataType::Utf8),
        column("transactionid", DataType::Int64),
        column("classid", DataType::Int32),
        column("objid", DataType::Int32),
        column("objsubid", DataType::Int16),
        column("virtualtransaction", DataType::Utf8),
        column("pid", DataType::Int32),
        column("mode", DataType::Utf8),
        column("granted", DataType::Boolean),
        column("fastpath", DataType::Boolean),
        column(
            "waitstart",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
        ),
    ]));
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![]])?))
}

/// `pg_user` for a session: its user, as `pg_roles` lists it (a login role that may not
/// create or change anything), with PostgreSQL's columns.
fn pg_user(user: &str) -> Result<Arc<dyn TableProvider>> {
    let text_list = DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)));
    let schema = Arc::new(Schema::new(vec![
        Field::new("usename", DataType::Utf8, false),
        Field::new("usesysid", DataType::Int32, false),
        Field::new("usecreatedb", DataType::Boolean, false),
        Field::new("usesuper", DataType::Boolean, false),
        Field::new("userepl", DataType::Boolean, false),
        Field::new("usebypassrls", DataType::Boolean, false),
        Field::new("passwd", DataType::Utf8, true),
        Field::new(
            "valuntil",
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            true,
        ),
        Field::new("useconfig", text_list.clone(), true),
    ]));
    let no = || Arc::new(BooleanArray::from(vec![false])) as ArrayRef;
    let batch = RecordBatch::try_new(
        Arc::clone(&schema),
        vec![
            Arc::new(StringArray::from(vec![user])),
            // The oid pg_roles gives every role.
            Arc::new(Int32Array::from(vec![0])),
            no(),
            no(),
            no(),
            no(),
            Arc::new(StringArray::from(vec!["********"])),
            new_null_array(schema.field(7).data_type(), 1),
            new_null_array(&text_list, 1),
        ],
    )?;
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}

/// `table` with the named columns, which the library's snapshot stores as text (`[1, 2]`,
/// or `1 2` for `int2vector`), as the arrays PostgreSQL has there (`int2[]`, `oid[]`), so that
/// `= ANY(conkey)` and `unnest(indkey)` work.
fn with_typed_arrays(table: &ArrowTable, columns: &[(&str, DataType)]) -> Result<ArrowTable> {
    let schema = table.schema();
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(
            |field| match columns.iter().find(|(name, _)| name == field.name()) {
                Some((_, item)) => Field::new(
                    field.name(),
                    DataType::List(Arc::new(Field::new("item", item.clone(), true))),
                    true,
                ),
                None => field.as_ref().clone(),
            },
        )
        .collect();
    let typed = Arc::new(Schema::new(fields));
    let mut batches = Vec::new();
    for batch in table.data() {
        let mut arrays = Vec::new();
        for (field, array) in schema.fields().iter().zip(batch.columns()) {
            arrays.push(
                match columns.iter().find(|(name, _)| name == field.name()) {
                    Some((_, item)) => parse_array_column(array, item)?,
                    None => Arc::clone(array),
                },
            );
        }
        batches.push(RecordBatch::try_new(Arc::clone(&typed), arrays)?);
    }
    let mut ipc = Vec::new();
    let mut writer = FileWriter::try_new(&mut ipc, &typed)?;
    for batch in &batches {
        writer.write(batch)?;
    }
    writer.finish()?;
    drop(writer);
    ArrowTable::from_ipc_data(ipc)
}

/// Text arrays (`[1, 2]`, `{1,2}` or `1 2`) as a list of `item` values.
fn parse_array_column(array: &ArrayRef, item: &DataType) -> Result<ArrayRef> {
    let texts = cast(array, &DataType::Utf8)?;
    let texts = texts.as_string::<i32>();
    let mut values: Vec<Option<Vec<Option<i64>>>> = Vec::with_capacity(texts.len());
    for text in texts.iter() {
        values.push(match text {
            None => None,
            Some(text) => {
                let inner = text
                    .trim()
                    .trim_matches(|c| matches!(c, '[' | ']' | '{' | '}'));
                let mut parsed = Vec::new();
                let parts = inner.split(|c: char| c == ',' || c.is_whitespace());
                for part in parts.filter(|p| !p.is_empty()) {
                    parsed.push(Some(part.parse::<i64>().map_err(|_| {
                        DataFusionError::Internal(format!("catalog array value {text:?}"))
                    })?));
                }
                Some(parsed)
            }
        });
    }
    let list = ListArray::from_iter_primitive::<Int64Type, _, _>(values);
    Ok(cast(
        &list,
        &DataType::List(Arc::new(Field::new("item", item.clone(), true))),
    )?)
}

/// `pg_roles` as a session sees it: the user it connected as, a login role without
/// privileges to change anything.
#[derive(Debug, Clone)]
struct SessionRoles {
    user: String,
}

#[async_trait]
impl PgCatalogContextProvider for SessionRoles {
    async fn roles(&self) -> Vec<String> {
        vec![self.user.clone()]
    }

    async fn role(&self, name: &str) -> Option<Role> {
        (name == self.user).then(|| Role {
            name: name.to_owned(),
            is_superuser: false,
            can_login: true,
            can_create_db: false,
            can_create_role: false,
            can_create_user: false,
            can_replication: false,
            grants: Vec::new(),
            inherited_roles: Vec::new(),
        })
    }
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
