//! The knowledge base: client runbooks and articles, per tenant.
//!
//! An article's title, body and tags are tenant data: they are sealed under
//! the tenant's data key and the store only ever sees [`StoredArticle`]s,
//! whose `sealed` bytes it cannot read. What stays in the clear is what the
//! store needs to scope, page and version them: the tenant, the id, the
//! [`Collection`] (a short slug such as `runbooks`), the version, who wrote
//! each version and when. Every edit keeps the version it replaces
//! ([`StoredArticleVersion`]), so an article's history is never lost.
//!
//! Full-text search lives in the `gatehouse-kb` crate: it indexes the
//! opened articles in memory, never on disk.

use std::fmt;

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::audit::AuditRecord;
use crate::error::DomainError;
use crate::id::{ArticleId, TenantId};
use crate::store::StoreResult;

/// The largest article body, in bytes.
pub const MAX_BODY_BYTES: usize = 256 * 1024;
/// The most tags one article carries.
pub const MAX_TAGS: usize = 32;

/// Audit actions of the knowledge base (each in the tenant's own log; the
/// details name ids, collections and versions, never titles or bodies).
pub mod action {
    /// An article was created.
    pub const ARTICLE_CREATED: &str = "kb.article.created";
    /// An article was edited (a new version).
    pub const ARTICLE_UPDATED: &str = "kb.article.updated";
    /// Articles were published from a template (`kb.publish`).
    pub const PUBLISHED: &str = "kb.published";
}

/// Checks a short lowercase name: 1–64 characters of `a-z`, `0-9`, `-`,
/// `_` and `.`, starting with a letter or digit.
fn short_name(field: &'static str, text: &str) -> Result<String, DomainError> {
    if text.is_empty() || text.len() > 64 {
        return Err(DomainError::invalid(
            field,
            "must be 1 to 64 characters long",
        ));
    }
    if !text.bytes().all(|b| {
        b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-' || b == b'_' || b == b'.'
    }) {
        return Err(DomainError::invalid(
            field,
            "may contain only lowercase letters a-z, digits, '-', '_' and '.'",
        ));
    }
    if !text.starts_with(|c: char| c.is_ascii_lowercase() || c.is_ascii_digit()) {
        return Err(DomainError::invalid(
            field,
            "must start with a letter or a digit",
        ));
    }
    Ok(text.to_owned())
}

/// A group of articles, such as `runbooks` or `known-issues`: 1–64
/// characters of `a-z`, `0-9`, `-`, `_` and `.`. Stored in the clear (it
/// names a kind of document, not its content), so lists can be filtered by
/// it in SQL.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, ToSchema)]
#[schema(value_type = String, pattern = "^[a-z0-9][a-z0-9._-]{0,63}$", example = "runbooks")]
pub struct Collection(String);

impl Collection {
    /// Validates and wraps a collection name.
    pub fn parse(text: &str) -> Result<Self, DomainError> {
        short_name("collection", text).map(Self)
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Collection {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Collection {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// A label on an article (`backup`, `m365`, `escalation`): the same rules
/// as a [`Collection`]. Sealed with the article, like its title.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, ToSchema)]
#[schema(value_type = String, pattern = "^[a-z0-9][a-z0-9._-]{0,63}$", example = "backup")]
pub struct Tag(String);

impl Tag {
    /// Validates and wraps a tag.
    pub fn parse(text: &str) -> Result<Self, DomainError> {
        short_name("tag", text).map(Self)
    }

    /// The tag as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for Tag {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        Self::parse(&String::deserialize(d)?).map_err(serde::de::Error::custom)
    }
}

/// What an article says: the part that is sealed under the tenant's key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ArticleContent {
    /// The title: 1–200 characters after trimming, no control characters.
    pub title: String,
    /// The body, in Markdown: at most [`MAX_BODY_BYTES`] bytes.
    pub body: String,
    /// Labels, sorted and without duplicates.
    #[serde(default)]
    pub tags: Vec<Tag>,
}

impl ArticleContent {
    /// Validates a title, body and tags; trims the title, sorts the tags
    /// and drops repeated ones.
    pub fn new(title: &str, body: &str, tags: Vec<Tag>) -> Result<Self, DomainError> {
        let title = title.trim();
        if title.is_empty() {
            return Err(DomainError::invalid("title", "must not be empty"));
        }
        if title.chars().count() > 200 {
            return Err(DomainError::invalid(
                "title",
                "must be at most 200 characters",
            ));
        }
        if title.chars().any(char::is_control) {
            return Err(DomainError::invalid(
                "title",
                "must not contain control characters",
            ));
        }
        if body.len() > MAX_BODY_BYTES {
            return Err(DomainError::invalid(
                "body",
                format!("must be at most {MAX_BODY_BYTES} bytes"),
            ));
        }
        if body.contains('\0') {
            return Err(DomainError::invalid(
                "body",
                "must not contain NUL characters",
            ));
        }
        let mut tags = tags;
        tags.sort();
        tags.dedup();
        if tags.len() > MAX_TAGS {
            return Err(DomainError::invalid(
                "tags",
                format!("at most {MAX_TAGS} tags per article"),
            ));
        }
        Ok(Self {
            title: title.to_owned(),
            body: body.to_owned(),
            tags,
        })
    }

    /// Checks a value that was deserialized or opened (deserialization
    /// alone checks the tags, not the title or body).
    pub fn check(self) -> Result<Self, DomainError> {
        Self::new(&self.title, &self.body, self.tags)
    }
}

/// An article as readers see it: its clear metadata and its opened content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Article {
    /// The article.
    pub id: ArticleId,
    /// Whose it is.
    pub tenant_id: TenantId,
    /// Its collection.
    pub collection: Collection,
    /// 1 for a new article, one more for every edit.
    pub version: u32,
    /// Who wrote the first version (an operator id, or `system`).
    pub created_by: String,
    /// Who wrote this version.
    pub author: String,
    /// When the first version was written.
    pub created_at: OffsetDateTime,
    /// When this version was written.
    pub updated_at: OffsetDateTime,
    /// What it says.
    pub content: ArticleContent,
}

/// An article as the store holds it: the content sealed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredArticle {
    /// The article.
    pub id: ArticleId,
    /// Whose it is.
    pub tenant_id: TenantId,
    /// Its collection.
    pub collection: Collection,
    /// 1 for a new article, one more for every edit.
    pub version: u32,
    /// Who wrote the first version.
    pub created_by: String,
    /// Who wrote this version.
    pub author: String,
    /// When the first version was written.
    pub created_at: OffsetDateTime,
    /// When this version was written.
    pub updated_at: OffsetDateTime,
    /// The [`ArticleContent`] as JSON, sealed under the tenant's key with
    /// [`seal_context`] as its context.
    pub sealed: Vec<u8>,
}

/// One earlier (or the current) version of an article, as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StoredArticleVersion {
    /// The article.
    pub article_id: ArticleId,
    /// Whose it is.
    pub tenant_id: TenantId,
    /// The version.
    pub version: u32,
    /// Who wrote it.
    pub author: String,
    /// When.
    pub at: OffsetDateTime,
    /// Its content, sealed as [`StoredArticle::sealed`] is.
    pub sealed: Vec<u8>,
}

/// The context an article version's content is sealed with: binding the id
/// and the version means sealed bytes copied to another article, or
/// replayed as another version, fail to open (the vault adds the tenant).
pub fn seal_context(article: ArticleId, version: u32) -> String {
    format!("kb-article:{article}:v{version}")
}

/// The id and version of an article: what the search index compares with
/// the store to learn what changed, without opening anything.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ArticleStamp {
    /// The article.
    pub id: ArticleId,
    /// Its current version.
    pub version: u32,
}

/// A page of a tenant's articles.
#[derive(Debug, Clone, Default)]
pub struct ArticleQuery {
    /// Only this collection's.
    pub collection: Option<Collection>,
    /// Start after this id (the previous page's last).
    pub after: Option<ArticleId>,
    /// At most this many.
    pub limit: u32,
}

/// A publication: the articles one `kb.publish` call created, remembered
/// under the call's idempotency key so a retry finds them instead of
/// writing them again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Publication {
    /// Whose.
    pub tenant_id: TenantId,
    /// The caller's idempotency key (1–200 characters).
    pub key: String,
    /// The collection published into.
    pub collection: Collection,
    /// The articles, in template order.
    pub articles: Vec<ArticleId>,
    /// When.
    pub at: OffsetDateTime,
}

/// What [`KbStore::publish_articles`] did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Published {
    /// The articles were written now.
    Created(Publication),
    /// A publication with this key existed already; nothing was written.
    Replayed(Publication),
}

impl Published {
    /// The publication, new or earlier.
    pub fn publication(&self) -> &Publication {
        match self {
            Self::Created(p) | Self::Replayed(p) => p,
        }
    }
}

/// Knowledge-base articles, their versions and publications.
///
/// Every method takes the tenant and puts it in every statement's `WHERE`
/// clause: another tenant's article is `NotFound`. Articles hang off the
/// tenant's data key, so deleting the tenant (destroying the key) removes
/// them in the same transaction.
#[async_trait]
pub trait KbStore: Send + Sync {
    /// Stores a new article (version 1) and its first history entry.
    /// `NotFound("tenant")` if the tenant's key is gone (deleted).
    async fn insert_article(
        &self,
        article: &StoredArticle,
        audit: &[AuditRecord],
    ) -> StoreResult<()>;
    /// Replaces the article with `article` (whose `version` is one more
    /// than the stored one, else `Stale`) and keeps the new version in the
    /// history; `NotFound` if there is no such article in the tenant.
    async fn update_article(
        &self,
        article: &StoredArticle,
        audit: &[AuditRecord],
    ) -> StoreResult<()>;
    /// One article of the tenant.
    async fn get_article(&self, tenant: TenantId, id: ArticleId) -> StoreResult<StoredArticle>;
    /// The tenant's articles in id (creation) order.
    async fn list_articles(
        &self,
        tenant: TenantId,
        query: &ArticleQuery,
    ) -> StoreResult<Vec<StoredArticle>>;
    /// Every version of one article, oldest first; `NotFound` if the
    /// tenant has no such article.
    async fn article_versions(
        &self,
        tenant: TenantId,
        id: ArticleId,
    ) -> StoreResult<Vec<StoredArticleVersion>>;
    /// Every article's id and version, in id order (nothing sealed is read).
    async fn article_stamps(&self, tenant: TenantId) -> StoreResult<Vec<ArticleStamp>>;
    /// The tenant's articles with these ids (those that exist), in id order.
    async fn articles_by_id(
        &self,
        tenant: TenantId,
        ids: &[ArticleId],
    ) -> StoreResult<Vec<StoredArticle>>;
    /// Stores `articles` (all new, of `publication`'s tenant and
    /// collection) and remembers `publication` under its key, in one
    /// transaction; if a publication with that key exists already, writes
    /// nothing and returns it ([`Published::Replayed`]).
    async fn publish_articles(
        &self,
        publication: &Publication,
        articles: &[StoredArticle],
        audit: &[AuditRecord],
    ) -> StoreResult<Published>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_are_checked() {
        assert!(Collection::parse("runbooks").is_ok());
        assert!(Collection::parse("known-issues.v2").is_ok());
        for bad in ["", "Runbooks", "-x", "a b", &"x".repeat(65)] {
            assert!(Collection::parse(bad).is_err(), "{bad:?}");
        }
        assert!(Tag::parse("m365").is_ok());
        assert!(Tag::parse("M365").is_err());
    }

    #[test]
    fn content_is_checked_and_tags_normalised() {
        let tags = vec![
            Tag::parse("b").unwrap(),
            Tag::parse("a").unwrap(),
            Tag::parse("b").unwrap(),
        ];
        let content = ArticleContent::new("  Backups  ", "text", tags).unwrap();
        assert_eq!(content.title, "Backups");
        assert_eq!(
            content.tags,
            vec![Tag::parse("a").unwrap(), Tag::parse("b").unwrap()]
        );
        assert!(ArticleContent::new(" ", "x", vec![]).is_err());
        assert!(ArticleContent::new("a\nb", "x", vec![]).is_err());
        assert!(ArticleContent::new("t", &"x".repeat(MAX_BODY_BYTES + 1), vec![]).is_err());
        let many = (0..=MAX_TAGS)
            .map(|i| Tag::parse(&format!("t{i}")).unwrap())
            .collect();
        assert!(ArticleContent::new("t", "x", many).is_err());
    }

    #[test]
    fn the_seal_context_binds_id_and_version() {
        let id = ArticleId::generate(OffsetDateTime::UNIX_EPOCH);
        assert_ne!(seal_context(id, 1), seal_context(id, 2));
        assert!(seal_context(id, 3).contains(&id.to_string()));
    }
}
