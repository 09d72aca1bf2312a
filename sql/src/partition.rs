//! Range partitioning of a scan: split points → one predicate per partition.

use datafusion::scalar::ScalarValue;

use crate::dialect::Dialect;
use crate::literal::render_literal;

/// Predicates that split a table on `column` at `split_points` (ascending, distinct) into
/// `split_points.len() + 1` disjoint partitions covering every row: the first has no lower
/// bound and the last no upper bound (rows outside a stale min/max still land somewhere),
/// and the last also takes the NULL keys.
pub fn range_predicates(
    dialect: Dialect,
    column: &str,
    split_points: &[ScalarValue],
) -> Option<Vec<String>> {
    let quoted = dialect.quote_identifier(column).ok()?;
    let literals = split_points
        .iter()
        .map(|v| render_literal(dialect, v))
        .collect::<Option<Vec<_>>>()?;
    if literals.is_empty() {
        return Some(vec![]);
    }
    let mut predicates = Vec::with_capacity(literals.len() + 1);
    predicates.push(format!("({quoted} < {})", literals[0]));
    for pair in literals.windows(2) {
        predicates.push(format!(
            "({quoted} >= {} AND {quoted} < {})",
            pair[0], pair[1]
        ));
    }
    let last = &literals[literals.len() - 1];
    predicates.push(format!("({quoted} >= {last} OR {quoted} IS NULL)"));
    Some(predicates)
}

/// `partitions - 1` evenly spaced split points strictly inside `min..=max`, fewer when the
/// range is too narrow.
pub fn integer_split_points(min: i64, max: i64, partitions: usize) -> Vec<i64> {
    if partitions < 2 || max <= min {
        return vec![];
    }
    let span = (max as i128) - (min as i128) + 1;
    let mut points: Vec<i64> = (1..partitions as i128)
        .map(|i| (min as i128 + span * i / partitions as i128) as i64)
        .filter(|p| *p > min && *p <= max)
        .collect();
    points.dedup();
    points
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn predicates_cover_everything_once() {
        let points = [ScalarValue::Int64(Some(10)), ScalarValue::Int64(Some(20))];
        let predicates = range_predicates(Dialect::PostgreSql, "id", &points).unwrap();
        assert_eq!(
            predicates,
            [
                r#"("id" < 10)"#,
                r#"("id" >= 10 AND "id" < 20)"#,
                r#"("id" >= 20 OR "id" IS NULL)"#
            ]
        );
    }

    #[test]
    fn split_points_are_even_and_inside_the_range() {
        assert_eq!(integer_split_points(1, 100, 4), [26, 51, 76]);
        assert_eq!(integer_split_points(0, 1, 4), [1]);
        assert_eq!(integer_split_points(5, 5, 4), Vec::<i64>::new());
        assert_eq!(integer_split_points(i64::MIN, i64::MAX, 2), [0]);
        assert_eq!(integer_split_points(1, 100, 1), Vec::<i64>::new());
    }

    #[test]
    fn dates_split_as_date_literals() {
        let points = [ScalarValue::Date32(Some(19_723))];
        let predicates = range_predicates(Dialect::MySql, "day", &points).unwrap();
        assert_eq!(predicates[0], "(`day` < DATE '2024-01-01')");
    }
}
