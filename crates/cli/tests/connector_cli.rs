//! `gatehouse connector list|set|remove`, through the real binary on SQLite.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests fail loudly"
)]

#[allow(dead_code, reason = "each test binary uses part of the shared harness")]
mod common;

use common::{Backend, Install};

#[test]
fn connectors_are_set_listed_and_removed() {
    let install = Install::new(&Backend::sqlite());
    install.run(&["migrate"]).ok();
    install
        .run(&[
            "tenant", "create", "msp", "--name", "Our MSP", "--region", "eu",
        ])
        .ok();
    let set = [
        "connector",
        "set",
        "msp",
        "rmm",
        "--kind",
        "ninjaone",
        "--base-url",
        "https://eu.ninjarmm.com",
        "--setting",
        "client_id=abc",
        "--secret",
        "client_secret=ninjaone.client-secret",
    ];
    let created = install.run(&set).ok();
    assert!(
        created
            .stdout
            .contains("created connector rmm (ninjaone, version 1)"),
        "{}",
        created.stdout
    );
    let updated = install.run(&set).ok();
    assert!(
        updated
            .stdout
            .contains("updated connector rmm (ninjaone, version 2)"),
        "{}",
        updated.stdout
    );

    let listed = install.run(&["connector", "list", "msp", "--json"]).ok();
    let items: serde_json::Value = serde_json::from_str(&listed.stdout).unwrap();
    assert_eq!(items[0]["name"], "rmm");
    assert_eq!(items[0]["settings"]["client_id"], "abc");
    assert_eq!(
        items[0]["secrets"]["client_secret"],
        "ninjaone.client-secret"
    );

    // A credential as a setting is refused, and names the way to do it.
    let leaky = install
        .run(&[
            "connector",
            "set",
            "msp",
            "rmm",
            "--kind",
            "ninjaone",
            "--base-url",
            "https://eu.ninjarmm.com",
            "--setting",
            "api_key=hunter2",
        ])
        .fails();
    assert!(leaky.stderr.contains("tenant secret"), "{}", leaky.stderr);
    assert!(!leaky.stderr.contains("hunter2"), "{}", leaky.stderr);
    install
        .run(&[
            "connector",
            "set",
            "msp",
            "x",
            "--kind",
            "jira",
            "--base-url",
            "https://j.test",
        ])
        .fails();

    let removed = install.run(&["connector", "remove", "msp", "rmm"]).ok();
    assert!(
        removed.stdout.contains("removed connector rmm"),
        "{}",
        removed.stdout
    );
    install.run(&["connector", "remove", "msp", "rmm"]).fails();
    let table = install.run(&["connector", "list", "msp"]).ok();
    assert!(!table.stdout.contains("ninjaone"), "{}", table.stdout);
}
