//! `pg_catalog` as polygate serves it: `datafusion-pg-catalog`'s tables with the `xmin`
//! system column, the array columns its snapshot stores as text typed as PostgreSQL has them,
//! and the views it lacks.

use std::collections::HashMap;
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int32Array, IntervalMonthDayNanoArray, ListArray,
    ListBuilder, RecordBatch, StringArray, StringBuilder, new_null_array,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{
    DataType, Field, Int32Type, Int64Type, IntervalMonthDayNano, IntervalUnit, Schema, TimeUnit,
};
use datafusion::arrow::ipc::writer::FileWriter;
use datafusion::catalog::{SchemaProvider, TableFunctionArgs, TableFunctionImpl, TableProvider};
use datafusion::datasource::MemTable;
use datafusion::error::{DataFusionError, Result};
use datafusion_pg_catalog::pg_catalog::ArrowTable;
use datafusion_pg_catalog::pg_catalog::context::{PgCatalogContextProvider, Role};

use super::system_columns;
use super::system_table::SystemTable;

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
            return Ok(Some(SystemTable::wrap(Arc::clone(view))));
        }
        Ok(self
            .library
            .table(name)
            .await?
            .map(|table| SystemTable::wrap(system_columns::WithXmin::wrap(name, table))))
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

/// `pg_available_extension_versions` and `pg_available_extensions` (views, and functions of
/// the same names): the extensions `pg_extension` lists, each installed at the one version
/// there is. polygate installs none of its own.
pub(super) fn available_extensions(
    pg_extension: &ArrowTable,
) -> Result<[Arc<dyn TableProvider>; 2]> {
    let (mut names, mut versions, mut relocatable, mut schemas) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for batch in pg_extension.data() {
        let column = |name: &str| named_column(batch, "pg_extension", name);
        let extname = cast(column("extname")?, &DataType::Utf8)?;
        let extversion = cast(column("extversion")?, &DataType::Utf8)?;
        let extrelocatable = cast(column("extrelocatable")?, &DataType::Boolean)?;
        let extnamespace = cast(column("extnamespace")?, &DataType::Int32)?;
        names.extend(
            extname
                .as_string::<i32>()
                .iter()
                .map(|v| v.map(str::to_owned)),
        );
        versions.extend(
            extversion
                .as_string::<i32>()
                .iter()
                .map(|v| v.map(str::to_owned)),
        );
        relocatable.extend(extrelocatable.as_boolean().iter());
        // Built-in extensions live in pg_catalog, PostgreSQL's namespace 11.
        schemas.extend(
            extnamespace
                .as_primitive::<Int32Type>()
                .iter()
                .map(|oid| (oid == Some(11)).then(|| "pg_catalog".to_owned())),
        );
    }
    let rows = names.len();
    let column = |name: &str, data_type: DataType| Field::new(name, data_type, true);
    let text_list = DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)));
    let versions_schema = Arc::new(Schema::new(vec![
        column("name", DataType::Utf8),
        column("version", DataType::Utf8),
        column("installed", DataType::Boolean),
        column("superuser", DataType::Boolean),
        column("trusted", DataType::Boolean),
        column("relocatable", DataType::Boolean),
        column("schema", DataType::Utf8),
        column("requires", text_list.clone()),
        column("comment", DataType::Utf8),
    ]));
    let flag = |value: bool| Arc::new(BooleanArray::from(vec![value; rows])) as ArrayRef;
    let texts =
        |values: &[Option<String>]| Arc::new(StringArray::from(values.to_vec())) as ArrayRef;
    let versions_batch = RecordBatch::try_new(
        Arc::clone(&versions_schema),
        vec![
            texts(&names),
            texts(&versions),
            flag(true),
            flag(true),
            // plpgsql, the one there is, is trusted (PostgreSQL 13 and later).
            flag(true),
            Arc::new(BooleanArray::from(relocatable)),
            texts(&schemas),
            new_null_array(&text_list, rows),
            new_null_array(&DataType::Utf8, rows),
        ],
    )?;
    let extensions_schema = Arc::new(Schema::new(vec![
        column("name", DataType::Utf8),
        column("default_version", DataType::Utf8),
        column("installed_version", DataType::Utf8),
        column("comment", DataType::Utf8),
    ]));
    let extensions_batch = RecordBatch::try_new(
        Arc::clone(&extensions_schema),
        vec![
            texts(&names),
            texts(&versions),
            texts(&versions),
            new_null_array(&DataType::Utf8, rows),
        ],
    )?;
    Ok([
        Arc::new(MemTable::try_new(
            versions_schema,
            vec![vec![versions_batch]],
        )?),
        Arc::new(MemTable::try_new(
            extensions_schema,
            vec![vec![extensions_batch]],
        )?),
    ])
}

/// A view that is also a function of no arguments (`pg_available_extension_versions()`).
#[derive(Debug)]
pub(super) struct ViewFunction(pub(super) Arc<dyn TableProvider>);

impl TableFunctionImpl for ViewFunction {
    fn call_with_args(&self, args: TableFunctionArgs) -> Result<Arc<dyn TableProvider>> {
        if !args.exprs().is_empty() {
            return Err(DataFusionError::Plan(
                "the function takes no arguments".to_owned(),
            ));
        }
        Ok(Arc::clone(&self.0))
    }
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
/// `1 2` for `int2vector`, `{postgres=X/postgres}` for `aclitem[]`), as the arrays PostgreSQL
/// has there (`int2[]`, `oid[]`, `aclitem[]` as `text[]`), so that `= ANY(conkey)`,
/// `unnest(indkey)` and `array_to_string(proacl, ...)` work.
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
    arrow_table(&typed, &batches)
}

/// `pg_aggregate` with `aggfnoid` as the aggregate's oid, which it is in PostgreSQL (a
/// `regproc`), so that `pg_aggregate JOIN pg_proc ON aggfnoid = pg_proc.oid` (Grafana's
/// aggregate list) works.
///
/// The library stores the function's name (`pg_catalog.max`), which its overloads share. An
/// overload is known by its argument types, and a row of `pg_aggregate` tells them through its
/// transition function, whose arguments are the state and then the aggregate's own
/// (`int8larger(int8, int8)` for `max(int8)`), or, for ordered-set aggregates, which share
/// one transition function, through their final function (`percentile_disc_final(internal,
/// float8, anyelement)`). A row neither tells apart takes the first overload left, in oid
/// order.
#[allow(
    clippy::indexing_slicing,
    reason = "`index` is the position of `aggfnoid` in the table's schema, which `fields` \
              copies and which every batch read from the table's Arrow file carries"
)]
pub(super) fn with_aggregate_oids(
    aggregates: &ArrowTable,
    procs: &ArrowTable,
) -> Result<ArrowTable> {
    let procs = proc_signatures(procs)?;
    let mut unused: HashMap<&str, Vec<&ProcSignature>> = HashMap::new();
    for proc in procs.iter().filter(|p| p.is_aggregate) {
        unused.entry(proc.name.as_str()).or_default().push(proc);
    }
    for overloads in unused.values_mut() {
        overloads.sort_by_key(|p| p.oid);
    }
    // The argument types an aggregate's support function `name` implies: its own after the
    // state, one list per overload of that name.
    let implied = |name: Option<&str>| -> Vec<&[i64]> {
        let Some(name) = name else { return Vec::new() };
        let name = name.strip_prefix("pg_catalog.").unwrap_or(name);
        procs
            .iter()
            .filter(|p| p.name == name)
            .filter_map(|p| p.args.get(1..))
            .collect()
    };
    let schema = aggregates.schema();
    let index = schema.index_of("aggfnoid")?;
    let mut fields: Vec<Field> = schema.fields().iter().map(|f| f.as_ref().clone()).collect();
    fields[index] = Field::new("aggfnoid", DataType::Int32, true);
    let typed = Arc::new(Schema::new(fields));
    let mut batches = Vec::new();
    for batch in aggregates.data() {
        let text = |name: &str| -> Result<ArrayRef> {
            Ok(cast(
                named_column(batch, "pg_aggregate", name)?,
                &DataType::Utf8,
            )?)
        };
        let (names, transfns, finalfns) =
            (text("aggfnoid")?, text("aggtransfn")?, text("aggfinalfn")?);
        let (names, transfns, finalfns) = (
            names.as_string::<i32>(),
            transfns.as_string::<i32>(),
            finalfns.as_string::<i32>(),
        );
        let mut oids = Vec::with_capacity(batch.num_rows());
        for row in 0..batch.num_rows() {
            let name = names.is_valid(row).then(|| names.value(row));
            let name = name.map(|n| n.strip_prefix("pg_catalog.").unwrap_or(n));
            let Some(overloads) = name.and_then(|n| unused.get_mut(n)) else {
                oids.push(None);
                continue;
            };
            let transfn = transfns.is_valid(row).then(|| transfns.value(row));
            let finalfn = finalfns.is_valid(row).then(|| finalfns.value(row));
            let told = [implied(transfn), implied(finalfn)]
                .into_iter()
                .find_map(|signatures| {
                    let matching: Vec<usize> = overloads
                        .iter()
                        .enumerate()
                        .filter(|(_, overload)| signatures.contains(&overload.args.as_slice()))
                        .map(|(i, _)| i)
                        .collect();
                    match matching.as_slice() {
                        &[only] => Some(only),
                        _ => None,
                    }
                });
            let chosen = told.unwrap_or(0);
            oids.push((chosen < overloads.len()).then(|| overloads.remove(chosen).oid));
        }
        let mut columns = batch.columns().to_vec();
        columns[index] = Arc::new(Int32Array::from(oids));
        batches.push(RecordBatch::try_new(Arc::clone(&typed), columns)?);
    }
    arrow_table(&typed, &batches)
}

/// A function of `pg_proc`: its oid, name, whether it is an aggregate, and its argument types.
struct ProcSignature {
    oid: i32,
    name: String,
    is_aggregate: bool,
    args: Vec<i64>,
}

fn proc_signatures(procs: &ArrowTable) -> Result<Vec<ProcSignature>> {
    let mut signatures = Vec::new();
    for batch in procs.data() {
        let column = |name: &str| named_column(batch, "pg_proc", name);
        let oids = cast(column("oid")?, &DataType::Int32)?;
        let names = cast(column("proname")?, &DataType::Utf8)?;
        let kinds = cast(column("prokind")?, &DataType::Utf8)?;
        let args = parse_array_column(column("proargtypes")?, &DataType::Int64)?;
        let (oids, names, kinds, args) = (
            oids.as_primitive::<Int32Type>(),
            names.as_string::<i32>(),
            kinds.as_string::<i32>(),
            args.as_list::<i32>(),
        );
        for row in 0..batch.num_rows() {
            if !(oids.is_valid(row) && names.is_valid(row)) {
                continue;
            }
            let types = args.is_valid(row).then(|| args.value(row));
            signatures.push(ProcSignature {
                oid: oids.value(row),
                name: names.value(row).to_owned(),
                is_aggregate: kinds.is_valid(row) && kinds.value(row) == "a",
                args: types.map_or_else(Vec::new, |types| {
                    types.as_primitive::<Int64Type>().iter().flatten().collect()
                }),
            });
        }
    }
    Ok(signatures)
}

/// The column `name` of a batch of the library's `table`.
fn named_column<'a>(batch: &'a RecordBatch, table: &str, name: &str) -> Result<&'a ArrayRef> {
    batch
        .column_by_name(name)
        .ok_or_else(|| DataFusionError::Internal(format!("{table} has no {name}")))
}

/// An `ArrowTable` of `batches`.
fn arrow_table(schema: &Arc<Schema>, batches: &[RecordBatch]) -> Result<ArrowTable> {
    let mut ipc = Vec::new();
    let mut writer = FileWriter::try_new(&mut ipc, schema)?;
    for batch in batches {
        writer.write(batch)?;
    }
    writer.finish()?;
    drop(writer);
    ArrowTable::from_ipc_data(ipc)
}

/// Text arrays (`[1, 2]`, `{1,2}`, `1 2`, or `{"a b",c}` for text items) as a list of `item`
/// values.
pub(super) fn parse_array_column(array: &ArrayRef, item: &DataType) -> Result<ArrayRef> {
    let texts = cast(array, &DataType::Utf8)?;
    let texts = texts.as_string::<i32>();
    if item == &DataType::Utf8 {
        let mut list = ListBuilder::new(StringBuilder::new());
        for text in texts.iter() {
            match text {
                None => list.append_null(),
                Some(text) => {
                    for element in array_elements(text) {
                        list.values().append_option(element);
                    }
                    list.append(true);
                }
            }
        }
        return Ok(Arc::new(list.finish()));
    }
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

/// The elements of a PostgreSQL text array literal (`{a,"b c",NULL}`): quoted ones unquoted,
/// unquoted ones trimmed, an unquoted `NULL` a NULL element.
fn array_elements(text: &str) -> Vec<Option<String>> {
    let inner = text.trim();
    let inner = inner.strip_prefix('{').unwrap_or(inner);
    let inner = inner.strip_suffix('}').unwrap_or(inner);
    let mut elements = Vec::new();
    if inner.trim().is_empty() {
        return elements;
    }
    let (mut current, mut was_quoted) = (String::new(), false);
    let (mut quoted, mut escaped) = (false, false);
    let finish = |current: &mut String, was_quoted: &mut bool| {
        let element = std::mem::take(current);
        if std::mem::take(was_quoted) {
            Some(element)
        } else {
            let trimmed = element.trim();
            (!trimmed.eq_ignore_ascii_case("null")).then(|| trimmed.to_owned())
        }
    };
    for c in inner.chars() {
        match c {
            _ if escaped => {
                current.push(c);
                escaped = false;
            }
            '\\' => escaped = true,
            '"' => {
                quoted = !quoted;
                was_quoted = true;
            }
            ',' if !quoted => elements.push(finish(&mut current, &mut was_quoted)),
            _ => current.push(c),
        }
    }
    elements.push(finish(&mut current, &mut was_quoted));
    elements
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

#[cfg(test)]
mod tests {
    use super::array_elements;

    #[test]
    fn text_array_literals_split_into_elements() {
        let cases: [(&str, &[Option<&str>]); 6] = [
            ("{postgres=X/postgres}", &[Some("postgres=X/postgres")]),
            (
                "{=Tc/postgres,postgres=CTc/postgres}",
                &[Some("=Tc/postgres"), Some("postgres=CTc/postgres")],
            ),
            (r#"{"a,b=r/c", d}"#, &[Some("a,b=r/c"), Some("d")]),
            (
                r#"{"quote\"d","NULL",NULL}"#,
                &[Some("quote\"d"), Some("NULL"), None],
            ),
            ("{}", &[]),
            ("", &[]),
        ];
        for (text, expected) in cases {
            let expected: Vec<Option<String>> =
                expected.iter().map(|e| e.map(str::to_owned)).collect();
            assert_eq!(array_elements(text), expected, "{text}");
        }
    }
}
