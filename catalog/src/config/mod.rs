//! catalog.toml, read in two stages.
//!
//! Stage one ([`document`]) parses the text into a tree that remembers where every key and
//! value stands, and expands `${VAR}` references inside string values. Stage two (this module)
//! validates that tree into a typed [`CatalogConfig`]: known keys only, valid source names, a
//! known `kind`, and options each connector accepts. Every error names the file, the line and the
//! dotted key, so that one line of output tells the user what to fix.

pub(crate) mod document;
mod error;

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use polygate_connector_core::{Connector, ConnectorFactory, SourceContext};
use serde::Deserialize;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

pub use error::{CatalogError, ConfigError};

use document::Document;

use crate::kinds::{self, KINDS};

/// The address `polygate serve` listens on when neither the command line nor catalog.toml says.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:55432";
/// The port of [`DEFAULT_LISTEN`].
const DEFAULT_PORT: u16 = 55432;

/// A validated catalog.toml.
#[derive(Debug, Clone)]
pub struct CatalogConfig {
    /// The file this configuration was read from.
    pub path: PathBuf,
    /// The `[gateway]` table.
    pub gateway: GatewayConfig,
    /// The `[sources.NAME]` tables, in name order.
    pub sources: Vec<SourceConfig>,
}

/// The `[gateway]` table.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GatewayConfig {
    /// Where `polygate serve` accepts PostgreSQL clients.
    pub listen: SocketAddr,
    /// The most client connections served at once; one more is refused with 53300.
    pub max_connections: usize,
    /// The default `statement_timeout` of every session; `None` for no limit.
    pub statement_timeout: Option<Duration>,
    /// The default `idle_session_timeout`; `None` for no limit.
    pub idle_session_timeout: Option<Duration>,
    /// The memory all running queries may use together, in bytes; `None` for no limit.
    pub memory_limit: Option<usize>,
    /// The most rows one query may return; `None` for no limit.
    pub max_result_rows: Option<u64>,
    /// On SIGTERM, how long running queries may go on before they are canceled.
    pub shutdown_grace: Duration,
    /// How long a client may take from connecting to being authenticated.
    pub authentication_timeout: Duration,
    /// How clients prove who they are; `None` when catalog.toml does not say (`polygate
    /// serve` then refuses to start: serving without passwords must be asked for).
    pub auth: Option<AuthMethod>,
    /// `[gateway.users]`: each user's password or SCRAM-SHA-256 verifier, by user name.
    pub users: BTreeMap<String, Secret>,
    /// The server's certificate chain and key, for TLS.
    pub tls: Option<TlsFiles>,
    /// Refuse clients that do not use TLS.
    pub tls_required: bool,
}

/// `[gateway] auth`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AuthMethod {
    /// Every client is accepted as the user it names (PostgreSQL's `trust`).
    Trust,
    /// SCRAM-SHA-256 against `[gateway.users]`.
    ScramSha256,
}

/// PEM files of the server's TLS identity, as absolute paths.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    /// The certificate chain.
    pub cert_file: PathBuf,
    /// The private key.
    pub key_file: PathBuf,
}

/// A password or a password verifier: never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// The secret itself.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// Is it a SCRAM-SHA-256 verifier (`SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`,
    /// as in PostgreSQL's `pg_authid`), rather than a password?
    pub fn is_scram_verifier(&self) -> bool {
        self.0.starts_with("SCRAM-SHA-256$")
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Secret(..)")
    }
}

/// `max_connections` when catalog.toml does not say.
pub const DEFAULT_MAX_CONNECTIONS: usize = 100;
/// `shutdown_grace_secs` when catalog.toml does not say.
pub const DEFAULT_SHUTDOWN_GRACE: Duration = Duration::from_secs(30);

/// `authentication_timeout_secs` when catalog.toml does not say: PostgreSQL's default.
pub const DEFAULT_AUTHENTICATION_TIMEOUT: Duration = Duration::from_secs(60);

/// PostgreSQL's bounds of `authentication_timeout`, in seconds.
const AUTHENTICATION_TIMEOUT_SECS: std::ops::RangeInclusive<u64> = 1..=600;

/// One `[sources.NAME]` table, with its connector created (but not yet connected).
#[derive(Debug, Clone)]
pub struct SourceConfig {
    /// The source's name, which is also its SQL schema's name.
    pub name: String,
    /// Its `kind`.
    pub kind: String,
    /// A hash of the source table as written (after `${VAR}` expansion), so that a reload can
    /// tell whether a source changed. Only the hash is kept: the table holds the expanded
    /// secrets, which must not sit in a value anything may print.
    pub fingerprint: String,
    /// `response_timeout_secs`: the longest the store may take to answer one request.
    pub response_timeout: Duration,
    /// The connector serving it.
    pub connector: Arc<dyn Connector>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawGateway {
    listen: Option<Spanned<String>>,
    max_connections: Option<Spanned<u64>>,
    statement_timeout_secs: Option<u64>,
    idle_session_timeout_secs: Option<u64>,
    memory_limit_mb: Option<Spanned<u64>>,
    max_result_rows: Option<u64>,
    shutdown_grace_secs: Option<u64>,
    authentication_timeout_secs: Option<Spanned<u64>>,
    auth: Option<Spanned<String>>,
    users: Option<BTreeMap<String, Spanned<String>>>,
    tls_cert_file: Option<Spanned<String>>,
    tls_key_file: Option<Spanned<String>>,
    tls_required: Option<bool>,
}

impl CatalogConfig {
    /// Reads and validates the catalog file at `path`.
    pub fn load(path: &Path) -> Result<Self, CatalogError> {
        let text = std::fs::read_to_string(path).map_err(|source| CatalogError::Read {
            path: path.to_path_buf(),
            source,
        })?;
        Self::parse(path, &text).map_err(CatalogError::Config)
    }

    /// Validates `text` as the contents of the catalog file `path`.
    ///
    /// `path` locates relative paths and names the file in errors; it is not read.
    pub fn parse(path: &Path, text: &str) -> Result<Self, ConfigError> {
        let document = Document::parse(path, text)?;
        let mut root = document.root().clone();
        let mut gateway = None;
        let mut sources = Vec::new();
        let base_dir = path
            .parent()
            .map(Path::to_path_buf)
            .unwrap_or_else(|| PathBuf::from("."));
        for (key, value) in root.iter_mut() {
            match key.get_ref().as_ref() {
                "gateway" => gateway = Some(parse_gateway(&document, &base_dir, value)?),
                "sources" => {
                    let DeValue::Table(table) = value.get_mut() else {
                        return Err(document.error(value.span(), "sources", "must be a table"));
                    };
                    for (name, source) in table.iter_mut() {
                        sources.push(parse_source(&document, &base_dir, name, source)?);
                    }
                }
                other => {
                    return Err(document.error(
                        key.span(),
                        other,
                        "unknown key, expected gateway or sources",
                    ));
                }
            }
        }
        sources.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(Self {
            path: path.to_path_buf(),
            gateway: gateway.unwrap_or_else(default_gateway),
            sources,
        })
    }
}

fn default_gateway() -> GatewayConfig {
    GatewayConfig {
        listen: SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), DEFAULT_PORT),
        max_connections: DEFAULT_MAX_CONNECTIONS,
        statement_timeout: None,
        idle_session_timeout: None,
        memory_limit: None,
        max_result_rows: None,
        shutdown_grace: DEFAULT_SHUTDOWN_GRACE,
        authentication_timeout: DEFAULT_AUTHENTICATION_TIMEOUT,
        auth: None,
        users: BTreeMap::new(),
        tls: None,
        tls_required: false,
    }
}

/// Zero means no limit, as for PostgreSQL's timeouts.
fn seconds(value: Option<u64>) -> Option<Duration> {
    value.filter(|s| *s > 0).map(Duration::from_secs)
}

fn parse_gateway(
    document: &Document,
    base_dir: &Path,
    value: &Spanned<DeValue<'_>>,
) -> Result<GatewayConfig, ConfigError> {
    let raw: RawGateway = document.deserialize("gateway", value)?;
    let mut gateway = default_gateway();
    if let Some(listen) = raw.listen {
        gateway.listen = listen.get_ref().parse().map_err(|_| {
            document.error(
                listen.span(),
                "gateway.listen",
                format!(
                    "{:?} is not HOST:PORT with a numeric host",
                    listen.get_ref()
                ),
            )
        })?;
    }
    if let Some(max) = raw.max_connections {
        if *max.get_ref() == 0 {
            return Err(document.error(
                max.span(),
                "gateway.max_connections",
                "must be at least 1",
            ));
        }
        gateway.max_connections = usize::try_from(*max.get_ref()).unwrap_or(usize::MAX);
    }
    gateway.statement_timeout = seconds(raw.statement_timeout_secs);
    gateway.idle_session_timeout = seconds(raw.idle_session_timeout_secs);
    if let Some(mb) = raw.memory_limit_mb {
        let bytes = mb
            .get_ref()
            .checked_mul(1 << 20)
            .and_then(|b| usize::try_from(b).ok())
            .filter(|b| *b > 0)
            .ok_or_else(|| {
                document.error(
                    mb.span(),
                    "gateway.memory_limit_mb",
                    "must be a positive number of megabytes",
                )
            })?;
        gateway.memory_limit = Some(bytes);
    }
    gateway.max_result_rows = raw.max_result_rows.filter(|n| *n > 0);
    if let Some(grace) = raw.shutdown_grace_secs {
        gateway.shutdown_grace = Duration::from_secs(grace);
    }
    if let Some(timeout) = raw.authentication_timeout_secs {
        if !AUTHENTICATION_TIMEOUT_SECS.contains(timeout.get_ref()) {
            return Err(document.error(
                timeout.span(),
                "gateway.authentication_timeout_secs",
                format!(
                    "must be between {} and {} seconds",
                    AUTHENTICATION_TIMEOUT_SECS.start(),
                    AUTHENTICATION_TIMEOUT_SECS.end()
                ),
            ));
        }
        gateway.authentication_timeout = Duration::from_secs(*timeout.get_ref());
    }
    for (user, secret) in raw.users.unwrap_or_default() {
        let secret_value = Secret(secret.get_ref().clone());
        if secret_value.is_scram_verifier() && !is_scram_verifier_shape(secret.get_ref()) {
            return Err(document.error(
                secret.span(),
                &format!("gateway.users.{user}"),
                "not a SCRAM-SHA-256 verifier: expected SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>",
            ));
        }
        if secret.get_ref().is_empty() {
            return Err(document.error(
                secret.span(),
                &format!("gateway.users.{user}"),
                "empty password",
            ));
        }
        gateway.users.insert(user, secret_value);
    }
    if let Some(auth) = raw.auth {
        gateway.auth = Some(match auth.get_ref().as_str() {
            "trust" => AuthMethod::Trust,
            "scram-sha-256" => {
                if gateway.users.is_empty() {
                    return Err(document.error(
                        auth.span(),
                        "gateway.auth",
                        "scram-sha-256 needs at least one user in [gateway.users]",
                    ));
                }
                AuthMethod::ScramSha256
            }
            other => {
                return Err(document.error(
                    auth.span(),
                    "gateway.auth",
                    format!("unknown method {other:?}, expected \"scram-sha-256\" or \"trust\""),
                ));
            }
        });
    }
    match (raw.tls_cert_file, raw.tls_key_file) {
        (Some(cert), Some(key)) => {
            let file = |value: &Spanned<String>, key: &str| {
                let path = base_dir.join(value.get_ref());
                if path.is_file() {
                    Ok(path)
                } else {
                    Err(document.error(
                        value.span(),
                        key,
                        format!("no such file: {}", path.display()),
                    ))
                }
            };
            gateway.tls = Some(TlsFiles {
                cert_file: file(&cert, "gateway.tls_cert_file")?,
                key_file: file(&key, "gateway.tls_key_file")?,
            });
        }
        (None, None) => {}
        (Some(only), None) | (None, Some(only)) => {
            return Err(document.error(
                only.span(),
                "gateway",
                "tls_cert_file and tls_key_file go together",
            ));
        }
    }
    gateway.tls_required = raw.tls_required.unwrap_or(false);
    if gateway.tls_required && gateway.tls.is_none() {
        return Err(document.error(
            value.span(),
            "gateway.tls_required",
            "needs tls_cert_file and tls_key_file",
        ));
    }
    Ok(gateway)
}

/// `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`, the parts not decoded.
fn is_scram_verifier_shape(text: &str) -> bool {
    let Some(rest) = text.strip_prefix("SCRAM-SHA-256$") else {
        return false;
    };
    let Some((iterations_salt, keys)) = rest.split_once('$') else {
        return false;
    };
    let Some((iterations, salt)) = iterations_salt.split_once(':') else {
        return false;
    };
    let Some((stored, server)) = keys.split_once(':') else {
        return false;
    };
    iterations.parse::<u32>().is_ok_and(|n| n > 0)
        && [salt, stored, server].iter().all(|part| !part.is_empty())
}

fn parse_source(
    document: &Document,
    base_dir: &Path,
    name: &Spanned<std::borrow::Cow<'_, str>>,
    value: &mut Spanned<DeValue<'_>>,
) -> Result<SourceConfig, ConfigError> {
    let key = format!("sources.{}", name.get_ref());
    if !is_valid_source_name(name.get_ref()) {
        return Err(document.error(
            name.span(),
            &key,
            "invalid source name: use lower-case letters, digits and _, starting with a letter or _",
        ));
    }
    let span = value.span();
    let DeValue::Table(table) = value.get_mut() else {
        return Err(document.error(span, &key, "must be a table"));
    };
    let kind = take_kind(document, &key, span.clone(), table)?;
    let response_timeout = take_response_timeout(document, &key, table)?;
    let fingerprint = {
        use std::hash::{Hash, Hasher};
        // SipHash with fixed keys: stable within the process, which is all a reload compares.
        let mut hasher = std::hash::DefaultHasher::new();
        document.fingerprint(table).hash(&mut hasher);
        format!("{kind}:{:016x}", hasher.finish())
    };
    let context = SourceContext {
        name: name.get_ref().to_string(),
        base_dir: base_dir.to_path_buf(),
        response_timeout,
    };
    let options = Spanned::new(span.clone(), DeValue::Table(table.clone()));
    let Some(registered) = kinds::named(&kind) else {
        return Err(document.error(
            span,
            &format!("{key}.kind"),
            format!(
                "unknown kind {kind:?}, expected one of: {}",
                KINDS.iter().map(|k| k.name).collect::<Vec<_>>().join(", ")
            ),
        ));
    };
    let connector = (registered.create)(document, &key, &context, &options)?;
    Ok(SourceConfig {
        name: context.name,
        kind,
        fingerprint,
        response_timeout,
        connector,
    })
}

/// The longest `response_timeout_secs` may be: a day.
const MAX_RESPONSE_TIMEOUT_SECS: i64 = 86_400;

/// Removes `response_timeout_secs`, a key every kind accepts, from a source table.
fn take_response_timeout(
    document: &Document,
    key: &str,
    table: &mut DeTable<'_>,
) -> Result<Duration, ConfigError> {
    let Some(value) = table.remove("response_timeout_secs") else {
        return Ok(SourceContext::DEFAULT_RESPONSE_TIMEOUT);
    };
    let seconds = match value.get_ref() {
        DeValue::Integer(integer) => integer.to_string().parse::<i64>().ok(),
        _ => None,
    };
    match seconds {
        Some(seconds @ 1..=MAX_RESPONSE_TIMEOUT_SECS) => Ok(Duration::from_secs(seconds as u64)),
        _ => Err(document.error(
            value.span(),
            &format!("{key}.response_timeout_secs"),
            format!("must be a whole number of seconds from 1 to {MAX_RESPONSE_TIMEOUT_SECS}"),
        )),
    }
}

/// Removes `kind` from a source table (the connector's options do not include it).
fn take_kind(
    document: &Document,
    key: &str,
    span: std::ops::Range<usize>,
    table: &mut DeTable<'_>,
) -> Result<String, ConfigError> {
    let kind = table
        .remove("kind")
        .ok_or_else(|| document.error(span, &format!("{key}.kind"), "missing key"))?;
    match kind.get_ref() {
        DeValue::String(kind) => Ok(kind.to_string()),
        _ => Err(document.error(kind.span(), &format!("{key}.kind"), "must be a string")),
    }
}

/// A connector of kind `F` from the options of source table `key`.
pub(crate) fn create<F: ConnectorFactory>(
    document: &Document,
    key: &str,
    context: &SourceContext,
    options: &Spanned<DeValue<'_>>,
) -> Result<Arc<dyn Connector>, ConfigError> {
    let parsed: F::Options = document.deserialize(key, options)?;
    F::create(context, parsed).map_err(|e| {
        let span = document
            .span_of(options, &e.key)
            .unwrap_or_else(|| options.span());
        document.error(span, &format!("{key}.{}", e.key), e.message)
    })
}

/// Source names become SQL schema names that must work unquoted: lower case, since unquoted
/// identifiers fold to lower case.
fn is_valid_source_name(name: &str) -> bool {
    let mut chars = name.chars();
    matches!(chars.next(), Some(c) if c.is_ascii_lowercase() || c == '_')
        && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
        && name.len() <= 63
}

#[cfg(test)]
mod tests;
