//! Session settings: what `SET`, `RESET`, `SHOW`, `current_setting()` and `set_config()` read
//! and write.
//!
//! Clients set parameters at connect time (`SET extra_float_digits = 3`, `SET application_name`,
//! `SET search_path`) and read others (`SHOW server_version_num`, `SHOW transaction_isolation`).
//! Every parameter a client may ask about is declared once in [`PARAMETERS`], with its default
//! and what values it takes; a parameter polygate does not know is an error (42704), as in
//! PostgreSQL, except for dotted custom names (`myapp.tenant`), which PostgreSQL also accepts.

use std::collections::BTreeMap;
use std::time::Duration;

/// The PostgreSQL version polygate presents itself as: clients choose their queries by it.
pub const SERVER_VERSION: &str = concat!("16.4 (polygate ", env!("CARGO_PKG_VERSION"), ")");
/// [`SERVER_VERSION`] as `server_version_num`.
pub const SERVER_VERSION_NUM: &str = "160004";

/// What values a parameter takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    /// Any text.
    Text,
    /// `on`/`off` and PostgreSQL's other spellings of a boolean.
    Bool,
    /// An integer within bounds.
    Integer(i64, i64),
    /// A duration, in milliseconds when no unit is given.
    Milliseconds,
    /// One of these words (case-insensitive).
    OneOf(&'static [&'static str]),
    /// Only this value: a read-only gateway can be asked to stay read-only, nothing else.
    Only(&'static str),
    /// Reported, never set.
    Fixed,
}

/// One parameter.
#[derive(Debug)]
struct Parameter {
    /// Lowercase: parameter names are case-insensitive.
    name: &'static str,
    default: &'static str,
    kind: Kind,
    /// Sent to the client as a ParameterStatus when it changes (PostgreSQL's `GUC_REPORT`).
    reported: bool,
}

const fn parameter(name: &'static str, default: &'static str, kind: Kind) -> Parameter {
    Parameter {
        name,
        default,
        kind,
        reported: false,
    }
}

const fn reported(name: &'static str, default: &'static str, kind: Kind) -> Parameter {
    Parameter {
        name,
        default,
        kind,
        reported: true,
    }
}

/// The isolation levels a transaction may ask for (all read the same committed data here).
const ISOLATION_LEVELS: &[&str] = &[
    "read committed",
    "read uncommitted",
    "repeatable read",
    "serializable",
];

/// Every parameter polygate knows, in name order.
const PARAMETERS: &[Parameter] = &[
    reported("application_name", "", Kind::Text),
    reported("bytea_output", "hex", Kind::OneOf(&["hex", "escape"])),
    reported(
        "client_encoding",
        "UTF8",
        Kind::OneOf(&["utf8", "utf-8", "unicode"]),
    ),
    parameter("client_min_messages", "notice", Kind::Text),
    reported("datestyle", "ISO, MDY", Kind::Text),
    parameter(
        "default_transaction_isolation",
        "read committed",
        Kind::OneOf(ISOLATION_LEVELS),
    ),
    reported("default_transaction_read_only", "on", Kind::Only("on")),
    reported("extra_float_digits", "1", Kind::Integer(-15, 3)),
    parameter(
        "idle_in_transaction_session_timeout",
        "0",
        Kind::Milliseconds,
    ),
    parameter("idle_session_timeout", "0", Kind::Milliseconds),
    reported("in_hot_standby", "on", Kind::Fixed),
    reported("integer_datetimes", "on", Kind::Fixed),
    reported("intervalstyle", "postgres", Kind::Text),
    reported("is_superuser", "off", Kind::Fixed),
    parameter("jit", "off", Kind::Bool),
    parameter("lc_collate", "C.UTF-8", Kind::Fixed),
    parameter("lc_ctype", "C.UTF-8", Kind::Fixed),
    parameter("lc_messages", "C.UTF-8", Kind::Text),
    parameter("lc_monetary", "C.UTF-8", Kind::Text),
    parameter("lc_numeric", "C.UTF-8", Kind::Text),
    parameter("lc_time", "C.UTF-8", Kind::Text),
    parameter("lock_timeout", "0", Kind::Milliseconds),
    parameter("max_identifier_length", "63", Kind::Fixed),
    parameter("max_index_keys", "32", Kind::Fixed),
    parameter("row_security", "on", Kind::Bool),
    reported("search_path", "\"$user\", public", Kind::Text),
    reported("server_encoding", "UTF8", Kind::Fixed),
    reported("server_version", SERVER_VERSION, Kind::Fixed),
    parameter("server_version_num", SERVER_VERSION_NUM, Kind::Fixed),
    reported("session_authorization", "", Kind::Fixed),
    reported("standard_conforming_strings", "on", Kind::Only("on")),
    parameter("statement_timeout", "0", Kind::Milliseconds),
    parameter("synchronize_seqscans", "on", Kind::Bool),
    reported("timezone", "UTC", Kind::Text),
    parameter("transaction_deferrable", "off", Kind::Bool),
    parameter(
        "transaction_isolation",
        "read committed",
        Kind::OneOf(ISOLATION_LEVELS),
    ),
    parameter("transaction_read_only", "on", Kind::Only("on")),
    parameter("work_mem", "4096", Kind::Text),
];

/// Aliases PostgreSQL accepts for a parameter's name.
fn canonical(name: &str) -> String {
    let name = name.to_ascii_lowercase();
    match name.as_str() {
        "time zone" | "time_zone" => "timezone".to_owned(),
        "names" => "client_encoding".to_owned(),
        _ => name,
    }
}

fn find(name: &str) -> Option<&'static Parameter> {
    PARAMETERS
        .binary_search_by(|p| p.name.cmp(name))
        .ok()
        .and_then(|i| PARAMETERS.get(i))
}

/// Why a setting was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingError {
    /// No such parameter (42704).
    #[error("unrecognized configuration parameter \"{0}\"")]
    Unknown(String),
    /// A parameter that reports the server and cannot be set (55P02).
    #[error("parameter \"{0}\" cannot be changed")]
    Fixed(String),
    /// A value the parameter does not take (22023).
    #[error("invalid value for parameter \"{name}\": \"{value}\"")]
    Invalid {
        /// The parameter.
        name: String,
        /// The value given.
        value: String,
    },
    /// An attempt to make the session writable (25006).
    #[error("cannot set transaction read-write mode: polygate is read-only")]
    ReadWrite,
    /// A parameter that exists but that clients may not set (42501).
    #[error("permission denied to set parameter \"{0}\"")]
    PermissionDenied(String),
    /// A number outside the range the parameter takes (22023).
    #[error("{value} is outside the valid range for parameter \"{name}\" ({min} .. {max})")]
    OutOfRange {
        /// The parameter.
        name: String,
        /// The value given.
        value: String,
        /// The smallest value allowed.
        min: u64,
        /// The largest value allowed.
        max: u64,
    },
}

impl SettingError {
    /// The SQLSTATE a client receives.
    pub fn code(&self) -> &'static str {
        match self {
            Self::Unknown(_) => "42704",
            Self::Fixed(_) => "55P02",
            Self::Invalid { .. } => "22023",
            Self::ReadWrite => "25006",
            Self::PermissionDenied(_) => "42501",
            Self::OutOfRange { .. } => "22023",
        }
    }
}

/// Gateway-wide defaults a session starts from (from catalog.toml's `[gateway]`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SessionDefaults {
    /// `statement_timeout`; `None` for no limit.
    pub statement_timeout: Option<Duration>,
    /// `idle_session_timeout`; `None` for no limit.
    pub idle_session_timeout: Option<Duration>,
}

/// One session's parameters: the defaults, overridden by what the client set.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Values that differ from the built-in default, by canonical name.
    values: BTreeMap<String, String>,
    /// What `RESET` returns to: the gateway's defaults and the start-up packet's options.
    reset_values: BTreeMap<String, String>,
}

impl Settings {
    /// A new session's settings.
    pub fn new(defaults: &SessionDefaults) -> Self {
        let mut values = BTreeMap::new();
        if let Some(timeout) = defaults.statement_timeout {
            values.insert("statement_timeout".to_owned(), millis(timeout));
        }
        if let Some(timeout) = defaults.idle_session_timeout {
            values.insert("idle_session_timeout".to_owned(), millis(timeout));
        }
        Self {
            reset_values: values.clone(),
            values,
        }
    }

    /// Applies the options of the client's start-up packet (`application_name`, `DateStyle`,
    /// `options=-c name=value` arrive this way). Unknown ones are skipped, as a setting the
    /// gateway does not know should not refuse the connection.
    pub fn apply_startup<'a>(&mut self, options: impl IntoIterator<Item = (&'a str, &'a str)>) {
        for (name, value) in options {
            if matches!(name, "user" | "database" | "options" | "replication") {
                continue;
            }
            if self.set(name, value).is_ok() {
                let name = canonical(name);
                if let Some(value) = self.values.get(&name) {
                    self.reset_values.insert(name, value.clone());
                }
            }
        }
    }

    /// `SET name = value`. Returns the parameter's reported name and new value when clients
    /// must be told (a ParameterStatus message).
    pub fn set(
        &mut self,
        name: &str,
        value: &str,
    ) -> Result<Option<(String, String)>, SettingError> {
        let name = canonical(name);
        let Some(parameter) = find(&name) else {
            if name.contains('.') {
                self.values.insert(name, value.to_owned());
                return Ok(None);
            }
            return Err(SettingError::Unknown(name));
        };
        let value = normalize(parameter, value)?;
        self.values.insert(name, value.clone());
        Ok(parameter
            .reported
            .then(|| (reported_name(parameter.name), value)))
    }

    /// `RESET name`.
    pub fn reset(&mut self, name: &str) -> Result<Option<(String, String)>, SettingError> {
        let name = canonical(name);
        let parameter = find(&name);
        if parameter.is_none() && !name.contains('.') {
            return Err(SettingError::Unknown(name));
        }
        if parameter.is_some_and(|p| p.kind == Kind::Fixed) {
            return Err(SettingError::Fixed(name));
        }
        match self.reset_values.get(&name) {
            Some(value) => self.values.insert(name.clone(), value.clone()),
            None => self.values.remove(&name),
        };
        Ok(parameter
            .filter(|p| p.reported)
            .map(|p| (reported_name(p.name), self.value(p))))
    }

    /// `RESET ALL`.
    pub fn reset_all(&mut self) -> Vec<(String, String)> {
        let changed: Vec<String> = self.values.keys().cloned().collect();
        self.values = self.reset_values.clone();
        changed
            .iter()
            .filter_map(|name| find(name))
            .filter(|p| p.reported && p.kind != Kind::Fixed)
            .map(|p| (reported_name(p.name), self.value(p)))
            .collect()
    }

    /// Puts `name` back to its value in `from` (the end of a `SET LOCAL`).
    pub fn restore(&mut self, name: &str, from: &Settings) {
        let name = canonical(name);
        match from.values.get(&name) {
            Some(value) => self.values.insert(name, value.clone()),
            None => self.values.remove(&name),
        };
    }

    /// `SHOW name` and `current_setting(name)`.
    pub fn get(&self, name: &str) -> Result<String, SettingError> {
        let name = canonical(name);
        match find(&name) {
            Some(parameter) => Ok(self.value(parameter)),
            None => self
                .values
                .get(&name)
                .cloned()
                .ok_or(SettingError::Unknown(name)),
        }
    }

    /// `SHOW ALL` and `pg_settings`: every parameter with its value, in name order.
    pub fn all(&self) -> Vec<(&'static str, String)> {
        PARAMETERS.iter().map(|p| (p.name, self.value(p))).collect()
    }

    /// The parameters sent to a client when it connects.
    pub fn reported(&self) -> Vec<(String, String)> {
        PARAMETERS
            .iter()
            .filter(|p| p.reported)
            .map(|p| (reported_name(p.name), self.value(p)))
            .collect()
    }

    fn value(&self, parameter: &Parameter) -> String {
        self.values
            .get(parameter.name)
            .cloned()
            .unwrap_or_else(|| parameter.default.to_owned())
    }

    /// `statement_timeout`, `None` when 0 (no limit).
    pub fn statement_timeout(&self) -> Option<Duration> {
        self.duration("statement_timeout")
    }

    /// `idle_session_timeout`, `None` when 0 (no limit).
    pub fn idle_session_timeout(&self) -> Option<Duration> {
        self.duration("idle_session_timeout")
    }

    fn duration(&self, name: &str) -> Option<Duration> {
        let value = self.get(name).ok()?;
        let ms: u64 = value.parse().ok()?;
        (ms > 0).then(|| Duration::from_millis(ms))
    }

    /// The schemas of `search_path`, in order, without quotes (`"$user"` included as `$user`).
    pub fn search_path(&self) -> Vec<String> {
        let value = self.get("search_path").unwrap_or_default();
        value
            .split(',')
            .map(|s| s.trim())
            .filter(|s| !s.is_empty())
            .map(
                |s| match s.strip_prefix('"').and_then(|s| s.strip_suffix('"')) {
                    Some(quoted) => quoted.replace("\"\"", "\""),
                    None => s.to_ascii_lowercase(),
                },
            )
            .collect()
    }
}

/// The spelling PostgreSQL reports a parameter under (`DateStyle`, `TimeZone`, ...).
fn reported_name(name: &str) -> String {
    match name {
        "datestyle" => "DateStyle",
        "intervalstyle" => "IntervalStyle",
        "timezone" => "TimeZone",
        other => other,
    }
    .to_owned()
}

fn millis(duration: Duration) -> String {
    duration.as_millis().to_string()
}

/// Checks `value` against what `parameter` takes and returns it as SHOW will print it.
fn normalize(parameter: &Parameter, value: &str) -> Result<String, SettingError> {
    let invalid = || SettingError::Invalid {
        name: parameter.name.to_owned(),
        value: value.to_owned(),
    };
    let trimmed = value.trim();
    match parameter.kind {
        Kind::Text => Ok(value.to_owned()),
        Kind::Fixed => Err(SettingError::Fixed(parameter.name.to_owned())),
        Kind::Bool => parse_bool(trimmed)
            .map(|on| if on { "on" } else { "off" }.to_owned())
            .ok_or_else(invalid),
        Kind::Only(only) => match parse_bool(trimmed) {
            Some(on) if on == (only == "on") => Ok(only.to_owned()),
            Some(_) => Err(SettingError::ReadWrite),
            None => Err(invalid()),
        },
        Kind::Integer(low, high) => match trimmed.parse::<i64>() {
            Ok(n) if (low..=high).contains(&n) => Ok(n.to_string()),
            _ => Err(invalid()),
        },
        Kind::Milliseconds => parse_milliseconds(trimmed)
            .map(|ms| ms.to_string())
            .ok_or_else(invalid),
        Kind::OneOf(choices) => {
            let lower = trimmed.to_ascii_lowercase();
            if choices.contains(&lower.as_str()) {
                Ok(match parameter.name {
                    "client_encoding" => "UTF8".to_owned(),
                    _ => lower,
                })
            } else {
                Err(invalid())
            }
        }
    }
}

/// PostgreSQL's spellings of a boolean parameter.
fn parse_bool(value: &str) -> Option<bool> {
    match value.to_ascii_lowercase().as_str() {
        "on" | "true" | "yes" | "1" | "t" | "y" => Some(true),
        "off" | "false" | "no" | "0" | "f" | "n" => Some(false),
        _ => None,
    }
}

/// A duration as PostgreSQL writes one: `5000` (milliseconds), `5s`, `1.5min`, `100 ms`.
pub fn parse_milliseconds(value: &str) -> Option<u64> {
    let value = value.trim();
    let split = value
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(value.len());
    let (number, unit) = value.split_at(split);
    let number: f64 = number.parse().ok()?;
    let scale = match unit.trim() {
        "" | "ms" => 1.0,
        "us" => 0.001,
        "s" => 1_000.0,
        "min" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        _ => return None,
    };
    let ms = (number * scale).round();
    (ms.is_finite() && ms >= 0.0 && ms <= i32::MAX as f64).then_some(ms as u64)
}

#[cfg(test)]
mod tests;
