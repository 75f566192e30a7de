//! The NinjaOne client against the NinjaOne emulator, over real HTTP.

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
use gatehouse_connectors::ninjaone::{NinjaOneClient, NinjaOneConfig};
use gatehouse_connectors::ports::Rmm;
use gatehouse_core::clock::SystemClock;
use gatehouse_sandbox::ninjaone::NinjaOneEmulator;

const CLIENT_ID: &str = "gatehouse-test";
const SECRET: &str = "s3cret-ninja-value";

async fn emulator() -> NinjaOneEmulator {
    NinjaOneEmulator::start(CLIENT_ID, SECRET).await.unwrap()
}

fn client_with(emulator: &NinjaOneEmulator, secret: &str, page_size: u32) -> NinjaOneClient {
    let mut config = NinjaOneConfig::new(&emulator.url(), CLIENT_ID, Secret::new(secret));
    config.page_size = page_size;
    config.timeout = Duration::from_secs(5);
    NinjaOneClient::new(config, Arc::new(SystemClock)).unwrap()
}

fn client(emulator: &NinjaOneEmulator) -> NinjaOneClient {
    client_with(emulator, SECRET, 100)
}

#[tokio::test]
async fn a_wrong_secret_is_an_auth_error_that_does_not_show_the_secret() {
    let emulator = emulator().await;
    let client = client_with(&emulator, "wrong-secret-value", 100);
    let err = client.find_organization("Contoso").await.unwrap_err();
    assert!(matches!(err, ConnectorError::Auth { .. }), "{err:?}");
    assert!(!err.is_retryable());
    assert!(!format!("{err} {err:?}").contains("wrong-secret-value"));
    assert!(!format!("{client:?}").contains("wrong-secret-value"));
    assert_eq!(emulator.harness().counted("tokens.issued"), 0);
    assert!(emulator.harness().counted("auth.refused") >= 1);
    emulator.shutdown().await;
}

#[tokio::test]
async fn an_organization_gets_a_location_and_an_installer_link() {
    let emulator = emulator().await;
    let client = client(&emulator);
    let org = client
        .create_organization("Contoso", "org-1")
        .await
        .unwrap();
    assert_eq!(org.name, "Contoso");
    let location = client
        .create_location(&org.id, "Head office", "loc-1")
        .await
        .unwrap();
    assert_eq!(location.organization_id, org.id);
    assert_eq!(location.name, "Head office");

    let link = client.installer_link(&org.id, &location.id).await.unwrap();
    assert_eq!(link.installer_type, "WINDOWS_MSI");
    assert!(link.url.starts_with(&emulator.url()), "{}", link.url);
    assert!(link.url.ends_with(".msi"), "{}", link.url);

    assert_eq!(
        client.organization(&org.id).await.unwrap(),
        Some(org.clone())
    );
    assert_eq!(
        client.locations(&org.id).await.unwrap(),
        vec![location.clone()]
    );
    let held = emulator.organizations();
    assert_eq!(held.len(), 1);
    assert_eq!(held[0].name, "Contoso");
    assert_eq!(
        held[0].locations,
        vec![(location.id.parse().unwrap(), "Head office".to_owned())]
    );
    let h = emulator.harness();
    assert_eq!(h.counted("organizations.created"), 1);
    assert_eq!(h.counted("locations.created"), 1);
    assert_eq!(h.counted("installers.generated"), 1);
    emulator.shutdown().await;
}

#[tokio::test]
async fn an_installer_link_for_a_location_elsewhere_is_refused() {
    let emulator = emulator().await;
    let client = client(&emulator);
    let a = client.create_organization("A", "a").await.unwrap();
    let b = client.create_organization("B", "b").await.unwrap();
    let in_b = client
        .create_location(&b.id, "B office", "lb")
        .await
        .unwrap();
    let err = client.installer_link(&a.id, &in_b.id).await.unwrap_err();
    assert_eq!(err.status(), Some(404), "{err:?}");
    let err = client
        .installer_link(&a.id, "not-a-number")
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectorError::Rejected { .. }), "{err:?}");
    assert_eq!(emulator.harness().counted("installers.generated"), 0);
    emulator.shutdown().await;
}

#[tokio::test]
async fn find_organization_matches_exactly_across_pages() {
    let emulator = emulator().await;
    emulator.set_max_page_size(2);
    for name in ["Alpha", "Contoso Ltd", "Beta", "contoso", "Gamma", "Delta"] {
        emulator.add_organization(name);
    }
    let wanted = emulator.add_organization("Contoso");
    emulator.add_organization("Omega");
    let client = client(&emulator);

    let found = client.find_organization("Contoso").await.unwrap().unwrap();
    assert_eq!(found.id, wanted.to_string());
    assert_eq!(found.name, "Contoso");
    assert_eq!(
        client
            .find_organization("Omega")
            .await
            .unwrap()
            .unwrap()
            .name,
        "Omega"
    );
    assert_eq!(client.find_organization("Contos").await.unwrap(), None);
    emulator.shutdown().await;
}

#[tokio::test]
async fn devices_are_read_across_pages() {
    let emulator = emulator().await;
    emulator.set_max_page_size(2);
    let org = emulator.add_organization("Contoso");
    let other = emulator.add_organization("Other");
    for (i, online) in [true, false, true, true, false].into_iter().enumerate() {
        emulator
            .add_device(org, &format!("pc-{i}"), online)
            .unwrap();
    }
    emulator.add_device(other, "elsewhere", true).unwrap();
    let client = client(&emulator);

    let devices = client.devices(&org.to_string()).await.unwrap();
    let mut names: Vec<_> = devices.iter().map(|d| d.name.clone()).collect();
    names.sort();
    assert_eq!(names, ["pc-0", "pc-1", "pc-2", "pc-3", "pc-4"]);
    assert_eq!(devices.iter().filter(|d| d.online).count(), 3);
    assert!(devices.iter().all(|d| d.organization_id == org.to_string()));
    emulator.shutdown().await;
}

#[tokio::test]
async fn deleting_twice_is_fine() {
    let emulator = emulator().await;
    let client = client(&emulator);
    let org = client.create_organization("Gone", "g").await.unwrap();
    client.delete_organization(&org.id, "d1").await.unwrap();
    client.delete_organization(&org.id, "d2").await.unwrap();
    assert_eq!(client.organization(&org.id).await.unwrap(), None);
    assert_eq!(emulator.harness().counted("organizations.deleted"), 1);
    assert!(emulator.organizations().is_empty());
    emulator.shutdown().await;
}

#[tokio::test]
async fn a_retried_create_with_the_same_key_creates_once() {
    let emulator = emulator().await;
    let client = client(&emulator);
    let first = client
        .create_organization("Contoso", "same-key")
        .await
        .unwrap();
    let again = client
        .create_organization("Contoso", "same-key")
        .await
        .unwrap();
    assert_eq!(first, again);
    let loc = client
        .create_location(&first.id, "HQ", "loc-key")
        .await
        .unwrap();
    let loc_again = client
        .create_location(&first.id, "HQ", "loc-key")
        .await
        .unwrap();
    assert_eq!(loc, loc_again);
    let h = emulator.harness();
    assert_eq!(h.counted("organizations.created"), 1);
    assert_eq!(h.counted("locations.created"), 1);
    assert_eq!(h.counted("idempotent_replays"), 2);
    assert_eq!(emulator.organizations().len(), 1);
    emulator.shutdown().await;
}

#[tokio::test]
async fn a_429_is_retryable_with_the_retry_after() {
    let emulator = emulator().await;
    let client = client(&emulator);
    client.find_organization("warm").await.unwrap();
    emulator.harness().rate_limit_next(1, 7);
    let err = client
        .create_organization("Contoso", "k")
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
    assert_eq!(emulator.harness().counted("organizations.created"), 0);
    client.create_organization("Contoso", "k").await.unwrap();
    assert_eq!(emulator.harness().counted("organizations.created"), 1);
    emulator.shutdown().await;
}

#[tokio::test]
async fn a_service_that_is_down_is_retryable() {
    let emulator = emulator().await;
    let client = client(&emulator);
    emulator.harness().set_down(true);
    let err = client.find_organization("Contoso").await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    emulator.harness().set_down(false);
    assert_eq!(client.find_organization("Contoso").await.unwrap(), None);
    emulator.shutdown().await;
}

#[tokio::test]
async fn nothing_listening_is_retryable() {
    let emulator = emulator().await;
    let client = client(&emulator);
    emulator.shutdown().await;
    let err = client.devices("1").await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
}

#[tokio::test]
async fn one_token_serves_many_calls_and_a_stale_one_is_replaced_once() {
    let emulator = emulator().await;
    let client = client(&emulator);
    let org = client.create_organization("Contoso", "k").await.unwrap();
    for _ in 0..10 {
        client.organization(&org.id).await.unwrap().unwrap();
    }
    assert_eq!(emulator.harness().counted("tokens.issued"), 1);

    emulator.revoke_tokens();
    assert!(client.organization(&org.id).await.unwrap().is_some());
    assert_eq!(emulator.harness().counted("tokens.issued"), 2);
    assert_eq!(emulator.harness().counted("auth.refused"), 1);
    emulator.shutdown().await;
}

#[tokio::test]
async fn concurrent_first_calls_share_one_token_fetch() {
    let emulator = emulator().await;
    let org = emulator.add_organization("Contoso");
    let client = Arc::new(client(&emulator));
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..8 {
        let client = Arc::clone(&client);
        calls.spawn(async move { client.organization(&org.to_string()).await });
    }
    while let Some(done) = calls.join_next().await {
        assert!(done.unwrap().unwrap().is_some());
    }
    assert_eq!(emulator.harness().counted("tokens.issued"), 1);
    emulator.shutdown().await;
}

#[tokio::test]
async fn a_rotated_secret_is_an_auth_error_after_one_new_token_attempt() {
    let emulator = emulator().await;
    let org = emulator.add_organization("Contoso");
    let client = client(&emulator);
    client.organization(&org.to_string()).await.unwrap();
    emulator.rotate_secret("the-new-secret");
    let err = client.organization(&org.to_string()).await.unwrap_err();
    assert!(matches!(err, ConnectorError::Auth { .. }), "{err:?}");
    assert!(!format!("{err:?}").contains(SECRET));
    // The stale token was refused once, then the token request was refused.
    assert_eq!(emulator.harness().counted("auth.refused"), 2);
    assert_eq!(emulator.harness().counted("tokens.issued"), 1);
    emulator.shutdown().await;
}
