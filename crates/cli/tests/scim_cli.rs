//! `gatehouse scim token …` end to end: the real binary creates, lists and
//! revokes a tenant's SCIM tokens, on SQLite and (when
//! `GATEHOUSE_TEST_DATABASE_URL` is set) PostgreSQL.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests fail loudly"
)]

#[allow(
    dead_code,
    reason = "the shared harness of the cli tests; this binary uses part of it"
)]
mod common;

use common::{Backend, Install, on_postgres, on_sqlite};

async fn create_list_and_revoke(backend: Backend) {
    let install = Install::new(&backend);
    install.run(&["migrate"]).ok();
    install
        .run(&[
            "tenant", "create", "acme", "--name", "Acme Ltd", "--region", "eu",
        ])
        .ok();
    let created = install
        .run(&[
            "scim", "token", "create", "--tenant", "acme", "--label", "entra", "--json",
        ])
        .ok()
        .json();
    let id = created["id"].as_str().unwrap().to_owned();
    let secret = created["secret"].as_str().unwrap().to_owned();
    assert!(id.starts_with("scimtok_"), "{id}");
    assert!(secret.starts_with("gh_scim_"), "{secret}");

    let listed = install
        .run(&["scim", "token", "list", "--tenant", "acme", "--json"])
        .ok();
    assert!(
        !listed.stdout.contains(&secret),
        "a list never shows secrets"
    );
    let listed = listed.json();
    assert_eq!(listed[0]["id"], id.as_str());
    assert_eq!(listed[0]["label"], "entra");
    assert!(listed[0]["revoked_at"].is_null());

    install
        .run(&["scim", "token", "revoke", "--tenant", "acme", &id])
        .ok();
    let listed = install
        .run(&["scim", "token", "list", "--tenant", "acme", "--json"])
        .ok()
        .json();
    assert!(listed[0]["revoked_at"].is_string());
    // Revoking twice, or another tenant's or an unknown tenant: errors.
    install
        .run(&["scim", "token", "revoke", "--tenant", "acme", &id])
        .fails();
    install
        .run(&["scim", "token", "list", "--tenant", "nobody"])
        .fails();
}

#[tokio::test]
async fn scim_token_commands_on_sqlite() {
    on_sqlite(create_list_and_revoke).await;
}

#[tokio::test]
async fn scim_token_commands_on_postgres() {
    on_postgres("scim_cli", create_list_and_revoke).await;
}
