//! The async runtime under the PostgreSQL clients. Link threads block (DuckDB
//! work is synchronous) and wait for async work spawned here; the replication
//! clients' own tasks keep answering keepalives while a link thread applies.

use std::future::Future;
use std::sync::OnceLock;

static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();

fn runtime() -> &'static tokio::runtime::Runtime {
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .thread_name("pond-link-io")
            .enable_all()
            .build()
            .expect("the link I/O runtime starts (a thread and a timer)")
    })
}

/// Runs `fut` on the link runtime and waits for its output (usable from any
/// thread, also one inside another tokio runtime).
pub fn wait<F>(fut: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime().spawn(async move {
        let _ = tx.send(fut.await);
    });
    rx.recv().unwrap_or_else(|_| panic!("a link task panicked on the I/O runtime"))
}

/// Spawns `fut` on the link runtime without waiting.
pub fn spawn<F>(fut: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    runtime().spawn(fut)
}
