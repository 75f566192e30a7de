//! HashiCorp Vault's Transit secrets engine as the KEK provider.
//!
//! Vault holds the KEK and never lets it out. Gatehouse asks for a data key
//! (`POST /v1/{mount}/datakey/plaintext/{key}`), stores only the wrapped
//! copy (`vault:vN:…`), unwraps with `decrypt`, rotates with
//! `keys/{key}/rotate` and rewraps with `rewrap`, which re-encrypts under
//! the newest key version inside Vault without returning the plaintext.
//! The KEK id is `vault-transit:{key}:v{N}`. Retiring old versions
//! (`min_decryption_version`) is left to the Vault operator, who owns the key.
//!
//! The token is sent as `X-Vault-Token` and never logged.

use async_trait::async_trait;
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use gatehouse_core::id::TenantId;
use gatehouse_core::keys::WrappedKey;
use serde::Deserialize;
use serde_json::json;
use zeroize::Zeroizing;

use crate::{DataKey, KeyProvider, VaultError};

/// Where and how to reach Vault.
#[derive(Clone)]
pub struct VaultTransitConfig {
    /// Vault's address, such as `https://vault.internal:8200`.
    pub addr: String,
    /// A token allowed to use the transit key.
    pub token: String,
    /// The transit engine's mount path (usually `transit`).
    pub mount: String,
    /// The name of the transit key that wraps Gatehouse's data keys.
    pub key: String,
    /// Vault Enterprise namespace, if any.
    pub namespace: Option<String>,
    /// A PEM CA certificate to trust for Vault's TLS (a private CA), if any.
    pub ca_cert_pem: Option<Vec<u8>>,
}

impl std::fmt::Debug for VaultTransitConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VaultTransitConfig")
            .field("addr", &self.addr)
            .field("token", &"<redacted>")
            .field("mount", &self.mount)
            .field("key", &self.key)
            .field("namespace", &self.namespace)
            .field("ca_cert_pem", &self.ca_cert_pem.as_ref().map(|_| "<set>"))
            .finish()
    }
}

/// KEKs in Vault Transit.
#[derive(Debug)]
pub struct VaultTransit {
    config: VaultTransitConfig,
    http: reqwest::Client,
}

#[derive(Deserialize)]
struct Envelope<T> {
    data: T,
}

#[derive(Deserialize)]
struct DataKeyData {
    plaintext: String,
    ciphertext: String,
}

#[derive(Deserialize)]
struct PlaintextData {
    plaintext: String,
}

#[derive(Deserialize)]
struct CiphertextData {
    ciphertext: String,
}

#[derive(Deserialize)]
struct KeyInfo {
    latest_version: u32,
}

#[derive(Deserialize)]
struct Errors {
    #[serde(default)]
    errors: Vec<String>,
}

impl VaultTransit {
    /// A provider for `config`. Makes no request until used; call
    /// [`VaultTransit::ensure_key`] at start-up to fail early.
    pub fn new(config: VaultTransitConfig) -> Result<Self, VaultError> {
        let mut builder = reqwest::Client::builder().timeout(std::time::Duration::from_secs(10));
        if let Some(pem) = &config.ca_cert_pem {
            let cert = reqwest::Certificate::from_pem(pem).map_err(|e| {
                VaultError::Refused(format!("the Vault CA certificate is not valid PEM: {e}"))
            })?;
            builder = builder.add_root_certificate(cert);
        }
        let http = builder
            .build()
            .map_err(|e| VaultError::Provider(format!("building the HTTP client: {e}")))?;
        Ok(Self { config, http })
    }

    fn url(&self, path: &str) -> String {
        format!(
            "{}/v1/{}/{}",
            self.config.addr.trim_end_matches('/'),
            self.config.mount,
            path
        )
    }

    async fn call<T: for<'de> Deserialize<'de>>(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<T, VaultError> {
        let bytes = self.send(method, path, body).await?;
        serde_json::from_slice(&bytes).map_err(|e| {
            VaultError::Provider(format!("{path}: unexpected response from Vault: {e}"))
        })
    }

    /// Sends a request; returns the body of a successful answer (which may
    /// be empty: some Vault versions answer writes with 204).
    async fn send(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<serde_json::Value>,
    ) -> Result<Vec<u8>, VaultError> {
        let mut request = self
            .http
            .request(method, self.url(path))
            .header("X-Vault-Token", &self.config.token);
        if let Some(ns) = &self.config.namespace {
            request = request.header("X-Vault-Namespace", ns);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request
            .send()
            .await
            .map_err(|e| VaultError::Provider(format!("{path}: {}", without_url(&e))))?;
        let status = response.status();
        let bytes = response
            .bytes()
            .await
            .map_err(|e| VaultError::Provider(format!("{path}: {}", without_url(&e))))?;
        if !status.is_success() {
            let detail = serde_json::from_slice::<Errors>(&bytes)
                .map(|e| e.errors.join("; "))
                .unwrap_or_default();
            let message = format!("{path}: Vault answered {status}: {detail}");
            // A 4xx other than 429 refuses the request itself: retrying won't help.
            return Err(
                if status.is_client_error() && status != reqwest::StatusCode::TOO_MANY_REQUESTS {
                    VaultError::Refused(message)
                } else {
                    VaultError::Provider(message)
                },
            );
        }
        Ok(bytes.to_vec())
    }

    /// Checks that the transit key exists, creating it (`aes256-gcm96`) if
    /// it is missing and the token may. A refusal or an outage is reported,
    /// not papered over by a create.
    pub async fn ensure_key(&self) -> Result<(), VaultError> {
        let path = format!("keys/{}", self.config.key);
        match self.send(reqwest::Method::GET, &path, None).await {
            Ok(_) => Ok(()),
            Err(VaultError::Refused(message)) if message.contains(" 404 ") => self
                .send(
                    reqwest::Method::POST,
                    &path,
                    Some(json!({ "type": "aes256-gcm96" })),
                )
                .await
                .map(|_| ()),
            Err(err) => Err(err),
        }
    }

    fn kek_id_of(&self, ciphertext: &str) -> Result<String, VaultError> {
        let version = ciphertext
            .strip_prefix("vault:v")
            .and_then(|rest| rest.split_once(':'))
            .and_then(|(v, _)| v.parse::<u32>().ok())
            .ok_or_else(|| {
                VaultError::Provider("Vault returned a ciphertext without a version".into())
            })?;
        Ok(self.kek_id(version))
    }

    fn kek_id(&self, version: u32) -> String {
        format!("vault-transit:{}:v{version}", self.config.key)
    }

    fn ciphertext_of(wrapped: &WrappedKey) -> Result<&str, VaultError> {
        std::str::from_utf8(&wrapped.ciphertext)
            .map_err(|_| VaultError::Decrypt("wrapped key is not a Vault ciphertext"))
    }
}

/// reqwest's errors include the URL; ours already say which call failed.
fn without_url(err: &reqwest::Error) -> String {
    let mut text = err.to_string();
    if let Some(url) = err.url() {
        text = text.replace(url.as_str(), "");
    }
    text
}

#[async_trait]
impl KeyProvider for VaultTransit {
    fn kind(&self) -> &'static str {
        "vault-transit"
    }

    async fn generate(&self, _tenant: TenantId) -> Result<(DataKey, WrappedKey), VaultError> {
        let path = format!("datakey/plaintext/{}", self.config.key);
        let response: Envelope<DataKeyData> = self
            .call(reqwest::Method::POST, &path, Some(json!({ "bits": 256 })))
            .await?;
        let plaintext = Zeroizing::new(
            STANDARD
                .decode(&response.data.plaintext)
                .map_err(|_| VaultError::Provider("datakey is not base64".into()))?,
        );
        let key = DataKey::from_bytes(&plaintext)?;
        let kek_id = self.kek_id_of(&response.data.ciphertext)?;
        Ok((
            key,
            WrappedKey {
                kek_id,
                ciphertext: response.data.ciphertext.into_bytes(),
            },
        ))
    }

    async fn unwrap(&self, _tenant: TenantId, wrapped: &WrappedKey) -> Result<DataKey, VaultError> {
        let path = format!("decrypt/{}", self.config.key);
        let ciphertext = Self::ciphertext_of(wrapped)?;
        let response: Envelope<PlaintextData> = self
            .call(
                reqwest::Method::POST,
                &path,
                Some(json!({ "ciphertext": ciphertext })),
            )
            .await?;
        let plaintext = Zeroizing::new(
            STANDARD
                .decode(&response.data.plaintext)
                .map_err(|_| VaultError::Provider("plaintext is not base64".into()))?,
        );
        DataKey::from_bytes(&plaintext)
    }

    async fn rewrap(
        &self,
        _tenant: TenantId,
        wrapped: &WrappedKey,
    ) -> Result<WrappedKey, VaultError> {
        let path = format!("rewrap/{}", self.config.key);
        let ciphertext = Self::ciphertext_of(wrapped)?;
        let response: Envelope<CiphertextData> = self
            .call(
                reqwest::Method::POST,
                &path,
                Some(json!({ "ciphertext": ciphertext })),
            )
            .await?;
        let kek_id = self.kek_id_of(&response.data.ciphertext)?;
        Ok(WrappedKey {
            kek_id,
            ciphertext: response.data.ciphertext.into_bytes(),
        })
    }

    async fn rotate(&self) -> Result<String, VaultError> {
        let path = format!("keys/{}/rotate", self.config.key);
        self.send(reqwest::Method::POST, &path, None).await?;
        self.active_kek().await
    }

    async fn active_kek(&self) -> Result<String, VaultError> {
        let path = format!("keys/{}", self.config.key);
        let info: Envelope<KeyInfo> = self.call(reqwest::Method::GET, &path, None).await?;
        Ok(self.kek_id(info.data.latest_version))
    }
}
