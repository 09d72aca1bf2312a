//! Connection-string keys ibarrow sets per ODBC driver.

use crate::connection_string::ConnectionString;
use crate::environment::driver_name;

use super::ScanOptions;

/// Driver keys ibarrow sets. Security settings are forced; performance ones are defaults the
/// user's connection string may override.
pub(super) fn apply_driver_settings(connection_string: &mut ConnectionString, scan: &ScanOptions) {
    let driver = driver_name(connection_string).to_ascii_lowercase();
    if driver.contains("postgres") || driver.contains("psql") {
        // CommLog/Debug write the password into world-readable files in the temp folder.
        connection_string.force("CommLog", "0");
        connection_string.force("Debug", "0");
        // Without declare/fetch psqlODBC reads the whole result into memory before the first row.
        connection_string.set_default("UseDeclareFetch", "1");
        connection_string.set_default("Fetch", &scan.batch_rows.to_string());
        connection_string.set_default("BoolsAsChar", "0");
        // Unbounded varchar and text are otherwise described as 255 and 8190 characters long.
        let max_text = scan.max_text_size.to_string();
        connection_string.set_default("MaxVarcharSize", &max_text);
        connection_string.set_default("MaxLongVarcharSize", &max_text);
        // A network that goes dead under a connection (no acknowledgements) ends its reads
        // within about a minute instead of the kernel's two hours; ibarrow's own deadline has
        // freed the query long before, this frees the thread.
        connection_string.set_default("KeepaliveTime", "10");
        connection_string.set_default("KeepaliveInterval", "5");
    } else if driver.contains("maria") || driver.contains("mysql") {
        // The driver's own socket limits, past ibarrow's deadline: a server that stops
        // answering frees the thread too (Connector/C reads up to three times each).
        if let Some(timeout) = scan.query_timeout {
            let seconds = (timeout.as_secs() + 5).to_string();
            connection_string.set_default("READ_TIMEOUT", &seconds);
            connection_string.set_default("WRITE_TIMEOUT", &seconds);
        }
    } else if driver.contains("sqlite") {
        // Without StepAPI the driver materialises the whole result before the first row.
        connection_string.set_default("StepAPI", "1");
    }
}
