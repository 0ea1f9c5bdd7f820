//! A real store behind a TCP relay that a test can freeze or take down: what a store looks
//! like from the gateway when its process is stopped (`kill -STOP`: connections are accepted
//! by the kernel and never answered) or shut down (connections close, new ones are refused).
//!
//! The store stays a real server; only the path to it fails. Stopping the suite's shared
//! servers themselves would fail every other test running beside the one that asked.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// What the relay does with the bytes it is given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Link {
    /// Bytes flow both ways: the store answers.
    Open,
    /// Bytes are held, connections accepted and never answered: a frozen store.
    Frozen,
    /// Every connection is closed as soon as it is seen: a store that shut down.
    Down,
}

/// A relay on a free loopback port to the store at `upstream`; stops when dropped.
pub struct FaultyLink {
    port: u16,
    link: Arc<watch::Sender<Link>>,
    trigger: Trigger,
    task: JoinHandle<()>,
}

/// A fault set to happen when a client sends some bytes: the request that holds them is the
/// first one the store no longer answers.
type Trigger = Arc<Mutex<Option<(Vec<u8>, Link)>>>;

impl FaultyLink {
    /// Relays a free loopback port to `upstream` (`host:port`).
    pub async fn to(upstream: &str) -> anyhow::Result<Self> {
        let upstream: SocketAddr = tokio::net::lookup_host(upstream)
            .await?
            .next()
            .ok_or_else(|| anyhow::anyhow!("{upstream} resolves to no address"))?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let port = listener.local_addr()?.port();
        let link = Arc::new(watch::Sender::new(Link::Open));
        let trigger = Trigger::default();
        let relays = Relays {
            upstream,
            link: Arc::clone(&link),
            trigger: Arc::clone(&trigger),
        };
        let task = tokio::spawn(async move {
            while let Ok((client, _)) = listener.accept().await {
                tokio::spawn(relays.clone().relay(client));
            }
        });
        Ok(Self {
            port,
            link,
            trigger,
            task,
        })
    }

    /// Relays to the host and port of `url` (`scheme://[user@]host:port/...`).
    pub async fn to_url(url: &str) -> anyhow::Result<Self> {
        let (_, _, authority, _) = split_url(url)?;
        Self::to(authority).await
    }

    /// `url` with its host and port replaced by the relay's.
    pub fn url(&self, url: &str) -> anyhow::Result<String> {
        let (scheme, user, _, rest) = split_url(url)?;
        Ok(format!("{scheme}://{user}127.0.0.1:{}{rest}", self.port))
    }

    /// The relay's port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Sets what the relay does from now on, to connections open and to come.
    pub fn set(&self, link: Link) {
        *self.trigger.lock().unwrap_or_else(|p| p.into_inner()) = None;
        self.link.send_replace(link);
    }

    /// Sets `link` at the moment a client sends `bytes` (a statement's text, a command's
    /// name), before they reach the store: a store that froze or went down just as that
    /// request arrived.
    pub fn set_when_sent(&self, bytes: &[u8], link: Link) {
        *self.trigger.lock().unwrap_or_else(|p| p.into_inner()) = Some((bytes.to_vec(), link));
    }

    /// Whether a trigger set by [`FaultyLink::set_when_sent`] has fired.
    pub fn fired(&self) -> bool {
        self.trigger
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .is_none()
            && *self.link.borrow() != Link::Open
    }
}

impl Drop for FaultyLink {
    fn drop(&mut self) {
        self.set(Link::Down);
        self.task.abort();
    }
}

/// `scheme`, `user@` (or nothing), `host:port` and the rest of `url`.
fn split_url(url: &str) -> anyhow::Result<(&str, &str, &str, &str)> {
    let (scheme, after) = url
        .split_once("://")
        .ok_or_else(|| anyhow::anyhow!("{url} has no scheme"))?;
    let end = after.find(['/', '?']).unwrap_or(after.len());
    let (authority, rest) = after.split_at(end);
    let (user, host) = match authority.rfind('@') {
        Some(at) => authority.split_at(at + 1),
        None => ("", authority),
    };
    Ok((scheme, user, host, rest))
}

/// Waits until the link is open (`true`) or down (`false`).
async fn until_open(link: &mut watch::Receiver<Link>) -> bool {
    loop {
        match *link.borrow_and_update() {
            Link::Open => return true,
            Link::Down => return false,
            Link::Frozen => {}
        }
        if link.changed().await.is_err() {
            return false;
        }
    }
}

/// What every relayed connection shares.
#[derive(Clone)]
struct Relays {
    upstream: SocketAddr,
    link: Arc<watch::Sender<Link>>,
    trigger: Trigger,
}

impl Relays {
    async fn relay(self, client: TcpStream) {
        let mut link = self.link.subscribe();
        // A frozen store's kernel still accepts: the connection waits here, unanswered.
        if !until_open(&mut link).await {
            return;
        }
        let Ok(server) = TcpStream::connect(self.upstream).await else {
            return;
        };
        let _ = client.set_nodelay(true);
        let _ = server.set_nodelay(true);
        let (client_read, client_write) = client.into_split();
        let (server_read, server_write) = server.into_split();
        let up = tokio::spawn(self.clone().pump(client_read, server_write, true));
        let down = tokio::spawn(self.pump(server_read, client_write, false));
        let _ = tokio::join!(up, down);
    }

    /// Copies `from` to `to` while the link is open; holds the bytes while it is frozen;
    /// ends (closing both) when it goes down or either side closes. Bytes a client sends
    /// (`upstream`) are checked against the trigger first.
    async fn pump(self, mut from: OwnedReadHalf, mut to: OwnedWriteHalf, upstream: bool) {
        let mut link = self.link.subscribe();
        let mut buffer = vec![0_u8; 64 * 1024];
        loop {
            if !until_open(&mut link).await {
                return;
            }
            let read = tokio::select! {
                read = from.read(&mut buffer) => read,
                // Frozen or down meanwhile: look again before reading on.
                _ = link.changed() => continue,
            };
            let count = match read {
                Ok(0) | Err(_) => return,
                Ok(count) => count,
            };
            let Some(bytes) = buffer.get(..count) else {
                return;
            };
            if upstream {
                self.fire_on(bytes);
            }
            if !until_open(&mut link).await {
                return;
            }
            if to.write_all(bytes).await.is_err() {
                return;
            }
        }
    }

    /// Fires the trigger if `bytes` hold its pattern.
    fn fire_on(&self, bytes: &[u8]) {
        let mut trigger = self.trigger.lock().unwrap_or_else(|p| p.into_inner());
        let Some((pattern, _)) = trigger.as_ref() else {
            return;
        };
        if bytes
            .windows(pattern.len())
            .any(|w| w == pattern.as_slice())
            && let Some((_, link)) = trigger.take()
        {
            self.link.send_replace(link);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::split_url;

    #[test]
    fn urls_split_around_their_authority() {
        assert_eq!(
            split_url("postgres://postgres@127.0.0.1:5432/postgres").unwrap(),
            ("postgres", "postgres@", "127.0.0.1:5432", "/postgres")
        );
        assert_eq!(
            split_url("mongodb://127.0.0.1:27017").unwrap(),
            ("mongodb", "", "127.0.0.1:27017", "")
        );
        assert_eq!(
            split_url("http://127.0.0.1:9200?x=1").unwrap(),
            ("http", "", "127.0.0.1:9200", "?x=1")
        );
    }
}
