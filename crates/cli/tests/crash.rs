//! The crash test: `gatehouse serve` as a real process, killed with SIGKILL
//! at random moments while it takes events and runs workflows whose steps
//! call a target that counts side effects by idempotency key.
//!
//! The claim under test (docs/engine.md, "The guarantee"): every accepted
//! event starts its workflow exactly once, every workflow completes, and
//! every step's effect happens exactly once where the target honours
//! idempotency keys, however often the process dies in between.
//!
//! How: a custom template of three L0 `http.post` steps in a chain, aimed at
//! an in-process `EffectsServer` that holds each answer back a little after
//! acting (so a kill often lands between "the target acted" and "the engine
//! committed"). A submitter sends 200 events over the API, ten per server
//! lifetime, resending an event with the same dedup key whenever a delivery
//! fails; meanwhile the server is killed (SIGKILL) after a random delay and
//! restarted, at least 20 times. A final server then finishes the work.
//!
//! The delays come from a seeded generator; the seed is printed, and
//! `GATEHOUSE_CRASH_SEED=<n>` repeats the same delays (the interleaving with
//! the processes still varies). Run it with
//! `cargo test -p gatehouse-cli --test crash -- --nocapture`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests fail loudly"
)]

#[allow(dead_code, reason = "each test binary uses part of the shared harness")]
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gatehouse_sandbox::EffectsServer;
use serde_json::{Value, json};
use tokio::sync::{Semaphore, watch};

use common::{Backend, Install, Server, on_postgres, on_sqlite};

/// Workflows started (one per event).
const INSTANCES: usize = 200;
/// Events released per server lifetime.
const EVENTS_PER_LIFE: usize = 10;
/// Kills at least.
const MIN_KILLS: usize = 20;
/// The template's steps, in order; each is one side effect.
const STEPS: [&str; 3] = ["reserve", "provision", "confirm"];
/// The template's name.
const TEMPLATE: &str = "crash-effects";
/// How long a server lives before it is killed, at random in this range (ms).
const LIFETIME_MS: (u64, u64) = (20, 350);
/// How long the effects server holds an answer back after acting.
const TARGET_LATENCY: Duration = Duration::from_millis(10);
/// The longest the whole drill may take before the test gives up.
const DRILL_LIMIT: Duration = Duration::from_secs(180);
/// The longest the last server may take to finish the work.
const FINISH_LIMIT: Duration = Duration::from_secs(60);

/// A small seeded generator (SplitMix64): enough for delays, no dependency.
#[derive(Debug, Clone)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform in `low..=high`.
    fn between(&mut self, low: u64, high: u64) -> u64 {
        low + self.next() % (high - low + 1)
    }
}

/// The seed: `GATEHOUSE_CRASH_SEED`, or a fresh random one.
fn seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    match std::env::var("GATEHOUSE_CRASH_SEED") {
        Ok(text) => text
            .trim()
            .parse()
            .unwrap_or_else(|_| panic!("GATEHOUSE_CRASH_SEED=`{text}` is not a number")),
        Err(_) => std::collections::hash_map::RandomState::new()
            .build_hasher()
            .finish(),
    }
}

/// Three L0 `http.post` steps in a chain, each one effect on `effects`.
fn template(effects: &EffectsServer) -> String {
    let mut text = format!(
        r#"name = "{TEMPLATE}"
version = 1
title = "Crash test: three side effects"
area = "notification"
on_failure = "park"

[[trigger]]
event = "crash.order"

[[stage]]
id = "run"
title = "Run"
"#
    );
    for (index, step) in STEPS.iter().enumerate() {
        let needs = match index {
            0 => String::new(),
            _ => format!("needs = [\"{}\"]\n", STEPS[index - 1]),
        };
        text.push_str(&format!(
            r#"
[[stage.step]]
id = "{step}"
title = "Effect {step}"
action = "http.post"
gate = "L0"
timeout = "10s"
retry = {{ max_attempts = 100, initial = "50ms", max = "1s" }}
params = {{ url = "{url}", body = {{ order = "{{{{ event.payload.order }}}}", instance = "{{{{ instance.id }}}}" }} }}
{needs}"#,
            url = effects.endpoint(step),
        ));
    }
    text
}

/// Waits until the server answers `/readyz` with 200.
async fn wait_ready(server: &Server) {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let ready = server.get("/readyz", None).await;
        if ready.status == 200 {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "never ready: {} {:?}",
            ready.status,
            ready.body
        );
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// What the submitter saw.
#[derive(Debug, Default)]
struct Submissions {
    /// Dedup key → the instances its event started.
    instances: BTreeMap<String, Vec<String>>,
    /// Deliveries that failed (no answer) and were sent again.
    resent: usize,
    /// Deliveries answered as duplicates of an earlier, unanswered one.
    duplicates: usize,
}

/// Sends the events, one per permit, each until it is answered.
async fn submit_all(
    base: watch::Receiver<String>,
    token: String,
    permits: Arc<Semaphore>,
    mut rng: Rng,
) -> Submissions {
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap();
    let mut seen = Submissions::default();
    for n in 0..INSTANCES {
        permits.acquire().await.unwrap().forget();
        tokio::time::sleep(Duration::from_millis(rng.between(0, 15))).await;
        let key = format!("order-{n:03}");
        let event = json!({ "type": "crash.order", "dedup_key": key, "payload": { "order": n } });
        let started = Instant::now();
        loop {
            let url = format!("{}/api/v1/events", base.borrow().clone());
            let sent = client.post(&url).bearer_auth(&token).json(&event).send();
            let answer = match sent.await {
                Ok(response) => {
                    let status = response.status().as_u16();
                    response.json::<Value>().await.map(|body| (status, body))
                }
                Err(err) => Err(err),
            };
            match answer {
                Ok((status @ (200 | 202), body)) => {
                    let ids = body["instances"]
                        .as_array()
                        .unwrap_or_else(|| panic!("no instances in {body}"))
                        .iter()
                        .map(|id| id.as_str().unwrap().to_owned())
                        .collect();
                    if status == 200 {
                        assert_eq!(body["duplicate"], true, "{body}");
                        seen.duplicates += 1;
                    }
                    seen.instances.insert(key, ids);
                    break;
                }
                Ok((status, body)) if status < 500 => panic!("event {key}: {status} {body}"),
                // Killed before it answered, or failed: send the same event again.
                Ok(_) | Err(_) => {
                    seen.resent += 1;
                    assert!(
                        started.elapsed() < DRILL_LIMIT,
                        "event {key} was never accepted"
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
        }
    }
    seen
}

/// Every instance of the template, over as many pages as it takes.
async fn instances(server: &Server, token: &str) -> Vec<Value> {
    let mut items = Vec::new();
    let mut after = String::new();
    loop {
        let page = server
            .get(
                &format!("/api/v1/workflows?template={TEMPLATE}&limit=500{after}"),
                Some(token),
            )
            .await;
        assert_eq!(page.status, 200, "{:?}", page.body);
        items.extend(page.body["items"].as_array().unwrap().iter().cloned());
        match page.body["next_cursor"].as_str() {
            Some(cursor) => after = format!("&after={cursor}"),
            None => return items,
        }
    }
}

fn state_counts(items: &[Value]) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for item in items {
        *counts
            .entry(item["state"].as_str().unwrap_or("?").to_owned())
            .or_default() += 1;
    }
    counts
}

async fn killed_at_random_every_effect_happens_once(backend: Backend) {
    let seed = seed();
    eprintln!(
        "crash test ({}): seed {seed}; GATEHOUSE_CRASH_SEED={seed} repeats its delays",
        backend.name()
    );
    let mut rng = Rng(seed);
    let effects = EffectsServer::start().await.unwrap();
    effects.set_latency(TARGET_LATENCY);

    let install = Install::new(&backend);
    std::fs::create_dir_all(install.path("templates")).unwrap();
    std::fs::write(
        install.path("templates").join("crash-effects.toml"),
        template(&effects),
    )
    .unwrap();

    let drill = Instant::now();
    let mut server = install.serve(&[]).await;
    let token = server.bootstrap_token();
    wait_ready(&server).await;

    let (base_tx, base_rx) = watch::channel(server.base.clone());
    let permits = Arc::new(Semaphore::new(EVENTS_PER_LIFE));
    let submitter = tokio::spawn(submit_all(
        base_rx,
        token.clone(),
        permits.clone(),
        Rng(rng.next()),
    ));

    let mut kills = 0;
    let mut restarts = Vec::new();
    while kills < MIN_KILLS || !submitter.is_finished() {
        assert!(
            drill.elapsed() < DRILL_LIMIT,
            "the drill took longer than {DRILL_LIMIT:?} ({kills} kills)"
        );
        let life = Duration::from_millis(rng.between(LIFETIME_MS.0, LIFETIME_MS.1));
        tokio::time::sleep(life).await;
        // Dropping the server kills it: `Child::kill` is SIGKILL on Unix.
        drop(server);
        kills += 1;
        let restart = Instant::now();
        server = install.serve(&[]).await;
        wait_ready(&server).await;
        restarts.push(restart.elapsed());
        eprintln!(
            "kill {kills:>2} after {life:>6.0?}; ready again in {:>6.0?}; effects {} of {} calls",
            restart.elapsed(),
            effects.effects(),
            effects.calls()
        );
        base_tx.send_replace(server.base.clone());
        permits.add_permits(EVENTS_PER_LIFE);
    }
    let submitted = submitter.await.unwrap();

    // The last server finishes the work.
    let finish = Instant::now();
    let items = loop {
        let items = instances(&server, &token).await;
        let running = items
            .iter()
            .filter(|i| matches!(i["state"].as_str(), Some("running" | "compensating")))
            .count();
        if running == 0 && items.len() >= INSTANCES {
            break items;
        }
        assert!(
            finish.elapsed() < FINISH_LIMIT,
            "not finished after {FINISH_LIMIT:?}: {:?}",
            state_counts(&items)
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };

    let slowest = restarts.iter().max().copied().unwrap_or_default();
    let average = restarts.iter().sum::<Duration>() / restarts.len().max(1) as u32;
    eprintln!(
        "crash test ({}): {kills} kills; restarts {average:.0?} on average, {slowest:.0?} at most; \
         {} events ({} resent, {} answered as duplicates); effects {} of {} calls; {:.1?} in all",
        backend.name(),
        submitted.instances.len(),
        submitted.resent,
        submitted.duplicates,
        effects.effects(),
        effects.calls(),
        drill.elapsed(),
    );

    // Every event was accepted once and started exactly one instance.
    assert!(kills >= MIN_KILLS);
    assert_eq!(submitted.instances.len(), INSTANCES);
    let started: BTreeSet<&str> = submitted
        .instances
        .iter()
        .map(|(key, ids)| {
            assert_eq!(ids.len(), 1, "event {key} started {ids:?}");
            ids[0].as_str()
        })
        .collect();
    assert_eq!(started.len(), INSTANCES, "one instance per event");

    // Exactly those instances exist, and every one completed.
    let listed: BTreeSet<&str> = items.iter().map(|i| i["id"].as_str().unwrap()).collect();
    assert_eq!(items.len(), INSTANCES, "{:?}", state_counts(&items));
    assert_eq!(listed, started, "the instances listed are those started");
    assert_eq!(
        state_counts(&items),
        BTreeMap::from([("completed".to_owned(), INSTANCES)]),
        "every instance completed"
    );

    // Every step's effect happened exactly once, under its own key.
    let expected: BTreeSet<String> = started
        .iter()
        .flat_map(|id| STEPS.iter().map(move |step| format!("{id}:{step}")))
        .collect();
    let ledger = effects.ledger();
    let keys: BTreeSet<String> = ledger.keys().cloned().collect();
    assert_eq!(keys, expected, "the keys the target saw");
    let not_once: Vec<_> = ledger.iter().filter(|(_, c)| c.effects != 1).collect();
    assert!(
        not_once.is_empty(),
        "effects not exactly once: {not_once:?}"
    );
    assert_eq!(effects.effects(), (INSTANCES * STEPS.len()) as u64);
    assert!(effects.calls() >= effects.effects());

    // And the journal holds the target's one answer for each step.
    for id in &started {
        let detail = server
            .get(&format!("/api/v1/workflows/{id}"), Some(&token))
            .await;
        assert_eq!(detail.status, 200, "{:?}", detail.body);
        for run in detail.body["steps"].as_array().unwrap() {
            let key = run["idempotency_key"].as_str().unwrap();
            assert_eq!(run["state"], "succeeded", "{run}");
            assert_eq!(
                Some(&run["output"]),
                effects.result(key).as_ref(),
                "step {key} recorded the target's answer"
            );
        }
    }

    // The audit trail survived the kills too: once the sequencer of the
    // last server has caught up, every event and every workflow transition
    // committed has exactly one entry, and each log verifies.
    let store = gatehouse_store::connect(&install.database_url())
        .await
        .unwrap();
    let caught_up = Instant::now();
    while !store.pending_audit(1).await.unwrap().is_empty() {
        assert!(
            caught_up.elapsed() < FINISH_LIMIT,
            "the audit sequencer did not catch up"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let mut transitions = 0;
    for id in &started {
        let history = store.instance_history(id.parse().unwrap()).await.unwrap();
        transitions += history.len();
    }
    let mut audited = BTreeMap::<String, usize>::new();
    let mut entries = 0;
    for (log, size) in store.audit_logs().await.unwrap() {
        let stored = store.audit_entries(&log, 0, u32::MAX).await.unwrap();
        assert_eq!(stored.len() as u64, size, "log {log}");
        // Events and workflow transitions; the setup's own records (the
        // bootstrap, the tenant, the audit key) are not what is counted.
        let engine = |e: &&gatehouse_core::audit::AuditEntry| {
            e.action == "event.received" || e.action.starts_with("workflow.")
        };
        entries += stored.iter().filter(engine).count();
        let leaves = stored.iter().map(|e| {
            Ok::<_, std::convert::Infallible>(gatehouse_audit::StoredEntry {
                index: e.idx,
                leaf: gatehouse_audit::EntryLeaf::Body {
                    bytes: e.leaf.clone().into_bytes(),
                    stored_hash: Some(gatehouse_audit::Hash::from_bytes(e.leaf_hash)),
                },
            })
        });
        let options = gatehouse_audit::VerifyOptions::new(&log, &[]);
        gatehouse_audit::verify_log(leaves, &[], &[], &options, |_| {})
            .unwrap_or_else(|e| panic!("log {log} does not verify: {e}"));
        for entry in stored.iter().filter(engine) {
            let leaf: Value = serde_json::from_str(&entry.leaf).unwrap();
            let key = format!("{} {}", entry.subject, leaf["details"]["history_seq"]);
            *audited.entry(key).or_default() += 1;
        }
    }
    assert_eq!(
        entries,
        INSTANCES + transitions,
        "one entry per accepted event and per workflow transition"
    );
    let twice: Vec<_> = audited.iter().filter(|(_, n)| **n != 1).collect();
    assert!(twice.is_empty(), "recorded more than once: {twice:?}");
    store.close().await;

    let stopped = server.terminate();
    assert!(stopped.status.success(), "{}", stopped.stderr);
    effects.shutdown().await;
}

mod sqlite {
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn killed_at_random_every_effect_happens_once() {
        super::on_sqlite(super::killed_at_random_every_effect_happens_once).await;
    }
}

mod postgres {
    #[tokio::test(flavor = "multi_thread", worker_threads = 4)]
    async fn killed_at_random_every_effect_happens_once() {
        super::on_postgres("crash", super::killed_at_random_every_effect_happens_once).await;
    }
}
