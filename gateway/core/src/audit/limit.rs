//! The rate limit on anonymous audit records: a GCRA token bucket in one atomic
//! (no lock on the request path), with the time passed in. Records it refuses are
//! counted, and the next record it admits carries that count, so the trail itself
//! says how many it left out and when.
//!
//! ```
//! use gateway_core::audit::AnonymousLimit;
//! let limit = AnonymousLimit::new(1, 2); // 1 a second, bursts of 2
//! assert_eq!(limit.admit(0), Some(0));
//! assert_eq!(limit.admit(0), Some(0));
//! assert_eq!(limit.admit(0), None);
//! assert_eq!(limit.admit(1_000_000_000), Some(1)); // one left out before this one
//! ```

use std::sync::atomic::{AtomicU64, Ordering};

/// At most `rate` anonymous records a second on average, `burst` at once.
#[derive(Debug)]
pub struct AnonymousLimit {
    /// Nanoseconds between records at the steady rate.
    interval: u64,
    /// How far ahead of now the theoretical arrival time may run.
    tolerance: u64,
    /// Theoretical arrival time of the next record (GCRA), in nanoseconds.
    tat: AtomicU64,
    /// Records refused since the last one admitted.
    left_out: AtomicU64,
}

impl AnonymousLimit {
    /// A limit of `rate` records a second (at least 1) in bursts of `burst` (at least 1).
    pub fn new(rate: u32, burst: u32) -> AnonymousLimit {
        let interval = 1_000_000_000 / u64::from(rate.max(1));
        AnonymousLimit {
            interval,
            tolerance: interval * u64::from(burst.max(1) - 1),
            tat: AtomicU64::new(0),
            left_out: AtomicU64::new(0),
        }
    }

    /// At `now` (nanoseconds on a monotonic clock): `Some(n)` if a record may be written,
    /// `n` being the records left out since the previous admitted one; `None` if this
    /// one is left out (and counted for the next).
    pub fn admit(&self, now: u64) -> Option<u64> {
        let mut tat = self.tat.load(Ordering::Relaxed);
        loop {
            let start = tat.max(now);
            if start - now > self.tolerance {
                self.left_out.fetch_add(1, Ordering::Relaxed);
                return None;
            }
            match self.tat.compare_exchange_weak(tat, start + self.interval, Ordering::Relaxed, Ordering::Relaxed) {
                Ok(_) => return Some(self.left_out.swap(0, Ordering::Relaxed)),
                Err(seen) => tat = seen,
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: u64 = 1_000_000_000;

    #[test]
    fn steady_rate_after_a_burst() {
        let limit = AnonymousLimit::new(10, 5);
        let admitted = (0..100).filter(|_| limit.admit(0).is_some()).count();
        assert_eq!(admitted, 5);
        // Over the next second, exactly 10 more.
        let more = (0..1000).filter(|i| limit.admit(i * S / 1000).is_some()).count();
        assert!((9..=11).contains(&more), "{more}");
        // After a quiet period the burst is back, not more.
        let later = (0..100).filter(|_| limit.admit(100 * S).is_some()).count();
        assert_eq!(later, 5);
    }

    #[test]
    fn left_out_count_is_carried_by_the_next_admitted() {
        let limit = AnonymousLimit::new(1, 1);
        assert_eq!(limit.admit(S), Some(0));
        for _ in 0..7 {
            assert_eq!(limit.admit(S), None);
        }
        assert_eq!(limit.admit(2 * S), Some(7));
        assert_eq!(limit.admit(3 * S), Some(0));
    }

    #[test]
    fn concurrent_admissions_never_exceed_the_burst() {
        let limit = std::sync::Arc::new(AnonymousLimit::new(1, 50));
        let handles: Vec<_> = (0..4)
            .map(|_| {
                let l = limit.clone();
                std::thread::spawn(move || (0..1000).filter(|_| l.admit(S).is_some()).count())
            })
            .collect();
        let total: usize = handles.into_iter().map(|h| h.join().unwrap()).sum();
        assert_eq!(total, 50);
    }
}
