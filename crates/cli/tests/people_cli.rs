//! `gatehouse people …`, `gatehouse access-policy …` and `gatehouse bench
//! revocation` through the real binary, on SQLite and (when
//! `GATEHOUSE_TEST_DATABASE_URL` is set) PostgreSQL. The tenant has no
//! systems connected here: the provisioning itself is tested against the
//! sandbox in the server's `identity` tests; this checks the commands.

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
use serde_json::Value;

const POLICY: &str = r#"
[[role]]
id = "sales"
when = 'department eq "Sales"'
grants = [{ system = "crm", group = "Sales" }]
"#;

async fn people_commands(backend: Backend) {
    let install = Install::new(&backend);
    install.run(&["migrate"]).ok();
    install
        .run(&[
            "tenant", "create", "acme", "--name", "Acme Ltd", "--region", "eu",
        ])
        .ok();

    // The policy: a broken one is refused with where; the first is version 1.
    std::fs::write(
        install.path("bad.toml"),
        "[[role]]\nid = \"x\"\ngrants = []\n",
    )
    .unwrap();
    let bad = install.path("bad.toml");
    let refused = install
        .run(&[
            "access-policy",
            "set",
            "--tenant",
            "acme",
            "--replaces",
            "0",
            bad.to_str().unwrap(),
        ])
        .fails();
    assert!(refused.stderr.contains("must grant"), "{}", refused.stderr);
    std::fs::write(install.path("policy.toml"), POLICY).unwrap();
    let policy = install.path("policy.toml");
    install
        .run(&[
            "access-policy",
            "set",
            "--tenant",
            "acme",
            "--replaces",
            "0",
            policy.to_str().unwrap(),
        ])
        .ok();
    let shown = install
        .run(&["access-policy", "show", "--tenant", "acme"])
        .ok();
    assert!(shown.stdout.starts_with("# version 1"), "{}", shown.stdout);

    // One event; the same command again is a duplicate.
    let args = [
        "people",
        "event",
        "--tenant",
        "acme",
        "--person",
        "E1",
        "--kind",
        "hire",
        "--attr",
        "department=Sales",
        "--attr",
        "given_name=Ada",
        "--json",
    ];
    let first = install.run(&args).ok().json();
    assert_eq!(first["status"], "active");
    assert_eq!(first["duplicate"], false);
    assert_eq!(first["unconnected"], serde_json::json!(["crm"]), "{first}");
    let again = install.run(&args).ok().json();
    assert_eq!(again["duplicate"], true);

    // A CSV import: the good rows are applied, the bad ones listed by line,
    // and the exit code says some were refused.
    std::fs::write(
        install.path("people.csv"),
        "person,event,given_name,department\nE2,hire,Ben,Finance\nE3,promote,Cy,Sales\nE1,transfer,,Finance\n",
    )
    .unwrap();
    let csv = install.path("people.csv");
    let imported = install.run(&[
        "people",
        "import",
        "--tenant",
        "acme",
        csv.to_str().unwrap(),
    ]);
    assert_eq!(
        imported.status.code(),
        Some(2),
        "{}\n{}",
        imported.stdout,
        imported.stderr
    );
    assert!(
        imported.stdout.contains("3 rows: 2 applied"),
        "{}",
        imported.stdout
    );
    assert!(
        imported.stdout.contains("line 3: event `promote`"),
        "{}",
        imported.stdout
    );
    assert!(
        imported.stderr.contains("people.csv"),
        "progress on stderr: {}",
        imported.stderr
    );

    let listed = install
        .run(&["people", "list", "--tenant", "acme", "--json"])
        .ok()
        .json();
    let keys: Vec<&str> = listed
        .as_array()
        .unwrap()
        .iter()
        .map(|p| p["key"].as_str().unwrap())
        .collect();
    assert_eq!(keys.len(), 2, "{listed}");
    let shown: Value = install
        .run(&["people", "show", "--tenant", "acme", "E1"])
        .ok()
        .json();
    assert_eq!(shown["attributes"]["department"], "Finance");
    assert_eq!(shown["lineage"]["department"]["source"], "csv");
    assert_eq!(shown["lineage"]["given_name"]["source"], "cli");
    // Moved out of Sales: the policy no longer gives them anything.
    assert_eq!(shown["desired"], serde_json::json!({}), "{shown}");
    install
        .run(&["people", "show", "--tenant", "acme", "E404"])
        .fails();
}

async fn bench_revocation_prints_its_json_last(backend: Backend) {
    let install = Install::new(&backend);
    let run = install
        .run(&[
            "bench",
            "revocation",
            "--json",
            "--people",
            "30",
            "--runs",
            "5",
            "--bulk",
            "10",
        ])
        .ok();
    let last = run
        .stdout
        .lines()
        .last()
        .unwrap_or_else(|| panic!("nothing printed; stderr:\n{}", run.stderr));
    let result: Value = serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("the last line is JSON ({e}): {last}"));
    assert_eq!(result["scenario"], "revocation", "{result}");
    assert_eq!(result["backend"], backend.name(), "{result}");
    assert_eq!(result["people"], 30);
    assert_eq!(result["bulk"], 10);
    for field in [
        "single_p50_ms",
        "single_p99_ms",
        "bulk_1000_secs",
        "peak_rss_mb",
    ] {
        let value = result[field]
            .as_f64()
            .unwrap_or_else(|| panic!("{field} is a number: {result}"));
        assert!(value > 0.0, "{field} = {value}");
    }
    assert!(result["single_p99_ms"].as_f64() >= result["single_p50_ms"].as_f64());
}

#[tokio::test]
async fn people_commands_on_sqlite() {
    on_sqlite(people_commands).await;
}

#[tokio::test]
async fn people_commands_on_postgres() {
    on_postgres("people_cli", people_commands).await;
}

#[tokio::test]
async fn bench_revocation_on_sqlite() {
    on_sqlite(bench_revocation_prints_its_json_last).await;
}

#[tokio::test]
async fn bench_revocation_on_postgres() {
    on_postgres(
        "bench_revocation_cli",
        bench_revocation_prints_its_json_last,
    )
    .await;
}
