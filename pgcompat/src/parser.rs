//! SQL text to statements, in forms DataFusion plans as PostgreSQL would answer them.
//!
//! `datafusion-pg-catalog`'s parser does two things: it swaps the catalog queries of psql and
//! other known clients for forms DataFusion can plan (a fixed list, matched token by token),
//! then applies rewrite rules (`'t'::regclass`, `OPERATOR(pg_catalog.~)`, `COLLATE`,
//! `ANY(array)`, ...). One of those rules, `RemoveSubqueryFromProjection`, answers NULL for
//! every correlated scalar subquery in a select list and adds `LIMIT 1` to the uncorrelated
//! ones, whatever tables they read: `(SELECT count(*) FROM orders o WHERE o.customer = c.id)`
//! would come back NULL, and a subquery returning several rows would silently give its first
//! instead of PostgreSQL's error. polygate applies the same rules without that one, and uses
//! the library's whole answer only for the statements its list of client queries replaced.

use std::sync::Arc;

use datafusion::sql::sqlparser::ast::Statement;
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::{Parser, ParserError};
use datafusion_pg_catalog::sql::PostgresCompatibilityParser;
use datafusion_pg_catalog::sql::rules::{
    AliasDuplicatedProjectionRewrite, CurrentUserVariableToSessionUserFunctionCall,
    FixArrayLiteral, FixVersionColumnName, PrependUnqualifiedPgTableName,
    RemoveSubqueryFromProjection, ResolveUnqualifiedIdentifier, RewriteArrayAnyAllOperation,
    RewritePgCatalogOperator, RewriteRegCastToSubquery, SqlStatementRewriteRule,
    StripCallableQualifier, StripCollate,
};

type Rules = Vec<Arc<dyn SqlStatementRewriteRule>>;

/// Parses PostgreSQL's SQL; see the module's documentation.
#[derive(Debug)]
pub struct PgParser {
    library: PostgresCompatibilityParser,
    /// The library's rules, in its order: what it does to a statement it did not replace.
    library_rules: Rules,
    /// The same without `RemoveSubqueryFromProjection`.
    rules: Rules,
}

impl Default for PgParser {
    fn default() -> Self {
        Self::new()
    }
}

impl PgParser {
    /// A parser with `datafusion-pg-catalog`'s rules but the one that drops subqueries.
    pub fn new() -> Self {
        let before: Rules = vec![
            Arc::new(AliasDuplicatedProjectionRewrite),
            Arc::new(ResolveUnqualifiedIdentifier),
            Arc::new(RewriteArrayAnyAllOperation),
            Arc::new(PrependUnqualifiedPgTableName),
            Arc::new(StripCallableQualifier),
            Arc::new(FixArrayLiteral),
            Arc::new(CurrentUserVariableToSessionUserFunctionCall),
            Arc::new(StripCollate),
            Arc::new(RewritePgCatalogOperator),
            Arc::new(RewriteRegCastToSubquery::new()),
        ];
        let last: Arc<dyn SqlStatementRewriteRule> = Arc::new(FixVersionColumnName);
        let mut library_rules = before.clone();
        library_rules.push(Arc::new(RemoveSubqueryFromProjection));
        library_rules.push(Arc::clone(&last));
        let mut rules = before;
        rules.push(last);
        Self {
            library: PostgresCompatibilityParser::new(),
            library_rules,
            rules,
        }
    }

    /// The statements of `sql`.
    pub fn parse(&self, sql: &str) -> Result<Vec<Statement>, ParserError> {
        let library = self.library.parse(sql)?;
        // Text the plain parser refuses (`ABORT`, which the library reads as ROLLBACK) is
        // the library's to answer.
        let Ok(plain) = Parser::parse_sql(&PostgreSqlDialect {}, sql) else {
            return Ok(library);
        };
        if plain.len() != library.len() {
            return Ok(library);
        }
        Ok(plain
            .into_iter()
            .zip(library)
            .map(|(statement, library)| {
                let ours = apply(&self.rules, statement.clone());
                // Most statements come out the same both ways; otherwise the library either
                // dropped a subquery (take ours) or replaced a client query (take its).
                if ours == library || apply(&self.library_rules, statement) == library {
                    ours
                } else {
                    library
                }
            })
            .collect())
    }
}

fn apply(rules: &Rules, mut statement: Statement) -> Statement {
    for rule in rules {
        statement = rule.rewrite(statement);
    }
    statement
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(sql: &str) -> String {
        PgParser::new()
            .parse(sql)
            .expect("parses")
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join("; ")
    }

    #[test]
    fn scalar_subqueries_stay_as_written() {
        let correlated = "SELECT c.id, (SELECT count(*) FROM shop.orders o WHERE o.customer_id = c.id) AS n FROM shop.customers c";
        assert_eq!(parsed(correlated), correlated);
        let several = "SELECT (SELECT id FROM shop.customers) AS x";
        assert_eq!(parsed(several), several);
    }

    #[test]
    fn the_library_rules_still_apply() {
        assert_eq!(
            parsed("SELECT 1 WHERE 'a' OPERATOR(pg_catalog.~) 'b'; ABORT"),
            "SELECT 1 WHERE 'a' ~ 'b'; ROLLBACK"
        );
    }

    #[test]
    fn client_queries_the_library_knows_are_replaced() {
        // DBeaver's relation sizes by schema name, which the library answers with no rows.
        let sql = "select c.oid,pg_catalog.pg_total_relation_size(c.oid) as total_rel_size,pg_catalog.pg_relation_size(c.oid) as rel_size FROM pg_class c WHERE c.relnamespace='public'";
        let ours = parsed(sql);
        assert!(ours.ends_with("WHERE false"), "{ours}");
    }
}
