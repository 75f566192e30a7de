//! Tenant groups: named sets of tenants ("EU clients", "dental practices")
//! that an operator's scope may name instead of listing tenants one by one.
//!
//! A group is the installation's configuration, not a tenant's data: only
//! an operator of the whole installation reads or changes one. An operator
//! scoped to a group reaches the tenants that are its members when the
//! operator is loaded, that is on every request: a tenant added to the
//! group is in reach on the next request, one removed is out of it.

use std::collections::BTreeSet;

use async_trait::async_trait;
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::audit::AuditRecord;
use crate::id::{TenantGroupId, TenantId};
use crate::store::StoreResult;
use crate::tenant::{DisplayName, TenantSlug};

/// A named set of tenants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct TenantGroup {
    /// The group's id.
    pub id: TenantGroupId,
    /// Unique among groups; the same rules as a tenant's slug.
    pub slug: TenantSlug,
    /// What the group is for.
    pub display_name: DisplayName,
    /// Its members, by id.
    pub tenants: BTreeSet<TenantId>,
    /// When it was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl TenantGroup {
    /// A new group record, not yet stored.
    pub fn new(
        slug: TenantSlug,
        display_name: DisplayName,
        tenants: BTreeSet<TenantId>,
        now: OffsetDateTime,
    ) -> Self {
        Self {
            id: TenantGroupId::generate(now),
            slug,
            display_name,
            tenants,
            created_at: now,
        }
    }
}

/// Tenant groups and their members. As every store trait, a mutation
/// writes its audit records in its own transaction.
#[async_trait]
pub trait TenantGroupStore: Send + Sync {
    /// Stores a new group with its members; a taken slug is a `Conflict`.
    async fn insert_tenant_group(
        &self,
        group: &TenantGroup,
        audit: &[AuditRecord],
    ) -> StoreResult<()>;
    /// A group with its members, by id.
    async fn get_tenant_group(&self, id: TenantGroupId) -> StoreResult<TenantGroup>;
    /// A group with its members, by slug.
    async fn find_tenant_group_by_slug(&self, slug: &TenantSlug) -> StoreResult<TenantGroup>;
    /// Every group with its members, by slug.
    async fn list_tenant_groups(&self) -> StoreResult<Vec<TenantGroup>>;
    /// Adds `tenant` to the group (`member`) or removes it. Returns whether
    /// that changed anything: the records are written only then.
    async fn set_tenant_group_member(
        &self,
        group: TenantGroupId,
        tenant: TenantId,
        member: bool,
        audit: &[AuditRecord],
    ) -> StoreResult<bool>;
    /// Deletes a group. While an operator's scope names it the answer is a
    /// `Conflict` and nothing changes: deleting it would silently narrow
    /// (or empty) that operator's reach.
    async fn delete_tenant_group(
        &self,
        group: TenantGroupId,
        audit: &[AuditRecord],
    ) -> StoreResult<()>;
}
