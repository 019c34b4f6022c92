//! Arrow Flight SQL listener. It translates Flight SQL calls (gRPC, via
//! `arrow-flight` and `tonic`) into calls on `pond_engine` sessions and
//! results back into Arrow IPC; it holds no business logic of its own.
//!
//! How a query flows: `Handshake` (Basic) creates a session and answers with
//! `authorization: Bearer <token>`; `GetFlightInfo` executes the statement at
//! once (DDL/DML take effect even if never fetched) and parks the result
//! stream under a ticket; `DoGet` streams it out in ~1.5 MiB messages.
//!
//! Start with [`FlightSqlServer`] and the `service` module.

mod metadata;
mod options;
mod service;
mod sessions;
mod status;

use std::sync::Arc;
use std::time::Duration;

use arrow_flight::flight_service_server::FlightServiceServer;
use pond_auth::Authenticator;
use pond_engine::Engine;

pub use service::PondFlightService;

/// IPC body compression for result streams.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    #[default]
    None,
    Lz4,
    Zstd,
}

impl std::str::FromStr for Compression {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "none" | "" => Ok(Compression::None),
            "lz4" | "lz4_frame" => Ok(Compression::Lz4),
            "zstd" => Ok(Compression::Zstd),
            other => Err(format!("unknown compression '{other}' (none, lz4, zstd)")),
        }
    }
}

#[derive(Debug, Clone)]
pub struct FlightOptions {
    /// Default IPC compression; a client may ask per call with the
    /// `pond-compression` header.
    pub compression: Compression,
    /// Results not fetched within this time are dropped (and DuckDB stopped).
    pub unfetched_result_ttl: Duration,
}

impl Default for FlightOptions {
    fn default() -> Self {
        Self { compression: Compression::None, unfetched_result_ttl: Duration::from_secs(300) }
    }
}

/// The Flight SQL server: build it, then [`FlightSqlServer::serve`] it on a listener.
pub struct FlightSqlServer {
    service: PondFlightService,
}

impl FlightSqlServer {
    pub fn new(engine: Engine, auth: Arc<Authenticator>, options: FlightOptions) -> Self {
        Self { service: PondFlightService::new(engine, auth, options) }
    }

    /// Serves plain-text gRPC on `listener` until `shutdown` resolves.
    pub async fn serve(
        self,
        listener: tokio::net::TcpListener,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), tonic::transport::Error> {
        // Small request/response round trips (SELECT 1) must not wait for
        // Nagle's algorithm and delayed ACKs: set TCP_NODELAY on every connection.
        let incoming = tonic::transport::server::TcpIncoming::from(listener).with_nodelay(Some(true));
        self.serve_with_incoming(incoming, shutdown).await
    }

    /// Serves the connections `incoming` yields until `shutdown` resolves
    /// (`pond` passes TLS streams whose handshake is done). HTTP/2 limits are
    /// raised for clients that send large headers (JDBC turns URL parameters
    /// into headers) and messages up to 64 MiB are accepted (bulk ingest,
    /// bound parameters).
    pub async fn serve_with_incoming<I, IO, IE>(
        self,
        incoming: I,
        shutdown: impl std::future::Future<Output = ()> + Send + 'static,
    ) -> Result<(), tonic::transport::Error>
    where
        I: futures::Stream<Item = Result<IO, IE>>,
        IO: tokio::io::AsyncRead + tokio::io::AsyncWrite + tonic::transport::server::Connected + Unpin + Send + 'static,
        IE: Into<Box<dyn std::error::Error + Send + Sync>>,
    {
        let svc =
            FlightServiceServer::new(self.service).max_decoding_message_size(64 * 1024 * 1024).max_encoding_message_size(64 * 1024 * 1024);
        // One span per call with a request id (the client's `x-request-id` if it
        // sent one), so every log line of a call can be found together.
        let trace = tower_http::trace::TraceLayer::new_for_grpc().make_span_with(|req: &http::Request<_>| {
            let id = req
                .headers()
                .get("x-request-id")
                .and_then(|v| v.to_str().ok())
                .map(str::to_string)
                .unwrap_or_else(|| uuid::Uuid::new_v4().simple().to_string());
            tracing::info_span!("flight", method = %req.uri().path(), request_id = %id)
        });
        tonic::transport::Server::builder()
            .layer(trace)
            .http2_max_header_list_size(256 * 1024)
            .http2_keepalive_interval(Some(Duration::from_secs(30)))
            .add_service(svc)
            .serve_with_incoming_shutdown(incoming, shutdown)
            .await
    }
}
