//! SCIM schemas as data (RFC 7643 §2, §7): every attribute with its type,
//! plurality, mutability, `returned`, uniqueness and `caseExact`.
//!
//! The same definitions drive filter evaluation, validation, PATCH and
//! projection, and are served as the `/Schemas` and `/ResourceTypes`
//! documents ([`documents`]), so what the server says it does and what it
//! does cannot drift apart.

mod core;
pub mod documents;

use std::sync::LazyLock;

use serde::Serialize;

use crate::filter::AttrPath;

pub use self::core::{ENTERPRISE_USER_SCHEMA, GROUP_SCHEMA, USER_SCHEMA};

/// An attribute's data type (RFC 7643 §2.3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum AttributeType {
    /// A Unicode string.
    String,
    /// `true` or `false`.
    Boolean,
    /// A real number.
    Decimal,
    /// A whole number.
    Integer,
    /// An `xsd:dateTime` (RFC 3339) string.
    DateTime,
    /// Base64-encoded bytes.
    Binary,
    /// A URI.
    Reference,
    /// Sub-attributes.
    Complex,
}

/// Whether and how a client may change an attribute (RFC 7643 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Mutability {
    /// Set by the service provider only.
    ReadOnly,
    /// Read and written by the client.
    ReadWrite,
    /// Written once, then fixed.
    Immutable,
    /// Written, never returned.
    WriteOnly,
}

/// When an attribute is returned (RFC 7643 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Returned {
    /// Always, whatever `attributes` and `excludedAttributes` say.
    Always,
    /// Never.
    Never,
    /// Unless excluded, or unless `attributes` names others only.
    Default,
    /// Only when named in `attributes`.
    Request,
}

/// The scope in which an attribute's values are unique (RFC 7643 §7).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(rename_all = "camelCase")]
pub enum Uniqueness {
    /// No uniqueness.
    None,
    /// Unique within the service provider (for Gatehouse: the tenant).
    Server,
    /// Globally unique.
    Global,
}

/// One attribute definition (RFC 7643 §7).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Attribute {
    /// The name, in its canonical case.
    pub name: String,
    /// The data type.
    #[serde(rename = "type")]
    pub kind: AttributeType,
    /// Whether the attribute holds an array of values.
    pub multi_valued: bool,
    /// What it means.
    pub description: String,
    /// Whether a resource must have it.
    pub required: bool,
    /// Suggested values (not enforced: clients use their own).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub canonical_values: Vec<String>,
    /// Whether string comparisons are case-sensitive.
    pub case_exact: bool,
    /// Who may change it.
    pub mutability: Mutability,
    /// When it is returned.
    pub returned: Returned,
    /// The scope of uniqueness.
    pub uniqueness: Uniqueness,
    /// For references: what they may point to.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub reference_types: Vec<String>,
    /// For complex attributes: the sub-attributes.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sub_attributes: Vec<Attribute>,
}

impl Attribute {
    /// The sub-attribute with this name (case-insensitive).
    pub fn sub(&self, name: &str) -> Option<&Attribute> {
        find(&self.sub_attributes, name)
    }

    /// Whether this is a multi-valued complex attribute (emails, members…).
    pub fn is_multi_complex(&self) -> bool {
        self.multi_valued && self.kind == AttributeType::Complex
    }
}

/// Finds an attribute by name, case-insensitively.
pub fn find<'a>(attrs: &'a [Attribute], name: &str) -> Option<&'a Attribute> {
    attrs.iter().find(|a| a.name.eq_ignore_ascii_case(name))
}

/// A schema: an id (a URN) and its attributes.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Schema {
    /// The schema URI.
    pub id: String,
    /// A short name.
    pub name: String,
    /// What it describes.
    pub description: String,
    /// The attributes.
    pub attributes: Vec<Attribute>,
}

/// A schema extension of a resource type.
#[derive(Debug, Clone)]
pub struct SchemaExtension {
    /// The extension schema.
    pub schema: Schema,
    /// Whether every resource must carry it.
    pub required: bool,
}

/// A resource type (RFC 7643 §6): an endpoint, a core schema and extensions.
#[derive(Debug, Clone)]
pub struct ResourceType {
    /// `User` or `Group`.
    pub id: String,
    /// The name.
    pub name: String,
    /// The endpoint relative to the base URL, e.g. `/Users`.
    pub endpoint: String,
    /// What it is.
    pub description: String,
    /// The core schema.
    pub schema: Schema,
    /// The schema extensions.
    pub extensions: Vec<SchemaExtension>,
}

/// Where a resolved attribute lives in a resource.
#[derive(Debug, Clone, Copy)]
pub struct Resolved<'a> {
    /// The extension schema URI when the attribute lives under it;
    /// `None` for core and common attributes (top level).
    pub extension: Option<&'a str>,
    /// The attribute.
    pub attr: &'a Attribute,
    /// The sub-attribute, when the path names one.
    pub sub: Option<&'a Attribute>,
}

impl<'a> Resolved<'a> {
    /// The definition of what the path points at: the sub-attribute if
    /// named, else the attribute.
    pub fn leaf(&self) -> &'a Attribute {
        self.sub.unwrap_or(self.attr)
    }
}

static USER: LazyLock<ResourceType> = LazyLock::new(self::core::user_resource_type);
static GROUP: LazyLock<ResourceType> = LazyLock::new(self::core::group_resource_type);
static COMMON: LazyLock<Vec<Attribute>> = LazyLock::new(self::core::common_attributes);

impl ResourceType {
    /// The `User` resource type with the Enterprise User extension.
    pub fn user() -> &'static ResourceType {
        &USER
    }

    /// The `Group` resource type.
    pub fn group() -> &'static ResourceType {
        &GROUP
    }

    /// Every resource type this crate serves.
    pub fn all() -> [&'static ResourceType; 2] {
        [Self::user(), Self::group()]
    }

    /// The attributes every resource has: `schemas`, `id`, `externalId`
    /// and `meta` (RFC 7643 §3.1).
    pub fn common_attributes() -> &'static [Attribute] {
        &COMMON
    }

    /// Every schema of this type: the core schema, then the extensions.
    pub fn schemas(&self) -> impl Iterator<Item = &Schema> {
        std::iter::once(&self.schema).chain(self.extensions.iter().map(|e| &e.schema))
    }

    /// The extension with this schema URI (case-insensitive).
    pub fn extension(&self, urn: &str) -> Option<&SchemaExtension> {
        self.extensions
            .iter()
            .find(|e| e.schema.id.eq_ignore_ascii_case(urn))
    }

    /// The extension a path names as a whole, e.g.
    /// `urn:ietf:params:scim:schemas:extension:enterprise:2.0:User`
    /// (which parses as URI `…:2.0` and name `User`).
    pub fn extension_root(&self, path: &AttrPath) -> Option<&SchemaExtension> {
        let uri = path.uri.as_deref()?;
        if path.sub_attr.is_some() {
            return None;
        }
        self.extensions.iter().find(|e| {
            let id = &e.schema.id;
            id.len() == uri.len() + 1 + path.name.len()
                && id
                    .get(..uri.len())
                    .is_some_and(|p| p.eq_ignore_ascii_case(uri))
                && id
                    .get(uri.len() + 1..)
                    .is_some_and(|n| n.eq_ignore_ascii_case(&path.name))
        })
    }

    /// Resolves an attribute path against this type's schemas. A path
    /// without URI is looked up in the common and core attributes, then
    /// in the extensions (clients often omit the URN).
    pub fn resolve(&self, path: &AttrPath) -> Option<Resolved<'_>> {
        let (extension, attr) = match path.uri.as_deref() {
            Some(uri) if uri.eq_ignore_ascii_case(&self.schema.id) => (
                None,
                find(&self.schema.attributes, &path.name).or_else(|| find(&COMMON, &path.name))?,
            ),
            Some(uri) => {
                let ext = self.extension(uri)?;
                (
                    Some(ext.schema.id.as_str()),
                    find(&ext.schema.attributes, &path.name)?,
                )
            }
            None => match find(&COMMON, &path.name)
                .or_else(|| find(&self.schema.attributes, &path.name))
            {
                Some(attr) => (None, attr),
                None => self.extensions.iter().find_map(|e| {
                    find(&e.schema.attributes, &path.name).map(|a| (Some(e.schema.id.as_str()), a))
                })?,
            },
        };
        let sub = match &path.sub_attr {
            Some(name) => Some(attr.sub(name)?),
            None => None,
        };
        Some(Resolved {
            extension,
            attr,
            sub,
        })
    }
}

/// Looks a key up in a JSON object case-insensitively (exact match first).
pub(crate) fn get_ci<'v>(
    obj: &'v serde_json::Map<String, serde_json::Value>,
    name: &str,
) -> Option<&'v serde_json::Value> {
    obj.get(name).or_else(|| {
        obj.iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v)
    })
}

/// The key under which `name` is stored in `obj`, if any (case-insensitive).
pub(crate) fn key_ci(
    obj: &serde_json::Map<String, serde_json::Value>,
    name: &str,
) -> Option<String> {
    if obj.contains_key(name) {
        return Some(name.to_owned());
    }
    obj.keys().find(|k| k.eq_ignore_ascii_case(name)).cloned()
}
