//! PostgreSQL compatibility over DataFusion: what a PostgreSQL client expects of a server, apart
//! from the wire protocol and the data.
//!
//! - [`parser`] turns SQL text into statements, and [`depth`] bounds how deep they nest;
//! - [`rewrite`] reshapes PostgreSQL syntax DataFusion does not plan as written, as a list of
//!   named rules;
//! - [`statement`] classifies each statement (a query, a session command, a refused write);
//! - [`settings`] holds a session's parameters (`SET`, `SHOW`, `RESET`);
//! - [`introspection`] provides `pg_catalog`, `information_schema` and PostgreSQL's functions;
//! - [`error`] gives the errors raised here PostgreSQL's SQLSTATEs.
//!
//! Nothing here knows the wire protocol or the catalog of sources: a session's sources come in
//! as a DataFusion `CatalogProvider`, and everything is tested on a bare `SessionContext`.

pub mod depth;
pub mod error;
pub mod introspection;
pub mod parser;
pub mod rewrite;
pub mod settings;
pub mod statement;

use error::SqlError;
use parser::PgParser;
use statement::Command;

/// Splits `sql` into statements, bounds their depth, rewrites them into forms DataFusion plans
/// as PostgreSQL would answer them, and classifies them, refusing writes (25006).
pub fn commands(parser: &PgParser, sql: &str) -> Result<Vec<Command>, SqlError> {
    depth::check_text(sql)?;
    let statements = parser
        .parse(sql)
        .map_err(|e| SqlError::Syntax(e.to_string()))?;
    statements
        .into_iter()
        .map(|mut statement| {
            depth::limit(&mut statement)?;
            rewrite::rewrite(&mut statement);
            Command::classify(statement)
        })
        .collect()
}
