//! The engine's identity actions.
//!
//! - `identity.apply` (params `person`, `area`, `leaver`, `ops`): applies
//!   planned operations to the systems, each operation keyed for
//!   idempotency. With `leaver = true` it revokes everything instead:
//!   on every attempt it reads every system afresh and disables the
//!   account, ends its sessions and removes every entitlement, so a system
//!   that was down when the termination arrived is revoked when it is back.
//!   A revocation that fails is retried (never given up: removals are
//!   retryable whatever the system said) and, past the tenant's deadline,
//!   escalated once to a human with exactly what remains. When every
//!   system shows the revocation the person gets a "revocation complete
//!   at T" record.
//! - `identity.elevation_grant` (param `elevation`): grants a just-in-time
//!   elevation once approved (L2) and answers `expires_at` for the timer.
//! - `identity.elevation_end` (param `elevation`): ends it at expiry and
//!   removes the entitlement unless something else still justifies it.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use gatehouse_connectors::ConnectorError;
use gatehouse_connectors::directory::AccountRef;
use gatehouse_core::audit::Provenance;
use gatehouse_core::gate::ProcessArea;
use gatehouse_core::id::TenantId;
use gatehouse_core::identity::{StoredElevation, action};
use gatehouse_core::notify::Notification;
use gatehouse_engine::action::{Action, ActionCall, ActionError, ActionRegistry, Change, Plan};
use gatehouse_identity::{AccountChange, Held, Operation, PersonStatus, desired, diff};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{IdentityCore, IdentityError, Remaining, context};
use crate::actions::{AccountSystem, text};

/// The notification kind of an escalated revocation.
pub const KIND_REVOCATION_ESCALATED: &str = "identity.revocation.escalated";

fn failed(err: IdentityError) -> ActionError {
    match err {
        IdentityError::Invalid(m) | IdentityError::NotFound(m) => ActionError::permanent(m),
        other => ActionError::retryable(other.to_string()),
    }
}

fn tenant_of(call: &ActionCall<'_>) -> Result<TenantId, ActionError> {
    call.tenant
        .ok_or_else(|| ActionError::permanent("identity actions need the workflow's tenant"))
}

fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap_or_else(|_| at.to_string())
}

/// The identity actions, by name.
pub fn all(core: &Arc<IdentityCore>) -> Vec<(&'static str, Arc<dyn Action>)> {
    vec![
        (
            "identity.apply",
            Arc::new(Apply { core: core.clone() }) as Arc<dyn Action>,
        ),
        (
            "identity.elevation_grant",
            Arc::new(ElevationGrant { core: core.clone() }),
        ),
        (
            "identity.elevation_end",
            Arc::new(ElevationEnd { core: core.clone() }),
        ),
    ]
}

/// Registers the identity actions.
pub fn register(actions: &mut ActionRegistry, core: &Arc<IdentityCore>) {
    for (name, action) in all(core) {
        actions.register(name, action);
    }
}

/// One operation's outcome.
struct Outcome {
    op: Operation,
    error: Option<ConnectorError>,
}

/// Applies `ops` in order, system by system; systems run concurrently.
/// Operations after a failed one on the same system are not tried (they
/// may depend on it: a group needs the account).
async fn apply_all(
    systems: &BTreeMap<String, AccountSystem>,
    account: &AccountRef,
    ops: Vec<Operation>,
    key: &str,
) -> Vec<Outcome> {
    let mut by_system: BTreeMap<String, Vec<(usize, Operation)>> = BTreeMap::new();
    for (i, op) in ops.into_iter().enumerate() {
        by_system
            .entry(op.system.clone())
            .or_default()
            .push((i, op));
    }
    let runs = by_system.into_iter().map(|(name, ops)| async move {
        let mut out = Vec::new();
        let Some(system) = systems.get(&name) else {
            for (_, op) in ops {
                out.push(Outcome {
                    op,
                    error: Some(ConnectorError::Config {
                        system: "identity",
                        message: format!("the tenant has no connector called `{name}`"),
                    }),
                });
            }
            return out;
        };
        // The earlier failure that stops the rest: its text, and whether
        // retrying may help (the rest share its fate).
        let mut blocked: Option<(String, bool)> = None;
        for (i, op) in ops {
            if let Some((reason, retryable)) = &blocked {
                let message = format!("not tried: {reason}");
                let error = if *retryable {
                    ConnectorError::Retryable { system: "identity", message, retry_after: None }
                } else {
                    ConnectorError::Rejected { system: "identity", status: None, message }
                };
                out.push(Outcome { op, error: Some(error) });
                continue;
            }
            let change = IdentityCore::change(&op.change);
            let op_key = format!("{key}:{i}");
            let result = system.directory.apply(account, &change, &op_key).await;
            if let Err(err) = &result {
                blocked = Some((format!("{} failed before it", op.change), err.is_retryable()));
                tracing::warn!(system = %name, change = %op.change, error = %err, "identity operation failed");
            }
            out.push(Outcome { op, error: result.err() });
        }
        out
    });
    futures_util::future::join_all(runs)
        .await
        .into_iter()
        .flatten()
        .collect()
}

/// What revoking everything from `held` takes: disable, end sessions (on
/// every attempt, since a session may outlive the account's disabling),
/// remove every entitlement.
fn leaver_ops(system: &str, held: &Held) -> Vec<Operation> {
    let mut ops = Vec::new();
    let op = |change| Operation {
        system: system.to_owned(),
        change,
        area: ProcessArea::Revocation,
        reasons: Vec::new(),
    };
    if held.active {
        ops.push(op(AccountChange::Disable));
    }
    ops.push(op(AccountChange::RevokeSessions));
    for ent in &held.entitlements {
        ops.push(op(AccountChange::Remove(ent.clone())));
    }
    ops
}

/// `identity.apply`.
pub struct Apply {
    core: Arc<IdentityCore>,
}

impl std::fmt::Debug for Apply {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("identity.apply")
    }
}

impl Apply {
    async fn revoke_all(
        &self,
        call: &ActionCall<'_>,
        tenant: TenantId,
        pid: &str,
    ) -> Result<Value, ActionError> {
        let core = &self.core;
        let sealer = core.sealer(tenant).await.map_err(failed)?;
        let Some((_, person)) = core.person(tenant, &sealer, pid).await.map_err(failed)? else {
            return Err(ActionError::permanent(format!("no person {pid}")));
        };
        if person.status != PersonStatus::Terminated {
            return Ok(json!({ "skipped": format!("{pid} is {} again", person.status.as_str()) }));
        }
        let systems = core.systems(tenant).await.map_err(failed)?;
        let account = IdentityCore::account_ref(pid, &person);
        let mut remaining = Vec::new();
        let mut ops = Vec::new();
        for (name, held) in IdentityCore::holdings(&systems, &account).await {
            match held {
                Ok(Some(h)) => ops.extend(leaver_ops(&name, &IdentityCore::held(&h))),
                Ok(None) => {}
                Err(err) => remaining.push(Remaining {
                    system: name,
                    change: AccountChange::Disable,
                    error: format!("cannot read the account: {err}"),
                }),
            }
        }
        let applied = ops.len();
        for outcome in apply_all(&systems, &account, ops, call.idempotency_key).await {
            if let Some(err) = outcome.error {
                remaining.push(Remaining {
                    system: outcome.op.system,
                    change: outcome.op.change,
                    error: err.to_string(),
                });
            }
        }
        let Some((mut record, mut doc)) = core
            .revocation(tenant, &sealer, pid)
            .await
            .map_err(failed)?
        else {
            return Err(ActionError::retryable(format!(
                "the revocation record of {pid} is missing"
            )));
        };
        let now = core.now();
        doc.attempts += 1;
        let done = remaining.is_empty();
        doc.remaining = remaining;
        let by = Provenance::system("identity lifecycle", now);
        let mut audit = Vec::new();
        let mut notification = None;
        if done {
            record.completed_at = Some(now);
            audit.push(by.record(
                Some(tenant),
                action::REVOCATION_COMPLETED,
                pid,
                json!({
                    "started_at": rfc3339(record.started_at),
                    "completed_at": rfc3339(now),
                    "systems": systems.keys().collect::<Vec<_>>(),
                    "operations": applied,
                    "attempts": doc.attempts,
                }),
            ));
        } else if now >= record.deadline_at && record.escalated_at.is_none() {
            record.escalated_at = Some(now);
            let what: Vec<String> = doc
                .remaining
                .iter()
                .map(|r| format!("{}: {}", r.system, r.change))
                .collect();
            notification = Some(Notification::queue(
                call.instance,
                Some(tenant),
                call.step_id,
                KIND_REVOCATION_ESCALATED,
                None,
                &format!(
                    "[Gatehouse] Revocation of {} is incomplete: {} left",
                    person.display_name(),
                    what.len()
                ),
                json!({
                    "person": pid,
                    "started_at": rfc3339(record.started_at),
                    "deadline": rfc3339(record.deadline_at),
                    "remaining": doc.remaining,
                    "instance": call.instance,
                }),
                now,
            ));
            audit.push(by.record(
                Some(tenant),
                action::REVOCATION_ESCALATED,
                pid,
                json!({ "remaining": what, "attempts": doc.attempts }),
            ));
        }
        record.sealed =
            IdentityCore::seal(&sealer, &context("revocation", pid), &doc).map_err(failed)?;
        core.store
            .identity_revocation_put(&record, notification.as_ref(), &audit)
            .await
            .map_err(|e| ActionError::retryable(format!("recording the revocation: {e}")))?;
        if done {
            Ok(
                json!({ "revoked": applied, "completed_at": rfc3339(now), "attempts": doc.attempts }),
            )
        } else {
            let what: Vec<String> = doc
                .remaining
                .iter()
                .map(|r| format!("{}: {} ({})", r.system, r.change, r.error))
                .collect();
            Err(ActionError::retryable(format!(
                "{} of the revocation remain: {}",
                what.len(),
                what.join("; ")
            )))
        }
    }

    fn ops(call: &ActionCall<'_>) -> Result<Vec<Operation>, ActionError> {
        serde_json::from_value(call.params.get("ops").cloned().unwrap_or(Value::Null))
            .map_err(|e| ActionError::permanent(format!("parameter `ops`: {e}")))
    }
}

#[async_trait]
impl Action for Apply {
    async fn run(&self, call: ActionCall<'_>) -> Result<Value, ActionError> {
        let tenant = tenant_of(&call)?;
        let pid = text(call.params, "person")?.to_owned();
        if call.params.get("leaver").and_then(Value::as_bool) == Some(true) {
            return self.revoke_all(&call, tenant, &pid).await;
        }
        let ops = Self::ops(&call)?;
        let core = &self.core;
        let sealer = core.sealer(tenant).await.map_err(failed)?;
        let Some((_, person)) = core.person(tenant, &sealer, &pid).await.map_err(failed)? else {
            return Err(ActionError::permanent(format!("no person {pid}")));
        };
        let systems = core.systems(tenant).await.map_err(failed)?;
        let account = IdentityCore::account_ref(&pid, &person);
        let total = ops.len();
        let outcomes = apply_all(&systems, &account, ops, call.idempotency_key).await;
        let failures: Vec<(Operation, ConnectorError)> = outcomes
            .into_iter()
            .filter_map(|o| o.error.map(|e| (o.op, e)))
            .collect();
        let audit = Provenance::system("identity lifecycle", core.now()).record(
            Some(tenant),
            action::APPLIED,
            &pid,
            json!({ "operations": total, "failed": failures.len(), "instance": call.instance }),
        );
        if let Err(err) = core.store.queue_audit(&[audit]).await {
            tracing::warn!(error = %err, "recording applied identity operations");
        }
        if failures.is_empty() {
            return Ok(json!({ "applied": total }));
        }
        let text: Vec<String> = failures
            .iter()
            .map(|(op, e)| format!("{}: {} ({e})", op.system, op.change))
            .collect();
        let message = format!(
            "{} of {total} operations failed: {}",
            failures.len(),
            text.join("; ")
        );
        let removal = failures
            .iter()
            .all(|(op, _)| op.area == ProcessArea::Revocation);
        let retry_after = failures.iter().filter_map(|(_, e)| e.retry_after()).max();
        if removal || failures.iter().any(|(_, e)| e.is_retryable()) {
            Err(ActionError::Retryable {
                message,
                retry_after,
            })
        } else {
            Err(ActionError::permanent(message))
        }
    }

    async fn plan(&self, call: ActionCall<'_>) -> Result<Option<Plan>, ActionError> {
        if call.params.get("leaver").and_then(Value::as_bool) == Some(true) {
            return Ok(None);
        }
        let tenant = tenant_of(&call)?;
        let pid = text(call.params, "person")?;
        let ops = Self::ops(&call)?;
        let core = &self.core;
        let sealer = core.sealer(tenant).await.map_err(failed)?;
        let Some((_, person)) = core.person(tenant, &sealer, pid).await.map_err(failed)? else {
            return Err(ActionError::permanent(format!("no person {pid}")));
        };
        let systems = core.systems(tenant).await.map_err(failed)?;
        let account = IdentityCore::account_ref(pid, &person);
        let touched: BTreeMap<String, AccountSystem> = systems
            .into_iter()
            .filter(|(name, _)| ops.iter().any(|op| &op.system == name))
            .collect();
        let mut held_by_system = BTreeMap::new();
        for (name, held) in IdentityCore::holdings(&touched, &account).await {
            let held = held.map_err(|e| ActionError::retryable(format!("{name}: {e}")))?;
            held_by_system.insert(name, held.as_ref().map(IdentityCore::held));
        }
        // Only what each change depends on is observed (and fingerprinted):
        // an unrelated change to the account (another workflow adding a
        // group) does not send the plan back to the approver.
        let mut observed = serde_json::Map::new();
        let changes = ops
            .iter()
            .map(|op| {
                let before = observe(
                    held_by_system.get(&op.system).and_then(Option::as_ref),
                    &op.change,
                );
                observed.insert(format!("{}: {}", op.system, op.change), before.clone());
                Change {
                    target: format!("{} account of {}", op.system, account.user_name),
                    field: op.change.to_string(),
                    before,
                    after: json!({ "change": op.change, "why": op.reasons }),
                }
            })
            .collect();
        let summary = format!(
            "{} change(s) for {} on {}",
            ops.len(),
            account.user_name,
            touched.keys().cloned().collect::<Vec<_>>().join(", ")
        );
        Ok(Some(Plan::new(summary, changes, Value::Object(observed))))
    }
}

/// The state a change depends on: the account's (`absent`, `enabled`,
/// `disabled`) for account changes, whether the entitlement is held for
/// grants and removals.
fn observe(held: Option<&Held>, change: &AccountChange) -> Value {
    match change {
        AccountChange::Add(e) | AccountChange::Remove(e) => {
            json!(held.is_some_and(|h| h.entitlements.contains(e)))
        }
        AccountChange::RevokeSessions => Value::Null,
        AccountChange::Create | AccountChange::Enable | AccountChange::Disable => {
            json!(match held {
                None => "absent",
                Some(h) if h.active => "enabled",
                Some(_) => "disabled",
            })
        }
    }
}

/// Marks an elevation ended (if it is requested or active); answers the
/// person's id when it changed.
pub async fn end_elevation(
    core: &IdentityCore,
    tenant: TenantId,
    id: &str,
    actor: &str,
) -> Result<Option<String>, IdentityError> {
    let sealer = core.sealer(tenant).await?;
    let Some(mut row) = core.store.identity_elevation(tenant, id).await? else {
        return Err(IdentityError::NotFound(format!("elevation {id}")));
    };
    if row.state == "ended" || row.state == "rejected" {
        return Ok(None);
    }
    let mut doc: super::ElevationDoc =
        IdentityCore::open(&sealer, &context("elevation", id), &row.sealed)?;
    let now = core.now();
    doc.ended_by = Some(actor.to_owned());
    row.state = "ended".into();
    row.ended_at = Some(now);
    row.sealed = IdentityCore::seal(&sealer, &context("elevation", id), &doc)?;
    let early = row.expires_at.is_some_and(|at| now < at);
    let audit = Provenance::system("identity lifecycle", now).record(
        Some(tenant),
        action::ELEVATION_ENDED,
        id,
        json!({ "person": row.person_id, "by": actor, "early": early }),
    );
    core.store.identity_elevation_put(&row, &[audit]).await?;
    Ok(Some(row.person_id))
}

async fn elevation(
    core: &IdentityCore,
    tenant: TenantId,
    id: &str,
) -> Result<(StoredElevation, super::ElevationDoc), ActionError> {
    let sealer = core.sealer(tenant).await.map_err(failed)?;
    let row = core
        .store
        .identity_elevation(tenant, id)
        .await
        .map_err(|e| ActionError::retryable(e.to_string()))?
        .ok_or_else(|| ActionError::permanent(format!("no elevation {id}")))?;
    let doc =
        IdentityCore::open(&sealer, &context("elevation", id), &row.sealed).map_err(failed)?;
    Ok((row, doc))
}

/// `identity.elevation_grant`.
pub struct ElevationGrant {
    core: Arc<IdentityCore>,
}

impl std::fmt::Debug for ElevationGrant {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("identity.elevation_grant")
    }
}

impl ElevationGrant {
    async fn ops(
        &self,
        tenant: TenantId,
        doc: &super::ElevationDoc,
        pid: &str,
    ) -> Result<
        (
            AccountRef,
            BTreeMap<String, AccountSystem>,
            Option<Held>,
            Vec<Operation>,
        ),
        ActionError,
    > {
        let core = &self.core;
        let sealer = core.sealer(tenant).await.map_err(failed)?;
        let Some((_, person)) = core.person(tenant, &sealer, pid).await.map_err(failed)? else {
            return Err(ActionError::permanent(format!("no person {pid}")));
        };
        if person.status != PersonStatus::Active {
            return Err(ActionError::permanent(format!(
                "{pid} is {}: no elevation",
                person.status.as_str()
            )));
        }
        let systems: BTreeMap<String, AccountSystem> = core
            .systems(tenant)
            .await
            .map_err(failed)?
            .into_iter()
            .filter(|(name, _)| *name == doc.system)
            .collect();
        if systems.is_empty() {
            return Err(ActionError::permanent(format!(
                "the tenant has no connector called `{}`",
                doc.system
            )));
        }
        let account = IdentityCore::account_ref(pid, &person);
        let held = IdentityCore::holdings(&systems, &account)
            .await
            .remove(&doc.system)
            .unwrap_or(Ok(None))
            .map_err(|e| ActionError::retryable(format!("{}: {e}", doc.system)))?
            .map(|h| IdentityCore::held(&h));
        let mut ops = Vec::new();
        let op = |change| Operation {
            system: doc.system.clone(),
            change,
            area: ProcessArea::ElevatedAccess,
            reasons: Vec::new(),
        };
        match &held {
            None => ops.push(op(AccountChange::Create)),
            Some(h) if !h.active => ops.push(op(AccountChange::Enable)),
            Some(_) => {}
        }
        if !held
            .as_ref()
            .is_some_and(|h| h.entitlements.contains(&doc.entitlement))
        {
            ops.push(op(AccountChange::Add(doc.entitlement.clone())));
        }
        Ok((account, systems, held, ops))
    }
}

#[async_trait]
impl Action for ElevationGrant {
    async fn run(&self, call: ActionCall<'_>) -> Result<Value, ActionError> {
        let tenant = tenant_of(&call)?;
        let id = text(call.params, "elevation")?;
        let (mut row, mut doc) = elevation(&self.core, tenant, id).await?;
        if row.state == "active" {
            let at = row.expires_at.map(rfc3339);
            return Ok(json!({ "elevation": id, "expires_at": at }));
        }
        if row.state != "requested" {
            return Err(ActionError::permanent(format!(
                "elevation {id} is {}",
                row.state
            )));
        }
        let (account, systems, _, ops) = self.ops(tenant, &doc, &row.person_id).await?;
        let outcomes = apply_all(&systems, &account, ops, call.idempotency_key).await;
        if let Some(err) = outcomes.into_iter().find_map(|o| o.error) {
            return Err(if err.is_retryable() {
                ActionError::Retryable {
                    message: err.to_string(),
                    retry_after: err.retry_after(),
                }
            } else {
                ActionError::permanent(err.to_string())
            });
        }
        let now = self.core.now();
        let expires =
            now + time::Duration::seconds(i64::try_from(doc.duration_secs).unwrap_or(i64::MAX / 2));
        let sealer = self.core.sealer(tenant).await.map_err(failed)?;
        doc.workflow = Some(call.instance.to_string());
        row.state = "active".into();
        row.expires_at = Some(expires);
        row.sealed =
            IdentityCore::seal(&sealer, &context("elevation", id), &doc).map_err(failed)?;
        let audit = Provenance::system("identity lifecycle", now).record(
            Some(tenant),
            action::ELEVATION_ACTIVE,
            id,
            json!({ "person": row.person_id, "system": doc.system, "expires_at": rfc3339(expires), "instance": call.instance }),
        );
        self.core
            .store
            .identity_elevation_put(&row, &[audit])
            .await
            .map_err(|e| ActionError::retryable(format!("recording the elevation: {e}")))?;
        Ok(json!({ "elevation": id, "expires_at": rfc3339(expires) }))
    }

    async fn plan(&self, call: ActionCall<'_>) -> Result<Option<Plan>, ActionError> {
        let tenant = tenant_of(&call)?;
        let id = text(call.params, "elevation")?;
        let (row, doc) = elevation(&self.core, tenant, id).await?;
        let (account, _, held, ops) = self.ops(tenant, &doc, &row.person_id).await?;
        let observed = json!({
            "held": observe(held.as_ref(), &AccountChange::Add(doc.entitlement.clone())),
        });
        let changes = ops
            .iter()
            .map(|op| Change {
                target: format!("{} account of {}", doc.system, account.user_name),
                field: op.change.to_string(),
                before: observe(held.as_ref(), &op.change),
                after: json!({ "change": op.change, "for_secs": doc.duration_secs, "justification": doc.justification }),
            })
            .collect();
        let summary = format!(
            "Grant {} on {} to {} for {} s: {}",
            doc.entitlement, doc.system, account.user_name, doc.duration_secs, doc.justification
        );
        Ok(Some(Plan::new(summary, changes, observed)))
    }
}

/// `identity.elevation_end`.
pub struct ElevationEnd {
    core: Arc<IdentityCore>,
}

impl std::fmt::Debug for ElevationEnd {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("identity.elevation_end")
    }
}

#[async_trait]
impl Action for ElevationEnd {
    async fn run(&self, call: ActionCall<'_>) -> Result<Value, ActionError> {
        let tenant = tenant_of(&call)?;
        let id = text(call.params, "elevation")?;
        let core = &self.core;
        end_elevation(core, tenant, id, "expiry")
            .await
            .map_err(failed)?;
        let (row, doc) = elevation(core, tenant, id).await?;
        let sealer = core.sealer(tenant).await.map_err(failed)?;
        let Some((_, person)) = core
            .person(tenant, &sealer, &row.person_id)
            .await
            .map_err(failed)?
        else {
            return Ok(json!({ "ended": id }));
        };
        // Remove the entitlement unless a template or another live
        // elevation still justifies it.
        let (_, _, policy) = core.policy(tenant, &sealer).await.map_err(failed)?;
        let live = core
            .live_elevations(tenant, &sealer, &row.person_id)
            .await
            .map_err(failed)?;
        let want = desired(&person, &policy, &live, core.now());
        let systems: BTreeMap<String, AccountSystem> = core
            .systems(tenant)
            .await
            .map_err(failed)?
            .into_iter()
            .filter(|(name, _)| *name == doc.system)
            .collect();
        let account = IdentityCore::account_ref(&row.person_id, &person);
        let held = match IdentityCore::holdings(&systems, &account)
            .await
            .remove(&doc.system)
        {
            Some(Ok(held)) => held.map(|h| IdentityCore::held(&h)),
            Some(Err(err)) => return Err(ActionError::retryable(format!("{}: {err}", doc.system))),
            None => None,
        };
        let ops: Vec<Operation> = diff(&doc.system, want.systems.get(&doc.system), held.as_ref())
            .into_iter()
            .filter(|op| op.change == AccountChange::Remove(doc.entitlement.clone()))
            .collect();
        let removed = ops.len();
        if let Some(err) = apply_all(&systems, &account, ops, call.idempotency_key)
            .await
            .into_iter()
            .find_map(|o| o.error)
        {
            return Err(ActionError::Retryable {
                message: err.to_string(),
                retry_after: err.retry_after(),
            });
        }
        Ok(json!({ "ended": id, "removed": removed }))
    }
}
