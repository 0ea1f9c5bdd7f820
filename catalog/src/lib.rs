//! polygate's catalog: what catalog.toml declares, and how it appears to SQL.
//!
//! [`config`] reads and validates catalog.toml. [`Catalog`] turns a configuration into live
//! sources: it creates their connectors, discovers what each store holds (retrying unreachable
//! stores in the background), and swaps in a new configuration on reload without disturbing
//! running queries. [`Catalog::catalog_provider`] presents it all to DataFusion: one SQL schema
//! per source, named after the source (see [`naming`]).

pub mod config;
mod kinds;
mod live;
pub mod naming;
mod provider;
pub mod pushdown;

pub use config::{
    AuthMethod, CatalogConfig, CatalogError, ConfigError, GatewayConfig, Secret, SourceConfig,
    TlsFiles,
};
pub use live::{Catalog, ReloadSummary, SourceState, SourceStatus};
