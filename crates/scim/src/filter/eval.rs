//! Evaluating a [`Filter`] against a resource held as JSON, with SCIM's
//! semantics (RFC 7644 §3.4.2.2):
//!
//! - attribute names are matched case-insensitively; string values are
//!   compared case-insensitively unless the attribute is `caseExact`;
//! - a multi-valued attribute matches if any of its values matches; for a
//!   multi-valued complex attribute without a sub-attribute (`emails co
//!   "x"`) the `value` sub-attribute is compared;
//! - `pr` is true when the attribute has a non-empty value (for complex
//!   values, a non-empty sub-attribute); `eq null` is true when it has none
//!   (unassigned, null and empty are the same, RFC 7643 §2.5);
//! - `ne` is the negation of `eq`;
//! - dateTime attributes compare chronologically; numbers numerically;
//!   `gt`/`ge`/`lt`/`le` on a boolean or binary attribute is `invalidFilter`.
//!
//! Attributes the schema does not define are compared as case-insensitive
//! strings, numbers or booleans according to their JSON type.

use std::cmp::Ordering;

use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{AttrPath, CompValue, CompareOp, Filter};
use crate::error::ScimError;
use crate::schema::{Attribute, AttributeType, ResourceType, find, get_ci};

/// Whether `resource` matches `filter`.
///
/// # Errors
/// `invalidFilter` when the filter compares in a way the attribute's type
/// does not allow (ordering a boolean, a malformed dateTime literal).
pub fn matches(filter: &Filter, rt: &ResourceType, resource: &Value) -> Result<bool, ScimError> {
    let Some(obj) = resource.as_object() else {
        return Ok(false);
    };
    eval(filter, &Scope::Resource { rt, obj })
}

/// Whether one value of a multi-valued complex attribute (an element such
/// as one e-mail) matches a value filter over its sub-attributes.
pub fn element_matches(
    filter: &Filter,
    sub_attributes: &[Attribute],
    element: &Value,
) -> Result<bool, ScimError> {
    let Some(obj) = element.as_object() else {
        return Ok(false);
    };
    eval(
        filter,
        &Scope::Element {
            attrs: sub_attributes,
            obj,
        },
    )
}

enum Scope<'a> {
    Resource {
        rt: &'a ResourceType,
        obj: &'a Map<String, Value>,
    },
    Element {
        attrs: &'a [Attribute],
        obj: &'a Map<String, Value>,
    },
}

/// What a path points at in a scope: the attribute's raw value and its
/// definition (when the schema has one).
struct Found<'a> {
    value: Option<&'a Value>,
    def: Option<&'a Attribute>,
}

fn lookup<'a>(scope: &Scope<'a>, path: &AttrPath) -> Found<'a> {
    match scope {
        Scope::Resource { rt, obj } => match rt.resolve(&AttrPath {
            sub_attr: None,
            ..path.clone()
        }) {
            Some(resolved) => {
                let container = match resolved.extension {
                    Some(ext) => get_ci(obj, ext).and_then(Value::as_object),
                    None => Some(*obj),
                };
                Found {
                    value: container.and_then(|c| get_ci(c, &resolved.attr.name)),
                    def: Some(resolved.attr),
                }
            }
            None if path.uri.is_none() => Found {
                value: get_ci(obj, &path.name),
                def: None,
            },
            None => Found {
                value: None,
                def: None,
            },
        },
        Scope::Element { attrs, obj } => Found {
            value: get_ci(obj, &path.name),
            def: find(attrs, &path.name),
        },
    }
}

/// The values a comparison looks at, and the definition that governs them.
fn leaf_values<'a>(
    found: &Found<'a>,
    sub: Option<&str>,
) -> (Vec<&'a Value>, Option<&'a Attribute>) {
    let leaf_def = match (found.def, sub) {
        (Some(def), Some(sub)) => def.sub(sub),
        (Some(def), None) if def.is_multi_complex() => def.sub("value"),
        (def, None) => def,
        (None, Some(_)) => None,
    };
    let mut out = Vec::new();
    let mut push = |v: &'a Value| match v {
        Value::Null => {}
        Value::Array(items) => out.extend(items.iter().filter(|i| !i.is_null())),
        other => out.push(other),
    };
    match found.value {
        None => {}
        Some(Value::Array(items)) => {
            for item in items {
                match (item, sub) {
                    (Value::Object(o), Some(sub)) => get_ci(o, sub).into_iter().for_each(&mut push),
                    (Value::Object(o), None) => get_ci(o, "value").into_iter().for_each(&mut push),
                    (_, Some(_)) => {}
                    (other, None) => push(other),
                }
            }
        }
        Some(Value::Object(o)) => match sub {
            Some(sub) => get_ci(o, sub).into_iter().for_each(&mut push),
            None => push(found.value.unwrap_or(&Value::Null)),
        },
        Some(other) if sub.is_none() => push(other),
        Some(_) => {}
    }
    (out, leaf_def)
}

/// Non-empty in the sense of `pr`.
pub(crate) fn is_present(v: &Value) -> bool {
    match v {
        Value::Null => false,
        Value::String(s) => !s.is_empty(),
        Value::Array(items) => items.iter().any(is_present),
        Value::Object(o) => o.values().any(is_present),
        Value::Bool(_) | Value::Number(_) => true,
    }
}

fn eval(filter: &Filter, scope: &Scope<'_>) -> Result<bool, ScimError> {
    match filter {
        Filter::And(items) => {
            for item in items {
                if !eval(item, scope)? {
                    return Ok(false);
                }
            }
            Ok(true)
        }
        Filter::Or(items) => {
            for item in items {
                if eval(item, scope)? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
        Filter::Not(inner) => Ok(!eval(inner, scope)?),
        Filter::Present(path) => {
            let found = lookup(scope, path);
            Ok(match path.sub_attr.as_deref() {
                None => found.value.is_some_and(is_present),
                Some(sub) => leaf_values(&found, Some(sub)).0.into_iter().any(is_present),
            })
        }
        Filter::Compare { path, op, value } => {
            let found = lookup(scope, path);
            let (values, def) = leaf_values(&found, path.sub_attr.as_deref());
            compare_any(*op, value, &values, def)
        }
        Filter::ValuePath { path, filter } => {
            let found = lookup(scope, path);
            let subs: &[Attribute] = found.def.map_or(&[], |d| d.sub_attributes.as_slice());
            let elements: Vec<&Value> = match found.value {
                Some(Value::Array(items)) => items.iter().collect(),
                Some(v @ Value::Object(_)) => vec![v],
                _ => Vec::new(),
            };
            for element in elements {
                if element_matches(filter, subs, element)? {
                    return Ok(true);
                }
            }
            Ok(false)
        }
    }
}

fn compare_any(
    op: CompareOp,
    literal: &CompValue,
    values: &[&Value],
    def: Option<&Attribute>,
) -> Result<bool, ScimError> {
    if op == CompareOp::Ne {
        return Ok(!compare_any(CompareOp::Eq, literal, values, def)?);
    }
    let ordering = matches!(
        op,
        CompareOp::Gt | CompareOp::Ge | CompareOp::Lt | CompareOp::Le
    );
    let kind = def.map(|d| d.kind);
    if ordering
        && (matches!(kind, Some(AttributeType::Boolean | AttributeType::Binary))
            || matches!(literal, CompValue::Bool(_)))
    {
        return Err(ScimError::invalid_filter(format!(
            "'{}' cannot order a boolean or binary attribute",
            op.as_str()
        )));
    }
    if *literal == CompValue::Null {
        let present = values.iter().any(|v| is_present(v));
        return Ok(op == CompareOp::Eq && !present);
    }
    let case_exact = def.is_some_and(|d| d.case_exact);
    let literal_time = match (kind, literal) {
        (Some(AttributeType::DateTime), CompValue::String(s)) => {
            Some(OffsetDateTime::parse(s, &Rfc3339).map_err(|_| {
                ScimError::invalid_filter(format!("\"{s}\" is not an RFC 3339 dateTime"))
            })?)
        }
        _ => None,
    };
    for value in values {
        if compare_one(op, literal, value, case_exact, literal_time) {
            return Ok(true);
        }
    }
    Ok(false)
}

fn compare_one(
    op: CompareOp,
    literal: &CompValue,
    value: &Value,
    case_exact: bool,
    literal_time: Option<OffsetDateTime>,
) -> bool {
    match (value, literal) {
        (Value::Bool(a), CompValue::Bool(b)) => op == CompareOp::Eq && a == b,
        (Value::Number(a), CompValue::Number(b)) => {
            let ord = match (a.as_i64(), b.as_i64()) {
                (Some(x), Some(y)) => Some(x.cmp(&y)),
                _ => a
                    .as_f64()
                    .zip(b.as_f64())
                    .and_then(|(x, y)| x.partial_cmp(&y)),
            };
            ord.is_some_and(|o| ordering_matches(op, o))
        }
        (Value::String(a), CompValue::String(b)) => {
            if let Some(lt) = literal_time
                && let Ok(at) = OffsetDateTime::parse(a, &Rfc3339)
                && !matches!(op, CompareOp::Co | CompareOp::Sw | CompareOp::Ew)
            {
                return ordering_matches(op, at.cmp(&lt));
            }
            let (a, b) = if case_exact {
                (a.clone(), b.clone())
            } else {
                (a.to_lowercase(), b.to_lowercase())
            };
            match op {
                CompareOp::Co => a.contains(&b),
                CompareOp::Sw => a.starts_with(&b),
                CompareOp::Ew => a.ends_with(&b),
                _ => ordering_matches(op, a.cmp(&b)),
            }
        }
        _ => false,
    }
}

fn ordering_matches(op: CompareOp, ord: Ordering) -> bool {
    match op {
        CompareOp::Eq => ord == Ordering::Equal,
        CompareOp::Ne => ord != Ordering::Equal,
        CompareOp::Gt => ord == Ordering::Greater,
        CompareOp::Ge => ord != Ordering::Less,
        CompareOp::Lt => ord == Ordering::Less,
        CompareOp::Le => ord != Ordering::Greater,
        CompareOp::Co | CompareOp::Sw | CompareOp::Ew => false,
    }
}
