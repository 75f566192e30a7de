//! `gatehouse kb …` end to end: the real binary writes, lists, shows and
//! searches a tenant's articles, on SQLite and (when
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

use common::{Backend, Install, files_starting_with, on_postgres, on_sqlite};

const PLAINTEXT: &str = "wombat-5521";

async fn write_list_show_and_search(backend: Backend) {
    let install = Install::new(&backend);
    install.run(&["migrate"]).ok();
    install
        .run(&[
            "tenant", "create", "acme", "--name", "Acme Ltd", "--region", "eu",
        ])
        .ok();
    let body =
        format!("The backup NAS ({PLAINTEXT}) is in the comms room.\nRestores were tested in May.");
    let added = install
        .run_with_stdin(
            &[
                "kb",
                "add",
                "acme",
                "--collection",
                "runbooks",
                "--title",
                "Backup NAS",
                "--tag",
                "backup",
                "--json",
            ],
            body.as_bytes(),
        )
        .ok()
        .json();
    let id = added["id"].as_str().unwrap().to_owned();
    assert_eq!(added["version"], 1);
    assert_eq!(added["author"], "system");
    install
        .run_with_stdin(
            &[
                "kb",
                "add",
                "acme",
                "--collection",
                "known-issues",
                "--title",
                "Printer",
            ],
            b"The printer needs a restart on Mondays.",
        )
        .ok();

    let listed = install
        .run(&["kb", "list", "acme", "--collection", "runbooks"])
        .ok();
    assert!(listed.stdout.contains(&id), "{}", listed.stdout);
    assert!(!listed.stdout.contains("Printer"), "{}", listed.stdout);

    let shown = install.run(&["kb", "show", "acme", &id]).ok();
    assert!(shown.stdout.contains("# Backup NAS"), "{}", shown.stdout);
    assert!(shown.stdout.contains(PLAINTEXT), "{}", shown.stdout);

    let found = install
        .run(&["kb", "search", "acme", "\"backup nas\"", "--json"])
        .ok()
        .json();
    assert_eq!(found["total"], 1, "{found}");
    assert_eq!(found["hits"][0]["id"], id.as_str());
    let tagged = install
        .run(&[
            "kb",
            "search",
            "acme",
            "restart OR restores",
            "--tag",
            "backup",
            "--json",
        ])
        .ok()
        .json();
    assert_eq!(tagged["total"], 1, "{tagged}");

    let bad = install.run(&["kb", "search", "acme", "title:(nas"]).fails();
    assert!(
        bad.error_message().contains("invalid_query"),
        "{}",
        bad.stderr
    );
    install.run(&["kb", "show", "acme", "kba_nope"]).fails();

    if backend.is_sqlite() {
        for (path, bytes) in files_starting_with(install.data_dir(), "gatehouse.db") {
            assert!(
                !bytes
                    .windows(PLAINTEXT.len())
                    .any(|w| w == PLAINTEXT.as_bytes()),
                "{} holds an article in the clear",
                path.display()
            );
        }
    }
}

#[tokio::test]
async fn kb_commands_on_sqlite() {
    on_sqlite(write_list_show_and_search).await;
}

#[tokio::test]
async fn kb_commands_on_postgres() {
    on_postgres("kb_cli", write_list_show_and_search).await;
}
