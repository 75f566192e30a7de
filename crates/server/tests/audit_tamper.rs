//! Tampering with a stored audit log is detected by `verify_stored`, which
//! names the position docs/audit.md ("What each kind of tampering
//! produces") says it names. The log is built by the real sequencer, with
//! signed checkpoints at several sizes; the tampering is raw SQL on the real
//! tables; the cases are chosen by proptest. On SQLite, and on PostgreSQL
//! when `GATEHOUSE_TEST_DATABASE_URL` is set.

use std::sync::Arc;
use std::time::Duration as StdDuration;

use gatehouse_audit::{
    Checkpoint, CheckpointError, CheckpointRef, Ed25519Signer, Frontier, Hash, KeyName, Mismatch,
    NoteError, Position, Signer as _, leaf_hash,
};
use gatehouse_core::audit::{AuditCheckpoint, AuditRecord, SYSTEM_LOG, log_origin};
use gatehouse_core::store::Store;
use gatehouse_server::audit::Sequencer;
use gatehouse_server::audit_verify::{
    StoredMismatch, VerifyStoredError, VerifyStoredOptions, verify_stored,
};
use gatehouse_store::testing::TestDatabase;
use gatehouse_vault::{Keyring, LocalKeyFile};
use proptest::prelude::*;
use serde_json::json;
use time::{Duration, OffsetDateTime};

type Error = Box<dyn std::error::Error + Send + Sync>;
type TestResult = Result<(), Error>;

const KEY_NAME: &str = "gatehouse.test/audit";
/// The log's size, and the sizes its checkpoints sign (the last covers all).
const SIZE: u64 = 60;
const CHECKPOINTS: [u64; 4] = [10, 25, 40, 60];

/// One way of tampering with the stored log.
#[derive(Debug, Clone)]
enum Tamper {
    /// The leaf's bytes change; its stored hash stays.
    ModifyLeaf(u64),
    /// The entry's row is deleted.
    DeleteEntry(u64),
    /// Two rows swap their indexes (`i < j`).
    SwapEntries(u64, u64),
    /// A row is inserted at `i`, the rows from `i` on renumbered.
    InsertEntry(u64),
    /// A row is added after the last entry.
    AppendEntry,
    /// Leaf and hash rewritten together.
    RewriteEntry(u64),
    /// A checkpoint's note is changed.
    AlterCheckpoint(usize),
    /// A checkpoint's row is deleted.
    DeleteCheckpoint(usize),
    /// A checkpoint's note is stored again, under a larger size.
    DuplicateCheckpoint(usize),
    /// Two checkpoints' rows swap their sizes (`k < m`).
    SwapCheckpoints(usize, usize),
}

fn arb_tamper() -> impl Strategy<Value = Tamper> {
    let n = CHECKPOINTS.len();
    prop_oneof![
        (0..SIZE).prop_map(Tamper::ModifyLeaf),
        (0..SIZE).prop_map(Tamper::DeleteEntry),
        (0..SIZE - 1)
            .prop_flat_map(|i| (Just(i), i + 1..SIZE))
            .prop_map(|(i, j)| Tamper::SwapEntries(i, j)),
        (0..SIZE).prop_map(Tamper::InsertEntry),
        Just(Tamper::AppendEntry),
        (0..SIZE).prop_map(Tamper::RewriteEntry),
        (0..n).prop_map(Tamper::AlterCheckpoint),
        (0..n).prop_map(Tamper::DeleteCheckpoint),
        (0..n).prop_map(Tamper::DuplicateCheckpoint),
        (0..n - 1)
            .prop_flat_map(move |k| (Just(k), k + 1..n))
            .prop_map(|(k, m)| Tamper::SwapCheckpoints(k, m)),
    ]
}

/// The first checkpoint (by sequence number) that covers entry `i`, and
/// the size of the one before it (`since`).
fn covering(i: u64) -> (u64, u64) {
    let seq = CHECKPOINTS
        .iter()
        .position(|&s| s > i)
        .unwrap_or(CHECKPOINTS.len());
    let since = seq.checked_sub(1).map_or(0, |p| CHECKPOINTS[p]);
    (seq as u64, since)
}

/// What verification must report: the position, and a check on the kind.
enum Expected {
    Mismatch(Position, fn(&StoredMismatch) -> bool),
    /// Not detectable from the database alone (see docs/audit.md).
    Verifies {
        checkpoints: usize,
    },
}

fn stored(seq: u64) -> Position {
    Position::Checkpoint(CheckpointRef::Stored { seq })
}

fn expected(tamper: &Tamper) -> Expected {
    use Expected::Mismatch as M;
    use StoredMismatch::Log;
    match *tamper {
        Tamper::ModifyLeaf(i) => M(Position::Entry(i), |m| {
            matches!(m, Log(Mismatch::LeafHashMismatch { .. }))
        }),
        Tamper::DeleteEntry(i) if i + 1 == SIZE => M(stored(3), |m| {
            matches!(m, Log(Mismatch::CheckpointBeyondLog { .. }))
        }),
        Tamper::DeleteEntry(i) => M(Position::Entry(i), |m| {
            matches!(m, Log(Mismatch::EntryMissing { .. }))
        }),
        Tamper::SwapEntries(i, _) | Tamper::InsertEntry(i) | Tamper::RewriteEntry(i) => {
            M(stored(covering(i).0), |m| {
                matches!(m, Log(Mismatch::CheckpointRootMismatch { .. }))
            })
        }
        Tamper::AppendEntry => M(Position::Entry(SIZE), |m| {
            matches!(m, StoredMismatch::ExtraEntries { .. })
        }),
        Tamper::AlterCheckpoint(k) => M(stored(k as u64), |m| {
            matches!(
                m,
                Log(Mismatch::Checkpoint {
                    error: CheckpointError::Signature(NoteError::BadSignature { .. }),
                    ..
                })
            )
        }),
        Tamper::DeleteCheckpoint(_) => Expected::Verifies {
            checkpoints: CHECKPOINTS.len() - 1,
        },
        Tamper::DuplicateCheckpoint(_) => M(stored(CHECKPOINTS.len() as u64), |m| {
            matches!(m, Log(Mismatch::CheckpointNotGrowing { .. }))
        }),
        Tamper::SwapCheckpoints(k, _) => M(stored(k as u64 + 1), |m| {
            matches!(m, Log(Mismatch::CheckpointNotGrowing { .. }))
        }),
    }
}

/// Raw SQL on the test database, on either back end.
enum Raw {
    Sqlite(sqlx::SqlitePool),
    Postgres(sqlx::PgPool),
}

/// A bound value.
enum Bind {
    Int(i64),
    Text(String),
}

impl Raw {
    async fn connect(db: &TestDatabase) -> Result<Self, Error> {
        Ok(if db.sqlite_path().is_some() {
            Self::Sqlite(sqlx::SqlitePool::connect(&db.url).await?)
        } else {
            Self::Postgres(sqlx::PgPool::connect(&db.url).await?)
        })
    }

    async fn exec(&self, sql: &str, binds: Vec<Bind>) -> Result<u64, Error> {
        Ok(match self {
            Self::Sqlite(pool) => {
                let mut query = sqlx::query(sql);
                for bind in binds {
                    query = match bind {
                        Bind::Int(v) => query.bind(v),
                        Bind::Text(v) => query.bind(v),
                    };
                }
                query.execute(pool).await?.rows_affected()
            }
            Self::Postgres(pool) => {
                let mut query = sqlx::query(sql);
                for bind in binds {
                    query = match bind {
                        Bind::Int(v) => query.bind(v),
                        Bind::Text(v) => query.bind(v),
                    };
                }
                query.execute(pool).await?.rows_affected()
            }
        })
    }

    async fn close(self) {
        match self {
            Self::Sqlite(pool) => pool.close().await,
            Self::Postgres(pool) => pool.close().await,
        }
    }
}

fn text(s: impl Into<String>) -> Bind {
    Bind::Text(s.into())
}

fn int(v: u64) -> Bind {
    Bind::Int(v as i64)
}

/// Builds the log through the sequencer, signing a checkpoint at each of
/// [`CHECKPOINTS`]; returns the stored checkpoints' notes.
async fn build(store: &Arc<dyn Store>, signer: &Ed25519Signer) -> Result<Vec<String>, Error> {
    // The system log seals nothing, but the sequencer holds a keyring.
    let keys = tempfile::tempdir()?;
    let (provider, _) = LocalKeyFile::open_or_create(&keys.path().join("kek.json"))?;
    let keyring = Keyring::new(
        Arc::new(provider),
        store.clone(),
        StdDuration::from_secs(60),
    );
    let sequencer = Sequencer::new(store.clone(), Arc::new(keyring));
    let start = OffsetDateTime::UNIX_EPOCH + Duration::days(20_000);
    let mut appended = 0u64;
    let mut notes = Vec::new();
    for &size in &CHECKPOINTS {
        let records: Vec<AuditRecord> = (appended..size)
            .map(|i| AuditRecord {
                at: start + Duration::seconds(i as i64),
                tenant_id: None,
                actor: "op_tester".into(),
                action: "test.recorded".into(),
                subject: format!("thing-{i}"),
                details: json!({"n": i}),
            })
            .collect();
        store.queue_audit(&records).await?;
        while sequencer.run_once(1000).await? > 0 {}
        appended = size;
        let head = store.audit_head(SYSTEM_LOG).await?;
        assert_eq!(head.size, size);
        let frontier = Frontier::restore(
            head.size,
            head.frontier
                .iter()
                .map(|n| Hash::from_bytes(n.hash))
                .collect(),
        )?;
        let note = Checkpoint::new(log_origin(KEY_NAME, SYSTEM_LOG), size, frontier.root())?
            .sign(signer)
            .await?
            .to_string();
        store
            .put_checkpoint(&AuditCheckpoint {
                log: SYSTEM_LOG.into(),
                size,
                note: note.clone(),
                created_at: start,
            })
            .await?;
        notes.push(note);
    }
    Ok(notes)
}

/// A canonical leaf that no sequencer wrote.
fn forged_leaf(i: u64) -> (String, String) {
    let leaf = format!(r#"{{"forged":true,"idx":{i}}}"#);
    let hash = leaf_hash(leaf.as_bytes()).to_hex();
    (leaf, hash)
}

async fn apply(raw: &Raw, tamper: &Tamper, notes: &[String]) -> TestResult {
    let log = || text(SYSTEM_LOG);
    match *tamper {
        Tamper::ModifyLeaf(i) => {
            raw.exec(
                "UPDATE audit_entries SET leaf = leaf || ' ' WHERE log = $1 AND idx = $2",
                vec![log(), int(i)],
            )
            .await?;
        }
        Tamper::DeleteEntry(i) => {
            raw.exec(
                "DELETE FROM audit_entries WHERE log = $1 AND idx = $2",
                vec![log(), int(i)],
            )
            .await?;
        }
        Tamper::SwapEntries(i, j) => {
            for (from, to) in [(i, 1_000_000), (j, i), (1_000_000, j)] {
                raw.exec(
                    "UPDATE audit_entries SET idx = $3 WHERE log = $1 AND idx = $2",
                    vec![log(), int(from), int(to)],
                )
                .await?;
            }
        }
        Tamper::InsertEntry(i) => {
            raw.exec(
                "UPDATE audit_entries SET idx = idx + 1000000 WHERE log = $1 AND idx >= $2",
                vec![log(), int(i)],
            )
            .await?;
            raw.exec(
                "UPDATE audit_entries SET idx = idx - 999999 WHERE log = $1 AND idx >= 1000000",
                vec![log()],
            )
            .await?;
            insert_copy(raw, i, i + 1).await?;
        }
        Tamper::AppendEntry => insert_copy(raw, SIZE, 0).await?,
        Tamper::RewriteEntry(i) => {
            let (leaf, hash) = forged_leaf(i);
            raw.exec(
                "UPDATE audit_entries SET leaf = $3, leaf_hash = $4 WHERE log = $1 AND idx = $2",
                vec![log(), int(i), text(leaf), text(hash)],
            )
            .await?;
        }
        Tamper::AlterCheckpoint(k) => {
            // The root line, one character changed: still a well-formed
            // note, no longer what was signed.
            let note = &notes[k];
            let mut lines: Vec<String> = note.split('\n').map(str::to_owned).collect();
            let root = &mut lines[2];
            let first = if root.starts_with('A') { "B" } else { "A" };
            root.replace_range(0..1, first);
            raw.exec(
                "UPDATE audit_checkpoints SET note = $3 WHERE log = $1 AND size = $2",
                vec![log(), int(CHECKPOINTS[k]), text(lines.join("\n"))],
            )
            .await?;
        }
        Tamper::DeleteCheckpoint(k) => {
            raw.exec(
                "DELETE FROM audit_checkpoints WHERE log = $1 AND size = $2",
                vec![log(), int(CHECKPOINTS[k])],
            )
            .await?;
        }
        Tamper::DuplicateCheckpoint(k) => {
            raw.exec(
                "INSERT INTO audit_checkpoints (log, size, note, created_at) \
                 SELECT log, $3, note, created_at FROM audit_checkpoints WHERE log = $1 AND size = $2",
                vec![log(), int(CHECKPOINTS[k]), int(1_000 + k as u64)],
            )
            .await?;
        }
        Tamper::SwapCheckpoints(k, m) => {
            let (a, b) = (CHECKPOINTS[k], CHECKPOINTS[m]);
            for (from, to) in [(a, 1_000_000), (b, a), (1_000_000, b)] {
                raw.exec(
                    "UPDATE audit_checkpoints SET size = $3 WHERE log = $1 AND size = $2",
                    vec![log(), int(from), int(to)],
                )
                .await?;
            }
        }
    }
    Ok(())
}

/// Inserts a forged, consistent row at `idx`, copying the clear columns of
/// entry `like`.
async fn insert_copy(raw: &Raw, idx: u64, like: u64) -> TestResult {
    let (leaf, hash) = forged_leaf(idx);
    let added = raw
        .exec(
            "INSERT INTO audit_entries (log, idx, at, actor, action, subject, leaf, leaf_hash) \
             SELECT log, $2, at, actor, action, subject, $4, $5 FROM audit_entries WHERE log = $1 AND idx = $3",
            vec![text(SYSTEM_LOG), int(idx), int(like), text(leaf), text(hash)],
        )
        .await?;
    assert_eq!(added, 1);
    Ok(())
}

fn options(signer: &Ed25519Signer) -> VerifyStoredOptions {
    VerifyStoredOptions::new(
        log_origin(KEY_NAME, SYSTEM_LOG),
        vec![signer.verifier_key()],
    )
}

async fn case(db: &TestDatabase, tamper: &Tamper) -> TestResult {
    let signer = Ed25519Signer::generate(KeyName::parse(KEY_NAME)?)?;
    let notes = build(&db.store, &signer).await?;
    let report = verify_stored(db.store.as_ref(), SYSTEM_LOG, options(&signer), |_| {}).await?;
    assert_eq!(report.entries, SIZE);
    assert_eq!(report.stored_checkpoints, CHECKPOINTS.len());

    let raw = Raw::connect(db).await?;
    apply(&raw, tamper, &notes).await?;
    raw.close().await;
    let result = verify_stored(db.store.as_ref(), SYSTEM_LOG, options(&signer), |_| {}).await;
    match (expected(tamper), result) {
        (Expected::Mismatch(position, kind), Err(VerifyStoredError::Mismatch(found))) => {
            assert_eq!(found.position(), Some(position), "{tamper:?}: {found}");
            assert!(kind(&found), "{tamper:?}: {found:?}");
            if let StoredMismatch::Log(Mismatch::CheckpointRootMismatch { since, .. }) = &found
                && let Tamper::SwapEntries(i, _) | Tamper::InsertEntry(i) | Tamper::RewriteEntry(i) =
                    *tamper
            {
                assert_eq!(*since, covering(i).1, "{tamper:?}: {found}");
            }
        }
        (Expected::Verifies { checkpoints }, Ok(report)) => {
            assert_eq!(report.entries, SIZE);
            assert_eq!(report.stored_checkpoints, checkpoints);
        }
        (_, other) => panic_free_fail(tamper, &other)?,
    }
    Ok(())
}

fn panic_free_fail(
    tamper: &Tamper,
    result: &Result<gatehouse_audit::Report, VerifyStoredError>,
) -> TestResult {
    Err(format!("{tamper:?}: unexpected verification result {result:?}").into())
}

/// A checkpoint an auditor kept catches what the database alone cannot:
/// the tail of the log cut together with the checkpoints that signed it.
async fn kept_checkpoint_catches_a_cut_tail(db: &TestDatabase) -> TestResult {
    let signer = Ed25519Signer::generate(KeyName::parse(KEY_NAME)?)?;
    let notes = build(&db.store, &signer).await?;
    let raw = Raw::connect(db).await?;
    raw.exec(
        "DELETE FROM audit_checkpoints WHERE log = $1 AND size > 25",
        vec![text(SYSTEM_LOG)],
    )
    .await?;
    raw.exec(
        "DELETE FROM audit_entries WHERE log = $1 AND idx >= 30",
        vec![text(SYSTEM_LOG)],
    )
    .await?;
    raw.exec(
        "UPDATE audit_logs SET size = 30 WHERE log = $1",
        vec![text(SYSTEM_LOG)],
    )
    .await?;
    raw.close().await;
    // The database alone is consistent again.
    let report = verify_stored(db.store.as_ref(), SYSTEM_LOG, options(&signer), |_| {}).await?;
    assert_eq!(report.entries, 30);
    // The kept checkpoint of size 40 is not.
    let mut kept = options(&signer);
    kept.kept = vec![notes[2].clone()];
    match verify_stored(db.store.as_ref(), SYSTEM_LOG, kept, |_| {}).await {
        Err(VerifyStoredError::Mismatch(StoredMismatch::Log(Mismatch::CheckpointBeyondLog {
            at: CheckpointRef::Kept { ordinal: 0 },
            size: 40,
            log_size: 30,
        }))) => Ok(()),
        other => Err(format!("expected the kept checkpoint to fail: {other:?}").into()),
    }
}

/// Rows added after the end are found even pages away from it (the next
/// stored index skips ahead of the log's size).
async fn rows_after_the_end_are_found(db: &TestDatabase) -> TestResult {
    let signer = Ed25519Signer::generate(KeyName::parse(KEY_NAME)?)?;
    build(&db.store, &signer).await?;
    let raw = Raw::connect(db).await?;
    insert_copy(&raw, SIZE + 100_000, 0).await?;
    raw.close().await;
    match verify_stored(db.store.as_ref(), SYSTEM_LOG, options(&signer), |_| {}).await {
        Err(VerifyStoredError::Mismatch(found)) => {
            assert_eq!(found.position(), Some(Position::Entry(SIZE)), "{found}");
            Ok(())
        }
        other => Err(format!("expected a mismatch at entry {SIZE}: {other:?}").into()),
    }
}

/// Progress is reported, and a log never appended to is not found.
async fn progress_and_unknown_logs(db: &TestDatabase) -> TestResult {
    let signer = Ed25519Signer::generate(KeyName::parse(KEY_NAME)?)?;
    build(&db.store, &signer).await?;
    let seen = Arc::new(std::sync::Mutex::new(Vec::new()));
    let sink = seen.clone();
    let mut opts = options(&signer);
    opts.progress_every = 16;
    verify_stored(db.store.as_ref(), SYSTEM_LOG, opts, move |p| {
        if let Ok(mut seen) = sink.lock() {
            seen.push(p.entries);
        }
    })
    .await?;
    let seen = seen.lock().map_err(|e| e.to_string())?.clone();
    assert_eq!(seen, [16, 32, 48, 60]);
    match verify_stored(db.store.as_ref(), "ten_nobody", options(&signer), |_| {}).await {
        Err(VerifyStoredError::Store(gatehouse_core::store::StoreError::NotFound(_))) => Ok(()),
        other => Err(format!("expected not found: {other:?}").into()),
    }
}

fn runtime() -> Result<tokio::runtime::Runtime, Error> {
    Ok(tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?)
}

async fn on_sqlite(tamper: &Tamper) -> TestResult {
    let db = TestDatabase::sqlite().await?;
    let result = case(&db, tamper).await;
    db.cleanup().await;
    result
}

async fn on_postgres(tamper: &Tamper) -> TestResult {
    let Some(db) = TestDatabase::postgres("tamper").await? else {
        return Ok(());
    };
    let result = case(&db, tamper).await;
    db.cleanup().await;
    result
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(24))]

    #[test]
    fn tampering_on_sqlite_is_named_at_its_position(tamper in arb_tamper()) {
        let rt = runtime().map_err(|e| TestCaseError::fail(e.to_string()))?;
        rt.block_on(on_sqlite(&tamper)).map_err(|e| TestCaseError::fail(e.to_string()))?;
    }

    #[test]
    fn tampering_on_postgres_is_named_at_its_position(tamper in arb_tamper()) {
        let rt = runtime().map_err(|e| TestCaseError::fail(e.to_string()))?;
        rt.block_on(on_postgres(&tamper)).map_err(|e| TestCaseError::fail(e.to_string()))?;
    }
}

macro_rules! both_backends {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() -> super::TestResult {
                    let db = super::TestDatabase::sqlite().await?;
                    let result = super::$case(&db).await;
                    db.cleanup().await;
                    result
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() -> super::TestResult {
                    let Some(db) = super::TestDatabase::postgres(stringify!($case)).await? else {
                        eprintln!("GATEHOUSE_TEST_DATABASE_URL is not set; the PostgreSQL run is done by .ci/run");
                        return Ok(());
                    };
                    let result = super::$case(&db).await;
                    db.cleanup().await;
                    result
                }
            )*
        }
    };
}

both_backends!(
    kept_checkpoint_catches_a_cut_tail,
    progress_and_unknown_logs,
    rows_after_the_end_are_found,
);
