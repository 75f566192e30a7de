//! The runtime, on SQLite and (with `GATEHOUSE_TEST_DATABASE_URL`) on
//! PostgreSQL: inbox deduplication, ordering and parallelism, retries with
//! fake time, compensation and parking, gates, pinned versions, and the
//! two crash drills: every step run twice, and a failure at every step.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests fail loudly"
)]

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use gatehouse_core::approval::{Approval, ApprovalState, Decision, HumanTask, TaskState, Verdict};
use gatehouse_core::clock::{Clock, FakeClock};
use gatehouse_core::id::{ApprovalId, HumanTaskId};
use gatehouse_core::id::{EventId, WorkflowId};
use gatehouse_core::operator::{Operator, OperatorName, Role};
use gatehouse_core::store::{
    ApprovalQuery, EngineStore, GateStore, InstanceQuery, StoreError, StoreResult, TaskQuery,
};
use gatehouse_core::tenant::DisplayName;
use gatehouse_core::workflow::{
    DedupKey, EventKind, EventSource, HistoryEntry, InboundEvent, Instance, InstanceState,
    Progress, StepRun, StepState,
};
use gatehouse_engine::action::{Action, ActionCall, ActionError, ActionRegistry};
use gatehouse_engine::runtime::{Engine, EngineConfig, NewEvent};
use gatehouse_engine::template::Template;
use gatehouse_store::testing::TestDatabase;
use serde_json::{Value, json};

/// A target that counts calls and performs each idempotency key's effect once.
#[derive(Default)]
struct Target {
    calls: Mutex<Vec<String>>,
    /// Idempotency key → times the effect was performed (at most once).
    effects: Mutex<BTreeMap<String, u32>>,
    /// Idempotency key → repeated calls answered from the first result.
    replays: Mutex<BTreeMap<String, u32>>,
    /// Step id → how many more attempts fail (retryable).
    flaky: Mutex<HashMap<String, u32>>,
    /// Step ids that fail permanently.
    broken: Mutex<Vec<String>>,
    /// Retry-After to send with retryable failures.
    retry_after: Mutex<Option<std::time::Duration>>,
}

impl Target {
    fn effects(&self) -> BTreeMap<String, u32> {
        self.effects.lock().unwrap().clone()
    }
    fn calls(&self) -> Vec<String> {
        self.calls.lock().unwrap().clone()
    }
    fn flaky(&self, step: &str, failures: u32) {
        self.flaky.lock().unwrap().insert(step.into(), failures);
    }
    fn broken(&self, step: &str) {
        self.broken.lock().unwrap().push(step.into());
    }
}

struct Do(Arc<Target>);

#[async_trait]
impl Action for Do {
    async fn run(&self, call: ActionCall<'_>) -> Result<Value, ActionError> {
        let t = &self.0;
        t.calls
            .lock()
            .unwrap()
            .push(call.idempotency_key.to_owned());
        if t.broken.lock().unwrap().iter().any(|s| s == call.step_id) {
            return Err(ActionError::permanent(format!(
                "{} is broken",
                call.step_id
            )));
        }
        if let Some(left) = t.flaky.lock().unwrap().get_mut(call.step_id)
            && *left > 0
        {
            *left -= 1;
            return Err(ActionError::Retryable {
                message: "try again".into(),
                retry_after: *t.retry_after.lock().unwrap(),
            });
        }
        let mut effects = t.effects.lock().unwrap();
        if effects.contains_key(call.idempotency_key) {
            *t.replays
                .lock()
                .unwrap()
                .entry(call.idempotency_key.to_owned())
                .or_default() += 1;
        } else {
            effects.insert(call.idempotency_key.to_owned(), 1);
        }
        Ok(
            json!({ "step": call.step_id, "value": call.params.get("value").cloned().unwrap_or(Value::Null) }),
        )
    }
}

/// A store that loses the first `fail` commits after running them (a crash
/// between the actions and the journal).
struct Crashy {
    inner: Arc<dyn gatehouse_core::store::Store>,
    fail: Mutex<u32>,
}

#[async_trait]
impl EngineStore for Crashy {
    async fn record_event(&self, e: &InboundEvent) -> StoreResult<(InboundEvent, bool)> {
        self.inner.record_event(e).await
    }
    async fn submit_event(
        &self,
        e: &InboundEvent,
        s: &[Progress],
    ) -> StoreResult<(InboundEvent, bool)> {
        self.inner.submit_event(e, s).await
    }
    async fn route_event(&self, e: EventId, o: &Value, s: &[Progress]) -> StoreResult<()> {
        self.inner.route_event(e, o, s).await
    }
    async fn unrouted_events(&self, l: u32) -> StoreResult<Vec<InboundEvent>> {
        self.inner.unrouted_events(l).await
    }
    async fn get_event(&self, id: EventId) -> StoreResult<InboundEvent> {
        self.inner.get_event(id).await
    }
    async fn get_instance(&self, id: WorkflowId) -> StoreResult<(Instance, Vec<StepRun>)> {
        self.inner.get_instance(id).await
    }
    async fn list_instances(&self, q: &InstanceQuery) -> StoreResult<Vec<Instance>> {
        self.inner.list_instances(q).await
    }
    async fn instance_history(&self, id: WorkflowId) -> StoreResult<Vec<HistoryEntry>> {
        self.inner.instance_history(id).await
    }
    async fn due_instances(
        &self,
        now: time::OffsetDateTime,
        l: u32,
    ) -> StoreResult<Vec<WorkflowId>> {
        self.inner.due_instances(now, l).await
    }
    async fn submit_events(
        &self,
        batch: &[(InboundEvent, Vec<Progress>)],
    ) -> StoreResult<Vec<(InboundEvent, bool)>> {
        self.inner.submit_events(batch).await
    }
    async fn claim_due(
        &self,
        node: &str,
        now: time::OffsetDateTime,
        until: time::OffsetDateTime,
        l: u32,
    ) -> StoreResult<Vec<(WorkflowId, i64)>> {
        self.inner.claim_due(node, now, until, l).await
    }
    async fn runnable_versions(&self, ids: &[WorkflowId]) -> StoreResult<Vec<(WorkflowId, i64)>> {
        self.inner.runnable_versions(ids).await
    }
    async fn release_leases(&self, node: &str) -> StoreResult<u64> {
        self.inner.release_leases(node).await
    }
    async fn listen_for_work(
        &self,
    ) -> StoreResult<Option<Box<dyn gatehouse_core::store::WorkListener>>> {
        self.inner.listen_for_work().await
    }
    async fn commit_progress(&self, batch: &[Progress]) -> StoreResult<()> {
        {
            let mut fail = self.fail.lock().unwrap();
            if *fail > 0 {
                *fail -= 1;
                return Err(StoreError::Backend {
                    context: "simulated crash",
                    source: "lost".into(),
                });
            }
        }
        self.inner.commit_progress(batch).await
    }
}

#[async_trait]
impl GateStore for Crashy {
    async fn get_approval(&self, id: ApprovalId) -> StoreResult<Approval> {
        self.inner.get_approval(id).await
    }
    async fn list_approvals(&self, q: &ApprovalQuery) -> StoreResult<Vec<Approval>> {
        self.inner.list_approvals(q).await
    }
    async fn record_decision(
        &self,
        a: &Approval,
        d: &Decision,
        p: Option<&Progress>,
    ) -> StoreResult<()> {
        self.inner.record_decision(a, d, p).await
    }
    async fn overdue_approvals(
        &self,
        now: time::OffsetDateTime,
        l: u32,
    ) -> StoreResult<Vec<Approval>> {
        self.inner.overdue_approvals(now, l).await
    }
    async fn escalate_approval(&self, a: &Approval, p: &Progress) -> StoreResult<()> {
        self.inner.escalate_approval(a, p).await
    }
    async fn get_task(&self, id: HumanTaskId) -> StoreResult<HumanTask> {
        self.inner.get_task(id).await
    }
    async fn list_tasks(&self, q: &TaskQuery) -> StoreResult<Vec<HumanTask>> {
        self.inner.list_tasks(q).await
    }
    async fn complete_task(&self, t: &HumanTask, p: &Progress) -> StoreResult<()> {
        self.inner.complete_task(t, p).await
    }
    async fn gate_settings(
        &self,
        t: gatehouse_core::id::TenantId,
    ) -> StoreResult<Vec<gatehouse_core::gate::GateSetting>> {
        self.inner.gate_settings(t).await
    }
    async fn put_gate_setting(
        &self,
        s: &gatehouse_core::gate::GateSetting,
        audit: &[gatehouse_core::audit::AuditRecord],
    ) -> StoreResult<()> {
        self.inner.put_gate_setting(s, audit).await
    }
}

struct Env {
    db: TestDatabase,
    clock: Arc<FakeClock>,
    target: Arc<Target>,
}

impl Env {
    fn engine(&self, templates: Vec<Template>) -> Engine {
        self.engine_on(self.db.store.clone(), templates)
    }

    async fn operator(&self, name: &str, role: Role) -> Operator {
        let operator = Operator::new(
            OperatorName::parse(name).unwrap(),
            DisplayName::parse(name).unwrap(),
            role,
            self.clock.now(),
        );
        self.db.store.insert_operator(&operator, &[]).await.unwrap();
        operator
    }

    fn engine_on(
        &self,
        store: Arc<dyn gatehouse_engine::runtime::WorkflowStore>,
        templates: Vec<Template>,
    ) -> Engine {
        let mut actions = ActionRegistry::new();
        actions.register("test.do", Arc::new(Do(self.target.clone())));
        actions.register("test.undo", Arc::new(Do(self.target.clone())));
        Engine::new(
            store,
            Arc::new(templates),
            Arc::new(actions),
            self.clock.clone(),
            EngineConfig::default(),
        )
    }

    async fn submit(&self, engine: &Engine, key: &str) -> Vec<WorkflowId> {
        engine
            .submit(event(key), "op_test")
            .await
            .unwrap()
            .instances
    }

    /// Ticks until nothing is due at the current (fake) time.
    async fn settle(&self, engine: &Engine) -> usize {
        let mut ticks = 0;
        while engine.tick().await.unwrap() > 0 {
            ticks += 1;
            assert!(ticks < 100, "no quiescence");
        }
        ticks
    }

    async fn instance(&self, id: WorkflowId) -> (Instance, BTreeMap<String, StepRun>) {
        let (instance, steps) = self.db.store.get_instance(id).await.unwrap();
        (
            instance,
            steps.into_iter().map(|s| (s.step_id.clone(), s)).collect(),
        )
    }

    async fn kinds(&self, id: WorkflowId) -> Vec<String> {
        self.db
            .store
            .instance_history(id)
            .await
            .unwrap()
            .into_iter()
            .map(|h| match h.step_id {
                Some(step) => format!("{} {step}", h.kind),
                None => h.kind,
            })
            .collect()
    }
}

fn event(key: &str) -> NewEvent {
    NewEvent {
        tenant_id: None,
        source: EventSource::parse("api").unwrap(),
        kind: EventKind::parse("test.started").unwrap(),
        dedup_key: DedupKey::parse(key).unwrap(),
        payload: json!({ "value": key }),
    }
}

struct Catalog;
impl gatehouse_engine::template::ActionCatalog for Catalog {
    fn knows(&self, action: &str) -> bool {
        action.starts_with("test.")
    }
}

/// A template from TOML; `steps` are `[[stage.step]]` blocks of one stage
/// unless they declare their own stages.
fn template(version: u32, on_failure: &str, body: &str) -> Template {
    let text = format!(
        "name = \"test-flow\"\nversion = {version}\ntitle = \"Test\"\narea = \"documentation\"\non_failure = \"{on_failure}\"\n\n[[trigger]]\nevent = \"test.started\"\n\n{body}"
    );
    Template::from_toml("test.toml", &text, &Catalog).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

fn chain(on_failure: &str, n: usize) -> Template {
    let mut body = String::from("[[stage]]\nid = \"only\"\ntitle = \"Only\"\n");
    for i in 0..n {
        let needs = if i == 0 {
            String::new()
        } else {
            format!("\"s{}\"", i - 1)
        };
        let value = if i == 0 {
            "\"{{ event.payload.value }}\"".to_owned()
        } else {
            format!("\"{{{{ steps.s{}.output.value }}}}\"", i - 1)
        };
        body.push_str(&format!(
            "\n[[stage.step]]\nid = \"s{i}\"\ntitle = \"Step {i}\"\naction = \"test.do\"\nparams = {{ value = {value} }}\nneeds = [{needs}]\nretry = {{ max_attempts = 3, initial = \"1s\", max = \"10s\", multiplier = 2.0, jitter = 0.0 }}\ncompensate = {{ action = \"test.undo\", params = {{ of = \"s{i}\" }} }}\n"
        ));
    }
    template(1, on_failure, &body)
}

mod cases {
    pub use super::gate_policy_cases::*;
    use super::*;

    pub async fn duplicate_deliveries_start_one_workflow(env: &Env) {
        let engine = env.engine(vec![chain("park", 1)]);
        let first = engine.submit(event("deal-1"), "op_test").await.unwrap();
        let again = engine.submit(event("deal-1"), "op_test").await.unwrap();
        assert!(!first.duplicate && again.duplicate);
        assert_eq!(first.instances.len(), 1);
        assert_eq!(again.instances, first.instances);
        assert_eq!(again.event.id, first.event.id);
        let other = engine.submit(event("deal-2"), "op_test").await.unwrap();
        assert_ne!(other.instances, first.instances);
        let all = env
            .db
            .store
            .list_instances(&InstanceQuery {
                within: None,
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(all.len(), 2);
        // An event no template wants is kept, answered, and starts nothing.
        let none = engine
            .submit(
                NewEvent {
                    kind: EventKind::parse("test.ignored").unwrap(),
                    ..event("x")
                },
                "op_test",
            )
            .await
            .unwrap();
        assert!(none.instances.is_empty() && !none.duplicate);
    }

    pub async fn a_chain_runs_in_order_and_passes_outputs_along(env: &Env) {
        let engine = env.engine(vec![chain("park", 3)]);
        let id = env.submit(&engine, "deal-1").await[0];
        env.settle(&engine).await;
        let (instance, steps) = env.instance(id).await;
        assert_eq!(instance.state, InstanceState::Completed);
        assert!(
            steps
                .values()
                .all(|s| s.state == StepState::Succeeded && s.attempts == 1)
        );
        assert_eq!(
            steps["s2"].output.as_ref().unwrap()["value"],
            "deal-1",
            "the value flowed through every step"
        );
        assert_eq!(
            env.target.calls(),
            vec![format!("{id}:s0"), format!("{id}:s1"), format!("{id}:s2")]
        );
        let kinds = env.kinds(id).await;
        assert_eq!(kinds.first().map(String::as_str), Some("instance.started"));
        assert_eq!(kinds.last().map(String::as_str), Some("instance.completed"));
        assert_eq!(
            kinds
                .iter()
                .filter(|k| k.starts_with("step.succeeded"))
                .count(),
            3
        );
        assert!(instance.next_run_at.is_none());
    }

    pub async fn independent_steps_run_in_the_same_wave(env: &Env) {
        let body = r#"
[[stage]]
id = "one"
title = "One"

[[stage.step]]
id = "a"
title = "A"
action = "test.do"

[[stage.step]]
id = "b"
title = "B"
action = "test.do"
needs = ["a"]

[[stage.step]]
id = "c"
title = "C"
action = "test.do"
needs = ["a"]

[[stage.step]]
id = "d"
title = "D"
action = "test.do"
needs = ["b", "c"]

[[stage]]
id = "two"
title = "Two"

[[stage.step]]
id = "e"
title = "E"
action = "test.do"
"#;
        let engine = env.engine(vec![template(1, "park", body)]);
        let id = env.submit(&engine, "deal-1").await[0];
        let mut waves = Vec::new();
        while engine.tick().await.unwrap() > 0 {
            let (_, steps) = env.instance(id).await;
            waves.push(
                steps
                    .values()
                    .filter(|s| s.state == StepState::Succeeded)
                    .map(|s| s.step_id.clone())
                    .collect::<Vec<_>>(),
            );
        }
        assert_eq!(
            waves,
            vec![
                vec!["a"],
                vec!["a", "b", "c"],
                vec!["a", "b", "c", "d"],
                vec!["a", "b", "c", "d", "e"]
            ],
            "b and c run together; stage two waits for stage one"
        );
        assert_eq!(env.instance(id).await.0.state, InstanceState::Completed);
    }

    pub async fn retries_wait_for_their_time_and_honour_retry_after(env: &Env) {
        let engine = env.engine(vec![chain("park", 1)]);
        env.target.flaky("s0", 2);
        *env.target.retry_after.lock().unwrap() = Some(std::time::Duration::from_secs(7));
        let id = env.submit(&engine, "deal-1").await[0];
        assert_eq!(engine.tick().await.unwrap(), 1);
        let (instance, steps) = env.instance(id).await;
        assert_eq!(steps["s0"].state, StepState::Retrying);
        assert_eq!(steps["s0"].attempts, 1);
        let at = steps["s0"].next_attempt_at.unwrap();
        assert_eq!(
            at - env.clock.now(),
            time::Duration::seconds(7),
            "Retry-After beats the 1 s backoff"
        );
        assert_eq!(instance.next_run_at, Some(at));
        // Not due yet: nothing runs, however often we tick.
        assert_eq!(engine.tick().await.unwrap(), 0);
        env.clock.advance(time::Duration::seconds(7));
        assert_eq!(engine.tick().await.unwrap(), 1);
        env.clock.advance(time::Duration::seconds(7));
        env.settle(&engine).await;
        let (instance, steps) = env.instance(id).await;
        assert_eq!(
            (instance.state, steps["s0"].attempts),
            (InstanceState::Completed, 3)
        );
        assert_eq!(env.target.calls().len(), 3);
        assert_eq!(env.target.effects().len(), 1);
    }

    pub async fn exhausted_retries_compensate_in_reverse_order(env: &Env) {
        let engine = env.engine(vec![chain("compensate", 4)]);
        env.target.broken("s2");
        let id = env.submit(&engine, "deal-1").await[0];
        env.settle(&engine).await;
        let (instance, steps) = env.instance(id).await;
        assert_eq!(instance.state, InstanceState::Compensated);
        assert_eq!(
            steps
                .values()
                .map(|s| (s.step_id.as_str(), s.state))
                .collect::<Vec<_>>(),
            vec![
                ("s0", StepState::Compensated),
                ("s1", StepState::Compensated),
                ("s2", StepState::Failed),
                ("s3", StepState::Skipped)
            ]
        );
        let undo: Vec<String> = env
            .target
            .calls()
            .into_iter()
            .filter(|k| k.ends_with(":undo"))
            .collect();
        assert_eq!(
            undo,
            vec![format!("{id}:s1:undo"), format!("{id}:s0:undo")],
            "most recent first"
        );
    }

    /// A compensation that fails is retried like a step (journaled as
    /// `compensating`), then the instance ends compensated.
    pub async fn a_failing_compensation_is_retried(env: &Env) {
        let engine = env.engine(vec![chain("compensate", 2)]);
        let id = env.submit(&engine, "deal-1").await[0];
        engine.tick().await.unwrap();
        // s0 has succeeded; now s1 fails for good and undoing s0 fails once.
        env.target.broken("s1");
        env.target.flaky("s0", 1);
        env.settle(&engine).await;
        let (instance, steps) = env.instance(id).await;
        assert_eq!(
            instance.state,
            InstanceState::Compensating,
            "{:?}",
            env.kinds(id).await
        );
        assert_eq!(steps["s0"].state, StepState::Compensating);
        assert!(steps["s0"].next_attempt_at.is_some());
        env.clock.advance(time::Duration::seconds(30));
        env.settle(&engine).await;
        let (instance, steps) = env.instance(id).await;
        assert_eq!(instance.state, InstanceState::Compensated);
        assert_eq!(steps["s0"].state, StepState::Compensated);
    }

    pub async fn exhausted_retries_park_when_the_template_says_so(env: &Env) {
        let engine = env.engine(vec![chain("park", 3)]);
        env.target.flaky("s1", 10);
        let id = env.submit(&engine, "deal-1").await[0];
        for _ in 0..5 {
            env.settle(&engine).await;
            env.clock.advance(time::Duration::seconds(30));
        }
        let (instance, steps) = env.instance(id).await;
        assert_eq!(instance.state, InstanceState::Parked);
        assert_eq!(
            (steps["s1"].state, steps["s1"].attempts),
            (StepState::Failed, 3)
        );
        assert_eq!(
            steps["s0"].state,
            StepState::Succeeded,
            "nothing undone without a human"
        );
        assert_eq!(steps["s2"].state, StepState::Pending);
        let history = env.db.store.instance_history(id).await.unwrap();
        let parked = history
            .iter()
            .find(|h| h.kind == "instance.parked")
            .unwrap();
        assert!(
            parked.detail["reason"].as_str().unwrap().contains("s1"),
            "{:?}",
            parked.detail
        );
        assert!(instance.next_run_at.is_none());
    }

    /// Every wave's commit is lost once after its actions ran: each step
    /// runs twice, and the target, keyed by idempotency key, acts once.
    pub async fn every_step_run_twice_has_one_effect(env: &Env) {
        let crashy = Arc::new(Crashy {
            inner: env.db.store.clone(),
            fail: Mutex::new(0),
        });
        let engine = env.engine_on(crashy.clone(), vec![chain("park", 4)]);
        let id = env.submit(&engine, "deal-1").await[0];
        for _ in 0..4 {
            *crashy.fail.lock().unwrap() = 1;
            assert!(engine.tick().await.is_err(), "the commit is lost");
            assert_eq!(engine.tick().await.unwrap(), 1);
        }
        assert_eq!(env.instance(id).await.0.state, InstanceState::Completed);
        assert_eq!(env.target.calls().len(), 8, "every step ran twice");
        // The same key both times, so the target performed each effect once
        // and answered the repeat from its record.
        assert_eq!(
            env.target.effects().values().copied().collect::<Vec<_>>(),
            vec![1, 1, 1, 1],
            "one effect per step"
        );
        let replays = env.target.replays.lock().unwrap().clone();
        assert_eq!(
            replays.values().copied().collect::<Vec<_>>(),
            vec![1, 1, 1, 1],
            "each step's second run was a replay"
        );
    }

    /// A permanent failure injected at each step in turn: the steps before
    /// it are undone in reverse order, the ones after it never run.
    pub async fn a_failure_at_every_step_is_compensated(env: &Env) {
        const N: usize = 5;
        for k in 0..N {
            let target = Arc::new(Target::default());
            // A database of the same kind as the case's, for each run.
            let db = if env.db.sqlite_path().is_some() {
                TestDatabase::sqlite().await.unwrap()
            } else {
                TestDatabase::postgres(&format!("fail_at_{k}"))
                    .await
                    .unwrap()
                    .unwrap()
            };
            let env = Env {
                db,
                clock: env.clock.clone(),
                target: target.clone(),
            };
            let engine = env.engine(vec![chain("compensate", N)]);
            target.broken(&format!("s{k}"));
            let id = env.submit(&engine, "deal").await[0];
            env.settle(&engine).await;
            let (instance, steps) = env.instance(id).await;
            assert_eq!(
                instance.state,
                InstanceState::Compensated,
                "failure at s{k}"
            );
            for (i, step) in steps.values().enumerate() {
                let want = if i < k {
                    StepState::Compensated
                } else if i == k {
                    StepState::Failed
                } else {
                    StepState::Skipped
                };
                assert_eq!(step.state, want, "failure at s{k}, step s{i}");
            }
            let undo: Vec<String> = target
                .calls()
                .into_iter()
                .filter(|c| c.ends_with(":undo"))
                .collect();
            let want: Vec<String> = (0..k).rev().map(|i| format!("{id}:s{i}:undo")).collect();
            assert_eq!(undo, want, "failure at s{k}");
            env.db.cleanup().await;
        }
    }

    pub async fn gated_steps_wait_for_people_and_never_run(env: &Env) {
        let body = r#"
[[stage]]
id = "one"
title = "One"

[[stage.step]]
id = "prepare"
title = "Prepare"
action = "test.do"

[[stage.step]]
id = "provision"
title = "Provision"
action = "test.do"
area = "client_onboarding"
needs = ["prepare"]

[[stage.step]]
id = "isolate"
title = "Change isolation"
action = "test.do"
area = "isolation_change"
needs = ["prepare"]
"#;
        let engine = env.engine(vec![template(1, "park", body)]);
        let id = env.submit(&engine, "deal-1").await[0];
        env.settle(&engine).await;
        let (instance, steps) = env.instance(id).await;
        assert_eq!(instance.state, InstanceState::Waiting);
        assert_eq!(
            steps["provision"].state,
            StepState::AwaitingApproval,
            "client onboarding is L2"
        );
        assert_eq!(
            steps["isolate"].state,
            StepState::AwaitingHuman,
            "isolation changes are L3"
        );
        assert_eq!(
            env.target.calls(),
            vec![format!("{id}:prepare")],
            "neither gated action ran"
        );
        let history = env.db.store.instance_history(id).await.unwrap();
        let approval = history
            .iter()
            .find(|h| h.kind == "approval.requested")
            .unwrap();
        // The history links to the approval, which holds the plan.
        let approval_id: ApprovalId = approval.detail["approval"]
            .as_str()
            .unwrap()
            .parse()
            .unwrap();
        let approval = env.db.store.get_approval(approval_id).await.unwrap();
        assert_eq!(approval.plan["action"], "test.do");
        assert_eq!(approval.state, ApprovalState::Pending);
        let task = history
            .iter()
            .find(|h| h.kind == "human_task.created")
            .unwrap();
        let task_id: HumanTaskId = task.detail["task"].as_str().unwrap().parse().unwrap();
        assert_eq!(
            env.db.store.get_task(task_id).await.unwrap().step_id,
            "isolate"
        );
        assert!(instance.next_run_at.is_none());
        assert_eq!(
            engine.tick().await.unwrap(),
            0,
            "a waiting instance is not due"
        );
    }

    fn gated_flow(on_failure: &str) -> Template {
        let body = r#"
[[stage]]
id = "one"
title = "One"

[[stage.step]]
id = "prepare"
title = "Prepare"
action = "test.do"
params = { value = "prepared" }
compensate = { action = "test.undo" }

[[stage.step]]
id = "provision"
title = "Provision"
action = "test.do"
area = "client_onboarding"
params = { value = "{{ steps.prepare.output.value }}" }
needs = ["prepare"]

[[stage.step]]
id = "confirm"
title = "Confirm"
action = "test.do"
params = { value = "{{ steps.provision.output.value }}" }
needs = ["provision"]
"#;
        template(1, on_failure, body)
    }

    /// L2: nothing runs until approved; the initiator cannot approve; a
    /// modification is what runs, and is recorded as an override.
    pub async fn an_approval_releases_the_step_with_the_approved_plan(env: &Env) {
        let requester = env.operator("rita.requester", Role::Lead).await;
        let lead = env.operator("lea.lead", Role::Lead).await;
        let tech = env.operator("tom.tech", Role::Technician).await;
        let engine = env.engine(vec![gated_flow("park")]);
        let id = engine
            .submit(event("deal-1"), &requester.id.to_string())
            .await
            .unwrap()
            .instances[0];
        env.settle(&engine).await;
        let approvals = env
            .db
            .store
            .list_approvals(&ApprovalQuery {
                within: None,
                instance: Some(id),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(approvals.len(), 1);
        let approval = &approvals[0];
        assert_eq!(approval.plan["action"], "test.do");
        assert_eq!(
            approval.plan["params"]["value"], "prepared",
            "the plan is the rendered call"
        );
        assert_eq!(env.target.calls().len(), 1, "only `prepare` ran");

        // Separation of duties, and the approver role.
        let err = engine
            .decide(approval.id, &requester, Verdict::Approve, "fine", None)
            .await
            .unwrap_err();
        assert!(
            err.to_string().contains("separation of duties")
                || err.to_string().contains("initiated"),
            "{err}"
        );
        assert!(
            engine
                .decide(approval.id, &tech, Verdict::Approve, "fine", None)
                .await
                .is_err()
        );
        assert!(
            engine
                .decide(approval.id, &lead, Verdict::Approve, "", None)
                .await
                .is_err(),
            "a reason is required"
        );

        let decided = engine
            .decide(
                approval.id,
                &lead,
                Verdict::Modify,
                "use the staging value",
                Some(json!({ "value": "changed" })),
            )
            .await
            .unwrap();
        assert_eq!(decided.state, ApprovalState::Approved);
        env.settle(&engine).await;
        let (instance, steps) = env.instance(id).await;
        assert_eq!(instance.state, InstanceState::Completed);
        assert_eq!(
            steps["provision"].output.as_ref().unwrap()["value"],
            "changed",
            "the modified plan ran"
        );
        assert_eq!(
            steps["confirm"].output.as_ref().unwrap()["value"],
            "changed"
        );
        let history = env.db.store.instance_history(id).await.unwrap();
        let approved = history
            .iter()
            .find(|h| h.kind == "approval.approved")
            .unwrap();
        assert_eq!(approved.actor, lead.id.to_string());
        assert_eq!(approved.detail["override"], true);
        // Deciding again is refused.
        assert!(
            engine
                .decide(approval.id, &tech, Verdict::Reject, "late", None)
                .await
                .is_err()
        );
    }

    pub async fn a_rejection_compensates_or_cancels(env: &Env) {
        let lead = env.operator("lea.lead", Role::Lead).await;
        for (on_failure, end) in [
            ("compensate", InstanceState::Compensated),
            ("park", InstanceState::Cancelled),
        ] {
            let engine = env.engine(vec![gated_flow(on_failure)]);
            let id = engine
                .submit(event(&format!("deal-{on_failure}")), "system")
                .await
                .unwrap()
                .instances[0];
            env.settle(&engine).await;
            let approval = env
                .db
                .store
                .list_approvals(&ApprovalQuery {
                    within: None,
                    instance: Some(id),
                    limit: 1,
                    ..Default::default()
                })
                .await
                .unwrap()
                .remove(0);
            engine
                .decide(approval.id, &lead, Verdict::Reject, "wrong client", None)
                .await
                .unwrap();
            env.settle(&engine).await;
            let (instance, steps) = env.instance(id).await;
            assert_eq!(instance.state, end, "{on_failure}");
            assert_eq!(steps["provision"].state, StepState::Failed);
            assert!(
                steps["provision"]
                    .error
                    .as_ref()
                    .unwrap()
                    .contains("wrong client")
            );
            let undone = steps["prepare"].state == StepState::Compensated;
            assert_eq!(undone, on_failure == "compensate", "{on_failure}");
            assert_eq!(
                steps["confirm"].state,
                if on_failure == "compensate" {
                    StepState::Skipped
                } else {
                    StepState::Pending
                }
            );
        }
    }

    /// L3: the engine never runs the action; a person records the outcome,
    /// which becomes the step's output, and the workflow moves on.
    pub async fn a_human_task_is_done_by_a_person(env: &Env) {
        let admin = env.operator("ada.admin", Role::Admin).await;
        let body = r#"
[[stage]]
id = "one"
title = "One"

[[stage.step]]
id = "isolate"
title = "Change isolation"
action = "test.do"
area = "isolation_change"

[[stage.step]]
id = "after"
title = "After"
action = "test.do"
params = { value = "{{ steps.isolate.output.ticket }}" }
needs = ["isolate"]
"#;
        let engine = env.engine(vec![template(1, "park", body)]);
        let id = env.submit(&engine, "deal-1").await[0];
        env.settle(&engine).await;
        let task = env
            .db
            .store
            .list_tasks(&TaskQuery {
                within: None,
                instance: Some(id),
                limit: 1,
                ..Default::default()
            })
            .await
            .unwrap()
            .remove(0);
        assert_eq!(task.state, TaskState::Open);
        assert_eq!(
            task.decision_support["reversibility"],
            "no automatic compensation"
        );
        assert!(
            env.target.calls().is_empty(),
            "the engine never runs an L3 action"
        );
        engine
            .complete_task(
                task.id,
                &admin,
                json!({ "ticket": "CHG-42" }),
                Some("change record CHG-42"),
            )
            .await
            .unwrap();
        assert!(
            engine
                .complete_task(task.id, &admin, json!({}), None)
                .await
                .is_err(),
            "once"
        );
        env.settle(&engine).await;
        let (instance, steps) = env.instance(id).await;
        assert_eq!(instance.state, InstanceState::Completed);
        assert_eq!(steps["after"].output.as_ref().unwrap()["value"], "CHG-42");
        assert_eq!(env.target.calls(), vec![format!("{id}:after")]);
    }

    pub async fn cancelling_stops_everything_pending(env: &Env) {
        let engine = env.engine(vec![gated_flow("compensate")]);
        let id = env.submit(&engine, "deal-1").await[0];
        env.settle(&engine).await;
        assert!(
            engine.cancel(id, "op_someone", "  ").await.is_err(),
            "a reason is required"
        );
        let cancelled = engine
            .cancel(id, "op_someone", "client withdrew")
            .await
            .unwrap();
        assert_eq!(cancelled.state, InstanceState::Cancelled);
        let (instance, steps) = env.instance(id).await;
        assert_eq!(instance.state, InstanceState::Cancelled);
        assert_eq!(
            steps["prepare"].state,
            StepState::Succeeded,
            "a cancellation undoes nothing"
        );
        assert_eq!(steps["provision"].state, StepState::Skipped);
        assert_eq!(steps["confirm"].state, StepState::Skipped);
        let approvals = env
            .db
            .store
            .list_approvals(&ApprovalQuery {
                within: None,
                instance: Some(id),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(approvals[0].state, ApprovalState::Cancelled);
        let last = env
            .db
            .store
            .instance_history(id)
            .await
            .unwrap()
            .pop()
            .unwrap();
        assert_eq!(
            (last.kind.as_str(), last.actor.as_str()),
            ("instance.cancelled", "op_someone")
        );
        assert!(
            engine.cancel(id, "op_someone", "again").await.is_err(),
            "already cancelled"
        );
        assert_eq!(engine.tick().await.unwrap(), 0);
    }

    pub async fn an_instance_keeps_the_version_it_started_with(env: &Env) {
        let v1 = chain("park", 2);
        let mut v2 = chain("park", 3);
        v2.version = 2;
        let old_engine = env.engine(vec![v1.clone()]);
        let old = env.submit(&old_engine, "deal-1").await[0];
        let engine = env.engine(vec![v1, v2]);
        let new = env.submit(&engine, "deal-2").await[0];
        env.settle(&engine).await;
        let (old_instance, old_steps) = env.instance(old).await;
        let (new_instance, new_steps) = env.instance(new).await;
        assert_eq!((old_instance.template_version, old_steps.len()), (1, 2));
        assert_eq!((new_instance.template_version, new_steps.len()), (2, 3));
        assert_eq!(old_instance.state, InstanceState::Completed);
        assert_eq!(new_instance.state, InstanceState::Completed);
    }
}

/// Per-tenant gate policies, read by the engine when a step runs.
mod gate_policy_cases {
    use super::*;
    use gatehouse_core::gate::{GateLevel, GateSetting, ProcessArea};
    use gatehouse_core::id::TenantId;
    use gatehouse_core::keys::{TenantKey, WrappedKey};
    use gatehouse_core::tenant::{Region, Tenant, TenantSlug, TenantState};

    async fn tenant(env: &Env, slug: &str) -> TenantId {
        let now = env.clock.now();
        let tenant = Tenant::new(
            TenantSlug::parse(slug).unwrap(),
            DisplayName::parse(slug).unwrap(),
            Region::parse("eu").unwrap(),
            TenantState::Active,
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
        env.db
            .store
            .insert_tenant(&tenant, &key, &[])
            .await
            .unwrap();
        tenant.id
    }

    fn for_tenant(key: &str, tenant: TenantId) -> NewEvent {
        NewEvent {
            tenant_id: Some(tenant),
            ..event(key)
        }
    }

    pub async fn a_tenants_raised_gate_holds_its_step_while_another_tenant_runs_through(env: &Env) {
        // `grant` is joiner access: L1 by default (runs, then notifies).
        let body = r#"
[[stage]]
id = "one"
title = "One"

[[stage.step]]
id = "prepare"
title = "Prepare"
action = "test.do"

[[stage.step]]
id = "grant"
title = "Grant standard access"
action = "test.do"
area = "joiner_access"
needs = ["prepare"]
params = { value = "{{ event.payload.value }}" }
"#;
        let engine = env.engine(vec![template(1, "park", body)]);
        let careful = tenant(env, "careful").await;
        let relaxed = tenant(env, "relaxed").await;
        let held = engine
            .submit(for_tenant("joiner-1", careful), "op_test")
            .await
            .unwrap()
            .instances[0];
        let through = engine
            .submit(for_tenant("joiner-2", relaxed), "op_test")
            .await
            .unwrap()
            .instances[0];
        // Raised after both instances started: the policy that counts is the
        // one in force when the step runs.
        let raised = GateSetting::new(
            careful,
            ProcessArea::JoinerAccess,
            Some(GateLevel::L2),
            "op_lead",
            "the client approves every joiner",
            env.clock.now(),
        )
        .unwrap();
        env.db.store.put_gate_setting(&raised, &[]).await.unwrap();
        env.settle(&engine).await;

        let (instance, steps) = env.instance(held).await;
        assert_eq!(instance.state, InstanceState::Waiting);
        assert_eq!(steps["prepare"].state, StepState::Succeeded);
        assert_eq!(steps["grant"].state, StepState::AwaitingApproval);
        let approvals = env
            .db
            .store
            .list_approvals(&ApprovalQuery {
                within: None,
                instance: Some(held),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(approvals.len(), 1);
        assert_eq!(approvals[0].step_id, "grant");
        assert_eq!(approvals[0].tenant_id, Some(careful));
        assert_eq!(approvals[0].plan["params"]["value"], "joiner-1");
        assert!(
            !env.target.calls().contains(&format!("{held}:grant")),
            "a step held for approval never reaches the target"
        );

        let (instance, steps) = env.instance(through).await;
        assert_eq!(instance.state, InstanceState::Completed);
        assert_eq!(steps["grant"].state, StepState::Succeeded);
        assert!(env.target.calls().contains(&format!("{through}:grant")));
        let kinds = env.kinds(through).await;
        assert!(
            kinds.contains(&"notification.queued grant".to_owned()),
            "{kinds:?}"
        );
        assert!(
            !kinds.iter().any(|k| k.starts_with("approval.")),
            "{kinds:?}"
        );

        // Cleared again: the next joiner of the careful tenant runs at the default.
        let cleared = GateSetting::new(
            careful,
            ProcessArea::JoinerAccess,
            None,
            "op_lead",
            "back to the standard",
            env.clock.now(),
        )
        .unwrap();
        env.db.store.put_gate_setting(&cleared, &[]).await.unwrap();
        let next = engine
            .submit(for_tenant("joiner-3", careful), "op_test")
            .await
            .unwrap()
            .instances[0];
        env.settle(&engine).await;
        assert_eq!(env.instance(next).await.0.state, InstanceState::Completed);
        // The one already waiting keeps waiting for its approval.
        assert_eq!(env.instance(held).await.0.state, InstanceState::Waiting);
    }
}

macro_rules! runtime_tests {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let db = super::TestDatabase::sqlite().await.unwrap();
                    let env = super::Env { db, clock: std::sync::Arc::new(super::FakeClock::default()), target: Default::default() };
                    super::cases::$case(&env).await;
                    env.db.cleanup().await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(db) = super::TestDatabase::postgres(stringify!($case)).await.unwrap() else {
                        eprintln!("GATEHOUSE_TEST_DATABASE_URL is not set; the PostgreSQL run is done by .ci/run");
                        return;
                    };
                    let env = super::Env { db, clock: std::sync::Arc::new(super::FakeClock::default()), target: Default::default() };
                    super::cases::$case(&env).await;
                    env.db.cleanup().await;
                }
            )*
        }
    };
}

runtime_tests!(
    duplicate_deliveries_start_one_workflow,
    a_chain_runs_in_order_and_passes_outputs_along,
    independent_steps_run_in_the_same_wave,
    retries_wait_for_their_time_and_honour_retry_after,
    exhausted_retries_compensate_in_reverse_order,
    exhausted_retries_park_when_the_template_says_so,
    a_failing_compensation_is_retried,
    every_step_run_twice_has_one_effect,
    a_failure_at_every_step_is_compensated,
    gated_steps_wait_for_people_and_never_run,
    an_instance_keeps_the_version_it_started_with,
    an_approval_releases_the_step_with_the_approved_plan,
    a_rejection_compensates_or_cancels,
    a_human_task_is_done_by_a_person,
    cancelling_stops_everything_pending,
    a_tenants_raised_gate_holds_its_step_while_another_tenant_runs_through,
);
