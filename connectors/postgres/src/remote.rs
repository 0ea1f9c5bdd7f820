//! The source's server, as its tables share it: a bounded pool of read-only sessions, the
//! TLS of their cancel requests, and what a failed request means.

use std::time::Duration;

use deadpool_postgres::{Object, Pool, PoolError, TimeoutType};
use polygate_connector_core::{ConnectorError, SourceSettings};

use crate::tls;

/// How long a query waits for a free connection of a source's pool before failing.
pub(crate) const POOL_WAIT: Duration = Duration::from_secs(30);

/// How to reach a source's server and what to ask of it, shared by the source's tables.
#[derive(Debug)]
pub(crate) struct Remote {
    /// The source's name, answer bound and pushdown switch.
    pub(crate) settings: SourceSettings,
    /// A bounded pool of sessions to the server, created lazily.
    pub(crate) pool: Pool,
    pub(crate) connect_timeout: Duration,
    /// The TLS connector of the source's sessions, also for their cancel requests.
    pub(crate) tls: tls::Connector,
    /// The fewest pages a `ctid` range partition of a parallel scan reads.
    pub(crate) partition_pages: u64,
    /// Held while a parallel scan takes its sessions, so that two parallel scans never each
    /// hold part of the pool while waiting for the rest.
    pub(crate) parallel_sessions: tokio::sync::Mutex<()>,
}

/// Half of `pool_size`, rounded up: see [`Remote::scan_share`].
fn scan_share(pool_size: usize) -> usize {
    pool_size.div_ceil(2).max(1)
}

/// The most sessions one source may open: far above what a PostgreSQL server allows by
/// default (`max_connections = 100`).
pub(crate) const MAX_POOL_SIZE: usize = 1000;

impl Remote {
    /// The most sessions the source's pool holds.
    pub(crate) fn pool_size(&self) -> usize {
        self.pool.status().max_size
    }

    /// The most sessions one parallel scan takes: half the pool (rounded up), so that a scan
    /// of a large table leaves sessions for the source's other queries.
    pub(crate) fn scan_share(&self) -> usize {
        scan_share(self.pool_size())
    }

    /// A session from the pool; it returns to the pool when dropped.
    pub(crate) async fn connect(&self) -> Result<Object, ConnectorError> {
        self.pool.get().await.map_err(|error| match error {
            PoolError::Timeout(TimeoutType::Wait) => ConnectorError::Unavailable(format!(
                "all {} connections busy for {}s",
                self.pool.status().max_size,
                POOL_WAIT.as_secs()
            )),
            PoolError::Timeout(_) => ConnectorError::Unavailable(format!(
                "no answer within {}s",
                self.connect_timeout.as_secs()
            )),
            PoolError::Backend(error) => ConnectorError::Unavailable(with_causes(&error)),
            other => ConnectorError::Unavailable(other.to_string()),
        })
    }
}

/// An error with its chain of causes: tokio-postgres says "error connecting to server" and
/// keeps the useful part ("connection refused") in its source.
fn with_causes(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(inner) = cause {
        let inner_text = inner.to_string();
        if !text.contains(&inner_text) {
            text.push_str(": ");
            text.push_str(&inner_text);
        }
        cause = inner.source();
    }
    text
}

/// A failed query: the server is gone (unavailable) or refused it (an error of the data).
pub(crate) fn query_error(error: &tokio_postgres::Error) -> ConnectorError {
    let Some(db) = error.as_db_error() else {
        // No answer from the server: the connection broke or could not be made.
        return ConnectorError::Unavailable(with_causes(error));
    };
    let message = db.message().to_owned();
    match db.code().code() {
        // Class 08: connection exceptions, as the server itself reports them.
        code if code.starts_with("08") => ConnectorError::Unavailable(message),
        // Class 57: an administrator's command or a shutdown ended the session, or the
        // source's `statement_timeout_secs` (57014) canceled the statement.
        "57014" => ConnectorError::TimedOut(message),
        code if code.starts_with("57") => ConnectorError::Interrupted(message),
        // Class 53: too many connections, out of memory or disk on the server.
        code if code.starts_with("53") => ConnectorError::Overloaded(message),
        _ if error.is_closed() => ConnectorError::Unavailable(message),
        _ => ConnectorError::InvalidData(message),
    }
}

#[cfg(test)]
mod tests {
    use super::scan_share;

    #[test]
    fn one_parallel_scan_leaves_sessions_for_other_queries() {
        let shares: Vec<(usize, usize)> = [1, 2, 3, 4, 8, 1000]
            .into_iter()
            .map(|pool| (pool, scan_share(pool)))
            .collect();
        assert_eq!(
            shares,
            [(1, 1), (2, 1), (3, 2), (4, 2), (8, 4), (1000, 500)]
        );
    }
}
