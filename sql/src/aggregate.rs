//! A grouped aggregate over one remote table, run by the database as one statement.

use crate::dialect::Dialect;
use crate::error::SqlError;
use crate::select::RemoteTable;

/// An aggregate the remote statement computes; column names are remote names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AggregateCall {
    /// `COUNT(*)`
    CountRows,
    /// `COUNT(column)`: the column's non-null values.
    Count(String),
    /// `SUM(column)`
    Sum(String),
    /// `MIN(column)`
    Min(String),
    /// `MAX(column)`
    Max(String),
    /// `SUM` of an expression already rendered ([`crate::render_exact_decimal`]).
    SumOf(String),
    /// `COUNT` of an expression already rendered.
    CountOf(String),
}

/// `SELECT <group columns>, <aggregates> (named c0, c1, …) FROM <table> [WHERE …] [GROUP BY <group columns>]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoteAggregate {
    /// The table aggregated.
    pub table: RemoteTable,
    /// Remote columns grouped by, output first; empty for one row over the whole table.
    pub group_by: Vec<String>,
    /// The aggregates, output after the group columns.
    pub aggregates: Vec<AggregateCall>,
    /// Already-rendered conditions (from [`crate::render_filter`]), joined with AND.
    pub filters: Vec<String>,
}

impl RemoteAggregate {
    /// The statement in `dialect`; fails when a name cannot be quoted in it.
    pub fn to_sql(&self, dialect: Dialect) -> Result<String, SqlError> {
        let quote = |c: &str| dialect.quote_identifier(c);
        let groups = self
            .group_by
            .iter()
            .map(|c| quote(c))
            .collect::<Result<Vec<_>, _>>()?;
        let mut items = groups.clone();
        for call in &self.aggregates {
            items.push(match call {
                AggregateCall::CountRows => "COUNT(*)".to_string(),
                AggregateCall::Count(c) => format!("COUNT({})", quote(c)?),
                AggregateCall::Sum(c) => format!("SUM({})", quote(c)?),
                AggregateCall::Min(c) => format!("MIN({})", quote(c)?),
                AggregateCall::Max(c) => format!("MAX({})", quote(c)?),
                AggregateCall::SumOf(sql) => format!("SUM({sql})"),
                AggregateCall::CountOf(sql) => format!("COUNT({sql})"),
            });
        }
        // Output columns are named c0, c1, … so that the statement can be wrapped and projected.
        let items = items
            .into_iter()
            .enumerate()
            .map(|(i, item)| Ok(format!("{item} AS {}", quote(&format!("c{i}"))?)))
            .collect::<Result<Vec<_>, SqlError>>()?;
        let mut sql = format!(
            "SELECT {} FROM {}",
            items.join(", "),
            self.table.render(dialect)?
        );
        if !self.filters.is_empty() {
            sql.push_str(" WHERE ");
            sql.push_str(&self.filters.join(" AND "));
        }
        if !groups.is_empty() {
            sql.push_str(" GROUP BY ");
            sql.push_str(&groups.join(", "));
        }
        Ok(sql)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn renders_grouped_aggregates() {
        let aggregate = RemoteAggregate {
            table: RemoteTable::new(Some("public"), "orders"),
            group_by: vec!["status".into()],
            aggregates: vec![AggregateCall::CountRows, AggregateCall::Sum("total".into())],
            filters: vec!["(\"id\" > 3)".into()],
        };
        assert_eq!(
            aggregate.to_sql(Dialect::PostgreSql).unwrap(),
            r#"SELECT "status" AS "c0", COUNT(*) AS "c1", SUM("total") AS "c2" FROM "public"."orders" WHERE ("id" > 3) GROUP BY "status""#
        );
        let ungrouped = RemoteAggregate {
            group_by: vec![],
            ..aggregate
        };
        assert_eq!(
            ungrouped.to_sql(Dialect::MySql).unwrap(),
            "SELECT COUNT(*) AS `c0`, SUM(`total`) AS `c1` FROM `public`.`orders` WHERE (\"id\" > 3)"
        );
    }
}
