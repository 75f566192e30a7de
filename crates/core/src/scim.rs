//! The store port of the SCIM 2.0 service provider (issue 6 item 7).
//!
//! The protocol lives in `gatehouse-scim`; the server adapts this port to
//! its `ScimBackend`. A resource's attributes document is tenant data: the
//! store only sees it sealed under the tenant's data key
//! ([`StoredScimResource::sealed`]). Equality lookups and uniqueness go
//! through a keyed blind index ([`IndexEntry`]): the store holds an HMAC of
//! each normalised value, never the value.

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::audit::AuditRecord;
use crate::id::TenantId;
use crate::store::StoreResult;

/// Audit actions of the SCIM service provider (the details name the
/// resource type, id and version, never attribute values).
pub mod action {
    /// A resource was created.
    pub const CREATED: &str = "scim.resource.created";
    /// A resource was replaced (PUT) or patched.
    pub const UPDATED: &str = "scim.resource.updated";
    /// A resource was deleted.
    pub const DELETED: &str = "scim.resource.deleted";
    /// A SCIM bearer token was created.
    pub const TOKEN_CREATED: &str = "scim.token.created";
    /// A SCIM bearer token was revoked.
    pub const TOKEN_REVOKED: &str = "scim.token.revoked";
}

/// The sealing context of a resource's attributes document.
pub fn seal_context(resource_type: &str, id: &str) -> String {
    format!("scim:{resource_type}:{id}")
}

/// A SCIM resource as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredScimResource {
    /// Its tenant.
    pub tenant_id: TenantId,
    /// `User` or `Group`.
    pub resource_type: String,
    /// The id the server assigned.
    pub id: String,
    /// Incremented on every change.
    pub version: u64,
    /// When it was created.
    pub created_at: OffsetDateTime,
    /// When it last changed.
    pub updated_at: OffsetDateTime,
    /// The attributes document, sealed under the tenant's key.
    pub sealed: Vec<u8>,
}

/// One blind-index entry of a resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct IndexEntry {
    /// The attribute's canonical path (`userName`, `externalId`, …).
    pub attribute: String,
    /// The keyed digest of the normalised value.
    pub digest: Vec<u8>,
    /// Whether at most one resource of the type may hold it (409 otherwise).
    pub unique: bool,
}

/// Why a SCIM write failed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ScimWriteError {
    /// A unique index entry is taken; the attribute is named.
    Taken(String),
    /// The resource's version is not the expected one.
    Stale,
    /// No such resource.
    NotFound,
}

/// A SCIM bearer token's record (the secret itself is never stored).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimToken {
    /// Its id (`scimtok_…`), shown in lists and used to revoke it.
    pub id: String,
    /// The only tenant it authenticates for.
    pub tenant_id: TenantId,
    /// A note saying what it is for.
    pub label: String,
    /// SHA-256 of the secret.
    pub hash: Vec<u8>,
    /// Who created it.
    pub created_by: String,
    /// When.
    pub created_at: OffsetDateTime,
    /// When it was revoked, if it was.
    pub revoked_at: Option<OffsetDateTime>,
}

/// What the SCIM service provider needs from the store. Every call is
/// scoped to one tenant. Writes take their audit records and store them
/// in the same transaction.
#[async_trait]
pub trait ScimStore: Send + Sync {
    /// Inserts a resource and its index entries.
    async fn scim_insert(
        &self,
        resource: &StoredScimResource,
        index: &[IndexEntry],
        audit: &[AuditRecord],
    ) -> StoreResult<Result<(), ScimWriteError>>;

    /// Replaces a resource whose version is `resource.version - 1`, and its
    /// index entries.
    async fn scim_replace(
        &self,
        resource: &StoredScimResource,
        index: &[IndexEntry],
        audit: &[AuditRecord],
    ) -> StoreResult<Result<(), ScimWriteError>>;

    /// Deletes a resource and its index entries; `false` if there was none.
    async fn scim_delete(
        &self,
        tenant: TenantId,
        resource_type: &str,
        id: &str,
        audit: &[AuditRecord],
    ) -> StoreResult<bool>;

    /// One resource.
    async fn scim_get(
        &self,
        tenant: TenantId,
        resource_type: &str,
        id: &str,
    ) -> StoreResult<Option<StoredScimResource>>;

    /// The resources of a type; with `by`, only those holding that index
    /// entry (attribute, digest).
    async fn scim_list(
        &self,
        tenant: TenantId,
        resource_type: &str,
        by: Option<(&str, &[u8])>,
    ) -> StoreResult<Vec<StoredScimResource>>;

    /// Stores a new token, with its audit record.
    async fn scim_token_insert(&self, token: &ScimToken, audit: &[AuditRecord]) -> StoreResult<()>;

    /// The tenant's tokens, oldest first.
    async fn scim_tokens(&self, tenant: TenantId) -> StoreResult<Vec<ScimToken>>;

    /// The token with this secret hash, revoked or not.
    async fn scim_token_by_hash(&self, hash: &[u8]) -> StoreResult<Option<ScimToken>>;

    /// Revokes a token of `tenant`; `false` if there is no such live token.
    async fn scim_token_revoke(
        &self,
        tenant: TenantId,
        id: &str,
        at: OffsetDateTime,
        audit: &[AuditRecord],
    ) -> StoreResult<bool>;
}
