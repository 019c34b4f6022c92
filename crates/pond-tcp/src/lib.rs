//! Pond's listener for TCP-DuckDB's command protocol, so clients of that
//! server keep working when Pond replaces it. The protocol is one request per
//! line (UTF-8, `\n` or `\r\n`) and one answer per line: `success`,
//! `Error: <message>`, or the rows of a query as one JSON array of objects.
//!
//! This crate only translates. [`command`] turns a line into a Pond SQL
//! statement (`create user` → `CREATE USER … PASSWORD '…'`, `grant table` →
//! `GRANT … ON TABLE …`, …) or passes it on as SQL; `login` becomes
//! `Authenticator::authenticate` (with its failed-login throttle) and one engine
//! [`pond_engine::Session`] per connection runs everything after it, so grants,
//! the sandbox and audit apply exactly as on Flight SQL, HTTP and PostgreSQL.
//!
//! TLS is not handled here: the binary hands [`TcpServer::serve`] a
//! [`Listener`] whose connections have finished their handshake.
//!
//! Start with [`TcpServer::serve`], [`command::parse`] and `conn.rs`.

pub mod command;
mod conn;
pub mod error;

use std::future::Future;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use pond_engine::Engine;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt};
use tokio::sync::{watch, Semaphore};
use tokio::task::JoinSet;

pub use error::{Error, Result};

/// The protocol's name in metrics and audit events.
pub const PROTOCOL: &str = "tcp";

/// Limits of the listener.
#[derive(Debug, Clone)]
pub struct TcpOptions {
    /// Connections served at once; more are answered with an error line and closed.
    pub max_connections: usize,
    /// A logged-in connection that sends nothing for this long is closed.
    pub idle_timeout: Duration,
    /// A connection that has not logged in within this time is closed.
    pub login_timeout: Duration,
    /// Longest request line in bytes (without its terminator).
    pub max_line_bytes: usize,
    /// Largest JSON answer in bytes.
    pub max_result_bytes: usize,
}

impl Default for TcpOptions {
    fn default() -> Self {
        Self {
            max_connections: 512,
            idle_timeout: Duration::from_secs(3600),
            login_timeout: Duration::from_secs(60),
            max_line_bytes: 16 * 1024 * 1024,
            max_result_bytes: 256 * 1024 * 1024,
        }
    }
}

/// Where connections come from: plain TCP, or (in the binary) a TLS listener
/// whose handshakes are done.
pub trait Listener: Send + 'static {
    type Io: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    fn accept(&mut self) -> impl Future<Output = std::io::Result<(Self::Io, SocketAddr)>> + Send;
}

impl Listener for tokio::net::TcpListener {
    type Io = tokio::net::TcpStream;
    async fn accept(&mut self) -> std::io::Result<(Self::Io, SocketAddr)> {
        let (tcp, peer) = tokio::net::TcpListener::accept(self).await?;
        // One small answer per request: no waiting for Nagle's algorithm.
        let _ = tcp.set_nodelay(true);
        Ok((tcp, peer))
    }
}

/// The TCP-DuckDB listener.
pub struct TcpServer {
    engine: Engine,
    options: Arc<TcpOptions>,
}

impl TcpServer {
    pub fn new(engine: Engine, options: TcpOptions) -> Self {
        Self { engine, options: Arc::new(options) }
    }

    /// Accepts connections until `shutdown` completes, then tells every
    /// connection to close (a request in progress finishes first) and waits
    /// for them. Each connection runs on its own task.
    pub async fn serve<L: Listener>(self, mut listener: L, shutdown: impl Future<Output = ()>) -> Result<()> {
        tokio::pin!(shutdown);
        let (stop, stopped) = watch::channel(false);
        let slots = Arc::new(Semaphore::new(self.options.max_connections.max(1)));
        let mut connections = JoinSet::new();
        loop {
            tokio::select! {
                _ = &mut shutdown => break,
                accepted = listener.accept() => {
                    let (io, peer) = match accepted {
                        Ok(c) => c,
                        Err(e) => {
                            tracing::warn!(error = %e, "TCP-DuckDB listener: accept failed");
                            tokio::time::sleep(Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    match slots.clone().try_acquire_owned() {
                        Ok(slot) => {
                            let conn = conn::Connection::new(self.engine.clone(), self.options.clone(), peer);
                            let stopped = stopped.clone();
                            connections.spawn(async move {
                                conn.run(io, stopped).await;
                                drop(slot);
                            });
                        }
                        Err(_) => {
                            tracing::warn!(%peer, max = self.options.max_connections, "TCP-DuckDB listener: too many connections");
                            let message = format!(
                                "Error: too many connections: the server allows {} at once (try again later)\n",
                                self.options.max_connections
                            );
                            connections.spawn(refuse(io, message));
                        }
                    }
                }
                Some(_) = connections.join_next(), if !connections.is_empty() => {}
            }
        }
        let _ = stop.send(true);
        while connections.join_next().await.is_some() {}
        Ok(())
    }
}

async fn refuse<S: AsyncWrite + Unpin>(mut io: S, message: String) {
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        let _ = io.write_all(message.as_bytes()).await;
        let _ = io.shutdown().await;
    })
    .await;
}
