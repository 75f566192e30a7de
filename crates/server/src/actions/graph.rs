//! `graph.…`: the GDAP relationship with the client's Microsoft 365
//! tenant and its break-glass and admin accounts. The reads that find the
//! tenant, wait for the client's acceptance and review privileged access
//! are in `graph_access`.
//!
//! Passwords of the accounts Gatehouse creates are random, go straight into
//! the client tenant's vault (sealed under its key, as secrets named
//! `m365.<account>.password`) and appear nowhere else: not in the step's
//! output, the plan, the history, an error or a log line.

use std::sync::Arc;

use async_trait::async_trait;
use gatehouse_connectors::http::Secret;
use gatehouse_connectors::ports::{GdapRelationship, GdapRequest, M365, NewDirectoryUser};
use gatehouse_core::connector::ConnectorConfig;
use gatehouse_core::secret::SecretName;
use gatehouse_engine::action::{Action, ActionCall, ActionError, Change, Plan};
use serde_json::{Value, json};
use zeroize::Zeroizing;

use super::{Directory, Wanted, action_error, id_param, optional_text, text};

/// Well-known Entra built-in roles by display name → role template id, so
/// templates can name roles the way people do. An id is accepted as is.
pub(super) const ROLES: [(&str, &str); 15] = [
    (
        "Global Administrator",
        "62e90394-69f5-4237-9190-012177145e10",
    ),
    ("Global Reader", "f2ef992c-3afb-46b9-b7cf-a126ee74c451"),
    (
        "Helpdesk Administrator",
        "729827e3-9c14-49f7-bb1b-9608f156bbb8",
    ),
    ("User Administrator", "fe930be7-5e62-47db-91af-98c3a49a38b1"),
    (
        "License Administrator",
        "4d6ac14f-3453-41d0-bef9-a3e0c569773a",
    ),
    ("Security Reader", "5d6b6bb7-de71-4623-b4af-96380a352509"),
    (
        "Security Administrator",
        "194ae4cb-b126-40b2-bd5b-6091b380977d",
    ),
    (
        "Exchange Administrator",
        "29232cdf-9323-42fd-ade2-1d097af3e4de",
    ),
    (
        "SharePoint Administrator",
        "f28a1f50-f6e7-4571-818b-6a12f2af6b6c",
    ),
    (
        "Teams Administrator",
        "69091246-20e8-4a56-aa4d-066075b2a7a8",
    ),
    (
        "Intune Administrator",
        "3a2c62db-5318-420d-8d74-23affee5d9d5",
    ),
    (
        "Privileged Role Administrator",
        "e8611ab8-c189-46e8-94e1-60213ab1f814",
    ),
    (
        "Privileged Authentication Administrator",
        "7be44c8a-adaf-4e2a-84d6-ab2649e08a13",
    ),
    (
        "Cloud Device Administrator",
        "7698a772-787b-4ac8-901f-60d6b08affd2",
    ),
    ("Directory Readers", "88d8e3e3-8f55-4a1e-953a-9b9898b8876b"),
];

/// Whether `text` is a GUID (8-4-4-4-12 hex digits).
pub(super) fn is_guid(text: &str) -> bool {
    let parts: Vec<&str> = text.split('-').collect();
    parts.len() == 5
        && parts
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(p, n)| p.len() == n && p.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// The role template ids of the `roles` parameter (names or ids).
fn role_ids(params: &Value) -> Result<Vec<String>, ActionError> {
    let roles = params
        .get("roles")
        .and_then(Value::as_array)
        .filter(|r| !r.is_empty())
        .ok_or_else(|| {
            ActionError::permanent("parameter `roles` is required (a list of role names or ids)")
        })?;
    let mut ids = Vec::with_capacity(roles.len());
    for role in roles {
        let role = role
            .as_str()
            .ok_or_else(|| ActionError::permanent("parameter `roles` must list strings"))?;
        let id = if is_guid(role) {
            role.to_ascii_lowercase()
        } else {
            ROLES
                .iter()
                .find(|(name, _)| name.eq_ignore_ascii_case(role))
                .map(|(_, id)| (*id).to_owned())
                .ok_or_else(|| {
                    ActionError::permanent(format!(
                        "role `{role}` is not a known Entra role name; give its role template id"
                    ))
                })?
        };
        if !ids.contains(&id) {
            ids.push(id);
        }
    }
    ids.sort();
    Ok(ids)
}

/// Graph for the call's tenant, and the customer's Entra tenant id: the
/// `customer_tenant_id` parameter, else the connector's setting of that name.
pub(super) async fn graph(
    directory: &Directory,
    call: &ActionCall<'_>,
) -> Result<(ConnectorConfig, Arc<dyn M365>, String), ActionError> {
    let tenant = directory.tenant_of(call).await?;
    let (config, m365) = directory
        .m365(tenant, &Wanted::from_params(call.params, None)?)
        .await?;
    let customer = match optional_text(call.params, "customer_tenant_id")? {
        Some(id) => id.to_owned(),
        None => config
            .setting("customer_tenant_id")
            .map(str::to_owned)
            .ok_or_else(|| {
                ActionError::permanent(
                    "parameter `customer_tenant_id` is required (the connector has no such setting)",
                )
            })?,
    };
    if !is_guid(&customer) {
        return Err(ActionError::permanent(format!(
            "`{customer}` is not an Entra tenant id (a GUID)"
        )));
    }
    Ok((config, m365, customer))
}

/// `graph.request_gdap {tenant, customer_tenant_id, duration, roles,
/// display_name?}`: requests a GDAP relationship (reusing one of the same
/// name that is not ended) and answers at once, whatever its status: the
/// customer's global administrator accepts it in their own time, and
/// `graph.await_gdap` waits for that. Output: `{id, display_name, status,
/// roles, customer_tenant_id, approval_link}` (`approval_link`: the admin
/// centre page where the customer accepts it, while it waits for them).
#[derive(Debug, Clone)]
pub struct RequestGdap(pub Arc<Directory>);

fn gdap_request(call: &ActionCall<'_>, customer: &str) -> Result<GdapRequest, ActionError> {
    let duration = optional_text(call.params, "duration")?.unwrap_or("P730D");
    if !duration.starts_with('P') || duration.len() > 16 {
        return Err(ActionError::permanent(format!(
            "parameter `duration` must be an ISO 8601 duration such as P730D, not `{duration}`"
        )));
    }
    let display_name = match optional_text(call.params, "display_name")? {
        Some(name) => name.to_owned(),
        // Stable across attempts, so an earlier attempt's request is found.
        None => format!("Gatehouse {}", call.instance),
    };
    if display_name.chars().count() > 50 {
        return Err(ActionError::permanent(
            "parameter `display_name` must be at most 50 characters",
        ));
    }
    Ok(GdapRequest {
        display_name,
        customer_tenant_id: customer.to_owned(),
        duration: duration.to_owned(),
        roles: role_ids(call.params)?,
    })
}

pub(super) fn ended(relationship: &GdapRelationship) -> bool {
    matches!(
        relationship.status.as_str(),
        "terminated" | "terminationRequested" | "terminating" | "expired"
    )
}

/// The Microsoft 365 admin centre page where the customer's global
/// administrator reviews and accepts a relationship (Microsoft's documented
/// form; Graph itself does not return it), while it waits for them.
pub(super) fn approval_link(relationship: &GdapRelationship) -> Option<String> {
    matches!(relationship.status.as_str(), "created" | "approvalPending").then(|| {
        format!(
            "https://admin.microsoft.com/AdminPortal/Home#/partners/invitation/granularAdminRelationships/{}",
            relationship.id
        )
    })
}

#[async_trait]
impl Action for RequestGdap {
    async fn run(&self, call: ActionCall<'_>) -> Result<Value, ActionError> {
        let (_, m365, customer) = graph(&self.0, &call).await?;
        let request = gdap_request(&call, &customer)?;
        let existing = m365
            .gdap_relationships(&customer)
            .await
            .map_err(action_error)?
            .into_iter()
            .find(|r| r.display_name == request.display_name && !ended(r));
        let relationship = match existing {
            Some(found) => found,
            None => m365
                .request_gdap(&request, call.idempotency_key)
                .await
                .map_err(action_error)?,
        };
        let link = approval_link(&relationship);
        Ok(json!({
            "id": relationship.id, "display_name": relationship.display_name,
            "status": relationship.status, "roles": relationship.roles,
            "customer_tenant_id": relationship.customer_tenant_id,
            "approval_link": link,
        }))
    }

    async fn plan(&self, call: ActionCall<'_>) -> Result<Option<Plan>, ActionError> {
        let (_, m365, customer) = graph(&self.0, &call).await?;
        let request = gdap_request(&call, &customer)?;
        let mut relationships = m365
            .gdap_relationships(&customer)
            .await
            .map_err(action_error)?;
        relationships.sort_by(|a, b| a.id.cmp(&b.id));
        let same = relationships
            .iter()
            .any(|r| r.display_name == request.display_name && !ended(r));
        let changes = if same {
            Vec::new()
        } else {
            vec![Change {
                target: format!(
                    "GDAP relationship \"{}\" with {customer}",
                    request.display_name
                ),
                field: "roles".into(),
                before: Value::Null,
                after: json!({ "roles": request.roles, "duration": request.duration }),
            }]
        };
        Ok(Some(Plan::new(
            format!("Request GDAP access to {customer} for {}", request.duration),
            changes,
            json!({ "relationships": relationships }),
        )))
    }
}

/// `graph.terminate_gdap {tenant, relationship}` (the compensation of
/// `graph.request_gdap`): ends it; one already ended is fine. Output:
/// `{id, terminated}`.
#[derive(Debug, Clone)]
pub struct TerminateGdap(pub Arc<Directory>);

#[async_trait]
impl Action for TerminateGdap {
    async fn run(&self, call: ActionCall<'_>) -> Result<Value, ActionError> {
        let id = id_param(call.params, "relationship")?;
        let tenant = self.0.tenant_of(&call).await?;
        let (_, m365) = self
            .0
            .m365(tenant, &Wanted::from_params(call.params, None)?)
            .await?;
        m365.terminate_gdap(&id, call.idempotency_key)
            .await
            .map_err(action_error)?;
        Ok(json!({ "id": id, "terminated": true }))
    }
}

/// One account `graph.create_admin_accounts` makes.
struct AccountSpec {
    kind: &'static str,
    upn: String,
    display_name: String,
    nickname: String,
    secret: SecretName,
}

/// The accounts the parameters ask for: `break_glass` emergency accounts
/// (`breakglass1@domain`, …) and one admin account per address in `admins`
/// (`adm-<local part>@domain`), in the customer's `domain` (a parameter,
/// else the connector's `domain` setting).
fn account_specs(
    params: &Value,
    config: &ConnectorConfig,
) -> Result<Vec<AccountSpec>, ActionError> {
    let domain = match optional_text(params, "domain")? {
        Some(d) => d.to_owned(),
        None => config.setting("domain").map(str::to_owned).ok_or_else(|| {
            ActionError::permanent(
                "parameter `domain` is required (the customer's domain; the connector has no `domain` setting)",
            )
        })?,
    }
    .to_ascii_lowercase();
    let domain_ok = domain.contains('.')
        && domain
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-'));
    if !domain_ok {
        return Err(ActionError::permanent(format!(
            "`{domain}` is not a domain name"
        )));
    }
    let break_glass = match params.get("break_glass") {
        None | Some(Value::Null) => 0,
        Some(v) => v.as_u64().filter(|n| *n <= 5).ok_or_else(|| {
            ActionError::permanent("parameter `break_glass` must be a whole number from 0 to 5")
        })?,
    };
    let mut specs = Vec::new();
    let secret = |local: &str| {
        SecretName::parse(&format!("m365.{local}.password"))
            .map_err(|e| ActionError::permanent(format!("account `{local}`: {e}")))
    };
    for n in 1..=break_glass {
        let local = format!("breakglass{n}");
        specs.push(AccountSpec {
            kind: "break_glass",
            upn: format!("{local}@{domain}"),
            display_name: format!("Break-glass account {n}"),
            secret: secret(&local)?,
            nickname: local,
        });
    }
    let admins = match params.get("admins") {
        None | Some(Value::Null) => Vec::new(),
        Some(Value::Array(items)) => items.clone(),
        Some(_) => {
            return Err(ActionError::permanent(
                "parameter `admins` must be a list of e-mail addresses",
            ));
        }
    };
    for admin in admins {
        let address = admin
            .as_str()
            .ok_or_else(|| ActionError::permanent("parameter `admins` must list strings"))?;
        let local: String = address
            .split('@')
            .next()
            .unwrap_or_default()
            .to_ascii_lowercase()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
            .collect();
        if local.is_empty() || !address.contains('@') {
            return Err(ActionError::permanent(format!(
                "`{address}` is not an e-mail address"
            )));
        }
        let local = format!("adm-{local}");
        specs.push(AccountSpec {
            kind: "admin",
            upn: format!("{local}@{domain}"),
            display_name: format!("Admin ({address})"),
            secret: secret(&local)?,
            nickname: local,
        });
    }
    if specs.is_empty() {
        return Err(ActionError::permanent(
            "no accounts asked for: give `break_glass` or `admins`",
        ));
    }
    Ok(specs)
}

/// A random password of 24 characters with upper and lower case letters,
/// digits and symbols.
fn random_password() -> Result<Zeroizing<String>, ActionError> {
    const SETS: [&[u8]; 4] = [
        b"ABCDEFGHJKLMNPQRSTUVWXYZ",
        b"abcdefghijkmnopqrstuvwxyz",
        b"23456789",
        b"!#%+-=?@^_~",
    ];
    let mut bytes = Zeroizing::new([0u8; 24]);
    getrandom::fill(bytes.as_mut())
        .map_err(|e| ActionError::retryable(format!("the random source failed: {e}")))?;
    let mut password = Zeroizing::new(String::with_capacity(24));
    for (i, b) in bytes.iter().enumerate() {
        // The first four draw one from each set; the rest from all of them.
        let set = if i < 4 {
            SETS[i]
        } else {
            SETS[usize::from(*b) % 4]
        };
        let index = usize::from(*b) % set.len();
        password.push(char::from(set[index]));
    }
    Ok(password)
}

/// `graph.create_admin_accounts {tenant, customer_tenant_id, domain?,
/// break_glass, admins}`: creates the accounts that do not exist yet, each
/// with a random password put straight into the tenant's vault. Output:
/// `{accounts: [{id, user_principal_name, kind, secret, customer_tenant_id,
/// created, password_in_vault}]}` — never a password.
#[derive(Debug, Clone)]
pub struct CreateAdminAccounts(pub Arc<Directory>);

#[async_trait]
impl Action for CreateAdminAccounts {
    async fn run(&self, call: ActionCall<'_>) -> Result<Value, ActionError> {
        let tenant = self.0.tenant_of(&call).await?;
        let (config, m365, customer) = graph(&self.0, &call).await?;
        let usage_location = optional_text(call.params, "usage_location")?.map(str::to_owned);
        let mut accounts = Vec::new();
        for spec in account_specs(call.params, &config)? {
            let found = m365
                .find_user(&customer, &spec.upn)
                .await
                .map_err(action_error)?;
            let (user, created) = match found {
                // An earlier attempt made it (and stored its password first),
                // or someone did: its password is left alone.
                Some(user) => (user, false),
                None => {
                    // The password reaches the vault before the account
                    // exists: a crash in between only leaves a password of
                    // an account that the next attempt creates with a new one.
                    let password = random_password()?;
                    self.0
                        .put_secret(
                            tenant,
                            &spec.secret,
                            password.as_bytes(),
                            &format!("password of {} ({})", spec.upn, spec.kind),
                        )
                        .await?;
                    let user = NewDirectoryUser {
                        user_principal_name: spec.upn.clone(),
                        display_name: spec.display_name.clone(),
                        mail_nickname: spec.nickname.clone(),
                        password: Secret::new(password.as_str()),
                        usage_location: usage_location.clone(),
                    };
                    let key = format!("{}:{}", call.idempotency_key, spec.upn);
                    let made = m365
                        .create_user(&customer, &user, &key)
                        .await
                        .map_err(action_error)?;
                    (made, true)
                }
            };
            let in_vault = self.0.has_secret(tenant, &spec.secret).await?;
            accounts.push(json!({
                "id": user.id,
                "user_principal_name": user.user_principal_name,
                "kind": spec.kind,
                "secret": spec.secret,
                "customer_tenant_id": customer,
                "created": created,
                "password_in_vault": in_vault,
            }));
        }
        Ok(json!({ "accounts": accounts }))
    }

    async fn plan(&self, call: ActionCall<'_>) -> Result<Option<Plan>, ActionError> {
        let (config, m365, customer) = graph(&self.0, &call).await?;
        let mut observed = serde_json::Map::new();
        let mut changes = Vec::new();
        for spec in account_specs(call.params, &config)? {
            let found = m365
                .find_user(&customer, &spec.upn)
                .await
                .map_err(action_error)?;
            if found.is_none() {
                changes.push(Change {
                    target: format!("Microsoft 365 tenant {customer}"),
                    field: format!("users[{}]", spec.upn),
                    before: Value::Null,
                    after: json!({ "kind": spec.kind, "password": format!("random, into the vault as {}", spec.secret) }),
                });
            }
            observed.insert(spec.upn, json!(found));
        }
        Ok(Some(Plan::new(
            format!("Create {} admin account(s) in {customer}", changes.len()),
            changes,
            json!({ "customer_tenant_id": customer, "users": observed }),
        )))
    }
}

/// `graph.delete_admin_accounts {tenant, accounts}` (the compensation of
/// `graph.create_admin_accounts`, given its `accounts` output): deletes
/// the accounts it created and their passwords from the vault; accounts it
/// found existing are left alone. Output: `{deleted: [upn…]}`.
#[derive(Debug, Clone)]
pub struct DeleteAdminAccounts(pub Arc<Directory>);

#[async_trait]
impl Action for DeleteAdminAccounts {
    async fn run(&self, call: ActionCall<'_>) -> Result<Value, ActionError> {
        let accounts = match call.params.get("accounts") {
            Some(Value::Array(items)) => items.clone(),
            // A template may render the list into a string.
            Some(Value::String(text)) => serde_json::from_str::<Vec<Value>>(text).map_err(|_| {
                ActionError::permanent("parameter `accounts` must be the list `graph.create_admin_accounts` answered")
            })?,
            _ => {
                return Err(ActionError::permanent(
                    "parameter `accounts` must be the list `graph.create_admin_accounts` answered",
                ));
            }
        };
        let tenant = self.0.tenant_of(&call).await?;
        let (_, m365) = self
            .0
            .m365(tenant, &Wanted::from_params(call.params, None)?)
            .await?;
        let mut deleted = Vec::new();
        for account in &accounts {
            if account.get("created").and_then(Value::as_bool) == Some(false) {
                continue;
            }
            let id = text(account, "id")?;
            let customer = text(account, "customer_tenant_id")?;
            let upn = optional_text(account, "user_principal_name")?.unwrap_or(id);
            m365.delete_user(customer, id).await.map_err(action_error)?;
            if let Some(secret) = optional_text(account, "secret")? {
                let name = SecretName::parse(secret)
                    .map_err(|e| ActionError::permanent(format!("account {upn}: {e}")))?;
                self.0
                    .delete_secret(tenant, &name, &format!("account {upn} deleted"))
                    .await?;
            }
            deleted.push(upn.to_owned());
        }
        Ok(json!({ "deleted": deleted }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_long_and_mixed() {
        for _ in 0..50 {
            let p = random_password().unwrap();
            assert_eq!(p.len(), 24);
            assert!(p.chars().any(|c| c.is_ascii_uppercase()));
            assert!(p.chars().any(|c| c.is_ascii_lowercase()));
            assert!(p.chars().any(|c| c.is_ascii_digit()));
            assert!(p.chars().any(|c| !c.is_ascii_alphanumeric()));
        }
        assert_ne!(*random_password().unwrap(), *random_password().unwrap());
    }

    #[test]
    fn roles_by_name_or_id() {
        let ids = role_ids(&json!({"roles": ["Helpdesk Administrator", "fe930be7-5e62-47db-91af-98c3a49a38b1", "user administrator"]})).unwrap();
        assert_eq!(
            ids,
            vec![
                "729827e3-9c14-49f7-bb1b-9608f156bbb8",
                "fe930be7-5e62-47db-91af-98c3a49a38b1"
            ]
        );
        assert!(role_ids(&json!({"roles": ["Chief Wizard"]})).is_err());
        assert!(role_ids(&json!({"roles": []})).is_err());
    }
}
