//! Client onboarding end to end, on SQLite and (with
//! `GATEHOUSE_TEST_DATABASE_URL`) PostgreSQL: the in-process sandbox's
//! ConnectWise wins a deal and delivers its signed callback to the served
//! intake; the built-in `client-onboarding` template runs with every real
//! action (the vendor clients against the emulators over HTTP); a scripted
//! operator (`gatehouse_sandbox::operator`) approves, signs off and hands
//! over the documentation through the public API only. The engine's worker
//! does not run: the test ticks it and moves its fake clock to the next
//! due retry, so nothing waits on wall-clock time.
//!
//! Cases: the whole path to go-live with exactly the expected records in
//! every sandbox system; a bad signature and a duplicate delivery; a
//! target down when an approved step runs, then recovering; a rejection
//! followed by the compensation of everything done before it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests fail loudly"
)]

mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use common::TestResult;
use gatehouse_connectors::connectwise::{ConnectWiseClient, ConnectWiseConfig, NewCallback};
use gatehouse_connectors::http::Secret;
use gatehouse_connectors::webhook::{HttpKeyFetcher, KeyHostAllowlist};
use gatehouse_core::clock::{Clock, FakeClock};
use gatehouse_core::connector::{ConnectorKind, ConnectorName, ConnectorSpec};
use gatehouse_core::id::{TenantId, WorkflowId};
use gatehouse_core::secret::SecretName;
use gatehouse_core::tenant::{DisplayName, Region, TenantSlug, TenantState};
use gatehouse_core::workflow::{InstanceState, StepState};
use gatehouse_engine::action::{Action, ActionRegistry};
use gatehouse_engine::runtime::{Engine, EngineConfig};
use gatehouse_engine::template::{TemplateSet, builtin_actions};
use gatehouse_sandbox::Sandbox;
use gatehouse_sandbox::operator::{Operator, Verdict};
use gatehouse_sandbox::psa::Delivery;
use gatehouse_server::actions::{Directory, VendorFactory, Wanted};
use gatehouse_server::app::hooks::{Intake, IntakeConfig};
use gatehouse_server::app::{Actor, App, NewTenant, TenantRef};
use gatehouse_server::audit::Sequencer;
use gatehouse_server::http::{ApiState, HttpConfig};
use gatehouse_server::kb::KbService;
use gatehouse_server::kb_action::{self, KbPublish};
use gatehouse_server::metrics::Metrics;
use gatehouse_server::onboarding::AppSlot;
use gatehouse_store::testing::TestDatabase;
use gatehouse_vault::{Keyring, LocalKeyFile};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const SYSTEM: Actor = Actor::System("e2e test");
const MSP: &str = "msp";
const OWNER: &str = "owner@msp.example";

/// Gatehouse served as `serve` wires it (every action, the intake), on a
/// fake clock, with the sandbox's emulators as the MSP's connectors.
struct E2e {
    base: String,
    http: reqwest::Client,
    app: Arc<App>,
    clock: Arc<FakeClock>,
    sandbox: Sandbox,
    admin: String,
    lead: String,
    operator: Operator,
    sequencer: Sequencer,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

/// A deal the sandbox PSA holds.
struct Deal {
    name: String,
    company: u64,
    opportunity: u64,
    customer_tenant: String,
}

impl E2e {
    async fn spawn(db: &TestDatabase) -> TestResult<Self> {
        let dir = tempfile::tempdir()?;
        let store = db.store.clone();
        let (provider, _) = LocalKeyFile::open_or_create(&dir.path().join("kek.json"))?;
        let keyring = Arc::new(
            Keyring::new(Arc::new(provider), store.clone(), Duration::from_secs(300))
                .with_audit_keys(store.clone()),
        );
        let clock = Arc::new(FakeClock::default());
        let dyn_clock: Arc<dyn Clock> = clock.clone();

        // Every action, as `wiring::open_engine` registers them.
        let kb = Arc::new(KbService::new(
            store.clone(),
            keyring.clone(),
            dyn_clock.clone(),
        ));
        let slot = AppSlot::new();
        let mut actions = ActionRegistry::new();
        let directory = Arc::new(Directory::new(
            store.clone(),
            keyring.clone(),
            dyn_clock.clone(),
            Arc::new(VendorFactory {
                clock: dyn_clock.clone(),
            }),
            TenantSlug::parse(MSP)?,
        ));
        gatehouse_server::actions::register(&mut actions, directory.clone());
        gatehouse_server::onboarding::register_actions(&mut actions, &slot);
        let publish: Arc<dyn Action> =
            Arc::new(KbPublish::new(kb.clone(), store.clone(), dyn_clock.clone()));
        actions.register(kb_action::NAME, publish);
        let templates = TemplateSet::builtin(&builtin_actions())?;
        let engine = Arc::new(Engine::new(
            store.clone(),
            Arc::new(templates),
            Arc::new(actions),
            dyn_clock.clone(),
            EngineConfig::default(),
        ));
        let signer = gatehouse_vault::AuditSigner::open(
            keyring.provider().as_ref(),
            store.as_ref(),
            gatehouse_audit::KeyName::parse(common::KEY_NAME)?,
            clock.as_ref(),
        )
        .await?;
        let mut app = App::new(store.clone(), keyring.clone(), dyn_clock.clone(), engine)
            .with_audit_signer(Arc::new(signer));
        app.kb = kb;
        slot.set(app.clone());
        let app = Arc::new(app);
        let (_, admin) = app
            .bootstrap()
            .await?
            .ok_or("a fresh database bootstraps")?;
        let sequencer = Sequencer::new(store.clone(), keyring.clone());

        let sandbox = Sandbox::start().await?;
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let mut t = Self {
            base: base.clone(),
            http: reqwest::Client::new(),
            app: app.clone(),
            clock,
            sandbox,
            admin: admin.expose().to_owned(),
            lead: String::new(),
            operator: Operator::new(&base, "unset"),
            sequencer,
            shutdown: None,
            _dir: dir,
        };
        let msp = t.wire_msp().await?;

        // The intake, as `serve --demo` configures it: the sandbox
        // ConnectWise serves its signing key on loopback; deals are read
        // from the MSP's PSA.
        let mut config = IntakeConfig::new(Region::parse("eu")?);
        config.connectwise_key_hosts = KeyHostAllowlist::new(["127.0.0.1"]);
        config.default_owner = Some(gatehouse_core::notify::EmailAddress::parse(OWNER)?);
        let (_, psa) = directory.psa(msp, &Wanted::default()).await?;
        let intake = Arc::new(
            Intake::new(
                app.clone(),
                config,
                Arc::new(HttpKeyFetcher::new(Duration::from_secs(5))?),
            )
            .with_psa(psa),
        );
        let router = gatehouse_server::http::hooks::with_intake(
            gatehouse_server::http::router(
                ApiState {
                    app: app.clone(),
                    metrics: Arc::new(Metrics::new()),
                },
                HttpConfig::default(),
            ),
            intake,
        );
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(async move {
            let _ = gatehouse_server::http::serve(listener, router, async {
                let _ = rx.await;
            })
            .await;
        });
        t.shutdown = Some(tx);
        t.lead = t.new_operator("lea.lead", "lead").await;
        t.operator = Operator::new(&base, &t.lead);
        t.register_callback().await?;
        Ok(t)
    }

    /// The MSP's tenant with connectors to the sandbox's ConnectWise,
    /// NinjaOne, IT Glue and Graph (credentials as its sealed secrets).
    async fn wire_msp(&self) -> TestResult<TenantId> {
        let tenant = TenantRef::parse(MSP);
        let msp = self
            .app
            .create_tenant(
                &SYSTEM,
                NewTenant {
                    slug: TenantSlug::parse(MSP)?,
                    display_name: DisplayName::parse("The MSP")?,
                    region: Region::parse("eu")?,
                    state: TenantState::Active,
                },
            )
            .await?;
        let s = &self.sandbox;
        let c = &s.credentials;
        let connectors = [
            (
                ConnectorKind::ConnectWise,
                s.connectwise.url(),
                json!({"company_id": c.connectwise.company_id, "public_key": c.connectwise.public_key,
                       "client_id": c.connectwise.client_id}),
                vec![("private_key", c.connectwise.private_key.clone())],
            ),
            (
                ConnectorKind::NinjaOne,
                s.ninjaone.url(),
                json!({"client_id": c.ninjaone.0}),
                vec![("client_secret", c.ninjaone.1.clone())],
            ),
            (
                ConnectorKind::ItGlue,
                s.itglue.url(),
                json!({}),
                vec![("api_key", c.itglue_key.clone())],
            ),
            (
                ConnectorKind::Graph,
                s.graph.url(),
                json!({"login_base": s.graph.url(), "partner_tenant_id": c.partner_tenant_id,
                       "client_id": c.graph_app.0}),
                vec![("client_secret", c.graph_app.1.clone())],
            ),
        ];
        for (kind, base_url, settings, credentials) in connectors {
            let mut secrets = BTreeMap::new();
            for (role, value) in credentials {
                let name =
                    SecretName::parse(&format!("{}.{}", kind.as_str(), role.replace('_', "-")))?;
                self.app
                    .put_secret(&SYSTEM, &tenant, &name, value.as_bytes())
                    .await?;
                secrets.insert(role.to_owned(), name);
            }
            let spec = ConnectorSpec {
                kind,
                base_url,
                settings,
                secrets,
            };
            self.app
                .set_connector(
                    &SYSTEM,
                    &tenant,
                    &ConnectorName::parse(kind.as_str())?,
                    spec,
                )
                .await?;
        }
        Ok(msp.id)
    }

    /// Registers the won-opportunity callback in the sandbox ConnectWise,
    /// as an MSP engineer would.
    async fn register_callback(&self) -> TestResult {
        let cw = &self.sandbox.connectwise;
        // The template marks the won opportunity `Onboarded`: a status the
        // MSP adds to its ConnectWise.
        cw.add_opportunity_status("Onboarded", true, true);
        let c = &self.sandbox.credentials.connectwise;
        let client = ConnectWiseClient::new(
            ConnectWiseConfig {
                base_url: cw.url(),
                company_id: c.company_id.clone(),
                public_key: c.public_key.clone(),
                private_key: Secret::new(c.private_key.clone()),
                client_id: c.client_id.clone(),
            },
            dyn_clock(&self.clock),
        )?;
        client
            .register_callback(
                &NewCallback {
                    description: "Gatehouse: won opportunities start onboardings".into(),
                    url: format!("{}/hooks/connectwise/{MSP}", self.base),
                    object_id: 0,
                    kind: "Opportunity".into(),
                    level: "Owner".into(),
                },
                "e2e-callback",
            )
            .await?;
        Ok(())
    }

    async fn call(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        (
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        )
    }

    async fn new_operator(&self, name: &str, role: &str) -> String {
        let (status, body) = self
            .call(
                &self.admin,
                Method::POST,
                "/api/v1/operators",
                Some(json!({"name": name, "display_name": name, "role": role})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["token"]["token"].as_str().unwrap().to_owned()
    }

    /// Seeds a client in the sandbox: the ConnectWise company (with its
    /// website) and open opportunity, and the client's Microsoft 365
    /// tenant for that domain, with a previous provider's admin in it.
    fn seed_deal(&self, name: &str, domain: &str) -> Deal {
        let cw = &self.sandbox.connectwise;
        // A prospect: the onboarding makes it an active client.
        let company = cw.seed_company(name, "Not-Approved");
        cw.set_company_website(company, domain);
        let opportunity = cw.seed_opportunity("Managed services, 20 seats", company, "Open", None);
        let customer_tenant = format!("c0ffee00-0000-4000-8000-{:012}", company);
        let graph = &self.sandbox.graph;
        graph.add_tenant(&customer_tenant, name);
        graph.add_domain(&customer_tenant, domain);
        let app = &self.sandbox.credentials.graph_app;
        graph.consent_app(&customer_tenant, &app.0, &app.1);
        graph.seed_previous_provider(
            &customer_tenant,
            "0ld00000-0000-4000-8000-000000000001",
            "Previous IT",
        );
        Deal {
            name: name.to_owned(),
            company,
            opportunity,
            customer_tenant,
        }
    }

    /// Wins the deal in the sandbox ConnectWise: its signed callback goes
    /// to the intake. Answers the deliveries.
    async fn win(&self, deal: &Deal) -> Vec<Delivery> {
        let deliveries = self
            .sandbox
            .connectwise
            .win_opportunity(deal.opportunity)
            .await;
        self.settle().await;
        deliveries
    }

    /// The onboardings of client `name`, through the API.
    async fn onboardings_of(&self, name: &str) -> Vec<String> {
        self.operator
            .onboardings()
            .await
            .unwrap()
            .iter()
            .filter(|o| o["client"] == name)
            .map(|o| o["id"].as_str().unwrap().to_owned())
            .collect()
    }

    /// Ticks the engine until it has nothing due.
    async fn settle(&self) {
        for _ in 0..200 {
            if self.app.engine.tick().await.unwrap() == 0 {
                return;
            }
        }
        // Say what keeps it busy: the due instances and their open steps.
        let all = self
            .app
            .store
            .list_instances(&gatehouse_core::store::InstanceQuery {
                within: None,
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap();
        let mut busy = Vec::new();
        for instance in all.iter().filter(|i| i.next_run_at.is_some()) {
            let (_, steps) = self.app.store.get_instance(instance.id).await.unwrap();
            let open: Vec<String> = steps
                .iter()
                .filter(|s| !matches!(s.state, StepState::Succeeded | StepState::Pending))
                .map(|s| format!("{} {:?} next {:?}", s.step_id, s.state, s.next_attempt_at))
                .collect();
            busy.push(format!(
                "{} {} next {:?}: {open:?}",
                instance.id, instance.state, instance.next_run_at
            ));
        }
        panic!(
            "the engine did not settle at {}: {busy:?}",
            self.clock.now()
        );
    }

    async fn instance(
        &self,
        id: &str,
    ) -> (
        gatehouse_core::workflow::Instance,
        Vec<gatehouse_core::workflow::StepRun>,
    ) {
        let id: WorkflowId = id.parse().unwrap();
        self.app.store.get_instance(id).await.unwrap()
    }

    /// What a step of `onboarding` returned.
    async fn output(&self, onboarding: &str, step: &str) -> Option<Value> {
        let (_, steps) = self.instance(onboarding).await;
        steps
            .into_iter()
            .find(|s| s.step_id == step && s.state == StepState::Succeeded)
            .and_then(|s| s.output)
    }

    /// What the client's own people and systems do meanwhile, when
    /// Gatehouse waits for them: the client's admin accepts the GDAP
    /// request; the agents installed from the link report in.
    async fn the_client_acts(&self, onboarding: &str) {
        if let Some(gdap) = self.output(onboarding, "gdap-request").await {
            let id = gdap["id"].as_str().unwrap();
            if self.sandbox.graph.gdap_status(id).as_deref() == Some("approvalPending") {
                assert!(self.sandbox.graph.approve_gdap(id));
            }
        }
        if self.output(onboarding, "rmm-installer").await.is_some()
            && let Some(org) = self.output(onboarding, "rmm-organization").await
        {
            let org: u64 = match &org["id"] {
                Value::String(s) => s.parse().unwrap(),
                other => other.as_u64().unwrap(),
            };
            let enrolled = self
                .sandbox
                .ninjaone
                .organizations()
                .iter()
                .any(|o| o.id == org && o.devices > 0);
            if !enrolled {
                self.sandbox.ninjaone.add_device(org, "CLIENT-PC-01", true);
            }
        }
    }

    /// Drives `onboarding` as far as it goes: the engine runs what is due,
    /// the operator acts on what waits for a person (as `decide` says),
    /// the client acts, and the clock moves to the next due retry; until
    /// the instance stops, or nothing moves any more. Answers its state.
    async fn drive(&self, onboarding: &str, decide: impl Fn(&Value) -> Verdict) -> InstanceState {
        let scope: BTreeSet<String> = [onboarding.to_owned()].into();
        for _ in 0..100 {
            self.settle().await;
            let pass = self.operator.pass(Some(&scope), &decide).await.unwrap();
            if pass.acted() {
                continue;
            }
            self.the_client_acts(onboarding).await;
            self.settle().await;
            let (instance, _) = self.instance(onboarding).await;
            if instance.state.is_final() || instance.state == InstanceState::Parked {
                return instance.state;
            }
            match instance.next_run_at {
                Some(at) if at > self.clock.now() => self.to_retry(at),
                Some(_) => {}
                None => {
                    // Waiting for a person the operator leaves alone.
                    let again = self.operator.pass(Some(&scope), &decide).await.unwrap();
                    if !again.acted() {
                        return instance.state;
                    }
                }
            }
        }
        panic!("onboarding {onboarding} did not come to rest");
    }

    /// Moves the clock just past `at`, a retry's due time as stored. (The
    /// engine keeps a retry's time to the nanosecond in memory and the
    /// store to the microsecond: the stored time itself can be a hair
    /// early for the copy the engine holds.)
    fn to_retry(&self, at: time::OffsetDateTime) {
        self.clock.set(at + time::Duration::milliseconds(1));
    }

    /// The approvals of `step` in `onboarding`, any state.
    async fn approvals_of(&self, onboarding: &str, step: &str) -> Vec<Value> {
        let (status, body) = self
            .call(&self.lead, Method::GET, "/api/v1/approvals?limit=100", None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["items"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|a| a["instance_id"] == onboarding && a["step_id"] == step)
            .cloned()
            .collect()
    }

    /// Appends every queued audit record, then verifies each log over the
    /// API; answers the logs verified.
    async fn verify_audit(&self) -> usize {
        self.sequencer.catch_up().await.unwrap();
        let (status, logs) = self
            .call(&self.admin, Method::GET, "/api/v1/audit/logs", None)
            .await;
        assert_eq!(status, StatusCode::OK, "{logs}");
        let logs = logs["logs"].as_array().unwrap().clone();
        assert!(!logs.is_empty());
        for log in &logs {
            let name = log["log"].as_str().unwrap();
            let (status, body) = self
                .call(
                    &self.admin,
                    Method::POST,
                    &format!("/api/v1/audit/logs/{name}/verify"),
                    None,
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{name}: {body}");
            assert_eq!(body["verified"], true, "{name}: {body}");
        }
        logs.len()
    }

    /// Audit entries with `action`, newest first.
    async fn audit(&self, action: &str) -> Vec<Value> {
        let (status, body) = self
            .call(
                &self.admin,
                Method::GET,
                &format!("/api/v1/audit/entries?action={action}&limit=100"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["entries"].as_array().unwrap().clone()
    }

    fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

fn dyn_clock(clock: &Arc<FakeClock>) -> Arc<dyn Clock> {
    clock.clone()
}

fn approve_all(_: &Value) -> Verdict {
    Verdict::Approve
}

fn statuses(deliveries: &[Delivery]) -> Vec<Option<u16>> {
    deliveries.iter().map(|d| d.status).collect()
}

/// A deal won in the PSA goes live with every approval given through the
/// API, and each sandbox system holds exactly what the onboarding made.
async fn a_won_deal_goes_live_with_exactly_the_expected_records(t: &E2e) -> TestResult {
    let deal = t.seed_deal("Tailspin Toys", "tailspintoys.com");
    let deliveries = t.win(&deal).await;
    assert_eq!(statuses(&deliveries), vec![Some(202)]);
    let ids = t.onboardings_of(&deal.name).await;
    assert_eq!(ids.len(), 1, "one onboarding: {ids:?}");
    let id = &ids[0];

    let state = t.drive(id, approve_all).await;
    let detail = t.operator.onboarding(id).await?;
    assert_eq!(state, InstanceState::Completed, "{detail}");
    assert_eq!(detail["stage"], "done", "{detail}");
    assert!(detail["go_live_at"].is_string(), "{detail}");
    assert_eq!(detail["blockers"], json!([]));
    assert_eq!(detail["steps_done"], detail["steps_total"]);

    // Every approval was given by the lead, with a reason, over the API.
    let (_, all) = t
        .call(&t.lead, Method::GET, "/api/v1/approvals?limit=100", None)
        .await;
    let mut per_step: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for a in all["items"].as_array().unwrap() {
        per_step
            .entry(a["step_id"].as_str().unwrap().to_owned())
            .or_default()
            .push(a["state"].as_str().unwrap().to_owned());
    }
    assert_eq!(per_step.len(), 11, "{per_step:?}");
    assert!(
        per_step.values().all(|states| states == &["approved"]),
        "one approval per step, none asked again: {per_step:?}"
    );
    let (_, steps) = t.instance(id).await;
    assert!(
        steps
            .iter()
            .all(|s| matches!(s.state, StepState::Succeeded)),
        "{steps:?}"
    );

    // NinjaOne: one organization with one location, an installer, a device.
    let s = &t.sandbox;
    let orgs = s.ninjaone.organizations();
    assert_eq!(orgs.len(), 1, "{orgs:?}");
    assert_eq!(orgs[0].name, deal.name);
    assert_eq!(orgs[0].locations.len(), 1, "{orgs:?}");
    let ninja = s.ninjaone.harness();
    assert_eq!(ninja.counted("organizations.created"), 1);
    assert_eq!(ninja.counted("locations.created"), 1);
    assert_eq!(ninja.counted("installers.generated"), 1);
    assert_eq!(ninja.counted("organizations.deleted"), 0);

    // Graph: one GDAP relationship of ours (active), the break-glass and
    // admin accounts in the client's tenant.
    let graph = s.graph.harness();
    assert_eq!(graph.counted("gdap.created"), 1);
    assert_eq!(graph.counted("gdap.deleted"), 0);
    let gdap = t.output(id, "gdap-request").await.unwrap();
    assert_eq!(
        s.graph.gdap_status(gdap["id"].as_str().unwrap()).as_deref(),
        Some("active")
    );
    let accounts = t.output(id, "admin-accounts").await.unwrap();
    let accounts = accounts["accounts"].as_array().unwrap().clone();
    assert_eq!(accounts.len(), 3, "2 break-glass + 1 admin: {accounts:?}");
    assert_eq!(graph.counted("users.created"), 3);
    for account in &accounts {
        let upn = account["upn"]
            .as_str()
            .or(account["user_principal_name"].as_str())
            .or(account["id"].as_str())
            .unwrap();
        assert!(
            s.graph.user(&deal.customer_tenant, upn).is_some(),
            "{account}"
        );
    }
    // The review found the previous provider's admin, and a person signed
    // off its removal.
    let review = t.output(id, "verify-previous-provider").await.unwrap();
    assert_eq!(
        review["unknown"].as_array().map(Vec::len),
        Some(1),
        "{review}"
    );
    assert!(t.output(id, "previous-provider-removed").await.is_some());

    // IT Glue: one organization.
    let docs = s.itglue.organizations();
    assert_eq!(docs.len(), 1, "{docs:?}");
    assert_eq!(docs[0].1, deal.name);
    assert_eq!(s.itglue.harness().counted("organizations.created"), 1);

    // ConnectWise: the company is Active under contract, the opportunity
    // marked onboarded; each updated once.
    let cw = s.connectwise.harness();
    let company = s.connectwise.company(deal.company).unwrap();
    assert_eq!(company["status"]["name"], "Active", "{company}");
    assert_eq!(cw.counted("companies.updated"), 1);
    assert_eq!(cw.counted("agreements.created"), 1);
    let agreements = s.connectwise.agreements();
    assert_eq!(agreements.len(), 1, "{agreements:?}");
    assert_eq!(agreements[0]["name"], "Managed services", "{agreements:?}");
    let opportunity = s.connectwise.opportunity(deal.opportunity).unwrap();
    assert_eq!(opportunity["status"]["name"], "Onboarded", "{opportunity}");
    assert_eq!(cw.counted("opportunities.updated"), 1);
    for (system, harness) in [
        ("ninjaone", ninja),
        ("graph", graph),
        ("itglue", s.itglue.harness()),
        ("connectwise", cw),
    ] {
        assert!(
            harness.counts().keys().all(|k| !k.ends_with(".deleted")),
            "{system} deleted nothing: {:?}",
            harness.counts()
        );
    }

    // The systems this MSP does not use hold nothing the onboarding made.
    for (system, harness) in [
        ("autotask", s.autotask.harness()),
        ("halopsa", s.halopsa.harness()),
        ("dattormm", s.dattormm.harness()),
        ("hudu", s.hudu.harness()),
        ("scim", s.scim.harness()),
    ] {
        assert_eq!(harness.counts(), BTreeMap::new(), "{system} was left alone");
    }

    // The documentation checklist: all 8 items received, none waived.
    let (status, items) = t
        .call(
            &t.lead,
            Method::GET,
            &format!("/api/v1/onboardings/{id}/items"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{items}");
    let items = items["items"].as_array().unwrap();
    assert_eq!(items.len(), 8, "{items:?}");
    assert!(items.iter().all(|i| i["state"] == "received"), "{items:?}");

    // The tenant is active; its SLA clock started; the log verifies.
    let tenant = detail["tenant"].as_str().unwrap();
    let (status, tenant) = t
        .call(
            &t.lead,
            Method::GET,
            &format!("/api/v1/tenants/{tenant}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{tenant}");
    assert_eq!(tenant["state"], "active", "{tenant}");
    let sla = t.output(id, "start-sla").await.unwrap();
    assert!(sla["started_at"].is_string(), "{sla}");
    assert!(t.verify_audit().await >= 2);

    // Every gated step has a latency in the history the driver reads.
    let timings = t.operator.step_timings(id).await?;
    assert!(
        timings
            .iter()
            .any(|s| s.step == "create-tenant" && s.gate == "approval")
    );
    assert!(
        timings
            .iter()
            .any(|s| s.step == "documentation-complete" && s.gate == "task")
    );
    Ok(())
}

/// A delivery with a bad signature is refused and starts nothing; the same
/// delivery twice starts one onboarding.
async fn bad_signatures_are_refused_and_duplicates_start_one_onboarding(t: &E2e) -> TestResult {
    let deal = t.seed_deal("Northwind Traders", "northwindtraders.com");
    let deliveries = t.win(&deal).await;
    assert_eq!(statuses(&deliveries), vec![Some(202)]);
    let delivery = &deliveries[0];

    // Resent as it is: deduplicated.
    let again = delivery.send().await;
    assert_eq!(
        again,
        Some(200),
        "a duplicate is answered 200, not accepted again"
    );
    t.settle().await;
    assert_eq!(t.onboardings_of(&deal.name).await.len(), 1);

    // Tampered: another client in the same signed envelope.
    let body =
        String::from_utf8(delivery.body.clone())?.replace("Northwind Traders", "Contoso Evil");
    let tampered = delivery.with_body(body);
    assert_eq!(tampered.send().await, Some(401));
    t.settle().await;
    assert!(t.onboardings_of("Contoso Evil").await.is_empty());
    let all = t.operator.onboardings().await?;
    assert_eq!(all.len(), 1, "{all:?}");

    // The intake recorded each attempt.
    let deliveries = t
        .app
        .list_hook_deliveries(&SYSTEM, &TenantRef::parse(MSP), None, None, None, 50)
        .await?;
    let mut outcomes: Vec<String> = deliveries
        .items
        .iter()
        .map(|d| d.outcome.to_string())
        .collect();
    outcomes.sort();
    assert_eq!(outcomes, ["accepted", "bad_signature", "duplicate"]);
    Ok(())
}

/// NinjaOne is down when the approved `rmm-organization` runs: the step
/// retries without a second approval, and completes once NinjaOne is back,
/// leaving exactly one organization.
async fn a_target_down_after_approval_is_retried_until_it_recovers(t: &E2e) -> TestResult {
    let deal = t.seed_deal("Fabrikam", "fabrikam.com");
    t.win(&deal).await;
    let id = t.onboardings_of(&deal.name).await.remove(0);
    let hold = |a: &Value| {
        if a["step_id"] == "rmm-organization" {
            Verdict::Skip
        } else {
            Verdict::Approve
        }
    };
    t.drive(&id, hold).await;
    let pending = t.approvals_of(&id, "rmm-organization").await;
    assert_eq!(pending.len(), 1, "{pending:?}");
    assert_eq!(pending[0]["state"], "pending");

    // Down, then approved: the re-check before execution fails; retried.
    let ninja = t.sandbox.ninjaone.harness();
    ninja.set_down(true);
    t.operator.approve(&pending[0]).await?;
    t.settle().await;
    let (instance, steps) = t.instance(&id).await;
    let step = steps
        .iter()
        .find(|s| s.step_id == "rmm-organization")
        .unwrap();
    assert_eq!(step.state, StepState::Retrying, "{step:?}");
    assert!(step.error.is_some(), "{step:?}");
    assert!(t.sandbox.ninjaone.organizations().is_empty());
    assert!(instance.next_run_at.is_some());

    // Still down at the next attempt: still retrying, nothing created.
    t.to_retry(instance.next_run_at.unwrap());
    t.settle().await;
    assert!(t.sandbox.ninjaone.organizations().is_empty());
    assert_eq!(ninja.counted("organizations.created"), 0);

    // Back up: the next attempt creates it; nobody approves it again.
    ninja.set_down(false);
    let state = t.drive(&id, approve_all).await;
    assert_eq!(state, InstanceState::Completed);
    assert_eq!(t.approvals_of(&id, "rmm-organization").await.len(), 1);
    let orgs = t.sandbox.ninjaone.organizations();
    assert_eq!(orgs.len(), 1, "{orgs:?}");
    assert_eq!(ninja.counted("organizations.created"), 1);
    let (_, steps) = t.instance(&id).await;
    let step = steps
        .iter()
        .find(|s| s.step_id == "rmm-organization")
        .unwrap();
    assert!(step.attempts >= 2, "{step:?}");
    Ok(())
}

/// A rejected step stops the onboarding (the template parks: nothing is
/// undone by itself); compensating it through the API then undoes what was
/// done, in reverse order, and the audit log shows who rejected it, why,
/// and each compensation.
async fn a_rejection_then_compensation_undoes_what_was_done(t: &E2e) -> TestResult {
    let deal = t.seed_deal("Wide World Importers", "wideworldimporters.com");
    t.win(&deal).await;
    let id = t.onboardings_of(&deal.name).await.remove(0);
    let hold = |a: &Value| {
        if a["step_id"] == "psa-company" {
            Verdict::Skip
        } else {
            Verdict::Approve
        }
    };
    t.drive(&id, hold).await;
    // Everything else in the access stage was done.
    for step in [
        "rmm-organization",
        "rmm-installer",
        "gdap-request",
        "admin-accounts",
        "docs-organization",
    ] {
        assert!(t.output(&id, step).await.is_some(), "{step} ran");
    }
    let s = &t.sandbox;
    assert_eq!(s.ninjaone.organizations().len(), 1);
    assert_eq!(s.itglue.organizations().len(), 1);
    let gdap = t.output(&id, "gdap-request").await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let tenant = t.operator.onboarding(&id).await?["tenant"]
        .as_str()
        .unwrap()
        .to_owned();

    // The lead rejects the PSA update, with a reason.
    let pending = t.approvals_of(&id, "psa-company").await;
    assert_eq!(pending.len(), 1);
    let reason = "the client has not signed the contract yet";
    t.operator.reject(&pending[0], reason).await?;
    t.settle().await;
    let (instance, _) = t.instance(&id).await;
    assert_eq!(
        instance.state,
        InstanceState::Cancelled,
        "park: a rejection stops it"
    );
    assert_eq!(
        s.ninjaone.organizations().len(),
        1,
        "nothing undone by itself"
    );

    // Compensate it through the API.
    let (status, body) = t
        .call(
            &t.lead,
            Method::POST,
            &format!("/api/v1/workflows/{id}/compensate"),
            Some(json!({"reason": "the deal fell through: undo the onboarding"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let state = t.drive(&id, approve_all).await;
    assert_eq!(state, InstanceState::Compensated);

    // Every sandbox record made earlier is gone; the GDAP relationship is
    // terminated; the tenant is offboarded and deleted.
    assert!(s.ninjaone.organizations().is_empty());
    assert_eq!(s.ninjaone.harness().counted("organizations.deleted"), 1);
    assert!(s.itglue.organizations().is_empty());
    assert_eq!(s.itglue.harness().counted("organizations.deleted"), 1);
    let status = s.graph.gdap_status(&gdap);
    assert!(
        matches!(
            status.as_deref(),
            Some("terminationRequested" | "terminated")
        ),
        "{status:?}"
    );
    assert_eq!(s.graph.harness().counted("users.deleted"), 3);
    assert_eq!(s.connectwise.harness().counted("companies.updated"), 0);
    let (status, body) = t
        .call(
            &t.admin,
            Method::GET,
            &format!("/api/v1/tenants/{tenant}"),
            None,
        )
        .await;
    // Found by id as a tombstone: deleted, its key destroyed.
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["state"], "deleted", "{body}");
    let (status, items) = t
        .call(
            &t.admin,
            Method::GET,
            &format!("/api/v1/onboardings/{id}/items"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{items}");
    // The board shows it undone, not gone live: only what succeeded (and
    // was not undone) counts; the steps never reached are not "done".
    let detail = t.operator.onboarding(&id).await?;
    assert_eq!(detail["stage"], "compensated", "{detail}");
    assert_eq!(detail["tenant"], Value::Null, "{detail}");
    assert!(detail["go_live_at"].is_null(), "{detail}");
    let stages = detail["stages"].as_array().unwrap();
    assert!(
        stages
            .iter()
            .filter(|s| s["id"] == "knowledge-transfer" || s["id"] == "go-live")
            .all(|s| s["done"] == 0 && s["status"] != "done"),
        "{detail}"
    );
    assert_eq!(
        items["items"],
        json!([]),
        "the checklist went with the tenant"
    );
    let (_, steps) = t.instance(&id).await;
    for step in [
        "create-tenant",
        "rmm-organization",
        "gdap-request",
        "admin-accounts",
        "docs-organization",
    ] {
        let run = steps.iter().find(|s| s.step_id == step).unwrap();
        assert_eq!(run.state, StepState::Compensated, "{run:?}");
    }

    // The audit log verifies. The onboarding belonged to the client's
    // tenant from `create-tenant` on, so the rejection is in the tenant's
    // log: who and when in clear, its details (the reason) shredded with
    // the tenant's key like the rest of its data. Undone, the workflow is
    // the installation's again: the last compensation is in the system log.
    t.verify_audit().await;
    let rejected = t.audit("workflow.approval.rejected").await;
    assert_eq!(rejected.len(), 1, "{rejected:?}");
    assert_eq!(rejected[0]["log"], tenant.as_str(), "{rejected:?}");
    let leaf = rejected[0]["leaf"].as_str().unwrap();
    assert!(!leaf.contains(reason), "{leaf}");
    assert!(leaf.contains("details_withheld"), "{leaf}");
    let lead = t.call(&t.lead, Method::GET, "/api/v1/me", None).await.1;
    assert_eq!(rejected[0]["actor"], lead["id"], "{rejected:?}");
    let adopted = t.audit("workflow.instance.tenant_adopted").await;
    assert_eq!(adopted.len(), 1, "{adopted:?}");
    assert_eq!(adopted[0]["log"], tenant.as_str(), "{adopted:?}");
    let released = t.audit("workflow.instance.tenant_released").await;
    assert_eq!(released.len(), 1, "{released:?}");
    assert_eq!(released[0]["log"], "system", "{released:?}");
    let compensated = t.audit("workflow.step.compensated").await;
    assert!(compensated.len() >= 5, "{compensated:?}");
    assert!(
        compensated.iter().any(|e| e["log"] == "system"),
        "{compensated:?}"
    );
    Ok(())
}

/// Once `create-tenant` has run, the onboarding is the client tenant's: a
/// lead scoped to that tenant sees it and decides its later approvals; a
/// second client's onboarding stays out of their sight.
async fn the_clients_scoped_lead_sees_and_approves_its_onboarding(t: &E2e) -> TestResult {
    let only_the_tenant = |a: &Value| {
        if a["step_id"] == "create-tenant" {
            Verdict::Approve
        } else {
            Verdict::Skip
        }
    };
    let deal = t.seed_deal("Tailspin Toys", "tailspintoys.com");
    t.win(&deal).await;
    let id = t.onboardings_of(&deal.name).await.remove(0);
    t.drive(&id, only_the_tenant).await;
    let other = t.seed_deal("Northwind Traders", "northwindtraders.com");
    t.win(&other).await;
    let other_id = t.onboardings_of(&other.name).await.remove(0);
    t.drive(&other_id, only_the_tenant).await;
    let tenant = t.operator.onboarding(&id).await?["tenant"]
        .as_str()
        .unwrap()
        .to_owned();

    // A lead dedicated to this client.
    let cam = t.new_operator("cam.client", "lead").await;
    let cam_id = t.call(&cam, Method::GET, "/api/v1/me", None).await.1["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = t
        .call(
            &t.admin,
            Method::PUT,
            &format!("/api/v1/operators/{cam_id}/scope"),
            Some(json!({"tenants": [tenant]})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");

    // They see this onboarding, not the other client's.
    let (status, list) = t.call(&cam, Method::GET, "/api/v1/onboardings", None).await;
    assert_eq!(status, StatusCode::OK, "{list}");
    let seen: Vec<&str> = list["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| o["id"].as_str().unwrap())
        .collect();
    assert_eq!(seen, [id.as_str()], "{list}");
    let (status, detail) = t
        .call(
            &cam,
            Method::GET,
            &format!("/api/v1/onboardings/{id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{detail}");
    let (status, _) = t
        .call(
            &cam,
            Method::GET,
            &format!("/api/v1/onboardings/{other_id}"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Its approvals after create-tenant are the tenant's: they see them
    // (and only them) and decide one.
    let (status, approvals) = t
        .call(&cam, Method::GET, "/api/v1/approvals?limit=100", None)
        .await;
    assert_eq!(status, StatusCode::OK, "{approvals}");
    let approvals = approvals["items"].as_array().unwrap();
    assert!(!approvals.is_empty());
    assert!(
        approvals
            .iter()
            .all(|a| a["tenant_id"] == tenant.as_str() && a["instance_id"] == id.as_str()),
        "{approvals:?}"
    );
    assert!(
        approvals.iter().all(|a| a["step_id"] != "create-tenant"),
        "decided while the onboarding was the installation's: {approvals:?}"
    );
    let pending = approvals
        .iter()
        .find(|a| a["state"] == "pending")
        .expect("a pending approval");
    let (status, body) = t
        .call(
            &cam,
            Method::POST,
            &format!(
                "/api/v1/approvals/{}/approve",
                pending["id"].as_str().unwrap()
            ),
            Some(json!({"reason": "checked with the client"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["state"], "approved", "{body}");
    Ok(())
}

macro_rules! e2e_tests {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() -> super::TestResult {
                    let db = super::TestDatabase::sqlite().await?;
                    let mut t = super::E2e::spawn(&db).await?;
                    let result = super::$case(&t).await;
                    t.stop();
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
                    let mut t = super::E2e::spawn(&db).await?;
                    let result = super::$case(&t).await;
                    t.stop();
                    db.cleanup().await;
                    result
                }
            )*
        }
    };
}

e2e_tests!(
    a_won_deal_goes_live_with_exactly_the_expected_records,
    bad_signatures_are_refused_and_duplicates_start_one_onboarding,
    a_target_down_after_approval_is_retried_until_it_recovers,
    a_rejection_then_compensation_undoes_what_was_done,
    the_clients_scoped_lead_sees_and_approves_its_onboarding,
);
