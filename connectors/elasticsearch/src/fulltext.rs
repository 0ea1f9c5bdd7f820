//! Full-text search in SQL: `match(column, 'red shoes')` and `match_phrase(column, 'red
//! shoes')`.
//!
//! On a `text` field of an index the scan sends them to the cluster as `match` and
//! `match_phrase` queries, which the field's own analyzer answers, and the hits carry their
//! relevance as `_score`. Anywhere else (another store's column, a computed string, a source
//! with `pushdown = false`) polygate evaluates them itself with a tokenizer close to the
//! cluster's `standard` analyzer: words are runs of letters, digits and `_` (a `.` or `'`
//! between two letters, or a `.`, `,` or `'` between two digits, stays inside a word),
//! compared in lower case. `match` is true when the text holds any word of the query,
//! `match_phrase` when it holds all of them in order, next to each other; a query without
//! words matches nothing, and a NULL argument gives NULL.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::DataType;
use datafusion::common::cast::as_string_array;
use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::error::Result;
use datafusion::logical_expr::{
    ColumnarValue, Expr, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// The two full-text functions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum FullText {
    /// `match`: any word of the query.
    Match,
    /// `match_phrase`: every word of the query, in order and adjacent.
    Phrase,
}

impl FullText {
    pub fn name(self) -> &'static str {
        match self {
            FullText::Match => "match",
            FullText::Phrase => "match_phrase",
        }
    }

    /// Which full-text function `expr` calls, with its two arguments.
    pub fn of(expr: &Expr) -> Option<(Self, &Expr, &Expr)> {
        let Expr::ScalarFunction(call) = expr else {
            return None;
        };
        // Only this module's functions: a same-named function of another origin is not ours.
        let ours = call.func.inner().downcast_ref::<FullTextFunction>()?;
        let [column, query] = call.args.as_slice() else {
            return None;
        };
        Some((ours.kind, column, query))
    }

    /// Evaluates the function on one text and query.
    pub fn matches(self, text: &str, query: &str) -> bool {
        let query = words(query);
        if query.is_empty() {
            return false;
        }
        let text = words(text);
        match self {
            FullText::Match => query.iter().any(|word| text.contains(word)),
            FullText::Phrase => text.windows(query.len()).any(|window| window == query),
        }
    }
}

/// Whether `expr` holds a full-text function anywhere.
pub(crate) fn has_full_text(expr: &Expr) -> bool {
    let mut found = false;
    let _ = expr.apply(|e| {
        found |= FullText::of(e).is_some();
        Ok(if found {
            TreeNodeRecursion::Stop
        } else {
            TreeNodeRecursion::Continue
        })
    });
    found
}

/// The functions a session registers.
pub fn functions() -> Vec<Arc<ScalarUDF>> {
    [FullText::Match, FullText::Phrase]
        .into_iter()
        .map(|kind| {
            Arc::new(ScalarUDF::new_from_impl(FullTextFunction {
                kind,
                signature: Signature::string(2, Volatility::Immutable),
            }))
        })
        .collect()
}

#[derive(Debug, PartialEq, Eq, Hash)]
struct FullTextFunction {
    kind: FullText,
    signature: Signature,
}

impl ScalarUDFImpl for FullTextFunction {
    fn name(&self) -> &str {
        self.kind.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Boolean)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let [text, query] = arrays.as_slice() else {
            return datafusion::common::exec_err!("{} takes two arguments", self.kind.name());
        };
        let text: ArrayRef = cast(text, &DataType::Utf8)?;
        let query: ArrayRef = cast(query, &DataType::Utf8)?;
        let (text, query) = (as_string_array(&text)?, as_string_array(&query)?);
        let result: BooleanArray = (0..text.len())
            .map(|i| {
                (text.is_valid(i) && query.is_valid(i))
                    .then(|| self.kind.matches(text.value(i), query.value(i)))
            })
            .collect();
        Ok(ColumnarValue::Array(Arc::new(result)))
    }
}

/// The words of `text`, lower-cased, as the `standard` analyzer splits plain prose.
fn words(text: &str) -> Vec<String> {
    let chars: Vec<char> = text.chars().collect();
    let mut words = Vec::new();
    let mut word = String::new();
    for (i, &c) in chars.iter().enumerate() {
        let inside = if c.is_alphanumeric() || c == '_' {
            true
        } else {
            let before = i.checked_sub(1).and_then(|j| chars.get(j)).copied();
            let after = chars.get(i + 1).copied();
            match (before, after) {
                (Some(b), Some(a)) if !word.is_empty() => {
                    (b.is_alphabetic() && a.is_alphabetic() && matches!(c, '.' | '\'' | '’'))
                        || (b.is_numeric() && a.is_numeric() && matches!(c, '.' | ',' | '\''))
                }
                _ => false,
            }
        };
        if inside {
            word.extend(c.to_lowercase());
        } else if !word.is_empty() {
            words.push(std::mem::take(&mut word));
        }
    }
    if !word.is_empty() {
        words.push(word);
    }
    words
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn words_split_as_the_standard_analyzer_splits_prose() {
        let cases: &[(&str, &[&str])] = &[
            ("Red Shoes", &["red", "shoes"]),
            ("red-shoes, size 42!", &["red", "shoes", "size", "42"]),
            ("don't stop", &["don't", "stop"]),
            (
                "version 3.14 costs 1,000",
                &["version", "3.14", "costs", "1,000"],
            ),
            ("end. Next", &["end", "next"]),
            ("snake_case word", &["snake_case", "word"]),
            ("Ünïcödé STRASSE", &["ünïcödé", "strasse"]),
            ("  ", &[]),
            ("*?\"\\", &[]),
        ];
        for (text, expected) in cases {
            assert_eq!(words(text), *expected, "{text:?}");
        }
    }

    #[test]
    fn match_wants_any_word_and_phrase_all_in_order() {
        let cases = [
            (FullText::Match, "Red leather shoes", "shoes red", true),
            (FullText::Match, "Red leather shoes", "blue hat", false),
            (FullText::Match, "Red leather shoes", "", false),
            (FullText::Match, "", "red", false),
            (FullText::Phrase, "Red leather shoes", "leather shoes", true),
            (FullText::Phrase, "Red leather shoes", "red shoes", false),
            (
                FullText::Phrase,
                "Red leather shoes",
                "shoes leather",
                false,
            ),
            (FullText::Phrase, "Red leather shoes", "RED, leather", true),
            (FullText::Phrase, "Red leather shoes", "*", false),
        ];
        for (kind, text, query, expected) in cases {
            assert_eq!(
                kind.matches(text, query),
                expected,
                "{kind:?} {text:?} {query:?}"
            );
        }
    }
}
