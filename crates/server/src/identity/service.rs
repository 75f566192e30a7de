//! Lifecycle events in, reconciliation out, the policy, drift and
//! just-in-time elevation.
//!
//! **Events.** An event is validated, applied to the person (in order on
//! top, or by replaying every stored event when it arrives late, so the
//! same events always give the same person), and stored with the person
//! and its audit record in one transaction; a repeated event id changes
//! nothing.
//!
//! **Reconciliation.** The person's desired grants (the policy's templates
//! and rules, live elevations) are compared with what each of the tenant's
//! systems holds; the operations are grouped by process area and handed to
//! the engine as `identity.operations` events, one per area, which start
//! the `identity-*` workflows: standard access L1, sensitive entitlements
//! L2, removals L0. A leaver's revocation is one L0 workflow that
//! re-reads every system on each attempt, so nothing is left because it
//! was unreadable when planned.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use gatehouse_core::audit::Provenance;
use gatehouse_core::gate::ProcessArea;
use gatehouse_core::id::{TenantId, WorkflowId};
use gatehouse_core::identity::{
    Recorded, StoredElevation, StoredEvent, StoredPerson, StoredPolicy, StoredRevocation, action,
};
use gatehouse_core::workflow::{DedupKey, EventKind as EngineEventKind, EventSource};
use gatehouse_engine::runtime::{Engine, NewEvent};
use gatehouse_identity::plan::Impact;
use gatehouse_identity::{
    Desired, Drift, LifecycleEvent, Operation, Person, PersonStatus, Policy, desired, diff, drift,
    impact,
};
use gatehouse_vault::TenantSealer;
use serde::Serialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::{ElevationDoc, IdentityCore, IdentityError, RevocationDoc, context, event_digest};

/// The engine event type that carries planned operations.
pub const OPERATIONS_EVENT: &str = "identity.operations";
/// The engine event type of a just-in-time request.
pub const ELEVATION_EVENT: &str = "identity.elevation.requested";

/// What an event did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct Ingested {
    /// The person's id.
    pub person: String,
    /// Their status now.
    pub status: String,
    /// Whether the event had been received before (nothing changed).
    pub duplicate: bool,
    /// The workflow instances started to bring the systems in line.
    #[schema(value_type = Vec<String>)]
    pub workflows: Vec<WorkflowId>,
    /// Systems the policy names that the tenant has no connector for.
    pub unconnected: Vec<String>,
}

/// The operations a reconciliation planned.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Reconciled {
    /// The workflow instances started.
    pub workflows: Vec<WorkflowId>,
    /// The operations, by area.
    pub operations: Vec<Operation>,
    /// Systems the person should be on that are not connected.
    pub unconnected: Vec<String>,
    /// Systems that could not be read, with why.
    pub unreadable: BTreeMap<String, String>,
}

/// A person as the API shows them.
#[derive(Debug, Clone, Serialize)]
pub struct PersonView {
    /// Their id.
    pub id: String,
    /// The stored version.
    pub version: u64,
    /// The person.
    #[serde(flatten)]
    pub person: Person,
}

/// Identity lifecycle with the engine: what the `App` calls.
pub struct IdentityService {
    /// The shared core.
    pub core: Arc<IdentityCore>,
    engine: Arc<Engine>,
}

impl std::fmt::Debug for IdentityService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("IdentityService").finish_non_exhaustive()
    }
}

fn key_of(parts: &[&str]) -> String {
    let mut hash = Sha256::new();
    for part in parts {
        hash.update(part.as_bytes());
        hash.update([0]);
    }
    hex::encode(&hash.finalize()[..16])
}

impl IdentityService {
    /// The service over `core`, starting workflows on `engine`.
    pub fn new(core: Arc<IdentityCore>, engine: Arc<Engine>) -> Self {
        Self { core, engine }
    }

    /// Applies one lifecycle event and reconciles the person.
    pub async fn ingest(
        &self,
        tenant: TenantId,
        event: LifecycleEvent,
        by: &Provenance,
    ) -> Result<Ingested, IdentityError> {
        event
            .validate()
            .map_err(|e| IdentityError::Invalid(e.to_string()))?;
        let core = &self.core;
        let sealer = core.sealer(tenant).await?;
        let pid = IdentityCore::person_id(&sealer, &event.person);
        let digest = event_digest(&event.id);
        let stored_event = StoredEvent {
            tenant_id: tenant,
            digest: digest.clone(),
            person_id: pid.clone(),
            occurred_at: event.occurred_at,
            received_at: core.now(),
            sealed: IdentityCore::seal(&sealer, &context("event", &hex::encode(&digest)), &event)?,
        };
        for _ in 0..8 {
            let current = core.person(tenant, &sealer, &pid).await?;
            let (version, person) = match current {
                None => (
                    1,
                    Person::new(&event).map_err(|e| IdentityError::Invalid(e.to_string()))?,
                ),
                Some((stored, mut person)) => {
                    if person.applies_in_order(&event) {
                        person.apply(&event);
                    } else {
                        person = self.replay(tenant, &sealer, &pid, &event).await?;
                    }
                    (stored.version + 1, person)
                }
            };
            let now = core.now();
            let row = StoredPerson {
                tenant_id: tenant,
                id: pid.clone(),
                status: person.status.as_str().to_owned(),
                version,
                updated_at: now,
                ends_on: person.ends_on(),
                sealed: IdentityCore::seal(&sealer, &context("person", &pid), &person)?,
            };
            let audit = by.record(
                Some(tenant),
                action::EVENT_APPLIED,
                &pid,
                json!({
                    "event": hex::encode(&digest[..16]),
                    "kind": event.kind.as_str(),
                    "source": event.source,
                    "status": person.status.as_str(),
                    "attributes": event.attributes.keys().collect::<Vec<_>>(),
                }),
            );
            match core
                .store
                .identity_record(Some(&stored_event), &row, &[audit])
                .await?
            {
                Recorded::Duplicate => {
                    let status = core
                        .store
                        .identity_person(tenant, &pid)
                        .await?
                        .map(|p| p.status)
                        .unwrap_or_default();
                    return Ok(Ingested {
                        person: pid,
                        status,
                        duplicate: true,
                        workflows: Vec::new(),
                        unconnected: Vec::new(),
                    });
                }
                Recorded::Stale => continue,
                Recorded::Written => {
                    let reconciled = self
                        .reconcile_person(tenant, &sealer, &pid, &person, &event.id, &by.actor)
                        .await?;
                    return Ok(Ingested {
                        person: pid,
                        status: person.status.as_str().to_owned(),
                        duplicate: false,
                        workflows: reconciled.workflows,
                        unconnected: reconciled.unconnected,
                    });
                }
            }
        }
        Err(IdentityError::Invalid(
            "the person changed too often while this event was applied; send it again".into(),
        ))
    }

    async fn replay(
        &self,
        tenant: TenantId,
        sealer: &TenantSealer,
        pid: &str,
        new: &LifecycleEvent,
    ) -> Result<Person, IdentityError> {
        let mut events: Vec<LifecycleEvent> = self
            .core
            .store
            .identity_events(tenant, pid)
            .await?
            .iter()
            .map(|e| {
                IdentityCore::open(
                    sealer,
                    &context("event", &hex::encode(&e.digest)),
                    &e.sealed,
                )
            })
            .collect::<Result<_, _>>()?;
        events.push(new.clone());
        Person::replay(&events)
            .map_err(|e| IdentityError::Invalid(e.to_string()))?
            .ok_or_else(|| IdentityError::NotFound(format!("person {pid}")))
    }

    /// Reconciles one person by id (after a policy change, an elevation,
    /// or on request).
    pub async fn reconcile(
        &self,
        tenant: TenantId,
        pid: &str,
        actor: &str,
    ) -> Result<Reconciled, IdentityError> {
        let sealer = self.core.sealer(tenant).await?;
        let (_, person) = self
            .core
            .person(tenant, &sealer, pid)
            .await?
            .ok_or_else(|| IdentityError::NotFound(format!("person {pid}")))?;
        let basis = format!("reconcile:{}", self.core.now().unix_timestamp_nanos());
        self.reconcile_person(tenant, &sealer, pid, &person, &basis, actor)
            .await
    }

    /// What a person should hold, and what the systems hold.
    pub async fn desired(
        &self,
        tenant: TenantId,
        sealer: &TenantSealer,
        pid: &str,
        person: &Person,
    ) -> Result<Desired, IdentityError> {
        let (_, _, policy) = self.core.policy(tenant, sealer).await?;
        let elevations = self.core.live_elevations(tenant, sealer, pid).await?;
        Ok(desired(person, &policy, &elevations, self.core.now()))
    }

    async fn reconcile_person(
        &self,
        tenant: TenantId,
        sealer: &TenantSealer,
        pid: &str,
        person: &Person,
        basis: &str,
        actor: &str,
    ) -> Result<Reconciled, IdentityError> {
        let core = &self.core;
        let mut out = Reconciled::default();
        if person.status == PersonStatus::Terminated {
            let started = self.start_revocation(tenant, sealer, pid, person).await?;
            let payload = json!({ "person": pid, "area": ProcessArea::Revocation, "leaver": true, "ops": [] });
            // One revocation workflow per termination.
            let dedup = format!("identity:revoke:{pid}:{}", started.unix_timestamp());
            out.workflows = self.submit(tenant, &dedup, payload, actor).await?;
            return Ok(out);
        }
        let want = self.desired(tenant, sealer, pid, person).await?;
        let systems = core.systems(tenant).await?;
        out.unconnected = want
            .systems
            .keys()
            .filter(|s| !systems.contains_key(*s))
            .cloned()
            .collect();
        let account = IdentityCore::account_ref(pid, person);
        for (name, held) in IdentityCore::holdings(&systems, &account).await {
            match held {
                Ok(held) => out.operations.extend(diff(
                    &name,
                    want.systems.get(&name),
                    held.as_ref().map(IdentityCore::held).as_ref(),
                )),
                Err(err) => {
                    out.unreadable.insert(name, err.to_string());
                }
            }
        }
        let mut by_area: BTreeMap<ProcessArea, Vec<&Operation>> = BTreeMap::new();
        for op in &out.operations {
            by_area.entry(op.area).or_default().push(op);
        }
        for (area, ops) in by_area {
            let ops_json = serde_json::to_value(&ops).unwrap_or(Value::Null);
            let dedup = format!(
                "identity:{}:{}",
                area.as_str(),
                key_of(&[pid, basis, &ops_json.to_string()])
            );
            let payload = json!({ "person": pid, "area": area, "leaver": false, "ops": ops_json });
            out.workflows
                .extend(self.submit(tenant, &dedup, payload, actor).await?);
        }
        if !out.unreadable.is_empty() {
            tracing::warn!(tenant = %tenant, person = pid, systems = ?out.unreadable.keys().collect::<Vec<_>>(), "systems unreadable during reconciliation");
        }
        Ok(out)
    }

    async fn submit(
        &self,
        tenant: TenantId,
        dedup: &str,
        payload: Value,
        actor: &str,
    ) -> Result<Vec<WorkflowId>, IdentityError> {
        let invalid = |e: gatehouse_core::DomainError| IdentityError::Invalid(e.to_string());
        let event = NewEvent {
            tenant_id: Some(tenant),
            source: EventSource::parse("identity").map_err(invalid)?,
            kind: EngineEventKind::parse(if payload.get("elevation").is_some() {
                ELEVATION_EVENT
            } else {
                OPERATIONS_EVENT
            })
            .map_err(invalid)?,
            dedup_key: DedupKey::parse(dedup).map_err(invalid)?,
            payload,
        };
        let submitted = self.engine.submit(event, actor).await.map_err(|e| {
            IdentityError::Systems(format!("starting the provisioning workflow: {e}"))
        })?;
        Ok(submitted.instances)
    }

    /// Opens (or keeps) the revocation record of a leaver; answers when it
    /// started.
    async fn start_revocation(
        &self,
        tenant: TenantId,
        sealer: &TenantSealer,
        pid: &str,
        person: &Person,
    ) -> Result<OffsetDateTime, IdentityError> {
        let core = &self.core;
        if let Some((stored, _)) = core.revocation(tenant, sealer, pid).await?
            && (stored.started_at >= person.status_since || stored.completed_at.is_none())
        {
            return Ok(stored.started_at);
        }
        let now = core.now();
        let deadline = now + core.config.revocation_deadline;
        let doc = RevocationDoc {
            person: person.key.clone(),
            remaining: Vec::new(),
            attempts: 0,
        };
        let row = StoredRevocation {
            tenant_id: tenant,
            person_id: pid.to_owned(),
            started_at: now,
            deadline_at: deadline,
            completed_at: None,
            escalated_at: None,
            sealed: IdentityCore::seal(sealer, &context("revocation", pid), &doc)?,
        };
        let audit = Provenance::system("identity lifecycle", now).record(
            Some(tenant),
            action::REVOCATION_STARTED,
            pid,
            json!({ "deadline": deadline.unix_timestamp() }),
        );
        core.store
            .identity_revocation_put(&row, None, &[audit])
            .await?;
        Ok(now)
    }

    /// A page of the tenant's people.
    pub async fn people(
        &self,
        tenant: TenantId,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<PersonView>, IdentityError> {
        let sealer = self.core.sealer(tenant).await?;
        self.core
            .store
            .identity_people(tenant, after, limit)
            .await?
            .into_iter()
            .map(|row| {
                let person = IdentityCore::open(&sealer, &context("person", &row.id), &row.sealed)?;
                Ok(PersonView {
                    id: row.id,
                    version: row.version,
                    person,
                })
            })
            .collect()
    }

    /// Every person of the tenant with their live elevations, read page by
    /// page.
    async fn everyone(
        &self,
        tenant: TenantId,
        sealer: &TenantSealer,
    ) -> Result<Vec<(PersonView, Vec<gatehouse_identity::Elevation>)>, IdentityError> {
        let mut out = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.people(tenant, after.as_deref(), 500).await?;
            let Some(last) = page.last() else { break };
            after = Some(last.id.clone());
            for view in page {
                let elevations = self.core.live_elevations(tenant, sealer, &view.id).await?;
                out.push((view, elevations));
            }
        }
        Ok(out)
    }

    /// One person, by id (`per_…`) or by key.
    pub async fn person(
        &self,
        tenant: TenantId,
        id_or_key: &str,
    ) -> Result<PersonView, IdentityError> {
        let sealer = self.core.sealer(tenant).await?;
        let pid = if id_or_key.starts_with("per_") {
            id_or_key.to_owned()
        } else {
            IdentityCore::person_id(&sealer, id_or_key)
        };
        let (row, person) = self
            .core
            .person(tenant, &sealer, &pid)
            .await?
            .ok_or_else(|| IdentityError::NotFound(format!("person {id_or_key}")))?;
        Ok(PersonView {
            id: row.id,
            version: row.version,
            person,
        })
    }

    /// The tenant's policy: version and text.
    pub async fn policy(&self, tenant: TenantId) -> Result<(u64, String), IdentityError> {
        let sealer = self.core.sealer(tenant).await?;
        let (version, text, _) = self.core.policy(tenant, &sealer).await?;
        Ok((version, text))
    }

    /// Who would gain and lose what if `text` became the policy.
    pub async fn preview(
        &self,
        tenant: TenantId,
        text: &str,
    ) -> Result<Vec<Impact>, IdentityError> {
        let after =
            Policy::parse(text).map_err(|e| IdentityError::Invalid(format!("policy: {e}")))?;
        let sealer = self.core.sealer(tenant).await?;
        let (_, _, before) = self.core.policy(tenant, &sealer).await?;
        let mut out = Vec::new();
        for (view, elevations) in self.everyone(tenant, &sealer).await? {
            out.extend(impact(
                [(&view.person, elevations.as_slice())],
                &before,
                &after,
                self.core.now(),
            ));
        }
        Ok(out)
    }

    /// Replaces the policy (naming the version it replaces) and reconciles
    /// everyone whose grants change; answers the impact.
    pub async fn set_policy(
        &self,
        tenant: TenantId,
        text: &str,
        expected_version: u64,
        by: &Provenance,
    ) -> Result<(u64, Vec<Impact>), IdentityError> {
        let impacts = self.preview(tenant, text).await?;
        let sealer = self.core.sealer(tenant).await?;
        let version = expected_version + 1;
        let row = StoredPolicy {
            tenant_id: tenant,
            version,
            updated_by: by.actor.clone(),
            updated_at: self.core.now(),
            sealed: IdentityCore::seal(&sealer, &context("policy", "current"), &text)?,
        };
        let audit = by.record(
            Some(tenant),
            action::POLICY_CHANGED,
            format!("policy v{version}"),
            json!({ "version": version, "people_affected": impacts.len() }),
        );
        if !self.core.store.identity_policy_put(&row, &[audit]).await? {
            return Err(IdentityError::Invalid(format!(
                "the policy is no longer at version {expected_version}: read it again and resubmit"
            )));
        }
        for person in &impacts {
            let pid = IdentityCore::person_id(&sealer, &person.person);
            self.reconcile(tenant, &pid, &by.actor).await?;
        }
        Ok((version, impacts))
    }

    /// Drift on every system of the tenant.
    pub async fn drift(&self, tenant: TenantId) -> Result<Vec<Drift>, IdentityError> {
        let sealer = self.core.sealer(tenant).await?;
        let (_, _, policy) = self.core.policy(tenant, &sealer).await?;
        let now = self.core.now();
        let mut people: BTreeMap<String, (PersonStatus, Desired)> = BTreeMap::new();
        for (view, elevations) in self.everyone(tenant, &sealer).await? {
            let want = desired(&view.person, &policy, &elevations, now);
            people.insert(view.id, (view.person.status, want));
        }
        let systems = self.core.systems(tenant).await?;
        let mut out = Vec::new();
        for (name, system) in &systems {
            let accounts =
                system
                    .directory
                    .accounts()
                    .await
                    .map_err(|error| IdentityError::System {
                        system: name.clone(),
                        error,
                    })?;
            let view: BTreeMap<String, (PersonStatus, Option<gatehouse_identity::SystemDesire>)> =
                people
                    .iter()
                    .map(|(id, (status, want))| {
                        (id.clone(), (*status, want.systems.get(name).cloned()))
                    })
                    .collect();
            let rows: Vec<_> = accounts
                .iter()
                .map(|h| {
                    (
                        h.account_id.clone(),
                        h.external_id.clone(),
                        h.user_name.clone(),
                        IdentityCore::held(h),
                    )
                })
                .collect();
            out.extend(drift(name, &view, &rows));
        }
        Ok(out)
    }

    /// Remediates drift: reconciles every known person with drift (their
    /// unapproved grants and leftover leaver access go through the
    /// engine). Orphans are reported, never removed automatically: nobody
    /// knows whose they are.
    pub async fn remediate(
        &self,
        tenant: TenantId,
        actor: &str,
    ) -> Result<(Vec<Drift>, Vec<WorkflowId>), IdentityError> {
        let found = self.drift(tenant).await?;
        let people: BTreeSet<&str> = found
            .iter()
            .filter_map(|d| match d {
                Drift::LeaverActive { person, .. } | Drift::Unapproved { person, .. } => {
                    Some(person.as_str())
                }
                Drift::Orphan { .. } => None,
            })
            .collect();
        let mut workflows = Vec::new();
        for pid in people {
            workflows.extend(self.reconcile(tenant, pid, actor).await?.workflows);
        }
        Ok((found, workflows))
    }

    /// Asks for just-in-time access: `elevation` (a policy id) for
    /// `duration_secs` (at most the elevation's maximum), with a
    /// justification. Starts the L2 workflow that grants it once someone
    /// other than the requester approves, and ends it at expiry.
    pub async fn request_elevation(
        &self,
        tenant: TenantId,
        person_key: &str,
        elevation: &str,
        duration_secs: u64,
        justification: &str,
        by: &Provenance,
    ) -> Result<(String, Vec<WorkflowId>), IdentityError> {
        if justification.trim().len() < 10 {
            return Err(IdentityError::Invalid(
                "a justification of at least 10 characters is required".into(),
            ));
        }
        let sealer = self.core.sealer(tenant).await?;
        let (_, _, policy) = self.core.policy(tenant, &sealer).await?;
        let spec = policy.elevation(elevation).ok_or_else(|| {
            IdentityError::NotFound(format!("elevation `{elevation}` in the tenant's policy"))
        })?;
        let max = spec.max().as_secs();
        if duration_secs == 0 || duration_secs > max {
            return Err(IdentityError::Invalid(format!(
                "duration must be between 1 s and the elevation's maximum of {max} s"
            )));
        }
        let pid = IdentityCore::person_id(&sealer, person_key);
        let (_, person) = self
            .core
            .person(tenant, &sealer, &pid)
            .await?
            .ok_or_else(|| IdentityError::NotFound(format!("person {person_key}")))?;
        if person.status != PersonStatus::Active {
            return Err(IdentityError::Invalid(format!(
                "{person_key} is {}: only active people can be elevated",
                person.status.as_str()
            )));
        }
        let entitlement = spec.entitlement().ok_or_else(|| {
            IdentityError::Invalid(format!("elevation `{elevation}` names no entitlement"))
        })?;
        let now = self.core.now();
        let id = format!(
            "jit_{}",
            key_of(&[&pid, elevation, &now.unix_timestamp_nanos().to_string()])
        );
        let doc = ElevationDoc {
            person: person_key.to_owned(),
            elevation: elevation.to_owned(),
            system: spec.system.clone(),
            entitlement,
            duration_secs,
            justification: justification.to_owned(),
            workflow: None,
            ended_by: None,
        };
        let row = StoredElevation {
            tenant_id: tenant,
            id: id.clone(),
            person_id: pid.clone(),
            state: "requested".into(),
            requested_by: by.actor.clone(),
            created_at: now,
            expires_at: None,
            ended_at: None,
            sealed: IdentityCore::seal(&sealer, &context("elevation", &id), &doc)?,
        };
        let audit = by.record(
            Some(tenant),
            action::ELEVATION_REQUESTED,
            &id,
            json!({ "person": pid, "elevation": elevation, "system": spec.system, "duration_secs": duration_secs }),
        );
        self.core
            .store
            .identity_elevation_put(&row, &[audit])
            .await?;
        let payload = json!({
            "elevation": id,
            "person": pid,
            "system": spec.system,
            "duration_secs": duration_secs,
        });
        let workflows = self
            .submit(
                tenant,
                &format!("identity:elevation:{id}"),
                payload,
                &by.actor,
            )
            .await?;
        Ok((id, workflows))
    }

    /// Ends an elevation before it expires: marks it ended and removes the
    /// entitlement (L0, as any revocation).
    pub async fn end_elevation(
        &self,
        tenant: TenantId,
        id: &str,
        by: &Provenance,
    ) -> Result<Vec<WorkflowId>, IdentityError> {
        let ended = super::actions::end_elevation(&self.core, tenant, id, &by.actor).await?;
        match ended {
            Some(pid) => Ok(self.reconcile(tenant, &pid, &by.actor).await?.workflows),
            None => Ok(Vec::new()),
        }
    }

    /// People of every tenant whose contract or employment end date has
    /// passed and who are not terminated yet: each gets a `contract_end`
    /// event (its id is derived from the date, so a second scan adds
    /// nothing). Answers how many were ended.
    pub async fn end_contracts(&self, today: &str) -> Result<usize, IdentityError> {
        let due = self.core.store.identity_people_ended(today, 500).await?;
        let mut ended = 0;
        for (tenant, pid) in due {
            let sealer = self.core.sealer(tenant).await?;
            let Some((_, person)) = self.core.person(tenant, &sealer, &pid).await? else {
                continue;
            };
            let Some(date) = person.contract_ended(today) else {
                continue;
            };
            let event = LifecycleEvent {
                id: format!("contract-end:{}:{date}", person.key),
                person: person.key.clone(),
                kind: gatehouse_identity::EventKind::ContractEnd,
                source: "schedule".into(),
                occurred_at: self.core.now(),
                attributes: BTreeMap::new(),
                person_kind: None,
                roles: None,
            };
            let by = Provenance::system("contract end date reached", self.core.now());
            if !self.ingest(tenant, event, &by).await?.duplicate {
                ended += 1;
            }
        }
        Ok(ended)
    }

    /// Turns a user written to the tenant's SCIM endpoint into a lifecycle
    /// event (see [`super::scim_push`]) and applies it. Answers `None` when
    /// the user names no key.
    pub async fn scim_written(
        &self,
        tenant: TenantId,
        user: &Value,
        deleted: bool,
    ) -> Result<Option<Ingested>, IdentityError> {
        let Some(key) = super::scim_push::person_key(user) else {
            return Ok(None);
        };
        let active = match self.person(tenant, &key).await {
            Ok(view) => Some(view.person.status == PersonStatus::Active),
            Err(IdentityError::NotFound(_)) => None,
            Err(other) => return Err(other),
        };
        let now = self.core.now();
        let Some(event) = super::scim_push::event(user, deleted, active, now) else {
            return Ok(None);
        };
        if deleted && active.is_none() {
            // A user Gatehouse never knew as a person: nothing to revoke.
            return Ok(None);
        }
        let by = Provenance::system("scim push", now);
        self.ingest(tenant, event, &by).await.map(Some)
    }

    /// The tenant's revocations: who, when it started, when it completed,
    /// and what remains.
    pub async fn revocations(
        &self,
        tenant: TenantId,
    ) -> Result<Vec<(StoredRevocation, RevocationDoc)>, IdentityError> {
        let sealer = self.core.sealer(tenant).await?;
        self.core
            .store
            .identity_revocations(tenant)
            .await?
            .into_iter()
            .map(|r| {
                let doc =
                    IdentityCore::open(&sealer, &context("revocation", &r.person_id), &r.sealed)?;
                Ok((r, doc))
            })
            .collect()
    }
}

/// Today's date (`YYYY-MM-DD`, UTC) at `now`.
pub fn date_of(now: OffsetDateTime) -> String {
    let d = now.date();
    format!("{:04}-{:02}-{:02}", d.year(), u8::from(d.month()), d.day())
}

/// Ends contracts whose end date has passed, every `every`, until
/// `shutdown` completes.
pub async fn run_contract_ends(
    service: Arc<IdentityService>,
    every: std::time::Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        let today = date_of(service.core.now());
        match service.end_contracts(&today).await {
            Ok(0) => {}
            Ok(ended) => tracing::info!(ended, "contracts ended by their end date"),
            Err(err) => tracing::warn!(%err, "contract-end sweep failed"),
        }
        tokio::select! {
            () = &mut shutdown => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}
