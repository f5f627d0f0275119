//! A TCP proxy that a test can cut: worker processes reach RabbitMQ or Postgres through
//! it, and the test simulates a broker restart or a database outage without touching
//! the shared servers other tests use.
//!
//! While up, it forwards every accepted connection to the upstream address. `cut`
//! drops every proxied connection (both sockets closed, as when a server dies) and
//! closes the listening socket, so new connections are refused (ECONNREFUSED, as
//! with a stopped server, which is what clients' reconnect logic expects to see).
//! `restore` listens again on the same port.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

pub struct TcpProxy {
    addr: SocketAddr,
    upstream: SocketAddr,
    up: watch::Sender<bool>,
    shared: Arc<Shared>,
    task: JoinHandle<()>,
}

#[derive(Default)]
struct Shared {
    listening: AtomicBool,
    /// Connections forwarded right now.
    open: AtomicUsize,
    /// Connections accepted and forwarded since the start.
    accepted: AtomicU64,
}

impl TcpProxy {
    /// A proxy on a free local port forwarding to `upstream`, up from the start.
    pub async fn start(upstream: SocketAddr) -> TcpProxy {
        let listener = TcpListener::bind("127.0.0.1:0")
            .await
            .unwrap_or_else(|e| panic!("test proxy: cannot bind a local port: {e}"));
        let addr = listener.local_addr().unwrap_or_else(|e| panic!("test proxy: local address: {e}"));
        let (up, state) = watch::channel(true);
        let shared = Arc::new(Shared::default());
        shared.listening.store(true, Ordering::SeqCst);
        let task = tokio::spawn(serve(Some(listener), addr, upstream, state, shared.clone()));
        TcpProxy { addr, upstream, up, shared, task }
    }

    /// Where clients should connect.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn upstream(&self) -> SocketAddr {
        self.upstream
    }

    /// Connections accepted since the start (reconnections raise it).
    pub fn accepted(&self) -> u64 {
        self.shared.accepted.load(Ordering::SeqCst)
    }

    /// Connections being forwarded now.
    pub fn open_connections(&self) -> usize {
        self.shared.open.load(Ordering::SeqCst)
    }

    /// Drops every proxied connection and refuses new ones until `restore`. Returns
    /// once the port is closed and no connection is left.
    pub async fn cut(&self) {
        self.up.send_replace(false);
        let deadline = Instant::now() + Duration::from_secs(10);
        while self.shared.listening.load(Ordering::SeqCst) || self.open_connections() > 0 {
            assert!(Instant::now() < deadline, "test proxy: connections still open 10 s after the cut");
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// Listens again on the same port. Returns once new connections are accepted.
    pub async fn restore(&self) {
        self.up.send_replace(true);
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.shared.listening.load(Ordering::SeqCst) {
            assert!(Instant::now() < deadline, "test proxy: cannot listen on {} again", self.addr);
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    }

    /// `url` with its `host:port` replaced by this proxy's address (user, path and query
    /// kept), e.g. `amqp://guest:guest@127.0.0.1:5672/%2f` -> `...@127.0.0.1:41234/%2f`.
    pub fn rewrite_url(&self, url: &str) -> String {
        replace_authority_host(url, &self.addr.to_string())
    }
}

impl Drop for TcpProxy {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// The `host:port` a URL such as `postgres://user@host:5432/db` points at.
pub fn url_socket_addr(url: &str, default_port: u16) -> SocketAddr {
    let (start, end) = authority_host_span(url);
    let host_port = &url[start..end];
    let with_port = if host_port.contains(':') { host_port.to_string() } else { format!("{host_port}:{default_port}") };
    let with_port = with_port.replace("localhost", "127.0.0.1");
    with_port.parse().unwrap_or_else(|e| panic!("test proxy: {with_port:?} (from a URL) is not an IP:port: {e}"))
}

/// Byte span of `host[:port]` in `scheme://[user[:pass]@]host[:port][/...]`.
fn authority_host_span(url: &str) -> (usize, usize) {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    let rest = &url[after_scheme..];
    let authority_end = rest.find(['/', '?']).unwrap_or(rest.len());
    let authority = &rest[..authority_end];
    let host_start = authority.rfind('@').map_or(0, |i| i + 1);
    (after_scheme + host_start, after_scheme + authority_end)
}

fn replace_authority_host(url: &str, host_port: &str) -> String {
    let (start, end) = authority_host_span(url);
    format!("{}{}{}", &url[..start], host_port, &url[end..])
}

async fn serve(
    mut listener: Option<TcpListener>,
    addr: SocketAddr,
    upstream: SocketAddr,
    mut state: watch::Receiver<bool>,
    shared: Arc<Shared>,
) {
    loop {
        let Some(current) = listener.take() else {
            // Down: wait to be restored, then listen on the same port again.
            if state.wait_for(|up| *up).await.is_err() {
                return;
            }
            listener = Some(bind_again(addr).await);
            shared.listening.store(true, Ordering::SeqCst);
            continue;
        };
        tokio::select! {
            accepted = current.accept() => {
                listener = Some(current);
                let Ok((client, _)) = accepted else { continue };
                shared.accepted.fetch_add(1, Ordering::SeqCst);
                shared.open.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(forward(client, upstream, state.clone(), shared.clone()));
            }
            changed = state.changed() => {
                if changed.is_err() {
                    return;
                }
                if *state.borrow_and_update() {
                    listener = Some(current);
                } else {
                    drop(current); // refuse new connections from now on
                    shared.listening.store(false, Ordering::SeqCst);
                }
            }
        }
    }
}

async fn bind_again(addr: SocketAddr) -> TcpListener {
    // The port was ours a moment ago; on Unix tokio sets SO_REUSEADDR, so this only
    // fails if someone else grabbed the port meanwhile.
    let deadline = Instant::now() + Duration::from_secs(5);
    loop {
        match TcpListener::bind(addr).await {
            Ok(listener) => return listener,
            Err(e) => {
                assert!(Instant::now() < deadline, "test proxy: cannot listen on {addr} again: {e}");
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
    }
}

async fn forward(mut client: TcpStream, upstream: SocketAddr, mut state: watch::Receiver<bool>, shared: Arc<Shared>) {
    if *state.borrow_and_update() {
        if let Ok(mut server) = TcpStream::connect(upstream).await {
            let _ = client.set_nodelay(true);
            let _ = server.set_nodelay(true);
            tokio::select! {
                _ = tokio::io::copy_bidirectional(&mut client, &mut server) => {}
                _ = state.wait_for(|up| !*up) => {}
            }
        }
    }
    // Dropping both sockets closes them: the client sees its connection reset or closed.
    drop(client);
    shared.open.fetch_sub(1, Ordering::SeqCst);
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[test]
    fn urls_are_pointed_at_the_proxy() {
        assert_eq!(
            replace_authority_host("amqp://guest:guest@127.0.0.1:5672/%2f", "127.0.0.1:4000"),
            "amqp://guest:guest@127.0.0.1:4000/%2f"
        );
        assert_eq!(
            replace_authority_host("postgres://postgres@127.0.0.1:5432/db?sslmode=disable", "127.0.0.1:4001"),
            "postgres://postgres@127.0.0.1:4001/db?sslmode=disable"
        );
        assert_eq!(url_socket_addr("postgres://u@localhost/db", 5432), "127.0.0.1:5432".parse().unwrap());
        assert_eq!(url_socket_addr("amqp://g:g@127.0.0.1:5673/%2f", 5672), "127.0.0.1:5673".parse().unwrap());
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_cut_drops_connections_and_refuses_new_ones_until_restored() {
        // An echo server upstream.
        let echo = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let upstream = echo.local_addr().unwrap();
        tokio::spawn(async move {
            while let Ok((mut socket, _)) = echo.accept().await {
                tokio::spawn(async move {
                    let mut buf = [0u8; 64];
                    while let Ok(n) = socket.read(&mut buf).await {
                        if n == 0 || socket.write_all(&buf[..n]).await.is_err() {
                            break;
                        }
                    }
                });
            }
        });
        let proxy = TcpProxy::start(upstream).await;
        let mut client = TcpStream::connect(proxy.addr()).await.unwrap();
        client.write_all(b"ping").await.unwrap();
        let mut buf = [0u8; 4];
        client.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"ping");

        proxy.cut().await;
        let mut rest = Vec::new();
        let read = tokio::time::timeout(Duration::from_secs(5), client.read_to_end(&mut rest)).await.unwrap();
        assert!(read.is_err() || rest.is_empty(), "the proxied connection is closed");
        let refused = TcpStream::connect(proxy.addr()).await;
        assert!(refused.is_err(), "new connections are refused while cut");

        proxy.restore().await;
        let mut again = TcpStream::connect(proxy.addr()).await.unwrap();
        again.write_all(b"pong").await.unwrap();
        again.read_exact(&mut buf).await.unwrap();
        assert_eq!(&buf, b"pong");
        assert_eq!(proxy.accepted(), 2);
    }
}
