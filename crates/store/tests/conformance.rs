//! The storage conformance suite: every case runs on SQLite, and on
//! PostgreSQL when `GATEHOUSE_TEST_DATABASE_URL` is set (`.ci/run` sets it).
//! Each case gets a database (or schema) of its own.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests fail loudly"
)]

use std::sync::Arc;

use gatehouse_core::approval::{
    Approval, ApprovalRequest, ApprovalState, Decision, HumanTask, TaskState, Verdict, plan,
};
use gatehouse_core::clock::{Clock, FakeClock};
use gatehouse_core::id::{ApprovalId, EventId, HumanTaskId, TenantId, WorkflowId};
use gatehouse_core::keys::{TenantKey, WrappedKey};
use gatehouse_core::operator::{ApiToken, Operator, OperatorName, Role};
use gatehouse_core::secret::SecretName;
use gatehouse_core::store::{
    ApprovalQuery, InstanceQuery, Store, StoreError, TaskQuery, TenantQuery,
};
use gatehouse_core::tenant::{DisplayName, Region, Tenant, TenantAction, TenantSlug, TenantState};
use gatehouse_core::workflow::{
    DedupKey, EventKind, EventSource, HistoryEntry, InboundEvent, Instance, InstanceState,
    Progress, StepRun, StepState,
};
use serde_json::json;
use time::{Duration, OffsetDateTime};

struct Case {
    store: Arc<dyn Store>,
    clock: FakeClock,
}

impl Case {
    fn tenant(&self, slug: &str, state: TenantState) -> (Tenant, TenantKey) {
        let now = self.clock.now();
        self.clock.advance(Duration::milliseconds(1));
        let tenant = Tenant::new(
            TenantSlug::parse(slug).unwrap(),
            DisplayName::parse(&format!("{slug} Ltd")).unwrap(),
            Region::parse("eu").unwrap(),
            state,
            now,
        )
        .unwrap();
        let key = TenantKey {
            tenant_id: tenant.id,
            wrapped: WrappedKey {
                kek_id: "local:1".into(),
                ciphertext: slug.as_bytes().to_vec(),
            },
            created_at: now,
            rewrapped_at: None,
        };
        (tenant, key)
    }

    async fn insert(&self, slug: &str) -> Tenant {
        let (tenant, key) = self.tenant(slug, TenantState::Active);
        self.store.insert_tenant(&tenant, &key, &[]).await.unwrap();
        tenant
    }

    fn operator(&self, name: &str, role: Role) -> Operator {
        Operator::new(
            OperatorName::parse(name).unwrap(),
            DisplayName::parse(name).unwrap(),
            role,
            self.clock.now(),
        )
    }
}

/// Workflow engine values, built directly.
impl Case {
    fn event(&self, source: &str, key: &str, tenant: Option<TenantId>) -> InboundEvent {
        let now = self.clock.now();
        self.clock.advance(Duration::milliseconds(1));
        InboundEvent {
            id: EventId::generate(now),
            tenant_id: tenant,
            source: EventSource::parse(source).unwrap(),
            kind: EventKind::parse("psa.opportunity.won").unwrap(),
            dedup_key: DedupKey::parse(key).unwrap(),
            payload: json!({"key": key, "amount": 12.5, "names": ["Zoë", "O'Brien"], "extra": {"none": null}}),
            received_at: now,
            outcome: None,
        }
    }

    /// A new (version 1) running instance, due now.
    fn instance(&self, tenant: Option<TenantId>, template: &str) -> Instance {
        let now = self.clock.now();
        self.clock.advance(Duration::milliseconds(1));
        Instance {
            id: WorkflowId::generate(now),
            tenant_id: tenant,
            template: template.to_owned(),
            template_version: 3,
            definition: json!({"steps": [{"id": "a-notify"}, {"id": "b-provision"}]}),
            state: InstanceState::Running,
            context: json!({"trigger": {"deal": 42}}),
            started_by: None,
            created_by: "system".to_owned(),
            created_at: now,
            updated_at: now,
            next_run_at: Some(now),
            version: 1,
        }
    }

    /// The progress that creates `instance`: its steps, pending, and its first history entry.
    fn start(&self, instance: &Instance, steps: &[&str]) -> Progress {
        Progress {
            instance: instance.clone(),
            steps: steps
                .iter()
                .map(|s| StepRun::pending(instance.id, s, instance.created_at))
                .collect(),
            history: vec![self.entry(instance.id, 1, "instance.started", None)],
            approvals: Vec::new(),
            tasks: Vec::new(),
            notifications: Vec::new(),
        }
    }

    fn entry(
        &self,
        instance: WorkflowId,
        seq: i64,
        kind: &str,
        step: Option<&str>,
    ) -> HistoryEntry {
        HistoryEntry {
            instance_id: instance,
            seq,
            at: self.clock.now(),
            kind: kind.to_owned(),
            step_id: step.map(str::to_owned),
            actor: "system".to_owned(),
            detail: json!({"seq": seq, "why": "test"}),
        }
    }

    /// `instance`'s next version, changed now.
    fn next(&self, instance: &Instance) -> Instance {
        self.clock.advance(Duration::milliseconds(1));
        Instance {
            version: instance.version + 1,
            updated_at: self.clock.now(),
            ..instance.clone()
        }
    }

    /// A change of `instance` with no step or history changes.
    fn bare(instance: &Instance) -> Progress {
        Progress {
            instance: instance.clone(),
            steps: vec![],
            history: vec![],
            approvals: Vec::new(),
            tasks: Vec::new(),
            notifications: Vec::new(),
        }
    }

    async fn steps_of(&self, id: WorkflowId) -> Vec<StepRun> {
        self.store.get_instance(id).await.unwrap().1
    }

    async fn version_of(&self, id: WorkflowId) -> i64 {
        self.store.get_instance(id).await.unwrap().0.version
    }
}

/// Gates: approvals and human tasks, built directly.
impl Case {
    /// An operator, stored.
    async fn staff(&self, name: &str, role: Role) -> Operator {
        let operator = self.operator(name, role);
        self.store.insert_operator(&operator, &[]).await.unwrap();
        operator
    }

    /// A pending approval of `step` of `instance`, for a lead, escalating
    /// to an admin at `deadline`.
    fn approval_for(
        &self,
        instance: &Instance,
        step: &str,
        required: u32,
        initiated_by: &str,
        deadline: Option<OffsetDateTime>,
    ) -> Approval {
        let now = self.clock.now();
        self.clock.advance(Duration::milliseconds(1));
        Approval::open(
            ApprovalRequest {
                instance_id: instance.id,
                step_id: step.to_owned(),
                tenant_id: instance.tenant_id,
                plan: plan(
                    "entra.grant_role",
                    json!({"role": "Global Administrator", "people": ["Zoë", "O'Brien"], "days": 1.5}),
                ),
                required,
                approver_role: Role::Lead,
                initiated_by: initiated_by.to_owned(),
                prepared_by: "system".to_owned(),
                deadline,
                escalate_to: deadline.map(|_| Role::Admin),
            },
            now,
        )
        .unwrap()
    }

    /// An open human task of `step` of `instance`.
    fn task_for(&self, instance: &Instance, step: &str) -> HumanTask {
        let now = self.clock.now();
        self.clock.advance(Duration::milliseconds(1));
        HumanTask::open(
            instance.id,
            step,
            instance.tenant_id,
            json!({"risk": "high", "blast_radius": {"tenants": 200}, "reversibility": "manual", "history": []}),
            now,
        )
        .unwrap()
    }

    /// A new instance waiting at step `b-grant` for an approval needing
    /// `required` approvals, stored with it; due in an hour.
    async fn waiting(
        &self,
        tenant: Option<TenantId>,
        required: u32,
        initiated_by: &str,
    ) -> (Instance, Approval) {
        let deadline = self.clock.now() + Duration::hours(1);
        self.waiting_until(tenant, required, initiated_by, Some(deadline))
            .await
    }

    async fn waiting_until(
        &self,
        tenant: Option<TenantId>,
        required: u32,
        initiated_by: &str,
        deadline: Option<OffsetDateTime>,
    ) -> (Instance, Approval) {
        let mut instance = self.instance(tenant, "grant");
        instance.state = InstanceState::Waiting;
        instance.next_run_at = None;
        instance.created_by = initiated_by.to_owned();
        let approval = self.approval_for(&instance, "b-grant", required, initiated_by, deadline);
        let mut start = self.start(&instance, &["a-plan", "b-grant"]);
        start.approvals.push(approval.clone());
        self.store.commit_progress(&[start]).await.unwrap();
        (instance, approval)
    }

    /// `who`'s decision on `approval`, now.
    fn decision(&self, approval: &Approval, who: &Operator, verdict: Verdict) -> Decision {
        let params =
            (verdict == Verdict::Modify).then(|| json!({"role": "Helpdesk Administrator"}));
        let at = self.clock.now();
        self.clock.advance(Duration::milliseconds(1));
        Decision::new(
            approval.id,
            who.id,
            verdict,
            "checked the plan against the ticket",
            params,
            at,
        )
        .unwrap()
    }

    /// `approval` as the store has it, with `who`'s decision applied.
    async fn decided(
        &self,
        id: ApprovalId,
        who: &Operator,
        verdict: Verdict,
    ) -> (Approval, Decision) {
        let mut approval = self.store.get_approval(id).await.unwrap();
        let decision = self.decision(&approval, who, verdict);
        approval.may_decide(who, decision.at).unwrap();
        approval.apply(decision.clone());
        (approval, decision)
    }

    /// The progress that moves `instance` (at version `version`) on after
    /// its gate: running again, with a history entry.
    fn resume(&self, instance: &Instance, seq: i64) -> Progress {
        let mut next = self.next(instance);
        next.state = InstanceState::Running;
        next.next_run_at = Some(self.clock.now());
        Progress {
            instance: next,
            steps: vec![],
            history: vec![self.entry(instance.id, seq, "gate.passed", Some("b-grant"))],
            approvals: Vec::new(),
            tasks: Vec::new(),
            notifications: Vec::new(),
        }
    }
}

fn name(text: &str) -> SecretName {
    SecretName::parse(text).unwrap()
}

mod cases {
    pub use super::gate_setting_cases::*;
    pub use super::metrics_cases::*;
    pub use super::provenance_cases::*;
    use super::*;

    pub async fn migrations_are_current_and_idempotent(c: &Case) {
        let status = c.store.schema_status().await.unwrap();
        assert!(status.is_current(), "{status:?}");
        assert!(status.known >= 1);
        c.store.migrate().await.unwrap();
        assert_eq!(c.store.schema_status().await.unwrap(), status);
        c.store.ping().await.unwrap();
    }

    pub async fn tenants_round_trip(c: &Case) {
        let tenant = c.insert("acme").await;
        assert_eq!(c.store.get_tenant(tenant.id).await.unwrap(), tenant);
        assert_eq!(
            c.store.find_tenant_by_slug(&tenant.slug).await.unwrap(),
            tenant
        );
        let key = c.store.get_tenant_key(tenant.id).await.unwrap();
        assert_eq!(key.wrapped.ciphertext, b"acme");
        let missing = TenantId::generate(c.clock.now());
        assert!(matches!(
            c.store.get_tenant(missing).await,
            Err(StoreError::NotFound("tenant"))
        ));
    }

    pub async fn live_slugs_are_unique(c: &Case) {
        c.insert("acme").await;
        let (dup, key) = c.tenant("acme", TenantState::Provisioning);
        let err = c.store.insert_tenant(&dup, &key, &[]).await.unwrap_err();
        assert!(
            matches!(&err, StoreError::Conflict(m) if m.contains("acme")),
            "{err:?}"
        );
        // The failed insert left nothing behind: not the tenant, not its key.
        assert!(matches!(
            c.store.get_tenant(dup.id).await,
            Err(StoreError::NotFound(_))
        ));
        assert!(matches!(
            c.store.get_tenant_key(dup.id).await,
            Err(StoreError::NotFound(_))
        ));
    }

    pub async fn a_deleted_tenants_slug_can_be_reused(c: &Case) {
        let mut old = c.insert("acme").await;
        old.state = old.state.apply(TenantAction::Suspend).unwrap();
        old.version += 1;
        c.store.update_tenant(&old, &[]).await.unwrap();
        old.state = TenantState::Deleted;
        old.version += 1;
        c.store.delete_tenant(&old, &[]).await.unwrap();
        let new = c.insert("acme").await;
        assert_eq!(
            c.store.find_tenant_by_slug(&new.slug).await.unwrap().id,
            new.id
        );
        assert_eq!(
            c.store.get_tenant(old.id).await.unwrap().state,
            TenantState::Deleted
        );
    }

    pub async fn tenants_list_in_pages_and_by_state(c: &Case) {
        let mut ids = Vec::new();
        for i in 0..7 {
            ids.push(c.insert(&format!("tenant-{i}")).await.id);
        }
        let (suspended, key) = c.tenant("quiet", TenantState::Provisioning);
        c.store.insert_tenant(&suspended, &key, &[]).await.unwrap();

        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = c
                .store
                .list_tenants(&TenantQuery {
                    within: None,
                    state: Some(TenantState::Active),
                    after,
                    limit: 3,
                })
                .await
                .unwrap();
            if page.is_empty() {
                break;
            }
            assert!(page.len() <= 3);
            after = page.last().map(|t| t.id);
            seen.extend(page.into_iter().map(|t| t.id));
        }
        assert_eq!(
            seen, ids,
            "pages cover every active tenant once, in creation order"
        );

        let all = c
            .store
            .list_tenants(&TenantQuery {
                within: None,
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(all.len(), 8);
        let provisioning = c
            .store
            .list_tenants(&TenantQuery {
                within: None,
                state: Some(TenantState::Provisioning),
                limit: 100,
                after: None,
            })
            .await
            .unwrap();
        assert_eq!(
            provisioning.iter().map(|t| t.id).collect::<Vec<_>>(),
            vec![suspended.id]
        );
    }

    pub async fn updates_detect_lost_writes(c: &Case) {
        let tenant = c.insert("acme").await;
        let mut first = tenant.clone();
        first.display_name = DisplayName::parse("Acme One").unwrap();
        first.version += 1;
        c.store.update_tenant(&first, &[]).await.unwrap();

        let mut second = tenant.clone();
        second.display_name = DisplayName::parse("Acme Two").unwrap();
        second.version += 1;
        assert!(matches!(
            c.store.update_tenant(&second, &[]).await,
            Err(StoreError::Stale("tenant"))
        ));
        assert_eq!(
            c.store
                .get_tenant(tenant.id)
                .await
                .unwrap()
                .display_name
                .as_str(),
            "Acme One"
        );

        let mut ghost = c.tenant("ghost", TenantState::Active).0;
        ghost.version += 1;
        assert!(matches!(
            c.store.update_tenant(&ghost, &[]).await,
            Err(StoreError::NotFound("tenant"))
        ));
    }

    pub async fn deleting_a_tenant_shreds_its_key_and_secrets(c: &Case) {
        let mut doomed = c.insert("doomed").await;
        let kept = c.insert("kept").await;
        for t in [&doomed, &kept] {
            c.store
                .put_secret(t.id, &name("psa.api-key"), b"sealed", c.clock.now(), &[])
                .await
                .unwrap();
        }
        doomed.state = TenantState::Deleted;
        doomed.version += 1;
        c.store.delete_tenant(&doomed, &[]).await.unwrap();

        assert!(matches!(
            c.store.get_tenant_key(doomed.id).await,
            Err(StoreError::NotFound(_))
        ));
        assert!(c.store.list_secrets(doomed.id).await.unwrap().is_empty());
        assert_eq!(
            c.store.get_tenant(doomed.id).await.unwrap().state,
            TenantState::Deleted
        );
        assert!(matches!(
            c.store.find_tenant_by_slug(&doomed.slug).await,
            Err(StoreError::NotFound(_))
        ));
        // A write that arrives after the shredding (another node, a slow
        // request) is refused: nothing is left behind under a destroyed key.
        assert!(matches!(
            c.store
                .put_secret(
                    doomed.id,
                    &name("late.write"),
                    b"sealed",
                    c.clock.now(),
                    &[]
                )
                .await,
            Err(StoreError::NotFound("tenant key"))
        ));
        assert!(c.store.list_secrets(doomed.id).await.unwrap().is_empty());
        // The other tenant is untouched.
        assert!(c.store.get_tenant_key(kept.id).await.is_ok());
        assert_eq!(c.store.list_secrets(kept.id).await.unwrap().len(), 1);
        // A stale delete is refused.
        let mut again = doomed.clone();
        again.version += 1;
        assert!(matches!(
            c.store.delete_tenant(&doomed, &[]).await,
            Err(StoreError::Stale(_))
        ));
    }

    pub async fn keys_list_in_pages_and_rewrap_only_from_the_expected_kek(c: &Case) {
        let mut ids = Vec::new();
        for i in 0..5 {
            ids.push(c.insert(&format!("tenant-{i}")).await.id);
        }
        let first = c.store.list_tenant_keys(None, 3).await.unwrap();
        let rest = c
            .store
            .list_tenant_keys(first.last().map(|k| k.tenant_id), 3)
            .await
            .unwrap();
        let listed: Vec<_> = first.iter().chain(&rest).map(|k| k.tenant_id).collect();
        assert_eq!(listed, ids);

        let new = WrappedKey {
            kek_id: "local:2".into(),
            ciphertext: vec![9; 40],
        };
        let at = c.clock.now();
        c.store
            .rewrap_tenant_key(ids[0], "local:1", &new, at, &[])
            .await
            .unwrap();
        let key = c.store.get_tenant_key(ids[0]).await.unwrap();
        assert_eq!((key.wrapped, key.rewrapped_at), (new.clone(), Some(at)));
        // A second rotation that read the old KEK loses the race, loudly.
        assert!(matches!(
            c.store
                .rewrap_tenant_key(ids[0], "local:1", &new, at, &[])
                .await,
            Err(StoreError::Stale("tenant key"))
        ));
    }

    pub async fn secrets_are_scoped_to_their_tenant(c: &Case) {
        let a = c.insert("tenant-a").await;
        let b = c.insert("tenant-b").await;
        let t0 = c.clock.now();
        let meta = c
            .store
            .put_secret(a.id, &name("graph.client-secret"), b"one", t0, &[])
            .await
            .unwrap();
        assert_eq!(
            (meta.version, meta.created_at, meta.updated_at),
            (1, t0, t0)
        );
        c.clock.advance(Duration::seconds(5));
        let t1 = c.clock.now();
        let meta = c
            .store
            .put_secret(a.id, &name("graph.client-secret"), b"two", t1, &[])
            .await
            .unwrap();
        assert_eq!(
            (meta.version, meta.created_at, meta.updated_at),
            (2, t0, t1)
        );
        assert_eq!(
            c.store
                .get_secret(a.id, &name("graph.client-secret"))
                .await
                .unwrap()
                .sealed,
            b"two"
        );

        // Tenant B sees none of tenant A's secrets, by name or by listing.
        assert!(matches!(
            c.store.get_secret(b.id, &name("graph.client-secret")).await,
            Err(StoreError::NotFound("secret"))
        ));
        assert!(c.store.list_secrets(b.id).await.unwrap().is_empty());
        assert!(matches!(
            c.store
                .delete_secret(b.id, &name("graph.client-secret"), &[])
                .await,
            Err(StoreError::NotFound(_))
        ));

        c.store
            .put_secret(a.id, &name("autotask.secret"), b"x", t1, &[])
            .await
            .unwrap();
        let names: Vec<_> = c
            .store
            .list_secrets(a.id)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.name)
            .collect();
        assert_eq!(
            names,
            vec![name("autotask.secret"), name("graph.client-secret")]
        );
        c.store
            .delete_secret(a.id, &name("autotask.secret"), &[])
            .await
            .unwrap();
        assert_eq!(c.store.list_secrets(a.id).await.unwrap().len(), 1);
    }

    pub async fn bootstrap_happens_once(c: &Case) {
        let first = c.operator("admin", Role::Admin);
        let (token, secret) = ApiToken::issue(first.id, "bootstrap", None, c.clock.now()).unwrap();
        assert!(
            c.store
                .bootstrap_operator(&first, &token, &[])
                .await
                .unwrap()
        );

        let second = c.operator("admin2", Role::Admin);
        let (token2, _) = ApiToken::issue(second.id, "bootstrap", None, c.clock.now()).unwrap();
        assert!(
            !c.store
                .bootstrap_operator(&second, &token2, &[])
                .await
                .unwrap()
        );
        // The losing bootstrap left nothing behind.
        assert_eq!(c.store.list_operators().await.unwrap(), vec![first.clone()]);

        let (found, owner) = c.store.find_token(&secret.hash()).await.unwrap();
        assert_eq!((found, owner), (token, first));
        assert!(matches!(
            c.store.find_token(&token2.hash).await,
            Err(StoreError::NotFound("token"))
        ));
    }

    pub async fn operators_and_tokens(c: &Case) {
        let lead = c.operator("lea", Role::Lead);
        c.store.insert_operator(&lead, &[]).await.unwrap();
        let dup = c.operator("lea", Role::Auditor);
        assert!(matches!(
            c.store.insert_operator(&dup, &[]).await,
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(
            c.store.find_operator_by_name(&lead.name).await.unwrap(),
            lead
        );
        assert_eq!(c.store.get_operator(lead.id).await.unwrap(), lead);

        let now = c.clock.now();
        let (t1, _) =
            ApiToken::issue(lead.id, "laptop", Some(now + Duration::days(30)), now).unwrap();
        c.clock.advance(Duration::seconds(1));
        let (t2, s2) = ApiToken::issue(lead.id, "ci", None, c.clock.now()).unwrap();
        c.store.insert_token(&t1, &[]).await.unwrap();
        c.store.insert_token(&t2, &[]).await.unwrap();
        let listed: Vec<_> = c
            .store
            .list_tokens(lead.id)
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.id)
            .collect();
        assert_eq!(listed, vec![t2.id, t1.id], "newest first");
        assert_eq!(c.store.get_token(t1.id).await.unwrap(), t1);

        let revoked_at = c.clock.now();
        c.store.revoke_token(t2.id, revoked_at, &[]).await.unwrap();
        c.clock.advance(Duration::hours(1));
        c.store
            .revoke_token(t2.id, c.clock.now(), &[])
            .await
            .unwrap();
        let (t2_now, _) = c.store.find_token(&s2.hash()).await.unwrap();
        assert_eq!(
            t2_now.revoked_at,
            Some(revoked_at),
            "the first revocation time is kept"
        );

        c.store
            .set_operator_disabled(lead.id, true, &[])
            .await
            .unwrap();
        let (_, owner) = c.store.find_token(&t1.hash).await.unwrap();
        assert!(owner.disabled);
    }

    // ---- The workflow engine's store -------------------------------------

    /// One transaction stores a new event, its outcome and the instances it
    /// starts; a duplicate writes nothing and gets the original back.
    pub async fn submitting_an_event_starts_its_instances_once(c: &Case) {
        let mut first = c.event("api", "deal-9", None);
        let mut instance = c.instance(None, "onboarding");
        instance.started_by = Some(first.id);
        first.outcome = Some(json!({ "instances": [instance.id] }));
        let (stored, new) = c
            .store
            .submit_event(&first, &[c.start(&instance, &["a-notify"])])
            .await
            .unwrap();
        assert!(new);
        assert_eq!(stored, first);
        assert_eq!(c.store.get_event(first.id).await.unwrap(), first);
        let (read, steps) = c.store.get_instance(instance.id).await.unwrap();
        assert_eq!((read.id, steps.len()), (instance.id, 1));

        let mut again = c.event("api", "deal-9", None);
        let mut other = c.instance(None, "onboarding");
        other.started_by = Some(again.id);
        again.outcome = Some(json!({ "instances": [other.id] }));
        let (stored, new) = c
            .store
            .submit_event(&again, &[c.start(&other, &["a-notify"])])
            .await
            .unwrap();
        assert!(!new);
        assert_eq!(stored, first, "the original, with its outcome");
        assert!(
            matches!(
                c.store.get_instance(other.id).await,
                Err(StoreError::NotFound(_))
            ),
            "nothing written"
        );
        assert!(matches!(
            c.store.get_event(again.id).await,
            Err(StoreError::NotFound(_))
        ));

        // A failing instance write leaves no event behind either.
        let mut broken = c.event("api", "deal-10", None);
        let mut bad = c.instance(None, "onboarding");
        bad.version = 2;
        broken.outcome = Some(json!({ "instances": [bad.id] }));
        assert!(
            c.store
                .submit_event(&broken, &[c.start(&bad, &[])])
                .await
                .is_err()
        );
        assert!(matches!(
            c.store.get_event(broken.id).await,
            Err(StoreError::NotFound(_))
        ));
    }

    pub async fn submitting_a_batch_of_events_commits_them_together(c: &Case) {
        let tenant = c.insert("acme").await;
        let earlier = c.event("api", "deal-0", None);
        c.store.record_event(&earlier).await.unwrap();

        let mut items = Vec::new();
        let mut instances = Vec::new();
        for key in ["deal-1", "deal-2", "deal-1", "deal-0"] {
            let mut event = c.event("api", key, Some(tenant.id));
            let mut instance = c.instance(Some(tenant.id), "onboarding");
            instance.started_by = Some(event.id);
            event.outcome = Some(json!({ "instances": [instance.id] }));
            instances.push(instance.id);
            items.push((event, vec![c.start(&instance, &["a-notify"])]));
        }
        let answers = c.store.submit_events(&items).await.unwrap();
        let new: Vec<bool> = answers.iter().map(|(_, new)| *new).collect();
        assert_eq!(new, [true, true, false, false]);
        assert_eq!(answers[0].0, items[0].0);
        assert_eq!(answers[1].0, items[1].0);
        assert_eq!(
            answers[2].0, items[0].0,
            "a duplicate inside the batch gets the first"
        );
        assert_eq!(
            answers[3].0, earlier,
            "a duplicate of a stored event gets the stored one"
        );
        for (id, exists) in instances.iter().zip([true, true, false, false]) {
            assert_eq!(c.store.get_instance(*id).await.is_ok(), exists);
        }

        // One bad item (an unknown tenant) writes nothing at all.
        let ghost = TenantId::generate(c.clock.now());
        let good = c.event("api", "deal-3", None);
        let bad = c.event("api", "deal-4", Some(ghost));
        let result = c
            .store
            .submit_events(&[(good.clone(), vec![]), (bad.clone(), vec![])])
            .await;
        assert!(matches!(result, Err(StoreError::NotFound(_))), "{result:?}");
        for id in [good.id, bad.id] {
            assert!(matches!(
                c.store.get_event(id).await,
                Err(StoreError::NotFound(_))
            ));
        }
        assert!(c.store.submit_events(&[]).await.unwrap().is_empty());
    }

    pub async fn due_instances_are_claimed_with_leases(c: &Case) {
        let t0 = c.clock.now();
        let mut due = Vec::new();
        let mut batch = Vec::new();
        for n in 0..5 {
            let mut i = c.instance(None, "onboard");
            i.next_run_at = Some(t0 + Duration::milliseconds(n));
            due.push(i.id);
            batch.push(c.start(&i, &[]));
        }
        let mut later = c.instance(None, "onboard");
        later.next_run_at = Some(t0 + Duration::hours(1));
        batch.push(c.start(&later, &[]));
        c.store.commit_progress(&batch).await.unwrap();

        let now = t0 + Duration::seconds(1);
        let lease = now + Duration::seconds(30);
        let ids = |claimed: Vec<(WorkflowId, i64)>| -> Vec<WorkflowId> {
            assert!(claimed.iter().all(|(_, version)| *version == 1));
            claimed.into_iter().map(|(id, _)| id).collect()
        };
        let a = ids(c.store.claim_due("node-a", now, lease, 3).await.unwrap());
        assert_eq!(a, due[..3], "earliest first");
        let b = ids(c.store.claim_due("node-b", now, lease, 10).await.unwrap());
        assert_eq!(b, due[3..], "another node's live leases are skipped");
        // A node takes its own leases again (a restart under the same name).
        let again = ids(c.store.claim_due("node-a", now, lease, 10).await.unwrap());
        assert_eq!(again, due[..3]);
        // Once a lease has expired, anyone may take the instance.
        let after = lease + Duration::milliseconds(1);
        let c_claims = ids(c
            .store
            .claim_due("node-c", after, after + Duration::seconds(30), 10)
            .await
            .unwrap());
        assert_eq!(
            c_claims, due,
            "every lease has expired; the later instance is not due"
        );
        // A released lease frees the instance at once.
        assert_eq!(c.store.release_leases("node-c").await.unwrap(), 5);
        assert_eq!(c.store.release_leases("node-c").await.unwrap(), 0);
        let d = ids(c
            .store
            .claim_due("node-d", after, after + Duration::seconds(30), 2)
            .await
            .unwrap());
        assert_eq!(d, due[..2]);
        // A committed instance keeps its lease; its version is reported.
        let next = c.next(&c.store.get_instance(due[0]).await.unwrap().0);
        c.store.commit_progress(&[Case::bare(&next)]).await.unwrap();
        let mine = c
            .store
            .claim_due("node-d", after, after + Duration::seconds(30), 1)
            .await
            .unwrap();
        assert_eq!(mine, [(due[0], 2)]);
    }

    pub async fn runnable_versions_report_only_running_instances(c: &Case) {
        let running = c.instance(None, "onboard");
        let mut waiting = c.instance(None, "onboard");
        waiting.state = InstanceState::Waiting;
        let mut done = c.instance(None, "onboard");
        done.state = InstanceState::Completed;
        let batch: Vec<Progress> = [&running, &waiting, &done]
            .into_iter()
            .map(|i| c.start(i, &[]))
            .collect();
        c.store.commit_progress(&batch).await.unwrap();
        let next = c.next(&running);
        c.store.commit_progress(&[Case::bare(&next)]).await.unwrap();
        let ghost = WorkflowId::generate(c.clock.now());
        let found = c
            .store
            .runnable_versions(&[running.id, waiting.id, done.id, ghost])
            .await
            .unwrap();
        assert_eq!(found, [(running.id, 2)]);
        assert!(c.store.runnable_versions(&[]).await.unwrap().is_empty());
    }

    pub async fn concurrent_claims_never_overlap(c: &Case) {
        let now = c.clock.now();
        let batch: Vec<Progress> = (0..120)
            .map(|_| c.start(&c.instance(None, "bulk"), &[]))
            .collect();
        c.store.commit_progress(&batch).await.unwrap();
        let later = now + Duration::seconds(1);
        let lease = later + Duration::minutes(5);
        let mut tasks = tokio::task::JoinSet::new();
        for node in 0..4 {
            let store = c.store.clone();
            tasks.spawn(async move {
                // A new name each round, so a round never takes back what
                // an earlier one claimed.
                let mut mine = Vec::new();
                for round in 0.. {
                    let name = format!("node-{node}-{round}");
                    let claimed = store.claim_due(&name, later, lease, 7).await.unwrap();
                    if claimed.is_empty() {
                        break;
                    }
                    mine.extend(claimed.into_iter().map(|(id, _)| id));
                }
                mine
            });
        }
        let mut all = Vec::new();
        while let Some(mine) = tasks.join_next().await {
            all.extend(mine.unwrap());
        }
        let claimed = all.len();
        all.sort();
        all.dedup();
        assert_eq!(all.len(), claimed, "an instance was claimed by two nodes");
        assert_eq!(all.len(), 120);
    }

    pub async fn events_are_deduplicated_by_source_and_key(c: &Case) {
        let tenant = c.insert("acme").await;
        let first = c.event("psa.connectwise", "deal-1", Some(tenant.id));
        let (stored, new) = c.store.record_event(&first).await.unwrap();
        assert!(new);
        assert_eq!(stored, first);
        assert_eq!(c.store.get_event(first.id).await.unwrap(), first);

        // Routed, then delivered again with another id and payload: the
        // answer is the first event, with its outcome.
        let outcome = json!({"started": []});
        c.store.route_event(first.id, &outcome, &[]).await.unwrap();
        let mut again = c.event("psa.connectwise", "deal-1", None);
        again.payload = json!({"different": true});
        let (stored, new) = c.store.record_event(&again).await.unwrap();
        assert!(!new);
        assert_eq!(
            stored,
            InboundEvent {
                outcome: Some(outcome.clone()),
                ..first.clone()
            }
        );
        assert!(matches!(
            c.store.get_event(again.id).await,
            Err(StoreError::NotFound("event"))
        ));

        // A duplicate of an unrouted event comes back without an outcome.
        let pending = c.event("api", "deal-1", None);
        assert!(c.store.record_event(&pending).await.unwrap().1);
        let (stored, new) = c
            .store
            .record_event(&c.event("api", "deal-1", Some(tenant.id)))
            .await
            .unwrap();
        assert!(!new);
        assert_eq!(stored, pending);

        // The same key from another source is another event.
        let other = c.event("scim", "deal-1", None);
        let (stored, new) = c.store.record_event(&other).await.unwrap();
        assert!(new);
        assert_eq!(stored.id, other.id);
        assert_eq!(c.store.get_event(other.id).await.unwrap(), other);

        let missing = EventId::generate(c.clock.now());
        assert!(matches!(
            c.store.get_event(missing).await,
            Err(StoreError::NotFound("event"))
        ));
    }

    pub async fn routing_an_event_is_atomic(c: &Case) {
        let tenant = c.insert("acme").await;
        let event = c.event("api", "start-1", Some(tenant.id));
        c.store.record_event(&event).await.unwrap();
        let existing = c.instance(Some(tenant.id), "onboard");
        c.store
            .commit_progress(&[c.start(&existing, &["a-notify"])])
            .await
            .unwrap();

        let mut started = c.instance(Some(tenant.id), "onboard");
        started.started_by = Some(event.id);
        let outcome = json!({"started": [started.id.to_string()]});
        let unrouted_and_absent = |id: WorkflowId| async move {
            assert_eq!(c.store.get_event(event.id).await.unwrap().outcome, None);
            assert_eq!(c.store.unrouted_events(10).await.unwrap()[0].id, event.id);
            assert!(matches!(
                c.store.get_instance(id).await,
                Err(StoreError::NotFound("workflow instance"))
            ));
        };

        // An instance that is not new: refused, nothing written.
        let mut old = c.instance(Some(tenant.id), "onboard");
        old.version = 2;
        let err = c
            .store
            .route_event(
                event.id,
                &outcome,
                &[c.start(&started, &["a-notify"]), c.start(&old, &[])],
            )
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
        unrouted_and_absent(started.id).await;

        // An instance whose insert fails inside the transaction: the
        // outcome and the instances before it are rolled back.
        let err = c
            .store
            .route_event(
                event.id,
                &outcome,
                &[c.start(&started, &["a-notify"]), c.start(&existing, &[])],
            )
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::Stale("workflow instance")),
            "{err:?}"
        );
        unrouted_and_absent(started.id).await;
        assert_eq!(
            c.store.instance_history(existing.id).await.unwrap().len(),
            1
        );

        // Routed for real: the outcome, the instance, its steps and history.
        c.store
            .route_event(
                event.id,
                &outcome,
                &[c.start(&started, &["a-notify", "b-provision"])],
            )
            .await
            .unwrap();
        assert_eq!(
            c.store.get_event(event.id).await.unwrap().outcome,
            Some(outcome.clone())
        );
        assert!(c.store.unrouted_events(10).await.unwrap().is_empty());
        let (stored, steps) = c.store.get_instance(started.id).await.unwrap();
        assert_eq!(stored, started);
        assert_eq!(stored.started_by, Some(event.id));
        assert_eq!(steps.len(), 2);
        assert_eq!(c.store.instance_history(started.id).await.unwrap().len(), 1);

        // A second routing loses: the first outcome stays, its instance is not created.
        let late = c.instance(Some(tenant.id), "onboard");
        assert!(matches!(
            c.store
                .route_event(event.id, &json!({"late": true}), &[c.start(&late, &[])])
                .await,
            Err(StoreError::Stale("event"))
        ));
        assert_eq!(
            c.store.get_event(event.id).await.unwrap().outcome,
            Some(outcome)
        );
        assert!(matches!(
            c.store.get_instance(late.id).await,
            Err(StoreError::NotFound(_))
        ));

        assert!(matches!(
            c.store
                .route_event(EventId::generate(c.clock.now()), &json!({}), &[])
                .await,
            Err(StoreError::NotFound("event"))
        ));
    }

    pub async fn unrouted_events_are_listed_oldest_first(c: &Case) {
        let events: Vec<_> = (0..3)
            .map(|i| c.event("api", &format!("key-{i}"), None))
            .collect();
        // Recorded out of order: the order is the events' (time-ordered) ids.
        for e in [&events[2], &events[0], &events[1]] {
            c.store.record_event(e).await.unwrap();
        }
        c.store
            .route_event(events[1].id, &json!({"started": []}), &[])
            .await
            .unwrap();
        let unrouted = c.store.unrouted_events(10).await.unwrap();
        assert_eq!(unrouted, vec![events[0].clone(), events[2].clone()]);
        let first = c.store.unrouted_events(1).await.unwrap();
        assert_eq!(first, vec![events[0].clone()]);
        for e in [&events[0], &events[2]] {
            c.store.route_event(e.id, &json!({}), &[]).await.unwrap();
        }
        assert!(c.store.unrouted_events(10).await.unwrap().is_empty());
    }

    pub async fn progress_inserts_and_updates_with_version_checks(c: &Case) {
        let tenant = c.insert("acme").await;
        let v1 = c.instance(Some(tenant.id), "onboard");
        let start = c.start(&v1, &["b-provision", "a-notify"]);
        c.store
            .commit_progress(std::slice::from_ref(&start))
            .await
            .unwrap();
        let (stored, steps) = c.store.get_instance(v1.id).await.unwrap();
        assert_eq!(stored, v1);
        assert_eq!(
            steps,
            vec![start.steps[1].clone(), start.steps[0].clone()],
            "steps in step-id order"
        );
        assert_eq!(
            c.store.instance_history(v1.id).await.unwrap(),
            start.history
        );

        // An update writes what can change (state, context, times,
        // version); what is fixed at creation (the pinned template) is not
        // rewritten.
        let mut v2 = c.next(&v1);
        v2.state = InstanceState::Waiting;
        v2.context = json!({"trigger": {"deal": 42}, "a-notify": {"sent": true}});
        v2.next_run_at = None;
        v2.template_version = u32::MAX;
        v2.definition = json!({"rewritten": true});
        c.store
            .commit_progress(&[Progress {
                instance: v2.clone(),
                steps: vec![],
                history: vec![c.entry(v1.id, 2, "instance.waiting", None)],
                approvals: Vec::new(),
                tasks: Vec::new(),
                notifications: Vec::new(),
            }])
            .await
            .unwrap();
        let stored = c.store.get_instance(v1.id).await.unwrap().0;
        assert_eq!(
            stored,
            Instance {
                template_version: v1.template_version,
                definition: v1.definition.clone(),
                ..v2.clone()
            }
        );
        let v2 = stored;
        assert_eq!(c.store.instance_history(v1.id).await.unwrap().len(), 2);
        let mut widest = c.instance(None, "onboard");
        widest.template_version = u32::MAX;
        c.store
            .commit_progress(&[Case::bare(&widest)])
            .await
            .unwrap();
        assert_eq!(c.store.get_instance(widest.id).await.unwrap().0, widest);

        // The same change again, an update from an old read, or a second
        // "new" instance with a taken id: stale, and nothing changes.
        let mut lost = c.next(&v1);
        lost.state = InstanceState::Cancelled;
        for stale in [v2.clone(), lost, v1.clone()] {
            assert!(matches!(
                c.store.commit_progress(&[Case::bare(&stale)]).await,
                Err(StoreError::Stale("workflow instance"))
            ));
        }
        assert_eq!(c.store.get_instance(v1.id).await.unwrap().0, v2);

        // An update of an instance that does not exist.
        let mut ghost = c.instance(None, "onboard");
        ghost.version = 2;
        assert!(matches!(
            c.store.commit_progress(&[Case::bare(&ghost)]).await,
            Err(StoreError::NotFound("workflow instance"))
        ));
        // A new instance of a tenant that does not exist.
        let orphan = c.instance(Some(TenantId::generate(c.clock.now())), "onboard");
        assert!(matches!(
            c.store
                .commit_progress(&[c.start(&orphan, &["a-notify"])])
                .await,
            Err(StoreError::NotFound(_))
        ));
        assert!(matches!(
            c.store.get_instance(orphan.id).await,
            Err(StoreError::NotFound("workflow instance"))
        ));
        assert!(matches!(
            c.store.instance_history(orphan.id).await,
            Err(StoreError::NotFound("workflow instance"))
        ));

        c.store.commit_progress(&[]).await.unwrap();
    }

    pub async fn a_stale_batch_writes_nothing(c: &Case) {
        let a = c.instance(None, "onboard");
        let b = c.instance(None, "onboard");
        c.store
            .commit_progress(&[c.start(&a, &["a-notify"]), c.start(&b, &["a-notify"])])
            .await
            .unwrap();
        let b_steps = c.steps_of(b.id).await;

        let mut b2 = c.next(&b);
        b2.state = InstanceState::Completed;
        let mut done = b_steps[0].clone();
        done.state = StepState::Succeeded;
        done.attempts = 1;
        let b_change = Progress {
            instance: b2.clone(),
            steps: vec![done],
            history: vec![c.entry(b.id, 2, "step.succeeded", Some("a-notify"))],
            approvals: Vec::new(),
            tasks: Vec::new(),
            notifications: Vec::new(),
        };
        let fresh = c.instance(None, "offboard");
        let mut a_stale = c.next(&a);
        a_stale.version = 3;
        let mut ghost = c.instance(None, "onboard");
        ghost.version = 5;

        // The bad item comes last, after the others were written in the transaction.
        for (bad, expected) in [
            (Case::bare(&a_stale), "stale"),
            (Case::bare(&ghost), "not found"),
        ] {
            let err = c
                .store
                .commit_progress(&[b_change.clone(), c.start(&fresh, &["a-notify"]), bad])
                .await
                .unwrap_err();
            match expected {
                "stale" => assert!(
                    matches!(err, StoreError::Stale("workflow instance")),
                    "{err:?}"
                ),
                _ => assert!(
                    matches!(err, StoreError::NotFound("workflow instance")),
                    "{err:?}"
                ),
            }
            assert_eq!(
                c.store.get_instance(b.id).await.unwrap(),
                (b.clone(), b_steps.clone())
            );
            assert_eq!(c.store.instance_history(b.id).await.unwrap().len(), 1);
            assert!(matches!(
                c.store.get_instance(fresh.id).await,
                Err(StoreError::NotFound(_))
            ));
            assert_eq!(c.store.get_instance(a.id).await.unwrap().0, a);
        }

        // Without the bad item, the same batch goes through.
        c.store
            .commit_progress(&[b_change.clone(), c.start(&fresh, &["a-notify"])])
            .await
            .unwrap();
        assert_eq!(
            c.store.get_instance(b.id).await.unwrap(),
            (b2, b_change.steps.clone())
        );
        assert_eq!(c.version_of(fresh.id).await, 1);
    }

    pub async fn step_runs_are_replaced_by_upserts(c: &Case) {
        let v1 = c.instance(None, "onboard");
        c.store
            .commit_progress(&[c.start(&v1, &["b-provision", "a-notify"])])
            .await
            .unwrap();
        let [notify, provision]: [StepRun; 2] = c.steps_of(v1.id).await.try_into().unwrap();

        // Succeeded with an output; a new step appears.
        let v2 = c.next(&v1);
        let mut provision2 = provision.clone();
        provision2.state = StepState::Succeeded;
        provision2.attempts = 2;
        provision2.output = Some(json!({"mailbox": "zoe@acme.example", "size": [1, 2.5, null]}));
        provision2.updated_at = c.clock.now();
        let audit = StepRun::pending(v1.id, "c-audit", c.clock.now());
        c.store
            .commit_progress(&[Progress {
                instance: v2.clone(),
                steps: vec![provision2.clone(), audit.clone()],
                history: vec![],
                approvals: Vec::new(),
                tasks: Vec::new(),
                notifications: Vec::new(),
            }])
            .await
            .unwrap();
        assert_eq!(
            c.steps_of(v1.id).await,
            vec![notify.clone(), provision2.clone(), audit.clone()]
        );

        // Back to retrying: the output is cleared, the error and the next attempt set.
        let v3 = c.next(&v2);
        let mut provision3 = provision2.clone();
        provision3.state = StepState::Retrying;
        provision3.attempts = 3;
        provision3.output = None;
        provision3.error = Some("timeout: the target did not answer".into());
        provision3.next_attempt_at = Some(c.clock.now() + Duration::milliseconds(1500));
        provision3.idempotency_key = format!("{}:b-provision:undo", v1.id);
        provision3.updated_at = c.clock.now();
        c.store
            .commit_progress(&[Progress {
                instance: v3.clone(),
                steps: vec![provision3.clone()],
                history: vec![],
                approvals: Vec::new(),
                tasks: Vec::new(),
                notifications: Vec::new(),
            }])
            .await
            .unwrap();
        assert_eq!(
            c.steps_of(v1.id).await,
            vec![notify.clone(), provision3, audit.clone()]
        );

        // The same step twice in one batch: the last one counts.
        let v4 = c.next(&v3);
        let mut failed = notify.clone();
        failed.state = StepState::Failed;
        failed.error = Some("first".into());
        let mut skipped = notify.clone();
        skipped.state = StepState::Skipped;
        let v5 = c.next(&v4);
        let mut compensated = audit.clone();
        compensated.state = StepState::Compensated;
        c.store
            .commit_progress(&[
                Progress {
                    instance: v4,
                    steps: vec![failed, compensated.clone()],
                    history: vec![],
                    approvals: Vec::new(),
                    tasks: Vec::new(),
                    notifications: Vec::new(),
                },
                Progress {
                    instance: v5,
                    steps: vec![skipped.clone()],
                    history: vec![],
                    approvals: Vec::new(),
                    tasks: Vec::new(),
                    notifications: Vec::new(),
                },
            ])
            .await
            .unwrap();
        let steps = c.steps_of(v1.id).await;
        assert_eq!((&steps[0], &steps[2]), (&skipped, &compensated));
        assert_eq!(c.version_of(v1.id).await, 5);
    }

    pub async fn history_is_append_only(c: &Case) {
        let v1 = c.instance(None, "onboard");
        let start = c.start(&v1, &[]);
        c.store
            .commit_progress(std::slice::from_ref(&start))
            .await
            .unwrap();

        let v2 = c.next(&v1);
        for history in [
            vec![c.entry(v1.id, 1, "instance.rewritten", None)],
            vec![
                c.entry(v1.id, 2, "step.started", Some("a-notify")),
                c.entry(v1.id, 2, "step.started", Some("a-notify")),
            ],
        ] {
            let err = c
                .store
                .commit_progress(&[Progress {
                    instance: v2.clone(),
                    steps: vec![],
                    history,
                    approvals: Vec::new(),
                    tasks: Vec::new(),
                    notifications: Vec::new(),
                }])
                .await
                .unwrap_err();
            assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
            // The instance's update in the same batch is undone too.
            assert_eq!(c.version_of(v1.id).await, 1);
            assert_eq!(
                c.store.instance_history(v1.id).await.unwrap(),
                start.history
            );
        }

        let more = vec![
            c.entry(v1.id, 2, "step.started", Some("a-notify")),
            c.entry(v1.id, 3, "step.succeeded", Some("a-notify")),
        ];
        c.store
            .commit_progress(&[Progress {
                instance: v2,
                steps: vec![],
                history: more.clone(),
                approvals: Vec::new(),
                tasks: Vec::new(),
                notifications: Vec::new(),
            }])
            .await
            .unwrap();
        let mut expected = start.history.clone();
        expected.extend(more);
        assert_eq!(c.store.instance_history(v1.id).await.unwrap(), expected);
    }

    pub async fn due_instances_are_filtered_and_ordered(c: &Case) {
        // Times that sort wrongly as RFC 3339 text with a variable-length
        // fraction (`…:00Z` after `…:00.5Z`, `.1Z` after `.100001Z`).
        let t0 = c.clock.now();
        let ms = Duration::milliseconds;
        let at = |state: InstanceState, next: Option<time::Duration>| {
            let mut i = c.instance(None, "onboard");
            i.state = state;
            i.next_run_at = next.map(|d| t0 + d);
            i
        };
        let tie_1 = at(InstanceState::Running, Some(ms(1000)));
        let half = at(InstanceState::Running, Some(ms(500)));
        let exact = at(InstanceState::Running, Some(ms(0)));
        let b = at(
            InstanceState::Running,
            Some(ms(-900) + Duration::microseconds(1)),
        );
        let a = at(InstanceState::Compensating, Some(ms(-900)));
        let early = at(InstanceState::Running, Some(ms(-1000)));
        let tie_2 = at(InstanceState::Compensating, Some(ms(1000)));
        let excluded = [
            at(InstanceState::Waiting, Some(ms(-5000))),
            at(InstanceState::Completed, Some(ms(-5000))),
            at(InstanceState::Parked, Some(ms(-5000))),
            at(InstanceState::Compensated, Some(ms(-5000))),
            at(InstanceState::Cancelled, Some(ms(-5000))),
            at(InstanceState::Running, None),
            at(
                InstanceState::Running,
                Some(ms(1000) + Duration::microseconds(1)),
            ),
            at(InstanceState::Compensating, Some(ms(2000))),
        ];
        let batch: Vec<_> = [&tie_1, &half, &exact, &b, &a, &early, &tie_2]
            .into_iter()
            .chain(&excluded)
            .map(|i| c.start(i, &[]))
            .collect();
        c.store.commit_progress(&batch).await.unwrap();

        let ids = |list: &[&Instance]| list.iter().map(|i| i.id).collect::<Vec<_>>();
        assert_eq!(
            c.store.due_instances(t0 + ms(1000), 100).await.unwrap(),
            ids(&[&early, &a, &b, &exact, &half, &tie_1, &tie_2]),
            "earliest first, ties by id, `now` included"
        );
        assert_eq!(
            c.store.due_instances(t0, 100).await.unwrap(),
            ids(&[&early, &a, &b, &exact])
        );
        assert_eq!(
            c.store.due_instances(t0 - ms(900), 100).await.unwrap(),
            ids(&[&early, &a])
        );
        assert_eq!(
            c.store.due_instances(t0 + ms(1000), 2).await.unwrap(),
            ids(&[&early, &a])
        );
        assert!(
            c.store
                .due_instances(t0 - ms(1001), 100)
                .await
                .unwrap()
                .is_empty()
        );

        // An instance that starts waiting is no longer due.
        let mut waiting = c.next(&exact);
        waiting.state = InstanceState::Waiting;
        c.store
            .commit_progress(&[Case::bare(&waiting)])
            .await
            .unwrap();
        assert_eq!(
            c.store.due_instances(t0, 100).await.unwrap(),
            ids(&[&early, &a, &b])
        );
    }

    pub async fn instances_list_by_filters_in_pages(c: &Case) {
        let acme = c.insert("acme").await;
        let globex = c.insert("globex").await;
        let mut all = Vec::new();
        for (tenant, template, state, count) in [
            (Some(acme.id), "onboard", InstanceState::Running, 5),
            (Some(globex.id), "onboard", InstanceState::Running, 3),
            (Some(acme.id), "offboard", InstanceState::Completed, 2),
            (None, "onboard", InstanceState::Parked, 1),
        ] {
            for _ in 0..count {
                let mut i = c.instance(tenant, template);
                i.state = state;
                all.push(i);
            }
        }
        let batch: Vec<_> = all.iter().map(|i| c.start(i, &[])).collect();
        c.store.commit_progress(&batch).await.unwrap();

        let list = |query: InstanceQuery| async move {
            c.store
                .list_instances(&InstanceQuery {
                    limit: 100,
                    ..query
                })
                .await
                .unwrap()
        };
        let matching = |f: &dyn Fn(&Instance) -> bool| {
            all.iter()
                .filter(|i| f(i))
                .map(|i| i.id)
                .collect::<Vec<_>>()
        };
        let ids = |v: Vec<Instance>| v.into_iter().map(|i| i.id).collect::<Vec<_>>();

        assert_eq!(
            list(InstanceQuery::default()).await,
            all,
            "everything, in id order"
        );
        assert_eq!(
            ids(list(InstanceQuery {
                within: None,
                tenant: Some(acme.id),
                ..Default::default()
            })
            .await),
            matching(&|i| i.tenant_id == Some(acme.id))
        );
        assert_eq!(
            ids(list(InstanceQuery {
                within: None,
                tenant: Some(acme.id),
                template: Some("onboard".into()),
                ..Default::default()
            })
            .await)
            .len(),
            5
        );
        assert_eq!(
            ids(list(InstanceQuery {
                within: None,
                state: Some(InstanceState::Completed),
                ..Default::default()
            })
            .await),
            matching(&|i| i.state == InstanceState::Completed)
        );
        assert_eq!(
            ids(list(InstanceQuery {
                within: None,
                template: Some("onboard".into()),
                ..Default::default()
            })
            .await),
            matching(&|i| i.template == "onboard")
        );
        assert!(
            list(InstanceQuery {
                within: None,
                tenant: Some(globex.id),
                state: Some(InstanceState::Completed),
                ..Default::default()
            })
            .await
            .is_empty()
        );
        // A scoped operator's view: these tenants' only, never the
        // installation's (no tenant); none at all for an empty scope.
        for within in [vec![acme.id], vec![acme.id, globex.id], vec![]] {
            assert_eq!(
                ids(list(InstanceQuery {
                    within: Some(within.clone()),
                    ..Default::default()
                })
                .await),
                matching(&|i| i.tenant_id.is_some_and(|t| within.contains(&t))),
                "{within:?}"
            );
        }

        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = c
                .store
                .list_instances(&InstanceQuery {
                    within: None,
                    tenant: Some(acme.id),
                    after,
                    limit: 3,
                    ..Default::default()
                })
                .await
                .unwrap();
            if page.is_empty() {
                break;
            }
            assert!(page.len() <= 3);
            after = page.last().map(|i| i.id);
            seen.extend(page.into_iter().map(|i| i.id));
        }
        assert_eq!(seen, matching(&|i| i.tenant_id == Some(acme.id)));
    }

    pub async fn a_large_batch_commits_in_one_call(c: &Case) {
        // 500 instances, 1,500 steps and 1,000 history entries: several
        // multi-row statements per table in one transaction.
        const N: usize = 500;
        let instances: Vec<_> = (0..N).map(|_| c.instance(None, "bulk")).collect();
        let batch: Vec<_> = instances
            .iter()
            .map(|i| {
                let mut p = c.start(i, &["a-notify", "b-provision", "c-audit"]);
                p.history
                    .push(c.entry(i.id, 2, "step.started", Some("a-notify")));
                p
            })
            .collect();
        c.store.commit_progress(&batch).await.unwrap();
        let listed = c
            .store
            .list_instances(&InstanceQuery {
                within: None,
                limit: 1000,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(listed, instances);
        for p in [&batch[0], &batch[255], &batch[256], &batch[N - 1]] {
            let (instance, mut steps) = c.store.get_instance(p.instance.id).await.unwrap();
            assert_eq!(instance, p.instance);
            steps.sort_by(|x, y| x.step_id.cmp(&y.step_id));
            assert_eq!(steps, p.steps);
            assert_eq!(
                c.store.instance_history(p.instance.id).await.unwrap(),
                p.history
            );
        }
        let now = c.clock.now();
        assert_eq!(c.store.due_instances(now, 1000).await.unwrap().len(), N);

        // Every instance moves on, in one call.
        let moved: Vec<_> = batch
            .iter()
            .map(|p| {
                let mut instance = c.next(&p.instance);
                instance.next_run_at = None;
                instance.state = InstanceState::Waiting;
                let steps = p
                    .steps
                    .iter()
                    .map(|s| StepRun {
                        state: StepState::Succeeded,
                        attempts: 1,
                        ..s.clone()
                    })
                    .collect();
                let history = vec![c.entry(instance.id, 3, "instance.waiting", None)];
                Progress {
                    instance,
                    steps,
                    history,
                    approvals: Vec::new(),
                    tasks: Vec::new(),
                    notifications: Vec::new(),
                }
            })
            .collect();
        c.store.commit_progress(&moved).await.unwrap();
        assert!(
            c.store
                .due_instances(c.clock.now(), 1000)
                .await
                .unwrap()
                .is_empty()
        );
        for p in [&moved[0], &moved[300], &moved[N - 1]] {
            let (instance, steps) = c.store.get_instance(p.instance.id).await.unwrap();
            assert_eq!(instance, p.instance);
            assert!(steps.iter().all(|s| s.state == StepState::Succeeded));
            assert_eq!(
                c.store.instance_history(p.instance.id).await.unwrap().len(),
                3
            );
        }

        // One stale instance at the very end: none of the 500 changes land.
        let mut again: Vec<_> = moved
            .iter()
            .map(|p| Progress {
                instance: c.next(&p.instance),
                steps: vec![],
                history: vec![c.entry(p.instance.id, 4, "instance.resumed", None)],
                approvals: Vec::new(),
                tasks: Vec::new(),
                notifications: Vec::new(),
            })
            .collect();
        again[N - 1].instance.version = 1_000;
        assert!(matches!(
            c.store.commit_progress(&again).await,
            Err(StoreError::Stale("workflow instance"))
        ));
        assert_eq!(c.version_of(moved[0].instance.id).await, 2);
        assert_eq!(
            c.store
                .instance_history(moved[0].instance.id)
                .await
                .unwrap()
                .len(),
            3
        );
    }

    pub async fn a_deleted_tenants_rows_do_not_disturb_others(c: &Case) {
        let mut doomed = c.insert("doomed").await;
        let kept = c.insert("kept").await;
        let event = c.event("api", "doomed-1", Some(doomed.id));
        c.store.record_event(&event).await.unwrap();
        let mut theirs = c.instance(Some(doomed.id), "offboard");
        theirs.started_by = Some(event.id);
        c.store
            .route_event(
                event.id,
                &json!({"started": 1}),
                &[c.start(&theirs, &["a-notify"])],
            )
            .await
            .unwrap();
        let ours = c.instance(Some(kept.id), "onboard");
        c.store
            .commit_progress(&[c.start(&ours, &["a-notify"])])
            .await
            .unwrap();

        // The tenant's events and instances do not stand in the way of its deletion.
        doomed.state = TenantState::Deleted;
        doomed.version += 1;
        c.store.delete_tenant(&doomed, &[]).await.unwrap();

        // Another tenant's instance carries on, and new work is recorded.
        let ours2 = c.next(&ours);
        c.store
            .commit_progress(&[Progress {
                instance: ours2.clone(),
                steps: vec![],
                history: vec![c.entry(ours.id, 2, "step.succeeded", Some("a-notify"))],
                approvals: Vec::new(),
                tasks: Vec::new(),
                notifications: Vec::new(),
            }])
            .await
            .unwrap();
        assert_eq!(c.store.get_instance(ours.id).await.unwrap().0, ours2);
        assert!(
            c.store
                .record_event(&c.event("api", "kept-1", Some(kept.id)))
                .await
                .unwrap()
                .1
        );
        let kept_only = c
            .store
            .list_instances(&InstanceQuery {
                within: None,
                tenant: Some(kept.id),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(kept_only, vec![ours2]);

        // The deleted tenant's instance can still be wound down and read.
        let mut cancelled = c.next(&theirs);
        cancelled.state = InstanceState::Cancelled;
        cancelled.next_run_at = None;
        c.store
            .commit_progress(&[Case::bare(&cancelled)])
            .await
            .unwrap();
        assert_eq!(c.store.get_instance(theirs.id).await.unwrap().0, cancelled);
        assert_eq!(
            c.store.get_event(event.id).await.unwrap().tenant_id,
            Some(doomed.id)
        );
        let due = c.store.due_instances(c.clock.now(), 10).await.unwrap();
        assert_eq!(due, vec![ours.id]);
    }

    pub async fn approvals_and_tasks_travel_with_progress(c: &Case) {
        let tenant = c.insert("acme").await;
        let (v1, approval) = c.waiting(Some(tenant.id), 1, "system").await;
        assert_eq!(c.store.get_approval(approval.id).await.unwrap(), approval);
        assert!(matches!(
            c.store
                .get_approval(ApprovalId::generate(c.clock.now()))
                .await,
            Err(StoreError::NotFound("approval"))
        ));

        // A task appears with the next progress; the approval escalates.
        let task = c.task_for(&v1, "c-apply");
        let mut escalated = approval.clone();
        let at = c.clock.now();
        assert!(escalated.escalate(at));
        let v2 = c.next(&v1);
        c.store
            .commit_progress(&[Progress {
                instance: v2.clone(),
                steps: vec![],
                history: vec![],
                approvals: vec![escalated.clone()],
                tasks: vec![task.clone()],
                notifications: Vec::new(),
            }])
            .await
            .unwrap();
        assert_eq!(c.store.get_approval(approval.id).await.unwrap(), escalated);
        assert_eq!(c.store.get_task(task.id).await.unwrap(), task);
        assert!(matches!(
            c.store.get_task(HumanTaskId::generate(c.clock.now())).await,
            Err(StoreError::NotFound("human task"))
        ));

        // An escalation is recorded once: a later one keeps the first time.
        let mut again = approval.clone();
        again.escalate(at + Duration::hours(1));
        let v3 = c.next(&v2);
        c.store
            .commit_progress(&[Progress {
                approvals: vec![again],
                ..Case::bare(&v3)
            }])
            .await
            .unwrap();
        assert_eq!(
            c.store
                .get_approval(approval.id)
                .await
                .unwrap()
                .escalated_at,
            Some(at)
        );

        // Progress neither decides an approval nor completes a task, and a
        // refused item undoes the whole batch.
        let mut approved = escalated.clone();
        approved.state = ApprovalState::Approved;
        approved.decided_at = Some(c.clock.now());
        let mut done = task.clone();
        done.state = TaskState::Done;
        done.outcome = Some(json!({"by": "progress"}));
        done.completed_at = Some(c.clock.now());
        let v4 = c.next(&v3);
        for (approvals, tasks) in [(vec![approved], vec![]), (vec![], vec![done])] {
            let err = c
                .store
                .commit_progress(&[Progress {
                    history: vec![c.entry(v1.id, 2, "sneaky", None)],
                    approvals,
                    tasks,
                    notifications: Vec::new(),
                    ..Case::bare(&v4)
                }])
                .await
                .unwrap_err();
            assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
            assert_eq!(c.version_of(v1.id).await, 3);
            assert_eq!(c.store.instance_history(v1.id).await.unwrap().len(), 1);
        }
        assert_eq!(
            c.store.get_approval(approval.id).await.unwrap().state,
            ApprovalState::Pending
        );
        assert_eq!(
            c.store.get_task(task.id).await.unwrap().state,
            TaskState::Open
        );

        // One approval and one task per step; an approval or a task travels
        // only with its own instance; a new one for a missing instance is
        // refused with it.
        let other = c.instance(None, "grant");
        c.store
            .commit_progress(&[c.start(&other, &[])])
            .await
            .unwrap();
        let twin = c.approval_for(&v1, "b-grant", 1, "system", None);
        let twin_task = c.task_for(&v1, "c-apply");
        let foreign = c.approval_for(&other, "x", 1, "system", None);
        for (approvals, tasks) in [
            (vec![twin], vec![]),
            (vec![], vec![twin_task]),
            (vec![foreign], vec![]),
        ] {
            let err = c
                .store
                .commit_progress(&[Progress {
                    approvals,
                    tasks,
                    notifications: Vec::new(),
                    ..Case::bare(&v4)
                }])
                .await
                .unwrap_err();
            assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
        }
        assert_eq!(c.version_of(v1.id).await, 3);

        // Cancelling the workflow cancels its gates.
        let mut cancelled = c.store.get_approval(approval.id).await.unwrap();
        let mut dropped = task.clone();
        let at = c.clock.now();
        assert!(cancelled.cancel(at) && dropped.cancel(at));
        let mut v4 = v4;
        v4.state = InstanceState::Cancelled;
        c.store
            .commit_progress(&[Progress {
                approvals: vec![cancelled.clone()],
                tasks: vec![dropped.clone()],
                notifications: Vec::new(),
                ..Case::bare(&v4)
            }])
            .await
            .unwrap();
        assert_eq!(c.store.get_approval(approval.id).await.unwrap(), cancelled);
        assert_eq!(c.store.get_task(task.id).await.unwrap(), dropped);

        // The same cancellation again changes nothing; an escalation from
        // an old read of the now cancelled approval is stale, and so is
        // reopening the cancelled task.
        let v5 = c.next(&v4);
        c.store
            .commit_progress(&[Progress {
                approvals: vec![cancelled.clone()],
                tasks: vec![dropped.clone()],
                notifications: Vec::new(),
                ..Case::bare(&v5)
            }])
            .await
            .unwrap();
        let v6 = c.next(&v5);
        for (approvals, tasks, what) in [
            (vec![escalated], vec![], "approval"),
            (vec![], vec![task.clone()], "human task"),
        ] {
            let err = c
                .store
                .commit_progress(&[Progress {
                    approvals,
                    tasks,
                    notifications: Vec::new(),
                    ..Case::bare(&v6)
                }])
                .await
                .unwrap_err();
            assert!(matches!(err, StoreError::Stale(w) if w == what), "{err:?}");
        }
        assert_eq!(c.version_of(v1.id).await, 5);

        // Gates of a batch whose instance is stale are not written either.
        let stale = c.next(&v1);
        let (v7, lost) = {
            let i = c.instance(None, "grant");
            let a = c.approval_for(&i, "b-grant", 1, "system", None);
            (i, a)
        };
        let mut fresh = c.start(&v7, &[]);
        fresh.approvals.push(lost.clone());
        assert!(matches!(
            c.store.commit_progress(&[fresh, Case::bare(&stale)]).await,
            Err(StoreError::Stale("workflow instance"))
        ));
        assert!(matches!(
            c.store.get_approval(lost.id).await,
            Err(StoreError::NotFound("approval"))
        ));
    }

    pub async fn decisions_reach_n_of_m_and_move_the_workflow_on(c: &Case) {
        let tenant = c.insert("acme").await;
        let (first, second) = (
            c.staff("lead.one", Role::Lead).await,
            c.staff("lead.two", Role::Lead).await,
        );
        let (v1, approval) = c.waiting(Some(tenant.id), 2, "system").await;

        // Both read the approval with no decisions; the first records hers.
        let (one, d1) = c.decided(approval.id, &first, Verdict::Approve).await;
        let (racing, d2_early) = c.decided(approval.id, &second, Verdict::Modify).await;
        assert_eq!(one.state, ApprovalState::Pending);
        c.store.record_decision(&one, &d1, None).await.unwrap();
        let stored = c.store.get_approval(approval.id).await.unwrap();
        assert_eq!(stored, one);
        assert_eq!(stored.decisions, vec![d1.clone()]);
        assert_eq!(c.version_of(v1.id).await, 1, "the workflow still waits");

        // The second decided on a read without the first decision: stale,
        // and nothing changes, although his decision is valid by itself.
        let err = c
            .store
            .record_decision(&racing, &d2_early, Some(&c.resume(&v1, 2)))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Stale("approval")), "{err:?}");
        assert_eq!(c.store.get_approval(approval.id).await.unwrap(), one);
        assert_eq!(c.version_of(v1.id).await, 1);

        // A state that does not follow from the stored decisions is
        // refused: still pending after the second approval of two, and
        // (on a fresh approval) approved after the first.
        let mut lagging = c.store.get_approval(approval.id).await.unwrap();
        let early = c.decision(&lagging, &second, Verdict::Modify);
        lagging.decisions.push(early.clone());
        let (_, fresh) = c.waiting(None, 2, "system").await;
        let mut premature = fresh.clone();
        let first_only = c.decision(&premature, &first, Verdict::Approve);
        premature.decisions.push(first_only.clone());
        premature.state = ApprovalState::Approved;
        premature.decided_at = Some(first_only.at);
        for (claimed, decision) in [(&lagging, &early), (&premature, &first_only)] {
            let err = c
                .store
                .record_decision(claimed, decision, None)
                .await
                .unwrap_err();
            assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
        }
        assert_eq!(c.store.get_approval(approval.id).await.unwrap(), one);
        assert_eq!(c.store.get_approval(fresh.id).await.unwrap(), fresh);

        // On a fresh read, the second approval approves and the workflow
        // moves on in the same transaction.
        let (two, d2) = c.decided(approval.id, &second, Verdict::Modify).await;
        assert_eq!(two.state, ApprovalState::Approved);
        let resume = c.resume(&v1, 2);
        c.store
            .record_decision(&two, &d2, Some(&resume))
            .await
            .unwrap();
        let stored = c.store.get_approval(approval.id).await.unwrap();
        assert_eq!(stored, two);
        assert_eq!(stored.decisions, vec![d1, d2.clone()], "oldest first");
        assert_eq!(stored.decided_at, Some(d2.at));
        assert_eq!(
            stored.approved_params(),
            Some(&json!({"role": "Helpdesk Administrator"}))
        );
        assert_eq!(
            c.store.get_instance(v1.id).await.unwrap().0,
            resume.instance
        );
        assert_eq!(c.store.instance_history(v1.id).await.unwrap().len(), 2);

        // Two approvers of a 3-of-M deciding at once, each on a read
        // without the other's decision: one counts, the other is stale
        // (not a conflict: deciding again on a fresh read succeeds).
        let (_, approval) = c.waiting(None, 3, "system").await;
        let (a1, x1) = c.decided(approval.id, &first, Verdict::Approve).await;
        let (a2, x2) = c.decided(approval.id, &second, Verdict::Approve).await;
        let (r1, r2) = tokio::join!(
            c.store.record_decision(&a1, &x1, None),
            c.store.record_decision(&a2, &x2, None)
        );
        let stale = [&r1, &r2]
            .into_iter()
            .filter(|r| matches!(r, Err(StoreError::Stale("approval"))))
            .count();
        assert_eq!(
            (usize::from(r1.is_ok()) + usize::from(r2.is_ok()), stale),
            (1, 1),
            "{r1:?} {r2:?}"
        );
        let late = if r1.is_ok() { &second } else { &first };
        let (a3, x3) = c.decided(approval.id, late, Verdict::Approve).await;
        c.store.record_decision(&a3, &x3, None).await.unwrap();
        let stored = c.store.get_approval(approval.id).await.unwrap();
        assert_eq!(
            (stored.state, stored.decisions.len()),
            (ApprovalState::Pending, 2)
        );

        // A rejection decides at once.
        let (v1, approval) = c.waiting(Some(tenant.id), 3, "system").await;
        let (no, d) = c.decided(approval.id, &first, Verdict::Reject).await;
        assert_eq!(no.state, ApprovalState::Rejected);
        c.store
            .record_decision(&no, &d, Some(&c.resume(&v1, 2)))
            .await
            .unwrap();
        assert_eq!(c.store.get_approval(approval.id).await.unwrap(), no);
        assert_eq!(c.version_of(v1.id).await, 2);

        // The decision handed in must be the approval's last, and the
        // progress its instance's.
        let (v1, approval) = c.waiting(None, 1, "system").await;
        let (yes, d) = c.decided(approval.id, &first, Verdict::Approve).await;
        let elsewhere = c.decision(&approval, &second, Verdict::Approve);
        let other = c.instance(None, "grant");
        c.store
            .commit_progress(&[c.start(&other, &[])])
            .await
            .unwrap();
        for (decision, progress) in [(&elsewhere, None), (&d, Some(c.resume(&other, 2)))] {
            let err = c
                .store
                .record_decision(&yes, decision, progress.as_ref())
                .await
                .unwrap_err();
            assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
        }
        assert_eq!(c.store.get_approval(approval.id).await.unwrap(), approval);
        assert_eq!(c.version_of(v1.id).await, 1);
    }

    pub async fn a_second_decision_by_the_same_operator_conflicts(c: &Case) {
        let lead = c.staff("lead.one", Role::Lead).await;
        let (_, approval) = c.waiting(None, 2, "system").await;
        let (one, d1) = c.decided(approval.id, &lead, Verdict::Approve).await;
        c.store.record_decision(&one, &d1, None).await.unwrap();

        // The rules refuse it; recorded anyway (as if they were skipped),
        // the database refuses it too and nothing changes.
        let mut twice = c.store.get_approval(approval.id).await.unwrap();
        assert!(twice.may_decide(&lead, c.clock.now()).is_err());
        let again = c.decision(&twice, &lead, Verdict::Approve);
        twice.decisions.push(again.clone());
        twice.state = ApprovalState::Approved;
        twice.decided_at = Some(again.at);
        let err = c
            .store
            .record_decision(&twice, &again, None)
            .await
            .unwrap_err();
        assert!(
            matches!(&err, StoreError::Conflict(m) if m.contains("already")),
            "{err:?}"
        );
        assert_eq!(c.store.get_approval(approval.id).await.unwrap(), one);

        // A decision by an operator that does not exist.
        let ghost = c.operator("ghost", Role::Lead);
        let (lost, d) = c.decided(approval.id, &ghost, Verdict::Approve).await;
        assert!(matches!(
            c.store.record_decision(&lost, &d, None).await,
            Err(StoreError::NotFound("operator"))
        ));
        assert_eq!(c.store.get_approval(approval.id).await.unwrap(), one);
        // And one on an approval that does not exist.
        let mut missing = approval.clone();
        missing.id = ApprovalId::generate(c.clock.now());
        let d = c.decision(&missing, &lead, Verdict::Approve);
        missing.apply(d.clone());
        assert!(matches!(
            c.store.record_decision(&missing, &d, None).await,
            Err(StoreError::NotFound("approval"))
        ));
    }

    pub async fn the_store_refuses_a_self_approval(c: &Case) {
        let starter = c.staff("starter", Role::Admin).await;
        let preparer = c.staff("preparer", Role::Lead).await;
        let (v1, approval) = c.waiting(None, 1, &starter.id.to_string()).await;
        let mut prepared = c.instance(None, "grant");
        prepared.state = InstanceState::Waiting;
        let mut by_preparer = c.approval_for(&prepared, "b-grant", 1, "system", None);
        by_preparer.prepared_by = preparer.id.to_string();
        let mut start = c.start(&prepared, &["b-grant"]);
        start.approvals.push(by_preparer.clone());
        c.store.commit_progress(&[start]).await.unwrap();

        for (instance, approval, who) in [
            (&v1, &approval, &starter),
            (&prepared, &by_preparer, &preparer),
        ] {
            // The rule refuses it; the caller skips the rule.
            let mut a = c.store.get_approval(approval.id).await.unwrap();
            assert!(a.may_decide(who, c.clock.now()).is_err());
            let d = c.decision(&a, who, Verdict::Approve);
            assert_eq!(a.apply(d.clone()), ApprovalState::Approved);
            let err = c
                .store
                .record_decision(&a, &d, Some(&c.resume(instance, 2)))
                .await
                .unwrap_err();
            assert!(
                matches!(&err, StoreError::Conflict(m) if m.contains("separation of duties")),
                "{err:?}"
            );
            let stored = c.store.get_approval(approval.id).await.unwrap();
            assert_eq!(&stored, approval, "nothing recorded");
            assert_eq!(c.version_of(instance.id).await, 1, "nothing moved on");
        }

        // Someone else may.
        let other = c.staff("other", Role::Lead).await;
        let (a, d) = c.decided(approval.id, &other, Verdict::Approve).await;
        c.store
            .record_decision(&a, &d, Some(&c.resume(&v1, 2)))
            .await
            .unwrap();
        assert_eq!(
            c.store.get_approval(approval.id).await.unwrap().state,
            ApprovalState::Approved
        );
    }

    pub async fn a_decided_approval_takes_no_more_decisions(c: &Case) {
        let (first, late) = (
            c.staff("lead.one", Role::Lead).await,
            c.staff("lead.late", Role::Lead).await,
        );
        let (v1, approval) = c.waiting(None, 1, "system").await;
        // Both read it pending.
        let (yes, d1) = c.decided(approval.id, &first, Verdict::Approve).await;
        let (also, d2) = c.decided(approval.id, &late, Verdict::Reject).await;
        let resume = c.resume(&v1, 2);
        c.store
            .record_decision(&yes, &d1, Some(&resume))
            .await
            .unwrap();

        // The late one's decision and its progress are refused together.
        let mut late_progress = c.resume(&v1, 2);
        late_progress.instance.version = 3;
        late_progress.instance.state = InstanceState::Compensating;
        late_progress.history[0].seq = 3;
        let err = c
            .store
            .record_decision(&also, &d2, Some(&late_progress))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Stale("approval")), "{err:?}");
        assert_eq!(c.store.get_approval(approval.id).await.unwrap(), yes);
        assert_eq!(
            c.store.get_instance(v1.id).await.unwrap().0,
            resume.instance
        );
        assert_eq!(c.store.instance_history(v1.id).await.unwrap().len(), 2);

        // Cancelled approvals take no decision either.
        let (v2, approval) = c.waiting(None, 1, "system").await;
        let mut cancelled = approval.clone();
        cancelled.cancel(c.clock.now());
        let mut v2b = c.next(&v2);
        v2b.state = InstanceState::Cancelled;
        c.store
            .commit_progress(&[Progress {
                approvals: vec![cancelled.clone()],
                ..Case::bare(&v2b)
            }])
            .await
            .unwrap();
        let mut stale = approval.clone();
        let d = c.decision(&stale, &first, Verdict::Approve);
        stale.apply(d.clone());
        assert!(matches!(
            c.store.record_decision(&stale, &d, None).await,
            Err(StoreError::Stale("approval"))
        ));
        assert_eq!(c.store.get_approval(approval.id).await.unwrap(), cancelled);
    }

    pub async fn a_stale_progress_rolls_the_decision_back(c: &Case) {
        let lead = c.staff("lead.one", Role::Lead).await;
        let (v1, approval) = c.waiting(None, 1, "system").await;
        // The instance moved on since the decider read it.
        let moved = c.next(&v1);
        c.store
            .commit_progress(&[Case::bare(&moved)])
            .await
            .unwrap();

        let (yes, d) = c.decided(approval.id, &lead, Verdict::Approve).await;
        let err = c
            .store
            .record_decision(&yes, &d, Some(&c.resume(&v1, 2)))
            .await
            .unwrap_err();
        assert!(
            matches!(err, StoreError::Stale("workflow instance")),
            "{err:?}"
        );
        let stored = c.store.get_approval(approval.id).await.unwrap();
        assert_eq!(stored, approval, "the decision is rolled back too");
        assert!(stored.decisions.is_empty());

        // With the instance read again, the same decision goes through.
        c.store
            .record_decision(&yes, &d, Some(&c.resume(&moved, 2)))
            .await
            .unwrap();
        assert_eq!(c.store.get_approval(approval.id).await.unwrap(), yes);
        assert_eq!(c.version_of(v1.id).await, 3);
    }

    pub async fn overdue_approvals_are_filtered_and_ordered(c: &Case) {
        let lead = c.staff("lead.one", Role::Lead).await;
        let t = c.clock.now();
        let at = |ms: i64| Some(t + Duration::milliseconds(ms));
        // Sub-second deadlines: on SQLite, text that sorts as the instants do.
        let (_, late) = c.waiting_until(None, 1, "system", at(60_000)).await;
        let (_, half) = c.waiting_until(None, 1, "system", at(1_500)).await;
        let (_, whole) = c.waiting_until(None, 1, "system", at(1_000)).await;
        let (_, early) = c.waiting_until(None, 1, "system", at(500)).await;
        let (_, never) = c.waiting_until(None, 1, "system", None).await;
        let (_, decided) = c.waiting_until(None, 1, "system", at(100)).await;
        let (v_esc, escalated) = c.waiting_until(None, 1, "system", at(200)).await;
        let (_, voted) = c.waiting_until(None, 2, "system", at(300)).await;

        let (yes, d) = c.decided(decided.id, &lead, Verdict::Approve).await;
        c.store.record_decision(&yes, &d, None).await.unwrap();
        let (half_voted, d) = c.decided(voted.id, &lead, Verdict::Approve).await;
        c.store
            .record_decision(&half_voted, &d, None)
            .await
            .unwrap();
        let mut esc = escalated.clone();
        esc.escalate(t + Duration::milliseconds(250));
        c.store
            .commit_progress(&[Progress {
                approvals: vec![esc],
                ..Case::bare(&c.next(&v_esc))
            }])
            .await
            .unwrap();

        let ids = |v: Vec<Approval>| v.into_iter().map(|a| a.id).collect::<Vec<_>>();
        let overdue = |ms: i64, limit: u32| async move {
            c.store
                .overdue_approvals(t + Duration::milliseconds(ms), limit)
                .await
                .unwrap()
        };
        assert!(overdue(299, 10).await.is_empty());
        let found = overdue(1_000, 10).await;
        assert_eq!(found[0], half_voted, "with its decisions");
        assert_eq!(ids(found), vec![voted.id, early.id, whole.id]);
        assert_eq!(ids(overdue(999, 10).await), vec![voted.id, early.id]);
        assert_eq!(ids(overdue(1_000, 2).await), vec![voted.id, early.id]);
        assert_eq!(
            ids(overdue(3_600_000, 10).await),
            vec![voted.id, early.id, whole.id, half.id, late.id]
        );
        assert!(!ids(overdue(i64::from(i32::MAX), 100).await).contains(&never.id));
    }

    pub async fn approvals_and_tasks_list_by_filters_in_pages(c: &Case) {
        let acme = c.insert("acme").await;
        let globex = c.insert("globex").await;
        let (lead, other) = (
            c.staff("lead.one", Role::Lead).await,
            c.staff("lead.two", Role::Lead).await,
        );
        let mut approvals = Vec::new();
        let mut tasks = Vec::new();
        for (tenant, count) in [(Some(acme.id), 4), (Some(globex.id), 2), (None, 1)] {
            for _ in 0..count {
                let (instance, approval) = c.waiting(tenant, 2, "system").await;
                let task = c.task_for(&instance, "c-apply");
                c.store
                    .commit_progress(&[Progress {
                        tasks: vec![task.clone()],
                        notifications: Vec::new(),
                        ..Case::bare(&c.next(&instance))
                    }])
                    .await
                    .unwrap();
                approvals.push(approval);
                tasks.push((instance, task));
            }
        }
        // Some decisions: two (approved) on acme's second, one on its third,
        // a rejection on globex's first; acme's second task is done.
        for (i, who, verdict) in [
            (1, &lead, Verdict::Modify),
            (1, &other, Verdict::Approve),
            (2, &other, Verdict::Approve),
            (4, &lead, Verdict::Reject),
        ] {
            let (a, d) = c.decided(approvals[i].id, who, verdict).await;
            c.store.record_decision(&a, &d, None).await.unwrap();
            approvals[i] = a;
        }
        let (instance, task) = &tasks[1];
        let mut done = task.clone();
        done.complete(&lead, json!({"ok": true}), None, c.clock.now())
            .unwrap();
        c.store
            .complete_task(
                &done,
                &c.resume(&c.store.get_instance(instance.id).await.unwrap().0, 2),
            )
            .await
            .unwrap();
        tasks[1].1 = done;
        let tasks: Vec<HumanTask> = tasks.into_iter().map(|(_, t)| t).collect();

        let list = |query: ApprovalQuery| async move {
            c.store
                .list_approvals(&ApprovalQuery {
                    within: None,
                    limit: 100,
                    ..query
                })
                .await
                .unwrap()
        };
        assert_eq!(
            list(ApprovalQuery::default()).await,
            approvals,
            "everything, with decisions"
        );
        assert_eq!(list(ApprovalQuery::default()).await[1].decisions.len(), 2);
        let ids = |v: &[Approval]| v.iter().map(|a| a.id).collect::<Vec<_>>();
        assert_eq!(
            ids(&list(ApprovalQuery {
                within: None,
                tenant: Some(acme.id),
                ..Default::default()
            })
            .await),
            ids(&approvals[..4])
        );
        assert_eq!(
            list(ApprovalQuery {
                within: None,
                tenant: Some(acme.id),
                state: Some(ApprovalState::Pending),
                ..Default::default()
            })
            .await,
            vec![
                approvals[0].clone(),
                approvals[2].clone(),
                approvals[3].clone()
            ]
        );
        assert_eq!(
            list(ApprovalQuery {
                within: None,
                state: Some(ApprovalState::Rejected),
                ..Default::default()
            })
            .await,
            vec![approvals[4].clone()]
        );
        assert_eq!(
            list(ApprovalQuery {
                within: None,
                instance: Some(approvals[5].instance_id),
                ..Default::default()
            })
            .await,
            vec![approvals[5].clone()]
        );
        assert!(
            list(ApprovalQuery {
                within: None,
                tenant: Some(globex.id),
                state: Some(ApprovalState::Approved),
                ..Default::default()
            })
            .await
            .is_empty()
        );
        // Pages of two, each approval once, each with all its decisions.
        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = c
                .store
                .list_approvals(&ApprovalQuery {
                    within: None,
                    after,
                    limit: 2,
                    ..Default::default()
                })
                .await
                .unwrap();
            if page.is_empty() {
                break;
            }
            assert!(page.len() <= 2);
            after = page.last().map(|a| a.id);
            seen.extend(page);
        }
        assert_eq!(seen, approvals);

        let list = |query: TaskQuery| async move {
            c.store
                .list_tasks(&TaskQuery {
                    within: None,
                    limit: 100,
                    ..query
                })
                .await
                .unwrap()
        };
        assert_eq!(list(TaskQuery::default()).await, tasks);
        assert_eq!(
            list(TaskQuery {
                within: None,
                tenant: Some(globex.id),
                ..Default::default()
            })
            .await,
            tasks[4..6].to_vec()
        );
        assert_eq!(
            list(TaskQuery {
                within: None,
                state: Some(TaskState::Done),
                ..Default::default()
            })
            .await,
            vec![tasks[1].clone()]
        );
        assert_eq!(
            list(TaskQuery {
                within: None,
                tenant: Some(acme.id),
                state: Some(TaskState::Open),
                ..Default::default()
            })
            .await
            .len(),
            3
        );
        assert_eq!(
            list(TaskQuery {
                within: None,
                instance: Some(tasks[6].instance_id),
                ..Default::default()
            })
            .await,
            vec![tasks[6].clone()]
        );
        let first = c
            .store
            .list_tasks(&TaskQuery {
                within: None,
                limit: 3,
                ..Default::default()
            })
            .await
            .unwrap();
        let rest = c
            .store
            .list_tasks(&TaskQuery {
                within: None,
                after: Some(first[2].id),
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!([first, rest].concat(), tasks);
    }

    pub async fn a_task_is_completed_once(c: &Case) {
        let tech = c.staff("tech.one", Role::Technician).await;
        let admin = c.staff("admin.one", Role::Admin).await;
        let v1 = c.instance(None, "apply-standard");
        let task = c.task_for(&v1, "a-apply");
        let mut start = c.start(&v1, &["a-apply"]);
        start.tasks.push(task.clone());
        c.store.commit_progress(&[start]).await.unwrap();

        // A stale progress rolls the completion back.
        let moved = c.next(&v1);
        c.store
            .commit_progress(&[Case::bare(&moved)])
            .await
            .unwrap();
        let mut done = task.clone();
        done.complete(
            &tech,
            json!({"applied": 200, "skipped": ["globex"]}),
            Some("change ticket CHG-42"),
            c.clock.now(),
        )
        .unwrap();
        assert!(matches!(
            c.store.complete_task(&done, &c.resume(&v1, 2)).await,
            Err(StoreError::Stale("workflow instance"))
        ));
        assert_eq!(c.store.get_task(task.id).await.unwrap(), task);

        // Progress of another instance, or a task not completed, is refused.
        let other = c.instance(None, "apply-standard");
        c.store
            .commit_progress(&[c.start(&other, &[])])
            .await
            .unwrap();
        for (t, p) in [(&done, c.resume(&other, 2)), (&task, c.resume(&moved, 2))] {
            let err = c.store.complete_task(t, &p).await.unwrap_err();
            assert!(matches!(err, StoreError::Conflict(_)), "{err:?}");
        }

        let resume = c.resume(&moved, 2);
        c.store.complete_task(&done, &resume).await.unwrap();
        assert_eq!(c.store.get_task(task.id).await.unwrap(), done);
        assert_eq!(
            c.store.get_instance(v1.id).await.unwrap().0,
            resume.instance
        );

        // A second completion (from an old read) is stale, and so is its progress.
        let mut twice = task.clone();
        twice
            .complete(&admin, json!({"applied": 0}), None, c.clock.now())
            .unwrap();
        let err = c
            .store
            .complete_task(&twice, &c.resume(&resume.instance, 3))
            .await
            .unwrap_err();
        assert!(matches!(err, StoreError::Stale("human task")), "{err:?}");
        assert_eq!(c.store.get_task(task.id).await.unwrap(), done);
        assert_eq!(c.version_of(v1.id).await, 3);

        // A task that does not exist, or completed by an operator who does not.
        let mut ghost_task = c.task_for(&v1, "b-missing");
        ghost_task
            .complete(&tech, json!(1), None, c.clock.now())
            .unwrap();
        assert!(matches!(
            c.store
                .complete_task(&ghost_task, &c.resume(&resume.instance, 3))
                .await,
            Err(StoreError::NotFound("human task"))
        ));
        let v2 = c.instance(None, "apply-standard");
        let open = c.task_for(&v2, "a-apply");
        let mut start = c.start(&v2, &[]);
        start.tasks.push(open.clone());
        c.store.commit_progress(&[start]).await.unwrap();
        let mut by_ghost = open.clone();
        by_ghost
            .complete(
                &c.operator("ghost", Role::Admin),
                json!(1),
                None,
                c.clock.now(),
            )
            .unwrap();
        assert!(matches!(
            c.store.complete_task(&by_ghost, &c.resume(&v2, 2)).await,
            Err(StoreError::NotFound("operator"))
        ));
        assert_eq!(c.store.get_task(open.id).await.unwrap(), open);
    }
}

/// Per-tenant gate settings (migration 0005).
mod gate_setting_cases {
    use super::*;
    use gatehouse_core::DomainError;
    use gatehouse_core::gate::{GateLevel, GatePolicy, GateSetting, ProcessArea};

    fn setting(
        c: &Case,
        tenant: TenantId,
        area: ProcessArea,
        level: Option<GateLevel>,
        reason: &str,
    ) -> GateSetting {
        // Sub-second times must round-trip exactly.
        c.clock.advance(Duration::microseconds(1_234_567));
        GateSetting::new(
            tenant,
            area,
            level,
            "op_01jd8x3k2q9f6v0c4m7r5t8w1y",
            reason,
            c.clock.now(),
        )
        .unwrap()
    }

    pub async fn gate_settings_are_per_tenant_and_obey_floors(c: &Case) {
        let acme = c.insert("acme").await;
        let globex = c.insert("globex").await;
        assert!(c.store.gate_settings(acme.id).await.unwrap().is_empty());

        let raised = setting(
            c,
            acme.id,
            ProcessArea::JoinerAccess,
            Some(GateLevel::L2),
            "client wants approvals",
        );
        c.store.put_gate_setting(&raised, &[]).await.unwrap();
        let onboarding = setting(
            c,
            acme.id,
            ProcessArea::ClientOnboarding,
            Some(GateLevel::L3),
            "big client",
        );
        c.store.put_gate_setting(&onboarding, &[]).await.unwrap();
        let other = setting(
            c,
            globex.id,
            ProcessArea::Revocation,
            Some(GateLevel::L1),
            "review leavers",
        );
        c.store.put_gate_setting(&other, &[]).await.unwrap();

        // In area-name order, each tenant only its own.
        assert_eq!(
            c.store.gate_settings(acme.id).await.unwrap(),
            vec![onboarding.clone(), raised.clone()]
        );
        assert_eq!(
            c.store.gate_settings(globex.id).await.unwrap(),
            vec![other.clone()]
        );

        // Below the floor: refused by the domain rule before any SQL, nothing written.
        let mut below = raised.clone();
        below.area = ProcessArea::ElevatedAccess;
        below.level = Some(GateLevel::L1);
        match c.store.put_gate_setting(&below, &[]).await {
            Err(StoreError::Invalid(DomainError::Invalid { field, reason })) => {
                assert_eq!(field, "gate");
                assert!(reason.contains("floor is L2"), "{reason}");
            }
            other => panic!("a level below the floor was not refused: {other:?}"),
        }
        // Overwriting an existing override with a level below its floor, too.
        let mut lowered = onboarding.clone();
        lowered.level = Some(GateLevel::L0);
        assert!(matches!(
            c.store.put_gate_setting(&lowered, &[]).await,
            Err(StoreError::Invalid(_))
        ));
        let mut no_reason = raised.clone();
        no_reason.reason = String::new();
        assert!(matches!(
            c.store.put_gate_setting(&no_reason, &[]).await,
            Err(StoreError::Invalid(_))
        ));
        assert_eq!(
            c.store.gate_settings(acme.id).await.unwrap(),
            vec![onboarding.clone(), raised.clone()]
        );

        // Replacing and clearing: the last change is kept, with who and why.
        let lowered = setting(
            c,
            acme.id,
            ProcessArea::JoinerAccess,
            Some(GateLevel::L0),
            "trusted HR feed",
        );
        c.store.put_gate_setting(&lowered, &[]).await.unwrap();
        let cleared = setting(
            c,
            acme.id,
            ProcessArea::ClientOnboarding,
            None,
            "back to the standard",
        );
        c.store.put_gate_setting(&cleared, &[]).await.unwrap();
        let stored = c.store.gate_settings(acme.id).await.unwrap();
        assert_eq!(stored, vec![cleared.clone(), lowered.clone()]);
        let policy = GatePolicy::from_settings(&stored).unwrap();
        assert_eq!(policy.effective(ProcessArea::JoinerAccess), GateLevel::L0);
        assert_eq!(
            policy.effective(ProcessArea::ClientOnboarding),
            GateLevel::L2
        );
        assert_eq!(policy.overrides().count(), 1);

        // The other tenant never saw any of it.
        assert_eq!(c.store.gate_settings(globex.id).await.unwrap(), vec![other]);
        // A tenant that does not exist has nothing and can be given nothing.
        let ghost = TenantId::generate(c.clock.now());
        assert!(c.store.gate_settings(ghost).await.unwrap().is_empty());
        let orphan = setting(
            c,
            ghost,
            ProcessArea::JoinerAccess,
            Some(GateLevel::L2),
            "nobody",
        );
        assert!(matches!(
            c.store.put_gate_setting(&orphan, &[]).await,
            Err(StoreError::NotFound("tenant"))
        ));
    }

    pub async fn deleting_a_tenant_destroys_its_gate_settings(c: &Case) {
        let mut doomed = c.insert("doomed").await;
        let kept = c.insert("kept").await;
        for t in [&doomed, &kept] {
            let s = setting(
                c,
                t.id,
                ProcessArea::Revocation,
                Some(GateLevel::L2),
                "four eyes",
            );
            c.store.put_gate_setting(&s, &[]).await.unwrap();
        }
        doomed.state = TenantState::Deleted;
        doomed.version += 1;
        c.store.delete_tenant(&doomed, &[]).await.unwrap();
        assert!(c.store.gate_settings(doomed.id).await.unwrap().is_empty());
        // A late write (another node, a slow request) is refused.
        let late = setting(
            c,
            doomed.id,
            ProcessArea::JoinerAccess,
            Some(GateLevel::L3),
            "too late",
        );
        assert!(matches!(
            c.store.put_gate_setting(&late, &[]).await,
            Err(StoreError::NotFound("tenant"))
        ));
        assert!(c.store.gate_settings(doomed.id).await.unwrap().is_empty());
        assert_eq!(c.store.gate_settings(kept.id).await.unwrap().len(), 1);
    }
}

/// The aggregates `/metrics` reads.
mod metrics_cases {
    use super::*;

    pub async fn metrics_count_instances_pending_approvals_and_overrides(c: &Case) {
        assert!(
            c.store
                .count_instances_by_state(None)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            c.store.approval_stats(None).await.unwrap(),
            Default::default()
        );

        let tenant = c.insert("acme").await;
        let mut batch = Vec::new();
        for state in [
            InstanceState::Running,
            InstanceState::Running,
            InstanceState::Completed,
        ] {
            let mut instance = c.instance(Some(tenant.id), "count");
            instance.state = state;
            if state.is_final() {
                instance.next_run_at = None;
                // Took a minute and a half.
                instance.updated_at = instance.created_at + Duration::seconds(90);
            }
            batch.push(c.start(&instance, &["a"]));
        }
        c.store.commit_progress(&batch).await.unwrap();
        let (_, first) = c.waiting(Some(tenant.id), 1, "system").await;
        let (_, second) = c.waiting(None, 2, "system").await;
        assert!(first.created_at < second.created_at);

        assert_eq!(
            c.store.count_instances_by_state(None).await.unwrap(),
            vec![
                (InstanceState::Completed, 1),
                (InstanceState::Running, 2),
                (InstanceState::Waiting, 2),
            ]
        );
        let stats = c.store.approval_stats(None).await.unwrap();
        assert_eq!(stats.pending, 2);
        assert_eq!(stats.oldest_pending_since, Some(first.created_at));
        assert_eq!(stats.overrides, 0);

        // A modifying decision settles the first: one override, one pending left.
        let lead = c.staff("lea.lead", Role::Lead).await;
        let (approval, decision) = c.decided(first.id, &lead, Verdict::Modify).await;
        c.store
            .record_decision(&approval, &decision, None)
            .await
            .unwrap();
        // An approving one on the second (2 required) leaves it pending.
        let other = c.staff("leo.lead", Role::Lead).await;
        let (approval, decision) = c.decided(second.id, &other, Verdict::Approve).await;
        c.store
            .record_decision(&approval, &decision, None)
            .await
            .unwrap();
        let stats = c.store.approval_stats(None).await.unwrap();
        assert_eq!(stats.pending, 1);
        assert_eq!(stats.oldest_pending_since, Some(second.created_at));
        assert_eq!(stats.overrides, 1);

        // Limited to acme (a scoped operator's analytics): its four
        // instances and the first approval (now decided, with the override);
        // the second approval and its instance are the installation's.
        let only = [tenant.id];
        let counts = c.store.count_instances_by_state(Some(&only)).await.unwrap();
        assert_eq!(
            counts,
            vec![
                (InstanceState::Completed, 1),
                (InstanceState::Running, 2),
                (InstanceState::Waiting, 1),
            ]
        );
        let stats = c.store.approval_stats(Some(&only)).await.unwrap();
        assert_eq!(stats.pending, 0);
        assert_eq!(stats.oldest_pending_since, None);
        assert_eq!(stats.overrides, 1);
        let none = c.store.approval_stats(Some(&[])).await.unwrap();
        assert_eq!((none.pending, none.overrides), (0, 0));

        // By day: all started today (UTC), each template and state counted,
        // the completed run's duration measured.
        let now = c.clock.now();
        let days = c
            .store
            .instance_days(now - Duration::days(1), None)
            .await
            .unwrap();
        let today = now.to_offset(time::UtcOffset::UTC).date();
        assert!(days.iter().all(|d| d.day == today), "{days:?}");
        let row = |days: &[gatehouse_core::store::InstanceDay], template: &str, state| {
            days.iter()
                .find(|d| d.template == template && d.state == state)
                .map(|d| (d.count, d.mean_secs))
        };
        assert_eq!(row(&days, "count", InstanceState::Running), Some((2, None)));
        let (done, secs) = row(&days, "count", InstanceState::Completed).unwrap();
        assert_eq!(done, 1);
        assert!(secs.is_some_and(|s| (s - 90.0).abs() < 0.01), "{secs:?}");
        assert_eq!(row(&days, "grant", InstanceState::Waiting), Some((2, None)));
        // Acme's only; nothing started since tomorrow.
        let acme = c
            .store
            .instance_days(now - Duration::days(1), Some(&only))
            .await
            .unwrap();
        assert_eq!(row(&acme, "grant", InstanceState::Waiting), Some((1, None)));
        assert!(
            c.store
                .instance_days(now + Duration::days(1), None)
                .await
                .unwrap()
                .is_empty()
        );
    }
    pub async fn one_audit_signing_key_is_active_and_rewraps_by_cas(c: &Case) {
        use gatehouse_core::audit_key::AuditSigningKey;
        assert!(matches!(
            c.store.active_audit_key().await,
            Err(StoreError::NotFound("audit signing key"))
        ));
        assert!(c.store.list_audit_keys().await.unwrap().is_empty());
        let key = AuditSigningKey {
            name: "gatehouse.example/audit".into(),
            public_key: [7; 32],
            wrapped: WrappedKey {
                kek_id: "local:1".into(),
                ciphertext: vec![1; 60],
            },
            created_at: c.clock.now(),
            rewrapped_at: None,
            retired_at: None,
        };
        c.store.insert_audit_key(&key, &[]).await.unwrap();
        assert_eq!(c.store.active_audit_key().await.unwrap(), key);
        // A second node creating the first key at the same time loses.
        let other = AuditSigningKey {
            public_key: [8; 32],
            ..key.clone()
        };
        assert!(matches!(
            c.store.insert_audit_key(&other, &[]).await,
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(c.store.list_audit_keys().await.unwrap(), vec![key.clone()]);

        let new = WrappedKey {
            kek_id: "local:2".into(),
            ciphertext: vec![2; 60],
        };
        c.clock.advance(Duration::seconds(3));
        let at = c.clock.now();
        c.store
            .rewrap_audit_key(&key.public_key, "local:1", &new, at, &[])
            .await
            .unwrap();
        let stored = c.store.active_audit_key().await.unwrap();
        assert_eq!(
            (stored.wrapped, stored.rewrapped_at),
            (new.clone(), Some(at))
        );
        assert!(matches!(
            c.store
                .rewrap_audit_key(&key.public_key, "local:1", &new, at, &[])
                .await,
            Err(StoreError::Stale("audit signing key"))
        ));
        assert!(matches!(
            c.store
                .rewrap_audit_key(&[9; 32], "local:2", &new, at, &[])
                .await,
            Err(StoreError::NotFound("audit signing key"))
        ));
    }
}

/// The audit records of the API's mutations: queued in the mutation's own
/// transaction, so a record exists if and only if its change committed.
mod provenance_cases {
    use super::*;
    use gatehouse_core::audit::{AuditRecord, Provenance};
    use gatehouse_core::gate::{GateLevel, GateSetting, ProcessArea};

    fn record(c: &Case, tenant: Option<TenantId>, action: &str) -> AuditRecord {
        Provenance::system("test", c.clock.now()).record(tenant, action, "subject", json!({}))
    }

    /// The actions of every queued record, oldest first.
    async fn queued(c: &Case) -> Vec<String> {
        let pending = c.store.pending_audit(100).await.unwrap();
        pending.into_iter().map(|(_, r)| r.action).collect()
    }

    pub async fn tenant_groups_widen_scopes_and_record_only_changes(c: &Case) {
        use gatehouse_core::id::TenantGroupId;
        use gatehouse_core::operator::Scope;
        use gatehouse_core::tenant_group::TenantGroup;
        use std::collections::BTreeSet;
        let (a, b, named) = (
            c.insert("alpha").await,
            c.insert("beta").await,
            c.insert("gamma").await,
        );
        let group = |slug: &str, tenants: &[TenantId]| {
            TenantGroup::new(
                TenantSlug::parse(slug).unwrap(),
                DisplayName::parse("EU clients").unwrap(),
                tenants.iter().copied().collect(),
                c.clock.now(),
            )
        };
        let eu = group("eu-clients", &[a.id]);
        c.store
            .insert_tenant_group(&eu, &[record(c, None, "tenant_group.created")])
            .await
            .unwrap();
        let mut expected = vec!["tenant_group.created"];
        // A taken slug, or a member that does not exist: nothing stored.
        assert!(matches!(
            c.store
                .insert_tenant_group(&group("eu-clients", &[]), &[record(c, None, "refused")])
                .await,
            Err(StoreError::Conflict(_))
        ));
        let ghost = TenantId::generate(c.clock.now());
        assert!(matches!(
            c.store
                .insert_tenant_group(&group("ghosts", &[ghost]), &[record(c, None, "refused")])
                .await,
            Err(StoreError::NotFound("tenant"))
        ));
        assert!(matches!(
            c.store
                .find_tenant_group_by_slug(&TenantSlug::parse("ghosts").unwrap())
                .await,
            Err(StoreError::NotFound("tenant group"))
        ));
        assert_eq!(c.store.get_tenant_group(eu.id).await.unwrap(), eu);
        assert_eq!(
            c.store.find_tenant_group_by_slug(&eu.slug).await.unwrap(),
            eu
        );
        assert_eq!(
            c.store.list_tenant_groups().await.unwrap(),
            vec![eu.clone()]
        );

        // An operator scoped to one tenant and the group reaches both; every
        // way of loading an operator says so.
        let op = c.operator("sam", Role::Technician);
        c.store.insert_operator(&op, &[]).await.unwrap();
        let scope = Scope::some([named.id].into(), [eu.id].into());
        assert!(
            c.store
                .set_operator_scope(op.id, &scope, &[record(c, None, "operator.scope.changed")])
                .await
                .unwrap()
        );
        expected.push("operator.scope.changed");
        assert!(
            !c.store
                .set_operator_scope(op.id, &scope, &[record(c, None, "refused")])
                .await
                .unwrap()
        );
        let reach = |tenants: &[TenantId]| {
            Some(
                tenants
                    .iter()
                    .copied()
                    .collect::<BTreeSet<_>>()
                    .into_iter()
                    .collect::<Vec<_>>(),
            )
        };
        let (token, secret) = ApiToken::issue(op.id, "laptop", None, c.clock.now()).unwrap();
        c.store.insert_token(&token, &[]).await.unwrap();
        let session = gatehouse_core::signin::Session {
            id: gatehouse_core::id::SessionId::generate(c.clock.now()),
            operator_id: op.id,
            hash: "session-hash".into(),
            second_factor: true,
            created_at: c.clock.now(),
            expires_at: c.clock.now() + Duration::hours(1),
            revoked_at: None,
        };
        c.store.open_session(&session, None, &[]).await.unwrap();
        let loaded = async |c: &Case| {
            let by_id = c.store.get_operator(op.id).await.unwrap();
            assert_eq!(
                c.store.find_operator_by_name(&op.name).await.unwrap(),
                by_id
            );
            let listed = c.store.list_operators().await.unwrap();
            assert_eq!(listed.iter().find(|o| o.id == op.id), Some(&by_id));
            assert_eq!(c.store.find_token(&secret.hash()).await.unwrap().1, by_id);
            assert_eq!(c.store.find_session("session-hash").await.unwrap().1, by_id);
            by_id
        };
        let sam = loaded(c).await;
        assert_eq!(sam.scope.tenants(), reach(&[a.id, named.id]));
        assert_eq!(sam.scope.groups().collect::<Vec<_>>(), vec![eu.id]);
        assert!(!sam.scope.includes(b.id));

        // Membership changes move the reach; repeating one records nothing.
        assert!(
            c.store
                .set_tenant_group_member(
                    eu.id,
                    b.id,
                    true,
                    &[record(c, None, "tenant_group.tenant_added")]
                )
                .await
                .unwrap()
        );
        assert!(
            !c.store
                .set_tenant_group_member(eu.id, b.id, true, &[record(c, None, "refused")])
                .await
                .unwrap()
        );
        assert!(
            c.store
                .set_tenant_group_member(
                    eu.id,
                    a.id,
                    false,
                    &[record(c, None, "tenant_group.tenant_removed")]
                )
                .await
                .unwrap()
        );
        assert!(
            !c.store
                .set_tenant_group_member(eu.id, a.id, false, &[record(c, None, "refused")])
                .await
                .unwrap()
        );
        expected.extend(["tenant_group.tenant_added", "tenant_group.tenant_removed"]);
        assert_eq!(loaded(c).await.scope.tenants(), reach(&[b.id, named.id]));
        let missing = TenantGroupId::generate(c.clock.now());
        assert!(matches!(
            c.store
                .set_tenant_group_member(missing, b.id, true, &[record(c, None, "refused")])
                .await,
            Err(StoreError::NotFound("tenant group"))
        ));
        assert!(matches!(
            c.store
                .set_tenant_group_member(eu.id, ghost, true, &[record(c, None, "refused")])
                .await,
            Err(StoreError::NotFound("tenant"))
        ));
        // A scope naming a group that does not exist changes nothing.
        assert!(matches!(
            c.store
                .set_operator_scope(
                    op.id,
                    &Scope::some([].into(), [missing].into()),
                    &[record(c, None, "refused")]
                )
                .await,
            Err(StoreError::NotFound("tenant group"))
        ));
        assert_eq!(loaded(c).await.scope.tenants(), reach(&[b.id, named.id]));

        // A group in use is not deleted; once no scope names it, it is,
        // with its memberships.
        assert!(matches!(
            c.store.delete_tenant_group(eu.id, &[record(c, None, "refused")]).await,
            Err(StoreError::Conflict(message)) if message.contains("sam")
        ));
        assert!(
            c.store
                .set_operator_scope(
                    op.id,
                    &Scope::some([named.id].into(), [].into()),
                    &[record(c, None, "operator.scope.changed")]
                )
                .await
                .unwrap()
        );
        expected.push("operator.scope.changed");
        assert_eq!(loaded(c).await.scope.tenants(), reach(&[named.id]));
        c.store
            .delete_tenant_group(eu.id, &[record(c, None, "tenant_group.deleted")])
            .await
            .unwrap();
        expected.push("tenant_group.deleted");
        assert!(matches!(
            c.store.get_tenant_group(eu.id).await,
            Err(StoreError::NotFound("tenant group"))
        ));
        assert!(matches!(
            c.store
                .delete_tenant_group(eu.id, &[record(c, None, "refused")])
                .await,
            Err(StoreError::NotFound("tenant group"))
        ));
        assert_eq!(c.store.list_tenant_groups().await.unwrap(), vec![]);
        // The slug is free again, and the new group starts empty.
        let again = group("eu-clients", &[]);
        c.store
            .insert_tenant_group(&again, &[record(c, None, "tenant_group.created")])
            .await
            .unwrap();
        expected.push("tenant_group.created");
        assert!(
            c.store
                .get_tenant_group(again.id)
                .await
                .unwrap()
                .tenants
                .is_empty()
        );
        assert_eq!(queued(c).await, expected);
    }

    pub async fn mutations_queue_their_records_only_when_they_commit(c: &Case) {
        let (acme, key) = c.tenant("acme", TenantState::Active);
        let created = [
            record(c, None, "tenant.created"),
            record(c, Some(acme.id), "key.created"),
        ];
        c.store.insert_tenant(&acme, &key, &created).await.unwrap();
        let mut expected = vec!["tenant.created", "key.created"];
        assert_eq!(queued(c).await, expected);

        // Refused changes queue nothing.
        let (dup, dup_key) = c.tenant("acme", TenantState::Active);
        assert!(matches!(
            c.store
                .insert_tenant(&dup, &dup_key, &[record(c, None, "refused")])
                .await,
            Err(StoreError::Conflict(_))
        ));
        let mut stale = acme.clone();
        stale.version += 2;
        assert!(matches!(
            c.store
                .update_tenant(&stale, &[record(c, Some(acme.id), "refused")])
                .await,
            Err(StoreError::Stale("tenant"))
        ));
        assert!(matches!(
            c.store
                .delete_secret(
                    acme.id,
                    &name("missing"),
                    &[record(c, Some(acme.id), "refused")]
                )
                .await,
            Err(StoreError::NotFound("secret"))
        ));
        let ghost = TenantId::generate(c.clock.now());
        assert!(matches!(
            c.store
                .put_secret(
                    ghost,
                    &name("x"),
                    b"sealed",
                    c.clock.now(),
                    &[record(c, Some(ghost), "refused")]
                )
                .await,
            Err(StoreError::NotFound("tenant key"))
        ));
        let below = GateSetting {
            level: Some(GateLevel::L0),
            ..GateSetting::new(
                acme.id,
                ProcessArea::ElevatedAccess,
                Some(GateLevel::L3),
                "system",
                "test",
                c.clock.now(),
            )
            .unwrap()
        };
        assert!(
            c.store
                .put_gate_setting(&below, &[record(c, Some(acme.id), "refused")])
                .await
                .is_err()
        );
        assert!(matches!(
            c.store
                .rewrap_tenant_key(
                    acme.id,
                    "local:9",
                    &key.wrapped,
                    c.clock.now(),
                    &[record(c, Some(acme.id), "refused")]
                )
                .await,
            Err(StoreError::Stale("tenant key"))
        ));
        assert_eq!(queued(c).await, expected, "refused changes queued nothing");

        // Accepted changes queue theirs, in commit order.
        let mut updated = acme.clone();
        updated.version += 1;
        c.store
            .update_tenant(&updated, &[record(c, Some(acme.id), "tenant.updated")])
            .await
            .unwrap();
        c.store
            .put_secret(
                acme.id,
                &name("psa.key"),
                b"sealed",
                c.clock.now(),
                &[record(c, Some(acme.id), "tenant.secret.set")],
            )
            .await
            .unwrap();
        let raised = GateSetting::new(
            acme.id,
            ProcessArea::JoinerAccess,
            Some(GateLevel::L2),
            "system",
            "test",
            c.clock.now(),
        )
        .unwrap();
        c.store
            .put_gate_setting(&raised, &[record(c, Some(acme.id), "gate.set")])
            .await
            .unwrap();
        expected.extend(["tenant.updated", "tenant.secret.set", "gate.set"]);
        assert_eq!(queued(c).await, expected);

        // Operators and tokens: a change that changes nothing records nothing.
        let lead = c.operator("lea", Role::Lead);
        c.store
            .insert_operator(&lead, &[record(c, None, "operator.created")])
            .await
            .unwrap();
        assert!(matches!(
            c.store
                .insert_operator(
                    &c.operator("lea", Role::Auditor),
                    &[record(c, None, "refused")]
                )
                .await,
            Err(StoreError::Conflict(_))
        ));
        let (token, _) = ApiToken::issue(lead.id, "ci", None, c.clock.now()).unwrap();
        c.store
            .insert_token(&token, &[record(c, None, "operator.token.issued")])
            .await
            .unwrap();
        assert!(
            c.store
                .revoke_token(
                    token.id,
                    c.clock.now(),
                    &[record(c, None, "operator.token.revoked")]
                )
                .await
                .unwrap()
        );
        assert!(
            !c.store
                .revoke_token(token.id, c.clock.now(), &[record(c, None, "refused")])
                .await
                .unwrap()
        );
        assert!(
            c.store
                .set_operator_disabled(lead.id, true, &[record(c, None, "operator.disabled")])
                .await
                .unwrap()
        );
        assert!(
            !c.store
                .set_operator_disabled(lead.id, true, &[record(c, None, "refused")])
                .await
                .unwrap()
        );
        expected.extend([
            "operator.created",
            "operator.token.issued",
            "operator.token.revoked",
            "operator.disabled",
        ]);
        assert_eq!(queued(c).await, expected);

        // Deletion: a stale one records nothing; the committed one records
        // in the system log.
        let mut doomed = updated.clone();
        doomed.state = TenantState::Deleted;
        doomed.version += 5;
        assert!(matches!(
            c.store
                .delete_tenant(&doomed, &[record(c, None, "refused")])
                .await,
            Err(StoreError::Stale("tenant"))
        ));
        doomed.version = updated.version + 1;
        c.store
            .delete_tenant(&doomed, &[record(c, None, "tenant.deleted")])
            .await
            .unwrap();
        expected.push("tenant.deleted");
        let pending = c.store.pending_audit(100).await.unwrap();
        assert_eq!(
            pending
                .iter()
                .map(|(_, r)| r.action.as_str())
                .collect::<Vec<_>>(),
            expected
        );
        let deleted = pending.last().map(|(_, r)| r.log());
        assert_eq!(deleted.as_deref(), Some(gatehouse_core::audit::SYSTEM_LOG));
    }
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    let db = gatehouse_store::testing::TestDatabase::sqlite().await.unwrap();
                    let case = super::Case { store: db.store.clone(), clock: super::FakeClock::default() };
                    super::cases::$case(&case).await;
                    db.cleanup().await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test]
                async fn $case() {
                    let Some(db) = gatehouse_store::testing::TestDatabase::postgres(stringify!($case)).await.unwrap() else {
                        eprintln!("GATEHOUSE_TEST_DATABASE_URL is not set; the PostgreSQL run is done by .ci/run");
                        return;
                    };
                    let case = super::Case { store: db.store.clone(), clock: super::FakeClock::default() };
                    super::cases::$case(&case).await;
                    db.cleanup().await;
                }
            )*
        }
    };
}

conformance!(
    migrations_are_current_and_idempotent,
    tenants_round_trip,
    live_slugs_are_unique,
    a_deleted_tenants_slug_can_be_reused,
    tenants_list_in_pages_and_by_state,
    updates_detect_lost_writes,
    deleting_a_tenant_shreds_its_key_and_secrets,
    keys_list_in_pages_and_rewrap_only_from_the_expected_kek,
    secrets_are_scoped_to_their_tenant,
    bootstrap_happens_once,
    operators_and_tokens,
    events_are_deduplicated_by_source_and_key,
    submitting_an_event_starts_its_instances_once,
    submitting_a_batch_of_events_commits_them_together,
    due_instances_are_claimed_with_leases,
    concurrent_claims_never_overlap,
    runnable_versions_report_only_running_instances,
    routing_an_event_is_atomic,
    unrouted_events_are_listed_oldest_first,
    progress_inserts_and_updates_with_version_checks,
    a_stale_batch_writes_nothing,
    step_runs_are_replaced_by_upserts,
    history_is_append_only,
    due_instances_are_filtered_and_ordered,
    instances_list_by_filters_in_pages,
    a_large_batch_commits_in_one_call,
    a_deleted_tenants_rows_do_not_disturb_others,
    approvals_and_tasks_travel_with_progress,
    decisions_reach_n_of_m_and_move_the_workflow_on,
    a_second_decision_by_the_same_operator_conflicts,
    the_store_refuses_a_self_approval,
    a_decided_approval_takes_no_more_decisions,
    a_stale_progress_rolls_the_decision_back,
    overdue_approvals_are_filtered_and_ordered,
    approvals_and_tasks_list_by_filters_in_pages,
    a_task_is_completed_once,
    gate_settings_are_per_tenant_and_obey_floors,
    deleting_a_tenant_destroys_its_gate_settings,
    metrics_count_instances_pending_approvals_and_overrides,
    one_audit_signing_key_is_active_and_rewraps_by_cas,
    mutations_queue_their_records_only_when_they_commit,
    tenant_groups_widen_scopes_and_record_only_changes,
);
