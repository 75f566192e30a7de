//! The PSA emulators' wire shapes, spoken to with plain HTTP: what a real
//! vendor client would send, and what it must get back.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests fail loudly"
)]

use gatehouse_sandbox::psa::autotask::{AutotaskCredentials, AutotaskEmulator};
use gatehouse_sandbox::psa::connectwise::{API_BASE, ConnectWiseCredentials, ConnectWiseEmulator};
use gatehouse_sandbox::psa::halopsa::{HaloCredentials, HaloPsaEmulator};
use serde_json::{Value, json};

fn cw_credentials() -> ConnectWiseCredentials {
    ConnectWiseCredentials {
        company_id: "gatehouse".into(),
        public_key: "pub".into(),
        private_key: "priv".into(),
        client_id: "client-guid".into(),
    }
}

#[tokio::test]
async fn connectwise_needs_both_the_member_keys_and_the_client_id() {
    let cw = ConnectWiseEmulator::start(cw_credentials()).await.unwrap();
    let id = cw.seed_company("Acme", "Active");
    let http = reqwest::Client::new();
    let url = format!("{}{API_BASE}/company/companies/{id}", cw.url());

    let no_client = http
        .get(&url)
        .basic_auth("gatehouse+pub", Some("priv"))
        .send()
        .await
        .unwrap();
    assert_eq!(no_client.status(), 401);
    let wrong_key = http
        .get(&url)
        .basic_auth("gatehouse+pub", Some("nope"))
        .header("clientId", "client-guid")
        .send()
        .await
        .unwrap();
    assert_eq!(wrong_key.status(), 401);
    let ok = http
        .get(&url)
        .basic_auth("gatehouse+pub", Some("priv"))
        .header("clientId", "client-guid")
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    let company: Value = ok.json().await.unwrap();
    assert_eq!(company["name"], "Acme");
    assert_eq!(company["status"]["name"], "Active");

    // JSON Patch as ConnectWise takes it; the status name follows the id.
    let inactive = cw.seed_company("Other", "Inactive");
    let inactive_status = cw.company(inactive).unwrap()["status"]["id"].clone();
    let patched: Value = http
        .patch(&url)
        .basic_auth("gatehouse+pub", Some("priv"))
        .header("clientId", "client-guid")
        .json(&json!([{"op": "replace", "path": "status/id", "value": inactive_status}]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(patched["status"]["name"], "Inactive");
    assert_eq!(cw.harness().counted("companies.updated"), 1);

    // ConnectWise's page limit, and its error shape.
    let too_big = http
        .get(format!(
            "{}{API_BASE}/company/companies?pageSize=1001",
            cw.url()
        ))
        .basic_auth("gatehouse+pub", Some("priv"))
        .header("clientId", "client-guid")
        .send()
        .await
        .unwrap();
    assert_eq!(too_big.status(), 400);
    let body: Value = too_big.json().await.unwrap();
    assert_eq!(body["code"], "InvalidObject");

    // The key endpoint answers the signing key without authentication.
    let key: Value = http
        .get(cw.key_url())
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(key["signing_key"], cw.signing_key());
    cw.shutdown().await;
}

#[tokio::test]
async fn autotask_discovers_its_zone_and_pages_with_next_page_urls() {
    let at = AutotaskEmulator::start(AutotaskCredentials {
        username: "api@msp.example".into(),
        secret: "s3cret".into(),
        integration_code: "CODE".into(),
    })
    .await
    .unwrap();
    for i in 0..5 {
        at.seed_company(&format!("Company {i}"), 3);
    }
    let http = reqwest::Client::new();
    let zone: Value = http
        .get(format!(
            "{}/atservicesrest/v1.0/ZoneInformation?user=api@msp.example",
            at.url()
        ))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let base = zone["url"].as_str().unwrap().to_owned();
    assert_eq!(base, format!("{}/atservicesrest/", at.url()));

    let query = json!({"MaxRecords": 2, "filter": [{"op": "gte", "field": "id", "value": 0}]});
    let refused = http
        .post(format!("{base}v1.0/Companies/query"))
        .json(&query)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 401);

    let auth = |r: reqwest::RequestBuilder| {
        r.header("ApiIntegrationCode", "CODE")
            .header("UserName", "api@msp.example")
            .header("Secret", "s3cret")
    };
    let mut names = Vec::new();
    let mut page: Value = auth(
        http.post(format!("{base}v1.0/Companies/query"))
            .json(&query),
    )
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    loop {
        for item in page["items"].as_array().unwrap() {
            names.push(item["companyName"].as_str().unwrap().to_owned());
        }
        let Some(next) = page["pageDetails"]["nextPageUrl"].as_str() else {
            break;
        };
        page = auth(http.get(next))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    }
    assert_eq!(names.len(), 5, "{names:?}");
    let too_many = json!({"MaxRecords": 501, "filter": [{"op": "gte", "field": "id", "value": 0}]});
    let refused = auth(
        http.post(format!("{base}v1.0/Companies/query"))
            .json(&too_many),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(refused.status(), 400);
    let no_filter = auth(
        http.post(format!("{base}v1.0/Companies/query"))
            .json(&json!({})),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(no_filter.status(), 400);
    let no_deactivation = auth(http.post(format!("{base}v1.0/CompanyWebhooks")).json(&json!({
        "IsActive": true, "Name": "x", "WebhookUrl": "http://127.0.0.1:9/hook", "SecretKey": "k"
    })))
    .send()
    .await
    .unwrap();
    assert_eq!(no_deactivation.status(), 400);
    let missing: Value = auth(http.get(format!("{base}v1.0/Companies/999")))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(missing, json!({"item": null}));
    at.shutdown().await;
}

#[tokio::test]
async fn halo_issues_tokens_and_saves_posted_arrays() {
    let halo = HaloPsaEmulator::start(HaloCredentials {
        client_id: "app".into(),
        client_secret: "shh".into(),
    })
    .await
    .unwrap();
    let http = reqwest::Client::new();
    let refused = http
        .post(format!("{}/auth/token", halo.url()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "app"),
            ("client_secret", "bad"),
        ])
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    let token: Value = http
        .post(format!("{}/auth/token", halo.url()))
        .form(&[
            ("grant_type", "client_credentials"),
            ("client_id", "app"),
            ("client_secret", "shh"),
            ("scope", "all"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let bearer = token["access_token"].as_str().unwrap().to_owned();
    assert_eq!(
        http.get(format!("{}/api/Client", halo.url()))
            .send()
            .await
            .unwrap()
            .status(),
        401
    );

    let created: Value = http
        .post(format!("{}/api/Client", halo.url()))
        .bearer_auth(&bearer)
        .json(&json!([{"name": "Acme"}]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let id = created["id"].as_u64().unwrap();
    let updated: Value = http
        .post(format!("{}/api/Client", halo.url()))
        .bearer_auth(&bearer)
        .json(&json!([{"id": id, "customertype": "Customer"}]))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(updated["name"], "Acme");
    assert_eq!(halo.client(id).unwrap()["customertype"], "Customer");
    assert_eq!(halo.harness().counted("clients.created"), 1);
    assert_eq!(halo.harness().counted("clients.updated"), 1);

    halo.expire_tokens();
    let expired = http
        .get(format!("{}/api/Client/{id}", halo.url()))
        .bearer_auth(&bearer)
        .send()
        .await
        .unwrap();
    assert_eq!(expired.status(), 401);
    halo.shutdown().await;
}
