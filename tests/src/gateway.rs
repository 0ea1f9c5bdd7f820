//! A real polygate gateway, in the test process, on a free loopback port.

use std::path::Path;
use std::sync::Arc;

use polygate::engine::Engine;
use polygate::pg::Server;
use polygate_catalog::Catalog;

/// A gateway serving one catalog file; stops when dropped.
pub struct TestGateway {
    /// The live catalog, to reload or inspect.
    pub catalog: Arc<Catalog>,
    server: Server,
    /// The directory of a catalog written by [`TestGateway::with_catalog`].
    _dir: Option<tempfile::TempDir>,
}

impl TestGateway {
    /// Loads `catalog` and serves it on 127.0.0.1 with a free port.
    pub async fn start(catalog: &Path) -> anyhow::Result<Self> {
        let catalog = Catalog::load(catalog).await?;
        let server =
            Server::start(Engine::new(Arc::clone(&catalog))?, "127.0.0.1:0".parse()?).await?;
        Ok(Self {
            catalog,
            server,
            _dir: None,
        })
    }

    /// Writes `toml` as the catalog.toml of a directory of its own (kept as long as the
    /// gateway) and serves it.
    pub async fn with_catalog(toml: &str) -> anyhow::Result<Self> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("catalog.toml");
        std::fs::write(&path, toml)?;
        let mut gateway = Self::start(&path).await?;
        gateway._dir = Some(dir);
        Ok(gateway)
    }

    /// The demo's `shop` files served with `gateway_table` as the `[gateway]` table's lines.
    pub async fn demo_with(gateway_table: &str) -> anyhow::Result<Self> {
        let data = crate::repo_root().join("examples/demo/data");
        Self::with_catalog(&format!(
            "[gateway]\n{gateway_table}\n[sources.shop]\nkind = \"files\"\nroot = \"{}\"\n",
            data.display()
        ))
        .await
    }

    /// The demo catalog of `examples/demo`.
    pub async fn demo() -> anyhow::Result<Self> {
        Self::start(&crate::repo_root().join("examples/demo/catalog.toml")).await
    }

    /// The port clients connect to.
    pub fn port(&self) -> u16 {
        self.server.local_addr().port()
    }

    /// A libpq-style connection string for database `database`.
    pub fn url(&self, database: &str) -> String {
        format!(
            "host=127.0.0.1 port={} user=tester dbname={database}",
            self.port()
        )
    }

    /// Stops the gateway gracefully (see [`Server::shutdown`]).
    pub async fn shutdown(self, grace: std::time::Duration) {
        self.server.shutdown(grace).await;
    }

    /// A tokio-postgres client connected to database `polygate`.
    pub async fn connect(&self) -> anyhow::Result<tokio_postgres::Client> {
        crate::backends::connect(&self.url("polygate")).await
    }
}
