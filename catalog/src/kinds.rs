//! The connector kinds this build of polygate serves: the one file that names concrete
//! connector crates. Adding a kind is one line here (and its crate in `Cargo.toml`); the rest of
//! the catalog, the SQL functions and the sub-plan rule find it through [`KINDS`].

use std::sync::Arc;

use datafusion::logical_expr::ScalarUDF;
use polygate_connector_core::subplan::SourceFinder;
use polygate_connector_core::{Connector, ConnectorFactory, SourceContext};
use polygate_connector_elasticsearch::ElasticConnectorFactory;
use polygate_connector_files::FilesConnectorFactory;
use polygate_connector_mongodb::MongoConnectorFactory;
use polygate_connector_postgres::PostgresConnectorFactory;
use toml::Spanned;
use toml::de::DeValue;

use crate::config::document::Document;
use crate::config::{ConfigError, create};

/// Every kind, in the order error messages list them.
pub(crate) const KINDS: &[Kind] = &[
    Kind::of::<FilesConnectorFactory>(),
    Kind::of::<PostgresConnectorFactory>(),
    Kind::of::<MongoConnectorFactory>(),
    Kind::of::<ElasticConnectorFactory>(),
];

/// Builds a connector from the options of the source table named by its key.
pub(crate) type Create = fn(
    &Document,
    &str,
    &SourceContext,
    &Spanned<DeValue<'_>>,
) -> Result<Arc<dyn Connector>, ConfigError>;

/// A kind of source, as values: what catalog.toml calls it and what it contributes.
pub(crate) struct Kind {
    /// The `kind` of a `[sources.NAME]` table.
    pub(crate) name: &'static str,
    /// Builds a connector from a source table's options.
    pub(crate) create: Create,
    /// How the sub-plan rule recognises the kind's tables.
    pub(crate) source_finder: fn() -> Option<SourceFinder>,
    /// The SQL functions the kind adds to every session.
    pub(crate) functions: fn() -> Vec<Arc<ScalarUDF>>,
}

impl Kind {
    const fn of<F: ConnectorFactory>() -> Self {
        Self {
            name: F::KIND,
            create: create::<F>,
            source_finder: F::source_finder,
            functions: F::functions,
        }
    }
}

/// The kind catalog.toml calls `name`.
pub(crate) fn named(name: &str) -> Option<&'static Kind> {
    KINDS.iter().find(|kind| kind.name == name)
}
