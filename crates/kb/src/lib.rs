//! Gatehouse's knowledge base engine: per-tenant full-text search over
//! client runbooks and articles, and the templates `kb.publish` renders.
//!
//! - [`index`]: one tenant's tantivy index, in memory only (the articles it
//!   holds were opened with the tenant's key; nothing reaches a disk), with
//!   ranked, highlighted, filtered and paged search.
//! - [`cache`]: the indexes of the tenants searched lately, bounded in
//!   number and idle time.
//! - [`template`]: Markdown templates rendered into articles, and the
//!   built-in client runbook.
//!
//! Storage and sealing are not here: the articles' model and storage trait
//! are in `gatehouse_core::kb`, the services that seal, store and keep the
//! indexes in step are in the server. Keeping tantivy in this crate keeps
//! its compile time and API out of everything else.

pub mod cache;
pub mod index;
pub mod template;

pub use cache::{CacheLimits, IndexCache, SharedIndex};
pub use index::{SearchHit, SearchRequest, SearchResults, TenantIndex};

/// What went wrong in the knowledge base engine.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KbError {
    /// The search query (or its paging) is not valid; the message says why.
    #[error("invalid query: {0}")]
    BadQuery(String),
    /// A template does not render; the message names the line.
    #[error("template: {0}")]
    Template(String),
    /// The index failed (an internal error).
    #[error("search index: {0}")]
    Index(String),
}
