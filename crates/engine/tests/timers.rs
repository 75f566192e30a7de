//! Timer steps, approval escalation and a reviewer's rollback, on SQLite
//! and (with `GATEHOUSE_TEST_DATABASE_URL`) on PostgreSQL, with fake time:
//! a timer never fires early, fires once, survives a restart (a new engine
//! over the same store), fires at once when its time has passed, and fails
//! its step clearly when its time cannot be read; an overdue approval
//! escalates once, to its escalation role; a rollback compensates one step
//! and leaves the rest of the workflow as it was.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests fail loudly"
)]

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use gatehouse_core::approval::{ApprovalState, Verdict};
use gatehouse_core::clock::{Clock, FakeClock};
use gatehouse_core::id::WorkflowId;
use gatehouse_core::operator::{Operator, OperatorName, Role};
use gatehouse_core::store::{ApprovalQuery, StoreError};
use gatehouse_core::tenant::DisplayName;
use gatehouse_core::workflow::{
    DedupKey, EventKind, EventSource, Instance, InstanceState, StepRun, StepState,
};
use gatehouse_engine::action::{Action, ActionCall, ActionError, ActionRegistry};
use gatehouse_engine::runtime::{Engine, EngineConfig, EngineError, NewEvent};
use gatehouse_engine::template::Template;
use gatehouse_store::testing::TestDatabase;
use serde_json::{Value, json};
use time::Duration;
use time::format_description::well_known::Rfc3339;

/// Records every idempotency key it is called with.
#[derive(Default)]
struct Calls(Mutex<Vec<String>>);

struct Record(Arc<Calls>);

#[async_trait]
impl Action for Record {
    async fn run(&self, call: ActionCall<'_>) -> Result<Value, ActionError> {
        self.0
            .0
            .lock()
            .unwrap()
            .push(call.idempotency_key.to_owned());
        Ok(json!({ "step": call.step_id }))
    }
}

/// Makes every test event's deduplication key unique.
static EVENTS: AtomicU64 = AtomicU64::new(0);

struct Env {
    db: TestDatabase,
    clock: Arc<FakeClock>,
    calls: Arc<Calls>,
}

impl Env {
    fn engine(&self, template: &Template) -> Engine {
        let mut actions = ActionRegistry::new();
        actions.register("test.do", Arc::new(Record(self.calls.clone())));
        actions.register("test.undo", Arc::new(Record(self.calls.clone())));
        Engine::new(
            self.db.store.clone(),
            Arc::new(vec![template.clone()]),
            Arc::new(actions),
            self.clock.clone(),
            EngineConfig::default(),
        )
    }

    fn calls(&self) -> Vec<String> {
        self.calls.0.lock().unwrap().clone()
    }

    async fn start(&self, engine: &Engine, payload: Value) -> WorkflowId {
        let submitted = engine
            .submit(
                NewEvent {
                    tenant_id: None,
                    source: EventSource::parse("api").unwrap(),
                    kind: EventKind::parse("test.started").unwrap(),
                    dedup_key: DedupKey::parse(&format!(
                        "k-{}",
                        EVENTS.fetch_add(1, Ordering::Relaxed)
                    ))
                    .unwrap(),
                    payload,
                },
                "op_starter",
            )
            .await
            .unwrap();
        submitted.instances[0]
    }

    /// Ticks until nothing is due at the current (fake) time.
    async fn settle(&self, engine: &Engine) {
        for _ in 0..100 {
            if engine.tick().await.unwrap() == 0 {
                return;
            }
        }
        panic!("no quiescence");
    }

    async fn instance(&self, id: WorkflowId) -> (Instance, BTreeMap<String, StepRun>) {
        let (instance, steps) = self.db.store.get_instance(id).await.unwrap();
        let steps = steps.into_iter().map(|s| (s.step_id.clone(), s)).collect();
        (instance, steps)
    }

    /// The history as `kind step` strings.
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
}

struct Catalog;
impl gatehouse_engine::template::ActionCatalog for Catalog {
    fn knows(&self, action: &str) -> bool {
        action.starts_with("test.")
    }
}

fn template(body: &str) -> Template {
    let text = format!(
        "name = \"timers\"\nversion = 1\ntitle = \"Timers\"\narea = \"documentation\"\n\n[[trigger]]\nevent = \"test.started\"\n\n[[stage]]\nid = \"only\"\ntitle = \"Only\"\n{body}"
    );
    Template::from_toml("timers.toml", &text, &Catalog).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

/// `remind` waits `wait`; `act` needs it; `now` runs beside it.
fn reminder(wait: &str) -> Template {
    template(&format!(
        r#"
[[stage.step]]
id = "remind"
title = "Wait"
{wait}

[[stage.step]]
id = "now"
title = "Runs beside the timer"
action = "test.do"

[[stage.step]]
id = "act"
title = "After the timer"
action = "test.do"
params = {{ at = "{{{{ steps.remind.output.scheduled_for }}}}" }}
needs = ["remind"]
"#
    ))
}

fn count(kinds: &[String], kind: &str) -> usize {
    kinds.iter().filter(|k| k.as_str() == kind).count()
}

fn rfc3339(at: time::OffsetDateTime) -> String {
    at.format(&Rfc3339).unwrap()
}

mod cases {
    use super::*;

    pub async fn a_wait_step_fires_once_when_its_time_comes(env: &Env) {
        let engine = env.engine(&reminder("wait = \"2d\""));
        let start = env.clock.now();
        let id = env.start(&engine, json!({})).await;
        env.settle(&engine).await;
        let (instance, steps) = env.instance(id).await;
        let fires = start + Duration::days(2);
        assert_eq!(instance.state, InstanceState::Running);
        assert_eq!(
            (
                steps["remind"].state,
                steps["remind"].attempts,
                steps["remind"].next_attempt_at
            ),
            (StepState::Retrying, 0, Some(fires)),
            "the fire time is journaled on the step"
        );
        assert_eq!(instance.next_run_at, Some(fires), "the due index finds it");
        assert_eq!(
            steps["now"].state,
            StepState::Succeeded,
            "runs beside the timer"
        );
        assert_eq!(env.calls(), vec![format!("{id}:now")]);

        // A second before: nothing.
        env.clock.advance(Duration::days(2) - Duration::seconds(1));
        assert_eq!(engine.tick().await.unwrap(), 0, "not due yet");
        assert_eq!(
            env.instance(id).await.1["remind"].state,
            StepState::Retrying
        );

        env.clock.advance(Duration::seconds(1));
        env.settle(&engine).await;
        let (instance, steps) = env.instance(id).await;
        assert_eq!(instance.state, InstanceState::Completed);
        let output = steps["remind"].output.clone().unwrap();
        assert_eq!(output["scheduled_for"], rfc3339(fires));
        assert_eq!(output["fired_at"], rfc3339(env.clock.now()));
        assert_eq!(steps["act"].state, StepState::Succeeded);
        assert_eq!(env.calls(), vec![format!("{id}:now"), format!("{id}:act")]);
        let kinds = env.kinds(id).await;
        assert_eq!(count(&kinds, "timer.set remind"), 1);
        assert_eq!(count(&kinds, "timer.fired remind"), 1);

        // Later ticks fire nothing again.
        env.clock.advance(Duration::days(3));
        assert_eq!(engine.tick().await.unwrap(), 0);
        assert_eq!(count(&env.kinds(id).await, "timer.fired remind"), 1);
    }

    pub async fn a_timer_survives_a_restart(env: &Env) {
        let template = reminder("wait = \"4h\"");
        let id = {
            let engine = env.engine(&template);
            let id = env.start(&engine, json!({})).await;
            env.settle(&engine).await;
            id
        };
        // The first engine is gone; a new one over the same store takes over.
        env.clock.advance(Duration::hours(5));
        let engine = env.engine(&template);
        env.settle(&engine).await;
        let (instance, steps) = env.instance(id).await;
        assert_eq!(instance.state, InstanceState::Completed);
        assert_eq!(steps["remind"].state, StepState::Succeeded);
        let kinds = env.kinds(id).await;
        assert_eq!(count(&kinds, "timer.set remind"), 1);
        assert_eq!(count(&kinds, "timer.fired remind"), 1);
        assert_eq!(env.calls(), vec![format!("{id}:now"), format!("{id}:act")]);
    }

    pub async fn a_wait_until_in_the_past_fires_at_once(env: &Env) {
        let engine = env.engine(&reminder(
            "wait_until = \"{{ event.payload.contract_end }}\"",
        ));
        let past = env.clock.now() - Duration::days(1);
        let id = env
            .start(&engine, json!({ "contract_end": rfc3339(past) }))
            .await;
        env.settle(&engine).await;
        let (instance, steps) = env.instance(id).await;
        assert_eq!(instance.state, InstanceState::Completed);
        assert_eq!(
            steps["remind"].output.as_ref().unwrap()["scheduled_for"],
            rfc3339(past)
        );
        let kinds = env.kinds(id).await;
        assert_eq!(count(&kinds, "timer.fired remind"), 1);

        // And one in the future waits for it.
        let future = env.clock.now() + Duration::hours(3);
        let id = env
            .start(&engine, json!({ "contract_end": rfc3339(future) }))
            .await;
        env.settle(&engine).await;
        assert_eq!(
            env.instance(id).await.1["remind"].next_attempt_at,
            Some(future)
        );
    }

    pub async fn an_unreadable_wait_until_fails_the_step(env: &Env) {
        let engine = env.engine(&reminder(
            "wait_until = \"{{ event.payload.contract_end }}\"",
        ));
        let id = env
            .start(&engine, json!({ "contract_end": "next tuesday" }))
            .await;
        env.settle(&engine).await;
        let (instance, steps) = env.instance(id).await;
        assert_eq!(instance.state, InstanceState::Parked);
        assert_eq!(steps["remind"].state, StepState::Failed);
        let error = steps["remind"].error.clone().unwrap();
        assert!(
            error.contains("wait_until")
                && error.contains("next tuesday")
                && error.contains("RFC 3339"),
            "{error}"
        );
        assert_eq!(steps["act"].state, StepState::Pending, "never ran");
        // A missing value fails the same way.
        let id = env.start(&engine, json!({})).await;
        env.settle(&engine).await;
        let (_, steps) = env.instance(id).await;
        assert_eq!(steps["remind"].state, StepState::Failed);
        assert!(
            steps["remind"]
                .error
                .clone()
                .unwrap()
                .contains("contract_end")
        );
    }

    /// An L2 step (client onboarding) with a compensation.
    fn gated() -> Template {
        template(
            r#"
[[stage.step]]
id = "provision"
title = "Provision"
action = "test.do"
area = "client_onboarding"
"#,
        )
    }

    pub async fn an_overdue_approval_escalates_once(env: &Env) {
        let engine = env.engine(&gated());
        let lead = env.operator("lea.lead", Role::Lead).await;
        let admin = env.operator("ada.admin", Role::Admin).await;
        let id = env.start(&engine, json!({})).await;
        env.settle(&engine).await;
        let approval = env
            .db
            .store
            .list_approvals(&ApprovalQuery {
                within: None,
                instance: Some(id),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap()
            .remove(0);
        assert_eq!(approval.approver_role, Role::Lead);
        let deadline = approval.deadline.unwrap();

        env.clock.set(deadline - Duration::seconds(1));
        assert_eq!(
            engine.escalate_overdue(env.clock.now()).await.unwrap(),
            0,
            "not overdue"
        );
        env.clock.set(deadline);
        assert_eq!(engine.escalate_overdue(env.clock.now()).await.unwrap(), 1);
        // Again, and from a second node: nothing more.
        assert_eq!(engine.escalate_overdue(env.clock.now()).await.unwrap(), 0);
        let other = env.engine(&gated());
        env.clock.advance(Duration::minutes(1));
        assert_eq!(other.escalate_overdue(env.clock.now()).await.unwrap(), 0);

        let escalated = env.db.store.get_approval(approval.id).await.unwrap();
        assert_eq!(escalated.state, ApprovalState::Pending);
        assert_eq!(escalated.escalated_at, Some(deadline));
        assert_eq!(escalated.deciding_role(deadline), Role::Admin);
        assert_eq!(
            escalated.approver_role,
            Role::Lead,
            "the group it was first assigned to"
        );
        let history = env.db.store.instance_history(id).await.unwrap();
        let entries: Vec<_> = history
            .iter()
            .filter(|h| h.kind == "approval.escalated")
            .collect();
        assert_eq!(entries.len(), 1);
        assert_eq!(entries[0].detail["from"], "lead");
        assert_eq!(entries[0].detail["to"], "admin");
        assert_eq!(entries[0].step_id.as_deref(), Some("provision"));

        // The store's guard: a second escalation of the same approval is stale.
        let (instance, _) = env.db.store.get_instance(id).await.unwrap();
        let mut again = approval.clone();
        assert!(again.escalate(env.clock.now()));
        let progress = gatehouse_core::workflow::Progress {
            instance: Instance {
                version: instance.version + 1,
                ..instance
            },
            steps: Vec::new(),
            history: Vec::new(),
            approvals: Vec::new(),
            tasks: Vec::new(),
            notifications: Vec::new(),
        };
        assert!(matches!(
            env.db.store.escalate_approval(&again, &progress).await,
            Err(StoreError::Stale("approval"))
        ));

        // Now the escalation role decides: the lead may not, the admin may.
        let refused = engine
            .decide(approval.id, &lead, Verdict::Approve, "ok", None)
            .await
            .unwrap_err();
        assert!(
            refused.to_string().contains("since it escalated"),
            "{refused}"
        );
        let decided = engine
            .decide(approval.id, &admin, Verdict::Approve, "ok", None)
            .await
            .unwrap();
        assert_eq!(decided.state, ApprovalState::Approved);
        env.settle(&engine).await;
        assert_eq!(env.instance(id).await.0.state, InstanceState::Completed);
        assert_eq!(env.calls(), vec![format!("{id}:provision")]);
    }

    /// Two compensable steps; `b` needs `a`.
    fn reversible(extra: &str) -> Template {
        template(&format!(
            r#"
[[stage.step]]
id = "a"
title = "A"
action = "test.do"
gate = "L1"
compensate = {{ action = "test.undo", params = {{ of = "{{{{ steps.a.output.step }}}}" }} }}

[[stage.step]]
id = "b"
title = "B"
action = "test.do"
needs = ["a"]
compensate = {{ action = "test.undo" }}
{extra}
"#
        ))
    }

    pub async fn a_rollback_undoes_one_step_of_a_completed_workflow(env: &Env) {
        let engine = env.engine(&reversible(""));
        let id = env.start(&engine, json!({})).await;
        env.settle(&engine).await;
        assert_eq!(env.instance(id).await.0.state, InstanceState::Completed);

        let (instance, step) = engine
            .rollback_step(id, "a", "op_reviewer", "wrong mailbox")
            .await
            .unwrap();
        assert_eq!(step.state, StepState::Compensating);
        assert_eq!(instance.next_run_at, Some(env.clock.now()), "due now");
        env.settle(&engine).await;
        let (instance, steps) = env.instance(id).await;
        assert_eq!(instance.state, InstanceState::Completed, "stays completed");
        assert_eq!(steps["a"].state, StepState::Compensated);
        assert_eq!(steps["b"].state, StepState::Succeeded, "untouched");
        assert_eq!(
            env.calls(),
            vec![format!("{id}:a"), format!("{id}:b"), format!("{id}:a:undo")],
            "the compensation ran once, with its own key"
        );
        let history = env.db.store.instance_history(id).await.unwrap();
        let requested = history
            .iter()
            .find(|h| h.kind == "step.rollback_requested")
            .unwrap();
        assert_eq!(requested.actor, "op_reviewer");
        assert_eq!(requested.detail["reason"], "wrong mailbox");
        let kinds = env.kinds(id).await;
        assert_eq!(count(&kinds, "step.compensated a"), 1);
        assert_eq!(count(&kinds, "step.compensated b"), 0);

        // Once undone, it cannot be rolled back again.
        let again = engine
            .rollback_step(id, "a", "op_reviewer", "again")
            .await
            .unwrap_err();
        assert!(again.to_string().contains("not succeeded"), "{again}");
    }

    pub async fn a_rollback_in_a_running_workflow_lets_it_go_on(env: &Env) {
        let extra = r#"
[[stage.step]]
id = "later"
title = "Wait an hour"
wait = "1h"
needs = ["a"]

[[stage.step]]
id = "c"
title = "C"
action = "test.do"
needs = ["later"]
"#;
        let engine = env.engine(&reversible(extra));
        let id = env.start(&engine, json!({})).await;
        env.settle(&engine).await;
        let (instance, steps) = env.instance(id).await;
        assert_eq!(instance.state, InstanceState::Running);
        assert_eq!(steps["later"].state, StepState::Retrying);

        engine
            .rollback_step(id, "a", "op_reviewer", "not this one")
            .await
            .unwrap();
        env.settle(&engine).await;
        let (instance, steps) = env.instance(id).await;
        assert_eq!(steps["a"].state, StepState::Compensated);
        assert_eq!(
            instance.state,
            InstanceState::Running,
            "the timer still waits"
        );
        assert_eq!(steps["later"].state, StepState::Retrying);
        assert_eq!(steps["c"].state, StepState::Pending);

        env.clock.advance(Duration::hours(1));
        env.settle(&engine).await;
        let (instance, steps) = env.instance(id).await;
        assert_eq!(instance.state, InstanceState::Completed);
        assert_eq!(steps["c"].state, StepState::Succeeded);
        assert_eq!(steps["a"].state, StepState::Compensated);
        assert_eq!(
            env.calls().iter().filter(|k| k.ends_with(":undo")).count(),
            1
        );
    }

    pub async fn rollbacks_are_refused_clearly(env: &Env) {
        let extra = r#"
[[stage.step]]
id = "plain"
title = "No compensation"
action = "test.do"
needs = ["b"]

[[stage.step]]
id = "hold"
title = "Wait a day"
wait = "1d"
needs = ["plain"]
"#;
        let engine = env.engine(&reversible(extra));
        let id = env.start(&engine, json!({})).await;
        env.settle(&engine).await;
        let refused = |result: Result<_, EngineError>, words: &str| match result {
            Err(EngineError::Refused(err)) => {
                assert!(err.to_string().contains(words), "{err} lacks {words}")
            }
            other => panic!("expected a refusal with {words}, got {other:?}"),
        };
        refused(
            engine.rollback_step(id, "plain", "op_x", "why").await,
            "no compensation",
        );
        refused(
            engine.rollback_step(id, "hold", "op_x", "why").await,
            "no compensation",
        );
        refused(
            engine.rollback_step(id, "nope", "op_x", "why").await,
            "no step `nope`",
        );
        refused(engine.rollback_step(id, "a", "op_x", "  ").await, "reason");
        engine.cancel(id, "op_x", "client left").await.unwrap();
        refused(
            engine.rollback_step(id, "a", "op_x", "why").await,
            "cancelled",
        );
        // Nothing was undone by any of these.
        assert!(env.calls().iter().all(|k| !k.ends_with(":undo")));

        // A step that has not run yet cannot be rolled back.
        let id = env.start(&engine, json!({})).await;
        refused(
            engine.rollback_step(id, "a", "op_x", "why").await,
            "not succeeded",
        );
        let missing = engine
            .rollback_step(
                "wf_01jd8x3k2q9f6v0c4m7r5t8w1y".parse().unwrap(),
                "a",
                "op_x",
                "why",
            )
            .await;
        assert!(matches!(
            missing,
            Err(EngineError::Store(StoreError::NotFound(_)))
        ));
    }
}

macro_rules! timer_tests {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let db = super::TestDatabase::sqlite().await.unwrap();
                    let env = super::Env { db, clock: std::sync::Arc::new(super::FakeClock::default()), calls: Default::default() };
                    super::cases::$case(&env).await;
                    env.db.cleanup().await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(db) = super::TestDatabase::postgres(concat!("timers_", stringify!($case))).await.unwrap() else {
                        eprintln!("GATEHOUSE_TEST_DATABASE_URL is not set; the PostgreSQL run is done by .ci/run");
                        return;
                    };
                    let env = super::Env { db, clock: std::sync::Arc::new(super::FakeClock::default()), calls: Default::default() };
                    super::cases::$case(&env).await;
                    env.db.cleanup().await;
                }
            )*
        }
    };
}

timer_tests!(
    a_wait_step_fires_once_when_its_time_comes,
    a_timer_survives_a_restart,
    a_wait_until_in_the_past_fires_at_once,
    an_unreadable_wait_until_fails_the_step,
    an_overdue_approval_escalates_once,
    a_rollback_undoes_one_step_of_a_completed_workflow,
    a_rollback_in_a_running_workflow_lets_it_go_on,
    rollbacks_are_refused_clearly,
);
