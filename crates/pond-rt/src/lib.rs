//! The async runtime under Pond's blocking callers of async clients: the
//! external-catalog providers (AWS SDK, HTTP APIs) and the PostgreSQL links
//! (control and replication clients). Their callers block, possibly on a
//! thread of another tokio runtime where `block_on` is not allowed, so the
//! work is spawned here and the caller waits on a channel. Tasks spawned here
//! (a replication client answering keepalives) keep running while their
//! caller is busy elsewhere.

use std::future::Future;
use std::sync::OnceLock;

static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();

fn runtime() -> &'static tokio::runtime::Runtime {
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("pond-io")
            .enable_all()
            .build()
            .expect("Pond's I/O runtime starts (threads and a timer)")
    })
}

/// Runs `fut` on the I/O runtime and waits for its output. Callers bound the
/// time through the future itself.
pub fn wait<F>(fut: F) -> F::Output
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    let (tx, rx) = std::sync::mpsc::sync_channel(1);
    runtime().spawn(async move {
        let _ = tx.send(fut.await);
    });
    // The task only ends without sending if it panicked: let that reach the caller.
    rx.recv().unwrap_or_else(|_| panic!("a task panicked on Pond's I/O runtime"))
}

/// Spawns `fut` on the I/O runtime without waiting.
pub fn spawn<F>(fut: F) -> tokio::task::JoinHandle<F::Output>
where
    F: Future + Send + 'static,
    F::Output: Send + 'static,
{
    runtime().spawn(fut)
}

#[cfg(test)]
mod tests {
    #[test]
    fn works_from_inside_another_runtime() {
        let outer = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let got = outer.block_on(async { super::wait(async { 6 * 7 }) });
        assert_eq!(got, 42);
        let spawned = super::wait(async { super::spawn(async { 7 }).await.unwrap() });
        assert_eq!(spawned, 7);
    }
}
