//! Naming audit logs: `system`, or a tenant by id or slug.

use gatehouse_core::audit::SYSTEM_LOG;

use super::{Actor, App, TenantRef};
use crate::authz::{Permission, authorize};
use crate::error::AppError;

impl App {
    /// The log `spec` names: `system`, a tenant id (deleted tenants'
    /// tombstones included, so a shredded tenant's log stays reachable) or
    /// a tenant slug. Needs `ReadAudit`; an unknown tenant is `NotFound`.
    pub async fn audit_log_of(&self, actor: &Actor, spec: &str) -> Result<String, AppError> {
        self.audit_log_for(actor, Permission::ReadAudit, spec).await
    }

    /// [`App::audit_log_of`], needing `permission` on the log: the system
    /// log is the installation's, a tenant's log the tenant's (a scoped
    /// operator reads only their tenants' logs).
    pub(crate) async fn audit_log_for(
        &self,
        actor: &Actor,
        permission: Permission,
        spec: &str,
    ) -> Result<String, AppError> {
        if spec == SYSTEM_LOG {
            authorize(actor, permission)?;
            return Ok(SYSTEM_LOG.to_owned());
        }
        let tenant = self
            .tenant_for(actor, permission, &TenantRef::parse(spec))
            .await?;
        Ok(tenant.id.to_string())
    }
}
