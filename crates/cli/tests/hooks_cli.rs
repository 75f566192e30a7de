//! The webhook intake end to end through the `gatehouse` binary: `serve`
//! mounts `/hooks/{source}/{tenant}`, a signed generic delivery starts the
//! onboarding, a forged one is refused, and `gatehouse hooks list` shows
//! both attempts. On SQLite and, with `GATEHOUSE_TEST_DATABASE_URL`, on
//! PostgreSQL.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests fail loudly"
)]

#[allow(dead_code, reason = "this test uses a part of the shared helpers")]
mod common;

use gatehouse_connectors::webhook::sign_generic;
use gatehouse_core::clock::{Clock, SystemClock};
use serde_json::json;

use common::{Backend, Install, on_postgres, on_sqlite};

async fn a_signed_webhook_starts_an_onboarding_and_hooks_list_shows_every_attempt(
    backend: Backend,
) {
    let install = Install::new(&backend);
    install.run(&["migrate"]).ok();
    install
        .run(&[
            "tenant", "create", "msp", "--name", "Our MSP", "--region", "eu",
        ])
        .ok();
    install
        .run_with_stdin(
            &["tenant", "secret", "set", "msp", "hooks.generic.secret"],
            b"gen-secret",
        )
        .ok();

    let mut server = install.serve(&[]).await;
    let _ = server.bootstrap_token();
    let body = json!({
        "type": "client.won",
        "id": "crm-42",
        "company": { "id": "c-42", "name": "Acme Corp" },
        "owner": { "email": "lead@msp.example" },
    })
    .to_string();
    let now = SystemClock.now().unix_timestamp();
    let client = reqwest::Client::new();
    let send = |signature: String| {
        client
            .post(format!("{}/hooks/generic/msp", server.base))
            .header("x-gatehouse-timestamp", now.to_string())
            .header("x-gatehouse-signature", signature)
            .body(body.clone())
            .send()
    };
    let forged = send(sign_generic(b"guess", now, body.as_bytes()))
        .await
        .unwrap();
    assert_eq!(forged.status(), 401);
    let good = send(sign_generic(b"gen-secret", now, body.as_bytes()))
        .await
        .unwrap();
    assert_eq!(good.status(), 202);
    let reply: serde_json::Value = good.json().await.unwrap();
    assert_eq!(reply["instances"].as_array().unwrap().len(), 1, "{reply}");
    let stopped = server.terminate();
    assert!(stopped.status.success());

    let listed = install.run(&["hooks", "list", "--json"]).ok().json();
    let items = listed["items"].as_array().unwrap();
    let outcomes: Vec<_> = items
        .iter()
        .map(|d| d["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(outcomes, vec!["accepted", "bad_signature"], "{listed}");
    assert_eq!(items[0]["event_id"], reply["event"]);
    assert!(items[1]["reason"].as_str().unwrap().contains("signature"));

    let table = install
        .run(&["hooks", "list", "--outcome", "accepted"])
        .ok();
    assert!(table.stdout.contains("generic"), "{}", table.stdout);
    assert!(!table.stdout.contains("bad_signature"), "{}", table.stdout);
    install.run(&["hooks", "list", "--outcome", "lost"]).fails();
}

#[tokio::test]
async fn sqlite_a_signed_webhook_starts_an_onboarding() {
    on_sqlite(a_signed_webhook_starts_an_onboarding_and_hooks_list_shows_every_attempt).await;
}

#[tokio::test]
async fn postgres_a_signed_webhook_starts_an_onboarding() {
    on_postgres(
        "cli_hooks",
        a_signed_webhook_starts_an_onboarding_and_hooks_list_shows_every_attempt,
    )
    .await;
}
