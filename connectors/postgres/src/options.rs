//! The options of a `kind = "postgres"` source in catalog.toml.

use serde::Deserialize;

use crate::tls::TlsMode;

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
    /// A table of at least twice this many pages (8 kB each) is scanned in parallel `ctid`
    /// ranges of at least this many pages, up to the session's target partitions, on
    /// PostgreSQL 14 and later (default 4096: 32 MB).
    #[serde(default = "default_partition_pages")]
    pub partition_pages: u64,
    /// TLS to the server: `disable`, `prefer` (default), `require` or `verify-full`.
    #[serde(default)]
    pub tls: TlsMode,
    /// The CA certificate (PEM) a `verify-full` server's certificate must be signed by,
    /// relative to catalog.toml's directory.
    #[serde(default)]
    pub tls_ca_file: Option<std::path::PathBuf>,
    /// How unconstrained `numeric` columns read: `"text"` (default: PostgreSQL's text form,
    /// every value kept) or `"decimal(P,S)"` (Decimal128: exact, and an error for a value
    /// with more than S decimals or P digits, never a rounded one).
    #[serde(default = "default_numeric")]
    pub unconstrained_numeric: String,
    /// The server cancels a remote statement running longer than this (default 0: no limit).
    #[serde(default)]
    pub statement_timeout_secs: u64,
    /// Only tables whose names match one of these patterns (`*` any run of characters, `?`
    /// one character) are exposed (default: every table).
    #[serde(default)]
    pub include: Vec<String>,
    /// Tables whose names match one of these patterns are not exposed, even if included.
    #[serde(default)]
    pub exclude: Vec<String>,
}

fn default_numeric() -> String {
    "text".to_owned()
}

/// The precision and scale `unconstrained_numeric` asks for: `None` for text.
pub(crate) fn numeric_mapping(value: &str) -> Result<Option<(u8, i8)>, String> {
    if value == "text" {
        return Ok(None);
    }
    let invalid = || {
        format!(
            "expected \"text\" or \"decimal(P,S)\" with 1 <= P <= 38 and 0 <= S <= P, got {value:?}"
        )
    };
    let inner = value
        .strip_prefix("decimal(")
        .and_then(|v| v.strip_suffix(')'))
        .ok_or_else(invalid)?;
    let (precision, scale) = inner.split_once(',').ok_or_else(invalid)?;
    let precision: u8 = precision.trim().parse().map_err(|_| invalid())?;
    let scale: i8 = scale.trim().parse().map_err(|_| invalid())?;
    if !(1..=38).contains(&precision) || scale < 0 || scale as u8 > precision {
        return Err(invalid());
    }
    Ok(Some((precision, scale)))
}

fn default_partition_pages() -> u64 {
    4096
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

#[cfg(test)]
mod tests {
    #[test]
    fn numeric_mappings_parse() {
        use super::numeric_mapping;
        assert_eq!(numeric_mapping("text"), Ok(None));
        assert_eq!(numeric_mapping("decimal(38,10)"), Ok(Some((38, 10))));
        assert_eq!(numeric_mapping("decimal(5, 0)"), Ok(Some((5, 0))));
        for bad in [
            "decimal(39,2)",
            "decimal(4,5)",
            "decimal(0,0)",
            "float",
            "decimal(10)",
        ] {
            assert!(numeric_mapping(bad).is_err(), "{bad}");
        }
    }
}
