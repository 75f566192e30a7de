//! `attributes` and `excludedAttributes` (RFC 7644 §3.4.2.5, §3.9) with the
//! `returned` characteristic of each attribute (RFC 7643 §7):
//!
//! - `never` (password) is never returned;
//! - `always` (`id`, `schemas`) is returned whatever the request says;
//! - `default` is returned unless excluded, or unless `attributes` names
//!   other attributes only;
//! - `request` is returned only when named in `attributes`.
//!
//! A path with a sub-attribute (`name.givenName`) keeps or drops only that
//! sub-attribute. A whole extension may be named by its schema URI.

use serde_json::{Map, Value};

use crate::error::ScimError;
use crate::filter::AttrPath;
use crate::schema::{Attribute, ResourceType, Returned, find};

/// Which attributes to return.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Projection {
    attributes: Vec<AttrPath>,
    excluded: Vec<AttrPath>,
}

impl Projection {
    /// From parsed lists. When both are given, `attributes` wins (RFC 7644
    /// allows one or the other).
    pub fn new(attributes: Vec<AttrPath>, excluded: Vec<AttrPath>) -> Self {
        Self {
            attributes,
            excluded,
        }
    }

    /// From the comma-separated query parameters.
    pub fn parse(attributes: Option<&str>, excluded: Option<&str>) -> Result<Self, ScimError> {
        Ok(Self::new(
            attributes
                .map(Self::parse_list)
                .transpose()?
                .unwrap_or_default(),
            excluded
                .map(Self::parse_list)
                .transpose()?
                .unwrap_or_default(),
        ))
    }

    /// Parses a comma-separated list of attribute paths.
    pub fn parse_list(list: &str) -> Result<Vec<AttrPath>, ScimError> {
        list.split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| {
                AttrPath::parse(s).map_err(|e| {
                    ScimError::invalid_value(format!("invalid attribute \"{s}\": {e}"))
                })
            })
            .collect()
    }

    /// The requested attributes.
    pub fn attributes(&self) -> &[AttrPath] {
        &self.attributes
    }

    /// The excluded attributes.
    pub fn excluded(&self) -> &[AttrPath] {
        &self.excluded
    }

    /// The resource as it should be returned.
    pub fn apply(&self, rt: &ResourceType, resource: &Value) -> Value {
        let Some(obj) = resource.as_object() else {
            return resource.clone();
        };
        let mut out = Map::new();
        for (key, value) in obj {
            if key.eq_ignore_ascii_case("schemas") {
                out.insert(key.clone(), value.clone());
            } else if let Some(ext) = rt.extension(key) {
                let Some(ext_obj) = value.as_object() else {
                    continue;
                };
                let whole = self.attributes.iter().any(|p| {
                    rt.extension_root(p)
                        .is_some_and(|e| e.schema.id == ext.schema.id)
                });
                let mut kept = Map::new();
                for (k, v) in ext_obj {
                    let def = find(&ext.schema.attributes, k);
                    if let Some(v) = self.project_attr(&ext.schema.id, k, def, v, whole) {
                        kept.insert(k.clone(), v);
                    }
                }
                if !kept.is_empty() {
                    out.insert(key.clone(), Value::Object(kept));
                }
            } else {
                let def = find(ResourceType::common_attributes(), key)
                    .or_else(|| find(&rt.schema.attributes, key));
                if let Some(v) = self.project_attr(&rt.schema.id, key, def, value, false) {
                    out.insert(key.clone(), v);
                }
            }
        }
        Value::Object(out)
    }

    fn project_attr(
        &self,
        urn: &str,
        name: &str,
        def: Option<&Attribute>,
        value: &Value,
        whole: bool,
    ) -> Option<Value> {
        let returned = def.map_or(Returned::Default, |d| d.returned);
        let names = |p: &&AttrPath| {
            p.name.eq_ignore_ascii_case(name)
                && p.uri.as_deref().is_none_or(|u| u.eq_ignore_ascii_case(urn))
        };
        let value = strip_never(def, value);
        match returned {
            Returned::Never => None,
            Returned::Always => Some(value),
            _ if !self.attributes.is_empty() => {
                if whole {
                    return (returned != Returned::Request).then_some(value);
                }
                let requested: Vec<&AttrPath> = self.attributes.iter().filter(names).collect();
                if requested.is_empty() {
                    None
                } else if requested.iter().any(|p| p.sub_attr.is_none()) {
                    Some(value)
                } else {
                    let subs: Vec<&str> = requested
                        .iter()
                        .filter_map(|p| p.sub_attr.as_deref())
                        .collect();
                    keep_subs(def, &value, |s| {
                        subs.iter().any(|r| r.eq_ignore_ascii_case(s))
                    })
                }
            }
            Returned::Request => None,
            _ => {
                let excluded: Vec<&AttrPath> = self.excluded.iter().filter(names).collect();
                if excluded.iter().any(|p| p.sub_attr.is_none()) {
                    None
                } else if excluded.is_empty() {
                    Some(value)
                } else {
                    let subs: Vec<&str> = excluded
                        .iter()
                        .filter_map(|p| p.sub_attr.as_deref())
                        .collect();
                    keep_subs(def, &value, |s| {
                        !subs.iter().any(|r| r.eq_ignore_ascii_case(s))
                    })
                }
            }
        }
    }
}

/// Drops sub-attributes whose `returned` is `never`.
fn strip_never(def: Option<&Attribute>, value: &Value) -> Value {
    let Some(def) = def else { return value.clone() };
    if !def
        .sub_attributes
        .iter()
        .any(|s| s.returned == Returned::Never)
    {
        return value.clone();
    }
    keep_subs(Some(def), value, |s| {
        def.sub(s).is_none_or(|d| d.returned != Returned::Never)
    })
    .unwrap_or(Value::Null)
}

/// Keeps the sub-attributes `keep` accepts, plus those returned `always`,
/// in a complex value or in each element of a multi-valued one. `None`
/// when nothing is left.
fn keep_subs(def: Option<&Attribute>, value: &Value, keep: impl Fn(&str) -> bool) -> Option<Value> {
    let always = |s: &str| {
        def.and_then(|d| d.sub(s))
            .is_some_and(|d| d.returned == Returned::Always)
    };
    let filter_obj = |o: &Map<String, Value>| -> Option<Value> {
        let kept: Map<String, Value> = o
            .iter()
            .filter(|(k, _)| keep(k) || always(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        (!kept.is_empty()).then_some(Value::Object(kept))
    };
    match value {
        Value::Object(o) => filter_obj(o),
        Value::Array(items) => {
            let kept: Vec<Value> = items
                .iter()
                .filter_map(|i| {
                    if let Value::Object(o) = i {
                        filter_obj(o)
                    } else {
                        Some(i.clone())
                    }
                })
                .collect();
            (!kept.is_empty()).then_some(Value::Array(kept))
        }
        _ => None,
    }
}

/// Whether a path is `attributes`-style valid for this type (for callers
/// that want to reject unknown attributes in `attributes`).
pub fn is_known_path(rt: &ResourceType, path: &AttrPath) -> bool {
    rt.extension_root(path).is_some() || rt.resolve(path).is_some()
}
