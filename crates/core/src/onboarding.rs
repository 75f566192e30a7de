//! Client onboarding: what Gatehouse itself records while a client goes
//! from signed deal to operational.
//!
//! The workflow instance of the onboarding template is the source of truth
//! for stages and steps (the engine's journal). This module holds only what
//! the engine does not: the onboarding's tenant and owner, the
//! documentation checklist (items requested from people, with due dates,
//! reminders and what was handed over), the link between a tenant and its
//! PSA company, and the SLA clock started at go-live.
//!
//! People's addresses and handed-over files are tenant data: they reach
//! storage sealed under the tenant's data key ([`Sealed`]), never in clear.
//! Everything here hangs off the tenant's key, so deleting the tenant
//! (crypto-shredding) removes it.

use std::fmt;
use std::str::FromStr;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::audit::AuditRecord;
use crate::error::DomainError;
use crate::id::{ChecklistItemId, SlaId, TenantId, WorkflowId};
use crate::notify::Notification;
use crate::secret::SecretName;
use crate::store::StoreResult;

/// Audit actions of onboarding (kept here rather than in the shared list).
pub mod action {
    /// An onboarding was opened for a workflow instance.
    pub const ONBOARDING_OPENED: &str = "onboarding.opened";
    /// The onboarding's owner was named.
    pub const OWNER_ASSIGNED: &str = "onboarding.owner.assigned";
    /// A checklist item was requested from its owner.
    pub const ITEM_REQUESTED: &str = "onboarding.item.requested";
    /// A checklist item was received (confirmed, uploaded, handed over).
    pub const ITEM_RECEIVED: &str = "onboarding.item.received";
    /// A checklist item was waived, with a reason.
    pub const ITEM_WAIVED: &str = "onboarding.item.waived";
    /// A checklist item was cancelled (the request was undone).
    pub const ITEM_CANCELLED: &str = "onboarding.item.cancelled";
    /// A reminder or an overdue escalation was queued for an item.
    pub const ITEM_NOTICE: &str = "onboarding.item.notice";
    /// A tenant was linked to a PSA company.
    pub const PSA_LINKED: &str = "onboarding.psa.linked";
    /// A tenant's link to a PSA company was removed.
    pub const PSA_UNLINKED: &str = "onboarding.psa.unlinked";
    /// A tenant's SLA clock started.
    pub const SLA_STARTED: &str = "onboarding.sla.started";
    /// A tenant's SLA clock stopped.
    pub const SLA_STOPPED: &str = "onboarding.sla.stopped";
}

/// The notification kind of a reminder before an item is due.
pub const KIND_ITEM_REMINDER: &str = "onboarding.item.reminder";
/// The notification kind of an overdue item's escalation.
pub const KIND_ITEM_OVERDUE: &str = "onboarding.item.overdue";
/// The notification kind that tells an owner they own an onboarding.
pub const KIND_OWNER_ASSIGNED: &str = "onboarding.owner.assigned";

/// Bytes sealed under a tenant's data key (a person's address, a file).
/// The store keeps them as they are; only the server opens them.
#[derive(Clone, PartialEq, Eq)]
pub struct Sealed(pub Vec<u8>);

impl fmt::Debug for Sealed {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Sealed({} bytes)", self.0.len())
    }
}

/// A checklist item's key within its onboarding (`msa-sow`): 1 to 64
/// lowercase letters, digits and `-`, starting with a letter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct ItemKey(String);

impl ItemKey {
    /// Validates and wraps a key.
    pub fn parse(text: &str) -> Result<Self, DomainError> {
        let ok = (1..=64).contains(&text.len())
            && text.starts_with(|c: char| c.is_ascii_lowercase())
            && text
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
        if ok {
            Ok(Self(text.to_owned()))
        } else {
            Err(DomainError::invalid(
                "item",
                format!(
                    "`{}` is not an item key: 1 to 64 lowercase letters, digits and `-`, starting with a letter",
                    text.escape_debug()
                ),
            ))
        }
    }

    /// The key as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ItemKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for ItemKey {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// Defines a small enum stored and shown by name.
macro_rules! named_enum {
    ($(#[$meta:meta])* $name:ident, $what:literal, { $($(#[$vmeta:meta])* $variant:ident => $text:literal),+ $(,)? }) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, utoipa::ToSchema)]
        #[serde(rename_all = "snake_case")]
        pub enum $name {
            $($(#[$vmeta])* $variant),+
        }

        impl $name {
            /// Every value.
            pub const ALL: &'static [Self] = &[$(Self::$variant),+];

            /// The name as stored and shown.
            pub fn as_str(self) -> &'static str {
                match self {
                    $(Self::$variant => $text),+
                }
            }
        }

        impl FromStr for $name {
            type Err = DomainError;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                Self::ALL
                    .iter()
                    .copied()
                    .find(|v| v.as_str() == text)
                    .ok_or_else(|| {
                        let names: Vec<&str> = Self::ALL.iter().map(|v| v.as_str()).collect();
                        DomainError::invalid(
                            $what,
                            format!("`{}` is not one of {}", text.escape_debug(), names.join(", ")),
                        )
                    })
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    };
}

named_enum!(
    /// What the owner of an item hands over.
    ItemKind, "kind", {
        /// A document, uploaded and stored sealed.
        File => "file",
        /// A credential, put into the tenant's vault; the item keeps its name.
        Secret => "secret",
        /// A confirmation that something is true or done.
        Confirmation => "confirmation",
    }
);

named_enum!(
    /// Where a checklist item is.
    ItemState, "state", {
        /// Asked for, not yet handed over.
        Requested => "requested",
        /// Handed over (or confirmed).
        Received => "received",
        /// Not needed, with a reason.
        Waived => "waived",
        /// The request was undone (its onboarding compensated).
        Cancelled => "cancelled",
    }
);

named_enum!(
    /// Which notice an item's owner was sent.
    NoticeKind, "notice", {
        /// Before the due date.
        Reminder => "reminder",
        /// After it, to the onboarding's owner.
        Overdue => "overdue",
    }
);

impl NoticeKind {
    /// The notification kind this notice is queued as.
    pub fn notification_kind(self) -> &'static str {
        match self {
            Self::Reminder => KIND_ITEM_REMINDER,
            Self::Overdue => KIND_ITEM_OVERDUE,
        }
    }
}

/// An onboarding: one per workflow instance of the onboarding template.
/// Its id is the instance's. Stages, steps and progress are read from the
/// instance; this row holds what the engine does not know.
#[derive(Debug, Clone, PartialEq)]
pub struct Onboarding {
    /// The workflow instance.
    pub instance_id: WorkflowId,
    /// The client's tenant, once `tenant.create` made it.
    pub tenant_id: Option<TenantId>,
    /// The slug `tenant.create` claimed for it (how a repeated call finds
    /// the tenant an interrupted one made).
    pub slug: String,
    /// The MSP's onboarding owner's address, sealed under the tenant's key.
    pub owner: Option<Sealed>,
    /// When the instance started.
    pub started_at: OffsetDateTime,
    /// When the onboarding was opened here.
    pub created_at: OffsetDateTime,
    /// When the client went live (the SLA clock started).
    pub go_live_at: Option<OffsetDateTime>,
}

/// A file handed over for an item: its sealed name and bytes, and what it is.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemFile {
    /// The file's name as uploaded, sealed.
    pub name: Sealed,
    /// The media type the uploader declared.
    pub content_type: String,
    /// The size in bytes, before sealing.
    pub size: u64,
    /// The content, sealed.
    pub content: Sealed,
}

/// What a received file looks like without its content.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemFileMeta {
    /// The file's name as uploaded, sealed.
    pub name: Sealed,
    /// The media type the uploader declared.
    pub content_type: String,
    /// The size in bytes.
    pub size: u64,
}

/// An item of an onboarding's documentation checklist.
#[derive(Debug, Clone, PartialEq)]
pub struct ChecklistItem {
    /// The item's id.
    pub id: ChecklistItemId,
    /// The client's tenant.
    pub tenant_id: TenantId,
    /// The onboarding (its workflow instance).
    pub instance_id: WorkflowId,
    /// The step that requested it.
    pub step_id: String,
    /// Its key in the onboarding (`msa-sow`).
    pub key: ItemKey,
    /// What is asked for.
    pub title: String,
    /// What is handed over.
    pub kind: ItemKind,
    /// Who is asked (an address, sealed under the tenant's key).
    pub owner: Option<Sealed>,
    /// When it is due.
    pub due_at: OffsetDateTime,
    /// Where it is.
    pub state: ItemState,
    /// When it was requested.
    pub created_at: OffsetDateTime,
    /// Who received, waived or cancelled it (an operator id or `system`).
    pub decided_by: Option<String>,
    /// When.
    pub decided_at: Option<OffsetDateTime>,
    /// Why (a waiver's reason, a cancellation's cause, a receipt's note).
    pub note: Option<String>,
    /// For a secret: the name it was stored under in the tenant's vault.
    pub secret_name: Option<SecretName>,
    /// For a file: what was uploaded (the content is read separately).
    pub file: Option<ItemFileMeta>,
    /// When the reminder was queued.
    pub reminded_at: Option<OffsetDateTime>,
    /// When the overdue escalation was queued.
    pub overdue_notified_at: Option<OffsetDateTime>,
}

impl ChecklistItem {
    /// Whether it still waits to be handed over after `now`.
    pub fn is_overdue(&self, now: OffsetDateTime) -> bool {
        self.state == ItemState::Requested && self.due_at <= now
    }
}

/// How an item is settled: received (with what), waived or cancelled.
#[derive(Debug, Clone, PartialEq)]
pub struct ItemDecision {
    /// The new state (not `Requested`).
    pub state: ItemState,
    /// Who.
    pub by: String,
    /// When.
    pub at: OffsetDateTime,
    /// Why, or a note.
    pub note: Option<String>,
    /// A handed-over secret's name.
    pub secret_name: Option<SecretName>,
    /// An uploaded file.
    pub file: Option<ItemFile>,
}

/// A tenant's link to its company in a PSA.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PsaLink {
    /// The tenant.
    pub tenant_id: TenantId,
    /// Which PSA (`connectwise`, `autotask`, `halopsa`, …).
    pub psa: String,
    /// The company's id there.
    pub company_id: String,
    /// The onboarding that linked it, if any.
    pub instance_id: Option<WorkflowId>,
    /// When it was linked.
    pub linked_at: OffsetDateTime,
    /// When the link was removed.
    pub unlinked_at: Option<OffsetDateTime>,
}

/// A tenant's SLA clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SlaClock {
    /// The clock's id.
    pub id: SlaId,
    /// The tenant.
    pub tenant_id: TenantId,
    /// The onboarding that started it, if any.
    pub instance_id: Option<WorkflowId>,
    /// The contract it runs under.
    pub contract: String,
    /// When it started.
    pub started_at: OffsetDateTime,
    /// When it stopped.
    pub stopped_at: Option<OffsetDateTime>,
}

/// Which onboardings to list.
#[derive(Debug, Clone, Default)]
pub struct OnboardingQuery {
    /// Only these tenants' (a scoped operator's view); `None`: no limit.
    pub within: Option<Vec<TenantId>>,
    /// Only this tenant's.
    pub tenant: Option<TenantId>,
    /// Only after this one (keyset paging, in start order).
    pub after: Option<WorkflowId>,
    /// At most this many.
    pub limit: u32,
}

/// The aggregates `/metrics` reads.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct OnboardingStats {
    /// Requested items past their due date.
    pub overdue_items: u64,
    /// `(started_at, go_live_at)` of every onboarding that went live.
    pub went_live: Vec<(OffsetDateTime, OffsetDateTime)>,
}

/// Storage of onboardings, checklists, PSA links and SLA clocks. Every
/// mutation writes its audit records in its own transaction, and every
/// query on tenant data is scoped by the tenant.
#[async_trait]
pub trait OnboardingStore: Send + Sync {
    /// Opens the onboarding of an instance, or returns the one already
    /// open (whose fields are kept).
    async fn open_onboarding(
        &self,
        onboarding: &Onboarding,
        audit: &[AuditRecord],
    ) -> StoreResult<Onboarding>;
    /// Records the tenant `tenant.create` made for the onboarding.
    async fn set_onboarding_tenant(
        &self,
        instance: WorkflowId,
        tenant: TenantId,
        audit: &[AuditRecord],
    ) -> StoreResult<()>;
    /// Names the onboarding's owner and queues `notification` (telling
    /// them) in the same transaction.
    async fn set_onboarding_owner(
        &self,
        instance: WorkflowId,
        owner: &Sealed,
        notification: Option<&Notification>,
        audit: &[AuditRecord],
    ) -> StoreResult<()>;
    /// Records go-live (kept if already set).
    async fn set_go_live(
        &self,
        instance: WorkflowId,
        at: OffsetDateTime,
        audit: &[AuditRecord],
    ) -> StoreResult<()>;
    /// An onboarding by its instance.
    async fn get_onboarding(&self, instance: WorkflowId) -> StoreResult<Onboarding>;
    /// A page of onboardings, in start order.
    async fn list_onboardings(&self, query: &OnboardingQuery) -> StoreResult<Vec<Onboarding>>;

    /// Requests an item: inserts it, or returns the one already requested
    /// under the same key in the same onboarding (a repeated call).
    async fn request_item(
        &self,
        item: &ChecklistItem,
        audit: &[AuditRecord],
    ) -> StoreResult<ChecklistItem>;
    /// An item of the tenant.
    async fn get_item(&self, tenant: TenantId, id: ChecklistItemId) -> StoreResult<ChecklistItem>;
    /// An item by id alone (for its compensation, which knows only the id).
    async fn find_item(&self, id: ChecklistItemId) -> StoreResult<ChecklistItem>;
    /// The items of an onboarding, by key.
    async fn list_items(
        &self,
        tenant: TenantId,
        instance: WorkflowId,
    ) -> StoreResult<Vec<ChecklistItem>>;
    /// Settles an item that is `from` (guarded: `Stale` if it is not).
    async fn decide_item(
        &self,
        tenant: TenantId,
        id: ChecklistItemId,
        from: ItemState,
        decision: &ItemDecision,
        audit: &[AuditRecord],
    ) -> StoreResult<ChecklistItem>;
    /// A received file's sealed content and its metadata.
    async fn item_file(&self, tenant: TenantId, id: ChecklistItemId) -> StoreResult<ItemFile>;
    /// Requested items whose `kind` notice is due at `now` and not sent:
    /// reminders from `remind_before` before the due date (until it),
    /// escalations from the due date.
    async fn due_item_notices(
        &self,
        now: OffsetDateTime,
        remind_before: time::Duration,
        kind: NoticeKind,
        limit: u32,
    ) -> StoreResult<Vec<ChecklistItem>>;
    /// Marks an item's notice sent and queues its notification, once: if
    /// the notice was already recorded, nothing is written and `false`
    /// is returned.
    async fn record_item_notice(
        &self,
        item: &ChecklistItem,
        kind: NoticeKind,
        notification: &Notification,
        audit: &[AuditRecord],
    ) -> StoreResult<bool>;

    /// Links a tenant to a PSA company (again, if it was unlinked).
    async fn link_psa_company(&self, link: &PsaLink, audit: &[AuditRecord]) -> StoreResult<()>;
    /// Removes a tenant's link to a PSA company; `false` if none was active.
    async fn unlink_psa_company(
        &self,
        tenant: TenantId,
        company_id: &str,
        at: OffsetDateTime,
        audit: &[AuditRecord],
    ) -> StoreResult<bool>;
    /// The tenant's PSA links.
    async fn psa_links(&self, tenant: TenantId) -> StoreResult<Vec<PsaLink>>;

    /// Starts an SLA clock, or returns the one this id already started.
    async fn start_sla(&self, sla: &SlaClock, audit: &[AuditRecord]) -> StoreResult<SlaClock>;
    /// Stops a running SLA clock; `false` if it was not running.
    async fn stop_sla(
        &self,
        tenant: TenantId,
        id: SlaId,
        at: OffsetDateTime,
        audit: &[AuditRecord],
    ) -> StoreResult<bool>;
    /// The tenant's SLA clocks.
    async fn sla_clocks(&self, tenant: TenantId) -> StoreResult<Vec<SlaClock>>;

    /// What `/metrics` shows.
    async fn onboarding_stats(&self, now: OffsetDateTime) -> StoreResult<OnboardingStats>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn item_keys_and_names_parse_strictly() {
        assert!(ItemKey::parse("msa-sow").is_ok());
        for bad in ["", "MSA", "1abc", "a b", "a_b", &"a".repeat(65)] {
            assert!(ItemKey::parse(bad).is_err(), "{bad:?}");
        }
        assert_eq!("file".parse::<ItemKind>().ok(), Some(ItemKind::File));
        assert!("folder".parse::<ItemKind>().is_err());
        assert_eq!(
            "waived".parse::<ItemState>().ok().map(ItemState::as_str),
            Some("waived")
        );
    }

    #[test]
    fn sealed_bytes_never_show_in_debug() {
        let s = Sealed(b"owner@client.example".to_vec());
        assert!(!format!("{s:?}").contains("owner"));
    }
}
