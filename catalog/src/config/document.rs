//! Stage one of reading catalog.toml: a parsed tree that remembers positions, with `${VAR}`
//! references expanded.

use std::borrow::Cow;
use std::fmt::Write as _;
use std::ops::Range;
use std::path::Path;

use serde::de::DeserializeOwned;
use toml::Spanned;
use toml::de::{DeTable, DeValue, ValueDeserializer};

use super::ConfigError;

/// The parsed text of one catalog file.
pub(crate) struct Document<'a> {
    path: &'a Path,
    text: &'a str,
    root: DeTable<'a>,
}

impl<'a> Document<'a> {
    /// Parses `text` and expands the environment variables its string values reference.
    pub(super) fn parse(path: &'a Path, text: &'a str) -> Result<Self, ConfigError> {
        Self::parse_with_env(path, text, |name| std::env::var(name).ok())
    }

    /// [`Document::parse`] with the environment given as a function, for tests.
    pub(super) fn parse_with_env(
        path: &'a Path,
        text: &'a str,
        env: impl Fn(&str) -> Option<String>,
    ) -> Result<Self, ConfigError> {
        let document = Self {
            path,
            text,
            root: DeTable::new(),
        };
        let mut root = DeTable::parse(text)
            .map_err(|e| {
                let span = e.span().unwrap_or(0..0);
                let key = document.key_at(span.clone());
                document.error(span, &key, e.message().trim())
            })?
            .into_inner();
        for (key, value) in root.iter_mut() {
            document.expand(key.get_ref(), value, &env)?;
        }
        Ok(Self { root, ..document })
    }

    pub(super) fn root(&self) -> &DeTable<'a> {
        &self.root
    }

    /// An error at `span`, about the dotted key `key`.
    pub(crate) fn error(
        &self,
        span: Range<usize>,
        key: &str,
        message: impl Into<String>,
    ) -> ConfigError {
        let before = &self.text[..span.start.min(self.text.len())];
        let line = before.matches('\n').count() + 1;
        let column = before.len() - before.rfind('\n').map_or(0, |i| i + 1) + 1;
        ConfigError {
            path: self.path.to_path_buf(),
            line,
            column,
            key: key.to_owned(),
            message: message.into(),
        }
    }

    /// Deserializes the table `value`, found at the dotted key `key`, into `T`.
    pub(crate) fn deserialize<T: DeserializeOwned>(
        &self,
        key: &str,
        value: &Spanned<DeValue<'_>>,
    ) -> Result<T, ConfigError> {
        if !matches!(value.get_ref(), DeValue::Table(_)) {
            return Err(self.error(value.span(), key, "must be a table"));
        }
        T::deserialize(ValueDeserializer::from(value.clone())).map_err(|e| {
            let span = e.span().unwrap_or_else(|| value.span());
            let inner = path_to(value, span.clone());
            let full = if inner.is_empty() {
                key.to_owned()
            } else {
                format!("{key}.{inner}")
            };
            self.error(span, &full, e.message().trim())
        })
    }

    /// The span of the value at the dotted path `dotted` below `value`, if there is one.
    pub(crate) fn span_of(
        &self,
        value: &Spanned<DeValue<'_>>,
        dotted: &str,
    ) -> Option<Range<usize>> {
        let mut current = value;
        for part in dotted.split('.') {
            let DeValue::Table(table) = current.get_ref() else {
                return None;
            };
            current = table.iter().find(|(k, _)| k.get_ref() == part)?.1;
        }
        Some(current.span())
    }

    /// A canonical rendering of `table` that ignores layout, comments and key order, so that
    /// two versions of a source can be compared.
    pub(super) fn fingerprint(&self, table: &DeTable<'_>) -> String {
        let mut out = String::new();
        render(&mut out, &DeValue::Table(table.clone()));
        out
    }

    /// The dotted key whose key or value contains `span`, for syntax errors.
    fn key_at(&self, span: Range<usize>) -> String {
        // The tree is not available when the text does not parse; the line's own key is the
        // best guide there.
        let line_start = self.text[..span.start.min(self.text.len())]
            .rfind('\n')
            .map_or(0, |i| i + 1);
        let line = self.text[line_start..].lines().next().unwrap_or("");
        line.split('=')
            .next()
            .unwrap_or("")
            .trim()
            .trim_matches(['[', ']'])
            .to_owned()
    }

    fn expand(
        &self,
        key: &str,
        value: &mut Spanned<DeValue<'a>>,
        env: &impl Fn(&str) -> Option<String>,
    ) -> Result<(), ConfigError> {
        let span = value.span();
        match value.get_mut() {
            DeValue::String(s) if s.contains('$') => {
                let expanded = expand_variables(s, env).map_err(|m| self.error(span, key, m))?;
                *s = Cow::Owned(expanded);
            }
            DeValue::Table(table) => {
                for (k, v) in table.iter_mut() {
                    self.expand(&format!("{key}.{}", k.get_ref()), v, env)?;
                }
            }
            DeValue::Array(items) => {
                for (i, v) in items.iter_mut().enumerate() {
                    self.expand(&format!("{key}[{i}]"), v, env)?;
                }
            }
            _ => {}
        }
        Ok(())
    }
}

/// Replaces each `${NAME}` in `value` by the variable's value; `$$` stands for one `$`.
fn expand_variables(value: &str, env: &impl Fn(&str) -> Option<String>) -> Result<String, String> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(at) = rest.find('$') {
        out.push_str(&rest[..at]);
        rest = &rest[at..];
        if let Some(after) = rest.strip_prefix("$$") {
            out.push('$');
            rest = after;
        } else if let Some(after) = rest.strip_prefix("${") {
            let end = after
                .find('}')
                .ok_or_else(|| "unterminated ${ in value (write $$ for a literal $)".to_owned())?;
            let name = &after[..end];
            let valid = name
                .chars()
                .enumerate()
                .all(|(i, c)| c == '_' || c.is_ascii_alphabetic() || (i > 0 && c.is_ascii_digit()));
            if name.is_empty() || !valid {
                return Err(format!("invalid environment variable name {name:?}"));
            }
            let variable =
                env(name).ok_or_else(|| format!("environment variable {name} is not set"))?;
            out.push_str(&variable);
            rest = &after[end + 1..];
        } else {
            out.push('$');
            rest = &rest[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The dotted path, below `value`, of the innermost key or value containing `span`.
fn path_to(value: &Spanned<DeValue<'_>>, span: Range<usize>) -> String {
    let contains = |s: Range<usize>| s.start <= span.start && span.end <= s.end.max(s.start + 1);
    let mut path = Vec::new();
    let mut current = value;
    while let DeValue::Table(table) = current.get_ref() {
        let Some((key, child)) = table
            .iter()
            .find(|(k, v)| contains(k.span()) || contains(v.span()))
        else {
            break;
        };
        path.push(key.get_ref().to_string());
        if contains(key.span()) {
            break;
        }
        current = child;
    }
    path.join(".")
}

fn render(out: &mut String, value: &DeValue<'_>) {
    match value {
        DeValue::String(s) => {
            let _ = write!(out, "{s:?}");
        }
        DeValue::Integer(i) => {
            let _ = write!(out, "{i}");
        }
        DeValue::Float(f) => {
            let _ = write!(out, "{f}");
        }
        DeValue::Boolean(b) => {
            let _ = write!(out, "{b}");
        }
        DeValue::Datetime(d) => {
            let _ = write!(out, "{d}");
        }
        DeValue::Array(items) => {
            out.push('[');
            for item in items.iter() {
                render(out, item.get_ref());
                out.push(',');
            }
            out.push(']');
        }
        DeValue::Table(table) => {
            let mut entries: Vec<_> = table.iter().collect();
            entries.sort_by(|a, b| a.0.get_ref().cmp(b.0.get_ref()));
            out.push('{');
            for (k, v) in entries {
                let _ = write!(out, "{:?}=", k.get_ref());
                render(out, v.get_ref());
                out.push(',');
            }
            out.push('}');
        }
    }
}

#[cfg(test)]
pub(super) mod tests {
    use super::*;

    #[test]
    fn expands_variables() {
        let env = |name: &str| (name == "PW").then(|| "s3cret".to_owned());
        let check = |input: &str, expected: Result<&str, &str>| {
            assert_eq!(
                expand_variables(input, &env).as_deref(),
                expected.map_err(str::to_owned).as_deref(),
                "{input}"
            );
        };
        check("plain", Ok("plain"));
        check("postgres://u:${PW}@h/db", Ok("postgres://u:s3cret@h/db"));
        check("${PW}${PW}", Ok("s3crets3cret"));
        check("cost $5", Ok("cost $5"));
        check("$${PW}", Ok("${PW}"));
        check("${MISSING}", Err("environment variable MISSING is not set"));
        check(
            "${PW",
            Err("unterminated ${ in value (write $$ for a literal $)"),
        );
        check("${1X}", Err("invalid environment variable name \"1X\""));
        check("${}", Err("invalid environment variable name \"\""));
    }
}
