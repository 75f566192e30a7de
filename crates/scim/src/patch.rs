//! PATCH (RFC 7644 §3.5.2): `add`, `remove` and `replace`, with or without
//! a path, value filters in paths (`members[value eq "…"]`,
//! `emails[type eq "work"].value`), applied to a resource held as JSON.
//!
//! Operations apply in order to a working copy; the result is validated
//! like a PUT against the current resource, so the whole request applies
//! or nothing does. The result is the new attributes document (see
//! [`crate::validate`]); the HTTP layer renders it and answers 200.
//!
//! Errors: a path the schema does not know is `invalidPath`; a filter that
//! selects nothing is `noTarget` (so is `remove` without a path); writing a
//! `readOnly` attribute, or an `immutable` one that has a value, is
//! `mutability`; a value of the wrong type is `invalidValue`.
//!
//! What Microsoft Entra ID and other clients send and RFC 7644 does not
//! say, accepted here: operation names in any case (`"Replace"`); a
//! no-path `value` whose keys are paths (`"name.givenName"`,
//! `"urn:…:enterprise:2.0:User:department"`); booleans as the strings
//! `"True"`/`"False"`; a bare id for a complex attribute (`"manager":
//! "id"`); `remove` of `members` with a `value` array, removing just those
//! members; and `add` to `emails[type eq "work"].value` when no work e-mail
//! exists yet, which creates it (`replace` answers `noTarget`, as the RFC
//! says).

use serde_json::{Map, Value};

use crate::error::ScimError;
use crate::filter::eval::{element_matches, is_present};
use crate::filter::{AttrPath, CompValue, CompareOp, Filter, PatchPath};
use crate::schema::{Attribute, Mutability, ResourceType, get_ci, key_ci};
use crate::validate::{self, Write};

/// The schema URI of a PATCH body.
pub const PATCH_OP_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// A PATCH operation's verb.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PatchOp {
    /// `add`.
    Add,
    /// `remove`.
    Remove,
    /// `replace`.
    Replace,
}

impl PatchOp {
    /// Parses an operation name, case-insensitively.
    pub fn parse(s: &str) -> Option<Self> {
        if s.eq_ignore_ascii_case("add") {
            Some(Self::Add)
        } else if s.eq_ignore_ascii_case("remove") {
            Some(Self::Remove)
        } else if s.eq_ignore_ascii_case("replace") {
            Some(Self::Replace)
        } else {
            None
        }
    }
}

/// One operation.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchOperation {
    /// The verb.
    pub op: PatchOp,
    /// The target; `None` means the resource itself.
    pub path: Option<PatchPath>,
    /// The value (required for `add` and `replace`).
    pub value: Option<Value>,
}

/// A parsed PATCH body.
#[derive(Debug, Clone, PartialEq)]
pub struct PatchRequest {
    /// The operations, in order.
    pub operations: Vec<PatchOperation>,
}

impl PatchRequest {
    /// Parses a `PatchOp` body.
    pub fn from_json(body: &Value) -> Result<Self, ScimError> {
        let obj = body
            .as_object()
            .ok_or_else(|| ScimError::invalid_syntax("a PATCH body must be a JSON object"))?;
        let has_schema = get_ci(obj, "schemas")
            .and_then(Value::as_array)
            .is_some_and(|s| {
                s.iter().any(|v| {
                    v.as_str()
                        .is_some_and(|v| v.eq_ignore_ascii_case(PATCH_OP_SCHEMA))
                })
            });
        if !has_schema {
            return Err(ScimError::invalid_syntax(format!(
                "\"schemas\" must contain \"{PATCH_OP_SCHEMA}\""
            )));
        }
        let ops = get_ci(obj, "Operations")
            .and_then(Value::as_array)
            .ok_or_else(|| ScimError::invalid_syntax("\"Operations\" must be an array"))?;
        if ops.is_empty() {
            return Err(ScimError::invalid_syntax("\"Operations\" is empty"));
        }
        let mut operations = Vec::with_capacity(ops.len());
        for (i, op) in ops.iter().enumerate() {
            let op_obj = op.as_object().ok_or_else(|| {
                ScimError::invalid_syntax(format!("operation {i} is not an object"))
            })?;
            let name = get_ci(op_obj, "op")
                .and_then(Value::as_str)
                .unwrap_or_default();
            let verb = PatchOp::parse(name).ok_or_else(|| {
                ScimError::invalid_syntax(format!(
                    "operation {i}: \"op\" must be add, remove or replace, not \"{name}\""
                ))
            })?;
            let path = match get_ci(op_obj, "path") {
                None | Some(Value::Null) => None,
                Some(Value::String(p)) => Some(PatchPath::parse(p).map_err(|e| {
                    ScimError::invalid_path(format!("operation {i}: invalid path: {e}"))
                })?),
                Some(_) => {
                    return Err(ScimError::invalid_path(format!(
                        "operation {i}: \"path\" must be a string"
                    )));
                }
            };
            let value = get_ci(op_obj, "value").filter(|v| !v.is_null()).cloned();
            if verb != PatchOp::Remove && value.is_none() {
                return Err(ScimError::invalid_value(format!(
                    "operation {i}: {name} needs a \"value\""
                )));
            }
            operations.push(PatchOperation {
                op: verb,
                path,
                value,
            });
        }
        Ok(Self { operations })
    }
}

/// Applies a PATCH to the current resource (rendered or attributes
/// document) and returns the new, validated attributes document.
pub fn apply_patch(
    rt: &ResourceType,
    current: &Value,
    request: &PatchRequest,
) -> Result<Value, ScimError> {
    let mut doc = current.as_object().cloned().unwrap_or_default();
    doc.retain(|k, _| {
        !["schemas", "id", "meta"]
            .iter()
            .any(|r| k.eq_ignore_ascii_case(r))
    });
    for op in &request.operations {
        apply_operation(rt, &mut doc, op)?;
    }
    let out = validate::attributes_document(rt, &doc)?;
    validate::finish(rt, out, Write::Replace { existing: current })
}

fn apply_operation(
    rt: &ResourceType,
    doc: &mut Map<String, Value>,
    op: &PatchOperation,
) -> Result<(), ScimError> {
    if let Some(path) = &op.path {
        return apply_path(rt, doc, op.op, path, op.value.as_ref());
    }
    if op.op == PatchOp::Remove {
        return Err(ScimError::no_target("remove needs a path"));
    }
    let Some(Value::Object(value)) = &op.value else {
        return Err(ScimError::invalid_value(
            "without a path, \"value\" must be an object of attributes",
        ));
    };
    for (key, v) in value {
        if ["schemas", "id", "meta"]
            .iter()
            .any(|r| key.eq_ignore_ascii_case(r))
        {
            continue;
        }
        if let Some(ext) = rt.extension(key) {
            let Value::Object(ext_value) = v else {
                return Err(ScimError::invalid_value(format!(
                    "\"{}\" must be an object",
                    ext.schema.id
                )));
            };
            for (k, ev) in ext_value {
                let mut path = parse_key(k)?;
                path.attr.uri = Some(ext.schema.id.clone());
                apply_path(rt, doc, op.op, &path, Some(ev))?;
            }
            continue;
        }
        apply_path(rt, doc, op.op, &parse_key(key)?, Some(v))?;
    }
    Ok(())
}

fn parse_key(key: &str) -> Result<PatchPath, ScimError> {
    PatchPath::parse(key)
        .map_err(|e| ScimError::invalid_path(format!("invalid attribute \"{key}\": {e}")))
}

fn apply_path(
    rt: &ResourceType,
    doc: &mut Map<String, Value>,
    op: PatchOp,
    path: &PatchPath,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    if path.filter.is_none()
        && let Some(ext) = rt.extension_root(&path.attr)
    {
        let key = key_ci(doc, &ext.schema.id).unwrap_or_else(|| ext.schema.id.clone());
        return match op {
            PatchOp::Remove => {
                doc.remove(&key);
                Ok(())
            }
            PatchOp::Add | PatchOp::Replace => {
                let Some(Value::Object(v)) = value else {
                    return Err(ScimError::invalid_value(format!(
                        "\"{}\" needs an object value",
                        ext.schema.id
                    )));
                };
                for (k, ev) in v {
                    let mut sub = parse_key(k)?;
                    sub.attr.uri = Some(ext.schema.id.clone());
                    apply_path(rt, doc, op, &sub, Some(ev))?;
                }
                Ok(())
            }
        };
    }
    let resolved = rt.resolve(&path.attr).ok_or_else(|| {
        ScimError::invalid_path(format!("\"{path}\" is not an attribute of {}", rt.name))
    })?;
    let def = resolved.attr;
    let target = match &path.sub_attr {
        Some(s) => def.sub(s).ok_or_else(|| {
            ScimError::invalid_path(format!("\"{path}\": {} has no sub-attribute {s}", def.name))
        })?,
        None => resolved.leaf(),
    };
    if def.mutability == Mutability::ReadOnly || target.mutability == Mutability::ReadOnly {
        return Err(ScimError::mutability(format!("\"{path}\" is readOnly")));
    }

    let container: &mut Map<String, Value> = match resolved.extension {
        Some(ext) => {
            let key = key_ci(doc, ext).unwrap_or_else(|| ext.to_owned());
            if op == PatchOp::Remove && !doc.contains_key(&key) {
                return Ok(());
            }
            let slot = doc.entry(key).or_insert_with(|| Value::Object(Map::new()));
            if !slot.is_object() {
                *slot = Value::Object(Map::new());
            }
            match slot.as_object_mut() {
                Some(o) => o,
                None => return Ok(()),
            }
        }
        None => doc,
    };
    let key = key_ci(container, &def.name).unwrap_or_else(|| def.name.clone());
    if target.mutability == Mutability::Immutable {
        // An immutable value may only be added where there is none yet:
        // new values of a multi-valued attribute, or a first value.
        let has_value = container.get(&key).is_some_and(is_present);
        let selects_existing = path.attr.sub_attr.is_some()
            || path.sub_attr.is_some()
            || path.filter.is_some()
            || !def.multi_valued;
        if op != PatchOp::Add || (has_value && selects_existing) {
            return Err(ScimError::mutability(format!("\"{path}\" is immutable")));
        }
    }

    match &path.filter {
        None => match &path.attr.sub_attr {
            Some(sub) => apply_sub_everywhere(container, &key, def, sub, op, value),
            None => apply_attr(container, &key, def, op, value),
        },
        Some(filter) => apply_filtered(
            container,
            &key,
            def,
            filter,
            path.sub_attr.as_deref(),
            op,
            value,
            path,
        ),
    }
}

/// `add`/`replace`/`remove` of a whole attribute.
fn apply_attr(
    container: &mut Map<String, Value>,
    key: &str,
    def: &Attribute,
    op: PatchOp,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    match op {
        PatchOp::Remove => {
            match (value, def.multi_valued, container.get_mut(key)) {
                // Entra: {"op":"remove","path":"members","value":[{"value":"id"}]}
                (Some(v), true, Some(Value::Array(items))) => {
                    let gone: Vec<Value> = as_items(v);
                    items.retain(|item| !gone.iter().any(|g| same_value(item, g)));
                    if items.is_empty() {
                        container.remove(key);
                    }
                }
                _ => {
                    container.remove(key);
                }
            }
            Ok(())
        }
        PatchOp::Add | PatchOp::Replace => {
            let value = value.ok_or_else(|| ScimError::invalid_value("a value is required"))?;
            if def.multi_valued {
                let new_items = as_items(value);
                let mut items = match (op, container.remove(key)) {
                    (PatchOp::Add, Some(Value::Array(items))) => items,
                    _ => Vec::new(),
                };
                for item in new_items {
                    if is_primary(&item) {
                        clear_primary(&mut items);
                    }
                    if !items.iter().any(|i| same_value(i, &item)) {
                        items.push(item);
                    }
                }
                container.insert(key.to_owned(), Value::Array(items));
            } else if def.kind == crate::schema::AttributeType::Complex {
                let new = as_object(value);
                match (new, container.get_mut(key)) {
                    (Some(new), Some(Value::Object(old))) => {
                        for (k, v) in new {
                            let k = key_ci(old, &k).unwrap_or(k);
                            old.insert(k, v);
                        }
                    }
                    _ => {
                        container.insert(key.to_owned(), value.clone());
                    }
                }
            } else {
                container.insert(key.to_owned(), value.clone());
            }
            Ok(())
        }
    }
}

/// `name.givenName` (complex) or `emails.type` (every value).
fn apply_sub_everywhere(
    container: &mut Map<String, Value>,
    key: &str,
    def: &Attribute,
    sub: &str,
    op: PatchOp,
    value: Option<&Value>,
) -> Result<(), ScimError> {
    let sub_name = def
        .sub(sub)
        .map_or_else(|| sub.to_owned(), |s| s.name.clone());
    let set = |obj: &mut Map<String, Value>| {
        let k = key_ci(obj, &sub_name).unwrap_or_else(|| sub_name.clone());
        match (op, value) {
            (PatchOp::Remove, _) => {
                obj.remove(&k);
            }
            (_, Some(v)) => {
                obj.insert(k, v.clone());
            }
            (_, None) => {}
        }
    };
    match container.get_mut(key) {
        Some(Value::Array(items)) if def.multi_valued => items
            .iter_mut()
            .filter_map(Value::as_object_mut)
            .for_each(set),
        Some(Value::Object(obj)) => set(obj),
        _ if op == PatchOp::Remove => {}
        _ => {
            let mut obj = Map::new();
            set(&mut obj);
            let v = Value::Object(obj);
            container.insert(
                key.to_owned(),
                if def.multi_valued {
                    Value::Array(vec![v])
                } else {
                    v
                },
            );
        }
    }
    Ok(())
}

#[expect(
    clippy::too_many_arguments,
    reason = "one call site; the arguments are the parts of one path"
)]
fn apply_filtered(
    container: &mut Map<String, Value>,
    key: &str,
    def: &Attribute,
    filter: &Filter,
    sub: Option<&str>,
    op: PatchOp,
    value: Option<&Value>,
    path: &PatchPath,
) -> Result<(), ScimError> {
    if !def.is_multi_complex() {
        return Err(ScimError::invalid_path(format!(
            "\"{path}\": a value filter needs a multi-valued complex attribute"
        )));
    }
    let mut items = match container.remove(key) {
        Some(Value::Array(items)) => items,
        Some(other) => vec![other],
        None => Vec::new(),
    };
    let mut hits = Vec::new();
    for (i, item) in items.iter().enumerate() {
        if element_matches(filter, &def.sub_attributes, item)? {
            hits.push(i);
        }
    }
    let sub_name = sub.map(|s| def.sub(s).map_or_else(|| s.to_owned(), |d| d.name.clone()));
    let result = if hits.is_empty() {
        match (op, &sub_name, value, equalities(filter)) {
            (PatchOp::Add, Some(s), Some(v), Some(mut element)) => {
                element.insert(s.clone(), v.clone());
                items.push(Value::Object(element));
                Ok(())
            }
            _ => Err(ScimError::no_target(format!(
                "no value of \"{}\" matches \"{path}\"",
                def.name
            ))),
        }
    } else {
        let mut made_primary = None;
        for &i in &hits {
            let Some(item) = items.get_mut(i) else {
                continue;
            };
            match (op, &sub_name) {
                (PatchOp::Remove, None) => *item = Value::Null,
                (PatchOp::Remove, Some(s)) => {
                    if let Some(o) = item.as_object_mut() {
                        let k = key_ci(o, s).unwrap_or_else(|| s.clone());
                        o.remove(&k);
                    }
                }
                (_, Some(s)) => {
                    if let (Some(o), Some(v)) = (item.as_object_mut(), value) {
                        let k = key_ci(o, s).unwrap_or_else(|| s.clone());
                        o.insert(k, v.clone());
                    }
                }
                (PatchOp::Replace, None) => {
                    if let Some(v) = value {
                        *item = v.clone();
                    }
                }
                (PatchOp::Add, None) => {
                    if let (Some(o), Some(Value::Object(v))) = (item.as_object_mut(), value) {
                        for (k, nv) in v {
                            let k = key_ci(o, k).unwrap_or_else(|| k.clone());
                            o.insert(k, nv.clone());
                        }
                    }
                }
            }
            if is_primary(item) {
                made_primary = Some(i);
            }
        }
        if let Some(p) = made_primary {
            for (i, item) in items.iter_mut().enumerate() {
                if i != p
                    && let Some(o) = item.as_object_mut()
                    && o.get("primary").and_then(Value::as_bool) == Some(true)
                {
                    o.insert("primary".into(), Value::Bool(false));
                }
            }
        }
        items.retain(|v| !v.is_null());
        Ok(())
    };
    if !items.is_empty() {
        container.insert(key.to_owned(), Value::Array(items));
    }
    result
}

/// The element a filter of equalities describes (`type eq "work"`, or
/// several joined by `and`), for creating it when an `add` finds none.
fn equalities(filter: &Filter) -> Option<Map<String, Value>> {
    let mut out = Map::new();
    let mut add = |f: &Filter| -> Option<()> {
        let Filter::Compare {
            path:
                AttrPath {
                    uri: None,
                    name,
                    sub_attr: None,
                },
            op: CompareOp::Eq,
            value,
        } = f
        else {
            return None;
        };
        let v = match value {
            CompValue::String(s) => Value::String(s.clone()),
            CompValue::Bool(b) => Value::Bool(*b),
            CompValue::Number(n) => Value::Number(n.clone()),
            CompValue::Null => return None,
        };
        out.insert(name.clone(), v);
        Some(())
    };
    match filter {
        Filter::And(items) => {
            for item in items {
                add(item)?;
            }
        }
        other => add(other)?,
    }
    Some(out)
}

fn as_items(value: &Value) -> Vec<Value> {
    match value {
        Value::Array(items) => items.clone(),
        other => vec![other.clone()],
    }
}

fn as_object(value: &Value) -> Option<Map<String, Value>> {
    match value {
        Value::Object(o) => Some(o.clone()),
        Value::String(_) => {
            let mut o = Map::new();
            o.insert("value".into(), value.clone());
            Some(o)
        }
        _ => None,
    }
}

fn is_primary(item: &Value) -> bool {
    item.as_object()
        .and_then(|o| get_ci(o, "primary"))
        .is_some_and(|p| {
            p.as_bool() == Some(true) || p.as_str().is_some_and(|s| s.eq_ignore_ascii_case("true"))
        })
}

fn clear_primary(items: &mut [Value]) {
    for item in items {
        if let Some(o) = item.as_object_mut()
            && let Some(k) = key_ci(o, "primary")
        {
            o.insert(k, Value::Bool(false));
        }
    }
}

/// Two values of a multi-valued attribute are the same value when they
/// are equal, or when both are complex with the same `value` (and the same
/// `type`, when both have one).
fn same_value(a: &Value, b: &Value) -> bool {
    if a == b {
        return true;
    }
    let (Some(a), Some(b)) = (a.as_object(), b.as_object()) else {
        return match (a.as_object(), b) {
            (Some(a), Value::String(_)) => get_ci(a, "value") == Some(b),
            _ => false,
        };
    };
    let value_eq = matches!((get_ci(a, "value"), get_ci(b, "value")), (Some(x), Some(y)) if x == y);
    let type_eq = match (get_ci(a, "type"), get_ci(b, "type")) {
        (Some(x), Some(y)) => x == y,
        _ => true,
    };
    value_eq && type_eq
}
