//! Tenant groups: named sets of tenants ("EU clients") that an operator's
//! scope may name, so that a new client joins a team's reach by joining a
//! group instead of by editing every scope.
//!
//! A group is the installation's configuration: reading one needs
//! `ReadTenants` and changing one `ManageTenants`, both for the whole
//! installation (a scoped operator reading groups would learn of tenants
//! outside their reach). Every change is audited in the system log, with
//! ids and slugs only.

use std::collections::BTreeSet;

use gatehouse_core::audit::action as audit_action;
use gatehouse_core::id::TenantGroupId;
use gatehouse_core::store::StoreError;
use gatehouse_core::tenant::{DisplayName, TenantSlug, TenantState};
use gatehouse_core::tenant_group::TenantGroup;
use serde_json::json;

use super::{Actor, App, TenantRef, deleted};
use crate::authz::{Permission, authorize};
use crate::error::AppError;

/// A tenant group as a user names it: by id or by slug.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GroupRef {
    /// By id.
    Id(TenantGroupId),
    /// By slug.
    Slug(TenantSlug),
    /// Neither: finds nothing.
    Invalid(String),
}

impl GroupRef {
    /// Reads what a user typed.
    pub fn parse(text: &str) -> Self {
        if text.starts_with("tgr_") {
            text.parse()
                .map(Self::Id)
                .unwrap_or_else(|_| Self::Invalid(text.to_owned()))
        } else {
            TenantSlug::parse(text)
                .map(Self::Slug)
                .unwrap_or_else(|_| Self::Invalid(text.to_owned()))
        }
    }
}

impl std::fmt::Display for GroupRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Id(id) => write!(f, "{id}"),
            Self::Slug(slug) => write!(f, "{slug}"),
            Self::Invalid(text) => f.write_str(text),
        }
    }
}

impl App {
    /// Every tenant group, by slug.
    pub async fn list_tenant_groups(&self, actor: &Actor) -> Result<Vec<TenantGroup>, AppError> {
        authorize(actor, Permission::ReadTenants)?;
        Ok(self.store.list_tenant_groups().await?)
    }

    /// One tenant group with its members.
    pub async fn get_tenant_group(
        &self,
        actor: &Actor,
        group: &GroupRef,
    ) -> Result<TenantGroup, AppError> {
        authorize(actor, Permission::ReadTenants)?;
        self.find_tenant_group(group).await
    }

    /// Creates a group of the tenants named (by id or slug; none is fine:
    /// add them later). A taken slug is `409 tenant_group_slug_taken`.
    pub async fn create_tenant_group(
        &self,
        actor: &Actor,
        slug: TenantSlug,
        display_name: DisplayName,
        tenants: &[TenantRef],
    ) -> Result<TenantGroup, AppError> {
        authorize(actor, Permission::ManageTenants)?;
        let mut members = BTreeSet::new();
        for tenant in tenants {
            let found = self.find_tenant(tenant).await?;
            if found.state == TenantState::Deleted {
                return Err(deleted(&found));
            }
            members.insert(found.id);
        }
        let group = TenantGroup::new(slug, display_name, members, self.now());
        let audit = actor.provenance(self.now()).record(
            None,
            audit_action::TENANT_GROUP_CREATED,
            group.id,
            json!({"slug": group.slug, "tenants": group.tenants}),
        );
        self.store
            .insert_tenant_group(&group, &[audit])
            .await
            .map_err(|err| match err {
                StoreError::Conflict(_) => AppError::Conflict {
                    code: "tenant_group_slug_taken",
                    message: format!("a tenant group `{}` exists already", group.slug),
                },
                other => other.into(),
            })?;
        tracing::info!(group = %group.id, slug = %group.slug, "tenant group created");
        Ok(group)
    }

    /// Adds a tenant to a group (`member`) or removes it; idempotent.
    /// Operators scoped to the group reach the tenant, or stop reaching
    /// it, from their next request. Answers the group as it now is.
    pub async fn set_tenant_group_member(
        &self,
        actor: &Actor,
        group: &GroupRef,
        tenant: &TenantRef,
        member: bool,
    ) -> Result<TenantGroup, AppError> {
        authorize(actor, Permission::ManageTenants)?;
        let found = self.find_tenant_group(group).await?;
        let tenant = self.find_tenant(tenant).await?;
        if member && tenant.state == TenantState::Deleted {
            return Err(deleted(&tenant));
        }
        let audit = actor.provenance(self.now()).record(
            None,
            if member {
                audit_action::TENANT_GROUP_TENANT_ADDED
            } else {
                audit_action::TENANT_GROUP_TENANT_REMOVED
            },
            found.id,
            json!({"slug": found.slug, "tenant": tenant.id}),
        );
        self.store
            .set_tenant_group_member(found.id, tenant.id, member, &[audit])
            .await
            .map_err(|err| missing_group(err, group))?;
        self.find_tenant_group(group).await
    }

    /// Deletes a group no operator's scope names (`409
    /// tenant_group_in_use` otherwise, naming the operators: narrowing
    /// their reach is a decision to make on their scopes).
    pub async fn delete_tenant_group(
        &self,
        actor: &Actor,
        group: &GroupRef,
    ) -> Result<(), AppError> {
        authorize(actor, Permission::ManageTenants)?;
        let found = self.find_tenant_group(group).await?;
        let audit = actor.provenance(self.now()).record(
            None,
            audit_action::TENANT_GROUP_DELETED,
            found.id,
            json!({"slug": found.slug, "tenants": found.tenants}),
        );
        self.store
            .delete_tenant_group(found.id, &[audit])
            .await
            .map_err(|err| match err {
                StoreError::Conflict(message) => AppError::Conflict {
                    code: "tenant_group_in_use",
                    message: format!(
                        "tenant group `{}` is in use: {message}; change those scopes first",
                        found.slug
                    ),
                },
                other => missing_group(other, group),
            })?;
        tracing::info!(group = %found.id, slug = %found.slug, "tenant group deleted");
        Ok(())
    }

    /// The group `group` names, without asking the policies (callers do).
    pub(crate) async fn find_tenant_group(
        &self,
        group: &GroupRef,
    ) -> Result<TenantGroup, AppError> {
        let found = match group {
            GroupRef::Id(id) => self.store.get_tenant_group(*id).await,
            GroupRef::Slug(slug) => self.store.find_tenant_group_by_slug(slug).await,
            GroupRef::Invalid(_) => Err(StoreError::NotFound("tenant group")),
        };
        found.map_err(|err| missing_group(err, group))
    }
}

fn missing_group(err: StoreError, group: &GroupRef) -> AppError {
    match err {
        StoreError::NotFound("tenant group") => AppError::not_found("tenant group", group),
        other => other.into(),
    }
}
