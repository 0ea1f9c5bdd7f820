//! Authentication and TLS: SCRAM-SHA-256 with passwords and with verifiers (polygate's and
//! PostgreSQL's own), failures answered 28P01, and TLS served, verified by libpq, and required.

use std::process::Command;
use std::sync::Arc;

use polygate::pg::Verifier;
use polygate_tests::backends::{self, Backend, server_message, unique_name};
use polygate_tests::gateway::TestGateway;
use polygate_tests::tls::{make_ca, make_server_certificate};

async fn connect_as(
    gateway: &TestGateway,
    user: &str,
    password: &str,
) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
    let url = format!(
        "host=127.0.0.1 port={} user={user} password={password} dbname=polygate",
        gateway.port()
    );
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    Ok(client)
}

fn sqlstate(error: &tokio_postgres::Error) -> Option<&str> {
    error.code().map(|c| c.code())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn scram_accepts_right_passwords_and_verifiers_and_refuses_the_rest() -> anyhow::Result<()> {
    let verifier = Verifier::derive("builder", b"0123456789abcdef".to_vec(), 4096).to_string();
    let gateway = TestGateway::demo_with(&format!(
        "auth = \"scram-sha-256\"\n[gateway.users]\nalice = \"wonderland\"\nbob = \"{verifier}\"\n"
    ))
    .await?;

    let alice = connect_as(&gateway, "alice", "wonderland").await?;
    let user: String = alice.query_one("SELECT current_user", &[]).await?.get(0);
    assert_eq!(user, "alice");
    let bob = connect_as(&gateway, "bob", "builder").await?;
    let rows = polygate_tests::text_rows(&bob, "SELECT count(*) FROM shop.customers").await?;
    assert_eq!(rows, [[Some("10".to_owned())]]);

    for (user, password) in [
        ("alice", "wonderlan"),
        ("bob", "wonderland"),
        ("mallory", "x"),
    ] {
        let error = connect_as(&gateway, user, password)
            .await
            .err()
            .unwrap_or_else(|| panic!("{user} with {password:?} was let in"));
        assert_eq!(
            sqlstate(&error),
            Some("28P01"),
            "{user}: {}",
            server_message(&error)
        );
        assert_eq!(
            server_message(&error),
            format!("password authentication failed for user \"{user}\"")
        );
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn verifiers_made_by_postgresql_authenticate() -> anyhow::Result<()> {
    let Some(admin_url) = backends::require(Backend::Postgres, "postgresql_verifiers") else {
        return Ok(());
    };
    let admin = backends::connect(&admin_url).await?;
    let role = format!("role_{}", unique_name("scram"));
    admin
        .batch_execute(&format!(
            "SET password_encryption = 'scram-sha-256'; CREATE ROLE {role} PASSWORD 'hunter2'"
        ))
        .await?;
    let verifier: String = admin
        .query_one(
            "SELECT rolpassword FROM pg_authid WHERE rolname = $1",
            &[&role],
        )
        .await?
        .get(0);
    admin.batch_execute(&format!("DROP ROLE {role}")).await?;
    assert!(verifier.starts_with("SCRAM-SHA-256$4096:"), "{verifier}");

    let gateway = TestGateway::demo_with(&format!(
        "auth = \"scram-sha-256\"\n[gateway.users]\ncarol = \"{verifier}\"\n"
    ))
    .await?;
    let carol = connect_as(&gateway, "carol", "hunter2").await?;
    carol.simple_query("SELECT 1").await?;
    let error = connect_as(&gateway, "carol", "hunter3")
        .await
        .expect_err("refused");
    assert_eq!(sqlstate(&error), Some("28P01"));
    Ok(())
}

/// psql with `conninfo` and `PGPASSWORD`; its output, or its error output when it fails.
fn psql(conninfo: &str, password: &str, sql: &str) -> anyhow::Result<Result<String, String>> {
    let output = Command::new("psql")
        .args(["-X", "-A", "-t", "-d", conninfo, "-c", sql])
        .env("PGPASSWORD", password)
        .env("PGCONNECT_TIMEOUT", "10")
        .output()?;
    let stdout = String::from_utf8(output.stdout)?;
    let stderr = String::from_utf8(output.stderr)?;
    Ok(if output.status.success() {
        Ok(stdout)
    } else {
        Err(stderr)
    })
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls_is_served_verified_and_required() -> anyhow::Result<()> {
    let certs = tempfile::tempdir()?;
    make_ca(certs.path(), "test-ca")?;
    make_server_certificate(certs.path(), "test-ca")?;
    let gateway = TestGateway::demo_with(&format!(
        "auth = \"scram-sha-256\"\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"\ntls_required = true\n\
         [gateway.users]\nalice = \"wonderland\"\n",
        certs.path().join("server.crt").display(),
        certs.path().join("server.key").display(),
    ))
    .await?;
    let base = format!(
        "host=127.0.0.1 port={} user=alice dbname=polygate",
        gateway.port()
    );
    let root = certs.path().join("test-ca.crt");

    // libpq verifies the certificate against the CA and the host name.
    let verified = format!("{base} sslmode=verify-full sslrootcert={}", root.display());
    let answer = psql(
        &verified,
        "wonderland",
        "SELECT count(*) FROM shop.customers",
    )?
    .map_err(|e| anyhow::anyhow!("psql: {e}"))?;
    assert_eq!(answer.trim(), "10");

    // Without TLS: refused, before any password is asked for.
    let refused = psql(&format!("{base} sslmode=disable"), "wonderland", "SELECT 1")?
        .expect_err("a connection without TLS is refused");
    assert!(refused.contains("requires TLS"), "{refused}");

    // TLS with a wrong password is still a wrong password.
    let wrong = psql(&verified, "wonderlan", "SELECT 1")?.expect_err("wrong password");
    assert!(wrong.contains("password authentication failed"), "{wrong}");
    Ok(())
}

/// Bytes sent in the clear between an SSLRequest and the TLS handshake could come from anyone
/// on the path. A client that sends its start-up message there, as an attacker injecting it
/// would, gets a FATAL error over TLS and a closed connection, never an authentication request
/// for the injected start-up message (CVE-2021-23214 in PostgreSQL).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plaintext_after_an_ssl_request_is_never_read() -> anyhow::Result<()> {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    use tokio_rustls::rustls::pki_types::pem::PemObject;
    use tokio_rustls::rustls::pki_types::{CertificateDer, ServerName};
    use tokio_rustls::rustls::{ClientConfig, RootCertStore};

    let certs = tempfile::tempdir()?;
    make_ca(certs.path(), "test-ca")?;
    make_server_certificate(certs.path(), "test-ca")?;
    let gateway = TestGateway::demo_with(&format!(
        "auth = \"scram-sha-256\"\ntls_cert_file = \"{}\"\ntls_key_file = \"{}\"\n\
         [gateway.users]\nalice = \"wonderland\"\n",
        certs.path().join("server.crt").display(),
        certs.path().join("server.key").display(),
    ))
    .await?;

    // SSLRequest, then a start-up message in the same packet, in the clear.
    let mut packet = Vec::new();
    packet.extend_from_slice(&8_i32.to_be_bytes());
    packet.extend_from_slice(&80_877_103_i32.to_be_bytes());
    let mut startup = Vec::new();
    startup.extend_from_slice(&196_608_i32.to_be_bytes());
    for part in ["user", "alice", "database", "polygate", ""] {
        startup.extend_from_slice(part.as_bytes());
        startup.push(0);
    }
    packet.extend_from_slice(&(startup.len() as i32 + 4).to_be_bytes());
    packet.extend_from_slice(&startup);
    let mut tcp = tokio::net::TcpStream::connect(("127.0.0.1", gateway.port())).await?;
    tcp.write_all(&packet).await?;
    let mut answer = [0_u8; 1];
    tcp.read_exact(&mut answer).await?;
    assert_eq!(answer[0], b'S', "TLS is accepted");

    let mut roots = RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(
        certs.path().join("test-ca.crt"),
    )?)?;
    let config = ClientConfig::builder_with_provider(Arc::new(
        tokio_rustls::rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let mut tls = connector
        .connect(ServerName::try_from("localhost")?, tcp)
        .await?;
    let mut received = Vec::new();
    let read = tokio::time::timeout(
        std::time::Duration::from_secs(10),
        tls.read_to_end(&mut received),
    )
    .await;
    // The server may close without a TLS close_notify; what it sent before counts.
    assert!(read.is_ok(), "the connection is closed");
    assert_eq!(
        received.first(),
        Some(&b'E'),
        "an ErrorResponse: {received:?}"
    );
    let text = String::from_utf8_lossy(&received);
    assert!(text.contains("08P01"), "{text}");
    assert!(
        text.contains("received unencrypted data after SSL request"),
        "{text}"
    );
    Ok(())
}
