//! What every connector's scan execution plan computes the same way: its plan properties and
//! its row estimates.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::Statistics;
use datafusion::common::stats::Precision;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalSortExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType, SchedulingType};
use datafusion::physical_plan::{Partitioning, PlanProperties};

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
