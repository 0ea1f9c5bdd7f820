//! Statements whose expressions nest deeply: long `AND`/`OR` chains are balanced, anything
//! still too deep is refused with 54001.
//!
//! The parser reads `a = 0 OR a = 1 OR ...` into a left-deep tree, one level per term, and
//! everything after it (rewrites, DataFusion's planner and optimizer, the connectors'
//! translators, the tree's drop) walks that tree recursively; DataFusion's type checking is
//! even quadratic in its depth. A client's 50,000-term `OR` would take minutes of a worker
//! thread that no cancel can interrupt. `AND` and `OR` are associative, in SQL's
//! three-valued logic too, so a long chain is rebuilt as a balanced tree of the same operands
//! in the same order: 50,000 terms are 16 levels deep. What is still deeper after that (a
//! chain of `+`, whose overflow depends on grouping, or nested function calls) is refused,
//! as PostgreSQL refuses what exceeds its `max_stack_depth`. Before any of that, a scan of
//! the text refuses a statement with more than [`MAX_OPERATORS`] operators, which bounds how
//! deep the tree can be while the passes that run before the balancing walk it.

use std::ops::ControlFlow;

use datafusion::sql::sqlparser::ast::{
    BinaryOperator, Expr, Statement, Value, Visit, VisitMut, Visitor, VisitorMut,
};

use crate::error::SqlError;

/// Chains of more operands than this are balanced; shorter ones are left as written, so that
/// ordinary statements (their EXPLAIN and column names) are untouched.
const BALANCE_ABOVE: usize = 64;

/// The deepest expression a statement may hold once its chains are balanced.
pub const MAX_EXPRESSION_DEPTH: usize = 1_000;

/// The most operators (`AND`, `OR`, `+`, `=`, ...) a statement's text may hold. Parsing is
/// iterative, but the passes between parsing and [`limit`] (the compatibility parser's rules,
/// comparisons, clones) walk the unbalanced tree recursively; this bounds how deep that tree
/// can be before anything walks it. It is four times the 50,000-term `OR` the tests run.
pub const MAX_OPERATORS: usize = 200_000;

/// Refuses SQL text with more than [`MAX_OPERATORS`] operators, counted by a scan of the text
/// that skips literals, quoted names and comments, before anything parses it.
pub fn check_text(sql: &str) -> Result<(), SqlError> {
    match operators(sql) > MAX_OPERATORS {
        true => Err(SqlError::TooManyOperators(MAX_OPERATORS)),
        false => Ok(()),
    }
}

/// The characters PostgreSQL's operators are made of.
const OPERATOR_CHARS: &[u8] = b"+-*/%<>=~!@#^&|?";

/// How many operators `sql` holds: `AND` and `OR` as words, and runs of operator characters,
/// outside string literals, quoted identifiers, dollar quotes and comments.
fn operators(sql: &str) -> usize {
    let bytes = sql.as_bytes();
    let mut count = 0;
    let mut i = 0;
    let skip_to = |from: usize, end: &[u8]| {
        bytes
            .get(from..)
            .and_then(|rest| rest.windows(end.len()).position(|w| w == end))
            .map_or(bytes.len(), |at| from + at + end.len())
    };
    while let Some(&byte) = bytes.get(i) {
        i = match byte {
            // '...' with '' inside (and \' in E'...'), "..." with "" inside: a doubled
            // quote reads as the end of one literal and the start of the next.
            b'\'' | b'"' => {
                let escapes =
                    byte == b'\'' && i > 0 && matches!(bytes.get(i - 1), Some(b'e' | b'E'));
                let mut j = i + 1;
                while let Some(&c) = bytes.get(j) {
                    if escapes && c == b'\\' {
                        j += 2;
                        continue;
                    }
                    j += 1;
                    if c == byte {
                        break;
                    }
                }
                j
            }
            b'-' if bytes.get(i + 1) == Some(&b'-') => skip_to(i, b"\n"),
            b'/' if bytes.get(i + 1) == Some(&b'*') => skip_to(i + 2, b"*/"),
            // $tag$ ... $tag$ (not $1, a parameter).
            b'$' => {
                let tag_end = bytes
                    .get(i + 1..)
                    .and_then(|rest| {
                        rest.iter()
                            .position(|c| !(c.is_ascii_alphanumeric() || *c == b'_'))
                    })
                    .map(|at| i + 1 + at);
                match tag_end {
                    Some(end)
                        if bytes.get(end) == Some(&b'$')
                            && !bytes.get(i + 1).is_some_and(u8::is_ascii_digit) =>
                    {
                        let tag = bytes.get(i..=end).unwrap_or_default();
                        skip_to(end + 1, tag)
                    }
                    _ => i + 1,
                }
            }
            c if c.is_ascii_alphabetic() || c == b'_' => {
                let end = bytes
                    .get(i..)
                    .and_then(|rest| {
                        rest.iter()
                            .position(|c| !(c.is_ascii_alphanumeric() || *c == b'_' || *c == b'$'))
                    })
                    .map_or(bytes.len(), |at| i + at);
                let word = bytes.get(i..end).unwrap_or_default();
                if word.eq_ignore_ascii_case(b"and") || word.eq_ignore_ascii_case(b"or") {
                    count += 1;
                }
                end
            }
            c if OPERATOR_CHARS.contains(&c) => {
                count += 1;
                bytes
                    .get(i..)
                    .and_then(|rest| rest.iter().position(|c| !OPERATOR_CHARS.contains(c)))
                    .map_or(bytes.len(), |at| i + at)
            }
            _ => i + 1,
        };
    }
    count
}

/// Balances long `AND`/`OR` chains, then refuses the statement if an expression in it is
/// still deeper than [`MAX_EXPRESSION_DEPTH`].
pub fn limit(statement: &mut Statement) -> Result<(), SqlError> {
    let _ = VisitMut::visit(statement, &mut BalanceChains);
    let mut depth = Depth::default();
    match Visit::visit(&*statement, &mut depth) {
        ControlFlow::Continue(()) => Ok(()),
        ControlFlow::Break(()) => Err(SqlError::TooDeep(MAX_EXPRESSION_DEPTH)),
    }
}

/// Rebuilds each long `AND` or `OR` chain as a balanced tree, before the visitor descends
/// into it (so that the descent itself is shallow).
struct BalanceChains;

impl VisitorMut for BalanceChains {
    type Break = ();

    fn pre_visit_expr(&mut self, expr: &mut Expr) -> ControlFlow<()> {
        let Expr::BinaryOp { op, .. } = expr else {
            return ControlFlow::Continue(());
        };
        if !matches!(op, BinaryOperator::And | BinaryOperator::Or) {
            return ControlFlow::Continue(());
        }
        let op = op.clone();
        let chain = std::mem::replace(expr, Expr::value(Value::Null));
        let operands = operands(chain, &op);
        *expr = if operands.len() > BALANCE_ABOVE {
            balanced(operands, &op)
        } else {
            left_deep(operands, &op)
        };
        ControlFlow::Continue(())
    }
}

/// The operands of a chain of `op`, left to right, taken apart without recursion (each level
/// is moved out of its box, so nothing deep is dropped either).
fn operands(chain: Expr, op: &BinaryOperator) -> Vec<Expr> {
    let mut operands = Vec::new();
    let mut pending = vec![chain];
    while let Some(expr) = pending.pop() {
        match expr {
            Expr::BinaryOp {
                left,
                op: this,
                right,
            } if this == *op => {
                pending.push(*right);
                pending.push(*left);
            }
            operand => operands.push(operand),
        }
    }
    operands
}

fn balanced(mut operands: Vec<Expr>, op: &BinaryOperator) -> Expr {
    if operands.len() <= 1 {
        return operands.pop().unwrap_or_else(|| Expr::value(Value::Null));
    }
    let right = operands.split_off(operands.len() / 2);
    Expr::BinaryOp {
        left: Box::new(balanced(operands, op)),
        op: op.clone(),
        right: Box::new(balanced(right, op)),
    }
}

/// The chain as the parser builds it: `((a op b) op c) ...`.
fn left_deep(operands: Vec<Expr>, op: &BinaryOperator) -> Expr {
    let mut operands = operands.into_iter();
    let first = operands.next().unwrap_or_else(|| Expr::value(Value::Null));
    operands.fold(first, |left, right| Expr::BinaryOp {
        left: Box::new(left),
        op: op.clone(),
        right: Box::new(right),
    })
}

/// Measures expression nesting, and stops the walk as soon as it passes the limit, so that
/// the walk itself never goes deeper than that.
#[derive(Default)]
struct Depth {
    current: usize,
}

impl Visitor for Depth {
    type Break = ();

    fn pre_visit_expr(&mut self, _expr: &Expr) -> ControlFlow<()> {
        self.current += 1;
        if self.current > MAX_EXPRESSION_DEPTH {
            return ControlFlow::Break(());
        }
        ControlFlow::Continue(())
    }

    fn post_visit_expr(&mut self, _expr: &Expr) -> ControlFlow<()> {
        self.current = self.current.saturating_sub(1);
        ControlFlow::Continue(())
    }
}

#[cfg(test)]
mod tests {
    use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
    use datafusion::sql::sqlparser::parser::Parser;

    use super::*;

    fn parse(sql: &str) -> Statement {
        Parser::new(&PostgreSqlDialect {})
            .try_with_sql(sql)
            .and_then(|mut parser| parser.parse_statement())
            .expect("valid SQL")
    }

    fn limited(sql: &str) -> Result<String, String> {
        let mut statement = parse(sql);
        limit(&mut statement).map_err(|e| e.code().to_owned())?;
        Ok(statement.to_string())
    }

    fn chain(terms: usize, op: &str) -> String {
        (0..terms)
            .map(|i| format!("a = {i}"))
            .collect::<Vec<_>>()
            .join(&format!(" {op} "))
    }

    #[test]
    fn operators_are_counted_outside_literals_names_and_comments() {
        let cases = [
            ("SELECT 1", 0),
            ("SELECT a FROM t WHERE a = 1 AND b <> 2 OR c", 4),
            ("SELECT 1 + 2 - -3", 3),
            ("SELECT 'a AND b + c', \"or\" FROM t -- x AND y\n", 0),
            ("SELECT 'it''s + ok' || 'x'", 1),
            ("SELECT E'\\' AND ' = x", 1),
            ("SELECT /* a + b */ $$ a OR b $$, $q$ + $q$ = $1", 1),
            ("SELECT android, orange, band FROM t", 0),
        ];
        for (sql, expected) in cases {
            assert_eq!(operators(sql), expected, "{sql}");
        }
        let long = format!("SELECT 1 WHERE {}", chain(150_000, "OR"));
        // 150,000 ORs and as many `=`.
        assert_eq!(check_text(&long).map_err(|e| e.code()), Err("54001"));
        assert!(check_text(&format!("SELECT 1 WHERE {}", chain(50_000, "OR"))).is_ok());
    }

    #[test]
    fn short_chains_are_left_as_written() {
        let sql = "SELECT * FROM t WHERE a = 1 OR b = 2 AND (c = 3 OR d = 4) OR e";
        assert_eq!(limited(sql), Ok(sql.to_owned()));
        let sql = format!("SELECT * FROM t WHERE {}", chain(64, "AND"));
        assert_eq!(limited(&sql), Ok(sql.clone()));
    }

    #[test]
    fn long_chains_keep_their_operands_in_order_and_become_shallow() {
        for op in ["OR", "AND"] {
            let sql = format!("SELECT * FROM t WHERE x AND ({})", chain(50_000, op));
            let mut statement = parse(&sql);
            limit(&mut statement).expect("balanced");
            // Printed without the grouping (the printer adds no parentheses around AND/OR
            // operands, and neither operator cares), the statement reads as written.
            assert_eq!(statement.to_string(), sql);
            let mut depth = Depth::default();
            let mut deepest = 0;
            struct Deepest<'a>(&'a mut Depth, &'a mut usize);
            impl Visitor for Deepest<'_> {
                type Break = ();
                fn pre_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
                    self.0.pre_visit_expr(expr)?;
                    *self.1 = (*self.1).max(self.0.current);
                    ControlFlow::Continue(())
                }
                fn post_visit_expr(&mut self, expr: &Expr) -> ControlFlow<()> {
                    self.0.post_visit_expr(expr)
                }
            }
            let _ = statement.visit(&mut Deepest(&mut depth, &mut deepest));
            assert!(deepest < 100, "{op}: {deepest} levels");
        }
    }

    #[test]
    fn what_cannot_be_balanced_is_refused_with_54001() {
        let sum = format!("SELECT {}", vec!["1"; 5_000].join(" + "));
        // The tree is dropped on a thread with room for its depth.
        let outcome = std::thread::Builder::new()
            .stack_size(256 << 20)
            .spawn(move || limited(&sum))
            .expect("a thread")
            .join()
            .expect("no panic");
        assert_eq!(outcome, Err("54001".to_owned()));
    }
}
