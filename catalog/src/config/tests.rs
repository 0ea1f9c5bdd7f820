//! catalog.toml validation: each bad input gets one line naming file, line and key.

use super::*;

fn parse(text: &str) -> Result<CatalogConfig, ConfigError> {
    CatalogConfig::parse(Path::new("/etc/polygate/catalog.toml"), text)
}

/// Asserts that `text` is rejected with exactly `expected` (the path prefix omitted).
fn check_error(text: &str, expected: &str) {
    let error = parse(text).expect_err("should be rejected").to_string();
    let shown = error
        .strip_prefix("/etc/polygate/catalog.toml:")
        .unwrap_or_else(|| panic!("error does not name the file: {error}"));
    assert_eq!(shown, expected, "for input:\n{text}");
    assert!(!error.contains('\n'), "not one line: {error}");
}

#[test]
fn valid_catalog() {
    let config = parse(
        r#"
[gateway]
listen = "0.0.0.0:6000"

[sources.zeta]
kind = "files"
root = "z"

[sources.demo]
kind = "files"
root = "data"
"#,
    )
    .expect("valid");
    assert_eq!(config.gateway.listen.to_string(), "0.0.0.0:6000");
    let names: Vec<_> = config.sources.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["demo", "zeta"]);
    assert_eq!(config.sources[0].kind, "files");
}

#[test]
fn empty_catalog_uses_defaults() {
    let config = parse("").expect("valid");
    assert_eq!(config.gateway.listen.to_string(), DEFAULT_LISTEN);
    assert!(config.sources.is_empty());
}

#[test]
fn rejects_bad_input_with_file_line_and_key() {
    let cases: &[(&str, &str)] = &[
        // Syntax.
        (
            "[sources.demo]\nkind = \"files\nroot = 'x'\n",
            "2:14: kind: invalid basic string, expected `\"`",
        ),
        // Unknown top-level key.
        (
            "[gatway]\nlisten = \"x\"\n",
            "1:2: gatway: unknown key, expected gateway or sources",
        ),
        // Unknown key in [gateway].
        (
            "[gateway]\nlisten = \"127.0.0.1:1\"\nport = 5\n",
            "3:1: gateway.port: unknown field `port`, expected one of `listen`, `max_connections`, \
             `statement_timeout_secs`, `idle_session_timeout_secs`, `memory_limit_mb`, \
             `max_result_rows`, `shutdown_grace_secs`, `authentication_timeout_secs`, `auth`, \
             `users`, `tls_cert_file`, `tls_key_file`, `tls_required`",
        ),
        (
            "[gateway]\nauthentication_timeout_secs = 0\n",
            "2:31: gateway.authentication_timeout_secs: must be between 1 and 600 seconds",
        ),
        (
            "[gateway]\nlisten = \"localhost\"\n",
            "2:10: gateway.listen: \"localhost\" is not HOST:PORT with a numeric host",
        ),
        // Missing and unknown kind.
        (
            "[sources.demo]\nroot = \"x\"\n",
            "1:1: sources.demo.kind: missing key",
        ),
        (
            "[sources.demo]\nkind = \"filez\"\nroot = \"x\"\n",
            "1:1: sources.demo.kind: unknown kind \"filez\", expected one of: files, postgres, mongodb, elasticsearch",
        ),
        // Invalid source names.
        (
            "[sources.Demo]\nkind = \"files\"\nroot = \"x\"\n",
            "1:10: sources.Demo: invalid source name: use lower-case letters, digits and _, starting with a letter or _",
        ),
        (
            "[sources.\"my-db\"]\nkind = \"files\"\nroot = \"x\"\n",
            "1:10: sources.my-db: invalid source name: use lower-case letters, digits and _, starting with a letter or _",
        ),
        // Connector options: unknown key, missing key, wrong type, rejected value.
        (
            "[sources.demo]\nkind = \"files\"\nroot = \"x\"\nrooot = \"y\"\n",
            "4:1: sources.demo.rooot: unknown field `rooot`, expected one of `root`, `has_header`, `delimiter`, `tables`",
        ),
        (
            "[sources.demo]\nkind = \"files\"\n",
            "1:1: sources.demo: missing field `root`",
        ),
        (
            "[sources.demo]\nkind = \"files\"\nroot = 5\n",
            "3:8: sources.demo.root: invalid type: integer `5`, expected a string",
        ),
        (
            "[sources.demo]\nkind = \"files\"\nroot = \"x\"\ndelimiter = \"ab\"\n",
            "4:13: sources.demo.delimiter: must be a single ASCII character, got \"ab\"",
        ),
        // The response timeout every kind accepts.
        (
            "[sources.demo]\nkind = \"files\"\nroot = \"x\"\nresponse_timeout_secs = 0\n",
            "4:25: sources.demo.response_timeout_secs: must be a whole number of seconds from 1 to 86400",
        ),
        (
            "[sources.demo]\nkind = \"files\"\nroot = \"x\"\nresponse_timeout_secs = \"5\"\n",
            "4:25: sources.demo.response_timeout_secs: must be a whole number of seconds from 1 to 86400",
        ),
        (
            "[sources.demo]\nkind = \"files\"\nroot = \"x\"\nresponse_timeout_secs = 99999999999999999\n",
            "4:25: sources.demo.response_timeout_secs: must be a whole number of seconds from 1 to 86400",
        ),
        // Timeouts of the kinds' own: never 0, never beyond what a deadline can hold.
        (
            "[sources.p]\nkind = \"postgres\"\nurl = \"postgres://u@h/db\"\nschemas = [\"public\"]\nconnect_timeout_secs = 0\n",
            "5:24: sources.p.connect_timeout_secs: must be a whole number of seconds from 1 to 3600",
        ),
        (
            "[sources.p]\nkind = \"postgres\"\nurl = \"postgres://u@h/db\"\nschemas = [\"public\"]\nstatement_timeout_secs = 9223372036854775807\n",
            "5:26: sources.p.statement_timeout_secs: must be a whole number of seconds from 0 to 2147483",
        ),
        (
            "[sources.m]\nkind = \"mongodb\"\nurl = \"mongodb://h\"\ndatabase = \"d\"\nconnect_timeout_secs = 0\n",
            "5:24: sources.m.connect_timeout_secs: must be a whole number of seconds from 1 to 3600",
        ),
        (
            "[sources.e]\nkind = \"elasticsearch\"\nurl = \"http://h:9200\"\nrequest_timeout_secs = 9223372036854775807\n",
            "4:24: sources.e.request_timeout_secs: must be a whole number of seconds from 1 to 86400",
        ),
        // Environment variables.
        (
            "[sources.demo]\nkind = \"files\"\nroot = \"${POLYGATE_TEST_SURELY_UNSET}\"\n",
            "3:8: sources.demo.root: environment variable POLYGATE_TEST_SURELY_UNSET is not set",
        ),
    ];
    for (text, expected) in cases {
        check_error(text, expected);
    }
}

#[test]
fn every_kind_takes_a_response_timeout() {
    let config =
        parse("[sources.demo]\nkind = \"files\"\nroot = \"x\"\nresponse_timeout_secs = 7\n")
            .expect("valid");
    assert_eq!(config.sources[0].response_timeout, Duration::from_secs(7));
    let config = parse("[sources.demo]\nkind = \"files\"\nroot = \"x\"\n").expect("valid");
    assert_eq!(
        config.sources[0].response_timeout,
        polygate_connector_core::SourceContext::DEFAULT_RESPONSE_TIMEOUT
    );
}

#[test]
fn environment_variables_expand_in_values() {
    // SAFETY of the test: the variable name is unique to this test.
    let path = std::env::var("PATH").expect("PATH is set");
    let config = parse("[sources.demo]\nkind = \"files\"\nroot = \"${PATH}\"\n").expect("valid");
    let written = parse(&format!(
        "[sources.demo]\nkind = \"files\"\nroot = {}\n",
        toml_string(&path)
    ))
    .expect("valid");
    // The expanded value is what the source is made of: the same as writing it out.
    assert_eq!(
        config.sources[0].fingerprint,
        written.sources[0].fingerprint
    );
    // An expanded value may be a secret: the fingerprint keeps only a hash of it.
    assert!(!config.sources[0].fingerprint.contains(&path));
}

/// `text` as a TOML basic string.
fn toml_string(text: &str) -> String {
    format!("\"{}\"", text.replace('\\', "\\\\").replace('"', "\\\""))
}

#[test]
fn fingerprint_ignores_layout_but_not_values() {
    let a = parse("[sources.demo]\nkind = \"files\"\nroot = \"x\"\nhas_header = true\n")
        .expect("valid");
    let b =
        parse("[sources.demo]\n# comment\nhas_header = true\n\nroot   =   \"x\"\nkind='files'\n")
            .expect("valid");
    let c = parse("[sources.demo]\nkind = \"files\"\nroot = \"y\"\nhas_header = true\n")
        .expect("valid");
    assert_eq!(a.sources[0].fingerprint, b.sources[0].fingerprint);
    assert_ne!(a.sources[0].fingerprint, c.sources[0].fingerprint);
}

#[test]
fn gateway_limits_auth_and_tls() {
    let dir = tempfile::tempdir().expect("tempdir");
    for file in ["server.crt", "server.key"] {
        std::fs::write(dir.path().join(file), "pem").expect("write");
    }
    let text = r#"
[gateway]
max_connections = 20
statement_timeout_secs = 30
idle_session_timeout_secs = 0
memory_limit_mb = 512
max_result_rows = 1000
shutdown_grace_secs = 5
authentication_timeout_secs = 10
auth = "scram-sha-256"
tls_cert_file = "server.crt"
tls_key_file = "server.key"
tls_required = true

[gateway.users]
alice = "wonderland"
bob = "SCRAM-SHA-256$4096:c2FsdA==$c3RvcmVk:c2VydmVy"
"#;
    let config = CatalogConfig::parse(&dir.path().join("catalog.toml"), text).expect("valid");
    let gateway = &config.gateway;
    assert_eq!(gateway.max_connections, 20);
    assert_eq!(gateway.statement_timeout, Some(Duration::from_secs(30)));
    assert_eq!(gateway.idle_session_timeout, None);
    assert_eq!(gateway.memory_limit, Some(512 << 20));
    assert_eq!(gateway.max_result_rows, Some(1000));
    assert_eq!(gateway.shutdown_grace, Duration::from_secs(5));
    assert_eq!(gateway.authentication_timeout, Duration::from_secs(10));
    assert_eq!(gateway.auth, Some(AuthMethod::ScramSha256));
    assert!(gateway.tls_required);
    assert_eq!(
        gateway.tls.as_ref().map(|t| t.key_file.clone()),
        Some(dir.path().join("server.key"))
    );
    assert!(!gateway.users["alice"].is_scram_verifier());
    assert!(gateway.users["bob"].is_scram_verifier());
    // Secrets never show in debug output.
    assert!(!format!("{gateway:?}").contains("wonderland"));

    let cases: &[(&str, &str)] = &[
        (
            "[gateway]\nauth = \"md5\"\n",
            "2:8: gateway.auth: unknown method \"md5\", expected \"scram-sha-256\" or \"trust\"",
        ),
        (
            "[gateway]\nauth = \"scram-sha-256\"\n",
            "2:8: gateway.auth: scram-sha-256 needs at least one user in [gateway.users]",
        ),
        (
            "[gateway.users]\nbob = \"SCRAM-SHA-256$x\"\n",
            "2:7: gateway.users.bob: not a SCRAM-SHA-256 verifier: expected SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>",
        ),
        (
            "[gateway]\ntls_required = true\n",
            "1:1: gateway.tls_required: needs tls_cert_file and tls_key_file",
        ),
        (
            "[gateway]\ntls_cert_file = \"nope.crt\"\ntls_key_file = \"nope.key\"\n",
            "2:17: gateway.tls_cert_file: no such file: /etc/polygate/nope.crt",
        ),
        (
            "[gateway]\nmax_connections = 0\n",
            "2:19: gateway.max_connections: must be at least 1",
        ),
        (
            "[gateway]\nmemory_limit_mb = 0\n",
            "2:19: gateway.memory_limit_mb: must be a positive number of megabytes",
        ),
    ];
    for (text, expected) in cases {
        check_error(text, expected);
    }
}
