//! A collection's relation: its columns, inferred from a sample and overridden by catalog.toml.

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::datatypes::{Field, Schema, SchemaRef};
#[cfg(test)]
use mongodb::bson::RawBsonRef;
use mongodb::bson::RawDocument;

use crate::types::{FieldType, merge_into};

/// The columns of a collection: `_id` first, then the other top-level fields in name order.
#[derive(Debug, Clone)]
pub(crate) struct CollectionSchema {
    columns: Vec<(String, FieldType)>,
    arrow: SchemaRef,
}

/// What sampling found that a user should know: columns read as Extended JSON.
#[derive(Debug, Default)]
pub(crate) struct Inference {
    pub(crate) fields: BTreeMap<String, FieldType>,
}

impl Inference {
    /// Adds one sampled document.
    pub(crate) fn add(&mut self, document: &RawDocument) {
        for (name, value) in document.iter().flatten() {
            merge_into(&mut self.fields, name, FieldType::of(value));
        }
    }

    /// The schema of the fields seen, with `declared` types (by dotted path) replacing the
    /// inferred ones; with `declared_only`, only `_id` and the declared fields.
    pub(crate) fn into_schema(
        self,
        declared: &BTreeMap<String, FieldType>,
        declared_only: bool,
    ) -> CollectionSchema {
        let mut fields = if declared_only {
            BTreeMap::new()
        } else {
            self.fields
        };
        for (path, field) in declared {
            declare(&mut fields, path, field.clone());
        }
        // Every document has an `_id`; an empty collection's are ObjectIds by default.
        let id = fields.remove("_id").unwrap_or(FieldType::ObjectId);
        let mut columns = vec![("_id".to_owned(), id)];
        columns.extend(fields);
        CollectionSchema::new(columns)
    }

    /// The paths of columns (and nested fields) read as Extended JSON because their values
    /// had conflicting types.
    pub(crate) fn conflicts(fields: &BTreeMap<String, FieldType>) -> Vec<String> {
        let mut found = Vec::new();
        collect_conflicts("", fields, &mut found);
        found
    }
}

fn collect_conflicts(parent: &str, fields: &BTreeMap<String, FieldType>, found: &mut Vec<String>) {
    for (name, field) in fields {
        let path = if parent.is_empty() {
            name.clone()
        } else {
            format!("{parent}.{name}")
        };
        let mut field = field;
        while let FieldType::Array(element) = field {
            field = element;
        }
        match field {
            FieldType::Json => found.push(path),
            FieldType::Document(inner) => collect_conflicts(&path, inner, found),
            _ => {}
        }
    }
}

/// Sets the type of the field at dotted `path`, making its parents documents.
fn declare(fields: &mut BTreeMap<String, FieldType>, path: &str, field: FieldType) {
    match path.split_once('.') {
        None => {
            fields.insert(path.to_owned(), field);
        }
        Some((parent, rest)) => {
            let entry = fields
                .entry(parent.to_owned())
                .or_insert_with(|| FieldType::Document(BTreeMap::new()));
            if !matches!(entry, FieldType::Document(_)) {
                *entry = FieldType::Document(BTreeMap::new());
            }
            if let FieldType::Document(inner) = entry {
                declare(inner, rest, field);
            }
        }
    }
}

impl CollectionSchema {
    fn new(columns: Vec<(String, FieldType)>) -> Self {
        let arrow = Arc::new(Schema::new(
            columns
                .iter()
                .map(|(name, field)| Field::new(name, field.arrow_type(), name != "_id"))
                .collect::<Vec<_>>(),
        ));
        Self { columns, arrow }
    }

    /// The Arrow schema.
    pub(crate) fn arrow(&self) -> &SchemaRef {
        &self.arrow
    }

    /// The columns, in order.
    pub(crate) fn columns(&self) -> &[(String, FieldType)] {
        &self.columns
    }

    /// The type of top-level column `name`.
    pub(crate) fn field(&self, name: &str) -> Option<&FieldType> {
        self.columns
            .iter()
            .find(|(column, _)| column == name)
            .map(|(_, field)| field)
    }

    /// The schema of the columns at `indices`, or `None` when one is not a column.
    pub(crate) fn project(&self, indices: &[usize]) -> Option<Self> {
        indices
            .iter()
            .map(|&i| self.columns.get(i).cloned())
            .collect::<Option<_>>()
            .map(Self::new)
    }
}

/// The type of a sampled value, for tests.
#[cfg(test)]
pub(crate) fn type_of(value: RawBsonRef<'_>) -> FieldType {
    FieldType::of(value)
}

#[cfg(test)]
mod tests {
    use super::*;
    use mongodb::bson::rawdoc;

    #[test]
    fn declarations_win_and_id_comes_first() {
        let mut inference = Inference::default();
        inference.add(&rawdoc! { "b": 1_i32, "a": { "x": "s", "y": 2_i32 }, "_id": 7_i64 });
        inference.add(&rawdoc! { "b": "text" });
        let declared = BTreeMap::from([
            ("a.x".to_owned(), FieldType::Int64),
            ("c".to_owned(), FieldType::Json),
        ]);
        let schema = inference.into_schema(&declared, false);
        let names: Vec<&str> = schema.columns().iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["_id", "a", "b", "c"]);
        assert_eq!(schema.field("_id"), Some(&FieldType::Int64));
        assert_eq!(schema.field("b"), Some(&FieldType::Json));
        let Some(FieldType::Document(a)) = schema.field("a") else {
            panic!("a is a document");
        };
        assert_eq!(a.get("x"), Some(&FieldType::Int64));
        assert_eq!(a.get("y"), Some(&FieldType::Int32));
        assert!(!schema.arrow().field(0).is_nullable());
        assert_eq!(type_of(RawBsonRef::Int32(1)), FieldType::Int32);
    }

    #[test]
    fn declared_only_keeps_id_and_the_declarations() {
        let mut inference = Inference::default();
        inference.add(&rawdoc! { "b": 1_i32, "z": 2_i32 });
        let declared = BTreeMap::from([("z".to_owned(), FieldType::Int64)]);
        let schema = inference.into_schema(&declared, true);
        let names: Vec<&str> = schema.columns().iter().map(|(n, _)| n.as_str()).collect();
        assert_eq!(names, ["_id", "z"]);
    }

    #[test]
    fn conflicts_are_reported_by_path() {
        let mut inference = Inference::default();
        inference.add(&rawdoc! { "a": { "x": 1_i32 }, "t": [1_i32], "ok": 1_i32 });
        inference.add(&rawdoc! { "a": { "x": "s" }, "t": ["s"], "ok": 2_i64 });
        assert_eq!(Inference::conflicts(&inference.fields), ["a.x", "t"]);
    }
}
