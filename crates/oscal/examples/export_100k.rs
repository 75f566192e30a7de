//! Times the export of 100,000 audit entries (the benchmark target is under
//! 5 s on the 2-core reference machine), in two shapes: 10,000 runs of 10
//! facts, and one run of 100,000 facts (which would show any work that is
//! quadratic in a run's length).
//!
//! `cargo run --release -p gatehouse-oscal --example export_100k`

use std::error::Error;
use std::time::Instant;

use gatehouse_core::GateLevel;
use gatehouse_core::approval::Verdict;
use gatehouse_core::id::{
    ApprovalId, EventId, HumanTaskId, NotificationId, OperatorId, TenantId, WorkflowId,
};
use gatehouse_core::operator::{OperatorName, Role};
use gatehouse_core::tenant::{DisplayName, TenantSlug};
use gatehouse_core::workflow::InstanceState;
use gatehouse_oscal::*;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

const T0: OffsetDateTime = datetime!(2026-11-01 00:00 UTC);

fn operators() -> Result<Vec<OperatorRef>, Box<dyn Error>> {
    (0..20)
        .map(|i| {
            Ok(OperatorRef {
                id: OperatorId::generate(T0),
                name: OperatorName::parse(&format!("operator{i}"))?,
                display_name: DisplayName::parse(&format!("Operator Nº {i}"))?,
                role: if i % 2 == 0 {
                    Role::Lead
                } else {
                    Role::Technician
                },
            })
        })
        .collect()
}

/// The `k`-th fact of a run: every kind in turn.
fn entry(k: u64, leaf: u64, ops: &[OperatorRef]) -> RunEntry {
    let at = T0 + Duration::seconds(i64::try_from(leaf).unwrap_or(0));
    let op = ops[usize::try_from(leaf).unwrap_or(0) % ops.len()].clone();
    let step_id = format!("step-{}", k % 50);
    match k % 6 {
        0 => RunEntry::Analysis(Analysis {
            step_id: Some(step_id),
            text: "Peers hold these grants.\nConfidence from 212 similar people.".to_owned(),
            confidence: Some(0.9),
            at,
            leaf_index: leaf,
        }),
        1 => RunEntry::GateDecision(GateDecision {
            approval_id: ApprovalId::generate(at),
            step_id,
            prepared_by: Actor::System,
            decided_by: op,
            verdict: Verdict::Approve,
            reason: "Looks right.\nChecked against the contract.".to_owned(),
            at,
            leaf_index: leaf,
        }),
        2 => RunEntry::StepExecuted(StepExecuted {
            step_id,
            action: "scim.create_user".to_owned(),
            gate: GateLevel::L2,
            attempt: 1,
            outcome: Outcome::Succeeded,
            detail: None,
            at,
            leaf_index: leaf,
        }),
        3 => RunEntry::HumanTaskCompleted(HumanTaskCompleted {
            task_id: HumanTaskId::generate(at),
            step_id,
            by: op,
            outcome: "Done".to_owned(),
            evidence: "Ticket 4711".to_owned(),
            at,
            leaf_index: leaf,
        }),
        4 => RunEntry::Notification(NotificationSent {
            notification_id: NotificationId::generate(at),
            step_id,
            channel: "webhook".to_owned(),
            at,
            leaf_index: leaf,
        }),
        _ => RunEntry::Compensation(Compensation {
            step_id: format!("step-{}", (k - 3) % 50),
            by: Actor::System,
            reason: "a later step failed".to_owned(),
            outcome: Outcome::Succeeded,
            at,
            leaf_index: leaf,
        }),
    }
}

/// `runs` runs of `per_run` facts (plus a trigger each): `runs × per_run`
/// entries in all, and a checkpoint every 10,000 leaves.
fn input(runs: u64, per_run: u64) -> Result<ExportInput, Box<dyn Error>> {
    let ops = operators()?;
    let mut leaf = 0;
    let mut out = Vec::new();
    for r in 0..runs {
        let start = T0 + Duration::seconds(i64::try_from(leaf)?);
        let trigger = Trigger {
            event_id: EventId::generate(start),
            source: "psa".to_owned(),
            event_type: "deal.won".to_owned(),
            received_at: start,
            leaf_index: leaf,
        };
        leaf += 1;
        let mut entries = Vec::with_capacity(usize::try_from(per_run)?);
        for k in 0..per_run {
            entries.push(entry(k, leaf, &ops));
            leaf += 1;
        }
        out.push(WorkflowRun {
            instance_id: WorkflowId::generate(start),
            template: "client-onboarding".to_owned(),
            template_version: 1,
            started_at: start,
            ended_at: Some(start + Duration::hours(1)),
            state: InstanceState::Completed,
            initiated_by: Actor::Operator(ops[usize::try_from(r)? % ops.len()].clone()),
            trigger,
            entries,
            revocation: None,
        });
    }
    let checkpoints = (1..=leaf / 10_000 + 1)
        .map(|i| {
            let size = i * 10_000;
            CheckpointRef {
                origin: "gatehouse.example/audit".to_owned(),
                tree_size: size,
                root_hash: [1; 32],
                note: format!("gatehouse.example/audit\n{size}\nroot\n"),
                href: format!("/api/v1/audit/checkpoints/{size}"),
            }
        })
        .collect();
    Ok(ExportInput {
        tenant: TenantRef {
            id: TenantId::generate(T0),
            slug: TenantSlug::parse("northwind-legal")?,
            name: DisplayName::parse("Northwind Legal LLP")?,
        },
        period: Period::default(),
        generated_at: T0 + Duration::days(30),
        runs: out,
        checkpoints,
    })
}

#[expect(clippy::print_stdout, reason = "an example reports its timings")]
fn main() -> Result<(), Box<dyn Error>> {
    for (runs, per_run) in [(10_000, 10), (1, 100_000)] {
        let input = input(runs, per_run)?;
        let started = Instant::now();
        let mut bytes = Vec::with_capacity(64 << 20);
        export_json(&input, &ExportOptions::default(), &mut bytes)?;
        let took = started.elapsed();
        println!(
            "{runs} runs × {per_run} entries: {:.2} s, {:.1} MiB of JSON",
            took.as_secs_f64(),
            bytes.len() as f64 / f64::from(1 << 20)
        );
    }
    Ok(())
}
