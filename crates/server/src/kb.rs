//! The knowledge base's service: sealing articles under the tenant's key,
//! storing them with their history, publishing templates, and keeping each
//! tenant's in-memory search index in step with the store.
//!
//! Shared by the API (through [`crate::App`], which checks authorization
//! first) and by the `kb.publish` workflow action ([`crate::kb_action`]),
//! which runs as Gatehouse itself.
//!
//! **Why the index is in memory.** Titles and bodies are sealed at rest; an
//! index on disk would hold their words in the clear and defeat that. So
//! each tenant's tantivy index is built in RAM from the articles opened with
//! the tenant's key, the first time the tenant is searched, and dropped when
//! idle or when the cache is full ([`gatehouse_kb::IndexCache`]).
//!
//! **How it stays current.** Before every search the index compares the
//! versions it holds with the store's (`article_stamps`: ids and versions,
//! nothing sealed) and opens and re-indexes only what changed. That also
//! covers writes made by another node sharing a PostgreSQL database. Writes
//! through this service update an index already in memory at once.

use std::collections::{BTreeMap, HashSet};
use std::sync::Arc;

use gatehouse_core::audit::{AuditRecord, Provenance};
use gatehouse_core::clock::Clock;
use gatehouse_core::id::{ArticleId, TenantId};
use gatehouse_core::kb::{
    Article, ArticleContent, ArticleStamp, Collection, Publication, Published, StoredArticle,
    action, seal_context,
};
use gatehouse_core::store::{Store, StoreError};
use gatehouse_core::tenant::{Tenant, TenantState};
use gatehouse_kb::cache::lock;
use gatehouse_kb::{CacheLimits, IndexCache, KbError, SearchRequest, SearchResults, SharedIndex};
use gatehouse_vault::Keyring;
use serde_json::json;

use crate::error::AppError;

/// What a publication made.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublishOutcome {
    /// The publication (new, or the earlier one with the same key).
    pub publication: Publication,
    /// Whether an earlier call with the same key had published it already.
    pub replayed: bool,
}

/// The knowledge base over a store and a keyring.
#[derive(Debug)]
pub struct KbService {
    store: Arc<dyn Store>,
    keyring: Arc<Keyring>,
    clock: Arc<dyn Clock>,
    indexes: IndexCache,
}

impl From<KbError> for AppError {
    fn from(err: KbError) -> Self {
        match err {
            KbError::BadQuery(message) => AppError::BadRequest {
                status: axum::http::StatusCode::BAD_REQUEST,
                code: "invalid_query",
                message,
            },
            KbError::Template(message) => AppError::Invalid(format!("template: {message}")),
            KbError::Index(message) => AppError::Internal(message),
        }
    }
}

/// Maps a store error on an article: `NotFound("tenant")` means the
/// tenant was deleted meanwhile.
fn article_error(tenant: &Tenant, id: Option<ArticleId>) -> impl FnOnce(StoreError) -> AppError {
    let slug = tenant.slug.clone();
    move |err| match (err, id) {
        (StoreError::NotFound("tenant"), _) => AppError::Conflict {
            code: "tenant_deleted",
            message: format!("tenant `{slug}` is deleted"),
        },
        (StoreError::NotFound(_), Some(id)) => AppError::NotFound {
            code: "article_not_found",
            message: format!("no article `{id}`"),
        },
        (other, _) => other.into(),
    }
}

fn joined(err: tokio::task::JoinError) -> AppError {
    AppError::Internal(format!("a search index task failed: {err}"))
}

impl KbService {
    /// The service, with the default bounds on in-memory indexes.
    pub fn new(store: Arc<dyn Store>, keyring: Arc<Keyring>, clock: Arc<dyn Clock>) -> Self {
        Self::with_limits(store, keyring, clock, CacheLimits::default())
    }

    /// The service, holding at most `limits` worth of indexes.
    pub fn with_limits(
        store: Arc<dyn Store>,
        keyring: Arc<Keyring>,
        clock: Arc<dyn Clock>,
        limits: CacheLimits,
    ) -> Self {
        Self {
            store,
            keyring,
            clock,
            indexes: IndexCache::new(limits),
        }
    }

    /// How many tenants' indexes are in memory.
    pub fn indexes_held(&self) -> usize {
        self.indexes.len()
    }

    /// Drops `tenant`'s index (its tenant was deleted).
    pub fn forget(&self, tenant: TenantId) {
        if let Err(err) = self.indexes.evict(tenant) {
            tracing::error!(%tenant, %err, "could not drop a tenant's search index");
        }
    }

    /// Drops the indexes not searched for the configured idle time.
    pub fn evict_idle(&self) -> Result<usize, AppError> {
        Ok(self.indexes.evict_idle(self.clock.now())?)
    }

    /// Until `shutdown` completes, drops idle indexes every `every`, so an
    /// idle tenant's plaintext does not wait for the next search to leave
    /// memory. Errors are logged; there is nothing to finish on shutdown.
    pub async fn sweep(
        &self,
        every: std::time::Duration,
        shutdown: impl std::future::Future<Output = ()>,
    ) {
        let mut ticks = tokio::time::interval(every);
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        tokio::pin!(shutdown);
        loop {
            tokio::select! {
                _ = &mut shutdown => return,
                _ = ticks.tick() => match self.evict_idle() {
                    Ok(0) => {}
                    Ok(dropped) => tracing::debug!(dropped, "idle search indexes dropped"),
                    Err(err) => tracing::error!(%err, "dropping idle search indexes failed"),
                },
            }
        }
    }

    async fn seal(
        &self,
        tenant: TenantId,
        id: ArticleId,
        version: u32,
        content: &ArticleContent,
    ) -> Result<Vec<u8>, AppError> {
        let plain = zeroize::Zeroizing::new(
            serde_json::to_vec(content)
                .map_err(|e| AppError::Internal(format!("encoding an article: {e}")))?,
        );
        Ok(self
            .keyring
            .seal(tenant, &seal_context(id, version), &plain)
            .await?)
    }

    /// Opens a stored article with its tenant's key.
    pub async fn open(&self, stored: StoredArticle) -> Result<Article, AppError> {
        let plain = self
            .keyring
            .open(
                stored.tenant_id,
                &seal_context(stored.id, stored.version),
                &stored.sealed,
            )
            .await?;
        let content = serde_json::from_slice::<ArticleContent>(&plain)
            .map_err(|e| e.to_string())
            .and_then(|c| c.check().map_err(|e| e.to_string()))
            .map_err(|e| AppError::Internal(format!("article {} does not open: {e}", stored.id)))?;
        Ok(Article {
            id: stored.id,
            tenant_id: stored.tenant_id,
            collection: stored.collection,
            version: stored.version,
            created_by: stored.created_by,
            author: stored.author,
            created_at: stored.created_at,
            updated_at: stored.updated_at,
            content,
        })
    }

    /// One article of `tenant`.
    pub async fn get(&self, tenant: &Tenant, id: ArticleId) -> Result<Article, AppError> {
        let stored = self
            .store
            .get_article(tenant.id, id)
            .await
            .map_err(article_error(tenant, Some(id)))?;
        self.open(stored).await
    }

    /// A new article, written by `by.actor`.
    pub async fn create(
        &self,
        by: &Provenance,
        tenant: &Tenant,
        collection: Collection,
        content: ArticleContent,
    ) -> Result<Article, AppError> {
        refuse_deleted(tenant)?;
        let now = by.at;
        let id = ArticleId::generate(now);
        let stored = StoredArticle {
            id,
            tenant_id: tenant.id,
            collection,
            version: 1,
            created_by: by.actor.clone(),
            author: by.actor.clone(),
            created_at: now,
            updated_at: now,
            sealed: self.seal(tenant.id, id, 1, &content).await?,
        };
        let audit = by.record(
            Some(tenant.id),
            action::ARTICLE_CREATED,
            id,
            json!({"collection": stored.collection.as_str(), "version": 1}),
        );
        self.store
            .insert_article(&stored, &[audit])
            .await
            .map_err(article_error(tenant, None))?;
        let article = self.open(stored).await?;
        self.index_written(tenant.id, std::slice::from_ref(&article))
            .await;
        Ok(article)
    }

    /// Replaces article `id`'s content (and collection, if given) with a
    /// new version, if its current version is still `expected`
    /// (`edit_conflict` otherwise). The old version stays in the history.
    pub async fn update(
        &self,
        by: &Provenance,
        tenant: &Tenant,
        id: ArticleId,
        expected: u32,
        collection: Option<Collection>,
        content: ArticleContent,
    ) -> Result<Article, AppError> {
        refuse_deleted(tenant)?;
        let current = self
            .store
            .get_article(tenant.id, id)
            .await
            .map_err(article_error(tenant, Some(id)))?;
        if current.version != expected {
            return Err(StoreError::Stale("article").into());
        }
        let version = expected
            .checked_add(1)
            .ok_or_else(|| AppError::Invalid("the article has too many versions".into()))?;
        let stored = StoredArticle {
            collection: collection.unwrap_or(current.collection),
            version,
            author: by.actor.clone(),
            updated_at: by.at,
            sealed: self.seal(tenant.id, id, version, &content).await?,
            ..current
        };
        let audit = by.record(
            Some(tenant.id),
            action::ARTICLE_UPDATED,
            id,
            json!({"collection": stored.collection.as_str(), "version": version}),
        );
        self.store
            .update_article(&stored, &[audit])
            .await
            .map_err(article_error(tenant, Some(id)))?;
        let article = self.open(stored).await?;
        self.index_written(tenant.id, std::slice::from_ref(&article))
            .await;
        Ok(article)
    }

    /// Every version of article `id`, oldest first, opened.
    pub async fn versions(&self, tenant: &Tenant, id: ArticleId) -> Result<Vec<Article>, AppError> {
        let current = self
            .store
            .get_article(tenant.id, id)
            .await
            .map_err(article_error(tenant, Some(id)))?;
        let history = self
            .store
            .article_versions(tenant.id, id)
            .await
            .map_err(article_error(tenant, Some(id)))?;
        let mut opened = Vec::with_capacity(history.len());
        for version in history {
            opened.push(
                self.open(StoredArticle {
                    version: version.version,
                    author: version.author,
                    updated_at: version.at,
                    sealed: version.sealed,
                    ..current.clone()
                })
                .await?,
            );
        }
        Ok(opened)
    }

    /// A page of `tenant`'s articles, opened.
    pub async fn list(
        &self,
        tenant: &Tenant,
        query: &gatehouse_core::kb::ArticleQuery,
    ) -> Result<Vec<Article>, AppError> {
        let stored = self.store.list_articles(tenant.id, query).await?;
        let mut opened = Vec::with_capacity(stored.len());
        for article in stored {
            opened.push(self.open(article).await?);
        }
        Ok(opened)
    }

    /// Searches `tenant`'s articles, bringing its index up to date first.
    pub async fn search(
        &self,
        tenant: &Tenant,
        request: SearchRequest,
    ) -> Result<SearchResults, AppError> {
        if tenant.state == TenantState::Deleted {
            self.forget(tenant.id);
            return Err(deleted(tenant));
        }
        let index = self.synced(tenant.id).await?;
        let results = tokio::task::spawn_blocking(move || lock(&index)?.search(&request))
            .await
            .map_err(joined)??;
        Ok(results)
    }

    /// `tenant`'s index, with every article the store holds at the version
    /// it holds, and nothing else.
    async fn synced(&self, tenant: TenantId) -> Result<SharedIndex, AppError> {
        let index = self.indexes.get(tenant, self.clock.now())?;
        let stamps = self.store.article_stamps(tenant).await?;
        let (changed, removed) = {
            let held = lock(&index)?;
            diff(held.versions(), &stamps)
        };
        if changed.is_empty() && removed.is_empty() {
            return Ok(index);
        }
        let stored = self.store.articles_by_id(tenant, &changed).await?;
        let mut opened = Vec::with_capacity(stored.len());
        for article in stored {
            opened.push(self.open(article).await?);
        }
        tracing::debug!(%tenant, changed = opened.len(), removed = removed.len(), "search index updated");
        let target = index.clone();
        tokio::task::spawn_blocking(move || lock(&target)?.apply(&opened, &removed))
            .await
            .map_err(joined)??;
        Ok(index)
    }

    /// Puts freshly written articles into `tenant`'s index, if it is in
    /// memory. A failure is logged, not returned: the write is committed,
    /// and the next search's sync indexes it anyway.
    async fn index_written(&self, tenant: TenantId, articles: &[Article]) {
        let index = match self.indexes.peek(tenant) {
            Ok(Some(index)) => index,
            Ok(None) => return,
            Err(err) => {
                tracing::warn!(%tenant, %err, "the search index is not updated now; the next search will");
                return;
            }
        };
        let articles = articles.to_vec();
        let done = tokio::task::spawn_blocking(move || lock(&index)?.apply(&articles, &[])).await;
        match done {
            Ok(Ok(())) => {}
            Ok(Err(err)) => {
                tracing::warn!(%tenant, %err, "the search index is not updated now; the next search will")
            }
            Err(err) => {
                tracing::warn!(%tenant, %err, "the search index is not updated now; the next search will")
            }
        }
    }

    /// Renders the template `template` with `tenant`'s details into articles
    /// of `collection`, once per `key`: a second call with the same key
    /// writes nothing and returns the first call's articles.
    pub async fn publish(
        &self,
        by: &Provenance,
        tenant: &Tenant,
        key: &str,
        collection: Collection,
        template: &str,
        docs_organization: Option<&str>,
    ) -> Result<PublishOutcome, AppError> {
        refuse_deleted(tenant)?;
        if key.is_empty() || key.chars().count() > 200 {
            return Err(AppError::Invalid(
                "invalid idempotency key: must be 1 to 200 characters".into(),
            ));
        }
        let text = gatehouse_kb::template::builtin(template).ok_or_else(|| {
            AppError::Invalid(format!(
                "invalid from_template: no template `{template}` (built in: {})",
                gatehouse_kb::template::BUILTIN_NAMES.join(", ")
            ))
        })?;
        let vars = template_vars(tenant, docs_organization, by.at);
        let contents = gatehouse_kb::template::render(text, &vars)?;
        let mut stored = Vec::with_capacity(contents.len());
        let mut ids = Vec::with_capacity(contents.len());
        for content in &contents {
            let id = ArticleId::generate(by.at);
            ids.push(id);
            stored.push(StoredArticle {
                id,
                tenant_id: tenant.id,
                collection: collection.clone(),
                version: 1,
                created_by: by.actor.clone(),
                author: by.actor.clone(),
                created_at: by.at,
                updated_at: by.at,
                sealed: self.seal(tenant.id, id, 1, content).await?,
            });
        }
        let publication = Publication {
            tenant_id: tenant.id,
            key: key.to_owned(),
            collection: collection.clone(),
            articles: ids,
            at: by.at,
        };
        let mut audit: Vec<AuditRecord> = stored
            .iter()
            .map(|a| {
                by.record(
                    Some(tenant.id),
                    action::ARTICLE_CREATED,
                    a.id,
                    json!({"collection": collection.as_str(), "version": 1}),
                )
            })
            .collect();
        audit.push(by.record(
            Some(tenant.id),
            action::PUBLISHED,
            collection.as_str(),
            json!({
                "collection": collection.as_str(),
                "template": template,
                "articles": publication.articles.iter().map(ToString::to_string).collect::<Vec<_>>(),
            }),
        ));
        let published = self
            .store
            .publish_articles(&publication, &stored, &audit)
            .await
            .map_err(article_error(tenant, None))?;
        match published {
            Published::Created(publication) => {
                let mut opened = Vec::with_capacity(stored.len());
                for (article, content) in stored.into_iter().zip(contents) {
                    opened.push(Article {
                        id: article.id,
                        tenant_id: article.tenant_id,
                        collection: article.collection,
                        version: article.version,
                        created_by: article.created_by,
                        author: article.author,
                        created_at: article.created_at,
                        updated_at: article.updated_at,
                        content,
                    });
                }
                self.index_written(tenant.id, &opened).await;
                tracing::info!(tenant = %tenant.id, %collection, articles = publication.articles.len(), "runbook published");
                Ok(PublishOutcome {
                    publication,
                    replayed: false,
                })
            }
            Published::Replayed(publication) => Ok(PublishOutcome {
                publication,
                replayed: true,
            }),
        }
    }
}

/// What the index must fetch (changed or new) and drop (gone from the store).
fn diff(
    held: &std::collections::HashMap<ArticleId, u32>,
    stamps: &[ArticleStamp],
) -> (Vec<ArticleId>, Vec<ArticleId>) {
    let changed = stamps
        .iter()
        .filter(|s| held.get(&s.id) != Some(&s.version))
        .map(|s| s.id)
        .collect();
    let present: HashSet<ArticleId> = stamps.iter().map(|s| s.id).collect();
    let removed = held
        .keys()
        .filter(|id| !present.contains(id))
        .copied()
        .collect();
    (changed, removed)
}

/// The variables a template may use.
pub fn template_vars(
    tenant: &Tenant,
    docs_organization: Option<&str>,
    at: time::OffsetDateTime,
) -> BTreeMap<String, String> {
    let date = at.date();
    [
        ("tenant.name", tenant.display_name.as_str().to_owned()),
        ("tenant.slug", tenant.slug.as_str().to_owned()),
        ("tenant.id", tenant.id.to_string()),
        ("tenant.region", tenant.region.as_str().to_owned()),
        (
            "docs_organization",
            docs_organization
                .filter(|o| !o.trim().is_empty())
                .map_or_else(
                    || "not linked yet".to_owned(),
                    |o| format!("`{}`", o.trim()),
                ),
        ),
        (
            "published_on",
            format!(
                "{:04}-{:02}-{:02}",
                date.year(),
                u8::from(date.month()),
                date.day()
            ),
        ),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_owned(), v))
    .collect()
}

fn deleted(tenant: &Tenant) -> AppError {
    AppError::Conflict {
        code: "tenant_deleted",
        message: format!("tenant `{}` is deleted", tenant.slug),
    }
}

fn refuse_deleted(tenant: &Tenant) -> Result<(), AppError> {
    if tenant.state == TenantState::Deleted {
        return Err(deleted(tenant));
    }
    Ok(())
}
