//! Inbound webhooks (`/hooks/{source}/{tenant}`): the record of every
//! delivery attempt, and the watermarks of the pollers that stand in for
//! webhooks a PSA cannot send.
//!
//! A delivery is recorded whatever became of it (accepted, a duplicate, a
//! bad signature, a malformed body, ignored because it was not a won deal),
//! so an operator can see why a deal did not start an onboarding. The body
//! itself is never stored: only its SHA-256, which is enough to match a
//! delivery with the sender's own log. Reasons name checks and fields,
//! never values from the body.

use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::audit::AuditRecord;
use crate::error::DomainError;
use crate::id::{EventId, HookDeliveryId, TenantId};
use crate::store::StoreResult;

/// Audit actions of the intake (each in the receiving tenant's log).
pub mod action {
    /// A delivery was accepted and submitted as an event.
    pub const HOOK_ACCEPTED: &str = "hook.delivery.accepted";
    /// A delivery repeated one already accepted; nothing new started.
    pub const HOOK_DUPLICATE: &str = "hook.delivery.duplicate";
    /// A delivery's signature or credential did not verify.
    pub const HOOK_BAD_SIGNATURE: &str = "hook.delivery.bad_signature";
    /// A signed delivery's body could not be read.
    pub const HOOK_MALFORMED: &str = "hook.delivery.malformed";
    /// A signed, readable delivery that is not a won deal.
    pub const HOOK_IGNORED: &str = "hook.delivery.ignored";
    /// A delivery that could not be processed (the PSA or the engine failed).
    pub const HOOK_FAILED: &str = "hook.delivery.failed";
}

/// Who sends to `/hooks/{source}/…`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum HookSource {
    /// ConnectWise PSA callbacks.
    ConnectWise,
    /// Autotask webhooks.
    Autotask,
    /// HaloPSA webhooks.
    HaloPsa,
    /// Gatehouse's own signed format, for anything else.
    Generic,
    /// An HR system's lifecycle events (hire, transfer, leave, …), signed
    /// as the generic format is.
    Hr,
}

impl HookSource {
    /// Every source.
    pub const ALL: [Self; 5] = [
        Self::ConnectWise,
        Self::Autotask,
        Self::HaloPsa,
        Self::Generic,
        Self::Hr,
    ];

    /// The name in the path.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ConnectWise => "connectwise",
            Self::Autotask => "autotask",
            Self::HaloPsa => "halopsa",
            Self::Generic => "generic",
            Self::Hr => "hr",
        }
    }
}

impl fmt::Display for HookSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for HookSource {
    type Err = DomainError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| {
                DomainError::invalid(
                    "source",
                    "must be connectwise, autotask, halopsa or generic",
                )
            })
    }
}

/// What became of a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum DeliveryOutcome {
    /// Verified and submitted as a new event.
    Accepted,
    /// Verified, and the event was there already: nothing new started.
    Duplicate,
    /// The signature or credential did not verify (401).
    BadSignature,
    /// Verified, but the body could not be read (400).
    Malformed,
    /// Verified and read, but not a won deal (200, nothing started).
    Ignored,
    /// Verified, but the PSA or the engine failed; the sender should retry.
    Failed,
}

impl DeliveryOutcome {
    /// Every outcome.
    pub const ALL: [Self; 6] = [
        Self::Accepted,
        Self::Duplicate,
        Self::BadSignature,
        Self::Malformed,
        Self::Ignored,
        Self::Failed,
    ];

    /// The stored name.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Accepted => "accepted",
            Self::Duplicate => "duplicate",
            Self::BadSignature => "bad_signature",
            Self::Malformed => "malformed",
            Self::Ignored => "ignored",
            Self::Failed => "failed",
        }
    }

    /// The audit action recording it.
    pub fn audit_action(self) -> &'static str {
        match self {
            Self::Accepted => action::HOOK_ACCEPTED,
            Self::Duplicate => action::HOOK_DUPLICATE,
            Self::BadSignature => action::HOOK_BAD_SIGNATURE,
            Self::Malformed => action::HOOK_MALFORMED,
            Self::Ignored => action::HOOK_IGNORED,
            Self::Failed => action::HOOK_FAILED,
        }
    }
}

impl fmt::Display for DeliveryOutcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DeliveryOutcome {
    type Err = DomainError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|o| o.as_str() == text)
            .ok_or_else(|| DomainError::invalid("outcome", "unknown delivery outcome"))
    }
}

/// One delivery attempt.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HookDelivery {
    /// Its id.
    pub id: HookDeliveryId,
    /// The tenant it was addressed to (whose hook secrets checked it).
    pub tenant_id: TenantId,
    /// The sender.
    pub source: HookSource,
    /// When it arrived.
    #[serde(with = "time::serde::rfc3339")]
    pub received_at: OffsetDateTime,
    /// What became of it.
    pub outcome: DeliveryOutcome,
    /// Why, for every outcome but `accepted`: which check failed or which
    /// fields were missing (never values from the body).
    pub reason: Option<String>,
    /// The event it was submitted as (or duplicated).
    pub event_id: Option<EventId>,
    /// Hex SHA-256 of the raw body.
    pub body_sha256: String,
}

/// Which deliveries to list: one tenant's, newest first.
#[derive(Debug, Clone)]
pub struct DeliveryQuery {
    /// The tenant.
    pub tenant: TenantId,
    /// Only from this sender.
    pub source: Option<HookSource>,
    /// Only with this outcome.
    pub outcome: Option<DeliveryOutcome>,
    /// Only older than this delivery (the cursor of the previous page).
    pub before: Option<HookDeliveryId>,
    /// At most this many.
    pub limit: u32,
}

/// Storage of delivery records and poller watermarks.
#[async_trait]
pub trait HookStore: Send + Sync {
    /// Records a delivery and queues `audit`, in one transaction.
    /// `NotFound` if the tenant does not exist.
    async fn record_hook_delivery(
        &self,
        delivery: &HookDelivery,
        audit: &[AuditRecord],
    ) -> StoreResult<()>;
    /// A page of one tenant's deliveries, newest first.
    async fn list_hook_deliveries(&self, query: &DeliveryQuery) -> StoreResult<Vec<HookDelivery>>;
    /// Where the poller `name` of `tenant` got to; `None` before its first run.
    async fn intake_watermark(
        &self,
        tenant: TenantId,
        name: &str,
    ) -> StoreResult<Option<OffsetDateTime>>;
    /// Moves the poller's watermark to `at` (never backwards: an older
    /// `at` leaves it), queuing `audit` in the same transaction.
    async fn set_intake_watermark(
        &self,
        tenant: TenantId,
        name: &str,
        at: OffsetDateTime,
        audit: &[AuditRecord],
    ) -> StoreResult<()>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for source in HookSource::ALL {
            assert_eq!(source.as_str().parse::<HookSource>().unwrap(), source);
        }
        for outcome in DeliveryOutcome::ALL {
            assert_eq!(
                outcome.as_str().parse::<DeliveryOutcome>().unwrap(),
                outcome
            );
            assert!(outcome.audit_action().ends_with(outcome.as_str()));
        }
        assert!("ConnectWise".parse::<HookSource>().is_err());
    }
}
