//! The mapping from audit facts to an OSCAL assessment-results document.
//!
//! One pass over the runs, linear in the number of facts: parties are
//! collected in a `BTreeMap`, the checkpoint that covers a leaf is found by
//! binary search, and nothing is compared pairwise. The table of what
//! becomes what is in `docs/oscal.md`.

use std::collections::{BTreeMap, HashMap, HashSet};

use base64::Engine as _;
use gatehouse_core::approval::Verdict;
use gatehouse_core::id::{OperatorId, TenantId};
use gatehouse_core::workflow::InstanceState;
use sha2::{Digest, Sha256};
use uuid::Uuid;

use crate::ExportError;
use crate::ids::{self, LeafPart};
use crate::input::{
    Actor, Analysis, CheckpointRef, Compensation, ExportInput, GateDecision, HumanTaskCompleted,
    NotificationSent, OperatorRef, Outcome, RunEntry, StepExecuted, WorkflowRun,
};
use crate::model::*;
use crate::text::{datetime, is_uri_reference, line, value};

/// The namespace of every property Gatehouse adds.
pub const NS: &str = "https://gatehouse.dev/ns/oscal";

/// The OSCAL version written when the caller does not choose one. The
/// document stays inside what 1.1.3 and 1.2.x share (their AR models are
/// the same), and tests validate it against the 1.2.3 schema.
pub const DEFAULT_OSCAL_VERSION: &str = "1.1.3";

/// Role ids used in `logged-by` and origin actors.
pub mod role {
    /// Gatehouse itself: the engine, timers, inbound events.
    pub const SYSTEM: &str = "system";
    /// A person who decided on an approval (L2).
    pub const APPROVER: &str = "approver";
    /// A person who started a workflow, performed a human-only step (L3)
    /// or rolled a step back (L1 review).
    pub const OPERATOR: &str = "operator";
}

/// Controls concluded on, in the order they are listed.
mod control {
    pub const AC_2: &str = "ac-2";
    pub const AC_5: &str = "ac-5";
    pub const AU_9: &str = "au-9";
    pub const AU_10: &str = "au-10";
    pub const ALL: [&str; 4] = [AC_2, AC_5, AU_9, AU_10];
}

/// What the caller may choose about a document.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExportOptions {
    /// `metadata.oscal-version`; [`DEFAULT_OSCAL_VERSION`] by default.
    pub oscal_version: String,
    /// `metadata.version`; by default `checkpoint-<tree size>` of the
    /// largest checkpoint, or `unchecked` when there is none.
    pub document_version: Option<String>,
}

impl Default for ExportOptions {
    fn default() -> Self {
        Self {
            oscal_version: DEFAULT_OSCAL_VERSION.to_owned(),
            document_version: None,
        }
    }
}

/// Maps `input` to an OSCAL assessment-results document.
///
/// Fails, naming the fact, on input OSCAL cannot express: an instant
/// outside the years 1900–2999, a leaf index used twice, a confidence
/// outside 0–1, a checkpoint without a note or with an href that is not a
/// URI reference, two checkpoints of one origin and size, or an option that
/// is not a one-line string.
pub fn export(input: &ExportInput, options: &ExportOptions) -> Result<Document, ExportError> {
    check_unique_leaves(input)?;
    let oscal_version = value(&options.oscal_version)
        .filter(|v| *v == options.oscal_version)
        .ok_or(ExportError::InvalidOption {
            option: "oscal_version",
        })?;
    let checkpoints = Checkpoints::new(&input.checkpoints)?;
    let version = match &options.document_version {
        Some(v) => value(v)
            .filter(|folded| folded == v)
            .ok_or(ExportError::InvalidOption {
                option: "document_version",
            })?,
        None => checkpoints.sorted.last().map_or_else(
            || "unchecked".to_owned(),
            |c| format!("checkpoint-{}", c.tree_size),
        ),
    };

    let tenant = &input.tenant;
    let since = input
        .period
        .since
        .map(|t| datetime(t, "period since"))
        .transpose()?;
    let until = input
        .period
        .until
        .map(|t| datetime(t, "period until"))
        .transpose()?;
    let generated = datetime(input.generated_at, "generated at")?;

    let mapper = Mapper {
        tenant: tenant.id,
        tenant_props: vec![
            prop("tenant-id", &tenant.id.to_string()),
            prop("tenant-slug", tenant.slug.as_str()),
        ]
        .into_iter()
        .flatten()
        .collect(),
        checkpoints: &checkpoints,
        system: ids::system_party(),
        engine: ids::engine_component(),
    };

    let mut results = Vec::with_capacity(input.runs.len().max(1));
    for run in &input.runs {
        results.push(mapper.run(run)?);
    }
    if results.is_empty() {
        results.push(mapper.empty_result(input, since.as_deref(), until.as_deref(), &generated));
    }

    let mut meta_props = mapper.tenant_props.clone();
    meta_props.extend(since.as_deref().and_then(|s| prop("period-since", s)));
    meta_props.extend(until.as_deref().and_then(|u| prop("period-until", u)));

    let plan = ids::assessment_plan(tenant.id);
    let mut resources = vec![Resource {
        uuid: plan,
        title: line(
            &format!("Gatehouse assessment plan of {}", tenant.slug),
            "Gatehouse assessment plan",
        ),
        description: "Gatehouse assesses continuously: there is no separate assessment plan \
                      document. The plan is the tenant's workflow templates and gate policies; \
                      each result names the template version its run pinned."
            .to_owned(),
        props: mapper.tenant_props.clone(),
        rlinks: Vec::new(),
        base64: None,
    }];
    resources.extend(checkpoints.resources());

    Ok(Document {
        assessment_results: AssessmentResults {
            uuid: ids::document(
                tenant.id,
                since.as_deref().unwrap_or("-"),
                until.as_deref().unwrap_or("-"),
            ),
            metadata: Metadata {
                title: line(
                    &format!(
                        "Gatehouse assessment results for {} ({})",
                        tenant.name.as_str(),
                        tenant.slug
                    ),
                    "Gatehouse assessment results",
                ),
                last_modified: generated,
                version,
                oscal_version,
                props: meta_props,
                roles: roles(),
                parties: parties(input, mapper.system),
                responsible_parties: vec![ResponsibleParty {
                    role_id: role::SYSTEM.to_owned(),
                    party_uuids: vec![mapper.system],
                }],
            },
            import_ap: ImportAp {
                href: format!("#{plan}"),
            },
            results,
            back_matter: BackMatter { resources },
        },
    })
}

/// Maps `input` and writes the document as JSON to `writer`.
pub fn export_json<W: std::io::Write>(
    input: &ExportInput,
    options: &ExportOptions,
    writer: W,
) -> Result<(), ExportError> {
    let document = export(input, options)?;
    serde_json::to_writer(writer, &document).map_err(ExportError::Write)
}

fn check_unique_leaves(input: &ExportInput) -> Result<(), ExportError> {
    let total: usize = input.runs.iter().map(|r| 1 + r.entries.len()).sum();
    let mut seen = HashSet::with_capacity(total);
    for run in &input.runs {
        let leaves = std::iter::once(run.trigger.leaf_index)
            .chain(run.entries.iter().map(RunEntry::leaf_index));
        for leaf in leaves {
            if !seen.insert(leaf) {
                return Err(ExportError::DuplicateLeaf { leaf });
            }
        }
    }
    Ok(())
}

fn prop(name: &str, text: &str) -> Option<Property> {
    value(text).map(|value| Property {
        name: name.to_owned(),
        ns: NS,
        value,
    })
}

fn roles() -> Vec<RoleDef> {
    [
        (role::SYSTEM, "Gatehouse", "Gatehouse itself: its workflow engine, timers and inbox."),
        (role::APPROVER, "Approver", "A person who decided on an approval of a gated (L2) step."),
        (
            role::OPERATOR,
            "Operator",
            "A person who started a workflow, performed a human-only (L3) step or rolled a step back.",
        ),
    ]
    .into_iter()
    .map(|(id, title, description)| RoleDef {
        id: id.to_owned(),
        title: title.to_owned(),
        description: Some(description.to_owned()),
    })
    .collect()
}

/// Gatehouse, the tenant, then every operator who acted, by operator id.
fn parties(input: &ExportInput, system: Uuid) -> Vec<Party> {
    fn add<'a>(operators: &mut BTreeMap<OperatorId, &'a OperatorRef>, op: &'a OperatorRef) {
        operators.entry(op.id).or_insert(op);
    }
    let mut operators: BTreeMap<OperatorId, &OperatorRef> = BTreeMap::new();
    for run in &input.runs {
        let mut actors = vec![&run.initiated_by];
        for entry in &run.entries {
            match entry {
                RunEntry::GateDecision(d) => {
                    actors.push(&d.prepared_by);
                    add(&mut operators, &d.decided_by);
                }
                RunEntry::HumanTaskCompleted(t) => add(&mut operators, &t.by),
                RunEntry::Compensation(c) => actors.push(&c.by),
                RunEntry::StepExecuted(_) | RunEntry::Analysis(_) | RunEntry::Notification(_) => {}
            }
        }
        for actor in actors {
            if let Actor::Operator(op) = actor {
                add(&mut operators, op);
            }
        }
    }
    let tenant = &input.tenant;
    let mut parties = vec![
        Party {
            uuid: system,
            kind: "organization".to_owned(),
            name: "Gatehouse".to_owned(),
            short_name: None,
            props: Vec::new(),
        },
        Party {
            uuid: ids::tenant_party(tenant.id),
            kind: "organization".to_owned(),
            name: line(tenant.name.as_str(), tenant.slug.as_str()),
            short_name: Some(tenant.slug.to_string()),
            props: prop("tenant-id", &tenant.id.to_string())
                .into_iter()
                .collect(),
        },
    ];
    parties.extend(operators.into_values().map(|op| {
        Party {
            uuid: ids::operator_party(op.id),
            kind: "person".to_owned(),
            name: line(op.display_name.as_str(), op.name.as_str()),
            short_name: value(op.name.as_str()),
            props: [
                prop("operator-id", &op.id.to_string()),
                prop("operator-role", op.role.as_str()),
            ]
            .into_iter()
            .flatten()
            .collect(),
        }
    }));
    parties
}

/// The checkpoints, sorted by tree size, with their resource UUIDs.
struct Checkpoints<'a> {
    sorted: Vec<&'a CheckpointRef>,
}

impl<'a> Checkpoints<'a> {
    fn new(checkpoints: &'a [CheckpointRef]) -> Result<Self, ExportError> {
        let mut seen = HashSet::with_capacity(checkpoints.len());
        for c in checkpoints {
            let invalid = |reason: &'static str| ExportError::Checkpoint {
                origin: c.origin.clone(),
                tree_size: c.tree_size,
                reason,
            };
            if value(&c.origin).is_none() {
                return Err(invalid("the origin is empty"));
            }
            if c.note.trim().is_empty() {
                return Err(invalid("the signed note is empty"));
            }
            if !is_uri_reference(&c.href) {
                return Err(invalid("the href is not a URI reference"));
            }
            if !seen.insert((c.origin.as_str(), c.tree_size)) {
                return Err(invalid("it appears more than once"));
            }
        }
        let mut sorted: Vec<&CheckpointRef> = checkpoints.iter().collect();
        sorted.sort_by(|a, b| (a.tree_size, &a.origin).cmp(&(b.tree_size, &b.origin)));
        Ok(Self { sorted })
    }

    /// The smallest checkpoint whose tree includes `leaf`.
    fn covering(&self, leaf: u64) -> Option<&'a CheckpointRef> {
        let at = self.sorted.partition_point(|c| c.tree_size <= leaf);
        self.sorted.get(at).copied()
    }

    fn resources(&self) -> impl Iterator<Item = Resource> + '_ {
        self.sorted.iter().map(|c| {
            let root = hex::encode(c.root_hash);
            Resource {
                uuid: ids::checkpoint(&c.origin, c.tree_size),
                title: line(
                    &format!("Checkpoint of {} at tree size {}", c.origin, c.tree_size),
                    "Checkpoint",
                ),
                description: format!(
                    "Signed checkpoint (tree head) of the audit log {}: {} leaves, Merkle root \
                     hash (SHA-256, RFC 6962) {root}. The signed note is embedded; the rlink's \
                     hash is the SHA-256 of that note.",
                    line(&c.origin, "-"),
                    c.tree_size
                ),
                props: [
                    prop("origin", &c.origin),
                    prop("tree-size", &c.tree_size.to_string()),
                    prop("root-hash", &root),
                ]
                .into_iter()
                .flatten()
                .collect(),
                rlinks: vec![Rlink {
                    href: c.href.clone(),
                    media_type: "text/plain".to_owned(),
                    hashes: vec![Hash {
                        algorithm: "SHA-256".to_owned(),
                        value: hex::encode(Sha256::digest(c.note.as_bytes())),
                    }],
                }],
                base64: Some(Base64 {
                    filename: format!("checkpoint-{}.txt", c.tree_size),
                    media_type: "text/plain".to_owned(),
                    value: base64::engine::general_purpose::STANDARD.encode(c.note.as_bytes()),
                }),
            }
        })
    }
}

/// What every result shares.
struct Mapper<'a> {
    tenant: TenantId,
    tenant_props: Vec<Property>,
    checkpoints: &'a Checkpoints<'a>,
    system: Uuid,
    engine: Uuid,
}

/// A result being built.
#[derive(Default)]
struct RunParts {
    log: Vec<LogEntry>,
    observations: Vec<Observation>,
    risks: Vec<Risk>,
    /// Decision observations and whether each kept separation of duties.
    decisions: Vec<(Uuid, bool, String)>,
    /// Step observations, for the execution finding.
    steps: Vec<Uuid>,
    /// The observation of each step's latest execution, by step id.
    last_execution: HashMap<String, Uuid>,
    /// Leaves of facts people logged (decisions, tasks, rollbacks).
    human_leaves: Vec<u64>,
    /// The highest leaf of the run.
    last_leaf: u64,
}

impl Mapper<'_> {
    fn run(&self, run: &WorkflowRun) -> Result<AssessmentResult, ExportError> {
        let instance = run.instance_id.to_string();
        let mut parts = RunParts {
            last_leaf: run.trigger.leaf_index,
            ..RunParts::default()
        };
        parts.log.push(self.trigger(run)?);
        for entry in &run.entries {
            parts.last_leaf = parts.last_leaf.max(entry.leaf_index());
            match entry {
                RunEntry::StepExecuted(step) => {
                    let obs = self.step(step)?;
                    parts.steps.push(obs.uuid);
                    parts.last_execution.insert(step.step_id.clone(), obs.uuid);
                    parts.observations.push(obs);
                }
                RunEntry::GateDecision(decision) => self.decision(run, decision, &mut parts)?,
                RunEntry::HumanTaskCompleted(task) => self.task(task, &mut parts)?,
                RunEntry::Compensation(comp) => self.compensation(comp, &mut parts)?,
                RunEntry::Analysis(analysis) => parts.observations.push(self.analysis(analysis)?),
                RunEntry::Notification(note) => parts.log.push(self.notification(note)?),
            }
        }
        let findings = self.findings(run, &parts)?;
        let reviewed: Vec<ControlRef> = control::ALL
            .into_iter()
            .filter(|c| findings.iter().any(|f| f.target.target_id == *c))
            .map(|c| ControlRef {
                control_id: c.to_owned(),
            })
            .collect();

        let mut props = self.tenant_props.clone();
        props.extend(
            [
                prop("instance-id", &instance),
                prop("template", &run.template),
                prop("template-version", &run.template_version.to_string()),
                prop("state", run.state.as_str()),
                prop("initiated-by", &actor_id(&run.initiated_by)),
            ]
            .into_iter()
            .flatten(),
        );
        let template = line(&run.template, "workflow");
        Ok(AssessmentResult {
            uuid: ids::result(run.instance_id),
            title: line(
                &format!("{template} v{} run {instance}", run.template_version),
                "Workflow run",
            ),
            description: format!(
                "Run {instance} of workflow template {template} version {}, started by {} on \
                 event {} ({} from {}). State at export: {}.",
                run.template_version,
                actor_label(&run.initiated_by),
                run.trigger.event_id,
                line(&run.trigger.event_type, "-"),
                line(&run.trigger.source, "-"),
                run.state
            ),
            start: datetime(run.started_at, "run start")?,
            end: run.ended_at.map(|t| datetime(t, "run end")).transpose()?,
            props,
            local_definitions: self.local_definitions(),
            reviewed_controls: ReviewedControls {
                control_selections: vec![ControlSelection {
                    include_controls: reviewed,
                }],
            },
            assessment_log: Some(AssessmentLog { entries: parts.log }),
            observations: parts.observations,
            risks: parts.risks,
            findings,
        })
    }

    fn empty_result(
        &self,
        input: &ExportInput,
        since: Option<&str>,
        until: Option<&str>,
        generated: &str,
    ) -> AssessmentResult {
        AssessmentResult {
            uuid: ids::empty_result(self.tenant, since.unwrap_or("-"), until.unwrap_or("-")),
            title: "No workflow runs in the period".to_owned(),
            description: format!(
                "The audit log of tenant {} holds no workflow run in the period exported.",
                input.tenant.slug
            ),
            start: since.unwrap_or(generated).to_owned(),
            end: Some(until.unwrap_or(generated).to_owned()),
            props: self.tenant_props.clone(),
            local_definitions: self.local_definitions(),
            reviewed_controls: ReviewedControls {
                control_selections: vec![ControlSelection {
                    include_controls: control::ALL
                        .into_iter()
                        .map(|c| ControlRef {
                            control_id: c.to_owned(),
                        })
                        .collect(),
                }],
            },
            assessment_log: None,
            observations: Vec::new(),
            risks: Vec::new(),
            findings: Vec::new(),
        }
    }

    fn local_definitions(&self) -> LocalDefinitions {
        LocalDefinitions {
            components: vec![Component {
                uuid: self.engine,
                kind: "software".to_owned(),
                title: "Gatehouse workflow engine".to_owned(),
                description: "Runs workflow steps, records every transition in the audit log and \
                              concludes on controls from what it recorded."
                    .to_owned(),
                status: ComponentStatus {
                    state: "operational".to_owned(),
                },
            }],
        }
    }

    fn leaf_props(&self, leaf: u64) -> Vec<Property> {
        prop("leaf-index", &leaf.to_string()).into_iter().collect()
    }

    fn evidence(&self, leaf: u64) -> Vec<Evidence> {
        let covering = self.checkpoints.covering(leaf);
        vec![Evidence {
            href: covering.map(|c| format!("#{}", ids::checkpoint(&c.origin, c.tree_size))),
            description: match covering {
                Some(c) => format!(
                    "Audit-log leaf {leaf}, included in the signed checkpoint of tree size {}.",
                    c.tree_size
                ),
                None => {
                    format!("Audit-log leaf {leaf}; no checkpoint in this export covers it yet.")
                }
            },
            props: self.leaf_props(leaf),
        }]
    }

    fn tool(&self) -> Vec<Origin> {
        vec![Origin {
            actors: vec![OriginActor {
                kind: "tool".to_owned(),
                actor_uuid: self.engine,
                role_id: None,
            }],
        }]
    }

    fn origin_of(&self, actor: &Actor, role_id: &str) -> Vec<Origin> {
        match actor {
            Actor::System => self.tool(),
            Actor::Operator(op) => party_origin(op, role_id),
        }
    }

    fn logged_by(&self, actor: &Actor, role_id: &str) -> Vec<LoggedBy> {
        match actor {
            Actor::System => vec![LoggedBy {
                party_uuid: self.system,
                role_id: role::SYSTEM.to_owned(),
            }],
            Actor::Operator(op) => vec![LoggedBy {
                party_uuid: ids::operator_party(op.id),
                role_id: role_id.to_owned(),
            }],
        }
    }

    fn trigger(&self, run: &WorkflowRun) -> Result<LogEntry, ExportError> {
        let t = &run.trigger;
        let mut props = self.leaf_props(t.leaf_index);
        props.extend(
            [
                prop("event-id", &t.event_id.to_string()),
                prop("event-source", &t.source),
                prop("event-type", &t.event_type),
                prop("initiated-by", &actor_id(&run.initiated_by)),
            ]
            .into_iter()
            .flatten(),
        );
        Ok(LogEntry {
            uuid: ids::leaf(self.tenant, t.leaf_index, LeafPart::LogEntry),
            title: line(
                &format!("Event {} from {} started the run", t.event_type, t.source),
                "Event started the run",
            ),
            description: Some(format!(
                "Gatehouse received event {} and started run {} (started by {}).",
                t.event_id,
                run.instance_id,
                actor_label(&run.initiated_by)
            )),
            start: datetime(t.received_at, "event received")?,
            props,
            logged_by: self.logged_by(&Actor::System, role::SYSTEM),
        })
    }

    fn step(&self, step: &StepExecuted) -> Result<Observation, ExportError> {
        let mut props = self.leaf_props(step.leaf_index);
        props.extend(
            [
                prop("step-id", &step.step_id),
                prop("action", &step.action),
                prop("gate-level", step.gate.as_str()),
                prop("attempt", &step.attempt.to_string()),
                prop("outcome", step.outcome.as_str()),
            ]
            .into_iter()
            .flatten(),
        );
        let mut description = format!(
            "Gatehouse executed step {} (action {}, gate {}), attempt {}: {}.",
            line(&step.step_id, "-"),
            line(&step.action, "-"),
            step.gate,
            step.attempt,
            step.outcome.as_str()
        );
        if let Some(detail) = &step.detail {
            description.push_str("\n\n");
            description.push_str(detail);
        }
        Ok(Observation {
            uuid: ids::leaf(self.tenant, step.leaf_index, LeafPart::Observation),
            title: line(
                &format!(
                    "Step {} ({}) {}",
                    step.step_id,
                    step.action,
                    step.outcome.as_str()
                ),
                "Step executed",
            ),
            description,
            props,
            methods: vec!["TEST-AUTOMATED".to_owned()],
            origins: self.tool(),
            relevant_evidence: self.evidence(step.leaf_index),
            collected: datetime(step.at, "step executed")?,
        })
    }

    fn decision(
        &self,
        run: &WorkflowRun,
        d: &GateDecision,
        parts: &mut RunParts,
    ) -> Result<(), ExportError> {
        let by = &d.decided_by;
        let at = datetime(d.at, "gate decision")?;
        let initiator = run.initiated_by.operator_id() == Some(by.id);
        let preparer = d.prepared_by.operator_id() == Some(by.id);
        let held = !initiator && !preparer;
        let mut props = self.leaf_props(d.leaf_index);
        props.extend(
            [
                prop("approval-id", &d.approval_id.to_string()),
                prop("step-id", &d.step_id),
                prop("verdict", d.verdict.as_str()),
                prop("override", bool_str(d.verdict == Verdict::Modify)),
                prop("operator-id", &by.id.to_string()),
                prop("operator-role", by.role.as_str()),
            ]
            .into_iter()
            .flatten(),
        );
        let title = line(
            &format!(
                "{} decided {} on step {}",
                by.display_name.as_str(),
                d.verdict,
                d.step_id
            ),
            "Gate decision",
        );
        let description = format!(
            "{} ({}, role {}) decided {} on approval {} of step {}{}.\n\nReason:\n{}",
            by.display_name.as_str(),
            by.name.as_str(),
            by.role,
            d.verdict,
            d.approval_id,
            line(&d.step_id, "-"),
            if d.verdict == Verdict::Modify {
                " with modified parameters (an override of the plan)"
            } else {
                ""
            },
            d.reason
        );
        parts.log.push(LogEntry {
            uuid: ids::leaf(self.tenant, d.leaf_index, LeafPart::LogEntry),
            title: title.clone(),
            description: Some(description.clone()),
            start: at.clone(),
            props: props.clone(),
            logged_by: vec![LoggedBy {
                party_uuid: ids::operator_party(by.id),
                role_id: role::APPROVER.to_owned(),
            }],
        });
        let uuid = ids::leaf(self.tenant, d.leaf_index, LeafPart::Observation);
        parts.observations.push(Observation {
            uuid,
            title,
            description,
            props,
            methods: vec!["EXAMINE".to_owned()],
            origins: party_origin(by, role::APPROVER),
            relevant_evidence: self.evidence(d.leaf_index),
            collected: at,
        });
        let why = match (initiator, preparer) {
            (true, true) => "started the workflow and prepared the plan",
            (true, false) => "started the workflow",
            (false, true) => "prepared the plan",
            (false, false) => "",
        };
        let note = if held {
            format!(
                "{} decided on approval {} and neither started the workflow nor prepared the plan.",
                by.name.as_str(),
                d.approval_id
            )
        } else {
            format!(
                "{} decided on approval {} but {why}.",
                by.name.as_str(),
                d.approval_id
            )
        };
        parts.decisions.push((uuid, held, note));
        parts.human_leaves.push(d.leaf_index);
        Ok(())
    }

    fn task(&self, t: &HumanTaskCompleted, parts: &mut RunParts) -> Result<(), ExportError> {
        let at = datetime(t.at, "human task completed")?;
        let mut props = self.leaf_props(t.leaf_index);
        props.extend(
            [
                prop("task-id", &t.task_id.to_string()),
                prop("step-id", &t.step_id),
                prop("operator-id", &t.by.id.to_string()),
                prop("operator-role", t.by.role.as_str()),
            ]
            .into_iter()
            .flatten(),
        );
        let title = line(
            &format!(
                "{} performed step {}",
                t.by.display_name.as_str(),
                t.step_id
            ),
            "Human task completed",
        );
        let description = format!(
            "{} ({}) performed human-only step {} (task {}).\n\nOutcome:\n{}\n\nEvidence:\n{}",
            t.by.display_name.as_str(),
            t.by.name.as_str(),
            line(&t.step_id, "-"),
            t.task_id,
            t.outcome,
            t.evidence
        );
        parts.log.push(LogEntry {
            uuid: ids::leaf(self.tenant, t.leaf_index, LeafPart::LogEntry),
            title: title.clone(),
            description: Some(description.clone()),
            start: at.clone(),
            props: props.clone(),
            logged_by: vec![LoggedBy {
                party_uuid: ids::operator_party(t.by.id),
                role_id: role::OPERATOR.to_owned(),
            }],
        });
        let mut evidence = self.evidence(t.leaf_index);
        if let Some(first) = evidence.first_mut() {
            first.description = format!(
                "{}\n\nRecorded evidence:\n{}",
                first.description, t.evidence
            );
        }
        parts.observations.push(Observation {
            uuid: ids::leaf(self.tenant, t.leaf_index, LeafPart::Observation),
            title,
            description,
            props,
            methods: vec!["TEST".to_owned()],
            origins: party_origin(&t.by, role::OPERATOR),
            relevant_evidence: evidence,
            collected: at,
        });
        parts.human_leaves.push(t.leaf_index);
        Ok(())
    }

    fn compensation(&self, c: &Compensation, parts: &mut RunParts) -> Result<(), ExportError> {
        let at = datetime(c.at, "compensation")?;
        let mut props = self.leaf_props(c.leaf_index);
        props.extend(
            [
                prop("step-id", &c.step_id),
                prop("outcome", c.outcome.as_str()),
                prop("actor", &actor_id(&c.by)),
            ]
            .into_iter()
            .flatten(),
        );
        let title = line(&format!("Rollback of step {}", c.step_id), "Rollback");
        let description = format!(
            "Step {} was rolled back by {}: {}.\n\nReason:\n{}",
            line(&c.step_id, "-"),
            actor_label(&c.by),
            c.outcome.as_str(),
            c.reason
        );
        parts.log.push(LogEntry {
            uuid: ids::leaf(self.tenant, c.leaf_index, LeafPart::LogEntry),
            title: title.clone(),
            description: Some(description.clone()),
            start: at,
            props: props.clone(),
            logged_by: self.logged_by(&c.by, role::OPERATOR),
        });
        let undone = c.outcome == Outcome::Succeeded;
        // The latest execution of the step undone, if this run recorded one.
        let step_obs = parts.last_execution.get(c.step_id.as_str()).copied();
        parts.risks.push(Risk {
            uuid: ids::leaf(self.tenant, c.leaf_index, LeafPart::Risk),
            title,
            description,
            statement: if undone {
                "A change was made and then undone; the target is back where it was before the step."
                    .to_owned()
            } else {
                "A change was made and undoing it failed: the target may still hold it.".to_owned()
            },
            props,
            status: if undone { "closed" } else { "open" }.to_owned(),
            origins: self.origin_of(&c.by, role::OPERATOR),
            remediations: if undone {
                vec![Remediation {
                    uuid: ids::leaf(self.tenant, c.leaf_index, LeafPart::Remediation),
                    lifecycle: "completed".to_owned(),
                    title: line(&format!("Step {} undone", c.step_id), "Step undone"),
                    description: format!(
                        "The compensation of step {} ran and succeeded.\n\nReason:\n{}",
                        line(&c.step_id, "-"),
                        c.reason
                    ),
                }]
            } else {
                Vec::new()
            },
            related_observations: step_obs
                .map(|observation_uuid| RelatedObservation { observation_uuid })
                .into_iter()
                .collect(),
        });
        if matches!(c.by, Actor::Operator(_)) {
            parts.human_leaves.push(c.leaf_index);
        }
        Ok(())
    }

    fn analysis(&self, a: &Analysis) -> Result<Observation, ExportError> {
        let mut props = self.leaf_props(a.leaf_index);
        if let Some(step) = &a.step_id {
            props.extend(prop("step-id", step));
        }
        if let Some(confidence) = a.confidence {
            if !(0.0..=1.0).contains(&confidence) {
                return Err(ExportError::Confidence {
                    leaf: a.leaf_index,
                    confidence,
                });
            }
            props.extend(prop("confidence", &format!("{confidence:.3}")));
        }
        let about = a
            .step_id
            .as_deref()
            .map(|s| format!(" for step {}", line(s, "-")))
            .unwrap_or_default();
        Ok(Observation {
            uuid: ids::leaf(self.tenant, a.leaf_index, LeafPart::Observation),
            title: line(&format!("Automated analysis{about}"), "Automated analysis"),
            description: a.text.clone(),
            props,
            methods: vec!["TEST-AUTOMATED".to_owned()],
            origins: self.tool(),
            relevant_evidence: self.evidence(a.leaf_index),
            collected: datetime(a.at, "analysis")?,
        })
    }

    fn notification(&self, n: &NotificationSent) -> Result<LogEntry, ExportError> {
        let mut props = self.leaf_props(n.leaf_index);
        props.extend(
            [
                prop("notification-id", &n.notification_id.to_string()),
                prop("step-id", &n.step_id),
                prop("channel", &n.channel),
            ]
            .into_iter()
            .flatten(),
        );
        Ok(LogEntry {
            uuid: ids::leaf(self.tenant, n.leaf_index, LeafPart::LogEntry),
            title: line(
                &format!("Review of step {} requested by {}", n.step_id, n.channel),
                "Review requested",
            ),
            description: Some(format!(
                "Gatehouse sent review notification {} for step {}.",
                n.notification_id,
                line(&n.step_id, "-")
            )),
            start: datetime(n.at, "notification")?,
            props,
            logged_by: self.logged_by(&Actor::System, role::SYSTEM),
        })
    }

    fn findings(&self, run: &WorkflowRun, parts: &RunParts) -> Result<Vec<Finding>, ExportError> {
        let mut findings = Vec::new();
        let finding = |control: &str,
                       key: &str,
                       title: String,
                       ok: bool,
                       remarks: String,
                       related: &[Uuid]| Finding {
            uuid: ids::finding(run.instance_id, key),
            title: line(&title, control),
            description: remarks.clone(),
            origins: self.tool(),
            target: FindingTarget {
                kind: "objective-id".to_owned(),
                target_id: control.to_owned(),
                status: FindingStatus {
                    state: if ok { "satisfied" } else { "not-satisfied" }.to_owned(),
                    reason: if ok { "pass" } else { "fail" }.to_owned(),
                    remarks: Some(remarks),
                },
            },
            related_observations: related
                .iter()
                .map(|&observation_uuid| RelatedObservation { observation_uuid })
                .collect(),
        };

        // AC-2: the run's changes took effect.
        if run.state.is_final() || run.state == InstanceState::Parked {
            let ok = run.state == InstanceState::Completed;
            findings.push(finding(
                control::AC_2,
                "ac-2/execution",
                format!(
                    "Workflow run {}",
                    if ok { "completed" } else { "did not complete" }
                ),
                ok,
                format!(
                    "Run {} ended {}: {}.",
                    run.instance_id,
                    run.state,
                    if ok {
                        "every step succeeded"
                    } else {
                        "its changes did not all take effect"
                    }
                ),
                &parts.steps,
            ));
        }

        // AC-2: access revoked within its SLA.
        if let Some(rev) = &run.revocation {
            let deadline = rev.required_from + rev.sla;
            let due = datetime(deadline, "revocation deadline")?;
            let (ok, remarks) = match rev.completed_at {
                Some(done) if done <= deadline => (
                    true,
                    format!(
                        "Access was revoked at {}, within the SLA ending {due}.",
                        datetime(done, "revocation completed")?
                    ),
                ),
                Some(done) => (
                    false,
                    format!(
                        "Access was revoked at {}, after the SLA ended at {due}.",
                        datetime(done, "revocation completed")?
                    ),
                ),
                None => (
                    false,
                    format!("Access was not yet fully revoked; the SLA ends at {due}."),
                ),
            };
            findings.push(finding(
                control::AC_2,
                "ac-2/revocation",
                format!(
                    "Access revoked {}",
                    if ok {
                        "within its SLA"
                    } else {
                        "late or not at all"
                    }
                ),
                ok,
                remarks,
                &parts.steps,
            ));
        }

        // AC-5: whoever started the run or prepared a plan decided on none of it.
        if !parts.decisions.is_empty() {
            let ok = parts.decisions.iter().all(|(_, held, _)| *held);
            let remarks: Vec<&str> = parts.decisions.iter().map(|(_, _, n)| n.as_str()).collect();
            let related: Vec<Uuid> = parts.decisions.iter().map(|(u, _, _)| *u).collect();
            findings.push(finding(
                control::AC_5,
                "ac-5",
                format!(
                    "Separation of duties {}",
                    if ok { "held" } else { "violated" }
                ),
                ok,
                remarks.join("\n"),
                &related,
            ));
        }

        // AU-9: every fact of the run is in a signed checkpoint.
        let covered = |leaf: u64| self.checkpoints.covering(leaf).is_some();
        let ok = covered(parts.last_leaf);
        findings.push(finding(
            control::AU_9,
            "au-9",
            format!("Audit records {} by a signed checkpoint", if ok { "protected" } else { "not yet protected" }),
            ok,
            match self.checkpoints.covering(parts.last_leaf) {
                Some(c) => format!(
                    "Every audit leaf of this run (the last is {}) is included in the signed checkpoint of tree size {}.",
                    parts.last_leaf, c.tree_size
                ),
                None => format!(
                    "Audit leaf {} of this run is in no signed checkpoint of this export yet.",
                    parts.last_leaf
                ),
            },
            &[],
        ));

        // AU-10: what people did is attributed to them in a signed log.
        if !parts.human_leaves.is_empty() {
            let uncovered: Vec<String> = parts
                .human_leaves
                .iter()
                .filter(|&&l| !covered(l))
                .map(u64::to_string)
                .collect();
            let ok = uncovered.is_empty();
            findings.push(finding(
                control::AU_10,
                "au-10",
                format!("Human decisions {}", if ok { "non-repudiable" } else { "not yet signed" }),
                ok,
                if ok {
                    "Every decision, task and rollback by a person in this run is attributed to them and included in a signed checkpoint.".to_owned()
                } else {
                    format!("Leaves {} record what people did and are in no signed checkpoint yet.", uncovered.join(", "))
                },
                &[],
            ));
        }
        Ok(findings)
    }
}

fn party_origin(op: &OperatorRef, role_id: &str) -> Vec<Origin> {
    vec![Origin {
        actors: vec![OriginActor {
            kind: "party".to_owned(),
            actor_uuid: ids::operator_party(op.id),
            role_id: Some(role_id.to_owned()),
        }],
    }]
}

fn actor_id(actor: &Actor) -> String {
    match actor {
        Actor::System => "system".to_owned(),
        Actor::Operator(op) => op.id.to_string(),
    }
}

fn actor_label(actor: &Actor) -> String {
    match actor {
        Actor::System => "Gatehouse".to_owned(),
        Actor::Operator(op) => format!("{} ({})", op.display_name.as_str(), op.name.as_str()),
    }
}

fn bool_str(b: bool) -> &'static str {
    if b { "true" } else { "false" }
}
