//! `ibarrow serve`: the engine as a network service (docs/server.md). Arrow Flight SQL for
//! ADBC, JDBC and BI tools ([`flight`]), an HTTP API ([`http`]), both behind the same
//! logins ([`auth`]) and connection limits ([`listener`]).
//!
//! [`Server::bind`] checks the configuration and opens the listeners; [`Server::run`]
//! serves until its shutdown signal, then refuses new queries and lets running ones finish
//! for `[server] shutdown_grace_secs`.

#![warn(missing_docs)]

pub mod auth;
pub mod error;
pub mod flight;
pub mod format;
pub mod http;
pub mod listener;
pub mod query;
pub mod quota;
pub mod status;
pub mod websocket;

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use ibarrow::{Config, Engine, ServerConfig, Session};
use tokio::net::TcpListener;
use tokio_util::sync::CancellationToken;

pub use auth::hash_password;
pub use error::ServerError;

use crate::auth::{Auth, Identity};
use crate::listener::{ConnectionLimits, ListenerOptions};

/// Limits and lifetimes of `[server]`, defaults filled in.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Connections open at once, over both listeners (default 256).
    pub max_connections: usize,
    /// Connections open at once from one client address, an IPv6 /64 counted as one
    /// (default 64).
    pub max_connections_per_ip: usize,
    /// Largest HTTP request body or WebSocket message, in bytes (default 1 MiB, at least 1 KiB).
    pub max_body_bytes: usize,
    /// Longest an HTTP query may run (default one hour).
    pub request_timeout: Duration,
    /// A connection that sends nothing for this long is closed (default 120 s).
    pub idle_timeout: Duration,
    /// How long a bearer token from a login stays valid (default one hour).
    pub token_ttl: Duration,
    /// How long a Flight SQL plan waits unused for its DoGet calls (default 300 s).
    pub plan_ttl: Duration,
    /// How long running queries may go on once shutting down begins (default 30 s; may be 0).
    pub shutdown_grace: Duration,
}

impl Settings {
    /// The settings of a `[server]` section: defaults for what it leaves out, and timeouts and
    /// lifetimes of at least one second.
    pub fn from_config(config: &ServerConfig) -> Self {
        let secs =
            |value: Option<u64>, default: u64| Duration::from_secs(value.unwrap_or(default).max(1));
        Self {
            max_connections: config.max_connections.unwrap_or(256).max(1),
            max_connections_per_ip: config.max_connections_per_ip.unwrap_or(64).max(1),
            max_body_bytes: config.max_body_bytes.unwrap_or(1 << 20).max(1024),
            request_timeout: secs(config.request_timeout_secs, 3600),
            idle_timeout: secs(config.idle_timeout_secs, 120),
            token_ttl: secs(config.token_ttl_secs, 3600),
            plan_ttl: secs(config.plan_ttl_secs, 300),
            shutdown_grace: Duration::from_secs(config.shutdown_grace_secs.unwrap_or(30)),
        }
    }
}

/// What both protocols share: the engine, the logins, and the server's life cycle.
pub struct Shared {
    /// The query engine every session comes from.
    pub engine: Engine,
    /// The logins and tokens both listeners check.
    pub auth: Auth,
    /// The `[server]` limits and lifetimes.
    pub settings: Settings,
    /// Set once shutting down: new queries are refused.
    draining: AtomicBool,
    /// Cancelled when the shutdown grace has run out: running streams end with an error.
    pub shutdown: CancellationToken,
    /// Cancelled when shutting down begins: idle WebSockets close.
    pub drain: CancellationToken,
    /// Open WebSockets, which outlive their HTTP connection's graceful shutdown.
    pub sockets: tokio_util::task::TaskTracker,
}

impl Shared {
    /// The shared state of a server that is not yet shutting down.
    pub fn new(engine: Engine, auth: Auth, settings: Settings) -> Arc<Self> {
        Arc::new(Self {
            engine,
            auth,
            settings,
            draining: AtomicBool::new(false),
            shutdown: CancellationToken::new(),
            drain: CancellationToken::new(),
            sockets: tokio_util::task::TaskTracker::new(),
        })
    }

    /// The engine session for a caller, or why no new query may start.
    pub fn session(
        &self,
        identity: &Identity,
        client: &str,
        peer: Option<SocketAddr>,
    ) -> Result<Session, ServerError> {
        if self.draining.load(Ordering::Acquire) {
            return Err(ServerError::ShuttingDown);
        }
        let session = self.engine.session(&identity.user, client);
        Ok(match peer {
            Some(peer) => session.at_ip(listener::client_key(peer.ip())),
            None => session,
        })
    }

    /// Whether shutting down has begun, so that no new query may start.
    pub fn draining(&self) -> bool {
        self.draining.load(Ordering::Acquire)
    }
}

/// The service with its listeners open.
pub struct Server {
    shared: Arc<Shared>,
    flight_sql: Option<TcpListener>,
    http: Option<TcpListener>,
    options: ListenerOptions,
}

impl Server {
    /// Opens the listeners of `config`'s `[server]` section for `engine`. Refuses to listen
    /// beyond loopback without `[users]`, and to start with no listener at all.
    pub async fn bind(engine: Engine, config: &Config) -> Result<Self, ServerError> {
        let server = config.server.clone().ok_or_else(|| {
            ServerError::Config(
                "the configuration has no [server] section; add one with flight_sql = \
                 \"127.0.0.1:50051\" and/or http = \"127.0.0.1:8080\""
                    .into(),
            )
        })?;
        let settings = Settings::from_config(&server);
        let auth = Auth::new(&config.users, settings.token_ttl)?;
        let mut addresses = Vec::new();
        for (key, value) in [("flight_sql", &server.flight_sql), ("http", &server.http)] {
            if let Some(text) = value {
                let addr: SocketAddr = text.parse().map_err(|_| {
                    ServerError::Config(format!(
                        "[server] {key} = \"{text}\" is not an address; write ip:port, e.g. 127.0.0.1:8080"
                    ))
                })?;
                if !auth.required() && !addr.ip().is_loopback() {
                    return Err(ServerError::Config(format!(
                        "[server] {key} listens on {addr}, beyond this machine, and no user is \
                         configured: add one ([users.alice] with password_hash from `ibarrow \
                         passwd`, or password = \"${{ALICE_PASSWORD}}\") or listen on 127.0.0.1"
                    )));
                }
                addresses.push((key, addr));
            }
        }
        if addresses.is_empty() {
            return Err(ServerError::Config(
                "[server] sets neither flight_sql nor http; give at least one address".into(),
            ));
        }
        let tls = match &server.tls {
            Some(tls) => Some(listener::tls_acceptor(
                std::path::Path::new(&tls.cert),
                std::path::Path::new(&tls.key),
            )?),
            None => None,
        };
        let options = ListenerOptions {
            tls,
            limits: ConnectionLimits::new(
                settings.max_connections,
                settings.max_connections_per_ip,
            ),
            idle_timeout: settings.idle_timeout,
        };
        let mut flight_sql = None;
        let mut http = None;
        for (key, addr) in addresses {
            let listener = TcpListener::bind(addr).await.map_err(|err| {
                ServerError::Config(format!("[server] {key}: cannot listen on {addr}: {err}"))
            })?;
            if key == "http" {
                http = Some(listener);
            } else {
                flight_sql = Some(listener);
            }
        }
        Ok(Self {
            shared: Shared::new(engine, auth, settings),
            flight_sql,
            http,
            options,
        })
    }

    /// The Flight SQL listener's address, if there is one (with the actual port when 0 was
    /// asked for).
    pub fn flight_sql_addr(&self) -> Option<SocketAddr> {
        self.flight_sql.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// The address the HTTP listener is bound to, if there is one.
    pub fn http_addr(&self) -> Option<SocketAddr> {
        self.http.as_ref().and_then(|l| l.local_addr().ok())
    }

    /// Whether both listeners speak TLS (`[server] tls`).
    pub fn uses_tls(&self) -> bool {
        self.options.tls.is_some()
    }

    /// Serves until `signal` completes, then shuts down gracefully.
    pub async fn run(
        self,
        signal: impl std::future::Future<Output = ()>,
    ) -> Result<(), ServerError> {
        let stop_accepting = CancellationToken::new();
        let mut loops = Vec::new();
        if let Some(listener) = self.flight_sql {
            let service = flight::service(Arc::clone(&self.shared))?;
            loops.push(tokio::spawn(listener::accept_loop(
                listener,
                service,
                self.options.clone(),
                stop_accepting.clone(),
            )));
        }
        if let Some(listener) = self.http {
            let service = http::router(Arc::clone(&self.shared));
            loops.push(tokio::spawn(listener::accept_loop(
                listener,
                service,
                self.options.clone(),
                stop_accepting.clone(),
            )));
        }
        signal.await;
        let grace = self.shared.settings.shutdown_grace;
        tracing::info!(
            grace_secs = grace.as_secs(),
            "shutting down: no new queries; running ones may finish"
        );
        self.shared.draining.store(true, Ordering::Release);
        self.shared.drain.cancel();
        stop_accepting.cancel();
        let mut open = Vec::new();
        for accept in loops {
            if let Ok(graceful) = accept.await {
                open.push(graceful.shutdown());
            }
        }
        let sockets = self.shared.sockets.clone();
        sockets.close();
        let all_closed = async move {
            futures::future::join_all(open).await;
            sockets.wait().await;
        };
        tokio::pin!(all_closed);
        tokio::select! {
            _ = &mut all_closed => {}
            _ = tokio::time::sleep(grace) => {
                tracing::warn!("shutdown grace is over: cancelling the queries still running");
                self.shared.shutdown.cancel();
                let _ = tokio::time::timeout(Duration::from_secs(5), &mut all_closed).await;
            }
        }
        tracing::info!("stopped");
        Ok(())
    }
}

/// Completes on SIGTERM or SIGINT (Ctrl-C).
pub async fn shutdown_signal() {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match (
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) {
            (Ok(mut term), Ok(mut int)) => {
                tokio::select! {
                    _ = term.recv() => {}
                    _ = int.recv() => {}
                }
            }
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
    #[cfg(not(unix))]
    {
        let _ = tokio::signal::ctrl_c().await;
    }
}
