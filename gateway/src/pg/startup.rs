//! A connection's start-up: TLS required or not, then `trust` or SCRAM-SHA-256 against the
//! users of catalog.toml, then the parameters PostgreSQL reports (version, read-only, date
//! style) and the key that lets a CancelRequest find this connection.
//!
//! The users and the method are read from the catalog as it is when the client connects, so
//! an edit of `[gateway.users]` applies to the next connection without a restart.

use std::collections::HashMap;
use std::fmt::Debug;
use std::sync::Arc;

use async_trait::async_trait;
use futures::{Sink, SinkExt};
use pgwire::api::auth::{
    ServerParameterProvider, StartupHandler, finish_authentication, protocol_negotiation,
    save_startup_parameters_to_metadata,
};
use pgwire::api::{
    ClientInfo, ConnectionGuard, ConnectionHandle, ConnectionManager, METADATA_USER,
    PgWireConnectionState, PidSecretKeyGenerator, RandomPidSecretKeyGenerator,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::startup::{Authentication, PasswordMessageFamily, SASLInitialResponse};
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use polygate_catalog::AuthMethod;
use tokio::sync::Mutex;

use super::connection::Connection;
use super::scram::{Exchange, Verifier};
use crate::engine::Engine;

/// What one connection's start-up has done so far.
enum State {
    /// Waiting for the start-up message.
    Initial,
    /// AuthenticationSASL sent; waiting for SASLInitialResponse.
    WaitingForClientFirst,
    /// SASLContinue sent; waiting for SASLResponse.
    WaitingForClientFinal(Exchange),
    /// Authenticated.
    Done,
}

/// The start-up handler of one connection.
pub struct Startup {
    engine: Engine,
    connections: Arc<ConnectionManager>,
    pids: Arc<RandomPidSecretKeyGenerator>,
    /// Told when the client has authenticated, which lifts its start-up deadline.
    connection: Arc<Connection>,
    state: Mutex<State>,
}

impl Startup {
    /// A handler registering its connection with `connections` under a key from `pids`.
    pub fn new(
        engine: Engine,
        connections: Arc<ConnectionManager>,
        pids: Arc<RandomPidSecretKeyGenerator>,
        connection: Arc<Connection>,
    ) -> Self {
        Self {
            engine,
            connections,
            pids,
            connection,
            state: Mutex::new(State::Initial),
        }
    }

    /// The verifier of `user`, or one no password matches (the exchange then fails at the
    /// proof, exactly as for a wrong password). Deriving a verifier from a password costs a
    /// PBKDF2 of 4096 rounds, so it runs on a blocking thread, not on the workers that serve
    /// every other connection.
    async fn verifier(&self, user: &str) -> Result<Verifier, PgWireError> {
        let secret = self.engine.catalog().gateway().users.get(user).cloned();
        let user = user.to_owned();
        tokio::task::spawn_blocking(move || match secret {
            Some(secret) if secret.is_scram_verifier() => Verifier::parse(secret.expose())
                .unwrap_or_else(|| {
                    tracing::error!(%user, "gateway.users.{user} is not a valid SCRAM-SHA-256 verifier");
                    Verifier::impossible()
                }),
            Some(password) => Verifier::from_password(password.expose()),
            None => Verifier::impossible(),
        })
        .await
        .map_err(|_| fatal("XX000", "authentication was interrupted"))
    }

    /// Authentication succeeded: the cancel key, the parameters, ReadyForQuery.
    async fn finish<C>(&self, client: &mut C) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let (pid, secret_key) = self.pids.generate(client);
        client.set_pid_and_secret_key(pid, secret_key.clone());
        let (handle, guard) = self.connections.register(pid, secret_key);
        client
            .session_extensions()
            .insert::<Arc<ConnectionHandle>>(handle);
        client.session_extensions().insert::<ConnectionGuard>(guard);
        *self.state.lock().await = State::Done;
        self.connection.authenticated();
        finish_authentication(
            client,
            &Parameters {
                engine: self.engine.clone(),
            },
        )
        .await
    }
}

/// The client's SASLInitialResponse. pgwire's decoder trusts the message's length field for
/// the data and panics when it runs past the message, so the raw body is read here, checked.
pub(super) fn sasl_initial_response(
    message: PasswordMessageFamily,
) -> PgWireResult<SASLInitialResponse> {
    let PasswordMessageFamily::Raw(body) = message else {
        return message.into_sasl_initial_response();
    };
    let invalid = || fatal("08P01", "invalid SASLInitialResponse message");
    let end = body.iter().position(|&b| b == 0).ok_or_else(invalid)?;
    let (mechanism, rest) = body.split_at(end);
    let rest = rest.get(1..).ok_or_else(invalid)?;
    let (length, data) = rest.split_first_chunk::<4>().ok_or_else(invalid)?;
    let data = match i32::from_be_bytes(*length) {
        -1 if data.is_empty() => None,
        length if usize::try_from(length).ok() == Some(data.len()) => {
            Some(bytes::Bytes::copy_from_slice(data))
        }
        _ => return Err(invalid()),
    };
    let mechanism = std::str::from_utf8(mechanism).map_err(|_| invalid())?;
    Ok(SASLInitialResponse::new(mechanism.to_owned(), data))
}

fn fatal(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new(
        "FATAL".to_owned(),
        code.to_owned(),
        message.into(),
    )))
}

fn user_of<C: ClientInfo>(client: &C) -> String {
    client
        .metadata()
        .get(METADATA_USER)
        .cloned()
        .unwrap_or_default()
}

fn password_failed(user: &str) -> PgWireError {
    fatal(
        "28P01",
        format!("password authentication failed for user \"{user}\""),
    )
}

#[async_trait]
impl StartupHandler for Startup {
    async fn on_startup<C>(
        &self,
        client: &mut C,
        message: PgWireFrontendMessage,
    ) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let mut state = self.state.lock().await;
        match (message, &*state) {
            (PgWireFrontendMessage::Startup(startup), State::Initial) => {
                protocol_negotiation(client, &startup).await?;
                save_startup_parameters_to_metadata(client, &startup);
                let gateway = self.engine.catalog().gateway();
                if gateway.tls_required && !client.is_secure() {
                    return Err(fatal(
                        "28000",
                        "polygate requires TLS for every connection: connect with sslmode=require",
                    ));
                }
                match gateway.auth.unwrap_or(AuthMethod::Trust) {
                    AuthMethod::Trust => {
                        drop(state);
                        self.finish(client).await?;
                    }
                    AuthMethod::ScramSha256 => {
                        client.set_state(PgWireConnectionState::AuthenticationInProgress);
                        client
                            .send(PgWireBackendMessage::Authentication(Authentication::SASL(
                                vec!["SCRAM-SHA-256".to_owned()],
                            )))
                            .await?;
                        *state = State::WaitingForClientFirst;
                    }
                }
            }
            (
                PgWireFrontendMessage::PasswordMessageFamily(message),
                State::WaitingForClientFirst,
            ) => {
                let user = user_of(client);
                let initial = sasl_initial_response(message)?;
                if initial.auth_method != "SCRAM-SHA-256" {
                    return Err(fatal(
                        "28000",
                        format!("unsupported SASL mechanism {:?}", initial.auth_method),
                    ));
                }
                let data = initial.data.unwrap_or_default();
                let (exchange, server_first) = Exchange::start(self.verifier(&user).await?, &data)
                    .map_err(|error| {
                        tracing::warn!(%user, %error, "authentication failed");
                        password_failed(&user)
                    })?;
                client
                    .send(PgWireBackendMessage::Authentication(
                        Authentication::SASLContinue(server_first.into_bytes().into()),
                    ))
                    .await?;
                *state = State::WaitingForClientFinal(exchange);
            }
            (
                PgWireFrontendMessage::PasswordMessageFamily(message),
                State::WaitingForClientFinal(_),
            ) => {
                let user = user_of(client);
                let State::WaitingForClientFinal(exchange) =
                    std::mem::replace(&mut *state, State::Initial)
                else {
                    unreachable!("matched above");
                };
                let response = message.into_sasl_response()?;
                let server_final = exchange.finish(&response.data).map_err(|error| {
                    tracing::warn!(%user, %error, "authentication failed");
                    password_failed(&user)
                })?;
                client
                    .send(PgWireBackendMessage::Authentication(
                        Authentication::SASLFinal(server_final.into_bytes().into()),
                    ))
                    .await?;
                drop(state);
                self.finish(client).await?;
            }
            (_, State::Done) => {}
            _ => {
                return Err(fatal("08P01", "unexpected message during authentication"));
            }
        }
        Ok(())
    }
}

/// The parameters reported to a client once it is authenticated.
struct Parameters {
    engine: Engine,
}

impl ServerParameterProvider for Parameters {
    fn server_parameters<C>(&self, client: &C) -> Option<HashMap<String, String>>
    where
        C: ClientInfo,
    {
        let mut settings = self.engine.new_settings();
        settings.apply_startup(
            client
                .metadata()
                .iter()
                .map(|(k, v)| (k.as_str(), v.as_str())),
        );
        let user = user_of(client);
        Some(
            settings
                .reported()
                .into_iter()
                .map(|(name, value)| {
                    let value = if name == "session_authorization" {
                        user.clone()
                    } else {
                        value
                    };
                    (name, value)
                })
                .collect(),
        )
    }
}
