//! The HTTP edge: the REST API under `/api/v1`, its OpenAPI document,
//! health, readiness and metrics.
//!
//! Routes are registered through `utoipa_axum`, so every API route is in
//! the OpenAPI document by construction; tests walk that document to call
//! every operation as a stranger.

mod audit;
mod audit_read;
mod connectors;
mod extract;
mod gates;
mod health;
pub mod hooks;
mod identity;
mod kb;
mod onboarding;
mod openapi;
mod operators;
mod oscal;
pub mod permissions;
pub mod scim;
mod scim_tokens;
mod tenant_groups;
mod tenants;
mod workflows;

use std::future::Future;
use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::extract::{DefaultBodyLimit, FromRequestParts, MatchedPath, Request, State};
use axum::http::{HeaderName, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use tower_http::LatencyUnit;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::app::App;
use crate::error::AppError;
use crate::metrics::Metrics;

pub use openapi::openapi;

/// The default limit on request bodies: the API takes small JSON documents.
pub const DEFAULT_MAX_BODY_BYTES: usize = 64 * 1024;

/// What every handler can reach.
#[derive(Debug, Clone)]
pub struct ApiState {
    /// The services.
    pub app: Arc<App>,
    /// The metrics.
    pub metrics: Arc<Metrics>,
}

/// HTTP settings.
#[derive(Debug, Clone, Copy)]
pub struct HttpConfig {
    /// Requests with larger bodies get 413.
    pub max_body_bytes: usize,
}

impl Default for HttpConfig {
    fn default() -> Self {
        Self {
            max_body_bytes: DEFAULT_MAX_BODY_BYTES,
        }
    }
}

fn api_routes() -> OpenApiRouter<ApiState> {
    OpenApiRouter::with_openapi(openapi::base())
        .routes(routes!(tenants::list_tenants, tenants::create_tenant))
        .routes(routes!(
            tenants::get_tenant,
            tenants::update_tenant,
            tenants::delete_tenant
        ))
        .routes(routes!(tenants::activate_tenant))
        .routes(routes!(tenants::suspend_tenant))
        .routes(routes!(tenants::offboard_tenant))
        .routes(routes!(tenants::list_secrets))
        .routes(routes!(tenants::put_secret, tenants::delete_secret))
        .routes(routes!(
            tenant_groups::list_groups,
            tenant_groups::create_group
        ))
        .routes(routes!(
            tenant_groups::get_group,
            tenant_groups::delete_group
        ))
        .routes(routes!(
            tenant_groups::add_member,
            tenant_groups::remove_member
        ))
        .routes(routes!(gates::list_gates))
        .routes(routes!(gates::set_gate, gates::clear_gate))
        .routes(routes!(operators::whoami))
        .routes(routes!(
            operators::list_operators,
            operators::create_operator
        ))
        .routes(routes!(operators::disable_operator))
        .routes(routes!(operators::enable_operator))
        .routes(routes!(operators::set_scope))
        .routes(routes!(operators::list_tokens, operators::issue_token))
        .routes(routes!(operators::revoke_token))
        .routes(routes!(workflows::submit_event))
        .routes(routes!(workflows::list_workflows))
        .routes(routes!(workflows::get_workflow))
        .routes(routes!(workflows::cancel_workflow))
        .routes(routes!(workflows::compensate_workflow))
        .routes(routes!(workflows::rollback_step))
        .routes(routes!(workflows::list_approvals))
        .routes(routes!(workflows::get_approval))
        .routes(routes!(workflows::approve))
        .routes(routes!(workflows::reject))
        .routes(routes!(workflows::modify))
        .routes(routes!(workflows::list_tasks))
        .routes(routes!(workflows::get_task))
        .routes(routes!(workflows::complete_task))
        .routes(routes!(audit::public_key))
        .routes(routes!(oscal::export_oscal))
        .routes(routes!(audit::list_checkpoints, audit::issue_checkpoint))
        .routes(routes!(audit::latest_checkpoint))
        .routes(routes!(audit_read::list_entries))
        .routes(routes!(audit_read::list_logs))
        .routes(routes!(audit_read::get_entry))
        .routes(routes!(audit_read::inclusion_proof))
        .routes(routes!(audit_read::consistency_proof))
        .routes(routes!(audit_read::verify_log))
        .routes(routes!(onboarding::list_onboardings))
        .routes(routes!(onboarding::get_onboarding))
        .routes(routes!(onboarding::list_items))
        .routes(routes!(onboarding::receive_item))
        .routes(routes!(onboarding::waive_item))
        .routes(routes!(onboarding::hand_over_secret))
        .merge(
            // Files are larger than the API's JSON bodies.
            OpenApiRouter::new()
                .routes(routes!(onboarding::upload_file, onboarding::download_file))
                .layer(DefaultBodyLimit::max(
                    crate::onboarding::MAX_FILE_BYTES + 1024,
                )),
        )
        .routes(routes!(connectors::list_connectors))
        .routes(routes!(
            connectors::put_connector,
            connectors::delete_connector
        ))
        .routes(routes!(kb::list_articles, kb::create_article))
        .routes(routes!(kb::get_article, kb::update_article))
        .routes(routes!(kb::article_versions))
        .routes(routes!(kb::search))
        .routes(routes!(
            scim_tokens::list_scim_tokens,
            scim_tokens::create_scim_token
        ))
        .routes(routes!(scim_tokens::revoke_scim_token))
        .routes(routes!(identity::post_event))
        .merge(
            // CSV files are larger than the API's JSON bodies.
            OpenApiRouter::new()
                .routes(routes!(identity::import))
                .layer(DefaultBodyLimit::max(
                    crate::app::identity::MAX_IMPORT_BYTES + 1024,
                )),
        )
        .routes(routes!(identity::list_people))
        .routes(routes!(identity::get_person))
        .routes(routes!(identity::reconcile))
        .routes(routes!(identity::get_policy, identity::put_policy))
        .routes(routes!(identity::preview_policy))
        .routes(routes!(identity::drift))
        .routes(routes!(identity::remediate))
        .routes(routes!(
            identity::request_elevation,
            identity::list_elevations
        ))
        .routes(routes!(identity::revoke_elevation))
        .routes(routes!(identity::revocations))
}

/// The whole HTTP application.
pub fn router(state: ApiState, config: HttpConfig) -> Router {
    let (api, doc) = api_routes().split_for_parts();
    let doc = Arc::new(doc);
    let x_request_id = HeaderName::from_static("x-request-id");
    Router::new()
        .merge(api.route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            gate,
        )))
        .route(
            "/api/v1/openapi.json",
            axum::routing::get(move || {
                let doc = doc.clone();
                async move { axum::Json(doc.as_ref().clone()) }
            }),
        )
        .route("/healthz", axum::routing::get(health::healthz))
        .route("/readyz", axum::routing::get(health::readyz))
        .route("/metrics", axum::routing::get(health::metrics))
        .route(
            "/hooks/{source}/{tenant}",
            axum::routing::post(hooks::receive).layer(DefaultBodyLimit::max(hooks::MAX_HOOK_BODY_BYTES)),
        )
        .merge(scim::routes(state.clone()))
        .merge(crate::console::routes())
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(axum::middleware::from_fn_with_state(state.clone(), track))
        .layer(DefaultBodyLimit::max(config.max_body_bytes))
        .layer(PropagateRequestIdLayer::new(x_request_id.clone()))
        .layer(TraceLayer::new_for_http().make_span_with(|request: &Request| {
            let id = request.headers().get("x-request-id").and_then(|v| v.to_str().ok()).unwrap_or("-");
            // Path only: never headers (tokens) or query strings.
            tracing::info_span!("request", method = %request.method(), path = %request.uri().path(), request_id = %id)
        })
        .on_request(())
        .on_response(DefaultOnResponse::new().level(tracing::Level::INFO).latency_unit(LatencyUnit::Micros)))
        .layer(SetRequestIdLayer::new(x_request_id, MakeRequestUuid))
        .with_state(state)
}

/// The first line of every API route, before its body is read:
/// authenticates the request (401); answers a scoped operator's request
/// about a tenant outside their scope (`{tenant}` in the path) with the same
/// 404 as a missing tenant (the policy `operators-stay-in-their-tenants`);
/// and refuses a role without the operation's permission
/// ([`permissions::OPERATIONS`]) with 403. The services ask the policies
/// again with the resource at hand. The actor travels on to the handler, so
/// the token is looked up once. A route missing from the table is refused
/// (500), never let through.
async fn gate(
    State(state): State<ApiState>,
    matched: MatchedPath,
    params: axum::extract::RawPathParams,
    request: Request,
    next: Next,
) -> Response {
    let Some(need) = permissions::need_of(request.method(), matched.as_str()) else {
        return AppError::Internal(format!(
            "no permission is declared for {} {}",
            request.method(),
            matched.as_str()
        ))
        .into_response();
    };
    if need == permissions::Need::Public {
        return next.run(request).await;
    }
    let (mut parts, body) = request.into_parts();
    let actor = match extract::Auth::from_request_parts(&mut parts, &state).await {
        Ok(extract::Auth(actor)) => actor,
        Err(err) => return err.into_response(),
    };
    let tenant = params
        .iter()
        .find(|(name, _)| *name == "tenant")
        .map(|(_, value)| value.to_owned());
    if let Some(tenant) = tenant
        && actor.within().is_some()
    {
        // Any permission will do: every role may see its own tenants.
        let scoped = state
            .app
            .tenant_for(
                &actor,
                crate::authz::Permission::ReadTenants,
                &crate::app::TenantRef::parse(&tenant),
            )
            .await;
        if let Err(err @ AppError::NotFound { .. }) = scoped {
            return err.into_response();
        }
    }
    if let permissions::Need::Role(permission) = need
        && let Err(err) = crate::authz::authorize_role(&actor, permission)
    {
        return err.into_response();
    }
    parts.extensions.insert(extract::Authenticated(actor));
    next.run(Request::from_parts(parts, body)).await
}

/// Records every request's route, status and latency.
async fn track(State(state): State<ApiState>, request: Request, next: Next) -> Response {
    let started = Instant::now();
    let method = request.method().to_string();
    let route = request
        .extensions()
        .get::<MatchedPath>()
        .map(|p| p.as_str().to_owned())
        .unwrap_or_else(|| "unmatched".into());
    let response = next.run(request).await;
    state.metrics.observe(
        &method,
        &route,
        response.status().as_u16(),
        started.elapsed().as_secs_f64(),
    );
    response
}

async fn not_found() -> AppError {
    AppError::NotFound {
        code: "not_found",
        message: "no such route".into(),
    }
}

async fn method_not_allowed() -> Response {
    AppError::BadRequest {
        status: StatusCode::METHOD_NOT_ALLOWED,
        code: "method_not_allowed",
        message: "this route does not accept that method".into(),
    }
    .into_response()
}

/// Serves `router` on `listener` until `shutdown` completes, then lets
/// requests in flight finish.
pub async fn serve(
    listener: tokio::net::TcpListener,
    router: Router,
    shutdown: impl Future<Output = ()> + Send + 'static,
) -> std::io::Result<()> {
    axum::serve(listener, router)
        .with_graceful_shutdown(shutdown)
        .await
}
