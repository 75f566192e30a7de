//! The HTTP side: the token endpoint of login.microsoftonline.com and the
//! Graph v1.0 resources, resolved against the tenant the bearer token was
//! issued in. Nothing here lets a token reach another tenant's directory.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{OriginalUri, Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use serde_json::{Value, json};

use super::model::{
    self, DEFAULT_USER_FIELDS, Directory, Fault, Group, GroupKind, Relationship, Tenant, Token,
    User, guid, now_rfc3339,
};
use super::odata::{Options, decode_form};
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
const GLOBAL_ADMIN: &str = "62e90394-69f5-4237-9190-012177145e10";

/// State shared by the handlers and the test-facing handle.
#[derive(Debug, Default)]
pub(super) struct Shared {
    pub harness: Harness,
    pub dir: Mutex<Directory>,
}

type St = State<Arc<Shared>>;
type Q = Query<HashMap<String, String>>;
type Answer = Result<Response, Fault>;

pub(super) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route("/{tenant}/oauth2/v2.0/token", post(token))
        .route("/v1.0/users", get(list_users).post(create_user))
        .route(
            "/v1.0/users/{id}",
            get(get_user).patch(patch_user).delete(delete_user),
        )
        .route("/v1.0/users/{id}/assignLicense", post(assign_license))
        .route("/v1.0/users/{id}/licenseDetails", get(license_details))
        .route(
            "/v1.0/users/{id}/revokeSignInSessions",
            post(revoke_sessions),
        )
        .route("/v1.0/subscribedSkus", get(subscribed_skus))
        .route("/v1.0/groups", get(list_groups).post(create_group))
        .route("/v1.0/groups/{id}", get(get_group))
        .route("/v1.0/groups/{id}/members", get(group_members))
        .route("/v1.0/groups/{id}/members/$ref", post(add_group_member))
        .route(
            "/v1.0/groups/{id}/members/{member}/$ref",
            axum::routing::delete(remove_group_member),
        )
        .route("/v1.0/{role}/members", get(role_members))
        .route("/v1.0/{role}/members/$ref", post(add_role_member))
        .route(
            "/v1.0/tenantRelationships/delegatedAdminRelationships",
            get(list_relationships).post(create_relationship),
        )
        .route(
            "/v1.0/tenantRelationships/delegatedAdminRelationships/{id}",
            get(get_relationship).delete(delete_relationship),
        )
        .route(
            "/v1.0/tenantRelationships/delegatedAdminRelationships/{id}/requests",
            post(relationship_request),
        )
        .route(
            "/v1.0/tenantRelationships/delegatedAdminRelationships/{id}/accessAssignments",
            get(list_assignments).post(create_assignment),
        )
        .fallback(|| async {
            Fault::new(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                "Resource not found for the segment.",
            )
        })
        .with_state(shared)
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
fn caller(shared: &Shared, headers: &HeaderMap) -> Result<String, Fault> {
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
fn with_tenant<T>(
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
fn scoped_key(headers: &HeaderMap, tenant: &str, path: &str) -> HeaderMap {
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

fn parse_json(body: &Bytes) -> Result<Value, Fault> {
    serde_json::from_slice::<Value>(body)
        .ok()
        .filter(Value::is_object)
        .ok_or_else(|| {
            Fault::bad_request(
                "Unable to read JSON request payload. Please ensure Content-Type header is set and payload is of valid JSON format.",
            )
        })
}

fn no_content() -> Response {
    StatusCode::NO_CONTENT.into_response()
}

fn ok(value: Value) -> Response {
    axum::Json(value).into_response()
}

// ---- users ------------------------------------------------------------------

fn user_sample() -> Value {
    User {
        id: String::new(),
        upn: String::new(),
        display_name: String::new(),
        mail_nickname: String::new(),
        account_enabled: true,
        usage_location: None,
        licenses: Vec::new(),
        sessions_valid_from: String::new(),
        created: String::new(),
    }
    .json()
}

async fn list_users(State(shared): St, headers: HeaderMap, Query(q): Q) -> Answer {
    let options = Options::parse(&q)?;
    options.check_filter(&user_sample(), "user")?;
    let items = with_tenant(&shared, &headers, |t, _| {
        Ok(t.users
            .values()
            .map(User::json)
            .filter(|u| options.matches(u))
            .collect::<Vec<_>>())
    })?;
    Ok(ok(options.page(
        items,
        Some(DEFAULT_USER_FIELDS),
        "user",
        &headers,
        "/v1.0/users",
        "users",
    )?))
}

fn text<'a>(body: &'a Value, name: &str, resource: &str) -> Result<&'a str, Fault> {
    body.get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .ok_or_else(|| {
            Fault::bad_request(format!(
                "Invalid value specified for property '{name}' of resource '{resource}'."
            ))
        })
}

fn flag(body: &Value, name: &str, resource: &str) -> Result<bool, Fault> {
    body.get(name).and_then(Value::as_bool).ok_or_else(|| {
        Fault::bad_request(format!(
            "Invalid value specified for property '{name}' of resource '{resource}'."
        ))
    })
}

fn check_password(password: &str) -> Result<(), Fault> {
    let classes = [
        password.chars().any(|c| c.is_ascii_lowercase()),
        password.chars().any(|c| c.is_ascii_uppercase()),
        password.chars().any(|c| c.is_ascii_digit()),
        password.chars().any(|c| !c.is_ascii_alphanumeric()),
    ];
    if password.chars().count() < 8 || classes.iter().filter(|c| **c).count() < 3 {
        return Err(Fault::bad_request(
            "The specified password does not comply with password complexity requirements. Please provide a different password.",
        ));
    }
    Ok(())
}

fn check_usage_location(value: &Value) -> Result<Option<String>, Fault> {
    match value {
        Value::Null => Ok(None),
        Value::String(s) if s.len() == 2 && s.chars().all(|c| c.is_ascii_alphabetic()) => {
            Ok(Some(s.to_ascii_uppercase()))
        }
        _ => Err(Fault::bad_request(
            "Invalid value specified for property 'usageLocation' of resource 'User'.",
        )),
    }
}

fn new_user(t: &mut Tenant, body: &Value) -> Result<User, Fault> {
    let account_enabled = flag(body, "accountEnabled", "User")?;
    let display_name = text(body, "displayName", "User")?;
    let mail_nickname = text(body, "mailNickname", "User")?;
    let upn = text(body, "userPrincipalName", "User")?;
    let password = body
        .get("passwordProfile")
        .and_then(|p| p.get("password"))
        .and_then(Value::as_str)
        .ok_or_else(|| {
            Fault::bad_request(
                "Invalid value specified for property 'passwordProfile' of resource 'User'.",
            )
        })?;
    check_password(password)?;
    let usage_location = check_usage_location(body.get("usageLocation").unwrap_or(&Value::Null))?;
    let domain = upn.rsplit_once('@');
    let verified = domain.is_some_and(|(local, d)| {
        !local.is_empty() && t.domains.iter().any(|v| v.eq_ignore_ascii_case(d))
    });
    if !verified {
        return Err(Fault::bad_request(
            "Property userPrincipalName is invalid. The domain portion of the userPrincipalName property is invalid. You must use one of the verified domain names in your organization.",
        ));
    }
    if t.user_id(upn).is_some() {
        return Err(Fault::bad_request(
            "Another object with the same value for property userPrincipalName already exists.",
        ));
    }
    let now = now_rfc3339();
    let user = User {
        id: guid(),
        upn: upn.to_owned(),
        display_name: display_name.to_owned(),
        mail_nickname: mail_nickname.to_owned(),
        account_enabled,
        usage_location,
        licenses: Vec::new(),
        sessions_valid_from: now.clone(),
        created: now,
    };
    t.users.insert(user.id.clone(), user.clone());
    Ok(user)
}

async fn create_user(State(shared): St, headers: HeaderMap, body: Bytes) -> Answer {
    let tenant = caller(&shared, &headers)?;
    let body = parse_json(&body)?;
    let scoped = scoped_key(&headers, &tenant, "/v1.0/users");
    let options = Options::default();
    Ok(model::idempotent(&shared.harness, &scoped, || {
        let made = with_tenant(&shared, &headers, |t, harness| {
            let user = new_user(t, &body)?;
            harness.count("users.created");
            let mut answer = options.project(user.json(), Some(DEFAULT_USER_FIELDS), "user")?;
            answer["@odata.context"] =
                json!("https://graph.microsoft.com/v1.0/$metadata#users/$entity");
            Ok(answer)
        });
        made.map(|v| (StatusCode::CREATED, v))
    }))
}

fn user_of(t: &Tenant, id: &str) -> Result<String, Fault> {
    t.user_id(id).ok_or_else(|| Fault::not_found(id))
}

async fn get_user(
    State(shared): St,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Q,
) -> Answer {
    let options = Options::parse(&q)?;
    let user = with_tenant(&shared, &headers, |t, _| {
        let uid = user_of(t, &id)?;
        Ok(t.users.get(&uid).map(User::json))
    })?
    .ok_or_else(|| Fault::not_found(&id))?;
    let mut answer = options.project(user, Some(DEFAULT_USER_FIELDS), "user")?;
    answer["@odata.context"] = json!("https://graph.microsoft.com/v1.0/$metadata#users/$entity");
    Ok(ok(answer))
}

async fn patch_user(
    State(shared): St,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Answer {
    let body = parse_json(&body)?;
    with_tenant(&shared, &headers, |t, harness| {
        let uid = user_of(t, &id)?;
        let mut changed = t
            .users
            .get(&uid)
            .cloned()
            .ok_or_else(|| Fault::not_found(&id))?;
        let Some(fields) = body.as_object() else {
            return Err(Fault::bad_request("Empty Payload."));
        };
        for (name, value) in fields {
            match name.as_str() {
                "accountEnabled" => changed.account_enabled = flag(&body, name, "User")?,
                "displayName" => text(&body, name, "User")?.clone_into(&mut changed.display_name),
                "usageLocation" => changed.usage_location = check_usage_location(value)?,
                "passwordProfile" => {
                    let password = value
                        .get("password")
                        .and_then(Value::as_str)
                        .ok_or_else(|| {
                            Fault::bad_request(
                                "Invalid value specified for property 'passwordProfile' of resource 'User'.",
                            )
                        })?;
                    check_password(password)?;
                }
                "id" | "createdDateTime" | "signInSessionsValidFromDateTime" => {
                    return Err(Fault::bad_request(format!(
                        "Property '{name}' is read-only and cannot be set."
                    )));
                }
                other => {
                    return Err(Fault::bad_request(format!("Invalid property '{other}'.")));
                }
            }
        }
        let disabled =
            !changed.account_enabled && t.users.get(&uid).is_some_and(|u| u.account_enabled);
        t.users.insert(uid, changed);
        harness.count("users.updated");
        if disabled {
            harness.count("users.disabled");
        }
        Ok(no_content())
    })
}

async fn delete_user(State(shared): St, headers: HeaderMap, Path(id): Path<String>) -> Answer {
    with_tenant(&shared, &headers, |t, harness| {
        let uid = user_of(t, &id)?;
        t.users.remove(&uid);
        for group in t.groups.values_mut() {
            group.members.remove(&uid);
        }
        for members in t.roles.values_mut() {
            members.remove(&uid);
        }
        harness.count("users.deleted");
        Ok(no_content())
    })
}

async fn assign_license(
    State(shared): St,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Answer {
    let body = parse_json(&body)?;
    let invalid = || {
        Fault::bad_request(
            "Invalid value specified for property 'addLicenses' or 'removeLicenses' of resource 'User'.",
        )
    };
    let add: Vec<String> = body
        .get("addLicenses")
        .and_then(Value::as_array)
        .ok_or_else(invalid)?
        .iter()
        .map(|l| l.get("skuId").and_then(Value::as_str).map(str::to_owned))
        .collect::<Option<_>>()
        .ok_or_else(invalid)?;
    let remove: Vec<String> = body
        .get("removeLicenses")
        .and_then(Value::as_array)
        .ok_or_else(invalid)?
        .iter()
        .map(|l| l.as_str().map(str::to_owned))
        .collect::<Option<_>>()
        .ok_or_else(invalid)?;
    with_tenant(&shared, &headers, |t, harness| {
        let uid = user_of(t, &id)?;
        let user = t
            .users
            .get(&uid)
            .cloned()
            .ok_or_else(|| Fault::not_found(&id))?;
        for sku in &add {
            if user.usage_location.is_none() {
                return Err(Fault::bad_request(
                    "License assignment cannot be done for user with invalid usage location.",
                ));
            }
            let Some(s) = t.skus.get(sku) else {
                return Err(Fault::bad_request(format!(
                    "License {sku} does not correspond to a valid company License."
                )));
            };
            if !user.licenses.contains(sku) && t.consumed(sku) >= s.enabled_units {
                return Err(Fault::bad_request(format!(
                    "Subscription {sku} does not have any available licenses."
                )));
            }
        }
        for sku in &remove {
            if !user.licenses.contains(sku) {
                return Err(Fault::bad_request(
                    "User does not have a corresponding license.",
                ));
            }
        }
        let mut changed = user;
        for sku in &remove {
            changed.licenses.retain(|l| l != sku);
            harness.count("licenses.removed");
        }
        for sku in &add {
            if !changed.licenses.contains(sku) {
                changed.licenses.push(sku.clone());
                harness.count("licenses.added");
            }
        }
        let answer = changed.json();
        t.users.insert(uid, changed);
        Ok(ok(answer))
    })
}

async fn license_details(State(shared): St, headers: HeaderMap, Path(id): Path<String>) -> Answer {
    with_tenant(&shared, &headers, |t, _| {
        let uid = user_of(t, &id)?;
        let user = t.users.get(&uid).ok_or_else(|| Fault::not_found(&id))?;
        let value: Vec<Value> = user
            .licenses
            .iter()
            .map(|sku| {
                json!({
                    "id": format!("{uid}_{sku}"),
                    "skuId": sku,
                    "skuPartNumber": t.skus.get(sku).map(|s| s.part_number.clone()),
                    "servicePlans": [],
                })
            })
            .collect();
        Ok(ok(json!({
            "@odata.context": format!("https://graph.microsoft.com/v1.0/$metadata#users('{uid}')/licenseDetails"),
            "value": value,
        })))
    })
}

async fn revoke_sessions(State(shared): St, headers: HeaderMap, Path(id): Path<String>) -> Answer {
    with_tenant(&shared, &headers, |t, harness| {
        let uid = user_of(t, &id)?;
        if let Some(user) = t.users.get_mut(&uid) {
            user.sessions_valid_from = now_rfc3339();
        }
        harness.count("users.sessions_revoked");
        Ok(ok(json!({
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#Edm.Boolean",
            "value": true,
        })))
    })
}

async fn subscribed_skus(State(shared): St, headers: HeaderMap) -> Answer {
    with_tenant(&shared, &headers, |t, _| {
        let value: Vec<Value> = t
            .skus
            .values()
            .map(|s| {
                json!({
                    "id": s.sku_id,
                    "skuId": s.sku_id,
                    "skuPartNumber": s.part_number,
                    "appliesTo": "User",
                    "capabilityStatus": "Enabled",
                    "consumedUnits": t.consumed(&s.sku_id),
                    "prepaidUnits": {"enabled": s.enabled_units, "suspended": 0, "warning": 0, "lockedOut": 0},
                    "servicePlans": [],
                })
            })
            .collect();
        Ok(ok(json!({
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#subscribedSkus",
            "value": value,
        })))
    })
}

// ---- groups -------------------------------------------------------------------

fn group_sample() -> Value {
    Group {
        id: String::new(),
        display_name: String::new(),
        mail_nickname: String::new(),
        kind: GroupKind::Security,
        members: BTreeSet::new(),
    }
    .json()
}

async fn list_groups(State(shared): St, headers: HeaderMap, Query(q): Q) -> Answer {
    let options = Options::parse(&q)?;
    options.check_filter(&group_sample(), "group")?;
    let items = with_tenant(&shared, &headers, |t, _| {
        Ok(t.groups
            .values()
            .map(Group::json)
            .filter(|g| options.matches(g))
            .collect::<Vec<_>>())
    })?;
    Ok(ok(options.page(
        items,
        None,
        "group",
        &headers,
        "/v1.0/groups",
        "groups",
    )?))
}

async fn create_group(State(shared): St, headers: HeaderMap, body: Bytes) -> Answer {
    let tenant = caller(&shared, &headers)?;
    let body = parse_json(&body)?;
    let scoped = scoped_key(&headers, &tenant, "/v1.0/groups");
    Ok(model::idempotent(&shared.harness, &scoped, || {
        let made = with_tenant(&shared, &headers, |t, harness| {
            let display_name = text(&body, "displayName", "Group")?;
            let mail_nickname = text(&body, "mailNickname", "Group")?;
            let mail_enabled = flag(&body, "mailEnabled", "Group")?;
            let security_enabled = flag(&body, "securityEnabled", "Group")?;
            let unified = body
                .get("groupTypes")
                .and_then(Value::as_array)
                .is_some_and(|types| types.iter().any(|t| t == "Unified"));
            let kind = match (unified, mail_enabled, security_enabled) {
                (true, true, _) => GroupKind::Microsoft365,
                (false, false, true) => GroupKind::Security,
                _ => {
                    return Err(Fault::bad_request(
                        "Only Microsoft 365 groups and security groups can be created through Graph; mail-enabled security groups and distribution lists are created in Exchange.",
                    ));
                }
            };
            let group = Group {
                id: guid(),
                display_name: display_name.to_owned(),
                mail_nickname: mail_nickname.to_owned(),
                kind,
                members: BTreeSet::new(),
            };
            let answer = group.json();
            t.groups.insert(group.id.clone(), group);
            harness.count("groups.created");
            Ok(answer)
        });
        made.map(|v| (StatusCode::CREATED, v))
    }))
}

async fn get_group(State(shared): St, headers: HeaderMap, Path(id): Path<String>) -> Answer {
    with_tenant(&shared, &headers, |t, _| {
        t.groups
            .get(&id)
            .map(|g| ok(g.json()))
            .ok_or_else(|| Fault::not_found(&id))
    })
}

fn member_json(t: &Tenant, id: &str) -> Value {
    match t.users.get(id) {
        Some(u) => json!({
            "@odata.type": "#microsoft.graph.user",
            "id": u.id,
            "displayName": u.display_name,
            "userPrincipalName": u.upn,
        }),
        None => json!({"@odata.type": "#microsoft.graph.directoryObject", "id": id}),
    }
}

async fn group_members(
    State(shared): St,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Q,
) -> Answer {
    let options = Options::parse(&q)?;
    let items = with_tenant(&shared, &headers, |t, _| {
        let group = t.groups.get(&id).ok_or_else(|| Fault::not_found(&id))?;
        Ok(group
            .members
            .iter()
            .map(|m| member_json(t, m))
            .collect::<Vec<_>>())
    })?;
    Ok(ok(options.page(
        items,
        None,
        "directoryObject",
        &headers,
        &format!("/v1.0/groups/{id}/members"),
        "directoryObjects",
    )?))
}

/// The object id in `{"@odata.id": ".../directoryObjects/{id}"}`.
fn referenced_id(body: &Value) -> Result<String, Fault> {
    let reference = body
        .get("@odata.id")
        .and_then(Value::as_str)
        .ok_or_else(|| Fault::bad_request("Missing property '@odata.id' in the request body."))?;
    let id = ["/directoryObjects/", "/users/"]
        .iter()
        .find_map(|marker| reference.rsplit_once(marker).map(|(_, id)| id))
        .filter(|id| !id.is_empty() && !id.contains('/'))
        .ok_or_else(|| Fault::bad_request(format!("Invalid object identifier '{reference}'.")))?;
    Ok(id.to_owned())
}

fn already_exists() -> Fault {
    Fault::bad_request(
        "One or more added object references already exist for the following modified properties: 'members'.",
    )
}

fn exchange_managed() -> Fault {
    Fault::bad_request("Cannot Update a mail-enabled security groups and or distribution list.")
}

async fn add_group_member(
    State(shared): St,
    headers: HeaderMap,
    Path(id): Path<String>,
    body: Bytes,
) -> Answer {
    let body = parse_json(&body)?;
    let member = referenced_id(&body)?;
    with_tenant(&shared, &headers, |t, harness| {
        if !t.users.contains_key(&member) {
            return Err(Fault::not_found(&member));
        }
        let group = t.groups.get_mut(&id).ok_or_else(|| Fault::not_found(&id))?;
        if group.kind.exchange_managed() {
            return Err(exchange_managed());
        }
        if !group.members.insert(member) {
            return Err(already_exists());
        }
        harness.count("groups.members_added");
        Ok(no_content())
    })
}

async fn remove_group_member(
    State(shared): St,
    headers: HeaderMap,
    Path((id, member)): Path<(String, String)>,
) -> Answer {
    with_tenant(&shared, &headers, |t, harness| {
        let group = t.groups.get_mut(&id).ok_or_else(|| Fault::not_found(&id))?;
        if group.kind.exchange_managed() {
            return Err(exchange_managed());
        }
        if !group.members.remove(&member) {
            return Err(Fault::not_found(&member));
        }
        harness.count("groups.members_removed");
        Ok(no_content())
    })
}

// ---- directory roles --------------------------------------------------------

/// The template id in `directoryRoles(roleTemplateId='…')`.
fn role_template(segment: &str) -> Result<String, Fault> {
    let template = segment
        .strip_prefix("directoryRoles(roleTemplateId='")
        .and_then(|s| s.strip_suffix("')"))
        .ok_or_else(|| {
            Fault::new(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!("Resource not found for the segment '{segment}'."),
            )
        })?;
    if !KNOWN_ROLES.contains(&template) {
        return Err(Fault::not_found(template));
    }
    Ok(template.to_owned())
}

async fn role_members(
    State(shared): St,
    headers: HeaderMap,
    Path(role): Path<String>,
    Query(q): Q,
) -> Answer {
    let template = role_template(&role)?;
    let options = Options::parse(&q)?;
    let items = with_tenant(&shared, &headers, |t, _| {
        Ok(t.roles
            .get(&template)
            .map(|members| members.iter().map(|m| member_json(t, m)).collect())
            .unwrap_or_default())
    })?;
    let path = format!("/v1.0/{}/members", super::odata::encode(&role));
    Ok(ok(options.page(
        items,
        None,
        "directoryObject",
        &headers,
        &path,
        "directoryObjects",
    )?))
}

async fn add_role_member(
    State(shared): St,
    headers: HeaderMap,
    Path(role): Path<String>,
    body: Bytes,
) -> Answer {
    let template = role_template(&role)?;
    let body = parse_json(&body)?;
    let member = referenced_id(&body)?;
    with_tenant(&shared, &headers, |t, harness| {
        if !t.users.contains_key(&member) {
            return Err(Fault::not_found(&member));
        }
        if !t.roles.entry(template).or_default().insert(member) {
            return Err(already_exists());
        }
        harness.count("roles.members_added");
        Ok(no_content())
    })
}

// ---- GDAP -------------------------------------------------------------------

/// The caller's tenant, which must be a partner's.
fn partner(shared: &Shared, headers: &HeaderMap) -> Result<String, Fault> {
    let tenant = caller(shared, headers)?;
    let is_partner = lock(&shared.dir)
        .tenants
        .get(&tenant)
        .is_some_and(|t| t.partner);
    if !is_partner {
        return Err(Fault::new(
            StatusCode::FORBIDDEN,
            "Authorization_RequestDenied",
            "Insufficient privileges to complete the operation. The tenant is not a Microsoft partner.",
        ));
    }
    Ok(tenant)
}

fn relationship_sample() -> Value {
    Relationship {
        id: String::new(),
        partner_tenant: String::new(),
        customer_tenant: String::new(),
        customer_name: String::new(),
        display_name: String::new(),
        duration: String::new(),
        auto_extend: String::new(),
        roles: Vec::new(),
        status: String::new(),
        created: String::new(),
        modified: String::new(),
        activated: None,
        version: 0,
        assignments: Vec::new(),
    }
    .json()
}

async fn list_relationships(State(shared): St, headers: HeaderMap, Query(q): Q) -> Answer {
    let tenant = partner(&shared, &headers)?;
    let options = Options::parse(&q)?;
    options.check_filter(&relationship_sample(), "delegatedAdminRelationship")?;
    let items: Vec<Value> = lock(&shared.dir)
        .relationships
        .values()
        .filter(|r| r.partner_tenant == tenant)
        .map(Relationship::json)
        .filter(|r| options.matches(r))
        .collect();
    Ok(ok(options.page(
        items,
        None,
        "delegatedAdminRelationship",
        &headers,
        "/v1.0/tenantRelationships/delegatedAdminRelationships",
        "tenantRelationships/delegatedAdminRelationships",
    )?))
}

/// Days in an ISO 8601 `P{n}D` duration.
fn duration_days(duration: &str) -> Option<u32> {
    duration.strip_prefix('P')?.strip_suffix('D')?.parse().ok()
}

fn new_relationship(
    dir: &mut Directory,
    partner: &str,
    body: &Value,
) -> Result<Relationship, Fault> {
    let display_name = text(body, "displayName", "delegatedAdminRelationship")?;
    if display_name.chars().count() > 50 {
        return Err(Fault::bad_request(
            "The displayName may be at most 50 characters.",
        ));
    }
    let duration = text(body, "duration", "delegatedAdminRelationship")?;
    if !duration_days(duration).is_some_and(|d| (1..=730).contains(&d)) {
        return Err(Fault::bad_request(
            "The duration must be an ISO 8601 duration between P1D and P730D.",
        ));
    }
    let customer = body
        .get("customer")
        .and_then(|c| c.get("tenantId"))
        .and_then(Value::as_str)
        .ok_or_else(|| Fault::bad_request("The customer's tenantId is required."))?;
    let customer_name = dir
        .tenants
        .get(customer)
        .filter(|t| !t.partner || customer != partner)
        .map(|t| t.name.clone())
        .ok_or_else(|| {
            Fault::bad_request(format!("The customer tenant '{customer}' was not found."))
        })?;
    let roles: Vec<String> = body
        .get("accessDetails")
        .and_then(|a| a.get("unifiedRoles"))
        .and_then(Value::as_array)
        .map(|roles| {
            roles
                .iter()
                .filter_map(|r| r.get("roleDefinitionId").and_then(Value::as_str))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    if roles.is_empty() {
        return Err(Fault::bad_request(
            "accessDetails.unifiedRoles must name at least one role.",
        ));
    }
    let auto_extend = body
        .get("autoExtendDuration")
        .and_then(Value::as_str)
        .unwrap_or("PT0S");
    if !matches!(auto_extend, "PT0S" | "P180D") {
        return Err(Fault::bad_request(
            "autoExtendDuration must be PT0S or P180D.",
        ));
    }
    if auto_extend != "PT0S" && roles.iter().any(|r| r == GLOBAL_ADMIN) {
        return Err(Fault::bad_request(
            "A relationship that includes the Global Administrator role cannot be auto-extended.",
        ));
    }
    if dir
        .relationships
        .values()
        .any(|r| r.partner_tenant == partner && r.display_name == display_name)
    {
        return Err(Fault::new(
            StatusCode::CONFLICT,
            "Conflict",
            format!("A relationship with the display name '{display_name}' already exists."),
        ));
    }
    let now = now_rfc3339();
    let relationship = Relationship {
        id: format!("{}-{}", guid(), guid()),
        partner_tenant: partner.to_owned(),
        customer_tenant: customer.to_owned(),
        customer_name,
        display_name: display_name.to_owned(),
        duration: duration.to_owned(),
        auto_extend: auto_extend.to_owned(),
        roles,
        status: "created".to_owned(),
        created: now.clone(),
        modified: now,
        activated: None,
        version: 1,
        assignments: Vec::new(),
    };
    dir.relationships
        .insert(relationship.id.clone(), relationship.clone());
    Ok(relationship)
}

async fn create_relationship(State(shared): St, headers: HeaderMap, body: Bytes) -> Answer {
    let tenant = partner(&shared, &headers)?;
    let body = parse_json(&body)?;
    let scoped = scoped_key(&headers, &tenant, "delegatedAdminRelationships");
    Ok(model::idempotent(&shared.harness, &scoped, || {
        let made = new_relationship(&mut lock(&shared.dir), &tenant, &body)?;
        shared.harness.count("gdap.created");
        Ok((StatusCode::CREATED, made.json()))
    }))
}

async fn get_relationship(State(shared): St, headers: HeaderMap, Path(id): Path<String>) -> Answer {
    let tenant = partner(&shared, &headers)?;
    lock(&shared.dir)
        .relationships
        .get(&id)
        .filter(|r| r.partner_tenant == tenant)
        .map(|r| ok(r.json()))
        .ok_or_else(|| Fault::not_found(&id))
}

async fn delete_relationship(
    State(shared): St,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Answer {
    let tenant = partner(&shared, &headers)?;
    let mut dir = lock(&shared.dir);
    let status = dir
        .relationships
        .get(&id)
        .filter(|r| r.partner_tenant == tenant)
        .map(|r| r.status.clone())
        .ok_or_else(|| Fault::not_found(&id))?;
    if status != "created" {
        return Err(Fault::bad_request(format!(
            "Only a relationship in the created status can be deleted; this one is {status}."
        )));
    }
    dir.relationships.remove(&id);
    drop(dir);
    shared.harness.count("gdap.deleted");
    Ok(no_content())
}

/// Applies `action` to relationship `id` on behalf of `tenant` (the
/// partner, or for `approve` the customer).
pub(super) fn apply_action(
    dir: &mut Directory,
    tenant: &str,
    id: &str,
    action: &str,
) -> Result<(), Fault> {
    let r = dir
        .relationships
        .get_mut(id)
        .filter(|r| r.partner_tenant == tenant || r.customer_tenant == tenant)
        .ok_or_else(|| Fault::not_found(id))?;
    let by_partner = r.partner_tenant == tenant;
    let (from, to) = match action {
        "lockForApproval" if by_partner => ("created", "approvalPending"),
        "approve" if !by_partner => ("approvalPending", "active"),
        "terminate" => ("active", "terminationRequested"),
        "lockForApproval" | "approve" => {
            return Err(Fault::new(
                StatusCode::FORBIDDEN,
                "Authorization_RequestDenied",
                format!("The {action} action is not the caller's to take on this relationship."),
            ));
        }
        other => {
            return Err(Fault::bad_request(format!(
                "The action '{other}' is not supported; use lockForApproval, approve or terminate."
            )));
        }
    };
    if r.status != from {
        return Err(Fault::bad_request(format!(
            "The {action} action is not allowed on a relationship in the {} status.",
            r.status
        )));
    }
    r.set_status(to);
    Ok(())
}

async fn relationship_request(
    State(shared): St,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    Path(id): Path<String>,
    body: Bytes,
) -> Answer {
    let tenant = caller(&shared, &headers)?;
    let body = parse_json(&body)?;
    let action = text(&body, "action", "delegatedAdminRelationshipRequest")?.to_owned();
    let scoped = scoped_key(&headers, &tenant, uri.path());
    Ok(model::idempotent(&shared.harness, &scoped, || {
        apply_action(&mut lock(&shared.dir), &tenant, &id, &action)?;
        shared.harness.count(&format!("gdap.{action}"));
        let now = now_rfc3339();
        Ok((
            StatusCode::CREATED,
            json!({
                "@odata.type": "#microsoft.graph.delegatedAdminRelationshipRequest",
                "id": guid(),
                "action": action,
                "status": "succeeded",
                "createdDateTime": now,
                "lastModifiedDateTime": now,
            }),
        ))
    }))
}

async fn list_assignments(
    State(shared): St,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    Path(id): Path<String>,
    Query(q): Q,
) -> Answer {
    let tenant = partner(&shared, &headers)?;
    let options = Options::parse(&q)?;
    let items: Vec<Value> = lock(&shared.dir)
        .relationships
        .get(&id)
        .filter(|r| r.partner_tenant == tenant)
        .ok_or_else(|| Fault::not_found(&id))?
        .assignments
        .iter()
        .map(model::Assignment::json)
        .filter(|a| options.matches(a))
        .collect();
    Ok(ok(options.page(
        items,
        None,
        "delegatedAdminAccessAssignment",
        &headers,
        uri.path(),
        "tenantRelationships/delegatedAdminRelationships/accessAssignments",
    )?))
}

fn new_assignment(
    dir: &mut Directory,
    partner: &str,
    id: &str,
    body: &Value,
) -> Result<model::Assignment, Fault> {
    let container = body.get("accessContainer");
    let group = container
        .and_then(|c| c.get("accessContainerId"))
        .and_then(Value::as_str)
        .filter(|g| !g.is_empty())
        .ok_or_else(|| Fault::bad_request("accessContainer.accessContainerId is required."))?;
    if container
        .and_then(|c| c.get("accessContainerType"))
        .and_then(Value::as_str)
        != Some("securityGroup")
    {
        return Err(Fault::bad_request(
            "accessContainer.accessContainerType must be securityGroup.",
        ));
    }
    let is_partner_group = dir
        .tenants
        .get(partner)
        .and_then(|t| t.groups.get(group))
        .is_some_and(|g| g.kind == GroupKind::Security);
    if !is_partner_group {
        return Err(Fault::bad_request(format!(
            "The access container '{group}' is not a security group in the partner tenant."
        )));
    }
    let roles: Vec<String> = body
        .get("accessDetails")
        .and_then(|a| a.get("unifiedRoles"))
        .and_then(Value::as_array)
        .map(|roles| {
            roles
                .iter()
                .filter_map(|r| r.get("roleDefinitionId").and_then(Value::as_str))
                .map(str::to_owned)
                .collect()
        })
        .unwrap_or_default();
    let r = dir
        .relationships
        .get_mut(id)
        .filter(|r| r.partner_tenant == partner)
        .ok_or_else(|| Fault::not_found(id))?;
    if r.status != "active" {
        return Err(Fault::bad_request(format!(
            "Access can be assigned only on an active relationship; this one is {}.",
            r.status
        )));
    }
    if roles.is_empty() || roles.iter().any(|role| !r.roles.contains(role)) {
        return Err(Fault::bad_request(
            "The roles of an access assignment must be a non-empty subset of the relationship's roles.",
        ));
    }
    if r.assignments.iter().any(|a| a.group == group) {
        return Err(Fault::new(
            StatusCode::CONFLICT,
            "Conflict",
            format!("An access assignment for the security group '{group}' already exists."),
        ));
    }
    let assignment = model::Assignment {
        id: guid(),
        group: group.to_owned(),
        roles,
        created: now_rfc3339(),
    };
    r.assignments.push(assignment.clone());
    Ok(assignment)
}

async fn create_assignment(
    State(shared): St,
    headers: HeaderMap,
    OriginalUri(uri): OriginalUri,
    Path(id): Path<String>,
    body: Bytes,
) -> Answer {
    let tenant = partner(&shared, &headers)?;
    let body = parse_json(&body)?;
    let scoped = scoped_key(&headers, &tenant, uri.path());
    Ok(model::idempotent(&shared.harness, &scoped, || {
        let made = new_assignment(&mut lock(&shared.dir), &tenant, &id, &body)?;
        shared.harness.count("gdap.access_assigned");
        Ok((StatusCode::CREATED, made.json()))
    }))
}
