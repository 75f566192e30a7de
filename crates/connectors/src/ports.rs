//! What Gatehouse needs from each kind of system, independent of vendor.
//!
//! The onboarding actions and their plans are written against these traits;
//! each vendor module (`connectwise`, `ninjaone`, `graph`, …) implements one.
//! Every method that creates or changes something takes the engine's
//! idempotency key (`key`), which the client forwards as `Idempotency-Key`.
//! Readers (`find_*`, `organization`, …) serve two purposes: preparing a plan
//! as a diff against the target's current state, and finding what an earlier
//! attempt created before creating it again. `Ok(None)` means "not there";
//! an error means "could not tell".

use async_trait::async_trait;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::error::ConnectorError;
use crate::http::Secret;

/// Which PSA a connector speaks to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum PsaKind {
    /// ConnectWise PSA (Manage).
    ConnectWise,
    /// Datto/Kaseya Autotask PSA.
    Autotask,
    /// HaloPSA.
    HaloPsa,
}

/// A company (client, customer) in a PSA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PsaCompany {
    /// The PSA's id, as text.
    pub id: String,
    /// The company's name.
    pub name: String,
    /// Its status (ConnectWise company status, Autotask classification,
    /// Halo customer type), if the PSA has one.
    pub status: Option<String>,
    /// The name of its active managed-services contract or agreement, if any.
    pub contract: Option<String>,
    /// Its internet domain (`tailspintoys.com`), read from the company's
    /// website field (ConnectWise `website`, Autotask `webAddress`, HaloPSA
    /// `website`) by [`domain_from_website`]; `None` when it has none.
    #[serde(default)]
    pub domain: Option<String>,
}

/// The bare domain of a website as PSAs hold it: the scheme, user, port,
/// path, query and a leading `www.` are dropped and the rest is lower-cased
/// (`https://www.TailspinToys.com/about` → `tailspintoys.com`). `None` when
/// what is left is not a domain name (letters, digits, `-` and `.`, with at
/// least one dot).
pub fn domain_from_website(website: &str) -> Option<String> {
    let text = website.trim();
    let text = match text.find("://") {
        Some(at) => &text[at + 3..],
        None => text,
    };
    let text = text.split(['/', '?', '#']).next().unwrap_or_default();
    let text = text.rsplit('@').next().unwrap_or_default();
    let text = text.split(':').next().unwrap_or_default();
    let text = text.trim_end_matches('.').to_ascii_lowercase();
    let text = text.strip_prefix("www.").unwrap_or(&text);
    let labels_ok = text.split('.').all(|label| {
        !label.is_empty()
            && label.len() <= 63
            && !label.starts_with('-')
            && !label.ends_with('-')
            && label
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-')
    });
    (text.contains('.') && text.len() <= 253 && labels_ok).then(|| text.to_owned())
}

/// What to change on a PSA company; `None` leaves a field alone.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct CompanyUpdate {
    /// The new status.
    pub status: Option<String>,
    /// A contract or agreement of this name must exist for the company
    /// (created if missing).
    pub contract: Option<String>,
}

/// An opportunity (deal) in a PSA.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PsaOpportunity {
    /// The PSA's id, as text.
    pub id: String,
    /// The opportunity's name.
    pub name: String,
    /// The company it is for.
    pub company_id: String,
    /// Its status's name.
    pub status: String,
    /// Whether that status counts as won.
    pub won: bool,
    /// When it was closed (won or lost), if it was.
    #[serde(with = "time::serde::rfc3339::option")]
    pub closed_at: Option<OffsetDateTime>,
}

/// A PSA: companies, contracts and opportunities.
#[async_trait]
pub trait Psa: Send + Sync {
    /// Which PSA this is.
    fn kind(&self) -> PsaKind;
    /// The company with this id.
    async fn company(&self, id: &str) -> Result<Option<PsaCompany>, ConnectorError>;
    /// Applies `update` to the company; answers the company as it now is.
    async fn update_company(
        &self,
        id: &str,
        update: &CompanyUpdate,
        key: &str,
    ) -> Result<PsaCompany, ConnectorError>;
    /// The opportunity with this id.
    async fn opportunity(&self, id: &str) -> Result<Option<PsaOpportunity>, ConnectorError>;
    /// Sets the opportunity's status (by the status's name); answers the
    /// opportunity as it now is.
    async fn set_opportunity_status(
        &self,
        id: &str,
        status: &str,
        key: &str,
    ) -> Result<PsaOpportunity, ConnectorError>;
    /// Opportunities won since `since` (for PSAs that cannot send a webhook
    /// for it, such as Autotask), oldest first, every page read.
    async fn won_opportunities(
        &self,
        since: OffsetDateTime,
    ) -> Result<Vec<PsaOpportunity>, ConnectorError>;
}

/// An organization (client) in an RMM.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RmmOrganization {
    /// The RMM's id (NinjaOne organization id, Datto RMM site uid).
    pub id: String,
    /// Its name.
    pub name: String,
}

/// A location (site) of an RMM organization.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RmmLocation {
    /// The RMM's id.
    pub id: String,
    /// The organization.
    pub organization_id: String,
    /// Its name.
    pub name: String,
}

/// A link a client's technician runs to install the RMM agent.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct InstallerLink {
    /// The download URL.
    pub url: String,
    /// The installer type (`WINDOWS_MSI`, …).
    pub installer_type: String,
}

/// A device an RMM agent reports from.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RmmDevice {
    /// The RMM's id.
    pub id: String,
    /// The device's name.
    pub name: String,
    /// The organization it belongs to.
    pub organization_id: String,
    /// Whether its agent reports now.
    pub online: bool,
}

/// An RMM: organizations, locations, agent installers, devices.
#[async_trait]
pub trait Rmm: Send + Sync {
    /// The vendor (`ninjaone`, `dattormm`).
    fn vendor(&self) -> &'static str;
    /// The organization called `name` (exact match), if there is one.
    async fn find_organization(
        &self,
        name: &str,
    ) -> Result<Option<RmmOrganization>, ConnectorError>;
    /// The organization with this id.
    async fn organization(&self, id: &str) -> Result<Option<RmmOrganization>, ConnectorError>;
    /// Creates an organization.
    async fn create_organization(
        &self,
        name: &str,
        key: &str,
    ) -> Result<RmmOrganization, ConnectorError>;
    /// Deletes an organization and its locations; deleting one that is not
    /// there succeeds.
    async fn delete_organization(&self, id: &str, key: &str) -> Result<(), ConnectorError>;
    /// The organization's locations.
    async fn locations(&self, organization: &str) -> Result<Vec<RmmLocation>, ConnectorError>;
    /// Creates a location.
    async fn create_location(
        &self,
        organization: &str,
        name: &str,
        key: &str,
    ) -> Result<RmmLocation, ConnectorError>;
    /// The agent installer link of a location.
    async fn installer_link(
        &self,
        organization: &str,
        location: &str,
    ) -> Result<InstallerLink, ConnectorError>;
    /// The devices of an organization, every page read.
    async fn devices(&self, organization: &str) -> Result<Vec<RmmDevice>, ConnectorError>;
}

/// A GDAP (granular delegated admin) relationship with a customer tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GdapRelationship {
    /// Graph's id.
    pub id: String,
    /// Its display name.
    pub display_name: String,
    /// The customer's Entra tenant id.
    pub customer_tenant_id: String,
    /// Graph's status (`created`, `approvalPending`, `active`, `terminated`, …).
    pub status: String,
    /// The role definition ids it grants.
    pub roles: Vec<String>,
    /// Its ISO 8601 duration (`P730D`).
    pub duration: String,
}

/// A GDAP relationship to request.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GdapRequest {
    /// Its display name (unique per partner).
    pub display_name: String,
    /// The customer's Entra tenant id.
    pub customer_tenant_id: String,
    /// ISO 8601 duration (`P730D`).
    pub duration: String,
    /// Role definition ids.
    pub roles: Vec<String>,
}

/// What Microsoft tells anyone about an Entra tenant
/// (`findTenantInformationByDomainName`, `…ByTenantId`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TenantInformation {
    /// The tenant id (a GUID).
    pub tenant_id: String,
    /// The organization's display name.
    pub display_name: String,
    /// Its default verified domain.
    pub default_domain: String,
}

/// A member of a directory role or group: a user, or another directory
/// object (a service principal, a group), which has no UPN.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryMember {
    /// Graph's object id.
    pub id: String,
    /// The object's type (`#microsoft.graph.user`, …), when Graph says.
    pub object_type: Option<String>,
    /// The display name, when there is one.
    pub display_name: Option<String>,
    /// The user principal name, for users.
    pub user_principal_name: Option<String>,
}

fn unsupported(what: &str) -> ConnectorError {
    ConnectorError::Config {
        system: "graph",
        message: format!("{what} is not supported by this client"),
    }
}

/// A user in a customer's directory.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryUser {
    /// Graph's object id.
    pub id: String,
    /// The user principal name.
    pub user_principal_name: String,
    /// The display name.
    pub display_name: String,
    /// Whether the account can sign in.
    pub account_enabled: bool,
}

/// A group or directory role a user is a direct member of
/// (`/users/{id}/memberOf`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DirectoryMembership {
    /// Graph's object id.
    pub id: String,
    /// The object's type (`#microsoft.graph.group`,
    /// `#microsoft.graph.directoryRole`, …), when Graph says.
    pub object_type: Option<String>,
    /// The display name, when there is one.
    pub display_name: Option<String>,
    /// For a directory role, its role template id.
    pub role_template_id: Option<String>,
}

/// A user to create in a customer's directory.
#[derive(Debug, Clone)]
pub struct NewDirectoryUser {
    /// The user principal name.
    pub user_principal_name: String,
    /// The display name.
    pub display_name: String,
    /// The mail nickname.
    pub mail_nickname: String,
    /// The initial password.
    pub password: Secret,
    /// Two-letter country code, needed before licensing.
    pub usage_location: Option<String>,
}

/// Microsoft 365 through Microsoft Graph: GDAP in the partner tenant, users,
/// licences, groups and sessions in a customer tenant.
#[async_trait]
pub trait M365: Send + Sync {
    /// The partner's GDAP relationships with a customer tenant.
    async fn gdap_relationships(
        &self,
        customer_tenant_id: &str,
    ) -> Result<Vec<GdapRelationship>, ConnectorError>;
    /// Creates a relationship and locks it for the customer's approval.
    async fn request_gdap(
        &self,
        request: &GdapRequest,
        key: &str,
    ) -> Result<GdapRelationship, ConnectorError>;
    /// Terminates a relationship; terminating one already ended succeeds.
    async fn terminate_gdap(&self, id: &str, key: &str) -> Result<(), ConnectorError>;
    /// The user with this user principal name, in a customer tenant.
    async fn find_user(
        &self,
        customer_tenant_id: &str,
        user_principal_name: &str,
    ) -> Result<Option<DirectoryUser>, ConnectorError>;
    /// Creates a user in a customer tenant.
    async fn create_user(
        &self,
        customer_tenant_id: &str,
        user: &NewDirectoryUser,
        key: &str,
    ) -> Result<DirectoryUser, ConnectorError>;
    /// Deletes a user; deleting one that is not there succeeds.
    async fn delete_user(&self, customer_tenant_id: &str, id: &str) -> Result<(), ConnectorError>;
    /// Enables or disables sign-in.
    async fn set_account_enabled(
        &self,
        customer_tenant_id: &str,
        id: &str,
        enabled: bool,
    ) -> Result<(), ConnectorError>;
    /// Revokes every sign-in session (`revokeSignInSessions`).
    async fn revoke_sign_in_sessions(
        &self,
        customer_tenant_id: &str,
        id: &str,
    ) -> Result<(), ConnectorError>;
    /// Adds and removes licences (SKU ids).
    async fn assign_licenses(
        &self,
        customer_tenant_id: &str,
        id: &str,
        add: &[String],
        remove: &[String],
    ) -> Result<(), ConnectorError>;
    /// The user's licences (SKU ids).
    async fn licenses(
        &self,
        customer_tenant_id: &str,
        id: &str,
    ) -> Result<Vec<String>, ConnectorError>;
    /// Adds a member to a group; adding one already there succeeds.
    async fn add_group_member(
        &self,
        customer_tenant_id: &str,
        group: &str,
        user: &str,
    ) -> Result<(), ConnectorError>;
    /// Removes a member; removing one not there succeeds.
    async fn remove_group_member(
        &self,
        customer_tenant_id: &str,
        group: &str,
        user: &str,
    ) -> Result<(), ConnectorError>;
    /// The ids of a group's members, every page read.
    async fn group_members(
        &self,
        customer_tenant_id: &str,
        group: &str,
    ) -> Result<Vec<String>, ConnectorError>;
    /// The partner's GDAP relationship with this id, if it exists (to see
    /// whether the customer accepted it). Clients that cannot read it answer
    /// a configuration error.
    async fn gdap_relationship(
        &self,
        id: &str,
    ) -> Result<Option<GdapRelationship>, ConnectorError> {
        let _ = id;
        Err(unsupported("reading one GDAP relationship"))
    }
    /// The Entra tenant that holds the verified domain `domain`
    /// (`findTenantInformationByDomainName`), if there is one.
    async fn tenant_by_domain(
        &self,
        domain: &str,
    ) -> Result<Option<TenantInformation>, ConnectorError> {
        let _ = domain;
        Err(unsupported("looking a tenant up by domain"))
    }
    /// The Entra tenant with this id (`findTenantInformationByTenantId`),
    /// if there is one.
    async fn tenant_by_id(
        &self,
        tenant_id: &str,
    ) -> Result<Option<TenantInformation>, ConnectorError> {
        let _ = tenant_id;
        Err(unsupported("looking a tenant up by id"))
    }
    /// The members of a directory role (by role template id) in a customer
    /// tenant, every page read; a role the tenant has not activated has
    /// none.
    async fn directory_role_members(
        &self,
        customer_tenant_id: &str,
        role_template_id: &str,
    ) -> Result<Vec<DirectoryMember>, ConnectorError> {
        let _ = (customer_tenant_id, role_template_id);
        Err(unsupported("listing a directory role's members"))
    }
    /// The customer organization's country (`countryLetterCode`), the
    /// usage location new users get (licensing needs one).
    async fn tenant_country(
        &self,
        customer_tenant_id: &str,
    ) -> Result<Option<String>, ConnectorError> {
        let _ = customer_tenant_id;
        Err(unsupported("reading the organization's country"))
    }
    /// Every user of a customer tenant, every page read.
    async fn users(&self, customer_tenant_id: &str) -> Result<Vec<DirectoryUser>, ConnectorError> {
        let _ = customer_tenant_id;
        Err(unsupported("listing users"))
    }
    /// The groups and directory roles a user is a direct member of, every
    /// page read.
    async fn member_of(
        &self,
        customer_tenant_id: &str,
        user: &str,
    ) -> Result<Vec<DirectoryMembership>, ConnectorError> {
        let _ = (customer_tenant_id, user);
        Err(unsupported("listing a user's memberships"))
    }
    /// Adds a user to a directory role (by role template id); adding one
    /// already there succeeds.
    async fn add_directory_role_member(
        &self,
        customer_tenant_id: &str,
        role_template_id: &str,
        user: &str,
    ) -> Result<(), ConnectorError> {
        let _ = (customer_tenant_id, role_template_id, user);
        Err(unsupported("adding a directory role member"))
    }
    /// Removes a user from a directory role (by role template id);
    /// removing one not there succeeds.
    async fn remove_directory_role_member(
        &self,
        customer_tenant_id: &str,
        role_template_id: &str,
        user: &str,
    ) -> Result<(), ConnectorError> {
        let _ = (customer_tenant_id, role_template_id, user);
        Err(unsupported("removing a directory role member"))
    }
}

/// An organization in a documentation platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocsOrganization {
    /// The platform's id.
    pub id: String,
    /// Its name.
    pub name: String,
}

/// A document in a documentation platform.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DocsDocument {
    /// The platform's id.
    pub id: String,
    /// The organization.
    pub organization_id: String,
    /// Its title.
    pub title: String,
}

/// A documentation platform (IT Glue, Hudu): organizations, documents,
/// passwords.
#[async_trait]
pub trait DocsPlatform: Send + Sync {
    /// The vendor (`itglue`, `hudu`).
    fn vendor(&self) -> &'static str;
    /// The organization called `name` (exact match), if there is one.
    async fn find_organization(
        &self,
        name: &str,
    ) -> Result<Option<DocsOrganization>, ConnectorError>;
    /// Creates an organization.
    async fn create_organization(
        &self,
        name: &str,
        key: &str,
    ) -> Result<DocsOrganization, ConnectorError>;
    /// Deletes an organization; deleting one that is not there succeeds.
    async fn delete_organization(&self, id: &str, key: &str) -> Result<(), ConnectorError>;
    /// The organization's documents, every page read.
    async fn documents(&self, organization: &str) -> Result<Vec<DocsDocument>, ConnectorError>;
    /// Publishes a document (HTML body).
    async fn create_document(
        &self,
        organization: &str,
        title: &str,
        body_html: &str,
        key: &str,
    ) -> Result<DocsDocument, ConnectorError>;
    /// Stores a password entry; the value is never read back by Gatehouse.
    async fn create_password(
        &self,
        organization: &str,
        name: &str,
        username: &str,
        password: &Secret,
        key: &str,
    ) -> Result<String, ConnectorError>;
}

#[cfg(test)]
mod tests {
    use super::domain_from_website;

    #[test]
    fn websites_become_bare_domains() {
        for (website, domain) in [
            ("tailspintoys.com", Some("tailspintoys.com")),
            (
                "https://www.TailspinToys.com/about?x=1",
                Some("tailspintoys.com"),
            ),
            (
                "http://user@shop.tailspintoys.co.uk:8443/",
                Some("shop.tailspintoys.co.uk"),
            ),
            ("www.contoso.com.", Some("contoso.com")),
            ("", None),
            ("localhost", None),
            ("https://", None),
            ("exa mple.com", None),
            ("-bad.com", None),
        ] {
            assert_eq!(domain_from_website(website).as_deref(), domain, "{website}");
        }
    }
}
