//! TLS per source, translated into each driver's own connection-string keys.

/// How much of the server's identity is checked, as libpq names the modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TlsMode {
    /// Plain connections.
    #[default]
    Disable,
    /// Encrypted, server not verified.
    Require,
    /// Encrypted, server certificate signed by the given CA.
    VerifyCa,
    /// As VerifyCa, and the certificate names the host connected to.
    VerifyFull,
}

impl std::str::FromStr for TlsMode {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        match text {
            "disable" => Ok(TlsMode::Disable),
            "require" => Ok(TlsMode::Require),
            "verify-ca" => Ok(TlsMode::VerifyCa),
            "verify-full" => Ok(TlsMode::VerifyFull),
            other => Err(format!(
                "unknown tls mode `{other}`; use disable, require, verify-ca or verify-full"
            )),
        }
    }
}

/// TLS settings of one source, turned into its driver's keys by [`tls_settings`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TlsOptions {
    /// How the connection is encrypted and the server checked (default: plain connections).
    pub mode: TlsMode,
    /// CA certificate file the server's certificate must chain to.
    pub ca: Option<String>,
    /// Client certificate and key files, for servers that ask for one.
    pub cert: Option<String>,
    /// The client certificate's private key file.
    pub key: Option<String>,
}

/// The connection-string keys that give `tls` with the driver named `driver`; an error when
/// the driver cannot do what is asked (nothing is silently dropped).
pub fn tls_settings(driver: &str, tls: &TlsOptions) -> Result<Vec<(&'static str, String)>, String> {
    let driver_lower = driver.to_ascii_lowercase();
    let mode = tls.mode;
    if driver_lower.contains("postgres") || driver_lower.contains("psql") {
        let ssl_mode = match mode {
            TlsMode::Disable => "disable",
            TlsMode::Require => "require",
            TlsMode::VerifyCa => "verify-ca",
            TlsMode::VerifyFull => "verify-full",
        };
        let mut settings = vec![("SSLmode", ssl_mode.to_string())];
        // Files go to libpq through psqlODBC's pqopt, quoted as libpq's conninfo wants.
        let libpq: Vec<String> = [
            ("sslrootcert", &tls.ca),
            ("sslcert", &tls.cert),
            ("sslkey", &tls.key),
        ]
        .into_iter()
        .filter_map(|(key, path)| {
            let quoted = path.as_ref()?.replace('\\', "\\\\").replace('\'', "\\'");
            Some(format!("{key}='{quoted}'"))
        })
        .collect();
        if !libpq.is_empty() {
            settings.push(("pqopt", libpq.join(" ")));
        }
        return Ok(settings);
    }
    if driver_lower.contains("maria") || driver_lower.contains("mysql") {
        let mut settings = Vec::new();
        if mode != TlsMode::Disable {
            settings.push(("FORCETLS", "1".to_string()));
        }
        // Connector/ODBC verifies the chain and the host name together.
        if matches!(mode, TlsMode::VerifyCa | TlsMode::VerifyFull) {
            settings.push(("SSLVERIFY", "1".to_string()));
        }
        for (key, path) in [
            ("SSLCA", &tls.ca),
            ("SSLCERT", &tls.cert),
            ("SSLKEY", &tls.key),
        ] {
            if let Some(path) = path {
                settings.push((key, path.clone()));
            }
        }
        return Ok(settings);
    }
    if driver_lower.contains("sql server") {
        if tls.ca.is_some() || tls.cert.is_some() || tls.key.is_some() {
            return Err(
                "the SQL Server driver takes the server's CA from the system store; \
                        install it there and remove ca/cert/key from tls"
                    .into(),
            );
        }
        return Ok(match mode {
            TlsMode::Disable => vec![("Encrypt", "no".to_string())],
            TlsMode::Require => vec![
                ("Encrypt", "yes".to_string()),
                ("TrustServerCertificate", "yes".to_string()),
            ],
            TlsMode::VerifyCa | TlsMode::VerifyFull => vec![
                ("Encrypt", "yes".to_string()),
                ("TrustServerCertificate", "no".to_string()),
            ],
        });
    }
    if driver_lower.contains("sqlite") {
        return match mode {
            TlsMode::Disable => Ok(Vec::new()),
            _ => Err("SQLite reads a local file; remove tls from this source".into()),
        };
    }
    Err(format!(
        "ibarrow does not know the TLS settings of the driver `{driver}`; remove tls and write \
         the driver's own TLS keys into connection_string"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tls(mode: TlsMode, ca: Option<&str>) -> TlsOptions {
        TlsOptions {
            mode,
            ca: ca.map(str::to_string),
            ..TlsOptions::default()
        }
    }

    #[test]
    fn postgres_gets_sslmode_and_libpq_files() {
        let settings = tls_settings(
            "PostgreSQL Unicode",
            &tls(TlsMode::VerifyFull, Some("/c/it's.pem")),
        )
        .unwrap();
        assert_eq!(
            settings,
            vec![
                ("SSLmode", "verify-full".to_string()),
                ("pqopt", r"sslrootcert='/c/it\'s.pem'".to_string())
            ]
        );
    }

    #[test]
    fn mariadb_forces_tls_and_verifies_when_asked() {
        let settings =
            tls_settings("MariaDB Unicode", &tls(TlsMode::VerifyCa, Some("/ca.pem"))).unwrap();
        assert_eq!(
            settings,
            vec![
                ("FORCETLS", "1".to_string()),
                ("SSLVERIFY", "1".to_string()),
                ("SSLCA", "/ca.pem".to_string())
            ]
        );
        assert_eq!(
            tls_settings("MariaDB Unicode", &tls(TlsMode::Require, None)).unwrap(),
            vec![("FORCETLS", "1".to_string())]
        );
    }

    #[test]
    fn sql_server_and_refusals() {
        assert_eq!(
            tls_settings(
                "ODBC Driver 18 for SQL Server",
                &tls(TlsMode::Require, None)
            )
            .unwrap(),
            vec![
                ("Encrypt", "yes".to_string()),
                ("TrustServerCertificate", "yes".to_string())
            ]
        );
        assert!(
            tls_settings(
                "ODBC Driver 18 for SQL Server",
                &tls(TlsMode::Require, Some("x"))
            )
            .is_err()
        );
        assert!(tls_settings("SQLite3", &tls(TlsMode::Require, None)).is_err());
        assert!(
            tls_settings("SQLite3", &tls(TlsMode::Disable, None))
                .unwrap()
                .is_empty()
        );
        assert!(
            tls_settings("Firebird", &tls(TlsMode::Require, None))
                .unwrap_err()
                .contains("Firebird")
        );
        assert!(
            "verify_full"
                .parse::<TlsMode>()
                .unwrap_err()
                .contains("verify-full")
        );
    }
}
