//! How a source talks to its cluster: the nodes, authentication and TLS, which flavour of
//! search engine answers, and the REST calls the connector makes.

use std::time::Duration;

use polygate_connector_core::{ConnectorError, SourceSettings};
use reqwest::header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue};
use reqwest::{Method, StatusCode};
use serde_json::Value;
use tokio::sync::OnceCell;

/// Which search engine a cluster runs, from `GET /`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Flavour {
    Elasticsearch { major: u32, minor: u32 },
    OpenSearch { major: u32, minor: u32 },
}

impl Flavour {
    /// Reads `GET /`'s answer: OpenSearch says `version.distribution: "opensearch"`.
    pub fn detect(root: &Value) -> Result<Self, String> {
        let version = root
            .get("version")
            .ok_or("the cluster's root answer has no version")?;
        let number = version
            .get("number")
            .and_then(Value::as_str)
            .ok_or("the cluster's root answer has no version.number")?;
        let mut parts = number.split('.').map(|p| {
            p.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse::<u32>()
        });
        let (Some(Ok(major)), Some(Ok(minor))) = (parts.next(), parts.next()) else {
            return Err(format!("unreadable version number {number:?}"));
        };
        let opensearch = version.get("distribution").and_then(Value::as_str) == Some("opensearch");
        let flavour = if opensearch {
            Flavour::OpenSearch { major, minor }
        } else {
            Flavour::Elasticsearch { major, minor }
        };
        if !flavour.supported() {
            return Err(format!(
                "{flavour} is not supported: polygate reads Elasticsearch 7.10 and later and \
                 OpenSearch 2 and later"
            ));
        }
        Ok(flavour)
    }

    fn supported(self) -> bool {
        match self {
            Flavour::Elasticsearch { major, minor } => (major, minor) >= (7, 10),
            Flavour::OpenSearch { major, .. } => major >= 2,
        }
    }

    /// Whether point-in-time searches can page by `_shard_doc` (Elasticsearch 7.12+,
    /// OpenSearch 3.3+); elsewhere scans page through scrolls.
    pub fn sorts_by_shard_doc(self) -> bool {
        match self {
            Flavour::Elasticsearch { major, minor } => (major, minor) >= (7, 12),
            Flavour::OpenSearch { major, minor } => (major, minor) >= (3, 3),
        }
    }

    /// The request that opens a point in time over `index`, and where its answer puts the
    /// id.
    pub fn open_point_in_time(self, index: &str, keep_alive: &str) -> (String, &'static str) {
        let index = path_segment(index);
        match self {
            Flavour::Elasticsearch { .. } => {
                (format!("/{index}/_pit?keep_alive={keep_alive}"), "id")
            }
            Flavour::OpenSearch { .. } => (
                format!("/{index}/_search/point_in_time?keep_alive={keep_alive}"),
                "pit_id",
            ),
        }
    }

    /// The request that closes the point in time `id`: its path and body.
    pub fn close_point_in_time(self, id: &str) -> (&'static str, Value) {
        match self {
            Flavour::Elasticsearch { .. } => ("/_pit", serde_json::json!({ "id": id })),
            Flavour::OpenSearch { .. } => (
                "/_search/point_in_time",
                serde_json::json!({ "pit_id": [id] }),
            ),
        }
    }
}

impl std::fmt::Display for Flavour {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Flavour::Elasticsearch { major, minor } => write!(f, "Elasticsearch {major}.{minor}"),
            Flavour::OpenSearch { major, minor } => write!(f, "OpenSearch {major}.{minor}"),
        }
    }
}

/// An index or alias name as one path segment: every byte outside the unreserved set is
/// percent-encoded, so no name reaches another endpoint.
pub(crate) fn path_segment(name: &str) -> String {
    let mut encoded = String::with_capacity(name.len());
    for byte in name.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

/// The cluster a source reads, and how to reach it.
#[derive(Debug)]
pub(crate) struct Remote {
    /// The source's name, answer bound and pushdown switch.
    pub settings: SourceSettings,
    nodes: Vec<String>,
    /// The nodes as errors name them: without the credentials a URL may hold.
    shown: Vec<String>,
    http: reqwest::Client,
    authorization: Option<HeaderValue>,
    flavour: OnceCell<Flavour>,
}

/// Authentication to send with every request.
#[derive(Debug, Clone)]
pub(crate) enum Auth {
    None,
    Basic { username: String, password: String },
    ApiKey(String),
}

impl Remote {
    pub fn new(
        settings: SourceSettings,
        nodes: Vec<String>,
        auth: Auth,
        ca_pem: Option<Vec<u8>>,
        connect_timeout: Duration,
        request_timeout: Duration,
    ) -> Result<Self, String> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(connect_timeout)
            .timeout(request_timeout)
            .tcp_nodelay(true)
            .user_agent(concat!("polygate/", env!("CARGO_PKG_VERSION")));
        if let Some(pem) = ca_pem {
            for certificate in reqwest::Certificate::from_pem_bundle(&pem)
                .map_err(|e| format!("not a PEM certificate bundle: {e}"))?
            {
                builder = builder.add_root_certificate(certificate);
            }
        }
        let http = builder.build().map_err(|e| e.to_string())?;
        let authorization = match auth {
            Auth::None => None,
            Auth::Basic { username, password } => {
                let credentials = base64_encode(format!("{username}:{password}").as_bytes());
                Some(header(&format!("Basic {credentials}"))?)
            }
            Auth::ApiKey(key) => {
                // `id:key` is sent in its base64 form, as the cluster's API returns it.
                let key = if key.contains(':') {
                    base64_encode(key.as_bytes())
                } else {
                    key
                };
                Some(header(&format!("ApiKey {key}"))?)
            }
        };
        let nodes: Vec<String> = nodes
            .into_iter()
            .map(|n| n.trim_end_matches('/').to_owned())
            .collect();
        Ok(Self {
            settings,
            shown: nodes.iter().map(|n| without_credentials(n)).collect(),
            nodes,
            http,
            authorization,
            flavour: OnceCell::new(),
        })
    }

    /// Which search engine the cluster runs, asked once.
    pub async fn flavour(&self) -> Result<Flavour, ConnectorError> {
        self.flavour
            .get_or_try_init(|| async {
                let root = self.json(Method::GET, "/", None).await?;
                Flavour::detect(&root).map_err(ConnectorError::Unavailable)
            })
            .await
            .copied()
    }

    /// Sends a request and parses its JSON answer.
    pub async fn json(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<Value, ConnectorError> {
        let bytes = self.request(method, path, body).await?;
        serde_json::from_slice(&bytes).map_err(|e| {
            ConnectorError::InvalidData(format!("the answer to {path} is not JSON: {e}"))
        })
    }

    /// Sends a request to the first node that answers; an answer other than 2xx is an error
    /// carrying the cluster's reason.
    pub async fn request(
        &self,
        method: Method,
        path: &str,
        body: Option<&Value>,
    ) -> Result<bytes::Bytes, ConnectorError> {
        let body = body.map(|b| b.to_string());
        let mut last_error = String::new();
        for (url, node) in self.nodes.iter().zip(&self.shown) {
            // reqwest moves a URL's `user:password@` into a Basic authorization header.
            let mut request = self.http.request(method.clone(), format!("{url}{path}"));
            if let Some(authorization) = &self.authorization {
                request = request.header(AUTHORIZATION, authorization.clone());
            }
            if let Some(body) = &body {
                request = request
                    .header(CONTENT_TYPE, "application/json")
                    .body(body.clone());
            }
            let response = match request.send().await {
                Ok(response) => response,
                // Another node may answer when this one cannot be reached.
                Err(e) if e.is_connect() => {
                    last_error = format!("{node}: {}", error_chain(&e));
                    continue;
                }
                Err(e) => {
                    return Err(ConnectorError::Unavailable(format!(
                        "{node}: {}",
                        error_chain(&e)
                    )));
                }
            };
            let status = response.status();
            let bytes = response
                .bytes()
                .await
                .map_err(|e| ConnectorError::Unavailable(format!("{node}: {}", error_chain(&e))))?;
            if status.is_success() {
                return Ok(bytes);
            }
            return Err(status_error(status, &bytes));
        }
        Err(ConnectorError::Unavailable(last_error))
    }
}

/// The error for an answer with status `status`: the cluster's `error.type` and
/// `error.reason` when it gave them.
fn status_error(status: StatusCode, body: &[u8]) -> ConnectorError {
    let parsed: Option<Value> = serde_json::from_slice(body).ok();
    let error = parsed.as_ref().and_then(|v| v.get("error"));
    let kind = error
        .and_then(|e| e.get("type"))
        .and_then(Value::as_str)
        .unwrap_or("");
    let reason = error
        .and_then(|e| e.get("reason").and_then(Value::as_str))
        .map(str::to_owned)
        .or_else(|| error.and_then(Value::as_str).map(str::to_owned))
        .unwrap_or_else(|| String::from_utf8_lossy(body.get(..300).unwrap_or(body)).into_owned());
    let message = if kind.is_empty() {
        format!("HTTP {status}: {reason}")
    } else {
        format!("HTTP {status}: {kind}: {reason}")
    };
    match status {
        StatusCode::NOT_FOUND if kind == "index_not_found_exception" => {
            ConnectorError::NotFound(reason)
        }
        StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ConnectorError::Unavailable(message),
        StatusCode::TOO_MANY_REQUESTS => ConnectorError::Overloaded(message),
        // A point in time or scroll the cluster no longer keeps (expired, or its node left).
        StatusCode::NOT_FOUND if kind == "search_context_missing_exception" => {
            ConnectorError::Interrupted(message)
        }
        _ if kind == "search_phase_execution_exception" && reason_is_missing_context(&reason) => {
            ConnectorError::Interrupted(message)
        }
        s if s.is_server_error() => ConnectorError::Unavailable(message),
        _ => ConnectorError::InvalidData(message),
    }
}

/// `url` without the `user:password@` its authority may hold, for messages and logs.
pub(crate) fn without_credentials(url: &str) -> String {
    let (scheme, rest) = url.split_once("://").unwrap_or(("", url));
    let authority_end = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, tail) = rest.split_at(authority_end);
    let host = authority
        .rsplit_once('@')
        .map_or(authority, |(_, host)| host);
    match scheme {
        "" => format!("{host}{tail}"),
        scheme => format!("{scheme}://{host}{tail}"),
    }
}

/// Does a failed search say its search context is gone? Elasticsearch wraps an expired
/// point in time or scroll in a `search_phase_execution_exception` ("No search context found
/// for id [...]", or "all shards failed" with that root cause).
fn reason_is_missing_context(reason: &str) -> bool {
    reason.contains("No search context found")
}

fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

fn header(value: &str) -> Result<HeaderValue, String> {
    let mut value =
        HeaderValue::from_str(value).map_err(|_| "credentials hold characters a header cannot")?;
    value.set_sensitive(true);
    Ok(value)
}

fn base64_encode(bytes: &[u8]) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn node_urls_are_shown_without_credentials() {
        let cases = [
            (
                "https://elastic:s3cret@es.internal:9200",
                "https://es.internal:9200",
            ),
            (
                "http://u:p@w@127.0.0.1:9200/prefix",
                "http://127.0.0.1:9200/prefix",
            ),
            ("http://127.0.0.1:9200", "http://127.0.0.1:9200"),
            ("http://host/a@b", "http://host/a@b"),
            ("user:pw@host:9200", "host:9200"),
        ];
        for (url, shown) in cases {
            assert_eq!(without_credentials(url), shown, "{url}");
        }
    }

    #[test]
    fn flavours_are_told_apart_by_the_root_answer() {
        // Answers of GET / as each product's reference documents them.
        let elasticsearch = json!({"name": "node-1", "cluster_name": "c", "version": {
            "number": "8.15.0", "build_flavor": "default", "lucene_version": "9.11.1"},
            "tagline": "You Know, for Search"});
        let opensearch = json!({"name": "n", "version": {"distribution": "opensearch",
            "number": "2.11.0", "lucene_version": "9.7.0"}, "tagline": "The OpenSearch Project: https://opensearch.org/"});
        let old = json!({"version": {"number": "7.9.3"}});
        assert_eq!(
            Flavour::detect(&elasticsearch),
            Ok(Flavour::Elasticsearch {
                major: 8,
                minor: 15
            })
        );
        assert_eq!(
            Flavour::detect(&opensearch),
            Ok(Flavour::OpenSearch {
                major: 2,
                minor: 11
            })
        );
        assert!(Flavour::detect(&old).unwrap_err().contains("7.9"));
        assert!(Flavour::detect(&json!({})).is_err());
    }

    #[test]
    fn point_in_time_requests_follow_each_flavour() {
        let es = Flavour::Elasticsearch {
            major: 8,
            minor: 15,
        };
        let os = Flavour::OpenSearch {
            major: 2,
            minor: 11,
        };
        assert_eq!(
            es.open_point_in_time("logs-*", "1m"),
            ("/logs-%2A/_pit?keep_alive=1m".to_owned(), "id")
        );
        assert_eq!(
            os.open_point_in_time("books", "1m"),
            (
                "/books/_search/point_in_time?keep_alive=1m".to_owned(),
                "pit_id"
            )
        );
        assert_eq!(
            es.close_point_in_time("abc"),
            ("/_pit", json!({"id": "abc"}))
        );
        assert_eq!(
            os.close_point_in_time("abc"),
            ("/_search/point_in_time", json!({"pit_id": ["abc"]}))
        );
        assert!(
            !Flavour::OpenSearch {
                major: 2,
                minor: 19
            }
            .sorts_by_shard_doc()
        );
        assert!(Flavour::OpenSearch { major: 3, minor: 3 }.sorts_by_shard_doc());
        assert!(
            !Flavour::Elasticsearch {
                major: 7,
                minor: 11
            }
            .sorts_by_shard_doc()
        );
        assert!(es.sorts_by_shard_doc());
    }

    #[test]
    fn names_cannot_leave_their_path_segment() {
        assert_eq!(path_segment("books"), "books");
        assert_eq!(path_segment("a/../_cluster"), "a%2F..%2F_cluster");
        assert_eq!(path_segment("x?y#z &"), "x%3Fy%23z%20%26");
    }

    #[test]
    fn errors_carry_the_cluster_reason() {
        let body = br#"{"error":{"type":"index_not_found_exception","reason":"no such index [x]"},"status":404}"#;
        assert!(matches!(
            status_error(StatusCode::NOT_FOUND, body),
            ConnectorError::NotFound(reason) if reason == "no such index [x]"
        ));
        let bad = br#"{"error":{"type":"parsing_exception","reason":"unknown query [nope]"},"status":400}"#;
        let error = status_error(StatusCode::BAD_REQUEST, bad).to_string();
        assert!(
            error.contains("parsing_exception: unknown query [nope]"),
            "{error}"
        );
        assert!(matches!(
            status_error(StatusCode::SERVICE_UNAVAILABLE, b"busy"),
            ConnectorError::Unavailable(_)
        ));
    }
}
