//! The [`Connector`] trait and the types it speaks in.

use std::fmt::Debug;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::TableProvider;
use datafusion::logical_expr::ScalarUDF;
use serde::de::DeserializeOwned;

use crate::subplan::SourceFinder;
use crate::{ConnectorError, OptionError};

/// One remote namespace (a PostgreSQL schema, a Mongo database, a directory) and the relations
/// it holds, as a connector discovered them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Namespace {
    /// The namespace's name in the store, exactly as the store spells it.
    pub name: String,
    /// The relations of the namespace, exactly as the store spells them.
    pub tables: Vec<String>,
}

/// A relation of a store: its namespace and its name, as the store spells them.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TableRef {
    /// The namespace the relation lives in.
    pub namespace: String,
    /// The relation's own name.
    pub name: String,
}

impl TableRef {
    /// The relation `name` of `namespace`.
    pub fn new(namespace: impl Into<String>, name: impl Into<String>) -> Self {
        Self {
            namespace: namespace.into(),
            name: name.into(),
        }
    }
}

impl std::fmt::Display for TableRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}", self.namespace, self.name)
    }
}

/// A store, seen from polygate: something that lists relations and scans them.
///
/// A connector is created once per source configuration and shared by every session; it must be
/// cheap to call concurrently. It may not be able to reach its store when it is created: the
/// catalog calls [`Connector::discover`] to find out, and again later to retry.
#[async_trait]
pub trait Connector: Debug + Send + Sync {
    /// The `kind` of catalog.toml this connector serves (`files`, `postgres`, ...).
    fn kind(&self) -> &'static str;

    /// Reaches the store and lists its namespaces and their relations.
    ///
    /// The first namespace is the source's default: its relations are addressed by their short
    /// names (`source.table`). A connector whose store is unreachable returns
    /// [`ConnectorError::Unavailable`].
    async fn discover(&self) -> Result<Vec<Namespace>, ConnectorError>;

    /// Builds the DataFusion table provider that scans `table`.
    ///
    /// Its `schema()` is the relation's Arrow schema as polygate presents it.
    async fn table_provider(
        &self,
        table: &TableRef,
    ) -> Result<Arc<dyn TableProvider>, ConnectorError>;

    /// Describes `table` as an Arrow schema.
    async fn describe(&self, table: &TableRef) -> Result<SchemaRef, ConnectorError> {
        Ok(self.table_provider(table).await?.schema())
    }
}

/// What a connector may know of the catalog that declares it.
#[derive(Debug, Clone)]
pub struct SourceContext {
    /// The source's name: its key in `[sources.NAME]`.
    pub name: String,
    /// The directory of the catalog file, against which relative paths resolve.
    pub base_dir: PathBuf,
    /// The longest polygate waits for the store to answer anything (`response_timeout_secs`,
    /// a key every kind accepts): a discovery, a schema lookup, the first rows of a scan and
    /// each next batch. A store that stops answering fails the statement instead of holding it.
    pub response_timeout: Duration,
}

impl SourceContext {
    /// `response_timeout_secs` when catalog.toml does not set it: long enough for a store
    /// running a pushed-down aggregate over a large table, short enough that a store which
    /// stopped (a frozen process, a dropped route) does not hold statements for ever.
    pub const DEFAULT_RESPONSE_TIMEOUT: Duration = Duration::from_secs(300);

    /// The context of source `name` declared in a catalog in `base_dir`, with the default
    /// response timeout.
    pub fn new(name: impl Into<String>, base_dir: impl Into<PathBuf>) -> Self {
        Self {
            name: name.into(),
            base_dir: base_dir.into(),
            response_timeout: Self::DEFAULT_RESPONSE_TIMEOUT,
        }
    }
}

/// What every part of a source's connector knows of the source: the settings its scans, its
/// sub-plans and its errors share.
#[derive(Debug, Clone)]
pub struct SourceSettings {
    /// The source's name (its key in `[sources.NAME]`), for EXPLAIN and errors.
    pub name: String,
    /// The longest the store may take to answer (`response_timeout_secs`).
    pub response_timeout: Duration,
    /// Whether the store runs the work it computes exactly (`pushdown`); when false it only
    /// reads columns, and DataFusion computes everything else.
    pub pushdown: bool,
}

impl SourceSettings {
    /// The settings of the source `context` describes, with its `pushdown` option.
    pub fn new(context: &SourceContext, pushdown: bool) -> Self {
        Self {
            name: context.name.clone(),
            response_timeout: context.response_timeout,
            pushdown,
        }
    }
}

/// Builds connectors of one kind from their catalog.toml options.
pub trait ConnectorFactory: Send + Sync {
    /// The options of a `[sources.NAME]` table of this kind, without the `kind` key.
    ///
    /// The catalog deserializes them; a factory should use `#[serde(deny_unknown_fields)]` so
    /// that a misspelt key is an error, not a silently ignored setting.
    type Options: DeserializeOwned;

    /// The value of `kind` this factory serves.
    const KIND: &'static str;

    /// Validates `options` and creates the connector. Does no IO that can fail on an
    /// unreachable store: reaching the store is [`Connector::discover`]'s job.
    fn create(
        context: &SourceContext,
        options: Self::Options,
    ) -> Result<Arc<dyn Connector>, OptionError>;

    /// How the [`SubPlanRule`](crate::subplan::SubPlanRule) recognises this kind's tables,
    /// for a kind whose store can run whole sub-plans; `None` for the others.
    fn source_finder() -> Option<SourceFinder> {
        None
    }

    /// SQL functions this kind adds to every session (for example full-text search), which
    /// its scans may run in the store.
    fn functions() -> Vec<Arc<ScalarUDF>> {
        Vec::new()
    }
}
