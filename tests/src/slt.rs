//! sqllogictest over the PostgreSQL protocol, as DataFusion runs its files against PostgreSQL.

use std::time::Duration;

use async_trait::async_trait;
use sqllogictest::{AsyncDB, DBOutput, DefaultColumnType};
use tokio_postgres::{Client, SimpleQueryMessage};

/// A sqllogictest connection: statements go through the simple query protocol, values come
/// back as PostgreSQL's text format, NULL as `NULL`.
pub struct PgSlt {
    client: Client,
    engine: &'static str,
}

impl PgSlt {
    /// Wraps `client`; `engine` names it in `onlyif`/`skipif` records.
    pub fn new(client: Client, engine: &'static str) -> Self {
        Self { client, engine }
    }
}

#[async_trait]
impl AsyncDB for PgSlt {
    type Error = tokio_postgres::Error;
    type ColumnType = DefaultColumnType;

    async fn run(&mut self, sql: &str) -> Result<DBOutput<DefaultColumnType>, Self::Error> {
        let messages = self.client.simple_query(sql).await?;
        let mut rows = Vec::new();
        let mut columns = None;
        let mut affected = 0;
        for message in messages {
            match message {
                SimpleQueryMessage::RowDescription(description) => {
                    columns = Some(description.len())
                }
                SimpleQueryMessage::Row(row) => rows.push(
                    (0..row.len())
                        .map(|i| match row.get(i) {
                            None => "NULL".to_owned(),
                            Some("") => "(empty)".to_owned(),
                            Some(value) => value.to_owned(),
                        })
                        .collect(),
                ),
                SimpleQueryMessage::CommandComplete(count) => affected = count,
                _ => {}
            }
        }
        Ok(match columns {
            Some(n) => DBOutput::Rows {
                types: vec![DefaultColumnType::Any; n],
                rows,
            },
            None => DBOutput::StatementComplete(affected),
        })
    }

    async fn shutdown(&mut self) {}

    fn engine_name(&self) -> &str {
        self.engine
    }

    async fn sleep(duration: Duration) {
        tokio::time::sleep(duration).await;
    }

    fn error_sql_state(error: &Self::Error) -> Option<String> {
        error.code().map(|code| code.code().to_owned())
    }
}
