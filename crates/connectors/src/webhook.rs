//! Webhook signature checks for the PSAs that tell Gatehouse a deal is won.
//!
//! Each sender proves a delivery differently (see the connectors reference,
//! §4.2–4.4):
//!
//! | sender | header | proof |
//! | --- | --- | --- |
//! | ConnectWise | `x-content-signature` | Base64(HMAC-SHA256(key = SHA-256(signing key), raw body)); the signing key is fetched from `Metadata.key_url` in the body |
//! | Autotask | `X-Hook-Signature` | `sha1=` Base64(HMAC-SHA1(secret key, raw body)) |
//! | HaloPSA | `Authorization` | the configured Basic or Bearer credential (Halo signs nothing) |
//! | generic | `X-Gatehouse-Timestamp`, `X-Gatehouse-Signature` | `v1=` hex(HMAC-SHA256(secret, "{timestamp}.{raw body}")), within a replay window |
//!
//! Everything here is pure except fetching ConnectWise's signing key, which
//! goes through a [`SigningKeyFetcher`] and only ever to an allowlisted host:
//! the key URL comes from the (untrusted) body, so fetching it blindly would
//! let anyone make Gatehouse call any address (SSRF), and would let them
//! supply their own key. Every comparison of a proof is in constant time.
//! Errors never carry the secret, the expected proof or the body.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use reqwest::Url;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;
use time::OffsetDateTime;
use tokio::sync::Mutex;

use crate::error::ConnectorError;
use crate::http::Secret;

/// ConnectWise's signature header.
pub const CONNECTWISE_SIGNATURE: &str = "x-content-signature";
/// Autotask's signature header.
pub const AUTOTASK_SIGNATURE: &str = "x-hook-signature";
/// The generic webhook's timestamp header (unix seconds).
pub const GENERIC_TIMESTAMP: &str = "x-gatehouse-timestamp";
/// The generic webhook's signature header (`v1=<hex>`).
pub const GENERIC_SIGNATURE: &str = "x-gatehouse-signature";
/// The generic webhook's default replay window.
pub const DEFAULT_REPLAY_WINDOW: Duration = Duration::from_secs(300);
/// How long a fetched ConnectWise signing key is reused.
pub const DEFAULT_KEY_TTL: Duration = Duration::from_secs(300);
/// A ConnectWise key younger than this is not fetched again on a mismatch.
pub const MIN_KEY_REFRESH: Duration = Duration::from_secs(30);
/// ConnectWise's cloud API hosts, the default allowlist for key URLs.
pub const DEFAULT_CONNECTWISE_KEY_HOSTS: &[&str] = &[
    "api-na.myconnectwise.net",
    "api-eu.myconnectwise.net",
    "api-au.myconnectwise.net",
    "sandbox-na.myconnectwise.net",
    "sandbox-eu.myconnectwise.net",
    "sandbox-au.myconnectwise.net",
];

/// Why a delivery is not proven to come from its sender. Every variant
/// means "401"; the message says which check failed, never a secret.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum SignatureError {
    /// A header the sender must send is absent.
    #[error("the `{0}` header is missing")]
    Missing(&'static str),
    /// A header is present but not in the sender's format.
    #[error("the `{header}` header is malformed: {reason}")]
    Malformed {
        /// The header.
        header: &'static str,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The proof does not match the body and the secret.
    #[error("the signature does not match")]
    Mismatch,
    /// The credential does not match the configured one.
    #[error("the credentials do not match")]
    BadCredentials,
    /// The timestamp is outside the replay window.
    #[error("the timestamp is outside the replay window of {window_secs} seconds")]
    Stale {
        /// The window.
        window_secs: u64,
    },
    /// ConnectWise's key URL is absent, malformed or not allowed.
    #[error("the signing key URL is refused: {0}")]
    KeyUrl(String),
    /// The tenant's hook secret is unusable (an operator must fix it).
    #[error("the webhook is not configured: {0}")]
    NotConfigured(&'static str),
    /// ConnectWise's signing key could not be fetched.
    #[error("the signing key could not be fetched: {0}")]
    KeyFetch(ConnectorError),
}

type HmacSha256 = Hmac<Sha256>;
type HmacSha1 = Hmac<sha1::Sha1>;

/// Compares two byte strings in time that depends only on their lengths.
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> Result<HmacSha256, SignatureError> {
    let mut mac = HmacSha256::new_from_slice(key).map_err(|_| SignatureError::Mismatch)?;
    for part in parts {
        mac.update(part);
    }
    Ok(mac)
}

// ----- Autotask ---------------------------------------------------------------

/// The `X-Hook-Signature` value Autotask sends for `body` under `secret`.
pub fn sign_autotask(secret: &[u8], body: &[u8]) -> String {
    // HMAC accepts keys of any length, so this cannot fail.
    let Ok(mut mac) = HmacSha1::new_from_slice(secret) else {
        return String::new();
    };
    mac.update(body);
    format!("sha1={}", BASE64.encode(mac.finalize().into_bytes()))
}

/// Checks Autotask's `X-Hook-Signature: sha1=<Base64(HMAC-SHA1(secret, body))>`.
pub fn verify_autotask(
    secret: &[u8],
    body: &[u8],
    header: Option<&str>,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing("X-Hook-Signature"))?;
    let encoded = header
        .trim()
        .strip_prefix("sha1=")
        .ok_or(SignatureError::Malformed {
            header: "X-Hook-Signature",
            reason: "expected `sha1=<base64>`",
        })?;
    let presented = BASE64
        .decode(encoded)
        .map_err(|_| SignatureError::Malformed {
            header: "X-Hook-Signature",
            reason: "the signature is not base64",
        })?;
    let mut mac = HmacSha1::new_from_slice(secret).map_err(|_| SignatureError::Mismatch)?;
    mac.update(body);
    mac.verify_slice(&presented)
        .map_err(|_| SignatureError::Mismatch)
}

// ----- HaloPSA ----------------------------------------------------------------

/// The credential HaloPSA is configured to send in `Authorization`.
#[derive(Clone, PartialEq, Eq)]
pub struct HaloAuth {
    /// The whole expected header value (`Basic …` or `Bearer …`).
    expected: Secret,
}

impl std::fmt::Debug for HaloAuth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("HaloAuth(***)")
    }
}

impl HaloAuth {
    /// Reads the stored secret: `Bearer <token>`, `Basic <base64>`,
    /// `<user>:<password>` (Basic) or a bare token (Bearer).
    pub fn parse(secret: &str) -> Result<Self, SignatureError> {
        let secret = secret.trim();
        if secret.is_empty() {
            return Err(SignatureError::NotConfigured(
                "the HaloPSA credential is empty",
            ));
        }
        let expected = if let Some(rest) = strip_scheme(secret, "bearer") {
            format!("Bearer {rest}")
        } else if let Some(rest) = strip_scheme(secret, "basic") {
            format!("Basic {rest}")
        } else if secret.contains(':') {
            format!("Basic {}", BASE64.encode(secret.as_bytes()))
        } else {
            format!("Bearer {secret}")
        };
        Ok(Self {
            expected: Secret::new(expected),
        })
    }

    /// Checks the presented `Authorization` header.
    pub fn verify(&self, header: Option<&str>) -> Result<(), SignatureError> {
        let header = header
            .ok_or(SignatureError::Missing("Authorization"))?
            .trim();
        // The scheme is case-insensitive (RFC 9110 §11.1); the credential is not.
        let presented = if let Some(rest) = strip_scheme(header, "bearer") {
            format!("Bearer {rest}")
        } else if let Some(rest) = strip_scheme(header, "basic") {
            format!("Basic {rest}")
        } else {
            return Err(SignatureError::Malformed {
                header: "Authorization",
                reason: "expected a Basic or Bearer credential",
            });
        };
        if constant_time_eq(presented.as_bytes(), self.expected.expose().as_bytes()) {
            Ok(())
        } else {
            Err(SignatureError::BadCredentials)
        }
    }
}

fn strip_scheme<'a>(value: &'a str, scheme: &str) -> Option<&'a str> {
    let (head, rest) = value.split_once(' ')?;
    let rest = rest.trim();
    (head.eq_ignore_ascii_case(scheme) && !rest.is_empty()).then_some(rest)
}

// ----- generic ----------------------------------------------------------------

/// The `X-Gatehouse-Signature` value for `body` sent at `timestamp`.
pub fn sign_generic(secret: &[u8], timestamp: i64, body: &[u8]) -> String {
    let stamp = timestamp.to_string();
    match hmac_sha256(secret, &[stamp.as_bytes(), b".", body]) {
        Ok(mac) => format!("v1={}", hex::encode(mac.finalize().into_bytes())),
        Err(_) => String::new(),
    }
}

/// Checks the generic webhook's headers: `X-Gatehouse-Timestamp` (unix
/// seconds) within `window` of `now`, and `X-Gatehouse-Signature`, one or
/// more comma-separated `v1=<hex>` values (several while a secret is being
/// rotated), one of which must be HMAC-SHA256(secret, "{timestamp}.{body}").
pub fn verify_generic(
    secret: &[u8],
    body: &[u8],
    timestamp: Option<&str>,
    signature: Option<&str>,
    now: OffsetDateTime,
    window: Duration,
) -> Result<(), SignatureError> {
    let stamp_text = timestamp
        .ok_or(SignatureError::Missing("X-Gatehouse-Timestamp"))?
        .trim();
    let signature = signature.ok_or(SignatureError::Missing("X-Gatehouse-Signature"))?;
    let stamp: i64 = stamp_text.parse().map_err(|_| SignatureError::Malformed {
        header: "X-Gatehouse-Timestamp",
        reason: "expected unix seconds",
    })?;
    let age = now.unix_timestamp().abs_diff(stamp);
    if age > window.as_secs() {
        return Err(SignatureError::Stale {
            window_secs: window.as_secs(),
        });
    }
    let mut any = false;
    for part in signature.split(',') {
        let Some(hex_text) = part.trim().strip_prefix("v1=") else {
            continue;
        };
        any = true;
        let Ok(presented) = hex::decode(hex_text) else {
            continue;
        };
        // Sign the timestamp as sent, so "0170…" and "170…" differ.
        let mac = hmac_sha256(secret, &[stamp_text.as_bytes(), b".", body])?;
        if mac.verify_slice(&presented).is_ok() {
            return Ok(());
        }
    }
    if any {
        Err(SignatureError::Mismatch)
    } else {
        Err(SignatureError::Malformed {
            header: "X-Gatehouse-Signature",
            reason: "expected `v1=<hex>`",
        })
    }
}

// ----- ConnectWise --------------------------------------------------------------

/// The `x-content-signature` value ConnectWise sends for `body` when its
/// signing key is `signing_key`.
pub fn sign_connectwise(signing_key: &[u8], body: &[u8]) -> String {
    let key = Sha256::digest(signing_key);
    match hmac_sha256(&key, &[body]) {
        Ok(mac) => BASE64.encode(mac.finalize().into_bytes()),
        Err(_) => String::new(),
    }
}

/// Checks `x-content-signature` against a known signing key.
pub fn verify_connectwise_with_key(
    signing_key: &[u8],
    body: &[u8],
    header: Option<&str>,
) -> Result<(), SignatureError> {
    let header = header.ok_or(SignatureError::Missing(CONNECTWISE_SIGNATURE))?;
    let presented = BASE64
        .decode(header.trim())
        .map_err(|_| SignatureError::Malformed {
            header: CONNECTWISE_SIGNATURE,
            reason: "the signature is not base64",
        })?;
    let key = Sha256::digest(signing_key);
    hmac_sha256(&key, &[body])?
        .verify_slice(&presented)
        .map_err(|_| SignatureError::Mismatch)
}

/// The hosts ConnectWise signing keys may be fetched from.
///
/// A URL passes only if it is `https` (or `http` to a loopback address,
/// for the sandbox and tests, and only if that address is listed), has no
/// user information, and its host, as the URL parser normalises it (so
/// `0x7f.1` is `127.0.0.1`), equals a listed host exactly. A trailing dot,
/// a subdomain or a look-alike does not match.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KeyHostAllowlist {
    hosts: Vec<String>,
}

impl Default for KeyHostAllowlist {
    fn default() -> Self {
        Self::new(DEFAULT_CONNECTWISE_KEY_HOSTS.iter().copied())
    }
}

impl KeyHostAllowlist {
    /// An allowlist of exactly these hosts (lower-cased).
    pub fn new<S: AsRef<str>>(hosts: impl IntoIterator<Item = S>) -> Self {
        Self {
            hosts: hosts
                .into_iter()
                .map(|h| h.as_ref().trim().to_ascii_lowercase())
                .filter(|h| !h.is_empty())
                .collect(),
        }
    }

    /// The listed hosts.
    pub fn hosts(&self) -> &[String] {
        &self.hosts
    }

    /// Parses `url` and checks it against the list.
    pub fn check(&self, url: &str) -> Result<Url, SignatureError> {
        let refuse = |why: &str| SignatureError::KeyUrl(why.to_owned());
        let parsed = Url::parse(url).map_err(|_| refuse("not a URL"))?;
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(refuse("user information is not allowed"));
        }
        let host = parsed.host_str().ok_or_else(|| refuse("no host"))?;
        // `[::1]` is listed as `::1`.
        let bare = host.trim_start_matches('[').trim_end_matches(']');
        let loopback = bare.parse::<IpAddr>().is_ok_and(|ip| ip.is_loopback());
        if !self.hosts.iter().any(|h| h == bare) {
            return Err(SignatureError::KeyUrl(format!(
                "the host `{bare}` is not in the allowlist"
            )));
        }
        match parsed.scheme() {
            "https" => {}
            "http" if loopback => {}
            _ => return Err(refuse("the scheme must be https")),
        }
        Ok(parsed)
    }
}

/// Fetches a ConnectWise signing key from an allowed URL.
#[async_trait]
pub trait SigningKeyFetcher: Send + Sync + std::fmt::Debug {
    /// `GET url` → `{"signing_key": "…"}`.
    async fn fetch(&self, url: &Url) -> Result<Secret, ConnectorError>;
}

/// The real fetcher: one `GET`, no redirects (a redirect could leave the
/// allowlist), a short timeout.
#[derive(Debug, Clone)]
pub struct HttpKeyFetcher {
    client: reqwest::Client,
}

impl HttpKeyFetcher {
    /// A fetcher whose calls give up after `timeout`.
    pub fn new(timeout: Duration) -> Result<Self, ConnectorError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ConnectorError::Config {
                system: "connectwise",
                message: format!("cannot build the HTTP client: {e}"),
            })?;
        Ok(Self { client })
    }
}

#[derive(serde::Deserialize)]
struct KeyAnswer {
    signing_key: String,
}

#[async_trait]
impl SigningKeyFetcher for HttpKeyFetcher {
    async fn fetch(&self, url: &Url) -> Result<Secret, ConnectorError> {
        let system = "connectwise";
        let answer =
            self.client
                .get(url.clone())
                .send()
                .await
                .map_err(|e| ConnectorError::Retryable {
                    system,
                    // Without the URL: its query names the key.
                    message: format!("cannot reach the signing key URL: {}", e.without_url()),
                    retry_after: None,
                })?;
        let status = answer.status();
        if status.is_server_error() || status == reqwest::StatusCode::TOO_MANY_REQUESTS {
            return Err(ConnectorError::Retryable {
                system,
                message: format!("the signing key URL answered {status}"),
                retry_after: None,
            });
        }
        if !status.is_success() {
            return Err(ConnectorError::Rejected {
                system,
                status: Some(status.as_u16()),
                message: format!("the signing key URL answered {status}"),
            });
        }
        let key: KeyAnswer = answer.json().await.map_err(|_| ConnectorError::Rejected {
            system,
            status: Some(status.as_u16()),
            message: "the signing key answer is not {\"signing_key\": …}".into(),
        })?;
        if key.signing_key.is_empty() {
            return Err(ConnectorError::Rejected {
                system,
                status: Some(status.as_u16()),
                message: "the signing key is empty".into(),
            });
        }
        Ok(Secret::new(key.signing_key))
    }
}

/// Verifies ConnectWise callbacks: finds `Metadata.key_url` in the body,
/// checks it against the allowlist before any request, fetches the key
/// (cached by URL for `ttl`) and checks the signature.
#[derive(Debug)]
pub struct ConnectWiseVerifier {
    allowlist: KeyHostAllowlist,
    fetcher: Arc<dyn SigningKeyFetcher>,
    ttl: Duration,
    cache: Mutex<HashMap<String, (Instant, Secret)>>,
}

impl ConnectWiseVerifier {
    /// A verifier fetching through `fetcher` from `allowlist`'s hosts.
    pub fn new(allowlist: KeyHostAllowlist, fetcher: Arc<dyn SigningKeyFetcher>) -> Self {
        Self {
            allowlist,
            fetcher,
            ttl: DEFAULT_KEY_TTL,
            cache: Mutex::new(HashMap::new()),
        }
    }

    /// Reuses a fetched key for `ttl` instead of the default.
    pub fn with_ttl(mut self, ttl: Duration) -> Self {
        self.ttl = ttl;
        self
    }

    /// The allowlist.
    pub fn allowlist(&self) -> &KeyHostAllowlist {
        &self.allowlist
    }

    /// Checks a delivery. The signature header is required before the body
    /// is even read, so an unsigned request never causes a fetch.
    pub async fn verify(&self, body: &[u8], header: Option<&str>) -> Result<(), SignatureError> {
        let header = header.ok_or(SignatureError::Missing(CONNECTWISE_SIGNATURE))?;
        let url = key_url(body)?;
        let url = self.allowlist.check(&url)?;
        let (key, fetched) = self.key(&url, false).await?;
        match verify_connectwise_with_key(key.expose().as_bytes(), body, Some(header)) {
            // ConnectWise may have rotated the key: fetch once more, unless
            // the key was fetched moments ago (so forged deliveries cannot
            // turn the cache off).
            Err(SignatureError::Mismatch) if fetched.elapsed() >= MIN_KEY_REFRESH => {
                let (key, _) = self.key(&url, true).await?;
                verify_connectwise_with_key(key.expose().as_bytes(), body, Some(header))
            }
            other => other,
        }
    }

    /// The key for `url` and when it was fetched.
    async fn key(&self, url: &Url, refresh: bool) -> Result<(Secret, Instant), SignatureError> {
        // Held across the fetch: concurrent deliveries wait for one fetch
        // rather than each fetching the same key.
        let mut cache = self.cache.lock().await;
        cache.retain(|_, (at, _)| at.elapsed() < self.ttl);
        if !refresh && let Some((at, key)) = cache.get(url.as_str()) {
            return Ok((key.clone(), *at));
        }
        let key = self
            .fetcher
            .fetch(url)
            .await
            .map_err(SignatureError::KeyFetch)?;
        let at = Instant::now();
        cache.insert(url.as_str().to_owned(), (at, key.clone()));
        Ok((key, at))
    }
}

/// `Metadata.key_url` of a ConnectWise callback body.
fn key_url(body: &[u8]) -> Result<String, SignatureError> {
    let value: serde_json::Value = serde_json::from_slice(body)
        .map_err(|_| SignatureError::KeyUrl("the body is not JSON".into()))?;
    value
        .get("Metadata")
        .and_then(|m| m.get("key_url"))
        .and_then(serde_json::Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| SignatureError::KeyUrl("the body has no Metadata.key_url".into()))
}

#[cfg(test)]
mod tests {
    //! Fixed vectors computed independently with Python's `hmac`:
    //!
    //! ```text
    //! python3 -c 'import hmac,hashlib,base64
    //! body=b"{\"Id\":42,\"EntityType\":\"Company\",\"Action\":\"Update\"}"
    //! print(base64.b64encode(hmac.new(b"at-secret",body,hashlib.sha1).digest()).decode())'
    //! # TEhNLjY6D11h3etOiRC+rByj+KY=
    //! python3 -c 'import hmac,hashlib,base64
    //! body=b"{\"MessageId\":\"m-1\",\"Metadata\":{\"key_url\":\"https://api-na.myconnectwise.net/v4_6_release/system/callbackkey/index.rails?id=7\"}}"
    //! k=hashlib.sha256(b"cw-signing-key").digest()
    //! print(base64.b64encode(hmac.new(k,body,hashlib.sha256).digest()).decode())'
    //! # Pqx+21ZUPGjA/Czjyi6z9qu3qeq+0H1gAzXtdn2YsKw=
    //! python3 -c 'import hmac,hashlib
    //! print(hmac.new(b"gen-secret", b"1700000000."+b"{\"type\":\"client.won\",\"id\":\"e-1\"}", hashlib.sha256).hexdigest())'
    //! # 848690adef3e5ccb61a1b8977ba39f44a35d395b1d26f8c2c1c5e865d1db55b7
    //! ```

    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    const AT_BODY: &[u8] = br#"{"Id":42,"EntityType":"Company","Action":"Update"}"#;
    const AT_SIG: &str = "sha1=TEhNLjY6D11h3etOiRC+rByj+KY=";
    const CW_BODY: &[u8] = br#"{"MessageId":"m-1","Metadata":{"key_url":"https://api-na.myconnectwise.net/v4_6_release/system/callbackkey/index.rails?id=7"}}"#;
    const CW_SIG: &str = "Pqx+21ZUPGjA/Czjyi6z9qu3qeq+0H1gAzXtdn2YsKw=";
    const GEN_BODY: &[u8] = br#"{"type":"client.won","id":"e-1"}"#;
    const GEN_SIG: &str = "v1=848690adef3e5ccb61a1b8977ba39f44a35d395b1d26f8c2c1c5e865d1db55b7";

    fn at(secs: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(secs).unwrap()
    }

    #[test]
    fn autotask_matches_the_independent_vector() {
        assert_eq!(sign_autotask(b"at-secret", AT_BODY), AT_SIG);
        assert_eq!(verify_autotask(b"at-secret", AT_BODY, Some(AT_SIG)), Ok(()));
    }

    #[test]
    fn autotask_refuses_tampering_wrong_secrets_and_bad_headers() {
        let tampered = br#"{"Id":43,"EntityType":"Company","Action":"Update"}"#;
        assert_eq!(
            verify_autotask(b"at-secret", tampered, Some(AT_SIG)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_autotask(b"other", AT_BODY, Some(AT_SIG)),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify_autotask(b"at-secret", AT_BODY, None),
            Err(SignatureError::Missing("X-Hook-Signature"))
        );
        assert!(matches!(
            verify_autotask(b"at-secret", AT_BODY, Some("TEhNLjY6D11h3etOiRC+rByj+KY=")),
            Err(SignatureError::Malformed { .. })
        ));
        assert!(matches!(
            verify_autotask(b"at-secret", AT_BODY, Some("sha1=***")),
            Err(SignatureError::Malformed { .. })
        ));
    }

    #[test]
    fn connectwise_matches_the_independent_vector() {
        assert_eq!(sign_connectwise(b"cw-signing-key", CW_BODY), CW_SIG);
        assert_eq!(
            verify_connectwise_with_key(b"cw-signing-key", CW_BODY, Some(CW_SIG)),
            Ok(())
        );
        assert_eq!(
            verify_connectwise_with_key(b"other-key", CW_BODY, Some(CW_SIG)),
            Err(SignatureError::Mismatch)
        );
    }

    #[test]
    fn generic_matches_the_independent_vector_within_the_window() {
        let window = DEFAULT_REPLAY_WINDOW;
        assert_eq!(
            sign_generic(b"gen-secret", 1_700_000_000, GEN_BODY),
            GEN_SIG
        );
        let ok = |now| {
            verify_generic(
                b"gen-secret",
                GEN_BODY,
                Some("1700000000"),
                Some(GEN_SIG),
                at(now),
                window,
            )
        };
        assert_eq!(ok(1_700_000_000), Ok(()));
        assert_eq!(ok(1_700_000_300), Ok(()));
        assert_eq!(ok(1_699_999_700), Ok(()));
        assert_eq!(
            ok(1_700_000_301),
            Err(SignatureError::Stale { window_secs: 300 })
        );
        assert_eq!(
            ok(1_699_999_699),
            Err(SignatureError::Stale { window_secs: 300 })
        );
    }

    #[test]
    fn generic_refuses_tampering_and_accepts_one_of_several_signatures() {
        let now = at(1_700_000_000);
        let w = DEFAULT_REPLAY_WINDOW;
        let check = |body: &[u8], stamp: &str, sig: &str| {
            verify_generic(b"gen-secret", body, Some(stamp), Some(sig), now, w)
        };
        assert_eq!(
            check(
                br#"{"type":"client.won","id":"e-2"}"#,
                "1700000000",
                GEN_SIG
            ),
            Err(SignatureError::Mismatch)
        );
        // The timestamp is signed: moving it breaks the signature.
        assert_eq!(
            check(GEN_BODY, "1700000001", GEN_SIG),
            Err(SignatureError::Mismatch)
        );
        let both = format!("v1=00ff, {GEN_SIG}");
        assert_eq!(check(GEN_BODY, "1700000000", &both), Ok(()));
        assert!(matches!(
            check(GEN_BODY, "1700000000", "sha256=abc"),
            Err(SignatureError::Malformed { .. })
        ));
        assert!(matches!(
            check(GEN_BODY, "yesterday", GEN_SIG),
            Err(SignatureError::Malformed { .. })
        ));
        assert_eq!(
            verify_generic(b"gen-secret", GEN_BODY, None, Some(GEN_SIG), now, w),
            Err(SignatureError::Missing("X-Gatehouse-Timestamp"))
        );
    }

    #[test]
    fn halo_compares_the_configured_credential() {
        // base64("halo:pa55") = aGFsbzpwYTU1 (python3 -c 'import base64;print(base64.b64encode(b"halo:pa55"))')
        let basic = HaloAuth::parse("halo:pa55").unwrap();
        assert_eq!(basic.verify(Some("Basic aGFsbzpwYTU1")), Ok(()));
        assert_eq!(basic.verify(Some("basic aGFsbzpwYTU1")), Ok(()));
        assert_eq!(
            basic.verify(Some("Basic aGFsbzpwYTU2")),
            Err(SignatureError::BadCredentials)
        );
        assert_eq!(
            basic.verify(None),
            Err(SignatureError::Missing("Authorization"))
        );
        let bearer = HaloAuth::parse("Bearer t0k3n").unwrap();
        assert_eq!(bearer.verify(Some("Bearer t0k3n")), Ok(()));
        assert_eq!(
            bearer.verify(Some("Bearer t0k3N")),
            Err(SignatureError::BadCredentials)
        );
        assert!(matches!(
            bearer.verify(Some("t0k3n")),
            Err(SignatureError::Malformed { .. })
        ));
        assert_eq!(format!("{bearer:?}"), "HaloAuth(***)");
    }

    #[test]
    fn the_allowlist_matches_exact_hosts_only() {
        let list = KeyHostAllowlist::default();
        let ok =
            "https://api-na.myconnectwise.net/v4_6_release/system/callbackkey/index.rails?id=7";
        assert!(list.check(ok).is_ok());
        assert!(list.check("HTTPS://API-NA.MyConnectWise.net/x").is_ok());
        for bad in [
            "http://api-na.myconnectwise.net/x",
            "https://api-na.myconnectwise.net.evil.example/x",
            "https://evil.example/api-na.myconnectwise.net",
            "https://api-na.myconnectwise.net@evil.example/x",
            "https://user:pw@api-na.myconnectwise.net/x",
            "https://api-na.myconnectwise.net./x",
            "https://127.0.0.1/x",
            "https://0x7f.1/x",
            "file:///etc/passwd",
            "not a url",
        ] {
            assert!(
                matches!(list.check(bad), Err(SignatureError::KeyUrl(_))),
                "{bad}"
            );
        }
        let local = KeyHostAllowlist::new(["127.0.0.1"]);
        assert!(local.check("http://127.0.0.1:9999/key").is_ok());
        // The parser normalises IP literals before the comparison.
        assert!(local.check("http://0x7f.0.0.1:9999/key").is_ok());
        assert!(local.check("http://127.0.0.2:9999/key").is_err());
        assert!(local.check("http://localhost:9999/key").is_err());
    }

    #[derive(Debug, Default)]
    struct CountingFetcher {
        calls: AtomicUsize,
    }

    #[async_trait]
    impl SigningKeyFetcher for CountingFetcher {
        async fn fetch(&self, _url: &Url) -> Result<Secret, ConnectorError> {
            self.calls.fetch_add(1, Ordering::SeqCst);
            Ok(Secret::new("cw-signing-key"))
        }
    }

    #[tokio::test]
    async fn connectwise_fetches_only_allowed_urls_and_caches_keys() {
        let fetcher = Arc::new(CountingFetcher::default());
        let verifier = ConnectWiseVerifier::new(KeyHostAllowlist::default(), fetcher.clone());
        assert_eq!(verifier.verify(CW_BODY, Some(CW_SIG)).await, Ok(()));
        assert_eq!(verifier.verify(CW_BODY, Some(CW_SIG)).await, Ok(()));
        assert_eq!(fetcher.calls.load(Ordering::SeqCst), 1, "the key is cached");

        let elsewhere = br#"{"Metadata":{"key_url":"https://evil.example/key"}}"#;
        let sig = sign_connectwise(b"cw-signing-key", elsewhere);
        assert!(matches!(
            verifier.verify(elsewhere, Some(&sig)).await,
            Err(SignatureError::KeyUrl(_))
        ));
        assert!(matches!(
            verifier.verify(b"not json", Some(&sig)).await,
            Err(SignatureError::KeyUrl(_))
        ));
        assert_eq!(
            verifier.verify(CW_BODY, None).await,
            Err(SignatureError::Missing(CONNECTWISE_SIGNATURE))
        );
        // A mismatch against a key fetched moments ago is refused without
        // another fetch (forgeries cannot turn the cache off).
        let tampered = String::from_utf8_lossy(CW_BODY).replace("m-1", "m-2");
        assert_eq!(
            verifier.verify(tampered.as_bytes(), Some(CW_SIG)).await,
            Err(SignatureError::Mismatch)
        );
        assert_eq!(fetcher.calls.load(Ordering::SeqCst), 1);
    }
}
