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
