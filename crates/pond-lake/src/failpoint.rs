//! Crash failpoints for the exactly-once tests: when the environment variable
//! `POND_FAILPOINT` names a step, the process aborts right there (no
//! destructors, no flushing of anything — as close to `kill -9` at that
//! instant as a test can get). Steps of a flush, in order:
//! `flush-written` (Parquet files durable, not registered),
//! `flush-registered` (registration + generation committed, log segments
//! still on disk), `flush-released` (log segments deleted); of a compaction:
//! `compact-merged` (one measurement merged, old files not yet cleaned up).
//! Unset (the default) costs one cached lookup.

use std::sync::OnceLock;

pub const FLUSH_WRITTEN: &str = "flush-written";
pub const FLUSH_REGISTERED: &str = "flush-registered";
pub const FLUSH_RELEASED: &str = "flush-released";
pub const COMPACT_MERGED: &str = "compact-merged";

fn armed() -> Option<&'static str> {
    static ARMED: OnceLock<Option<String>> = OnceLock::new();
    ARMED.get_or_init(|| std::env::var("POND_FAILPOINT").ok().filter(|s| !s.is_empty())).as_deref()
}

/// Aborts the process if `POND_FAILPOINT` is `step`.
pub fn hit(step: &str) {
    if armed() == Some(step) {
        eprintln!("POND_FAILPOINT={step}: aborting");
        std::process::abort();
    }
}
