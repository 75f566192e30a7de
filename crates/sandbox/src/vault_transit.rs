//! In-memory emulator of HashiCorp Vault's Transit secrets engine.
//!
//! Why an emulator: Gatehouse's Vault Transit key provider must be tested
//! through its real HTTP client, including error paths (wrong token, sealed
//! Vault, tampered ciphertext) that are awkward to provoke on a real Vault.
//!
//! Design notes:
//! - Wire shapes follow Vault (`vault:vN:<base64(nonce || ciphertext)>`,
//!   `{"errors":[...]}` bodies, `{"data":{...}}` responses), so a client that
//!   passes here should pass against Vault. Writes accept `POST` and `PUT`,
//!   tokens `X-Vault-Token` and `Authorization: Bearer`, as Vault does.
//! - Only `aes256-gcm96` keys, no derived keys, batches or associated data:
//!   that is all Gatehouse uses, and every extra feature is more emulator to
//!   keep honest.
//! - Counters count successful calls only, so a test can assert side effects
//!   ("one data key was generated") rather than mere traffic.
//! - Key creation times come from a synthetic clock (a fixed 2026-01-01 epoch
//!   plus time since start): the workspace bans reading the wall clock outside
//!   `gatehouse_core::clock`, and nothing relies on these values.
//! - State sits behind a std `Mutex` never held across an `.await`; a
//!   poisoned lock is recovered, since each update leaves the state whole.

use std::collections::HashMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use aes_gcm::aead::{Aead, Payload};
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The only key type the emulator supports (Vault's default).
const KEY_TYPE: &str = "aes256-gcm96";

/// Unix seconds of the synthetic clock's start: 2026-01-01T00:00:00Z.
const SYNTHETIC_EPOCH: u64 = 1_767_225_600;

/// AES-GCM nonce length in bytes (96 bits, as in `aes256-gcm96`).
const NONCE_LEN: usize = 12;

/// A Transit operation, as counted by [`VaultTransitEmulator::calls`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TransitOp {
    /// `POST /v1/{mount}/keys/{name}`.
    CreateKey,
    /// `GET /v1/{mount}/keys/{name}`.
    ReadKey,
    /// `POST /v1/{mount}/keys/{name}/rotate`.
    Rotate,
    /// `POST /v1/{mount}/datakey/{plaintext|wrapped}/{name}`.
    DataKey,
    /// `POST /v1/{mount}/encrypt/{name}`.
    Encrypt,
    /// `POST /v1/{mount}/decrypt/{name}`.
    Decrypt,
    /// `POST /v1/{mount}/rewrap/{name}`.
    Rewrap,
}

/// Handle to a running Vault Transit emulator on loopback.
///
/// Dropping the handle also stops the server (its shutdown channel closes),
/// but only [`VaultTransitEmulator::shutdown`] waits for it to finish.
pub struct VaultTransitEmulator {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl fmt::Debug for VaultTransitEmulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Deliberately omits the token and key material.
        f.debug_struct("VaultTransitEmulator")
            .field("addr", &self.addr)
            .field("mount", &self.shared.mount)
            .field("down", &self.shared.down.load(Ordering::SeqCst))
            .finish_non_exhaustive()
    }
}

impl VaultTransitEmulator {
    /// Starts on 127.0.0.1:0 (random port) with the given root token and mount "transit".
    pub async fn start(token: &str) -> std::io::Result<Self> {
        Self::start_with_mount(token, "transit").await
    }

    /// Starts on 127.0.0.1:0 (random port) with the given root token, with the
    /// engine mounted at `mount` (for example `"gatehouse/transit"`).
    ///
    /// Fails with [`std::io::ErrorKind::InvalidInput`] if `mount` is not a
    /// `/`-separated path of ASCII letters, digits, `-`, `_` and `.`.
    pub async fn start_with_mount(token: &str, mount: &str) -> std::io::Result<Self> {
        let mount = validate_mount(mount)?;
        let shared = Arc::new(Shared {
            token: token.to_owned(),
            mount: mount.clone(),
            down: AtomicBool::new(false),
            started: Instant::now(),
            state: Mutex::new(TransitState::default()),
        });
        let app = router(&mount, Arc::clone(&shared));

        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    // Either a shutdown request or the handle being dropped.
                    stopped.await.ok();
                })
                .await;
            if let Err(error) = served {
                tracing::warn!(%error, "vault transit emulator stopped with an error");
            }
        });
        tracing::debug!(%addr, %mount, "vault transit emulator started");
        Ok(Self {
            addr,
            shared,
            stop,
            task,
        })
    }

    /// The socket address the emulator listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL of the emulator, `http://127.0.0.1:PORT` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// How many calls of `op` have succeeded (2xx responses) so far.
    pub fn calls(&self, op: TransitOp) -> u64 {
        self.shared
            .lock()
            .calls
            .get(&op)
            .copied()
            .unwrap_or_default()
    }

    /// Fault knob: while down, every request gets 503 `{"errors":["Vault is sealed"]}`.
    pub fn set_down(&self, down: bool) {
        self.shared.down.store(down, Ordering::SeqCst);
    }

    /// Latest version of key `key`, or `None` if the key does not exist.
    pub fn latest_version(&self, key: &str) -> Option<u32> {
        self.shared.lock().keys.get(key).map(TransitKey::latest)
    }

    /// Stops accepting requests, lets in-flight ones finish, and waits for
    /// the server task to end.
    pub async fn shutdown(self) {
        let Self { stop, task, .. } = self;
        // An error means the server is already gone; nothing left to stop.
        stop.send(()).ok();
        if let Err(error) = task.await {
            tracing::warn!(%error, "vault transit emulator task failed");
        }
    }
}

/// Checks the mount path and strips surrounding slashes. Also keeps axum's
/// route parser (which panics on `{`, `}` and `*`) away from odd input.
fn validate_mount(mount: &str) -> std::io::Result<String> {
    let trimmed = mount.trim_matches('/');
    let valid = !trimmed.is_empty()
        && trimmed.split('/').all(|segment| {
            !segment.is_empty()
                && segment
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        });
    if valid {
        Ok(trimmed.to_owned())
    } else {
        Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("invalid Vault mount path: {mount:?}"),
        ))
    }
}

/// State shared between the handle and the request handlers.
struct Shared {
    token: String,
    mount: String,
    down: AtomicBool,
    started: Instant,
    state: Mutex<TransitState>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, TransitState> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Seconds since the Unix epoch on the synthetic clock (see module docs).
    fn now_unix(&self) -> u64 {
        SYNTHETIC_EPOCH + self.started.elapsed().as_secs()
    }

    fn token_matches(&self, headers: &HeaderMap) -> bool {
        let presented = headers
            .get("x-vault-token")
            .and_then(|v| v.to_str().ok())
            .or_else(|| {
                headers
                    .get(header::AUTHORIZATION)
                    .and_then(|v| v.to_str().ok())
                    .and_then(|v| v.strip_prefix("Bearer "))
            });
        presented == Some(self.token.as_str())
    }
}

#[derive(Default)]
struct TransitState {
    keys: HashMap<String, TransitKey>,
    calls: HashMap<TransitOp, u64>,
}

impl TransitState {
    fn count(&mut self, op: TransitOp) {
        *self.calls.entry(op).or_default() += 1;
    }
}

/// A named key; `versions[0]` is version 1.
struct TransitKey {
    versions: Vec<KeyVersion>,
}

struct KeyVersion {
    material: [u8; 32],
    created_unix: u64,
}

impl KeyVersion {
    fn generate(created_unix: u64) -> Result<Self, ApiError> {
        let mut material = [0u8; 32];
        fill_random(&mut material)?;
        Ok(Self {
            material,
            created_unix,
        })
    }
}

impl TransitKey {
    fn latest(&self) -> u32 {
        u32::try_from(self.versions.len()).unwrap_or(u32::MAX)
    }

    fn version(&self, version: u32) -> Option<&KeyVersion> {
        let index = usize::try_from(version.checked_sub(1)?).ok()?;
        self.versions.get(index)
    }

    /// Encrypts under the latest version; returns the ciphertext and its version.
    fn seal(&self, plaintext: &[u8]) -> Result<(String, u32), ApiError> {
        let version = self.latest();
        let key = self
            .version(version)
            .ok_or_else(|| ApiError::internal("key has no versions"))?;
        let cipher = Aes256Gcm::new_from_slice(&key.material)
            .map_err(|_| ApiError::internal("invalid key length"))?;
        let mut nonce = [0u8; NONCE_LEN];
        fill_random(&mut nonce)?;
        let sealed = cipher
            .encrypt(
                Nonce::from_slice(&nonce),
                Payload {
                    msg: plaintext,
                    aad: &[],
                },
            )
            .map_err(|_| ApiError::internal("encryption failed"))?;
        let mut blob = Vec::with_capacity(NONCE_LEN + sealed.len());
        blob.extend_from_slice(&nonce);
        blob.extend_from_slice(&sealed);
        Ok((
            format!("vault:v{version}:{}", STANDARD.encode(blob)),
            version,
        ))
    }

    /// Decrypts a `vault:vN:...` ciphertext produced by [`TransitKey::seal`].
    fn open(&self, ciphertext: &str) -> Result<Vec<u8>, ApiError> {
        let rest = ciphertext
            .strip_prefix("vault:v")
            .ok_or_else(|| invalid_ciphertext("no prefix"))?;
        let (version, encoded) = rest
            .split_once(':')
            .ok_or_else(|| invalid_ciphertext("wrong number of fields"))?;
        let version: u32 = version
            .parse()
            .map_err(|_| invalid_ciphertext("version number could not be decoded"))?;
        let key = self
            .version(version)
            .ok_or_else(|| invalid_ciphertext("invalid key version"))?;
        let blob = STANDARD
            .decode(encoded)
            .map_err(|_| invalid_ciphertext("could not decode base64"))?;
        let (nonce, sealed) = blob
            .split_at_checked(NONCE_LEN)
            .ok_or_else(|| invalid_ciphertext("ciphertext too short"))?;
        let cipher = Aes256Gcm::new_from_slice(&key.material)
            .map_err(|_| ApiError::internal("invalid key length"))?;
        cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: &[],
                },
            )
            .map_err(|_| invalid_ciphertext("message authentication failed"))
    }

    /// The `data` object of Vault's key read response.
    fn info(&self, name: &str) -> Value {
        let keys: serde_json::Map<String, Value> = self
            .versions
            .iter()
            .zip(1u32..)
            .map(|(key, version)| (version.to_string(), json!(key.created_unix)))
            .collect();
        json!({
            "data": {
                "name": name,
                "type": KEY_TYPE,
                "latest_version": self.latest(),
                "min_decryption_version": 1,
                "min_encryption_version": 0,
                "deletion_allowed": false,
                "exportable": false,
                "supports_encryption": true,
                "supports_decryption": true,
                "supports_derivation": true,
                "keys": keys,
            }
        })
    }
}

fn fill_random(buf: &mut [u8]) -> Result<(), ApiError> {
    getrandom::fill(buf).map_err(|e| ApiError::internal(format!("random source failed: {e}")))
}

/// A Vault-style error response: `{"errors":[...]}` with a status code.
#[derive(Debug)]
struct ApiError {
    status: StatusCode,
    errors: Vec<String>,
}

impl ApiError {
    fn new(status: StatusCode, message: impl Into<String>) -> Self {
        Self {
            status,
            errors: vec![message.into()],
        }
    }

    fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, message)
    }

    fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, message)
    }

    fn not_found() -> Self {
        Self {
            status: StatusCode::NOT_FOUND,
            errors: Vec::new(),
        }
    }

    fn key_not_found() -> Self {
        Self::bad_request("encryption key not found")
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        (self.status, axum::Json(json!({ "errors": self.errors }))).into_response()
    }
}

fn invalid_ciphertext(reason: &str) -> ApiError {
    ApiError::bad_request(format!("invalid ciphertext: {reason}"))
}

type ApiResult = Result<axum::Json<Value>, ApiError>;

/// Parses an optional JSON body: empty means all fields absent.
fn parse_body<T: DeserializeOwned + Default>(body: &[u8]) -> Result<T, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(T::default());
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("failed to parse JSON input: {e}")))
}

fn router(mount: &str, shared: Arc<Shared>) -> Router {
    let base = format!("/v1/{mount}");
    Router::new()
        .route(
            &format!("{base}/keys/{{name}}"),
            get(read_key)
                .post(create_key)
                .put(create_key)
                .delete(delete_key),
        )
        .route(
            &format!("{base}/keys/{{name}}/rotate"),
            post(rotate).put(rotate),
        )
        .route(
            &format!("{base}/datakey/{{kind}}/{{name}}"),
            post(data_key).put(data_key),
        )
        .route(
            &format!("{base}/encrypt/{{name}}"),
            post(encrypt).put(encrypt),
        )
        .route(
            &format!("{base}/decrypt/{{name}}"),
            post(decrypt).put(decrypt),
        )
        .route(&format!("{base}/rewrap/{{name}}"), post(rewrap).put(rewrap))
        .fallback(|| async { ApiError::not_found() })
        .method_not_allowed_fallback(|| async {
            ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "unsupported operation")
        })
        // Added after the fallbacks so that they are guarded too: like Vault,
        // an unknown path without a valid token is 403, not 404.
        .layer(middleware::from_fn_with_state(Arc::clone(&shared), guard))
        .with_state(shared)
}

/// Fault knob and authentication, ahead of every route.
async fn guard(State(shared): State<Arc<Shared>>, request: Request, next: Next) -> Response {
    if shared.down.load(Ordering::SeqCst) {
        return ApiError::new(StatusCode::SERVICE_UNAVAILABLE, "Vault is sealed").into_response();
    }
    if !shared.token_matches(request.headers()) {
        return ApiError::new(StatusCode::FORBIDDEN, "permission denied").into_response();
    }
    next.run(request).await
}

#[derive(Debug, Default, Deserialize)]
struct CreateKeyRequest {
    #[serde(rename = "type")]
    key_type: Option<String>,
}

async fn create_key(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult {
    let request: CreateKeyRequest = parse_body(&body)?;
    if let Some(key_type) = request.key_type.as_deref()
        && key_type != KEY_TYPE
    {
        return Err(ApiError::bad_request(format!(
            "unknown key type {key_type:?} (the emulator supports only {KEY_TYPE})"
        )));
    }
    let now = shared.now_unix();
    let mut state = shared.lock();
    if !state.keys.contains_key(&name) {
        let first = KeyVersion::generate(now)?;
        state.keys.insert(
            name.clone(),
            TransitKey {
                versions: vec![first],
            },
        );
    }
    let info = state
        .keys
        .get(&name)
        .map(|key| key.info(&name))
        .ok_or_else(|| ApiError::internal("key vanished"))?;
    state.count(TransitOp::CreateKey);
    Ok(axum::Json(info))
}

async fn read_key(State(shared): State<Arc<Shared>>, Path(name): Path<String>) -> ApiResult {
    let mut state = shared.lock();
    let info = state
        .keys
        .get(&name)
        .map(|key| key.info(&name))
        .ok_or_else(ApiError::not_found)?;
    state.count(TransitOp::ReadKey);
    Ok(axum::Json(info))
}

async fn delete_key() -> ApiError {
    ApiError::bad_request("deletion is not allowed for this key")
}

async fn rotate(State(shared): State<Arc<Shared>>, Path(name): Path<String>) -> ApiResult {
    let now = shared.now_unix();
    let mut state = shared.lock();
    let key = state
        .keys
        .get_mut(&name)
        .ok_or_else(ApiError::key_not_found)?;
    key.versions.push(KeyVersion::generate(now)?);
    let info = key.info(&name);
    state.count(TransitOp::Rotate);
    Ok(axum::Json(info))
}

#[derive(Debug, Default, Deserialize)]
struct DataKeyRequest {
    bits: Option<Value>,
}

/// Data key length in bytes; Vault takes `bits` as a number or a numeric string.
fn data_key_len(bits: Option<&Value>) -> Result<usize, ApiError> {
    let bits = match bits {
        None | Some(Value::Null) => Some(256),
        Some(Value::Number(n)) => n.as_u64(),
        Some(Value::String(s)) => s.parse().ok(),
        Some(_) => None,
    };
    match bits {
        Some(bits @ (128 | 256 | 512)) => Ok(usize::try_from(bits / 8).unwrap_or(32)),
        _ => Err(ApiError::bad_request("invalid bits parameter")),
    }
}

async fn data_key(
    State(shared): State<Arc<Shared>>,
    Path((kind, name)): Path<(String, String)>,
    body: Bytes,
) -> ApiResult {
    let include_plaintext = match kind.as_str() {
        "plaintext" => true,
        "wrapped" => false,
        _ => return Err(ApiError::bad_request("invalid type")),
    };
    let request: DataKeyRequest = parse_body(&body)?;
    let mut plaintext = vec![0u8; data_key_len(request.bits.as_ref())?];
    fill_random(&mut plaintext)?;

    let mut state = shared.lock();
    let key = state.keys.get(&name).ok_or_else(ApiError::key_not_found)?;
    let (ciphertext, version) = key.seal(&plaintext)?;
    state.count(TransitOp::DataKey);
    drop(state);

    let mut data = json!({ "ciphertext": ciphertext, "key_version": version });
    if include_plaintext {
        data["plaintext"] = json!(STANDARD.encode(&plaintext));
    }
    Ok(axum::Json(json!({ "data": data })))
}

#[derive(Debug, Default, Deserialize)]
struct EncryptRequest {
    plaintext: Option<String>,
}

async fn encrypt(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult {
    let request: EncryptRequest = parse_body(&body)?;
    let encoded = request
        .plaintext
        .ok_or_else(|| ApiError::bad_request("missing plaintext to encrypt"))?;
    let plaintext = STANDARD
        .decode(encoded)
        .map_err(|_| ApiError::bad_request("failed to base64-decode plaintext"))?;

    let mut state = shared.lock();
    let key = state.keys.get(&name).ok_or_else(ApiError::key_not_found)?;
    let (ciphertext, version) = key.seal(&plaintext)?;
    state.count(TransitOp::Encrypt);
    Ok(axum::Json(json!({
        "data": { "ciphertext": ciphertext, "key_version": version }
    })))
}

#[derive(Debug, Default, Deserialize)]
struct CiphertextRequest {
    ciphertext: Option<String>,
}

async fn decrypt(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult {
    let request: CiphertextRequest = parse_body(&body)?;
    let ciphertext = request
        .ciphertext
        .ok_or_else(|| ApiError::bad_request("missing ciphertext to decrypt"))?;

    let mut state = shared.lock();
    let key = state.keys.get(&name).ok_or_else(ApiError::key_not_found)?;
    let plaintext = key.open(&ciphertext)?;
    state.count(TransitOp::Decrypt);
    Ok(axum::Json(json!({
        "data": { "plaintext": STANDARD.encode(plaintext) }
    })))
}

async fn rewrap(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    body: Bytes,
) -> ApiResult {
    let request: CiphertextRequest = parse_body(&body)?;
    let ciphertext = request
        .ciphertext
        .ok_or_else(|| ApiError::bad_request("missing ciphertext to rewrap"))?;

    let mut state = shared.lock();
    let key = state.keys.get(&name).ok_or_else(ApiError::key_not_found)?;
    let plaintext = key.open(&ciphertext)?;
    let (ciphertext, version) = key.seal(&plaintext)?;
    state.count(TransitOp::Rewrap);
    Ok(axum::Json(json!({
        "data": { "ciphertext": ciphertext, "key_version": version }
    })))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::{Client, Method};

    const TOKEN: &str = "s.root-token";

    /// A running emulator plus a client that talks to it over real HTTP.
    struct Harness {
        vault: VaultTransitEmulator,
        client: Client,
    }

    impl Harness {
        async fn start() -> Self {
            Self::with(VaultTransitEmulator::start(TOKEN).await.unwrap())
        }

        fn with(vault: VaultTransitEmulator) -> Self {
            Self {
                vault,
                client: Client::new(),
            }
        }

        /// Sends `method path` with `token` (if any) and optional JSON body.
        async fn send(
            &self,
            method: Method,
            path: &str,
            token: Option<&str>,
            body: Option<Value>,
        ) -> (u16, Value) {
            let mut request = self
                .client
                .request(method, format!("{}{path}", self.vault.url()));
            if let Some(token) = token {
                request = request.header("X-Vault-Token", token);
            }
            if let Some(body) = body {
                request = request.json(&body);
            }
            let response = request.send().await.unwrap();
            let status = response.status().as_u16();
            let bytes = response.bytes().await.unwrap();
            let body = if bytes.is_empty() {
                Value::Null
            } else {
                serde_json::from_slice(&bytes).unwrap()
            };
            (status, body)
        }

        async fn post(&self, path: &str, body: Value) -> (u16, Value) {
            self.send(Method::POST, path, Some(TOKEN), Some(body)).await
        }

        async fn get(&self, path: &str) -> (u16, Value) {
            self.send(Method::GET, path, Some(TOKEN), None).await
        }

        async fn create_key(&self, name: &str) {
            let (status, body) = self
                .post(
                    &format!("/v1/transit/keys/{name}"),
                    json!({ "type": "aes256-gcm96" }),
                )
                .await;
            assert_eq!(status, 200, "{body}");
        }

        /// `datakey/plaintext` under `name`: returns (plaintext b64, ciphertext).
        async fn plaintext_data_key(&self, name: &str) -> (String, String) {
            let (status, body) = self
                .post(&format!("/v1/transit/datakey/plaintext/{name}"), json!({}))
                .await;
            assert_eq!(status, 200, "{body}");
            (
                body["data"]["plaintext"].as_str().unwrap().to_owned(),
                body["data"]["ciphertext"].as_str().unwrap().to_owned(),
            )
        }

        async fn decrypt(&self, name: &str, ciphertext: &str) -> (u16, Value) {
            self.post(
                &format!("/v1/transit/decrypt/{name}"),
                json!({ "ciphertext": ciphertext }),
            )
            .await
        }
    }

    fn errors(body: &Value) -> Vec<String> {
        body["errors"]
            .as_array()
            .unwrap_or_else(|| panic!("no errors array in {body}"))
            .iter()
            .map(|e| e.as_str().unwrap().to_owned())
            .collect()
    }

    #[tokio::test]
    async fn wrong_or_missing_token_is_forbidden() {
        let h = Harness::start().await;
        for token in [Some("s.wrong"), Some(""), None] {
            let (status, body) = h
                .send(Method::POST, "/v1/transit/keys/k", token, Some(json!({})))
                .await;
            assert_eq!(status, 403, "token {token:?}");
            assert_eq!(body, json!({ "errors": ["permission denied"] }));
        }
        // Unknown paths are guarded too, as in Vault.
        let (status, _) = h
            .send(Method::GET, "/v1/sys/health", Some("s.wrong"), None)
            .await;
        assert_eq!(status, 403);
        assert_eq!(h.vault.latest_version("k"), None);
        assert_eq!(h.vault.calls(TransitOp::CreateKey), 0);

        // Vault also accepts the token as a bearer token.
        let response = h
            .client
            .post(format!("{}/v1/transit/keys/k", h.vault.url()))
            .bearer_auth(TOKEN)
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 200);
        assert_eq!(h.vault.latest_version("k"), Some(1));
        h.vault.shutdown().await;
    }

    #[tokio::test]
    async fn create_and_read_key() {
        let h = Harness::start().await;
        let (status, created) = h.post("/v1/transit/keys/tenant-a", json!({})).await;
        assert_eq!(status, 200, "{created}");
        let data = &created["data"];
        assert_eq!(data["name"], "tenant-a");
        assert_eq!(data["type"], "aes256-gcm96");
        assert_eq!(data["latest_version"], 1);
        assert_eq!(data["min_decryption_version"], 1);
        let keys = data["keys"].as_object().unwrap();
        assert_eq!(keys.len(), 1);
        assert!(keys["1"].as_u64().unwrap() >= SYNTHETIC_EPOCH);

        let (status, read) = h.get("/v1/transit/keys/tenant-a").await;
        assert_eq!(status, 200);
        assert_eq!(read, created);

        // Creating again is idempotent: no new version.
        let (status, again) = h.post("/v1/transit/keys/tenant-a", json!({})).await;
        assert_eq!(status, 200);
        assert_eq!(again["data"]["latest_version"], 1);
        assert_eq!(h.vault.latest_version("tenant-a"), Some(1));

        // An empty body is allowed (the type defaults to aes256-gcm96).
        let (status, _) = h
            .send(Method::POST, "/v1/transit/keys/bare", Some(TOKEN), None)
            .await;
        assert_eq!(status, 200);
        assert_eq!(h.vault.latest_version("bare"), Some(1));

        let (status, body) = h
            .post("/v1/transit/keys/rsa", json!({ "type": "rsa-2048" }))
            .await;
        assert_eq!(status, 400);
        assert_eq!(errors(&body).len(), 1);
        assert_eq!(h.vault.latest_version("rsa"), None);

        let (status, body) = h.get("/v1/transit/keys/missing").await;
        assert_eq!(status, 404);
        assert_eq!(body, json!({ "errors": [] }));
        h.vault.shutdown().await;
    }

    #[tokio::test]
    async fn datakey_plaintext_decrypts_to_the_same_key() {
        let h = Harness::start().await;
        h.create_key("k").await;
        let (status, body) = h
            .post("/v1/transit/datakey/plaintext/k", json!({ "bits": 256 }))
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"]["key_version"], 1);
        let plaintext = body["data"]["plaintext"].as_str().unwrap();
        let ciphertext = body["data"]["ciphertext"].as_str().unwrap();
        assert_eq!(STANDARD.decode(plaintext).unwrap().len(), 32);
        assert!(ciphertext.starts_with("vault:v1:"), "{ciphertext}");

        let (status, decrypted) = h.decrypt("k", ciphertext).await;
        assert_eq!(status, 200, "{decrypted}");
        assert_eq!(decrypted["data"]["plaintext"], plaintext);

        // Two data keys are different keys.
        let (other, _) = h.plaintext_data_key("k").await;
        assert_ne!(other, plaintext);
        h.vault.shutdown().await;
    }

    #[tokio::test]
    async fn datakey_bits_and_wrapped_variant() {
        let h = Harness::start().await;
        h.create_key("k").await;
        for (bits, len) in [(json!(128), 16), (json!(512), 64), (json!("256"), 32)] {
            let (status, body) = h
                .post("/v1/transit/datakey/plaintext/k", json!({ "bits": bits }))
                .await;
            assert_eq!(status, 200, "{body}");
            let key = STANDARD
                .decode(body["data"]["plaintext"].as_str().unwrap())
                .unwrap();
            assert_eq!(key.len(), len, "bits {bits}");
        }
        let (status, _) = h
            .post("/v1/transit/datakey/plaintext/k", json!({ "bits": 100 }))
            .await;
        assert_eq!(status, 400);

        let (status, wrapped) = h.post("/v1/transit/datakey/wrapped/k", json!({})).await;
        assert_eq!(status, 200, "{wrapped}");
        let data = wrapped["data"].as_object().unwrap();
        assert!(!data.contains_key("plaintext"), "{wrapped}");
        assert_eq!(data["key_version"], 1);
        let (status, decrypted) = h.decrypt("k", data["ciphertext"].as_str().unwrap()).await;
        assert_eq!(status, 200);
        let key = STANDARD
            .decode(decrypted["data"]["plaintext"].as_str().unwrap())
            .unwrap();
        assert_eq!(key.len(), 32);

        let (status, _) = h.post("/v1/transit/datakey/sideways/k", json!({})).await;
        assert_eq!(status, 400);
        let (status, body) = h
            .post("/v1/transit/datakey/plaintext/missing", json!({}))
            .await;
        assert_eq!(status, 400);
        assert_eq!(body, json!({ "errors": ["encryption key not found"] }));
        h.vault.shutdown().await;
    }

    #[tokio::test]
    async fn encrypt_uses_vault_ciphertext_layout() {
        let h = Harness::start().await;
        h.create_key("k").await;
        let message = b"hello, tenant";
        let (status, body) = h
            .post(
                "/v1/transit/encrypt/k",
                json!({ "plaintext": STANDARD.encode(message) }),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"]["key_version"], 1);
        let ciphertext = body["data"]["ciphertext"].as_str().unwrap();

        // Layout check independent of the emulator's own decrypt path:
        // base64(nonce || AES-256-GCM ciphertext-and-tag) under version 1.
        let blob = STANDARD
            .decode(ciphertext.strip_prefix("vault:v1:").unwrap())
            .unwrap();
        assert_eq!(blob.len(), NONCE_LEN + message.len() + 16);
        let material = h.vault.shared.lock().keys["k"].versions[0].material;
        let (nonce, sealed) = blob.split_at(NONCE_LEN);
        let opened = Aes256Gcm::new_from_slice(&material)
            .unwrap()
            .decrypt(Nonce::from_slice(nonce), sealed)
            .unwrap();
        assert_eq!(opened, message);

        let (status, decrypted) = h.decrypt("k", ciphertext).await;
        assert_eq!(status, 200);
        assert_eq!(decrypted["data"]["plaintext"], STANDARD.encode(message));

        let (status, body) = h
            .post("/v1/transit/encrypt/k", json!({ "plaintext": "%%%" }))
            .await;
        assert_eq!(status, 400, "{body}");
        let (status, _) = h.post("/v1/transit/encrypt/k", json!({})).await;
        assert_eq!(status, 400);
        h.vault.shutdown().await;
    }

    #[tokio::test]
    async fn encrypt_with_missing_key_is_400_and_does_not_create_it() {
        let h = Harness::start().await;
        let (status, body) = h
            .post(
                "/v1/transit/encrypt/nope",
                json!({ "plaintext": STANDARD.encode(b"x") }),
            )
            .await;
        assert_eq!(status, 400);
        assert_eq!(body, json!({ "errors": ["encryption key not found"] }));
        assert_eq!(h.vault.latest_version("nope"), None);
        let (status, _) = h.get("/v1/transit/keys/nope").await;
        assert_eq!(status, 404);
        h.vault.shutdown().await;
    }

    #[tokio::test]
    async fn rotate_then_rewrap_moves_to_v2_and_still_decrypts() {
        let h = Harness::start().await;
        h.create_key("k").await;
        let (plaintext, v1) = h.plaintext_data_key("k").await;
        assert!(v1.starts_with("vault:v1:"));

        let (status, rotated) = h.post("/v1/transit/keys/k/rotate", json!({})).await;
        assert_eq!(status, 200, "{rotated}");
        assert_eq!(rotated["data"]["latest_version"], 2);
        let keys = rotated["data"]["keys"].as_object().unwrap();
        assert!(keys.contains_key("1") && keys.contains_key("2"));
        assert_eq!(h.vault.latest_version("k"), Some(2));

        let (status, body) = h
            .post("/v1/transit/rewrap/k", json!({ "ciphertext": v1 }))
            .await;
        assert_eq!(status, 200, "{body}");
        assert_eq!(body["data"]["key_version"], 2);
        let v2 = body["data"]["ciphertext"].as_str().unwrap();
        assert!(v2.starts_with("vault:v2:"), "{v2}");

        for ciphertext in [v1.as_str(), v2] {
            let (status, decrypted) = h.decrypt("k", ciphertext).await;
            assert_eq!(status, 200, "{decrypted}");
            assert_eq!(decrypted["data"]["plaintext"], plaintext.as_str());
        }

        // New data keys and encryptions use the latest version.
        let (_, v2_key) = h.plaintext_data_key("k").await;
        assert!(v2_key.starts_with("vault:v2:"), "{v2_key}");

        let (status, _) = h.post("/v1/transit/keys/missing/rotate", json!({})).await;
        assert_eq!(status, 400);
        h.vault.shutdown().await;
    }

    #[tokio::test]
    async fn tampered_or_foreign_ciphertext_is_rejected() {
        let h = Harness::start().await;
        h.create_key("k").await;
        h.create_key("other").await;
        let (_, ciphertext) = h.plaintext_data_key("k").await;
        let encoded = ciphertext.strip_prefix("vault:v1:").unwrap();

        let mut blob = STANDARD.decode(encoded).unwrap();
        let last = blob.len() - 1;
        blob[last] ^= 0x01;
        let tampered = format!("vault:v1:{}", STANDARD.encode(&blob));

        let cases = [
            tampered,
            format!("vault:v7:{encoded}"),
            format!("vault:v0:{encoded}"),
            encoded.to_owned(),
            format!("vault:vX:{encoded}"),
            "vault:v1:not*base64".to_owned(),
            format!("vault:v1:{}", STANDARD.encode([0u8; 8])),
        ];
        for case in &cases {
            for op in ["decrypt", "rewrap"] {
                let (status, body) = h
                    .post(
                        &format!("/v1/transit/{op}/k"),
                        json!({ "ciphertext": case }),
                    )
                    .await;
                assert_eq!(status, 400, "{op} {case}: {body}");
                let errors = errors(&body);
                assert_eq!(errors.len(), 1);
                assert!(errors[0].starts_with("invalid ciphertext: "), "{errors:?}");
            }
        }

        // A ciphertext of one key does not open under another.
        let (status, _) = h.decrypt("other", &ciphertext).await;
        assert_eq!(status, 400);

        assert_eq!(h.vault.calls(TransitOp::Decrypt), 0);
        assert_eq!(h.vault.calls(TransitOp::Rewrap), 0);
        // The untouched ciphertext still works.
        let (status, _) = h.decrypt("k", &ciphertext).await;
        assert_eq!(status, 200);
        h.vault.shutdown().await;
    }

    #[tokio::test]
    async fn malformed_requests_get_vault_errors() {
        let h = Harness::start().await;
        h.create_key("k").await;
        let url = format!("{}/v1/transit/encrypt/k", h.vault.url());
        let response = h
            .client
            .post(&url)
            .header("X-Vault-Token", TOKEN)
            .body("{not json")
            .send()
            .await
            .unwrap();
        assert_eq!(response.status().as_u16(), 400);
        let body: Value = response.json().await.unwrap();
        assert_eq!(errors(&body).len(), 1);

        let (status, body) = h.get("/v1/transit/nothing/here").await;
        assert_eq!(status, 404);
        assert_eq!(body, json!({ "errors": [] }));

        let (status, body) = h
            .send(Method::DELETE, "/v1/transit/keys/k", Some(TOKEN), None)
            .await;
        assert_eq!(status, 400);
        assert_eq!(
            body,
            json!({ "errors": ["deletion is not allowed for this key"] })
        );
        assert_eq!(h.vault.latest_version("k"), Some(1));

        let (status, body) = h.get("/v1/transit/encrypt/k").await;
        assert_eq!(status, 405);
        assert_eq!(errors(&body).len(), 1);
        h.vault.shutdown().await;
    }

    #[tokio::test]
    async fn set_down_returns_503_until_back_up() {
        let h = Harness::start().await;
        h.create_key("k").await;
        h.vault.set_down(true);
        let (status, body) = h.post("/v1/transit/datakey/plaintext/k", json!({})).await;
        assert_eq!(status, 503);
        assert_eq!(body, json!({ "errors": ["Vault is sealed"] }));
        // Sealed comes before authentication, as in Vault.
        let (status, _) = h
            .send(Method::GET, "/v1/transit/keys/k", Some("s.wrong"), None)
            .await;
        assert_eq!(status, 503);
        assert_eq!(h.vault.calls(TransitOp::DataKey), 0);
        assert_eq!(h.vault.calls(TransitOp::ReadKey), 0);

        h.vault.set_down(false);
        let (status, _) = h.post("/v1/transit/datakey/plaintext/k", json!({})).await;
        assert_eq!(status, 200);
        assert_eq!(h.vault.calls(TransitOp::DataKey), 1);
        h.vault.shutdown().await;
    }

    #[tokio::test]
    async fn counters_count_successful_calls_only() {
        let h = Harness::start().await;
        let all = [
            TransitOp::CreateKey,
            TransitOp::ReadKey,
            TransitOp::Rotate,
            TransitOp::DataKey,
            TransitOp::Encrypt,
            TransitOp::Decrypt,
            TransitOp::Rewrap,
        ];
        for op in all {
            assert_eq!(h.vault.calls(op), 0, "{op:?}");
        }

        h.create_key("k").await;
        h.create_key("k").await;
        let (status, _) = h.get("/v1/transit/keys/k").await;
        assert_eq!(status, 200);
        let (status, _) = h.get("/v1/transit/keys/missing").await;
        assert_eq!(status, 404);
        let (_, ciphertext) = h.plaintext_data_key("k").await;
        let (status, _) = h.post("/v1/transit/datakey/wrapped/k", json!({})).await;
        assert_eq!(status, 200);
        let (status, _) = h
            .post("/v1/transit/encrypt/k", json!({ "plaintext": "aGk=" }))
            .await;
        assert_eq!(status, 200);
        let (status, _) = h.decrypt("k", &ciphertext).await;
        assert_eq!(status, 200);
        let (status, _) = h.decrypt("k", "vault:v1:AAAA").await;
        assert_eq!(status, 400);
        let (status, _) = h.post("/v1/transit/keys/k/rotate", json!({})).await;
        assert_eq!(status, 200);
        let (status, _) = h
            .post("/v1/transit/rewrap/k", json!({ "ciphertext": ciphertext }))
            .await;
        assert_eq!(status, 200);
        let (status, _) = h
            .send(Method::POST, "/v1/transit/keys/k/rotate", Some("bad"), None)
            .await;
        assert_eq!(status, 403);

        let expected = [2, 1, 1, 2, 1, 1, 1];
        for (op, want) in all.into_iter().zip(expected) {
            assert_eq!(h.vault.calls(op), want, "{op:?}");
        }
        assert_eq!(h.vault.latest_version("k"), Some(2));
        h.vault.shutdown().await;
    }

    #[tokio::test]
    async fn custom_mount_and_put_writes() {
        let h = Harness::with(
            VaultTransitEmulator::start_with_mount(TOKEN, "/gatehouse/transit/")
                .await
                .unwrap(),
        );
        // Vault's CLI and Go client write with PUT.
        let (status, body) = h
            .send(
                Method::PUT,
                "/v1/gatehouse/transit/keys/k",
                Some(TOKEN),
                Some(json!({})),
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let (status, body) = h
            .send(
                Method::PUT,
                "/v1/gatehouse/transit/datakey/wrapped/k",
                Some(TOKEN),
                None,
            )
            .await;
        assert_eq!(status, 200, "{body}");
        let (status, _) = h.get("/v1/transit/keys/k").await;
        assert_eq!(status, 404);
        assert!(format!("{:?}", h.vault).contains("gatehouse/transit"));
        assert!(!format!("{:?}", h.vault).contains(TOKEN));
        h.vault.shutdown().await;

        for bad in ["", "/", "a//b", "a/{b}", "a/*rest", "sp ace"] {
            let error = VaultTransitEmulator::start_with_mount(TOKEN, bad)
                .await
                .unwrap_err();
            assert_eq!(error.kind(), std::io::ErrorKind::InvalidInput, "{bad:?}");
        }
    }

    #[tokio::test]
    async fn shutdown_stops_serving() {
        let h = Harness::start().await;
        h.create_key("k").await;
        let url = h.vault.url();
        assert_eq!(url, format!("http://127.0.0.1:{}", h.vault.addr().port()));
        h.vault.shutdown().await;

        let result = Client::new()
            .get(format!("{url}/v1/transit/keys/k"))
            .header("X-Vault-Token", TOKEN)
            .send()
            .await;
        let error = result.unwrap_err();
        assert!(error.is_connect(), "{error}");
    }
}
