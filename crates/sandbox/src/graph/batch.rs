//! `POST /v1.0/$batch`: up to 20 requests in one, each answered as if sent
//! alone with the batch's bearer token.
//!
//! Steps run in order through the same routes (so the same tenant checks),
//! but not through the harness's fault layer: a fault knob acts on the
//! batch as a whole. `dependsOn` is accepted and needs nothing more, since
//! steps already run one after another.

use std::collections::HashSet;

use axum::Router;
use axum::body::{Body, Bytes, to_bytes};
use axum::extract::State;
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method, Request, StatusCode, header};
use serde_json::{Map, Value, json};
use tower::ServiceExt as _;

use super::model::Fault;
use super::routes::{Answer, ok, parse_json};
use crate::emulator::Harness;

/// Graph's limit on requests in one batch.
pub(super) const MAX_STEPS: usize = 20;

/// The largest answer body a step may give (the emulator's own answers are
/// far smaller).
const MAX_STEP_BODY: usize = 16 * 1024 * 1024;

fn bad(message: impl Into<String>) -> Fault {
    Fault::new(StatusCode::BAD_REQUEST, "BadRequest", message)
}

/// One step as an HTTP request to the emulator's own routes.
fn step_request(step: &Value, outer: &HeaderMap) -> Result<(String, Request<Body>), Fault> {
    let id = step
        .get("id")
        .and_then(Value::as_str)
        .filter(|id| !id.is_empty())
        .ok_or_else(|| bad("Every batch request step needs an 'id'."))?;
    let method = step
        .get("method")
        .and_then(Value::as_str)
        .and_then(|m| Method::from_bytes(m.to_ascii_uppercase().as_bytes()).ok())
        .ok_or_else(|| bad(format!("Step '{id}' has no valid 'method'.")))?;
    let url = step
        .get("url")
        .and_then(Value::as_str)
        .ok_or_else(|| bad(format!("Step '{id}' has no 'url'.")))?;
    let relative = url.trim_start_matches('/');
    if relative.contains("://") || relative.starts_with("$batch") {
        return Err(bad(format!(
            "Step '{id}': the url must be relative to the version and not a batch."
        )));
    }
    let mut request = Request::builder()
        .method(method)
        .uri(format!("/v1.0/{relative}"));
    for name in [header::AUTHORIZATION, header::HOST] {
        if let Some(value) = outer.get(&name) {
            request = request.header(name, value.clone());
        }
    }
    if let Some(headers) = step.get("headers").and_then(Value::as_object) {
        for (name, value) in headers {
            let name = HeaderName::from_bytes(name.as_bytes())
                .map_err(|_| bad(format!("Step '{id}' has an invalid header name.")))?;
            let value = value
                .as_str()
                .and_then(|v| HeaderValue::from_str(v).ok())
                .ok_or_else(|| bad(format!("Step '{id}' has an invalid header value.")))?;
            request = request.header(name, value);
        }
    }
    let body = match step.get("body") {
        None | Some(Value::Null) => Body::empty(),
        Some(body) => {
            request = request.header(header::CONTENT_TYPE, "application/json");
            Body::from(body.to_string())
        }
    };
    let request = request
        .body(body)
        .map_err(|_| bad(format!("Step '{id}' has an invalid url.")))?;
    Ok((id.to_owned(), request))
}

/// Runs a batch through `inner`, the emulator's routes without `$batch`;
/// counts `batch.calls`.
pub(super) async fn batch(
    State((inner, harness)): State<(Router, Harness)>,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let body = parse_json(&body)?;
    let steps = body
        .get("requests")
        .and_then(Value::as_array)
        .ok_or_else(|| bad("The batch needs a 'requests' array."))?;
    if steps.is_empty() || steps.len() > MAX_STEPS {
        return Err(bad(format!(
            "Number of batch request steps must be between 1 and {MAX_STEPS}; got {}.",
            steps.len()
        )));
    }
    let mut requests = Vec::with_capacity(steps.len());
    let mut ids = HashSet::new();
    for step in steps {
        let (id, request) = step_request(step, &headers)?;
        if !ids.insert(id.clone()) {
            return Err(bad(format!("Batch request id '{id}' is used twice.")));
        }
        requests.push((id, request));
    }
    harness.count("batch.calls");
    let mut responses = Vec::with_capacity(requests.len());
    for (id, request) in requests {
        let response = match inner.clone().oneshot(request).await {
            Ok(response) => response,
            Err(never) => match never {},
        };
        let status = response.status().as_u16();
        let mut answer_headers = Map::new();
        for name in [header::RETRY_AFTER, header::LOCATION, header::CONTENT_TYPE] {
            if let Some(v) = response.headers().get(&name).and_then(|v| v.to_str().ok()) {
                answer_headers.insert(name.as_str().to_owned(), json!(v));
            }
        }
        let bytes = to_bytes(response.into_body(), MAX_STEP_BODY)
            .await
            .unwrap_or_default();
        let mut answer = json!({ "id": id, "status": status, "headers": answer_headers });
        if !bytes.is_empty() {
            answer["body"] = serde_json::from_slice(&bytes)
                .unwrap_or_else(|_| json!(String::from_utf8_lossy(&bytes)));
        }
        responses.push(answer);
    }
    Ok(ok(json!({ "responses": responses })))
}
