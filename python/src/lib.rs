//! `ibarrow._internal`: the compiled half of the Python package. The Python modules in
//! `python/ibarrow/` wrap these classes and add the pyarrow/polars/pandas conveniences.

mod engine;
mod errors;
mod legacy;
mod params;
mod query;
mod result;
mod runtime;
mod table;

use pyo3::prelude::*;

#[pymodule]
fn _internal(module: &Bound<'_, PyModule>) -> PyResult<()> {
    module.add_class::<engine::PyEngine>()?;
    module.add_class::<engine::PySession>()?;
    module.add_class::<engine::PyPreparedStatement>()?;
    module.add_class::<result::PyQueryResult>()?;
    module.add_class::<result::PyArrowBatches>()?;
    module.add_class::<result::PyBatchStream>()?;
    module.add_class::<table::PyTable>()?;
    module.add_class::<query::PyQuery>()?;
    module.add_class::<query::PyExpr>()?;
    module.add_class::<query::PySortExpr>()?;
    module.add_function(wrap_pyfunction!(query::col, module)?)?;
    module.add_function(wrap_pyfunction!(query::lit, module)?)?;
    module.add_function(wrap_pyfunction!(query::aggregate, module)?)?;
    module.add_class::<legacy::PyQueryConfig>()?;
    module.add_class::<legacy::PyConnection>()?;
    module.add_function(wrap_pyfunction!(table::odbc_table, module)?)?;
    module.add_function(wrap_pyfunction!(engine::init_logging, module)?)?;
    module.add_function(wrap_pyfunction!(legacy::connect, module)?)?;
    // The DataFusion major version whose FFI layout this build speaks.
    module.add("DATAFUSION_FFI_MAJOR", datafusion_ffi::version())?;
    module.add("__version__", env!("CARGO_PKG_VERSION"))?;
    Ok(())
}
