//! The store port of identity lifecycle (issue 6). The rules live in
//! `gatehouse-identity`; the server seals what it stores here under the
//! tenant's key, so the store only sees ids, states, times and ciphertext.

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::audit::AuditRecord;
use crate::id::TenantId;
use crate::store::StoreResult;

/// Audit actions of identity lifecycle (details name ids, kinds and
/// systems, never attribute values).
pub mod action {
    /// A lifecycle event was applied to a person.
    pub const EVENT_APPLIED: &str = "identity.event.applied";
    /// The tenant's access policy changed.
    pub const POLICY_CHANGED: &str = "identity.policy.changed";
    /// A reconciliation planned operations and handed them to the engine.
    pub const PLANNED: &str = "identity.operations.planned";
    /// Operations were applied to a system.
    pub const APPLIED: &str = "identity.operations.applied";
    /// A leaver's revocation began.
    pub const REVOCATION_STARTED: &str = "identity.revocation.started";
    /// A leaver's revocation is complete everywhere.
    pub const REVOCATION_COMPLETED: &str = "identity.revocation.completed";
    /// A revocation passed its deadline and went to a human.
    pub const REVOCATION_ESCALATED: &str = "identity.revocation.escalated";
    /// Just-in-time access was requested.
    pub const ELEVATION_REQUESTED: &str = "identity.elevation.requested";
    /// Just-in-time access began (approved and granted).
    pub const ELEVATION_ACTIVE: &str = "identity.elevation.active";
    /// Just-in-time access ended (expiry or early revocation).
    pub const ELEVATION_ENDED: &str = "identity.elevation.ended";
}

/// A person as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPerson {
    /// Their tenant.
    pub tenant_id: TenantId,
    /// `per_…`: a keyed digest of their key.
    pub id: String,
    /// `active`, `on_leave` or `terminated`.
    pub status: String,
    /// 1 when first stored, incremented on every change.
    pub version: u64,
    /// When it last changed.
    pub updated_at: OffsetDateTime,
    /// The earliest contract or employment end date (`YYYY-MM-DD`).
    pub ends_on: Option<String>,
    /// The person, sealed.
    pub sealed: Vec<u8>,
}

/// A lifecycle event as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredEvent {
    /// Its tenant.
    pub tenant_id: TenantId,
    /// SHA-256 of its id.
    pub digest: Vec<u8>,
    /// Whose.
    pub person_id: String,
    /// When it happened.
    pub occurred_at: OffsetDateTime,
    /// When it arrived.
    pub received_at: OffsetDateTime,
    /// The event, sealed.
    pub sealed: Vec<u8>,
}

/// A tenant's access policy as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredPolicy {
    /// Its tenant.
    pub tenant_id: TenantId,
    /// 1 for the first, incremented on every change.
    pub version: u64,
    /// Who changed it last.
    pub updated_by: String,
    /// When.
    pub updated_at: OffsetDateTime,
    /// The policy text, sealed.
    pub sealed: Vec<u8>,
}

/// A just-in-time elevation as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredElevation {
    /// Its tenant.
    pub tenant_id: TenantId,
    /// `jit_…`.
    pub id: String,
    /// Whose.
    pub person_id: String,
    /// `requested`, `active`, `ended` or `rejected`.
    pub state: String,
    /// Who asked.
    pub requested_by: String,
    /// When.
    pub created_at: OffsetDateTime,
    /// When it ends (set when it becomes active).
    pub expires_at: Option<OffsetDateTime>,
    /// When it ended.
    pub ended_at: Option<OffsetDateTime>,
    /// The request (elevation, duration, justification), sealed.
    pub sealed: Vec<u8>,
}

/// A leaver's revocation as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredRevocation {
    /// Its tenant.
    pub tenant_id: TenantId,
    /// Whose.
    pub person_id: String,
    /// When the termination was applied.
    pub started_at: OffsetDateTime,
    /// When a human is told if it is not complete.
    pub deadline_at: OffsetDateTime,
    /// When every system showed the revocation.
    pub completed_at: Option<OffsetDateTime>,
    /// When it was escalated.
    pub escalated_at: Option<OffsetDateTime>,
    /// What remains (systems and changes, with the last error), sealed.
    pub sealed: Vec<u8>,
}

/// What [`IdentityStore::identity_record`] did.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Recorded {
    /// Written.
    Written,
    /// The event was there already: nothing written.
    Duplicate,
    /// The person changed meanwhile: nothing written; read and try again.
    Stale,
}

/// What identity lifecycle needs from the store. Every call is scoped to
/// one tenant, except the contract-end scan. Writes take their audit
/// records and store them in the same transaction.
#[async_trait]
pub trait IdentityStore: Send + Sync {
    /// In one transaction: stores `event` (if given), and the person whose
    /// previous version is `person.version - 1` (none for version 1), and
    /// the audit records. Nothing is written when the event is there
    /// already ([`Recorded::Duplicate`]) or someone else changed the person
    /// first ([`Recorded::Stale`]).
    async fn identity_record(
        &self,
        event: Option<&StoredEvent>,
        person: &StoredPerson,
        audit: &[AuditRecord],
    ) -> StoreResult<Recorded>;

    /// A person's events, oldest first.
    async fn identity_events(
        &self,
        tenant: TenantId,
        person: &str,
    ) -> StoreResult<Vec<StoredEvent>>;

    /// One person.
    async fn identity_person(
        &self,
        tenant: TenantId,
        id: &str,
    ) -> StoreResult<Option<StoredPerson>>;

    /// The tenant's people in id order, after `after`, at most `limit`.
    async fn identity_people(
        &self,
        tenant: TenantId,
        after: Option<&str>,
        limit: u32,
    ) -> StoreResult<Vec<StoredPerson>>;

    /// People of any tenant not terminated whose end date is before
    /// `today` (`YYYY-MM-DD`), at most `limit`.
    async fn identity_people_ended(
        &self,
        today: &str,
        limit: u32,
    ) -> StoreResult<Vec<(TenantId, String)>>;

    /// The tenant's policy.
    async fn identity_policy(&self, tenant: TenantId) -> StoreResult<Option<StoredPolicy>>;

    /// Stores a policy whose previous version is `policy.version - 1`;
    /// `false` if someone else changed it first.
    async fn identity_policy_put(
        &self,
        policy: &StoredPolicy,
        audit: &[AuditRecord],
    ) -> StoreResult<bool>;

    /// Inserts or replaces an elevation.
    async fn identity_elevation_put(
        &self,
        elevation: &StoredElevation,
        audit: &[AuditRecord],
    ) -> StoreResult<()>;

    /// One elevation.
    async fn identity_elevation(
        &self,
        tenant: TenantId,
        id: &str,
    ) -> StoreResult<Option<StoredElevation>>;

    /// The tenant's elevations, of one person if `person` is given.
    async fn identity_elevations(
        &self,
        tenant: TenantId,
        person: Option<&str>,
    ) -> StoreResult<Vec<StoredElevation>>;

    /// Inserts or replaces a person's revocation record, queueing
    /// `notification` (an escalation) in the same transaction.
    async fn identity_revocation_put(
        &self,
        revocation: &StoredRevocation,
        notification: Option<&crate::notify::Notification>,
        audit: &[AuditRecord],
    ) -> StoreResult<()>;

    /// A person's revocation record.
    async fn identity_revocation(
        &self,
        tenant: TenantId,
        person: &str,
    ) -> StoreResult<Option<StoredRevocation>>;

    /// The tenant's revocations, incomplete ones first.
    async fn identity_revocations(&self, tenant: TenantId) -> StoreResult<Vec<StoredRevocation>>;
}
