//! The webhook intake through real HTTP (`POST /hooks/{source}/{tenant}`
//! on the served app), on SQLite and, with `GATEHOUSE_TEST_DATABASE_URL`,
//! on PostgreSQL: for each sender a good signature starts exactly one
//! onboarding, a bad or tampered one is refused (401) and recorded, a
//! duplicate starts nothing new, a malformed body is 400 with the reason,
//! a stale timestamp is refused, a ConnectWise key URL off the allowlist is
//! never fetched, and a stranger gets 404. Also the Autotask poller.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests fail loudly"
)]

mod common;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use axum::Json;
use axum::routing::get;
use gatehouse_connectors::ConnectorError;
use gatehouse_connectors::ports::{CompanyUpdate, Psa, PsaCompany, PsaKind, PsaOpportunity};
use gatehouse_connectors::webhook::{
    HttpKeyFetcher, KeyHostAllowlist, sign_autotask, sign_connectwise, sign_generic,
};
use gatehouse_core::clock::Clock;
use gatehouse_core::hooks::{DeliveryOutcome, HookDelivery, HookSource};
use gatehouse_core::secret::SecretName;
use gatehouse_core::tenant::{DisplayName, Region, TenantSlug, TenantState};
use gatehouse_engine::action::ActionRegistry;
use gatehouse_engine::runtime::{Engine, EngineConfig};
use gatehouse_engine::template::{TemplateSet, builtin_actions};
use gatehouse_sandbox::emulator::{Harness, Served as Emulator, serve};
use gatehouse_server::app::hooks::{Intake, IntakeConfig};
use gatehouse_server::app::{Actor, App, NewTenant, TenantRef, WorkflowFilter};
use gatehouse_server::http::{ApiState, HttpConfig};
use gatehouse_server::intake_poll::{AutotaskPoller, OVERLAP};
use gatehouse_server::metrics::Metrics;
use gatehouse_store::testing::TestDatabase;
use gatehouse_vault::{Keyring, LocalKeyFile};
use reqwest::StatusCode;
use serde_json::{Value, json};
use time::OffsetDateTime;

use common::TestResult;

const SYSTEM: Actor = Actor::System("test");
const CW_KEY: &str = "cw-signing-key-0123456789";

/// The served app with an intake, a ConnectWise key server, and the MSP's
/// tenant `msp` holding every hook secret.
struct Hooked {
    base: String,
    http: reqwest::Client,
    app: Arc<App>,
    clock: Arc<gatehouse_core::clock::FakeClock>,
    intake: Arc<Intake>,
    keys: Harness,
    key_server: Option<Emulator>,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

impl Hooked {
    async fn spawn(db: &TestDatabase, psa: Option<Arc<dyn Psa>>) -> TestResult<Self> {
        let dir = tempfile::tempdir()?;
        let (provider, _) = LocalKeyFile::open_or_create(&dir.path().join("kek.json"))?;
        let keyring = Keyring::new(
            Arc::new(provider),
            db.store.clone(),
            Duration::from_secs(300),
        );
        let clock = Arc::new(gatehouse_core::clock::FakeClock::default());
        let templates = TemplateSet::builtin(&builtin_actions())?;
        let engine = Arc::new(Engine::new(
            db.store.clone(),
            Arc::new(templates),
            Arc::new(ActionRegistry::new()),
            clock.clone(),
            EngineConfig::default(),
        ));
        let app = Arc::new(App::new(
            db.store.clone(),
            Arc::new(keyring),
            clock.clone(),
            engine,
        ));

        // The ConnectWise key server: counts every request.
        let keys = Harness::new();
        let counting = keys.clone();
        let router = axum::Router::new().route(
            "/v4_6_release/system/callbackkey/index.rails",
            get(move || {
                let counting = counting.clone();
                async move {
                    counting.count("key");
                    Json(json!({ "signing_key": CW_KEY }))
                }
            }),
        );
        let key_server = serve("connectwise-keys", router, &keys, None).await?;

        let mut config = IntakeConfig::new(Region::parse("eu")?);
        config.connectwise_key_hosts = KeyHostAllowlist::new(["127.0.0.1"]);
        config.default_owner = Some(gatehouse_core::notify::EmailAddress::parse(
            "lead@msp.example",
        )?);
        let mut intake = Intake::new(
            app.clone(),
            config,
            Arc::new(HttpKeyFetcher::new(Duration::from_secs(5))?),
        );
        if let Some(psa) = psa {
            intake = intake.with_psa(psa);
        }
        let intake = Arc::new(intake);

        let router = gatehouse_server::http::hooks::with_intake(
            gatehouse_server::http::router(
                ApiState {
                    app: app.clone(),
                    metrics: Arc::new(Metrics::new()),
                },
                HttpConfig::default(),
            ),
            intake.clone(),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = gatehouse_server::http::serve(listener, router, async {
                let _ = rx.await;
            })
            .await;
        });

        let hooked = Self {
            base,
            http: reqwest::Client::new(),
            app,
            clock,
            intake,
            keys,
            key_server: Some(key_server),
            shutdown: Some(tx),
            _dir: dir,
        };
        hooked.tenant("msp").await?;
        for (name, value) in [
            ("hooks.autotask.secret", "at-secret"),
            ("hooks.halopsa.auth", "halo:pa55"),
            ("hooks.generic.secret", "gen-secret"),
        ] {
            hooked
                .app
                .put_secret(
                    &SYSTEM,
                    &TenantRef::parse("msp"),
                    &SecretName::parse(name)?,
                    value.as_bytes(),
                )
                .await?;
        }
        hooked.tenant("bystander").await?;
        Ok(hooked)
    }

    async fn tenant(&self, slug: &str) -> TestResult {
        self.app
            .create_tenant(
                &SYSTEM,
                NewTenant {
                    slug: TenantSlug::parse(slug)?,
                    display_name: DisplayName::parse(slug)?,
                    region: Region::parse("eu")?,
                    state: TenantState::Active,
                },
            )
            .await?;
        Ok(())
    }

    fn key_url(&self) -> String {
        format!(
            "{}/v4_6_release/system/callbackkey/index.rails?id=7",
            self.key_server.as_ref().unwrap().url()
        )
    }

    async fn post(
        &self,
        path: &str,
        headers: &[(&str, String)],
        body: &[u8],
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .post(format!("{}{path}", self.base))
            .header("content-type", "application/json")
            .body(body.to_vec());
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let body = response.json::<Value>().await.unwrap_or(Value::Null);
        (status, body)
    }

    fn now(&self) -> i64 {
        self.clock.now().unix_timestamp()
    }

    async fn generic(&self, body: &Value, at: i64) -> (StatusCode, Value) {
        let raw = body.to_string();
        let headers = [
            ("x-gatehouse-timestamp", at.to_string()),
            (
                "x-gatehouse-signature",
                sign_generic(b"gen-secret", at, raw.as_bytes()),
            ),
        ];
        self.post("/hooks/generic/msp", &headers, raw.as_bytes())
            .await
    }

    async fn autotask(&self, raw: &str, secret: &[u8]) -> (StatusCode, Value) {
        let headers = [("x-hook-signature", sign_autotask(secret, raw.as_bytes()))];
        self.post("/hooks/autotask/msp", &headers, raw.as_bytes())
            .await
    }

    async fn connectwise(&self, raw: &str, key: &str) -> (StatusCode, Value) {
        let headers = [(
            "x-content-signature",
            sign_connectwise(key.as_bytes(), raw.as_bytes()),
        )];
        self.post("/hooks/connectwise/msp", &headers, raw.as_bytes())
            .await
    }

    /// The onboarding instances started so far.
    async fn onboardings(&self) -> usize {
        self.app
            .list_workflows(
                &SYSTEM,
                WorkflowFilter {
                    template: Some("client-onboarding".into()),
                    ..WorkflowFilter::default()
                },
                None,
                100,
            )
            .await
            .unwrap()
            .items
            .len()
    }

    async fn deliveries(&self, tenant: &str) -> Vec<HookDelivery> {
        self.app
            .list_hook_deliveries(&SYSTEM, &TenantRef::parse(tenant), None, None, None, 100)
            .await
            .unwrap()
            .items
    }

    /// The hook audit actions queued, oldest first.
    async fn audit_actions(&self) -> Vec<String> {
        self.app
            .store
            .pending_audit(1000)
            .await
            .unwrap()
            .into_iter()
            .map(|(_, r)| r.action)
            .filter(|a| a.starts_with("hook.delivery."))
            .collect()
    }

    async fn stop(mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
        if let Some(server) = self.key_server.take() {
            server.shutdown().await;
        }
    }
}

fn won_client(id: &str) -> Value {
    json!({
        "type": "client.won",
        "id": id,
        "company": { "id": "c-1", "name": "Acme Corp", "m365_tenant_id": "6f1c7a52-0000-4000-8000-000000000001" },
        "opportunity": { "id": "o-1" },
        "owner": { "email": "lead@msp.example" },
        "contact": { "email": "it@acme.example" },
    })
}

fn autotask_opportunity(id: u32, status: u32) -> String {
    json!({
        "Action": "Update",
        "Guid": "9f0c",
        "EntityType": "Opportunity",
        "Id": id,
        "Fields": { "status": status, "companyID": 501, "companyName": "Globex Inc" },
    })
    .to_string()
}

fn connectwise_opportunity(key_url: &str, id: u32, status: &str) -> String {
    let entity = json!({
        "id": id,
        "name": "Managed services",
        "status": { "id": 3, "name": status },
        "company": { "id": 250, "identifier": "Initech", "name": "Initech LLC" },
    });
    json!({
        "MessageId": format!("m-{id}-{status}"),
        "Action": "updated",
        "Type": "Opportunity",
        "ID": id,
        "Entity": entity.to_string(),
        "Metadata": { "key_url": key_url },
    })
    .to_string()
}

mod cases {
    use super::*;

    pub async fn generic_signed_client_won_starts_one_onboarding(db: &TestDatabase) -> TestResult {
        let h = Hooked::spawn(db, None).await?;
        let (status, reply) = h.generic(&won_client("e-1"), h.now()).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{reply}");
        assert_eq!(reply["outcome"], "accepted");
        assert_eq!(reply["instances"].as_array().unwrap().len(), 1);
        assert_eq!(h.onboardings().await, 1);

        // The event carries the documented payload, with a derived slug.
        let event: gatehouse_core::id::EventId = reply["event"].as_str().unwrap().parse()?;
        let stored = h.app.store.get_event(event).await?;
        assert_eq!(stored.kind.as_str(), "psa.opportunity.won");
        assert_eq!(stored.payload["company"]["slug"], "acme-corp");
        assert_eq!(stored.payload["company"]["region"], "eu");
        assert_eq!(stored.payload["contact"]["email"], "it@acme.example");

        // The same event again, freshly signed: a duplicate, nothing new.
        h.clock.advance(time::Duration::seconds(30));
        let (status, again) = h.generic(&won_client("e-1"), h.now()).await;
        assert_eq!(status, StatusCode::OK, "{again}");
        assert_eq!(again["outcome"], "duplicate");
        assert_eq!(again["event"], reply["event"]);
        assert_eq!(again["instances"], reply["instances"]);
        assert_eq!(h.onboardings().await, 1);

        let outcomes: Vec<_> = h
            .deliveries("msp")
            .await
            .iter()
            .map(|d| d.outcome)
            .collect();
        assert_eq!(
            outcomes,
            vec![DeliveryOutcome::Duplicate, DeliveryOutcome::Accepted]
        );
        assert_eq!(
            h.audit_actions().await,
            vec!["hook.delivery.accepted", "hook.delivery.duplicate"]
        );
        h.stop().await;
        Ok(())
    }

    pub async fn generic_refuses_bad_tampered_and_stale_deliveries(
        db: &TestDatabase,
    ) -> TestResult {
        let h = Hooked::spawn(db, None).await?;
        let now = h.now();
        let raw = won_client("e-2").to_string();
        let good = sign_generic(b"gen-secret", now, raw.as_bytes());

        // A wrong secret.
        let wrong = [
            ("x-gatehouse-timestamp", now.to_string()),
            (
                "x-gatehouse-signature",
                sign_generic(b"guess", now, raw.as_bytes()),
            ),
        ];
        let (status, body) = h.post("/hooks/generic/msp", &wrong, raw.as_bytes()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{body}");
        assert_eq!(body["error"]["code"], "unauthenticated");

        // A tampered body under a good signature.
        let tampered = raw.replace("Acme Corp", "Evil Corp");
        let headers = [
            ("x-gatehouse-timestamp", now.to_string()),
            ("x-gatehouse-signature", good.clone()),
        ];
        let (status, _) = h
            .post("/hooks/generic/msp", &headers, tampered.as_bytes())
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);

        // No signature at all.
        let (status, _) = h.post("/hooks/generic/msp", &[], raw.as_bytes()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);

        // A correct signature, replayed after the window.
        let old = now - 301;
        let (status, _) = h.generic(&won_client("e-2"), old).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);

        assert_eq!(h.onboardings().await, 0, "nothing started");
        let deliveries = h.deliveries("msp").await;
        assert_eq!(deliveries.len(), 4);
        assert!(
            deliveries
                .iter()
                .all(|d| d.outcome == DeliveryOutcome::BadSignature && d.event_id.is_none())
        );
        assert!(
            deliveries[0]
                .reason
                .as_deref()
                .unwrap()
                .contains("replay window"),
            "{:?}",
            deliveries[0].reason
        );
        assert!(deliveries[1].reason.as_deref().unwrap().contains("missing"));
        // The body is never stored: its hash is.
        use sha2::Digest;
        let hash = format!("{:x}", sha2::Sha256::digest(tampered.as_bytes()));
        assert_eq!(deliveries[2].body_sha256, hash);
        assert_eq!(h.audit_actions().await.len(), 4);
        h.stop().await;
        Ok(())
    }

    pub async fn malformed_and_ignored_deliveries_are_answered_and_recorded(
        db: &TestDatabase,
    ) -> TestResult {
        let h = Hooked::spawn(db, None).await?;
        let mut missing = won_client("e-3");
        missing["company"] = json!({ "name": "Acme Corp" });
        missing["opportunity"] = Value::Null;
        missing["owner"] = json!({ "email": "not an address" });
        let (status, body) = h.generic(&missing, h.now()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
        assert_eq!(body["error"]["code"], "hook_malformed");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("missing fields: company.id"), "{message}");
        assert!(
            message.contains("owner.email is not an e-mail address"),
            "{message}"
        );

        // Signed, but not JSON.
        let raw = b"{not json";
        let now = h.now();
        let headers = [
            ("x-gatehouse-timestamp", now.to_string()),
            (
                "x-gatehouse-signature",
                sign_generic(b"gen-secret", now, raw),
            ),
        ];
        let (status, body) = h.post("/hooks/generic/msp", &headers, raw).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("not JSON")
        );

        // Signed and readable, but not a won deal.
        let (status, body) = h
            .generic(&json!({"type": "client.lost", "id": "e-4"}), h.now())
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["outcome"], "ignored");
        assert!(body["reason"].as_str().unwrap().contains("client.won"));

        assert_eq!(h.onboardings().await, 0);
        let outcomes: Vec<_> = h
            .deliveries("msp")
            .await
            .iter()
            .map(|d| d.outcome)
            .collect();
        assert_eq!(
            outcomes,
            vec![
                DeliveryOutcome::Ignored,
                DeliveryOutcome::Malformed,
                DeliveryOutcome::Malformed
            ]
        );
        h.stop().await;
        Ok(())
    }

    pub async fn autotask_signed_opportunity_starts_one_onboarding(
        db: &TestDatabase,
    ) -> TestResult {
        let h = Hooked::spawn(db, None).await?;
        let raw = autotask_opportunity(9001, 3);
        let (status, reply) = h.autotask(&raw, b"at-secret").await;
        assert_eq!(status, StatusCode::ACCEPTED, "{reply}");
        assert_eq!(h.onboardings().await, 1);

        let (status, again) = h.autotask(&raw, b"at-secret").await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(again["outcome"], "duplicate");
        assert_eq!(h.onboardings().await, 1);

        let (status, _) = h
            .autotask(&autotask_opportunity(9002, 3), b"wrong-secret")
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        // Tampered: signed for one body, sent with another.
        let headers = [(
            "x-hook-signature",
            sign_autotask(b"at-secret", raw.as_bytes()),
        )];
        let (status, _) = h
            .post(
                "/hooks/autotask/msp",
                &headers,
                autotask_opportunity(9003, 3).as_bytes(),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);

        // Still open: ignored.
        let (status, body) = h
            .autotask(&autotask_opportunity(9004, 1), b"at-secret")
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["outcome"], "ignored");
        assert_eq!(h.onboardings().await, 1);

        let stored = h
            .app
            .store
            .get_event(reply["event"].as_str().unwrap().parse()?)
            .await?;
        assert_eq!(stored.dedup_key.as_str(), "autotask:opportunity:9001:won");
        assert_eq!(stored.payload["company"]["name"], "Globex Inc");
        // No website in the webhook and no PSA to ask: no domain.
        assert_eq!(stored.payload["company"]["domain"], Value::Null);
        // No owner in the webhook: the configured default.
        assert_eq!(stored.payload["owner"]["email"], "lead@msp.example");
        h.stop().await;
        Ok(())
    }

    pub async fn halopsa_credential_is_checked(db: &TestDatabase) -> TestResult {
        let h = Hooked::spawn(db, None).await?;
        let raw = json!({
            "ticket": {
                "id": 314, "tickettype_name": "Opportunity", "status_name": "Won",
                "client_id": 12, "client_name": "Umbrella plc", "user_email": "ops@umbrella.example",
            },
            "action": { "id": 1 },
        })
        .to_string();
        // base64("halo:pa55") = aGFsbzpwYTU1
        let good = [("authorization", "Basic aGFsbzpwYTU1".to_owned())];
        let (status, reply) = h.post("/hooks/halopsa/msp", &good, raw.as_bytes()).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{reply}");
        let (status, _) = h.post("/hooks/halopsa/msp", &good, raw.as_bytes()).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(h.onboardings().await, 1);

        let bad = [("authorization", "Basic aGFsbzpwYTU2".to_owned())];
        let (status, _) = h.post("/hooks/halopsa/msp", &bad, raw.as_bytes()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, _) = h.post("/hooks/halopsa/msp", &[], raw.as_bytes()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(h.onboardings().await, 1);
        let outcomes: Vec<_> = h
            .deliveries("msp")
            .await
            .iter()
            .map(|d| d.outcome)
            .collect();
        assert_eq!(
            outcomes,
            vec![
                DeliveryOutcome::BadSignature,
                DeliveryOutcome::BadSignature,
                DeliveryOutcome::Duplicate,
                DeliveryOutcome::Accepted
            ]
        );
        h.stop().await;
        Ok(())
    }

    pub async fn connectwise_key_is_fetched_only_from_allowed_hosts(
        db: &TestDatabase,
    ) -> TestResult {
        let h = Hooked::spawn(db, None).await?;
        let raw = connectwise_opportunity(&h.key_url(), 77, "Won");
        let (status, reply) = h.connectwise(&raw, CW_KEY).await;
        assert_eq!(status, StatusCode::ACCEPTED, "{reply}");
        assert_eq!(h.keys.counted("key"), 1);
        let (status, again) = h.connectwise(&raw, CW_KEY).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(again["outcome"], "duplicate");
        assert_eq!(h.onboardings().await, 1);
        assert_eq!(h.keys.counted("key"), 1, "the key is cached");

        // Signed with another key: refused, without another fetch of a key
        // fetched moments ago.
        let (status, _) = h
            .connectwise(&connectwise_opportunity(&h.key_url(), 78, "Won"), "forged")
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);

        // The same key server, named by a host not on the allowlist: no request.
        let before = h.keys.counted("key");
        let elsewhere = h.key_url().replace("127.0.0.1", "localhost");
        let raw = connectwise_opportunity(&elsewhere, 79, "Won");
        let (status, _) = h.connectwise(&raw, CW_KEY).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_eq!(h.keys.counted("key"), before, "nothing was fetched");
        let refused = &h.deliveries("msp").await[0];
        assert_eq!(refused.outcome, DeliveryOutcome::BadSignature);
        assert!(
            refused.reason.as_deref().unwrap().contains("allowlist"),
            "{:?}",
            refused.reason
        );

        // The key server down: 503 (the sender retries), recorded as failed.
        let down = connectwise_opportunity(&h.key_url().replace("id=7", "id=8"), 81, "Won");
        h.keys.set_down(true);
        let (status, _) = h.connectwise(&down, CW_KEY).await;
        assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE);
        h.keys.set_down(false);
        assert_eq!(
            h.deliveries("msp").await[0].outcome,
            DeliveryOutcome::Failed
        );
        let (status, _) = h.connectwise(&down, CW_KEY).await;
        assert_eq!(
            status,
            StatusCode::ACCEPTED,
            "delivered again once the key server is back"
        );

        // Lost: ignored.
        let (status, body) = h
            .connectwise(&connectwise_opportunity(&h.key_url(), 80, "Lost"), CW_KEY)
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body["outcome"], "ignored");
        assert_eq!(h.onboardings().await, 2);
        h.stop().await;
        Ok(())
    }

    pub async fn connectwise_asks_the_psa_when_it_has_one(db: &TestDatabase) -> TestResult {
        let psa = Arc::new(FakePsa::default());
        psa.add_opportunity("77", "250", false, None);
        psa.add_opportunity("78", "250", true, None);
        let h = Hooked::spawn(db, Some(psa.clone())).await?;
        // The callback says Won, the PSA says not: the PSA wins.
        let (status, body) = h
            .connectwise(&connectwise_opportunity(&h.key_url(), 77, "Won"), CW_KEY)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["outcome"], "ignored");
        // The callback says Lost, the PSA says won; its company name is used.
        let (status, body) = h
            .connectwise(&connectwise_opportunity(&h.key_url(), 78, "Lost"), CW_KEY)
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        let stored = h
            .app
            .store
            .get_event(body["event"].as_str().unwrap().parse()?)
            .await?;
        assert_eq!(
            stored.payload["company"]["name"],
            "Company 250 from the PSA"
        );
        // And its domain, from the company's website in the PSA.
        assert_eq!(stored.payload["company"]["domain"], "company250.example");
        assert_eq!(h.onboardings().await, 1);
        h.stop().await;
        Ok(())
    }

    pub async fn strangers_get_404_and_learn_nothing(db: &TestDatabase) -> TestResult {
        let h = Hooked::spawn(db, None).await?;
        let raw = won_client("e-9").to_string();
        let now = h.now();
        let headers = [
            ("x-gatehouse-timestamp", now.to_string()),
            (
                "x-gatehouse-signature",
                sign_generic(b"gen-secret", now, raw.as_bytes()),
            ),
        ];
        let mut answers = Vec::new();
        for path in [
            "/hooks/generic/nobody",                         // no such tenant
            "/hooks/generic/ten_01jd8x3k2q9f6v0c4m7r5t8w1y", // no such tenant id
            "/hooks/generic/bystander",                      // a tenant without the secret
            "/hooks/autotask/bystander",
            "/hooks/halopsa/bystander",
            "/hooks/zapier/msp", // no such source
        ] {
            let (status, body) = h.post(path, &headers, raw.as_bytes()).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
            answers.push(body);
        }
        assert!(
            answers.windows(2).all(|w| w[0] == w[1]),
            "one answer for all: {answers:?}"
        );
        assert_eq!(answers[0]["error"]["code"], "hook_not_found");
        // Not the API's bearer auth: a hook needs no token, and a token does not help.
        let (status, _) = h
            .post(
                "/hooks/generic/msp",
                &[("authorization", "Bearer x".into())],
                raw.as_bytes(),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert!(h.deliveries("bystander").await.is_empty());
        assert_eq!(h.onboardings().await, 0);
        h.stop().await;
        Ok(())
    }

    pub async fn the_autotask_poller_submits_each_won_deal_once(db: &TestDatabase) -> TestResult {
        let h = Hooked::spawn(db, None).await?;
        let psa = Arc::new(FakePsa::default());
        let poller = || {
            AutotaskPoller::new(
                h.intake.clone(),
                psa.clone(),
                TenantRef::parse("msp"),
                Duration::from_secs(300),
            )
        };
        // First run: starts watching from now; nothing earlier is onboarded.
        let start = h.clock.now();
        psa.add_opportunity("1", "501", true, Some(start - time::Duration::days(3)));
        let first = poller().poll_once().await?;
        assert_eq!(first.watermark, Some(start));
        assert_eq!(
            psa.asked(),
            Vec::<OffsetDateTime>::new(),
            "the first run only sets the watermark"
        );

        h.clock.advance(time::Duration::minutes(10));
        let closed = start + time::Duration::minutes(7);
        psa.add_opportunity("2", "501", true, Some(closed));
        let round = poller().poll_once().await?;
        assert_eq!((round.started, round.duplicates), (1, 0), "{round:?}");
        assert_eq!(round.watermark, Some(closed));
        assert_eq!(h.onboardings().await, 1);
        // The company's name and domain (its website) come from the PSA.
        let event = h.deliveries("msp").await[0].event_id.unwrap();
        let payload = h.app.store.get_event(event).await?.payload;
        assert_eq!(payload["company"]["name"], "Company 501 from the PSA");
        assert_eq!(payload["company"]["domain"], "company501.example");

        // A restart: a new poller reads the stored watermark; the overlap
        // sees opportunity 2 again, as a duplicate.
        h.clock.advance(time::Duration::minutes(5));
        let again = poller().poll_once().await?;
        assert_eq!((again.started, again.duplicates), (0, 1), "{again:?}");
        assert_eq!(psa.asked().last().copied(), Some(closed - OVERLAP));
        assert_eq!(h.onboardings().await, 1);
        let msp = h
            .app
            .get_tenant(&SYSTEM, &TenantRef::parse("msp"))
            .await?
            .id;
        assert_eq!(
            h.app
                .store
                .intake_watermark(msp, "autotask.opportunities")
                .await?,
            Some(closed)
        );

        let stored = h.deliveries("msp").await;
        assert_eq!(stored[0].outcome, DeliveryOutcome::Duplicate);
        assert_eq!(stored[0].source, HookSource::Autotask);
        assert_eq!(stored[1].outcome, DeliveryOutcome::Accepted);
        assert_eq!(stored[1].reason.as_deref(), Some("polled"));
        h.stop().await;
        Ok(())
    }
}

/// A PSA for tests: opportunities in memory, and the `since` of every
/// `won_opportunities` call.
#[derive(Debug, Default)]
struct FakePsa {
    opportunities: Mutex<Vec<PsaOpportunity>>,
    asked: Mutex<Vec<OffsetDateTime>>,
}

impl FakePsa {
    fn add_opportunity(
        &self,
        id: &str,
        company: &str,
        won: bool,
        closed_at: Option<OffsetDateTime>,
    ) {
        self.opportunities.lock().unwrap().push(PsaOpportunity {
            id: id.into(),
            name: format!("Deal {id}"),
            company_id: company.into(),
            status: if won { "Won".into() } else { "Open".into() },
            won,
            closed_at,
        });
    }

    fn asked(&self) -> Vec<OffsetDateTime> {
        self.asked.lock().unwrap().clone()
    }
}

#[async_trait]
impl Psa for FakePsa {
    fn kind(&self) -> PsaKind {
        PsaKind::Autotask
    }

    async fn company(&self, id: &str) -> Result<Option<PsaCompany>, ConnectorError> {
        Ok(Some(PsaCompany {
            id: id.into(),
            name: format!("Company {id} from the PSA"),
            status: None,
            contract: None,
            domain: Some(format!("company{id}.example")),
        }))
    }

    async fn update_company(
        &self,
        _: &str,
        _: &CompanyUpdate,
        _: &str,
    ) -> Result<PsaCompany, ConnectorError> {
        Err(ConnectorError::Config {
            system: "fake",
            message: "not supported".into(),
        })
    }

    async fn opportunity(&self, id: &str) -> Result<Option<PsaOpportunity>, ConnectorError> {
        Ok(self
            .opportunities
            .lock()
            .unwrap()
            .iter()
            .find(|o| o.id == id)
            .cloned())
    }

    async fn set_opportunity_status(
        &self,
        _: &str,
        _: &str,
        _: &str,
    ) -> Result<PsaOpportunity, ConnectorError> {
        Err(ConnectorError::Config {
            system: "fake",
            message: "not supported".into(),
        })
    }

    async fn won_opportunities(
        &self,
        since: OffsetDateTime,
    ) -> Result<Vec<PsaOpportunity>, ConnectorError> {
        self.asked.lock().unwrap().push(since);
        let mut won: Vec<_> = self
            .opportunities
            .lock()
            .unwrap()
            .iter()
            .filter(|o| o.won && o.closed_at.is_some_and(|c| c >= since))
            .cloned()
            .collect();
        won.sort_by_key(|o| o.closed_at);
        Ok(won)
    }
}

macro_rules! both_backends {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            use super::TestDatabase;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let db = TestDatabase::sqlite().await.unwrap();
                    super::cases::$case(&db).await.unwrap();
                    db.cleanup().await;
                }
            )*
        }

        mod postgres {
            use super::TestDatabase;
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(db) = TestDatabase::postgres(concat!("hooks_", stringify!($case))).await.unwrap() else {
                        eprintln!("GATEHOUSE_TEST_DATABASE_URL is not set; the PostgreSQL run is done by .ci/run");
                        return;
                    };
                    super::cases::$case(&db).await.unwrap();
                    db.cleanup().await;
                }
            )*
        }
    };
}

both_backends!(
    generic_signed_client_won_starts_one_onboarding,
    generic_refuses_bad_tampered_and_stale_deliveries,
    malformed_and_ignored_deliveries_are_answered_and_recorded,
    autotask_signed_opportunity_starts_one_onboarding,
    halopsa_credential_is_checked,
    connectwise_key_is_fetched_only_from_allowed_hosts,
    connectwise_asks_the_psa_when_it_has_one,
    strangers_get_404_and_learn_nothing,
    the_autotask_poller_submits_each_won_deal_once,
);
