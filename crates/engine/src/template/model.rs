//! The parsed, validated shape of a workflow template.
//!
//! Everything here has passed [`Template::from_toml`]: ids are well formed
//! and unique, dependencies form a DAG inside each stage, every action is
//! known, every gate respects its area's floor and every expression refers to
//! something guaranteed to exist when the step runs. The engine therefore
//! interprets a `Template` without re-checking it.
//!
//! Defaults are resolved at load (timeout, retry policy, a step's process
//! area), so the JSON an instance pins is complete: a later release that
//! changes a default does not change how a running instance behaves. The one
//! thing deliberately left unresolved is the gate level of a step without an
//! explicit `gate`: it follows the tenant's [`GatePolicy`] for the area at the
//! moment the step runs, because raising an area's gate for a tenant must
//! take effect for instances already under way.

use std::collections::{BTreeSet, HashSet};
use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use gatehouse_core::DomainError;
use gatehouse_core::gate::{self, GateLevel, GatePolicy, ProcessArea};
use serde::{Deserialize, Deserializer, Serialize};
use serde_json::Value;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::expr::{self, Path, RenderError};
use crate::retry::{RetryPolicy, duration_text, format_duration};

/// Checks the syntax shared by template names and stage and step ids:
/// 1–64 characters of `a-z`, `0-9` and `-`, starting with a letter, not
/// ending with `-`, without `--`.
fn check_slug(text: &str) -> Result<(), String> {
    if text.is_empty() || text.len() > 64 {
        return Err(format!("`{text}` must be 1 to 64 characters long"));
    }
    if !text
        .bytes()
        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
    {
        return Err(format!(
            "`{text}` may contain only lowercase letters a-z, digits and '-'"
        ));
    }
    if !text.starts_with(|c: char| c.is_ascii_lowercase()) {
        return Err(format!("`{text}` must start with a letter"));
    }
    if text.ends_with('-') || text.contains("--") {
        return Err(format!("`{text}` must not end with '-' or contain '--'"));
    }
    Ok(())
}

/// Checks the syntax shared by action names and event types: two or more
/// dot-separated parts of `a-z`, `0-9` and `_`, each starting with a letter
/// (`tenant.create`, `psa.opportunity.won`), at most 100 characters.
fn check_dotted(text: &str) -> Result<(), String> {
    let valid = text.len() <= 100
        && text.split('.').count() >= 2
        && text.split('.').all(|part| {
            part.starts_with(|c: char| c.is_ascii_lowercase())
                && part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_')
        });
    if valid {
        Ok(())
    } else {
        Err(format!(
            "`{text}` must be lowercase words joined by dots, such as `tenant.create`"
        ))
    }
}

macro_rules! validated_name {
    ($(#[$doc:meta])* $name:ident, $check:ident) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
        #[serde(transparent)]
        pub struct $name(String);

        impl $name {
            /// Validates and wraps the text; the error says what is wrong.
            pub fn parse(text: &str) -> Result<Self, String> {
                $check(text)?;
                Ok(Self(text.to_owned()))
            }

            /// The text.
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl<'de> Deserialize<'de> for $name {
            fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = String::deserialize(d)?;
                Self::parse(&text).map_err(serde::de::Error::custom)
            }
        }
    };
}

validated_name!(
    /// A template's name, such as `client-onboarding`: 1–64 characters of
    /// `a-z`, `0-9` and `-`, starting with a letter.
    TemplateName,
    check_slug
);
validated_name!(
    /// A stage's id, unique in its template (same syntax as [`TemplateName`]).
    StageId,
    check_slug
);
validated_name!(
    /// A step's id, unique in its whole template, since expressions refer to
    /// `steps.<id>` (same syntax as [`TemplateName`]).
    StepId,
    check_slug
);
validated_name!(
    /// The name of an action the engine implements, such as `tenant.create`.
    ActionName,
    check_dotted
);
validated_name!(
    /// The type of an inbound event, such as `psa.opportunity.won`.
    EventType,
    check_dotted
);

/// What identifies a template version, and what an instance pins:
/// `client-onboarding@1`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TemplateId {
    /// The template's name.
    pub name: TemplateName,
    /// The template's version, from 1.
    pub version: u32,
}

impl fmt::Display for TemplateId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}@{}", self.name, self.version)
    }
}

impl FromStr for TemplateId {
    type Err = String;

    /// Parses `name@version`.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let (name, version) = text
            .rsplit_once('@')
            .ok_or_else(|| format!("`{text}` is not `name@version`"))?;
        let version = version
            .parse::<u32>()
            .ok()
            .filter(|v| *v >= 1)
            .ok_or_else(|| format!("`{text}`: the version must be a whole number from 1"))?;
        Ok(Self {
            name: TemplateName::parse(name)?,
            version,
        })
    }
}

/// What the engine does when a step has exhausted its retries.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OnFailure {
    /// Stop and wait for a human, with the reason; nothing is undone until
    /// someone decides. The default: undoing a half-finished onboarding
    /// automatically is rarely what the MSP wants.
    #[default]
    Park,
    /// Run the compensations of the completed steps, most recent first, then
    /// end the instance as failed.
    Compensate,
}

impl OnFailure {
    /// The value as written in a template.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Park => "park",
            Self::Compensate => "compensate",
        }
    }
}

/// One condition of a trigger: the event's value at `path` equals one of
/// `any_of` (compared as JSON values).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Condition {
    /// Where to look in the event, such as `payload.stage`.
    pub path: Path,
    /// The accepted values; a single value in the file becomes a list of one.
    pub any_of: Vec<Value>,
}

/// An inbound event that starts a new instance of the template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Trigger {
    /// The event type that fires it.
    pub event: EventType,
    /// Conditions on the event's fields, all of which must hold.
    pub when: Vec<Condition>,
}

impl Trigger {
    /// Whether an event of type `event_type`, as the JSON the engine exposes
    /// to expressions as `event`, fires this trigger.
    pub fn matches(&self, event_type: &str, event: &Value) -> bool {
        self.event.as_str() == event_type
            && self.when.iter().all(|condition| {
                condition
                    .path
                    .lookup(event)
                    .is_ok_and(|value| condition.any_of.contains(value))
            })
    }
}

/// A workflow template: stages of steps, run in order.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Template {
    /// The template's name.
    pub name: TemplateName,
    /// The version, from 1; (name, version) identifies what an instance pins.
    pub version: u32,
    /// A short title, for lists and the console.
    pub title: String,
    /// What the template is for (may be empty).
    pub description: String,
    /// The process area of every step that does not name its own.
    pub area: ProcessArea,
    /// What happens when a step exhausts its retries.
    pub on_failure: OnFailure,
    /// Events that start a new instance (of the latest version only). A
    /// template without triggers is started through the API.
    pub triggers: Vec<Trigger>,
    /// The stages, in the order they run. Never empty.
    pub stages: Vec<Stage>,
}

impl Template {
    /// The (name, version) that identifies this template.
    pub fn id(&self) -> TemplateId {
        TemplateId {
            name: self.name.clone(),
            version: self.version,
        }
    }

    /// Every step, stage by stage, in file order.
    pub fn steps(&self) -> impl Iterator<Item = &Step> {
        self.stages.iter().flat_map(|stage| stage.steps.iter())
    }

    /// The step with this id.
    pub fn step(&self, id: &str) -> Option<&Step> {
        self.steps().find(|step| step.id.as_str() == id)
    }

    /// The position and stage of the step with this id.
    pub fn stage_of(&self, step: &str) -> Option<(usize, &Stage)> {
        self.stages
            .iter()
            .enumerate()
            .find(|(_, stage)| stage.steps.iter().any(|s| s.id.as_str() == step))
    }

    /// Every action name the template uses, compensations included (timer
    /// steps run no action).
    pub fn actions(&self) -> BTreeSet<&str> {
        self.steps()
            .filter(|step| step.wait.is_none())
            .flat_map(|step| {
                std::iter::once(step.action.as_str())
                    .chain(step.compensate.as_ref().map(|c| c.action.as_str()))
            })
            .collect()
    }

    /// Whether any trigger fires for this event (see [`Trigger::matches`]).
    pub fn is_triggered_by(&self, event_type: &str, event: &Value) -> bool {
        self.triggers
            .iter()
            .any(|trigger| trigger.matches(event_type, event))
    }
}

/// A group of steps. Stages run one after the other; a stage starts when
/// every step of the previous one has completed.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Stage {
    /// The stage's id, unique in the template.
    pub id: StageId,
    /// A short title, shown as the checklist's section heading.
    pub title: String,
    /// What the stage is for (may be empty).
    pub description: String,
    /// The steps, in file order. Never empty.
    pub steps: Vec<Step>,
}

impl Stage {
    /// The steps that can start now: not done themselves, and every step they
    /// need is done. `done` holds the ids of completed steps (of any stage).
    /// Steps come back in file order; all of them may run in parallel.
    pub fn ready_steps(&self, done: &HashSet<&str>) -> Vec<&Step> {
        self.steps
            .iter()
            .filter(|step| {
                !done.contains(step.id.as_str())
                    && step.needs.iter().all(|need| done.contains(need.as_str()))
            })
            .collect()
    }

    /// Whether every step of the stage is in `done`.
    pub fn is_complete(&self, done: &HashSet<&str>) -> bool {
        self.steps
            .iter()
            .all(|step| done.contains(step.id.as_str()))
    }
}

/// One item of the checklist: an action, its parameters and how it is gated,
/// timed, retried and undone.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Step {
    /// The step's id, unique in the whole template.
    pub id: StepId,
    /// A short title, as the checklist shows it.
    pub title: String,
    /// Notes for the person who approves or performs the step (may be empty).
    pub description: String,
    /// The action the engine runs.
    pub action: ActionName,
    /// The action's parameters: a JSON object whose strings may hold
    /// `{{ path }}` expressions, filled in by [`Step::render_params`].
    pub params: Value,
    /// The step's process area (its own, or the template's).
    pub area: ProcessArea,
    /// The gate level the template asks for, if it names one; never below
    /// the area's floor. Without it the step runs at the tenant's level for
    /// the area. See [`Step::gate_level`].
    pub gate: Option<GateLevel>,
    /// How long one attempt of the action may take.
    #[serde(with = "duration_text")]
    pub timeout: Duration,
    /// How failed attempts are retried.
    pub retry: RetryPolicy,
    /// How to undo the step once it has completed, if it can be undone.
    pub compensate: Option<Compensation>,
    /// Steps of the same stage that must complete before this one starts.
    pub needs: Vec<StepId>,
    /// A timer step waits instead of acting: its `action` is
    /// [`TIMER_ACTION`], which the engine never calls. Absent from the JSON
    /// of ordinary steps, so instances pinned before timers existed read
    /// back unchanged.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub wait: Option<Wait>,
    /// Who reviews the step when it runs at L1: an e-mail address, or text
    /// with `{{ … }}` expressions rendered once the step has run. Without
    /// it the configured default reviewer is notified. (Absent from the
    /// JSON of instances pinned before it existed, hence the default.)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reviewer: Option<String>,
}

/// The action name a timer step carries: it names no implemented action,
/// the engine recognises the step by its [`Step::wait`].
pub const TIMER_ACTION: &str = "timer.wait";

/// What a timer step waits for. The fire time is fixed when a wave first
/// reaches the step and is journaled (see `docs/engine.md`, "Timers").
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Wait {
    /// A duration counted from the moment the step is reached (`wait = "2d"`).
    For(#[serde(with = "duration_text")] Duration),
    /// An RFC 3339 timestamp, which may hold `{{ path }}` expressions
    /// rendered from the instance's context when the step is reached
    /// (`wait_until = "{{ event.payload.contract_end }}"`).
    Until(String),
}

impl Wait {
    /// When a timer reached at `reached` fires, given the instance's context.
    /// A time in the past is returned as it is (the timer fires at once).
    /// The error says why the time cannot be known (a missing value, text
    /// that is not an RFC 3339 timestamp, a time out of range).
    pub fn fires_at(&self, ctx: &Value, reached: OffsetDateTime) -> Result<OffsetDateTime, String> {
        let at = self.resolve(ctx, reached)?;
        // Stored as UTC text with microseconds, years 0000-9999.
        at.checked_to_offset(time::UtcOffset::UTC)
            .filter(|t| (1..=9999).contains(&t.year()))
            .and_then(|t| t.replace_nanosecond(t.nanosecond() / 1_000 * 1_000).ok())
            .ok_or_else(|| format!("the timer's time {at} is out of range (years 1 to 9999)"))
    }

    fn resolve(&self, ctx: &Value, reached: OffsetDateTime) -> Result<OffsetDateTime, String> {
        match self {
            Self::For(duration) => time::Duration::try_from(*duration)
                .ok()
                .and_then(|d| reached.checked_add(d))
                .ok_or_else(|| {
                    format!(
                        "wait: {} is too far in the future",
                        format_duration(*duration)
                    )
                }),
            Self::Until(text) => {
                let rendered = expr::render(&Value::String(text.clone()), ctx)
                    .map_err(|err| format!("wait_until: {err}"))?;
                let Some(rendered) = rendered.as_str() else {
                    return Err(format!(
                        "wait_until: `{text}` gave {rendered}, not an RFC 3339 timestamp"
                    ));
                };
                parse_timestamp(rendered).map_err(|reason| format!("wait_until: {reason}"))
            }
        }
    }
}

/// Parses an RFC 3339 timestamp such as `2030-01-31T17:00:00Z`; the error
/// says what was wrong.
pub fn parse_timestamp(text: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(text.trim(), &Rfc3339).map_err(|err| {
        format!("`{text}` is not an RFC 3339 timestamp such as 2030-01-31T17:00:00Z ({err})")
    })
}

impl Step {
    /// The gate level the step runs at for a tenant with `policy`: the
    /// tenant's level for the step's area, raised to the template's explicit
    /// `gate` if that is higher.
    pub fn gate_level(&self, policy: &GatePolicy) -> Result<GateLevel, DomainError> {
        gate::resolve(self.area, self.gate, policy)
    }

    /// The step's parameters with every expression filled in from `ctx`
    /// (see [`expr::render`]).
    pub fn render_params(&self, ctx: &Value) -> Result<Value, RenderError> {
        expr::render(&self.params, ctx)
    }

    /// The reviewer's address with every expression filled in from `ctx`,
    /// if the step names one. The text is not checked to be an address
    /// here; the caller parses it.
    pub fn render_reviewer(&self, ctx: &Value) -> Option<Result<Value, RenderError>> {
        let reviewer = self.reviewer.as_ref()?;
        Some(expr::render_at(
            &Value::String(reviewer.clone()),
            ctx,
            "reviewer",
        ))
    }
}

/// The action that undoes a completed step.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Compensation {
    /// The undoing action.
    pub action: ActionName,
    /// Its parameters; expressions may also use the step's own output,
    /// `steps.<this step>.output`.
    pub params: Value,
}

impl Compensation {
    /// The parameters with every expression filled in from `ctx`.
    pub fn render_params(&self, ctx: &Value) -> Result<Value, RenderError> {
        expr::render(&self.params, ctx)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_and_dotted_names_are_checked() {
        for good in ["a", "client-onboarding", "step-2", "x".repeat(64).as_str()] {
            assert!(StepId::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "Step",
            "2nd",
            "a_b",
            "a-",
            "a--b",
            "a.b",
            &"x".repeat(65),
        ] {
            assert!(StepId::parse(bad).is_err(), "{bad}");
        }
        for good in ["tenant.create", "psa.link_company", "graph.v2.request"] {
            assert!(ActionName::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "tenant",
            "Tenant.create",
            "tenant.",
            ".create",
            "tenant..create",
            "a.2b",
            "a-b.c",
        ] {
            assert!(ActionName::parse(bad).is_err(), "{bad}");
        }
        assert!(serde_json::from_str::<StepId>("\"Bad\"").is_err());
    }

    #[test]
    fn template_ids_read_as_name_at_version() {
        let id: TemplateId = "client-onboarding@2".parse().unwrap();
        assert_eq!(id.name.as_str(), "client-onboarding");
        assert_eq!(id.version, 2);
        assert_eq!(id.to_string(), "client-onboarding@2");
        for bad in [
            "client-onboarding",
            "client-onboarding@0",
            "x@-1",
            "X@1",
            "x@",
        ] {
            assert!(bad.parse::<TemplateId>().is_err(), "{bad}");
        }
    }
}
