//! `gatehouse bench scim` through the binary, with a few users: every user
//! is created, read, found and patched over real HTTP, the tenant then holds
//! exactly that many (by SCIM's own `totalResults`), and the last line is
//! the JSON the benchmark promises. On SQLite and, with
//! `GATEHOUSE_TEST_DATABASE_URL`, on PostgreSQL. No timing is asserted.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests fail loudly"
)]

#[allow(dead_code, reason = "this test uses a part of the shared helpers")]
mod common;

use serde_json::Value;

use common::{Backend, Install, on_postgres, on_sqlite};

async fn bench_scim_provisions_every_user_and_prints_json_last(backend: Backend) {
    let install = Install::new(&backend);
    let run = install
        .run(&[
            "bench",
            "scim",
            "--json",
            "--users",
            "40",
            "--samples",
            "24",
        ])
        .ok();
    let last = run
        .stdout
        .lines()
        .last()
        .unwrap_or_else(|| panic!("bench printed nothing; stderr:\n{}", run.stderr));
    let result: Value = serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("the last line is JSON ({e}): {last}"));
    assert_eq!(result["scenario"], "scim", "{result}");
    assert_eq!(result["backend"], backend.name(), "{result}");
    assert_eq!(result["users"], 40, "{result}");
    assert_eq!(result["samples"], 24, "{result}");
    // The tenant holds exactly the users created, counted over SCIM.
    assert_eq!(result["total_results"], 40, "{result}");
    // One family name in 16 starts with the filter's prefix: users 15 and 31.
    assert_eq!(result["unindexed_filter_matches"], 2, "{result}");
    for field in [
        "create_per_sec",
        "get_per_sec",
        "filter_per_sec",
        "patch_per_sec",
        "p99_ms",
        "create_p50_ms",
        "create_p99_ms",
        "get_p50_ms",
        "get_p99_ms",
        "filter_p50_ms",
        "filter_p99_ms",
        "patch_p50_ms",
        "patch_p99_ms",
        "unindexed_filter_p50_ms",
        "peak_rss_mb",
        "elapsed_secs",
    ] {
        let value = result[field]
            .as_f64()
            .unwrap_or_else(|| panic!("{field} is a number: {result}"));
        assert!(value > 0.0, "{field} = {value}");
    }
    // p99_ms is the worst of the four operations' p99s.
    let worst = ["create", "get", "filter", "patch"]
        .iter()
        .map(|op| result[format!("{op}_p99_ms")].as_f64().unwrap())
        .fold(0.0, f64::max);
    assert_eq!(result["p99_ms"].as_f64().unwrap(), worst, "{result}");
    for op in ["create", "get", "filter", "patch"] {
        let p50 = result[format!("{op}_p50_ms")].as_f64().unwrap();
        let p99 = result[format!("{op}_p99_ms")].as_f64().unwrap();
        assert!(p50 <= p99, "{op}: p50 {p50} > p99 {p99}");
    }
    // Progress went to standard error, and the installation was not touched.
    assert!(run.stderr.contains("create: 40/40"), "{}", run.stderr);
    assert!(run.stderr.contains("patch: 24/24"), "{}", run.stderr);
    assert!(run.stderr.contains("users over SCIM: 40"), "{}", run.stderr);
    assert!(!install.path("kek.json").exists());
}

async fn bench_scim_refuses_zero_users(backend: Backend) {
    let install = Install::new(&backend);
    let run = install
        .run(&["bench", "scim", "--json", "--users", "0"])
        .fails();
    assert!(run.stderr.contains("--users"), "{}", run.stderr);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_bench_scim() {
    on_sqlite(bench_scim_provisions_every_user_and_prints_json_last).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_bench_scim_refuses_zero_users() {
    on_sqlite(bench_scim_refuses_zero_users).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_bench_scim() {
    on_postgres(
        "cli_bench_scim",
        bench_scim_provisions_every_user_and_prints_json_last,
    )
    .await;
}
