//! Shared HTTP plumbing: status mapping, `Retry-After`, OAuth tokens.

use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gatehouse_core::clock::Clock;
use gatehouse_core::retry_after::parse_retry_after;
use reqwest::{RequestBuilder, Response, StatusCode, header};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use tokio::sync::Mutex;

use crate::error::ConnectorError;

/// How much of an error answer's body an error message keeps.
const EXCERPT_CHARS: usize = 200;

/// A secret string (password, client secret, API key): shown as `***` by
/// `Debug` and `Display`, so it cannot leak through a log line or an error.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    /// Wraps `value`.
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }

    /// The value, for the one place that must send it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(***)")
    }
}

/// One system's HTTP client: a connection pool, a timeout, and the mapping of
/// answers onto [`ConnectorError`].
#[derive(Clone)]
pub struct Http {
    client: reqwest::Client,
    system: &'static str,
    clock: Arc<dyn Clock>,
}

impl fmt::Debug for Http {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Http")
            .field("system", &self.system)
            .finish_non_exhaustive()
    }
}

impl Http {
    /// A client for `system` whose calls give up after `timeout`. Redirects
    /// are not followed: a redirected write may change method or target.
    /// `clock` reads `Retry-After` dates.
    pub fn new(
        system: &'static str,
        timeout: Duration,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ConnectorError> {
        let client = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(10)))
            .redirect(reqwest::redirect::Policy::none())
            .build()
            .map_err(|e| ConnectorError::Config {
                system,
                message: format!("cannot build the HTTP client: {e}"),
            })?;
        Ok(Self {
            client,
            system,
            clock,
        })
    }

    /// The system's name, as errors show it.
    pub fn system(&self) -> &'static str {
        self.system
    }

    /// The underlying client, to build requests.
    pub fn client(&self) -> &reqwest::Client {
        &self.client
    }

    /// Sends `request`; a 2xx answer is returned, anything else becomes the
    /// matching [`ConnectorError`]: no connection, a timeout, 429, 502, 503
    /// and 504 are retryable (with the system's `Retry-After`); 401 and 403
    /// are [`ConnectorError::Auth`]; every other status is a rejection with
    /// an excerpt of the body.
    pub async fn send(&self, request: RequestBuilder) -> Result<Response, ConnectorError> {
        let response = request.send().await.map_err(|e| self.transport(&e))?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, self.clock.now()));
        let body = response.text().await.unwrap_or_default();
        let excerpt: String = body.chars().take(EXCERPT_CHARS).collect();
        let message = format!("HTTP {status}: {excerpt}");
        Err(match status {
            StatusCode::TOO_MANY_REQUESTS
            | StatusCode::BAD_GATEWAY
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::GATEWAY_TIMEOUT => ConnectorError::Retryable {
                system: self.system,
                message,
                retry_after,
            },
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ConnectorError::Auth {
                system: self.system,
                status: Some(status.as_u16()),
                message,
            },
            _ => ConnectorError::Rejected {
                system: self.system,
                status: Some(status.as_u16()),
                message,
            },
        })
    }

    /// Sends `request` and reads a JSON answer into `T`.
    pub async fn json<T: DeserializeOwned>(
        &self,
        request: RequestBuilder,
    ) -> Result<T, ConnectorError> {
        let response = self.send(request).await?;
        let bytes = response.bytes().await.map_err(|e| self.transport(&e))?;
        serde_json::from_slice(&bytes).map_err(|e| ConnectorError::Rejected {
            system: self.system,
            status: None,
            message: format!("unreadable answer: {e}"),
        })
    }

    /// A transport failure: retryable, described without the URL (its query
    /// may hold a secret).
    fn transport(&self, error: &reqwest::Error) -> ConnectorError {
        let what = if error.is_timeout() {
            "timed out"
        } else if error.is_connect() {
            "cannot connect"
        } else if error.is_body() || error.is_decode() {
            "the answer broke off"
        } else {
            "request failed"
        };
        ConnectorError::Retryable {
            system: self.system,
            message: what.to_owned(),
            retry_after: None,
        }
    }
}

/// OAuth 2.0 client-credentials settings (RFC 6749 §4.4): HaloPSA,
/// NinjaOne, Microsoft identity platform.
#[derive(Debug, Clone)]
pub struct ClientCredentials {
    /// The token endpoint.
    pub token_url: String,
    /// The client id.
    pub client_id: String,
    /// The client secret.
    pub client_secret: Secret,
    /// The scope to ask for, if the system wants one.
    pub scope: Option<String>,
}

/// A bearer token fetched with client credentials and kept until shortly
/// before it expires. Cheap to share: concurrent callers wait for one fetch.
#[derive(Debug)]
pub struct TokenCache {
    credentials: ClientCredentials,
    token: Mutex<Option<(Secret, Instant)>>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

/// A token is renewed this long before the system says it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(60);

impl TokenCache {
    /// A cache for `credentials`, empty until the first call.
    pub fn new(credentials: ClientCredentials) -> Self {
        Self {
            credentials,
            token: Mutex::new(None),
        }
    }

    /// A valid bearer token, fetched if there is none or it is about to
    /// expire. A refused token request is [`ConnectorError::Auth`].
    pub async fn bearer(&self, http: &Http) -> Result<Secret, ConnectorError> {
        let mut token = self.token.lock().await;
        if let Some((value, until)) = token.as_ref()
            && Instant::now() < *until
        {
            return Ok(value.clone());
        }
        let c = &self.credentials;
        let mut form = vec![
            ("grant_type", "client_credentials"),
            ("client_id", c.client_id.as_str()),
            ("client_secret", c.client_secret.expose()),
        ];
        if let Some(scope) = &c.scope {
            form.push(("scope", scope.as_str()));
        }
        let answer: TokenAnswer = match http
            .json(http.client().post(&c.token_url).form(&form))
            .await
        {
            Err(ConnectorError::Rejected {
                system,
                status: Some(400),
                message,
            }) => {
                // RFC 6749 §5.2: a refused grant is a 400 `invalid_client`.
                return Err(ConnectorError::Auth {
                    system,
                    status: Some(400),
                    message,
                });
            }
            other => other?,
        };
        let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(3600));
        let value = Secret::new(answer.access_token);
        *token = Some((
            value.clone(),
            Instant::now() + lifetime.saturating_sub(TOKEN_MARGIN),
        ));
        Ok(value)
    }

    /// Drops the cached token (after a 401), so the next call fetches one.
    pub async fn forget(&self) {
        *self.token.lock().await = None;
    }
}
