//! A target system that counts its side effects by idempotency key.
//!
//! Why: Gatehouse promises an exactly-once *effect* where the target honours
//! idempotency keys (see `docs/engine.md`). A test of that promise needs a
//! target that behaves like a careful real API (Stripe, most PSAs) and that
//! can say afterwards how many effects actually happened, per key, however
//! many times it was called.
//!
//! Behaviour of `POST /effects/{name}` with an `Idempotency-Key` header:
//! - the first request with a key performs the effect: it is recorded with
//!   a sequence number and the request body, and answered `201` with a
//!   result that never changes;
//! - a repeat with the same key, name and body answers `200` with the
//!   stored result and performs nothing;
//! - the same key for a different name or body is `422` (a client bug:
//!   one key, two different requests), a missing or empty key `400`.
//!
//! `GET /effects` returns the ledger: totals and, per key, effects and calls.
//!
//! Knobs a real system cannot offer: [`EffectsServer::set_fail_first`]
//! answers the first N calls of every key with `503` (optionally with
//! `Retry-After`), before any effect; [`EffectsServer::set_latency`] holds
//! every answer back after the effect is recorded, which widens the window
//! in which a caller can die between "the target acted" and "the caller
//! heard".
//!
//! State sits behind a std `Mutex` never held across an `.await`; a poisoned
//! lock is recovered, since each update leaves the state whole.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Serialize;
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The header that carries the caller's idempotency key.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// What the ledger holds for one idempotency key.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct KeyCounts {
    /// Effects performed with this key: 1 for a well-behaved caller.
    pub effects: u64,
    /// Requests that carried this key, failed ones included.
    pub calls: u64,
}

/// Handle to a running effects server on loopback.
///
/// Dropping the handle also stops the server (its shutdown channel closes),
/// but only [`EffectsServer::shutdown`] waits for it to finish.
pub struct EffectsServer {
    addr: SocketAddr,
    shared: Arc<Shared>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl fmt::Debug for EffectsServer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("EffectsServer")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl EffectsServer {
    /// Starts on 127.0.0.1:0 (a random port), with no faults and no latency.
    pub async fn start() -> std::io::Result<Self> {
        let shared = Arc::new(Shared::default());
        let app = Router::new()
            .route("/effects", get(ledger))
            .route("/effects/{name}", post(perform))
            .with_state(Arc::clone(&shared));
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
                tracing::warn!(%error, "effects server stopped with an error");
            }
        });
        tracing::debug!(%addr, "effects server started");
        Ok(Self {
            addr,
            shared,
            stop,
            task,
        })
    }

    /// The socket address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL, `http://127.0.0.1:PORT` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The URL that performs effect `name`: `{url}/effects/{name}`.
    /// `name` should be a plain path segment (letters, digits, `-`, `_`).
    pub fn endpoint(&self, name: &str) -> String {
        format!("{}/effects/{name}", self.url())
    }

    /// Fault knob: the first `n` calls of every key are answered `503`
    /// (with `Retry-After` in whole seconds if given) and perform nothing.
    /// Counts from each key's first call, including calls made before the
    /// knob was turned.
    pub fn set_fail_first(&self, n: u64, retry_after: Option<Duration>) {
        let mut state = self.shared.lock();
        state.fail_first = n;
        state.retry_after = retry_after;
    }

    /// Holds every answer back by `latency`, after the effect is recorded.
    pub fn set_latency(&self, latency: Duration) {
        self.shared.lock().latency = latency;
    }

    /// Effects performed, all keys together.
    pub fn effects(&self) -> u64 {
        self.shared
            .lock()
            .keys
            .values()
            .map(|k| k.counts.effects)
            .sum()
    }

    /// Requests that carried a key, all keys together.
    pub fn calls(&self) -> u64 {
        self.shared
            .lock()
            .keys
            .values()
            .map(|k| k.counts.calls)
            .sum()
    }

    /// The counts of one key (zero if never seen).
    pub fn counts(&self, key: &str) -> KeyCounts {
        self.shared
            .lock()
            .keys
            .get(key)
            .map(|k| k.counts.clone())
            .unwrap_or_default()
    }

    /// The whole ledger: every key seen, with its counts.
    pub fn ledger(&self) -> BTreeMap<String, KeyCounts> {
        self.shared
            .lock()
            .keys
            .iter()
            .map(|(key, entry)| (key.clone(), entry.counts.clone()))
            .collect()
    }

    /// The stored result of `key`'s effect, if it happened.
    pub fn result(&self, key: &str) -> Option<Value> {
        self.shared
            .lock()
            .keys
            .get(key)
            .and_then(|k| k.effect.as_ref())
            .map(|e| e.result.clone())
    }

    /// Stops accepting requests, lets in-flight ones finish, and waits for
    /// the server task to end.
    pub async fn shutdown(self) {
        let Self { stop, task, .. } = self;
        // An error means the server is already gone; nothing left to stop.
        stop.send(()).ok();
        if let Err(error) = task.await {
            tracing::warn!(%error, "effects server task failed");
        }
    }
}

#[derive(Default)]
struct Shared {
    state: Mutex<Ledger>,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, Ledger> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Default)]
struct Ledger {
    keys: BTreeMap<String, KeyEntry>,
    /// Effects performed so far; numbers the next one.
    sequence: u64,
    fail_first: u64,
    retry_after: Option<Duration>,
    latency: Duration,
}

#[derive(Default)]
struct KeyEntry {
    counts: KeyCounts,
    effect: Option<Effect>,
}

/// What the first request with a key did, to compare repeats against.
struct Effect {
    name: String,
    body: Bytes,
    result: Value,
}

/// How one call was answered, decided under the lock.
enum Outcome {
    Performed(Value),
    Repeated(Value),
    Unavailable(Option<Duration>),
    Mismatch,
}

fn error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({ "error": { "code": code, "message": message } })),
    )
        .into_response()
}

async fn perform(
    State(shared): State<Arc<Shared>>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    let Some(key) = headers
        .get(IDEMPOTENCY_KEY)
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(str::to_owned)
    else {
        return error(
            StatusCode::BAD_REQUEST,
            "idempotency_key_missing",
            "an Idempotency-Key header is required",
        );
    };
    let (outcome, latency) = {
        let mut ledger = shared.lock();
        let (fail_first, retry_after, latency) =
            (ledger.fail_first, ledger.retry_after, ledger.latency);
        let next = ledger.sequence + 1;
        let entry = ledger.keys.entry(key.clone()).or_default();
        entry.counts.calls += 1;
        let outcome = match &entry.effect {
            Some(effect) if effect.name == name && effect.body == body => {
                Outcome::Repeated(effect.result.clone())
            }
            Some(_) => Outcome::Mismatch,
            None if entry.counts.calls <= fail_first => Outcome::Unavailable(retry_after),
            None => {
                let result = json!({
                    "effect": next,
                    "name": name,
                    "key": key,
                    "request": serde_json::from_slice::<Value>(&body).unwrap_or(Value::Null),
                });
                entry.effect = Some(Effect {
                    name: name.clone(),
                    body: body.clone(),
                    result: result.clone(),
                });
                entry.counts.effects += 1;
                ledger.sequence = next;
                Outcome::Performed(result)
            }
        };
        (outcome, latency)
    };
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    match outcome {
        Outcome::Performed(result) => (StatusCode::CREATED, axum::Json(result)).into_response(),
        Outcome::Repeated(result) => (StatusCode::OK, axum::Json(result)).into_response(),
        Outcome::Mismatch => error(
            StatusCode::UNPROCESSABLE_ENTITY,
            "idempotency_key_reused",
            "this Idempotency-Key was used for a different request",
        ),
        Outcome::Unavailable(retry_after) => {
            let mut response = error(
                StatusCode::SERVICE_UNAVAILABLE,
                "unavailable",
                "the fault knob refuses this call",
            );
            if let Some(after) = retry_after
                && let Ok(value) = HeaderValue::from_str(&after.as_secs().to_string())
            {
                response.headers_mut().insert(header::RETRY_AFTER, value);
            }
            response
        }
    }
}

async fn ledger(State(shared): State<Arc<Shared>>) -> axum::Json<Value> {
    let ledger = shared.lock();
    let keys: BTreeMap<&str, &KeyCounts> = ledger
        .keys
        .iter()
        .map(|(key, entry)| (key.as_str(), &entry.counts))
        .collect();
    let effects: u64 = keys.values().map(|k| k.effects).sum();
    let calls: u64 = keys.values().map(|k| k.calls).sum();
    axum::Json(json!({ "effects": effects, "calls": calls, "keys": keys }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use reqwest::Client;

    async fn post(
        client: &Client,
        url: &str,
        key: Option<&str>,
        body: Value,
    ) -> (u16, Option<String>, Value) {
        let mut request = client.post(url).json(&body);
        if let Some(key) = key {
            request = request.header("Idempotency-Key", key);
        }
        let response = request.send().await.unwrap();
        let status = response.status().as_u16();
        let retry_after = response
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        (status, retry_after, response.json().await.unwrap())
    }

    #[tokio::test]
    async fn the_first_call_with_a_key_acts_and_repeats_get_the_same_result() {
        let server = EffectsServer::start().await.unwrap();
        let client = Client::new();
        let url = server.endpoint("account");
        let body = json!({ "user": "ada" });

        let (status, _, first) = post(&client, &url, Some("k1"), body.clone()).await;
        assert_eq!(status, 201, "{first}");
        assert_eq!(first["effect"], 1);
        assert_eq!(first["request"], body);
        let (status, _, again) = post(&client, &url, Some("k1"), body.clone()).await;
        assert_eq!(status, 200);
        assert_eq!(again, first, "a repeat answers the stored result");
        let (status, _, other) = post(&client, &url, Some("k2"), body.clone()).await;
        assert_eq!(status, 201);
        assert_eq!(other["effect"], 2);

        assert_eq!(
            server.counts("k1"),
            KeyCounts {
                effects: 1,
                calls: 2
            }
        );
        assert_eq!((server.effects(), server.calls()), (2, 3));
        assert_eq!(server.result("k1"), Some(first));
        assert_eq!(server.result("k3"), None);

        let listed: Value = client
            .get(format!("{}/effects", server.url()))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        assert_eq!(
            listed,
            json!({ "effects": 2, "calls": 3, "keys": {
                "k1": { "effects": 1, "calls": 2 },
                "k2": { "effects": 1, "calls": 1 },
            }})
        );
        server.shutdown().await;
    }

    #[tokio::test]
    async fn a_missing_key_or_a_reused_key_is_refused_without_an_effect() {
        let server = EffectsServer::start().await.unwrap();
        let client = Client::new();
        let url = server.endpoint("account");

        let (status, _, body) = post(&client, &url, None, json!({})).await;
        assert_eq!(status, 400, "{body}");
        assert_eq!(body["error"]["code"], "idempotency_key_missing");
        let (status, _, _) = post(&client, &url, Some("  "), json!({})).await;
        assert_eq!(status, 400);

        post(&client, &url, Some("k"), json!({ "a": 1 })).await;
        let (status, _, body) = post(&client, &url, Some("k"), json!({ "a": 2 })).await;
        assert_eq!(status, 422, "{body}");
        let (status, _, _) = post(
            &client,
            &server.endpoint("other"),
            Some("k"),
            json!({ "a": 1 }),
        )
        .await;
        assert_eq!(status, 422);
        assert_eq!(
            server.counts("k"),
            KeyCounts {
                effects: 1,
                calls: 3
            }
        );
        assert_eq!(server.effects(), 1);
        server.shutdown().await;
    }

    #[tokio::test]
    async fn the_fault_knob_fails_the_first_calls_of_each_key() {
        let server = EffectsServer::start().await.unwrap();
        server.set_fail_first(2, Some(Duration::from_secs(3)));
        let client = Client::new();
        let url = server.endpoint("account");

        for _ in 0..2 {
            let (status, retry_after, _) = post(&client, &url, Some("k"), json!({})).await;
            assert_eq!(status, 503);
            assert_eq!(retry_after.as_deref(), Some("3"));
        }
        assert_eq!(server.effects(), 0, "a refused call performs nothing");
        let (status, _, _) = post(&client, &url, Some("k"), json!({})).await;
        assert_eq!(status, 201);
        let (status, _, _) = post(&client, &url, Some("j"), json!({})).await;
        assert_eq!(status, 503, "every key fails first");

        server.set_fail_first(0, None);
        let (status, _, _) = post(&client, &url, Some("j"), json!({})).await;
        assert_eq!(status, 201);
        assert_eq!(
            server.counts("k"),
            KeyCounts {
                effects: 1,
                calls: 3
            }
        );
        server.shutdown().await;
    }
}
