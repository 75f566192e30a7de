//! The audit sequencer over a real store (SQLite, and PostgreSQL when
//! `GATEHOUSE_TEST_DATABASE_URL` is set): workflows run by the engine queue
//! records; the sequencer appends them to their logs, sealing tenants'
//! details under their keys, signs checkpoints every N entries or T seconds
//! (on a fake clock), and the stored logs verify with the library's
//! `verify_log`. Checkpoints on demand, through the services and over HTTP.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use gatehouse_audit::{
    EntryLeaf, Frontier, Hash, MemoryTree, StoredCheckpoint, StoredEntry, VerifierKey,
    VerifyOptions, leaf_hash, verify_log,
};
use gatehouse_core::audit::{AuditEntry, AuditRecord, SYSTEM_LOG, log_origin};
use gatehouse_core::clock::{Clock, FakeClock};
use gatehouse_core::id::TenantId;
use gatehouse_core::operator::{OperatorName, Role};
use gatehouse_core::store::Store;
use gatehouse_core::tenant::{DisplayName, Region, Tenant, TenantAction, TenantSlug, TenantState};
use gatehouse_core::workflow::{DedupKey, EventKind, EventSource};
use gatehouse_engine::action::{ActionRegistry, Noop};
use gatehouse_engine::runtime::{Engine, EngineConfig, NewEvent};
use gatehouse_engine::template::Template;
use gatehouse_server::app::{Issued, NewTenant, TenantRef};
use gatehouse_server::audit::{
    CheckpointPolicy, Details, DetailsError, KEY_DESTROYED, Sequencer, open_details,
    open_details_with,
};
use gatehouse_server::http::{ApiState, HttpConfig};
use gatehouse_server::metrics::Metrics;
use gatehouse_server::{Actor, App, AppError};
use gatehouse_store::testing::TestDatabase;
use gatehouse_vault::{AuditSigner, Keyring, LocalKeyFile};
use serde_json::{Value, json};
use tower::ServiceExt as _;

type TestResult<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

const SYSTEM: Actor = Actor::System("test");

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
    clock: Arc<FakeClock>,
    app: Arc<App>,
    verifier: VerifierKey,
    tenant: TenantId,
    _keys: tempfile::TempDir,
}

impl Harness {
    async fn new(store: Arc<dyn Store>) -> TestResult<Self> {
        let keys = tempfile::tempdir()?;
        let (provider, _) = LocalKeyFile::open_or_create(&keys.path().join("kek.json"))?;
        let keyring = Keyring::new(Arc::new(provider), store.clone(), Duration::from_secs(300));
        let clock = Arc::new(FakeClock::default());
        let catalog: std::collections::BTreeSet<&str> = ["sandbox.noop"].into();
        let templates = vec![Template::from_toml("test/plain.toml", PLAIN, &catalog)?];
        let mut actions = ActionRegistry::new();
        actions.register("sandbox.noop", Arc::new(Noop));
        let engine = Engine::new(
            store.clone(),
            Arc::new(templates),
            Arc::new(actions),
            clock.clone(),
            EngineConfig::default(),
        );
        let signer = AuditSigner::open(
            keyring.provider().as_ref(),
            store.as_ref(),
            gatehouse_audit::KeyName::parse("gatehouse.test/audit")?,
            clock.as_ref(),
        )
        .await?;
        let verifier = signer.verifier();
        let app = App::new(
            store.clone(),
            Arc::new(keyring),
            clock.clone(),
            Arc::new(engine),
        )
        .with_audit_signer(Arc::new(signer));
        // The tenant is stored without the records `create_tenant` queues,
        // so that each test's logs hold only what the test itself records.
        let tenant = Tenant::new(
            TenantSlug::parse("acme")?,
            DisplayName::parse("Acme Ltd")?,
            Region::parse("eu")?,
            TenantState::Active,
            clock.now(),
        )?;
        let key = app
            .keyring
            .new_tenant_key(tenant.id, clock.as_ref())
            .await?;
        store.insert_tenant(&tenant, &key, &[]).await?;
        Ok(Self {
            store,
            clock,
            app: Arc::new(app),
            verifier,
            tenant: tenant.id,
            _keys: keys,
        })
    }

    /// A sequencer sealing with the app's keyring; signing checkpoints as
    /// `policy` says, if given.
    fn sequencer(&self, policy: Option<CheckpointPolicy>) -> TestResult<Sequencer> {
        let sequencer = Sequencer::new(self.store.clone(), self.app.keyring.clone());
        Ok(match policy {
            None => sequencer,
            Some(policy) => {
                let signer = self.app.audit_signer.clone().ok_or("no signer")?;
                sequencer.with_checkpoints(signer, self.clock.clone(), policy)
            }
        })
    }

    /// Starts a workflow for the tenant (or none) and runs everything due.
    async fn workflow(&self, tenant: Option<TenantId>, key: &str) -> TestResult {
        self.app
            .engine
            .submit(
                NewEvent {
                    tenant_id: tenant,
                    source: EventSource::parse("psa.test")?,
                    kind: EventKind::parse("test.plain")?,
                    dedup_key: DedupKey::parse(key)?,
                    payload: json!({"deal": key}),
                },
                "api",
            )
            .await?;
        while self.app.engine.tick().await? > 0 {}
        Ok(())
    }

    /// Verifies `log` from its stored entries and checkpoints (each
    /// checkpoint's root is compared with the replayed tree); returns the
    /// entries and the verified root.
    async fn verify(&self, log: &str) -> TestResult<(Vec<AuditEntry>, Hash)> {
        let entries = self.store.audit_entries(log, 0, 10_000).await?;
        let checkpoints: Vec<StoredCheckpoint> = self
            .store
            .list_checkpoints(log)
            .await?
            .into_iter()
            .enumerate()
            .map(|(seq, c)| StoredCheckpoint {
                seq: seq as u64,
                note: c.note,
            })
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
        let origin = log_origin("gatehouse.test/audit", log);
        let keys = [self.verifier.clone()];
        let report = verify_log(
            stored,
            &checkpoints,
            &[],
            &VerifyOptions::new(&origin, &keys),
            |_| {},
        )?;
        assert_eq!(report.entries, entries.len() as u64);
        assert_eq!(report.stored_checkpoints, checkpoints.len());

        // The root equals the library's root over the leaf hashes, and the
        // frontier the store restores.
        let mut tree = MemoryTree::new();
        for e in &entries {
            assert_eq!(Hash::from_bytes(e.leaf_hash), leaf_hash(e.leaf.as_bytes()));
            tree.push(Hash::from_bytes(e.leaf_hash))?;
        }
        assert_eq!(report.root, tree.root());
        let head = self.store.audit_head(log).await?;
        assert_eq!(head.size, entries.len() as u64);
        let frontier = Frontier::restore(
            head.size,
            head.frontier
                .iter()
                .map(|n| Hash::from_bytes(n.hash))
                .collect(),
        )?;
        assert_eq!(frontier.root(), report.root);
        Ok((entries, report.root))
    }

    /// The stored checkpoints of `log`, each opened with the public key:
    /// (size, root).
    async fn checkpoints(&self, log: &str) -> TestResult<Vec<(u64, Hash)>> {
        let origin = log_origin("gatehouse.test/audit", log);
        let mut opened = Vec::new();
        for stored in self.store.list_checkpoints(log).await? {
            let (checkpoint, _) = gatehouse_audit::checkpoint::open(
                &stored.note,
                std::slice::from_ref(&self.verifier),
                &origin,
            )?;
            assert_eq!(checkpoint.size(), stored.size);
            opened.push((checkpoint.size(), checkpoint.root()));
        }
        Ok(opened)
    }
}

fn leaf_json(entry: &AuditEntry) -> TestResult<Value> {
    Ok(serde_json::from_str(&entry.leaf)?)
}

/// Runs the sequencer in runs of `batch` until the outbox is empty.
async fn drain(sequencer: &Sequencer, batch: u32) -> TestResult<usize> {
    let mut appended = 0;
    loop {
        let n = sequencer.run_once(batch).await?;
        if n == 0 {
            return Ok(appended);
        }
        appended += n;
    }
}

fn policy(entries: u64, every_secs: u64) -> TestResult<CheckpointPolicy> {
    Ok(CheckpointPolicy {
        entries: entries.try_into()?,
        every_secs: every_secs.try_into()?,
    })
}

async fn sequencer_appends_every_record_to_a_verifiable_log(store: Arc<dyn Store>) -> TestResult {
    let h = Harness::new(store).await?;
    h.workflow(Some(h.tenant), "deal-1").await?;
    h.workflow(Some(h.tenant), "deal-2").await?;
    h.workflow(None, "deal-3").await?;
    let queued = h.store.pending_audit(10_000).await?.len();
    assert!(queued >= 9, "events and history queue records: {queued}");

    let sequencer = h.sequencer(None)?;
    // Small runs: several appends per log, each continuing the last.
    assert_eq!(drain(&sequencer, 4).await?, queued);
    assert!(h.store.pending_audit(10).await?.is_empty());
    assert_eq!(sequencer.run_once(100).await?, 0, "nothing new");

    let tenant_log = h.tenant.to_string();
    let logs = h.store.audit_logs().await?;
    let mut names = vec![SYSTEM_LOG, tenant_log.as_str()];
    names.sort_unstable();
    assert_eq!(
        logs.iter().map(|(l, _)| l.as_str()).collect::<Vec<_>>(),
        names
    );
    assert_eq!(logs.iter().map(|(_, n)| *n as usize).sum::<usize>(), queued);

    let (entries, _) = h.verify(&tenant_log).await?;
    for (i, entry) in entries.iter().enumerate() {
        let leaf = leaf_json(entry)?;
        assert_eq!(leaf["idx"], i);
        assert_eq!(leaf["log"], tenant_log.as_str());
        assert_eq!(leaf["tenant_id"], tenant_log.as_str());
        assert!(leaf["sealed"].is_string(), "{leaf}");
    }
    assert_eq!(leaf_json(&entries[0])?["action"], "event.received");
    let (system, _) = h.verify(SYSTEM_LOG).await?;
    let mut found = false;
    for entry in &system {
        let leaf = leaf_json(entry)?;
        assert!(leaf.get("details").is_some() && leaf.get("sealed").is_none());
        assert!(leaf.get("tenant_id").is_none());
        found |= leaf["details"]["template"] == "plain";
    }
    assert!(
        found,
        "the system log holds its workflow's history in clear"
    );

    // A sequencer without a cache (a restart) continues the logs.
    let before = entries.len();
    h.workflow(Some(h.tenant), "deal-4").await?;
    let restarted = h.sequencer(None)?;
    assert!(restarted.run_once(1000).await? > 0);
    let (entries, _) = h.verify(&tenant_log).await?;
    assert!(entries.len() > before);
    // The first sequencer's cache is now behind: its append is refused,
    // it re-reads the head and then appends correctly.
    h.workflow(Some(h.tenant), "deal-5").await?;
    assert_eq!(sequencer.run_once(1000).await?, 0, "stale cache refused");
    assert!(sequencer.run_once(1000).await? > 0);
    h.verify(&tenant_log).await?;
    Ok(())
}

async fn tenant_details_are_sealed_and_bound_to_their_entry(store: Arc<dyn Store>) -> TestResult {
    let h = Harness::new(store).await?;
    h.workflow(Some(h.tenant), "deal-1").await?;
    let records: Vec<AuditRecord> = h
        .store
        .pending_audit(1000)
        .await?
        .into_iter()
        .map(|(_, r)| r)
        .filter(|r| r.tenant_id == Some(h.tenant))
        .collect();
    drain(&h.sequencer(None)?, 1000).await?;
    let (entries, _) = h.verify(&h.tenant.to_string()).await?;
    assert_eq!(entries.len(), records.len());
    let sealer = h.app.keyring.sealer(h.tenant).await?;
    for (entry, record) in entries.iter().zip(&records) {
        let leaf = leaf_json(entry)?;
        assert!(leaf.get("details").is_none(), "{leaf}");
        // Nothing of the details is in the leaf in clear: neither the
        // event's deduplication key nor the workflow's template.
        assert!(
            !entry.leaf.contains("deal-1") && !entry.leaf.contains("\"plain\""),
            "{}",
            entry.leaf
        );
        let opened = open_details(&h.app.keyring, &entry.leaf).await?;
        assert_eq!(opened, Details::Opened(record.details.clone()));
        assert_eq!(open_details_with(Some(&sealer), &entry.leaf)?, opened);
    }

    // Sealed details moved to another entry do not open there.
    let mut moved = leaf_json(&entries[0])?;
    moved["sealed"] = leaf_json(&entries[1])?["sealed"].clone();
    let moved = moved.to_string();
    assert!(matches!(
        open_details(&h.app.keyring, &moved).await,
        Err(DetailsError::Open { idx: 0, .. })
    ));
    assert!(matches!(
        open_details_with(Some(&sealer), &moved),
        Err(DetailsError::Open { idx: 0, .. })
    ));
    // Nor with another tenant's key.
    let other = h
        .app
        .create_tenant(
            &SYSTEM,
            NewTenant {
                slug: TenantSlug::parse("other")?,
                display_name: DisplayName::parse("Other")?,
                region: Region::parse("eu")?,
                state: TenantState::Active,
            },
        )
        .await?;
    let other_sealer = h.app.keyring.sealer(other.id).await?;
    assert!(matches!(
        open_details_with(Some(&other_sealer), &entries[0].leaf),
        Err(DetailsError::OtherTenant { idx: 0, .. })
    ));
    Ok(())
}

async fn a_shredded_tenants_log_verifies_and_later_records_are_withheld(
    store: Arc<dyn Store>,
) -> TestResult {
    let h = Harness::new(store).await?;
    let log = h.tenant.to_string();
    h.workflow(Some(h.tenant), "deal-1").await?;
    let sequencer = h.sequencer(Some(policy(1000, 60)?))?;
    drain(&sequencer, 1000).await?;
    assert_eq!(
        sequencer.sign_due_checkpoints().await?,
        2,
        "the tenant log, and the system log (the signing key's creation)"
    );
    let (before, root) = h.verify(&log).await?;

    // Deleting the tenant destroys its key, as `tenant delete` does.
    let tenant = TenantRef::Id(h.tenant);
    h.app
        .transition_tenant(&SYSTEM, &tenant, TenantAction::Offboard)
        .await?;
    h.app
        .transition_tenant(&SYSTEM, &tenant, TenantAction::Delete)
        .await?;

    let (after, after_root) = h.verify(&log).await?;
    assert_eq!((after.len(), after_root), (before.len(), root));
    for entry in &after {
        assert_eq!(
            open_details(&h.app.keyring, &entry.leaf).await?,
            Details::KeyDestroyed
        );
        assert_eq!(open_details_with(None, &entry.leaf)?, Details::KeyDestroyed);
    }

    // A record about the tenant queued after its key is gone is withheld,
    // not stored in clear, and does not block its log.
    let secret = "Acme's secret after deletion";
    h.store
        .queue_audit(&[AuditRecord {
            at: h.clock.now(),
            tenant_id: Some(h.tenant),
            actor: "op_x".into(),
            action: "tenant.deleted".into(),
            subject: log.clone(),
            details: json!({ "note": secret }),
        }])
        .await?;
    // With the offboarding (its log; withheld too, since the key went
    // before it was sequenced) and the deletion (the system log).
    assert_eq!(sequencer.run_once(1000).await?, 3);
    let (entries, _) = h.verify(&log).await?;
    let offboarded = leaf_json(&entries[entries.len() - 2])?;
    assert_eq!(offboarded["action"], "tenant.offboarded");
    assert_eq!(offboarded["details_withheld"], KEY_DESTROYED);
    let last = entries.last().ok_or("no entries")?;
    assert!(!last.leaf.contains(secret), "{}", last.leaf);
    let leaf = leaf_json(last)?;
    assert_eq!(leaf["details_withheld"], KEY_DESTROYED);
    assert!(leaf.get("sealed").is_none() && leaf.get("details").is_none());
    assert_eq!(
        open_details(&h.app.keyring, &last.leaf).await?,
        Details::Withheld(KEY_DESTROYED.into())
    );
    // Its log is still signed: a checkpoint on demand covers the new entry.
    let issued = h.app.issue_checkpoint(&SYSTEM, &log).await?;
    assert!(matches!(issued, Issued::New(ref c) if c.size == entries.len() as u64));
    h.verify(&log).await?;
    Ok(())
}

async fn checkpoints_are_signed_every_n_entries(store: Arc<dyn Store>) -> TestResult {
    let h = Harness::new(store).await?;
    for i in 0..4 {
        h.workflow(Some(h.tenant), &format!("deal-{i}")).await?;
        h.workflow(None, &format!("sys-{i}")).await?;
    }
    let sequencer = h.sequencer(Some(policy(3, 3600)?))?;
    // Runs of two records: a log grows by at most two per append, so each
    // checkpoint comes 3 or 4 entries after the previous one.
    drain(&sequencer, 2).await?;
    for (log, size) in h.store.audit_logs().await? {
        let checkpoints = h.checkpoints(&log).await?;
        let (entries, _) = h.verify(&log).await?;
        let mut tree = MemoryTree::new();
        for e in &entries {
            tree.push(Hash::from_bytes(e.leaf_hash))?;
        }
        let mut previous = 0;
        for (cp_size, root) in &checkpoints {
            assert!(
                (3..=4).contains(&(cp_size - previous)),
                "{log}: {checkpoints:?}"
            );
            assert_eq!(*root, tree.root_at(*cp_size)?);
            previous = *cp_size;
        }
        assert!(
            size - previous < 3,
            "{log}: {size} entries, last signed {previous}"
        );
        assert!(!checkpoints.is_empty());
    }
    // Nothing is due by time: the clock has not moved.
    assert_eq!(sequencer.sign_due_checkpoints().await?, 0);
    Ok(())
}

/// More records of one log than one append transaction takes (2,048): the
/// run writes them in several transactions, each batch's leaves built on a
/// blocking thread while the batch before is written. The log holds them
/// in queue order, sealed (the entries at and around the batch boundaries
/// open to their own details), and a checkpoint was signed after each
/// transaction that took the log 1,000 entries past the last one.
async fn a_run_longer_than_one_transaction_keeps_its_order(store: Arc<dyn Store>) -> TestResult {
    const RECORDS: usize = 5_000;
    let h = Harness::new(store).await?;
    let log = h.tenant.to_string();
    let records: Vec<AuditRecord> = (0..RECORDS)
        .map(|i| AuditRecord {
            at: h.clock.now(),
            tenant_id: Some(h.tenant),
            actor: "system".into(),
            action: "test.fact".into(),
            subject: format!("fact-{i}"),
            details: json!({ "n": i }),
        })
        .collect();
    // The signing key's creation is queued already, for the system log.
    let earlier = h.store.pending_audit(100).await?.len();
    h.store.queue_audit(&records).await?;
    let sequencer = h.sequencer(Some(policy(1_000, 3600)?))?;
    assert_eq!(sequencer.run_once(16_384).await?, earlier + RECORDS);

    let (entries, _) = h.verify(&log).await?;
    assert_eq!(entries.len(), RECORDS);
    for (i, entry) in entries.iter().enumerate() {
        assert_eq!(entry.idx, i as u64);
        assert_eq!(entry.subject, format!("fact-{i}"));
    }
    for i in [0, 2_047, 2_048, 4_095, 4_096, RECORDS - 1] {
        assert_eq!(
            open_details(&h.app.keyring, &entries[i].leaf).await?,
            Details::Opened(json!({ "n": i })),
            "entry {i}"
        );
    }
    let signed: Vec<u64> = h
        .checkpoints(&log)
        .await?
        .into_iter()
        .map(|(size, _)| size)
        .collect();
    assert_eq!(signed, [2_048, 4_096]);
    Ok(())
}

async fn checkpoints_are_signed_every_t_seconds(store: Arc<dyn Store>) -> TestResult {
    let h = Harness::new(store).await?;
    let log = h.tenant.to_string();
    h.workflow(Some(h.tenant), "deal-1").await?;
    h.workflow(None, "sys-1").await?;
    let sequencer = h.sequencer(Some(policy(1000, 60)?))?;
    drain(&sequencer, 1000).await?;
    assert!(
        h.checkpoints(&log).await?.is_empty(),
        "fewer than N entries"
    );

    // A log without a checkpoint is signed on the first idle pass.
    assert_eq!(sequencer.sign_due_checkpoints().await?, 2);
    assert_eq!(sequencer.sign_due_checkpoints().await?, 0, "nothing grew");
    let first = h.checkpoints(&log).await?;
    assert_eq!(first.len(), 1);

    // It grows; its checkpoint is younger than T until the clock says so.
    h.workflow(Some(h.tenant), "deal-2").await?;
    drain(&sequencer, 1000).await?;
    h.clock.advance(time::Duration::seconds(59));
    assert_eq!(sequencer.sign_due_checkpoints().await?, 0);
    h.clock.advance(time::Duration::seconds(1));
    assert_eq!(
        sequencer.sign_due_checkpoints().await?,
        1,
        "only the log that grew"
    );
    let (entries, root) = h.verify(&log).await?;
    let second = h.checkpoints(&log).await?;
    assert_eq!(second.len(), 2);
    assert_eq!(second[1], (entries.len() as u64, root));

    // A restarted sequencer reads the latest checkpoint back from the store.
    let restarted = h.sequencer(Some(policy(1000, 60)?))?;
    assert_eq!(restarted.sign_due_checkpoints().await?, 0);
    h.workflow(Some(h.tenant), "deal-3").await?;
    drain(&restarted, 1000).await?;
    assert_eq!(restarted.sign_due_checkpoints().await?, 0);
    h.clock.advance(time::Duration::seconds(60));
    assert_eq!(restarted.sign_due_checkpoints().await?, 1);
    h.verify(&log).await?;
    Ok(())
}

async fn checkpoints_on_demand_are_idempotent(store: Arc<dyn Store>) -> TestResult {
    let h = Harness::new(store).await?;
    let log = h.tenant.to_string();
    // An empty log has nothing to sign.
    let err = h
        .app
        .issue_checkpoint(&SYSTEM, "acme")
        .await
        .err()
        .ok_or("signed an empty log")?;
    assert!(
        matches!(
            err,
            AppError::Conflict {
                code: "audit_log_empty",
                ..
            }
        ),
        "{err}"
    );

    h.workflow(Some(h.tenant), "deal-1").await?;
    let sequencer = h.sequencer(Some(policy(1000, 60)?))?;
    drain(&sequencer, 1000).await?;
    let Issued::New(first) = h.app.issue_checkpoint(&SYSTEM, "acme").await? else {
        return Err("a grown log gets a new checkpoint".into());
    };
    let (entries, root) = h.verify(&log).await?;
    assert_eq!(first.size, entries.len() as u64);
    assert_eq!(h.checkpoints(&log).await?, vec![(first.size, root)]);
    // Asked again by id: the same checkpoint, nothing new stored.
    assert_eq!(
        h.app.issue_checkpoint(&SYSTEM, &log).await?,
        Issued::Latest(first.clone())
    );
    // The sequencer knows nothing is due for that size either (it signs
    // only the system log, which holds the signing key's creation).
    h.clock.advance(time::Duration::seconds(3600));
    assert_eq!(sequencer.sign_due_checkpoints().await?, 1);
    assert_eq!(h.checkpoints(&log).await?.len(), 1);

    // The sequencer signs the next size; asking then returns its checkpoint.
    h.workflow(Some(h.tenant), "deal-2").await?;
    drain(&sequencer, 1000).await?;
    assert_eq!(sequencer.sign_due_checkpoints().await?, 1);
    let latest = h.app.latest_checkpoint(&SYSTEM, &log).await?;
    assert_eq!(
        h.app.issue_checkpoint(&SYSTEM, &log).await?,
        Issued::Latest(latest.clone())
    );
    assert_eq!(
        h.app.list_checkpoints(&SYSTEM, &log).await?,
        vec![first, latest]
    );
    h.verify(&log).await?;
    Ok(())
}

/// Calls the router in-process; returns status, content type and body.
async fn call(
    router: &axum::Router,
    method: Method,
    path: &str,
    token: Option<&str>,
) -> TestResult<(StatusCode, String, String)> {
    let mut request = Request::builder().method(method).uri(path);
    if let Some(token) = token {
        request = request.header(header::AUTHORIZATION, format!("Bearer {token}"));
    }
    let response = router.clone().oneshot(request.body(Body::empty())?).await?;
    let status = response.status();
    let content_type = response
        .headers()
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    let body = axum::body::to_bytes(response.into_body(), 1 << 20).await?;
    Ok((status, content_type, String::from_utf8(body.to_vec())?))
}

async fn checkpoint_endpoints_refuse_strangers_and_serve_auditors(
    store: Arc<dyn Store>,
) -> TestResult {
    let h = Harness::new(store).await?;
    let router = gatehouse_server::http::router(
        ApiState {
            app: h.app.clone(),
            metrics: Arc::new(Metrics::new()),
        },
        HttpConfig::default(),
    );
    let mut tokens = Vec::new();
    for (name, role) in [("ada.audit", Role::Auditor), ("tom.tech", Role::Technician)] {
        let (_, _, secret) = h
            .app
            .create_operator(
                &SYSTEM,
                OperatorName::parse(name)?,
                DisplayName::parse(name)?,
                role,
            )
            .await?;
        tokens.push(secret.expose().to_owned());
    }
    let [auditor, tech] = [tokens[0].as_str(), tokens[1].as_str()];
    let routes = [
        (Method::POST, "/api/v1/audit/logs/acme/checkpoints"),
        (Method::GET, "/api/v1/audit/logs/acme/checkpoints"),
        (Method::GET, "/api/v1/audit/logs/acme/checkpoints/latest"),
    ];
    for (method, path) in &routes {
        for token in [None, Some("gth_not-a-real-token")] {
            let (status, _, body) = call(&router, method.clone(), path, token).await?;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}: {body}");
        }
        let (status, _, body) = call(&router, method.clone(), path, Some(tech)).await?;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {body}");
        for unknown in ["nobody", "ten_01jd8x3k2q9f6v0c4m7r5t8w1y", "..", "system2"] {
            let path = path.replace("acme", unknown);
            let (status, _, body) = call(&router, method.clone(), &path, Some(auditor)).await?;
            assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {body}");
        }
    }
    // Nothing signed yet: an empty log cannot be, and has no latest.
    let (status, _, body) = call(&router, Method::POST, routes[0].1, Some(auditor)).await?;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body.contains("audit_log_empty"), "{body}");
    let (status, _, body) = call(&router, Method::GET, routes[2].1, Some(auditor)).await?;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert!(body.contains("checkpoint_not_found"), "{body}");
    let (status, _, body) = call(&router, Method::GET, routes[1].1, Some(auditor)).await?;
    assert_eq!((status, body.as_str()), (StatusCode::OK, "[]"));

    h.workflow(Some(h.tenant), "deal-1").await?;
    drain(&h.sequencer(None)?, 1000).await?;
    let (status, _, body) = call(&router, Method::POST, routes[0].1, Some(auditor)).await?;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let created: Value = serde_json::from_str(&body)?;
    let (status, _, body) = call(&router, Method::POST, routes[0].1, Some(auditor)).await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(serde_json::from_str::<Value>(&body)?, created);

    let log = h.tenant.to_string();
    let (_, root) = h.verify(&log).await?;
    assert_eq!(created["log"], log.as_str());
    assert_eq!(created["root"], root.to_hex().as_str());
    let (status, _, body) = call(&router, Method::GET, routes[1].1, Some(auditor)).await?;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(serde_json::from_str::<Value>(&body)?, json!([created]));
    // The latest note as a file an auditor verifies with the public key.
    let (status, content_type, note) =
        call(&router, Method::GET, routes[2].1, Some(auditor)).await?;
    assert_eq!(status, StatusCode::OK);
    assert!(content_type.starts_with("text/plain"), "{content_type}");
    assert_eq!(created["note"], note.as_str());
    let (checkpoint, _) = gatehouse_audit::checkpoint::open(
        &note,
        std::slice::from_ref(&h.verifier),
        &log_origin("gatehouse.test/audit", &log),
    )?;
    assert_eq!(checkpoint.root(), root);
    // The system log is named `system`; the tenant log by id works too.
    let by_id = format!("/api/v1/audit/logs/{log}/checkpoints/latest");
    assert_eq!(
        call(&router, Method::GET, &by_id, Some(auditor)).await?.2,
        note
    );
    let (status, _, _) = call(
        &router,
        Method::GET,
        "/api/v1/audit/logs/system/checkpoints",
        Some(auditor),
    )
    .await?;
    assert_eq!(status, StatusCode::OK);
    Ok(())
}

macro_rules! store_tests {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $case() -> super::TestResult {
                    let db = super::TestDatabase::sqlite().await?;
                    super::$case(db.store.clone()).await?;
                    db.cleanup().await;
                    Ok(())
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test]
                async fn $case() -> super::TestResult {
                    let Some(db) = super::TestDatabase::postgres(stringify!($case)).await? else {
                        eprintln!("GATEHOUSE_TEST_DATABASE_URL is not set; the PostgreSQL run is done by .ci/run");
                        return Ok(());
                    };
                    super::$case(db.store.clone()).await?;
                    db.cleanup().await;
                    Ok(())
                }
            )*
        }
    };
}

store_tests!(
    sequencer_appends_every_record_to_a_verifiable_log,
    tenant_details_are_sealed_and_bound_to_their_entry,
    a_shredded_tenants_log_verifies_and_later_records_are_withheld,
    checkpoints_are_signed_every_n_entries,
    a_run_longer_than_one_transaction_keeps_its_order,
    checkpoints_are_signed_every_t_seconds,
    checkpoints_on_demand_are_idempotent,
    checkpoint_endpoints_refuse_strangers_and_serve_auditors,
);
