//! The ADBC objects: [`PondDriver`] → [`PondDatabase`] (one channel and
//! token) → [`PondConnection`] (one server session) → [`PondStatement`].

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;

use adbc_core::error::{Error as AdbcError, Result as AdbcResult, Status as AdbcStatus};
use adbc_core::options::{
    InfoCode, IngestMode, IsolationLevel, ObjectDepth, OptionConnection, OptionDatabase, OptionStatement, OptionValue,
};
use adbc_core::{schemas, CancelHandle, Connection, Database, Driver, Optionable, PartitionedResult, Statement};
use arrow_array::{RecordBatch, RecordBatchReader};
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::sql::{
    ActionBeginTransactionRequest, ActionBeginTransactionResult, ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest,
    ActionCreatePreparedStatementResult, ActionEndTransactionRequest, CommandGetCatalogs, CommandGetDbSchemas, CommandGetSqlInfo,
    CommandGetTableTypes, CommandGetTables, CommandPreparedStatementQuery, CommandPreparedStatementUpdate, CommandStatementIngest,
    CommandStatementQuery, CommandStatementUpdate, DoPutUpdateResult, ProstMessageExt,
};
use arrow_flight::{FlightDescriptor, FlightInfo, Ticket};
use arrow_schema::{Schema, SchemaRef};
use bytes::Bytes;
use futures::StreamExt;
use parking_lot::Mutex;
use prost::Message;

use crate::client::{self, block_on, Compression, DbConfig, Rpc, Shared, RUNTIME};
use crate::error::{invalid, Error, Result};
use crate::metadata::{self, CatalogInfo, InfoValue, SchemaInfo, TableInfo};
use crate::stream::{batches_reader, cancellable, CancelSlot, ResultReader};

pub const DRIVER_NAME: &str = "ADBC Pond Driver (Rust)";

fn option_string(key: &str, v: OptionValue) -> Result<String> {
    match v {
        OptionValue::String(s) => Ok(s),
        OptionValue::Int(i) => Ok(i.to_string()),
        OptionValue::Double(d) => Ok(d.to_string()),
        OptionValue::Bytes(b) => String::from_utf8(b).map_err(|_| invalid(format!("option '{key}' must be text"))),
        _ => Err(invalid(format!("option '{key}' has an unsupported value type"))),
    }
}

fn not_found(key: &str) -> AdbcError {
    AdbcError::with_message_and_status(format!("option '{key}' is not set or not readable"), AdbcStatus::NotFound)
}

// ---------------------------------------------------------------------------

#[derive(Default)]
pub struct PondDriver;

impl Driver for PondDriver {
    type DatabaseType = PondDatabase;

    fn new_database(&mut self) -> AdbcResult<PondDatabase> {
        self.new_database_with_opts(std::iter::empty())
    }

    fn new_database_with_opts(&mut self, opts: impl IntoIterator<Item = (OptionDatabase, OptionValue)>) -> AdbcResult<PondDatabase> {
        let mut config = DbConfig::new();
        for (k, v) in opts {
            let key = k.as_ref().to_string();
            config.set(&key, &option_string(&key, v)?)?;
        }
        Ok(PondDatabase { shared: Arc::new(Shared::new(config)?) })
    }
}

/// A database: the channel and token its connections share.
pub struct PondDatabase {
    shared: Arc<Shared>,
}

impl Drop for PondDatabase {
    fn drop(&mut self) {
        // The handshake opened a server session for the bare token; close it
        // so that databases opened and closed in a loop leave nothing behind.
        if self.shared.did_handshake() {
            let rpc = Rpc { shared: self.shared.clone(), session_id: String::new(), database: None };
            close_session(rpc);
        }
    }
}

impl Optionable for PondDatabase {
    type Option = OptionDatabase;

    fn set_option(&mut self, key: OptionDatabase, _value: OptionValue) -> AdbcResult<()> {
        Err(Error::InvalidState(format!("database option '{}' must be set before the database is initialized", key.as_ref())).into())
    }
    fn get_option_string(&self, key: OptionDatabase) -> AdbcResult<String> {
        self.shared.config.get(key.as_ref()).ok_or_else(|| not_found(key.as_ref()))
    }
    fn get_option_bytes(&self, key: OptionDatabase) -> AdbcResult<Vec<u8>> {
        self.get_option_string(key).map(String::into_bytes)
    }
    fn get_option_int(&self, key: OptionDatabase) -> AdbcResult<i64> {
        self.get_option_string(key.clone())?.parse().map_err(|_| not_found(key.as_ref()))
    }
    fn get_option_double(&self, key: OptionDatabase) -> AdbcResult<f64> {
        self.get_option_string(key.clone())?.parse().map_err(|_| not_found(key.as_ref()))
    }
}

impl Database for PondDatabase {
    type ConnectionType = PondConnection;

    fn new_connection(&self) -> AdbcResult<PondConnection> {
        self.new_connection_with_opts(std::iter::empty())
    }

    fn new_connection_with_opts(&self, opts: impl IntoIterator<Item = (OptionConnection, OptionValue)>) -> AdbcResult<PondConnection> {
        let shared = self.shared.clone();
        // The first connection does the handshake; later ones reuse the token.
        block_on(shared.authorization())?;
        let mut conn = PondConnection {
            inner: Arc::new(ConnInner {
                rpc: Mutex::new(Rpc::new(shared)),
                autocommit: AtomicBool::new(true),
                txn: Mutex::new(None),
                cancel: CancelSlot::default(),
                used: AtomicBool::new(false),
            }),
        };
        for (k, v) in opts {
            conn.set_option(k, v)?;
        }
        Ok(conn)
    }
}

// ---------------------------------------------------------------------------

/// What a connection's statements share with it.
pub struct ConnInner {
    rpc: Mutex<Rpc>,
    autocommit: AtomicBool,
    txn: Mutex<Option<Bytes>>,
    cancel: CancelSlot,
    /// Whether the server has a session for this connection yet.
    used: AtomicBool,
}

impl ConnInner {
    fn rpc(&self) -> Rpc {
        self.used.store(true, Ordering::Relaxed);
        self.rpc.lock().clone()
    }

    fn config(&self) -> DbConfig {
        self.rpc.lock().shared.config.clone()
    }

    /// The transaction to run in: none in autocommit mode, else the open
    /// one (begun on first use).
    async fn transaction(&self) -> Result<Option<Bytes>> {
        if self.autocommit.load(Ordering::Acquire) {
            return Ok(None);
        }
        if let Some(t) = self.txn.lock().clone() {
            return Ok(Some(t));
        }
        let res: Option<ActionBeginTransactionResult> =
            self.rpc().sql_action("BeginTransaction", ActionBeginTransactionRequest::default()).await?;
        let id = res.map(|r| r.transaction_id).ok_or_else(|| Error::Internal("BeginTransaction returned no transaction id".into()))?;
        *self.txn.lock() = Some(id.clone());
        Ok(Some(id))
    }

    async fn end_transaction(&self, commit: bool) -> Result<()> {
        let Some(id) = self.txn.lock().take() else { return Ok(()) };
        let req = ActionEndTransactionRequest { transaction_id: id, action: if commit { 1 } else { 2 } };
        self.rpc().action("EndTransaction", req.as_any().encode_to_vec()).await?;
        Ok(())
    }

    /// Runs one request/response operation, cancellable from another thread.
    fn run<T>(&self, f: impl std::future::Future<Output = Result<T>>) -> Result<T> {
        let token = self.cancel.start(&self.rpc());
        let r = block_on(cancellable(&token, f));
        if matches!(r, Err(Error::Timeout(_))) {
            // A client-side deadline only drops the call: stop the statement too.
            let _ = self.cancel.cancel();
        } else {
            self.cancel.finish();
        }
        r
    }

    /// DoGets a FlightInfo's endpoints and collects every batch (metadata answers).
    async fn collect(&self, info: FlightInfo) -> Result<(Option<SchemaRef>, Vec<RecordBatch>)> {
        let rpc = self.rpc();
        let mut schema = info.clone().try_decode_schema().ok().map(Arc::new);
        let mut batches = Vec::new();
        for ep in &info.endpoint {
            let Some(t) = ep.ticket.clone() else { continue };
            let stream = rpc.do_get(t, Compression::None).await?;
            let mut dec = arrow_flight::decode::FlightRecordBatchStream::new_from_flight_data(
                stream.map(|r| r.map_err(arrow_flight::error::FlightError::from)),
            );
            while let Some(b) = dec.next().await {
                batches.push(b?);
            }
            if let Some(s) = dec.schema() {
                schema = Some(s.clone());
            }
        }
        Ok((schema, batches))
    }

    async fn query_collect<M: ProstMessageExt>(&self, cmd: M) -> Result<Vec<RecordBatch>> {
        let info = self.rpc().flight_info(cmd).await?;
        Ok(self.collect(info).await?.1)
    }

    fn stream(&self, info: FlightInfo, prefetch: usize, compression: Compression) -> Result<ResultReader> {
        let rpc = self.rpc();
        let token = self.cancel.start(&rpc);
        self.cancel.set_info(&info);
        ResultReader::open(rpc, info, compression, prefetch, token)
    }
}

/// A connection: one session on the server (its transaction, current
/// database and prepared statements), sharing the database's channel.
pub struct PondConnection {
    inner: Arc<ConnInner>,
}

impl Drop for PondConnection {
    fn drop(&mut self) {
        if !self.inner.used.load(Ordering::Relaxed) {
            return;
        }
        // Close the server session (rolls back an open transaction).
        let rpc = self.inner.rpc.lock().clone();
        close_session(rpc);
    }
}

/// Closes a server session and waits (up to 2 s) for the answer, so that a
/// loop of connect/close never leaves sessions piling up on the server.
/// Inside an async context it does not block: the call runs in the background.
fn close_session(rpc: Rpc) {
    finish_action(rpc, "CloseSession", Vec::new());
}

/// Runs a closing action, waiting up to 2 s for its answer (in the background
/// when called from async code).
fn finish_action(rpc: Rpc, kind: &'static str, body: Vec<u8>) {
    let call = async move {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(2), rpc.action(kind, body)).await;
    };
    if tokio::runtime::Handle::try_current().is_ok() {
        RUNTIME.spawn(call);
    } else {
        block_on(call);
    }
}

struct ConnCancel(Arc<ConnInner>);

impl CancelHandle for ConnCancel {
    fn try_cancel(&self) -> AdbcResult<()> {
        Ok(self.0.cancel.cancel()?)
    }
}

impl Optionable for PondConnection {
    type Option = OptionConnection;

    fn set_option(&mut self, key: OptionConnection, value: OptionValue) -> AdbcResult<()> {
        let name = key.as_ref().to_string();
        let v = option_string(&name, value)?;
        match key {
            OptionConnection::AutoCommit => {
                let on = client::parse_bool(&name, &v)?;
                if on && !self.inner.autocommit.load(Ordering::Acquire) {
                    // Enabling autocommit commits the open transaction.
                    block_on(self.inner.end_transaction(true))?;
                }
                self.inner.autocommit.store(on, Ordering::Release);
                Ok(())
            }
            OptionConnection::ReadOnly => {
                if client::parse_bool(&name, &v)? {
                    Err(Error::NotImplemented("read-only connections are not supported (grant the user read-only access instead)".into())
                        .into())
                } else {
                    Ok(())
                }
            }
            OptionConnection::IsolationLevel => {
                let ok = [IsolationLevel::Default, IsolationLevel::Snapshot, IsolationLevel::Serializable];
                if ok.into_iter().any(|l| String::from(l) == v) {
                    Ok(())
                } else {
                    Err(Error::NotImplemented(format!("isolation level '{v}' (DuckDB provides snapshot isolation)")).into())
                }
            }
            OptionConnection::CurrentCatalog => {
                self.inner.rpc.lock().database = if v.is_empty() { None } else { Some(v) };
                Ok(())
            }
            OptionConnection::CurrentSchema => {
                let sql = format!("SET schema = {}", quote_literal(&v));
                let inner = self.inner.clone();
                inner.run(async { inner.rpc().execute_update_sql(sql, None).await.map(|_| ()) })?;
                Ok(())
            }
            OptionConnection::Other(ref k) if k == client::OPT_DATABASE => {
                self.inner.rpc.lock().database = if v.is_empty() { None } else { Some(v) };
                Ok(())
            }
            _ => Err(Error::NotImplemented(format!("unknown connection option '{name}'")).into()),
        }
    }

    fn get_option_string(&self, key: OptionConnection) -> AdbcResult<String> {
        match key {
            OptionConnection::AutoCommit => Ok(self.inner.autocommit.load(Ordering::Acquire).to_string()),
            OptionConnection::ReadOnly => Ok("false".into()),
            OptionConnection::IsolationLevel => Ok(String::from(IsolationLevel::Snapshot)),
            OptionConnection::CurrentCatalog => {
                if let Some(db) = self.inner.rpc.lock().database.clone() {
                    return Ok(db);
                }
                Ok(self.scalar("SELECT current_database()")?)
            }
            OptionConnection::CurrentSchema => Ok(self.scalar("SELECT current_schema()")?),
            OptionConnection::Other(ref k) if k == client::OPT_DATABASE => {
                self.inner.rpc.lock().database.clone().ok_or_else(|| not_found(k))
            }
            _ => Err(not_found(key.as_ref())),
        }
    }
    fn get_option_bytes(&self, key: OptionConnection) -> AdbcResult<Vec<u8>> {
        self.get_option_string(key).map(String::into_bytes)
    }
    fn get_option_int(&self, key: OptionConnection) -> AdbcResult<i64> {
        Err(not_found(key.as_ref()))
    }
    fn get_option_double(&self, key: OptionConnection) -> AdbcResult<f64> {
        Err(not_found(key.as_ref()))
    }
}

pub fn quote_literal(s: &str) -> String {
    format!("'{}'", s.replace('\'', "''"))
}

pub fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

impl PondConnection {
    /// Exact row counts of `tables` (in their order), in one query.
    fn exact_row_counts(&self, tables: &[metadata::RowCount]) -> Result<Vec<metadata::RowCount>> {
        let sql = tables
            .iter()
            .enumerate()
            .map(|(i, (c, s, t, _, _))| {
                format!("SELECT {i} AS i, count(*) AS n FROM {}.{}.{}", quote_ident(c), quote_ident(s), quote_ident(t))
            })
            .collect::<Vec<_>>()
            .join(" UNION ALL ");
        let inner = &self.inner;
        let batches = inner.run(async {
            let txn = inner.transaction().await?;
            inner.query_collect(CommandStatementQuery { query: sql, transaction_id: txn }).await
        })?;
        let mut out = tables.to_vec();
        for b in &batches {
            let cast = |col: usize| -> Result<arrow_array::Int64Array> {
                let a = arrow_cast::cast(b.column(col), &arrow_schema::DataType::Int64).map_err(Error::from)?;
                a.as_any()
                    .downcast_ref::<arrow_array::Int64Array>()
                    .cloned()
                    .ok_or_else(|| Error::Internal("row counts: unexpected column type".into()))
            };
            let (idx, n) = (cast(0)?, cast(1)?);
            for r in 0..b.num_rows() {
                if let Some(row) = usize::try_from(idx.value(r)).ok().and_then(|i| out.get_mut(i)) {
                    row.3 = n.value(r);
                    row.4 = false;
                }
            }
        }
        Ok(out)
    }

    fn scalar(&self, sql: &str) -> Result<String> {
        let inner = &self.inner;
        let batches = inner.run(async {
            let txn = inner.transaction().await?;
            inner.query_collect(CommandStatementQuery { query: sql.to_string(), transaction_id: txn }).await
        })?;
        let b = batches.into_iter().find(|b| b.num_rows() > 0).ok_or_else(|| Error::Internal(format!("'{sql}' returned no row")))?;
        let col = arrow_cast::display::ArrayFormatter::try_new(b.column(0).as_ref(), &Default::default())?;
        Ok(col.value(0).to_string())
    }

    /// Vendor name, version and Arrow version (GetSqlInfo 0, 1, 2), asked once per database.
    fn server_info(&self) -> Result<Vec<(u32, String)>> {
        let shared = self.inner.rpc.lock().shared.clone();
        if let Some(v) = shared.server_info.lock().clone() {
            return Ok(v);
        }
        let inner = &self.inner;
        let batches = inner.run(inner.query_collect(CommandGetSqlInfo { info: vec![0, 1, 2] }))?;
        let mut out = Vec::new();
        for b in &batches {
            let names = b.column(0).as_any().downcast_ref::<arrow_array::UInt32Array>();
            let values = b.column(1).as_any().downcast_ref::<arrow_array::UnionArray>();
            if let (Some(names), Some(values)) = (names, values) {
                for i in 0..b.num_rows() {
                    let child = values.child(values.type_id(i));
                    if let Some(s) = child.as_any().downcast_ref::<arrow_array::StringArray>() {
                        out.push((names.value(i), s.value(values.value_offset(i)).to_string()));
                    }
                }
            }
        }
        *shared.server_info.lock() = Some(out.clone());
        Ok(out)
    }
}

impl Connection for PondConnection {
    type StatementType = PondStatement;

    fn new_statement(&mut self) -> AdbcResult<PondStatement> {
        let config = self.inner.config();
        Ok(PondStatement {
            conn: self.inner.clone(),
            sql: None,
            prepared: None,
            want_prepare: false,
            bound: None,
            ingest: Ingest::default(),
            prefetch: config.prefetch,
            compression: config.compression,
        })
    }

    fn get_cancel_handle(&self) -> Box<dyn CancelHandle> {
        Box::new(ConnCancel(self.inner.clone()))
    }

    fn get_info(&self, codes: Option<HashSet<InfoCode>>) -> AdbcResult<Box<dyn RecordBatchReader + Send + 'static>> {
        let wanted = |c: &InfoCode| codes.as_ref().is_none_or(|s| s.contains(c));
        let needs_server = [InfoCode::VendorName, InfoCode::VendorVersion, InfoCode::VendorArrowVersion].iter().any(wanted);
        let server = if needs_server { self.server_info()? } else { Vec::new() };
        let from_server = |code: u32, default: &str| {
            server.iter().find(|(c, _)| *c == code).map(|(_, v)| v.clone()).unwrap_or_else(|| default.to_string())
        };
        let mut rows = Vec::new();
        let all = [
            (InfoCode::VendorName, InfoValue::Str(from_server(0, "Pond"))),
            (InfoCode::VendorVersion, InfoValue::Str(from_server(1, "unknown"))),
            (InfoCode::VendorArrowVersion, InfoValue::Str(from_server(2, "unknown"))),
            (InfoCode::VendorSql, InfoValue::Bool(true)),
            (InfoCode::VendorSubstrait, InfoValue::Bool(false)),
            (InfoCode::DriverName, InfoValue::Str(DRIVER_NAME.into())),
            (InfoCode::DriverVersion, InfoValue::Str(env!("CARGO_PKG_VERSION").into())),
            (InfoCode::DriverArrowVersion, InfoValue::Str("58".into())),
            (InfoCode::DriverAdbcVersion, InfoValue::Int64(adbc_core::constants::ADBC_VERSION_1_1_0 as i64)),
        ];
        for (code, v) in all {
            if wanted(&code) {
                rows.push((u32::from(&code), v));
            }
        }
        let batch = metadata::info_batch(rows)?;
        Ok(batches_reader(batch.schema(), vec![batch]))
    }

    fn get_objects(
        &self,
        depth: ObjectDepth,
        catalog: Option<&str>,
        db_schema: Option<&str>,
        table_name: Option<&str>,
        table_type: Option<Vec<&str>>,
        column_name: Option<&str>,
    ) -> AdbcResult<Box<dyn RecordBatchReader + Send + 'static>> {
        let inner = &self.inner;
        let with_schemas = !matches!(depth, ObjectDepth::Catalogs);
        let with_tables = matches!(depth, ObjectDepth::Tables | ObjectDepth::Columns | ObjectDepth::All);
        let with_columns = matches!(depth, ObjectDepth::Columns | ObjectDepth::All);
        // At most three calls, made concurrently: catalogs, schemas, tables
        // (the tables call brings every column's type along when asked).
        let (cats, schemas_b, tables_b) = inner.run(async {
            let cats = inner.query_collect(CommandGetCatalogs {});
            let schemas = async {
                if with_schemas {
                    inner
                        .query_collect(CommandGetDbSchemas { catalog: None, db_schema_filter_pattern: db_schema.map(str::to_string) })
                        .await
                } else {
                    Ok(Vec::new())
                }
            };
            let tables = async {
                if with_tables {
                    inner
                        .query_collect(CommandGetTables {
                            catalog: None,
                            db_schema_filter_pattern: db_schema.map(str::to_string),
                            table_name_filter_pattern: table_name.map(str::to_string),
                            table_types: table_type.clone().unwrap_or_default().into_iter().map(str::to_string).collect(),
                            include_schema: with_columns,
                        })
                        .await
                } else {
                    Ok(Vec::new())
                }
            };
            futures::try_join!(cats, schemas, tables)
        })?;
        let mut catalogs: Vec<CatalogInfo> = Vec::new();
        for b in &cats {
            for name in metadata::strings(b, "catalog_name")?.into_iter().flatten() {
                if metadata::matches(catalog, &name) {
                    catalogs.push(CatalogInfo { name, schemas: with_schemas.then(Vec::new) });
                }
            }
        }
        for b in &schemas_b {
            let c = metadata::strings(b, "catalog_name")?;
            let s = metadata::strings(b, "db_schema_name")?;
            for (c, s) in c.into_iter().zip(s) {
                let (Some(c), Some(s)) = (c, s) else { continue };
                if let Some(cat) = catalogs.iter_mut().find(|x| x.name == c) {
                    if let Some(list) = cat.schemas.as_mut() {
                        list.push(SchemaInfo { name: s, tables: with_tables.then(Vec::new) });
                    }
                }
            }
        }
        for b in &tables_b {
            let c = metadata::strings(b, "catalog_name")?;
            let s = metadata::strings(b, "db_schema_name")?;
            let t = metadata::strings(b, "table_name")?;
            let ty = metadata::strings(b, "table_type")?;
            let schemas_col = b.column_by_name("table_schema").and_then(|a| a.as_any().downcast_ref::<arrow_array::BinaryArray>().cloned());
            for i in 0..b.num_rows() {
                let (Some(c), Some(s), Some(t)) = (&c[i], &s[i], &t[i]) else { continue };
                let columns = if with_columns {
                    let bytes = schemas_col.as_ref().map(|a| a.value(i)).unwrap_or_default();
                    let schema = arrow_ipc::convert::try_schema_from_ipc_buffer(bytes)?;
                    Some(metadata::columns_of(&schema, column_name))
                } else {
                    None
                };
                let table = TableInfo { name: t.clone(), table_type: ty[i].clone().unwrap_or_default(), columns };
                if let Some(list) = catalogs
                    .iter_mut()
                    .find(|x| &x.name == c)
                    .and_then(|cat| cat.schemas.as_mut())
                    .and_then(|l| l.iter_mut().find(|x| &x.name == s))
                    .and_then(|sc| sc.tables.as_mut())
                {
                    list.push(table);
                }
            }
        }
        let batch = metadata::objects_batch(&catalogs)?;
        Ok(batches_reader(batch.schema(), vec![batch]))
    }

    fn get_table_schema(&self, catalog: Option<&str>, db_schema: Option<&str>, table_name: &str) -> AdbcResult<Schema> {
        let inner = &self.inner;
        // Exact names: escape LIKE's wildcards, then compare exactly.
        let batches = inner.run(inner.query_collect(CommandGetTables {
            catalog: catalog.map(str::to_string),
            db_schema_filter_pattern: db_schema.map(metadata::escape_like),
            table_name_filter_pattern: Some(metadata::escape_like(table_name)),
            table_types: Vec::new(),
            include_schema: true,
        }))?;
        let current = inner.rpc.lock().database.clone();
        let mut found: Vec<(String, Schema)> = Vec::new();
        for b in &batches {
            let c = metadata::strings(b, "catalog_name")?;
            let s = metadata::strings(b, "db_schema_name")?;
            let t = metadata::strings(b, "table_name")?;
            let sch = b
                .column_by_name("table_schema")
                .and_then(|a| a.as_any().downcast_ref::<arrow_array::BinaryArray>().cloned())
                .ok_or_else(|| Error::Internal("GetTables returned no table_schema".into()))?;
            for i in 0..b.num_rows() {
                let exact = t[i].as_deref() == Some(table_name)
                    && catalog.is_none_or(|x| c[i].as_deref() == Some(x))
                    && db_schema.is_none_or(|x| s[i].as_deref() == Some(x))
                    && (db_schema.is_some() || s[i].as_deref() == Some("main"));
                if exact {
                    let schema = arrow_ipc::convert::try_schema_from_ipc_buffer(sch.value(i)).map_err(Error::from)?;
                    found.push((c[i].clone().unwrap_or_default(), strip_flight_metadata(schema)));
                }
            }
        }
        let pick = found.iter().position(|(c, _)| Some(c) == current.as_ref()).unwrap_or(0);
        if found.is_empty() {
            let full = [catalog, db_schema, Some(table_name)].into_iter().flatten().collect::<Vec<_>>().join(".");
            return Err(Error::NotFound(format!("table '{full}' does not exist (or you may not read it)")).into());
        }
        Ok(found.swap_remove(pick).1)
    }

    fn get_table_types(&self) -> AdbcResult<Box<dyn RecordBatchReader + Send + 'static>> {
        let inner = &self.inner;
        let batches = inner.run(inner.query_collect(CommandGetTableTypes {}))?;
        let schema = schemas::GET_TABLE_TYPES_SCHEMA.clone();
        let mut out = Vec::new();
        for b in batches {
            let types = metadata::strings(&b, "table_type")?;
            let col = arrow_array::StringArray::from_iter_values(types.into_iter().flatten());
            out.push(RecordBatch::try_new(schema.clone(), vec![Arc::new(col)]).map_err(Error::from)?);
        }
        Ok(batches_reader(schema, out))
    }

    fn get_statistic_names(&self) -> AdbcResult<Box<dyn RecordBatchReader + Send + 'static>> {
        // Only ADBC's standard statistics (row count): no driver-specific names.
        let schema = schemas::GET_STATISTIC_NAMES_SCHEMA.clone();
        Ok(batches_reader(schema.clone(), vec![RecordBatch::new_empty(schema)]))
    }

    fn get_statistics(
        &self,
        catalog: Option<&str>,
        db_schema: Option<&str>,
        table_name: Option<&str>,
        approximate: bool,
    ) -> AdbcResult<Box<dyn RecordBatchReader + Send + 'static>> {
        // DuckDB keeps each table's row count (duckdb_tables().estimated_size):
        // cheap, but rows deleted since the last checkpoint still count, so it
        // is reported as approximate. Asked for exact values, the driver counts
        // the matching tables (one query, `count(*)` per table) and says exact.
        // Other catalogs (views, attached non-DuckDB databases) report none.
        let mut sql = String::from(
            "SELECT database_name, schema_name, table_name, estimated_size FROM duckdb_tables() WHERE NOT internal AND estimated_size IS NOT NULL",
        );
        for (col, p) in [("database_name", catalog), ("schema_name", db_schema), ("table_name", table_name)] {
            if let Some(p) = p {
                sql.push_str(&format!(" AND {col} LIKE {} ESCAPE '\\'", quote_literal(p)));
            }
        }
        sql.push_str(" ORDER BY 1, 2, 3");
        let inner = &self.inner;
        let batches = inner.run(async {
            let txn = inner.transaction().await?;
            inner.query_collect(CommandStatementQuery { query: sql, transaction_id: txn }).await
        })?;
        let mut rows = Vec::new();
        for b in &batches {
            let c = metadata::strings(b, "database_name")?;
            let s = metadata::strings(b, "schema_name")?;
            let t = metadata::strings(b, "table_name")?;
            let n = arrow_cast::cast(b.column(3), &arrow_schema::DataType::Int64).map_err(Error::from)?;
            let n = n
                .as_any()
                .downcast_ref::<arrow_array::Int64Array>()
                .cloned()
                .unwrap_or_else(|| arrow_array::Int64Array::from(Vec::<i64>::new()));
            for i in 0..b.num_rows() {
                if let (Some(c), Some(s), Some(t)) = (&c[i], &s[i], &t[i]) {
                    rows.push((c.clone(), s.clone(), t.clone(), n.value(i), true));
                }
            }
        }
        if !approximate && !rows.is_empty() {
            rows = self.exact_row_counts(&rows)?;
        }
        let batch = metadata::statistics_batch(&rows)?;
        Ok(batches_reader(batch.schema(), vec![batch]))
    }

    fn commit(&mut self) -> AdbcResult<()> {
        if self.inner.autocommit.load(Ordering::Acquire) {
            return Err(Error::InvalidState("commit: the connection is in autocommit mode".into()).into());
        }
        let inner = &self.inner;
        Ok(inner.run(inner.end_transaction(true))?)
    }

    fn rollback(&mut self) -> AdbcResult<()> {
        if self.inner.autocommit.load(Ordering::Acquire) {
            return Err(Error::InvalidState("rollback: the connection is in autocommit mode".into()).into());
        }
        let inner = &self.inner;
        Ok(inner.run(inner.end_transaction(false))?)
    }

    fn read_partition(&self, partition: impl AsRef<[u8]>) -> AdbcResult<Box<dyn RecordBatchReader + Send + 'static>> {
        let inner = &self.inner;
        let rpc = inner.rpc();
        let token = inner.cancel.start(&rpc);
        let config = inner.config();
        let ticket = Ticket::new(Bytes::copy_from_slice(partition.as_ref()));
        let r = ResultReader::from_tickets(rpc, vec![ticket], None, config.compression, config.prefetch, token)?;
        Ok(Box::new(r))
    }
}

fn strip_flight_metadata(schema: Schema) -> Schema {
    let fields: Vec<arrow_schema::Field> = schema
        .fields()
        .iter()
        .map(|f| {
            let md =
                f.metadata().iter().filter(|(k, _)| !k.starts_with("ARROW:FLIGHT:SQL:")).map(|(k, v)| (k.clone(), v.clone())).collect();
            f.as_ref().clone().with_metadata(md)
        })
        .collect();
    Schema::new_with_metadata(fields, schema.metadata().clone())
}

// ---------------------------------------------------------------------------

impl Rpc {
    async fn execute_update_sql(&self, query: String, transaction_id: Option<Bytes>) -> Result<i64> {
        let cmd = CommandStatementUpdate { query, transaction_id };
        let descriptor = FlightDescriptor::new_cmd(cmd.as_any().encode_to_vec());
        let first = arrow_flight::FlightData { flight_descriptor: Some(descriptor), ..Default::default() };
        let result = self.do_put(futures::stream::iter(vec![first]).boxed()).await?;
        update_count(result)
    }
}

fn update_count(result: Option<arrow_flight::PutResult>) -> Result<i64> {
    match result {
        Some(r) => Ok(DoPutUpdateResult::decode(r.app_metadata.as_ref())?.record_count),
        None => Ok(-1),
    }
}

#[derive(Default, Clone)]
struct Ingest {
    table: Option<String>,
    catalog: Option<String>,
    schema: Option<String>,
    temporary: bool,
    mode: Option<IngestMode>,
}

enum Bound {
    Batch(RecordBatch),
    Stream(Box<dyn RecordBatchReader + Send>),
}

struct Prepared {
    handle: Bytes,
    dataset_schema: Schema,
    parameter_schema: Schema,
}

/// A statement: a query (optionally prepared, with bound parameters) or a bulk ingest.
pub struct PondStatement {
    conn: Arc<ConnInner>,
    sql: Option<String>,
    prepared: Option<Prepared>,
    /// `prepare()` was called; the server prepares when it must (parameters,
    /// parameter schema, result schema), so a DB-API `execute` costs no extra round trip.
    want_prepare: bool,
    bound: Option<Bound>,
    ingest: Ingest,
    prefetch: usize,
    compression: Compression,
}

impl Drop for PondStatement {
    fn drop(&mut self) {
        self.close_prepared();
    }
}

struct StmtCancel(Arc<ConnInner>);

impl CancelHandle for StmtCancel {
    fn try_cancel(&self) -> AdbcResult<()> {
        Ok(self.0.cancel.cancel()?)
    }
}

impl PondStatement {
    fn close_prepared(&mut self) {
        if let Some(p) = self.prepared.take() {
            let rpc = self.conn.rpc();
            let req = ActionClosePreparedStatementRequest { prepared_statement_handle: p.handle };
            // Waited for: a close arriving after the connection's CloseSession
            // would make the server open a new session for it.
            finish_action(rpc, "ClosePreparedStatement", req.as_any().encode_to_vec());
        }
    }

    fn query(&self) -> Result<String> {
        self.sql.clone().ok_or_else(|| Error::InvalidState("no query: call set_sql_query first".into()))
    }

    /// Prepares on the server (once per query text).
    fn ensure_prepared(&mut self) -> Result<&Prepared> {
        if self.prepared.is_none() {
            let query = self.query()?;
            let conn = self.conn.clone();
            let res: ActionCreatePreparedStatementResult = conn.run(async {
                let txn = conn.transaction().await?;
                let req = ActionCreatePreparedStatementRequest { query, transaction_id: txn };
                conn.rpc()
                    .sql_action("CreatePreparedStatement", req)
                    .await?
                    .ok_or_else(|| Error::Internal("CreatePreparedStatement returned nothing".into()))
            })?;
            let decode = |b: &Bytes| -> Result<Schema> {
                if b.is_empty() {
                    Ok(Schema::empty())
                } else {
                    Ok(arrow_ipc::convert::try_schema_from_ipc_buffer(b)?)
                }
            };
            self.prepared = Some(Prepared {
                handle: res.prepared_statement_handle.clone(),
                dataset_schema: decode(&res.dataset_schema)?,
                parameter_schema: decode(&res.parameter_schema)?,
            });
        }
        self.prepared.as_ref().ok_or_else(|| Error::Internal("prepared statement missing".into()))
    }

    /// Sends bound parameters (all of them) for a prepared query.
    fn send_query_params(&mut self) -> Result<()> {
        let Some(bound) = self.bound.take() else { return Ok(()) };
        let handle = self.ensure_prepared()?.handle.clone();
        let cmd = CommandPreparedStatementQuery { prepared_statement_handle: handle };
        let descriptor = FlightDescriptor::new_cmd(cmd.as_any().encode_to_vec());
        let res = put_batches(&self.conn, descriptor, bound)?;
        if let Some(r) = res {
            if let Ok(d) = arrow_flight::sql::DoPutPreparedStatementResult::decode(r.app_metadata.as_ref()) {
                if let (Some(h), Some(p)) = (d.prepared_statement_handle, self.prepared.as_mut()) {
                    p.handle = h;
                }
            }
        }
        Ok(())
    }

    fn flight_info(&mut self) -> Result<FlightInfo> {
        let conn = self.conn.clone();
        if self.bound.is_some() {
            self.send_query_params()?;
        }
        if let Some(p) = &self.prepared {
            let cmd = CommandPreparedStatementQuery { prepared_statement_handle: p.handle.clone() };
            return conn.run(async { conn.rpc().flight_info(cmd).await });
        }
        let query = self.query()?;
        conn.run(async {
            let txn = conn.transaction().await?;
            conn.rpc().flight_info(CommandStatementQuery { query, transaction_id: txn }).await
        })
    }

    fn ingest(&mut self) -> Result<i64> {
        let table = self.ingest.table.clone().ok_or_else(|| Error::InvalidState("bulk ingest needs adbc.ingest.target_table".into()))?;
        let bound = self.bound.take().ok_or_else(|| Error::InvalidState("bulk ingest needs data: bind a batch or a stream".into()))?;
        use arrow_flight::sql::{TableExistsOption, TableNotExistOption};
        let (not_exist, exists) = match self.ingest.mode.unwrap_or(IngestMode::Create) {
            IngestMode::Create => (TableNotExistOption::Create, TableExistsOption::Fail),
            IngestMode::Append => (TableNotExistOption::Fail, TableExistsOption::Append),
            IngestMode::Replace => (TableNotExistOption::Create, TableExistsOption::Replace),
            IngestMode::CreateAppend => (TableNotExistOption::Create, TableExistsOption::Append),
        };
        let conn = self.conn.clone();
        let txn = conn.run(conn.transaction())?;
        let cmd = CommandStatementIngest {
            table_definition_options: Some(arrow_flight::sql::TableDefinitionOptions {
                if_not_exist: not_exist.into(),
                if_exists: exists.into(),
            }),
            table,
            schema: self.ingest.schema.clone(),
            catalog: self.ingest.catalog.clone(),
            temporary: self.ingest.temporary,
            transaction_id: txn,
            options: Default::default(),
        };
        let descriptor = FlightDescriptor::new_cmd(cmd.as_any().encode_to_vec());
        update_count(put_batches(&self.conn, descriptor, bound)?)
    }
}

/// DoPut of bound data. Batches flow from the caller's thread into the
/// request stream through a small channel, so a stream of any size is sent
/// without being held in memory. A failing source aborts the upload (the
/// server rolls the load back).
fn put_batches(conn: &Arc<ConnInner>, descriptor: FlightDescriptor, bound: Bound) -> Result<Option<arrow_flight::PutResult>> {
    let rpc = conn.rpc();
    let token = conn.cancel.start(&rpc);
    let (schema, mut source): (SchemaRef, Box<dyn Iterator<Item = std::result::Result<RecordBatch, arrow_schema::ArrowError>> + Send>) =
        match bound {
            Bound::Batch(b) => (b.schema(), Box::new(std::iter::once(Ok(b)))),
            Bound::Stream(r) => (r.schema(), Box::new(r)),
        };
    let (tx, rx) = tokio::sync::mpsc::channel::<RecordBatch>(2);
    let encode_failed = Arc::new(AtomicBool::new(false));
    let failed = encode_failed.clone();
    let batches = tokio_stream_from(rx).map(Ok);
    let data =
        FlightDataEncoderBuilder::new().with_flight_descriptor(Some(descriptor)).with_schema(schema).build(batches).filter_map(move |r| {
            let out = match r {
                Ok(d) => Some(d),
                Err(_) => {
                    failed.store(true, Ordering::Relaxed);
                    None
                }
            };
            futures::future::ready(out)
        });
    let put = RUNTIME.spawn({
        let token = token.clone();
        let data: futures::stream::BoxStream<'static, arrow_flight::FlightData> = data.boxed();
        async move { cancellable(&token, rpc.do_put(data)).await }
    });
    let mut source_error = None;
    for item in source.by_ref() {
        match item {
            Ok(b) => {
                if tx.blocking_send(b).is_err() {
                    break; // the call ended early (its error is reported below)
                }
            }
            Err(e) => {
                source_error = Some(e);
                break;
            }
        }
    }
    drop(tx);
    if let Some(e) = source_error {
        put.abort();
        conn.cancel.finish();
        return Err(Error::InvalidArgument(format!("reading the bound data failed: {e}")));
    }
    let result = block_on(put).map_err(|e| Error::Internal(e.to_string()))?;
    conn.cancel.finish();
    if encode_failed.load(Ordering::Relaxed) {
        return Err(Error::Internal("the bound data could not be encoded as Arrow IPC".into()));
    }
    result
}

fn tokio_stream_from<T: Send + 'static>(mut rx: tokio::sync::mpsc::Receiver<T>) -> impl futures::Stream<Item = T> + Send {
    futures::stream::poll_fn(move |cx| rx.poll_recv(cx))
}

impl Optionable for PondStatement {
    type Option = OptionStatement;

    fn set_option(&mut self, key: OptionStatement, value: OptionValue) -> AdbcResult<()> {
        let name = key.as_ref().to_string();
        match key {
            OptionStatement::IngestMode => {
                let v = option_string(&name, value)?;
                self.ingest.mode = Some(v.parse().map_err(|_| invalid(format!("unknown ingest mode '{v}'")))?);
            }
            OptionStatement::TargetTable => {
                self.ingest.table = Some(option_string(&name, value)?);
                self.sql = None;
                self.close_prepared();
            }
            OptionStatement::TargetCatalog => self.ingest.catalog = Some(option_string(&name, value)?).filter(|s| !s.is_empty()),
            OptionStatement::TargetDbSchema => self.ingest.schema = Some(option_string(&name, value)?).filter(|s| !s.is_empty()),
            OptionStatement::Temporary => self.ingest.temporary = client::parse_bool(&name, &option_string(&name, value)?)?,
            OptionStatement::Incremental => {
                if client::parse_bool(&name, &option_string(&name, value)?)? {
                    return Err(Error::NotImplemented("incremental execution is not supported".into()).into());
                }
            }
            OptionStatement::Other(ref k) if k == client::OPT_COMPRESSION => {
                self.compression = option_string(&name, value)?.parse()?;
            }
            OptionStatement::Other(ref k)
                if k == client::OPT_PREFETCH || k == client::OPT_QUEUE_SIZE || k == "adbc.rpc.result_queue_size" =>
            {
                let v = option_string(&name, value)?;
                self.prefetch = v.parse().ok().filter(|n| *n > 0).ok_or_else(|| invalid(format!("{name}: expected a positive integer")))?;
            }
            _ => return Err(Error::NotImplemented(format!("unknown statement option '{name}'")).into()),
        }
        Ok(())
    }

    fn get_option_string(&self, key: OptionStatement) -> AdbcResult<String> {
        match key {
            OptionStatement::TargetTable => self.ingest.table.clone().ok_or_else(|| not_found(key.as_ref())),
            OptionStatement::Other(ref k) if k == client::OPT_COMPRESSION => Ok(self.compression.header().unwrap_or("none").into()),
            OptionStatement::Other(ref k) if k == client::OPT_PREFETCH || k == client::OPT_QUEUE_SIZE => Ok(self.prefetch.to_string()),
            _ => Err(not_found(key.as_ref())),
        }
    }
    fn get_option_bytes(&self, key: OptionStatement) -> AdbcResult<Vec<u8>> {
        self.get_option_string(key).map(String::into_bytes)
    }
    fn get_option_int(&self, key: OptionStatement) -> AdbcResult<i64> {
        match key {
            OptionStatement::Other(ref k) if k == client::OPT_PREFETCH || k == client::OPT_QUEUE_SIZE => Ok(self.prefetch as i64),
            _ => Err(not_found(key.as_ref())),
        }
    }
    fn get_option_double(&self, key: OptionStatement) -> AdbcResult<f64> {
        Err(not_found(key.as_ref()))
    }
}

impl Statement for PondStatement {
    fn bind(&mut self, batch: RecordBatch) -> AdbcResult<()> {
        self.bound = Some(Bound::Batch(batch));
        Ok(())
    }

    fn bind_stream(&mut self, reader: Box<dyn RecordBatchReader + Send>) -> AdbcResult<()> {
        self.bound = Some(Bound::Stream(reader));
        Ok(())
    }

    fn execute(&mut self) -> AdbcResult<Box<dyn RecordBatchReader + Send + 'static>> {
        if self.ingest.table.is_some() && self.sql.is_none() {
            self.ingest()?;
            let schema = Arc::new(Schema::empty());
            return Ok(batches_reader(schema, Vec::new()));
        }
        let info = self.flight_info()?;
        let reader = self.conn.stream(info, self.prefetch, self.compression)?;
        Ok(Box::new(reader))
    }

    fn execute_update(&mut self) -> AdbcResult<Option<i64>> {
        if self.ingest.table.is_some() && self.sql.is_none() {
            return Ok(Some(self.ingest()?));
        }
        let conn = self.conn.clone();
        let n = match self.bound.take() {
            Some(bound) => {
                // One DoPut per batch of parameter rows: the server runs the
                // statement once per row and nothing is held in memory.
                let handle = self.ensure_prepared()?.handle.clone();
                let mut total = 0i64;
                let mut run_batch = |b: RecordBatch| -> Result<()> {
                    let cmd = CommandPreparedStatementUpdate { prepared_statement_handle: handle.clone() };
                    let descriptor = FlightDescriptor::new_cmd(cmd.as_any().encode_to_vec());
                    let n = update_count(put_batches(&conn, descriptor, Bound::Batch(b))?)?;
                    total += n.max(0);
                    Ok(())
                };
                match bound {
                    Bound::Batch(b) => run_batch(b)?,
                    Bound::Stream(r) => {
                        for b in r {
                            run_batch(b.map_err(|e| Error::InvalidArgument(format!("reading the bound data failed: {e}")))?)?;
                        }
                    }
                }
                total
            }
            None => {
                if let Some(p) = &self.prepared {
                    let cmd = CommandPreparedStatementUpdate { prepared_statement_handle: p.handle.clone() };
                    let descriptor = FlightDescriptor::new_cmd(cmd.as_any().encode_to_vec());
                    let first = arrow_flight::FlightData { flight_descriptor: Some(descriptor), ..Default::default() };
                    conn.run(async { update_count(conn.rpc().do_put(futures::stream::iter(vec![first]).boxed()).await?) })?
                } else {
                    let query = self.query()?;
                    conn.run(async {
                        let txn = conn.transaction().await?;
                        conn.rpc().execute_update_sql(query, txn).await
                    })?
                }
            }
        };
        Ok(if n < 0 { None } else { Some(n) })
    }

    fn execute_schema(&mut self) -> AdbcResult<Schema> {
        let prepared = self.ensure_prepared()?;
        if !prepared.dataset_schema.fields().is_empty() || !prepared.parameter_schema.fields().is_empty() {
            return Ok(prepared.dataset_schema.clone());
        }
        // Pond could not describe the statement when it was prepared (one of
        // its own statements, several statements, …): a query's columns come
        // from running it with no rows. Statements that are not queries have no columns.
        let query = self.query()?;
        let trimmed = query.trim().trim_end_matches(';');
        let first = trimmed.split_whitespace().next().unwrap_or("").to_ascii_uppercase();
        if !matches!(first.as_str(), "SELECT" | "WITH" | "FROM" | "VALUES" | "TABLE" | "(") {
            return Ok(Schema::empty());
        }
        let conn = self.conn.clone();
        let sql = format!("SELECT * FROM ({trimmed}) AS pond_schema_probe LIMIT 0");
        let (schema, _) = conn.run(async {
            let txn = conn.transaction().await?;
            let info = conn.rpc().flight_info(CommandStatementQuery { query: sql, transaction_id: txn }).await?;
            conn.collect(info).await
        })?;
        Ok(schema.map(|s| s.as_ref().clone()).unwrap_or_else(Schema::empty))
    }

    fn execute_partitions(&mut self) -> AdbcResult<PartitionedResult> {
        let info = self.flight_info()?;
        let schema = info.clone().try_decode_schema().map_err(Error::from)?;
        let partitions = info.endpoint.iter().filter_map(|e| e.ticket.as_ref().map(|t| t.ticket.to_vec())).collect();
        Ok(PartitionedResult { partitions, schema, rows_affected: info.total_records })
    }

    fn get_parameter_schema(&self) -> AdbcResult<Schema> {
        if let Some(p) = &self.prepared {
            return Ok(p.parameter_schema.clone());
        }
        // Statements are prepared on the server lazily; ask it now without
        // keeping the handle (`&self` cannot store it).
        let query = self.query()?;
        let conn = self.conn.clone();
        let res: ActionCreatePreparedStatementResult = conn.run(async {
            let txn = conn.transaction().await?;
            let rpc = conn.rpc();
            let req = ActionCreatePreparedStatementRequest { query, transaction_id: txn };
            let res: ActionCreatePreparedStatementResult = rpc
                .sql_action("CreatePreparedStatement", req)
                .await?
                .ok_or_else(|| Error::Internal("CreatePreparedStatement returned nothing".into()))?;
            let close = ActionClosePreparedStatementRequest { prepared_statement_handle: res.prepared_statement_handle.clone() };
            rpc.action("ClosePreparedStatement", close.as_any().encode_to_vec()).await?;
            Ok(res)
        })?;
        if res.parameter_schema.is_empty() {
            return Ok(Schema::empty());
        }
        Ok(arrow_ipc::convert::try_schema_from_ipc_buffer(&res.parameter_schema).map_err(Error::from)?)
    }

    fn prepare(&mut self) -> AdbcResult<()> {
        self.query()?;
        self.want_prepare = true;
        Ok(())
    }

    fn set_sql_query(&mut self, query: impl AsRef<str>) -> AdbcResult<()> {
        let query = query.as_ref().to_string();
        if self.sql.as_deref() != Some(query.as_str()) {
            self.close_prepared();
            self.want_prepare = false;
        }
        self.sql = Some(query);
        self.ingest.table = None;
        Ok(())
    }

    fn set_substrait_plan(&mut self, _plan: impl AsRef<[u8]>) -> AdbcResult<()> {
        Err(Error::NotImplemented("Substrait plans are not supported by Pond (send SQL)".into()).into())
    }

    fn get_cancel_handle(&self) -> Box<dyn CancelHandle> {
        Box::new(StmtCancel(self.conn.clone()))
    }
}
