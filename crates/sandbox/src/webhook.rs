//! A webhook receiver: records every request on loopback and answers with
//! scripted statuses (200 when nothing is scripted).
//!
//! Tests use it to check what an outbound webhook really sent (headers and
//! the exact body bytes, to verify signatures) and to make the receiver
//! fail on demand: [`WebhookSink::respond_with`] queues answers such as a
//! 503 with `Retry-After`, then a 200.

use std::collections::VecDeque;
use std::fmt;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};

use axum::body::Bytes;
use axum::http::{HeaderMap, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

/// A request the sink received.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedHook {
    /// The request path.
    pub path: String,
    /// Header names (lowercase) and values, in order.
    pub headers: Vec<(String, String)>,
    /// The body, byte for byte.
    pub body: Vec<u8>,
}

impl ReceivedHook {
    /// The first value of a header (name in any case).
    pub fn header(&self, name: &str) -> Option<&str> {
        let name = name.to_ascii_lowercase();
        self.headers
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, v)| v.as_str())
    }
}

#[derive(Default)]
struct State {
    received: Vec<ReceivedHook>,
    script: VecDeque<(u16, Option<String>)>,
}

/// Handle to a running webhook sink; dropping it stops the server.
pub struct WebhookSink {
    addr: SocketAddr,
    state: Arc<Mutex<State>>,
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl fmt::Debug for WebhookSink {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("WebhookSink")
            .field("addr", &self.addr)
            .finish_non_exhaustive()
    }
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl WebhookSink {
    /// Starts on 127.0.0.1 with a random port.
    pub async fn start() -> std::io::Result<Self> {
        let state = Arc::new(Mutex::new(State::default()));
        let shared = Arc::clone(&state);
        let app = axum::Router::new().fallback(move |uri: Uri, headers: HeaderMap, body: Bytes| {
            let state = Arc::clone(&shared);
            async move { receive(&state, uri, headers, body) }
        });
        let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let (stop, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(async move {
            let served = axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    stopped.await.ok();
                })
                .await;
            if let Err(error) = served {
                tracing::warn!(%error, "webhook sink stopped with an error");
            }
        });
        Ok(Self {
            addr,
            state,
            stop,
            task,
        })
    }

    /// `http://127.0.0.1:PORT/hook`.
    pub fn url(&self) -> String {
        format!("http://{}/hook", self.addr)
    }

    /// Requests received so far, in order.
    pub fn received(&self) -> Vec<ReceivedHook> {
        lock(&self.state).received.clone()
    }

    /// Queues an answer for the next request: `status`, with a
    /// `Retry-After` header if given. Unscripted requests get 200.
    pub fn respond_with(&self, status: u16, retry_after: Option<&str>) {
        lock(&self.state)
            .script
            .push_back((status, retry_after.map(str::to_owned)));
    }

    /// Stops the server and waits for it.
    pub async fn shutdown(self) {
        let Self { stop, task, .. } = self;
        stop.send(()).ok();
        if let Err(error) = task.await {
            tracing::warn!(%error, "webhook sink task failed");
        }
    }
}

fn receive(state: &Mutex<State>, uri: Uri, headers: HeaderMap, body: Bytes) -> Response {
    let mut state = lock(state);
    state.received.push(ReceivedHook {
        path: uri.path().to_owned(),
        headers: headers
            .iter()
            .map(|(n, v)| {
                (
                    n.as_str().to_owned(),
                    String::from_utf8_lossy(v.as_bytes()).into_owned(),
                )
            })
            .collect(),
        body: body.to_vec(),
    });
    let (status, retry_after) = state.script.pop_front().unwrap_or((200, None));
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    match retry_after {
        Some(value) => (status, [("retry-after", value)]).into_response(),
        None => status.into_response(),
    }
}
