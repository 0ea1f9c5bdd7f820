//! TLS between polygate and PostgreSQL: each `tls` mode against a real server that offers TLS
//! with a certificate from a test CA.
//!
//! The test turns TLS on in the shared test cluster (`ALTER SYSTEM`, reloaded) and turns it
//! off again at the end; clients that do not ask for TLS are unaffected meanwhile.

use std::os::unix::fs::MetadataExt;
use std::path::Path;

use polygate_tests::backends::{self, Backend, PgDatabase};
use polygate_tests::gateway::TestGateway;
use polygate_tests::tls::{make_ca, make_server_certificate};
use tokio_postgres::Client;

/// polygate's sessions on `database`, and how many of them use TLS.
async fn polygate_sessions(admin: &Client, database: &str) -> anyhow::Result<(i64, i64)> {
    let row = admin
        .query_one(
            "SELECT count(*), count(*) FILTER (WHERE s.ssl) FROM pg_stat_activity a \
             JOIN pg_stat_ssl s USING (pid) WHERE a.datname = $1 AND a.application_name = 'polygate'",
            &[&database],
        )
        .await?;
    Ok((row.get(0), row.get(1)))
}

async fn set_tls(admin: &Client, dir: Option<&Path>) -> anyhow::Result<()> {
    let quote = |p: &Path| p.display().to_string().replace('\'', "''");
    match dir {
        Some(dir) => {
            let cert = quote(&dir.join("server.crt"));
            let key = quote(&dir.join("server.key"));
            admin
                .batch_execute(&format!("ALTER SYSTEM SET ssl_cert_file = '{cert}'"))
                .await?;
            admin
                .batch_execute(&format!("ALTER SYSTEM SET ssl_key_file = '{key}'"))
                .await?;
            admin.batch_execute("ALTER SYSTEM SET ssl = on").await?;
        }
        None => {
            admin.batch_execute("ALTER SYSTEM RESET ssl").await?;
            admin
                .batch_execute("ALTER SYSTEM RESET ssl_cert_file")
                .await?;
            admin
                .batch_execute("ALTER SYSTEM RESET ssl_key_file")
                .await?;
        }
    }
    admin.batch_execute("SELECT pg_reload_conf()").await?;
    // The reload is asynchronous: wait until new sessions see it.
    let wanted = if dir.is_some() { "on" } else { "off" };
    for _ in 0..50 {
        let fresh = backends::connect(&std::env::var(Backend::Postgres.variable())?).await?;
        let ssl: String = fresh.query_one("SHOW ssl", &[]).await?.get(0);
        if ssl == wanted {
            return Ok(());
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    anyhow::bail!("the server did not turn ssl {wanted}")
}

async fn gateway_for(
    dir: &Path,
    name: &str,
    url: &str,
    options: &str,
) -> anyhow::Result<TestGateway> {
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(
        &path,
        format!("[sources.pg]\nkind = \"postgres\"\nurl = \"{url}\"\n{options}\n"),
    )?;
    TestGateway::start(&path).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_tls_mode_connects_as_it_promises() -> anyhow::Result<()> {
    let Some(admin_url) = backends::require(Backend::Postgres, "postgres_tls") else {
        return Ok(());
    };
    let db = PgDatabase::create(&admin_url, "tls").await?;
    db.client()
        .await?
        .batch_execute("CREATE TABLE t AS SELECT 1::int8 AS id")
        .await?;
    let name = db.url.rsplit('/').next().unwrap_or_default().to_owned();
    let admin = backends::connect(&admin_url).await?;

    // The server reads its key as its own user, from a directory it can enter.
    let certs = tempfile::Builder::new().prefix("polygate-tls").tempdir()?;
    std::fs::set_permissions(
        certs.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )?;
    make_ca(certs.path(), "test-ca")?;
    make_ca(certs.path(), "other-ca")?;
    make_server_certificate(certs.path(), "test-ca")?;
    let data_directory: String = admin.query_one("SHOW data_directory", &[]).await?.get(0);
    let owner = std::fs::metadata(&data_directory)?;
    let key = certs.path().join("server.key");
    std::fs::set_permissions(&key, std::os::unix::fs::PermissionsExt::from_mode(0o600))?;
    std::os::unix::fs::chown(&key, Some(owner.uid()), Some(owner.gid()))?;
    std::os::unix::fs::chown(
        certs.path().join("server.crt"),
        Some(owner.uid()),
        Some(owner.gid()),
    )?;
    set_tls(&admin, Some(certs.path())).await?;

    let result = async {
        let dir = tempfile::tempdir()?;
        let ca = certs.path().join("test-ca.crt");
        let other = certs.path().join("other-ca.crt");
        let cases = [
            (
                "verify-full",
                format!("tls = \"verify-full\"\ntls_ca_file = \"{}\"", ca.display()),
                true,
            ),
            ("require", "tls = \"require\"".to_owned(), true),
            ("prefer", String::new(), true),
            ("disable", "tls = \"disable\"".to_owned(), false),
        ];
        for (mode, options, encrypted) in cases {
            let gateway = gateway_for(dir.path(), mode, &db.url, &options).await?;
            let client = gateway.connect().await?;
            let rows = client.simple_query("SELECT id FROM pg.t").await?;
            anyhow::ensure!(rows.len() > 1, "{mode}: no rows");
            let (sessions, with_tls) = polygate_sessions(&admin, &name).await?;
            anyhow::ensure!(sessions > 0, "{mode}: no polygate session");
            anyhow::ensure!(
                (with_tls == sessions) == encrypted && (with_tls == 0) != encrypted,
                "{mode}: {with_tls} of {sessions} sessions use TLS"
            );
            drop(client);
            drop(gateway);
            tokio::time::sleep(std::time::Duration::from_millis(300)).await;
        }

        // A certificate from another CA is refused: the source is unreachable, not fooled.
        let wrong = format!(
            "tls = \"verify-full\"\ntls_ca_file = \"{}\"",
            other.display()
        );
        let gateway = gateway_for(dir.path(), "wrong", &db.url, &wrong).await?;
        let error = gateway
            .connect()
            .await?
            .simple_query("SELECT id FROM pg.t")
            .await
            .expect_err("an unknown CA is refused");
        let db_error = error
            .as_db_error()
            .map(|e| (e.code().code().to_owned(), e.message().to_owned()));
        let (code, message) = db_error.unwrap_or_default();
        anyhow::ensure!(code.starts_with("08"), "{code}: {message}");
        anyhow::ensure!(message.contains("certificate"), "{message}");

        // verify-full without a CA file is a configuration error naming the key.
        let path = dir.path().join("no-ca.toml");
        std::fs::write(
            &path,
            format!(
                "[sources.pg]\nkind = \"postgres\"\nurl = \"{}\"\ntls = \"verify-full\"\n",
                db.url
            ),
        )?;
        let error = TestGateway::start(&path)
            .await
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        anyhow::ensure!(error.contains("tls_ca_file"), "{error}");
        Ok(())
    }
    .await;
    set_tls(&admin, None).await?;
    result?;
    db.drop_database().await?;
    Ok(())
}
