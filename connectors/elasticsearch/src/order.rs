//! Ordering hits in the cluster: the sort clauses of a scan's ORDER BY, where the cluster
//! orders exactly as DataFusion would.

use datafusion::physical_expr::PhysicalSortExpr;
use datafusion::physical_plan::expressions::Column as PhysicalColumn;
use serde_json::{Value, json};

use crate::filter::{FieldPath, safe_name};
use crate::query::{Column, Search};

/// The sort clauses for `order`, when the cluster orders the hits exactly as DataFusion
/// would: by single-valued fields whose every value is indexed unchanged (keywords,
/// integers, doubles, dates, booleans, text by its plain keyword sub-field), with NULLs first or
/// last as asked, or by relevance.
pub(crate) fn sort_for(search: &Search, order: &[PhysicalSortExpr]) -> Option<Vec<Value>> {
    let mut sort = Vec::with_capacity(order.len());
    for key in order {
        let column = key.expr.downcast_ref::<PhysicalColumn>()?;
        let direction = if key.options.descending {
            "desc"
        } else {
            "asc"
        };
        match search.columns.get(column.index())? {
            // Every hit of a search with a full-text query has a score.
            Column::Score if !search.relevance.is_empty() => {
                sort.push(json!({ "_score": { "order": direction } }));
            }
            Column::Field(field) => {
                let path = FieldPath {
                    dotted: field.name.clone(),
                    field: field.clone(),
                };
                if !safe_name(&field.name) {
                    return None;
                }
                let target = path.sort_path()?;
                let missing = if key.options.nulls_first {
                    "_first"
                } else {
                    "_last"
                };
                sort.push(json!({ target: { "order": direction, "missing": missing } }));
            }
            _ => return None,
        }
    }
    Some(sort)
}
