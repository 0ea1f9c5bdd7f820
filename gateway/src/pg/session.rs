//! One client connection: its DataFusion context, and the simple and extended query protocols
//! on top of it.

use std::fmt::Debug;
use std::sync::{Arc, OnceLock};

use arrow_pg::datatypes::df::deserialize_parameters;
use arrow_pg::datatypes::{arrow_schema_to_pg_fields, encode_recordbatch, into_pg_type};
use async_trait::async_trait;
use datafusion::arrow::datatypes::DataType;
use datafusion::logical_expr::LogicalPlan;
use datafusion::prelude::SessionContext;
use futures::{Sink, SinkExt, StreamExt, stream};
use pgwire::api::portal::{Format, Portal, PortalExecutionState};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler, send_execution_response};
use pgwire::api::results::{FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::QueryParser;
use pgwire::api::store::{Entry, PortalStore};
use pgwire::api::{
    ClientInfo, ClientPortalStore, DEFAULT_NAME, METADATA_DATABASE, PgWireConnectionState, Type,
};
use pgwire::error::{PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::extendedquery::Execute;
use pgwire::messages::response::EmptyQueryResponse;
use pgwire::types::format::FormatOptions;

use crate::engine::{self, DEFAULT_DATABASE, Engine};
use crate::errors::GatewayError;

/// A connection's state: the engine, and the DataFusion context made for its database.
pub struct Session {
    core: Arc<Core>,
    parser: Arc<Parser>,
}

/// What the query handlers and the statement parser of one connection share.
struct Core {
    engine: Engine,
    /// Created at the first statement, once the client's start-up message named its database.
    context: OnceLock<SessionContext>,
}

impl Core {
    fn context<C: ClientInfo>(&self, client: &C) -> &SessionContext {
        self.context.get_or_init(|| {
            let database = client
                .metadata()
                .get(METADATA_DATABASE)
                .map(String::as_str)
                .unwrap_or(DEFAULT_DATABASE);
            self.engine.session(database)
        })
    }
}

impl Session {
    /// A session that has not run anything yet.
    pub fn new(engine: Engine) -> Self {
        let core = Arc::new(Core {
            engine,
            context: OnceLock::new(),
        });
        Self {
            parser: Arc::new(Parser {
                core: Arc::clone(&core),
            }),
            core,
        }
    }

    fn context<C: ClientInfo>(&self, client: &C) -> &SessionContext {
        self.core.context(client)
    }
}

/// Plans prepared statements (Parse) and describes them (Describe).
pub struct Parser {
    core: Arc<Core>,
}

/// A prepared statement: its plan, with `$n` placeholders still in it.
#[derive(Debug, Clone)]
pub struct Prepared {
    plan: LogicalPlan,
}

#[async_trait]
impl QueryParser for Parser {
    type Statement = Prepared;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let ctx = self.core.context(client);
        let mut statements = engine::parse(sql)?;
        let statement = match statements.len() {
            0 => return Ok(None),
            1 => statements.remove(0),
            n => {
                return Err(PgWireError::UserError(Box::new(
                    pgwire::error::ErrorInfo::new(
                        "ERROR".to_owned(),
                        "42601".to_owned(),
                        format!("cannot insert {n} commands into a prepared statement"),
                    ),
                )));
            }
        };
        let plan = engine::plan(ctx, statement).await?;
        Ok(Some(Prepared { plan }))
    }

    fn get_parameter_types(&self, statement: &Prepared) -> PgWireResult<Vec<Type>> {
        parameter_types(&statement.plan)?
            .iter()
            .map(|t| match t {
                Some(t) => into_pg_type(t),
                None => Ok(Type::UNKNOWN),
            })
            .collect()
    }

    fn get_result_schema(
        &self,
        statement: &Prepared,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        arrow_schema_to_pg_fields(
            statement.plan.schema().as_arrow(),
            column_format.unwrap_or(&Format::UnifiedText),
            None,
        )
    }
}

/// The types DataFusion inferred for `$1`, `$2`, ... in order.
fn parameter_types(plan: &LogicalPlan) -> Result<Vec<Option<DataType>>, GatewayError> {
    let mut types: Vec<(usize, Option<DataType>)> = plan
        .get_parameter_types()?
        .into_iter()
        .filter_map(|(name, t)| Some((name.strip_prefix('$')?.parse().ok()?, t)))
        .collect();
    types.sort_by_key(|(position, _)| *position);
    Ok(types.into_iter().map(|(_, t)| t).collect())
}

/// Runs `plan` and turns its batches into a stream of DataRows, encoded as the client asked.
async fn respond(
    ctx: &SessionContext,
    plan: LogicalPlan,
    format: &Format,
    options: Arc<FormatOptions>,
) -> Result<Response, PgWireError> {
    if !plan_returns_rows(&plan) {
        let tag = statement_tag(&plan);
        engine::execute(ctx, plan).await?;
        return Ok(Response::Execution(Tag::new(&tag)));
    }
    let fields = Arc::new(arrow_schema_to_pg_fields(
        plan.schema().as_arrow(),
        format,
        Some(options),
    )?);
    let batches = engine::execute(ctx, plan).await?;
    let encoder_fields = Arc::clone(&fields);
    // One batch is encoded at a time, as the client consumes rows: results are never held whole.
    let rows = batches
        .map(move |batch| {
            let rows: Box<dyn Iterator<Item = PgWireResult<_>> + Send + Sync> = match batch {
                Ok(batch) => encode_recordbatch(Arc::clone(&encoder_fields), batch),
                Err(e) => Box::new(std::iter::once(Err(GatewayError::from(e).into()))),
            };
            stream::iter(rows)
        })
        .flatten();
    Ok(Response::Query(QueryResponse::new(fields, rows)))
}

/// Statements such as `SET` produce no relation and answer with a command tag.
fn plan_returns_rows(plan: &LogicalPlan) -> bool {
    !matches!(plan, LogicalPlan::Statement(_))
}

/// The command tag PostgreSQL answers a statement with.
fn statement_tag(plan: &LogicalPlan) -> String {
    use datafusion::logical_expr::Statement;
    match plan {
        LogicalPlan::Statement(Statement::SetVariable(_)) => "SET".to_owned(),
        LogicalPlan::Statement(Statement::ResetVariable(_)) => "RESET".to_owned(),
        LogicalPlan::Statement(statement) => statement.name().to_ascii_uppercase(),
        _ => "SELECT".to_owned(),
    }
}

#[async_trait]
impl SimpleQueryHandler for Session {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let ctx = self.context(client).clone();
        let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
        let mut responses = Vec::new();
        for statement in engine::parse(query)? {
            // A failing statement ends the batch; the ones before it have answered already.
            let plan = engine::plan(&ctx, statement).await?;
            responses.push(respond(&ctx, plan, &Format::UnifiedText, Arc::clone(&options)).await?);
        }
        Ok(responses)
    }
}

#[async_trait]
impl ExtendedQueryHandler for Session {
    type Statement = Prepared;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Parser> {
        Arc::clone(&self.parser)
    }

    async fn on_execute<C>(&self, client: &mut C, message: Execute) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // pgwire collects a portal's rows into memory before sending them. With a row limit
        // (`max_rows`) that is bounded and its suspend/resume logic is needed; without one,
        // rows are streamed here instead, so that a large result never sits in memory whole.
        if message.max_rows != 0 {
            return self._on_execute(client, message).await;
        }
        let name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        let portal = match client.portal_store().get_portal(name) {
            Some(Entry::Value(portal)) => portal,
            _ => return self._on_execute(client, message).await,
        };
        if !matches!(*portal.state().lock().await, PortalExecutionState::Initial)
            || !matches!(client.state(), PgWireConnectionState::ReadyForQuery)
        {
            return self._on_execute(client, message).await;
        }
        client.set_state(PgWireConnectionState::QueryInProgress);
        let outcome = self.execute_streaming(client, &portal).await;
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
        let ctx = self.context(client).clone();
        let plan = &portal.statement.statement.plan;
        let types = parameter_types(plan)?;
        let type_refs: Vec<Option<&DataType>> = types.iter().map(Option::as_ref).collect();
        let values = deserialize_parameters(portal, &type_refs)?;
        let bound = plan
            .clone()
            .replace_params_with_values(&values)
            .map_err(GatewayError::from)?;
        let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
        respond(&ctx, bound, &portal.result_column_format, options).await
    }
}

impl Session {
    /// Executes a portal with no row limit, sending rows as they are produced.
    async fn execute_streaming<C>(
        &self,
        client: &mut C,
        portal: &Portal<Prepared>,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match ExtendedQueryHandler::do_query(self, client, portal, 0).await? {
            Response::Query(mut response) => {
                let tag = response.command_tag().to_owned();
                let rows = response.data_rows();
                let mut count = 0;
                while let Some(row) = rows.next().await {
                    client.feed(PgWireBackendMessage::DataRow(row?)).await?;
                    count += 1;
                }
                let done = Tag::new(&tag).with_rows(count);
                client
                    .send(PgWireBackendMessage::CommandComplete(done.into()))
                    .await?;
                // A portal executed to completion answers nothing more if executed again.
                portal
                    .start(QueryResponse::new(Arc::new(Vec::new()), stream::empty()))
                    .await;
            }
            Response::Execution(tag) => send_execution_response(client, tag).await?,
            Response::EmptyQuery => {
                client
                    .send(PgWireBackendMessage::EmptyQueryResponse(
                        EmptyQueryResponse::new(),
                    ))
                    .await?;
            }
            _ => {
                return Err(PgWireError::ApiError(
                    "unexpected response to an extended query".into(),
                ));
            }
        }
        Ok(())
    }
}
