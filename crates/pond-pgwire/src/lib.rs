//! Pond's PostgreSQL wire protocol listener: psql, psycopg, JDBC and BI tools
//! talk to Pond as if it were PostgreSQL 15. Built on the `pgwire` crate,
//! which owns the message framing, SSL negotiation, portals and the
//! extended-query state machine; this crate only translates: startup
//! credentials become `Credentials` for `Authenticator::authenticate`, every
//! statement runs through an engine [`pond_engine::Session`] (grants and the
//! sandbox apply exactly as on Flight SQL and HTTP), Arrow results become
//! DataRows ([`types`]), engine errors become SQLSTATEs ([`error`]).
//!
//! It owns no business logic. Two things are answered here rather than in the
//! engine: the session-parameter statements PostgreSQL clients send at connect
//! time ([`local`]) and PostgreSQL's transaction-block rules (BEGIN inside a
//! transaction, the aborted state until ROLLBACK).
//!
//! Start with [`PgServer::serve`] and the `Backend` handlers in [`handler`].

mod auth;
mod copy;
mod copy_in;
pub mod error;
mod handler;
mod local;
mod pgcatalog;
mod types;

use std::future::Future;
use std::sync::Arc;

use pond_engine::Engine;
use tokio::net::TcpListener;

pub use auth::{PgAuth, TOKEN_USER};
pub use error::{Error, Result};

/// The PostgreSQL listener.
pub struct PgServer {
    backend: Arc<handler::Factory>,
    tls: Option<pgwire::tokio::TlsAcceptor>,
}

impl PgServer {
    /// `tls`: Pond's shared rustls configuration; when given, clients may
    /// switch to TLS with an SSLRequest (`sslmode=require`), and plain
    /// connections are still accepted. `auth`: SCRAM-SHA-256 or cleartext
    /// password requests (see [`PgAuth`]).
    pub fn new(engine: Engine, tls: Option<Arc<rustls::ServerConfig>>, auth: PgAuth) -> Self {
        let tls = tls.map(|cfg| {
            // PostgreSQL 17 clients offer the ALPN name "postgresql"; HTTP's names do not apply.
            let mut cfg = (*cfg).clone();
            cfg.alpn_protocols = vec![b"postgresql".to_vec()];
            pgwire::tokio::TlsAcceptor::from(Arc::new(cfg))
        });
        Self { backend: Arc::new(handler::Factory::new(engine, auth)), tls }
    }

    /// Accepts connections until `shutdown` completes. Each connection runs on
    /// its own task with its own engine session.
    pub async fn serve(self, listener: TcpListener, shutdown: impl Future<Output = ()>) -> Result<()> {
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return Ok(()),
                accepted = listener.accept() => {
                    let (socket, peer) = match accepted {
                        Ok(s) => s,
                        Err(e) => {
                            tracing::warn!(error = %e, "PostgreSQL listener: accept failed");
                            tokio::time::sleep(std::time::Duration::from_millis(50)).await;
                            continue;
                        }
                    };
                    let backend = self.backend.clone();
                    let tls = self.tls.clone();
                    tokio::spawn(async move {
                        if let Err(e) = pgwire::tokio::process_socket(socket, tls, backend).await {
                            tracing::debug!(peer = %peer, error = %e, "PostgreSQL connection ended with an error");
                        }
                    });
                }
            }
        }
    }
}
