//! The options of a `kind = "postgres"` source in catalog.toml.

use serde::Deserialize;

/// `[sources.NAME]` with `kind = "postgres"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PostgresOptions {
    /// A connection URL (`postgres://user:${PASSWORD}@host:5432/db`).
    pub url: String,
    /// The schemas to expose; the first is the source's default schema (default `["public"]`).
    #[serde(default = "default_schemas")]
    pub schemas: Vec<String>,
    /// How long to wait for the server to accept a connection (default 5).
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: u64,
    /// Whether filters, sorts, limits, aggregates, joins and unions are run by PostgreSQL where
    /// that is exact (default true). Off, polygate reads the columns a query needs and does
    /// the rest itself: slower, for comparing and diagnosing.
    #[serde(default = "default_true")]
    pub pushdown: bool,
    /// At most this many sessions to the server at once (default 8); queries beyond wait.
    #[serde(default = "default_pool_size")]
    pub pool_size: usize,
}

fn default_pool_size() -> usize {
    8
}

fn default_true() -> bool {
    true
}

fn default_schemas() -> Vec<String> {
    vec!["public".to_owned()]
}

fn default_connect_timeout() -> u64 {
    5
}
