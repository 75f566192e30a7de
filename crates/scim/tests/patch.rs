//! PATCH (RFC 7644 §3.5.2): the RFC's examples, the error codes, and what
//! Microsoft Entra ID sends.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests fail loudly"
)]

mod common;

use gatehouse_scim::patch::apply_patch;
use gatehouse_scim::{PatchRequest, ResourceType, ScimError, ScimType};
use serde_json::{Value, json};

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const BABS: &str = "2819c223-7f76-453a-919d-413861904646";
const JAMES: &str = "08e1d05d-121c-4561-8b96-473d93df9210";

fn patch(rt: &ResourceType, current: &Value, ops: Value) -> Result<Value, ScimError> {
    let body =
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops});
    let request = PatchRequest::from_json(&body)?;
    apply_patch(rt, current, &request)
}

fn user(ops: Value) -> Result<Value, ScimError> {
    patch(ResourceType::user(), &common::bjensen(), ops)
}

fn group() -> Value {
    json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "id": "e9e30dba-f08f-4109-8486-d5c6a331660a",
        "displayName": "Tour Guides",
        "members": [
            {"value": BABS, "$ref": format!("https://example.com/v2/Users/{BABS}"), "type": "User"},
            {"value": "902c246b-6245-4190-8e05-00816be7344a", "type": "User"}
        ]
    })
}

fn group_patch(ops: Value) -> Result<Value, ScimError> {
    patch(ResourceType::group(), &group(), ops)
}

fn err_type(r: Result<Value, ScimError>) -> Option<ScimType> {
    r.expect_err("should fail").scim_type()
}

fn member_ids(g: &Value) -> Vec<&str> {
    g["members"]
        .as_array()
        .map(|m| m.iter().filter_map(|v| v["value"].as_str()).collect())
        .unwrap_or_default()
}

// --- RFC 7644 §3.5.2.1 add ---

#[test]
fn add_a_member() {
    let g = group_patch(json!([{
        "op": "add", "path": "members",
        "value": [{"display": "James Smith", "$ref": format!("https://example.com/v2/Users/{JAMES}"), "value": JAMES}]
    }]))
    .unwrap();
    assert_eq!(
        member_ids(&g),
        vec![BABS, "902c246b-6245-4190-8e05-00816be7344a", JAMES]
    );
    // display is readOnly in the member value and is dropped.
    assert!(g["members"][2].get("display").is_none());
}

#[test]
fn adding_an_existing_member_does_not_duplicate_it() {
    let g =
        group_patch(json!([{"op": "add", "path": "members", "value": [{"value": BABS}]}])).unwrap();
    assert_eq!(member_ids(&g).len(), 2);
}

#[test]
fn add_without_a_path_merges_attributes() {
    let u = user(json!([{"op": "add", "value": {
        "emails": [{"value": "babs@jensen.org", "type": "home"}, {"value": "b@example.net", "type": "other"}],
        "nickname": "Babsy"
    }}]))
    .unwrap();
    assert_eq!(
        u["emails"].as_array().unwrap().len(),
        3,
        "existing values are kept, the same value once"
    );
    assert_eq!(
        u["nickName"], "Babsy",
        "a single value is replaced, names are case-insensitive"
    );
}

#[test]
fn add_to_a_single_valued_attribute_replaces_it() {
    let u = user(json!([{"op": "add", "path": "title", "value": "Chief Guide"}])).unwrap();
    assert_eq!(u["title"], "Chief Guide");
}

#[test]
fn add_a_primary_value_clears_the_other_primary() {
    let u = user(json!([{"op": "add", "path": "emails", "value": [{"value": "new@example.com", "type": "work", "primary": true}]}]))
        .unwrap();
    let primaries: Vec<&str> = u["emails"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|e| e["primary"] == true)
        .map(|e| e["value"].as_str().unwrap())
        .collect();
    assert_eq!(primaries, vec!["new@example.com"]);
}

#[test]
fn add_a_sub_attribute_to_a_complex_attribute() {
    let u = user(json!([{"op": "add", "path": "name.nickName", "value": "x"}]));
    // nickName is not a sub-attribute of name.
    assert_eq!(err_type(u), Some(ScimType::InvalidPath));
    let u = user(json!([{"op": "add", "path": "name.middleName", "value": "J"}])).unwrap();
    assert_eq!(u["name"]["middleName"], "J");
    assert_eq!(u["name"]["givenName"], "Barbara");
}

// --- RFC 7644 §3.5.2.2 remove ---

#[test]
fn remove_one_member_by_filter() {
    let g = group_patch(json!([{"op": "remove", "path": format!("members[value eq \"{BABS}\"]")}]))
        .unwrap();
    assert_eq!(member_ids(&g), vec!["902c246b-6245-4190-8e05-00816be7344a"]);
}

#[test]
fn remove_all_members() {
    let g = group_patch(json!([{"op": "remove", "path": "members"}])).unwrap();
    assert!(g.get("members").is_none());
}

#[test]
fn remove_values_matching_a_complex_filter() {
    let u = user(
        json!([{"op": "remove", "path": "emails[type eq \"work\" and value ew \"example.com\"]"}]),
    )
    .unwrap();
    assert_eq!(
        u["emails"],
        json!([{"value": "babs@jensen.org", "type": "home"}])
    );
}

#[test]
fn remove_then_add_in_one_request_as_in_the_rfc() {
    // The RFC writes `value eq\"…\"` without a space.
    let g = group_patch(json!([
        {"op": "remove", "path": format!("members[value eq\"{BABS}\"]")},
        {"op": "add", "path": "members", "value": [{"value": JAMES}]}
    ]))
    .unwrap();
    assert_eq!(
        member_ids(&g),
        vec!["902c246b-6245-4190-8e05-00816be7344a", JAMES]
    );
}

#[test]
fn remove_a_single_attribute_and_a_sub_attribute() {
    let u = user(json!([
        {"op": "remove", "path": "title"},
        {"op": "remove", "path": "name.middleName"},
        {"op": "remove", "path": "emails[type eq \"work\"].primary"}
    ]))
    .unwrap();
    assert!(u.get("title").is_none());
    assert!(u["name"].get("middleName").is_none());
    assert!(u["emails"][0].get("primary").is_none());
}

#[test]
fn remove_without_a_path_is_no_target() {
    assert_eq!(
        err_type(user(json!([{"op": "remove"}]))),
        Some(ScimType::NoTarget)
    );
}

#[test]
fn a_filter_that_matches_nothing_is_no_target() {
    assert_eq!(
        err_type(group_patch(
            json!([{"op": "remove", "path": "members[value eq \"nobody\"]"}])
        )),
        Some(ScimType::NoTarget)
    );
    assert_eq!(
        err_type(user(
            json!([{"op": "replace", "path": "emails[type eq \"other\"].value", "value": "x@y"}])
        )),
        Some(ScimType::NoTarget)
    );
}

#[test]
fn removing_a_required_attribute_is_invalid_value() {
    assert_eq!(
        err_type(user(json!([{"op": "remove", "path": "userName"}]))),
        Some(ScimType::InvalidValue)
    );
}

// --- RFC 7644 §3.5.2.3 replace ---

#[test]
fn replace_all_members() {
    let g = group_patch(json!([{"op": "replace", "path": "members", "value": [
        {"display": "Babs Jensen", "value": BABS},
        {"display": "James Smith", "value": JAMES}
    ]}]))
    .unwrap();
    assert_eq!(member_ids(&g), vec![BABS, JAMES]);
}

#[test]
fn replace_a_value_selected_by_filter() {
    let u = user(
        json!([{"op": "replace", "path": "addresses[type eq \"work\"]", "value": {
            "type": "work",
            "streetAddress": "911 Universal City Plaza",
            "locality": "Hollywood",
            "region": "CA",
            "postalCode": "91608",
            "country": "US",
            "formatted": "911 Universal City Plaza\nHollywood, CA 91608 US",
            "primary": true
        }}]),
    )
    .unwrap();
    assert_eq!(u["addresses"].as_array().unwrap().len(), 1);
    assert_eq!(
        u["addresses"][0]["streetAddress"],
        "911 Universal City Plaza"
    );
    assert_eq!(u["addresses"][0]["country"], "US");
}

#[test]
fn replace_a_sub_attribute_of_a_filtered_value() {
    let u = user(json!([{"op": "replace", "path": "addresses[type eq \"work\"].streetAddress", "value": "1010 Broadway Ave"}]))
        .unwrap();
    assert_eq!(u["addresses"][0]["streetAddress"], "1010 Broadway Ave");
    assert_eq!(u["addresses"][0]["locality"], "Hollywood");
}

#[test]
fn replace_without_a_path() {
    let u = user(json!([{"op": "replace", "value": {
        "emails": [{"value": "bjensen@example.com", "type": "work", "primary": true}],
        "nickname": "Babs"
    }}]))
    .unwrap();
    assert_eq!(
        u["emails"],
        json!([{"value": "bjensen@example.com", "type": "work", "primary": true}])
    );
    assert_eq!(u["nickName"], "Babs");
    // Untouched attributes stay.
    assert_eq!(u["title"], "Tour Guide");
}

#[test]
fn replace_a_complex_attribute_keeps_unspecified_sub_attributes() {
    let u =
        user(json!([{"op": "replace", "path": "name", "value": {"givenName": "Babs"}}])).unwrap();
    assert_eq!(u["name"]["givenName"], "Babs");
    assert_eq!(u["name"]["familyName"], "Jensen");
}

// --- mutability, paths, values ---

#[test]
fn read_only_attributes_cannot_be_patched() {
    for path in [
        "id",
        "meta.created",
        "groups",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.displayName",
    ] {
        let r = user(json!([{"op": "replace", "path": path, "value": "x"}]));
        assert_eq!(err_type(r), Some(ScimType::Mutability), "{path}");
    }
}

#[test]
fn immutable_member_values_cannot_be_overwritten_through_a_sub_attribute_path() {
    for op in ["add", "replace", "remove"] {
        let r = group_patch(json!([{"op": op, "path": "members.value", "value": JAMES}]));
        assert_eq!(err_type(r), Some(ScimType::Mutability), "{op}");
    }
}

#[test]
fn immutable_member_values_cannot_be_changed() {
    let r = group_patch(
        json!([{"op": "replace", "path": format!("members[value eq \"{BABS}\"].value"), "value": JAMES}]),
    );
    assert_eq!(err_type(r), Some(ScimType::Mutability));
}

#[test]
fn unknown_and_malformed_paths_are_invalid_path() {
    for path in [
        "shoeSize",
        "name.shoe",
        "emails[type eq",
        "title[type eq \"x\"]",
    ] {
        let r = user(json!([{"op": "replace", "path": path, "value": "x"}]));
        assert_eq!(err_type(r), Some(ScimType::InvalidPath), "{path}");
    }
}

#[test]
fn wrong_value_types_are_invalid_value() {
    assert_eq!(
        err_type(user(
            json!([{"op": "replace", "path": "active", "value": "maybe"}])
        )),
        Some(ScimType::InvalidValue)
    );
    assert_eq!(
        err_type(user(
            json!([{"op": "replace", "path": "userName", "value": 5}])
        )),
        Some(ScimType::InvalidValue)
    );
    assert_eq!(
        err_type(user(json!([{"op": "add", "path": "title"}]))),
        Some(ScimType::InvalidValue)
    );
    assert_eq!(
        err_type(user(json!([{"op": "replace", "value": "not an object"}]))),
        Some(ScimType::InvalidValue)
    );
}

#[test]
fn malformed_bodies_are_invalid_syntax() {
    for body in [
        json!({"Operations": [{"op": "add", "path": "title", "value": "x"}]}),
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"]}),
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": []}),
        json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": [{"op": "move", "path": "title"}]}),
        json!("nope"),
    ] {
        assert_eq!(
            PatchRequest::from_json(&body).unwrap_err().scim_type(),
            Some(ScimType::InvalidSyntax),
            "{body}"
        );
    }
}

#[test]
fn a_failing_operation_fails_the_whole_request() {
    let r = user(json!([
        {"op": "replace", "path": "title", "value": "Boss"},
        {"op": "replace", "path": "id", "value": "x"}
    ]));
    assert_eq!(err_type(r), Some(ScimType::Mutability));
}

#[test]
fn the_result_has_no_server_attributes() {
    let u = user(json!([{"op": "replace", "path": "title", "value": "Boss"}])).unwrap();
    for gone in ["id", "meta", "schemas", "groups"] {
        assert!(u.get(gone).is_none(), "{gone}");
    }
    assert_eq!(u[ENTERPRISE]["department"], "Tour Operations");
}

// --- Microsoft Entra ID ---

#[test]
fn entra_capitalised_ops_and_filtered_value_paths() {
    let u = user(json!([
        {"op": "Replace", "path": "emails[type eq \"work\"].value", "value": "updatedEmail@microsoft.com"},
        {"op": "Replace", "path": "name.familyName", "value": "updatedFamilyName"}
    ]))
    .unwrap();
    assert_eq!(u["emails"][0]["value"], "updatedEmail@microsoft.com");
    assert_eq!(u["name"]["familyName"], "updatedFamilyName");
}

#[test]
fn entra_boolean_strings() {
    let u = user(json!([{"op": "Replace", "path": "active", "value": "False"}])).unwrap();
    assert_eq!(u["active"], false);
    let u = user(json!([{"op": "replace", "value": {"active": "True"}}])).unwrap();
    assert_eq!(u["active"], true);
}

#[test]
fn entra_no_path_value_with_dotted_and_qualified_keys() {
    let u = user(json!([{"op": "replace", "value": {
        "name.givenName": "Barb",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department": "Sales",
        "active": false
    }}]))
    .unwrap();
    assert_eq!(u["name"]["givenName"], "Barb");
    assert_eq!(u[ENTERPRISE]["department"], "Sales");
    assert_eq!(u["active"], false);
}

#[test]
fn entra_manager_as_a_bare_id() {
    let u = user(json!([{"op": "Add", "path": "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager", "value": "m-1"}]))
        .unwrap();
    assert_eq!(u[ENTERPRISE]["manager"]["value"], "m-1");
}

#[test]
fn entra_extension_as_a_whole() {
    let u = user(json!([{"op": "add", "path": ENTERPRISE, "value": {"employeeNumber": "42"}}]))
        .unwrap();
    assert_eq!(u[ENTERPRISE]["employeeNumber"], "42");
    assert_eq!(u[ENTERPRISE]["costCenter"], "4130");
    let u = user(json!([{"op": "remove", "path": ENTERPRISE}])).unwrap();
    assert!(u.get(ENTERPRISE).is_none());
}

#[test]
fn entra_members_add_and_remove_with_value_lists() {
    let g = group_patch(json!([{"op": "Add", "path": "members", "value": [{"value": JAMES}]}]))
        .unwrap();
    assert!(member_ids(&g).contains(&JAMES));
    let g = group_patch(json!([{"op": "Remove", "path": "members", "value": [{"value": BABS}]}]))
        .unwrap();
    assert_eq!(member_ids(&g), vec!["902c246b-6245-4190-8e05-00816be7344a"]);
}

#[test]
fn entra_add_to_a_filtered_value_that_does_not_exist_creates_it() {
    let current =
        json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "a"});
    let u = patch(
        ResourceType::user(),
        &current,
        json!([{"op": "Add", "path": "emails[type eq \"work\"].value", "value": "a@example.com"}]),
    )
    .unwrap();
    assert_eq!(
        u["emails"],
        json!([{"type": "work", "value": "a@example.com"}])
    );
    // A filter that is not a plain equality cannot describe the new value.
    let r = patch(
        ResourceType::user(),
        &current,
        json!([{"op": "Add", "path": "emails[type co \"wor\"].value", "value": "a@example.com"}]),
    );
    assert_eq!(err_type(r), Some(ScimType::NoTarget));
}

#[test]
fn entra_display_name_replace_on_a_group() {
    let g =
        group_patch(json!([{"op": "Replace", "path": "displayName", "value": "Guides"}])).unwrap();
    assert_eq!(g["displayName"], "Guides");
}
