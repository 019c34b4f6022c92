//! Line-protocol parse micro-benchmark: what one HTTP write of line protocol
//! costs on the CPU before storage, on one thread.
//!
//! Pre-generates 1,000-line bodies shaped like `ingest_load`'s
//! (`cpu,host=serverNN value=…,cpu_idle=…,cpu_user=… <ns>`), then times
//! `pond_ingest::batch::parse_body` (what the write handler runs) and, as a
//! second figure, `parse_body` plus `TableBatch::finish` (the Arrow arrays the
//! writer stores), and prints lines per second of one core's CPU time (the thread's run time,
//! not wall time, so other load on the machine matters less) as JSON.
//!
//! `lp_parse_bench [SECONDS] [LINES_PER_BODY]` (defaults 3 and 1000).

use std::hint::black_box;
use std::time::{Duration, Instant};

use pond_ingest::batch::parse_body;
use pond_ingest::Precision;

/// The same lines `crates/pond/examples/ingest_load.rs` sends (8 connections'
/// worth of bodies).
fn bodies(per_body: usize) -> Vec<Vec<u8>> {
    let start_ns: i64 = 1_700_000_000_000_000_000;
    let mut out = Vec::new();
    for c in 0..8usize {
        for b in 0..8usize {
            let mut s = String::with_capacity(per_body * 90);
            for i in 0..per_body {
                let n = (b * per_body + i) as i64;
                let ts = start_ns + n * 1000 + c as i64;
                let x = (n % 1000) as f64 / 10.0;
                s.push_str(&format!(
                    "cpu,host=server{:02} value={x},cpu_idle={},cpu_user={} {ts}\n",
                    c * 10 + (i % 10),
                    100.0 - x,
                    x / 2.0
                ));
            }
            out.push(s.into_bytes());
        }
    }
    out
}

/// Nanoseconds this thread has run on a CPU (Linux schedstat), so that time
/// spent waiting for a core on a busy machine does not count; `None`
/// elsewhere.
fn thread_cpu_ns() -> Option<u64> {
    let s = std::fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    s.split_whitespace().next()?.parse().ok()
}

/// Runs `f` over the bodies round-robin for `secs` seconds; lines per second
/// of CPU time (of wall time where CPU time is unknown).
fn run(bodies: &[Vec<u8>], per_body: usize, secs: f64, mut f: impl FnMut(&[u8]) -> usize) -> f64 {
    // Warm-up: caches, allocator.
    for b in bodies {
        black_box(f(b));
    }
    let deadline = Duration::from_secs_f64(secs);
    let started = Instant::now();
    let cpu_start = thread_cpu_ns();
    let mut lines = 0usize;
    let mut i = 0;
    while started.elapsed() < deadline {
        for _ in 0..8 {
            let rows = f(&bodies[i % bodies.len()]);
            assert_eq!(rows, per_body, "every line parses");
            lines += rows;
            i += 1;
        }
    }
    let wall = started.elapsed().as_secs_f64();
    let cpu = match (cpu_start, thread_cpu_ns()) {
        (Some(a), Some(b)) if b > a => (b - a) as f64 / 1e9,
        _ => wall,
    };
    lines as f64 / cpu
}

fn main() {
    let mut args = std::env::args().skip(1);
    let secs: f64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(3.0);
    let per_body: usize = args.next().and_then(|s| s.parse().ok()).unwrap_or(1000);
    let bodies = bodies(per_body);
    let default_time = 1_700_000_000_000_000_000;
    let parse = run(&bodies, per_body, secs, |b| {
        let p = parse_body(b, Precision::Auto, default_time);
        black_box(&p.good_lines);
        p.rows
    });
    let parse_finish = run(&bodies, per_body, secs, |b| {
        let p = parse_body(b, Precision::Auto, default_time);
        let rows = p.rows;
        for t in p.tables {
            black_box(t.finish());
        }
        black_box(&p.good_lines);
        rows
    });
    let bytes_per_line = bodies.iter().map(Vec::len).sum::<usize>() as f64 / (bodies.len() * per_body) as f64;
    println!(
        "{{\"lines_per_body\": {per_body}, \"bytes_per_line\": {bytes_per_line:.1}, \"parse_body_lines_per_s\": {parse:.0}, \
         \"parse_body_ns_per_line\": {:.1}, \"parse_and_finish_lines_per_s\": {parse_finish:.0}, \"parse_and_finish_ns_per_line\": {:.1}}}",
        1e9 / parse,
        1e9 / parse_finish
    );
}
