//! Filters pushed to PostgreSQL: DataFusion expressions in, a SQL condition with bind
//! parameters out.
//!
//! A filter is pushed (and reported `Exact`, which removes DataFusion's own `FilterExec`) only
//! when PostgreSQL's answer is the one DataFusion would compute. Anything else stays with
//! DataFusion (`Unsupported`). The reasons, case by case:
//! - Comparisons, `IS [NOT] NULL`, `AND`/`OR`/`NOT`, `IN` and `BETWEEN` follow the same
//!   three-valued logic in both engines.
//! - Integers, booleans, dates and timestamps compare identically.
//! - Floats are never pushed: DataFusion orders floats totally (`-0.0 < 0.0`), PostgreSQL
//!   does not (`-0.0 = 0.0`).
//! - Text: `=`, `<>`, `IN` and `LIKE` are exact under PostgreSQL's deterministic collations,
//!   which compare bytes for equality. Ranges (`<`, `>`, `BETWEEN`) depend on the collation:
//!   they are sent with `COLLATE "C"`, which orders UTF-8 by bytes as DataFusion does, whatever
//!   the column's own collation (an index in another collation then cannot serve them).
//!   `ILIKE` folds case by locale and is not pushed.
//! - `char(n)` columns are not pushed: PostgreSQL ignores trailing blanks when comparing
//!   them, DataFusion sees the padded value.
//! - Columns read as text (types without a native mapping) are filtered on the same `::text`
//!   expression they are read with, so PostgreSQL compares exactly the strings DataFusion sees.
//!
//! Values never enter the SQL text: each is a bind parameter (`$n`) with an explicit cast.

use chrono::{DateTime, NaiveDate, NaiveDateTime};
use datafusion::arrow::datatypes::DataType;
use datafusion::common::{DFSchema, ScalarValue};
use datafusion::logical_expr::{Between, BinaryExpr, Expr, Like, Operator};
use polygate_connector_core::depth::within_pushdown_depth;
use tokio_postgres::types::ToSql;

use crate::schema::PgColumn;

/// A value bound to a `$n` parameter.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Param {
    Int64(i64),
    Bool(bool),
    Text(String),
    Date(NaiveDate),
    Timestamp(NaiveDateTime),
    TimestampTz(DateTime<chrono::Utc>),
    Int64List(Vec<Option<i64>>),
    TextList(Vec<Option<String>>),
}

impl Param {
    /// The value as tokio-postgres binds it.
    pub(crate) fn as_sql(&self) -> &(dyn ToSql + Sync) {
        match self {
            Self::Int64(v) => v,
            Self::Bool(v) => v,
            Self::Text(v) => v,
            Self::Date(v) => v,
            Self::Timestamp(v) => v,
            Self::TimestampTz(v) => v,
            Self::Int64List(v) => v,
            Self::TextList(v) => v,
        }
    }

    /// The PostgreSQL type the parameter is cast to, so that the server never guesses.
    fn cast(&self) -> &'static str {
        match self {
            Self::Int64(_) => "int8",
            Self::Bool(_) => "bool",
            Self::Text(_) => "text",
            Self::Date(_) => "date",
            Self::Timestamp(_) => "timestamp",
            Self::TimestampTz(_) => "timestamptz",
            Self::Int64List(_) => "int8[]",
            Self::TextList(_) => "text[]",
        }
    }
}

/// What kind of comparisons a column allows to push.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Comparable {
    /// Integers, booleans, dates, timestamps: every comparison.
    Ordered,
    /// Text: everything, ranges in byte order (`COLLATE "C"`).
    Text,
    /// Floats, `char(n)`: nothing.
    No,
}

/// Builds one SQL condition, numbering parameters from `first_param`.
pub(crate) struct FilterSql<'a> {
    columns: &'a [PgColumn],
    /// The schema `columns` are the fields of, when column references are resolved by their
    /// qualified names (a derived relation, whose columns may share names), not by name alone.
    schema: Option<&'a DFSchema>,
    sql: String,
    params: Vec<Param>,
    first_param: usize,
}

impl<'a> FilterSql<'a> {
    /// A builder over the relation's `columns` whose parameters start at `$first_param`.
    pub(crate) fn new(columns: &'a [PgColumn], first_param: usize) -> Self {
        Self {
            columns,
            schema: None,
            sql: String::new(),
            params: Vec::new(),
            first_param,
        }
    }

    /// Translates `expr`, or returns `None` when it cannot be pushed exactly.
    pub(crate) fn translate(
        columns: &'a [PgColumn],
        first_param: usize,
        expr: &Expr,
    ) -> Option<(String, Vec<Param>)> {
        if !within_pushdown_depth(expr) {
            return None;
        }
        let mut builder = Self::new(columns, first_param);
        builder.condition(expr)?;
        Some((builder.sql, builder.params))
    }

    /// Translates `expr` over a derived relation: `columns` are the fields of `schema`, in
    /// order.
    pub(crate) fn translate_in(
        columns: &'a [PgColumn],
        schema: &'a DFSchema,
        first_param: usize,
        expr: &Expr,
    ) -> Option<(String, Vec<Param>)> {
        if !within_pushdown_depth(expr) {
            return None;
        }
        let mut builder = Self::new(columns, first_param);
        builder.schema = Some(schema);
        builder.condition(expr)?;
        Some((builder.sql, builder.params))
    }

    fn condition(&mut self, expr: &Expr) -> Option<()> {
        match expr {
            Expr::BinaryExpr(BinaryExpr { left, op, right }) => match op {
                Operator::And | Operator::Or => {
                    self.sql.push('(');
                    self.condition(left)?;
                    self.sql.push_str(if *op == Operator::And {
                        " AND "
                    } else {
                        " OR "
                    });
                    self.condition(right)?;
                    self.sql.push(')');
                    Some(())
                }
                _ => self.comparison(left, *op, right),
            },
            // A boolean column is a condition of its own.
            Expr::Column(_) => {
                let column = self.column(expr)?;
                if column.arrow_field().data_type() != &DataType::Boolean {
                    return None;
                }
                self.sql.push_str(&format!("({})", column.select_expr()));
                Some(())
            }
            Expr::Not(inner) => {
                self.sql.push_str("(NOT ");
                self.condition(inner)?;
                self.sql.push(')');
                Some(())
            }
            Expr::IsNull(inner) | Expr::IsNotNull(inner) => {
                let column = self.column(inner)?;
                let suffix = if matches!(expr, Expr::IsNull(_)) {
                    "IS NULL"
                } else {
                    "IS NOT NULL"
                };
                self.sql
                    .push_str(&format!("({} {suffix})", column.select_expr()));
                Some(())
            }
            Expr::Between(Between {
                expr,
                negated,
                low,
                high,
            }) => {
                let column = self.column(expr)?;
                if comparable(column) == Comparable::No {
                    return None;
                }
                let low = self.value_for(column, low)?;
                let high = self.value_for(column, high)?;
                let not = if *negated { "NOT " } else { "" };
                let low = self.bind(low);
                let high = self.bind(high);
                self.sql.push_str(&format!(
                    "({}{} {not}BETWEEN {low} AND {high})",
                    column.select_expr(),
                    byte_order(column)
                ));
                Some(())
            }
            Expr::InList(list) => {
                let column = self.column(&list.expr)?;
                if comparable(column) == Comparable::No {
                    return None;
                }
                let values = list
                    .list
                    .iter()
                    .map(|item| self.value_for(column, item))
                    .collect::<Option<Vec<_>>>()?;
                let array = match values.first()? {
                    Param::Int64(_) => Param::Int64List(
                        values
                            .iter()
                            .map(|v| match v {
                                Param::Int64(i) => Some(*i),
                                _ => None,
                            })
                            .collect(),
                    ),
                    Param::Text(_) => Param::TextList(
                        values
                            .iter()
                            .map(|v| match v {
                                Param::Text(s) => Some(s.clone()),
                                _ => None,
                            })
                            .collect(),
                    ),
                    _ => return None,
                };
                // `x IN (a, b)` is `x = ANY(array)` and `x NOT IN (a, b)` is `x <> ALL(array)`,
                // NULL elements included, in both engines.
                let placeholder = self.bind(array);
                let form = if list.negated { "<> ALL" } else { "= ANY" };
                self.sql
                    .push_str(&format!("({} {form}({placeholder}))", column.select_expr()));
                Some(())
            }
            Expr::Like(Like {
                negated,
                expr,
                pattern,
                escape_char: None | Some('\\'),
                case_insensitive: false,
            }) => {
                // Both engines escape with a backslash by default.
                let column = self.column(expr)?;
                if comparable(column) != Comparable::Text {
                    return None;
                }
                let pattern = self.value_for(column, pattern)?;
                let not = if *negated { "NOT " } else { "" };
                let placeholder = self.bind(pattern);
                self.sql.push_str(&format!(
                    "({} {not}LIKE {placeholder})",
                    column.select_expr()
                ));
                Some(())
            }
            _ => None,
        }
    }

    fn comparison(&mut self, left: &Expr, op: Operator, right: &Expr) -> Option<()> {
        let symbol = match op {
            Operator::Eq => "=",
            Operator::NotEq => "<>",
            Operator::Lt => "<",
            Operator::LtEq => "<=",
            Operator::Gt => ">",
            Operator::GtEq => ">=",
            _ => return None,
        };
        let is_equality = matches!(op, Operator::Eq | Operator::NotEq);
        let allowed = |column: &PgColumn| comparable(column) != Comparable::No;
        // Text ranges compare in byte order; equality is the same in every collation.
        let collate = |column: &PgColumn| if is_equality { "" } else { byte_order(column) };
        // column op column (both of the relation, of the same Arrow type).
        if let (Some(a), Some(b)) = (self.column(left), self.column(right)) {
            if !allowed(a)
                || !allowed(b)
                || a.arrow_field().data_type() != b.arrow_field().data_type()
            {
                return None;
            }
            self.sql.push_str(&format!(
                "({}{} {symbol} {}{})",
                a.select_expr(),
                collate(a),
                b.select_expr(),
                collate(b)
            ));
            return Some(());
        }
        // column op value, or value op column.
        let (column, value, flipped) = match (self.column(left), self.column(right)) {
            (Some(column), None) => (column, right, false),
            (None, Some(column)) => (column, left, true),
            _ => return None,
        };
        if !allowed(column) {
            return None;
        }
        let value = self.value_for(column, value)?;
        let placeholder = self.bind(value);
        let column = format!("{}{}", column.select_expr(), collate(column));
        if flipped {
            self.sql
                .push_str(&format!("({placeholder} {symbol} {column})"));
        } else {
            self.sql
                .push_str(&format!("({column} {symbol} {placeholder})"));
        }
        Some(())
    }

    /// The relation's column `expr` names, if it is a bare column reference.
    fn column(&self, expr: &Expr) -> Option<&'a PgColumn> {
        match expr {
            Expr::Column(column) => match self.schema {
                Some(schema) => self.columns.get(schema.maybe_index_of_column(column)?),
                None => self.columns.iter().find(|c| c.name == column.name),
            },
            _ => None,
        }
    }

    /// `expr` as a parameter of `column`'s type: only a literal of exactly the column's Arrow
    /// type (DataFusion's type coercion has already aligned them; anything else is a cast
    /// this module does not reason about).
    fn value_for(&self, column: &PgColumn, expr: &Expr) -> Option<Param> {
        let Expr::Literal(value, _) = expr else {
            return None;
        };
        if &value.data_type() != column.arrow_field().data_type() {
            return None;
        }
        match value {
            ScalarValue::Int16(Some(v)) => Some(Param::Int64(i64::from(*v))),
            ScalarValue::Int32(Some(v)) => Some(Param::Int64(i64::from(*v))),
            ScalarValue::Int64(Some(v)) => Some(Param::Int64(*v)),
            ScalarValue::Boolean(Some(v)) => Some(Param::Bool(*v)),
            ScalarValue::Utf8(Some(v))
            | ScalarValue::LargeUtf8(Some(v))
            | ScalarValue::Utf8View(Some(v)) => Some(Param::Text(v.clone())),
            ScalarValue::Date32(Some(days)) => NaiveDate::default()
                .checked_add_signed(chrono::Duration::days(i64::from(*days)))
                .map(Param::Date),
            ScalarValue::TimestampMicrosecond(Some(micros), None) => {
                DateTime::from_timestamp_micros(*micros).map(|t| Param::Timestamp(t.naive_utc()))
            }
            ScalarValue::TimestampMicrosecond(Some(micros), Some(_)) => {
                DateTime::from_timestamp_micros(*micros).map(Param::TimestampTz)
            }
            // NULL literals make comparisons NULL; DataFusion simplifies them away before
            // they get here, and binding an untyped NULL is not worth the risk.
            _ => None,
        }
    }

    fn bind(&mut self, param: Param) -> String {
        let placeholder = format!(
            "${}::{}",
            self.first_param + self.params.len(),
            param.cast()
        );
        self.params.push(param);
        placeholder
    }
}

fn comparable(column: &PgColumn) -> Comparable {
    if !column.compares_exactly() {
        return Comparable::No;
    }
    match column.arrow_field().data_type() {
        DataType::Utf8 => Comparable::Text,
        DataType::Float32 | DataType::Float64 => Comparable::No,
        _ => Comparable::Ordered,
    }
}

/// The collation clause that makes PostgreSQL compare `column` in DataFusion's order: byte
/// order for text, none for the rest.
fn byte_order(column: &PgColumn) -> &'static str {
    if column.arrow_field().data_type() == &DataType::Utf8 {
        " COLLATE \"C\""
    } else {
        ""
    }
}

#[cfg(test)]
mod tests;
