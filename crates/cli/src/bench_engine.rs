//! `gatehouse bench engine`: how fast the workflow engine runs journaled
//! steps, and how quickly one workflow completes for a single caller.
//!
//! Two phases on one scratch database:
//! 1. single caller: 200 runs, one after another, of a 3-step workflow,
//!    timed from submitting its event to its completion being committed;
//! 2. throughput: `concurrency` clients each submit a workflow of `steps`
//!    L0 no-op steps and wait for it to complete, until `workflows` have
//!    run (a closed loop: `concurrency` workflows are in flight).
//!
//! The no-op action does nothing, but its step is planned, journaled and
//! committed like any other, so the figures are the engine's own cost.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use gatehouse_core::clock::{Clock, SystemClock};
use gatehouse_core::id::WorkflowId;
use gatehouse_core::store::{Backend, Store};
use gatehouse_core::workflow::{DedupKey, EventKind, EventSource, InstanceState};
use gatehouse_engine::action::{ActionRegistry, Noop};
use gatehouse_engine::runtime::{Engine, EngineConfig, NewEvent};
use gatehouse_engine::template::Template;
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use crate::CliError;
use crate::bench::{peak_rss_mb, progress};

/// The engine benchmark's settings.
#[derive(Debug, Clone, Copy)]
pub struct EngineBench {
    /// Workflows in the throughput phase.
    pub workflows: u32,
    /// Steps per workflow in the throughput phase.
    pub steps: u32,
    /// Workflows in flight in the throughput phase.
    pub concurrency: u32,
}

const SINGLE_RUNS: u32 = 200;

/// A chain of `steps` no-op steps, triggered by `event`.
fn chain(name: &str, event: &str, steps: u32) -> Result<Template, CliError> {
    let mut text = format!(
        "name = \"{name}\"\nversion = 1\ntitle = \"Benchmark\"\narea = \"documentation\"\n\n[[trigger]]\nevent = \"{event}\"\n\n[[stage]]\nid = \"run\"\ntitle = \"Run\"\n"
    );
    for i in 0..steps {
        let needs = if i == 0 {
            String::new()
        } else {
            format!("\"s{}\"", i - 1)
        };
        text.push_str(&format!(
            "\n[[stage.step]]\nid = \"s{i}\"\ntitle = \"Step {i}\"\naction = \"sandbox.noop\"\nneeds = [{needs}]\n"
        ));
    }
    let catalog: std::collections::BTreeSet<&str> = ["sandbox.noop"].into();
    Template::from_toml("bench", &text, &catalog).map_err(|e| CliError::Usage(e.to_string()))
}

fn event(kind: &str, key: String) -> Result<NewEvent, CliError> {
    Ok(NewEvent {
        tenant_id: None,
        source: EventSource::parse("bench")?,
        kind: EventKind::parse(kind)?,
        dedup_key: DedupKey::parse(&key)?,
        payload: Value::Null,
    })
}

/// Submits one event and waits until its workflow stops.
async fn run_one(
    engine: &Engine,
    store: &dyn Store,
    kind: &str,
    key: String,
) -> Result<(), CliError> {
    let mut finished = engine.subscribe();
    let submitted = engine
        .submit(event(kind, key)?, "bench")
        .await
        .map_err(|e| CliError::Usage(format!("submitting: {e}")))?;
    let Some(&id) = submitted.instances.first() else {
        return Err(CliError::Usage(
            "the benchmark event started no workflow".into(),
        ));
    };
    let wait = async {
        loop {
            match finished.recv().await {
                Ok((done, state)) if done == id => return check(id, state),
                Ok(_) => {}
                // Fell behind the notifications: ask the store.
                Err(RecvError::Lagged(_)) => {
                    let (instance, _) = store.get_instance(id).await?;
                    if instance.state.is_final() {
                        return check(id, instance.state);
                    }
                }
                Err(RecvError::Closed) => return Err(CliError::Usage("the engine stopped".into())),
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(120), wait)
        .await
        .map_err(|_| CliError::Usage(format!("workflow {id} did not complete within 2 minutes")))?
}

fn check(id: WorkflowId, state: InstanceState) -> Result<(), CliError> {
    if state == InstanceState::Completed {
        Ok(())
    } else {
        Err(CliError::Usage(format!(
            "workflow {id} ended {state}, not completed"
        )))
    }
}

/// Runs the benchmark on `store` (migrated here) and returns its result.
pub async fn measure(store: Arc<dyn Store>, bench: &EngineBench) -> Result<Value, CliError> {
    store.migrate().await?;
    let templates = vec![
        chain("bench-single", "bench.single", 3)?,
        chain("bench-load", "bench.load", bench.steps)?,
    ];
    let mut actions = ActionRegistry::new();
    actions.register("sandbox.noop", Arc::new(Noop));
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let config = EngineConfig {
        batch: 1024,
        idle_poll: Duration::from_millis(100),
        ..EngineConfig::default()
    };
    let engine = Arc::new(Engine::new(
        store.clone(),
        Arc::new(templates),
        Arc::new(actions),
        clock,
        config,
    ));
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let worker = {
        let engine = engine.clone();
        tokio::spawn(async move {
            engine
                .run(async {
                    let _ = stopped.await;
                })
                .await;
        })
    };
    eprintln!(
        "bench engine on {}: {SINGLE_RUNS} single 3-step runs, then {} workflows of {} steps with {} in flight",
        store.backend().as_str(),
        bench.workflows,
        bench.steps,
        bench.concurrency
    );

    // 1. One caller, one 3-step workflow at a time.
    let mut single = Vec::with_capacity(SINGLE_RUNS as usize);
    for i in 0..SINGLE_RUNS {
        let started = Instant::now();
        run_one(
            &engine,
            store.as_ref(),
            "bench.single",
            format!("single-{i}"),
        )
        .await?;
        single.push(started.elapsed().as_secs_f64() * 1000.0);
        progress("single", i + 1, SINGLE_RUNS);
    }
    single.sort_by(f64::total_cmp);
    let single_p50 = single[single.len() / 2];

    // 2. Throughput, closed loop.
    engine.stats().reset_latency();
    let steps_before = engine.stats().steps();
    let commits_before = engine.stats().commits();
    let next = Arc::new(AtomicU32::new(0));
    let started = Instant::now();
    let mut clients = tokio::task::JoinSet::new();
    for _ in 0..bench.concurrency {
        let (engine, store, next) = (engine.clone(), store.clone(), next.clone());
        let total = bench.workflows;
        clients.spawn(async move {
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= total {
                    return Ok::<(), CliError>(());
                }
                run_one(&engine, store.as_ref(), "bench.load", format!("load-{i}")).await?;
                progress("workflows", i + 1, total);
            }
        });
    }
    while let Some(joined) = clients.join_next().await {
        joined.map_err(|e| CliError::Usage(format!("a client failed: {e}")))??;
    }
    let elapsed = started.elapsed().as_secs_f64();
    let _ = stop.send(());
    let _ = worker.await;

    let stats = engine.stats();
    let steps = stats.steps() - steps_before;
    let commits = stats.commits() - commits_before;
    let durability = match store.backend() {
        Backend::Sqlite => {
            "each wave's steps are committed before the next wave runs (WAL, synchronous=NORMAL): every completed step survives a process crash; a power loss can lose the last commits, which are then re-run with the same idempotency keys"
        }
        Backend::Postgres => {
            "each wave's steps are committed before the next wave runs (synchronous_commit=on): every completed step survives a process crash and a power loss"
        }
    };
    Ok(json!({
        "scenario": "engine",
        "backend": store.backend().as_str(),
        "workflows": bench.workflows,
        "steps_per_workflow": bench.steps,
        "concurrency": bench.concurrency,
        "workflows_per_sec": (f64::from(bench.workflows) / elapsed).round(),
        "steps_per_sec": (steps as f64 / elapsed).round(),
        "p50_step_ms": stats.latency_quantile_ms(0.50),
        "p99_step_ms": stats.latency_quantile_ms(0.99),
        "single_workflow_p50_ms": (single_p50 * 100.0).round() / 100.0,
        "steps_per_commit": if commits == 0 { 0.0 } else { (steps as f64 / commits as f64 * 10.0).round() / 10.0 },
        "elapsed_secs": elapsed,
        "peak_rss_mb": peak_rss_mb(),
        "durability": durability,
    }))
}
