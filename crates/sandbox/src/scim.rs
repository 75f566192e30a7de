//! A generic SCIM 2.0 application: what a SaaS product that accepts SCIM
//! provisioning (from Microsoft Entra ID, Okta or Gatehouse's own SCIM
//! client) looks like on the wire.
//!
//! The protocol is `gatehouse-scim`'s ([`Service`] over a
//! [`MemoryBackend`]); this module adds HTTP, a bearer token, counters and
//! the fault knobs of the [`Harness`]. Under `/scim/v2`:
//! - every request needs `Authorization: Bearer <token>` (the token given
//!   to [`ScimAppEmulator::start`]); a missing or wrong one is `401` with a
//!   SCIM error body and `WWW-Authenticate: Bearer`.
//! - `GET /Users|/Groups?filter=&startIndex=&count=&sortBy=&sortOrder=
//!   &attributes=&excludedAttributes=` answers a `ListResponse`;
//!   `POST /Users/.search|/Groups/.search` takes a `SearchRequest`.
//! - `POST /Users|/Groups` answers `201` with `Location` and `ETag`; a
//!   taken `userName` is `409 uniqueness`.
//! - `GET|PUT|PATCH /Users/{id}` (and `/Groups/{id}`) answer `200` with the
//!   resource and its `ETag`; `If-Match` is honoured (`412`), and a `GET`
//!   whose `If-None-Match` names the current version is `304`. PATCH takes
//!   what Entra sends (`"Replace"`, `"False"`, no-path values).
//! - `DELETE /Users/{id}` answers `204`, then the resource is `404`.
//! - `GET /ServiceProviderConfig`, `/ResourceTypes[/{id}]`,
//!   `/Schemas[/{id}]`.
//!
//! A user's read-only `groups` is computed on every read from the groups'
//! `members` (as Gatehouse's own SCIM store does), and left out when the
//! user is in no group.
//!
//! Answers are `application/scim+json`; errors are RFC 7644 §3.12 bodies
//! (except the harness's fault answers, which are the harness's). Creates
//! honour `Idempotency-Key` through the [`Harness`]. Counters:
//! `auth.refused`, `users.created`, `users.updated`, `users.deleted`,
//! `groups.created`, `groups.updated`, `groups.deleted`. An update is
//! counted only when the resource changed (a PATCH or PUT that changes
//! nothing keeps the version and is not counted).

use std::collections::{BTreeSet, HashMap, HashSet};
use std::fmt;
use std::future::Future;
use std::pin::pin;
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll, Waker};
use std::time::Instant;

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use gatehouse_scim::backend::{MemoryBackend, ScimBackend, Service, Stored};
use gatehouse_scim::list::MAX_RESULTS;
use gatehouse_scim::meta::etag_list_matches;
use gatehouse_scim::schema::documents::{
    ServiceProviderConfig, find_resource_type_document, find_schema_document, resource_types_list,
    schemas_list,
};
use gatehouse_scim::{Filter, UniqueKey};
use gatehouse_scim::{ListQuery, Projection, ResourceType, ScimError};
use serde_json::Value;
use time::OffsetDateTime;

use crate::emulator::{Harness, Served, serve};

/// The path under which the SCIM endpoints are served.
pub const SCIM_BASE: &str = "/scim/v2";

/// The SCIM media type (RFC 7644 §3.1).
pub const SCIM_JSON: &str = "application/scim+json";

struct Shared {
    harness: Harness,
    token: String,
    backend: Memberships,
    /// `http://127.0.0.1:PORT/scim/v2`, known once the listener is bound.
    base_url: OnceLock<String>,
}

impl Shared {
    fn service(&self) -> Service<&Memberships> {
        let base = self.base_url.get().map_or(SCIM_BASE, String::as_str);
        Service::new(&self.backend, base, MAX_RESULTS)
    }
}

/// Handle to a running SCIM 2.0 application; dropping it stops the server.
pub struct ScimAppEmulator {
    shared: Arc<Shared>,
    served: Served,
}

impl fmt::Debug for ScimAppEmulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ScimAppEmulator")
            .field("addr", &self.served.addr())
            .finish_non_exhaustive()
    }
}

impl ScimAppEmulator {
    /// Starts on loopback, accepting `Authorization: Bearer {token}`.
    pub async fn start(token: &str) -> std::io::Result<Self> {
        let harness = Harness::new();
        let shared = Arc::new(Shared {
            harness: harness.clone(),
            token: token.to_owned(),
            backend: Memberships::new(MemoryBackend::new(synthetic_clock())),
            base_url: OnceLock::new(),
        });
        let resources = Router::new()
            .route("/Users", get(list).post(create))
            .route("/Users/.search", post(search))
            .route(
                "/Users/{id}",
                get(read).put(replace).patch(patch).delete(remove),
            )
            .route("/Groups", get(list).post(create))
            .route("/Groups/.search", post(search))
            .route(
                "/Groups/{id}",
                get(read).put(replace).patch(patch).delete(remove),
            )
            .route("/ServiceProviderConfig", get(service_provider_config))
            .route("/ResourceTypes", get(resource_types))
            .route("/ResourceTypes/{id}", get(resource_type))
            .route("/Schemas", get(schemas))
            .route("/Schemas/{id}", get(schema))
            .fallback(unknown);
        let router = Router::new()
            .nest(SCIM_BASE, resources)
            .fallback(unknown)
            .with_state(Arc::clone(&shared));
        let served = serve("scim", router, &harness, None).await?;
        let _ = shared.base_url.set(format!("{}{SCIM_BASE}", served.url()));
        Ok(Self { shared, served })
    }

    /// Root URL of the instance, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.served.url()
    }

    /// The SCIM base URL a client is configured with (Entra's "Tenant
    /// URL"): `http://127.0.0.1:PORT/scim/v2`.
    pub fn scim_url(&self) -> String {
        format!("{}{SCIM_BASE}", self.served.url())
    }

    /// The fault knobs and counters.
    pub fn harness(&self) -> &Harness {
        &self.shared.harness
    }

    /// Seeds a user from a SCIM User body (not counted as `users.created`):
    /// the rendered user, or why the body was refused.
    pub fn seed_user(&self, body: &Value) -> Result<Value, ScimError> {
        now(self
            .shared
            .service()
            .create(ResourceType::user(), body, &Projection::default()))
    }

    /// Seeds a group from a SCIM Group body (not counted).
    pub fn seed_group(&self, body: &Value) -> Result<Value, ScimError> {
        now(self
            .shared
            .service()
            .create(ResourceType::group(), body, &Projection::default()))
    }

    /// Every user, rendered as the API returns them, in id order.
    pub fn users(&self) -> Vec<Value> {
        self.all(ResourceType::user())
    }

    /// Every group, rendered, in id order.
    pub fn groups(&self) -> Vec<Value> {
        self.all(ResourceType::group())
    }

    /// The user with this `userName` (compared ignoring case, as SCIM does).
    pub fn user_by_name(&self, user_name: &str) -> Option<Value> {
        self.users().into_iter().find(|u| {
            u.get("userName")
                .and_then(Value::as_str)
                .is_some_and(|n| n.eq_ignore_ascii_case(user_name))
        })
    }

    /// How many users there are.
    pub fn user_count(&self) -> usize {
        self.users().len()
    }

    /// How many groups there are.
    pub fn group_count(&self) -> usize {
        self.groups().len()
    }

    fn all(&self, rt: &ResourceType) -> Vec<Value> {
        let service = self.shared.service();
        now(self.shared.backend.candidates(rt, None))
            .map(|stored| stored.iter().map(|s| service.render(rt, s)).collect())
            .unwrap_or_default()
    }

    /// Stops the server and waits for it.
    pub async fn shutdown(self) {
        self.served.shutdown().await;
    }
}

/// The in-memory store, with a user's read-only `groups` computed from the
/// groups' `members` whenever a user is read, and never stored.
///
/// An application holding tens of thousands of users answers a lookup by
/// `userName`, `externalId` or `displayName` without scanning them all,
/// as a real one would: an index of those values, and of each user's
/// groups, is kept beside the store.
struct Memberships {
    store: MemoryBackend,
    index: std::sync::Mutex<Index>,
}

/// What the emulator finds without scanning: the ids behind each value of
/// an indexed attribute, each user's groups, and (so that a write touches
/// only what it changed) what was indexed for each resource.
#[derive(Debug, Default)]
struct Index {
    /// (resource type, attribute, lowercased value) → ids.
    by_value: HashMap<(String, &'static str, String), BTreeSet<String>>,
    /// (resource type, id) → its indexed values, as `by_value` holds them.
    values: HashMap<(String, String), Vec<(&'static str, String)>>,
    /// user id → the ids of the groups it is a member of.
    member_of: HashMap<String, BTreeSet<String>>,
    /// group id → its members' ids.
    members: HashMap<String, HashSet<String>>,
    /// group id → its display name.
    group_names: HashMap<String, Value>,
}

/// The attributes an equality filter can find through the index.
const INDEXED: [&str; 3] = ["userName", "externalId", "displayName"];

fn indexed_values(attributes: &Value) -> Vec<(&'static str, String)> {
    INDEXED
        .iter()
        .filter_map(|a| {
            attributes
                .get(*a)
                .and_then(Value::as_str)
                .map(|v| (*a, v.to_lowercase()))
        })
        .collect()
}

fn member_value(member: &Value) -> Option<&str> {
    member.get("value").and_then(Value::as_str)
}

fn member_values(attributes: &Value) -> impl Iterator<Item = &str> {
    attributes
        .get("members")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(member_value)
}

impl Index {
    /// Indexes `stored` (new, or written again), touching only what
    /// changed since it was last indexed: removing one member from a group
    /// of 10,000 is one update, not 20,000.
    fn put(&mut self, rt: &ResourceType, stored: &Stored) {
        let key = (rt.id.clone(), stored.id.clone());
        let values = indexed_values(&stored.attributes);
        let old = self.values.get(&key).cloned().unwrap_or_default();
        if old != values {
            self.unindex_values(rt, &stored.id, &old);
            for (attribute, value) in &values {
                self.by_value
                    .entry((rt.id.clone(), attribute, value.clone()))
                    .or_default()
                    .insert(stored.id.clone());
            }
            self.values.insert(key, values);
        }
        if rt.id != ResourceType::group().id {
            return;
        }
        let now: HashSet<&str> = member_values(&stored.attributes).collect();
        let held = self.members.entry(stored.id.clone()).or_default();
        let gone: Vec<String> = held
            .iter()
            .filter(|m| !now.contains(m.as_str()))
            .cloned()
            .collect();
        let added: Vec<String> = now
            .iter()
            .filter(|m| !held.contains(**m))
            .map(|m| (*m).to_owned())
            .collect();
        for member in gone {
            held.remove(&member);
            if let Some(groups) = self.member_of.get_mut(&member) {
                groups.remove(&stored.id);
            }
        }
        for member in added {
            held.insert(member.clone());
            self.member_of
                .entry(member)
                .or_default()
                .insert(stored.id.clone());
        }
        self.group_names.insert(
            stored.id.clone(),
            stored
                .attributes
                .get("displayName")
                .cloned()
                .unwrap_or(Value::Null),
        );
    }

    /// Takes `members` out of `group` (applied in place by
    /// [`remove_members`]).
    fn leave(&mut self, group: &str, members: &[String]) {
        for member in members {
            if let Some(held) = self.members.get_mut(group) {
                held.remove(member);
            }
            if let Some(groups) = self.member_of.get_mut(member) {
                groups.remove(group);
            }
        }
    }

    /// Forgets a deleted resource.
    fn remove(&mut self, rt: &ResourceType, id: &str) {
        if let Some(old) = self.values.remove(&(rt.id.clone(), id.to_owned())) {
            self.unindex_values(rt, id, &old);
        }
        if let Some(members) = self.members.remove(id) {
            for member in members {
                if let Some(groups) = self.member_of.get_mut(&member) {
                    groups.remove(id);
                }
            }
        }
        self.group_names.remove(id);
    }

    fn unindex_values(&mut self, rt: &ResourceType, id: &str, values: &[(&'static str, String)]) {
        for (attribute, value) in values {
            if let Some(ids) = self
                .by_value
                .get_mut(&(rt.id.clone(), attribute, value.clone()))
            {
                ids.remove(id);
            }
        }
    }

    /// The ids an equality on an indexed attribute (alone, or as one
    /// operand of an `and`) narrows `filter` to.
    fn narrow(&self, rt: &ResourceType, filter: &Filter) -> Option<BTreeSet<String>> {
        use gatehouse_scim::filter::{CompValue, CompareOp};
        match filter {
            Filter::Compare {
                path,
                op: CompareOp::Eq,
                value: CompValue::String(value),
            } if path.sub_attr.is_none() => {
                let attribute = INDEXED
                    .iter()
                    .find(|a| a.eq_ignore_ascii_case(&path.name))?;
                Some(
                    self.by_value
                        .get(&(rt.id.clone(), attribute, value.to_lowercase()))
                        .cloned()
                        .unwrap_or_default(),
                )
            }
            Filter::And(items) => items.iter().find_map(|f| self.narrow(rt, f)),
            _ => None,
        }
    }
}

impl Memberships {
    fn new(store: MemoryBackend) -> Self {
        Self {
            store,
            index: std::sync::Mutex::new(Index::default()),
        }
    }

    fn index(&self) -> Result<std::sync::MutexGuard<'_, Index>, ScimError> {
        self.index
            .lock()
            .map_err(|_| ScimError::new(500, None, "the in-memory index is unavailable"))
    }

    /// `stored` with its `groups`, if it is a user in any group.
    fn with_groups(&self, rt: &ResourceType, mut stored: Stored) -> Result<Stored, ScimError> {
        if rt.id != ResourceType::user().id {
            return Ok(stored);
        }
        let groups: Vec<Value> = {
            let index = self.index()?;
            index
                .member_of
                .get(&stored.id)
                .map(|groups| {
                    groups
                        .iter()
                        .map(|g| {
                            serde_json::json!({
                                "value": g,
                                "display": index.group_names.get(g),
                                "type": "direct",
                            })
                        })
                        .collect()
                })
                .unwrap_or_default()
        };
        if let Some(obj) = stored.attributes.as_object_mut() {
            obj.remove("groups");
            if !groups.is_empty() {
                obj.insert("groups".into(), Value::Array(groups));
            }
        }
        Ok(stored)
    }
}

/// A user's `groups` is never stored: it is computed when read.
fn without_groups(mut attributes: Value) -> Value {
    if let Some(obj) = attributes.as_object_mut() {
        obj.remove("groups");
    }
    attributes
}

impl ScimBackend for Memberships {
    fn create(
        &self,
        rt: &ResourceType,
        attributes: Value,
        unique: Vec<UniqueKey>,
    ) -> impl Future<Output = Result<Stored, ScimError>> + Send {
        let stored = now(self.store.create(rt, without_groups(attributes), unique)).and_then(|s| {
            self.index()?.put(rt, &s);
            Ok(s)
        });
        std::future::ready(stored.and_then(|s| self.with_groups(rt, s)))
    }

    fn get(
        &self,
        rt: &ResourceType,
        id: &str,
    ) -> impl Future<Output = Result<Option<Stored>, ScimError>> + Send {
        let stored = now(self.store.get(rt, id));
        std::future::ready(stored.and_then(|s| s.map(|s| self.with_groups(rt, s)).transpose()))
    }

    fn replace(
        &self,
        rt: &ResourceType,
        id: &str,
        expected_version: u64,
        attributes: Value,
        unique: Vec<UniqueKey>,
    ) -> impl Future<Output = Result<Stored, ScimError>> + Send {
        let result = (|| {
            let after = now(self.store.replace(
                rt,
                id,
                expected_version,
                without_groups(attributes),
                unique,
            ))?;
            self.index()?.put(rt, &after);
            Ok(after)
        })();
        std::future::ready(result.and_then(|s| self.with_groups(rt, s)))
    }

    fn delete(
        &self,
        rt: &ResourceType,
        id: &str,
    ) -> impl Future<Output = Result<bool, ScimError>> + Send {
        let result = (|| {
            let deleted = now(self.store.delete(rt, id))?;
            if deleted {
                self.index()?.remove(rt, id);
            }
            Ok(deleted)
        })();
        std::future::ready(result)
    }

    fn candidates(
        &self,
        rt: &ResourceType,
        filter: Option<&Filter>,
    ) -> impl Future<Output = Result<Vec<Stored>, ScimError>> + Send {
        let narrowed = match filter {
            Some(filter) => self.index().map(|index| index.narrow(rt, filter)),
            None => Ok(None),
        };
        let stored = narrowed.and_then(|ids| match ids {
            Some(ids) => ids
                .iter()
                .filter_map(|id| now(self.store.get(rt, id)).transpose())
                .collect::<Result<Vec<_>, _>>(),
            None => now(self.store.candidates(rt, filter)),
        });
        std::future::ready(stored.and_then(|all| {
            all.into_iter()
                .map(|s| self.with_groups(rt, s))
                .collect::<Result<Vec<_>, _>>()
        }))
    }
}

/// `meta.created` / `meta.lastModified` come from a synthetic clock (a
/// fixed 2026-01-01 epoch plus time since start), as in
/// [`crate::vault_transit`]: the workspace reads the wall clock only through
/// `gatehouse_core::clock`, and nothing relies on these values being true.
fn synthetic_clock() -> impl Fn() -> OffsetDateTime + Send + Sync + 'static {
    const EPOCH: OffsetDateTime = time::macros::datetime!(2026-01-01 0:00 UTC);
    let started = Instant::now();
    move || EPOCH + started.elapsed()
}

/// Runs a future of the in-memory backend, which is always ready at once
/// (`MemoryBackend` answers with `std::future::ready`, and `Service` awaits
/// nothing else), so seeding helpers and idempotent creates stay
/// synchronous. A future that is not ready is reported as a 500, never
/// blocked on.
fn now<T>(future: impl Future<Output = Result<T, ScimError>>) -> Result<T, ScimError> {
    let mut cx = Context::from_waker(Waker::noop());
    match pin!(future).poll(&mut cx) {
        Poll::Ready(result) => result,
        Poll::Pending => Err(ScimError::new(
            500,
            None,
            "the in-memory store did not answer at once",
        )),
    }
}

/// `User` or `Group`, from the request path.
fn rt_of(path: &str) -> &'static ResourceType {
    if path.contains("/Groups") {
        ResourceType::group()
    } else {
        ResourceType::user()
    }
}

fn counter(rt: &ResourceType, what: &str) -> String {
    let kind = if rt.id == ResourceType::group().id {
        "groups"
    } else {
        "users"
    };
    format!("{kind}.{what}")
}

/// A SCIM JSON answer.
fn scim(status: StatusCode, body: &Value) -> Response {
    let mut response = (status, body.to_string()).into_response();
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(SCIM_JSON));
    response
}

/// A resource answer, with its `ETag` (and `Location` when created).
fn resource(status: StatusCode, body: &Value) -> Response {
    let mut response = scim(status, body);
    let meta = body.get("meta");
    let headers = response.headers_mut();
    if let Some(etag) = meta
        .and_then(|m| m.get("version"))
        .and_then(Value::as_str)
        .and_then(|v| HeaderValue::from_str(v).ok())
    {
        headers.insert(header::ETAG, etag);
    }
    if status == StatusCode::CREATED
        && let Some(location) = meta
            .and_then(|m| m.get("location"))
            .and_then(Value::as_str)
            .and_then(|v| HeaderValue::from_str(v).ok())
    {
        headers.insert(header::LOCATION, location);
    }
    response
}

/// A SCIM error answer.
fn failure(e: &ScimError) -> Response {
    let status = StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    scim(status, &e.to_json())
}

/// `Ok` if the request carries the bearer token, else the `401` answer.
fn authorize(shared: &Shared, headers: &HeaderMap) -> Result<(), Box<Response>> {
    let presented = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.split_once(' ')
                .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        })
        .map(|(_, token)| token.trim());
    if presented.is_some_and(|t| constant_time_eq(t.as_bytes(), shared.token.as_bytes())) {
        return Ok(());
    }
    shared.harness.count("auth.refused");
    let mut response = failure(&ScimError::new(
        401,
        None,
        "a valid bearer token is required",
    ));
    response
        .headers_mut()
        .insert(header::WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
    Err(Box::new(response))
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn json_body(body: &[u8]) -> Result<Value, ScimError> {
    serde_json::from_slice(body)
        .map_err(|e| ScimError::invalid_syntax(format!("the body is not valid JSON: {e}")))
}

fn projection(query: &[(String, String)]) -> Result<Projection, ScimError> {
    let find = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    Projection::parse(find("attributes"), find("excludedAttributes"))
}

fn header_text(headers: &HeaderMap, name: header::HeaderName) -> Option<&str> {
    headers.get(name).and_then(|v| v.to_str().ok())
}

/// The current version of a resource, if it exists.
fn version_of(shared: &Shared, rt: &ResourceType, id: &str) -> Option<u64> {
    shared.backend.store.version(rt, id).ok().flatten()
}

async fn list(
    State(shared): State<Arc<Shared>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    if let Err(refused) = authorize(&shared, &headers) {
        return *refused;
    }
    let rt = rt_of(uri.path());
    let parsed = ListQuery::from_query_pairs(query.iter().map(|(k, v)| (k.as_str(), v.as_str())));
    let answer = match parsed {
        Ok(q) => shared.service().list(rt, &q).await,
        Err(e) => Err(e),
    };
    match answer {
        Ok(page) => scim(StatusCode::OK, &page.to_json()),
        Err(e) => failure(&e),
    }
}

async fn search(
    State(shared): State<Arc<Shared>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(refused) = authorize(&shared, &headers) {
        return *refused;
    }
    let rt = rt_of(uri.path());
    let answer = match json_body(&body).and_then(|b| ListQuery::from_search_request(&b)) {
        Ok(q) => shared.service().list(rt, &q).await,
        Err(e) => Err(e),
    };
    match answer {
        Ok(page) => scim(StatusCode::OK, &page.to_json()),
        Err(e) => failure(&e),
    }
}

async fn create(
    State(shared): State<Arc<Shared>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    Query(query): Query<Vec<(String, String)>>,
    body: Bytes,
) -> Response {
    if let Err(refused) = authorize(&shared, &headers) {
        return *refused;
    }
    let rt = rt_of(uri.path());
    let answer = shared.harness.idempotent(&headers, || {
        let created = json_body(&body).and_then(|body| {
            let projection = projection(&query)?;
            now(shared.service().create(rt, &body, &projection))
        });
        match created {
            Ok(resource) => {
                shared.harness.count(&counter(rt, "created"));
                (StatusCode::CREATED, resource)
            }
            Err(e) => (
                StatusCode::from_u16(e.status()).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR),
                e.to_json(),
            ),
        }
    });
    // The harness answers plain JSON; give it SCIM's headers (a replay
    // gets the same ones, since they come from the stored body).
    let status = answer.status();
    match axum::body::to_bytes(answer.into_body(), usize::MAX).await {
        Ok(bytes) => match serde_json::from_slice::<Value>(&bytes) {
            Ok(body) => resource(status, &body),
            Err(_) => failure(&ScimError::new(500, None, "unreadable stored answer")),
        },
        Err(_) => failure(&ScimError::new(500, None, "unreadable stored answer")),
    }
}

async fn read(
    State(shared): State<Arc<Shared>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
) -> Response {
    if let Err(refused) = authorize(&shared, &headers) {
        return *refused;
    }
    let rt = rt_of(uri.path());
    if let (Some(tags), Some(version)) = (
        header_text(&headers, header::IF_NONE_MATCH),
        version_of(&shared, rt, &id),
    ) && etag_list_matches(tags, version)
    {
        let mut response = StatusCode::NOT_MODIFIED.into_response();
        if let Ok(etag) = HeaderValue::from_str(&gatehouse_scim::meta::weak_etag(version)) {
            response.headers_mut().insert(header::ETAG, etag);
        }
        return response;
    }
    let answer = match projection(&query) {
        Ok(p) => shared.service().get(rt, &id, &p).await,
        Err(e) => Err(e),
    };
    match answer {
        Ok(body) => resource(StatusCode::OK, &body),
        Err(e) => failure(&e),
    }
}

/// PUT and PATCH: the write, then `.updated` counted if the version moved.
async fn write(
    shared: &Shared,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    id: &str,
    query: &[(String, String)],
    body: &[u8],
    is_patch: bool,
) -> Response {
    if let Err(refused) = authorize(shared, headers) {
        return *refused;
    }
    let rt = rt_of(uri.path());
    let before = version_of(shared, rt, id);
    let if_match = header_text(headers, header::IF_MATCH);
    if is_patch && let Some(answer) = remove_members(shared, rt, id, query, body, if_match) {
        return match answer {
            Ok(resource_body) => {
                shared.harness.count(&counter(rt, "updated"));
                resource(StatusCode::OK, &resource_body)
            }
            Err(e) => failure(&e),
        };
    }
    let answer = match (json_body(body), projection(query)) {
        (Err(e), _) | (_, Err(e)) => Err(e),
        (Ok(body), Ok(p)) => {
            let service = shared.service();
            if is_patch {
                service.patch(rt, id, &body, if_match, &p).await
            } else {
                service.replace(rt, id, &body, if_match, &p).await
            }
        }
    };
    match answer {
        Ok(resource_body) => {
            if version_of(shared, rt, id) != before {
                shared.harness.count(&counter(rt, "updated"));
            }
            resource(StatusCode::OK, &resource_body)
        }
        Err(e) => failure(&e),
    }
}

/// A PATCH that only takes members out of a group (`remove` with the
/// path `members[value eq "…"]`), answered without members
/// (`excludedAttributes=members`), as a directory removes a leaver: applied
/// in place, as an application's membership table would, instead of
/// copying, patching and validating a group of 10,000 members (which would
/// make the emulator, not Gatehouse, the cost of `bench revocation`).
/// `None` when the request is anything else: the general path serves it.
fn remove_members(
    shared: &Shared,
    rt: &ResourceType,
    id: &str,
    query: &[(String, String)],
    body: &[u8],
    if_match: Option<&str>,
) -> Option<Result<Value, ScimError>> {
    use gatehouse_scim::filter::{CompValue, CompareOp};
    use gatehouse_scim::patch::{PatchOp, PatchRequest};
    if rt.id != ResourceType::group().id {
        return None;
    }
    let param = |name: &str| {
        query
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    };
    let members_left_out = param("excludedAttributes").is_some_and(|list| {
        list.split(',')
            .any(|a| a.trim().eq_ignore_ascii_case("members"))
    });
    if !members_left_out || param("attributes").is_some() {
        return None;
    }
    let request = PatchRequest::from_json(&json_body(body).ok()?).ok()?;
    let mut gone: Vec<String> = Vec::new();
    for op in &request.operations {
        let path = op.path.as_ref()?;
        let (
            PatchOp::Remove,
            None,
            Some(Filter::Compare {
                path: on,
                op: CompareOp::Eq,
                value: CompValue::String(value),
            }),
        ) = (op.op, &path.sub_attr, &path.filter)
        else {
            return None;
        };
        if !path.attr.name.eq_ignore_ascii_case("members")
            || path.attr.uri.is_some()
            || !on.name.eq_ignore_ascii_case("value")
            || on.sub_attr.is_some()
        {
            return None;
        }
        gone.push(value.clone());
    }
    let edited = shared.backend.store.edit_in_place(
        rt,
        id,
        if_match,
        |attributes| {
            let Some(Value::Array(members)) = attributes.get_mut("members") else {
                return Err(ScimError::no_target(format!(
                    "no value of \"members\" matches \"members[value eq \"{}\"]\"",
                    gone.first().map_or("", String::as_str)
                )));
            };
            // All or nothing, as the general path: every operation must
            // find its member before any is taken out.
            if let Some(missing) = gone
                .iter()
                .find(|g| !members.iter().any(|m| member_value(m) == Some(g.as_str())))
            {
                return Err(ScimError::no_target(format!(
                    "no value of \"members\" matches \"members[value eq \"{missing}\"]\""
                )));
            }
            members.retain(|m| member_value(m).is_none_or(|v| !gone.iter().any(|g| g == v)));
            if members.is_empty() {
                attributes.remove("members");
            }
            Ok(true)
        },
        "members",
    );
    Some(edited.map(|stored| {
        if let Ok(mut index) = shared.backend.index() {
            index.leave(&stored.id, &gone);
        }
        let service = shared.service();
        let rendered = service.render(rt, &stored);
        match projection(query) {
            Ok(p) => p.apply(rt, &rendered),
            Err(_) => rendered,
        }
    }))
}

async fn replace(
    State(shared): State<Arc<Shared>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
    body: Bytes,
) -> Response {
    write(&shared, &uri, &headers, &id, &query, &body, false).await
}

async fn patch(
    State(shared): State<Arc<Shared>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
    Query(query): Query<Vec<(String, String)>>,
    body: Bytes,
) -> Response {
    write(&shared, &uri, &headers, &id, &query, &body, true).await
}

async fn remove(
    State(shared): State<Arc<Shared>>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(refused) = authorize(&shared, &headers) {
        return *refused;
    }
    let rt = rt_of(uri.path());
    let if_match = header_text(&headers, header::IF_MATCH);
    match shared.service().delete(rt, &id, if_match).await {
        Ok(()) => {
            shared.harness.count(&counter(rt, "deleted"));
            StatusCode::NO_CONTENT.into_response()
        }
        Err(e) => failure(&e),
    }
}

fn base(shared: &Shared) -> &str {
    shared.base_url.get().map_or(SCIM_BASE, String::as_str)
}

async fn service_provider_config(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
) -> Response {
    if let Err(refused) = authorize(&shared, &headers) {
        return *refused;
    }
    let config = ServiceProviderConfig::default();
    scim(StatusCode::OK, &config.to_json(base(&shared)))
}

async fn resource_types(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Err(refused) = authorize(&shared, &headers) {
        return *refused;
    }
    scim(
        StatusCode::OK,
        &resource_types_list(base(&shared)).to_json(),
    )
}

async fn resource_type(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(refused) = authorize(&shared, &headers) {
        return *refused;
    }
    match find_resource_type_document(&id, base(&shared)) {
        Some(doc) => scim(StatusCode::OK, &doc),
        None => failure(&ScimError::not_found(format!("no resource type {id}"))),
    }
}

async fn schemas(State(shared): State<Arc<Shared>>, headers: HeaderMap) -> Response {
    if let Err(refused) = authorize(&shared, &headers) {
        return *refused;
    }
    scim(StatusCode::OK, &schemas_list(base(&shared)).to_json())
}

async fn schema(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Response {
    if let Err(refused) = authorize(&shared, &headers) {
        return *refused;
    }
    match find_schema_document(&id, base(&shared)) {
        Some(doc) => scim(StatusCode::OK, &doc),
        None => failure(&ScimError::not_found(format!("no schema {id}"))),
    }
}

async fn unknown(uri: axum::http::Uri) -> Response {
    failure(&ScimError::not_found(format!(
        "no SCIM endpoint at {}",
        uri.path()
    )))
}
