//! People and their access: a tenant's people (lifecycle status, role
//! templates, attributes) and their just-in-time elevations.

use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::Response;
use minijinja::{Value, context};
use serde_json::json;

use super::Console;
use super::pages::{tenant_names, when};
use super::render::{error_page, page};
use crate::app::TenantRef;
use crate::http::ApiState;

/// The tenants whose people may be looked at.
pub(super) async fn tenants(State(state): State<ApiState>, console: Console) -> Response {
    if let Err(err) =
        crate::authz::authorize_list(&console.actor, crate::authz::Permission::ReadPeople)
    {
        return error_page(Some(&console), &err);
    }
    let names = tenant_names(&state, &console).await;
    let mut tenants: Vec<serde_json::Value> = Vec::new();
    for (id, name) in &names {
        tenants.push(json!({"id": id.to_string(), "name": name}));
    }
    page(
        StatusCode::OK,
        "people.html",
        Some(&console),
        context! {
            title => "People",
            nav => "people",
            tenants => Value::from_serialize(&tenants),
        },
    )
}

/// One tenant's people and their elevations.
pub(super) async fn people(
    State(state): State<ApiState>,
    console: Console,
    Path(tenant): Path<String>,
) -> Response {
    let tenant_ref = TenantRef::parse(&tenant);
    let people = match state
        .app
        .list_people(&console.actor, &tenant_ref, None, 500)
        .await
    {
        Ok(people) => people,
        Err(err) => return error_page(Some(&console), &err),
    };
    let elevations = match state.app.list_elevations(&console.actor, &tenant_ref).await {
        Ok(elevations) => elevations,
        Err(err) => return error_page(Some(&console), &err),
    };
    let rows: Vec<serde_json::Value> = people
        .iter()
        .map(|view| {
            let p = &view.person;
            let attribute = |name: &str| p.attributes.get(name).cloned();
            let name = attribute("display_name").or_else(|| {
                match (attribute("given_name"), attribute("family_name")) {
                    (Some(given), Some(family)) => Some(format!("{given} {family}")),
                    (given, family) => given.or(family),
                }
            });
            json!({
                "id": view.id,
                "key": p.key,
                "name": name,
                "kind": p.kind.as_str(),
                "status": p.status.as_str(),
                "since": when(p.status_since),
                "department": attribute("department"),
                "title": attribute("title"),
                "roles": p.roles.iter().cloned().collect::<Vec<_>>().join(", "),
            })
        })
        .collect();
    let jit: Vec<serde_json::Value> = elevations
        .iter()
        .map(|(stored, doc)| {
            json!({
                "person": doc.person,
                "system": doc.system,
                "entitlement": format!("{:?}", doc.entitlement),
                "justification": doc.justification,
                "state": stored.state,
                "requested_by": stored.requested_by,
                "created_at": when(stored.created_at),
                "expires_at": stored.expires_at.map(when),
            })
        })
        .collect();
    page(
        StatusCode::OK,
        "people_of.html",
        Some(&console),
        context! {
            title => "People",
            nav => "people",
            tenant => tenant.as_str(),
            people => Value::from_serialize(&rows),
            elevations => Value::from_serialize(&jit),
        },
    )
}

/// One person: their attributes and the access they should hold on each
/// system, with why (the role templates and rules that apply, live
/// elevations), as Gatehouse computes it from the tenant's access policy.
pub(super) async fn person(
    State(state): State<ApiState>,
    console: Console,
    Path((tenant, person)): Path<(String, String)>,
) -> Response {
    let (view, desired) = match state
        .app
        .get_person(&console.actor, &TenantRef::parse(&tenant), &person)
        .await
    {
        Ok(found) => found,
        Err(err) => return error_page(Some(&console), &err),
    };
    let p = &view.person;
    let mut grants: Vec<serde_json::Value> = Vec::new();
    for (system, wanted) in &desired.systems {
        grants.push(json!({
            "system": system,
            "what": if wanted.enabled { "account" } else { "account (disabled while on leave)" },
            "why": "",
        }));
        for (entitlement, reasons) in &wanted.entitlements {
            let why: Vec<String> = reasons
                .iter()
                .map(|reason| match reason {
                    gatehouse_identity::plan::Reason::Role { id, sensitive } => {
                        format!(
                            "role template {id}{}",
                            if *sensitive { " (sensitive)" } else { "" }
                        )
                    }
                    gatehouse_identity::plan::Reason::Elevation {
                        elevation, until, ..
                    } => {
                        format!("elevation {elevation} until {}", when(*until))
                    }
                })
                .collect();
            grants.push(json!({
                "system": system,
                "what": entitlement.to_string(),
                "why": why.join("; "),
            }));
        }
    }
    page(
        StatusCode::OK,
        "person.html",
        Some(&console),
        context! {
            title => format!("{} · People", p.key),
            nav => "people",
            tenant => tenant.as_str(),
            key => p.key.as_str(),
            status => p.status.as_str(),
            since => when(p.status_since),
            kind => p.kind.as_str(),
            roles => p.roles.iter().cloned().collect::<Vec<_>>().join(", "),
            attributes => Value::from_serialize(&p.attributes),
            grants => Value::from_serialize(&grants),
        },
    )
}
