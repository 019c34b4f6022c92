//! The `FlightSqlService` implementation: every Flight SQL call Pond answers.

use std::pin::Pin;
use std::sync::Arc;

use arrow_array::RecordBatch;
use arrow_flight::encode::FlightDataEncoderBuilder;
use arrow_flight::error::FlightError;
use arrow_flight::sql::metadata::{SqlInfoData, XdbcTypeInfoData};
use arrow_flight::sql::server::{FlightSqlService, PeekableFlightDataStream};
use arrow_flight::sql::{
    ActionBeginTransactionRequest, ActionBeginTransactionResult, ActionCancelQueryRequest, ActionCancelQueryResult,
    ActionClosePreparedStatementRequest, ActionCreatePreparedStatementRequest, ActionCreatePreparedStatementResult,
    ActionEndTransactionRequest, CommandGetCatalogs, CommandGetCrossReference, CommandGetDbSchemas, CommandGetExportedKeys,
    CommandGetImportedKeys, CommandGetPrimaryKeys, CommandGetSqlInfo, CommandGetTableTypes, CommandGetTables, CommandGetXdbcTypeInfo,
    CommandPreparedStatementQuery, CommandPreparedStatementUpdate, CommandStatementIngest, CommandStatementQuery, CommandStatementUpdate,
    DoPutPreparedStatementResult, ProstMessageExt, SqlInfo, TableExistsOption, TableNotExistOption, TicketStatementQuery,
};
use arrow_flight::{
    Action, CancelFlightInfoRequest, CancelFlightInfoResult, CancelStatus, FlightDescriptor, FlightEndpoint, FlightInfo, HandshakeRequest,
    HandshakeResponse, IpcMessage, SchemaAsIpc, Ticket,
};
use arrow_ipc::writer::IpcWriteOptions;
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use futures::{Stream, StreamExt, TryStreamExt};
use pond_auth::{Authenticator, Identity};
use pond_engine::introspect::{TableFilter, TABLE_TYPES};
use pond_engine::params::rows_from_batch;
use pond_engine::{Engine, IngestMessage, IngestMode, IngestRequest, Session};
use prost::Message;
use tonic::metadata::MetadataMap;
use tonic::{Request, Response, Status, Streaming};

use crate::metadata;
use crate::options::{
    error_value, string_value, CloseSessionResult, GetSessionOptionsResult, OptionValue, SetSessionOptionsError, SetSessionOptionsRequest,
    SetSessionOptionsResult, CLOSE_STATUS_CLOSED,
};
use crate::sessions::{ParkedResult, Sessions};
use crate::status::{arrow_status, auth_status, to_status};
use crate::{Compression, FlightOptions};

type BoxStream<T> = Pin<Box<dyn Stream<Item = Result<T, Status>> + Send + 'static>>;

/// Largest Arrow IPC message Pond sends; results are coalesced to about 1.5 MiB.
const MAX_FLIGHT_DATA: usize = 2 * 1024 * 1024;

pub struct PondFlightService {
    engine: Engine,
    auth: Arc<Authenticator>,
    sessions: Arc<Sessions>,
    options: FlightOptions,
    sql_info: Arc<SqlInfoData>,
    xdbc: Arc<XdbcTypeInfoData>,
}

impl PondFlightService {
    pub fn new(engine: Engine, auth: Arc<Authenticator>, options: FlightOptions) -> Self {
        let sql_info = Arc::new(metadata::sql_info(env!("CARGO_PKG_VERSION"), &engine.duckdb_version()));
        let sessions = Arc::new(Sessions::new(engine.clone(), options.unfetched_result_ttl));
        // Results parked by GetFlightInfo and never fetched hold a session's
        // connection; drop them once they expire.
        let weak = Arc::downgrade(&sessions);
        let every = (options.unfetched_result_ttl / 4).max(std::time::Duration::from_millis(100));
        tokio::spawn(async move {
            loop {
                tokio::time::sleep(every).await;
                match weak.upgrade() {
                    Some(s) => s.sweep(),
                    None => break,
                }
            }
        });
        Self { engine, auth, sessions, options, sql_info, xdbc: Arc::new(metadata::xdbc_type_info()) }
    }

    /// The bearer token and identity of a call.
    fn authenticate(&self, md: &MetadataMap) -> Result<(String, Identity), Status> {
        let header = md
            .get("authorization")
            .ok_or_else(|| {
                Status::unauthenticated("no credentials: call Handshake with Basic credentials, then send 'authorization: Bearer <token>'")
            })?
            .to_str()
            .map_err(|_| Status::unauthenticated("authorization header is not ASCII"))?;
        let token = header
            .strip_prefix("Bearer ")
            .or_else(|| header.strip_prefix("bearer "))
            .ok_or_else(|| Status::unauthenticated("expected 'authorization: Bearer <token>' (from Handshake, an API token or a JWT)"))?
            .trim();
        // Session tokens from Handshake, API tokens, OAuth2 access tokens and JWTs all work here.
        let identity = self.auth.verify_bearer(token).map_err(|e| {
            self.auth.audit().record(pond_auth::AuditEvent::new("auth_failed", false, e.to_string()).protocol("flight"));
            auth_status(e)
        })?;
        Ok((token.to_string(), identity))
    }

    /// The session of a call; honours a `database` header selecting the database.
    async fn session(&self, md: &MetadataMap) -> Result<Arc<Session>, Status> {
        let (token, identity) = self.authenticate(md)?;
        let session = self.sessions.session_for(&session_key(&token, md), &identity).await.map_err(to_status)?;
        // The header selects the database for this call only; the session's
        // own database (USE, SetSessionOptions) applies again without it.
        let call_db = match md.get("database").and_then(|v| v.to_str().ok()) {
            Some(db) => Some(self.engine.resolve_database(db).map_err(to_status)?),
            None => None,
        };
        session.set_call_database(call_db).map_err(to_status)?;
        // `pond-cache: off` (or `bypass`): this call does not use the query result cache.
        let skip_cache = md.get("pond-cache").and_then(|v| v.to_str().ok()).is_some_and(|v| matches!(v, "off" | "bypass" | "no-cache"));
        session.set_call_cache(!skip_cache);
        Ok(session)
    }

    fn compression(&self, md: &MetadataMap) -> Result<Compression, Status> {
        match md.get("pond-compression").and_then(|v| v.to_str().ok()) {
            Some(v) => v.parse().map_err(Status::invalid_argument),
            None => Ok(self.options.compression),
        }
    }

    fn check_txn(session: &Session, id: &Option<bytes::Bytes>) -> Result<(), Status> {
        match id {
            Some(id) if !id.is_empty() => session.check_transaction(id).map_err(to_status),
            _ => Ok(()),
        }
    }

    /// Parks a result and describes it: one endpoint, no location (clients reuse
    /// the channel), ticket = `TicketStatementQuery` in a protobuf `Any`.
    fn flight_info(
        &self,
        session: &Session,
        schema: &SchemaRef,
        result: ParkedResult,
        descriptor: FlightDescriptor,
    ) -> Result<Response<FlightInfo>, Status> {
        // The IPC encoder writes union fields as non-nullable (unions carry no
        // validity); announce exactly what the stream will say.
        let schema = &union_fields_not_null(schema);
        let handle = self.sessions.park(&session.id, result);
        let ticket = TicketStatementQuery { statement_handle: handle.into() };
        let endpoint = FlightEndpoint::new().with_ticket(Ticket::new(ticket.as_any().encode_to_vec()));
        let info = FlightInfo::new()
            .try_with_schema(schema)
            .map_err(|e| Status::internal(e.to_string()))?
            .with_endpoint(endpoint)
            .with_descriptor(descriptor)
            .with_ordered(true);
        Ok(Response::new(info))
    }

    fn batches_info(&self, session: &Session, batch: RecordBatch, descriptor: FlightDescriptor) -> Result<Response<FlightInfo>, Status> {
        let schema = batch.schema();
        self.flight_info(session, &schema, ParkedResult::Batches(schema.clone(), vec![batch]), descriptor)
    }

    fn encode(
        &self,
        schema: SchemaRef,
        batches: BoxStream<RecordBatch>,
        compression: Compression,
        protocol: &'static str,
    ) -> Result<Response<BoxStream<arrow_flight::FlightData>>, Status> {
        let ipc = match compression {
            Compression::None => IpcWriteOptions::default(),
            Compression::Lz4 => IpcWriteOptions::default()
                .try_with_compression(Some(arrow_ipc::CompressionType::LZ4_FRAME))
                .map_err(|e| Status::internal(e.to_string()))?,
            Compression::Zstd => IpcWriteOptions::default()
                .try_with_compression(Some(arrow_ipc::CompressionType::ZSTD))
                .map_err(|e| Status::internal(e.to_string()))?,
        };
        let metrics = self.engine.metrics().clone();
        let input = batches.map_err(|s| FlightError::Tonic(Box::new(s)));
        let stream = FlightDataEncoderBuilder::new()
            .with_schema(schema)
            .with_options(ipc)
            .with_max_flight_data_size(MAX_FLIGHT_DATA)
            // Keep dictionaries (DuckDB ENUMs) as dictionaries: the schema in
            // FlightInfo and the stream must agree, and in-process DuckDB gives
            // dictionaries too.
            .with_dictionary_handling(arrow_flight::encode::DictionaryHandling::Resend)
            .build(input)
            .map(move |r| match r {
                Ok(d) => {
                    metrics.sent(protocol, (d.data_body.len() + d.data_header.len()) as u64, 0);
                    Ok(d)
                }
                Err(e) => Err(flight_error_status(e)),
            });
        Ok(Response::new(Box::pin(stream)))
    }

    fn stream_parked(
        &self,
        result: ParkedResult,
        compression: Compression,
    ) -> Result<Response<BoxStream<arrow_flight::FlightData>>, Status> {
        match result {
            ParkedResult::Stream(s) => {
                let schema = s.schema();
                let metrics = self.engine.metrics().clone();
                let batches = s.map(move |r| match r {
                    Ok(b) => {
                        metrics.sent("flight", 0, b.num_rows() as u64);
                        Ok(b)
                    }
                    Err(e) => {
                        metrics.error("flight");
                        Err(to_status(e))
                    }
                });
                self.encode(schema, Box::pin(batches), compression, "flight")
            }
            ParkedResult::Batches(schema, batches) => {
                let s = futures::stream::iter(batches.into_iter().map(Ok));
                self.encode(schema, Box::pin(s), compression, "flight")
            }
        }
    }

    async fn query_info(
        &self,
        session: Arc<Session>,
        stream: pond_engine::Result<pond_engine::QueryStream>,
        descriptor: FlightDescriptor,
    ) -> Result<Response<FlightInfo>, Status> {
        let stream = stream.map_err(to_status)?;
        let schema = stream.schema();
        self.flight_info(&session, &schema, ParkedResult::Stream(stream), descriptor)
    }

    /// Reads a DoPut body into record batches.
    async fn read_batches(request: Request<PeekableFlightDataStream>) -> Result<(Option<SchemaRef>, Vec<RecordBatch>), Status> {
        let stream = data_messages(request.into_inner());
        let mut decoded = arrow_flight::decode::FlightRecordBatchStream::new_from_flight_data(stream);
        let mut batches = Vec::new();
        while let Some(b) = decoded.next().await {
            batches.push(b.map_err(flight_error_status)?);
        }
        Ok((decoded.schema().cloned(), batches))
    }

    fn cancel_handle(&self, session: &Session, info: &FlightInfo) {
        for ep in &info.endpoint {
            if let Some(t) = &ep.ticket {
                if let Ok(any) = prost_types::Any::decode(t.ticket.as_ref()) {
                    if let Ok(tq) = TicketStatementQuery::decode(any.value.as_slice()) {
                        drop(self.sessions.take(&tq.statement_handle, &session.id));
                    }
                }
            }
        }
        session.cancel();
    }
}

/// The Arrow IPC messages of a DoPut body. The first message may carry only
/// the command descriptor (no IPC header), which is not Arrow data.
fn data_messages(stream: PeekableFlightDataStream) -> impl Stream<Item = Result<arrow_flight::FlightData, FlightError>> + Send {
    stream.map_err(FlightError::from).try_filter(|fd| futures::future::ready(!fd.data_header.is_empty()))
}

fn flight_error_status(e: FlightError) -> Status {
    match e {
        FlightError::Tonic(s) => *s,
        other => Status::internal(other.to_string()),
    }
}

/// What a call's session is keyed by: its bearer token, plus the client's
/// `x-pond-session` header when it sends one. Clients that share one token
/// across connections (Pond's ADBC driver) name a session per connection, so
/// transactions, the current database and prepared statements stay apart.
fn session_key(token: &str, md: &MetadataMap) -> String {
    match md.get("x-pond-session").and_then(|v| v.to_str().ok()) {
        Some(id) if !id.is_empty() => format!("{token}\u{0}{id}"),
        _ => token.to_string(),
    }
}

fn basic_from_metadata(md: &MetadataMap) -> Option<Result<(String, String), Status>> {
    let v = md.get("authorization")?.to_str().ok()?;
    let payload = v.strip_prefix("Basic ").or_else(|| v.strip_prefix("basic "))?;
    Some(pond_auth::decode_basic(payload.trim()).map_err(|e| Status::unauthenticated(e.to_string())))
}

/// Flight's `BasicAuth` message (Flight.proto), sent by some clients as the
/// handshake payload instead of a header.
#[derive(Clone, PartialEq, prost::Message)]
struct BasicAuth {
    #[prost(string, tag = "2")]
    username: String,
    #[prost(string, tag = "3")]
    password: String,
}

#[tonic::async_trait]
impl FlightSqlService for PondFlightService {
    type FlightService = PondFlightService;

    async fn do_handshake(&self, request: Request<Streaming<HandshakeRequest>>) -> Result<Response<BoxStream<HandshakeResponse>>, Status> {
        let request_source = request.remote_addr().map(|a| a.ip().to_string());
        let creds = match basic_from_metadata(request.metadata()) {
            Some(c) => c?,
            None => {
                let mut stream = request.into_inner();
                let first = stream.message().await?.ok_or_else(|| {
                    Status::unauthenticated("Handshake needs Basic credentials (authorization header or BasicAuth payload)")
                })?;
                let basic = BasicAuth::decode(first.payload.as_ref()).map_err(|_| {
                    Status::unauthenticated("Handshake needs Basic credentials (authorization header or BasicAuth payload)")
                })?;
                (basic.username, basic.password)
            }
        };
        let auth = self.auth.clone();
        let source = request_source.clone();
        let identity = tokio::task::spawn_blocking(move || {
            auth.authenticate(&pond_auth::Credentials::Password { user: creds.0, password: creds.1 }, source.as_deref(), "flight")
        })
        .await
        .map_err(|e| Status::internal(e.to_string()))?
        .map_err(|e| {
            tracing::info!(error = %e, "flight handshake rejected");
            auth_status(e)
        })?;
        let token = self.auth.issue_token(&identity);
        self.auth.record_login(&identity, request_source.as_deref(), "flight");
        let identity = self.auth.verify_token(&token).map_err(auth_status)?;
        self.sessions.session_for(&token, &identity).await.map_err(to_status)?;
        tracing::debug!(user = %identity.user, "flight handshake");
        let payload = HandshakeResponse { protocol_version: 0, payload: token.clone().into_bytes().into() };
        let mut resp = Response::new(Box::pin(futures::stream::iter(vec![Ok(payload)])) as BoxStream<HandshakeResponse>);
        let value = format!("Bearer {token}").parse().map_err(|_| Status::internal("token is not a valid header"))?;
        resp.metadata_mut().insert("authorization", value);
        Ok(resp)
    }

    // ----- statements ----------------------------------------------------------

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let session = self.session(request.metadata()).await?;
        Self::check_txn(&session, &query.transaction_id)?;
        let stream = session.query(&query.query, None).await;
        self.query_info(session, stream, request.into_inner()).await
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let session = self.session(request.metadata()).await?;
        let stream = session.query_prepared(&cmd.prepared_statement_handle).await;
        self.query_info(session, stream, request.into_inner()).await
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<BoxStream<arrow_flight::FlightData>>, Status> {
        let session = self.session(request.metadata()).await?;
        let compression = self.compression(request.metadata())?;
        let parked = self
            .sessions
            .take(&ticket.statement_handle, &session.id)
            .ok_or_else(|| Status::not_found("unknown ticket: it was already fetched, expired, or belongs to another session"))?;
        self.stream_parked(parked, compression)
    }

    async fn do_get_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<BoxStream<arrow_flight::FlightData>>, Status> {
        let session = self.session(request.metadata()).await?;
        let compression = self.compression(request.metadata())?;
        let stream = session.query_prepared(&cmd.prepared_statement_handle).await.map_err(to_status)?;
        self.stream_parked(ParkedResult::Stream(stream), compression)
    }

    async fn do_put_statement_update(
        &self,
        cmd: CommandStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let session = self.session(request.metadata()).await?;
        Self::check_txn(&session, &cmd.transaction_id)?;
        session.update(&cmd.query, None).await.map_err(to_status)
    }

    async fn do_put_statement_ingest(
        &self,
        cmd: CommandStatementIngest,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let session = self.session(request.metadata()).await?;
        Self::check_txn(&session, &cmd.transaction_id)?;
        let opts = cmd.table_definition_options.unwrap_or_default();
        let not_exist = TableNotExistOption::try_from(opts.if_not_exist).unwrap_or(TableNotExistOption::Unspecified);
        let exists = TableExistsOption::try_from(opts.if_exists).unwrap_or(TableExistsOption::Unspecified);
        let mode = match (not_exist, exists) {
            (_, TableExistsOption::Replace) => IngestMode::Replace,
            (TableNotExistOption::Fail, _) => IngestMode::Append,
            (TableNotExistOption::Create, TableExistsOption::Append) => IngestMode::CreateAppend,
            (TableNotExistOption::Create, _) => IngestMode::Create,
            (TableNotExistOption::Unspecified, TableExistsOption::Append) => IngestMode::Append,
            (TableNotExistOption::Unspecified, _) => IngestMode::Create,
        };
        let req = IngestRequest { table: cmd.table, catalog: cmd.catalog, schema: cmd.schema, temporary: cmd.temporary, mode };
        // Decode while DuckDB appends: batches flow through a small channel.
        let stream = data_messages(request.into_inner());
        let mut decoded = arrow_flight::decode::FlightRecordBatchStream::new_from_flight_data(stream);
        let first = decoded.next().await.transpose().map_err(flight_error_status)?;
        let schema = match (&first, decoded.schema()) {
            (Some(b), _) => b.schema(),
            (None, Some(s)) => s.clone(),
            (None, None) => return Err(Status::invalid_argument("bulk ingest needs at least a schema message")),
        };
        let (tx, rx) = tokio::sync::mpsc::channel(4);
        let ingest = {
            let session = session.clone();
            tokio::spawn(async move { session.ingest(req, schema, rx).await })
        };
        // Only a stream read to its end sends `Finish`: a client error midway
        // drops the sender and the load rolls back.
        let feed = async move {
            if let Some(b) = first {
                if tx.send(IngestMessage::Batch(b)).await.is_err() {
                    return Ok(());
                }
            }
            while let Some(b) = decoded.next().await {
                let b = b.map_err(flight_error_status)?;
                if tx.send(IngestMessage::Batch(b)).await.is_err() {
                    return Ok(());
                }
            }
            let _ = tx.send(IngestMessage::Finish).await;
            Ok::<_, Status>(())
        };
        // The client's own error explains a rollback better than the engine's.
        let fed = feed.await;
        let loaded = ingest.await.map_err(|e| Status::internal(e.to_string()))?;
        fed?;
        let rows = loaded.map_err(to_status)?;
        Ok(rows)
    }

    // ----- prepared statements -------------------------------------------------

    async fn do_action_create_prepared_statement(
        &self,
        req: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let session = self.session(request.metadata()).await?;
        Self::check_txn(&session, &req.transaction_id)?;
        let info = session.prepare(&req.query).await.map_err(to_status)?;
        // Parameters are named `$1`, `$2`, … and typed as DuckDB infers them
        // (Null where it cannot tell before a value is bound).
        let params = Schema::new(
            info.parameter_types.iter().enumerate().map(|(i, t)| Field::new(format!("${}", i + 1), t.clone(), true)).collect::<Vec<_>>(),
        );
        let parameter_schema = if info.param_count > 0 { ipc_schema(&params)? } else { bytes::Bytes::new() };
        // When DuckDB cannot tell the result schema before running, send an
        // empty schema (valid IPC, zero fields): some clients fail on empty bytes.
        let dataset_schema = match &info.dataset_schema {
            Some(s) => ipc_schema(s)?,
            None => ipc_schema(&Schema::empty())?,
        };
        Ok(ActionCreatePreparedStatementResult { prepared_statement_handle: info.handle.into(), dataset_schema, parameter_schema })
    }

    async fn do_action_close_prepared_statement(
        &self,
        req: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        let session = self.session(request.metadata()).await?;
        session.close_prepared(&req.prepared_statement_handle);
        Ok(())
    }

    async fn do_put_prepared_statement_query(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let session = self.session(request.metadata()).await?;
        let (_schema, batches) = Self::read_batches(request).await?;
        let mut rows = Vec::new();
        for b in &batches {
            rows.extend(rows_from_batch(b).map_err(to_status)?);
        }
        session.bind(&cmd.prepared_statement_handle, rows).map_err(to_status)?;
        Ok(DoPutPreparedStatementResult { prepared_statement_handle: Some(cmd.prepared_statement_handle) })
    }

    async fn do_put_prepared_statement_update(
        &self,
        cmd: CommandPreparedStatementUpdate,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<i64, Status> {
        let session = self.session(request.metadata()).await?;
        let (_schema, batches) = Self::read_batches(request).await?;
        let mut rows = Vec::new();
        for b in &batches {
            rows.extend(rows_from_batch(b).map_err(to_status)?);
        }
        if !rows.is_empty() {
            session.bind(&cmd.prepared_statement_handle, rows).map_err(to_status)?;
        }
        session.update_prepared(&cmd.prepared_statement_handle).await.map_err(to_status)
    }

    // ----- transactions --------------------------------------------------------

    async fn do_action_begin_transaction(
        &self,
        _req: ActionBeginTransactionRequest,
        request: Request<Action>,
    ) -> Result<ActionBeginTransactionResult, Status> {
        let session = self.session(request.metadata()).await?;
        let id = session.begin().await.map_err(to_status)?;
        Ok(ActionBeginTransactionResult { transaction_id: id.into() })
    }

    async fn do_action_end_transaction(&self, req: ActionEndTransactionRequest, request: Request<Action>) -> Result<(), Status> {
        let session = self.session(request.metadata()).await?;
        session.check_transaction(&req.transaction_id).map_err(to_status)?;
        match req.action {
            1 => session.commit().await.map_err(to_status),
            2 => session.rollback().await.map_err(to_status),
            other => Err(Status::invalid_argument(format!("unknown EndTransaction action {other} (1 commit, 2 rollback)"))),
        }
    }

    async fn do_action_cancel_query(
        &self,
        req: ActionCancelQueryRequest,
        request: Request<Action>,
    ) -> Result<ActionCancelQueryResult, Status> {
        let session = self.session(request.metadata()).await?;
        let info = FlightInfo::decode(req.info.as_ref()).map_err(|e| Status::invalid_argument(e.to_string()))?;
        self.cancel_handle(&session, &info);
        Ok(ActionCancelQueryResult { result: 1 })
    }

    /// Session options, CloseSession and CancelFlightInfo, which arrow-flight
    /// does not route to dedicated methods.
    async fn do_action_fallback(&self, request: Request<Action>) -> Result<Response<BoxStream<arrow_flight::Result>>, Status> {
        let (token, _) = self.authenticate(request.metadata())?;
        let key = session_key(&token, request.metadata());
        let session = self.session(request.metadata()).await?;
        let action = request.into_inner();
        let reply = |body: Vec<u8>| -> Result<Response<BoxStream<arrow_flight::Result>>, Status> {
            let r = arrow_flight::Result { body: body.into() };
            Ok(Response::new(Box::pin(futures::stream::iter(vec![Ok(r)]))))
        };
        match action.r#type.as_str() {
            "SetSessionOptions" => {
                let req = SetSessionOptionsRequest::decode(action.body.as_ref()).map_err(|e| Status::invalid_argument(e.to_string()))?;
                let mut result = SetSessionOptionsResult::default();
                // Catalog first, so a schema in the same call applies to it.
                let mut names: Vec<_> = req.session_options.keys().cloned().collect();
                names.sort_by_key(|n| n != "catalog");
                for name in names {
                    let value = &req.session_options[&name];
                    let text = match &value.option_value {
                        Some(OptionValue::StringValue(s)) => Some(s.clone()),
                        _ => None,
                    };
                    let outcome = match (name.as_str(), text) {
                        ("catalog", Some(db)) => session.set_database(&db, None).await.map_err(|_| error_value::INVALID_VALUE),
                        ("schema", Some(s)) => session.set_schema(&s).await.map_err(|_| error_value::INVALID_VALUE),
                        ("catalog" | "schema", None) => Err(error_value::INVALID_VALUE),
                        _ => Err(error_value::INVALID_NAME),
                    };
                    if let Err(v) = outcome {
                        result.errors.insert(name, SetSessionOptionsError { value: v });
                    }
                }
                reply(result.encode_to_vec())
            }
            "GetSessionOptions" => {
                let mut result = GetSessionOptionsResult::default();
                result.session_options.insert("catalog".into(), string_value(&session.current_database()));
                result.session_options.insert("schema".into(), string_value(&session.current_schema()));
                reply(result.encode_to_vec())
            }
            "CloseSession" => {
                self.sessions.drop_for_session(&session.id);
                self.engine.close_session(&session.id);
                self.sessions.forget_token(&key);
                reply(CloseSessionResult { status: CLOSE_STATUS_CLOSED }.encode_to_vec())
            }
            "CancelFlightInfo" => {
                let req = CancelFlightInfoRequest::decode(action.body.as_ref()).map_err(|e| Status::invalid_argument(e.to_string()))?;
                if let Some(info) = &req.info {
                    self.cancel_handle(&session, info);
                }
                reply(CancelFlightInfoResult { status: CancelStatus::Cancelled as i32 }.encode_to_vec())
            }
            other => Err(Status::invalid_argument(format!("unknown action '{other}'"))),
        }
    }

    // ----- metadata ------------------------------------------------------------

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let session = self.session(request.metadata()).await?;
        let mut b = query.into_builder();
        for db in self.engine.visible_databases(&session.identity) {
            b.append(db.name);
        }
        let batch = b.build().map_err(arrow_status)?;
        self.batches_info(&session, batch, request.into_inner())
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let session = self.session(request.metadata()).await?;
        let schemas = self
            .engine
            .list_schemas(&session.identity, query.catalog.as_deref(), query.db_schema_filter_pattern.as_deref())
            .await
            .map_err(to_status)?;
        let mut b = query.into_builder();
        for (c, s) in schemas {
            b.append(c, s);
        }
        let batch = b.build().map_err(arrow_status)?;
        self.batches_info(&session, batch, request.into_inner())
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let session = self.session(request.metadata()).await?;
        let filter = TableFilter {
            catalog: query.catalog.clone(),
            schema_pattern: query.db_schema_filter_pattern.clone(),
            table_pattern: query.table_name_filter_pattern.clone(),
            table_types: query.table_types.clone(),
        };
        let include_schema = query.include_schema;
        let tables = self.engine.list_tables(&session.identity, &filter).await.map_err(to_status)?;
        let mut b = query.into_builder();
        for t in tables {
            let schema = if include_schema {
                let s = self.engine.table_schema(&t.catalog, &t.schema, &t.name).await.map_err(to_status)?;
                with_column_metadata(&s, &t.catalog, &t.schema, &t.name)
            } else {
                Schema::empty()
            };
            b.append(&t.catalog, &t.schema, &t.name, &t.table_type, &schema).map_err(arrow_status)?;
        }
        let batch = b.build().map_err(arrow_status)?;
        self.batches_info(&session, batch, request.into_inner())
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let session = self.session(request.metadata()).await?;
        let mut b = query.into_builder();
        for t in TABLE_TYPES {
            b.append(t);
        }
        let batch = b.build().map_err(arrow_status)?;
        self.batches_info(&session, batch, request.into_inner())
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let session = self.session(request.metadata()).await?;
        let batch = query.into_builder(&self.sql_info).build().map_err(arrow_status)?;
        self.batches_info(&session, batch, request.into_inner())
    }

    async fn get_flight_info_xdbc_type_info(
        &self,
        query: CommandGetXdbcTypeInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let session = self.session(request.metadata()).await?;
        let batch = query.into_builder(&self.xdbc).build().map_err(arrow_status)?;
        self.batches_info(&session, batch, request.into_inner())
    }

    async fn get_flight_info_primary_keys(
        &self,
        query: CommandGetPrimaryKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let session = self.session(request.metadata()).await?;
        let keys = self
            .engine
            .primary_keys(&session.identity, query.catalog.as_deref(), query.db_schema.as_deref(), &query.table)
            .await
            .map_err(to_status)?;
        let batch = metadata::primary_keys_batch(&keys).map_err(arrow_status)?;
        self.batches_info(&session, batch, request.into_inner())
    }

    async fn get_flight_info_exported_keys(
        &self,
        query: CommandGetExportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let session = self.session(request.metadata()).await?;
        let keys = self
            .engine
            .foreign_keys(&session.identity, None, Some((query.catalog.as_deref(), query.db_schema.as_deref(), &query.table)))
            .await
            .map_err(to_status)?;
        let batch = metadata::foreign_keys_batch(&keys).map_err(arrow_status)?;
        self.batches_info(&session, batch, request.into_inner())
    }

    async fn get_flight_info_imported_keys(
        &self,
        query: CommandGetImportedKeys,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let session = self.session(request.metadata()).await?;
        let keys = self
            .engine
            .foreign_keys(&session.identity, Some((query.catalog.as_deref(), query.db_schema.as_deref(), &query.table)), None)
            .await
            .map_err(to_status)?;
        let batch = metadata::foreign_keys_batch(&keys).map_err(arrow_status)?;
        self.batches_info(&session, batch, request.into_inner())
    }

    async fn get_flight_info_cross_reference(
        &self,
        query: CommandGetCrossReference,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let session = self.session(request.metadata()).await?;
        let keys = self
            .engine
            .foreign_keys(
                &session.identity,
                Some((query.fk_catalog.as_deref(), query.fk_db_schema.as_deref(), &query.fk_table)),
                Some((query.pk_catalog.as_deref(), query.pk_db_schema.as_deref(), &query.pk_table)),
            )
            .await
            .map_err(to_status)?;
        let batch = metadata::foreign_keys_batch(&keys).map_err(arrow_status)?;
        self.batches_info(&session, batch, request.into_inner())
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}

fn union_fields_not_null(schema: &SchemaRef) -> SchemaRef {
    if !schema.fields().iter().any(|f| matches!(f.data_type(), DataType::Union(_, _)) && f.is_nullable()) {
        return schema.clone();
    }
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            let f = f.as_ref().clone();
            if matches!(f.data_type(), DataType::Union(_, _)) {
                f.with_nullable(false)
            } else {
                f
            }
        })
        .collect();
    Arc::new(Schema::new_with_metadata(fields, schema.metadata().clone()))
}

fn ipc_schema(schema: &Schema) -> Result<bytes::Bytes, Status> {
    let IpcMessage(bytes) = SchemaAsIpc::new(schema, &IpcWriteOptions::default())
        .try_into()
        .map_err(|e: arrow_schema::ArrowError| Status::internal(e.to_string()))?;
    Ok(bytes)
}

/// Adds the `ARROW:FLIGHT:SQL:*` column metadata Flight SQL defines to every field.
fn with_column_metadata(schema: &Schema, catalog: &str, db_schema: &str, table: &str) -> Schema {
    let fields: Vec<Field> = schema
        .fields()
        .iter()
        .map(|f| {
            let mut md = f.metadata().clone();
            md.insert("ARROW:FLIGHT:SQL:CATALOG_NAME".into(), catalog.into());
            md.insert("ARROW:FLIGHT:SQL:SCHEMA_NAME".into(), db_schema.into());
            md.insert("ARROW:FLIGHT:SQL:TABLE_NAME".into(), table.into());
            md.insert("ARROW:FLIGHT:SQL:TYPE_NAME".into(), type_name(f.data_type()));
            md.insert("ARROW:FLIGHT:SQL:IS_AUTO_INCREMENT".into(), "0".into());
            md.insert("ARROW:FLIGHT:SQL:IS_CASE_SENSITIVE".into(), if matches!(f.data_type(), DataType::Utf8) { "1" } else { "0" }.into());
            md.insert("ARROW:FLIGHT:SQL:IS_READ_ONLY".into(), "0".into());
            md.insert("ARROW:FLIGHT:SQL:IS_SEARCHABLE".into(), "1".into());
            if let DataType::Decimal128(p, s) | DataType::Decimal256(p, s) = f.data_type() {
                md.insert("ARROW:FLIGHT:SQL:PRECISION".into(), p.to_string());
                md.insert("ARROW:FLIGHT:SQL:SCALE".into(), s.to_string());
            }
            f.as_ref().clone().with_metadata(md)
        })
        .collect();
    Schema::new_with_metadata(fields, schema.metadata().clone())
}

/// A DuckDB-style type name for an Arrow type (column metadata only).
fn type_name(dt: &DataType) -> String {
    pond_engine::params::duckdb_type(dt).unwrap_or_else(|_| dt.to_string())
}
