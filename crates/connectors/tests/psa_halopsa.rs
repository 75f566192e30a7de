//! The HaloPSA client against the HaloPSA emulator, over real HTTP.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests fail loudly"
)]

use std::sync::Arc;
use std::time::Duration;

use gatehouse_connectors::ConnectorError;
use gatehouse_connectors::halopsa::{HaloPsaClient, HaloPsaConfig, NewWebhook, WebhookAuth};
use gatehouse_connectors::http::Secret;
use gatehouse_connectors::ports::{CompanyUpdate, Psa};
use gatehouse_core::clock::FakeClock;
use gatehouse_sandbox::WebhookSink;
use gatehouse_sandbox::psa::halopsa::{HaloCredentials, HaloPsaEmulator, WON_STATUS};
use serde_json::Value;
use time::macros::datetime;

/// The CRM ticket type that holds opportunities, and another one.
const OPPORTUNITY: u64 = 30;
const INCIDENT: u64 = 1;
/// Ticket statuses of the emulator.
const NEW: u64 = 1;
const LOST: u64 = 21;

async fn emulator() -> HaloPsaEmulator {
    HaloPsaEmulator::start(HaloCredentials {
        client_id: "gatehouse-app".into(),
        client_secret: "halo-secret".into(),
    })
    .await
    .unwrap()
}

fn client_with(halo: &HaloPsaEmulator, secret: &str) -> HaloPsaClient {
    HaloPsaClient::new(
        HaloPsaConfig {
            base_url: halo.url(),
            tenant: None,
            client_id: "gatehouse-app".into(),
            client_secret: Secret::new(secret),
            scope: "all".into(),
            opportunity_ticket_type: OPPORTUNITY,
            won_status: "Won".into(),
        },
        Arc::new(FakeClock::default()),
    )
    .unwrap()
}

fn client(halo: &HaloPsaEmulator) -> HaloPsaClient {
    client_with(halo, "halo-secret")
}

#[tokio::test]
async fn a_refused_client_secret_is_an_auth_error() {
    let halo = emulator().await;
    let id = halo.seed_client("Acme", "Prospect").to_string();
    let error = client_with(&halo, "wrong-secret")
        .company(&id)
        .await
        .unwrap_err();
    assert!(matches!(error, ConnectorError::Auth { .. }), "{error:?}");
    assert!(!error.to_string().contains("wrong-secret"), "{error}");
    halo.shutdown().await;
}

#[tokio::test]
async fn a_revoked_token_is_replaced_once_and_the_call_succeeds() {
    let halo = emulator().await;
    let id = halo.seed_client("Acme", "Prospect").to_string();
    let psa = client(&halo);
    assert!(psa.company(&id).await.unwrap().is_some());
    assert_eq!(halo.harness().counted("tokens.issued"), 1);
    psa.company(&id).await.unwrap();
    assert_eq!(
        halo.harness().counted("tokens.issued"),
        1,
        "the token is cached"
    );

    halo.expire_tokens();
    assert!(psa.company(&id).await.unwrap().is_some());
    assert_eq!(halo.harness().counted("tokens.issued"), 2);
    halo.shutdown().await;
}

#[tokio::test]
async fn a_client_is_read_and_its_customer_type_changed() {
    let halo = emulator().await;
    let id = halo.seed_client("Acme", "Prospect");
    halo.seed_contract(id, "Managed Services Gold");
    let psa = client(&halo);

    let company = psa.company(&id.to_string()).await.unwrap().unwrap();
    assert_eq!(company.name, "Acme");
    assert_eq!(company.status.as_deref(), Some("Prospect"));
    assert_eq!(company.contract.as_deref(), Some("Managed Services Gold"));
    assert_eq!(psa.company("5555").await.unwrap(), None);

    let update = CompanyUpdate {
        status: Some("Customer".into()),
        contract: None,
    };
    let updated = psa
        .update_company(&id.to_string(), &update, "k1")
        .await
        .unwrap();
    assert_eq!(updated.status.as_deref(), Some("Customer"));
    assert_eq!(halo.client(id).unwrap()["customertype"], "Customer");
    assert_eq!(halo.harness().counted("clients.updated"), 1);
    halo.shutdown().await;
}

#[tokio::test]
async fn a_contract_is_created_once_by_lookup_and_by_key() {
    let halo = emulator().await;
    let id = halo.seed_client("Acme", "Customer").to_string();
    let psa = client(&halo);
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
    assert_eq!(halo.harness().counted("contracts.created"), 1);

    let other = halo.seed_client("Beta", "Customer").to_string();
    halo.set_list_lag(true);
    psa.update_company(&other, &update, "wf_2:contract")
        .await
        .unwrap();
    psa.update_company(&other, &update, "wf_2:contract")
        .await
        .unwrap();
    assert_eq!(halo.harness().counted("contracts.created"), 2);
    assert_eq!(halo.harness().counted("idempotent_replays"), 1);
    halo.shutdown().await;
}

#[tokio::test]
async fn an_opportunity_is_a_crm_ticket_whose_status_changes() {
    let halo = emulator().await;
    let company = halo.seed_client("Acme", "Prospect");
    let id = halo.seed_ticket("Acme MSA", company, OPPORTUNITY, NEW, None);
    let incident = halo.seed_ticket("Printer on fire", company, INCIDENT, NEW, None);
    let psa = client(&halo);

    let open = psa.opportunity(&id.to_string()).await.unwrap().unwrap();
    assert_eq!(
        (open.status.as_str(), open.won, open.closed_at),
        ("New", false, None)
    );
    assert_eq!(
        psa.opportunity(&incident.to_string()).await.unwrap(),
        None,
        "not an opportunity"
    );

    let won = psa
        .set_opportunity_status(&id.to_string(), "Won", "k")
        .await
        .unwrap();
    assert!(won.won);
    assert_eq!(won.closed_at, Some(datetime!(2026-01-01 0:00 UTC)));
    assert_eq!(halo.ticket(id).unwrap()["status_id"], WON_STATUS);
    assert_eq!(halo.harness().counted("tickets.updated"), 1);

    let refused = psa
        .set_opportunity_status(&incident.to_string(), "Won", "k2")
        .await
        .unwrap_err();
    assert_eq!(refused.status(), Some(404));
    assert_eq!(halo.ticket(incident).unwrap()["status_id"], NEW);
    halo.shutdown().await;
}

#[tokio::test]
async fn won_opportunities_reads_every_page_and_keeps_only_won_since() {
    let halo = emulator().await;
    let company = halo.seed_client("Acme", "Customer");
    let since = datetime!(2026-04-01 0:00 UTC);
    let mut want = Vec::new();
    for i in 0..5i64 {
        let at = since + time::Duration::minutes(50 - i);
        want.push((
            halo.seed_ticket(
                &format!("deal {i}"),
                company,
                OPPORTUNITY,
                WON_STATUS,
                Some(at),
            )
            .to_string(),
            at,
        ));
    }
    halo.seed_ticket(
        "old",
        company,
        OPPORTUNITY,
        WON_STATUS,
        Some(since - time::Duration::days(1)),
    );
    halo.seed_ticket(
        "lost",
        company,
        OPPORTUNITY,
        LOST,
        Some(since + time::Duration::days(1)),
    );
    halo.seed_ticket(
        "won incident?",
        company,
        INCIDENT,
        WON_STATUS,
        Some(since + time::Duration::days(1)),
    );
    let psa = client(&halo).with_page_size(2);

    let won = psa.won_opportunities(since).await.unwrap();
    want.sort_by_key(|(_, at)| *at);
    let got: Vec<(String, time::OffsetDateTime)> = won
        .iter()
        .map(|o| (o.id.clone(), o.closed_at.unwrap()))
        .collect();
    assert_eq!(got, want);
    halo.shutdown().await;
}

#[tokio::test]
async fn rate_limits_and_outages_are_retryable() {
    let halo = emulator().await;
    let id = halo.seed_client("Acme", "Customer").to_string();
    let psa = client(&halo);
    psa.company(&id).await.unwrap();

    halo.harness().rate_limit_next(1, 12);
    let limited = psa.company(&id).await.unwrap_err();
    assert!(limited.is_retryable(), "{limited:?}");
    assert_eq!(limited.retry_after(), Some(Duration::from_secs(12)));
    assert!(psa.company(&id).await.unwrap().is_some());

    halo.harness().set_down(true);
    let down = psa.company(&id).await.unwrap_err();
    assert!(down.is_retryable(), "{down:?}");
    halo.harness().set_down(false);
    halo.shutdown().await;
}

#[tokio::test]
async fn a_won_ticket_webhook_carries_the_configured_secret_and_the_ticket() {
    let halo = emulator().await;
    let sink = WebhookSink::start().await.unwrap();
    let psa = client(&halo);
    let webhook = NewWebhook {
        name: "Gatehouse".into(),
        url: sink.url(),
        events: vec!["Ticket Updated".into()],
        auth: WebhookAuth::Bearer(Secret::new("long-random-webhook-secret")),
    };
    let id = psa.register_webhook(&webhook, "setup").await.unwrap();
    assert_eq!(psa.register_webhook(&webhook, "setup-2").await.unwrap(), id);
    assert_eq!(halo.webhooks().len(), 1);

    let company = halo.seed_client("Acme", "Prospect");
    let ticket = halo.seed_ticket("Acme MSA", company, OPPORTUNITY, NEW, None);
    let deliveries = halo.win_opportunity(ticket).await;
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].status, Some(200));

    let hook = &sink.received()[0];
    // Halo signs nothing: the receiver checks the secret header, then
    // re-reads the record by id instead of trusting the body.
    assert_eq!(
        hook.header("authorization"),
        Some("Bearer long-random-webhook-secret")
    );
    let payload: Value = serde_json::from_slice(&hook.body).unwrap();
    assert_eq!(payload["ticket"]["id"], ticket);
    assert_eq!(payload["action"]["ticket_id"], ticket);
    let reread = psa.opportunity(&ticket.to_string()).await.unwrap().unwrap();
    assert!(reread.won);

    // A forged body with a wrong secret is told apart only by the header.
    let mut forged = deliveries[0].with_body(hook.body.clone());
    forged.headers = vec![("Authorization".into(), "Bearer guessed".into())];
    forged.send().await;
    assert_ne!(
        sink.received()[1].header("authorization"),
        hook.header("authorization")
    );
    assert_eq!(halo.harness().counted("webhooks.delivered"), 1);
    sink.shutdown().await;
    halo.shutdown().await;
}
