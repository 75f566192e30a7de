//! The SCIM 2.0 service provider over real HTTP, on SQLite and (with
//! `GATEHOUSE_TEST_DATABASE_URL`) PostgreSQL: a conformance walk written
//! from RFC 7644, strangers on every route, tokens, and sealed storage.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests fail loudly"
)]

use gatehouse_engine::action::ActionRegistry;
use gatehouse_server::Actor;
use gatehouse_server::app::TenantRef;
use gatehouse_store::testing::TestDatabase;
use reqwest::header::HeaderMap;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

mod common;

use common::Served as TestApp;

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const PATCH: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const SEARCH: &str = "urn:ietf:params:scim:api:messages:2.0:SearchRequest";
const CLI: Actor = Actor::System("test");

async fn spawn(db: &TestDatabase) -> TestApp {
    TestApp::spawn(db, Vec::new(), ActionRegistry::new(), 64 * 1024)
        .await
        .unwrap()
}

struct Answer {
    status: StatusCode,
    headers: HeaderMap,
    body: Value,
}

impl TestApp {
    async fn create_tenant(&self, slug: &str) {
        let response = self
            .http
            .post(format!("{}/api/v1/tenants", self.base))
            .bearer_auth(&self.admin)
            .json(&json!({"slug": slug, "display_name": slug, "region": "eu"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
    }

    async fn scim_token(&self, slug: &str) -> String {
        let issued = self
            .app
            .create_scim_token(&CLI, &TenantRef::parse(slug), "test")
            .await
            .unwrap();
        issued.secret.as_str().to_owned()
    }

    async fn scim(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
        headers: &[(&str, &str)],
    ) -> Answer {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        for (k, v) in headers {
            request = request.header(*k, *v);
        }
        if let Some(body) = body {
            request = request
                .header("content-type", "application/scim+json")
                .body(body.to_string());
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let headers = response.headers().clone();
        let text = response.text().await.unwrap();
        let body = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        Answer {
            status,
            headers,
            body,
        }
    }
}

fn user(name: &str, given: &str, family: &str, email: &str) -> Value {
    json!({
        "schemas": [USER],
        "userName": name,
        "externalId": format!("ext-{name}"),
        "name": {"givenName": given, "familyName": family},
        "emails": [{"value": email, "type": "work", "primary": true}],
        "active": true,
        "password": "never-stored-9931",
    })
}

fn names(list: &Value) -> Vec<String> {
    let mut names: Vec<String> = list["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["userName"].as_str().unwrap_or_default().to_owned())
        .collect();
    names.sort();
    names
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

mod cases {
    use super::*;

    pub async fn conformance_walk(t: &TestApp, db: &TestDatabase) {
        t.create_tenant("contoso").await;
        let token = t.scim_token("contoso").await;
        let tok = Some(token.as_str());
        let base = "/scim/v2/contoso";

        // Create: 201, Location, ETag, scim+json, no password back.
        let a = t
            .scim(
                Method::POST,
                &format!("{base}/Users"),
                tok,
                Some(user(
                    "Alice.Smith@contoso.com",
                    "Alice",
                    "Smith",
                    "alice@contoso.com",
                )),
                &[],
            )
            .await;
        assert_eq!(a.status, StatusCode::CREATED, "{}", a.body);
        assert_eq!(a.headers["content-type"], "application/scim+json");
        let alice = a.body["id"].as_str().unwrap().to_owned();
        let location = a.headers["location"].to_str().unwrap().to_owned();
        assert!(
            location.ends_with(&format!("{base}/Users/{alice}")),
            "{location}"
        );
        assert_eq!(a.headers["etag"], "W/\"1\"");
        assert_eq!(a.body["meta"]["version"], "W/\"1\"");
        assert_eq!(a.body["meta"]["resourceType"], "User");
        assert!(a.body.get("password").is_none());

        // Duplicate userName in another case: 409 uniqueness.
        let dup = t
            .scim(
                Method::POST,
                &format!("{base}/Users"),
                tok,
                Some(user("ALICE.smith@CONTOSO.com", "A", "S", "a2@contoso.com")),
                &[],
            )
            .await;
        assert_eq!(dup.status, StatusCode::CONFLICT, "{}", dup.body);
        assert_eq!(dup.body["scimType"], "uniqueness");
        assert_eq!(dup.body["status"], "409");
        assert!(dup.body["schemas"][0].as_str().unwrap().ends_with(":Error"));

        for (n, g, f, e) in [
            ("bob@contoso.com", "Bob", "Jones", "bob@contoso.com"),
            ("carol@fabrikam.com", "Carol", "Smith", "carol@fabrikam.com"),
            ("dave@contoso.com", "Dave", "Brown", "dave@contoso.com"),
        ] {
            let r = t
                .scim(
                    Method::POST,
                    &format!("{base}/Users"),
                    tok,
                    Some(user(n, g, f, e)),
                    &[],
                )
                .await;
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        }

        // Get one, If-None-Match.
        let g = t
            .scim(
                Method::GET,
                &format!("{base}/Users/{alice}"),
                tok,
                None,
                &[],
            )
            .await;
        assert_eq!(g.status, StatusCode::OK);
        assert_eq!(g.body["userName"], "Alice.Smith@contoso.com");
        assert_eq!(g.body["name"]["givenName"], "Alice");
        let nm = t
            .scim(
                Method::GET,
                &format!("{base}/Users/{alice}"),
                tok,
                None,
                &[("if-none-match", "W/\"1\"")],
            )
            .await;
        assert_eq!(nm.status, StatusCode::NOT_MODIFIED);

        // Filters.
        let list = |filter: &str| {
            let path = format!("{base}/Users?filter={}", urlencode(filter));
            async move { t.scim(Method::GET, &path, tok, None, &[]).await }
        };
        let r = list("userName eq \"alice.smith@contoso.com\"").await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(names(&r.body), vec!["Alice.Smith@contoso.com"]);
        assert_eq!(r.body["totalResults"], 1);
        let r = list("externalId eq \"ext-bob@contoso.com\"").await;
        assert_eq!(names(&r.body), vec!["bob@contoso.com"]);
        let r = list("externalId eq \"EXT-bob@contoso.com\"").await;
        assert_eq!(r.body["totalResults"], 0, "externalId is caseExact");
        let r = list(&format!("id eq \"{alice}\"")).await;
        assert_eq!(names(&r.body), vec!["Alice.Smith@contoso.com"]);
        let r = list("userName co \"contoso\"").await;
        assert_eq!(
            names(&r.body),
            vec![
                "Alice.Smith@contoso.com",
                "bob@contoso.com",
                "dave@contoso.com"
            ]
        );
        let r = list("userName sw \"CAROL\"").await;
        assert_eq!(names(&r.body), vec!["carol@fabrikam.com"]);
        let r = list("name.familyName eq \"Smith\" and userName co \"contoso\"").await;
        assert_eq!(names(&r.body), vec!["Alice.Smith@contoso.com"]);
        let r = list("userName eq \"bob@contoso.com\" or name.givenName eq \"Dave\"").await;
        assert_eq!(names(&r.body), vec!["bob@contoso.com", "dave@contoso.com"]);
        let r = list("title pr").await;
        assert_eq!(r.body["totalResults"], 0);
        let r = list("emails[type eq \"work\" and value ew \"fabrikam.com\"]").await;
        assert_eq!(names(&r.body), vec!["carol@fabrikam.com"]);
        let bad = list("userName eq").await;
        assert_eq!(bad.status, StatusCode::BAD_REQUEST);
        assert_eq!(bad.body["scimType"], "invalidFilter");

        // Sorting and pagination.
        let p = t
            .scim(
                Method::GET,
                &format!("{base}/Users?sortBy=userName&startIndex=2&count=2"),
                tok,
                None,
                &[],
            )
            .await;
        assert_eq!(p.body["totalResults"], 4);
        assert_eq!(p.body["startIndex"], 2);
        assert_eq!(p.body["itemsPerPage"], 2);
        let page: Vec<&str> = p.body["Resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["userName"].as_str().unwrap())
            .collect();
        assert_eq!(page, vec!["bob@contoso.com", "carol@fabrikam.com"]);

        // attributes / excludedAttributes.
        let p = t
            .scim(
                Method::GET,
                &format!("{base}/Users/{alice}?attributes=userName"),
                tok,
                None,
                &[],
            )
            .await;
        assert_eq!(p.body["userName"], "Alice.Smith@contoso.com");
        assert!(p.body.get("name").is_none());
        assert_eq!(p.body["id"], alice.as_str());
        let p = t
            .scim(
                Method::GET,
                &format!(
                    "{base}/Users?excludedAttributes=emails,name&filter={}",
                    urlencode("userName eq \"bob@contoso.com\"")
                ),
                tok,
                None,
                &[],
            )
            .await;
        let bob = &p.body["Resources"][0];
        assert!(bob.get("emails").is_none() && bob.get("name").is_none());
        assert_eq!(bob["userName"], "bob@contoso.com");
        let bob_id = bob["id"].as_str().unwrap().to_owned();

        // POST /.search, per type and at the root.
        let s = t.scim(Method::POST, &format!("{base}/Users/.search"), tok, Some(json!({"schemas": [SEARCH], "filter": "name.givenName sw \"d\"", "attributes": ["userName"]})), &[]).await;
        assert_eq!(s.status, StatusCode::OK, "{}", s.body);
        assert_eq!(names(&s.body), vec!["dave@contoso.com"]);
        let s = t
            .scim(
                Method::POST,
                &format!("{base}/.search"),
                tok,
                Some(json!({"schemas": [SEARCH], "filter": "userName eq \"dave@contoso.com\""})),
                &[],
            )
            .await;
        assert_eq!(s.status, StatusCode::OK, "{}", s.body);
        assert_eq!(names(&s.body), vec!["dave@contoso.com"]);

        // PATCH (RFC style and Entra style): 200 with the resource.
        let p = t
            .scim(
                Method::PATCH,
                &format!("{base}/Users/{alice}"),
                tok,
                Some(json!({"schemas": [PATCH], "Operations": [
                    {"op": "add", "path": "title", "value": "Engineer"},
                    {"op": "replace", "path": "name.givenName", "value": "Alicia"},
                ]})),
                &[],
            )
            .await;
        assert_eq!(p.status, StatusCode::OK, "{}", p.body);
        assert_eq!(p.body["title"], "Engineer");
        assert_eq!(p.body["name"]["givenName"], "Alicia");
        assert_eq!(p.headers["etag"], "W/\"2\"");
        let p = t
            .scim(
                Method::PATCH,
                &format!("{base}/Users/{alice}"),
                tok,
                Some(json!({"schemas": [PATCH], "Operations": [
                    {"op": "Replace", "value": {"active": "False", "name.familyName": "Smyth"}},
                    {"op": "Remove", "path": "title"},
                ]})),
                &[],
            )
            .await;
        assert_eq!(p.status, StatusCode::OK, "{}", p.body);
        assert_eq!(p.body["active"], false);
        assert_eq!(p.body["name"]["familyName"], "Smyth");
        assert!(p.body.get("title").is_none());
        assert_eq!(p.body["meta"]["version"], "W/\"3\"");

        // PUT with a stale If-Match: 412; with the current one: 200.
        let mut put = user(
            "Alice.Smith@contoso.com",
            "Alice",
            "Smith",
            "alice@contoso.com",
        );
        put["title"] = json!("Lead");
        let stale = t
            .scim(
                Method::PUT,
                &format!("{base}/Users/{alice}"),
                tok,
                Some(put.clone()),
                &[("if-match", "W/\"1\"")],
            )
            .await;
        assert_eq!(
            stale.status,
            StatusCode::PRECONDITION_FAILED,
            "{}",
            stale.body
        );
        let ok = t
            .scim(
                Method::PUT,
                &format!("{base}/Users/{alice}"),
                tok,
                Some(put),
                &[("if-match", "W/\"3\"")],
            )
            .await;
        assert_eq!(ok.status, StatusCode::OK, "{}", ok.body);
        assert_eq!(ok.body["title"], "Lead");
        assert_eq!(ok.headers["etag"], "W/\"4\"");
        // Renaming onto a taken userName: 409.
        let taken = t.scim(Method::PATCH, &format!("{base}/Users/{alice}"), tok, Some(json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "userName", "value": "BOB@contoso.com"}]})), &[]).await;
        assert_eq!(taken.status, StatusCode::CONFLICT);
        assert_eq!(taken.body["scimType"], "uniqueness");

        // Groups with members, added and removed by PATCH.
        let g = t.scim(Method::POST, &format!("{base}/Groups"), tok, Some(json!({"schemas": [GROUP], "displayName": "Sales", "members": [{"value": alice}]})), &[]).await;
        assert_eq!(g.status, StatusCode::CREATED, "{}", g.body);
        let group = g.body["id"].as_str().unwrap().to_owned();
        let p = t.scim(Method::PATCH, &format!("{base}/Groups/{group}"), tok, Some(json!({"schemas": [PATCH], "Operations": [{"op": "add", "path": "members", "value": [{"value": bob_id}]}]})), &[]).await;
        assert_eq!(p.status, StatusCode::OK, "{}", p.body);
        assert_eq!(p.body["members"].as_array().unwrap().len(), 2);
        let p = t.scim(Method::PATCH, &format!("{base}/Groups/{group}"), tok, Some(json!({"schemas": [PATCH], "Operations": [{"op": "remove", "path": format!("members[value eq \"{alice}\"]")}]})), &[]).await;
        assert_eq!(p.status, StatusCode::OK, "{}", p.body);
        // Members carry a computed display, $ref and type.
        let origin = format!("{}{base}", t.base);
        assert_eq!(
            p.body["members"],
            json!([{"value": bob_id, "display": "bob@contoso.com", "$ref": format!("{origin}/Users/{bob_id}"), "type": "User"}]),
            "{}",
            p.body
        );
        // A user's read-only groups are computed from the groups' members.
        let b = t
            .scim(
                Method::GET,
                &format!("{base}/Users/{bob_id}"),
                tok,
                None,
                &[],
            )
            .await;
        assert_eq!(
            b.body["groups"],
            json!([{"value": group, "$ref": format!("{origin}/Groups/{group}"), "display": "Sales", "type": "direct"}]),
            "{}",
            b.body
        );
        let a = t
            .scim(
                Method::GET,
                &format!("{base}/Users/{alice}"),
                tok,
                None,
                &[],
            )
            .await;
        assert!(a.body.get("groups").is_none(), "{}", a.body);
        let r = list(&format!("groups.value eq \"{group}\"")).await;
        assert_eq!(names(&r.body), vec!["bob@contoso.com"]);
        // PATCH and PUT of a user who is in a group: groups stay computed;
        // a PATCH that changes nothing keeps the version.
        let p = t.scim(Method::PATCH, &format!("{base}/Users/{bob_id}"), tok, Some(json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "title", "value": "Rep"}]})), &[]).await;
        assert_eq!(p.status, StatusCode::OK, "{}", p.body);
        assert_eq!(p.body["groups"][0]["value"], group.as_str());
        let version = p.body["meta"]["version"].clone();
        let p = t.scim(Method::PATCH, &format!("{base}/Users/{bob_id}"), tok, Some(json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "title", "value": "Rep"}]})), &[]).await;
        assert_eq!(p.status, StatusCode::OK, "{}", p.body);
        assert_eq!(p.body["meta"]["version"], version);
        let p = t
            .scim(
                Method::PUT,
                &format!("{base}/Users/{bob_id}"),
                tok,
                Some(user("bob@contoso.com", "Bob", "Jones", "bob@contoso.com")),
                &[],
            )
            .await;
        assert_eq!(p.status, StatusCode::OK, "{}", p.body);
        assert_eq!(p.body["groups"][0]["display"], "Sales");
        let f = t
            .scim(
                Method::GET,
                &format!(
                    "{base}/Groups?filter={}",
                    urlencode("displayName eq \"sales\"")
                ),
                tok,
                None,
                &[],
            )
            .await;
        assert_eq!(f.body["totalResults"], 1, "{}", f.body);

        // DELETE: 204, then 404.
        let d = t
            .scim(
                Method::DELETE,
                &format!("{base}/Users/{alice}"),
                tok,
                None,
                &[],
            )
            .await;
        assert_eq!(d.status, StatusCode::NO_CONTENT);
        let d = t
            .scim(
                Method::GET,
                &format!("{base}/Users/{alice}"),
                tok,
                None,
                &[],
            )
            .await;
        assert_eq!(d.status, StatusCode::NOT_FOUND);
        assert_eq!(d.body["status"], "404");
        let d = t
            .scim(
                Method::DELETE,
                &format!("{base}/Users/{alice}"),
                tok,
                None,
                &[],
            )
            .await;
        assert_eq!(d.status, StatusCode::NOT_FOUND);
        // The userName is free again.
        let again = t
            .scim(
                Method::POST,
                &format!("{base}/Users"),
                tok,
                Some(user("alice.smith@contoso.com", "A", "S", "a@contoso.com")),
                &[],
            )
            .await;
        assert_eq!(again.status, StatusCode::CREATED, "{}", again.body);

        // Discovery.
        let spc = t
            .scim(
                Method::GET,
                &format!("{base}/ServiceProviderConfig"),
                tok,
                None,
                &[],
            )
            .await;
        assert_eq!(spc.status, StatusCode::OK);
        assert_eq!(spc.body["patch"]["supported"], true);
        assert_eq!(spc.body["bulk"]["supported"], false);
        let rts = t
            .scim(
                Method::GET,
                &format!("{base}/ResourceTypes"),
                tok,
                None,
                &[],
            )
            .await;
        assert_eq!(rts.body["totalResults"], 2);
        let rt = t
            .scim(
                Method::GET,
                &format!("{base}/ResourceTypes/User"),
                tok,
                None,
                &[],
            )
            .await;
        assert_eq!(rt.body["endpoint"], "/Users");
        let schemas = t
            .scim(Method::GET, &format!("{base}/Schemas"), tok, None, &[])
            .await;
        assert!(schemas.body["totalResults"].as_u64().unwrap() >= 3);
        let s = t
            .scim(
                Method::GET,
                &format!("{base}/Schemas/{USER}"),
                tok,
                None,
                &[],
            )
            .await;
        assert_eq!(s.status, StatusCode::OK);
        assert_eq!(s.body["id"], USER);
        let s = t
            .scim(
                Method::GET,
                &format!("{base}/Schemas/urn:nope"),
                tok,
                None,
                &[],
            )
            .await;
        assert_eq!(s.status, StatusCode::NOT_FOUND);
        let s = t
            .scim(
                Method::POST,
                &format!("{base}/Bulk"),
                tok,
                Some(json!({})),
                &[],
            )
            .await;
        assert_eq!(s.status, StatusCode::NOT_IMPLEMENTED);

        // Bad bodies: invalid JSON and a body over the limit.
        let r = t
            .scim(
                Method::POST,
                &format!("{base}/Users"),
                tok,
                None,
                &[("content-type", "application/scim+json")],
            )
            .await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(r.body["scimType"], "invalidSyntax");
        let mut big = user("big@contoso.com", "B", "G", "big@contoso.com");
        big["title"] = json!("x".repeat(300 * 1024));
        let r = t
            .scim(Method::POST, &format!("{base}/Users"), tok, Some(big), &[])
            .await;
        assert_eq!(r.status, StatusCode::PAYLOAD_TOO_LARGE);

        // At rest: no userName, e-mail or password in clear; audit names no values.
        let rows = t
            .app
            .store
            .scim_list(
                t.app
                    .store
                    .find_tenant_by_slug(
                        &gatehouse_core::tenant::TenantSlug::parse("contoso").unwrap(),
                    )
                    .await
                    .unwrap()
                    .id,
                "User",
                None,
            )
            .await
            .unwrap();
        assert_eq!(rows.len(), 4);
        for row in &rows {
            for needle in [&b"bob@contoso.com"[..], b"never-stored", b"Smith", b"carol"] {
                assert!(!contains(&row.sealed, needle));
            }
        }
        assert!(raw_rows_clean(db).await);
        audit_has_no_values(t).await;
    }

    pub async fn strangers(t: &TestApp, _db: &TestDatabase) {
        t.create_tenant("contoso").await;
        t.create_tenant("fabrikam").await;
        let mine = t.scim_token("contoso").await;
        let theirs = t.scim_token("fabrikam").await;
        let created = t
            .scim(
                Method::POST,
                "/scim/v2/contoso/Users",
                Some(&mine),
                Some(user("u@contoso.com", "U", "C", "u@contoso.com")),
                &[],
            )
            .await;
        assert_eq!(created.status, StatusCode::CREATED);
        let id = created.body["id"].as_str().unwrap().to_owned();
        let routes: Vec<(Method, String)> = vec![
            (Method::GET, "Users".into()),
            (Method::POST, "Users".into()),
            (Method::POST, "Users/.search".into()),
            (Method::GET, format!("Users/{id}")),
            (Method::PUT, format!("Users/{id}")),
            (Method::PATCH, format!("Users/{id}")),
            (Method::DELETE, format!("Users/{id}")),
            (Method::GET, "Groups".into()),
            (Method::POST, "Groups".into()),
            (Method::POST, "Groups/.search".into()),
            (Method::GET, "Groups/x".into()),
            (Method::PUT, "Groups/x".into()),
            (Method::PATCH, "Groups/x".into()),
            (Method::DELETE, "Groups/x".into()),
            (Method::POST, ".search".into()),
            (Method::GET, "ServiceProviderConfig".into()),
            (Method::GET, "ResourceTypes".into()),
            (Method::GET, "ResourceTypes/User".into()),
            (Method::GET, "Schemas".into()),
            (Method::GET, format!("Schemas/{USER}")),
            (Method::GET, "Bulk".into()),
            (Method::GET, "Nope".into()),
        ];
        let wrong = "gh_scim_AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA".to_owned();
        for (method, route) in &routes {
            for (tenant, token) in [
                ("contoso", None),
                ("contoso", Some(wrong.as_str())),
                ("contoso", Some(t.admin.as_str())),
                ("contoso", Some(theirs.as_str())),
                ("nobody", Some(mine.as_str())),
                ("fabrikam", Some(mine.as_str())),
            ] {
                let r = t
                    .scim(
                        method.clone(),
                        &format!("/scim/v2/{tenant}/{route}"),
                        token,
                        Some(json!({})),
                        &[],
                    )
                    .await;
                assert_eq!(
                    r.status,
                    StatusCode::UNAUTHORIZED,
                    "{method} {tenant}/{route} with {token:?}"
                );
                assert_eq!(
                    r.headers["www-authenticate"].to_str().unwrap(),
                    "Bearer realm=\"scim\""
                );
                assert_eq!(r.body["status"], "401");
            }
        }
        // The user is still there, untouched.
        let g = t
            .scim(
                Method::GET,
                &format!("/scim/v2/contoso/Users/{id}"),
                Some(&mine),
                None,
                &[],
            )
            .await;
        assert_eq!(g.status, StatusCode::OK);
        assert_eq!(g.body["meta"]["version"], "W/\"1\"");
        // Fabrikam sees none of contoso's users.
        let l = t
            .scim(
                Method::GET,
                "/scim/v2/fabrikam/Users",
                Some(&theirs),
                None,
                &[],
            )
            .await;
        assert_eq!(l.body["totalResults"], 0);
        let l = t
            .scim(
                Method::GET,
                &format!("/scim/v2/fabrikam/Users/{id}"),
                Some(&theirs),
                None,
                &[],
            )
            .await;
        assert_eq!(l.status, StatusCode::NOT_FOUND);
    }

    pub async fn tokens(t: &TestApp, _db: &TestDatabase) {
        t.create_tenant("contoso").await;
        let tenant = TenantRef::parse("contoso");
        let issued = t
            .app
            .create_scim_token(&CLI, &tenant, "entra")
            .await
            .unwrap();
        let secret = issued.secret.as_str().to_owned();
        assert!(secret.starts_with("gh_scim_"));
        assert_eq!(secret.len(), "gh_scim_".len() + 43);
        let listed = t.app.scim_tokens(&CLI, &tenant).await.unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].label, "entra");
        assert!(listed[0].revoked_at.is_none());
        assert!(!contains(&listed[0].hash, secret.as_bytes()));
        let ok = t
            .scim(
                Method::GET,
                "/scim/v2/contoso/Users",
                Some(&secret),
                None,
                &[],
            )
            .await;
        assert_eq!(ok.status, StatusCode::OK);
        t.app
            .revoke_scim_token(&CLI, &tenant, &issued.token.id)
            .await
            .unwrap();
        assert!(
            t.app
                .revoke_scim_token(&CLI, &tenant, &issued.token.id)
                .await
                .is_err()
        );
        let gone = t
            .scim(
                Method::GET,
                "/scim/v2/contoso/Users",
                Some(&secret),
                None,
                &[],
            )
            .await;
        assert_eq!(gone.status, StatusCode::UNAUTHORIZED);
        assert!(
            t.app.scim_tokens(&CLI, &tenant).await.unwrap()[0]
                .revoked_at
                .is_some()
        );
        // Creating and revoking are audited.
        let actions = audit_actions(t, "contoso").await;
        assert!(
            actions.contains(&"scim.token.created".to_owned()),
            "{actions:?}"
        );
        assert!(
            actions.contains(&"scim.token.revoked".to_owned()),
            "{actions:?}"
        );
    }

    /// Members carry `display`, `$ref` and `type` computed from the member
    /// itself; deleting a user or a group removes it from every group,
    /// with a new version and an audit record; many users listed at once
    /// still get their `groups`.
    pub async fn members_follow_their_users(t: &TestApp, _db: &TestDatabase) {
        t.create_tenant("contoso").await;
        let token = t.scim_token("contoso").await;
        let tok = Some(token.as_str());
        let base = "/scim/v2/contoso";
        let origin = format!("{}{base}", t.base);
        let mut ids = Vec::new();
        for i in 0..12 {
            let mut body = user(
                &format!("u{i:02}@contoso.com"),
                "U",
                &format!("N{i:02}"),
                &format!("u{i:02}@contoso.com"),
            );
            if i == 0 {
                body["displayName"] = json!("Alice Smith");
            }
            let r = t
                .scim(Method::POST, &format!("{base}/Users"), tok, Some(body), &[])
                .await;
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
            ids.push(r.body["id"].as_str().unwrap().to_owned());
        }
        let (alice, bob) = (ids[0].clone(), ids[1].clone());
        let g = t.scim(Method::POST, &format!("{base}/Groups"), tok, Some(json!({"schemas": [GROUP], "displayName": "Sales", "members": [{"value": alice}, {"value": bob}]})), &[]).await;
        assert_eq!(g.status, StatusCode::CREATED, "{}", g.body);
        let sales = g.body["id"].as_str().unwrap().to_owned();
        assert_eq!(
            g.body["members"],
            json!([
                {"value": alice, "display": "Alice Smith", "$ref": format!("{origin}/Users/{alice}"), "type": "User"},
                {"value": bob, "display": "u01@contoso.com", "$ref": format!("{origin}/Users/{bob}"), "type": "User"},
            ])
        );
        // A group inside a group, and a member that names a missing id.
        let g = t.scim(Method::POST, &format!("{base}/Groups"), tok, Some(json!({"schemas": [GROUP], "displayName": "Everyone", "members": [{"value": sales, "type": "Group"}, {"value": "no-such-id"}, {"value": alice}]})), &[]).await;
        assert_eq!(g.status, StatusCode::CREATED, "{}", g.body);
        let everyone = g.body["id"].as_str().unwrap().to_owned();
        assert_eq!(
            g.body["members"][0],
            json!({"value": sales, "display": "Sales", "$ref": format!("{origin}/Groups/{sales}"), "type": "Group"})
        );
        assert_eq!(g.body["members"][1], json!({"value": "no-such-id"}));

        // Renaming a user shows in the group at once (display is not stored).
        let p = t.scim(Method::PATCH, &format!("{base}/Users/{alice}"), tok, Some(json!({"schemas": [PATCH], "Operations": [{"op": "Replace", "path": "displayName", "value": "Alice Jones"}]})), &[]).await;
        assert_eq!(p.status, StatusCode::OK, "{}", p.body);
        let r = t
            .scim(
                Method::GET,
                &format!("{base}/Groups/{sales}"),
                tok,
                None,
                &[],
            )
            .await;
        assert_eq!(r.body["members"][0]["display"], "Alice Jones");
        assert_eq!(r.body["meta"]["version"], "W/\"1\"");
        // A PATCH of the group that changes nothing keeps its version,
        // computed fields notwithstanding.
        let p = t.scim(Method::PATCH, &format!("{base}/Groups/{sales}"), tok, Some(json!({"schemas": [PATCH], "Operations": [{"op": "replace", "path": "displayName", "value": "Sales"}]})), &[]).await;
        assert_eq!(p.status, StatusCode::OK, "{}", p.body);
        assert_eq!(p.body["meta"]["version"], "W/\"1\"", "{}", p.body);
        assert_eq!(
            p.body["members"][0]["$ref"],
            format!("{origin}/Users/{alice}")
        );

        // Listing many users at once fills in groups as a single read does.
        let l = t
            .scim(
                Method::GET,
                &format!("{base}/Users?count=50"),
                tok,
                None,
                &[],
            )
            .await;
        assert_eq!(l.body["totalResults"], 12);
        for resource in l.body["Resources"].as_array().unwrap() {
            let id = resource["id"].as_str().unwrap();
            let groups: Vec<&str> = resource["groups"]
                .as_array()
                .map(|g| g.iter().map(|g| g["value"].as_str().unwrap()).collect())
                .unwrap_or_default();
            if id == alice {
                let mut groups = groups.clone();
                groups.sort_unstable();
                let mut expected = vec![sales.as_str(), everyone.as_str()];
                expected.sort_unstable();
                assert_eq!(groups, expected, "{resource}");
            } else if id == bob {
                assert_eq!(groups, vec![sales.as_str()], "{resource}");
                assert_eq!(
                    resource["groups"][0]["$ref"],
                    format!("{origin}/Groups/{sales}")
                );
            } else {
                assert!(groups.is_empty(), "{resource}");
            }
        }

        // Deleting Alice removes her from both groups (new versions).
        let d = t
            .scim(
                Method::DELETE,
                &format!("{base}/Users/{alice}"),
                tok,
                None,
                &[],
            )
            .await;
        assert_eq!(d.status, StatusCode::NO_CONTENT, "{}", d.body);
        let r = t
            .scim(
                Method::GET,
                &format!("{base}/Groups/{sales}"),
                tok,
                None,
                &[],
            )
            .await;
        let members: Vec<&str> = r.body["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["value"].as_str().unwrap())
            .collect();
        assert_eq!(members, vec![bob.as_str()]);
        assert_eq!(r.body["meta"]["version"], "W/\"2\"");
        let r = t
            .scim(
                Method::GET,
                &format!("{base}/Groups/{everyone}"),
                tok,
                None,
                &[],
            )
            .await;
        let members: Vec<&str> = r.body["members"]
            .as_array()
            .unwrap()
            .iter()
            .map(|m| m["value"].as_str().unwrap())
            .collect();
        assert_eq!(members, vec![sales.as_str(), "no-such-id"]);
        let f = t
            .scim(
                Method::GET,
                &format!(
                    "{base}/Groups?filter={}",
                    urlencode(&format!("members.value eq \"{alice}\""))
                ),
                tok,
                None,
                &[],
            )
            .await;
        assert_eq!(f.body["totalResults"], 0, "{}", f.body);
        // Deleting a missing user is still 404, and touches no group.
        let d = t
            .scim(
                Method::DELETE,
                &format!("{base}/Users/{alice}"),
                tok,
                None,
                &[],
            )
            .await;
        assert_eq!(d.status, StatusCode::NOT_FOUND);

        // Deleting a group removes it from the groups it was in; deleting
        // the last member leaves a group with no members.
        let d = t
            .scim(
                Method::DELETE,
                &format!("{base}/Groups/{sales}"),
                tok,
                None,
                &[],
            )
            .await;
        assert_eq!(d.status, StatusCode::NO_CONTENT);
        let r = t
            .scim(
                Method::GET,
                &format!("{base}/Groups/{everyone}"),
                tok,
                None,
                &[],
            )
            .await;
        assert_eq!(
            r.body["members"],
            json!([{"value": "no-such-id"}]),
            "{}",
            r.body
        );
        let b = t
            .scim(Method::GET, &format!("{base}/Users/{bob}"), tok, None, &[])
            .await;
        assert!(b.body.get("groups").is_none(), "{}", b.body);
        let g = t
            .scim(
                Method::POST,
                &format!("{base}/Groups"),
                tok,
                Some(
                    json!({"schemas": [GROUP], "displayName": "Solo", "members": [{"value": bob}]}),
                ),
                &[],
            )
            .await;
        let solo = g.body["id"].as_str().unwrap().to_owned();
        let d = t
            .scim(
                Method::DELETE,
                &format!("{base}/Users/{bob}"),
                tok,
                None,
                &[],
            )
            .await;
        assert_eq!(d.status, StatusCode::NO_CONTENT);
        let r = t
            .scim(
                Method::GET,
                &format!("{base}/Groups/{solo}"),
                tok,
                None,
                &[],
            )
            .await;
        assert_eq!(r.status, StatusCode::OK);
        assert!(r.body.get("members").is_none(), "{}", r.body);

        // The group rewrites are audited like any update.
        let actions = audit_actions(t, "contoso").await;
        let updated = actions
            .iter()
            .filter(|a| *a == "scim.resource.updated")
            .count();
        assert!(updated >= 5, "{actions:?}");
    }

    /// `POST /.search` at the root: both types, sorted and paged together,
    /// each projected by its own schema.
    pub async fn root_search_across_types(t: &TestApp, _db: &TestDatabase) {
        t.create_tenant("contoso").await;
        let token = t.scim_token("contoso").await;
        let tok = Some(token.as_str());
        let base = "/scim/v2/contoso";
        for (name, display) in [("b@contoso.com", "Bravo"), ("d@contoso.com", "Delta")] {
            let mut body = user(name, "X", "Y", name);
            body["displayName"] = json!(display);
            let r = t
                .scim(Method::POST, &format!("{base}/Users"), tok, Some(body), &[])
                .await;
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        }
        for display in ["Alpha", "Charlie"] {
            let r = t.scim(Method::POST, &format!("{base}/Groups"), tok, Some(json!({"schemas": [GROUP], "displayName": display, "externalId": format!("ext-{display}")})), &[]).await;
            assert_eq!(r.status, StatusCode::CREATED, "{}", r.body);
        }
        let search = |body: Value| async move {
            t.scim(
                Method::POST,
                &format!("{base}/.search"),
                tok,
                Some(body),
                &[],
            )
            .await
        };
        let displays = |r: &Answer| -> Vec<String> {
            r.body["Resources"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["displayName"].as_str().unwrap_or("-").to_owned())
                .collect()
        };

        // Sorted across types, both ways.
        let r = search(json!({"schemas": [SEARCH], "sortBy": "displayName"})).await;
        assert_eq!(r.status, StatusCode::OK, "{}", r.body);
        assert_eq!(r.body["totalResults"], 4);
        assert_eq!(displays(&r), vec!["Alpha", "Bravo", "Charlie", "Delta"]);
        let r = search(
            json!({"schemas": [SEARCH], "sortBy": "displayName", "sortOrder": "descending"}),
        )
        .await;
        assert_eq!(displays(&r), vec!["Delta", "Charlie", "Bravo", "Alpha"]);
        // Paged together, after sorting.
        let r = search(
            json!({"schemas": [SEARCH], "sortBy": "displayName", "startIndex": 2, "count": 2}),
        )
        .await;
        assert_eq!(r.body["totalResults"], 4);
        assert_eq!(r.body["startIndex"], 2);
        assert_eq!(r.body["itemsPerPage"], 2);
        assert_eq!(displays(&r), vec!["Bravo", "Charlie"]);
        // A filter applied with each type's own schema (externalId is
        // caseExact in both; `ext-Alpha` is a group's, `ext-b@…` a user's).
        let r = search(json!({"schemas": [SEARCH], "filter": "externalId sw \"ext-\"", "sortBy": "externalId"})).await;
        assert_eq!(r.body["totalResults"], 4);
        let r = search(json!({"schemas": [SEARCH], "filter": "displayName co \"a\" and meta.resourceType eq \"Group\"", "sortBy": "displayName"})).await;
        assert_eq!(displays(&r), vec!["Alpha", "Charlie"]);
        // Projected per type after sorting, even when the sort key is excluded.
        let r = search(
            json!({"schemas": [SEARCH], "sortBy": "displayName", "attributes": ["userName"]}),
        )
        .await;
        let resources = r.body["Resources"].as_array().unwrap();
        assert_eq!(resources.len(), 4);
        assert!(
            resources.iter().all(|r| r.get("displayName").is_none()),
            "{}",
            r.body
        );
        assert_eq!(resources[1]["userName"], "b@contoso.com");
        assert_eq!(resources[3]["userName"], "d@contoso.com");
        assert!(resources[0].get("userName").is_none());
        assert_eq!(resources[0]["schemas"], json!([GROUP]), "{}", r.body);
        // A bad body is still a SCIM error.
        let r = search(json!({"filter": "userName eq \"x\""})).await;
        assert_eq!(r.status, StatusCode::BAD_REQUEST);
        assert_eq!(r.body["scimType"], "invalidSyntax");
    }
}

fn urlencode(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The raw `scim_resources` and `scim_index` rows hold no value in clear.
async fn raw_rows_clean(db: &TestDatabase) -> bool {
    let mut blobs: Vec<Vec<u8>> = Vec::new();
    if let Some(path) = db.sqlite_path() {
        let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
        for q in [
            "SELECT sealed FROM scim_resources",
            "SELECT digest FROM scim_index",
        ] {
            let rows: Vec<(Vec<u8>,)> = sqlx::query_as(q).fetch_all(&pool).await.unwrap();
            assert!(!rows.is_empty());
            blobs.extend(rows.into_iter().map(|r| r.0));
        }
        pool.close().await;
        for file in [path.clone(), path.with_extension("db-wal")] {
            if let Ok(bytes) = std::fs::read(&file) {
                blobs.push(bytes);
            }
        }
    } else {
        let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
        for q in [
            "SELECT sealed FROM scim_resources",
            "SELECT digest FROM scim_index",
        ] {
            let rows: Vec<(Vec<u8>,)> = sqlx::query_as(q).fetch_all(&pool).await.unwrap();
            assert!(!rows.is_empty());
            blobs.extend(rows.into_iter().map(|r| r.0));
        }
        pool.close().await;
    }
    blobs.iter().all(|b| {
        !contains(b, b"bob@contoso.com")
            && !contains(b, b"carol@fabrikam.com")
            && !contains(b, b"never-stored-9931")
    })
}

async fn sequence(t: &TestApp) {
    let sequencer =
        gatehouse_server::audit::Sequencer::new(t.app.store.clone(), t.app.keyring.clone());
    while sequencer.run_once(1000).await.unwrap() > 0 {}
}

async fn audit_actions(t: &TestApp, tenant: &str) -> Vec<String> {
    sequence(t).await;
    let response = t
        .http
        .get(format!(
            "{}/api/v1/audit/entries?tenant={tenant}&limit=500",
            t.base
        ))
        .bearer_auth(&t.admin)
        .send()
        .await
        .unwrap();
    let body: Value = response.json().await.unwrap();
    body["entries"]
        .as_array()
        .unwrap_or(&Vec::new())
        .iter()
        .map(|e| e["action"].as_str().unwrap_or_default().to_owned())
        .collect()
}

async fn audit_has_no_values(t: &TestApp) {
    sequence(t).await;
    let response = t
        .http
        .get(format!(
            "{}/api/v1/audit/entries?tenant=contoso&limit=500",
            t.base
        ))
        .bearer_auth(&t.admin)
        .send()
        .await
        .unwrap();
    let text = response.text().await.unwrap();
    assert!(text.contains("scim.resource.created"), "{text}");
    assert!(text.contains("scim.resource.updated"));
    assert!(text.contains("scim.resource.deleted"));
    assert!(!text.contains("bob@contoso.com"));
    assert!(!text.contains("Alicia"));
}

macro_rules! scim_tests {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let db = super::TestDatabase::sqlite().await.unwrap();
                    let mut app = super::spawn(&db).await;
                    super::cases::$case(&app, &db).await;
                    app.stop();
                    db.cleanup().await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(db) = super::TestDatabase::postgres(concat!("scim_", stringify!($case))).await.unwrap() else {
                        eprintln!("GATEHOUSE_TEST_DATABASE_URL is not set; the PostgreSQL run is done by .ci/run");
                        return;
                    };
                    let mut app = super::spawn(&db).await;
                    super::cases::$case(&app, &db).await;
                    app.stop();
                    db.cleanup().await;
                }
            )*
        }
    };
}

scim_tests!(
    conformance_walk,
    strangers,
    tokens,
    members_follow_their_users,
    root_search_across_types
);
