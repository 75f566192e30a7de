//! The knowledge base's operations, with authorization: reading and
//! searching needs `ReadKnowledge` (every role), writing `WriteKnowledge`
//! (technicians, leads and admins; auditors only read). The work itself is
//! [`crate::kb::KbService`]'s.

use gatehouse_core::id::ArticleId;
use gatehouse_core::kb::{Article, ArticleContent, ArticleQuery, Collection};
use gatehouse_kb::{SearchRequest, SearchResults};

use super::{Actor, App, Page, TenantRef, check_limit, page};
use crate::authz::Permission;
use crate::error::AppError;

/// Which articles to list.
#[derive(Debug, Clone, Default)]
pub struct ArticleFilter {
    /// Only this collection's.
    pub collection: Option<Collection>,
    /// Start after this article (the previous page's `next`).
    pub after: Option<ArticleId>,
    /// At most this many (1 to [`super::MAX_PAGE`]).
    pub limit: u32,
}

/// A page of articles.
pub type ArticlePage = Page<Article, ArticleId>;

impl App {
    /// A page of `tenant`'s articles in creation order, opened.
    pub async fn kb_articles(
        &self,
        actor: &Actor,
        tenant: &TenantRef,
        filter: ArticleFilter,
    ) -> Result<ArticlePage, AppError> {
        let tenant = self
            .tenant_for(actor, Permission::ReadKnowledge, tenant)
            .await?;
        check_limit(filter.limit)?;
        let query = ArticleQuery {
            collection: filter.collection,
            after: filter.after,
            limit: filter.limit + 1,
        };
        let articles = self.kb.list(&tenant, &query).await?;
        Ok(page(articles, filter.limit, |a| a.id))
    }

    /// One article of `tenant`; another tenant's article is not found.
    pub async fn kb_article(
        &self,
        actor: &Actor,
        tenant: &TenantRef,
        id: ArticleId,
    ) -> Result<Article, AppError> {
        let tenant = self
            .tenant_for(actor, Permission::ReadKnowledge, tenant)
            .await?;
        self.kb.get(&tenant, id).await
    }

    /// Every version of an article, oldest first.
    pub async fn kb_article_versions(
        &self,
        actor: &Actor,
        tenant: &TenantRef,
        id: ArticleId,
    ) -> Result<Vec<Article>, AppError> {
        let tenant = self
            .tenant_for(actor, Permission::ReadKnowledge, tenant)
            .await?;
        self.kb.versions(&tenant, id).await
    }

    /// Writes a new article; the actor is its author.
    pub async fn create_kb_article(
        &self,
        actor: &Actor,
        tenant: &TenantRef,
        collection: Collection,
        content: ArticleContent,
    ) -> Result<Article, AppError> {
        let tenant = self
            .tenant_for(actor, Permission::WriteKnowledge, tenant)
            .await?;
        let article = self
            .kb
            .create(&actor.provenance(self.now()), &tenant, collection, content)
            .await?;
        tracing::info!(tenant = %tenant.id, article = %article.id, "article created");
        Ok(article)
    }

    /// Edits an article whose current version is `expected`; the old
    /// version stays in its history.
    pub async fn update_kb_article(
        &self,
        actor: &Actor,
        tenant: &TenantRef,
        id: ArticleId,
        expected: u32,
        collection: Option<Collection>,
        content: ArticleContent,
    ) -> Result<Article, AppError> {
        let tenant = self
            .tenant_for(actor, Permission::WriteKnowledge, tenant)
            .await?;
        let article = self
            .kb
            .update(
                &actor.provenance(self.now()),
                &tenant,
                id,
                expected,
                collection,
                content,
            )
            .await?;
        tracing::info!(tenant = %tenant.id, article = %id, version = article.version, "article edited");
        Ok(article)
    }

    /// Full-text search over `tenant`'s articles.
    pub async fn search_kb(
        &self,
        actor: &Actor,
        tenant: &TenantRef,
        request: SearchRequest,
    ) -> Result<SearchResults, AppError> {
        let tenant = self
            .tenant_for(actor, Permission::ReadKnowledge, tenant)
            .await?;
        self.kb.search(&tenant, request).await
    }
}
