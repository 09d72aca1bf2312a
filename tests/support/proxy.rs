//! A TCP proxy in front of a database server, on a loopback port of its own. A test can freeze
//! it (a network black hole: bytes swallowed, nothing answered) or kill it (the port closed,
//! every connection through it cut: a server gone). It counts the bytes clients send, so a
//! test can tell whether a driver was called at all.
#![allow(dead_code)]

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::watch;

pub struct Proxy {
    pub port: u16,
    frozen: Arc<AtomicBool>,
    from_clients: Arc<AtomicUsize>,
    killed: watch::Sender<bool>,
}

impl Proxy {
    /// A proxy to `target` (`127.0.0.1:5432`), forwarding until frozen or killed.
    pub async fn to(target: &'static str) -> Proxy {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("a free loopback port for the proxy");
        let port = listener.local_addr().expect("the proxy's address").port();
        let frozen = Arc::new(AtomicBool::new(false));
        let from_clients = Arc::new(AtomicUsize::new(0));
        let (killed, mut kill) = watch::channel(false);
        let (flag, counted, cut) = (
            Arc::clone(&frozen),
            Arc::clone(&from_clients),
            killed.subscribe(),
        );
        tokio::spawn(async move {
            loop {
                let accepted = tokio::select! {
                    accepted = listener.accept() => accepted,
                    _ = kill.changed() => break,
                };
                let Ok((client, _)) = accepted else { break };
                let Ok(server) = tokio::net::TcpStream::connect(target).await else {
                    continue;
                };
                let (client_read, client_write) = client.into_split();
                let (server_read, server_write) = server.into_split();
                let count = Some(Arc::clone(&counted));
                tokio::spawn(pump(
                    client_read,
                    server_write,
                    Arc::clone(&flag),
                    count,
                    cut.clone(),
                ));
                tokio::spawn(pump(
                    server_read,
                    client_write,
                    Arc::clone(&flag),
                    None,
                    cut.clone(),
                ));
            }
            // The listener drops here: new connections are refused.
        });
        Proxy {
            port,
            frozen,
            from_clients,
            killed,
        }
    }

    /// While frozen, bytes are swallowed and nothing answers.
    pub fn freeze(&self, frozen: bool) {
        self.frozen.store(frozen, Ordering::SeqCst);
    }

    /// Closes the port and cuts every connection through it, for good.
    pub fn kill(&self) {
        let _ = self.killed.send(true);
    }

    /// Bytes clients have sent, forwarded or swallowed.
    pub fn bytes_from_clients(&self) -> usize {
        self.from_clients.load(Ordering::SeqCst)
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Copies bytes until either side closes or the proxy is killed; while frozen, swallows them
/// and answers nothing.
async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    frozen: Arc<AtomicBool>,
    count: Option<Arc<AtomicUsize>>,
    mut killed: watch::Receiver<bool>,
) {
    let mut buffer = vec![0u8; 64 * 1024];
    loop {
        if *killed.borrow() {
            break;
        }
        let read = tokio::select! {
            read = from.read(&mut buffer) => read,
            _ = killed.changed() => break,
        };
        let n = match read {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(count) = &count {
            count.fetch_add(n, Ordering::SeqCst);
        }
        if frozen.load(Ordering::SeqCst) {
            continue;
        }
        if to.write_all(&buffer[..n]).await.is_err() {
            break;
        }
    }
}
