//! The process-wide ODBC environment, the driver manager's one-at-a-time work, and the
//! translation of driver errors into [`OdbcError`].
//!
//! unixODBC 2.3.11 (Debian 12's) now and then finds no drivers in `odbcinst.ini`: about one
//! fresh `ibarrow` process in twenty opening three sources failed with "can't open lib …
//! file not found" or "installed drivers: none", although nothing else in the process was
//! calling the driver manager at that moment. So:
//! - the drivers and their libraries are listed once per process, asked again when a listing
//!   comes back empty, and connection strings name a driver's library rather than its name
//!   (the driver manager's lookup by name is what fails);
//! - a connect that fails to load a listed driver is tried again after a pause;
//! - the first connection through a driver, the closing of its last one, and listing drivers
//!   or data sources are done one at a time in the process (the driver manager loads and
//!   unloads driver libraries then); everything else runs concurrently;
//! - a connect error never calls a listed driver missing: the driver manager's words are kept.

use std::collections::BTreeMap;
use std::mem::ManuallyDrop;
use std::ops::Deref;
use std::sync::{Mutex, MutexGuard};

use odbc_api::{Connection, Environment};

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

/// Open connections per driver (by the name a connection string gives it); see the module
/// notes. Held while the driver manager loads or unloads a driver.
static DRIVER_MANAGER: Mutex<BTreeMap<String, usize>> = Mutex::new(BTreeMap::new());

fn driver_manager() -> MutexGuard<'static, BTreeMap<String, usize>> {
    DRIVER_MANAGER
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A connection opened through [`open_connection`]: closing the last one of its driver waits
/// for the driver manager, as loading it did.
pub struct OpenConnection {
    connection: ManuallyDrop<Connection<'static>>,
    driver: String,
}

impl Deref for OpenConnection {
    type Target = Connection<'static>;

    fn deref(&self) -> &Connection<'static> {
        &self.connection
    }
}

impl Drop for OpenConnection {
    fn drop(&mut self) {
        let mut loads = driver_manager();
        let live = loads.get(&self.driver).copied().unwrap_or(0);
        if live <= 1 {
            loads.remove(&self.driver);
            // SAFETY: dropped exactly once, here; the field is never used afterwards.
            unsafe { ManuallyDrop::drop(&mut self.connection) };
        } else {
            loads.insert(self.driver.clone(), live - 1);
            drop(loads);
            // SAFETY: as above.
            unsafe { ManuallyDrop::drop(&mut self.connection) };
        }
    }
}

/// Opens a connection through `driver` with `connect`: beside other connections when the
/// driver is loaded already, alone while the driver manager loads it.
pub(crate) fn open_connection(
    driver: &str,
    connect: impl FnOnce() -> Result<Connection<'static>, odbc_api::Error>,
) -> Result<OpenConnection, odbc_api::Error> {
    let mut loads = driver_manager();
    let wrap = |connection| OpenConnection {
        connection: ManuallyDrop::new(connection),
        driver: driver.to_string(),
    };
    match loads.get_mut(driver) {
        Some(live) => {
            // Counted before connecting, so the driver stays loaded meanwhile.
            *live += 1;
            drop(loads);
            connect().map(wrap).inspect_err(|_| {
                let mut loads = driver_manager();
                match loads.get(driver).copied() {
                    Some(live) if live > 1 => {
                        loads.insert(driver.to_string(), live - 1);
                    }
                    _ => {
                        loads.remove(driver);
                    }
                }
            })
        }
        None => {
            let connection = connect()?;
            loads.insert(driver.to_string(), 1);
            Ok(wrap(connection))
        }
    }
}

/// How often the driver list is asked for before the process takes it to be empty.
const LISTING_ATTEMPTS: u32 = 5;

/// The installed drivers and their libraries, listed once: by the first connect of the
/// process, before any other connect can run beside the listing.
fn driver_list() -> &'static [(String, Option<String>)] {
    static DRIVERS: std::sync::OnceLock<Vec<(String, Option<String>)>> = std::sync::OnceLock::new();
    DRIVERS.get_or_init(|| {
        let Ok(env) = odbc_environment() else {
            return Vec::new();
        };
        // unixODBC 2.3.11 now and then lists no drivers at all (seen in about one process start
        // in twenty with three sources); a second look a moment later finds them.
        let mut drivers = Vec::new();
        for attempt in 1..=LISTING_ATTEMPTS {
            let listed = {
                let _one_at_a_time = driver_manager();
                env.drivers()
            };
            match listed {
                Ok(listed) if !listed.is_empty() => {
                    drivers = listed;
                    break;
                }
                Ok(_) => tracing::debug!(attempt, "the driver manager listed no drivers"),
                Err(err) => tracing::debug!(attempt, error = %err, "listing drivers failed"),
            }
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        drivers
            .into_iter()
            .map(|driver| {
                let attribute = |key: &str| {
                    driver
                        .attributes
                        .iter()
                        .find(|(k, _)| k.eq_ignore_ascii_case(key))
                        .map(|(_, v)| v.clone())
                };
                let library = attribute("Driver64")
                    .or_else(|| attribute("Driver"))
                    .filter(|path| !path.is_empty());
                (driver.description, library)
            })
            .collect()
    })
}

/// The shared library of the installed driver `name` (its `Driver64` or `Driver` attribute),
/// or `None` for a driver the driver manager does not list.
pub(crate) fn driver_library(name: &str) -> Option<String> {
    driver_list()
        .iter()
        .find(|(listed, _)| listed.eq_ignore_ascii_case(name))
        .and_then(|(_, library)| library.clone())
}

/// Names of the installed ODBC drivers, as `odbcinst -q -d` lists them.
pub fn installed_drivers() -> Vec<String> {
    driver_list().iter().map(|(name, _)| name.clone()).collect()
}

/// The driver a connection string names, or the driver of its DSN (from `odbc.ini`).
pub(crate) fn driver_name(connection_string: &ConnectionString) -> String {
    if let Some(driver) = connection_string.get("Driver") {
        return driver.trim_matches(|c| c == '{' || c == '}').to_string();
    }
    let Some(dsn) = connection_string.get("DSN") else {
        return String::new();
    };
    let Ok(env) = odbc_environment() else {
        return String::new();
    };
    let sources = {
        let _one_at_a_time = driver_manager();
        env.data_sources()
    };
    sources
        .ok()
        .and_then(|sources| {
            sources
                .into_iter()
                .find(|s| s.server_name.eq_ignore_ascii_case(dsn))
                .map(|s| s.driver)
        })
        .unwrap_or_default()
}

/// Whether a failed connect says the driver manager could not load the driver.
pub(crate) fn is_driver_load_failure(err: &odbc_api::Error) -> bool {
    let odbc_api::Error::Diagnostics { record, .. } = err else {
        return false;
    };
    let message = record.to_string().to_ascii_lowercase();
    record.state.as_str() == "IM002"
        || message.contains("can't open lib")
        || message.contains("file not found")
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

/// What to install for the driver named `driver`: the Debian/Ubuntu package of the drivers
/// whose package is known, else a general hint.
pub(crate) fn install_hint(driver: &str) -> String {
    let name = driver.trim_matches(['{', '}']).to_ascii_lowercase();
    let package = if name.contains("postgres") {
        Some("odbc-postgresql")
    } else if name.contains("mariadb") || name.contains("mysql") {
        Some("odbc-mariadb")
    } else if name.contains("sqlite") {
        Some("libsqliteodbc")
    } else if name.contains("freetds") {
        Some("tdsodbc")
    } else {
        None
    };
    match package {
        Some(package) => format!("Install it with `apt-get install {package}` (Debian, Ubuntu)"),
        None if name.contains("sql server") => "Install Microsoft's ODBC Driver for SQL Server \
             (package msodbcsql18 from Microsoft's repository)"
            .to_string(),
        None => {
            "Install the database vendor's ODBC driver and register it in odbcinst.ini".to_string()
        }
    }
}

/// Classifies a failed connect: missing driver, bad login, or anything else. A driver the
/// driver manager lists is never called missing: the driver's own words are kept.
pub(crate) fn connect_error(
    source_name: &str,
    connection: &ConnectionString,
    err: odbc_api::Error,
) -> OdbcError {
    let (state, message) = describe(&err, connection);
    let lower = message.to_ascii_lowercase();
    let installed = installed_drivers();
    if is_driver_load_failure(&err)
        && let Some(driver) = connection.get("Driver")
        && !installed
            .iter()
            .any(|listed| listed.eq_ignore_ascii_case(driver.trim_matches(['{', '}'])))
    {
        return OdbcError::DriverNotInstalled {
            source_name: source_name.to_string(),
            install: install_hint(driver),
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
