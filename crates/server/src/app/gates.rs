//! Per-tenant gate policies: reading every area's gate for a tenant, and
//! raising, lowering (never below the floor) or clearing one area.
//!
//! Reading needs only `ReadTenants`; changing needs `ManageGates` (admin or
//! lead). The floor is checked by the domain (`GateSetting::check`) before
//! the store is called, and the store checks it again before its SQL.

use gatehouse_core::audit::action;
use gatehouse_core::gate::{AreaGate, GateLevel, GateSetting, ProcessArea};
use gatehouse_core::id::TenantId;
use gatehouse_core::store::StoreError;
use gatehouse_core::tenant::TenantState;
use serde_json::json;

use super::{Actor, App, TenantRef, actor_name, deleted};
use crate::authz::Permission;
use crate::error::AppError;

impl App {
    /// Every process area's gate for `tenant` (whose id comes first):
    /// default, floor, override, effective level and last change.
    pub async fn tenant_gates(
        &self,
        actor: &Actor,
        tenant: &TenantRef,
    ) -> Result<(TenantId, Vec<AreaGate>), AppError> {
        let tenant = self
            .tenant_for(actor, Permission::ReadTenants, tenant)
            .await?;
        let settings = self.store.gate_settings(tenant.id).await?;
        Ok((tenant.id, AreaGate::all(&settings)))
    }

    /// Sets `area` of `tenant` to `level`, or clears it back to the area's
    /// default when `level` is `None`; `reason` says why. A level below
    /// the area's floor is refused (`invalid_input`, naming the floor).
    /// Workflows see the change from their next wave on.
    pub async fn set_tenant_gate(
        &self,
        actor: &Actor,
        tenant: &TenantRef,
        area: ProcessArea,
        level: Option<GateLevel>,
        reason: &str,
    ) -> Result<AreaGate, AppError> {
        let tenant = self
            .tenant_for(actor, Permission::ManageGates, tenant)
            .await?;
        if tenant.state == TenantState::Deleted {
            return Err(deleted(&tenant));
        }
        let by = actor_name(actor);
        let setting = GateSetting::new(tenant.id, area, level, &by, reason, self.now())?;
        // The level before, as read just before the change.
        let was = self
            .store
            .gate_settings(tenant.id)
            .await?
            .into_iter()
            .find(|s| s.area == area)
            .and_then(|s| s.level);
        let audit = actor.provenance(setting.set_at).record(
            Some(tenant.id),
            if level.is_some() {
                action::GATE_SET
            } else {
                action::GATE_CLEARED
            },
            area,
            json!({
                "area": area.as_str(),
                "before": was.map(GateLevel::as_str),
                "after": level.map(GateLevel::as_str),
                "reason": setting.reason,
            }),
        );
        self.store
            .put_gate_setting(&setting, &[audit])
            .await
            .map_err(|err| match err {
                // Deleted between the check above and the write.
                StoreError::NotFound(_) => deleted(&tenant),
                other => other.into(),
            })?;
        tracing::info!(tenant = %tenant.id, %area, level = ?level.map(GateLevel::as_str), %by, "gate changed");
        AreaGate::all(std::slice::from_ref(&setting))
            .into_iter()
            .find(|gate| gate.area == area)
            .ok_or_else(|| AppError::Internal(format!("process area {area} is not listed")))
    }
}
