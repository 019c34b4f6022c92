//! Time-series write endpoints (InfluxDB v1, v2, v3, Arc's line-protocol and
//! MessagePack paths) translated to [`pond_ingest::Ingester::write`], Arc's
//! MessagePack format description, and InfluxDB v1's `/query` for
//! `CREATE DATABASE` and `/ping`.

use std::collections::HashMap;

use axum::body::Bytes;
use axum::extract::{RawQuery, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use pond_ingest::{Error as IngestError, Format, Ingester, Precision, WriteOutcome, WriteRequest};

use crate::auth::Caller;
use crate::{HttpError, HttpState};

fn params(q: Option<&str>) -> HashMap<String, String> {
    q.and_then(|q| serde_urlencoded::from_str::<Vec<(String, String)>>(q).ok()).unwrap_or_default().into_iter().collect()
}

fn ingester(s: &HttpState) -> Result<&Ingester, HttpError> {
    s.ingest.as_ref().ok_or_else(|| HttpError::new(StatusCode::NOT_FOUND, "not_found", "time-series ingest is disabled on this server"))
}

pub(crate) fn ingest_error(e: IngestError) -> HttpError {
    let e = match e {
        IngestError::Engine(inner) => return HttpError::from(inner),
        other => other,
    };
    let (status, code) = match &e {
        IngestError::DatabaseNotFound(_) => (StatusCode::NOT_FOUND, "database_not_found"),
        IngestError::PermissionDenied(_) => (StatusCode::FORBIDDEN, "permission_denied"),
        IngestError::InvalidRequest(_) => (StatusCode::BAD_REQUEST, "invalid_request"),
        IngestError::TooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "request_too_large"),
        IngestError::Busy => (StatusCode::SERVICE_UNAVAILABLE, "busy"),
        _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
    };
    let mut err = HttpError::new(status, code, e.to_string());
    if status == StatusCode::SERVICE_UNAVAILABLE {
        err.retry_after = Some(1);
    }
    err
}

fn flag(p: &HashMap<String, String>, name: &str, default: bool) -> bool {
    match p.get(name).map(|s| s.to_ascii_lowercase()) {
        Some(v) => matches!(v.as_str(), "true" | "1" | "yes" | "on"),
        None => default,
    }
}

#[allow(clippy::too_many_arguments)]
async fn write_common(
    s: &HttpState,
    caller: &Caller,
    headers: &HeaderMap,
    body: Bytes,
    database: String,
    precision: Option<&str>,
    no_sync: bool,
    accept_partial: bool,
) -> Result<Response, HttpError> {
    let ing = ingester(s)?;
    let precision = match precision {
        None => Precision::Nanosecond,
        Some(p) => Precision::parse(p)
            .ok_or_else(|| HttpError::bad_request(format!("invalid precision '{p}' (use ns, us, ms, s, m, h, auto or nanosecond, …)")))?,
    };
    let encoding = headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok());
    let limit = ing.config().max_body_bytes;
    let body = decode_body(encoding, body, limit).map_err(ingest_error)?;
    let req = WriteRequest { database, format: Format::LineProtocol, precision, body, no_sync, accept_partial };
    let outcome = ing.write(&caller.identity, req).await.map_err(ingest_error)?;
    Ok(outcome_response(outcome, Format::LineProtocol))
}

/// [`pond_ingest::decode_body`] that hands over an uncompressed body without
/// copying it when it is the only reference to its buffer (axum collects a
/// body of several chunks into one such buffer).
fn decode_body(content_encoding: Option<&str>, body: Bytes, limit: usize) -> Result<Vec<u8>, IngestError> {
    let plain = match content_encoding.map(str::trim) {
        None => !body.starts_with(&[0x1f, 0x8b]) && !body.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]),
        Some(e) => e.is_empty() || e.eq_ignore_ascii_case("identity"),
    };
    if plain && body.len() <= limit {
        return Ok(Vec::from(body));
    }
    pond_ingest::decode_body(content_encoding, &body, limit)
}

/// 204 when every line was written; otherwise InfluxDB 3's partial-write JSON
/// (for MessagePack, `line_number` is the record number).
fn outcome_response(o: WriteOutcome, format: Format) -> Response {
    if o.errors.is_empty() {
        return StatusCode::NO_CONTENT.into_response();
    }
    let error = match (format, o.lines_written > 0) {
        (Format::LineProtocol, true) => "partial write of line protocol occurred",
        (Format::LineProtocol, false) => "parsing failed for line protocol: no lines were written",
        (Format::MessagePack, true) => "partial write of MessagePack records occurred",
        (Format::MessagePack, false) => "invalid MessagePack records: no records were written",
    };
    let data: Vec<_> = o
        .errors
        .iter()
        .map(|e| serde_json::json!({"original_line": e.original_line, "line_number": e.line_number, "error_message": e.error_message}))
        .collect();
    (StatusCode::BAD_REQUEST, Json(serde_json::json!({"error": error, "data": data, "lines_written": o.lines_written}))).into_response()
}

/// InfluxDB v1: `POST /write?db=&rp=&precision=` (credentials also `u`/`p`).
pub async fn write_v1(
    State(s): State<HttpState>,
    caller: Caller,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, HttpError> {
    let p = params(q.as_deref());
    let db = p.get("db").cloned().unwrap_or_default();
    write_common(&s, &caller, &headers, body, db, p.get("precision").map(String::as_str), false, true).await
}

/// InfluxDB v2: `POST /api/v2/write?org=&bucket=&precision=` (bucket = database).
pub async fn write_v2(
    State(s): State<HttpState>,
    caller: Caller,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, HttpError> {
    let p = params(q.as_deref());
    let db = p.get("bucket").cloned().unwrap_or_default();
    write_common(&s, &caller, &headers, body, db, p.get("precision").map(String::as_str), false, true).await
}

/// InfluxDB v3: `POST /api/v3/write_lp?db=&precision=&accept_partial=&no_sync=`.
pub async fn write_v3(
    State(s): State<HttpState>,
    caller: Caller,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, HttpError> {
    let p = params(q.as_deref());
    let db = p.get("db").cloned().unwrap_or_default();
    let precision = p.get("precision").map(String::as_str).or(Some("auto"));
    write_common(&s, &caller, &headers, body, db, precision, flag(&p, "no_sync", false), flag(&p, "accept_partial", true)).await
}

/// Arc: `POST /api/v1/write/line-protocol`, database from `x-arc-database`.
pub async fn write_arc_lp(
    State(s): State<HttpState>,
    caller: Caller,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, HttpError> {
    let p = params(q.as_deref());
    let db = arc_database(&headers, &p);
    write_common(&s, &caller, &headers, body, db, p.get("precision").map(String::as_str), flag(&p, "no_sync", false), true).await
}

/// JSON points (`pond_ingest::json` documents the shape), database from
/// `x-arc-database` or `db`; converted to line protocol and written like it.
pub async fn write_json(
    State(s): State<HttpState>,
    caller: Caller,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, HttpError> {
    write_arc_body(&s, &caller, q, &headers, body, Format::LineProtocol, |json| pond_ingest::json::to_line_protocol(&json)).await
}

/// Arc MessagePack: `POST /api/v1/write/msgpack` (and `/write/v2/msgpack`);
/// `pond_ingest::msgpack` documents the formats.
pub async fn write_msgpack(
    State(s): State<HttpState>,
    caller: Caller,
    RawQuery(q): RawQuery,
    headers: HeaderMap,
    body: Bytes,
) -> Result<Response, HttpError> {
    write_arc_body(&s, &caller, q, &headers, body, Format::MessagePack, Ok).await
}

/// The Arc-style bodies (JSON, MessagePack): decompress, turn into what the
/// ingester reads as `format`, write with partial writes accepted.
async fn write_arc_body(
    s: &HttpState,
    caller: &Caller,
    q: Option<String>,
    headers: &HeaderMap,
    body: Bytes,
    format: Format,
    convert: impl FnOnce(Vec<u8>) -> Result<Vec<u8>, pond_ingest::Error>,
) -> Result<Response, HttpError> {
    let ing = ingester(s)?;
    let p = params(q.as_deref());
    let database = arc_database(headers, &p);
    let encoding = headers.get(header::CONTENT_ENCODING).and_then(|v| v.to_str().ok());
    let decoded = decode_body(encoding, body, ing.config().max_body_bytes).map_err(ingest_error)?;
    let req = WriteRequest {
        database,
        format,
        precision: Precision::Nanosecond,
        body: convert(decoded).map_err(ingest_error)?,
        no_sync: flag(&p, "no_sync", false),
        accept_partial: true,
    };
    let outcome = ing.write(&caller.identity, req).await.map_err(ingest_error)?;
    Ok(outcome_response(outcome, format))
}

/// Arc's database choice: the `x-arc-database` header, else `?db=`, else `default`.
fn arc_database(headers: &HeaderMap, p: &HashMap<String, String>) -> String {
    headers
        .get("x-arc-database")
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .or_else(|| p.get("db").cloned())
        .unwrap_or_else(|| pond_engine::DEFAULT_DATABASE.to_string())
}

/// `GET /api/v1/write/msgpack/spec`: what the MessagePack endpoints accept.
pub async fn msgpack_spec(_caller: Caller) -> Response {
    Json(serde_json::json!({
        "protocol": "MessagePack (Arc-compatible)",
        "endpoints": ["POST /api/v1/write/msgpack", "POST /write/v2/msgpack"],
        "content_type": "application/msgpack",
        "database": "x-arc-database header, else ?db=, else 'default'",
        "query_parameters": {"db": "database when the header is absent", "no_sync": "true: acknowledge before the write-ahead log is synced"},
        "compression": "gzip or zstd, by Content-Encoding or detected from the first bytes",
        "body": "one record map, {\"batch\": [record, ...]}, or an array of records; batches may nest",
        "formats": {
            "columnar": {
                "shape": {"m": "measurement: string, or integer N for 'measurement_N'", "columns": {"time": "[timestamps] (optional: arrival time)", "<name>": "[values], all arrays of equal length"}},
                "types": "integers BIGINT, floats DOUBLE (integers and floats mixed: DOUBLE), strings VARCHAR, booleans BOOLEAN, nil NULL",
                "example": {"m": "cpu", "columns": {"time": [1700000000000i64, 1700000001000i64], "host": ["a", "b"], "usage_idle": [95.5, 94.0]}}
            },
            "row": {
                "shape": {"m": "measurement", "t": "timestamp (optional: arrival time)", "h": "host, stored as tag 'host' (integer N: 'host_N')", "tags": "{name: string}", "fields": "{name: number|string|boolean}", "f": "[values] instead of fields: stored as field_0, field_1, ..."},
                "example": {"m": "cpu", "t": 1700000000000i64, "h": "server01", "tags": {"region": "eu"}, "fields": {"usage_idle": 95.5, "usage_user": 3.2}}
            }
        },
        "timestamps": "unit by magnitude of |t|: < 1e10 seconds, < 1e13 milliseconds, < 1e16 microseconds, else nanoseconds (exact); a columnar time column takes the unit of its first value; floats keep their fraction",
        "tables": "one table per measurement in the database: time TIMESTAMP_NS plus one column per tag, field or column; new names add columns",
        "responses": {
            "204": "every record written",
            "400": "not MessagePack (nothing written), or some records rejected: {\"error\", \"data\": [{\"line_number\": record number from 1, \"original_line\": \"item I[, entry E]\", \"error_message\"}], \"lines_written\"}; the other records are written",
            "401/403": "authentication; INSERT on the measurement or WRITE on the database",
            "404": "unknown database (created on a superuser's first write unless --ingest-create-databases=false)",
            "413": "body larger than --max-body-bytes (compressed or decompressed)",
            "503": "ingest queue full: retry after Retry-After seconds; nothing of the request was written"
        }
    }))
    .into_response()
}

/// InfluxDB v1 `/ping`.
pub async fn ping() -> Response {
    let mut r = StatusCode::NO_CONTENT.into_response();
    r.headers_mut().insert("x-influxdb-version", HeaderValue::from_static("1.8.10-pond"));
    r.headers_mut().insert("x-influxdb-build", HeaderValue::from_static("OSS"));
    r
}

/// InfluxDB v1 `/query`: only `CREATE DATABASE` (what Telegraf and the v1
/// client send before writing) and `SHOW DATABASES`; the answer has
/// InfluxDB's JSON shape.
pub async fn query_v1(State(s): State<HttpState>, caller: Caller, RawQuery(q): RawQuery, body: Bytes) -> Result<Response, HttpError> {
    let ing = ingester(&s)?;
    let mut p = params(q.as_deref());
    if !p.contains_key("q") {
        if let Ok(form) = serde_urlencoded::from_bytes::<Vec<(String, String)>>(&body) {
            p.extend(form);
        }
    }
    let text = p.get("q").cloned().unwrap_or_default();
    let mut results = Vec::new();
    for (i, stmt) in text.split(';').map(str::trim).filter(|s| !s.is_empty()).enumerate() {
        let words: Vec<&str> = stmt.split_whitespace().collect();
        let upper: Vec<String> = words.iter().take(2).map(|w| w.to_ascii_uppercase()).collect();
        if upper.len() == 2 && upper[0] == "CREATE" && upper[1] == "DATABASE" && words.len() >= 3 {
            let name = words[2].trim_matches('"');
            match ing.create_database(&caller.identity, name).await {
                Ok(()) => results.push(serde_json::json!({"statement_id": i})),
                Err(e) => results.push(serde_json::json!({"statement_id": i, "error": e.to_string()})),
            }
        } else if upper.len() == 2 && upper[0] == "SHOW" && upper[1] == "DATABASES" {
            let values: Vec<_> = s.engine.visible_databases(&caller.identity).into_iter().map(|d| serde_json::json!([d.name])).collect();
            results.push(serde_json::json!({"statement_id": i, "series": [{"name": "databases", "columns": ["name"], "values": values}]}));
        } else {
            results.push(serde_json::json!({"statement_id": i, "error": "Pond answers only CREATE DATABASE and SHOW DATABASES on /query; use SQL on /api/v1/query"}));
        }
    }
    if results.is_empty() {
        return Err(HttpError::bad_request("missing required parameter \"q\""));
    }
    Ok(Json(serde_json::json!({"results": results})).into_response())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn plain_bodies_are_handed_over_without_a_copy() {
        let v = b"cpu v=1 1\n".repeat(100);
        for enc in [None, Some("identity"), Some(" IDENTITY "), Some("")] {
            let body = Bytes::from(v.clone());
            let at = body.as_ptr();
            let out = decode_body(enc, body, 1000).unwrap();
            assert_eq!(out, v, "{enc:?}");
            assert_eq!(out.as_ptr(), at, "{enc:?}: the same buffer");
        }
        // A body still shared elsewhere is copied.
        let body = Bytes::from(v.clone());
        let other = body.clone();
        let out = decode_body(None, body, 1000).unwrap();
        assert_eq!(out, v);
        assert_ne!(out.as_ptr(), other.as_ptr());
    }

    #[test]
    fn everything_else_goes_to_the_ingest_decoder() {
        let too_big = Bytes::from(vec![b'x'; 11]);
        assert!(matches!(decode_body(None, too_big.clone(), 10), Err(IngestError::TooLarge(10))));
        assert!(matches!(decode_body(Some("identity"), too_big, 10), Err(IngestError::TooLarge(10))));
        // Compression by header or by magic bytes (these are not valid streams).
        let gz = Bytes::from_static(&[0x1f, 0x8b, 0, 0]);
        assert!(matches!(decode_body(None, gz.clone(), 100), Err(IngestError::InvalidRequest(m)) if m.contains("gzip")));
        let zst = Bytes::from_static(&[0x28, 0xb5, 0x2f, 0xfd, 0]);
        assert!(matches!(decode_body(None, zst, 100), Err(IngestError::InvalidRequest(m)) if m.contains("zstd")));
        let text = Bytes::from_static(b"cpu v=1");
        assert!(matches!(decode_body(Some("gzip"), text.clone(), 100), Err(IngestError::InvalidRequest(m)) if m.contains("gzip")));
        assert!(matches!(decode_body(Some("br"), text, 100), Err(IngestError::InvalidRequest(m)) if m.contains("'br'")));
    }
}
