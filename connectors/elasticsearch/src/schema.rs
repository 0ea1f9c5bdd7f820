//! An index's mapping read as a relation: which fields there are, and how each reads.

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field as ArrowField, Fields, Schema, TimeUnit};
use serde_json::{Map, Value};

use crate::dates::DateFormats;

/// One field of an index, as polygate reads it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Field {
    /// The field's key in `_source` (one step of its path).
    pub name: String,
    pub kind: Kind,
    /// Read as a list: declared in catalog.toml, seen as an array in the sample, or nested.
    pub list: bool,
    /// Whether what the cluster indexes for the field is exactly its `_source` value, so that
    /// queries and sorts on it mean what SQL means. Not so for a field with a `null_value`
    /// (a null is indexed as that value), `index: false`, or one that other fields `copy_to`
    /// (it is searchable by values its `_source` does not hold).
    pub searchable: bool,
}

/// How a field's values read.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Kind {
    /// keyword, constant_keyword, wildcard, version: exact strings. `ignore_above` values
    /// longer than it are kept in `_source` but not indexed.
    Keyword {
        ignore_above: Option<u32>,
    },
    /// text, match_only_text: analysed. `exact` names a keyword sub-field (`keyword` in
    /// `title.keyword`) that indexes the same value unchanged.
    Text {
        exact: Option<ExactField>,
    },
    Integer(IntegerWidth),
    /// unsigned_long: up to 2^64 - 1.
    UnsignedLong,
    /// float and half_float.
    Float,
    /// double and scaled_float (whose `_source` keeps the value as sent).
    Double {
        /// scaled_float: indexed rounded to its scaling factor, so that the cluster sorts by
        /// a value other than the one read.
        scaled: bool,
    },
    Boolean,
    /// date (milliseconds) or date_nanos, with the formats `_source` strings are in.
    Date {
        formats: DateFormats,
        nanos: bool,
    },
    Ip,
    /// An object: its fields, by name.
    Object(Vec<Field>),
    /// A geo_point: reads as `{lat, lon}` whatever form `_source` holds.
    GeoPoint,
    /// Read as JSON text: declared so, or a type polygate has no column type for.
    Json {
        mapping_type: String,
    },
}

/// A keyword sub-field of a text field.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct ExactField {
    pub name: String,
    pub ignore_above: Option<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq)]
pub(crate) enum IntegerWidth {
    Byte,
    Short,
    Integer,
    Long,
}

impl Field {
    /// The Arrow type of the column this field reads as.
    pub fn data_type(&self) -> DataType {
        let scalar = self.kind.data_type();
        if self.list {
            DataType::List(Arc::new(ArrowField::new("item", scalar, true)))
        } else {
            scalar
        }
    }

    pub fn arrow_field(&self) -> ArrowField {
        ArrowField::new(&self.name, self.data_type(), true)
    }
}

impl Kind {
    pub fn data_type(&self) -> DataType {
        match self {
            Kind::Keyword { .. } | Kind::Text { .. } | Kind::Ip | Kind::Json { .. } => {
                DataType::Utf8
            }
            Kind::Integer(IntegerWidth::Byte) => DataType::Int8,
            Kind::Integer(IntegerWidth::Short) => DataType::Int16,
            Kind::Integer(IntegerWidth::Integer) => DataType::Int32,
            Kind::Integer(IntegerWidth::Long) => DataType::Int64,
            Kind::UnsignedLong => DataType::UInt64,
            Kind::Float => DataType::Float32,
            Kind::Double { .. } => DataType::Float64,
            Kind::Boolean => DataType::Boolean,
            Kind::Date { nanos: false, .. } => {
                DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
            }
            Kind::Date { nanos: true, .. } => {
                DataType::Timestamp(TimeUnit::Nanosecond, Some("UTC".into()))
            }
            Kind::Object(fields) => DataType::Struct(struct_fields(fields)),
            Kind::GeoPoint => DataType::Struct(Fields::from(vec![
                ArrowField::new("lat", DataType::Float64, true),
                ArrowField::new("lon", DataType::Float64, true),
            ])),
        }
    }
}

fn struct_fields(fields: &[Field]) -> Fields {
    fields.iter().map(Field::arrow_field).collect()
}

/// How many metadata columns come before an index's fields: `_id`, `_index`, `_score`.
pub(crate) const METADATA_COLUMNS: usize = 3;

/// The Arrow schema of an index whose fields are `fields`: `_id`, `_index`, `_score` (the
/// relevance of a full-text search, NULL without one), then the fields
/// in name order.
pub(crate) fn arrow_schema(fields: &[Field]) -> Schema {
    let mut columns = vec![
        ArrowField::new("_id", DataType::Utf8, false),
        ArrowField::new("_index", DataType::Utf8, false),
        ArrowField::new("_score", DataType::Float32, true),
    ];
    columns.extend(fields.iter().map(Field::arrow_field));
    Schema::new(columns)
}

/// What catalog.toml says about an index's fields.
#[derive(Debug, Clone, Default)]
pub(crate) struct Overrides {
    /// Dotted paths read as lists.
    pub arrays: Vec<String>,
    /// Dotted paths read as JSON text.
    pub json: Vec<String>,
    /// Date formats by dotted path.
    pub date_formats: Vec<(String, DateFormats)>,
}

/// A mapping type polygate reads as JSON text, for a notice.
#[derive(Debug, Clone, PartialEq)]
pub(crate) struct Unsupported {
    pub path: String,
    pub mapping_type: String,
}

/// Reads the `properties` of a mapping into fields, sorted by name. Types polygate has no
/// column type for read as JSON text and are listed in `unsupported`; nothing is dropped.
pub(crate) fn fields(
    properties: &Map<String, Value>,
    overrides: &Overrides,
    unsupported: &mut Vec<Unsupported>,
) -> Result<Vec<Field>, String> {
    let mut copied = HashSet::new();
    copy_targets(properties, &mut copied);
    let context = Context {
        overrides,
        copied: &copied,
    };
    read_properties(properties, "", &context, unsupported)
}

/// What reading one mapping's fields consults.
struct Context<'a> {
    overrides: &'a Overrides,
    /// The paths other fields `copy_to`.
    copied: &'a HashSet<String>,
}

/// Collects the `copy_to` targets of every field and sub-field of `properties`.
fn copy_targets(properties: &Map<String, Value>, targets: &mut HashSet<String>) {
    for mapping in properties.values().filter_map(Value::as_object) {
        match mapping.get("copy_to") {
            Some(Value::String(target)) => {
                targets.insert(target.clone());
            }
            Some(Value::Array(list)) => {
                targets.extend(list.iter().filter_map(Value::as_str).map(str::to_owned));
            }
            _ => {}
        }
        for key in ["properties", "fields"] {
            if let Some(Value::Object(inner)) = mapping.get(key) {
                copy_targets(inner, targets);
            }
        }
    }
}

fn read_properties(
    properties: &Map<String, Value>,
    prefix: &str,
    context: &Context,
    unsupported: &mut Vec<Unsupported>,
) -> Result<Vec<Field>, String> {
    let mut fields = Vec::with_capacity(properties.len());
    for (name, mapping) in properties {
        let path = format!("{prefix}{name}");
        if let Some(field) = read_field(name, &path, mapping, context, unsupported)? {
            fields.push(field);
        }
    }
    fields.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(fields)
}

fn read_field(
    name: &str,
    path: &str,
    mapping: &Value,
    context: &Context,
    unsupported: &mut Vec<Unsupported>,
) -> Result<Option<Field>, String> {
    let overrides = context.overrides;
    let mapping = mapping
        .as_object()
        .ok_or_else(|| format!("the mapping of {path} is not an object"))?;
    let searchable = !mapping.contains_key("null_value")
        && mapping.get("index") != Some(&Value::Bool(false))
        && !context.copied.contains(path);
    // An object's type is implicit when it has properties.
    let mapping_type = match mapping.get("type") {
        Some(Value::String(t)) => t.as_str(),
        Some(_) => return Err(format!("the type of {path} is not a string")),
        None if mapping.contains_key("properties") => "object",
        None => return Err(format!("{path} has neither a type nor properties")),
    };
    let listed = overrides.arrays.iter().any(|p| p == path);
    if overrides.json.iter().any(|p| p == path) {
        return Ok(Some(Field {
            name: name.to_owned(),
            kind: Kind::Json {
                mapping_type: mapping_type.to_owned(),
            },
            list: listed,
            searchable,
        }));
    }
    let ignore_above = || {
        mapping
            .get("ignore_above")
            .and_then(Value::as_u64)
            .map(|n| n.min(u64::from(u32::MAX)) as u32)
    };
    let kind = match mapping_type {
        // An alias is another name for a field that is already a column.
        "alias" => return Ok(None),
        "keyword" | "constant_keyword" | "wildcard" => Kind::Keyword {
            ignore_above: if mapping.contains_key("normalizer") {
                // A normalized keyword indexes a changed value: treat it like text.
                return Ok(Some(Field {
                    name: name.to_owned(),
                    kind: Kind::Text { exact: None },
                    list: listed,
                    searchable,
                }));
            } else {
                ignore_above()
            },
        },
        "text" | "match_only_text" => Kind::Text {
            exact: exact_subfield(mapping),
        },
        // Versions compare as semantic versions, not as strings.
        "version" => Kind::Text { exact: None },
        "long" => Kind::Integer(IntegerWidth::Long),
        "integer" => Kind::Integer(IntegerWidth::Integer),
        "short" => Kind::Integer(IntegerWidth::Short),
        "byte" => Kind::Integer(IntegerWidth::Byte),
        "unsigned_long" => Kind::UnsignedLong,
        "float" | "half_float" => Kind::Float,
        "double" => Kind::Double { scaled: false },
        "scaled_float" => Kind::Double { scaled: true },
        "boolean" => Kind::Boolean,
        "date" | "date_nanos" => {
            let declared = overrides
                .date_formats
                .iter()
                .find(|(p, _)| p == path)
                .map(|(_, f)| f.clone());
            let formats = match declared {
                Some(formats) => formats,
                None => match mapping.get("format").and_then(Value::as_str) {
                    Some(text) => DateFormats::parse(text)
                        .map_err(|e| format!("the date format of {path}: {e}"))?,
                    None => DateFormats::default_for_mapping(),
                },
            };
            Kind::Date {
                formats,
                nanos: mapping_type == "date_nanos",
            }
        }
        "ip" => Kind::Ip,
        "object" => {
            let properties = match mapping.get("properties") {
                Some(Value::Object(p)) => p.clone(),
                _ => Map::new(),
            };
            if mapping.get("enabled") == Some(&Value::Bool(false)) || properties.is_empty() {
                // Not indexed, or no fields known: its contents read as JSON.
                Kind::Json {
                    mapping_type: "object".to_owned(),
                }
            } else {
                Kind::Object(read_properties(
                    &properties,
                    &format!("{path}."),
                    context,
                    unsupported,
                )?)
            }
        }
        "nested" => {
            let properties = match mapping.get("properties") {
                Some(Value::Object(p)) => p.clone(),
                _ => Map::new(),
            };
            let kind = if properties.is_empty() {
                Kind::Json {
                    mapping_type: "nested".to_owned(),
                }
            } else {
                Kind::Object(read_properties(
                    &properties,
                    &format!("{path}."),
                    context,
                    unsupported,
                )?)
            };
            return Ok(Some(Field {
                name: name.to_owned(),
                kind,
                list: true,
                searchable,
            }));
        }
        "geo_point" => Kind::GeoPoint,
        other => {
            unsupported.push(Unsupported {
                path: path.to_owned(),
                mapping_type: other.to_owned(),
            });
            Kind::Json {
                mapping_type: other.to_owned(),
            }
        }
    };
    Ok(Some(Field {
        name: name.to_owned(),
        kind,
        list: listed,
        searchable,
    }))
}

/// The keyword sub-field of a text field that holds its values unchanged: no normalizer.
/// `keyword` is preferred when there are several.
fn exact_subfield(mapping: &Map<String, Value>) -> Option<ExactField> {
    let Some(Value::Object(subfields)) = mapping.get("fields") else {
        return None;
    };
    let mut candidates: Vec<ExactField> = subfields
        .iter()
        .filter_map(|(name, sub)| {
            let sub = sub.as_object()?;
            let plain = sub.get("type").and_then(Value::as_str) == Some("keyword")
                && !sub.contains_key("normalizer")
                && !sub.contains_key("null_value")
                && sub.get("index") != Some(&Value::Bool(false));
            plain.then(|| ExactField {
                name: name.clone(),
                ignore_above: sub
                    .get("ignore_above")
                    .and_then(Value::as_u64)
                    .map(|n| n.min(u64::from(u32::MAX)) as u32),
            })
        })
        .collect();
    candidates.sort_by_key(|c| (c.name != "keyword", c.name.clone()));
    candidates.into_iter().next()
}

/// Marks the fields at `paths` (dotted) as lists: the fields a sample saw arrays in.
pub(crate) fn mark_lists(fields: &mut [Field], paths: &[String]) {
    for path in paths {
        mark_list(fields, path);
    }
}

fn mark_list(fields: &mut [Field], path: &str) {
    for field in fields.iter_mut() {
        if path == field.name {
            field.list = true;
            return;
        }
        if let Some(rest) = path
            .strip_prefix(field.name.as_str())
            .and_then(|r| r.strip_prefix('.'))
            && let Kind::Object(children) = &mut field.kind
        {
            mark_list(children, rest);
            return;
        }
    }
}

/// The dotted paths of `source` (a document's `_source`) that hold arrays, below objects
/// too, added to `found`. Arrays of objects are reported, and their objects searched.
pub(crate) fn array_paths(source: &Map<String, Value>, prefix: &str, found: &mut Vec<String>) {
    for (key, value) in source {
        let path = format!("{prefix}{key}");
        match value {
            Value::Array(items) => {
                if !found.contains(&path) {
                    found.push(path.clone());
                }
                for item in items {
                    if let Value::Object(inner) = item {
                        array_paths(inner, &format!("{path}."), found);
                    }
                }
            }
            Value::Object(inner) => array_paths(inner, &format!("{path}."), found),
            _ => {}
        }
    }
}

#[cfg(test)]
mod tests;
