//! What the server's HTTP tests share: an `App` on a test database, with a
//! fresh local key file and audit signing key, served on loopback, and the
//! bootstrap administrator's token. Each test crate uses what it needs.

#![allow(dead_code, reason = "each test crate uses a part of this module")]

use std::sync::Arc;
use std::time::Duration;

use gatehouse_core::clock::FakeClock;
use gatehouse_engine::action::ActionRegistry;
use gatehouse_engine::runtime::{Engine, EngineConfig};
use gatehouse_engine::template::Template;
use gatehouse_server::App;
use gatehouse_server::http::{ApiState, HttpConfig};
use gatehouse_server::metrics::Metrics;
use gatehouse_store::testing::TestDatabase;
use gatehouse_vault::{Keyring, LocalKeyFile};

/// What the tests return.
pub type TestResult<T = ()> = Result<T, Box<dyn std::error::Error + Send + Sync>>;

/// The audit signing key's name in the tests.
pub const KEY_NAME: &str = "gatehouse.test/audit";

/// A served app. The engine's worker does not run: tests drive it.
pub struct Served {
    /// `http://127.0.0.1:<port>`.
    pub base: String,
    /// A client for it.
    pub http: reqwest::Client,
    /// The bootstrap administrator's token.
    pub admin: String,
    /// The app behind the server.
    pub app: Arc<App>,
    /// The app's clock.
    pub clock: Arc<FakeClock>,
    /// The router, for requests that bypass the socket.
    pub router: axum::Router,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    _keys: tempfile::TempDir,
}

impl Served {
    /// Serves an app on `db` with `templates` and `actions`, request bodies
    /// up to `max_body_bytes`.
    pub async fn spawn(
        db: &TestDatabase,
        templates: Vec<Template>,
        actions: ActionRegistry,
        max_body_bytes: usize,
    ) -> TestResult<Self> {
        let keys = tempfile::tempdir()?;
        let (provider, _) = LocalKeyFile::open_or_create(&keys.path().join("kek.json"))?;
        let keyring = Keyring::new(
            Arc::new(provider),
            db.store.clone(),
            Duration::from_secs(300),
        )
        .with_audit_keys(db.store.clone())
        .with_totp_secrets(db.store.clone());
        let clock = Arc::new(FakeClock::default());
        let engine = Arc::new(Engine::new(
            db.store.clone(),
            Arc::new(templates),
            Arc::new(actions),
            clock.clone(),
            EngineConfig::default(),
        ));
        let signer = gatehouse_vault::AuditSigner::open(
            keyring.provider().as_ref(),
            db.store.as_ref(),
            gatehouse_audit::KeyName::parse(KEY_NAME)?,
            clock.as_ref(),
        )
        .await?;
        let app = Arc::new(
            App::new(db.store.clone(), Arc::new(keyring), clock.clone(), engine)
                .with_audit_signer(Arc::new(signer)),
        );
        let (_, secret) = app
            .bootstrap()
            .await?
            .ok_or("a fresh database bootstraps")?;
        let router = gatehouse_server::http::router(
            ApiState {
                app: app.clone(),
                metrics: Arc::new(Metrics::new()),
            },
            HttpConfig { max_body_bytes },
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let serving = router.clone();
        tokio::spawn(async move {
            let served = gatehouse_server::http::serve(listener, serving, async {
                let _ = rx.await;
            })
            .await;
            if let Err(err) = served {
                eprintln!("the test server failed: {err}");
            }
        });
        Ok(Self {
            base,
            http: reqwest::Client::new(),
            admin: secret.expose().to_owned(),
            app,
            clock,
            router,
            shutdown: Some(tx),
            _keys: keys,
        })
    }

    /// Stops serving (the app stays usable).
    pub fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}
