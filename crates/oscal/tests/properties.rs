//! Generated inputs: any mix of runs and facts, with unicode, multi-line
//! and blank texts, odd time zones and any checkpoints, always exports a
//! document that the NIST OSCAL 1.2.3 schema accepts, with one element per
//! fact and the same bytes on every export.

mod support;

use std::error::Error;

use gatehouse_core::GateLevel;
use gatehouse_core::approval::Verdict;
use gatehouse_core::operator::{OperatorName, Role};
use gatehouse_core::tenant::DisplayName;
use gatehouse_core::workflow::InstanceState;
use gatehouse_oscal::*;
use proptest::prelude::*;
use support::*;
use time::{Duration, OffsetDateTime, UtcOffset};

#[derive(Debug, Clone)]
struct OpPlan {
    handle: String,
    name: String,
    role: usize,
}

#[derive(Debug, Clone)]
enum EntryPlan {
    Step {
        step: String,
        action: String,
        gate: usize,
        attempt: u32,
        ok: bool,
        detail: Option<String>,
    },
    Decision {
        step: String,
        prepared_by: Option<usize>,
        decided_by: usize,
        verdict: usize,
        reason: String,
    },
    Task {
        step: String,
        by: usize,
        outcome: String,
        evidence: String,
    },
    Rollback {
        step: String,
        by: Option<usize>,
        reason: String,
        ok: bool,
    },
    Analysis {
        step: Option<String>,
        text: String,
        confidence: Option<f64>,
    },
    Notification {
        step: String,
        channel: String,
    },
}

#[derive(Debug, Clone)]
struct RunPlan {
    initiator: Option<usize>,
    template: String,
    version: u32,
    /// Seconds after 1990-01-01.
    start: i64,
    /// Minutes east of UTC of every time of the run.
    offset_minutes: i32,
    state: usize,
    entries: Vec<EntryPlan>,
    /// SLA minutes and, if revoked, minutes after the start.
    revocation: Option<(i64, Option<i64>)>,
}

#[derive(Debug, Clone)]
struct Plan {
    operators: Vec<OpPlan>,
    runs: Vec<RunPlan>,
    /// Checkpoint sizes, as fractions of the number of leaves, and origins.
    checkpoints: Vec<(f64, String)>,
    first_leaf: u64,
}

/// Text as people and systems write it: any characters, line breaks,
/// blanks, separators that are not line breaks.
fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        4 => prop::collection::vec(any::<char>(), 0..24).prop_map(String::from_iter),
        2 => "\\PC{0,20}",
        1 => Just(String::new()),
        1 => Just("  \n\t ".to_owned()),
        1 => Just("Zeile 1\r\nligne 2\n第三行\u{2028}بعد\u{85}end".to_owned()),
        1 => Just("   surrounded   ".to_owned()),
    ]
}

fn operator_plan() -> impl Strategy<Value = OpPlan> {
    (
        "[a-z][a-z0-9._-]{1,20}",
        prop_oneof![
            Just("Zoë Ångström".to_owned()),
            Just("李雷".to_owned()),
            Just("O'Brien-Smith, Jr.".to_owned()),
            "\\PC{1,30}".prop_filter("a valid display name", |s| DisplayName::parse(s).is_ok()),
        ],
        0..4usize,
    )
        .prop_map(|(handle, name, role)| OpPlan { handle, name, role })
}

fn entry_plan() -> impl Strategy<Value = EntryPlan> {
    prop_oneof![
        (
            text(),
            text(),
            0..4usize,
            1..6u32,
            any::<bool>(),
            prop::option::of(text())
        )
            .prop_map(
                |(step, action, gate, attempt, ok, detail)| EntryPlan::Step {
                    step,
                    action,
                    gate,
                    attempt,
                    ok,
                    detail
                }
            ),
        (
            text(),
            prop::option::of(0..4usize),
            0..4usize,
            0..3usize,
            text()
        )
            .prop_map(|(step, prepared_by, decided_by, verdict, reason)| {
                EntryPlan::Decision {
                    step,
                    prepared_by,
                    decided_by,
                    verdict,
                    reason,
                }
            }),
        (text(), 0..4usize, text(), text()).prop_map(|(step, by, outcome, evidence)| {
            EntryPlan::Task {
                step,
                by,
                outcome,
                evidence,
            }
        }),
        (text(), prop::option::of(0..4usize), text(), any::<bool>()).prop_map(
            |(step, by, reason, ok)| EntryPlan::Rollback {
                step,
                by,
                reason,
                ok
            }
        ),
        (
            prop::option::of(text()),
            text(),
            prop::option::of(0.0..=1.0f64)
        )
            .prop_map(|(step, text, confidence)| EntryPlan::Analysis {
                step,
                text,
                confidence
            }),
        (text(), text()).prop_map(|(step, channel)| EntryPlan::Notification { step, channel }),
    ]
}

fn run_plan() -> impl Strategy<Value = RunPlan> {
    (
        prop::option::of(0..4usize),
        text(),
        0..1000u32,
        // 1990 to about 2870: inside OSCAL's years even after any offset.
        0..(880 * 365 * 86_400i64),
        -(14 * 60)..=(14 * 60),
        0..7usize,
        prop::collection::vec(entry_plan(), 0..12),
        prop::option::of((1..10_000i64, prop::option::of(0..20_000i64))),
    )
        .prop_map(
            |(initiator, template, version, start, offset_minutes, state, entries, revocation)| {
                RunPlan {
                    initiator,
                    template,
                    version,
                    start,
                    offset_minutes,
                    state,
                    entries,
                    revocation,
                }
            },
        )
}

fn plan() -> impl Strategy<Value = Plan> {
    (
        prop::collection::vec(operator_plan(), 1..4),
        prop::collection::vec(run_plan(), 0..5),
        prop::collection::vec((0.0..1.2f64, text()), 0..3),
        0..1_000_000u64,
    )
        .prop_map(|(operators, runs, checkpoints, first_leaf)| Plan {
            operators,
            runs,
            checkpoints,
            first_leaf,
        })
}

const ROLES: [Role; 4] = [Role::Admin, Role::Lead, Role::Technician, Role::Auditor];
const STATES: [InstanceState; 7] = InstanceState::ALL;
const VERDICTS: [Verdict; 3] = Verdict::ALL;

fn build(plan: &Plan) -> Result<ExportInput, Box<dyn Error>> {
    let mut operators = Vec::new();
    for (i, op) in plan.operators.iter().enumerate() {
        operators.push(OperatorRef {
            id: id("op", 1000 + u128::try_from(i)?)?,
            name: OperatorName::parse(&op.handle)?,
            display_name: DisplayName::parse(&op.name)?,
            role: ROLES[op.role],
        });
    }
    let pick = |i: usize| operators[i % operators.len()].clone();
    let actor = |i: Option<usize>| i.map_or(Actor::System, |i| Actor::Operator(pick(i)));
    let epoch = time::macros::datetime!(1990-01-01 00:00 UTC);
    let mut leaf = plan.first_leaf;
    let mut next_leaf = || {
        leaf += 1;
        leaf
    };
    let mut runs = Vec::new();
    for (r, run) in plan.runs.iter().enumerate() {
        let n = u128::try_from(r)?;
        let offset = UtcOffset::from_whole_seconds(run.offset_minutes * 60)?;
        let start: OffsetDateTime = (epoch + Duration::seconds(run.start)).to_offset(offset);
        let at = |k: usize| start + Duration::seconds(i64::try_from(k).unwrap_or(0) * 61);
        let trigger = Trigger {
            event_id: id("evt", n)?,
            source: "psa".to_owned(),
            event_type: "deal.won".to_owned(),
            received_at: start,
            leaf_index: next_leaf(),
        };
        let mut entries = Vec::new();
        for (k, e) in run.entries.iter().enumerate() {
            let k128 = u128::try_from(k)? + n * 100;
            entries.push(match e.clone() {
                EntryPlan::Step {
                    step,
                    action,
                    gate,
                    attempt,
                    ok,
                    detail,
                } => RunEntry::StepExecuted(StepExecuted {
                    step_id: step,
                    action,
                    gate: GateLevel::ALL[gate],
                    attempt,
                    outcome: if ok {
                        Outcome::Succeeded
                    } else {
                        Outcome::Failed
                    },
                    detail,
                    at: at(k),
                    leaf_index: next_leaf(),
                }),
                EntryPlan::Decision {
                    step,
                    prepared_by,
                    decided_by,
                    verdict,
                    reason,
                } => RunEntry::GateDecision(GateDecision {
                    approval_id: id("apr", k128)?,
                    step_id: step,
                    prepared_by: actor(prepared_by),
                    decided_by: pick(decided_by),
                    verdict: VERDICTS[verdict],
                    reason,
                    at: at(k),
                    leaf_index: next_leaf(),
                }),
                EntryPlan::Task {
                    step,
                    by,
                    outcome,
                    evidence,
                } => RunEntry::HumanTaskCompleted(HumanTaskCompleted {
                    task_id: id("tsk", k128)?,
                    step_id: step,
                    by: pick(by),
                    outcome,
                    evidence,
                    at: at(k),
                    leaf_index: next_leaf(),
                }),
                EntryPlan::Rollback {
                    step,
                    by,
                    reason,
                    ok,
                } => RunEntry::Compensation(Compensation {
                    step_id: step,
                    by: actor(by),
                    reason,
                    outcome: if ok {
                        Outcome::Succeeded
                    } else {
                        Outcome::Failed
                    },
                    at: at(k),
                    leaf_index: next_leaf(),
                }),
                EntryPlan::Analysis {
                    step,
                    text,
                    confidence,
                } => RunEntry::Analysis(Analysis {
                    step_id: step,
                    text,
                    confidence,
                    at: at(k),
                    leaf_index: next_leaf(),
                }),
                EntryPlan::Notification { step, channel } => {
                    RunEntry::Notification(NotificationSent {
                        notification_id: id("ntf", k128)?,
                        step_id: step,
                        channel,
                        at: at(k),
                        leaf_index: next_leaf(),
                    })
                }
            });
        }
        let state = STATES[run.state];
        runs.push(WorkflowRun {
            instance_id: id("wf", n)?,
            template: run.template.clone(),
            template_version: run.version,
            started_at: start,
            ended_at: state.is_final().then(|| at(run.entries.len())),
            state,
            initiated_by: actor(run.initiator),
            trigger,
            entries,
            revocation: run.revocation.map(|(sla, done)| Revocation {
                required_from: start,
                sla: Duration::minutes(sla),
                completed_at: done.map(|m| start + Duration::minutes(m)),
            }),
        });
    }
    let leaves = leaf - plan.first_leaf;
    let mut checkpoints = Vec::new();
    for (i, (fraction, origin)) in plan.checkpoints.iter().enumerate() {
        // Sizes are distinct per origin, as a log's are.
        let size = plan.first_leaf + (leaves as f64 * fraction) as u64 + u64::try_from(i)?;
        let origin = if !origin.chars().any(char::is_alphanumeric) {
            "gatehouse".to_owned()
        } else {
            origin.clone()
        };
        if checkpoints
            .iter()
            .any(|c: &CheckpointRef| c.origin == origin && c.tree_size == size)
        {
            continue;
        }
        checkpoints.push(CheckpointRef {
            note: format!("{origin}\n{size}\n"),
            origin,
            tree_size: size,
            root_hash: [7; 32],
            href: format!("/audit/checkpoints/{size}"),
        });
    }
    let mut input = input(runs, checkpoints)?;
    input.generated_at = time::macros::datetime!(2026-12-01 08:15 -03:30);
    Ok(input)
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, ..ProptestConfig::default() })]

    #[test]
    fn any_input_exports_a_schema_valid_document_with_one_element_per_fact(plan in plan()) {
        let validator = validator().map_err(|e| TestCaseError::fail(e.to_string()))?;
        let input = build(&plan).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let mut bytes = Vec::new();
        export_json(&input, &ExportOptions::default(), &mut bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let doc: serde_json::Value = serde_json::from_slice(&bytes).map_err(|e| TestCaseError::fail(e.to_string()))?;
        let errors = violations(&validator, &doc);
        prop_assert!(errors.is_empty(), "{errors:#?}");

        // Deterministic: the same input, the same bytes.
        let mut again = Vec::new();
        export_json(&input, &ExportOptions::default(), &mut again).map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert!(bytes == again);

        prop_assert_eq!(count(&doc["assessment-results"], "results"), input.runs.len().max(1));
        for (i, run) in input.runs.iter().enumerate() {
            let r = result(&doc, i);
            let kinds = |f: fn(&RunEntry) -> bool| run.entries.iter().filter(|e| f(e)).count();
            let steps = kinds(|e| matches!(e, RunEntry::StepExecuted(_)));
            let decisions = kinds(|e| matches!(e, RunEntry::GateDecision(_)));
            let tasks = kinds(|e| matches!(e, RunEntry::HumanTaskCompleted(_)));
            let rollbacks = kinds(|e| matches!(e, RunEntry::Compensation(_)));
            let analyses = kinds(|e| matches!(e, RunEntry::Analysis(_)));
            let notes = kinds(|e| matches!(e, RunEntry::Notification(_)));
            prop_assert_eq!(count(r, "observations"), steps + decisions + tasks + analyses);
            prop_assert_eq!(count(&r["assessment-log"], "entries"), 1 + decisions + tasks + rollbacks + notes);
            prop_assert_eq!(count(r, "risks"), rollbacks);

            let sod = findings_for(r, "ac-5");
            prop_assert_eq!(sod.len(), usize::from(decisions > 0));
            if let Some(sod) = sod.first() {
                let held = run.entries.iter().all(|e| match e {
                    RunEntry::GateDecision(d) => {
                        Some(d.decided_by.id) != run.initiated_by.operator_id()
                            && Some(d.decided_by.id) != d.prepared_by.operator_id()
                    }
                    _ => true,
                });
                let want = if held { "satisfied" } else { "not-satisfied" };
                prop_assert_eq!(&sod["target"]["status"]["state"], want);
            }
            prop_assert_eq!(findings_for(r, "au-9").len(), 1);
        }
    }
}
