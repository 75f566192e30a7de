//! Figures for the benchmark targets of the read side, on SQLite: verifying
//! 1,000,000 stored entries (target < 2 s) and an inclusion proof (target
//! < 1 ms). Ignored: run it in a release build and read the figures, e.g.
//! `cargo test --release -p gatehouse-server --test audit_perf -- --ignored --nocapture`.
//! It asserts correctness only, never timings. It prints wall and CPU
//! time: on a shared machine the CPU time is the steadier figure.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gatehouse_audit::{
    Checkpoint, Ed25519Signer, Frontier, KeyName, Signer as _, verify_inclusion,
};
use gatehouse_core::audit::{
    AuditCheckpoint, AuditEntry, AuditNode, AuditRecord, SYSTEM_LOG, log_origin,
};
use gatehouse_core::clock::FakeClock;
use gatehouse_engine::action::ActionRegistry;
use gatehouse_engine::runtime::{Engine, EngineConfig};
use gatehouse_server::audit_verify::{VerifyStoredOptions, verify_stored};
use gatehouse_server::{Actor, App};
use gatehouse_store::testing::TestDatabase;
use gatehouse_vault::{Keyring, LocalKeyFile};
use serde_json::json;
use time::OffsetDateTime;

type Error = Box<dyn std::error::Error + Send + Sync>;

const ENTRIES: u64 = 1_000_000;
const CHUNK: u64 = 10_000;
const KEY_NAME: &str = "gatehouse.test/audit";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "a benchmark: run in release with --ignored --nocapture"]
async fn verify_a_million_entries_and_prove_inclusion() -> Result<(), Error> {
    let db = TestDatabase::sqlite().await?;
    let signer = Ed25519Signer::from_seed(KeyName::parse(KEY_NAME)?, &[7; 32]);
    let start = OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
    let mut tree = Frontier::new();
    let loading = Instant::now();
    for first in (0..ENTRIES).step_by(CHUNK as usize) {
        let mut entries = Vec::with_capacity(CHUNK as usize);
        let mut nodes = Vec::with_capacity(2 * CHUNK as usize);
        for idx in first..first + CHUNK {
            let record = AuditRecord {
                at: start + time::Duration::milliseconds(idx as i64),
                tenant_id: None,
                actor: "op_01jd8x3k2q9f6v0c4m7r5t8w1y".into(),
                action: "workflow.step.succeeded".into(),
                subject: "wf_01jd8x3k2q9f6v0c4m7r5t8w1y".into(),
                details: json!({"template": "onboard", "step": "grant", "history_seq": idx}),
            };
            // The shape of a system-log leaf (see docs/audit.md, "Leaf").
            let leaf = gatehouse_audit::canonical::to_string(&json!({
                "log": SYSTEM_LOG,
                "idx": idx,
                "at": record.at.format(&time::format_description::well_known::Rfc3339)?,
                "actor": record.actor,
                "action": record.action,
                "subject": record.subject,
                "details": record.details,
            }))?;
            let hash = gatehouse_audit::leaf_hash(leaf.as_bytes());
            tree.push_with(hash, |id, h| {
                nodes.push(AuditNode {
                    level: id.level,
                    index: id.index,
                    hash: *h.as_bytes(),
                });
            })?;
            entries.push(AuditEntry {
                idx,
                at: record.at,
                actor: record.actor,
                action: record.action,
                subject: record.subject,
                leaf,
                leaf_hash: *hash.as_bytes(),
            });
        }
        db.store
            .append_audit(SYSTEM_LOG, first, &entries, &nodes, &[])
            .await?;
        let size = first + CHUNK;
        if size.is_multiple_of(100_000) {
            let note = Checkpoint::new(log_origin(KEY_NAME, SYSTEM_LOG), size, tree.root())?
                .sign(&signer)
                .await?
                .to_string();
            db.store
                .put_checkpoint(&AuditCheckpoint {
                    log: SYSTEM_LOG.into(),
                    size,
                    note,
                    created_at: start,
                })
                .await?;
        }
    }
    println!("loaded {ENTRIES} entries in {:?}", loading.elapsed());

    // Reading alone, page by page as verification reads.
    let (started, cpu) = (Instant::now(), cpu_time()?);
    let (mut from, mut bytes) = (0u64, 0usize);
    let page = u64::from(gatehouse_server::audit_verify::VERIFY_PAGE);
    while from < ENTRIES {
        let leaves = db.store.audit_leaves(SYSTEM_LOG, from..from + page).await?;
        bytes += leaves.iter().map(|l| l.leaf.len()).sum::<usize>();
        from += page;
    }
    println!(
        "read {ENTRIES} leaves ({bytes} bytes, packed pages) in {:?}, CPU {:?}",
        started.elapsed(),
        cpu_time()? - cpu
    );
    // The same, one row per entry, for comparison.
    let pool = sqlx::SqlitePool::connect(&db.url).await?;
    let (started, cpu) = (Instant::now(), cpu_time()?);
    let mut from = 0i64;
    loop {
        let rows: Vec<(i64, String, String)> = sqlx::query_as(
            "SELECT idx, leaf, leaf_hash FROM audit_entries WHERE log = $1 AND idx >= $2 ORDER BY idx LIMIT 16384",
        )
        .bind(SYSTEM_LOG)
        .bind(from)
        .fetch_all(&pool)
        .await?;
        let Some(last) = rows.last() else { break };
        from = last.0 + 1;
    }
    println!(
        "read {ENTRIES} leaves (a row each) in {:?}, CPU {:?}",
        started.elapsed(),
        cpu_time()? - cpu
    );
    pool.close().await;

    for check_canonical in [true, false] {
        let mut options = VerifyStoredOptions::new(
            log_origin(KEY_NAME, SYSTEM_LOG),
            vec![signer.verifier_key()],
        );
        options.check_canonical = check_canonical;
        let (started, cpu) = (Instant::now(), cpu_time()?);
        let report = verify_stored(db.store.as_ref(), SYSTEM_LOG, options, |_| {}).await?;
        let took = started.elapsed();
        let cpu = cpu_time()? - cpu;
        assert_eq!(report.entries, ENTRIES);
        assert_eq!(report.root, tree.root());
        assert_eq!(report.stored_checkpoints, 10);
        println!(
            "verified {ENTRIES} entries (canonical check {check_canonical}) in {took:?}, CPU {cpu:?}"
        );
    }

    // Inclusion proofs through the App, as the API serves them.
    let keys = tempfile::tempdir()?;
    let (provider, _) = LocalKeyFile::open_or_create(&keys.path().join("kek.json"))?;
    let keyring = Keyring::new(
        Arc::new(provider),
        db.store.clone(),
        Duration::from_secs(300),
    );
    let clock = Arc::new(FakeClock::default());
    let engine = Arc::new(Engine::new(
        db.store.clone(),
        Arc::new(Vec::new()),
        Arc::new(ActionRegistry::new()),
        clock.clone(),
        EngineConfig::default(),
    ));
    let app = App::new(db.store.clone(), Arc::new(keyring), clock, engine);
    let actor = Actor::System("benchmark");
    let root = tree.root();
    let proofs = 2_000u64;
    let (started, cpu) = (Instant::now(), cpu_time()?);
    for i in 0..proofs {
        let index = (i * 7_919 * 127) % ENTRIES;
        let proof = app.inclusion_proof(&actor, SYSTEM_LOG, index, None).await?;
        if i.is_multiple_of(100) {
            let path: Vec<gatehouse_audit::Hash> = proof
                .proof
                .iter()
                .map(|h| gatehouse_audit::Hash::from_hex(h))
                .collect::<Result<_, _>>()?;
            let leaf = gatehouse_audit::Hash::from_hex(&proof.leaf_hash)?;
            verify_inclusion(&leaf, index, ENTRIES, &path, &root)?;
        }
    }
    let took = started.elapsed();
    let cpu = cpu_time()? - cpu;
    println!(
        "{proofs} inclusion proofs in {took:?}: {:?} each (CPU {:?} each)",
        took / u32::try_from(proofs)?,
        cpu / u32::try_from(proofs)?
    );
    db.cleanup().await;
    Ok(())
}

/// The CPU time this process has used (user and system, all threads), from
/// /proc/self/stat: on a shared machine wall time says little.
fn cpu_time() -> Result<Duration, Error> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    let after_name = stat.rsplit_once(')').ok_or("no /proc/self/stat")?.1;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line (1-based), in ticks
    // of 10 ms; after the name they are the 12th and 13th.
    let ticks: u64 = fields.get(11).ok_or("no utime")?.parse::<u64>()?
        + fields.get(12).ok_or("no stime")?.parse::<u64>()?;
    Ok(Duration::from_millis(ticks * 10))
}
