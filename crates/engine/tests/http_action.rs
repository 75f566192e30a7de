//! `http.post` against a real HTTP server on loopback: what it sends (JSON,
//! the idempotency key, the template's headers) and how each kind of answer
//! becomes a success, a retryable or a permanent error.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests fail loudly"
)]

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use axum::Router;
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::IntoResponse;
use axum::routing::post;
use gatehouse_core::clock::{Clock, FakeClock};
use gatehouse_core::id::WorkflowId;
use gatehouse_engine::action::{Action, ActionCall, ActionError};
use gatehouse_engine::http_action::HttpPost;
use serde_json::{Value, json};

const KEY: &str = "wf_test:create-account";

/// Answers each path in one way.
async fn target() -> SocketAddr {
    let app = Router::new()
        .route(
            "/ok",
            post(|headers: HeaderMap, body: axum::Json<Value>| async move {
                let header = |name: &str| {
                    headers
                        .get(name)
                        .and_then(|v| v.to_str().ok())
                        .map(str::to_owned)
                };
                (
                    StatusCode::CREATED,
                    axum::Json(json!({
                        "key": header("idempotency-key"),
                        "tag": header("x-tag"),
                        "content_type": header("content-type"),
                        "body": body.0,
                    })),
                )
            }),
        )
        .route("/empty", post(|| async { StatusCode::NO_CONTENT }))
        .route(
            "/busy",
            post(|| async {
                (
                    StatusCode::SERVICE_UNAVAILABLE,
                    [(header::RETRY_AFTER, "7")],
                    "maintenance",
                )
            }),
        )
        .route(
            "/limited",
            post(|| async {
                // FakeClock's default is 2026-01-01T00:00:00Z: 90 s later.
                (
                    StatusCode::TOO_MANY_REQUESTS,
                    [(header::RETRY_AFTER, "Thu, 01 Jan 2026 00:01:30 GMT")],
                    "slow down",
                )
            }),
        )
        .route(
            "/bad",
            post(|| async {
                (
                    StatusCode::BAD_REQUEST,
                    axum::Json(json!({ "error": "user name is taken" })),
                )
            }),
        )
        .route(
            "/broken",
            post(|| async { (StatusCode::INTERNAL_SERVER_ERROR, "boom").into_response() }),
        )
        .route(
            "/huge",
            post(|| async { "x".repeat(gatehouse_engine::http_action::MAX_ANSWER_BYTES + 1) }),
        )
        .route(
            "/moved",
            post(|| async { (StatusCode::FOUND, [(header::LOCATION, "/ok")]) }),
        );
    let listener = tokio::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move { axum::serve(listener, app).await });
    addr
}

async fn post_to(url: &str, extra: Value) -> Result<Value, ActionError> {
    let clock: Arc<dyn Clock> = Arc::new(FakeClock::default());
    let action = HttpPost::new(clock).unwrap();
    let mut params = json!({ "url": url });
    if let (Some(params), Some(extra)) = (params.as_object_mut(), extra.as_object()) {
        params.extend(extra.clone());
    }
    action
        .run(ActionCall {
            instance: "wf_01jd8x3k2q9f6v0c4m7r5t8w1y"
                .parse::<WorkflowId>()
                .unwrap(),
            tenant: None,
            step_id: "create-account",
            idempotency_key: KEY,
            params: &params,
            attempt: 1,
        })
        .await
}

#[tokio::test]
async fn a_2xx_returns_the_answer_and_the_target_gets_json_and_the_key() {
    let base = format!("http://{}", target().await);
    let output = post_to(
        &format!("{base}/ok"),
        json!({ "body": { "user": "ada" }, "headers": { "X-Tag": "t1" } }),
    )
    .await
    .unwrap();
    assert_eq!(
        output,
        json!({
            "key": KEY,
            "tag": "t1",
            "content_type": "application/json",
            "body": { "user": "ada" },
        })
    );
    // Without a body, `{}` is sent.
    let output = post_to(&format!("{base}/ok"), json!({})).await.unwrap();
    assert_eq!(output["body"], json!({}));
    // A 2xx without JSON: its status.
    let output = post_to(&format!("{base}/empty"), json!({})).await.unwrap();
    assert_eq!(output, json!({ "status": 204 }));
}

#[tokio::test]
async fn busy_targets_are_retried_after_the_time_they_ask_for() {
    let base = format!("http://{}", target().await);
    match post_to(&format!("{base}/busy"), json!({})).await {
        Err(ActionError::Retryable {
            message,
            retry_after,
        }) => {
            assert_eq!(retry_after, Some(Duration::from_secs(7)));
            assert!(message.contains("503"), "{message}");
            assert!(message.contains("maintenance"), "{message}");
        }
        other => panic!("a 503 is retryable: {other:?}"),
    }
    match post_to(&format!("{base}/limited"), json!({})).await {
        Err(ActionError::Retryable { retry_after, .. }) => {
            assert_eq!(retry_after, Some(Duration::from_secs(90)), "an HTTP date");
        }
        other => panic!("a 429 is retryable: {other:?}"),
    }
}

#[tokio::test]
async fn a_target_that_is_not_listening_is_retried() {
    // A port that was free a moment ago and is closed now.
    let listener = std::net::TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).unwrap();
    let addr = listener.local_addr().unwrap();
    drop(listener);
    match post_to(&format!("http://{addr}/ok?token=s3cret"), json!({})).await {
        Err(ActionError::Retryable {
            message,
            retry_after,
        }) => {
            assert_eq!(retry_after, None);
            assert!(message.contains("cannot connect"), "{message}");
            assert!(!message.contains("s3cret"), "no query in errors: {message}");
        }
        other => panic!("no connection is retryable: {other:?}"),
    }
}

#[tokio::test]
async fn other_errors_are_permanent_with_the_status_and_an_excerpt() {
    let base = format!("http://{}", target().await);
    match post_to(&format!("{base}/bad"), json!({})).await {
        Err(ActionError::Permanent { message }) => {
            assert!(message.contains("400 Bad Request"), "{message}");
            assert!(message.contains("user name is taken"), "{message}");
        }
        other => panic!("a 400 is permanent: {other:?}"),
    }
    match post_to(&format!("{base}/broken"), json!({})).await {
        Err(ActionError::Permanent { message }) => assert!(message.contains("500"), "{message}"),
        other => panic!("a 500 is permanent: {other:?}"),
    }
    match post_to(&format!("{base}/moved"), json!({})).await {
        Err(ActionError::Permanent { message }) => assert!(message.contains("302"), "{message}"),
        other => panic!("a redirect is not followed: {other:?}"),
    }
}

#[tokio::test]
async fn an_answer_larger_than_the_limit_fails_the_step() {
    let addr = target().await;
    match post_to(&format!("http://{addr}/huge"), json!({})).await {
        Err(ActionError::Permanent { message }) => {
            assert!(message.contains("larger than"), "{message}");
        }
        other => panic!("expected a permanent error, got {other:?}"),
    }
}
