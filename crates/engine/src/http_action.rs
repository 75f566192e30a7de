//! `http.post`: a step that POSTs JSON to a URL, carrying its idempotency key.
//!
//! The generic way to reach a system that has no connector yet (an internal
//! API, an automation webhook), and the action the crash test drives. The
//! target gets `Idempotency-Key: <the step's key>`, the same on every
//! attempt, so a target that honours the header acts once however often the
//! engine has to ask (see "The guarantee" in `docs/engine.md`).
//!
//! Parameters: `url` (http or https), `body` (any JSON, default `{}`),
//! `headers` (a table of strings; `Idempotency-Key` and `Content-Type` are
//! the engine's). How answers map onto the engine's retry rules:
//!
//! | answer | result |
//! | --- | --- |
//! | 2xx | success: the response JSON, or `{"status": N}` if it is not JSON |
//! | 429, 502, 503, 504; no connection; a timeout | retryable, honouring `Retry-After` |
//! | any other status (redirects are not followed) | permanent, with the status and a body excerpt |
//!
//! One `reqwest::Client` (one connection pool) serves every step. Header
//! values and URL queries may hold secrets, so neither reaches an error
//! message (and so the journal or a log).

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use gatehouse_core::clock::Clock;
use reqwest::header::{HeaderMap, HeaderName, HeaderValue};
use reqwest::{StatusCode, Url};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::action::{Action, ActionCall, ActionError};
use crate::retry::parse_retry_after;

/// The name templates use.
pub const NAME: &str = "http.post";

/// How long establishing a connection may take; the step's `timeout` bounds
/// the whole call.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);

/// How much of an error response's body is kept in the error message.
const EXCERPT_CHARS: usize = 200;

/// Headers a template may not set: the engine's own.
const RESERVED_HEADERS: [&str; 3] = ["idempotency-key", "content-type", "content-length"];

/// The `http.post` action.
#[derive(Debug, Clone)]
pub struct HttpPost {
    client: reqwest::Client,
    clock: Arc<dyn Clock>,
}

/// The HTTP client could not be built (no TLS roots, for example).
#[derive(Debug, thiserror::Error)]
#[error("cannot build the HTTP client of `http.post`: {0}")]
pub struct HttpPostInitError(#[source] reqwest::Error);

/// The parameters, as the template renders them.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    url: String,
    #[serde(default)]
    body: Option<Value>,
    #[serde(default)]
    headers: BTreeMap<String, String>,
}

impl HttpPost {
    /// The action; `clock` reads `Retry-After` dates.
    pub fn new(clock: Arc<dyn Clock>) -> Result<Self, HttpPostInitError> {
        let client = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            // A redirected POST may turn into a GET, or go somewhere the
            // template's author never named: refuse it.
            .redirect(reqwest::redirect::Policy::none())
            .user_agent(concat!("gatehouse/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(HttpPostInitError)?;
        Ok(Self { client, clock })
    }
}

/// The URL without its query, fragment or credentials: safe to show.
/// The largest answer read from a target.
pub const MAX_ANSWER_BYTES: usize = 1 << 20;

fn shown(url: &Url) -> String {
    let mut safe = url.clone();
    safe.set_query(None);
    safe.set_fragment(None);
    // Only fails for URLs that cannot have credentials, which have none.
    let _ = safe.set_username("");
    let _ = safe.set_password(None);
    safe.to_string()
}

fn parse_params(params: &Value) -> Result<(Url, Value, HeaderMap), ActionError> {
    let params: Params = serde_json::from_value(params.clone())
        .map_err(|e| ActionError::permanent(format!("http.post parameters: {e}")))?;
    let url = Url::parse(&params.url)
        .map_err(|e| ActionError::permanent(format!("http.post url: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") {
        return Err(ActionError::permanent(format!(
            "http.post url: only http and https are allowed, not `{}`",
            url.scheme()
        )));
    }
    let mut headers = HeaderMap::new();
    for (name, value) in &params.headers {
        let header = HeaderName::from_bytes(name.as_bytes()).map_err(|_| {
            ActionError::permanent(format!("http.post headers: `{name}` is not a header name"))
        })?;
        if RESERVED_HEADERS.contains(&header.as_str()) {
            return Err(ActionError::permanent(format!(
                "http.post headers: `{name}` is set by the engine"
            )));
        }
        // The value is never shown: it may be a credential.
        let value = HeaderValue::from_str(value).map_err(|_| {
            ActionError::permanent(format!(
                "http.post headers: the value of `{name}` is not a valid header value"
            ))
        })?;
        headers.insert(header, value);
    }
    Ok((url, params.body.unwrap_or_else(|| json!({})), headers))
}

/// The first characters of a body, on one line.
fn excerpt(body: &str) -> String {
    let mut text: String = body
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .take(EXCERPT_CHARS)
        .collect();
    if body.chars().count() > EXCERPT_CHARS {
        text.push('…');
    }
    text.trim().to_owned()
}

/// Whether a status is worth retrying: the target is busy or a gateway
/// could not reach it.
fn transient(status: StatusCode) -> bool {
    matches!(
        status,
        StatusCode::TOO_MANY_REQUESTS
            | StatusCode::BAD_GATEWAY
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::GATEWAY_TIMEOUT
    )
}

#[async_trait]
impl Action for HttpPost {
    async fn run(&self, call: ActionCall<'_>) -> Result<Value, ActionError> {
        let (url, body, headers) = parse_params(call.params)?;
        let target = shown(&url);
        let response = self
            .client
            .post(url)
            .headers(headers)
            .header("idempotency-key", call.idempotency_key)
            .json(&body)
            .send()
            .await
            .map_err(|e| {
                let why = if e.is_timeout() {
                    "timed out"
                } else if e.is_connect() {
                    "cannot connect"
                } else {
                    "request failed"
                };
                // `without_url`: the error's own text would repeat the query.
                ActionError::retryable(format!("POST {target}: {why}: {}", e.without_url()))
            })?;
        let status = response.status();
        let retry_after = response
            .headers()
            .get(reqwest::header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, self.clock.now()));
        // A 2xx whose body is lost is retried: the target acted, and the
        // next attempt (same key) gets its stored answer.
        let mut response = response;
        let mut body = Vec::new();
        loop {
            let chunk = response.chunk().await.map_err(|e| {
                ActionError::retryable(format!(
                    "POST {target}: {status}: reading the answer failed: {}",
                    e.without_url()
                ))
            })?;
            let Some(chunk) = chunk else { break };
            if body.len() + chunk.len() > MAX_ANSWER_BYTES {
                // The answer becomes the step's output, kept in the
                // workflow's context: a target must not be able to fill it.
                return Err(ActionError::permanent(format!(
                    "POST {target}: {status}: the answer is larger than {MAX_ANSWER_BYTES} bytes"
                )));
            }
            body.extend_from_slice(&chunk);
        }
        let text = String::from_utf8_lossy(&body);
        if status.is_success() {
            return Ok(serde_json::from_str(&text)
                .unwrap_or_else(|_| json!({ "status": status.as_u16() })));
        }
        let message = format!("POST {target}: {status}: {}", excerpt(&text));
        if transient(status) {
            Err(ActionError::Retryable {
                message,
                retry_after,
            })
        } else {
            Err(ActionError::permanent(message))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parameters_are_checked_before_anything_is_sent() {
        let bad = [
            json!({}),
            json!({ "url": "ftp://example.com/x" }),
            json!({ "url": "not a url" }),
            json!({ "url": "http://example.com", "method": "GET" }),
            json!({ "url": "http://example.com", "headers": { "Idempotency-Key": "mine" } }),
            json!({ "url": "http://example.com", "headers": { "bad name": "x" } }),
            json!({ "url": "http://example.com", "headers": { "x-n": 1 } }),
        ];
        for params in bad {
            match parse_params(&params) {
                Err(ActionError::Permanent { message }) => {
                    assert!(message.starts_with("http.post"), "{message}");
                }
                other => panic!("{params} should be refused, got {other:?}"),
            }
        }
        let (url, body, headers) = parse_params(&json!({
            "url": "https://example.com/hook?token=s3cret",
            "headers": { "Authorization": "Bearer s3cret" },
        }))
        .unwrap();
        assert_eq!(body, json!({}));
        assert_eq!(headers.len(), 1);
        assert_eq!(shown(&url), "https://example.com/hook");
    }

    #[test]
    fn secrets_in_header_values_and_urls_are_not_shown() {
        match parse_params(&json!({
            "url": "http://example.com",
            "headers": { "Authorization": "Bearer s3cret\n" },
        })) {
            Err(ActionError::Permanent { message }) => assert!(!message.contains("s3cret")),
            other => panic!("{other:?}"),
        }
        let url = Url::parse("http://user:pw@example.com/a?key=s3cret#frag").unwrap();
        assert_eq!(shown(&url), "http://example.com/a");
    }

    #[test]
    fn excerpts_are_short_and_on_one_line() {
        assert_eq!(excerpt("  bad\nrequest "), "bad request");
        let long = "x".repeat(500);
        assert_eq!(excerpt(&long).chars().count(), EXCERPT_CHARS + 1);
    }
}
