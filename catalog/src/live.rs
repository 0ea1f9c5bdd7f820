//! The live catalog: sources created from a configuration, their discovery state, reloads.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, RwLock, Weak};
use std::time::Duration;

use arc_swap::ArcSwap;
use datafusion::catalog::CatalogProvider;
use polygate_connector_core::scan::answer_within;
use polygate_connector_core::{Connector, Namespace};
use tokio::task::JoinHandle;

use crate::config::{CatalogConfig, CatalogError, GatewayConfig, SourceConfig};
use crate::naming;
use crate::provider::PolygateCatalogProvider;

/// How long start-up and `check` wait for a source's first discovery before reporting it
/// unavailable; it keeps being retried in the background.
const FIRST_DISCOVERY_TIMEOUT: Duration = Duration::from_secs(10);
/// The first and the longest wait between two attempts to reach an unavailable source.
const RETRY_MIN: Duration = Duration::from_millis(500);
const RETRY_MAX: Duration = Duration::from_secs(30);

/// What polygate currently knows of a source's store.
#[derive(Debug, Clone)]
pub enum SourceState {
    /// Discovery has not finished yet.
    Connecting,
    /// The store answered; these are its namespaces and relations, shared so that table
    /// lookups read them without copying.
    Ready(Arc<Vec<Namespace>>),
    /// The last attempt to reach the store failed; it is retried in the background.
    Unavailable(String),
}

/// One configured source and its state.
#[derive(Debug)]
pub(crate) struct Source {
    pub(crate) config: SourceConfig,
    state: RwLock<SourceState>,
    /// The background task retrying discovery, stopped when the source is dropped.
    retry: std::sync::Mutex<Option<JoinHandle<()>>>,
}

impl Source {
    fn new(config: SourceConfig) -> Arc<Self> {
        Arc::new(Self {
            config,
            state: RwLock::new(SourceState::Connecting),
            retry: std::sync::Mutex::new(None),
        })
    }

    pub(crate) fn name(&self) -> &str {
        &self.config.name
    }

    pub(crate) fn connector(&self) -> &Arc<dyn Connector> {
        &self.config.connector
    }

    pub(crate) fn state(&self) -> SourceState {
        self.state
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .clone()
    }

    fn set_state(&self, state: SourceState) {
        *self
            .state
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner()) = state;
    }

    /// Discovers the store once, within its response timeout, recording the outcome.
    /// Returns whether it answered.
    async fn discover(&self) -> bool {
        let discovery = answer_within(self.config.response_timeout, self.connector().discover());
        match discovery.await {
            Ok(namespaces) => {
                if !matches!(self.state(), SourceState::Ready(_)) {
                    tracing::info!(source = %self.name(), "source is available");
                }
                self.set_state(SourceState::Ready(Arc::new(namespaces)));
                true
            }
            Err(error) => {
                let error = error.to_string();
                // Keep what an earlier discovery found: a refresh that fails does not hide
                // relations that were queryable a moment ago... unless the source never answered.
                if !matches!(self.state(), SourceState::Ready(_)) {
                    tracing::warn!(source = %self.name(), %error, "source is unavailable, retrying in the background");
                    self.set_state(SourceState::Unavailable(error));
                }
                false
            }
        }
    }

    /// Discovers the store with a bounded wait; on failure, keeps retrying in the background.
    async fn start(self: &Arc<Self>) {
        let answered = tokio::time::timeout(FIRST_DISCOVERY_TIMEOUT, self.discover())
            .await
            .unwrap_or_else(|_| {
                self.set_state(SourceState::Unavailable(format!(
                    "no answer within {}s",
                    FIRST_DISCOVERY_TIMEOUT.as_secs()
                )));
                false
            });
        if !answered {
            let weak = Arc::downgrade(self);
            let task = tokio::spawn(retry_until_available(weak));
            *self.retry.lock().unwrap_or_else(|p| p.into_inner()) = Some(task);
        }
    }
}

impl Drop for Source {
    fn drop(&mut self) {
        if let Some(task) = self
            .retry
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .take()
        {
            task.abort();
        }
    }
}

async fn retry_until_available(source: Weak<Source>) {
    let mut wait = RETRY_MIN;
    loop {
        tokio::time::sleep(wait).await;
        // The source was removed from the catalog: stop retrying.
        let Some(source) = source.upgrade() else {
            return;
        };
        if source.discover().await {
            return;
        }
        wait = (wait * 2).min(RETRY_MAX);
    }
}

/// The sources in force, as one consistent set.
#[derive(Debug)]
pub(crate) struct Snapshot {
    pub(crate) config: CatalogConfig,
    pub(crate) sources: BTreeMap<String, Arc<Source>>,
}

/// A source's name, kind and state, as `polygate check` reports it.
#[derive(Debug, Clone)]
pub struct SourceStatus {
    /// The source's name.
    pub name: String,
    /// Its kind.
    pub kind: String,
    /// What is known of its store.
    pub state: SourceState,
    /// The SQL-qualified names of its relations (`source.table`, `"source.ns".table`).
    pub tables: Vec<String>,
}

/// What a reload changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReloadSummary {
    /// Sources that are new.
    pub added: Vec<String>,
    /// Sources that are gone.
    pub removed: Vec<String>,
    /// Sources whose options changed and that were recreated.
    pub changed: Vec<String>,
    /// Sources kept as they were (and rediscovered, to pick up new relations).
    pub unchanged: Vec<String>,
}

/// The live catalog shared by every session of a gateway.
#[derive(Debug)]
pub struct Catalog {
    path: PathBuf,
    snapshot: ArcSwap<Snapshot>,
    /// `[gateway]` in force. A reload applies it at once, before it waits on any store: who
    /// may connect must never depend on a store answering.
    gateway: ArcSwap<GatewayConfig>,
    /// Serialises the reading of edits, so that their `[gateway]` tables apply in order.
    reading: std::sync::Mutex<u64>,
    /// Serialises the sources part of reloads, which waits on the stores.
    reloading: tokio::sync::Mutex<()>,
}

impl Catalog {
    /// Reads the catalog file at `path` and brings up its sources.
    ///
    /// Waits (boundedly) for each source's first discovery; a source that cannot be reached is
    /// reported by [`Catalog::status`] and retried in the background while the others serve.
    pub async fn load(path: &Path) -> Result<Arc<Self>, CatalogError> {
        let config = CatalogConfig::load(path)?;
        Ok(Self::start(config).await)
    }

    /// Brings up the sources of an already validated configuration.
    pub async fn start(config: CatalogConfig) -> Arc<Self> {
        let sources: BTreeMap<_, _> = config
            .sources
            .iter()
            .map(|s| (s.name.clone(), Source::new(s.clone())))
            .collect();
        futures::future::join_all(sources.values().map(|s| s.start())).await;
        Arc::new(Self {
            path: config.path.clone(),
            gateway: ArcSwap::from_pointee(config.gateway.clone()),
            snapshot: ArcSwap::from_pointee(Snapshot { config, sources }),
            reading: std::sync::Mutex::new(0),
            reloading: tokio::sync::Mutex::new(()),
        })
    }

    /// The catalog file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The configuration in force.
    pub fn config(&self) -> CatalogConfig {
        CatalogConfig {
            gateway: self.gateway().as_ref().clone(),
            ..self.snapshot.load().config.clone()
        }
    }

    /// `[gateway]` in force.
    pub fn gateway(&self) -> Arc<GatewayConfig> {
        self.gateway.load_full()
    }

    pub(crate) fn snapshot(&self) -> Arc<Snapshot> {
        self.snapshot.load_full()
    }

    /// Rereads the catalog file and applies it.
    ///
    /// On an invalid file, returns the error and leaves the catalog in force untouched.
    /// `[gateway]` (users, authentication) applies at once. New and changed sources are
    /// brought up (each waited for at most [`FIRST_DISCOVERY_TIMEOUT`]) before the new sources
    /// replace the old ones, so that no query sees a half-applied edit; queries already running
    /// keep the relations they resolved. An edit read while an earlier one still waits on its
    /// stores supersedes it: the earlier one returns an empty summary.
    pub async fn reload(&self) -> Result<ReloadSummary, CatalogError> {
        let (config, generation) = {
            let mut generation = self.reading.lock().unwrap_or_else(|p| p.into_inner());
            let config = CatalogConfig::load(&self.path)?;
            weakens_authentication(&self.gateway(), &config.gateway, &self.path)?;
            self.gateway.store(Arc::new(config.gateway.clone()));
            *generation += 1;
            (config, *generation)
        };
        let _one_at_a_time = self.reloading.lock().await;
        if *self.reading.lock().unwrap_or_else(|p| p.into_inner()) != generation {
            return Ok(ReloadSummary::default());
        }
        let old = self.snapshot();
        let mut summary = ReloadSummary::default();
        let mut sources = BTreeMap::new();
        let mut to_start = Vec::new();
        for source in &config.sources {
            let kept = old
                .sources
                .get(&source.name)
                .filter(|s| s.config.fingerprint == source.fingerprint);
            let entry = match kept {
                Some(existing) => {
                    summary.unchanged.push(source.name.clone());
                    Arc::clone(existing)
                }
                None => {
                    if old.sources.contains_key(&source.name) {
                        summary.changed.push(source.name.clone());
                    } else {
                        summary.added.push(source.name.clone());
                    }
                    let fresh = Source::new(source.clone());
                    to_start.push(Arc::clone(&fresh));
                    fresh
                }
            };
            sources.insert(source.name.clone(), entry);
        }
        summary.removed = old
            .sources
            .keys()
            .filter(|name| !sources.contains_key(*name))
            .cloned()
            .collect();
        if old.config.gateway.listen != config.gateway.listen
            || old.config.gateway.max_connections != config.gateway.max_connections
            || old.config.gateway.tls != config.gateway.tls
        {
            tracing::warn!(
                "[gateway] listen, max_connections and tls changed in {}; they apply at the next start",
                self.path.display()
            );
        }
        // Bounded like a first discovery: a stalled store delays an edit's new sources by
        // seconds at most, and keeps the relations it had.
        let refresh = sources
            .values()
            .filter(|s| !to_start.iter().any(|n| Arc::ptr_eq(n, s)))
            .filter(|s| matches!(s.state(), SourceState::Ready(_)))
            .map(|s| tokio::time::timeout(FIRST_DISCOVERY_TIMEOUT, s.discover()));
        let start = to_start.iter().map(|s| s.start());
        futures::future::join(
            futures::future::join_all(refresh),
            futures::future::join_all(start),
        )
        .await;
        self.snapshot.store(Arc::new(Snapshot { config, sources }));
        Ok(summary)
    }

    /// Every source's state and relations.
    pub fn status(&self) -> Vec<SourceStatus> {
        self.snapshot()
            .sources
            .values()
            .map(|source| {
                let state = source.state();
                let tables = match &state {
                    SourceState::Ready(namespaces) => qualified_tables(source.name(), namespaces),
                    _ => Vec::new(),
                };
                SourceStatus {
                    name: source.name().to_owned(),
                    kind: source.config.kind.clone(),
                    state,
                    tables,
                }
            })
            .collect()
    }

    /// This catalog as a DataFusion catalog: one schema per source namespace.
    ///
    /// The provider always reads the catalog in force, so a session created before a reload
    /// sees the sources the reload added.
    pub fn catalog_provider(self: &Arc<Self>) -> Arc<dyn CatalogProvider> {
        Arc::new(PolygateCatalogProvider::new(Arc::clone(self)))
    }
}

/// `source.table` names of a source's relations, quoted where SQL needs quotes.
fn qualified_tables(source: &str, namespaces: &[Namespace]) -> Vec<String> {
    let schemas = naming::schema_names(source, namespaces.iter().map(|n| n.name.as_str()));
    namespaces
        .iter()
        .zip(schemas)
        .flat_map(|(ns, schema)| {
            ns.tables
                .iter()
                .map(move |t| format!("{}.{}", quote_ident(&schema), quote_ident(t)))
        })
        .collect()
}

/// Quotes `name` the way PostgreSQL would need it to be written in SQL.
pub(crate) fn quote_ident(name: &str) -> String {
    let plain = name
        .chars()
        .enumerate()
        .all(|(i, c)| c == '_' || c.is_ascii_lowercase() || (i > 0 && c.is_ascii_digit()))
        && !name.is_empty();
    if plain {
        name.to_owned()
    } else {
        format!("\"{}\"", name.replace('"', "\"\""))
    }
}

/// Refuses an edit that would let clients in with less than the running catalog asks of
/// them: no authentication method, or no more TLS. A missing `auth` means "not
/// configured", not "trust": `polygate serve` refuses to start without one, so a reload must
/// not read a deleted line or table as trust. Switching to `auth = "trust"` stays possible,
/// written out; lowering `tls_required` takes a restart.
fn weakens_authentication(
    running: &GatewayConfig,
    edited: &GatewayConfig,
    path: &Path,
) -> Result<(), CatalogError> {
    if running.tls_required && !edited.tls_required {
        return Err(CatalogError::Config(crate::config::ConfigError {
            path: path.to_owned(),
            line: 1,
            column: 1,
            key: "gateway.tls_required".to_owned(),
            message: "an edit cannot stop requiring TLS of a running gateway; restart it to \
                      lower the requirement"
                .to_owned(),
        }));
    }
    if running.auth.is_none() || edited.auth.is_some() {
        return Ok(());
    }
    Err(CatalogError::Config(crate::config::ConfigError {
        path: path.to_owned(),
        line: 1,
        column: 1,
        key: "gateway.auth".to_owned(),
        message: "missing: an edit cannot remove authentication from a running gateway; write \
                  auth = \"trust\" to let clients in without a password"
            .to_owned(),
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn qualified_names_quote_what_sql_needs() {
        let namespaces = vec![
            Namespace {
                name: "public".into(),
                tables: vec!["orders".into(), "Mixed".into()],
            },
            Namespace {
                name: "billing".into(),
                tables: vec!["in\"voice".into()],
            },
        ];
        assert_eq!(
            qualified_tables("shop", &namespaces),
            [
                "shop.orders",
                "shop.\"Mixed\"",
                "\"shop.billing\".\"in\"\"voice\""
            ]
        );
    }
}
