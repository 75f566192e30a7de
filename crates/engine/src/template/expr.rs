//! The expression language of step parameters: `{{ path.to.value }}`.
//!
//! Deliberately tiny. A parameter string may contain `{{ … }}` holes, each
//! holding one dotted path into the instance context
//! (`{"event": …, "instance": …, "tenant": …, "steps": {"<id>": {"output": …}}}`).
//! There are no operators, filters or defaults: a template is a checklist an
//! MSP edits, and anything cleverer belongs in an action written in Rust,
//! where it is tested. Two rules keep rendering predictable:
//!
//! - a string that is exactly one expression (`"{{ steps.rmm.output.id }}"`)
//!   yields the value itself, with its JSON type (a number stays a number, an
//!   object stays an object);
//! - anywhere else the value is interpolated as text, which only strings,
//!   numbers and booleans can be.
//!
//! A path that is not in the context is an error naming the path, never an
//! empty string: an account created with an empty name is worse than a step
//! that stops and says why.

use std::fmt;

use serde::{Deserialize, Deserializer, Serialize, Serializer};
use serde_json::Value;

/// The names an expression may start with.
pub const ROOTS: [&str; 4] = ["event", "instance", "tenant", "steps"];

/// A dotted path into a JSON value: `event.payload.company.name`,
/// `steps.create-tenant.output.id`, `event.payload.contacts.0.email`.
///
/// Segments are made of letters, digits, `_` and `-` (step ids contain `-`);
/// an all-digit segment also indexes into an array.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Path {
    segments: Vec<String>,
}

impl Path {
    /// Parses a dotted path.
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.is_empty() {
            return Err("the path is empty".to_owned());
        }
        let mut segments = Vec::new();
        for segment in text.split('.') {
            if segment.is_empty()
                || !segment
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
            {
                return Err(format!(
                    "`{text}` is not a path; write names separated by dots, such as `event.payload.company.name`"
                ));
            }
            segments.push(segment.to_owned());
        }
        Ok(Self { segments })
    }

    /// The segments, root first.
    pub fn segments(&self) -> &[String] {
        &self.segments
    }

    /// The first segment (`event`, `steps`, …).
    pub fn root(&self) -> &str {
        self.segments.first().map_or("", String::as_str)
    }

    /// Follows the path through `value`; on failure, says where it stopped.
    pub fn lookup<'v>(&self, value: &'v Value) -> Result<&'v Value, String> {
        let mut current = value;
        for (depth, segment) in self.segments.iter().enumerate() {
            let next = match current {
                Value::Object(map) => map.get(segment),
                Value::Array(items) => segment.parse::<usize>().ok().and_then(|i| items.get(i)),
                _ => None,
            };
            current = match next {
                Some(next) => next,
                None => {
                    let walked = self.segments.get(..depth).unwrap_or_default().join(".");
                    return Err(match current {
                        _ if depth == 0 => format!("the context has no `{segment}`"),
                        Value::Object(_) => format!("`{walked}` has no key `{segment}`"),
                        Value::Array(items) => format!(
                            "`{walked}` is a list of {} item(s) and has no item `{segment}`",
                            items.len()
                        ),
                        other => {
                            format!("`{walked}` is {}, not an object", kind_with_article(other))
                        }
                    });
                }
            };
        }
        Ok(current)
    }
}

impl fmt::Display for Path {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.segments.join("."))
    }
}

impl Serialize for Path {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Path {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A parameter string split into literal text and `{{ path }}` holes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct TextTemplate {
    pieces: Vec<Piece>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Hole(Path),
}

impl TextTemplate {
    /// Splits `text` into literal parts and expressions.
    pub(crate) fn parse(text: &str) -> Result<Self, String> {
        let mut pieces = Vec::new();
        let mut rest = text;
        while let Some(open) = rest.find("{{") {
            let (before, after_open) = rest.split_at(open);
            if !before.is_empty() {
                pieces.push(Piece::Text(before.to_owned()));
            }
            let inside = after_open.get(2..).unwrap_or_default();
            let Some(close) = inside.find("}}") else {
                return Err("`{{` is not closed; end the expression with `}}`".to_owned());
            };
            let (expression, after_close) = inside.split_at(close);
            let expression = expression.trim();
            if expression.is_empty() {
                return Err("empty expression `{{ }}`; put a path inside, such as `{{ event.payload.company.name }}`".to_owned());
            }
            pieces.push(Piece::Hole(Path::parse(expression)?));
            rest = after_close.get(2..).unwrap_or_default();
        }
        if !rest.is_empty() {
            pieces.push(Piece::Text(rest.to_owned()));
        }
        Ok(Self { pieces })
    }

    /// The paths this string refers to, in order.
    pub(crate) fn paths(&self) -> impl Iterator<Item = &Path> {
        self.pieces.iter().filter_map(|piece| match piece {
            Piece::Hole(path) => Some(path),
            Piece::Text(_) => None,
        })
    }

    /// Renders against `ctx`. `at` names the parameter for error messages.
    fn render(&self, ctx: &Value, at: &str) -> Result<Value, RenderError> {
        let missing = |path: &Path, reason: String| RenderError::Missing {
            at: at.to_owned(),
            path: path.to_string(),
            reason,
        };
        if let [Piece::Hole(path)] = self.pieces.as_slice() {
            return path
                .lookup(ctx)
                .cloned()
                .map_err(|reason| missing(path, reason));
        }
        let mut out = String::new();
        for piece in &self.pieces {
            match piece {
                Piece::Text(text) => out.push_str(text),
                Piece::Hole(path) => match path.lookup(ctx).map_err(|r| missing(path, r))? {
                    Value::String(text) => out.push_str(text),
                    Value::Number(number) => out.push_str(&number.to_string()),
                    Value::Bool(flag) => out.push_str(if *flag { "true" } else { "false" }),
                    other => {
                        return Err(RenderError::NotText {
                            at: at.to_owned(),
                            path: path.to_string(),
                            kind: kind_with_article(other),
                        });
                    }
                },
            }
        }
        Ok(Value::String(out))
    }
}

/// Why parameters could not be rendered for a step.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RenderError {
    /// A path names something the context does not hold.
    #[error("{at}: `{{{{ {path} }}}}` cannot be filled in: {reason}")]
    Missing {
        /// The parameter being rendered, such as `params.display_name`.
        at: String,
        /// The path as written in the template.
        path: String,
        /// Where the lookup stopped.
        reason: String,
    },
    /// A value that is not text-like was used inside a longer string.
    #[error(
        "{at}: `{{{{ {path} }}}}` is {kind} and cannot be part of a longer text; make the whole string `{{{{ {path} }}}}` to pass the value itself"
    )]
    NotText {
        /// The parameter being rendered.
        at: String,
        /// The path as written in the template.
        path: String,
        /// What the value is (`an object`, `null`, …).
        kind: &'static str,
    },
    /// A string holds a malformed expression (only possible for parameters
    /// that did not come through template loading, which rejects these).
    #[error("{at}: {message}")]
    Syntax {
        /// The parameter being rendered.
        at: String,
        /// What is malformed.
        message: String,
    },
}

/// Renders step (or compensation) parameters against the instance context:
/// every string is parsed for `{{ path }}` expressions and filled in; other
/// values are copied. Errors name the parameter as `params.<key>…`.
pub fn render(params: &Value, ctx: &Value) -> Result<Value, RenderError> {
    render_at(params, ctx, "params")
}

pub(crate) fn render_at(value: &Value, ctx: &Value, at: &str) -> Result<Value, RenderError> {
    match value {
        Value::String(text) => TextTemplate::parse(text)
            .map_err(|message| RenderError::Syntax {
                at: at.to_owned(),
                message,
            })?
            .render(ctx, at),
        Value::Array(items) => items
            .iter()
            .enumerate()
            .map(|(i, item)| render_at(item, ctx, &format!("{at}[{i}]")))
            .collect::<Result<Vec<_>, _>>()
            .map(Value::Array),
        Value::Object(map) => map
            .iter()
            .map(|(key, item)| Ok((key.clone(), render_at(item, ctx, &format!("{at}.{key}"))?)))
            .collect::<Result<serde_json::Map<_, _>, _>>()
            .map(Value::Object),
        other => Ok(other.clone()),
    }
}

fn kind_with_article(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    fn ctx() -> Value {
        json!({
            "event": {"payload": {
                "company": {"name": "Northwind Legal", "slug": "northwind", "seats": 42, "tags": ["law"]},
                "contacts": [{"email": "ops@northwind.example"}],
                "vip": true,
                "fax": null
            }},
            "instance": {"id": "wf_123"},
            "tenant": {"slug": "northwind"},
            "steps": {"create-tenant": {"output": {"id": "ten_9", "region": "eu"}}}
        })
    }

    #[test]
    fn a_whole_expression_keeps_its_json_type() {
        let rendered = render(
            &json!({
                "seats": "{{ event.payload.company.seats }}",
                "company": "{{event.payload.company}}",
                "vip": "{{ event.payload.vip }}",
                "fax": "{{ event.payload.fax }}",
                "tags": "{{ event.payload.company.tags }}",
            }),
            &ctx(),
        );
        assert_eq!(
            rendered,
            Ok(json!({
                "seats": 42,
                "company": {"name": "Northwind Legal", "slug": "northwind", "seats": 42, "tags": ["law"]},
                "vip": true,
                "fax": null,
                "tags": ["law"],
            }))
        );
    }

    #[test]
    fn text_around_expressions_interpolates() {
        let rendered = render(
            &json!({
                "title": "Onboard {{ event.payload.company.name }} ({{ event.payload.company.seats }} seats, vip={{ event.payload.vip }})",
                "padded": " {{ tenant.slug }}",
                "plain": "no holes }} here",
                "nested": [{"to": "{{ event.payload.contacts.0.email }}"}],
                "number": 7,
            }),
            &ctx(),
        );
        assert_eq!(
            rendered,
            Ok(json!({
                "title": "Onboard Northwind Legal (42 seats, vip=true)",
                "padded": " northwind",
                "plain": "no holes }} here",
                "nested": [{"to": "ops@northwind.example"}],
                "number": 7,
            }))
        );
    }

    #[test]
    fn step_ids_with_dashes_resolve() {
        let rendered = render(
            &json!({"tenant": "{{ steps.create-tenant.output.id }}", "where": "in {{ steps.create-tenant.output.region }}"}),
            &ctx(),
        );
        assert_eq!(rendered, Ok(json!({"tenant": "ten_9", "where": "in eu"})));
    }

    #[test]
    fn a_missing_path_is_an_error_naming_the_path() {
        let err = render(
            &json!({"name": "x {{ event.payload.company.phone }}"}),
            &ctx(),
        );
        assert_eq!(
            err,
            Err(RenderError::Missing {
                at: "params.name".into(),
                path: "event.payload.company.phone".into(),
                reason: "`event.payload.company` has no key `phone`".into(),
            })
        );
        let Err(err) = render(&json!(["{{ steps.rmm.output.id }}"]), &ctx()) else {
            panic!("must fail");
        };
        assert_eq!(
            err.to_string(),
            "params[0]: `{{ steps.rmm.output.id }}` cannot be filled in: `steps` has no key `rmm`"
        );
        let Err(err) = render(&json!("{{ event.payload.contacts.3 }}"), &ctx()) else {
            panic!("must fail");
        };
        assert!(err.to_string().contains("list of 1 item(s)"), "{err}");
        let Err(err) = render(&json!("{{ event.payload.vip.level }}"), &ctx()) else {
            panic!("must fail");
        };
        assert!(
            err.to_string().contains("is a boolean, not an object"),
            "{err}"
        );
    }

    #[test]
    fn objects_and_null_cannot_be_interpolated_into_text() {
        let err = render(&json!({"x": "a {{ event.payload.company }}"}), &ctx());
        assert!(matches!(
            err,
            Err(RenderError::NotText {
                kind: "an object",
                ..
            })
        ));
        let err = render(&json!({"x": "a {{ event.payload.fax }}"}), &ctx());
        assert!(matches!(
            err,
            Err(RenderError::NotText { kind: "null", .. })
        ));
    }

    #[test]
    fn malformed_expressions_are_reported() {
        for bad in [
            "{{ }}",
            "{{ a..b }}",
            "{{ a b }}",
            "x {{ a",
            "{{ a {{ b }}",
            "{{ a.b! }}",
        ] {
            assert!(TextTemplate::parse(bad).is_err(), "{bad}");
        }
        assert!(matches!(
            render(&json!("{{ oops"), &ctx()),
            Err(RenderError::Syntax { .. })
        ));
    }

    #[test]
    fn paths_round_trip_as_text() {
        let path = Path::parse("steps.create-tenant.output.id").unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(path.root(), "steps");
        assert_eq!(path.to_string(), "steps.create-tenant.output.id");
        assert_eq!(
            serde_json::to_value(&path).ok(),
            Some(json!("steps.create-tenant.output.id"))
        );
    }
}
