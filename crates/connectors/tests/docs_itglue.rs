//! The IT Glue client against the IT Glue emulator, over real HTTP.

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
use gatehouse_connectors::itglue::{ItGlueClient, ItGlueConfig};
use gatehouse_connectors::ports::DocsPlatform;
use gatehouse_core::clock::SystemClock;
use gatehouse_sandbox::itglue::ItGlueEmulator;
use serde_json::Value;

const KEY: &str = "ITG.full-access-key";
const READ_ONLY_KEY: &str = "ITG.no-password-access";

async fn emulator() -> ItGlueEmulator {
    let emulator = ItGlueEmulator::start().await.unwrap();
    emulator.add_key(KEY, true);
    emulator.add_key(READ_ONLY_KEY, false);
    emulator
}

fn client_with(emulator: &ItGlueEmulator, key: &str) -> ItGlueClient {
    let mut config = ItGlueConfig::new(&emulator.url(), Secret::new(key));
    config.timeout = Duration::from_secs(5);
    ItGlueClient::new(config, Arc::new(SystemClock)).unwrap()
}

fn client(emulator: &ItGlueEmulator) -> ItGlueClient {
    client_with(emulator, KEY)
}

#[tokio::test]
async fn an_unknown_key_is_an_auth_error_that_does_not_show_the_key() {
    let emulator = emulator().await;
    let client = client_with(&emulator, "ITG.unknown-key");
    let err = client.find_organization("Contoso").await.unwrap_err();
    assert!(matches!(err, ConnectorError::Auth { .. }), "{err:?}");
    assert!(!format!("{err} {err:?} {client:?}").contains("ITG.unknown-key"));
    emulator.shutdown().await;
}

#[tokio::test]
async fn an_organization_gets_documents_read_back_across_pages() {
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
                &format!("doc-{i}"),
            )
            .await
            .unwrap();
        assert_eq!(doc.organization_id, org.id);
    }
    client
        .create_document(&other.id, "Elsewhere", "<p/>", "doc-x")
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
    let stored = emulator.documents();
    assert!(
        stored
            .iter()
            .any(|(_, _, name, content)| name == "Runbook 3" && content == "<p>steps</p>")
    );
    assert_eq!(emulator.harness().counted("documents.created"), 6);
    emulator.shutdown().await;
}

#[tokio::test]
async fn find_organization_matches_exactly_across_pages() {
    let emulator = emulator().await;
    emulator.set_max_page_size(1);
    emulator.add_organization("ACME");
    emulator.add_organization("acme");
    emulator.add_organization("Acme Holdings");
    let wanted = emulator.add_organization("Acme");
    let client = client(&emulator);
    let found = client.find_organization("Acme").await.unwrap().unwrap();
    assert_eq!(found.id, wanted.to_string());
    assert_eq!(found.name, "Acme");
    assert_eq!(client.find_organization("Acm").await.unwrap(), None);
    emulator.shutdown().await;
}

#[tokio::test]
async fn deleting_twice_is_fine() {
    let emulator = emulator().await;
    let client = client(&emulator);
    let org = client.create_organization("Gone", "g").await.unwrap();
    client
        .create_document(&org.id, "Doc", "<p/>", "d")
        .await
        .unwrap();
    client.delete_organization(&org.id, "del-1").await.unwrap();
    client.delete_organization(&org.id, "del-2").await.unwrap();
    assert_eq!(client.find_organization("Gone").await.unwrap(), None);
    assert_eq!(emulator.harness().counted("organizations.deleted"), 1);
    assert!(emulator.documents().is_empty());
    emulator.shutdown().await;
}

#[tokio::test]
async fn a_retried_create_with_the_same_key_creates_once() {
    let emulator = emulator().await;
    let client = client(&emulator);
    let first = client.create_organization("Contoso", "same").await.unwrap();
    let again = client.create_organization("Contoso", "same").await.unwrap();
    assert_eq!(first, again);
    assert_eq!(emulator.harness().counted("organizations.created"), 1);
    assert_eq!(emulator.organizations().len(), 1);
    emulator.shutdown().await;
}

async fn password_as_seen_by(emulator: &ItGlueEmulator, key: &str, id: &str) -> Value {
    let answer = reqwest::Client::new()
        .get(format!("{}/passwords/{id}", emulator.url()))
        .header("x-api-key", key)
        .send()
        .await
        .unwrap();
    assert_eq!(answer.status(), 200);
    answer.json::<Value>().await.unwrap()["data"]["attributes"].clone()
}

#[tokio::test]
async fn a_password_value_is_shown_only_to_a_key_with_password_access() {
    let emulator = emulator().await;
    let client = client(&emulator);
    let org = client.create_organization("Contoso", "org").await.unwrap();
    let value = Secret::new("Tr0ub4dor&3-value");
    let id = client
        .create_password(&org.id, "Firewall admin", "admin", &value, "pw")
        .await
        .unwrap();
    let stored = emulator.passwords();
    assert_eq!(stored.len(), 1);
    assert_eq!(stored[0].password, "Tr0ub4dor&3-value");
    assert_eq!(stored[0].username, "admin");

    let hidden = password_as_seen_by(&emulator, READ_ONLY_KEY, &id).await;
    assert_eq!(hidden["name"], "Firewall admin");
    assert!(hidden.get("password").is_none(), "{hidden}");
    let shown = password_as_seen_by(&emulator, KEY, &id).await;
    assert_eq!(shown["password"], "Tr0ub4dor&3-value");

    // A key without password access cannot store one either, and the
    // refusal does not repeat the value.
    let read_only = client_with(&emulator, READ_ONLY_KEY);
    let err = read_only
        .create_password(&org.id, "Other", "u", &value, "pw-2")
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectorError::Auth { .. }), "{err:?}");
    assert!(!format!("{err} {err:?}").contains("Tr0ub4dor"));
    assert_eq!(emulator.passwords().len(), 1);
    emulator.shutdown().await;
}

#[tokio::test]
async fn a_429_is_retryable_with_the_retry_after_and_down_is_retryable() {
    let emulator = emulator().await;
    let client = client(&emulator);
    emulator.harness().rate_limit_next(1, 30);
    let err = client
        .create_organization("Contoso", "k")
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(30)));
    emulator.harness().set_down(true);
    let err = client.find_organization("Contoso").await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    emulator.harness().set_down(false);
    client.create_organization("Contoso", "k").await.unwrap();
    assert_eq!(emulator.harness().counted("organizations.created"), 1);
    emulator.shutdown().await;
}
