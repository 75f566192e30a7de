//! An outbound SCIM 2.0 client (RFC 7644) for any application that takes
//! SCIM provisioning: users and groups under one base URL, with a bearer
//! token.
//!
//! Behaviour the identity reconciler relies on:
//! - filters are built as `gatehouse-scim` [`Filter`]s and rendered by it,
//!   so a value with `"` or `\` is quoted as a JSON string and can never
//!   change the filter it is put in;
//! - every list follows `startIndex`/`count`/`totalResults` to the end
//!   (a page that comes back empty ends it, whatever the total said);
//! - a create forwards the engine's key as `Idempotency-Key`;
//! - deleting what is not there (404) succeeds;
//! - 429, 502, 503 and 504 are [`ConnectorError::Retryable`] with the
//!   application's `Retry-After`; 401 and 403 are [`ConnectorError::Auth`];
//!   every other refusal is [`ConnectorError::Rejected`] whose message
//!   names the `scimType` and `detail` of the SCIM error body
//!   (RFC 7644 §3.12), e.g. `409 uniqueness: userName "x" is already in use`;
//! - the token never appears in a message or in `Debug` output.
//!
//! A user's read-only `groups` attribute is optional for a service
//! provider, and an empty one is left out of answers, so its absence says
//! nothing until the application has shown it computes it: the client
//! remembers the first answer that carried `groups`, and from then on
//! [`ScimClient::groups_of`] takes a user without it to be in no group.
//! Until then it asks the Groups endpoint (`members[value eq "…"]`).
//! Changes never rely on that inference: a removal is skipped only when
//! the user's own answer lists groups without the one to remove.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use gatehouse_core::clock::{Clock, SystemClock};
use gatehouse_core::retry_after::parse_retry_after;
use gatehouse_scim::{AttrPath, CompValue, CompareOp, Filter, PatchOp, PatchOperation, PatchPath};
pub use reqwest::Url;
use reqwest::{Method, RequestBuilder, Response, StatusCode, header};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::error::ConnectorError;
use crate::http::{Http, Secret};

const SYSTEM: &str = "scim";

/// The SCIM media type (RFC 7644 §3.1).
const SCIM_JSON: &str = "application/scim+json";
const USER_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const GROUP_SCHEMA: &str = "urn:ietf:params:scim:schemas:core:2.0:Group";
const PATCH_SCHEMA: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";

/// A list longer than this many pages is refused rather than read forever.
const MAX_PAGES: usize = 10_000;

/// How much of a non-SCIM error body a message keeps.
const EXCERPT_CHARS: usize = 200;

/// How a [`ScimClient`] behaves, beyond where and as whom.
#[derive(Debug, Clone)]
pub struct ScimOptions {
    /// `count` asked for per page (1–1000).
    pub page_size: u32,
    /// Each call gives up after this long.
    pub timeout: Duration,
}

impl Default for ScimOptions {
    /// 100 a page, 30 s timeout.
    fn default() -> Self {
        Self {
            page_size: 100,
            timeout: Duration::from_secs(30),
        }
    }
}

/// A user as a SCIM application holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimUser {
    /// The application's id.
    pub id: String,
    /// `externalId`: Gatehouse's person id, when the account has one.
    pub external_id: Option<String>,
    /// `userName`.
    pub user_name: String,
    /// `displayName`, when set.
    pub display_name: Option<String>,
    /// `active` (an account without the attribute counts as active).
    pub active: bool,
    /// `roles[].value`.
    pub roles: Vec<String>,
    /// The read-only `groups`, as the answer carried them: `None` when it
    /// had none (no groups, or an application that does not compute
    /// them; [`ScimClient::groups_of`] tells which).
    pub groups: Option<Vec<ScimMembership>>,
}

/// One entry of a user's `groups`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimMembership {
    /// The group's id.
    pub id: String,
    /// Its display name, when the application sends one.
    pub display: Option<String>,
}

/// A group as a SCIM application holds it (without its members).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ScimGroup {
    /// The application's id.
    pub id: String,
    /// `displayName`.
    pub display_name: String,
}

/// A user to create.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NewScimUser {
    /// `externalId`.
    pub external_id: String,
    /// `userName`.
    pub user_name: String,
    /// `displayName`.
    pub display_name: String,
    /// `name.givenName`.
    pub given_name: Option<String>,
    /// `name.familyName`.
    pub family_name: Option<String>,
    /// The work e-mail (`emails[type eq "work"]`, primary).
    pub email: Option<String>,
    /// `active`.
    pub active: bool,
}

/// A SCIM 2.0 client for one application. Cheap to share behind an `Arc`.
pub struct ScimClient {
    http: Http,
    clock: Arc<dyn Clock>,
    base: Url,
    token: Secret,
    page_size: u32,
    /// Whether an answer has shown that the application computes `groups`.
    returns_groups: AtomicBool,
}

impl fmt::Debug for ScimClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScimClient")
            .field("base", &self.base.as_str())
            .field("page_size", &self.page_size)
            .finish_non_exhaustive()
    }
}

#[derive(Deserialize)]
struct ListAnswer {
    #[serde(rename = "totalResults", default)]
    total_results: Option<u64>,
    #[serde(rename = "Resources", alias = "resources", default)]
    resources: Vec<Value>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct UserDto {
    id: String,
    #[serde(default)]
    external_id: Option<String>,
    user_name: String,
    #[serde(default)]
    display_name: Option<String>,
    #[serde(default)]
    active: Option<Flag>,
    #[serde(default)]
    roles: Vec<ValueDto>,
    #[serde(default)]
    groups: Option<Vec<MembershipDto>>,
}

/// A boolean some applications send as `"True"`/`"False"`.
#[derive(Deserialize)]
#[serde(untagged)]
enum Flag {
    Bool(bool),
    Text(String),
}

impl Flag {
    fn value(&self) -> bool {
        match self {
            Self::Bool(b) => *b,
            Self::Text(t) => !t.eq_ignore_ascii_case("false"),
        }
    }
}

#[derive(Deserialize)]
struct ValueDto {
    #[serde(default)]
    value: Option<String>,
}

#[derive(Deserialize)]
struct MembershipDto {
    value: String,
    #[serde(default)]
    display: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GroupDto {
    id: String,
    #[serde(default)]
    display_name: String,
}

impl From<GroupDto> for ScimGroup {
    fn from(g: GroupDto) -> Self {
        Self {
            id: g.id,
            display_name: g.display_name,
        }
    }
}

fn rejected(message: impl Into<String>) -> ConnectorError {
    ConnectorError::Rejected {
        system: SYSTEM,
        status: None,
        message: message.into(),
    }
}

fn decode<T: serde::de::DeserializeOwned>(value: Value, what: &str) -> Result<T, ConnectorError> {
    serde_json::from_value(value).map_err(|e| rejected(format!("{what}: unreadable answer: {e}")))
}

/// `attribute eq "value"`, rendered by `gatehouse-scim` (the value is a
/// JSON string: `"` and `\` are escaped).
pub fn eq_filter(attribute: &str, value: &str) -> String {
    Filter::Compare {
        path: AttrPath::new(attribute),
        op: CompareOp::Eq,
        value: CompValue::String(value.to_owned()),
    }
    .to_string()
}

/// `attribute[value eq "value"]`: a multi-valued attribute holding `value`.
pub fn has_value_filter(attribute: &str, value: &str) -> String {
    Filter::ValuePath {
        path: AttrPath::new(attribute),
        filter: Box::new(Filter::Compare {
            path: AttrPath::new("value"),
            op: CompareOp::Eq,
            value: CompValue::String(value.to_owned()),
        }),
    }
    .to_string()
}

/// A PATCH path; an error only if `text` is not one (a bug, or a value
/// that cannot be put in a filter).
pub(crate) fn patch_path(text: &str) -> Result<PatchPath, ConnectorError> {
    PatchPath::parse(text)
        .map_err(|e| rejected(format!("{text:?} is not a usable PATCH path: {e}")))
}

/// A PATCH operation as JSON.
fn operation_json(op: &PatchOperation) -> Value {
    let mut out = Map::new();
    let name = match op.op {
        PatchOp::Add => "add",
        PatchOp::Remove => "remove",
        PatchOp::Replace => "replace",
    };
    out.insert("op".into(), json!(name));
    if let Some(path) = &op.path {
        out.insert("path".into(), json!(path.to_string()));
    }
    if let Some(value) = &op.value {
        out.insert("value".into(), value.clone());
    }
    Value::Object(out)
}

/// Whether the application refused with this `scimType`.
pub fn is_scim_type(error: &ConnectorError, scim_type: &str) -> bool {
    matches!(error, ConnectorError::Rejected { message, .. }
        if message.contains(&format!(" {scim_type}: ")))
}

impl ScimClient {
    /// A client for the application whose SCIM base URL (Entra's "Tenant
    /// URL", e.g. `https://app.example.com/scim/v2`) is `base_url`, sending
    /// `token` as the bearer token; default [`ScimOptions`], the system
    /// clock.
    pub fn new(base_url: Url, token: Secret) -> Result<Self, ConnectorError> {
        Self::with_options(
            base_url,
            token,
            ScimOptions::default(),
            Arc::new(SystemClock),
        )
    }

    /// A client with `options`; `clock` reads `Retry-After` dates.
    pub fn with_options(
        base_url: Url,
        token: Secret,
        options: ScimOptions,
        clock: Arc<dyn Clock>,
    ) -> Result<Self, ConnectorError> {
        let config = |message: &str| ConnectorError::Config {
            system: SYSTEM,
            message: message.to_owned(),
        };
        if base_url.cannot_be_a_base() || !matches!(base_url.scheme(), "http" | "https") {
            return Err(config("the SCIM base URL must be an http(s) URL"));
        }
        if !base_url.username().is_empty() || base_url.password().is_some() {
            return Err(config(
                "the SCIM base URL must not carry credentials; give the token instead",
            ));
        }
        if base_url.query().is_some() || base_url.fragment().is_some() {
            return Err(config(
                "the SCIM base URL must not have a query or fragment",
            ));
        }
        if token.expose().trim().is_empty() {
            return Err(config("the bearer token is missing"));
        }
        if !(1..=1000).contains(&options.page_size) {
            return Err(config("the page size must be between 1 and 1000"));
        }
        Ok(Self {
            http: Http::new(SYSTEM, options.timeout, Arc::clone(&clock))?,
            clock,
            base: base_url,
            token,
            page_size: options.page_size,
            returns_groups: AtomicBool::new(false),
        })
    }

    /// `{base}/{segments…}`, each segment percent-encoded.
    fn url(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    fn request(&self, method: Method, url: Url) -> RequestBuilder {
        self.http
            .client()
            .request(method, url)
            .bearer_auth(self.token.expose())
            .header(header::ACCEPT, SCIM_JSON)
    }

    /// Sends `request`; a 2xx answer is returned, anything else becomes
    /// the matching [`ConnectorError`], its message starting with `what`.
    async fn send(&self, what: &str, request: RequestBuilder) -> Result<Response, ConnectorError> {
        let response = request.send().await.map_err(|e| {
            let how = if e.is_timeout() {
                "timed out"
            } else if e.is_connect() {
                "cannot connect"
            } else {
                "request failed"
            };
            ConnectorError::Retryable {
                system: SYSTEM,
                message: format!("{what}: {how}"),
                retry_after: None,
            }
        })?;
        let status = response.status();
        if status.is_success() {
            return Ok(response);
        }
        let retry_after = response
            .headers()
            .get(header::RETRY_AFTER)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| parse_retry_after(v, self.clock.now()));
        let body = response.text().await.unwrap_or_default();
        let message = format!("{what}: HTTP {}: {}", status.as_u16(), describe(&body));
        Err(match status {
            StatusCode::TOO_MANY_REQUESTS
            | StatusCode::BAD_GATEWAY
            | StatusCode::SERVICE_UNAVAILABLE
            | StatusCode::GATEWAY_TIMEOUT => ConnectorError::Retryable {
                system: SYSTEM,
                message,
                retry_after,
            },
            StatusCode::UNAUTHORIZED | StatusCode::FORBIDDEN => ConnectorError::Auth {
                system: SYSTEM,
                status: Some(status.as_u16()),
                message,
            },
            _ => ConnectorError::Rejected {
                system: SYSTEM,
                status: Some(status.as_u16()),
                message,
            },
        })
    }

    async fn json(&self, what: &str, request: RequestBuilder) -> Result<Value, ConnectorError> {
        let response = self.send(what, request).await?;
        let bytes = response
            .bytes()
            .await
            .map_err(|_| ConnectorError::Retryable {
                system: SYSTEM,
                message: format!("{what}: the answer broke off"),
                retry_after: None,
            })?;
        serde_json::from_slice(&bytes)
            .map_err(|e| rejected(format!("{what}: unreadable answer: {e}")))
    }

    /// Every resource at `endpoint` matching `filter`, every page read.
    async fn list(
        &self,
        endpoint: &str,
        filter: Option<&str>,
        excluded: Option<&str>,
        what: &str,
    ) -> Result<Vec<Value>, ConnectorError> {
        let mut all = Vec::new();
        let mut start: u64 = 1;
        for _ in 0..MAX_PAGES {
            let mut url = self.url(&[endpoint]);
            {
                let mut query = url.query_pairs_mut();
                if let Some(filter) = filter {
                    query.append_pair("filter", filter);
                }
                if let Some(excluded) = excluded {
                    query.append_pair("excludedAttributes", excluded);
                }
                query
                    .append_pair("startIndex", &start.to_string())
                    .append_pair("count", &self.page_size.to_string());
            }
            let page: ListAnswer =
                decode(self.json(what, self.request(Method::GET, url)).await?, what)?;
            let got = page.resources.len() as u64;
            all.extend(page.resources);
            let total = page.total_results.unwrap_or(0);
            if got == 0 || start + got > total {
                return Ok(all);
            }
            start += got;
        }
        Err(rejected(format!(
            "{what}: more than {MAX_PAGES} pages; refusing to read further"
        )))
    }

    fn user_of(&self, value: Value, what: &str) -> Result<ScimUser, ConnectorError> {
        let dto: UserDto = decode(value, what)?;
        if dto.groups.is_some() {
            self.returns_groups.store(true, Ordering::Relaxed);
        }
        let groups = dto.groups;
        Ok(ScimUser {
            id: dto.id,
            external_id: dto.external_id,
            user_name: dto.user_name,
            display_name: dto.display_name,
            active: dto.active.as_ref().is_none_or(Flag::value),
            roles: dto.roles.into_iter().filter_map(|r| r.value).collect(),
            groups: groups.map(|list| {
                list.into_iter()
                    .map(|g| ScimMembership {
                        id: g.value,
                        display: g.display,
                    })
                    .collect()
            }),
        })
    }

    /// The user with this id; `None` on 404.
    pub async fn user(&self, id: &str) -> Result<Option<ScimUser>, ConnectorError> {
        let what = format!("reading user {id}");
        match self
            .json(&what, self.request(Method::GET, self.url(&["Users", id])))
            .await
        {
            Ok(v) => Ok(Some(self.user_of(v, &what)?)),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn find_user(
        &self,
        attribute: &str,
        value: &str,
    ) -> Result<Option<ScimUser>, ConnectorError> {
        let what = format!("looking for the user with {attribute} {value:?}");
        let found = self
            .list("Users", Some(&eq_filter(attribute, value)), None, &what)
            .await?;
        let mut users = found
            .into_iter()
            .map(|v| self.user_of(v, &what))
            .collect::<Result<Vec<_>, _>>()?;
        match users.len() {
            0 | 1 => Ok(users.pop()),
            n => Err(rejected(format!("{what}: {n} users match; expected one"))),
        }
    }

    /// The user whose `externalId` is `external_id` (exact; the attribute
    /// is case-exact in SCIM).
    pub async fn find_user_by_external_id(
        &self,
        external_id: &str,
    ) -> Result<Option<ScimUser>, ConnectorError> {
        self.find_user("externalId", external_id).await
    }

    /// The user whose `userName` is `user_name` (SCIM compares it ignoring
    /// case).
    pub async fn find_user_by_user_name(
        &self,
        user_name: &str,
    ) -> Result<Option<ScimUser>, ConnectorError> {
        self.find_user("userName", user_name).await
    }

    /// Creates a user (POST, `Idempotency-Key: key`). A taken `userName` is
    /// [`ConnectorError::Rejected`] with status 409 and `uniqueness`.
    pub async fn create_user(
        &self,
        user: &NewScimUser,
        key: &str,
    ) -> Result<ScimUser, ConnectorError> {
        let mut body = json!({
            "schemas": [USER_SCHEMA],
            "externalId": user.external_id,
            "userName": user.user_name,
            "displayName": user.display_name,
            "active": user.active,
        });
        let mut name = Map::new();
        if let Some(given) = &user.given_name {
            name.insert("givenName".into(), json!(given));
        }
        if let Some(family) = &user.family_name {
            name.insert("familyName".into(), json!(family));
        }
        if !name.is_empty() {
            body["name"] = Value::Object(name);
        }
        if let Some(email) = &user.email {
            body["emails"] = json!([{ "value": email, "type": "work", "primary": true }]);
        }
        let what = format!("creating user {:?}", user.user_name);
        let request = self
            .request(Method::POST, self.url(&["Users"]))
            .header("Idempotency-Key", key)
            .header(header::CONTENT_TYPE, SCIM_JSON)
            .body(body.to_string());
        let created = self.json(&what, request).await?;
        self.user_of(created, &what)
    }

    /// Applies PATCH `operations` to a user; answers the user as it now is
    /// (read again if the application answers 204).
    pub async fn patch_user(
        &self,
        id: &str,
        operations: &[PatchOperation],
    ) -> Result<ScimUser, ConnectorError> {
        let what = format!("changing user {id}");
        match self.patch("Users", id, operations, &what).await? {
            Some(v) => self.user_of(v, &what),
            None => self
                .user(id)
                .await?
                .ok_or_else(|| rejected(format!("{what}: the user is gone"))),
        }
    }

    /// PATCH `/{endpoint}/{id}`; the answer's body, if it had one.
    async fn patch(
        &self,
        endpoint: &str,
        id: &str,
        operations: &[PatchOperation],
        what: &str,
    ) -> Result<Option<Value>, ConnectorError> {
        let body = json!({
            "schemas": [PATCH_SCHEMA],
            "Operations": operations.iter().map(operation_json).collect::<Vec<_>>(),
        });
        let mut url = self.url(&[endpoint, id]);
        if endpoint == "Groups" {
            // A large group's members are not wanted back (RFC 7644 §3.9
            // lets a PATCH name what to leave out of its answer).
            url.query_pairs_mut()
                .append_pair("excludedAttributes", "members");
        }
        let request = self
            .request(Method::PATCH, url)
            .header(header::CONTENT_TYPE, SCIM_JSON)
            .body(body.to_string());
        let response = self.send(what, request).await?;
        if response.status() == StatusCode::NO_CONTENT {
            return Ok(None);
        }
        let bytes = response.bytes().await.unwrap_or_default();
        if bytes.is_empty() {
            return Ok(None);
        }
        serde_json::from_slice(&bytes)
            .map(Some)
            .map_err(|e| rejected(format!("{what}: unreadable answer: {e}")))
    }

    /// Sets `active` (a leaver's account is disabled before it is deleted).
    pub async fn set_active(&self, id: &str, active: bool) -> Result<(), ConnectorError> {
        let op = PatchOperation {
            op: PatchOp::Replace,
            path: Some(patch_path("active")?),
            value: Some(json!(active)),
        };
        self.patch_user(id, &[op]).await.map(|_| ())
    }

    /// Deletes a user; one that is not there (404) is already gone.
    pub async fn delete_user(&self, id: &str) -> Result<(), ConnectorError> {
        self.delete("Users", id, &format!("deleting user {id}"))
            .await
    }

    async fn delete(&self, endpoint: &str, id: &str, what: &str) -> Result<(), ConnectorError> {
        match self
            .send(
                what,
                self.request(Method::DELETE, self.url(&[endpoint, id])),
            )
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.status() == Some(404) => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// Every user, every page read.
    pub async fn users(&self) -> Result<Vec<ScimUser>, ConnectorError> {
        let what = "listing users";
        self.list("Users", None, None, what)
            .await?
            .into_iter()
            .map(|v| self.user_of(v, what))
            .collect()
    }

    /// Whether answers have shown that the application computes a user's
    /// `groups` (so a user without it is in no group).
    pub fn returns_groups(&self) -> bool {
        self.returns_groups.load(Ordering::Relaxed)
    }

    /// The group called `display_name` (SCIM compares it ignoring case);
    /// two groups of that name is an error, not a guess.
    pub async fn find_group(
        &self,
        display_name: &str,
    ) -> Result<Option<ScimGroup>, ConnectorError> {
        let what = format!("looking for group {display_name:?}");
        let mut groups = self
            .groups_where(&eq_filter("displayName", display_name), &what)
            .await?;
        match groups.len() {
            0 | 1 => Ok(groups.pop()),
            n => Err(rejected(format!("{what}: {n} groups have that name"))),
        }
    }

    async fn groups_where(
        &self,
        filter: &str,
        what: &str,
    ) -> Result<Vec<ScimGroup>, ConnectorError> {
        self.list("Groups", Some(filter), Some("members"), what)
            .await?
            .into_iter()
            .map(|v| decode::<GroupDto>(v, what).map(Into::into))
            .collect()
    }

    /// Creates a group without members (POST, `Idempotency-Key: key`).
    pub async fn create_group(
        &self,
        display_name: &str,
        key: &str,
    ) -> Result<ScimGroup, ConnectorError> {
        let what = format!("creating group {display_name:?}");
        let body = json!({ "schemas": [GROUP_SCHEMA], "displayName": display_name });
        let request = self
            .request(Method::POST, self.url(&["Groups"]))
            .header("Idempotency-Key", key)
            .header(header::CONTENT_TYPE, SCIM_JSON)
            .body(body.to_string());
        decode::<GroupDto>(self.json(&what, request).await?, &what).map(Into::into)
    }

    /// Adds a user to a group (PATCH `add` `members`); one already there
    /// stays once (RFC 7644 §3.5.2.1).
    pub async fn add_member(&self, group_id: &str, user_id: &str) -> Result<(), ConnectorError> {
        let op = PatchOperation {
            op: PatchOp::Add,
            path: Some(patch_path("members")?),
            value: Some(json!([{ "value": user_id }])),
        };
        let what = format!("adding user {user_id} to group {group_id}");
        self.patch("Groups", group_id, &[op], &what)
            .await
            .map(|_| ())
    }

    /// Removes a user from a group (PATCH `remove`
    /// `members[value eq "…"]`); a user who is not a member (`noTarget`) or
    /// a group that is gone (404) is done.
    pub async fn remove_member(&self, group_id: &str, user_id: &str) -> Result<(), ConnectorError> {
        let op = PatchOperation {
            op: PatchOp::Remove,
            path: Some(patch_path(&has_value_filter("members", user_id))?),
            value: None,
        };
        let what = format!("removing user {user_id} from group {group_id}");
        match self.patch("Groups", group_id, &[op], &what).await {
            Ok(_) => Ok(()),
            Err(e) if e.status() == Some(404) || is_scim_type(&e, "noTarget") => Ok(()),
            Err(e) => Err(e),
        }
    }

    /// The groups `user` is a member of: from its `groups` when the
    /// application computes them and names them (a user without `groups`
    /// is in none once [`Self::returns_groups`]), else from the Groups
    /// endpoint (`members[value eq "…"]`).
    pub async fn groups_of(&self, user: &ScimUser) -> Result<Vec<ScimGroup>, ConnectorError> {
        match &user.groups {
            Some(list) if list.iter().all(|g| g.display.is_some()) => {
                return Ok(list
                    .iter()
                    .map(|g| ScimGroup {
                        id: g.id.clone(),
                        display_name: g.display.clone().unwrap_or_default(),
                    })
                    .collect());
            }
            None if self.returns_groups() => return Ok(Vec::new()),
            _ => {}
        }
        let what = format!("listing the groups of user {}", user.id);
        self.groups_where(&has_value_filter("members", &user.id), &what)
            .await
    }
}

/// An error body's gist: a SCIM error's `scimType` and `detail`, else an
/// excerpt.
fn describe(body: &str) -> String {
    if let Ok(Value::Object(error)) = serde_json::from_str::<Value>(body) {
        let detail = error.get("detail").and_then(Value::as_str);
        let scim_type = error.get("scimType").and_then(Value::as_str);
        match (scim_type, detail) {
            (Some(t), Some(d)) => return format!("{t}: {d}"),
            (None, Some(d)) => return d.to_owned(),
            (Some(t), None) => return format!("{t}: (no detail)"),
            (None, None) => {}
        }
    }
    body.chars().take(EXCERPT_CHARS).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filter_values_are_quoted_as_json_strings() {
        assert_eq!(
            eq_filter("userName", r#"o"brien\x@example.com"#),
            r#"userName eq "o\"brien\\x@example.com""#
        );
        assert_eq!(
            has_value_filter("members", "a\"b"),
            r#"members[value eq "a\"b"]"#
        );
        // What we render parses back to the same value.
        let parsed = Filter::parse(&eq_filter("externalId", "a\\\"b")).unwrap();
        assert!(matches!(
            parsed,
            Filter::Compare { value: CompValue::String(ref s), .. } if s == "a\\\"b"
        ));
    }

    #[test]
    fn scim_errors_are_described_by_type_and_detail() {
        let body = r#"{"schemas":["urn:ietf:params:scim:api:messages:2.0:Error"],"status":"409","scimType":"uniqueness","detail":"userName is taken"}"#;
        assert_eq!(describe(body), "uniqueness: userName is taken");
        assert_eq!(describe("plain text"), "plain text");
        let error = rejected(format!(
            "x: HTTP 400: {}",
            describe(r#"{"scimType":"noTarget","detail":"d"}"#)
        ));
        assert!(is_scim_type(&error, "noTarget"));
        assert!(!is_scim_type(&error, "uniqueness"));
    }

    #[test]
    fn the_token_stays_out_of_debug() {
        let client = ScimClient::new(
            Url::parse("https://app.example.com/scim/v2").unwrap(),
            Secret::new("very-secret-token"),
        )
        .unwrap();
        assert!(!format!("{client:?}").contains("very-secret-token"));
    }

    #[test]
    fn bad_settings_are_configuration_errors() {
        let url = Url::parse("https://app.example.com/scim/v2").unwrap();
        assert!(ScimClient::new(url.clone(), Secret::new(" ")).is_err());
        let options = ScimOptions {
            page_size: 0,
            ..ScimOptions::default()
        };
        let err = ScimClient::with_options(url, Secret::new("t"), options, Arc::new(SystemClock))
            .unwrap_err();
        assert!(matches!(err, ConnectorError::Config { .. }), "{err:?}");
        let err =
            ScimClient::new(Url::parse("ftp://x/scim").unwrap(), Secret::new("t")).unwrap_err();
        assert!(matches!(err, ConnectorError::Config { .. }), "{err:?}");
    }
}
