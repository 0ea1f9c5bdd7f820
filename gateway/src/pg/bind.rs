//! A Bind message: checked against the statement it binds, then its parameters decoded into
//! DataFusion values.
//!
//! pgwire builds a portal from any Bind, and its format lookups index the format codes by
//! position, so a Bind whose codes, values and statement do not agree is refused here first,
//! with PostgreSQL's messages (08P01). Values are decoded by arrow-pg, except values of a
//! string type, which are taken byte for byte: pgwire's text decoder for strings undoes `''`
//! doubling as if the value were a SQL literal, and a parameter is not a literal (`a''` must
//! arrive as `a''`).

use std::sync::Arc;

use arrow_pg::datatypes::df::deserialize_parameters;
use arrow_pg::datatypes::into_pg_type;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::ParamValues;
use datafusion::scalar::ScalarValue;
use pgwire::api::Type;
use pgwire::api::portal::Portal;
use pgwire::api::stmt::StoredStatement;
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::extendedquery::Bind;

use crate::errors::GatewayError;

/// What a Bind must agree with: the statement's parameter count and, for a statement that
/// returns rows, its column count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BindShape {
    /// How many parameters the prepared statement takes.
    pub parameters: usize,
    /// How many columns its rows have; `None` for a statement without rows.
    pub columns: Option<usize>,
}

/// Refuses a Bind whose parts disagree with each other or with `shape`, as PostgreSQL does.
pub fn check(bind: &Bind, statement: &str, shape: BindShape) -> Result<(), GatewayError> {
    let formats = bind.parameter_format_codes.len();
    let values = bind.parameters.len();
    if formats > 1 && formats != values {
        return Err(GatewayError::Protocol(format!(
            "bind message has {formats} parameter formats but {values} parameters"
        )));
    }
    if values != shape.parameters {
        return Err(GatewayError::Protocol(format!(
            "bind message supplies {values} parameters, but prepared statement \"{statement}\" \
             requires {}",
            shape.parameters
        )));
    }
    let results = bind.result_column_format_codes.len();
    if let Some(columns) = shape.columns
        && results > 1
        && results != columns
    {
        return Err(GatewayError::Protocol(format!(
            "bind message has {results} result formats but query has {columns} columns"
        )));
    }
    let codes = bind
        .parameter_format_codes
        .iter()
        .chain(&bind.result_column_format_codes);
    if let Some(code) = codes.into_iter().find(|&&code| code != 0 && code != 1) {
        return Err(GatewayError::Protocol(format!(
            "unsupported format code: {code}"
        )));
    }
    Ok(())
}

/// The portal's parameter values, typed by `types` (what DataFusion inferred for `$1`, `$2`,
/// ..., by position) where the client declared no type.
pub fn values<S: Clone>(
    portal: &Portal<S>,
    types: &[Option<DataType>],
) -> PgWireResult<ParamValues> {
    let mut values = Vec::with_capacity(portal.parameters.len());
    for position in 0..portal.parameters.len() {
        let inferred = types.get(position).and_then(Option::as_ref);
        let value = match raw_text(portal, position, inferred)? {
            Some(text) => text,
            None => decoded(portal, position, inferred)?,
        };
        values.push(value.into());
    }
    Ok(ParamValues::List(values))
}

/// The type the client declared for the parameter at `position` in Parse, if any.
fn declared_type<S>(portal: &Portal<S>, position: usize) -> Option<Type> {
    portal
        .statement
        .parameter_types
        .get(position)
        .cloned()
        .flatten()
}

/// The value at `position` as arrow-pg decodes it, alone: arrow-pg's decoder of a whole
/// portal skips a NULL of a type it does not know, which would shift every value after it.
fn decoded<S: Clone>(
    portal: &Portal<S>,
    position: usize,
    inferred: Option<&DataType>,
) -> PgWireResult<ScalarValue> {
    let declared = declared_type(portal, position);
    let format = i16::from(portal.parameter_format.is_binary(position));
    let value = portal.parameters.get(position).cloned().flatten();
    let bind = Bind::new(None, None, vec![format], vec![value], Vec::new());
    let statement = StoredStatement::new(String::new(), (), vec![declared]);
    let single = Portal::try_new(&bind, Arc::new(statement))?;
    let decoded = match deserialize_parameters(&single, &[inferred])? {
        ParamValues::List(mut list) => list.pop().map(|value| value.value),
        ParamValues::Map(_) => None,
    };
    // Skipped: a NULL, of the inferred type where there is one.
    Ok(decoded.unwrap_or_else(|| {
        inferred
            .and_then(|t| ScalarValue::try_from(t).ok())
            .unwrap_or(ScalarValue::Utf8(None))
    }))
}

/// The value at `position` as the exact string the client sent, when it is of a string type
/// (or of no known type, which PostgreSQL reads as text). arrow-pg would also turn an untyped
/// value that looks like `{a,b}` into a list.
fn raw_text<S: Clone>(
    portal: &Portal<S>,
    position: usize,
    inferred: Option<&DataType>,
) -> PgWireResult<Option<ScalarValue>> {
    let Some(Some(bytes)) = portal.parameters.get(position) else {
        return Ok(None);
    };
    let binary = portal.parameter_format.is_binary(position);
    // The type arrow-pg decodes by: the client's, else the inferred one.
    let declared = declared_type(portal, position);
    let pg_type = match declared {
        Some(declared) => declared,
        None => match inferred.map(into_pg_type) {
            Some(Ok(inferred)) => inferred,
            _ => Type::UNKNOWN,
        },
    };
    let is_text = [
        Type::TEXT,
        Type::VARCHAR,
        Type::BPCHAR,
        Type::NAME,
        Type::UNKNOWN,
        Type::JSON,
        Type::JSONB,
    ]
    .contains(&pg_type);
    // The binary form of these types is their text too, except jsonb's, which starts with a
    // version byte.
    if !is_text || (binary && pg_type == Type::JSONB) {
        return Ok(None);
    }
    let text = std::str::from_utf8(bytes)
        .map_err(|_| {
            PgWireError::UserError(Box::new(ErrorInfo::new(
                "ERROR".to_owned(),
                "22021".to_owned(),
                format!(
                    "invalid byte sequence for encoding \"UTF8\" in parameter ${}",
                    position + 1
                ),
            )))
        })?
        .to_owned();
    Ok(Some(match inferred {
        Some(DataType::LargeUtf8) => ScalarValue::LargeUtf8(Some(text)),
        Some(DataType::Utf8View) => ScalarValue::Utf8View(Some(text)),
        _ => ScalarValue::Utf8(Some(text)),
    }))
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;

    use super::*;

    fn bind(formats: &[i16], values: &[Option<&str>], results: &[i16]) -> Bind {
        Bind::new(
            None,
            None,
            formats.to_vec(),
            values
                .iter()
                .map(|v| v.map(|v| Bytes::copy_from_slice(v.as_bytes())))
                .collect(),
            results.to_vec(),
        )
    }

    fn check_bind(bind: &Bind, parameters: usize, columns: Option<usize>) -> Result<(), String> {
        check(
            bind,
            "s",
            BindShape {
                parameters,
                columns,
            },
        )
        .map_err(|e| e.to_string())
    }

    #[test]
    fn binds_that_disagree_are_refused_as_postgresql_refuses_them() {
        let ok = bind(&[], &[Some("1")], &[]);
        assert_eq!(check_bind(&ok, 1, Some(1)), Ok(()));
        let ok = bind(&[1], &[Some("1"), Some("2")], &[1]);
        assert_eq!(check_bind(&ok, 2, Some(3)), Ok(()));
        let cases: &[(Bind, usize, Option<usize>, &str)] = &[
            (
                bind(&[0, 0], &[Some("1")], &[]),
                1,
                None,
                "bind message has 2 parameter formats but 1 parameters",
            ),
            (
                bind(&[], &[Some("1")], &[]),
                2,
                None,
                "bind message supplies 1 parameters, but prepared statement \"s\" requires 2",
            ),
            (
                bind(&[], &[Some("1"), None], &[]),
                1,
                None,
                "bind message supplies 2 parameters, but prepared statement \"s\" requires 1",
            ),
            (
                bind(&[], &[], &[0, 1]),
                0,
                Some(3),
                "bind message has 2 result formats but query has 3 columns",
            ),
            (
                bind(&[7], &[Some("1")], &[]),
                1,
                None,
                "unsupported format code: 7",
            ),
            (
                bind(&[], &[], &[-1]),
                0,
                Some(1),
                "unsupported format code: -1",
            ),
        ];
        for (bind, parameters, columns, expected) in cases {
            assert_eq!(
                check_bind(bind, *parameters, *columns),
                Err((*expected).to_owned()),
                "{bind:?}"
            );
        }
    }

    fn portal(declared: Option<Type>, value: &str) -> Portal<()> {
        let statement = StoredStatement::new("s".to_owned(), (), vec![declared]);
        Portal::try_new(&bind(&[], &[Some(value)], &[]), Arc::new(statement)).expect("a portal")
    }

    fn decoded(declared: Option<Type>, inferred: Option<DataType>, value: &str) -> ScalarValue {
        let values = values(&portal(declared, value), &[inferred]).expect("decoded");
        let ParamValues::List(list) = values else {
            panic!("positional parameters");
        };
        list.into_iter().next().expect("one value").value
    }

    /// Regression: arrow-pg's decoder skipped an untyped NULL, so the values after it moved
    /// one position down.
    #[test]
    fn an_untyped_null_keeps_every_value_in_its_position() {
        let statement = StoredStatement::new("s".to_owned(), (), vec![None, None, None]);
        let bind = bind(&[], &[None, Some("b"), Some("7")], &[]);
        let portal = Portal::try_new(&bind, Arc::new(statement)).expect("a portal");
        let ParamValues::List(list) =
            values(&portal, &[None, None, Some(DataType::Int64)]).expect("decoded")
        else {
            panic!("positional parameters");
        };
        let got: Vec<ScalarValue> = list.into_iter().map(|v| v.value).collect();
        assert_eq!(
            got,
            [
                ScalarValue::Utf8(None),
                ScalarValue::Utf8(Some("b".to_owned())),
                ScalarValue::Int64(Some(7)),
            ]
        );
    }

    #[test]
    fn text_parameters_arrive_byte_for_byte() {
        let utf8 = |s: &str| ScalarValue::Utf8(Some(s.to_owned()));
        for value in [
            "a''",
            "''",
            "'",
            "\\",
            "a\\'b",
            "x' OR 1=1 --",
            "{a,b}",
            "ünï ✓",
        ] {
            assert_eq!(decoded(None, None, value), utf8(value), "untyped {value:?}");
            assert_eq!(
                decoded(Some(Type::TEXT), None, value),
                utf8(value),
                "text {value:?}"
            );
            assert_eq!(
                decoded(None, Some(DataType::Utf8), value),
                utf8(value),
                "inferred {value:?}"
            );
            assert_eq!(
                decoded(Some(Type::VARCHAR), Some(DataType::LargeUtf8), value),
                ScalarValue::LargeUtf8(Some(value.to_owned())),
                "large {value:?}"
            );
        }
        // Other types are still arrow-pg's to decode.
        assert_eq!(
            decoded(None, Some(DataType::Int64), "42"),
            ScalarValue::Int64(Some(42))
        );
    }
}
