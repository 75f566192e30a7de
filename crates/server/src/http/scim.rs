//! `/scim/v2/{tenant}/…`: the per-tenant SCIM 2.0 service provider
//! (RFC 7643, RFC 7644). The protocol is `gatehouse-scim`'s; this module
//! authenticates the tenant's bearer token, reads bodies and headers, and
//! writes SCIM responses (`application/scim+json`, `ETag`, `Location`,
//! and the RFC 7644 §3.12 error body for every error, 401 included).
//!
//! Not in the OpenAPI document: SCIM has its own discovery endpoints
//! (`/ServiceProviderConfig`, `/ResourceTypes`, `/Schemas`), its own
//! authentication and its own error format, and its schema is the RFCs'.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use gatehouse_scim::backend::Service;
use gatehouse_scim::list::{MAX_RESULTS, sort_resources};
use gatehouse_scim::meta::etag_list_matches;
use gatehouse_scim::schema::documents::{
    ServiceProviderConfig, find_resource_type_document, find_schema_document, resource_types_list,
    schemas_list,
};
use gatehouse_scim::{ListQuery, ListResponse, Page, Projection, ResourceType, ScimError};
use serde_json::Value;

use super::ApiState;
use crate::scim::TenantBackend;

/// The largest SCIM request body.
pub const MAX_SCIM_BODY_BYTES: usize = 256 * 1024;
/// The media type of every SCIM response.
pub const SCIM_JSON: &str = "application/scim+json";

/// Who is calling: set by [`authenticate`] for every SCIM route.
#[derive(Debug, Clone)]
struct ScimCaller {
    tenant: gatehouse_core::tenant::Tenant,
    token: String,
}

/// The SCIM routes, to merge into the application.
pub fn routes(state: ApiState) -> Router<ApiState> {
    let users = "/scim/v2/{tenant}/Users";
    let groups = "/scim/v2/{tenant}/Groups";
    Router::new()
        .route(users, get(list_users).post(create_user))
        .route(&format!("{users}/.search"), post(search_users))
        .route(
            &format!("{users}/{{id}}"),
            get(get_user)
                .put(put_user)
                .patch(patch_user)
                .delete(delete_user),
        )
        .route(groups, get(list_groups).post(create_group))
        .route(&format!("{groups}/.search"), post(search_groups))
        .route(
            &format!("{groups}/{{id}}"),
            get(get_group)
                .put(put_group)
                .patch(patch_group)
                .delete(delete_group),
        )
        .route("/scim/v2/{tenant}/.search", post(search_root))
        .route(
            "/scim/v2/{tenant}/ServiceProviderConfig",
            get(service_provider_config),
        )
        .route("/scim/v2/{tenant}/ResourceTypes", get(resource_types))
        .route("/scim/v2/{tenant}/ResourceTypes/{id}", get(resource_type))
        .route("/scim/v2/{tenant}/Schemas", get(schemas))
        .route("/scim/v2/{tenant}/Schemas/{id}", get(schema))
        .route("/scim/v2/{tenant}/Me", axum::routing::any(not_implemented))
        .route(
            "/scim/v2/{tenant}/Bulk",
            axum::routing::any(not_implemented),
        )
        .route("/scim/v2/{tenant}/{*rest}", axum::routing::any(unknown))
        .layer(axum::middleware::from_fn_with_state(state, authenticate))
        .layer(DefaultBodyLimit::max(MAX_SCIM_BODY_BYTES))
}

fn error_response(err: &ScimError) -> Response {
    let status = StatusCode::from_u16(err.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, err.to_json().to_string()).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON));
    if status == StatusCode::UNAUTHORIZED {
        response.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            HeaderValue::from_static("Bearer realm=\"scim\""),
        );
    }
    response
}

fn unauthorized() -> Response {
    error_response(&ScimError::new(
        401,
        None,
        "a valid SCIM bearer token of this tenant is required",
    ))
}

/// Checks the bearer token against the tenant in the path; anything wrong
/// (no token, unknown or revoked token, unknown tenant, another tenant's
/// token) is the same 401.
async fn authenticate(State(state): State<ApiState>, mut request: Request, next: Next) -> Response {
    let Some(tenant) = request
        .uri()
        .path()
        .strip_prefix("/scim/v2/")
        .and_then(|rest| rest.split('/').next())
        .map(ToOwned::to_owned)
    else {
        return unauthorized();
    };
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme
                .eq_ignore_ascii_case("bearer")
                .then(|| token.trim().to_owned())
        });
    let Some(bearer) = bearer else {
        return unauthorized();
    };
    match state.app.scim_authenticate(&tenant, &bearer).await {
        Ok(Some((tenant, token))) => {
            request.extensions_mut().insert(ScimCaller {
                tenant,
                token: token.id,
            });
            next.run(request).await
        }
        Ok(None) => unauthorized(),
        Err(err) => {
            tracing::error!(%err, "SCIM authentication failed");
            error_response(&ScimError::new(500, None, "internal error"))
        }
    }
}

fn caller(request_ext: &axum::http::Extensions) -> Result<ScimCaller, ScimError> {
    request_ext
        .get::<ScimCaller>()
        .cloned()
        .ok_or_else(|| ScimError::new(401, None, "not authenticated"))
}

/// The base URL of the tenant's SCIM endpoint, as the client sees it.
fn base_url(headers: &HeaderMap, tenant: &str) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .filter(|h| {
            !h.is_empty()
                && h.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b".-:[]".contains(&b))
        })
        .unwrap_or("localhost");
    let scheme = headers
        .get("x-forwarded-proto")
        .and_then(|v| v.to_str().ok())
        .filter(|p| *p == "https" || *p == "http")
        .unwrap_or("http");
    format!("{scheme}://{host}/scim/v2/{tenant}")
}

/// What every SCIM handler starts from.
struct Ctx {
    caller: ScimCaller,
    base: String,
    headers: HeaderMap,
    query: Vec<(String, String)>,
}

impl Ctx {
    async fn service(
        &self,
        state: &ApiState,
        max_results: usize,
    ) -> Result<Service<TenantBackend>, ScimError> {
        let sealer = state
            .app
            .keyring
            .sealer(self.caller.tenant.id)
            .await
            .map_err(|err| {
                tracing::error!(%err, "SCIM: the tenant's key is unavailable");
                ScimError::new(503, None, "the tenant's key is unavailable; retry later")
            })?;
        let backend = TenantBackend::new(
            state.app.store.clone(),
            state.app.clock.clone(),
            sealer,
            format!("scim:{}", self.caller.token),
        )
        .with_base_url(self.base.clone());
        Ok(Service::new(backend, self.base.clone(), max_results))
    }

    fn header(&self, name: header::HeaderName) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn projection(&self) -> Result<Projection, ScimError> {
        let find = |name: &str| {
            self.query
                .iter()
                .find(|(k, _)| k.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
        };
        Projection::parse(find("attributes"), find("excludedAttributes"))
    }
}

fn ctx(request: Request) -> Result<(Ctx, Request), ScimError> {
    let caller = caller(request.extensions())?;
    let base = base_url(request.headers(), caller.tenant.slug.as_str());
    let query = axum::extract::Query::<Vec<(String, String)>>::try_from_uri(request.uri())
        .map(|q| q.0)
        .map_err(|_| ScimError::invalid_syntax("the query string is malformed"))?;
    let headers = request.headers().clone();
    Ok((
        Ctx {
            caller,
            base,
            headers,
            query,
        },
        request,
    ))
}

async fn body_json(request: Request) -> Result<Value, ScimError> {
    let bytes: Bytes = axum::body::to_bytes(request.into_body(), MAX_SCIM_BODY_BYTES)
        .await
        .map_err(|_| {
            ScimError::new(
                413,
                None,
                format!("the request body is larger than {MAX_SCIM_BODY_BYTES} bytes"),
            )
        })?;
    serde_json::from_slice(&bytes)
        .map_err(|e| ScimError::invalid_syntax(format!("the body is not JSON: {e}")))
}

fn version_of(resource: &Value) -> Option<String> {
    resource
        .get("meta")
        .and_then(|m| m.get("version"))
        .and_then(Value::as_str)
        .map(ToOwned::to_owned)
}

fn scim_response(status: StatusCode, body: &Value, etag: Option<&str>, location: bool) -> Response {
    let mut response = (status, body.to_string()).into_response();
    let headers = response.headers_mut();
    headers.insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON));
    if let Some(v) = etag.and_then(|e| HeaderValue::from_str(e).ok()) {
        headers.insert(header::ETAG, v);
    }
    if location
        && let Some(v) = body
            .get("meta")
            .and_then(|m| m.get("location"))
            .and_then(Value::as_str)
            .and_then(|l| HeaderValue::from_str(l).ok())
    {
        headers.insert(header::LOCATION, v);
    }
    response
}

fn respond(result: Result<Response, ScimError>) -> Response {
    result.unwrap_or_else(|e| error_response(&e))
}

/// Renders a full resource: its ETag, then the projection.
fn resource_response(
    rt: &ResourceType,
    status: StatusCode,
    full: &Value,
    projection: &Projection,
    location: bool,
) -> Response {
    let etag = version_of(full);
    let mut shown = projection.apply(rt, full);
    if location && let (Some(obj), Some(meta)) = (shown.as_object_mut(), full.get("meta")) {
        obj.entry("meta").or_insert_with(|| meta.clone());
    }
    scim_response(status, &shown, etag.as_deref(), location)
}

async fn list(state: ApiState, rt: &ResourceType, request: Request) -> Result<Response, ScimError> {
    let (ctx, _) = ctx(request)?;
    let query =
        ListQuery::from_query_pairs(ctx.query.iter().map(|(k, v)| (k.as_str(), v.as_str())))?;
    let service = ctx.service(&state, MAX_RESULTS).await?;
    let page = service.list(rt, &query).await?;
    Ok(scim_response(StatusCode::OK, &page.to_json(), None, false))
}

async fn search(
    state: ApiState,
    rt: &ResourceType,
    request: Request,
) -> Result<Response, ScimError> {
    let (ctx, request) = ctx(request)?;
    let query = ListQuery::from_search_request(&body_json(request).await?)?;
    let service = ctx.service(&state, MAX_RESULTS).await?;
    let page = service.list(rt, &query).await?;
    Ok(scim_response(StatusCode::OK, &page.to_json(), None, false))
}

async fn create(
    state: ApiState,
    rt: &ResourceType,
    request: Request,
) -> Result<Response, ScimError> {
    let (ctx, request) = ctx(request)?;
    let projection = ctx.projection()?;
    let body = body_json(request).await?;
    let service = ctx.service(&state, MAX_RESULTS).await?;
    let full = service.create(rt, &body, &Projection::default()).await?;
    push(&state, &ctx, rt, &full, false).await;
    Ok(resource_response(
        rt,
        StatusCode::CREATED,
        &full,
        &projection,
        true,
    ))
}

/// Hands a user the identity provider wrote to identity lifecycle, as a
/// lifecycle event of the person (see `crate::identity::scim_push`). The
/// SCIM write stands whatever happens here; a failure is logged, and the
/// person is brought in line by the next write or a reconciliation.
async fn push(
    state: &ApiState,
    ctx: &Ctx,
    rt: &ResourceType,
    user: &serde_json::Value,
    deleted: bool,
) {
    if rt.id != ResourceType::user().id {
        return;
    }
    let tenant = ctx.caller.tenant.id;
    match state.app.identity.scim_written(tenant, user, deleted).await {
        Ok(Some(done)) => {
            tracing::info!(%tenant, person = %done.person, status = %done.status, duplicate = done.duplicate, "SCIM user applied as a lifecycle event");
        }
        Ok(None) => {}
        Err(err) => {
            tracing::warn!(%tenant, error = %err, "a SCIM user could not be applied as a lifecycle event")
        }
    }
}

async fn get_one(
    state: ApiState,
    rt: &ResourceType,
    id: String,
    request: Request,
) -> Result<Response, ScimError> {
    let (ctx, _) = ctx(request)?;
    let projection = ctx.projection()?;
    let service = ctx.service(&state, MAX_RESULTS).await?;
    let full = service.get(rt, &id, &Projection::default()).await?;
    if let (Some(none_match), Some(version)) =
        (ctx.header(header::IF_NONE_MATCH), version_of(&full))
        && let Some(n) = gatehouse_scim::meta::etag_version(&version)
        && etag_list_matches(none_match, n)
    {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        if let Ok(v) = HeaderValue::from_str(&version) {
            response.headers_mut().insert(header::ETAG, v);
        }
        return Ok(response);
    }
    Ok(resource_response(
        rt,
        StatusCode::OK,
        &full,
        &projection,
        false,
    ))
}

/// PUT (replace) or PATCH of one resource.
#[derive(Clone, Copy)]
enum Update {
    Replace,
    Patch,
}

async fn update_one(
    state: ApiState,
    rt: &ResourceType,
    id: String,
    request: Request,
    update: Update,
) -> Result<Response, ScimError> {
    let (ctx, request) = ctx(request)?;
    let projection = ctx.projection()?;
    let body = body_json(request).await?;
    let service = ctx.service(&state, MAX_RESULTS).await?;
    let if_match = ctx.header(header::IF_MATCH);
    let all = Projection::default();
    let full = match update {
        Update::Replace => service.replace(rt, &id, &body, if_match, &all).await?,
        Update::Patch => service.patch(rt, &id, &body, if_match, &all).await?,
    };
    push(&state, &ctx, rt, &full, false).await;
    Ok(resource_response(
        rt,
        StatusCode::OK,
        &full,
        &projection,
        false,
    ))
}

async fn delete_one(
    state: ApiState,
    rt: &ResourceType,
    id: String,
    request: Request,
) -> Result<Response, ScimError> {
    let (ctx, _) = ctx(request)?;
    let service = ctx.service(&state, MAX_RESULTS).await?;
    // A deleted user is a leaver: what it was is read first.
    let before = if rt.id == ResourceType::user().id {
        service.get(rt, &id, &Projection::default()).await.ok()
    } else {
        None
    };
    service
        .delete(rt, &id, ctx.header(header::IF_MATCH))
        .await?;
    if let Some(before) = before {
        push(&state, &ctx, rt, &before, true).await;
    }
    Ok(StatusCode::NO_CONTENT.into_response())
}

macro_rules! typed_handlers {
    ($rt:expr, $list:ident, $search:ident, $create:ident, $get:ident, $put:ident, $patch:ident, $delete:ident) => {
        async fn $list(State(state): State<ApiState>, request: Request) -> Response {
            respond(list(state, $rt, request).await)
        }
        async fn $search(State(state): State<ApiState>, request: Request) -> Response {
            respond(search(state, $rt, request).await)
        }
        async fn $create(State(state): State<ApiState>, request: Request) -> Response {
            respond(create(state, $rt, request).await)
        }
        async fn $get(
            State(state): State<ApiState>,
            Path((_, id)): Path<(String, String)>,
            request: Request,
        ) -> Response {
            respond(get_one(state, $rt, id, request).await)
        }
        async fn $put(
            State(state): State<ApiState>,
            Path((_, id)): Path<(String, String)>,
            request: Request,
        ) -> Response {
            respond(update_one(state, $rt, id, request, Update::Replace).await)
        }
        async fn $patch(
            State(state): State<ApiState>,
            Path((_, id)): Path<(String, String)>,
            request: Request,
        ) -> Response {
            respond(update_one(state, $rt, id, request, Update::Patch).await)
        }
        async fn $delete(
            State(state): State<ApiState>,
            Path((_, id)): Path<(String, String)>,
            request: Request,
        ) -> Response {
            respond(delete_one(state, $rt, id, request).await)
        }
    };
}

typed_handlers!(
    ResourceType::user(),
    list_users,
    search_users,
    create_user,
    get_user,
    put_user,
    patch_user,
    delete_user
);
typed_handlers!(
    ResourceType::group(),
    list_groups,
    search_groups,
    create_group,
    get_group,
    put_group,
    patch_group,
    delete_group
);

/// `POST /.search` at the root (RFC 7644 §3.4.3): both types, each
/// filtered by its own schema, then sorted together (`sortBy` is resolved
/// in the User schema, whose common attributes — `id`, `externalId`,
/// `displayName`, `meta.*` — sort the same in Group; with no `sortBy`,
/// Users come first), paged together, and each projected by its own
/// schema.
async fn search_root(State(state): State<ApiState>, request: Request) -> Response {
    respond(
        async {
            let (ctx, request) = ctx(request)?;
            let query = ListQuery::from_search_request(&body_json(request).await?)?;
            let service = ctx.service(&state, usize::MAX).await?;
            let per_type = ListQuery {
                sort_by: None,
                start_index: None,
                count: None,
                projection: Projection::default(),
                ..query.clone()
            };
            let mut all = Vec::new();
            for rt in ResourceType::all() {
                all.extend(service.list(rt, &per_type).await?.resources);
            }
            if let Some(by) = &query.sort_by {
                sort_resources(ResourceType::user(), &mut all, by, query.sort_order);
            }
            let mut page: ListResponse =
                Page::new(query.start_index, query.count, MAX_RESULTS).apply(all);
            for resource in &mut page.resources {
                let kind = resource
                    .get("meta")
                    .and_then(|m| m.get("resourceType"))
                    .and_then(Value::as_str)
                    .unwrap_or_default();
                if let Some(rt) = ResourceType::all().iter().find(|rt| rt.id == kind) {
                    *resource = query.projection.apply(rt, resource);
                }
            }
            Ok(scim_response(StatusCode::OK, &page.to_json(), None, false))
        }
        .await,
    )
}

async fn service_provider_config(request: Request) -> Response {
    respond(ctx(request).map(|(ctx, _)| {
        let doc = ServiceProviderConfig::default().to_json(&ctx.base);
        scim_response(StatusCode::OK, &doc, None, false)
    }))
}

async fn resource_types(request: Request) -> Response {
    respond(ctx(request).map(|(ctx, _)| {
        scim_response(
            StatusCode::OK,
            &resource_types_list(&ctx.base).to_json(),
            None,
            false,
        )
    }))
}

async fn resource_type(Path((_, id)): Path<(String, String)>, request: Request) -> Response {
    respond(ctx(request).and_then(|(ctx, _)| {
        find_resource_type_document(&id, &ctx.base)
            .map(|doc| scim_response(StatusCode::OK, &doc, None, false))
            .ok_or_else(|| ScimError::not_found(format!("no resource type {id}")))
    }))
}

async fn schemas(request: Request) -> Response {
    respond(ctx(request).map(|(ctx, _)| {
        scim_response(
            StatusCode::OK,
            &schemas_list(&ctx.base).to_json(),
            None,
            false,
        )
    }))
}

async fn schema(Path((_, id)): Path<(String, String)>, request: Request) -> Response {
    respond(ctx(request).and_then(|(ctx, _)| {
        find_schema_document(&id, &ctx.base)
            .map(|doc| scim_response(StatusCode::OK, &doc, None, false))
            .ok_or_else(|| ScimError::not_found(format!("no schema {id}")))
    }))
}

async fn not_implemented() -> Response {
    error_response(&ScimError::new(
        501,
        None,
        "not implemented: /Me and /Bulk are not supported",
    ))
}

async fn unknown() -> Response {
    error_response(&ScimError::not_found("no such SCIM endpoint"))
}
