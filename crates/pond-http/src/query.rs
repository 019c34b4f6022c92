//! `POST /api/v1/query`: runs SQL in a short-lived session and streams the
//! result as JSON, Arrow IPC or CSV without holding it in memory.

use std::time::Instant;

use arrow::array::RecordBatch;
use arrow::datatypes::SchemaRef;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::State;
use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use futures::StreamExt;
use pond_engine::QueryStream;
use serde::Deserialize;

use crate::json::{string, write_csv_field, write_typed, Kind};
use crate::{HttpError, HttpState};

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct QueryRequest {
    sql: String,
    #[serde(default)]
    database: Option<String>,
    #[serde(default)]
    format: Option<String>,
}

#[derive(Debug, Clone, Copy)]
enum Format {
    Json,
    Arrow,
    Csv,
}

pub async fn query(
    State(state): State<HttpState>,
    caller: crate::auth::Caller,
    headers: axum::http::HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, HttpError> {
    let identity = caller.identity;
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            HttpError::new(StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large", "request body is larger than the configured limit")
        } else {
            HttpError::bad_request(format!("could not read request body: {e}"))
        }
    })?;
    let req: QueryRequest = serde_json::from_slice(&body).map_err(|e| {
        HttpError::bad_request(format!(
            "request body must be JSON {{\"sql\": \"...\", \"database\": \"default\", \"format\": \"json|arrow|csv\"}}: {e} (line {}, column {})",
            e.line(),
            e.column()
        ))
    })?;
    let format = match req.format.as_deref().unwrap_or("json").to_ascii_lowercase().as_str() {
        "json" => Format::Json,
        "arrow" | "arrow-ipc" | "ipc" => Format::Arrow,
        "csv" => Format::Csv,
        other => return Err(HttpError::bad_request(format!("unknown format '{other}' in field 'format' (json, arrow, csv)"))),
    };
    let started = Instant::now();
    // The same caller's next request may reuse this session once the result is sent.
    let session = state.engine.open_reusable_session(identity, "http", req.database.clone()).await?;
    // `Cache-Control: no-cache` / `no-store`: run the statement, whatever the query cache holds.
    let skip_cache = headers
        .get_all(header::CACHE_CONTROL)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .any(|d| matches!(d.trim().to_ascii_lowercase().as_str(), "no-cache" | "no-store"));
    session.set_call_cache(!skip_cache);
    let stream = session.query(&req.sql, None).await?;
    let metrics = state.engine.metrics().clone();
    let body_stream = match format {
        Format::Json => json_body(stream, started).boxed(),
        Format::Arrow => arrow_body(stream).boxed(),
        Format::Csv => csv_body(stream).boxed(),
    };
    // The session lives as long as the body: it is handed back when the last byte is out.
    let counted = body_stream.map(move |chunk: Result<Bytes, std::io::Error>| {
        let _keep = &session;
        if let Ok(b) = &chunk {
            metrics.sent("http", b.len() as u64, 0);
        }
        chunk
    });
    let content_type = match format {
        Format::Json => "application/json",
        Format::Arrow => "application/vnd.apache.arrow.stream",
        Format::Csv => "text/csv; charset=utf-8",
    };
    let mut resp = Body::from_stream(counted).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    Ok(resp)
}

fn io_err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// The JSON document is written in pieces: header with the columns, one chunk
/// of rows per batch, then the trailer with counts and timing.
fn json_body(stream: QueryStream, started: Instant) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    let schema = stream.schema();
    let types = stream.duckdb_types();
    let header = json_header(&schema, &types);
    let kinds: Vec<Kind> = types.iter().map(|t| Kind::from_duckdb_type(t)).collect();
    let state = (stream, Some(header), 0usize, false, started);
    futures::stream::unfold(state, move |(mut stream, header, mut rows, mut done, started)| {
        let kinds = kinds.clone();
        async move {
            if let Some(h) = header {
                return Some((Ok(Bytes::from(h)), (stream, None, rows, done, started)));
            }
            if done {
                return None;
            }
            match stream.next().await {
                Some(Ok(batch)) => {
                    let mut out = String::with_capacity(batch.num_rows() * 32);
                    for r in 0..batch.num_rows() {
                        if rows + r > 0 {
                            out.push(',');
                        }
                        out.push('[');
                        for (c, col) in batch.columns().iter().enumerate() {
                            if c > 0 {
                                out.push(',');
                            }
                            write_typed(&mut out, col.as_ref(), r, kinds.get(c).copied().unwrap_or(Kind::Plain));
                        }
                        out.push(']');
                    }
                    rows += batch.num_rows();
                    Some((Ok(Bytes::from(out)), (stream, None, rows, done, started)))
                }
                Some(Err(e)) => {
                    done = true;
                    Some((Err(io_err(e)), (stream, None, rows, done, started)))
                }
                None => {
                    done = true;
                    let trailer = format!("],\"row_count\":{rows},\"execution_time_ms\":{:.3}}}", started.elapsed().as_secs_f64() * 1000.0);
                    Some((Ok(Bytes::from(trailer)), (stream, None, rows, done, started)))
                }
            }
        }
    })
}

fn json_header(schema: &SchemaRef, types: &[String]) -> String {
    let mut out = String::from("{\"columns\":[");
    for (i, f) in schema.fields().iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str("{\"name\":");
        string(&mut out, f.name());
        out.push_str(",\"type\":");
        let t = types.get(i).cloned().unwrap_or_else(|| f.data_type().to_string());
        string(&mut out, &t);
        out.push('}');
    }
    out.push_str("],\"data\":[");
    out
}

fn arrow_body(stream: QueryStream) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    let schema = stream.schema();
    let writer = arrow_ipc::writer::StreamWriter::try_new(Vec::new(), &schema).map_err(io_err);
    futures::stream::unfold((stream, Some(writer), false), |(mut stream, writer, finished)| async move {
        if finished {
            return None;
        }
        let mut writer = match writer {
            Some(Ok(w)) => w,
            Some(Err(e)) => return Some((Err(e), (stream, None, true))),
            None => return None,
        };
        match stream.next().await {
            Some(Ok(batch)) => {
                let r = writer.write(&batch).map_err(io_err);
                let bytes = std::mem::take(writer.get_mut());
                match r {
                    Ok(()) => Some((Ok(Bytes::from(bytes)), (stream, Some(Ok(writer)), false))),
                    Err(e) => Some((Err(e), (stream, None, true))),
                }
            }
            Some(Err(e)) => Some((Err(io_err(e)), (stream, None, true))),
            None => {
                let r = writer.finish().map_err(io_err);
                let bytes = std::mem::take(writer.get_mut());
                Some((r.map(|_| Bytes::from(bytes)), (stream, None, true)))
            }
        }
    })
}

fn csv_body(stream: QueryStream) -> impl futures::Stream<Item = Result<Bytes, std::io::Error>> + Send {
    let schema = stream.schema();
    let kinds: Vec<Kind> = stream.duckdb_types().iter().map(|t| Kind::from_duckdb_type(t)).collect();
    // The header comes first even for empty results.
    let mut header = String::new();
    for (i, f) in schema.fields().iter().enumerate() {
        if i > 0 {
            header.push(',');
        }
        header.push_str(&csv_field(f.name()));
    }
    header.push('\n');
    futures::stream::once(async move { Ok(Bytes::from(header)) }).chain(stream.map(move |r| {
        let batch: RecordBatch = r.map_err(io_err)?;
        let mut out = String::with_capacity(batch.num_rows() * 16);
        for row in 0..batch.num_rows() {
            for (c, col) in batch.columns().iter().enumerate() {
                if c > 0 {
                    out.push(',');
                }
                write_csv_field(&mut out, col.as_ref(), row, kinds.get(c).copied().unwrap_or(Kind::Plain));
            }
            out.push('\n');
        }
        Ok(Bytes::from(out))
    }))
}

fn csv_field(s: &str) -> String {
    if s.contains([',', '"', '\n', '\r']) {
        format!("\"{}\"", s.replace('"', "\"\""))
    } else {
        s.to_string()
    }
}
