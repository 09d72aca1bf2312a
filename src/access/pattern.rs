//! Names in grants: `source.schema.table` for tables, `source.schema.table.column` for
//! columns, each part matched on its own with `*` (any run of characters) and `?` (one
//! character), case-insensitively: a grant or a denial must not miss a table because a
//! database reports its names in another case.

use crate::error::{Error, Result};

/// A pattern of a fixed number of dot-separated parts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NamePattern {
    parts: Vec<String>,
}

impl NamePattern {
    /// Parses `text` as `parts` dot-separated parts; `location` names the setting in errors.
    pub fn parse(text: &str, parts: usize, location: &str) -> Result<Self> {
        let split: Vec<String> = text.split('.').map(str::to_lowercase).collect();
        if split.len() != parts || split.iter().any(String::is_empty) {
            let shape = if parts == 3 {
                "source.schema.table, e.g. \"pg.public.*\""
            } else {
                "source.schema.table.column, e.g. \"maria.crm.customers.ssn\""
            };
            return Err(Error::Config {
                location: location.to_string(),
                message: format!("`{text}` is not a name of the form {shape}"),
            });
        }
        Ok(Self { parts: split })
    }

    /// Whether the name made of `parts` matches, part by part.
    pub fn matches(&self, parts: &[&str]) -> bool {
        self.parts.len() == parts.len()
            && self
                .parts
                .iter()
                .zip(parts)
                .all(|(pattern, name)| glob(pattern.as_bytes(), name.to_lowercase().as_bytes()))
    }
}

impl std::fmt::Display for NamePattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.parts.join("."))
    }
}

/// `*` and `?` matching, iterative with one backtrack point (linear in practice, no recursion
/// to blow up on hostile patterns).
pub(crate) fn glob(pattern: &[u8], name: &[u8]) -> bool {
    let (mut p, mut n) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while n < name.len() {
        match pattern.get(p) {
            Some(b'*') => {
                star = Some((p, n));
                p += 1;
            }
            Some(&c) if c == b'?' || c == name[n] => {
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
    pattern[p..].iter().all(|&c| c == b'*')
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(text: &str) -> NamePattern {
        NamePattern::parse(text, 3, "test").unwrap()
    }

    #[test]
    fn each_part_matches_on_its_own() {
        assert!(table("pg.public.*").matches(&["pg", "public", "orders"]));
        assert!(table("pg.*.*").matches(&["pg", "sales", "orders"]));
        assert!(!table("pg.public.*").matches(&["pg", "private", "orders"]));
        assert!(!table("pg.public.*").matches(&["maria", "public", "orders"]));
        assert!(table("maria.crm.cust?mers").matches(&["maria", "crm", "customers"]));
        assert!(!table("maria.crm.cust?mers").matches(&["maria", "crm", "custmers"]));
        assert!(table("*.*.order*").matches(&["lite", "main", "orders_2024"]));
        assert!(!table("*.*.order*").matches(&["lite", "main", "reorders"]));
    }

    #[test]
    fn names_match_in_any_case() {
        assert!(table("Maria.CRM.customers").matches(&["maria", "crm", "CUSTOMERS"]));
    }

    #[test]
    fn a_pattern_of_the_wrong_shape_is_a_config_error() {
        for bad in ["pg.*", "pg.public.orders.extra", "pg..orders", ""] {
            let err = NamePattern::parse(bad, 3, "[roles.analyst] read")
                .unwrap_err()
                .to_string();
            assert!(
                err.contains("[roles.analyst] read") && err.contains("source.schema.table"),
                "{bad}: {err}"
            );
        }
        assert!(NamePattern::parse("a.b.c.d", 4, "x").is_ok());
    }

    /// The matcher agrees with a plain recursive definition on many generated pairs.
    #[test]
    fn glob_agrees_with_its_definition() {
        fn reference(p: &[u8], n: &[u8]) -> bool {
            match (p.first(), n.first()) {
                (None, _) => n.is_empty(),
                (Some(b'*'), _) => {
                    reference(&p[1..], n) || (!n.is_empty() && reference(p, &n[1..]))
                }
                (Some(&c), Some(&d)) if c == b'?' || c == d => reference(&p[1..], &n[1..]),
                _ => false,
            }
        }
        let alphabet = b"ab*?";
        let mut state: u64 = 0x2545_f491_4f6c_dd1d;
        let mut next = || {
            state ^= state << 13;
            state ^= state >> 7;
            state ^= state << 17;
            state
        };
        for _ in 0..20_000 {
            let p: Vec<u8> = (0..next() % 6)
                .map(|_| alphabet[(next() % 4) as usize])
                .collect();
            let n: Vec<u8> = (0..next() % 6)
                .map(|_| alphabet[(next() % 2) as usize])
                .collect();
            assert_eq!(glob(&p, &n), reference(&p, &n), "{p:?} {n:?}");
        }
    }
}
