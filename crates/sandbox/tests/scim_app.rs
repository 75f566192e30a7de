//! The SCIM 2.0 application emulator over real HTTP: what a provisioning
//! client (Entra ID, Okta, Gatehouse) sends, and what it must get back.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests fail loudly"
)]

use gatehouse_sandbox::ScimAppEmulator;
use reqwest::{Client, Method, RequestBuilder, Response};
use serde_json::{Value, json};

const TOKEN: &str = "test-token-5f2c";
const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const ERROR: &str = "urn:ietf:params:scim:api:messages:2.0:Error";

struct App {
    scim: ScimAppEmulator,
    http: Client,
}

impl App {
    async fn start() -> Self {
        Self {
            scim: ScimAppEmulator::start(TOKEN).await.unwrap(),
            http: Client::new(),
        }
    }

    fn call(&self, method: Method, path: &str) -> RequestBuilder {
        self.http
            .request(method, format!("{}{path}", self.scim.scim_url()))
            .bearer_auth(TOKEN)
    }

    async fn create_user(&self, user_name: &str) -> Response {
        self.call(Method::POST, "/Users")
            .header("content-type", "application/scim+json")
            .body(
                json!({
                    "schemas": [USER],
                    "userName": user_name,
                    "active": true,
                    "name": { "givenName": "Ada", "familyName": "Lovelace" },
                    "emails": [{ "value": user_name, "type": "work", "primary": true }],
                })
                .to_string(),
            )
            .send()
            .await
            .unwrap()
    }
}

async fn body(response: Response) -> Value {
    serde_json::from_str(&response.text().await.unwrap()).unwrap()
}

fn content_type(response: &Response) -> String {
    response.headers()["content-type"]
        .to_str()
        .unwrap()
        .to_owned()
}

#[tokio::test]
async fn a_missing_or_wrong_token_is_401_with_a_scim_error_and_no_effect() {
    let app = App::start().await;
    let url = format!("{}/Users", app.scim.scim_url());
    let wrong = app
        .http
        .post(&url)
        .bearer_auth("not-the-token")
        .json(&json!({ "schemas": [USER], "userName": "eve@example.com" }))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    assert_eq!(wrong.headers()["www-authenticate"], "Bearer");
    assert_eq!(content_type(&wrong), "application/scim+json");
    let error = body(wrong).await;
    assert_eq!(error["schemas"], json!([ERROR]));
    assert_eq!(error["status"], "401");

    let none = app.http.get(&url).send().await.unwrap();
    assert_eq!(none.status(), 401);
    let discovery = app
        .http
        .get(format!("{}/ServiceProviderConfig", app.scim.scim_url()))
        .send()
        .await
        .unwrap();
    assert_eq!(discovery.status(), 401);

    assert_eq!(app.scim.user_count(), 0);
    assert_eq!(app.scim.harness().counted("auth.refused"), 3);
    assert_eq!(app.scim.harness().counted("users.created"), 0);
    app.scim.shutdown().await;
}

#[tokio::test]
async fn create_is_201_with_location_and_etag_and_a_taken_user_name_is_409() {
    let app = App::start().await;
    let created = app.create_user("ada@example.com").await;
    assert_eq!(created.status(), 201);
    assert_eq!(content_type(&created), "application/scim+json");
    let location = created.headers()["location"].to_str().unwrap().to_owned();
    let etag = created.headers()["etag"].to_str().unwrap().to_owned();
    let user = body(created).await;
    let id = user["id"].as_str().unwrap();
    assert_eq!(location, format!("{}/Users/{id}", app.scim.scim_url()));
    assert_eq!(user["meta"]["location"], location.as_str());
    assert_eq!(etag, "W/\"1\"");
    assert_eq!(user["meta"]["resourceType"], "User");

    // The Location answers with the same resource.
    let read = app
        .http
        .get(&location)
        .bearer_auth(TOKEN)
        .send()
        .await
        .unwrap();
    assert_eq!(read.status(), 200);
    assert_eq!(read.headers()["etag"], etag.as_str());
    assert_eq!(body(read).await["userName"], "ada@example.com");
    // If-None-Match on the current version: 304.
    let unchanged = app
        .call(Method::GET, &format!("/Users/{id}"))
        .header("if-none-match", &etag)
        .send()
        .await
        .unwrap();
    assert_eq!(unchanged.status(), 304);

    // userName is unique whatever its case.
    let duplicate = app.create_user("ADA@example.com").await;
    assert_eq!(duplicate.status(), 409);
    let error = body(duplicate).await;
    assert_eq!(error["scimType"], "uniqueness");
    assert_eq!(error["status"], "409");

    // A body that is not SCIM is a 400, not a panic or a 500.
    let garbage = app
        .call(Method::POST, "/Users")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(garbage.status(), 400);
    assert_eq!(body(garbage).await["scimType"], "invalidSyntax");

    assert_eq!(app.scim.user_count(), 1);
    assert_eq!(app.scim.harness().counted("users.created"), 1);
    app.scim.shutdown().await;
}

#[tokio::test]
async fn a_create_retried_with_the_same_idempotency_key_acts_once() {
    let app = App::start().await;
    let send = || {
        app.call(Method::POST, "/Users")
            .header("idempotency-key", "k-1")
            .json(&json!({ "schemas": [USER], "userName": "grace@example.com" }))
            .send()
    };
    let first = send().await.unwrap();
    let second = send().await.unwrap();
    assert_eq!(first.status(), 201);
    assert_eq!(second.status(), 201);
    assert_eq!(second.headers()["location"], first.headers()["location"]);
    assert_eq!(content_type(&second), "application/scim+json");
    assert_eq!(body(first).await["id"], body(second).await["id"]);
    assert_eq!(app.scim.user_count(), 1);
    assert_eq!(app.scim.harness().counted("users.created"), 1);
    assert_eq!(app.scim.harness().counted("idempotent_replays"), 1);
    app.scim.shutdown().await;
}

#[tokio::test]
async fn lists_filter_on_user_name_and_page() {
    let app = App::start().await;
    for name in ["a@example.com", "b@example.com", "c@example.com"] {
        assert_eq!(app.create_user(name).await.status(), 201);
    }
    // What Entra asks before creating: does this userName exist?
    let found = app
        .call(Method::GET, "/Users")
        .query(&[("filter", "userName eq \"B@example.com\"")])
        .send()
        .await
        .unwrap();
    assert_eq!(found.status(), 200);
    assert_eq!(content_type(&found), "application/scim+json");
    let found = body(found).await;
    assert_eq!(found["totalResults"], 1);
    assert_eq!(found["Resources"][0]["userName"], "b@example.com");

    let none = body(
        app.call(Method::GET, "/Users")
            .query(&[("filter", "userName eq \"nobody@example.com\"")])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(none["totalResults"], 0);
    assert_eq!(none["Resources"], json!([]));

    let page = body(
        app.call(Method::GET, "/Users")
            .query(&[("startIndex", "2"), ("count", "1"), ("sortBy", "userName")])
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(page["totalResults"], 3);
    assert_eq!(page["startIndex"], 2);
    assert_eq!(page["itemsPerPage"], 1);
    assert_eq!(page["Resources"][0]["userName"], "b@example.com");

    let bad = app
        .call(Method::GET, "/Users")
        .query(&[("filter", "userName eq")])
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    assert_eq!(body(bad).await["scimType"], "invalidFilter");

    let searched = body(
        app.call(Method::POST, "/Users/.search")
            .json(&json!({
                "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
                "filter": "userName sw \"c\"",
            }))
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(searched["totalResults"], 1);
    app.scim.shutdown().await;
}

#[tokio::test]
async fn an_entra_style_patch_deactivates_and_counts_one_update() {
    let app = App::start().await;
    let user = body(app.create_user("ada@example.com").await).await;
    let id = user["id"].as_str().unwrap();
    // Entra writes the operation name capitalised and booleans as strings.
    let deactivate = json!({
        "schemas": [PATCH_OP],
        "Operations": [{ "op": "Replace", "path": "active", "value": "False" }],
    });
    let patched = app
        .call(Method::PATCH, &format!("/Users/{id}"))
        .json(&deactivate)
        .send()
        .await
        .unwrap();
    assert_eq!(patched.status(), 200);
    assert_eq!(patched.headers()["etag"], "W/\"2\"");
    assert_eq!(body(patched).await["active"], false);
    assert_eq!(
        app.scim.user_by_name("ada@example.com").unwrap()["active"],
        false
    );
    assert_eq!(app.scim.harness().counted("users.updated"), 1);

    // The same PATCH again changes nothing: 200, same version, not counted.
    let again = app
        .call(Method::PATCH, &format!("/Users/{id}"))
        .json(&deactivate)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(again.headers()["etag"], "W/\"2\"");
    assert_eq!(app.scim.harness().counted("users.updated"), 1);

    // A stale If-Match is 412 and changes nothing.
    let stale = app
        .call(Method::PUT, &format!("/Users/{id}"))
        .header("if-match", "W/\"1\"")
        .json(&json!({ "schemas": [USER], "userName": "ada@example.com", "active": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 412);
    assert_eq!(app.scim.harness().counted("users.updated"), 1);
    // A PUT on the current version replaces it.
    let put = app
        .call(Method::PUT, &format!("/Users/{id}"))
        .header("if-match", "W/\"2\"")
        .json(&json!({ "schemas": [USER], "userName": "ada@example.com", "active": true }))
        .send()
        .await
        .unwrap();
    assert_eq!(put.status(), 200);
    let put = body(put).await;
    assert_eq!(put["active"], true);
    assert!(put.get("name").is_none(), "{put}");
    assert_eq!(app.scim.harness().counted("users.updated"), 2);
    app.scim.shutdown().await;
}

#[tokio::test]
async fn delete_is_204_then_the_user_is_404() {
    let app = App::start().await;
    let user = body(app.create_user("ada@example.com").await).await;
    let path = format!("/Users/{}", user["id"].as_str().unwrap());
    let deleted = app.call(Method::DELETE, &path).send().await.unwrap();
    assert_eq!(deleted.status(), 204);
    let gone = app.call(Method::GET, &path).send().await.unwrap();
    assert_eq!(gone.status(), 404);
    assert_eq!(content_type(&gone), "application/scim+json");
    let error = body(gone).await;
    assert_eq!(error["schemas"], json!([ERROR]));
    assert_eq!(error["status"], "404");
    let twice = app.call(Method::DELETE, &path).send().await.unwrap();
    assert_eq!(twice.status(), 404);
    assert_eq!(app.scim.user_count(), 0);
    assert_eq!(app.scim.harness().counted("users.deleted"), 1);
    app.scim.shutdown().await;
}

#[tokio::test]
async fn groups_take_members_and_are_counted_apart_from_users() {
    let app = App::start().await;
    let ada = app
        .scim
        .seed_user(&json!({ "schemas": [USER], "userName": "ada@example.com" }));
    let ada_id = ada.unwrap()["id"].as_str().unwrap().to_owned();
    let created = app
        .call(Method::POST, "/Groups")
        .json(&json!({ "schemas": [GROUP], "displayName": "Engineering" }))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let group = body(created).await;
    let path = format!("/Groups/{}", group["id"].as_str().unwrap());
    let added = app
        .call(Method::PATCH, &path)
        .json(&json!({
            "schemas": [PATCH_OP],
            "Operations": [{ "op": "Add", "path": "members", "value": [{ "value": ada_id }] }],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(added.status(), 200);
    assert_eq!(body(added).await["members"][0]["value"], ada_id.as_str());
    assert_eq!(app.scim.groups().len(), 1);
    assert_eq!(app.scim.group_count(), 1);
    let h = app.scim.harness();
    assert_eq!(h.counted("groups.created"), 1);
    assert_eq!(h.counted("groups.updated"), 1);
    // Seeding is not a side effect of the client.
    assert_eq!(h.counted("users.created"), 0);
    assert_eq!(
        app.call(Method::DELETE, &path)
            .send()
            .await
            .unwrap()
            .status(),
        204
    );
    assert_eq!(h.counted("groups.deleted"), 1);
    assert_eq!(app.scim.group_count(), 0);
    app.scim.shutdown().await;
}

/// A leaver taken out of a group: `remove members[value eq "…"]` answered
/// without members is applied in place; the answer, the version, the
/// group's members and the users' `groups` all agree afterwards, and a
/// stale `If-Match` or a non-member is refused as the RFC says.
#[tokio::test]
async fn removing_a_member_without_reading_the_members_back() {
    let app = App::start().await;
    let ids: Vec<String> = ["ada", "bob", "cy"]
        .iter()
        .map(|n| {
            app.scim
                .seed_user(&json!({ "schemas": [USER], "userName": format!("{n}@example.com") }))
                .unwrap()["id"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .collect();
    let members: Vec<Value> = ids.iter().map(|id| json!({ "value": id })).collect();
    let group = app
        .scim
        .seed_group(&json!({ "schemas": [GROUP], "displayName": "Staff", "members": members }))
        .unwrap();
    let path = format!(
        "/Groups/{}?excludedAttributes=members",
        group["id"].as_str().unwrap()
    );
    let remove = |who: &str| {
        json!({
            "schemas": [PATCH_OP],
            "Operations": [{ "op": "remove", "path": format!("members[value eq \"{who}\"]") }],
        })
    };
    let stale = app
        .call(Method::PATCH, &path)
        .header("if-match", "W/\"999\"")
        .json(&remove(&ids[1]))
        .send()
        .await
        .unwrap();
    assert_eq!(stale.status(), 412);

    let removed = app
        .call(Method::PATCH, &path)
        .json(&remove(&ids[1]))
        .send()
        .await
        .unwrap();
    assert_eq!(removed.status(), 200);
    let answer = body(removed).await;
    assert!(answer.get("members").is_none(), "{answer}");
    assert_eq!(answer["displayName"], "Staff");
    assert_eq!(answer["meta"]["version"], "W/\"2\"");
    assert_eq!(app.scim.harness().counted("groups.updated"), 1);

    let stored = &app.scim.groups()[0];
    let left: Vec<&str> = stored["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["value"].as_str().unwrap())
        .collect();
    assert_eq!(left, [ids[0].as_str(), ids[2].as_str()]);
    let bob = app.scim.user_by_name("bob@example.com").unwrap();
    assert!(bob.get("groups").is_none(), "{bob}");
    let ada = app.scim.user_by_name("ada@example.com").unwrap();
    assert_eq!(ada["groups"][0]["value"], group["id"]);

    // Two removals, the second of someone not a member: refused whole.
    let both = app
        .call(Method::PATCH, &path)
        .json(&json!({
            "schemas": [PATCH_OP],
            "Operations": [
                { "op": "remove", "path": format!("members[value eq \"{}\"]", ids[0]) },
                { "op": "remove", "path": format!("members[value eq \"{}\"]", ids[1]) },
            ],
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(both.status(), 400);
    assert_eq!(app.scim.groups()[0]["members"].as_array().unwrap().len(), 2);
    assert_eq!(app.scim.groups()[0]["meta"]["version"], "W/\"2\"");

    // Someone who is not (or no longer) a member: noTarget, nothing written.
    let again = app
        .call(Method::PATCH, &path)
        .json(&remove(&ids[1]))
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 400);
    assert_eq!(body(again).await["scimType"], "noTarget");
    assert_eq!(app.scim.harness().counted("groups.updated"), 1);
    app.scim.shutdown().await;
}

#[tokio::test]
async fn discovery_documents_are_served() {
    let app = App::start().await;
    let config = app
        .call(Method::GET, "/ServiceProviderConfig")
        .send()
        .await
        .unwrap();
    assert_eq!(config.status(), 200);
    assert_eq!(content_type(&config), "application/scim+json");
    let config = body(config).await;
    assert_eq!(config["patch"]["supported"], true);
    assert_eq!(config["etag"]["supported"], true);
    let types = body(
        app.call(Method::GET, "/ResourceTypes")
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert_eq!(types["totalResults"], 2);
    let user_type = app
        .call(Method::GET, "/ResourceTypes/User")
        .send()
        .await
        .unwrap();
    assert_eq!(body(user_type).await["endpoint"], "/Users");
    let schemas = body(app.call(Method::GET, "/Schemas").send().await.unwrap()).await;
    assert!(schemas["totalResults"].as_u64().unwrap() >= 3, "{schemas}");
    let user_schema = app
        .call(Method::GET, &format!("/Schemas/{USER}"))
        .send()
        .await
        .unwrap();
    assert_eq!(user_schema.status(), 200);
    assert_eq!(body(user_schema).await["id"], USER);
    let missing = app
        .call(Method::GET, "/Schemas/urn:nope")
        .send()
        .await
        .unwrap();
    assert_eq!(missing.status(), 404);
    let elsewhere = app.call(Method::GET, "/Devices").send().await.unwrap();
    assert_eq!(elsewhere.status(), 404);
    assert_eq!(body(elsewhere).await["schemas"], json!([ERROR]));
    app.scim.shutdown().await;
}

#[tokio::test]
async fn the_fault_knobs_answer_429_and_503_with_no_effect() {
    let app = App::start().await;
    app.scim.harness().rate_limit_next(1, 30);
    let limited = app.create_user("ada@example.com").await;
    assert_eq!(limited.status(), 429);
    assert_eq!(limited.headers()["retry-after"], "30");
    assert_eq!(app.scim.user_count(), 0);

    app.scim.harness().set_down(true);
    let down = app.create_user("ada@example.com").await;
    assert_eq!(down.status(), 503);
    assert_eq!(app.scim.user_count(), 0);
    app.scim.harness().set_down(false);

    assert_eq!(app.create_user("ada@example.com").await.status(), 201);
    assert_eq!(app.scim.harness().counted("users.created"), 1);
    app.scim.shutdown().await;
}
