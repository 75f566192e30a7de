//! The audit sequencer over a real store (SQLite, and PostgreSQL when
//! `GATEHOUSE_TEST_DATABASE_URL` is set): workflows run by the engine queue
//! records; the sequencer appends them to their logs, and the stored logs
//! verify with the library's `verify_log`.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests fail loudly"
)]

use std::sync::Arc;

use gatehouse_audit::{
    EntryLeaf, Frontier, Hash, MemoryTree, StoredEntry, VerifyOptions, leaf_hash, verify_log,
};
use gatehouse_core::audit::SYSTEM_LOG;
use gatehouse_core::clock::{Clock, FakeClock};
use gatehouse_core::id::TenantId;
use gatehouse_core::keys::{TenantKey, WrappedKey};
use gatehouse_core::store::Store;
use gatehouse_core::tenant::{DisplayName, Region, Tenant, TenantSlug, TenantState};
use gatehouse_core::workflow::{DedupKey, EventKind, EventSource};
use gatehouse_engine::action::{ActionRegistry, Noop};
use gatehouse_engine::runtime::{Engine, EngineConfig, NewEvent};
use gatehouse_engine::template::Template;
use gatehouse_server::audit::Sequencer;
use gatehouse_store::testing::TestDatabase;
use serde_json::{Value, json};

const PLAIN: &str = r#"
name = "plain"
version = 1
title = "Plain"
area = "documentation"

[[trigger]]
event = "test.plain"

[[stage]]
id = "run"
title = "Run"

[[stage.step]]
id = "first"
title = "First"
action = "sandbox.noop"

[[stage.step]]
id = "second"
title = "Second"
action = "sandbox.noop"
needs = ["first"]
"#;

struct Harness {
    store: Arc<dyn Store>,
    engine: Engine,
    tenant: TenantId,
}

impl Harness {
    async fn new(store: Arc<dyn Store>) -> Self {
        let clock = Arc::new(FakeClock::default());
        let catalog: std::collections::BTreeSet<&str> = ["sandbox.noop"].into();
        let templates = vec![Template::from_toml("test/plain.toml", PLAIN, &catalog).unwrap()];
        let mut actions = ActionRegistry::new();
        actions.register("sandbox.noop", Arc::new(Noop));
        let now = clock.now();
        let tenant = Tenant::new(
            TenantSlug::parse("acme").unwrap(),
            DisplayName::parse("Acme Ltd").unwrap(),
            Region::parse("eu").unwrap(),
            TenantState::Active,
            now,
        )
        .unwrap();
        let key = TenantKey {
            tenant_id: tenant.id,
            wrapped: WrappedKey {
                kek_id: "local:1".into(),
                ciphertext: b"wrapped".to_vec(),
            },
            created_at: now,
            rewrapped_at: None,
        };
        store.insert_tenant(&tenant, &key, &[]).await.unwrap();
        let engine = Engine::new(
            store.clone(),
            Arc::new(templates),
            Arc::new(actions),
            clock,
            EngineConfig::default(),
        );
        Self {
            store,
            engine,
            tenant: tenant.id,
        }
    }

    /// Starts a workflow for the tenant (or none) and runs everything due.
    async fn workflow(&self, tenant: Option<TenantId>, key: &str) {
        self.engine
            .submit(
                NewEvent {
                    tenant_id: tenant,
                    source: EventSource::parse("psa.test").unwrap(),
                    kind: EventKind::parse("test.plain").unwrap(),
                    dedup_key: DedupKey::parse(key).unwrap(),
                    payload: json!({"deal": key}),
                },
                "api",
            )
            .await
            .unwrap();
        while self.engine.tick().await.unwrap() > 0 {}
    }

    /// Verifies `log` from its stored entries; returns the entries' leaves
    /// and the verified root.
    async fn verify(&self, log: &str) -> (Vec<Value>, Hash) {
        let entries = self.store.audit_entries(log, 0, 10_000).await.unwrap();
        let leaves: Vec<Value> = entries
            .iter()
            .map(|e| serde_json::from_str(&e.leaf).unwrap())
            .collect();
        let stored = entries.iter().map(|e| {
            Ok::<_, std::convert::Infallible>(StoredEntry {
                index: e.idx,
                leaf: EntryLeaf::Body {
                    bytes: e.leaf.clone().into_bytes(),
                    stored_hash: Some(Hash::from_bytes(e.leaf_hash)),
                },
            })
        });
        let report = verify_log(stored, &[], &[], &VerifyOptions::new(log, &[]), |_| {}).unwrap();
        assert_eq!(report.entries, entries.len() as u64);

        // The root equals the library's root over the leaf hashes, and the
        // frontier the store restores.
        let mut tree = MemoryTree::new();
        for e in &entries {
            assert_eq!(Hash::from_bytes(e.leaf_hash), leaf_hash(e.leaf.as_bytes()));
            tree.push(Hash::from_bytes(e.leaf_hash)).unwrap();
        }
        assert_eq!(report.root, tree.root());
        let head = self.store.audit_head(log).await.unwrap();
        assert_eq!(head.size, entries.len() as u64);
        let frontier = Frontier::restore(
            head.size,
            head.frontier
                .iter()
                .map(|n| Hash::from_bytes(n.hash))
                .collect(),
        )
        .unwrap();
        assert_eq!(frontier.root(), report.root);
        (leaves, report.root)
    }
}

async fn sequencer_appends_every_record_to_a_verifiable_log(store: Arc<dyn Store>) {
    let h = Harness::new(store).await;
    h.workflow(Some(h.tenant), "deal-1").await;
    h.workflow(Some(h.tenant), "deal-2").await;
    h.workflow(None, "deal-3").await;
    let queued = h.store.pending_audit(10_000).await.unwrap().len();
    assert!(queued >= 9, "events and history queue records: {queued}");

    let sequencer = Sequencer::new(h.store.clone());
    // Small runs: several appends per log, each continuing the last.
    let mut appended = 0;
    loop {
        let n = sequencer.run_once(4).await.unwrap();
        if n == 0 {
            break;
        }
        appended += n;
    }
    assert_eq!(appended, queued);
    assert!(h.store.pending_audit(10).await.unwrap().is_empty());
    assert_eq!(sequencer.run_once(100).await.unwrap(), 0, "nothing new");

    let tenant_log = h.tenant.to_string();
    let logs = h.store.audit_logs().await.unwrap();
    assert_eq!(logs.iter().map(|(l, _)| l.as_str()).collect::<Vec<_>>(), {
        let mut names = vec![SYSTEM_LOG, tenant_log.as_str()];
        names.sort_unstable();
        names
    });
    assert_eq!(logs.iter().map(|(_, n)| *n as usize).sum::<usize>(), queued);

    let (leaves, _) = h.verify(&tenant_log).await;
    for (i, leaf) in leaves.iter().enumerate() {
        assert_eq!(leaf["idx"], i);
        assert_eq!(leaf["log"], tenant_log.as_str());
        assert_eq!(leaf["tenant_id"], tenant_log.as_str());
        assert!(
            leaf.get("details").is_none(),
            "tenant details stay out of the leaf"
        );
        assert_eq!(leaf["details_sha256"].as_str().unwrap().len(), 64);
    }
    assert_eq!(leaves[0]["action"], "event.received");
    let (system, _) = h.verify(SYSTEM_LOG).await;
    assert!(system.iter().all(|l| l.get("details").is_some()));
    assert!(
        system
            .iter()
            .any(|l| l["action"].as_str().unwrap().starts_with("workflow.")
                && l["details"]["template"] == "plain"),
        "the system log holds its workflow's history in clear"
    );

    // A sequencer without a cache (a restart) continues the logs.
    h.workflow(Some(h.tenant), "deal-4").await;
    let restarted = Sequencer::new(h.store.clone());
    assert!(restarted.run_once(1000).await.unwrap() > 0);
    let (leaves, _) = h.verify(&tenant_log).await;
    assert!(leaves.len() > logs.iter().find(|(l, _)| *l == tenant_log).unwrap().1 as usize);
    // The first sequencer's cache is now behind: its append is refused,
    // it re-reads the head and then appends correctly.
    h.workflow(Some(h.tenant), "deal-5").await;
    assert_eq!(
        sequencer.run_once(1000).await.unwrap(),
        0,
        "stale cache refused"
    );
    assert!(sequencer.run_once(1000).await.unwrap() > 0);
    h.verify(&tenant_log).await;
}

#[tokio::test]
async fn sqlite_sequencer_appends_every_record_to_a_verifiable_log() {
    let db = TestDatabase::sqlite().await.unwrap();
    sequencer_appends_every_record_to_a_verifiable_log(db.store.clone()).await;
    db.cleanup().await;
}

#[tokio::test]
async fn postgres_sequencer_appends_every_record_to_a_verifiable_log() {
    let Some(db) = TestDatabase::postgres("sequencer").await.unwrap() else {
        eprintln!("GATEHOUSE_TEST_DATABASE_URL is not set; the PostgreSQL run is done by .ci/run");
        return;
    };
    sequencer_appends_every_record_to_a_verifiable_log(db.store.clone()).await;
    db.cleanup().await;
}
