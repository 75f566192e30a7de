//! Tenants' SCIM bearer tokens: created (the secret is shown once; only
//! its SHA-256 is kept), listed and revoked by operators (`ManageSecrets`
//! to create or revoke, `ReadTenants` to list), each change audited in the
//! tenant's log. A token authenticates SCIM requests of its own tenant only.

use gatehouse_core::scim::{ScimToken, action};
use gatehouse_core::tenant::{Tenant, TenantState};
use serde_json::json;
use zeroize::Zeroizing;

use super::{Actor, App, TenantRef};
use crate::authz::Permission;
use crate::error::AppError;
use crate::scim::{IssuedScimToken, new_token_secret, token_hash};

/// The longest token label.
pub const MAX_LABEL: usize = 200;

impl App {
    /// A new SCIM token for `tenant`; the secret is in the answer only.
    pub async fn create_scim_token(
        &self,
        actor: &Actor,
        tenant: &TenantRef,
        label: &str,
    ) -> Result<IssuedScimToken, AppError> {
        let tenant = self
            .tenant_for(actor, Permission::ManageSecrets, tenant)
            .await?;
        if label.chars().count() > MAX_LABEL {
            return Err(AppError::Invalid(format!(
                "a token label is at most {MAX_LABEL} characters"
            )));
        }
        if tenant.state == TenantState::Deleted {
            return Err(AppError::not_found("tenant", &tenant.slug));
        }
        let (id, secret) = new_token_secret().map_err(AppError::Internal)?;
        let now = self.now();
        let token = ScimToken {
            id: id.clone(),
            tenant_id: tenant.id,
            label: label.to_owned(),
            hash: token_hash(&secret),
            created_by: actor.provenance(now).actor,
            created_at: now,
            revoked_at: None,
        };
        let audit =
            actor
                .provenance(now)
                .record(Some(tenant.id), action::TOKEN_CREATED, &id, json!({}));
        self.store.scim_token_insert(&token, &[audit]).await?;
        tracing::info!(tenant = %tenant.id, token = %id, "SCIM token created");
        Ok(IssuedScimToken { token, secret })
    }

    /// `tenant`'s SCIM tokens, revoked ones included, oldest first.
    pub async fn scim_tokens(
        &self,
        actor: &Actor,
        tenant: &TenantRef,
    ) -> Result<Vec<ScimToken>, AppError> {
        let tenant = self
            .tenant_for(actor, Permission::ReadTenants, tenant)
            .await?;
        Ok(self.store.scim_tokens(tenant.id).await?)
    }

    /// Revokes one of `tenant`'s SCIM tokens.
    pub async fn revoke_scim_token(
        &self,
        actor: &Actor,
        tenant: &TenantRef,
        id: &str,
    ) -> Result<(), AppError> {
        let tenant = self
            .tenant_for(actor, Permission::ManageSecrets, tenant)
            .await?;
        let now = self.now();
        let audit =
            actor
                .provenance(now)
                .record(Some(tenant.id), action::TOKEN_REVOKED, id, json!({}));
        if self
            .store
            .scim_token_revoke(tenant.id, id, now, &[audit])
            .await?
        {
            tracing::info!(tenant = %tenant.id, token = %id, "SCIM token revoked");
            Ok(())
        } else {
            Err(AppError::NotFound {
                code: "scim_token_not_found",
                message: format!("no live SCIM token `{id}`"),
            })
        }
    }

    /// The tenant named in a SCIM path, if `bearer` is a live SCIM token of
    /// that very tenant; `None` otherwise (unknown tenant, unknown, revoked
    /// or another tenant's token alike, so nothing is revealed).
    pub async fn scim_authenticate(
        &self,
        tenant: &str,
        bearer: &str,
    ) -> Result<Option<(Tenant, ScimToken)>, AppError> {
        let bearer = Zeroizing::new(bearer.to_owned());
        if !bearer.starts_with(crate::scim::TOKEN_PREFIX) {
            return Ok(None);
        }
        let Some(token) = self.store.scim_token_by_hash(&token_hash(&bearer)).await? else {
            return Ok(None);
        };
        if token.revoked_at.is_some() {
            return Ok(None);
        }
        let tenant = match self.find_tenant(&TenantRef::parse(tenant)).await {
            Ok(t) => t,
            Err(AppError::NotFound { .. }) => return Ok(None),
            Err(other) => return Err(other),
        };
        if tenant.id != token.tenant_id || tenant.state == TenantState::Deleted {
            return Ok(None);
        }
        Ok(Some((tenant, token)))
    }
}
