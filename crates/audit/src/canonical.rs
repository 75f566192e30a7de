//! RFC 8785 JSON Canonicalization Scheme (JCS) for `serde_json::Value`.
//!
//! A log entry is hashed as its canonical bytes, so two implementations that
//! agree on RFC 8785 agree on every leaf hash. The rules:
//!
//! - no whitespace; object members sorted by their names compared as
//!   UTF-16 code units (not UTF-8 bytes: they differ for names that mix
//!   characters above U+FFFF with characters in U+E000..U+FFFF);
//! - strings escaped as ECMAScript `JSON.stringify` does: `\"`, `\\`, `\b`,
//!   `\f`, `\n`, `\r`, `\t`, other controls below U+0020 as `\u00xx` (lower
//!   case), everything else as literal UTF-8;
//! - numbers as ECMAScript `Number.prototype.toString` prints the IEEE 754
//!   double: the shortest digits that round-trip, plain notation for
//!   exponents in [-6, 21), `1e+21` style otherwise, `-0` as `0`.
//!
//! **Decision on numbers.** Doubles are implemented per the spec (Rust's
//! shortest round-trip formatting gives the digits, ECMAScript's rules the
//! layout; RFC 8785 Appendix B passes). Integers are the common case and
//! print as their digits, which is what ECMAScript prints for every integer
//! of magnitude ≤ 2^53. A larger integer is accepted only if the double
//! nearest to it prints as the same digits (`8540040102681085000`, which is
//! how a large double prints). Otherwise (2^53 + 1, or 2^60, which prints
//! as `1152921504606847000`) it is **rejected**
//! ([`CanonicalError::IntegerOutOfRange`]) instead of being rewritten:
//! silently changing a value that goes into an audit record is worse than a
//! clear error. Store such values (large ids, counters) as strings.
//!
//! Nesting is limited to [`MAX_DEPTH`] levels so a hostile value cannot
//! exhaust the stack.

use std::cmp::Ordering;
use std::fmt::Write as _;

use serde_json::{Map, Number, Value};
use thiserror::Error;

/// The deepest nesting of arrays and objects accepted.
pub const MAX_DEPTH: usize = 128;

/// The largest integer magnitude a double holds exactly (2^53).
const MAX_EXACT_INTEGER: u64 = 1 << 53;

/// A value that has no RFC 8785 form.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CanonicalError {
    #[error(
        "integer {0} is beyond ±2^53 and its RFC 8785 form (the nearest double) would state a different value; store it as a string"
    )]
    IntegerOutOfRange(String),
    #[error("number {0} is not a finite IEEE 754 double")]
    NotFinite(String),
    #[error("nesting deeper than {MAX_DEPTH} levels")]
    TooDeep,
    #[error("not JSON: {0}")]
    Parse(String),
}

/// The canonical bytes of `value`.
pub fn to_vec(value: &Value) -> Result<Vec<u8>, CanonicalError> {
    let mut out = String::new();
    write_value(value, &mut out, 0)?;
    Ok(out.into_bytes())
}

/// The canonical text of `value`.
pub fn to_string(value: &Value) -> Result<String, CanonicalError> {
    let mut out = String::new();
    write_value(value, &mut out, 0)?;
    Ok(out)
}

/// Appends the canonical text of `value` to `out`.
pub fn write(value: &Value, out: &mut String) -> Result<(), CanonicalError> {
    write_value(value, out, 0)
}

/// Parses JSON text and returns its canonical bytes.
///
/// serde_json keeps the last of duplicate member names; RFC 8785 input must
/// not have any, so bytes with duplicates are never *equal* to their
/// canonical form and [`is_canonical`] rejects them.
pub fn canonicalize_json(text: &[u8]) -> Result<Vec<u8>, CanonicalError> {
    let value: Value =
        serde_json::from_slice(text).map_err(|e| CanonicalError::Parse(e.to_string()))?;
    to_vec(&value)
}

/// Whether `bytes` are exactly the canonical form of the JSON they hold.
pub fn is_canonical(bytes: &[u8]) -> Result<bool, CanonicalError> {
    Ok(canonicalize_json(bytes)? == bytes)
}

fn write_value(value: &Value, out: &mut String, depth: usize) -> Result<(), CanonicalError> {
    match value {
        Value::Null => out.push_str("null"),
        Value::Bool(true) => out.push_str("true"),
        Value::Bool(false) => out.push_str("false"),
        Value::Number(n) => write_number(n, out)?,
        Value::String(s) => write_string(s, out),
        Value::Array(items) => {
            let depth = deeper(depth)?;
            out.push('[');
            for (i, item) in items.iter().enumerate() {
                if i > 0 {
                    out.push(',');
                }
                write_value(item, out, depth)?;
            }
            out.push(']');
        }
        Value::Object(map) => {
            let depth = deeper(depth)?;
            write_object(map, out, depth)?;
        }
    }
    Ok(())
}

fn deeper(depth: usize) -> Result<usize, CanonicalError> {
    if depth >= MAX_DEPTH {
        return Err(CanonicalError::TooDeep);
    }
    Ok(depth + 1)
}

fn write_object(
    map: &Map<String, Value>,
    out: &mut String,
    depth: usize,
) -> Result<(), CanonicalError> {
    let mut members: Vec<(&String, &Value)> = map.iter().collect();
    members.sort_by(|a, b| utf16_cmp(a.0, b.0));
    out.push('{');
    for (i, (name, value)) in members.into_iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        write_string(name, out);
        out.push(':');
        write_value(value, out, depth)?;
    }
    out.push('}');
    Ok(())
}

/// Compares two strings as sequences of UTF-16 code units.
pub fn utf16_cmp(a: &str, b: &str) -> Ordering {
    // Byte order equals code point order; the two orders only differ when
    // a character above U+FFFF meets one in U+E000..=U+FFFF, so the cheap
    // comparison is exact for the usual ASCII names.
    if a.is_ascii() && b.is_ascii() {
        return a.cmp(b);
    }
    a.encode_utf16().cmp(b.encode_utf16())
}

fn write_string(s: &str, out: &mut String) {
    out.push('"');
    let mut run_start = 0;
    for (i, byte) in s.bytes().enumerate() {
        let escape: Option<&str> = match byte {
            b'"' => Some("\\\""),
            b'\\' => Some("\\\\"),
            0x08 => Some("\\b"),
            0x09 => Some("\\t"),
            0x0a => Some("\\n"),
            0x0c => Some("\\f"),
            0x0d => Some("\\r"),
            0x00..=0x1f => None,
            _ => continue,
        };
        out.push_str(&s[run_start..i]);
        match escape {
            Some(text) => out.push_str(text),
            None => {
                let _ = write!(out, "\\u{byte:04x}");
            }
        }
        run_start = i + 1;
    }
    out.push_str(&s[run_start..]);
    out.push('"');
}

fn write_number(n: &Number, out: &mut String) -> Result<(), CanonicalError> {
    if let Some(u) = n.as_u64() {
        if u <= MAX_EXACT_INTEGER {
            let _ = write!(out, "{u}");
            return Ok(());
        }
        return write_large_integer(u.to_string(), u as f64, out);
    }
    if let Some(i) = n.as_i64() {
        if i.unsigned_abs() <= MAX_EXACT_INTEGER {
            let _ = write!(out, "{i}");
            return Ok(());
        }
        return write_large_integer(i.to_string(), i as f64, out);
    }
    match n.as_f64() {
        Some(f) => write_double(f, out),
        None => Err(CanonicalError::NotFinite(n.to_string())),
    }
}

/// An integer beyond ±2^53 is a JSON number like any other: its value is the
/// nearest double (`nearest`, what `as f64` gives). It is accepted only when
/// that double prints as the very same digits, so the canonical text never
/// states a different integer than the one given.
fn write_large_integer(
    digits: String,
    nearest: f64,
    out: &mut String,
) -> Result<(), CanonicalError> {
    let mut text = String::new();
    write_double(nearest, &mut text)?;
    if text != digits {
        return Err(CanonicalError::IntegerOutOfRange(digits));
    }
    out.push_str(&text);
    Ok(())
}

/// Writes a double as ECMAScript's `Number.prototype.toString` does
/// (ECMA-262 §6.1.6.1.20, `Number::toString` with radix 10).
pub fn write_double(value: f64, out: &mut String) -> Result<(), CanonicalError> {
    if !value.is_finite() {
        return Err(CanonicalError::NotFinite(value.to_string()));
    }
    if value == 0.0 {
        // Both +0 and -0.
        out.push('0');
        return Ok(());
    }
    if value < 0.0 {
        out.push('-');
    }
    // `{:e}` prints the shortest digits that round-trip: "d.ddde-7", "5e-324".
    let sci = format!("{:e}", value.abs());
    let (mantissa, exponent) = sci.split_once('e').unwrap_or((sci.as_str(), "0"));
    let digits: String = mantissa.chars().filter(char::is_ascii_digit).collect();
    let exponent: i32 = exponent.parse().unwrap_or(0);
    let digits = ties_to_even(value.abs(), digits, exponent);
    let k = digits.len() as i32;
    // value = digits × 10^(n − k)
    let n = exponent + 1;
    if k <= n && n <= 21 {
        out.push_str(&digits);
        out.extend(std::iter::repeat_n('0', (n - k) as usize));
    } else if 0 < n && n <= 21 {
        let (int, frac) = digits.split_at(n as usize);
        out.push_str(int);
        out.push('.');
        out.push_str(frac);
    } else if -6 < n && n <= 0 {
        out.push_str("0.");
        out.extend(std::iter::repeat_n('0', (-n) as usize));
        out.push_str(&digits);
    } else {
        let (first, rest) = digits.split_at(1);
        out.push_str(first);
        if !rest.is_empty() {
            out.push('.');
            out.push_str(rest);
        }
        let e = n - 1;
        let sign = if e < 0 { '-' } else { '+' };
        let _ = write!(out, "e{sign}{}", e.unsigned_abs());
    }
    Ok(())
}

/// ECMAScript picks, among the shortest digit strings that round-trip, the
/// one closest to the exact value and, on a tie, the one with an even last
/// digit; Rust's shortest formatting rounds such ties up
/// (1424953923781206.25 → `…06.3`, where ECMAScript prints `…06.2`).
///
/// A tie means the exact decimal expansion continues with `5000…` right
/// after the shortest digits. A double's expansion has at most 767
/// significant digits, so 770 digits are exact.
fn ties_to_even(value: f64, digits: String, exponent: i32) -> String {
    let exact = format!("{value:.770e}");
    let Some((mantissa, exact_exponent)) = exact.split_once('e') else {
        return digits;
    };
    if exact_exponent.parse::<i32>().ok() != Some(exponent) {
        return digits;
    }
    let all: Vec<u8> = mantissa.bytes().filter(u8::is_ascii_digit).collect();
    let k = digits.len();
    let Some((&first_dropped, rest)) = all.get(k..).and_then(<[u8]>::split_first) else {
        return digits;
    };
    if first_dropped != b'5' || rest.iter().any(|&d| d != b'0') {
        return digits;
    }
    // A tie between the truncated digits and the truncated digits + 1.
    let lower: Vec<u8> = all[..k].to_vec();
    let mut upper = lower.clone();
    let mut carry = true;
    for d in upper.iter_mut().rev() {
        if *d == b'9' {
            *d = b'0';
        } else {
            *d += 1;
            carry = false;
            break;
        }
    }
    if carry {
        return digits;
    }
    let even = match lower.last() {
        Some(d) if (d - b'0').is_multiple_of(2) => lower,
        _ => upper,
    };
    let Ok(even) = String::from_utf8(even) else {
        return digits;
    };
    if even == digits {
        return digits;
    }
    // Take the even candidate only if it still reads back as the value.
    let (head, tail) = even.split_at(1);
    let candidate = format!("{head}.{tail}e{exponent}");
    match candidate.parse::<f64>() {
        Ok(back) if back == value => even,
        _ => digits,
    }
}
