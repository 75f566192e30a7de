//! Projection (`attributes`, `excludedAttributes`), sorting, paging, list
//! and search requests, ETags, `meta` and the error body.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests fail loudly"
)]

mod common;

use gatehouse_scim::list::{list_resources, sort_resources};
use gatehouse_scim::meta::{Meta, etag_list_matches, etag_version, render, weak_etag};
use gatehouse_scim::{
    AttrPath, ListQuery, Page, Projection, ResourceType, ScimError, ScimType, SortOrder,
};
use serde_json::{Value, json};
use time::macros::datetime;

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

fn project(attributes: Option<&str>, excluded: Option<&str>) -> Value {
    Projection::parse(attributes, excluded)
        .unwrap()
        .apply(ResourceType::user(), &common::bjensen())
}

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().unwrap().keys().cloned().collect();
    k.sort();
    k
}

#[test]
fn by_default_never_attributes_are_dropped() {
    let p = project(None, None);
    assert!(p.get("password").is_none());
    assert_eq!(p["userName"], "bjensen@example.com");
    assert!(p.get(ENTERPRISE).is_some());
}

#[test]
fn attributes_returns_those_and_the_always_ones() {
    let p = project(Some("userName,name.givenName"), None);
    assert_eq!(keys(&p), vec!["id", "name", "schemas", "userName"]);
    assert_eq!(p["name"], json!({"givenName": "Barbara"}));
    // Names are case-insensitive and may carry the schema URN.
    let p = project(
        Some("urn:ietf:params:scim:schemas:core:2.0:User:USERNAME"),
        None,
    );
    assert_eq!(keys(&p), vec!["id", "schemas", "userName"]);
    // Asking for the password still does not return it.
    let p = project(Some("password"), None);
    assert!(p.get("password").is_none());
}

#[test]
fn attributes_may_name_extension_attributes_or_the_whole_extension() {
    let p = project(Some(&format!("{ENTERPRISE}:department")), None);
    assert_eq!(p[ENTERPRISE], json!({"department": "Tour Operations"}));
    let p = project(Some(ENTERPRISE), None);
    assert_eq!(p[ENTERPRISE]["employeeNumber"], "701984");
    assert!(p.get("userName").is_none());
}

#[test]
fn excluded_attributes_drop_those_but_never_the_always_ones() {
    let p = project(None, Some("emails,name.familyName,id,schemas"));
    assert!(p.get("emails").is_none());
    assert!(p["name"].get("familyName").is_none());
    assert_eq!(p["name"]["givenName"], "Barbara");
    assert!(p.get("id").is_some());
    assert!(p.get("schemas").is_some());
    assert!(p.get("userName").is_some());
}

#[test]
fn multi_valued_sub_attributes_are_projected_in_every_value() {
    let p = project(Some("emails.value"), None);
    assert_eq!(
        p["emails"],
        json!([{"value": "bjensen@example.com"}, {"value": "babs@jensen.org"}])
    );
}

#[test]
fn a_bad_attribute_list_is_invalid_value() {
    let e = Projection::parse(Some("user name"), None).unwrap_err();
    assert_eq!(e.scim_type(), Some(ScimType::InvalidValue));
}

fn users() -> Vec<Value> {
    vec![
        json!({"id": "1", "userName": "carol", "name": {"familyName": "Zeta"}, "emails": [{"value": "c@x", "primary": false}, {"value": "a@x", "primary": true}], "meta": {"created": "2020-01-01T00:00:00Z"}}),
        json!({"id": "2", "userName": "Alice", "emails": [{"value": "b@x"}], "meta": {"created": "2019-06-01T00:00:00+02:00"}}),
        json!({"id": "3", "userName": "bob", "name": {"familyName": "alpha"}, "meta": {"created": "2019-06-01T00:00:00Z"}}),
    ]
}

fn ids(v: &[Value]) -> Vec<&str> {
    v.iter().map(|u| u["id"].as_str().unwrap()).collect()
}

#[test]
fn sorting_is_case_insensitive_for_case_insensitive_attributes() {
    let mut u = users();
    sort_resources(
        ResourceType::user(),
        &mut u,
        &AttrPath::new("userName"),
        SortOrder::Ascending,
    );
    assert_eq!(ids(&u), vec!["2", "3", "1"]);
    sort_resources(
        ResourceType::user(),
        &mut u,
        &AttrPath::new("userName"),
        SortOrder::Descending,
    );
    assert_eq!(ids(&u), vec!["1", "3", "2"]);
}

#[test]
fn missing_values_sort_last_ascending_and_first_descending() {
    let mut u = users();
    let by = AttrPath::new("name").with_sub("familyName");
    sort_resources(ResourceType::user(), &mut u, &by, SortOrder::Ascending);
    assert_eq!(ids(&u), vec!["3", "1", "2"]);
    sort_resources(ResourceType::user(), &mut u, &by, SortOrder::Descending);
    assert_eq!(ids(&u), vec!["2", "1", "3"]);
}

#[test]
fn multi_valued_attributes_sort_by_their_primary_value() {
    let mut u = users();
    sort_resources(
        ResourceType::user(),
        &mut u,
        &AttrPath::new("emails"),
        SortOrder::Ascending,
    );
    // carol's primary is a@x; Alice has b@x only; bob has none.
    assert_eq!(ids(&u), vec!["1", "2", "3"]);
}

#[test]
fn datetimes_sort_chronologically() {
    let mut u = users();
    sort_resources(
        ResourceType::user(),
        &mut u,
        &AttrPath::new("meta").with_sub("created"),
        SortOrder::Ascending,
    );
    // 2019-06-01T00:00+02:00 is before 2019-06-01T00:00Z.
    assert_eq!(ids(&u), vec!["2", "3", "1"]);
}

#[test]
fn paging_is_one_based_and_normalised() {
    let all: Vec<Value> = (1..=10).map(|i| json!({"id": i.to_string()})).collect();
    let page = Page::new(Some(3), Some(4), 200).apply(all.clone());
    assert_eq!(page.total_results, 10);
    assert_eq!(page.start_index, 3);
    assert_eq!(ids(&page.resources), vec!["3", "4", "5", "6"]);
    // startIndex below 1 is 1; a negative count is 0.
    assert_eq!(
        Page::new(Some(-5), Some(-1), 200),
        Page {
            start_index: 1,
            count: 0
        }
    );
    let page = Page::new(None, Some(0), 200).apply(all.clone());
    assert_eq!((page.total_results, page.resources.len()), (10, 0));
    // count is capped by maxResults; past the end is an empty page.
    assert_eq!(Page::new(None, Some(5000), 200).count, 200);
    let page = Page::new(Some(11), None, 200).apply(all);
    assert!(page.resources.is_empty());
    let body = page.to_json();
    assert_eq!(
        body["schemas"],
        json!(["urn:ietf:params:scim:api:messages:2.0:ListResponse"])
    );
    assert_eq!(body["totalResults"], 10);
    assert_eq!(body["itemsPerPage"], 0);
    assert_eq!(body["startIndex"], 11);
    assert_eq!(body["Resources"], json!([]));
}

#[test]
fn query_parameters_parse_case_insensitively() {
    let q = ListQuery::from_query_pairs([
        ("filter", r#"userName sw "b""#),
        ("SortBy", "userName"),
        ("sortOrder", "Descending"),
        ("startIndex", "2"),
        ("count", "10"),
        ("attributes", "userName"),
        ("unrelated", "x"),
    ])
    .unwrap();
    assert!(q.filter.is_some());
    assert_eq!(q.sort_by, Some(AttrPath::new("userName")));
    assert_eq!(q.sort_order, SortOrder::Descending);
    assert_eq!(
        q.page(200),
        Page {
            start_index: 2,
            count: 10
        }
    );
    assert_eq!(q.projection.attributes(), &[AttrPath::new("userName")]);
}

#[test]
fn bad_query_parameters() {
    let t = |pairs: &[(&str, &str)]| {
        ListQuery::from_query_pairs(pairs.iter().copied())
            .unwrap_err()
            .scim_type()
    };
    assert_eq!(
        t(&[("filter", "userName eq")]),
        Some(ScimType::InvalidFilter)
    );
    assert_eq!(t(&[("count", "ten")]), Some(ScimType::InvalidValue));
    assert_eq!(t(&[("sortOrder", "up")]), Some(ScimType::InvalidValue));
    assert_eq!(t(&[("sortBy", "a b")]), Some(ScimType::InvalidValue));
}

#[test]
fn search_requests_as_in_rfc_7644_3_4_3() {
    let q = ListQuery::from_search_request(&json!({
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
        "attributes": ["displayName", "userName"],
        "filter": "displayName sw \"smith\"",
        "startIndex": 1,
        "count": 10
    }))
    .unwrap();
    assert_eq!(q.projection.attributes().len(), 2);
    assert_eq!(
        q.page(200),
        Page {
            start_index: 1,
            count: 10
        }
    );
    let e = ListQuery::from_search_request(&json!({"filter": "x pr"})).unwrap_err();
    assert_eq!(e.scim_type(), Some(ScimType::InvalidSyntax));
}

#[test]
fn list_resources_filters_sorts_pages_and_projects() {
    let q = ListQuery::from_query_pairs([
        ("filter", "userName pr"),
        ("sortBy", "userName"),
        ("startIndex", "2"),
        ("count", "1"),
        ("attributes", "userName"),
    ])
    .unwrap();
    let page = list_resources(ResourceType::user(), users(), &q, 200).unwrap();
    assert_eq!(page.total_results, 3);
    assert_eq!(page.resources, vec![json!({"id": "3", "userName": "bob"})]);
}

#[test]
fn etags_are_weak_and_compared_weakly() {
    assert_eq!(weak_etag(3), "W/\"3\"");
    assert_eq!(etag_version("W/\"3\""), Some(3));
    assert_eq!(etag_version("\"3\""), Some(3));
    assert_eq!(etag_version("W/3"), None);
    assert!(etag_list_matches("W/\"3\"", 3));
    assert!(etag_list_matches("\"1\", W/\"3\"", 3));
    assert!(etag_list_matches("*", 9));
    assert!(!etag_list_matches("W/\"2\"", 3));
}

#[test]
fn render_sets_schemas_id_and_meta() {
    let meta = Meta {
        resource_type: "User".into(),
        created: datetime!(2010-01-23 04:56:22 UTC),
        last_modified: datetime!(2011-05-13 04:42:34 UTC),
        location: "https://example.com/v2/Users/2819c223".into(),
        version: 4,
    };
    let attrs = json!({"userName": "b", ENTERPRISE: {"department": "x"}, "id": "spoofed"});
    let r = render(ResourceType::user(), "2819c223", &attrs, &meta);
    assert_eq!(r["id"], "2819c223");
    assert_eq!(
        r["schemas"],
        json!(["urn:ietf:params:scim:schemas:core:2.0:User", ENTERPRISE])
    );
    assert_eq!(
        r["meta"],
        json!({
            "resourceType": "User",
            "created": "2010-01-23T04:56:22Z",
            "lastModified": "2011-05-13T04:42:34Z",
            "location": "https://example.com/v2/Users/2819c223",
            "version": "W/\"4\""
        })
    );
}

#[test]
fn the_error_body() {
    let e = ScimError::uniqueness("userName \"bjensen\" is already in use");
    assert_eq!(e.status(), 409);
    assert_eq!(
        e.to_json(),
        json!({
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:Error"],
            "status": "409",
            "scimType": "uniqueness",
            "detail": "userName \"bjensen\" is already in use"
        })
    );
    let e = ScimError::not_found("User 1 not found");
    assert!(e.to_json().get("scimType").is_none());
    assert_eq!(e.to_json()["status"], "404");
}

#[test]
fn request_attributes_are_returned_only_when_asked_for() {
    let mut rt = ResourceType::user().clone();
    for a in &mut rt.schema.attributes {
        if a.name == "nickName" {
            a.returned = gatehouse_scim::schema::Returned::Request;
        }
    }
    let user = common::bjensen();
    let default = Projection::default().apply(&rt, &user);
    assert!(default.get("nickName").is_none());
    let excluded_other = Projection::parse(None, Some("title"))
        .unwrap()
        .apply(&rt, &user);
    assert!(excluded_other.get("nickName").is_none());
    let asked = Projection::parse(Some("nickName"), None)
        .unwrap()
        .apply(&rt, &user);
    assert_eq!(asked["nickName"], "Babs");
}
