//! The contract between polygate and the stores it reads.
//!
//! A store plugs into polygate by implementing [`Connector`] (discover what the store holds,
//! describe a relation as an Arrow schema, build a DataFusion `TableProvider` for it) and
//! [`ConnectorFactory`] (turn the options of one `[sources.NAME]` table of catalog.toml into a
//! connector). Nothing in this crate knows about catalog.toml's syntax, the PostgreSQL wire
//! protocol or any particular store.

mod connector;
pub mod depth;
mod error;
pub mod estimates;
mod names;
pub mod predicate;
pub mod prefetch;
pub mod remote_scan;
pub mod scan;
pub mod subplan;

pub use connector::{
    Connector, ConnectorFactory, Namespace, SourceContext, SourceSettings, TableRef,
};
pub use error::{ConnectorError, OptionError, SourceError};
pub use names::NameFilter;
