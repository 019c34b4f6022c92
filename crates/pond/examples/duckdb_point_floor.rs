//! DuckDB's own per-query floor for pgbench's point select, in process (no
//! network, no protocol, no Pond): an in-memory database with a
//! pgbench_accounts-shaped table (100,000 rows, `aid` the primary key) and
//! the prepared `SELECT abalance FROM pgbench_accounts WHERE aid = ?` run
//! with random ids for a few seconds on 1 thread and on 2 threads (one
//! connection each, `SET threads = 1`). Whatever Pond adds on top (wire
//! protocol, sessions, sandbox), its point-select rate cannot beat this.
//! Used by `bench/pgwire.py`.
//!
//! `duckdb_point_floor [SECONDS] [ROWS] [DB_FILE]`; prints one JSON object.
//! With DB_FILE the table lives in a new file database there (as Pond's
//! tables do) instead of in memory.

use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let seconds: f64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(5.0);
    let rows: i64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(100_000);
    let db = match args.next() {
        Some(path) => duckdb::Connection::open(path)?,
        None => duckdb::Connection::open_in_memory()?,
    };
    db.execute_batch(&format!(
        "SET threads = 1;
         CREATE OR REPLACE TABLE pgbench_accounts (aid INTEGER PRIMARY KEY, bid INTEGER, abalance INTEGER, filler CHAR(84));
         INSERT INTO pgbench_accounts SELECT range, (range - 1) // 100000 + 1, range % 1000, '' FROM range(1, {rows} + 1);"
    ))?;
    let version: String = db.query_row("SELECT version()", [], |r| r.get(0))?;
    let mut out = vec![format!("\"duckdb\": \"{version}\""), format!("\"rows\": {rows}"), format!("\"seconds\": {seconds}")];
    for threads in [1usize, 2] {
        let (queries, elapsed) = run(&db, threads, rows, Duration::from_secs_f64(seconds))?;
        let qps = queries as f64 / elapsed;
        out.push(format!(
            "\"threads_{threads}\": {{\"queries\": {queries}, \"qps\": {qps:.0}, \"us_per_query_per_thread\": {:.1}}}",
            1e6 * threads as f64 / qps
        ));
    }
    println!("{{{}}}", out.join(", "));
    Ok(())
}

/// Point selects on `threads` connections for `length`; (queries, seconds).
fn run(db: &duckdb::Connection, threads: usize, rows: i64, length: Duration) -> Result<(u64, f64), Box<dyn std::error::Error>> {
    let start = Arc::new(Barrier::new(threads + 1));
    let mut workers = Vec::new();
    for t in 0..threads {
        let conn = db.try_clone()?;
        let start = start.clone();
        workers.push(std::thread::spawn(move || -> Result<u64, duckdb::Error> {
            let mut stmt = conn.prepare("SELECT abalance FROM pgbench_accounts WHERE aid = ?")?;
            // xorshift64*: uniform enough for picking ids, no dependency.
            let mut state = 0x9E37_79B9_7F4A_7C15u64 ^ (t as u64 + 1).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            let mut next_aid = move || {
                state ^= state >> 12;
                state ^= state << 25;
                state ^= state >> 27;
                (state.wrapping_mul(0x2545_F491_4F6C_DD1D) % rows as u64) as i64 + 1
            };
            start.wait();
            let deadline = Instant::now() + length;
            let mut n = 0u64;
            while Instant::now() < deadline {
                let aid = next_aid() as i32;
                let balance: i32 = stmt.query_row([aid], |r| r.get(0))?;
                assert_eq!(balance, aid % 1000, "wrong row for aid {aid}");
                n += 1;
            }
            Ok(n)
        }));
    }
    start.wait();
    let began = Instant::now();
    let mut total = 0;
    for w in workers {
        total += w.join().map_err(|_| "worker panicked")??;
    }
    Ok((total, began.elapsed().as_secs_f64()))
}
