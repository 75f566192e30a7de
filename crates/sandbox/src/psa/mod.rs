//! Emulators of the three PSAs Gatehouse integrates with: ConnectWise PSA
//! ([`connectwise`]), Autotask ([`autotask`]) and HaloPSA ([`halopsa`]).
//!
//! Each speaks its vendor's REST shapes (paths, authentication, paging,
//! error bodies) closely enough that the connectors' real HTTP clients run
//! against them unchanged, and each delivers its vendor's webhook, signed
//! or authenticated the way the vendor does, so the webhook checks can be
//! tested end to end. What they leave out is listed in
//! `docs/connectors-psa.md`.
//!
//! Shared here: the record of one outbound webhook delivery ([`Delivery`]),
//! which a test can send again (a duplicate) or alter (a tampered body), and
//! a few helpers for ids, dates and JSON field lookup.

pub mod autotask;
pub mod connectwise;
pub mod halopsa;

use std::time::Duration;

use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

/// How long an emulator waits for a webhook receiver.
const DELIVERY_TIMEOUT: Duration = Duration::from_secs(10);

/// One webhook delivery an emulator made (or would make): where, with which
/// headers, which exact bytes, and what the receiver answered.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Delivery {
    /// The receiver's URL.
    pub url: String,
    /// Headers sent besides `content-type: application/json`.
    pub headers: Vec<(String, String)>,
    /// The body, byte for byte (what the signature covers).
    pub body: Vec<u8>,
    /// The receiver's HTTP status, or `None` when it could not be reached.
    pub status: Option<u16>,
}

impl Delivery {
    /// The first value of a header (name in any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The same delivery with another body and the original headers (a
    /// tampered delivery: the signature no longer matches).
    pub fn with_body(&self, body: impl Into<Vec<u8>>) -> Self {
        Self {
            body: body.into(),
            status: None,
            ..self.clone()
        }
    }

    /// Sends this delivery again, as it is; answers the receiver's status
    /// (`None` when it could not be reached).
    pub async fn send(&self) -> Option<u16> {
        post(&self.url, &self.headers, &self.body).await
    }
}

/// POSTs `body` as JSON with `headers` to `url`; the status, or `None` on a
/// transport failure.
pub(crate) async fn post(url: &str, headers: &[(String, String)], body: &[u8]) -> Option<u16> {
    let client = reqwest::Client::builder()
        .timeout(DELIVERY_TIMEOUT)
        .build()
        .ok()?;
    let mut request = client
        .post(url)
        .header("content-type", "application/json")
        .body(body.to_vec());
    for (name, value) in headers {
        request = request.header(name, value);
    }
    match request.send().await {
        Ok(answer) => Some(answer.status().as_u16()),
        Err(error) => {
            tracing::debug!(%error, "webhook delivery failed");
            None
        }
    }
}

/// A random lowercase hex string of `bytes` random bytes.
pub(crate) fn random_hex(bytes: usize) -> String {
    let mut buf = vec![0u8; bytes];
    if getrandom::fill(&mut buf).is_err() {
        // Only keys of a test emulator: a fixed fallback is harmless.
        buf.iter_mut().enumerate().for_each(|(i, b)| *b = i as u8);
    }
    buf.iter().map(|b| format!("{b:02x}")).collect()
}

/// A random GUID-shaped string.
pub(crate) fn random_guid() -> String {
    let h = random_hex(16);
    format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    )
}

/// RFC 3339 text of `at` (UTC, whole seconds, `Z`).
pub(crate) fn rfc3339(at: OffsetDateTime) -> String {
    let at = at.replace_nanosecond(0).unwrap_or(at);
    at.format(&Rfc3339).unwrap_or_default()
}

/// The start of an emulator's own clock: 2026-01-01T00:00:00Z. Emulators
/// do not read the wall clock; tests move their clock with `set_now`.
pub(crate) fn epoch() -> OffsetDateTime {
    OffsetDateTime::from_unix_timestamp(1_767_225_600).unwrap_or(OffsetDateTime::UNIX_EPOCH)
}

/// Orders two JSON values the way a PSA filter compares them: numbers as
/// numbers, RFC 3339 dates as instants, other strings as text
/// (case-insensitively), booleans as booleans. `None` when incomparable.
pub(crate) fn compare(a: &Value, b: &Value) -> Option<std::cmp::Ordering> {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64()?.partial_cmp(&y.as_f64()?),
        (Value::Number(x), Value::String(y)) | (Value::String(y), Value::Number(x))
            if y.parse::<f64>().is_ok() =>
        {
            let (x, y) = (x.as_f64()?, y.parse::<f64>().ok()?);
            if matches!(a, Value::Number(_)) {
                x.partial_cmp(&y)
            } else {
                y.partial_cmp(&x)
            }
        }
        (Value::String(x), Value::String(y)) => {
            match (
                OffsetDateTime::parse(x, &Rfc3339),
                OffsetDateTime::parse(y, &Rfc3339),
            ) {
                (Ok(x), Ok(y)) => Some(x.cmp(&y)),
                _ => Some(x.to_lowercase().cmp(&y.to_lowercase())),
            }
        }
        (Value::Bool(x), Value::Bool(y)) => Some(x.cmp(y)),
        (Value::Null, Value::Null) => Some(std::cmp::Ordering::Equal),
        _ => None,
    }
}

/// The member of `object` named `name`, ignoring case (Autotask and Halo
/// accept field names in any case).
pub(crate) fn field<'a>(object: &'a Value, name: &str) -> Option<&'a Value> {
    object
        .as_object()?
        .iter()
        .find(|(k, _)| k.eq_ignore_ascii_case(name))
        .map(|(_, v)| v)
}

/// Base64 (standard alphabet) of `bytes`.
pub(crate) fn base64(bytes: &[u8]) -> String {
    use base64::Engine as _;
    base64::engine::general_purpose::STANDARD.encode(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;
    use std::cmp::Ordering;

    #[test]
    fn dates_compare_as_instants_not_text() {
        assert_eq!(
            compare(
                &json!("2026-01-01T00:00:00.5Z"),
                &json!("2026-01-01T00:00:00Z")
            ),
            Some(Ordering::Greater)
        );
        assert_eq!(compare(&json!(3), &json!("3")), Some(Ordering::Equal));
        assert_eq!(compare(&json!("b"), &json!("A")), Some(Ordering::Greater));
        assert_eq!(compare(&json!(true), &json!(1)), None);
    }
}
