//! What a client's statement asks for, decided before anything is planned.
//!
//! Queries go to DataFusion. Session statements (`SET`, `SHOW`, `RESET`, `BEGIN`, `COMMIT`,
//! `DISCARD`, ...) are answered by the session itself, as PostgreSQL answers them. Everything
//! else would write, and is refused with 25006 here, so that nothing of it reaches a store.

use datafusion::sql::sqlparser::ast::{
    self, Expr, Ident, ObjectName, Reset, Set, Statement, TransactionAccessMode, TransactionMode,
    UnaryOperator, Value,
};

use crate::error::SqlError;

/// The parameters `SHOW` names in several words.
const MULTI_WORD_PARAMETERS: &[&str] = &[
    "all",
    "transaction isolation level",
    "time zone",
    "session authorization",
];

/// A classified statement.
#[derive(Debug, Clone)]
pub enum Command {
    /// A query (`SELECT`, `VALUES`, `WITH`, `EXPLAIN`, `SHOW TABLES`): planned and run.
    Query(Box<Statement>),
    /// `SET [LOCAL] name = value`; `None` is `DEFAULT`.
    Set {
        /// The parameter.
        name: String,
        /// Its new value, or `None` for `DEFAULT`.
        value: Option<String>,
        /// `SET LOCAL`: only until the transaction ends.
        local: bool,
    },
    /// `RESET name`, or `RESET ALL` when `None`.
    Reset(Option<String>),
    /// `SHOW name`, or `SHOW ALL`.
    Show(String),
    /// `BEGIN` / `START TRANSACTION`.
    Begin,
    /// `COMMIT` / `END`.
    Commit,
    /// `ROLLBACK` / `ABORT`.
    Rollback,
    /// `ROLLBACK TO SAVEPOINT`: the block goes on, out of its failed state.
    RollbackToSavepoint,
    /// `DISCARD ALL` and the like: session state back to its start.
    Discard,
    /// A statement accepted and without effect in a read-only gateway (`SET TRANSACTION READ
    /// ONLY`, `SAVEPOINT`, ...), with the command tag it answers.
    Accepted(&'static str),
}

impl Command {
    /// Classifies `statement`, refusing writes with 25006.
    pub fn classify(statement: Statement) -> Result<Self, SqlError> {
        Ok(match statement {
            Statement::Query(_) | Statement::ExplainTable { .. } => {
                Self::Query(Box::new(statement))
            }
            Statement::Explain {
                statement: ref inner,
                ..
            } => {
                // EXPLAIN ANALYZE runs its statement: it must be a read as well.
                if let Self::Query(_) = Self::classify((**inner).clone())? {
                    Self::Query(Box::new(statement))
                } else {
                    return Err(SqlError::unsupported("EXPLAIN of a non-query statement"));
                }
            }
            Statement::Set(set) => Self::set(set)?,
            Statement::Reset(reset) => match reset.reset {
                Reset::ALL => Self::Reset(None),
                Reset::ConfigurationParameter(name) => {
                    Self::Reset(Some(object_name(&name).to_ascii_lowercase()))
                }
            },
            Statement::ShowVariable { variable } => {
                let words: Vec<String> = variable
                    .iter()
                    .map(|ident| ident.value.to_ascii_lowercase())
                    .collect();
                // The parser splits a dotted name (`datafusion.execution.batch_size`) into
                // words as it does PostgreSQL's few multi-word names.
                let spaced = words.join(" ");
                match MULTI_WORD_PARAMETERS.contains(&spaced.as_str()) {
                    true => Self::Show(spaced),
                    false => Self::Show(words.join(".")),
                }
            }
            Statement::StartTransaction { modes, .. } => {
                read_only(&modes)?;
                Self::Begin
            }
            Statement::Commit { .. } => Self::Commit,
            Statement::Rollback {
                savepoint: Some(_), ..
            } => Self::RollbackToSavepoint,
            Statement::Rollback { .. } => Self::Rollback,
            Statement::Savepoint { .. } => Self::Accepted("SAVEPOINT"),
            Statement::ReleaseSavepoint { .. } => Self::Accepted("RELEASE"),
            Statement::Discard { .. } => Self::Discard,
            Statement::Deallocate { .. } => Self::Accepted("DEALLOCATE"),
            Statement::Close { .. } => Self::Accepted("CLOSE CURSOR"),
            Statement::Copy { to: true, .. } => {
                return Err(SqlError::unsupported(
                    "COPY ... TO (use SELECT, or psql's \\copy)",
                ));
            }
            Statement::Declare { .. } | Statement::Fetch { .. } => {
                return Err(SqlError::unsupported("cursors (DECLARE, FETCH)"));
            }
            other => return Err(SqlError::ReadOnly(command_name(&other))),
        })
    }

    /// The tag of a statement the session answers itself (never a query's).
    pub fn tag(&self) -> &'static str {
        match self {
            Self::Query(_) => "SELECT",
            Self::Set { .. } => "SET",
            Self::Reset(_) => "RESET",
            Self::Show(_) => "SHOW",
            Self::Begin => "BEGIN",
            Self::Commit => "COMMIT",
            Self::Rollback | Self::RollbackToSavepoint => "ROLLBACK",
            Self::Discard => "DISCARD ALL",
            Self::Accepted(tag) => tag,
        }
    }

    fn set(set: Set) -> Result<Self, SqlError> {
        Ok(match set {
            Set::SingleAssignment {
                scope,
                variable,
                values,
                ..
            } => {
                let local = matches!(scope, Some(ast::ContextModifier::Local));
                // Parameter names are case-insensitive, quoted or not.
                let name = object_name(&variable).to_ascii_lowercase();
                let value = match values.as_slice() {
                    [Expr::Identifier(ident)] if is_default(ident) => None,
                    values => Some(
                        values
                            .iter()
                            .map(setting_value)
                            .collect::<Vec<_>>()
                            .join(", "),
                    ),
                };
                Self::Set { name, value, local }
            }
            Set::SetTimeZone { local, value } => Self::Set {
                name: "timezone".to_owned(),
                value: match &value {
                    Expr::Identifier(ident) if is_default(ident) => None,
                    Expr::Identifier(ident) if ident.value.eq_ignore_ascii_case("local") => None,
                    value => Some(setting_value(value)),
                },
                local,
            },
            Set::SetNames { charset_name, .. } => Self::Set {
                name: "client_encoding".to_owned(),
                value: Some(charset_name.value),
                local: false,
            },
            Set::SetTransaction { modes, .. } => {
                read_only(&modes)?;
                Self::Accepted("SET")
            }
            Set::SetSessionAuthorization(_) | Set::SetRole { .. } => {
                return Err(SqlError::unsupported(
                    "SET ROLE and SET SESSION AUTHORIZATION",
                ));
            }
            other => {
                return Err(SqlError::unsupported(format!("this form of SET: {other}")));
            }
        })
    }
}

/// A transaction may be declared read only; read write is refused (25006).
fn read_only(modes: &[TransactionMode]) -> Result<(), SqlError> {
    if modes.iter().any(|m| {
        matches!(
            m,
            TransactionMode::AccessMode(TransactionAccessMode::ReadWrite)
        )
    }) {
        return Err(SqlError::ReadOnly("a READ WRITE transaction".to_owned()));
    }
    Ok(())
}

fn is_default(ident: &Ident) -> bool {
    ident.quote_style.is_none() && ident.value.eq_ignore_ascii_case("default")
}

fn object_name(name: &ObjectName) -> String {
    name.0
        .iter()
        .filter_map(|part| part.as_ident())
        .map(|ident| ident.value.as_str())
        .collect::<Vec<_>>()
        .join(".")
}

/// A SET value as SHOW prints it: strings unquoted, identifiers lowercased unless quoted.
fn setting_value(expr: &Expr) -> String {
    match expr {
        Expr::Value(value) => match &value.value {
            Value::SingleQuotedString(s) | Value::EscapedStringLiteral(s) => s.clone(),
            Value::Number(n, _) => n.to_string(),
            Value::Boolean(b) => if *b { "on" } else { "off" }.to_owned(),
            other => other.to_string(),
        },
        Expr::Identifier(ident) if ident.quote_style.is_some() => ident.to_string(),
        Expr::Identifier(ident) => ident.value.to_ascii_lowercase(),
        Expr::UnaryOp {
            op: UnaryOperator::Minus,
            expr,
        } => format!("-{}", setting_value(expr)),
        other => other.to_string(),
    }
}

/// How PostgreSQL names a statement in its errors: `INSERT`, `CREATE TABLE`, `DROP`.
fn command_name(statement: &Statement) -> String {
    let text = statement.to_string();
    let mut words = text.split_whitespace().map(str::to_ascii_uppercase);
    let first = words.next().unwrap_or_default();
    match first.as_str() {
        "CREATE" | "ALTER" | "DROP" => {
            let object: Vec<String> = words
                .take_while(|w| {
                    matches!(
                        w.as_str(),
                        "TABLE"
                            | "VIEW"
                            | "INDEX"
                            | "SCHEMA"
                            | "DATABASE"
                            | "FUNCTION"
                            | "MATERIALIZED"
                            | "EXTERNAL"
                            | "TEMPORARY"
                            | "TEMP"
                            | "OR"
                            | "REPLACE"
                            | "UNIQUE"
                            | "ROLE"
                            | "USER"
                            | "SEQUENCE"
                            | "TYPE"
                            | "PROCEDURE"
                            | "EXTENSION"
                            | "TRIGGER"
                    )
                })
                .collect();
            if object.is_empty() {
                first
            } else {
                format!("{first} {}", object.join(" "))
            }
        }
        "COPY" => "COPY FROM".to_owned(),
        _ => first,
    }
}

#[cfg(test)]
mod tests;
