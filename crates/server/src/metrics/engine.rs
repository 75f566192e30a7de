//! The engine's metrics: read when `/metrics` is scraped, from the engine's
//! own counters (`EngineStats`), its circuit breakers and a few cheap store
//! aggregates (`MetricsStore`).
//!
//! Scraping is the only time they are computed: [`EngineMetrics::refresh`]
//! takes a snapshot, and the collector registered with the Prometheus
//! registry encodes it. Cardinality is bounded by construction: instance
//! states and breaker states are fixed sets, and breakers are labelled by
//! connector only (breakers exist per tenant and connector; tenant ids are
//! not put on an unauthenticated endpoint, and a label per tenant would
//! grow with the MSP).

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};

use gatehouse_core::workflow::InstanceState;
use gatehouse_engine::stats::LatencyBuckets;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

use crate::app::App;

/// Upper bounds of the exported step-latency buckets, in seconds: from a
/// millisecond (a step run at once) to an hour (a step that waited for
/// retries and a breaker).
pub const STEP_LATENCY_BOUNDS: [f64; 16] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 60.0, 300.0,
    3600.0,
];

/// The breaker states, as labelled.
const BREAKER_STATES: [&str; 3] = ["closed", "open", "half_open"];

/// What one scrape saw.
#[derive(Debug, Default, Clone)]
struct Snapshot {
    /// `None` when the store could not be read: those series are left out
    /// of this scrape (and the failure logged) rather than shown as zero.
    instances: Option<Vec<(InstanceState, u64)>>,
    approvals: Option<gatehouse_core::store::ApprovalStats>,
    now: Option<time::OffsetDateTime>,
    steps: u64,
    retries: u64,
    latency: Option<LatencyBuckets>,
    /// Connector → breaker state → how many breakers (one per tenant).
    breakers: BTreeMap<String, BTreeMap<&'static str, i64>>,
}

/// The engine's metrics, shared by the registry (which encodes them) and
/// the scrape handler (which refreshes them).
#[derive(Debug, Default, Clone)]
pub struct EngineMetrics {
    snapshot: Arc<Mutex<Snapshot>>,
}

impl EngineMetrics {
    /// Reads the engine's counters and breakers and the store's aggregates.
    /// A store failure is logged and leaves the store-backed series out of
    /// this scrape.
    pub async fn refresh(&self, app: &App) {
        let stats = app.engine.stats();
        let mut breakers: BTreeMap<String, BTreeMap<&'static str, i64>> = BTreeMap::new();
        for (key, state) in app.engine.breakers().states() {
            // Keys are `{tenant or -}/{connector}`.
            let connector = key.rsplit('/').next().unwrap_or_default().to_owned();
            let counts = breakers.entry(connector).or_default();
            for name in BREAKER_STATES {
                counts.entry(name).or_insert(0);
            }
            *counts.entry(state.as_str()).or_insert(0) += 1;
        }
        let instances = match app.store.count_instances_by_state(None).await {
            Ok(counts) => Some(counts),
            Err(err) => {
                tracing::warn!(%err, "metrics: counting workflow instances failed");
                None
            }
        };
        let approvals = match app.store.approval_stats(None).await {
            Ok(stats) => Some(stats),
            Err(err) => {
                tracing::warn!(%err, "metrics: reading approval statistics failed");
                None
            }
        };
        let snapshot = Snapshot {
            instances,
            approvals,
            now: Some(app.clock.now()),
            steps: stats.steps(),
            retries: stats.retries(),
            latency: Some(stats.latency_buckets(&STEP_LATENCY_BOUNDS)),
            breakers,
        };
        *self.snapshot.lock().unwrap_or_else(|p| p.into_inner()) = snapshot;
    }

    /// The collector to register (it encodes the latest snapshot).
    pub(super) fn collector(&self) -> Box<dyn Collector> {
        Box::new(self.clone())
    }
}

impl Collector for EngineMetrics {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let s = self
            .snapshot
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        if let Some(counts) = &s.instances {
            let mut family = encoder.encode_descriptor(
                "workflow_instances",
                "Workflow instances by state",
                None,
                MetricType::Gauge,
            )?;
            for state in InstanceState::ALL {
                let n = counts
                    .iter()
                    .find(|(s, _)| *s == state)
                    .map_or(0, |(_, n)| *n);
                let labels = [("state", state.as_str())];
                ConstGauge::new(i64::try_from(n).unwrap_or(i64::MAX))
                    .encode(family.encode_family(&labels)?)?;
            }
        }
        if let Some(latency) = &s.latency {
            let mut metric = encoder.encode_descriptor(
                "step_latency_seconds",
                "Step latency: from when a step was due to when its result was committed",
                None,
                MetricType::Histogram,
            )?;
            metric.encode_histogram::<prometheus_client::encoding::NoLabelSet>(
                latency.sum_seconds,
                latency.count,
                &latency.buckets,
                None,
            )?;
        }
        let counter = |encoder: &mut DescriptorEncoder, name: &str, help: &str, value: u64| {
            let metric = ConstCounter::new(value);
            metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
        };
        counter(
            &mut encoder,
            "steps",
            "Step and compensation attempts run by this node",
            s.steps,
        )?;
        counter(
            &mut encoder,
            "step_retries",
            "Retries scheduled by this node after failed attempts",
            s.retries,
        )?;
        if !s.breakers.is_empty() {
            let mut family = encoder.encode_descriptor(
                "breaker_state",
                "Circuit breakers of this node by connector and state (one breaker per tenant and connector)",
                None,
                MetricType::Gauge,
            )?;
            for (connector, states) in &s.breakers {
                for (state, n) in states {
                    let labels = [("breaker", connector.as_str()), ("state", state)];
                    ConstGauge::new(*n).encode(family.encode_family(&labels)?)?;
                }
            }
        }
        if let Some(approvals) = &s.approvals {
            let gauge = |encoder: &mut DescriptorEncoder, name: &str, help: &str, value: f64| {
                let metric = ConstGauge::new(value);
                metric.encode(encoder.encode_descriptor(name, help, None, metric.metric_type())?)
            };
            gauge(
                &mut encoder,
                "approvals_pending",
                "Approvals waiting for decisions",
                approvals.pending as f64,
            )?;
            let age = match (approvals.oldest_pending_since, s.now) {
                (Some(since), Some(now)) => (now - since).as_seconds_f64().max(0.0),
                _ => 0.0,
            };
            gauge(
                &mut encoder,
                "approval_oldest_pending_age_seconds",
                "Age of the oldest pending approval (0 when none is pending)",
                age,
            )?;
            counter(
                &mut encoder,
                "approval_overrides",
                "Decisions that changed the plan they approved (verdict modify)",
                approvals.overrides,
            )?;
        }
        Ok(())
    }
}
