//! The RMM emulators speak the vendors' wire shapes: checked with raw HTTP,
//! so a client that passes against them is not passing against an
//! emulator that merely agrees with it.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests fail loudly"
)]

use gatehouse_sandbox::dattormm::DattoRmmEmulator;
use gatehouse_sandbox::ninjaone::NinjaOneEmulator;
use serde_json::{Value, json};

#[tokio::test]
async fn ninjaone_token_listing_and_installers() {
    let emulator = NinjaOneEmulator::start("id", "secret").await.unwrap();
    let http = reqwest::Client::new();
    let url = emulator.url();

    let refused = http
        .get(format!("{url}/v2/organizations"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let wrong_grant = http
        .post(format!("{url}/ws/oauth/token"))
        .form(&[
            ("grant_type", "password"),
            ("client_id", "id"),
            ("client_secret", "secret"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_grant.status(), 400);
    let token: Value = http
        .post(format!("{url}/ws/oauth/token"))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "id"),
            ("client_secret", "secret"),
            ("scope", "monitoring management"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(token["token_type"], "bearer");
    let bearer = token["access_token"].as_str().unwrap().to_owned();

    let created: Value = http
        .post(format!("{url}/v2/organizations"))
        .bearer_auth(&bearer)
        .json(&json!({
            "name": "Contoso",
            "nodeApprovalMode": "MANUAL",
            "locations": [{ "name": "HQ", "address": "1 Main St" }],
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(created["nodeApprovalMode"], "MANUAL");
    assert_eq!(created["locations"][0]["name"], "HQ");
    let org = created["id"].as_u64().unwrap();
    let location = created["locations"][0]["id"].as_u64().unwrap();

    let bad_mode = http
        .post(format!("{url}/v2/organizations"))
        .bearer_auth(&bearer)
        .json(&json!({ "name": "X", "nodeApprovalMode": "SOMETIMES" }))
        .send()
        .await
        .unwrap();
    assert_eq!(bad_mode.status(), 400);

    let list: Value = http
        .get(format!("{url}/v2/organizations?pageSize=10"))
        .bearer_auth(&bearer)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(list.is_array(), "{list}");
    let after: Value = http
        .get(format!("{url}/v2/organizations?pageSize=10&after={org}"))
        .bearer_auth(&bearer)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(after, json!([]));

    let generated: Value = http
        .post(format!("{url}/v2/organization/generate-installer"))
        .bearer_auth(&bearer)
        .json(&json!({
            "organizationId": org,
            "locationId": location,
            "installerType": "MAC_PKG",
            "usageLimit": 5,
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(
        generated["url"].as_str().unwrap().ends_with(".pkg"),
        "{generated}"
    );
    let unknown = http
        .get(format!(
            "{url}/v2/organization/{org}/location/{location}/installer/WINDOWS_ZIP"
        ))
        .bearer_auth(&bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(unknown.status(), 400);
    assert_eq!(emulator.harness().counted("installers.generated"), 1);
    emulator.shutdown().await;
}

#[tokio::test]
async fn datto_password_grant_and_paged_sites() {
    let emulator = DattoRmmEmulator::start("key", "secret").await.unwrap();
    emulator.set_max_page_size(2);
    for name in ["A", "B", "C"] {
        emulator.add_site(name);
    }
    let http = reqwest::Client::new();
    let url = emulator.url();
    let form = [
        ("grant_type", "password"),
        ("username", "key"),
        ("password", "secret"),
    ];

    let no_client = http
        .post(format!("{url}/auth/oauth/token"))
        .form(&form)
        .send()
        .await
        .unwrap();
    assert_eq!(no_client.status(), 401);
    let bad_secret = http
        .post(format!("{url}/auth/oauth/token"))
        .basic_auth("public-client", Some("public"))
        .form(&[
            ("grant_type", "password"),
            ("username", "key"),
            ("password", "nope"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(bad_secret.status(), 400);
    assert_eq!(
        bad_secret.json::<Value>().await.unwrap()["error"],
        "invalid_grant"
    );
    let token: Value = http
        .post(format!("{url}/auth/oauth/token"))
        .basic_auth("public-client", Some("public"))
        .form(&form)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let bearer = token["access_token"].as_str().unwrap().to_owned();

    let first: Value = http
        .get(format!("{url}/api/v2/account/sites"))
        .bearer_auth(&bearer)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(first["sites"].as_array().unwrap().len(), 2);
    assert_eq!(first["pageDetails"]["totalCount"], 3);
    let next = first["pageDetails"]["nextPageUrl"]
        .as_str()
        .unwrap()
        .to_owned();
    assert!(next.starts_with(&url), "absolute: {next}");
    let second: Value = http
        .get(&next)
        .bearer_auth(&bearer)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(second["sites"][0]["name"], "C");
    assert!(second["pageDetails"]["nextPageUrl"].is_null());

    let far: Value = http
        .get(format!(
            "{url}/api/v2/account/sites?page={}&max=2",
            usize::MAX
        ))
        .bearer_auth(&bearer)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        far["sites"],
        json!([]),
        "a page past the end is empty, not a crash"
    );

    let uid = first["sites"][0]["uid"].as_str().unwrap().to_owned();
    let updated: Value = http
        .post(format!("{url}/api/v2/site/{uid}"))
        .bearer_auth(&bearer)
        .json(&json!({ "name": "A renamed", "notes": "moved" }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(updated["name"], "A renamed");
    assert_eq!(updated["notes"], "moved");
    let no_delete = http
        .delete(format!("{url}/api/v2/site/{uid}"))
        .bearer_auth(&bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(no_delete.status(), 405, "Datto's API has no site delete");
    assert_eq!(emulator.sites().len(), 3);
    emulator.shutdown().await;
}
