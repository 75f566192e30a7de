//! The Autotask poller: Autotask sends no webhook for opportunities, so a
//! won deal is found by asking the PSA, every `interval`, for the
//! opportunities won since a durable watermark.
//!
//! Each one is submitted like a webhook's won deal, with the dedup key
//! `autotask:opportunity:{id}:won`, so an opportunity seen twice (the
//! windows overlap by [`OVERLAP`], and a crash before the watermark moves
//! repeats a window) never starts a second onboarding. The watermark is
//! stored (`intake_watermarks`) and moves only forward, to the latest
//! closing time among the opportunities handled, so a restart neither
//! misses nor repeats a deal. On its very first run the poller starts
//! from now: deals won before Gatehouse was connected are not onboarded.
//!
//! On error (the PSA unreachable, the database down) a round stops where
//! it is, keeps the watermark of what it finished, logs, and the next
//! round tries again. On shutdown the loop stops between rounds.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use gatehouse_connectors::ports::Psa;
use gatehouse_core::hooks::{DeliveryOutcome, HookSource};
use time::OffsetDateTime;

use crate::app::TenantRef;
use crate::app::hooks::Intake;
use crate::error::AppError;

/// The watermark's name.
pub const WATERMARK: &str = "autotask.opportunities";
/// The default time between rounds.
pub const DEFAULT_POLL_INTERVAL: Duration = Duration::from_secs(300);
/// How far before the watermark each round looks again, for opportunities
/// closed at the same instant or recorded late by the PSA.
pub const OVERLAP: time::Duration = time::Duration::minutes(1);

/// What one round did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PollReport {
    /// Won opportunities the PSA listed.
    pub found: usize,
    /// Of those, submitted as new events.
    pub started: usize,
    /// Of those, already submitted before.
    pub duplicates: usize,
    /// Of those, not submitted (missing fields; recorded with the reason).
    pub skipped: usize,
    /// The watermark after the round.
    pub watermark: Option<OffsetDateTime>,
}

/// Polls one PSA for won opportunities on behalf of one tenant (the MSP's
/// own, which holds the PSA's credentials).
pub struct AutotaskPoller {
    intake: Arc<Intake>,
    psa: Arc<dyn Psa>,
    tenant: TenantRef,
    interval: Duration,
}

impl std::fmt::Debug for AutotaskPoller {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AutotaskPoller")
            .field("tenant", &self.tenant)
            .field("interval", &self.interval)
            .finish_non_exhaustive()
    }
}

impl AutotaskPoller {
    /// A poller asking `psa` every `interval`, recording for `tenant`.
    pub fn new(
        intake: Arc<Intake>,
        psa: Arc<dyn Psa>,
        tenant: TenantRef,
        interval: Duration,
    ) -> Self {
        Self {
            intake,
            psa,
            tenant,
            interval,
        }
    }

    /// One round: list the opportunities won since the watermark, submit
    /// each, move the watermark.
    pub async fn poll_once(&self) -> Result<PollReport, AppError> {
        let tenant = self.intake.live_tenant(&self.tenant).await?;
        let store = &self.intake.app().store;
        let now = self.intake.app().clock.now();
        let Some(watermark) = store.intake_watermark(tenant.id, WATERMARK).await? else {
            store
                .set_intake_watermark(tenant.id, WATERMARK, now, &[])
                .await?;
            tracing::info!(tenant = %tenant.id, "autotask poller: first run, watching deals won from now on");
            return Ok(PollReport {
                watermark: Some(now),
                ..PollReport::default()
            });
        };
        let unavailable =
            |e: gatehouse_connectors::ConnectorError| AppError::Unavailable(e.to_string());
        let won = self
            .psa
            .won_opportunities(watermark - OVERLAP)
            .await
            .map_err(unavailable)?;
        let mut report = PollReport {
            found: won.len(),
            watermark: Some(watermark),
            ..PollReport::default()
        };
        let mut reached = watermark;
        let mut failure = None;
        for opportunity in won.iter().filter(|o| o.won) {
            let company = match self.psa.company(&opportunity.company_id).await {
                Ok(company) => company,
                Err(err) => {
                    failure = Some(unavailable(err));
                    break;
                }
            };
            match self
                .intake
                .submit_polled(
                    tenant.id,
                    HookSource::Autotask,
                    opportunity,
                    company.as_ref().map(|c| c.name.clone()),
                    company.and_then(|c| c.domain),
                )
                .await
            {
                Ok((DeliveryOutcome::Accepted, _)) => report.started += 1,
                Ok((DeliveryOutcome::Duplicate, _)) => report.duplicates += 1,
                Ok((DeliveryOutcome::Failed, reason)) => {
                    failure = Some(AppError::Unavailable(reason.unwrap_or_default()));
                    break;
                }
                Ok((_, reason)) => {
                    report.skipped += 1;
                    tracing::warn!(tenant = %tenant.id, opportunity = %opportunity.id, reason = ?reason, "autotask poller: a won opportunity was not submitted");
                }
                Err(err) => {
                    failure = Some(err);
                    break;
                }
            }
            if let Some(closed) = opportunity.closed_at {
                reached = reached.max(closed);
            }
        }
        if reached > watermark {
            store
                .set_intake_watermark(tenant.id, WATERMARK, reached, &[])
                .await?;
            report.watermark = Some(reached);
        }
        match failure {
            Some(err) => Err(err),
            None => Ok(report),
        }
    }

    /// Polls every `interval` until `shutdown` completes.
    pub async fn run(self, shutdown: impl Future<Output = ()>) {
        tokio::pin!(shutdown);
        loop {
            match self.poll_once().await {
                Ok(report) if report.found > 0 => {
                    tracing::info!(
                        found = report.found,
                        started = report.started,
                        duplicates = report.duplicates,
                        skipped = report.skipped,
                        "autotask poller: round done"
                    );
                }
                Ok(_) => {}
                Err(err) => {
                    tracing::warn!(error = %err, "autotask poller: round failed; trying again next round")
                }
            }
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(self.interval) => {}
            }
        }
    }
}
