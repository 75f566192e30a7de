//! The outbound webhook: a signed JSON `POST` per notification.
//!
//! Headers, so a receiver can trust and deduplicate what it gets:
//! - `Gatehouse-Signature: t=<unix seconds>,v1=<hex>` where `<hex>` is
//!   HMAC-SHA256 with the shared secret over `"<t>.<body>"` (the exact body
//!   bytes). Receivers recompute it, compare in constant time, and refuse a
//!   `t` too far from their clock (replay protection).
//! - `Idempotency-Key: <notification id>`: the same on every attempt;
//!   delivery is at-least-once, so receivers drop repeats by this key.
//!
//! The body is the same on every attempt (only `t` changes). A 2xx answer
//! is delivery; 408, 429 and 5xx, timeouts and connection failures are
//! retried (`Retry-After` honoured); any other answer, redirects included,
//! is a permanent failure. Error messages never contain the URL, which may
//! carry a token.

use std::fmt;
use std::time::Duration;

use async_trait::async_trait;
use gatehouse_core::notify::{EmailAddress, Notification};
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::Sha256;
use time::OffsetDateTime;

use super::{Channel, DeliveryError};
use crate::retry::parse_retry_after;

/// The signature header's name.
pub const SIGNATURE_HEADER: &str = "Gatehouse-Signature";

/// Why a webhook channel cannot be set up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum WebhookConfigError {
    /// The URL does not parse or is not http(s).
    #[error("notify_webhook_url: {0}")]
    Url(String),
    /// The secret is missing or too short.
    #[error("notify_webhook_secret: {0}")]
    Secret(String),
    /// The HTTP client could not be built.
    #[error("webhook HTTP client: {0}")]
    Client(String),
}

/// `t=<t>,v1=<hex HMAC-SHA256(secret, "<t>.<body>")>`.
pub fn signature(secret: &[u8], t: i64, body: &[u8]) -> String {
    // HMAC takes keys of any length, so this never fails; an empty MAC
    // would be refused by every receiver rather than accepted.
    let mac = <Hmac<Sha256> as Mac>::new_from_slice(secret).map(|mut mac| {
        mac.update(t.to_string().as_bytes());
        mac.update(b".");
        mac.update(body);
        hex::encode(mac.finalize().into_bytes())
    });
    format!("t={t},v1={}", mac.unwrap_or_default())
}

/// The JSON a receiver gets.
pub fn payload(notification: &Notification, recipient: Option<&EmailAddress>) -> serde_json::Value {
    json!({
        "id": notification.id,
        "kind": notification.kind,
        "tenant_id": notification.tenant_id,
        "instance_id": notification.instance_id,
        "step_id": notification.step_id,
        "recipient": recipient,
        "subject": notification.subject,
        "detail": notification.detail,
        "created_at": notification.created_at.unix_timestamp(),
    })
}

/// Posts notifications to one URL.
pub struct WebhookChannel {
    client: reqwest::Client,
    url: reqwest::Url,
    secret: Vec<u8>,
}

impl fmt::Debug for WebhookChannel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The URL may carry a token: show its host only.
        f.debug_struct("WebhookChannel")
            .field("host", &self.url.host_str())
            .field("secret", &"<redacted>")
            .finish()
    }
}

impl WebhookChannel {
    /// A channel posting to `url`, signing with `secret` (at least 16
    /// bytes), giving up on an attempt after `timeout`.
    pub fn new(url: &str, secret: &str, timeout: Duration) -> Result<Self, WebhookConfigError> {
        let url = reqwest::Url::parse(url)
            .map_err(|e| WebhookConfigError::Url(format!("not a URL: {e}")))?;
        if !matches!(url.scheme(), "http" | "https") {
            return Err(WebhookConfigError::Url(format!(
                "the scheme must be http or https, not `{}`",
                url.scheme()
            )));
        }
        if secret.len() < 16 {
            return Err(WebhookConfigError::Secret(
                "must be at least 16 characters, so that signatures cannot be guessed".into(),
            ));
        }
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("gatehouse/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| WebhookConfigError::Client(e.to_string()))?;
        Ok(Self {
            client,
            url,
            secret: secret.as_bytes().to_vec(),
        })
    }
}

#[async_trait]
impl Channel for WebhookChannel {
    fn name(&self) -> &'static str {
        "webhook"
    }

    async fn send(
        &self,
        notification: &Notification,
        recipient: Option<&EmailAddress>,
        now: OffsetDateTime,
    ) -> Result<(), DeliveryError> {
        let body = serde_json::to_vec(&payload(notification, recipient))
            .map_err(|e| DeliveryError::permanent(format!("encoding the body: {e}")))?;
        let signature = signature(&self.secret, now.unix_timestamp(), &body);
        let response = self
            .client
            .post(self.url.clone())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .header(SIGNATURE_HEADER, signature)
            .header("Idempotency-Key", notification.id.to_string())
            .body(body)
            .send()
            .await
            .map_err(|e| {
                let e = e.without_url();
                let what = if e.is_timeout() {
                    "timed out"
                } else if e.is_connect() {
                    "could not connect"
                } else {
                    "request failed"
                };
                DeliveryError::retryable(format!("{what}: {e}"))
            })?;
        let status = response.status();
        if status.is_success() {
            return Ok(());
        }
        let message = format!("the receiver answered HTTP {status}");
        if status.as_u16() == 429 || status.as_u16() == 408 || status.is_server_error() {
            let retry_after = response
                .headers()
                .get(reqwest::header::RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, now));
            return Err(DeliveryError::Retryable {
                message,
                retry_after,
            });
        }
        if status.is_redirection() {
            return Err(DeliveryError::permanent(format!(
                "{message}; redirects are not followed: configure the final URL"
            )));
        }
        Err(DeliveryError::permanent(message))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_rfc_4231_hmac_sha256_over_t_dot_body() {
        // RFC 4231 test case 2 pins the primitive; then the header's
        // construction over "<t>.<body>".
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(b"Jefe").unwrap();
        mac.update(b"what do ya want for nothing?");
        assert_eq!(
            hex::encode(mac.finalize().into_bytes()),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(b"secret").unwrap();
        mac.update(b"1767225600.{\"a\":1}");
        let expected = hex::encode(mac.finalize().into_bytes());
        assert_eq!(
            signature(b"secret", 1_767_225_600, b"{\"a\":1}"),
            format!("t=1767225600,v1={expected}")
        );
    }

    #[test]
    fn bad_configuration_is_refused_with_the_setting_named() {
        let err =
            WebhookChannel::new("ftp://x", "0123456789abcdef", Duration::from_secs(1)).unwrap_err();
        assert!(err.to_string().contains("notify_webhook_url"), "{err}");
        let err = WebhookChannel::new("https://x.example/hook", "short", Duration::from_secs(1))
            .unwrap_err();
        assert!(err.to_string().contains("notify_webhook_secret"), "{err}");
        let channel = WebhookChannel::new(
            "https://hooks.example/T0/secret-token",
            "0123456789abcdef",
            Duration::from_secs(1),
        )
        .unwrap();
        let shown = format!("{channel:?}");
        assert!(
            !shown.contains("secret-token") && !shown.contains("0123456789abcdef"),
            "{shown}"
        );
    }
}
