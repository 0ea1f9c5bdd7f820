//! The polygate gateway: PostgreSQL clients in, DataFusion over the catalog's sources out.
//!
//! [`engine`] makes DataFusion sessions over a [`Catalog`](polygate_catalog::Catalog), with
//! PostgreSQL's behaviour from [`polygate_pgcompat`], and runs statements read-only. [`pg`]
//! speaks the PostgreSQL wire protocol (through pgwire) on top of it, [`errors`] is the one
//! place errors become SQLSTATEs, [`reload`] applies catalog edits to a running gateway, and
//! [`output`] prints results for `polygate query`.

pub mod engine;
pub mod errors;
pub mod output;
pub mod pg;
pub mod reload;
