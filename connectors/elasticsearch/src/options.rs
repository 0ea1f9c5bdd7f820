//! The options of a `kind = "elasticsearch"` source in catalog.toml.

use std::collections::BTreeMap;

use serde::Deserialize;

/// `[sources.NAME]` with `kind = "elasticsearch"`: an Elasticsearch 7.10+/8.x or OpenSearch
/// 2.x/3.x cluster.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElasticOptions {
    /// The cluster's address (`https://es.example.com:9200`), when there is one.
    #[serde(default)]
    pub url: Option<String>,
    /// Several nodes of the cluster: requests go to the first that answers. Either this or
    /// `url`.
    #[serde(default)]
    pub urls: Vec<String>,
    /// Basic authentication: the user name (with `password`).
    #[serde(default)]
    pub username: Option<String>,
    /// Basic authentication: the password, usually `${VAR}`.
    #[serde(default)]
    pub password: Option<String>,
    /// An API key (`id:key` or the base64 form the cluster returned), sent as
    /// `Authorization: ApiKey`; usually `${VAR}`.
    #[serde(default)]
    pub api_key: Option<String>,
    /// A PEM file of certificate authorities to trust besides the system's, relative to
    /// catalog.toml.
    #[serde(default)]
    pub ca_file: Option<String>,
    /// Only indices and aliases whose names match one of these patterns (`*` any run of
    /// characters, `?` one character) are exposed (default: every index and alias not
    /// starting with a dot).
    #[serde(default)]
    pub include: Vec<String>,
    /// Indices and aliases whose names match one of these patterns are not exposed.
    #[serde(default)]
    pub exclude: Vec<String>,
    /// How many documents are read to find fields holding arrays (default 200; 0 reads
    /// none: only `arrays` declarations make lists).
    #[serde(default = "default_sample_size")]
    pub sample_size: u32,
    /// Whether filters, sorts, limits, searches and aggregates are run by the cluster where
    /// that is exact (default true).
    #[serde(default = "default_true")]
    pub pushdown: bool,
    /// How scans page: `auto` (a point in time with `search_after` where the cluster can
    /// sort by `_shard_doc`, Elasticsearch 7.12+ and OpenSearch 3.3+, else a scroll),
    /// `point_in_time` or `scroll` (default auto).
    #[serde(default = "default_paging")]
    pub paging: String,
    /// Hits per request (default 5000, at most 10000).
    #[serde(default = "default_page_size")]
    pub page_size: u32,
    /// An index of at least twice this many documents is read in parallel point-in-time
    /// slices of about this many documents, up to the session's target partitions (default
    /// 100000).
    #[serde(default = "default_partition_documents")]
    pub partition_documents: u64,
    /// How long to wait for a node to accept a connection (default 5).
    #[serde(default = "default_connect_timeout")]
    pub connect_timeout_secs: u64,
    /// How long one request may take (default 120).
    #[serde(default = "default_request_timeout")]
    pub request_timeout_secs: u64,
    /// Per-index declarations, by index or alias name.
    #[serde(default)]
    pub indices: BTreeMap<String, IndexOptions>,
}

/// `[sources.NAME.indices.INDEX]`: what the catalog declares about one index.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct IndexOptions {
    /// Fields (dotted paths) that hold arrays: read as lists whatever the sample saw.
    #[serde(default)]
    pub arrays: Vec<String>,
    /// Fields (dotted paths) read as their JSON text, whatever their mapping.
    #[serde(default)]
    pub json: Vec<String>,
    /// Date formats by field path, overriding the mapping's `format`
    /// (`created = "dd/MM/yyyy HH:mm||epoch_millis"`).
    #[serde(default)]
    pub date_formats: BTreeMap<String, String>,
}

fn default_paging() -> String {
    "auto".to_owned()
}

fn default_sample_size() -> u32 {
    200
}

fn default_true() -> bool {
    true
}

fn default_page_size() -> u32 {
    5_000
}

fn default_partition_documents() -> u64 {
    100_000
}

fn default_connect_timeout() -> u64 {
    5
}

fn default_request_timeout() -> u64 {
    120
}
