//! ConnectWise PSA (Manage) REST API 3.0, in memory.
//!
//! Served under `/v4_6_release/apis/3.0/` with ConnectWise's authentication
//! (`Authorization: Basic base64("{companyId}+{publicKey}:{privateKey}")`
//! plus a `clientId` header; anything else is a 401). Lists take
//! `conditions` (the `field op value and …` language, a subset: `=`, `!=`,
//! `<`, `<=`, `>`, `>=`, `contains`, `like`; strings in quotes, dates in
//! brackets), `page` (from 1) and `pageSize` (≤ 1000). Updates are
//! ConnectWise's JSON Patch arrays (`[{"op","path","value"}]`, paths such as
//! `status/id`).
//!
//! Callbacks (`/system/callbacks`) are delivered as ConnectWise does: the
//! record as a JSON-encoded string in `Entity`, a `Metadata.key_url` naming
//! the signing-key endpoint (`/v4_6_release/system/callbackkey/index.rails`),
//! and `x-content-signature = Base64(HMAC-SHA256(SHA256(signing key), body))`.

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::{Delivery, compare, epoch, random_guid, random_hex, rfc3339};
use crate::emulator::{Harness, Served, lock, serve};

/// The API's base path.
pub const API_BASE: &str = "/v4_6_release/apis/3.0";
/// The signing-key endpoint's path (its `id` query names the key).
pub const KEY_PATH: &str = "/v4_6_release/system/callbackkey/index.rails";
/// ConnectWise's largest page.
const MAX_PAGE_SIZE: usize = 1000;
/// ConnectWise's default page.
const DEFAULT_PAGE_SIZE: usize = 25;

/// The API member the emulator accepts.
#[derive(Clone)]
pub struct ConnectWiseCredentials {
    /// The ConnectWise company identifier (the login company, `gatehouse`).
    pub company_id: String,
    /// The API member's public key.
    pub public_key: String,
    /// The API member's private key.
    pub private_key: String,
    /// The integration's `clientId` from developer.connectwise.com.
    pub client_id: String,
}

impl fmt::Debug for ConnectWiseCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectWiseCredentials")
            .field("company_id", &self.company_id)
            .field("public_key", &self.public_key)
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

#[derive(Default)]
struct Records {
    companies: BTreeMap<u64, Value>,
    company_statuses: Vec<Value>,
    agreements: BTreeMap<u64, Value>,
    opportunities: BTreeMap<u64, Value>,
    opportunity_statuses: Vec<Value>,
    callbacks: BTreeMap<u64, Value>,
    next_id: u64,
    now: Option<OffsetDateTime>,
    /// Agreement lists answer nothing (a search index behind its writes).
    lagging: bool,
}

impl Records {
    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn now(&self) -> OffsetDateTime {
        self.now.unwrap_or_else(epoch)
    }
}

struct Shared {
    credentials: ConnectWiseCredentials,
    harness: Harness,
    records: Mutex<Records>,
    signing_key: String,
    key_id: String,
    base_url: Mutex<String>,
}

/// A running ConnectWise PSA emulator.
pub struct ConnectWiseEmulator {
    served: Served,
    shared: Arc<Shared>,
}

impl fmt::Debug for ConnectWiseEmulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ConnectWiseEmulator")
            .field("url", &self.served.url())
            .finish_non_exhaustive()
    }
}

impl ConnectWiseEmulator {
    /// Starts on loopback, accepting `credentials`, with ConnectWise's
    /// usual statuses seeded: company statuses `Active`, `Inactive`,
    /// `Not-Approved`; opportunity statuses `Open`, `Won` (won, closed),
    /// `Lost` (lost, closed), `No Decision` (closed).
    pub async fn start(credentials: ConnectWiseCredentials) -> std::io::Result<Self> {
        let mut records = Records::default();
        for name in ["Active", "Inactive", "Not-Approved"] {
            let id = records.id();
            records
                .company_statuses
                .push(json!({ "id": id, "name": name, "defaultFlag": name == "Active" }));
        }
        for (name, won, lost, closed) in [
            ("Open", false, false, false),
            ("Won", true, false, true),
            ("Lost", false, true, true),
            ("No Decision", false, false, true),
        ] {
            let id = records.id();
            records.opportunity_statuses.push(json!({
                "id": id, "name": name, "wonFlag": won, "lostFlag": lost,
                "closedFlag": closed, "inactiveFlag": false, "defaultFlag": name == "Open",
            }));
        }
        let harness = Harness::new();
        let shared = Arc::new(Shared {
            credentials,
            harness: harness.clone(),
            records: Mutex::new(records),
            signing_key: random_hex(32),
            key_id: random_hex(8),
            base_url: Mutex::new(String::new()),
        });
        let served = serve("connectwise", router(Arc::clone(&shared)), &harness, None).await?;
        *lock(&shared.base_url) = served.url();
        Ok(Self { served, shared })
    }

    /// `http://127.0.0.1:PORT` (the API is under [`API_BASE`]).
    pub fn url(&self) -> String {
        self.served.url()
    }

    /// Fault knobs and side-effect counters: `companies.updated`,
    /// `agreements.created`, `opportunities.updated`, `callbacks.created`,
    /// `callbacks.deleted`, `callbacks.delivered`.
    pub fn harness(&self) -> &Harness {
        &self.shared.harness
    }

    /// Sets the emulator's clock (closed dates); it starts at 2026-01-01.
    pub fn set_now(&self, at: OffsetDateTime) {
        lock(&self.shared.records).now = Some(at);
    }

    /// Knob: while on, agreement lists answer nothing, as a search index
    /// that has not caught up with writes would; a client's look-before-
    /// create then misses, and only the `Idempotency-Key` prevents a
    /// duplicate.
    pub fn set_list_lag(&self, lagging: bool) {
        lock(&self.shared.records).lagging = lagging;
    }

    /// Adds a company with a status (by name; unknown names are added as
    /// statuses); answers its id.
    pub fn seed_company(&self, name: &str, status: &str) -> u64 {
        let mut r = lock(&self.shared.records);
        let status = status_named(&mut r, false, status);
        let id = r.id();
        let identifier: String = name.chars().filter(|c| c.is_alphanumeric()).collect();
        r.companies.insert(
            id,
            json!({
                "id": id, "identifier": identifier, "name": name, "status": status,
                "types": [], "_info": {},
            }),
        );
        id
    }

    /// Sets a company's `website` (what the intake reads the client's
    /// internet domain from); false if there is no such company.
    pub fn set_company_website(&self, company: u64, website: &str) -> bool {
        let mut r = lock(&self.shared.records);
        let Some(record) = r.companies.get_mut(&company) else {
            return false;
        };
        record["website"] = json!(website);
        true
    }

    /// Adds an opportunity status (as an MSP configures its own, such as
    /// `Onboarded`) unless one of that name exists; answers its id.
    pub fn add_opportunity_status(&self, name: &str, won: bool, closed: bool) -> u64 {
        let mut r = lock(&self.shared.records);
        if let Some(id) = r
            .opportunity_statuses
            .iter()
            .find(|s| s["name"] == name)
            .and_then(|s| s["id"].as_u64())
        {
            return id;
        }
        let id = r.id();
        r.opportunity_statuses.push(json!({
            "id": id, "name": name, "wonFlag": won, "lostFlag": false,
            "closedFlag": closed, "inactiveFlag": false, "defaultFlag": false,
        }));
        id
    }

    /// Adds an agreement for a company; answers its id.
    pub fn seed_agreement(&self, company: u64, name: &str) -> u64 {
        let mut r = lock(&self.shared.records);
        let id = r.id();
        r.agreements.insert(id, agreement(id, company, name));
        id
    }

    /// Adds an opportunity with a status (by name) and closed date; answers
    /// its id.
    pub fn seed_opportunity(
        &self,
        name: &str,
        company: u64,
        status: &str,
        closed: Option<OffsetDateTime>,
    ) -> u64 {
        let mut r = lock(&self.shared.records);
        let status = status_named(&mut r, true, status);
        let company_name = r
            .companies
            .get(&company)
            .and_then(|c| c.get("name").cloned())
            .unwrap_or(Value::Null);
        let id = r.id();
        r.opportunities.insert(
            id,
            json!({
                "id": id, "name": name,
                "company": { "id": company, "name": company_name },
                "status": status,
                "closedDate": closed.map(rfc3339),
                "closedFlag": closed.is_some(),
            }),
        );
        id
    }

    /// The company record, as the API would answer it.
    pub fn company(&self, id: u64) -> Option<Value> {
        lock(&self.shared.records).companies.get(&id).cloned()
    }

    /// The opportunity record.
    pub fn opportunity(&self, id: u64) -> Option<Value> {
        lock(&self.shared.records).opportunities.get(&id).cloned()
    }

    /// Every agreement.
    pub fn agreements(&self) -> Vec<Value> {
        lock(&self.shared.records)
            .agreements
            .values()
            .cloned()
            .collect()
    }

    /// Every registered callback.
    pub fn callbacks(&self) -> Vec<Value> {
        lock(&self.shared.records)
            .callbacks
            .values()
            .cloned()
            .collect()
    }

    /// The callback signing key (what the key URL answers).
    pub fn signing_key(&self) -> String {
        self.shared.signing_key.clone()
    }

    /// The URL of the signing-key endpoint, as callbacks name it.
    pub fn key_url(&self) -> String {
        key_url(&self.shared)
    }

    /// Marks the opportunity won (the first status with `wonFlag`, closed
    /// now) and delivers the `Opportunity` callbacks that match it; answers
    /// the deliveries (empty when the opportunity does not exist).
    pub async fn win_opportunity(&self, id: u64) -> Vec<Delivery> {
        let (record, callbacks) = {
            let mut r = lock(&self.shared.records);
            let now = rfc3339(r.now());
            let Some(won) = r
                .opportunity_statuses
                .iter()
                .find(|s| s["wonFlag"] == true)
                .map(|s| json!({ "id": s["id"], "name": s["name"] }))
            else {
                return Vec::new();
            };
            let Some(opportunity) = r.opportunities.get_mut(&id) else {
                return Vec::new();
            };
            opportunity["status"] = won;
            opportunity["closedDate"] = json!(now);
            opportunity["closedFlag"] = json!(true);
            let record = opportunity.clone();
            let callbacks: Vec<Value> = r
                .callbacks
                .values()
                .filter(|c| callback_matches(c, "opportunity", &record))
                .cloned()
                .collect();
            (record, callbacks)
        };
        let mut deliveries = Vec::new();
        for callback in callbacks {
            let delivery = self.delivery(&callback, "updated", "opportunity", &record);
            let status = delivery.send().await;
            if status.is_some_and(|s| (200..300).contains(&s)) {
                self.shared.harness.count("callbacks.delivered");
            }
            deliveries.push(Delivery { status, ..delivery });
        }
        deliveries
    }

    /// A signed callback delivery of `record` (not sent).
    fn delivery(&self, callback: &Value, action: &str, kind: &str, record: &Value) -> Delivery {
        let shared = &self.shared;
        let payload = json!({
            "MessageId": random_guid(),
            "FromUrl": lock(&shared.base_url).clone(),
            "CompanyId": shared.credentials.company_id,
            "MemberId": "gatehouse-emulator",
            "Action": action,
            "Type": kind,
            "ID": record["id"],
            "ProductInstanceId": Value::Null,
            "PartnerId": Value::Null,
            "Entity": record.to_string(),
            "Metadata": { "key_url": key_url(shared) },
            "CallbackObjectRecId": callback["objectId"],
        });
        let body = payload.to_string().into_bytes();
        let signature = sign(&shared.signing_key, &body);
        Delivery {
            url: callback["url"].as_str().unwrap_or_default().to_owned(),
            headers: vec![("x-content-signature".to_owned(), signature)],
            body,
            status: None,
        }
    }

    /// Stops the server.
    pub async fn shutdown(self) {
        self.served.shutdown().await;
    }
}

/// ConnectWise's callback signature of `body` under `signing_key`.
pub fn sign(signing_key: &str, body: &[u8]) -> String {
    let key = Sha256::digest(signing_key.as_bytes());
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(&key) else {
        return String::new();
    };
    mac.update(body);
    base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes())
}

fn key_url(shared: &Shared) -> String {
    format!("{}{KEY_PATH}?id={}", lock(&shared.base_url), shared.key_id)
}

fn agreement(id: u64, company: u64, name: &str) -> Value {
    json!({
        "id": id, "name": name, "type": { "name": "Managed Services" },
        "company": { "id": company }, "cancelledFlag": false, "agreementStatus": "Active",
    })
}

/// The `{id, name}` of the status called `name`, added if missing.
fn status_named(r: &mut Records, opportunity: bool, name: &str) -> Value {
    let existing = if opportunity {
        &r.opportunity_statuses
    } else {
        &r.company_statuses
    };
    if let Some(s) = existing.iter().find(|s| s["name"] == name) {
        return json!({ "id": s["id"], "name": s["name"] });
    }
    let id = r.id();
    let status = json!({ "id": id, "name": name, "wonFlag": false, "lostFlag": false,
        "closedFlag": false, "inactiveFlag": false });
    if opportunity {
        r.opportunity_statuses.push(status);
    } else {
        r.company_statuses.push(status);
    }
    json!({ "id": id, "name": name })
}

/// Whether a callback registration wants an event about `record`.
fn callback_matches(callback: &Value, kind: &str, record: &Value) -> bool {
    if callback["inactiveFlag"] == true {
        return false;
    }
    let type_ok = callback["type"]
        .as_str()
        .is_some_and(|t| t.eq_ignore_ascii_case(kind));
    let object = &callback["objectId"];
    let level = callback["level"].as_str().unwrap_or_default();
    let level_ok = match level.to_ascii_lowercase().as_str() {
        "owner" => true,
        "status" | "statusid" => record["status"]["id"] == *object,
        "company" => record["company"]["id"] == *object,
        _ => record["id"] == *object,
    };
    type_ok && level_ok
}

fn cw_error(status: StatusCode, code: &str, message: &str) -> Response {
    (
        status,
        axum::Json(json!({ "code": code, "message": message, "errors": Value::Null })),
    )
        .into_response()
}

fn not_found(what: &str, id: u64) -> Response {
    cw_error(
        StatusCode::NOT_FOUND,
        "NotFound",
        &format!("{what} ID {id} not found"),
    )
}

fn bad_request(message: &str) -> Response {
    cw_error(StatusCode::BAD_REQUEST, "InvalidObject", message)
}

type Ctx = State<Arc<Shared>>;

fn router(shared: Arc<Shared>) -> Router {
    let api = Router::new()
        .route("/company/companies", get(list_companies))
        .route("/company/companies/statuses", get(list_company_statuses))
        .route(
            "/company/companies/{id}",
            get(get_company).patch(patch_company),
        )
        .route(
            "/finance/agreements",
            get(list_agreements).post(create_agreement),
        )
        .route("/finance/agreements/{id}", get(get_agreement))
        .route("/sales/opportunities", get(list_opportunities))
        .route(
            "/sales/opportunities/statuses",
            get(list_opportunity_statuses),
        )
        .route(
            "/sales/opportunities/{id}",
            get(get_opportunity).patch(patch_opportunity),
        )
        .route(
            "/system/callbacks",
            get(list_callbacks).post(create_callback),
        )
        .route(
            "/system/callbacks/{id}",
            get(get_callback)
                .put(replace_callback)
                .delete(delete_callback),
        )
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&shared),
            authenticate,
        ));
    Router::new()
        .nest(API_BASE, api)
        .route(KEY_PATH, get(signing_key))
        .with_state(shared)
}

async fn authenticate(State(shared): Ctx, request: Request, next: Next) -> Response {
    let c = &shared.credentials;
    let expected = base64::engine::general_purpose::STANDARD.encode(format!(
        "{}+{}:{}",
        c.company_id, c.public_key, c.private_key
    ));
    let headers = request.headers();
    let basic_ok = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        .is_some_and(|v| v.trim() == expected);
    let client_ok = headers
        .get("clientid")
        .and_then(|v| v.to_str().ok())
        .is_some_and(|v| v == c.client_id);
    if !basic_ok {
        return cw_error(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "invalid API member credentials",
        );
    }
    if !client_ok {
        return cw_error(
            StatusCode::UNAUTHORIZED,
            "Unauthorized",
            "a valid clientId header is required",
        );
    }
    next.run(request).await
}

#[derive(Deserialize)]
struct KeyQuery {
    id: Option<String>,
}

async fn signing_key(State(shared): Ctx, Query(q): Query<KeyQuery>) -> Response {
    if q.id.as_deref() != Some(shared.key_id.as_str()) {
        return cw_error(StatusCode::NOT_FOUND, "NotFound", "unknown key");
    }
    axum::Json(json!({ "signing_key": shared.signing_key })).into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct ListQuery {
    conditions: Option<String>,
    page: Option<usize>,
    page_size: Option<usize>,
}

/// One page of `records` matching the query's conditions, sorted by id.
fn page(records: Vec<Value>, q: &ListQuery) -> Response {
    let conditions = match q.conditions.as_deref().map(parse_conditions) {
        Some(Err(message)) => return bad_request(&message),
        Some(Ok(c)) => c,
        None => Vec::new(),
    };
    let size = q.page_size.unwrap_or(DEFAULT_PAGE_SIZE);
    if size == 0 || size > MAX_PAGE_SIZE {
        return bad_request("pageSize must be between 1 and 1000");
    }
    let page = q.page.unwrap_or(1).max(1);
    let items: Vec<Value> = records
        .into_iter()
        .filter(|r| conditions.iter().all(|c| c.matches(r)))
        .skip((page - 1).saturating_mul(size))
        .take(size)
        .collect();
    axum::Json(Value::Array(items)).into_response()
}

async fn list_companies(State(s): Ctx, Query(q): Query<ListQuery>) -> Response {
    let all = lock(&s.records).companies.values().cloned().collect();
    page(all, &q)
}

async fn list_company_statuses(State(s): Ctx, Query(q): Query<ListQuery>) -> Response {
    let all = lock(&s.records).company_statuses.clone();
    page(all, &q)
}

async fn get_company(State(s): Ctx, Path(id): Path<u64>) -> Response {
    match lock(&s.records).companies.get(&id) {
        Some(c) => axum::Json(c.clone()).into_response(),
        None => not_found("Company", id),
    }
}

async fn patch_company(
    State(s): Ctx,
    Path(id): Path<u64>,
    axum::Json(ops): axum::Json<Value>,
) -> Response {
    let mut r = lock(&s.records);
    let Some(mut record) = r.companies.get(&id).cloned() else {
        return not_found("Company", id);
    };
    if let Err(message) = apply_patch(&mut record, &ops) {
        return bad_request(&message);
    }
    match resolve_status(&r.company_statuses, &record) {
        Ok(status) => record["status"] = status,
        Err(message) => return bad_request(&message),
    }
    r.companies.insert(id, record.clone());
    s.harness.count("companies.updated");
    axum::Json(record).into_response()
}

async fn list_agreements(State(s): Ctx, Query(q): Query<ListQuery>) -> Response {
    let r = lock(&s.records);
    let all = if r.lagging {
        Vec::new()
    } else {
        r.agreements.values().cloned().collect()
    };
    page(all, &q)
}

async fn get_agreement(State(s): Ctx, Path(id): Path<u64>) -> Response {
    match lock(&s.records).agreements.get(&id) {
        Some(a) => axum::Json(a.clone()).into_response(),
        None => not_found("Agreement", id),
    }
}

async fn create_agreement(
    State(s): Ctx,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    let name = body["name"].as_str().unwrap_or_default().trim().to_owned();
    let Some(company) = body["company"]["id"].as_u64() else {
        return bad_request("company/id is required");
    };
    if name.is_empty() || name.chars().count() > 50 {
        return bad_request("name is required (at most 50 characters)");
    }
    let harness = s.harness.clone();
    harness.idempotent(&headers, || {
        let mut r = lock(&s.records);
        if !r.companies.contains_key(&company) {
            return (
                StatusCode::BAD_REQUEST,
                json!({ "code": "InvalidObject", "message": "company not found" }),
            );
        }
        let id = r.id();
        let mut record = agreement(id, company, &name);
        if let Some(kind) = body.get("type").filter(|t| t.is_object()) {
            record["type"] = kind.clone();
        }
        r.agreements.insert(id, record.clone());
        s.harness.count("agreements.created");
        (StatusCode::CREATED, record)
    })
}

async fn list_opportunities(State(s): Ctx, Query(q): Query<ListQuery>) -> Response {
    let all = lock(&s.records).opportunities.values().cloned().collect();
    page(all, &q)
}

async fn list_opportunity_statuses(State(s): Ctx, Query(q): Query<ListQuery>) -> Response {
    let all = lock(&s.records).opportunity_statuses.clone();
    page(all, &q)
}

async fn get_opportunity(State(s): Ctx, Path(id): Path<u64>) -> Response {
    match lock(&s.records).opportunities.get(&id) {
        Some(o) => axum::Json(o.clone()).into_response(),
        None => not_found("Opportunity", id),
    }
}

async fn patch_opportunity(
    State(s): Ctx,
    Path(id): Path<u64>,
    axum::Json(ops): axum::Json<Value>,
) -> Response {
    let mut r = lock(&s.records);
    let Some(mut record) = r.opportunities.get(&id).cloned() else {
        return not_found("Opportunity", id);
    };
    let before = record["status"]["id"].clone();
    if let Err(message) = apply_patch(&mut record, &ops) {
        return bad_request(&message);
    }
    match resolve_status(&r.opportunity_statuses, &record) {
        Ok(status) => record["status"] = status,
        Err(message) => return bad_request(&message),
    }
    if record["status"]["id"] != before {
        let closed = r
            .opportunity_statuses
            .iter()
            .any(|st| st["id"] == record["status"]["id"] && st["closedFlag"] == true);
        record["closedFlag"] = json!(closed);
        record["closedDate"] = if closed {
            json!(rfc3339(r.now()))
        } else {
            Value::Null
        };
    }
    r.opportunities.insert(id, record.clone());
    s.harness.count("opportunities.updated");
    axum::Json(record).into_response()
}

async fn list_callbacks(State(s): Ctx, Query(q): Query<ListQuery>) -> Response {
    let all = lock(&s.records).callbacks.values().cloned().collect();
    page(all, &q)
}

async fn get_callback(State(s): Ctx, Path(id): Path<u64>) -> Response {
    match lock(&s.records).callbacks.get(&id) {
        Some(c) => axum::Json(c.clone()).into_response(),
        None => not_found("Callback", id),
    }
}

/// A callback registration from a request body, or why it is invalid.
fn callback(id: u64, body: &Value) -> Result<Value, String> {
    let text = |name: &str| body[name].as_str().map(str::trim).unwrap_or_default();
    for required in ["url", "type", "level"] {
        if text(required).is_empty() {
            return Err(format!("{required} is required"));
        }
    }
    if text("description").chars().count() > 100 {
        return Err("description is at most 100 characters".into());
    }
    let Some(object) = body["objectId"].as_u64() else {
        return Err("objectId is required".into());
    };
    Ok(json!({
        "id": id, "description": text("description"), "url": text("url"),
        "objectId": object, "type": text("type"), "level": text("level"),
        "memberId": body.get("memberId").cloned().unwrap_or(Value::Null),
        "inactiveFlag": body["inactiveFlag"].as_bool().unwrap_or(false),
    }))
}

async fn create_callback(
    State(s): Ctx,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    s.harness.idempotent(&headers, || {
        let mut r = lock(&s.records);
        let id = r.next_id + 1;
        match callback(id, &body) {
            Ok(record) => {
                r.next_id = id;
                r.callbacks.insert(id, record.clone());
                s.harness.count("callbacks.created");
                (StatusCode::CREATED, record)
            }
            Err(message) => (
                StatusCode::BAD_REQUEST,
                json!({ "code": "InvalidObject", "message": message }),
            ),
        }
    })
}

async fn replace_callback(
    State(s): Ctx,
    Path(id): Path<u64>,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    let mut r = lock(&s.records);
    if !r.callbacks.contains_key(&id) {
        return not_found("Callback", id);
    }
    match callback(id, &body) {
        Ok(record) => {
            r.callbacks.insert(id, record.clone());
            axum::Json(record).into_response()
        }
        Err(message) => bad_request(&message),
    }
}

async fn delete_callback(State(s): Ctx, Path(id): Path<u64>) -> Response {
    if lock(&s.records).callbacks.remove(&id).is_none() {
        return not_found("Callback", id);
    }
    s.harness.count("callbacks.deleted");
    StatusCode::NO_CONTENT.into_response()
}

/// Resolves `record.status.id` (or `.name`) against `statuses`.
fn resolve_status(statuses: &[Value], record: &Value) -> Result<Value, String> {
    let wanted = &record["status"];
    statuses
        .iter()
        .find(|s| {
            (wanted["id"].is_u64() && s["id"] == wanted["id"])
                || (!wanted["id"].is_u64()
                    && wanted["name"].is_string()
                    && s["name"] == wanted["name"])
        })
        .map(|s| json!({ "id": s["id"], "name": s["name"] }))
        .ok_or_else(|| "status not found".to_owned())
}

/// Applies ConnectWise's JSON Patch (`replace`, `add`, `remove`; paths with
/// or without a leading `/`, segments separated by `/`).
fn apply_patch(record: &mut Value, ops: &Value) -> Result<(), String> {
    let ops = ops
        .as_array()
        .ok_or("the body must be an array of patch operations")?;
    for op in ops {
        let kind = op["op"].as_str().unwrap_or_default().to_ascii_lowercase();
        let path = op["path"].as_str().ok_or("each operation needs a path")?;
        let segments: Vec<&str> = path
            .trim_start_matches('/')
            .split('/')
            .filter(|s| !s.is_empty())
            .collect();
        let Some((last, parents)) = segments.split_last() else {
            return Err("empty path".into());
        };
        if segments[0].eq_ignore_ascii_case("id") || segments[0] == "_info" {
            return Err(format!("{path} cannot be changed"));
        }
        let mut target = &mut *record;
        for segment in parents {
            if !target[*segment].is_object() {
                target[*segment] = json!({});
            }
            target = &mut target[*segment];
        }
        let object = target
            .as_object_mut()
            .ok_or_else(|| format!("{path} is not inside an object"))?;
        match kind.as_str() {
            "replace" | "add" => {
                let value = op.get("value").ok_or("replace needs a value")?.clone();
                object.insert((*last).to_owned(), value);
            }
            "remove" => {
                object.remove(*last);
            }
            other => return Err(format!("unsupported patch op {other:?}")),
        }
    }
    Ok(())
}

/// One `field op value` clause of a `conditions` string.
#[derive(Debug, PartialEq)]
struct Condition {
    path: Vec<String>,
    op: String,
    value: Value,
}

impl Condition {
    fn matches(&self, record: &Value) -> bool {
        let mut field = record;
        for segment in &self.path {
            field = match field.as_object().and_then(|o| {
                o.iter()
                    .find(|(k, _)| k.eq_ignore_ascii_case(segment))
                    .map(|(_, v)| v)
            }) {
                Some(v) => v,
                None => &Value::Null,
            };
        }
        let ordering = compare(field, &self.value);
        use std::cmp::Ordering::{Equal, Greater, Less};
        match self.op.as_str() {
            "=" => ordering == Some(Equal),
            "!=" => ordering != Some(Equal),
            "<" => ordering == Some(Less),
            "<=" => matches!(ordering, Some(Less | Equal)),
            ">" => ordering == Some(Greater),
            ">=" => matches!(ordering, Some(Greater | Equal)),
            _ => {
                let (Some(haystack), Some(needle)) = (field.as_str(), self.value.as_str()) else {
                    return false;
                };
                let needle = needle.trim_matches('%').trim_matches('*').to_lowercase();
                haystack.to_lowercase().contains(&needle)
            }
        }
    }
}

/// Parses ConnectWise `conditions`: clauses joined by `and`.
fn parse_conditions(text: &str) -> Result<Vec<Condition>, String> {
    let mut rest = text.trim();
    let mut out = Vec::new();
    while !rest.is_empty() {
        let end = rest
            .find(|c: char| !(c.is_alphanumeric() || c == '/' || c == '_'))
            .unwrap_or(rest.len());
        let path = &rest[..end];
        if path.is_empty() {
            return Err(format!("conditions: expected a field at {rest:?}"));
        }
        rest = rest[end..].trim_start();
        let lower = rest.to_ascii_lowercase();
        let op = ["<=", ">=", "!=", "=", "<", ">", "contains", "like"]
            .into_iter()
            .find(|op| lower.starts_with(op))
            .ok_or_else(|| format!("conditions: expected an operator after {path}"))?;
        rest = rest[op.len()..].trim_start();
        let (value, after) = if let Some(inner) = rest.strip_prefix('"') {
            let close = inner.find('"').ok_or("conditions: unterminated string")?;
            (json!(&inner[..close]), &inner[close + 1..])
        } else if let Some(inner) = rest.strip_prefix('[') {
            let close = inner.find(']').ok_or("conditions: unterminated date")?;
            (json!(&inner[..close]), &inner[close + 1..])
        } else {
            let end = rest.find(char::is_whitespace).unwrap_or(rest.len());
            let word = &rest[..end];
            let value = match word {
                "true" => json!(true),
                "false" => json!(false),
                "null" => Value::Null,
                _ => serde_json::from_str::<serde_json::Number>(word)
                    .map(Value::Number)
                    .map_err(|_| format!("conditions: cannot read value {word:?}"))?,
            };
            (value, &rest[end..])
        };
        out.push(Condition {
            path: path.split('/').map(str::to_owned).collect(),
            op: op.to_owned(),
            value,
        });
        rest = after.trim_start();
        if rest.is_empty() {
            break;
        }
        let lower = rest.to_ascii_lowercase();
        if !lower.starts_with("and ") {
            return Err("conditions: only `and` joins clauses here".into());
        }
        rest = rest[4..].trim_start();
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conditions_parse_strings_dates_numbers_and_joins() {
        let c = parse_conditions(
            r#"company/id=5 and name contains "a and b" and closedDate >= [2026-01-01T00:00:00Z]"#,
        )
        .unwrap();
        assert_eq!(c.len(), 3);
        assert_eq!(c[0].path, ["company", "id"]);
        assert_eq!(c[1].value, json!("a and b"));
        assert_eq!(c[2].op, ">=");
        let record = json!({"company": {"id": 5}, "name": "X A AND B", "closedDate": "2026-02-01T00:00:00Z"});
        assert!(c.iter().all(|c| c.matches(&record)));
        assert!(parse_conditions("name = ").is_err());
        assert!(parse_conditions("a=1 or b=2").is_err());
    }

    #[test]
    fn patch_replaces_nested_fields_and_refuses_the_id() {
        let mut r = json!({"id": 1, "status": {"id": 1, "name": "Active"}});
        apply_patch(
            &mut r,
            &json!([{"op": "replace", "path": "status/id", "value": 2}]),
        )
        .unwrap();
        assert_eq!(r["status"]["id"], 2);
        assert!(
            apply_patch(
                &mut r,
                &json!([{"op": "replace", "path": "/id", "value": 9}])
            )
            .is_err()
        );
        assert!(apply_patch(&mut r, &json!({"op": "replace"})).is_err());
    }

    #[test]
    fn signature_is_hmac_sha256_keyed_by_the_keys_sha256() {
        // Recomputed independently: key = SHA256("k"), message "body".
        let key = Sha256::digest(b"k");
        let mut mac = Hmac::<Sha256>::new_from_slice(&key).unwrap();
        mac.update(b"body");
        let expected =
            base64::engine::general_purpose::STANDARD.encode(mac.finalize().into_bytes());
        assert_eq!(sign("k", b"body"), expected);
        assert_ne!(sign("k", b"body!"), expected);
    }
}
