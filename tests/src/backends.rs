//! The real servers backend tests run against.
//!
//! `tests/run.sh` starts them and exports their addresses. Without them, plain `cargo test`
//! still runs every test that needs no server and prints, loudly, which tests it skipped. Under
//! CI (`CI=true`) a missing server fails the test instead: a green run must mean the backend
//! tests ran.

use std::sync::atomic::{AtomicU32, Ordering};

/// A kind of server tests can require.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// PostgreSQL.
    Postgres,
    /// A MongoDB-wire server.
    Mongo,
    /// An Elasticsearch/OpenSearch-compatible server.
    Search,
}

impl Backend {
    /// The environment variable holding the server's URL.
    pub fn variable(self) -> &'static str {
        match self {
            Self::Postgres => "POLYGATE_TEST_PG_URL",
            Self::Mongo => "POLYGATE_TEST_MONGO_URL",
            Self::Search => "POLYGATE_TEST_ES_URL",
        }
    }
}

/// The URL of `backend`, or `None` (after saying so) when the test must be skipped.
///
/// # Panics
/// Under CI, when the server is not configured.
pub fn require(backend: Backend, test: &str) -> Option<String> {
    match std::env::var(backend.variable()) {
        Ok(url) if !url.is_empty() => Some(url),
        _ => {
            let message = format!(
                "{test} needs {backend:?}: {} is not set (tests/run.sh starts the servers)",
                backend.variable()
            );
            if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
                panic!("{message}; under CI a missing server is a failure");
            }
            loud(&format!("SKIPPED: {message}"));
            None
        }
    }
}

/// Writes a line to the terminal even when the test harness captures test output (it
/// captures `eprintln!`, not writes to the stderr handle), so that skips are never silent.
pub fn loud(line: &str) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{line}");
}

/// A name no other test (of this run or an earlier one) uses, for a database or a prefix.
pub fn unique_name(test: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "pg_{}_{}_{}_{}",
        test.to_ascii_lowercase()
            .replace(|c: char| !c.is_ascii_alphanumeric(), "_"),
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed),
        nanos % 100_000
    )
}

/// A PostgreSQL database of its own for one test, dropped when the test ends.
pub struct PgDatabase {
    admin_url: String,
    name: String,
    /// A connection string for the test's database.
    pub url: String,
}

impl PgDatabase {
    /// Creates a fresh database on the server at `admin_url`.
    pub async fn create(admin_url: &str, test: &str) -> anyhow::Result<Self> {
        let name = unique_name(test);
        let admin = connect(admin_url).await?;
        admin
            .batch_execute(&format!("CREATE DATABASE \"{name}\""))
            .await?;
        let url = with_database(admin_url, &name);
        Ok(Self {
            admin_url: admin_url.to_owned(),
            name,
            url,
        })
    }

    /// A client connected to the test's database.
    pub async fn client(&self) -> anyhow::Result<tokio_postgres::Client> {
        connect(&self.url).await
    }

    /// Drops the database. Call at the end of a test; a test that panics leaves it behind,
    /// under a name no later run reuses.
    pub async fn drop_database(self) -> anyhow::Result<()> {
        let admin = connect(&self.admin_url).await?;
        admin
            .batch_execute(&format!(
                "DROP DATABASE IF EXISTS \"{}\" WITH (FORCE)",
                self.name
            ))
            .await?;
        Ok(())
    }
}

/// The server's message of a failed statement, or an empty string for a failure that is not
/// the server's.
pub fn server_message(error: &tokio_postgres::Error) -> String {
    error
        .as_db_error()
        .map(|e| e.message().to_owned())
        .unwrap_or_default()
}

/// Connects to `url` and drives the connection in the background.
pub async fn connect(url: &str) -> anyhow::Result<tokio_postgres::Client> {
    let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await?;
    tokio::spawn(async move {
        if let Err(error) = connection.await {
            eprintln!("connection to {url:?} ended: {error}", url = "server");
        }
    });
    Ok(client)
}

/// `url` with its database replaced by `database`.
fn with_database(url: &str, database: &str) -> String {
    // postgres://user@host:port/db?params
    let (base, query) = url
        .split_once('?')
        .map_or((url, None), |(b, q)| (b, Some(q)));
    let scheme_end = base.find("://").map_or(0, |i| i + 3);
    let base = match base[scheme_end..].find('/') {
        Some(slash) => &base[..scheme_end + slash],
        None => base,
    };
    match query {
        Some(q) => format!("{base}/{database}?{q}"),
        None => format!("{base}/{database}"),
    }
}

/// polygate's sessions on PostgreSQL database `database` whose state is one of `states`
/// (`active`, `idle in transaction`, ...), or all of them when `states` is empty, as
/// `pg_stat_activity` reports them.
pub async fn gateway_sessions(
    admin: &tokio_postgres::Client,
    database: &str,
    states: &[&str],
) -> anyhow::Result<i64> {
    let states: Vec<String> = states.iter().map(|s| (*s).to_owned()).collect();
    Ok(admin
        .query_one(
            "SELECT count(*) FROM pg_stat_activity \
             WHERE datname = $1 AND application_name = 'polygate' \
             AND (cardinality($2::text[]) = 0 OR state = ANY($2))",
            &[&database, &states],
        )
        .await?
        .get(0))
}

/// Polls `probe` until `done` holds for its count, for at most `within`; returns how long it
/// took, or an error naming `what` with the last count.
pub async fn wait_for<F, Fut>(
    within: std::time::Duration,
    what: &str,
    mut probe: F,
    done: impl Fn(i64) -> bool,
) -> anyhow::Result<std::time::Duration>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = anyhow::Result<i64>>,
{
    let started = std::time::Instant::now();
    loop {
        let count = probe().await?;
        if done(count) {
            return Ok(started.elapsed());
        }
        anyhow::ensure!(
            started.elapsed() < within,
            "{what} (count {count} after {within:?})"
        );
        tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replaces_the_database_of_a_url() {
        let check = |url: &str, expected: &str| assert_eq!(with_database(url, "t1"), expected);
        check(
            "postgres://postgres@127.0.0.1:5/postgres",
            "postgres://postgres@127.0.0.1:5/t1",
        );
        check(
            "postgres://u:p@h:5/db?sslmode=disable",
            "postgres://u:p@h:5/t1?sslmode=disable",
        );
        check("postgres://h:5", "postgres://h:5/t1");
    }
}
