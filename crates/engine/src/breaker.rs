//! A circuit breaker per connector instance.
//!
//! When a target system is down, retrying every step against it only adds
//! load and fills the journal with failures. After `failure_threshold`
//! consecutive failures the breaker *opens*: calls are refused at once, with
//! the time until it will try again, so the engine can park the step on a
//! timer without spending an attempt. When `open_for` has passed it is
//! *half-open*: up to `half_open_probes` calls go through as probes. A probe
//! that succeeds closes the breaker; one that fails opens it again for
//! another `open_for`.
//!
//! ```text
//!  closed ──N consecutive failures──► open ──open_for passes──► half-open
//!    ▲                                 ▲                          │  │
//!    │                                 └──────probe fails─────────┘  │
//!    └───────────────────────────probe succeeds──────────────────────┘
//! ```
//!
//! A call may only be made with a [`Permit`], and the permit is how its
//! outcome is recorded ([`Permit::success`], [`Permit::failure`]). A permit
//! dropped without an outcome counts as a failure: if a call panics or its
//! task is cancelled, the outcome would otherwise never arrive, and a
//! half-open breaker whose probes never report would stay half-open,
//! refusing every call, for ever. Counting it as a failure errs towards
//! protecting the target, and the next probe comes after `open_for`.
//!
//! Every transition starts a new *generation*. A permit remembers the
//! generation it was given in and its outcome is ignored once the breaker
//! has moved on: a slow call that started before the breaker opened cannot
//! close it, nor extend its open time.
//!
//! The state sits behind a `std::sync::Mutex`, held only for a few
//! assignments and never across an `.await`. Every critical section leaves
//! the state consistent, so a poisoned lock is simply taken over.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use gatehouse_core::clock::Clock;
use serde::{Deserialize, Serialize};
use time::{OffsetDateTime, PrimitiveDateTime};

use crate::retry::duration_text;

/// How long a caller refused because all half-open probes are in flight is
/// told to wait (or `open_for`, if shorter). A probe's outcome usually comes
/// within a second; asking again at once would only spin.
const PROBES_BUSY_RETRY: Duration = Duration::from_secs(1);

/// When a breaker opens and how it recovers.
///
/// Serialized with `open_for` as text (`"30s"`); fields left out take their
/// default, and deserialization validates.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "RawBreakerConfig")]
pub struct BreakerConfig {
    /// Consecutive failures that open the breaker (at least 1).
    pub failure_threshold: u32,
    /// How long an open breaker refuses calls before probing.
    #[serde(with = "duration_text")]
    pub open_for: Duration,
    /// How many probe calls a half-open breaker lets through (at least 1).
    pub half_open_probes: u32,
}

impl Default for BreakerConfig {
    /// Open after 5 consecutive failures, for 30 seconds, then one probe.
    fn default() -> Self {
        Self {
            failure_threshold: 5,
            open_for: Duration::from_secs(30),
            half_open_probes: 1,
        }
    }
}

/// A breaker configuration that breaks a rule; names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid circuit breaker configuration: `{field}` {reason}")]
pub struct BreakerConfigError {
    /// The field, as written (`failure_threshold`, `half_open_probes`).
    pub field: &'static str,
    /// What the rule is.
    pub reason: &'static str,
}

impl BreakerConfig {
    /// Checks the rules: a threshold of 0 would open before any failure, and
    /// 0 probes would never let the breaker close again.
    pub fn validate(&self) -> Result<(), BreakerConfigError> {
        if self.failure_threshold < 1 {
            return Err(BreakerConfigError {
                field: "failure_threshold",
                reason: "must be at least 1",
            });
        }
        if self.half_open_probes < 1 {
            return Err(BreakerConfigError {
                field: "half_open_probes",
                reason: "must be at least 1, or the breaker could never close again",
            });
        }
        Ok(())
    }
}

/// The fields of a [`BreakerConfig`] as written, before validation.
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawBreakerConfig {
    failure_threshold: u32,
    #[serde(with = "duration_text")]
    open_for: Duration,
    half_open_probes: u32,
}

impl Default for RawBreakerConfig {
    fn default() -> Self {
        let BreakerConfig {
            failure_threshold,
            open_for,
            half_open_probes,
        } = BreakerConfig::default();
        Self {
            failure_threshold,
            open_for,
            half_open_probes,
        }
    }
}

impl TryFrom<RawBreakerConfig> for BreakerConfig {
    type Error = BreakerConfigError;

    fn try_from(raw: RawBreakerConfig) -> Result<Self, Self::Error> {
        let config = Self {
            failure_threshold: raw.failure_threshold,
            open_for: raw.open_for,
            half_open_probes: raw.half_open_probes,
        };
        config.validate()?;
        Ok(config)
    }
}

/// Where a breaker stands, as shown in metrics and the console.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls go through.
    Closed {
        /// Failures recorded since the last success.
        consecutive_failures: u32,
    },
    /// Calls are refused until `until`.
    Open {
        /// When the breaker will let a probe through.
        until: OffsetDateTime,
    },
    /// The next calls, up to the configured number, are probes.
    HalfOpen {
        /// Probes given out whose outcome is not yet known.
        probes_in_flight: u32,
    },
}

impl BreakerState {
    /// The state's name for metrics labels: `closed`, `open`, `half_open`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Self::Closed { .. } => "closed",
            Self::Open { .. } => "open",
            Self::HalfOpen { .. } => "half_open",
        }
    }
}

/// A call was refused because the breaker is open (or all its probes are
/// out). Not an attempt: the step should wait `retry_in` and ask again.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the target's circuit breaker is open; retry in {retry_in:?}")]
pub struct Rejected {
    /// How long until the breaker may let a call through.
    pub retry_in: Duration,
}

/// The state and the generation it belongs to.
#[derive(Debug)]
struct Inner {
    state: BreakerState,
    /// Incremented on every transition; see the module docs.
    generation: u64,
}

impl Inner {
    fn enter(&mut self, state: BreakerState) {
        self.state = state;
        self.generation = self.generation.wrapping_add(1);
    }
}

/// A circuit breaker for one connector instance. Thread-safe; share it
/// behind an `Arc` (see [`BreakerRegistry`]).
#[derive(Debug)]
pub struct CircuitBreaker {
    config: BreakerConfig,
    clock: Arc<dyn Clock>,
    inner: Mutex<Inner>,
}

impl CircuitBreaker {
    /// A closed breaker. A `failure_threshold` or `half_open_probes` of 0
    /// (which [`BreakerConfig::validate`] refuses) is taken as 1.
    pub fn new(config: BreakerConfig, clock: Arc<dyn Clock>) -> Self {
        let config = BreakerConfig {
            failure_threshold: config.failure_threshold.max(1),
            half_open_probes: config.half_open_probes.max(1),
            ..config
        };
        Self {
            config,
            clock,
            inner: Mutex::new(Inner {
                state: BreakerState::Closed {
                    consecutive_failures: 0,
                },
                generation: 0,
            }),
        }
    }

    /// The configuration in force.
    pub fn config(&self) -> &BreakerConfig {
        &self.config
    }

    /// Asks to make one call. Closed: allowed. Open: refused until the open
    /// time has passed; then the breaker turns half-open and this call is
    /// the first probe. Half-open: allowed while fewer than
    /// `half_open_probes` probes are in flight.
    pub fn try_acquire(&self) -> Result<Permit<'_>, Rejected> {
        let mut inner = self.lock();
        let now = self.clock.now();
        let probe = match inner.state {
            BreakerState::Closed { .. } => false,
            BreakerState::Open { until } if now < until => {
                return Err(Rejected {
                    retry_in: Duration::try_from(until - now).unwrap_or(Duration::ZERO),
                });
            }
            BreakerState::Open { .. } => {
                inner.enter(BreakerState::HalfOpen {
                    probes_in_flight: 1,
                });
                true
            }
            BreakerState::HalfOpen { probes_in_flight } => {
                if probes_in_flight >= self.config.half_open_probes {
                    return Err(Rejected {
                        retry_in: PROBES_BUSY_RETRY.min(self.config.open_for),
                    });
                }
                // Same generation: the probes of one half-open spell share it.
                inner.state = BreakerState::HalfOpen {
                    probes_in_flight: probes_in_flight + 1,
                };
                true
            }
        };
        Ok(Permit {
            breaker: self,
            generation: inner.generation,
            probe,
            recorded: false,
        })
    }

    /// Where the breaker stands. An open breaker whose open time has passed
    /// is reported as half-open with no probes in flight: that is what the
    /// next call will find.
    pub fn state(&self) -> BreakerState {
        let inner = self.lock();
        match inner.state {
            BreakerState::Open { until } if self.clock.now() >= until => BreakerState::HalfOpen {
                probes_in_flight: 0,
            },
            state => state,
        }
    }

    /// Records the outcome of a call made under a permit of `generation`.
    fn record(&self, generation: u64, success: bool) {
        let mut inner = self.lock();
        if inner.generation != generation {
            // The breaker has moved on since this permit was given.
            return;
        }
        match (inner.state, success) {
            (BreakerState::Closed { .. }, true) => {
                inner.state = BreakerState::Closed {
                    consecutive_failures: 0,
                };
            }
            (
                BreakerState::Closed {
                    consecutive_failures,
                },
                false,
            ) => {
                let failures = consecutive_failures.saturating_add(1);
                if failures >= self.config.failure_threshold {
                    let until = self.open_until();
                    inner.enter(BreakerState::Open { until });
                } else {
                    inner.state = BreakerState::Closed {
                        consecutive_failures: failures,
                    };
                }
            }
            (BreakerState::HalfOpen { .. }, true) => {
                inner.enter(BreakerState::Closed {
                    consecutive_failures: 0,
                });
            }
            (BreakerState::HalfOpen { .. }, false) => {
                let until = self.open_until();
                inner.enter(BreakerState::Open { until });
            }
            // No permit is ever given in the open state, so no outcome can
            // belong to it.
            (BreakerState::Open { .. }, _) => {}
        }
    }

    /// When a breaker opening now closes again (saturating far in the future).
    fn open_until(&self) -> OffsetDateTime {
        let now = self.clock.now();
        time::Duration::try_from(self.config.open_for)
            .ok()
            .and_then(|open_for| now.checked_add(open_for))
            .unwrap_or_else(|| PrimitiveDateTime::MAX.assume_utc())
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // Every critical section leaves `Inner` consistent, so a lock
        // poisoned by a panic elsewhere is safe to take over.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Leave to make one call through a [`CircuitBreaker`]. Report how it went
/// with [`Permit::success`] or [`Permit::failure`]; dropping the permit
/// without either counts as a failure (see the module docs).
///
/// A *failure* is an outcome that says the target is unhealthy: a timeout,
/// a connection error, a 5xx, a 429. A response that shows the target
/// working but refusing this request (a 400, a 409) is a success for the
/// breaker, even though the step failed.
#[derive(Debug)]
#[must_use = "record the outcome with `success()` or `failure()`; a dropped permit counts as a failure"]
pub struct Permit<'a> {
    breaker: &'a CircuitBreaker,
    generation: u64,
    probe: bool,
    recorded: bool,
}

impl Permit<'_> {
    /// Whether this call is a half-open probe (worth a log line).
    pub fn is_probe(&self) -> bool {
        self.probe
    }

    /// The call succeeded: the target is healthy.
    pub fn success(mut self) {
        self.record(true);
    }

    /// The call failed in a way that says the target is unhealthy.
    pub fn failure(mut self) {
        self.record(false);
    }

    fn record(&mut self, success: bool) {
        if !self.recorded {
            self.recorded = true;
            self.breaker.record(self.generation, success);
        }
    }
}

impl Drop for Permit<'_> {
    fn drop(&mut self) {
        self.record(false);
    }
}

/// The breakers of all connector instances, created on first use.
#[derive(Debug)]
pub struct BreakerRegistry {
    config: BreakerConfig,
    clock: Arc<dyn Clock>,
    breakers: Mutex<HashMap<String, Arc<CircuitBreaker>>>,
}

impl BreakerRegistry {
    /// An empty registry whose breakers will use `config` and `clock`.
    pub fn new(config: BreakerConfig, clock: Arc<dyn Clock>) -> Self {
        Self {
            config,
            clock,
            breakers: Mutex::new(HashMap::new()),
        }
    }

    /// The breaker of the connector instance `key`, created closed on first use.
    pub fn get(&self, key: &str) -> Arc<CircuitBreaker> {
        let mut breakers = self.lock();
        if let Some(breaker) = breakers.get(key) {
            return Arc::clone(breaker);
        }
        let breaker = Arc::new(CircuitBreaker::new(self.config, Arc::clone(&self.clock)));
        breakers.insert(key.to_owned(), Arc::clone(&breaker));
        breaker
    }

    /// Every breaker's state, ordered by key, for metrics.
    pub fn states(&self) -> Vec<(String, BreakerState)> {
        let mut breakers: Vec<(String, Arc<CircuitBreaker>)> = self
            .lock()
            .iter()
            .map(|(key, breaker)| (key.clone(), Arc::clone(breaker)))
            .collect();
        breakers.sort_by(|a, b| a.0.cmp(&b.0));
        breakers
            .into_iter()
            .map(|(key, breaker)| (key, breaker.state()))
            .collect()
    }

    fn lock(&self) -> MutexGuard<'_, HashMap<String, Arc<CircuitBreaker>>> {
        // Inserting is the only mutation; a poisoned map is still whole.
        self.breakers.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use std::sync::Barrier;

    use gatehouse_core::clock::FakeClock;

    fn breaker(config: BreakerConfig) -> (Arc<FakeClock>, CircuitBreaker) {
        let clock = Arc::new(FakeClock::default());
        let breaker = CircuitBreaker::new(config, clock.clone());
        (clock, breaker)
    }

    fn config(failure_threshold: u32, open_for_secs: u64, half_open_probes: u32) -> BreakerConfig {
        BreakerConfig {
            failure_threshold,
            open_for: Duration::from_secs(open_for_secs),
            half_open_probes,
        }
    }

    fn fail(breaker: &CircuitBreaker, times: u32) {
        for _ in 0..times {
            breaker.try_acquire().unwrap().failure();
        }
    }

    fn closed(consecutive_failures: u32) -> BreakerState {
        BreakerState::Closed {
            consecutive_failures,
        }
    }

    #[test]
    fn the_default_opens_after_five_failures_for_thirty_seconds_with_one_probe() {
        assert_eq!(BreakerConfig::default(), config(5, 30, 1));
    }

    #[test]
    fn opens_after_the_threshold_of_consecutive_failures() {
        let (clock, b) = breaker(config(3, 30, 1));
        fail(&b, 2);
        assert_eq!(b.state(), closed(2));
        fail(&b, 1);
        let until = clock.now() + time::Duration::seconds(30);
        assert_eq!(b.state(), BreakerState::Open { until });
        assert_eq!(b.state().as_str(), "open");
    }

    #[test]
    fn a_success_in_between_resets_the_count() {
        let (_clock, b) = breaker(config(3, 30, 1));
        fail(&b, 2);
        b.try_acquire().unwrap().success();
        assert_eq!(b.state(), closed(0));
        fail(&b, 2);
        assert_eq!(b.state(), closed(2));
        fail(&b, 1);
        assert_eq!(b.state().as_str(), "open");
    }

    #[test]
    fn an_open_breaker_rejects_with_the_time_remaining() {
        let (clock, b) = breaker(config(1, 30, 1));
        fail(&b, 1);
        assert_eq!(
            b.try_acquire().unwrap_err(),
            Rejected {
                retry_in: Duration::from_secs(30)
            }
        );
        clock.advance(time::Duration::seconds(10));
        let rejected = b.try_acquire().unwrap_err();
        assert_eq!(rejected.retry_in, Duration::from_secs(20));
        assert!(rejected.to_string().contains("20s"), "{rejected}");
        clock.advance(time::Duration::milliseconds(19_999));
        assert_eq!(
            b.try_acquire().unwrap_err().retry_in,
            Duration::from_millis(1)
        );
        // Rejections are not failures: the open time is not extended.
        clock.advance(time::Duration::milliseconds(1));
        assert!(b.try_acquire().is_ok());
    }

    #[test]
    fn half_open_lets_exactly_the_configured_probes_through() {
        for probes in [1, 2, 5] {
            let (clock, b) = breaker(config(1, 30, probes));
            fail(&b, 1);
            clock.advance(time::Duration::seconds(30));
            assert_eq!(
                b.state(),
                BreakerState::HalfOpen {
                    probes_in_flight: 0
                }
            );
            let permits: Vec<_> = (0..probes).map(|_| b.try_acquire().unwrap()).collect();
            assert!(permits.iter().all(Permit::is_probe));
            assert_eq!(
                b.state(),
                BreakerState::HalfOpen {
                    probes_in_flight: probes
                }
            );
            assert_eq!(
                b.try_acquire().unwrap_err().retry_in,
                PROBES_BUSY_RETRY,
                "{probes} probes"
            );
            for permit in permits {
                permit.success();
            }
        }
    }

    #[test]
    fn a_successful_probe_closes_the_breaker() {
        let (clock, b) = breaker(config(2, 30, 2));
        fail(&b, 2);
        clock.advance(time::Duration::seconds(31));
        let first = b.try_acquire().unwrap();
        let second = b.try_acquire().unwrap();
        first.success();
        assert_eq!(b.state(), closed(0));
        // The other probe belongs to the half-open spell that ended: ignored.
        second.failure();
        assert_eq!(b.state(), closed(0));
        let permit = b.try_acquire().unwrap();
        assert!(!permit.is_probe());
        permit.success();
        // The count starts afresh.
        fail(&b, 1);
        assert_eq!(b.state(), closed(1));
    }

    #[test]
    fn a_failed_probe_opens_the_breaker_again() {
        let (clock, b) = breaker(config(2, 30, 1));
        fail(&b, 2);
        clock.advance(time::Duration::seconds(45));
        b.try_acquire().unwrap().failure();
        let until = clock.now() + time::Duration::seconds(30);
        assert_eq!(b.state(), BreakerState::Open { until });
        assert_eq!(
            b.try_acquire().unwrap_err().retry_in,
            Duration::from_secs(30)
        );
        clock.advance(time::Duration::seconds(30));
        b.try_acquire().unwrap().success();
        assert_eq!(b.state(), closed(0));
    }

    #[test]
    fn a_dropped_permit_counts_as_a_failure() {
        let (clock, b) = breaker(config(2, 30, 1));
        drop(b.try_acquire().unwrap());
        assert_eq!(b.state(), closed(1));
        drop(b.try_acquire().unwrap());
        assert_eq!(b.state().as_str(), "open");
        // A probe abandoned by a cancelled call re-opens, rather than
        // leaving the breaker half-open for ever.
        clock.advance(time::Duration::seconds(30));
        drop(b.try_acquire().unwrap());
        assert_eq!(b.state().as_str(), "open");
        clock.advance(time::Duration::seconds(30));
        assert!(b.try_acquire().unwrap().is_probe());
    }

    #[test]
    fn a_call_that_panics_counts_as_a_failure() {
        let (_clock, b) = breaker(config(1, 30, 1));
        let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            let _permit = b.try_acquire().unwrap();
            panic!("the connector panicked mid-call");
        }));
        assert!(outcome.is_err());
        assert_eq!(b.state().as_str(), "open");
    }

    #[test]
    fn an_outcome_from_before_the_breaker_opened_is_ignored() {
        let (clock, b) = breaker(config(1, 30, 1));
        let slow = b.try_acquire().unwrap();
        fail(&b, 1);
        let open = b.state();
        clock.advance(time::Duration::seconds(5));
        slow.success();
        assert_eq!(b.state(), open, "a stale success must not close it");
        let slow = {
            clock.advance(time::Duration::seconds(25));
            let probe = b.try_acquire().unwrap();
            probe.success();
            b.try_acquire().unwrap()
        };
        fail(&b, 1);
        let open = b.state();
        clock.advance(time::Duration::seconds(5));
        slow.failure();
        assert_eq!(b.state(), open, "a stale failure must not extend it");
    }

    #[test]
    fn zero_thresholds_are_taken_as_one() {
        let (clock, b) = breaker(config(0, 30, 0));
        assert_eq!(b.config(), &config(1, 30, 1));
        fail(&b, 1);
        assert_eq!(b.state().as_str(), "open");
        clock.advance(time::Duration::seconds(30));
        let _probe = b.try_acquire().unwrap();
        assert!(b.try_acquire().is_err());
    }

    #[test]
    fn concurrent_failures_are_all_counted() {
        let (_clock, b) = breaker(config(u32::MAX, 30, 1));
        std::thread::scope(|scope| {
            for _ in 0..8 {
                scope.spawn(|| fail(&b, 500));
            }
        });
        assert_eq!(b.state(), closed(4_000));
    }

    #[test]
    fn concurrent_failures_open_the_breaker_at_the_threshold() {
        let (clock, b) = breaker(config(100, 30, 1));
        let threads = 8;
        let granted: usize = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..threads)
                .map(|_| {
                    scope.spawn(|| {
                        let mut granted = 0;
                        for _ in 0..50 {
                            if let Ok(permit) = b.try_acquire() {
                                granted += 1;
                                permit.failure();
                            }
                        }
                        granted
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        // The 100th recorded failure opens it; each other thread may have
        // held one permit at that moment, whose failure is then ignored.
        // A lost update would need more permits than that.
        assert!((100..100 + threads).contains(&granted), "{granted}");
        assert_eq!(
            b.state(),
            BreakerState::Open {
                until: clock.now() + time::Duration::seconds(30)
            }
        );
    }

    #[test]
    fn concurrent_callers_get_exactly_the_configured_probes() {
        let (clock, b) = breaker(config(1, 30, 3));
        fail(&b, 1);
        clock.advance(time::Duration::seconds(30));
        let barrier = Barrier::new(8);
        let granted: usize = std::thread::scope(|scope| {
            let handles: Vec<_> = (0..8)
                .map(|_| {
                    scope.spawn(|| {
                        let attempt = b.try_acquire();
                        // Hold every permit until all callers have asked.
                        barrier.wait();
                        match attempt {
                            Ok(permit) => {
                                permit.success();
                                1
                            }
                            Err(_) => 0,
                        }
                    })
                })
                .collect();
            handles.into_iter().map(|h| h.join().unwrap()).sum()
        });
        assert_eq!(granted, 3);
        assert_eq!(b.state(), closed(0));
    }

    #[test]
    fn state_shows_half_open_once_the_open_time_has_passed() {
        let (clock, b) = breaker(config(1, 30, 1));
        assert_eq!(b.state().as_str(), "closed");
        fail(&b, 1);
        clock.advance(time::Duration::seconds(29));
        assert_eq!(b.state().as_str(), "open");
        clock.advance(time::Duration::seconds(1));
        assert_eq!(b.state().as_str(), "half_open");
    }

    #[test]
    fn the_registry_keeps_one_breaker_per_connector_instance() {
        let clock = Arc::new(FakeClock::default());
        let registry = BreakerRegistry::new(config(1, 30, 1), clock);
        let graph = registry.get("graph-acme");
        assert!(Arc::ptr_eq(&graph, &registry.get("graph-acme")));
        let scim = registry.get("scim-acme");
        assert!(!Arc::ptr_eq(&graph, &scim));
        graph.try_acquire().unwrap().failure();
        let states: Vec<_> = registry
            .states()
            .into_iter()
            .map(|(key, state)| (key, state.as_str()))
            .collect();
        assert_eq!(
            states,
            [
                ("graph-acme".to_owned(), "open"),
                ("scim-acme".to_owned(), "closed")
            ]
        );
    }

    #[test]
    fn configs_round_trip_and_validate() {
        let cfg = config(3, 90, 2);
        let text = toml::to_string(&cfg).unwrap();
        assert!(text.contains("open_for = \"90s\""), "{text}");
        assert_eq!(toml::from_str::<BreakerConfig>(&text).unwrap(), cfg);
        assert_eq!(
            toml::from_str::<BreakerConfig>("open_for = \"2m\"").unwrap(),
            BreakerConfig {
                open_for: Duration::from_secs(120),
                ..BreakerConfig::default()
            }
        );
        for (text, field) in [
            ("failure_threshold = 0", "failure_threshold"),
            ("half_open_probes = 0", "half_open_probes"),
        ] {
            let err = toml::from_str::<BreakerConfig>(text)
                .unwrap_err()
                .to_string();
            assert!(err.contains(field), "{err}");
        }
        assert!(toml::from_str::<BreakerConfig>("open_for = 30").is_err());
    }
}
