//! What the gateway knows of one client connection outside pgwire's message loop: whether a
//! query runs, since when it is idle, whether the client went away, and whether the gateway is
//! shutting down.

use std::future::{Future, pending};
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

use futures::channel::oneshot;
use tokio::sync::watch;

use crate::errors::CancelReason;

/// A future that resolves when the running statement must stop, saying why.
pub type Stop = Pin<Box<dyn Future<Output = CancelReason> + Send>>;

/// One client connection's shared state.
#[derive(Debug)]
pub struct Connection {
    running: AtomicBool,
    /// Set once the client has authenticated; until then the connection has a deadline.
    authenticated: AtomicBool,
    idle_since: Mutex<Instant>,
    /// `idle_session_timeout` in milliseconds, 0 for none; kept current by the session.
    idle_timeout_ms: AtomicU64,
    /// Set when the client closed its end while a statement ran.
    gone: watch::Sender<bool>,
    /// Set by the server when running statements must be canceled (end of the shutdown grace).
    cancel_all: watch::Receiver<bool>,
}

impl Connection {
    /// A connection of a server whose `cancel_all` flips at the end of a shutdown grace.
    pub fn new(cancel_all: watch::Receiver<bool>) -> Self {
        Self {
            running: AtomicBool::new(false),
            authenticated: AtomicBool::new(false),
            idle_since: Mutex::new(Instant::now()),
            idle_timeout_ms: AtomicU64::new(0),
            gone: watch::Sender::new(false),
            cancel_all,
        }
    }

    /// The client has authenticated.
    pub fn authenticated(&self) {
        self.authenticated.store(true, Ordering::SeqCst);
    }

    /// Has the client authenticated?
    pub fn is_authenticated(&self) -> bool {
        self.authenticated.load(Ordering::SeqCst)
    }

    /// A statement starts; it ends when the returned guard is dropped.
    pub fn begin_statement(&self) -> Running<'_> {
        self.running.store(true, Ordering::SeqCst);
        Running(self)
    }

    /// Is a statement running?
    pub fn is_running(&self) -> bool {
        self.running.load(Ordering::SeqCst)
    }

    /// How long the connection has waited for its client, or `None` while a statement runs.
    pub fn idle_for(&self) -> Option<Duration> {
        if self.is_running() {
            return None;
        }
        let since = *self.idle_since.lock().unwrap_or_else(|p| p.into_inner());
        Some(since.elapsed())
    }

    /// The session's `idle_session_timeout` changed.
    pub fn set_idle_timeout(&self, timeout: Option<Duration>) {
        let ms = timeout.map_or(0, |t| u64::try_from(t.as_millis()).unwrap_or(u64::MAX));
        self.idle_timeout_ms.store(ms, Ordering::SeqCst);
    }

    /// The session's `idle_session_timeout`.
    pub fn idle_timeout(&self) -> Option<Duration> {
        match self.idle_timeout_ms.load(Ordering::SeqCst) {
            0 => None,
            ms => Some(Duration::from_millis(ms)),
        }
    }

    /// The client closed its end: the running statement stops, and its remote work with it.
    pub fn client_gone(&self) {
        self.gone.send_replace(true);
    }

    /// What stops the statement about to run: a CancelRequest (`cancel`), its
    /// `statement_timeout`, the client going away, or the end of a shutdown grace.
    pub fn stop(&self, cancel: Option<oneshot::Receiver<()>>, timeout: Option<Duration>) -> Stop {
        let mut gone = self.gone.subscribe();
        let mut cancel_all = self.cancel_all.clone();
        Box::pin(async move {
            let canceled = async {
                // An Err means the request was superseded, not canceled.
                let canceled = match cancel {
                    Some(receiver) => receiver.await.is_ok(),
                    None => false,
                };
                if !canceled {
                    pending::<()>().await;
                }
            };
            let timed_out = async {
                match timeout {
                    Some(timeout) => tokio::time::sleep(timeout).await,
                    None => pending::<()>().await,
                }
            };
            let flag = |receiver: &'_ mut watch::Receiver<bool>| {
                let receiver = receiver.clone();
                async move {
                    let mut receiver = receiver;
                    if receiver.wait_for(|set| *set).await.is_err() {
                        pending::<()>().await;
                    }
                }
            };
            let client_gone = flag(&mut gone);
            let shutdown = flag(&mut cancel_all);
            tokio::select! {
                () = canceled => CancelReason::UserRequest,
                () = timed_out => CancelReason::StatementTimeout,
                () = client_gone => CancelReason::ClientGone,
                () = shutdown => CancelReason::Shutdown,
            }
        })
    }
}

/// A running statement; dropping it marks the connection idle.
#[derive(Debug)]
pub struct Running<'a>(&'a Connection);

impl Drop for Running<'_> {
    fn drop(&mut self) {
        *self.0.idle_since.lock().unwrap_or_else(|p| p.into_inner()) = Instant::now();
        self.0.running.store(false, Ordering::SeqCst);
    }
}

/// Has the peer of `probe` (a clone of a client's socket) closed its end? Reads nothing: a
/// pending message stays for pgwire to read.
///
/// On Linux this asks for `POLLRDHUP`, as PostgreSQL's `client_connection_check_interval`
/// does: the client's FIN counts even when bytes it sent before closing are still unread, as
/// they are after a Terminate message or a TLS close_notify sent during a statement.
#[cfg(target_os = "linux")]
pub fn peer_closed(probe: &std::net::TcpStream) -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let mut fds = [PollFd::new(probe, PollFlags::RDHUP)];
    let now = Timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    match poll(&mut fds, Some(&now)) {
        Ok(_) => {
            let [fd] = &fds;
            fd.revents()
                .intersects(PollFlags::RDHUP | PollFlags::HUP | PollFlags::ERR)
        }
        Err(_) => false,
    }
}

/// Has the peer of `probe` (a clone of a client's socket) closed its end? Reads nothing: a
/// pending message stays for pgwire to read. Without `POLLRDHUP`, a FIN behind unread bytes
/// is seen only once they are read.
#[cfg(not(target_os = "linux"))]
pub fn peer_closed(probe: &std::net::TcpStream) -> bool {
    let mut byte = [0u8; 1];
    match probe.peek(&mut byte) {
        Ok(0) => true,
        Ok(_) => false,
        Err(error) => !matches!(
            error.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
        ),
    }
}
