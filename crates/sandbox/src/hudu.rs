//! A Hudu emulator: companies, articles and asset passwords, as Gatehouse
//! uses them to open a client's documentation.
//!
//! Wire shapes follow Hudu's API v1 and the public PowerShell module that
//! speaks it:
//! - every request carries `x-api-key`; a missing or unknown key is `401`.
//!   A key either has password access or not ([`HuduEmulator::add_key`]).
//! - `GET /api/v1/companies?name=&page=&page_size=` answers
//!   `{"companies":[…]}` (pages from 1, 25 a page by default; past the last
//!   page the list is empty); `name` matches the whole name, ignoring case
//!   (the looser reading of Hudu's filter, so clients must match exactly).
//! - `POST /api/v1/companies` with `{"company":{"name",…}}` answers
//!   `{"company":{…}}`; `GET|DELETE /api/v1/companies/{id}`.
//! - `GET /api/v1/articles?company_id=&page=&page_size=` answers
//!   `{"articles":[…]}`; `POST /api/v1/articles` with
//!   `{"article":{"name","content","company_id"}}`.
//! - `POST /api/v1/asset_passwords` with `{"asset_password":{"name",
//!   "company_id","username","password"}}` and
//!   `GET /api/v1/asset_passwords/{id}` need a key with password access
//!   (`403` otherwise).
//!
//! Creates honour `Idempotency-Key` through the [`Harness`]. Counters:
//! `auth.refused`, `companies.created`, `companies.deleted`,
//! `articles.created`, `passwords.created`, `passwords.revealed`.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde_json::{Map, Value, json};

use crate::emulator::{Harness, Served, error, lock, serve};

/// Page size when a listing names none (Hudu's default is 25).
const DEFAULT_PAGE_SIZE: usize = 25;

/// An asset password as the emulator holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HuduPassword {
    /// Hudu's id.
    pub id: u64,
    /// The company.
    pub company_id: u64,
    /// Its name.
    pub name: String,
    /// The user name.
    pub username: String,
    /// The stored value.
    pub password: String,
}

#[derive(Debug, Clone)]
struct Article {
    company_id: u64,
    name: String,
    content: String,
}

struct Store {
    /// API key → whether it has password access.
    keys: BTreeMap<String, bool>,
    companies: BTreeMap<u64, String>,
    articles: BTreeMap<u64, Article>,
    passwords: BTreeMap<u64, HuduPassword>,
    next_id: u64,
    max_page_size: usize,
}

struct Shared {
    harness: Harness,
    store: Mutex<Store>,
}

/// Handle to a running Hudu emulator; dropping it stops the server.
pub struct HuduEmulator {
    shared: Arc<Shared>,
    served: Served,
}

impl fmt::Debug for HuduEmulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HuduEmulator")
            .field("addr", &self.served.addr())
            .finish_non_exhaustive()
    }
}

impl HuduEmulator {
    /// Starts on loopback with no API keys (see [`Self::add_key`]).
    pub async fn start() -> std::io::Result<Self> {
        let harness = Harness::new();
        let shared = Arc::new(Shared {
            harness: harness.clone(),
            store: Mutex::new(Store {
                keys: BTreeMap::new(),
                companies: BTreeMap::new(),
                articles: BTreeMap::new(),
                passwords: BTreeMap::new(),
                next_id: 1,
                max_page_size: 1000,
            }),
        });
        let router = Router::new()
            .route(
                "/api/v1/companies",
                get(list_companies).post(create_company),
            )
            .route(
                "/api/v1/companies/{id}",
                get(get_company).delete(delete_company),
            )
            .route("/api/v1/articles", get(list_articles).post(create_article))
            .route("/api/v1/asset_passwords", post(create_password))
            .route("/api/v1/asset_passwords/{id}", get(get_password))
            .with_state(Arc::clone(&shared));
        let served = serve("hudu", router, &harness, None).await?;
        Ok(Self { shared, served })
    }

    /// Base URL of the instance, `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        self.served.url()
    }

    /// The fault knobs and counters.
    pub fn harness(&self) -> &Harness {
        &self.shared.harness
    }

    /// Accepts `key`, with or without password access.
    pub fn add_key(&self, key: &str, password_access: bool) {
        lock(&self.shared.store)
            .keys
            .insert(key.to_owned(), password_access);
    }

    /// Caps every page at `n` items (at least 1), whatever the caller asks.
    pub fn set_max_page_size(&self, n: usize) {
        lock(&self.shared.store).max_page_size = n.max(1);
    }

    /// Seeds a company (not counted as `companies.created`).
    pub fn add_company(&self, name: &str) -> u64 {
        let mut store = lock(&self.shared.store);
        let id = store.next();
        store.companies.insert(id, name.to_owned());
        id
    }

    /// Every company: id and name.
    pub fn companies(&self) -> Vec<(u64, String)> {
        lock(&self.shared.store)
            .companies
            .iter()
            .map(|(id, name)| (*id, name.clone()))
            .collect()
    }

    /// Every article: id, company, name, content.
    pub fn articles(&self) -> Vec<(u64, u64, String, String)> {
        lock(&self.shared.store)
            .articles
            .iter()
            .map(|(id, a)| (*id, a.company_id, a.name.clone(), a.content.clone()))
            .collect()
    }

    /// Every stored asset password, values included.
    pub fn passwords(&self) -> Vec<HuduPassword> {
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

    /// The page of `items` that `page` and `page_size` ask for.
    fn page(
        &self,
        query: &HashMap<String, String>,
        items: Vec<Value>,
    ) -> Result<Vec<Value>, String> {
        let number = |name: &str, default: usize| match query.get(name) {
            None => Ok(default),
            Some(v) => v
                .parse::<usize>()
                .ok()
                .filter(|n| *n > 0)
                .ok_or_else(|| format!("{name} must be a positive number")),
        };
        let size = number("page_size", DEFAULT_PAGE_SIZE)?.min(self.max_page_size);
        let page = number("page", 1)?;
        Ok(items
            .into_iter()
            .skip((page - 1).saturating_mul(size))
            .take(size)
            .collect())
    }
}

/// Whether the caller's key has password access, or a `401` answer.
fn authorize(shared: &Shared, headers: &HeaderMap) -> Result<bool, Box<Response>> {
    let key = headers.get("x-api-key").and_then(|v| v.to_str().ok());
    let access = key.and_then(|k| lock(&shared.store).keys.get(k).copied());
    access.ok_or_else(|| {
        shared.harness.count("auth.refused");
        Box::new(error(StatusCode::UNAUTHORIZED, "invalid API key"))
    })
}

/// The object under `wrapper` in a `{"wrapper":{…}}` body.
fn wrapped(body: &[u8], wrapper: &str) -> Option<Map<String, Value>> {
    let value: Value = serde_json::from_slice(body).ok()?;
    value.get(wrapper)?.as_object().cloned()
}

fn text(fields: &Map<String, Value>, name: &str) -> Option<String> {
    fields
        .get(name)
        .and_then(Value::as_str)
        .filter(|s| !s.trim().is_empty())
        .map(str::to_owned)
}

fn number(fields: &Map<String, Value>, name: &str) -> Option<u64> {
    let value = fields.get(name)?;
    value
        .as_u64()
        .or_else(|| value.as_str().and_then(|s| s.parse().ok()))
}

fn company_json(id: u64, name: &str) -> Value {
    json!({ "id": id, "name": name, "archived": false, "slug": format!("company-{id}") })
}

fn article_json(id: u64, a: &Article) -> Value {
    json!({ "id": id, "company_id": a.company_id, "name": a.name, "content": a.content, "draft": false })
}

fn password_json(p: &HuduPassword) -> Value {
    json!({
        "id": p.id,
        "company_id": p.company_id,
        "name": p.name,
        "username": p.username,
        "password": p.password,
    })
}

fn unprocessable(message: &str) -> (StatusCode, Value) {
    (
        StatusCode::UNPROCESSABLE_ENTITY,
        json!({ "error": message }),
    )
}

async fn list_companies(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Err(refused) = authorize(&shared, &headers) {
        return *refused;
    }
    let store = lock(&shared.store);
    let items = store
        .companies
        .iter()
        .filter(|(_, name)| {
            query
                .get("name")
                .is_none_or(|n| name.to_lowercase() == n.to_lowercase())
        })
        .map(|(id, name)| company_json(*id, name))
        .collect();
    match store.page(&query, items) {
        Ok(page) => Json(json!({ "companies": page })).into_response(),
        Err(message) => error(StatusCode::BAD_REQUEST, &message),
    }
}

async fn create_company(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(refused) = authorize(&shared, &headers) {
        return *refused;
    }
    shared.harness.idempotent(&headers, || {
        let Some(name) = wrapped(&body, "company").and_then(|c| text(&c, "name")) else {
            return unprocessable("company.name is required");
        };
        let mut store = lock(&shared.store);
        let id = store.next();
        store.companies.insert(id, name.clone());
        shared.harness.count("companies.created");
        (
            StatusCode::OK,
            json!({ "company": company_json(id, &name) }),
        )
    })
}

async fn get_company(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<u64>,
) -> Response {
    if let Err(refused) = authorize(&shared, &headers) {
        return *refused;
    }
    match lock(&shared.store).companies.get(&id) {
        Some(name) => Json(json!({ "company": company_json(id, name) })).into_response(),
        None => error(StatusCode::NOT_FOUND, "Record not found"),
    }
}

async fn delete_company(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<u64>,
) -> Response {
    if let Err(refused) = authorize(&shared, &headers) {
        return *refused;
    }
    let mut store = lock(&shared.store);
    if store.companies.remove(&id).is_none() {
        return error(StatusCode::NOT_FOUND, "Record not found");
    }
    store.articles.retain(|_, a| a.company_id != id);
    store.passwords.retain(|_, p| p.company_id != id);
    shared.harness.count("companies.deleted");
    StatusCode::NO_CONTENT.into_response()
}

async fn list_articles(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(query): Query<HashMap<String, String>>,
) -> Response {
    if let Err(refused) = authorize(&shared, &headers) {
        return *refused;
    }
    let company = match query.get("company_id").map(|c| c.parse::<u64>()) {
        None => None,
        Some(Ok(id)) => Some(id),
        Some(Err(_)) => return error(StatusCode::BAD_REQUEST, "company_id must be a number"),
    };
    let store = lock(&shared.store);
    let items = store
        .articles
        .iter()
        .filter(|(_, a)| company.is_none_or(|c| a.company_id == c))
        .map(|(id, a)| article_json(*id, a))
        .collect();
    match store.page(&query, items) {
        Ok(page) => Json(json!({ "articles": page })).into_response(),
        Err(message) => error(StatusCode::BAD_REQUEST, &message),
    }
}

async fn create_article(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(refused) = authorize(&shared, &headers) {
        return *refused;
    }
    shared.harness.idempotent(&headers, || {
        let Some(fields) = wrapped(&body, "article") else {
            return unprocessable("the body needs an article");
        };
        let Some(name) = text(&fields, "name") else {
            return unprocessable("article.name is required");
        };
        let mut store = lock(&shared.store);
        let company_id = number(&fields, "company_id");
        let Some(company_id) = company_id.filter(|c| store.companies.contains_key(c)) else {
            return unprocessable("article.company_id must name a company");
        };
        let id = store.next();
        let article = Article {
            company_id,
            name,
            content: text(&fields, "content").unwrap_or_default(),
        };
        let answer = article_json(id, &article);
        store.articles.insert(id, article);
        shared.harness.count("articles.created");
        (StatusCode::OK, json!({ "article": answer }))
    })
}

async fn create_password(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    match authorize(&shared, &headers) {
        Err(refused) => return *refused,
        Ok(false) => {
            return error(
                StatusCode::FORBIDDEN,
                "this API key does not have password access",
            );
        }
        Ok(true) => {}
    }
    shared.harness.idempotent(&headers, || {
        let Some(fields) = wrapped(&body, "asset_password") else {
            return unprocessable("the body needs an asset_password");
        };
        let mut store = lock(&shared.store);
        let company_id = number(&fields, "company_id").filter(|c| store.companies.contains_key(c));
        let password = fields.get("password").and_then(Value::as_str);
        let (Some(company_id), Some(name), Some(password)) =
            (company_id, text(&fields, "name"), password)
        else {
            return unprocessable("name, an existing company_id and password are required");
        };
        let id = store.next();
        let entry = HuduPassword {
            id,
            company_id,
            name,
            username: text(&fields, "username").unwrap_or_default(),
            password: password.to_owned(),
        };
        let mut answer = password_json(&entry);
        if let Some(fields) = answer.as_object_mut() {
            fields.remove("password");
        }
        store.passwords.insert(id, entry);
        shared.harness.count("passwords.created");
        (StatusCode::OK, json!({ "asset_password": answer }))
    })
}

async fn get_password(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<u64>,
) -> Response {
    match authorize(&shared, &headers) {
        Err(refused) => return *refused,
        Ok(false) => {
            return error(
                StatusCode::FORBIDDEN,
                "this API key does not have password access",
            );
        }
        Ok(true) => {}
    }
    let store = lock(&shared.store);
    match store.passwords.get(&id) {
        Some(entry) => {
            shared.harness.count("passwords.revealed");
            Json(json!({ "asset_password": password_json(entry) })).into_response()
        }
        None => error(StatusCode::NOT_FOUND, "Record not found"),
    }
}
