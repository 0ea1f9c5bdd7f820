//! The `polygate` command: serve the catalog over the PostgreSQL protocol, run one query, or
//! check a catalog file.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use polygate::engine::{self, DEFAULT_DATABASE, Engine};
use polygate::errors::GatewayError;
use polygate::output::{OutputFormat, write_results};
use polygate::pg::{Server, Verifier};
use polygate_catalog::{AuthMethod, Catalog, CatalogConfig, SourceState};
use polygate_pgcompat::statement::Command as Statement;

/// The catalog served when polygate is started with no command: the demo of the repository.
const DEMO_CATALOG: &str = "examples/demo/catalog.toml";

#[derive(Debug, Parser)]
#[command(
    name = "polygate",
    version,
    about = "One SQL interface over PostgreSQL, MongoDB, Elasticsearch and files"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the catalog to PostgreSQL clients.
    Serve {
        /// The catalog file.
        #[arg(long, env = "POLYGATE_CATALOG", default_value = "catalog.toml")]
        catalog: PathBuf,
        /// HOST:PORT to listen on (overrides `[gateway] listen`).
        #[arg(long)]
        listen: Option<SocketAddr>,
    },
    /// Run one SQL statement and print its result.
    Query {
        /// The catalog file.
        #[arg(long, env = "POLYGATE_CATALOG", default_value = "catalog.toml")]
        catalog: PathBuf,
        /// How to print the rows.
        #[arg(long, value_enum, default_value = "table")]
        format: OutputFormat,
        /// The statement.
        sql: String,
    },
    /// Validate the catalog file and report, for each source, whether it is reachable and what
    /// it exposes.
    Check {
        /// The catalog file.
        #[arg(long, env = "POLYGATE_CATALOG", default_value = "catalog.toml")]
        catalog: PathBuf,
    },
    /// Read a password on standard input and print its SCRAM-SHA-256 verifier, for
    /// `[gateway.users]` (catalog.toml then holds no password).
    Password,
}

/// The stack of each runtime thread. Parsing, rewriting, planning and dropping a statement
/// recurse once per level of its expressions, and a client may send `a = 0 OR a = 1 OR ...`
/// with tens of thousands of terms (a tree as deep); 2 MB, tokio's default, overflows and
/// aborts the process. The stack is reserved address space: only what is used is memory.
const WORKER_STACK_BYTES: usize = 512 << 20;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let default_log = match cli.command {
        Some(Command::Serve { .. }) | None => "info",
        _ => "warn",
    };
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new(default_log)),
        )
        .with_writer(std::io::stderr)
        .init();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .thread_stack_size(WORKER_STACK_BYTES)
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("error: cannot start the runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let outcome = runtime.block_on(async {
        match cli.command {
            None => {
                tracing::info!("no command given: serving the demo catalog {DEMO_CATALOG}");
                serve(Path::new(DEMO_CATALOG), None).await
            }
            Some(Command::Serve { catalog, listen }) => serve(&catalog, listen).await,
            Some(Command::Query {
                catalog,
                format,
                sql,
            }) => query(&catalog, format, &sql).await,
            Some(Command::Check { catalog }) => check(&catalog).await,
            Some(Command::Password) => password(),
        }
    });
    match outcome {
        Ok(code) => code,
        Err(error) => {
            eprintln!("error: {error:#}");
            ExitCode::from(2)
        }
    }
}

async fn serve(catalog_path: &Path, listen: Option<SocketAddr>) -> anyhow::Result<ExitCode> {
    let catalog = Catalog::load(catalog_path).await?;
    for status in catalog.status() {
        if let SourceState::Unavailable(error) = &status.state {
            tracing::warn!(source = %status.name, "source unavailable at start, retrying in the background: {error}");
        }
    }
    let gateway = catalog.gateway();
    let auth = match gateway.auth {
        Some(AuthMethod::Trust) => "no authentication: clients are trusted",
        Some(AuthMethod::ScramSha256) => "SCRAM-SHA-256 authentication",
        None => anyhow::bail!(
            "{}: [gateway] auth is not set: set auth = \"scram-sha-256\" with users in \
             [gateway.users], or auth = \"trust\" to let clients in without a password",
            catalog_path.display()
        ),
    };
    let tls = match (&gateway.tls, gateway.tls_required) {
        (Some(_), true) => ", TLS required",
        (Some(_), false) => ", TLS offered",
        (None, _) => ", no TLS",
    };
    let listen = listen.unwrap_or(gateway.listen);
    let _watch = polygate::reload::watch(catalog.clone())
        .with_context(|| format!("cannot watch {}", catalog_path.display()))?;
    let grace = catalog.gateway().shutdown_grace;
    let server = Server::start(Engine::new(catalog)?, listen)
        .await
        .with_context(|| format!("cannot listen on {listen}"))?;
    tracing::info!(
        "polygate is serving {} on {} ({auth}{tls}); try: psql -h {} -p {}",
        catalog_path.display(),
        server.local_addr(),
        server.local_addr().ip(),
        server.local_addr().port()
    );
    let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
        .context("cannot listen for SIGTERM")?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => tracing::info!("interrupted, stopping"),
        _ = terminate.recv() => tracing::info!("SIGTERM received, stopping"),
    }
    server.shutdown(grace).await;
    tracing::info!("stopped");
    Ok(ExitCode::SUCCESS)
}

async fn query(catalog_path: &Path, format: OutputFormat, sql: &str) -> anyhow::Result<ExitCode> {
    let catalog = Catalog::load(catalog_path).await?;
    let outcome: Result<(), GatewayError> = async {
        let engine = Engine::new(catalog)?;
        let session = engine.default_session(DEFAULT_DATABASE)?;
        for command in engine.parse(sql)? {
            let Statement::Query(statement) = command else {
                return Err(GatewayError::unsupported(format!(
                    "{} in polygate query (connect a client to polygate serve)",
                    command.tag()
                )));
            };
            let plan = engine::plan(&session.ctx, *statement).await?;
            let batches = engine::execute(&session.ctx, plan).await?;
            write_results(batches, format, &mut std::io::stdout().lock()).await?;
        }
        Ok(())
    }
    .await;
    match outcome {
        Ok(()) => Ok(ExitCode::SUCCESS),
        Err(error) => {
            let pg = error.to_pg();
            eprintln!("ERROR: {}: {}", pg.code, pg.message);
            Ok(ExitCode::FAILURE)
        }
    }
}

fn password() -> anyhow::Result<ExitCode> {
    let mut line = String::new();
    std::io::stdin()
        .read_line(&mut line)
        .context("cannot read the password from standard input")?;
    let password = line.trim_end_matches(['\r', '\n']);
    anyhow::ensure!(!password.is_empty(), "empty password");
    println!("{}", Verifier::from_password(password));
    Ok(ExitCode::SUCCESS)
}

async fn check(catalog_path: &Path) -> anyhow::Result<ExitCode> {
    let config = CatalogConfig::load(catalog_path)?;
    println!(
        "{}: valid, {} source(s)",
        catalog_path.display(),
        config.sources.len()
    );
    let catalog = Catalog::start(config).await;
    let mut all_reachable = true;
    for status in catalog.status() {
        match &status.state {
            SourceState::Ready(_) => {
                println!(
                    "{} ({}): reachable, {} table(s)",
                    status.name,
                    status.kind,
                    status.tables.len()
                );
                for table in &status.tables {
                    println!("  {table}");
                }
            }
            SourceState::Unavailable(error) => {
                all_reachable = false;
                println!("{} ({}): unreachable: {error}", status.name, status.kind);
            }
            SourceState::Connecting => {
                all_reachable = false;
                println!("{} ({}): no answer yet", status.name, status.kind);
            }
        }
    }
    Ok(if all_reachable {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}
