//! The Autotask client against the Autotask emulator, over real HTTP.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests fail loudly"
)]

use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use gatehouse_connectors::ConnectorError;
use gatehouse_connectors::autotask::{AutotaskClient, AutotaskConfig, NewCompanyWebhook};
use gatehouse_connectors::http::Secret;
use gatehouse_connectors::ports::{CompanyUpdate, Psa};
use gatehouse_core::clock::FakeClock;
use gatehouse_sandbox::WebhookSink;
use gatehouse_sandbox::psa::autotask::{AutotaskCredentials, AutotaskEmulator};
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha1::Sha1;
use time::macros::datetime;

/// Picklist values of the emulator (Autotask's usual ones).
const CUSTOMER: u64 = 1;
const PROSPECT: u64 = 3;
const ACTIVE: u64 = 1;
const LOST: u64 = 2;
const CLOSED: u64 = 3;
const IMPLEMENTED: u64 = 4;

async fn emulator() -> AutotaskEmulator {
    AutotaskEmulator::start(AutotaskCredentials {
        username: "api@msp.example".into(),
        secret: "at-secret".into(),
        integration_code: "TRACKING-ID".into(),
    })
    .await
    .unwrap()
}

fn client_with(at: &AutotaskEmulator, username: &str, secret: &str) -> AutotaskClient {
    AutotaskClient::new(
        AutotaskConfig {
            discovery_url: at.url(),
            username: username.into(),
            secret: Secret::new(secret),
            integration_code: "TRACKING-ID".into(),
        },
        Arc::new(FakeClock::default()),
    )
    .unwrap()
}

fn client(at: &AutotaskEmulator) -> AutotaskClient {
    client_with(at, "api@msp.example", "at-secret")
}

#[tokio::test]
async fn wrong_secret_or_unknown_user_is_an_auth_error() {
    let at = emulator().await;
    let id = at.seed_company("Acme", PROSPECT).to_string();
    let error = client_with(&at, "api@msp.example", "wrong-secret")
        .company(&id)
        .await
        .unwrap_err();
    assert!(matches!(error, ConnectorError::Auth { .. }), "{error:?}");
    assert!(!error.to_string().contains("wrong-secret"), "{error}");
    let unknown = client_with(&at, "nobody@msp.example", "at-secret")
        .company(&id)
        .await
        .unwrap_err();
    assert!(
        matches!(unknown, ConnectorError::Auth { .. }),
        "{unknown:?}"
    );
    at.shutdown().await;
}

#[tokio::test]
async fn the_zone_is_discovered_once_and_a_company_read_and_converted() {
    let at = emulator().await;
    let id = at.seed_company("Acme", PROSPECT);
    at.seed_contract(id, "Managed Services Gold");
    let psa = client(&at);

    let company = psa.company(&id.to_string()).await.unwrap().unwrap();
    assert_eq!(company.name, "Acme");
    assert_eq!(company.status.as_deref(), Some("Prospect"));
    assert_eq!(company.contract.as_deref(), Some("Managed Services Gold"));
    assert_eq!(psa.company("777").await.unwrap(), None);

    let update = CompanyUpdate {
        status: Some("Customer".into()),
        contract: None,
    };
    let updated = psa
        .update_company(&id.to_string(), &update, "k1")
        .await
        .unwrap();
    assert_eq!(updated.status.as_deref(), Some("Customer"));
    assert_eq!(at.company(id).unwrap()["companyType"], CUSTOMER);
    assert_eq!(at.harness().counted("companies.updated"), 1);
    // Unchanged status: nothing written.
    psa.update_company(&id.to_string(), &update, "k2")
        .await
        .unwrap();
    assert_eq!(at.harness().counted("companies.updated"), 1);
    assert_eq!(at.harness().counted("zone.lookups"), 1);
    at.shutdown().await;
}

#[tokio::test]
async fn a_contract_is_created_once_by_lookup_and_by_key() {
    let at = emulator().await;
    let id = at.seed_company("Acme", CUSTOMER).to_string();
    let psa = client(&at);
    let update = CompanyUpdate {
        status: None,
        contract: Some("Managed Services".into()),
    };
    for _ in 0..2 {
        let company = psa
            .update_company(&id, &update, "wf_1:contract")
            .await
            .unwrap();
        assert_eq!(company.contract.as_deref(), Some("Managed Services"));
    }
    assert_eq!(at.harness().counted("contracts.created"), 1);

    // When the lookup cannot see it, the forwarded key still saves the retry.
    let other = at.seed_company("Beta", CUSTOMER).to_string();
    at.set_list_lag(true);
    psa.update_company(&other, &update, "wf_2:contract")
        .await
        .unwrap();
    psa.update_company(&other, &update, "wf_2:contract")
        .await
        .unwrap();
    assert_eq!(at.harness().counted("contracts.created"), 2);
    assert_eq!(at.harness().counted("idempotent_replays"), 1);
    let created: Vec<Value> = at
        .contracts()
        .into_iter()
        .filter(|c| c["companyID"].as_u64().map(|n| n.to_string()) == Some(other.clone()))
        .collect();
    assert_eq!(created.len(), 1);
    assert_eq!(created[0]["contractType"], 7);
    at.shutdown().await;
}

#[tokio::test]
async fn an_opportunity_status_change_closes_it() {
    let at = emulator().await;
    let company = at.seed_company("Acme", PROSPECT);
    let id = at.seed_opportunity("Acme MSA", company, ACTIVE, None);
    let psa = client(&at);

    let open = psa.opportunity(&id.to_string()).await.unwrap().unwrap();
    assert_eq!((open.status.as_str(), open.won), ("Active", false));
    let lost = psa
        .set_opportunity_status(&id.to_string(), "Lost", "k")
        .await
        .unwrap();
    assert_eq!((lost.status.as_str(), lost.won), ("Lost", false));
    assert_eq!(lost.closed_at, Some(datetime!(2026-01-01 0:00 UTC)));
    assert_eq!(at.opportunity(id).unwrap()["status"], LOST);
    assert_eq!(at.harness().counted("opportunities.updated"), 1);

    let error = psa
        .set_opportunity_status(&id.to_string(), "Pending", "k2")
        .await
        .unwrap_err();
    assert!(error.to_string().contains("Pending"), "{error}");
    at.shutdown().await;
}

#[tokio::test]
async fn won_opportunities_follows_next_page_urls_and_keeps_only_won_since() {
    let at = emulator().await;
    let company = at.seed_company("Acme", CUSTOMER);
    let since = datetime!(2026-03-01 0:00 UTC);
    let mut want = Vec::new();
    for i in 0..5i64 {
        let at_time = since + time::Duration::hours(10 - i);
        let status = if i % 2 == 0 { CLOSED } else { IMPLEMENTED };
        want.push((
            at.seed_opportunity(&format!("deal {i}"), company, status, Some(at_time))
                .to_string(),
            at_time,
        ));
    }
    at.seed_opportunity(
        "before",
        company,
        CLOSED,
        Some(since - time::Duration::seconds(1)),
    );
    at.seed_opportunity(
        "lost",
        company,
        LOST,
        Some(since + time::Duration::hours(1)),
    );
    let open = at.seed_opportunity("open", company, ACTIVE, None);
    at.seed_opportunity("still open", company, ACTIVE, None);
    // Won in the PSA; Autotask sends no webhook for it, so it is found by polling.
    let won_at = since + time::Duration::hours(20);
    at.set_now(won_at);
    assert!(at.win_opportunity(open));
    want.push((open.to_string(), won_at));
    let psa = client(&at).with_page_size(2);

    let won = psa.won_opportunities(since).await.unwrap();
    want.sort_by_key(|(_, t)| *t);
    let got: Vec<(String, time::OffsetDateTime)> = won
        .iter()
        .map(|o| (o.id.clone(), o.closed_at.unwrap()))
        .collect();
    assert_eq!(got, want);
    at.shutdown().await;
}

#[tokio::test]
async fn rate_limits_and_outages_are_retryable() {
    let at = emulator().await;
    let id = at.seed_company("Acme", CUSTOMER).to_string();
    let psa = client(&at);

    at.harness().rate_limit_next(1, 30);
    let limited = psa.company(&id).await.unwrap_err();
    assert!(limited.is_retryable(), "{limited:?}");
    assert_eq!(limited.retry_after(), Some(Duration::from_secs(30)));
    assert!(psa.company(&id).await.unwrap().is_some());

    at.harness().set_down(true);
    let down = psa.company(&id).await.unwrap_err();
    assert!(down.is_retryable(), "{down:?}");
    at.harness().set_down(false);
    at.shutdown().await;
}

/// Autotask's scheme, computed here independently of the emulator.
fn expected_signature(secret: &str, body: &[u8]) -> String {
    let mut mac = Hmac::<Sha1>::new_from_slice(secret.as_bytes()).unwrap();
    mac.update(body);
    format!(
        "sha1={}",
        base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
    )
}

#[tokio::test]
async fn a_company_webhook_is_signed_and_a_tampered_one_is_not() {
    let at = emulator().await;
    let sink = WebhookSink::start().await.unwrap();
    let psa = client(&at);
    let webhook = NewCompanyWebhook {
        name: "Gatehouse".into(),
        url: sink.url(),
        deactivation_url: format!("{}/deactivated", sink.url()),
        secret_key: Secret::new("hook-secret-key"),
        subscribed_fields: vec![2],     // companyType
        display_always_fields: vec![1], // companyName
    };
    let id = psa
        .register_company_webhook(&webhook, "setup")
        .await
        .unwrap();
    assert_eq!(
        psa.register_company_webhook(&webhook, "setup-again")
            .await
            .unwrap(),
        id
    );
    assert_eq!(at.harness().counted("webhooks.created"), 1);
    assert_eq!(at.harness().counted("webhook_fields.created"), 2);
    assert_eq!(at.webhooks()[0]["isReady"], true);

    let company = at.seed_company("Acme", PROSPECT);
    assert!(
        at.update_company(company, json!({"phone": "555"}))
            .await
            .is_empty(),
        "phone is not subscribed"
    );
    let deliveries = at
        .update_company(company, json!({"companyType": CUSTOMER}))
        .await;
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].status, Some(200));

    let hook = &sink.received()[0];
    let signature = hook.header("x-hook-signature").unwrap();
    assert_eq!(signature, expected_signature("hook-secret-key", &hook.body));
    let payload: Value = serde_json::from_slice(&hook.body).unwrap();
    assert_eq!(payload["Action"], "Update");
    assert_eq!(payload["EntityType"], "Company");
    assert_eq!(payload["Id"], company);
    assert_eq!(
        payload["Fields"],
        json!({"companyType": CUSTOMER, "companyName": "Acme"})
    );
    assert_eq!(payload["Guid"], at.webhooks()[0]["webhookGUID"]);

    let tampered = String::from_utf8(hook.body.clone())
        .unwrap()
        .replace("Acme", "Evil");
    assert_eq!(deliveries[0].with_body(tampered).send().await, Some(200));
    let forged = &sink.received()[1];
    assert_ne!(
        forged.header("x-hook-signature").unwrap(),
        expected_signature("hook-secret-key", &forged.body)
    );
    assert_eq!(at.harness().counted("webhooks.delivered"), 1);
    sink.shutdown().await;
    at.shutdown().await;
}
