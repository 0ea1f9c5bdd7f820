//! Mappings into fields: every type, sub-fields, objects, and what is not searchable.

use serde_json::json;

use super::*;

fn read(properties: Value, overrides: &Overrides) -> (Vec<Field>, Vec<Unsupported>) {
    let mut unsupported = Vec::new();
    let fields = fields(properties.as_object().unwrap(), overrides, &mut unsupported).unwrap();
    (fields, unsupported)
}

fn types(fields: &[Field]) -> Vec<(String, DataType)> {
    fields
        .iter()
        .map(|f| (f.name.clone(), f.data_type()))
        .collect()
}

fn list(item: DataType) -> DataType {
    DataType::List(Arc::new(ArrowField::new("item", item, true)))
}

#[test]
fn every_mapped_type_has_a_column_type() {
    let (fields, unsupported) = read(
        json!({
            "k": {"type": "keyword"}, "ck": {"type": "constant_keyword"},
            "t": {"type": "text"}, "l": {"type": "long"}, "i": {"type": "integer"},
            "s": {"type": "short"}, "b": {"type": "byte"}, "u": {"type": "unsigned_long"},
            "d": {"type": "double"}, "f": {"type": "float"}, "hf": {"type": "half_float"},
            "sf": {"type": "scaled_float", "scaling_factor": 100},
            "bo": {"type": "boolean"}, "dt": {"type": "date"}, "dn": {"type": "date_nanos"},
            "ip": {"type": "ip"}, "g": {"type": "geo_point"},
            "o": {"properties": {"a": {"type": "keyword"}, "n": {"properties": {"z": {"type": "long"}}}}},
            "ne": {"type": "nested", "properties": {"x": {"type": "integer"}}},
            "off": {"type": "object", "enabled": false},
            "al": {"type": "alias", "path": "k"},
            "shape": {"type": "geo_shape"},
        }),
        &Overrides::default(),
    );
    let utc = |unit| DataType::Timestamp(unit, Some("UTC".into()));
    let point = DataType::Struct(Fields::from(vec![
        ArrowField::new("lat", DataType::Float64, true),
        ArrowField::new("lon", DataType::Float64, true),
    ]));
    let nested_z = DataType::Struct(Fields::from(vec![ArrowField::new(
        "z",
        DataType::Int64,
        true,
    )]));
    let object = DataType::Struct(Fields::from(vec![
        ArrowField::new("a", DataType::Utf8, true),
        ArrowField::new("n", nested_z, true),
    ]));
    let nested = list(DataType::Struct(Fields::from(vec![ArrowField::new(
        "x",
        DataType::Int32,
        true,
    )])));
    let expected: Vec<(String, DataType)> = [
        ("b", DataType::Int8),
        ("bo", DataType::Boolean),
        ("ck", DataType::Utf8),
        ("d", DataType::Float64),
        ("dn", utc(TimeUnit::Nanosecond)),
        ("dt", utc(TimeUnit::Millisecond)),
        ("f", DataType::Float32),
        ("g", point),
        ("hf", DataType::Float32),
        ("i", DataType::Int32),
        ("ip", DataType::Utf8),
        ("k", DataType::Utf8),
        ("l", DataType::Int64),
        ("ne", nested),
        ("o", object),
        ("off", DataType::Utf8),
        ("s", DataType::Int16),
        ("sf", DataType::Float64),
        ("shape", DataType::Utf8),
        ("t", DataType::Utf8),
        ("u", DataType::UInt64),
    ]
    .into_iter()
    .map(|(n, t)| (n.to_owned(), t))
    .collect();
    assert_eq!(types(&fields), expected);
    // The alias is not a second column; the unknown type is kept, as JSON, with a notice.
    assert_eq!(
        unsupported,
        vec![Unsupported {
            path: "shape".into(),
            mapping_type: "geo_shape".into()
        }]
    );
}

#[test]
fn a_text_field_finds_its_plain_keyword_subfield() {
    let (fields, _) = read(
        json!({
            "plain": {"type": "text"},
            "multi": {"type": "text", "fields": {"keyword": {"type": "keyword", "ignore_above": 256}}},
            "other": {"type": "text", "fields": {"raw": {"type": "keyword"}, "en": {"type": "text"}}},
            "normalized": {"type": "text", "fields": {"lower": {"type": "keyword", "normalizer": "lowercase"}}},
            "nk": {"type": "keyword", "normalizer": "lowercase"},
        }),
        &Overrides::default(),
    );
    let kinds: Vec<(&str, &Kind)> = fields.iter().map(|f| (f.name.as_str(), &f.kind)).collect();
    assert_eq!(
        kinds,
        vec![
            (
                "multi",
                &Kind::Text {
                    exact: Some(ExactField {
                        name: "keyword".into(),
                        ignore_above: Some(256)
                    })
                }
            ),
            ("nk", &Kind::Text { exact: None }),
            ("normalized", &Kind::Text { exact: None }),
            (
                "other",
                &Kind::Text {
                    exact: Some(ExactField {
                        name: "raw".into(),
                        ignore_above: None
                    })
                }
            ),
            ("plain", &Kind::Text { exact: None }),
        ]
    );
}

#[test]
fn catalog_overrides_make_lists_json_and_date_formats() {
    let overrides = Overrides {
        arrays: vec!["tags".into(), "o.a".into()],
        json: vec!["payload".into()],
        date_formats: vec![(
            "day".into(),
            crate::dates::DateFormats::parse("dd/MM/yyyy").unwrap(),
        )],
    };
    let (fields, _) = read(
        json!({
            "tags": {"type": "keyword"},
            "o": {"properties": {"a": {"type": "keyword"}}},
            "payload": {"properties": {"x": {"type": "long"}}},
            "day": {"type": "date", "format": "yyyy-MM-dd"},
        }),
        &overrides,
    );
    let object = DataType::Struct(Fields::from(vec![ArrowField::new(
        "a",
        list(DataType::Utf8),
        true,
    )]));
    assert_eq!(
        types(&fields),
        vec![
            (
                "day".to_owned(),
                DataType::Timestamp(TimeUnit::Millisecond, Some("UTC".into()))
            ),
            ("o".to_owned(), object),
            ("payload".to_owned(), DataType::Utf8),
            ("tags".to_owned(), list(DataType::Utf8)),
        ]
    );
    let Kind::Date { formats, .. } = &fields[0].kind else {
        panic!("day is not a date");
    };
    assert!(formats.string_nanos("02/01/2024").is_ok());
    assert!(formats.string_nanos("2024-01-02").is_err());
}

#[test]
fn arrays_seen_in_a_sample_make_lists() {
    let (mut fields, _) = read(
        json!({
            "n": {"type": "long"},
            "o": {"properties": {"a": {"type": "keyword"}, "b": {"type": "keyword"}}},
        }),
        &Overrides::default(),
    );
    let mut found = Vec::new();
    array_paths(
        json!({"n": [1, 2], "o": {"a": ["x"], "b": "y"}})
            .as_object()
            .unwrap(),
        "",
        &mut found,
    );
    array_paths(json!({"o.b": ["z"]}).as_object().unwrap(), "", &mut found);
    assert_eq!(found, vec!["n", "o.a", "o.b"]);
    mark_lists(&mut fields, &found);
    assert!(fields[0].list);
    let Kind::Object(children) = &fields[1].kind else {
        panic!("o is not an object");
    };
    assert!(children.iter().all(|c| c.list));
}

#[test]
fn malformed_mappings_are_errors_naming_the_field() {
    let mut unsupported = Vec::new();
    let properties = json!({"o": {"properties": {"bad": {"index": false}}}});
    let error = fields(
        properties.as_object().unwrap(),
        &Overrides::default(),
        &mut unsupported,
    )
    .unwrap_err();
    assert!(error.contains("o.bad"), "{error}");
}

#[test]
fn fields_indexed_unlike_their_source_are_not_searchable() {
    let (fields, _) = read(
        json!({
            "plain": {"type": "keyword"},
            "defaulted": {"type": "keyword", "null_value": "NULL"},
            "unindexed": {"type": "long", "index": false},
            "first": {"type": "text", "copy_to": "full"},
            "full": {"type": "text"},
            "o": {"properties": {"a": {"type": "keyword", "copy_to": ["o.b"]}, "b": {"type": "keyword"}}},
            "v": {"type": "version"},
        }),
        &Overrides::default(),
    );
    let searchable = |fields: &[Field]| -> Vec<(String, bool)> {
        fields
            .iter()
            .map(|f| (f.name.clone(), f.searchable))
            .collect()
    };
    let expected = [
        ("defaulted", false),
        ("first", true),
        ("full", false),
        ("o", true),
        ("plain", true),
        ("unindexed", false),
        ("v", true),
    ];
    let expected: Vec<(String, bool)> = expected.iter().map(|(n, s)| ((*n).into(), *s)).collect();
    assert_eq!(searchable(&fields), expected);
    let Kind::Object(children) = &fields[3].kind else {
        panic!("o is an object");
    };
    assert_eq!(
        searchable(children),
        vec![("a".into(), true), ("b".into(), false)]
    );
    // Versions order as semantic versions: no comparison is pushed on them.
    assert_eq!(fields[6].kind, Kind::Text { exact: None });
}
