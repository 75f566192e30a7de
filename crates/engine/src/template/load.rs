//! Reading a template file: TOML text in, a validated [`Template`] or every
//! problem with its line, column and field out.
//!
//! Why not `#[derive(Deserialize)]`: serde stops at the first problem and
//! forgets where values came from, so a file with three mistakes would take
//! three rounds to fix and a bad `needs` could not be pointed at. Instead the
//! text is parsed into `toml`'s spanned document tree ([`DeTable`]) and
//! walked by hand. Each reader reports what is wrong and carries on with what
//! it could read, so structural problems (unknown fields, wrong types),
//! value problems (bad ids, durations, gates) and whole-template problems
//! (duplicate ids, cycles, expressions that refer to steps that may not have
//! run) all come back together. Only TOML syntax errors stop the walk, since
//! the tree after a syntax error is a guess.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::ops::Range;
use std::time::Duration;

use gatehouse_core::DomainError;
use gatehouse_core::gate::{self, GateLevel, ProcessArea};
use gatehouse_core::notify::EmailAddress;
use serde_json::Value;
use toml::Spanned;
use toml::de::{DeTable, DeValue};

use super::ActionCatalog;
use super::error::{LineIndex, TemplateError, TemplateErrors};
use super::expr::{Path, ROOTS, TextTemplate};
use super::model::{
    ActionName, Compensation, Condition, EventType, OnFailure, Stage, StageId, Step, StepId,
    TIMER_ACTION, Template, TemplateName, Trigger, Wait, parse_timestamp,
};
use crate::retry::{RetryPolicy, format_duration, parse_duration};

/// How long one attempt of a step's action may take when the step does not
/// say.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(60);

/// The longest timeout a step may ask for. A step that waits for people
/// (documents, sign-offs) waits at its gate, not inside its action, so a
/// longer timeout is almost certainly a typo (`30d` for `30s`).
pub const MAX_TIMEOUT: Duration = Duration::from_secs(24 * 60 * 60);

const TEMPLATE_KEYS: &[&str] = &[
    "name",
    "version",
    "title",
    "description",
    "area",
    "on_failure",
    "trigger",
    "stage",
];
const TRIGGER_KEYS: &[&str] = &["event", "when"];
const STAGE_KEYS: &[&str] = &["id", "title", "description", "step"];
const STEP_KEYS: &[&str] = &[
    "id",
    "title",
    "description",
    "action",
    "params",
    "area",
    "gate",
    "timeout",
    "retry",
    "compensate",
    "needs",
    "wait",
    "wait_until",
    "reviewer",
];
/// What a timer step (`wait` or `wait_until`) may not have: it runs no action.
const NOT_FOR_TIMERS: &[&str] = &["action", "params", "gate", "timeout", "retry", "compensate"];
const RETRY_KEYS: &[&str] = &["max_attempts", "initial", "max", "multiplier", "jitter"];
const COMPENSATE_KEYS: &[&str] = &["action", "params"];

type Node<'i> = Spanned<DeValue<'i>>;

/// Parses and validates one template file. `source` names the file in errors.
pub(super) fn parse(
    source: &str,
    text: &str,
    actions: &dyn ActionCatalog,
) -> Result<Template, TemplateErrors> {
    let mut loader = Loader {
        source,
        lines: LineIndex::new(text),
        actions,
        errors: Vec::new(),
    };
    let (document, syntax) = DeTable::parse_recoverable(text);
    if !syntax.is_empty() {
        loader.syntax_errors(syntax);
    } else {
        let root = Spanned::new(document.span(), DeValue::Table(document.into_inner()));
        let template = loader.template(&root);
        if loader.errors.is_empty() {
            if let Some(template) = template {
                return Ok(template);
            }
            loader.report(
                &(0..0),
                "",
                "internal error: the template passed validation but could not be assembled",
            );
        }
    }
    Err(TemplateErrors::from_vec(loader.errors).unwrap_or_else(|| {
        TemplateError::whole_file(source, "the template could not be read").into()
    }))
}

/// Line and column of a top-level key of a template already known to parse,
/// for errors found after loading (a clash between two files).
pub(super) fn key_position(text: &str, key: &str) -> (usize, usize) {
    DeTable::parse(text)
        .ok()
        .and_then(|document| {
            document
                .get_ref()
                .get_key_value(key)
                .map(|(k, _)| LineIndex::new(text).position(&k.span()))
        })
        .unwrap_or((1, 1))
}

/// A value read from a field: absent, present but wrong (already reported),
/// or good, with where it was written.
enum Got<T> {
    Absent,
    Invalid,
    Ok(T, Range<usize>),
}

impl<T> Got<T> {
    fn value(self) -> Option<T> {
        match self {
            Got::Ok(value, _) => Some(value),
            Got::Absent | Got::Invalid => None,
        }
    }
}

/// A table being read, with its dotted path for error messages.
struct Fields<'a, 'i> {
    table: &'a DeTable<'i>,
    span: Range<usize>,
    path: String,
}

impl<'a, 'i> Fields<'a, 'i> {
    fn field(&self, key: &str) -> String {
        join(&self.path, key)
    }

    fn get(&self, key: &str) -> Option<&'a Node<'i>> {
        self.table.get(key)
    }
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_owned()
    } else {
        format!("{path}.{key}")
    }
}

/// A step as read, before the whole-template checks.
struct RawStep {
    path: String,
    id: Option<(StepId, Range<usize>)>,
    title: Option<String>,
    description: String,
    action: Option<ActionName>,
    params: Option<Value>,
    area: Option<ProcessArea>,
    /// `None` when the gate was written wrong; `Some(None)` when absent.
    gate: Option<Option<GateLevel>>,
    timeout: Option<Duration>,
    retry: Option<RetryPolicy>,
    compensate: Option<Option<Compensation>>,
    needs: Vec<(String, Range<usize>)>,
    /// `None` when written wrong; `Some(None)` for a step that acts.
    wait: Option<Option<Wait>>,
    /// `None` when written wrong; `Some(None)` when absent.
    reviewer: Option<Option<String>>,
    expressions: Vec<ExpressionSite>,
}

/// Where a `{{ steps.… }}` expression was written, checked once every step
/// is known.
struct ExpressionSite {
    field: String,
    span: Range<usize>,
    path: Path,
    in_compensation: bool,
}

struct RawStage {
    path: String,
    id: Option<(StageId, Range<usize>)>,
    title: Option<String>,
    description: String,
    steps: Vec<RawStep>,
}

struct Loader<'t> {
    source: &'t str,
    lines: LineIndex<'t>,
    actions: &'t dyn ActionCatalog,
    errors: Vec<TemplateError>,
}

impl Loader<'_> {
    fn report(&mut self, span: &Range<usize>, field: &str, message: impl Into<String>) {
        let (line, column) = self.lines.position(span);
        self.errors.push(TemplateError {
            source: self.source.to_owned(),
            line,
            column,
            field: field.to_owned(),
            message: message.into(),
        });
    }

    /// Reports TOML syntax errors, one per line: after the first error on a
    /// line, the parser's recovery mostly produces echoes of it.
    fn syntax_errors(&mut self, mut errors: Vec<toml::de::Error>) {
        errors.sort_by_key(|e| e.span().map_or(0, |s| s.start));
        let mut lines = BTreeSet::new();
        for error in errors {
            let span = error.span().unwrap_or(0..0);
            let (line, _) = self.lines.position(&span);
            if lines.insert(line) {
                self.report(&span, "", format!("invalid TOML: {}", error.message()));
            }
        }
    }

    // ----- generic readers -------------------------------------------------

    /// Opens a table, reporting it if it is not one, and reporting every key
    /// not in `allowed`.
    fn open<'a, 'i>(
        &mut self,
        node: &'a Node<'i>,
        path: String,
        allowed: &[&str],
    ) -> Option<Fields<'a, 'i>> {
        let DeValue::Table(table) = node.get_ref() else {
            self.report(
                &node.span(),
                &path,
                format!("must be a table, not {}", describe(node.get_ref())),
            );
            return None;
        };
        for (key, _) in table.iter() {
            let name: &str = key.get_ref();
            if !allowed.contains(&name) {
                let hint = match suggest(name, allowed.iter().copied()) {
                    Some(near) => format!("did you mean `{near}`? "),
                    None => String::new(),
                };
                self.report(
                    &key.span(),
                    &join(&path, name),
                    format!(
                        "unknown field `{name}`; {hint}allowed here: {}",
                        allowed.join(", ")
                    ),
                );
            }
        }
        Some(Fields {
            table,
            span: node.span(),
            path,
        })
    }

    fn missing(&mut self, fields: &Fields<'_, '_>, key: &str) {
        let field = fields.field(key);
        self.report(
            &fields.span,
            &field,
            format!("required field `{key}` is missing"),
        );
    }

    fn string(&mut self, fields: &Fields<'_, '_>, key: &str, required: bool) -> Got<String> {
        let Some(node) = fields.get(key) else {
            if required {
                self.missing(fields, key);
            }
            return Got::Absent;
        };
        match node.get_ref() {
            DeValue::String(text) => Got::Ok(text.to_string(), node.span()),
            other => {
                self.report(
                    &node.span(),
                    &fields.field(key),
                    format!("must be a string, not {}", describe(other)),
                );
                Got::Invalid
            }
        }
    }

    /// A string field turned into a `T` by `parse`, whose error is reported
    /// at the value.
    fn parsed<T>(
        &mut self,
        fields: &Fields<'_, '_>,
        key: &str,
        required: bool,
        parse: impl FnOnce(&str) -> Result<T, String>,
    ) -> Got<T> {
        match self.string(fields, key, required) {
            Got::Ok(text, span) => match parse(&text) {
                Ok(value) => Got::Ok(value, span),
                Err(message) => {
                    self.report(&span, &fields.field(key), message);
                    Got::Invalid
                }
            },
            Got::Absent => Got::Absent,
            Got::Invalid => Got::Invalid,
        }
    }

    /// A title: one line of 1–200 characters.
    fn title(&mut self, fields: &Fields<'_, '_>) -> Option<String> {
        self.parsed(fields, "title", true, |text| {
            let trimmed = text.trim();
            if trimmed.is_empty() {
                Err("must not be empty".to_owned())
            } else if trimmed.chars().count() > 200 {
                Err("must be at most 200 characters".to_owned())
            } else if trimmed.chars().any(char::is_control) {
                Err("must be a single line without control characters".to_owned())
            } else {
                Ok(trimmed.to_owned())
            }
        })
        .value()
    }

    fn description(&mut self, fields: &Fields<'_, '_>) -> String {
        self.string(fields, "description", false)
            .value()
            .map(|text| text.trim().to_owned())
            .unwrap_or_default()
    }

    fn integer(&mut self, node: &Node<'_>, field: &str) -> Option<i64> {
        match node.get_ref() {
            DeValue::Integer(integer) => {
                let value = i64::from_str_radix(integer.as_str(), integer.radix()).ok();
                if value.is_none() {
                    self.report(&node.span(), field, "integer out of range");
                }
                value
            }
            other => {
                self.report(
                    &node.span(),
                    field,
                    format!("must be an integer, not {}", describe(other)),
                );
                None
            }
        }
    }

    fn number(&mut self, node: &Node<'_>, field: &str) -> Option<f64> {
        match node.get_ref() {
            DeValue::Float(float) => {
                let value = float.as_str().parse::<f64>().ok();
                if value.is_none() {
                    self.report(&node.span(), field, "not a number");
                }
                value
            }
            DeValue::Integer(_) => self.integer(node, field).map(|i| i as f64),
            other => {
                self.report(
                    &node.span(),
                    field,
                    format!("must be a number, not {}", describe(other)),
                );
                None
            }
        }
    }

    fn duration(&mut self, node: &Node<'_>, field: &str) -> Option<Duration> {
        let DeValue::String(text) = node.get_ref() else {
            self.report(
                &node.span(),
                field,
                format!(
                    "must be a duration in quotes, such as \"30s\", not {}",
                    describe(node.get_ref())
                ),
            );
            return None;
        };
        match parse_duration(text) {
            Ok(duration) => Some(duration),
            Err(error) => {
                self.report(&node.span(), field, error.to_string());
                None
            }
        }
    }

    /// The elements of an array of tables (`[[stage]]`), each still to be
    /// opened.
    fn list<'a, 'i>(
        &mut self,
        fields: &Fields<'a, 'i>,
        key: &str,
    ) -> Option<Vec<(String, &'a Node<'i>)>> {
        let node = fields.get(key)?;
        let field = fields.field(key);
        match node.get_ref() {
            DeValue::Array(items) => Some(
                items
                    .iter()
                    .enumerate()
                    .map(|(i, item)| (format!("{field}[{i}]"), item))
                    .collect(),
            ),
            DeValue::Table(_) => {
                let header = if fields.path.is_empty() {
                    key.to_owned()
                } else {
                    // `stage[0].step` is written `[[stage.step]]`.
                    format!("{}.{key}", strip_indices(&fields.path))
                };
                self.report(
                    &node.span(),
                    &field,
                    format!("write `[[{header}]]` (a list of tables), not `[{header}]`"),
                );
                None
            }
            other => {
                self.report(
                    &node.span(),
                    &field,
                    format!("must be a list of tables, not {}", describe(other)),
                );
                None
            }
        }
    }

    // ----- the template ----------------------------------------------------

    fn template(&mut self, root: &Node<'_>) -> Option<Template> {
        let fields = self.open(root, String::new(), TEMPLATE_KEYS)?;
        let name = self
            .parsed(&fields, "name", true, TemplateName::parse)
            .value();
        let version = self.version(&fields);
        let title = self.title(&fields);
        let description = self.description(&fields);
        let area = self
            .parsed(&fields, "area", true, |text| {
                text.parse::<ProcessArea>().map_err(reason)
            })
            .value();
        let on_failure = self
            .parsed(&fields, "on_failure", false, |text| match text {
                "park" => Ok(OnFailure::Park),
                "compensate" => Ok(OnFailure::Compensate),
                other => Err(format!("`{other}` is not one of park, compensate")),
            })
            .value()
            .unwrap_or_default();

        let triggers = self
            .list(&fields, "trigger")
            .unwrap_or_default()
            .into_iter()
            .map(|(path, node)| self.trigger(node, path))
            .collect::<Vec<_>>();

        let stages = match self.list(&fields, "stage") {
            Some(list) if !list.is_empty() => list
                .into_iter()
                .filter_map(|(path, node)| self.stage(node, path, area))
                .collect(),
            listed => {
                // Absent, or an empty `stage = []`; a wrong type was reported.
                if listed.is_some() || fields.get("stage").is_none() {
                    self.report(
                        &fields.span,
                        "stage",
                        "a template needs at least one stage: add a `[[stage]]` table",
                    );
                }
                Vec::new()
            }
        };

        self.check_graph(&stages);

        let stages = stages
            .into_iter()
            .map(assemble_stage)
            .collect::<Option<Vec<_>>>()?;
        Some(Template {
            name: name?,
            version: version?,
            title: title?,
            description,
            area: area?,
            on_failure,
            triggers: triggers.into_iter().collect::<Option<Vec<_>>>()?,
            stages,
        })
    }

    fn version(&mut self, fields: &Fields<'_, '_>) -> Option<u32> {
        let Some(node) = fields.get("version") else {
            self.missing(fields, "version");
            return None;
        };
        let number = self.integer(node, "version")?;
        match u32::try_from(number) {
            Ok(version) if version >= 1 => Some(version),
            _ => {
                self.report(
                    &node.span(),
                    "version",
                    format!("must be a whole number from 1, not {number}"),
                );
                None
            }
        }
    }

    fn trigger(&mut self, node: &Node<'_>, path: String) -> Option<Trigger> {
        let fields = self.open(node, path, TRIGGER_KEYS)?;
        let event = self
            .parsed(&fields, "event", true, EventType::parse)
            .value();
        let mut when = Vec::new();
        if let Some(node) = fields.get("when") {
            let field = fields.field("when");
            if let DeValue::Table(table) = node.get_ref() {
                self.conditions(table, "", &field, &mut when);
            } else {
                self.report(
                    &node.span(),
                    &field,
                    format!(
                        "must be a table of conditions such as {{ \"payload.stage\" = \"Won\" }}, not {}",
                        describe(node.get_ref())
                    ),
                );
            }
        }
        Some(Trigger {
            event: event?,
            when,
        })
    }

    /// Flattens `when` into conditions: nested tables join their keys with
    /// dots, so `{ payload.stage = "Won" }` and `{ "payload.stage" = "Won" }`
    /// mean the same; a list means "any of these values".
    fn conditions(
        &mut self,
        table: &DeTable<'_>,
        prefix: &str,
        field: &str,
        out: &mut Vec<Condition>,
    ) {
        for (key, node) in table.iter() {
            let text = if prefix.is_empty() {
                key.get_ref().to_string()
            } else {
                format!("{prefix}.{}", key.get_ref())
            };
            let path = match Path::parse(&text) {
                Ok(path) => path,
                Err(message) => {
                    self.report(&key.span(), field, message);
                    continue;
                }
            };
            let values = match node.get_ref() {
                DeValue::Table(inner) => {
                    self.conditions(inner, &text, field, out);
                    continue;
                }
                DeValue::Array(items) if items.is_empty() => {
                    self.report(
                        &node.span(),
                        field,
                        format!("`{text}`: an empty list matches nothing"),
                    );
                    continue;
                }
                DeValue::Array(items) => items.iter().collect::<Vec<_>>(),
                _ => vec![node],
            };
            let mut any_of = Vec::new();
            for value in values {
                match scalar(value.get_ref()) {
                    Some(value) => any_of.push(value),
                    None => self.report(
                        &value.span(),
                        field,
                        format!(
                            "`{text}`: a condition compares with strings, numbers or booleans, not {}",
                            describe(value.get_ref())
                        ),
                    ),
                }
            }
            out.push(Condition { path, any_of });
        }
    }

    fn stage(
        &mut self,
        node: &Node<'_>,
        path: String,
        area: Option<ProcessArea>,
    ) -> Option<RawStage> {
        let fields = self.open(node, path, STAGE_KEYS)?;
        let id = match self.parsed(&fields, "id", true, StageId::parse) {
            Got::Ok(id, span) => Some((id, span)),
            Got::Absent | Got::Invalid => None,
        };
        let title = self.title(&fields);
        let description = self.description(&fields);
        let steps = match self.list(&fields, "step") {
            Some(list) if !list.is_empty() => list
                .into_iter()
                .filter_map(|(path, node)| self.step(node, path, area))
                .collect(),
            listed => {
                // Absent, or an empty `step = []`; a wrong type was reported.
                if listed.is_some() || fields.get("step").is_none() {
                    let name = id
                        .as_ref()
                        .map_or(String::new(), |(id, _)| format!(" `{id}`"));
                    self.report(
                        &fields.span,
                        &fields.field("step"),
                        format!(
                            "stage{name} has no steps: add at least one `[[stage.step]]` table"
                        ),
                    );
                }
                Vec::new()
            }
        };
        Some(RawStage {
            path: fields.path,
            id,
            title,
            description,
            steps,
        })
    }

    fn step(
        &mut self,
        node: &Node<'_>,
        path: String,
        template_area: Option<ProcessArea>,
    ) -> Option<RawStep> {
        let fields = self.open(node, path, STEP_KEYS)?;
        let id = match self.parsed(&fields, "id", true, StepId::parse) {
            Got::Ok(id, span) => Some((id, span)),
            Got::Absent | Got::Invalid => None,
        };
        let title = self.title(&fields);
        let description = self.description(&fields);
        let mut expressions = Vec::new();
        let wait = self.wait(&fields, &mut expressions);
        let timer = fields.get("wait").is_some() || fields.get("wait_until").is_some();
        let (action, params) = if timer {
            self.timer_only(&fields);
            (
                ActionName::parse(TIMER_ACTION).ok(),
                Some(Value::Object(serde_json::Map::new())),
            )
        } else {
            let action = self.action(&fields, "action");
            (action, self.params(&fields, false, &mut expressions))
        };

        let area = match self.parsed(&fields, "area", false, |text| {
            text.parse::<ProcessArea>().map_err(reason)
        }) {
            Got::Ok(area, _) => Some(area),
            Got::Absent => template_area,
            Got::Invalid => None,
        };
        let gate = match self.parsed(&fields, "gate", false, |text| {
            text.parse::<GateLevel>().map_err(reason)
        }) {
            Got::Ok(level, span) => {
                if let Some(area) = area
                    && let Err(error) = gate::check_explicit(area, level)
                {
                    let floor = area.floor();
                    self.report(
                        &span,
                        &fields.field("gate"),
                        format!(
                            "{}; raise the gate to {floor} or higher, or remove it to use the area's default ({})",
                            reason(error),
                            area.default_level()
                        ),
                    );
                }
                Some(Some(level))
            }
            Got::Absent => Some(None),
            Got::Invalid => None,
        };

        let timeout = match fields.get("timeout") {
            None => Some(DEFAULT_TIMEOUT),
            Some(node) => {
                let field = fields.field("timeout");
                self.duration(node, &field).and_then(|timeout| {
                    if timeout.is_zero() || timeout > MAX_TIMEOUT {
                        self.report(
                            &node.span(),
                            &field,
                            format!(
                                "must be more than 0s and at most {}; a step that waits for people waits at its gate, not in its action",
                                format_duration(MAX_TIMEOUT)
                            ),
                        );
                        None
                    } else {
                        Some(timeout)
                    }
                })
            }
        };
        let retry = self.retry(&fields);
        let compensate = self.compensate(&fields, &mut expressions);
        let needs = self.needs(&fields);
        let reviewer = self.reviewer(&fields, &mut expressions);

        Some(RawStep {
            path: fields.path,
            id,
            title,
            description,
            action,
            params,
            area,
            gate,
            timeout,
            retry,
            compensate,
            needs,
            wait,
            reviewer,
            expressions,
        })
    }

    /// `wait` (a duration) or `wait_until` (an RFC 3339 timestamp, possibly
    /// from expressions): `Some(None)` when the step has neither.
    fn wait(
        &mut self,
        fields: &Fields<'_, '_>,
        sites: &mut Vec<ExpressionSite>,
    ) -> Option<Option<Wait>> {
        match (fields.get("wait"), fields.get("wait_until")) {
            (None, None) => Some(None),
            (Some(_), Some(until)) => {
                self.report(
                    &until.span(),
                    &fields.field("wait_until"),
                    "a timer step has either `wait` (a duration) or `wait_until` (a timestamp), not both",
                );
                None
            }
            (Some(node), None) => {
                let field = fields.field("wait");
                let duration = self.duration(node, &field)?;
                if duration.is_zero() {
                    self.report(&node.span(), &field, "must be more than 0s");
                    return None;
                }
                Some(Some(Wait::For(duration)))
            }
            (None, Some(node)) => {
                let field = fields.field("wait_until");
                let text = match node.get_ref() {
                    DeValue::String(text) => text.to_string(),
                    // An unquoted TOML date-time: checked like a literal.
                    DeValue::Datetime(datetime) => datetime.to_string(),
                    other => {
                        self.report(
                            &node.span(),
                            &field,
                            format!(
                                "must be an RFC 3339 timestamp such as \"2030-01-31T17:00:00Z\" or an expression such as \"{{{{ event.payload.contract_end }}}}\", not {}",
                                describe(other)
                            ),
                        );
                        return None;
                    }
                };
                let before = self.errors.len();
                self.expressions(&text, node.span(), &field, false, sites);
                if self.errors.len() > before {
                    return None;
                }
                // Without expressions the time is known now: check it now.
                let literal = TextTemplate::parse(&text).is_ok_and(|t| t.paths().next().is_none());
                if literal && let Err(message) = parse_timestamp(&text) {
                    self.report(&node.span(), &field, message);
                    return None;
                }
                Some(Some(Wait::Until(text)))
            }
        }
    }

    /// Reports every field a timer step may not have.
    fn timer_only(&mut self, fields: &Fields<'_, '_>) {
        for key in NOT_FOR_TIMERS {
            if let Some((name, _)) = fields.table.get_key_value(*key) {
                self.report(
                    &name.span(),
                    &fields.field(key),
                    format!(
                        "a timer step (`wait` or `wait_until`) only waits, so it has no `{key}`; make the waiting and the acting two steps, the second needing the first"
                    ),
                );
            }
        }
    }

    /// `reviewer`: who reviews the step when it runs at L1. An e-mail
    /// address, or text with `{{ … }}` expressions that renders to one when
    /// the step has run (so it may use the step's own output).
    fn reviewer(
        &mut self,
        fields: &Fields<'_, '_>,
        sites: &mut Vec<ExpressionSite>,
    ) -> Option<Option<String>> {
        let (text, span) = match self.string(fields, "reviewer", false) {
            Got::Ok(text, span) => (text, span),
            Got::Absent => return Some(None),
            Got::Invalid => return None,
        };
        let field = fields.field("reviewer");
        let text = text.trim().to_owned();
        let errors = self.errors.len();
        match TextTemplate::parse(&text) {
            Ok(template) if template.paths().next().is_none() => {
                if let Err(error) = EmailAddress::parse(&text) {
                    self.report(&span, &field, reason(error));
                }
            }
            Ok(_) => self.expressions(&text, span, &field, true, sites),
            Err(message) => self.report(&span, &field, message),
        }
        (self.errors.len() == errors).then_some(Some(text))
    }

    fn action(&mut self, fields: &Fields<'_, '_>, key: &str) -> Option<ActionName> {
        let (action, span) = match self.parsed(fields, key, true, ActionName::parse) {
            Got::Ok(action, span) => (action, span),
            Got::Absent | Got::Invalid => return None,
        };
        if !self.actions.knows(action.as_str()) {
            self.report(
                &span,
                &fields.field(key),
                format!("unknown action `{action}`: this Gatehouse has no action by that name"),
            );
        }
        Some(action)
    }

    /// `params` (or `compensate.params`): a table of any TOML values, turned
    /// into JSON, with every string checked for expressions.
    fn params(
        &mut self,
        fields: &Fields<'_, '_>,
        in_compensation: bool,
        sites: &mut Vec<ExpressionSite>,
    ) -> Option<Value> {
        let Some(node) = fields.get("params") else {
            return Some(Value::Object(serde_json::Map::new()));
        };
        let field = fields.field("params");
        if !matches!(node.get_ref(), DeValue::Table(_)) {
            self.report(
                &node.span(),
                &field,
                format!(
                    "must be a table such as {{ tenant = \"…\" }}, not {}",
                    describe(node.get_ref())
                ),
            );
            return None;
        }
        self.json(node, &field, in_compensation, sites)
    }

    fn json(
        &mut self,
        node: &Node<'_>,
        field: &str,
        in_compensation: bool,
        sites: &mut Vec<ExpressionSite>,
    ) -> Option<Value> {
        match node.get_ref() {
            DeValue::String(text) => {
                self.expressions(text, node.span(), field, in_compensation, sites);
                Some(Value::String(text.to_string()))
            }
            DeValue::Integer(_) => self.integer(node, field).map(Value::from),
            DeValue::Float(_) => {
                let number = self.number(node, field)?;
                let value = serde_json::Number::from_f64(number).map(Value::Number);
                if value.is_none() {
                    self.report(
                        &node.span(),
                        field,
                        "nan and inf cannot be passed to an action",
                    );
                }
                value
            }
            DeValue::Boolean(flag) => Some(Value::Bool(*flag)),
            DeValue::Datetime(datetime) => Some(Value::String(datetime.to_string())),
            DeValue::Array(items) => items
                .iter()
                .enumerate()
                .map(|(i, item)| self.json(item, &format!("{field}[{i}]"), in_compensation, sites))
                .collect::<Vec<_>>()
                .into_iter()
                .collect::<Option<Vec<_>>>()
                .map(Value::Array),
            DeValue::Table(table) => table
                .iter()
                .map(|(key, item)| {
                    let key: &str = key.get_ref();
                    let value = self.json(item, &join(field, key), in_compensation, sites);
                    value.map(|value| (key.to_owned(), value))
                })
                .collect::<Vec<_>>()
                .into_iter()
                .collect::<Option<serde_json::Map<_, _>>>()
                .map(Value::Object),
        }
    }

    /// Checks the expressions in one parameter string: syntax and root now,
    /// `steps.<id>` references once every step is known.
    fn expressions(
        &mut self,
        text: &str,
        span: Range<usize>,
        field: &str,
        in_compensation: bool,
        sites: &mut Vec<ExpressionSite>,
    ) {
        let template = match TextTemplate::parse(text) {
            Ok(template) => template,
            Err(message) => {
                self.report(&span, field, message);
                return;
            }
        };
        for path in template.paths() {
            if !ROOTS.contains(&path.root()) {
                self.report(
                    &span,
                    field,
                    format!(
                        "`{{{{ {path} }}}}`: an expression starts with one of {}, not `{}`",
                        ROOTS.join(", "),
                        path.root()
                    ),
                );
            } else if path.root() == "steps" {
                sites.push(ExpressionSite {
                    field: field.to_owned(),
                    span: span.clone(),
                    path: path.clone(),
                    in_compensation,
                });
            }
        }
    }

    fn retry(&mut self, fields: &Fields<'_, '_>) -> Option<RetryPolicy> {
        let mut policy = RetryPolicy::default();
        let Some(node) = fields.get("retry") else {
            return Some(policy);
        };
        let retry = self.open(node, fields.field("retry"), RETRY_KEYS)?;
        let mut ok = true;
        let mut spans = HashMap::new();
        for (key, value) in retry.table.iter() {
            let key: &str = key.get_ref();
            let field = retry.field(key);
            spans.insert(key.to_owned(), value.span());
            match key {
                "max_attempts" => match self.integer(value, &field).map(u32::try_from) {
                    Some(Ok(attempts)) => policy.max_attempts = attempts,
                    Some(Err(_)) => {
                        self.report(&value.span(), &field, "must be a whole number from 1");
                        ok = false;
                    }
                    None => ok = false,
                },
                "initial" | "max" => match self.duration(value, &field) {
                    Some(duration) if key == "initial" => policy.initial = duration,
                    Some(duration) => policy.max = duration,
                    None => ok = false,
                },
                "multiplier" | "jitter" => match self.number(value, &field) {
                    Some(number) if key == "multiplier" => policy.multiplier = number,
                    Some(number) => policy.jitter = number,
                    None => ok = false,
                },
                // Unknown keys were reported by `open`.
                _ => ok = false,
            }
        }
        if !ok {
            return None;
        }
        if let Err(error) = policy.validate() {
            let span = spans
                .get(error.field)
                .cloned()
                .unwrap_or_else(|| retry.span.clone());
            self.report(&span, &retry.field(error.field), error.to_string());
            return None;
        }
        Some(policy)
    }

    fn compensate(
        &mut self,
        fields: &Fields<'_, '_>,
        sites: &mut Vec<ExpressionSite>,
    ) -> Option<Option<Compensation>> {
        let Some(node) = fields.get("compensate") else {
            return Some(None);
        };
        let compensate = self.open(node, fields.field("compensate"), COMPENSATE_KEYS)?;
        let action = self.action(&compensate, "action");
        let params = self.params(&compensate, true, sites);
        Some(Some(Compensation {
            action: action?,
            params: params?,
        }))
    }

    fn needs(&mut self, fields: &Fields<'_, '_>) -> Vec<(String, Range<usize>)> {
        let Some(node) = fields.get("needs") else {
            return Vec::new();
        };
        let field = fields.field("needs");
        let DeValue::Array(items) = node.get_ref() else {
            self.report(
                &node.span(),
                &field,
                format!(
                    "must be a list of step ids such as [\"create-tenant\"], not {}",
                    describe(node.get_ref())
                ),
            );
            return Vec::new();
        };
        let mut needs = Vec::new();
        for (i, item) in items.iter().enumerate() {
            match item.get_ref() {
                DeValue::String(id) => needs.push((id.to_string(), item.span())),
                other => self.report(
                    &item.span(),
                    &format!("{field}[{i}]"),
                    format!("must be a step id (a string), not {}", describe(other)),
                ),
            }
        }
        needs
    }

    // ----- whole-template checks -------------------------------------------

    fn check_graph(&mut self, stages: &[RawStage]) {
        let mut stage_ids: HashMap<&str, usize> = HashMap::new();
        for (index, stage) in stages.iter().enumerate() {
            if let Some((id, span)) = &stage.id {
                if let Some(first) = stage_ids.get(id.as_str()) {
                    self.report(
                        span,
                        &join(&stage.path, "id"),
                        format!("stage id `{id}` is already used by stage[{first}]"),
                    );
                } else {
                    stage_ids.insert(id.as_str(), index);
                }
            }
        }

        // Where each step id is first defined: (stage, step) indices.
        let mut step_at: HashMap<&str, (usize, usize)> = HashMap::new();
        for (s, stage) in stages.iter().enumerate() {
            for (j, step) in stage.steps.iter().enumerate() {
                let Some((id, span)) = &step.id else { continue };
                if let Some((fs, fj)) = step_at.get(id.as_str()) {
                    self.report(
                        span,
                        &join(&step.path, "id"),
                        format!(
                            "step id `{id}` is already used by stage[{fs}].step[{fj}]; step ids must be unique in the whole template, because expressions refer to `steps.<id>`"
                        ),
                    );
                } else {
                    step_at.insert(id.as_str(), (s, j));
                }
            }
        }

        for (s, stage) in stages.iter().enumerate() {
            let edges = self.resolve_needs(s, stage, stages, &step_at);
            self.check_cycles(stage, &edges);
            let ancestors = (0..stage.steps.len())
                .map(|j| reachable(j, &edges))
                .collect::<Vec<_>>();
            for (j, step) in stage.steps.iter().enumerate() {
                for site in &step.expressions {
                    self.check_step_reference(site, (s, j), stages, &step_at, &ancestors);
                }
            }
        }
    }

    /// Resolves every `needs` entry of a stage's steps into edges between the
    /// stage's steps (by index), reporting entries that cannot be.
    fn resolve_needs(
        &mut self,
        s: usize,
        stage: &RawStage,
        stages: &[RawStage],
        step_at: &HashMap<&str, (usize, usize)>,
    ) -> Vec<Vec<Edge>> {
        let mut edges = vec![Vec::new(); stage.steps.len()];
        for (j, step) in stage.steps.iter().enumerate() {
            let mut seen = HashSet::new();
            for (k, (need, span)) in step.needs.iter().enumerate() {
                let field = format!("{}.needs[{k}]", step.path);
                if !seen.insert(need.as_str()) {
                    self.report(span, &field, format!("`{need}` is listed twice"));
                    continue;
                }
                match step_at.get(need.as_str()) {
                    None => {
                        let same_stage = stage
                            .steps
                            .iter()
                            .filter_map(|step| step.id.as_ref().map(|(id, _)| id.as_str()));
                        let hint = suggest(need, same_stage)
                            .map(|near| format!("; did you mean `{near}`?"))
                            .unwrap_or_default();
                        self.report(
                            span,
                            &field,
                            format!("there is no step `{need}` in this template{hint}"),
                        );
                    }
                    Some(&(other, _)) if other != s => {
                        let name = stages
                            .get(other)
                            .and_then(|stage| stage.id.as_ref())
                            .map_or(String::new(), |(id, _)| format!(" `{id}`"));
                        let why = if other < s {
                            "steps of earlier stages have always completed before this stage starts, so leave it out"
                        } else {
                            "a later stage only starts after this one has completed, so this step could never run"
                        };
                        self.report(
                            span,
                            &field,
                            format!(
                                "step `{need}` is in stage{name} (stage[{other}]); `needs` can only name steps of the same stage: {why}"
                            ),
                        );
                    }
                    Some(&(_, target)) if target == j => {
                        self.report(span, &field, "a step cannot need itself");
                    }
                    Some(&(_, target)) => edges[j].push(Edge {
                        target,
                        span: span.clone(),
                        field,
                    }),
                }
            }
        }
        edges
    }

    /// Reports every dependency cycle of a stage once, at the `needs` entry
    /// that closes it, naming the steps around it.
    fn check_cycles(&mut self, stage: &RawStage, edges: &[Vec<Edge>]) {
        #[derive(Clone, Copy, PartialEq)]
        enum Mark {
            New,
            OnPath,
            Done,
        }
        let name = |j: usize| {
            stage
                .steps
                .get(j)
                .and_then(|step| step.id.as_ref())
                .map_or_else(|| format!("step[{j}]"), |(id, _)| id.to_string())
        };
        let mut marks = vec![Mark::New; edges.len()];
        for start in 0..edges.len() {
            if marks.get(start) != Some(&Mark::New) {
                continue;
            }
            // Iterative depth-first search: (node, next edge to follow).
            let mut path: Vec<(usize, usize)> = vec![(start, 0)];
            if let Some(mark) = marks.get_mut(start) {
                *mark = Mark::OnPath;
            }
            while let Some(top) = path.last_mut() {
                let (node, next) = *top;
                let Some(edge) = edges.get(node).and_then(|out| out.get(next)) else {
                    if let Some(mark) = marks.get_mut(node) {
                        *mark = Mark::Done;
                    }
                    path.pop();
                    continue;
                };
                top.1 += 1;
                match marks.get(edge.target).copied() {
                    Some(Mark::New) => {
                        if let Some(mark) = marks.get_mut(edge.target) {
                            *mark = Mark::OnPath;
                        }
                        path.push((edge.target, 0));
                    }
                    Some(Mark::OnPath) => {
                        let from = path
                            .iter()
                            .position(|(n, _)| *n == edge.target)
                            .unwrap_or(0);
                        let cycle = path
                            .get(from..)
                            .unwrap_or_default()
                            .iter()
                            .map(|(n, _)| name(*n))
                            .chain(std::iter::once(name(edge.target)))
                            .collect::<Vec<_>>()
                            .join(" -> ");
                        self.report(
                            &edge.span,
                            &edge.field,
                            format!("dependency cycle: {cycle} (each step needs the next)"),
                        );
                    }
                    Some(Mark::Done) | None => {}
                }
            }
        }
    }

    /// A `{{ steps.<id>… }}` expression must name a step that has certainly
    /// completed when the expression is rendered.
    fn check_step_reference(
        &mut self,
        site: &ExpressionSite,
        (s, j): (usize, usize),
        stages: &[RawStage],
        step_at: &HashMap<&str, (usize, usize)>,
        ancestors: &[HashSet<usize>],
    ) {
        let path = &site.path;
        let shown = format!("`{{{{ {path} }}}}`");
        let Some(target) = path.segments().get(1) else {
            self.report(
                &site.span,
                &site.field,
                format!("{shown}: name a step, as in `steps.<id>.output`"),
            );
            return;
        };
        if let Some(third) = path.segments().get(2)
            && third != "output"
        {
            self.report(
                &site.span,
                &site.field,
                format!(
                    "{shown}: a step's record holds only `output`; write `steps.{target}.output…`"
                ),
            );
            return;
        }
        let Some(&(ts, tj)) = step_at.get(target.as_str()) else {
            let all = stages
                .iter()
                .flat_map(|stage| stage.steps.iter())
                .filter_map(|step| step.id.as_ref().map(|(id, _)| id.as_str()));
            let hint = suggest(target, all)
                .map(|near| format!("; did you mean `{near}`?"))
                .unwrap_or_default();
            self.report(
                &site.span,
                &site.field,
                format!("{shown}: there is no step `{target}` in this template{hint}"),
            );
            return;
        };
        let message = if ts < s {
            return;
        } else if ts > s {
            format!(
                "{shown}: step `{target}` is in a later stage and has not run when this step runs"
            )
        } else if tj == j {
            if site.in_compensation {
                return;
            }
            format!(
                "{shown}: a step's parameters cannot use its own output (its `compensate` parameters can)"
            )
        } else if ancestors.get(j).is_some_and(|set| set.contains(&tj)) {
            return;
        } else {
            format!(
                "{shown}: step `{target}` is not guaranteed to have completed before this step; add it to `needs` (directly or through a step it needs)"
            )
        };
        self.report(&site.span, &site.field, message);
    }
}

/// A resolved `needs` entry: the needed step's index in the stage.
#[derive(Clone)]
struct Edge {
    target: usize,
    span: Range<usize>,
    field: String,
}

/// Every step reachable from `start` by following `needs` (not `start`
/// itself unless it is on a cycle).
fn reachable(start: usize, edges: &[Vec<Edge>]) -> HashSet<usize> {
    let mut seen = HashSet::new();
    let mut todo = vec![start];
    while let Some(node) = todo.pop() {
        for edge in edges.get(node).into_iter().flatten() {
            if seen.insert(edge.target) {
                todo.push(edge.target);
            }
        }
    }
    seen
}

fn assemble_stage(stage: RawStage) -> Option<Stage> {
    Some(Stage {
        id: stage.id?.0,
        title: stage.title?,
        description: stage.description,
        steps: stage
            .steps
            .into_iter()
            .map(assemble_step)
            .collect::<Option<Vec<_>>>()?,
    })
}

fn assemble_step(step: RawStep) -> Option<Step> {
    Some(Step {
        id: step.id?.0,
        title: step.title?,
        description: step.description,
        action: step.action?,
        params: step.params?,
        area: step.area?,
        gate: step.gate?,
        timeout: step.timeout?,
        retry: step.retry?,
        compensate: step.compensate?,
        needs: step
            .needs
            .into_iter()
            .map(|(id, _)| StepId::parse(&id).ok())
            .collect::<Option<Vec<_>>>()?,
        wait: step.wait?,
        reviewer: step.reviewer?,
    })
}

/// A TOML scalar as JSON (for trigger conditions).
fn scalar(value: &DeValue<'_>) -> Option<Value> {
    match value {
        DeValue::String(text) => Some(Value::String(text.to_string())),
        DeValue::Integer(integer) => i64::from_str_radix(integer.as_str(), integer.radix())
            .ok()
            .map(Value::from),
        DeValue::Float(float) => float
            .as_str()
            .parse::<f64>()
            .ok()
            .and_then(serde_json::Number::from_f64)
            .map(Value::Number),
        DeValue::Boolean(flag) => Some(Value::Bool(*flag)),
        DeValue::Datetime(datetime) => Some(Value::String(datetime.to_string())),
        DeValue::Array(_) | DeValue::Table(_) => None,
    }
}

fn describe(value: &DeValue<'_>) -> &'static str {
    match value {
        DeValue::String(_) => "a string",
        DeValue::Integer(_) => "an integer",
        DeValue::Float(_) => "a float",
        DeValue::Boolean(_) => "a boolean",
        DeValue::Datetime(_) => "a date-time",
        DeValue::Array(_) => "a list",
        DeValue::Table(_) => "a table",
    }
}

/// The reason of a domain error, without the field name the template error
/// already carries.
fn reason(error: DomainError) -> String {
    match error {
        DomainError::Invalid { reason, .. } => reason,
        other => other.to_string(),
    }
}

/// `stage[0].step` → `stage.step`: the TOML header of a nested list.
fn strip_indices(path: &str) -> String {
    path.split('.')
        .map(|part| part.split('[').next().unwrap_or(part))
        .collect::<Vec<_>>()
        .join(".")
}

/// The candidate closest to `word`, if it is a plausible typo of it.
fn suggest<'c>(word: &str, candidates: impl Iterator<Item = &'c str>) -> Option<&'c str> {
    candidates
        .map(|candidate| (edit_distance(word, candidate), candidate))
        .filter(|(distance, candidate)| *distance > 0 && *distance <= 2.max(candidate.len() / 4))
        .min_by_key(|(distance, _)| *distance)
        .map(|(_, candidate)| candidate)
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut previous: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut current = vec![i + 1];
        for (j, cb) in b.iter().enumerate() {
            let substitute = previous
                .get(j)
                .map_or(usize::MAX, |d| d + usize::from(ca != *cb));
            let delete = previous.get(j + 1).map_or(usize::MAX, |d| d + 1);
            let insert = current.get(j).map_or(usize::MAX, |d| d + 1);
            current.push(substitute.min(delete).min(insert));
        }
        previous = current;
    }
    previous.last().copied().unwrap_or(0)
}
