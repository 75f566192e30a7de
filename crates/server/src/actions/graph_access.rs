//! `graph.…` reads that take an onboarding from "a company in the PSA" to
//! "access we can prove": which Microsoft 365 tenant the client is, whether
//! the client accepted our GDAP request, and who holds privileged roles in
//! the client's directory once we can look.
//!
//! All three are read-only, so they run at L0 and their outputs are the
//! evidence the onboarding keeps. Waiting for a person outside the MSP
//! (the client's global administrator) is a retryable failure polled on a
//! long retry policy, not a step that holds a connection open.

use std::collections::BTreeMap;
use std::sync::Arc;

use async_trait::async_trait;
use gatehouse_connectors::ports::{DirectoryMember, M365, TenantInformation, domain_from_website};
use gatehouse_engine::action::{Action, ActionCall, ActionError};
use serde_json::{Value, json};

use super::graph::{ROLES, approval_link, ended, graph, is_guid};
use super::{Directory, Wanted, action_error, id_param, optional_text};

/// Microsoft 365 for a call's tenant, without a customer tenant id.
async fn m365(directory: &Directory, call: &ActionCall<'_>) -> Result<Arc<dyn M365>, ActionError> {
    let tenant = directory.tenant_of(call).await?;
    let (_, m365) = directory
        .m365(tenant, &Wanted::from_params(call.params, None)?)
        .await?;
    Ok(m365)
}

fn tenant_output(found: &TenantInformation, domain: Option<&str>) -> Value {
    json!({
        "customer_tenant_id": found.tenant_id,
        "display_name": found.display_name,
        "default_domain": found.default_domain,
        "domain": domain,
    })
}

/// `graph.resolve_customer_tenant {tenant, domain, customer_tenant_id?}`
/// (read-only): the client's Microsoft 365 tenant, found by a domain it
/// verified (`findTenantInformationByDomainName`; a website such as
/// `https://www.tailspintoys.com/` is reduced to its domain), or checked by
/// its id when `customer_tenant_id` is given. Output: `{customer_tenant_id,
/// display_name, default_domain, domain}`. No tenant with that domain is a
/// permanent failure that names the domain.
#[derive(Debug, Clone)]
pub struct ResolveCustomerTenant(pub Arc<Directory>);

#[async_trait]
impl Action for ResolveCustomerTenant {
    async fn run(&self, call: ActionCall<'_>) -> Result<Value, ActionError> {
        let given_id = optional_text(call.params, "customer_tenant_id")?;
        let given_domain = optional_text(call.params, "domain")?;
        if let Some(id) = given_id {
            if !is_guid(id) {
                return Err(ActionError::permanent(format!(
                    "`{id}` is not an Entra tenant id (a GUID)"
                )));
            }
            let m365 = m365(&self.0, &call).await?;
            let found = m365.tenant_by_id(id).await.map_err(action_error)?;
            return match found {
                Some(found) => Ok(tenant_output(&found, given_domain)),
                None => Err(ActionError::permanent(format!(
                    "no Microsoft 365 tenant has the id {id}"
                ))),
            };
        }
        let Some(website) = given_domain else {
            return Err(ActionError::permanent(
                "parameter `domain` is required (the client's internet domain): the PSA company has no website; fill it in the PSA, or give `customer_tenant_id`",
            ));
        };
        let domain = domain_from_website(website).ok_or_else(|| {
            ActionError::permanent(format!("`{website}` is not a domain name or website"))
        })?;
        let m365 = m365(&self.0, &call).await?;
        match m365.tenant_by_domain(&domain).await.map_err(action_error)? {
            Some(found) => Ok(tenant_output(&found, Some(&domain))),
            None => Err(ActionError::permanent(format!(
                "no Microsoft 365 tenant has verified the domain `{domain}`: check the client's website in the PSA, or give the tenant id as `customer_tenant_id`"
            ))),
        }
    }
}

/// `graph.await_gdap {tenant, relationship}` (read-only): succeeds once the
/// client's global administrator has accepted the GDAP relationship (it is
/// `active`); until then a retryable failure carrying the approval link, so
/// the step's retry policy polls (the template polls for about two weeks).
/// A relationship that ended or does not exist fails for good. Output:
/// `{id, status, customer_tenant_id, roles}`.
#[derive(Debug, Clone)]
pub struct AwaitGdap(pub Arc<Directory>);

#[async_trait]
impl Action for AwaitGdap {
    async fn run(&self, call: ActionCall<'_>) -> Result<Value, ActionError> {
        let id = id_param(call.params, "relationship")?;
        let m365 = m365(&self.0, &call).await?;
        let Some(relationship) = m365.gdap_relationship(&id).await.map_err(action_error)? else {
            return Err(ActionError::permanent(format!(
                "there is no GDAP relationship {id}"
            )));
        };
        if relationship.status == "active" {
            return Ok(json!({
                "id": relationship.id, "status": relationship.status,
                "customer_tenant_id": relationship.customer_tenant_id,
                "roles": relationship.roles,
            }));
        }
        if ended(&relationship) {
            return Err(ActionError::permanent(format!(
                "GDAP relationship {id} is {}: it can no longer be accepted; request a new one",
                relationship.status
            )));
        }
        let link = approval_link(&relationship)
            .map(|l| format!(" (they accept it at {l})"))
            .unwrap_or_default();
        Err(ActionError::retryable(format!(
            "GDAP relationship {id} is {}: waiting for the client's global administrator to accept it{link}",
            relationship.status
        )))
    }
}

/// The privileged roles reviewed when a step names none.
const PRIVILEGED: [&str; 6] = [
    "Global Administrator",
    "Privileged Role Administrator",
    "Privileged Authentication Administrator",
    "Security Administrator",
    "Exchange Administrator",
    "User Administrator",
];

/// A list parameter that a template may pass as a list or render into a
/// string holding one: its items (strings, or objects with `id` and
/// `user_principal_name`) as lower-cased ids and UPNs.
fn identities(params: &Value, key: &str) -> Result<Vec<String>, ActionError> {
    let items = match params.get(key) {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items.clone(),
        Some(Value::String(text)) if text.trim().is_empty() => Vec::new(),
        Some(Value::String(text)) => match serde_json::from_str::<Value>(text) {
            Ok(Value::Array(items)) => items,
            _ => vec![Value::String(text.clone())],
        },
        Some(_) => {
            return Err(ActionError::permanent(format!(
                "parameter `{key}` must be a list of accounts (ids, user principal names, or the accounts `graph.create_admin_accounts` answered)"
            )));
        }
    };
    let mut out = Vec::new();
    for item in items {
        match item {
            Value::String(text) => out.push(text.to_ascii_lowercase()),
            Value::Object(account) => {
                for field in ["id", "user_principal_name"] {
                    if let Some(text) = account.get(field).and_then(Value::as_str) {
                        out.push(text.to_ascii_lowercase());
                    }
                }
            }
            _ => {
                return Err(ActionError::permanent(format!(
                    "parameter `{key}` must list strings or accounts"
                )));
            }
        }
    }
    Ok(out)
}

/// The `(name, role template id)` of the `roles` parameter, or the
/// [`PRIVILEGED`] roles.
fn roles_to_review(params: &Value) -> Result<Vec<(String, String)>, ActionError> {
    let names: Vec<String> = match params.get("roles") {
        None | Some(Value::Null) => PRIVILEGED.iter().map(|s| (*s).to_owned()).collect(),
        Some(Value::Array(items)) if !items.is_empty() => items
            .iter()
            .map(|r| {
                r.as_str().map(str::to_owned).ok_or_else(|| {
                    ActionError::permanent("parameter `roles` must list role names or ids")
                })
            })
            .collect::<Result<_, _>>()?,
        Some(_) => {
            return Err(ActionError::permanent(
                "parameter `roles` must be a non-empty list of role names or ids",
            ));
        }
    };
    names
        .into_iter()
        .map(|name| {
            if is_guid(&name) {
                let id = name.to_ascii_lowercase();
                let known = ROLES.iter().find(|(_, rid)| *rid == id).map(|(n, _)| *n);
                return Ok((known.map_or_else(|| id.clone(), str::to_owned), id));
            }
            ROLES
                .iter()
                .find(|(n, _)| n.eq_ignore_ascii_case(&name))
                .map(|(n, id)| ((*n).to_owned(), (*id).to_owned()))
                .ok_or_else(|| {
                    ActionError::permanent(format!(
                        "role `{name}` is not a known Entra role name; give its role template id"
                    ))
                })
        })
        .collect()
}

/// `graph.review_privileged_access {tenant, customer_tenant_id, ours,
/// known?, roles?}` (read-only, through our GDAP access): lists who holds
/// the client's privileged directory roles (Global Administrator,
/// Privileged Role Administrator, … or the `roles` given) and which of them
/// are neither accounts we created (`ours`: the accounts
/// `graph.create_admin_accounts` answered, or ids/UPNs) nor accounts the
/// client named as its own (`known`). It succeeds either way: the list is
/// the evidence a person reviews before signing off that the previous
/// provider's access is gone. Output: `{customer_tenant_id, roles_checked,
/// privileged: [{id, user_principal_name, display_name, roles, ours,
/// known}], unknown: [...], unknown_count}`.
#[derive(Debug, Clone)]
pub struct ReviewPrivilegedAccess(pub Arc<Directory>);

#[async_trait]
impl Action for ReviewPrivilegedAccess {
    async fn run(&self, call: ActionCall<'_>) -> Result<Value, ActionError> {
        let ours = identities(call.params, "ours")?;
        let known = identities(call.params, "known")?;
        let roles = roles_to_review(call.params)?;
        let (_, m365, customer) = graph(&self.0, &call).await?;
        let mut holders: BTreeMap<String, (DirectoryMember, Vec<String>)> = BTreeMap::new();
        for (name, id) in &roles {
            for member in m365
                .directory_role_members(&customer, id)
                .await
                .map_err(action_error)?
            {
                holders
                    .entry(member.id.clone())
                    .or_insert_with(|| (member, Vec::new()))
                    .1
                    .push(name.clone());
            }
        }
        let matches = |list: &[String], member: &DirectoryMember| {
            list.contains(&member.id.to_ascii_lowercase())
                || member
                    .user_principal_name
                    .as_ref()
                    .is_some_and(|upn| list.contains(&upn.to_ascii_lowercase()))
        };
        let mut privileged = Vec::new();
        let mut unknown = Vec::new();
        for (member, held) in holders.values() {
            let is_ours = matches(&ours, member);
            let is_known = matches(&known, member);
            let entry = json!({
                "id": member.id,
                "user_principal_name": member.user_principal_name,
                "display_name": member.display_name,
                "object_type": member.object_type,
                "roles": held,
                "ours": is_ours,
                "known": is_known,
            });
            if !is_ours && !is_known {
                unknown.push(entry.clone());
            }
            privileged.push(entry);
        }
        Ok(json!({
            "customer_tenant_id": customer,
            "roles_checked": roles.iter().map(|(name, _)| name).collect::<Vec<_>>(),
            "unknown_count": unknown.len(),
            "privileged": privileged,
            "unknown": unknown,
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accounts_are_read_from_lists_objects_and_rendered_text() {
        let params = json!({
            "ours": [{"id": "ABC", "user_principal_name": "BreakGlass1@t.example"}, "x@t.example"],
            "known": "[\"it@t.example\"]",
            "one": "solo@t.example",
        });
        assert_eq!(
            identities(&params, "ours").unwrap(),
            ["abc", "breakglass1@t.example", "x@t.example"]
        );
        assert_eq!(identities(&params, "known").unwrap(), ["it@t.example"]);
        assert_eq!(identities(&params, "one").unwrap(), ["solo@t.example"]);
        assert!(identities(&params, "missing").unwrap().is_empty());
        assert!(identities(&json!({"ours": 7}), "ours").is_err());
    }

    #[test]
    fn roles_default_to_the_privileged_ones() {
        let roles = roles_to_review(&json!({})).unwrap();
        assert_eq!(roles.len(), PRIVILEGED.len());
        assert_eq!(roles[0].1, "62e90394-69f5-4237-9190-012177145e10");
        let named = roles_to_review(&json!({"roles": ["global reader"]})).unwrap();
        assert_eq!(
            named,
            [(
                "Global Reader".to_owned(),
                "f2ef992c-3afb-46b9-b7cf-a126ee74c451".to_owned()
            )]
        );
        assert!(roles_to_review(&json!({"roles": ["Chief Wizard"]})).is_err());
    }
}
