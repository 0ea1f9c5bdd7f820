//! How a source's namespaces become SQL schemas.
//!
//! The rule keeps short names for the common case. A source's first namespace (its default:
//! the only one for most sources) is the SQL schema named after the source, so its relations
//! read `source.table`. Each further namespace NS of the source is the SQL schema `source.NS`,
//! written with quotes in SQL: `"source.NS".table`. Relation and namespace names keep the
//! store's spelling; as in PostgreSQL, a name with upper-case letters must be quoted.

/// The SQL schema names of a source's namespaces, in the namespaces' order.
pub fn schema_names<'a>(
    source: &str,
    namespaces: impl IntoIterator<Item = &'a str>,
) -> Vec<String> {
    namespaces
        .into_iter()
        .enumerate()
        .map(|(i, ns)| {
            if i == 0 {
                source.to_owned()
            } else {
                format!("{source}.{ns}")
            }
        })
        .collect()
}

/// Which namespace of `source` the SQL schema `schema` names: `Some(0)` for the default
/// namespace, `Some(i)` for the i-th, `None` if `schema` is not one of the source's.
pub fn namespace_index<'a>(
    source: &str,
    schema: &str,
    namespaces: impl IntoIterator<Item = &'a str>,
) -> Option<usize> {
    if schema == source {
        return Some(0);
    }
    let ns = schema.strip_prefix(source)?.strip_prefix('.')?;
    namespaces
        .into_iter()
        .enumerate()
        .skip(1)
        .find(|(_, name)| *name == ns)
        .map(|(i, _)| i)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_namespace_is_the_source_and_others_are_qualified() {
        assert_eq!(schema_names("shop", ["public"]), ["shop"]);
        assert_eq!(
            schema_names("shop", ["public", "billing", "Audit"]),
            ["shop", "shop.billing", "shop.Audit"]
        );
    }

    #[test]
    fn schema_names_resolve_to_namespaces() {
        let ns = ["public", "billing", "Audit"];
        let check = |schema: &str, expected: Option<usize>| {
            assert_eq!(namespace_index("shop", schema, ns), expected, "{schema}");
        };
        check("shop", Some(0));
        check("shop.billing", Some(1));
        check("shop.Audit", Some(2));
        check("shop.audit", None);
        check("shop.public", None);
        check("shopping", None);
        check("shop.", None);
        check("other", None);
    }
}
