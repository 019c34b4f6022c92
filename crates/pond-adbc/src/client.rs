//! The network side: option parsing, the one gRPC channel and token a
//! database object shares with its connections, and the handful of Flight
//! RPCs the driver makes (GetFlightInfo, DoGet, DoPut, DoAction, Handshake).
//!
//! Look at [`DbConfig`] (what the options mean) and [`Shared`] (channel +
//! token), then [`Rpc`] (one connection's view: its session and headers).

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use arrow_flight::flight_service_client::FlightServiceClient;
use arrow_flight::sql::ProstMessageExt;
use arrow_flight::{Action, FlightData, FlightDescriptor, FlightInfo, HandshakeRequest, PutResult, Ticket};
use base64::Engine as _;
use parking_lot::Mutex;
use prost::Message;
use tonic::metadata::{AsciiMetadataKey, AsciiMetadataValue, MetadataMap};
use tonic::transport::{Certificate, Channel, ClientTlsConfig, Endpoint, Identity};

use crate::error::{invalid, Error, Result};

/// One multi-threaded runtime for the whole process. Driver managers never
/// unload drivers, so it lives as long as the process.
pub static RUNTIME: LazyLock<tokio::runtime::Runtime> = LazyLock::new(|| {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .thread_name("pond-adbc")
        .enable_all()
        .build()
        .unwrap_or_else(|e| panic!("cannot start the Pond ADBC driver's runtime: {e}"))
});

/// Runs a future to completion from a caller's (non-runtime) thread.
pub fn block_on<F: std::future::Future>(f: F) -> F::Output {
    RUNTIME.block_on(f)
}

/// Result compression asked of the server per call (`pond-compression` header).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Compression {
    #[default]
    None,
    Lz4,
    Zstd,
}

impl Compression {
    pub fn header(self) -> Option<&'static str> {
        match self {
            Compression::None => None,
            Compression::Lz4 => Some("lz4"),
            Compression::Zstd => Some("zstd"),
        }
    }
}

impl FromStr for Compression {
    type Err = Error;
    fn from_str(s: &str) -> Result<Self> {
        match s.to_ascii_lowercase().as_str() {
            "" | "none" | "off" => Ok(Compression::None),
            "lz4" | "lz4_frame" => Ok(Compression::Lz4),
            "zstd" => Ok(Compression::Zstd),
            other => Err(invalid(format!("pond.compression: unknown value '{other}' (none, lz4, zstd)"))),
        }
    }
}

/// Timeouts; `None` waits for ever.
#[derive(Debug, Clone, Default)]
pub struct Timeouts {
    pub connect: Option<Duration>,
    pub query: Option<Duration>,
    pub update: Option<Duration>,
    pub fetch: Option<Duration>,
}

/// Database options. Names of the Go Flight SQL driver are accepted where
/// they mean the same thing (see [`DbConfig::set`]).
#[derive(Clone, Default)]
pub struct DbConfig {
    pub uri: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub authorization_header: Option<String>,
    pub tls_root_certs: Option<String>,
    pub tls_skip_verify: bool,
    pub tls_override_hostname: Option<String>,
    pub mtls_cert_chain: Option<String>,
    pub mtls_private_key: Option<String>,
    pub database: Option<String>,
    pub compression: Compression,
    pub timeouts: Timeouts,
    /// Extra headers on every call (`adbc.flight.sql.rpc.call_header.<name>`).
    pub headers: BTreeMap<String, String>,
    /// Batches read ahead of the caller per result stream.
    pub prefetch: usize,
    pub max_message_size: usize,
}

impl std::fmt::Debug for DbConfig {
    // Credentials are never printed.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DbConfig").field("uri", &self.uri).field("username", &self.username).field("database", &self.database).finish()
    }
}

pub const OPT_DATABASE: &str = "pond.database";
pub const OPT_COMPRESSION: &str = "pond.compression";
pub const OPT_PREFETCH: &str = "pond.prefetch_batches";
pub const OPT_CONNECT_TIMEOUT: &str = "pond.timeout.connect";
pub const GO_PREFIX: &str = "adbc.flight.sql.";
pub const GO_CALL_HEADER: &str = "adbc.flight.sql.rpc.call_header.";
pub const GO_TIMEOUT: &str = "adbc.flight.sql.rpc.timeout_seconds.";
pub const OPT_AUTH_HEADER: &str = "adbc.flight.sql.authorization_header";
pub const OPT_QUEUE_SIZE: &str = "adbc.flight.sql.rpc.queue_size";

pub fn parse_bool(key: &str, v: &str) -> Result<bool> {
    match v.to_ascii_lowercase().as_str() {
        "true" | "1" | "yes" | "on" => Ok(true),
        "false" | "0" | "no" | "off" => Ok(false),
        _ => Err(invalid(format!("{key}: expected true or false, got '{v}'"))),
    }
}

pub fn parse_seconds(key: &str, v: &str) -> Result<Option<Duration>> {
    let secs: f64 = v.trim().parse().map_err(|_| invalid(format!("{key}: expected a number of seconds, got '{v}'")))?;
    if !secs.is_finite() || secs < 0.0 {
        return Err(invalid(format!("{key}: expected a non-negative number of seconds, got '{v}'")));
    }
    Ok(if secs == 0.0 { None } else { Some(Duration::from_secs_f64(secs)) })
}

impl DbConfig {
    pub fn new() -> Self {
        Self { prefetch: 8, max_message_size: 64 * 1024 * 1024, ..Default::default() }
    }

    /// Applies one option; unknown names are an error (a typo must not pass silently).
    pub fn set(&mut self, key: &str, value: &str) -> Result<()> {
        match key {
            "uri" => self.uri = Some(value.to_string()),
            "username" => self.username = Some(value.to_string()),
            "password" => self.password = Some(value.to_string()),
            OPT_AUTH_HEADER => self.authorization_header = Some(value.to_string()),
            "adbc.flight.sql.client_option.tls_root_certs" | "pond.tls.root_certs" => self.tls_root_certs = Some(value.to_string()),
            "adbc.flight.sql.client_option.tls_skip_verify" | "pond.tls.skip_verify" => self.tls_skip_verify = parse_bool(key, value)?,
            "adbc.flight.sql.client_option.tls_override_hostname" | "pond.tls.override_hostname" => {
                self.tls_override_hostname = Some(value.to_string())
            }
            "adbc.flight.sql.client_option.mtls_cert_chain" | "pond.tls.mtls_cert_chain" => self.mtls_cert_chain = Some(value.to_string()),
            "adbc.flight.sql.client_option.mtls_private_key" | "pond.tls.mtls_private_key" => {
                self.mtls_private_key = Some(value.to_string())
            }
            OPT_DATABASE | "adbc.connection.catalog" => self.database = non_empty(value),
            OPT_COMPRESSION => self.compression = value.parse()?,
            OPT_PREFETCH | OPT_QUEUE_SIZE => {
                self.prefetch =
                    value.parse().ok().filter(|n| *n > 0).ok_or_else(|| invalid(format!("{key}: expected a positive integer")))?
            }
            OPT_CONNECT_TIMEOUT => self.timeouts.connect = parse_seconds(key, value)?,
            "adbc.flight.sql.client_option.with_max_msg_size" => {
                self.max_message_size = value.parse().map_err(|_| invalid(format!("{key}: expected a number of bytes")))?
            }
            // Go driver options that have no meaning here (gRPC dial behaviour, cookies).
            "adbc.flight.sql.client_option.with_block" | "adbc.flight.sql.rpc.with_cookie_middleware" => {}
            k if k.starts_with(GO_CALL_HEADER) => {
                let name = k[GO_CALL_HEADER.len()..].to_ascii_lowercase();
                if name == "database" {
                    self.database = non_empty(value);
                } else {
                    self.headers.insert(name, value.to_string());
                }
            }
            k if k.starts_with(GO_TIMEOUT) => {
                let d = parse_seconds(key, value)?;
                match &k[GO_TIMEOUT.len()..] {
                    "fetch" => self.timeouts.fetch = d,
                    "query" => self.timeouts.query = d,
                    "update" => self.timeouts.update = d,
                    "connect" => self.timeouts.connect = d,
                    other => return Err(invalid(format!("unknown timeout '{other}' (fetch, query, update, connect)"))),
                }
            }
            other => {
                return Err(Error::NotImplemented(format!("unknown database option '{other}'")));
            }
        }
        Ok(())
    }

    pub fn get(&self, key: &str) -> Option<String> {
        match key {
            "uri" => self.uri.clone(),
            "username" => self.username.clone(),
            OPT_DATABASE | "adbc.connection.catalog" => self.database.clone(),
            OPT_COMPRESSION => Some(self.compression.header().unwrap_or("none").to_string()),
            OPT_PREFETCH | OPT_QUEUE_SIZE => Some(self.prefetch.to_string()),
            k if k.starts_with(GO_CALL_HEADER) => self.headers.get(&k[GO_CALL_HEADER.len()..]).cloned(),
            // Passwords, tokens and keys are write-only.
            _ => None,
        }
    }
}

fn non_empty(v: &str) -> Option<String> {
    if v.is_empty() {
        None
    } else {
        Some(v.to_string())
    }
}

/// Accepts any server certificate (`tls_skip_verify`): for tests and
/// self-signed set-ups only.
#[derive(Debug)]
struct NoVerify(Arc<rustls::crypto::CryptoProvider>);

impl rustls::client::danger::ServerCertVerifier for NoVerify {
    fn verify_server_cert(
        &self,
        _end_entity: &rustls::pki_types::CertificateDer<'_>,
        _intermediates: &[rustls::pki_types::CertificateDer<'_>],
        _server_name: &rustls::pki_types::ServerName<'_>,
        _ocsp_response: &[u8],
        _now: rustls::pki_types::UnixTime,
    ) -> std::result::Result<rustls::client::danger::ServerCertVerified, rustls::Error> {
        Ok(rustls::client::danger::ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &rustls::pki_types::CertificateDer<'_>,
        dss: &rustls::DigitallySignedStruct,
    ) -> std::result::Result<rustls::client::danger::HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0.signature_verification_algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<rustls::SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// What a database object shares with all its connections.
pub struct Shared {
    pub config: DbConfig,
    pub channel: Channel,
    /// `Bearer …` from the handshake or the caller; obtained once.
    auth: Mutex<Option<AsciiMetadataValue>>,
    /// Vendor name/version/Arrow version from GetSqlInfo, fetched once.
    pub server_info: Mutex<Option<Vec<(u32, String)>>>,
}

impl Shared {
    /// Builds the channel (lazily connected: no network round trip here).
    pub fn new(config: DbConfig) -> Result<Self> {
        let uri = config.uri.clone().ok_or_else(|| invalid("the 'uri' option is required (grpc://host:port or grpc+tls://host:port)"))?;
        let (tls, rest) = if let Some(r) = uri.strip_prefix("grpc+tls://") {
            (true, r)
        } else if let Some(r) = uri.strip_prefix("grpc+tcp://").or_else(|| uri.strip_prefix("grpc://")) {
            (false, r)
        } else {
            return Err(invalid(format!("uri '{uri}': expected grpc://host:port or grpc+tls://host:port")));
        };
        let scheme = if tls { "https" } else { "http" };
        let connect_err = |e: &dyn std::fmt::Display| Error::Connect { uri: uri.clone(), message: e.to_string() };
        let mut endpoint = Endpoint::from_shared(format!("{scheme}://{rest}"))
            .map_err(|e| connect_err(&e))?
            .tcp_nodelay(true)
            .http2_keep_alive_interval(Duration::from_secs(30))
            .keep_alive_while_idle(false)
            .initial_stream_window_size(Some(8 * 1024 * 1024))
            .initial_connection_window_size(Some(16 * 1024 * 1024))
            .max_frame_size(Some(1024 * 1024))
            .user_agent(format!("adbc-driver-pond/{}", env!("CARGO_PKG_VERSION")))
            .map_err(|e| connect_err(&e))?;
        if let Some(t) = config.timeouts.connect {
            endpoint = endpoint.connect_timeout(t);
        }
        if tls {
            let mut tls_config = ClientTlsConfig::new();
            if let Some(pem) = &config.tls_root_certs {
                tls_config = tls_config.ca_certificate(Certificate::from_pem(pem));
            } else {
                tls_config = tls_config.with_webpki_roots();
            }
            if let Some(host) = &config.tls_override_hostname {
                tls_config = tls_config.domain_name(host.clone());
            }
            match (&config.mtls_cert_chain, &config.mtls_private_key) {
                (Some(cert), Some(key)) => tls_config = tls_config.identity(Identity::from_pem(cert, key)),
                (None, None) => {}
                _ => return Err(invalid("mTLS needs both mtls_cert_chain and mtls_private_key")),
            }
            endpoint = if config.tls_skip_verify {
                let provider = Arc::new(rustls::crypto::ring::default_provider());
                endpoint.tls_config_with_verifier(ClientTlsConfig::new().identity_opt(&config), Arc::new(NoVerify(provider)))
            } else {
                endpoint.tls_config(tls_config)
            }
            .map_err(|e| connect_err(&e))?;
        }
        let channel = {
            // connect_lazy spawns onto the current runtime.
            let _guard = RUNTIME.enter();
            endpoint.connect_lazy()
        };
        let auth = match &config.authorization_header {
            Some(h) => {
                let v = if h.contains(' ') { h.clone() } else { format!("Bearer {h}") };
                Some(AsciiMetadataValue::from_str(&v).map_err(|_| invalid("authorization_header is not a valid header value"))?)
            }
            None => None,
        };
        Ok(Self { config, channel, auth: Mutex::new(auth), server_info: Mutex::new(None) })
    }

    fn client(&self) -> FlightServiceClient<Channel> {
        FlightServiceClient::new(self.channel.clone())
            .max_decoding_message_size(self.config.max_message_size)
            .max_encoding_message_size(self.config.max_message_size)
    }

    /// The authorization header value, doing the Basic → bearer handshake once.
    pub async fn authorization(&self) -> Result<Option<AsciiMetadataValue>> {
        if let Some(v) = self.auth.lock().clone() {
            return Ok(Some(v));
        }
        let (Some(user), Some(password)) = (&self.config.username, &self.config.password) else {
            if self.config.username.is_some() {
                return Err(invalid("'username' was given without 'password'"));
            }
            return Ok(None);
        };
        let req = self.handshake_request(user, password)?;
        let resp = self.client().handshake(req).await.map_err(|s| self.connect_status(s))?;
        let header = resp.metadata().get("authorization").cloned();
        let mut stream = resp.into_inner();
        let mut payload = None;
        while let Some(m) = stream.message().await? {
            payload = Some(m.payload);
        }
        let value = match (header, payload) {
            (Some(h), _) => h,
            (None, Some(p)) if !p.is_empty() => AsciiMetadataValue::from_str(&format!("Bearer {}", String::from_utf8_lossy(&p)))
                .map_err(|_| Error::Internal("the server's handshake token is not a valid header".into()))?,
            _ => return Err(Error::Internal("the server's handshake answer has no authorization token".into())),
        };
        *self.auth.lock() = Some(value.clone());
        Ok(Some(value))
    }

    fn handshake_request(
        &self,
        user: &str,
        password: &str,
    ) -> Result<tonic::Request<futures::stream::Iter<std::vec::IntoIter<HandshakeRequest>>>> {
        let basic = base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"));
        let mut req = tonic::Request::new(futures::stream::iter(vec![HandshakeRequest::default()]));
        req.metadata_mut().insert(
            "authorization",
            AsciiMetadataValue::from_str(&format!("Basic {basic}")).map_err(|_| invalid("username/password are not valid"))?,
        );
        for (k, v) in &self.config.headers {
            insert(req.metadata_mut(), k, v)?;
        }
        if let Some(t) = self.config.timeouts.connect {
            req.set_timeout(t);
        }
        Ok(req)
    }

    /// Whether this database logged in with username/password (its
    /// handshake opened a server session of its own).
    pub fn did_handshake(&self) -> bool {
        self.config.authorization_header.is_none() && self.auth.lock().is_some()
    }

    /// Connection failures name the server address.
    fn connect_status(&self, s: tonic::Status) -> Error {
        if s.code() == tonic::Code::Unavailable {
            Error::Connect { uri: self.config.uri.clone().unwrap_or_default(), message: s.message().to_string() }
        } else {
            s.into()
        }
    }
}

trait IdentityOpt {
    fn identity_opt(self, c: &DbConfig) -> Self;
}

impl IdentityOpt for ClientTlsConfig {
    fn identity_opt(self, c: &DbConfig) -> Self {
        let t = match (&c.mtls_cert_chain, &c.mtls_private_key) {
            (Some(cert), Some(key)) => self.identity(Identity::from_pem(cert, key)),
            _ => self,
        };
        match &c.tls_override_hostname {
            Some(h) => t.domain_name(h.clone()),
            None => t,
        }
    }
}

fn insert(md: &mut MetadataMap, k: &str, v: &str) -> Result<()> {
    let key = AsciiMetadataKey::from_str(k).map_err(|_| invalid(format!("'{k}' is not a valid header name")))?;
    let value = AsciiMetadataValue::from_str(v).map_err(|_| invalid(format!("the value of header '{k}' is not valid")))?;
    md.insert(key, value);
    Ok(())
}

/// Which kind of call, for its timeout.
#[derive(Clone, Copy)]
pub enum CallKind {
    Query,
    Update,
    Fetch,
    Other,
}

/// One connection's way of calling the server: shared channel and token,
/// its own session id and database.
#[derive(Clone)]
pub struct Rpc {
    pub shared: Arc<Shared>,
    pub session_id: String,
    pub database: Option<String>,
}

impl Rpc {
    pub fn new(shared: Arc<Shared>) -> Self {
        let database = shared.config.database.clone();
        Self { shared, session_id: new_session_id(), database }
    }

    async fn request<T>(&self, body: T, kind: CallKind) -> Result<tonic::Request<T>> {
        let auth = self.shared.authorization().await?;
        self.build_request(body, kind, auth)
    }

    fn build_request<T>(&self, body: T, kind: CallKind, auth: Option<AsciiMetadataValue>) -> Result<tonic::Request<T>> {
        let mut req = tonic::Request::new(body);
        let md = req.metadata_mut();
        for (k, v) in &self.shared.config.headers {
            insert(md, k, v)?;
        }
        if let Some(auth) = auth {
            md.insert("authorization", auth);
        }
        if !self.session_id.is_empty() {
            insert(md, "x-pond-session", &self.session_id)?;
        }
        if let Some(db) = &self.database {
            insert(md, "database", db)?;
        }
        let t = &self.shared.config.timeouts;
        let timeout = match kind {
            CallKind::Query | CallKind::Other => t.query,
            CallKind::Update => t.update,
            CallKind::Fetch => t.fetch,
        };
        if let Some(d) = timeout {
            req.set_timeout(d);
        }
        Ok(req)
    }

    /// GetFlightInfo for a Flight SQL command.
    pub async fn flight_info<M: ProstMessageExt>(&self, cmd: M) -> Result<FlightInfo> {
        let descriptor = FlightDescriptor::new_cmd(cmd.as_any().encode_to_vec());
        let req = self.request(descriptor, CallKind::Query).await?;
        let info = self.shared.client().get_flight_info(req).await.map_err(|s| self.shared.connect_status(s))?;
        Ok(info.into_inner())
    }

    /// DoGet of one ticket: the raw FlightData stream.
    pub async fn do_get(&self, ticket: Ticket, compression: Compression) -> Result<tonic::Streaming<FlightData>> {
        let mut req = self.request(ticket, CallKind::Fetch).await?;
        if let Some(c) = compression.header() {
            insert(req.metadata_mut(), "pond-compression", c)?;
        }
        Ok(self.shared.client().do_get(req).await.map_err(|s| self.shared.connect_status(s))?.into_inner())
    }

    /// DoPut: sends `data` (first message carries the descriptor) and returns
    /// the server's first PutResult.
    pub fn do_put(
        &self,
        data: futures::stream::BoxStream<'static, FlightData>,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<Option<PutResult>>> + Send + 'static>> {
        let this = self.clone();
        // Feed the request through a channel: tonic gets a concrete, Sync stream.
        let (tx, rx) = tokio::sync::mpsc::channel::<FlightData>(2);
        RUNTIME.spawn(async move {
            let mut data = data;
            while let Some(d) = futures::StreamExt::next(&mut data).await {
                if tx.send(d).await.is_err() {
                    break;
                }
            }
        });
        Box::pin(async move {
            let data = tokio_stream::wrappers::ReceiverStream::new(rx);
            let req = this.request(data, CallKind::Update).await?;
            let mut results = this.shared.client().do_put(req).await.map_err(|s| this.shared.connect_status(s))?.into_inner();
            let mut first = None;
            while let Some(r) = results.message().await? {
                if first.is_none() {
                    first = Some(r);
                }
            }
            Ok(first)
        })
    }

    /// DoAction; returns the bodies of its results.
    pub async fn action(&self, kind: &str, body: Vec<u8>) -> Result<Vec<bytes::Bytes>> {
        let req = self.request(Action { r#type: kind.to_string(), body: body.into() }, CallKind::Other).await?;
        let mut stream = self.shared.client().do_action(req).await.map_err(|s| self.shared.connect_status(s))?.into_inner();
        let mut out = Vec::new();
        while let Some(r) = stream.message().await? {
            out.push(r.body);
        }
        Ok(out)
    }

    /// A Flight SQL action whose request and result are wrapped in `Any`.
    pub async fn sql_action<Req: ProstMessageExt, Res: ProstMessageExt + Default>(&self, kind: &str, req: Req) -> Result<Option<Res>> {
        let bodies = self.action(kind, req.as_any().encode_to_vec()).await?;
        match bodies.first() {
            Some(b) => {
                let any = prost_types_any(b)?;
                Ok(Some(Res::decode(any.as_slice())?))
            }
            None => Ok(None),
        }
    }
}

/// The `value` of a protobuf `Any` (type_url = 1, value = 2).
fn prost_types_any(b: &[u8]) -> Result<Vec<u8>> {
    #[derive(Clone, PartialEq, prost::Message)]
    struct Any {
        #[prost(string, tag = "1")]
        type_url: String,
        #[prost(bytes = "vec", tag = "2")]
        value: Vec<u8>,
    }
    Ok(Any::decode(b)?.value)
}

fn new_session_id() -> String {
    use std::hash::{BuildHasher, Hasher};
    use std::sync::atomic::{AtomicU64, Ordering};
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(n);
    h.write_u32(std::process::id());
    format!("{:016x}{:08x}{n:x}", h.finish(), std::process::id())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn go_driver_option_names_mean_the_same() {
        let mut c = DbConfig::new();
        c.set("adbc.flight.sql.rpc.call_header.database", "sales").unwrap();
        c.set("adbc.flight.sql.rpc.timeout_seconds.query", "2.5").unwrap();
        c.set("adbc.flight.sql.client_option.tls_skip_verify", "true").unwrap();
        assert_eq!(c.database.as_deref(), Some("sales"));
        assert_eq!(c.timeouts.query, Some(Duration::from_millis(2500)));
        assert!(c.tls_skip_verify);
        assert!(c.set("pond.compresion", "lz4").is_err());
        assert!(c.set(OPT_COMPRESSION, "brotli").is_err());
    }

    #[test]
    fn secrets_are_not_readable_back() {
        let mut c = DbConfig::new();
        c.set("password", "s3cret").unwrap();
        assert_eq!(c.get("password"), None);
        assert!(!format!("{c:?}").contains("s3cret"));
    }
}
