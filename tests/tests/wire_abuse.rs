//! Messages no well-behaved client sends: each must get PostgreSQL's answer or a protocol
//! error, and neither take the gateway down nor make it allocate by the client's numbers.
//! Every test runs the gateway in this process, so a gateway that aborted would end the test
//! run; each also checks that another session keeps answering and that the process's memory
//! grew by less than 50 MB. The tests take turns ([`one_at_a_time`]), so that one's memory
//! is not counted in another's.

// Test helpers: an index out of range is a failed test, with its line.
#![allow(clippy::indexing_slicing)]

use std::time::Duration;

use polygate_tests::gateway::TestGateway;
use polygate_tests::wire::{Fetched, WireClient, WireFormat};

/// Held by each test for its whole run: the process's memory is measured one test at a time.
async fn one_at_a_time() -> tokio::sync::MutexGuard<'static, ()> {
    static TURN: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());
    TURN.lock().await
}

/// The most this process's resident memory may grow while a hostile message is handled.
const MAX_GROWTH_BYTES: u64 = 50 << 20;

/// This process's resident set size, from /proc.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| {
            rest.trim()
                .trim_end_matches("kB")
                .trim()
                .parse::<u64>()
                .ok()
        })
        .map_or(0, |kb| kb * 1024)
}

/// Another session answers `SELECT 1` within a few seconds.
async fn still_serving(gateway: &TestGateway) -> anyhow::Result<()> {
    let client = tokio::time::timeout(Duration::from_secs(10), gateway.connect()).await??;
    let row =
        tokio::time::timeout(Duration::from_secs(10), client.query_one("SELECT 1", &[])).await??;
    assert_eq!(row.get::<_, i64>(0), 1);
    Ok(())
}

fn texts(fetches: &[Fetched]) -> Vec<String> {
    fetches
        .iter()
        .flat_map(|f| &f.rows)
        .map(|row| String::from_utf8_lossy(row[0].as_deref().unwrap_or(b"NULL")).into_owned())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execute_max_rows_2147483647_sends_the_rows_without_preallocating() -> anyhow::Result<()> {
    let _turn = one_at_a_time().await;
    let gateway = TestGateway::demo().await?;
    let mut client = WireClient::connect(gateway.port(), "polygate").await?;
    let before = rss_bytes();
    let fetches = client
        .query(
            "SELECT 1",
            &[],
            &[],
            WireFormat::Text,
            WireFormat::Text,
            i32::MAX,
        )
        .await?
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    assert_eq!(texts(&fetches), ["1"]);
    assert!(
        !fetches[0].suspended,
        "one row of at most 2147483647 completes the portal"
    );
    let grown = rss_bytes().saturating_sub(before);
    assert!(grown < MAX_GROWTH_BYTES, "grew {grown} bytes");
    still_serving(&gateway).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn execute_max_rows_negative_means_every_row() -> anyhow::Result<()> {
    let _turn = one_at_a_time().await;
    let gateway = TestGateway::demo().await?;
    let mut client = WireClient::connect(gateway.port(), "polygate").await?;
    let before = rss_bytes();
    for max_rows in [-1, i32::MIN] {
        let fetches = client
            .query(
                "SELECT value FROM generate_series(1, 5) ORDER BY value",
                &[],
                &[],
                WireFormat::Text,
                WireFormat::Text,
                max_rows,
            )
            .await?
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        // PostgreSQL reads a row limit of zero or less as no limit: one Execute, all rows.
        assert_eq!(fetches.len(), 1, "max_rows {max_rows}");
        assert_eq!(texts(&fetches), ["1", "2", "3", "4", "5"]);
    }
    let grown = rss_bytes().saturating_sub(before);
    assert!(grown < MAX_GROWTH_BYTES, "grew {grown} bytes");
    still_serving(&gateway).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn row_limited_portals_resume_where_they_stopped() -> anyhow::Result<()> {
    let _turn = one_at_a_time().await;
    let gateway = TestGateway::demo().await?;
    let mut client = WireClient::connect(gateway.port(), "polygate").await?;
    let fetches = client
        .query(
            "SELECT value FROM generate_series(1, 7) ORDER BY value",
            &[],
            &[],
            WireFormat::Text,
            WireFormat::Text,
            3,
        )
        .await?
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    let sizes: Vec<(usize, bool)> = fetches
        .iter()
        .map(|f| (f.rows.len(), f.suspended))
        .collect();
    assert_eq!(sizes, [(3, true), (3, true), (1, false)]);
    assert_eq!(texts(&fetches), ["1", "2", "3", "4", "5", "6", "7"]);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1gb_length_prefix_is_refused_or_waited_on_without_allocating() -> anyhow::Result<()> {
    let _turn = one_at_a_time().await;
    let gateway = TestGateway::demo().await?;
    let before = rss_bytes();
    for length in [0x3fff_fff0_u32, 0x4000_0000, u32::MAX] {
        let mut client = WireClient::connect(gateway.port(), "polygate").await?;
        let mut message = vec![b'Q'];
        message.extend_from_slice(&length.to_be_bytes());
        message.extend_from_slice(b"SELECT 1");
        client.send_raw(&message).await?;
        // The gateway either refuses the length at once or waits for bytes that never come;
        // either way the rest of the gateway goes on and nothing is allocated for them.
        let answer = client.closed_or_error(Duration::from_secs(2)).await;
        if let Ok(Some(error)) = &answer {
            assert_eq!(error.code, "08P01", "{error:?}");
        }
        still_serving(&gateway).await?;
    }
    let grown = rss_bytes().saturating_sub(before);
    assert!(grown < MAX_GROWTH_BYTES, "grew {grown} bytes");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_and_malformed_messages_end_only_their_connection() -> anyhow::Result<()> {
    let _turn = one_at_a_time().await;
    let gateway = TestGateway::demo().await?;
    let malformed: &[&[u8]] = &[
        // A Query cut short, then the connection closed.
        b"Q\x00\x00\x00\x40SELECT",
        // A Bind whose declared counts run past its end.
        b"B\x00\x00\x00\x0c\x00\x00\x7f\xff\x00\x01",
        // A Parse declaring 32767 parameter types in 4 bytes.
        b"P\x00\x00\x00\x0c\x00x\x00\x7f\xff\x00\x00",
        // A length below the header's own four bytes.
        b"Q\x00\x00\x00\x02",
        // A message type that does not exist.
        b"\xff\x00\x00\x00\x04",
    ];
    for bytes in malformed {
        let mut client = WireClient::connect(gateway.port(), "polygate").await?;
        client.send_raw(bytes).await?;
        drop(client);
        still_serving(&gateway).await?;
    }
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bind_with_the_wrong_parameter_count_is_a_protocol_error() -> anyhow::Result<()> {
    let _turn = one_at_a_time().await;
    let gateway = TestGateway::demo().await?;
    let mut client = WireClient::connect(gateway.port(), "polygate").await?;
    let too_few = client
        .query(
            "SELECT $1::text || $2::text",
            &[],
            &[Some(b"a")],
            WireFormat::Text,
            WireFormat::Text,
            0,
        )
        .await?;
    let error = too_few.expect_err("one value for two parameters");
    assert_eq!(error.code, "08P01", "{error:?}");
    assert!(
        error.message.contains("supplies 1 parameters") && error.message.contains("requires 2"),
        "{error:?}"
    );
    let too_many = client
        .query(
            "SELECT $1::text",
            &[],
            &[Some(b"a"), Some(b"b")],
            WireFormat::Text,
            WireFormat::Text,
            0,
        )
        .await?;
    assert_eq!(too_many.expect_err("two values for one").code, "08P01");
    // The session goes on after the error.
    let fetches = client
        .query(
            "SELECT $1::text",
            &[],
            &[Some(b"ok")],
            WireFormat::Text,
            WireFormat::Text,
            0,
        )
        .await?
        .map_err(|e| anyhow::anyhow!("{e:?}"))?;
    assert_eq!(texts(&fetches), ["ok"]);
    still_serving(&gateway).await
}

/// A raw connection that has sent its start-up message to a gateway that asks for a password.
async fn unauthenticated(gateway: &TestGateway) -> anyhow::Result<tokio::net::TcpStream> {
    use tokio::io::AsyncWriteExt;
    let mut stream = tokio::net::TcpStream::connect(("127.0.0.1", gateway.port())).await?;
    let mut startup = bytes::BytesMut::new();
    postgres_protocol::message::frontend::startup_message(
        [("user", "alice"), ("database", "polygate")],
        &mut startup,
    )?;
    stream.write_all(&startup).await?;
    Ok(stream)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_unauthenticated_client_is_cut_off_after_a_few_hundred_kilobytes() -> anyhow::Result<()>
{
    let _turn = one_at_a_time().await;
    use tokio::io::AsyncWriteExt;
    let gateway =
        TestGateway::demo_with("auth = \"scram-sha-256\"\n[gateway.users]\nalice = \"secret\"\n")
            .await?;
    let before = rss_bytes();
    let mut stream = unauthenticated(&gateway).await?;
    // A Query of almost 1 GB in place of the password, streamed in 64 kB chunks. Before
    // authentication the gateway reads no more than 256 kB, then closes the connection; the
    // socket buffers between the two hold a few megabytes more.
    let mut header = vec![b'Q'];
    header.extend_from_slice(&0x3fff_fff0_u32.to_be_bytes());
    stream.write_all(&header).await?;
    let chunk = vec![b'x'; 64 * 1024];
    let mut sent = 0usize;
    let refused = tokio::time::timeout(Duration::from_secs(30), async {
        while sent < 256 << 20 {
            if stream.write_all(&chunk).await.is_err() {
                return true;
            }
            sent += chunk.len();
        }
        false
    })
    .await?;
    assert!(
        refused,
        "the gateway read {sent} bytes from a client that had not authenticated"
    );
    assert!(
        sent < 64 << 20,
        "the gateway took {sent} bytes before closing"
    );
    still_serving_as(&gateway, "alice", "secret").await?;
    let grown = rss_bytes().saturating_sub(before);
    assert!(grown < MAX_GROWTH_BYTES, "grew {grown} bytes");
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_does_not_authenticate_is_closed_at_authentication_timeout()
-> anyhow::Result<()> {
    let _turn = one_at_a_time().await;
    use tokio::io::AsyncReadExt;
    let gateway = TestGateway::demo_with(
        "auth = \"scram-sha-256\"\nauthentication_timeout_secs = 1\n\
         [gateway.users]\nalice = \"secret\"\n",
    )
    .await?;
    let started = std::time::Instant::now();
    let mut stream = unauthenticated(&gateway).await?;
    // The gateway asks for SCRAM, then waits for an answer that never comes; the default
    // timeout is a minute.
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(20), stream.read_to_end(&mut answer)).await??;
    let closed_after = started.elapsed();
    eprintln!("closed after {closed_after:?}");
    assert!(
        closed_after >= Duration::from_secs(1),
        "closed after {closed_after:?}, before its second"
    );
    assert_eq!(answer.first(), Some(&b'R'), "{answer:?}");
    still_serving_as(&gateway, "alice", "secret").await?;
    Ok(())
}

/// `user` with `password` runs `SELECT 1`.
async fn still_serving_as(gateway: &TestGateway, user: &str, password: &str) -> anyhow::Result<()> {
    let url = format!(
        "host=127.0.0.1 port={} user={user} password={password} dbname=polygate",
        gateway.port()
    );
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls).await?;
    tokio::spawn(connection);
    let row =
        tokio::time::timeout(Duration::from_secs(10), client.query_one("SELECT 1", &[])).await??;
    assert_eq!(row.get::<_, i64>(0), 1);
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_fails_authentication_runs_nothing() -> anyhow::Result<()> {
    let _turn = one_at_a_time().await;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let gateway =
        TestGateway::demo_with("auth = \"scram-sha-256\"\n[gateway.users]\nalice = \"secret\"\n")
            .await?;
    let mut stream = unauthenticated(&gateway).await?;
    // A Query where the SCRAM answer belongs (FATAL), then a Query of its own.
    let mut out = bytes::BytesMut::new();
    postgres_protocol::message::frontend::query("SELECT 1", &mut out)?;
    postgres_protocol::message::frontend::query("SELECT count(*) FROM shop.customers", &mut out)?;
    stream.write_all(&out).await?;
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(10), stream.read_to_end(&mut answer)).await??;
    // The gateway answered the start-up (R), refused (E), and closed: no row description, no
    // row, no command completion, no ReadyForQuery.
    for tag in [b'T', b'D', b'C', b'Z'] {
        assert!(
            !messages(&answer).any(|(t, _)| t == tag),
            "an unauthenticated client got a {:?} message: {answer:?}",
            tag as char
        );
    }
    assert!(messages(&answer).any(|(t, _)| t == b'E'), "{answer:?}");
    Ok(())
}

/// The (type, body) of each backend message in `bytes`.
fn messages(bytes: &[u8]) -> impl Iterator<Item = (u8, &[u8])> {
    let mut rest = bytes;
    std::iter::from_fn(move || {
        let (&tag, after) = rest.split_first()?;
        let length = u32::from_be_bytes(after.get(..4)?.try_into().ok()?) as usize;
        let body = after.get(4..length)?;
        rest = after.get(length..)?;
        Some((tag, body))
    })
}
