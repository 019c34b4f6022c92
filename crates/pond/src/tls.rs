//! TLS for every listener. [`TlsSettings`] names the PEM files given by
//! `--tls-cert`, `--tls-key` and `--tls-client-ca`; [`TlsSettings::load`]
//! turns them into one rustls [`ServerConfig`] that every listener shares (the
//! PostgreSQL and TCP-DuckDB listeners clone it to change its ALPN list). [`TlsListener`] accepts TCP connections
//! and completes their handshakes concurrently, so a slow client cannot hold
//! up the others. [`generate_dev_certs`] writes a development CA, a server
//! certificate and optionally a client certificate (`pond cert generate`).
//!
//! The protocol crates never read files: they are handed streams whose TLS
//! handshake is done. Only the ring crypto provider is used. Key material is
//! never logged, and errors about a key file name the file, not its contents.

use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::server::WebPkiClientVerifier;
use rustls::{RootCertStore, ServerConfig};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tokio_rustls::server::TlsStream;
use tokio_rustls::TlsAcceptor;

/// A client that has not finished its TLS handshake by then is disconnected.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// ALPN protocols offered by the shared config: gRPC needs `h2`; HTTP clients
/// pick `h2` or `http/1.1`.
const ALPN: [&[u8]; 2] = [b"h2", b"http/1.1"];

#[derive(Debug, thiserror::Error)]
pub enum TlsError {
    #[error(
        "--tls-cert is set but --tls-key is not: TLS needs the certificate's private key too (POND_TLS_KEY, or tls-key in the config file)"
    )]
    MissingKey,
    #[error("--tls-key is set but --tls-cert is not: TLS needs the certificate chain too (POND_TLS_CERT, or tls-cert in the config file)")]
    MissingCert,
    #[error("--tls-client-ca needs --tls-cert and --tls-key: client certificates are checked only on TLS connections")]
    ClientCaWithoutTls,
    #[error("cannot read {what} {path} ({flag}): {source}")]
    Read { what: &'static str, flag: &'static str, path: PathBuf, source: std::io::Error },
    #[error("{path} ({flag}) is not a usable {what}: {reason}")]
    Invalid { what: &'static str, flag: &'static str, path: PathBuf, reason: String },
    #[error("the private key {key} does not belong to the certificate {cert} (check --tls-cert and --tls-key)")]
    KeyMismatch { cert: PathBuf, key: PathBuf },
    #[error("TLS configuration failed: {0}")]
    Config(String),
    #[error("{0}")]
    BadOption(String),
    #[error("certificate generation failed: {0}")]
    Generate(String),
    #[error("refusing to overwrite {} (pass --force to replace them)", list_paths(.0))]
    Exists(Vec<PathBuf>),
    #[error("cannot write {path}: {source}")]
    Write { path: PathBuf, source: std::io::Error },
}

fn list_paths(paths: &[PathBuf]) -> String {
    paths.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", ")
}

/// Where the server's TLS material lives. Empty (the default): plain TCP.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsSettings {
    /// PEM certificate chain, the server's own certificate first (`--tls-cert`).
    pub cert: Option<PathBuf>,
    /// PEM private key of that certificate: PKCS#8, PKCS#1 or SEC1 (`--tls-key`).
    pub key: Option<PathBuf>,
    /// PEM CA certificate(s); when set every client must present a certificate
    /// signed by one of them (`--tls-client-ca`, mutual TLS).
    pub client_ca: Option<PathBuf>,
}

impl TlsSettings {
    /// TLS with this certificate chain and key, no client certificates.
    pub fn new(cert: impl Into<PathBuf>, key: impl Into<PathBuf>) -> Self {
        Self { cert: Some(cert.into()), key: Some(key.into()), client_ca: None }
    }

    /// Also require client certificates signed by the CA(s) in `ca`.
    pub fn with_client_ca(mut self, ca: impl Into<PathBuf>) -> Self {
        self.client_ca = Some(ca.into());
        self
    }

    pub fn is_enabled(&self) -> bool {
        self.cert.is_some() || self.key.is_some() || self.client_ca.is_some()
    }

    /// Reads and checks the files: `None` when TLS is off, otherwise the
    /// rustls config every listener uses (ALPN `h2`, `http/1.1`; TLS 1.2 and 1.3).
    pub fn load(&self) -> Result<Option<Arc<ServerConfig>>, TlsError> {
        let (cert_path, key_path) = match (&self.cert, &self.key) {
            (None, None) if self.client_ca.is_some() => return Err(TlsError::ClientCaWithoutTls),
            (None, None) => return Ok(None),
            (Some(_), None) => return Err(TlsError::MissingKey),
            (None, Some(_)) => return Err(TlsError::MissingCert),
            (Some(c), Some(k)) => (c, k),
        };
        let chain = read_certs(cert_path, "TLS certificate", "--tls-cert")?;
        let key = read_key(key_path)?;
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let builder = ServerConfig::builder_with_provider(provider.clone())
            .with_safe_default_protocol_versions()
            .map_err(|e| TlsError::Config(e.to_string()))?;
        let builder = match &self.client_ca {
            None => builder.with_no_client_auth(),
            Some(ca_path) => {
                let mut roots = RootCertStore::empty();
                for cert in read_certs(ca_path, "client CA certificate", "--tls-client-ca")? {
                    roots.add(cert).map_err(|e| TlsError::Invalid {
                        what: "client CA certificate",
                        flag: "--tls-client-ca",
                        path: ca_path.clone(),
                        reason: e.to_string(),
                    })?;
                }
                let verifier = WebPkiClientVerifier::builder_with_provider(Arc::new(roots), provider)
                    .build()
                    .map_err(|e| TlsError::Config(format!("client certificate verifier for {}: {e}", ca_path.display())))?;
                builder.with_client_cert_verifier(verifier)
            }
        };
        let mut config = builder.with_single_cert(chain, key).map_err(|e| match e {
            rustls::Error::InconsistentKeys(_) => TlsError::KeyMismatch { cert: cert_path.clone(), key: key_path.clone() },
            other => TlsError::Invalid {
                what: "certificate and key pair",
                flag: "--tls-cert/--tls-key",
                path: cert_path.clone(),
                reason: other.to_string(),
            },
        })?;
        config.alpn_protocols = ALPN.iter().map(|p| p.to_vec()).collect();
        Ok(Some(Arc::new(config)))
    }
}

fn read_file(path: &Path, what: &'static str, flag: &'static str) -> Result<Vec<u8>, TlsError> {
    std::fs::read(path).map_err(|source| TlsError::Read { what, flag, path: path.to_path_buf(), source })
}

/// Describes a PEM error without quoting the file (it may hold a key).
fn pem_reason(e: &rustls::pki_types::pem::Error) -> String {
    use rustls::pki_types::pem::Error as E;
    match e {
        E::MissingSectionEnd { .. } => "a PEM section has no END line".into(),
        E::IllegalSectionStart { .. } => "a PEM BEGIN line is malformed".into(),
        E::Base64Decode(_) => "a PEM section is not valid base64".into(),
        E::SectionTooLarge => "a PEM section is too large".into(),
        E::Io(e) => e.to_string(),
        _ => "not valid PEM".into(),
    }
}

fn read_certs(path: &Path, what: &'static str, flag: &'static str) -> Result<Vec<CertificateDer<'static>>, TlsError> {
    let bytes = read_file(path, what, flag)?;
    let invalid = |reason: String| TlsError::Invalid { what, flag, path: path.to_path_buf(), reason };
    let certs = CertificateDer::pem_slice_iter(&bytes).collect::<Result<Vec<_>, _>>().map_err(|e| invalid(pem_reason(&e)))?;
    if certs.is_empty() {
        return Err(invalid("it contains no certificate (expected PEM '-----BEGIN CERTIFICATE-----' blocks)".into()));
    }
    Ok(certs)
}

fn read_key(path: &Path) -> Result<PrivateKeyDer<'static>, TlsError> {
    let (what, flag) = ("TLS private key", "--tls-key");
    let bytes = read_file(path, what, flag)?;
    PrivateKeyDer::from_pem_slice(&bytes).map_err(|e| TlsError::Invalid {
        what,
        flag,
        path: path.to_path_buf(),
        reason: match e {
            rustls::pki_types::pem::Error::NoItemsFound => {
                "it contains no private key (expected PEM 'PRIVATE KEY', 'RSA PRIVATE KEY' or 'EC PRIVATE KEY')".into()
            }
            other => pem_reason(&other),
        },
    })
}

type Handshake = Option<(TlsStream<TcpStream>, SocketAddr)>;

/// A TCP listener that hands out connections whose TLS handshake is done.
/// Handshakes run concurrently, each limited by [`HANDSHAKE_TIMEOUT`]; one
/// that fails (plain-text client, untrusted or missing client certificate)
/// closes only that connection and is logged at debug level.
pub struct TlsListener {
    tcp: TcpListener,
    acceptor: TlsAcceptor,
    handshakes: JoinSet<Handshake>,
}

impl TlsListener {
    pub fn new(tcp: TcpListener, config: Arc<ServerConfig>) -> Self {
        Self { tcp, acceptor: TlsAcceptor::from(config), handshakes: JoinSet::new() }
    }

    /// The next connection with a completed handshake. Cancel-safe: pending
    /// handshakes live in `self`, not in the returned future.
    pub async fn next_connection(&mut self) -> (TlsStream<TcpStream>, SocketAddr) {
        loop {
            tokio::select! {
                accepted = self.tcp.accept() => match accepted {
                    Ok((tcp, peer)) => {
                        // Small round trips must not wait for Nagle's algorithm.
                        let _ = tcp.set_nodelay(true);
                        self.handshakes.spawn(handshake(self.acceptor.clone(), tcp, peer));
                    }
                    Err(e) if is_connection_error(&e) => {}
                    Err(e) => {
                        // Out of file descriptors and the like: back off instead of spinning.
                        tracing::warn!(error = %e, "accepting a TCP connection failed");
                        tokio::time::sleep(Duration::from_millis(200)).await;
                    }
                },
                Some(done) = self.handshakes.join_next() => {
                    if let Ok(Some(conn)) = done {
                        return conn;
                    }
                }
            }
        }
    }

    /// The connections as a stream, for tonic's `serve_with_incoming`.
    pub fn into_stream(self) -> impl futures::Stream<Item = std::io::Result<TlsStream<TcpStream>>> + Send + 'static {
        futures::stream::unfold(self, |mut listener| async move {
            let (conn, _) = listener.next_connection().await;
            Some((Ok(conn), listener))
        })
    }
}

impl pond_tcp::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;

    async fn accept(&mut self) -> std::io::Result<(Self::Io, SocketAddr)> {
        Ok(self.next_connection().await)
    }
}

/// The shared config for a listener whose protocol has no ALPN name (the
/// TCP-DuckDB line protocol): a client that offers ALPN names is not refused
/// for offering others than `h2`/`http/1.1`.
pub fn without_alpn(config: &Arc<ServerConfig>) -> Arc<ServerConfig> {
    let mut config = (**config).clone();
    config.alpn_protocols.clear();
    Arc::new(config)
}

impl axum::serve::Listener for TlsListener {
    type Io = TlsStream<TcpStream>;
    type Addr = SocketAddr;

    fn accept(&mut self) -> impl std::future::Future<Output = (Self::Io, Self::Addr)> + Send {
        self.next_connection()
    }

    fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.tcp.local_addr()
    }
}

async fn handshake(acceptor: TlsAcceptor, tcp: TcpStream, peer: SocketAddr) -> Handshake {
    match tokio::time::timeout(HANDSHAKE_TIMEOUT, acceptor.accept(tcp)).await {
        Ok(Ok(stream)) => Some((stream, peer)),
        Ok(Err(e)) => {
            tracing::debug!(%peer, error = %e, "TLS handshake failed");
            None
        }
        Err(_) => {
            tracing::debug!(%peer, "TLS handshake timed out");
            None
        }
    }
}

fn is_connection_error(e: &std::io::Error) -> bool {
    use std::io::ErrorKind::*;
    matches!(e.kind(), ConnectionRefused | ConnectionAborted | ConnectionReset)
}

/// What [`generate_dev_certs`] makes.
#[derive(Debug, Clone)]
pub struct DevCertOptions {
    /// DNS names and IP addresses the server certificate is valid for.
    pub hosts: Vec<String>,
    /// Validity of every certificate, from now.
    pub days: u32,
    /// Also make a client certificate with this common name (for mutual TLS).
    pub client: Option<String>,
    /// Replace existing files instead of refusing.
    pub force: bool,
}

impl Default for DevCertOptions {
    fn default() -> Self {
        Self { hosts: default_hosts(), days: 365, client: None, force: false }
    }
}

/// The names a local server is reached by.
pub fn default_hosts() -> Vec<String> {
    vec!["localhost".into(), "127.0.0.1".into(), "::1".into()]
}

/// The files [`generate_dev_certs`] wrote.
#[derive(Debug, Clone)]
pub struct DevCerts {
    pub ca_cert: PathBuf,
    pub ca_key: PathBuf,
    pub server_cert: PathBuf,
    pub server_key: PathBuf,
    /// Client certificate and key, when a client name was given.
    pub client: Option<(PathBuf, PathBuf)>,
}

impl DevCerts {
    /// The settings that serve with these files (client certificates required
    /// when a client certificate was made).
    pub fn settings(&self) -> TlsSettings {
        let s = TlsSettings::new(&self.server_cert, &self.server_key);
        if self.client.is_some() {
            s.with_client_ca(&self.ca_cert)
        } else {
            s
        }
    }
}

/// Writes a development CA (`ca.pem`, `ca-key.pem`), a server certificate it
/// signs for `options.hosts` (`server.pem`, `server-key.pem`) and, with a
/// client name, a client certificate (`client.pem`, `client-key.pem`) into
/// `out_dir`. Keys are ECDSA P-256 in PKCS#8 PEM, written with mode 0600.
/// Nothing is written if any target exists and `options.force` is false.
/// For development and tests: a production deployment uses its own CA.
pub fn generate_dev_certs(out_dir: &Path, options: &DevCertOptions) -> Result<DevCerts, TlsError> {
    use rcgen::{
        BasicConstraints, CertificateParams, DistinguishedName, DnType, ExtendedKeyUsagePurpose, IsCa, Issuer, KeyPair, KeyUsagePurpose,
        SanType,
    };
    let generate = |e: rcgen::Error| TlsError::Generate(e.to_string());
    if options.days == 0 {
        return Err(TlsError::BadOption("--days must be at least 1".into()));
    }
    let hosts = if options.hosts.is_empty() { default_hosts() } else { options.hosts.clone() };
    let mut sans = Vec::new();
    for host in &hosts {
        let host = host.trim().trim_start_matches('[').trim_end_matches(']');
        sans.push(match host.parse::<IpAddr>() {
            Ok(ip) => SanType::IpAddress(ip),
            Err(_) if is_dns_name(host) => SanType::DnsName(host.to_string().try_into().map_err(generate)?),
            Err(_) => {
                return Err(TlsError::BadOption(format!(
                    "--host '{host}' is neither an IP address nor a DNS name (letters, digits, '-' and '.', optionally starting with '*.')"
                )))
            }
        });
    }

    let path = |name: &str| out_dir.join(name);
    let mut files = vec![path("ca.pem"), path("ca-key.pem"), path("server.pem"), path("server-key.pem")];
    if options.client.is_some() {
        files.extend([path("client.pem"), path("client-key.pem")]);
    }
    let existing: Vec<PathBuf> = files.iter().filter(|p| p.exists()).cloned().collect();
    if !existing.is_empty() && !options.force {
        return Err(TlsError::Exists(existing));
    }

    let now = time::OffsetDateTime::now_utc();
    // An hour of slack for clocks that are a little behind.
    let not_before = now - time::Duration::hours(1);
    let not_after = now + time::Duration::days(i64::from(options.days));
    let name = |cn: &str| {
        let mut dn = DistinguishedName::new();
        dn.push(DnType::OrganizationName, "Pond (development)");
        dn.push(DnType::CommonName, cn);
        dn
    };

    let ca_key = KeyPair::generate().map_err(generate)?;
    let mut ca = CertificateParams::default();
    // A name of its own per CA (from its public key): clients that trust an
    // older development CA then report an unknown issuer, not a bad signature.
    let tag: String = ca_key.public_key_raw().iter().skip(1).take(4).map(|b| format!("{b:02x}")).collect();
    ca.distinguished_name = name(&format!("Pond development CA {tag}"));
    ca.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
    ca.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign, KeyUsagePurpose::DigitalSignature];
    ca.not_before = not_before;
    ca.not_after = not_after;
    let ca_cert = ca.self_signed(&ca_key).map_err(generate)?;
    let issuer = Issuer::new(ca, &ca_key);

    let leaf = |cn: &str, eku: ExtendedKeyUsagePurpose, sans: Vec<SanType>| -> Result<(String, String), TlsError> {
        let key = KeyPair::generate().map_err(generate)?;
        let mut params = CertificateParams::default();
        params.distinguished_name = name(cn);
        params.subject_alt_names = sans;
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![eku];
        params.use_authority_key_identifier_extension = true;
        params.not_before = not_before;
        params.not_after = not_after;
        let cert = params.signed_by(&key, &issuer).map_err(generate)?;
        Ok((cert.pem(), key.serialize_pem()))
    };
    let server_cn = hosts.first().map(String::as_str).unwrap_or("localhost");
    let (server_pem, server_key) = leaf(server_cn, ExtendedKeyUsagePurpose::ServerAuth, sans)?;
    let client = match &options.client {
        Some(cn) => Some(leaf(cn, ExtendedKeyUsagePurpose::ClientAuth, Vec::new())?),
        None => None,
    };

    std::fs::create_dir_all(out_dir).map_err(|source| TlsError::Write { path: out_dir.to_path_buf(), source })?;
    let out = DevCerts {
        ca_cert: path("ca.pem"),
        ca_key: path("ca-key.pem"),
        server_cert: path("server.pem"),
        server_key: path("server-key.pem"),
        client: client.as_ref().map(|_| (path("client.pem"), path("client-key.pem"))),
    };
    write_file(&out.ca_cert, &ca_cert.pem(), false)?;
    write_file(&out.ca_key, &ca_key.serialize_pem(), true)?;
    write_file(&out.server_cert, &server_pem, false)?;
    write_file(&out.server_key, &server_key, true)?;
    if let (Some((cert_pem, key_pem)), Some((cert, key))) = (&client, &out.client) {
        write_file(cert, cert_pem, false)?;
        write_file(key, key_pem, true)?;
    }
    Ok(out)
}

fn is_dns_name(host: &str) -> bool {
    let name = host.strip_prefix("*.").unwrap_or(host);
    !name.is_empty()
        && name.len() <= 253
        && name.split('.').all(|label| {
            !label.is_empty()
                && label.len() <= 63
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        })
}

/// Writes a new file; a private one is created with mode 0600 (never briefly
/// readable by others). An existing file is replaced, not rewritten in place,
/// so it does not keep looser permissions.
fn write_file(path: &Path, contents: &str, private: bool) -> Result<(), TlsError> {
    use std::io::Write;
    let err = |source| TlsError::Write { path: path.to_path_buf(), source };
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => return Err(err(e)),
        _ => {}
    }
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create_new(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(if private { 0o600 } else { 0o644 });
    }
    #[cfg(not(unix))]
    let _ = private;
    let mut file = options.open(path).map_err(err)?;
    file.write_all(contents.as_bytes()).and_then(|_| file.sync_all()).map_err(err)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn generated_certificates_load_and_keys_are_private() {
        let dir = tempfile::tempdir().unwrap();
        let opts = DevCertOptions { client: Some("alice".into()), ..Default::default() };
        let certs = generate_dev_certs(dir.path(), &opts).unwrap();
        let config = certs.settings().load().unwrap().unwrap();
        assert_eq!(config.alpn_protocols, vec![b"h2".to_vec(), b"http/1.1".to_vec()]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&certs.ca_key), 0o600);
            assert_eq!(mode(&certs.server_key), 0o600);
            assert_eq!(mode(&certs.client.as_ref().unwrap().1), 0o600);
            assert_eq!(mode(&certs.server_cert), 0o644);
        }
    }

    #[test]
    fn existing_files_are_kept_unless_forced() {
        let dir = tempfile::tempdir().unwrap();
        let first = generate_dev_certs(dir.path(), &DevCertOptions::default()).unwrap();
        let before = std::fs::read(&first.server_cert).unwrap();
        let e = generate_dev_certs(dir.path(), &DevCertOptions::default()).unwrap_err();
        assert!(e.to_string().contains("server.pem") && e.to_string().contains("--force"), "{e}");
        assert_eq!(std::fs::read(&first.server_cert).unwrap(), before);
        generate_dev_certs(dir.path(), &DevCertOptions { force: true, ..Default::default() }).unwrap();
        assert_ne!(std::fs::read(&first.server_cert).unwrap(), before);
    }

    #[test]
    fn settings_errors_name_the_flag_or_file() {
        let dir = tempfile::tempdir().unwrap();
        let certs = generate_dev_certs(dir.path(), &DevCertOptions::default()).unwrap();
        assert!(TlsSettings::default().load().unwrap().is_none());
        let only_cert = TlsSettings { cert: Some(certs.server_cert.clone()), ..Default::default() };
        assert!(only_cert.load().unwrap_err().to_string().contains("--tls-key"));
        let only_key = TlsSettings { key: Some(certs.server_key.clone()), ..Default::default() };
        assert!(only_key.load().unwrap_err().to_string().contains("--tls-cert"));
        let only_ca = TlsSettings { client_ca: Some(certs.ca_cert.clone()), ..Default::default() };
        assert!(only_ca.load().unwrap_err().to_string().contains("--tls-client-ca"));

        let missing = dir.path().join("nope.pem");
        let e = TlsSettings::new(&missing, &certs.server_key).load().unwrap_err().to_string();
        assert!(e.contains("nope.pem") && e.contains("--tls-cert"), "{e}");
        // The key where the certificate belongs, and the reverse.
        let e = TlsSettings::new(&certs.server_key, &certs.server_key).load().unwrap_err().to_string();
        assert!(e.contains("server-key.pem") && e.contains("no certificate"), "{e}");
        let e = TlsSettings::new(&certs.server_cert, &certs.server_cert).load().unwrap_err().to_string();
        assert!(e.contains("server.pem") && e.contains("no private key"), "{e}");
        // A key that is not the certificate's.
        let e = TlsSettings::new(&certs.server_cert, &certs.ca_key).load().unwrap_err().to_string();
        assert!(e.contains("does not belong"), "{e}");
        // Broken PEM: the message must not quote the file.
        let broken = dir.path().join("broken.pem");
        std::fs::write(&broken, "-----BEGIN PRIVATE KEY-----\nc2VjcmV0LWtleS1tYXRlcmlhbA==\n").unwrap();
        let e = TlsSettings::new(&certs.server_cert, &broken).load().unwrap_err().to_string();
        assert!(e.contains("broken.pem") && !e.contains("c2VjcmV0"), "{e}");
    }

    #[test]
    fn host_names_and_addresses_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let opts = DevCertOptions { hosts: vec!["db.example.test".into(), "10.1.2.3".into(), "[::1]".into()], ..Default::default() };
        generate_dev_certs(dir.path(), &opts).unwrap();
        for bad in ["bad host", "", "a..b", "-x.test"] {
            let opts = DevCertOptions { hosts: vec![bad.into()], force: true, ..Default::default() };
            let e = generate_dev_certs(dir.path(), &opts).unwrap_err().to_string();
            assert!(e.contains("--host") && e.contains(bad), "{e}");
        }
        let e = generate_dev_certs(dir.path(), &DevCertOptions { days: 0, force: true, ..Default::default() }).unwrap_err();
        assert!(e.to_string().contains("--days"), "{e}");
    }
}
