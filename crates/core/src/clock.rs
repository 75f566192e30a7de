//! The only place that reads the wall clock.
//!
//! Everything that needs "now" takes an `Arc<dyn Clock>`, so timers, expiry
//! and deadlines can be tested with [`FakeClock`] instead of sleeping.
//! `clippy.toml` bans the wall-clock functions everywhere else.

use std::fmt::Debug;
use std::sync::atomic::{AtomicI64, Ordering};

use time::{Duration, OffsetDateTime};

/// A source of the current time (UTC).
pub trait Clock: Send + Sync + Debug {
    /// The current instant, in UTC.
    fn now(&self) -> OffsetDateTime;
}

/// The real wall clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    #[expect(
        clippy::disallowed_methods,
        reason = "this is the one place that reads the wall clock"
    )]
    fn now(&self) -> OffsetDateTime {
        // Microsecond precision: what PostgreSQL keeps, so a value read back
        // from either database equals the value written.
        let now = OffsetDateTime::now_utc();
        now.replace_nanosecond(now.nanosecond() / 1_000 * 1_000)
            .unwrap_or(now)
    }
}

/// A clock that only moves when told to. Lock-free, so it can be shared
/// between tasks in tests.
#[derive(Debug)]
pub struct FakeClock {
    /// Nanoseconds since the Unix epoch.
    nanos: AtomicI64,
}

impl FakeClock {
    /// A fake clock standing at `start` (sub-microsecond precision is dropped
    /// so that values round-trip through every database unchanged).
    pub fn new(start: OffsetDateTime) -> Self {
        Self {
            nanos: AtomicI64::new(truncate_micros(start)),
        }
    }

    /// Moves the clock forward (or backward, with a negative duration).
    pub fn advance(&self, by: Duration) {
        let by = i64::try_from(by.whole_nanoseconds()).unwrap_or(i64::MAX);
        self.nanos.fetch_add(by, Ordering::SeqCst);
    }

    /// Sets the clock to `at`.
    pub fn set(&self, at: OffsetDateTime) {
        self.nanos.store(truncate_micros(at), Ordering::SeqCst);
    }
}

impl Default for FakeClock {
    fn default() -> Self {
        // 2026-01-01T00:00:00Z: a fixed, readable start for tests.
        Self::new(OffsetDateTime::UNIX_EPOCH + Duration::seconds(1_767_225_600))
    }
}

impl Clock for FakeClock {
    fn now(&self) -> OffsetDateTime {
        let nanos = self.nanos.load(Ordering::SeqCst);
        OffsetDateTime::from_unix_timestamp_nanos(i128::from(nanos))
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }
}

fn truncate_micros(at: OffsetDateTime) -> i64 {
    let nanos = at.unix_timestamp_nanos();
    let truncated = nanos - nanos.rem_euclid(1_000);
    i64::try_from(truncated).unwrap_or(i64::MAX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fake_clock_moves_only_when_told() {
        let clock = FakeClock::default();
        let start = clock.now();
        assert_eq!(clock.now(), start);
        clock.advance(Duration::hours(4));
        assert_eq!(clock.now() - start, Duration::hours(4));
    }

    #[test]
    fn system_clock_is_utc() {
        assert!(SystemClock.now().offset().is_utc());
    }
}
