//! Which relations of a store a source exposes: catalog.toml's `include` and `exclude`
//! patterns.

/// The `include` and `exclude` glob patterns of a source.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NameFilter {
    include: Vec<String>,
    exclude: Vec<String>,
}

impl NameFilter {
    /// Exposes the names matching one of `include` (every name when it is empty) and none of
    /// `exclude`.
    pub fn new(include: Vec<String>, exclude: Vec<String>) -> Self {
        Self { include, exclude }
    }

    /// Whether the patterns expose relation `name`.
    pub fn exposes(&self, name: &str) -> bool {
        (self.include.is_empty() || self.include.iter().any(|p| glob_matches(p, name)))
            && !self.exclude.iter().any(|p| glob_matches(p, name))
    }
}

/// Whether `name` matches the glob `pattern`: `*` matches any run of characters, `?` one
/// character, anything else itself (case-sensitively, as store names are).
fn glob_matches(pattern: &str, name: &str) -> bool {
    let pattern: Vec<char> = pattern.chars().collect();
    let name: Vec<char> = name.chars().collect();
    // Backtracking over the last `*`: linear in practice, never exponential.
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while let Some(&at) = name.get(n) {
        match pattern.get(p) {
            Some('*') => {
                star = Some((p, n));
                p += 1;
            }
            Some('?') => {
                p += 1;
                n += 1;
            }
            Some(&c) if c == at => {
                p += 1;
                n += 1;
            }
            _ => match star {
                Some((star_p, star_n)) => {
                    p = star_p + 1;
                    n = star_n + 1;
                    star = Some((star_p, star_n + 1));
                }
                None => return false,
            },
        }
    }
    pattern.iter().skip(p).all(|&c| c == '*')
}

#[cfg(test)]
mod tests {
    use super::{NameFilter, glob_matches};

    #[test]
    fn globs_match_whole_names() {
        let cases = [
            ("orders", "orders", true),
            ("orders", "orders_2024", false),
            ("orders*", "orders_2024", true),
            ("*_2024", "orders_2024", true),
            ("*_2024", "orders_2023", false),
            ("o?ders", "orders", true),
            ("o?ders", "oders", false),
            ("*", "", true),
            ("", "", true),
            ("a*b*c", "aXXbYYc", true),
            ("a*b*c", "aXXbYY", false),
            ("Orders", "orders", false),
            ("*tmp*", "a_tmp_b", true),
        ];
        for (pattern, name, expected) in cases {
            assert_eq!(glob_matches(pattern, name), expected, "{pattern} ~ {name}");
        }
    }

    #[test]
    fn exclude_wins_over_include() {
        let filter = NameFilter::new(vec!["orders*".into()], vec!["*_tmp".into()]);
        assert!(filter.exposes("orders"));
        assert!(!filter.exposes("orders_tmp"));
        assert!(!filter.exposes("customers"));
        assert!(NameFilter::default().exposes("anything"));
    }
}
