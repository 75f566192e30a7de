//! The connector directory over HTTP, on SQLite and (with
//! `GATEHOUSE_TEST_DATABASE_URL`) PostgreSQL: created, replaced, listed and
//! removed by admins and leads only; scoped to its tenant; credentials only
//! by name; every change audited.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests fail loudly"
)]

mod common;

use common::Served;
use gatehouse_engine::action::ActionRegistry;
use gatehouse_store::testing::TestDatabase;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

async fn call(
    t: &Served,
    method: Method,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
) -> (StatusCode, Value) {
    let mut request = t.http.request(method, format!("{}{path}", t.base));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status();
    let text = response.text().await.unwrap();
    let json = if text.is_empty() {
        Value::Null
    } else {
        serde_json::from_str(&text).unwrap_or(Value::String(text))
    };
    (status, json)
}

async fn tenant(t: &Served, slug: &str) -> String {
    let (status, body) = call(
        t,
        Method::POST,
        "/api/v1/tenants",
        Some(&t.admin),
        Some(json!({"slug": slug, "display_name": slug, "region": "eu"})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["id"].as_str().unwrap().to_owned()
}

async fn operator(t: &Served, name: &str, role: &str) -> String {
    let (status, body) = call(
        t,
        Method::POST,
        "/api/v1/operators",
        Some(&t.admin),
        Some(json!({"name": name, "display_name": name, "role": role})),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    body["token"]["token"].as_str().unwrap().to_owned()
}

fn ninja() -> Value {
    json!({
        "kind": "ninjaone",
        "base_url": "https://eu.ninjarmm.com",
        "settings": {"client_id": "abc", "region": "eu"},
        "secrets": {"client_secret": "ninjaone.client-secret"},
    })
}

async fn connectors_over_http(t: &Served) {
    let acme = tenant(t, "acme").await;
    let _other = tenant(t, "other").await;
    let lead = operator(t, "lea", "lead").await;
    let tech = operator(t, "tom", "technician").await;
    let path = "/api/v1/tenants/acme/connectors/rmm";

    // Created (201) by a lead, then replaced (200, next version) by the admin.
    let (status, created) = call(t, Method::PUT, path, Some(&lead), Some(ninja())).await;
    assert_eq!(status, StatusCode::CREATED, "{created}");
    assert!(created["id"].as_str().unwrap().starts_with("con_"));
    assert_eq!(created["tenant_id"], json!(acme));
    assert_eq!(created["category"], "rmm");
    assert_eq!(created["version"], 1);
    let mut changed = ninja();
    changed["settings"]["region"] = json!("us2");
    let (status, replaced) = call(t, Method::PUT, path, Some(&t.admin), Some(changed)).await;
    assert_eq!(status, StatusCode::OK, "{replaced}");
    assert_eq!(replaced["id"], created["id"]);
    assert_eq!(replaced["version"], 2);
    assert_eq!(replaced["settings"]["region"], "us2");

    let (status, list) = call(
        t,
        Method::GET,
        "/api/v1/tenants/acme/connectors",
        Some(&lead),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(list["items"].as_array().unwrap().len(), 1);
    assert_eq!(
        list["items"][0]["secrets"]["client_secret"],
        "ninjaone.client-secret"
    );
    // Another tenant's directory is its own.
    let (_, theirs) = call(
        t,
        Method::GET,
        "/api/v1/tenants/other/connectors",
        Some(&lead),
        None,
    )
    .await;
    assert_eq!(theirs["items"], json!([]));

    // Technicians and auditors do not manage connectors; strangers get 401.
    let (status, _) = call(
        t,
        Method::GET,
        "/api/v1/tenants/acme/connectors",
        Some(&tech),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = call(t, Method::PUT, path, Some(&tech), Some(ninja())).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, _) = call(t, Method::DELETE, path, None, None).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);
    let (status, body) = call(
        t,
        Method::GET,
        "/api/v1/tenants/nobody/connectors",
        Some(&lead),
        None,
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");

    // Bad input: a credential in the settings, a URL with user info, an
    // unknown kind, a bad name, an unknown field.
    let mut leaky = ninja();
    leaky["settings"]["client_secret"] = json!("hunter2");
    let (status, body) = call(t, Method::PUT, path, Some(&lead), Some(leaky)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(!body.to_string().contains("hunter2"), "{body}");
    let mut userinfo = ninja();
    userinfo["base_url"] = json!("https://me:pw@eu.ninjarmm.com");
    let (status, _) = call(t, Method::PUT, path, Some(&lead), Some(userinfo)).await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let mut unknown = ninja();
    unknown["kind"] = json!("jira");
    let (status, _) = call(t, Method::PUT, path, Some(&lead), Some(unknown)).await;
    assert!(status.is_client_error(), "{status}");
    let (status, _) = call(
        t,
        Method::PUT,
        "/api/v1/tenants/acme/connectors/Bad%20Name",
        Some(&lead),
        Some(ninja()),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    let mut extra = ninja();
    extra["password"] = json!("x");
    let (status, _) = call(t, Method::PUT, path, Some(&lead), Some(extra)).await;
    assert!(status.is_client_error(), "{status}");
    // Nothing of it changed the stored connector.
    let (_, list) = call(
        t,
        Method::GET,
        "/api/v1/tenants/acme/connectors",
        Some(&lead),
        None,
    )
    .await;
    assert_eq!(list["items"][0]["version"], 2);

    // Removed once; a second removal is 404 with its own code.
    let (status, _) = call(t, Method::DELETE, path, Some(&lead), None).await;
    assert_eq!(status, StatusCode::NO_CONTENT);
    let (status, body) = call(t, Method::DELETE, path, Some(&lead), None).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(body["error"]["code"], "connector_not_found", "{body}");

    // Each change is in the tenant's audit outbox, without credentials.
    let records = t.app.store.pending_audit(1000).await.unwrap();
    assert!(
        !records
            .iter()
            .any(|(_, r)| r.details.to_string().contains("hunter2")),
        "no credential is ever recorded"
    );
    let actions: Vec<&str> = records
        .iter()
        .filter(|(_, r)| r.tenant_id.map(|id| id.to_string()) == Some(acme.clone()))
        .map(|(_, r)| r.action.as_str())
        .filter(|a| a.starts_with("tenant.connector"))
        .collect();
    assert_eq!(
        actions,
        vec![
            "tenant.connector.set",
            "tenant.connector.set",
            "tenant.connector.deleted"
        ]
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connectors_over_http_sqlite() {
    let db = TestDatabase::sqlite().await.unwrap();
    let mut t = Served::spawn(&db, Vec::new(), ActionRegistry::new(), 64 * 1024)
        .await
        .unwrap();
    connectors_over_http(&t).await;
    t.stop();
    db.cleanup().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connectors_over_http_postgres() {
    let Some(db) = TestDatabase::postgres("connectors_over_http")
        .await
        .unwrap()
    else {
        eprintln!("GATEHOUSE_TEST_DATABASE_URL is not set; the PostgreSQL run is done by .ci/run");
        return;
    };
    let mut t = Served::spawn(&db, Vec::new(), ActionRegistry::new(), 64 * 1024)
        .await
        .unwrap();
    connectors_over_http(&t).await;
    t.stop();
    db.cleanup().await;
}
