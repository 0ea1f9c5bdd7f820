//! One client connection: its DataFusion session, its settings and transaction block, and the
//! simple and extended query protocols on top of them.
//!
//! Both protocols stream: a result's batches are encoded into DataRows as the client reads
//! them, and every statement runs under a [`Stop`] (CancelRequest, `statement_timeout`, client
//! gone, shutdown) that drops the DataFusion stream, and with it the remote queries, at once.

use std::fmt::Debug;
use std::future::Future;
use std::sync::{Arc, Mutex};

use arrow_pg::datatypes::into_pg_type;
use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::DataType;
use datafusion::logical_expr::LogicalPlan;
use futures::stream::{self, BoxStream};
use futures::{FutureExt, Sink, SinkExt, StreamExt};
use pgwire::api::portal::{Format, Portal, PortalExecutionState};
use pgwire::api::query::{
    ExtendedQueryHandler, SimpleQueryHandler, send_execution_response, send_query_response,
    send_ready_for_query,
};
use pgwire::api::results::{DataRowEncoder, FieldFormat, FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::{Entry, PortalStore};
use pgwire::api::{
    ClientInfo, ClientPortalStore, ConnectionHandle, DEFAULT_NAME, METADATA_DATABASE,
    METADATA_USER, PgWireConnectionState, Type,
};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::data::RowDescription;
use pgwire::messages::extendedquery::{
    Bind, BindComplete, Execute, PortalSuspended, Sync as PgSync,
};
use pgwire::messages::response::{EmptyQueryResponse, TransactionStatus};
use pgwire::messages::simplequery::Query;
use pgwire::messages::startup::ParameterStatus;
use pgwire::types::format::FormatOptions;

use polygate_pgcompat::settings::Settings;
use polygate_pgcompat::statement::Command;

use super::bind::BindShape;
use super::connection::{Connection, Stop};
use crate::engine::{self, DEFAULT_DATABASE, DEFAULT_USER, Engine, QuerySession};
use crate::errors::{CancelReason, GatewayError};

/// A connection's state: the engine, the session made for its database, its transaction.
pub struct Session {
    core: Arc<Core>,
    parser: Arc<Parser>,
}

/// What the query handlers and the statement parser of one connection share.
struct Core {
    engine: Engine,
    connection: Arc<Connection>,
    /// Created at the first statement, once the client's start-up message is known.
    session: Mutex<Option<QuerySession>>,
    /// The open transaction block, if any.
    transaction: Mutex<Option<Transaction>>,
}

/// A `BEGIN` ... `COMMIT` block: reads only, so all it keeps is what its settings were, for
/// `ROLLBACK` and for the end of `SET LOCAL`.
#[derive(Debug)]
struct Transaction {
    settings_at_begin: Settings,
    local: Vec<String>,
}

impl Core {
    fn session<C: ClientInfo>(&self, client: &C) -> Result<QuerySession, GatewayError> {
        let mut session = self.session.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(session) = session.as_ref() {
            return Ok(session.clone());
        }
        let metadata = client.metadata();
        let database = metadata
            .get(METADATA_DATABASE)
            .map_or(DEFAULT_DATABASE, String::as_str);
        let user = metadata
            .get(METADATA_USER)
            .map_or(DEFAULT_USER, String::as_str);
        let mut settings = self.engine.new_settings();
        settings.apply_startup(metadata.iter().map(|(k, v)| (k.as_str(), v.as_str())));
        self.connection
            .set_idle_timeout(settings.idle_session_timeout());
        let created = self.engine.session(database, user, settings)?;
        *session = Some(created.clone());
        Ok(created)
    }

    fn settings(&self, session: &QuerySession) -> Settings {
        session.info.settings()
    }

    /// Runs a statement the session answers itself.
    fn answer(&self, session: &QuerySession, command: &Command) -> Result<Answer, GatewayError> {
        if let Some(answer) = datafusion_option(session, command)? {
            return Ok(answer);
        }
        let mut reports = Vec::new();
        let mut settings = session
            .info
            .settings
            .write()
            .unwrap_or_else(|p| p.into_inner());
        let mut transaction = self.transaction.lock().unwrap_or_else(|p| p.into_inner());
        let response = match command {
            Command::Query(_) => {
                return Err(GatewayError::Wire(
                    "internal error: a query reached the session's own statements".to_owned(),
                ));
            }
            Command::Set { name, value, local } => {
                if *local {
                    match transaction.as_mut() {
                        // Outside a block, PostgreSQL warns and does nothing.
                        None => return Ok(Answer::Tag(Response::Execution(Tag::new("SET")))),
                        Some(block) => block.local.push(name.clone()),
                    }
                }
                let report = match value {
                    Some(value) => settings.set(name, value)?,
                    None => settings.reset(name)?,
                };
                reports.extend(report);
                Response::Execution(Tag::new("SET"))
            }
            Command::Reset(Some(name)) => {
                reports.extend(settings.reset(name)?);
                Response::Execution(Tag::new("RESET"))
            }
            Command::Reset(None) => {
                reports.extend(settings.reset_all());
                Response::Execution(Tag::new("RESET"))
            }
            Command::Show(name) => return Ok(Answer::Show(show(&settings, name)?)),
            Command::Begin => {
                if transaction.is_none() {
                    *transaction = Some(Transaction {
                        settings_at_begin: settings.clone(),
                        local: Vec::new(),
                    });
                }
                Response::TransactionStart(Tag::new("BEGIN"))
            }
            Command::Commit => {
                if let Some(block) = transaction.take() {
                    for name in &block.local {
                        settings.restore(name, &block.settings_at_begin);
                    }
                }
                Response::TransactionEnd(Tag::new("COMMIT"))
            }
            Command::Rollback => {
                if let Some(block) = transaction.take() {
                    *settings = block.settings_at_begin;
                }
                Response::TransactionEnd(Tag::new("ROLLBACK"))
            }
            Command::Discard => {
                reports.extend(settings.reset_all());
                *transaction = None;
                Response::Execution(Tag::new("DISCARD ALL"))
            }
            Command::Accepted(tag) => Response::Execution(Tag::new(tag)),
            // Reads leave nothing to undo: the block is simply usable again.
            Command::RollbackToSavepoint => Response::TransactionStart(Tag::new("ROLLBACK")),
        };
        self.connection
            .set_idle_timeout(settings.idle_session_timeout());
        Ok(Answer::Reported(response, reports))
    }

    /// What stops the next statement.
    async fn stop<C: ClientInfo>(&self, client: &C, settings: &Settings, own_cancel: bool) -> Stop {
        // pgwire's own paths (row-limited Execute) listen to CancelRequests themselves; taking
        // the request here as well would make theirs look canceled.
        let cancel = match own_cancel {
            true => match client.session_extensions().get::<Arc<ConnectionHandle>>() {
                Some(handle) => Some(handle.start_query().await),
                None => None,
            },
            false => None,
        };
        self.connection.stop(cancel, settings.statement_timeout())
    }
}

/// `SET`, `RESET` and `SHOW` of DataFusion's own options (`datafusion.*`) go to the session's
/// DataFusion configuration.
fn datafusion_option(
    session: &QuerySession,
    command: &Command,
) -> Result<Option<Answer>, GatewayError> {
    let tag = |tag| Ok(Some(Answer::Tag(Response::Execution(Tag::new(tag)))));
    match command {
        Command::Set { name, value, .. } if QuerySession::is_datafusion_option(name) => {
            session.set_datafusion_option(name, value.as_deref())?;
            tag("SET")
        }
        Command::Reset(Some(name)) if QuerySession::is_datafusion_option(name) => {
            session.set_datafusion_option(name, None)?;
            tag("RESET")
        }
        Command::Show(name) if QuerySession::is_datafusion_option(name) => {
            let value = session.datafusion_option(name)?;
            Ok(Some(Answer::Show(show_rows(
                &[(name.clone(), value)],
                false,
            )?)))
        }
        _ => Ok(None),
    }
}

/// What a session statement answers.
enum Answer {
    /// A command tag, with the parameters whose new values the client must be told.
    Reported(Response, Vec<(String, String)>),
    /// Plain tag.
    Tag(Response),
    /// The rows of a `SHOW`.
    Show(QueryResponse),
}

/// `SHOW name` and `SHOW ALL`, as PostgreSQL answers them.
fn show(settings: &Settings, name: &str) -> Result<QueryResponse, GatewayError> {
    let lower = name.to_ascii_lowercase();
    let rows: Vec<(String, String)> = match lower.as_str() {
        "all" => settings
            .all()
            .into_iter()
            .map(|(name, value)| (name.to_owned(), value))
            .collect(),
        _ => {
            let parameter = match lower.as_str() {
                "transaction isolation level" => "transaction_isolation",
                "time zone" => "timezone",
                "session authorization" => "session_authorization",
                other => other,
            };
            vec![(parameter.to_owned(), settings.get(parameter)?)]
        }
    };
    show_rows(&rows, lower == "all")
}

/// The answer to a SHOW: one column named after the parameter, or `name` and `setting`
/// columns for `SHOW ALL`.
fn show_rows(rows: &[(String, String)], all: bool) -> Result<QueryResponse, GatewayError> {
    let text =
        |name: &str| FieldInfo::new(name.to_owned(), None, None, Type::TEXT, FieldFormat::Text);
    let fields = Arc::new(if all {
        vec![text("name"), text("setting")]
    } else {
        vec![text(
            rows.first().map_or("setting", |(name, _)| name.as_str()),
        )]
    });
    let mut encoded = Vec::with_capacity(rows.len());
    for (name, value) in rows {
        let mut encoder = DataRowEncoder::new(Arc::clone(&fields));
        if all {
            encoder
                .encode_field(&Some(name.as_str()))
                .map_err(|e| GatewayError::Wire(e.to_string()))?;
        }
        encoder
            .encode_field(&Some(value.as_str()))
            .map_err(|e| GatewayError::Wire(e.to_string()))?;
        encoded.push(Ok(encoder.take_row()));
    }
    Ok(QueryResponse::new(fields, stream::iter(encoded)))
}

impl Session {
    /// A session that has not run anything yet.
    pub fn new(engine: Engine, connection: Arc<Connection>) -> Self {
        let core = Arc::new(Core {
            engine,
            connection,
            session: Mutex::new(None),
            transaction: Mutex::new(None),
        });
        Self {
            parser: Arc::new(Parser {
                core: Arc::clone(&core),
            }),
            core,
        }
    }

    /// Runs one statement, returning its response (a result's rows are still to be streamed).
    async fn run<C>(
        &self,
        client: &mut C,
        session: &QuerySession,
        statement: Statement,
        format: &Format,
        stop: Stop,
    ) -> Result<Response, GatewayError>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if client.transaction_status() == TransactionStatus::Error
            && !matches!(
                statement,
                Statement::Answered(
                    Command::Rollback | Command::Commit | Command::RollbackToSavepoint
                )
            )
        {
            return Err(GatewayError::AbortedTransaction);
        }
        let plan = match statement {
            Statement::Answered(command) => {
                return match self.core.answer(session, &command)? {
                    Answer::Tag(response) => Ok(response),
                    Answer::Show(rows) => Ok(Response::Query(rows)),
                    Answer::Reported(response, reports) => {
                        for (name, value) in reports {
                            let status = ParameterStatus::new(name, value);
                            client
                                .feed(PgWireBackendMessage::ParameterStatus(status))
                                .await
                                .map_err(|e| {
                                    GatewayError::Wire(PgWireError::from(e).to_string())
                                })?;
                        }
                        Ok(response)
                    }
                };
            }
            Statement::Planned(plan) => plan,
        };
        let settings = self.core.settings(session);
        let options = Arc::new(super::egress::format_options(&settings));
        respond(
            session,
            plan,
            format,
            options,
            stop,
            self.core.engine.max_result_rows(),
        )
        .await
    }
}

/// A statement ready to run.
enum Statement {
    Answered(Command),
    Planned(LogicalPlan),
}

impl Statement {
    async fn prepare(session: &QuerySession, command: Command) -> Result<Self, GatewayError> {
        Ok(match command {
            Command::Query(statement) => {
                Self::Planned(engine::plan(&session.ctx, *statement).await?)
            }
            other => Self::Answered(other),
        })
    }
}

/// Runs `plan` under `stop` and turns its batches into a stream of DataRows, encoded as the
/// client asked.
async fn respond(
    session: &QuerySession,
    plan: LogicalPlan,
    format: &Format,
    options: Arc<FormatOptions>,
    mut stop: Stop,
    max_rows: Option<u64>,
) -> Result<Response, GatewayError> {
    let fields = Arc::new(
        super::egress::pg_fields(plan.schema().as_arrow(), format, Some(options))
            .map_err(|e| GatewayError::Wire(e.to_string()))?,
    );
    let batches = tokio::select! {
        biased;
        reason = &mut stop => return Err(GatewayError::Canceled(reason)),
        batches = engine::execute(&session.ctx, plan) => batches?,
    };
    let batches = guarded(batches, stop, max_rows);
    let encoder_fields = Arc::clone(&fields);
    // One batch is encoded at a time, as the client consumes rows: results are never held whole.
    let rows = batches
        .map(move |batch| {
            let rows: Vec<PgWireResult<_>> = match batch
                .map_err(PgWireError::from)
                .and_then(|batch| super::egress::encode_batch(&encoder_fields, &batch))
            {
                Ok(rows) => rows.into_iter().map(Ok).collect(),
                Err(e) => vec![Err(e)],
            };
            stream::iter(rows)
        })
        .flatten();
    Ok(Response::Query(QueryResponse::new(fields, rows)))
}

/// `batches`, until `stop` resolves or more than `max_rows` rows came. Stopping drops the
/// DataFusion stream at once, which cancels the statements its scans run in the stores.
fn guarded(
    batches: datafusion::execution::SendableRecordBatchStream,
    stop: Stop,
    max_rows: Option<u64>,
) -> BoxStream<'static, Result<RecordBatch, GatewayError>> {
    stream::unfold(Some((batches, stop, 0u64)), move |state| async move {
        let (mut batches, mut stop, rows) = state?;
        tokio::select! {
            biased;
            reason = &mut stop => Some((Err(GatewayError::Canceled(reason)), None)),
            next = batches.next() => match next? {
                Err(error) => Some((Err(error.into()), None)),
                Ok(batch) => {
                    let rows = rows + batch.num_rows() as u64;
                    match max_rows {
                        Some(max) if rows > max => Some((Err(GatewayError::TooManyRows(max)), None)),
                        _ => Some((Ok(batch), Some((batches, stop, rows)))),
                    }
                }
            },
        }
    })
    .boxed()
}

/// Plans prepared statements (Parse) and describes them (Describe).
pub struct Parser {
    core: Arc<Core>,
}

/// A prepared statement.
#[derive(Debug, Clone)]
pub struct Prepared {
    command: PreparedCommand,
    /// The parameter types the client declared in Parse.
    client_types: Vec<Option<Type>>,
}

impl Prepared {
    /// The parameters and columns a Bind of this statement must agree with.
    fn shape(&self) -> Result<BindShape, GatewayError> {
        let declared = self.client_types.len();
        Ok(match &self.command {
            PreparedCommand::Plan(plan) => BindShape {
                parameters: parameter_types(plan)?.len().max(declared),
                columns: Some(plan.schema().fields().len()),
            },
            PreparedCommand::Answered(Command::Show(name)) => BindShape {
                parameters: declared,
                columns: Some(if name.eq_ignore_ascii_case("all") {
                    2
                } else {
                    1
                }),
            },
            PreparedCommand::Answered(_) => BindShape {
                parameters: declared,
                columns: None,
            },
        })
    }
}

#[derive(Debug, Clone)]
enum PreparedCommand {
    /// A query's plan, with `$n` placeholders still in it.
    Plan(LogicalPlan),
    /// A statement the session answers.
    Answered(Command),
}

#[async_trait]
impl QueryParser for Parser {
    type Statement = Prepared;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        types: &[Option<Type>],
    ) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let session = self.core.session(client)?;
        let mut commands = self.core.engine.parse(sql)?;
        let command = match commands.len() {
            0 => return Ok(None),
            1 => commands.remove(0),
            n => {
                return Err(GatewayError::syntax(format!(
                    "cannot insert {n} commands into a prepared statement"
                ))
                .into());
            }
        };
        let command = match Statement::prepare(&session, command).await? {
            Statement::Planned(plan) => PreparedCommand::Plan(plan),
            Statement::Answered(command) => PreparedCommand::Answered(command),
        };
        Ok(Some(Prepared {
            command,
            client_types: types.to_vec(),
        }))
    }

    fn get_parameter_types(&self, statement: &Prepared) -> PgWireResult<Vec<Type>> {
        let PreparedCommand::Plan(plan) = &statement.command else {
            return Ok(Vec::new());
        };
        parameter_types(plan)?
            .iter()
            .enumerate()
            .map(
                |(i, t)| match (statement.client_types.get(i).cloned().flatten(), t) {
                    (Some(declared), _) if declared != Type::UNKNOWN => Ok(declared),
                    (_, Some(t)) => into_pg_type(t),
                    // Neither declared nor inferred: the client sends text, as for PostgreSQL's
                    // `unknown`.
                    (_, None) => Ok(Type::TEXT),
                },
            )
            .collect()
    }

    fn get_result_schema(
        &self,
        statement: &Prepared,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        match &statement.command {
            PreparedCommand::Plan(plan) => super::egress::pg_fields(
                plan.schema().as_arrow(),
                column_format.unwrap_or(&Format::UnifiedText),
                None,
            ),
            PreparedCommand::Answered(Command::Show(name)) => {
                let name = if name.eq_ignore_ascii_case("all") {
                    return Ok(vec![
                        FieldInfo::new("name".into(), None, None, Type::TEXT, FieldFormat::Text),
                        FieldInfo::new("setting".into(), None, None, Type::TEXT, FieldFormat::Text),
                    ]);
                } else {
                    name.to_ascii_lowercase()
                };
                Ok(vec![FieldInfo::new(
                    name,
                    None,
                    None,
                    Type::TEXT,
                    FieldFormat::Text,
                )])
            }
            PreparedCommand::Answered(_) => Ok(Vec::new()),
        }
    }
}

/// The types DataFusion inferred for `$1`, `$2`, ..., indexed by position: a position no
/// placeholder uses (`$2` in `WHERE a = $1 OR b = $3`) has no type.
fn parameter_types(plan: &LogicalPlan) -> Result<Vec<Option<DataType>>, GatewayError> {
    let typed: Vec<(usize, Option<DataType>)> = plan
        .get_parameter_types()?
        .into_iter()
        .filter_map(|(name, t)| Some((name.strip_prefix('$')?.parse().ok()?, t)))
        .filter(|(position, _)| *position >= 1)
        .collect();
    let count = typed
        .iter()
        .map(|(position, _)| *position)
        .max()
        .unwrap_or(0);
    // PostgreSQL numbers parameters up to 65535 (the Bind message counts them in 16 bits);
    // a larger `$n` could only size a vector by the client's text.
    if count > usize::from(u16::MAX) {
        return Err(GatewayError::syntax(format!(
            "there is no parameter ${count}"
        )));
    }
    let mut types = vec![None; count];
    for (position, t) in typed {
        if let Some(slot) = types.get_mut(position - 1) {
            *slot = t;
        }
    }
    Ok(types)
}

#[async_trait]
impl SimpleQueryHandler for Session {
    async fn on_query<C>(&self, client: &mut C, query: Query) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if !matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
            return Err(PgWireError::NotReadyForQuery);
        }
        let _running = self.core.connection.begin_statement();
        client.set_state(PgWireConnectionState::QueryInProgress);
        let outcome = self.run_simple(client, &query.query).await;
        client.set_state(PgWireConnectionState::ReadyForQuery);
        outcome?;
        let status = client.transaction_status();
        send_ready_for_query(client, status).await
    }

    async fn do_query<C>(&self, _client: &mut C, _query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        Err(PgWireError::ApiError(
            "simple queries are run by on_query".into(),
        ))
    }
}

impl Session {
    /// The simple query protocol: each statement in turn, each result streamed.
    async fn run_simple<C>(&self, client: &mut C, sql: &str) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = self.core.session(client)?;
        let commands = self.core.engine.parse(sql)?;
        if commands.is_empty() {
            client
                .feed(PgWireBackendMessage::EmptyQueryResponse(
                    EmptyQueryResponse::new(),
                ))
                .await?;
            return Ok(());
        }
        for command in commands {
            // Each statement has its own timeout, read after the statements before it ran
            // (they may have SET it). A failure ends the batch.
            let settings = self.core.settings(&session);
            // One stop for planning, the DataFusion stream and the writes to the client.
            let stop = self.core.stop(client, &settings, true).await.shared();
            let statement = tokio::select! {
                biased;
                reason = stop.clone() => return Err(GatewayError::Canceled(reason).into()),
                statement = Statement::prepare(&session, command) => statement?,
            };
            let response = self
                .run(
                    client,
                    &session,
                    statement,
                    &Format::UnifiedText,
                    Box::pin(stop.clone()),
                )
                .await?;
            send_response_within(client, response, stop).await?;
        }
        Ok(())
    }
}

/// [`send_response`], with each write raced against `stop`: a client that stops reading
/// blocks the write, and its statement must still end at its timeout or cancel (which drops
/// the rows' stream, and with it the remote statements).
async fn send_response_within<C, S>(client: &mut C, response: Response, stop: S) -> PgWireResult<()>
where
    C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    S: Future<Output = CancelReason> + Unpin,
{
    let Response::Query(query) = response else {
        return send_response(client, response).await;
    };
    let mut stop = stop;
    let QueryResponse {
        command_tag,
        row_schema,
        mut data_rows,
        ..
    } = query;
    let description = RowDescription::new(row_schema.iter().map(Into::into).collect());
    feed_within(
        client,
        PgWireBackendMessage::RowDescription(description),
        &mut stop,
    )
    .await?;
    let mut count = 0;
    while let Some(row) = data_rows.next().await {
        feed_within(client, PgWireBackendMessage::DataRow(row?), &mut stop).await?;
        count += 1;
    }
    let tag = Tag::new(&command_tag).with_rows(count);
    feed_within(
        client,
        PgWireBackendMessage::CommandComplete(tag.into()),
        &mut stop,
    )
    .await
}

/// Writes `message` to the client, unless `stop` fires first.
async fn feed_within<C, S>(
    client: &mut C,
    message: PgWireBackendMessage,
    stop: &mut S,
) -> PgWireResult<()>
where
    C: Sink<PgWireBackendMessage> + Unpin,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    S: Future<Output = CancelReason> + Unpin,
{
    // The write first: it is ready at once unless the client's socket is full, and then
    // the stop is not polled at all, which keeps this off the cost of every row.
    tokio::select! {
        biased;
        sent = client.feed(message) => sent.map_err(PgWireError::from),
        reason = stop => Err(GatewayError::Canceled(reason).into()),
    }
}

/// Sends one statement's response, streaming its rows; transaction status follows
/// BEGIN/COMMIT.
async fn send_response<C>(client: &mut C, response: Response) -> PgWireResult<()>
where
    C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    match response {
        Response::Query(rows) => send_query_response(client, rows, true).await,
        Response::Execution(tag) => send_execution_response(client, tag).await,
        Response::TransactionStart(tag) => {
            send_execution_response(client, tag).await?;
            // BEGIN, or ROLLBACK TO SAVEPOINT out of a failed block (a failed block refuses
            // BEGIN before it gets here).
            client.set_transaction_status(TransactionStatus::Transaction);
            Ok(())
        }
        Response::TransactionEnd(tag) => {
            send_execution_response(client, tag).await?;
            client.set_transaction_status(TransactionStatus::Idle);
            Ok(())
        }
        Response::EmptyQuery => {
            client
                .feed(PgWireBackendMessage::EmptyQueryResponse(
                    EmptyQueryResponse::new(),
                ))
                .await?;
            Ok(())
        }
        _ => Err(PgWireError::ApiError("unexpected response".into())),
    }
}

#[async_trait]
impl ExtendedQueryHandler for Session {
    type Statement = Prepared;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Parser> {
        Arc::clone(&self.parser)
    }

    /// As PostgreSQL: a Sync outside a transaction block ends the implicit transaction, and
    /// with it every portal, named ones too. A client that reads one batch of a named portal
    /// and goes silent would otherwise hold the portal's remote statement for as long as it
    /// stays connected.
    async fn on_sync<C>(&self, client: &mut C, _message: PgSync) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let status = client.transaction_status();
        if matches!(status, TransactionStatus::Idle) {
            client.portal_store().clear_portals();
        } else {
            client.portal_store().rm_portal(DEFAULT_NAME);
        }
        send_ready_for_query(client, status).await?;
        client.flush().await?;
        Ok(())
    }

    async fn on_bind<C>(&self, client: &mut C, message: Bind) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let name = message.statement_name.as_deref().unwrap_or(DEFAULT_NAME);
        let shape = match client.portal_store().get_statement(name) {
            Some(Entry::Value(statement)) => statement.statement.shape()?,
            Some(Entry::Empty) => BindShape {
                parameters: 0,
                columns: None,
            },
            None => return Err(PgWireError::StatementNotFound(name.to_owned())),
        };
        super::bind::check(&message, name, shape)?;
        match client.portal_store().get_statement(name) {
            Some(Entry::Value(statement)) => {
                let portal = Portal::try_new(&message, statement)?;
                client.portal_store().put_portal(Arc::new(portal));
            }
            _ => {
                let portal = message.portal_name.as_deref().unwrap_or(DEFAULT_NAME);
                client.portal_store().put_empty_portal(portal);
            }
        }
        client
            .send(PgWireBackendMessage::BindComplete(BindComplete::new()))
            .await?;
        Ok(())
    }

    async fn on_execute<C>(&self, client: &mut C, message: Execute) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let _running = self.core.connection.begin_statement();
        // PostgreSQL reads a row limit of zero or below as "every row". The limit is never
        // used to size anything: pgwire's own portal path preallocates `max_rows` rows, so a
        // client could ask for gigabytes in one message. Every portal with a statement is run
        // here instead, its rows sent as they are produced.
        let max_rows = usize::try_from(message.max_rows)
            .ok()
            .filter(|&max| max > 0);
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        let portal = match client.portal_store().get_portal(name) {
            Some(Entry::Value(portal)) => portal,
            // An empty query or an unknown portal: pgwire answers those without rows.
            _ => {
                let message = Execute::new(message.name.clone(), 0);
                return self._on_execute(client, message).await;
            }
        };
        if !matches!(client.state(), PgWireConnectionState::ReadyForQuery) {
            return Err(PgWireError::NotReadyForQuery);
        }
        client.set_state(PgWireConnectionState::QueryInProgress);
        let outcome = self.execute_rows(client, &portal, max_rows).await;
        client.set_state(PgWireConnectionState::ReadyForQuery);
        outcome
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Prepared>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = self.core.session(client)?;
        let settings = self.core.settings(&session);
        let stop = self.core.stop(client, &settings, false).await;
        self.execute_portal(client, portal, stop).await
    }
}

impl Session {
    /// Binds a portal's parameters and runs it.
    async fn execute_portal<C>(
        &self,
        client: &mut C,
        portal: &Portal<Prepared>,
        stop: Stop,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let session = self.core.session(client)?;
        let statement = match &portal.statement.statement.command {
            PreparedCommand::Answered(command) => Statement::Answered(command.clone()),
            PreparedCommand::Plan(plan) => {
                let types = parameter_types(plan)?;
                let values = super::bind::values(portal, &types)?;
                let bound = plan
                    .clone()
                    .replace_params_with_values(&values)
                    .map_err(GatewayError::from)?;
                Statement::Planned(bound)
            }
        };
        Ok(self
            .run(
                client,
                &session,
                statement,
                &portal.result_column_format,
                stop,
            )
            .await?)
    }

    /// Executes a portal, or resumes a suspended one, sending at most `max_rows` of its rows
    /// (all of them when `None`) as they are produced. A portal that stops at its limit is
    /// suspended (PortalSuspended) with its DataFusion stream still open, as PostgreSQL keeps
    /// a portal's executor; the next Execute goes on from there.
    async fn execute_rows<C>(
        &self,
        client: &mut C,
        portal: &Portal<Prepared>,
        max_rows: Option<usize>,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // Each Execute is canceled and timed out on its own, as in PostgreSQL: a portal read
        // a few rows at a time, with pauses between, is not timed from its first Execute.
        let session = self.core.session(client)?;
        let settings = self.core.settings(&session);
        let mut stop = self.core.stop(client, &settings, true).await;
        let state = portal.state();
        if matches!(*state.lock().await, PortalExecutionState::Initial) {
            // What the portal's stream keeps beyond this Execute: the client leaving, and
            // shutdown.
            let lasting = self.core.connection.stop(None, None);
            let executed = tokio::select! {
                biased;
                reason = &mut stop => Err(GatewayError::Canceled(reason).into()),
                executed = self.execute_portal(client, portal, lasting) => executed,
            };
            match executed? {
                Response::Query(response) => portal.start(response).await,
                other => {
                    let ends = matches!(other, Response::TransactionEnd(_));
                    send_response(client, other).await?;
                    // As PostgreSQL, the end of a transaction closes its portals.
                    if ends {
                        client.portal_store().clear_portals();
                    }
                    return Ok(());
                }
            }
        }
        let mut state = state.lock().await;
        let PortalExecutionState::Suspended(response) = &mut *state else {
            // Run to its end already: PostgreSQL answers with no rows.
            return send_execution_response(client, Tag::new("SELECT").with_rows(0)).await;
        };
        let tag = response.command_tag().to_owned();
        let rows = response.data_rows();
        let mut count = 0;
        let suspended = loop {
            if max_rows.is_some_and(|max| count >= max) {
                break true;
            }
            let next = tokio::select! {
                biased;
                reason = &mut stop => Err(GatewayError::Canceled(reason).into()),
                next = rows.next() => next.transpose(),
            };
            match next {
                Ok(Some(row)) => {
                    let sent =
                        feed_within(client, PgWireBackendMessage::DataRow(row), &mut stop).await;
                    if let Err(error) = sent {
                        *state = PortalExecutionState::Finished;
                        return Err(error);
                    }
                    count += 1;
                }
                Ok(None) => break false,
                Err(error) => {
                    // The stream has failed or was stopped: drop it, and with it the remote
                    // statements, now rather than when the portal is closed.
                    *state = PortalExecutionState::Finished;
                    return Err(error);
                }
            }
        };
        let end = if suspended {
            PgWireBackendMessage::PortalSuspended(PortalSuspended::new())
        } else {
            *state = PortalExecutionState::Finished;
            PgWireBackendMessage::CommandComplete(Tag::new(&tag).with_rows(count).into())
        };
        feed_within(client, end, &mut stop).await?;
        // The rows so far go out now, as pgwire's own path sends them; a client that does not
        // read them is stopped like any other.
        tokio::select! {
            biased;
            reason = &mut stop => Err(GatewayError::Canceled(reason).into()),
            flushed = client.flush() => flushed.map_err(PgWireError::from),
        }
    }
}
