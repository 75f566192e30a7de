//! The console in a real browser: Debian's headless Chromium, driven over
//! WebDriver (`common/webdriver.rs`). Screenshots are saved under
//! `$CARGO_TARGET_TMPDIR/browser/` as test artefacts.
//!
//! Without `chromium` and `chromedriver` these tests say so and pass, unless
//! `GATEHOUSE_REQUIRE_BROWSER=1` (set by `.ci/run`, which installs both),
//! where a missing browser fails them.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests fail loudly"
)]

mod common;
#[path = "common/webdriver.rs"]
mod webdriver;

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use gatehouse_core::clock::Clock;
use gatehouse_core::operator::{OperatorName, Role};
use gatehouse_core::tenant::DisplayName;
use gatehouse_engine::action::{ActionRegistry, Noop};
use gatehouse_engine::template::Template;
use gatehouse_server::Actor;
use gatehouse_server::app::TenantRef;
use gatehouse_store::testing::TestDatabase;
use serde_json::json;

use common::Served;
use webdriver::{Driver, TAB};

const PASSWORD: &str = "correct horse battery staple";

/// A two-stage onboarding: each stage one gated step.
fn templates() -> Vec<Template> {
    let catalog: std::collections::BTreeSet<&str> = ["sandbox.noop"].into();
    let onboarding = r#"
name = "client-onboarding"
version = 1
title = "Client onboarding"
area = "client_onboarding"

[[trigger]]
event = "psa.deal.won"

[[stage]]
id = "intake"
title = "Intake"

[[stage.step]]
id = "create-tenant"
title = "Create the client's tenant"
action = "sandbox.noop"

[[stage]]
id = "access"
title = "Access provisioning"

[[stage.step]]
id = "rmm-organization"
title = "Create the RMM organization"
action = "sandbox.noop"
"#;
    vec![Template::from_toml("test/onboarding.toml", onboarding, &catalog).unwrap()]
}

fn artefacts() -> PathBuf {
    PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("browser")
}

/// The browser, or `None` (with a message) when it is not installed and
/// not required.
async fn browser() -> Option<Driver> {
    if !webdriver::available() {
        let required = std::env::var("GATEHOUSE_REQUIRE_BROWSER").is_ok_and(|v| v == "1");
        assert!(
            !required,
            "GATEHOUSE_REQUIRE_BROWSER=1 but chromium/chromedriver are missing (apt-get install chromium chromium-driver)"
        );
        eprintln!(
            "chromium/chromedriver not installed: browser test skipped (.ci/run installs them)"
        );
        return None;
    }
    Some(Driver::start().await.unwrap())
}

struct World {
    served: Served,
    db: TestDatabase,
}

impl World {
    async fn new() -> Self {
        let db = TestDatabase::sqlite().await.unwrap();
        let mut actions = ActionRegistry::new();
        actions.register("sandbox.noop", Arc::new(Noop));
        let served = Served::spawn(&db, templates(), actions, 64 * 1024)
            .await
            .unwrap();
        Self { served, db }
    }

    async fn operator(&self, name: &str, role: Role) -> String {
        let system = Actor::System("test");
        let handle = OperatorName::parse(name).unwrap();
        let app = &self.served.app;
        app.create_operator(
            &system,
            handle.clone(),
            DisplayName::parse(name).unwrap(),
            role,
        )
        .await
        .unwrap();
        app.set_password(&system, &handle, PASSWORD).await.unwrap();
        app.enroll_totp(&system, &handle)
            .await
            .unwrap()
            .secret
            .to_string()
    }

    fn code(&self, secret: &str) -> String {
        gatehouse_server::signin::current_code(secret, self.served.clock.now()).unwrap()
    }

    async fn settle(&self) {
        for _ in 0..100 {
            if self.served.app.engine.tick().await.unwrap() == 0 {
                return;
            }
        }
        panic!("the engine did not settle");
    }

    /// A deal won: the onboarding starts and waits at its first approval.
    async fn won_deal(&self) {
        let response = self
            .served
            .http
            .post(format!("{}/api/v1/events", self.served.base))
            .bearer_auth(&self.served.admin)
            .json(&json!({
                "type": "psa.deal.won",
                "dedup_key": "deal-1",
                "payload": {"company": {"name": "Tailspin Toys", "slug": "tailspin-toys"}},
            }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), reqwest::StatusCode::ACCEPTED);
        self.settle().await;
    }

    fn url(&self, path: &str) -> String {
        format!("{}{path}", self.served.base)
    }

    /// Signs in through the form, with the keyboard between the fields.
    async fn sign_in(&self, driver: &Driver, name: &str, secret: &str) {
        driver.goto(&self.url("/console/approvals")).await.unwrap();
        assert!(
            driver
                .current_url()
                .await
                .unwrap()
                .contains("/console/sign-in")
        );
        let field = driver.find("#name").await.unwrap();
        field.send_keys(name).await.unwrap();
        // Keyboard: Tab moves from the name to the password to the code.
        driver.press(TAB).await.unwrap();
        assert_eq!(
            driver
                .active_element()
                .await
                .unwrap()
                .attr("id")
                .await
                .unwrap()
                .as_deref(),
            Some("password")
        );
        driver
            .active_element()
            .await
            .unwrap()
            .send_keys(PASSWORD)
            .await
            .unwrap();
        driver.press(TAB).await.unwrap();
        let code = driver.active_element().await.unwrap();
        assert_eq!(code.attr("id").await.unwrap().as_deref(), Some("code"));
        code.send_keys(&self.code(secret)).await.unwrap();
        code.send_keys(webdriver::ENTER).await.unwrap();
        driver
            .wait_for("#operator", |text| text == name, Duration::from_secs(10))
            .await
            .unwrap();
    }

    async fn finish(mut self, driver: Driver) {
        driver.quit().await.unwrap();
        self.served.stop();
        self.db.cleanup().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_lead_signs_in_with_totp_approves_and_the_onboarding_advances() {
    let Some(driver) = browser().await else {
        return;
    };
    let world = World::new().await;
    let secret = world.operator("lea.lead", Role::Lead).await;
    world.won_deal().await;

    world.sign_in(&driver, "lea.lead", &secret).await;
    // The session cookie is out of the page's reach.
    let cookies = driver.cookies().await.unwrap();
    let session = cookies
        .iter()
        .find(|c| c.name == "gatehouse_session")
        .expect("the session cookie");
    assert!(session.http_only && session.secure, "{session:?}");
    assert_eq!(session.same_site.as_deref(), Some("Strict"));
    assert_eq!(
        driver
            .execute("return document.cookie", vec![])
            .await
            .unwrap(),
        json!("")
    );

    // The inbox lists the onboarding's first gated step.
    let row = driver.find("#approvals tbody tr").await.unwrap();
    assert!(row.text().await.unwrap().contains("create-tenant"));
    driver
        .screenshot(artefacts().join("approvals-inbox.png"))
        .await
        .unwrap();
    driver
        .find("#approvals tbody tr a")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    driver
        .wait_for("#state", |text| text == "pending", Duration::from_secs(5))
        .await
        .unwrap();
    driver
        .find("#reason")
        .await
        .unwrap()
        .send_keys("signed MSA received")
        .await
        .unwrap();
    driver
        .screenshot(artefacts().join("approval.png"))
        .await
        .unwrap();
    driver
        .find("#approve")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    driver
        .wait_for(
            "#notice",
            |text| text.contains("Approved"),
            Duration::from_secs(10),
        )
        .await
        .unwrap();
    assert!(
        driver
            .find("#decisions")
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
            .contains("lea.lead approved")
    );

    // The step runs; the onboarding moves to its next stage.
    world.settle().await;
    driver
        .goto(&world.url("/console/onboarding"))
        .await
        .unwrap();
    let card = driver.find("#board .card").await.unwrap();
    assert_eq!(
        card.attr("data-stage").await.unwrap().as_deref(),
        Some("access")
    );
    let text = card.text().await.unwrap();
    assert!(
        text.contains("Tailspin Toys") && text.contains("1 of 2 steps"),
        "{text}"
    );
    driver
        .screenshot(artefacts().join("onboarding-board.png"))
        .await
        .unwrap();
    driver.goto(&world.url("/console/analytics")).await.unwrap();
    driver.find("#runs-chart svg").await.unwrap();
    driver
        .screenshot(artefacts().join("analytics.png"))
        .await
        .unwrap();

    // The next approval waits in the inbox.
    driver.goto(&world.url("/console/approvals")).await.unwrap();
    let row = driver.find("#approvals tbody tr").await.unwrap();
    assert!(row.text().await.unwrap().contains("rmm-organization"));
    world.finish(driver).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_technician_cannot_approve() {
    let Some(driver) = browser().await else {
        return;
    };
    let world = World::new().await;
    let secret = world.operator("tom.tech", Role::Technician).await;
    world.won_deal().await;

    world.sign_in(&driver, "tom.tech", &secret).await;
    driver
        .find("#approvals tbody tr a")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    driver
        .find("#reason")
        .await
        .unwrap()
        .send_keys("I think it is fine")
        .await
        .unwrap();
    driver
        .find("#approve")
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    let error = driver
        .wait_for("#error", |text| !text.is_empty(), Duration::from_secs(10))
        .await
        .unwrap();
    assert!(error.text().await.unwrap().contains("admin or lead role"));
    assert_eq!(
        driver.find("#state").await.unwrap().text().await.unwrap(),
        "pending"
    );
    driver
        .screenshot(artefacts().join("technician-refused.png"))
        .await
        .unwrap();
    world.finish(driver).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_pages_fit_a_phone() {
    let Some(driver) = browser().await else {
        return;
    };
    let world = World::new().await;
    let secret = world.operator("lea.lead", Role::Lead).await;
    world.won_deal().await;
    driver.set_window_size(390, 844).await.unwrap();
    world.sign_in(&driver, "lea.lead", &secret).await;
    for (path, shot) in [
        ("/console/approvals", "phone-approvals.png"),
        ("/console/onboarding", "phone-onboarding.png"),
        ("/console/tasks", "phone-tasks.png"),
        ("/console/tenants", "phone-tenants.png"),
        ("/console/people", "phone-people.png"),
        ("/console/audit", "phone-audit.png"),
        ("/console/analytics", "phone-analytics.png"),
    ] {
        driver.goto(&world.url(path)).await.unwrap();
        let fits = driver
            .execute(
                "return document.documentElement.scrollWidth <= window.innerWidth",
                vec![],
            )
            .await
            .unwrap();
        assert_eq!(fits, json!(true), "{path} scrolls sideways at 390 px");
        driver.screenshot(artefacts().join(shot)).await.unwrap();
    }
    world.finish(driver).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_operator_scoped_to_one_tenant_never_sees_another() {
    let Some(driver) = browser().await else {
        return;
    };
    let world = World::new().await;
    for slug in ["acme", "beta"] {
        let response = world
            .served
            .http
            .post(world.url("/api/v1/tenants"))
            .bearer_auth(&world.served.admin)
            .json(&json!({"slug": slug, "display_name": format!("{slug} corp"), "region": "eu"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), reqwest::StatusCode::CREATED);
    }
    let secret = world.operator("sam.scoped", Role::Lead).await;
    let system = Actor::System("test");
    let sam = world
        .served
        .app
        .find_operator(&system, &OperatorName::parse("sam.scoped").unwrap())
        .await
        .unwrap();
    world
        .served
        .app
        .set_operator_scope(&system, sam.id, Some((&[TenantRef::parse("acme")], &[])))
        .await
        .unwrap();
    // The onboarding of a new client is the installation's, not acme's.
    world.won_deal().await;

    world.sign_in(&driver, "sam.scoped", &secret).await;
    // The inbox: nothing of the onboarding.
    let inbox = driver.page_source().await.unwrap();
    assert!(driver.find("#empty").await.is_ok(), "{inbox}");
    assert!(!inbox.contains("create-tenant"), "{inbox}");
    // Tenants: acme alone.
    driver.goto(&world.url("/console/tenants")).await.unwrap();
    let rows = driver.find_all("#tenants tbody tr").await.unwrap();
    assert_eq!(rows.len(), 1);
    assert!(rows[0].text().await.unwrap().contains("acme corp"));
    assert!(!driver.page_source().await.unwrap().contains("beta"));
    driver
        .screenshot(artefacts().join("scoped-tenants.png"))
        .await
        .unwrap();
    // Their people page opens; beta's is not found, like a missing tenant.
    driver
        .goto(&world.url("/console/people/acme"))
        .await
        .unwrap();
    assert!(driver.find("#error").await.is_err());
    for path in ["/console/people/beta", "/console/people/no-such-tenant"] {
        driver.goto(&world.url(path)).await.unwrap();
        let error = driver.find("#error").await.unwrap().text().await.unwrap();
        assert!(error.starts_with("no tenant"), "{path}: {error}");
    }
    driver
        .screenshot(artefacts().join("scoped-other-tenant.png"))
        .await
        .unwrap();
    // The audit browser: acme's log, and nothing from beta or the system.
    let app = &world.served.app;
    let sequencer = gatehouse_server::audit::Sequencer::new(app.store.clone(), app.keyring.clone());
    while sequencer.run_once(4096).await.unwrap() > 0 {}
    driver.goto(&world.url("/console/audit")).await.unwrap();
    let audit = driver.page_source().await.unwrap();
    assert!(audit.contains("tenant.created"), "{audit}");
    assert!(!audit.contains("beta"), "{audit}");
    assert!(!audit.contains("operator.created"), "{audit}");
    world.finish(driver).await;
}
