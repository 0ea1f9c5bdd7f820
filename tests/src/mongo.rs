//! A MongoDB database of a test's own, and copies of PostgreSQL tables into it.

use mongodb::bson::{Bson, DateTime, Decimal128, Document};
use tokio_postgres::SimpleQueryMessage;
use tokio_postgres::types::Type;

use crate::backends::unique_name;

/// A database on the Mongo-wire server for one test, dropped when the test ends.
pub struct MongoDatabase {
    /// The driver's client.
    pub client: mongodb::Client,
    /// The database's name.
    pub name: String,
    /// The server's connection string.
    pub url: String,
}

impl MongoDatabase {
    /// A fresh database on the server at `url`.
    pub async fn create(url: &str, test: &str) -> anyhow::Result<Self> {
        let client = mongodb::Client::with_uri_str(url).await?;
        Ok(Self {
            client,
            name: unique_name(test),
            url: url.to_owned(),
        })
    }

    /// The database `name` on the server at `url`, for a test that needs a stable name.
    pub async fn named(url: &str, name: &str) -> anyhow::Result<Self> {
        let client = mongodb::Client::with_uri_str(url).await?;
        Ok(Self {
            client,
            name: name.to_owned(),
            url: url.to_owned(),
        })
    }

    /// The test's database.
    pub fn db(&self) -> mongodb::Database {
        self.client.database(&self.name)
    }

    /// A catalog.toml source `source` of kind `mongodb` serving this database, with `extra`
    /// lines of options.
    pub fn source(&self, source: &str, extra: &str) -> String {
        format!(
            "[sources.{source}]\nkind = \"mongodb\"\nurl = \"{}\"\ndatabase = \"{}\"\n{extra}\n",
            self.url, self.name
        )
    }

    /// Drops the database. A test that panics leaves it behind, under a name no later run
    /// reuses.
    pub async fn drop_database(self) -> anyhow::Result<()> {
        self.db().drop().await?;
        Ok(())
    }

    /// Copies every table of PostgreSQL schema `schema` into a collection of the same name.
    ///
    /// Each row becomes a document with the row's columns as fields. A NULL becomes a missing
    /// field in even rows and a BSON null in odd ones; int8 values alternate between int32
    /// and int64; numeric values become Decimal128 with their scale; timestamptz values
    /// become dates. The collections therefore hold what SQL sees as the same relation, in
    /// the forms that make document stores hard to query exactly.
    pub async fn copy_from_postgres(
        &self,
        pg: &tokio_postgres::Client,
        schema: &str,
    ) -> anyhow::Result<()> {
        let tables = pg
            .query(
                "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1 \
                 ORDER BY 1",
                &[&schema],
            )
            .await?;
        pg.batch_execute("SET TimeZone = 'UTC'").await?;
        for table in tables {
            let table: String = table.get(0);
            let sql = format!("SELECT * FROM \"{schema}\".\"{table}\"");
            let types: Vec<Type> = pg
                .prepare(&sql)
                .await?
                .columns()
                .iter()
                .map(|c| c.type_().clone())
                .collect();
            let mut documents = Vec::new();
            for message in pg.simple_query(&sql).await? {
                let SimpleQueryMessage::Row(row) = message else {
                    continue;
                };
                let index = documents.len();
                let mut document = Document::new();
                for (i, column) in row.columns().iter().enumerate() {
                    match row.get(i) {
                        None if index % 2 == 0 => {}
                        None => {
                            document.insert(column.name(), Bson::Null);
                        }
                        Some(text) => {
                            document.insert(column.name(), bson_of(text, &types[i], index)?);
                        }
                    }
                }
                documents.push(document);
            }
            // Every collection exists, even an empty one.
            self.db().create_collection(&table).await?;
            if !documents.is_empty() {
                self.db()
                    .collection::<Document>(&table)
                    .insert_many(documents)
                    .await?;
            }
        }
        Ok(())
    }
}

/// A value in PostgreSQL's text format as BSON; `index` is the row's position.
fn bson_of(text: &str, ty: &Type, index: usize) -> anyhow::Result<Bson> {
    Ok(match *ty {
        Type::INT8 => {
            let v: i64 = text.parse()?;
            match i32::try_from(v) {
                Ok(small) if index % 2 == 1 => Bson::Int32(small),
                _ => Bson::Int64(v),
            }
        }
        Type::INT4 | Type::INT2 => Bson::Int32(text.parse()?),
        Type::FLOAT8 | Type::FLOAT4 => Bson::Double(text.parse()?),
        Type::BOOL => Bson::Boolean(text == "t"),
        Type::TEXT | Type::VARCHAR | Type::BPCHAR => Bson::String(text.to_owned()),
        Type::NUMERIC => Bson::Decimal128(
            text.parse::<Decimal128>()
                .map_err(|e| anyhow::anyhow!("{text} is not a decimal: {e}"))?,
        ),
        Type::TIMESTAMPTZ => {
            let time = chrono::DateTime::parse_from_str(text, "%Y-%m-%d %H:%M:%S%.f%#z")?;
            Bson::DateTime(DateTime::from_millis(time.timestamp_millis()))
        }
        ref other => anyhow::bail!("no BSON mapping for PostgreSQL type {other}"),
    })
}
