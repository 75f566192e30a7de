//! The connector-backed actions against in-test implementations of the
//! ports: connector resolution (the client's own, else the MSP's),
//! credentials opened from the vault, find-before-create, plans as diffs,
//! error mapping, and passwords that only ever reach the vault. The last
//! part (`live`) runs the go-live actions through the real vendor clients
//! against the sandbox over HTTP, on SQLite and on PostgreSQL: the client's
//! tenant found by domain, GDAP requested and awaited, the privileged-access
//! review, and devices that enroll so that `rmm.verify_agents` passes.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests fail loudly"
)]

mod common;

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use common::Served;
use gatehouse_connectors::ConnectorError;
use gatehouse_connectors::http::Secret;
use gatehouse_connectors::ports::{
    CompanyUpdate, DirectoryUser, DocsDocument, DocsOrganization, DocsPlatform, GdapRelationship,
    GdapRequest, InstallerLink, M365, NewDirectoryUser, Psa, PsaCompany, PsaKind, PsaOpportunity,
    Rmm, RmmDevice, RmmLocation, RmmOrganization,
};
use gatehouse_core::connector::{ConnectorConfig, ConnectorKind, ConnectorName, ConnectorSpec};
use gatehouse_core::id::{TenantId, WorkflowId};
use gatehouse_core::secret::SecretName;
use gatehouse_core::tenant::{DisplayName, Region, TenantSlug, TenantState};
use gatehouse_engine::action::{Action, ActionCall, ActionError, ActionRegistry};
use gatehouse_server::Actor;
use gatehouse_server::actions::{self, ConnectorFactory, Credentials, Directory};
use gatehouse_server::app::{NewTenant, TenantRef};
use gatehouse_store::testing::TestDatabase;
use serde_json::{Value, json};
use time::OffsetDateTime;

const CUSTOMER: &str = "11111111-2222-3333-4444-555555555555";

/// Fails the next call with this error, once.
#[derive(Default)]
struct Fault(Mutex<Option<ConnectorError>>);

impl Fault {
    fn set(&self, err: ConnectorError) {
        *self.0.lock().unwrap() = Some(err);
    }
    fn check(&self) -> Result<(), ConnectorError> {
        match self.0.lock().unwrap().take() {
            Some(err) => Err(err),
            None => Ok(()),
        }
    }
}

#[derive(Default)]
struct FakePsa {
    companies: Mutex<BTreeMap<String, PsaCompany>>,
    opportunities: Mutex<BTreeMap<String, PsaOpportunity>>,
    updates: Mutex<u32>,
    fault: Fault,
}

#[async_trait]
impl Psa for FakePsa {
    fn kind(&self) -> PsaKind {
        PsaKind::ConnectWise
    }
    async fn company(&self, id: &str) -> Result<Option<PsaCompany>, ConnectorError> {
        self.fault.check()?;
        Ok(self.companies.lock().unwrap().get(id).cloned())
    }
    async fn update_company(
        &self,
        id: &str,
        update: &CompanyUpdate,
        _key: &str,
    ) -> Result<PsaCompany, ConnectorError> {
        *self.updates.lock().unwrap() += 1;
        let mut companies = self.companies.lock().unwrap();
        let company = companies.get_mut(id).unwrap();
        if let Some(status) = &update.status {
            company.status = Some(status.clone());
        }
        if let Some(contract) = &update.contract {
            company.contract = Some(contract.clone());
        }
        Ok(company.clone())
    }
    async fn opportunity(&self, id: &str) -> Result<Option<PsaOpportunity>, ConnectorError> {
        Ok(self.opportunities.lock().unwrap().get(id).cloned())
    }
    async fn set_opportunity_status(
        &self,
        id: &str,
        status: &str,
        _key: &str,
    ) -> Result<PsaOpportunity, ConnectorError> {
        *self.updates.lock().unwrap() += 1;
        let mut all = self.opportunities.lock().unwrap();
        let o = all.get_mut(id).unwrap();
        o.status = status.to_owned();
        Ok(o.clone())
    }
    async fn won_opportunities(
        &self,
        _since: OffsetDateTime,
    ) -> Result<Vec<PsaOpportunity>, ConnectorError> {
        Ok(Vec::new())
    }
}

#[derive(Default)]
struct FakeRmm {
    orgs: Mutex<Vec<RmmOrganization>>,
    locations: Mutex<Vec<RmmLocation>>,
    devices: Mutex<Vec<RmmDevice>>,
    creates: Mutex<u32>,
}

#[async_trait]
impl Rmm for FakeRmm {
    fn vendor(&self) -> &'static str {
        "ninjaone"
    }
    async fn find_organization(
        &self,
        name: &str,
    ) -> Result<Option<RmmOrganization>, ConnectorError> {
        Ok(self
            .orgs
            .lock()
            .unwrap()
            .iter()
            .find(|o| o.name == name)
            .cloned())
    }
    async fn organization(&self, id: &str) -> Result<Option<RmmOrganization>, ConnectorError> {
        Ok(self
            .orgs
            .lock()
            .unwrap()
            .iter()
            .find(|o| o.id == id)
            .cloned())
    }
    async fn create_organization(
        &self,
        name: &str,
        _key: &str,
    ) -> Result<RmmOrganization, ConnectorError> {
        *self.creates.lock().unwrap() += 1;
        let mut orgs = self.orgs.lock().unwrap();
        let org = RmmOrganization {
            id: format!("org-{}", orgs.len() + 1),
            name: name.into(),
        };
        orgs.push(org.clone());
        Ok(org)
    }
    async fn delete_organization(&self, id: &str, _key: &str) -> Result<(), ConnectorError> {
        self.orgs.lock().unwrap().retain(|o| o.id != id);
        self.locations
            .lock()
            .unwrap()
            .retain(|l| l.organization_id != id);
        Ok(())
    }
    async fn locations(&self, organization: &str) -> Result<Vec<RmmLocation>, ConnectorError> {
        Ok(self
            .locations
            .lock()
            .unwrap()
            .iter()
            .filter(|l| l.organization_id == organization)
            .cloned()
            .collect())
    }
    async fn create_location(
        &self,
        organization: &str,
        name: &str,
        _key: &str,
    ) -> Result<RmmLocation, ConnectorError> {
        *self.creates.lock().unwrap() += 1;
        let mut all = self.locations.lock().unwrap();
        let l = RmmLocation {
            id: format!("loc-{}", all.len() + 1),
            organization_id: organization.into(),
            name: name.into(),
        };
        all.push(l.clone());
        Ok(l)
    }
    async fn installer_link(
        &self,
        organization: &str,
        location: &str,
    ) -> Result<InstallerLink, ConnectorError> {
        Ok(InstallerLink {
            url: format!("https://rmm.test/install/{organization}/{location}.msi"),
            installer_type: "WINDOWS_MSI".into(),
        })
    }
    async fn devices(&self, organization: &str) -> Result<Vec<RmmDevice>, ConnectorError> {
        Ok(self
            .devices
            .lock()
            .unwrap()
            .iter()
            .filter(|d| d.organization_id == organization)
            .cloned()
            .collect())
    }
}

#[derive(Default)]
struct FakeGraph {
    relationships: Mutex<Vec<GdapRelationship>>,
    users: Mutex<Vec<DirectoryUser>>,
    /// UPN → the password it was created with.
    passwords: Mutex<BTreeMap<String, String>>,
    requests: Mutex<u32>,
}

#[async_trait]
impl M365 for FakeGraph {
    async fn gdap_relationships(
        &self,
        customer: &str,
    ) -> Result<Vec<GdapRelationship>, ConnectorError> {
        Ok(self
            .relationships
            .lock()
            .unwrap()
            .iter()
            .filter(|r| r.customer_tenant_id == customer)
            .cloned()
            .collect())
    }
    async fn request_gdap(
        &self,
        request: &GdapRequest,
        _key: &str,
    ) -> Result<GdapRelationship, ConnectorError> {
        *self.requests.lock().unwrap() += 1;
        let mut all = self.relationships.lock().unwrap();
        let r = GdapRelationship {
            id: format!("rel-{}", all.len() + 1),
            display_name: request.display_name.clone(),
            customer_tenant_id: request.customer_tenant_id.clone(),
            status: "approvalPending".into(),
            roles: request.roles.clone(),
            duration: request.duration.clone(),
        };
        all.push(r.clone());
        Ok(r)
    }
    async fn terminate_gdap(&self, id: &str, _key: &str) -> Result<(), ConnectorError> {
        for r in self
            .relationships
            .lock()
            .unwrap()
            .iter_mut()
            .filter(|r| r.id == id)
        {
            r.status = "terminated".into();
        }
        Ok(())
    }
    async fn find_user(
        &self,
        _c: &str,
        upn: &str,
    ) -> Result<Option<DirectoryUser>, ConnectorError> {
        Ok(self
            .users
            .lock()
            .unwrap()
            .iter()
            .find(|u| u.user_principal_name == upn)
            .cloned())
    }
    async fn create_user(
        &self,
        _c: &str,
        user: &NewDirectoryUser,
        _key: &str,
    ) -> Result<DirectoryUser, ConnectorError> {
        let mut users = self.users.lock().unwrap();
        let made = DirectoryUser {
            id: format!("user-{}", users.len() + 1),
            user_principal_name: user.user_principal_name.clone(),
            display_name: user.display_name.clone(),
            account_enabled: true,
        };
        users.push(made.clone());
        self.passwords.lock().unwrap().insert(
            user.user_principal_name.clone(),
            user.password.expose().to_owned(),
        );
        Ok(made)
    }
    async fn delete_user(&self, _c: &str, id: &str) -> Result<(), ConnectorError> {
        self.users.lock().unwrap().retain(|u| u.id != id);
        Ok(())
    }
    async fn set_account_enabled(
        &self,
        _c: &str,
        _id: &str,
        _e: bool,
    ) -> Result<(), ConnectorError> {
        Ok(())
    }
    async fn revoke_sign_in_sessions(&self, _c: &str, _id: &str) -> Result<(), ConnectorError> {
        Ok(())
    }
    async fn assign_licenses(
        &self,
        _c: &str,
        _id: &str,
        _a: &[String],
        _r: &[String],
    ) -> Result<(), ConnectorError> {
        Ok(())
    }
    async fn licenses(&self, _c: &str, _id: &str) -> Result<Vec<String>, ConnectorError> {
        Ok(Vec::new())
    }
    async fn add_group_member(&self, _c: &str, _g: &str, _u: &str) -> Result<(), ConnectorError> {
        Ok(())
    }
    async fn remove_group_member(
        &self,
        _c: &str,
        _g: &str,
        _u: &str,
    ) -> Result<(), ConnectorError> {
        Ok(())
    }
    async fn group_members(&self, _c: &str, _g: &str) -> Result<Vec<String>, ConnectorError> {
        Ok(Vec::new())
    }
    async fn gdap_relationship(
        &self,
        id: &str,
    ) -> Result<Option<GdapRelationship>, ConnectorError> {
        Ok(self
            .relationships
            .lock()
            .unwrap()
            .iter()
            .find(|r| r.id == id)
            .cloned())
    }
    async fn directory_role_members(
        &self,
        _c: &str,
        _role: &str,
    ) -> Result<Vec<gatehouse_connectors::ports::DirectoryMember>, ConnectorError> {
        Ok(Vec::new())
    }
}

#[derive(Default)]
struct FakeDocs {
    orgs: Mutex<Vec<DocsOrganization>>,
    creates: Mutex<u32>,
}

#[async_trait]
impl DocsPlatform for FakeDocs {
    fn vendor(&self) -> &'static str {
        "hudu"
    }
    async fn find_organization(
        &self,
        name: &str,
    ) -> Result<Option<DocsOrganization>, ConnectorError> {
        Ok(self
            .orgs
            .lock()
            .unwrap()
            .iter()
            .find(|o| o.name == name)
            .cloned())
    }
    async fn create_organization(
        &self,
        name: &str,
        _key: &str,
    ) -> Result<DocsOrganization, ConnectorError> {
        *self.creates.lock().unwrap() += 1;
        let mut orgs = self.orgs.lock().unwrap();
        let o = DocsOrganization {
            id: format!("co-{}", orgs.len() + 1),
            name: name.into(),
        };
        orgs.push(o.clone());
        Ok(o)
    }
    async fn delete_organization(&self, id: &str, _key: &str) -> Result<(), ConnectorError> {
        self.orgs.lock().unwrap().retain(|o| o.id != id);
        Ok(())
    }
    async fn documents(&self, _o: &str) -> Result<Vec<DocsDocument>, ConnectorError> {
        Ok(Vec::new())
    }
    async fn create_document(
        &self,
        _o: &str,
        _t: &str,
        _b: &str,
        _k: &str,
    ) -> Result<DocsDocument, ConnectorError> {
        Err(ConnectorError::Config {
            system: "hudu",
            message: "not in this test".into(),
        })
    }
    async fn create_password(
        &self,
        _o: &str,
        _n: &str,
        _u: &str,
        _p: &Secret,
        _k: &str,
    ) -> Result<String, ConnectorError> {
        Err(ConnectorError::Config {
            system: "hudu",
            message: "not in this test".into(),
        })
    }
}

/// Hands out the fakes, and remembers which connector each client was
/// built for and the credentials it was given.
#[derive(Default)]
struct Fakes {
    psa: Arc<FakePsa>,
    rmm: Arc<FakeRmm>,
    graph: Arc<FakeGraph>,
    docs: Arc<FakeDocs>,
    /// (connector tenant, connector name, the `api_key` credential).
    built: Mutex<Vec<(TenantId, String, Option<String>)>>,
}

impl Fakes {
    fn note(&self, config: &ConnectorConfig, credentials: &Credentials) {
        self.built.lock().unwrap().push((
            config.tenant_id,
            config.name.to_string(),
            credentials.get("api_key").map(|s| s.expose().to_owned()),
        ));
    }
    fn last_built(&self) -> (TenantId, String, Option<String>) {
        self.built.lock().unwrap().last().cloned().unwrap()
    }
}

struct Factory(Arc<Fakes>);

impl ConnectorFactory for Factory {
    fn psa(&self, c: &ConnectorConfig, k: &Credentials) -> Result<Arc<dyn Psa>, ConnectorError> {
        self.0.note(c, k);
        Ok(self.0.psa.clone())
    }
    fn rmm(&self, c: &ConnectorConfig, k: &Credentials) -> Result<Arc<dyn Rmm>, ConnectorError> {
        self.0.note(c, k);
        Ok(self.0.rmm.clone())
    }
    fn m365(&self, c: &ConnectorConfig, k: &Credentials) -> Result<Arc<dyn M365>, ConnectorError> {
        self.0.note(c, k);
        Ok(self.0.graph.clone())
    }
    fn docs(
        &self,
        c: &ConnectorConfig,
        k: &Credentials,
    ) -> Result<Arc<dyn DocsPlatform>, ConnectorError> {
        self.0.note(c, k);
        Ok(self.0.docs.clone())
    }
}

struct Env {
    served: Served,
    fakes: Arc<Fakes>,
    actions: ActionRegistry,
    msp: TenantId,
    client: TenantId,
    instance: WorkflowId,
}

const SYSTEM: Actor = Actor::System("test");

impl Env {
    async fn new(db: &TestDatabase) -> Self {
        let served = Served::spawn(db, Vec::new(), ActionRegistry::new(), 64 * 1024)
            .await
            .unwrap();
        let app = served.app.clone();
        let mut ids = Vec::new();
        for slug in ["msp", "acme"] {
            let tenant = app
                .create_tenant(
                    &SYSTEM,
                    NewTenant {
                        slug: TenantSlug::parse(slug).unwrap(),
                        display_name: DisplayName::parse(slug).unwrap(),
                        region: Region::parse("eu").unwrap(),
                        state: TenantState::Active,
                    },
                )
                .await
                .unwrap();
            ids.push(tenant.id);
        }
        let fakes = Arc::new(Fakes::default());
        let directory = Arc::new(Directory::new(
            app.store.clone(),
            app.keyring.clone(),
            app.clock.clone(),
            Arc::new(Factory(fakes.clone())),
            TenantSlug::parse("msp").unwrap(),
        ));
        let mut actions = ActionRegistry::new();
        actions::register(&mut actions, directory);
        let env = Self {
            instance: WorkflowId::generate(app.clock.now()),
            served,
            fakes,
            actions,
            msp: ids[0],
            client: ids[1],
        };
        // The MSP's own PSA, RMM, partner Graph app and documentation
        // platform; the client has only its own Graph connector.
        for (kind, name) in [
            (ConnectorKind::ConnectWise, "psa"),
            (ConnectorKind::NinjaOne, "rmm"),
            (ConnectorKind::Graph, "partner"),
            (ConnectorKind::Hudu, "docs"),
        ] {
            env.connector("msp", name, kind, json!({})).await;
        }
        env.connector(
            "acme",
            "m365",
            ConnectorKind::Graph,
            json!({"domain": "acme.example"}),
        )
        .await;
        env
    }

    async fn connector(&self, tenant: &str, name: &str, kind: ConnectorKind, settings: Value) {
        let app = &self.served.app;
        let secret = SecretName::parse(&format!("{name}.api-key")).unwrap();
        app.put_secret(
            &SYSTEM,
            &TenantRef::parse(tenant),
            &secret,
            format!("key-of-{tenant}-{name}").as_bytes(),
        )
        .await
        .unwrap();
        app.set_connector(
            &SYSTEM,
            &TenantRef::parse(tenant),
            &ConnectorName::parse(name).unwrap(),
            ConnectorSpec {
                kind,
                base_url: "https://system.test".into(),
                settings,
                secrets: BTreeMap::from([("api_key".to_owned(), secret)]),
            },
        )
        .await
        .unwrap();
    }

    fn action(&self, name: &str) -> Arc<dyn Action> {
        self.actions
            .get(name)
            .cloned()
            .unwrap_or_else(|| panic!("{name} is registered"))
    }

    async fn run(&self, name: &str, params: Value) -> Result<Value, ActionError> {
        let key = format!("{}:{name}", self.instance);
        self.action(name)
            .run(ActionCall {
                instance: self.instance,
                tenant: None,
                step_id: "step",
                idempotency_key: &key,
                params: &params,
                attempt: 1,
            })
            .await
    }

    async fn plan(&self, name: &str, params: Value) -> Value {
        let key = format!("{}:{name}", self.instance);
        let plan = self
            .action(name)
            .plan(ActionCall {
                instance: self.instance,
                tenant: None,
                step_id: "step",
                idempotency_key: &key,
                params: &params,
                attempt: 1,
            })
            .await
            .unwrap()
            .unwrap_or_else(|| panic!("{name} prepares a plan"));
        serde_json::to_value(&plan).unwrap()
    }

    fn permanent(result: Result<Value, ActionError>, needle: &str) {
        match result {
            Err(ActionError::Permanent { message }) => {
                assert!(
                    message.contains(needle),
                    "{message} does not mention {needle}"
                );
            }
            other => panic!("expected a permanent error about {needle}, got {other:?}"),
        }
    }
}

async fn with_env(test: impl AsyncFnOnce(&Env)) {
    let db = TestDatabase::sqlite().await.unwrap();
    let mut env = Env::new(&db).await;
    test(&env).await;
    env.served.stop();
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_action_is_registered() {
    with_env(async |env| {
        for name in actions::NAMES {
            assert!(env.actions.contains(name), "{name}");
        }
        // The go-live steps' actions, by the names the template uses; the
        // check Graph cannot do is gone.
        for name in [
            "graph.resolve_customer_tenant",
            "graph.await_gdap",
            "graph.review_privileged_access",
        ] {
            assert!(actions::NAMES.contains(&name), "{name}");
        }
        assert!(
            !env.actions
                .contains("graph.verify_previous_provider_removed")
        );
        // Each is also a name the template catalog knows.
        let catalog = gatehouse_engine::template::builtin_actions();
        for name in actions::NAMES {
            assert!(
                gatehouse_engine::template::ActionCatalog::knows(&catalog, name),
                "{name} is in the built-in catalog"
            );
        }
    })
    .await;
}

/// The built-in template's go-live path, as the end-to-end tests and the
/// benchmark rely on it: the tenant found before GDAP is requested, the
/// acceptance awaited for about two weeks before the accounts are made, and
/// the privileged-access review followed by a person's sign-off.
#[test]
fn the_onboarding_template_waits_for_the_client_and_reviews_privileged_access() {
    use gatehouse_core::gate::GateLevel;
    use gatehouse_engine::template::{TemplateSet, builtin_actions};
    let set = TemplateSet::builtin(&builtin_actions()).unwrap();
    let template = set.latest("client-onboarding").unwrap();
    let steps: BTreeMap<String, _> = template
        .stages
        .iter()
        .flat_map(|stage| stage.steps.iter())
        .map(|step| (step.id.to_string(), step))
        .collect();
    let action = |id: &str| steps[id].action.to_string();
    let needs =
        |id: &str| -> Vec<String> { steps[id].needs.iter().map(ToString::to_string).collect() };
    assert_eq!(action("m365-tenant"), "graph.resolve_customer_tenant");
    assert_eq!(
        steps["m365-tenant"].params["domain"],
        "{{ event.payload.company.domain }}"
    );
    assert_eq!(needs("gdap-request"), ["m365-tenant"]);
    assert_eq!(action("gdap-accepted"), "graph.await_gdap");
    assert_eq!(needs("gdap-accepted"), ["gdap-request"]);
    assert_eq!(needs("admin-accounts"), ["gdap-accepted"]);
    let retry = steps["gdap-accepted"].retry;
    let waited: Duration = (1..retry.max_attempts)
        .map(|attempt| retry.delay(attempt, None, 0.0).unwrap())
        .sum();
    let days = waited.as_secs_f64() / 86_400.0;
    assert!(
        (13.0..=15.0).contains(&days),
        "the acceptance is awaited for {days:.1} days"
    );
    assert_eq!(retry.max, Duration::from_secs(6 * 3600));
    assert_eq!(
        action("verify-previous-provider"),
        "graph.review_privileged_access"
    );
    assert_eq!(
        steps["verify-previous-provider"].params["ours"],
        "{{ steps.admin-accounts.output.accounts }}"
    );
    assert_eq!(action("previous-provider-removed"), "human.signoff");
    assert_eq!(steps["previous-provider-removed"].gate, Some(GateLevel::L3));
    assert_eq!(
        steps["previous-provider-removed"].params["unknown_accounts"],
        "{{ steps.verify-previous-provider.output.unknown }}"
    );
    let signoffs = steps
        .values()
        .filter(|s| s.gate == Some(GateLevel::L3))
        .count();
    assert_eq!(signoffs, 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_clients_connector_wins_and_the_msps_fills_in() {
    with_env(async |env| {
        env.fakes.docs.orgs.lock().unwrap().clear();
        env.run(
            "docs.create_organization",
            json!({"tenant": env.client.to_string(), "name": "Acme"}),
        )
        .await
        .unwrap();
        // The client has no documentation platform: the MSP's, with the
        // MSP's credentials opened from the MSP's vault.
        assert_eq!(
            env.fakes.last_built(),
            (
                env.msp,
                "docs".to_owned(),
                Some("key-of-msp-docs".to_owned())
            )
        );
        env.run(
            "graph.review_privileged_access",
            json!({"tenant": "acme", "customer_tenant_id": CUSTOMER}),
        )
        .await
        .unwrap();
        // The client's own Graph connector, by slug.
        assert_eq!(
            env.fakes.last_built(),
            (
                env.client,
                "m365".to_owned(),
                Some("key-of-acme-m365".to_owned())
            )
        );
        // A connector named explicitly; a wrong category is refused.
        env.run(
            "graph.review_privileged_access",
            json!({"tenant": "acme", "customer_tenant_id": CUSTOMER, "connector": "partner"}),
        )
        .await
        .unwrap();
        assert_eq!(env.fakes.last_built().1, "partner");
        Env::permanent(
            env.run(
                "rmm.create_organization",
                json!({"tenant": "acme", "name": "Acme", "connector": "partner"}),
            )
            .await,
            "graph",
        );
        // A missing secret is named; a missing connector is explained.
        env.served
            .app
            .delete_secret(
                &SYSTEM,
                &TenantRef::parse("msp"),
                &SecretName::parse("rmm.api-key").unwrap(),
            )
            .await
            .unwrap();
        Env::permanent(
            env.run(
                "rmm.create_organization",
                json!({"tenant": "acme", "name": "Acme"}),
            )
            .await,
            "rmm.api-key",
        );
        env.served
            .app
            .remove_connector(
                &SYSTEM,
                &TenantRef::parse("msp"),
                &ConnectorName::parse("psa").unwrap(),
            )
            .await
            .unwrap();
        Env::permanent(
            env.run(
                "psa.update_company",
                json!({"tenant": "acme", "company_id": "42", "status": "Active"}),
            )
            .await,
            "neither the tenant nor the MSP",
        );
        // No tenant at all, and an unknown one.
        Env::permanent(
            env.run("docs.create_organization", json!({"name": "Acme"}))
                .await,
            "tenant",
        );
        Env::permanent(
            env.run(
                "docs.create_organization",
                json!({"tenant": "nobody", "name": "Acme"}),
            )
            .await,
            "tenant",
        );
        // A workflow that belongs to a tenant acts on that tenant only,
        // whatever its parameters say.
        let key = format!("{}:cross", env.instance);
        let params = json!({"tenant": "acme", "name": "Acme"});
        let elsewhere = gatehouse_core::id::TenantId::generate(time::OffsetDateTime::UNIX_EPOCH);
        Env::permanent(
            env.action("docs.create_organization")
                .run(ActionCall {
                    instance: env.instance,
                    tenant: Some(elsewhere),
                    step_id: "step",
                    idempotency_key: &key,
                    params: &params,
                    attempt: 1,
                })
                .await,
            "may not act on tenant `acme`",
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psa_updates_plan_a_diff_and_change_only_what_differs() {
    with_env(async |env| {
        env.fakes.psa.companies.lock().unwrap().insert(
            "42".into(),
            PsaCompany { id: "42".into(), name: "Acme".into(), status: Some("Prospect".into()), contract: None, domain: None },
        );
        let params = json!({"tenant": "acme", "psa": "connectwise", "company_id": 42, "status": "Active client", "contract": "Managed services"});
        let plan = env.plan("psa.update_company", params.clone()).await;
        assert_eq!(
            plan["changes"],
            json!([
                {"target": "psa company 42 (Acme)", "field": "status", "before": "Prospect", "after": "Active client"},
                {"target": "psa company 42 (Acme)", "field": "contract", "before": null, "after": "Managed services"},
            ])
        );
        let out = env.run("psa.update_company", params.clone()).await.unwrap();
        assert_eq!(out["status"], "Active client");
        assert_eq!(out["changed"], true);
        // Again: nothing left to change, no second update.
        let again = env.run("psa.update_company", params.clone()).await.unwrap();
        assert_eq!(again["changed"], false);
        assert_eq!(*env.fakes.psa.updates.lock().unwrap(), 1);
        assert_eq!(env.plan("psa.update_company", params.clone()).await["changes"], json!([]));

        // A PSA of another kind is not used for `psa = "halopsa"`.
        Env::permanent(
            env.run("psa.update_company", json!({"tenant": "acme", "psa": "halopsa", "company_id": "42", "status": "x"})).await,
            "halopsa",
        );
        // Errors: a missing company, a throttled PSA, missing parameters.
        Env::permanent(
            env.run("psa.update_company", json!({"tenant": "acme", "company_id": "7", "status": "x"})).await,
            "no company `7`",
        );
        env.fakes.psa.fault.set(ConnectorError::Retryable {
            system: "connectwise",
            message: "429 Too Many Requests".into(),
            retry_after: Some(Duration::from_secs(30)),
        });
        assert_eq!(
            env.run("psa.update_company", params).await.unwrap_err(),
            ActionError::Retryable {
                message: "connectwise: 429 Too Many Requests".into(),
                retry_after: Some(Duration::from_secs(30)),
            }
        );
        Env::permanent(env.run("psa.update_company", json!({"tenant": "acme", "company_id": "42"})).await, "nothing to change");
        Env::permanent(env.run("psa.update_company", json!({"tenant": "acme", "status": "x"})).await, "company_id");

        env.fakes.psa.opportunities.lock().unwrap().insert(
            "9".into(),
            PsaOpportunity {
                id: "9".into(), name: "Acme MSA".into(), company_id: "42".into(),
                status: "Won".into(), won: true, closed_at: None,
            },
        );
        let params = json!({"tenant": "acme", "opportunity_id": "9", "status": "Onboarded"});
        let plan = env.plan("psa.update_opportunity", params.clone()).await;
        assert_eq!(plan["changes"][0]["before"], "Won");
        assert_eq!(plan["changes"][0]["after"], "Onboarded");
        assert_eq!(env.run("psa.update_opportunity", params.clone()).await.unwrap()["status"], "Onboarded");
        assert_eq!(env.run("psa.update_opportunity", params).await.unwrap()["changed"], false);
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rmm_actions_find_before_create_and_poll_for_agents() {
    with_env(async |env| {
        let params = json!({"tenant": "acme", "name": "Acme Ltd"});
        let plan = env.plan("rmm.create_organization", params.clone()).await;
        assert_eq!(plan["changes"][0]["after"], "Acme Ltd");
        let org = env.run("rmm.create_organization", params.clone()).await.unwrap();
        assert_eq!(org["created"], true);
        let again = env.run("rmm.create_organization", params.clone()).await.unwrap();
        assert_eq!((again["id"].clone(), again["created"].clone()), (org["id"].clone(), json!(false)));
        assert_eq!(env.plan("rmm.create_organization", params).await["changes"], json!([]));
        let id = org["id"].as_str().unwrap();

        let loc_params = json!({"tenant": "acme", "organization": id, "name": "Main office"});
        assert_eq!(env.plan("rmm.create_location", loc_params.clone()).await["changes"][0]["field"], "locations[Main office]");
        let loc = env.run("rmm.create_location", loc_params.clone()).await.unwrap();
        assert_eq!(env.run("rmm.create_location", loc_params).await.unwrap()["id"], loc["id"]);
        assert_eq!(*env.fakes.rmm.creates.lock().unwrap(), 2, "one organization, one location");

        let link = env
            .run("rmm.create_installer_link", json!({"tenant": "acme", "organization": id, "location": loc["id"]}))
            .await
            .unwrap();
        assert!(link["url"].as_str().unwrap().starts_with("https://rmm.test/install/"));
        Env::permanent(
            env.run("rmm.create_installer_link", json!({"tenant": "acme", "organization": id, "location": "loc-1", "installer_type": "MAC_PKG"})).await,
            "WINDOWS_MSI",
        );

        // Agents: retryable until enough report online.
        let verify = json!({"tenant": "acme", "organization": id, "min_devices": 2});
        env.fakes.rmm.devices.lock().unwrap().push(RmmDevice {
            id: "d1".into(), name: "pc-1".into(), organization_id: id.into(), online: true,
        });
        match env.run("rmm.verify_agents", verify.clone()).await {
            Err(ActionError::Retryable { message, .. }) => assert!(message.contains("1 of the 2"), "{message}"),
            other => panic!("{other:?}"),
        }
        env.fakes.rmm.devices.lock().unwrap().push(RmmDevice {
            id: "d2".into(), name: "pc-2".into(), organization_id: id.into(), online: true,
        });
        let ok = env.run("rmm.verify_agents", verify).await.unwrap();
        assert_eq!(ok["online"], 2);
        Env::permanent(
            env.run("rmm.verify_agents", json!({"tenant": "acme", "organization": id, "min_devices": 0})).await,
            "min_devices",
        );

        let plan = env.plan("rmm.delete_organization", json!({"tenant": "acme", "organization": id})).await;
        assert_eq!(plan["changes"][0]["before"], "Acme Ltd");
        env.run("rmm.delete_organization", json!({"tenant": "acme", "organization": id})).await.unwrap();
        assert!(env.fakes.rmm.orgs.lock().unwrap().is_empty());
        // Deleting again is fine.
        env.run("rmm.delete_organization", json!({"tenant": "acme", "organization": id})).await.unwrap();
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn gdap_is_requested_once_and_awaited_until_accepted() {
    with_env(async |env| {
        let params = json!({
            "tenant": "acme", "customer_tenant_id": CUSTOMER, "duration": "P730D",
            "roles": ["Helpdesk Administrator", "User Administrator"],
        });
        let plan = env.plan("graph.request_gdap", params.clone()).await;
        assert_eq!(plan["changes"].as_array().unwrap().len(), 1);
        // The request answers at once, waiting for the customer or not.
        for _ in 0..2 {
            let out = env.run("graph.request_gdap", params.clone()).await.unwrap();
            assert_eq!((out["id"].clone(), out["status"].clone()), (json!("rel-1"), json!("approvalPending")));
            assert!(out["approval_link"].as_str().unwrap().ends_with("/granularAdminRelationships/rel-1"));
        }
        assert_eq!(*env.fakes.graph.requests.lock().unwrap(), 1, "found, not requested again");
        let wait = json!({"tenant": "acme", "relationship": "rel-1"});
        match env.run("graph.await_gdap", wait.clone()).await {
            Err(ActionError::Retryable { message, .. }) => assert!(message.contains("approvalPending"), "{message}"),
            other => panic!("{other:?}"),
        }
        env.fakes.graph.relationships.lock().unwrap()[0].status = "active".into();
        let out = env.run("graph.await_gdap", wait.clone()).await.unwrap();
        assert_eq!(
            out["roles"],
            json!(["729827e3-9c14-49f7-bb1b-9608f156bbb8", "fe930be7-5e62-47db-91af-98c3a49a38b1"])
        );
        assert_eq!(env.plan("graph.request_gdap", params).await["changes"], json!([]));
        Env::permanent(
            env.run("graph.request_gdap", json!({"tenant": "acme", "customer_tenant_id": "not-a-guid", "roles": ["Global Reader"]})).await,
            "not an Entra tenant id",
        );
        Env::permanent(
            env.run("graph.await_gdap", json!({"tenant": "acme", "relationship": "rel-9"})).await,
            "no GDAP relationship rel-9",
        );

        env.run("graph.terminate_gdap", json!({"tenant": "acme", "relationship": "rel-1"})).await.unwrap();
        assert_eq!(env.fakes.graph.relationships.lock().unwrap()[0].status, "terminated");
        Env::permanent(env.run("graph.await_gdap", wait).await, "request a new one");
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn admin_accounts_get_random_passwords_that_only_reach_the_vault() {
    with_env(async |env| {
        let params = json!({
            "tenant": env.client.to_string(), "customer_tenant_id": CUSTOMER,
            "break_glass": 2, "admins": ["owner@msp.example"],
        });
        let plan = env
            .plan("graph.create_admin_accounts", params.clone())
            .await;
        assert_eq!(plan["changes"].as_array().unwrap().len(), 3);
        let out = env
            .run("graph.create_admin_accounts", params.clone())
            .await
            .unwrap();
        let accounts = out["accounts"].as_array().unwrap();
        let upns: Vec<&str> = accounts
            .iter()
            .map(|a| a["user_principal_name"].as_str().unwrap())
            .collect();
        assert_eq!(
            upns,
            [
                "breakglass1@acme.example",
                "breakglass2@acme.example",
                "adm-owner@acme.example"
            ]
        );
        let passwords = env.fakes.graph.passwords.lock().unwrap().clone();
        assert_eq!(passwords.len(), 3);
        for account in accounts {
            assert_eq!(account["created"], true);
            assert_eq!(account["password_in_vault"], true);
            let upn = account["user_principal_name"].as_str().unwrap();
            let secret = SecretName::parse(account["secret"].as_str().unwrap()).unwrap();
            // The vault holds exactly the password the account was created with.
            let stored = env
                .served
                .app
                .reveal_secret(&SYSTEM, env.client, &secret)
                .await
                .unwrap();
            assert_eq!(String::from_utf8(stored.to_vec()).unwrap(), passwords[upn]);
            assert!(passwords[upn].len() >= 24);
        }
        // No password in the output, the plan or the audit records.
        let text = format!(
            "{out}{plan}{:?}",
            env.served.app.store.pending_audit(1000).await.unwrap()
        );
        for password in passwords.values() {
            assert!(!text.contains(password.as_str()));
        }
        let distinct: std::collections::BTreeSet<&String> = passwords.values().collect();
        assert_eq!(distinct.len(), 3);

        // Again: nothing is created and no password changes.
        let again = env
            .run("graph.create_admin_accounts", params.clone())
            .await
            .unwrap();
        assert!(
            again["accounts"]
                .as_array()
                .unwrap()
                .iter()
                .all(|a| a["created"] == false)
        );
        assert_eq!(env.fakes.graph.users.lock().unwrap().len(), 3);
        assert_eq!(*env.fakes.graph.passwords.lock().unwrap(), passwords);
        assert_eq!(
            env.plan("graph.create_admin_accounts", params).await["changes"],
            json!([])
        );

        // The compensation deletes the accounts it created and their passwords.
        let deleted = env
            .run(
                "graph.delete_admin_accounts",
                json!({"tenant": "acme", "accounts": out["accounts"]}),
            )
            .await
            .unwrap();
        assert_eq!(deleted["deleted"].as_array().unwrap().len(), 3);
        assert!(env.fakes.graph.users.lock().unwrap().is_empty());
        let left = env
            .served
            .app
            .list_secrets(&SYSTEM, &TenantRef::parse("acme"))
            .await
            .unwrap();
        assert!(
            left.iter().all(|s| !s.name.as_str().ends_with(".password")),
            "{left:?}"
        );
        assert_eq!(left.len(), 1, "the connector's own key stays");

        Env::permanent(
            env.run(
                "graph.create_admin_accounts",
                json!({"tenant": "acme", "customer_tenant_id": CUSTOMER}),
            )
            .await,
            "no accounts",
        );
        Env::permanent(
            env.run(
                "graph.create_admin_accounts",
                json!({"tenant": "acme", "customer_tenant_id": CUSTOMER, "break_glass": 9}),
            )
            .await,
            "break_glass",
        );
    })
    .await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn docs_organizations_are_found_before_created() {
    with_env(async |env| {
        let params = json!({"tenant": "acme", "name": "Acme"});
        let created = env
            .run("docs.create_organization", params.clone())
            .await
            .unwrap();
        assert_eq!(created["created"], true);
        assert_eq!(
            env.run("docs.create_organization", params.clone())
                .await
                .unwrap()["id"],
            created["id"]
        );
        assert_eq!(*env.fakes.docs.creates.lock().unwrap(), 1);
        assert_eq!(
            env.plan("docs.create_organization", params).await["changes"],
            json!([])
        );
        env.run(
            "docs.delete_organization",
            json!({"tenant": "acme", "organization": created["id"]}),
        )
        .await
        .unwrap();
        assert!(env.fakes.docs.orgs.lock().unwrap().is_empty());
        Env::permanent(
            env.run("docs.create_organization", json!({"tenant": "acme"}))
                .await,
            "`name`",
        );
    })
    .await;
}

/// The engine and a real connector-backed action together: the L2
/// approval shows the RMM's diff; someone creates the organization between
/// the approval and the run; the step does not run blindly but is asked
/// again with a plan that shows nothing left to create, and then finds the
/// organization instead of creating a second one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_l2_step_is_asked_again_when_the_rmm_changed_after_approval() {
    use gatehouse_core::approval::{ApprovalState, Verdict};
    use gatehouse_core::operator::{OperatorName, Role};
    use gatehouse_core::store::ApprovalQuery;
    use gatehouse_core::workflow::{DedupKey, EventKind, EventSource, InstanceState};
    use gatehouse_engine::runtime::{Engine, EngineConfig, NewEvent};
    use gatehouse_engine::template::{Template, builtin_actions};

    with_env(async |env| {
        let template = Template::from_toml(
            "onboard.toml",
            r#"
name = "onboard-rmm"
version = 1
title = "Onboard"
area = "client_onboarding"
on_failure = "park"

[[trigger]]
event = "psa.opportunity.won"

[[stage]]
id = "access"
title = "Access"

[[stage.step]]
id = "rmm-organization"
title = "Create the RMM organization"
action = "rmm.create_organization"
params = { tenant = "acme", name = "{{ event.payload.company.name }}" }
"#,
            &builtin_actions(),
        )
        .unwrap();
        let app = &env.served.app;
        let engine = Engine::new(
            app.store.clone(),
            Arc::new(vec![template]),
            Arc::new(env.actions.clone()),
            app.clock.clone(),
            EngineConfig::default(),
        );
        let settle = || async {
            while engine.tick().await.unwrap() > 0 {}
        };
        let id = engine
            .submit(
                NewEvent {
                    tenant_id: Some(env.client),
                    source: EventSource::parse("api").unwrap(),
                    kind: EventKind::parse("psa.opportunity.won").unwrap(),
                    dedup_key: DedupKey::parse("deal-7").unwrap(),
                    payload: json!({"company": {"name": "Acme Ltd"}}),
                },
                "system",
            )
            .await
            .unwrap()
            .instances[0];
        settle().await;
        let approvals = |state| async move {
            app.store
                .list_approvals(&ApprovalQuery {
                    within: None,
                    instance: Some(id),
                    state,
                    limit: 10,
                    ..Default::default()
                })
                .await
                .unwrap()
        };
        let first = approvals(Some(ApprovalState::Pending)).await.remove(0);
        assert_eq!(
            first.plan["diff"]["changes"],
            json!([{"target": "ninjaone organization", "field": "name", "before": null, "after": "Acme Ltd"}])
        );
        let (lead, _, _) = app
            .create_operator(
                &SYSTEM,
                OperatorName::parse("lea").unwrap(),
                DisplayName::parse("Lea").unwrap(),
                Role::Lead,
            )
            .await
            .unwrap();
        engine
            .decide(first.id, &lead, Verdict::Approve, "create it", None)
            .await
            .unwrap();
        // Someone creates it by hand before the step runs.
        env.fakes.rmm.orgs.lock().unwrap().push(RmmOrganization {
            id: "by-hand".into(),
            name: "Acme Ltd".into(),
        });
        settle().await;
        assert_eq!(*env.fakes.rmm.creates.lock().unwrap(), 0);
        let history = app.store.instance_history(id).await.unwrap();
        let changed = history.iter().find(|h| h.kind == "plan.changed").unwrap();
        assert_eq!(changed.detail["changed"][0]["path"], "organization");
        let second = approvals(Some(ApprovalState::Pending)).await.remove(0);
        assert_eq!(second.plan["supersedes"], json!(first.id));
        assert_eq!(second.plan["diff"]["changes"], json!([]), "nothing left to create");

        engine
            .decide(second.id, &lead, Verdict::Approve, "use the existing one", None)
            .await
            .unwrap();
        settle().await;
        let (instance, steps) = app.store.get_instance(id).await.unwrap();
        assert_eq!(instance.state, InstanceState::Completed);
        let output = steps[0].output.clone().unwrap();
        assert_eq!((output["id"].clone(), output["created"].clone()), (json!("by-hand"), json!(false)));
        assert_eq!(*env.fakes.rmm.creates.lock().unwrap(), 0, "never a second organization");
    })
    .await;
}

/// The go-live actions through the real vendor clients ([`actions::VendorFactory`])
/// against the sandbox, over HTTP.
mod live {
    use super::*;
    use gatehouse_sandbox::{AutoEnroll, Sandbox};

    const TAILSPIN: &str = "6f1c2d3e-4a5b-4c6d-8e7f-90a1b2c3d4e5";

    pub(super) struct Live {
        pub served: Served,
        pub sandbox: Sandbox,
        actions: ActionRegistry,
        instance: WorkflowId,
    }

    impl Live {
        pub(super) async fn new(db: &TestDatabase) -> Self {
            let served = Served::spawn(db, Vec::new(), ActionRegistry::new(), 64 * 1024)
                .await
                .unwrap();
            let app = served.app.clone();
            for slug in ["msp", "tailspin"] {
                app.create_tenant(
                    &SYSTEM,
                    NewTenant {
                        slug: TenantSlug::parse(slug).unwrap(),
                        display_name: DisplayName::parse(slug).unwrap(),
                        region: Region::parse("eu").unwrap(),
                        state: TenantState::Active,
                    },
                )
                .await
                .unwrap();
            }
            let sandbox = Sandbox::start().await.unwrap();
            let c = sandbox.credentials.clone();
            sandbox.graph.add_tenant(TAILSPIN, "Tailspin Toys");
            sandbox.graph.add_domain(TAILSPIN, "tailspintoys.com");
            sandbox
                .graph
                .consent_app(TAILSPIN, &c.graph_app.0, &c.graph_app.1);
            let directory = Arc::new(Directory::new(
                app.store.clone(),
                app.keyring.clone(),
                app.clock.clone(),
                Arc::new(actions::VendorFactory {
                    clock: app.clock.clone(),
                }),
                TenantSlug::parse("msp").unwrap(),
            ));
            let mut registry = ActionRegistry::new();
            actions::register(&mut registry, directory);
            let live = Self {
                instance: WorkflowId::generate(app.clock.now()),
                served,
                sandbox,
                actions: registry,
            };
            live.connector(
                ConnectorKind::Graph,
                live.sandbox.graph.url(),
                json!({"login_base": live.sandbox.graph.url(), "partner_tenant_id": c.partner_tenant_id, "client_id": c.graph_app.0}),
                &[("client_secret", &c.graph_app.1)],
            )
            .await;
            live.connector(
                ConnectorKind::NinjaOne,
                live.sandbox.ninjaone.url(),
                json!({"client_id": c.ninjaone.0}),
                &[("client_secret", &c.ninjaone.1)],
            )
            .await;
            live.connector(
                ConnectorKind::DattoRmm,
                live.sandbox.dattormm.url(),
                json!({"agent_url": live.sandbox.dattormm.url()}),
                &[("api_key", &c.dattormm.0), ("api_secret", &c.dattormm.1)],
            )
            .await;
            live
        }

        async fn connector(
            &self,
            kind: ConnectorKind,
            base_url: String,
            settings: Value,
            credentials: &[(&str, &str)],
        ) {
            let app = &self.served.app;
            let mut secrets = BTreeMap::new();
            for (role, value) in credentials {
                let name =
                    SecretName::parse(&format!("{}.{}", kind.as_str(), role.replace('_', "-")))
                        .unwrap();
                app.put_secret(&SYSTEM, &TenantRef::parse("msp"), &name, value.as_bytes())
                    .await
                    .unwrap();
                secrets.insert((*role).to_owned(), name);
            }
            app.set_connector(
                &SYSTEM,
                &TenantRef::parse("msp"),
                &ConnectorName::parse(kind.as_str()).unwrap(),
                ConnectorSpec {
                    kind,
                    base_url,
                    settings,
                    secrets,
                },
            )
            .await
            .unwrap();
        }

        /// Runs action `name` as a step would; the same action and
        /// parameters get the same idempotency key, as a retried step does.
        pub(super) async fn run(&self, name: &str, params: Value) -> Result<Value, ActionError> {
            use std::hash::{Hash, Hasher};
            let mut hasher = std::collections::hash_map::DefaultHasher::new();
            params.to_string().hash(&mut hasher);
            let key = format!("{}:{name}:{:x}", self.instance, hasher.finish());
            self.actions
                .get(name)
                .cloned()
                .unwrap_or_else(|| panic!("{name} is registered"))
                .run(ActionCall {
                    instance: self.instance,
                    tenant: None,
                    step_id: "step",
                    idempotency_key: &key,
                    params: &params,
                    attempt: 1,
                })
                .await
        }
    }

    fn retryable(result: Result<Value, ActionError>, needle: &str) {
        match result {
            Err(ActionError::Retryable { message, .. }) => {
                assert!(
                    message.contains(needle),
                    "{message} does not mention {needle}"
                );
            }
            other => panic!("expected a retryable error about {needle}, got {other:?}"),
        }
    }

    pub(super) async fn the_clients_tenant_is_found_by_its_domain(live: &Live) {
        let found = live
            .run(
                "graph.resolve_customer_tenant",
                json!({"tenant": "tailspin", "domain": "https://www.TailspinToys.com/about"}),
            )
            .await
            .unwrap();
        assert_eq!(
            found,
            json!({"customer_tenant_id": TAILSPIN, "display_name": "Tailspin Toys",
                   "default_domain": "tailspintoys.onmicrosoft.com", "domain": "tailspintoys.com"})
        );
        // A tenant id given by the sender is checked, not trusted.
        let by_id = live
            .run(
                "graph.resolve_customer_tenant",
                json!({"tenant": "tailspin", "domain": null, "customer_tenant_id": TAILSPIN}),
            )
            .await
            .unwrap();
        assert_eq!(by_id["default_domain"], "tailspintoys.onmicrosoft.com");
        Env::permanent(
            live.run(
                "graph.resolve_customer_tenant",
                json!({"tenant": "tailspin", "customer_tenant_id": "11111111-2222-3333-4444-555555555555"}),
            )
            .await,
            "no Microsoft 365 tenant has the id 11111111-2222-3333-4444-555555555555",
        );
        Env::permanent(
            live.run(
                "graph.resolve_customer_tenant",
                json!({"tenant": "tailspin", "domain": "wingtip.example"}),
            )
            .await,
            "verified the domain `wingtip.example`",
        );
        Env::permanent(
            live.run(
                "graph.resolve_customer_tenant",
                json!({"tenant": "tailspin", "domain": null}),
            )
            .await,
            "no website",
        );
        Env::permanent(
            live.run(
                "graph.resolve_customer_tenant",
                json!({"tenant": "tailspin", "domain": "not a domain"}),
            )
            .await,
            "not a domain name",
        );
        assert_eq!(live.sandbox.graph.harness().counted("tenants.looked_up"), 2);
    }

    pub(super) async fn gdap_is_requested_at_once_and_awaited(live: &Live) {
        let params = json!({
            "tenant": "tailspin", "customer_tenant_id": TAILSPIN,
            "roles": ["Helpdesk Administrator", "Security Reader"],
        });
        let first = live
            .run("graph.request_gdap", params.clone())
            .await
            .unwrap();
        assert_eq!(first["status"], "approvalPending");
        let id = first["id"].as_str().unwrap().to_owned();
        assert!(first["approval_link"].as_str().unwrap().ends_with(&id));
        let again = live
            .run("graph.request_gdap", params.clone())
            .await
            .unwrap();
        assert_eq!(again["id"], first["id"]);
        let graph = live.sandbox.graph.harness();
        assert_eq!(
            (
                graph.counted("gdap.created"),
                graph.counted("gdap.lockForApproval")
            ),
            (1, 1)
        );

        let wait = json!({"tenant": "tailspin", "relationship": id});
        retryable(
            live.run("graph.await_gdap", wait.clone()).await,
            "approvalPending",
        );
        retryable(
            live.run("graph.await_gdap", wait.clone()).await,
            "accept it at https://admin.microsoft.com/",
        );
        assert!(live.sandbox.graph.approve_gdap(&id));
        let accepted = live.run("graph.await_gdap", wait.clone()).await.unwrap();
        assert_eq!(
            (
                accepted["status"].clone(),
                accepted["customer_tenant_id"].clone()
            ),
            (json!("active"), json!(TAILSPIN))
        );
        // Once accepted, asking again changes nothing.
        let after = live.run("graph.request_gdap", params).await.unwrap();
        assert_eq!(
            (after["status"].clone(), after["approval_link"].clone()),
            (json!("active"), Value::Null)
        );

        // The knob the demo uses: the client accepts by itself.
        live.sandbox
            .graph
            .set_auto_accept_gdap(Some(Duration::ZERO));
        let second = live
            .run(
                "graph.request_gdap",
                json!({"tenant": "tailspin", "customer_tenant_id": TAILSPIN,
                       "roles": ["Global Reader"], "display_name": "Gatehouse second"}),
            )
            .await
            .unwrap();
        let ok = live
            .run(
                "graph.await_gdap",
                json!({"tenant": "tailspin", "relationship": second["id"]}),
            )
            .await
            .unwrap();
        assert_eq!(ok["status"], "active");

        // An ended relationship cannot be accepted any more; an unknown one is named.
        live.run(
            "graph.terminate_gdap",
            json!({"tenant": "tailspin", "relationship": id}),
        )
        .await
        .unwrap();
        Env::permanent(
            live.run("graph.await_gdap", wait).await,
            "request a new one",
        );
        Env::permanent(
            live.run(
                "graph.await_gdap",
                json!({"tenant": "tailspin", "relationship": "no-such-relationship"}),
            )
            .await,
            "no GDAP relationship no-such-relationship",
        );
    }

    pub(super) async fn the_review_flags_privileged_accounts_we_did_not_create(live: &Live) {
        let graph = &live.sandbox.graph;
        let previous = graph
            .seed_previous_provider(
                TAILSPIN,
                "0b9a8c7d-6e5f-4a3b-9c2d-1e0f9a8b7c6d",
                "Fourth Coffee IT",
            )
            .unwrap();
        let own_admin = graph
            .add_user(TAILSPIN, "it.admin@tailspintoys.com", "Tailspin IT")
            .unwrap();
        graph.assign_directory_role(
            TAILSPIN,
            gatehouse_sandbox::graph::GLOBAL_ADMINISTRATOR,
            &own_admin,
        );
        let accounts = live
            .run(
                "graph.create_admin_accounts",
                json!({"tenant": "tailspin", "customer_tenant_id": TAILSPIN,
                       "domain": "tailspintoys.onmicrosoft.com", "break_glass": 1,
                       "admins": ["lea@msp.example"]}),
            )
            .await
            .unwrap()["accounts"]
            .clone();
        // Our break-glass account is made a Global Administrator, our admin a User Administrator.
        let ours: Vec<String> = accounts
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["id"].as_str().unwrap().to_owned())
            .collect();
        graph.assign_directory_role(
            TAILSPIN,
            gatehouse_sandbox::graph::GLOBAL_ADMINISTRATOR,
            &ours[0],
        );
        graph.assign_directory_role(TAILSPIN, "fe930be7-5e62-47db-91af-98c3a49a38b1", &ours[1]);

        // `ours` as the list the template renders, once as a value and once as text.
        for rendered in [accounts.clone(), Value::String(accounts.to_string())] {
            let review = live
                .run(
                    "graph.review_privileged_access",
                    json!({"tenant": "tailspin", "customer_tenant_id": TAILSPIN, "ours": rendered}),
                )
                .await
                .unwrap();
            let upns = |list: &Value, flag: Option<&str>| -> Vec<String> {
                let mut out: Vec<String> = list
                    .as_array()
                    .unwrap()
                    .iter()
                    .filter(|m| flag.is_none_or(|f| m[f] == true))
                    .map(|m| m["user_principal_name"].as_str().unwrap().to_owned())
                    .collect();
                out.sort();
                out
            };
            assert_eq!(
                upns(&review["privileged"], None),
                [
                    "adm-lea@tailspintoys.onmicrosoft.com",
                    "breakglass1@tailspintoys.onmicrosoft.com",
                    "fourthcoffeeit-admin@tailspintoys.onmicrosoft.com",
                    "it.admin@tailspintoys.com",
                ]
            );
            assert_eq!(
                upns(&review["privileged"], Some("ours")),
                [
                    "adm-lea@tailspintoys.onmicrosoft.com",
                    "breakglass1@tailspintoys.onmicrosoft.com"
                ]
            );
            assert_eq!(
                upns(&review["unknown"], None),
                [
                    "fourthcoffeeit-admin@tailspintoys.onmicrosoft.com",
                    "it.admin@tailspintoys.com"
                ]
            );
            assert_eq!(review["unknown_count"], 2);
            let previous_admin = review["unknown"]
                .as_array()
                .unwrap()
                .iter()
                .find(|m| m["id"] == previous.admin_user_id.as_str())
                .unwrap();
            assert_eq!(previous_admin["roles"], json!(["Global Administrator"]));
        }
        // The client confirms its own admin: only the previous provider's is left.
        let review = live
            .run(
                "graph.review_privileged_access",
                json!({"tenant": "tailspin", "customer_tenant_id": TAILSPIN, "ours": accounts,
                       "known": ["IT.Admin@tailspintoys.com"]}),
            )
            .await
            .unwrap();
        assert_eq!(review["unknown_count"], 1);
        assert_eq!(review["unknown"][0]["id"], previous.admin_user_id.as_str());
        // Only the roles asked for: our User Administrator is not listed.
        let review = live
            .run(
                "graph.review_privileged_access",
                json!({"tenant": "tailspin", "customer_tenant_id": TAILSPIN, "ours": accounts,
                       "roles": ["Global Administrator"]}),
            )
            .await
            .unwrap();
        assert_eq!(review["roles_checked"], json!(["Global Administrator"]));
        assert_eq!(review["privileged"].as_array().unwrap().len(), 3);
        assert_eq!(review["unknown_count"], 2);
        Env::permanent(
            live.run(
                "graph.review_privileged_access",
                json!({"tenant": "tailspin", "customer_tenant_id": TAILSPIN, "roles": ["Chief Wizard"]}),
            )
            .await,
            "Chief Wizard",
        );
    }

    pub(super) async fn enrolled_devices_make_verify_agents_pass(live: &Live) {
        let ninja = json!({"tenant": "tailspin", "connector": "ninjaone"});
        let with = |extra: Value| {
            let mut p = ninja.clone();
            p.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            p
        };
        // Devices enrolled through the handle.
        let org = live
            .run(
                "rmm.create_organization",
                with(json!({"name": "Tailspin Toys"})),
            )
            .await
            .unwrap();
        let verify = with(json!({"organization": org["id"], "min_devices": 2}));
        retryable(
            live.run("rmm.verify_agents", verify.clone()).await,
            "0 of the 2",
        );
        let org_id: u64 = org["id"].as_str().unwrap().parse().unwrap();
        assert_eq!(live.sandbox.ninjaone.enroll_devices(org_id, 2).len(), 2);
        let ok = live.run("rmm.verify_agents", verify).await.unwrap();
        assert_eq!(
            ok["devices"],
            json!(["tailspintoys-pc1", "tailspintoys-pc2"])
        );

        // Auto-enrollment once the installer link exists, once per location.
        live.sandbox.ninjaone.set_auto_enroll(Some(AutoEnroll {
            devices: 3,
            delay: Duration::ZERO,
        }));
        let org = live
            .run(
                "rmm.create_organization",
                with(json!({"name": "Wingtip Toys"})),
            )
            .await
            .unwrap();
        let loc = live
            .run(
                "rmm.create_location",
                with(json!({"organization": org["id"], "name": "Main office"})),
            )
            .await
            .unwrap();
        let verify = with(json!({"organization": org["id"], "min_devices": 3}));
        retryable(
            live.run("rmm.verify_agents", verify.clone()).await,
            "0 of the 3",
        );
        for _ in 0..2 {
            live.run(
                "rmm.create_installer_link",
                with(json!({"organization": org["id"], "location": loc["id"]})),
            )
            .await
            .unwrap();
        }
        assert_eq!(
            live.run("rmm.verify_agents", verify).await.unwrap()["online"],
            3
        );
        assert_eq!(
            live.sandbox.ninjaone.harness().counted("devices.enrolled"),
            5,
            "2 by hand, 3 once"
        );

        // Datto RMM: by hand, and for every new site.
        let datto = |extra: Value| {
            let mut p = json!({"tenant": "tailspin", "connector": "dattormm"});
            p.as_object_mut()
                .unwrap()
                .extend(extra.as_object().unwrap().clone());
            p
        };
        let site = live
            .run(
                "rmm.create_organization",
                datto(json!({"name": "Tailspin Toys"})),
            )
            .await
            .unwrap();
        let verify = datto(json!({"organization": site["id"], "min_devices": 1}));
        retryable(
            live.run("rmm.verify_agents", verify.clone()).await,
            "0 of the 1",
        );
        assert_eq!(
            live.sandbox
                .dattormm
                .enroll_devices(site["id"].as_str().unwrap(), 1)
                .len(),
            1
        );
        live.run("rmm.verify_agents", verify).await.unwrap();
        live.sandbox.dattormm.set_auto_enroll(Some(AutoEnroll {
            devices: 2,
            delay: Duration::ZERO,
        }));
        let site = live
            .run(
                "rmm.create_organization",
                datto(json!({"name": "Wingtip Toys"})),
            )
            .await
            .unwrap();
        let ok = live
            .run(
                "rmm.verify_agents",
                datto(json!({"organization": site["id"], "min_devices": 2})),
            )
            .await
            .unwrap();
        assert_eq!(ok["devices"], json!(["wingtiptoys-pc1", "wingtiptoys-pc2"]));
    }

    macro_rules! live_tests {
        ($($case:ident),* $(,)?) => {
            mod sqlite {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $case() {
                        let db = super::TestDatabase::sqlite().await.unwrap();
                        let mut live = super::Live::new(&db).await;
                        super::$case(&live).await;
                        live.served.stop();
                        db.cleanup().await;
                    }
                )*
            }

            mod postgres {
                $(
                    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                    async fn $case() {
                        let Some(db) = super::TestDatabase::postgres(stringify!($case)).await.unwrap() else {
                            eprintln!("GATEHOUSE_TEST_DATABASE_URL is not set; skipping the PostgreSQL run");
                            return;
                        };
                        let mut live = super::Live::new(&db).await;
                        super::$case(&live).await;
                        live.served.stop();
                        db.cleanup().await;
                    }
                )*
            }
        };
    }

    live_tests!(
        the_clients_tenant_is_found_by_its_domain,
        gdap_is_requested_at_once_and_awaited,
        the_review_flags_privileged_accounts_we_did_not_create,
        enrolled_devices_make_verify_agents_pass,
    );
}
