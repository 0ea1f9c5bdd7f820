//! The errors PostgreSQL compatibility raises itself, each with PostgreSQL's SQLSTATE.
//!
//! Errors raised while planning or executing (DataFusion's, the stores') are the embedding
//! server's to map; these are the ones that follow from PostgreSQL's rules alone: a write
//! refused, a statement or parameter PostgreSQL has and polygate does not, an expression nested
//! too deep.

use crate::settings::SettingError;

/// An error raised by PostgreSQL's rules, before or outside DataFusion.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    /// A statement that would write; polygate is read-only (25006).
    #[error("cannot execute {0} in a read-only gateway")]
    ReadOnly(String),
    /// SQL the parser rejects (42601).
    #[error("syntax error: {0}")]
    Syntax(String),
    /// A statement polygate does not run (0A000).
    #[error("feature not supported: {0}")]
    Unsupported(String),
    /// A refused `SET`, `SHOW` or `RESET`.
    #[error(transparent)]
    Setting(#[from] SettingError),
    /// A statement whose expressions nest deeper than the gateway evaluates (54001).
    #[error("stack depth limit exceeded: an expression nests more than {0} levels deep")]
    TooDeep(usize),
    /// A statement with more operators than the gateway parses (54001).
    #[error("stack depth limit exceeded: the statement has more than {0} operators")]
    TooManyOperators(usize),
}

impl SqlError {
    /// A statement polygate does not run (0A000).
    pub fn unsupported(what: impl Into<String>) -> Self {
        Self::Unsupported(what.into())
    }

    /// The five-character SQLSTATE a client receives.
    pub fn code(&self) -> &'static str {
        match self {
            Self::ReadOnly(_) => "25006",
            Self::Syntax(_) => "42601",
            Self::Unsupported(_) => "0A000",
            Self::Setting(e) => e.code(),
            Self::TooDeep(_) | Self::TooManyOperators(_) => "54001",
        }
    }
}

impl From<SqlError> for datafusion::error::DataFusionError {
    fn from(error: SqlError) -> Self {
        Self::External(Box::new(error))
    }
}
