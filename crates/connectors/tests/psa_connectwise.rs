//! The ConnectWise client against the ConnectWise emulator, over real HTTP.

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
use gatehouse_connectors::connectwise::{ConnectWiseClient, ConnectWiseConfig, NewCallback};
use gatehouse_connectors::http::Secret;
use gatehouse_connectors::ports::{CompanyUpdate, Psa};
use gatehouse_core::clock::FakeClock;
use gatehouse_sandbox::WebhookSink;
use gatehouse_sandbox::psa::connectwise::{ConnectWiseCredentials, ConnectWiseEmulator};
use hmac::{Hmac, Mac};
use serde_json::Value;
use sha2::{Digest, Sha256};
use time::macros::datetime;

async fn emulator() -> ConnectWiseEmulator {
    ConnectWiseEmulator::start(ConnectWiseCredentials {
        company_id: "gatehouse".into(),
        public_key: "pubkey".into(),
        private_key: "privkey".into(),
        client_id: "1a2b3c4d-client".into(),
    })
    .await
    .unwrap()
}

fn client_with(cw: &ConnectWiseEmulator, private_key: &str, client_id: &str) -> ConnectWiseClient {
    ConnectWiseClient::new(
        ConnectWiseConfig {
            base_url: cw.url(),
            company_id: "gatehouse".into(),
            public_key: "pubkey".into(),
            private_key: Secret::new(private_key),
            client_id: client_id.into(),
        },
        Arc::new(FakeClock::default()),
    )
    .unwrap()
}

fn client(cw: &ConnectWiseEmulator) -> ConnectWiseClient {
    client_with(cw, "privkey", "1a2b3c4d-client")
}

#[tokio::test]
async fn wrong_keys_or_client_id_are_an_auth_error_without_the_secret() {
    let cw = emulator().await;
    let id = cw.seed_company("Acme", "Active").to_string();
    for bad in [
        client_with(&cw, "wrong-private", "1a2b3c4d-client"),
        client_with(&cw, "privkey", "other"),
    ] {
        let error = bad.company(&id).await.unwrap_err();
        assert!(matches!(error, ConnectorError::Auth { .. }), "{error:?}");
        assert!(!error.to_string().contains("wrong-private"), "{error}");
    }
    assert!(client(&cw).company(&id).await.unwrap().is_some());
    cw.shutdown().await;
}

#[tokio::test]
async fn a_company_is_read_and_its_status_changed_by_name() {
    let cw = emulator().await;
    let id = cw.seed_company("Acme", "Not-Approved");
    cw.seed_agreement(id, "Managed Services Gold");
    let psa = client(&cw);

    let company = psa.company(&id.to_string()).await.unwrap().unwrap();
    assert_eq!(company.name, "Acme");
    assert_eq!(company.status.as_deref(), Some("Not-Approved"));
    assert_eq!(company.contract.as_deref(), Some("Managed Services Gold"));
    assert_eq!(psa.company("999999").await.unwrap(), None);

    let update = CompanyUpdate {
        status: Some("Active".into()),
        contract: None,
    };
    let updated = psa
        .update_company(&id.to_string(), &update, "step-1")
        .await
        .unwrap();
    assert_eq!(updated.status.as_deref(), Some("Active"));
    assert_eq!(cw.company(id).unwrap()["status"]["name"], "Active");
    assert_eq!(cw.harness().counted("companies.updated"), 1);

    let unknown = CompanyUpdate {
        status: Some("Platinum".into()),
        contract: None,
    };
    let error = psa
        .update_company(&id.to_string(), &unknown, "step-2")
        .await
        .unwrap_err();
    assert!(error.to_string().contains("Platinum"), "{error}");
    let missing = psa
        .update_company("424242", &update, "step-3")
        .await
        .unwrap_err();
    assert_eq!(missing.status(), Some(404));
    cw.shutdown().await;
}

#[tokio::test]
async fn an_agreement_is_created_once_however_often_the_step_runs() {
    let cw = emulator().await;
    let id = cw.seed_company("Acme", "Active").to_string();
    let psa = client(&cw);
    let update = CompanyUpdate {
        status: None,
        contract: Some("Managed Services".into()),
    };

    for _ in 0..3 {
        let company = psa
            .update_company(&id, &update, "wf_1:create-agreement")
            .await
            .unwrap();
        assert_eq!(company.contract.as_deref(), Some("Managed Services"));
    }
    // Another key (a new run of the step) still finds the agreement first.
    psa.update_company(&id, &update, "wf_2:create-agreement")
        .await
        .unwrap();
    assert_eq!(cw.harness().counted("agreements.created"), 1);
    assert_eq!(cw.agreements().len(), 1);
    cw.shutdown().await;
}

#[tokio::test]
async fn the_idempotency_key_saves_a_retry_the_lookup_cannot_see() {
    let cw = emulator().await;
    let id = cw.seed_company("Acme", "Active").to_string();
    let psa = client(&cw);
    let update = CompanyUpdate {
        status: None,
        contract: Some("Managed Services".into()),
    };
    cw.set_list_lag(true);

    psa.update_company(&id, &update, "wf_1:agreement")
        .await
        .unwrap();
    psa.update_company(&id, &update, "wf_1:agreement")
        .await
        .unwrap();
    assert_eq!(cw.harness().counted("agreements.created"), 1);
    assert_eq!(cw.harness().counted("idempotent_replays"), 1);

    // Without the same key nothing could have told the retry apart.
    psa.update_company(&id, &update, "wf_2:agreement")
        .await
        .unwrap();
    assert_eq!(cw.harness().counted("agreements.created"), 2);
    cw.shutdown().await;
}

#[tokio::test]
async fn an_opportunity_status_change_is_applied_and_reported() {
    let cw = emulator().await;
    let company = cw.seed_company("Acme", "Active");
    let id = cw.seed_opportunity("Acme managed services", company, "Open", None);
    let psa = client(&cw);

    let open = psa.opportunity(&id.to_string()).await.unwrap().unwrap();
    assert_eq!(
        (open.status.as_str(), open.won, open.closed_at),
        ("Open", false, None)
    );
    assert_eq!(open.company_id, company.to_string());

    let won = psa
        .set_opportunity_status(&id.to_string(), "won", "k1")
        .await
        .unwrap();
    assert!(won.won);
    assert_eq!(won.status, "Won");
    assert_eq!(won.closed_at, Some(datetime!(2026-01-01 0:00 UTC)));
    assert_eq!(cw.opportunity(id).unwrap()["status"]["name"], "Won");
    assert_eq!(cw.harness().counted("opportunities.updated"), 1);

    let error = psa
        .set_opportunity_status(&id.to_string(), "Maybe", "k2")
        .await
        .unwrap_err();
    assert!(
        matches!(error, ConnectorError::Rejected { .. }),
        "{error:?}"
    );
    assert_eq!(psa.opportunity("31337").await.unwrap(), None);
    cw.shutdown().await;
}

#[tokio::test]
async fn won_opportunities_reads_every_page_and_keeps_only_won_since() {
    let cw = emulator().await;
    let company = cw.seed_company("Acme", "Active");
    let since = datetime!(2026-02-01 0:00 UTC);
    let mut expected = Vec::new();
    for day in 1..=5u8 {
        let at = datetime!(2026-02-01 0:00 UTC) + time::Duration::days(i64::from(6 - day));
        expected.push((
            cw.seed_opportunity(&format!("deal {day}"), company, "Won", Some(at)),
            at,
        ));
    }
    cw.seed_opportunity(
        "too early",
        company,
        "Won",
        Some(datetime!(2026-01-31 23:59:59 UTC)),
    );
    cw.seed_opportunity(
        "lost",
        company,
        "Lost",
        Some(datetime!(2026-02-03 0:00 UTC)),
    );
    cw.seed_opportunity("open", company, "Open", None);
    let psa = client(&cw).with_page_size(2);

    let won = psa.won_opportunities(since).await.unwrap();
    expected.sort_by_key(|(_, at)| *at);
    let got: Vec<(String, Option<time::OffsetDateTime>)> =
        won.iter().map(|o| (o.id.clone(), o.closed_at)).collect();
    let want: Vec<(String, Option<time::OffsetDateTime>)> = expected
        .iter()
        .map(|(id, at)| (id.to_string(), Some(*at)))
        .collect();
    assert_eq!(got, want, "five won deals across three pages, oldest first");
    assert!(won.iter().all(|o| o.won));
    cw.shutdown().await;
}

#[tokio::test]
async fn rate_limits_and_outages_are_retryable() {
    let cw = emulator().await;
    let id = cw.seed_company("Acme", "Active").to_string();
    let psa = client(&cw);

    cw.harness().rate_limit_next(1, 7);
    let limited = psa.company(&id).await.unwrap_err();
    assert!(limited.is_retryable(), "{limited:?}");
    assert_eq!(limited.retry_after(), Some(Duration::from_secs(7)));
    assert!(psa.company(&id).await.unwrap().is_some());

    cw.harness().set_down(true);
    let down = psa.company(&id).await.unwrap_err();
    assert!(down.is_retryable(), "{down:?}");
    assert_eq!(down.retry_after(), None);
    cw.harness().set_down(false);

    let url = cw.url();
    cw.shutdown().await;
    let gone = client_with_url(&url).company(&id).await.unwrap_err();
    assert!(gone.is_retryable(), "{gone:?}");
}

fn client_with_url(url: &str) -> ConnectWiseClient {
    ConnectWiseClient::new(
        ConnectWiseConfig {
            base_url: url.into(),
            company_id: "gatehouse".into(),
            public_key: "pubkey".into(),
            private_key: Secret::new("privkey"),
            client_id: "1a2b3c4d-client".into(),
        },
        Arc::new(FakeClock::default()),
    )
    .unwrap()
}

/// ConnectWise's scheme, computed here independently of the emulator.
fn expected_signature(signing_key: &str, body: &[u8]) -> String {
    let key = Sha256::digest(signing_key.as_bytes());
    let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

#[tokio::test]
async fn a_won_deal_callback_is_signed_and_a_tampered_one_is_not() {
    let cw = emulator().await;
    let sink = WebhookSink::start().await.unwrap();
    let psa = client(&cw);
    let callback = NewCallback {
        description: "Gatehouse: won deals".into(),
        url: sink.url(),
        object_id: 0,
        kind: "Opportunity".into(),
        level: "Owner".into(),
    };
    let first = psa.register_callback(&callback, "setup-1").await.unwrap();
    let again = psa.register_callback(&callback, "setup-2").await.unwrap();
    assert_eq!(first.id, again.id);
    assert_eq!(cw.harness().counted("callbacks.created"), 1);

    let company = cw.seed_company("Acme", "Active");
    let id = cw.seed_opportunity("Acme MSA", company, "Open", None);
    let deliveries = cw.win_opportunity(id).await;
    assert_eq!(deliveries.len(), 1);
    assert_eq!(deliveries[0].status, Some(200));
    assert_eq!(cw.harness().counted("callbacks.delivered"), 1);

    let received = sink.received();
    let hook = &received[0];
    let payload: Value = serde_json::from_slice(&hook.body).unwrap();
    // The key is fetched from the URL the payload names, as a receiver does.
    let key_url = payload["Metadata"]["key_url"].as_str().unwrap();
    assert!(key_url.starts_with(&cw.url()));
    let key: Value = reqwest::get(key_url).await.unwrap().json().await.unwrap();
    let key = key["signing_key"].as_str().unwrap();
    let signature = hook.header("x-content-signature").unwrap();
    assert_eq!(signature, expected_signature(key, &hook.body));

    let entity: Value = serde_json::from_str(payload["Entity"].as_str().unwrap()).unwrap();
    assert_eq!(entity["id"], id);
    assert_eq!(entity["status"]["name"], "Won");
    assert_eq!(payload["ID"], id);
    assert_eq!(payload["Type"], "opportunity");

    // A tampered body keeps the old signature, which no longer matches.
    let tampered = String::from_utf8(hook.body.clone())
        .unwrap()
        .replace("Acme MSA", "Evil MSA");
    let forged = deliveries[0].with_body(tampered.clone());
    assert_eq!(forged.send().await, Some(200));
    let forged_seen = &sink.received()[1];
    assert_eq!(forged_seen.body, tampered.as_bytes());
    assert_ne!(
        forged_seen.header("x-content-signature").unwrap(),
        expected_signature(key, &forged_seen.body)
    );

    // A duplicate is byte-identical, MessageId included: a receiver dedupes on it.
    assert_eq!(deliveries[0].send().await, Some(200));
    assert_eq!(sink.received()[2].body, hook.body);

    psa.delete_callback(first.id).await.unwrap();
    psa.delete_callback(first.id).await.unwrap();
    assert!(cw.callbacks().is_empty());
    sink.shutdown().await;
    cw.shutdown().await;
}
