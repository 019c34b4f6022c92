//! Import jobs: rows from InfluxDB 1.x, PostgreSQL (TimescaleDB) or an HTTP
//! JSON endpoint into a measurement (through the time-series ingest path,
//! with its grant checks and write-ahead log) or a table.
//!
//! ```sql
//! IMPORT INTO MEASUREMENT cpu FROM INFLUXDB 'http://influx:8086'
//!     (DATABASE 'telegraf', MEASUREMENT 'cpu', START '2024-01-01T00:00:00Z', CHUNK_SIZE 10000, SECRET 'influx');
//! IMPORT INTO TABLE readings FROM POSTGRES (SECRET 'pg', TABLE 'public.readings');
//! IMPORT INTO MEASUREMENT weather FROM POSTGRES (SECRET 'pg', QUERY 'SELECT * FROM obs', TIME 'ts', TAGS 'station');
//! IMPORT INTO TABLE events FROM JSON 'https://api.example.com/events' (FORMAT 'ndjson', SECRET 'api');
//! ```
//!
//! A source is read in batches; each batch is written (and committed) before
//! the next is read, so a failure or a cancel keeps what was written and the
//! run's history says how far it got and where it stopped. Credentials come
//! from Pond secrets only (TYPE http for InfluxDB and JSON endpoints, TYPE
//! postgres for PostgreSQL), never from the statement, so no statement,
//! listing or error can show them; errors from a source are redacted with
//! the secret's values. Every network step has a timeout.

use std::collections::BTreeMap;
use std::sync::mpsc;
use std::sync::Arc;
use std::time::Duration;

use arrow_array::RecordBatch;
use serde::Deserialize;

use crate::convert::{self, ColumnType, PointShape, Precision};
use crate::cq::Cursor;
use crate::runs::Progress;
use crate::{Caller, Error, Host, HttpCredentials, PostgresSource, Result, WriteError};

/// Rows per batch read from a JSON source or written to a table.
const BATCH_ROWS: usize = 10_000;
/// Line protocol sent to the ingester at once.
const WRITE_BYTES: usize = 4 * 1024 * 1024;
/// Default InfluxDB chunk size.
const DEFAULT_CHUNK: u32 = 10_000;
/// How long a source may stay silent before the run fails.
const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// Largest JSON array document (NDJSON streams without a bound).
const MAX_ARRAY_BYTES: usize = 512 * 1024 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Into {
    Measurement,
    Table,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum From {
    Influxdb,
    Postgres,
    Json,
}

/// An import as written (SQL) or posted (HTTP `{"type": "import", …}`).
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Request {
    pub into: Into,
    /// `[db.]measurement` or `[db.][schema.]table`.
    pub target: String,
    pub from: From,
    /// The InfluxDB server or the JSON endpoint.
    #[serde(default)]
    pub url: Option<String>,
    /// Option names are case-insensitive.
    #[serde(default)]
    pub options: BTreeMap<String, serde_json::Value>,
}

/// Whether the words start an import statement.
pub fn is_statement(words: &[&str]) -> bool {
    matches!(words, ["import", "into", ..])
}

/// `IMPORT INTO {MEASUREMENT|TABLE} name FROM {INFLUXDB 'url'|POSTGRES|JSON 'url'} [(options)]`.
pub fn parse(text: &str) -> Result<Request> {
    let usage = "IMPORT INTO {MEASUREMENT | TABLE} name FROM {INFLUXDB 'url' | POSTGRES | JSON 'url'} (OPTION 'value', …)";
    let mut c = Cursor { s: text, i: 0 };
    c.expect("import", "IMPORT")?;
    c.expect("into", "INTO")?;
    let into = if c.word("measurement") {
        Into::Measurement
    } else if c.word("table") {
        Into::Table
    } else {
        return Err(Error::Syntax(format!("expected MEASUREMENT or TABLE after IMPORT INTO: {usage}")));
    };
    let parts = c.qualified_name().ok_or_else(|| Error::Syntax(format!("expected the target's name: {usage}")))?;
    let target = parts.iter().map(|p| quote_ident(p)).collect::<Vec<_>>().join(".");
    c.expect("from", &format!("FROM after the target: {usage}"))?;
    let from = if c.word("influxdb") {
        From::Influxdb
    } else if c.word("postgres") || c.word("postgresql") {
        From::Postgres
    } else if c.word("json") {
        From::Json
    } else {
        return Err(Error::Syntax(format!("expected INFLUXDB, POSTGRES or JSON after FROM: {usage}")));
    };
    let url = c.string();
    let options = c.options()?.into_iter().map(|(k, v)| (k, serde_json::Value::String(v))).collect();
    if !c.rest().is_empty() {
        return Err(Error::Syntax(format!("unexpected text after the options: {usage}")));
    }
    Ok(Request { into, target, from, url, options })
}

pub(crate) fn quote_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Options, upper-cased, as text; unknown ones are refused with the list of known ones.
struct Options {
    map: BTreeMap<String, String>,
}

impl Options {
    fn new(raw: &BTreeMap<String, serde_json::Value>, allowed: &[&str], what: &str) -> Result<Options> {
        let mut map = BTreeMap::new();
        for (k, v) in raw {
            let key = k.to_ascii_uppercase();
            if !allowed.contains(&key.as_str()) {
                return Err(Error::Invalid(format!("{what} has no option {key} (its options: {})", allowed.join(", "))));
            }
            let text = match v {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Array(items) => {
                    items.iter().map(|i| i.as_str().map(str::to_string).unwrap_or_else(|| i.to_string())).collect::<Vec<_>>().join(",")
                }
                other => other.to_string(),
            };
            map.insert(key, text);
        }
        Ok(Options { map })
    }

    fn get(&self, k: &str) -> Option<&str> {
        self.map.get(k).map(String::as_str)
    }

    fn require(&self, k: &str, what: &str) -> Result<&str> {
        self.get(k).ok_or_else(|| Error::Invalid(format!("{what} needs the option {k}")))
    }

    fn list(&self, k: &str) -> Vec<String> {
        self.get(k).map(|s| s.split(',').map(|t| t.trim().to_string()).filter(|t| !t.is_empty()).collect()).unwrap_or_default()
    }

    fn seconds(&self, k: &str, default: Duration) -> Result<Duration> {
        match self.get(k) {
            None => Ok(default),
            Some(s) => match s.parse::<u64>() {
                Ok(n) if n > 0 && n <= 86_400 => Ok(Duration::from_secs(n)),
                _ => Err(Error::Invalid(format!("{k} is a number of seconds from 1 to 86400, not '{s}'"))),
            },
        }
    }
}

/// Where the rows go, resolved.
#[derive(Debug, Clone)]
pub enum Target {
    Measurement { database: String, name: String },
    Table { database: String, schema: String, name: String, exists: bool },
}

impl Target {
    pub fn describe(&self) -> String {
        match self {
            Target::Measurement { database, name } => format!("measurement {database}.{name}"),
            Target::Table { database, schema, name, .. } => format!("table {database}.{schema}.{name}"),
        }
    }

    fn qualified_table(&self) -> String {
        match self {
            Target::Table { database, schema, name, .. } => {
                format!("{}.{}.{}", quote_ident(database), quote_ident(schema), quote_ident(name))
            }
            Target::Measurement { .. } => String::new(),
        }
    }
}

/// What is read.
#[derive(Debug, Clone)]
pub enum Source {
    Influx {
        url: reqwest::Url,
        database: String,
        measurement: String,
        rp: Option<String>,
        start: Option<String>,
        end: Option<String>,
        chunk: u32,
        secret: Option<String>,
    },
    Postgres {
        secret: String,
        query: String,
    },
    Json {
        url: reqwest::Url,
        format: JsonFormat,
        secret: Option<String>,
    },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum JsonFormat {
    Auto,
    Array,
    Ndjson,
}

/// A checked import, ready to run.
#[derive(Debug, Clone)]
pub struct Plan {
    pub target: Target,
    pub source: Source,
    /// Measurement targets: the time column and the tag columns (InfluxDB sources bring their own).
    pub time: String,
    pub tags: Vec<String>,
    pub precision: Precision,
    pub timeout: Duration,
    pub owner: String,
}

fn check_url(text: &str, what: &str) -> Result<reqwest::Url> {
    let url = reqwest::Url::parse(text).map_err(|e| Error::Invalid(format!("{what} URL '{text}' is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(Error::Invalid(format!("{what} URL must be http:// or https://, not {}://", url.scheme())));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Error::Invalid(format!(
            "{what} URL carries credentials: put them in a secret (CREATE SECRET name (TYPE http, USER '…', PASSWORD '…')) and name it with SECRET 'name'"
        )));
    }
    Ok(url)
}

/// The URL as shown: scheme, host, port and path, without the query.
fn shown_url(url: &reqwest::Url) -> String {
    let mut u = url.clone();
    u.set_query(None);
    u.to_string()
}

impl Plan {
    /// Validates a request for `caller` (target resolved in their current database and schema).
    pub fn new(req: Request, caller: &Caller, host: &dyn Host) -> Result<Plan> {
        let common = ["TIME", "TAGS", "PRECISION", "TIMEOUT", "SECRET"];
        let (allowed, what): (Vec<&str>, &str) = match req.from {
            From::Influxdb => (
                ["DATABASE", "MEASUREMENT", "RETENTION_POLICY", "START", "END", "CHUNK_SIZE"].iter().chain(&common).copied().collect(),
                "FROM INFLUXDB",
            ),
            From::Postgres => (["TABLE", "QUERY"].iter().chain(&common).copied().collect(), "FROM POSTGRES"),
            From::Json => (["FORMAT"].iter().chain(&common).copied().collect(), "FROM JSON"),
        };
        let o = Options::new(&req.options, &allowed, what)?;
        let secret = o.get("SECRET").map(str::to_string);
        if secret.is_some() && !caller.superuser {
            return Err(Error::PermissionDenied("permission denied: only superusers may use secrets in an import".into()));
        }
        let source = match req.from {
            From::Influxdb => {
                let url = check_url(
                    req.url
                        .as_deref()
                        .ok_or_else(|| Error::Invalid("FROM INFLUXDB needs the server's URL: FROM INFLUXDB 'http://host:8086'".into()))?,
                    "the InfluxDB",
                )?;
                let chunk = match o.get("CHUNK_SIZE") {
                    None => DEFAULT_CHUNK,
                    Some(s) => s
                        .parse::<u32>()
                        .ok()
                        .filter(|n| (1..=1_000_000).contains(n))
                        .ok_or_else(|| Error::Invalid(format!("CHUNK_SIZE is a number from 1 to 1000000, not '{s}'")))?,
                };
                for (k, v) in [("START", o.get("START")), ("END", o.get("END"))] {
                    if let Some(v) = v {
                        if chrono::DateTime::parse_from_rfc3339(v).is_err() {
                            return Err(Error::Invalid(format!("{k} '{v}' is not an RFC 3339 time such as 2024-01-01T00:00:00Z")));
                        }
                    }
                }
                Source::Influx {
                    url,
                    database: o.require("DATABASE", what)?.to_string(),
                    measurement: o.require("MEASUREMENT", what)?.to_string(),
                    rp: o.get("RETENTION_POLICY").map(str::to_string),
                    start: o.get("START").map(str::to_string),
                    end: o.get("END").map(str::to_string),
                    chunk,
                    secret: secret.clone(),
                }
            }
            From::Postgres => {
                if !caller.superuser {
                    return Err(Error::PermissionDenied(
                        "permission denied: importing from PostgreSQL needs a postgres secret, which only superusers use".into(),
                    ));
                }
                let secret =
                    secret.clone().ok_or_else(|| Error::Invalid("FROM POSTGRES needs SECRET 'name' (a secret of TYPE postgres)".into()))?;
                if req.url.is_some() {
                    return Err(Error::Invalid("FROM POSTGRES takes its connection from SECRET 'name', not from a string".into()));
                }
                let query = match (o.get("TABLE"), o.get("QUERY")) {
                    (Some(t), None) => {
                        let parts: Vec<&str> = t.split('.').collect();
                        if parts.is_empty() || parts.len() > 2 || parts.iter().any(|p| p.is_empty()) {
                            return Err(Error::Invalid(format!("TABLE '{t}' is [schema.]table")));
                        }
                        let (schema, table) = if parts.len() == 2 { (parts[0], parts[1]) } else { ("public", parts[0]) };
                        format!("SELECT * FROM {}.{}", pg_ident(schema), pg_ident(table))
                    }
                    (None, Some(q)) => q.to_string(),
                    _ => return Err(Error::Invalid("FROM POSTGRES needs one of TABLE 'schema.table' or QUERY 'SELECT …'".into())),
                };
                Source::Postgres { secret, query }
            }
            From::Json => {
                let url = check_url(
                    req.url.as_deref().ok_or_else(|| Error::Invalid("FROM JSON needs the endpoint's URL: FROM JSON 'https://…'".into()))?,
                    "the JSON endpoint's",
                )?;
                let format = match o.get("FORMAT").map(|s| s.to_ascii_lowercase()) {
                    None => JsonFormat::Auto,
                    Some(f) if f == "auto" => JsonFormat::Auto,
                    Some(f) if f == "array" => JsonFormat::Array,
                    Some(f) if f == "ndjson" || f == "jsonl" || f == "newline_delimited" => JsonFormat::Ndjson,
                    Some(f) => return Err(Error::Invalid(format!("FORMAT '{f}' is one of auto, array, ndjson"))),
                };
                Source::Json { url, format, secret: secret.clone() }
            }
        };
        let target = resolve_target(&req, caller, host)?;
        let precision = o.get("PRECISION").map(Precision::parse).transpose()?.unwrap_or(Precision::Ns);
        Ok(Plan {
            target,
            source,
            time: o.get("TIME").unwrap_or("time").to_string(),
            tags: o.list("TAGS"),
            precision,
            timeout: o.seconds("TIMEOUT", DEFAULT_TIMEOUT)?,
            owner: caller.user.clone(),
        })
    }

    /// The source as listed: no credentials, no query string.
    pub fn describe_source(&self) -> String {
        match &self.source {
            Source::Influx { url, database, measurement, .. } => {
                format!("influxdb {} db={database} measurement={measurement}", shown_url(url))
            }
            Source::Postgres { secret, query } => {
                let q: String = query.chars().take(200).collect();
                format!("postgres secret={secret} query={q}")
            }
            Source::Json { url, .. } => format!("json {}", shown_url(url)),
        }
    }
}

fn pg_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('"', "\"\""))
}

/// Splits a target written as quoted identifiers joined by dots.
fn target_parts(text: &str) -> Result<Vec<String>> {
    let mut c = Cursor { s: text, i: 0 };
    let parts = c.qualified_name().ok_or_else(|| Error::Invalid(format!("target '{text}' is not a name")))?;
    if !c.rest().is_empty() {
        return Err(Error::Invalid(format!("target '{text}' is [database.][schema.]name")));
    }
    Ok(parts)
}

fn resolve_target(req: &Request, caller: &Caller, host: &dyn Host) -> Result<Target> {
    let parts = target_parts(&req.target)?;
    let dbs = host.databases();
    let find_db = |n: &str| dbs.iter().find(|d| d.eq_ignore_ascii_case(n)).cloned();
    match req.into {
        Into::Measurement => {
            let (database, name) = match parts.as_slice() {
                [m] => (caller.database.clone(), m.clone()),
                [d, m] => (
                    find_db(d).ok_or_else(|| Error::Invalid(format!("database '{d}' does not exist (SHOW DATABASES lists them)")))?,
                    m.clone(),
                ),
                _ => return Err(Error::Invalid("a measurement is named [database.]measurement".into())),
            };
            Ok(Target::Measurement { database, name })
        }
        Into::Table => {
            let (db, schema, name) = match parts.as_slice() {
                [t] => (caller.database.clone(), caller.schema.clone(), t.clone()),
                [a, t] => match find_db(a) {
                    Some(d) => (d, "main".to_string(), t.clone()),
                    None => (caller.database.clone(), a.clone(), t.clone()),
                },
                [d, s, t] => (d.clone(), s.clone(), t.clone()),
                _ => return Err(Error::Invalid("a table is named [database.][schema.]table".into())),
            };
            let fq = format!("{}.{}.{}", quote_ident(&db), quote_ident(&schema), quote_ident(&name));
            let conn = host.connection().map_err(Error::Host)?;
            let exists: bool = conn
                .prepare("SELECT count(*) > 0 FROM duckdb_tables() WHERE database_name = ? AND schema_name = ? AND table_name = ?")?
                .query_row([&db, &schema, &name], |r| r.get(0))?;
            // What the owner must be allowed: to add rows, or to create the table.
            let probe = if exists { format!("INSERT INTO {fq} VALUES (NULL)") } else { format!("CREATE TABLE {fq} (x INTEGER)") };
            let database = host.target_database(&probe, &caller.database)?;
            host.authorize(&caller.user, &caller.database, &caller.schema, &probe)?;
            Ok(Target::Table { database, schema, name, exists })
        }
    }
}

/// Redacts the values of the secret a source uses.
struct Redactor {
    values: Vec<String>,
    host_redact: Option<crate::Redact>,
}

impl Redactor {
    fn apply(&self, text: &str) -> String {
        let mut t = match &self.host_redact {
            Some(r) => r(text),
            None => text.to_string(),
        };
        for v in self.values.iter().filter(|v| v.len() >= 3) {
            t = t.replace(v.as_str(), "<redacted>");
        }
        t
    }
}

/// Writes batches to the target.
struct Sink<'a> {
    plan: &'a Plan,
    host: &'a dyn Host,
    conn: Option<duckdb::Connection>,
    stage: String,
    table_exists: bool,
    rows_before: u64,
}

impl<'a> Sink<'a> {
    fn new(plan: &'a Plan, host: &'a dyn Host, id: u64) -> Result<Sink<'a>> {
        let (conn, exists) = match &plan.target {
            Target::Table { exists, .. } => (Some(host.connection().map_err(Error::Host)?), *exists),
            Target::Measurement { .. } => (None, false),
        };
        Ok(Sink { plan, host, conn, stage: format!("_pond_import_{id}"), table_exists: exists, rows_before: 0 })
    }

    /// Writes one batch (committed when this returns). `tags`: the tag columns of a measurement.
    fn write(&mut self, batch: RecordBatch, tags: &[String], progress: &Progress, bytes: u64) -> Result<()> {
        let rows = batch.num_rows() as u64;
        if rows == 0 {
            return Ok(());
        }
        let first = self.rows_before + 1;
        match &self.plan.target {
            Target::Measurement { database, name } => {
                let shape = PointShape { measurement: name, time: &self.plan.time, tags, precision: self.plan.precision };
                let (lines, index) = convert::to_lines(&batch, &shape, first)?;
                self.send_lines(database, lines, &index, first, progress)?;
            }
            Target::Table { .. } => self.append_table(batch)?,
        }
        self.rows_before += rows;
        progress.add_batch(rows, bytes);
        Ok(())
    }

    fn send_lines(&self, database: &str, lines: Vec<u8>, index: &[usize], first: u64, progress: &Progress) -> Result<()> {
        // Pieces of at most WRITE_BYTES, cut at line ends.
        let mut start = 0;
        let mut line_no = 0usize;
        while start < lines.len() {
            let mut end = (start + WRITE_BYTES).min(lines.len());
            if end < lines.len() {
                end = lines[..end].iter().rposition(|b| *b == b'\n').map(|p| p + 1).filter(|p| *p > start).unwrap_or(lines.len());
            }
            let piece = lines[start..end].to_vec();
            let n_lines = piece.iter().filter(|b| **b == b'\n').count();
            let mut waited = Duration::ZERO;
            loop {
                match self.host.write_lines(&self.plan.owner, database, piece.clone()) {
                    Ok(errors) => {
                        if let Some((line, msg)) = errors.first() {
                            let row = index.get(line_no + line.saturating_sub(1)).map(|r| first + *r as u64).unwrap_or(first);
                            return Err(Error::Invalid(format!("source row {row} was refused by the measurement: {msg}")));
                        }
                        break;
                    }
                    Err(WriteError::Busy) if waited < Duration::from_secs(120) && !progress.cancelled() => {
                        std::thread::sleep(Duration::from_millis(200));
                        waited += Duration::from_millis(200);
                    }
                    Err(WriteError::Busy) => return Err(Error::Host("the ingest queue stayed full for two minutes".into())),
                    Err(WriteError::Failed(e)) => return Err(e),
                }
            }
            line_no += n_lines;
            start = end;
        }
        Ok(())
    }

    fn append_table(&mut self, batch: RecordBatch) -> Result<()> {
        let conn = self.conn.as_ref().ok_or_else(|| Error::Host("no connection for the table".into()))?;
        let batch = convert::appendable(batch)?;
        let cols = batch
            .schema()
            .fields()
            .iter()
            .map(|f| format!("{} {}", quote_ident(f.name()), convert::duck_type(f.data_type()).unwrap_or_else(|| "VARCHAR".into())))
            .collect::<Vec<_>>()
            .join(", ");
        let stage = quote_ident(&self.stage);
        conn.execute_batch(&format!("CREATE OR REPLACE TEMP TABLE {stage} ({cols})"))?;
        {
            let mut app = conn.appender_to_catalog_and_db(&self.stage, "temp", "main")?;
            app.append_record_batch(batch)?;
            app.flush()?;
        }
        let target = self.plan.target.qualified_table();
        conn.execute_batch("BEGIN TRANSACTION")?;
        let r = (|| -> Result<()> {
            if !self.table_exists {
                conn.execute_batch(&format!("CREATE TABLE IF NOT EXISTS {target} AS SELECT * FROM temp.main.{stage} WITH NO DATA"))?;
            }
            conn.execute_batch(&format!("INSERT INTO {target} BY NAME SELECT * FROM temp.main.{stage}")).map_err(|e| {
                Error::Invalid(format!(
                    "rows {} to {} do not fit {}: {e}",
                    self.rows_before + 1,
                    self.rows_before + conn_rows(conn, &stage),
                    self.plan.target.describe()
                ))
            })?;
            conn.execute_batch("COMMIT")?;
            Ok(())
        })();
        if r.is_err() {
            let _ = conn.execute_batch("ROLLBACK");
        }
        r?;
        self.table_exists = true;
        if let Target::Table { database, .. } = &self.plan.target {
            self.host.data_changed(database);
        }
        Ok(())
    }

    fn close(self) {
        if let Some(conn) = &self.conn {
            let _ = conn.execute_batch(&format!("DROP TABLE IF EXISTS temp.main.{}", quote_ident(&self.stage)));
        }
    }
}

fn conn_rows(conn: &duckdb::Connection, stage: &str) -> u64 {
    conn.query_row(&format!("SELECT count(*) FROM temp.main.{stage}"), [], |r| r.get::<_, i64>(0)).map(|n| n as u64).unwrap_or(0)
}

/// Runs an import to its end (the caller records the outcome).
pub fn run(plan: &Plan, host: &dyn Host, id: u64, progress: &Progress) -> Result<()> {
    let mut sink = Sink::new(plan, host, id)?;
    let r = match &plan.source {
        Source::Influx { .. } => influx(plan, host, &mut sink, progress),
        Source::Postgres { secret, query } => postgres(host, secret, query, &mut sink, &plan.tags, progress),
        Source::Json { url, format, secret } => json(plan, host, url, *format, secret.as_deref(), &mut sink, progress),
    };
    sink.close();
    if progress.cancelled() {
        return Err(Error::Invalid("cancelled".into()));
    }
    r
}

// ---- HTTP sources -------------------------------------------------------

fn client(timeout: Duration) -> Result<reqwest::Client> {
    reqwest::Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .read_timeout(timeout)
        .user_agent(concat!("pond/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Error::Host(format!("cannot build an HTTP client: {e}")))
}

fn authorized(req: reqwest::RequestBuilder, creds: &Option<HttpCredentials>) -> reqwest::RequestBuilder {
    match creds {
        Some(HttpCredentials { bearer: Some(t), .. }) => req.bearer_auth(t),
        Some(HttpCredentials { user: Some(u), password, .. }) => req.basic_auth(u, password.clone()),
        _ => req,
    }
}

fn credentials(host: &dyn Host, secret: Option<&str>) -> Result<(Option<HttpCredentials>, Redactor)> {
    match secret {
        None => Ok((None, Redactor { values: Vec::new(), host_redact: None })),
        Some(s) => {
            let c = host.http_credentials(s)?;
            let values = [c.password.clone(), c.bearer.clone()].into_iter().flatten().collect();
            Ok((Some(c), Redactor { values, host_redact: None }))
        }
    }
}

/// An error of reqwest, said plainly (never with the URL's query, which may hold a query text).
fn http_error(what: &str, e: &reqwest::Error, timeout: Duration) -> String {
    if e.is_timeout() {
        return format!("{what}: no answer within {}s", if e.is_connect() { CONNECT_TIMEOUT.as_secs() } else { timeout.as_secs() });
    }
    if e.is_connect() {
        let mut cause = String::new();
        let mut s: Option<&dyn std::error::Error> = std::error::Error::source(e);
        while let Some(inner) = s {
            cause = inner.to_string();
            s = inner.source();
        }
        return format!("{what}: cannot connect ({cause})");
    }
    let mut text = e.to_string();
    if let Some(u) = e.url() {
        text = text.replace(u.as_str(), &shown_url(u));
    }
    format!("{what}: {text}")
}

/// Streams a GET's body in pieces from the I/O runtime; the response must be 2xx.
fn stream_get(
    req: reqwest::RequestBuilder,
    what: String,
    timeout: Duration,
) -> mpsc::Receiver<std::result::Result<bytes_like::Chunk, String>> {
    let (tx, rx) = mpsc::sync_channel(8);
    pond_rt::spawn(async move {
        use futures::StreamExt;
        let send = |tx: &mpsc::SyncSender<_>, item| tx.send(item).is_ok();
        let resp = match tokio::time::timeout(timeout + CONNECT_TIMEOUT, req.send()).await {
            Err(_) => {
                send(&tx, Err(format!("{what}: no answer within {}s", timeout.as_secs())));
                return;
            }
            Ok(Err(e)) => {
                send(&tx, Err(http_error(&what, &e, timeout)));
                return;
            }
            Ok(Ok(r)) => r,
        };
        let status = resp.status();
        if !status.is_success() {
            let body = tokio::time::timeout(timeout, resp.text()).await.ok().and_then(|r| r.ok()).unwrap_or_default();
            let body: String = body.chars().take(300).collect();
            send(&tx, Err(format!("{what}: HTTP {status}: {}", body.trim())));
            return;
        }
        let mut stream = resp.bytes_stream();
        loop {
            match tokio::time::timeout(timeout, stream.next()).await {
                Err(_) => {
                    send(&tx, Err(format!("{what}: the answer stalled (nothing for {}s)", timeout.as_secs())));
                    return;
                }
                Ok(None) => {
                    send(&tx, Ok(bytes_like::Chunk::End));
                    return;
                }
                Ok(Some(Err(e))) => {
                    send(&tx, Err(http_error(&what, &e, timeout)));
                    return;
                }
                Ok(Some(Ok(b))) => {
                    // The channel is bounded: a blocking send would hold a runtime thread, so wait here.
                    let mut item = Ok(bytes_like::Chunk::Data(b.to_vec()));
                    loop {
                        match tx.try_send(item) {
                            Ok(()) => break,
                            Err(mpsc::TrySendError::Disconnected(_)) => return,
                            Err(mpsc::TrySendError::Full(back)) => {
                                item = back;
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                        }
                    }
                }
            }
        }
    });
    rx
}

mod bytes_like {
    pub enum Chunk {
        Data(Vec<u8>),
        End,
    }
}

/// The next piece of a streamed body: `Ok(None)` at its end; `Err` on failure or cancel.
fn next_piece(
    rx: &mpsc::Receiver<std::result::Result<bytes_like::Chunk, String>>,
    progress: &Progress,
    redact: &Redactor,
) -> Result<Option<Vec<u8>>> {
    loop {
        if progress.cancelled() {
            return Err(Error::Invalid("cancelled".into()));
        }
        match rx.recv_timeout(Duration::from_millis(200)) {
            Ok(Ok(bytes_like::Chunk::Data(d))) => return Ok(Some(d)),
            Ok(Ok(bytes_like::Chunk::End)) => return Ok(None),
            Ok(Err(e)) => return Err(Error::Source(redact.apply(&e))),
            Err(mpsc::RecvTimeoutError::Timeout) => continue,
            Err(mpsc::RecvTimeoutError::Disconnected) => return Err(Error::Source("the source's reader stopped".into())),
        }
    }
}

/// A whole small answer (InfluxDB's SHOW statements).
fn get_json(
    req: reqwest::RequestBuilder,
    what: &str,
    timeout: Duration,
    progress: &Progress,
    redact: &Redactor,
) -> Result<serde_json::Value> {
    let rx = stream_get(req, what.to_string(), timeout);
    let mut body = Vec::new();
    while let Some(piece) = next_piece(&rx, progress, redact)? {
        body.extend_from_slice(&piece);
        if body.len() > 64 * 1024 * 1024 {
            return Err(Error::Source(format!("{what}: the answer is larger than 64 MiB")));
        }
    }
    serde_json::from_slice(&body).map_err(|e| Error::Source(format!("{what}: the answer is not JSON ({e})")))
}

// ---- InfluxDB 1.x ---------------------------------------------------------

fn influxql_ident(s: &str) -> String {
    format!("\"{}\"", s.replace('\\', "\\\\").replace('"', "\\\""))
}

fn influxql_string(s: &str) -> String {
    format!("'{}'", s.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// The first error an InfluxDB answer carries.
fn influx_error(v: &serde_json::Value) -> Option<String> {
    if let Some(e) = v.get("error").and_then(|e| e.as_str()) {
        return Some(e.to_string());
    }
    v.get("results")?.as_array()?.iter().find_map(|r| r.get("error").and_then(|e| e.as_str()).map(str::to_string))
}

/// Rows of the first series of a SHOW answer.
fn influx_show_rows(v: &serde_json::Value) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for r in v.get("results").and_then(|r| r.as_array()).into_iter().flatten() {
        for s in r.get("series").and_then(|s| s.as_array()).into_iter().flatten() {
            for row in s.get("values").and_then(|v| v.as_array()).into_iter().flatten() {
                out.push(
                    row.as_array().map(|a| a.iter().map(|x| x.as_str().unwrap_or_default().to_string()).collect()).unwrap_or_default(),
                );
            }
        }
    }
    out
}

#[derive(Deserialize)]
struct InfluxChunk<'a> {
    #[serde(borrow, default)]
    results: Vec<InfluxResult<'a>>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct InfluxResult<'a> {
    #[serde(borrow, default)]
    series: Vec<InfluxSeries<'a>>,
    #[serde(default)]
    error: Option<String>,
}

#[derive(Deserialize)]
struct InfluxSeries<'a> {
    columns: Vec<String>,
    #[serde(borrow, default)]
    values: Vec<Vec<&'a serde_json::value::RawValue>>,
}

fn influx(plan: &Plan, host: &dyn Host, sink: &mut Sink<'_>, progress: &Progress) -> Result<()> {
    let Source::Influx { url, database, measurement, rp, start, end, chunk, secret } = &plan.source else {
        return Err(Error::Invalid("not an InfluxDB source".into()));
    };
    let (creds, redact) = credentials(host, secret.as_deref())?;
    let client = client(plan.timeout)?;
    let mut query_url = url.clone();
    query_url.set_path(&format!("{}/query", url.path().trim_end_matches('/')));
    query_url.set_query(None);
    let from = match rp {
        Some(rp) => format!("{}.{}", influxql_ident(rp), influxql_ident(measurement)),
        None => influxql_ident(measurement),
    };
    let shown = format!("InfluxDB at {}", shown_url(url));
    let show = |q: String| -> Result<Vec<Vec<String>>> {
        let req = authorized(client.get(query_url.clone()).query(&[("db", database.as_str()), ("q", q.as_str())]), &creds);
        let v = get_json(req, &shown, plan.timeout, progress, &redact)?;
        if let Some(e) = influx_error(&v) {
            return Err(Error::Source(redact.apply(&format!("{shown}: {e}"))));
        }
        Ok(influx_show_rows(&v))
    };
    // Types first: InfluxDB's JSON cannot tell a float 2.0 from an integer 2.
    let mut types: BTreeMap<String, ColumnType> = BTreeMap::new();
    for row in show(format!("SHOW FIELD KEYS FROM {from}"))? {
        if let [k, t] = row.as_slice() {
            let ct = match t.as_str() {
                "float" => ColumnType::Float,
                "integer" | "unsigned" => ColumnType::Int,
                "boolean" => ColumnType::Bool,
                _ => ColumnType::Str,
            };
            types.entry(k.clone()).or_insert(ct);
        }
    }
    if types.is_empty() {
        return Err(Error::Source(format!("{shown}: measurement '{measurement}' of database '{database}' has no fields (does it exist?)")));
    }
    let mut tags = Vec::new();
    for row in show(format!("SHOW TAG KEYS FROM {from}"))? {
        if let Some(k) = row.first() {
            tags.push(k.clone());
        }
    }
    let mut conds = Vec::new();
    if let Some(s) = start {
        conds.push(format!("time >= {}", influxql_string(s)));
    }
    if let Some(e) = end {
        conds.push(format!("time < {}", influxql_string(e)));
    }
    let q = format!("SELECT * FROM {from}{}", if conds.is_empty() { String::new() } else { format!(" WHERE {}", conds.join(" AND ")) });
    let chunk_text = chunk.to_string();
    let req = authorized(
        client.get(query_url.clone()).query(&[
            ("db", database.as_str()),
            ("q", q.as_str()),
            ("epoch", "ns"),
            ("chunked", "true"),
            ("chunk_size", chunk_text.as_str()),
        ]),
        &creds,
    );
    let rx = stream_get(req, shown.clone(), plan.timeout);
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk_no = 0u64;
    let mut rows_seen = 0u64;
    let mut ended = false;
    while !ended {
        match next_piece(&rx, progress, &redact)? {
            Some(piece) => buf.extend_from_slice(&piece),
            None => ended = true,
        }
        // Every complete JSON object in the buffer is one chunk of rows.
        let mut consumed = 0;
        let mut batches = Vec::new();
        {
            let mut it = serde_json::Deserializer::from_slice(&buf).into_iter::<InfluxChunk<'_>>();
            loop {
                match it.next() {
                    None => {
                        consumed = it.byte_offset();
                        break;
                    }
                    Some(Err(e)) if e.is_eof() && !ended => break,
                    Some(Err(e)) => {
                        return Err(Error::Source(format!("{shown}: chunk {} of the answer is not valid JSON ({e})", chunk_no + 1)))
                    }
                    Some(Ok(c)) => {
                        chunk_no += 1;
                        consumed = it.byte_offset();
                        if let Some(e) = c.error.or_else(|| c.results.iter().find_map(|r| r.error.clone())) {
                            return Err(Error::Source(redact.apply(&format!("{shown}: {e}"))));
                        }
                        for r in &c.results {
                            for s in &r.series {
                                let columns: Vec<(String, ColumnType)> = s
                                    .columns
                                    .iter()
                                    .map(|name| {
                                        let t = if name == "time" {
                                            ColumnType::Time
                                        } else if tags.contains(name) {
                                            ColumnType::Str
                                        } else {
                                            types.get(name).copied().unwrap_or(ColumnType::Str)
                                        };
                                        (name.clone(), t)
                                    })
                                    .collect();
                                let b = convert::positional_batch(&columns, &s.values, rows_seen + 1)
                                    .map_err(|e| Error::Source(format!("{shown}, chunk {chunk_no}: {e}")))?;
                                rows_seen += b.num_rows() as u64;
                                batches.push(b);
                            }
                        }
                    }
                }
            }
        }
        let bytes = consumed as u64;
        buf.drain(..consumed);
        let n = batches.len().max(1) as u64;
        for b in batches {
            if progress.cancelled() {
                return Err(Error::Invalid("cancelled".into()));
            }
            sink.write(b, &tags, progress, bytes / n)?;
        }
    }
    Ok(())
}

// ---- JSON endpoints -------------------------------------------------------

#[allow(clippy::too_many_arguments)]
fn json(
    plan: &Plan,
    host: &dyn Host,
    url: &reqwest::Url,
    format: JsonFormat,
    secret: Option<&str>,
    sink: &mut Sink<'_>,
    progress: &Progress,
) -> Result<()> {
    let (creds, redact) = credentials(host, secret)?;
    let client = client(plan.timeout)?;
    let shown = format!("JSON endpoint {}", shown_url(url));
    let req = authorized(client.get(url.clone()).header("accept", "application/json, application/x-ndjson"), &creds);
    let rx = stream_get(req, shown.clone(), plan.timeout);
    let mut buf: Vec<u8> = Vec::new();
    let mut format = format;
    let mut pending: Vec<Vec<(String, String)>> = Vec::new();
    let mut pending_bytes = 0u64;
    let mut line_no = 0u64;
    let mut row_no = 0u64;
    let tags = plan.tags.clone();
    let flush = |pending: &mut Vec<Vec<(String, String)>>, bytes: &mut u64, first: u64, sink: &mut Sink<'_>| -> Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        let cols = convert::infer(pending, first)?;
        let b = convert::keyed_batch(&cols, pending, first)?;
        pending.clear();
        sink.write(b, &tags, progress, std::mem::take(bytes))
    };
    loop {
        let piece = next_piece(&rx, progress, &redact)?;
        let ended = piece.is_none();
        if let Some(p) = piece {
            buf.extend_from_slice(&p);
        }
        if format == JsonFormat::Auto {
            match buf.iter().find(|b| !b.is_ascii_whitespace()) {
                Some(b'[') => format = JsonFormat::Array,
                Some(_) => format = JsonFormat::Ndjson,
                None if ended => return Ok(()),
                None => continue,
            }
        }
        match format {
            JsonFormat::Array => {
                if buf.len() > MAX_ARRAY_BYTES {
                    return Err(Error::Source(format!(
                        "{shown}: a JSON array larger than 512 MiB; serve NDJSON (one object a line) instead"
                    )));
                }
                if !ended {
                    continue;
                }
                let items: Vec<Box<serde_json::value::RawValue>> = serde_json::from_slice(&buf).map_err(|e| {
                    Error::Invalid(format!(
                        "{shown}: the answer is not a JSON array of objects (line {}, column {}: {e})",
                        e.line(),
                        e.column()
                    ))
                })?;
                let total = buf.len() as u64;
                for (i, item) in items.iter().enumerate() {
                    let o: convert::Object = serde_json::from_str(item.get())
                        .map_err(|_| Error::Invalid(format!("{shown}: element {} of the array is not a JSON object", i + 1)))?;
                    pending.push(o.0);
                    if pending.len() >= BATCH_ROWS {
                        let first = row_no + 1;
                        row_no += pending.len() as u64;
                        let mut b = total * pending.len() as u64 / items.len().max(1) as u64;
                        flush(&mut pending, &mut b, first, sink)?;
                    }
                }
                let first = row_no + 1;
                let mut b = total * pending.len() as u64 / items.len().max(1) as u64;
                return flush(&mut pending, &mut b, first, sink);
            }
            _ => {
                // Complete lines; the last piece may lack its newline.
                let mut start = 0;
                while let Some(nl) = buf[start..]
                    .iter()
                    .position(|b| *b == b'\n')
                    .map(|p| start + p)
                    .or_else(|| (ended && start < buf.len()).then_some(buf.len()))
                {
                    let line = &buf[start..nl];
                    line_no += 1;
                    pending_bytes += (nl - start + 1) as u64;
                    start = (nl + 1).min(buf.len());
                    if line.iter().all(u8::is_ascii_whitespace) {
                        if nl == buf.len() {
                            break;
                        }
                        continue;
                    }
                    let o: convert::Object = match serde_json::from_slice(line) {
                        Ok(o) => o,
                        Err(e) => {
                            // The rows before the bad line are written first.
                            flush(&mut pending, &mut pending_bytes, row_no + 1, sink)?;
                            return Err(Error::Invalid(format!("{shown}: line {line_no} is not a JSON object ({e})")));
                        }
                    };
                    pending.push(o.0);
                    if pending.len() >= BATCH_ROWS {
                        let first = row_no + 1;
                        row_no += pending.len() as u64;
                        flush(&mut pending, &mut pending_bytes, first, sink)?;
                    }
                    if nl == buf.len() {
                        break;
                    }
                }
                buf.drain(..start.min(buf.len()));
                if ended {
                    let first = row_no + 1;
                    return flush(&mut pending, &mut pending_bytes, first, sink);
                }
            }
        }
    }
}

// ---- PostgreSQL -----------------------------------------------------------

fn postgres(host: &dyn Host, secret: &str, query: &str, sink: &mut Sink<'_>, tags: &[String], progress: &Progress) -> Result<()> {
    let src: PostgresSource = host.postgres_source(secret)?;
    let redact = Redactor { values: Vec::new(), host_redact: Some(src.redact.clone()) };
    let shown = format!("PostgreSQL at {}", src.shown);
    let (tx, rx) = mpsc::sync_channel::<std::result::Result<Option<RecordBatch>, String>>(4);
    let (htx, hrx) = mpsc::channel::<Arc<duckdb::InterruptHandle>>();
    let libpq = src.libpq.clone();
    let scanner = src.scanner.clone();
    let query = query.to_string();
    let shown2 = shown.clone();
    let redact2 = Redactor { values: Vec::new(), host_redact: Some(src.redact.clone()) };
    let reader = std::thread::Builder::new()
        .name("pond-import-pg".into())
        .spawn(move || {
            let run = || -> std::result::Result<(), String> {
                let conn = duckdb::Connection::open_in_memory().map_err(|e| e.to_string())?;
                let _ = htx.send(conn.interrupt_handle());
                conn.execute_batch(&format!("LOAD '{}'", scanner.display().to_string().replace('\'', "''")))
                    .map_err(|e| format!("cannot load DuckDB's postgres_scanner extension: {e}"))?;
                conn.execute_batch(&format!("ATTACH '{}' AS src (TYPE postgres, READ_ONLY)", libpq.replace('\'', "''")))
                    .map_err(|e| format!("{shown2}: {}", redact2.apply(&e.to_string())))?;
                let sql = format!("SELECT * FROM postgres_query('src', '{}')", query.replace('\'', "''"));
                let mut stmt = conn.prepare(&sql).map_err(|e| format!("{shown2}: {}", redact2.apply(&e.to_string())))?;
                let batches = stmt.stream_arrow([]).map_err(|e| format!("{shown2}: {}", redact2.apply(&e.to_string())))?;
                for b in batches {
                    if tx.send(Ok(Some(b))).is_err() {
                        return Ok(());
                    }
                }
                let _ = tx.send(Ok(None));
                Ok(())
            };
            // duckdb's Arrow stream panics when a fetch fails half-way (the source went away).
            let outcome = match std::panic::catch_unwind(std::panic::AssertUnwindSafe(run)) {
                Ok(r) => r,
                Err(p) => Err(p
                    .downcast_ref::<String>()
                    .cloned()
                    .or_else(|| p.downcast_ref::<&str>().map(|s| s.to_string()))
                    .unwrap_or_else(|| "the read stopped".into())),
            };
            if let Err(e) = outcome {
                let _ = tx.send(Err(format!("{shown2}: {}", redact2.apply(&e))));
            }
        })
        .map_err(|e| Error::Host(format!("cannot start the PostgreSQL reader: {e}")))?;
    let handle = hrx.recv_timeout(Duration::from_secs(5)).ok();
    progress.set_interrupt(handle.clone());
    let mut pending: Vec<RecordBatch> = Vec::new();
    let mut pending_rows = 0usize;
    let write = |pending: &mut Vec<RecordBatch>, rows: &mut usize, sink: &mut Sink<'_>| -> Result<()> {
        if pending.is_empty() {
            return Ok(());
        }
        let schema = pending[0].schema();
        let b = arrow_select::concat::concat_batches(&schema, pending.iter()).map_err(|e| Error::Invalid(e.to_string()))?;
        pending.clear();
        *rows = 0;
        let bytes = b.get_array_memory_size() as u64;
        sink.write(b, tags, progress, bytes)
    };
    let r = (|| -> Result<()> {
        loop {
            if progress.cancelled() {
                return Err(Error::Invalid("cancelled".into()));
            }
            match rx.recv_timeout(Duration::from_millis(200)) {
                Ok(Ok(Some(b))) => {
                    pending_rows += b.num_rows();
                    pending.push(b);
                    if pending_rows >= BATCH_ROWS * 5 {
                        write(&mut pending, &mut pending_rows, sink)?;
                    }
                }
                Ok(Ok(None)) => return write(&mut pending, &mut pending_rows, sink),
                Ok(Err(e)) => {
                    write(&mut pending, &mut pending_rows, sink)?;
                    return Err(Error::Source(e));
                }
                Err(mpsc::RecvTimeoutError::Timeout) => {}
                Err(mpsc::RecvTimeoutError::Disconnected) => return Err(Error::Source(format!("{shown}: the reader stopped"))),
            }
        }
    })();
    progress.set_interrupt(None);
    drop(rx);
    // A reader still inside a query is stopped rather than waited for.
    if let Some(h) = handle {
        h.interrupt();
    }
    let _ = reader.join();
    r.map_err(|e| match e {
        Error::Source(m) => Error::Source(redact.apply(&m)),
        other => other,
    })
}
