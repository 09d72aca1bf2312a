//! Python values as query parameters (`Engine.sql(query, params=…)`, `PreparedStatement`):
//! a list or tuple for `$1`, `$2` …, a dict for `$name`. Each value becomes a typed DataFusion
//! scalar that replaces its placeholder in the plan; nothing is spliced into the text.

use std::collections::HashMap;

use datafusion::arrow::datatypes::{DataType, TimeUnit};
use datafusion::common::{ParamValues, ScalarValue};
use pyo3::prelude::*;
use pyo3::types::{
    PyBool, PyByteArray, PyBytes, PyDict, PyFloat, PyFrozenSet, PyInt, PySet, PyString,
};

use crate::errors::error_of_kind;

/// The parameters of one statement.
pub fn param_values(params: &Bound<'_, PyAny>) -> PyResult<ParamValues> {
    if let Ok(dict) = params.cast::<PyDict>() {
        let mut named = HashMap::new();
        for (key, value) in dict.iter() {
            let Ok(name) = key.extract::<String>() else {
                return Err(input_error(format!(
                    "parameter names are strings (for $name, pass {{\"name\": value}}), not {}",
                    type_name(&key)
                )));
            };
            let name = name.strip_prefix('$').unwrap_or(&name).to_string();
            let scalar = scalar(&value, &format!("${name}"))?;
            named.insert(name, scalar);
        }
        return Ok(ParamValues::from(named));
    }
    if params.is_instance_of::<PyString>() || params.is_instance_of::<PyBytes>() {
        return Err(input_error(
            "params is a list (for $1, $2 …) or a dict (for $name), not a single string; \
             pass [value] for one parameter"
                .into(),
        ));
    }
    // A set has no order to give $1, $2 ….
    if params.is_instance_of::<PySet>() || params.is_instance_of::<PyFrozenSet>() {
        return Err(input_error(
            "params is a list (for $1, $2 …) or a dict (for $name), not a set, whose order \
             is arbitrary"
                .into(),
        ));
    }
    let Ok(values) = params.try_iter() else {
        return Err(input_error(format!(
            "params is a list (for $1, $2 …) or a dict (for $name), not {}",
            type_name(params)
        )));
    };
    let mut list = Vec::new();
    for (n, value) in values.enumerate() {
        list.push(scalar(&value?, &format!("${}", n + 1))?);
    }
    Ok(ParamValues::from(list))
}

/// One Python value as a scalar: None, bool, int (64-bit), float, str, bytes, date,
/// datetime (naive: as written; aware: in UTC) and decimal.Decimal.
pub(crate) fn scalar(value: &Bound<'_, PyAny>, placeholder: &str) -> PyResult<ScalarValue> {
    let py = value.py();
    if value.is_none() {
        return Ok(ScalarValue::Null);
    }
    // bool before int: Python's bool is an int.
    if value.is_instance_of::<PyBool>() {
        return Ok(ScalarValue::Boolean(Some(value.extract()?)));
    }
    if value.is_instance_of::<PyInt>() {
        return match value.extract::<i64>() {
            Ok(int) => Ok(ScalarValue::Int64(Some(int))),
            Err(_) => Err(input_error(format!(
                "{placeholder}: {value} does not fit in 64 bits; pass it as decimal.Decimal or str"
            ))),
        };
    }
    if value.is_instance_of::<PyFloat>() {
        return Ok(ScalarValue::Float64(Some(value.extract()?)));
    }
    if value.is_instance_of::<PyString>() {
        return Ok(ScalarValue::Utf8(Some(value.extract()?)));
    }
    if let Ok(bytes) = value.cast::<PyBytes>() {
        return Ok(ScalarValue::Binary(Some(bytes.as_bytes().to_vec())));
    }
    if let Ok(bytes) = value.cast::<PyByteArray>() {
        return Ok(ScalarValue::Binary(Some(bytes.to_vec())));
    }
    let datetime = py.import("datetime")?;
    // datetime before date: a datetime is a date.
    if value.is_instance(&datetime.getattr("datetime")?)? {
        // Aware as Python defines it: a tzinfo that gives an offset.
        let aware = !value.call_method0("utcoffset")?.is_none();
        let (value, zone) = if aware {
            let utc = datetime.getattr("timezone")?.getattr("utc")?;
            let in_utc = value.call_method1("astimezone", (utc,)).map_err(|err| {
                input_error(format!("{placeholder}: {value} has no time in UTC: {err}"))
            })?;
            let kwargs = PyDict::new(py);
            kwargs.set_item("tzinfo", py.None())?;
            (
                in_utc.call_method("replace", (), Some(&kwargs))?,
                Some("UTC".into()),
            )
        } else {
            (value.clone(), None)
        };
        let text: String = value.call_method0("isoformat")?.extract()?;
        return parsed(
            &text,
            &DataType::Timestamp(TimeUnit::Microsecond, zone),
            placeholder,
        );
    }
    if value.is_instance(&datetime.getattr("date")?)? {
        let text: String = value.call_method0("isoformat")?.extract()?;
        return parsed(&text, &DataType::Date32, placeholder);
    }
    if value.is_instance(&py.import("decimal")?.getattr("Decimal")?)? {
        return decimal(value, placeholder);
    }
    Err(input_error(format!(
        "{placeholder}: a {} cannot be a parameter; pass None, bool, int, float, str, bytes, \
         datetime.date, datetime.datetime or decimal.Decimal",
        type_name(value)
    )))
}

/// A decimal.Decimal as an exact DECIMAL: its digits and exponent, not its float value.
fn decimal(value: &Bound<'_, PyAny>, placeholder: &str) -> PyResult<ScalarValue> {
    let (sign, digits, exponent): (i64, Vec<i64>, Bound<'_, PyAny>) =
        value.call_method0("as_tuple")?.extract()?;
    let Ok(exponent) = exponent.extract::<i64>() else {
        return Err(input_error(format!(
            "{placeholder}: {value} is not a number a database can hold"
        )));
    };
    let too_wide = || {
        input_error(format!(
            "{placeholder}: {value} has more than 38 digits; round it or pass it as str"
        ))
    };
    let mut unscaled: i128 = 0;
    for digit in &digits {
        unscaled = unscaled
            .checked_mul(10)
            .and_then(|n| n.checked_add(i128::from(*digit)))
            .ok_or_else(too_wide)?;
    }
    let scale = (-exponent).max(0);
    if exponent > 0 {
        let factor = u32::try_from(exponent)
            .ok()
            .and_then(|e| 10i128.checked_pow(e))
            .ok_or_else(too_wide)?;
        unscaled = unscaled.checked_mul(factor).ok_or_else(too_wide)?;
    }
    if sign == 1 {
        unscaled = -unscaled;
    }
    let precision = unscaled.unsigned_abs().to_string().len() as i64;
    let precision = precision.max(scale).max(1);
    if precision > 38 {
        return Err(too_wide());
    }
    Ok(ScalarValue::Decimal128(
        Some(unscaled),
        precision as u8,
        scale as i8,
    ))
}

/// `text` (an ISO date or timestamp from Python) as a scalar of `data_type`.
fn parsed(text: &str, data_type: &DataType, placeholder: &str) -> PyResult<ScalarValue> {
    ScalarValue::Utf8(Some(text.to_string()))
        .cast_to(data_type)
        .map_err(|err| input_error(format!("{placeholder}: {text} as {data_type}: {err}")))
}

fn type_name(value: &Bound<'_, PyAny>) -> String {
    value
        .get_type()
        .name()
        .map_or_else(|_| "value".to_string(), |name| name.to_string())
}

fn input_error(message: String) -> PyErr {
    error_of_kind("InputError", message)
}
