//! The process-wide ODBC environment and the translation of driver errors into [`OdbcError`].

use odbc_api::Environment;

use crate::connection_string::ConnectionString;
use crate::error::OdbcError;

/// The one ODBC environment of the process.
pub fn odbc_environment() -> Result<&'static Environment, OdbcError> {
    odbc_api::environment().map_err(|err| OdbcError::Odbc {
        source_name: "-".into(),
        context: "allocating the ODBC environment (is unixODBC installed? \
                  `apt-get install unixodbc`)"
            .into(),
        message: err.to_string(),
    })
}

/// Names of the installed ODBC drivers, as `odbcinst -q -d` lists them.
pub fn installed_drivers() -> Vec<String> {
    odbc_environment()
        .and_then(|env| {
            env.drivers().map_err(|err| OdbcError::Odbc {
                source_name: "-".into(),
                context: "listing drivers".into(),
                message: err.to_string(),
            })
        })
        .map(|drivers| drivers.into_iter().map(|d| d.description).collect())
        .unwrap_or_default()
}

/// The SQLSTATE and message of a driver error, with the connection's secrets scrubbed.
pub(crate) fn describe(err: &odbc_api::Error, connection: &ConnectionString) -> (String, String) {
    let state = match err {
        odbc_api::Error::Diagnostics { record, .. } => record.state.as_str().to_string(),
        _ => String::new(),
    };
    let message = match err {
        odbc_api::Error::Diagnostics { record, .. } => {
            let text = record.to_string();
            // Keep the driver's words, drop odbc-api's "State: …, Native error: …" prefix noise.
            text.split_once("Message: ")
                .map(|(_, m)| m.to_string())
                .unwrap_or(text)
        }
        other => other.to_string(),
    };
    (state, connection.scrub(message.trim()))
}

/// Classifies a failed connect: missing driver, bad login, or anything else.
pub(crate) fn connect_error(
    source_name: &str,
    connection: &ConnectionString,
    err: odbc_api::Error,
) -> OdbcError {
    let (state, message) = describe(&err, connection);
    let lower = message.to_ascii_lowercase();
    if (state == "IM002" || lower.contains("can't open lib") || lower.contains("file not found"))
        && let Some(driver) = connection.get("Driver")
    {
        let installed = installed_drivers();
        return OdbcError::DriverNotInstalled {
            source_name: source_name.to_string(),
            driver: driver.to_string(),
            installed: if installed.is_empty() {
                "none".into()
            } else {
                installed.join(", ")
            },
        };
    }
    if state == "28000"
        || lower.contains("password authentication failed")
        || lower.contains("access denied")
        || lower.contains("authentication failed")
    {
        return OdbcError::LoginFailed {
            source_name: source_name.to_string(),
            connection: connection.redacted(),
            message,
        };
    }
    OdbcError::ConnectFailed {
        source_name: source_name.to_string(),
        connection: connection.redacted(),
        message,
    }
}
