//! Onboarding metrics, read when `/metrics` is scraped, in the way of
//! [`super::engine`]:
//!
//! - `gatehouse_onboarding_time_to_operational_seconds` (histogram): from
//!   an onboarding's start to its go-live, over every onboarding that went
//!   live;
//! - `gatehouse_onboarding_stage_duration_seconds` (histogram, label
//!   `stage`): from a stage's entry to its last step, over the finished
//!   stages of the most recent [`STAGE_SAMPLE`] onboardings;
//! - `gatehouse_onboarding_checklist_overdue_items` (gauge): requested
//!   checklist items past their due date.
//!
//! Labels name stages only (template data an MSP controls), never tenants:
//! `/metrics` needs no token. A store failure leaves these series out of
//! that scrape (and logs a warning) rather than showing zeros.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use gatehouse_core::store::InstanceQuery;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::app::App;
use crate::onboarding::ONBOARDING_TEMPLATE;

/// Bucket bounds of both histograms, in seconds: an hour to 90 days.
pub const DURATION_BOUNDS: [f64; 10] = [
    3_600.0,
    14_400.0,
    43_200.0,
    86_400.0,
    259_200.0,
    604_800.0,
    1_209_600.0,
    2_592_000.0,
    5_184_000.0,
    7_776_000.0,
];

/// How many of the most recent onboardings the stage durations are read
/// from (one query each per scrape).
pub const STAGE_SAMPLE: u32 = 200;

/// A histogram's data: the sum, the count and cumulative buckets.
#[derive(Debug, Clone, Default)]
struct Histogram {
    sum: f64,
    count: u64,
    buckets: Vec<(f64, u64)>,
}

impl Histogram {
    fn of(values: impl IntoIterator<Item = f64>) -> Self {
        let mut h = Self {
            buckets: DURATION_BOUNDS.iter().map(|b| (*b, 0)).collect(),
            ..Self::default()
        };
        for v in values {
            h.sum += v;
            h.count += 1;
            for (bound, n) in &mut h.buckets {
                if v <= *bound {
                    *n += 1;
                }
            }
        }
        h
    }
}

#[derive(Debug, Default, Clone)]
struct Snapshot {
    overdue: Option<u64>,
    to_operational: Option<Histogram>,
    stages: Option<BTreeMap<String, Histogram>>,
}

/// The onboarding metrics, shared by the registry and the scrape handler.
#[derive(Debug, Default, Clone)]
pub struct OnboardingMetrics {
    snapshot: Arc<Mutex<Snapshot>>,
}

impl OnboardingMetrics {
    /// Reads the store's aggregates and the recent onboardings' stages.
    pub async fn refresh(&self, app: &App) {
        let now = app.clock.now();
        let (overdue, to_operational) = match app.store.onboarding_stats(now).await {
            Ok(stats) => (
                Some(stats.overdue_items),
                Some(Histogram::of(stats.went_live.iter().map(
                    |(started, live)| (*live - *started).as_seconds_f64().max(0.0),
                ))),
            ),
            Err(err) => {
                tracing::warn!(%err, "metrics: reading onboarding statistics failed");
                (None, None)
            }
        };
        let stages = match stage_durations(app).await {
            Ok(by_stage) => Some(
                by_stage
                    .into_iter()
                    .map(|(stage, values)| (stage, Histogram::of(values)))
                    .collect(),
            ),
            Err(err) => {
                tracing::warn!(%err, "metrics: reading onboarding stages failed");
                None
            }
        };
        *self.snapshot.lock().unwrap_or_else(|p| p.into_inner()) = Snapshot {
            overdue,
            to_operational,
            stages,
        };
    }

    /// The collector to register (it encodes the latest snapshot).
    pub(super) fn collector(&self) -> Box<dyn Collector> {
        Box::new(self.clone())
    }
}

/// Seconds each finished stage took, by stage, over the most recent
/// onboardings.
async fn stage_durations(
    app: &App,
) -> Result<BTreeMap<String, Vec<f64>>, gatehouse_core::store::StoreError> {
    // Instances list in start order: page to the end, keep the last ones.
    let mut recent = Vec::new();
    let mut after = None;
    loop {
        let page = app
            .store
            .list_instances(&InstanceQuery {
                within: None,
                tenant: None,
                state: None,
                template: Some(ONBOARDING_TEMPLATE.to_owned()),
                after,
                limit: 500,
            })
            .await?;
        let last = page.last().map(|i| i.id);
        let full = page.len() == 500;
        recent.extend(page.into_iter().map(|i| i.id));
        if recent.len() > STAGE_SAMPLE as usize {
            recent.drain(..recent.len() - STAGE_SAMPLE as usize);
        }
        if !full {
            break;
        }
        after = last;
    }
    let mut out: BTreeMap<String, Vec<f64>> = BTreeMap::new();
    for id in recent {
        let (instance, steps) = app.store.get_instance(id).await?;
        for stage in crate::onboarding::stage_progress(&instance, &steps) {
            if let (Some(entered), Some(left)) = (stage.entered_at, stage.left_at) {
                out.entry(stage.id)
                    .or_default()
                    .push((left - entered).as_seconds_f64().max(0.0));
            }
        }
    }
    Ok(out)
}

impl Collector for OnboardingMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = self
            .snapshot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(overdue) = s.overdue {
            let metric = ConstGauge::new(i64::try_from(overdue).unwrap_or(i64::MAX));
            metric.encode(encoder.encode_descriptor(
                "onboarding_checklist_overdue_items",
                "Onboarding checklist items still requested past their due date",
                None,
                metric.metric_type(),
            )?)?;
        }
        if let Some(h) = &s.to_operational {
            let mut metric = encoder.encode_descriptor(
                "onboarding_time_to_operational_seconds",
                "Time from an onboarding's start to its go-live",
                None,
                MetricType::Histogram,
            )?;
            metric.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                h.sum, h.count, &h.buckets, None,
            )?;
        }
        if let Some(stages) = &s.stages {
            let mut family = encoder.encode_descriptor(
                "onboarding_stage_duration_seconds",
                "Time from entering an onboarding stage to its last step, for finished stages of recent onboardings",
                None,
                MetricType::Histogram,
            )?;
            for (stage, h) in stages {
                let labels = [("stage", stage.as_str())];
                family
                    .encode_family(&labels)?
                    .encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                        h.sum, h.count, &h.buckets, None,
                    )?;
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histograms_are_cumulative() {
        let h = Histogram::of([10.0, 90_000.0, 10_000_000.0]);
        assert_eq!(h.count, 3);
        assert_eq!(h.buckets[0], (3_600.0, 1));
        assert_eq!(h.buckets[4], (259_200.0, 2));
        assert_eq!(h.buckets[9].1, 2, "the largest value is only in +Inf");
    }
}
