//! A join of two derived tables of one source, run by the database as one statement.

use crate::dialect::Dialect;
use crate::error::SqlError;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JoinKind {
    Inner,
    Left,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Side {
    Left,
    Right,
}

/// `SELECT <outputs AS c0, c1, …> FROM (<left>) AS t0 <kind> JOIN (<right>) AS t1 ON t0.a = t1.b AND …`.
///
/// Each side is a statement already proven alone (a scan's SELECT, or an earlier pushed
/// join); wrapping them as derived tables keeps their own filters and column names intact.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteJoin {
    pub left: String,
    pub right: String,
    pub kind: JoinKind,
    /// Equality conditions: (left column, right column), by the names the sides output.
    pub on: Vec<(String, String)>,
    /// The output columns in order: which side and which of its columns.
    pub output: Vec<(Side, String)>,
}

impl RemoteJoin {
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
        let kind = match self.kind {
            JoinKind::Inner => "INNER JOIN",
            JoinKind::Left => "LEFT JOIN",
        };
        Ok(format!(
            "SELECT {} FROM ({}) AS {left} {kind} ({}) AS {right} ON {}",
            items.join(", "),
            self.left,
            self.right,
            conditions.join(" AND ")
        ))
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
        let no_keys = RemoteJoin { on: vec![], ..join };
        assert!(no_keys.to_sql(Dialect::Sqlite).is_err());
    }
}
