//! Every error a client can see, and its SQLSTATE.
//!
//! This module is the one place where errors from DataFusion, the catalog and the connectors
//! become PostgreSQL errors: a client sees `42P01 relation "shop.ordrs" does not exist`, never
//! a Rust debug dump.

use datafusion::arrow::error::ArrowError;
use datafusion::common::SchemaError;
use datafusion::error::DataFusionError;
use polygate_connector_core::{ConnectorError, SourceError};
use polygate_pgcompat::error::SqlError;
use polygate_pgcompat::settings::SettingError;

/// An error of the gateway, as a client will see it.
#[derive(Debug, thiserror::Error)]
pub enum GatewayError {
    /// An error of PostgreSQL's rules: a write refused, a statement or setting polygate does
    /// not have, an expression nested too deep.
    #[error(transparent)]
    Sql(#[from] SqlError),
    /// The statement was stopped before it finished.
    #[error("canceling statement due to {0}")]
    Canceled(CancelReason),
    /// A statement other than ROLLBACK in a transaction block that failed.
    #[error("current transaction is aborted, commands ignored until end of transaction block")]
    AbortedTransaction,
    /// The wire protocol layer failed (encoding a value, writing to the client).
    #[error("{0}")]
    Wire(String),
    /// A message the protocol does not allow here, or whose parts do not agree (08P01).
    #[error("{0}")]
    Protocol(String),
    /// A result larger than the gateway's row limit for ad hoc queries.
    #[error(
        "the result has more than {0} rows, the gateway's max_result_rows; add a LIMIT or an aggregate"
    )]
    TooManyRows(u64),
    /// Anything raised while planning or executing a query.
    #[error(transparent)]
    DataFusion(#[from] DataFusionError),
}

impl From<SettingError> for GatewayError {
    fn from(error: SettingError) -> Self {
        Self::Sql(error.into())
    }
}

/// A SQLSTATE and the message that goes with it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PgError {
    /// The five-character SQLSTATE.
    pub code: &'static str,
    /// The message, lowercase, without a trailing period.
    pub message: String,
}

impl GatewayError {
    /// The SQLSTATE and message a client receives for this error.
    pub fn to_pg(&self) -> PgError {
        match self {
            Self::Sql(e) => pg(e.code(), e.to_string()),
            Self::Canceled(CancelReason::Shutdown) => pg("57P01", self.to_string()),
            Self::Canceled(_) => pg("57014", self.to_string()),
            Self::TooManyRows(_) => pg("54000", self.to_string()),
            Self::AbortedTransaction => pg("25P02", self.to_string()),
            Self::Wire(_) => pg("XX000", self.to_string()),
            Self::Protocol(_) => pg("08P01", self.to_string()),
            Self::DataFusion(e) => datafusion_to_pg(e),
        }
    }
}

impl GatewayError {
    /// A statement polygate does not run (0A000).
    pub fn unsupported(what: impl Into<String>) -> Self {
        Self::Sql(SqlError::unsupported(what))
    }

    /// SQL the parser rejects (42601).
    pub fn syntax(message: impl Into<String>) -> Self {
        Self::Sql(SqlError::Syntax(message.into()))
    }

    /// A statement that would write (25006).
    pub fn read_only(what: impl Into<String>) -> Self {
        Self::Sql(SqlError::ReadOnly(what.into()))
    }
}

/// Why a statement was canceled.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CancelReason {
    /// A CancelRequest from the client.
    UserRequest,
    /// `statement_timeout` passed.
    StatementTimeout,
    /// The gateway is shutting down.
    Shutdown,
    /// The client closed its connection.
    ClientGone,
}

impl std::fmt::Display for CancelReason {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::UserRequest => "user request",
            Self::StatementTimeout => "statement timeout",
            Self::Shutdown => "administrator command",
            Self::ClientGone => "client disconnection",
        })
    }
}

fn pg(code: &'static str, message: impl Into<String>) -> PgError {
    PgError {
        code,
        message: message.into(),
    }
}

fn datafusion_to_pg(error: &DataFusionError) -> PgError {
    // Context, shared and collection wrappers say nothing about the cause.
    let error = error.find_root();
    match error {
        DataFusionError::SQL(e, _) => pg("42601", format!("syntax error: {e}")),
        DataFusionError::SchemaError(e, _) => schema_error_to_pg(e),
        DataFusionError::Plan(message) => plan_error_to_pg(message),
        DataFusionError::NotImplemented(message) => {
            pg("0A000", format!("feature not supported: {message}"))
        }
        DataFusionError::ResourcesExhausted(message) => {
            pg("53200", format!("out of memory: {message}"))
        }
        DataFusionError::ArrowError(e, _) => arrow_error_to_pg(e),
        DataFusionError::External(e) => {
            if let Some(source_error) = e.downcast_ref::<SourceError>() {
                source_error_to_pg(source_error)
            } else if let Some(gateway_error) = e.downcast_ref::<GatewayError>() {
                gateway_error.to_pg()
            } else if let Some(sql_error) = e.downcast_ref::<SqlError>() {
                pg(sql_error.code(), sql_error.to_string())
            } else if let Some(arrow_error) = e.downcast_ref::<ArrowError>() {
                arrow_error_to_pg(arrow_error)
            } else {
                pg("XX000", e.to_string())
            }
        }
        // PostgreSQL: "more than one row returned by a subquery used as an expression".
        DataFusionError::Execution(message) if message.contains("returned more than one row") => {
            pg("21000", message.clone())
        }
        DataFusionError::Execution(message) => pg("22000", message.clone()),
        DataFusionError::Internal(message) => pg("XX000", format!("internal error: {message}")),
        other => pg("XX000", other.to_string()),
    }
}

fn schema_error_to_pg(error: &SchemaError) -> PgError {
    match error {
        SchemaError::FieldNotFound { field, .. } => pg(
            "42703",
            format!("column \"{}\" does not exist", field.name()),
        ),
        SchemaError::AmbiguousReference { field } => pg(
            "42702",
            format!("column reference \"{}\" is ambiguous", field.name()),
        ),
        other => pg("42P17", other.to_string()),
    }
}

fn plan_error_to_pg(message: &str) -> PgError {
    // DataFusion reports unknown tables as `table 'db.schema.name' not found`.
    if let Some(rest) = message.strip_prefix("table '")
        && let Some(name) = rest.strip_suffix("' not found")
    {
        // The catalog part is the client's own database: PostgreSQL leaves it out.
        let relation = name.split_once('.').map_or(name, |(_, rest)| rest);
        return pg("42P01", format!("relation \"{relation}\" does not exist"));
    }
    if message.contains("function")
        && (message.contains("Invalid") || message.contains("No function matches"))
    {
        return pg("42883", message);
    }
    pg("42000", message)
}

fn arrow_error_to_pg(error: &ArrowError) -> PgError {
    match error {
        ArrowError::DivideByZero => pg("22012", "division by zero"),
        // A number that does not fit the target type ("Can't cast value 70000 to type
        // Int16") is out of range; anything else cast is not a valid value of the type.
        ArrowError::CastError(m) if m.starts_with("Can't cast value") => pg("22003", m.clone()),
        ArrowError::CastError(m) | ArrowError::ParseError(m) => pg("22P02", m.clone()),
        ArrowError::ArithmeticOverflow(m) => pg("22003", m.clone()),
        other => pg("22000", other.to_string()),
    }
}

fn source_error_to_pg(error: &SourceError) -> PgError {
    let code = match error.error {
        ConnectorError::Unavailable(_) => "08006",
        // PostgreSQL's codes for the same events in its own sessions.
        ConnectorError::Interrupted(_) => "57P01",
        ConnectorError::Overloaded(_) => "53300",
        ConnectorError::TimedOut(_) => "57014",
        ConnectorError::NotFound(_) => "42P01",
        ConnectorError::InvalidData(_) => "22000",
        ConnectorError::DataFusion(_) => "XX000",
    };
    pg(code, error.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(error: DataFusionError, code: &str, message: &str) {
        let pg = GatewayError::from(error).to_pg();
        assert_eq!((pg.code, pg.message.as_str()), (code, message));
    }

    #[test]
    fn maps_errors_to_sqlstates() {
        check(
            DataFusionError::Plan("table 'polygate.demo.ordrs' not found".into()),
            "42P01",
            "relation \"demo.ordrs\" does not exist",
        );
        check(
            DataFusionError::NotImplemented("lateral joins".into()),
            "0A000",
            "feature not supported: lateral joins",
        );
        check(
            DataFusionError::ArrowError(Box::new(ArrowError::DivideByZero), None),
            "22012",
            "division by zero",
        );
        check(
            DataFusionError::Context(
                "while scanning".into(),
                Box::new(DataFusionError::ResourcesExhausted("pool".into())),
            ),
            "53200",
            "out of memory: pool",
        );
        check(
            SourceError::into_datafusion("shop", ConnectorError::Unavailable("refused".into())),
            "08006",
            "source shop: source unavailable: refused",
        );
        check(
            DataFusionError::ArrowError(
                Box::new(ArrowError::CastError(
                    "Can't cast value 70000 to type Int16".into(),
                )),
                None,
            ),
            "22003",
            "Can't cast value 70000 to type Int16",
        );
        check(
            DataFusionError::Execution("Scalar subquery returned more than one row".into()),
            "21000",
            "Scalar subquery returned more than one row",
        );
        check(
            SourceError::into_datafusion(
                "crm",
                ConnectorError::Interrupted(
                    "terminating connection due to administrator command".into(),
                ),
            ),
            "57P01",
            "source crm: the store ended the statement: terminating connection due to \
             administrator command",
        );
        let read_only = GatewayError::read_only("Insert Into").to_pg();
        assert_eq!(read_only.code, "25006");
    }
}
