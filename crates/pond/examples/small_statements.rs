//! Small-statement clients for `bench/small.py`: what a dashboard or an
//! application costs Pond one tiny statement at a time, measured from Rust so
//! no Python or Go driver sits in the numbers.
//!
//! ```text
//! small_statements http-select HOST:PORT QUERIES              # POST /api/v1/query, keep-alive
//! small_statements flight-noop HOST:PORT QUERIES              # GetSqlInfo + DoGet: two round trips, no DuckDB
//! small_statements duckdb-select QUERIES                      # SELECT 1 in process: prepare, execute, Arrow
//! small_statements flight-insert HOST:PORT CLIENTS SECONDS auto|tx TABLE
//! small_statements duckdb-insert DB_FILE CLIENTS SECONDS auto|tx
//! ```
//! The password comes from POND_PASSWORD (user POND_USER, default admin).
//! Each mode prints one JSON object. Inserts write `(client, n, payload)` rows;
//! `tx` wraps each in BEGIN … COMMIT, `auto` runs it alone (autocommit).

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use arrow_flight::sql::client::FlightSqlServiceClient;
use arrow_flight::sql::EndTransaction;
use futures::TryStreamExt;
use tonic::transport::Channel;

type Res<T> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

fn main() -> Res<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let arg = |i: usize| args.get(i).cloned().ok_or_else(|| format!("missing argument {i}; see the file's header for usage"));
    match arg(0)?.as_str() {
        "http-select" => http_select(&arg(1)?, arg(2)?.parse()?),
        "flight-noop" => flight_noop(&arg(1)?, arg(2)?.parse()?),
        "duckdb-select" => duckdb_select(arg(1)?.parse()?),
        "flight-insert" => flight_insert(&arg(1)?, arg(2)?.parse()?, arg(3)?.parse()?, tx_mode(&arg(4)?)?, &arg(5)?),
        "duckdb-insert" => duckdb_insert(&arg(1)?, arg(2)?.parse()?, arg(3)?.parse()?, tx_mode(&arg(4)?)?),
        other => Err(format!("unknown mode {other}").into()),
    }
}

fn tx_mode(s: &str) -> Res<bool> {
    match s {
        "tx" => Ok(true),
        "auto" => Ok(false),
        other => Err(format!("mode must be auto or tx, not {other}").into()),
    }
}

fn credentials() -> Res<(String, String)> {
    Ok((std::env::var("POND_USER").unwrap_or_else(|_| "admin".into()), std::env::var("POND_PASSWORD")?))
}

/// Percentiles of per-statement latencies, in microseconds.
fn latency_json(mut samples: Vec<f64>) -> String {
    samples.sort_by(|a, b| a.total_cmp(b));
    if samples.is_empty() {
        return "\"p50_us\": null, \"p99_us\": null".into();
    }
    let pct = |p: f64| samples[((samples.len() as f64 - 1.0) * p).round() as usize];
    format!("\"p50_us\": {:.1}, \"p90_us\": {:.1}, \"p99_us\": {:.1}", pct(0.5), pct(0.9), pct(0.99))
}

/// `SELECT 1` over HTTP with one keep-alive connection and a bearer token
/// from `/api/v1/auth/login` (password checks are deliberately slow: argon2).
fn http_select(addr: &str, n: usize) -> Res<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let (user, password) = credentials()?;
        let client = reqwest::Client::builder().pool_max_idle_per_host(1).tcp_nodelay(true).build()?;
        let base = format!("http://{addr}");
        let login: serde_json::Value = client
            .post(format!("{base}/api/v1/auth/login"))
            .basic_auth(&user, Some(&password))
            .send()
            .await?
            .error_for_status()?
            .json()
            .await?;
        let token = login["token"].as_str().ok_or("login answered without a token")?.to_string();
        let mut samples = Vec::with_capacity(n);
        for i in 0..n + n / 10 {
            let started = Instant::now();
            let body = client
                .post(format!("{base}/api/v1/query"))
                .bearer_auth(&token)
                .header("content-type", "application/json")
                .body(r#"{"sql": "SELECT 1 AS x"}"#)
                .send()
                .await?
                .error_for_status()?
                .bytes()
                .await?;
            if i == 0 && !String::from_utf8_lossy(&body).contains('1') {
                return Err(format!("unexpected answer: {}", String::from_utf8_lossy(&body)).into());
            }
            if i >= n / 10 {
                samples.push(started.elapsed().as_secs_f64() * 1e6);
            }
        }
        println!("{{\"queries\": {}, {}}}", samples.len(), latency_json(samples));
        Ok(())
    })
}

/// The same two Flight round trips as a query (GetFlightInfo + DoGet), for
/// GetSqlInfo, which Pond answers from memory: what gRPC and the network cost
/// without DuckDB, the floor under `SELECT 1` over Flight SQL.
fn flight_noop(addr: &str, n: usize) -> Res<()> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
    rt.block_on(async {
        let (user, password) = credentials()?;
        let channel = Channel::from_shared(format!("http://{addr}"))?.tcp_nodelay(true).connect().await?;
        let mut client = FlightSqlServiceClient::new(channel);
        client.handshake(&user, &password).await?;
        let mut samples = Vec::with_capacity(n);
        for i in 0..n + n / 10 {
            let started = Instant::now();
            let info = client.get_sql_info(vec![arrow_flight::sql::SqlInfo::FlightSqlServerName]).await?;
            for ep in info.endpoint {
                let _: Vec<_> = client.do_get(ep.ticket.ok_or("no ticket")?).await?.try_collect().await?;
            }
            if i >= n / 10 {
                samples.push(started.elapsed().as_secs_f64() * 1e6);
            }
        }
        println!("{{\"queries\": {}, {}}}", samples.len(), latency_json(samples));
        Ok(())
    })
}

/// DuckDB's own cost for `SELECT 1` as Pond runs it (prepare the text, execute,
/// read the result as Arrow), in process, with DuckDB's default threads and with 1.
fn duckdb_select(n: usize) -> Res<()> {
    let mut parts = Vec::new();
    for threads in [None, Some(1)] {
        let conn = duckdb::Connection::open_in_memory()?;
        if let Some(t) = threads {
            conn.execute_batch(&format!("SET threads = {t}"))?;
        }
        let mut samples = Vec::with_capacity(n);
        for i in 0..n + n / 10 {
            let started = Instant::now();
            let mut stmt = conn.prepare("SELECT 1")?;
            let rows: usize = stmt.query_arrow([])?.map(|b| b.num_rows()).sum();
            if rows != 1 {
                return Err(format!("SELECT 1 gave {rows} rows").into());
            }
            if i >= n / 10 {
                samples.push(started.elapsed().as_secs_f64() * 1e6);
            }
        }
        let name = threads.map_or("default_threads".to_string(), |t| format!("threads_{t}"));
        parts.push(format!("\"{name}\": {{{}}}", latency_json(samples)));
    }
    println!("{{{}}}", parts.join(", "));
    Ok(())
}

/// Single-row INSERTs from `clients` Flight SQL connections (one tokio task each,
/// on a runtime with as many threads as this machine has cores).
fn flight_insert(addr: &str, clients: usize, seconds: f64, tx: bool, table: &str) -> Res<()> {
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    rt.block_on(async {
        let (user, password) = credentials()?;
        let mut conns = Vec::new();
        for _ in 0..clients {
            let channel = Channel::from_shared(format!("http://{addr}"))?.tcp_nodelay(true).connect().await?;
            let mut client = FlightSqlServiceClient::new(channel);
            client.handshake(&user, &password).await?;
            conns.push(client);
        }
        let start = Instant::now() + Duration::from_millis(200);
        let deadline = start + Duration::from_secs_f64(seconds);
        let mut tasks = Vec::new();
        for (c, mut client) in conns.into_iter().enumerate() {
            let table = table.to_string();
            tasks.push(tokio::spawn(async move {
                tokio::time::sleep_until(start.into()).await;
                let mut samples = Vec::new();
                let mut n = 0u64;
                while Instant::now() < deadline {
                    let t0 = Instant::now();
                    let sql = format!("INSERT INTO {table} VALUES ({c}, {n}, 'payload-{n}')");
                    if tx {
                        let id = client.begin_transaction().await?;
                        client.execute_update(sql, Some(id.clone())).await?;
                        client.end_transaction(id, EndTransaction::Commit).await?;
                    } else {
                        client.execute_update(sql, None).await?;
                    }
                    samples.push(t0.elapsed().as_secs_f64() * 1e6);
                    n += 1;
                }
                Ok::<_, arrow_flight::error::FlightError>(samples)
            }));
        }
        let mut all = Vec::new();
        for t in tasks {
            all.extend(t.await??);
        }
        let elapsed = start.elapsed().as_secs_f64();
        println!("{{\"transactions\": {}, \"tx_per_s\": {:.1}, {}}}", all.len(), all.len() as f64 / elapsed, latency_json(all));
        Ok(())
    })
}

/// DuckDB's own rate for the same inserts, in process, on a file database
/// (so every commit writes DuckDB's WAL, as Pond's do): one connection per client thread.
fn duckdb_insert(path: &str, clients: usize, seconds: f64, tx: bool) -> Res<()> {
    let db = duckdb::Connection::open(path)?;
    db.execute_batch("CREATE TABLE IF NOT EXISTS ins (client INTEGER, n BIGINT, payload VARCHAR)")?;
    let barrier = Arc::new(Barrier::new(clients + 1));
    let length = Duration::from_secs_f64(seconds);
    let mut workers = Vec::new();
    for c in 0..clients {
        let conn = db.try_clone()?;
        let barrier = barrier.clone();
        workers.push(std::thread::spawn(move || -> Result<Vec<f64>, duckdb::Error> {
            // Statements are sent as text each time, as a client sends them to a server.
            barrier.wait();
            let deadline = Instant::now() + length;
            let mut samples = Vec::new();
            let mut n = 0u64;
            while Instant::now() < deadline {
                let t0 = Instant::now();
                let sql = format!("INSERT INTO ins VALUES ({c}, {n}, 'payload-{n}')");
                if tx {
                    conn.execute_batch("BEGIN")?;
                    conn.execute_batch(&sql)?;
                    conn.execute_batch("COMMIT")?;
                } else {
                    conn.execute_batch(&sql)?;
                }
                samples.push(t0.elapsed().as_secs_f64() * 1e6);
                n += 1;
            }
            Ok(samples)
        }));
    }
    barrier.wait();
    let began = Instant::now();
    let mut all = Vec::new();
    for w in workers {
        all.extend(w.join().map_err(|_| "worker panicked")??);
    }
    let elapsed = began.elapsed().as_secs_f64();
    let stored: i64 = db.query_row("SELECT count(*) FROM ins", [], |r| r.get(0))?;
    if stored < all.len() as i64 {
        return Err(format!("{stored} rows stored, {} inserts acknowledged", all.len()).into());
    }
    println!("{{\"transactions\": {}, \"tx_per_s\": {:.1}, {}}}", all.len(), all.len() as f64 / elapsed, latency_json(all));
    Ok(())
}
