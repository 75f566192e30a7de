//! The HTTP API, driven over real HTTP against a server on loopback. Each
//! case runs on SQLite and, when `GATEHOUSE_TEST_DATABASE_URL` is set, on
//! PostgreSQL, each in a database of its own.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests fail loudly"
)]

use std::sync::Arc;

use gatehouse_core::operator::Role;
use gatehouse_engine::action::{ActionRegistry, Noop};
use gatehouse_engine::template::Template;
use gatehouse_store::testing::TestDatabase;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// `test.plain` starts one ungated step; `test.gated` prepares, then waits
/// for an approval (client onboarding is gate L2) before it provisions.
fn test_templates() -> Vec<Template> {
    let catalog: std::collections::BTreeSet<&str> = ["sandbox.noop", "sandbox.flaky"].into();
    let plain = r#"
name = "plain"
version = 1
title = "Plain"
area = "documentation"

[[trigger]]
event = "test.plain"

[[stage]]
id = "run"
title = "Run"

[[stage.step]]
id = "only"
title = "Only step"
action = "sandbox.noop"
"#;
    let gated = r#"
name = "gated"
version = 1
title = "Gated"
area = "documentation"

[[trigger]]
event = "test.gated"

[[stage]]
id = "run"
title = "Run"

[[stage.step]]
id = "prepare"
title = "Prepare"
action = "sandbox.noop"

[[stage.step]]
id = "provision"
title = "Provision"
action = "sandbox.noop"
area = "client_onboarding"
needs = ["prepare"]
"#;
    let reviewed = r#"
name = "reviewed"
version = 1
title = "Reviewed"
area = "documentation"

[[trigger]]
event = "test.reviewed"

[[stage]]
id = "run"
title = "Run"

[[stage.step]]
id = "grant"
title = "Grant, then tell the reviewer"
action = "sandbox.noop"
gate = "L1"
compensate = { action = "sandbox.noop" }
"#;
    // `test.flaky` runs one step whose first attempt fails (retryable).
    let flaky = r#"
name = "flaky"
version = 1
title = "Flaky"
area = "documentation"

[[trigger]]
event = "test.flaky"

[[stage]]
id = "run"
title = "Run"

[[stage.step]]
id = "only"
title = "Only step"
action = "sandbox.flaky"
retry = { max_attempts = 3, initial = "1s", max = "10s", multiplier = 2.0, jitter = 0.0 }
"#;
    vec![
        Template::from_toml("test/plain.toml", plain, &catalog).unwrap(),
        Template::from_toml("test/gated.toml", gated, &catalog).unwrap(),
        Template::from_toml("test/reviewed.toml", reviewed, &catalog).unwrap(),
        Template::from_toml("test/flaky.toml", flaky, &catalog).unwrap(),
    ]
}

/// Fails the first attempt of every idempotency key (retryable), then succeeds.
#[derive(Default)]
struct FlakyOnce(std::sync::Mutex<std::collections::HashSet<String>>);

#[async_trait::async_trait]
impl gatehouse_engine::action::Action for FlakyOnce {
    async fn run(
        &self,
        call: gatehouse_engine::action::ActionCall<'_>,
    ) -> Result<Value, gatehouse_engine::action::ActionError> {
        if self
            .0
            .lock()
            .unwrap()
            .insert(call.idempotency_key.to_owned())
        {
            return Err(gatehouse_engine::action::ActionError::retryable(
                "first attempt fails",
            ));
        }
        Ok(json!({ "attempt": call.attempt }))
    }
}

/// A running server and an admin token.
mod common;

use common::Served as TestApp;

/// Actions of the tests' templates.
fn test_actions() -> ActionRegistry {
    let mut actions = ActionRegistry::new();
    actions.register("sandbox.noop", Arc::new(Noop));
    actions.register("sandbox.flaky", Arc::new(FlakyOnce::default()));
    actions
}

async fn spawn(db: &TestDatabase) -> TestApp {
    TestApp::spawn(db, test_templates(), test_actions(), 4096)
        .await
        .unwrap()
}

impl TestApp {
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
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

    async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call(method, path, Some(&self.admin), body).await
    }

    async fn create_tenant(&self, slug: &str) -> Value {
        let (status, body) = self
            .admin(
                Method::POST,
                "/api/v1/tenants",
                Some(json!({"slug": slug, "display_name": slug, "region": "eu"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body
    }

    /// Creates an operator with `role`; returns their token.
    async fn operator(&self, name: &str, role: &str) -> (String, String) {
        let (status, body) = self
            .admin(
                Method::POST,
                "/api/v1/operators",
                Some(json!({"name": name, "display_name": name, "role": role})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        (
            body["operator"]["id"].as_str().unwrap().to_owned(),
            body["token"]["token"].as_str().unwrap().to_owned(),
        )
    }

    /// Runs engine waves until no instance is due.
    async fn settle(&self) {
        for _ in 0..100 {
            if self.app.engine.tick().await.unwrap() == 0 {
                return;
            }
        }
        panic!("the engine did not settle");
    }

    /// Submits an event of `kind` with `key` as admin; returns the body.
    async fn submit(&self, kind: &str, key: &str, expect: StatusCode) -> Value {
        let (status, body) = self
            .admin(
                Method::POST,
                "/api/v1/events",
                Some(json!({"type": kind, "dedup_key": key, "payload": {"n": 1}})),
            )
            .await;
        assert_eq!(status, expect, "{body}");
        body
    }
}

/// `path` (an OpenAPI template) with its parameters filled in: `tenant` for
/// `{tenant}`, made-up ids for the rest.
fn concrete(path: &str, tenant: &str) -> String {
    path.replace("{tenant}", tenant)
        .replace("{group}", "eu-clients")
        .replace("{name}", "psa.api-key")
        .replace("{area}", "joiner_access")
        .replace("{operator}", "op_01jd8x3k2q9f6v0c4m7r5t8w1y")
        .replace("{token}", "tok_01jd8x3k2q9f6v0c4m7r5t8w1y")
        .replace("{workflow}", "wf_01jd8x3k2q9f6v0c4m7r5t8w1y")
        .replace("{approval}", "apr_01jd8x3k2q9f6v0c4m7r5t8w1y")
        .replace("{task}", "tsk_01jd8x3k2q9f6v0c4m7r5t8w1y")
        .replace("{article}", "kba_01jd8x3k2q9f6v0c4m7r5t8w1y")
        .replace("{step}", "only")
        .replace("{log}", "system")
        .replace("{idx}", "0")
        .replace("{onboarding}", "wf_01jd8x3k2q9f6v0c4m7r5t8w1y")
        .replace("{item}", "chk_01jd8x3k2q9f6v0c4m7r5t8w1y")
        .replace("{person}", "E100")
        .replace("{id}", "jit_0000")
}

fn assert_error(body: &Value, code: &str) {
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
}

mod cases {
    use super::*;

    /// Every operation in the OpenAPI document: as a stranger (401), as an
    /// admin scoped to another tenant (404) and with a role that lacks its
    /// permission (403); and the permission table matches the document.
    pub async fn every_api_route_is_covered_by_the_policies(t: &TestApp) {
        let tenant = t.create_tenant("acme").await;
        let tenant_id = tenant["id"].as_str().unwrap();
        let doc = gatehouse_server::http::openapi();
        let doc = serde_json::to_value(&doc).unwrap();
        let paths = doc["paths"].as_object().unwrap();
        assert!(paths.len() >= 10, "the document lists the API");
        let mut checked = 0;
        let mut public = Vec::new();
        for (path, operations) in paths {
            let concrete = concrete(path, tenant_id);
            assert!(
                !concrete.contains('{'),
                "a path parameter of {path} is not covered by this test"
            );
            for (method, operation) in operations.as_object().unwrap() {
                let method: Method = method.to_uppercase().parse().unwrap();
                // `security: [{}]`: public by design (the audit public key).
                if operation["security"] == json!([{}]) {
                    let (status, body) = t.call(method, &concrete, None, None).await;
                    assert_eq!(status, StatusCode::OK, "public {path}: {body}");
                    public.push(path.clone());
                    continue;
                }
                for token in [None, Some("gth_not-a-real-token"), Some("")] {
                    let mut request = t
                        .http
                        .request(method.clone(), format!("{}{concrete}", t.base));
                    if let Some(token) = token {
                        request = request.header("authorization", format!("Bearer {token}"));
                    }
                    let response = request.json(&json!({})).send().await.unwrap();
                    assert_eq!(
                        response.status(),
                        StatusCode::UNAUTHORIZED,
                        "{method} {path} with {token:?}"
                    );
                    assert_eq!(response.headers()["www-authenticate"], "Bearer");
                    let body: Value = response.json().await.unwrap();
                    assert_error(&body, "unauthenticated");
                }
                checked += 1;
            }
        }
        assert!(checked >= 16, "checked {checked} operations");
        assert_eq!(public, vec!["/api/v1/audit/public-key".to_owned()]);
        // Nothing a stranger sent changed anything.
        let (_, list) = t.admin(Method::GET, "/api/v1/tenants", None).await;
        assert_eq!(list["items"].as_array().unwrap().len(), 1);

        // Every route about a tenant, as an admin scoped to another tenant:
        // 404, as for a missing tenant, whatever the body.
        t.create_tenant("beta").await;
        let (admin, token) = t.operator("ada.scoped", "admin").await;
        let (status, body) = t
            .admin(
                Method::PUT,
                &format!("/api/v1/operators/{admin}/scope"),
                Some(json!({"tenants": ["beta"]})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let mut elsewhere = 0;
        for (path, operations) in paths {
            if !path.contains("{tenant}") {
                continue;
            }
            let concrete = concrete(path, tenant_id);
            for method in operations.as_object().unwrap().keys() {
                let method: Method = method.to_uppercase().parse().unwrap();
                let (status, body) = t
                    .call(method.clone(), &concrete, Some(&token), Some(json!({})))
                    .await;
                assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {body}");
                assert_error(&body, "tenant_not_found");
                elsewhere += 1;
            }
        }
        assert!(elsewhere >= 35, "checked {elsewhere} tenant operations");
        // Nothing the scoped admin sent changed acme.
        let (_, acme) = t
            .admin(Method::GET, &format!("/api/v1/tenants/{tenant_id}"), None)
            .await;
        assert_eq!(acme["state"], tenant["state"], "{acme}");

        // The permission table lists exactly the document's operations.
        use gatehouse_server::http::permissions::{Need, OPERATIONS};
        let mut documented: Vec<(String, String)> = paths
            .iter()
            .flat_map(|(path, ops)| {
                ops.as_object()
                    .unwrap()
                    .keys()
                    .map(move |m| (m.to_uppercase(), path.clone()))
            })
            .collect();
        let mut declared: Vec<(String, String)> = OPERATIONS
            .iter()
            .map(|(m, p, _)| ((*m).to_owned(), (*p).to_owned()))
            .collect();
        documented.sort();
        declared.sort();
        assert_eq!(
            declared, documented,
            "http::permissions::OPERATIONS must list every API operation, once"
        );
        // Every operation, with a role that lacks its permission: 403 before
        // the body is read (`{}` would not parse for most of them).
        let policies = gatehouse_server::authz::policies().unwrap();
        let mut tokens = std::collections::HashMap::new();
        for role in Role::ALL {
            let name = format!("{}.role", role.as_str());
            tokens.insert(role, t.operator(&name, role.as_str()).await.1);
        }
        let mut refused = 0;
        for (method, path, need) in OPERATIONS {
            let Need::Role(permission) = need else {
                continue;
            };
            let Some(role) = Role::ALL
                .into_iter()
                .find(|r| !policies.allows("x", *r, "token", *permission).unwrap())
            else {
                continue; // every role holds it (reads such as ReadTenants)
            };
            let concrete = concrete(path, tenant_id);
            let method: Method = method.parse().unwrap();
            let (status, body) = t
                .call(
                    method.clone(),
                    &concrete,
                    Some(&tokens[&role]),
                    Some(json!({})),
                )
                .await;
            assert_eq!(
                status,
                StatusCode::FORBIDDEN,
                "{method} {path} as {role}: {body}"
            );
            assert_error(&body, "forbidden");
            refused += 1;
        }
        assert!(refused >= 45, "refused {refused} operations");
    }

    /// An operator scoped to a tenant group reaches its members as the
    /// group changes; groups are the installation's, refused to scoped
    /// operators and to roles without `ManageTenants`; a group in use
    /// cannot be deleted.
    pub async fn a_tenant_group_widens_a_scope_as_it_changes(t: &TestApp) {
        for slug in ["acme", "beta", "gamma"] {
            t.create_tenant(slug).await;
        }
        let (sam, sam_token) = t.operator("sam.group", "technician").await;
        let sam_token = Some(sam_token.as_str());
        let (_, lead) = t.operator("lea.lead", "lead").await;
        let groups = "/api/v1/tenant-groups";
        let eu = json!({"slug": "eu-clients", "display_name": "EU clients", "tenants": ["acme"]});

        // Creating: admins of the installation only; members must exist and
        // be alive; slugs are unique.
        let (status, err) = t
            .call(Method::POST, groups, Some(&lead), Some(eu.clone()))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{err}");
        let (status, err) = t
            .admin(
                Method::POST,
                groups,
                Some(json!({"slug": "ghosts", "display_name": "G", "tenants": ["nope"]})),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{err}");
        assert_error(&err, "tenant_not_found");
        let (status, group) = t.admin(Method::POST, groups, Some(eu.clone())).await;
        assert_eq!(status, StatusCode::CREATED, "{group}");
        assert_eq!(group["slug"], "eu-clients");
        assert_eq!(group["tenants"].as_array().unwrap().len(), 1, "{group}");
        let (status, err) = t.admin(Method::POST, groups, Some(eu)).await;
        assert_eq!(status, StatusCode::CONFLICT, "{err}");
        assert_error(&err, "tenant_group_slug_taken");
        let (status, err) = t
            .admin(Method::GET, "/api/v1/tenant-groups/nope-group", None)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{err}");
        assert_error(&err, "tenant_group_not_found");

        // Scoped to the group (and gamma by name): acme and gamma, not beta.
        let scope = format!("/api/v1/operators/{sam}/scope");
        let (status, err) = t
            .admin(
                Method::PUT,
                &scope,
                Some(json!({"tenants": null, "groups": ["eu-clients"]})),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
        let (status, err) = t
            .admin(
                Method::PUT,
                &scope,
                Some(json!({"tenants": [], "groups": ["nope-group"]})),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{err}");
        assert_error(&err, "tenant_group_not_found");
        let (status, scoped) = t
            .admin(
                Method::PUT,
                &scope,
                Some(json!({"tenants": ["gamma"], "groups": ["eu-clients"]})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{scoped}");
        assert_eq!(scoped["scope"]["groups"], json!([group["id"]]), "{scoped}");
        let visible = async || -> Vec<String> {
            let (status, page) = t
                .call(Method::GET, "/api/v1/tenants", sam_token, None)
                .await;
            assert_eq!(status, StatusCode::OK, "{page}");
            let mut slugs: Vec<String> = page["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|t| t["slug"].as_str().unwrap().to_owned())
                .collect();
            slugs.sort();
            slugs
        };
        assert_eq!(visible().await, ["acme", "gamma"]);
        let (status, _) = t
            .call(Method::GET, "/api/v1/tenants/beta", sam_token, None)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        // Beta joins the group: in reach on the next request. Acme leaves:
        // out of reach, as if it did not exist. Both are idempotent.
        let member = |slug: &str| format!("/api/v1/tenant-groups/eu-clients/tenants/{slug}");
        for _ in 0..2 {
            let (status, body) = t.admin(Method::PUT, &member("beta"), None).await;
            assert_eq!(status, StatusCode::OK, "{body}");
            assert_eq!(body["tenants"].as_array().unwrap().len(), 2, "{body}");
        }
        assert_eq!(visible().await, ["acme", "beta", "gamma"]);
        let (status, _) = t
            .call(Method::GET, "/api/v1/tenants/beta", sam_token, None)
            .await;
        assert_eq!(status, StatusCode::OK);
        for _ in 0..2 {
            let (status, body) = t.admin(Method::DELETE, &member("acme"), None).await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
        assert_eq!(visible().await, ["beta", "gamma"]);
        let (status, err) = t
            .call(Method::GET, "/api/v1/tenants/acme", sam_token, None)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{err}");
        assert_error(&err, "tenant_not_found");

        // The scoped operator cannot read or change groups, even as an admin.
        let (_, boss_token) = t.operator("bo.scoped", "admin").await;
        let (_, bo_id) = t
            .call(Method::GET, "/api/v1/me", Some(&boss_token), None)
            .await;
        let bo_scope = format!("/api/v1/operators/{}/scope", bo_id["id"].as_str().unwrap());
        let (status, body) = t
            .admin(
                Method::PUT,
                &bo_scope,
                Some(json!({"tenants": [], "groups": ["eu-clients"]})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        for (method, path) in [
            (Method::GET, groups.to_owned()),
            (Method::GET, "/api/v1/tenant-groups/eu-clients".to_owned()),
            (Method::PUT, member("beta")),
        ] {
            let (status, err) = t.call(method.clone(), &path, Some(&boss_token), None).await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {err}");
        }
        // Out of their reach, a member route is "not found" first.
        let (status, _) = t
            .call(Method::PUT, &member("acme"), Some(&boss_token), None)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        // In use: not deleted, naming who uses it.
        let (status, err) = t
            .admin(Method::DELETE, "/api/v1/tenant-groups/eu-clients", None)
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{err}");
        assert_error(&err, "tenant_group_in_use");
        assert!(
            err["error"]["message"]
                .as_str()
                .unwrap()
                .contains("sam.group"),
            "{err}"
        );
        for path in [&scope, &bo_scope] {
            let (status, body) = t
                .admin(Method::PUT, path, Some(json!({"tenants": ["gamma"]})))
                .await;
            assert_eq!(status, StatusCode::OK, "{body}");
        }
        assert_eq!(visible().await, ["gamma"]);
        let (status, _) = t
            .admin(Method::DELETE, "/api/v1/tenant-groups/eu-clients", None)
            .await;
        assert_eq!(status, StatusCode::NO_CONTENT);
        let (status, list) = t.admin(Method::GET, groups, None).await;
        assert_eq!(status, StatusCode::OK, "{list}");
        assert_eq!(list["items"], json!([]));

        // Audited in the system log, once per change.
        let sequencer =
            gatehouse_server::audit::Sequencer::new(t.app.store.clone(), t.app.keyring.clone());
        while sequencer.run_once(4096).await.unwrap() > 0 {}
        for (action, times) in [
            ("tenant_group.created", 1),
            ("tenant_group.tenant_added", 1),
            ("tenant_group.tenant_removed", 1),
            ("tenant_group.deleted", 1),
        ] {
            let (_, found) = t
                .admin(
                    Method::GET,
                    &format!("/api/v1/audit/entries?tenant=system&action={action}"),
                    None,
                )
                .await;
            let entries = found["entries"].as_array().unwrap();
            assert_eq!(entries.len(), times, "{action}: {found}");
        }
    }

    /// An operator scoped to one tenant: every other tenant and what it
    /// owns is "not found", the installation's settings are forbidden, and
    /// lists show their tenant's items only.
    pub async fn a_scoped_operator_never_sees_another_tenants_data(t: &TestApp) {
        let acme = t.create_tenant("acme").await;
        let beta = t.create_tenant("beta").await;
        let acme_id = acme["id"].as_str().unwrap();
        let beta_id = beta["id"].as_str().unwrap();
        let (sam, sam_token) = t.operator("sam.scoped", "lead").await;
        let sam_token = Some(sam_token.as_str());
        let scope = format!("/api/v1/operators/{sam}/scope");

        // Only an admin of the whole installation scopes operators; a
        // tenant must exist; an empty list is not a scope.
        let (_, lead) = t.operator("lea.lead", "lead").await;
        let body = Some(json!({"tenants": ["acme"]}));
        let (status, _) = t.call(Method::PUT, &scope, Some(&lead), body.clone()).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, err) = t
            .admin(Method::PUT, &scope, Some(json!({"tenants": ["nope"]})))
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{err}");
        let (status, err) = t
            .admin(Method::PUT, &scope, Some(json!({"tenants": []})))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{err}");
        let (_, me) = t.admin(Method::GET, "/api/v1/me", None).await;
        let mine = format!("/api/v1/operators/{}/scope", me["id"].as_str().unwrap());
        let (status, err) = t
            .admin(Method::PUT, &mine, Some(json!({"tenants": ["acme"]})))
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{err}");
        assert_error(&err, "cannot_scope_self");
        let (status, err) = t.admin(Method::PUT, &scope, Some(json!({}))).await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "an empty body widens nothing: {err}"
        );
        let (status, scoped) = t.admin(Method::PUT, &scope, body).await;
        assert_eq!(status, StatusCode::OK, "{scoped}");
        assert_eq!(
            scoped["scope"],
            json!({"kind": "tenants", "tenants": [acme_id], "groups": [], "reach": [acme_id]})
        );
        let (_, me) = t.call(Method::GET, "/api/v1/me", sam_token, None).await;
        assert_eq!(me["scope"]["tenants"], json!([acme_id]), "{me}");

        // A gated workflow in each tenant, started by the admin.
        for (tenant, key) in [("acme", "a-1"), ("beta", "b-1")] {
            let (status, body) = t
                .admin(
                    Method::POST,
                    "/api/v1/events",
                    Some(json!({"type": "test.gated", "dedup_key": key, "tenant": tenant})),
                )
                .await;
            assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        }
        t.settle().await;
        let (_, all) = t.admin(Method::GET, "/api/v1/approvals", None).await;
        let approval_of = |tenant: &str| {
            all["items"]
                .as_array()
                .unwrap()
                .iter()
                .find(|a| a["tenant_id"] == tenant)
                .unwrap_or_else(|| panic!("no approval for {tenant}: {all}"))
                .clone()
        };
        let (mine, theirs) = (approval_of(acme_id), approval_of(beta_id));

        // Lists: their tenant's only.
        let get = |path: String| async move { t.call(Method::GET, &path, sam_token, None).await };
        let (status, tenants) = get("/api/v1/tenants".into()).await;
        assert_eq!(status, StatusCode::OK);
        let slugs: Vec<&str> = tenants["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["slug"].as_str().unwrap())
            .collect();
        assert_eq!(slugs, ["acme"]);
        for list in ["/api/v1/approvals", "/api/v1/workflows"] {
            let (status, page) = get(list.into()).await;
            assert_eq!(status, StatusCode::OK, "{page}");
            let items = page["items"].as_array().unwrap();
            assert!(!items.is_empty(), "{list}: {page}");
            assert!(
                items.iter().all(|i| i["tenant_id"] == acme_id),
                "{list}: {page}"
            );
        }
        let (_, filtered) = get("/api/v1/approvals?tenant=beta".into()).await;
        assert_error(&filtered, "tenant_not_found");

        // Another tenant and what it owns: exactly as if missing.
        let (status, missing) = get("/api/v1/tenants/no-such-tenant".into()).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        for path in [
            "/api/v1/tenants/beta".to_owned(),
            format!("/api/v1/tenants/{beta_id}"),
            "/api/v1/tenants/beta/people".to_owned(),
            "/api/v1/tenants/beta/gates".to_owned(),
        ] {
            let (status, body) = get(path.clone()).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}: {body}");
            assert_eq!(body["error"]["code"], missing["error"]["code"], "{path}");
        }
        let theirs_id = theirs["id"].as_str().unwrap();
        let (status, body) = get(format!("/api/v1/approvals/{theirs_id}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert_error(&body, "approval_not_found");
        let workflow = theirs["instance_id"].as_str().unwrap();
        let (status, _) = get(format!("/api/v1/workflows/{workflow}")).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let reason = Some(json!({"reason": "looks fine"}));
        let (status, body) = t
            .call(
                Method::POST,
                &format!("/api/v1/approvals/{theirs_id}/approve"),
                sam_token,
                reason.clone(),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        // A write to another tenant is refused before its body is read.
        for body in [json!({"value": "s3cret"}), json!({"nonsense": true})] {
            let (status, answer) = t
                .call(
                    Method::PUT,
                    "/api/v1/tenants/beta/secrets/psa.api-key",
                    sam_token,
                    Some(body),
                )
                .await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{answer}");
        }
        // Their own tenant's secrets, yes; the PSA intake's, which would let
        // a won deal start the installation's onboarding, no.
        let (status, answer) = t
            .call(
                Method::PUT,
                "/api/v1/tenants/acme/secrets/psa.api-key",
                sam_token,
                Some(json!({"value": "s3cret"})),
            )
            .await;
        assert!(status.is_success(), "{answer}");
        let (status, answer) = t
            .call(
                Method::PUT,
                "/api/v1/tenants/acme/secrets/hooks.generic.secret",
                sam_token,
                Some(json!({"value": "s3cret"})),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
        // Their own tenant's approval: the role decides.
        let mine_id = mine["id"].as_str().unwrap();
        let (status, body) = t
            .call(
                Method::POST,
                &format!("/api/v1/approvals/{mine_id}/approve"),
                sam_token,
                reason,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");

        // The installation's settings: forbidden, saying why (a lead may
        // read the operators, but not while scoped); beyond the role, the
        // role is named.
        let (status, answer) = get("/api/v1/operators".into()).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
        assert!(answer.to_string().contains("some tenants only"), "{answer}");
        let (status, answer) = t
            .call(
                Method::POST,
                "/api/v1/tenants",
                sam_token,
                Some(json!({"slug": "gamma", "display_name": "Gamma", "region": "eu"})),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
        assert!(answer.to_string().contains("admin"), "{answer}");
        // Events are the installation's intake, even naming their tenant:
        // a won deal's workflow would create a tenant.
        let (status, answer) = t
            .call(
                Method::POST,
                "/api/v1/events",
                sam_token,
                Some(json!({"type": "test.gated", "dedup_key": "a-2", "tenant": "acme"})),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{answer}");
        assert!(answer.to_string().contains("some tenants only"), "{answer}");

        // The audit log: their tenant's log, never the system's or beta's.
        let sequencer =
            gatehouse_server::audit::Sequencer::new(t.app.store.clone(), t.app.keyring.clone());
        while sequencer.run_once(4096).await.unwrap() > 0 {}
        let (status, entries) = get("/api/v1/audit/entries".into()).await;
        assert_eq!(status, StatusCode::OK, "{entries}");
        let items = entries["entries"].as_array().unwrap();
        assert!(!items.is_empty());
        assert!(items.iter().all(|e| e["log"] == acme_id), "{entries}");
        let (status, _) = get("/api/v1/audit/entries?tenant=beta".into()).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = get("/api/v1/audit/entries?tenant=system".into()).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (_, logs) = get("/api/v1/audit/logs".into()).await;
        let names: Vec<&str> = logs["logs"]
            .as_array()
            .unwrap_or_else(|| panic!("{logs}"))
            .iter()
            .map(|l| l["log"].as_str().unwrap())
            .collect();
        assert_eq!(names, [acme_id]);

        // Back to the whole installation: beta is there again, at once.
        let (status, _) = t
            .admin(Method::PUT, &scope, Some(json!({"tenants": null})))
            .await;
        assert_eq!(status, StatusCode::OK);
        let (status, _) = get("/api/v1/tenants/beta".into()).await;
        assert_eq!(status, StatusCode::OK);
        // Both changes are in the system log, by the admin.
        while sequencer.run_once(4096).await.unwrap() > 0 {}
        let (_, changes) = t
            .admin(
                Method::GET,
                "/api/v1/audit/entries?tenant=system&action=operator.scope.changed",
                None,
            )
            .await;
        let changes = changes["entries"].as_array().unwrap();
        assert_eq!(changes.len(), 2, "{changes:?}");

        // A scoped admin runs their tenant's lifecycle but cannot
        // crypto-shred it: that cannot be undone.
        let (root, root_token) = t.operator("root.scoped", "admin").await;
        let (status, _) = t
            .admin(
                Method::PUT,
                &format!("/api/v1/operators/{root}/scope"),
                Some(json!({"tenants": ["acme"]})),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        let root_token = Some(root_token.as_str());
        let (status, body) = t
            .call(
                Method::POST,
                "/api/v1/tenants/acme/suspend",
                root_token,
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let (status, body) = t
            .call(Method::DELETE, "/api/v1/tenants/acme", root_token, None)
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert!(body.to_string().contains("some tenants only"), "{body}");
        let (_, acme) = t.admin(Method::GET, "/api/v1/tenants/acme", None).await;
        assert_eq!(acme["state"], "suspended", "{acme}");
    }

    pub async fn expired_revoked_and_disabled_credentials_stop_working(t: &TestApp) {
        let (tom, tom_token) = t.operator("tom.tech", "technician").await;
        let expires = (t.app.clock.now() + time::Duration::hours(1))
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap();
        let (status, issued) = t
            .call(
                Method::POST,
                &format!("/api/v1/operators/{tom}/tokens"),
                Some(&tom_token),
                Some(json!({"name": "laptop", "expires_at": expires})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{issued}");
        let short = issued["token"].as_str().unwrap().to_owned();
        assert_eq!(
            t.call(Method::GET, "/api/v1/me", Some(&short), None)
                .await
                .0,
            StatusCode::OK
        );
        t.clock.advance(time::Duration::hours(2));
        let (status, body) = t.call(Method::GET, "/api/v1/me", Some(&short), None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        assert_error(&body, "unauthenticated");

        // Revoke: works at once; revoking someone else's token looks like a missing one.
        let (_, other_token) = t.operator("lea.lead", "lead").await;
        let (_, me) = t
            .call(Method::GET, "/api/v1/me", Some(&other_token), None)
            .await;
        let (_, tokens) = t
            .call(
                Method::GET,
                &format!("/api/v1/operators/{}/tokens", me["id"].as_str().unwrap()),
                Some(&other_token),
                None,
            )
            .await;
        let lea_token_id = tokens["items"][0]["id"].as_str().unwrap().to_owned();
        assert!(
            tokens["items"][0].get("hash").is_none() && tokens["items"][0].get("token").is_none()
        );
        let (status, body) = t
            .call(
                Method::DELETE,
                &format!("/api/v1/tokens/{lea_token_id}"),
                Some(&tom_token),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_error(&body, "token_not_found");
        let (status, body) = t
            .call(
                Method::DELETE,
                &format!("/api/v1/tokens/{lea_token_id}"),
                Some(&other_token),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert!(body["revoked_at"].is_string());
        assert_eq!(
            t.call(Method::GET, "/api/v1/me", Some(&other_token), None)
                .await
                .0,
            StatusCode::UNAUTHORIZED
        );

        // Disable: every token of the operator stops; enable: they work again.
        assert_eq!(
            t.admin(
                Method::POST,
                &format!("/api/v1/operators/{tom}/disable"),
                None
            )
            .await
            .0,
            StatusCode::NO_CONTENT
        );
        assert_eq!(
            t.call(Method::GET, "/api/v1/tenants", Some(&tom_token), None)
                .await
                .0,
            StatusCode::UNAUTHORIZED
        );
        assert_eq!(
            t.admin(
                Method::POST,
                &format!("/api/v1/operators/{tom}/enable"),
                None
            )
            .await
            .0,
            StatusCode::NO_CONTENT
        );
        assert_eq!(
            t.call(Method::GET, "/api/v1/tenants", Some(&tom_token), None)
                .await
                .0,
            StatusCode::OK
        );
        // An admin cannot lock themselves out.
        let (_, admin) = t.admin(Method::GET, "/api/v1/me", None).await;
        let (status, body) = t
            .admin(
                Method::POST,
                &format!(
                    "/api/v1/operators/{}/disable",
                    admin["id"].as_str().unwrap()
                ),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_error(&body, "cannot_disable_self");
    }

    pub async fn tenant_lifecycle_over_http(t: &TestApp) {
        let created = t.create_tenant("northwind").await;
        let id = created["id"].as_str().unwrap().to_owned();
        assert!(id.starts_with("ten_"));
        assert_eq!(created["state"], "active");
        assert_eq!(created["version"], 1);
        let (status, by_slug) = t
            .admin(Method::GET, "/api/v1/tenants/northwind", None)
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(by_slug, created);
        assert_eq!(
            t.admin(Method::GET, &format!("/api/v1/tenants/{id}"), None)
                .await
                .1,
            created
        );

        let (status, renamed) = t
            .admin(
                Method::PATCH,
                "/api/v1/tenants/northwind",
                Some(json!({"display_name": "  Northwind Legal LLP "})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{renamed}");
        assert_eq!(
            (
                renamed["display_name"].as_str(),
                renamed["version"].as_i64()
            ),
            (Some("Northwind Legal LLP"), Some(2))
        );
        let (status, body) = t
            .admin(
                Method::PATCH,
                "/api/v1/tenants/northwind",
                Some(json!({"region": "us"})),
            )
            .await;
        assert_eq!(
            status,
            StatusCode::UNPROCESSABLE_ENTITY,
            "an active tenant's region is fixed"
        );
        assert_error(&body, "invalid_input");

        let (status, body) = t
            .admin(Method::DELETE, "/api/v1/tenants/northwind", None)
            .await;
        assert_eq!(
            status,
            StatusCode::CONFLICT,
            "an active tenant cannot be deleted"
        );
        assert_error(&body, "invalid_transition");
        for (action, state) in [
            ("suspend", "suspended"),
            ("activate", "active"),
            ("offboard", "offboarding"),
        ] {
            let (status, body) = t
                .admin(
                    Method::POST,
                    &format!("/api/v1/tenants/{id}/{action}"),
                    None,
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{action}: {body}");
            assert_eq!(body["state"], state);
        }
        let (status, body) = t
            .admin(
                Method::POST,
                &format!("/api/v1/tenants/{id}/activate"),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_error(&body, "invalid_transition");
        let (status, deleted) = t
            .admin(Method::DELETE, &format!("/api/v1/tenants/{id}"), None)
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(deleted["state"], "deleted");
        let (status, body) = t
            .admin(Method::GET, "/api/v1/tenants/northwind", None)
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_error(&body, "tenant_not_found");
        assert_eq!(
            t.admin(Method::GET, &format!("/api/v1/tenants/{id}"), None)
                .await
                .1["state"],
            "deleted"
        );
        // The slug is free again; the new tenant is a different one.
        let again = t.create_tenant("northwind").await;
        assert_ne!(again["id"], created["id"]);

        // A tenant can start in provisioning, change region then, and be activated.
        let (status, body) = t
            .admin(Method::POST, "/api/v1/tenants",
                Some(json!({"slug": "fabrikam", "display_name": "Fabrikam", "region": "uk", "state": "provisioning"})))
            .await;
        assert_eq!(
            (status, body["state"].as_str()),
            (StatusCode::CREATED, Some("provisioning"))
        );
        let (status, body) = t
            .admin(
                Method::PATCH,
                "/api/v1/tenants/fabrikam",
                Some(json!({"region": "eu-central"})),
            )
            .await;
        assert_eq!(
            (status, body["region"].as_str()),
            (StatusCode::OK, Some("eu-central"))
        );
    }

    pub async fn tenants_list_in_pages(t: &TestApp) {
        let mut ids = Vec::new();
        for i in 0..5 {
            ids.push(
                t.create_tenant(&format!("client-{i}")).await["id"]
                    .as_str()
                    .unwrap()
                    .to_owned(),
            );
        }
        t.admin(Method::POST, "/api/v1/tenants/client-4/suspend", None)
            .await;
        let mut seen = Vec::new();
        let mut path = "/api/v1/tenants?limit=2".to_owned();
        loop {
            let (status, page) = t.admin(Method::GET, &path, None).await;
            assert_eq!(status, StatusCode::OK, "{page}");
            let items = page["items"].as_array().unwrap();
            assert!(items.len() <= 2);
            seen.extend(items.iter().map(|t| t["id"].as_str().unwrap().to_owned()));
            match page["next_cursor"].as_str() {
                Some(cursor) => path = format!("/api/v1/tenants?limit=2&after={cursor}"),
                None => break,
            }
        }
        assert_eq!(seen, ids);
        let (_, suspended) = t
            .admin(Method::GET, "/api/v1/tenants?state=suspended", None)
            .await;
        assert_eq!(suspended["items"].as_array().unwrap().len(), 1);
        for bad in [
            "limit=0",
            "limit=501",
            "state=bogus",
            "after=nope",
            "colour=blue",
        ] {
            let (status, body) = t
                .admin(Method::GET, &format!("/api/v1/tenants?{bad}"), None)
                .await;
            assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{bad}: {body}");
            assert_error(&body, "invalid_input");
        }
    }

    pub async fn bad_input_gets_the_error_shape_and_changes_nothing(t: &TestApp) {
        t.create_tenant("acme").await;
        let raw = |body: &'static str, content_type: Option<&'static str>| {
            let mut request = t
                .http
                .post(format!("{}/api/v1/tenants", t.base))
                .bearer_auth(&t.admin)
                .body(body);
            if let Some(ct) = content_type {
                request = request.header("content-type", ct);
            }
            request
        };
        let cases: Vec<(reqwest::RequestBuilder, StatusCode, &str)> = vec![
            (
                raw("{\"slug\":", Some("application/json")),
                StatusCode::BAD_REQUEST,
                "malformed_json",
            ),
            (
                raw("not json", Some("application/json")),
                StatusCode::BAD_REQUEST,
                "malformed_json",
            ),
            (
                raw(
                    "{\"slug\":\"x-y-z\",\"display_name\":\"X\",\"region\":\"eu\",\"owner\":1}",
                    Some("application/json"),
                ),
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_input",
            ),
            (
                raw(
                    "{\"slug\":\"Not A Slug\",\"display_name\":\"X\",\"region\":\"eu\"}",
                    Some("application/json"),
                ),
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_input",
            ),
            (
                raw(
                    "{\"slug\":\"x-y-z\",\"display_name\":\"\",\"region\":\"eu\"}",
                    Some("application/json"),
                ),
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_input",
            ),
            (
                raw(
                    "{\"slug\":\"x-y-z\",\"display_name\":\"X\",\"region\":\"Europe\"}",
                    Some("application/json"),
                ),
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_input",
            ),
            (
                raw(
                    "{\"slug\":\"x-y-z\",\"display_name\":\"X\",\"region\":\"eu\",\"state\":\"deleted\"}",
                    Some("application/json"),
                ),
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_input",
            ),
            (
                raw("{\"slug\":\"x-y-z\"}", Some("application/json")),
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_input",
            ),
            (
                raw("[]", Some("application/json")),
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_input",
            ),
            (
                raw(
                    "{\"slug\":\"x-y-z\",\"display_name\":\"X\",\"region\":\"eu\"}",
                    None,
                ),
                StatusCode::UNSUPPORTED_MEDIA_TYPE,
                "unsupported_media_type",
            ),
            (
                raw(
                    "{\"slug\":\"acme\",\"display_name\":\"X\",\"region\":\"eu\"}",
                    Some("application/json"),
                ),
                StatusCode::CONFLICT,
                "tenant_slug_taken",
            ),
        ];
        for (i, (request, status, code)) in cases.into_iter().enumerate() {
            let response = request.send().await.unwrap();
            assert_eq!(response.status(), status, "case {i}");
            assert_error(&response.json().await.unwrap(), code);
        }
        // Oversized bodies (this server accepts 4 KiB).
        let big = json!({"slug": "big-one", "display_name": "x".repeat(10_000), "region": "eu"});
        let (status, body) = t.admin(Method::POST, "/api/v1/tenants", Some(big)).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        assert_error(&body, "body_too_large");
        // Unknown things.
        for path in [
            "/api/v1/tenants/nobody",
            "/api/v1/tenants/ten_01jd8x3k2q9f6v0c4m7r5t8w1y",
            "/api/v1/tenants/NOT%20A%20SLUG",
        ] {
            let (status, body) = t.admin(Method::GET, path, None).await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{path}");
            assert_error(&body, "tenant_not_found");
        }
        let (status, body) = t.admin(Method::GET, "/api/v1/nothing-here", None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_error(&body, "not_found");
        let (status, body) = t.admin(Method::PUT, "/api/v1/tenants", None).await;
        assert_eq!(status, StatusCode::METHOD_NOT_ALLOWED);
        assert_error(&body, "method_not_allowed");
        // None of it changed anything.
        let (_, list) = t.admin(Method::GET, "/api/v1/tenants", None).await;
        let slugs: Vec<_> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|t| t["slug"].as_str().unwrap())
            .collect();
        assert_eq!(slugs, vec!["acme"]);
        assert_eq!(list["items"][0]["version"], 1);
    }

    pub async fn roles_are_enforced(t: &TestApp) {
        t.create_tenant("acme").await;
        let (tech_id, tech) = t.operator("tom.tech", "technician").await;
        let (_, lead) = t.operator("lea.lead", "lead").await;
        let (_, auditor) = t.operator("ada.audit", "auditor").await;
        let new_tenant = || Some(json!({"slug": "other", "display_name": "Other", "region": "eu"}));
        let secret = || Some(json!({"value": "s3cret"}));
        let tech_tokens = format!("/api/v1/operators/{tech_id}/tokens");
        let expectations: Vec<(&str, Method, &str, Option<Value>, StatusCode)> = vec![
            (&tech, Method::GET, "/api/v1/tenants", None, StatusCode::OK),
            (
                &tech,
                Method::POST,
                "/api/v1/tenants",
                new_tenant(),
                StatusCode::FORBIDDEN,
            ),
            (
                &lead,
                Method::POST,
                "/api/v1/tenants",
                new_tenant(),
                StatusCode::FORBIDDEN,
            ),
            (
                &auditor,
                Method::POST,
                "/api/v1/tenants/acme/suspend",
                None,
                StatusCode::FORBIDDEN,
            ),
            (
                &tech,
                Method::PUT,
                "/api/v1/tenants/acme/secrets/psa.key",
                secret(),
                StatusCode::FORBIDDEN,
            ),
            (
                &auditor,
                Method::GET,
                "/api/v1/tenants/acme/secrets",
                None,
                StatusCode::FORBIDDEN,
            ),
            (
                &lead,
                Method::PUT,
                "/api/v1/tenants/acme/secrets/psa.key",
                secret(),
                StatusCode::OK,
            ),
            (
                &tech,
                Method::GET,
                "/api/v1/operators",
                None,
                StatusCode::FORBIDDEN,
            ),
            (
                &auditor,
                Method::GET,
                "/api/v1/operators",
                None,
                StatusCode::OK,
            ),
            (
                &lead,
                Method::POST,
                "/api/v1/operators",
                Some(json!({"name": "eve", "display_name": "Eve", "role": "admin"})),
                StatusCode::FORBIDDEN,
            ),
            (
                &lead,
                Method::POST,
                &tech_tokens,
                Some(json!({"name": "stolen"})),
                StatusCode::NOT_FOUND,
            ),
            (
                &lead,
                Method::GET,
                &tech_tokens,
                None,
                StatusCode::NOT_FOUND,
            ),
            (
                &tech,
                Method::POST,
                &tech_tokens,
                Some(json!({"name": "mine"})),
                StatusCode::CREATED,
            ),
        ];
        for (token, method, path, body, want) in expectations {
            let (status, response) = t.call(method.clone(), path, Some(token), body).await;
            assert_eq!(status, want, "{method} {path}: {response}");
            if want == StatusCode::FORBIDDEN {
                assert_error(&response, "forbidden");
            }
        }
        // The refused requests changed nothing.
        let (_, list) = t.admin(Method::GET, "/api/v1/tenants", None).await;
        assert_eq!(list["items"].as_array().unwrap().len(), 1);
        assert_eq!(list["items"][0]["state"], "active");
    }

    pub async fn secrets_are_write_only_and_versioned(t: &TestApp) {
        let tenant = t.create_tenant("acme").await;
        let path = "/api/v1/tenants/acme/secrets/ninjaone.client-secret";
        let (status, meta) = t
            .admin(Method::PUT, path, Some(json!({"value": "first-value"})))
            .await;
        assert_eq!(status, StatusCode::OK, "{meta}");
        assert_eq!(
            (meta["version"].as_i64(), meta["tenant_id"].clone()),
            (Some(1), tenant["id"].clone())
        );
        let (_, meta) = t
            .admin(Method::PUT, path, Some(json!({"value": "second-value"})))
            .await;
        assert_eq!(meta["version"], 2);
        let (status, list) = t
            .admin(Method::GET, "/api/v1/tenants/acme/secrets", None)
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(list["items"][0]["name"], "ninjaone.client-secret");
        assert!(
            !list.to_string().contains("second-value"),
            "values are never returned: {list}"
        );
        // What is stored opens to the last value, for the system only.
        let name = gatehouse_core::secret::SecretName::parse("ninjaone.client-secret").unwrap();
        let id = tenant["id"].as_str().unwrap().parse().unwrap();
        let value = t
            .app
            .reveal_secret(&gatehouse_server::Actor::System("test"), id, &name)
            .await
            .unwrap();
        assert_eq!(value.as_slice(), b"second-value");

        for (bad_path, body, status, code) in [
            (
                "/api/v1/tenants/acme/secrets/Bad%20Name",
                json!({"value": "x"}),
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_input",
            ),
            (
                path,
                json!({"value": ""}),
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_input",
            ),
            (
                path,
                json!({"value": "x", "note": "y"}),
                StatusCode::UNPROCESSABLE_ENTITY,
                "invalid_input",
            ),
            (
                "/api/v1/tenants/ghost/secrets/x",
                json!({"value": "x"}),
                StatusCode::NOT_FOUND,
                "tenant_not_found",
            ),
        ] {
            let (got, response) = t.admin(Method::PUT, bad_path, Some(body)).await;
            assert_eq!(got, status, "{bad_path}: {response}");
            assert_error(&response, code);
        }
        assert_eq!(
            t.admin(Method::DELETE, path, None).await.0,
            StatusCode::NO_CONTENT
        );
        let (status, body) = t.admin(Method::DELETE, path, None).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_error(&body, "secret_not_found");

        // A deleted tenant takes no secrets.
        t.admin(Method::POST, "/api/v1/tenants/acme/suspend", None)
            .await;
        t.admin(Method::DELETE, "/api/v1/tenants/acme", None).await;
        let (status, body) = t
            .admin(
                Method::PUT,
                &format!(
                    "/api/v1/tenants/{}/secrets/x",
                    tenant["id"].as_str().unwrap()
                ),
                Some(json!({"value": "x"})),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_error(&body, "tenant_deleted");
    }

    pub async fn operators_are_created_once_with_a_token(t: &TestApp) {
        let (status, created) = t
            .admin(
                Method::POST,
                "/api/v1/operators",
                Some(json!({"name": "lea.lead", "display_name": "Lea", "role": "lead"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{created}");
        let token = created["token"]["token"].as_str().unwrap();
        assert!(token.starts_with("gth_"));
        let (status, me) = t.call(Method::GET, "/api/v1/me", Some(token), None).await;
        assert_eq!(
            (status, me["name"].as_str(), me["role"].as_str()),
            (StatusCode::OK, Some("lea.lead"), Some("lead"))
        );
        let (status, body) = t
            .admin(
                Method::POST,
                "/api/v1/operators",
                Some(json!({"name": "lea.lead", "display_name": "Other", "role": "auditor"})),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT);
        assert_error(&body, "operator_name_taken");
        let (status, body) = t
            .admin(
                Method::POST,
                "/api/v1/operators",
                Some(json!({"name": "x", "display_name": "X", "role": "root"})),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_error(&body, "invalid_input");
        let (status, body) = t
            .admin(
                Method::GET,
                "/api/v1/operators/op_01jd8x3k2q9f6v0c4m7r5t8w1y/tokens",
                None,
            )
            .await;
        assert_eq!(
            status,
            StatusCode::NOT_FOUND,
            "an unknown operator has no token list"
        );
        assert_error(&body, "operator_not_found");
        let (_, list) = t.admin(Method::GET, "/api/v1/operators", None).await;
        let names: Vec<_> = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["name"].as_str().unwrap())
            .collect();
        assert_eq!(names, vec!["admin", "lea.lead"]);
        // A second bootstrap does nothing.
        assert!(t.app.bootstrap().await.unwrap().is_none());
    }

    pub async fn the_audit_public_key_is_served_without_a_token(t: &TestApp) {
        let (status, body) = t
            .call(Method::GET, "/api/v1/audit/public-key", None, None)
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["name"], "gatehouse.test/audit");
        assert_eq!(body["algorithm"], "ed25519");
        // The verifier string is what the audit library trusts, and the
        // other fields are its parts.
        let verifier =
            gatehouse_audit::VerifierKey::parse(body["verifier_key"].as_str().unwrap()).unwrap();
        assert_eq!(body["key_id"], verifier.key_id().to_string());
        use base64::Engine as _;
        let public_key = base64::engine::general_purpose::STANDARD
            .decode(body["public_key"].as_str().unwrap())
            .unwrap();
        assert_eq!(public_key, verifier.public_key());
        // A checkpoint the node signs verifies with it.
        let signer = t.app.audit_signer.clone().unwrap();
        let root = gatehouse_audit::Hash::from_bytes([3; 32]);
        let note = gatehouse_audit::Checkpoint::new("gatehouse.test/audit", 5, root)
            .unwrap()
            .sign(signer.as_ref())
            .await
            .unwrap()
            .to_string();
        assert!(
            gatehouse_audit::checkpoint::open(&note, &[verifier], "gatehouse.test/audit").is_ok()
        );
    }

    pub async fn health_readiness_metrics_and_request_ids(t: &TestApp) {
        let (status, body) = t.call(Method::GET, "/healthz", None, None).await;
        assert_eq!(
            (status, body["status"].as_str()),
            (StatusCode::OK, Some("ok"))
        );
        let (status, body) = t.call(Method::GET, "/readyz", None, None).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["status"], "ready");
        assert_eq!(body["database"], t.app.store.backend().as_str());
        t.admin(Method::GET, "/api/v1/tenants/nobody", None).await;
        let response = t
            .http
            .get(format!("{}/api/v1/tenants", t.base))
            .send()
            .await
            .unwrap();
        let request_id = response.headers()["x-request-id"]
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(request_id.len(), 36, "a UUID per request: {request_id}");
        let metrics = t
            .http
            .get(format!("{}/metrics", t.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        assert!(
            metrics.contains(r#"gatehouse_http_requests_total{method="GET",route="/api/v1/tenants/{tenant}",status="404"} 1"#),
            "{metrics}"
        );
        assert!(
            metrics.contains("gatehouse_http_request_duration_seconds_bucket"),
            "{metrics}"
        );
        // The served document is the one generated from the routes.
        let served: Value = t
            .http
            .get(format!("{}/api/v1/openapi.json", t.base))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            served,
            serde_json::to_value(gatehouse_server::http::openapi()).unwrap()
        );
    }

    pub async fn the_demo_seed_is_idempotent(t: &TestApp) {
        let first = gatehouse_server::demo::seed(&t.app).await.unwrap();
        assert!(first.created);
        assert_eq!(first.tenants.len(), 3);
        assert_eq!(first.operators.len(), 4);
        // The client-dedicated technician sees their client alone.
        let cam = first
            .operators
            .iter()
            .find(|o| o.name.as_str() == "cam.client")
            .unwrap();
        let contoso = first
            .tenants
            .iter()
            .find(|t| t.slug.as_str() == "contoso-dental")
            .unwrap();
        assert_eq!(
            cam.scope,
            gatehouse_core::operator::Scope::some([contoso.id].into(), [].into())
        );
        let second = gatehouse_server::demo::seed(&t.app).await.unwrap();
        assert!(!second.created);
        assert_eq!(second.tenants, first.tenants);
        let (_, list) = t
            .admin(Method::GET, "/api/v1/tenants?state=provisioning", None)
            .await;
        assert_eq!(list["items"][0]["slug"], "fabrikam-logistics");
    }

    /// Random bodies, thrown at every endpoint that takes one, never get a
    /// 5xx, always get the error shape when refused, and never create a
    /// tenant that breaks the slug rules.
    pub async fn random_bodies_never_cause_a_server_error(t: &TestApp, cases: u32) {
        use proptest::prelude::*;
        use proptest::test_runner::{Config, TestRunner};
        use tower::ServiceExt;

        t.create_tenant("acme").await;
        let leaf = prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::from),
            any::<i64>().prop_map(Value::from),
            any::<f64>().prop_map(|f| serde_json::Number::from_f64(f)
                .map(Value::Number)
                .unwrap_or(Value::Null)),
            "[a-z-]{0,70}".prop_map(Value::from),
            ".{0,40}".prop_map(Value::from),
            Just(Value::from("eu")),
            Just(Value::from("provisioning")),
        ];
        let value = leaf.prop_recursive(3, 24, 6, |inner| {
            prop_oneof![
                prop::collection::vec(inner.clone(), 0..4).prop_map(Value::Array),
                prop::collection::btree_map(
                    prop_oneof![
                        Just("slug".to_string()),
                        Just("display_name".to_string()),
                        Just("region".to_string()),
                        Just("state".to_string()),
                        Just("value".to_string()),
                        Just("name".to_string()),
                        Just("role".to_string()),
                        Just("expires_at".to_string()),
                        "[a-z_]{1,8}",
                    ],
                    inner,
                    0..6
                )
                .prop_map(|m| Value::Object(m.into_iter().collect())),
            ]
        });
        let body = prop_oneof![
            value.prop_map(|v| v.to_string().into_bytes()),
            prop::collection::vec(any::<u8>(), 0..200),
        ];
        let route = prop_oneof![
            Just((Method::POST, "/api/v1/tenants".to_string())),
            Just((Method::PATCH, "/api/v1/tenants/acme".to_string())),
            Just((
                Method::PUT,
                "/api/v1/tenants/acme/secrets/psa.key".to_string()
            )),
            Just((Method::POST, "/api/v1/operators".to_string())),
            Just((Method::POST, "/api/v1/tenants/acme/suspend".to_string())),
        ];
        let handle = tokio::runtime::Handle::current();
        let router = t.router.clone();
        let admin = t.admin.clone();
        let mut runner = TestRunner::new(Config {
            cases,
            failure_persistence: None,
            ..Config::default()
        });
        let result = tokio::task::block_in_place(|| {
            runner.run(&(route, body), |((method, path), body)| {
                let request = axum::http::Request::builder()
                    .method(method.as_str())
                    .uri(&path)
                    .header("authorization", format!("Bearer {admin}"))
                    .header("content-type", "application/json")
                    .body(axum::body::Body::from(body))
                    .unwrap();
                let response = handle.block_on(router.clone().oneshot(request)).unwrap();
                let status = response.status();
                let bytes = handle
                    .block_on(axum::body::to_bytes(response.into_body(), 1 << 20))
                    .unwrap();
                prop_assert!(
                    !status.is_server_error(),
                    "{method} {path} gave {status}: {}",
                    String::from_utf8_lossy(&bytes)
                );
                if status.is_client_error() {
                    let json: Value = serde_json::from_slice(&bytes).unwrap();
                    prop_assert!(json["error"]["code"].is_string(), "{json}");
                }
                Ok(())
            })
        });
        result.unwrap();
        let (_, list) = t
            .admin(Method::GET, "/api/v1/tenants?limit=500", None)
            .await;
        for tenant in list["items"].as_array().unwrap() {
            gatehouse_core::tenant::TenantSlug::parse(tenant["slug"].as_str().unwrap()).unwrap();
        }
    }
}

mod workflow_cases {
    use super::*;

    /// Events are stored once; a duplicate gets the same instances back.
    pub async fn events_are_deduplicated_and_workflows_listed(t: &TestApp) {
        let first = t.submit("test.plain", "deal-1", StatusCode::ACCEPTED).await;
        assert_eq!(first["duplicate"], false);
        assert_eq!(first["event"]["type"], "test.plain");
        assert_eq!(first["event"]["source"], "api");
        let instances = first["instances"].as_array().unwrap().clone();
        assert_eq!(instances.len(), 1, "{first}");
        let again = t.submit("test.plain", "deal-1", StatusCode::OK).await;
        assert_eq!(again["duplicate"], true);
        assert_eq!(again["instances"], first["instances"]);
        assert_eq!(again["event"]["id"], first["event"]["id"]);

        // An event no template wants is stored and starts nothing.
        let nobody = t.submit("test.nobody", "x-1", StatusCode::ACCEPTED).await;
        assert_eq!(nobody["instances"], json!([]));

        let (status, body) = t
            .admin(
                Method::POST,
                "/api/v1/events",
                Some(json!({"type": "test.plain", "dedup_key": "k", "tenant": "nope"})),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_error(&body, "tenant_not_found");
        let (status, body) = t
            .admin(
                Method::POST,
                "/api/v1/events",
                Some(json!({"type": "test.plain", "dedup_key": "k", "extra": 1})),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert_error(&body, "invalid_input");

        t.settle().await;
        let id = instances[0].as_str().unwrap();
        let (status, list) = t.admin(Method::GET, "/api/v1/workflows", None).await;
        assert_eq!(status, StatusCode::OK, "{list}");
        let items = list["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{list}");
        assert_eq!(items[0]["id"], id);
        assert_eq!(items[0]["state"], "completed");
        assert!(
            items[0].get("definition").is_none(),
            "lists omit the pinned template"
        );
        let (_, running) = t
            .admin(Method::GET, "/api/v1/workflows?state=running", None)
            .await;
        assert_eq!(running["items"], json!([]));

        let (status, one) = t
            .admin(Method::GET, &format!("/api/v1/workflows/{id}"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{one}");
        assert_eq!(one["instance"]["definition"]["name"], "plain");
        assert_eq!(one["steps"][0]["step_id"], "only");
        assert_eq!(one["steps"][0]["state"], "succeeded");
        assert!(!one["history"].as_array().unwrap().is_empty());

        for missing in ["wf_01jd8x3k2q9f6v0c4m7r5t8w1y", "nonsense"] {
            let (status, body) = t
                .admin(Method::GET, &format!("/api/v1/workflows/{missing}"), None)
                .await;
            assert_eq!(status, StatusCode::NOT_FOUND);
            assert_error(&body, "workflow_not_found");
        }
        // A finished workflow cannot be cancelled.
        let (status, body) = t
            .admin(
                Method::POST,
                &format!("/api/v1/workflows/{id}/cancel"),
                Some(json!({"reason": "too late"})),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_error(&body, "workflow_refused");
    }

    /// A gated step waits for a lead who did not start the workflow.
    pub async fn approvals_gate_steps_with_separation_of_duties(t: &TestApp) {
        let (_, lead) = t.operator("lea.lead", "lead").await;
        let (_, tech) = t.operator("tom.tech", "technician").await;
        let submitted = t.submit("test.gated", "deal-7", StatusCode::ACCEPTED).await;
        let id = submitted["instances"][0].as_str().unwrap().to_owned();
        t.settle().await;

        let (_, one) = t
            .admin(Method::GET, &format!("/api/v1/workflows/{id}"), None)
            .await;
        assert_eq!(one["instance"]["state"], "waiting", "{one}");
        let (status, pending) = t
            .call(
                Method::GET,
                "/api/v1/approvals?state=pending",
                Some(&tech),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "technicians may read");
        let items = pending["items"].as_array().unwrap();
        assert_eq!(items.len(), 1, "{pending}");
        assert_eq!(items[0]["instance_id"], id.as_str());
        let approval = items[0]["id"].as_str().unwrap().to_owned();
        let (status, got) = t
            .admin(Method::GET, &format!("/api/v1/approvals/{approval}"), None)
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(got["step_id"], "provision");

        let approve = format!("/api/v1/approvals/{approval}/approve");
        let reason = Some(json!({"reason": "plan checked"}));
        let (status, body) = t
            .call(Method::POST, &approve, Some(&tech), reason.clone())
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_error(&body, "forbidden");
        let system = t
            .app
            .decide_approval(
                &gatehouse_server::Actor::System("test"),
                approval.parse().unwrap(),
                gatehouse_core::approval::Verdict::Approve,
                "plan checked",
                None,
            )
            .await
            .unwrap_err();
        assert_eq!(system.status(), StatusCode::FORBIDDEN.as_u16());
        assert!(system.to_string().contains("person"), "{system}");
        let (status, body) = t.admin(Method::POST, &approve, reason.clone()).await;
        assert_eq!(
            status,
            StatusCode::CONFLICT,
            "the submitter may not approve: {body}"
        );
        assert_error(&body, "approval_refused");
        // Refused by the Cedar policy (the engine's own check would say it
        // in other words).
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("may not decide its approval"), "{message}");
        let (status, body) = t
            .call(
                Method::POST,
                &approve,
                Some(&lead),
                Some(json!({"reason": "x", "extra": true})),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        let (status, body) = t
            .call(Method::POST, &approve, Some(&lead), reason.clone())
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["state"], "approved");
        assert_eq!(body["decisions"][0]["reason"], "plan checked");
        let (status, body) = t
            .call(Method::POST, &approve, Some(&lead), reason.clone())
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "decided already: {body}");
        assert_error(&body, "approval_refused");

        t.settle().await;
        let (_, one) = t
            .admin(Method::GET, &format!("/api/v1/workflows/{id}"), None)
            .await;
        assert_eq!(one["instance"]["state"], "completed", "{one}");

        let (status, body) = t
            .admin(
                Method::POST,
                "/api/v1/approvals/apr_01jd8x3k2q9f6v0c4m7r5t8w1y/reject",
                reason.clone(),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert_error(&body, "approval_not_found");

        // Cancelling a waiting workflow cancels its approval.
        let second = t.submit("test.gated", "deal-8", StatusCode::ACCEPTED).await;
        let id = second["instances"][0].as_str().unwrap().to_owned();
        t.settle().await;
        let cancel = format!("/api/v1/workflows/{id}/cancel");
        let (status, body) = t
            .call(Method::POST, &cancel, Some(&tech), reason.clone())
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        let (status, body) = t.call(Method::POST, &cancel, Some(&lead), reason).await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["instance"]["state"], "cancelled");
        let (_, pending) = t
            .admin(Method::GET, "/api/v1/approvals?state=pending", None)
            .await;
        assert_eq!(pending["items"], json!([]));

        // No template here opens human tasks.
        let (status, tasks) = t
            .call(Method::GET, "/api/v1/tasks", Some(&tech), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{tasks}");
        assert_eq!(tasks["items"], json!([]));
        let (status, body) = t
            .call(
                Method::POST,
                "/api/v1/tasks/tsk_01jd8x3k2q9f6v0c4m7r5t8w1y/complete",
                Some(&tech),
                Some(json!({"outcome": {"done": true}, "evidence": "ticket 1"})),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert_error(&body, "task_not_found");

        // Technicians and auditors submit no events.
        let (status, body) = t
            .call(
                Method::POST,
                "/api/v1/events",
                Some(&tech),
                Some(json!({"type": "test.gated", "dedup_key": "deal-9"})),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    }
}

mod rollback_cases {
    use super::*;

    /// The reviewer of an L1 step asks for its rollback over HTTP.
    pub async fn a_reviewer_rolls_back_a_step_over_http(t: &TestApp) {
        let (lead_id, lead) = t.operator("lea.lead", "lead").await;
        let (_, tech) = t.operator("tom.tech", "technician").await;
        let submitted = t
            .submit("test.reviewed", "grant-1", StatusCode::ACCEPTED)
            .await;
        let id = submitted["instances"][0].as_str().unwrap().to_owned();
        t.settle().await;
        let path = format!("/api/v1/workflows/{id}/steps/grant/rollback");
        let reason = Some(json!({"reason": "granted to the wrong mailbox"}));

        let (status, body) = t
            .call(Method::POST, &path, Some(&tech), reason.clone())
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        assert_error(&body, "forbidden");
        let (status, body) = t
            .call(
                Method::POST,
                &path,
                Some(&lead),
                Some(json!({"reason": " "})),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_error(&body, "workflow_refused");
        let (status, body) = t
            .call(Method::POST, &path, Some(&lead), Some(json!({"why": "x"})))
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");

        let (status, body) = t
            .call(Method::POST, &path, Some(&lead), reason.clone())
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        assert_eq!(body["step"]["state"], "compensating");
        assert_eq!(body["instance"]["state"], "running");
        let (status, body) = t
            .call(Method::POST, &path, Some(&lead), reason.clone())
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "asked already: {body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("not succeeded"),
            "{body}"
        );

        t.settle().await;
        let (_, one) = t
            .admin(Method::GET, &format!("/api/v1/workflows/{id}"), None)
            .await;
        assert_eq!(one["instance"]["state"], "completed", "{one}");
        assert_eq!(one["steps"][0]["state"], "compensated", "{one}");
        let history = one["history"].as_array().unwrap();
        let requested = history
            .iter()
            .find(|h| h["kind"] == "step.rollback_requested")
            .unwrap();
        assert_eq!(requested["actor"], lead_id.as_str());
        assert_eq!(
            requested["detail"]["reason"],
            "granted to the wrong mailbox"
        );
        assert!(history.iter().any(|h| h["kind"] == "step.compensated"));

        // A step without a compensation, and a workflow that does not exist.
        let plain = t
            .submit("test.plain", "plain-1", StatusCode::ACCEPTED)
            .await;
        let plain = plain["instances"][0].as_str().unwrap().to_owned();
        t.settle().await;
        let (status, body) = t
            .call(
                Method::POST,
                &format!("/api/v1/workflows/{plain}/steps/only/rollback"),
                Some(&lead),
                reason.clone(),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("no compensation"),
            "{body}"
        );
        let (status, body) = t
            .call(
                Method::POST,
                "/api/v1/workflows/wf_01jd8x3k2q9f6v0c4m7r5t8w1y/steps/grant/rollback",
                Some(&lead),
                reason,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        assert_error(&body, "workflow_not_found");
    }
}

/// Per-tenant gates over HTTP.
mod gate_cases {
    use super::*;

    /// The value of the sample `series` (name and labels exactly as
    /// rendered) in a Prometheus text exposition.
    fn sample(text: &str, series: &str) -> f64 {
        text.lines()
            .find_map(|line| line.strip_prefix(series)?.strip_prefix(' '))
            .unwrap_or_else(|| panic!("no `{series}` in:\n{text}"))
            .parse()
            .unwrap()
    }

    async fn scrape(t: &TestApp) -> String {
        // As today: no token needed, and nothing about tenants in it.
        let response = t
            .http
            .get(format!("{}/metrics", t.base))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        let text = response.text().await.unwrap();
        assert!(!text.contains("ten_"), "no tenant ids on /metrics:\n{text}");
        text
    }

    pub async fn engine_metrics_on_the_metrics_endpoint(t: &TestApp) {
        let before = scrape(t).await;
        assert_eq!(
            sample(&before, r#"gatehouse_workflow_instances{state="running"}"#),
            0.0
        );
        assert_eq!(sample(&before, "gatehouse_steps_total"), 0.0);
        assert_eq!(sample(&before, "gatehouse_approvals_pending"), 0.0);
        assert_eq!(
            sample(&before, "gatehouse_approval_oldest_pending_age_seconds"),
            0.0
        );

        // A gated workflow stops at its approval; a flaky one retries once.
        t.create_tenant("acme").await;
        for (kind, key) in [("test.gated", "g-1"), ("test.flaky", "f-1")] {
            let (status, body) = t
                .admin(
                    Method::POST,
                    "/api/v1/events",
                    Some(json!({"type": kind, "dedup_key": key, "tenant": "acme"})),
                )
                .await;
            assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        }
        t.settle().await;
        t.clock.advance(time::Duration::seconds(90));
        t.settle().await;

        let text = scrape(t).await;
        assert_eq!(
            sample(&text, r#"gatehouse_workflow_instances{state="waiting"}"#),
            1.0
        );
        assert_eq!(
            sample(&text, r#"gatehouse_workflow_instances{state="completed"}"#),
            1.0
        );
        assert_eq!(
            sample(&text, r#"gatehouse_workflow_instances{state="running"}"#),
            0.0
        );
        // prepare, and the flaky step twice.
        assert_eq!(sample(&text, "gatehouse_steps_total"), 3.0);
        assert_eq!(sample(&text, "gatehouse_step_retries_total"), 1.0);
        assert_eq!(sample(&text, "gatehouse_step_latency_seconds_count"), 3.0);
        assert_eq!(
            sample(&text, r#"gatehouse_step_latency_seconds_bucket{le="+Inf"}"#),
            3.0
        );
        // The retry was due after 1 s and ran 89 s late (fake time).
        assert_eq!(
            sample(&text, r#"gatehouse_step_latency_seconds_bucket{le="60.0"}"#),
            2.0
        );
        assert!(
            sample(&text, "gatehouse_step_latency_seconds_sum") >= 89.0,
            "{text}"
        );
        assert_eq!(sample(&text, "gatehouse_approvals_pending"), 1.0);
        assert_eq!(
            sample(&text, "gatehouse_approval_oldest_pending_age_seconds"),
            90.0
        );
        assert_eq!(sample(&text, "gatehouse_approval_overrides_total"), 0.0);
        // Both steps call the sandbox connector: one breaker, closed.
        assert_eq!(
            sample(
                &text,
                r#"gatehouse_breaker_state{breaker="sandbox",state="closed"}"#
            ),
            1.0
        );
        assert_eq!(
            sample(
                &text,
                r#"gatehouse_breaker_state{breaker="sandbox",state="open"}"#
            ),
            0.0
        );

        // A lead changes the plan as they approve it: an override.
        let (_, lead) = t.operator("lea.lead", "lead").await;
        let (_, pending) = t
            .admin(Method::GET, "/api/v1/approvals?state=pending", None)
            .await;
        let approval = pending["items"][0]["id"].as_str().unwrap().to_owned();
        let (status, body) = t
            .call(
                Method::POST,
                &format!("/api/v1/approvals/{approval}/modify"),
                Some(&lead),
                Some(json!({"reason": "smaller scope", "params": {"scope": "mail"}})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        t.settle().await;
        let text = scrape(t).await;
        assert_eq!(sample(&text, "gatehouse_approval_overrides_total"), 1.0);
        assert_eq!(sample(&text, "gatehouse_approvals_pending"), 0.0);
        assert_eq!(
            sample(&text, "gatehouse_approval_oldest_pending_age_seconds"),
            0.0
        );
        assert_eq!(
            sample(&text, r#"gatehouse_workflow_instances{state="completed"}"#),
            2.0
        );
        assert_eq!(sample(&text, "gatehouse_steps_total"), 4.0);
    }

    pub async fn tenant_gates_over_http(t: &TestApp) {
        t.create_tenant("acme").await;
        t.create_tenant("globex").await;
        let (lead_id, lead) = t.operator("lea.lead", "lead").await;
        let (_, tech) = t.operator("tom.tech", "technician").await;
        let (_, auditor) = t.operator("ada.audit", "auditor").await;

        // Everyone who reads tenants reads their gates: every area, at its default.
        let (status, body) = t
            .call(
                Method::GET,
                "/api/v1/tenants/acme/gates",
                Some(&auditor),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        let items = body["items"].as_array().unwrap();
        assert_eq!(items.len(), 10);
        let joiner = items.iter().find(|g| g["area"] == "joiner_access").unwrap();
        assert_eq!(joiner["default"], "L1");
        assert_eq!(joiner["floor"], "L0");
        assert_eq!(joiner["override"], Value::Null);
        assert_eq!(joiner["effective"], "L1");
        assert_eq!(joiner["last_change"], Value::Null);

        // Technicians and auditors change nothing.
        let raise = || Some(json!({"level": "L2", "reason": "the client approves every joiner"}));
        for who in [&tech, &auditor] {
            let (status, body) = t
                .call(
                    Method::PUT,
                    "/api/v1/tenants/acme/gates/joiner_access",
                    Some(who),
                    raise(),
                )
                .await;
            assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
            assert_eq!(
                body["error"]["message"],
                "this needs the admin or lead role"
            );
        }

        // A lead raises an area; the answer and the list show it.
        let (status, body) = t
            .call(
                Method::PUT,
                "/api/v1/tenants/acme/gates/joiner_access",
                Some(&lead),
                raise(),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["override"], "L2");
        assert_eq!(body["effective"], "L2");
        assert_eq!(body["last_change"]["set_by"], lead_id.as_str());
        assert_eq!(
            body["last_change"]["reason"],
            "the client approves every joiner"
        );
        let (_, listed) = t
            .admin(Method::GET, "/api/v1/tenants/acme/gates", None)
            .await;
        let joiner = listed["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|g| g["area"] == "joiner_access")
            .unwrap();
        assert_eq!(joiner, &body);

        // Below the floor: 422 naming the floor, and nothing changes.
        let (status, body) = t
            .call(
                Method::PUT,
                "/api/v1/tenants/acme/gates/client_onboarding",
                Some(&lead),
                Some(json!({"level": "L1", "reason": "faster onboarding"})),
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert_error(&body, "invalid_input");
        let message = body["error"]["message"].as_str().unwrap();
        assert!(message.contains("floor is L2"), "{message}");
        // Unknown areas, levels and missing reasons are refused too.
        for (path, body) in [
            (
                "/api/v1/tenants/acme/gates/payroll",
                json!({"level": "L2", "reason": "x"}),
            ),
            (
                "/api/v1/tenants/acme/gates/revocation",
                json!({"level": "L9", "reason": "x"}),
            ),
            (
                "/api/v1/tenants/acme/gates/revocation",
                json!({"level": "L2"}),
            ),
            (
                "/api/v1/tenants/acme/gates/revocation",
                json!({"level": "L2", "reason": "  "}),
            ),
        ] {
            let (status, answer) = t.admin(Method::PUT, path, Some(body.clone())).await;
            assert_eq!(
                status,
                StatusCode::UNPROCESSABLE_ENTITY,
                "{path} {body} {answer}"
            );
            assert_error(&answer, "invalid_input");
        }
        let (_, after) = t
            .admin(Method::GET, "/api/v1/tenants/acme/gates", None)
            .await;
        assert_eq!(after, listed, "refused changes changed nothing");

        // Another tenant is untouched; a missing one is not found.
        let (_, other) = t
            .admin(Method::GET, "/api/v1/tenants/globex/gates", None)
            .await;
        assert!(
            other["items"]
                .as_array()
                .unwrap()
                .iter()
                .all(|g| g["override"].is_null()),
            "{other}"
        );
        let (status, body) = t
            .call(
                Method::PUT,
                "/api/v1/tenants/nobody/gates/joiner_access",
                Some(&lead),
                raise(),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        assert_error(&body, "tenant_not_found");

        // The engine gates the tenant's steps by it: `test.plain` runs a
        // documentation step (L0 by default), held for approval at L2.
        let (status, _) = t
            .call(
                Method::PUT,
                "/api/v1/tenants/acme/gates/documentation",
                Some(&lead),
                Some(json!({"level": "l2", "reason": "document reviews"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        for (tenant, key) in [("acme", "doc-1"), ("globex", "doc-2")] {
            let (status, body) = t
                .admin(
                    Method::POST,
                    "/api/v1/events",
                    Some(json!({"type": "test.plain", "dedup_key": key, "tenant": tenant})),
                )
                .await;
            assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        }
        t.settle().await;
        let (_, waiting) = t
            .admin(Method::GET, "/api/v1/workflows?state=waiting", None)
            .await;
        let (_, done) = t
            .admin(Method::GET, "/api/v1/workflows?state=completed", None)
            .await;
        assert_eq!(waiting["items"].as_array().unwrap().len(), 1, "{waiting}");
        assert_eq!(done["items"].as_array().unwrap().len(), 1, "{done}");
        let (_, acme) = t.admin(Method::GET, "/api/v1/tenants/acme", None).await;
        assert_eq!(waiting["items"][0]["tenant_id"], acme["id"]);

        // Clearing returns the area to its default and keeps who and why.
        let (status, body) = t
            .call(
                Method::DELETE,
                "/api/v1/tenants/acme/gates/joiner_access",
                Some(&lead),
                Some(json!({"reason": "back to the standard"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        assert_eq!(body["override"], Value::Null);
        assert_eq!(body["effective"], "L1");
        assert_eq!(body["last_change"]["level"], Value::Null);
        assert_eq!(body["last_change"]["reason"], "back to the standard");
        let (status, body) = t
            .call(
                Method::DELETE,
                "/api/v1/tenants/acme/gates/joiner_access",
                Some(&tech),
                Some(json!({"reason": "x"})),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
    }
}

mod oscal_cases {
    use super::*;

    fn party_of<'a>(doc: &'a Value, short_name: &str) -> &'a str {
        doc["assessment-results"]["metadata"]["parties"]
            .as_array()
            .unwrap()
            .iter()
            .find(|p| p["short-name"] == short_name)
            .unwrap_or_else(|| panic!("no party {short_name} in {doc}"))["uuid"]
            .as_str()
            .unwrap()
    }

    /// A tenant's gated and reviewed runs, read back from its audit log as
    /// an OSCAL document that the NIST schema accepts: the decision logged
    /// by the person who made it, the rollback as a risk.
    pub async fn a_tenants_audit_log_exports_as_oscal(t: &TestApp) {
        t.create_tenant("acme").await;
        t.create_tenant("other").await;
        let (_, lead) = t.operator("lea.lead", "lead").await;
        let (_, tech) = t.operator("tom.tech", "technician").await;
        let (_, auditor) = t.operator("ada.auditor", "auditor").await;
        let submit = |kind: &'static str, key: &'static str| {
            t.admin(
                Method::POST,
                "/api/v1/events",
                Some(json!({"type": kind, "dedup_key": key, "tenant": "acme"})),
            )
        };
        let (status, gated) = submit("test.gated", "deal-1").await;
        assert_eq!(status, StatusCode::ACCEPTED, "{gated}");
        t.settle().await;
        let (_, pending) = t
            .admin(Method::GET, "/api/v1/approvals?state=pending", None)
            .await;
        let approval = pending["items"][0]["id"].as_str().unwrap().to_owned();
        let (status, body) = t
            .call(
                Method::POST,
                &format!("/api/v1/approvals/{approval}/approve"),
                Some(&lead),
                Some(json!({"reason": "plan checked\nagainst the SOW"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        t.settle().await;
        let (status, reviewed) = submit("test.reviewed", "grant-1").await;
        assert_eq!(status, StatusCode::ACCEPTED, "{reviewed}");
        t.settle().await;
        let reviewed = reviewed["instances"][0].as_str().unwrap().to_owned();
        let (status, body) = t
            .call(
                Method::POST,
                &format!("/api/v1/workflows/{reviewed}/steps/grant/rollback"),
                Some(&lead),
                Some(json!({"reason": "wrong mailbox"})),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        t.settle().await;
        let sequencer =
            gatehouse_server::audit::Sequencer::new(t.app.store.clone(), t.app.keyring.clone());
        while sequencer.run_once(4096).await.unwrap() > 0 {}

        let path = "/api/v1/tenants/acme/audit/oscal";
        let (status, doc) = t.call(Method::GET, path, Some(&auditor), None).await;
        assert_eq!(status, StatusCode::OK, "{doc}");
        let schema: Value =
            serde_json::from_str(gatehouse_oscal::ASSESSMENT_RESULTS_SCHEMA_1_2_3).unwrap();
        let validator = jsonschema::options()
            .with_draft(jsonschema::Draft::Draft7)
            .should_validate_formats(true)
            .build(&schema)
            .unwrap();
        let errors: Vec<String> = validator.iter_errors(&doc).map(|e| e.to_string()).collect();
        assert!(errors.is_empty(), "schema violations: {errors:?}");

        let results = doc["assessment-results"]["results"].as_array().unwrap();
        assert_eq!(results.len(), 2, "one result per run: {doc}");
        let lead_party = party_of(&doc, "lea.lead");
        let gated_result = results
            .iter()
            .find(|r| r["title"].as_str().unwrap().starts_with("gated v1"))
            .unwrap();
        let decision = gated_result["assessment-log"]["entries"]
            .as_array()
            .unwrap()
            .iter()
            .find(|e| e["logged-by"][0]["party-uuid"] == lead_party)
            .unwrap_or_else(|| panic!("no entry logged by the lead: {gated_result}"));
        assert!(
            decision["description"]
                .as_str()
                .unwrap()
                .contains("plan checked\nagainst the SOW"),
            "{decision}"
        );
        let executed: Vec<&Value> = gated_result["observations"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|o| o["methods"][0] == "TEST-AUTOMATED")
            .collect();
        assert!(
            executed.iter().any(|o| o["props"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == "action" && p["value"] == "sandbox.noop")),
            "step observations name their action: {gated_result}"
        );
        let reviewed_result = results
            .iter()
            .find(|r| r["title"].as_str().unwrap().starts_with("reviewed v1"))
            .unwrap();
        let risks = reviewed_result["risks"].as_array().unwrap();
        assert_eq!(risks.len(), 1, "the rollback is a risk: {reviewed_result}");
        assert_eq!(risks[0]["status"], "closed");

        // A period that holds no run still makes a valid document.
        let (status, empty) = t
            .call(
                Method::GET,
                &format!("{path}?since=2999-01-01T00:00:00Z"),
                Some(&auditor),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{empty}");
        assert_eq!(
            empty["assessment-results"]["results"][0]["title"],
            "No workflow runs in the period"
        );
        // Another tenant's export holds none of acme's runs.
        let (_, other) = t
            .call(
                Method::GET,
                "/api/v1/tenants/other/audit/oscal",
                Some(&auditor),
                None,
            )
            .await;
        assert!(!other.to_string().contains(&reviewed), "{other}");
        // Strangers, roles, bad input.
        let (status, _) = t.call(Method::GET, path, None, None).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        let (status, body) = t.call(Method::GET, path, Some(&tech), None).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        let (status, body) = t
            .call(
                Method::GET,
                "/api/v1/tenants/nope/audit/oscal",
                Some(&auditor),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        let (status, body) = t
            .call(
                Method::GET,
                &format!("{path}?since=yesterday"),
                Some(&auditor),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
        assert!(body.to_string().contains("since"), "{body}");
    }
}

macro_rules! api_tests {
    ($($case:ident $(($arg:expr))?),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let db = super::TestDatabase::sqlite().await.unwrap();
                    let mut app = super::spawn(&db).await;
                    super::$case(&app $(, $arg)?).await;
                    app.stop();
                    db.cleanup().await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(db) = super::TestDatabase::postgres(stringify!($case)).await.unwrap() else {
                        eprintln!("GATEHOUSE_TEST_DATABASE_URL is not set; the PostgreSQL run is done by .ci/run");
                        return;
                    };
                    let mut app = super::spawn(&db).await;
                    super::$case(&app $(, $arg)?).await;
                    app.stop();
                    db.cleanup().await;
                }
            )*
        }
    };
}

use cases::*;
use gate_cases::*;
use oscal_cases::*;
use rollback_cases::*;
use workflow_cases::*;

api_tests!(
    events_are_deduplicated_and_workflows_listed,
    approvals_gate_steps_with_separation_of_duties,
    a_reviewer_rolls_back_a_step_over_http,
    every_api_route_is_covered_by_the_policies,
    a_scoped_operator_never_sees_another_tenants_data,
    a_tenant_group_widens_a_scope_as_it_changes,
    the_audit_public_key_is_served_without_a_token,
    expired_revoked_and_disabled_credentials_stop_working,
    tenant_lifecycle_over_http,
    tenants_list_in_pages,
    bad_input_gets_the_error_shape_and_changes_nothing,
    roles_are_enforced,
    secrets_are_write_only_and_versioned,
    operators_are_created_once_with_a_token,
    health_readiness_metrics_and_request_ids,
    the_demo_seed_is_idempotent,
    random_bodies_never_cause_a_server_error(256),
    tenant_gates_over_http,
    engine_metrics_on_the_metrics_endpoint,
    a_tenants_audit_log_exports_as_oscal,
);

/// The OpenAPI document is a contract: a change to it shows up in review.
#[test]
fn the_openapi_document_is_stable() {
    insta::assert_json_snapshot!("openapi", gatehouse_server::http::openapi());
}
