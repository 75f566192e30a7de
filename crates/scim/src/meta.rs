//! Resource metadata (RFC 7643 §3.1 `meta`) and versions as ETags
//! (RFC 7644 §3.14).
//!
//! The store keeps a version number per resource, incremented on every
//! change; the ETag is the weak tag `W/"<version>"`. `If-Match` and
//! `If-None-Match` compare weakly, as RFC 7232 §2.3.2 allows for weak tags.

use serde_json::{Map, Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::schema::ResourceType;

/// The weak ETag of a version: `W/"7"`.
pub fn weak_etag(version: u64) -> String {
    format!("W/\"{version}\"")
}

/// The version in an ETag (`W/"7"` or `"7"`), if it is one of ours.
pub fn etag_version(etag: &str) -> Option<u64> {
    let tag = etag.trim();
    let tag = tag.strip_prefix("W/").unwrap_or(tag);
    tag.strip_prefix('"')?.strip_suffix('"')?.parse().ok()
}

/// Whether an `If-Match` or `If-None-Match` header value (`*` or a
/// comma-separated list of ETags) names the current version.
pub fn etag_list_matches(header: &str, current_version: u64) -> bool {
    header
        .split(',')
        .map(str::trim)
        .any(|t| t == "*" || etag_version(t) == Some(current_version))
}

/// The `meta` of a stored resource.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Meta {
    /// `User` or `Group`.
    pub resource_type: String,
    /// When it was created.
    pub created: OffsetDateTime,
    /// When it last changed.
    pub last_modified: OffsetDateTime,
    /// Its URI.
    pub location: String,
    /// Its version; rendered as a weak ETag.
    pub version: u64,
}

impl Meta {
    /// The `meta` object.
    pub fn to_json(&self) -> Value {
        json!({
            "resourceType": self.resource_type,
            "created": format_time(self.created),
            "lastModified": format_time(self.last_modified),
            "location": self.location,
            "version": weak_etag(self.version),
        })
    }
}

fn format_time(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

/// The location of a resource: `{base_url}{endpoint}/{id}`.
pub fn location(base_url: &str, rt: &ResourceType, id: &str) -> String {
    format!("{}{}/{id}", base_url.trim_end_matches('/'), rt.endpoint)
}

/// A stored resource as returned: the client's attributes, then `schemas`
/// (the core schema and each extension present), `id` and `meta`, which
/// are the service provider's.
pub fn render(rt: &ResourceType, id: &str, attributes: &Value, meta: &Meta) -> Value {
    let mut out = attributes.as_object().cloned().unwrap_or_default();
    out.retain(|k, _| {
        !k.eq_ignore_ascii_case("id")
            && !k.eq_ignore_ascii_case("meta")
            && !k.eq_ignore_ascii_case("schemas")
    });
    out.insert("schemas".into(), Value::Array(schemas_of(rt, &out)));
    out.insert("id".into(), Value::String(id.into()));
    out.insert("meta".into(), meta.to_json());
    Value::Object(out)
}

/// The `schemas` of a resource: the core schema, then each extension
/// that has a key in it.
pub(crate) fn schemas_of(rt: &ResourceType, obj: &Map<String, Value>) -> Vec<Value> {
    std::iter::once(Value::String(rt.schema.id.clone()))
        .chain(
            rt.extensions
                .iter()
                .filter(|e| obj.keys().any(|k| k.eq_ignore_ascii_case(&e.schema.id)))
                .map(|e| Value::String(e.schema.id.clone())),
        )
        .collect()
}
