//! The PostgreSQL functions clients call at start-up and while browsing: `version()`,
//! `current_setting()`, `set_config()`, `current_schema()`, `obj_description()`, ...
//!
//! Those that only need the catalog come from `datafusion-pg-catalog`; those that read the
//! session (its settings, user and search path) are defined here.

use std::hash::{Hash, Hasher};
use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int32Array, Int64Array, ListArray, ListBuilder,
    StringBuilder, StructArray, UInt32Array, new_empty_array,
};
use datafusion::arrow::buffer::{NullBuffer, OffsetBuffer};
use datafusion::arrow::compute::take;
use datafusion::arrow::datatypes::{DataType, Field, Fields, TimeUnit};
use datafusion::common::{ScalarValue, exec_err};
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, TypeSignature,
    Volatility,
};
use datafusion::prelude::SessionContext;
use datafusion_pg_catalog::pg_catalog::{
    array_bounds_udf, create_current_database_udf, create_pg_backend_pid_udf,
    create_pg_encoding_to_char_udf, create_pg_get_constraintdef,
    create_pg_get_partition_ancestors_udf, create_pg_get_partkeydef_udf,
    create_pg_get_statisticsobjdef_columns_udf, create_pg_get_userbyid_udf,
    create_pg_relation_is_publishable_udf, create_pg_relation_size_udf,
    create_pg_stat_get_numscans, create_pg_table_is_visible, create_pg_total_relation_size_udf,
    format_type, generate_series_arg_coercion, has_privilege_udf, pg_get_expr_udf, quote_ident_udf,
};

use super::system_columns::{FROZEN_AGE, PgTypePlanner};
use super::{SessionInfo, StaticTables};
use crate::settings::{SERVER_VERSION, SettingError};

/// Registers every function and type name a session's clients may call.
pub fn register(ctx: &SessionContext, static_tables: &StaticTables, session: Arc<SessionInfo>) {
    for udf in [
        create_current_database_udf(&session.database),
        create_pg_get_userbyid_udf(),
        has_privilege_udf::create_has_privilege_udf("has_table_privilege"),
        has_privilege_udf::create_has_privilege_udf("has_schema_privilege"),
        has_privilege_udf::create_has_privilege_udf("has_database_privilege"),
        has_privilege_udf::create_has_privilege_udf("has_any_column_privilege"),
        create_pg_table_is_visible(),
        format_type::create_format_type_udf(),
        pg_get_expr_udf::create_pg_get_expr_udf(),
        create_pg_get_partkeydef_udf(),
        create_pg_relation_is_publishable_udf(),
        create_pg_get_statisticsobjdef_columns_udf(),
        create_pg_encoding_to_char_udf(),
        create_pg_backend_pid_udf(),
        create_pg_relation_size_udf(),
        create_pg_total_relation_size_udf(),
        create_pg_stat_get_numscans(),
        create_pg_get_constraintdef(),
        create_pg_get_partition_ancestors_udf(),
        quote_ident_udf::create_quote_ident_udf(),
        quote_ident_udf::create_parse_ident_udf(),
        array_bounds_udf::create_array_upper_udf(),
        array_bounds_udf::create_array_lower_udf(),
    ] {
        ctx.register_udf(udf);
    }
    ctx.register_udtf(
        "pg_get_keywords",
        Arc::clone(&static_tables.0.pg_get_keywords) as _,
    );
    for name in ["pg_available_extension_versions", "pg_available_extensions"] {
        if let Some(view) = static_tables.view(name) {
            ctx.register_udtf(name, Arc::new(super::ViewFunction(view)));
        }
    }
    let types = static_tables.clone();
    ctx.register_udf(ScalarUDF::new_from_impl(function(
        "to_regtype",
        Signature::exact(vec![DataType::Utf8], Volatility::Stable),
        DataType::Int32,
        move |args, rows| {
            let oids: Int32Array = texts(args, 0, rows)?
                .iter()
                .map(|name| name.as_deref().and_then(|name| types.type_oid(name)))
                .collect();
            Ok(ColumnarValue::Array(Arc::new(oids)))
        },
    )));
    ctx.register_udf(ScalarUDF::new_from_impl(function(
        crate::rewrite::LIKE_ESCAPE_FUNCTION,
        Signature::exact(vec![DataType::Utf8, DataType::Utf8], Volatility::Immutable),
        DataType::Utf8,
        |args, rows| {
            let patterns = texts(args, 0, rows)?;
            let escapes = texts(args, 1, rows)?;
            let mut out = StringBuilder::new();
            for (pattern, escape) in patterns.iter().zip(&escapes) {
                match (
                    pattern,
                    escape
                        .as_deref()
                        .map(|e| e.chars().collect::<Vec<_>>())
                        .as_deref(),
                ) {
                    (Some(pattern), Some(&[escape])) => {
                        out.append_value(crate::rewrite::backslash_escaped(pattern, escape))
                    }
                    // `ESCAPE ''`: no escape character, every backslash an ordinary one.
                    (Some(pattern), Some(&[])) => out.append_value(pattern.replace('\\', "\\\\")),
                    (Some(_), Some(_)) => {
                        return exec_err!("invalid escape string: it must be one character");
                    }
                    _ => out.append_null(),
                }
            }
            Ok(ColumnarValue::Array(Arc::new(out.finish())))
        },
    )));
    ctx.register_udf(if_found_udf());
    ctx.register_udf(ScalarUDF::new_from_impl(EmptyIfNull::default()));
    ctx.register_udf(ScalarUDF::new_from_impl(ExpandArray::default()));
    for function in session_functions(&session) {
        ctx.register_udf(ScalarUDF::new_from_impl(function));
    }
    // `regclass`, `regtype`, `oid` and the other oid aliases, and `xid`, as type names in casts.
    let state = ctx.state_ref();
    let with_types =
        datafusion::execution::SessionStateBuilder::new_from_existing(state.read().clone())
            .with_type_planner(Arc::new(PgTypePlanner::default()))
            .build();
    *state.write() = with_types;
    // generate_series over int4 bounds, as psql's queries write it.
    generate_series_arg_coercion::CoerceIntArgsToBigInt::widen(ctx);
}

/// `pg_if_found(found, value)`: `value` where `found` is true, NULL elsewhere; see
/// [`crate::rewrite::CatalogSubqueries`].
pub fn if_found_udf() -> ScalarUDF {
    ScalarUDF::new_from_impl(IfFound::default())
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct IfFound {
    signature: Signature,
}

impl Default for IfFound {
    fn default() -> Self {
        Self {
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for IfFound {
    fn name(&self) -> &str {
        crate::rewrite::IF_FOUND_FUNCTION
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        Ok(arg_types.get(1).cloned().unwrap_or(DataType::Null))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let rows = args.number_rows;
        let [found, value] = args.args.as_slice() else {
            return exec_err!("pg_if_found takes two arguments");
        };
        let found = datafusion::arrow::compute::cast(&found.to_array(rows)?, &DataType::Boolean)?;
        // Rows where `found` is false or NULL become NULL. (Arrow's mask of the nulls wants
        // a null buffer: an array with none is its own mask.)
        let found = found.as_boolean();
        let keep = match found.nulls() {
            Some(_) => datafusion::arrow::compute::prep_null_mask_filter(found),
            None => found.clone(),
        };
        let value = value.to_array(rows)?;
        let dropped = datafusion::arrow::compute::not(&keep)?;
        Ok(ColumnarValue::Array(datafusion::arrow::compute::nullif(
            &value, &dropped,
        )?))
    }
}

/// `pg_empty_if_null(list)`: `list`, with an empty list of its type where it is NULL; see
/// the syntax rule `array_of_unnest`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct EmptyIfNull {
    signature: Signature,
}

impl Default for EmptyIfNull {
    fn default() -> Self {
        Self {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for EmptyIfNull {
    fn name(&self) -> &str {
        crate::rewrite::EMPTY_IF_NULL_FUNCTION
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        match arg_types {
            [list @ DataType::List(_)] => Ok(list.clone()),
            // ARRAY(...) over a NULL literal: an empty text array.
            [DataType::Null] => Ok(text_list()),
            other => exec_err!("pg_empty_if_null takes a list, not {other:?}"),
        }
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [value] = args.args.as_slice() else {
            return exec_err!("pg_empty_if_null takes one argument");
        };
        let array = value.to_array(args.number_rows)?;
        let DataType::List(field) = args.return_field.data_type() else {
            return exec_err!("pg_empty_if_null returns a list");
        };
        if array.data_type() == &DataType::Null {
            let offsets = OffsetBuffer::new_zeroed(array.len());
            let values = new_empty_array(field.data_type());
            let empty = ListArray::try_new(Arc::clone(field), offsets, values, None)?;
            return Ok(ColumnarValue::Array(Arc::new(empty)));
        }
        let list = array.as_list::<i32>();
        if list.null_count() == 0 {
            return Ok(ColumnarValue::Array(array));
        }
        // A NULL row may still span values; keep only the valid rows' values.
        let mut lengths = Vec::with_capacity(list.len());
        let mut indices = Vec::new();
        let offsets = list.value_offsets();
        for (row, (&start, &end)) in offsets.iter().zip(offsets.iter().skip(1)).enumerate() {
            if list.is_valid(row) {
                lengths.push(usize::try_from(end - start).unwrap_or(0));
                indices.extend((start..end).map(|i| u32::try_from(i).unwrap_or(u32::MAX)));
            } else {
                lengths.push(0);
            }
        }
        let values = take(list.values(), &UInt32Array::from(indices), None)?;
        let offsets = OffsetBuffer::from_lengths(lengths);
        let filled = ListArray::try_new(Arc::clone(field), offsets, values, None)?;
        Ok(ColumnarValue::Array(Arc::new(filled)))
    }
}

/// `pg_expandarray(list)`: each element `x` of `list` with its 1-based position `n`, as a
/// list of `{x, n}` structs; see the syntax rule `expand_array`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct ExpandArray {
    signature: Signature,
}

impl Default for ExpandArray {
    fn default() -> Self {
        Self {
            signature: Signature::any(1, Volatility::Immutable),
        }
    }
}

impl ExpandArray {
    fn fields(item: &DataType) -> Fields {
        Fields::from(vec![
            Field::new("x", item.clone(), true),
            Field::new("n", DataType::Int32, false),
        ])
    }
}

impl ScalarUDFImpl for ExpandArray {
    fn name(&self) -> &str {
        crate::rewrite::EXPAND_ARRAY_FUNCTION
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, arg_types: &[DataType]) -> Result<DataType> {
        let item = match arg_types {
            [DataType::List(field)] => field.data_type().clone(),
            [DataType::Null] => DataType::Null,
            other => return exec_err!("_pg_expandarray takes an array, not {other:?}"),
        };
        let rows = DataType::Struct(Self::fields(&item));
        Ok(DataType::List(Arc::new(Field::new("item", rows, true))))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let [value] = args.args.as_slice() else {
            return exec_err!("_pg_expandarray takes one argument");
        };
        let DataType::List(field) = args.return_field.data_type() else {
            return exec_err!("_pg_expandarray returns a list");
        };
        let DataType::Struct(fields) = field.data_type() else {
            return exec_err!("_pg_expandarray returns a list of structs");
        };
        let array = value.to_array(args.number_rows)?;
        let list = if array.data_type() == &DataType::Null {
            let item = Arc::new(Field::new("item", DataType::Null, true));
            let offsets = OffsetBuffer::new_zeroed(array.len());
            let nulls = Some(NullBuffer::new_null(array.len()));
            ListArray::try_new(item, offsets, new_empty_array(&DataType::Null), nulls)?
        } else {
            array.as_list::<i32>().clone()
        };
        // Each value's position in its row; values outside every row (under a NULL row's
        // span) are never read.
        let mut positions = vec![0_i32; list.values().len()];
        let offsets = list.value_offsets();
        for (&start, &end) in offsets.iter().zip(offsets.iter().skip(1)) {
            for (n, index) in (start..end).enumerate() {
                let slot = usize::try_from(index).unwrap_or(usize::MAX);
                if let Some(position) = positions.get_mut(slot) {
                    *position = i32::try_from(n + 1).unwrap_or(i32::MAX);
                }
            }
        }
        let rows = StructArray::try_new(
            fields.clone(),
            vec![
                Arc::clone(list.values()),
                Arc::new(Int32Array::from(positions)),
            ],
            None,
        )?;
        let expanded = ListArray::try_new(
            Arc::clone(field),
            list.offsets().clone(),
            Arc::new(rows),
            list.nulls().cloned(),
        )?;
        Ok(ColumnarValue::Array(Arc::new(expanded)))
    }
}

type Body = dyn Fn(&[ColumnarValue], usize) -> Result<ColumnarValue> + Send + Sync;

/// A function whose result depends on the session.
struct SessionFunction {
    name: &'static str,
    signature: Signature,
    returns: DataType,
    body: Arc<Body>,
}

impl std::fmt::Debug for SessionFunction {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SessionFunction")
            .field("name", &self.name)
            .finish()
    }
}

impl PartialEq for SessionFunction {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && Arc::ptr_eq(&self.body, &other.body)
    }
}

impl Eq for SessionFunction {}

impl Hash for SessionFunction {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
    }
}

impl ScalarUDFImpl for SessionFunction {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(self.returns.clone())
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        (self.body)(&args.args, args.number_rows)
    }
}

fn function(
    name: &'static str,
    signature: Signature,
    returns: DataType,
    body: impl Fn(&[ColumnarValue], usize) -> Result<ColumnarValue> + Send + Sync + 'static,
) -> SessionFunction {
    SessionFunction {
        name,
        signature,
        returns,
        body: Arc::new(body),
    }
}

fn text(value: Option<String>) -> ColumnarValue {
    ColumnarValue::Scalar(ScalarValue::Utf8(value))
}

fn text_list() -> DataType {
    DataType::List(Arc::new(Field::new("item", DataType::Utf8, true)))
}

/// The argument at `index` as text, one value per row.
fn texts(args: &[ColumnarValue], index: usize, rows: usize) -> Result<Vec<Option<String>>> {
    let Some(arg) = args.get(index) else {
        return exec_err!("missing argument");
    };
    let array = arg.to_array(rows)?;
    let array = datafusion::arrow::compute::cast(&array, &DataType::Utf8)?;
    let strings = array.as_string::<i32>();
    Ok((0..rows)
        .map(|i| strings.is_valid(i).then(|| strings.value(i).to_owned()))
        .collect())
}

fn bool_arg(args: &[ColumnarValue], index: usize) -> bool {
    match args.get(index) {
        Some(ColumnarValue::Scalar(ScalarValue::Boolean(Some(b)))) => *b,
        Some(ColumnarValue::Array(array)) => array
            .as_any()
            .downcast_ref::<BooleanArray>()
            .is_some_and(|a| !a.is_empty() && a.is_valid(0) && a.value(0)),
        _ => false,
    }
}

fn setting_error(error: SettingError) -> datafusion::error::DataFusionError {
    datafusion::error::DataFusionError::External(Box::new(crate::error::SqlError::from(error)))
}

fn session_functions(session: &Arc<SessionInfo>) -> Vec<SessionFunction> {
    let version = format!(
        "PostgreSQL {SERVER_VERSION} on {}-{}, a read-only federated SQL gateway, 64-bit",
        std::env::consts::ARCH,
        std::env::consts::OS
    );
    let user = session.user.clone();
    let session_user = session.user.clone();
    let settings_for_get = Arc::clone(session);
    let settings_for_set = Arc::clone(session);
    let schema_session = Arc::clone(session);
    let schemas_session = Arc::clone(session);
    let started = session.started;
    let nothing = |name| {
        function(
            name,
            Signature::variadic_any(Volatility::Stable),
            DataType::Utf8,
            |_, _| Ok(text(None)),
        )
    };
    vec![
        function(
            "version",
            Signature::exact(vec![], Volatility::Stable),
            DataType::Utf8,
            move |_, _| Ok(text(Some(version.clone()))),
        ),
        function(
            "current_user",
            Signature::exact(vec![], Volatility::Stable),
            DataType::Utf8,
            move |_, _| Ok(text(Some(user.clone()))),
        ),
        function(
            "session_user",
            Signature::exact(vec![], Volatility::Stable),
            DataType::Utf8,
            move |_, _| Ok(text(Some(session_user.clone()))),
        ),
        function(
            "current_setting",
            Signature::one_of(
                vec![
                    TypeSignature::Exact(vec![DataType::Utf8]),
                    TypeSignature::Exact(vec![DataType::Utf8, DataType::Boolean]),
                ],
                Volatility::Stable,
            ),
            DataType::Utf8,
            move |args, rows| {
                let missing_ok = bool_arg(args, 1);
                let settings = settings_for_get.settings();
                let mut values = StringBuilder::new();
                for name in texts(args, 0, rows)? {
                    match name.map(|name| settings.get(&name)) {
                        Some(Ok(value)) => values.append_value(value),
                        Some(Err(SettingError::Unknown(_))) if missing_ok => values.append_null(),
                        Some(Err(error)) => return Err(setting_error(error)),
                        None => values.append_null(),
                    }
                }
                Ok(ColumnarValue::Array(Arc::new(values.finish())))
            },
        ),
        function(
            "set_config",
            Signature::exact(
                vec![DataType::Utf8, DataType::Utf8, DataType::Boolean],
                Volatility::Volatile,
            ),
            DataType::Utf8,
            move |args, rows| {
                let names = texts(args, 0, rows)?;
                let values = texts(args, 1, rows)?;
                let mut settings = settings_for_set
                    .settings
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                let mut out = StringBuilder::new();
                for (name, value) in names.into_iter().zip(values) {
                    let (Some(name), Some(value)) = (name, value) else {
                        out.append_null();
                        continue;
                    };
                    settings.set(&name, &value).map_err(setting_error)?;
                    out.append_value(settings.get(&name).map_err(setting_error)?);
                }
                Ok(ColumnarValue::Array(Arc::new(out.finish())))
            },
        ),
        function(
            "current_schema",
            Signature::exact(vec![], Volatility::Stable),
            DataType::Utf8,
            move |_, _| Ok(text(schema_session.current_schemas().into_iter().next())),
        ),
        function(
            "current_schemas",
            Signature::exact(vec![DataType::Boolean], Volatility::Stable),
            text_list(),
            move |args, rows| {
                let implicit = bool_arg(args, 0);
                let mut schemas = schemas_session.current_schemas();
                if implicit {
                    schemas.insert(0, super::PG_CATALOG.to_owned());
                }
                let mut list = ListBuilder::new(StringBuilder::new());
                for _ in 0..rows.max(1) {
                    for schema in &schemas {
                        list.values().append_value(schema);
                    }
                    list.append(true);
                }
                let array: ArrayRef = Arc::new(list.finish());
                Ok(ColumnarValue::Array(array))
            },
        ),
        function(
            "pg_postmaster_start_time",
            Signature::exact(vec![], Volatility::Stable),
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            move |_, _| {
                let micros = started
                    .duration_since(std::time::UNIX_EPOCH)
                    .map_or(0, |d| i64::try_from(d.as_micros()).unwrap_or(i64::MAX));
                Ok(ColumnarValue::Scalar(ScalarValue::TimestampMicrosecond(
                    Some(micros),
                    Some("UTC".into()),
                )))
            },
        ),
        // Every transaction id polygate shows is frozen (see `system_columns`).
        function(
            "age",
            Signature::uniform(1, vec![DataType::Int64], Volatility::Stable),
            DataType::Int32,
            |args, rows| {
                let Some(xids) = args.first() else {
                    return exec_err!("missing argument");
                };
                let xids = xids.to_array(rows)?;
                let ages: Int32Array = (0..rows)
                    .map(|row| xids.is_valid(row).then_some(FROZEN_AGE))
                    .collect();
                Ok(ColumnarValue::Array(Arc::new(ages)))
            },
        ),
        // polygate never writes, as a hot standby: clients that check (DataGrip, libpq's
        // `target_session_attrs`) skip what needs a writable server, such as transaction ids.
        function(
            "pg_is_in_recovery",
            Signature::exact(vec![], Volatility::Stable),
            DataType::Boolean,
            |_, _| Ok(ColumnarValue::Scalar(ScalarValue::Boolean(Some(true)))),
        ),
        // What a standby answers before it has replayed anything: no WAL position, no time.
        function(
            "pg_last_wal_receive_lsn",
            Signature::exact(vec![], Volatility::Volatile),
            DataType::Utf8,
            |_, _| Ok(text(None)),
        ),
        function(
            "pg_last_wal_replay_lsn",
            Signature::exact(vec![], Volatility::Volatile),
            DataType::Utf8,
            |_, _| Ok(text(None)),
        ),
        function(
            "pg_last_xact_replay_timestamp",
            Signature::exact(vec![], Volatility::Volatile),
            DataType::Timestamp(TimeUnit::Microsecond, Some("UTC".into())),
            |_, _| {
                Ok(ColumnarValue::Scalar(ScalarValue::TimestampMicrosecond(
                    None,
                    Some("UTC".into()),
                )))
            },
        ),
        function(
            "pg_is_wal_replay_paused",
            Signature::exact(vec![], Volatility::Volatile),
            DataType::Boolean,
            |_, _| Ok(ColumnarValue::Scalar(ScalarValue::Boolean(Some(false)))),
        ),
        no_transaction_id("txid_current"),
        no_transaction_id("pg_current_xact_id"),
        function(
            "txid_current_if_assigned",
            Signature::exact(vec![], Volatility::Volatile),
            DataType::Int64,
            |_, _| Ok(ColumnarValue::Scalar(ScalarValue::Int64(None))),
        ),
        function(
            "pg_current_xact_id_if_assigned",
            Signature::exact(vec![], Volatility::Volatile),
            DataType::Int64,
            |_, _| Ok(ColumnarValue::Scalar(ScalarValue::Int64(None))),
        ),
        nothing("obj_description"),
        nothing("col_description"),
        nothing("shobj_description"),
        nothing("pg_get_viewdef"),
        nothing("pg_get_indexdef"),
        nothing("pg_get_triggerdef"),
        nothing("pg_get_serial_sequence"),
        nothing("pg_get_function_arguments"),
        nothing("pg_get_function_identity_arguments"),
        function(
            "pg_get_function_result",
            Signature::variadic_any(Volatility::Stable),
            DataType::Utf8,
            |_, _| Ok(text(None)),
        ),
        visible("pg_function_is_visible"),
        visible("pg_type_is_visible"),
        visible("pg_collation_is_visible"),
        visible("pg_opclass_is_visible"),
        visible("pg_conversion_is_visible"),
        function(
            "json_build_object",
            Signature::variadic_any(Volatility::Immutable),
            DataType::Utf8,
            json_build_object,
        ),
        function(
            "format",
            Signature::variadic_any(Volatility::Stable),
            DataType::Utf8,
            format_rows,
        ),
        // Both of polygate's tablespaces are built in, which PostgreSQL reports as ''.
        function(
            "pg_tablespace_location",
            Signature::variadic_any(Volatility::Stable),
            DataType::Utf8,
            |_, _| Ok(text(Some(String::new()))),
        ),
    ]
}

/// `format(formatstr, args...)` row by row; see [`format_text`].
#[allow(
    clippy::indexing_slicing,
    reason = "`texts` gives each column `rows` values, and `columns` has a first one when a \
              template was read"
)]
fn format_rows(args: &[ColumnarValue], rows: usize) -> Result<ColumnarValue> {
    let columns: Vec<Vec<Option<String>>> = (0..args.len())
        .map(|i| texts(args, i, rows))
        .collect::<Result<_>>()?;
    let mut out = StringBuilder::new();
    for row in 0..rows {
        let Some(Some(template)) = columns.first().map(|c| &c[row]) else {
            out.append_null();
            continue;
        };
        let values: Vec<Option<&str>> = columns[1..].iter().map(|c| c[row].as_deref()).collect();
        out.append_value(format_text(template, &values)?);
    }
    Ok(ColumnarValue::Array(Arc::new(out.finish())))
}

/// PostgreSQL's `format()`: `%s` (the value, NULL as nothing), `%I` (an identifier, quoted
/// when needed), `%L` (a literal, NULL as `NULL`), `%%`, and `%n$` positions.
fn format_text(template: &str, values: &[Option<&str>]) -> Result<String> {
    let mut out = String::with_capacity(template.len());
    let mut chars = template.chars().peekable();
    let mut next = 0;
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(c);
            continue;
        }
        let mut digits = String::new();
        while let Some(d) = chars.peek().filter(|d| d.is_ascii_digit()) {
            digits.push(*d);
            chars.next();
        }
        if !digits.is_empty() {
            if chars.next() != Some('$') {
                return exec_err!("unsupported format specifier: only %n$ positions are");
            }
            next = digits.parse::<usize>().unwrap_or(0).saturating_sub(1);
        }
        let conversion = chars.next();
        if conversion == Some('%') && digits.is_empty() {
            out.push('%');
            continue;
        }
        let Some(value) = values.get(next) else {
            return exec_err!("too few arguments for format()");
        };
        next += 1;
        match (conversion, value) {
            (Some('s'), Some(value)) => out.push_str(value),
            (Some('s'), None) => {}
            (Some('I'), Some(value)) => out.push_str(&quote_identifier(value)),
            (Some('I'), None) => {
                return exec_err!("null values cannot be formatted as an SQL identifier");
            }
            (Some('L'), Some(value)) => out.push_str(&format!("'{}'", value.replace('\'', "''"))),
            (Some('L'), None) => out.push_str("NULL"),
            (other, _) => {
                return exec_err!(
                    "unrecognized format() type specifier {:?}",
                    other.unwrap_or(' ')
                );
            }
        }
    }
    Ok(out)
}

/// `name` as an SQL identifier: as it is when it is a lower-case name, else double-quoted.
fn quote_identifier(name: &str) -> String {
    let plain = name
        .chars()
        .next()
        .is_some_and(|c| c.is_ascii_lowercase() || c == '_')
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_' || c == '$');
    if plain {
        name.to_owned()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// `pg_*_is_visible(oid)`: everything polygate lists is visible.
/// A function that assigns a transaction id, which a read-only server cannot do: 25006 when
/// it is called for a row, as PostgreSQL answers on a standby.
fn no_transaction_id(name: &'static str) -> SessionFunction {
    function(
        name,
        Signature::exact(vec![], Volatility::Volatile),
        DataType::Int64,
        move |_, rows| {
            if rows == 0 {
                return Ok(ColumnarValue::Array(Arc::new(Int64Array::from(
                    Vec::<i64>::new(),
                ))));
            }
            let refused = crate::error::SqlError::ReadOnly(format!("{name}()"));
            Err(datafusion::error::DataFusionError::External(Box::new(
                refused,
            )))
        },
    )
}

fn visible(name: &'static str) -> SessionFunction {
    function(
        name,
        Signature::variadic_any(Volatility::Stable),
        DataType::Boolean,
        |_, _| Ok(ColumnarValue::Scalar(ScalarValue::Boolean(Some(true)))),
    )
}

/// `json_build_object(key, value, ...)`, as JSON text.
fn json_build_object(args: &[ColumnarValue], rows: usize) -> Result<ColumnarValue> {
    if !args.len().is_multiple_of(2) {
        return exec_err!("argument list must have even number of elements");
    }
    // Constants as arrays of the batch's rows; the output has as many rows as the shortest
    // argument, so that no row is read past an argument's end (a batch of 0 rows included).
    let arrays = args
        .iter()
        .map(|arg| arg.to_array(rows.max(1)))
        .collect::<Result<Vec<_>>>()?;
    let length = arrays
        .iter()
        .map(|array| array.len())
        .min()
        .unwrap_or(rows.max(1));
    let texts = arrays
        .iter()
        .map(|array| datafusion::arrow::compute::cast(array, &DataType::Utf8))
        .collect::<std::result::Result<Vec<_>, _>>()?;
    // Whole pairs: an odd argument count was refused above.
    let (text_pairs, _) = texts.as_chunks::<2>();
    let (array_pairs, _) = arrays.as_chunks::<2>();
    let mut out = StringBuilder::new();
    for row in 0..length {
        let mut object = String::from("{");
        for (pair, ([keys, values], [_, value_array])) in
            text_pairs.iter().zip(array_pairs).enumerate()
        {
            let (keys, values) = (keys.as_string::<i32>(), values.as_string::<i32>());
            if keys.is_null(row) {
                return exec_err!("null value not allowed for object key");
            }
            if pair > 0 {
                object.push_str(", ");
            }
            object.push_str(&json_string(keys.value(row)));
            object.push_str(" : ");
            let value_type = value_array.data_type();
            if values.is_null(row) {
                object.push_str("null");
            } else if value_type.is_numeric() || *value_type == DataType::Boolean {
                object.push_str(values.value(row));
            } else {
                object.push_str(&json_string(values.value(row)));
            }
        }
        object.push('}');
        out.append_value(object);
    }
    Ok(ColumnarValue::Array(Arc::new(out.finish())))
}

fn json_string(text: &str) -> String {
    let mut quoted = String::with_capacity(text.len() + 2);
    quoted.push('"');
    for c in text.chars() {
        match c {
            '"' => quoted.push_str("\\\""),
            '\\' => quoted.push_str("\\\\"),
            '\n' => quoted.push_str("\\n"),
            '\r' => quoted.push_str("\\r"),
            '\t' => quoted.push_str("\\t"),
            c if (c as u32) < 0x20 => quoted.push_str(&format!("\\u{:04x}", c as u32)),
            c => quoted.push(c),
        }
    }
    quoted.push('"');
    quoted
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Regression: a batch of 0 rows, or constants over many rows, read past an argument's
    /// end.
    #[test]
    fn json_build_object_reads_no_row_past_its_arguments() {
        let key = ColumnarValue::Scalar(ScalarValue::Utf8(Some("a".into())));
        let empty: ArrayRef =
            Arc::new(datafusion::arrow::array::Int64Array::from(Vec::<i64>::new()));
        let built = json_build_object(&[key.clone(), ColumnarValue::Array(empty)], 0)
            .and_then(|v| v.to_array(0))
            .expect("an empty batch builds nothing");
        assert_eq!(built.len(), 0);
        let one = ColumnarValue::Scalar(ScalarValue::Int64(Some(1)));
        let built = json_build_object(&[key, one], 3)
            .and_then(|v| v.to_array(3))
            .expect("constants build one object per row");
        assert_eq!(built.len(), 3);
        assert_eq!(built.as_string::<i32>().value(2), "{\"a\" : 1}");
    }

    #[test]
    fn format_follows_postgresql() {
        let cases: &[(&str, &[Option<&str>], &str)] = &[
            ("%s", &[Some("users")], "users"),
            ("%s-%s", &[Some("a"), None], "a-"),
            (
                "\"%s\".\"%s\"",
                &[Some("shop"), Some("t")],
                "\"shop\".\"t\"",
            ),
            (
                "%I.%I",
                &[Some("shop"), Some("customers")],
                "shop.customers",
            ),
            ("%I", &[Some("Mixed Case")], "\"Mixed Case\""),
            ("%I", &[Some("a\"b")], "\"a\"\"b\""),
            ("%L and %L", &[Some("it's"), None], "'it''s' and NULL"),
            ("100%% %s", &[Some("sure")], "100% sure"),
            ("%2$s %1$s", &[Some("a"), Some("b")], "b a"),
        ];
        for (template, values, expected) in cases {
            assert_eq!(
                format_text(template, values).unwrap(),
                *expected,
                "{template}"
            );
        }
        assert!(format_text("%s %s", &[Some("a")]).is_err());
        assert!(format_text("%x", &[Some("a")]).is_err());
        assert!(format_text("%I", &[None]).is_err());
    }
}
