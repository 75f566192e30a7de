//! The HTTP side: the routes, the token endpoint of
//! login.microsoftonline.com, and how every Graph request finds its tenant
//! (from the bearer token, never from the request). Resources are in
//! [`super::directory`] and [`super::gdap`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use super::model::{Directory, Fault, Tenant, Token, guid, now_rfc3339};
use super::odata::decode_form;
use super::{batch, directory, gdap, tenants};
use crate::emulator::{Harness, IDEMPOTENCY_KEY, lock};

/// The only scope the token endpoint grants.
pub const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";

/// Directory role templates the emulated tenants have activated.
pub(super) const KNOWN_ROLES: &[&str] = &[
    "62e90394-69f5-4237-9190-012177145e10", // Global Administrator
    "e8611ab8-c189-46e8-94e1-60213ab1f814", // Privileged Role Administrator
    "fe930be7-5e62-47db-91af-98c3a49a38b1", // User Administrator
    "729827e3-9c14-49f7-bb1b-9608f156bbb8", // Helpdesk Administrator
    "194ae4cb-b126-40b2-bd5b-6091b380977d", // Security Administrator
    "29232cdf-9323-42fd-ade2-1d097af3e4de", // Exchange Administrator
    "4d6ac14f-3453-41d0-bef9-a3e0c569773a", // License Administrator
];

/// The Global Administrator role template.
pub(super) const GLOBAL_ADMIN: &str = "62e90394-69f5-4237-9190-012177145e10";

/// State shared by the handlers and the test-facing handle.
#[derive(Default)]
pub(super) struct Shared {
    pub harness: Harness,
    pub dir: Mutex<Directory>,
    /// The `auto_accept_gdap` knob: the customer accepts every relationship
    /// locked for approval after this long.
    pub auto_accept_gdap: Mutex<Option<std::time::Duration>>,
}

impl std::fmt::Debug for Shared {
    /// The directory holds app secrets and tokens: only the harness shows.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Shared")
            .field("harness", &self.harness)
            .finish_non_exhaustive()
    }
}

pub(super) type St = State<Arc<Shared>>;
pub(super) type Q = Query<HashMap<String, String>>;
pub(super) type Answer = Result<Response, Fault>;

pub(super) fn router(shared: Arc<Shared>) -> Router {
    let inner = Router::new()
        .route("/{tenant}/oauth2/v2.0/token", post(token))
        .route(
            "/v1.0/users",
            get(directory::list_users).post(directory::create_user),
        )
        .route(
            "/v1.0/users/{id}",
            get(directory::get_user)
                .patch(directory::patch_user)
                .delete(directory::delete_user),
        )
        .route(
            "/v1.0/users/{id}/assignLicense",
            post(directory::assign_license),
        )
        .route(
            "/v1.0/users/{id}/licenseDetails",
            get(directory::license_details),
        )
        .route(
            "/v1.0/users/{id}/revokeSignInSessions",
            post(directory::revoke_sessions),
        )
        .route("/v1.0/subscribedSkus", get(directory::subscribed_skus))
        .route(
            "/v1.0/groups",
            get(directory::list_groups).post(directory::create_group),
        )
        .route("/v1.0/groups/{id}", get(directory::get_group))
        .route("/v1.0/groups/{id}/members", get(directory::group_members))
        .route(
            "/v1.0/groups/{id}/members/$ref",
            post(directory::add_group_member),
        )
        .route(
            "/v1.0/groups/{id}/members/{member}/$ref",
            axum::routing::delete(directory::remove_group_member),
        )
        .route("/v1.0/{role}/members", get(directory::role_members))
        .route(
            "/v1.0/{role}/members/$ref",
            post(directory::add_role_member),
        )
        .route(
            "/v1.0/{role}/members/{member}/$ref",
            axum::routing::delete(directory::remove_role_member),
        )
        .route("/v1.0/users/{id}/memberOf", get(directory::member_of))
        .route("/v1.0/organization", get(directory::organization))
        .route(
            "/v1.0/tenantRelationships/delegatedAdminRelationships",
            get(gdap::list_relationships).post(gdap::create_relationship),
        )
        .route(
            "/v1.0/tenantRelationships/{function}",
            get(tenants::tenant_information),
        )
        .route(
            "/v1.0/tenantRelationships/delegatedAdminRelationships/{id}",
            get(gdap::get_relationship).delete(gdap::delete_relationship),
        )
        .route(
            "/v1.0/tenantRelationships/delegatedAdminRelationships/{id}/requests",
            post(gdap::relationship_request),
        )
        .route(
            "/v1.0/tenantRelationships/delegatedAdminRelationships/{id}/accessAssignments",
            get(gdap::list_assignments).post(gdap::create_assignment),
        )
        .fallback(|| async {
            Fault::new(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "Resource not found for the segment.",
            )
        })
        .with_state(Arc::clone(&shared));
    let harness = shared.harness.clone();
    inner.clone().route(
        "/v1.0/$batch",
        post(batch::batch).with_state((inner, harness)),
    )
}

// ---- identity platform ----------------------------------------------------

/// An identity-platform (AADSTS) error: `{"error","error_description"}`.
fn aad_error(status: StatusCode, error: &str, description: &str) -> Response {
    (
        status,
        axum::Json(json!({
            "error": error,
            "error_description": description,
            "error_codes": [],
            "timestamp": now_rfc3339(),
            "trace_id": guid(),
            "correlation_id": guid(),
        })),
    )
        .into_response()
}

async fn token(State(shared): St, Path(tenant): Path<String>, body: Bytes) -> Response {
    let form = decode_form(&body);
    let field = |name: &str| form.get(name).map(String::as_str).unwrap_or("");
    if field("grant_type") != "client_credentials" {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "unsupported_grant_type",
            "AADSTS70003: The app requested an unsupported grant type.",
        );
    }
    if field("scope") != GRAPH_SCOPE {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_scope",
            "AADSTS1002012: The provided value for scope is not valid. Client credential flows must have a scope value with /.default suffixed to the resource identifier.",
        );
    }
    let client_id = field("client_id");
    let mut dir = lock(&shared.dir);
    let Some(t) = dir.tenants.get(&tenant) else {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "invalid_request",
            &format!("AADSTS90002: Tenant '{tenant}' not found."),
        );
    };
    let Some(secret) = t.apps.get(client_id) else {
        return aad_error(
            StatusCode::BAD_REQUEST,
            "unauthorized_client",
            &format!(
                "AADSTS700016: Application with identifier '{client_id}' was not found in the directory '{tenant}'. The tenant's administrator may not have consented to it."
            ),
        );
    };
    if secret != field("client_secret") {
        return aad_error(
            StatusCode::UNAUTHORIZED,
            "invalid_client",
            &format!("AADSTS7000215: Invalid client secret provided for app '{client_id}'."),
        );
    }
    let header = URL_SAFE_NO_PAD.encode(br#"{"typ":"JWT","alg":"none"}"#);
    let claims = URL_SAFE_NO_PAD.encode(
        json!({
            "aud": "https://graph.microsoft.com",
            "tid": tenant,
            "appid": client_id,
            "jti": guid(),
        })
        .to_string(),
    );
    let signature = URL_SAFE_NO_PAD.encode(guid());
    let access_token = format!("{header}.{claims}.{signature}");
    dir.tokens.insert(
        access_token.clone(),
        Token {
            tenant: tenant.clone(),
        },
    );
    drop(dir);
    shared.harness.count("tokens.issued");
    shared.harness.count(&format!("tokens.issued:{tenant}"));
    axum::Json(json!({
        "token_type": "Bearer",
        "expires_in": 3599,
        "ext_expires_in": 3599,
        "access_token": access_token,
    }))
    .into_response()
}

/// The tenant the request's bearer token was issued in.
pub(super) fn caller(shared: &Shared, headers: &HeaderMap) -> Result<String, Fault> {
    let unauthorized = |m: &str| {
        Fault::new(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            m.to_owned(),
        )
    };
    let value = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let token = value
        .strip_prefix("Bearer ")
        .filter(|t| !t.is_empty())
        .ok_or_else(|| unauthorized("Access token is empty."))?;
    lock(&shared.dir)
        .tokens
        .get(token)
        .map(|t| t.tenant.clone())
        .ok_or_else(|| unauthorized("Access token validation failure. Lifetime validation failed, the token is expired."))
}

/// Runs `f` on the caller's tenant.
pub(super) fn with_tenant<T>(
    shared: &Shared,
    headers: &HeaderMap,
    f: impl FnOnce(&mut Tenant, &Harness) -> Result<T, Fault>,
) -> Result<T, Fault> {
    let tenant = caller(shared, headers)?;
    let mut dir = lock(&shared.dir);
    let t = dir.tenants.get_mut(&tenant).ok_or_else(|| {
        Fault::new(
            StatusCode::UNAUTHORIZED,
            "InvalidAuthenticationToken",
            "The token's tenant no longer exists.",
        )
    })?;
    f(t, &shared.harness)
}

/// The caller's `Idempotency-Key`, scoped to its tenant and the request
/// path so that one tenant's key never replays another tenant's answer.
pub(super) fn scoped_key(headers: &HeaderMap, tenant: &str, path: &str) -> HeaderMap {
    let mut scoped = HeaderMap::new();
    if let Some(key) = headers
        .get(IDEMPOTENCY_KEY)
        .and_then(|v| v.to_str().ok())
        .filter(|k| !k.is_empty())
        && let Ok(v) = HeaderValue::from_str(&format!("{tenant}|{path}|{key}"))
    {
        scoped.insert(IDEMPOTENCY_KEY, v);
    }
    scoped
}

pub(super) fn parse_json(body: &Bytes) -> Result<Value, Fault> {
    serde_json::from_slice::<Value>(body)
        .ok()
        .filter(Value::is_object)
        .ok_or_else(|| {
            Fault::bad_request(
                "Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format.",
            )
        })
}

pub(super) fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

pub(super) fn ok(value: Value) -> Response {
    axum::Json(value).into_response()
}

/// A required, non-blank string property.
pub(super) fn text<'a>(body: &'a Value, name: &str, resource: &str) -> Result<&'a str, Fault> {
    body.get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| {
            Fault::bad_request(format!(
                "Invalid value specified for property '{name}' of resource '{resource}'."
            ))
        })
}

/// A required boolean property.
pub(super) fn flag(body: &Value, name: &str, resource: &str) -> Result<bool, Fault> {
    body.get(name).and_then(Value::as_bool).ok_or_else(|| {
        Fault::bad_request(format!(
            "Invalid value specified for property '{name}' of resource '{resource}'."
        ))
    })
}
