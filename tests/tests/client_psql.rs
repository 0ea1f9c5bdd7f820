//! psql, the reference PostgreSQL client, against a live gateway: its `\` commands read
//! `pg_catalog` with the queries psql itself writes.

use std::process::Command;

use polygate_tests::backends::loud;
use polygate_tests::gateway::TestGateway;

/// Runs psql with `commands` (one `-c` each) against `gateway`; returns its standard output.
fn psql(gateway: &TestGateway, commands: &[&str]) -> anyhow::Result<Option<String>> {
    let mut psql = Command::new("psql");
    psql.args([
        "-X",
        "-v",
        "ON_ERROR_STOP=1",
        "-h",
        "127.0.0.1",
        "-U",
        "tester",
        "-d",
        "polygate",
    ])
    .arg("-p")
    .arg(gateway.port().to_string())
    .env("PGCONNECT_TIMEOUT", "10");
    for command in commands {
        psql.arg("-c").arg(command);
    }
    let output = match psql.output() {
        Ok(output) => output,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            let message = "psql is not installed (tests/run.sh installs it)";
            if std::env::var("CI").is_ok_and(|v| v == "true" || v == "1") {
                anyhow::bail!("{message}; under CI a missing client is a failure");
            }
            loud(&format!("SKIPPED: {message}"));
            return Ok(None);
        }
        Err(error) => return Err(error.into()),
    };
    let stdout = String::from_utf8(output.stdout)?;
    let stderr = String::from_utf8(output.stderr)?;
    anyhow::ensure!(
        // psql writes notes such as "Did not find any relations." to stderr, errors as ERROR.
        output.status.success() && !stderr.contains("ERROR") && !stderr.contains("FATAL"),
        "psql {commands:?} failed ({}):\n{stderr}\n{stdout}",
        output.status
    );
    Ok(Some(stdout))
}

fn lines_with<'a>(output: &'a str, needle: &str) -> Vec<&'a str> {
    output.lines().filter(|l| l.contains(needle)).collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_lists_databases_schemas_tables_and_columns() -> anyhow::Result<()> {
    let gateway = TestGateway::demo().await?;

    let Some(databases) = psql(&gateway, &["\\l"])? else {
        return Ok(());
    };
    assert!(
        !lines_with(&databases, "polygate").is_empty(),
        "\\l lists the database:\n{databases}"
    );

    let schemas = psql(&gateway, &["\\dn"])?.unwrap_or_default();
    assert_eq!(lines_with(&schemas, " shop ").len(), 1, "\\dn:\n{schemas}");

    for command in ["\\dt shop.*", "\\dt *.*"] {
        let tables = psql(&gateway, &[command])?.unwrap_or_default();
        for table in ["customers", "events", "orders"] {
            assert_eq!(
                lines_with(&tables, &format!("| {table} ")).len(),
                1,
                "{command} lists {table}:\n{tables}"
            );
        }
    }
    // Unqualified \dt lists what the search path shows.
    let tables = psql(&gateway, &["SET search_path = shop", "\\dt"])?.unwrap_or_default();
    assert_eq!(
        lines_with(&tables, "| customers ").len(),
        1,
        "\\dt:\n{tables}"
    );

    let described = psql(&gateway, &["\\d shop.customers"])?.unwrap_or_default();
    for (column, pg_type) in [
        ("id", "bigint"),
        ("name", "text"),
        ("country", "text"),
        ("signup_date", "date"),
        ("vip", "boolean"),
    ] {
        let line = lines_with(&described, &format!(" {column} "));
        assert!(
            line.len() == 1 && line[0].contains(pg_type),
            "\\d shows {column} as {pg_type}:\n{described}"
        );
    }

    // \df reads pg_proc; \dv and \di list nothing, without error.
    psql(&gateway, &["\\df", "\\dv", "\\di"])?;

    let joined = psql(
        &gateway,
        &["SELECT c.name, count(*) AS orders FROM shop.customers c \
           JOIN shop.orders o ON o.customer_id = c.id \
           WHERE c.id = 1 GROUP BY c.name"],
    )?
    .unwrap_or_default();
    assert!(
        joined.contains("Ada Lovelace |      2"),
        "the join's row:\n{joined}"
    );
    Ok(())
}
