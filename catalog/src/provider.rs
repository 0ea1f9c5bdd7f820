//! The catalog as DataFusion sees it: a `CatalogProvider` whose schemas are source namespaces.

use std::sync::Arc;

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, SchemaProvider, TableProvider};
use datafusion::error::DataFusionError;
use polygate_connector_core::scan::answer_within;
use polygate_connector_core::{ConnectorError, Namespace, SourceError, TableRef};

use crate::live::{Catalog, Source, SourceState};
use crate::naming;

/// Resolves schemas against the catalog in force at the time of each lookup.
#[derive(Debug)]
pub(crate) struct PolygateCatalogProvider {
    catalog: Arc<Catalog>,
}

impl PolygateCatalogProvider {
    pub(crate) fn new(catalog: Arc<Catalog>) -> Self {
        Self { catalog }
    }
}

impl CatalogProvider for PolygateCatalogProvider {
    fn schema_names(&self) -> Vec<String> {
        let snapshot = self.catalog.snapshot();
        snapshot
            .sources
            .values()
            .flat_map(|source| match source.state() {
                SourceState::Ready(namespaces) => {
                    naming::schema_names(source.name(), namespaces.iter().map(|n| n.name.as_str()))
                }
                _ => vec![source.name().to_owned()],
            })
            .collect()
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        let snapshot = self.catalog.snapshot();
        snapshot.sources.values().find_map(|source| {
            let state = source.state();
            let index = match &state {
                SourceState::Ready(namespaces) => naming::namespace_index(
                    source.name(),
                    name,
                    namespaces.iter().map(|n| n.name.as_str()),
                )?,
                // Until the store answers, only the default schema is known; looking a table up
                // in it explains why it cannot be read.
                _ if name == source.name() => 0,
                _ => return None,
            };
            Some(Arc::new(SourceSchema {
                source: Arc::clone(source),
                namespace_index: index,
            }) as Arc<dyn SchemaProvider>)
        })
    }
}

/// One namespace of one source.
#[derive(Debug)]
struct SourceSchema {
    source: Arc<Source>,
    namespace_index: usize,
}

impl SourceSchema {
    /// The source's namespaces (this schema's is at `namespace_index`, if the source still
    /// has it), or why they are not known.
    fn namespaces(&self) -> Result<Arc<Vec<Namespace>>, DataFusionError> {
        match self.source.state() {
            SourceState::Ready(namespaces) => Ok(namespaces),
            SourceState::Unavailable(reason) => Err(SourceError::into_datafusion(
                self.source.name(),
                ConnectorError::Unavailable(reason),
            )),
            SourceState::Connecting => Err(SourceError::into_datafusion(
                self.source.name(),
                ConnectorError::Unavailable("still connecting".to_owned()),
            )),
        }
    }
}

#[async_trait]
impl SchemaProvider for SourceSchema {
    fn table_names(&self) -> Vec<String> {
        self.namespaces()
            .ok()
            .and_then(|n| n.get(self.namespace_index).map(|ns| ns.tables.clone()))
            .unwrap_or_default()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>, DataFusionError> {
        let namespaces = self.namespaces()?;
        let Some(namespace) = namespaces
            .get(self.namespace_index)
            .filter(|ns| ns.tables.iter().any(|t| t == name))
        else {
            return Ok(None);
        };
        // Planning waits on the store no longer than a scan would: a stalled store fails the
        // statement that names it, not every statement after it.
        let table = TableRef::new(namespace.name.clone(), name);
        answer_within(
            self.source.config.response_timeout,
            self.source.connector().table_provider(&table),
        )
        .await
        .map(Some)
        .map_err(|e| SourceError::into_datafusion(self.source.name(), e))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.namespaces().is_ok_and(|n| {
            n.get(self.namespace_index)
                .is_some_and(|ns| ns.tables.iter().any(|t| t == name))
        })
    }
}
