//! GDAP: delegated admin relationships in partner tenants, their status
//! machine, and access assignments.

use axum::body::Bytes;
use axum::extract::{OriginalUri, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::{Value, json};

use super::model::{self, Directory, Fault, GroupKind, Relationship, guid, now_rfc3339};
use super::odata::Options;
use super::routes::GLOBAL_ADMIN;
use super::routes::{Answer, Q, Shared, St, caller, no_content, ok, parse_json, scoped_key, text};
use crate::emulator::lock;

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

pub(super) async fn list_relationships(
    State(shared): St,
    headers: HeaderMap,
    Query(q): Q,
) -> Answer {
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

pub(super) async fn create_relationship(
    State(shared): St,
    headers: HeaderMap,
    body: Bytes,
) -> Answer {
    let tenant = partner(&shared, &headers)?;
    let body = parse_json(&body)?;
    let scoped = scoped_key(&headers, &tenant, "delegatedAdminRelationships");
    Ok(model::idempotent(&shared.harness, &scoped, || {
        let made = new_relationship(&mut lock(&shared.dir), &tenant, &body)?;
        shared.harness.count("gdap.created");
        Ok((StatusCode::CREATED, made.json()))
    }))
}

pub(super) async fn get_relationship(
    State(shared): St,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Answer {
    let tenant = partner(&shared, &headers)?;
    lock(&shared.dir)
        .relationships
        .get(&id)
        .filter(|r| r.partner_tenant == tenant)
        .map(|r| ok(r.json()))
        .ok_or_else(|| Fault::not_found(&id))
}

pub(super) async fn delete_relationship(
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

pub(super) async fn relationship_request(
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
        if action == "lockForApproval" {
            super::tenants::schedule_acceptance(&shared, &id);
        }
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

pub(super) async fn list_assignments(
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

pub(super) async fn create_assignment(
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
