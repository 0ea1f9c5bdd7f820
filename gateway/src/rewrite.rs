//! Rewrites of PostgreSQL syntax that DataFusion does not plan as written, applied after
//! `datafusion-pg-catalog`'s own (which cover `::regclass`, `OPERATOR(...)`, `COLLATE`, ...).
//!
//! - `x LIKE p ESCAPE 'c'` with an escape character other than a backslash (SQLAlchemy writes
//!   `ESCAPE '/'`): DataFusion only takes the backslash, so `p` becomes
//!   `pg_like_escape(p, 'c')`, the same pattern escaped by backslashes.
//! - A scalar subquery over catalog tables only (`(SELECT pg_get_expr(adbin, adrelid) FROM
//!   pg_catalog.pg_attrdef WHERE ...)`, as SQLAlchemy and JDBC write them): DataFusion wants a
//!   correlated scalar subquery aggregated, so its one column becomes `first_value(...)`.
//!   Catalog lookups are by key and return at most one row; subqueries over sources are left
//!   alone, where PostgreSQL's "more than one row" error must not turn into a silent answer.
//! - `CASE WHEN c THEN (SELECT ... catalog ...) ELSE NULL END`: DataFusion cannot run a
//!   correlated subquery inside CASE, so `c` moves into the subquery's WHERE, which gives the
//!   same NULL when `c` does not hold.
//! - Catalog subqueries whose conditions or value read the enclosing row in ways DataFusion
//!   cannot decorrelate are reshaped into ones it can ([`fold_outer_conditions`],
//!   [`lift_outer_columns`]), and `CAST(computed name AS regclass)` becomes a lookup.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::helpers::attached_token::AttachedToken;
use datafusion::sql::sqlparser::ast::{
    AccessExpr, BinaryOperator, CaseWhen, Expr, Function, FunctionArg, FunctionArgExpr,
    FunctionArgumentList, FunctionArguments, GroupByExpr, Ident, LambdaFunction,
    LambdaFunctionParameter, LambdaSyntax, ObjectName, OneOrManyWithParens, Query, Select,
    SelectItem, SetExpr, Statement, TableFactor, TableWithJoins, Value, VisitMut, VisitorMut,
    visit_expressions, visit_expressions_mut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

/// `pg_if_found(found, value)`: `value` where `found` is true, else NULL (a CASE DataFusion
/// evaluates with subqueries in it); see [`lift_outer_columns`].
pub const IF_FOUND_FUNCTION: &str = "pg_if_found";

/// `pg_empty_if_null(list)`: `list` with an empty list where it is NULL; see
/// [`array_of_unnest`].
pub const EMPTY_IF_NULL_FUNCTION: &str = "pg_empty_if_null";

/// `pg_expandarray(list)`: the list's elements as `(x, n)` structs, `n` the 1-based position;
/// see [`expand_array`].
pub const EXPAND_ARRAY_FUNCTION: &str = "pg_expandarray";

/// The lambda parameter [`array_of_unnest`] names an array's element by.
const ARRAY_ELEMENT: &str = "pg_element";

/// The function the LIKE rewrite calls; see [`backslash_escaped`].
pub const LIKE_ESCAPE_FUNCTION: &str = "pg_like_escape";

/// Applies every rewrite to `statement`.
pub fn rewrite(statement: &mut Statement) {
    // First, while the expressions are as written: the names PostgreSQL gives them.
    let _ = statement.visit(&mut PostgresColumnNames);
    let _ = visit_expressions_mut(statement, |expr| {
        if let Expr::Like {
            pattern,
            escape_char,
            ..
        }
        | Expr::ILike {
            pattern,
            escape_char,
            ..
        } = expr
            && let Some(escape) = escape_char.as_ref().and_then(|e| escape_text(&e.value))
            && escape != "\\"
            && let Some(rewritten) = call_like_escape(pattern, &escape)
        {
            **pattern = rewritten;
            *escape_char = Some(Value::SingleQuotedString("\\".to_owned()).into());
        }
        if let Some(subquery) = guarded_catalog_subquery(expr) {
            *expr = subquery;
        }
        if let Some(lookup) = regclass_of_text(expr) {
            *expr = lookup;
        }
        if let Some(subscripts) = generate_subscripts(expr) {
            *expr = subscripts;
        }
        ControlFlow::<()>::Continue(())
    });
    // After the CASE rewrites, which move lookups that must not be aggregated yet.
    let _ = visit_expressions_mut(statement, |expr| {
        if let Expr::Subquery(query) = expr
            && let Some(lifted) = aggregate_catalog_subquery(query)
        {
            *expr = lifted;
        }
        ControlFlow::<()>::Continue(())
    });
    // Last: the rewrites above print and parse expressions again, and PostgreSQL's syntax has
    // no lambdas.
    let _ = visit_expressions_mut(statement, |expr| {
        if let Some(mapped) = array_of_unnest(expr) {
            *expr = mapped;
        }
        if let Some(expanded) = expand_array(expr) {
            *expr = expanded;
        }
        name_fields(expr);
        ControlFlow::<()>::Continue(())
    });
}

/// Names the select-list expressions the rewrites below change as PostgreSQL names them
/// (`array`, `_pg_expandarray`, the field of `(row).field`), where the query does not, so a
/// client sees the column it would see on PostgreSQL rather than the rewritten expression.
struct PostgresColumnNames;

impl VisitorMut for PostgresColumnNames {
    type Break = ();

    fn post_visit_query(&mut self, query: &mut Query) -> ControlFlow<()> {
        name_columns(&mut query.body);
        ControlFlow::Continue(())
    }
}

fn name_columns(body: &mut SetExpr) {
    match body {
        SetExpr::Select(select) => {
            // Only names no other column has: PostgreSQL allows a name twice, DataFusion does
            // not, and the names `*` may bring are unknown here.
            let mut taken = Vec::new();
            for item in &select.projection {
                match item {
                    SelectItem::ExprWithAlias { alias, .. } => {
                        taken.push(alias.value.to_lowercase())
                    }
                    SelectItem::UnnamedExpr(Expr::Identifier(id)) => {
                        taken.push(id.value.to_lowercase())
                    }
                    SelectItem::UnnamedExpr(Expr::CompoundIdentifier(ids)) => {
                        taken.extend(ids.last().map(|id| id.value.to_lowercase()))
                    }
                    SelectItem::UnnamedExpr(_) => {}
                    _ => return,
                }
            }
            for item in &mut select.projection {
                if let SelectItem::UnnamedExpr(expr) = item
                    && let Some(name) = postgres_column_name(expr)
                    && !taken.contains(&name.to_lowercase())
                {
                    taken.push(name.to_lowercase());
                    *item = SelectItem::ExprWithAlias {
                        expr: expr.clone(),
                        alias: Ident::with_quote('"', name),
                    };
                }
            }
        }
        SetExpr::SetOperation { left, right, .. } => {
            name_columns(left);
            name_columns(right);
        }
        _ => {}
    }
}

/// PostgreSQL's name for `expr` in a select list, for the expressions rewritten into others.
fn postgres_column_name(expr: &Expr) -> Option<String> {
    if array_of_unnest(expr).is_some() {
        return Some("array".to_owned());
    }
    if expand_array(expr).is_some() {
        return Some("_pg_expandarray".to_owned());
    }
    if let Expr::CompoundFieldAccess { root, access_chain } = expr
        && !matches!(
            root.as_ref(),
            Expr::Identifier(_) | Expr::CompoundIdentifier(_)
        )
        && let Some(AccessExpr::Dot(Expr::Identifier(field))) = access_chain.last()
    {
        return Some(match field.quote_style {
            Some(_) => field.value.clone(),
            None => field.value.to_lowercase(),
        });
    }
    None
}

/// `CAST(name AS regclass)` for a name computed by the query (Metabase writes
/// `CAST(FORMAT('%I.%I', schema, table) AS REGCLASS)`) as the lookup of that relation's oid.
///
/// `datafusion-pg-catalog` resolves casts of literals and parameters; a computed name becomes
/// a correlated subquery on the schema and relation names that `parse_ident` reads from it.
/// Two differences from PostgreSQL: an unqualified name is looked up in the current schema
/// only, and a name that matches no relation gives NULL (as `to_regclass()` does) where
/// PostgreSQL's cast raises 42P01. Only names built by string functions, concatenation or a
/// cast to text are taken: `attrelid::regclass` turns an oid into a name, the other way round.
fn regclass_of_text(expr: &Expr) -> Option<Expr> {
    let Expr::Cast {
        expr: operand,
        data_type,
        ..
    } = expr
    else {
        return None;
    };
    let type_name = data_type.to_string().to_ascii_lowercase();
    if type_name.trim_start_matches("pg_catalog.") != "regclass" || !is_text_valued(operand) {
        return None;
    }
    let parts = format!("parse_ident({operand})");
    parse_expr(&format!(
        "(SELECT first_value(c.oid) FROM pg_catalog.pg_class c \
         JOIN pg_catalog.pg_namespace n ON c.relnamespace = n.oid \
         WHERE n.nspname = CASE WHEN array_length({parts}, 1) = 2 THEN {parts}[1] ELSE current_schema() END \
         AND c.relname = {parts}[CAST(array_length({parts}, 1) AS BIGINT)])"
    ))
}

/// `generate_subscripts(array, d)` in a select list (SQLAlchemy's key reflection, beside
/// `unnest(indkey)`) as `unnest(range(array_lower(array, d), array_upper(array, d) + 1))`:
/// DataFusion has no such set-returning function, and unnests several lists of a select list
/// side by side, as PostgreSQL does with set-returning functions.
fn generate_subscripts(expr: &Expr) -> Option<Expr> {
    let Expr::Function(function) = expr else {
        return None;
    };
    let name = function.name.to_string().to_ascii_lowercase();
    if name.rsplit('.').next() != Some("generate_subscripts") {
        return None;
    }
    let FunctionArguments::List(list) = &function.args else {
        return None;
    };
    let [
        FunctionArg::Unnamed(FunctionArgExpr::Expr(array)),
        FunctionArg::Unnamed(FunctionArgExpr::Expr(dimension)),
    ] = list.args.as_slice()
    else {
        return None;
    };
    parse_expr(&format!(
        "unnest(range(array_lower({array}, {dimension}), array_upper({array}, {dimension}) + 1))"
    ))
}

/// `ARRAY(SELECT e FROM unnest(a) [AS t[(x)]] [WHERE p])`, an array computed from an array of
/// the enclosing row (DataGrip: `array(select unnest::regoper::varchar from
/// unnest(conexclop))`), as `array_transform(array_filter(pg_empty_if_null(a), x -> p), x ->
/// e)`. DataFusion plans no subquery over a set-returning function of the enclosing row, and
/// its higher-order functions do the same: keep the elements where `p` holds, in order, and map
/// each through `e`. Like PostgreSQL's constructor, the result is an empty array, not NULL,
/// when `a` is NULL or nothing is kept.
fn array_of_unnest(expr: &Expr) -> Option<Expr> {
    let Expr::Function(function) = expr else {
        return None;
    };
    let FunctionArguments::Subquery(query) = &function.args else {
        return None;
    };
    if !function.name.to_string().eq_ignore_ascii_case("array")
        || query.with.is_some()
        || query.order_by.is_some()
        || query.limit_clause.is_some()
        || query.fetch.is_some()
    {
        return None;
    }
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    let ([item], [from]) = (select.projection.as_slice(), select.from.as_slice()) else {
        return None;
    };
    let (SelectItem::UnnamedExpr(value) | SelectItem::ExprWithAlias { expr: value, .. }) = item
    else {
        return None;
    };
    let TableFactor::UNNEST {
        alias,
        array_exprs,
        with_offset: false,
        with_ordinality: false,
        ..
    } = &from.relation
    else {
        return None;
    };
    let [array] = array_exprs.as_slice() else {
        return None;
    };
    // An aggregate over the elements (`ARRAY(SELECT count(*) FROM unnest(a))`) is no map, and
    // a subquery has no place in a lambda.
    let per_element = |expr: &Expr| !is_aggregate(expr) && !has_subquery(expr);
    if !per_element(value) || !select.selection.as_ref().is_none_or(per_element) {
        return None;
    }
    if select.distinct.is_some()
        || select.having.is_some()
        || !from.joins.is_empty()
        || !matches!(&select.group_by, GroupByExpr::Expressions(e, m) if e.is_empty() && m.is_empty())
    {
        return None;
    }
    // The element's column, and the name the unnest is known by: `unnest` unless aliased;
    // a lone alias names the column too, as for any single-column function in PostgreSQL.
    let (table, column) = match alias {
        None => (Ident::new("unnest"), Ident::new("unnest")),
        Some(alias) => match alias.columns.as_slice() {
            [] => (alias.name.clone(), alias.name.clone()),
            [column] => (alias.name.clone(), column.name.clone()),
            _ => return None,
        },
    };
    let element = Ident::new(ARRAY_ELEMENT);
    let to_element = |expr: &Expr| {
        let mut expr = expr.clone();
        let _ = visit_expressions_mut(&mut expr, |e| {
            let names: Vec<&Ident> = match &*e {
                Expr::Identifier(id) => vec![id],
                Expr::CompoundIdentifier(ids) => ids.iter().collect(),
                _ => return ControlFlow::<()>::Continue(()),
            };
            let is_element = match names.as_slice() {
                [c] => same_name(c, &column),
                [t, c] => same_name(t, &table) && same_name(c, &column),
                _ => false,
            };
            if is_element {
                *e = Expr::Identifier(element.clone());
            }
            ControlFlow::<()>::Continue(())
        });
        expr
    };
    let lambda = |body: Expr| {
        Expr::Lambda(LambdaFunction {
            params: OneOrManyWithParens::One(LambdaFunctionParameter {
                name: element.clone(),
                data_type: None,
            }),
            body: Box::new(body),
            syntax: LambdaSyntax::Arrow,
        })
    };
    // Filter and map never see the values a NULL array may hold, nor give NULL themselves.
    let mut result = call(EMPTY_IF_NULL_FUNCTION, vec![array.clone()]);
    if let Some(condition) = &select.selection {
        result = call("array_filter", vec![result, lambda(to_element(condition))]);
    }
    let value = to_element(value);
    if value != Expr::Identifier(element.clone()) {
        result = call("array_transform", vec![result, lambda(value)]);
    }
    Some(result)
}

/// Do two identifiers name the same thing? Unquoted ones in any case, quoted ones exactly.
fn same_name(a: &Ident, b: &Ident) -> bool {
    let normal = |id: &Ident| match id.quote_style {
        Some(_) => id.value.clone(),
        None => id.value.to_lowercase(),
    };
    normal(a) == normal(b)
}

/// Does `expr` hold a subquery?
fn has_subquery(expr: &Expr) -> bool {
    visit_expressions(expr, |e| match e {
        Expr::Subquery(_) | Expr::Exists { .. } | Expr::InSubquery { .. } => ControlFlow::Break(()),
        Expr::Function(f) if matches!(f.args, FunctionArguments::Subquery(_)) => {
            ControlFlow::Break(())
        }
        _ => ControlFlow::Continue(()),
    })
    .is_break()
}

/// `information_schema._pg_expandarray(a)`, PostgreSQL's set-returning function of `(x, n)`
/// rows, each element with its 1-based position (pgjdbc's `getPrimaryKeys` and
/// `getIndexInfo` read `indkey` with it), as `unnest(pg_expandarray(a))`: the same rows, as
/// structs, from a list DataFusion unnests beside the select list's other set-returning
/// functions.
fn expand_array(expr: &Expr) -> Option<Expr> {
    let Expr::Function(function) = expr else {
        return None;
    };
    let name = function.name.to_string().to_ascii_lowercase();
    if name.rsplit('.').next() != Some("_pg_expandarray") {
        return None;
    }
    let FunctionArguments::List(list) = &function.args else {
        return None;
    };
    let [FunctionArg::Unnamed(FunctionArgExpr::Expr(array))] = list.args.as_slice() else {
        return None;
    };
    let expanded = call(EXPAND_ARRAY_FUNCTION, vec![array.clone()]);
    Some(call("unnest", vec![expanded]))
}

/// `(composite).field`, PostgreSQL's field selection (pgjdbc's `(result.KEYS).x`), as
/// DataFusion writes it, `(composite).'field'`: an unquoted name in lower case, as every
/// identifier. After a bare name (`tmp.i_indoption[1]`), the names up to the first subscript
/// name the column, and stay.
fn name_fields(expr: &mut Expr) {
    let Expr::CompoundFieldAccess { root, access_chain } = expr else {
        return;
    };
    let column_names = match root.as_ref() {
        Expr::Identifier(_) | Expr::CompoundIdentifier(_) => access_chain
            .iter()
            .take_while(|access| matches!(access, AccessExpr::Dot(Expr::Identifier(_))))
            .count(),
        _ => 0,
    };
    for access in access_chain.iter_mut().skip(column_names) {
        if let AccessExpr::Dot(Expr::Identifier(field)) = access {
            let name = match field.quote_style {
                Some(_) => field.value.clone(),
                None => field.value.to_lowercase(),
            };
            *access = AccessExpr::Dot(Expr::Value(Value::SingleQuotedString(name).into()));
        }
    }
}

/// A call of the function `name` with `args`.
fn call(name: &str, args: Vec<Expr>) -> Expr {
    Expr::Function(Function {
        name: ObjectName::from(vec![Ident::new(name)]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(FunctionArgumentList {
            duplicate_treatment: None,
            args: args
                .into_iter()
                .map(|arg| FunctionArg::Unnamed(FunctionArgExpr::Expr(arg)))
                .collect(),
            clauses: Vec::new(),
        }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: Vec::new(),
    })
}

/// Is `expr` text by its form: a string function's result, a concatenation, a cast to text?
fn is_text_valued(expr: &Expr) -> bool {
    const TEXT_FUNCTIONS: &[&str] = &[
        "format",
        "concat",
        "concat_ws",
        "quote_ident",
        "lower",
        "upper",
        "trim",
        "btrim",
        "replace",
        "substring",
        "substr",
    ];
    match expr {
        Expr::Nested(inner) => is_text_valued(inner),
        Expr::BinaryOp {
            op: BinaryOperator::StringConcat,
            ..
        } => true,
        Expr::Cast { data_type, .. } => {
            let name = data_type.to_string().to_ascii_lowercase();
            ["text", "varchar", "character varying", "name"].contains(&name.as_str())
        }
        Expr::Function(function) => {
            let name = function.name.to_string().to_ascii_lowercase();
            TEXT_FUNCTIONS.contains(&name.rsplit('.').next().unwrap_or(&name))
        }
        _ => false,
    }
}

/// `CASE WHEN c THEN (catalog subquery) [ELSE NULL] END` as the subquery filtered by `c`.
fn guarded_catalog_subquery(expr: &Expr) -> Option<Expr> {
    let Expr::Case {
        operand: None,
        conditions,
        else_result,
        ..
    } = expr
    else {
        return None;
    };
    let [when] = conditions.as_slice() else {
        return None;
    };
    let else_is_null = match else_result.as_deref() {
        None => true,
        Some(Expr::Value(value)) => matches!(value.value, Value::Null),
        Some(_) => false,
    };
    let Expr::Subquery(query) = &when.result else {
        return None;
    };
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    if !else_is_null || !reads_only_catalog(select) {
        return None;
    }
    let mut query = query.clone();
    let SetExpr::Select(select) = query.body.as_mut() else {
        return None;
    };
    let mut condition = Expr::Nested(Box::new(when.condition.clone()));
    if !hoist_lookups(&mut condition, select) {
        return None;
    }
    select.selection = Some(match select.selection.take() {
        Some(selection) => parse_expr(&format!("({selection}) AND {condition}"))?,
        None => condition,
    });
    Some(Expr::Subquery(query))
}

/// Moves the scalar subqueries of `condition` into `select`, which `condition` will filter:
/// each must be a lookup in one catalog table (SQLAlchemy's `(SELECT typcollation FROM
/// pg_type WHERE pg_type.oid = a.atttypid)`), whose table joins `select`'s FROM, whose WHERE
/// joins the conditions, and whose column takes its place. Where the lookup finds no row, the
/// condition was NULL and the subquery's answer NULL; now no row is left, and the answer is
/// NULL. Returns false, with `select` unchanged, when a subquery is of another kind.
fn hoist_lookups(condition: &mut Expr, select: &mut Select) -> bool {
    let mut tables = Vec::new();
    let mut conditions = Vec::new();
    let mut taken = inner_names(select);
    let mut hoistable = true;
    let _ = visit_expressions_mut(condition, |expr| {
        if let Expr::Subquery(query) = expr {
            match lookup(query, &taken) {
                Some((table, column, filter)) => {
                    taken.extend(inner_names_of(&table));
                    tables.push(table);
                    conditions.extend(filter);
                    *expr = column;
                }
                None => hoistable = false,
            }
        }
        ControlFlow::<()>::Continue(())
    });
    if !hoistable {
        return false;
    }
    select.from.extend(tables);
    if let Some(filter) = join_conjuncts(conditions) {
        select.selection = join_conjuncts(
            select
                .selection
                .take()
                .into_iter()
                .chain([filter])
                .collect(),
        );
    }
    true
}

/// A lookup subquery's table, column and condition, if its table's name is not in `taken`.
fn lookup(query: &Query, taken: &[String]) -> Option<(TableWithJoins, Expr, Option<Expr>)> {
    let SetExpr::Select(select) = query.body.as_ref() else {
        return None;
    };
    let ungrouped = matches!(&select.group_by, GroupByExpr::Expressions(e, _) if e.is_empty());
    let ([from], [item]) = (select.from.as_slice(), select.projection.as_slice()) else {
        return None;
    };
    let column = match item {
        SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. } => expr,
        _ => return None,
    };
    let plain = ungrouped
        && select.having.is_none()
        && query.limit_clause.is_none()
        && query.order_by.is_none()
        && from.joins.is_empty()
        && is_catalog_table(&from.relation);
    let fresh = inner_names_of(from)
        .iter()
        .all(|name| !taken.contains(name));
    (plain && fresh).then(|| (from.clone(), column.clone(), select.selection.clone()))
}
/// Wraps the single column of a scalar subquery over catalog tables in `first_value`, after
/// [`fold_outer_conditions`]. When that column reads the enclosing row, which DataFusion
/// cannot plan, returns what replaces the whole subquery; see [`lift_outer_columns`].
fn aggregate_catalog_subquery(query: &mut Query) -> Option<Expr> {
    let SetExpr::Select(select) = query.body.as_mut() else {
        return None;
    };
    let ungrouped = matches!(&select.group_by, GroupByExpr::Expressions(e, _) if e.is_empty());
    if !ungrouped
        || !reads_only_catalog(select)
        || select.projection.len() != 1
        || select.having.is_some()
    {
        return None;
    }
    fold_outer_conditions(select);
    let inner = inner_names(select);
    let expr = match select.projection.first_mut() {
        Some(SelectItem::UnnamedExpr(expr) | SelectItem::ExprWithAlias { expr, .. }) => expr,
        _ => return None,
    };
    if matches!(Side::of(expr, &inner), Side::Outer | Side::Mixed) && !is_aggregate(expr) {
        return lift_outer_columns(select);
    }
    if !is_aggregate(expr)
        && let Some(wrapped) = parse_expr(&format!("first_value({expr})"))
    {
        *expr = wrapped;
    }
    None
}

/// A catalog lookup whose value reads the enclosing row (SQLAlchemy's `(SELECT
/// json_build_object('always', a.attidentity = 'a', 'start', s.seqstart, ...) FROM
/// pg_sequence s WHERE ...)`) as that value computed outside: each of its inner columns is
/// looked up on its own, and the whole is NULL where the lookup finds no row,
/// `pg_if_found((SELECT first_value(true) FROM ... WHERE ...), json_build_object('always',
/// a.attidentity = 'a', 'start', (SELECT first_value(s.seqstart) FROM ... WHERE ...), ...))`.
fn lift_outer_columns(select: &Select) -> Option<Expr> {
    let (SelectItem::UnnamedExpr(value) | SelectItem::ExprWithAlias { expr: value, .. }) =
        select.projection.first()?
    else {
        return None;
    };
    let inner = inner_names(select);
    let from = select
        .from
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(", ");
    let filter = select
        .selection
        .as_ref()
        .map(|w| format!(" WHERE {w}"))
        .unwrap_or_default();
    let lookup = |what: &dyn std::fmt::Display| {
        parse_expr(&format!("(SELECT first_value({what}) FROM {from}{filter})"))
    };
    let mut value = value.clone();
    let mut lifted = true;
    let _ = visit_expressions_mut(&mut value, |expr| {
        if matches!(expr, Expr::CompoundIdentifier(_)) && Side::of(expr, &inner) == Side::Inner {
            match lookup(expr) {
                Some(column) => *expr = column,
                None => lifted = false,
            }
        }
        ControlFlow::<()>::Continue(())
    });
    let found = lookup(&"true")?;
    lifted.then(|| parse_expr(&format!("{IF_FOUND_FUNCTION}({found}, {value})")))?
}

/// Rewrites the WHERE of a catalog subquery so that DataFusion can decorrelate it.
///
/// DataFusion joins a correlated subquery on its conditions that compare inner columns with
/// outer values. It cannot plan a condition on outer columns alone (psql's `... AND
/// a.atthasdef`), nor a comparison of outer and inner values other than those (`a.attcollation
/// <> t.typcollation`). With some `inner = outer` condition among the conjuncts:
/// - an outer-only condition `p` is folded into it as `inner = CASE WHEN p THEN outer END`:
///   when `p` does not hold, no row matches, as before;
/// - in the other conditions, `outer` is replaced by `inner`, equal to it in every row that
///   matches.
fn fold_outer_conditions(select: &mut Select) {
    let Some(selection) = select.selection.take() else {
        return;
    };
    let inner = inner_names(select);
    let mut conjuncts = Vec::new();
    split_conjuncts(selection, &mut conjuncts);
    let side = |expr: &Expr| Side::of(expr, &inner);
    let equality = |expr: &Expr| match expr {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::Eq,
            right,
        } => match (side(left), side(right)) {
            (Side::Inner, Side::Outer) => Some(((**left).clone(), (**right).clone())),
            (Side::Outer, Side::Inner) => Some(((**right).clone(), (**left).clone())),
            _ => None,
        },
        _ => None,
    };
    if !conjuncts.iter().any(|c| equality(c).is_some()) {
        select.selection = join_conjuncts(conjuncts);
        return;
    }
    let pairs: Vec<(Expr, String)> = conjuncts
        .iter()
        .filter_map(equality)
        .map(|(inner, outer)| (inner, outer.to_string()))
        .collect();
    // An equality is Mixed, so it stays among `kept`, and outer-only conditions always have
    // one to fold into.
    let (outer_only, mut kept): (Vec<Expr>, Vec<Expr>) =
        conjuncts.into_iter().partition(|c| side(c) == Side::Outer);
    for conjunct in &mut kept {
        if side(conjunct) != Side::Mixed || equality(conjunct).is_some() {
            continue;
        }
        let _ = visit_expressions_mut(conjunct, |expr| {
            let text = expr.to_string();
            if let Some((inner, _)) = pairs.iter().find(|(_, outer)| *outer == text) {
                *expr = inner.clone();
            }
            ControlFlow::<()>::Continue(())
        });
    }
    if let Some(condition) = join_conjuncts(outer_only)
        && let Some(Expr::BinaryOp { left, right, .. }) =
            kept.iter_mut().find(|c| equality(c).is_some())
    {
        let outer = if side(left) == Side::Outer {
            left
        } else {
            right
        };
        let guarded = Expr::Case {
            case_token: AttachedToken::empty(),
            end_token: AttachedToken::empty(),
            operand: None,
            conditions: vec![CaseWhen {
                condition,
                result: (**outer).clone(),
            }],
            else_result: None,
        };
        **outer = guarded;
    }
    select.selection = join_conjuncts(kept);
}

/// Which side of a correlated subquery an expression reads.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Side {
    /// No column at all.
    Constant,
    /// Only the subquery's own tables.
    Inner,
    /// Only the enclosing query's columns.
    Outer,
    /// Both.
    Mixed,
    /// An unqualified column or a subquery: not touched.
    Unknown,
}

impl Side {
    fn of(expr: &Expr, inner: &[String]) -> Self {
        let (mut reads_inner, mut reads_outer, mut unknown) = (false, false, false);
        let _ = visit_expressions(expr, |e| {
            match e {
                Expr::CompoundIdentifier(parts) => match parts.as_slice() {
                    [.., qualifier, _] => {
                        if inner.contains(&qualifier.value.to_ascii_lowercase()) {
                            reads_inner = true;
                        } else {
                            reads_outer = true;
                        }
                    }
                    _ => unknown = true,
                },
                Expr::Identifier(_)
                | Expr::Subquery(_)
                | Expr::Exists { .. }
                | Expr::InSubquery { .. } => unknown = true,
                _ => {}
            }
            ControlFlow::<()>::Continue(())
        });
        match (unknown, reads_inner, reads_outer) {
            (true, _, _) => Self::Unknown,
            (false, true, true) => Self::Mixed,
            (false, false, true) => Self::Outer,
            (false, true, false) => Self::Inner,
            (false, false, false) => Self::Constant,
        }
    }
}

/// The names the subquery's own tables go by: their aliases, or their table names.
fn inner_names(select: &Select) -> Vec<String> {
    select.from.iter().flat_map(inner_names_of).collect()
}

fn inner_names_of(from: &TableWithJoins) -> Vec<String> {
    std::iter::once(&from.relation)
        .chain(from.joins.iter().map(|j| &j.relation))
        .filter_map(|relation| match relation {
            TableFactor::Table {
                alias: Some(alias), ..
            } => Some(alias.name.value.to_ascii_lowercase()),
            TableFactor::Table { name, .. } => name
                .0
                .last()
                .and_then(|part| part.as_ident())
                .map(|ident| ident.value.to_ascii_lowercase()),
            _ => None,
        })
        .collect()
}

fn split_conjuncts(expr: Expr, out: &mut Vec<Expr>) {
    match expr {
        Expr::BinaryOp {
            left,
            op: BinaryOperator::And,
            right,
        } => {
            split_conjuncts(*left, out);
            split_conjuncts(*right, out);
        }
        Expr::Nested(inner)
            if matches!(
                *inner,
                Expr::BinaryOp {
                    op: BinaryOperator::And,
                    ..
                }
            ) =>
        {
            split_conjuncts(*inner, out)
        }
        other => out.push(other),
    }
}

fn join_conjuncts(conjuncts: Vec<Expr>) -> Option<Expr> {
    conjuncts.into_iter().reduce(|left, right| Expr::BinaryOp {
        left: Box::new(left),
        op: BinaryOperator::And,
        right: Box::new(right),
    })
}

/// Does `select` read catalog tables, and nothing else?
fn reads_only_catalog(select: &Select) -> bool {
    !select.from.is_empty()
        && select.from.iter().all(|from| {
            is_catalog_table(&from.relation)
                && from
                    .joins
                    .iter()
                    .all(|join| is_catalog_table(&join.relation))
        })
}

fn is_catalog_table(relation: &TableFactor) -> bool {
    let TableFactor::Table { name, .. } = relation else {
        return false;
    };
    let parts: Vec<String> = name
        .0
        .iter()
        .filter_map(|part| part.as_ident())
        .map(|ident| ident.value.to_ascii_lowercase())
        .collect();
    match parts.as_slice() {
        [schema, _] => schema == "pg_catalog" || schema == "information_schema",
        [table] => table.starts_with("pg_"),
        _ => false,
    }
}

fn is_aggregate(expr: &Expr) -> bool {
    const AGGREGATES: &[&str] = &[
        "count",
        "min",
        "max",
        "sum",
        "avg",
        "array_agg",
        "string_agg",
        "bool_and",
        "bool_or",
        "json_agg",
        "jsonb_agg",
        "first_value",
        "last_value",
        "every",
        "bit_and",
        "bit_or",
        "bit_xor",
        "stddev",
        "stddev_pop",
        "stddev_samp",
        "variance",
        "var_pop",
        "var_samp",
        "json_object_agg",
        "jsonb_object_agg",
        "percentile_cont",
        "percentile_disc",
        "mode",
        "corr",
        "covar_pop",
        "covar_samp",
        "regr_count",
    ];
    // Any aggregate call in `expr`, such as `count(*) > 0`.
    let mut found = false;
    let _ = visit_expressions(expr, |e| {
        if let Expr::Function(function) = e {
            let name = function.name.to_string().to_ascii_lowercase();
            let name = name.rsplit('.').next().unwrap_or(&name);
            found |= AGGREGATES.contains(&name)
                || function.over.is_some()
                || function.filter.is_some()
                || !function.within_group.is_empty();
        }
        ControlFlow::<()>::Continue(())
    });
    found
}

fn parse_expr(sql: &str) -> Option<Expr> {
    Parser::new(&PostgreSqlDialect {})
        .try_with_sql(sql)
        .ok()?
        .parse_expr()
        .ok()
}

fn escape_text(value: &Value) -> Option<String> {
    match value {
        Value::SingleQuotedString(s) | Value::EscapedStringLiteral(s) => Some(s.clone()),
        _ => None,
    }
}

fn call_like_escape(pattern: &Expr, escape: &str) -> Option<Expr> {
    let quoted = escape.replace('\'', "''");
    parse_expr(&format!("{LIKE_ESCAPE_FUNCTION}(({pattern}), '{quoted}')"))
}

/// `pattern`, whose escape character is `escape`, rewritten to escape with a backslash:
/// `escape` followed by a character becomes a backslash and that character, and a backslash
/// of the pattern (an ordinary character there) becomes an escaped backslash.
pub fn backslash_escaped(pattern: &str, escape: char) -> String {
    let mut out = String::with_capacity(pattern.len() + 4);
    let mut chars = pattern.chars();
    while let Some(c) = chars.next() {
        if c == escape {
            out.push('\\');
            if let Some(next) = chars.next() {
                out.push(next);
            }
        } else if c == '\\' {
            out.push_str("\\\\");
        } else {
            out.push(c);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `sql` parsed, rewritten and printed.
    fn rewritten(sql: &str) -> String {
        let mut statement = Parser::parse_sql(&PostgreSqlDialect {}, sql)
            .expect("parses")
            .remove(0);
        rewrite(&mut statement);
        statement.to_string()
    }

    #[test]
    fn patterns_are_escaped_by_backslashes() {
        let cases = [
            ("pg/_%", '/', "pg\\_%"),
            ("a//b", '/', "a\\/b"),
            ("100#%", '#', "100\\%"),
            ("back\\slash", '/', "back\\\\slash"),
            ("plain", '/', "plain"),
        ];
        for (pattern, escape, expected) in cases {
            assert_eq!(backslash_escaped(pattern, escape), expected, "{pattern}");
        }
    }

    #[test]
    fn scalar_subqueries_over_the_catalog_are_aggregated_and_others_are_not() {
        let cases = [
            (
                "SELECT (SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_catalog.pg_attrdef d WHERE d.adrelid = a.attrelid) FROM pg_attribute a",
                "SELECT (SELECT first_value(pg_get_expr(d.adbin, d.adrelid)) FROM pg_catalog.pg_attrdef d WHERE d.adrelid = a.attrelid) FROM pg_attribute a",
            ),
            (
                "SELECT CASE WHEN a.atthasdef THEN (SELECT d.adbin FROM pg_catalog.pg_attrdef d WHERE d.adnum = a.attnum) ELSE NULL END FROM pg_attribute a",
                "SELECT (SELECT first_value(d.adbin) FROM pg_catalog.pg_attrdef d WHERE (d.adnum = a.attnum) AND (a.atthasdef)) FROM pg_attribute a",
            ),
            (
                "SELECT (SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid, true) FROM pg_catalog.pg_attrdef d WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum AND a.atthasdef) FROM pg_catalog.pg_attribute a",
                "SELECT (SELECT first_value(pg_catalog.pg_get_expr(d.adbin, d.adrelid, true)) FROM pg_catalog.pg_attrdef d WHERE d.adrelid = CASE WHEN a.atthasdef THEN a.attrelid END AND d.adnum = a.attnum) FROM pg_catalog.pg_attribute a",
            ),
            (
                "SELECT (SELECT c.collname FROM pg_catalog.pg_collation c, pg_catalog.pg_type t WHERE c.oid = a.attcollation AND t.oid = a.atttypid AND a.attcollation <> t.typcollation) AS attcollation FROM pg_catalog.pg_attribute a",
                "SELECT (SELECT first_value(c.collname) FROM pg_catalog.pg_collation c, pg_catalog.pg_type t WHERE c.oid = a.attcollation AND t.oid = a.atttypid AND c.oid <> t.typcollation) AS attcollation FROM pg_catalog.pg_attribute a",
            ),
            (
                "SELECT CASE WHEN (a.attcollation != 0 AND (SELECT t.typcollation FROM pg_catalog.pg_type t WHERE t.oid = a.atttypid) != a.attcollation) THEN (SELECT c.collname FROM pg_catalog.pg_collation c WHERE c.oid = a.attcollation) ELSE NULL END AS collation FROM pg_catalog.pg_attribute a",
                "SELECT (SELECT first_value(c.collname) FROM pg_catalog.pg_collation c, pg_catalog.pg_type t WHERE c.oid = a.attcollation AND t.oid = a.atttypid AND ((c.oid <> 0 AND t.typcollation <> c.oid))) AS collation FROM pg_catalog.pg_attribute a",
            ),
            (
                "SELECT col_description(CAST(CAST(FORMAT('%I.%I', t.s, t.n) AS REGCLASS) AS OID), 1), CAST(a.attrelid AS REGCLASS) FROM t, pg_attribute a",
                "SELECT col_description(CAST((SELECT first_value(c.oid) FROM pg_catalog.pg_class c JOIN pg_catalog.pg_namespace n ON c.relnamespace = n.oid WHERE n.nspname = CASE WHEN array_length(parse_ident(FORMAT('%I.%I', t.s, t.n)), 1) = 2 THEN parse_ident(FORMAT('%I.%I', t.s, t.n))[1] ELSE current_schema() END AND c.relname = parse_ident(FORMAT('%I.%I', t.s, t.n))[CAST(array_length(parse_ident(FORMAT('%I.%I', t.s, t.n)), 1) AS BIGINT)]) AS OID), 1), CAST(a.attrelid AS REGCLASS) FROM t, pg_attribute a",
            ),
            (
                "SELECT (SELECT json_build_object('always', a.attidentity = 'a', 'start', s.seqstart) FROM pg_catalog.pg_sequence s WHERE s.seqrelid = a.attrelid) FROM pg_catalog.pg_attribute a",
                "SELECT pg_if_found((SELECT first_value(true) FROM pg_catalog.pg_sequence s WHERE s.seqrelid = a.attrelid), json_build_object('always', a.attidentity = 'a', 'start', (SELECT first_value(s.seqstart) FROM pg_catalog.pg_sequence s WHERE s.seqrelid = a.attrelid))) FROM pg_catalog.pg_attribute a",
            ),
            (
                "SELECT (SELECT count(*) > 0 FROM pg_catalog.pg_class c WHERE c.relnamespace = n.oid) FROM pg_catalog.pg_namespace n",
                "SELECT (SELECT count(*) > 0 FROM pg_catalog.pg_class c WHERE c.relnamespace = n.oid) FROM pg_catalog.pg_namespace n",
            ),
            (
                "SELECT (SELECT d.adbin FROM pg_catalog.pg_attrdef d WHERE a.attnum = 1 AND d.adrelid > a.attrelid) FROM pg_attribute a",
                "SELECT (SELECT first_value(d.adbin) FROM pg_catalog.pg_attrdef d WHERE a.attnum = 1 AND d.adrelid > a.attrelid) FROM pg_attribute a",
            ),
            (
                "SELECT (SELECT count(*) FROM pg_class) AS n",
                "SELECT (SELECT count(*) FROM pg_class) AS n",
            ),
            (
                "SELECT (SELECT o.total FROM shop.orders o WHERE o.id = c.id) FROM shop.customers c",
                "SELECT (SELECT o.total FROM shop.orders o WHERE o.id = c.id) FROM shop.customers c",
            ),
        ];
        for (sql, expected) in cases {
            assert_eq!(rewritten(sql), expected);
        }
    }

    #[test]
    fn arrays_of_unnest_filter_and_map_the_array() {
        let cases = [
            // DataGrip's exclusion operators: a map.
            (
                "SELECT array(SELECT unnest::regoper::varchar FROM unnest(conexclop)) FROM pg_catalog.pg_constraint",
                "SELECT array_transform(pg_empty_if_null(conexclop), pg_element -> pg_element::regoper::VARCHAR) AS \"array\" FROM pg_catalog.pg_constraint",
            ),
            // DataGrip's extension updates: a filter reading the enclosing row.
            (
                "SELECT array(SELECT unnest FROM unnest(available_versions) WHERE unnest > extversion) FROM e",
                "SELECT array_filter(pg_empty_if_null(available_versions), pg_element -> pg_element > extversion) AS \"array\" FROM e",
            ),
            // Aliases name the element; a qualified reference too.
            (
                "SELECT ARRAY(SELECT v.k * 2 FROM unnest(a) AS v(k) WHERE k > 1) FROM t",
                "SELECT array_transform(array_filter(pg_empty_if_null(a), pg_element -> pg_element > 1), pg_element -> pg_element * 2) AS \"array\" FROM t",
            ),
            (
                "SELECT ARRAY(SELECT u FROM unnest(t.a) u) FROM t",
                "SELECT pg_empty_if_null(t.a) AS \"array\" FROM t",
            ),
            // Other subqueries, and ordered ones, are left alone.
            (
                "SELECT ARRAY(SELECT x FROM t2 WHERE t2.id = t.id) FROM t",
                "SELECT ARRAY(SELECT x FROM t2 WHERE t2.id = t.id) FROM t",
            ),
            (
                "SELECT ARRAY(SELECT u FROM unnest(a) u ORDER BY u) FROM t",
                "SELECT ARRAY(SELECT u FROM UNNEST(a) u ORDER BY u) FROM t",
            ),
            // Quoted names are exact: "U" is the outer column, u the element.
            (
                "SELECT ARRAY(SELECT u FROM unnest(a) u WHERE u > \"U\") FROM t",
                "SELECT array_filter(pg_empty_if_null(a), pg_element -> pg_element > \"U\") AS \"array\" FROM t",
            ),
            // Inside a catalog subquery that other rewrites reshape, still a lambda.
            (
                "SELECT (SELECT ARRAY(SELECT u FROM unnest(c.conkey) u WHERE u > 1) FROM pg_catalog.pg_constraint c WHERE c.conrelid = t.oid) FROM t",
                "SELECT (SELECT first_value(array_filter(pg_empty_if_null(c.conkey), pg_element -> pg_element > 1)) AS \"array\" FROM pg_catalog.pg_constraint c WHERE c.conrelid = t.oid) FROM t",
            ),
            (
                "SELECT ARRAY(SELECT u FROM unnest(a) u WHERE u IN (SELECT x FROM s)) FROM t",
                "SELECT ARRAY(SELECT u FROM UNNEST(a) u WHERE u IN (SELECT x FROM s)) FROM t",
            ),
            (
                "SELECT ARRAY(SELECT count(*) FROM unnest(a) u) FROM t",
                "SELECT ARRAY(SELECT count(*) FROM UNNEST(a) u) FROM t",
            ),
            (
                "SELECT ARRAY(SELECT DISTINCT u FROM unnest(a) u) FROM t",
                "SELECT ARRAY(SELECT DISTINCT u FROM UNNEST(a) u) FROM t",
            ),
        ];
        for (sql, expected) in cases {
            assert_eq!(rewritten(sql), expected, "{sql}");
        }
    }

    #[test]
    fn pg_expandarray_unnests_positions() {
        let sql = "SELECT (information_schema._pg_expandarray(i.indkey)).n AS key_seq, information_schema._pg_expandarray(i.indkey) AS keys FROM pg_catalog.pg_index i";
        assert_eq!(
            rewritten(sql),
            "SELECT (unnest(pg_expandarray(i.indkey))).'n' AS key_seq, unnest(pg_expandarray(i.indkey)) AS keys FROM pg_catalog.pg_index i"
        );
        assert_eq!(
            rewritten("SELECT * FROM r WHERE r.a_attnum = (r.KEYS).X AND (r.keys).\"N\" = 1"),
            "SELECT * FROM r WHERE r.a_attnum = (r.KEYS).'x' AND (r.keys).'N' = 1"
        );
        // Unaliased, the columns have PostgreSQL's names.
        assert_eq!(
            rewritten(
                "SELECT (information_schema._pg_expandarray(a)).n, information_schema._pg_expandarray(a) FROM t"
            ),
            "SELECT (unnest(pg_expandarray(a))).'n' AS \"n\", unnest(pg_expandarray(a)) AS \"_pg_expandarray\" FROM t"
        );
        // Not a name another column has (DataFusion allows none twice), nor beside `*`.
        assert_eq!(
            rewritten("SELECT r.n, (r.keys).n FROM r"),
            "SELECT r.n, (r.keys).'n' FROM r"
        );
        assert_eq!(
            rewritten("SELECT *, (r.keys).n FROM r"),
            "SELECT *, (r.keys).'n' FROM r"
        );
        // Names before a subscript name the column (pgjdbc's getIndexInfo).
        assert_eq!(
            rewritten("SELECT tmp.I_INDOPTION[tmp.ORDINAL_POSITION - 1] & 1 FROM tmp"),
            "SELECT tmp.I_INDOPTION[tmp.ORDINAL_POSITION - 1] & 1 FROM tmp"
        );
    }

    #[test]
    fn generate_subscripts_unnests_a_range() {
        let sql = "SELECT unnest(i.indkey) AS attnum, generate_subscripts(i.indkey, $1::INTEGER) AS ord FROM pg_catalog.pg_index i";
        assert_eq!(
            rewritten(sql),
            "SELECT unnest(i.indkey) AS attnum, unnest(range(array_lower(i.indkey, $1::INTEGER), array_upper(i.indkey, $1::INTEGER) + 1)) AS ord FROM pg_catalog.pg_index i"
        );
    }

    #[test]
    fn like_with_another_escape_calls_the_function() {
        let sql = "SELECT 1 WHERE a NOT LIKE $1 || '%' ESCAPE '/' AND b ILIKE 'x' ESCAPE '\\'";
        assert_eq!(
            rewritten(sql),
            "SELECT 1 WHERE a NOT LIKE pg_like_escape(($1 || '%'), '/') ESCAPE '\\' AND b ILIKE 'x' ESCAPE '\\'"
        );
    }
}
