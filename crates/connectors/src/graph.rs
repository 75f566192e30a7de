//! Microsoft 365 through Microsoft Graph: the [`M365`] port.
//!
//! One multi-tenant app registration, consented in the partner's own tenant
//! and in every customer tenant (the "secure application model"), gets an
//! app-only token per tenant by client credentials against
//! `{login}/{tenant}/oauth2/v2.0/token`. Tokens are cached per tenant id
//! and never shared between tenants, so a call for one customer can only
//! ever carry that customer's token: Graph itself then keeps the
//! directories apart. GDAP relationships live in the partner tenant; users,
//! licences, groups and directory roles in the customer's.
//!
//! Behaviour the engine relies on:
//! - every list follows `@odata.nextLink` to the end, but only to the
//!   configured Graph host (the link comes from the answer and is not
//!   trusted further than that);
//! - 429, 502, 503 and 504 are [`ConnectorError::Retryable`] with Graph's
//!   `Retry-After`; the engine waits and retries, this client does not;
//! - a 401 drops the tenant's cached token and retries the call once with a
//!   fresh one (tokens can be revoked or expire early);
//! - creates forward the engine's key as `Idempotency-Key` and first look
//!   for what an earlier attempt made (a user by UPN, a relationship by
//!   display name), since Graph ignores the header;
//! - removing what is already gone succeeds (a deleted user, a member not
//!   in the group, a licence not assigned, a relationship already ended);
//! - error messages name the call and carry Graph's own error text, never a
//!   token, secret or password.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use gatehouse_core::clock::Clock;
use gatehouse_core::retry_after::parse_retry_after;
use reqwest::{Method, RequestBuilder, Response, Url, header};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::error::ConnectorError;
use crate::http::{ClientCredentials, Http, Secret, TokenCache};
pub use crate::ports::DirectoryMember;
use crate::ports::{
    DirectoryMembership, DirectoryUser, GdapRelationship, GdapRequest, M365, NewDirectoryUser,
    TenantInformation,
};

/// The system name errors carry.
const SYSTEM: &str = "graph";

/// The scope of an app-only Graph token.
pub const GRAPH_SCOPE: &str = "https://graph.microsoft.com/.default";

/// The Global Administrator role template id: Graph refuses to auto-extend
/// a GDAP relationship that grants it.
pub const GLOBAL_ADMINISTRATOR: &str = "62e90394-69f5-4237-9190-012177145e10";

/// Graph's limit on requests in one `$batch`.
const MAX_BATCH: usize = 20;

/// A list longer than this many pages is refused rather than read forever.
const MAX_PAGES: usize = 1_000;

/// The properties read for a user (Graph's default set lacks `accountEnabled`).
const USER_FIELDS: &str = "id,userPrincipalName,displayName,accountEnabled";

/// Where and as whom the client talks to Microsoft.
#[derive(Debug, Clone)]
pub struct GraphConfig {
    /// The identity platform, `https://login.microsoftonline.com`.
    pub login_base: String,
    /// Graph, `https://graph.microsoft.com`.
    pub graph_base: String,
    /// The partner's own Entra tenant id (GDAP lives there).
    pub partner_tenant_id: String,
    /// The multi-tenant app's client id.
    pub client_id: String,
    /// The app's client secret.
    pub client_secret: Secret,
    /// Each call gives up after this long.
    pub timeout: Duration,
    /// `$top` for lists; `None` leaves Graph's default page size.
    pub page_size: Option<u32>,
}

impl GraphConfig {
    /// Settings for Microsoft's public cloud.
    pub fn new(
        partner_tenant_id: impl Into<String>,
        client_id: impl Into<String>,
        client_secret: Secret,
    ) -> Self {
        Self {
            login_base: "https://login.microsoftonline.com".to_owned(),
            graph_base: "https://graph.microsoft.com".to_owned(),
            partner_tenant_id: partner_tenant_id.into(),
            client_id: client_id.into(),
            client_secret,
            timeout: Duration::from_secs(30),
            page_size: None,
        }
    }
}

/// A GDAP access assignment: a partner security group whose members hold
/// some of a relationship's roles in the customer tenant.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GdapAccess {
    /// Graph's id of the assignment.
    pub id: String,
    /// The partner tenant's security group.
    pub security_group_id: String,
    /// The role definition ids its members hold.
    pub roles: Vec<String>,
    /// Graph's status (`pending`, `active`, …).
    pub status: String,
}

/// The Graph client. Cheap to share behind an `Arc`.
#[derive(Debug)]
pub struct GraphClient {
    http: Http,
    /// Reads `Retry-After` dates inside batch answers.
    clock: Arc<dyn Clock>,
    login: Url,
    graph: Url,
    partner: TenantId,
    client_id: String,
    client_secret: Secret,
    page_size: Option<u32>,
    /// Tenant id → that tenant's token. Never held across an `.await`.
    tokens: Mutex<HashMap<String, Arc<TokenCache>>>,
}

/// An Entra tenant id (a GUID or a domain): checked before it becomes a
/// path segment.
#[derive(Debug, Clone, PartialEq, Eq)]
struct TenantId(String);

impl TenantId {
    fn parse(value: &str) -> Result<Self, ConnectorError> {
        let ok = !value.is_empty()
            && value.len() <= 256
            && !value.starts_with('.')
            && value
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '.');
        if ok {
            Ok(Self(value.to_owned()))
        } else {
            Err(misconfigured(format!("'{value}' is not a tenant id")))
        }
    }
}

fn misconfigured(message: impl Into<String>) -> ConnectorError {
    ConnectorError::Config {
        system: SYSTEM,
        message: message.into(),
    }
}

fn rejected(message: impl Into<String>) -> ConnectorError {
    ConnectorError::Rejected {
        system: SYSTEM,
        status: None,
        message: message.into(),
    }
}

/// An object id or UPN as a path segment: never empty, `.` or `..`.
fn segment<'a>(value: &'a str, what: &str) -> Result<&'a str, ConnectorError> {
    if value.is_empty() || value == "." || value == ".." {
        return Err(rejected(format!("'{value}' is not a valid {what}")));
    }
    Ok(value)
}

/// `value` quoted for an OData `$filter` literal.
fn literal(value: &str) -> String {
    format!("'{}'", value.replace('\'', "''"))
}

/// Prefixes an error's message with the call it came from.
fn context(error: ConnectorError, what: &str) -> ConnectorError {
    match error {
        ConnectorError::Retryable {
            system,
            message,
            retry_after,
        } => ConnectorError::Retryable {
            system,
            message: format!("{what}: {message}"),
            retry_after,
        },
        ConnectorError::Auth {
            system,
            status,
            message,
        } => ConnectorError::Auth {
            system,
            status,
            message: format!("{what}: {message}"),
        },
        ConnectorError::Rejected {
            system,
            status,
            message,
        } => ConnectorError::Rejected {
            system,
            status,
            message: format!("{what}: {message}"),
        },
        ConnectorError::Config { system, message } => ConnectorError::Config {
            system,
            message: format!("{what}: {message}"),
        },
    }
}

fn is_status(error: &ConnectorError, status: u16) -> bool {
    error.status() == Some(status)
}

/// Whether a rejection carries Graph's message `needle`.
fn says(error: &ConnectorError, needle: &str) -> bool {
    matches!(error, ConnectorError::Rejected { message, .. } if message.contains(needle))
}

/// Graph's "already a member" answer to `members/$ref`.
const ALREADY_MEMBER: &str = "added object references already exist";
/// Graph's answer when `members/$ref` targets an Exchange-managed group.
const MAIL_ENABLED: &str = "mail-enabled";
/// Graph's answer when a UPN is taken.
const UPN_TAKEN: &str = "same value for property userPrincipalName already exists";

#[derive(Deserialize)]
struct Page {
    #[serde(default)]
    value: Vec<Value>,
    #[serde(rename = "@odata.nextLink")]
    next_link: Option<String>,
}

#[derive(Deserialize)]
struct BatchAnswer {
    #[serde(default)]
    responses: Vec<BatchStep>,
}

#[derive(Deserialize)]
struct BatchStep {
    id: String,
    status: u16,
    #[serde(default)]
    headers: serde_json::Map<String, Value>,
    #[serde(default)]
    body: Value,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UserDto {
    id: String,
    user_principal_name: String,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    account_enabled: Option<bool>,
}

impl UserDto {
    fn into_user(self, enabled_if_unknown: bool) -> DirectoryUser {
        DirectoryUser {
            id: self.id,
            user_principal_name: self.user_principal_name,
            display_name: self.display_name.unwrap_or_default(),
            account_enabled: self.account_enabled.unwrap_or(enabled_if_unknown),
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RelationshipDto {
    id: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    duration: String,
    #[serde(default)]
    status: String,
    customer: CustomerDto,
    #[serde(default)]
    access_details: AccessDetailsDto,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct CustomerDto {
    tenant_id: String,
}

#[derive(Deserialize, Default)]
#[serde(rename_all = "camelCase")]
struct AccessDetailsDto {
    #[serde(default)]
    unified_roles: Vec<RoleDto>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct RoleDto {
    role_definition_id: String,
}

impl From<RelationshipDto> for GdapRelationship {
    fn from(r: RelationshipDto) -> Self {
        Self {
            id: r.id,
            display_name: r.display_name,
            customer_tenant_id: r.customer.tenant_id,
            status: r.status,
            roles: r
                .access_details
                .unified_roles
                .into_iter()
                .map(|r| r.role_definition_id)
                .collect(),
            duration: r.duration,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct AssignmentDto {
    id: String,
    #[serde(default)]
    status: String,
    access_container: ContainerDto,
    #[serde(default)]
    access_details: AccessDetailsDto,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ContainerDto {
    access_container_id: String,
}

impl From<AssignmentDto> for GdapAccess {
    fn from(a: AssignmentDto) -> Self {
        Self {
            id: a.id,
            security_group_id: a.access_container.access_container_id,
            roles: a
                .access_details
                .unified_roles
                .into_iter()
                .map(|r| r.role_definition_id)
                .collect(),
            status: a.status,
        }
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct LicenseDetailDto {
    sku_id: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct TenantInformationDto {
    tenant_id: String,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    default_domain_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MemberDto {
    id: String,
    #[serde(rename = "@odata.type", default)]
    object_type: Option<String>,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    user_principal_name: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct MembershipDto {
    id: String,
    #[serde(rename = "@odata.type", default)]
    object_type: Option<String>,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    role_template_id: Option<String>,
}

fn parse_url(value: &str, what: &str) -> Result<Url, ConnectorError> {
    let url = Url::parse(value).map_err(|e| misconfigured(format!("{what} is not a URL: {e}")))?;
    if !matches!(url.scheme(), "http" | "https") || url.host_str().is_none() {
        return Err(misconfigured(format!("{what} must be an http(s) URL")));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(misconfigured(format!(
            "{what} must not have a query or fragment"
        )));
    }
    Ok(url)
}

fn decode<T: DeserializeOwned>(value: Value, what: &str) -> Result<T, ConnectorError> {
    serde_json::from_value(value).map_err(|e| rejected(format!("{what}: unreadable answer: {e}")))
}

impl GraphClient {
    /// A client for `config`; `clock` reads `Retry-After` dates.
    pub fn new(config: GraphConfig, clock: Arc<dyn Clock>) -> Result<Self, ConnectorError> {
        let login = parse_url(&config.login_base, "the login base URL")?;
        let graph = parse_url(&config.graph_base, "the Graph base URL")?;
        let partner = TenantId::parse(&config.partner_tenant_id)?;
        if config.client_id.trim().is_empty() {
            return Err(config_missing("the client id"));
        }
        if config.client_secret.expose().is_empty() {
            return Err(config_missing("the client secret"));
        }
        if config.page_size.is_some_and(|n| n == 0 || n > 999) {
            return Err(misconfigured("the page size must be between 1 and 999"));
        }
        Ok(Self {
            http: Http::new(SYSTEM, config.timeout, Arc::clone(&clock))?,
            clock,
            login,
            graph,
            partner,
            client_id: config.client_id,
            client_secret: config.client_secret,
            page_size: config.page_size,
            tokens: Mutex::new(HashMap::new()),
        })
    }

    /// The token cache of `tenant`, made on first use.
    fn cache(&self, tenant: &TenantId) -> Result<Arc<TokenCache>, ConnectorError> {
        let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(cache) = tokens.get(&tenant.0) {
            return Ok(Arc::clone(cache));
        }
        let mut token_url = self.login.clone();
        token_url
            .path_segments_mut()
            .map_err(|()| misconfigured("the login base URL cannot take a path"))?
            .pop_if_empty()
            .extend([tenant.0.as_str(), "oauth2", "v2.0", "token"]);
        let cache = Arc::new(TokenCache::new(ClientCredentials {
            token_url: token_url.to_string(),
            client_id: self.client_id.clone(),
            client_secret: self.client_secret.clone(),
            scope: Some(GRAPH_SCOPE.to_owned()),
        }));
        tokens.insert(tenant.0.clone(), Arc::clone(&cache));
        Ok(cache)
    }

    /// `{graph}/v1.0/{segments…}`, each segment percent-encoded.
    fn url(&self, segments: &[&str]) -> Result<Url, ConnectorError> {
        let mut url = self.graph.clone();
        url.path_segments_mut()
            .map_err(|()| misconfigured("the Graph base URL cannot take a path"))?
            .pop_if_empty()
            .push("v1.0")
            .extend(segments);
        Ok(url)
    }

    /// Sends a request built by `build` with `tenant`'s token; on a 401 the
    /// token is fetched again and the request sent once more.
    async fn send(
        &self,
        tenant: &TenantId,
        what: &str,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Response, ConnectorError> {
        let cache = self.cache(tenant)?;
        let mut refreshed = false;
        loop {
            let bearer = cache.bearer(&self.http).await.map_err(|e| {
                context(
                    e,
                    &format!("{what}: getting a token for tenant {}", tenant.0),
                )
            })?;
            let request = build(self.http.client()).bearer_auth(bearer.expose());
            match self.http.send(request).await {
                Err(e) if !refreshed && e.is_unauthorized() => {
                    tracing::debug!(tenant = %tenant.0, "graph answered 401; fetching a new token");
                    cache.forget().await;
                    refreshed = true;
                }
                other => return other.map_err(|e| context(e, what)),
            }
        }
    }

    /// [`Self::send`] and read the JSON answer.
    async fn json(
        &self,
        tenant: &TenantId,
        what: &str,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<Value, ConnectorError> {
        read_json(self.send(tenant, what, build).await?, what).await
    }

    /// A write (`method` with a JSON `body`), forwarding `key` as
    /// `Idempotency-Key` when given.
    async fn write(
        &self,
        tenant: &TenantId,
        what: &str,
        method: Method,
        url: &Url,
        body: Option<&Value>,
        key: Option<&str>,
    ) -> Result<Response, ConnectorError> {
        self.send(tenant, what, |client| {
            let mut request = client.request(method.clone(), url.clone());
            if let Some(body) = body {
                request = request.json(body);
            }
            if let Some(key) = key {
                request = request.header("Idempotency-Key", key);
            }
            request
        })
        .await
    }

    /// Every item of a list, following `@odata.nextLink` on the Graph host
    /// only.
    async fn list(
        &self,
        tenant: &TenantId,
        what: &str,
        mut url: Url,
    ) -> Result<Vec<Value>, ConnectorError> {
        if let Some(n) = self.page_size {
            url.query_pairs_mut().append_pair("$top", &n.to_string());
        }
        let mut items = Vec::new();
        for _ in 0..MAX_PAGES {
            let page: Page = decode(
                self.json(tenant, what, |c| {
                    c.get(url.clone())
                        .header(header::ACCEPT, "application/json")
                })
                .await?,
                what,
            )?;
            items.extend(page.value);
            match page.next_link {
                None => return Ok(items),
                Some(link) => url = self.next_page(&link, what)?,
            }
        }
        Err(rejected(format!(
            "{what}: more than {MAX_PAGES} pages; refusing to read further"
        )))
    }

    /// A next-page link, accepted only if it points at the configured Graph
    /// host (same scheme, host and port).
    fn next_page(&self, link: &str, what: &str) -> Result<Url, ConnectorError> {
        let url = Url::parse(link)
            .map_err(|_| rejected(format!("{what}: the next-page link is not a URL")))?;
        let same = url.scheme() == self.graph.scheme()
            && url.host_str() == self.graph.host_str()
            && url.port_or_known_default() == self.graph.port_or_known_default();
        if !same {
            return Err(rejected(format!(
                "{what}: the next-page link points at {}, not the Graph host; not followed",
                url.host_str().unwrap_or("no host")
            )));
        }
        Ok(url)
    }

    fn customer(&self, id: &str) -> Result<TenantId, ConnectorError> {
        TenantId::parse(id)
    }

    fn relationships_url(&self, rest: &[&str]) -> Result<Url, ConnectorError> {
        let mut segments = vec!["tenantRelationships", "delegatedAdminRelationships"];
        segments.extend_from_slice(rest);
        self.url(&segments)
    }

    /// The partner's GDAP relationship with this id, if it exists.
    pub async fn gdap_relationship(
        &self,
        id: &str,
    ) -> Result<Option<GdapRelationship>, ConnectorError> {
        let what = format!("reading GDAP relationship {id}");
        let url = self.relationships_url(&[segment(id, "relationship id")?])?;
        match self
            .json(&self.partner, &what, |c| c.get(url.clone()))
            .await
        {
            Ok(v) => Ok(Some(decode::<RelationshipDto>(v, &what)?.into())),
            Err(e) if is_status(&e, 404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn relationships_where(
        &self,
        filter: &str,
        what: &str,
    ) -> Result<Vec<GdapRelationship>, ConnectorError> {
        let mut url = self.relationships_url(&[])?;
        url.query_pairs_mut().append_pair("$filter", filter);
        self.list(&self.partner, what, url)
            .await?
            .into_iter()
            .map(|v| decode::<RelationshipDto>(v, what).map(Into::into))
            .collect()
    }

    async fn relationship_action(
        &self,
        id: &str,
        action: &str,
        key: &str,
    ) -> Result<(), ConnectorError> {
        let url = self.relationships_url(&[segment(id, "relationship id")?, "requests"])?;
        self.write(
            &self.partner,
            &format!("{action} on GDAP relationship {id}"),
            Method::POST,
            &url,
            Some(&json!({ "action": action })),
            Some(key),
        )
        .await?;
        Ok(())
    }

    /// The access assignments of a relationship.
    pub async fn gdap_access(
        &self,
        relationship_id: &str,
    ) -> Result<Vec<GdapAccess>, ConnectorError> {
        let url = self.relationships_url(&[
            segment(relationship_id, "relationship id")?,
            "accessAssignments",
        ])?;
        let what = format!("listing the access assignments of GDAP relationship {relationship_id}");
        self.list(&self.partner, &what, url)
            .await?
            .into_iter()
            .map(|v| decode::<AssignmentDto>(v, &what).map(Into::into))
            .collect()
    }

    /// Gives the members of partner security group `security_group_id`
    /// these `roles` (a subset of the relationship's) in the customer
    /// tenant, once the relationship is active. An assignment for the group
    /// that already exists is answered as it is (its roles are not changed).
    pub async fn assign_gdap_access(
        &self,
        relationship_id: &str,
        security_group_id: &str,
        roles: &[String],
        key: &str,
    ) -> Result<GdapAccess, ConnectorError> {
        let existing = |all: Vec<GdapAccess>| {
            all.into_iter()
                .find(|a| a.security_group_id == security_group_id)
        };
        if let Some(found) = existing(self.gdap_access(relationship_id).await?) {
            return Ok(found);
        }
        let url = self.relationships_url(&[
            segment(relationship_id, "relationship id")?,
            "accessAssignments",
        ])?;
        let body = json!({
            "accessContainer": {
                "accessContainerId": security_group_id,
                "accessContainerType": "securityGroup",
            },
            "accessDetails": {
                "unifiedRoles": roles.iter()
                    .map(|r| json!({ "roleDefinitionId": r }))
                    .collect::<Vec<_>>(),
            },
        });
        let what =
            format!("assigning GDAP access to group {security_group_id} on {relationship_id}");
        match self
            .write(
                &self.partner,
                &what,
                Method::POST,
                &url,
                Some(&body),
                Some(key),
            )
            .await
        {
            Ok(response) => {
                let value = read_json(response, &what).await?;
                Ok(decode::<AssignmentDto>(value, &what)?.into())
            }
            Err(e) if is_status(&e, 409) => {
                existing(self.gdap_access(relationship_id).await?).ok_or(e)
            }
            Err(e) => Err(e),
        }
    }

    /// The members of a directory role (by role template id, e.g.
    /// [`GLOBAL_ADMINISTRATOR`]) in a customer tenant: what onboarding
    /// checks for a previous provider's admin accounts and our break-glass
    /// accounts.
    pub async fn directory_role_members(
        &self,
        customer_tenant_id: &str,
        role_template_id: &str,
    ) -> Result<Vec<DirectoryMember>, ConnectorError> {
        let tenant = self.customer(customer_tenant_id)?;
        let role = format!(
            "directoryRoles(roleTemplateId='{}')",
            segment(role_template_id, "role template id")?
        );
        let what = format!("listing members of role {role_template_id}");
        let url = self.url(&[&role, "members"])?;
        self.list(&tenant, &what, url)
            .await?
            .into_iter()
            .map(|v| {
                decode::<MemberDto>(v, &what).map(|m| DirectoryMember {
                    id: m.id,
                    object_type: m.object_type,
                    display_name: m.display_name,
                    user_principal_name: m.user_principal_name,
                })
            })
            .collect()
    }

    /// Adds a user to a directory role (by role template id) in a customer
    /// tenant; adding one already there succeeds.
    pub async fn add_directory_role_member(
        &self,
        customer_tenant_id: &str,
        role_template_id: &str,
        user: &str,
    ) -> Result<(), ConnectorError> {
        let tenant = self.customer(customer_tenant_id)?;
        let role = format!(
            "directoryRoles(roleTemplateId='{}')",
            segment(role_template_id, "role template id")?
        );
        let url = self.url(&[&role, "members", "$ref"])?;
        let body = json!({ "@odata.id": self.object_ref(segment(user, "user id")?)? });
        let what = format!("adding {user} to role {role_template_id}");
        match self
            .write(&tenant, &what, Method::POST, &url, Some(&body), None)
            .await
        {
            Err(e) if says(&e, ALREADY_MEMBER) => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// Removes a user from a directory role (by role template id) in a
    /// customer tenant; removing one not there (404) succeeds.
    pub async fn remove_directory_role_member(
        &self,
        customer_tenant_id: &str,
        role_template_id: &str,
        user: &str,
    ) -> Result<(), ConnectorError> {
        let tenant = self.customer(customer_tenant_id)?;
        let role = format!(
            "directoryRoles(roleTemplateId='{}')",
            segment(role_template_id, "role template id")?
        );
        let url = self.url(&[&role, "members", segment(user, "user id")?, "$ref"])?;
        let what = format!("removing {user} from role {role_template_id}");
        match self
            .write(&tenant, &what, Method::DELETE, &url, None, None)
            .await
        {
            // Graph answers 404 for a member not there and for a role the
            // tenant never activated: either way the user does not hold it.
            Err(e) if is_status(&e, 404) => Ok(()),
            other => other.map(|_| ()),
        }
    }

    /// `GET /tenantRelationships/{function}` with the partner's token:
    /// what Microsoft tells anyone about a tenant; 404 is "no such tenant".
    async fn tenant_information(
        &self,
        function: String,
        what: &str,
    ) -> Result<Option<TenantInformation>, ConnectorError> {
        let url = self.url(&["tenantRelationships", &function])?;
        match self
            .json(&self.partner, what, |c| {
                c.get(url.clone())
                    .header(header::ACCEPT, "application/json")
            })
            .await
        {
            Ok(v) => {
                let dto: TenantInformationDto = decode(v, what)?;
                Ok(Some(TenantInformation {
                    tenant_id: dto.tenant_id,
                    display_name: dto.display_name.unwrap_or_default(),
                    default_domain: dto.default_domain_name.unwrap_or_default(),
                }))
            }
            Err(e) if is_status(&e, 404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `{graph}/v1.0/directoryObjects/{id}`, as `members/$ref` wants.
    fn object_ref(&self, id: &str) -> Result<String, ConnectorError> {
        Ok(self.url(&["directoryObjects", id])?.to_string())
    }

    async fn find_gdap_by_name(
        &self,
        display_name: &str,
    ) -> Result<Option<GdapRelationship>, ConnectorError> {
        Ok(self
            .relationships_where(
                &format!("displayName eq {}", literal(display_name)),
                &format!("looking for GDAP relationship '{display_name}'"),
            )
            .await?
            .into_iter()
            .find(|r| r.display_name == display_name))
    }

    /// Locks a `created` relationship for approval and reads it back.
    async fn lock_for_approval(
        &self,
        relationship: GdapRelationship,
        key: &str,
    ) -> Result<GdapRelationship, ConnectorError> {
        if relationship.status == "created" {
            self.relationship_action(&relationship.id, "lockForApproval", &format!("{key}:lock"))
                .await?;
        }
        Ok(self
            .gdap_relationship(&relationship.id)
            .await?
            .unwrap_or(relationship))
    }

    fn group_refusal(error: ConnectorError, group: &str) -> ConnectorError {
        if says(&error, MAIL_ENABLED) {
            return ConnectorError::Rejected {
                system: SYSTEM,
                status: error.status(),
                message: format!(
                    "group {group} is a mail-enabled security group or distribution list: Graph cannot change its members; change them in Exchange (Add-DistributionGroupMember / Remove-DistributionGroupMember)"
                ),
            };
        }
        error
    }
}

/// Reads a JSON answer.
async fn read_json(response: Response, what: &str) -> Result<Value, ConnectorError> {
    let bytes = response
        .bytes()
        .await
        .map_err(|_| ConnectorError::Retryable {
            system: SYSTEM,
            message: format!("{what}: the answer broke off"),
            retry_after: None,
        })?;
    serde_json::from_slice(&bytes).map_err(|e| rejected(format!("{what}: unreadable answer: {e}")))
}

fn config_missing(what: &str) -> ConnectorError {
    misconfigured(format!("{what} is missing"))
}

#[async_trait]
impl M365 for GraphClient {
    async fn gdap_relationships(
        &self,
        customer_tenant_id: &str,
    ) -> Result<Vec<GdapRelationship>, ConnectorError> {
        let customer = self.customer(customer_tenant_id)?;
        self.relationships_where(
            &format!("customer/tenantId eq {}", literal(&customer.0)),
            &format!("listing GDAP relationships with {}", customer.0),
        )
        .await
    }

    async fn request_gdap(
        &self,
        request: &GdapRequest,
        key: &str,
    ) -> Result<GdapRelationship, ConnectorError> {
        let customer = self.customer(&request.customer_tenant_id)?;
        if let Some(existing) = self.find_gdap_by_name(&request.display_name).await? {
            return self.resume_gdap(existing, &customer, key).await;
        }
        let auto_extend = if request.roles.iter().any(|r| r == GLOBAL_ADMINISTRATOR) {
            "PT0S"
        } else {
            "P180D"
        };
        let body = json!({
            "displayName": request.display_name,
            "duration": request.duration,
            "customer": { "tenantId": customer.0 },
            "accessDetails": {
                "unifiedRoles": request.roles.iter()
                    .map(|r| json!({ "roleDefinitionId": r }))
                    .collect::<Vec<_>>(),
            },
            "autoExtendDuration": auto_extend,
        });
        let url = self.relationships_url(&[])?;
        let what = format!("creating GDAP relationship '{}'", request.display_name);
        let created = match self
            .write(
                &self.partner,
                &what,
                Method::POST,
                &url,
                Some(&body),
                Some(key),
            )
            .await
        {
            Ok(response) => {
                let value = read_json(response, &what).await?;
                GdapRelationship::from(decode::<RelationshipDto>(value, &what)?)
            }
            // Another attempt created it between our look and our create.
            Err(e) if is_status(&e, 409) => {
                match self.find_gdap_by_name(&request.display_name).await? {
                    Some(existing) => return self.resume_gdap(existing, &customer, key).await,
                    None => return Err(e),
                }
            }
            Err(e) => return Err(e),
        };
        self.lock_for_approval(created, key).await
    }

    async fn terminate_gdap(&self, id: &str, key: &str) -> Result<(), ConnectorError> {
        let Some(relationship) = self.gdap_relationship(id).await? else {
            return Ok(());
        };
        match relationship.status.as_str() {
            "terminated" | "terminationRequested" | "expired" => Ok(()),
            "created" => {
                let url = self.relationships_url(&[segment(id, "relationship id")?])?;
                match self
                    .write(
                        &self.partner,
                        &format!("deleting GDAP relationship {id}"),
                        Method::DELETE,
                        &url,
                        None,
                        None,
                    )
                    .await
                {
                    Err(e) if is_status(&e, 404) => Ok(()),
                    other => other.map(|_| ()),
                }
            }
            "active" | "activating" | "expiring" => {
                self.relationship_action(id, "terminate", key).await
            }
            other => Err(ConnectorError::Rejected {
                system: SYSTEM,
                status: None,
                message: format!(
                    "GDAP relationship {id} is {other}: it cannot be terminated until the customer approves it (an unapproved request expires on its own)"
                ),
            }),
        }
    }

    async fn gdap_relationship(
        &self,
        id: &str,
    ) -> Result<Option<GdapRelationship>, ConnectorError> {
        GraphClient::gdap_relationship(self, id).await
    }

    async fn tenant_by_domain(
        &self,
        domain: &str,
    ) -> Result<Option<TenantInformation>, ConnectorError> {
        let domain = segment(domain.trim(), "domain name")?;
        if domain.contains('/') {
            return Err(rejected(format!("'{domain}' is not a domain name")));
        }
        self.tenant_information(
            format!(
                "findTenantInformationByDomainName(domainName={})",
                literal(domain)
            ),
            &format!("looking up the tenant of domain {domain}"),
        )
        .await
    }

    async fn tenant_by_id(
        &self,
        tenant_id: &str,
    ) -> Result<Option<TenantInformation>, ConnectorError> {
        let tenant = self.customer(tenant_id)?;
        self.tenant_information(
            format!(
                "findTenantInformationByTenantId(tenantId={})",
                literal(&tenant.0)
            ),
            &format!("looking up tenant {}", tenant.0),
        )
        .await
    }

    async fn directory_role_members(
        &self,
        customer_tenant_id: &str,
        role_template_id: &str,
    ) -> Result<Vec<DirectoryMember>, ConnectorError> {
        // A role the tenant never activated is a 404: it has no members.
        match GraphClient::directory_role_members(self, customer_tenant_id, role_template_id).await
        {
            Err(e) if is_status(&e, 404) => Ok(Vec::new()),
            other => other,
        }
    }

    async fn find_user(
        &self,
        customer_tenant_id: &str,
        user_principal_name: &str,
    ) -> Result<Option<DirectoryUser>, ConnectorError> {
        let tenant = self.customer(customer_tenant_id)?;
        let mut url = self.url(&["users"])?;
        url.query_pairs_mut()
            .append_pair(
                "$filter",
                &format!("userPrincipalName eq {}", literal(user_principal_name)),
            )
            .append_pair("$select", USER_FIELDS);
        let what = format!("looking for user {user_principal_name}");
        let users = self.list(&tenant, &what, url).await?;
        users
            .into_iter()
            .map(|v| decode::<UserDto>(v, &what))
            .find(|u| {
                u.as_ref().map_or(true, |u| {
                    u.user_principal_name
                        .eq_ignore_ascii_case(user_principal_name)
                })
            })
            .transpose()
            .map(|u| u.map(|u| u.into_user(false)))
    }

    async fn create_user(
        &self,
        customer_tenant_id: &str,
        user: &NewDirectoryUser,
        key: &str,
    ) -> Result<DirectoryUser, ConnectorError> {
        self.create_user_with(customer_tenant_id, user, true, key)
            .await
    }

    async fn delete_user(&self, customer_tenant_id: &str, id: &str) -> Result<(), ConnectorError> {
        let tenant = self.customer(customer_tenant_id)?;
        let url = self.url(&["users", segment(id, "user id")?])?;
        match self
            .write(
                &tenant,
                &format!("deleting user {id}"),
                Method::DELETE,
                &url,
                None,
                None,
            )
            .await
        {
            Err(e) if is_status(&e, 404) => Ok(()),
            other => other.map(|_| ()),
        }
    }

    async fn set_account_enabled(
        &self,
        customer_tenant_id: &str,
        id: &str,
        enabled: bool,
    ) -> Result<(), ConnectorError> {
        let tenant = self.customer(customer_tenant_id)?;
        let url = self.url(&["users", segment(id, "user id")?])?;
        let verb = if enabled { "enabling" } else { "disabling" };
        match self
            .write(
                &tenant,
                &format!("{verb} user {id}"),
                Method::PATCH,
                &url,
                Some(&json!({ "accountEnabled": enabled })),
                None,
            )
            .await
        {
            // A user who is not there cannot sign in: disabling is done.
            Err(e) if !enabled && is_status(&e, 404) => Ok(()),
            other => other.map(|_| ()),
        }
    }

    async fn revoke_sign_in_sessions(
        &self,
        customer_tenant_id: &str,
        id: &str,
    ) -> Result<(), ConnectorError> {
        let tenant = self.customer(customer_tenant_id)?;
        let url = self.url(&["users", segment(id, "user id")?, "revokeSignInSessions"])?;
        match self
            .write(
                &tenant,
                &format!("revoking the sessions of user {id}"),
                Method::POST,
                &url,
                None,
                None,
            )
            .await
        {
            // A user who is not there has no sessions left.
            Err(e) if is_status(&e, 404) => Ok(()),
            other => other.map(|_| ()),
        }
    }

    async fn assign_licenses(
        &self,
        customer_tenant_id: &str,
        id: &str,
        add: &[String],
        remove: &[String],
    ) -> Result<(), ConnectorError> {
        let tenant = self.customer(customer_tenant_id)?;
        let held = self.licenses(customer_tenant_id, id).await?;
        let add: Vec<&String> = add.iter().filter(|s| !held.contains(s)).collect();
        let remove: Vec<&String> = remove
            .iter()
            .filter(|s| held.contains(s) && !add.contains(s))
            .collect();
        if add.is_empty() && remove.is_empty() {
            return Ok(());
        }
        let body = json!({
            "addLicenses": add.iter()
                .map(|sku| json!({ "skuId": sku, "disabledPlans": [] }))
                .collect::<Vec<_>>(),
            "removeLicenses": remove,
        });
        let url = self.url(&["users", segment(id, "user id")?, "assignLicense"])?;
        self.write(
            &tenant,
            &format!("changing the licences of user {id}"),
            Method::POST,
            &url,
            Some(&body),
            None,
        )
        .await?;
        Ok(())
    }

    async fn licenses(
        &self,
        customer_tenant_id: &str,
        id: &str,
    ) -> Result<Vec<String>, ConnectorError> {
        let tenant = self.customer(customer_tenant_id)?;
        let url = self.url(&["users", segment(id, "user id")?, "licenseDetails"])?;
        let what = format!("reading the licences of user {id}");
        self.list(&tenant, &what, url)
            .await?
            .into_iter()
            .map(|v| decode::<LicenseDetailDto>(v, &what).map(|l| l.sku_id))
            .collect()
    }

    async fn add_group_member(
        &self,
        customer_tenant_id: &str,
        group: &str,
        user: &str,
    ) -> Result<(), ConnectorError> {
        let tenant = self.customer(customer_tenant_id)?;
        let url = self.url(&["groups", segment(group, "group id")?, "members", "$ref"])?;
        let body = json!({ "@odata.id": self.object_ref(segment(user, "user id")?)? });
        let what = format!("adding {user} to group {group}");
        match self
            .write(&tenant, &what, Method::POST, &url, Some(&body), None)
            .await
        {
            Err(e) if says(&e, ALREADY_MEMBER) => Ok(()),
            Err(e) => Err(Self::group_refusal(e, group)),
            Ok(_) => Ok(()),
        }
    }

    async fn remove_group_member(
        &self,
        customer_tenant_id: &str,
        group: &str,
        user: &str,
    ) -> Result<(), ConnectorError> {
        let tenant = self.customer(customer_tenant_id)?;
        let url = self.url(&[
            "groups",
            segment(group, "group id")?,
            "members",
            segment(user, "user id")?,
            "$ref",
        ])?;
        let what = format!("removing {user} from group {group}");
        match self
            .write(&tenant, &what, Method::DELETE, &url, None, None)
            .await
        {
            // Graph answers 404 both for a member not there and for a group
            // not there; either way the user is not a member.
            Err(e) if is_status(&e, 404) => Ok(()),
            Err(e) => Err(Self::group_refusal(e, group)),
            Ok(_) => Ok(()),
        }
    }

    async fn group_members(
        &self,
        customer_tenant_id: &str,
        group: &str,
    ) -> Result<Vec<String>, ConnectorError> {
        let tenant = self.customer(customer_tenant_id)?;
        let mut url = self.url(&["groups", segment(group, "group id")?, "members"])?;
        url.query_pairs_mut().append_pair("$select", "id");
        let what = format!("listing the members of group {group}");
        self.list(&tenant, &what, url)
            .await?
            .into_iter()
            .map(|v| decode::<MemberDto>(v, &what).map(|m| m.id))
            .collect()
    }

    async fn tenant_country(
        &self,
        customer_tenant_id: &str,
    ) -> Result<Option<String>, ConnectorError> {
        let tenant = self.customer(customer_tenant_id)?;
        let mut url = self.url(&["organization"])?;
        url.query_pairs_mut()
            .append_pair("$select", "id,countryLetterCode");
        let what = "reading the organization's country";
        let organizations = self.list(&tenant, what, url).await?;
        Ok(organizations
            .iter()
            .find_map(|o| o.get("countryLetterCode").and_then(Value::as_str))
            .filter(|c| c.len() == 2 && c.chars().all(|ch| ch.is_ascii_alphabetic()))
            .map(str::to_ascii_uppercase))
    }

    async fn users(&self, customer_tenant_id: &str) -> Result<Vec<DirectoryUser>, ConnectorError> {
        let tenant = self.customer(customer_tenant_id)?;
        let mut url = self.url(&["users"])?;
        url.query_pairs_mut().append_pair("$select", USER_FIELDS);
        let what = "listing users";
        self.list(&tenant, what, url)
            .await?
            .into_iter()
            .map(|v| decode::<UserDto>(v, what).map(|u| u.into_user(false)))
            .collect()
    }

    async fn member_of(
        &self,
        customer_tenant_id: &str,
        user: &str,
    ) -> Result<Vec<DirectoryMembership>, ConnectorError> {
        let tenant = self.customer(customer_tenant_id)?;
        let url = self.url(&["users", segment(user, "user id")?, "memberOf"])?;
        let what = format!("listing the memberships of user {user}");
        self.list(&tenant, &what, url)
            .await?
            .into_iter()
            .map(|v| {
                decode::<MembershipDto>(v, &what).map(|m| DirectoryMembership {
                    id: m.id,
                    object_type: m.object_type,
                    display_name: m.display_name,
                    role_template_id: m.role_template_id,
                })
            })
            .collect()
    }

    async fn add_directory_role_member(
        &self,
        customer_tenant_id: &str,
        role_template_id: &str,
        user: &str,
    ) -> Result<(), ConnectorError> {
        GraphClient::add_directory_role_member(self, customer_tenant_id, role_template_id, user)
            .await
    }

    async fn remove_directory_role_member(
        &self,
        customer_tenant_id: &str,
        role_template_id: &str,
        user: &str,
    ) -> Result<(), ConnectorError> {
        GraphClient::remove_directory_role_member(self, customer_tenant_id, role_template_id, user)
            .await
    }
}

impl GraphClient {
    /// Continues a request that an earlier attempt (or someone) started:
    /// the relationship named so already exists.
    async fn resume_gdap(
        &self,
        existing: GdapRelationship,
        customer: &TenantId,
        key: &str,
    ) -> Result<GdapRelationship, ConnectorError> {
        if existing.customer_tenant_id != customer.0 {
            return Err(rejected(format!(
                "a GDAP relationship named '{}' already exists for another customer ({}); choose another name",
                existing.display_name, existing.customer_tenant_id
            )));
        }
        match existing.status.as_str() {
            "created" => self.lock_for_approval(existing, key).await,
            "approvalPending" | "activating" | "active" => Ok(existing),
            other => Err(rejected(format!(
                "a GDAP relationship named '{}' already exists and is {other}; request a new one under another name",
                existing.display_name
            ))),
        }
    }
}

/// A licence SKU a customer tenant subscribes to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscribedSku {
    /// The SKU id, as `assign_licenses` takes it.
    pub sku_id: String,
    /// Its part number (`ENTERPRISEPACK`, `SPE_E3`, …).
    pub part_number: String,
    /// Licences bought and enabled.
    pub enabled: u64,
    /// Licences assigned.
    pub consumed: u64,
}

impl SubscribedSku {
    /// Licences still free to assign.
    pub fn available(&self) -> u64 {
        self.enabled.saturating_sub(self.consumed)
    }
}

/// A group in a customer's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirectoryGroup {
    /// Graph's object id.
    pub id: String,
    /// Its display name.
    pub display_name: String,
    /// Whether it is mail-enabled (then, unless it is a Microsoft 365
    /// group, its members change in Exchange, not through Graph).
    pub mail_enabled: bool,
    /// Whether it is a security group.
    pub security_enabled: bool,
    /// Whether it is a Microsoft 365 group (`groupTypes` has `Unified`).
    pub unified: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SkuDto {
    sku_id: String,
    #[serde(default)]
    sku_part_number: String,
    #[serde(default)]
    consumed_units: u64,
    #[serde(default)]
    prepaid_units: PrepaidDto,
}

#[derive(Deserialize, Default)]
struct PrepaidDto {
    #[serde(default)]
    enabled: u64,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GroupDto {
    id: String,
    #[serde(default)]
    display_name: String,
    #[serde(default)]
    mail_enabled: bool,
    #[serde(default)]
    security_enabled: bool,
    #[serde(default)]
    group_types: Vec<String>,
}

impl From<GroupDto> for DirectoryGroup {
    fn from(g: GroupDto) -> Self {
        Self {
            id: g.id,
            display_name: g.display_name,
            mail_enabled: g.mail_enabled,
            security_enabled: g.security_enabled,
            unified: g.group_types.iter().any(|t| t == "Unified"),
        }
    }
}

/// What onboarding and the identity lifecycle need beyond the [`M365`]
/// port.
impl GraphClient {
    /// Creates a user (after looking for its UPN), whose first sign-in must
    /// change the password if `force_change`.
    async fn create_user_with(
        &self,
        customer_tenant_id: &str,
        user: &NewDirectoryUser,
        force_change: bool,
        key: &str,
    ) -> Result<DirectoryUser, ConnectorError> {
        if let Some(existing) = self
            .find_user(customer_tenant_id, &user.user_principal_name)
            .await?
        {
            return Ok(existing);
        }
        let tenant = self.customer(customer_tenant_id)?;
        let mut body = json!({
            "accountEnabled": true,
            "displayName": user.display_name,
            "mailNickname": user.mail_nickname,
            "userPrincipalName": user.user_principal_name,
            "passwordProfile": {
                "password": user.password.expose(),
                "forceChangePasswordNextSignIn": force_change,
            },
        });
        if let Some(location) = &user.usage_location {
            body["usageLocation"] = json!(location);
        }
        let url = self.url(&["users"])?;
        let what = format!("creating user {}", user.user_principal_name);
        match self
            .write(&tenant, &what, Method::POST, &url, Some(&body), Some(key))
            .await
        {
            Ok(response) => {
                let value = read_json(response, &what).await?;
                Ok(decode::<UserDto>(value, &what)?.into_user(true))
            }
            // Created by another attempt between our look and our create.
            Err(e) if says(&e, UPN_TAKEN) => self
                .find_user(customer_tenant_id, &user.user_principal_name)
                .await?
                .ok_or(e),
            Err(e) => Err(e),
        }
    }

    /// Looks many users up by UPN in `$batch` requests of 20: what a
    /// reconciliation reads before it diffs desired against actual access.
    /// Answers each UPN with its user or `None`, in the order asked. One
    /// throttled or failed step fails the whole call (retryable with the
    /// step's `Retry-After` if Graph said so).
    pub async fn find_users(
        &self,
        customer_tenant_id: &str,
        user_principal_names: &[String],
    ) -> Result<Vec<(String, Option<DirectoryUser>)>, ConnectorError> {
        let tenant = self.customer(customer_tenant_id)?;
        let batch_url = self.url(&["$batch"])?;
        let mut found = Vec::with_capacity(user_principal_names.len());
        for chunk in user_principal_names.chunks(MAX_BATCH) {
            let mut steps = Vec::with_capacity(chunk.len());
            for (i, upn) in chunk.iter().enumerate() {
                let mut url = self.url(&["users"])?;
                url.query_pairs_mut()
                    .append_pair("$filter", &format!("userPrincipalName eq {}", literal(upn)))
                    .append_pair("$select", USER_FIELDS);
                let relative = format!("/users?{}", url.query().unwrap_or_default());
                steps.push(json!({ "id": i.to_string(), "method": "GET", "url": relative }));
            }
            let what = format!("looking up {} users in a batch", chunk.len());
            let body = json!({ "requests": steps });
            let answer: BatchAnswer = decode(
                read_json(
                    self.write(&tenant, &what, Method::POST, &batch_url, Some(&body), None)
                        .await?,
                    &what,
                )
                .await?,
                &what,
            )?;
            let mut by_step: HashMap<String, BatchStep> = answer
                .responses
                .into_iter()
                .map(|r| (r.id.clone(), r))
                .collect();
            for (i, upn) in chunk.iter().enumerate() {
                let step = by_step
                    .remove(&i.to_string())
                    .ok_or_else(|| rejected(format!("{what}: no answer for {upn}")))?;
                let user = self.batch_user(step, upn)?;
                found.push((upn.clone(), user));
            }
        }
        Ok(found)
    }

    /// One step's answer to a UPN lookup.
    fn batch_user(
        &self,
        step: BatchStep,
        upn: &str,
    ) -> Result<Option<DirectoryUser>, ConnectorError> {
        let what = format!("looking for user {upn} (batched)");
        let excerpt = || {
            let text = step.body.to_string();
            text.chars().take(200).collect::<String>()
        };
        match step.status {
            200..=299 => {
                let page: Page = decode(step.body.clone(), &what)?;
                page.value
                    .into_iter()
                    .map(|v| decode::<UserDto>(v, &what))
                    .find(|u| {
                        u.as_ref()
                            .map_or(true, |u| u.user_principal_name.eq_ignore_ascii_case(upn))
                    })
                    .transpose()
                    .map(|u| u.map(|u| u.into_user(false)))
            }
            429 | 502 | 503 | 504 => Err(ConnectorError::Retryable {
                system: SYSTEM,
                message: format!("{what}: HTTP {}: {}", step.status, excerpt()),
                retry_after: step
                    .headers
                    .iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case("retry-after"))
                    .and_then(|(_, v)| v.as_str())
                    .and_then(|v| parse_retry_after(v, self.clock.now())),
            }),
            401 | 403 => Err(ConnectorError::Auth {
                system: SYSTEM,
                status: Some(step.status),
                message: format!("{what}: HTTP {}: {}", step.status, excerpt()),
            }),
            status => Err(ConnectorError::Rejected {
                system: SYSTEM,
                status: Some(status),
                message: format!("{what}: HTTP {status}: {}", excerpt()),
            }),
        }
    }

    /// Creates an admin or break-glass account: like `create_user`, but the
    /// password is the one to keep (no change forced at first sign-in),
    /// since such an account is sealed away and used only in an emergency.
    pub async fn create_admin_user(
        &self,
        customer_tenant_id: &str,
        user: &NewDirectoryUser,
        key: &str,
    ) -> Result<DirectoryUser, ConnectorError> {
        self.create_user_with(customer_tenant_id, user, false, key)
            .await
    }

    /// Sets a user's password (a leaver's, so that a known password no
    /// longer works; or a break-glass account's rotation).
    pub async fn reset_password(
        &self,
        customer_tenant_id: &str,
        id: &str,
        password: &Secret,
        force_change: bool,
    ) -> Result<(), ConnectorError> {
        let tenant = self.customer(customer_tenant_id)?;
        let url = self.url(&["users", segment(id, "user id")?])?;
        let body = json!({
            "passwordProfile": {
                "password": password.expose(),
                "forceChangePasswordNextSignIn": force_change,
            }
        });
        self.write(
            &tenant,
            &format!("resetting the password of user {id}"),
            Method::PATCH,
            &url,
            Some(&body),
            None,
        )
        .await?;
        Ok(())
    }

    /// The licence SKUs a customer subscribes to, with free units: what a
    /// plan checks before it promises a licence.
    pub async fn subscribed_skus(
        &self,
        customer_tenant_id: &str,
    ) -> Result<Vec<SubscribedSku>, ConnectorError> {
        let tenant = self.customer(customer_tenant_id)?;
        let what = "listing subscribed SKUs";
        self.list(&tenant, what, self.url(&["subscribedSkus"])?)
            .await?
            .into_iter()
            .map(|v| {
                decode::<SkuDto>(v, what).map(|s| SubscribedSku {
                    sku_id: s.sku_id,
                    part_number: s.sku_part_number,
                    enabled: s.prepaid_units.enabled,
                    consumed: s.consumed_units,
                })
            })
            .collect()
    }

    /// The group called `display_name`, if there is exactly one. Display
    /// names are not unique in Entra: two groups of that name is an error,
    /// not a guess.
    pub async fn find_group(
        &self,
        customer_tenant_id: &str,
        display_name: &str,
    ) -> Result<Option<DirectoryGroup>, ConnectorError> {
        let tenant = self.customer(customer_tenant_id)?;
        let mut url = self.url(&["groups"])?;
        url.query_pairs_mut()
            .append_pair(
                "$filter",
                &format!("displayName eq {}", literal(display_name)),
            )
            .append_pair(
                "$select",
                "id,displayName,mailEnabled,securityEnabled,groupTypes",
            );
        let what = format!("looking for group '{display_name}'");
        let mut groups: Vec<DirectoryGroup> = self
            .list(&tenant, &what, url)
            .await?
            .into_iter()
            .map(|v| decode::<GroupDto>(v, &what).map(Into::into))
            .collect::<Result<_, _>>()?;
        match groups.len() {
            0 => Ok(None),
            1 => Ok(groups.pop()),
            n => Err(rejected(format!(
                "{what}: {n} groups have that name; name one by id"
            ))),
        }
    }

    /// Creates a security group (after looking for one of that name).
    pub async fn create_security_group(
        &self,
        customer_tenant_id: &str,
        display_name: &str,
        mail_nickname: &str,
        key: &str,
    ) -> Result<DirectoryGroup, ConnectorError> {
        if let Some(existing) = self.find_group(customer_tenant_id, display_name).await? {
            return Ok(existing);
        }
        let tenant = self.customer(customer_tenant_id)?;
        let body = json!({
            "displayName": display_name,
            "mailNickname": mail_nickname,
            "mailEnabled": false,
            "securityEnabled": true,
        });
        let what = format!("creating group '{display_name}'");
        let response = self
            .write(
                &tenant,
                &what,
                Method::POST,
                &self.url(&["groups"])?,
                Some(&body),
                Some(key),
            )
            .await?;
        let value = read_json(response, &what).await?;
        Ok(decode::<GroupDto>(value, &what)?.into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_core::clock::SystemClock;

    fn client() -> GraphClient {
        let config = GraphConfig::new("partner.onmicrosoft.com", "app", Secret::new("s"));
        GraphClient::new(config, Arc::new(SystemClock)).unwrap()
    }

    #[test]
    fn next_page_links_are_followed_on_the_graph_host_only() {
        let c = client();
        let ok = "https://graph.microsoft.com/v1.0/users?$skiptoken=X2";
        assert_eq!(c.next_page(ok, "t").unwrap().as_str(), ok);
        for bad in [
            "https://evil.example/v1.0/users?$skiptoken=X2",
            "http://graph.microsoft.com/v1.0/users",
            "https://graph.microsoft.com:8443/v1.0/users",
            "https://graph.microsoft.com.evil.example/v1.0/users",
            "not a url",
        ] {
            let err = c.next_page(bad, "t").unwrap_err();
            assert!(
                matches!(err, ConnectorError::Rejected { .. }),
                "{bad}: {err:?}"
            );
        }
    }

    #[test]
    fn tenant_ids_and_segments_are_checked_before_they_reach_a_url() {
        assert!(TenantId::parse("0c0c0c0c-0000-4000-8000-000000000002").is_ok());
        assert!(TenantId::parse("contoso.onmicrosoft.com").is_ok());
        for bad in ["", "../x", "a/b", "a b", ".hidden", "a?b"] {
            assert!(TenantId::parse(bad).is_err(), "{bad}");
        }
        assert!(segment("..", "user id").is_err());
        let c = client();
        let url = c
            .url(&["users", "guest_x.com#EXT#@contoso.onmicrosoft.com"])
            .unwrap();
        assert_eq!(
            url.as_str(),
            "https://graph.microsoft.com/v1.0/users/guest_x.com%23EXT%23@contoso.onmicrosoft.com"
        );
    }

    #[test]
    fn filter_literals_double_quotes() {
        assert_eq!(literal("o'brien@x"), "'o''brien@x'");
    }

    #[test]
    fn bad_settings_are_configuration_errors() {
        let mut config = GraphConfig::new("p", "app", Secret::new("s"));
        config.graph_base = "ftp://graph".to_owned();
        let err = GraphClient::new(config, Arc::new(SystemClock)).unwrap_err();
        assert!(matches!(err, ConnectorError::Config { .. }), "{err:?}");
        let config = GraphConfig::new("p", "app", Secret::new(""));
        assert!(GraphClient::new(config, Arc::new(SystemClock)).is_err());
    }
}
