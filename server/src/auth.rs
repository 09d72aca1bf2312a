//! Who is calling: `[users]` with their passwords, bearer tokens handed out at login, and
//! the slowdown of failed logins per IP address. Both listeners authenticate here.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine as _;
use ibarrow::UserConfig;
use ring::rand::SecureRandom;

use crate::error::ServerError;

/// A failed login waits this long, doubled per further failure from the same address.
const FIRST_FAILURE_DELAY: Duration = Duration::from_millis(100);
const MOST_FAILURE_DELAY: Duration = Duration::from_secs(5);
/// Failures from an address are forgotten after this long without one.
const FAILURES_REMEMBERED: Duration = Duration::from_secs(900);
/// A password checked against its argon2 hash is trusted again for this long, so that
/// basic auth on every HTTP request does not cost a hash each time.
const VERIFIED_REMEMBERED: Duration = Duration::from_secs(300);
/// Argon2 checks at once (each takes about 19 MiB and tens of milliseconds).
const CONCURRENT_HASHES: usize = 2;
/// Checked for a user name that does not exist, so that the answer takes as long as for
/// one that does (the hash of a random password nobody knows).
const UNKNOWN_USER_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$KelKkR4NGsbstuKvc0InBQ$hMaW4FW/WxL0wL20hFz6lQO5RrPDtRcF3hUAE8cIDGs";

/// The authenticated caller of a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// The user name: a key of `[users]`; without `[users]`, the name sent or `anonymous`.
    pub user: String,
    /// The user's roles from `[users]`; empty when the server asks for no login.
    pub roles: Vec<String>,
}

enum Secret {
    Plain(String),
    Hash(String),
}

struct User {
    secret: Secret,
    roles: Vec<String>,
}

/// The server's authentication state: known users, issued tokens and failed logins.
pub struct Auth {
    /// None: no `[users]`, so no login is asked for (a loopback-only server).
    users: Option<BTreeMap<String, User>>,
    tokens: moka::sync::Cache<String, Arc<Identity>>,
    token_ttl: Duration,
    /// SHA-256 of user and password for logins checked lately.
    verified: moka::sync::Cache<[u8; 32], ()>,
    failures: moka::sync::Cache<IpAddr, Arc<Failures>>,
    hashing: Arc<tokio::sync::Semaphore>,
    random: ring::rand::SystemRandom,
}

/// Failed logins from one address. Once there was one, that address's password checks run
/// one at a time, each after the delay, so parallel guesses are slowed down too.
#[derive(Default)]
struct Failures {
    count: AtomicU32,
    one_at_a_time: tokio::sync::Mutex<()>,
}

/// Credentials from an `authorization` header (HTTP or gRPC metadata).
pub enum Credentials {
    /// `Basic`: a user name and password.
    Basic {
        /// The user name, before the first `:`.
        user: String,
        /// The password, after the first `:`.
        password: String,
    },
    /// `Bearer`: a token handed out at login.
    Bearer(String),
}

impl Credentials {
    /// Parses `Basic <base64 user:password>` or `Bearer <token>`.
    pub fn parse(header: &str) -> Result<Self, ServerError> {
        let (scheme, value) = header.trim().split_once(' ').ok_or_else(|| {
            ServerError::Unauthenticated(
                "the authorization header needs a scheme: Basic or Bearer".into(),
            )
        })?;
        if scheme.eq_ignore_ascii_case("bearer") {
            return Ok(Credentials::Bearer(value.trim().to_string()));
        }
        if !scheme.eq_ignore_ascii_case("basic") {
            return Err(ServerError::Unauthenticated(format!(
                "authorization scheme `{scheme}` is not supported; use Basic or Bearer"
            )));
        }
        // Padding optional: Arrow's Go client (ADBC) sends it without.
        let lenient = base64::engine::GeneralPurpose::new(
            &base64::alphabet::STANDARD,
            base64::engine::GeneralPurposeConfig::new()
                .with_decode_padding_mode(base64::engine::DecodePaddingMode::Indifferent),
        );
        let decoded = lenient
            .decode(value.trim())
            .ok()
            .and_then(|bytes| String::from_utf8(bytes).ok())
            .ok_or_else(|| {
                ServerError::Unauthenticated("basic credentials are not valid base64 UTF-8".into())
            })?;
        let (user, password) = decoded.split_once(':').ok_or_else(|| {
            ServerError::Unauthenticated("basic credentials need the form user:password".into())
        })?;
        Ok(Credentials::Basic {
            user: user.to_string(),
            password: password.to_string(),
        })
    }
}

impl Auth {
    /// The users of `[users]`, passwords expanded from the environment. An empty map means
    /// no login at all.
    pub fn new(
        users: &BTreeMap<String, UserConfig>,
        token_ttl: Duration,
    ) -> Result<Self, ServerError> {
        let users = if users.is_empty() {
            None
        } else {
            let mut known = BTreeMap::new();
            for (name, config) in users {
                let location = format!("[users.{name}]");
                let secret = match (&config.password, &config.password_hash) {
                    (Some(password), None) => Secret::Plain(
                        ibarrow::config::expand_env(password, &format!("{location} password"))
                            .map_err(|err| ServerError::Config(err.to_string()))?,
                    ),
                    (None, Some(hash)) => {
                        PasswordHash::new(hash).map_err(|err| {
                            ServerError::Config(format!(
                                "{location} password_hash is not a PHC hash string ({err}); \
                                 make one with `ibarrow passwd`"
                            ))
                        })?;
                        Secret::Hash(hash.clone())
                    }
                    _ => {
                        return Err(ServerError::Config(format!(
                            "{location} needs exactly one of password or password_hash"
                        )));
                    }
                };
                known.insert(
                    name.clone(),
                    User {
                        secret,
                        roles: config.roles.clone(),
                    },
                );
            }
            Some(known)
        };
        Ok(Self {
            users,
            tokens: moka::sync::Cache::builder()
                .time_to_live(token_ttl)
                .max_capacity(100_000)
                .build(),
            token_ttl,
            verified: moka::sync::Cache::builder()
                .time_to_live(VERIFIED_REMEMBERED)
                .max_capacity(10_000)
                .build(),
            failures: moka::sync::Cache::builder()
                .time_to_idle(FAILURES_REMEMBERED)
                .max_capacity(100_000)
                .build(),
            hashing: Arc::new(tokio::sync::Semaphore::new(CONCURRENT_HASHES)),
            random: ring::rand::SystemRandom::new(),
        })
    }

    /// Whether a login is asked for at all.
    pub fn required(&self) -> bool {
        self.users.is_some()
    }

    /// How long an issued bearer token stays valid.
    pub fn token_ttl(&self) -> Duration {
        self.token_ttl
    }

    /// Who sends `header` from `ip`. Without `[users]` everyone is let in, under the name
    /// of their basic credentials or `anonymous`.
    pub async fn authenticate(
        &self,
        header: Option<&str>,
        ip: IpAddr,
    ) -> Result<Identity, ServerError> {
        let credentials = header.map(Credentials::parse).transpose()?;
        let Some(users) = &self.users else {
            let user = match credentials {
                Some(Credentials::Basic { user, .. }) if !user.is_empty() => user,
                Some(Credentials::Bearer(token)) => match self.tokens.get(&token) {
                    Some(identity) => return Ok(identity.as_ref().clone()),
                    None => "anonymous".to_string(),
                },
                _ => "anonymous".to_string(),
            };
            return Ok(Identity {
                user,
                roles: Vec::new(),
            });
        };
        match credentials {
            None => Err(ServerError::Unauthenticated(
                "log in: send basic credentials (user and password) or a bearer token".into(),
            )),
            Some(Credentials::Bearer(token)) => self
                .tokens
                .get(&token)
                .map(|identity| identity.as_ref().clone())
                .ok_or_else(|| {
                    ServerError::Unauthenticated(
                        "the bearer token is unknown or expired; log in again".into(),
                    )
                }),
            Some(Credentials::Basic { user, password }) => {
                self.check_basic(users, &user, &password, ip).await
            }
        }
    }

    /// [`Self::authenticate`] for a login that hands out a token: only basic credentials,
    /// so that a token cannot prolong itself.
    pub async fn login(&self, header: Option<&str>, ip: IpAddr) -> Result<Identity, ServerError> {
        if self.users.is_some()
            && header
                .map(Credentials::parse)
                .transpose()?
                .is_some_and(|c| matches!(c, Credentials::Bearer(_)))
        {
            return Err(ServerError::Unauthenticated(
                "log in with basic credentials (user and password); a token cannot make another"
                    .into(),
            ));
        }
        self.authenticate(header, ip).await
    }

    async fn check_basic(
        &self,
        users: &BTreeMap<String, User>,
        user: &str,
        password: &str,
        ip: IpAddr,
    ) -> Result<Identity, ServerError> {
        let failures = self.failures.get_with(crate::listener::client_key(ip), || {
            Arc::new(Failures::default())
        });
        let _one_at_a_time = if failures.count.load(Ordering::Acquire) > 0 {
            Some(failures.one_at_a_time.lock().await)
        } else {
            None
        };
        let failed = failures.count.load(Ordering::Acquire);
        if failed > 0 {
            let delay = FIRST_FAILURE_DELAY
                .saturating_mul(1 << failed.min(16).saturating_sub(1))
                .min(MOST_FAILURE_DELAY);
            tokio::time::sleep(delay).await;
        }
        let checked = self.check_password(users, user, password).await;
        match &checked {
            Ok(_) => failures.count.store(0, Ordering::Release),
            Err(_) => {
                failures.count.fetch_add(1, Ordering::AcqRel);
                tracing::warn!(%ip, "failed login");
            }
        }
        checked
    }

    /// A new bearer token for `identity`, valid for the token lifetime.
    pub fn issue_token(&self, identity: &Identity) -> Result<String, ServerError> {
        let mut bytes = [0u8; 32];
        self.random
            .fill(&mut bytes)
            .map_err(|_| ServerError::Internal("no random bytes for a token".into()))?;
        let token = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes);
        self.tokens
            .insert(token.clone(), Arc::new(identity.clone()));
        Ok(token)
    }

    /// Ends a token before its lifetime; true when it was valid.
    pub fn revoke_token(&self, token: &str) -> bool {
        self.tokens.remove(token).is_some()
    }

    async fn check_password(
        &self,
        users: &BTreeMap<String, User>,
        name: &str,
        password: &str,
    ) -> Result<Identity, ServerError> {
        let refused = || ServerError::Unauthenticated("wrong user name or password".into());
        let Some(user) = users.get(name) else {
            if users.values().any(|u| matches!(u.secret, Secret::Hash(_))) {
                self.verify_hash(UNKNOWN_USER_HASH, password).await;
            }
            return Err(refused());
        };
        let ok = match &user.secret {
            Secret::Plain(expected) => same_digest(expected.as_bytes(), password.as_bytes()),
            Secret::Hash(hash) => {
                let key = digest(&[name.as_bytes(), b"\0", password.as_bytes()]);
                if self.verified.contains_key(&key) {
                    true
                } else {
                    let ok = self.verify_hash(hash, password).await;
                    if ok {
                        self.verified.insert(key, ());
                    }
                    ok
                }
            }
        };
        if ok {
            Ok(Identity {
                user: name.to_string(),
                roles: user.roles.clone(),
            })
        } else {
            Err(refused())
        }
    }

    /// Argon2 on a blocking thread, a few at a time: it must not stall the runtime.
    async fn verify_hash(&self, hash: &str, password: &str) -> bool {
        let Ok(_permit) = self.hashing.acquire().await else {
            return false;
        };
        let (hash, password) = (hash.to_string(), password.to_string());
        tokio::task::spawn_blocking(move || {
            PasswordHash::new(&hash)
                .map(|parsed| {
                    argon2::Argon2::default()
                        .verify_password(password.as_bytes(), &parsed)
                        .is_ok()
                })
                .unwrap_or(false)
        })
        .await
        .unwrap_or(false)
    }
}

fn digest(parts: &[&[u8]]) -> [u8; 32] {
    let mut context = ring::digest::Context::new(&ring::digest::SHA256);
    for part in parts {
        context.update(part);
    }
    let mut out = [0u8; 32];
    out.copy_from_slice(context.finish().as_ref());
    out
}

/// Compares two secrets in time that does not depend on where they differ.
fn same_digest(a: &[u8], b: &[u8]) -> bool {
    let (a, b) = (digest(&[a]), digest(&[b]));
    a.iter()
        .zip(b.iter())
        .fold(0u8, |acc, (x, y)| acc | (x ^ y))
        == 0
}

/// An argon2id hash of `password` for `password_hash` in `[users]` (`ibarrow passwd`).
pub fn hash_password(password: &str) -> Result<String, ServerError> {
    let mut salt = [0u8; 16];
    ring::rand::SystemRandom::new()
        .fill(&mut salt)
        .map_err(|_| ServerError::Internal("no random bytes for a salt".into()))?;
    let salt = SaltString::encode_b64(&salt)
        .map_err(|err| ServerError::Internal(format!("salt: {err}")))?;
    argon2::Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|err| ServerError::Internal(format!("hashing the password: {err}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn users(entries: &[(&str, UserConfig)]) -> BTreeMap<String, UserConfig> {
        entries
            .iter()
            .map(|(name, config)| (name.to_string(), config.clone()))
            .collect()
    }

    fn basic(user: &str, password: &str) -> String {
        format!(
            "Basic {}",
            base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
        )
    }

    #[tokio::test]
    async fn hashed_and_plain_passwords_log_in_and_wrong_ones_do_not() {
        let hash = hash_password("correct horse").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        let auth = Auth::new(
            &users(&[
                (
                    "alice",
                    UserConfig {
                        password_hash: Some(hash),
                        roles: vec!["analyst".into()],
                        ..UserConfig::default()
                    },
                ),
                (
                    "bob",
                    UserConfig {
                        password: Some("plain".into()),
                        ..UserConfig::default()
                    },
                ),
            ]),
            Duration::from_secs(60),
        )
        .unwrap();
        let ip: IpAddr = "127.0.0.1".parse().unwrap();
        let alice = auth
            .authenticate(Some(&basic("alice", "correct horse")), ip)
            .await
            .unwrap();
        assert_eq!(alice.roles, vec!["analyst".to_string()]);
        assert!(
            auth.authenticate(Some(&basic("bob", "plain")), ip)
                .await
                .is_ok()
        );
        for (user, password) in [("alice", "wrong"), ("bob", "plai"), ("carol", "plain")] {
            let err = auth
                .authenticate(Some(&basic(user, password)), ip)
                .await
                .unwrap_err();
            assert!(matches!(err, ServerError::Unauthenticated(_)), "{err}");
        }
        assert!(auth.authenticate(None, ip).await.is_err());
        let token = auth.issue_token(&alice).unwrap();
        let bearer = format!("Bearer {token}");
        assert_eq!(auth.authenticate(Some(&bearer), ip).await.unwrap(), alice);
        assert!(auth.revoke_token(&token));
        assert!(auth.authenticate(Some(&bearer), ip).await.is_err());
    }

    #[tokio::test]
    async fn failed_logins_from_an_address_are_slowed_down() {
        let auth = Auth::new(
            &users(&[(
                "bob",
                UserConfig {
                    password: Some("plain".into()),
                    ..UserConfig::default()
                },
            )]),
            Duration::from_secs(60),
        )
        .unwrap();
        let ip: IpAddr = "10.0.0.9".parse().unwrap();
        for _ in 0..3 {
            let _ = auth.authenticate(Some(&basic("bob", "x")), ip).await;
        }
        // Three failures: the next try waits 100 ms × 2².
        let started = std::time::Instant::now();
        let _ = auth.authenticate(Some(&basic("bob", "plain")), ip).await;
        assert!(started.elapsed() >= Duration::from_millis(400));
        // A success forgets the failures.
        let started = std::time::Instant::now();
        auth.authenticate(Some(&basic("bob", "plain")), ip)
            .await
            .unwrap();
        assert!(started.elapsed() < Duration::from_millis(400));
    }

    #[test]
    fn a_user_needs_exactly_one_secret() {
        let err = Auth::new(
            &users(&[("x", UserConfig::default())]),
            Duration::from_secs(1),
        )
        .err()
        .unwrap();
        assert!(err.to_string().contains("[users.x]"), "{err}");
        assert!(
            !format!(
                "{:?}",
                UserConfig {
                    password: Some("hunter2".into()),
                    ..UserConfig::default()
                }
            )
            .contains("hunter2")
        );
    }
}
