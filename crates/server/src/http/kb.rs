//! `/api/v1/tenants/{tenant}/kb`: a tenant's knowledge base: articles (with
//! their versions) and full-text search.

use axum::extract::State;
use axum::http::{StatusCode, header};
use axum::response::IntoResponse;
use gatehouse_core::id::{ArticleId, TenantId};
use gatehouse_core::kb::{Article, ArticleContent, Collection, Tag};
use gatehouse_kb::SearchRequest;
use gatehouse_kb::index::{MAX_PAGE as MAX_SEARCH_PAGE, SearchResults};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::{IntoParams, ToSchema};

use super::ApiState;
use super::extract::{ApiJson, ApiPath, ApiQuery, Auth};
use crate::app::{ArticleFilter, TenantRef};
use crate::error::{AppError, ErrorBody};

/// How far into the results a search may page.
pub const MAX_SEARCH_OFFSET: usize = 10_000;

/// An article, with its content.
#[derive(Debug, Serialize, ToSchema)]
pub struct ArticleView {
    /// The article.
    pub id: ArticleId,
    /// Whose it is.
    pub tenant_id: TenantId,
    /// Its collection.
    pub collection: Collection,
    /// 1 for a new article, one more per edit.
    pub version: u32,
    /// The title.
    pub title: String,
    /// The body, in Markdown.
    pub body: String,
    /// Its tags, sorted.
    pub tags: Vec<Tag>,
    /// Who wrote the first version (an operator id, or `system`).
    pub created_by: String,
    /// Who wrote this version.
    pub author: String,
    /// When the first version was written.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When this version was written.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl From<Article> for ArticleView {
    fn from(a: Article) -> Self {
        Self {
            id: a.id,
            tenant_id: a.tenant_id,
            collection: a.collection,
            version: a.version,
            title: a.content.title,
            body: a.content.body,
            tags: a.content.tags,
            created_by: a.created_by,
            author: a.author,
            created_at: a.created_at,
            updated_at: a.updated_at,
        }
    }
}

/// An article in a list: everything but the body.
#[derive(Debug, Serialize, ToSchema)]
pub struct ArticleSummary {
    /// The article.
    pub id: ArticleId,
    /// Its collection.
    pub collection: Collection,
    /// Its current version.
    pub version: u32,
    /// The title.
    pub title: String,
    /// Its tags.
    pub tags: Vec<Tag>,
    /// Who wrote the current version.
    pub author: String,
    /// When the current version was written.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl From<Article> for ArticleSummary {
    fn from(a: Article) -> Self {
        Self {
            id: a.id,
            collection: a.collection,
            version: a.version,
            title: a.content.title,
            tags: a.content.tags,
            author: a.author,
            updated_at: a.updated_at,
        }
    }
}

/// A page of articles.
#[derive(Debug, Serialize, ToSchema)]
pub struct ArticlePage {
    /// The articles, in creation order.
    pub items: Vec<ArticleSummary>,
    /// Pass as `after` for the next page; absent on the last page.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next_cursor: Option<ArticleId>,
}

/// An article's versions.
#[derive(Debug, Serialize, ToSchema)]
pub struct ArticleVersions {
    /// Every version, oldest first; the last is the current one.
    pub items: Vec<ArticleView>,
}

/// Paging and filtering of the list.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct ListArticles {
    /// Only this collection's articles.
    #[param(value_type = Option<String>)]
    pub collection: Option<Collection>,
    /// The previous page's `next_cursor`.
    #[param(value_type = Option<String>)]
    pub after: Option<ArticleId>,
    /// Page size, 1–500 (default 100).
    pub limit: Option<u32>,
}

/// A new article.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateArticle {
    /// The collection, such as `runbooks`.
    pub collection: Collection,
    /// The title (1–200 characters).
    pub title: String,
    /// The body, in Markdown (at most 256 KiB, and within the request size limit).
    #[serde(default)]
    pub body: String,
    /// Tags.
    #[serde(default)]
    pub tags: Vec<Tag>,
}

/// An edit: the whole new content, and the version it replaces.
#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateArticle {
    /// The version this edit was made from; if the article has moved on
    /// since, the edit is refused (`409 edit_conflict`).
    pub version: u32,
    /// The new title.
    pub title: String,
    /// The new body.
    #[serde(default)]
    pub body: String,
    /// The new tags.
    #[serde(default)]
    pub tags: Vec<Tag>,
    /// Move the article to this collection (absent: it stays).
    pub collection: Option<Collection>,
}

/// A search.
#[derive(Debug, Deserialize, IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub struct SearchParams {
    /// The query: words (all required), `"a phrase"`, `OR`, `AND`, `-word`
    /// or `NOT word`, parentheses, `title:word`, `body:word`, `tags:word`.
    pub q: Option<String>,
    /// Only articles of this collection.
    #[param(value_type = Option<String>)]
    pub collection: Option<Collection>,
    /// Only articles with this tag.
    #[param(value_type = Option<String>)]
    pub tag: Option<Tag>,
    /// Results to skip (default 0, at most 10000).
    pub offset: Option<usize>,
    /// Page size, 1–100 (default 20).
    pub limit: Option<usize>,
}

fn article_ref(text: &str) -> Result<ArticleId, AppError> {
    text.parse().map_err(|_| AppError::NotFound {
        code: "article_not_found",
        message: format!("no article `{text}`"),
    })
}

fn location(article: &ArticleView) -> [(header::HeaderName, String); 1] {
    [(
        header::LOCATION,
        format!(
            "/api/v1/tenants/{}/kb/articles/{}",
            article.tenant_id, article.id
        ),
    )]
}

/// List a tenant's articles (titles, not bodies).
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/kb/articles", tag = "kb", params(("tenant" = String, Path, description = "tenant id or slug"), ListArticles),
    responses((status = 200, body = ArticlePage), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn list_articles(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath(tenant): ApiPath<String>,
    ApiQuery(query): ApiQuery<ListArticles>,
) -> Result<axum::Json<ArticlePage>, AppError> {
    let page = state
        .app
        .kb_articles(
            &actor,
            &TenantRef::parse(&tenant),
            ArticleFilter {
                collection: query.collection,
                after: query.after,
                limit: query.limit.unwrap_or(100),
            },
        )
        .await?;
    Ok(axum::Json(ArticlePage {
        items: page.items.into_iter().map(Into::into).collect(),
        next_cursor: page.next,
    }))
}

/// Write a new article, sealed under the tenant's key.
#[utoipa::path(post, path = "/api/v1/tenants/{tenant}/kb/articles", tag = "kb", request_body = CreateArticle,
    params(("tenant" = String, Path, description = "tenant id or slug")),
    responses((status = 201, body = ArticleView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "`tenant_deleted`", body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn create_article(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath(tenant): ApiPath<String>,
    ApiJson(body): ApiJson<CreateArticle>,
) -> Result<impl IntoResponse, AppError> {
    let content = ArticleContent::new(&body.title, &body.body, body.tags)?;
    let article: ArticleView = state
        .app
        .create_kb_article(&actor, &TenantRef::parse(&tenant), body.collection, content)
        .await?
        .into();
    Ok((StatusCode::CREATED, location(&article), axum::Json(article)))
}

/// Get one article.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/kb/articles/{article}", tag = "kb",
    params(("tenant" = String, Path, description = "tenant id or slug"), ("article" = String, Path, description = "article id (`kba_…`)")),
    responses((status = 200, body = ArticleView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, description = "`article_not_found` (also for another tenant's article)", body = ErrorBody)))]
pub async fn get_article(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath((tenant, id)): ApiPath<(String, String)>,
) -> Result<axum::Json<ArticleView>, AppError> {
    let id = article_ref(&id)?;
    Ok(axum::Json(
        state
            .app
            .kb_article(&actor, &TenantRef::parse(&tenant), id)
            .await?
            .into(),
    ))
}

/// Edit an article: a new version; the old one stays in its history.
#[utoipa::path(put, path = "/api/v1/tenants/{tenant}/kb/articles/{article}", tag = "kb", request_body = UpdateArticle,
    params(("tenant" = String, Path, description = "tenant id or slug"), ("article" = String, Path, description = "article id (`kba_…`)")),
    responses((status = 200, body = ArticleView), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody), (status = 409, description = "`edit_conflict`: the article has a newer version; `tenant_deleted`", body = ErrorBody),
        (status = 422, body = ErrorBody)))]
pub async fn update_article(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath((tenant, id)): ApiPath<(String, String)>,
    ApiJson(body): ApiJson<UpdateArticle>,
) -> Result<axum::Json<ArticleView>, AppError> {
    let id = article_ref(&id)?;
    let content = ArticleContent::new(&body.title, &body.body, body.tags)?;
    Ok(axum::Json(
        state
            .app
            .update_kb_article(
                &actor,
                &TenantRef::parse(&tenant),
                id,
                body.version,
                body.collection,
                content,
            )
            .await?
            .into(),
    ))
}

/// Every version of an article, oldest first.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/kb/articles/{article}/versions", tag = "kb",
    params(("tenant" = String, Path, description = "tenant id or slug"), ("article" = String, Path, description = "article id (`kba_…`)")),
    responses((status = 200, body = ArticleVersions), (status = 401, body = ErrorBody), (status = 403, body = ErrorBody),
        (status = 404, body = ErrorBody)))]
pub async fn article_versions(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath((tenant, id)): ApiPath<(String, String)>,
) -> Result<axum::Json<ArticleVersions>, AppError> {
    let id = article_ref(&id)?;
    let items = state
        .app
        .kb_article_versions(&actor, &TenantRef::parse(&tenant), id)
        .await?;
    Ok(axum::Json(ArticleVersions {
        items: items.into_iter().map(Into::into).collect(),
    }))
}

/// Full-text search of a tenant's articles: ranked (title matches count
/// more), with highlighted titles and snippets.
#[utoipa::path(get, path = "/api/v1/tenants/{tenant}/kb/search", tag = "kb",
    params(("tenant" = String, Path, description = "tenant id or slug"), SearchParams),
    responses((status = 200, body = SearchResults), (status = 400, description = "`invalid_query`: the query does not parse, is empty or too long, or the paging is out of range", body = ErrorBody),
        (status = 401, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "`tenant_deleted`", body = ErrorBody), (status = 422, body = ErrorBody)))]
pub async fn search(
    State(state): State<ApiState>,
    Auth(actor): Auth,
    ApiPath(tenant): ApiPath<String>,
    ApiQuery(params): ApiQuery<SearchParams>,
) -> Result<axum::Json<SearchResults>, AppError> {
    let bad = |message: String| AppError::BadRequest {
        status: StatusCode::BAD_REQUEST,
        code: "invalid_query",
        message,
    };
    let query = params
        .q
        .ok_or_else(|| bad("the query parameter `q` is required".into()))?;
    let offset = params.offset.unwrap_or(0);
    if offset > MAX_SEARCH_OFFSET {
        return Err(bad(format!("offset must be at most {MAX_SEARCH_OFFSET}")));
    }
    let limit = params.limit.unwrap_or(20);
    if limit == 0 || limit > MAX_SEARCH_PAGE {
        return Err(bad(format!(
            "limit must be between 1 and {MAX_SEARCH_PAGE}"
        )));
    }
    let request = SearchRequest {
        query,
        collection: params.collection,
        tag: params.tag,
        offset,
        limit,
    };
    Ok(axum::Json(
        state
            .app
            .search_kb(&actor, &TenantRef::parse(&tenant), request)
            .await?,
    ))
}
