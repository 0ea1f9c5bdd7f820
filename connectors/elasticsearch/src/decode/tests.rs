//! `_source` JSON into Arrow: every field kind, and the errors for values a column cannot hold.

use datafusion::arrow::array::{Array, AsArray};
use datafusion::arrow::datatypes::{Float64Type, Int32Type, Int64Type, TimestampMillisecondType};
use serde_json::json;

use super::*;
use crate::dates::DateFormats;

fn field(name: &str, kind: Kind, list: bool) -> Field {
    Field {
        name: name.to_owned(),
        kind,
        list,
        searchable: true,
    }
}

fn decode(fields: &[Field], documents: &[Value]) -> Result<Vec<ArrayRef>, DecodeError> {
    let mut decoder = RecordDecoder::new("", fields);
    for document in documents {
        decoder.append(document.as_object().unwrap())?;
    }
    Ok(decoder.finish())
}

#[test]
fn values_read_as_the_cluster_indexes_them() {
    let fields = [
        field("k", Kind::Keyword { ignore_above: None }, false),
        field("n", Kind::Integer(IntegerWidth::Long), false),
        field("i", Kind::Integer(IntegerWidth::Integer), false),
        field("b", Kind::Boolean, false),
        field(
            "d",
            Kind::Date {
                formats: DateFormats::parse("yyyy/MM/dd||epoch_millis").unwrap(),
                nanos: false,
            },
            false,
        ),
    ];
    let arrays = decode(
        &fields,
        &[
            json!({"k": "x", "n": 1, "i": 7, "b": true, "d": "2024/01/02"}),
            json!({"k": 5, "n": "42", "i": 7.9, "b": "false", "d": 1_700_000_000_000i64}),
            json!({"k": [], "n": [3], "i": null}),
        ],
    )
    .unwrap();
    let k = arrays[0].as_string::<i32>();
    assert_eq!((k.value(0), k.value(1), k.is_null(2)), ("x", "5", true));
    let n = arrays[1].as_primitive::<Int64Type>();
    assert_eq!((n.value(0), n.value(1), n.value(2)), (1, 42, 3));
    let i = arrays[2].as_primitive::<Int32Type>();
    assert_eq!((i.value(0), i.value(1), i.is_null(2)), (7, 7, true));
    let b = arrays[3].as_boolean();
    assert_eq!((b.value(0), b.value(1), b.is_null(2)), (true, false, true));
    let d = arrays[4].as_primitive::<TimestampMillisecondType>();
    assert_eq!(
        (d.value(0), d.value(1), d.is_null(2)),
        (1_704_153_600_000, 1_700_000_000_000, true)
    );
}

#[test]
fn dotted_keys_objects_lists_and_points() {
    let object = Kind::Object(vec![
        field("a", Kind::Keyword { ignore_above: None }, false),
        field("z", Kind::Integer(IntegerWidth::Long), false),
    ]);
    let fields = [
        field("o", object.clone(), false),
        field("tags", Kind::Keyword { ignore_above: None }, true),
        field("ne", object, true),
        field("g", Kind::GeoPoint, false),
    ];
    let arrays = decode(
        &fields,
        &[
            json!({"o": {"a": "x", "z": 1}, "tags": ["p", "q"], "ne": [{"a": "m"}, {"z": 2}],
                   "g": {"lat": 1.5, "lon": 2.5}}),
            json!({"o.a": "y", "tags": "solo", "ne": {"a": "one"}, "g": "3.5,4.5"}),
            json!({"g": [6.5, 5.5]}),
            json!({"g": "POINT (8.5 7.5)"}),
            json!({"g": "s0"}),
        ],
    )
    .unwrap();
    let o = arrays[0].as_struct();
    assert_eq!(o.column(0).as_string::<i32>().value(1), "y");
    assert!(o.column(1).is_null(1));
    assert!(o.is_null(2));
    let tags = arrays[1].as_list::<i32>();
    assert_eq!(tags.value_length(0), 2);
    assert_eq!(tags.value(1).as_string::<i32>().value(0), "solo");
    assert!(tags.is_null(2));
    let ne = arrays[2].as_list::<i32>();
    assert_eq!((ne.value_length(0), ne.value_length(1)), (2, 1));
    let points = arrays[3].as_struct();
    let (lat, lon) = (
        points.column(0).as_primitive::<Float64Type>(),
        points.column(1).as_primitive::<Float64Type>(),
    );
    let read: Vec<(f64, f64)> = (0..4).map(|i| (lat.value(i), lon.value(i))).collect();
    assert_eq!(read, vec![(1.5, 2.5), (3.5, 4.5), (5.5, 6.5), (7.5, 8.5)]);
    // "s0" is a cell of about 5.6 x 5.6 degrees whose corner is (0, 0).
    assert!((0.0..5.7).contains(&lat.value(4)) && (0.0..5.7).contains(&lon.value(4)));
}

#[test]
fn values_that_do_not_fit_are_errors_naming_the_field() {
    let fields = [
        field("n", Kind::Integer(IntegerWidth::Integer), false),
        field(
            "o",
            Kind::Object(vec![field("x", Kind::Boolean, false)]),
            false,
        ),
    ];
    let error = |document: Value| decode(&fields, &[document]).unwrap_err();
    assert_eq!(error(json!({"n": "abc"})).path, "n");
    assert_eq!(error(json!({"n": 3_000_000_000i64})).path, "n");
    let array = error(json!({"n": [1, 2]}));
    assert!(array.message.contains("arrays"), "{}", array.message);
    assert_eq!(error(json!({"o": {"x": "maybe"}})).path, "o.x");
    assert_eq!(error(json!({"o": 1})).path, "o");
}

#[test]
fn json_columns_keep_the_value_as_text() {
    let fields = [field(
        "p",
        Kind::Json {
            mapping_type: "flattened".to_owned(),
        },
        false,
    )];
    let arrays = decode(&fields, &[json!({"p": {"a": [1, "two"]}})]).unwrap();
    assert_eq!(arrays[0].as_string::<i32>().value(0), r#"{"a":[1,"two"]}"#);
}
