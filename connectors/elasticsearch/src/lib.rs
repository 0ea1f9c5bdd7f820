//! The `elasticsearch` connector: the indices and aliases of an Elasticsearch or OpenSearch
//! cluster as relations.
//!
//! An index's mapping is its schema (`schema.rs`): text with its keyword sub-field, every
//! numeric type, dates in their mapping's formats (`dates.rs`), objects as structs, nested
//! fields as lists of structs, geo points as `{lat, lon}`, and anything else as JSON text,
//! never dropped. The cluster has no array type: a field is a list when catalog.toml says so
//! or a sample of documents holds arrays in it. Scans (`scan.rs`) send the filters the
//! cluster answers exactly (`filter.rs`) and read `_source` straight into Arrow
//! (`decode.rs`), paging by point in time and `search_after`, or by scroll, in parallel
//! slices for large indices.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, PoisonError};

use async_trait::async_trait;
use datafusion::catalog::TableProvider;
use datafusion::logical_expr::ScalarUDF;
use polygate_connector_core::estimates::{ESTIMATE_MAX_AGE, RowEstimates};
use polygate_connector_core::remote_scan::RemoteTable;
use polygate_connector_core::subplan::{SourceFinder, SubPlanSource};
use polygate_connector_core::{
    Connector, ConnectorError, ConnectorFactory, NameFilter, Namespace, OptionError, SourceContext,
    SourceSettings, TableRef,
};
use reqwest::Method;
use serde_json::{Map, Value, json};

mod dates;
mod decode;
mod filter;
mod fulltext;
mod options;
mod order;
mod query;
mod remote;
mod scan;
mod schema;
mod subplan;

pub use options::{ElasticOptions, IndexOptions};
pub use scan::Paging;

use dates::DateFormats;
use remote::{Auth, Remote, path_segment};
use scan::{IndexTable, ScanSettings};
use schema::{Field, Overrides};

/// The one namespace of a source: a cluster's indices and aliases share one name space.
pub const NAMESPACE: &str = "indices";

/// Builds [`ElasticConnector`]s from `kind = "elasticsearch"` sources.
pub struct ElasticConnectorFactory;

impl ConnectorFactory for ElasticConnectorFactory {
    type Options = ElasticOptions;
    const KIND: &'static str = "elasticsearch";

    fn create(
        context: &SourceContext,
        options: ElasticOptions,
    ) -> Result<Arc<dyn Connector>, OptionError> {
        Ok(Arc::new(ElasticConnector::new(context, options)?))
    }

    fn functions() -> Vec<Arc<ScalarUDF>> {
        fulltext::functions()
    }

    fn source_finder() -> Option<SourceFinder> {
        Some(|provider| {
            let table = provider.downcast_ref::<RemoteTable<IndexTable>>()?;
            Some(Arc::clone(table.relation().remote()) as Arc<dyn SubPlanSource>)
        })
    }
}

/// An index's relation: its fields and Arrow schema.
#[derive(Debug)]
struct IndexSchema {
    fields: Arc<Vec<Field>>,
    schema: datafusion::arrow::datatypes::SchemaRef,
    /// Top-level fields whose values `_source` does not keep, with the reason.
    unkept: Arc<BTreeMap<String, String>>,
}

/// Reads the indices and aliases of one cluster.
#[derive(Debug)]
pub struct ElasticConnector {
    remote: Arc<Remote>,
    settings: Arc<ScanSettings>,
    names: NameFilter,
    sample_size: u32,
    overrides: HashMap<String, Overrides>,
    /// Schemas read from mappings, until the next discovery (a catalog reload).
    schemas: Mutex<HashMap<String, Arc<IndexSchema>>>,
    /// `_count`s, refreshed in the background once a minute old.
    estimates: RowEstimates,
}

impl ElasticConnector {
    /// Checks the options; the cluster is first contacted by discovery.
    pub fn new(context: &SourceContext, options: ElasticOptions) -> Result<Self, OptionError> {
        let nodes = match (options.url, options.urls.is_empty()) {
            (Some(url), true) => vec![url],
            (None, false) => options.urls,
            (Some(_), false) => {
                return Err(OptionError::new(
                    "urls",
                    "give either url or urls, not both",
                ));
            }
            (None, true) => return Err(OptionError::new("url", "missing key")),
        };
        for (i, node) in nodes.iter().enumerate() {
            if !node.starts_with("http://") && !node.starts_with("https://") {
                let key = if nodes.len() == 1 {
                    "url".to_owned()
                } else {
                    format!("urls[{i}]")
                };
                return Err(OptionError::new(
                    key,
                    "must be an http:// or https:// address",
                ));
            }
        }
        let auth = match (options.username, options.password, options.api_key) {
            (None, None, None) => Auth::None,
            (Some(username), Some(password), None) => Auth::Basic { username, password },
            (None, None, Some(key)) => Auth::ApiKey(key),
            (Some(_), None, None) => return Err(OptionError::new("password", "missing key")),
            (None, Some(_), None) => return Err(OptionError::new("username", "missing key")),
            _ => {
                return Err(OptionError::new(
                    "api_key",
                    "give either api_key or username and password, not both",
                ));
            }
        };
        let ca_pem = match &options.ca_file {
            Some(path) => Some(
                std::fs::read(context.base_dir.join(path))
                    .map_err(|e| OptionError::new("ca_file", format!("cannot read {path}: {e}")))?,
            ),
            None => None,
        };
        let paging = match options.paging.as_str() {
            "auto" => Paging::Auto,
            "point_in_time" => Paging::PointInTime,
            "scroll" => Paging::Scroll,
            other => {
                return Err(OptionError::new(
                    "paging",
                    format!("{other:?} is not one of auto, point_in_time, scroll"),
                ));
            }
        };
        if !(1..=10_000).contains(&options.page_size) {
            return Err(OptionError::new("page_size", "must be between 1 and 10000"));
        }
        if options.partition_documents == 0 {
            return Err(OptionError::new(
                "partition_documents",
                "must be at least 1",
            ));
        }
        let mut overrides = HashMap::new();
        for (index, declared) in options.indices {
            let mut date_formats = Vec::new();
            for (path, format) in declared.date_formats {
                let formats = DateFormats::parse(&format).map_err(|e| {
                    OptionError::new(format!("indices.{index}.date_formats.{path}"), e)
                })?;
                date_formats.push((path, formats));
            }
            overrides.insert(
                index,
                Overrides {
                    arrays: declared.arrays,
                    json: declared.json,
                    date_formats,
                },
            );
        }
        let remote = Remote::new(
            SourceSettings::new(context, options.pushdown),
            nodes,
            auth,
            ca_pem,
            OptionError::seconds(
                "connect_timeout_secs",
                options.connect_timeout_secs,
                1..=OptionError::MAX_CONNECT_SECS,
            )?,
            // A day: a request longer than that is not one polygate waits for.
            OptionError::seconds(
                "request_timeout_secs",
                options.request_timeout_secs,
                1..=86_400,
            )?,
        )
        .map_err(|e| OptionError::new("ca_file", e))?;
        Ok(Self {
            remote: Arc::new(remote),
            settings: Arc::new(ScanSettings {
                page_size: options.page_size as usize,
                partition_documents: options.partition_documents,
                paging,
            }),
            names: NameFilter::new(options.include, options.exclude),
            sample_size: options.sample_size,
            overrides,
            schemas: Mutex::new(HashMap::new()),
            estimates: RowEstimates::new(),
        })
    }

    /// The schema of `index`: cached, or read from its mapping and a sample now.
    async fn schema(&self, index: &str) -> Result<Arc<IndexSchema>, ConnectorError> {
        if let Some(schema) = self
            .schemas
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .get(index)
        {
            return Ok(Arc::clone(schema));
        }
        let segment = path_segment(index);
        let mappings = self
            .remote
            .json(Method::GET, &format!("/{segment}/_mapping"), None)
            .await?;
        let properties = merged_properties(&mappings);
        let overrides = self.overrides.get(index).cloned().unwrap_or_default();
        let mut unsupported = Vec::new();
        let mut fields = schema::fields(&properties, &overrides, &mut unsupported)
            .map_err(|e| ConnectorError::InvalidData(format!("the mapping of {index}: {e}")))?;
        for field in &unsupported {
            tracing::warn!(
                source = %self.remote.settings.name,
                "field {} of {index} is mapped as {}: read as JSON text",
                field.path,
                field.mapping_type
            );
        }
        if self.sample_size > 0 {
            let sample = self
                .remote
                .json(
                    Method::POST,
                    &format!("/{segment}/_search"),
                    // A random sample, not the first documents: arrays added late count.
                    Some(&json!({
                        "size": self.sample_size,
                        "track_total_hits": false,
                        "query": { "function_score": { "random_score": {} } },
                    })),
                )
                .await?;
            let mut arrays = Vec::new();
            let hits = sample
                .pointer("/hits/hits")
                .and_then(Value::as_array)
                .map_or(&[][..], Vec::as_slice);
            for hit in hits {
                if let Some(source) = hit.get("_source").and_then(Value::as_object) {
                    schema::array_paths(source, "", &mut arrays);
                }
            }
            schema::mark_lists(&mut fields, &arrays);
        }
        let unkept = unkept_fields(&mappings, &fields);
        let schema = Arc::new(IndexSchema {
            schema: Arc::new(schema::arrow_schema(&fields)),
            fields: Arc::new(fields),
            unkept: Arc::new(unkept),
        });
        self.schemas
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(index.to_owned(), Arc::clone(&schema));
        Ok(schema)
    }
}

/// The top-level fields whose values the `_source` of some index of a `_mapping` answer does
/// not keep (`_source.enabled: false`, `includes`, `excludes`), with the reason. A pattern
/// on a nested path (`o.secret`) makes its whole top-level field unkept: scans read
/// `_source`, and a value it lacks would otherwise read as a silent NULL.
fn unkept_fields(mappings: &Value, fields: &[Field]) -> BTreeMap<String, String> {
    let mut unkept = BTreeMap::new();
    let Some(indices) = mappings.as_object() else {
        return unkept;
    };
    for (index, entry) in indices {
        let Some(source) = entry
            .pointer("/mappings/_source")
            .and_then(Value::as_object)
        else {
            continue;
        };
        let patterns = |key: &str| -> Vec<String> {
            source
                .get(key)
                .and_then(Value::as_array)
                .map(|list| {
                    list.iter()
                        .filter_map(Value::as_str)
                        .map(str::to_owned)
                        .collect()
                })
                .unwrap_or_default()
        };
        let top = |patterns: &[String]| -> Vec<String> {
            patterns
                .iter()
                .map(|p| p.split('.').next().unwrap_or(p).to_owned())
                .collect()
        };
        let disabled = source.get("enabled") == Some(&Value::Bool(false));
        let (includes, excludes) = (patterns("includes"), patterns("excludes"));
        let kept = NameFilter::new(top(&includes), top(&excludes));
        // A field only partly included (`o.a` of `o`) is not kept whole.
        let partial: Vec<String> = includes.into_iter().filter(|p| p.contains('.')).collect();
        let partly_kept = NameFilter::new(top(&partial), Vec::new());
        for field in fields {
            let reason = if disabled {
                Some(format!("index {index} does not keep _source"))
            } else if !kept.exposes(&field.name)
                || (!partial.is_empty() && partly_kept.exposes(&field.name))
            {
                Some(format!(
                    "index {index} leaves {} out of _source",
                    field.name
                ))
            } else {
                None
            };
            if let Some(reason) = reason {
                unkept.entry(field.name.clone()).or_insert(reason);
            }
        }
    }
    unkept
}

/// The `properties` of every index a `_mapping` answer covers, merged: a field mapped
/// differently by two indices reads as JSON text.
fn merged_properties(mappings: &Value) -> Map<String, Value> {
    let mut merged = Map::new();
    if let Some(indices) = mappings.as_object() {
        for mapping in indices.values() {
            if let Some(properties) = mapping
                .pointer("/mappings/properties")
                .and_then(Value::as_object)
            {
                merge_properties(&mut merged, properties);
            }
        }
    }
    merged
}

fn merge_properties(into: &mut Map<String, Value>, from: &Map<String, Value>) {
    for (name, mapping) in from {
        match into.get_mut(name) {
            None => {
                into.insert(name.clone(), mapping.clone());
            }
            Some(existing) if existing == mapping => {}
            Some(existing) => {
                let both_objects = [&*existing, mapping].iter().all(|m| {
                    m.get("properties").is_some()
                        && matches!(m.get("type").and_then(Value::as_str), None | Some("object"))
                });
                if both_objects
                    && let (Some(Value::Object(a)), Some(Value::Object(b))) =
                        (existing.get_mut("properties"), mapping.get("properties"))
                {
                    merge_properties(a, b);
                } else {
                    *existing = json!({ "type": "conflicting mappings" });
                }
            }
        }
    }
}

#[async_trait]
impl Connector for ElasticConnector {
    fn kind(&self) -> &'static str {
        ElasticConnectorFactory::KIND
    }

    async fn discover(&self) -> Result<Vec<Namespace>, ConnectorError> {
        // A discovery (start-up, reload, retry) re-reads every mapping on next use.
        self.schemas
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clear();
        self.estimates.clear();
        self.remote.flavour().await?;
        // Every index with its aliases; hidden and system indices start with a dot.
        let aliases = self.remote.json(Method::GET, "/_alias", None).await?;
        let mut names = BTreeMap::new();
        if let Some(indices) = aliases.as_object() {
            for (index, entry) in indices {
                names.insert(index.clone(), ());
                if let Some(aliases) = entry.get("aliases").and_then(Value::as_object) {
                    for alias in aliases.keys() {
                        names.insert(alias.clone(), ());
                    }
                }
            }
        }
        let tables = names
            .into_keys()
            .filter(|name| !name.starts_with('.') && self.names.exposes(name))
            .collect();
        Ok(vec![Namespace {
            name: NAMESPACE.to_owned(),
            tables,
        }])
    }

    async fn table_provider(
        &self,
        table: &TableRef,
    ) -> Result<Arc<dyn TableProvider>, ConnectorError> {
        if table.namespace != NAMESPACE || !self.names.exposes(&table.name) {
            return Err(ConnectorError::NotFound(format!(
                "{}.{}",
                self.remote.settings.name, table.name
            )));
        }
        let schema = self.schema(&table.name).await?;
        let remote = Arc::clone(&self.remote);
        let path = format!("/{}/_count", path_segment(&table.name));
        let estimate = self
            .estimates
            .get(table, ESTIMATE_MAX_AGE, || async move {
                let answer = remote.json(Method::GET, &path, None).await.ok()?;
                answer.get("count").and_then(Value::as_u64)
            })
            .await;
        Ok(Arc::new(RemoteTable::new(IndexTable::new(
            Arc::clone(&self.remote),
            Arc::clone(&self.settings),
            table.name.clone(),
            Arc::clone(&schema.fields),
            Arc::clone(&schema.schema),
            Arc::clone(&schema.unkept),
            estimate,
        ))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fields_left_out_of_source_are_named() {
        let field = |name: &str| Field {
            name: name.into(),
            kind: schema::Kind::Keyword { ignore_above: None },
            list: false,
            searchable: true,
        };
        let fields = [field("a"), field("o"), field("secret"), field("z")];
        let unkept = |source: Value| -> Vec<String> {
            let mappings = json!({ "i": { "mappings": { "_source": source, "properties": {} } } });
            unkept_fields(&mappings, &fields).into_keys().collect()
        };
        assert_eq!(
            unkept(json!({ "enabled": false })),
            ["a", "o", "secret", "z"]
        );
        assert_eq!(unkept(json!({ "excludes": ["sec*"] })), ["secret"]);
        assert_eq!(
            unkept(json!({ "includes": ["a", "o.x"] })),
            ["o", "secret", "z"]
        );
        assert_eq!(unkept(json!({ "excludes": ["o.secret"] })), ["o"]);
        assert!(unkept(json!({ "enabled": true })).is_empty());
        let kept = json!({ "i": { "mappings": { "properties": {} } } });
        assert!(unkept_fields(&kept, &fields).is_empty());
    }

    #[test]
    fn mappings_of_several_indices_merge_and_conflicts_read_as_json() {
        let answer = json!({
            "logs-1": {"mappings": {"properties": {
                "a": {"type": "keyword"}, "n": {"type": "long"},
                "o": {"properties": {"x": {"type": "long"}}}}}},
            "logs-2": {"mappings": {"properties": {
                "a": {"type": "keyword"}, "n": {"type": "keyword"},
                "o": {"properties": {"y": {"type": "keyword"}}}}}},
        });
        let merged = merged_properties(&answer);
        assert_eq!(merged["a"], json!({"type": "keyword"}));
        assert_eq!(merged["n"], json!({"type": "conflicting mappings"}));
        assert_eq!(
            merged["o"],
            json!({"properties": {"x": {"type": "long"}, "y": {"type": "keyword"}}})
        );
    }

    fn options(toml: &str) -> Result<ElasticConnector, OptionError> {
        let options: ElasticOptions =
            toml::from_str(toml).map_err(|e| OptionError::new("toml", e.to_string()))?;
        let context = SourceContext::new("search", ".");
        ElasticConnector::new(&context, options)
    }

    #[test]
    fn bad_options_are_refused_by_key() {
        let key = |toml: &str| options(toml).err().map(|e| e.key);
        assert_eq!(key(r#"url = "http://localhost:9200""#), None);
        assert_eq!(key(r#"url = "localhost:9200""#).as_deref(), Some("url"));
        assert_eq!(
            key(r#"urls = ["http://a:9200", "ftp://b"]"#).as_deref(),
            Some("urls[1]")
        );
        assert_eq!(
            key("url = \"http://a\"\nusername = \"u\"").as_deref(),
            Some("password")
        );
        assert_eq!(
            key("url = \"http://a\"\npaging = \"fast\"").as_deref(),
            Some("paging")
        );
        assert_eq!(
            key("url = \"http://a\"\npage_size = 20000").as_deref(),
            Some("page_size")
        );
        assert_eq!(
            key("url = \"http://a\"\nca_file = \"/nonexistent/ca.pem\"").as_deref(),
            Some("ca_file")
        );
        assert_eq!(
            key("url = \"http://a\"\n[indices.x.date_formats]\nd = \"yyyy-QQ\"").as_deref(),
            Some("indices.x.date_formats.d")
        );
    }
}
