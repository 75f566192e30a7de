//! Evaluating filters against the RFC 7643 §8.2 example user, with the
//! matching rules of RFC 7644 §3.4.2.2.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests fail loudly"
)]

mod common;

use gatehouse_scim::filter::eval::matches;
use gatehouse_scim::{Filter, ResourceType, ScimType};
use serde_json::json;

fn user_matches(filter: &str) -> bool {
    let f = Filter::parse(filter).unwrap_or_else(|e| panic!("{filter}: {e}"));
    matches(&f, ResourceType::user(), &common::bjensen())
        .unwrap_or_else(|e| panic!("{filter}: {e}"))
}

#[test]
fn equality_and_case_rules() {
    assert!(user_matches(r#"userName eq "bjensen@example.com""#));
    // userName is caseExact false.
    assert!(user_matches(r#"userName eq "BJENSEN@example.COM""#));
    // id and externalId are caseExact (RFC 7643 §3.1).
    assert!(user_matches(
        r#"id eq "2819c223-7f76-453a-919d-413861904646""#
    ));
    assert!(!user_matches(
        r#"id eq "2819C223-7F76-453A-919D-413861904646""#
    ));
    assert!(user_matches(r#"externalId eq "701984""#));
    // Attribute names are case-insensitive.
    assert!(user_matches(r#"USERNAME eq "bjensen@example.com""#));
    assert!(user_matches(r#"name.FAMILYNAME eq "jensen""#));
}

#[test]
fn rfc_examples_against_bjensen() {
    assert!(user_matches(r#"name.familyName co "ens""#));
    assert!(user_matches(r#"userName sw "BJ""#));
    assert!(user_matches(
        r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "b""#
    ));
    assert!(!user_matches(
        r#"urn:ietf:params:scim:schemas:core:2.0:Group:userName sw "b""#
    ));
    assert!(user_matches("title pr"));
    assert!(!user_matches("nickName pr and honorificPrefix pr"));
    assert!(user_matches(
        r#"meta.lastModified gt "2011-05-13T04:42:33Z""#
    ));
    assert!(!user_matches(
        r#"meta.lastModified gt "2011-05-13T04:42:34Z""#
    ));
    assert!(user_matches(
        r#"meta.lastModified ge "2011-05-13T04:42:34Z""#
    ));
    assert!(user_matches(
        r#"meta.lastModified lt "2011-05-13T06:00:00+01:00""#
    ));
    assert!(user_matches(
        r#"meta.lastModified le "2011-05-13T04:42:34Z""#
    ));
    assert!(user_matches(r#"title pr and userType eq "Employee""#));
    assert!(user_matches(r#"title pr or userType eq "Intern""#));
    assert!(!user_matches(r#"title pr and userType eq "Intern""#));
    assert!(user_matches(
        r#"schemas eq "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User""#
    ));
    assert!(user_matches(
        r#"userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")"#
    ));
    assert!(!user_matches(
        r#"userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")"#
    ));
    assert!(user_matches(
        r#"userType eq "Employee" and (emails.type eq "work")"#
    ));
    assert!(user_matches(
        r#"userType eq "Employee" and emails[type eq "work" and value co "@example.com"]"#
    ));
    assert!(user_matches(
        r#"emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]"#
    ));
}

#[test]
fn a_value_path_needs_one_value_to_match_every_condition() {
    // The work e-mail is at example.com, the home one at jensen.org:
    // no single value is both home and example.com.
    assert!(!user_matches(
        r#"emails[type eq "home" and value co "example.com"]"#
    ));
    assert!(user_matches(
        r#"emails[type eq "home" and value co "jensen.org"]"#
    ));
    // Whereas across values, each condition finds some value.
    assert!(user_matches(
        r#"emails.type eq "home" and emails.value co "example.com""#
    ));
    assert!(user_matches(r#"emails[not (type eq "work")]"#));
    assert!(user_matches(r#"emails[primary eq true]"#));
}

#[test]
fn multi_valued_attributes_match_if_any_value_does() {
    assert!(user_matches(r#"emails co "jensen.org""#));
    assert!(user_matches(r#"phoneNumbers.type eq "mobile""#));
    assert!(!user_matches(r#"phoneNumbers.type eq "fax""#));
    assert!(user_matches(r#"emails.value ew ".ORG""#));
}

#[test]
fn ne_is_the_negation_of_eq() {
    assert!(user_matches(r#"userType ne "Intern""#));
    assert!(!user_matches(r#"userType ne "employee""#));
    // An unassigned attribute is not equal to anything.
    assert!(user_matches(
        r#"nickName ne "x" and honorificPrefix ne "x""#
    ));
    assert!(user_matches(r#"costCenter ne "x""#));
    assert!(!user_matches(r#"costCenter ne "4130""#));
}

#[test]
fn presence_and_null() {
    assert!(user_matches("name pr"));
    assert!(user_matches("emails pr"));
    assert!(user_matches("name.middleName pr"));
    assert!(!user_matches("name.nickName pr"));
    assert!(!user_matches("roles pr"));
    assert!(user_matches("roles eq null"));
    assert!(!user_matches("title eq null"));
    assert!(user_matches("title ne null"));
    let empty = json!({"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "userName": "x", "title": "", "emails": [], "name": {"givenName": ""}});
    for f in ["title pr", "emails pr", "name pr", "name.givenName pr"] {
        assert!(
            !matches(&Filter::parse(f).unwrap(), ResourceType::user(), &empty).unwrap(),
            "{f}"
        );
    }
}

#[test]
fn booleans_numbers_and_unknown_attributes() {
    assert!(user_matches("active eq true"));
    assert!(!user_matches("active eq false"));
    let r = json!({"userName": "x", "loginCount": 7, "score": 2.5});
    let m = |f: &str| matches(&Filter::parse(f).unwrap(), ResourceType::user(), &r).unwrap();
    assert!(m("loginCount gt 6"));
    assert!(m("loginCount le 7"));
    assert!(!m("loginCount lt 7"));
    assert!(m("score gt 2"));
    assert!(m("score lt 2.6"));
    assert!(!m(r#"loginCount eq "7""#));
}

#[test]
fn ordering_a_boolean_is_invalid_filter() {
    for f in [
        "active gt true",
        "active lt false",
        r#"x509Certificates.value gt "a""#,
    ] {
        let e = matches(
            &Filter::parse(f).unwrap(),
            ResourceType::user(),
            &common::bjensen(),
        )
        .unwrap_err();
        assert_eq!(e.scim_type(), Some(ScimType::InvalidFilter), "{f}");
    }
}

#[test]
fn a_malformed_datetime_literal_is_invalid_filter() {
    let e = matches(
        &Filter::parse(r#"meta.created gt "yesterday""#).unwrap(),
        ResourceType::user(),
        &common::bjensen(),
    )
    .unwrap_err();
    assert_eq!(e.scim_type(), Some(ScimType::InvalidFilter));
}

#[test]
fn strings_order_lexicographically_without_case() {
    assert!(user_matches(r#"userName gt "A""#));
    assert!(user_matches(r#"userName lt "C""#));
    assert!(user_matches(r#"userName gt "BJ""#));
}

#[test]
fn enterprise_extension_attributes() {
    assert!(user_matches(
        r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:employeeNumber eq "701984""#
    ));
    assert!(user_matches(
        r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "26118915-6090-4610-87e4-49d8ca9f808d""#
    ));
    // Without the URN, extension attributes are still found.
    assert!(user_matches(r#"department eq "tour operations""#));
    assert!(!user_matches(
        r#"urn:example:unknown:2.0:User:department eq "Tour Operations""#
    ));
}

#[test]
fn groups_members() {
    let g = json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "displayName": "Tour Guides",
        "members": [{"value": "2819c223-7f76-453a-919d-413861904646", "display": "Babs Jensen", "type": "User"}]
    });
    let m = |f: &str| matches(&Filter::parse(f).unwrap(), ResourceType::group(), &g).unwrap();
    assert!(m(r#"displayName eq "tour guides""#));
    assert!(m(
        r#"members[value eq "2819c223-7f76-453a-919d-413861904646"]"#
    ));
    assert!(m(
        r#"members.value eq "2819c223-7f76-453a-919d-413861904646""#
    ));
    assert!(!m(r#"members[value eq "nobody"]"#));
}
