//! `pg_catalog` as polygate serves it: `datafusion-pg-catalog`'s tables with the `xmin`
//! system column, the array columns its snapshot stores as text typed as PostgreSQL has them,
//! and the views it lacks.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int32Array, IntervalMonthDayNanoArray, ListArray,
    RecordBatch, StringArray, new_null_array,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, Field, Int64Type, IntervalMonthDayNano, IntervalUnit, Schema, TimeUnit,
};
use datafusion::arrow::ipc::writer::FileWriter;
use datafusion::catalog::{SchemaProvider, TableProvider};
use datafusion::datasource::MemTable;
use datafusion::error::{DataFusionError, Result};
use datafusion_pg_catalog::pg_catalog::ArrowTable;
use datafusion_pg_catalog::pg_catalog::context::{PgCatalogContextProvider, Role};

use super::system_columns;

/// A view of our own in `pg_catalog`, by name.
pub(super) type View = (&'static str, Arc<dyn TableProvider>);

/// `pg_catalog`: the library's tables, each with the `xmin` system column, and the views it
/// does not have (`pg_user`, `pg_locks`, `pg_timezone_names`, `pg_timezone_abbrevs`).
#[derive(Debug)]
pub(super) struct PgCatalog {
    pub(super) library: Arc<dyn SchemaProvider>,
    pub(super) views: Vec<View>,
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
pub(super) fn time_zones() -> Result<[Arc<dyn TableProvider>; 2]> {
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
pub(super) fn pg_locks() -> Result<Arc<dyn TableProvider>> {
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
pub(super) fn pg_user(user: &str) -> Result<Arc<dyn TableProvider>> {
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
pub(super) fn with_typed_arrays(
    table: &ArrowTable,
    columns: &[(&str, DataType)],
) -> Result<ArrowTable> {
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
pub(super) struct SessionRoles {
    pub(super) user: String,
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
