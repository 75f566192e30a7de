//! The SCIM 2.0 protocol core (RFC 7643, RFC 7644), with no storage and no
//! HTTP: the pieces a SCIM service provider (and a SCIM client) needs,
//! as pure functions over `serde_json::Value` resources.
//!
//! - [`schema`]: User, Group and the Enterprise User extension as data,
//!   and the `/Schemas`, `/ResourceTypes` and `/ServiceProviderConfig`
//!   documents made from them;
//! - [`filter`]: the filter grammar, parsed into a typed AST, and its
//!   evaluation with SCIM's matching rules;
//! - [`validate`]: create and replace bodies checked against the schema;
//! - [`patch`]: PATCH operations applied to a resource;
//! - [`project`]: `attributes` / `excludedAttributes`;
//! - [`list`]: sorting, paging, list responses and `.search` bodies;
//! - [`meta`]: `meta`, versions and ETags;
//! - [`backend`]: the storage port the HTTP layer drives, and
//!   [`backend::Service`], the request logic on top of it.
//!
//! Every error is a [`ScimError`]: an HTTP status, a `scimType` and a
//! detail, rendered as the RFC 7644 §3.12 error body. Nothing here panics
//! on client input. What each part implements, section by section, is in
//! `docs/scim.md`.

pub mod backend;
pub mod error;
pub mod filter;
pub mod list;
pub mod meta;
pub mod patch;
pub mod project;
pub mod schema;
pub mod validate;

pub use error::{ScimError, ScimType};
pub use filter::{AttrPath, CompValue, CompareOp, Filter, FilterError, PatchPath};
pub use list::{ListQuery, ListResponse, Page, SortOrder};
pub use patch::{PatchOp, PatchOperation, PatchRequest};
pub use project::Projection;
pub use schema::ResourceType;
pub use validate::{UniqueKey, Write};
