//! How long to wait before trying a failed step again.
//!
//! A [`RetryPolicy`] is plain data that a workflow template names per step,
//! so it has a readable text form (`initial = "500ms"`, `max = "5m"`) and is
//! validated when it is parsed. [`RetryPolicy::delay`] is a pure function of
//! the attempt number, the server's `Retry-After` and a random number the
//! caller passes in: the engine stores the resulting wake-up time as a
//! durable timer, and tests check exact delays without an RNG or a clock.
//!
//! The shape of the delay:
//! - exponential: `initial × multiplier^(failures − 1)`, capped at `max`;
//! - jittered downwards by a fraction: `delay × (1 − jitter × random)`, so
//!   with `jitter = 0.5` it is AWS's "equal jitter" (half fixed, half
//!   random) and with the default `0.2` it lies in `(0.8 × delay, delay]`.
//!   Jitter only ever shortens the wait, so `max` stays a true bound, and
//!   many steps failing together against one target spread out instead of
//!   retrying in lockstep;
//! - never shorter than the target's `Retry-After`: the server knows when
//!   it will take work again, and retrying earlier only earns another 429
//!   or 503. A `Retry-After` beyond `max` is still honoured (the server said
//!   so), but only up to [`RETRY_AFTER_CEILING`] (one hour), so a
//!   misconfigured or hostile target cannot park a step for days.

use std::fmt;
use std::time::Duration;

use serde::{Deserialize, Serialize};

/// The longest `Retry-After` that is honoured; longer requests wait this long.
pub const RETRY_AFTER_CEILING: Duration = Duration::from_secs(60 * 60);

/// When and how often a failed step is tried again.
///
/// Serialized with durations as text (`"500ms"`, `"30s"`, `"5m"`, `"2h"`);
/// fields left out take their default, and deserialization validates.
#[derive(Debug, Clone, Copy, PartialEq, Serialize, Deserialize)]
#[serde(try_from = "RawRetryPolicy")]
pub struct RetryPolicy {
    /// How many attempts in all, the first one included (at least 1).
    pub max_attempts: u32,
    /// The wait after the first failure, before jitter.
    #[serde(with = "duration_text")]
    pub initial: Duration,
    /// The longest wait that backoff reaches (a `Retry-After` may ask for more).
    #[serde(with = "duration_text")]
    pub max: Duration,
    /// How much the wait grows with each failure (at least 1.0).
    pub multiplier: f64,
    /// The fraction of the wait that is random, from 0.0 (none) to 1.0
    /// (anywhere between zero and the full wait).
    pub jitter: f64,
}

impl Default for RetryPolicy {
    /// Five attempts, 500 ms doubling up to five minutes, 20 % jitter.
    fn default() -> Self {
        Self {
            max_attempts: 5,
            initial: Duration::from_millis(500),
            max: Duration::from_secs(5 * 60),
            multiplier: 2.0,
            jitter: 0.2,
        }
    }
}

/// A retry policy that breaks a rule; names the field.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid retry policy: `{field}` {reason}")]
pub struct RetryPolicyError {
    /// The field, as written in a template (`max_attempts`, `jitter`, …).
    pub field: &'static str,
    /// What the rule is, in words a template author can act on.
    pub reason: String,
}

impl RetryPolicyError {
    fn new(field: &'static str, reason: impl Into<String>) -> Self {
        Self {
            field,
            reason: reason.into(),
        }
    }
}

impl RetryPolicy {
    /// Checks the rules: at least one attempt, `initial ≤ max`,
    /// `multiplier ≥ 1.0`, `jitter` within `0.0..=1.0` (NaN fails both).
    pub fn validate(&self) -> Result<(), RetryPolicyError> {
        if self.max_attempts < 1 {
            return Err(RetryPolicyError::new(
                "max_attempts",
                "must be at least 1 (the first attempt counts)",
            ));
        }
        if self.initial > self.max {
            return Err(RetryPolicyError::new(
                "initial",
                format!(
                    "({}) must not be longer than `max` ({})",
                    format_duration(self.initial),
                    format_duration(self.max)
                ),
            ));
        }
        // Written so that NaN fails too.
        if !(self.multiplier >= 1.0 && self.multiplier.is_finite()) {
            return Err(RetryPolicyError::new(
                "multiplier",
                format!(
                    "({}) must be a finite number of at least 1.0",
                    self.multiplier
                ),
            ));
        }
        if !(0.0..=1.0).contains(&self.jitter) {
            return Err(RetryPolicyError::new(
                "jitter",
                format!("({}) must be between 0.0 and 1.0", self.jitter),
            ));
        }
        Ok(())
    }

    /// The wait before attempt `attempt + 1`, after `attempt` attempts have
    /// failed (attempts count from 1), or `None` when `attempt` has reached
    /// `max_attempts` and the step has failed for good.
    ///
    /// `retry_after` is what the target asked for, if anything (see
    /// [`parse_retry_after`]); the wait is never shorter than it, up to
    /// [`RETRY_AFTER_CEILING`]. `random` is a number in `[0, 1)` (see
    /// [`random_unit`]); the same inputs always give the same wait.
    /// `attempt == 0` (nothing has failed yet) gives no backoff, only the
    /// `Retry-After`.
    ///
    /// Out-of-range values in an unvalidated policy are clamped rather than
    /// trusted, so this never panics.
    pub fn delay(
        &self,
        attempt: u32,
        retry_after: Option<Duration>,
        random: f64,
    ) -> Option<Duration> {
        if attempt >= self.max_attempts {
            return None;
        }
        let honoured = retry_after.map_or(Duration::ZERO, |d| d.min(RETRY_AFTER_CEILING));
        Some(self.backoff(attempt, random).max(honoured))
    }

    /// Exponential backoff after `failures` failures, capped at `max`, jittered.
    fn backoff(&self, failures: u32, random: f64) -> Duration {
        if failures == 0 {
            return Duration::ZERO;
        }
        // `>=` is false for NaN, so NaN falls back to 1.0 too.
        let multiplier = if self.multiplier >= 1.0 {
            self.multiplier
        } else {
            1.0
        };
        let growth = multiplier.powf(f64::from(failures - 1));
        let uncapped = self.initial.as_secs_f64() * growth;
        // Infinity, or more than `Duration` holds, is simply "beyond the cap".
        let capped = Duration::try_from_secs_f64(uncapped).map_or(self.max, |d| d.min(self.max));

        let jitter = if self.jitter.is_nan() {
            0.0
        } else {
            self.jitter.clamp(0.0, 1.0)
        };
        let random = if random.is_nan() {
            0.5
        } else {
            random.clamp(0.0, 1.0)
        };
        let factor = 1.0 - jitter * random;
        Duration::try_from_secs_f64(capped.as_secs_f64() * factor).map_or(capped, |d| d.min(capped))
    }
}

/// The fields of a [`RetryPolicy`] as written, before validation.
#[derive(Deserialize)]
#[serde(default, deny_unknown_fields)]
struct RawRetryPolicy {
    max_attempts: u32,
    #[serde(with = "duration_text")]
    initial: Duration,
    #[serde(with = "duration_text")]
    max: Duration,
    multiplier: f64,
    jitter: f64,
}

impl Default for RawRetryPolicy {
    fn default() -> Self {
        let RetryPolicy {
            max_attempts,
            initial,
            max,
            multiplier,
            jitter,
        } = RetryPolicy::default();
        Self {
            max_attempts,
            initial,
            max,
            multiplier,
            jitter,
        }
    }
}

impl TryFrom<RawRetryPolicy> for RetryPolicy {
    type Error = RetryPolicyError;

    fn try_from(raw: RawRetryPolicy) -> Result<Self, Self::Error> {
        let policy = Self {
            max_attempts: raw.max_attempts,
            initial: raw.initial,
            max: raw.max,
            multiplier: raw.multiplier,
            jitter: raw.jitter,
        };
        policy.validate()?;
        Ok(policy)
    }
}

/// A uniformly distributed number in `[0, 1)` from the operating system's
/// random number generator, for [`RetryPolicy::delay`]. Jitter does not need
/// to be unpredictable, so if the generator fails this returns 0.5 rather
/// than failing the step.
pub fn random_unit() -> f64 {
    match getrandom::u64() {
        // The top 53 bits, scaled: every value is exact and below 1.0.
        Ok(bits) => (bits >> 11) as f64 / (1u64 << 53) as f64,
        Err(_) => 0.5,
    }
}

pub use gatehouse_core::retry_after::parse_retry_after;

/// The units a duration may be written in, largest first, with their length
/// in nanoseconds.
const UNITS: [(&str, u128); 7] = [
    ("d", 86_400_000_000_000),
    ("h", 3_600_000_000_000),
    ("m", 60_000_000_000),
    ("s", 1_000_000_000),
    ("ms", 1_000_000),
    ("us", 1_000),
    ("ns", 1),
];

/// Why a duration's text form was not understood.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DurationTextError {
    /// Nothing was written.
    #[error("a duration must not be empty; write e.g. `500ms`, `30s`, `5m` or `2h`")]
    Empty,
    /// The text does not start with a whole number.
    #[error(
        "`{0}` is not a duration: write a whole number and a unit, e.g. `500ms`, `30s`, `5m` or `2h`"
    )]
    NoNumber(String),
    /// A number without a unit.
    #[error("`{0}` has no unit: write e.g. `{0}s` or `{0}ms`")]
    NoUnit(String),
    /// A fractional number.
    #[error(
        "`{0}`: fractions are not allowed; use a smaller unit (e.g. `1500ms` rather than `1.5s`)"
    )]
    Fraction(String),
    /// A unit that is not one of the known ones.
    #[error("`{text}`: unknown unit `{unit}`; use one of ns, us, ms, s, m, h, d")]
    UnknownUnit {
        /// The whole text.
        text: String,
        /// The unit as written.
        unit: String,
    },
    /// More than a `Duration` holds.
    #[error("`{0}` is too long a duration")]
    TooLarge(String),
}

/// Parses a duration written as a whole number and a unit: `500ms`, `30s`,
/// `5m`, `2h`, `1d` (also `us` and `ns`). No spaces, signs or fractions.
pub fn parse_duration(text: &str) -> Result<Duration, DurationTextError> {
    if text.is_empty() {
        return Err(DurationTextError::Empty);
    }
    let split = text
        .find(|c: char| !c.is_ascii_digit())
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    if number.is_empty() {
        return Err(DurationTextError::NoNumber(text.to_owned()));
    }
    if unit.is_empty() {
        return Err(DurationTextError::NoUnit(text.to_owned()));
    }
    if unit.starts_with(['.', ',']) {
        return Err(DurationTextError::Fraction(text.to_owned()));
    }
    let Some(&(_, unit_nanos)) = UNITS.iter().find(|(name, _)| *name == unit) else {
        return Err(DurationTextError::UnknownUnit {
            text: text.to_owned(),
            unit: unit.to_owned(),
        });
    };
    let too_large = || DurationTextError::TooLarge(text.to_owned());
    let count: u128 = number.parse().map_err(|_| too_large())?;
    let nanos = count.checked_mul(unit_nanos).ok_or_else(too_large)?;
    let secs = u64::try_from(nanos / 1_000_000_000).map_err(|_| too_large())?;
    let subsec = u32::try_from(nanos % 1_000_000_000).map_err(|_| too_large())?;
    Ok(Duration::new(secs, subsec))
}

/// Writes a duration in the largest unit that represents it exactly, in the
/// form [`parse_duration`] reads: `500ms`, `30s`, `90m`, `0s`.
pub fn format_duration(duration: Duration) -> String {
    DurationText(duration).to_string()
}

/// Displays a duration as [`format_duration`] does.
struct DurationText(Duration);

impl fmt::Display for DurationText {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let nanos = self.0.as_nanos();
        if nanos == 0 {
            return f.write_str("0s");
        }
        let (unit, unit_nanos) = UNITS
            .iter()
            .copied()
            .find(|(_, unit_nanos)| nanos.is_multiple_of(*unit_nanos))
            .unwrap_or(("ns", 1));
        write!(f, "{}{unit}", nanos / unit_nanos)
    }
}

/// Serde helpers for a `std::time::Duration` in text form (`"30s"`), for
/// `#[serde(with = "crate::retry::duration_text")]`.
pub mod duration_text {
    use std::time::Duration;

    use serde::{Deserialize, Deserializer, Serializer};

    /// Writes the duration as [`super::format_duration`] does.
    pub fn serialize<S: Serializer>(duration: &Duration, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(&super::DurationText(*duration))
    }

    /// Reads a duration as [`super::parse_duration`] does.
    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Duration, D::Error> {
        let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        super::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use proptest::prelude::*;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    fn secs(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    fn no_jitter() -> RetryPolicy {
        RetryPolicy {
            jitter: 0.0,
            ..RetryPolicy::default()
        }
    }

    #[test]
    fn the_default_is_five_attempts_from_500ms_doubling_to_five_minutes() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.max_attempts, 5);
        assert_eq!(policy.initial, ms(500));
        assert_eq!(policy.max, secs(300));
        assert_eq!(policy.multiplier, 2.0);
        assert_eq!(policy.jitter, 0.2);
        assert_eq!(policy.validate(), Ok(()));
    }

    #[test]
    fn backoff_doubles_and_stops_after_the_last_attempt() {
        let policy = no_jitter();
        let delays: Vec<_> = (1..=6).map(|a| policy.delay(a, None, 0.7)).collect();
        assert_eq!(
            delays,
            [
                Some(ms(500)),
                Some(ms(1000)),
                Some(ms(2000)),
                Some(ms(4000)),
                None,
                None
            ]
        );
        assert_eq!(policy.delay(0, None, 0.7), Some(Duration::ZERO));
        assert_eq!(policy.delay(u32::MAX, None, 0.7), None);
    }

    #[test]
    fn backoff_is_capped_at_max() {
        let policy = RetryPolicy {
            max_attempts: u32::MAX,
            ..no_jitter()
        };
        assert_eq!(policy.delay(10, None, 0.0), Some(secs(256)));
        assert_eq!(policy.delay(11, None, 0.0), Some(secs(300)));
        assert_eq!(policy.delay(1_000, None, 0.0), Some(secs(300)));
        assert_eq!(policy.delay(u32::MAX - 1, None, 0.0), Some(secs(300)));
    }

    #[test]
    fn jitter_shortens_the_wait_by_at_most_its_fraction() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.delay(2, None, 0.0), Some(ms(1000)));
        assert_eq!(policy.delay(2, None, 0.5), Some(ms(900)));
        let almost_one = 1.0 - f64::EPSILON;
        let shortest = policy.delay(2, None, almost_one).unwrap();
        assert!(shortest > ms(799) && shortest <= ms(800), "{shortest:?}");
        let equal = RetryPolicy {
            jitter: 0.5,
            ..policy
        };
        assert_eq!(equal.delay(3, None, 0.5), Some(ms(1500)));
        // Out-of-range inputs are clamped, never trusted.
        assert_eq!(policy.delay(2, None, 7.0), Some(ms(800)));
        assert_eq!(policy.delay(2, None, -1.0), Some(ms(1000)));
        assert_eq!(policy.delay(2, None, f64::NAN), Some(ms(900)));
    }

    #[test]
    fn retry_after_is_honoured_up_to_an_hour() {
        let policy = RetryPolicy::default();
        assert_eq!(policy.delay(1, Some(secs(30)), 0.0), Some(secs(30)));
        // Shorter than the backoff: the backoff wins.
        assert_eq!(policy.delay(4, Some(secs(1)), 0.0), Some(secs(4)));
        // Beyond `max`: honoured anyway.
        assert_eq!(policy.delay(1, Some(secs(900)), 0.0), Some(secs(900)));
        // Beyond the ceiling: one hour.
        assert_eq!(
            policy.delay(1, Some(secs(86_400)), 0.0),
            Some(RETRY_AFTER_CEILING)
        );
        // But never beyond the last attempt.
        assert_eq!(policy.delay(5, Some(secs(30)), 0.0), None);
    }

    #[test]
    fn an_unvalidated_policy_never_panics() {
        let wild = RetryPolicy {
            max_attempts: 10,
            initial: Duration::MAX,
            max: Duration::MAX,
            multiplier: f64::INFINITY,
            jitter: f64::NAN,
        };
        assert_eq!(wild.delay(3, None, 0.5), Some(Duration::MAX));
        let shrinking = RetryPolicy {
            multiplier: 0.1,
            jitter: -3.0,
            ..RetryPolicy::default()
        };
        assert_eq!(shrinking.delay(3, None, 0.5), Some(ms(500)));
        let zero = RetryPolicy {
            max_attempts: 0,
            ..RetryPolicy::default()
        };
        assert_eq!(zero.delay(0, None, 0.5), None);
    }

    #[test]
    fn validation_names_the_field() {
        let cases = [
            (
                RetryPolicy {
                    max_attempts: 0,
                    ..RetryPolicy::default()
                },
                "max_attempts",
            ),
            (
                RetryPolicy {
                    initial: secs(600),
                    ..RetryPolicy::default()
                },
                "initial",
            ),
            (
                RetryPolicy {
                    multiplier: 0.5,
                    ..RetryPolicy::default()
                },
                "multiplier",
            ),
            (
                RetryPolicy {
                    multiplier: f64::NAN,
                    ..RetryPolicy::default()
                },
                "multiplier",
            ),
            (
                RetryPolicy {
                    multiplier: f64::INFINITY,
                    ..RetryPolicy::default()
                },
                "multiplier",
            ),
            (
                RetryPolicy {
                    jitter: 1.5,
                    ..RetryPolicy::default()
                },
                "jitter",
            ),
            (
                RetryPolicy {
                    jitter: -0.1,
                    ..RetryPolicy::default()
                },
                "jitter",
            ),
            (
                RetryPolicy {
                    jitter: f64::NAN,
                    ..RetryPolicy::default()
                },
                "jitter",
            ),
        ];
        for (policy, field) in cases {
            let err = policy.validate().unwrap_err();
            assert_eq!(err.field, field, "{policy:?}");
            assert!(err.to_string().contains(field), "{err}");
        }
        let edges = RetryPolicy {
            max_attempts: 1,
            initial: secs(5),
            max: secs(5),
            multiplier: 1.0,
            jitter: 1.0,
        };
        assert_eq!(edges.validate(), Ok(()));
    }

    #[test]
    fn durations_parse_from_a_number_and_a_unit() {
        let good = [
            ("500ms", ms(500)),
            ("30s", secs(30)),
            ("5m", secs(300)),
            ("2h", secs(7200)),
            ("1d", secs(86_400)),
            ("0s", Duration::ZERO),
            ("250us", Duration::from_micros(250)),
            ("7ns", Duration::from_nanos(7)),
        ];
        for (text, want) in good {
            assert_eq!(parse_duration(text), Ok(want), "{text}");
        }
        let bad = [
            ("", DurationTextError::Empty),
            ("ms", DurationTextError::NoNumber("ms".into())),
            ("-5s", DurationTextError::NoNumber("-5s".into())),
            (" 5s", DurationTextError::NoNumber(" 5s".into())),
            ("30", DurationTextError::NoUnit("30".into())),
            ("1.5s", DurationTextError::Fraction("1.5s".into())),
            (
                "5 s",
                DurationTextError::UnknownUnit {
                    text: "5 s".into(),
                    unit: " s".into(),
                },
            ),
            (
                "5sec",
                DurationTextError::UnknownUnit {
                    text: "5sec".into(),
                    unit: "sec".into(),
                },
            ),
            (
                "99999999999999999999999d",
                DurationTextError::TooLarge("99999999999999999999999d".into()),
            ),
        ];
        for (text, want) in bad {
            assert_eq!(parse_duration(text), Err(want), "{text}");
        }
        assert!(
            parse_duration("30")
                .unwrap_err()
                .to_string()
                .contains("`30s`")
        );
    }

    #[test]
    fn durations_format_in_the_largest_exact_unit() {
        let cases = [
            (Duration::ZERO, "0s"),
            (ms(500), "500ms"),
            (ms(1500), "1500ms"),
            (secs(30), "30s"),
            (secs(90), "90s"),
            (secs(300), "5m"),
            (secs(7200), "2h"),
            (secs(172_800), "2d"),
            (Duration::from_nanos(1_000_001), "1000001ns"),
        ];
        for (duration, text) in cases {
            assert_eq!(format_duration(duration), text);
            assert_eq!(parse_duration(text), Ok(duration));
        }
        assert_eq!(
            parse_duration(&format_duration(Duration::MAX)),
            Ok(Duration::MAX)
        );
    }

    #[test]
    fn policies_round_trip_through_toml_and_json() {
        let policy = RetryPolicy {
            max_attempts: 8,
            initial: secs(2),
            max: secs(3600),
            multiplier: 3.0,
            jitter: 0.5,
        };
        let text = toml::to_string(&policy).unwrap();
        assert!(text.contains("initial = \"2s\""), "{text}");
        assert!(text.contains("max = \"1h\""), "{text}");
        assert_eq!(toml::from_str::<RetryPolicy>(&text).unwrap(), policy);
        let json = serde_json::to_string(&policy).unwrap();
        assert_eq!(
            json,
            r#"{"max_attempts":8,"initial":"2s","max":"1h","multiplier":3.0,"jitter":0.5}"#
        );
        assert_eq!(serde_json::from_str::<RetryPolicy>(&json).unwrap(), policy);
    }

    #[test]
    fn omitted_fields_take_their_defaults() {
        let policy: RetryPolicy = toml::from_str("max_attempts = 3\nmax = \"30s\"").unwrap();
        assert_eq!(
            policy,
            RetryPolicy {
                max_attempts: 3,
                max: secs(30),
                ..RetryPolicy::default()
            }
        );
        assert_eq!(
            toml::from_str::<RetryPolicy>("").unwrap(),
            RetryPolicy::default()
        );
    }

    #[test]
    fn deserialization_validates_and_explains() {
        let err = toml::from_str::<RetryPolicy>("jitter = 2.0")
            .unwrap_err()
            .to_string();
        assert!(err.contains("`jitter`"), "{err}");
        let err = toml::from_str::<RetryPolicy>("initial = \"10m\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("`initial`"), "{err}");
        let err = toml::from_str::<RetryPolicy>("initial = \"1.5s\"")
            .unwrap_err()
            .to_string();
        assert!(err.contains("fractions"), "{err}");
        let err = toml::from_str::<RetryPolicy>("attempts = 3")
            .unwrap_err()
            .to_string();
        assert!(err.contains("attempts"), "{err}");
    }

    #[test]
    fn random_units_are_in_range() {
        for _ in 0..1_000 {
            let r = random_unit();
            assert!((0.0..1.0).contains(&r), "{r}");
        }
    }

    fn policies() -> impl Strategy<Value = RetryPolicy> {
        (
            1u32..20,
            0u64..10_000,
            0u64..3_600_000,
            1.0f64..10.0,
            0.0f64..=1.0,
        )
            .prop_map(|(max_attempts, initial_ms, extra_ms, multiplier, jitter)| {
                RetryPolicy {
                    max_attempts,
                    initial: ms(initial_ms),
                    max: ms(initial_ms + extra_ms),
                    multiplier,
                    jitter,
                }
            })
    }

    proptest! {
        #[test]
        fn delays_stay_within_their_bounds(
            policy in policies(),
            attempt in 0u32..25,
            retry_after in proptest::option::of(0u64..10_000),
            random in 0.0f64..1.0,
        ) {
            prop_assert_eq!(policy.validate(), Ok(()));
            let retry_after = retry_after.map(secs);
            let honoured = retry_after.map_or(Duration::ZERO, |d| d.min(RETRY_AFTER_CEILING));
            match policy.delay(attempt, retry_after, random) {
                Some(delay) => {
                    prop_assert!(attempt < policy.max_attempts);
                    prop_assert!(delay <= policy.max.max(honoured), "{:?}", delay);
                    prop_assert!(delay >= honoured, "{:?}", delay);
                }
                None => prop_assert!(attempt >= policy.max_attempts),
            }
        }

        #[test]
        fn delays_never_shrink_as_failures_mount(
            policy in policies(),
            random in 0.0f64..1.0,
            retry_after in proptest::option::of(0u64..600),
        ) {
            let retry_after = retry_after.map(secs);
            let delays: Vec<Duration> = (0..policy.max_attempts)
                .map(|a| policy.delay(a, retry_after, random).unwrap())
                .collect();
            for pair in delays.windows(2) {
                prop_assert!(pair[0] <= pair[1], "{:?}", delays);
            }
        }

        #[test]
        fn attempts_run_out_exactly_at_max_attempts(policy in policies(), random in 0.0f64..1.0) {
            for attempt in 0..policy.max_attempts {
                prop_assert!(policy.delay(attempt, None, random).is_some());
            }
            for attempt in policy.max_attempts..policy.max_attempts + 5 {
                prop_assert_eq!(policy.delay(attempt, None, random), None);
            }
        }

        #[test]
        fn duration_text_round_trips(nanos in any::<u64>(), secs in any::<u64>()) {
            for duration in [Duration::from_nanos(nanos), Duration::from_secs(secs), Duration::from_millis(nanos)] {
                prop_assert_eq!(parse_duration(&format_duration(duration)), Ok(duration));
            }
        }
    }
}
