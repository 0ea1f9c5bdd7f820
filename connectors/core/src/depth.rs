//! How deeply an expression nests, measured without recursion.
//!
//! The connectors' translators (filters to SQL, to `$match`, to query DSL) recurse once per
//! level of an expression. A client can write a predicate tens of thousands of levels deep
//! (`a = 0 OR a = 1 OR ...` parses into a left-deep tree), which would overflow the stack of
//! the thread translating it. A translator first asks [`within_pushdown_depth`]; a deeper
//! expression is not pushed, and DataFusion evaluates it.

use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
use datafusion::logical_expr::Expr;

/// The deepest expression a connector translates. Real predicates are far shallower; the
/// stack a translation of this depth needs is far below a thread's.
pub const MAX_PUSHDOWN_DEPTH: usize = 256;

/// Is `expr` at most [`MAX_PUSHDOWN_DEPTH`] levels deep? Stops at the first level past it.
pub fn within_pushdown_depth(expr: &Expr) -> bool {
    let mut pending = vec![(expr, 1_usize)];
    while let Some((expr, depth)) = pending.pop() {
        if depth > MAX_PUSHDOWN_DEPTH {
            return false;
        }
        // `apply_children` visits only the immediate children: no recursion here.
        let visited = expr.apply_children(|child| {
            pending.push((child, depth + 1));
            Ok(TreeNodeRecursion::Continue)
        });
        if visited.is_err() {
            return false;
        }
    }
    true
}

#[cfg(test)]
mod tests {
    use datafusion::prelude::{col, lit};

    use super::*;

    fn chain(terms: usize) -> Expr {
        (1..terms).fold(col("a").eq(lit(0)), |expr, i| {
            expr.or(col("a").eq(lit(i as i64)))
        })
    }

    #[test]
    fn deep_expressions_are_measured_without_recursion() {
        assert!(within_pushdown_depth(&col("a")));
        assert!(within_pushdown_depth(&chain(200)));
        assert!(!within_pushdown_depth(&chain(300)));
        // Far deeper than any stack would allow a recursive walk.
        let deep = chain(50_000);
        assert!(!within_pushdown_depth(&deep));
        // A wide expression is not a deep one.
        let wide = col("a").in_list((0..50_000).map(lit).collect(), false);
        assert!(within_pushdown_depth(&wide));
        // Dropping the deep tree recurses too; a thread with room for it does that here.
        std::thread::Builder::new()
            .stack_size(256 << 20)
            .spawn(move || drop(deep))
            .expect("a thread")
            .join()
            .expect("dropped");
    }
}
