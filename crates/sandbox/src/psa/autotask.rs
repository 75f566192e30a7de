//! Autotask PSA REST API v1.0, in memory.
//!
//! - Zone discovery: `GET /atservicesrest/v1.0/ZoneInformation?user=` answers
//!   this emulator's own URL as the zone (`{url}/atservicesrest/`).
//! - Authentication: the headers `ApiIntegrationCode`, `UserName`, `Secret`
//!   on every other call (401 `{"errors":[…]}` otherwise).
//! - Entities `Companies`, `Contracts`, `Opportunities`, `CompanyWebhooks`
//!   (and `CompanyWebhooks/{id}/Fields`): `GET /{Entity}/{id}` answers
//!   `{"item": …}` (`null` when missing, as Autotask does), `POST
//!   /{Entity}/query` takes Autotask's filter JSON (`eq`, `noteq`, `gt`,
//!   `gte`, `lt`, `lte`, `contains`, `beginsWith`, `in`, `exist`,
//!   `notExist`, nested `and`/`or`; top-level filters are joined by and) and
//!   `MaxRecords` (≤ 500), paging with `pageDetails.nextPageUrl`; `PATCH`
//!   updates by the body's `id`; `POST` creates; writes answer `{"itemId"}`.
//!   Entity and field names are case-insensitive, as in Autotask.
//! - Picklists (`GET /{Entity}/entityInformation/fields`): company types
//!   (1 Customer, 2 Lead, 3 Prospect, 4 Dead, 6 Cancellation, 7 Vendor,
//!   8 Partner) and opportunity statuses (0 Inactive, 1 Active, 2 Lost,
//!   3 Closed, 4 Implemented). "Won" is `Closed` or `Implemented`.
//! - Webhooks: Autotask has none for opportunities (the connector polls);
//!   company webhooks are delivered by [`AutotaskEmulator::create_company`]
//!   and [`AutotaskEmulator::update_company`], signed
//!   `X-Hook-Signature: sha1=Base64(HMAC-SHA1(SecretKey, body))`.
//!   Webhook field ids are the emulator's own numbering ([`COMPANY_FIELDS`]).

use std::collections::BTreeMap;
use std::fmt;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use hmac::{Hmac, Mac};
use serde::Deserialize;
use serde_json::{Map, Value, json};
use sha1::Sha1;
use time::OffsetDateTime;

use super::{Delivery, base64, compare, epoch, field, random_guid, random_hex, rfc3339};
use crate::emulator::{Harness, Served, lock, serve};

/// The largest page Autotask answers.
pub const MAX_RECORDS: usize = 500;

/// Company fields a webhook can subscribe to, with the emulator's field ids.
pub const COMPANY_FIELDS: [(&str, u64); 4] = [
    ("companyName", 1),
    ("companyType", 2),
    ("isActive", 3),
    ("phone", 4),
];

/// Company types (`companyType` picklist).
const COMPANY_TYPES: [(u64, &str); 7] = [
    (1, "Customer"),
    (2, "Lead"),
    (3, "Prospect"),
    (4, "Dead"),
    (6, "Cancellation"),
    (7, "Vendor"),
    (8, "Partner"),
];

/// Opportunity statuses (`status` picklist); 3 and 4 count as won.
const OPPORTUNITY_STATUSES: [(u64, &str); 5] = [
    (0, "Inactive"),
    (1, "Active"),
    (2, "Lost"),
    (3, "Closed"),
    (4, "Implemented"),
];

/// The entities served, as Autotask spells them.
const ENTITIES: [&str; 4] = ["Companies", "Contracts", "Opportunities", "CompanyWebhooks"];

/// The API user the emulator accepts.
#[derive(Clone)]
pub struct AutotaskCredentials {
    /// The API user's user name (an email address).
    pub username: String,
    /// The API user's secret.
    pub secret: String,
    /// The integration's tracking identifier.
    pub integration_code: String,
}

impl fmt::Debug for AutotaskCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AutotaskCredentials")
            .field("username", &self.username)
            .finish_non_exhaustive()
    }
}

/// A paging cursor: the rest of a query.
struct Cursor {
    entity: &'static str,
    filters: Vec<Value>,
    after: u64,
    max: usize,
}

#[derive(Default)]
struct Records {
    entities: BTreeMap<&'static str, BTreeMap<u64, Value>>,
    webhook_fields: BTreeMap<u64, Value>,
    cursors: BTreeMap<String, Cursor>,
    next_id: u64,
    sequence: u64,
    now: Option<OffsetDateTime>,
    /// Contract queries answer nothing (a search index behind its writes).
    lagging: bool,
}

impl Records {
    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn now(&self) -> String {
        rfc3339(self.now.unwrap_or_else(epoch))
    }

    fn table(&mut self, entity: &'static str) -> &mut BTreeMap<u64, Value> {
        self.entities.entry(entity).or_default()
    }

    fn get(&self, entity: &'static str, id: u64) -> Option<&Value> {
        self.entities.get(entity).and_then(|t| t.get(&id))
    }
}

struct Shared {
    credentials: AutotaskCredentials,
    harness: Harness,
    records: Mutex<Records>,
    base_url: Mutex<String>,
}

/// A running Autotask emulator.
pub struct AutotaskEmulator {
    served: Served,
    shared: Arc<Shared>,
}

impl fmt::Debug for AutotaskEmulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AutotaskEmulator")
            .field("url", &self.served.url())
            .finish_non_exhaustive()
    }
}

impl AutotaskEmulator {
    /// Starts on loopback, accepting `credentials`.
    pub async fn start(credentials: AutotaskCredentials) -> std::io::Result<Self> {
        let harness = Harness::new();
        let shared = Arc::new(Shared {
            credentials,
            harness: harness.clone(),
            records: Mutex::new(Records::default()),
            base_url: Mutex::new(String::new()),
        });
        let served = serve("autotask", router(Arc::clone(&shared)), &harness, None).await?;
        *lock(&shared.base_url) = served.url();
        Ok(Self { served, shared })
    }

    /// `http://127.0.0.1:PORT`, the zone-discovery host and the zone itself.
    pub fn url(&self) -> String {
        self.served.url()
    }

    /// Fault knobs and counters: `companies.updated`, `contracts.created`,
    /// `opportunities.updated`, `webhooks.created`, `webhook_fields.created`,
    /// `webhooks.delivered`, `zone.lookups`.
    pub fn harness(&self) -> &Harness {
        &self.shared.harness
    }

    /// Sets the emulator's clock; it starts at 2026-01-01.
    pub fn set_now(&self, at: OffsetDateTime) {
        lock(&self.shared.records).now = Some(at);
    }

    /// Knob: while on, contract queries answer nothing, as a search index
    /// that has not caught up with writes would; a client's look-before-
    /// create then misses, and only the `Idempotency-Key` prevents a
    /// duplicate.
    pub fn set_list_lag(&self, lagging: bool) {
        lock(&self.shared.records).lagging = lagging;
    }

    /// Adds a company of a type (picklist value); answers its id. No webhook.
    pub fn seed_company(&self, name: &str, company_type: u64) -> u64 {
        let mut r = lock(&self.shared.records);
        let id = r.id();
        let now = r.now();
        r.table("Companies").insert(
            id,
            json!({ "id": id, "companyName": name, "companyType": company_type,
                    "isActive": true, "phone": "", "lastActivityDate": now }),
        );
        id
    }

    /// Sets a company's `webAddress` (what the intake reads the client's
    /// internet domain from); false if there is no such company.
    pub fn set_company_website(&self, company: u64, web_address: &str) -> bool {
        let mut r = lock(&self.shared.records);
        let Some(record) = r.table("Companies").get_mut(&company) else {
            return false;
        };
        record["webAddress"] = json!(web_address);
        true
    }

    /// Adds a contract for a company; answers its id.
    pub fn seed_contract(&self, company: u64, name: &str) -> u64 {
        let mut r = lock(&self.shared.records);
        let id = r.id();
        r.table("Contracts").insert(id, contract(id, company, name));
        id
    }

    /// Adds an opportunity with a status (picklist value) and closed date;
    /// answers its id.
    pub fn seed_opportunity(
        &self,
        title: &str,
        company: u64,
        status: u64,
        closed: Option<OffsetDateTime>,
    ) -> u64 {
        let mut r = lock(&self.shared.records);
        let id = r.id();
        r.table("Opportunities").insert(
            id,
            json!({ "id": id, "title": title, "companyID": company, "status": status,
                    "closedDate": closed.map(rfc3339) }),
        );
        id
    }

    /// Marks the opportunity won (`Closed`, closed now). Autotask sends no
    /// webhook for opportunities; the connector finds it by polling.
    pub fn win_opportunity(&self, id: u64) -> bool {
        let mut r = lock(&self.shared.records);
        let now = r.now();
        match r.table("Opportunities").get_mut(&id) {
            Some(o) => {
                o["status"] = json!(3);
                o["closedDate"] = json!(now);
                true
            }
            None => false,
        }
    }

    /// Creates a company as a user would in Autotask and delivers the
    /// `Create` company webhooks; answers its id and the deliveries.
    pub async fn create_company(&self, name: &str, company_type: u64) -> (u64, Vec<Delivery>) {
        let id = self.seed_company(name, company_type);
        let record = self.company(id).unwrap_or(Value::Null);
        let changed: Vec<String> = COMPANY_FIELDS
            .iter()
            .map(|(n, _)| (*n).to_owned())
            .collect();
        let deliveries = self.deliver("Create", &record, &changed).await;
        (id, deliveries)
    }

    /// Changes company fields as a user would in Autotask (e.g.
    /// `{"companyType": 1}`) and delivers the `Update` company webhooks
    /// subscribed to a changed field; answers the deliveries.
    pub async fn update_company(&self, id: u64, fields: Value) -> Vec<Delivery> {
        let (record, changed) = {
            let mut r = lock(&self.shared.records);
            let Some(company) = r.table("Companies").get_mut(&id) else {
                return Vec::new();
            };
            let mut changed = Vec::new();
            if let Some(fields) = fields.as_object() {
                for (name, value) in fields {
                    if company[name.as_str()] != *value {
                        company[name.as_str()] = value.clone();
                        changed.push(name.clone());
                    }
                }
            }
            (company.clone(), changed)
        };
        self.deliver("Update", &record, &changed).await
    }

    async fn deliver(&self, action: &str, record: &Value, changed: &[String]) -> Vec<Delivery> {
        let planned = {
            let mut r = lock(&self.shared.records);
            let subscribed = if action == "Create" {
                "isSubscribedToCreateEvents"
            } else {
                "isSubscribedToUpdateEvents"
            };
            let hooks: Vec<Value> = r
                .entities
                .get("CompanyWebhooks")
                .map(|t| t.values().cloned().collect())
                .unwrap_or_default();
            let mut planned = Vec::new();
            for hook in hooks {
                if hook["isActive"] != true || hook["isReady"] != true || hook[subscribed] != true {
                    continue;
                }
                let hook_id = hook["id"].as_u64().unwrap_or_default();
                let fields: Vec<&Value> = r
                    .webhook_fields
                    .values()
                    .filter(|f| f["webhookID"] == hook_id)
                    .collect();
                let name_of = |f: &Value| {
                    COMPANY_FIELDS
                        .iter()
                        .find(|(_, id)| f["fieldID"] == *id)
                        .map(|(n, _)| *n)
                };
                let wanted = fields.iter().any(|f| {
                    f["isSubscribedField"] == true
                        && name_of(f).is_some_and(|n| changed.iter().any(|c| c == n))
                });
                if !wanted {
                    continue;
                }
                let mut sent = Map::new();
                for f in &fields {
                    let Some(name) = name_of(f) else { continue };
                    let include = f["isDisplayAlwaysField"] == true
                        || (f["isSubscribedField"] == true && changed.iter().any(|c| c == name));
                    if include {
                        sent.insert(name.to_owned(), record[name].clone());
                    }
                }
                r.sequence += 1;
                let payload = json!({
                    "Action": action, "Guid": hook["webhookGUID"], "EntityType": "Company",
                    "Id": record["id"], "Fields": sent, "EventTime": r.now(),
                    "SequenceNumber": r.sequence, "PersonID": Value::Null,
                });
                let body = payload.to_string().into_bytes();
                let secret = hook["secretKey"].as_str().unwrap_or_default();
                planned.push(Delivery {
                    url: hook["webhookUrl"].as_str().unwrap_or_default().to_owned(),
                    headers: vec![("X-Hook-Signature".to_owned(), sign(secret, &body))],
                    body,
                    status: None,
                });
            }
            planned
        };
        let mut deliveries = Vec::new();
        for delivery in planned {
            let status = delivery.send().await;
            if status.is_some_and(|s| (200..300).contains(&s)) {
                self.shared.harness.count("webhooks.delivered");
            }
            deliveries.push(Delivery { status, ..delivery });
        }
        deliveries
    }

    /// The company record.
    pub fn company(&self, id: u64) -> Option<Value> {
        lock(&self.shared.records).get("Companies", id).cloned()
    }

    /// The opportunity record.
    pub fn opportunity(&self, id: u64) -> Option<Value> {
        lock(&self.shared.records).get("Opportunities", id).cloned()
    }

    /// Every contract.
    pub fn contracts(&self) -> Vec<Value> {
        self.all("Contracts")
    }

    /// Every company webhook (with its secret key, for tests).
    pub fn webhooks(&self) -> Vec<Value> {
        self.all("CompanyWebhooks")
    }

    /// Every webhook field subscription.
    pub fn webhook_fields(&self) -> Vec<Value> {
        lock(&self.shared.records)
            .webhook_fields
            .values()
            .cloned()
            .collect()
    }

    fn all(&self, entity: &'static str) -> Vec<Value> {
        lock(&self.shared.records)
            .entities
            .get(entity)
            .map(|t| t.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Stops the server.
    pub async fn shutdown(self) {
        self.served.shutdown().await;
    }
}

/// Autotask's webhook signature of `body`: `sha1=` + Base64(HMAC-SHA1).
pub fn sign(secret_key: &str, body: &[u8]) -> String {
    let Ok(mut mac) = Hmac::<Sha1>::new_from_slice(secret_key.as_bytes()) else {
        return String::new();
    };
    mac.update(body);
    format!("sha1={}", base64(&mac.finalize().into_bytes()))
}

fn contract(id: u64, company: u64, name: &str) -> Value {
    json!({ "id": id, "companyID": company, "contractName": name, "contractType": 7,
            "status": 1, "startDate": Value::Null, "endDate": Value::Null })
}

fn errors(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(json!({ "errors": [message] }))).into_response()
}

fn entity(name: &str) -> Option<&'static str> {
    ENTITIES.into_iter().find(|e| e.eq_ignore_ascii_case(name))
}

type Ctx = State<Arc<Shared>>;

fn router(shared: Arc<Shared>) -> Router {
    let api = Router::new()
        .route("/{entity}/query", post(query))
        .route("/{entity}/query/next", get(query_next))
        .route("/{entity}/entityInformation/fields", get(fields))
        .route("/{entity}/{id}", get(read))
        .route("/{entity}", post(create).patch(update))
        .route("/{entity}/{id}/Fields", post(create_webhook_field))
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&shared),
            authenticate,
        ));
    Router::new()
        .route("/atservicesrest/v1.0/ZoneInformation", get(zone))
        .nest("/atservicesrest/v1.0", api)
        .with_state(shared)
}

#[derive(Deserialize)]
struct ZoneQuery {
    user: Option<String>,
}

async fn zone(State(s): Ctx, Query(q): Query<ZoneQuery>) -> Response {
    s.harness.count("zone.lookups");
    if !q
        .user
        .as_deref()
        .is_some_and(|u| u.eq_ignore_ascii_case(&s.credentials.username))
    {
        return errors(StatusCode::NOT_FOUND, "Invalid user name");
    }
    let base = lock(&s.base_url).clone();
    axum::Json(json!({
        "zoneName": "Emulator", "url": format!("{base}/atservicesrest/"),
        "webUrl": format!("{base}/"), "ci": 0,
    }))
    .into_response()
}

async fn authenticate(State(s): Ctx, request: Request, next: Next) -> Response {
    let h = request.headers();
    let value = |name: &str| {
        h.get(name)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
    };
    let c = &s.credentials;
    let ok = value("username").eq_ignore_ascii_case(&c.username)
        && value("secret") == c.secret
        && value("apiintegrationcode") == c.integration_code
        && !c.username.is_empty();
    if !ok {
        return errors(
            StatusCode::UNAUTHORIZED,
            "Authentication failed: check UserName, Secret and ApiIntegrationCode",
        );
    }
    next.run(request).await
}

async fn read(State(s): Ctx, Path((name, id)): Path<(String, String)>) -> Response {
    let Some(entity) = entity(&name) else {
        return errors(StatusCode::NOT_FOUND, "unknown entity");
    };
    let Ok(id) = id.parse::<u64>() else {
        return errors(StatusCode::BAD_REQUEST, "the id must be a number");
    };
    let r = lock(&s.records);
    let mut item = r.get(entity, id).cloned().unwrap_or(Value::Null);
    if let Some(o) = item.as_object_mut() {
        o.remove("secretKey");
    }
    axum::Json(json!({ "item": item })).into_response()
}

async fn fields(Path(name): Path<String>) -> Response {
    let picklist = |values: &[(u64, &str)]| -> Vec<Value> {
        values
            .iter()
            .map(|(v, l)| json!({ "value": v.to_string(), "label": l, "isActive": true }))
            .collect()
    };
    let fields = match entity(&name) {
        Some("Companies") => json!([
            { "name": "id", "dataType": "long", "isPickList": false },
            { "name": "companyName", "dataType": "string", "isPickList": false },
            { "name": "companyType", "dataType": "integer", "isPickList": true,
              "picklistValues": picklist(&COMPANY_TYPES) },
        ]),
        Some("Opportunities") => json!([
            { "name": "id", "dataType": "long", "isPickList": false },
            { "name": "status", "dataType": "integer", "isPickList": true,
              "picklistValues": picklist(&OPPORTUNITY_STATUSES) },
        ]),
        Some(_) => json!([{ "name": "id", "dataType": "long", "isPickList": false }]),
        None => return errors(StatusCode::NOT_FOUND, "unknown entity"),
    };
    axum::Json(json!({ "fields": fields })).into_response()
}

/// Whether `record` passes one Autotask filter expression.
fn passes(filter: &Value, record: &Value) -> Result<bool, String> {
    let op = field(filter, "op")
        .and_then(Value::as_str)
        .ok_or("each filter needs an op")?
        .to_ascii_lowercase();
    if op == "and" || op == "or" {
        let items = field(filter, "items")
            .and_then(Value::as_array)
            .ok_or("and/or need items")?;
        let mut results = Vec::with_capacity(items.len());
        for item in items {
            results.push(passes(item, record)?);
        }
        return Ok(if op == "and" {
            results.iter().all(|r| *r)
        } else {
            results.iter().any(|r| *r)
        });
    }
    let name = field(filter, "field")
        .and_then(Value::as_str)
        .ok_or("each filter needs a field")?;
    let actual = field(record, name).unwrap_or(&Value::Null);
    let wanted = field(filter, "value").unwrap_or(&Value::Null);
    use std::cmp::Ordering::{Equal, Greater, Less};
    let ord = compare(actual, wanted);
    let text = |v: &Value| match v {
        Value::String(s) => s.to_lowercase(),
        other => other.to_string(),
    };
    Ok(match op.as_str() {
        "eq" => ord == Some(Equal),
        "noteq" => ord != Some(Equal),
        "gt" => ord == Some(Greater),
        "gte" => matches!(ord, Some(Greater | Equal)),
        "lt" => ord == Some(Less),
        "lte" => matches!(ord, Some(Less | Equal)),
        "contains" => text(actual).contains(&text(wanted)),
        "beginswith" => text(actual).starts_with(&text(wanted)),
        "endswith" => text(actual).ends_with(&text(wanted)),
        "exist" => !actual.is_null(),
        "notexist" => actual.is_null(),
        "in" => wanted
            .as_array()
            .is_some_and(|vs| vs.iter().any(|v| compare(actual, v) == Some(Equal))),
        other => return Err(format!("unsupported filter op {other:?}")),
    })
}

/// The next page of a query, with the cursor for the rest.
fn run_query(s: &Shared, cursor: Cursor) -> Response {
    let mut r = lock(&s.records);
    let mut items = Vec::new();
    let mut more = false;
    let lagging = r.lagging && cursor.entity == "Contracts";
    let rows: Vec<Value> = r
        .entities
        .get(cursor.entity)
        .filter(|_| !lagging)
        .map(|t| {
            t.range(cursor.after + 1..)
                .map(|(_, v)| v.clone())
                .collect()
        })
        .unwrap_or_default();
    for row in rows {
        let mut ok = true;
        for f in &cursor.filters {
            match passes(f, &row) {
                Ok(true) => {}
                Ok(false) => ok = false,
                Err(message) => return errors(StatusCode::BAD_REQUEST, &message),
            }
        }
        if !ok {
            continue;
        }
        if items.len() == cursor.max {
            more = true;
            break;
        }
        let mut row = row;
        if let Some(o) = row.as_object_mut() {
            o.remove("secretKey");
        }
        items.push(row);
    }
    let next = if more {
        let after = items
            .last()
            .and_then(|i| i["id"].as_u64())
            .unwrap_or(cursor.after);
        let token = random_hex(12);
        let url = format!(
            "{}/atservicesrest/v1.0/{}/query/next?paging={token}",
            lock(&s.base_url),
            cursor.entity
        );
        r.cursors.insert(token, Cursor { after, ..cursor });
        json!(url)
    } else {
        Value::Null
    };
    axum::Json(json!({
        "items": items,
        "pageDetails": { "count": items.len(), "requestCount": cursor.max,
                         "prevPageUrl": Value::Null, "nextPageUrl": next },
    }))
    .into_response()
}

async fn query(
    State(s): Ctx,
    Path(name): Path<String>,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    let Some(entity) = entity(&name) else {
        return errors(StatusCode::NOT_FOUND, "unknown entity");
    };
    let filters = field(&body, "filter")
        .and_then(Value::as_array)
        .cloned()
        .unwrap_or_default();
    if filters.is_empty() {
        return errors(StatusCode::BAD_REQUEST, "a query needs at least one filter");
    }
    let max = match field(&body, "MaxRecords").map(Value::as_u64) {
        None => MAX_RECORDS,
        Some(Some(n)) if (1..=MAX_RECORDS as u64).contains(&n) => n as usize,
        Some(_) => return errors(StatusCode::BAD_REQUEST, "MaxRecords must be 1 to 500"),
    };
    run_query(
        &s,
        Cursor {
            entity,
            filters,
            after: 0,
            max,
        },
    )
}

#[derive(Deserialize)]
struct NextQuery {
    paging: Option<String>,
}

async fn query_next(State(s): Ctx, Query(q): Query<NextQuery>) -> Response {
    let cursor = q
        .paging
        .and_then(|token| lock(&s.records).cursors.remove(&token));
    match cursor {
        Some(cursor) => run_query(&s, cursor),
        None => errors(StatusCode::BAD_REQUEST, "unknown or used paging token"),
    }
}

fn text_field(body: &Value, name: &str, max: usize) -> Result<String, String> {
    let value = field(body, name)
        .and_then(Value::as_str)
        .map(str::trim)
        .unwrap_or_default();
    if value.is_empty() || value.chars().count() > max {
        return Err(format!("{name} is required (at most {max} characters)"));
    }
    Ok(value.to_owned())
}

fn flag(body: &Value, name: &str) -> bool {
    field(body, name).and_then(Value::as_bool).unwrap_or(false)
}

async fn create(
    State(s): Ctx,
    Path(name): Path<String>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    let entity = match entity(&name) {
        Some(e @ ("Contracts" | "CompanyWebhooks")) => e,
        Some(_) => return errors(StatusCode::METHOD_NOT_ALLOWED, "create is not served here"),
        None => return errors(StatusCode::NOT_FOUND, "unknown entity"),
    };
    let record = |id: u64| -> Result<Value, String> {
        if entity == "Contracts" {
            let company = field(&body, "companyID")
                .and_then(Value::as_u64)
                .ok_or("companyID is required")?;
            let name = text_field(&body, "contractName", 100)?;
            Ok(contract(id, company, &name))
        } else {
            Ok(json!({
                "id": id,
                "name": text_field(&body, "Name", 50)?,
                "webhookUrl": text_field(&body, "WebhookUrl", 500)?,
                "deactivationUrl": text_field(&body, "DeactivationUrl", 500)?,
                "secretKey": text_field(&body, "SecretKey", 64)?,
                "isActive": flag(&body, "IsActive"),
                "isSubscribedToCreateEvents": flag(&body, "IsSubscribedToCreateEvents"),
                "isSubscribedToUpdateEvents": flag(&body, "IsSubscribedToUpdateEvents"),
                "isSubscribedToDeleteEvents": flag(&body, "IsSubscribedToDeleteEvents"),
                "notificationEmailAddress": field(&body, "NotificationEmailAddress").cloned().unwrap_or(Value::Null),
                "sendThresholdExceededNotification": flag(&body, "SendThresholdExceededNotification"),
                "webhookGUID": random_guid(),
                "isReady": false,
            }))
        }
    };
    s.harness.idempotent(&headers, || {
        let mut r = lock(&s.records);
        let id = r.next_id + 1;
        let built = record(id).and_then(|rec| {
            if entity == "Contracts"
                && r.get("Companies", rec["companyID"].as_u64().unwrap_or_default())
                    .is_none()
            {
                return Err("companyID does not exist".to_owned());
            }
            Ok(rec)
        });
        match built {
            Ok(rec) => {
                r.next_id = id;
                r.table(entity).insert(id, rec);
                s.harness.count(if entity == "Contracts" {
                    "contracts.created"
                } else {
                    "webhooks.created"
                });
                (StatusCode::OK, json!({ "itemId": id }))
            }
            Err(message) => (StatusCode::BAD_REQUEST, json!({ "errors": [message] })),
        }
    })
}

async fn update(
    State(s): Ctx,
    Path(name): Path<String>,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    let entity = match entity(&name) {
        Some(e @ ("Companies" | "Opportunities")) => e,
        Some(_) => return errors(StatusCode::METHOD_NOT_ALLOWED, "update is not served here"),
        None => return errors(StatusCode::NOT_FOUND, "unknown entity"),
    };
    let Some(id) = field(&body, "id").and_then(Value::as_u64) else {
        return errors(StatusCode::BAD_REQUEST, "id is required");
    };
    let mut r = lock(&s.records);
    let now = r.now();
    let Some(record) = r.table(entity).get_mut(&id) else {
        return errors(StatusCode::NOT_FOUND, &format!("{entity} {id} not found"));
    };
    let mut updated = record.clone();
    let Some(changes) = body.as_object() else {
        return errors(StatusCode::BAD_REQUEST, "the body must be an object");
    };
    for (key, value) in changes {
        if key.eq_ignore_ascii_case("id") {
            continue;
        }
        let Some(existing) = updated
            .as_object()
            .and_then(|o| o.keys().find(|k| k.eq_ignore_ascii_case(key)).cloned())
        else {
            return errors(StatusCode::BAD_REQUEST, &format!("unknown field {key}"));
        };
        updated[existing.as_str()] = value.clone();
    }
    if entity == "Opportunities" && updated["status"] != record["status"] {
        let closed = matches!(updated["status"].as_u64(), Some(2..=4));
        updated["closedDate"] = if closed { json!(now) } else { Value::Null };
    }
    let valid_type = |v: &Value| COMPANY_TYPES.iter().any(|(t, _)| v == t);
    let valid_status = |v: &Value| OPPORTUNITY_STATUSES.iter().any(|(t, _)| v == t);
    if (entity == "Companies" && !valid_type(&updated["companyType"]))
        || (entity == "Opportunities" && !valid_status(&updated["status"]))
    {
        return errors(StatusCode::BAD_REQUEST, "invalid picklist value");
    }
    *record = updated;
    s.harness.count(if entity == "Companies" {
        "companies.updated"
    } else {
        "opportunities.updated"
    });
    axum::Json(json!({ "itemId": id })).into_response()
}

async fn create_webhook_field(
    State(s): Ctx,
    Path((name, id)): Path<(String, u64)>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    if entity(&name) != Some("CompanyWebhooks") {
        return errors(StatusCode::NOT_FOUND, "unknown entity");
    }
    s.harness.idempotent(&headers, || {
        let mut r = lock(&s.records);
        if r.get("CompanyWebhooks", id).is_none() {
            return (
                StatusCode::NOT_FOUND,
                json!({ "errors": ["webhook not found"] }),
            );
        }
        let Some(field_id) = field(&body, "FieldID").and_then(Value::as_u64) else {
            return (
                StatusCode::BAD_REQUEST,
                json!({ "errors": ["FieldID is required"] }),
            );
        };
        if !COMPANY_FIELDS.iter().any(|(_, f)| *f == field_id) {
            return (
                StatusCode::BAD_REQUEST,
                json!({ "errors": ["unknown FieldID"] }),
            );
        }
        let subscribed = flag(&body, "IsSubscribedField");
        let item = r.id();
        r.webhook_fields.insert(
            item,
            json!({ "id": item, "webhookID": id, "fieldID": field_id,
                    "isSubscribedField": subscribed,
                    "isDisplayAlwaysField": flag(&body, "IsDisplayAlwaysField") }),
        );
        if subscribed && let Some(hook) = r.table("CompanyWebhooks").get_mut(&id) {
            hook["isReady"] = json!(true);
        }
        s.harness.count("webhook_fields.created");
        (StatusCode::OK, json!({ "itemId": item }))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn filters_nest_and_compare_dates_and_numbers() {
        let row = json!({"id": 7, "status": 3, "closedDate": "2026-03-01T00:00:00Z"});
        let f = json!({"op": "and", "items": [
            {"op": "gte", "field": "closedDate", "value": "2026-02-28T23:59:59.5Z"},
            {"op": "or", "items": [{"op": "eq", "field": "Status", "value": 4},
                                   {"op": "in", "field": "status", "value": [3]}]}]});
        assert!(passes(&f, &row).unwrap());
        let later = json!({"op": "gt", "field": "closedDate", "value": "2026-03-01T00:00:00Z"});
        assert!(!passes(&later, &row).unwrap());
        assert!(passes(&json!({"op": "like", "field": "id", "value": 1}), &row).is_err());
    }

    #[test]
    fn signature_is_prefixed_base64_hmac_sha1() {
        let mut mac = Hmac::<Sha1>::new_from_slice(b"secret").unwrap();
        mac.update(b"{}");
        let expected = format!("sha1={}", base64(&mac.finalize().into_bytes()));
        assert_eq!(sign("secret", b"{}"), expected);
    }
}
