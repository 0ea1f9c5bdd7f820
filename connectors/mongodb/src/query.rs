//! The aggregation pipelines polygate sends, and how EXPLAIN shows them.

use mongodb::bson::{Bson, Document, doc};

/// The reading of one collection: the pipeline's stages before any partition's `_id` range,
/// and its output fields.
#[derive(Debug, Clone, Default)]
pub(crate) struct Pipeline {
    /// Stages, in order; a partition's `_id` range goes first, as its own `$match`.
    pub(crate) stages: Vec<Document>,
}

impl Pipeline {
    /// The stages for one partition: its `_id` range first (`None` for the whole collection).
    pub(crate) fn for_range(&self, range: Option<&Document>) -> Vec<Document> {
        let mut stages = Vec::with_capacity(self.stages.len() + 1);
        if let Some(range) = range {
            stages.push(doc! { "$match": range.clone() });
        }
        stages.extend(self.stages.iter().cloned());
        stages
    }

    /// The pipeline as EXPLAIN shows it: literal values replaced by their type (`?int64`),
    /// field names, operators and stage shapes kept.
    pub(crate) fn describe(&self) -> String {
        let stages: Vec<String> = self
            .stages
            .iter()
            .map(|stage| elide_document(stage, Context::Stage).to_string())
            .collect();
        format!("[{}]", stages.join(", "))
    }
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Context {
    /// A stage's shape and numbers: `$sort` directions, `$limit` counts, `$project` flags.
    Stage,
    /// Inside `$match` or an expression: literal values are elided.
    Values,
}

fn elide_document(document: &Document, context: Context) -> Document {
    let mut out = Document::new();
    for (key, value) in document {
        let inner = match key.as_str() {
            "$match" | "$literal" => Context::Values,
            // What `$type` names is not a user value.
            "$type" if context == Context::Values => {
                out.insert(key, value.clone());
                continue;
            }
            _ => context,
        };
        out.insert(key, elide(value, inner));
    }
    out
}

fn elide(value: &Bson, context: Context) -> Bson {
    match value {
        Bson::Document(document) => Bson::Document(elide_document(document, context)),
        Bson::Array(items) => Bson::Array(items.iter().map(|v| elide(v, context)).collect()),
        Bson::Null => value.clone(),
        other if context == Context::Stage => other.clone(),
        other => Bson::String(format!("?{}", type_name(other))),
    }
}

fn type_name(value: &Bson) -> &'static str {
    match value {
        Bson::Int32(_) => "int32",
        Bson::Int64(_) => "int64",
        Bson::Double(_) => "double",
        Bson::Decimal128(_) => "decimal",
        Bson::String(_) => "string",
        Bson::Boolean(_) => "bool",
        Bson::DateTime(_) => "date",
        Bson::ObjectId(_) => "objectId",
        Bson::RegularExpression(_) => "regex",
        _ => "value",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn explain_elides_values_but_keeps_shapes() {
        let pipeline = Pipeline {
            stages: vec![
                doc! { "$match": { "$and": [
                    { "name": { "$eq": "$where" } },
                    { "n": { "$nin": [5_i64, Bson::Null] } },
                    { "s": { "$type": "string", "$not": { "$regex": "^a" } } },
                ] } },
                doc! { "$sort": { "n": 1 } },
                doc! { "$limit": 10_i64 },
                doc! { "$project": { "_id": 0, "n": 1 } },
            ],
        };
        assert_eq!(
            pipeline.describe(),
            r#"[{ "$match": { "$and": [{ "name": { "$eq": "?string" } }, { "n": { "$nin": ["?int64", null] } }, { "s": { "$type": "string", "$not": { "$regex": "?string" } } }] } }, { "$sort": { "n": 1 } }, { "$limit": 10 }, { "$project": { "_id": 0, "n": 1 } }]"#
        );
    }
}
