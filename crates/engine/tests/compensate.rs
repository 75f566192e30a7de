//! Compensating a stopped workflow on request (`Engine::compensate`), on
//! SQLite and (with `GATEHOUSE_TEST_DATABASE_URL`) on PostgreSQL: a parked
//! instance undoes its completed steps, last first, each once with its own
//! key; a cancelled one too, with its open approval cancelled; refusals
//! for a completed instance, a compensated one and one with nothing to undo.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests fail loudly"
)]

use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use gatehouse_core::approval::{ApprovalState, Verdict};
use gatehouse_core::clock::FakeClock;
use gatehouse_core::id::WorkflowId;
use gatehouse_core::operator::{Operator, OperatorName, Role};
use gatehouse_core::store::ApprovalQuery;
use gatehouse_core::tenant::DisplayName;
use gatehouse_core::workflow::{DedupKey, EventKind, EventSource, InstanceState, StepState};
use gatehouse_engine::action::{Action, ActionCall, ActionError, ActionRegistry};
use gatehouse_engine::runtime::{Engine, EngineConfig, NewEvent};
use gatehouse_engine::template::Template;
use gatehouse_store::testing::TestDatabase;
use serde_json::{Value, json};

/// Records every call's idempotency key; fails the steps named `broken`.
#[derive(Default)]
struct Log(Mutex<Vec<String>>);

struct Do(Arc<Log>, bool);

#[async_trait]
impl Action for Do {
    async fn run(&self, call: ActionCall<'_>) -> Result<Value, ActionError> {
        self.0
            .0
            .lock()
            .unwrap()
            .push(call.idempotency_key.to_owned());
        if self.1 && call.params["broken"] == true {
            return Err(ActionError::permanent("broken"));
        }
        Ok(json!({ "step": call.step_id }))
    }
}

struct Catalog;
impl gatehouse_engine::template::ActionCatalog for Catalog {
    fn knows(&self, action: &str) -> bool {
        action.starts_with("test.")
    }
}

/// Three steps in a chain, each with a compensation; `s2` is L2 when
/// `gated`, and broken when `broken`.
fn flow(gated: bool, broken: bool) -> Template {
    let mut text = String::from(
        "name = \"undo-flow\"\nversion = 1\ntitle = \"Test\"\narea = \"documentation\"\non_failure = \"park\"\n\n[[trigger]]\nevent = \"test.started\"\n\n[[stage]]\nid = \"only\"\ntitle = \"Only\"\n",
    );
    for i in 0..3 {
        let needs = if i == 0 {
            String::new()
        } else {
            format!("\"s{}\"", i - 1)
        };
        let gate = if gated && i == 2 {
            "gate = \"L2\"\n"
        } else {
            ""
        };
        let broken = broken && i == 2;
        text.push_str(&format!(
            "\n[[stage.step]]\nid = \"s{i}\"\ntitle = \"Step {i}\"\naction = \"test.do\"\n{gate}params = {{ broken = {broken} }}\nneeds = [{needs}]\nretry = {{ max_attempts = 1 }}\ncompensate = {{ action = \"test.undo\", params = {{ of = \"s{i}\" }} }}\n"
        ));
    }
    Template::from_toml("undo.toml", &text, &Catalog).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

struct Env {
    db: TestDatabase,
    log: Arc<Log>,
}

impl Env {
    fn engine(&self, template: Template) -> Engine {
        let mut actions = ActionRegistry::new();
        actions.register("test.do", Arc::new(Do(self.log.clone(), true)));
        actions.register("test.undo", Arc::new(Do(self.log.clone(), false)));
        Engine::new(
            self.db.store.clone(),
            Arc::new(vec![template]),
            Arc::new(actions),
            Arc::new(FakeClock::default()),
            EngineConfig::default(),
        )
    }

    async fn start(&self, engine: &Engine, key: &str) -> WorkflowId {
        let submitted = engine
            .submit(
                NewEvent {
                    tenant_id: None,
                    source: EventSource::parse("test").unwrap(),
                    kind: EventKind::parse("test.started").unwrap(),
                    dedup_key: DedupKey::parse(key).unwrap(),
                    payload: json!({}),
                },
                "system",
            )
            .await
            .unwrap();
        let id = submitted.instances[0];
        settle(engine).await;
        id
    }

    fn calls(&self) -> Vec<String> {
        self.log.0.lock().unwrap().clone()
    }
}

async fn settle(engine: &Engine) {
    for _ in 0..100 {
        if engine.tick().await.unwrap() == 0 {
            return;
        }
    }
    panic!("the engine did not settle");
}

async fn parked_instances_undo_their_completed_steps_last_first(env: &Env) {
    let engine = env.engine(flow(false, true));
    let id = env.start(&engine, "a").await;
    let (instance, _) = env.db.store.get_instance(id).await.unwrap();
    assert_eq!(instance.state, InstanceState::Parked);
    assert!(env.calls().iter().all(|k| !k.ends_with(":undo")));

    let refused = engine.compensate(id, "op_lead", "  ").await;
    assert!(refused.is_err(), "a reason is required");
    let asked = engine
        .compensate(id, "op_lead", "the deal fell through")
        .await
        .unwrap();
    assert_eq!(asked.state, InstanceState::Compensating);
    settle(&engine).await;

    let (instance, steps) = env.db.store.get_instance(id).await.unwrap();
    assert_eq!(instance.state, InstanceState::Compensated);
    let undo: Vec<String> = env
        .calls()
        .into_iter()
        .filter(|k| k.ends_with(":undo"))
        .collect();
    assert_eq!(undo, [format!("{id}:s1:undo"), format!("{id}:s0:undo")]);
    let state = |s: &str| steps.iter().find(|r| r.step_id == s).unwrap().state;
    assert_eq!(state("s0"), StepState::Compensated);
    assert_eq!(state("s1"), StepState::Compensated);
    assert_eq!(state("s2"), StepState::Failed);
    let history = env.db.store.instance_history(id).await.unwrap();
    let asked = history
        .iter()
        .find(|h| h.kind == "instance.compensating")
        .unwrap();
    assert_eq!(asked.actor, "op_lead");
    assert_eq!(asked.detail["reason"], "the deal fell through");
    assert_eq!(asked.detail["instance_was"], "parked");
    assert_eq!(
        history
            .iter()
            .filter(|h| h.kind == "step.compensated")
            .count(),
        2
    );

    // Done: asking again is refused, and nothing runs twice.
    assert!(engine.compensate(id, "op_lead", "again").await.is_err());
    settle(&engine).await;
    assert_eq!(
        env.calls().iter().filter(|k| k.ends_with(":undo")).count(),
        2
    );
}

async fn a_rejected_workflow_is_compensated_and_its_approvals_cancelled(env: &Env) {
    let engine = env.engine(flow(true, false));
    let id = env.start(&engine, "b").await;
    let pending = env
        .db
        .store
        .list_approvals(&ApprovalQuery {
            within: None,
            instance: Some(id),
            state: Some(ApprovalState::Pending),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(pending.len(), 1);
    // Still waiting: compensating now cancels the approval.
    let asked = engine
        .compensate(id, "op_lead", "wrong client")
        .await
        .unwrap();
    assert_eq!(asked.state, InstanceState::Compensating);
    let approval = env.db.store.get_approval(pending[0].id).await.unwrap();
    assert_eq!(approval.state, ApprovalState::Cancelled);
    settle(&engine).await;
    let (instance, steps) = env.db.store.get_instance(id).await.unwrap();
    assert_eq!(instance.state, InstanceState::Compensated);
    let s2 = steps.iter().find(|r| r.step_id == "s2").unwrap();
    assert_eq!(s2.state, StepState::Skipped);

    // A rejection (the template parks: the instance is cancelled), then
    // the compensation.
    let id = env.start(&engine, "c").await;
    let pending = env
        .db
        .store
        .list_approvals(&ApprovalQuery {
            within: None,
            instance: Some(id),
            state: Some(ApprovalState::Pending),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    let lead = Operator::new(
        OperatorName::parse("lea.lead").unwrap(),
        DisplayName::parse("Lea").unwrap(),
        Role::Lead,
        time::OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(1_767_225_600),
    );
    env.db.store.insert_operator(&lead, &[]).await.unwrap();
    engine
        .decide(pending[0].id, &lead, Verdict::Reject, "not yet", None)
        .await
        .unwrap();
    let (instance, _) = env.db.store.get_instance(id).await.unwrap();
    assert_eq!(instance.state, InstanceState::Cancelled);
    engine.compensate(id, "op_lead", "undo it").await.unwrap();
    settle(&engine).await;
    let (instance, _) = env.db.store.get_instance(id).await.unwrap();
    assert_eq!(instance.state, InstanceState::Compensated);
    assert!(env.calls().contains(&format!("{id}:s0:undo")));
}

async fn completed_workflows_and_those_with_nothing_done_are_refused(env: &Env) {
    let engine = env.engine(flow(false, false));
    let id = env.start(&engine, "d").await;
    let (instance, _) = env.db.store.get_instance(id).await.unwrap();
    assert_eq!(instance.state, InstanceState::Completed);
    let err = engine.compensate(id, "op_lead", "undo").await.unwrap_err();
    assert!(err.to_string().contains("completed"), "{err}");

    // Nothing succeeded yet: nothing to undo.
    let text = "name = \"undo-flow\"\nversion = 1\ntitle = \"Test\"\narea = \"documentation\"\non_failure = \"park\"\n\n[[trigger]]\nevent = \"test.started\"\n\n[[stage]]\nid = \"only\"\ntitle = \"Only\"\n\n[[stage.step]]\nid = \"s0\"\ntitle = \"Step\"\naction = \"test.do\"\nparams = { broken = true }\nretry = { max_attempts = 1 }\ncompensate = { action = \"test.undo\", params = { of = \"s0\" } }\n";
    let engine = env.engine(Template::from_toml("one.toml", text, &Catalog).unwrap());
    let id = env.start(&engine, "e").await;
    let (instance, _) = env.db.store.get_instance(id).await.unwrap();
    assert_eq!(instance.state, InstanceState::Parked);
    let err = engine.compensate(id, "op_lead", "undo").await.unwrap_err();
    assert!(err.to_string().contains("nothing to undo"), "{err}");
}

/// Creates a tenant (a real row: instances reference tenants) and answers
/// its id, as `tenant.create` does; declares it creates the workflow's
/// tenant.
struct CreateTenant(Arc<dyn gatehouse_core::store::Store>);

#[async_trait]
impl Action for CreateTenant {
    async fn run(&self, call: ActionCall<'_>) -> Result<Value, ActionError> {
        use gatehouse_core::keys::{TenantKey, WrappedKey};
        use gatehouse_core::tenant::{Region, Tenant, TenantSlug, TenantState};
        let slug = call.params["slug"].as_str().unwrap();
        let now = gatehouse_core::clock::Clock::now(&FakeClock::default());
        let tenant = Tenant::new(
            TenantSlug::parse(slug).unwrap(),
            DisplayName::parse(slug).unwrap(),
            Region::parse("eu").unwrap(),
            TenantState::Provisioning,
            now,
        )
        .unwrap();
        let key = TenantKey {
            tenant_id: tenant.id,
            wrapped: WrappedKey {
                kek_id: "local:1".into(),
                ciphertext: vec![1; 8],
            },
            created_at: now,
            rewrapped_at: None,
        };
        self.0.insert_tenant(&tenant, &key, &[]).await.unwrap();
        Ok(json!({ "id": tenant.id, "slug": slug }))
    }

    fn creates_workflow_tenant(&self) -> bool {
        true
    }
}

/// A workflow of the installation whose first step creates its tenant
/// belongs to that tenant from then on (its later approval carries it),
/// and to the installation again once the step is undone; one that had a
/// tenant keeps it.
async fn a_workflow_joins_the_tenant_its_step_creates(env: &Env) {
    let text = "name = \"joins\"\nversion = 1\ntitle = \"Test\"\narea = \"documentation\"\non_failure = \"park\"\n\n[[trigger]]\nevent = \"test.started\"\n\n[[stage]]\nid = \"only\"\ntitle = \"Only\"\n\n[[stage.step]]\nid = \"make\"\ntitle = \"Make\"\naction = \"test.tenant\"\nparams = { slug = \"{{ event.payload.slug }}\" }\ncompensate = { action = \"test.undo\", params = { of = \"make\" } }\n\n[[stage.step]]\nid = \"next\"\ntitle = \"Next\"\naction = \"test.do\"\ngate = \"L2\"\nneeds = [\"make\"]\n";
    let template = Template::from_toml("joins.toml", text, &Catalog).unwrap();
    let mut actions = ActionRegistry::new();
    actions.register("test.tenant", Arc::new(CreateTenant(env.db.store.clone())));
    actions.register("test.do", Arc::new(Do(env.log.clone(), false)));
    actions.register("test.undo", Arc::new(Do(env.log.clone(), false)));
    let engine = Engine::new(
        env.db.store.clone(),
        Arc::new(vec![template]),
        Arc::new(actions),
        Arc::new(FakeClock::default()),
        EngineConfig::default(),
    );
    let start =
        |key: &'static str, tenant: Option<gatehouse_core::id::TenantId>, slug: &'static str| {
            let engine = &engine;
            async move {
                let submitted = engine
                    .submit(
                        NewEvent {
                            tenant_id: tenant,
                            source: EventSource::parse("test").unwrap(),
                            kind: EventKind::parse("test.started").unwrap(),
                            dedup_key: DedupKey::parse(key).unwrap(),
                            payload: json!({ "slug": slug }),
                        },
                        "system",
                    )
                    .await
                    .unwrap();
                settle(engine).await;
                submitted.instances[0]
            }
        };
    let kinds = async |id| -> Vec<String> {
        let history = env.db.store.instance_history(id).await.unwrap();
        history.into_iter().map(|h| h.kind).collect()
    };

    let id = start("joins", None, "acme").await;
    let (instance, steps) = env.db.store.get_instance(id).await.unwrap();
    let made: gatehouse_core::id::TenantId = steps
        .iter()
        .find(|s| s.step_id == "make")
        .unwrap()
        .output
        .as_ref()
        .unwrap()["id"]
        .as_str()
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(instance.tenant_id, Some(made));
    assert!(
        kinds(id)
            .await
            .contains(&"instance.tenant_adopted".to_owned())
    );
    let pending = env
        .db
        .store
        .list_approvals(&ApprovalQuery {
            instance: Some(id),
            state: Some(ApprovalState::Pending),
            limit: 10,
            ..Default::default()
        })
        .await
        .unwrap();
    assert_eq!(pending.len(), 1);
    assert_eq!(
        pending[0].tenant_id,
        Some(made),
        "the approval after it is the tenant's"
    );

    engine
        .compensate(id, "op_lead", "wrong client")
        .await
        .unwrap();
    settle(&engine).await;
    let (instance, _) = env.db.store.get_instance(id).await.unwrap();
    assert_eq!(instance.state, InstanceState::Compensated);
    assert_eq!(instance.tenant_id, None, "the installation's again");
    assert!(
        kinds(id)
            .await
            .contains(&"instance.tenant_released".to_owned())
    );

    // A workflow that belonged to a tenant keeps it, whatever its step made.
    let id = start("keeps", Some(made), "beta").await;
    let (instance, _) = env.db.store.get_instance(id).await.unwrap();
    assert_eq!(instance.tenant_id, Some(made));
    assert!(
        !kinds(id)
            .await
            .iter()
            .any(|k| k.starts_with("instance.tenant_"))
    );
}

macro_rules! compensate_tests {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let db = super::TestDatabase::sqlite().await.unwrap();
                    let env = super::Env { db, log: Default::default() };
                    super::$case(&env).await;
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
                    let env = super::Env { db, log: Default::default() };
                    super::$case(&env).await;
                    env.db.cleanup().await;
                }
            )*
        }
    };
}

compensate_tests!(
    parked_instances_undo_their_completed_steps_last_first,
    a_rejected_workflow_is_compensated_and_its_approvals_cancelled,
    completed_workflows_and_those_with_nothing_done_are_refused,
    a_workflow_joins_the_tenant_its_step_creates,
);
