//! sqllogictest over the PostgreSQL protocol, as DataFusion runs its files against PostgreSQL.

use std::time::Duration;

use async_trait::async_trait;
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType};
use tokio_postgres::{Client, SimpleQueryMessage};

/// A sqllogictest connection: statements go through the simple query protocol, values come
/// back as PostgreSQL's text format, NULL as `NULL`.
///
/// A value spanning several lines (an EXPLAIN plan) becomes one row per line, so that plans
/// read in `.slt` files as they print.
pub struct PgSlt {
    client: Client,
    engine: &'static str,
    normalize: bool,
}

impl PgSlt {
    /// Wraps `client`; `engine` names it in `onlyif`/`skipif` records.
    pub fn new(client: Client, engine: &'static str) -> Self {
        Self {
            client,
            engine,
            normalize: false,
        }
    }

    /// Compares values rather than spellings (see [`normalize`]), for files run against
    /// both polygate and PostgreSQL itself.
    pub fn normalized(mut self) -> Self {
        self.normalize = true;
        self
    }
}

/// A text value in a form that compares values, not spellings: polygate's text encoding
/// prints float8 35 as `35.0` and timestamps with `.000000`, PostgreSQL `35` and no fraction;
/// sums of floats may differ in their last bits with the order of addition. Exact encodings
/// are pinned by the client-compatibility tests.
pub fn normalize(cell: &str) -> String {
    let numeric = cell.contains(['.', 'e', 'E']) || cell.ends_with("Infinity") || cell == "NaN";
    if numeric && let Ok(float) = cell.parse::<f64>() {
        if !float.is_finite() {
            return format!("{float}");
        }
        let fixed = format!("{float:.9}");
        let trimmed = fixed.trim_end_matches('0').trim_end_matches('.');
        return if trimmed == "-0" { "0" } else { trimmed }.to_owned();
    }
    let bytes = cell.as_bytes();
    if bytes.len() > 19 && bytes[4] == b'-' && bytes[10] == b' ' && bytes[19] == b'.' {
        let (stamp, zone) = cell.split_at(19);
        let zone = zone.trim_start_matches(|c: char| c == '.' || c.is_ascii_digit());
        let fraction = cell[19..cell.len() - zone.len()].trim_end_matches('0');
        let fraction = if fraction == "." { "" } else { fraction };
        return format!("{stamp}{fraction}{zone}");
    }
    cell.to_owned()
}

/// A failed statement, displayed with the server's message (tokio-postgres alone says
/// "db error").
#[derive(Debug)]
pub struct SltError(pub tokio_postgres::Error);

impl std::fmt::Display for SltError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0.as_db_error() {
            Some(db) => write!(f, "{}: {}", db.code().code(), db.message()),
            None => write!(f, "{}", self.0),
        }
    }
}

impl std::error::Error for SltError {}

#[async_trait]
impl AsyncDB for PgSlt {
    type Error = SltError;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, Self::Error> {
        let messages = self.client.simple_query(sql).await.map_err(SltError)?;
        let mut rows = Vec::new();
        let mut columns = None;
        let mut affected = 0;
        for message in messages {
            match message {
                SimpleQueryMessage::RowDescription(description) => {
                    columns = Some(description.len())
                }
                SimpleQueryMessage::Row(row) => {
                    let mut cells: Vec<String> = (0..row.len())
                        .map(|i| match row.get(i) {
                            None => "NULL".to_owned(),
                            Some("") => "(empty)".to_owned(),
                            Some(value) if self.normalize => normalize(value),
                            Some(value) => value.to_owned(),
                        })
                        .collect();
                    // Lines after the first of a multi-line value, each a row of its own.
                    let mut continued = Vec::new();
                    for cell in &mut cells {
                        if let Some((first, rest)) = cell.split_once('\n') {
                            continued.extend(rest.lines().map(|l| vec![l.trim_end().to_owned()]));
                            *cell = first.trim_end().to_owned();
                        }
                    }
                    rows.push(cells);
                    rows.extend(continued);
                }
                SimpleQueryMessage::CommandComplete(count) => affected = count,
                _ => {}
            }
        }
        Ok(match columns {
            Some(n) => DBOutput::Rows {
                types: vec![DefaultColumnType::Any; n],
                rows,
            },
            None => DBOutput::StatementComplete(affected),
        })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        self.engine
    }

    async fn sleep(duration: Duration) {
        tokio::time::sleep(duration).await;
    }

    fn error_sql_state(error: &Self::Error) -> Option<String> {
        error.0.code().map(|code| code.code().to_owned())
    }
}
