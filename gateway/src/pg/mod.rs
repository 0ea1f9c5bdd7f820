//! The PostgreSQL wire protocol front end.
//!
//! pgwire decodes and encodes messages; this module accepts connections, gives each one a
//! [`session::Session`] (its own DataFusion context, created on first use for the database the
//! client named), and streams results back batch by batch.

mod session;

use std::net::SocketAddr;
use std::sync::Arc;

use pgwire::api::auth::StartupHandler;
use pgwire::api::auth::noop::NoopStartupHandler;
use pgwire::api::cancel::{CancelHandler, DefaultCancelHandler};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::{ConnectionManager, PgWireServerHandlers};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::engine::Engine;
pub use session::Session;

/// A running PostgreSQL front end.
#[derive(Debug)]
pub struct Server {
    local_addr: SocketAddr,
    /// `None` once [`Server::wait`] has taken it.
    accept_loop: Option<JoinHandle<()>>,
}

impl Server {
    /// Binds `listen` and serves `engine` to every client that connects.
    pub async fn start(engine: Engine, listen: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind(listen).await?;
        let local_addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            engine,
            connections: Arc::new(ConnectionManager::new()),
        });
        let accept_loop = tokio::spawn(accept(listener, shared));
        Ok(Self {
            local_addr,
            accept_loop: Some(accept_loop),
        })
    }

    /// The address clients connect to (with the real port when `listen` asked for port 0).
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// Serves until the accept loop ends (it does not, unless the task is aborted).
    pub async fn wait(mut self) {
        if let Some(accept_loop) = self.accept_loop.take() {
            let _ = accept_loop.await;
        }
    }
}

impl Drop for Server {
    /// Stops accepting connections. Connections already open are served to their end.
    fn drop(&mut self) {
        if let Some(accept_loop) = &self.accept_loop {
            accept_loop.abort();
        }
    }
}

/// What all connections share.
struct Shared {
    engine: Engine,
    /// Lets a CancelRequest, which arrives on a connection of its own, find its target.
    connections: Arc<ConnectionManager>,
}

async fn accept(listener: TcpListener, shared: Arc<Shared>) {
    loop {
        let (socket, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: wait rather than spin.
                tracing::warn!(%error, "cannot accept a connection");
                tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                continue;
            }
        };
        // Rows go out as soon as a batch is encoded; Nagle's delay would only add latency.
        if let Err(error) = socket.set_nodelay(true) {
            tracing::debug!(%error, %peer, "cannot set TCP_NODELAY");
        }
        let handlers = ConnectionHandlers::new(&shared);
        tokio::spawn(async move {
            if let Err(error) = pgwire::tokio::process_socket(socket, None, handlers).await {
                tracing::debug!(%error, %peer, "connection ended with an error");
            }
        });
    }
}

/// The handlers of one client connection.
struct ConnectionHandlers {
    session: Arc<Session>,
    startup: Arc<Startup>,
    cancel: Arc<DefaultCancelHandler>,
}

impl ConnectionHandlers {
    fn new(shared: &Shared) -> Self {
        Self {
            session: Arc::new(Session::new(shared.engine.clone())),
            startup: Arc::new(Startup {
                connections: Arc::clone(&shared.connections),
            }),
            cancel: Arc::new(DefaultCancelHandler::new(Arc::clone(&shared.connections))),
        }
    }
}

impl PgWireServerHandlers for ConnectionHandlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        Arc::clone(&self.session)
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        Arc::clone(&self.session)
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        Arc::clone(&self.startup)
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        Arc::clone(&self.cancel)
    }
}

/// Start-up without authentication (clients are trusted, as with PostgreSQL's `trust`);
/// registers each connection so that CancelRequests can reach it.
struct Startup {
    connections: Arc<ConnectionManager>,
}

impl NoopStartupHandler for Startup {
    fn connection_manager(&self) -> Option<Arc<ConnectionManager>> {
        Some(Arc::clone(&self.connections))
    }
}
