//! The source's server, as its collections share it: the driver's client, made on first use,
//! and what a failed request means.

use std::time::Duration;

use mongodb::bson::{Bson, Document, doc};
use mongodb::error::ErrorKind;
use mongodb::options::ClientOptions;
use mongodb::{Client, Database};
use polygate_connector_core::{ConnectorError, SourceSettings, TableRef};

/// How to reach a source's server, shared by the source's collections.
#[derive(Debug)]
pub(crate) struct Remote {
    /// The source's name, answer bound and pushdown switch.
    pub(crate) settings: SourceSettings,
    pub(crate) url: String,
    pub(crate) connect_timeout: Duration,
    /// The driver's client, with its own pool of connections, created on first use.
    pub(crate) client: tokio::sync::OnceCell<Client>,
    /// The documents per partition of a parallel scan.
    pub(crate) partition_documents: u64,
    /// Documents per server batch.
    pub(crate) batch_size: u32,
}

impl Remote {
    /// The database `name`, through the source's client.
    pub(crate) async fn database(&self, name: &str) -> Result<Database, ConnectorError> {
        let client = self
            .client
            .get_or_try_init(|| async {
                let options = client_options(&self.url, self.connect_timeout)
                    .await
                    .map_err(ConnectorError::Unavailable)?;
                Client::with_options(options)
                    .map_err(|e| ConnectorError::Unavailable(e.to_string()))
            })
            .await?;
        Ok(client.database(name))
    }

    /// A random sample of `size` `_id`s of `collection`.
    pub(crate) async fn sample_ids(
        &self,
        collection: &TableRef,
        size: usize,
    ) -> Result<Vec<Bson>, ConnectorError> {
        let mut cursor = self
            .database(&collection.namespace)
            .await?
            .collection::<Document>(&collection.name)
            .aggregate([
                doc! { "$sample": { "size": size as i64 } },
                doc! { "$project": { "_id": 1 } },
            ])
            .await
            .map_err(|e| driver_error(&e))?;
        let mut ids = Vec::with_capacity(size);
        while cursor.advance().await.map_err(|e| driver_error(&e))? {
            if let Ok(Some(id)) = cursor.current().get("_id") {
                ids.push(
                    Bson::try_from(id).map_err(|e| ConnectorError::InvalidData(e.to_string()))?,
                );
            }
        }
        Ok(ids)
    }
}

/// A driver error: the server is unreachable, or it refused what was asked.
pub(crate) fn driver_error(error: &mongodb::error::Error) -> ConnectorError {
    match error.kind.as_ref() {
        ErrorKind::ServerSelection { .. }
        | ErrorKind::Io(_)
        | ErrorKind::ConnectionPoolCleared { .. }
        | ErrorKind::DnsResolve { .. }
        | ErrorKind::Authentication { .. } => ConnectorError::Unavailable(error.to_string()),
        ErrorKind::Command(command) => {
            let message = format!("{} ({})", command.message, command.code_name);
            match command.code {
                // HostUnreachable, HostNotFound, NetworkTimeout, SocketException.
                6 | 7 | 89 | 9001 => ConnectorError::Unavailable(message),
                // CursorNotFound (a cursor the server timed out or killed),
                // InterruptedAtShutdown, ShutdownInProgress, Interrupted,
                // InterruptedDueToReplStateChange, PrimarySteppedDown.
                43 | 11600 | 91 | 11601 | 11602 | 189 => ConnectorError::Interrupted(message),
                // MaxTimeMSExpired.
                50 => ConnectorError::TimedOut(message),
                _ => ConnectorError::InvalidData(message),
            }
        }
        _ => ConnectorError::InvalidData(error.to_string()),
    }
}

/// The driver's options for `url`. Parsing a `mongodb+srv://` string looks its hosts up in
/// DNS, so it runs on a thread of its own, with a runtime of its own.
pub(crate) async fn client_options(
    url: &str,
    connect_timeout: Duration,
) -> Result<ClientOptions, String> {
    let mut options = ClientOptions::parse(url).await.map_err(|e| e.to_string())?;
    options
        .app_name
        .get_or_insert_with(|| "polygate".to_owned());
    options.connect_timeout.get_or_insert(connect_timeout);
    options
        .server_selection_timeout
        .get_or_insert(connect_timeout);
    Ok(options)
}
