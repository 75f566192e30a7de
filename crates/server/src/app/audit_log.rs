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
        authorize(actor, Permission::ReadAudit)?;
        if spec == SYSTEM_LOG {
            return Ok(SYSTEM_LOG.to_owned());
        }
        let tenant = self.find_tenant(&TenantRef::parse(spec)).await?;
        Ok(tenant.id.to_string())
    }
}
