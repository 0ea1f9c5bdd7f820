//! The options of a `kind = "mongodb"` source in catalog.toml.

use std::collections::BTreeMap;

use serde::Deserialize;

/// `[sources.NAME]` with `kind = "mongodb"`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct MongoOptions {
    /// A connection string (`mongodb://user:${PASSWORD}@host:27017/?tls=true` or
    /// `mongodb+srv://...`); TLS and authentication options go in it.
    pub url: String,
    /// The database to expose, when there is one.
    #[serde(default)]
    pub database: Option<String>,
    /// The databases to expose; the first is the source's default. Either this or `database`.
    #[serde(default)]
    pub databases: Vec<String>,
    /// Only collections whose names match one of these patterns (`*` any run of characters,
    /// `?` one character) are exposed (default: every collection).
    #[serde(default)]
    pub include: Vec<String>,
    /// Collections whose names match one of these patterns are not exposed, even if included.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// How many documents (`$sample`) a collection's schema is inferred from (default 500).
    #[serde(default = "default_sample_size")]
    pub sample_size: u32,
    /// Whether filters, sorts, limits and aggregates are run by MongoDB where that is exact
    /// (default true). Off, polygate reads the fields a query needs and does the rest itself.
    #[serde(default = "default_true")]
    pub pushdown: bool,
    /// A collection of at least twice this many documents is scanned in parallel `_id` ranges
    /// of about this many documents, up to the session's target partitions (default 100000).
    #[serde(default = "default_partition_documents")]
    pub partition_documents: u64,
    /// Documents per batch the server returns (default 10000).
    #[serde(default = "default_batch_size")]
    pub batch_size: u32,
    /// How long to wait for a server to answer when connecting (default 5).
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: u64,
    /// Per-collection schema declarations, by collection name.
    #[serde(default)]
    pub collections: BTreeMap<String, CollectionOptions>,
}

/// `[sources.NAME.collections.COLLECTION]`: what the catalog declares about one collection.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CollectionOptions {
    /// Column types by field path (`total = "decimal(12,2)"`, `"address.city" = "text"`,
    /// `payload = "json"`, `tags = "list<text>"`). A declaration always wins over inference.
    #[serde(default)]
    pub columns: BTreeMap<String, String>,
    /// Only the declared columns (and `_id`) are exposed: no sampling (default false).
    #[serde(default)]
    pub declared_only: bool,
}

fn default_sample_size() -> u32 {
    500
}

fn default_true() -> bool {
    true
}

fn default_partition_documents() -> u64 {
    100_000
}

fn default_batch_size() -> u32 {
    10_000
}

fn default_connect_timeout() -> u64 {
    5
}
