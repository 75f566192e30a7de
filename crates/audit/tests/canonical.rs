//! RFC 8785 canonical JSON: the RFC's own examples, and properties.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests fail loudly"
)]

use gatehouse_audit::canonical::{self, CanonicalError, MAX_DEPTH};
use proptest::prelude::*;
use serde_json::{Value, json};

/// RFC 8785 §3.2.2, the main example, parsed from its JSON text.
#[test]
fn rfc8785_main_example() {
    let input = r#"{
        "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
        "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
        "literals": [null, true, false]
    }"#;
    let expected = concat!(
        r#"{"literals":[null,true,false],"numbers":[333333333.3333333,1e+30,4.5,0.002,1e-27],"#,
        r#""string":"€$\u000f\nA'B\"\\\\\"/"}"#
    );
    let out = canonical::canonicalize_json(input.as_bytes()).unwrap();
    assert_eq!(String::from_utf8(out).unwrap(), expected);
}

/// RFC 8785 §3.2.3: member names sort by UTF-16 code units, so the emoji
/// (a surrogate pair, 0xD83D…) sorts before U+FB33 although its code point
/// is larger.
#[test]
fn rfc8785_sorting_example() {
    let input = r#"{
        "\u20ac": "Euro Sign",
        "\r": "Carriage Return",
        "\ufb33": "Hebrew Letter Dalet With Dagesh",
        "1": "One",
        "\ud83d\ude00": "Emoji: Grinning Face",
        "\u0080": "Control",
        "\u00f6": "Latin Small Letter O With Diaeresis"
    }"#;
    let value: Value = serde_json::from_str(input).unwrap();
    let out = canonical::to_string(&value).unwrap();
    let names: Vec<String> = out
        .trim_matches(|c| c == '{' || c == '}')
        .split(',')
        .map(|member| member.split(':').next().unwrap().to_owned())
        .collect();
    assert_eq!(
        names,
        [
            "\"\\r\"",
            "\"1\"",
            "\"\u{80}\"",
            "\"\u{f6}\"",
            "\"\u{20ac}\"",
            "\"\u{1f600}\"",
            "\"\u{fb33}\"",
        ]
    );
}

/// RFC 8785 Appendix B: IEEE 754 doubles and their canonical text.
#[test]
fn rfc8785_appendix_b_numbers() {
    let cases: &[(u64, &str)] = &[
        (0x0000000000000000, "0"),
        (0x8000000000000000, "0"),
        (0x0000000000000001, "5e-324"),
        (0x8000000000000001, "-5e-324"),
        (0x7fefffffffffffff, "1.7976931348623157e+308"),
        (0xffefffffffffffff, "-1.7976931348623157e+308"),
        (0x4340000000000000, "9007199254740992"),
        (0xc340000000000000, "-9007199254740992"),
        (0x4430000000000000, "295147905179352830000"),
        (0x44b52d02c7e14af5, "9.999999999999997e+22"),
        (0x44b52d02c7e14af6, "1e+23"),
        (0x44b52d02c7e14af7, "1.0000000000000001e+23"),
        (0x444b1ae4d6e2ef4e, "999999999999999700000"),
        (0x444b1ae4d6e2ef4f, "999999999999999900000"),
        (0x444b1ae4d6e2ef50, "1e+21"),
        (0x3eb0c6f7a0b5ed8c, "9.999999999999997e-7"),
        (0x3eb0c6f7a0b5ed8d, "0.000001"),
        (0x41b3de4355555553, "333333333.3333332"),
        (0x41b3de4355555554, "333333333.33333325"),
        (0x41b3de4355555555, "333333333.3333333"),
        (0x41b3de4355555556, "333333333.3333334"),
        (0x41b3de4355555557, "333333333.33333343"),
        (0xbecbf647612f3696, "-0.0000033333333333333333"),
        (0x43143ff3c1cb0959, "1424953923781206.2"),
    ];
    for &(bits, expected) in cases {
        let mut out = String::new();
        canonical::write_double(f64::from_bits(bits), &mut out).unwrap();
        assert_eq!(out, expected, "bits {bits:016x}");
        // The same through a serde_json value, and back through the parser.
        if let Some(n) = serde_json::Number::from_f64(f64::from_bits(bits)) {
            assert_eq!(canonical::to_string(&Value::Number(n)).unwrap(), expected);
            let reparsed = canonical::canonicalize_json(expected.as_bytes()).unwrap();
            assert_eq!(reparsed, expected.as_bytes(), "bits {bits:016x} reparsed");
        }
    }
    for bad in [f64::NAN, f64::INFINITY, f64::NEG_INFINITY] {
        let mut out = String::new();
        assert!(matches!(
            canonical::write_double(bad, &mut out),
            Err(CanonicalError::NotFinite(_))
        ));
    }
}

#[test]
fn strings_escape_as_ecmascript_does() {
    let value = json!("a\u{0}\u{1f}\u{8}\u{c}\t\r\n\"\\/\u{7f}\u{2028}é😀");
    assert_eq!(
        canonical::to_string(&value).unwrap(),
        "\"a\\u0000\\u001f\\b\\f\\t\\r\\n\\\"\\\\/\u{7f}\u{2028}é😀\""
    );
}

#[test]
fn integers_print_as_digits_and_refuse_to_lose_precision() {
    let value = json!({"b": -9007199254740992i64, "a": 9007199254740992u64, "c": 0, "d": 1.0});
    assert_eq!(
        canonical::to_string(&value).unwrap(),
        r#"{"a":9007199254740992,"b":-9007199254740992,"c":0,"d":1}"#
    );
    // A large integer is fine when its nearest double prints as the same digits.
    assert_eq!(
        canonical::to_string(&json!([8540040102681085000u64, -8540040102681085000i64])).unwrap(),
        "[8540040102681085000,-8540040102681085000]"
    );
    // Otherwise the canonical text would state another integer: refused.
    for big in [
        json!(9007199254740993u64),
        json!(-9007199254740993i64),
        json!(1u64 << 60),
        json!(i64::MIN),
        json!(u64::MAX),
    ] {
        match canonical::to_vec(&json!({ "n": big })) {
            Err(CanonicalError::IntegerOutOfRange(text)) => assert_eq!(text, big.to_string()),
            other => panic!("expected IntegerOutOfRange, got {other:?}"),
        }
    }
}

#[test]
fn nesting_is_limited() {
    let mut deep = json!(1);
    for _ in 0..MAX_DEPTH {
        deep = json!([deep]);
    }
    assert!(canonical::to_vec(&deep).is_ok());
    let too_deep = json!({ "x": deep });
    assert_eq!(canonical::to_vec(&too_deep), Err(CanonicalError::TooDeep));
}

#[test]
fn is_canonical_rejects_whitespace_order_duplicates_and_non_json() {
    assert!(canonical::is_canonical(br#"{"a":1,"b":[true]}"#).unwrap());
    assert!(!canonical::is_canonical(br#"{"b":1,"a":2}"#).unwrap());
    assert!(!canonical::is_canonical(br#"{"a": 1}"#).unwrap());
    assert!(!canonical::is_canonical(br#"{"a":1,"a":1}"#).unwrap());
    assert!(!canonical::is_canonical(br#"{"a":1.50}"#).unwrap());
    assert!(!canonical::is_canonical(br#""\u0041""#).unwrap());
    assert!(matches!(
        canonical::is_canonical(b"{\"a\":"),
        Err(CanonicalError::Parse(_))
    ));
}

fn arb_json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        (-(1i64 << 53)..=(1i64 << 53)).prop_map(|n| json!(n)),
        any::<f64>()
            .prop_filter_map("finite", serde_json::Number::from_f64)
            .prop_map(Value::Number),
        any::<String>().prop_map(Value::String),
    ];
    leaf.prop_recursive(4, 48, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::btree_map(any::<String>(), inner, 0..6)
                .prop_map(|m| Value::Object(m.into_iter().collect())),
        ]
    })
}

proptest! {
    /// Canonical text parses back to the same value, and is its own
    /// canonical form.
    #[test]
    fn canonical_round_trips_and_is_idempotent(value in arb_json()) {
        let bytes = canonical::to_vec(&value).unwrap();
        let back: Value = serde_json::from_slice(&bytes).unwrap();
        prop_assert_eq!(canonical::to_vec(&back).unwrap(), bytes.clone());
        prop_assert!(canonical::is_canonical(&bytes).unwrap());
        // Same numbers (as doubles), same strings, same structure.
        prop_assert!(same_json(&back, &value));
    }

    /// Member names come out sorted by UTF-16 code units.
    #[test]
    fn names_sorted_by_utf16(names in prop::collection::btree_set(any::<String>(), 0..8)) {
        let value = Value::Object(names.iter().map(|n| (n.clone(), Value::Null)).collect());
        let text = canonical::to_string(&value).unwrap();
        let mut sorted: Vec<&String> = names.iter().collect();
        sorted.sort_by(|a, b| a.encode_utf16().cmp(b.encode_utf16()));
        let members: Vec<String> = sorted
            .iter()
            .map(|n| format!("{}:null", canonical::to_string(&json!(n)).unwrap()))
            .collect();
        prop_assert_eq!(text, format!("{{{}}}", members.join(",")));
    }
}

fn same_json(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().zip(y).all(|(p, q)| same_json(p, q))
        }
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len()
                && x.iter()
                    .all(|(k, v)| y.get(k).is_some_and(|w| same_json(v, w)))
        }
        _ => a == b,
    }
}
