//! The [`AccountDirectory`] port: one person's account in one system, as
//! the identity reconciler sees it, and the changes it makes to it.
//!
//! The reconciler compares what a person should hold (from role templates)
//! with [`AccountDirectory::holdings`], and applies the difference one
//! [`AccountChange`] at a time. Every change is idempotent: applying one
//! that is already in effect succeeds and changes nothing, so a retried or
//! repeated run is harmless. A leaver is `DisableAccount` then
//! `RevokeSessions` (then, after the retention period, `DeleteAccount`).
//!
//! Two implementations:
//! - [`ScimDirectory`] over a [`ScimClient`]: the person is found by
//!   `externalId` (Gatehouse's person id), then by `userName`; groups are
//!   SCIM groups by display name (created on first use); roles are
//!   `roles[].value`; there are no licences.
//! - [`GraphDirectory`] over the [`M365`] port: the person is found by
//!   user principal name (Graph holds no Gatehouse id); groups are Entra
//!   group object ids (a missing group is refused, never created); roles
//!   are Entra directory role template ids; licences are SKU ids.
//!
//! How each change maps onto requests is in `docs/connectors-scim.md`.

use std::collections::BTreeSet;
use std::sync::Arc;

use async_trait::async_trait;
use gatehouse_scim::{PatchOp, PatchOperation, PatchPath};
use serde_json::json;

use crate::error::ConnectorError;
use crate::http::Secret;
use crate::ports::{DirectoryUser, M365, NewDirectoryUser};
use crate::scim::{NewScimUser, ScimClient, ScimUser, has_value_filter, is_scim_type};

/// Who an account belongs to, as Gatehouse sends it to a system.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct AccountRef {
    /// Gatehouse's person id: sent as SCIM `externalId`; the stable key.
    pub external_id: String,
    /// The sign-in name (SCIM `userName`, Graph `userPrincipalName`).
    pub user_name: String,
    /// The name shown (`displayName`).
    pub display_name: String,
    /// The given name (SCIM `name.givenName`).
    pub given_name: Option<String>,
    /// The family name (SCIM `name.familyName`).
    pub family_name: Option<String>,
    /// The work e-mail (SCIM `emails[type eq "work"]`).
    pub email: Option<String>,
}

/// What a system holds for one account.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Holdings {
    /// The system's own id of the account.
    pub account_id: String,
    /// The account's `externalId` (SCIM); `None` on Graph.
    pub external_id: Option<String>,
    /// The sign-in name.
    pub user_name: String,
    /// Whether the account can sign in.
    pub active: bool,
    /// Group display names (SCIM) or group ids (Graph), sorted.
    pub groups: BTreeSet<String>,
    /// Licence SKU ids (Graph); empty for SCIM.
    pub licenses: BTreeSet<String>,
    /// App roles / SCIM `roles[].value`.
    pub roles: BTreeSet<String>,
}

/// One change to one account.
#[derive(
    Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize, serde::Deserialize,
)]
#[serde(tag = "op", content = "value", rename_all = "snake_case")]
pub enum AccountChange {
    /// Creates the account, active (SCIM POST with `externalId`; Graph
    /// `POST /users` with a random password that is never logged).
    CreateAccount,
    /// Lets the account sign in again.
    EnableAccount,
    /// Stops sign-in (SCIM `active=false`; Graph `accountEnabled=false`).
    DisableAccount,
    /// Deletes the account.
    DeleteAccount,
    /// Adds the account to a group (SCIM: by display name, created if
    /// missing; Graph: by object id).
    AddGroup(String),
    /// Removes the account from a group.
    RemoveGroup(String),
    /// Assigns a licence SKU (Graph; refused on SCIM).
    AddLicense(String),
    /// Removes a licence SKU (Graph; nothing to do on SCIM).
    RemoveLicense(String),
    /// Grants a role (SCIM `roles`; Graph directory role template id).
    AddRole(String),
    /// Takes a role away.
    RemoveRole(String),
    /// Ends every sign-in session (Graph `revokeSignInSessions`; nothing
    /// to do on SCIM).
    RevokeSessions,
}

/// One system's accounts, as the identity reconciler reads and changes
/// them.
#[async_trait]
pub trait AccountDirectory: Send + Sync {
    /// The system's kind for messages (`scim`, `graph`).
    fn kind(&self) -> &'static str;
    /// What the system holds for this person (found by externalId, then by
    /// userName); None when there is no account.
    async fn holdings(&self, person: &AccountRef) -> Result<Option<Holdings>, ConnectorError>;
    /// Every account the system holds, every page read (for drift:
    /// orphans).
    async fn accounts(&self) -> Result<Vec<Holdings>, ConnectorError>;
    /// Applies one change. Must be idempotent: applying a change already in
    /// effect succeeds (removing a group the account is not in, disabling a
    /// disabled account, deleting a missing account). `key` is a stable
    /// idempotency key: forward it as `Idempotency-Key` where the system
    /// takes one. Group names that do not exist: AddGroup creates the
    /// group (SCIM) / is Rejected naming the group (Graph, where groups are
    /// ids).
    async fn apply(
        &self,
        person: &AccountRef,
        change: &AccountChange,
        key: &str,
    ) -> Result<(), ConnectorError>;
}

fn no_account(system: &'static str, person: &AccountRef, change: &AccountChange) -> ConnectorError {
    ConnectorError::Rejected {
        system,
        status: None,
        message: format!(
            "{change:?} for {}: there is no account for this person (create it first)",
            person.user_name
        ),
    }
}

fn path(text: &str) -> Result<PatchPath, ConnectorError> {
    crate::scim::patch_path(text)
}

// ---- SCIM -------------------------------------------------------------------

/// [`AccountDirectory`] over a SCIM 2.0 application.
#[derive(Debug, Clone)]
pub struct ScimDirectory {
    /// The application's client.
    pub client: Arc<ScimClient>,
}

impl ScimDirectory {
    /// A directory over `client`.
    pub fn new(client: Arc<ScimClient>) -> Self {
        Self { client }
    }

    /// The person's account: by `externalId`, then by `userName`. An
    /// account found by `userName` that carries another person's
    /// `externalId` is not this person's: a conflict for someone to
    /// resolve, never an account to change.
    async fn find(&self, person: &AccountRef) -> Result<Option<ScimUser>, ConnectorError> {
        if let Some(user) = self
            .client
            .find_user_by_external_id(&person.external_id)
            .await?
        {
            return Ok(Some(user));
        }
        match self
            .client
            .find_user_by_user_name(&person.user_name)
            .await?
        {
            Some(user) => match user.external_id.as_deref() {
                Some(other) if !other.is_empty() && other != person.external_id => {
                    Err(ConnectorError::Rejected {
                        system: "scim",
                        status: Some(409),
                        message: format!(
                            "{}: the userName is held by account {} of another person (externalId {other:?})",
                            person.user_name, user.id
                        ),
                    })
                }
                _ => Ok(Some(user)),
            },
            None => Ok(None),
        }
    }

    async fn holdings_of(&self, user: ScimUser) -> Result<Holdings, ConnectorError> {
        let groups = self.client.groups_of(&user).await?;
        Ok(Holdings {
            account_id: user.id,
            external_id: user.external_id,
            user_name: user.user_name,
            active: user.active,
            groups: groups.into_iter().map(|g| g.display_name).collect(),
            licenses: BTreeSet::new(),
            roles: user.roles.into_iter().collect(),
        })
    }

    /// Whether `user` is in the group called `name`, when the user's own
    /// answer says (`None`: it does not say).
    fn in_group(user: &ScimUser, name: &str) -> Option<bool> {
        let list = user.groups.as_ref()?;
        if list.iter().any(|g| g.display.is_none()) {
            return None;
        }
        Some(list.iter().any(|g| {
            g.display
                .as_deref()
                .is_some_and(|d| d.eq_ignore_ascii_case(name))
        }))
    }

    async fn create(&self, person: &AccountRef, key: &str) -> Result<(), ConnectorError> {
        if let Some(user) = self.find(person).await? {
            // Found by userName without our id (`find` refuses another's):
            // adopt it.
            if user.external_id.as_deref() != Some(person.external_id.as_str()) {
                let op = PatchOperation {
                    op: PatchOp::Replace,
                    path: Some(path("externalId")?),
                    value: Some(json!(person.external_id)),
                };
                self.client.patch_user(&user.id, &[op]).await?;
            }
            return Ok(());
        }
        let new = NewScimUser {
            external_id: person.external_id.clone(),
            user_name: person.user_name.clone(),
            display_name: person.display_name.clone(),
            given_name: person.given_name.clone(),
            family_name: person.family_name.clone(),
            email: person.email.clone(),
            active: true,
        };
        match self.client.create_user(&new, key).await {
            Ok(_) => Ok(()),
            // Created by another attempt between our look and our create.
            Err(e) if is_scim_type(&e, "uniqueness") => match self.find(person).await? {
                Some(_) => Ok(()),
                None => Err(e),
            },
            Err(e) => Err(e),
        }
    }
}

#[async_trait]
impl AccountDirectory for ScimDirectory {
    fn kind(&self) -> &'static str {
        "scim"
    }

    async fn holdings(&self, person: &AccountRef) -> Result<Option<Holdings>, ConnectorError> {
        match self.find(person).await? {
            Some(user) => Ok(Some(self.holdings_of(user).await?)),
            None => Ok(None),
        }
    }

    async fn accounts(&self) -> Result<Vec<Holdings>, ConnectorError> {
        let users = self.client.users().await?;
        let mut all = Vec::with_capacity(users.len());
        for user in users {
            all.push(self.holdings_of(user).await?);
        }
        Ok(all)
    }

    async fn apply(
        &self,
        person: &AccountRef,
        change: &AccountChange,
        key: &str,
    ) -> Result<(), ConnectorError> {
        match change {
            AccountChange::CreateAccount => return self.create(person, key).await,
            AccountChange::RevokeSessions | AccountChange::RemoveLicense(_) => return Ok(()),
            AccountChange::AddLicense(sku) => {
                return Err(ConnectorError::Rejected {
                    system: "scim",
                    status: None,
                    message: format!(
                        "licence {sku} for {}: a SCIM application has no licences",
                        person.user_name
                    ),
                });
            }
            _ => {}
        }
        let Some(user) = self.find(person).await? else {
            return match change {
                AccountChange::EnableAccount
                | AccountChange::AddGroup(_)
                | AccountChange::AddRole(_) => Err(no_account("scim", person, change)),
                _ => Ok(()),
            };
        };
        match change {
            AccountChange::EnableAccount | AccountChange::DisableAccount => {
                let want = matches!(change, AccountChange::EnableAccount);
                if user.active == want {
                    return Ok(());
                }
                self.client.set_active(&user.id, want).await
            }
            AccountChange::DeleteAccount => self.client.delete_user(&user.id).await,
            AccountChange::AddGroup(name) => {
                if Self::in_group(&user, name) == Some(true) {
                    return Ok(());
                }
                let group = match self.client.find_group(name).await? {
                    Some(g) => g,
                    None => {
                        self.client
                            .create_group(name, &format!("{key}:group"))
                            .await?
                    }
                };
                self.client.add_member(&group.id, &user.id).await
            }
            AccountChange::RemoveGroup(name) => {
                if Self::in_group(&user, name) == Some(false) {
                    return Ok(());
                }
                match self.client.find_group(name).await? {
                    Some(group) => self.client.remove_member(&group.id, &user.id).await,
                    None => Ok(()),
                }
            }
            AccountChange::AddRole(role) => {
                if user.roles.iter().any(|r| r == role) {
                    return Ok(());
                }
                let op = PatchOperation {
                    op: PatchOp::Add,
                    path: Some(path("roles")?),
                    value: Some(json!([{ "value": role }])),
                };
                self.client.patch_user(&user.id, &[op]).await.map(|_| ())
            }
            AccountChange::RemoveRole(role) => {
                if !user.roles.iter().any(|r| r == role) {
                    return Ok(());
                }
                let op = PatchOperation {
                    op: PatchOp::Remove,
                    path: Some(path(&has_value_filter("roles", role))?),
                    value: None,
                };
                match self.client.patch_user(&user.id, &[op]).await {
                    Err(e) if is_scim_type(&e, "noTarget") => Ok(()),
                    other => other.map(|_| ()),
                }
            }
            AccountChange::CreateAccount
            | AccountChange::RevokeSessions
            | AccountChange::AddLicense(_)
            | AccountChange::RemoveLicense(_) => Ok(()),
        }
    }
}

// ---- Graph ------------------------------------------------------------------

/// [`AccountDirectory`] over Microsoft 365 (the [`M365`] port), in one
/// customer tenant.
#[derive(Clone)]
pub struct GraphDirectory {
    /// The Graph client.
    pub client: Arc<dyn M365>,
    /// The customer's Entra tenant id.
    pub customer_tenant_id: String,
}

impl std::fmt::Debug for GraphDirectory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GraphDirectory")
            .field("customer_tenant_id", &self.customer_tenant_id)
            .finish_non_exhaustive()
    }
}

/// The membership object type of an Entra directory role.
const DIRECTORY_ROLE: &str = "#microsoft.graph.directoryRole";
/// The membership object type of a group.
const GROUP: &str = "#microsoft.graph.group";

impl GraphDirectory {
    /// A directory over `client` in tenant `customer_tenant_id`.
    pub fn new(client: Arc<dyn M365>, customer_tenant_id: impl Into<String>) -> Self {
        Self {
            client,
            customer_tenant_id: customer_tenant_id.into(),
        }
    }

    fn tenant(&self) -> &str {
        &self.customer_tenant_id
    }

    async fn holdings_of(&self, user: DirectoryUser) -> Result<Holdings, ConnectorError> {
        let licenses = self.client.licenses(self.tenant(), &user.id).await?;
        let memberships = self.client.member_of(self.tenant(), &user.id).await?;
        let mut groups = BTreeSet::new();
        let mut roles = BTreeSet::new();
        for m in memberships {
            match m.object_type.as_deref() {
                Some(DIRECTORY_ROLE) => {
                    roles.insert(m.role_template_id.unwrap_or(m.id));
                }
                Some(GROUP) | None => {
                    groups.insert(m.id);
                }
                Some(_) => {}
            }
        }
        Ok(Holdings {
            account_id: user.id,
            external_id: None,
            user_name: user.user_principal_name,
            active: user.account_enabled,
            groups,
            licenses: licenses.into_iter().collect(),
            roles,
        })
    }

    async fn find(&self, person: &AccountRef) -> Result<Option<DirectoryUser>, ConnectorError> {
        self.client
            .find_user(self.tenant(), &person.user_name)
            .await
    }

    /// The usage location a new user gets: the organization's country
    /// (licensing refuses a user without one); `None` when the client
    /// cannot read it.
    async fn usage_location(&self) -> Result<Option<String>, ConnectorError> {
        match self.client.tenant_country(self.tenant()).await {
            Ok(country) => Ok(country),
            Err(ConnectorError::Config { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn create(&self, person: &AccountRef, key: &str) -> Result<(), ConnectorError> {
        if self.find(person).await?.is_some() {
            return Ok(());
        }
        let nickname: String = person
            .user_name
            .split('@')
            .next()
            .unwrap_or_default()
            .chars()
            .filter(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'))
            .collect();
        let user = NewDirectoryUser {
            user_principal_name: person.user_name.clone(),
            display_name: person.display_name.clone(),
            mail_nickname: if nickname.is_empty() {
                "user".to_owned()
            } else {
                nickname
            },
            password: random_password()?,
            usage_location: self.usage_location().await?,
        };
        self.client
            .create_user(self.tenant(), &user, key)
            .await
            .map(|_| ())
    }
}

/// A random 24-character password with upper and lower case letters,
/// digits and symbols (Entra's complexity rule): never logged, never kept;
/// the person sets their own through the tenant's onboarding.
fn random_password() -> Result<Secret, ConnectorError> {
    const SETS: [&[u8]; 4] = [
        b"ABCDEFGHJKLMNPQRSTUVWXYZ",
        b"abcdefghijkmnopqrstuvwxyz",
        b"23456789",
        b"!#%+-=?@^_~",
    ];
    let mut bytes = [0u8; 24];
    gatehouse_core::error::random_bytes(&mut bytes).map_err(|e| ConnectorError::Retryable {
        system: "graph",
        message: format!("the random source failed: {e}"),
        retry_after: None,
    })?;
    let mut password = String::with_capacity(bytes.len());
    for (i, b) in bytes.iter().enumerate() {
        // The first four draw one from each set; the rest from all of them.
        let set = SETS.get(i).copied().unwrap_or(SETS[usize::from(*b) % 4]);
        password.push(char::from(set[usize::from(*b) % set.len()]));
    }
    bytes.fill(0);
    Ok(Secret::new(password))
}

#[async_trait]
impl AccountDirectory for GraphDirectory {
    fn kind(&self) -> &'static str {
        "graph"
    }

    async fn holdings(&self, person: &AccountRef) -> Result<Option<Holdings>, ConnectorError> {
        match self.find(person).await? {
            Some(user) => Ok(Some(self.holdings_of(user).await?)),
            None => Ok(None),
        }
    }

    async fn accounts(&self) -> Result<Vec<Holdings>, ConnectorError> {
        let users = self.client.users(self.tenant()).await?;
        let mut all = Vec::with_capacity(users.len());
        for user in users {
            all.push(self.holdings_of(user).await?);
        }
        Ok(all)
    }

    async fn apply(
        &self,
        person: &AccountRef,
        change: &AccountChange,
        key: &str,
    ) -> Result<(), ConnectorError> {
        if *change == AccountChange::CreateAccount {
            return self.create(person, key).await;
        }
        let Some(user) = self.find(person).await? else {
            return match change {
                AccountChange::EnableAccount
                | AccountChange::AddGroup(_)
                | AccountChange::AddLicense(_)
                | AccountChange::AddRole(_) => Err(no_account("graph", person, change)),
                _ => Ok(()),
            };
        };
        let tenant = self.tenant();
        match change {
            AccountChange::CreateAccount => Ok(()),
            AccountChange::EnableAccount | AccountChange::DisableAccount => {
                let want = matches!(change, AccountChange::EnableAccount);
                if user.account_enabled == want {
                    return Ok(());
                }
                self.client
                    .set_account_enabled(tenant, &user.id, want)
                    .await
            }
            AccountChange::DeleteAccount => self.client.delete_user(tenant, &user.id).await,
            AccountChange::RevokeSessions => {
                self.client.revoke_sign_in_sessions(tenant, &user.id).await
            }
            AccountChange::AddLicense(sku) => {
                self.client
                    .assign_licenses(tenant, &user.id, std::slice::from_ref(sku), &[])
                    .await
            }
            AccountChange::RemoveLicense(sku) => {
                self.client
                    .assign_licenses(tenant, &user.id, &[], std::slice::from_ref(sku))
                    .await
            }
            AccountChange::AddGroup(group) => {
                match self.client.add_group_member(tenant, group, &user.id).await {
                    // The user was just found: the 404 is the group's.
                    Err(e) if e.status() == Some(404) => Err(ConnectorError::Rejected {
                        system: "graph",
                        status: Some(404),
                        message: format!(
                            "group {group} does not exist in tenant {tenant} (Graph groups are named by object id): {e}"
                        ),
                    }),
                    other => other,
                }
            }
            AccountChange::RemoveGroup(group) => {
                self.client
                    .remove_group_member(tenant, group, &user.id)
                    .await
            }
            AccountChange::AddRole(role) => {
                self.client
                    .add_directory_role_member(tenant, role, &user.id)
                    .await
            }
            AccountChange::RemoveRole(role) => {
                self.client
                    .remove_directory_role_member(tenant, role, &user.id)
                    .await
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn changes_serialize_with_op_and_value() {
        let json = serde_json::to_value(AccountChange::AddGroup("Sales".into())).unwrap();
        assert_eq!(json, json!({"op": "add_group", "value": "Sales"}));
        let json = serde_json::to_value(AccountChange::DisableAccount).unwrap();
        assert_eq!(json, json!({"op": "disable_account"}));
        let back: AccountChange =
            serde_json::from_value(json!({"op": "remove_license", "value": "sku"})).unwrap();
        assert_eq!(back, AccountChange::RemoveLicense("sku".into()));
    }

    #[test]
    fn random_passwords_meet_entra_complexity_and_differ() {
        let a = random_password().unwrap();
        let b = random_password().unwrap();
        assert_ne!(a.expose(), b.expose());
        let p = a.expose();
        assert_eq!(p.chars().count(), 24);
        assert!(p.chars().any(|c| c.is_ascii_uppercase()));
        assert!(p.chars().any(|c| c.is_ascii_lowercase()));
        assert!(p.chars().any(|c| c.is_ascii_digit()));
        assert!(p.chars().any(|c| !c.is_ascii_alphanumeric()));
        assert!(!format!("{a:?}").contains(p));
    }
}
