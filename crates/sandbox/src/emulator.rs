//! What every vendor emulator shares: serving on loopback, fault knobs,
//! side-effect counters and idempotency keys.
//!
//! A vendor emulator (ConnectWise, NinjaOne, Graph, …) is an axum
//! [`Router`] over its own state plus one [`Harness`]. [`serve`] wraps the
//! router in the harness's fault layer and binds it to `127.0.0.1:0`; the
//! returned [`Served`] gives the URL and stops the server.
//!
//! The fault knobs ([`Faults`]) act before the vendor's handler, so a
//! faulted request never has an effect:
//! - `down`: every request gets `503` with no effect;
//! - `rate_limit_next(n, retry_after)`: the next `n` requests get `429` with
//!   `Retry-After`;
//! - `error_rate`: that fraction of requests (0.0–1.0) get `500`;
//! - `latency`: every answer is held back this long (after the effect);
//! - `hang`: requests are held this long and then answered `504` without
//!   running the handler, so a client with a shorter timeout sees a timeout
//!   and nothing happened (`latency` is the other case: the target acted,
//!   the caller did not hear in time).
//!
//! Counters ([`Harness::count`], [`Harness::counts`]) record side effects by
//! name (`organizations.created`, …) so tests can assert exactly what a run
//! did. [`Harness::idempotent`] replays the stored answer of a request whose
//! `Idempotency-Key` was seen before, so a retried create acts once.
//!
//! State sits behind std `Mutex`es never held across an `.await`; a
//! poisoned lock is recovered, since each update leaves the state whole.

use std::collections::BTreeMap;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use axum::Router;
use axum::body::Body;
use axum::extract::{Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// The header that carries a caller's idempotency key.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";

/// Locks `mutex`, recovering from poisoning (every update leaves the state
/// whole, so a panicked holder cannot have left it half-written).
pub fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The fault knobs of one emulator. All default to "healthy".
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Faults {
    /// Every request gets `503` and has no effect.
    pub down: bool,
    /// The next this many requests get `429` with `Retry-After`.
    pub rate_limited: u32,
    /// The `Retry-After` (whole seconds) sent with a `429`.
    pub retry_after_secs: u64,
    /// The fraction of requests (0.0–1.0) answered `500` with no effect.
    pub error_rate: f64,
    /// Every answer is held back this long, after the effect.
    pub latency: Duration,
    /// Every request is held this long, then answered `504` with no effect.
    pub hang: Duration,
}

/// Fault knobs, counters and idempotency records shared by an emulator's
/// handlers and its test-facing handle. Cheap to clone.
#[derive(Clone, Default)]
pub struct Harness {
    inner: Arc<HarnessInner>,
}

#[derive(Default)]
struct HarnessInner {
    faults: Mutex<Faults>,
    counts: Mutex<BTreeMap<String, u64>>,
    /// Idempotency key → the stored answer (status, body).
    replies: Mutex<BTreeMap<String, (StatusCode, Value)>>,
}

impl fmt::Debug for Harness {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Harness")
            .field("faults", &*lock(&self.inner.faults))
            .field("counts", &*lock(&self.inner.counts))
            .finish_non_exhaustive()
    }
}

impl Harness {
    /// A healthy harness with no counts.
    pub fn new() -> Self {
        Self::default()
    }

    /// The current fault knobs.
    pub fn faults(&self) -> Faults {
        lock(&self.inner.faults).clone()
    }

    /// Changes the fault knobs.
    pub fn set_faults(&self, change: impl FnOnce(&mut Faults)) {
        change(&mut lock(&self.inner.faults));
    }

    /// Knob: every request gets `503` while `down`.
    pub fn set_down(&self, down: bool) {
        self.set_faults(|f| f.down = down);
    }

    /// Knob: the next `n` requests get `429` with `Retry-After: retry_after_secs`.
    pub fn rate_limit_next(&self, n: u32, retry_after_secs: u64) {
        self.set_faults(|f| {
            f.rate_limited = n;
            f.retry_after_secs = retry_after_secs;
        });
    }

    /// Knob: this fraction of requests (clamped to 0.0–1.0) gets `500`.
    pub fn set_error_rate(&self, rate: f64) {
        self.set_faults(|f| f.error_rate = rate.clamp(0.0, 1.0));
    }

    /// Knob: every answer is held back this long.
    pub fn set_latency(&self, latency: Duration) {
        self.set_faults(|f| f.latency = latency);
    }

    /// Knob: every request is held this long, then answered `504` with no
    /// effect (zero turns it off).
    pub fn set_hang(&self, hang: Duration) {
        self.set_faults(|f| f.hang = hang);
    }

    /// Records one side effect called `what`.
    pub fn count(&self, what: &str) {
        *lock(&self.inner.counts).entry(what.to_owned()).or_default() += 1;
    }

    /// How many side effects called `what` happened.
    pub fn counted(&self, what: &str) -> u64 {
        lock(&self.inner.counts).get(what).copied().unwrap_or(0)
    }

    /// Every side-effect counter.
    pub fn counts(&self) -> BTreeMap<String, u64> {
        lock(&self.inner.counts).clone()
    }

    /// Runs `effect` once per idempotency key: a request whose
    /// `Idempotency-Key` was seen before gets the stored answer and `effect`
    /// is not run; a request without the header always runs it. Only
    /// successful answers are stored, so a failed attempt can be retried.
    pub fn idempotent(
        &self,
        headers: &HeaderMap,
        effect: impl FnOnce() -> (StatusCode, Value),
    ) -> Response {
        let key = headers
            .get(IDEMPOTENCY_KEY)
            .and_then(|v| v.to_str().ok())
            .filter(|k| !k.is_empty())
            .map(str::to_owned);
        if let Some(key) = &key
            && let Some((status, body)) = lock(&self.inner.replies).get(key).cloned()
        {
            self.count("idempotent_replays");
            return (status, axum::Json(body)).into_response();
        }
        let (status, body) = effect();
        if let Some(key) = key
            && status.is_success()
        {
            lock(&self.inner.replies).insert(key, (status, body.clone()));
        }
        (status, axum::Json(body)).into_response()
    }

    /// What the fault knobs say about the next request: an answer that
    /// replaces the handler's, or `None` to let it run.
    fn fault_for_next(&self) -> Option<Response> {
        let mut faults = lock(&self.inner.faults);
        if faults.down {
            return Some(error(
                StatusCode::SERVICE_UNAVAILABLE,
                "the service is down",
            ));
        }
        if faults.rate_limited > 0 {
            faults.rate_limited -= 1;
            let mut response = error(StatusCode::TOO_MANY_REQUESTS, "rate limit exceeded");
            response.headers_mut().insert(
                header::RETRY_AFTER,
                HeaderValue::from(faults.retry_after_secs),
            );
            return Some(response);
        }
        if faults.error_rate > 0.0 && random_unit() < faults.error_rate {
            return Some(error(StatusCode::INTERNAL_SERVER_ERROR, "injected failure"));
        }
        None
    }
}

/// A JSON error body `{"error": message}` with `status`.
pub fn error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "error": message }))).into_response()
}

fn random_unit() -> f64 {
    match getrandom::u64() {
        Ok(bits) => (bits >> 11) as f64 / (1u64 << 53) as f64,
        Err(_) => 0.5,
    }
}

async fn apply_faults(
    State(harness): State<Harness>,
    request: Request<Body>,
    next: Next,
) -> Response {
    let hang = harness.faults().hang;
    if !hang.is_zero() {
        tokio::time::sleep(hang).await;
        return error(StatusCode::GATEWAY_TIMEOUT, "the request timed out");
    }
    if let Some(response) = harness.fault_for_next() {
        return response;
    }
    let response = next.run(request).await;
    let latency = harness.faults().latency;
    if !latency.is_zero() {
        tokio::time::sleep(latency).await;
    }
    response
}

/// A running emulator on loopback.
///
/// Dropping the handle also stops the server (its shutdown channel closes),
/// but only [`Served::shutdown`] waits for it to finish.
pub struct Served {
    addr: SocketAddr,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl fmt::Debug for Served {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Served")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

impl Served {
    /// The socket address it listens on.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Base URL, `http://127.0.0.1:PORT` (no trailing slash).
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Stops the server and waits for it.
    pub async fn shutdown(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Serves `router` on `127.0.0.1:0` (or `port`, if given) behind
/// `harness`'s fault knobs. `name` appears in logs.
pub async fn serve(
    name: &'static str,
    router: Router,
    harness: &Harness,
    port: Option<u16>,
) -> std::io::Result<Served> {
    let app = router.layer(middleware::from_fn_with_state(
        harness.clone(),
        apply_faults,
    ));
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, port.unwrap_or(0))).await?;
    let addr = listener.local_addr()?;
    let (stop, stopped) = oneshot::channel::<()>();
    let task = tokio::spawn(async move {
        let served = axum::serve(listener, app)
            .with_graceful_shutdown(async move {
                stopped.await.ok();
            })
            .await;
        if let Err(error) = served {
            tracing::warn!(%error, emulator = name, "emulator stopped with an error");
        }
    });
    tracing::debug!(%addr, emulator = name, "emulator started");
    Ok(Served { addr, stop, task })
}

#[cfg(test)]
mod tests {
    use super::*;
    use axum::http::HeaderMap;
    use axum::routing::post;

    async fn started() -> (Harness, Served) {
        let harness = Harness::new();
        let h = harness.clone();
        let router = Router::new().route(
            "/things",
            post(move |headers: HeaderMap| {
                let h = h.clone();
                async move {
                    h.idempotent(&headers, || {
                        h.count("things.created");
                        (
                            StatusCode::CREATED,
                            json!({ "id": h.counted("things.created") }),
                        )
                    })
                }
            }),
        );
        let served = serve("test", router, &harness, None).await.unwrap();
        (harness, served)
    }

    #[tokio::test]
    async fn a_repeated_idempotency_key_acts_once_and_replays_the_answer() {
        let (harness, served) = started().await;
        let client = reqwest::Client::new();
        let url = format!("{}/things", served.url());
        let mut answers = Vec::new();
        for _ in 0..3 {
            let r = client
                .post(&url)
                .header(IDEMPOTENCY_KEY, "k1")
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 201);
            answers.push(r.json::<Value>().await.unwrap());
        }
        let other = client
            .post(&url)
            .header(IDEMPOTENCY_KEY, "k2")
            .send()
            .await
            .unwrap();
        assert_eq!(other.json::<Value>().await.unwrap()["id"], 2);
        assert!(answers.iter().all(|a| a["id"] == 1), "{answers:?}");
        assert_eq!(harness.counted("things.created"), 2);
        assert_eq!(harness.counted("idempotent_replays"), 2);
        served.shutdown().await;
    }

    #[tokio::test]
    async fn faults_answer_before_the_handler_and_have_no_effect() {
        let (harness, served) = started().await;
        let client = reqwest::Client::new();
        let url = format!("{}/things", served.url());

        harness.set_down(true);
        assert_eq!(client.post(&url).send().await.unwrap().status(), 503);
        harness.set_down(false);

        harness.rate_limit_next(2, 7);
        for _ in 0..2 {
            let r = client.post(&url).send().await.unwrap();
            assert_eq!(r.status(), 429);
            assert_eq!(r.headers()[header::RETRY_AFTER], "7");
        }
        harness.set_error_rate(1.0);
        assert_eq!(client.post(&url).send().await.unwrap().status(), 500);
        harness.set_error_rate(0.0);
        assert_eq!(harness.counted("things.created"), 0);

        harness.set_hang(Duration::from_secs(5));
        let timed_out = client
            .post(&url)
            .timeout(Duration::from_millis(200))
            .send()
            .await
            .unwrap_err();
        assert!(timed_out.is_timeout(), "{timed_out}");
        harness.set_hang(Duration::ZERO);
        assert_eq!(client.post(&url).send().await.unwrap().status(), 201);
        assert_eq!(harness.counted("things.created"), 1);
        served.shutdown().await;
    }
}
