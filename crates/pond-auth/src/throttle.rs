//! Slows down repeated failed logins from one source (client address).
//!
//! After [`FREE_FAILURES`] failures within [`WINDOW`], each further attempt
//! from that source is refused without checking the password until a delay has
//! passed since the last failure; the delay doubles with every failure up to
//! [`MAX_DELAY`]. A success clears the source.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

pub const FREE_FAILURES: u32 = 5;
pub const WINDOW: Duration = Duration::from_secs(15 * 60);
pub const MAX_DELAY: Duration = Duration::from_secs(60);

#[derive(Default)]
pub struct Throttle {
    sources: Mutex<HashMap<String, Failures>>,
}

#[derive(Clone, Copy)]
struct Failures {
    count: u32,
    last: Instant,
}

impl Throttle {
    /// `Err(wait)` when the source must wait before trying again.
    pub fn check(&self, source: &str) -> Result<(), Duration> {
        let sources = self.sources.lock();
        let Some(f) = sources.get(source) else { return Ok(()) };
        if f.last.elapsed() > WINDOW || f.count < FREE_FAILURES {
            return Ok(());
        }
        let delay = Self::delay(f.count);
        let since = f.last.elapsed();
        if since < delay {
            Err(delay - since)
        } else {
            Ok(())
        }
    }

    pub fn failed(&self, source: &str) {
        let mut sources = self.sources.lock();
        if sources.len() > 100_000 {
            sources.retain(|_, f| f.last.elapsed() < WINDOW);
        }
        let f = sources.entry(source.to_string()).or_insert(Failures { count: 0, last: Instant::now() });
        if f.last.elapsed() > WINDOW {
            f.count = 0;
        }
        f.count += 1;
        f.last = Instant::now();
    }

    pub fn succeeded(&self, source: &str) {
        self.sources.lock().remove(source);
    }

    fn delay(count: u32) -> Duration {
        let over = count.saturating_sub(FREE_FAILURES).min(10);
        Duration::from_secs(1u64 << over).min(MAX_DELAY)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locks_after_free_failures_and_clears_on_success() {
        let t = Throttle::default();
        for _ in 0..FREE_FAILURES - 1 {
            t.failed("1.2.3.4");
            assert!(t.check("1.2.3.4").is_ok());
        }
        t.failed("1.2.3.4");
        let wait = t.check("1.2.3.4").unwrap_err();
        assert!(wait > Duration::from_millis(500) && wait <= Duration::from_secs(1));
        assert!(t.check("5.6.7.8").is_ok(), "other sources are not affected");
        t.failed("1.2.3.4");
        assert!(t.check("1.2.3.4").unwrap_err() > Duration::from_secs(1), "the delay grows");
        t.succeeded("1.2.3.4");
        assert!(t.check("1.2.3.4").is_ok());
    }
}
