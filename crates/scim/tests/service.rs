//! The request logic over a backend, end to end on the in-memory backend:
//! create, uniqueness conflicts, get with projection, PUT, PATCH with
//! versions and `If-Match`, DELETE, list and search.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests fail loudly"
)]

mod common;

use common::block_on;
use gatehouse_scim::backend::{MemoryBackend, Service};
use gatehouse_scim::{ListQuery, Projection, ResourceType, ScimType};
use serde_json::{Value, json};
use time::macros::datetime;

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const BASE: &str = "https://gatehouse.example/scim/v2/acme";

fn service() -> Service<MemoryBackend> {
    Service::new(
        MemoryBackend::new(|| datetime!(2026-01-02 03:04:05 UTC)),
        BASE,
        200,
    )
}

fn new_user(svc: &Service<MemoryBackend>, user_name: &str) -> Value {
    block_on(svc.create(
        ResourceType::user(),
        &json!({"schemas": [USER], "userName": user_name, "active": true}),
        &none(),
    ))
    .unwrap()
}

fn none() -> Projection {
    Projection::default()
}

fn patch_body(ops: Value) -> Value {
    json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops})
}

#[test]
fn create_renders_id_schemas_and_meta() {
    let svc = service();
    let u = block_on(svc.create(ResourceType::user(), &common::bjensen(), &none())).unwrap();
    assert!(u.get("password").is_none(), "returned: never");
    let id = u["id"].as_str().unwrap();
    assert_ne!(
        id, "2819c223-7f76-453a-919d-413861904646",
        "the client's id is ignored"
    );
    assert_eq!(u["meta"]["resourceType"], "User");
    assert_eq!(u["meta"]["version"], "W/\"1\"");
    assert_eq!(u["meta"]["created"], "2026-01-02T03:04:05Z");
    assert_eq!(u["meta"]["location"], format!("{BASE}/Users/{id}"));
    assert_eq!(
        u["schemas"],
        json!([
            USER,
            "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
        ])
    );
    let got = block_on(svc.get(ResourceType::user(), id, &Projection::default())).unwrap();
    assert!(got.get("password").is_none());
}

#[test]
fn a_taken_user_name_is_409_uniqueness_whatever_its_case() {
    let svc = service();
    new_user(&svc, "bjensen");
    let e = block_on(svc.create(
        ResourceType::user(),
        &json!({"schemas": [USER], "userName": "BJensen"}),
        &none(),
    ))
    .unwrap_err();
    assert_eq!(
        (e.status(), e.scim_type()),
        (409, Some(ScimType::Uniqueness))
    );
    // Renaming another user to it conflicts too.
    let other = new_user(&svc, "other");
    let id = other["id"].as_str().unwrap();
    let e = block_on(svc.patch(
        ResourceType::user(),
        id,
        &patch_body(json!([{"op": "replace", "path": "userName", "value": "bjensen"}])),
        None,
        &none(),
    ))
    .unwrap_err();
    assert_eq!(e.status(), 409);
    // A user keeps its own name on replace.
    block_on(svc.replace(
        ResourceType::user(),
        id,
        &json!({"schemas": [USER], "userName": "other", "title": "x"}),
        None,
        &none(),
    ))
    .unwrap();
    // A name is free again once its holder is renamed or deleted.
    block_on(svc.patch(
        ResourceType::user(),
        id,
        &patch_body(json!([{"op": "replace", "path": "userName", "value": "renamed"}])),
        None,
        &none(),
    ))
    .unwrap();
    new_user(&svc, "other");
    let e = block_on(svc.create(
        ResourceType::user(),
        &json!({"schemas": [USER], "userName": "Renamed"}),
        &none(),
    ))
    .unwrap_err();
    assert_eq!(e.status(), 409, "the new name is held");
    block_on(svc.delete(ResourceType::user(), id, None)).unwrap();
    new_user(&svc, "renamed");
}

#[test]
fn patch_answers_the_resource_with_a_new_version() {
    let svc = service();
    let u = new_user(&svc, "bjensen");
    let id = u["id"].as_str().unwrap();
    let p = block_on(svc.patch(
        ResourceType::user(),
        id,
        &patch_body(json!([{"op": "Replace", "path": "active", "value": "False"}])),
        Some("W/\"1\""),
        &none(),
    ))
    .unwrap();
    assert_eq!(p["active"], false);
    assert_eq!(p["meta"]["version"], "W/\"2\"");
    // A PATCH that changes nothing keeps the version.
    let same = block_on(svc.patch(
        ResourceType::user(),
        id,
        &patch_body(json!([{"op": "replace", "path": "active", "value": false}])),
        None,
        &none(),
    ))
    .unwrap();
    assert_eq!(same["meta"]["version"], "W/\"2\"");
}

#[test]
fn a_stale_if_match_is_412() {
    let svc = service();
    let u = new_user(&svc, "bjensen");
    let id = u["id"].as_str().unwrap();
    let body = json!({"schemas": [USER], "userName": "bjensen", "title": "t"});
    block_on(svc.replace(ResourceType::user(), id, &body, Some("W/\"1\""), &none())).unwrap();
    let e = block_on(svc.replace(ResourceType::user(), id, &body, Some("W/\"1\""), &none()))
        .unwrap_err();
    assert_eq!(e.status(), 412);
    let e = block_on(svc.delete(ResourceType::user(), id, Some("W/\"1\""))).unwrap_err();
    assert_eq!(e.status(), 412);
    block_on(svc.delete(ResourceType::user(), id, Some("*"))).unwrap();
}

#[test]
fn missing_resources_are_404() {
    let svc = service();
    for e in [
        block_on(svc.get(ResourceType::user(), "nope", &Projection::default())).unwrap_err(),
        block_on(svc.delete(ResourceType::user(), "nope", None)).unwrap_err(),
        block_on(svc.replace(
            ResourceType::user(),
            "nope",
            &json!({"schemas": [USER], "userName": "x"}),
            None,
            &none(),
        ))
        .unwrap_err(),
        block_on(svc.patch(
            ResourceType::user(),
            "nope",
            &patch_body(json!([{"op": "remove", "path": "title"}])),
            None,
            &none(),
        ))
        .unwrap_err(),
    ] {
        assert_eq!(e.status(), 404);
    }
    // A user id is not a group id.
    let u = new_user(&svc, "a");
    let e = block_on(svc.get(
        ResourceType::group(),
        u["id"].as_str().unwrap(),
        &Projection::default(),
    ))
    .unwrap_err();
    assert_eq!(e.status(), 404);
}

#[test]
fn delete_then_get_is_404() {
    let svc = service();
    let u = new_user(&svc, "a");
    let id = u["id"].as_str().unwrap();
    block_on(svc.delete(ResourceType::user(), id, None)).unwrap();
    assert_eq!(
        block_on(svc.get(ResourceType::user(), id, &Projection::default()))
            .unwrap_err()
            .status(),
        404
    );
}

#[test]
fn list_filters_on_rendered_resources() {
    let svc = service();
    for n in ["carol", "alice", "bob"] {
        new_user(&svc, n);
    }
    let q = ListQuery::from_query_pairs([
        ("filter", "userName ne \"bob\""),
        ("sortBy", "userName"),
        ("attributes", "userName"),
    ])
    .unwrap();
    let page = block_on(svc.list(ResourceType::user(), &q)).unwrap();
    assert_eq!(page.total_results, 2);
    let names: Vec<&str> = page
        .resources
        .iter()
        .map(|r| r["userName"].as_str().unwrap())
        .collect();
    assert_eq!(names, vec!["alice", "carol"]);
    assert!(page.resources[0].get("meta").is_none());
    // meta is filterable, as the store renders before filtering.
    let q = ListQuery::from_query_pairs([("filter", "meta.resourceType eq \"User\"")]).unwrap();
    assert_eq!(
        block_on(svc.list(ResourceType::user(), &q))
            .unwrap()
            .total_results,
        3
    );
    let q = ListQuery::from_search_request(&json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
        "filter": "userName sw \"A\"",
    }))
    .unwrap();
    assert_eq!(
        block_on(svc.list(ResourceType::user(), &q))
            .unwrap()
            .total_results,
        1
    );
}

#[test]
fn groups_end_to_end() {
    let svc = service();
    let u = new_user(&svc, "a");
    let uid = u["id"].as_str().unwrap();
    let g = block_on(svc.create(
        ResourceType::group(),
        &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Ops", "members": [{"value": uid}]}),
        &none(),
    ))
    .unwrap();
    assert_eq!(
        g["meta"]["location"],
        format!("{BASE}/Groups/{}", g["id"].as_str().unwrap())
    );
    let g = block_on(svc.patch(
        ResourceType::group(),
        g["id"].as_str().unwrap(),
        &patch_body(json!([{"op": "remove", "path": format!("members[value eq \"{uid}\"]")}])),
        None,
        &none(),
    ))
    .unwrap();
    assert!(g.get("members").is_none());
}

#[test]
fn a_service_over_a_borrowed_backend_shares_its_data() {
    let backend = MemoryBackend::new(|| datetime!(2026-01-02 03:04:05 UTC));
    let created = {
        let svc = Service::new(&backend, BASE, 200);
        block_on(svc.create(
            ResourceType::user(),
            &json!({"schemas": [USER], "userName": "a"}),
            &none(),
        ))
        .unwrap()
    };
    let svc = Service::new(&backend, BASE, 200);
    let got = block_on(svc.get(
        ResourceType::user(),
        created["id"].as_str().unwrap(),
        &none(),
    ))
    .unwrap();
    assert_eq!(got["userName"], "a");
}

/// A backend whose first `replace` loses a race: another writer changes the
/// resource just before it, as two clients PATCHing one group at once do.
struct Racing {
    inner: MemoryBackend,
    raced: std::sync::atomic::AtomicBool,
}

impl gatehouse_scim::backend::ScimBackend for Racing {
    fn create(
        &self,
        rt: &ResourceType,
        attributes: Value,
        unique: Vec<gatehouse_scim::UniqueKey>,
    ) -> impl Future<Output = Result<gatehouse_scim::backend::Stored, gatehouse_scim::ScimError>> + Send
    {
        self.inner.create(rt, attributes, unique)
    }

    fn get(
        &self,
        rt: &ResourceType,
        id: &str,
    ) -> impl Future<
        Output = Result<Option<gatehouse_scim::backend::Stored>, gatehouse_scim::ScimError>,
    > + Send {
        self.inner.get(rt, id)
    }

    fn replace(
        &self,
        rt: &ResourceType,
        id: &str,
        expected_version: u64,
        attributes: Value,
        unique: Vec<gatehouse_scim::UniqueKey>,
    ) -> impl Future<Output = Result<gatehouse_scim::backend::Stored, gatehouse_scim::ScimError>> + Send
    {
        if !self.raced.swap(true, std::sync::atomic::Ordering::SeqCst) {
            // The other writer: adds member "m-other" first.
            let current = block_on(self.inner.get(rt, id)).unwrap().unwrap();
            let mut theirs = current.attributes.clone();
            let mut members = theirs["members"].as_array().cloned().unwrap_or_default();
            members.push(json!({"value": "m-other"}));
            theirs["members"] = Value::Array(members);
            block_on(
                self.inner
                    .replace(rt, id, current.version, theirs, Vec::new()),
            )
            .unwrap();
        }
        self.inner
            .replace(rt, id, expected_version, attributes, unique)
    }

    fn delete(
        &self,
        rt: &ResourceType,
        id: &str,
    ) -> impl Future<Output = Result<bool, gatehouse_scim::ScimError>> + Send {
        self.inner.delete(rt, id)
    }

    fn candidates(
        &self,
        rt: &ResourceType,
        filter: Option<&gatehouse_scim::Filter>,
    ) -> impl Future<
        Output = Result<Vec<gatehouse_scim::backend::Stored>, gatehouse_scim::ScimError>,
    > + Send {
        self.inner.candidates(rt, filter)
    }
}

#[test]
fn a_patch_without_if_match_that_loses_a_race_applies_to_the_newer_version() {
    let racing = |raced| {
        Service::new(
            Racing {
                inner: MemoryBackend::new(|| datetime!(2026-01-02 03:04:05 UTC)),
                raced: std::sync::atomic::AtomicBool::new(raced),
            },
            BASE,
            200,
        )
    };
    let add_mine = json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [{"op": "add", "path": "members", "value": [{"value": "m-mine"}]}]
    });
    let group = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "Staff", "members": []});

    // Without If-Match: both additions stand.
    let svc = racing(true);
    let created = block_on(svc.create(ResourceType::group(), &group, &none())).unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    svc.backend()
        .raced
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let patched =
        block_on(svc.patch(ResourceType::group(), &id, &add_mine, None, &none())).unwrap();
    let members: Vec<&str> = patched["members"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["value"].as_str().unwrap())
        .collect();
    assert_eq!(members, ["m-other", "m-mine"], "{patched}");

    // With If-Match naming the version read: the lost race is the answer.
    let svc = racing(true);
    let created = block_on(svc.create(ResourceType::group(), &group, &none())).unwrap();
    let id = created["id"].as_str().unwrap().to_owned();
    let etag = created["meta"]["version"].as_str().unwrap().to_owned();
    svc.backend()
        .raced
        .store(false, std::sync::atomic::Ordering::SeqCst);
    let err = block_on(svc.patch(ResourceType::group(), &id, &add_mine, Some(&etag), &none()))
        .unwrap_err();
    assert_eq!(err.status(), 412);
}
