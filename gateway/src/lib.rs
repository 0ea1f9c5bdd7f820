//! The polygate gateway: PostgreSQL clients in, DataFusion over the catalog's sources out.
//!
//! [`engine`] makes DataFusion sessions over a [`Catalog`](polygate_catalog::Catalog) and runs
//! statements read-only; [`statement`] decides what each statement is before anything runs,
//! [`settings`] holds a session's parameters, and [`introspection`] gives clients `pg_catalog`,
//! `information_schema` and PostgreSQL's session functions. [`pg`] speaks the PostgreSQL wire protocol (through pgwire) on top of
//! it, [`errors`] is the one place errors become SQLSTATEs, [`reload`] applies catalog edits to a
//! running gateway, and [`output`] prints results for `polygate query`.

pub mod depth;
pub mod engine;
pub mod errors;
pub mod introspection;
pub mod output;
pub mod parser;
pub mod pg;
pub mod reload;
pub mod rewrite;
pub mod settings;
pub mod statement;
