//! TCP-DuckDB's line protocol (`--tcp-addr`), driven over a real socket: one
//! request line, one answer line (`success`, `Error: …` or a JSON array).

use std::sync::Arc;
use std::time::Duration;

use pond::tls::{generate_dev_certs, DevCertOptions};
use serde_json::{json, Value};
use tokio::io::{AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader, ReadHalf, WriteHalf};
use tokio::net::TcpStream;

use crate::{TestServer, ADMIN_PASSWORD};

/// A line-protocol client over any byte stream (plain TCP or TLS).
pub struct LineClient<S> {
    reader: BufReader<ReadHalf<S>>,
    writer: WriteHalf<S>,
}

impl<S: AsyncRead + AsyncWrite> LineClient<S> {
    pub fn new(stream: S) -> Self {
        let (r, w) = tokio::io::split(stream);
        Self { reader: BufReader::new(r), writer: w }
    }

    /// Sends raw bytes (a request and its terminator) and reads one answer line.
    pub async fn send_raw(&mut self, bytes: &[u8]) -> String {
        self.writer.write_all(bytes).await.unwrap();
        self.writer.flush().await.unwrap();
        self.read_answer().await
    }

    async fn read_answer(&mut self) -> String {
        let mut line = String::new();
        let n = tokio::time::timeout(Duration::from_secs(60), self.reader.read_line(&mut line)).await.expect("answer in time").unwrap();
        assert!(n > 0, "the server closed the connection");
        assert!(line.ends_with('\n'), "answer without its newline: {line:?}");
        line.pop();
        line
    }

    /// Sends one request line and returns the answer (without `\n`).
    pub async fn send(&mut self, request: &str) -> String {
        self.send_raw(format!("{request}\n").as_bytes()).await
    }

    /// Sends a request that must answer `success`.
    pub async fn ok(&mut self, request: &str) {
        let answer = self.send(request).await;
        assert_eq!(answer, "success", "{request}");
    }

    /// Sends a request that must answer `Error: …`; the message.
    pub async fn err(&mut self, request: &str) -> String {
        let answer = self.send(request).await;
        assert!(answer.starts_with("Error: "), "{request}: {answer}");
        answer
    }

    /// Sends a query; its JSON array.
    pub async fn rows(&mut self, request: &str) -> Vec<Value> {
        let answer = self.send(request).await;
        match serde_json::from_str(&answer) {
            Ok(Value::Array(rows)) => rows,
            _ => panic!("{request}: not a JSON array: {answer}"),
        }
    }
}

impl TestServer {
    /// A plain TCP connection to the TCP-DuckDB listener (not logged in).
    pub async fn tcp(&self) -> LineClient<TcpStream> {
        let addr = self.server().tcp_addr().expect("TCP-DuckDB listener on");
        LineClient::new(TcpStream::connect(addr).await.unwrap())
    }

    /// A connection logged in as `user`.
    pub async fn tcp_as(&self, user: &str, password: &str) -> LineClient<TcpStream> {
        let mut c = self.tcp().await;
        c.ok(&format!("login {user} {password}")).await;
        c
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn login_comes_first_and_wrong_passwords_keep_the_connection() {
    let s = TestServer::start().await;
    let mut c = s.tcp().await;
    assert!(c.err("select 1").await.contains("login first"));
    assert!(c.err("create database nope").await.contains("login first"));
    assert!(c.err("login admin").await.contains("login <user> <password>"));
    let e = c.err("login admin wrong-password").await;
    assert!(e.contains("login failed") && !e.contains("wrong-password"), "{e}");
    c.err("login nobody-here some-password").await;
    c.ok(&format!("login admin {ADMIN_PASSWORD}")).await;
    assert_eq!(c.rows("select 1 as one").await, vec![json!({"one": 1})]);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failed_logins_are_throttled_per_address() {
    let s = TestServer::start().await;
    let mut c = s.tcp().await;
    // pond-auth lets five failures through before it makes an address wait.
    for _ in 0..5 {
        assert!(c.err("login admin not-the-password").await.contains("login failed"));
    }
    // Past the free failures even the right password waits; the connection stays open.
    let e = c.err(&format!("login admin {ADMIN_PASSWORD}")).await;
    assert!(e.contains("too many") || e.contains("failed login"), "{e}");
    assert!(c.err("select 1").await.contains("login first"));
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn databases_users_and_grants_through_commands() {
    let s = TestServer::start().await;
    let mut admin = s.tcp_as("admin", ADMIN_PASSWORD).await;
    admin.ok("create database shop").await;
    assert!(admin.err("connect no_such_db").await.contains("does not exist"));
    admin.ok("connect shop").await;
    admin.ok("create table items (id INTEGER, name VARCHAR, price DOUBLE, note VARCHAR)").await;
    admin.ok("insert into items values (1, 'apple', 1.5, NULL), (2, 'pear', 2.25, 'ripe')").await;
    admin.ok("create table secrets (x INTEGER)").await;
    admin.ok("insert into secrets values (7)").await;
    assert_eq!(
        admin.rows("select * from items order by id").await,
        vec![
            json!({"id": 1, "name": "apple", "price": 1.5, "note": null}),
            json!({"id": 2, "name": "pear", "price": 2.25, "note": "ripe"}),
        ]
    );

    // A user made through the protocol sees only what was granted.
    admin.ok("create user tcp_bob bob-password-1").await;
    admin.ok("grant table shop items tcp_bob select").await;
    let mut bob = s.tcp_as("tcp_bob", "bob-password-1").await;
    bob.ok("connect shop").await;
    assert_eq!(bob.rows("select id from items order by id").await, vec![json!({"id": 1}), json!({"id": 2})]);
    assert!(bob.err("select * from secrets").await.contains("permission denied"));
    assert!(bob.err("insert into items values (3, 'plum', 1, NULL)").await.contains("permission denied"));
    assert!(bob.err("create user tcp_eve eve-password-1").await.contains("permission denied"));

    // Table privileges in one list, then the database-wide ones.
    admin.ok("grant table shop items tcp_bob insert,update delete").await;
    bob.ok("insert into items values (3, 'plum', 1, NULL)").await;
    bob.ok("delete from items where id = 3").await;
    assert!(bob.err("select * from secrets").await.contains("permission denied"));
    admin.ok("grant database shop tcp_bob read").await;
    assert_eq!(bob.rows("select x from secrets").await, vec![json!({"x": 7})]);
    assert!(bob.err("insert into secrets values (8)").await.contains("permission denied"));
    admin.ok("grant database shop tcp_bob write").await;
    bob.ok("insert into secrets values (8)").await;
    assert_eq!(bob.rows("select count(*) as n from secrets").await, vec![json!({"n": 2})]);

    // Passwords: the new one works, the old one no longer does.
    admin.ok("update user password tcp_bob bob-password-2").await;
    s.tcp().await.err("login tcp_bob bob-password-1").await;
    s.tcp_as("tcp_bob", "bob-password-2").await;
    // Renames: the user keeps the grants under the new name.
    admin.ok("update user username tcp_bob tcp_robert").await;
    s.tcp().await.err("login tcp_bob bob-password-2").await;
    let mut robert = s.tcp_as("tcp_robert", "bob-password-2").await;
    robert.ok("connect shop").await;
    assert_eq!(robert.rows("select count(*) as n from items").await, vec![json!({"n": 2})]);
    // Databases.
    admin.ok("create database other").await;
    admin.ok("update database other renamed").await;
    admin.ok("connect renamed").await;
    assert!(admin.err("connect other").await.contains("does not exist"));
    // Quotes in names and passwords stay data.
    assert!(admin.err("create user o'hara some-password").await.contains("invalid user name"));
    admin.ok("create user ohara \"pass'word');--").await;
    s.tcp_as("ohara", "\"pass'word');--").await;
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn transactions_rollback_discards_and_commit_keeps() {
    let s = TestServer::start().await;
    let mut c = s.tcp_as("admin", ADMIN_PASSWORD).await;
    c.ok("create table t (a INTEGER)").await;
    c.ok("start transaction").await;
    c.ok("insert into t values (1)").await;
    assert_eq!(c.rows("select count(*) as n from t").await, vec![json!({"n": 1})]);
    c.ok("rollback").await;
    assert_eq!(c.rows("select count(*) as n from t").await, vec![json!({"n": 0})]);
    c.ok("START TRANSACTION").await;
    assert!(c.err("start transaction").await.contains("already open"));
    c.ok("insert into t values (2)").await;
    c.ok("COMMIT").await;
    let mut other = s.tcp_as("admin", ADMIN_PASSWORD).await;
    assert_eq!(other.rows("select a from t").await, vec![json!({"a": 2})]);
    // A connection that goes away closes its session, and its transaction with it.
    c.ok("start transaction").await;
    c.ok("insert into t values (3)").await;
    let open = s.server().engine().session_count();
    drop(c);
    crate::eventually(|| s.server().engine().session_count() == open - 1, "the session to close").await;
    assert_eq!(other.rows("select count(*) as n from t").await, vec![json!({"n": 1})]);
    other.ok("insert into t values (4)").await;
    assert_eq!(other.rows("select a from t order by a").await, vec![json!({"a": 2}), json!({"a": 4})]);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn typed_json_rows_and_malformed_requests_keep_the_connection() {
    let s = TestServer::start().await;
    let mut c = s.tcp_as("admin", ADMIN_PASSWORD).await;
    let rows = c
        .rows("SELECT 42::INTEGER AS i, 12345678901::BIGINT AS big, 2.5::DOUBLE AS d, 'it''s' || chr(10) || 'lines' AS s, NULL AS n, true AS b, [1, 2] AS l")
        .await;
    assert_eq!(rows, vec![json!({"i": 42, "big": 12345678901_i64, "d": 2.5, "s": "it's\nlines", "n": null, "b": true, "l": [1, 2]})]);
    assert_eq!(c.rows("select 1 as a where false").await, Vec::<Value>::new());
    // Lines end in \r\n too.
    assert_eq!(c.send_raw(b"select 3 as x\r\n").await, r#"[{"x":3}]"#);

    for (bad, expect) in [
        ("grant database d", "grant database <db> <user> read|write"),
        ("grant database d u admin", "unknown privilege"),
        ("grant table d t u", "grant table <db>"),
        ("grant table d t u drop", "unknown privilege 'drop'"),
        ("create user only_a_name", "create user <user> <password>"),
        ("update user email a b", "unknown field"),
        ("update database a", "update database <old name> <new name>"),
        ("connect", "connect <db>"),
        ("migrate", "migrate <db>"),
        ("link", "link <db> <connection string>"),
        ("", "empty request"),
        ("selec 1", "syntax error"),
        ("select * from no_such_table", "no_such_table"),
    ] {
        let e = c.err(bad).await;
        assert!(e.contains(expect), "{bad}: {e}");
        assert_eq!(c.rows("select 1 as ok").await, vec![json!({"ok": 1})], "after {bad}");
    }
    assert!(c.send_raw(b"select '\xff'\n").await.contains("not valid UTF-8"));
    assert_eq!(c.rows("select 1 as ok").await, vec![json!({"ok": 1})]);

    // LINK/SYNC are the engine's; whatever it answers is one line and the connection goes on.
    let e = c.err("link shop host=localhost dbname=x password=do-not-echo-me").await;
    assert!(!e.contains("do-not-echo"), "{e}");
    c.err("migrate shop").await;
    assert_eq!(c.rows("select 2 as ok").await, vec![json!({"ok": 2})]);
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tcp_listener_speaks_tls_when_tls_is_configured() {
    let dir = tempfile::tempdir().unwrap();
    let certs = generate_dev_certs(dir.path(), &DevCertOptions::default()).unwrap();
    let s = TestServer::start_with(|b| b.tls(certs.settings())).await;
    let addr = s.server().tcp_addr().unwrap();

    let mut roots = rustls::RootCertStore::empty();
    use rustls::pki_types::pem::PemObject;
    for cert in rustls::pki_types::CertificateDer::pem_file_iter(&certs.ca_cert).unwrap() {
        roots.add(cert.unwrap()).unwrap();
    }
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let connector = tokio_rustls::TlsConnector::from(Arc::new(config));
    let tcp = TcpStream::connect(addr).await.unwrap();
    let tls = connector.connect("localhost".try_into().unwrap(), tcp).await.expect("TLS handshake");
    let mut c = LineClient::new(tls);
    c.ok(&format!("login admin {ADMIN_PASSWORD}")).await;
    assert_eq!(c.rows("select 'over tls' as s").await, vec![json!({"s": "over tls"})]);

    // A plain-text client gets no answer from the TLS listener.
    let mut plain = TcpStream::connect(addr).await.unwrap();
    plain.write_all(format!("login admin {ADMIN_PASSWORD}\n").as_bytes()).await.unwrap();
    let mut reader = BufReader::new(plain);
    let mut line = String::new();
    let got = tokio::time::timeout(Duration::from_secs(15), reader.read_line(&mut line)).await;
    assert!(!matches!(got, Ok(Ok(n)) if n > 0 && line == "success\n"), "{line:?}");
    s.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connection_limit_and_idle_timeout() {
    let s = TestServer::start_with(|b| b.max_sessions(1).idle_timeout(Duration::from_secs(1))).await;
    let mut first = s.tcp().await;
    assert!(first.err("select 1").await.contains("login first"));
    // The second connection is answered with the limit and closed.
    let mut second = s.tcp().await;
    let e = second.read_answer().await;
    assert!(e.starts_with("Error: too many connections"), "{e}");
    // A logged-in connection that stays quiet is told why it is closed.
    first.ok(&format!("login admin {ADMIN_PASSWORD}")).await;
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let e = first.read_answer().await;
    assert!(e.starts_with("Error: idle"), "{e}");
    // Its slot is free again.
    let mut third = None;
    for _ in 0..50 {
        let mut c = s.tcp().await;
        if c.send(&format!("login admin {ADMIN_PASSWORD}")).await == "success" {
            third = Some(c);
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert_eq!(third.expect("a connection after the idle one closed").rows("select 1 as a").await, vec![json!({"a": 1})]);
    s.stop().await;
}
