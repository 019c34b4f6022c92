//! pgwire's handler traits implemented over engine sessions: startup and
//! authentication, the simple and extended query protocols, cancel requests.

use std::collections::{HashMap, VecDeque};
use std::fmt::Debug;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicI32, Ordering};
use std::sync::{Arc, Weak};
use std::task::{Context, Poll};

use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::RecordBatch;
use async_trait::async_trait;
use duckdb::types::Value;
use futures::{Sink, SinkExt, StreamExt};
use parking_lot::Mutex;
use pgwire::api::auth::{
    finish_authentication, protocol_negotiation, save_startup_parameters_to_metadata, ServerParameterProvider, StartupHandler,
};
use pgwire::api::cancel::CancelHandler;
use pgwire::api::copy::CopyHandler;
use pgwire::api::portal::{Format, Portal, PortalExecutionState};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{
    CopyResponse, DescribePortalResponse, DescribeStatementResponse, FieldFormat, FieldInfo, QueryResponse, Response, Tag,
};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::store::PortalStore;
use pgwire::api::{ClientInfo, ClientPortalStore, PgWireConnectionState, PgWireServerHandlers, Type};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::cancel::CancelRequest;
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail};
use pgwire::messages::data::DataRow;
use pgwire::messages::startup::SecretKey;
use pgwire::messages::{PgWireBackendMessage, PgWireFrontendMessage};
use pond_engine::{Engine, QueryStream, Session};

use crate::error::{info, Error};
use crate::local::{self, Local};
use crate::types;

/// The protocol name sessions and audit events carry.
const PROTOCOL: &str = "pgwire";

type CancelMap = Arc<Mutex<HashMap<i32, (i32, Weak<Session>)>>>;

/// One per server: pgwire asks it for the handlers of every connection.
pub(crate) struct Factory {
    backend: Arc<Backend>,
}

impl Factory {
    pub(crate) fn new(engine: Engine, auth: crate::auth::PgAuth) -> Self {
        let duckdb = engine.duckdb_version();
        let server_version = format!("15.0 (Pond {}, DuckDB {duckdb})", env!("CARGO_PKG_VERSION"));
        Self {
            backend: Arc::new(Backend {
                engine,
                auth,
                server_version,
                cancels: Arc::new(Mutex::new(HashMap::new())),
                next_pid: AtomicI32::new(1000),
                parser: Arc::new(Parser),
            }),
        }
    }
}

impl PgWireServerHandlers for Factory {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.backend.clone()
    }
    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.backend.clone()
    }
    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.backend.clone()
    }
    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        self.backend.clone()
    }
    fn copy_handler(&self) -> Arc<impl CopyHandler> {
        self.backend.clone()
    }
}

pub(crate) struct Backend {
    engine: Engine,
    auth: crate::auth::PgAuth,
    server_version: String,
    cancels: CancelMap,
    next_pid: AtomicI32,
    parser: Arc<Parser>,
}

/// Per-connection state, kept in the connection's session extensions.
struct Conn {
    session: Arc<Session>,
    settings: Mutex<HashMap<String, String>>,
    /// A statement failed inside a transaction block: only ROLLBACK (or COMMIT,
    /// which then rolls back) is accepted until the block ends.
    aborted: AtomicBool,
    /// A portal already executed by Describe (to learn its result columns),
    /// waiting for its Execute: (portal identity, result).
    pending: Mutex<Option<(usize, QueryStream)>>,
    /// A `COPY … FROM STDIN` receiving CopyData.
    copy_in: Mutex<Option<crate::copy_in::Receiving>>,
    /// This connection's PostgreSQL catalog (pg_class, …), see `pgcatalog`.
    catalog: Arc<crate::pgcatalog::Scratch>,
    _cancel: CancelGuard,
}

/// Removes the connection from the cancel map when it closes.
struct CancelGuard {
    map: CancelMap,
    pid: i32,
}

impl Drop for CancelGuard {
    fn drop(&mut self) {
        self.map.lock().remove(&self.pid);
    }
}

fn conn<C: ClientInfo>(client: &C) -> PgWireResult<Arc<Conn>> {
    client
        .session_extensions()
        .get::<Conn>()
        .ok_or_else(|| PgWireError::UserError(Box::new(info("08003", "connection is not authenticated"))))
}

fn fatal(code: &str, message: impl Into<String>) -> PgWireError {
    PgWireError::UserError(Box::new(ErrorInfo::new("FATAL".into(), code.into(), message.into())))
}

/// ParameterStatus messages sent after authentication.
struct StartupParams(HashMap<String, String>);

impl ServerParameterProvider for StartupParams {
    fn server_parameters<C: ClientInfo>(&self, _client: &C) -> Option<HashMap<String, String>> {
        Some(self.0.clone())
    }
}

#[async_trait]
impl StartupHandler for Backend {
    async fn on_startup<C>(&self, client: &mut C, message: PgWireFrontendMessage) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        match message {
            PgWireFrontendMessage::Startup(ref startup) => {
                protocol_negotiation(client, startup).await?;
                save_startup_parameters_to_metadata(client, startup);
                if client.metadata().get("user").is_none_or(|u| u.is_empty()) {
                    return Err(fatal("28000", "no PostgreSQL user name specified in startup packet"));
                }
                client.set_state(PgWireConnectionState::AuthenticationInProgress);
                let user = client.metadata().get("user").cloned().unwrap_or_default();
                let source = client.socket_addr().ip().to_string();
                let (request, exchange) = crate::auth::challenge(self.auth, self.engine.authenticator(), &user, Some(&source), PROTOCOL)?;
                client.session_extensions().insert(exchange);
                client.send(PgWireBackendMessage::Authentication(request)).await?;
                Ok(())
            }
            PgWireFrontendMessage::PasswordMessageFamily(msg) => {
                let user = client.metadata().get("user").cloned().unwrap_or_default();
                // `default` is where every session starts, with or without grants; libpq
                // sends the user name when no database is given: that means `default` too
                // unless a database of that name exists.
                let database = client
                    .metadata()
                    .get("database")
                    .cloned()
                    .filter(|d| !d.is_empty() && d != pond_engine::DEFAULT_DATABASE && (*d != user || self.engine.database_exists(d)));
                let source = client.socket_addr().ip().to_string();
                let exchange = client
                    .session_extensions()
                    .get::<crate::auth::Exchange>()
                    .ok_or_else(|| fatal("08P01", "password message before the startup message"))?;
                let auth = self.engine.authenticator();
                let identity = match crate::auth::step(&exchange, auth, &user, Some(source), PROTOCOL, msg).await? {
                    crate::auth::Step::Continue(request) => {
                        client.send(PgWireBackendMessage::Authentication(request)).await?;
                        return Ok(());
                    }
                    crate::auth::Step::Done(identity, last) => {
                        if let Some(last) = last {
                            client.send(PgWireBackendMessage::Authentication(last)).await?;
                        }
                        identity
                    }
                };
                let session = self.engine.open_session_async(identity, PROTOCOL, database.clone(), false).await.map_err(|e| match e {
                    pond_engine::Error::DatabaseNotFound(d) => {
                        fatal("3D000", format!("database \"{d}\" does not exist (SHOW DATABASES lists them)"))
                    }
                    other => {
                        let e = Error::from(other);
                        fatal(e.sqlstate(), e.to_string())
                    }
                })?;
                let pid = self.next_pid.fetch_add(1, Ordering::Relaxed);
                let secret: i32 = rand::random();
                client.set_pid_and_secret_key(pid, SecretKey::I32(secret));
                self.cancels.lock().insert(pid, (secret, Arc::downgrade(&session)));
                let mut settings = local::default_settings(&self.server_version);
                if let Some(app) = client.metadata().get("application_name") {
                    settings.insert("application_name".into(), app.clone());
                }
                settings.insert("is_superuser".into(), if session.identity.superuser { "on" } else { "off" }.into());
                let mut params = HashMap::new();
                for (wire, key) in [
                    ("server_version", "server_version"),
                    ("server_encoding", "server_encoding"),
                    ("client_encoding", "client_encoding"),
                    ("DateStyle", "datestyle"),
                    ("TimeZone", "timezone"),
                    ("IntervalStyle", "intervalstyle"),
                    ("integer_datetimes", "integer_datetimes"),
                    ("standard_conforming_strings", "standard_conforming_strings"),
                    ("application_name", "application_name"),
                    ("is_superuser", "is_superuser"),
                ] {
                    params.insert(wire.to_string(), settings.get(key).cloned().unwrap_or_default());
                }
                params.insert("session_authorization".into(), session.identity.user.clone());
                client.session_extensions().insert(Conn {
                    session,
                    settings: Mutex::new(settings),
                    aborted: AtomicBool::new(false),
                    pending: Mutex::new(None),
                    copy_in: Mutex::new(None),
                    catalog: Arc::default(),
                    _cancel: CancelGuard { map: self.cancels.clone(), pid },
                });
                finish_authentication(client, &StartupParams(params)).await
            }
            _ => Ok(()),
        }
    }
}

#[async_trait]
impl CancelHandler for Backend {
    async fn on_cancel_request(&self, req: CancelRequest) {
        let found = self.cancels.lock().get(&req.pid).cloned();
        if let Some((secret, session)) = found {
            // Protocol 3.0 keys are 4 bytes; pgwire may hand them over as raw bytes.
            let matches = match &req.secret_key {
                SecretKey::I32(given) => *given == secret,
                SecretKey::Bytes(b) => b.as_ref() == secret.to_be_bytes(),
            };
            if matches {
                if let Some(s) = session.upgrade() {
                    s.cancel();
                }
            }
        }
    }
}

/// What a statement does, from its first words.
#[derive(Debug, Clone, PartialEq)]
enum Kind {
    /// Returns rows; the tag (e.g. "SELECT", "INSERT 0" for INSERT … RETURNING).
    Rows(String),
    /// INSERT/UPDATE/DELETE: the tag before the row count.
    Dml(&'static str),
    Begin,
    Commit,
    Rollback,
    /// Any other command, with its tag.
    Command(String),
}

fn words(sql: &str, n: usize) -> Vec<String> {
    sql.split(|c: char| c.is_whitespace() || c == '(' || c == ';')
        .filter(|w| !w.is_empty())
        .take(n)
        .map(|w| w.to_ascii_uppercase())
        .collect()
}

fn kind(sql: &str) -> Kind {
    let w = words(sql, 8);
    let first = w.first().map(String::as_str).unwrap_or("");
    let returning = || sql.to_ascii_lowercase().contains("returning");
    match first {
        "SELECT" | "WITH" | "VALUES" | "FROM" | "TABLE" | "SHOW" | "DESCRIBE" | "DESC" | "PRAGMA" | "SUMMARIZE" | "EXPLAIN" | "CALL"
        | "PIVOT" | "UNPIVOT" => Kind::Rows("SELECT".into()),
        // Pond's LINK / SYNC / UNLINK DATABASE answer with a row.
        "LINK" | "SYNC" | "UNLINK" if w.get(1).map(String::as_str) == Some("DATABASE") => Kind::Rows("SELECT".into()),
        "INSERT" if returning() => Kind::Rows("INSERT 0".into()),
        "UPDATE" if returning() => Kind::Rows("UPDATE".into()),
        "DELETE" if returning() => Kind::Rows("DELETE".into()),
        "INSERT" => Kind::Dml("INSERT 0"),
        "UPDATE" => Kind::Dml("UPDATE"),
        "DELETE" => Kind::Dml("DELETE"),
        "MERGE" => Kind::Dml("MERGE"),
        "BEGIN" | "START" => Kind::Begin,
        "COMMIT" | "END" => Kind::Commit,
        "ROLLBACK" | "ABORT" if !w.iter().any(|x| x == "TO") => Kind::Rollback,
        "CREATE" | "DROP" | "ALTER" => {
            let skip = ["OR", "REPLACE", "TEMP", "TEMPORARY", "UNIQUE", "PERSISTENT", "IF", "NOT", "EXISTS"];
            let object = w.iter().skip(1).find(|x| !skip.contains(&x.as_str())).cloned().unwrap_or_default();
            Kind::Command(format!("{first} {object}"))
        }
        _ => Kind::Command(first.to_string()),
    }
}

/// `$n` placeholders in `sql` (outside quotes): the highest n.
fn param_count(sql: &str) -> usize {
    let b = sql.as_bytes();
    let (mut i, mut max, mut quote) = (0, 0usize, None::<u8>);
    while i < b.len() {
        let c = b[i];
        match quote {
            Some(q) if c == q => quote = None,
            Some(_) => {}
            None if c == b'\'' || c == b'"' => quote = Some(c),
            None if c == b'$' => {
                let start = i + 1;
                let mut j = start;
                while j < b.len() && b[j].is_ascii_digit() {
                    j += 1;
                }
                if j > start {
                    max = max.max(sql[start..j].parse().unwrap_or(0));
                    i = j;
                    continue;
                }
            }
            None => {}
        }
        i += 1;
    }
    max
}

fn format_for(f: &Format, i: usize) -> bool {
    match f {
        Format::UnifiedText => false,
        Format::UnifiedBinary => true,
        Format::Individual(v) => v.get(i).copied() == Some(1),
    }
}

/// A row stream of DataRows from an engine result, encoded a chunk of rows
/// at a time into one reused buffer (see [`types::RowEncoder`]).
struct RowStream {
    stream: QueryStream,
    enc: types::RowEncoder,
    /// The batch being encoded and its next row.
    batch: Option<(RecordBatch, usize)>,
    ready: VecDeque<DataRow>,
    done: bool,
}

fn row_stream(stream: QueryStream, cols: Vec<types::Column>) -> RowStream {
    RowStream { stream, enc: types::RowEncoder::new(cols), batch: None, ready: VecDeque::new(), done: false }
}

impl futures::Stream for RowStream {
    type Item = PgWireResult<DataRow>;

    fn poll_next(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let this = self.get_mut();
        loop {
            if let Some(row) = this.ready.pop_front() {
                return Poll::Ready(Some(Ok(row)));
            }
            if let Some((batch, at)) = &mut this.batch {
                if *at < batch.num_rows() {
                    let mut rows = Vec::from(std::mem::take(&mut this.ready));
                    match this.enc.encode(batch, *at, types::CHUNK_BYTES, &mut rows) {
                        Ok(next) => *at = next,
                        Err(e) => {
                            this.batch = None;
                            this.done = true;
                            return Poll::Ready(Some(Err(e.into())));
                        }
                    }
                    this.ready = rows.into();
                    continue;
                }
                this.batch = None;
            }
            if this.done {
                return Poll::Ready(None);
            }
            match std::task::ready!(this.stream.poll_next_unpin(cx)) {
                Some(Ok(batch)) => this.batch = Some((batch, 0)),
                Some(Err(e)) => {
                    this.done = true;
                    return Poll::Ready(Some(Err(PgWireError::from(Error::from(e)))));
                }
                None => {
                    this.done = true;
                    return Poll::Ready(None);
                }
            }
        }
    }
}

fn query_response(stream: QueryStream, binary: &(dyn Fn(usize) -> bool + Send + Sync), tag: &str) -> QueryResponse {
    let schema = stream.schema();
    let duck = stream.duckdb_types();
    let (infos, cols) = types::fields(&schema, &duck, binary);
    let mut resp = QueryResponse::new(Arc::new(infos), row_stream(stream, cols));
    resp.set_command_tag(tag);
    resp
}

/// A catalog answer as a query response.
fn answer_response(a: crate::pgcatalog::Answer, binary: &(dyn Fn(usize) -> bool + Send + Sync)) -> Response {
    let (infos, cols) = types::fields(&a.schema, &a.types, binary);
    let rows: Vec<PgWireResult<DataRow>> = a
        .batches
        .iter()
        .flat_map(|b| match types::encode_batch(b, &cols) {
            Ok(rows) => rows.into_iter().map(Ok).collect::<Vec<_>>(),
            Err(e) => vec![Err(PgWireError::from(e))],
        })
        .collect();
    Response::Query(QueryResponse::new(Arc::new(infos), futures::stream::iter(rows)))
}

fn local_fields(row: &[(String, String)]) -> Vec<FieldInfo> {
    row.iter().map(|(name, _)| FieldInfo::new(name.clone(), None, None, Type::TEXT, FieldFormat::Text)).collect()
}

fn local_response(row: Vec<(String, String)>) -> Response {
    let fields = Arc::new(local_fields(&row));
    let mut data = bytes::BytesMut::new();
    for (_, v) in &row {
        data.extend_from_slice(&(v.len() as i32).to_be_bytes());
        data.extend_from_slice(v.as_bytes());
    }
    let dr = DataRow::new(data, row.len() as i16);
    Response::Query(QueryResponse::new(fields, futures::stream::iter(vec![Ok(dr)])))
}

impl Backend {
    /// Runs one statement; `binary(i)` picks the result format of column i.
    /// `materialize` reads the whole result now (a later statement of the same
    /// simple query would otherwise supersede the stream).
    async fn run(
        &self,
        conn: &Conn,
        sql: &str,
        params: Option<Vec<Value>>,
        binary: &(dyn Fn(usize) -> bool + Send + Sync),
        materialize: bool,
    ) -> Result<Response, ErrorInfo> {
        let session = &conn.session;
        let in_txn = session.in_transaction();
        let k = kind(sql);
        if conn.aborted.load(Ordering::SeqCst) && !matches!(k, Kind::Commit | Kind::Rollback) {
            return Err(info("25P02", "current transaction is aborted, commands ignored until end of transaction block"));
        }
        let local = {
            let settings = conn.settings.lock();
            local::intercept(sql, &settings, &session.current_schema())
        };
        if let Some(l) = local {
            return Ok(match l {
                Local::Row(row) => local_response(row),
                Local::Tag(t) => Response::Execution(Tag::new(t)),
                Local::Set(name, value) => {
                    conn.settings.lock().insert(if name == "time zone" { "timezone".into() } else { name }, value);
                    Response::Execution(Tag::new("SET"))
                }
                Local::Reset(name) => {
                    let defaults = local::default_settings(&self.server_version);
                    let mut s = conn.settings.lock();
                    match name {
                        Some(n) => {
                            if let Some(v) = defaults.get(&n) {
                                s.insert(n, v.clone());
                            }
                        }
                        None => {
                            for k in ["extra_float_digits", "application_name", "datestyle", "search_path", "timezone"] {
                                if let Some(v) = defaults.get(k) {
                                    s.insert(k.into(), v.clone());
                                }
                            }
                        }
                    }
                    Response::Execution(Tag::new("RESET"))
                }
            });
        }
        if crate::pgcatalog::handles(sql) {
            return self.catalog(conn, sql, params, 0).await.map(|a| answer_response(a, binary)).map_err(|e| e.to_info());
        }
        if let Some(copy) = crate::copy::parse_copy_out(sql) {
            return self.copy_out(conn, copy, materialize).await.map_err(|e| {
                if session.in_transaction() {
                    conn.aborted.store(true, Ordering::SeqCst);
                }
                e.to_info()
            });
        }
        if let Some(parsed) = crate::copy_in::parse_copy_in(sql) {
            return self.copy_in_start(conn, parsed, materialize).await.inspect_err(|_| {
                if session.in_transaction() {
                    conn.aborted.store(true, Ordering::SeqCst);
                }
            });
        }
        // PostgreSQL's transaction-block rules, on top of DuckDB's transactions.
        let engine_sql = match &k {
            Kind::Begin if in_txn => return Ok(Response::Execution(Tag::new("BEGIN"))),
            Kind::Begin => "BEGIN TRANSACTION",
            Kind::Commit | Kind::Rollback if !in_txn => {
                conn.aborted.store(false, Ordering::SeqCst);
                let tag = if k == Kind::Commit { "COMMIT" } else { "ROLLBACK" };
                return Ok(Response::TransactionEnd(Tag::new(tag)));
            }
            Kind::Commit if conn.aborted.load(Ordering::SeqCst) => "ROLLBACK",
            Kind::Commit => "COMMIT",
            Kind::Rollback => "ROLLBACK",
            _ => sql,
        };
        let result = self.execute(conn, engine_sql, params, &k, binary, materialize).await;
        let now_txn = session.in_transaction();
        match result {
            Err(e) => {
                if now_txn {
                    conn.aborted.store(true, Ordering::SeqCst);
                }
                Err(e.to_info())
            }
            Ok(resp) => Ok(match (in_txn, now_txn, resp) {
                (false, true, Response::Execution(t)) => Response::TransactionStart(t),
                (true, false, Response::Execution(_)) => {
                    let was_aborted = conn.aborted.swap(false, Ordering::SeqCst);
                    Response::TransactionEnd(Tag::new(if k == Kind::Commit && !was_aborted { "COMMIT" } else { "ROLLBACK" }))
                }
                (_, _, r) => r,
            }),
        }
    }

    /// A query on PostgreSQL's catalog, answered from the caller's own catalog
    /// (`params: None` binds `nulls` NULLs, to describe the result).
    async fn catalog(&self, conn: &Conn, sql: &str, params: Option<Vec<Value>>, nulls: usize) -> crate::Result<crate::pgcatalog::Answer> {
        let mut settings: Vec<(String, String)> = conn.settings.lock().iter().map(|(k, v)| (k.clone(), v.clone())).collect();
        settings.sort();
        let ctx = crate::pgcatalog::Context {
            database: conn.session.current_database(),
            schema: conn.session.current_schema(),
            user: conn.session.identity.user.clone(),
            server_version: self.server_version.clone(),
            pid: conn._cancel.pid,
            settings,
        };
        conn.catalog.query(&conn.session, &self.engine, ctx, sql, params, nulls).await
    }

    /// `COPY … TO STDOUT`: the query's rows as CopyData.
    async fn copy_out(&self, conn: &Conn, copy: crate::copy::CopyOut, materialize: bool) -> crate::Result<Response> {
        let stream = conn.session.query(&copy.query, None).await?;
        let schema = stream.schema();
        let (_, cols) = types::fields(&schema, &stream.duckdb_types(), |_| false);
        let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
        let ncols = cols.len();
        let format = copy.format;
        let prefix = Arc::new(Mutex::new(crate::copy::prefix(format, &names)));
        let rest = prefix.clone();
        let rows = stream
            .map(move |r| match r {
                Ok(batch) => crate::copy::copy_rows(&batch, &cols, format, &mut prefix.lock()).map_err(PgWireError::from),
                Err(e) => Err(PgWireError::from(Error::from(e))),
            })
            .flat_map(|r| {
                futures::stream::iter(match r {
                    Ok(rows) => rows.into_iter().map(Ok).collect::<Vec<_>>(),
                    Err(e) => vec![Err(e)],
                })
            })
            // No rows: the prefix (binary signature, CSV header) still goes out.
            .chain(futures::stream::iter(std::iter::from_fn(move || rest.lock().take().map(|p| Ok(CopyData::new(p)))).take(1)));
        let response = if materialize {
            let all: Vec<PgWireResult<CopyData>> = rows.collect().await;
            CopyResponse::new(format.code(), ncols, futures::stream::iter(all))
        } else {
            CopyResponse::new(format.code(), ncols, rows)
        };
        Ok(Response::CopyOut(response))
    }

    async fn execute(
        &self,
        conn: &Conn,
        sql: &str,
        params: Option<Vec<Value>>,
        k: &Kind,
        binary: &(dyn Fn(usize) -> bool + Send + Sync),
        materialize: bool,
    ) -> crate::Result<Response> {
        let stream = conn.session.query(sql, params.map(|p| vec![p])).await?;
        match k {
            Kind::Rows(tag) => {
                if materialize {
                    let schema = stream.schema();
                    let duck = stream.duckdb_types();
                    let (infos, cols) = types::fields(&schema, &duck, binary);
                    let mut rows = Vec::new();
                    for batch in stream.collect().await? {
                        rows.extend(types::encode_batch(&batch, &cols)?.into_iter().map(Ok));
                    }
                    let mut resp = QueryResponse::new(Arc::new(infos), futures::stream::iter(rows));
                    resp.set_command_tag(tag);
                    Ok(Response::Query(resp))
                } else {
                    Ok(Response::Query(query_response(stream, binary, tag)))
                }
            }
            Kind::Dml(tag) => {
                let mut count = 0i64;
                for batch in stream.collect().await? {
                    if let Some(col) = batch.columns().first() {
                        if let Some(a) = col.as_primitive_opt::<Int64Type>() {
                            count += a.iter().flatten().sum::<i64>();
                        }
                    }
                }
                Ok(Response::Execution(Tag::new(tag).with_rows(count.max(0) as usize)))
            }
            Kind::Begin => {
                stream.collect().await?;
                Ok(Response::Execution(Tag::new("BEGIN")))
            }
            Kind::Commit | Kind::Rollback => {
                stream.collect().await?;
                Ok(Response::Execution(Tag::new(if *k == Kind::Commit { "COMMIT" } else { "ROLLBACK" })))
            }
            Kind::Command(tag) => {
                stream.collect().await?;
                Ok(Response::Execution(Tag::new(tag)))
            }
        }
    }
}

impl Backend {
    /// `COPY … FROM STDIN`: resolves the table, checks INSERT, and answers
    /// CopyInResponse; CopyData then goes to [`crate::copy_in::Decoder`].
    async fn copy_in_start(
        &self,
        conn: &Conn,
        parsed: std::result::Result<crate::copy_in::CopyIn, String>,
        not_last: bool,
    ) -> Result<Response, ErrorInfo> {
        let opts = parsed.map_err(|m| info("0A000", m))?;
        if not_last {
            return Err(info("0A000", "COPY … FROM STDIN must be the last statement of a query string"));
        }
        let receiving = crate::copy_in::Receiving::start(&self.engine, &conn.session, opts).await?;
        let (code, columns) = receiving.shape();
        *conn.copy_in.lock() = Some(receiving);
        Ok(Response::CopyIn(CopyResponse::new(code, columns, futures::stream::empty())))
    }
}

#[async_trait]
impl CopyHandler for Backend {
    async fn on_copy_data<C>(&self, client: &mut C, data: CopyData) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        // Errors wait for CopyDone: the client keeps sending until then.
        // Messages of one connection come one at a time, so the COPY state
        // can leave its slot while a batch waits for the appender.
        let conn = conn(client)?;
        let receiving = conn.copy_in.lock().take();
        if let Some(mut r) = receiving {
            r.feed(&data.data).await;
            *conn.copy_in.lock() = Some(r);
        }
        Ok(())
    }

    async fn on_copy_done<C>(&self, client: &mut C, _done: CopyDone) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let conn = conn(client)?;
        let receiving = conn.copy_in.lock().take().ok_or_else(|| user_error(info("08P01", "CopyDone without a COPY in progress")))?;
        match receiving.finish().await {
            Ok(rows) => {
                client.send(PgWireBackendMessage::CommandComplete(Tag::new("COPY").with_rows(rows as usize).into())).await?;
                Ok(())
            }
            Err(e) => {
                if conn.session.in_transaction() {
                    conn.aborted.store(true, Ordering::SeqCst);
                }
                Err(user_error(e))
            }
        }
    }

    async fn on_copy_fail<C>(&self, client: &mut C, fail: CopyFail) -> PgWireError
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let Ok(conn) = conn(client) {
            let receiving = conn.copy_in.lock().take();
            if let Some(r) = receiving {
                r.abort().await;
            }
            if conn.session.in_transaction() {
                conn.aborted.store(true, Ordering::SeqCst);
            }
        }
        user_error(info("57014", format!("COPY from stdin failed: {}", fail.message)))
    }
}

#[async_trait]
impl SimpleQueryHandler for Backend {
    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let conn = conn(client)?;
        let statements = pond_engine::sql::split_statements(query);
        let n = statements.len();
        let mut out = Vec::with_capacity(n);
        if n > 1 {
            // Several statements run none of them if any is denied (as on Flight SQL and HTTP).
            let engine_part: Vec<&str> = {
                let settings = conn.settings.lock();
                let schema = conn.session.current_schema();
                statements.iter().map(String::as_str).filter(|st| local::intercept(st, &settings, &schema).is_none()).collect()
            };
            if let Err(e) = conn.session.preauthorize_sql(&engine_part).await {
                if conn.session.in_transaction() {
                    conn.aborted.store(true, Ordering::SeqCst);
                }
                return Ok(vec![Response::Error(Box::new(Error::from(e).to_info()))]);
            }
        }
        for (i, st) in statements.iter().enumerate() {
            match self.run(&conn, st, None, &|_| false, i + 1 < n).await {
                Ok(r) => out.push(r),
                Err(e) => {
                    out.push(Response::Error(Box::new(e)));
                    break;
                }
            }
        }
        if out.is_empty() {
            out.push(Response::EmptyQuery);
        }
        Ok(out)
    }
}

/// A statement as stored by Parse.
#[derive(Debug, Clone)]
pub(crate) struct Prepared {
    sql: String,
    params: usize,
    /// Parameter types DuckDB inferred at Describe, for the ones Parse left
    /// unspecified (shared by the statement's portals, so Bind decodes values
    /// the way Describe announced them).
    inferred: Arc<Mutex<Vec<Option<Type>>>>,
}

/// The PostgreSQL type to announce for a parameter DuckDB typed `dt`: only
/// types whose binary form Bind decodes; anything else stays text (DuckDB
/// casts it), as do parameters DuckDB cannot type before a value is bound.
fn announced_param_type(dt: &arrow_schema::DataType) -> Option<Type> {
    let t = types::pg_type(dt, "");
    matches!(
        t,
        Type::BOOL
            | Type::INT2
            | Type::INT4
            | Type::INT8
            | Type::FLOAT4
            | Type::FLOAT8
            | Type::BYTEA
            | Type::DATE
            | Type::TIME
            | Type::TIMESTAMP
            | Type::TIMESTAMPTZ
    )
    .then_some(t)
}

pub(crate) struct Parser;

#[async_trait]
impl QueryParser for Parser {
    type Statement = Prepared;

    async fn parse_sql<C>(&self, _client: &C, sql: &str, _types: &[Option<Type>]) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let sql = sql.trim().trim_end_matches(';').trim().to_string();
        Ok(Some(Prepared { params: param_count(&sql), sql, inferred: Arc::default() }))
    }

    fn get_parameter_types(&self, stmt: &Prepared) -> PgWireResult<Vec<Type>> {
        Ok(vec![Type::TEXT; stmt.params])
    }

    fn get_result_schema(&self, _stmt: &Prepared, _format: Option<&Format>) -> PgWireResult<Vec<FieldInfo>> {
        Ok(vec![])
    }
}

fn portal_params(portal: &Portal<Prepared>) -> PgWireResult<Option<Vec<Value>>> {
    if portal.parameters.is_empty() {
        return Ok(None);
    }
    let declared = &portal.statement.parameter_types;
    let inferred = portal.statement.statement.inferred.lock().clone();
    let mut values = Vec::with_capacity(portal.parameters.len());
    for (i, raw) in portal.parameters.iter().enumerate() {
        let ty = declared.get(i).cloned().flatten().or_else(|| inferred.get(i).cloned().flatten()).unwrap_or(Type::UNKNOWN);
        let binary = format_for(&portal.parameter_format, i);
        values.push(types::param_value(raw.as_deref(), &ty, binary).map_err(PgWireError::from)?);
    }
    Ok(Some(values))
}

fn portal_key(portal: &Portal<Prepared>) -> usize {
    Arc::as_ptr(&portal.state) as usize
}

fn user_error(e: ErrorInfo) -> PgWireError {
    PgWireError::UserError(Box::new(e))
}

/// An Execute without a row limit: streams the DataRows to the client as they
/// are encoded and answers with the CommandComplete tag. (pgwire would first
/// collect every row of the portal in memory, then send them: no overlap of
/// DuckDB, encoding and the client, and the whole result held at once.) The
/// portal is then finished, as pgwire would leave it.
async fn send_whole_result<C>(client: &mut C, portal: &Portal<Prepared>, resp: QueryResponse) -> PgWireResult<Response>
where
    C: Sink<PgWireBackendMessage> + Unpin + Send,
    C::Error: Debug,
    PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
{
    let tag = resp.command_tag().to_owned();
    let mut resp = resp;
    let rows = resp.data_rows();
    let mut n = 0usize;
    while let Some(row) = rows.next().await {
        client.feed(PgWireBackendMessage::DataRow(row?)).await?;
        n += 1;
    }
    *portal.state.lock().await = PortalExecutionState::Finished;
    Ok(Response::Execution(Tag::new(&tag).with_rows(n)))
}

#[async_trait]
impl ExtendedQueryHandler for Backend {
    type Statement = Prepared;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Parser> {
        self.parser.clone()
    }

    async fn do_describe_statement<C>(&self, client: &mut C, target: &StoredStatement<Prepared>) -> PgWireResult<DescribeStatementResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let conn = conn(client)?;
        let stmt = &target.statement;
        let n = stmt.params.max(target.parameter_types.len());
        // Parameters Parse left unspecified: the types DuckDB infers (a
        // prepare on the session's describing connection, authorized first),
        // so drivers that encode values by the announced types (asyncpg, JDBC
        // without hints) send them typed; TEXT where DuckDB cannot tell.
        let local = {
            let settings = conn.settings.lock();
            local::intercept(&stmt.sql, &settings, &conn.session.current_schema())
        };
        let untyped = (0..n).any(|i| target.parameter_types.get(i).cloned().flatten().is_none());
        // (Statements Pond answers itself — local ones and catalog queries — are not DuckDB's to type.)
        if untyped && local.is_none() && !crate::pgcatalog::handles(&stmt.sql) {
            if let Ok(p) = conn.session.prepare(&stmt.sql).await {
                conn.session.close_prepared(&p.handle);
                if p.parameter_types.len() == n {
                    *stmt.inferred.lock() = p.parameter_types.iter().map(announced_param_type).collect();
                }
            }
        }
        let inferred = stmt.inferred.lock().clone();
        let params: Vec<Type> = (0..n)
            .map(|i| target.parameter_types.get(i).cloned().flatten().or_else(|| inferred.get(i).cloned().flatten()).unwrap_or(Type::TEXT))
            .collect();
        if let Some(Local::Row(row)) = local {
            return Ok(DescribeStatementResponse::new(params, local_fields(&row)));
        }
        if local.is_none() && crate::pgcatalog::handles(&stmt.sql) {
            let a = self.catalog(&conn, &stmt.sql, None, n).await.map_err(|e| user_error(e.to_info()))?;
            return Ok(DescribeStatementResponse::new(params, types::fields(&a.schema, &a.types, |_| false).0));
        }
        // Only a single statement is wrapped (the wrapper must not turn one statement into several).
        let wrappable = matches!(words(&stmt.sql, 1).first().map(String::as_str), Some("SELECT" | "WITH" | "VALUES" | "FROM" | "TABLE"))
            && pond_engine::sql::split_statements(&stmt.sql).len() == 1;
        if local.is_some() || !wrappable || conn.aborted.load(Ordering::SeqCst) {
            return Ok(DescribeStatementResponse::new(params, vec![]));
        }
        // The result columns without running the statement: DuckDB plans it under LIMIT 0.
        let probe = format!("SELECT * FROM ({}\n) AS pond_describe LIMIT 0", stmt.sql);
        if pond_engine::sql::split_statements(&probe).len() != 1 {
            return Ok(DescribeStatementResponse::new(params, vec![]));
        }
        let nulls = (n > 0).then(|| vec![vec![Value::Null; n]]);
        let stream = conn.session.query(&probe, nulls).await.map_err(Error::from)?;
        let (infos, _) = types::fields(&stream.schema(), &stream.duckdb_types(), |_| false);
        drop(stream);
        Ok(DescribeStatementResponse::new(params, infos))
    }

    async fn do_describe_portal<C>(&self, client: &mut C, portal: &Portal<Prepared>) -> PgWireResult<DescribePortalResponse>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let conn = conn(client)?;
        let sql = &portal.statement.statement.sql;
        let local = {
            let settings = conn.settings.lock();
            local::intercept(sql, &settings, &conn.session.current_schema())
        };
        if let Some(Local::Row(row)) = local {
            return Ok(DescribePortalResponse::new(local_fields(&row)));
        }
        if local.is_none() && crate::pgcatalog::handles(sql) {
            // Catalog answers are cheap: Execute asks again.
            let formats = portal.result_column_format.clone();
            let a = self.catalog(&conn, sql, portal_params(portal)?, 0).await.map_err(|e| user_error(e.to_info()))?;
            return Ok(DescribePortalResponse::new(types::fields(&a.schema, &a.types, |i| format_for(&formats, i)).0));
        }
        if local.is_some() || !matches!(kind(sql), Kind::Rows(_)) {
            return Ok(DescribePortalResponse::new(vec![]));
        }
        if conn.aborted.load(Ordering::SeqCst) {
            return Err(user_error(info("25P02", "current transaction is aborted, commands ignored until end of transaction block")));
        }
        // Run it now (its parameters are bound) and keep the result for Execute.
        let params = portal_params(portal)?;
        let in_txn = conn.session.in_transaction();
        let stream = match conn.session.query(sql, params.map(|p| vec![p])).await {
            Ok(s) => s,
            Err(e) => {
                if in_txn {
                    conn.aborted.store(true, Ordering::SeqCst);
                }
                return Err(Error::from(e).into());
            }
        };
        let formats = portal.result_column_format.clone();
        let (infos, _) = types::fields(&stream.schema(), &stream.duckdb_types(), |i| format_for(&formats, i));
        *conn.pending.lock() = Some((portal_key(portal), stream));
        Ok(DescribePortalResponse::new(infos))
    }

    async fn do_query<C>(&self, client: &mut C, portal: &Portal<Prepared>, max_rows: usize) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Prepared>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let conn = conn(client)?;
        let formats = portal.result_column_format.clone();
        let binary = move |i: usize| format_for(&formats, i);
        let pending = {
            let mut p = conn.pending.lock();
            match p.take() {
                Some((key, stream)) if key == portal_key(portal) => Some(stream),
                _ => None,
            }
        };
        if let Some(stream) = pending {
            let tag = match kind(&portal.statement.statement.sql) {
                Kind::Rows(t) => t,
                _ => "SELECT".into(),
            };
            let resp = query_response(stream, &binary, &tag);
            return if max_rows == 0 { send_whole_result(client, portal, resp).await } else { Ok(Response::Query(resp)) };
        }
        let params = portal_params(portal)?;
        match self.run(&conn, &portal.statement.statement.sql, params, &binary, false).await.map_err(user_error)? {
            Response::Query(resp) if max_rows == 0 => send_whole_result(client, portal, resp).await,
            other => Ok(other),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn statement_kinds_and_tags() {
        assert_eq!(kind("select 1"), Kind::Rows("SELECT".into()));
        assert_eq!(kind("  (select 1)"), Kind::Rows("SELECT".into()));
        assert_eq!(kind("insert into t values (1)"), Kind::Dml("INSERT 0"));
        assert_eq!(kind("INSERT INTO t VALUES (1) RETURNING id"), Kind::Rows("INSERT 0".into()));
        assert_eq!(kind("create or replace temp table t (a int)"), Kind::Command("CREATE TABLE".into()));
        assert_eq!(kind("drop view if exists v"), Kind::Command("DROP VIEW".into()));
        assert_eq!(kind("begin"), Kind::Begin);
        assert_eq!(kind("START TRANSACTION"), Kind::Begin);
        assert_eq!(kind("end"), Kind::Commit);
        assert_eq!(kind("rollback to savepoint a"), Kind::Command("ROLLBACK".into()));
    }

    #[test]
    fn placeholders_are_counted_outside_quotes() {
        assert_eq!(param_count("select $1, $2 where a = $10"), 10);
        assert_eq!(param_count("select '$3', \"$4\""), 0);
        assert_eq!(param_count("select $$"), 0);
    }
}
