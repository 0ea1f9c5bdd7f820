//! The syntax rules: PostgreSQL forms that DataFusion's SQL planner does not take as written,
//! each replaced by a form it plans with the same answer. They read the statement alone, never
//! the catalog: what a name refers to is the planner's business, and rules that need it run on
//! the resolved plan ([`super::catalog_subqueries`]).

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    AccessExpr, BinaryOperator, Expr, Function, FunctionArg, FunctionArgExpr, FunctionArgumentList,
    FunctionArguments, GroupByExpr, Ident, LambdaFunction, LambdaFunctionParameter, LambdaSyntax,
    ObjectName, OneOrManyWithParens, Query, SelectItem, SetExpr, TableFactor, Value, VisitorMut,
    visit_expressions, visit_expressions_mut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

use super::{EMPTY_IF_NULL_FUNCTION, EXPAND_ARRAY_FUNCTION, LIKE_ESCAPE_FUNCTION, SyntaxRule};

/// The lambda parameter [`array_of_unnest`] names an array's element by.
const ARRAY_ELEMENT: &str = "pg_element";

/// Every syntax rule, in the order they apply to each expression.
pub const RULES: &[SyntaxRule] = &[
    SyntaxRule {
        name: "like_escape",
        reason: "`x LIKE p ESCAPE 'c'` with an escape other than a backslash (SQLAlchemy writes \
                 `ESCAPE '/'`): DataFusion takes only the backslash, so the pattern becomes \
                 `pg_like_escape(p, 'c')`, the same pattern escaped by backslashes",
        apply: like_escape,
    },
    SyntaxRule {
        name: "regclass_of_text",
        reason: "`CAST(name AS regclass)` of a name the query computes (Metabase's \
                 `CAST(FORMAT('%I.%I', schema, table) AS REGCLASS)`): the library resolves \
                 literals only, so the cast becomes a lookup in pg_class",
        apply: regclass_of_text,
    },
    SyntaxRule {
        name: "generate_subscripts",
        reason: "`generate_subscripts(array, d)` (SQLAlchemy's key reflection): DataFusion has \
                 no such set-returning function, so it becomes the unnest of a range",
        apply: generate_subscripts,
    },
    SyntaxRule {
        name: "array_of_unnest",
        reason: "`ARRAY(SELECT e FROM unnest(a) WHERE p)` over an array of the enclosing row \
                 (DataGrip): DataFusion plans no subquery over a set-returning function of the \
                 enclosing row, so it becomes a filter and a map with lambdas",
        apply: array_of_unnest,
    },
    SyntaxRule {
        name: "expand_array",
        reason: "`information_schema._pg_expandarray(a)` (pgjdbc's key and index metadata): \
                 PostgreSQL's set-returning function of (x, n) rows becomes the unnest of a \
                 list of structs",
        apply: expand_array,
    },
    SyntaxRule {
        name: "field_selection",
        reason: "`(composite).field` (pgjdbc's `(result.KEYS).x`): DataFusion names a struct's \
                 field by a string, `(composite).'field'`",
        apply: field_selection,
    },
];

/// `x LIKE p ESCAPE 'c'`, `c` not a backslash, as `x LIKE pg_like_escape((p), 'c') ESCAPE '\'`.
fn like_escape(expr: &Expr) -> Option<Expr> {
    let mut expr = expr.clone();
    let (Expr::Like {
        pattern,
        escape_char,
        ..
    }
    | Expr::ILike {
        pattern,
        escape_char,
        ..
    }) = &mut expr
    else {
        return None;
    };
    let escape = escape_char.as_ref().and_then(|e| escape_text(&e.value))?;
    if escape == "\\" {
        return None;
    }
    let literal = Expr::Value(Value::SingleQuotedString(escape).into());
    **pattern = call(
        LIKE_ESCAPE_FUNCTION,
        vec![Expr::Nested(pattern.clone()), literal],
    );
    *escape_char = Some(Value::SingleQuotedString("\\".to_owned()).into());
    Some(expr)
}

/// Names the select-list expressions the rules change as PostgreSQL names them (`array`,
/// `_pg_expandarray`, the field of `(row).field`), where the query does not, so a client sees
/// the column it would see on PostgreSQL rather than the rewritten expression.
pub struct PostgresColumnNames;

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
    // `pg_arg0` is the name; the template is a constant, the name is spliced in as a tree. The
    // lookup reads a derived table whose columns no query names, so that every column of the
    // name (`relname`, `c.relname`) still refers to the enclosing query.
    template(
        "(SELECT first_value(pg_regclass.pg_oid) FROM (SELECT c.oid AS pg_oid, \
         c.relname AS pg_relname, n.nspname AS pg_nspname FROM pg_catalog.pg_class c \
         JOIN pg_catalog.pg_namespace n ON c.relnamespace = n.oid) AS pg_regclass \
         WHERE pg_regclass.pg_nspname = CASE WHEN array_length(parse_ident(pg_arg0), 1) = 2 \
         THEN parse_ident(pg_arg0)[1] ELSE current_schema() END \
         AND pg_regclass.pg_relname = \
         parse_ident(pg_arg0)[CAST(array_length(parse_ident(pg_arg0), 1) AS BIGINT)])",
        &[operand],
    )
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
    template(
        "unnest(range(array_lower(pg_arg0, pg_arg1), array_upper(pg_arg0, pg_arg1) + 1))",
        &[array, dimension],
    )
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
fn field_selection(expr: &Expr) -> Option<Expr> {
    let mut expr = expr.clone();
    let Expr::CompoundFieldAccess { root, access_chain } = &mut expr else {
        return None;
    };
    let column_names = match root.as_ref() {
        Expr::Identifier(_) | Expr::CompoundIdentifier(_) => access_chain
            .iter()
            .take_while(|access| matches!(access, AccessExpr::Dot(Expr::Identifier(_))))
            .count(),
        _ => 0,
    };
    let mut named = false;
    for access in access_chain.iter_mut().skip(column_names) {
        if let AccessExpr::Dot(Expr::Identifier(field)) = access {
            named = true;
            let name = match field.quote_style {
                Some(_) => field.value.clone(),
                None => field.value.to_lowercase(),
            };
            *access = AccessExpr::Dot(Expr::Value(Value::SingleQuotedString(name).into()));
        }
    }
    named.then_some(expr)
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

/// The expression `sql`, a constant, with `pg_arg0`, `pg_arg1`, ... replaced by `args`: the
/// arguments are spliced in as they were parsed, never printed and parsed again.
fn template(sql: &str, args: &[&Expr]) -> Option<Expr> {
    let mut expr = Parser::new(&PostgreSqlDialect {})
        .try_with_sql(sql)
        .ok()?
        .parse_expr()
        .ok()?;
    let _ = visit_expressions_mut(&mut expr, |e| {
        if let Expr::Identifier(id) = &*e
            && let Some(index) = id.value.strip_prefix("pg_arg")
            && let Some(arg) = index.parse::<usize>().ok().and_then(|i| args.get(i))
        {
            *e = (*arg).clone();
        }
        ControlFlow::<()>::Continue(())
    });
    Some(expr)
}

fn escape_text(value: &Value) -> Option<String> {
    match value {
        Value::SingleQuotedString(s) | Value::EscapedStringLiteral(s) => Some(s.clone()),
        _ => None,
    }
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
