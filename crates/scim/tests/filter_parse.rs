//! The filter grammar of RFC 7644 §3.4.2.2: every example of the RFC
//! parses, precedence and grouping are right, names and operators are
//! case-insensitive, and bad input is an error with a position.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests fail loudly"
)]

use gatehouse_scim::filter::{MAX_DEPTH, MAX_FILTER_LEN};
use gatehouse_scim::{AttrPath, CompValue, CompareOp, Filter, PatchPath, ScimError, ScimType};

fn parse(s: &str) -> Filter {
    Filter::parse(s).unwrap_or_else(|e| panic!("{s:?} should parse: {e}"))
}

fn cmp(path: AttrPath, op: CompareOp, value: CompValue) -> Filter {
    Filter::Compare { path, op, value }
}

fn s(v: &str) -> CompValue {
    CompValue::String(v.into())
}

/// The filter examples listed in RFC 7644 §3.4.2.2.
const RFC_EXAMPLES: &[&str] = &[
    r#"userName eq "bjensen""#,
    r#"name.familyName co "O'Malley""#,
    r#"userName sw "J""#,
    r#"urn:ietf:params:scim:schemas:core:2.0:User:userName sw "J""#,
    r#"title pr"#,
    r#"meta.lastModified gt "2011-05-13T04:42:34Z""#,
    r#"meta.lastModified ge "2011-05-13T04:42:34Z""#,
    r#"meta.lastModified lt "2011-05-13T04:42:34Z""#,
    r#"meta.lastModified le "2011-05-13T04:42:34Z""#,
    r#"title pr and userType eq "Employee""#,
    r#"title pr or userType eq "Intern""#,
    r#"schemas eq "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User""#,
    r#"userType eq "Employee" and (emails co "example.com" or emails.value co "example.org")"#,
    r#"userType ne "Employee" and not (emails co "example.com" or emails.value co "example.org")"#,
    r#"userType eq "Employee" and (emails.type eq "work")"#,
    r#"userType eq "Employee" and emails[type eq "work" and value co "@example.com"]"#,
    r#"emails[type eq "work" and value co "@example.com"] or ims[type eq "xmpp" and value co "@foo.com"]"#,
];

#[test]
fn every_rfc_example_parses_and_prints_back_to_itself() {
    for example in RFC_EXAMPLES {
        let f = parse(example);
        // The one example with redundant parentheses prints without them.
        let canonical = example.replace(r#"(emails.type eq "work")"#, r#"emails.type eq "work""#);
        assert_eq!(f.to_string(), canonical, "canonical form of {example}");
        assert_eq!(parse(&f.to_string()), f);
    }
}

#[test]
fn a_comparison_has_path_operator_and_value() {
    assert_eq!(
        parse(r#"userName eq "bjensen""#),
        cmp(AttrPath::new("userName"), CompareOp::Eq, s("bjensen"))
    );
    assert_eq!(
        parse(r#"name.familyName co "O'Malley""#),
        cmp(
            AttrPath::new("name").with_sub("familyName"),
            CompareOp::Co,
            s("O'Malley")
        )
    );
}

#[test]
fn a_schema_urn_prefix_is_split_from_the_attribute() {
    let f = parse(r#"urn:ietf:params:scim:schemas:core:2.0:User:name.givenName sw "J""#);
    let Filter::Compare { path, .. } = f else {
        panic!("not a comparison")
    };
    assert_eq!(
        path.uri.as_deref(),
        Some("urn:ietf:params:scim:schemas:core:2.0:User")
    );
    assert_eq!(path.name, "name");
    assert_eq!(path.sub_attr.as_deref(), Some("givenName"));

    let f =
        parse(r#"urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager.value eq "x""#);
    let Filter::Compare { path, .. } = f else {
        panic!("not a comparison")
    };
    assert_eq!(
        path.uri.as_deref(),
        Some("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User")
    );
    assert_eq!(path.name, "manager");
    assert_eq!(path.sub_attr.as_deref(), Some("value"));
}

#[test]
fn and_binds_tighter_than_or_and_not_tighter_than_and() {
    let f = parse("a pr or b pr and c pr");
    assert_eq!(
        f,
        Filter::Or(vec![
            Filter::Present(AttrPath::new("a")),
            Filter::And(vec![
                Filter::Present(AttrPath::new("b")),
                Filter::Present(AttrPath::new("c"))
            ]),
        ])
    );
    let f = parse("not (a pr) and b pr");
    assert_eq!(
        f,
        Filter::And(vec![
            Filter::Not(Box::new(Filter::Present(AttrPath::new("a")))),
            Filter::Present(AttrPath::new("b")),
        ])
    );
}

#[test]
fn parentheses_group() {
    let f = parse("(a pr or b pr) and c pr");
    assert_eq!(
        f,
        Filter::And(vec![
            Filter::Or(vec![
                Filter::Present(AttrPath::new("a")),
                Filter::Present(AttrPath::new("b"))
            ]),
            Filter::Present(AttrPath::new("c")),
        ])
    );
    assert_eq!(f.to_string(), "(a pr or b pr) and c pr");
    // Redundant parentheses disappear.
    assert_eq!(parse("((a pr))"), Filter::Present(AttrPath::new("a")));
}

#[test]
fn a_chain_of_the_same_operator_is_one_node() {
    let f = parse("a pr and b pr and c pr");
    let Filter::And(items) = f else {
        panic!("not an and")
    };
    assert_eq!(items.len(), 3);
}

#[test]
fn value_paths_hold_a_filter_over_sub_attributes() {
    let f = parse(r#"emails[type eq "work" and value co "@example.com"]"#);
    assert_eq!(
        f,
        Filter::ValuePath {
            path: AttrPath::new("emails"),
            filter: Box::new(Filter::And(vec![
                cmp(AttrPath::new("type"), CompareOp::Eq, s("work")),
                cmp(AttrPath::new("value"), CompareOp::Co, s("@example.com")),
            ])),
        }
    );
}

#[test]
fn operators_keywords_and_literals_are_case_insensitive() {
    assert_eq!(parse(r#"userName EQ "x""#), parse(r#"userName eq "x""#));
    assert_eq!(parse("a PR AND b Pr"), parse("a pr and b pr"));
    assert_eq!(parse("a pr OR NOT (b pr)"), parse("a pr or not (b pr)"));
    assert_eq!(
        parse("active eq TRUE"),
        cmp(
            AttrPath::new("active"),
            CompareOp::Eq,
            CompValue::Bool(true)
        )
    );
    assert_eq!(
        parse("x eq False"),
        cmp(AttrPath::new("x"), CompareOp::Eq, CompValue::Bool(false))
    );
    assert_eq!(
        parse("x eq NULL"),
        cmp(AttrPath::new("x"), CompareOp::Eq, CompValue::Null)
    );
}

#[test]
fn every_operator_parses() {
    for op in ["eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le"] {
        let f = parse(&format!("x {op} 1"));
        let Filter::Compare { op: got, .. } = f else {
            panic!("not a comparison")
        };
        assert_eq!(got.as_str(), op);
    }
}

#[test]
fn literals_strings_numbers_booleans_null() {
    let value = |src: &str| match parse(&format!("x eq {src}")) {
        Filter::Compare { value, .. } => value,
        other => panic!("not a comparison: {other:?}"),
    };
    assert_eq!(value("42"), CompValue::Number(42.into()));
    assert_eq!(value("-7"), CompValue::Number((-7).into()));
    assert_eq!(
        value("1.5"),
        CompValue::Number(serde_json::Number::from_f64(1.5).unwrap())
    );
    assert_eq!(
        value("2e3"),
        CompValue::Number(serde_json::Number::from_f64(2000.0).unwrap())
    );
    assert_eq!(
        value(r#""2011-05-13T04:42:34Z""#),
        s("2011-05-13T04:42:34Z")
    );
    assert_eq!(value("true"), CompValue::Bool(true));
    assert_eq!(value("null"), CompValue::Null);
}

#[test]
fn escaped_quotes_and_unicode_escapes_in_strings() {
    let f = parse(r#"displayName eq "say \"hi\" \\ \u00e9""#);
    assert_eq!(
        f,
        cmp(
            AttrPath::new("displayName"),
            CompareOp::Eq,
            s("say \"hi\" \\ é")
        )
    );
    // Printing escapes again, and the result parses to the same filter.
    assert_eq!(parse(&f.to_string()), f);
}

#[test]
fn whitespace_between_tokens_may_be_any_run() {
    assert_eq!(parse("  a   pr\tand\n b pr  "), parse("a pr and b pr"));
    assert_eq!(parse(r#"( a pr )"#), parse("a pr"));
}

#[test]
fn the_ref_attribute_is_a_name() {
    assert_eq!(
        parse(r#"members[$ref eq "x"]"#).to_string(),
        r#"members[$ref eq "x"]"#
    );
}

#[test]
fn an_attribute_named_like_a_keyword_still_works() {
    assert_eq!(parse("not pr"), Filter::Present(AttrPath::new("not")));
    assert_eq!(parse("and pr and or pr").to_string(), "and pr and or pr");
}

fn err(s: &str) -> gatehouse_scim::FilterError {
    match Filter::parse(s) {
        Ok(f) => panic!("{s:?} should not parse, got {f:?}"),
        Err(e) => e,
    }
}

#[test]
fn errors_carry_the_position() {
    assert_eq!(err(r#"userName xx "a""#).position, 9);
    assert_eq!(err(r#"userName eq "a" and"#).position, 19);
    assert_eq!(err(r#"userName eq "abc"#).position, 12);
    assert_eq!(err(r#"userName eq bjensen"#).position, 12);
    assert_eq!(err(r#"(a pr"#).position, 5);
    assert_eq!(err(r#"a pr)"#).position, 4);
    assert_eq!(err("").position, 0);
}

#[test]
fn malformed_filters_are_rejected() {
    for bad in [
        "userName",
        "userName eq",
        "eq \"x\"",
        "userName = \"x\"",
        "userName eq 'x'",
        "a pr and",
        "a pr or or b pr",
        "not a pr",
        "()",
        "emails[type eq \"work\"",
        "emails[type eq \"work\"]]",
        "emails[addresses[type pr]]",
        "emails.value[type pr]",
        "1abc pr",
        "name.given.name pr",
        "x eq 1e400",
        "x eq \"\\x\"",
        "x eq \"a\nb\"",
        ":name pr",
        "urn:a::b pr",
    ] {
        err(bad);
    }
}

#[test]
fn the_parser_is_bounded() {
    let deep = format!(
        "{}a pr{}",
        "(".repeat(MAX_DEPTH + 1),
        ")".repeat(MAX_DEPTH + 1)
    );
    assert!(err(&deep).message.contains("deeper"));
    let ok = format!("{}a pr{}", "(".repeat(MAX_DEPTH), ")".repeat(MAX_DEPTH));
    parse(&ok);
    let nots = format!(
        "{}a pr{}",
        "not (".repeat(MAX_DEPTH + 1),
        ")".repeat(MAX_DEPTH + 1)
    );
    err(&nots);
    let long = format!("userName eq \"{}\"", "x".repeat(MAX_FILTER_LEN));
    assert!(err(&long).message.contains("longer"));
    // A long flat chain is fine: it does not nest.
    let chain = vec!["a pr"; 1000].join(" or ");
    let Filter::Or(items) = parse(&chain) else {
        panic!("not an or")
    };
    assert_eq!(items.len(), 1000);
}

#[test]
fn a_filter_error_is_a_400_invalid_filter() {
    let e: ScimError = err("userName xx 1").into();
    assert_eq!(e.status(), 400);
    assert_eq!(e.scim_type(), Some(ScimType::InvalidFilter));
    assert!(e.detail().contains("position 9"), "{}", e.detail());
}

#[test]
fn patch_paths() {
    let p =
        PatchPath::parse(r#"members[value eq "2819c223-7f76-453a-919d-413861904646"]"#).unwrap();
    assert_eq!(p.attr, AttrPath::new("members"));
    assert!(p.filter.is_some());
    assert_eq!(p.sub_attr, None);

    let p = PatchPath::parse(r#"emails[type eq "work"].value"#).unwrap();
    assert_eq!(p.sub_attr.as_deref(), Some("value"));
    assert_eq!(p.to_string(), r#"emails[type eq "work"].value"#);

    let p = PatchPath::parse("name.familyName").unwrap();
    assert_eq!(p.attr, AttrPath::new("name").with_sub("familyName"));

    let p = PatchPath::parse("urn:ietf:params:scim:schemas:extension:enterprise:2.0:User:manager")
        .unwrap();
    assert_eq!(p.attr.name, "manager");

    for bad in [
        "",
        "emails[",
        "emails[type eq \"work\"].",
        "name.givenName[type pr]",
        "emails[type pr] x",
    ] {
        assert!(PatchPath::parse(bad).is_err(), "{bad:?}");
    }
}
