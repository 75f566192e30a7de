//! The gate policies a tick applies: each tenant's, read once per tick.
//!
//! A step is gated by its tenant's policy *at the moment it runs*, so a
//! tenant that raises an area sees the change on the next wave of every
//! instance, including ones already running. Reading the policy once per
//! distinct tenant per tick (not per step, not cached across ticks) keeps
//! that promise at the cost of one small query per tenant in the batch.
//! Instances without a tenant run every area at its default.

use std::collections::HashMap;
use std::sync::Arc;

use gatehouse_core::gate::{GateLevel, GatePolicy, ProcessArea};
use gatehouse_core::id::TenantId;
use gatehouse_core::store::{StoreError, WorkflowStore};

/// The policies read so far in one tick.
#[derive(Debug, Default)]
pub(crate) struct TickPolicies {
    read: HashMap<TenantId, Arc<GatePolicy>>,
    default: Arc<GatePolicy>,
}

impl TickPolicies {
    /// The policy of `tenant` (the default one for none), read from
    /// `store` the first time this tick asks for it.
    pub(crate) async fn of(
        &mut self,
        store: &dyn WorkflowStore,
        tenant: Option<TenantId>,
    ) -> Result<Arc<GatePolicy>, StoreError> {
        let Some(tenant) = tenant else {
            return Ok(Arc::clone(&self.default));
        };
        if let Some(policy) = self.read.get(&tenant) {
            return Ok(Arc::clone(policy));
        }
        // The store checks every row it reads; a failure here is corrupt
        // data (or a release that raised a floor above a stored level).
        // One tenant's bad settings must neither stop every other tenant's
        // work nor let this tenant's steps run with less oversight than it
        // asked for: its areas run at L2 at least until someone fixes them.
        let policy = match store.gate_settings(tenant).await {
            Ok(settings) => GatePolicy::from_settings(&settings).map_err(|err| err.to_string()),
            Err(StoreError::Corrupt(reason)) => Err(reason),
            Err(err) => return Err(err),
        };
        let policy = Arc::new(policy.unwrap_or_else(|reason| {
            tracing::error!(%tenant, %reason, "unreadable gate settings: every area of this tenant runs at L2 at least until they are fixed");
            strict()
        }));
        self.read.insert(tenant, Arc::clone(&policy));
        Ok(policy)
    }
}

/// Every area at L2 or above: nothing runs without a person's approval.
fn strict() -> GatePolicy {
    let mut policy = GatePolicy::new();
    for area in ProcessArea::ALL {
        let level = area.default_level().max(GateLevel::L2);
        // Never below a floor (the floors are at most L2 today); were one
        // higher, the area keeps its default, which is at least its floor.
        let _ = policy.set(area, level);
    }
    policy
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_strict_policy_gates_every_area_for_people() {
        let policy = strict();
        for area in ProcessArea::ALL {
            assert!(policy.effective(area) >= GateLevel::L2, "{area}");
            assert!(policy.effective(area) >= area.floor(), "{area}");
        }
    }
}
