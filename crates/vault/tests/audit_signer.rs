//! The audit log's signing key kept by the vault: created once, wrapped by
//! the KEK, unwrapped afterwards, rewrapped by KEK rotation, never shown.
//!
//! Every case runs on SQLite, and on PostgreSQL when
//! `GATEHOUSE_TEST_DATABASE_URL` is set.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests fail loudly"
)]

use std::io::Write;
use std::sync::{Arc, Mutex};

use gatehouse_audit::checkpoint;
use gatehouse_audit::note::{KeyName, Signer, VerifierKey};
use gatehouse_audit::{Checkpoint, Hash};
use gatehouse_core::clock::FakeClock;
use gatehouse_core::store::Store;
use gatehouse_store::testing::TestDatabase;
use gatehouse_vault::{AUDIT_KEY_OWNER, AuditSigner, KeyProvider, Keyring, LocalKeyFile};

const ORIGIN: &str = "gatehouse.example/audit";

struct Env {
    db: TestDatabase,
    clock: FakeClock,
    dir: tempfile::TempDir,
}

impl Env {
    fn store(&self) -> &Arc<dyn Store> {
        &self.db.store
    }

    fn local(&self) -> Arc<LocalKeyFile> {
        Arc::new(
            LocalKeyFile::open_or_create(&self.dir.path().join("kek.json"))
                .unwrap()
                .0,
        )
    }

    async fn signer(&self, provider: &dyn KeyProvider) -> AuditSigner {
        AuditSigner::open(
            provider,
            self.store().as_ref(),
            KeyName::parse(ORIGIN).unwrap(),
            &self.clock,
        )
        .await
        .unwrap()
    }

    /// The seed in the clear, unwrapped from the stored row by the test.
    async fn seed(&self, provider: &dyn KeyProvider) -> [u8; 32] {
        let record = self.store().active_audit_key().await.unwrap();
        *provider
            .unwrap(AUDIT_KEY_OWNER.parse().unwrap(), &record.wrapped)
            .await
            .unwrap()
            .expose()
    }
}

async fn signed_checkpoint(signer: &dyn Signer, size: u64) -> String {
    Checkpoint::new(ORIGIN, size, Hash::from_bytes([size.to_le_bytes()[0]; 32]))
        .unwrap()
        .sign(signer)
        .await
        .unwrap()
        .to_string()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// A tracing writer keeping everything logged, to scan it.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl Write for Captured {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

mod cases {
    use super::*;

    pub async fn a_checkpoint_verifies_with_the_verifier_key_alone(env: &Env) {
        let provider = env.local();
        let signer = env.signer(provider.as_ref()).await;
        // What an auditor holds: the verifier string, nothing else.
        let published = signer.verifier().to_string();
        assert!(published.starts_with(&format!("{ORIGIN}+")), "{published}");
        let trusted = VerifierKey::parse(&published).unwrap();

        let note = signed_checkpoint(&signer, 42).await;
        let (opened, _) = checkpoint::open(&note, std::slice::from_ref(&trusted), ORIGIN).unwrap();
        assert_eq!(opened.size(), 42);
        // A changed tree size no longer verifies.
        let forged = note.replacen("\n42\n", "\n43\n", 1);
        assert!(checkpoint::open(&forged, std::slice::from_ref(&trusted), ORIGIN).is_err());

        // A second process unwraps the same key instead of making another.
        let again = env.signer(env.local().as_ref()).await;
        assert_eq!(again.verifier().to_string(), published);
        assert_eq!(env.store().list_audit_keys().await.unwrap().len(), 1);
        let note = signed_checkpoint(&again, 43).await;
        assert!(checkpoint::open(&note, &[trusted], ORIGIN).is_ok());

        // The name is part of the key id: another name is refused loudly.
        let renamed = AuditSigner::open(
            provider.as_ref(),
            env.store().as_ref(),
            KeyName::parse("other.example/audit").unwrap(),
            &env.clock,
        )
        .await;
        assert!(
            matches!(
                renamed,
                Err(gatehouse_vault::VaultError::AuditKeyName { .. })
            ),
            "{renamed:?}"
        );
    }

    pub async fn kek_rotation_rewraps_the_signing_key(env: &Env) {
        let provider = env.local();
        let signer = env.signer(provider.as_ref()).await;
        let trusted = signer.verifier();
        let before = env.store().active_audit_key().await.unwrap();

        let keyring = Keyring::new(
            provider.clone(),
            env.store().clone(),
            std::time::Duration::from_secs(3600),
        )
        .with_audit_keys(env.store().clone());
        let report = keyring
            .rotate_kek(&env.clock, &by_test(), true, &mut |_| {})
            .await
            .unwrap();
        assert_eq!(report.audit_keys_rewrapped, 1);
        // The old KEK wrapped nothing else any more, so it was retired.
        assert_eq!(report.retired, vec![before.wrapped.kek_id.clone()]);

        let after = env.store().active_audit_key().await.unwrap();
        assert_eq!(after.wrapped.kek_id, report.active_kek);
        assert_ne!(after.wrapped.ciphertext, before.wrapped.ciphertext);
        assert_eq!(after.public_key, before.public_key);

        // A fresh process (re-reading the key file) still unwraps and signs.
        let reopened = env.signer(env.local().as_ref()).await;
        let note = signed_checkpoint(&reopened, 7).await;
        assert!(checkpoint::open(&note, &[trusted], ORIGIN).is_ok());

        // Each rotation makes a new KEK, so a second one rewraps the key again.
        let report = keyring
            .rotate_kek(&env.clock, &by_test(), false, &mut |_| {})
            .await
            .unwrap();
        assert_eq!(report.audit_keys_rewrapped, 1);
    }

    pub async fn the_private_key_is_never_shown_or_stored_in_the_clear(env: &Env) {
        let logs = Captured::default();
        let writer = logs.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::TRACE)
            .with_writer(move || writer.clone())
            .finish();
        // A global subscriber that listens to everything (and writes
        // nowhere) first: otherwise another test's thread may register the
        // creation event's callsite while only the no-op default exists and
        // cache "nobody listens" for it, racing any rebuild of that cache.
        static GLOBAL: std::sync::Once = std::sync::Once::new();
        GLOBAL.call_once(|| {
            let everything = tracing_subscriber::fmt()
                .with_max_level(tracing::Level::TRACE)
                .with_writer(std::io::sink)
                .finish();
            // Fails only if another test set one, which also listens.
            let _ = tracing::subscriber::set_global_default(everything);
        });
        // Attached to the future, not the thread: the runtime may resume
        // it on any of its worker threads.
        let dispatch = tracing::Dispatch::new(subscriber);
        tracing::callsite::rebuild_interest_cache();
        let provider = env.local();
        let signer = {
            use tracing::instrument::WithSubscriber;
            let signer = env
                .signer(provider.as_ref())
                .with_subscriber(dispatch.clone())
                .await;
            let _ = signed_checkpoint(&signer, 1)
                .with_subscriber(dispatch)
                .await;
            signer
        };

        let seed = env.seed(provider.as_ref()).await;
        let base64_seed = base64_of(&seed);
        let hex_seed: String = seed.iter().map(|b| format!("{b:02x}")).collect();
        let debug = format!("{signer:?}");
        let logged = String::from_utf8(logs.0.lock().unwrap().clone()).unwrap();
        assert!(
            logged.contains(&signer.verifier().to_string()),
            "the creation is logged with the public key: {logged}"
        );
        for shown in [&debug, &logged] {
            assert!(!shown.contains(&base64_seed), "{shown}");
            assert!(!shown.contains(&hex_seed), "{shown}");
            assert!(!shown.contains(&format!("{seed:?}")), "{shown}");
        }

        let record = env.store().active_audit_key().await.unwrap();
        let mut row = Vec::new();
        row.extend_from_slice(record.name.as_bytes());
        row.extend_from_slice(&record.public_key);
        row.extend_from_slice(record.wrapped.kek_id.as_bytes());
        row.extend_from_slice(&record.wrapped.ciphertext);
        assert!(!contains(&row, &seed), "the stored row holds the seed");
        assert!(!contains(&row, base64_seed.as_bytes()));
    }

    fn base64_of(bytes: &[u8]) -> String {
        use base64::Engine as _;
        base64::engine::general_purpose::STANDARD.encode(bytes)
    }
}

macro_rules! signer_tests {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
                async fn $case() {
                    let db = super::TestDatabase::sqlite().await.unwrap();
                    let env = super::Env { db, clock: super::FakeClock::default(), dir: tempfile::tempdir().unwrap() };
                    super::cases::$case(&env).await;
                    env.db.cleanup().await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test]
                async fn $case() {
                    let Some(db) = super::TestDatabase::postgres(concat!("signer_", stringify!($case))).await.unwrap() else {
                        eprintln!("GATEHOUSE_TEST_DATABASE_URL is not set; the PostgreSQL run is done by .ci/run");
                        return;
                    };
                    let env = super::Env { db, clock: super::FakeClock::default(), dir: tempfile::tempdir().unwrap() };
                    super::cases::$case(&env).await;
                    env.db.cleanup().await;
                }
            )*
        }
    };
}

signer_tests!(
    a_checkpoint_verifies_with_the_verifier_key_alone,
    kek_rotation_rewraps_the_signing_key,
    the_private_key_is_never_shown_or_stored_in_the_clear,
);

/// Who rotates in these tests.
fn by_test() -> gatehouse_core::audit::Provenance {
    gatehouse_core::audit::Provenance::system("test", time::OffsetDateTime::UNIX_EPOCH)
}
