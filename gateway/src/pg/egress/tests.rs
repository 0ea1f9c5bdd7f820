//! The egress encoders against arrow-pg's: the same bytes for every type and format.

use std::sync::Arc;

use arrow_pg::datatypes::{arrow_schema_to_pg_fields, encode_recordbatch};
use datafusion::arrow::array::{
    ArrayRef, BinaryArray, BooleanArray, Date32Array, Decimal128Array, Float32Array, Float64Array,
    Int16Array, Int32Array, Int64Array, LargeStringArray, ListArray, StringArray, StringViewArray,
    TimestampMicrosecondArray, TimestampMillisecondArray,
};
use datafusion::arrow::datatypes::{Field, Int32Type, Schema};
use datafusion::arrow::record_batch::RecordBatch;
use pgwire::api::Type;
use pgwire::api::portal::Format;
use pgwire::types::format::FormatOptions;

use super::*;

/// Every kind of column, fast and not, with NULLs and edge values.
fn batch() -> RecordBatch {
    let columns: Vec<(&str, ArrayRef)> = vec![
        (
            "i2",
            Arc::new(Int16Array::from(vec![
                Some(i16::MIN),
                None,
                Some(0),
                Some(i16::MAX),
            ])),
        ),
        (
            "i4",
            Arc::new(Int32Array::from(vec![
                Some(-1),
                Some(i32::MAX),
                None,
                Some(i32::MIN),
            ])),
        ),
        (
            "i8",
            Arc::new(Int64Array::from(vec![
                Some(i64::MIN),
                Some(42),
                Some(i64::MAX),
                None,
            ])),
        ),
        (
            "b",
            Arc::new(BooleanArray::from(vec![
                Some(true),
                Some(false),
                None,
                Some(true),
            ])),
        ),
        (
            "t",
            Arc::new(StringArray::from(vec![
                Some("ünïcödé"),
                Some(""),
                None,
                Some("a\tb\"c"),
            ])),
        ),
        (
            "lt",
            Arc::new(LargeStringArray::from(vec![
                Some("large"),
                None,
                Some(""),
                Some("x"),
            ])),
        ),
        (
            "vt",
            Arc::new(StringViewArray::from(vec![
                Some("a string longer than twelve bytes"),
                Some("short"),
                None,
                Some(""),
            ])),
        ),
        (
            "f4",
            Arc::new(Float32Array::from(vec![
                Some(1.5),
                Some(f32::NAN),
                Some(-0.0),
                None,
            ])),
        ),
        (
            "f8",
            Arc::new(Float64Array::from(vec![
                Some(0.1),
                Some(f64::INFINITY),
                None,
                Some(1e308),
            ])),
        ),
        (
            "d",
            Arc::new(Date32Array::from(vec![
                Some(0),
                Some(10_957),
                None,
                Some(-719_162),
            ])),
        ),
        (
            "ts",
            Arc::new(TimestampMicrosecondArray::from(vec![
                Some(0),
                None,
                Some(1_709_294_400_123_456),
                Some(-62_135_596_800_000_000),
            ])),
        ),
        (
            "tz",
            Arc::new(
                TimestampMicrosecondArray::from(vec![
                    Some(1),
                    Some(-1),
                    None,
                    Some(946_684_800_000_000),
                ])
                .with_timezone("UTC"),
            ),
        ),
        (
            "tms",
            Arc::new(TimestampMillisecondArray::from(vec![
                Some(1),
                None,
                Some(2),
                Some(3),
            ])),
        ),
        (
            "n",
            Arc::new(
                Decimal128Array::from(vec![Some(12_345), None, Some(-1), Some(0)])
                    .with_precision_and_scale(10, 2)
                    .expect("decimal"),
            ),
        ),
        (
            "by",
            Arc::new(BinaryArray::from(vec![
                Some(&b"\x00\xff"[..]),
                None,
                Some(&b""[..]),
                Some(&b"abc"[..]),
            ])),
        ),
        (
            "ai",
            Arc::new(ListArray::from_iter_primitive::<Int32Type, _, _>(vec![
                Some(vec![Some(1), None]),
                None,
                Some(vec![]),
                Some(vec![Some(3)]),
            ])),
        ),
    ];
    let schema = Schema::new(
        columns
            .iter()
            .map(|(name, array)| Field::new(*name, array.data_type().clone(), true))
            .collect::<Vec<_>>(),
    );
    RecordBatch::try_new(
        Arc::new(schema),
        columns.into_iter().map(|(_, a)| a).collect(),
    )
    .expect("batch")
}

#[test]
fn rows_are_byte_for_byte_those_of_arrow_pg_in_both_formats() {
    let batch = batch();
    for format in [Format::UnifiedText, Format::UnifiedBinary] {
        let fields = Arc::new(
            arrow_schema_to_pg_fields(
                batch.schema().as_ref(),
                &format,
                Some(Arc::new(FormatOptions::default())),
            )
            .expect("fields"),
        );
        let expected: Vec<DataRow> = encode_recordbatch(Arc::clone(&fields), batch.clone())
            .collect::<PgWireResult<_>>()
            .expect("arrow-pg encodes");
        let actual = encode_batch(&fields, &batch).expect("encodes");
        assert_eq!(actual.len(), expected.len());
        for (row, (actual, expected)) in actual.iter().zip(&expected).enumerate() {
            assert_eq!(
                actual.field_count, expected.field_count,
                "{format:?} row {row}"
            );
            assert_eq!(actual.data, expected.data, "{format:?} row {row}");
        }
    }
}

#[test]
fn an_empty_batch_has_no_rows_and_a_mismatched_one_is_an_error() {
    let batch = batch();
    let fields = Arc::new(
        arrow_schema_to_pg_fields(batch.schema().as_ref(), &Format::UnifiedText, None)
            .expect("fields"),
    );
    assert!(
        encode_batch(&fields, &batch.slice(0, 0))
            .expect("encodes")
            .is_empty()
    );
    let fewer = Arc::new(fields[..2].to_vec());
    assert!(encode_batch(&fewer, &batch).is_err());
}

#[test]
fn documents_and_lists_of_documents_are_jsonb() {
    use datafusion::arrow::array::StructArray;
    use datafusion::arrow::buffer::OffsetBuffer;
    use datafusion::arrow::datatypes::Fields;

    let address = StructArray::from(vec![
        (
            Arc::new(Field::new("city", DataType::Utf8, true)),
            Arc::new(StringArray::from(vec![Some("Paris"), None, Some("Oslo")])) as ArrayRef,
        ),
        (
            Arc::new(Field::new("zip", DataType::Int32, true)),
            Arc::new(Int32Array::from(vec![Some(75001), Some(1), None])) as ArrayRef,
        ),
    ]);
    let item_fields = Fields::from(vec![Field::new("n", DataType::Int64, true)]);
    let items = StructArray::new(
        item_fields.clone(),
        vec![Arc::new(Int64Array::from(vec![1, 2, 3])) as ArrayRef],
        None,
    );
    let list = ListArray::new(
        Arc::new(Field::new("item", DataType::Struct(item_fields), true)),
        OffsetBuffer::from_lengths([2, 0, 1]),
        Arc::new(items),
        Some(vec![true, true, false].into()),
    );
    let schema = Schema::new(vec![
        Field::new("id", DataType::Int32, false),
        Field::new("addr", address.data_type().clone(), true),
        Field::new("items", list.data_type().clone(), true),
    ]);
    let batch = RecordBatch::try_new(
        Arc::new(schema),
        vec![
            Arc::new(Int32Array::from(vec![1, 2, 3])),
            Arc::new(address),
            Arc::new(list),
        ],
    )
    .expect("batch");

    let text =
        Arc::new(pg_fields(batch.schema().as_ref(), &Format::UnifiedText, None).expect("fields"));
    let types: Vec<_> = text.iter().map(|f| f.datatype().clone()).collect();
    assert_eq!(types, [Type::INT4, Type::JSONB, Type::JSONB]);
    let rows = encode_batch(&text, &batch).expect("encodes");
    let values: Vec<Vec<Option<String>>> = rows.iter().map(decode).collect();
    assert_eq!(
        values,
        [
            vec![
                Some("1".into()),
                Some(r#"{"city":"Paris","zip":75001}"#.into()),
                Some(r#"[{"n":1},{"n":2}]"#.into())
            ],
            vec![
                Some("2".into()),
                Some(r#"{"zip":1}"#.into()),
                Some("[]".into())
            ],
            vec![Some("3".into()), Some(r#"{"city":"Oslo"}"#.into()), None],
        ]
    );

    let binary =
        Arc::new(pg_fields(batch.schema().as_ref(), &Format::UnifiedBinary, None).expect("fields"));
    let rows = encode_batch(&binary, &batch).expect("encodes");
    let first = decode_raw(&rows[0]);
    assert_eq!(
        first[1].as_deref(),
        Some(&b"\x01{\"city\":\"Paris\",\"zip\":75001}"[..])
    );
}

/// The values of a DataRow, raw.
fn decode_raw(row: &DataRow) -> Vec<Option<Vec<u8>>> {
    let mut data = &row.data[..];
    let mut values = Vec::new();
    for _ in 0..row.field_count {
        let length = i32::from_be_bytes([data[0], data[1], data[2], data[3]]);
        data = &data[4..];
        if length < 0 {
            values.push(None);
        } else {
            let (value, rest) = data.split_at(length as usize);
            values.push(Some(value.to_vec()));
            data = rest;
        }
    }
    values
}

/// The values of a DataRow in text format.
fn decode(row: &DataRow) -> Vec<Option<String>> {
    decode_raw(row)
        .into_iter()
        .map(|v| v.map(|v| String::from_utf8(v).expect("utf-8")))
        .collect()
}
