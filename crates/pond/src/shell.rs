//! `pond sql`: an interactive SQL shell over Flight SQL, with history,
//! aligned tables and timing; `-c` runs one command, `-f` a file. Rows print
//! as a table with a row count; a statement that returns a status instead
//! prints its tag as psql does (`CREATE DATABASE`, `INSERT 0 5`, `SET`).

use std::sync::Arc;
use std::time::Instant;

use arrow::array::{Array, Int64Array};
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use arrow_flight::sql::client::FlightSqlServiceClient;
use futures::TryStreamExt;
use tonic::transport::{Channel, Endpoint};

use crate::cli::SqlArgs;

pub struct Shell {
    client: FlightSqlServiceClient<Channel>,
    timing: bool,
}

impl Shell {
    pub async fn connect(args: &SqlArgs) -> Result<Self, String> {
        let tls = args.tls || args.cacert.is_some();
        let url = format!("{}://{}:{}", if tls { "https" } else { "http" }, args.host, args.port);
        let mut endpoint = Endpoint::from_shared(url.clone()).map_err(|e| e.to_string())?;
        if tls {
            let mut config = tonic::transport::ClientTlsConfig::new().with_webpki_roots().domain_name(args.host.clone());
            if let Some(ca) = &args.cacert {
                let pem = std::fs::read(ca).map_err(|e| format!("cannot read --cacert {}: {e}", ca.display()))?;
                config = config.ca_certificate(tonic::transport::Certificate::from_pem(pem));
            }
            endpoint = endpoint.tls_config(config).map_err(|e| format!("TLS setup: {e}"))?;
        }
        let channel = endpoint.connect().await.map_err(|e| format!("cannot connect to {url}: {e}"))?;
        let mut client = FlightSqlServiceClient::new(channel);
        let password = match &args.password {
            Some(p) => p.clone(),
            None => rpassword::prompt_password(format!("Password for {}: ", args.user)).map_err(|e| e.to_string())?,
        };
        client.handshake(&args.user, &password).await.map_err(|e| format!("login failed: {}", message(&e)))?;
        if let Some(db) = &args.database {
            client.set_header("database", db);
        }
        Ok(Self { client, timing: args.timing })
    }

    /// Runs one statement and returns its result's schema (when the server
    /// sent one) and batches.
    pub async fn run(&mut self, sql: &str) -> Result<(Option<SchemaRef>, Vec<RecordBatch>), String> {
        let info = self.client.execute(sql.to_string(), None).await.map_err(|e| message(&e))?;
        let schema = info.clone().try_decode_schema().ok().map(Arc::new);
        let mut batches = Vec::new();
        for ep in info.endpoint {
            let Some(ticket) = ep.ticket else { continue };
            let stream = self.client.do_get(ticket).await.map_err(|e| message(&e))?;
            let mut got: Vec<RecordBatch> = stream.try_collect().await.map_err(|e| message(&e))?;
            batches.append(&mut got);
        }
        Ok((schema, batches))
    }

    /// Runs and prints; returns false on error.
    pub async fn run_and_print(&mut self, sql: &str) -> bool {
        let started = Instant::now();
        match self.run(sql).await {
            Ok((schema, batches)) => {
                let schema = schema.or_else(|| batches.first().map(|b| b.schema()));
                match status_tag(sql, schema.as_ref(), &batches) {
                    Some(tag) => println!("{tag}"),
                    None => {
                        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
                        // An empty result still shows its columns, as psql does.
                        let shown = match (rows, &schema) {
                            (0, Some(s)) => vec![RecordBatch::new_empty(s.clone())],
                            _ => batches,
                        };
                        if !shown.is_empty() {
                            match arrow_cast::pretty::pretty_format_batches(&shown) {
                                Ok(t) => println!("{t}"),
                                Err(e) => eprintln!("cannot format result: {e}"),
                            }
                        }
                        println!("({rows} row{})", if rows == 1 { "" } else { "s" });
                    }
                }
                if self.timing {
                    println!("Time: {:.3} ms", started.elapsed().as_secs_f64() * 1000.0);
                }
                true
            }
            Err(e) => {
                eprintln!("Error: {e}");
                false
            }
        }
    }

    /// Reads statements interactively until `\q` or end of input.
    pub async fn interactive(&mut self) -> Result<(), String> {
        let mut editor = rustyline::DefaultEditor::new().map_err(|e| e.to_string())?;
        let history = std::env::var_os("HOME").map(|h| std::path::PathBuf::from(h).join(".pond_history"));
        if let Some(h) = &history {
            let _ = editor.load_history(h);
        }
        println!("Pond SQL shell. End statements with ';'. \\timing toggles timing, \\q quits.");
        let mut buffer = String::new();
        loop {
            let prompt = if buffer.is_empty() { "pond> " } else { "   -> " };
            let line = match editor.readline(prompt) {
                Ok(l) => l,
                Err(rustyline::error::ReadlineError::Interrupted) => {
                    buffer.clear();
                    continue;
                }
                Err(_) => break,
            };
            let trimmed = line.trim();
            if buffer.is_empty() && trimmed.starts_with('\\') {
                let _ = editor.add_history_entry(trimmed);
                match trimmed {
                    "\\q" | "\\quit" => break,
                    "\\timing" => {
                        self.timing = !self.timing;
                        println!("Timing is {}.", if self.timing { "on" } else { "off" });
                    }
                    "\\l" => {
                        self.run_and_print("SHOW DATABASES").await;
                    }
                    "\\dt" => {
                        self.run_and_print("SHOW TABLES").await;
                    }
                    other => eprintln!("unknown command {other} (\\q, \\timing, \\l, \\dt)"),
                }
                continue;
            }
            buffer.push_str(&line);
            buffer.push('\n');
            if trimmed.ends_with(';') {
                let sql = std::mem::take(&mut buffer);
                let _ = editor.add_history_entry(sql.trim());
                self.run_and_print(sql.trim()).await;
            }
        }
        if let Some(h) = &history {
            let _ = editor.save_history(h);
        }
        Ok(())
    }
}

/// The tag psql prints for a statement whose result is a status rather than
/// rows: DuckDB answers those with one column `Success` (no rows) or `Count`
/// (the rows a DML statement touched). `None`: print the rows.
fn status_tag(sql: &str, schema: Option<&SchemaRef>, batches: &[RecordBatch]) -> Option<String> {
    let last = pond_engine::sql::split_statements(sql).pop().unwrap_or_default();
    let words: Vec<String> = last
        .split(|c: char| c.is_whitespace() || c == '(' || c == ';')
        .filter(|w| !w.is_empty())
        .take(8)
        .map(|w| w.to_ascii_uppercase())
        .collect();
    let first = words.first().map(String::as_str).unwrap_or("");
    // Statements that answer with rows (pond-pgwire's list).
    const ROWS: &str = "SELECT WITH VALUES FROM TABLE SHOW DESCRIBE DESC PRAGMA SUMMARIZE EXPLAIN CALL PIVOT UNPIVOT";
    let status_column = match schema {
        Some(s) if s.fields().len() == 1 => s.field(0).name().clone(),
        // No schema and no batches: nothing to show but the statement's tag.
        None if batches.is_empty() => "Success".to_string(),
        _ => return None,
    };
    if ROWS.split(' ').any(|w| w == first) || !(status_column == "Success" || status_column == "Count") {
        return None;
    }
    let count: Option<i64> = batches
        .iter()
        .filter_map(|b| b.column(0).as_any().downcast_ref::<Int64Array>())
        .flat_map(|a| (0..a.len()).filter(|&i| a.is_valid(i)).map(move |i| a.value(i)))
        .reduce(|a, b| a + b);
    let tag = match (first, count) {
        ("INSERT", n) => format!("INSERT 0 {}", n.unwrap_or(0)),
        ("UPDATE" | "DELETE" | "MERGE" | "COPY", n) => format!("{first} {}", n.unwrap_or(0)),
        // CREATE TABLE … AS reports the rows it wrote, as PostgreSQL's `SELECT n`.
        ("CREATE", Some(n)) => format!("SELECT {n}"),
        ("CREATE" | "DROP" | "ALTER", _) => {
            const SKIP: &[&str] = &["OR", "REPLACE", "TEMP", "TEMPORARY", "UNIQUE", "PERSISTENT", "IF", "NOT", "EXISTS"];
            match words.iter().skip(1).find(|w| !SKIP.contains(&w.as_str())) {
                Some(object) => format!("{first} {object}"),
                None => first.to_string(),
            }
        }
        ("", _) => return None,
        (other, _) => other.to_string(),
    };
    Some(tag)
}

fn message(e: &impl std::fmt::Display) -> String {
    let s = e.to_string();
    // Tonic wraps the server's message; show just the message.
    let Some(i) = s.find("message: \"") else { return s };
    let rest = &s[i + 10..];
    let end = rest.find("\", ").or_else(|| rest.rfind('"')).unwrap_or(rest.len());
    rest[..end].replace("\\n", "\n").replace("\\\"", "\"")
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::BooleanArray;
    use arrow::datatypes::{DataType, Field, Schema};

    fn status(column: &str, count: Option<i64>) -> (SchemaRef, Vec<RecordBatch>) {
        let (field, array): (Field, Arc<dyn Array>) = match count {
            Some(n) => (Field::new(column, DataType::Int64, true), Arc::new(Int64Array::from(vec![n]))),
            None => (Field::new(column, DataType::Boolean, true), Arc::new(BooleanArray::from(Vec::<bool>::new()))),
        };
        let schema = Arc::new(Schema::new(vec![field]));
        let batch = RecordBatch::try_new(schema.clone(), vec![array]).unwrap();
        (schema, vec![batch])
    }

    fn tag(sql: &str, column: &str, count: Option<i64>) -> Option<String> {
        let (schema, batches) = status(column, count);
        status_tag(sql, Some(&schema), &batches)
    }

    #[test]
    fn statements_print_psql_tags() {
        assert_eq!(tag("CREATE DATABASE sales", "Success", None).as_deref(), Some("CREATE DATABASE"));
        assert_eq!(tag("create or replace table t (a int)", "Success", None).as_deref(), Some("CREATE TABLE"));
        assert_eq!(tag("DROP TABLE IF EXISTS t", "Success", None).as_deref(), Some("DROP TABLE"));
        assert_eq!(tag("INSERT INTO t VALUES (1), (2)", "Count", Some(2)).as_deref(), Some("INSERT 0 2"));
        assert_eq!(tag("UPDATE t SET a = 1", "Count", Some(3)).as_deref(), Some("UPDATE 3"));
        assert_eq!(tag("CREATE TABLE u AS SELECT 1", "Count", Some(1)).as_deref(), Some("SELECT 1"));
        assert_eq!(tag("SET TimeZone = 'UTC'", "Success", None).as_deref(), Some("SET"));
        assert_eq!(tag("CREATE DATABASE a; BEGIN", "Success", None).as_deref(), Some("BEGIN"));
        // Rows, even in a column that happens to be called Count.
        assert_eq!(tag("SELECT 7 AS \"Count\"", "Count", Some(7)), None);
        assert_eq!(tag("SHOW DATABASES", "Success", None), None);
        let (schema, batches) = status("n", Some(1));
        assert_eq!(status_tag("INSERT INTO t VALUES (1) RETURNING n", Some(&schema), &batches), None);
    }
}
