//! `AVG` of a decimal, finished locally from a remote `SUM` and `COUNT` exactly as DataFusion's
//! own `avg` finishes: the sum scaled up to the result's scale, then divided by the count
//! with truncation, checked against the result's precision. Databases round their averages
//! to scales of their own, so the division never runs remotely.

use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, Decimal128Builder};
use datafusion::arrow::datatypes::{DataType, Decimal128Type, DecimalType, Int64Type};
use datafusion::common::{Result, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};

/// `decimal_average(sum, count)`: `sum` is `Decimal128(38, input scale)`, `count` an Int64;
/// the result has the type DataFusion's `avg` gives the input.
#[derive(Debug, PartialEq, Eq, Hash)]
pub(super) struct DecimalAverage {
    signature: Signature,
    sum_scale: i8,
    precision: u8,
    scale: i8,
}

/// The settings of a `decimal_average` function (`sum_scale`, result precision, result
/// scale), for sending a plan that calls it to another process; `None` for any other
/// function.
pub fn decimal_average_settings(udf: &ScalarUDF) -> Option<(i8, u8, i8)> {
    let average = udf.inner().downcast_ref::<DecimalAverage>()?;
    Some((average.sum_scale, average.precision, average.scale))
}

/// The `decimal_average` function [`decimal_average_settings`] described; `None` when the
/// settings are not those of one.
pub fn decimal_average(sum_scale: i8, precision: u8, scale: i8) -> Option<Arc<ScalarUDF>> {
    DecimalAverage::udf(sum_scale, &DataType::Decimal128(precision, scale))
}

impl DecimalAverage {
    /// `None` unless `result` is a decimal of no smaller scale than the sum's.
    pub(super) fn udf(sum_scale: i8, result: &DataType) -> Option<Arc<ScalarUDF>> {
        let DataType::Decimal128(precision, scale) = *result else {
            return None;
        };
        (scale >= sum_scale && scale - sum_scale <= 38).then(|| {
            Arc::new(ScalarUDF::new_from_impl(Self {
                signature: Signature::exact(
                    vec![DataType::Decimal128(38, sum_scale), DataType::Int64],
                    Volatility::Immutable,
                ),
                sum_scale,
                precision,
                scale,
            }))
        })
    }

    fn average(&self, sum: i128, count: i64) -> Result<Option<i128>> {
        if count == 0 {
            return Ok(None);
        }
        let factor = 10_i128.pow((self.scale - self.sum_scale) as u32);
        let Some(scaled) = sum.checked_mul(factor) else {
            return exec_err!("Arithmetic Overflow in AvgAccumulator");
        };
        let average = scaled / i128::from(count);
        if Decimal128Type::validate_decimal_precision(average, self.precision, self.scale).is_err()
        {
            return exec_err!("Arithmetic Overflow in AvgAccumulator");
        }
        Ok(Some(average))
    }
}

impl ScalarUDFImpl for DecimalAverage {
    fn name(&self) -> &str {
        "decimal_average"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(DataType::Decimal128(self.precision, self.scale))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let [sums, counts] = arrays.as_slice() else {
            return exec_err!("decimal_average takes a sum and a count");
        };
        let sums = sums.as_primitive::<Decimal128Type>();
        let counts = counts.as_primitive::<Int64Type>();
        let mut averages = Decimal128Builder::with_capacity(sums.len());
        for row in 0..sums.len() {
            if sums.is_null(row) || counts.is_null(row) {
                averages.append_null();
            } else {
                averages.append_option(self.average(sums.value(row), counts.value(row))?);
            }
        }
        let averages = averages
            .finish()
            .with_precision_and_scale(self.precision, self.scale)?;
        Ok(ColumnarValue::Array(Arc::new(averages) as ArrayRef))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::array::{Decimal128Array, Int64Array};
    use datafusion::arrow::datatypes::{Field, Schema};
    use datafusion::arrow::record_batch::RecordBatch;
    use datafusion::datasource::MemTable;
    use datafusion::prelude::SessionContext;

    /// Over groups of varied sizes and signs, the average of a remote sum and count equals
    /// DataFusion's own `avg` of the values, digit for digit.
    #[tokio::test]
    async fn equals_datafusion_avg() {
        let mut groups = Vec::new();
        let mut values = Vec::new();
        let mut state: i64 = 12345;
        for group in 0..200i64 {
            for _ in 0..(group % 7 + 1) {
                state = state
                    .wrapping_mul(6364136223846793005)
                    .wrapping_add(1442695040888963407);
                groups.push(group);
                values.push(Some(i128::from((state >> 20) % 10_000_000_000)));
            }
            // Groups of only NULLs average to NULL.
            if group % 50 == 0 {
                groups.push(1000 + group);
                values.push(None);
            }
        }
        let schema = Arc::new(Schema::new(vec![
            Field::new("g", DataType::Int64, false),
            Field::new("x", DataType::Decimal128(15, 2), true),
        ]));
        let batch = RecordBatch::try_new(
            Arc::clone(&schema),
            vec![
                Arc::new(Int64Array::from(groups)),
                Arc::new(
                    Decimal128Array::from(values)
                        .with_precision_and_scale(15, 2)
                        .unwrap(),
                ),
            ],
        )
        .unwrap();
        let ctx = SessionContext::new();
        let table = MemTable::try_new(schema, vec![vec![batch]]).unwrap();
        ctx.register_table("t", Arc::new(table)).unwrap();
        let expected = ctx
            .sql("SELECT g, avg(x) AS a FROM t GROUP BY g ORDER BY g")
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let result_type = expected[0].schema().field(1).data_type().clone();
        ctx.register_udf(
            DecimalAverage::udf(2, &result_type)
                .map(|udf| udf.as_ref().clone())
                .unwrap(),
        );
        let ours = ctx
            .sql(
                "SELECT g, decimal_average(CAST(sum(x) AS DECIMAL(38, 2)), count(x)) AS a \
                 FROM t GROUP BY g ORDER BY g",
            )
            .await
            .unwrap()
            .collect()
            .await
            .unwrap();
        let text = |b: &[RecordBatch]| {
            datafusion::arrow::util::pretty::pretty_format_batches(b)
                .unwrap()
                .to_string()
        };
        assert_eq!(text(&ours), text(&expected));
        assert!(text(&ours).contains('.'));
    }
}
