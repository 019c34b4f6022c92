//! Line-protocol load generator: Arc-shaped records
//! (`cpu,host=X value=…,cpu_idle=…,cpu_user=… <ns>`) in pre-generated
//! 1,000-line bodies, sent over N concurrent HTTP connections for a fixed
//! time; prints one JSON object with lines/s and acknowledgement latency.
//!
//! `ingest_load URL [CONNECTIONS] [SECONDS] [LINES_PER_BODY]`, e.g.
//! `ingest_load 'http://127.0.0.1:8000/api/v3/write_lp?db=bench' 8 10`.
//! Credentials: POND_TOKEN (sent as `Authorization: Bearer`), or POND_USER /
//! POND_PASSWORD (Basic; for InfluxDB 1.x, which needs none, leave all unset).
//! Used by `bench/ingest.sh`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let url = args.next().ok_or("usage: ingest_load URL [CONNECTIONS] [SECONDS] [LINES_PER_BODY]")?;
    let conns: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(8);
    let secs: u64 = args.next().map(|s| s.parse()).transpose()?.unwrap_or(10);
    let per_body: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(1000);
    let token = std::env::var("POND_TOKEN").ok();
    let basic = std::env::var("POND_PASSWORD").ok().map(|p| (std::env::var("POND_USER").unwrap_or_else(|_| "admin".into()), p));

    // Pre-generated bodies; every line has a unique (host, time).
    let start_ns: i64 = 1_700_000_000_000_000_000;
    let bodies_per_conn = 200usize;
    let mut bodies: Vec<Vec<bytes::Bytes>> = Vec::new();
    for c in 0..conns {
        let mut v = Vec::with_capacity(bodies_per_conn);
        for b in 0..bodies_per_conn {
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
            v.push(bytes::Bytes::from(s.into_bytes()));
        }
        bodies.push(v);
    }

    let lines = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    let deadline = Instant::now() + Duration::from_secs(secs);
    let started = Instant::now();
    let mut tasks = Vec::new();
    for (c, my_bodies) in bodies.into_iter().enumerate() {
        let client = reqwest::Client::builder().pool_max_idle_per_host(1).tcp_nodelay(true).build()?;
        let (url, token, basic, lines, errors) = (url.clone(), token.clone(), basic.clone(), lines.clone(), errors.clone());
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = c;
            while Instant::now() < deadline {
                let body = my_bodies[i % my_bodies.len()].clone();
                i += 1;
                let mut req = client.post(&url).body(body);
                if let Some(t) = &token {
                    req = req.bearer_auth(t);
                } else if let Some((u, p)) = &basic {
                    req = req.basic_auth(u, Some(p));
                }
                let t0 = Instant::now();
                match req.send().await {
                    Ok(r) if r.status().is_success() => {
                        lat.push(t0.elapsed().as_secs_f64() * 1e3);
                        lines.fetch_add(per_body as u64, Ordering::Relaxed);
                    }
                    Ok(r) => {
                        if errors.fetch_add(1, Ordering::Relaxed) < 3 {
                            eprintln!("HTTP {}: {}", r.status(), r.text().await.unwrap_or_default());
                        }
                    }
                    Err(e) => {
                        if errors.fetch_add(1, Ordering::Relaxed) < 3 {
                            eprintln!("error: {e}");
                        }
                    }
                }
            }
            lat
        }));
    }
    let mut lat = Vec::new();
    for t in tasks {
        lat.extend(t.await?);
    }
    let elapsed = started.elapsed().as_secs_f64();
    lat.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| if lat.is_empty() { 0.0 } else { lat[((lat.len() as f64 - 1.0) * p).round() as usize] };
    let total = lines.load(Ordering::Relaxed);
    println!(
        "{}",
        serde_json::json!({
            "url": url, "connections": conns, "seconds": elapsed, "lines_per_body": per_body,
            "lines": total, "lines_per_sec": (total as f64 / elapsed).round(),
            "requests": lat.len(), "errors": errors.load(Ordering::Relaxed),
            "ack_ms_p50": pct(0.5), "ack_ms_p99": pct(0.99), "ack_ms_max": pct(1.0),
        })
    );
    Ok(())
}
