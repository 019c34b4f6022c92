//! Ingest load generator: Arc-shaped records
//! (`cpu,host=X value=…,cpu_idle=…,cpu_user=… <ns>`) in pre-generated
//! 1,000-record bodies, sent over N concurrent HTTP connections for a fixed
//! time; prints one JSON object with records/s, records/s per core and
//! acknowledgement latency.
//!
//! `ingest_load URL [CONNECTIONS] [SECONDS] [RECORDS_PER_BODY] [lp|msgpack]`, e.g.
//! `ingest_load 'http://127.0.0.1:8000/api/v3/write_lp?db=bench' 8 10`.
//! `msgpack` sends the same records as Arc's columnar MessagePack
//! (`{"m": "cpu", "columns": {"time": […], "host": […], "value": […], …}}`,
//! nanosecond times) with `x-arc-database: bench`, for `/api/v1/write/msgpack`.
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
    let format = args.next().unwrap_or_else(|| "lp".into());
    if format != "lp" && format != "msgpack" {
        return Err(format!("unknown format '{format}' (lp or msgpack)").into());
    }
    let token = std::env::var("POND_TOKEN").ok();
    let basic = std::env::var("POND_PASSWORD").ok().map(|p| (std::env::var("POND_USER").unwrap_or_else(|_| "admin".into()), p));

    // Pre-generated bodies; every line has a unique (host, time).
    let start_ns: i64 = 1_700_000_000_000_000_000;
    // About 200,000 records per connection, cycled.
    let bodies_per_conn = (200_000 / per_body).clamp(2, 200);
    let mut bodies: Vec<Vec<bytes::Bytes>> = Vec::new();
    for c in 0..conns {
        let mut v = Vec::with_capacity(bodies_per_conn);
        for b in 0..bodies_per_conn {
            if format == "msgpack" {
                v.push(bytes::Bytes::from(columnar_body(c, b, per_body, start_ns)));
                continue;
            }
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
        let format = format.clone();
        tasks.push(tokio::spawn(async move {
            let mut lat = Vec::new();
            let mut i = c;
            while Instant::now() < deadline {
                let body = my_bodies[i % my_bodies.len()].clone();
                i += 1;
                let mut req = client.post(&url).body(body);
                if format == "msgpack" {
                    req = req.header("x-arc-database", "bench").header("content-type", "application/msgpack");
                }
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
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1);
    let rate = total as f64 / elapsed;
    println!(
        "{}",
        serde_json::json!({
            "url": url, "format": format, "connections": conns, "seconds": elapsed, "lines_per_body": per_body,
            "lines": total, "lines_per_sec": rate.round(), "records_per_sec": rate.round(),
            "cores": cores, "records_per_sec_per_core": (rate / cores as f64).round(),
            "requests": lat.len(), "errors": errors.load(Ordering::Relaxed),
            "ack_ms_p50": pct(0.5), "ack_ms_p99": pct(0.99), "ack_ms_max": pct(1.0),
        })
    );
    Ok(())
}

/// One Arc columnar MessagePack body with the same records as the
/// line-protocol bodies: `{"m": "cpu", "columns": {"time", "host", "value",
/// "cpu_idle", "cpu_user"}}`.
fn columnar_body(c: usize, b: usize, per_body: usize, start_ns: i64) -> Vec<u8> {
    use rmp::encode as enc;
    let mut out = Vec::with_capacity(per_body * 48 + 64);
    // Writing into a Vec cannot fail: the results are ignored.
    let _ = enc::write_map_len(&mut out, 2);
    let _ = enc::write_str(&mut out, "m");
    let _ = enc::write_str(&mut out, "cpu");
    let _ = enc::write_str(&mut out, "columns");
    let _ = enc::write_map_len(&mut out, 5);
    let n = per_body as u32;
    let _ = enc::write_str(&mut out, "time");
    let _ = enc::write_array_len(&mut out, n);
    for i in 0..per_body {
        let k = (b * per_body + i) as i64;
        let _ = enc::write_sint(&mut out, start_ns + k * 1000 + c as i64);
    }
    let _ = enc::write_str(&mut out, "host");
    let _ = enc::write_array_len(&mut out, n);
    for i in 0..per_body {
        let _ = enc::write_str(&mut out, &format!("server{:02}", c * 10 + (i % 10)));
    }
    let x = |i: usize| ((b * per_body + i) % 1000) as f64 / 10.0;
    for (name, f) in [("value", 0), ("cpu_idle", 1), ("cpu_user", 2)] {
        let _ = enc::write_str(&mut out, name);
        let _ = enc::write_array_len(&mut out, n);
        for i in 0..per_body {
            let v = match f {
                0 => x(i),
                1 => 100.0 - x(i),
                _ => x(i) / 2.0,
            };
            let _ = enc::write_f64(&mut out, v);
        }
    }
    out
}
