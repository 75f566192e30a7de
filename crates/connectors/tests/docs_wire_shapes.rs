//! The IT Glue emulator speaks JSON:API: checked with raw HTTP.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests fail loudly"
)]

use gatehouse_sandbox::itglue::ItGlueEmulator;
use serde_json::{Value, json};

#[tokio::test]
async fn itglue_answers_json_api_with_dashed_attributes_and_json_api_errors() {
    let emulator = ItGlueEmulator::start().await.unwrap();
    emulator.add_key("k", true);
    let http = reqwest::Client::new();
    let url = emulator.url();

    let refused = http
        .get(format!("{url}/organizations"))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);
    let errors: Value = refused.json().await.unwrap();
    assert_eq!(errors["errors"][0]["status"], "401");

    let created = http
        .post(format!("{url}/organizations"))
        .header("x-api-key", "k")
        .header("content-type", "application/vnd.api+json")
        .body(
            json!({ "data": { "type": "organizations", "attributes": { "name": "Contoso" } } })
                .to_string(),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    assert_eq!(
        created.headers()["content-type"],
        "application/vnd.api+json"
    );
    let created: Value = created.json().await.unwrap();
    assert_eq!(created["data"]["type"], "organizations");
    let id = created["data"]["id"].as_str().unwrap().to_owned();

    let wrong_type = http
        .post(format!("{url}/organizations"))
        .header("x-api-key", "k")
        .body(json!({ "data": { "type": "passwords", "attributes": { "name": "x" } } }).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_type.status(), 422);

    // Underscored attribute names are accepted, dashed ones answered.
    let password: Value = http
        .post(format!("{url}/passwords"))
        .header("x-api-key", "k")
        .body(
            json!({ "data": { "type": "passwords", "attributes": {
                "organization_id": id, "name": "n", "password": "p"
            } } })
            .to_string(),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        password["data"]["attributes"]["organization-id"].to_string(),
        id
    );
    assert!(password["data"]["attributes"].get("password").is_none());

    let page: Value = http
        .get(format!("{url}/organizations?page[size]=1&page[number]=1"))
        .header("x-api-key", "k")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(page["meta"]["total-count"], 1);
    assert!(page["meta"]["next-page"].is_null());
    let far = http
        .get(format!("{url}/organizations?page[number]={}", usize::MAX))
        .header("x-api-key", "k")
        .send()
        .await
        .unwrap();
    assert_eq!(far.status(), 200);
    let zero = http
        .get(format!("{url}/organizations?page[size]=0"))
        .header("x-api-key", "k")
        .send()
        .await
        .unwrap();
    assert_eq!(zero.status(), 400);
    emulator.shutdown().await;
}
