//! One client connection: read a line, answer a line, until the client goes,
//! stays idle too long, or the server stops. The connection owns at most one
//! engine [`Session`] (opened by `login`, dropped with the connection, which
//! rolls back an open transaction).

use std::net::SocketAddr;
use std::sync::Arc;

use arrow::json::writer::{JsonArray, WriterBuilder};
use futures::StreamExt;
use pond_auth::Credentials;
use pond_engine::{Engine, Session};
use tokio::io::{AsyncBufRead, AsyncBufReadExt, AsyncRead, AsyncWrite, AsyncWriteExt, BufReader};
use tokio::sync::watch;

use crate::command::{self, Command};
use crate::error::{Error, Result};
use crate::{TcpOptions, PROTOCOL};

/// What one read from the socket gave.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Request {
    Line(String),
    TooLong,
    NotUtf8,
    Eof,
}

/// Reads one request: bytes up to `\n` (a `\r` before it is dropped), at most
/// `max` of them. A longer line is skipped to its end without being kept.
/// An unterminated last line before EOF still counts as a request.
pub(crate) async fn read_request<R: AsyncBufRead + Unpin>(r: &mut R, buf: &mut Vec<u8>, max: usize) -> std::io::Result<Request> {
    buf.clear();
    let mut too_long = false;
    let mut seen = false;
    loop {
        let available = r.fill_buf().await?;
        if available.is_empty() {
            if !seen {
                return Ok(Request::Eof);
            }
            break;
        }
        seen = true;
        let (take, found) = match available.iter().position(|b| *b == b'\n') {
            Some(i) => (i + 1, true),
            None => (available.len(), false),
        };
        if !too_long {
            // The terminator (`\r\n`) does not count against the limit.
            if buf.len() + take > max.saturating_add(2) {
                too_long = true;
                buf.clear();
            } else {
                buf.extend_from_slice(&available[..take]);
            }
        }
        r.consume(take);
        if found {
            break;
        }
    }
    if buf.last() == Some(&b'\n') {
        buf.pop();
    }
    if buf.last() == Some(&b'\r') {
        buf.pop();
    }
    if too_long || buf.len() > max {
        return Ok(Request::TooLong);
    }
    match std::str::from_utf8(buf) {
        Ok(s) => Ok(Request::Line(s.to_string())),
        Err(_) => Ok(Request::NotUtf8),
    }
}

pub(crate) struct Connection {
    engine: Engine,
    options: Arc<TcpOptions>,
    peer: SocketAddr,
    session: Option<Arc<Session>>,
}

impl Connection {
    pub(crate) fn new(engine: Engine, options: Arc<TcpOptions>, peer: SocketAddr) -> Self {
        Self { engine, options, peer, session: None }
    }

    /// Serves the connection until EOF, an idle timeout, an I/O error or `stop`.
    pub(crate) async fn run<S>(mut self, io: S, mut stop: watch::Receiver<bool>)
    where
        S: AsyncRead + AsyncWrite + Unpin + Send,
    {
        let (r, mut w) = tokio::io::split(io);
        let mut reader = BufReader::with_capacity(64 * 1024, r);
        let mut buf = Vec::new();
        tracing::debug!(peer = %self.peer, "TCP-DuckDB connection opened");
        loop {
            let timeout = if self.session.is_some() { self.options.idle_timeout } else { self.options.login_timeout };
            let request = tokio::select! {
                r = tokio::time::timeout(timeout, read_request(&mut reader, &mut buf, self.options.max_line_bytes)) => r,
                _ = async { drop(stop.wait_for(|s| *s).await) } => {
                    let _ = write_line(&mut w, "Error: the server is shutting down").await;
                    break;
                }
            };
            let answer = match request {
                Err(_) => {
                    let what = if self.session.is_some() { "idle" } else { "not logged in" };
                    let _ = write_line(&mut w, &format!("Error: {what} for {timeout:?}; closing the connection")).await;
                    break;
                }
                Ok(Err(e)) => {
                    tracing::debug!(peer = %self.peer, error = %e, "TCP-DuckDB connection read failed");
                    break;
                }
                Ok(Ok(Request::Eof)) => break,
                Ok(Ok(Request::TooLong)) => Error::LineTooLong(self.options.max_line_bytes).answer(),
                Ok(Ok(Request::NotUtf8)) => Error::NotUtf8.answer(),
                Ok(Ok(Request::Line(line))) => match self.handle(&line).await {
                    Ok(answer) => answer,
                    Err(e) => e.answer(),
                },
            };
            if let Err(e) = write_line(&mut w, &answer).await {
                tracing::debug!(peer = %self.peer, error = %e, "TCP-DuckDB connection write failed");
                break;
            }
        }
        let _ = w.shutdown().await;
        tracing::debug!(peer = %self.peer, user = self.session.as_ref().map(|s| s.identity.user.as_str()), "TCP-DuckDB connection closed");
    }

    /// Carries out one request; the answer line on success.
    async fn handle(&mut self, line: &str) -> Result<String> {
        let first = line.split_whitespace().next().unwrap_or("");
        if self.session.is_none() && !first.eq_ignore_ascii_case("login") {
            return Err(if first.is_empty() { Error::Empty } else { Error::LoginFirst });
        }
        let command = command::parse(line)?;
        // Only the command's name: its arguments may hold a password or a connection string.
        tracing::debug!(peer = %self.peer, command = command.name(), "TCP-DuckDB request");
        if let Command::Login { user, password } = command {
            self.login(user, password).await?;
            return Ok(SUCCESS.into());
        }
        let session = self.session.clone().ok_or(Error::LoginFirst)?;
        match command {
            Command::Login { .. } => Err(Error::Internal("login handled above".into())),
            Command::Begin => session.begin().await.map(|_| SUCCESS.into()).map_err(Error::from),
            Command::Commit => session.commit().await.map(|_| SUCCESS.into()).map_err(Error::from),
            Command::Rollback => session.rollback().await.map(|_| SUCCESS.into()).map_err(Error::from),
            Command::Pond { sql, secret: None, .. } => self.execute(&session, &sql, false).await,
            Command::Pond { sql, secret: Some(secret), .. } => {
                self.execute(&session, &sql, false).await.map_err(|e| crate::error::redact(&e, &secret))
            }
            Command::Sql(sql) => self.execute(&session, &sql, command::returns_rows(&sql)).await,
        }
    }

    /// `login`: pond-auth checks the password (and its failed-login throttle,
    /// keyed by the client's address); a new session replaces the old one.
    async fn login(&mut self, user: String, password: String) -> Result<()> {
        let auth = self.engine.authenticator().clone();
        let source = self.peer.ip().to_string();
        let creds = Credentials::Password { user, password };
        // argon2 (on a cache miss) belongs on the blocking pool.
        let identity = tokio::task::spawn_blocking(move || auth.authenticate(&creds, Some(&source), PROTOCOL))
            .await
            .map_err(|e| Error::Internal(format!("authentication worker failed: {e}")))?
            .map_err(|e| match e {
                pond_auth::Error::TooManyFailures(_) => Error::Auth(e),
                _ => Error::LoginFailed,
            })?;
        tracing::debug!(peer = %self.peer, user = %identity.user, "TCP-DuckDB login");
        // The previous session (another user's, perhaps) goes first: it holds a session slot.
        self.session = None;
        self.session = Some(self.engine.open_session_async(identity, PROTOCOL, None, false).await?);
        Ok(())
    }

    /// Runs SQL in the session: `success`, or the rows as one JSON array.
    async fn execute(&self, session: &Arc<Session>, sql: &str, rows: bool) -> Result<String> {
        let mut stream = session.query(sql, None).await?;
        if !rows {
            stream.collect().await?;
            return Ok(SUCCESS.into());
        }
        let max = self.options.max_result_bytes;
        let mut writer = WriterBuilder::new().with_explicit_nulls(true).build::<_, JsonArray>(Vec::new());
        while let Some(batch) = stream.next().await {
            writer.write(&batch?).map_err(|e| Error::Json(e.to_string()))?;
            if writer.get_ref().len() > max {
                return Err(Error::ResultTooLarge(max));
            }
        }
        writer.finish().map_err(|e| Error::Json(e.to_string()))?;
        String::from_utf8(writer.into_inner()).map_err(|e| Error::Json(e.to_string()))
    }
}

const SUCCESS: &str = "success";

async fn write_line<W: AsyncWrite + Unpin>(w: &mut W, line: &str) -> std::io::Result<()> {
    let mut out = Vec::with_capacity(line.len() + 1);
    out.extend_from_slice(line.as_bytes());
    out.push(b'\n');
    w.write_all(&out).await?;
    w.flush().await
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    async fn read_all(input: &[u8], max: usize) -> Vec<Request> {
        let mut r = BufReader::with_capacity(4, input);
        let mut buf = Vec::new();
        let mut out = Vec::new();
        loop {
            let req = read_request(&mut r, &mut buf, max).await.unwrap();
            if req == Request::Eof {
                return out;
            }
            out.push(req);
        }
    }

    #[tokio::test]
    async fn lines_terminators_and_limits() {
        let line = |s: &str| Request::Line(s.into());
        assert_eq!(read_all(b"a\nbb\r\n\nccc", 10).await, vec![line("a"), line("bb"), line(""), line("ccc")]);
        // Exactly at the limit is fine, one byte more is skipped, and the next line still reads.
        assert_eq!(read_all(b"12345\r\n123456\nok\n", 5).await, vec![line("12345"), Request::TooLong, line("ok")]);
        assert_eq!(read_all(b"1234567890123\nok\n", 5).await, vec![Request::TooLong, line("ok")]);
        assert_eq!(read_all(b"\xff\xfe\nok\n", 5).await, vec![Request::NotUtf8, line("ok")]);
    }
}
