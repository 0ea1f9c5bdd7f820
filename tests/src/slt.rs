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

/// A runner whose connections go to the server at `url`, as `engine`, with `labels`.
pub fn runner(
    url: &str,
    engine: &'static str,
    labels: &[&str],
) -> sqllogictest::Runner<PgSlt, impl sqllogictest::MakeConnection<Conn = PgSlt>> {
    let url = url.to_owned();
    let mut runner = sqllogictest::Runner::new(move || {
        let url = url.clone();
        async move {
            let client = crate::backends::connect(&url)
                .await
                .map_err(|e| std::io::Error::other(e.to_string()))
                .expect("connects");
            Ok::<_, SltError>(PgSlt::new(client, engine).normalized())
        }
    });
    for label in labels {
        runner.add_label(label);
    }
    runner
}

/// Runs `file` against the server at `url`, with `labels`.
pub async fn run_file(
    url: &str,
    engine: &'static str,
    labels: &[&str],
    file: &std::path::Path,
) -> Result<(), String> {
    runner(url, engine, labels)
        .run_file_async(file)
        .await
        .map_err(|e| format!("{} on {engine}: {e}", file.display()))
}

/// Rewrites the expected output of `file` with what the server at `url` returns.
pub async fn complete_file(url: &str, file: &std::path::Path) -> anyhow::Result<()> {
    runner(url, "polygate", &["polygate", "pushdown"])
        .update_test_file(
            file,
            " ",
            sqllogictest::default_validator,
            sqllogictest::default_normalizer,
            sqllogictest::default_column_validator,
        )
        .await
        .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))
}

/// Runs every `.slt` file of `root` three times with the same expected rows: against the
/// reference server at `direct` (label `postgres`), through the gateway at `pushed` (labels
/// `polygate`, `pushdown`) and through the gateway at `local`, whose sources say
/// `pushdown = false` (labels `polygate`, `local`). Returns the failures.
///
/// `POLYGATE_SLT_COMPLETE=1` first rewrites each file's expected output with the pushdown
/// gateway's, which the three runs then hold against the reference.
pub async fn run_three_ways(
    root: &std::path::Path,
    direct: &str,
    pushed: &str,
    local: &str,
) -> anyhow::Result<Vec<String>> {
    let mut files: Vec<_> = std::fs::read_dir(root)?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e == "slt"))
        .collect();
    files.sort();
    anyhow::ensure!(!files.is_empty(), "no .slt files in {}", root.display());
    let mut failures = Vec::new();
    for file in &files {
        if std::env::var_os("POLYGATE_SLT_COMPLETE").is_some() {
            complete_file(pushed, file).await?;
        }
        let runs = [
            run_file(direct, "postgres", &["postgres"], file).await,
            run_file(pushed, "polygate", &["polygate", "pushdown"], file).await,
            run_file(local, "polygate", &["polygate", "local"], file).await,
        ];
        failures.extend(runs.into_iter().filter_map(Result::err));
    }
    Ok(failures)
}
