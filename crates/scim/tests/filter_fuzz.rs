//! Property tests of the filter parser: arbitrary input never panics and
//! stays within the bounds; a printed filter parses back to the same AST.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests fail loudly"
)]

mod common;

use gatehouse_scim::filter::eval::matches;
use gatehouse_scim::{AttrPath, CompValue, CompareOp, Filter, PatchPath, ResourceType};
use proptest::prelude::*;

fn name() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("userName".to_owned()),
        Just("emails".to_owned()),
        Just("name".to_owned()),
        Just("not".to_owned()),
        Just("and".to_owned()),
        Just("$ref".to_owned()),
        "[a-zA-Z][a-zA-Z0-9_-]{0,8}",
    ]
}

fn attr_path() -> impl Strategy<Value = AttrPath> {
    (
        proptest::option::of(prop_oneof![
            Just("urn:ietf:params:scim:schemas:core:2.0:User".to_owned()),
            Just("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User".to_owned()),
        ]),
        name(),
        proptest::option::of(name()),
    )
        .prop_map(|(uri, name, sub_attr)| AttrPath {
            uri,
            name,
            sub_attr,
        })
}

fn comp_value() -> impl Strategy<Value = CompValue> {
    prop_oneof![
        Just(CompValue::Null),
        any::<bool>().prop_map(CompValue::Bool),
        any::<i64>().prop_map(|n| CompValue::Number(n.into())),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f)
            .map(CompValue::Number)),
        any::<String>().prop_map(CompValue::String),
    ]
}

fn op() -> impl Strategy<Value = CompareOp> {
    prop_oneof![
        Just(CompareOp::Eq),
        Just(CompareOp::Ne),
        Just(CompareOp::Co),
        Just(CompareOp::Sw),
        Just(CompareOp::Ew),
        Just(CompareOp::Gt),
        Just(CompareOp::Ge),
        Just(CompareOp::Lt),
        Just(CompareOp::Le),
    ]
}

fn leaf() -> impl Strategy<Value = Filter> {
    prop_oneof![
        (attr_path(), op(), comp_value()).prop_map(|(path, op, value)| Filter::Compare {
            path,
            op,
            value
        }),
        attr_path().prop_map(Filter::Present),
    ]
}

/// Filters without value paths (they may appear inside one).
fn inner_filter() -> impl Strategy<Value = Filter> {
    leaf().prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 2..4).prop_map(Filter::And),
            proptest::collection::vec(inner.clone(), 2..4).prop_map(Filter::Or),
            inner.prop_map(|f| Filter::Not(Box::new(f))),
        ]
    })
}

fn filter() -> impl Strategy<Value = Filter> {
    let value_path = (name(), inner_filter()).prop_map(|(name, f)| Filter::ValuePath {
        path: AttrPath::new(name),
        filter: Box::new(f),
    });
    prop_oneof![leaf(), value_path].prop_recursive(4, 24, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 2..4).prop_map(Filter::And),
            proptest::collection::vec(inner.clone(), 2..4).prop_map(Filter::Or),
            inner.prop_map(|f| Filter::Not(Box::new(f))),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(2000))]

    #[test]
    fn arbitrary_strings_never_panic(s in any::<String>()) {
        let _ = Filter::parse(&s);
        let _ = PatchPath::parse(&s);
        let _ = AttrPath::parse(&s);
    }

    #[test]
    fn filter_like_strings_never_panic(s in r#"[a-z\.:\[\]\(\)" \\0-9-]{0,80}"#) {
        if let Ok(f) = Filter::parse(&s) {
            // Whatever parses prints to something that parses the same.
            prop_assert_eq!(Filter::parse(&f.to_string()).ok(), Some(f.clone()));
            let _ = matches(&f, ResourceType::user(), &common::bjensen());
        }
        let _ = PatchPath::parse(&s);
    }

    #[test]
    fn printing_then_parsing_gives_the_same_ast(f in filter()) {
        let printed = f.to_string();
        let reparsed = Filter::parse(&printed);
        prop_assert_eq!(reparsed.as_ref().ok(), Some(&f), "printed: {}", printed);
    }

    #[test]
    fn evaluation_never_panics(f in filter()) {
        let _ = matches(&f, ResourceType::user(), &common::bjensen());
    }
}

fn patch_path() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("emails".to_owned()),
        Just("emails[type eq \"work\"]".to_owned()),
        Just("emails[type eq \"work\"].value".to_owned()),
        Just("emails.value".to_owned()),
        Just("name".to_owned()),
        Just("name.givenName".to_owned()),
        Just("members".to_owned()),
        Just("userName".to_owned()),
        Just("active".to_owned()),
        Just("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User".to_owned()),
        Just("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager".to_owned()),
        r#"[a-zA-Z\.\[\]" ]{0,20}"#,
    ]
}

fn json_value() -> impl Strategy<Value = serde_json::Value> {
    let leaf = prop_oneof![
        Just(serde_json::Value::Null),
        any::<bool>().prop_map(serde_json::Value::Bool),
        any::<i32>().prop_map(|n| serde_json::json!(n)),
        "[a-zA-Z@.]{0,10}".prop_map(serde_json::Value::String),
    ];
    leaf.prop_recursive(3, 16, 4, |inner| {
        prop_oneof![
            proptest::collection::vec(inner.clone(), 0..3).prop_map(serde_json::Value::Array),
            proptest::collection::btree_map(
                prop_oneof![
                    Just("value".to_owned()),
                    Just("type".to_owned()),
                    Just("primary".to_owned()),
                    "[a-z]{1,6}"
                ],
                inner,
                0..3
            )
            .prop_map(|m| serde_json::Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(1000))]

    /// Arbitrary PATCH operations on the RFC example user never panic, and
    /// whatever they produce is a valid resource (userName still there).
    #[test]
    fn patch_never_panics(
        ops in proptest::collection::vec(
            (prop_oneof![Just("add"), Just("Replace"), Just("remove")], proptest::option::of(patch_path()), proptest::option::of(json_value())),
            1..4,
        )
    ) {
        let ops: Vec<serde_json::Value> = ops
            .into_iter()
            .map(|(op, path, value)| serde_json::json!({"op": op, "path": path, "value": value}))
            .collect();
        let body = serde_json::json!({"schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"], "Operations": ops});
        if let Ok(request) = gatehouse_scim::PatchRequest::from_json(&body)
            && let Ok(out) = gatehouse_scim::patch::apply_patch(ResourceType::user(), &common::bjensen(), &request)
        {
            prop_assert!(out["userName"].is_string());
        }
    }
}
