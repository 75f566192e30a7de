//! `serve --demo`'s sandbox: the emulators run in-process, the demo MSP's
//! own tenant gets connectors to them, and the sandbox ConnectWise sends a
//! won deal through the real signed callback once the server listens.
//!
//! The sandbox plays the client's side too: the ConnectWise company has a
//! website, the Graph emulator holds the client's Microsoft 365 tenant
//! (with its own IT administrator and a previous provider's admin among the
//! Global Administrators), the client "accepts" the GDAP request a few
//! seconds after it is sent, and devices check in a few seconds after the
//! agent installer link is made. So a person who approves every step and
//! signs off the three L3 tasks sees the onboarding reach go-live.
//!
//! Nothing here is special-cased in the product: the connectors are set
//! through the same service as `gatehouse connector set`, their credentials
//! are the MSP tenant's sealed secrets, and the won deal arrives at
//! `/hooks/connectwise/{msp}` signed as ConnectWise signs it, so the intake
//! verifies it like any other.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use gatehouse_connectors::connectwise::{ConnectWiseClient, ConnectWiseConfig, NewCallback};
use gatehouse_connectors::http::Secret;
use gatehouse_core::clock::Clock;
use gatehouse_core::connector::{ConnectorKind, ConnectorName, ConnectorSpec};
use gatehouse_core::secret::SecretName;
use gatehouse_core::tenant::{DisplayName, Region, TenantSlug, TenantState};
use gatehouse_sandbox::{AutoEnroll, Sandbox};
use gatehouse_server::app::{Actor, NewTenant, TenantRef};
use gatehouse_server::{App, AppError};
use serde_json::{Value, json};

use crate::CliError;

const ACTOR: Actor = Actor::System("demo seed");

/// The onboarding owner of the demo's deals (the demo's service lead).
pub const DEMO_OWNER: &str = "lea.lindqvist@demo-msp.example";

/// The client whose deal the sandbox PSA wins.
pub const DEMO_CLIENT: &str = "Tailspin Toys";

/// The client's website, as the sandbox ConnectWise holds it.
pub const DEMO_WEBSITE: &str = "https://www.tailspintoys.com";

/// The client's Microsoft 365 tenant in the sandbox Graph (synthetic).
pub const DEMO_CUSTOMER_TENANT: &str = "6f1c2d3e-4a5b-4c6d-8e7f-90a1b2c3d4e5";

/// The previous provider's partner tenant in the sandbox Graph (synthetic).
pub const DEMO_PREVIOUS_PROVIDER: &str = "0b9a8c7d-6e5f-4a3b-9c2d-1e0f9a8b7c6d";

/// How long after the GDAP request the demo client accepts it, and after
/// the installer link the devices check in.
const DEMO_CLIENT_DELAY: Duration = Duration::from_secs(5);

/// How many of the client's devices check in.
const DEMO_DEVICES: usize = 3;

/// Sets up the client's side in the sandbox: its Microsoft 365 tenant
/// (domains `tailspintoys.onmicrosoft.com`, the default, and
/// `tailspintoys.com`; the MSP's app consented; its own IT administrator
/// and a previous provider's admin account as Global Administrators), a
/// client that accepts GDAP requests and devices that run the agent
/// installer, each [`DEMO_CLIENT_DELAY`] later.
pub fn seed_client_side(sandbox: &Sandbox) {
    let graph = &sandbox.graph;
    let c = &sandbox.credentials;
    graph.add_tenant(DEMO_CUSTOMER_TENANT, DEMO_CLIENT);
    graph.add_domain(DEMO_CUSTOMER_TENANT, "tailspintoys.com");
    graph.consent_app(DEMO_CUSTOMER_TENANT, &c.graph_app.0, &c.graph_app.1);
    if let Some(admin) = graph.add_user(
        DEMO_CUSTOMER_TENANT,
        "it.admin@tailspintoys.com",
        "Tailspin Toys IT",
    ) {
        graph.assign_directory_role(
            DEMO_CUSTOMER_TENANT,
            gatehouse_sandbox::graph::GLOBAL_ADMINISTRATOR,
            &admin,
        );
    }
    graph.seed_previous_provider(
        DEMO_CUSTOMER_TENANT,
        DEMO_PREVIOUS_PROVIDER,
        "Fourth Coffee IT",
    );
    graph.set_auto_accept_gdap(Some(DEMO_CLIENT_DELAY));
    let auto = AutoEnroll {
        devices: DEMO_DEVICES,
        delay: DEMO_CLIENT_DELAY,
    };
    sandbox.ninjaone.set_auto_enroll(Some(auto));
    sandbox.dattormm.set_auto_enroll(Some(auto));
}

/// Creates the MSP's own tenant (if missing) and points its connectors at
/// `sandbox`, with the sandbox's credentials sealed as its secrets.
/// Repeating it (a restart) replaces them with the new run's.
pub async fn wire(app: &App, sandbox: &Sandbox, msp: &TenantSlug) -> Result<(), CliError> {
    let tenant = TenantRef::Slug(msp.clone());
    match app.get_tenant(&ACTOR, &tenant).await {
        Ok(_) => {}
        Err(AppError::NotFound { .. }) => {
            app.create_tenant(
                &ACTOR,
                NewTenant {
                    slug: msp.clone(),
                    display_name: DisplayName::parse("Gatehouse Demo MSP")?,
                    region: Region::parse("eu")?,
                    state: TenantState::Active,
                },
            )
            .await?;
        }
        Err(err) => return Err(err.into()),
    }
    seed_client_side(sandbox);
    let c = &sandbox.credentials;
    let connectors = [
        (
            ConnectorKind::ConnectWise,
            sandbox.connectwise.url(),
            json!({
                "company_id": c.connectwise.company_id,
                "public_key": c.connectwise.public_key,
                "client_id": c.connectwise.client_id,
            }),
            vec![("private_key", c.connectwise.private_key.clone())],
        ),
        (
            ConnectorKind::NinjaOne,
            sandbox.ninjaone.url(),
            json!({ "client_id": c.ninjaone.0 }),
            vec![("client_secret", c.ninjaone.1.clone())],
        ),
        (
            ConnectorKind::ItGlue,
            sandbox.itglue.url(),
            json!({}),
            vec![("api_key", c.itglue_key.clone())],
        ),
        (
            ConnectorKind::Graph,
            sandbox.graph.url(),
            json!({
                "login_base": sandbox.graph.url(),
                "partner_tenant_id": c.partner_tenant_id,
                "client_id": c.graph_app.0,
            }),
            vec![("client_secret", c.graph_app.1.clone())],
        ),
    ];
    for (kind, base_url, settings, credentials) in connectors {
        let mut secrets = BTreeMap::new();
        for (role, value) in credentials {
            let name = SecretName::parse(&format!("{}.{}", kind.as_str(), role.replace('_', "-")))?;
            app.put_secret(&ACTOR, &tenant, &name, value.as_bytes())
                .await?;
            secrets.insert(role.to_owned(), name);
        }
        let name = ConnectorName::parse(kind.as_str())?;
        let spec = ConnectorSpec {
            kind,
            base_url,
            settings,
            secrets,
        };
        app.set_connector(&ACTOR, &tenant, &name, spec).await?;
    }
    Ok(())
}

/// Seeds the client and its opportunity in the sandbox ConnectWise,
/// registers the callback to `base`'s intake (as an MSP engineer would in
/// ConnectWise) and wins the deal: ConnectWise delivers the signed
/// callback. Answers what the intake said (its HTTP status).
pub async fn send_won_deal(
    sandbox: &Sandbox,
    base: &str,
    msp: &TenantSlug,
    clock: Arc<dyn Clock>,
) -> Result<Value, CliError> {
    let cw = &sandbox.connectwise;
    // The MSP's own opportunity status for clients that went live, which
    // the template's `close-opportunity` step sets.
    cw.add_opportunity_status("Onboarded", true, true);
    let company = cw.seed_company(DEMO_CLIENT, "Active");
    cw.set_company_website(company, DEMO_WEBSITE);
    let opportunity = cw.seed_opportunity("Managed services, 45 seats", company, "Open", None);
    let c = &sandbox.credentials.connectwise;
    let client = ConnectWiseClient::new(
        ConnectWiseConfig {
            base_url: cw.url(),
            company_id: c.company_id.clone(),
            public_key: c.public_key.clone(),
            private_key: Secret::new(c.private_key.clone()),
            client_id: c.client_id.clone(),
        },
        clock,
    )
    .map_err(|e| CliError::Usage(format!("demo: {e}")))?;
    client
        .register_callback(
            &NewCallback {
                description: "Gatehouse: won opportunities start onboardings".into(),
                url: format!("{base}/hooks/connectwise/{msp}"),
                object_id: 0,
                kind: "Opportunity".into(),
                level: "Owner".into(),
            },
            "demo-callback",
        )
        .await
        .map_err(|e| CliError::Usage(format!("demo: registering the callback: {e}")))?;
    let deliveries = cw.win_opportunity(opportunity).await;
    Ok(json!({
        "company": company,
        "opportunity": opportunity,
        "deliveries": deliveries.iter().map(|d| d.status).collect::<Vec<_>>(),
    }))
}
