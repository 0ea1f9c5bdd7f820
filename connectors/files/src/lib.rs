//! The `files` connector: CSV, Parquet and NDJSON files as relations.
//!
//! A `files` source names a root directory. Every data file directly under it is a relation
//! named after the file's stem (`orders.csv` is `orders`), and so is every subdirectory whose
//! files share one format (a partitioned dataset). `[sources.NAME.tables.T]` declares a relation
//! explicitly, for a path outside that pattern or a format the extension does not tell.
//! Scans go through DataFusion's listing tables, which stream files in parallel partitions and
//! push projections, limits and (for Parquet) filters into the reader.

mod options;

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::catalog::TableProvider;
use datafusion::datasource::file_format::FileFormat;
use datafusion::datasource::file_format::csv::CsvFormat;
use datafusion::datasource::file_format::json::JsonFormat;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::{
    ListingOptions, ListingTable, ListingTableConfig, ListingTableUrl,
};
use datafusion::prelude::SessionContext;
use polygate_connector_core::{
    Connector, ConnectorError, ConnectorFactory, Namespace, OptionError, SourceContext, TableRef,
};

pub use options::{FileFormatName, FilesOptions, TableOptions};

/// The one namespace a `files` source has: its root directory.
pub const NAMESPACE: &str = "files";

/// Builds [`FilesConnector`]s from `kind = "files"` sources.
pub struct FilesConnectorFactory;

impl ConnectorFactory for FilesConnectorFactory {
    type Options = FilesOptions;
    const KIND: &'static str = "files";

    fn create(
        context: &SourceContext,
        options: FilesOptions,
    ) -> Result<Arc<dyn Connector>, OptionError> {
        Ok(Arc::new(FilesConnector::new(context, options)?))
    }
}

/// A relation backed by one file or one directory of files of the same format.
#[derive(Debug, Clone)]
struct FileTable {
    path: PathBuf,
    format: FileFormatName,
    csv: CsvSettings,
}

#[derive(Debug, Clone, Copy)]
struct CsvSettings {
    has_header: bool,
    delimiter: u8,
}

/// Serves the files under one root directory.
#[derive(Debug)]
pub struct FilesConnector {
    source: String,
    root: PathBuf,
    declared: BTreeMap<String, FileTable>,
    csv: CsvSettings,
    /// The relations found by the last discovery, by name.
    discovered: Mutex<HashMap<String, FileTable>>,
    /// Listing tables already built; schema inference reads the files, so it is done once per
    /// discovery rather than once per query.
    providers: Mutex<HashMap<String, Arc<dyn TableProvider>>>,
}

impl FilesConnector {
    /// Validates `options` for the source described by `context`.
    pub fn new(context: &SourceContext, options: FilesOptions) -> Result<Self, OptionError> {
        let root = context.base_dir.join(&options.root);
        let csv = CsvSettings {
            has_header: options.has_header,
            delimiter: single_byte("delimiter", &options.delimiter)?,
        };
        let mut declared = BTreeMap::new();
        for (name, table) in options.tables {
            let key = |k: &str| format!("tables.{name}.{k}");
            let path = root.join(&table.path);
            let format = match table.format {
                Some(format) => format,
                None => FileFormatName::from_path(&path).ok_or_else(|| {
                    OptionError::new(
                        key("format"),
                        format!(
                            "cannot tell the format of {} from its extension: set format to csv, parquet or ndjson",
                            table.path
                        ),
                    )
                })?,
            };
            let csv = CsvSettings {
                has_header: table.has_header.unwrap_or(csv.has_header),
                delimiter: match &table.delimiter {
                    Some(d) => single_byte(&key("delimiter"), d)?,
                    None => csv.delimiter,
                },
            };
            declared.insert(name, FileTable { path, format, csv });
        }
        Ok(Self {
            source: context.name.clone(),
            root,
            declared,
            csv,
            discovered: Mutex::default(),
            providers: Mutex::default(),
        })
    }

    /// Lists the relations under the root directory, declared ones first.
    fn scan_root(&self) -> Result<HashMap<String, FileTable>, ConnectorError> {
        let entries = std::fs::read_dir(&self.root).map_err(|e| {
            ConnectorError::Unavailable(format!(
                "cannot read directory {}: {e}",
                self.root.display()
            ))
        })?;
        let mut found: BTreeMap<String, Vec<FileTable>> = BTreeMap::new();
        for entry in entries {
            let path = entry
                .map_err(|e| ConnectorError::Unavailable(e.to_string()))?
                .path();
            let Some(stem) = path.file_stem().and_then(|s| s.to_str()) else {
                continue;
            };
            let format = if path.is_dir() {
                directory_format(&path)
            } else {
                FileFormatName::from_path(&path)
            };
            if let Some(format) = format {
                found.entry(stem.to_owned()).or_default().push(FileTable {
                    path,
                    format,
                    csv: self.csv,
                });
            }
        }
        let mut tables: HashMap<String, FileTable> = HashMap::new();
        for (name, mut candidates) in found {
            if self.declared.contains_key(&name) {
                continue;
            }
            if candidates.len() > 1 {
                // orders.csv next to orders.parquet: picking one would silently hide the other.
                let paths: Vec<_> = candidates
                    .iter()
                    .map(|c| c.path.display().to_string())
                    .collect();
                tracing::warn!(
                    source = %self.source,
                    "files {} would all be relation {name:?}; none is exposed, declare one under [sources.{}.tables]",
                    paths.join(", "),
                    self.source
                );
                continue;
            }
            tables.extend(candidates.pop().map(|c| (name, c)));
        }
        tables.extend(self.declared.clone());
        Ok(tables)
    }

    async fn build_provider(
        &self,
        table: &FileTable,
    ) -> Result<Arc<dyn TableProvider>, ConnectorError> {
        let format: Arc<dyn FileFormat> = match table.format {
            FileFormatName::Csv => Arc::new(
                CsvFormat::default()
                    .with_has_header(table.csv.has_header)
                    .with_delimiter(table.csv.delimiter),
            ),
            FileFormatName::Parquet => Arc::new(ParquetFormat::default()),
            FileFormatName::Ndjson => Arc::new(JsonFormat::default().with_newline_delimited(true)),
        };
        let is_dir = table.path.is_dir();
        let extension = if is_dir {
            table.format.extension_of_dir(&table.path)
        } else {
            String::new()
        };
        let location = table.path.to_string_lossy().into_owned();
        // A listing table treats a path with a trailing slash as a directory to list.
        let location = if is_dir && !location.ends_with('/') {
            format!("{location}/")
        } else {
            location
        };
        let url = ListingTableUrl::parse(&location)?;
        let options = ListingOptions::new(format).with_file_extension(extension);
        // Schema inference needs a session for its object store registry only; a private one
        // keeps the connector independent of any user session.
        let state = SessionContext::new().state();
        let schema = options.infer_schema(&state, &url).await?;
        let config = ListingTableConfig::new(url)
            .with_listing_options(options)
            .with_schema(schema);
        Ok(Arc::new(ListingTable::try_new(config)?))
    }
}

#[async_trait]
impl Connector for FilesConnector {
    fn kind(&self) -> &'static str {
        FilesConnectorFactory::KIND
    }

    async fn discover(&self) -> Result<Vec<Namespace>, ConnectorError> {
        let tables = self.scan_root()?;
        let mut names: Vec<String> = tables.keys().cloned().collect();
        names.sort();
        *lock(&self.discovered) = tables;
        lock(&self.providers).clear();
        Ok(vec![Namespace {
            name: NAMESPACE.to_owned(),
            tables: names,
        }])
    }

    async fn table_provider(
        &self,
        table: &TableRef,
    ) -> Result<Arc<dyn TableProvider>, ConnectorError> {
        if let Some(provider) = lock(&self.providers).get(&table.name) {
            return Ok(Arc::clone(provider));
        }
        let file_table = lock(&self.discovered)
            .get(&table.name)
            .cloned()
            .filter(|_| table.namespace == NAMESPACE)
            .ok_or_else(|| ConnectorError::NotFound(format!("{}.{}", self.source, table.name)))?;
        let provider = self
            .build_provider(&file_table)
            .await
            .map_err(|e| match e {
                ConnectorError::DataFusion(e) => {
                    ConnectorError::InvalidData(format!("{}: {e}", file_table.path.display()))
                }
                other => other,
            })?;
        lock(&self.providers).insert(table.name.clone(), Arc::clone(&provider));
        Ok(provider)
    }
}

/// The format shared by the data files of a directory, if they share one.
fn directory_format(dir: &Path) -> Option<FileFormatName> {
    let mut formats = std::fs::read_dir(dir)
        .ok()?
        .filter_map(|e| e.ok())
        .filter_map(|e| FileFormatName::from_path(&e.path()));
    let first = formats.next()?;
    formats.all(|f| f == first).then_some(first)
}

fn single_byte(key: &str, value: &str) -> Result<u8, OptionError> {
    match value.as_bytes() {
        [b] => Ok(*b),
        _ => Err(OptionError::new(
            key,
            format!("must be a single ASCII character, got {value:?}"),
        )),
    }
}

/// Locks a mutex, recovering the data if a panicking thread poisoned it: the maps it guards
/// are caches that stay consistent under any interleaving.
fn lock<T>(mutex: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests;
