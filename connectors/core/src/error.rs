//! Errors a connector reports, typed so that the gateway can map them to SQLSTATEs.

use std::fmt;

/// A failure of a connector while talking to its store or describing its data.
#[derive(Debug, thiserror::Error)]
pub enum ConnectorError {
    /// The store could not be reached or stopped answering: the source is unavailable.
    #[error("source unavailable: {0}")]
    Unavailable(String),
    /// The store ended the statement or the session itself: an administrator's command, a
    /// shutdown, a cursor or search context it no longer keeps.
    #[error("the store ended the statement: {0}")]
    Interrupted(String),
    /// The store refused the work for lack of resources: too many connections, too many
    /// requests.
    #[error("the store is overloaded: {0}")]
    Overloaded(String),
    /// The store's own time limit for a statement passed.
    #[error("the store's statement timeout passed: {0}")]
    TimedOut(String),
    /// The named relation does not exist in the store.
    #[error("relation {0} does not exist")]
    NotFound(String),
    /// The store holds data polygate cannot read as declared.
    #[error("invalid data: {0}")]
    InvalidData(String),
    /// A DataFusion error raised while building a table provider.
    #[error(transparent)]
    DataFusion(#[from] datafusion::error::DataFusionError),
}

/// A [`ConnectorError`] of a named source, as it travels through DataFusion
/// (`DataFusionError::External`) to the gateway, which maps it to a SQLSTATE.
#[derive(Debug, thiserror::Error)]
#[error("source {source_name}: {error}")]
pub struct SourceError {
    /// The source's name in catalog.toml.
    pub source_name: String,
    /// What went wrong.
    pub error: ConnectorError,
}

impl SourceError {
    /// Wraps `error` of source `source_name` for DataFusion.
    pub fn into_datafusion(
        source_name: impl Into<String>,
        error: ConnectorError,
    ) -> datafusion::error::DataFusionError {
        match error {
            // DataFusion's own errors keep their type, and with it their meaning.
            ConnectorError::DataFusion(e) => e,
            error => datafusion::error::DataFusionError::External(Box::new(SourceError {
                source_name: source_name.into(),
                error,
            })),
        }
    }
}

/// An option of a `[sources.NAME]` table that is present but wrong.
///
/// Connectors report the key they reject; the catalog, which alone knows catalog.toml's text,
/// adds the file and line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OptionError {
    /// The option's key inside the source table, dotted for nested keys (`tables.orders.path`).
    pub key: String,
    /// What is wrong with it, lowercase, without a trailing period.
    pub message: String,
}

impl OptionError {
    /// An error about the option `key`.
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            key: key.into(),
            message: message.into(),
        }
    }
}

impl OptionError {
    /// Option `key`'s `value` seconds, when within `range`: a timeout of 0 would fail every
    /// request at once, and one of centuries would overflow the deadline it is added to.
    pub fn seconds(
        key: &str,
        value: u64,
        range: std::ops::RangeInclusive<u64>,
    ) -> Result<std::time::Duration, Self> {
        if range.contains(&value) {
            Ok(std::time::Duration::from_secs(value))
        } else {
            Err(Self::new(
                key,
                format!(
                    "must be a whole number of seconds from {} to {}",
                    range.start(),
                    range.end()
                ),
            ))
        }
    }

    /// The longest a connection may take to be made: an hour.
    pub const MAX_CONNECT_SECS: u64 = 3_600;
}

impl fmt::Display for OptionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.key, self.message)
    }
}

impl std::error::Error for OptionError {}
