//! Indices of a test's own on the Elasticsearch/OpenSearch-compatible server.

use anyhow::Context;
use serde_json::{Value, json};

use crate::backends::unique_name;

/// Indices on the search server for one test, all named with one prefix and deleted when
/// the test ends.
pub struct SearchIndices {
    http: reqwest::Client,
    /// The server's address.
    pub url: String,
    /// The prefix of every index of the test.
    pub prefix: String,
    created: Vec<String>,
}

impl SearchIndices {
    /// A fresh prefix on the server at `url`.
    pub fn create(url: &str, test: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            url: url.trim_end_matches('/').to_owned(),
            prefix: unique_name(test),
            created: Vec::new(),
        }
    }

    /// The full name of the test's index `name`.
    pub fn name(&self, name: &str) -> String {
        format!("{}_{name}", self.prefix)
    }

    /// Sends a request; an answer other than 2xx is an error with its body.
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<String>,
    ) -> anyhow::Result<Value> {
        let mut request = self.http.request(method, format!("{}{path}", self.url));
        if let Some(body) = body {
            let content_type = if path.contains("_bulk") {
                "application/x-ndjson"
            } else {
                "application/json"
            };
            request = request.header("content-type", content_type).body(body);
        }
        let response = request.send().await?;
        let status = response.status();
        let text = response.text().await?;
        anyhow::ensure!(status.is_success(), "{path}: {status}: {text}");
        serde_json::from_str(&text).with_context(|| format!("{path}: {text}"))
    }

    /// Creates the index `name` with `mappings`.
    pub async fn create_index(&mut self, name: &str, mappings: Value) -> anyhow::Result<()> {
        let full = self.name(name);
        self.request(
            reqwest::Method::PUT,
            &format!("/{full}"),
            Some(json!({ "mappings": mappings }).to_string()),
        )
        .await?;
        self.created.push(full);
        Ok(())
    }

    /// Indexes `documents` into `name` (each `(id, source)`), visible to searches at once.
    pub async fn bulk(&self, name: &str, documents: &[(String, Value)]) -> anyhow::Result<()> {
        for chunk in documents.chunks(5_000) {
            let mut body = String::new();
            for (id, source) in chunk {
                body.push_str(&json!({ "index": { "_id": id } }).to_string());
                body.push('\n');
                body.push_str(&source.to_string());
                body.push('\n');
            }
            let answer = self
                .request(
                    reqwest::Method::POST,
                    &format!("/{}/_bulk?refresh=true", self.name(name)),
                    Some(body),
                )
                .await?;
            anyhow::ensure!(
                answer["errors"] == Value::Bool(false),
                "bulk indexing failed: {answer}"
            );
        }
        Ok(())
    }

    /// Copies every table of PostgreSQL schema `schema` into an index of the same name (not
    /// prefixed: the names must be the tables'), created with its mapping from `mappings`
    /// (index name -> mapping), and returns the names.
    ///
    /// Each row becomes a document with the row's columns as fields. A NULL becomes a missing
    /// field in even rows and an explicit null in odd ones; timestamptz values become ISO
    /// 8601 text in UTC.
    pub async fn copy_from_postgres(
        &mut self,
        pg: &tokio_postgres::Client,
        schema: &str,
        mappings: &Value,
    ) -> anyhow::Result<Vec<String>> {
        let tables = pg
            .query(
                "SELECT table_name::text FROM information_schema.tables WHERE table_schema = $1 \
                 ORDER BY 1",
                &[&schema],
            )
            .await?;
        pg.batch_execute("SET TimeZone = 'UTC'").await?;
        let mut names = Vec::new();
        for table in tables {
            let table: String = table.get(0);
            let mapping = mappings
                .get(&table)
                .with_context(|| format!("no mapping for {table}"))?;
            let _ = self
                .request(reqwest::Method::DELETE, &format!("/{table}"), None)
                .await;
            self.request(
                reqwest::Method::PUT,
                &format!("/{table}"),
                Some(json!({ "mappings": mapping }).to_string()),
            )
            .await?;
            self.created.push(table.clone());
            let sql = format!("SELECT * FROM \"{schema}\".\"{table}\"");
            let types: Vec<tokio_postgres::types::Type> = pg
                .prepare(&sql)
                .await?
                .columns()
                .iter()
                .map(|c| c.type_().clone())
                .collect();
            let mut body = String::new();
            let mut index = 0;
            for message in pg.simple_query(&sql).await? {
                let tokio_postgres::SimpleQueryMessage::Row(row) = message else {
                    continue;
                };
                let mut document = serde_json::Map::new();
                for (i, column) in row.columns().iter().enumerate() {
                    match row.get(i) {
                        None if index % 2 == 0 => {}
                        None => {
                            document.insert(column.name().to_owned(), Value::Null);
                        }
                        Some(text) => {
                            document.insert(column.name().to_owned(), json_of(text, &types[i])?);
                        }
                    }
                }
                body.push_str(&json!({ "index": { "_id": (index + 1).to_string() } }).to_string());
                body.push('\n');
                body.push_str(&Value::Object(document).to_string());
                body.push('\n');
                index += 1;
            }
            if !body.is_empty() {
                let answer = self
                    .request(
                        reqwest::Method::POST,
                        &format!("/{table}/_bulk?refresh=true"),
                        Some(body),
                    )
                    .await?;
                anyhow::ensure!(
                    answer["errors"] == Value::Bool(false),
                    "bulk indexing failed: {answer}"
                );
            }
            names.push(table);
        }
        Ok(names)
    }

    /// A catalog.toml source `source` of kind `elasticsearch` serving the test's indices,
    /// with `extra` lines of options.
    pub fn source(&self, source: &str, extra: &str) -> String {
        format!(
            "[sources.{source}]\nkind = \"elasticsearch\"\nurl = \"{}\"\ninclude = [\"{}_*\"]\n{extra}\n",
            self.url, self.prefix
        )
    }

    /// The point-in-time searches open on the server (OpenSearch's `_all` listing).
    pub async fn open_points_in_time(&self) -> anyhow::Result<usize> {
        let answer = self
            .request(reqwest::Method::GET, "/_search/point_in_time/_all", None)
            .await?;
        Ok(answer["pits"].as_array().map_or(0, Vec::len))
    }

    /// Deletes the test's indices.
    pub async fn delete(self) -> anyhow::Result<()> {
        for index in &self.created {
            self.request(reqwest::Method::DELETE, &format!("/{index}"), None)
                .await?;
        }
        Ok(())
    }
}

/// A value in PostgreSQL's text format (UTC session) as JSON.
fn json_of(text: &str, ty: &tokio_postgres::types::Type) -> anyhow::Result<Value> {
    use tokio_postgres::types::Type;
    Ok(match *ty {
        Type::INT8 | Type::INT4 | Type::INT2 => Value::from(text.parse::<i64>()?),
        Type::FLOAT8 | Type::FLOAT4 => Value::from(text.parse::<f64>()?),
        Type::BOOL => Value::from(text == "t"),
        // `2024-01-01 07:13:00+00` as `2024-01-01T07:13:00+00:00`.
        Type::TIMESTAMPTZ => Value::from(format!("{}:00", text.replacen(' ', "T", 1))),
        _ => Value::from(text),
    })
}
