//! `gatehouse bench onboarding` through the binary, with a few clients: every
//! won deal goes live (the operator gives each approval through the API), and
//! the last line is the JSON the benchmark promises. On SQLite and, with
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

async fn bench_onboarding_takes_every_deal_live_and_prints_json_last(backend: Backend) {
    let install = Install::new(&backend);
    let run = install
        .run(&["bench", "onboarding", "--json", "--clients", "3"])
        .ok();
    let last = run
        .stdout
        .lines()
        .last()
        .unwrap_or_else(|| panic!("bench printed nothing; stderr:\n{}", run.stderr));
    let result: Value = serde_json::from_str(last)
        .unwrap_or_else(|e| panic!("the last line is JSON ({e}): {last}"));
    assert_eq!(result["scenario"], "onboarding", "{result}");
    assert_eq!(result["backend"], backend.name(), "{result}");
    assert_eq!(result["clients"], 3, "{result}");
    for field in [
        "onboardings_per_min",
        "p50_step_ms",
        "p99_step_ms",
        "peak_rss_mb",
        "elapsed_secs",
    ] {
        let value = result[field]
            .as_f64()
            .unwrap_or_else(|| panic!("{field} is a number: {result}"));
        assert!(value > 0.0, "{field} = {value}");
    }
    // Every gated step of every onboarding was timed (eleven approvals and
    // three sign-offs each); a plan found changed was approved again.
    let steps = result["steps"].as_u64().unwrap();
    let approval_steps = result["approval_steps"].as_u64().unwrap();
    let approvals = result["approvals"].as_u64().unwrap();
    let tasks = result["tasks"].as_u64().unwrap();
    assert_eq!(approval_steps, 3 * 11, "{result}");
    assert_eq!(tasks, 3 * 3, "three sign-offs per onboarding: {result}");
    assert_eq!(steps, approval_steps + tasks, "{result}");
    let replanned: u64 = result["replanned"]
        .as_object()
        .unwrap()
        .values()
        .map(|n| n.as_u64().unwrap())
        .sum();
    assert_eq!(approvals, approval_steps + replanned, "{result}");
    assert_eq!(result["checklist_items"], 3 * 8, "{result}");
    // Progress went to standard error, and the installation was not touched.
    assert!(run.stderr.contains("operational: 3/3"), "{}", run.stderr);
    assert!(!install.path("kek.json").exists());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_bench_onboarding() {
    on_sqlite(bench_onboarding_takes_every_deal_live_and_prints_json_last).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_bench_onboarding() {
    on_postgres(
        "cli_bench_onboarding",
        bench_onboarding_takes_every_deal_live_and_prints_json_last,
    )
    .await;
}
