//! `POST /console/api/export`: a query's result as a Parquet file download
//! (the API streams JSON, Arrow IPC and CSV itself). The statement runs in an
//! engine session as the console's user, like every protocol; row groups are
//! written and sent as the result streams, so the whole file is never in memory.

use std::sync::Arc;

use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::http::{header, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::Extension;
use futures::StreamExt;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;
use serde::Deserialize;

use crate::session::Current;
use crate::{Console, ConsoleError};

/// A row group is closed (and sent) once this much is buffered.
const ROW_GROUP_BYTES: usize = 16 * 1024 * 1024;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ExportRequest {
    sql: String,
    #[serde(default)]
    database: Option<String>,
}

fn io_err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

pub async fn export(State(c): State<Console>, current: Option<Extension<Current>>, body: Bytes) -> Result<Response, ConsoleError> {
    let Some(Extension(current)) = current else { return Err(ConsoleError::NotLoggedIn) };
    let who = c.identity(&current)?;
    let req: ExportRequest = serde_json::from_slice(&body)
        .map_err(|e| ConsoleError::BadRequest(format!("request body must be JSON {{\"sql\": \"…\", \"database\": \"…\"}}: {e}")))?;
    let session = c.engine.open_reusable_session(who, "console", req.database).await?;
    let stream = session.query(&req.sql, None).await?;
    let props = WriterProperties::builder().set_compression(Compression::ZSTD(ZstdLevel::default())).build();
    let writer = ArrowWriter::try_new(Vec::new(), stream.schema(), Some(props)).map_err(|e| ConsoleError::BadRequest(e.to_string()))?;
    let session = Arc::new(session);
    let body = futures::stream::unfold((stream, Some(writer), session), |(mut stream, writer, session)| async move {
        let mut writer = writer?;
        loop {
            match stream.next().await {
                Some(Ok(batch)) => {
                    if let Err(e) = writer.write(&batch) {
                        return Some((Err(io_err(e)), (stream, None, session)));
                    }
                    if writer.in_progress_size() >= ROW_GROUP_BYTES {
                        if let Err(e) = writer.flush() {
                            return Some((Err(io_err(e)), (stream, None, session)));
                        }
                        let bytes = std::mem::take(writer.inner_mut());
                        return Some((Ok(Bytes::from(bytes)), (stream, Some(writer), session)));
                    }
                }
                Some(Err(e)) => return Some((Err(io_err(e)), (stream, None, session))),
                None => {
                    let done = writer.finish().map(|_| Bytes::from(std::mem::take(writer.inner_mut()))).map_err(io_err);
                    return Some((done, (stream, None, session)));
                }
            }
        }
    });
    let mut resp = Body::from_stream(body).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/vnd.apache.parquet"));
    h.insert(header::CONTENT_DISPOSITION, HeaderValue::from_static("attachment; filename=\"result.parquet\""));
    Ok(resp)
}
