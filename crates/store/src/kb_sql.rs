//! The SQL behind `KbStore`: knowledge-base articles, their versions and
//! publications, written once for both back ends in the way of
//! [`crate::audit_key_sql`].
//!
//! Rules the database keeps:
//! - **Tenant scoping**: every statement names the tenant; the primary
//!   keys start with it, so another tenant's article id finds nothing.
//! - **Crypto-shredding**: articles reference the tenant's key row with
//!   `ON DELETE CASCADE` (and versions their article), so deleting the
//!   tenant removes them in the deletion's own transaction.
//! - **No lost edits**: an update names the version it replaces
//!   (`version = new - 1`); a concurrent editor's update finds no row and
//!   gets `Stale`.
//! - **One publication per key**: `(tenant_id, key)` is the primary key of
//!   `kb_publications`, and the row is inserted before the articles in the
//!   same transaction, so of two concurrent calls with one key exactly one
//!   writes articles; the other finds the first one's publication.

use gatehouse_core::id::ArticleId;
use gatehouse_core::kb::{ArticleStamp, Publication, StoredArticle, StoredArticleVersion};
use gatehouse_core::store::StoreError;

pub(crate) const ARTICLE_COLUMNS: &str =
    "tenant_id, id, collection, version, created_by, author, created_at, updated_at, sealed";

fn corrupt(column: &str, err: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt(format!("{column}: {err}"))
}

fn version(column: &str, value: i64) -> Result<u32, StoreError> {
    u32::try_from(value)
        .ok()
        .filter(|v| *v >= 1)
        .ok_or_else(|| corrupt(column, format!("version {value} is out of range")))
}

/// A row of `kb_articles`.
#[derive(sqlx::FromRow)]
pub(crate) struct ArticleRow {
    tenant_id: String,
    id: String,
    collection: String,
    version: i64,
    created_by: String,
    author: String,
    created_at: time::OffsetDateTime,
    updated_at: time::OffsetDateTime,
    sealed: Vec<u8>,
}

impl TryFrom<ArticleRow> for StoredArticle {
    type Error = StoreError;

    fn try_from(row: ArticleRow) -> Result<Self, Self::Error> {
        Ok(Self {
            tenant_id: row
                .tenant_id
                .parse()
                .map_err(|e| corrupt("kb_articles.tenant_id", e))?,
            id: row.id.parse().map_err(|e| corrupt("kb_articles.id", e))?,
            collection: gatehouse_core::kb::Collection::parse(&row.collection)
                .map_err(|e| corrupt("kb_articles.collection", e))?,
            version: version("kb_articles.version", row.version)?,
            created_by: row.created_by,
            author: row.author,
            created_at: row.created_at,
            updated_at: row.updated_at,
            sealed: row.sealed,
        })
    }
}

/// A row of `kb_article_versions`.
#[derive(sqlx::FromRow)]
pub(crate) struct VersionRow {
    tenant_id: String,
    article_id: String,
    version: i64,
    author: String,
    at: time::OffsetDateTime,
    sealed: Vec<u8>,
}

impl TryFrom<VersionRow> for StoredArticleVersion {
    type Error = StoreError;

    fn try_from(row: VersionRow) -> Result<Self, Self::Error> {
        Ok(Self {
            tenant_id: row
                .tenant_id
                .parse()
                .map_err(|e| corrupt("kb_article_versions.tenant_id", e))?,
            article_id: row
                .article_id
                .parse()
                .map_err(|e| corrupt("kb_article_versions.article_id", e))?,
            version: version("kb_article_versions.version", row.version)?,
            author: row.author,
            at: row.at,
            sealed: row.sealed,
        })
    }
}

/// A row of `article_stamps`.
#[derive(sqlx::FromRow)]
pub(crate) struct StampRow {
    id: String,
    version: i64,
}

impl TryFrom<StampRow> for ArticleStamp {
    type Error = StoreError;

    fn try_from(row: StampRow) -> Result<Self, Self::Error> {
        Ok(Self {
            id: row.id.parse().map_err(|e| corrupt("kb_articles.id", e))?,
            version: version("kb_articles.version", row.version)?,
        })
    }
}

/// A row of `kb_publications`.
#[derive(sqlx::FromRow)]
pub(crate) struct PublicationRow {
    tenant_id: String,
    key: String,
    collection: String,
    articles: String,
    at: time::OffsetDateTime,
}

impl TryFrom<PublicationRow> for Publication {
    type Error = StoreError;

    fn try_from(row: PublicationRow) -> Result<Self, Self::Error> {
        let ids: Vec<String> = serde_json::from_str(&row.articles)
            .map_err(|e| corrupt("kb_publications.articles", e))?;
        Ok(Self {
            tenant_id: row
                .tenant_id
                .parse()
                .map_err(|e| corrupt("kb_publications.tenant_id", e))?,
            key: row.key,
            collection: gatehouse_core::kb::Collection::parse(&row.collection)
                .map_err(|e| corrupt("kb_publications.collection", e))?,
            articles: ids
                .iter()
                .map(|id| id.parse::<ArticleId>())
                .collect::<Result<_, _>>()
                .map_err(|e| corrupt("kb_publications.articles", e))?,
            at: row.at,
        })
    }
}

/// The article ids of a publication, as stored.
pub(crate) fn publication_articles(publication: &Publication) -> Result<String, StoreError> {
    let ids: Vec<String> = publication
        .articles
        .iter()
        .map(ToString::to_string)
        .collect();
    serde_json::to_string(&ids).map_err(|e| StoreError::Backend {
        context: "encoding a publication",
        source: Box::new(e),
    })
}

/// `$from, $from+1, …` (`count` of them).
pub(crate) fn numbered(from: usize, count: usize) -> String {
    (from..from + count)
        .map(|i| format!("${i}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// A publication's articles must all be new and the publication's.
pub(crate) fn check_publication(
    publication: &Publication,
    articles: &[StoredArticle],
) -> Result<(), StoreError> {
    if publication.key.is_empty() || publication.key.chars().count() > 200 {
        return Err(StoreError::Conflict(
            "a publication's key must be 1 to 200 characters".into(),
        ));
    }
    let listed: Vec<ArticleId> = articles.iter().map(|a| a.id).collect();
    if listed != publication.articles {
        return Err(StoreError::Conflict(
            "a publication must list exactly the articles it stores, in order".into(),
        ));
    }
    for article in articles {
        if article.tenant_id != publication.tenant_id
            || article.collection != publication.collection
            || article.version != 1
        {
            return Err(StoreError::Conflict(format!(
                "article {} must be a new article (version 1) of the publication's tenant and collection",
                article.id
            )));
        }
    }
    Ok(())
}

macro_rules! impl_kb_store {
    ($store:ty) => {
        impl $store {
            /// Inserts a new article and its first version on `conn`, inside
            /// the caller's transaction.
            async fn write_new_article(
                conn: &mut <Self as crate::kb_sql::KbBackend>::Connection,
                article: &gatehouse_core::kb::StoredArticle,
            ) -> gatehouse_core::store::StoreResult<()> {
                use crate::engine_sql::{SortableTime, Violation, violation};
                use gatehouse_core::store::StoreError;
                if article.version != 1 {
                    return Err(StoreError::Conflict(format!(
                        "a new article starts at version 1, not {}",
                        article.version
                    )));
                }
                let tenant = article.tenant_id.to_string();
                let id = article.id.to_string();
                sqlx::query(&format!(
                    "INSERT INTO kb_articles ({}) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)",
                    crate::kb_sql::ARTICLE_COLUMNS
                ))
                .bind(&tenant)
                .bind(&id)
                .bind(article.collection.as_str())
                .bind(i64::from(article.version))
                .bind(&article.created_by)
                .bind(&article.author)
                .bind(SortableTime(article.created_at))
                .bind(SortableTime(article.updated_at))
                .bind(&article.sealed)
                .execute(&mut *conn)
                .await
                .map_err(|err| match violation(&err) {
                    // The tenant's key is gone: deleted (or never existed).
                    Violation::ForeignKey => StoreError::NotFound("tenant"),
                    Violation::Unique => {
                        StoreError::Conflict(format!("article {id} exists already"))
                    }
                    Violation::Other => crate::db_error("storing an article")(err),
                })?;
                Self::write_article_version(&mut *conn, article).await
            }

            /// Keeps `article`'s current version in its history.
            async fn write_article_version(
                conn: &mut <Self as crate::kb_sql::KbBackend>::Connection,
                article: &gatehouse_core::kb::StoredArticle,
            ) -> gatehouse_core::store::StoreResult<()> {
                use crate::engine_sql::SortableTime;
                sqlx::query(
                    "INSERT INTO kb_article_versions (tenant_id, article_id, version, author, at, sealed)
                     VALUES ($1, $2, $3, $4, $5, $6)",
                )
                .bind(article.tenant_id.to_string())
                .bind(article.id.to_string())
                .bind(i64::from(article.version))
                .bind(&article.author)
                .bind(SortableTime(article.updated_at))
                .bind(&article.sealed)
                .execute(&mut *conn)
                .await
                .map_err(crate::sql::conflict_or(
                    "storing an article version",
                    format!("version {} of article {} exists already", article.version, article.id),
                ))?;
                Ok(())
            }
        }

        #[async_trait::async_trait]
        impl gatehouse_core::kb::KbStore for $store {
            async fn insert_article(
                &self,
                article: &gatehouse_core::kb::StoredArticle,
                audit: &[gatehouse_core::audit::AuditRecord],
            ) -> gatehouse_core::store::StoreResult<()> {
                let mut tx = self.writer.begin().await.map_err(crate::db_error("starting a transaction"))?;
                Self::write_new_article(&mut tx, article).await?;
                Self::write_audit_records(&mut tx, audit).await?;
                tx.commit().await.map_err(crate::db_error("committing an article"))
            }

            async fn update_article(
                &self,
                article: &gatehouse_core::kb::StoredArticle,
                audit: &[gatehouse_core::audit::AuditRecord],
            ) -> gatehouse_core::store::StoreResult<()> {
                use crate::engine_sql::SortableTime;
                use gatehouse_core::store::StoreError;
                if article.version < 2 {
                    return Err(StoreError::Conflict(format!(
                        "an edit makes version 2 or later, not {}",
                        article.version
                    )));
                }
                let tenant = article.tenant_id.to_string();
                let id = article.id.to_string();
                let mut tx = self.writer.begin().await.map_err(crate::db_error("starting a transaction"))?;
                let done = sqlx::query(
                    "UPDATE kb_articles SET collection = $1, version = $2, author = $3, updated_at = $4, sealed = $5
                     WHERE tenant_id = $6 AND id = $7 AND version = $8",
                )
                .bind(article.collection.as_str())
                .bind(i64::from(article.version))
                .bind(&article.author)
                .bind(SortableTime(article.updated_at))
                .bind(&article.sealed)
                .bind(&tenant)
                .bind(&id)
                .bind(i64::from(article.version) - 1)
                .execute(&mut *tx)
                .await
                .map_err(crate::db_error("updating an article"))?;
                if done.rows_affected() != 1 {
                    let exists = sqlx::query("SELECT 1 FROM kb_articles WHERE tenant_id = $1 AND id = $2")
                        .bind(&tenant)
                        .bind(&id)
                        .fetch_optional(&mut *tx)
                        .await
                        .map_err(crate::db_error("reading an article"))?;
                    return Err(if exists.is_some() {
                        StoreError::Stale("article")
                    } else {
                        StoreError::NotFound("article")
                    });
                }
                Self::write_article_version(&mut tx, article).await?;
                Self::write_audit_records(&mut tx, audit).await?;
                tx.commit().await.map_err(crate::db_error("committing an article edit"))
            }

            async fn get_article(
                &self,
                tenant: gatehouse_core::id::TenantId,
                id: gatehouse_core::id::ArticleId,
            ) -> gatehouse_core::store::StoreResult<gatehouse_core::kb::StoredArticle> {
                sqlx::query_as::<_, crate::kb_sql::ArticleRow>(&format!(
                    "SELECT {} FROM kb_articles WHERE tenant_id = $1 AND id = $2",
                    crate::kb_sql::ARTICLE_COLUMNS
                ))
                .bind(tenant.to_string())
                .bind(id.to_string())
                .fetch_optional(&self.pool)
                .await
                .map_err(crate::db_error("reading an article"))?
                .ok_or(gatehouse_core::store::StoreError::NotFound("article"))?
                .try_into()
            }

            async fn list_articles(
                &self,
                tenant: gatehouse_core::id::TenantId,
                query: &gatehouse_core::kb::ArticleQuery,
            ) -> gatehouse_core::store::StoreResult<Vec<gatehouse_core::kb::StoredArticle>> {
                let rows = sqlx::query_as::<_, crate::kb_sql::ArticleRow>(&format!(
                    "SELECT {} FROM kb_articles
                     WHERE tenant_id = $1
                       AND ($2 IS NULL OR collection = $2)
                       AND ($3 IS NULL OR id > $3)
                     ORDER BY id LIMIT $4",
                    crate::kb_sql::ARTICLE_COLUMNS
                ))
                .bind(tenant.to_string())
                .bind(query.collection.as_ref().map(|c| c.as_str().to_owned()))
                .bind(query.after.map(|id| id.to_string()))
                .bind(i64::from(query.limit))
                .fetch_all(&self.pool)
                .await
                .map_err(crate::db_error("listing articles"))?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn article_versions(
                &self,
                tenant: gatehouse_core::id::TenantId,
                id: gatehouse_core::id::ArticleId,
            ) -> gatehouse_core::store::StoreResult<Vec<gatehouse_core::kb::StoredArticleVersion>> {
                let rows = sqlx::query_as::<_, crate::kb_sql::VersionRow>(
                    "SELECT tenant_id, article_id, version, author, at, sealed FROM kb_article_versions
                     WHERE tenant_id = $1 AND article_id = $2 ORDER BY version",
                )
                .bind(tenant.to_string())
                .bind(id.to_string())
                .fetch_all(&self.pool)
                .await
                .map_err(crate::db_error("reading an article's versions"))?;
                if rows.is_empty() {
                    return Err(gatehouse_core::store::StoreError::NotFound("article"));
                }
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn article_stamps(
                &self,
                tenant: gatehouse_core::id::TenantId,
            ) -> gatehouse_core::store::StoreResult<Vec<gatehouse_core::kb::ArticleStamp>> {
                let rows = sqlx::query_as::<_, crate::kb_sql::StampRow>(
                    "SELECT id, version FROM kb_articles WHERE tenant_id = $1 ORDER BY id",
                )
                .bind(tenant.to_string())
                .fetch_all(&self.pool)
                .await
                .map_err(crate::db_error("listing article versions"))?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn articles_by_id(
                &self,
                tenant: gatehouse_core::id::TenantId,
                ids: &[gatehouse_core::id::ArticleId],
            ) -> gatehouse_core::store::StoreResult<Vec<gatehouse_core::kb::StoredArticle>> {
                let mut found = Vec::with_capacity(ids.len());
                for chunk in ids.chunks(200) {
                    let text = format!(
                        "SELECT {} FROM kb_articles WHERE tenant_id = $1 AND id IN ({}) ORDER BY id",
                        crate::kb_sql::ARTICLE_COLUMNS,
                        crate::kb_sql::numbered(2, chunk.len())
                    );
                    let mut query = sqlx::query_as::<_, crate::kb_sql::ArticleRow>(&text).bind(tenant.to_string());
                    for id in chunk {
                        query = query.bind(id.to_string());
                    }
                    let rows = query
                        .fetch_all(&self.pool)
                        .await
                        .map_err(crate::db_error("reading articles"))?;
                    for row in rows {
                        found.push(gatehouse_core::kb::StoredArticle::try_from(row)?);
                    }
                }
                found.sort_by_key(|a| a.id);
                Ok(found)
            }

            async fn publish_articles(
                &self,
                publication: &gatehouse_core::kb::Publication,
                articles: &[gatehouse_core::kb::StoredArticle],
                audit: &[gatehouse_core::audit::AuditRecord],
            ) -> gatehouse_core::store::StoreResult<gatehouse_core::kb::Published> {
                use crate::engine_sql::{SortableTime, Violation, violation};
                use gatehouse_core::kb::Published;
                use gatehouse_core::store::StoreError;
                crate::kb_sql::check_publication(publication, articles)?;
                let tenant = publication.tenant_id.to_string();
                let mut tx = self.writer.begin().await.map_err(crate::db_error("starting a transaction"))?;
                // First the key: a concurrent call with the same key waits
                // here (PostgreSQL) or behind the one writer (SQLite).
                let claimed = sqlx::query(
                    "INSERT INTO kb_publications (tenant_id, key, collection, articles, at)
                     VALUES ($1, $2, $3, $4, $5) ON CONFLICT (tenant_id, key) DO NOTHING",
                )
                .bind(&tenant)
                .bind(&publication.key)
                .bind(publication.collection.as_str())
                .bind(crate::kb_sql::publication_articles(publication)?)
                .bind(SortableTime(publication.at))
                .execute(&mut *tx)
                .await
                .map_err(|err| match violation(&err) {
                    Violation::ForeignKey => StoreError::NotFound("tenant"),
                    _ => crate::db_error("storing a publication")(err),
                })?;
                if claimed.rows_affected() == 0 {
                    let earlier = sqlx::query_as::<_, crate::kb_sql::PublicationRow>(
                        "SELECT tenant_id, key, collection, articles, at FROM kb_publications
                         WHERE tenant_id = $1 AND key = $2",
                    )
                    .bind(&tenant)
                    .bind(&publication.key)
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(crate::db_error("reading a publication"))?
                    .ok_or(StoreError::Stale("publication"))?;
                    drop(tx);
                    return Ok(Published::Replayed(earlier.try_into()?));
                }
                for article in articles {
                    Self::write_new_article(&mut tx, article).await?;
                }
                Self::write_audit_records(&mut tx, audit).await?;
                tx.commit().await.map_err(crate::db_error("committing a publication"))?;
                Ok(Published::Created(publication.clone()))
            }
        }
    };
}

pub(crate) use impl_kb_store;

/// The connection type of each back end, so the helpers above can name it
/// without a second macro parameter.
pub(crate) trait KbBackend {
    /// The back end's connection.
    type Connection;
}

impl KbBackend for crate::SqliteStore {
    type Connection = sqlx::SqliteConnection;
}

impl KbBackend for crate::PgStore {
    type Connection = sqlx::PgConnection;
}
