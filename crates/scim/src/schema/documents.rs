//! The discovery documents (RFC 7644 §4): `/ServiceProviderConfig`,
//! `/ResourceTypes` and `/Schemas`, generated from the schema data.
//!
//! `base_url` is the tenant's SCIM base, e.g.
//! `https://gatehouse.example/scim/v2/acme`, without a trailing slash; it
//! only fills `meta.location`.

use serde_json::{Value, json};

use super::{ResourceType, Schema};
use crate::list::{ListResponse, MAX_RESULTS};

/// The schema URI of `/ServiceProviderConfig`.
pub const SERVICE_PROVIDER_CONFIG_SCHEMA: &str =
    "urn:ietf:params:scim:schemas:core:2.0:ServiceProviderConfig";
/// The schema URI of a resource type document.
pub const RESOURCE_TYPE_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:ResourceType";
/// The schema URI of a schema document.
pub const SCHEMA_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Schema";

/// What the service provider supports, for `/ServiceProviderConfig`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceProviderConfig {
    /// A link to the human-readable documentation.
    pub documentation_uri: Option<String>,
    /// The most resources one list or search returns (`filter.maxResults`).
    pub max_results: usize,
    /// Whether ETags are supported.
    pub etag: bool,
}

impl Default for ServiceProviderConfig {
    fn default() -> Self {
        Self {
            documentation_uri: None,
            max_results: MAX_RESULTS,
            etag: true,
        }
    }
}

impl ServiceProviderConfig {
    /// The `/ServiceProviderConfig` document. PATCH, filtering and sorting
    /// are supported; bulk and password changes are not.
    pub fn to_json(&self, base_url: &str) -> Value {
        let mut doc = json!({
            "schemas": [SERVICE_PROVIDER_CONFIG_SCHEMA],
            "patch": { "supported": true },
            "bulk": { "supported": false, "maxOperations": 0, "maxPayloadSize": 0 },
            "filter": { "supported": true, "maxResults": self.max_results },
            "changePassword": { "supported": false },
            "sort": { "supported": true },
            "etag": { "supported": self.etag },
            "authenticationSchemes": [{
                "type": "oauthbearertoken",
                "name": "OAuth Bearer Token",
                "description": "Authentication with a tenant-scoped bearer token in the Authorization header.",
                "specUri": "https://www.rfc-editor.org/info/rfc6750",
                "primary": true,
            }],
            "meta": {
                "resourceType": "ServiceProviderConfig",
                "location": format!("{base_url}/ServiceProviderConfig"),
            },
        });
        if let (Some(uri), Some(obj)) = (&self.documentation_uri, doc.as_object_mut()) {
            obj.insert("documentationUri".into(), Value::String(uri.clone()));
        }
        doc
    }
}

/// One `/Schemas/{id}` document.
pub fn schema_document(schema: &Schema, base_url: &str) -> Value {
    let mut doc = serde_json::to_value(schema).unwrap_or(Value::Null);
    if let Some(obj) = doc.as_object_mut() {
        obj.insert("schemas".into(), json!([SCHEMA_SCHEMA]));
        obj.insert(
            "meta".into(),
            json!({ "resourceType": "Schema", "location": format!("{base_url}/Schemas/{}", schema.id) }),
        );
    }
    doc
}

/// Every schema of the given resource types, once each, in order.
pub fn all_schemas(types: &[&'static ResourceType]) -> Vec<&'static Schema> {
    let mut out: Vec<&'static Schema> = Vec::new();
    for rt in types {
        for s in rt.schemas() {
            if !out.iter().any(|o| o.id == s.id) {
                out.push(s);
            }
        }
    }
    out
}

/// The `/Schemas` list response for the built-in resource types.
pub fn schemas_list(base_url: &str) -> ListResponse {
    let docs: Vec<Value> = all_schemas(&ResourceType::all())
        .into_iter()
        .map(|s| schema_document(s, base_url))
        .collect();
    ListResponse::complete(docs)
}

/// The `/Schemas/{id}` document, if the id names a known schema.
pub fn find_schema_document(id: &str, base_url: &str) -> Option<Value> {
    all_schemas(&ResourceType::all())
        .into_iter()
        .find(|s| s.id.eq_ignore_ascii_case(id))
        .map(|s| schema_document(s, base_url))
}

/// One `/ResourceTypes/{id}` document.
pub fn resource_type_document(rt: &ResourceType, base_url: &str) -> Value {
    let extensions: Vec<Value> = rt
        .extensions
        .iter()
        .map(|e| json!({ "schema": e.schema.id, "required": e.required }))
        .collect();
    json!({
        "schemas": [RESOURCE_TYPE_SCHEMA],
        "id": rt.id,
        "name": rt.name,
        "endpoint": rt.endpoint,
        "description": rt.description,
        "schema": rt.schema.id,
        "schemaExtensions": extensions,
        "meta": { "resourceType": "ResourceType", "location": format!("{base_url}/ResourceTypes/{}", rt.id) },
    })
}

/// The `/ResourceTypes` list response.
pub fn resource_types_list(base_url: &str) -> ListResponse {
    ListResponse::complete(
        ResourceType::all()
            .into_iter()
            .map(|rt| resource_type_document(rt, base_url))
            .collect(),
    )
}

/// The `/ResourceTypes/{id}` document, if the id names a known type.
pub fn find_resource_type_document(id: &str, base_url: &str) -> Option<Value> {
    ResourceType::all()
        .into_iter()
        .find(|rt| rt.id.eq_ignore_ascii_case(id))
        .map(|rt| resource_type_document(rt, base_url))
}
