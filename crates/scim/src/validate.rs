//! Checking a resource against its schemas on create (POST) and replace
//! (PUT), RFC 7643 §2 and RFC 7644 §3.3, §3.5.1.
//!
//! The result is the resource's **attributes document**: the attributes the
//! client manages, under their canonical names, with extension attributes
//! under the extension's URN. `schemas`, `id` and `meta` are left out (the
//! service provider sets them, see [`crate::meta::render`]), and so is
//! every other `readOnly` attribute (RFC 7644 §3.3: they are ignored).
//!
//! - a body that is not an object, or whose `schemas` lacks the core
//!   schema, is `invalidSyntax`;
//! - a value of the wrong type is `invalidValue`; the strings `"True"` and
//!   `"False"` are accepted for booleans (Entra sends them), a single
//!   value for a multi-valued attribute, and a bare string for a complex
//!   attribute with a `value` sub-attribute (`"manager": "id"`);
//! - a missing required attribute is `invalidValue`;
//! - on replace, changing an `immutable` attribute that has a value is
//!   `mutability`; leaving it out keeps it;
//! - more than one `primary: true` in a multi-valued attribute is
//!   `invalidValue` (RFC 7643 §2.4);
//! - unknown attributes are ignored (RFC 7644 §3.3 lets the provider
//!   ignore what it does not support), as are unknown sub-attributes.
//!
//! Uniqueness needs the store: [`unique_keys`] says which normalised
//! values it must check (a conflict is `409 uniqueness`).

use serde_json::{Map, Value};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::error::ScimError;
use crate::filter::AttrPath;
use crate::filter::eval::is_present;
use crate::schema::{Attribute, AttributeType, Mutability, ResourceType, Uniqueness, find, get_ci};

/// Whether a write creates a resource or replaces an existing one.
#[derive(Debug, Clone, Copy)]
pub enum Write<'a> {
    /// POST.
    Create,
    /// PUT (and the result of PATCH), with the current resource.
    Replace {
        /// The current resource (rendered or attributes document).
        existing: &'a Value,
    },
}

/// Validates a POST or PUT body and returns the attributes document.
pub fn prepare_write(
    rt: &ResourceType,
    input: &Value,
    mode: Write<'_>,
) -> Result<Value, ScimError> {
    let obj = input
        .as_object()
        .ok_or_else(|| ScimError::invalid_syntax("the resource must be a JSON object"))?;
    let declares_core = get_ci(obj, "schemas")
        .and_then(Value::as_array)
        .is_some_and(|s| {
            s.iter().any(|v| {
                v.as_str()
                    .is_some_and(|v| v.eq_ignore_ascii_case(&rt.schema.id))
            })
        });
    if !declares_core {
        return Err(ScimError::invalid_syntax(format!(
            "\"schemas\" must contain \"{}\"",
            rt.schema.id
        )));
    }
    let out = attributes_document(rt, obj)?;
    finish(rt, out, mode)
}

/// Validates an attributes document produced by PATCH (no `schemas` check).
pub(crate) fn finish(
    rt: &ResourceType,
    mut out: Map<String, Value>,
    mode: Write<'_>,
) -> Result<Value, ScimError> {
    if let Write::Replace { existing } = mode {
        keep_immutable(rt, &mut out, existing)?;
    }
    check_required(rt, &out)?;
    Ok(Value::Object(out))
}

/// Normalises every client-managed attribute of `obj`.
pub(crate) fn attributes_document(
    rt: &ResourceType,
    obj: &Map<String, Value>,
) -> Result<Map<String, Value>, ScimError> {
    let mut out = Map::new();
    for (key, value) in obj {
        if ["schemas", "id", "meta"]
            .iter()
            .any(|k| key.eq_ignore_ascii_case(k))
        {
            continue;
        }
        if let Some(ext) = rt.extension(key) {
            let ext_obj = match value {
                Value::Null => continue,
                Value::Object(o) => o,
                _ => {
                    return Err(ScimError::invalid_value(format!(
                        "\"{}\" must be an object",
                        ext.schema.id
                    )));
                }
            };
            for (k, v) in ext_obj {
                if let Some(def) = find(&ext.schema.attributes, k) {
                    set(&mut out, Some(&ext.schema.id), def, v)?;
                }
            }
            continue;
        }
        if key.contains(':') {
            // A fully qualified name, e.g. "urn:…:enterprise:2.0:User:department".
            if let Ok(path) = AttrPath::parse(key)
                && path.sub_attr.is_none()
                && let Some(resolved) = rt.resolve(&path)
            {
                set(&mut out, resolved.extension, resolved.attr, value)?;
            }
            continue;
        }
        let def = find(&rt.schema.attributes, key)
            .or_else(|| find(ResourceType::common_attributes(), key));
        if let Some(def) = def {
            set(&mut out, None, def, value)?;
        }
    }
    Ok(out)
}

/// Coerces one attribute and stores it under its canonical name (readOnly
/// attributes are dropped; a null or empty value unassigns).
fn set(
    out: &mut Map<String, Value>,
    extension: Option<&str>,
    def: &Attribute,
    value: &Value,
) -> Result<(), ScimError> {
    if def.mutability == Mutability::ReadOnly {
        return Ok(());
    }
    let coerced = coerce(def, value, &def.name)?;
    let container = match extension {
        Some(ext) => {
            let slot = out
                .entry(ext.to_owned())
                .or_insert_with(|| Value::Object(Map::new()));
            match slot.as_object_mut() {
                Some(o) => o,
                None => return Ok(()),
            }
        }
        None => out,
    };
    match coerced {
        Some(v) => {
            container.insert(def.name.clone(), v);
        }
        None => {
            container.remove(&def.name);
        }
    }
    if let Some(ext) = extension
        && out
            .get(ext)
            .and_then(Value::as_object)
            .is_some_and(Map::is_empty)
    {
        out.remove(ext);
    }
    Ok(())
}

/// Coerces a value to an attribute's type. `None` means unassigned.
pub(crate) fn coerce(
    def: &Attribute,
    value: &Value,
    path: &str,
) -> Result<Option<Value>, ScimError> {
    if value.is_null() {
        return Ok(None);
    }
    if !def.multi_valued {
        if let Value::Array(items) = value {
            // A one-element array for a single value is a common client slip.
            return match items.as_slice() {
                [] => Ok(None),
                [one] => coerce_single(def, one, path),
                _ => Err(ScimError::invalid_value(format!(
                    "\"{path}\" is single-valued, not an array"
                ))),
            };
        }
        return coerce_single(def, value, path);
    }
    let items: Vec<&Value> = match value {
        Value::Array(items) => items.iter().collect(),
        other => vec![other],
    };
    // Duplicates are dropped, first one kept. `serde_json` serialises
    // objects with sorted keys, so equal values have equal texts: one
    // set lookup per value instead of comparing each with all before it
    // (a group of 10,000 members would take 50 million comparisons).
    let mut out = Vec::with_capacity(items.len());
    let mut seen = std::collections::HashSet::with_capacity(items.len());
    for item in items {
        if let Some(v) = coerce_single(def, item, path)?
            && seen.insert(v.to_string())
        {
            out.push(v);
        }
    }
    let primaries = out
        .iter()
        .filter(|v| v.get("primary").and_then(Value::as_bool) == Some(true))
        .count();
    if primaries > 1 {
        return Err(ScimError::invalid_value(format!(
            "\"{path}\" has more than one primary value"
        )));
    }
    Ok((!out.is_empty()).then_some(Value::Array(out)))
}

fn coerce_single(def: &Attribute, value: &Value, path: &str) -> Result<Option<Value>, ScimError> {
    let wrong = |what: &str| ScimError::invalid_value(format!("\"{path}\" must be {what}"));
    Ok(match (def.kind, value) {
        (_, Value::Null) => None,
        (
            AttributeType::String | AttributeType::Reference | AttributeType::Binary,
            Value::String(_),
        ) => Some(value.clone()),
        (AttributeType::String | AttributeType::Reference | AttributeType::Binary, _) => {
            return Err(wrong("a string"));
        }
        (AttributeType::Boolean, Value::Bool(_)) => Some(value.clone()),
        (AttributeType::Boolean, Value::String(s)) if s.eq_ignore_ascii_case("true") => {
            Some(Value::Bool(true))
        }
        (AttributeType::Boolean, Value::String(s)) if s.eq_ignore_ascii_case("false") => {
            Some(Value::Bool(false))
        }
        (AttributeType::Boolean, _) => return Err(wrong("a boolean")),
        (AttributeType::Integer, Value::Number(n)) if n.is_i64() || n.is_u64() => {
            Some(value.clone())
        }
        (AttributeType::Integer, _) => return Err(wrong("an integer")),
        (AttributeType::Decimal, Value::Number(_)) => Some(value.clone()),
        (AttributeType::Decimal, _) => return Err(wrong("a number")),
        (AttributeType::DateTime, Value::String(s))
            if OffsetDateTime::parse(s, &Rfc3339).is_ok() =>
        {
            Some(value.clone())
        }
        (AttributeType::DateTime, _) => return Err(wrong("an RFC 3339 dateTime")),
        (AttributeType::Complex, Value::Object(o)) => {
            let mut out = Map::new();
            for (k, v) in o {
                let Some(sub) = def.sub(k) else { continue };
                if sub.mutability == Mutability::ReadOnly {
                    continue;
                }
                if let Some(v) = coerce_single(sub, v, &format!("{path}.{}", sub.name))? {
                    out.insert(sub.name.clone(), v);
                }
            }
            (!out.is_empty()).then_some(Value::Object(out))
        }
        (AttributeType::Complex, Value::String(_)) if def.sub("value").is_some() => {
            let mut out = Map::new();
            out.insert("value".into(), value.clone());
            Some(Value::Object(out))
        }
        (AttributeType::Complex, _) => return Err(wrong("an object")),
    })
}

/// The value of a top-level or extension attribute in a resource.
fn attr_value<'v>(
    obj: &'v Map<String, Value>,
    extension: Option<&str>,
    name: &str,
) -> Option<&'v Value> {
    let container = match extension {
        Some(ext) => get_ci(obj, ext)?.as_object()?,
        None => obj,
    };
    get_ci(container, name).filter(|v| is_present(v))
}

fn keep_immutable(
    rt: &ResourceType,
    out: &mut Map<String, Value>,
    existing: &Value,
) -> Result<(), ScimError> {
    let Some(existing) = existing.as_object() else {
        return Ok(());
    };
    let scopes = std::iter::once((None, &rt.schema)).chain(
        rt.extensions
            .iter()
            .map(|e| (Some(e.schema.id.as_str()), &e.schema)),
    );
    for (ext, schema) in scopes {
        for def in schema
            .attributes
            .iter()
            .filter(|a| a.mutability == Mutability::Immutable)
        {
            let Some(old) = attr_value(existing, ext, &def.name) else {
                continue;
            };
            match attr_value(out, ext, &def.name) {
                Some(new) if new != old => {
                    return Err(ScimError::mutability(format!(
                        "\"{}\" is immutable",
                        def.name
                    )));
                }
                Some(_) => {}
                None => {
                    let old = old.clone();
                    set(out, ext, def, &old)?;
                }
            }
        }
    }
    Ok(())
}

fn check_required(rt: &ResourceType, out: &Map<String, Value>) -> Result<(), ScimError> {
    let missing = |ext: Option<&str>, attrs: &[Attribute]| {
        attrs
            .iter()
            .filter(|a| a.required && a.mutability != Mutability::ReadOnly)
            .find(|a| attr_value(out, ext, &a.name).is_none())
            .map(|a| ScimError::invalid_value(format!("\"{}\" is required", a.name)))
    };
    if let Some(e) = missing(None, &rt.schema.attributes) {
        return Err(e);
    }
    for ext in &rt.extensions {
        let present = get_ci(out, &ext.schema.id).is_some();
        if ext.required && !present {
            return Err(ScimError::invalid_value(format!(
                "the extension \"{}\" is required",
                ext.schema.id
            )));
        }
        if present && let Some(e) = missing(Some(&ext.schema.id), &ext.schema.attributes) {
            return Err(e);
        }
    }
    Ok(())
}

/// A value the store must keep unique (RFC 7643 `uniqueness`): the
/// attribute's canonical path and the value, lower-cased unless the
/// attribute is `caseExact`. A conflict is `409 uniqueness`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct UniqueKey {
    /// `userName`, or `urn:…:attr` for an extension attribute.
    pub attribute: String,
    /// The normalised value.
    pub value: String,
    /// `server` (per tenant) or `global`.
    pub scope: Uniqueness,
}

/// The uniqueness keys of a resource (`id` excluded: the store assigns it).
pub fn unique_keys(rt: &ResourceType, resource: &Value) -> Vec<UniqueKey> {
    let Some(obj) = resource.as_object() else {
        return Vec::new();
    };
    let scopes = std::iter::once((None, &rt.schema)).chain(
        rt.extensions
            .iter()
            .map(|e| (Some(e.schema.id.as_str()), &e.schema)),
    );
    let mut keys = Vec::new();
    for (ext, schema) in scopes {
        for def in schema
            .attributes
            .iter()
            .filter(|a| a.uniqueness != Uniqueness::None && !a.multi_valued)
        {
            let Some(Value::String(v)) = attr_value(obj, ext, &def.name) else {
                continue;
            };
            keys.push(UniqueKey {
                attribute: match ext {
                    Some(ext) => format!("{ext}:{}", def.name),
                    None => def.name.clone(),
                },
                value: if def.case_exact {
                    v.clone()
                } else {
                    v.to_lowercase()
                },
                scope: def.uniqueness,
            });
        }
    }
    keys
}
