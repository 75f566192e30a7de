//! The part of the OSCAL assessment-results model that Gatehouse emits, as
//! typed structs serialized with OSCAL's JSON names.
//!
//! Only the fields the export fills are here. Empty lists and absent
//! values are left out of the JSON, since OSCAL arrays, where present, must
//! hold at least one item. Field docs name the OSCAL constraint that the
//! mapping has to respect (the vendored 1.2.3 schema checks them in tests).

use serde::Serialize;
use uuid::Uuid;

/// The whole document: `{"assessment-results": …}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Document {
    /// The assessment results.
    #[serde(rename = "assessment-results")]
    pub assessment_results: AssessmentResults,
}

/// The `assessment-results` root.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct AssessmentResults {
    /// Stable per tenant and period.
    pub uuid: Uuid,
    /// Title, parties, roles.
    pub metadata: Metadata,
    /// The assessment plan (a back-matter resource).
    pub import_ap: ImportAp,
    /// One per workflow run; at least one.
    pub results: Vec<AssessmentResult>,
    /// The plan and the checkpoints.
    pub back_matter: BackMatter,
}

/// `metadata`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Metadata {
    /// Single line.
    pub title: String,
    /// Date-time with a time zone.
    pub last_modified: String,
    /// The document's version.
    pub version: String,
    /// The OSCAL version the document conforms to.
    pub oscal_version: String,
    /// Namespaced props (tenant, period).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub props: Vec<Property>,
    /// Roles referenced by `role-id`s.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub roles: Vec<RoleDef>,
    /// Gatehouse, the tenant and every operator who acted.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub parties: Vec<Party>,
    /// Which party plays which role document-wide.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub responsible_parties: Vec<ResponsibleParty>,
}

/// A `role`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct RoleDef {
    /// A token.
    pub id: String,
    /// Single line.
    pub title: String,
    /// What the role means here.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
}

/// A `party`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Party {
    /// Derived from the party's stable id.
    pub uuid: Uuid,
    /// `person` or `organization`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Trimmed, non-empty.
    pub name: String,
    /// Trimmed, non-empty.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub short_name: Option<String>,
    /// Namespaced props (ids, Gatehouse role).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub props: Vec<Property>,
}

/// A `responsible-party`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ResponsibleParty {
    /// A role's id.
    pub role_id: String,
    /// At least one.
    pub party_uuids: Vec<Uuid>,
}

/// A `prop`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Property {
    /// A token.
    pub name: String,
    /// Gatehouse's namespace.
    pub ns: &'static str,
    /// Trimmed, non-empty, single line.
    pub value: String,
}

/// `import-ap`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ImportAp {
    /// `#uuid` of a back-matter resource.
    pub href: String,
}

/// A `result`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct AssessmentResult {
    /// Derived from the instance id.
    pub uuid: Uuid,
    /// Single line.
    pub title: String,
    /// Any text.
    pub description: String,
    /// When the run started.
    pub start: String,
    /// When it ended, if it has.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    /// Tenant, instance, template, state.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub props: Vec<Property>,
    /// The Gatehouse engine as a component (the `tool` actor).
    pub local_definitions: LocalDefinitions,
    /// The controls concluded on.
    pub reviewed_controls: ReviewedControls,
    /// Trigger, decisions, tasks, rollbacks, notifications.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub assessment_log: Option<AssessmentLog>,
    /// Steps, analysis, decisions, tasks.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub observations: Vec<Observation>,
    /// Rollbacks.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub risks: Vec<Risk>,
    /// Control conclusions.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub findings: Vec<Finding>,
}

/// A result's `local-definitions`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct LocalDefinitions {
    /// At least one.
    pub components: Vec<Component>,
}

/// A `component`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Component {
    /// Fixed for the Gatehouse engine.
    pub uuid: Uuid,
    /// `software`.
    #[serde(rename = "type")]
    pub kind: String,
    /// Single line.
    pub title: String,
    /// Any text.
    pub description: String,
    /// `{"state": "operational"}`.
    pub status: ComponentStatus,
}

/// A component's `status`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct ComponentStatus {
    /// `operational`.
    pub state: String,
}

/// `reviewed-controls`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ReviewedControls {
    /// At least one.
    pub control_selections: Vec<ControlSelection>,
}

/// A `control-selection` with `include-controls`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ControlSelection {
    /// At least one.
    pub include_controls: Vec<ControlRef>,
}

/// `{"control-id": …}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct ControlRef {
    /// A token, e.g. `ac-5`.
    pub control_id: String,
}

/// `assessment-log`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct AssessmentLog {
    /// At least one.
    pub entries: Vec<LogEntry>,
}

/// An `assessment-log` entry.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct LogEntry {
    /// Derived from the leaf index.
    pub uuid: Uuid,
    /// Single line.
    pub title: String,
    /// Any text.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// When.
    pub start: String,
    /// Leaf index and the fact's ids.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub props: Vec<Property>,
    /// Party and role.
    pub logged_by: Vec<LoggedBy>,
}

/// `logged-by`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct LoggedBy {
    /// A party.
    pub party_uuid: Uuid,
    /// A role.
    pub role_id: String,
}

/// An `observation`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Observation {
    /// Derived from the leaf index.
    pub uuid: Uuid,
    /// Single line.
    pub title: String,
    /// Any text.
    pub description: String,
    /// Leaf index and the fact's details.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub props: Vec<Property>,
    /// `TEST-AUTOMATED`, `TEST` or `EXAMINE`.
    pub methods: Vec<String>,
    /// The tool or the party.
    pub origins: Vec<Origin>,
    /// The audit leaf and the checkpoint covering it.
    pub relevant_evidence: Vec<Evidence>,
    /// When.
    pub collected: String,
}

/// An `origin`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Origin {
    /// At least one.
    pub actors: Vec<OriginActor>,
}

/// An origin `actor`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct OriginActor {
    /// `tool` (a component) or `party`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The component or party.
    pub actor_uuid: Uuid,
    /// For a party, the role it acted in.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub role_id: Option<String>,
}

/// A `relevant-evidence` item.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Evidence {
    /// `#uuid` of the covering checkpoint resource, if any.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub href: Option<String>,
    /// Any text.
    pub description: String,
    /// The leaf index.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub props: Vec<Property>,
}

/// A `finding`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Finding {
    /// Derived from the instance and the control.
    pub uuid: Uuid,
    /// Single line.
    pub title: String,
    /// Any text.
    pub description: String,
    /// Gatehouse concluded it.
    pub origins: Vec<Origin>,
    /// The control and its state.
    pub target: FindingTarget,
    /// The observations it rests on.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub related_observations: Vec<RelatedObservation>,
}

/// A finding's `target`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct FindingTarget {
    /// `objective-id`.
    #[serde(rename = "type")]
    pub kind: String,
    /// A control id (token).
    pub target_id: String,
    /// Satisfied or not.
    pub status: FindingStatus,
}

/// A target's `status`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct FindingStatus {
    /// `satisfied` or `not-satisfied`.
    pub state: String,
    /// `pass` or `fail`.
    pub reason: String,
    /// Why, in words.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub remarks: Option<String>,
}

/// `{"observation-uuid": …}`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct RelatedObservation {
    /// An observation of the same result.
    pub observation_uuid: Uuid,
}

/// A `risk`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Risk {
    /// Derived from the leaf index.
    pub uuid: Uuid,
    /// Single line.
    pub title: String,
    /// Any text.
    pub description: String,
    /// Any text.
    pub statement: String,
    /// Leaf index and step.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub props: Vec<Property>,
    /// `closed` when undone, `open` when the undo failed.
    pub status: String,
    /// Who undid it.
    pub origins: Vec<Origin>,
    /// The undo, when it worked.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub remediations: Vec<Remediation>,
    /// The execution of the step undone.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub related_observations: Vec<RelatedObservation>,
}

/// A risk `remediation` (a `response`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Remediation {
    /// Derived from the leaf index.
    pub uuid: Uuid,
    /// `completed`.
    pub lifecycle: String,
    /// Single line.
    pub title: String,
    /// Any text.
    pub description: String,
}

/// `back-matter`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct BackMatter {
    /// At least one (the assessment plan).
    pub resources: Vec<Resource>,
}

/// A back-matter `resource`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Resource {
    /// Derived from what the resource is.
    pub uuid: Uuid,
    /// Single line.
    pub title: String,
    /// Any text.
    pub description: String,
    /// Tree size, root hash.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub props: Vec<Property>,
    /// Where it is published, with its hash.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub rlinks: Vec<Rlink>,
    /// The resource itself, embedded.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub base64: Option<Base64>,
}

/// An `rlink`.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Rlink {
    /// A URI reference.
    pub href: String,
    /// E.g. `text/plain`.
    pub media_type: String,
    /// Digests of what `href` points at.
    pub hashes: Vec<Hash>,
}

/// A `hash`.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Hash {
    /// `SHA-256`.
    pub algorithm: String,
    /// Lowercase hex.
    pub value: String,
}

/// An embedded `base64` resource.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub struct Base64 {
    /// A token.
    pub filename: String,
    /// E.g. `text/plain`.
    pub media_type: String,
    /// Standard base64.
    pub value: String,
}
