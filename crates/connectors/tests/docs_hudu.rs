//! The Hudu client against the Hudu emulator, over real HTTP.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests fail loudly"
)]

use std::sync::Arc;
use std::time::Duration;

use gatehouse_connectors::ConnectorError;
use gatehouse_connectors::http::Secret;
use gatehouse_connectors::hudu::{HuduClient, HuduConfig};
use gatehouse_connectors::ports::DocsPlatform;
use gatehouse_core::clock::SystemClock;
use gatehouse_sandbox::hudu::HuduEmulator;
use serde_json::Value;

const KEY: &str = "hudu-full-access-key";
const READ_ONLY_KEY: &str = "hudu-no-password-access";

async fn emulator() -> HuduEmulator {
    let emulator = HuduEmulator::start().await.unwrap();
    emulator.add_key(KEY, true);
    emulator.add_key(READ_ONLY_KEY, false);
    emulator
}

fn client_with(emulator: &HuduEmulator, key: &str) -> HuduClient {
    let mut config = HuduConfig::new(&emulator.url(), Secret::new(key));
    config.timeout = Duration::from_secs(5);
    HuduClient::new(config, Arc::new(SystemClock)).unwrap()
}

fn client(emulator: &HuduEmulator) -> HuduClient {
    client_with(emulator, KEY)
}

#[tokio::test]
async fn an_unknown_key_is_an_auth_error_that_does_not_show_the_key() {
    let emulator = emulator().await;
    let client = client_with(&emulator, "hudu-unknown-key");
    let err = client.find_organization("Contoso").await.unwrap_err();
    assert!(matches!(err, ConnectorError::Auth { .. }), "{err:?}");
    assert!(!format!("{err} {err:?} {client:?}").contains("hudu-unknown-key"));
    emulator.shutdown().await;
}

#[tokio::test]
async fn a_company_gets_articles_read_back_across_pages() {
    let emulator = emulator().await;
    emulator.set_max_page_size(2);
    let client = client(&emulator);
    let org = client.create_organization("Contoso", "org").await.unwrap();
    let other = client.create_organization("Other", "other").await.unwrap();
    for i in 0..5 {
        let doc = client
            .create_document(
                &org.id,
                &format!("Runbook {i}"),
                "<p>steps</p>",
                &format!("a-{i}"),
            )
            .await
            .unwrap();
        assert_eq!(doc.organization_id, org.id);
    }
    client
        .create_document(&other.id, "Elsewhere", "<p/>", "a-x")
        .await
        .unwrap();

    let docs = client.documents(&org.id).await.unwrap();
    let mut titles: Vec<_> = docs.iter().map(|d| d.title.clone()).collect();
    titles.sort();
    assert_eq!(
        titles,
        [
            "Runbook 0",
            "Runbook 1",
            "Runbook 2",
            "Runbook 3",
            "Runbook 4"
        ]
    );
    assert!(
        emulator
            .articles()
            .iter()
            .any(|(_, _, name, content)| name == "Runbook 1" && content == "<p>steps</p>")
    );
    emulator.shutdown().await;
}

#[tokio::test]
async fn find_organization_matches_exactly_across_pages() {
    let emulator = emulator().await;
    emulator.set_max_page_size(1);
    for name in ["Alpha", "Contoso Ltd", "CONTOSO", "contoso", "Beta"] {
        emulator.add_company(name);
    }
    let wanted = emulator.add_company("Contoso");
    let client = client(&emulator);
    let found = client.find_organization("Contoso").await.unwrap().unwrap();
    assert_eq!(found.id, wanted.to_string());
    assert_eq!(client.find_organization("Contos").await.unwrap(), None);
    emulator.shutdown().await;
}

#[tokio::test]
async fn deleting_twice_is_fine_and_a_retried_create_creates_once() {
    let emulator = emulator().await;
    let client = client(&emulator);
    let org = client.create_organization("Gone", "same").await.unwrap();
    let again = client.create_organization("Gone", "same").await.unwrap();
    assert_eq!(org, again);
    assert_eq!(emulator.harness().counted("companies.created"), 1);
    client.delete_organization(&org.id, "d1").await.unwrap();
    client.delete_organization(&org.id, "d2").await.unwrap();
    assert!(emulator.companies().is_empty());
    assert_eq!(emulator.harness().counted("companies.deleted"), 1);
    emulator.shutdown().await;
}

#[tokio::test]
async fn asset_passwords_need_a_key_with_password_access() {
    let emulator = emulator().await;
    let client = client(&emulator);
    let org = client.create_organization("Contoso", "org").await.unwrap();
    let value = Secret::new("correct-horse-battery");
    let id = client
        .create_password(&org.id, "Firewall admin", "admin", &value, "pw")
        .await
        .unwrap();
    assert_eq!(emulator.passwords()[0].password, "correct-horse-battery");

    let http = reqwest::Client::new();
    let url = format!("{}/api/v1/asset_passwords/{id}", emulator.url());
    let refused = http
        .get(&url)
        .header("x-api-key", READ_ONLY_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 403);
    assert!(!refused.text().await.unwrap().contains("correct-horse"));
    let shown: Value = http
        .get(&url)
        .header("x-api-key", KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(shown["asset_password"]["password"], "correct-horse-battery");

    let read_only = client_with(&emulator, READ_ONLY_KEY);
    let err = read_only
        .create_password(&org.id, "Other", "u", &value, "pw-2")
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectorError::Auth { .. }), "{err:?}");
    assert!(!format!("{err} {err:?}").contains("correct-horse"));
    assert_eq!(emulator.passwords().len(), 1);
    emulator.shutdown().await;
}

#[tokio::test]
async fn a_429_is_retryable_with_the_retry_after_and_down_is_retryable() {
    let emulator = emulator().await;
    let client = client(&emulator);
    emulator.harness().rate_limit_next(1, 60);
    let err = client
        .create_organization("Contoso", "k")
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(60)));
    emulator.harness().set_down(true);
    assert!(
        client
            .find_organization("Contoso")
            .await
            .unwrap_err()
            .is_retryable()
    );
    emulator.harness().set_down(false);
    client.create_organization("Contoso", "k").await.unwrap();
    assert_eq!(emulator.harness().counted("companies.created"), 1);
    emulator.shutdown().await;
}
