//! Statement classification: what runs, what is answered by the gateway, what is refused.

use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

use super::*;

fn classify(sql: &str) -> Result<Command, SqlError> {
    let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, sql).expect(sql);
    assert_eq!(statements.len(), 1, "{sql}");
    Command::classify(statements.remove(0))
}

fn describe(command: &Command) -> String {
    match command {
        Command::Query(_) => "query".to_owned(),
        Command::Set { name, value, local } => {
            format!("set {name}={value:?}{}", if *local { " local" } else { "" })
        }
        Command::Reset(name) => format!("reset {name:?}"),
        Command::Show(name) => format!("show {name}"),
        other => other.tag().to_ascii_lowercase(),
    }
}

#[test]
fn session_statements_are_answered_by_the_session() {
    let cases = [
        ("SELECT 1", "query"),
        ("WITH t AS (SELECT 1) SELECT * FROM t", "query"),
        ("EXPLAIN SELECT 1", "query"),
        ("EXPLAIN ANALYZE SELECT 1", "query"),
        (
            "SET extra_float_digits = 3",
            "set extra_float_digits=Some(\"3\")",
        ),
        (
            "SET application_name TO 'PostgreSQL JDBC Driver'",
            "set application_name=Some(\"PostgreSQL JDBC Driver\")",
        ),
        (
            "SET search_path TO shop, \"Mixed\"",
            "set search_path=Some(\"shop, \\\"Mixed\\\"\")",
        ),
        (
            "SET LOCAL statement_timeout = '5s'",
            "set statement_timeout=Some(\"5s\") local",
        ),
        (
            "SET statement_timeout TO DEFAULT",
            "set statement_timeout=None",
        ),
        (
            "SET TIME ZONE 'Europe/Paris'",
            "set timezone=Some(\"Europe/Paris\")",
        ),
        ("SET SESSION timezone = -2", "set timezone=Some(\"-2\")"),
        ("SET NAMES 'UTF8'", "set client_encoding=Some(\"UTF8\")"),
        ("RESET ALL", "reset None"),
        ("RESET search_path", "reset Some(\"search_path\")"),
        ("SHOW server_version_num", "show server_version_num"),
        (
            "SHOW TRANSACTION ISOLATION LEVEL",
            "show transaction isolation level",
        ),
        ("SHOW ALL", "show all"),
        ("SHOW TIME ZONE", "show time zone"),
        // Regression: a dotted name was read as words, "datafusion execution batch_size".
        (
            "SHOW datafusion.execution.batch_size",
            "show datafusion.execution.batch_size",
        ),
        ("BEGIN", "begin"),
        ("BEGIN READ ONLY", "begin"),
        ("START TRANSACTION ISOLATION LEVEL REPEATABLE READ", "begin"),
        ("COMMIT", "commit"),
        ("END", "commit"),
        ("ROLLBACK", "rollback"),
        ("SAVEPOINT a", "savepoint"),
        ("ROLLBACK TO SAVEPOINT a", "rollback"),
        (
            "SET SESSION CHARACTERISTICS AS TRANSACTION READ ONLY",
            "set",
        ),
        ("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE", "set"),
        ("DISCARD ALL", "discard all"),
        ("DEALLOCATE ALL", "deallocate"),
    ];
    for (sql, expected) in cases {
        let command = classify(sql).unwrap_or_else(|e| panic!("{sql}: {e}"));
        assert_eq!(describe(&command), expected, "{sql}");
    }
}

#[test]
fn writes_are_refused_with_25006_before_planning() {
    let cases = [
        ("INSERT INTO t VALUES (1)", "INSERT"),
        ("UPDATE t SET a = 1", "UPDATE"),
        ("DELETE FROM t", "DELETE"),
        (
            "MERGE INTO t USING s ON t.a = s.a WHEN MATCHED THEN DELETE",
            "MERGE",
        ),
        ("CREATE TABLE t (a int)", "CREATE TABLE"),
        (
            "CREATE OR REPLACE VIEW v AS SELECT 1",
            "CREATE OR REPLACE VIEW",
        ),
        ("DROP TABLE t", "DROP TABLE"),
        ("ALTER TABLE t ADD COLUMN b int", "ALTER TABLE"),
        ("TRUNCATE t", "TRUNCATE"),
        ("COPY t FROM STDIN", "COPY FROM"),
        ("CALL p()", "CALL"),
        ("GRANT SELECT ON t TO u", "GRANT"),
        ("BEGIN READ WRITE", "a READ WRITE transaction"),
        ("SET TRANSACTION READ WRITE", "a READ WRITE transaction"),
        ("EXPLAIN ANALYZE DELETE FROM t", "DELETE"),
    ];
    for (sql, what) in cases {
        let error = classify(sql).expect_err(sql);
        assert_eq!(error.code(), "25006", "{sql}: {error}");
        assert!(error.to_string().contains(what), "{sql}: {error}");
    }
}

#[test]
fn unsupported_statements_are_0a000() {
    for sql in [
        "COPY t TO STDOUT",
        "DECLARE c CURSOR FOR SELECT 1",
        "SET ROLE admin",
    ] {
        assert_eq!(classify(sql).expect_err(sql).code(), "0A000", "{sql}");
    }
}
