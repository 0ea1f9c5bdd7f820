//! The searches polygate sends to Elasticsearch and OpenSearch: what a scan asks of the
//! cluster, how its requests page through the hits, and how EXPLAIN shows them.

use std::fmt;

use serde_json::{Map, Value, json};

use crate::schema::Field;

/// One column of a scan's output.
#[derive(Debug, Clone)]
pub(crate) enum Column {
    Id,
    Index,
    Score,
    Field(Field),
}

/// What a scan asks of the cluster.
#[derive(Debug, Clone)]
pub(crate) struct Search {
    /// Queries that select documents without scoring them (filter context).
    pub(crate) filters: Vec<Value>,
    /// Full-text queries: they select documents and score them (query context).
    pub(crate) relevance: Vec<Value>,
    /// Sort clauses, most significant first; none reads in index order.
    pub(crate) sort: Vec<Value>,
    pub(crate) columns: Vec<Column>,
    pub(crate) limit: Option<usize>,
}

/// How a scan's requests page through the hits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// A limit within one page: one request, no search context.
    OneRequest,
    /// A point in time, paged by `search_after`.
    PointInTime,
    /// A scroll.
    Scroll,
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter) -> fmt::Result {
        f.write_str(match self {
            Mode::OneRequest => "one request",
            Mode::PointInTime => "point in time",
            Mode::Scroll => "scroll",
        })
    }
}

impl Search {
    /// The query: the filters in filter context, the full-text queries in query context.
    pub(crate) fn query(&self) -> Option<Value> {
        match (self.filters.as_slice(), self.relevance.as_slice()) {
            ([], []) => None,
            ([only], []) => Some(only.clone()),
            (filters, relevance) => {
                let mut clauses = Map::new();
                if !relevance.is_empty() {
                    clauses.insert("must".into(), Value::from(relevance.to_vec()));
                }
                if !filters.is_empty() {
                    clauses.insert("filter".into(), Value::from(filters.to_vec()));
                }
                Some(json!({ "bool": clauses }))
            }
        }
    }

    /// Whether the hits carry a relevance score the scan reads.
    pub(crate) fn scores(&self) -> bool {
        !self.relevance.is_empty() && self.columns.iter().any(|c| matches!(c, Column::Score))
    }

    /// `_source` filtering: the top-level fields the columns read, or `false` for none.
    pub(crate) fn source(&self) -> Value {
        let mut includes: Vec<&str> = self
            .columns
            .iter()
            .filter_map(|c| match c {
                Column::Field(field) => Some(field.name.as_str()),
                _ => None,
            })
            .collect();
        if includes.is_empty() {
            return Value::Bool(false);
        }
        includes.sort_unstable();
        // Each name is also given with `.*`: `_source` may hold an object's fields under
        // dotted keys (`"a.b": 1`), which a plain `a` does not include.
        let patterns: Vec<String> = includes
            .iter()
            .flat_map(|name| [(*name).to_owned(), format!("{name}.*")])
            .collect();
        json!({ "includes": patterns })
    }

    /// The body of the first request in `mode`: query, `_source`, size and sort.
    pub(crate) fn body(&self, mode: Mode, size: usize) -> Map<String, Value> {
        let mut body = Map::new();
        if let Some(query) = self.query() {
            body.insert("query".into(), query);
        }
        body.insert("_source".into(), self.source());
        body.insert("size".into(), Value::from(size));
        let mut sort = self.sort.clone();
        match mode {
            // Every hit's place in the point in time: the tie-breaker `search_after` needs.
            Mode::PointInTime => sort.push(json!({ "_shard_doc": "asc" })),
            Mode::OneRequest | Mode::Scroll if sort.is_empty() => sort.push(json!("_doc")),
            Mode::OneRequest | Mode::Scroll => {}
        }
        body.insert("sort".into(), Value::from(sort));
        if self.scores() {
            // Hits sorted by anything but `_score` are not scored unless asked.
            body.insert("track_scores".into(), Value::Bool(true));
        }
        // Counting every hit costs the cluster work no page needs (scrolls must count).
        if mode != Mode::Scroll {
            body.insert("track_total_hits".into(), Value::Bool(false));
        }
        body
    }
}
