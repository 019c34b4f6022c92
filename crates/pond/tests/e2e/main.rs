#![allow(clippy::unwrap_used)]
//! End-to-end tests: a real Pond server (in-process, real listeners on
//! ephemeral ports, real DuckDB, temp data dir) driven by real clients
//! (arrow-flight's Flight SQL client, reqwest, tokio-postgres, a raw
//! socket for TCP-DuckDB's line protocol).

mod adbc;
mod backup;
mod catalogs;
mod console;
mod continuous;
mod databases;
mod flight;
mod flush;
mod http;
mod ingest;
mod jobs;
mod lake;
mod lifecycle;
mod msgpack;
mod pgwire;
mod query_cache;
mod security;
mod tcp;
mod tls;

use std::path::PathBuf;
use std::time::Duration;

use arrow::array::Array;
use arrow::record_batch::RecordBatch;
use arrow_flight::sql::client::FlightSqlServiceClient;
use futures::TryStreamExt;
use tonic::transport::Channel;

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

pub const ADMIN_PASSWORD: &str = "e2e-admin-secret";

/// Where the tests find DuckDB extensions (installed by scripts/test.sh).
pub fn extension_dir() -> PathBuf {
    std::env::var_os("POND_EXTENSION_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(std::env::var("HOME").unwrap_or_default()).join(".cache/pond/extensions"))
}

pub struct TestServer {
    pub server: Option<pond::Server>,
    pub dir: tempfile::TempDir,
}

impl TestServer {
    pub async fn start() -> Self {
        Self::start_with(|b| b).await
    }

    pub async fn start_with(f: impl FnOnce(pond::ServerBuilder) -> pond::ServerBuilder) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let server = Self::launch(dir.path().to_path_buf(), f).await;
        Self { server: Some(server), dir }
    }

    pub async fn launch(data_dir: PathBuf, f: impl FnOnce(pond::ServerBuilder) -> pond::ServerBuilder) -> pond::Server {
        f(Self::builder(data_dir)).start().await.expect("server starts")
    }

    /// What every test server starts from: ephemeral ports, the test
    /// extensions, the admin password, no online extension installs.
    pub fn builder(data_dir: PathBuf) -> pond::ServerBuilder {
        pond::Server::builder()
            .data_dir(data_dir)
            .flight_addr("127.0.0.1:0".parse().unwrap())
            .http_addr("127.0.0.1:0".parse().unwrap())
            .pg_addr(Some("127.0.0.1:0".parse().unwrap()))
            .tcp_addr(Some("127.0.0.1:0".parse().unwrap()))
            .extension_dir(extension_dir())
            .admin_password(ADMIN_PASSWORD)
            .engine_config(|e| {
                e.install_from_repository = false;
                e.threads = Some(2);
            })
    }

    pub fn server(&self) -> &pond::Server {
        self.server.as_ref().expect("running")
    }

    pub fn http_url(&self, path: &str) -> String {
        let scheme = if self.server().tls_enabled() { "https" } else { "http" };
        format!("{scheme}://{}{}", self.server().http_addr(), path)
    }

    /// A Flight SQL client logged in as admin.
    pub async fn flight(&self) -> FlightSqlServiceClient<Channel> {
        self.flight_as("admin", ADMIN_PASSWORD).await.expect("login")
    }

    pub async fn flight_as(&self, user: &str, password: &str) -> Result<FlightSqlServiceClient<Channel>, BoxError> {
        let channel = Channel::from_shared(format!("http://{}", self.server().flight_addr())).unwrap().connect().await.unwrap();
        let mut client = FlightSqlServiceClient::new(channel);
        client.handshake(user, password).await?;
        Ok(client)
    }

    /// A PostgreSQL client (tokio-postgres) connected as `user` to `database`.
    pub async fn pg_as(&self, user: &str, password: &str, database: &str) -> Result<tokio_postgres::Client, tokio_postgres::Error> {
        let addr = self.server().pg_addr().expect("pg listener on");
        let mut cfg = tokio_postgres::Config::new();
        cfg.host(addr.ip().to_string()).port(addr.port()).user(user).password(password).dbname(database);
        let (client, connection) = cfg.connect(tokio_postgres::NoTls).await?;
        tokio::spawn(connection);
        Ok(client)
    }

    pub async fn stop(mut self) -> tempfile::TempDir {
        if let Some(s) = self.server.take() {
            s.shutdown().await.expect("clean shutdown");
        }
        self.dir
    }
}

/// Runs a statement over Flight SQL and collects the result.
pub async fn query(client: &mut FlightSqlServiceClient<Channel>, sql: &str) -> Result<Vec<RecordBatch>, BoxError> {
    let info = client.execute(sql.to_string(), None).await?;
    let mut out = Vec::new();
    for ep in info.endpoint {
        let stream = client.do_get(ep.ticket.expect("ticket")).await?;
        let mut batches: Vec<RecordBatch> = stream.try_collect().await?;
        out.append(&mut batches);
    }
    Ok(out)
}

/// The first column of a result as strings.
pub fn column_strings(batches: &[RecordBatch], col: usize) -> Vec<String> {
    let mut out = Vec::new();
    for b in batches {
        let a = arrow::compute::cast(b.column(col), &arrow::datatypes::DataType::Utf8).unwrap();
        let s = a.as_any().downcast_ref::<arrow::array::StringArray>().unwrap();
        for i in 0..s.len() {
            out.push(if s.is_null(i) { "NULL".to_string() } else { s.value(i).to_string() });
        }
    }
    out
}

/// `POST /api/v1/query` as `user` with `database` current: the whole JSON
/// answer on 200, else "status: body".
pub async fn http_query(s: &TestServer, user: (&str, &str), database: &str, sql: &str) -> Result<serde_json::Value, String> {
    let r = reqwest::Client::new()
        .post(s.http_url("/api/v1/query"))
        .basic_auth(user.0, Some(user.1))
        .json(&serde_json::json!({ "sql": sql, "database": database }))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let v: serde_json::Value = r.json().await.unwrap_or(serde_json::Value::Null);
    if status == reqwest::StatusCode::OK {
        Ok(v)
    } else {
        Err(format!("{status}: {v}"))
    }
}

pub fn rows(batches: &[RecordBatch]) -> usize {
    batches.iter().map(|b| b.num_rows()).sum()
}

pub async fn eventually(mut f: impl FnMut() -> bool, what: &str) {
    for _ in 0..100 {
        if f() {
            return;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("timed out waiting for {what}");
}
