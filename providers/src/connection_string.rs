//! ODBC connection strings: parsing, driver-specific defaults and redaction of secrets.

use std::fmt;

use crate::error::OdbcError;

/// Keys whose values are secrets: never shown in errors, logs or plans.
const SECRET_KEYS: &[&str] = &[
    "pwd",
    "password",
    "passwd",
    "sslpassword",
    "token",
    "accesstoken",
    "access_token",
    "secret",
    "authpassword",
];

/// A parsed `KEY=value;KEY={value; with braces}` connection string. Keys keep their order and
/// spelling; lookups ignore case, as drivers do.
#[derive(Clone, PartialEq, Eq)]
pub struct ConnectionString {
    pairs: Vec<(String, String)>,
}

impl ConnectionString {
    /// Parses `KEY=value;…` text; a value in braces may hold `;` (`}}` stands for `}`). Errors
    /// never quote the text, which may hold a password.
    pub fn parse(text: &str) -> Result<Self, OdbcError> {
        let mut pairs = Vec::new();
        let mut rest = text.trim();
        while !rest.is_empty() {
            // The offending text is not quoted back: it may be a password.
            let eq = rest.find('=').ok_or_else(|| {
                OdbcError::InvalidConnectionString(format!(
                    "expected KEY=value pairs separated by `;`, but the text from character {} \
                     has no `=`",
                    text.len() - rest.len()
                ))
            })?;
            let key = rest[..eq].trim().to_string();
            if key.is_empty() || key.contains(';') {
                return Err(OdbcError::InvalidConnectionString(
                    "a key is empty; write KEY=value pairs separated by `;`".into(),
                ));
            }
            rest = rest[eq + 1..].trim_start();
            let value;
            if let Some(braced) = rest.strip_prefix('{') {
                // `}}` inside braces stands for one `}`.
                let mut out = String::new();
                let mut chars = braced.char_indices().peekable();
                let mut end = None;
                while let Some((i, c)) = chars.next() {
                    if c == '}' {
                        if matches!(chars.peek(), Some((_, '}'))) {
                            chars.next();
                            out.push('}');
                        } else {
                            end = Some(i);
                            break;
                        }
                    } else {
                        out.push(c);
                    }
                }
                let end = end.ok_or_else(|| {
                    OdbcError::InvalidConnectionString(format!(
                        "the value of `{key}` opens `{{` but never closes it"
                    ))
                })?;
                value = out;
                rest = braced[end + 1..].trim_start();
                rest = rest.strip_prefix(';').unwrap_or(rest);
            } else {
                let end = rest.find(';').unwrap_or(rest.len());
                value = rest[..end].trim().to_string();
                rest = rest.get(end + 1..).unwrap_or("");
            }
            pairs.push((key, value));
            rest = rest.trim_start();
        }
        Ok(Self { pairs })
    }

    /// A connection string for a data source name configured in `odbc.ini`.
    pub fn from_dsn(dsn: &str, user: Option<&str>, password: Option<&str>) -> Self {
        let mut pairs = vec![("DSN".to_string(), dsn.to_string())];
        if let Some(user) = user {
            pairs.push(("UID".into(), user.into()));
        }
        if let Some(password) = password {
            pairs.push(("PWD".into(), password.into()));
        }
        Self { pairs }
    }

    /// The value of `key`, whatever its case.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(key))
            .map(|(_, v)| v.as_str())
    }

    /// Sets `key` unless the user already set it.
    pub fn set_default(&mut self, key: &str, value: &str) {
        if self.get(key).is_none() {
            self.pairs.push((key.to_string(), value.to_string()));
        }
    }

    /// Sets `key`, replacing any value the user gave.
    pub fn force(&mut self, key: &str, value: &str) {
        self.pairs.retain(|(k, _)| !k.eq_ignore_ascii_case(key));
        self.pairs.push((key.to_string(), value.to_string()));
    }

    /// The text handed to the driver, secrets included. Use only for connecting.
    pub fn expose(&self) -> String {
        self.render(false)
    }

    /// The string with every secret value replaced by `***`.
    pub fn redacted(&self) -> String {
        self.render(true)
    }

    /// The secret values, for scrubbing driver messages that might echo them.
    pub fn secrets(&self) -> impl Iterator<Item = &str> {
        self.pairs
            .iter()
            .filter(|(k, v)| is_secret_key(k) && !v.is_empty())
            .map(|(_, v)| v.as_str())
    }

    /// Replaces any secret of this string found in `message` by `***`.
    pub fn scrub(&self, message: &str) -> String {
        let mut out = message.to_string();
        for secret in self.secrets() {
            out = out.replace(secret, "***");
        }
        out
    }

    fn render(&self, redact: bool) -> String {
        let mut out = String::new();
        for (key, value) in &self.pairs {
            out.push_str(key);
            out.push('=');
            if redact && is_secret_key(key) {
                out.push_str("***");
            } else if value.contains([';', '{', '}']) || value != value.trim() {
                out.push('{');
                out.push_str(&value.replace('}', "}}"));
                out.push('}');
            } else {
                out.push_str(value);
            }
            out.push(';');
        }
        out
    }
}

impl fmt::Debug for ConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

impl fmt::Display for ConnectionString {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.redacted())
    }
}

fn is_secret_key(key: &str) -> bool {
    SECRET_KEYS.iter().any(|s| key.eq_ignore_ascii_case(s))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_plain_and_braced_values() {
        let cs =
            ConnectionString::parse("Driver={PostgreSQL Unicode};Server=127.0.0.1; Pwd={a;b}}c} ;")
                .unwrap();
        assert_eq!(cs.get("driver"), Some("PostgreSQL Unicode"));
        assert_eq!(cs.get("SERVER"), Some("127.0.0.1"));
        assert_eq!(cs.get("pwd"), Some("a;b}c"));
        let again = ConnectionString::parse(&cs.expose()).unwrap();
        assert_eq!(again, cs);
    }

    #[test]
    fn redacts_every_secret_spelling() {
        let cs = ConnectionString::parse("DSN=x;UID=u;PWD=hunter2;Password=s3cret").unwrap();
        let shown = cs.redacted();
        assert!(
            !shown.contains("hunter2") && !shown.contains("s3cret"),
            "{shown}"
        );
        assert_eq!(format!("{cs:?}"), shown);
        assert_eq!(
            cs.scrub("login as u with hunter2 failed"),
            "login as u with *** failed"
        );
    }

    #[test]
    fn reports_unclosed_braces_without_the_secret() {
        let err = ConnectionString::parse("UID=u;PWD={hunter2")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("never closes") && !err.contains("hunter2"),
            "{err}"
        );
        let err = ConnectionString::parse("hunter2-without-equals")
            .unwrap_err()
            .to_string();
        assert!(!err.contains("hunter2-without-equals"), "{err}");
    }

    #[test]
    fn defaults_do_not_override_user_settings() {
        let mut cs = ConnectionString::parse("Driver=x;Fetch=10").unwrap();
        cs.set_default("fetch", "5000");
        cs.set_default("CommLog", "0");
        assert_eq!(cs.get("Fetch"), Some("10"));
        cs.force("commlog", "0");
        assert_eq!(cs.expose(), "Driver=x;Fetch=10;commlog=0;");
    }
}
