//! What Microsoft tells any signed-in app about a tenant
//! (`findTenantInformationByDomainName`, `findTenantInformationByTenantId`),
//! and the customer's acceptance of a GDAP request that the demo and the
//! benchmark let the emulator give by itself (`auto_accept_gdap`).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use serde_json::json;

use super::gdap;
use super::model::{Directory, Fault};
use super::routes::{Answer, Shared, caller, ok};
use crate::emulator::lock;

/// `GET /v1.0/tenantRelationships/{function}`: the two tenant look-ups.
/// Any valid token may ask (Graph wants `CrossTenantInformation.ReadBasic.All`);
/// an unknown domain or tenant is a 404.
pub(super) async fn tenant_information(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(function): Path<String>,
) -> Answer {
    caller(&shared, &headers)?;
    let argument = |name: &str| {
        function
            .strip_prefix(name)
            .and_then(|rest| rest.strip_prefix("='"))
            .and_then(|rest| rest.strip_suffix("')"))
            .map(|value| value.replace("''", "'"))
    };
    let call = function.split('(').next().unwrap_or_default();
    let (by_domain, wanted) = match call {
        "findTenantInformationByDomainName" => (
            true,
            argument("findTenantInformationByDomainName(domainName"),
        ),
        "findTenantInformationByTenantId" => {
            (false, argument("findTenantInformationByTenantId(tenantId"))
        }
        _ => {
            return Err(Fault::new(
                StatusCode::BAD_REQUEST,
                "BadRequest",
                format!("Resource not found for the segment '{call}'."),
            ));
        }
    };
    let Some(wanted) = wanted.filter(|w| !w.is_empty()) else {
        return Err(Fault::bad_request(format!(
            "The function '{call}' needs its parameter, quoted: {call}({}='…').",
            if by_domain { "domainName" } else { "tenantId" }
        )));
    };
    let dir = lock(&shared.dir);
    let found = dir.tenants.iter().find(|(id, t)| {
        if by_domain {
            t.domains.iter().any(|d| d.eq_ignore_ascii_case(&wanted))
        } else {
            id.eq_ignore_ascii_case(&wanted)
        }
    });
    let Some((id, tenant)) = found else {
        return Err(Fault::not_found(&wanted));
    };
    let answer = json!({
        "@odata.context": "https://graph.microsoft.com/v1.0/$metadata#microsoft.graph.tenantInformation",
        "tenantId": id,
        "federationBrandName": null,
        "displayName": tenant.name,
        "defaultDomainName": tenant.domains.first(),
    });
    drop(dir);
    shared.harness.count("tenants.looked_up");
    Ok(ok(answer))
}

/// The customer accepts relationship `id` (`approvalPending → active`);
/// whether it did. Counted as `gdap.approve`.
pub(super) fn approve(shared: &Shared, id: &str) -> bool {
    let mut dir = lock(&shared.dir);
    let approved = approve_in(&mut dir, id);
    drop(dir);
    if approved {
        shared.harness.count("gdap.approve");
    }
    approved
}

fn approve_in(dir: &mut Directory, id: &str) -> bool {
    let Some(customer) = dir.relationships.get(id).map(|r| r.customer_tenant.clone()) else {
        return false;
    };
    gdap::apply_action(dir, &customer, id, "approve").is_ok()
}

/// With `auto_accept_gdap` on, the customer accepts relationship `id`
/// (just locked for approval) after the knob's delay.
pub(super) fn schedule_acceptance(shared: &Arc<Shared>, id: &str) {
    let Some(delay) = *lock(&shared.auto_accept_gdap) else {
        return;
    };
    let (shared, id) = (Arc::clone(shared), id.to_owned());
    if delay == Duration::ZERO {
        approve(&shared, &id);
        return;
    }
    tokio::spawn(async move {
        tokio::time::sleep(delay).await;
        approve(&shared, &id);
    });
}
