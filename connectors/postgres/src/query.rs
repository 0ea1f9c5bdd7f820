//! The statements polygate sends to PostgreSQL: one per partition of a scan, as EXPLAIN shows
//! them.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;

use crate::filter::Param;
use crate::remote::Remote;
use crate::scan::SharedSnapshot;
use crate::schema::PgColumn;

/// One remote query, streamed.
#[derive(Debug, Clone)]
pub(crate) struct PostgresPartition {
    pub(crate) remote: Arc<Remote>,
    /// SELECT, FROM and WHERE.
    pub(crate) base_sql: String,
    /// Whether `base_sql` has a WHERE clause.
    pub(crate) has_where: bool,
    /// The pages this partition reads, in a parallel scan.
    pub(crate) ctid: Option<CtidRange>,
    /// The session of a parallel scan this partition runs on, and its index.
    pub(crate) session: Option<(Arc<SharedSnapshot>, usize)>,
    /// The ORDER BY clause, without its keywords.
    pub(crate) order_by: Option<String>,
    pub(crate) limit: Option<usize>,
    pub(crate) params: Vec<Param>,
    pub(crate) columns: Vec<PgColumn>,
    pub(crate) schema: SchemaRef,
    pub(crate) batch_size: usize,
}

impl PostgresPartition {
    /// The statement sent to PostgreSQL.
    pub(crate) fn sql(&self) -> String {
        let mut sql = self.base_sql.clone();
        if let Some(range) = &self.ctid {
            sql.push_str(if self.has_where { " AND " } else { " WHERE " });
            sql.push_str(&range.condition());
        }
        if let Some(order_by) = &self.order_by {
            sql.push_str(" ORDER BY ");
            sql.push_str(order_by);
        }
        // The limit is a number polygate computed, not user text.
        if let Some(limit) = self.limit {
            sql.push_str(&format!(" LIMIT {limit}"));
        }
        sql
    }
}

/// Pages `[start, end)` of a relation; `end` is `None` for the last range, which also reads
/// pages added since the statistics were taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CtidRange {
    start: u64,
    end: Option<u64>,
}

impl CtidRange {
    /// `pages` split into `parts` ranges of equal size, covering every page once.
    pub(crate) fn split(pages: u64, parts: u64) -> Vec<Self> {
        let parts = parts.max(1);
        (0..parts)
            .map(|i| Self {
                start: pages * i / parts,
                end: (i + 1 < parts).then(|| pages * (i + 1) / parts),
            })
            .collect()
    }

    /// The condition selecting the range's rows (a TID range scan on PostgreSQL 14+). The
    /// bounds are numbers polygate computed, not user text.
    pub(crate) fn condition(&self) -> String {
        let mut condition = format!("\"ctid\" >= '({},0)'::tid", self.start);
        if let Some(end) = self.end {
            condition.push_str(&format!(" AND \"ctid\" < '({end},0)'::tid"));
        }
        condition
    }
}

#[cfg(test)]
mod tests {
    use super::CtidRange;

    #[test]
    fn ctid_ranges_cover_every_page_once() {
        for (pages, parts) in [(10, 2), (61_000, 2), (7, 3), (100, 4), (5, 5)] {
            let ranges = CtidRange::split(pages, parts);
            assert_eq!(ranges.len() as u64, parts);
            assert_eq!(ranges[0].start, 0);
            for pair in ranges.windows(2) {
                assert_eq!(pair[0].end, Some(pair[1].start), "{pages} in {parts}");
            }
            assert_eq!(ranges.last().and_then(|r| r.end), None);
        }
        assert_eq!(
            CtidRange::split(10, 2)[1].condition(),
            "\"ctid\" >= '(5,0)'::tid"
        );
        assert_eq!(
            CtidRange::split(10, 2)[0].condition(),
            "\"ctid\" >= '(0,0)'::tid AND \"ctid\" < '(5,0)'::tid"
        );
    }
}
