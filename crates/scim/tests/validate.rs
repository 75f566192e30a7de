//! Create and replace bodies checked against the schemas (RFC 7643 §2,
//! RFC 7644 §3.3 and §3.5.1), and the uniqueness keys the store checks.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests fail loudly"
)]

mod common;

use gatehouse_scim::validate::{prepare_write, unique_keys};
use gatehouse_scim::{ResourceType, ScimType, Write};
use serde_json::{Value, json};

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

fn create(body: Value) -> Result<Value, gatehouse_scim::ScimError> {
    prepare_write(ResourceType::user(), &body, Write::Create)
}

fn scim_type(r: Result<Value, gatehouse_scim::ScimError>) -> Option<ScimType> {
    r.expect_err("should be rejected").scim_type()
}

#[test]
fn the_rfc_example_user_is_accepted_and_read_only_attributes_dropped() {
    let out = create(common::bjensen()).unwrap();
    assert_eq!(out["userName"], "bjensen@example.com");
    assert_eq!(out[ENTERPRISE]["department"], "Tour Operations");
    assert_eq!(
        out[ENTERPRISE]["manager"]["value"],
        "26118915-6090-4610-87e4-49d8ca9f808d"
    );
    // readOnly: id, meta, groups, manager.displayName; schemas is the server's.
    for gone in ["id", "meta", "groups", "schemas"] {
        assert!(out.get(gone).is_none(), "{gone} should be dropped");
    }
    assert!(out[ENTERPRISE]["manager"].get("displayName").is_none());
    // writeOnly is kept for the store (and never returned, see projection).
    assert_eq!(out["password"], "t1meMa$heen");
}

#[test]
fn the_minimal_rfc_user_is_accepted() {
    // RFC 7644 §3.3's creation example.
    let out = create(json!({
        "schemas": [USER],
        "userName": "bjensen",
        "externalId": "bjensen",
        "name": {"formatted": "Ms. Barbara J Jensen III", "familyName": "Jensen", "givenName": "Barbara"}
    }))
    .unwrap();
    assert_eq!(out["name"]["givenName"], "Barbara");
}

#[test]
fn names_are_normalised_to_their_canonical_case() {
    let out = create(json!({"SCHEMAS": [USER], "USERNAME": "a", "Name": {"GIVENNAME": "b"}, "EMAILS": [{"VALUE": "a@b"}]})).unwrap();
    assert_eq!(
        out,
        json!({"userName": "a", "name": {"givenName": "b"}, "emails": [{"value": "a@b"}]})
    );
}

#[test]
fn schemas_must_name_the_core_schema() {
    assert_eq!(
        scim_type(create(json!({"userName": "a"}))),
        Some(ScimType::InvalidSyntax)
    );
    assert_eq!(
        scim_type(create(
            json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "userName": "a"})
        )),
        Some(ScimType::InvalidSyntax)
    );
    assert_eq!(
        scim_type(create(json!(["not", "an", "object"]))),
        Some(ScimType::InvalidSyntax)
    );
}

#[test]
fn required_attributes_must_be_present() {
    assert_eq!(
        scim_type(create(json!({"schemas": [USER]}))),
        Some(ScimType::InvalidValue)
    );
    assert_eq!(
        scim_type(create(json!({"schemas": [USER], "userName": null}))),
        Some(ScimType::InvalidValue)
    );
    assert_eq!(
        scim_type(create(json!({"schemas": [USER], "userName": ""}))),
        Some(ScimType::InvalidValue)
    );
    let e = prepare_write(
        ResourceType::group(),
        &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"]}),
        Write::Create,
    )
    .unwrap_err();
    assert_eq!(e.scim_type(), Some(ScimType::InvalidValue));
    assert!(e.detail().contains("displayName"));
}

#[test]
fn wrong_types_are_invalid_value() {
    for bad in [
        json!({"userName": 5}),
        json!({"userName": "a", "active": "yes"}),
        json!({"userName": "a", "name": "Barbara"}),
        json!({"userName": "a", "name": {"givenName": 3}}),
        json!({"userName": "a", "emails": [{"value": true}]}),
        json!({"userName": "a", "displayName": ["a", "b"]}),
        json!({"userName": "a", ENTERPRISE: "x"}),
    ] {
        let mut body = bad.clone();
        body["schemas"] = json!([USER]);
        assert_eq!(
            scim_type(create(body)),
            Some(ScimType::InvalidValue),
            "{bad}"
        );
    }
}

#[test]
fn lenient_forms_clients_send() {
    let out = create(json!({
        "schemas": [USER],
        "userName": "a",
        "active": "True",
        "emails": {"value": "a@example.com"},
        "displayName": ["Only One"],
        ENTERPRISE: {"manager": "26118915"}
    }))
    .unwrap();
    assert_eq!(out["active"], true);
    assert_eq!(out["emails"], json!([{"value": "a@example.com"}]));
    assert_eq!(out["displayName"], "Only One");
    assert_eq!(out[ENTERPRISE]["manager"], json!({"value": "26118915"}));
}

#[test]
fn a_qualified_attribute_name_is_placed_under_its_schema() {
    let out = create(json!({
        "schemas": [USER],
        "urn:ietf:params:scim:schemas:core:2.0:User:userName": "a",
        "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:department": "Sales"
    }))
    .unwrap();
    assert_eq!(out["userName"], "a");
    assert_eq!(out[ENTERPRISE]["department"], "Sales");
}

#[test]
fn unknown_attributes_are_ignored() {
    let out = create(json!({"schemas": [USER], "userName": "a", "shoeSize": 42, "name": {"nick": "x", "givenName": "g"}})).unwrap();
    assert_eq!(out, json!({"userName": "a", "name": {"givenName": "g"}}));
}

#[test]
fn only_one_primary_value() {
    let body = json!({"schemas": [USER], "userName": "a", "emails": [
        {"value": "a@x", "primary": true}, {"value": "b@x", "primary": true}
    ]});
    assert_eq!(scim_type(create(body)), Some(ScimType::InvalidValue));
}

#[test]
fn replace_keeps_immutable_values_and_rejects_changes() {
    let group = ResourceType::group();
    let existing = json!({"displayName": "g", "members": [{"value": "1"}]});
    // members is readWrite (its sub-attributes are immutable per value):
    // replacing the list is allowed.
    let out = prepare_write(
        group,
        &json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"], "displayName": "g2", "members": [{"value": "2"}]}),
        Write::Replace { existing: &existing },
    )
    .unwrap();
    assert_eq!(out["members"], json!([{"value": "2"}]));
    assert_eq!(out["displayName"], "g2");
}

/// The User type with nickName made immutable, to test the rule on a
/// top-level attribute (the RFC schemas have immutable sub-attributes only).
fn with_immutable_nickname() -> ResourceType {
    let mut rt = ResourceType::user().clone();
    for a in &mut rt.schema.attributes {
        if a.name == "nickName" {
            a.mutability = gatehouse_scim::schema::Mutability::Immutable;
        }
    }
    rt
}

#[test]
fn an_immutable_attribute_cannot_change_on_replace() {
    let rt = with_immutable_nickname();
    let existing = json!({"userName": "a", "nickName": "Babs"});
    let same = prepare_write(
        &rt,
        &json!({"schemas": [USER], "userName": "a", "nickName": "Babs"}),
        Write::Replace {
            existing: &existing,
        },
    );
    assert_eq!(same.unwrap()["nickName"], "Babs");
    let changed = prepare_write(
        &rt,
        &json!({"schemas": [USER], "userName": "a", "nickName": "B"}),
        Write::Replace {
            existing: &existing,
        },
    );
    assert_eq!(scim_type(changed), Some(ScimType::Mutability));
    // Left out, it is kept.
    let omitted = prepare_write(
        &rt,
        &json!({"schemas": [USER], "userName": "b"}),
        Write::Replace {
            existing: &existing,
        },
    )
    .unwrap();
    assert_eq!(omitted["nickName"], "Babs");
    // Without a previous value it may be set.
    let existing = json!({"userName": "a"});
    let set = prepare_write(
        &rt,
        &json!({"schemas": [USER], "userName": "a", "nickName": "B"}),
        Write::Replace {
            existing: &existing,
        },
    );
    assert_eq!(set.unwrap()["nickName"], "B");
}

#[test]
fn uniqueness_keys_are_normalised() {
    let out = create(json!({"schemas": [USER], "userName": "BJensen@Example.com"})).unwrap();
    let keys = unique_keys(ResourceType::user(), &out);
    assert_eq!(keys.len(), 1);
    assert_eq!(keys[0].attribute, "userName");
    assert_eq!(keys[0].value, "bjensen@example.com");
    let group = json!({"displayName": "x"});
    assert!(unique_keys(ResourceType::group(), &group).is_empty());
}
