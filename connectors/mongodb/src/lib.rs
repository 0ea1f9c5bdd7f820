//! The `mongodb` connector: the collections of MongoDB databases as relations.
//!
//! A collection's columns are inferred from a `$sample` of its documents and widened by
//! documented rules ([`types`]), with catalog.toml's declarations winning over inference.
//! Every read is an aggregation pipeline whose raw BSON batches are decoded straight into
//! Arrow builders. Filters, sorts, limits and aggregates are run by MongoDB only where its
//! semantics equal SQL's; values travel as BSON values, never as text, and no pipeline holds
//! JavaScript.

mod decimal;
mod decode;
mod filter;
mod options;
mod order;
mod query;
mod remote;
mod scan;
mod schema;
mod subplan;
mod types;

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use datafusion::catalog::TableProvider;
use mongodb::bson::{Document, doc};
use polygate_connector_core::estimates::{ESTIMATE_MAX_AGE, RowEstimates};
use polygate_connector_core::remote_scan::RemoteTable;
use polygate_connector_core::subplan::{SourceFinder, SubPlanSource};
use polygate_connector_core::{
    Connector, ConnectorError, ConnectorFactory, NameFilter, Namespace, OptionError, SourceContext,
    SourceSettings, TableRef,
};

pub use options::{CollectionOptions, MongoOptions};

use remote::{Remote, client_options, driver_error};
use scan::MongoTable;
use schema::{CollectionSchema, Inference};
use types::FieldType;

/// Builds [`MongoConnector`]s from `kind = "mongodb"` sources.
pub struct MongoConnectorFactory;

impl ConnectorFactory for MongoConnectorFactory {
    type Options = MongoOptions;
    const KIND: &'static str = "mongodb";

    fn create(
        context: &SourceContext,
        options: MongoOptions,
    ) -> Result<Arc<dyn Connector>, OptionError> {
        Ok(Arc::new(MongoConnector::new(context, options)?))
    }

    fn source_finder() -> Option<SourceFinder> {
        Some(|provider| {
            let table = provider.downcast_ref::<RemoteTable<MongoTable>>()?;
            Some(Arc::clone(table.relation().remote()) as Arc<dyn SubPlanSource>)
        })
    }
}

/// What a connector declares about one collection.
#[derive(Debug, Clone, Default)]
struct Declared {
    columns: BTreeMap<String, FieldType>,
    declared_only: bool,
}

/// Reads the collections of one or more MongoDB databases.
#[derive(Debug)]
pub struct MongoConnector {
    remote: Arc<Remote>,
    databases: Vec<String>,
    names: NameFilter,
    sample_size: u32,
    declared: HashMap<String, Declared>,
    /// Inferred schemas, until the next discovery (a catalog reload) refreshes them.
    schemas: Mutex<HashMap<TableRef, Arc<CollectionSchema>>>,
    /// `estimatedDocumentCount`s, refreshed in the background once a minute old.
    estimates: RowEstimates,
}

impl MongoConnector {
    /// Validates `options` for the source described by `context`.
    pub fn new(context: &SourceContext, options: MongoOptions) -> Result<Self, OptionError> {
        let mut databases = options.databases;
        match (options.database, databases.is_empty()) {
            (Some(database), true) => databases.push(database),
            (Some(_), false) => {
                return Err(OptionError::new(
                    "database",
                    "give either database or databases, not both",
                ));
            }
            (None, true) => {
                return Err(OptionError::new(
                    "databases",
                    "must name at least one database (or set database)",
                ));
            }
            (None, false) => {}
        }
        if !options.url.starts_with("mongodb://") && !options.url.starts_with("mongodb+srv://") {
            return Err(OptionError::new(
                "url",
                "must be a mongodb:// or mongodb+srv:// connection string",
            ));
        }
        if options.sample_size == 0 {
            return Err(OptionError::new("sample_size", "must be at least 1"));
        }
        if options.partition_documents == 0 {
            return Err(OptionError::new(
                "partition_documents",
                "must be at least 1",
            ));
        }
        if options.batch_size == 0 {
            return Err(OptionError::new("batch_size", "must be at least 1"));
        }
        let mut declared = HashMap::new();
        for (collection, settings) in options.collections {
            let mut columns = BTreeMap::new();
            for (path, text) in settings.columns {
                let field = FieldType::parse(&text).map_err(|e| {
                    OptionError::new(format!("collections.{collection}.columns.{path}"), e)
                })?;
                if path.is_empty() || path.split('.').any(str::is_empty) {
                    return Err(OptionError::new(
                        format!("collections.{collection}.columns.{path}"),
                        "not a field path",
                    ));
                }
                columns.insert(path, field);
            }
            declared.insert(
                collection,
                Declared {
                    columns,
                    declared_only: settings.declared_only,
                },
            );
        }
        check_url(&options.url)?;
        Ok(Self {
            remote: Arc::new(Remote {
                settings: SourceSettings::new(context, options.pushdown),
                url: options.url,
                connect_timeout: OptionError::seconds(
                    "connect_timeout_secs",
                    options.connect_timeout_secs,
                    1..=OptionError::MAX_CONNECT_SECS,
                )?,
                client: tokio::sync::OnceCell::new(),
                partition_documents: options.partition_documents,
                batch_size: options.batch_size,
            }),
            databases,
            names: NameFilter::new(options.include, options.exclude),
            sample_size: options.sample_size,
            declared,
            schemas: Mutex::new(HashMap::new()),
            estimates: RowEstimates::new(),
        })
    }

    /// The schema of `collection`: cached, or inferred from a sample now.
    async fn schema(&self, collection: &TableRef) -> Result<Arc<CollectionSchema>, ConnectorError> {
        if let Some(schema) = self.cached(collection) {
            return Ok(schema);
        }
        let declared = self
            .declared
            .get(&collection.name)
            .cloned()
            .unwrap_or_default();
        let mut inference = Inference::default();
        if !declared.declared_only {
            let mut cursor = self
                .remote
                .database(&collection.namespace)
                .await?
                .collection::<Document>(&collection.name)
                .aggregate([doc! { "$sample": { "size": i64::from(self.sample_size) } }])
                .await
                .map_err(|e| driver_error(&e))?;
            while cursor.advance().await.map_err(|e| driver_error(&e))? {
                inference.add(cursor.current());
            }
        }
        for path in Inference::conflicts(&inference.fields) {
            if !declared.columns.contains_key(&path) {
                tracing::warn!(
                    source = %self.remote.settings.name,
                    "field {path} of {collection} holds values of conflicting types: read as \
                     Extended JSON text; declare its type in catalog.toml to read it otherwise"
                );
            }
        }
        let schema = Arc::new(inference.into_schema(&declared.columns, declared.declared_only));
        if let Ok(mut cache) = self.schemas.lock() {
            cache.insert(collection.clone(), Arc::clone(&schema));
        }
        Ok(schema)
    }

    fn cached(&self, collection: &TableRef) -> Option<Arc<CollectionSchema>> {
        self.schemas.lock().ok()?.get(collection).cloned()
    }
}

/// Checks a `mongodb://` string now, without IO; `mongodb+srv://` strings need DNS and are
/// checked when first used.
fn check_url(url: &str) -> Result<(), OptionError> {
    if url.starts_with("mongodb+srv://") {
        return Ok(());
    }
    let url_owned = url.to_owned();
    std::thread::spawn(move || {
        tokio::runtime::Builder::new_current_thread()
            .build()
            .map_err(|e| e.to_string())
            .and_then(|rt| {
                rt.block_on(client_options(&url_owned, Duration::from_secs(1)))
                    .map(|_| ())
            })
    })
    .join()
    .map_err(|_| OptionError::new("url", "could not be parsed"))?
    .map_err(|e| OptionError::new("url", format!("not a MongoDB connection string: {e}")))
}

#[async_trait]
impl Connector for MongoConnector {
    fn kind(&self) -> &'static str {
        MongoConnectorFactory::KIND
    }

    async fn discover(&self) -> Result<Vec<Namespace>, ConnectorError> {
        // A discovery (start-up, reload, retry) re-samples and re-counts every collection on
        // next use.
        if let Ok(mut cache) = self.schemas.lock() {
            cache.clear();
        }
        self.estimates.clear();
        let mut namespaces = Vec::new();
        for database in &self.databases {
            let mut tables: Vec<String> = self
                .remote
                .database(database)
                .await?
                .list_collection_names()
                .await
                .map_err(|e| driver_error(&e))?
                .into_iter()
                .filter(|name| !name.starts_with("system.") && self.names.exposes(name))
                .collect();
            tables.sort();
            namespaces.push(Namespace {
                name: database.clone(),
                tables,
            });
        }
        Ok(namespaces)
    }

    async fn table_provider(
        &self,
        table: &TableRef,
    ) -> Result<Arc<dyn TableProvider>, ConnectorError> {
        if !self.names.exposes(&table.name) {
            return Err(ConnectorError::NotFound(format!(
                "{}.{}",
                self.remote.settings.name, table
            )));
        }
        let schema = self.schema(table).await?;
        let collection = self
            .remote
            .database(&table.namespace)
            .await?
            .collection::<Document>(&table.name);
        let estimate = self
            .estimates
            .get(table, ESTIMATE_MAX_AGE, || async move {
                collection.estimated_document_count().await.ok()
            })
            .await;
        Ok(Arc::new(RemoteTable::new(MongoTable::new(
            Arc::clone(&self.remote),
            table.clone(),
            schema,
            estimate,
        ))))
    }
}
