//! A minimal PostgreSQL extended-protocol client.
//!
//! tokio-postgres always asks for binary results and sends binary parameters; clients such as
//! JDBC send text parameters and ask for text results, and some fetch a portal a few rows at a
//! time. This client speaks those variants, message by message, so tests can pin them.

use bytes::BytesMut;
use postgres_protocol::IsNull;
use postgres_protocol::message::backend::{DataRowBody, Message};
use postgres_protocol::message::frontend;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// A value's wire format: 0 is text, 1 is binary.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WireFormat {
    /// PostgreSQL's text format.
    Text = 0,
    /// PostgreSQL's binary format.
    Binary = 1,
}

/// An error the server answered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServerError {
    /// The SQLSTATE.
    pub code: String,
    /// The message.
    pub message: String,
}

/// What one Execute returned.
#[derive(Debug, Default)]
pub struct Fetched {
    /// The rows, each value raw (`None` for NULL).
    pub rows: Vec<Vec<Option<Vec<u8>>>>,
    /// Whether the portal was suspended (more rows remain) rather than completed.
    pub suspended: bool,
}

/// One connection, speaking raw protocol messages.
pub struct WireClient {
    stream: TcpStream,
    buffer: BytesMut,
    /// How long [`WireClient::query`] waits before each Execute that resumes a portal, as a
    /// client does that processes each batch of rows before fetching the next.
    pub pause_between_executes: std::time::Duration,
}

impl WireClient {
    /// Connects and completes start-up (the gateway under test trusts clients).
    pub async fn connect(port: u16, database: &str) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(("127.0.0.1", port)).await?;
        Self::start_up(stream, database).await
    }

    /// [`WireClient::connect`] with a receive buffer of a few kilobytes: a client that stops
    /// reading blocks the gateway's writes after little more than its own send buffer.
    pub async fn connect_with_small_window(port: u16, database: &str) -> anyhow::Result<Self> {
        let socket = tokio::net::TcpSocket::new_v4()?;
        socket.set_recv_buffer_size(4096)?;
        let stream = socket
            .connect(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
            .await?;
        Self::start_up(stream, database).await
    }

    async fn start_up(stream: TcpStream, database: &str) -> anyhow::Result<Self> {
        let mut client = Self {
            stream,
            buffer: BytesMut::new(),
            pause_between_executes: std::time::Duration::ZERO,
        };
        let mut out = BytesMut::new();
        frontend::startup_message([("user", "tester"), ("database", database)], &mut out)?;
        client.stream.write_all(&out).await?;
        client
            .until_ready()
            .await?
            .map_err(|e| anyhow::anyhow!("{e:?}"))?;
        Ok(client)
    }

    /// Parses `sql` with the given parameter type OIDs (0: let the server infer), binds
    /// `params` in `param_format`, asks for results in `result_format`, and executes with
    /// `max_rows` (0: all), then executes again while the portal is suspended. Returns each
    /// Execute's rows.
    pub async fn query(
        &mut self,
        sql: &str,
        param_types: &[u32],
        params: &[Option<&[u8]>],
        param_format: WireFormat,
        result_format: WireFormat,
        max_rows: i32,
    ) -> anyhow::Result<Result<Vec<Fetched>, ServerError>> {
        let mut out = BytesMut::new();
        frontend::parse("", sql, param_types.iter().copied(), &mut out)?;
        frontend::bind(
            "",
            "",
            [param_format as i16],
            params.iter().copied(),
            |value, buf| match value {
                Some(bytes) => {
                    buf.extend_from_slice(bytes);
                    Ok(IsNull::No)
                }
                None => Ok(IsNull::Yes),
            },
            [result_format as i16],
            &mut out,
        )
        .map_err(|_| anyhow::anyhow!("cannot encode Bind"))?;
        frontend::execute("", max_rows, &mut out)?;
        // Flush, not Sync: a Sync ends the implicit transaction, and the portal with it.
        frontend::flush(&mut out);
        self.stream.write_all(&out).await?;

        let mut fetches = Vec::new();
        let outcome = loop {
            match self.read_execute_result().await? {
                Ok(fetched) => {
                    let suspended = fetched.suspended;
                    fetches.push(fetched);
                    if !suspended {
                        break Ok(fetches);
                    }
                    tokio::time::sleep(self.pause_between_executes).await;
                    let mut out = BytesMut::new();
                    frontend::execute("", max_rows, &mut out)?;
                    frontend::flush(&mut out);
                    self.stream.write_all(&out).await?;
                }
                Err(error) => break Err(error),
            }
        };
        let mut out = BytesMut::new();
        frontend::sync(&mut out);
        self.stream.write_all(&out).await?;
        self.until_ready().await?.ok();
        Ok(outcome)
    }

    /// Says goodbye as a client does: a Terminate message, then the end of its sending side
    /// (a FIN), with whatever the server sent still unread.
    pub async fn terminate(&mut self) -> anyhow::Result<()> {
        let mut out = BytesMut::new();
        frontend::terminate(&mut out);
        self.stream.write_all(&out).await?;
        self.stream.shutdown().await?;
        Ok(())
    }

    /// Sends `bytes` as they are, whatever they hold: for tests of malformed messages.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> anyhow::Result<()> {
        self.stream.write_all(bytes).await?;
        Ok(())
    }

    /// Waits up to `within` for the server to close the connection, or to answer with an
    /// error; returns that error, or `None` if the connection was closed without one.
    pub async fn closed_or_error(
        &mut self,
        within: std::time::Duration,
    ) -> anyhow::Result<Option<ServerError>> {
        tokio::time::timeout(within, async {
            loop {
                match self.next_message().await {
                    Ok(Message::ErrorResponse(body)) => return Ok(Some(server_error(&body)?)),
                    Ok(_) => {}
                    Err(_) => return Ok(None),
                }
            }
        })
        .await?
    }

    /// Reads messages up to the end of one Execute: CommandComplete, PortalSuspended or an error.
    async fn read_execute_result(&mut self) -> anyhow::Result<Result<Fetched, ServerError>> {
        let mut fetched = Fetched::default();
        loop {
            match self.next_message().await? {
                Message::DataRow(body) => fetched.rows.push(row_values(&body)?),
                Message::CommandComplete(_) => return Ok(Ok(fetched)),
                Message::PortalSuspended => {
                    fetched.suspended = true;
                    return Ok(Ok(fetched));
                }
                Message::ErrorResponse(body) => return Ok(Err(server_error(&body)?)),
                Message::EmptyQueryResponse => return Ok(Ok(fetched)),
                _ => {}
            }
        }
    }

    /// Reads until ReadyForQuery, returning the first error seen on the way.
    pub async fn until_ready(&mut self) -> anyhow::Result<Result<(), ServerError>> {
        let mut first_error = None;
        loop {
            match self.next_message().await? {
                Message::ReadyForQuery(_) => return Ok(first_error.map_or(Ok(()), Err)),
                Message::ErrorResponse(body) => {
                    first_error.get_or_insert(server_error(&body)?);
                }
                _ => {}
            }
        }
    }

    async fn next_message(&mut self) -> anyhow::Result<Message> {
        loop {
            if let Some(message) = Message::parse(&mut self.buffer)? {
                return Ok(message);
            }
            let read = tokio::time::timeout(
                std::time::Duration::from_secs(30),
                self.stream.read_buf(&mut self.buffer),
            )
            .await??;
            anyhow::ensure!(read > 0, "server closed the connection");
        }
    }
}

fn row_values(body: &DataRowBody) -> anyhow::Result<Vec<Option<Vec<u8>>>> {
    let buffer = body.buffer();
    let mut values = Vec::new();
    let mut ranges = body.ranges();
    while let Some(range) = fallible_iterator::FallibleIterator::next(&mut ranges)? {
        values.push(range.map(|r| buffer[r].to_vec()));
    }
    Ok(values)
}

fn server_error(
    body: &postgres_protocol::message::backend::ErrorResponseBody,
) -> anyhow::Result<ServerError> {
    let mut code = String::new();
    let mut message = String::new();
    let mut fields = body.fields();
    while let Some(field) = fallible_iterator::FallibleIterator::next(&mut fields)? {
        match field.type_() {
            b'C' => code = String::from_utf8_lossy(field.value_bytes()).into_owned(),
            b'M' => message = String::from_utf8_lossy(field.value_bytes()).into_owned(),
            _ => {}
        }
    }
    Ok(ServerError { code, message })
}
