//! The accept loop both listeners share: TLS when configured, caps on connections in all and
//! per IP address, HTTP/1.1 and HTTP/2 (gRPC) on one port, the peer's address on every
//! request, and a graceful stop that lets open requests finish.

use std::collections::HashMap;
use std::convert::Infallible;
use std::net::{IpAddr, SocketAddr};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::body::Incoming;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio_rustls::TlsAcceptor;
use tokio_rustls::rustls;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use crate::error::ServerError;

/// The TLS handshake of a new connection must be done within this.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// The client's address, put into every request's extensions.
#[derive(Debug, Clone, Copy)]
pub struct Peer(pub SocketAddr);

/// The connection's place under the caps, in every request's extensions: a WebSocket keeps
/// it after its HTTP request is done.
#[derive(Clone)]
pub struct ConnectionSlot(pub Arc<Admitted>);

/// The address limits count a client by: its IPv4 address, or the /64 network of its IPv6
/// address (one host usually holds a whole /64).
pub fn client_key(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => {
                let network = u128::from(v6) & !((1u128 << 64) - 1);
                IpAddr::V6(std::net::Ipv6Addr::from(network))
            }
        },
        v4 => v4,
    }
}

/// Connections open now, in all and per IP address.
pub struct ConnectionLimits {
    total: Arc<Semaphore>,
    per_ip: Mutex<HashMap<IpAddr, usize>>,
    per_ip_max: usize,
}

/// One admitted connection; dropping it frees its place.
pub struct Admitted {
    limits: Arc<ConnectionLimits>,
    ip: IpAddr,
    _total: OwnedSemaphorePermit,
}

impl ConnectionLimits {
    /// Room for `total` connections, at most `per_ip` from one client address (each at
    /// least 1).
    pub fn new(total: usize, per_ip: usize) -> Arc<Self> {
        Arc::new(Self {
            total: Arc::new(Semaphore::new(total.max(1))),
            per_ip: Mutex::new(HashMap::new()),
            per_ip_max: per_ip.max(1),
        })
    }

    /// A place for a connection from `ip`, or None when the server or that address is full.
    pub fn admit(self: &Arc<Self>, ip: IpAddr) -> Option<Admitted> {
        let ip = client_key(ip);
        let total = Arc::clone(&self.total).try_acquire_owned().ok()?;
        let mut per_ip = self.per_ip.lock().ok()?;
        let open = per_ip.entry(ip).or_insert(0);
        if *open >= self.per_ip_max {
            return None;
        }
        *open += 1;
        Some(Admitted {
            limits: Arc::clone(self),
            ip,
            _total: total,
        })
    }

    /// Connections open from `ip` (for tests).
    pub fn open_from(&self, ip: IpAddr) -> usize {
        self.per_ip
            .lock()
            .map(|m| m.get(&client_key(ip)).copied().unwrap_or(0))
            .unwrap_or(0)
    }
}

impl Drop for Admitted {
    fn drop(&mut self) {
        let Ok(mut per_ip) = self.limits.per_ip.lock() else {
            return;
        };
        if let Some(open) = per_ip.get_mut(&self.ip) {
            *open -= 1;
            if *open == 0 {
                per_ip.remove(&self.ip);
            }
        }
    }
}

/// A TLS acceptor from PEM files; it offers HTTP/2 (for gRPC) and HTTP/1.1.
pub fn tls_acceptor(cert: &Path, key: &Path) -> Result<TlsAcceptor, ServerError> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let unreadable = |what: &str, path: &Path, err: &dyn std::fmt::Display| {
        ServerError::Config(format!(
            "[server] tls {what} {}: {err}; give a PEM file",
            path.display()
        ))
    };
    let certs = CertificateDer::pem_file_iter(cert)
        .map_err(|err| unreadable("cert", cert, &err))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|err| unreadable("cert", cert, &err))?;
    if certs.is_empty() {
        return Err(unreadable("cert", cert, &"no certificate in it"));
    }
    let key = PrivateKeyDer::from_pem_file(key).map_err(|err| unreadable("key", key, &err))?;
    let provider = Arc::new(rustls::crypto::ring::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|err| ServerError::Config(format!("[server] tls: {err}")))?
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .map_err(|err| ServerError::Config(format!("[server] tls: {err}")))?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// How a listener treats its connections.
#[derive(Clone)]
pub struct ListenerOptions {
    /// Set when connections speak TLS; None for plain TCP.
    pub tls: Option<TlsAcceptor>,
    /// The connection caps, shared by both listeners.
    pub limits: Arc<ConnectionLimits>,
    /// A connection that sends nothing for this long is closed.
    pub idle_timeout: Duration,
}

/// Accepts connections on `listener` and serves `service` on each until `stop_accepting`
/// is cancelled; returns the handle that waits for the open connections to finish.
pub async fn accept_loop<S, B>(
    listener: TcpListener,
    service: S,
    options: ListenerOptions,
    stop_accepting: CancellationToken,
) -> GracefulShutdown
where
    S: tower::Service<http::Request<Incoming>, Response = http::Response<B>, Error = Infallible>
        + Clone
        + Send
        + 'static,
    S::Future: Send + 'static,
    B: http_body::Body<Data = bytes::Bytes> + Send + 'static,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let graceful = GracefulShutdown::new();
    loop {
        let accepted = tokio::select! {
            _ = stop_accepting.cancelled() => break,
            accepted = listener.accept() => accepted,
        };
        let (tcp, peer) = match accepted {
            Ok(accepted) => accepted,
            Err(err) => {
                // Out of file descriptors and the like: wait a little rather than spin.
                tracing::warn!(error = %err, "accepting a connection failed");
                tokio::time::sleep(Duration::from_millis(50)).await;
                continue;
            }
        };
        let Some(admitted) = options.limits.admit(peer.ip()) else {
            tracing::warn!(%peer, "connection refused: too many connections");
            continue;
        };
        let _ = tcp.set_nodelay(true);
        let service = service.clone();
        let options = options.clone();
        let watcher = graceful.watcher();
        tokio::spawn(async move {
            let slot = ConnectionSlot(Arc::new(admitted));
            let service =
                hyper::service::service_fn(move |mut request: http::Request<Incoming>| {
                    request.extensions_mut().insert(Peer(peer));
                    request.extensions_mut().insert(slot.clone());
                    service.clone().oneshot(request)
                });
            let mut builder = auto::Builder::new(TokioExecutor::new());
            builder
                .http1()
                .timer(TokioTimer::new())
                .header_read_timeout(options.idle_timeout);
            builder
                .http2()
                .timer(TokioTimer::new())
                .keep_alive_interval(options.idle_timeout / 2)
                .keep_alive_timeout(Duration::from_secs(20));
            // The protocol sniff waits for the first bytes without a timeout of its own.
            if options.tls.is_none() {
                let mut first = [0u8; 1];
                match tokio::time::timeout(options.idle_timeout, tcp.peek(&mut first)).await {
                    Ok(Ok(n)) if n > 0 => {}
                    _ => return,
                }
            }
            let served = match options.tls {
                Some(acceptor) => {
                    match tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
                        Ok(Ok(stream)) => {
                            let connection = builder
                                .serve_connection_with_upgrades(TokioIo::new(stream), service);
                            watcher.watch(connection.into_owned()).await
                        }
                        Ok(Err(err)) => {
                            tracing::debug!(%peer, error = %err, "TLS handshake failed");
                            return;
                        }
                        Err(_) => return,
                    }
                }
                None => {
                    let connection =
                        builder.serve_connection_with_upgrades(TokioIo::new(tcp), service);
                    watcher.watch(connection.into_owned()).await
                }
            };
            if let Err(err) = served {
                tracing::debug!(%peer, error = %err, "connection ended with an error");
            }
        });
    }
    graceful
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_network_counts_as_one_client() {
        let limits = ConnectionLimits::new(10, 2);
        let a: IpAddr = "2001:db8:1:2::a".parse().unwrap();
        let b: IpAddr = "2001:db8:1:2:ffff::b".parse().unwrap();
        let other: IpAddr = "2001:db8:1:3::a".parse().unwrap();
        let first = limits.admit(a).unwrap();
        let _second = limits.admit(b).unwrap();
        assert!(limits.admit(a).is_none(), "the /64 holds its two places");
        let _elsewhere = limits.admit(other).unwrap();
        drop(first);
        assert_eq!(limits.open_from(b), 1);
        assert!(limits.admit(b).is_some());
        let mapped: IpAddr = "::ffff:10.0.0.1".parse().unwrap();
        assert_eq!(client_key(mapped), "10.0.0.1".parse::<IpAddr>().unwrap());
    }
}
