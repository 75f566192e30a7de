//! Plans as diffs at L2, on SQLite and (with `GATEHOUSE_TEST_DATABASE_URL`)
//! on PostgreSQL: the approval shows the diff against the target's state;
//! the approved step is re-checked just before it runs; a target that
//! changed meanwhile is planned again and asked about again, never applied
//! blindly.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests fail loudly"
)]

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use gatehouse_core::approval::{Approval, ApprovalState, Verdict};
use gatehouse_core::clock::{Clock, FakeClock};
use gatehouse_core::id::WorkflowId;
use gatehouse_core::operator::{Operator, OperatorName, Role};
use gatehouse_core::store::ApprovalQuery;
use gatehouse_core::tenant::DisplayName;
use gatehouse_core::workflow::{
    DedupKey, EventKind, EventSource, HistoryEntry, InstanceState, StepState,
};
use gatehouse_engine::action::{Action, ActionCall, ActionError, ActionRegistry, Change, Plan};
use gatehouse_engine::runtime::{Engine, EngineConfig, NewEvent};
use gatehouse_engine::template::Template;
use gatehouse_store::testing::TestDatabase;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// A fake PSA: companies with a status, which the test changes at will.
#[derive(Default)]
struct Companies {
    status: Mutex<HashMap<String, String>>,
    /// Params of every `plan` call, in order.
    plans: Mutex<Vec<Value>>,
    /// Idempotency keys of every `run` call, in order.
    runs: Mutex<Vec<String>>,
    /// How many more `plan` calls fail (retryable).
    plan_failures: Mutex<u32>,
    /// Whether `plan` fails for good.
    plan_broken: Mutex<bool>,
}

impl Companies {
    fn set(&self, company: &str, status: &str) {
        self.status
            .lock()
            .unwrap()
            .insert(company.into(), status.into());
    }
    fn get(&self, company: &str) -> Option<String> {
        self.status.lock().unwrap().get(company).cloned()
    }
    fn runs(&self) -> Vec<String> {
        self.runs.lock().unwrap().clone()
    }
    fn plans(&self) -> Vec<Value> {
        self.plans.lock().unwrap().clone()
    }
}

/// `test.set_status`: sets `params.company`'s status to `params.status`.
struct SetStatus(Arc<Companies>);

#[async_trait]
impl Action for SetStatus {
    async fn run(&self, call: ActionCall<'_>) -> Result<Value, ActionError> {
        let company = call.params["company"].as_str().unwrap_or_default();
        let status = call.params["status"].as_str().unwrap_or_default();
        self.0
            .runs
            .lock()
            .unwrap()
            .push(call.idempotency_key.into());
        self.0.set(company, status);
        Ok(json!({ "company": company, "status": status }))
    }

    async fn plan(&self, call: ActionCall<'_>) -> Result<Option<Plan>, ActionError> {
        self.0.plans.lock().unwrap().push(call.params.clone());
        if *self.0.plan_broken.lock().unwrap() {
            return Err(ActionError::permanent("company 404"));
        }
        {
            let mut failures = self.0.plan_failures.lock().unwrap();
            if *failures > 0 {
                *failures -= 1;
                return Err(ActionError::retryable("psa unavailable"));
            }
        }
        let company = call.params["company"].as_str().unwrap_or_default();
        let status = call.params["status"].as_str().unwrap_or_default();
        let before = self.0.get(company);
        let changes = if before.as_deref() == Some(status) {
            Vec::new()
        } else {
            vec![Change {
                target: format!("company {company}"),
                field: "status".into(),
                before: json!(before),
                after: json!(status),
            }]
        };
        Ok(Some(Plan::new(
            format!("Set company {company}'s status to {status}"),
            changes,
            json!({ "company": company, "status": before }),
        )))
    }
}

struct Env {
    db: TestDatabase,
    clock: Arc<FakeClock>,
    psa: Arc<Companies>,
}

impl Env {
    fn engine(&self) -> Engine {
        let mut actions = ActionRegistry::new();
        actions.register("test.set_status", Arc::new(SetStatus(self.psa.clone())));
        let template = Template::from_toml("plans.toml", TEMPLATE, &Catalog).unwrap();
        Engine::new(
            self.db.store.clone(),
            Arc::new(vec![template]),
            Arc::new(actions),
            self.clock.clone(),
            EngineConfig::default(),
        )
    }

    async fn operator(&self, name: &str) -> Operator {
        let operator = Operator::new(
            OperatorName::parse(name).unwrap(),
            DisplayName::parse(name).unwrap(),
            Role::Lead,
            self.clock.now(),
        );
        self.db.store.insert_operator(&operator, &[]).await.unwrap();
        operator
    }

    async fn start(&self, engine: &Engine) -> WorkflowId {
        let id = engine
            .submit(
                NewEvent {
                    tenant_id: None,
                    source: EventSource::parse("api").unwrap(),
                    kind: EventKind::parse("test.won").unwrap(),
                    dedup_key: DedupKey::parse("deal-1").unwrap(),
                    payload: json!({ "company": "42" }),
                },
                "op_requester",
            )
            .await
            .unwrap()
            .instances[0];
        self.settle(engine).await;
        id
    }

    async fn settle(&self, engine: &Engine) {
        let mut ticks = 0;
        while engine.tick().await.unwrap() > 0 {
            ticks += 1;
            assert!(ticks < 100, "no quiescence");
        }
    }

    async fn approvals(&self, id: WorkflowId) -> Vec<Approval> {
        let mut approvals = self
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
        approvals.sort_by_key(|a| a.id);
        approvals
    }

    async fn history(&self, id: WorkflowId) -> Vec<HistoryEntry> {
        self.db.store.instance_history(id).await.unwrap()
    }
}

struct Catalog;
impl gatehouse_engine::template::ActionCatalog for Catalog {
    fn knows(&self, action: &str) -> bool {
        action.starts_with("test.")
    }
}

/// One L2 step (client onboarding is L2 by default).
const TEMPLATE: &str = r#"
name = "plans"
version = 1
title = "Plans"
area = "client_onboarding"
on_failure = "park"

[[trigger]]
event = "test.won"

[[stage]]
id = "only"
title = "Only"

[[stage.step]]
id = "activate"
title = "Activate the company"
action = "test.set_status"
params = { company = "{{ event.payload.company }}", status = "Active" }
retry = { max_attempts = 3, initial = "1s", max = "10s", multiplier = 2.0, jitter = 0.0 }
"#;

fn kinds(history: &[HistoryEntry]) -> Vec<&str> {
    history.iter().map(|h| h.kind.as_str()).collect()
}

mod cases {
    use super::*;

    /// The approval shows the diff against what the target holds; approved
    /// and unchanged, the step runs once, after one more look.
    pub async fn the_approval_shows_the_diff_and_an_unchanged_target_runs(env: &Env) {
        env.psa.set("42", "Prospect");
        let lead = env.operator("lea.lead").await;
        let engine = env.engine();
        let id = env.start(&engine).await;

        let approvals = env.approvals(id).await;
        assert_eq!(approvals.len(), 1);
        let diff = &approvals[0].plan["diff"];
        assert_eq!(
            diff["changes"],
            json!([{ "target": "company 42", "field": "status", "before": "Prospect", "after": "Active" }])
        );
        assert_eq!(
            diff["observed"],
            json!({ "company": "42", "status": "Prospect" })
        );
        assert!(diff["fingerprint"].as_str().unwrap().starts_with("sha256:"));
        assert_eq!(approvals[0].plan["params"]["status"], "Active");
        assert!(env.psa.runs().is_empty(), "nothing runs before approval");

        engine
            .decide(approvals[0].id, &lead, Verdict::Approve, "go", None)
            .await
            .unwrap();
        env.settle(&engine).await;

        assert_eq!(env.psa.runs(), vec![format!("{id}:activate")]);
        assert_eq!(env.psa.plans().len(), 2, "prepared, then re-checked");
        assert_eq!(env.psa.get("42").as_deref(), Some("Active"));
        let (instance, _) = env.db.store.get_instance(id).await.unwrap();
        assert_eq!(instance.state, InstanceState::Completed);
        assert!(!kinds(&env.history(id).await).contains(&"plan.changed"));
    }

    /// The target changes between approval and execution: the step does
    /// not run; the change is recorded; a new approval with the fresh plan
    /// supersedes the old one; approved in turn, the step runs with the
    /// same idempotency key.
    pub async fn a_target_changed_after_approval_is_planned_and_asked_again(env: &Env) {
        env.psa.set("42", "Prospect");
        let lead = env.operator("lea.lead").await;
        let engine = env.engine();
        let id = env.start(&engine).await;
        let first = env.approvals(id).await.remove(0);
        engine
            .decide(first.id, &lead, Verdict::Approve, "go", None)
            .await
            .unwrap();

        // Someone changes the company in the PSA before the step runs.
        env.psa.set("42", "Suspended");
        env.settle(&engine).await;

        assert!(
            env.psa.runs().is_empty(),
            "a changed target is never applied blindly"
        );
        assert_eq!(env.psa.get("42").as_deref(), Some("Suspended"));
        let history = env.history(id).await;
        let changed = history.iter().find(|h| h.kind == "plan.changed").unwrap();
        assert_eq!(changed.step_id.as_deref(), Some("activate"));
        assert_eq!(changed.detail["approval"], json!(first.id));
        assert_eq!(
            changed.detail["changed"],
            json!([{ "path": "status", "before": "Prospect", "after": "Suspended" }])
        );
        assert_ne!(
            changed.detail["fingerprint"],
            changed.detail["approved_fingerprint"]
        );
        assert!(kinds(&history).contains(&"approval.superseded"));

        let approvals = env.approvals(id).await;
        assert_eq!(approvals.len(), 2);
        assert_eq!(approvals[0].id, first.id);
        assert_eq!(
            approvals[0].state,
            ApprovalState::Approved,
            "the old one stays as decided"
        );
        let second = &approvals[1];
        assert_eq!(second.state, ApprovalState::Pending);
        assert_eq!(second.plan["supersedes"], json!(first.id));
        assert_eq!(second.plan["diff"]["changes"][0]["before"], "Suspended");
        let (instance, steps) = env.db.store.get_instance(id).await.unwrap();
        assert_eq!(instance.state, InstanceState::Waiting);
        let step = steps.iter().find(|s| s.step_id == "activate").unwrap();
        assert_eq!(step.state, StepState::AwaitingApproval);

        // The same person may approve the fresh plan.
        engine
            .decide(second.id, &lead, Verdict::Approve, "still right", None)
            .await
            .unwrap();
        env.settle(&engine).await;
        assert_eq!(
            env.psa.runs(),
            vec![format!("{id}:activate")],
            "the same idempotency key"
        );
        assert_eq!(env.psa.get("42").as_deref(), Some("Active"));
        let (instance, _) = env.db.store.get_instance(id).await.unwrap();
        assert_eq!(instance.state, InstanceState::Completed);
    }

    /// A modification (override) is what the re-check plans with and what
    /// runs.
    pub async fn the_recheck_uses_the_approved_parameters(env: &Env) {
        env.psa.set("42", "Prospect");
        let lead = env.operator("lea.lead").await;
        let engine = env.engine();
        let id = env.start(&engine).await;
        let approval = env.approvals(id).await.remove(0);
        engine
            .decide(
                approval.id,
                &lead,
                Verdict::Modify,
                "trial first",
                Some(json!({ "company": "42", "status": "Trial" })),
            )
            .await
            .unwrap();
        env.settle(&engine).await;
        let plans = env.psa.plans();
        assert_eq!(plans.len(), 2);
        assert_eq!(plans[0]["status"], "Active");
        assert_eq!(
            plans[1]["status"], "Trial",
            "re-checked with the approved parameters"
        );
        assert_eq!(env.psa.get("42").as_deref(), Some("Trial"));
        assert_eq!(env.psa.runs().len(), 1);
    }

    /// A plan that cannot be prepared is a failed attempt: retried per the
    /// step's policy when it may pass, failing the step when it cannot.
    pub async fn a_plan_that_cannot_be_prepared_is_retried_then_fails(env: &Env) {
        env.psa.set("42", "Prospect");
        *env.psa.plan_failures.lock().unwrap() = 1;
        let lead = env.operator("lea.lead").await;
        let engine = env.engine();
        let id = env.start(&engine).await;
        assert!(
            env.approvals(id).await.is_empty(),
            "no approval without a plan"
        );
        let (_, steps) = env.db.store.get_instance(id).await.unwrap();
        let step = steps.iter().find(|s| s.step_id == "activate").unwrap();
        assert_eq!(step.state, StepState::Retrying);
        assert!(
            step.error
                .as_deref()
                .unwrap()
                .contains("preparing the plan")
        );

        env.clock.advance(time::Duration::seconds(2));
        env.settle(&engine).await;
        let approval = env.approvals(id).await.remove(0);
        assert_eq!(approval.plan["diff"]["changes"][0]["after"], "Active");

        // The re-check fails once (retryable): the step waits and retries;
        // it does not run until the re-check passes.
        engine
            .decide(approval.id, &lead, Verdict::Approve, "go", None)
            .await
            .unwrap();
        *env.psa.plan_failures.lock().unwrap() = 1;
        env.settle(&engine).await;
        assert!(env.psa.runs().is_empty());
        env.clock.advance(time::Duration::seconds(5));
        env.settle(&engine).await;
        assert_eq!(env.psa.runs().len(), 1);

        // A plan that cannot be prepared for good fails the step.
        let other = engine
            .submit(
                NewEvent {
                    tenant_id: None,
                    source: EventSource::parse("api").unwrap(),
                    kind: EventKind::parse("test.won").unwrap(),
                    dedup_key: DedupKey::parse("deal-2").unwrap(),
                    payload: json!({ "company": "43" }),
                },
                "op_requester",
            )
            .await
            .unwrap()
            .instances[0];
        *env.psa.plan_broken.lock().unwrap() = true;
        env.settle(&engine).await;
        let (instance, steps) = env.db.store.get_instance(other).await.unwrap();
        assert_eq!(instance.state, InstanceState::Parked);
        let step = steps.iter().find(|s| s.step_id == "activate").unwrap();
        assert_eq!(step.state, StepState::Failed);
        assert!(step.error.as_deref().unwrap().contains("company 404"));
    }
}

macro_rules! plan_tests {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let db = super::TestDatabase::sqlite().await.unwrap();
                    let env = super::Env { db, clock: std::sync::Arc::new(super::FakeClock::default()), psa: Default::default() };
                    super::cases::$case(&env).await;
                    env.db.cleanup().await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(db) = super::TestDatabase::postgres(concat!("plans_", stringify!($case))).await.unwrap() else {
                        eprintln!("GATEHOUSE_TEST_DATABASE_URL is not set; the PostgreSQL run is done by .ci/run");
                        return;
                    };
                    let env = super::Env { db, clock: std::sync::Arc::new(super::FakeClock::default()), psa: Default::default() };
                    super::cases::$case(&env).await;
                    env.db.cleanup().await;
                }
            )*
        }
    };
}

plan_tests!(
    the_approval_shows_the_diff_and_an_unchanged_target_runs,
    a_target_changed_after_approval_is_planned_and_asked_again,
    the_recheck_uses_the_approved_parameters,
    a_plan_that_cannot_be_prepared_is_retried_then_fails,
);

#[test]
fn the_fingerprint_depends_on_the_observed_state_only() {
    let a = Plan::new("a", Vec::new(), json!({ "x": 1, "y": [1, 2] }));
    let b = Plan::new("b", vec![], json!({ "y": [1, 2], "x": 1 }));
    let c = Plan::new("a", Vec::new(), json!({ "x": 2, "y": [1, 2] }));
    assert_eq!(a.fingerprint, b.fingerprint);
    assert_ne!(a.fingerprint, c.fingerprint);
}

#[test]
fn the_fingerprint_sorts_nested_keys_and_matches_the_sorted_text() {
    // Whatever order serde_json keeps keys in (its `preserve_order` feature
    // may be on in the build), nested objects are hashed in key order, and
    // the bytes are the sorted text, so plans stored earlier still match.
    let observed = json!({ "z": { "b": [ { "d": 1, "c": 2 } ], "a": null }, "m": "x" });
    let sorted_text = r#"{"m":"x","z":{"a":null,"b":[{"c":2,"d":1}]}}"#;
    let expected = format!(
        "sha256:{}",
        hex::encode(Sha256::digest(sorted_text.as_bytes()))
    );
    assert_eq!(Plan::new("p", Vec::new(), observed).fingerprint, expected);
}
