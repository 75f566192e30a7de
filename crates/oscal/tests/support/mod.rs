//! Shared by the OSCAL export tests: the schema validator and fixtures.

#![allow(
    dead_code,
    reason = "each test binary uses a different part of the support module"
)]

use std::error::Error;
use std::str::FromStr;

use gatehouse_core::GateLevel;
use gatehouse_core::approval::Verdict;
use gatehouse_core::operator::{OperatorName, Role};
use gatehouse_core::tenant::{DisplayName, TenantSlug};
use gatehouse_core::workflow::InstanceState;
use gatehouse_oscal::*;
use serde_json::Value;
use time::macros::datetime;
use time::{Duration, OffsetDateTime};

pub type TestResult = Result<(), Box<dyn Error>>;

/// The vendored NIST OSCAL 1.2.3 assessment-results schema, compiled with
/// format checks (date-time, uri, uri-reference) on.
pub fn validator() -> Result<jsonschema::Validator, Box<dyn Error>> {
    let schema: Value = serde_json::from_str(ASSESSMENT_RESULTS_SCHEMA_1_2_3)?;
    Ok(jsonschema::options()
        .with_draft(jsonschema::Draft::Draft7)
        .should_validate_formats(true)
        .build(&schema)?)
}

/// The schema violations of `doc`, as "path: message" lines.
pub fn violations(validator: &jsonschema::Validator, doc: &Value) -> Vec<String> {
    validator
        .iter_errors(doc)
        .map(|e| format!("{}: {e}", e.instance_path()))
        .collect()
}

/// Exports `input` with default options and returns the JSON value.
pub fn export_value(input: &ExportInput) -> Result<Value, Box<dyn Error>> {
    let doc = export(input, &ExportOptions::default())?;
    Ok(serde_json::to_value(&doc)?)
}

/// A typed id of kind `T` from a number, deterministically.
pub fn id<T: FromStr>(prefix: &str, n: u128) -> Result<T, Box<dyn Error>>
where
    T::Err: Error + 'static,
{
    const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
    let mut text = format!("{prefix}_");
    for i in 0..26 {
        let shift = 5 * (25 - i);
        let digit = usize::try_from((n >> shift) & 0x1f)?;
        text.push(char::from(ALPHABET[digit]));
    }
    Ok(text.parse::<T>()?)
}

pub fn operator(
    n: u128,
    handle: &str,
    name: &str,
    role: Role,
) -> Result<OperatorRef, Box<dyn Error>> {
    Ok(OperatorRef {
        id: id("op", n)?,
        name: OperatorName::parse(handle)?,
        display_name: DisplayName::parse(name)?,
        role,
    })
}

pub fn tenant() -> Result<TenantRef, Box<dyn Error>> {
    Ok(TenantRef {
        id: id("ten", 7)?,
        slug: TenantSlug::parse("northwind-legal")?,
        name: DisplayName::parse("Northwind Legal LLP")?,
    })
}

pub const T0: OffsetDateTime = datetime!(2026-11-02 09:00:00 UTC);

pub fn checkpoint(tree_size: u64) -> CheckpointRef {
    CheckpointRef {
        origin: "gatehouse.example/audit".to_owned(),
        tree_size,
        root_hash: [u8::try_from(tree_size % 251).unwrap_or(0); 32],
        note: format!("gatehouse.example/audit\n{tree_size}\nAAAA\n\n— gatehouse sig\n"),
        href: format!("/api/v1/audit/checkpoints/{tree_size}"),
    }
}

/// An onboarding run that has every kind of fact: the trigger (leaf
/// `base`), analysis, a gate decision by `approver`, two steps, an L3 task,
/// a notification and a rollback. Leaves `base..base+8`.
pub fn full_run(
    n: u128,
    base: u64,
    initiator: Actor,
    approver: OperatorRef,
) -> Result<WorkflowRun, Box<dyn Error>> {
    let tech = operator(3, "tess.tech", "Tess Ångström", Role::Technician)?;
    let at = |minutes: i64| T0 + Duration::minutes(minutes);
    Ok(WorkflowRun {
        instance_id: id("wf", n)?,
        template: "client-onboarding".to_owned(),
        template_version: 3,
        started_at: at(0),
        ended_at: Some(at(60)),
        state: InstanceState::Compensated,
        initiated_by: initiator,
        trigger: Trigger {
            event_id: id("evt", n)?,
            source: "psa".to_owned(),
            event_type: "deal.won".to_owned(),
            received_at: at(0),
            leaf_index: base,
        },
        entries: vec![
            RunEntry::Analysis(Analysis {
                step_id: Some("create-accounts".to_owned()),
                text: "Peers in this tenant hold these 4 grants.\nConfidence is high.".to_owned(),
                confidence: Some(0.87),
                at: at(1),
                leaf_index: base + 1,
            }),
            RunEntry::GateDecision(GateDecision {
                approval_id: id("apr", n)?,
                step_id: "create-accounts".to_owned(),
                prepared_by: Actor::System,
                decided_by: approver,
                verdict: Verdict::Modify,
                reason: "Approved, but without the finance share.\nTicket #4711.".to_owned(),
                at: at(5),
                leaf_index: base + 2,
            }),
            RunEntry::StepExecuted(StepExecuted {
                step_id: "create-accounts".to_owned(),
                action: "scim.create_user".to_owned(),
                gate: GateLevel::L2,
                attempt: 1,
                outcome: Outcome::Succeeded,
                detail: None,
                at: at(6),
                leaf_index: base + 3,
            }),
            RunEntry::Notification(NotificationSent {
                notification_id: id("ntf", n)?,
                step_id: "create-mailbox".to_owned(),
                channel: "webhook".to_owned(),
                at: at(7),
                leaf_index: base + 4,
            }),
            RunEntry::HumanTaskCompleted(HumanTaskCompleted {
                task_id: id("tsk", n)?,
                step_id: "collect-documents".to_owned(),
                by: tech,
                outcome: "Contract and NDA filed.".to_owned(),
                evidence: "DMS folder 2026/northwind\nchecksum abc".to_owned(),
                at: at(20),
                leaf_index: base + 5,
            }),
            RunEntry::StepExecuted(StepExecuted {
                step_id: "configure-rmm".to_owned(),
                action: "http.post".to_owned(),
                gate: GateLevel::L0,
                attempt: 3,
                outcome: Outcome::Failed,
                detail: Some("503 Service Unavailable\nRetry-After: 30".to_owned()),
                at: at(40),
                leaf_index: base + 6,
            }),
            RunEntry::Compensation(Compensation {
                step_id: "create-accounts".to_owned(),
                by: Actor::System,
                reason: "configure-rmm failed after 3 attempts".to_owned(),
                outcome: Outcome::Succeeded,
                at: at(41),
                leaf_index: base + 7,
            }),
        ],
        revocation: None,
    })
}

pub fn input(
    runs: Vec<WorkflowRun>,
    checkpoints: Vec<CheckpointRef>,
) -> Result<ExportInput, Box<dyn Error>> {
    Ok(ExportInput {
        tenant: tenant()?,
        period: Period {
            since: Some(datetime!(2026-11-01 00:00 UTC)),
            until: Some(datetime!(2026-12-01 00:00 UTC)),
        },
        generated_at: datetime!(2026-12-01 08:15:30.5 +01:00),
        runs,
        checkpoints,
    })
}

/// The first result of a document.
pub fn result(doc: &Value, index: usize) -> &Value {
    &doc["assessment-results"]["results"][index]
}

/// The number of items of an array field (0 when absent).
pub fn count(value: &Value, field: &str) -> usize {
    value[field].as_array().map_or(0, Vec::len)
}

/// The finding of `result` on control `control`, with key suffix `title` match.
pub fn findings_for<'a>(result: &'a Value, control: &str) -> Vec<&'a Value> {
    result["findings"]
        .as_array()
        .map(|all| {
            all.iter()
                .filter(|f| f["target"]["target-id"] == control)
                .collect()
        })
        .unwrap_or_default()
}
