//! ORDER BY run by MongoDB: a `$sort` that returns documents in exactly DataFusion's order, up
//! to ties that SQL leaves in any order.
//!
//! MongoDB's order and DataFusion's differ in two places, which flags computed by an
//! `$addFields` stage before the `$sort` correct:
//! - NULLs: MongoDB puts missing and null fields first ascending and last descending; where
//!   the other placement is asked for, a flag "is NULL" sorts first.
//! - NaN: MongoDB puts NaN below every number, DataFusion above (every NaN decodes to the
//!   positive one); a flag "is NaN" sorts before the double itself.
//!
//! `-0.0` and `0.0` tie in MongoDB and not in DataFusion: SQL leaves ties in any order.
//! Only scalar fields sort; arrays (which MongoDB sorts by their least or greatest element)
//! and documents do not.

use mongodb::bson::{Document, doc};

use crate::types::FieldType;

/// The prefixes of the flags a sort adds; no column may have such a name.
const FLAGS: [&str; 2] = ["__polygate_null_", "__polygate_nan_"];

/// Whether `name` could be a flag's: a stage reading such a field cannot sort.
pub(crate) fn is_flag(name: &str) -> bool {
    FLAGS.iter().any(|prefix| name.starts_with(prefix))
}

/// One key of an ORDER BY.
pub(crate) struct SortKey<'a> {
    /// The field's dotted path in the documents being sorted.
    pub(crate) path: &'a str,
    pub(crate) field: &'a FieldType,
    pub(crate) descending: bool,
    pub(crate) nulls_first: bool,
}

/// The flags to add (`$addFields`, empty when none) and the `$sort` for `keys`, or `None`
/// when MongoDB cannot order them as DataFusion.
pub(crate) fn sort_stage<'a>(
    keys: impl IntoIterator<Item = SortKey<'a>>,
) -> Option<(Document, Document)> {
    let mut flags = Document::new();
    let mut sort = Document::new();
    for (i, key) in keys.into_iter().enumerate() {
        if !key.field.is_scalar() {
            return None;
        }
        let path = key.path;
        // A later key on the same field orders nothing more.
        if sort.contains_key(path) {
            continue;
        }
        let direction = if key.descending { -1 } else { 1 };
        // `_id` is never missing or null.
        if key.nulls_first == key.descending && path != "_id" {
            let flag = format!("__polygate_null_{i}");
            flags.insert(
                &flag,
                doc! { "$in": [{ "$type": format!("${path}") }, ["missing", "null"]] },
            );
            // false (a value) sorts before true (NULL).
            sort.insert(flag, if key.nulls_first { -1 } else { 1 });
        }
        if *key.field == FieldType::Double {
            let flag = format!("__polygate_nan_{i}");
            // MongoDB's comparisons hold NaN equal to NaN.
            flags.insert(&flag, doc! { "$eq": [format!("${path}"), f64::NAN] });
            // Ascending, false (a number) before true (NaN); descending, NaN first.
            sort.insert(flag, direction);
        }
        sort.insert(path, direction);
    }
    Some((flags, sort))
}

#[cfg(test)]
mod tests {
    use mongodb::bson::Bson;

    use super::*;

    fn key<'a>(
        path: &'a str,
        field: &'a FieldType,
        descending: bool,
        nulls_first: bool,
    ) -> SortKey<'a> {
        SortKey {
            path,
            field,
            descending,
            nulls_first,
        }
    }

    fn relaxed(document: Document) -> String {
        Bson::Document(document).into_relaxed_extjson().to_string()
    }

    #[test]
    fn sorts_carry_the_flags_mongodb_needs() {
        let int = FieldType::Int64;
        let double = FieldType::Double;
        let list = FieldType::Array(Box::new(FieldType::Int64));
        // (keys, (flags, sort))
        type Case<'a> = (Vec<SortKey<'a>>, Option<(&'a str, &'a str)>);
        let cases: Vec<Case> = vec![
            // MongoDB's own placement of NULLs: no flag.
            (
                vec![key("n", &int, false, true)],
                Some(("{}", r#"{"n":1}"#)),
            ),
            (
                vec![key("n", &int, true, false)],
                Some(("{}", r#"{"n":-1}"#)),
            ),
            (
                vec![key("n", &int, false, false)],
                Some((
                    r#"{"__polygate_null_0":{"$in":[{"$type":"$n"},["missing","null"]]}}"#,
                    r#"{"__polygate_null_0":1,"n":1}"#,
                )),
            ),
            (
                vec![key("_id", &int, false, false)],
                Some(("{}", r#"{"_id":1}"#)),
            ),
            (
                vec![key("f", &double, true, false)],
                Some((
                    r#"{"__polygate_nan_0":{"$eq":["$f",{"$numberDouble":"NaN"}]}}"#,
                    r#"{"__polygate_nan_0":-1,"f":-1}"#,
                )),
            ),
            (
                vec![key("n", &int, true, false), key("n", &int, false, false)],
                Some(("{}", r#"{"n":-1}"#)),
            ),
            (vec![key("l", &list, false, true)], None),
        ];
        for (keys, expected) in cases {
            let stage = sort_stage(keys).map(|(flags, sort)| (relaxed(flags), relaxed(sort)));
            assert_eq!(
                stage,
                expected.map(|(flags, sort)| (flags.to_owned(), sort.to_owned()))
            );
        }
    }
}
