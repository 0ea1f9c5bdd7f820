//! What every connector's scan execution plan computes the same way: its plan properties and
//! its row estimates.

use std::sync::Arc;

use datafusion::arrow::datatypes::SchemaRef;
use datafusion::common::Statistics;
use datafusion::common::stats::Precision;
use datafusion::physical_expr::{EquivalenceProperties, PhysicalSortExpr};
use datafusion::physical_plan::execution_plan::{Boundedness, EmissionType, SchedulingType};
use datafusion::physical_plan::{Partitioning, PlanProperties};

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
