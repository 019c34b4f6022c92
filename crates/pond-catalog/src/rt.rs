//! The async runtime under the providers whose client libraries are async
//! (the AWS SDK, HTTP APIs). [`Provider`](crate::Provider) calls block, and
//! the engine may make them from any thread, including a thread of another
//! tokio runtime, where `block_on` is not allowed: so the work is spawned on
//! this crate's own small runtime and the caller waits on a channel.

use std::future::Future;
use std::sync::OnceLock;

static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();

fn runtime() -> &'static tokio::runtime::Runtime {
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("pond-catalog-io")
            .enable_all()
            .build()
            .expect("the catalog I/O runtime starts (threads and a timer)")
    })
}

/// Runs `fut` on the catalog runtime and waits for its output. Callers bound
/// the time through the future itself (every provider call has a timeout).
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
    rx.recv().unwrap_or_else(|_| panic!("a catalog call panicked on the I/O runtime"))
}

#[cfg(test)]
mod tests {
    #[test]
    fn works_from_inside_another_runtime() {
        let outer = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
        let got = outer.block_on(async { super::wait(async { 6 * 7 }) });
        assert_eq!(got, 42);
    }
}
