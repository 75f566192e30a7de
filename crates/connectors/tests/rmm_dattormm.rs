//! The Datto RMM client against the Datto RMM emulator, over real HTTP.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests fail loudly"
)]

use std::sync::Arc;
use std::time::Duration;

use gatehouse_connectors::ConnectorError;
use gatehouse_connectors::dattormm::{DattoRmmClient, DattoRmmConfig};
use gatehouse_connectors::http::Secret;
use gatehouse_connectors::ports::Rmm;
use gatehouse_core::clock::SystemClock;
use gatehouse_sandbox::dattormm::DattoRmmEmulator;

const KEY: &str = "DRMM-API-KEY";
const SECRET: &str = "drmm-secret-value";

async fn emulator() -> DattoRmmEmulator {
    DattoRmmEmulator::start(KEY, SECRET).await.unwrap()
}

fn client_with(emulator: &DattoRmmEmulator, secret: &str) -> DattoRmmClient {
    let mut config = DattoRmmConfig::new(
        &emulator.url(),
        &emulator.url(),
        Secret::new(KEY),
        Secret::new(secret),
    );
    config.timeout = Duration::from_secs(5);
    DattoRmmClient::new(config, Arc::new(SystemClock)).unwrap()
}

fn client(emulator: &DattoRmmEmulator) -> DattoRmmClient {
    client_with(emulator, SECRET)
}

#[tokio::test]
async fn a_wrong_secret_is_an_auth_error_that_does_not_show_the_secret() {
    let emulator = emulator().await;
    let client = client_with(&emulator, "not-the-drmm-secret");
    let err = client.find_organization("Contoso").await.unwrap_err();
    assert!(matches!(err, ConnectorError::Auth { .. }), "{err:?}");
    let shown = format!("{err} {err:?} {client:?}");
    assert!(!shown.contains("not-the-drmm-secret"), "{shown}");
    assert!(!shown.contains(KEY), "{shown}");
    assert_eq!(emulator.harness().counted("tokens.issued"), 0);
    emulator.shutdown().await;
}

#[tokio::test]
async fn a_site_is_its_own_location_and_gives_the_agent_download_link() {
    let emulator = emulator().await;
    let client = client(&emulator);
    let org = client
        .create_organization("Contoso", "site-1")
        .await
        .unwrap();
    assert_eq!(org.name, "Contoso");

    let location = client
        .create_location(&org.id, "Head office", "loc-1")
        .await
        .unwrap();
    assert_eq!(location.id, org.id);
    assert_eq!(location.organization_id, org.id);
    assert_eq!(
        client.locations(&org.id).await.unwrap(),
        vec![location.clone()]
    );

    let link = client.installer_link(&org.id, &location.id).await.unwrap();
    assert_eq!(
        link.url,
        format!("{}/csm/profile/downloadAgent/{}", emulator.url(), org.id)
    );
    assert_eq!(link.installer_type, "WINDOWS_EXE");
    let download = reqwest::get(&link.url).await.unwrap();
    assert_eq!(download.status(), 200);

    let sites = emulator.sites();
    assert_eq!(sites.len(), 1, "a location creates no second site");
    assert_eq!(sites[0].uid, org.id);
    let h = emulator.harness();
    assert_eq!(h.counted("sites.created"), 1);
    assert_eq!(h.counted("agents.downloaded"), 1);
    emulator.shutdown().await;
}

#[tokio::test]
async fn an_installer_link_needs_the_site_as_its_location_and_an_existing_site() {
    let emulator = emulator().await;
    let client = client(&emulator);
    let a = client.create_organization("A", "a").await.unwrap();
    let b = client.create_organization("B", "b").await.unwrap();
    let err = client.installer_link(&a.id, &b.id).await.unwrap_err();
    assert!(matches!(err, ConnectorError::Rejected { .. }), "{err:?}");
    let missing = "00000000-0000-0000-0000-000000000000";
    let err = client.installer_link(missing, missing).await.unwrap_err();
    assert_eq!(err.status(), Some(404), "{err:?}");
    assert_eq!(client.organization(missing).await.unwrap(), None);
    emulator.shutdown().await;
}

#[tokio::test]
async fn find_organization_matches_exactly_across_pages() {
    let emulator = emulator().await;
    emulator.set_max_page_size(2);
    for name in ["Alpha", "Contoso Ltd", "contoso", "Beta", "Gamma"] {
        emulator.add_site(name);
    }
    let wanted = emulator.add_site("Contoso");
    emulator.add_site("Omega");
    let client = client(&emulator);

    let found = client.find_organization("Contoso").await.unwrap().unwrap();
    assert_eq!(found.id, wanted);
    assert_eq!(
        client
            .find_organization("Omega")
            .await
            .unwrap()
            .unwrap()
            .name,
        "Omega"
    );
    assert_eq!(client.find_organization("CONTOSO").await.unwrap(), None);
    emulator.shutdown().await;
}

#[tokio::test]
async fn devices_are_read_across_pages() {
    let emulator = emulator().await;
    emulator.set_max_page_size(2);
    let site = emulator.add_site("Contoso");
    let other = emulator.add_site("Other");
    for (i, online) in [true, true, false, true, false].into_iter().enumerate() {
        emulator
            .add_device(&site, &format!("pc-{i}"), online)
            .unwrap();
    }
    emulator.add_device(&other, "elsewhere", true).unwrap();
    let client = client(&emulator);

    let devices = client.devices(&site).await.unwrap();
    let mut names: Vec<_> = devices.iter().map(|d| d.name.clone()).collect();
    names.sort();
    assert_eq!(names, ["pc-0", "pc-1", "pc-2", "pc-3", "pc-4"]);
    assert_eq!(devices.iter().filter(|d| d.online).count(), 3);
    assert!(devices.iter().all(|d| d.organization_id == site));
    emulator.shutdown().await;
}

#[tokio::test]
async fn deleting_a_site_is_refused_as_unsupported_and_leaves_it() {
    let emulator = emulator().await;
    let client = client(&emulator);
    let org = client.create_organization("Kept", "k").await.unwrap();
    let err = client.delete_organization(&org.id, "d").await.unwrap_err();
    assert!(matches!(err, ConnectorError::Config { .. }), "{err:?}");
    assert!(!err.is_retryable());
    assert!(client.organization(&org.id).await.unwrap().is_some());
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
    assert_eq!(emulator.harness().counted("sites.created"), 1);
    assert_eq!(emulator.sites().len(), 1);
    emulator.shutdown().await;
}

#[tokio::test]
async fn a_429_is_retryable_with_the_retry_after() {
    let emulator = emulator().await;
    let client = client(&emulator);
    client.find_organization("warm").await.unwrap();
    emulator.harness().rate_limit_next(1, 12);
    let err = client
        .create_organization("Contoso", "k")
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(12)));
    assert_eq!(emulator.harness().counted("sites.created"), 0);
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
    emulator.shutdown().await;
}
