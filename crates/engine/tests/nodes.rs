//! Several engine nodes on one database: leases share the work so that no
//! step runs twice, a dead node's work is taken over once its leases
//! expire, and (PostgreSQL) `LISTEN/NOTIFY` wakes a node when another
//! process made work due.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests fail loudly"
)]

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use gatehouse_core::clock::{Clock, FakeClock};
use gatehouse_core::id::WorkflowId;
use gatehouse_core::store::InstanceQuery;
use gatehouse_core::workflow::{DedupKey, EventKind, EventSource, InstanceState};
use gatehouse_engine::action::{Action, ActionCall, ActionError, ActionRegistry};
use gatehouse_engine::runtime::{Engine, EngineConfig, NewEvent};
use gatehouse_engine::template::{ActionCatalog, Template};
use gatehouse_store::testing::TestDatabase;
use serde_json::{Value, json};

/// Counts the calls of each idempotency key, and which node made them.
#[derive(Default)]
struct Counter {
    calls: Mutex<BTreeMap<String, Vec<String>>>,
    /// Calls whose idempotency key starts with this wait for a permit.
    hold: Mutex<Option<(String, Arc<tokio::sync::Semaphore>)>>,
}

struct Count {
    counter: Arc<Counter>,
    node: String,
}

#[async_trait]
impl Action for Count {
    async fn run(&self, call: ActionCall<'_>) -> Result<Value, ActionError> {
        self.counter
            .calls
            .lock()
            .unwrap()
            .entry(call.idempotency_key.to_owned())
            .or_default()
            .push(self.node.clone());
        let hold = self.counter.hold.lock().unwrap().clone();
        if let Some((prefix, permits)) = hold
            && call.idempotency_key.starts_with(&prefix)
        {
            let _permit = permits.acquire().await.unwrap();
        }
        // Long enough for the other node to be busy at the same time.
        tokio::time::sleep(Duration::from_millis(2)).await;
        Ok(json!({ "node": self.node }))
    }
}

struct Catalog;
impl ActionCatalog for Catalog {
    fn knows(&self, action: &str) -> bool {
        action == "test.count"
    }
}

fn chain() -> Template {
    let mut text = String::from(
        "name = \"nodes\"\nversion = 1\ntitle = \"Nodes\"\narea = \"documentation\"\n\n[[trigger]]\nevent = \"test.started\"\n\n[[stage]]\nid = \"only\"\ntitle = \"Only\"\n",
    );
    for i in 0..3 {
        let needs = if i == 0 {
            String::new()
        } else {
            format!("\"s{}\"", i - 1)
        };
        text.push_str(&format!(
            "\n[[stage.step]]\nid = \"s{i}\"\ntitle = \"Step {i}\"\naction = \"test.count\"\nneeds = [{needs}]\n"
        ));
    }
    Template::from_toml("nodes.toml", &text, &Catalog).unwrap()
}

struct Env {
    db: TestDatabase,
    clock: Arc<FakeClock>,
    counter: Arc<Counter>,
}

impl Env {
    fn node(&self, name: &str, config: EngineConfig) -> Arc<Engine> {
        self.node_on(self.db.store.clone(), name, config)
    }

    /// A node with a store (connection pool) of its own, as in another
    /// process.
    async fn separate_node(&self, name: &str, config: EngineConfig) -> Arc<Engine> {
        let store = gatehouse_store::connect(&self.db.url).await.unwrap();
        self.node_on(store, name, config)
    }

    fn node_on(
        &self,
        store: Arc<dyn gatehouse_engine::runtime::WorkflowStore>,
        name: &str,
        config: EngineConfig,
    ) -> Arc<Engine> {
        let mut actions = ActionRegistry::new();
        actions.register(
            "test.count",
            Arc::new(Count {
                counter: self.counter.clone(),
                node: name.to_owned(),
            }),
        );
        Arc::new(Engine::new(
            store,
            Arc::new(vec![chain()]),
            Arc::new(actions),
            self.clock.clone(),
            EngineConfig {
                node: name.to_owned(),
                ..config
            },
        ))
    }

    async fn submit(&self, engine: &Engine, key: &str) -> WorkflowId {
        let submitted = engine
            .submit(
                NewEvent {
                    tenant_id: None,
                    source: EventSource::parse("api").unwrap(),
                    kind: EventKind::parse("test.started").unwrap(),
                    dedup_key: DedupKey::parse(key).unwrap(),
                    payload: json!({}),
                },
                "op_test",
            )
            .await
            .unwrap();
        submitted.instances[0]
    }

    async fn completed(&self) -> usize {
        self.db
            .store
            .list_instances(&InstanceQuery {
                within: None,
                state: Some(InstanceState::Completed),
                limit: 10_000,
                ..Default::default()
            })
            .await
            .unwrap()
            .len()
    }

    /// Waits (a bounded time: a hang fails the test) until `n` instances completed.
    async fn wait_completed(&self, n: usize) {
        for _ in 0..600 {
            if self.completed().await >= n {
                return;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("only {} of {n} instances completed", self.completed().await);
    }
}

mod cases {
    use super::*;

    pub async fn two_nodes_share_the_work_and_never_run_a_step_twice(env: &Env) {
        let config = EngineConfig {
            batch: 8,
            idle_poll: Duration::from_millis(20),
            ..EngineConfig::default()
        };
        let (a, b) = (
            env.node("node-a", config.clone()),
            env.separate_node("node-b", config).await,
        );
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let mut workers = tokio::task::JoinSet::new();
        for engine in [a.clone(), b.clone()] {
            let mut stopped = stopped.clone();
            workers.spawn(async move {
                engine
                    .run(async move {
                        let _ = stopped.wait_for(|s| *s).await;
                    })
                    .await;
            });
        }
        let mut ids = Vec::new();
        for n in 0..60 {
            // Events arrive at both nodes.
            let engine = if n % 2 == 0 { &a } else { &b };
            ids.push(env.submit(engine, &format!("deal-{n}")).await);
        }
        env.wait_completed(60).await;
        stop.send(true).unwrap();
        while workers.join_next().await.is_some() {}

        let calls = env.counter.calls.lock().unwrap().clone();
        assert_eq!(calls.len(), 180, "every step of every instance ran");
        let twice: Vec<_> = calls.iter().filter(|(_, by)| by.len() != 1).collect();
        assert!(twice.is_empty(), "steps run more than once: {twice:?}");
        let by_a = calls.values().filter(|by| by[0] == "node-a").count();
        eprintln!("node-a ran {by_a} steps, node-b {}", 180 - by_a);
        // Leases are given up on shutdown: nothing is left claimed.
        for id in ids {
            let (instance, _) = env.db.store.get_instance(id).await.unwrap();
            assert_eq!(instance.state, InstanceState::Completed);
        }
    }

    pub async fn a_dead_nodes_work_is_taken_over_when_its_leases_expire(env: &Env) {
        let lease = Duration::from_secs(60);
        let config = EngineConfig {
            lease,
            ..EngineConfig::default()
        };
        let survivor = env.node("node-b", config.clone());
        for n in 0..5 {
            env.submit(&survivor, &format!("deal-{n}")).await;
        }
        // Another node claims everything, then dies without committing.
        let now = env.clock.now();
        let claimed = env
            .db
            .store
            .claim_due("node-a", now, now + time::Duration::seconds(60), 100)
            .await
            .unwrap();
        assert_eq!(claimed.len(), 5);

        assert_eq!(survivor.tick().await.unwrap(), 0, "the leases are live");
        env.clock.advance(time::Duration::seconds(59));
        assert_eq!(survivor.tick().await.unwrap(), 0, "still live");
        env.clock.advance(time::Duration::seconds(2));
        while survivor.tick().await.unwrap() > 0 {}
        assert_eq!(env.completed().await, 5);
        let calls = env.counter.calls.lock().unwrap().clone();
        assert_eq!(calls.len(), 15);
        assert!(calls.values().all(|by| by == &["node-b"]));
    }

    pub async fn a_node_restarted_under_its_name_resumes_at_once(env: &Env) {
        let first = env.node("node-a", EngineConfig::default());
        let id = env.submit(&first, "deal-1").await;
        let now = env.clock.now();
        env.db
            .store
            .claim_due("node-a", now, now + time::Duration::hours(1), 100)
            .await
            .unwrap();
        drop(first);
        // The same node, restarted: its own leases do not hold it back.
        let again = env.node("node-a", EngineConfig::default());
        while again.tick().await.unwrap() > 0 {}
        let (instance, _) = env.db.store.get_instance(id).await.unwrap();
        assert_eq!(instance.state, InstanceState::Completed);
    }

    pub async fn a_stale_instance_does_not_hold_back_the_rest_of_its_batch(env: &Env) {
        let engine = env.node("node-a", EngineConfig::default());
        let held = env.submit(&engine, "deal-held").await;
        let free = env.submit(&engine, "deal-free").await;
        let permits = Arc::new(tokio::sync::Semaphore::new(0));
        *env.counter.hold.lock().unwrap() = Some((held.to_string(), permits.clone()));
        // The tick runs both first steps; the held one waits in its action
        // while a person cancels its instance.
        let tick = {
            let engine = engine.clone();
            tokio::spawn(async move { engine.tick().await })
        };
        while !env
            .counter
            .calls
            .lock()
            .unwrap()
            .keys()
            .any(|k| k.starts_with(&held.to_string()))
        {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        engine
            .cancel(held, "op_test", "the client withdrew")
            .await
            .unwrap();
        permits.add_permits(1);
        assert_eq!(tick.await.unwrap().unwrap(), 2);
        // The cancellation stands; the other instance's step was committed.
        let (held_now, _) = env.db.store.get_instance(held).await.unwrap();
        assert_eq!(held_now.state, InstanceState::Cancelled);
        let (_, steps) = env.db.store.get_instance(free).await.unwrap();
        let s0 = steps.iter().find(|s| s.step_id == "s0").unwrap();
        assert_eq!(s0.state, gatehouse_core::workflow::StepState::Succeeded);
        while engine.tick().await.unwrap() > 0 {}
        let (free_now, _) = env.db.store.get_instance(free).await.unwrap();
        assert_eq!(free_now.state, InstanceState::Completed);
        let calls = env.counter.calls.lock().unwrap().clone();
        let of_free = calls
            .keys()
            .filter(|k| k.starts_with(&free.to_string()))
            .count();
        assert_eq!(of_free, 3);
        assert!(
            calls.values().all(|by| by.len() == 1),
            "no step of the free instance ran twice: {calls:?}"
        );
    }

    pub async fn an_unreadable_template_parks_its_instance_only(env: &Env) {
        let engine = env.node("node-a", EngineConfig::default());
        let good = env.submit(&engine, "deal-good").await;
        let broken = env.submit(&engine, "deal-broken").await;
        // Corrupt the broken one's pinned definition behind the engine's back.
        let (mut instance, _) = env.db.store.get_instance(broken).await.unwrap();
        instance.definition = json!({ "not": "a template" });
        instance.version = 1;
        let fresh = gatehouse_core::id::WorkflowId::generate(env.clock.now());
        instance.id = fresh;
        instance.started_by = None;
        env.db
            .store
            .commit_progress(&[gatehouse_core::workflow::Progress {
                instance,
                steps: Vec::new(),
                history: Vec::new(),
                approvals: Vec::new(),
                tasks: Vec::new(),
                notifications: Vec::new(),
            }])
            .await
            .unwrap();
        while engine.tick().await.unwrap() > 0 {}
        let state = |id| async move { env.db.store.get_instance(id).await.unwrap().0.state };
        assert_eq!(state(good).await, InstanceState::Completed);
        assert_eq!(state(broken).await, InstanceState::Completed);
        assert_eq!(state(fresh).await, InstanceState::Parked);
        let history = env.db.store.instance_history(fresh).await.unwrap();
        let parked = history.last().unwrap();
        assert_eq!(parked.kind, "instance.parked");
        assert!(
            parked.detail["reason"]
                .as_str()
                .unwrap()
                .contains("pinned template is unreadable")
        );
    }

    pub async fn a_cancellation_by_another_process_stops_the_next_step(env: &Env) {
        let worker = env.node("node-a", EngineConfig::default());
        let id = env.submit(&worker, "deal-1").await;
        // One wave: s0 runs, and the worker now holds the instance.
        assert_eq!(worker.tick().await.unwrap(), 1);
        // Someone cancels it through another process (which cannot tell
        // this worker to forget it).
        let api = env.separate_node("node-api", EngineConfig::default()).await;
        api.cancel(id, "op_test", "the client withdrew")
            .await
            .unwrap();
        while worker.tick().await.unwrap() > 0 {}
        let calls = env.counter.calls.lock().unwrap().clone();
        let keys: Vec<&String> = calls.keys().collect();
        assert_eq!(
            keys,
            [&format!("{id}:s0")],
            "no step ran after the cancellation"
        );
        let (instance, _) = env.db.store.get_instance(id).await.unwrap();
        assert_eq!(instance.state, InstanceState::Cancelled);
    }

    /// PostgreSQL only: a node sleeping in its idle poll is woken by a
    /// `NOTIFY` from another process's commit, not by its timer.
    pub async fn another_nodes_event_wakes_a_sleeping_node(env: &Env) {
        let sleeper = env.node(
            "node-b",
            EngineConfig {
                idle_poll: Duration::from_secs(3600),
                ..EngineConfig::default()
            },
        );
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let worker = {
            let sleeper = sleeper.clone();
            tokio::spawn(async move {
                sleeper
                    .run(async move {
                        let _ = stopped.await;
                    })
                    .await;
            })
        };
        // Let it find nothing and fall asleep (with its LISTEN in place).
        tokio::time::sleep(Duration::from_millis(300)).await;
        // An API node without a worker takes the event in.
        let api = env.separate_node("node-api", EngineConfig::default()).await;
        env.submit(&api, "deal-1").await;
        env.wait_completed(1).await;
        let _ = stop.send(());
        worker.await.unwrap();
        let calls = env.counter.calls.lock().unwrap().clone();
        assert!(calls.values().all(|by| by == &["node-b"]), "{calls:?}");
    }
}

fn env(db: TestDatabase) -> Env {
    Env {
        db,
        clock: Arc::new(FakeClock::default()),
        counter: Arc::default(),
    }
}

macro_rules! node_tests {
    ($backend:ident: $($case:ident),* $(,)?) => {
        mod $backend {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(db) = node_tests!(@db $backend, $case) else {
                        eprintln!("GATEHOUSE_TEST_DATABASE_URL is not set; the PostgreSQL run is done by .ci/run");
                        return;
                    };
                    let env = super::env(db);
                    super::cases::$case(&env).await;
                    env.db.cleanup().await;
                }
            )*
        }
    };
    (@db sqlite, $case:ident) => { Some(super::TestDatabase::sqlite().await.unwrap()) };
    (@db postgres, $case:ident) => { super::TestDatabase::postgres(stringify!($case)).await.unwrap() };
}

node_tests!(sqlite:
    a_cancellation_by_another_process_stops_the_next_step,
    a_stale_instance_does_not_hold_back_the_rest_of_its_batch,
    an_unreadable_template_parks_its_instance_only,
    two_nodes_share_the_work_and_never_run_a_step_twice,
    a_dead_nodes_work_is_taken_over_when_its_leases_expire,
    a_node_restarted_under_its_name_resumes_at_once,
);

node_tests!(postgres:
    a_cancellation_by_another_process_stops_the_next_step,
    a_stale_instance_does_not_hold_back_the_rest_of_its_batch,
    an_unreadable_template_parks_its_instance_only,
    two_nodes_share_the_work_and_never_run_a_step_twice,
    a_dead_nodes_work_is_taken_over_when_its_leases_expire,
    a_node_restarted_under_its_name_resumes_at_once,
    another_nodes_event_wakes_a_sleeping_node,
);
