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

use gatehouse_core::gate::GatePolicy;
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
        let settings = store.gate_settings(tenant).await?;
        // The store checks every row it reads; a failure here is corrupt data.
        let policy = Arc::new(GatePolicy::from_settings(&settings).map_err(|err| {
            StoreError::Corrupt(format!("the gate settings of tenant {tenant}: {err}"))
        })?);
        self.read.insert(tenant, Arc::clone(&policy));
        Ok(policy)
    }
}
