//! The PostgreSQL wire protocol front end.
//!
//! pgwire decodes and encodes messages; this module accepts connections (at most
//! `max_connections` at once), gives each one a [`session::Session`] and a watchdog, and stops
//! gracefully: on [`Server::shutdown`] it accepts no more, lets running statements finish for a
//! grace period, then cancels them, which cancels their remote queries.

mod bind;
mod connection;
/// A gateway error as pgwire sends it: an ErrorResponse with its SQLSTATE.
impl From<crate::errors::GatewayError> for pgwire::error::PgWireError {
    fn from(error: crate::errors::GatewayError) -> Self {
        let crate::errors::PgError { code, message } = error.to_pg();
        Self::UserError(Box::new(pgwire::error::ErrorInfo::new(
            "ERROR".to_owned(),
            code.to_owned(),
            message,
        )))
    }
}

#[cfg(test)]
mod decode_fuzz;
mod egress;
mod scram;
mod session;
mod socket;
mod startup;

use std::net::SocketAddr;
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant};

use pgwire::api::auth::StartupHandler;
use pgwire::api::cancel::{CancelHandler, DefaultCancelHandler};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::{ConnectionManager, PgWireServerHandlers, RandomPidSecretKeyGenerator};
use pgwire::tokio::TlsAcceptor;
use pgwire::tokio::tokio_rustls::rustls;
use polygate_catalog::TlsFiles;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};
use tokio::task::{JoinHandle, JoinSet};

use crate::engine::Engine;
pub use connection::Connection;
use connection::peer_closed;
pub use scram::Verifier;
pub use session::Session;
use startup::Startup;

/// How often a connection's watchdog looks at its client.
const WATCH_INTERVAL: Duration = Duration::from_millis(500);

/// A running PostgreSQL front end.
pub struct Server {
    local_addr: SocketAddr,
    /// Flipped to stop accepting connections.
    stop_accepting: watch::Sender<bool>,
    /// Flipped to cancel every running statement.
    cancel_all: watch::Sender<bool>,
    /// `None` once [`Server::wait`] or [`Server::shutdown`] has taken it.
    accept_loop: Option<JoinHandle<JoinSet<()>>>,
    shared: Arc<Shared>,
}

impl Server {
    /// Binds `listen` and serves `engine` to every client that connects.
    pub async fn start(engine: Engine, listen: SocketAddr) -> std::io::Result<Self> {
        let gateway = engine.catalog().gateway();
        let tls = gateway.tls.as_ref().map(tls_acceptor).transpose()?;
        let listener = TcpListener::bind(listen).await?;
        let local_addr = listener.local_addr()?;
        let max_connections = gateway.max_connections;
        let (stop_accepting, stop_rx) = watch::channel(false);
        let (cancel_all, cancel_rx) = watch::channel(false);
        let shared = Arc::new(Shared {
            engine,
            connections: Arc::new(ConnectionManager::new()),
            slots: Arc::new(Semaphore::new(max_connections)),
            cancel_all: cancel_rx,
            live: Mutex::new(Vec::new()),
            tls,
            pids: Arc::new(RandomPidSecretKeyGenerator::default()),
        });
        let accept_loop = tokio::spawn(accept(listener, Arc::clone(&shared), stop_rx));
        Ok(Self {
            local_addr,
            stop_accepting,
            cancel_all,
            accept_loop: Some(accept_loop),
            shared,
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

    /// Stops gracefully: accepts no new connection, lets running statements finish for up to
    /// `grace`, cancels those still running (57P01, which cancels their remote queries), then
    /// closes every connection.
    pub async fn shutdown(mut self, grace: Duration) {
        self.stop_accepting.send_replace(true);
        let Some(accept_loop) = self.accept_loop.take() else {
            return;
        };
        let Ok(mut connections) = accept_loop.await else {
            return;
        };
        let running = self.shared.running();
        tracing::info!(
            connections = connections.len(),
            running,
            "shutting down: waiting up to {grace:?} for running statements"
        );
        let deadline = tokio::time::Instant::now() + grace;
        while self.shared.running() > 0 && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        if self.shared.running() > 0 {
            tracing::info!("shutdown grace over: canceling running statements");
            self.cancel_all.send_replace(true);
            // Let the cancellations reach the clients and the stores.
            let until = tokio::time::Instant::now() + Duration::from_secs(5);
            while self.shared.running() > 0 && tokio::time::Instant::now() < until {
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        connections.abort_all();
        while connections.join_next().await.is_some() {}
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
    /// One permit per connection being served.
    slots: Arc<Semaphore>,
    /// Flips when running statements must be canceled.
    cancel_all: watch::Receiver<bool>,
    /// The connections being served.
    live: Mutex<Vec<Weak<Connection>>>,
    /// TLS, when catalog.toml gives a certificate.
    tls: Option<TlsAcceptor>,
    /// Process ids and secret keys for CancelRequests, unique across connections.
    pids: Arc<RandomPidSecretKeyGenerator>,
}

impl Shared {
    /// How many connections are running a statement.
    fn running(&self) -> usize {
        let mut live = self.live.lock().unwrap_or_else(|p| p.into_inner());
        live.retain(|c| c.strong_count() > 0);
        live.iter()
            .filter_map(Weak::upgrade)
            .filter(|c| c.is_running())
            .count()
    }
}

/// Accepts connections until told to stop; returns the connections still open, so that a
/// shutdown can wait for them.
async fn accept(
    listener: TcpListener,
    shared: Arc<Shared>,
    mut stop: watch::Receiver<bool>,
) -> JoinSet<()> {
    let mut connections = JoinSet::new();
    loop {
        let accepted = tokio::select! {
            accepted = listener.accept() => accepted,
            _ = stop.wait_for(|stop| *stop) => return connections,
            // Reap finished connections so that the set does not grow.
            Some(_) = connections.join_next(), if !connections.is_empty() => continue,
        };
        let (socket, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(error) => {
                // Out of file descriptors and the like: wait rather than spin.
                tracing::warn!(%error, "cannot accept a connection");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        // Rows go out as soon as a batch is encoded; Nagle's delay would only add latency.
        if let Err(error) = socket.set_nodelay(true) {
            tracing::debug!(%error, %peer, "cannot set TCP_NODELAY");
        }
        // A client whose host vanished sends no FIN: keepalive probes find it, so that its
        // statement, sessions and cursors in the stores are let go.
        if let Err(error) = socket2::SockRef::from(&socket).set_tcp_keepalive(&keepalive()) {
            tracing::debug!(%error, %peer, "cannot set SO_KEEPALIVE");
        }
        match Arc::clone(&shared.slots).try_acquire_owned() {
            Ok(permit) => {
                connections.spawn(serve(socket, peer, Arc::clone(&shared), permit));
            }
            Err(_) => {
                tracing::warn!(%peer, "connection refused: max_connections reached");
                connections.spawn(refuse_too_many(socket));
            }
        }
    }
}

/// Serves one client, with a watchdog beside pgwire's message loop: it cancels the running
/// statement when the client goes away, and closes the connection when it has been idle
/// longer than `idle_session_timeout`.
async fn serve(
    socket: TcpStream,
    peer: SocketAddr,
    shared: Arc<Shared>,
    _slot: OwnedSemaphorePermit,
) {
    // A second handle on the socket, only to notice the client closing its end.
    let (socket, probe) = match split_probe(socket) {
        Ok(pair) => pair,
        Err(error) => {
            tracing::debug!(%error, %peer, "cannot serve a connection");
            return;
        }
    };
    let connection = Arc::new(Connection::new(shared.cancel_all.clone()));
    shared
        .live
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .push(Arc::downgrade(&connection));
    let handlers = ConnectionHandlers::new(&shared, Arc::clone(&connection));
    let messages = socket::process_socket(
        socket,
        shared.tls.clone(),
        handlers,
        Arc::clone(&connection),
    );
    tokio::pin!(messages);
    let accepted = Instant::now();
    let authentication_timeout = shared.engine.catalog().gateway().authentication_timeout;
    let mut watch = tokio::time::interval(WATCH_INTERVAL);
    loop {
        tokio::select! {
            outcome = &mut messages => {
                if let Err(error) = outcome {
                    tracing::debug!(%error, %peer, "connection ended with an error");
                }
                return;
            }
            _ = watch.tick() => {
                // An unauthenticated socket holds a connection slot: it has as long as
                // `authentication_timeout_secs` gives, then it is closed.
                if !connection.is_authenticated() && accepted.elapsed() > authentication_timeout {
                    tracing::info!(%peer, "closing a connection that did not authenticate within {authentication_timeout:?}");
                    return;
                }
                if connection.is_running() && peer_closed(&probe) {
                    tracing::info!(%peer, "client gone: canceling its statement");
                    connection.client_gone();
                }
                if let (Some(idle), Some(timeout)) = (connection.idle_for(), connection.idle_timeout())
                    && idle > timeout
                {
                    tracing::info!(%peer, "closing a connection idle for {idle:?} (idle_session_timeout)");
                    return;
                }
            }
        }
    }
}

/// TCP keepalive for client sockets: the first probe after a minute of silence, then every
/// ten seconds, the connection dropped after five unanswered (about two minutes in all).
fn keepalive() -> socket2::TcpKeepalive {
    let keepalive = socket2::TcpKeepalive::new()
        .with_time(Duration::from_secs(60))
        .with_interval(Duration::from_secs(10));
    #[cfg(any(target_os = "linux", target_os = "macos"))]
    let keepalive = keepalive.with_retries(5);
    keepalive
}

fn split_probe(socket: TcpStream) -> std::io::Result<(TcpStream, std::net::TcpStream)> {
    let socket = socket.into_std()?;
    let probe = socket.try_clone()?;
    probe.set_nonblocking(true)?;
    Ok((TcpStream::from_std(socket)?, probe))
}

/// Answers a connection over `max_connections` as PostgreSQL does: FATAL 53300 in place of
/// authentication, then close.
async fn refuse_too_many(mut socket: TcpStream) {
    let _ = tokio::time::timeout(Duration::from_secs(5), async {
        // SSLRequest / GSSENCRequest come first from some clients: decline, then read the
        // start-up message proper.
        for _ in 0..3 {
            let length = socket.read_i32().await? as usize;
            if !(8..=10_000).contains(&length) {
                break;
            }
            let code = socket.read_i32().await?;
            let mut rest = vec![0u8; length - 8];
            socket.read_exact(&mut rest).await?;
            if code == 80_877_103 || code == 80_877_104 {
                socket.write_all(b"N").await?;
                continue;
            }
            break;
        }
        socket
            .write_all(&fatal_error("53300", "sorry, too many clients already"))
            .await?;
        socket.shutdown().await
    })
    .await;
}

/// An ErrorResponse message of severity FATAL.
fn fatal_error(code: &str, message: &str) -> Vec<u8> {
    let mut fields = Vec::new();
    for (tag, value) in [
        (b'S', "FATAL"),
        (b'V', "FATAL"),
        (b'C', code),
        (b'M', message),
    ] {
        fields.push(tag);
        fields.extend_from_slice(value.as_bytes());
        fields.push(0);
    }
    fields.push(0);
    let mut out = vec![b'E'];
    out.extend_from_slice(&(fields.len() as i32 + 4).to_be_bytes());
    out.extend_from_slice(&fields);
    out
}

/// The handlers of one client connection.
struct ConnectionHandlers {
    session: Arc<Session>,
    startup: Arc<Startup>,
    cancel: Arc<DefaultCancelHandler>,
}

impl ConnectionHandlers {
    fn new(shared: &Shared, connection: Arc<Connection>) -> Self {
        Self {
            session: Arc::new(Session::new(shared.engine.clone(), Arc::clone(&connection))),
            startup: Arc::new(Startup::new(
                shared.engine.clone(),
                Arc::clone(&shared.connections),
                Arc::clone(&shared.pids),
                Arc::clone(&connection),
            )),
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

/// A TLS acceptor for the certificate chain and key of catalog.toml.
fn tls_acceptor(files: &TlsFiles) -> std::io::Result<TlsAcceptor> {
    let invalid = |what: &str, path: &std::path::Path, error: &dyn std::fmt::Display| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{what} {}: {error}", path.display()),
        )
    };
    let certificates = CertificateDer::pem_file_iter(&files.cert_file)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .map_err(|e| invalid("cannot read the certificates of", &files.cert_file, &e))?;
    let key = PrivateKeyDer::from_pem_file(&files.key_file)
        .map_err(|e| invalid("cannot read the private key of", &files.key_file, &e))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("cannot use", &files.cert_file, &e))?
        .with_no_client_auth()
        .with_single_cert(certificates, key)
        .map_err(|e| {
            invalid(
                "cannot use the certificate and key of",
                &files.cert_file,
                &e,
            )
        })?;
    Ok(TlsAcceptor::from(Arc::new(config)))
}
