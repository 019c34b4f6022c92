//! The source: a PostgreSQL connection string, parsed once, shown only as
//! `host:port/db`, and turned into a control client (catalog, slots,
//! publications, triggers) or a replication client.

use std::str::FromStr;
use std::time::Duration;

use tokio_postgres::config::{Host, SslMode};

use crate::error::{Error, Result};
use crate::rt;

/// How long connecting to the source may take before it is reported as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// A PostgreSQL source. `Debug` and `Display` show `host:port/db` only.
#[derive(Clone)]
pub struct Source {
    config: tokio_postgres::Config,
    host: String,
    port: u16,
    user: String,
    password: String,
    dbname: String,
}

impl std::fmt::Debug for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Source({self})")
    }
}

impl std::fmt::Display for Source {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}/{}", self.host, self.port, self.dbname)
    }
}

impl Source {
    /// Parses a `postgresql://` URI or `key=value` connection string. Errors
    /// never quote the string (it holds a password).
    pub fn parse(text: &str) -> Result<Source> {
        let mut config = tokio_postgres::Config::from_str(text.trim()).map_err(|e| {
            // tokio-postgres names the offending key, never the value; keep only that.
            Error::Invalid(format!("the PostgreSQL connection string is malformed ({e})"))
        })?;
        let host = match config.get_hosts().first() {
            Some(Host::Tcp(h)) => h.clone(),
            Some(Host::Unix(p)) => p.display().to_string(),
            None => "localhost".to_string(),
        };
        if config.get_hosts().len() > 1 {
            return Err(Error::Invalid("a link connects to one PostgreSQL host; the connection string names several".into()));
        }
        let port = config.get_ports().first().copied().unwrap_or(5432);
        let user = config.get_user().ok_or_else(|| Error::Invalid("the PostgreSQL connection string names no user".into()))?.to_string();
        let password = config.get_password().map(|p| String::from_utf8_lossy(p).into_owned()).unwrap_or_default();
        let dbname = config.get_dbname().unwrap_or(&user).to_string();
        if matches!(config.get_ssl_mode(), SslMode::Require) {
            return Err(Error::Invalid(
                "sslmode=require is not supported by links yet: connect over a trusted network with sslmode=disable or prefer".into(),
            ));
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        config.application_name("pond-link");
        // Text values in the forms the type map reads (see types.rs).
        config.options("-c DateStyle=ISO -c TimeZone=UTC -c IntervalStyle=postgres -c extra_float_digits=3 -c bytea_output=hex");
        Ok(Source { config, host, port, user, password, dbname })
    }

    pub fn user(&self) -> &str {
        &self.user
    }

    pub fn dbname(&self) -> &str {
        &self.dbname
    }

    /// A libpq keyword/value string for DuckDB's postgres_scanner (never logged).
    pub fn libpq(&self) -> String {
        let q = |v: &str| format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"));
        let mut s = format!("host={} port={} user={} dbname={}", q(&self.host), self.port, q(&self.user), q(&self.dbname));
        if !self.password.is_empty() {
            s.push_str(&format!(" password={}", q(&self.password)));
        }
        s.push_str(" connect_timeout=10 application_name='pond-link-copy'");
        s
    }

    /// `text` without the connection string or the password in it.
    pub fn scrub(&self, text: &str) -> String {
        let mut t = text.replace(&self.libpq(), "<connection>");
        if self.password.len() >= 3 {
            t = t.replace(&self.password, "***");
        }
        t
    }

    /// A control connection (simple and extended queries).
    pub fn connect(&self) -> Result<tokio_postgres::Client> {
        let config = self.config.clone();
        let shown = self.to_string();
        rt::wait(async move {
            let connecting = config.connect(tokio_postgres::NoTls);
            let (client, connection) = match tokio::time::timeout(CONNECT_TIMEOUT + Duration::from_secs(1), connecting).await {
                Ok(Ok(pair)) => pair,
                Ok(Err(e)) => return Err(source_error(&shown, &e)),
                Err(_) => return Err(Error::Source(format!("cannot reach PostgreSQL at {shown}: no answer within {CONNECT_TIMEOUT:?}"))),
            };
            tokio::spawn(async move {
                if let Err(e) = connection.await {
                    tracing::debug!(error = %e, "link control connection closed");
                }
            });
            Ok(client)
        })
    }

    /// A replication connection's settings for `slot` and `publications`.
    pub fn replication(&self, slot: &str, publications: &[String]) -> pgwire_replication::ReplicationConfig {
        let publication = pgwire_replication::Publication::from(publications.to_vec());
        pgwire_replication::ReplicationConfig::new(&self.host, &self.user, &self.password, &self.dbname, slot, publication)
            .with_port(self.port)
            .with_tls(pgwire_replication::TlsConfig::disabled())
            .with_options("-c DateStyle=ISO -c TimeZone=UTC -c IntervalStyle=postgres -c extra_float_digits=3 -c bytea_output=hex")
            .with_application_name("pond-link")
            .with_status_interval(Duration::from_secs(1))
            .with_wakeup_interval(Duration::from_secs(1))
            .with_buffer_size(4096)
    }
}

/// A source error in words that name the source but never the password.
pub fn source_error(shown: &str, e: &tokio_postgres::Error) -> Error {
    if let Some(db) = e.as_db_error() {
        let what = match db.code().code() {
            "28P01" | "28000" => "authentication failed",
            "3D000" => "the database does not exist",
            "42501" => "permission denied",
            _ => "error",
        };
        return Error::Source(format!("PostgreSQL at {shown}: {what}: {} (SQLSTATE {})", db.message(), db.code().code()));
    }
    let text = e.to_string();
    if text.contains("timed out") || text.contains("timeout") {
        return Error::Source(format!("cannot reach PostgreSQL at {shown}: no answer within {CONNECT_TIMEOUT:?}"));
    }
    Error::Source(format!("cannot reach PostgreSQL at {shown}: {text}"))
}

/// Runs a control-connection future on the link runtime with a timeout.
pub fn run<T: Send + 'static>(
    shown: &str,
    what: &str,
    timeout: Duration,
    fut: impl std::future::Future<Output = std::result::Result<T, tokio_postgres::Error>> + Send + 'static,
) -> Result<T> {
    let shown = shown.to_string();
    let what = what.to_string();
    rt::wait(async move {
        match tokio::time::timeout(timeout, fut).await {
            Ok(Ok(v)) => Ok(v),
            Ok(Err(e)) => Err(match source_error(&shown, &e) {
                Error::Source(m) => Error::Source(format!("{what}: {m}")),
                other => other,
            }),
            Err(_) => Err(Error::Source(format!("{what}: PostgreSQL at {shown} did not answer within {timeout:?}"))),
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shows_host_port_db_never_the_password() {
        let s = Source::parse("postgresql://alice:s3cr3t@db.example:6543/shop").unwrap();
        assert_eq!(s.to_string(), "db.example:6543/shop");
        assert!(!format!("{s:?}").contains("s3cr3t"));
        let s = Source::parse("host=h port=5 user=bob password=pw dbname=d").unwrap();
        assert_eq!(s.to_string(), "h:5/d");
        assert!(s.libpq().contains("password='pw'"));
    }

    #[test]
    fn malformed_strings_are_refused_without_echo() {
        let e = Source::parse("postgresql://alice:s3cr3t@h:notaport/db").unwrap_err().to_string();
        assert!(!e.contains("s3cr3t"), "{e}");
        assert!(Source::parse("host=h dbname=d").unwrap_err().to_string().contains("no user"));
    }
}
