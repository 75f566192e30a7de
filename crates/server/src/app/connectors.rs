//! The connector directory: a tenant's connectors (which PSA, RMM,
//! Microsoft 365 tenant, documentation platform its actions reach), listed,
//! set and removed.
//!
//! Authorization is that of secrets (`ManageSecrets`: admin, lead): a
//! connector names the secrets that hold its credentials, and pointing a
//! tenant's actions at another system is as sensitive as changing them.
//! Every change is audited in the tenant's log, with the settings and the
//! names of the secrets (never a credential: the domain refuses settings
//! that look like one).

use gatehouse_core::connector::{ConnectorConfig, ConnectorName, ConnectorSpec, action};
use gatehouse_core::store::StoreError;
use gatehouse_core::tenant::TenantState;
use serde_json::json;

use super::{Actor, App, TenantRef, deleted};
use crate::authz::Permission;
use crate::error::AppError;

impl App {
    /// The tenant's connectors, by name.
    pub async fn list_connectors(
        &self,
        actor: &Actor,
        tenant: &TenantRef,
    ) -> Result<Vec<ConnectorConfig>, AppError> {
        let tenant = self
            .tenant_for(actor, Permission::ManageSecrets, tenant)
            .await?;
        Ok(self.store.list_connectors(tenant.id).await?)
    }

    /// Creates the tenant's connector called `name`, or replaces its
    /// configuration (same id, next version). Answers it as stored and
    /// whether it was created.
    pub async fn set_connector(
        &self,
        actor: &Actor,
        tenant: &TenantRef,
        name: &ConnectorName,
        spec: ConnectorSpec,
    ) -> Result<(ConnectorConfig, bool), AppError> {
        let tenant = self
            .tenant_for(actor, Permission::ManageSecrets, tenant)
            .await?;
        if tenant.state == TenantState::Deleted {
            return Err(deleted(&tenant));
        }
        let now = self.now();
        let (connector, before) = match self.store.get_connector(tenant.id, name).await {
            Ok(current) => (current.changed(spec, now)?, Some(current)),
            Err(StoreError::NotFound(_)) => (
                ConnectorConfig::new(tenant.id, name.clone(), spec, now)?,
                None,
            ),
            Err(other) => return Err(other.into()),
        };
        let secrets: Vec<&str> = connector.secrets.values().map(|s| s.as_str()).collect();
        let audit = actor.provenance(now).record(
            Some(tenant.id),
            action::CONNECTOR_SET,
            connector.id,
            json!({
                "name": name.as_str(),
                "kind": connector.kind.as_str(),
                "base_url": connector.base_url,
                "settings": connector.settings,
                "secrets": secrets,
                "version": connector.version,
                "kind_before": before.as_ref().map(|b| b.kind.as_str()),
            }),
        );
        self.store
            .put_connector(&connector, &[audit])
            .await
            .map_err(|err| match err {
                StoreError::NotFound(_) => deleted(&tenant),
                other => other.into(),
            })?;
        tracing::info!(tenant = %tenant.id, connector = %name, kind = %connector.kind, "connector set");
        Ok((connector, before.is_none()))
    }

    /// Removes the tenant's connector called `name`.
    pub async fn remove_connector(
        &self,
        actor: &Actor,
        tenant: &TenantRef,
        name: &ConnectorName,
    ) -> Result<(), AppError> {
        let tenant = self
            .tenant_for(actor, Permission::ManageSecrets, tenant)
            .await?;
        let current = self
            .store
            .get_connector(tenant.id, name)
            .await
            .map_err(|err| match err {
                StoreError::NotFound(_) => AppError::not_found("connector", name),
                other => other.into(),
            })?;
        let audit = actor.provenance(self.now()).record(
            Some(tenant.id),
            action::CONNECTOR_DELETED,
            current.id,
            json!({ "name": name.as_str(), "kind": current.kind.as_str() }),
        );
        self.store
            .delete_connector(tenant.id, name, &[audit])
            .await
            .map_err(|err| match err {
                StoreError::NotFound(_) => AppError::not_found("connector", name),
                other => other.into(),
            })
    }
}
