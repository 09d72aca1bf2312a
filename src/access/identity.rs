//! Who a command-line session runs as: the OS user that started it, or, with `ibarrow --user
//! NAME`, another user the configuration lets that OS user act as (`act_as` in its
//! `[users.<os user>]` entry). Without that permission anyone at a terminal could take another
//! user's grants and put that name in the audit log.

use crate::config::Config;
use crate::error::{Error, Result};

/// The user a command-line session of `login` (the OS user) runs as when it asks for
/// `requested`: `login` itself, or `requested` when `login`'s `act_as` names it (`*` and `?`
/// match) and `requested` is a user of the configuration.
pub fn session_user(config: &Config, login: &str, requested: Option<&str>) -> Result<String> {
    let Some(requested) = requested.filter(|name| *name != login) else {
        return Ok(login.to_string());
    };
    let allowed = config.users.get(login).is_some_and(|user| {
        user.act_as
            .iter()
            .any(|pattern| super::pattern::glob(pattern.as_bytes(), requested.as_bytes()))
    });
    if !allowed {
        return Err(Error::AccessDenied(format!(
            "--user {requested}: the OS user `{login}` may not act as another user; allow it \
             with act_as = [\"{requested}\"] under [users.{login}] in the configuration file, \
             or leave --user out to run as `{login}`"
        )));
    }
    if !config.users.contains_key(requested) {
        let known: Vec<&str> = config.users.keys().map(String::as_str).collect();
        return Err(Error::AccessDenied(format!(
            "--user {requested}: the configuration has no [users.{requested}] (users: {}); \
             name one of them",
            known.join(", ")
        )));
    }
    Ok(requested.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config() -> Config {
        Config::parse(
            r#"
            [users.carol]
            act_as = ["analyst_*"]
            [users.analyst_eu]
            [users.alice]
            "#,
            "test",
        )
        .expect("config")
    }

    #[test]
    fn without_a_request_the_os_user_is_the_user() {
        assert_eq!(session_user(&config(), "carol", None).unwrap(), "carol");
        assert_eq!(session_user(&config(), "dave", None).unwrap(), "dave");
        assert_eq!(
            session_user(&config(), "alice", Some("alice")).unwrap(),
            "alice"
        );
    }

    #[test]
    fn act_as_lets_an_os_user_take_a_matching_configured_user() {
        assert_eq!(
            session_user(&config(), "carol", Some("analyst_eu")).unwrap(),
            "analyst_eu"
        );
    }

    #[test]
    fn anything_else_is_refused_with_what_to_change() {
        let err = session_user(&config(), "carol", Some("alice"))
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("`carol` may not act as another user")
                && err.contains("act_as = [\"alice\"] under [users.carol]"),
            "{err}"
        );
        let err = session_user(&config(), "dave", Some("alice"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("[users.dave]"), "{err}");
        let err = session_user(&config(), "carol", Some("analyst_us"))
            .unwrap_err()
            .to_string();
        assert!(err.contains("no [users.analyst_us]"), "{err}");
    }
}
