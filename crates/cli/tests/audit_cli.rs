//! `gatehouse audit list|show|proof|consistency|verify`, run as the real
//! binary against a SQLite installation whose log the test builds with the
//! real sequencer and signs with the installation's own key, then tampers
//! with through SQL on the database file.

#[allow(
    dead_code,
    clippy::expect_used,
    clippy::panic,
    reason = "the shared harness of the cli tests fails loudly; this binary uses part of it"
)]
mod common;

use std::sync::Arc;

use gatehouse_audit::{Checkpoint, Frontier, Hash, KeyName, verify_consistency, verify_inclusion};
use gatehouse_core::audit::{AuditCheckpoint, AuditRecord, SYSTEM_LOG, log_origin};
use gatehouse_core::clock::SystemClock;
use gatehouse_core::store::Store;
use gatehouse_server::audit::Sequencer;
use gatehouse_store::SqliteStore;
use gatehouse_vault::{AuditSigner, Keyring, LocalKeyFile};
use serde_json::{Value, json};
use time::OffsetDateTime;

use common::{Backend, Install, Run};

type Error = Box<dyn std::error::Error + Send + Sync>;
type TestResult = Result<(), Error>;

const KEY_NAME: &str = "gatehouse.local/audit";

/// Appends records `from..to` to the system log (after whatever the
/// installation recorded itself) and signs a checkpoint at its new size with
/// the installation's key; returns the note and the size.
async fn grow(install: &Install, from: u64, to: u64) -> Result<(String, u64), Error> {
    let store: Arc<dyn Store> = Arc::new(SqliteStore::connect(&install.database_url()).await?);
    let records: Vec<AuditRecord> = (from..to)
        .map(|i| AuditRecord {
            at: OffsetDateTime::UNIX_EPOCH
                + time::Duration::days(20_000)
                + time::Duration::seconds(i as i64),
            tenant_id: None,
            actor: if i.is_multiple_of(2) {
                "op_ann"
            } else {
                "op_bob"
            }
            .into(),
            action: "test.recorded".into(),
            subject: format!("thing-{i}"),
            details: json!({"n": i}),
        })
        .collect();
    store.queue_audit(&records).await?;
    let (provider, _) = LocalKeyFile::open_or_create(&install.path("kek.json"))?;
    let keyring = Keyring::new(
        Arc::new(provider),
        store.clone(),
        std::time::Duration::from_secs(60),
    );
    let sequencer = Sequencer::new(store.clone(), Arc::new(keyring));
    while sequencer.run_once(1000).await? > 0 {}
    let head = store.audit_head(SYSTEM_LOG).await?;
    let root = Frontier::restore(
        head.size,
        head.frontier
            .iter()
            .map(|n| Hash::from_bytes(n.hash))
            .collect(),
    )?
    .root();
    let (provider, _) = LocalKeyFile::open_or_create(&install.path("kek.json"))?;
    let signer = AuditSigner::open(
        &provider,
        store.as_ref(),
        KeyName::parse(KEY_NAME)?,
        &SystemClock,
    )
    .await?;
    let note = Checkpoint::new(log_origin(KEY_NAME, SYSTEM_LOG), head.size, root)?
        .sign(&signer)
        .await?
        .to_string();
    store
        .put_checkpoint(&AuditCheckpoint {
            log: SYSTEM_LOG.into(),
            size: head.size,
            note: note.clone(),
            created_at: OffsetDateTime::UNIX_EPOCH,
        })
        .await?;
    store.close().await;
    Ok((note, head.size))
}

/// Runs SQL statements on the installation's database file.
async fn tamper(install: &Install, statements: &[&String]) -> TestResult {
    let pool = sqlx::SqlitePool::connect(&install.database_url()).await?;
    for statement in statements {
        sqlx::query(statement.as_str()).execute(&pool).await?;
    }
    pool.close().await;
    Ok(())
}

fn code(run: &Run) -> Option<i32> {
    run.status.code()
}

fn json_of(run: &Run) -> Result<Value, Error> {
    Ok(serde_json::from_str(&run.stdout)?)
}

fn hash(value: &Value) -> Result<Hash, Error> {
    Ok(Hash::from_hex(value.as_str().ok_or("not a string")?)?)
}

fn hashes(value: &Value) -> Result<Vec<Hash>, Error> {
    value
        .as_array()
        .ok_or("not an array")?
        .iter()
        .map(hash)
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn browse_prove_and_verify_then_catch_tampering() -> TestResult {
    let install = Install::new(&Backend::sqlite());
    install.run(&["migrate"]).ok();
    install.run(&["audit", "public-key"]).ok();
    let (_, first_size) = grow(&install, 0, 20).await?;
    let (kept, size) = grow(&install, 20, 50).await?;
    // The installation's own records (its signing key, …) come first.
    let base = first_size - 20;
    assert_eq!(size, base + 50);
    let (first_size, size) = (first_size.to_string(), size.to_string());
    let at = |i: u64| (base + i).to_string();
    let kept_file = install.path("kept.note");
    std::fs::write(&kept_file, &kept)?;

    // Browsing: a table with the next cursor at its end, then JSON pages.
    let first = install
        .run(&["audit", "list", "--actor", "op_ann", "--limit", "10"])
        .ok();
    let cursor = first
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("next cursor: "))
        .ok_or("no cursor printed")?
        .to_owned();
    assert_eq!(
        first
            .stdout
            .lines()
            .filter(|l| l.contains("op_ann"))
            .count(),
        10
    );
    let second = install
        .run(&[
            "audit", "list", "--actor", "op_ann", "--limit", "10", "--cursor", &cursor, "--json",
        ])
        .ok();
    let page = json_of(&second)?;
    let idx: Vec<u64> = page["entries"]
        .as_array()
        .ok_or("no entries")?
        .iter()
        .filter_map(|e| e["idx"].as_u64())
        .collect();
    assert_eq!(idx, (base + 20..base + 40).step_by(2).collect::<Vec<_>>());
    let bad = install
        .run(&["audit", "list", "--since", "yesterday"])
        .fails();
    assert!(bad.stderr.contains("RFC 3339"), "{}", bad.stderr);
    let shown = json_of(&install.run(&["audit", "show", "system", &at(3)]).ok())?;
    assert_eq!(shown["subject"], "thing-3");

    // Proofs check out with the library's verifiers.
    let proof = json_of(
        &install
            .run(&[
                "audit",
                "proof",
                "system",
                &at(3),
                "--tree-size",
                &first_size,
                "--json",
            ])
            .ok(),
    )?;
    verify_inclusion(
        &hash(&proof["leaf_hash"])?,
        base + 3,
        base + 20,
        &hashes(&proof["proof"])?,
        &hash(&proof["root"])?,
    )?;
    assert!(proof["checkpoint"].is_string());
    let consistency = json_of(
        &install
            .run(&[
                "audit",
                "consistency",
                "system",
                &first_size,
                &size,
                "--json",
            ])
            .ok(),
    )?;
    verify_consistency(
        base + 20,
        base + 50,
        &hash(&consistency["old_root"])?,
        &hash(&consistency["new_root"])?,
        &hashes(&consistency["proof"])?,
    )?;
    assert_eq!(consistency["old_root"], proof["root"]);

    // Everything matches.
    let ok = install
        .run(&[
            "audit",
            "verify",
            "--canonical",
            "--checkpoint",
            kept_file.to_str().ok_or("path")?,
        ])
        .ok();
    assert!(
        ok.stdout.contains(&format!(
            "ok  system  {size} entries, 2 checkpoints (+1 kept), root "
        )),
        "{}",
        ok.stdout
    );
    let report = json_of(&install.run(&["audit", "verify", "--json"]).ok())?;
    assert_eq!(report["verified"], true);
    assert_eq!(report["logs"][0]["entries"], base + 50);

    // The tail cut with the checkpoint that signed it: consistent in the
    // database alone, caught by the kept checkpoint.
    tamper(
        &install,
        &[
            &format!("DELETE FROM audit_checkpoints WHERE size = {size}"),
            &format!("DELETE FROM audit_entries WHERE idx >= {}", at(30)),
            &format!("UPDATE audit_logs SET size = {}", at(30)),
        ],
    )
    .await?;
    let alone = install.run(&["audit", "verify"]).ok();
    assert!(
        alone
            .stdout
            .contains(&format!("ok  system  {} entries, 1 checkpoints", at(30))),
        "{}",
        alone.stdout
    );
    let caught = install.run(&[
        "audit",
        "verify",
        "--checkpoint",
        kept_file.to_str().ok_or("path")?,
    ]);
    assert_eq!(
        code(&caught),
        Some(1),
        "{}\n{}",
        caught.stdout,
        caught.stderr
    );
    assert!(
        caught
            .stdout
            .contains("MISMATCH  system  at kept checkpoint 1"),
        "{}",
        caught.stdout
    );

    // A changed entry is named by its index.
    tamper(
        &install,
        &[&format!(
            "UPDATE audit_entries SET leaf = leaf || ' ' WHERE idx = {}",
            at(7)
        )],
    )
    .await?;
    let changed = install.run(&["audit", "verify"]);
    assert_eq!(
        code(&changed),
        Some(1),
        "{}\n{}",
        changed.stdout,
        changed.stderr
    );
    assert!(
        changed
            .stdout
            .contains(&format!("MISMATCH  system  at entry {}", at(7))),
        "{}",
        changed.stdout
    );
    let report = json_of(&install.run(&["audit", "verify", "--json"]))?;
    assert_eq!(report["verified"], false);
    assert_eq!(report["logs"][0]["mismatch"]["entry"], base + 7);

    // Errors are not mismatches: exit 2.
    let missing = install.run(&["audit", "verify", "--checkpoint", "/nonexistent/kept.note"]);
    assert_eq!(code(&missing), Some(2), "{}", missing.stderr);
    assert!(missing.stderr.contains("error: "), "{}", missing.stderr);
    let unreachable = install.run(&[
        "--database-url",
        "postgres://nobody@127.0.0.1:1/none",
        "audit",
        "verify",
    ]);
    assert_eq!(code(&unreachable), Some(2), "{}", unreachable.stderr);
    Ok(())
}
