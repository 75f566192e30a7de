//! The schemas as data (RFC 7643 §4, §8.7) and the discovery documents
//! generated from them (RFC 7644 §4).

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests fail loudly"
)]

use gatehouse_scim::AttrPath;
use gatehouse_scim::schema::documents::{
    ServiceProviderConfig, find_resource_type_document, find_schema_document, resource_types_list,
    schemas_list,
};
use gatehouse_scim::schema::{
    ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA, Mutability, ResourceType, Returned, USER_SCHEMA,
    Uniqueness,
};
use serde_json::{Value, json};

const BASE: &str = "https://gatehouse.example/scim/v2/acme";

fn attr<'a>(doc: &'a Value, name: &str) -> &'a Value {
    doc["attributes"]
        .as_array()
        .unwrap()
        .iter()
        .find(|a| a["name"] == name)
        .unwrap_or_else(|| panic!("no {name}"))
}

#[test]
fn user_characteristics_follow_rfc_7643() {
    let rt = ResourceType::user();
    let user_name = rt.resolve(&AttrPath::new("userName")).unwrap().attr;
    assert!(user_name.required);
    assert!(!user_name.case_exact);
    assert_eq!(user_name.uniqueness, Uniqueness::Server);
    let password = rt.resolve(&AttrPath::new("password")).unwrap().attr;
    assert_eq!(
        (password.mutability, password.returned),
        (Mutability::WriteOnly, Returned::Never)
    );
    let id = rt.resolve(&AttrPath::new("id")).unwrap().attr;
    assert_eq!(
        (id.mutability, id.returned, id.case_exact),
        (Mutability::ReadOnly, Returned::Always, true)
    );
    let groups = rt.resolve(&AttrPath::new("groups")).unwrap().attr;
    assert_eq!(groups.mutability, Mutability::ReadOnly);
    for name in [
        "name",
        "emails",
        "phoneNumbers",
        "ims",
        "photos",
        "addresses",
        "groups",
        "entitlements",
        "roles",
        "x509Certificates",
    ] {
        assert!(rt.resolve(&AttrPath::new(name)).is_some(), "{name}");
    }
    let manager = rt
        .resolve(&AttrPath {
            uri: Some(ENTERPRISE_USER_SCHEMA.into()),
            name: "manager".into(),
            sub_attr: Some("displayName".into()),
        })
        .unwrap();
    assert_eq!(manager.extension, Some(ENTERPRISE_USER_SCHEMA));
    assert_eq!(manager.leaf().mutability, Mutability::ReadOnly);
}

#[test]
fn group_members_values_are_immutable() {
    let members = ResourceType::group()
        .resolve(&AttrPath::new("members").with_sub("value"))
        .unwrap();
    assert_eq!(members.attr.mutability, Mutability::ReadWrite);
    assert_eq!(members.leaf().mutability, Mutability::Immutable);
}

#[test]
fn the_schemas_list_holds_user_enterprise_and_group() {
    let list = schemas_list(BASE).to_json();
    assert_eq!(list["totalResults"], 3);
    let ids: Vec<&str> = list["Resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, vec![USER_SCHEMA, ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA]);
}

#[test]
fn a_schema_document_has_every_characteristic() {
    let doc = find_schema_document(USER_SCHEMA, BASE).unwrap();
    assert_eq!(
        doc["schemas"],
        json!(["urn:ietf:params:scim:schemas:core:2.0:Schema"])
    );
    assert_eq!(
        doc["meta"]["location"],
        format!("{BASE}/Schemas/{USER_SCHEMA}")
    );
    let user_name = attr(&doc, "userName");
    for (k, v) in [
        ("type", json!("string")),
        ("multiValued", json!(false)),
        ("required", json!(true)),
        ("caseExact", json!(false)),
        ("mutability", json!("readWrite")),
        ("returned", json!("default")),
        ("uniqueness", json!("server")),
    ] {
        assert_eq!(user_name[k], v, "userName.{k}");
    }
    let emails = attr(&doc, "emails");
    assert_eq!(emails["type"], "complex");
    assert_eq!(emails["multiValued"], true);
    let sub_names: Vec<&str> = emails["subAttributes"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(sub_names, vec!["value", "display", "type", "primary"]);
    assert_eq!(
        emails["subAttributes"][2]["canonicalValues"],
        json!(["work", "home", "other"])
    );
    assert_eq!(
        attr(&doc, "profileUrl")["referenceTypes"],
        json!(["external"])
    );
    assert_eq!(attr(&doc, "password")["returned"], "never");
    assert!(find_schema_document("urn:example:nope", BASE).is_none());
}

#[test]
fn resource_types() {
    let list = resource_types_list(BASE).to_json();
    assert_eq!(list["totalResults"], 2);
    let user = find_resource_type_document("user", BASE).unwrap();
    assert_eq!(user["endpoint"], "/Users");
    assert_eq!(user["schema"], USER_SCHEMA);
    assert_eq!(
        user["schemaExtensions"],
        json!([{"schema": ENTERPRISE_USER_SCHEMA, "required": false}])
    );
    assert_eq!(
        user["meta"]["location"],
        format!("{BASE}/ResourceTypes/User")
    );
    let group = find_resource_type_document("Group", BASE).unwrap();
    assert_eq!(group["endpoint"], "/Groups");
    assert_eq!(group["schemaExtensions"], json!([]));
}

#[test]
fn service_provider_config() {
    let doc = ServiceProviderConfig::default().to_json(BASE);
    assert_eq!(
        doc["schemas"],
        json!(["urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig"])
    );
    assert_eq!(doc["patch"]["supported"], true);
    assert_eq!(doc["bulk"]["supported"], false);
    assert_eq!(doc["filter"], json!({"supported": true, "maxResults": 200}));
    assert_eq!(doc["sort"]["supported"], true);
    assert_eq!(doc["etag"]["supported"], true);
    assert_eq!(doc["changePassword"]["supported"], false);
    assert_eq!(doc["authenticationSchemes"][0]["type"], "oauthbearertoken");
}
