//! Identity lifecycle end to end, on SQLite and (with
//! `GATEHOUSE_TEST_DATABASE_URL`) PostgreSQL: lifecycle events through the
//! HTTP API, the tenant's policy, and provisioning through the built-in
//! `identity-*` workflows into real sandbox systems over HTTP — two SCIM
//! applications (`crm`, `erp`) and Microsoft 365 through Graph (`m365`).
//! The engine's worker does not run: the test ticks it and moves its fake
//! clock, so nothing waits on wall-clock time.

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
use gatehouse_connectors::webhook::{
    GENERIC_SIGNATURE, GENERIC_TIMESTAMP, HttpKeyFetcher, sign_generic,
};
use gatehouse_core::clock::{Clock, FakeClock};
use gatehouse_core::connector::{ConnectorKind, ConnectorName, ConnectorSpec};
use gatehouse_core::secret::SecretName;
use gatehouse_core::tenant::{DisplayName, Region, TenantSlug, TenantState};
use gatehouse_engine::action::ActionRegistry;
use gatehouse_engine::runtime::{Engine, EngineConfig};
use gatehouse_engine::template::{TemplateSet, builtin_actions};
use gatehouse_sandbox::graph::GroupKind;
use gatehouse_sandbox::{GraphEmulator, ScimAppEmulator};
use gatehouse_server::actions::{Directory, VendorFactory};
use gatehouse_server::app::hooks::{HR_SECRET, Intake, IntakeConfig};
use gatehouse_server::app::{Actor, App, NewTenant, TenantRef};
use gatehouse_server::http::{ApiState, HttpConfig};
use gatehouse_server::identity::{IdentityConfig, IdentityCore};
use gatehouse_server::metrics::Metrics;
use gatehouse_store::testing::TestDatabase;
use gatehouse_vault::{Keyring, LocalKeyFile};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const SYSTEM: Actor = Actor::System("identity test");
const CLIENT: &str = "contoso";
const OTHER: &str = "fabrikam";
const SCIM_TOKEN: &str = "scim-app-token-never-logged";
const PARTNER: &str = "11111111-0000-4000-8000-000000000001";
const CONTOSO_M365: &str = "22222222-0000-4000-8000-000000000002";
const APP_ID: &str = "33333333-0000-4000-8000-000000000003";
const APP_SECRET: &str = "graph-app-secret-never-logged";
const DEADLINE: Duration = Duration::from_secs(600);

/// Gatehouse with identity wired as `serve` wires it, and the sandbox.
struct Id {
    base: String,
    http: reqwest::Client,
    app: Arc<App>,
    clock: Arc<FakeClock>,
    crm: ScimAppEmulator,
    erp: ScimAppEmulator,
    graph: GraphEmulator,
    /// The Graph group "All staff" (groups are ids on Graph).
    staff_group: String,
    admin: String,
    lead: String,
    lead2: String,
    tech: String,
    shutdown: Option<tokio::sync::oneshot::Sender<()>>,
    _dir: tempfile::TempDir,
}

fn policy(staff_group: &str) -> String {
    format!(
        r#"
[[role]]
id = "staff"
title = "Every employee"
when = 'kind eq "client_user"'
grants = [
  {{ system = "crm", group = "All staff" }},
  {{ system = "m365", group = "{staff_group}" }},
]

[[role]]
id = "sales"
when = 'department eq "Sales"'
grants = [{{ system = "crm", group = "Sales" }}]

[[role]]
id = "finance-approver"
sensitive = true
grants = [{{ system = "erp", role = "approver" }}]

[[elevation]]
id = "erp-admin"
title = "ERP administrator"
system = "erp"
role = "admin"
max_duration = "4h"
"#
    )
}

impl Id {
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
        let directory = Arc::new(Directory::new(
            store.clone(),
            keyring.clone(),
            dyn_clock.clone(),
            Arc::new(VendorFactory {
                clock: dyn_clock.clone(),
            }),
            TenantSlug::msp(),
        ));
        let core = Arc::new(IdentityCore::new(
            store.clone(),
            keyring.clone(),
            dyn_clock.clone(),
            directory,
            IdentityConfig {
                revocation_deadline: DEADLINE,
            },
        ));
        let mut actions = ActionRegistry::new();
        gatehouse_server::identity::actions::register(&mut actions, &core);
        let engine = Arc::new(Engine::new(
            store.clone(),
            Arc::new(TemplateSet::builtin(&builtin_actions())?),
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
        let app = Arc::new(
            App::new(store.clone(), keyring.clone(), dyn_clock, engine)
                .with_audit_signer(Arc::new(signer))
                .with_identity(core),
        );
        let (_, admin) = app
            .bootstrap()
            .await?
            .ok_or("a fresh database bootstraps")?;

        let crm = ScimAppEmulator::start(SCIM_TOKEN).await?;
        let erp = ScimAppEmulator::start(SCIM_TOKEN).await?;
        let graph = GraphEmulator::start().await?;
        graph.add_partner_tenant(PARTNER, "The MSP");
        graph.add_tenant(CONTOSO_M365, "Contoso");
        assert!(graph.add_domain(CONTOSO_M365, "contoso.example"));
        for tenant in [PARTNER, CONTOSO_M365] {
            assert!(graph.consent_app(tenant, APP_ID, APP_SECRET));
        }
        let staff_group = graph
            .add_group(CONTOSO_M365, "All staff", GroupKind::Security)
            .ok_or("the group is created")?;

        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
        let base = format!("http://{}", listener.local_addr()?);
        let intake = Arc::new(Intake::new(
            app.clone(),
            IntakeConfig::new(Region::parse("eu")?),
            Arc::new(HttpKeyFetcher::new(Duration::from_secs(5))?),
        ));
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
        let mut t = Self {
            base,
            http: reqwest::Client::new(),
            app,
            clock,
            crm,
            erp,
            graph,
            staff_group,
            admin: admin.expose().to_owned(),
            lead: String::new(),
            lead2: String::new(),
            tech: String::new(),
            shutdown: Some(tx),
            _dir: dir,
        };
        t.lead = t.new_operator("lea.lead", "lead").await;
        t.lead2 = t.new_operator("lou.lead", "lead").await;
        t.tech = t.new_operator("tim.tech", "technician").await;
        t.wire_client().await?;
        Ok(t)
    }

    fn stop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
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

    /// A connector of the client tenant with one credential `(role, secret)`.
    async fn connector(
        &self,
        name: &str,
        kind: ConnectorKind,
        base_url: String,
        settings: Value,
        (role, secret): (&str, &str),
    ) -> TestResult {
        let t = TenantRef::parse(CLIENT);
        let secret_name = SecretName::parse(&format!("{name}.{role}"))?;
        self.app
            .put_secret(&SYSTEM, &t, &secret_name, secret.as_bytes())
            .await?;
        let spec = ConnectorSpec {
            kind,
            base_url,
            settings,
            secrets: BTreeMap::from([(role.to_owned(), secret_name)]),
        };
        self.app
            .set_connector(&SYSTEM, &t, &ConnectorName::parse(name)?, spec)
            .await?;
        Ok(())
    }

    /// The client tenant with its three systems, and its policy.
    async fn wire_client(&self) -> TestResult {
        self.tenant(CLIENT).await?;
        self.tenant(OTHER).await?;
        self.connector(
            "crm",
            ConnectorKind::Scim,
            self.crm.scim_url(),
            json!({}),
            ("token", SCIM_TOKEN),
        )
        .await?;
        self.connector(
            "erp",
            ConnectorKind::Scim,
            self.erp.scim_url(),
            json!({}),
            ("token", SCIM_TOKEN),
        )
        .await?;
        self.connector(
            "m365",
            ConnectorKind::Graph,
            self.graph.url(),
            json!({"login_base": self.graph.url(), "partner_tenant_id": PARTNER, "client_id": APP_ID, "customer_tenant_id": CONTOSO_M365}),
            ("client_secret", APP_SECRET),
        )
        .await?;
        let (status, body) = self
            .call(
                &self.lead,
                Method::PUT,
                &format!("/api/v1/tenants/{CLIENT}/access-policy"),
                Some(json!({"text": policy(&self.staff_group), "version": 0})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
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

    /// Sends a lifecycle event as `token`.
    async fn event(&self, token: &str, body: Value) -> Value {
        let (status, answer) = self
            .call(
                token,
                Method::POST,
                &format!("/api/v1/tenants/{CLIENT}/people/events"),
                Some(body),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{answer}");
        answer
    }

    /// Runs the engine until it has nothing due now.
    async fn settle(&self) {
        for _ in 0..200 {
            if self.app.engine.tick().await.unwrap() == 0 {
                return;
            }
        }
        panic!("the engine keeps finding work");
    }

    /// Moves the clock by `by` and settles.
    async fn later(&self, by: Duration) {
        self.clock.advance(time::Duration::seconds(
            i64::try_from(by.as_secs()).unwrap(),
        ));
        self.settle().await;
    }

    /// Every workflow instance with its steps' states and errors, for
    /// failure messages.
    async fn workflows(&self) -> String {
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
        let mut out = Vec::new();
        for instance in all {
            let (_, steps) = self.app.store.get_instance(instance.id).await.unwrap();
            let steps: Vec<String> = steps
                .iter()
                .map(|s| format!("{} {:?} {:?}", s.step_id, s.state, s.error))
                .collect();
            out.push(format!(
                "{} {:?} {steps:?}",
                instance.template, instance.state
            ));
        }
        out.join("\n")
    }

    fn scim_user(emu: &ScimAppEmulator, user_name: &str) -> Value {
        emu.user_by_name(user_name).unwrap_or(Value::Null)
    }

    /// The display names of the groups of a SCIM user.
    fn scim_groups(emu: &ScimAppEmulator, user_name: &str) -> BTreeSet<String> {
        let Some(user) = emu.user_by_name(user_name) else {
            return BTreeSet::new();
        };
        let id = user["id"].as_str().unwrap_or_default().to_owned();
        emu.groups()
            .iter()
            .filter(|g| {
                g["members"]
                    .as_array()
                    .is_some_and(|m| m.iter().any(|m| m["value"] == id.as_str()))
            })
            .map(|g| g["displayName"].as_str().unwrap_or_default().to_owned())
            .collect()
    }

    fn scim_roles(emu: &ScimAppEmulator, user_name: &str) -> BTreeSet<String> {
        Self::scim_user(emu, user_name)["roles"]
            .as_array()
            .map(|r| {
                r.iter()
                    .filter_map(|r| r["value"].as_str().map(str::to_owned))
                    .collect()
            })
            .unwrap_or_default()
    }

    async fn pending_approvals(&self) -> Vec<Value> {
        let (status, body) = self
            .call(
                &self.admin,
                Method::GET,
                "/api/v1/approvals?state=pending",
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["items"].as_array().cloned().unwrap_or_default()
    }

    async fn approve(&self, token: &str, approval: &str) -> (StatusCode, Value) {
        self.call(
            token,
            Method::POST,
            &format!("/api/v1/approvals/{approval}/approve"),
            Some(json!({"reason": "checked the plan"})),
        )
        .await
    }

    async fn revocations(&self) -> Vec<Value> {
        let (status, body) = self
            .call(
                &self.admin,
                Method::GET,
                &format!("/api/v1/tenants/{CLIENT}/revocations"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body["items"].as_array().cloned().unwrap_or_default()
    }

    async fn hire_ada(&self) -> Value {
        self.event(
            &self.lead,
            json!({
                "id": "hr-1", "person": "E100", "kind": "hire",
                "attributes": {"given_name": "Ada", "family_name": "Lovelace", "user_name": "ada@contoso.example",
                               "email": "ada@contoso.example", "department": "Sales"},
                "roles": ["finance-approver"]
            }),
        )
        .await
    }
}

const ADA: &str = "ada@contoso.example";

async fn a_joiner_gets_standard_access_and_waits_for_approval_of_the_sensitive(
    t: &Id,
) -> TestResult {
    let hired = t.hire_ada().await;
    assert_eq!(hired["status"], "active");
    assert!(hired["person"].as_str().unwrap().starts_with("per_"));
    t.settle().await;

    // Standard access (L1) ran at once on every system.
    let crm = Id::scim_user(&t.crm, ADA);
    assert_eq!(crm["active"], true, "{crm}");
    assert_eq!(crm["externalId"], hired["person"]);
    assert_eq!(
        Id::scim_groups(&t.crm, ADA),
        BTreeSet::from(["All staff".to_owned(), "Sales".to_owned()])
    );
    let Some(m365) = t.graph.user(CONTOSO_M365, ADA) else {
        panic!("no Microsoft 365 user: {}", t.workflows().await);
    };
    let m365_id = m365["id"].as_str().unwrap().to_owned();
    assert_eq!(
        t.graph.group_members(CONTOSO_M365, &t.staff_group),
        vec![m365_id]
    );
    // The ERP account is standard; its sensitive role waits for a person.
    assert_eq!(Id::scim_user(&t.erp, ADA)["active"], true);
    assert!(Id::scim_roles(&t.erp, ADA).is_empty());
    let pending = t.pending_approvals().await;
    assert_eq!(pending.len(), 1, "{pending:?}");
    let approval = pending[0]["id"].as_str().unwrap();
    let diff = pending[0]["plan"].to_string();
    assert!(
        diff.contains("approver"),
        "the approval shows the plan: {diff}"
    );

    // Whoever sent the event cannot approve what it asks for.
    let (status, body) = t.approve(&t.lead, approval).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(body.to_string().contains("separation of duties"), "{body}");
    let (status, body) = t.approve(&t.lead2, approval).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    t.settle().await;
    assert_eq!(
        Id::scim_roles(&t.erp, ADA),
        BTreeSet::from(["approver".to_owned()])
    );

    // Sending the same event again changes nothing.
    let again = t.hire_ada().await;
    assert_eq!(again["duplicate"], true);
    t.settle().await;
    assert_eq!(t.crm.harness().counted("users.created"), 1);
    assert!(t.pending_approvals().await.is_empty());
    Ok(())
}

async fn a_mover_loses_what_the_new_role_does_not_justify(t: &Id) -> TestResult {
    t.hire_ada().await;
    t.settle().await;
    let moved = t
        .event(&t.lead, json!({"id": "hr-2", "person": "E100", "kind": "transfer", "attributes": {"department": "Finance"}}))
        .await;
    assert_eq!(moved["status"], "active");
    t.settle().await;
    assert_eq!(
        Id::scim_groups(&t.crm, ADA),
        BTreeSet::from(["All staff".to_owned()])
    );
    // Lineage: the department came from the transfer.
    let (status, person) = t
        .call(
            &t.tech,
            Method::GET,
            &format!("/api/v1/tenants/{CLIENT}/people/E100"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{person}");
    assert_eq!(person["attributes"]["department"], "Finance");
    assert_eq!(person["lineage"]["department"]["event"], "hr-2");
    assert_eq!(person["lineage"]["given_name"]["event"], "hr-1");
    assert!(person["desired"]["crm"].is_object(), "{person}");
    Ok(())
}

async fn a_leaver_loses_everything_everywhere_and_gets_a_completion_record(t: &Id) -> TestResult {
    t.hire_ada().await;
    t.settle().await;
    let approval = t.pending_approvals().await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let (status, body) = t.approve(&t.lead2, &approval).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    t.settle().await;
    assert_eq!(
        Id::scim_roles(&t.erp, ADA).len(),
        1,
        "{}",
        t.workflows().await
    );

    let left = t
        .event(
            &t.lead,
            json!({"id": "hr-3", "person": "E100", "kind": "terminate"}),
        )
        .await;
    assert_eq!(left["status"], "terminated");
    t.settle().await;
    for emu in [&t.crm, &t.erp] {
        assert_eq!(Id::scim_user(emu, ADA)["active"], false);
        assert!(Id::scim_groups(emu, ADA).is_empty());
        assert!(Id::scim_roles(emu, ADA).is_empty());
    }
    let m365 = t.graph.user(CONTOSO_M365, ADA).unwrap();
    assert_eq!(m365["accountEnabled"], false, "{m365}");
    assert!(
        t.graph
            .group_members(CONTOSO_M365, &t.staff_group)
            .is_empty()
    );
    assert!(t.graph.harness().counted("users.sessions_revoked") >= 1);

    let revocations = t.revocations().await;
    assert_eq!(revocations.len(), 1, "{revocations:?}");
    assert_eq!(revocations[0]["person"], "E100");
    assert!(
        revocations[0]["completed_at"].is_string(),
        "{revocations:?}"
    );
    assert!(revocations[0]["remaining"].as_array().unwrap().is_empty());
    Ok(())
}

async fn a_revocation_is_retried_while_a_system_is_down_and_escalated_past_its_deadline(
    t: &Id,
) -> TestResult {
    t.hire_ada().await;
    t.settle().await;
    t.crm.harness().set_down(true);
    t.event(
        &t.lead,
        json!({"id": "hr-9", "person": "E100", "kind": "terminate"}),
    )
    .await;
    t.settle().await;
    // Everything else is revoked; the CRM remains and is named.
    assert_eq!(Id::scim_user(&t.erp, ADA)["active"], false);
    assert_eq!(
        t.graph.user(CONTOSO_M365, ADA).unwrap()["accountEnabled"],
        false
    );
    let r = &t.revocations().await[0];
    assert!(r["completed_at"].is_null(), "{r}");
    let remaining = r["remaining"].as_array().unwrap();
    assert!(
        !remaining.is_empty() && remaining.iter().all(|x| x["system"] == "crm"),
        "{r}"
    );
    assert!(r["escalated_at"].is_null());

    // Past the deadline: escalated once, with what remains; retries go on.
    for _ in 0..12 {
        t.later(Duration::from_secs(120)).await;
    }
    let r = &t.revocations().await[0];
    assert!(r["escalated_at"].is_string(), "{r}");
    assert!(r["completed_at"].is_null());
    let notifications = t
        .app
        .store
        .list_notifications(&gatehouse_core::store::NotificationQuery {
            limit: 500,
            ..Default::default()
        })
        .await?;
    let escalations: Vec<_> = notifications
        .iter()
        .filter(|n| n.kind == "identity.revocation.escalated")
        .collect();
    assert_eq!(escalations.len(), 1, "{notifications:?}");
    assert!(escalations[0].detail.to_string().contains("crm"));

    // The CRM comes back: the next retry completes the revocation.
    t.crm.harness().set_down(false);
    for _ in 0..4 {
        t.later(Duration::from_secs(300)).await;
    }
    assert_eq!(Id::scim_user(&t.crm, ADA)["active"], false);
    assert!(Id::scim_groups(&t.crm, ADA).is_empty());
    let r = &t.revocations().await[0];
    assert!(r["completed_at"].is_string(), "{r}");
    Ok(())
}

async fn just_in_time_access_is_approved_by_someone_else_and_expires(t: &Id) -> TestResult {
    t.event(&t.lead, json!({"id": "hr-1", "person": "E200", "kind": "hire", "attributes": {"user_name": "bob@contoso.example"}}))
        .await;
    t.settle().await;
    let path = format!("/api/v1/tenants/{CLIENT}/elevations");
    // Beyond the maximum, or without a real justification: refused.
    let (status, _) = t
        .call(&t.tech, Method::POST, &path, Some(json!({"person": "E200", "elevation": "erp-admin", "duration": "5h", "justification": "month-end close needs it"})))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, _) = t
        .call(&t.tech, Method::POST, &path, Some(json!({"person": "E200", "elevation": "erp-admin", "duration": "1h", "justification": "x"})))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, body) = t
        .call(&t.tech, Method::POST, &path, Some(json!({"person": "E200", "elevation": "erp-admin", "duration": "1h", "justification": "month-end close needs the admin role"})))
        .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    t.settle().await;
    assert!(
        Id::scim_roles(&t.erp, "bob@contoso.example").is_empty(),
        "nothing before approval"
    );
    let pending = t.pending_approvals().await;
    assert_eq!(pending.len(), 1);
    let approval = pending[0]["id"].as_str().unwrap();
    // The requester cannot approve (and a technician may not anyway); a lead can.
    let (status, _) = t.approve(&t.tech, approval).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = t.approve(&t.lead, approval).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    t.settle().await;
    assert_eq!(
        Id::scim_roles(&t.erp, "bob@contoso.example"),
        BTreeSet::from(["admin".to_owned()])
    );

    // Not yet expired: still there. Past expiry: the timer revokes it.
    t.later(Duration::from_secs(1800)).await;
    assert_eq!(Id::scim_roles(&t.erp, "bob@contoso.example").len(), 1);
    t.later(Duration::from_secs(1801)).await;
    assert!(Id::scim_roles(&t.erp, "bob@contoso.example").is_empty());
    let (_, list) = t.call(&t.tech, Method::GET, &path, None).await;
    assert_eq!(list["items"][0]["state"], "ended", "{list}");
    assert_eq!(list["items"][0]["ended_by"], "expiry");
    Ok(())
}

async fn an_elevation_can_end_early(t: &Id) -> TestResult {
    t.event(&t.lead, json!({"id": "hr-1", "person": "E200", "kind": "hire", "attributes": {"user_name": "bob@contoso.example"}}))
        .await;
    t.settle().await;
    let path = format!("/api/v1/tenants/{CLIENT}/elevations");
    let (_, body) = t
        .call(&t.tech, Method::POST, &path, Some(json!({"person": "E200", "elevation": "erp-admin", "duration": "4h", "justification": "incident 4711 needs the admin role"})))
        .await;
    let id = body["id"].as_str().unwrap().to_owned();
    t.settle().await;
    let approval = t.pending_approvals().await[0]["id"]
        .as_str()
        .unwrap()
        .to_owned();
    t.approve(&t.lead, &approval).await;
    t.settle().await;
    assert_eq!(Id::scim_roles(&t.erp, "bob@contoso.example").len(), 1);
    let (status, body) = t
        .call(&t.lead, Method::POST, &format!("{path}/{id}/revoke"), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    t.settle().await;
    assert!(Id::scim_roles(&t.erp, "bob@contoso.example").is_empty());
    // The timer firing later changes nothing.
    t.later(Duration::from_secs(5 * 3600)).await;
    assert!(Id::scim_roles(&t.erp, "bob@contoso.example").is_empty());
    Ok(())
}

async fn drift_reports_orphans_unapproved_grants_and_remediates_the_grants(t: &Id) -> TestResult {
    t.hire_ada().await;
    t.settle().await;
    // Someone adds Ada to a group by hand, and an account nobody knows appears.
    let ada_id = Id::scim_user(&t.crm, ADA)["id"]
        .as_str()
        .unwrap()
        .to_owned();
    t.crm
        .seed_group(&json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Domain admins", "members": [{"value": ada_id}]}))
        .unwrap();
    t.crm
        .seed_user(&json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "mallory@contoso.example", "active": true}))
        .unwrap();
    let (status, body) = t
        .call(
            &t.tech,
            Method::GET,
            &format!("/api/v1/tenants/{CLIENT}/drift"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let items = body["items"].as_array().unwrap();
    let kinds: BTreeSet<&str> = items.iter().filter_map(|i| i["kind"].as_str()).collect();
    assert_eq!(kinds, BTreeSet::from(["orphan", "unapproved"]), "{body}");
    assert!(body.to_string().contains("Domain admins"));
    assert!(body.to_string().contains("mallory@contoso.example"));

    // A technician may look but not remediate; a lead remediates.
    let (status, _) = t
        .call(
            &t.tech,
            Method::POST,
            &format!("/api/v1/tenants/{CLIENT}/drift/remediate"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = t
        .call(
            &t.lead,
            Method::POST,
            &format!("/api/v1/tenants/{CLIENT}/drift/remediate"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    t.settle().await;
    assert!(!Id::scim_groups(&t.crm, ADA).contains("Domain admins"));
    // The orphan is reported, never removed automatically.
    assert_eq!(
        Id::scim_user(&t.crm, "mallory@contoso.example")["active"],
        true
    );
    Ok(())
}

async fn a_csv_import_applies_good_rows_and_reports_bad_ones(t: &Id) -> TestResult {
    let csv = "person,event,given_name,family_name,user_name,department,contract_end\n\
               E1,hire,Ann,Archer,ann@contoso.example,Sales,\n\
               E2,hire,Ben,Baker,ben@contoso.example,Finance,2026-13-01\n\
               E3,promote,Cy,Cole,cy@contoso.example,Sales,\n\
               E4,terminate,,,,,\n\
               E5,hire,Di,Dunn,di@contoso.example,Sales,2027-01-31\n";
    let response = t
        .http
        .post(format!("{}/api/v1/tenants/{CLIENT}/people/import", t.base))
        .bearer_auth(&t.lead)
        .header("content-type", "text/csv")
        .body(csv)
        .send()
        .await?;
    assert_eq!(response.status(), StatusCode::OK);
    let report: Value = response.json().await?;
    assert_eq!(report["rows"], 5, "{report}");
    assert_eq!(report["applied"], 2, "{report}");
    let lines: Vec<u64> = report["errors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["line"].as_u64().unwrap())
        .collect();
    assert_eq!(lines, [3, 4, 5], "{report}");
    assert!(
        report["errors"][2]["message"]
            .as_str()
            .unwrap()
            .contains("first event must be a hire"),
        "{report}"
    );
    t.settle().await;
    assert_eq!(
        Id::scim_groups(&t.crm, "ann@contoso.example"),
        BTreeSet::from(["All staff".to_owned(), "Sales".to_owned()])
    );
    // The same file again: nothing new.
    let report: Value = t
        .http
        .post(format!("{}/api/v1/tenants/{CLIENT}/people/import", t.base))
        .bearer_auth(&t.lead)
        .body(csv)
        .send()
        .await?
        .json()
        .await?;
    assert_eq!(report["applied"], 0, "{report}");
    assert_eq!(report["duplicates"], 2, "{report}");
    Ok(())
}

async fn a_policy_change_shows_its_impact_first(t: &Id) -> TestResult {
    t.hire_ada().await;
    t.event(&t.lead, json!({"id": "hr-5", "person": "E300", "kind": "hire", "attributes": {"user_name": "cy@contoso.example", "department": "Finance"}}))
        .await;
    t.settle().await;
    let new_policy =
        policy(&t.staff_group).replace(r#"department eq "Sales""#, r#"department eq "Finance""#);
    let (status, body) = t
        .call(
            &t.tech,
            Method::POST,
            &format!("/api/v1/tenants/{CLIENT}/access-policy/preview"),
            Some(json!({"text": new_policy})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let impact = body["impact"].as_array().unwrap();
    assert_eq!(impact.len(), 2, "{body}");
    let text = body.to_string();
    assert!(text.contains(r#"crm: group \"Sales\""#), "{text}");
    // Nothing changed yet.
    assert!(Id::scim_groups(&t.crm, ADA).contains("Sales"));
    // A technician cannot set it; a stale version is refused; then it applies.
    let put = format!("/api/v1/tenants/{CLIENT}/access-policy");
    let (status, _) = t
        .call(
            &t.tech,
            Method::PUT,
            &put,
            Some(json!({"text": new_policy, "version": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = t
        .call(
            &t.lead,
            Method::PUT,
            &put,
            Some(json!({"text": new_policy, "version": 0})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let (status, body) = t
        .call(
            &t.lead,
            Method::PUT,
            &put,
            Some(json!({"text": new_policy, "version": 1})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["version"], 2);
    t.settle().await;
    assert!(!Id::scim_groups(&t.crm, ADA).contains("Sales"));
    assert!(Id::scim_groups(&t.crm, "cy@contoso.example").contains("Sales"));
    // A broken policy is refused with where and why.
    let (status, body) = t
        .call(
            &t.lead,
            Method::PUT,
            &put,
            Some(json!({"text": "[[role]]\nid = \"x\"\ngrants = []", "version": 2})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body.to_string().contains("must grant"), "{body}");
    Ok(())
}

async fn strangers_and_other_tenants_see_nothing(t: &Id) -> TestResult {
    t.hire_ada().await;
    let people = format!("/api/v1/tenants/{CLIENT}/people");
    let response = t.http.get(format!("{}{people}", t.base)).send().await?;
    assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
    let (status, _) = t.call("gh_not-a-token", Method::GET, &people, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    // A technician reads but cannot send events.
    let (status, _) = t
        .call(
            &t.tech,
            Method::POST,
            &format!("{people}/events"),
            Some(json!({"id": "x", "person": "E9", "kind": "hire"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // The person does not exist in another tenant.
    let (status, _) = t
        .call(
            &t.admin,
            Method::GET,
            &format!("/api/v1/tenants/{OTHER}/people/E100"),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (_, list) = t
        .call(
            &t.admin,
            Method::GET,
            &format!("/api/v1/tenants/{OTHER}/people"),
            None,
        )
        .await;
    assert_eq!(list["items"], json!([]));
    // Bad input is named.
    let (status, body) = t
        .call(&t.lead, Method::POST, &format!("{people}/events"), Some(json!({"id": "x", "person": "E9", "kind": "hire", "attributes": {"shoe_size": "9"}})))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert!(body.to_string().contains("shoe_size"), "{body}");
    let (status, body) = t
        .call(
            &t.lead,
            Method::POST,
            &format!("{people}/events"),
            Some(json!({"id": "y", "person": "E9", "kind": "terminate"})),
        )
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    Ok(())
}

async fn a_contract_end_date_terminates_and_revokes(t: &Id) -> TestResult {
    let today = gatehouse_server::identity::service::date_of(t.clock.now());
    t.event(&t.lead, json!({"id": "hr-7", "person": "C1", "kind": "hire", "person_kind": "contractor",
                            "attributes": {"user_name": "cora@contoso.example", "contract_end": today}, "roles": ["sales"]}))
        .await;
    t.settle().await;
    assert_eq!(
        Id::scim_user(&t.crm, "cora@contoso.example")["active"],
        true
    );
    // Not yet: the end date is today.
    assert_eq!(t.app.identity.end_contracts(&today).await?, 0);
    let tomorrow =
        gatehouse_server::identity::service::date_of(t.clock.now() + time::Duration::days(1));
    assert_eq!(t.app.identity.end_contracts(&tomorrow).await?, 1);
    assert_eq!(
        t.app.identity.end_contracts(&tomorrow).await?,
        0,
        "a second sweep adds nothing"
    );
    t.settle().await;
    assert_eq!(
        Id::scim_user(&t.crm, "cora@contoso.example")["active"],
        false
    );
    assert!(Id::scim_groups(&t.crm, "cora@contoso.example").is_empty());
    let (_, person) = t
        .call(
            &t.admin,
            Method::GET,
            &format!("/api/v1/tenants/{CLIENT}/people/C1"),
            None,
        )
        .await;
    assert_eq!(person["status"], "terminated");
    Ok(())
}

async fn late_events_are_replayed_in_order(t: &Id) -> TestResult {
    // The termination arrives before the transfer that happened earlier.
    t.event(&t.lead, json!({"id": "a", "person": "E400", "kind": "hire", "occurred_at": "2026-01-01T09:00:00Z",
                            "attributes": {"user_name": "dee@contoso.example", "department": "Sales"}}))
        .await;
    t.event(&t.lead, json!({"id": "c", "person": "E400", "kind": "terminate", "occurred_at": "2026-03-01T09:00:00Z"})).await;
    let late = t
        .event(&t.lead, json!({"id": "b", "person": "E400", "kind": "update", "occurred_at": "2026-02-01T09:00:00Z",
                               "attributes": {"department": "Finance"}}))
        .await;
    assert_eq!(
        late["status"], "terminated",
        "a late transfer does not undo the termination: {late}"
    );
    let (_, person) = t
        .call(
            &t.admin,
            Method::GET,
            &format!("/api/v1/tenants/{CLIENT}/people/E400"),
            None,
        )
        .await;
    assert_eq!(person["attributes"]["department"], "Finance");
    assert_eq!(person["last_event"], "c");
    assert_eq!(person["events"], 3);
    Ok(())
}

async fn an_hr_system_sends_signed_lifecycle_events(t: &Id) -> TestResult {
    let secret = b"hr-webhook-secret-never-logged";
    t.app
        .put_secret(
            &SYSTEM,
            &TenantRef::parse(CLIENT),
            &SecretName::parse(HR_SECRET)?,
            secret,
        )
        .await?;
    let url = format!("{}/hooks/hr/{CLIENT}", t.base);
    let send = |body: Vec<u8>, signature: Option<String>| {
        let now = t.clock.now().unix_timestamp();
        let mut request = t
            .http
            .post(&url)
            .header(GENERIC_TIMESTAMP, now.to_string())
            .body(body.clone());
        request = request.header(
            GENERIC_SIGNATURE,
            signature.unwrap_or_else(|| sign_generic(secret, now, &body)),
        );
        request.send()
    };
    let batch = serde_json::to_vec(&json!([
        {"id": "bamboo-1", "person": "E500", "kind": "hire", "attributes": {"user_name": "eve@contoso.example", "department": "Sales"}},
        {"id": "bamboo-2", "person": "E501", "kind": "promote"},
    ]))?;
    // A bad signature starts nothing.
    let refused = send(batch.clone(), Some("v1=00".into())).await?;
    assert_eq!(refused.status(), StatusCode::UNAUTHORIZED);
    assert!(t.graph.user(CONTOSO_M365, "eve@contoso.example").is_none());
    let answer = send(batch.clone(), None).await?;
    assert_eq!(answer.status(), StatusCode::ACCEPTED);
    let body: Value = answer.json().await?;
    assert_eq!(body["outcome"], "accepted", "{body}");
    assert!(
        body["reason"]
            .as_str()
            .unwrap_or_default()
            .contains("bamboo-2"),
        "the refused event is named: {body}"
    );
    t.settle().await;
    assert_eq!(
        Id::scim_groups(&t.crm, "eve@contoso.example"),
        BTreeSet::from(["All staff".to_owned(), "Sales".to_owned()])
    );
    // The same delivery again: nothing new.
    let again: Value = send(batch, None).await?.json().await?;
    assert_eq!(again["outcome"], "duplicate", "{again}");
    let (_, person) = t
        .call(
            &t.admin,
            Method::GET,
            &format!("/api/v1/tenants/{CLIENT}/people/E500"),
            None,
        )
        .await;
    assert_eq!(person["events"], 1);
    assert_eq!(person["lineage"]["department"]["source"], "hr");
    // Not JSON: 400 with the reason.
    let malformed = send(b"not json".to_vec(), None).await?;
    assert_eq!(malformed.status(), StatusCode::BAD_REQUEST);
    Ok(())
}

async fn an_identity_provider_provisions_people_over_scim(t: &Id) -> TestResult {
    let issued = t
        .app
        .create_scim_token(&SYSTEM, &TenantRef::parse(CLIENT), "entra")
        .await?;
    let token = issued.secret.as_str().to_owned();
    let users = format!("{}/scim/v2/{CLIENT}/Users", t.base);
    let created: Value = t
        .http
        .post(&users)
        .bearer_auth(&token)
        .header("content-type", "application/scim+json")
        .json(&json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User", "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"],
            "externalId": "0c9f-entra-object",
            "userName": "finn@contoso.example",
            "active": true,
            "name": {"givenName": "Finn", "familyName": "Fox"},
            "emails": [{"value": "finn@contoso.example", "type": "work", "primary": true}],
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User": {"department": "Sales"}
        }))
        .send()
        .await?
        .json()
        .await?;
    let id = created["id"].as_str().ok_or("created")?.to_owned();
    t.settle().await;
    assert_eq!(
        Id::scim_groups(&t.crm, "finn@contoso.example"),
        BTreeSet::from(["All staff".to_owned(), "Sales".to_owned()])
    );
    let (_, person) = t
        .call(
            &t.admin,
            Method::GET,
            &format!("/api/v1/tenants/{CLIENT}/people/0c9f-entra-object"),
            None,
        )
        .await;
    assert_eq!(
        person["lineage"]["department"]["source"], "scim",
        "{person}"
    );

    // Entra disables the user (out of scope, or soft-deleted): a leaver.
    let status = t
        .http
        .patch(format!("{users}/{id}"))
        .bearer_auth(&token)
        .header("content-type", "application/scim+json")
        .json(
            &json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
                      "Operations": [{"op": "Replace", "path": "active", "value": "False"}]}),
        )
        .send()
        .await?
        .status();
    assert_eq!(status, StatusCode::OK);
    t.settle().await;
    assert_eq!(
        Id::scim_user(&t.crm, "finn@contoso.example")["active"],
        false
    );
    assert!(Id::scim_groups(&t.crm, "finn@contoso.example").is_empty());
    let (_, person) = t
        .call(
            &t.admin,
            Method::GET,
            &format!("/api/v1/tenants/{CLIENT}/people/0c9f-entra-object"),
            None,
        )
        .await;
    assert_eq!(person["status"], "terminated");
    Ok(())
}

macro_rules! identity_tests {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() -> super::TestResult {
                    let db = super::TestDatabase::sqlite().await?;
                    let mut t = super::Id::spawn(&db).await?;
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
                    let mut t = super::Id::spawn(&db).await?;
                    let result = super::$case(&t).await;
                    t.stop();
                    db.cleanup().await;
                    result
                }
            )*
        }
    };
}

identity_tests!(
    a_joiner_gets_standard_access_and_waits_for_approval_of_the_sensitive,
    a_mover_loses_what_the_new_role_does_not_justify,
    a_leaver_loses_everything_everywhere_and_gets_a_completion_record,
    a_revocation_is_retried_while_a_system_is_down_and_escalated_past_its_deadline,
    just_in_time_access_is_approved_by_someone_else_and_expires,
    an_elevation_can_end_early,
    drift_reports_orphans_unapproved_grants_and_remediates_the_grants,
    a_csv_import_applies_good_rows_and_reports_bad_ones,
    a_policy_change_shows_its_impact_first,
    strangers_and_other_tenants_see_nothing,
    a_contract_end_date_terminates_and_revokes,
    late_events_are_replayed_in_order,
    an_hr_system_sends_signed_lifecycle_events,
    an_identity_provider_provisions_people_over_scim,
);
