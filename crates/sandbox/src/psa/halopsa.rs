//! HaloPSA REST API, in memory.
//!
//! - `POST /auth/token`: OAuth 2.0 client credentials (form body
//!   `grant_type`, `client_id`, `client_secret`, `scope`) → a bearer token
//!   for `/api/…` (401 without one). [`HaloPsaEmulator::expire_tokens`]
//!   revokes every token, to test a client's re-fetch on 401.
//! - `/api/Client`, `/api/Site`, `/api/ClientContract`, `/api/Tickets`:
//!   `GET` lists (`pageinate=true&page_no=&page_size=` pages; filters
//!   `client_id`, `tickettype_id`, `status_id`; the answer carries
//!   `record_count` and the list under `clients`, `sites`, `contracts`,
//!   `tickets`), `GET /{id}` (404 when missing), and `POST` of an array of
//!   objects, Halo's one write: an object with an existing `id` is updated,
//!   one without is created. The answer is the saved object (an array when
//!   several were posted).
//! - `/api/Status`: ticket statuses (1 New, 2 In Progress, 9 Closed, 20 Won,
//!   21 Lost).
//! - Opportunities: Halo keeps them in its CRM as tickets of a ticket type;
//!   here an opportunity is a ticket with a `tickettype_id` and a status.
//! - `/api/Webhook`: outbound webhooks (`name`, `url`, `events`,
//!   `authentication_type` 0 none, 1 Basic with `basic_username` /
//!   `basic_password`, 2 Bearer with `bearer_token`). Halo signs nothing;
//!   [`HaloPsaEmulator::win_opportunity`] delivers the ticket and action as
//!   JSON with the configured `Authorization` header to every webhook
//!   subscribed to `Ticket Updated`.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, Query, Request, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::macros::format_description;

use super::{Delivery, base64, epoch, field, random_hex};
use crate::emulator::{Harness, Served, lock, serve};

/// The ticket status a won opportunity gets.
pub const WON_STATUS: u64 = 20;
/// Ticket statuses.
const STATUSES: [(u64, &str); 5] = [
    (1, "New"),
    (2, "In Progress"),
    (9, "Closed"),
    (20, "Won"),
    (21, "Lost"),
];
/// Statuses that close a ticket (set `dateclosed`).
const CLOSED: [u64; 3] = [9, 20, 21];
/// The webhook event [`HaloPsaEmulator::win_opportunity`] fires.
pub const TICKET_UPDATED: &str = "Ticket Updated";

/// The API application the emulator accepts.
#[derive(Clone)]
pub struct HaloCredentials {
    /// The application's client id.
    pub client_id: String,
    /// The application's client secret.
    pub client_secret: String,
}

impl fmt::Debug for HaloCredentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HaloCredentials")
            .field("client_id", &self.client_id)
            .finish_non_exhaustive()
    }
}

/// A resource: its path segment, the list's key in answers, and the
/// counter prefix.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
enum Kind {
    Client,
    Site,
    Contract,
    Ticket,
    Webhook,
}

impl Kind {
    fn parse(segment: &str) -> Option<Self> {
        match segment.to_ascii_lowercase().as_str() {
            "client" => Some(Self::Client),
            "site" => Some(Self::Site),
            "clientcontract" => Some(Self::Contract),
            "tickets" => Some(Self::Ticket),
            "webhook" => Some(Self::Webhook),
            _ => None,
        }
    }

    fn list_key(self) -> &'static str {
        match self {
            Self::Client => "clients",
            Self::Site => "sites",
            Self::Contract => "contracts",
            Self::Ticket => "tickets",
            Self::Webhook => "webhooks",
        }
    }

    fn counter(self) -> &'static str {
        match self {
            Self::Client => "clients",
            Self::Site => "sites",
            Self::Contract => "contracts",
            Self::Ticket => "tickets",
            Self::Webhook => "webhooks",
        }
    }
}

#[derive(Default)]
struct Records {
    tables: BTreeMap<Kind, BTreeMap<u64, Value>>,
    tokens: BTreeSet<String>,
    next_id: u64,
    now: Option<OffsetDateTime>,
    /// Contract lists answer nothing (a search index behind its writes).
    lagging: bool,
}

impl Records {
    fn id(&mut self) -> u64 {
        self.next_id += 1;
        self.next_id
    }

    fn now(&self) -> String {
        halo_time(self.now.unwrap_or_else(epoch))
    }

    fn table(&mut self, kind: Kind) -> &mut BTreeMap<u64, Value> {
        self.tables.entry(kind).or_default()
    }
}

/// Halo's date format: UTC without an offset.
fn halo_time(at: OffsetDateTime) -> String {
    at.to_offset(time::UtcOffset::UTC)
        .format(format_description!(
            "[year]-[month]-[day]T[hour]:[minute]:[second]"
        ))
        .unwrap_or_default()
}

struct Shared {
    credentials: HaloCredentials,
    harness: Harness,
    records: Mutex<Records>,
}

/// A running HaloPSA emulator.
pub struct HaloPsaEmulator {
    served: Served,
    shared: Arc<Shared>,
}

impl fmt::Debug for HaloPsaEmulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("HaloPsaEmulator")
            .field("url", &self.served.url())
            .finish_non_exhaustive()
    }
}

impl HaloPsaEmulator {
    /// Starts on loopback, accepting `credentials`.
    pub async fn start(credentials: HaloCredentials) -> std::io::Result<Self> {
        let harness = Harness::new();
        let shared = Arc::new(Shared {
            credentials,
            harness: harness.clone(),
            records: Mutex::new(Records::default()),
        });
        let served = serve("halopsa", router(Arc::clone(&shared)), &harness, None).await?;
        Ok(Self { served, shared })
    }

    /// `http://127.0.0.1:PORT` (token at `/auth/token`, API under `/api`).
    pub fn url(&self) -> String {
        self.served.url()
    }

    /// Fault knobs and counters: `tokens.issued`, `clients.created`,
    /// `clients.updated`, `contracts.created`, `tickets.created`,
    /// `tickets.updated`, `webhooks.created`, `webhooks.delivered`, …
    pub fn harness(&self) -> &Harness {
        &self.shared.harness
    }

    /// Sets the emulator's clock; it starts at 2026-01-01.
    pub fn set_now(&self, at: OffsetDateTime) {
        lock(&self.shared.records).now = Some(at);
    }

    /// Revokes every issued token: the next API call with one gets 401.
    pub fn expire_tokens(&self) {
        lock(&self.shared.records).tokens.clear();
    }

    /// Knob: while on, contract lists answer nothing, as a search index
    /// that has not caught up with writes would; a client's look-before-
    /// create then misses, and only the `Idempotency-Key` prevents a
    /// duplicate.
    pub fn set_list_lag(&self, lagging: bool) {
        lock(&self.shared.records).lagging = lagging;
    }

    /// Adds a client (customer) with a customer type; answers its id.
    pub fn seed_client(&self, name: &str, customer_type: &str) -> u64 {
        let mut r = lock(&self.shared.records);
        let id = r.id();
        r.table(Kind::Client).insert(
            id,
            json!({ "id": id, "name": name, "inactive": false, "customertype": customer_type }),
        );
        id
    }

    /// Sets a client's `website` (what the intake reads the client's
    /// internet domain from); false if there is no such client.
    pub fn set_client_website(&self, client: u64, website: &str) -> bool {
        let mut r = lock(&self.shared.records);
        let Some(record) = r.table(Kind::Client).get_mut(&client) else {
            return false;
        };
        record["website"] = json!(website);
        true
    }

    /// Adds a contract for a client; answers its id.
    pub fn seed_contract(&self, client: u64, reference: &str) -> u64 {
        let mut r = lock(&self.shared.records);
        let id = r.id();
        r.table(Kind::Contract).insert(
            id,
            json!({ "id": id, "client_id": client, "ref": reference }),
        );
        id
    }

    /// Adds a ticket (an opportunity when `tickettype_id` is the CRM type)
    /// with a status and optional closed date; answers its id.
    pub fn seed_ticket(
        &self,
        summary: &str,
        client: u64,
        tickettype_id: u64,
        status_id: u64,
        closed: Option<OffsetDateTime>,
    ) -> u64 {
        let mut r = lock(&self.shared.records);
        let id = r.id();
        let closed = closed.map(halo_time);
        r.table(Kind::Ticket).insert(
            id,
            json!({ "id": id, "summary": summary, "client_id": client,
                    "tickettype_id": tickettype_id, "status_id": status_id,
                    "dateclosed": closed }),
        );
        id
    }

    /// A record by resource and id.
    fn record(&self, kind: Kind, id: u64) -> Option<Value> {
        lock(&self.shared.records)
            .tables
            .get(&kind)
            .and_then(|t| t.get(&id))
            .cloned()
    }

    /// The client record.
    pub fn client(&self, id: u64) -> Option<Value> {
        self.record(Kind::Client, id)
    }

    /// The ticket record.
    pub fn ticket(&self, id: u64) -> Option<Value> {
        self.record(Kind::Ticket, id)
    }

    /// Every contract.
    pub fn contracts(&self) -> Vec<Value> {
        self.all(Kind::Contract)
    }

    /// Every webhook configuration.
    pub fn webhooks(&self) -> Vec<Value> {
        self.all(Kind::Webhook)
    }

    fn all(&self, kind: Kind) -> Vec<Value> {
        lock(&self.shared.records)
            .tables
            .get(&kind)
            .map(|t| t.values().cloned().collect())
            .unwrap_or_default()
    }

    /// Marks the ticket won (status [`WON_STATUS`], closed now) and delivers
    /// the `Ticket Updated` webhooks with the ticket and the action; answers
    /// the deliveries.
    pub async fn win_opportunity(&self, id: u64) -> Vec<Delivery> {
        let planned = {
            let mut r = lock(&self.shared.records);
            let now = r.now();
            let action_id = r.id();
            let Some(ticket) = r.table(Kind::Ticket).get_mut(&id) else {
                return Vec::new();
            };
            ticket["status_id"] = json!(WON_STATUS);
            ticket["dateclosed"] = json!(now);
            let ticket = ticket.clone();
            let body = json!({
                "event": TICKET_UPDATED,
                "ticket": ticket,
                "action": { "id": action_id, "ticket_id": id, "outcome": "Status Change",
                            "note": "Status changed to Won", "datetime": now,
                            "new_status": WON_STATUS },
            })
            .to_string()
            .into_bytes();
            r.table(Kind::Webhook)
                .values()
                .filter(|w| w["isactive"] != false && subscribed(w, TICKET_UPDATED))
                .map(|w| Delivery {
                    url: w["url"].as_str().unwrap_or_default().to_owned(),
                    headers: authentication(w).into_iter().collect(),
                    body: body.clone(),
                    status: None,
                })
                .collect::<Vec<_>>()
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

    /// Stops the server.
    pub async fn shutdown(self) {
        self.served.shutdown().await;
    }
}

/// Whether a webhook's `events` include `event` (as a string or an object
/// with a `name`).
fn subscribed(webhook: &Value, event: &str) -> bool {
    webhook["events"].as_array().is_some_and(|events| {
        events.iter().any(|e| {
            e.as_str()
                .or_else(|| field(e, "name").and_then(Value::as_str))
                .is_some_and(|n| n.eq_ignore_ascii_case(event))
        })
    })
}

/// The `Authorization` header a webhook is configured to send.
fn authentication(webhook: &Value) -> Option<(String, String)> {
    let text = |n: &str| webhook[n].as_str().unwrap_or_default();
    match webhook["authentication_type"].as_u64() {
        Some(1) => Some((
            "Authorization".to_owned(),
            format!(
                "Basic {}",
                base64(format!("{}:{}", text("basic_username"), text("basic_password")).as_bytes())
            ),
        )),
        Some(2) => Some((
            "Authorization".to_owned(),
            format!("Bearer {}", text("bearer_token")),
        )),
        _ => None,
    }
}

fn halo_error(status: StatusCode, message: &str) -> Response {
    (
        status,
        axum::Json(json!({ "error": message, "message": message })),
    )
        .into_response()
}

type Ctx = State<Arc<Shared>>;

fn router(shared: Arc<Shared>) -> Router {
    let api = Router::new()
        .route("/Status", get(statuses))
        .route("/{resource}", get(list).post(save))
        .route("/{resource}/{id}", get(read))
        .route_layer(middleware::from_fn_with_state(
            Arc::clone(&shared),
            authenticate,
        ));
    Router::new()
        .route("/auth/token", post(token))
        .nest("/api", api)
        .with_state(shared)
}

/// Decodes an `application/x-www-form-urlencoded` body.
fn form(body: &[u8]) -> BTreeMap<String, String> {
    let decode = |s: &str| -> String {
        let bytes = s.as_bytes();
        let mut out = Vec::with_capacity(bytes.len());
        let mut i = 0;
        while i < bytes.len() {
            match bytes[i] {
                b'+' => out.push(b' '),
                b'%' if i + 2 < bytes.len() => {
                    let hex = std::str::from_utf8(&bytes[i + 1..i + 3]).unwrap_or("");
                    match u8::from_str_radix(hex, 16) {
                        Ok(b) => {
                            out.push(b);
                            i += 2;
                        }
                        Err(_) => out.push(b'%'),
                    }
                }
                b => out.push(b),
            }
            i += 1;
        }
        String::from_utf8_lossy(&out).into_owned()
    };
    String::from_utf8_lossy(body)
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|pair| {
            let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
            (decode(k), decode(v))
        })
        .collect()
}

async fn token(State(s): Ctx, body: Bytes) -> Response {
    let form = form(&body);
    let get = |k: &str| form.get(k).map(String::as_str).unwrap_or_default();
    if get("grant_type") != "client_credentials" {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({ "error": "unsupported_grant_type" })),
        )
            .into_response();
    }
    if get("client_id") != s.credentials.client_id
        || get("client_secret") != s.credentials.client_secret
    {
        return (
            StatusCode::BAD_REQUEST,
            axum::Json(json!({ "error": "invalid_client" })),
        )
            .into_response();
    }
    let token = random_hex(24);
    lock(&s.records).tokens.insert(token.clone());
    s.harness.count("tokens.issued");
    let scope = if get("scope").is_empty() {
        "all"
    } else {
        get("scope")
    };
    axum::Json(json!({
        "access_token": token, "token_type": "Bearer", "expires_in": 3600, "scope": scope,
    }))
    .into_response()
}

async fn authenticate(State(s): Ctx, request: Request, next: Next) -> Response {
    let known = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .is_some_and(|t| lock(&s.records).tokens.contains(t.trim()));
    if !known {
        return halo_error(StatusCode::UNAUTHORIZED, "a valid bearer token is required");
    }
    next.run(request).await
}

async fn statuses() -> Response {
    let all: Vec<Value> = STATUSES
        .iter()
        .map(|(id, name)| json!({ "id": id, "name": name }))
        .collect();
    axum::Json(all).into_response()
}

#[derive(Deserialize)]
struct ListQuery {
    pageinate: Option<bool>,
    page_no: Option<usize>,
    page_size: Option<usize>,
    client_id: Option<u64>,
    tickettype_id: Option<u64>,
    status_id: Option<u64>,
}

async fn list(State(s): Ctx, Path(resource): Path<String>, Query(q): Query<ListQuery>) -> Response {
    let Some(kind) = Kind::parse(&resource) else {
        return halo_error(StatusCode::NOT_FOUND, "unknown resource");
    };
    let rows: Vec<Value> = {
        let r = lock(&s.records);
        let lagging = r.lagging && kind == Kind::Contract;
        r.tables
            .get(&kind)
            .filter(|_| !lagging)
            .map(|t| t.values().cloned().collect())
            .unwrap_or_default()
    };
    let wanted = |row: &Value, name: &str, value: Option<u64>| value.is_none_or(|v| row[name] == v);
    let rows: Vec<Value> = rows
        .into_iter()
        .filter(|r| {
            wanted(r, "client_id", q.client_id)
                && wanted(r, "tickettype_id", q.tickettype_id)
                && wanted(r, "status_id", q.status_id)
        })
        .collect();
    let total = rows.len();
    let (page_no, page_size, rows) = if q.pageinate == Some(true) {
        let size = q.page_size.unwrap_or(50).clamp(1, 100);
        let page = q.page_no.unwrap_or(1).max(1);
        let rows = rows
            .into_iter()
            .skip((page - 1).saturating_mul(size))
            .take(size)
            .collect();
        (page, size, rows)
    } else {
        (1, total, rows)
    };
    axum::Json(json!({
        "page_no": page_no, "page_size": page_size, "record_count": total,
        kind.list_key(): rows,
    }))
    .into_response()
}

async fn read(State(s): Ctx, Path((resource, id)): Path<(String, String)>) -> Response {
    let Some(kind) = Kind::parse(&resource) else {
        return halo_error(StatusCode::NOT_FOUND, "unknown resource");
    };
    let Ok(id) = id.parse::<u64>() else {
        return halo_error(StatusCode::BAD_REQUEST, "the id must be a number");
    };
    let r = lock(&s.records);
    match r.tables.get(&kind).and_then(|t| t.get(&id)) {
        Some(row) => axum::Json(row.clone()).into_response(),
        None => halo_error(StatusCode::NOT_FOUND, "record not found"),
    }
}

/// Checks an object to create: the fields each resource needs.
fn check_new(kind: Kind, object: &Value, r: &Records) -> Result<(), String> {
    let text = |n: &str| object[n].as_str().is_some_and(|s| !s.trim().is_empty());
    let client_exists = |field: &str| {
        object[field].as_u64().is_some_and(|id| {
            r.tables
                .get(&Kind::Client)
                .is_some_and(|t| t.contains_key(&id))
        })
    };
    match kind {
        Kind::Client if !text("name") => Err("name is required".into()),
        Kind::Site if !text("name") || !client_exists("client_id") => {
            Err("name and an existing client_id are required".into())
        }
        Kind::Contract if !text("ref") || !client_exists("client_id") => {
            Err("ref and an existing client_id are required".into())
        }
        Kind::Ticket if !text("summary") || !client_exists("client_id") => {
            Err("summary and an existing client_id are required".into())
        }
        Kind::Webhook if !text("url") || !text("name") => Err("name and url are required".into()),
        _ => Ok(()),
    }
}

async fn save(
    State(s): Ctx,
    Path(resource): Path<String>,
    headers: HeaderMap,
    axum::Json(body): axum::Json<Value>,
) -> Response {
    let Some(kind) = Kind::parse(&resource) else {
        return halo_error(StatusCode::NOT_FOUND, "unknown resource");
    };
    let Some(objects) = body.as_array().filter(|a| !a.is_empty()).cloned() else {
        return halo_error(
            StatusCode::BAD_REQUEST,
            "the body must be a non-empty array of objects",
        );
    };
    s.harness.idempotent(&headers, || {
        let mut r = lock(&s.records);
        let now = r.now();
        // Validate everything first, so a rejected batch changes nothing.
        for object in &objects {
            if !object.is_object() {
                return (
                    StatusCode::BAD_REQUEST,
                    json!({ "error": "each item must be an object" }),
                );
            }
            match object["id"].as_u64().filter(|id| *id > 0) {
                Some(id) if !r.tables.get(&kind).is_some_and(|t| t.contains_key(&id)) => {
                    return (
                        StatusCode::NOT_FOUND,
                        json!({ "error": format!("{id} not found") }),
                    );
                }
                Some(_) => {}
                None => {
                    if let Err(message) = check_new(kind, object, &r) {
                        return (StatusCode::BAD_REQUEST, json!({ "error": message }));
                    }
                }
            }
            if kind == Kind::Ticket
                && let Some(status) = object.get("status_id")
                && !STATUSES.iter().any(|(id, _)| status == id)
            {
                return (
                    StatusCode::BAD_REQUEST,
                    json!({ "error": "unknown status_id" }),
                );
            }
        }
        let mut saved = Vec::new();
        for object in objects {
            let (id, created) = match object["id"].as_u64().filter(|id| *id > 0) {
                Some(id) => (id, false),
                None => (r.id(), true),
            };
            let table = r.table(kind);
            let row = table.entry(id).or_insert_with(|| json!({ "id": id }));
            let before = row["status_id"].clone();
            if let (Some(row), Some(changes)) = (row.as_object_mut(), object.as_object()) {
                for (k, v) in changes {
                    if k != "id" {
                        row.insert(k.clone(), v.clone());
                    }
                }
            }
            if kind == Kind::Ticket && row["status_id"] != before {
                let closed = row["status_id"]
                    .as_u64()
                    .is_some_and(|s| CLOSED.contains(&s));
                row["dateclosed"] = if closed { json!(now) } else { Value::Null };
            }
            saved.push(row.clone());
            let verb = if created { "created" } else { "updated" };
            s.harness.count(&format!("{}.{verb}", kind.counter()));
        }
        let answer = if saved.len() == 1 {
            saved.remove(0)
        } else {
            Value::Array(saved)
        };
        (StatusCode::CREATED, answer)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn form_bodies_decode_percent_and_plus() {
        let f = form(b"grant_type=client_credentials&scope=read%3Atickets+all&x=%zz");
        assert_eq!(f["grant_type"], "client_credentials");
        assert_eq!(f["scope"], "read:tickets all");
        assert_eq!(f["x"], "%zz");
    }

    #[test]
    fn webhooks_authenticate_as_configured() {
        let basic = json!({"authentication_type": 1, "basic_username": "u", "basic_password": "p"});
        assert_eq!(authentication(&basic).unwrap().1, "Basic dTpw");
        let bearer = json!({"authentication_type": 2, "bearer_token": "t"});
        assert_eq!(authentication(&bearer).unwrap().1, "Bearer t");
        assert!(authentication(&json!({})).is_none());
        assert!(subscribed(
            &json!({"events": [{"name": "ticket updated"}]}),
            TICKET_UPDATED
        ));
    }
}
