//! Users, licences, groups and directory roles of the caller's tenant.

use std::collections::BTreeSet;

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::model::{
    self, DEFAULT_USER_FIELDS, Fault, Group, GroupKind, Tenant, User, guid, now_rfc3339,
};
use super::odata::Options;
use super::routes::KNOWN_ROLES;
use super::routes::{
    Answer, Q, St, caller, flag, no_content, ok, parse_json, scoped_key, text, with_tenant,
};

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
        force_change_password: false,
        created: String::new(),
    }
    .json()
}

pub(super) async fn list_users(State(shared): St, headers: HeaderMap, Query(q): Q) -> Answer {
    let options = Options::parse(&q)?;
    options.check_filter(&user_sample(), "user")?;
    let items = with_tenant(&shared, &headers, |t, _| {
        // A lookup by name (what a connector resolving one account sends)
        // reads that user alone instead of rendering the whole directory.
        let by_name = options
            .equals("userPrincipalName")
            .map(|upn| t.user_id(upn).and_then(|id| t.users.get(&id)));
        let candidates: Box<dyn Iterator<Item = &User>> = match by_name {
            Some(found) => Box::new(found.into_iter()),
            None => Box::new(t.users.values()),
        };
        Ok(candidates
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
    let force_change_password = body["passwordProfile"]
        .get("forceChangePasswordNextSignIn")
        .and_then(Value::as_bool)
        .unwrap_or(true);
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
        force_change_password,
        created: now,
    };
    t.users.insert(user.id.clone(), user.clone());
    Ok(user)
}

pub(super) async fn create_user(State(shared): St, headers: HeaderMap, body: Bytes) -> Answer {
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

pub(super) async fn get_user(
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

pub(super) async fn patch_user(
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
        let mut password_reset = false;
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
                    changed.force_change_password = value
                        .get("forceChangePasswordNextSignIn")
                        .and_then(Value::as_bool)
                        .unwrap_or(true);
                    password_reset = true;
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
        if password_reset {
            harness.count("users.password_reset");
        }
        Ok(no_content())
    })
}

pub(super) async fn delete_user(
    State(shared): St,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Answer {
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

pub(super) async fn assign_license(
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

pub(super) async fn license_details(
    State(shared): St,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Answer {
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

pub(super) async fn revoke_sessions(
    State(shared): St,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Answer {
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

pub(super) async fn subscribed_skus(State(shared): St, headers: HeaderMap) -> Answer {
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

pub(super) async fn list_groups(State(shared): St, headers: HeaderMap, Query(q): Q) -> Answer {
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

pub(super) async fn create_group(State(shared): St, headers: HeaderMap, body: Bytes) -> Answer {
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

pub(super) async fn get_group(
    State(shared): St,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Answer {
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

pub(super) async fn group_members(
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

pub(super) async fn add_group_member(
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

pub(super) async fn remove_group_member(
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

pub(super) async fn role_members(
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

pub(super) async fn add_role_member(
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

/// `DELETE /{role}/members/{member}/$ref`: 404 when the user does not
/// hold the role, as Graph answers.
pub(super) async fn remove_role_member(
    State(shared): St,
    headers: HeaderMap,
    Path((role, member)): Path<(String, String)>,
) -> Answer {
    let template = role_template(&role)?;
    with_tenant(&shared, &headers, |t, harness| {
        let removed = t
            .roles
            .get_mut(&template)
            .is_some_and(|members| members.remove(&member));
        if !removed {
            return Err(Fault::not_found(&member));
        }
        harness.count("roles.members_removed");
        Ok(no_content())
    })
}

/// `GET /users/{id}/memberOf`: the groups and directory roles the user is
/// a direct member of (a role's id is its template id here).
pub(super) async fn member_of(
    State(shared): St,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(q): Q,
) -> Answer {
    let options = Options::parse(&q)?;
    let (uid, items) = with_tenant(&shared, &headers, |t, _| {
        let uid = user_of(t, &id)?;
        let mut items: Vec<Value> = t
            .groups
            .values()
            .filter(|g| g.members.contains(&uid))
            .map(Group::json)
            .collect();
        for (template, members) in &t.roles {
            if members.contains(&uid) {
                items.push(json!({
                    "@odata.type": "#microsoft.graph.directoryRole",
                    "id": template,
                    "roleTemplateId": template,
                    "displayName": null,
                }));
            }
        }
        Ok((uid, items))
    })?;
    Ok(ok(options.page(
        items,
        None,
        "directoryObject",
        &headers,
        &format!("/v1.0/users/{uid}/memberOf"),
        "directoryObjects",
    )?))
}

/// `GET /organization`: the caller's tenant as one organization, with its
/// `countryLetterCode` (what new users' usage location defaults to).
pub(super) async fn organization(State(shared): St, headers: HeaderMap) -> Answer {
    let tenant = caller(&shared, &headers)?;
    with_tenant(&shared, &headers, |t, _| {
        let domains: Vec<Value> = t
            .domains
            .iter()
            .enumerate()
            .map(|(i, d)| json!({"name": d, "isDefault": i == 0, "isInitial": i == 0}))
            .collect();
        Ok(ok(json!({
            "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#organization",
            "value": [{
                "id": tenant,
                "displayName": t.name,
                "countryLetterCode": t.country.as_deref().unwrap_or("US"),
                "verifiedDomains": domains,
            }],
        })))
    })
}
