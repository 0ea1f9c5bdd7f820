//! The `polygate` command as a user runs it: `query`, `check`, and `serve` answering psql.

// Test helpers: a failed expectation is a failed test, with its message.
#![allow(clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

fn polygate() -> Command {
    Command::new(env!("CARGO_BIN_EXE_polygate"))
}

fn demo_catalog() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../examples/demo/catalog.toml")
}

fn run(command: &mut Command) -> Output {
    command.output().expect("polygate runs")
}

fn stdout(output: &Output) -> String {
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}

const CUSTOMERS_SQL: &str =
    "SELECT id, name, country, vip FROM shop.customers WHERE country <> 'US' ORDER BY id";

#[test]
fn query_prints_csv() {
    let output = run(polygate()
        .args(["query", "--format", "csv", "--catalog"])
        .arg(demo_catalog())
        .arg(CUSTOMERS_SQL));
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        "id,name,country,vip\n\
         1,Ada Lovelace,GB,true\n\
         3,Alan Turing,GB,false\n\
         5,Edsger Dijkstra,NL,false\n\
         9,Tim Berners-Lee,GB,false\n"
    );
}

#[test]
fn query_prints_json_and_tables() {
    let output = run(polygate()
        .args(["query", "--format", "json", "--catalog"])
        .arg(demo_catalog())
        .arg("SELECT order_id, amount FROM shop.orders WHERE order_id IN (1001, 1014) ORDER BY 1"));
    assert!(output.status.success(), "{}", stderr(&output));
    assert_eq!(
        stdout(&output),
        "{\"order_id\":1001,\"amount\":120.5}\n{\"order_id\":1014}\n"
    );

    let output = run(polygate()
        .args(["query", "--catalog"])
        .arg(demo_catalog())
        .arg("SELECT count(*) AS n FROM shop.events"));
    assert!(output.status.success(), "{}", stderr(&output));
    assert!(
        stdout(&output).contains("| n  |") && stdout(&output).contains("| 14 |"),
        "{}",
        stdout(&output)
    );
}

#[test]
fn query_errors_exit_non_zero_with_a_sqlstate() {
    let output = run(polygate()
        .args(["query", "--catalog"])
        .arg(demo_catalog())
        .arg("SELECT * FROM shop.ordrs"));
    assert_eq!(output.status.code(), Some(1));
    assert_eq!(
        stderr(&output).trim(),
        "ERROR: 42P01: relation \"shop.ordrs\" does not exist"
    );
}

#[test]
fn malformed_catalog_is_one_line_naming_file_line_and_key() {
    let dir = tempfile::tempdir().expect("tempdir");
    let catalog = dir.path().join("catalog.toml");
    std::fs::write(
        &catalog,
        "[gateway]\nlisten = \"127.0.0.1:1\"\n\n[sources.shop]\nkind = \"files\"\nroot = \"data\"\nhas_headers = true\n",
    )
    .expect("write");
    for subcommand in ["check", "serve"] {
        let output = run(polygate().args([subcommand, "--catalog"]).arg(&catalog));
        assert_eq!(output.status.code(), Some(2), "{subcommand}");
        let message = stderr(&output);
        let lines: Vec<_> = message.lines().collect();
        assert_eq!(
            lines,
            [format!(
                "error: {}:7:1: sources.shop.has_headers: unknown field `has_headers`, expected one of `root`, `has_header`, `delimiter`, `tables`",
                catalog.display()
            )],
            "{subcommand}"
        );
    }
}

/// A loopback port nothing listens on.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a port")
        .port()
}

#[test]
fn check_reports_each_source() {
    let dir = tempfile::tempdir().expect("tempdir");
    let closed_port = closed_port();
    let catalog = dir.path().join("catalog.toml");
    let data = demo_catalog().parent().expect("dir").join("data");
    std::fs::write(
        &catalog,
        format!(
            "[sources.shop]\nkind = \"files\"\nroot = \"{}\"\n\n\
             [sources.down]\nkind = \"postgres\"\nurl = \"postgres://nobody@127.0.0.1:{closed_port}/db\"\nconnect_timeout_secs = 2\n",
            data.display()
        ),
    )
    .expect("write");
    let output = run(polygate().args(["check", "--catalog"]).arg(&catalog));
    let text = stdout(&output);
    assert_eq!(output.status.code(), Some(1), "{text}");
    assert!(text.contains("valid, 2 source(s)"), "{text}");
    assert!(
        text.contains(
            "shop (files): reachable, 3 table(s)\n  shop.customers\n  shop.events\n  shop.orders\n"
        ),
        "{text}"
    );
    let down = text
        .lines()
        .find(|l| l.starts_with("down (postgres): unreachable: "))
        .unwrap_or_default();
    assert!(down.to_lowercase().contains("refused"), "{text}");
}

/// A `polygate serve` process, killed when dropped.
struct Served {
    child: Child,
    port: u16,
    /// Every line it wrote to stdout and stderr so far.
    output: std::sync::Arc<std::sync::Mutex<String>>,
}

impl Drop for Served {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Served {
    /// Every line written so far.
    fn output(&self) -> String {
        self.output
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

fn serve_demo() -> Served {
    serve(&demo_catalog(), &[])
}

/// `polygate serve` of `catalog` on a free port, with `env` set, once it is listening.
fn serve(catalog: &Path, env: &[(&str, &str)]) -> Served {
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a port")
        .port();
    let mut child = polygate()
        .args([
            "serve",
            "--listen",
            &format!("127.0.0.1:{port}"),
            "--catalog",
        ])
        .arg(catalog)
        .envs(env.iter().copied())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("polygate serve starts");
    let output = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    // Wait for the line announcing the listener.
    let (tx, rx) = std::sync::mpsc::channel();
    let pipes: [Box<dyn std::io::Read + Send>; 2] = [
        Box::new(child.stdout.take().expect("stdout is piped")),
        Box::new(child.stderr.take().expect("stderr is piped")),
    ];
    for pipe in pipes {
        let (tx, output) = (tx.clone(), std::sync::Arc::clone(&output));
        std::thread::spawn(move || {
            for line in BufReader::new(pipe).lines().map_while(Result::ok) {
                if line.contains("polygate is serving") {
                    let _ = tx.send(());
                }
                let mut output = output.lock().unwrap_or_else(|p| p.into_inner());
                output.push_str(&line);
                output.push('\n');
            }
        });
    }
    rx.recv_timeout(Duration::from_secs(30))
        .expect("polygate serve announced its listener");
    Served {
        child,
        port,
        output,
    }
}

fn psql_available() -> bool {
    let found = Command::new("psql")
        .arg("--version")
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "psql is required under CI"
        );
        // Written to the handle, not with eprintln!, which the harness would capture.
        use std::io::Write;
        let _ = writeln!(
            std::io::stderr(),
            "SKIPPED: psql is not installed (tests/run.sh installs it)"
        );
    }
    found
}

#[test]
fn psql_gets_the_same_rows_as_query_csv() {
    if !psql_available() {
        return;
    }
    let served = serve_demo();
    let output = run(Command::new("psql")
        .args([
            "-h",
            "127.0.0.1",
            "-p",
            &served.port.to_string(),
            "-U",
            "demo",
            "-d",
            "polygate",
        ])
        .args(["-X", "--csv", "-v", "ON_ERROR_STOP=1", "-c", CUSTOMERS_SQL]));
    assert!(output.status.success(), "{}", stderr(&output));
    let via_psql = stdout(&output).replace("\r\n", "\n");

    let output = run(polygate()
        .args(["query", "--format", "csv", "--catalog"])
        .arg(demo_catalog())
        .arg(CUSTOMERS_SQL));
    let via_query = stdout(&output);
    // psql prints booleans as t/f, as PostgreSQL does; everything else matches.
    assert_eq!(
        via_psql,
        via_query
            .replace(",true\n", ",t\n")
            .replace(",false\n", ",f\n")
    );
}

#[test]
fn password_prints_a_scram_verifier_that_authenticates_it() {
    use std::io::Write;
    let mut child = polygate()
        .arg("password")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("polygate runs");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(b"correct horse\n")
        .expect("write");
    let output = child.wait_with_output().expect("polygate ends");
    assert!(output.status.success(), "{}", stderr(&output));
    let printed = stdout(&output);
    let verifier = polygate::pg::Verifier::parse(printed.trim()).expect("a verifier");
    assert!(printed.starts_with("SCRAM-SHA-256$4096:"), "{printed}");
    // The same salt and iterations with the same password give the same verifier.
    let salt_part = printed.trim().split('$').nth(1).expect("salt part");
    let salt = salt_part.split(':').nth(1).expect("salt");
    use base64::Engine as _;
    let salt = base64::engine::general_purpose::STANDARD
        .decode(salt)
        .expect("base64 salt");
    assert_eq!(
        polygate::pg::Verifier::derive("correct horse", salt, 4096),
        verifier
    );
}

#[test]
fn serve_refuses_to_start_without_an_explicit_auth_method() {
    let dir = tempfile::tempdir().expect("tempdir");
    let catalog = dir.path().join("catalog.toml");
    std::fs::write(
        &catalog,
        "[gateway]\nlisten = \"127.0.0.1:0\"\n\n[sources.shop]\nkind = \"files\"\nroot = \".\"\n",
    )
    .expect("write");
    let output = run(polygate().args(["serve", "--catalog"]).arg(&catalog));
    assert_eq!(output.status.code(), Some(2));
    let message = stderr(&output);
    assert!(
        message.contains("[gateway] auth is not set") && message.contains("auth = \"trust\""),
        "{message}"
    );
}

/// Regression: a predicate tens of thousands of terms deep (a left-deep tree) overflowed the
/// stack of the thread planning it and aborted the process. Balanced, it answers, and the
/// gateway goes on serving.
#[test]
fn a_50000_term_or_answers_without_aborting_the_gateway() {
    if !psql_available() {
        return;
    }
    let mut served = serve_demo();
    let terms: Vec<String> = (0..50_000).map(|i| format!("id = {i}")).collect();
    let dir = tempfile::tempdir().expect("a directory");
    let script = dir.path().join("deep.sql");
    std::fs::write(
        &script,
        format!(
            "SELECT count(*) FROM shop.customers WHERE {};\n",
            terms.join(" OR ")
        ),
    )
    .expect("the script is written");
    let psql = |args: &[&str]| {
        run(Command::new("psql")
            .args(["-h", "127.0.0.1", "-p", &served.port.to_string()])
            .args([
                "-U",
                "demo",
                "-d",
                "polygate",
                "-XAt",
                "-v",
                "ON_ERROR_STOP=1",
            ])
            .args(["-v", "VERBOSITY=verbose"])
            .args(args))
    };
    // Balanced, the chain is shallow: it answers.
    let output = psql(&["-f", &script.display().to_string()]);
    assert_eq!(stdout(&output), "10\n", "{}", stderr(&output));
    assert!(
        served.child.try_wait().expect("a status").is_none(),
        "polygate serve died"
    );
    let output = psql(&["-c", "SELECT 1"]);
    assert_eq!(stdout(&output), "1\n", "{}", stderr(&output));
}

/// A password written in (or expanded into) catalog.toml appears in no output: not in
/// `polygate check`'s report of sources that cannot be reached, not in `query`'s errors.
#[test]
fn passwords_in_source_urls_appear_in_no_output() {
    const MARKER: &str = "Canary7e1f";
    let dir = tempfile::tempdir().expect("tempdir");
    let closed_port = closed_port();
    let catalog = dir.path().join("catalog.toml");
    std::fs::write(
        &catalog,
        format!(
            "[sources.pg]\nkind = \"postgres\"\n\
             url = \"postgres://reader:${{SECRET}}@127.0.0.1:{closed_port}/db\"\n\
             connect_timeout_secs = 2\n\n\
             [sources.mongo]\nkind = \"mongodb\"\n\
             url = \"mongodb://reader:${{SECRET}}@127.0.0.1:{closed_port}/?serverSelectionTimeoutMS=1000\"\n\
             databases = [\"db\"]\n\n\
             [sources.es]\nkind = \"elasticsearch\"\n\
             url = \"http://elastic:${{SECRET}}@127.0.0.1:{closed_port}\"\n"
        ),
    )
    .expect("write");
    let outputs = [
        run(polygate()
            .env("SECRET", MARKER)
            .args(["check", "--catalog"])
            .arg(&catalog)),
        run(polygate()
            .env("SECRET", MARKER)
            .args(["query", "--catalog"])
            .arg(&catalog)
            .arg("SELECT * FROM es.some_index")),
        run(polygate()
            .env("SECRET", MARKER)
            .args(["query", "--catalog"])
            .arg(&catalog)
            .arg("SELECT * FROM pg.some_table")),
    ];
    for output in &outputs {
        let text = format!("{}{}", stdout(output), stderr(output));
        assert!(!text.is_empty());
        assert!(!text.contains(MARKER), "the password was printed: {text}");
    }
    let report = stdout(&outputs[0]);
    assert!(
        report.contains("es (elasticsearch): unreachable"),
        "{report}"
    );
    assert!(report.contains("127.0.0.1"), "{report}");
}

/// The secrets canary: a unique marker as every password polygate knows (the stores' in their
/// URLs, a gateway user's), with the stores on closed ports. Whatever a client does (a wrong
/// password, queries of the unreachable sources, EXPLAIN, SHOW ALL) and whatever the
/// operator does (an edit that fails to load, an edit whose source cannot be reached), the
/// marker appears in no client message and no line polygate writes.
#[test]
fn secrets_appear_in_no_client_message_and_no_log_line() {
    const MARKER: &str = "Canary93c4";
    if !psql_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("tempdir");
    let closed_port = closed_port();
    let catalog = dir.path().join("catalog.toml");
    let sources = format!(
        "[sources.pg]\nkind = \"postgres\"\n\
         url = \"postgres://reader:${{SECRET}}@127.0.0.1:{closed_port}/db\"\n\
         connect_timeout_secs = 1\n\n\
         [sources.mongo]\nkind = \"mongodb\"\n\
         url = \"mongodb://reader:${{SECRET}}@127.0.0.1:{closed_port}/?serverSelectionTimeoutMS=1000\"\n\
         databases = [\"db\"]\n\n\
         [sources.es]\nkind = \"elasticsearch\"\n\
         url = \"http://elastic:${{SECRET}}@127.0.0.1:{closed_port}\"\n\n\
         [sources.shop]\nkind = \"files\"\nroot = \"{}\"\n",
        demo_catalog()
            .parent()
            .expect("the demo's directory")
            .join("data")
            .display()
    );
    let gateway = "[gateway]\nauth = \"scram-sha-256\"\n\n[gateway.users]\nalice = \"${SECRET}\"\n";
    std::fs::write(&catalog, format!("{gateway}\n{sources}")).expect("write");
    let served = serve(&catalog, &[("SECRET", MARKER), ("RUST_LOG", "debug")]);
    let psql = |password: &str, sql: &str| {
        let output = run(Command::new("psql")
            .args(["-h", "127.0.0.1", "-p", &served.port.to_string()])
            .args(["-U", "alice", "-d", "polygate", "-XAt"])
            .args(["-v", "VERBOSITY=verbose", "-c", sql])
            .env("PGPASSWORD", password));
        format!("{}{}", stdout(&output), stderr(&output))
    };
    let mut answers = vec![psql("wrong", "SELECT 1")];
    for sql in [
        "SELECT * FROM pg.some_table",
        "SELECT * FROM mongo.some_collection",
        "SELECT * FROM es.some_index",
        "EXPLAIN SELECT count(*) FROM shop.customers",
        "SHOW ALL",
        "SELECT current_setting('datafusion.catalog.location')",
    ] {
        answers.push(psql(MARKER, sql));
    }
    assert!(
        answers[0].contains("password authentication failed"),
        "{}",
        answers[0]
    );
    assert!(answers[5].contains("server_version"), "{}", answers[5]);

    // An edit that does not load, with the marker written into the file itself on the line
    // the error is about; then one that loads, with a changed source that cannot be reached.
    let before = served.output();
    std::fs::write(&catalog, format!("{gateway}bob = \"{MARKER}\n\n{sources}")).expect("write");
    let deadline = std::time::Instant::now() + Duration::from_secs(10);
    while !served.output()[before.len()..].contains("catalog not reloaded") {
        assert!(
            std::time::Instant::now() < deadline,
            "no reload error logged"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let before = served.output();
    std::fs::write(
        &catalog,
        format!(
            "{gateway}\n{}",
            sources.replace("connect_timeout_secs = 1", "connect_timeout_secs = 2")
        ),
    )
    .expect("write");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    while !served.output()[before.len()..].contains("catalog reloaded") {
        assert!(
            std::time::Instant::now() < deadline,
            "the edit was not reloaded"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    answers.push(psql(MARKER, "SELECT * FROM pg.some_table"));

    let log = served.output();
    assert!(log.contains("catalog not reloaded"), "{log}");
    // The unreachable stores were reported, with their addresses.
    assert!(log.contains(&format!("127.0.0.1:{closed_port}")), "{log}");
    for answer in &answers {
        assert!(
            !answer.contains(MARKER),
            "a client saw the secret: {answer}"
        );
    }
    assert!(!log.contains(MARKER), "the log holds the secret:\n{log}");
}
