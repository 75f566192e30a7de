//! Approval deadlines: an approval still pending at its deadline escalates
//! to its `escalate_to` role.
//!
//! [`Approval::deciding_role`] already moves the authority at the deadline
//! (so nobody waits for the sweep to be allowed to decide) and keeps it with
//! the escalation role once `escalated_at` is set; `approver_role` keeps
//! naming the group it was first assigned to. The sweep makes the
//! escalation durable and visible: `escalated_at` is set and the instance's
//! history gets `approval.escalated` (from, to), in one transaction. The store's update is guarded
//! (`escalated_at IS NULL`, still pending) and the instance's by its
//! version, so two nodes sweeping at once escalate an approval once; the
//! loser sees `Stale` and moves on.
//!
//! [`Approval::deciding_role`]: gatehouse_core::approval::Approval::deciding_role

use gatehouse_core::store::StoreError;
use gatehouse_core::workflow::Progress;
use serde_json::json;
use time::OffsetDateTime;

use super::{Engine, EngineError, SYSTEM, next_version};

/// How often the worker loop sweeps for overdue approvals.
pub const ESCALATION_INTERVAL: time::Duration = time::Duration::seconds(5);

/// Approvals escalated per sweep at most; the next sweep takes the rest.
const ESCALATION_BATCH: u32 = 100;

impl Engine {
    /// Escalates every approval pending past its deadline at `now` (up to a
    /// batch): `escalated_at` is set, so its `escalate_to` role (and admins)
    /// decide from now on, and `approval.escalated` is written to the
    /// instance's history (`approval.overdue` for an approval without an
    /// escalation role, which keeps its approver role). Returns how
    /// many it escalated; one escalated meanwhile by another node is
    /// skipped.
    pub async fn escalate_overdue(&self, now: OffsetDateTime) -> Result<usize, EngineError> {
        let overdue = self.store.overdue_approvals(now, ESCALATION_BATCH).await?;
        let mut escalated = 0;
        for mut approval in overdue {
            let from = approval.approver_role;
            if !approval.is_overdue(now) || !approval.escalate(now) {
                continue;
            }
            // One approval that cannot be escalated (its instance unreadable)
            // must not hold back the others: it is logged and skipped.
            let (mut instance, _) = match self.store.get_instance(approval.instance_id).await {
                Ok(found) => found,
                Err(err) => {
                    tracing::error!(approval = %approval.id, %err, "cannot escalate an overdue approval: its workflow is unreadable");
                    continue;
                }
            };
            let (kind, detail) = match approval.escalate_to {
                Some(to) => (
                    "approval.escalated",
                    json!({ "approval": approval.id, "from": from, "to": to, "deadline": approval.deadline.map(|d| d.unix_timestamp()) }),
                ),
                None => (
                    "approval.overdue",
                    json!({ "approval": approval.id, "role": from, "deadline": approval.deadline.map(|d| d.unix_timestamp()) }),
                ),
            };
            let entry = next_version(
                &mut instance,
                now,
                kind,
                Some(&approval.step_id),
                SYSTEM,
                detail,
            );
            let id = instance.id;
            let progress = Progress::new(instance, Vec::new(), vec![entry]);
            match self.store.escalate_approval(&approval, &progress).await {
                Ok(()) => {
                    escalated += 1;
                    tracing::info!(approval = %approval.id, workflow = %id, to = ?approval.escalate_to, "approval escalated");
                }
                // Escalated, decided or moved on meanwhile: the next sweep
                // sees it afresh if it is still overdue.
                Err(StoreError::Stale(what)) => {
                    tracing::debug!(approval = %approval.id, what, "escalation skipped: changed meanwhile");
                }
                Err(
                    err @ (StoreError::Corrupt(_)
                    | StoreError::NotFound(_)
                    | StoreError::Conflict(_)),
                ) => {
                    tracing::error!(approval = %approval.id, %err, "cannot escalate an overdue approval; the others go on");
                }
                Err(err) => return Err(err.into()),
            }
            self.forget(id);
        }
        Ok(escalated)
    }

    /// Sweeps for overdue approvals if the last sweep (at `last`) is at
    /// least [`ESCALATION_INTERVAL`] ago; returns the time of the last
    /// sweep. For the worker loop: a failure is logged and retried on the
    /// next interval.
    pub(super) async fn escalate_if_due(
        &self,
        last: Option<OffsetDateTime>,
    ) -> Option<OffsetDateTime> {
        let now = self.clock.now();
        if last.is_some_and(|at| now - at < ESCALATION_INTERVAL) {
            return last;
        }
        if let Err(err) = self.escalate_overdue(now).await {
            tracing::error!(%err, "escalating overdue approvals failed; retrying at the next sweep");
        }
        Some(now)
    }
}
