//! Round-trip latency of small Flight SQL statements from a Rust client
//! (arrow-flight's FlightSqlServiceClient: GetFlightInfo + DoGet per query),
//! which shows the server's own latency without a Python or Go driver in the
//! way. Used by `bench/run.py`.
//!
//! `latency HOST:PORT [QUERIES] [SQL]`; the password comes from POND_PASSWORD.
//! Prints one JSON object with percentiles in microseconds.

use std::time::Instant;

use arrow_flight::sql::client::FlightSqlServiceClient;
use futures::TryStreamExt;
use tonic::transport::Channel;

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args = std::env::args().skip(1);
    let addr = args.next().ok_or("usage: latency HOST:PORT [QUERIES] [SQL]")?;
    let n: usize = args.next().map(|s| s.parse()).transpose()?.unwrap_or(2000);
    let sql = args.next().unwrap_or_else(|| "SELECT 1".to_string());
    let password = std::env::var("POND_PASSWORD")?;
    let user = std::env::var("POND_USER").unwrap_or_else(|_| "admin".into());
    let channel = Channel::from_shared(format!("http://{addr}"))?.tcp_nodelay(true).connect().await?;
    let mut client = FlightSqlServiceClient::new(channel);
    client.handshake(&user, &password).await?;
    let mut samples = Vec::with_capacity(n);
    for i in 0..n + n / 10 {
        let started = Instant::now();
        let info = client.execute(sql.clone(), None).await?;
        for ep in info.endpoint {
            let stream = client.do_get(ep.ticket.ok_or("no ticket")?).await?;
            let _: Vec<_> = stream.try_collect().await?;
        }
        // The first 10% warm up.
        if i >= n / 10 {
            samples.push(started.elapsed().as_secs_f64() * 1e6);
        }
    }
    samples.sort_by(|a, b| a.total_cmp(b));
    let pct = |p: f64| samples[((samples.len() as f64 - 1.0) * p).round() as usize];
    println!(
        "{{\"queries\": {}, \"p50_us\": {:.1}, \"p90_us\": {:.1}, \"p99_us\": {:.1}, \"mean_us\": {:.1}}}",
        samples.len(),
        pct(0.5),
        pct(0.9),
        pct(0.99),
        samples.iter().sum::<f64>() / samples.len() as f64
    );
    Ok(())
}
