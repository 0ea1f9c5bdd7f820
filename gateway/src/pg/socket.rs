//! One client's message loop: pgwire's `process_socket`, with the bytes a client may send
//! before it has authenticated bounded.
//!
//! pgwire accepts messages of up to 1 GB in any state, so an unauthenticated client could make
//! the gateway buffer a gigabyte per connection slot. PostgreSQL reads at most a 10,000-byte
//! start-up packet and 65,535-byte authentication tokens before a client is known; here the
//! read side of the socket stops after [`PRE_AUTH_BYTES`] until the client authenticates.
//!
//! Bytes a client sent after its SSLRequest but before the TLS handshake were sent in the
//! clear: anyone on the path could have put them there. They are never read as messages of
//! the encrypted session (CVE-2021-23214 in PostgreSQL): such a connection is closed.

use std::io;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};

use futures::{SinkExt, StreamExt};
use pgwire::api::{ClientInfo, ErrorHandler, PgWireConnectionState, PgWireServerHandlers};
use pgwire::error::{ErrorInfo, PgWireError};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::PgWireFrontendMessage;
use pgwire::tokio::TlsAcceptor;
use pgwire::tokio::server::{MaybeTls, negotiate_tls, process_error, process_message};
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::net::TcpStream;
use tokio_util::codec::{Framed, FramedParts};

use super::Connection;

/// The most bytes read from a client before it has authenticated: a start-up packet, a
/// password or SCRAM exchange and a few pipelined messages fit many times over.
pub(super) const PRE_AUTH_BYTES: usize = 256 * 1024;

/// Serves one client until it leaves: TLS negotiation, start-up and authentication, then its
/// statements. Time limits (authentication, idle sessions) are the caller's watchdog's.
pub(super) async fn process_socket<H: PgWireServerHandlers>(
    socket: TcpStream,
    tls: Option<TlsAcceptor>,
    handlers: H,
    connection: Arc<Connection>,
) -> io::Result<()> {
    let Some(negotiated) = negotiate_tls(socket, tls).await? else {
        // A direct TLS handshake while TLS is not configured.
        return Ok(());
    };
    let parts = negotiated.into_parts();
    if matches!(parts.io, MaybeTls::Tls(_)) && !parts.read_buf.is_empty() {
        let mut socket = Framed::from_parts(parts);
        let fatal = ErrorInfo::new(
            "FATAL".to_owned(),
            "08P01".to_owned(),
            "received unencrypted data after SSL request".to_owned(),
        );
        let _ = socket
            .send(PgWireBackendMessage::ErrorResponse(fatal.into()))
            .await;
        return Ok(());
    }
    let mut bounded = FramedParts::new(
        PreAuthBudget {
            io: parts.io,
            connection: Arc::clone(&connection),
            left: PRE_AUTH_BYTES,
        },
        parts.codec,
    );
    bounded.read_buf = parts.read_buf;
    bounded.write_buf = parts.write_buf;
    let mut socket = Framed::from_parts(bounded);

    let startup = handlers.startup_handler();
    let simple = handlers.simple_query_handler();
    let extended = handlers.extended_query_handler();
    let copy = handlers.copy_handler();
    let cancel = handlers.cancel_handler();
    let errors = handlers.error_handler();
    loop {
        let message = match socket.next().await {
            None => return Ok(()),
            Some(Ok(message)) => message,
            Some(Err(error)) => {
                if !connection.is_authenticated() {
                    let fatal = ErrorInfo::new(
                        "FATAL".to_owned(),
                        "08P01".to_owned(),
                        format!("invalid message before authentication: {error}"),
                    );
                    let _ = socket
                        .send(PgWireBackendMessage::ErrorResponse(fatal.into()))
                        .await;
                }
                return Err(io::Error::new(io::ErrorKind::InvalidData, error));
            }
        };
        // A Terminate closes the connection; some clients wait for the close.
        if matches!(message, PgWireFrontendMessage::Terminate(_)) {
            return Ok(());
        }
        let extended_protocol = match socket.state() {
            PgWireConnectionState::CopyInProgress(extended) => extended,
            _ => message.is_extended_query(),
        };
        if let Err(mut error) = process_message(
            message,
            &mut socket,
            Arc::clone(&startup),
            Arc::clone(&simple),
            Arc::clone(&extended),
            Arc::clone(&copy),
            Arc::clone(&cancel),
        )
        .await
        {
            errors.on_error(&socket, &mut error);
            let error = ErrorInfo::from(error);
            // pgwire would answer ReadyForQuery and read on, taking a client that failed
            // authentication for one ready for queries. After a FATAL error, or any error
            // before authentication, the connection ends, as PostgreSQL's does.
            if error.is_fatal() || !connection.is_authenticated() {
                let _ = socket
                    .send(PgWireBackendMessage::ErrorResponse(error.into()))
                    .await;
                return Ok(());
            }
            process_error(
                &mut socket,
                PgWireError::UserError(Box::new(error)),
                extended_protocol,
            )
            .await?;
        }
    }
}

/// A client socket whose reads fail once [`PRE_AUTH_BYTES`] have been read while the
/// connection was not yet authenticated.
struct PreAuthBudget<S> {
    io: S,
    connection: Arc<Connection>,
    left: usize,
}

impl<S: AsyncRead + Unpin> AsyncRead for PreAuthBudget<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        if self.connection.is_authenticated() {
            return Pin::new(&mut self.io).poll_read(cx, buf);
        }
        if self.left == 0 {
            return Poll::Ready(Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("more than {PRE_AUTH_BYTES} bytes sent before authentication"),
            )));
        }
        let before = buf.filled().len();
        ready!(Pin::new(&mut self.io).poll_read(cx, buf))?;
        let read = buf.filled().len().saturating_sub(before);
        self.left = self.left.saturating_sub(read);
        Poll::Ready(Ok(()))
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for PreAuthBudget<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.io).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.io.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.io).poll_shutdown(cx)
    }
}
