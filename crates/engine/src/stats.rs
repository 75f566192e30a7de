//! What the engine measures about itself: steps run, waves committed, and
//! the latency of each step from the moment it was due to the moment its
//! result was committed. Kept in fixed logarithmic buckets, so memory stays
//! constant however many steps run.

use std::sync::Mutex;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

/// Buckets per power of two (resolution about 9%).
const SUB: usize = 8;
/// Powers of two covered, from 1 µs: up to about 2^37 µs (38 hours).
const OCTAVES: usize = 38;

/// Counters and the step-latency histogram.
#[derive(Debug)]
pub struct EngineStats {
    steps: AtomicU64,
    waves: AtomicU64,
    commits: AtomicU64,
    retries: AtomicU64,
    /// The sum of every recorded step latency, in microseconds.
    latency_sum_micros: AtomicU64,
    latency: Mutex<Vec<u64>>,
}

/// The step-latency histogram folded into coarser buckets, for Prometheus.
#[derive(Debug, Clone, PartialEq)]
pub struct LatencyBuckets {
    /// `(upper bound in seconds, steps in this bucket)`, not cumulative;
    /// the last bound is `f64::MAX` (`+Inf`).
    pub buckets: Vec<(f64, u64)>,
    /// Steps recorded.
    pub count: u64,
    /// Their latencies added up, in seconds.
    pub sum_seconds: f64,
}

impl Default for EngineStats {
    fn default() -> Self {
        Self {
            steps: AtomicU64::new(0),
            waves: AtomicU64::new(0),
            commits: AtomicU64::new(0),
            retries: AtomicU64::new(0),
            latency_sum_micros: AtomicU64::new(0),
            latency: Mutex::new(vec![0; SUB * OCTAVES + 1]),
        }
    }
}

fn bucket(micros: u64) -> usize {
    if micros < 1 {
        return 0;
    }
    let octave = 63 - micros.leading_zeros() as usize;
    let base = 1u64 << octave;
    let fraction = ((u128::from(micros - base) * SUB as u128) / u128::from(base)) as usize;
    (octave * SUB + fraction + 1).min(SUB * OCTAVES)
}

fn bucket_upper_micros(index: usize) -> f64 {
    if index == 0 {
        return 1.0;
    }
    let octave = (index - 1) / SUB;
    let fraction = (index - 1) % SUB;
    let base = (1u64 << octave) as f64;
    base + base * (fraction as f64 + 1.0) / SUB as f64
}

impl EngineStats {
    /// Records `count` steps that each took `latency`.
    pub fn record_steps(&self, count: u64, latency: Duration) {
        if count == 0 {
            return;
        }
        self.steps.fetch_add(count, Ordering::Relaxed);
        let micros = u64::try_from(latency.as_micros()).unwrap_or(u64::MAX);
        self.latency_sum_micros
            .fetch_add(micros.saturating_mul(count), Ordering::Relaxed);
        let mut buckets = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(slot) = buckets.get_mut(bucket(micros)) {
            *slot += count;
        }
    }

    /// Records a committed batch of `waves` instance waves.
    pub fn record_commit(&self, waves: u64) {
        self.waves.fetch_add(waves, Ordering::Relaxed);
        self.commits.fetch_add(1, Ordering::Relaxed);
    }

    /// Records `count` retries scheduled after failed attempts (of steps
    /// or of compensations).
    pub fn record_retries(&self, count: u64) {
        self.retries.fetch_add(count, Ordering::Relaxed);
    }

    /// Retries scheduled so far.
    pub fn retries(&self) -> u64 {
        self.retries.load(Ordering::Relaxed)
    }

    /// The latency histogram folded into buckets with the upper bounds
    /// `bounds` (seconds, ascending), plus `+Inf`. A fine bucket is counted
    /// in the first bound at or above its own upper bound, so a step is
    /// never reported faster than it was (and at most one fine bucket,
    /// about 9%, slower).
    pub fn latency_buckets(&self, bounds: &[f64]) -> LatencyBuckets {
        let fine = self
            .latency
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut buckets: Vec<(f64, u64)> = bounds.iter().map(|b| (*b, 0)).collect();
        buckets.push((f64::MAX, 0));
        for (index, count) in fine.iter().enumerate().filter(|(_, c)| **c > 0) {
            let upper = bucket_upper_micros(index) / 1e6;
            let slot = buckets
                .iter()
                .position(|(bound, _)| upper <= *bound)
                .unwrap_or(buckets.len() - 1);
            if let Some((_, n)) = buckets.get_mut(slot) {
                *n += count;
            }
        }
        LatencyBuckets {
            count: fine.iter().sum(),
            sum_seconds: self.latency_sum_micros.load(Ordering::Relaxed) as f64 / 1e6,
            buckets,
        }
    }

    /// Steps run so far.
    pub fn steps(&self) -> u64 {
        self.steps.load(Ordering::Relaxed)
    }

    /// Instance waves committed so far.
    pub fn waves(&self) -> u64 {
        self.waves.load(Ordering::Relaxed)
    }

    /// Commits (transactions) so far.
    pub fn commits(&self) -> u64 {
        self.commits.load(Ordering::Relaxed)
    }

    /// The step latency at quantile `q` (0..=1), in milliseconds (the upper
    /// bound of its bucket), or `None` before any step.
    pub fn latency_quantile_ms(&self, q: f64) -> Option<f64> {
        let buckets = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        let total: u64 = buckets.iter().sum();
        if total == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * total as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (index, count) in buckets.iter().enumerate() {
            seen += count;
            if seen >= rank {
                return Some(bucket_upper_micros(index) / 1000.0);
            }
        }
        None
    }

    /// Clears the latency histogram (benchmarks measure phases separately).
    pub fn reset_latency(&self) {
        let mut buckets = self.latency.lock().unwrap_or_else(|p| p.into_inner());
        buckets.iter_mut().for_each(|b| *b = 0);
        self.latency_sum_micros.store(0, Ordering::Relaxed);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quantiles_come_from_the_right_buckets() {
        let stats = EngineStats::default();
        assert_eq!(stats.latency_quantile_ms(0.5), None);
        stats.record_steps(90, Duration::from_micros(1_000));
        stats.record_steps(10, Duration::from_millis(40));
        let p50 = stats.latency_quantile_ms(0.5).unwrap();
        let p99 = stats.latency_quantile_ms(0.99).unwrap();
        assert!((1.0..1.15).contains(&p50), "{p50}");
        assert!((40.0..44.0).contains(&p99), "{p99}");
        assert_eq!(stats.steps(), 100);
        stats.reset_latency();
        assert_eq!(stats.latency_quantile_ms(0.5), None);
        assert_eq!(stats.steps(), 100, "counters survive a histogram reset");
    }

    #[test]
    fn folded_buckets_never_report_a_step_faster_than_it_was() {
        let stats = EngineStats::default();
        stats.record_steps(3, Duration::from_micros(900));
        stats.record_steps(2, Duration::from_millis(20));
        stats.record_steps(1, Duration::from_secs(100));
        stats.record_retries(4);
        let folded = stats.latency_buckets(&[0.001, 0.01, 0.1, 1.0]);
        assert_eq!(folded.count, 6);
        assert_eq!(
            folded.buckets,
            vec![(0.001, 3), (0.01, 0), (0.1, 2), (1.0, 0), (f64::MAX, 1)]
        );
        assert!((folded.sum_seconds - (0.0027 + 0.04 + 100.0)).abs() < 1e-9);
        assert_eq!(stats.retries(), 4);
    }

    #[test]
    fn buckets_are_monotonic_and_cover_the_range() {
        let mut last = 0;
        for micros in [0u64, 1, 2, 3, 7, 8, 100, 1_000, 65_535, 1 << 30, u64::MAX] {
            let b = bucket(micros);
            assert!(b >= last, "{micros}");
            assert!(b <= SUB * OCTAVES);
            last = b;
        }
        assert!(bucket_upper_micros(bucket(1_000)) >= 1_000.0);
    }
}
