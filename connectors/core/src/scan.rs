//! What every connector's scan execution plan computes the same way: its plan properties, its
//! row estimates, and the stream it hands DataFusion.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::Statistics;
use datafusion::common::stats::Precision;
use datafusion::error::DataFusionError;
use datafusion::logical_expr::Expr;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalSortExpr};
use datafusion::physical_plan::coop::make_cooperative;
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType, SchedulingType};
use datafusion::physical_plan::{
    Partitioning, PlanProperties, RecordBatchStream, SendableRecordBatchStream,
};
use futures::Stream;
use tokio::time::{Instant, Sleep};

use crate::{ConnectorError, SourceError};

/// The native conditions of the filters DataFusion hands a scan: only those
/// [`RemoteRelation::filters_exactly`](crate::remote_scan::RemoteRelation::filters_exactly)
/// accepted reach it, so each must translate.
pub fn scan_filters<T>(
    filters: &[Expr],
    mut translate: impl FnMut(&Expr) -> Option<T>,
) -> datafusion::error::Result<Vec<T>> {
    filters
        .iter()
        .map(|filter| {
            translate(filter).ok_or_else(|| {
                DataFusionError::Internal(format!("filter {filter} was not reported pushable"))
            })
        })
        .collect()
}

/// A double as polygate returns it: every NaN (of either sign, of any payload) as the
/// positive quiet NaN. Stores do not tell NaNs apart, and DataFusion sorts only the positive
/// one above every number; a sign bit left on would move a NaN to the bottom of an ORDER BY.
pub fn canonical_f64(value: f64) -> f64 {
    if value.is_nan() { f64::NAN } else { value }
}

/// A float as polygate returns it: see [`canonical_f64`].
pub fn canonical_f32(value: f32) -> f32 {
    if value.is_nan() { f32::NAN } else { value }
}

/// How many partitions a scan of `size` units (documents, pages) is split into: one per
/// `unit`, at most `most`, and 1 (no split) when that would make fewer than two.
pub fn partitions(size: u64, unit: u64, most: usize) -> usize {
    let parts = (size / unit.max(1)).min(most as u64);
    if parts >= 2 { parts as usize } else { 1 }
}

/// The properties of a remote scan of `partitions` partitions (at least one): bounded,
/// incremental, cooperative, in `ordering` when the store sorts.
pub fn scan_properties(
    schema: SchemaRef,
    ordering: Option<&[PhysicalSortExpr]>,
    partitions: usize,
) -> PlanProperties {
    let equivalences = match ordering {
        Some(ordering) => EquivalenceProperties::new_with_orderings(schema, [ordering.to_vec()]),
        None => EquivalenceProperties::new(schema),
    };
    PlanProperties::new(
        equivalences,
        Partitioning::UnknownPartitioning(partitions.max(1)),
        EmissionType::Incremental,
        Boundedness::Bounded,
    )
    .with_scheduling_type(SchedulingType::Cooperative)
}

/// The store's estimate of a relation's rows, capped by a scan's limit: always inexact.
pub fn estimated_rows(estimate: Option<usize>, limit: Option<usize>) -> Precision<usize> {
    match (estimate, limit) {
        (Some(rows), Some(limit)) => Precision::Inexact(rows.min(limit)),
        (Some(rows), None) => Precision::Inexact(rows),
        (None, _) => Precision::Absent,
    }
}

/// The statistics of `partition` of a scan split into `parts` partitions of about equal size
/// (`None`: of the whole scan).
pub fn partition_statistics(
    whole: &Arc<Statistics>,
    schema: &SchemaRef,
    parts: usize,
    partition: Option<usize>,
) -> Arc<Statistics> {
    match partition {
        Some(_) if parts > 1 => {
            let rows = whole.num_rows.map(|rows| rows / parts);
            Arc::new(Statistics::new_unknown(schema).with_num_rows(rows))
        }
        _ => Arc::clone(whole),
    }
}

/// A remote scan's stream as DataFusion gets it: cooperative, so that a fast store cannot
/// starve the other tasks of a worker, and bounded, so that a store which stops answering
/// fails the statement with [`ConnectorError::Unavailable`] naming `source` instead of holding
/// it, its pool session and its client for ever.
///
/// The wait is counted only while the stream is asked for a batch: a consumer that is slow to
/// ask (a client reading slowly, the build side of a join) never makes the store look stalled.
pub fn remote_stream(
    stream: SendableRecordBatchStream,
    source: &str,
    response_timeout: Duration,
) -> SendableRecordBatchStream {
    make_cooperative(Box::pin(AnswerWithin {
        inner: stream,
        source: source.to_owned(),
        timeout: response_timeout,
        deadline: None,
    }))
}

/// See [`remote_stream`].
struct AnswerWithin {
    inner: SendableRecordBatchStream,
    source: String,
    timeout: Duration,
    /// Armed at the first poll that finds no batch ready; cleared by the next batch.
    deadline: Option<Pin<Box<Sleep>>>,
}

impl Stream for AnswerWithin {
    type Item = datafusion::error::Result<datafusion::arrow::record_batch::RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        if let Poll::Ready(item) = self.inner.as_mut().poll_next(cx) {
            self.deadline = None;
            return Poll::Ready(item);
        }
        let timeout = self.timeout;
        let deadline = self
            .deadline
            .get_or_insert_with(|| Box::pin(tokio::time::sleep_until(Instant::now() + timeout)));
        ready!(deadline.as_mut().poll(cx));
        self.deadline = None;
        Poll::Ready(Some(Err(SourceError::into_datafusion(
            self.source.clone(),
            no_answer(timeout),
        ))))
    }
}

impl RecordBatchStream for AnswerWithin {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }
}

/// Runs `call` (a discovery, a schema lookup: one request to the store) with the store's
/// response timeout, the same bound a scan's batches have.
pub async fn answer_within<T>(
    response_timeout: Duration,
    call: impl std::future::Future<Output = Result<T, ConnectorError>>,
) -> Result<T, ConnectorError> {
    tokio::time::timeout(response_timeout, call)
        .await
        .unwrap_or_else(|_| Err(no_answer(response_timeout)))
}

fn no_answer(timeout: Duration) -> ConnectorError {
    ConnectorError::Unavailable(format!(
        "the store did not answer within {}s (response_timeout_secs)",
        timeout.as_secs_f64()
    ))
}

#[cfg(test)]
mod tests {
    use super::partitions;

    #[test]
    fn a_scan_splits_into_units_up_to_the_most_it_may() {
        // (size, unit, most, partitions)
        let cases = [
            (0, 100, 8, 1),
            (199, 100, 8, 1),
            (200, 100, 8, 2),
            (1_000, 100, 8, 8),
            (1_000, 100, 1, 1),
            (1_000, 0, 4, 4),
        ];
        for (size, unit, most, expected) in cases {
            assert_eq!(
                partitions(size, unit, most),
                expected,
                "{size}/{unit} up to {most}"
            );
        }
    }
}
