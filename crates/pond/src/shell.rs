//! `pond sql`: an interactive SQL shell over Flight SQL, with history,
//! aligned tables and timing; `-c` runs one command, `-f` a file.

use std::time::Instant;

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

    /// Runs one statement and returns its result batches.
    pub async fn run(&mut self, sql: &str) -> Result<Vec<RecordBatch>, String> {
        let info = self.client.execute(sql.to_string(), None).await.map_err(|e| message(&e))?;
        let mut batches = Vec::new();
        for ep in info.endpoint {
            let Some(ticket) = ep.ticket else { continue };
            let stream = self.client.do_get(ticket).await.map_err(|e| message(&e))?;
            let mut got: Vec<RecordBatch> = stream.try_collect().await.map_err(|e| message(&e))?;
            batches.append(&mut got);
        }
        Ok(batches)
    }

    /// Runs and prints; returns false on error.
    pub async fn run_and_print(&mut self, sql: &str) -> bool {
        let started = Instant::now();
        match self.run(sql).await {
            Ok(batches) => {
                let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
                let shows_table = batches.first().is_some_and(|b| !(b.num_columns() == 1 && b.schema().field(0).name() == "Success"));
                if shows_table && rows > 0 {
                    match arrow_cast::pretty::pretty_format_batches(&batches) {
                        Ok(t) => println!("{t}"),
                        Err(e) => eprintln!("cannot format result: {e}"),
                    }
                }
                if shows_table {
                    println!("({rows} row{})", if rows == 1 { "" } else { "s" });
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

fn message(e: &impl std::fmt::Display) -> String {
    let s = e.to_string();
    // Tonic wraps the server's message; show just the message.
    let Some(i) = s.find("message: \"") else { return s };
    let rest = &s[i + 10..];
    let end = rest.find("\", ").or_else(|| rest.rfind('"')).unwrap_or(rest.len());
    rest[..end].replace("\\n", "\n").replace("\\\"", "\"")
}
