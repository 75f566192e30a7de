//! An IT Glue emulator: organizations, documents and passwords over
//! JSON:API, as Gatehouse uses them to open a client's documentation.
//!
//! Wire shapes follow IT Glue's developer documentation:
//! - every request carries `x-api-key`; a missing or unknown key is `401`.
//!   A key either has *Password Access* or not ([`ItGlueEmulator::add_key`]).
//! - bodies and answers are `application/vnd.api+json`:
//!   `{"data":{"type":"organizations","attributes":{…}}}`; answers use
//!   dashed attribute names (`organization-id`); requests may use dashes or
//!   underscores. Errors are `{"errors":[{"status","title","detail"}]}`.
//! - `GET /organizations?filter[name]=&page[size]=&page[number]=` (pages from
//!   1, `meta` with `current-page`, `next-page`, `total-pages`,
//!   `total-count`); `filter[name]` matches the whole name, ignoring case.
//! - `POST /organizations`; `GET /organizations/{id}`.
//! - `DELETE /organizations` is IT Glue's bulk destroy, body
//!   `{"data":[{"type":"organizations","attributes":{"id":…}}]}`; ids that
//!   are not there are skipped. It also removes the organization's
//!   documents and passwords.
//! - documents are nested under their organization:
//!   `GET|POST /organizations/{id}/relationships/documents` (attributes
//!   `name`, `content`), paged like organizations.
//! - `POST /passwords` (attributes `organization-id`, `name`, `username`,
//!   `password`) needs a key with Password Access (`403` otherwise), as
//!   does seeing the value: `GET /passwords/{id}` shows `password` only to
//!   such a key.
//!
//! Creates honour `Idempotency-Key` through the [`Harness`]. Counters:
//! `auth.refused`, `organizations.created`, `organizations.deleted`,
//! `documents.created`, `passwords.created`, `passwords.revealed`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Map, Value, json};

use crate::emulator::{Harness, Served, lock, serve};

/// The JSON:API media type IT Glue speaks.
pub const JSON_API: &str = "application/vnd.api+json";

/// Page size when a listing names none (IT Glue's default is 50).
const DEFAULT_PAGE_SIZE: usize = 50;

/// A password entry as the emulator holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItGluePassword {
    /// IT Glue's id.
    pub id: u64,
    /// The organization.
    pub organization_id: u64,
    /// Its name.
    pub name: String,
    /// The user name.
    pub username: String,
    /// The stored value.
    pub password: String,
}

#[derive(Debug, Clone)]
struct Organization {
    name: String,
    description: Option<String>,
}

#[derive(Debug, Clone)]
struct Document {
    organization_id: u64,
    name: String,
    content: String,
}

struct Store {
    /// API key → whether it has Password Access.
    keys: BTreeMap<String, bool>,
    organizations: BTreeMap<u64, Organization>,
    documents: BTreeMap<u64, Document>,
    passwords: BTreeMap<u64, ItGluePassword>,
    next_id: u64,
    max_page_size: usize,
}

struct Shared {
    harness: Harness,
    store: Mutex<Store>,
}

/// Handle to a running IT Glue emulator; dropping it stops the server.
pub struct ItGlueEmulator {
    shared: Arc<Shared>,
    served: Served,
}

impl fmt::Debug for ItGlueEmulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ItGlueEmulator")
            .field("addr", &self.served.addr())
            .finish_non_exhaustive()
    }
}

impl ItGlueEmulator {
    /// Starts on loopback with no API keys (see [`Self::add_key`]).
    pub async fn start() -> std::io::Result<Self> {
        let harness = Harness::new();
        let shared = Arc::new(Shared {
            harness: harness.clone(),
            store: Mutex::new(Store {
                keys: BTreeMap::new(),
                organizations: BTreeMap::new(),
                documents: BTreeMap::new(),
                passwords: BTreeMap::new(),
                next_id: 1,
                max_page_size: 1000,
            }),
        });
        let router = Router::new()
            .route(
                "/organizations",
                get(list_organizations)
                    .post(create_organization)
                    .delete(destroy_organizations),
            )
            .route("/organizations/{id}", get(get_organization))
            .route(
                "/organizations/{id}/relationships/documents",
                get(list_documents).post(create_document),
            )
            .route("/passwords", post(create_password))
            .route("/passwords/{id}", get(get_password))
            .with_state(Arc::clone(&shared));
        let served = serve("itglue", router, &harness, None).await?;
        Ok(Self { shared, served })
    }

    /// Base URL, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.served.url()
    }

    /// The fault knobs and counters.
    pub fn harness(&self) -> &Harness {
        &self.shared.harness
    }

    /// Accepts `key`, with or without Password Access.
    pub fn add_key(&self, key: &str, password_access: bool) {
        lock(&self.shared.store)
            .keys
            .insert(key.to_owned(), password_access);
    }

    /// Caps every page at `n` items (at least 1), whatever the caller asks.
    pub fn set_max_page_size(&self, n: usize) {
        lock(&self.shared.store).max_page_size = n.max(1);
    }

    /// Seeds an organization (not counted as `organizations.created`).
    pub fn add_organization(&self, name: &str) -> u64 {
        let mut store = lock(&self.shared.store);
        let id = store.next();
        store.organizations.insert(
            id,
            Organization {
                name: name.to_owned(),
                description: None,
            },
        );
        id
    }

    /// Every organization: id and name.
    pub fn organizations(&self) -> Vec<(u64, String)> {
        lock(&self.shared.store)
            .organizations
            .iter()
            .map(|(id, o)| (*id, o.name.clone()))
            .collect()
    }

    /// Every document: id, organization, name, content.
    pub fn documents(&self) -> Vec<(u64, u64, String, String)> {
        lock(&self.shared.store)
            .documents
            .iter()
            .map(|(id, d)| (*id, d.organization_id, d.name.clone(), d.content.clone()))
            .collect()
    }

    /// Every stored password entry, values included.
    pub fn passwords(&self) -> Vec<ItGluePassword> {
        lock(&self.shared.store)
            .passwords
            .values()
            .cloned()
            .collect()
    }

    /// Stops the server and waits for it.
    pub async fn shutdown(self) {
        self.served.shutdown().await;
    }
}

impl Store {
    fn next(&mut self) -> u64 {
        let id = self.next_id;
        self.next_id += 1;
        id
    }
}

/// A JSON:API error answer.
fn errors(status: StatusCode, detail: &str) -> Response {
    json_api(status, errors_body(status, detail))
}

fn errors_body(status: StatusCode, detail: &str) -> Value {
    json!({ "errors": [{
        "status": status.as_str(),
        "title": status.canonical_reason().unwrap_or("Error"),
        "detail": detail,
    }]})
}

fn json_api(status: StatusCode, body: Value) -> Response {
    with_json_api((status, Json(body)).into_response())
}

fn with_json_api(mut response: Response) -> Response {
    response
        .headers_mut()
        .insert(header::CONTENT_TYPE, HeaderValue::from_static(JSON_API));
    response
}

/// The caller's key and whether it has Password Access, or a `401` answer.
fn authorize(shared: &Shared, headers: &HeaderMap) -> Result<bool, Box<Response>> {
    let key = headers.get("x-api-key").and_then(|v| v.to_str().ok());
    let access = key.and_then(|k| lock(&shared.store).keys.get(k).copied());
    access.ok_or_else(|| {
        shared.harness.count("auth.refused");
        Box::new(errors(
            StatusCode::UNAUTHORIZED,
            "invalid or missing x-api-key",
        ))
    })
}

/// The `attributes` of a `{"data":{"type":…,"attributes":{…}}}` body, with
/// underscores in names turned into dashes.
fn attributes(body: &[u8], kind: &str) -> Result<Map<String, Value>, String> {
    let value: Value =
        serde_json::from_slice(body).map_err(|_| "the body is not JSON".to_owned())?;
    let data = value.get("data").ok_or("the body has no data")?;
    if data.get("type").and_then(Value::as_str) != Some(kind) {
        return Err(format!("data.type must be {kind}"));
    }
    let attributes = data
        .get("attributes")
        .and_then(Value::as_object)
        .ok_or("data.attributes is required")?;
    Ok(attributes
        .iter()
        .map(|(k, v)| (k.replace('_', "-"), v.clone()))
        .collect())
}

fn text(attributes: &Map<String, Value>, name: &str) -> Option<String> {
    attributes
        .get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .map(str::to_owned)
}

fn organization_json(id: u64, org: &Organization) -> Value {
    json!({
        "id": id.to_string(),
        "type": "organizations",
        "attributes": {
            "name": org.name,
            "description": org.description,
            "organization-type-name": null,
            "organization-status-name": "Active",
        }
    })
}

fn document_json(id: u64, doc: &Document) -> Value {
    json!({
        "id": id.to_string(),
        "type": "documents",
        "attributes": {
            "organization-id": doc.organization_id,
            "name": doc.name,
            "content": doc.content,
            "published": true,
        }
    })
}

fn password_json(p: &ItGluePassword, reveal: bool) -> Value {
    let mut attributes = json!({
        "organization-id": p.organization_id,
        "name": p.name,
        "username": p.username,
    });
    if reveal {
        attributes["password"] = json!(p.password);
    }
    json!({ "id": p.id.to_string(), "type": "passwords", "attributes": attributes })
}

/// One page of `items` from JSON:API `page[size]` and `page[number]`.
fn paged(
    store: &Store,
    query: &HashMap<String, String>,
    items: Vec<Value>,
) -> Result<Value, Box<Response>> {
    let number = |name: &str, default: usize| -> Result<usize, Box<Response>> {
        match query.get(name) {
            None => Ok(default),
            Some(v) => v.parse::<usize>().ok().filter(|n| *n > 0).ok_or_else(|| {
                Box::new(errors(
                    StatusCode::BAD_REQUEST,
                    "page values are positive numbers",
                ))
            }),
        }
    };
    let size = number("page[size]", DEFAULT_PAGE_SIZE)?.min(store.max_page_size);
    let page = number("page[number]", 1)?;
    let total = items.len();
    let pages = total.div_ceil(size).max(1);
    let data: Vec<Value> = items
        .into_iter()
        .skip((page - 1).saturating_mul(size))
        .take(size)
        .collect();
    Ok(json!({
        "data": data,
        "meta": {
            "current-page": page,
            "next-page": (page < pages).then(|| page + 1),
            "prev-page": (page > 1).then(|| page - 1),
            "total-pages": pages,
            "total-count": total,
            "filters": {},
        },
    }))
}

async fn list_organizations(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Err(refused) = authorize(&shared, &headers) {
        return *refused;
    }
    let store = lock(&shared.store);
    let wanted = query.get("filter[name]").map(|n| n.to_lowercase());
    let items: Vec<Value> = store
        .organizations
        .iter()
        .filter(|(_, o)| wanted.as_ref().is_none_or(|w| o.name.to_lowercase() == *w))
        .map(|(id, o)| organization_json(*id, o))
        .collect();
    match paged(&store, &query, items) {
        Ok(body) => json_api(StatusCode::OK, body),
        Err(refused) => *refused,
    }
}

async fn create_organization(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(refused) = authorize(&shared, &headers) {
        return *refused;
    }
    with_json_api(shared.harness.idempotent(&headers, || {
        let unprocessable = |m: &str| {
            (
                StatusCode::UNPROCESSABLE_ENTITY,
                errors_body(StatusCode::UNPROCESSABLE_ENTITY, m),
            )
        };
        let attributes = match attributes(&body, "organizations") {
            Ok(a) => a,
            Err(message) => return unprocessable(&message),
        };
        let Some(name) = text(&attributes, "name") else {
            return unprocessable("name can't be blank");
        };
        let org = Organization {
            name,
            description: text(&attributes, "description"),
        };
        let mut store = lock(&shared.store);
        let id = store.next();
        let answer = organization_json(id, &org);
        store.organizations.insert(id, org);
        shared.harness.count("organizations.created");
        (StatusCode::CREATED, json!({ "data": answer }))
    }))
}

async fn get_organization(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<u64>,
) -> Response {
    if let Err(refused) = authorize(&shared, &headers) {
        return *refused;
    }
    match lock(&shared.store).organizations.get(&id) {
        Some(org) => json_api(
            StatusCode::OK,
            json!({ "data": organization_json(id, org) }),
        ),
        None => errors(StatusCode::NOT_FOUND, "Record not found"),
    }
}

async fn destroy_organizations(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(refused) = authorize(&shared, &headers) {
        return *refused;
    }
    let items = serde_json::from_slice::<Value>(&body)
        .ok()
        .and_then(|v| v.get("data").and_then(Value::as_array).cloned());
    let Some(items) = items else {
        return errors(
            StatusCode::BAD_REQUEST,
            "data must be a list of organizations",
        );
    };
    let mut ids = Vec::new();
    for item in &items {
        let id = item.get("attributes").and_then(|a| a.get("id"));
        let id = id
            .and_then(Value::as_u64)
            .or_else(|| id.and_then(Value::as_str).and_then(|s| s.parse().ok()));
        match id {
            Some(id) if item.get("type").and_then(Value::as_str) == Some("organizations") => {
                ids.push(id);
            }
            _ => {
                return errors(
                    StatusCode::BAD_REQUEST,
                    "each item needs type organizations and attributes.id",
                );
            }
        }
    }
    let mut store = lock(&shared.store);
    let mut destroyed = Vec::new();
    for id in ids {
        if let Some(org) = store.organizations.remove(&id) {
            store.documents.retain(|_, d| d.organization_id != id);
            store.passwords.retain(|_, p| p.organization_id != id);
            shared.harness.count("organizations.deleted");
            destroyed.push(organization_json(id, &org));
        }
    }
    json_api(StatusCode::OK, json!({ "data": destroyed }))
}

async fn list_documents(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<u64>,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Err(refused) = authorize(&shared, &headers) {
        return *refused;
    }
    let store = lock(&shared.store);
    if !store.organizations.contains_key(&id) {
        return errors(StatusCode::NOT_FOUND, "Record not found");
    }
    let items: Vec<Value> = store
        .documents
        .iter()
        .filter(|(_, d)| d.organization_id == id)
        .map(|(did, d)| document_json(*did, d))
        .collect();
    match paged(&store, &query, items) {
        Ok(body) => json_api(StatusCode::OK, body),
        Err(refused) => *refused,
    }
}

async fn create_document(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<u64>,
    body: Bytes,
) -> Response {
    if let Err(refused) = authorize(&shared, &headers) {
        return *refused;
    }
    with_json_api(shared.harness.idempotent(&headers, || {
        let unprocessable = |status: StatusCode, m: &str| (status, errors_body(status, m));
        let attributes = match attributes(&body, "documents") {
            Ok(a) => a,
            Err(m) => return unprocessable(StatusCode::UNPROCESSABLE_ENTITY, &m),
        };
        let Some(name) = text(&attributes, "name") else {
            return unprocessable(StatusCode::UNPROCESSABLE_ENTITY, "name can't be blank");
        };
        let mut store = lock(&shared.store);
        if !store.organizations.contains_key(&id) {
            return unprocessable(StatusCode::NOT_FOUND, "Record not found");
        }
        let doc = Document {
            organization_id: id,
            name,
            content: text(&attributes, "content").unwrap_or_default(),
        };
        let did = store.next();
        let answer = document_json(did, &doc);
        store.documents.insert(did, doc);
        shared.harness.count("documents.created");
        (StatusCode::CREATED, json!({ "data": answer }))
    }))
}

async fn create_password(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match authorize(&shared, &headers) {
        Err(refused) => return *refused,
        Ok(false) => {
            return errors(
                StatusCode::FORBIDDEN,
                "this API key does not have password access",
            );
        }
        Ok(true) => {}
    }
    with_json_api(shared.harness.idempotent(&headers, || {
        let unprocessable = |status: StatusCode, m: &str| (status, errors_body(status, m));
        let attributes = match attributes(&body, "passwords") {
            Ok(a) => a,
            Err(m) => return unprocessable(StatusCode::UNPROCESSABLE_ENTITY, &m),
        };
        let organization_id = attributes.get("organization-id").and_then(|v| {
            v.as_u64()
                .or_else(|| v.as_str().and_then(|s| s.parse().ok()))
        });
        let (Some(organization_id), Some(name), Some(password)) = (
            organization_id,
            text(&attributes, "name"),
            attributes
                .get("password")
                .and_then(Value::as_str)
                .map(str::to_owned),
        ) else {
            return unprocessable(
                StatusCode::UNPROCESSABLE_ENTITY,
                "organization-id, name and password are required",
            );
        };
        let mut store = lock(&shared.store);
        if !store.organizations.contains_key(&organization_id) {
            return unprocessable(StatusCode::UNPROCESSABLE_ENTITY, "organization not found");
        }
        let id = store.next();
        let entry = ItGluePassword {
            id,
            organization_id,
            name,
            username: text(&attributes, "username").unwrap_or_default(),
            password,
        };
        let answer = password_json(&entry, false);
        store.passwords.insert(id, entry);
        shared.harness.count("passwords.created");
        (StatusCode::CREATED, json!({ "data": answer }))
    }))
}

async fn get_password(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<u64>,
) -> Response {
    let access = match authorize(&shared, &headers) {
        Ok(access) => access,
        Err(refused) => return *refused,
    };
    let store = lock(&shared.store);
    let Some(entry) = store.passwords.get(&id) else {
        return errors(StatusCode::NOT_FOUND, "Record not found");
    };
    if access {
        shared.harness.count("passwords.revealed");
    }
    json_api(
        StatusCode::OK,
        json!({ "data": password_json(entry, access) }),
    )
}
