//! A join of two derived tables of one source, run by the database as one statement.

use crate::dialect::Dialect;
use crate::error::SqlError;

/// Which rows a pushed join keeps.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    /// `INNER JOIN`: the pairs of matching rows.
    Inner,
    /// `LEFT JOIN`: the matching pairs, and each left row without a match with NULLs.
    Left,
    /// The left rows with at least one match (`EXISTS`, `IN`), each once.
    Semi,
    /// The left rows without a match (`NOT EXISTS`); a NULL key matches nothing, so its row
    /// is kept — `NOT IN`'s different NULL rule is not this kind.
    Anti,
}

/// One side of a pushed join.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    /// The first table, aliased `t0`.
    Left,
    /// The second table, aliased `t1`.
    Right,
}

/// `SELECT <outputs AS c0, c1, …> FROM (<left>) AS t0 <kind> JOIN (<right>) AS t1 ON t0.a = t1.b AND …`,
/// or for semi and anti joins `… FROM (<left>) AS t0 WHERE [NOT] EXISTS (SELECT 1 FROM
/// (<right>) AS t1 WHERE t0.a = t1.b AND …)`.
///
/// Each side is a statement already proven alone (a scan's SELECT, or an earlier pushed
/// join); wrapping them as derived tables keeps their own filters and column names intact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteJoin {
    /// The left side's statement, wrapped as `t0`.
    pub left: String,
    /// The right side's statement, wrapped as `t1`.
    pub right: String,
    /// Which rows the join keeps.
    pub kind: JoinKind,
    /// Equality conditions: (left column, right column), by the names the sides output.
    pub on: Vec<(String, String)>,
    /// The output columns in order: which side and which of its columns.
    pub output: Vec<(Side, String)>,
}

impl RemoteJoin {
    /// The statement in `dialect`. Refuses a join without outputs or equalities, and a semi
    /// or anti join that outputs right columns.
    pub fn to_sql(&self, dialect: Dialect) -> Result<String, SqlError> {
        let quote = |c: &str| dialect.quote_identifier(c);
        let (left, right) = (quote("t0")?, quote("t1")?);
        let alias = |side: Side| match side {
            Side::Left => &left,
            Side::Right => &right,
        };
        let items = self
            .output
            .iter()
            .enumerate()
            .map(|(i, (side, column))| {
                Ok(format!(
                    "{}.{} AS {}",
                    alias(*side),
                    quote(column)?,
                    quote(&format!("c{i}"))?
                ))
            })
            .collect::<Result<Vec<_>, SqlError>>()?;
        let conditions = self
            .on
            .iter()
            .map(|(l, r)| Ok(format!("{left}.{} = {right}.{}", quote(l)?, quote(r)?)))
            .collect::<Result<Vec<_>, SqlError>>()?;
        if items.is_empty() || conditions.is_empty() {
            return Err(SqlError::NotRemote(
                "a pushed join needs output columns and at least one equality".into(),
            ));
        }
        let (left_sql, right_sql, on) = (&self.left, &self.right, conditions.join(" AND "));
        let from = match self.kind {
            JoinKind::Inner => {
                format!("({left_sql}) AS {left} INNER JOIN ({right_sql}) AS {right} ON {on}")
            }
            JoinKind::Left => {
                format!("({left_sql}) AS {left} LEFT JOIN ({right_sql}) AS {right} ON {on}")
            }
            JoinKind::Semi | JoinKind::Anti => {
                if self.output.iter().any(|(side, _)| *side == Side::Right) {
                    return Err(SqlError::NotRemote(
                        "a semi or anti join outputs only columns of its left side".into(),
                    ));
                }
                let not = if self.kind == JoinKind::Anti {
                    "NOT "
                } else {
                    ""
                };
                format!(
                    "({left_sql}) AS {left} WHERE {not}EXISTS (SELECT 1 FROM ({right_sql}) AS {right} WHERE {on})"
                )
            }
        };
        Ok(format!("SELECT {} FROM {from}", items.join(", ")))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_a_join_of_derived_tables() {
        let join = RemoteJoin {
            left: r#"SELECT "id", "customer_id" FROM "public"."orders" WHERE ("id" > 3)"#.into(),
            right: r#"SELECT "id", "name" FROM "public"."customers""#.into(),
            kind: JoinKind::Inner,
            on: vec![("customer_id".into(), "id".into())],
            output: vec![(Side::Left, "id".into()), (Side::Right, "name".into())],
        };
        assert_eq!(
            join.to_sql(Dialect::PostgreSql).unwrap(),
            r#"SELECT "t0"."id" AS "c0", "t1"."name" AS "c1" FROM (SELECT "id", "customer_id" FROM "public"."orders" WHERE ("id" > 3)) AS "t0" INNER JOIN (SELECT "id", "name" FROM "public"."customers") AS "t1" ON "t0"."customer_id" = "t1"."id""#
        );
        let left = RemoteJoin {
            kind: JoinKind::Left,
            ..join.clone()
        };
        assert!(
            left.to_sql(Dialect::MySql)
                .unwrap()
                .contains(") AS `t0` LEFT JOIN (")
        );
        let no_keys = RemoteJoin {
            on: vec![],
            ..join.clone()
        };
        assert!(no_keys.to_sql(Dialect::Sqlite).is_err());
    }

    #[test]
    fn renders_semi_and_anti_joins_as_exists() {
        let semi = RemoteJoin {
            left: r#"SELECT "id" FROM "customers""#.into(),
            right: r#"SELECT "customer_id" FROM "orders""#.into(),
            kind: JoinKind::Semi,
            on: vec![("id".into(), "customer_id".into())],
            output: vec![(Side::Left, "id".into())],
        };
        assert_eq!(
            semi.to_sql(Dialect::Sqlite).unwrap(),
            r#"SELECT "t0"."id" AS "c0" FROM (SELECT "id" FROM "customers") AS "t0" WHERE EXISTS (SELECT 1 FROM (SELECT "customer_id" FROM "orders") AS "t1" WHERE "t0"."id" = "t1"."customer_id")"#
        );
        let anti = RemoteJoin {
            kind: JoinKind::Anti,
            ..semi.clone()
        };
        assert!(
            anti.to_sql(Dialect::MySql)
                .unwrap()
                .contains(" AS `t0` WHERE NOT EXISTS (SELECT 1 FROM (")
        );
        // The right side's columns do not exist outside the EXISTS.
        let right_output = RemoteJoin {
            output: vec![(Side::Right, "customer_id".into())],
            ..semi
        };
        assert!(right_output.to_sql(Dialect::PostgreSql).is_err());
    }
}
