//! A NinjaOne (RMM) emulator: the public API v2 calls Gatehouse makes to
//! open a client's organization and hand out its agent installer.
//!
//! Wire shapes follow NinjaOne's OpenAPI document:
//! - `POST /ws/oauth/token` (form, `grant_type=client_credentials`,
//!   `client_id`, `client_secret`, `scope`) answers a bearer token; a wrong
//!   client is `401 {"error":"invalid_client"}`. Every `/v2` call needs the
//!   bearer, or gets `401`.
//! - `GET /v2/organizations?pageSize=&after=`: a plain JSON array of
//!   organizations whose id is greater than `after`, at most `pageSize`
//!   (capped by [`NinjaOneEmulator::set_max_page_size`]); an empty array
//!   ends the listing.
//! - `POST /v2/organizations` (`{name, description, nodeApprovalMode, tags,
//!   fields, locations[], policies[]}`) answers the OrganizationDetailed.
//! - `GET|DELETE /v2/organization/{id}`. NinjaOne's public document does
//!   not list the delete; the emulator has it so undo paths can be tested
//!   (`204`, `404` when the organization is not there).
//! - `GET|POST /v2/organization/{id}/locations`.
//! - `GET /v2/organization/{id}/location/{location_id}/installer/{type}` and
//!   `POST /v2/organization/generate-installer` answer `{url}`.
//! - `GET /v2/organization/{id}/devices?pageSize=&after=`.
//!
//! Creates honour `Idempotency-Key` through the [`Harness`]. Counters:
//! `tokens.issued`, `auth.refused`, `organizations.created`,
//! `organizations.deleted`, `locations.created`, `installers.generated`.
//! Test-facing: [`NinjaOneEmulator::add_device`] makes an agent report from
//! an organization; [`NinjaOneEmulator::revoke_tokens`] makes every issued
//! token stale (the next call gets `401`); [`NinjaOneEmulator::rotate_secret`]
//! also changes the client secret; [`NinjaOneEmulator::enroll_devices`]
//! enrolls devices that report online, and the [`AutoEnroll`] knob
//! ([`NinjaOneEmulator::set_auto_enroll`]) does it by itself once a
//! location's installer link is made (counted as `devices.enrolled`).

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fmt;
use std::sync::{Arc, Mutex};

use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::emulator::{Harness, Served, error, lock, serve};
use crate::enroll::{self, AutoEnroll};

/// The installer types NinjaOne can generate.
pub const INSTALLER_TYPES: [&str; 9] = [
    "WINDOWS_MSI",
    "MAC_DMG",
    "MAC_PKG",
    "LINUX_DEB",
    "LINUX_RPM",
    "LINUX_ARM64_DEB",
    "LINUX_ARMV7A_DEB",
    "LINUX_ARM64_RPM",
    "LINUX_ARMV7A_RPM",
];

/// Page size when a listing names none.
const DEFAULT_PAGE_SIZE: usize = 100;

/// An organization as the emulator holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NinjaOrganization {
    /// NinjaOne's id.
    pub id: u64,
    /// Its name.
    pub name: String,
    /// Its node approval mode (`AUTOMATIC`, `MANUAL`, `REJECT`).
    pub node_approval_mode: String,
    /// Its locations: id and name.
    pub locations: Vec<(u64, String)>,
    /// How many devices report from it.
    pub devices: usize,
}

#[derive(Debug, Clone)]
struct Location {
    name: String,
    address: Option<String>,
    description: Option<String>,
}

#[derive(Debug, Clone)]
struct Device {
    name: String,
    location_id: Option<u64>,
    online: bool,
}

#[derive(Debug, Clone)]
struct Organization {
    name: String,
    description: Option<String>,
    node_approval_mode: String,
    tags: Vec<String>,
    locations: BTreeMap<u64, Location>,
    devices: BTreeMap<u64, Device>,
}

struct Store {
    client_id: String,
    client_secret: String,
    tokens: BTreeSet<String>,
    organizations: BTreeMap<u64, Organization>,
    next_id: u64,
    max_page_size: usize,
    auto_enroll: Option<AutoEnroll>,
    /// (organization, location) pairs whose devices auto-enrolled already.
    enrolled: BTreeSet<(u64, u64)>,
}

struct Shared {
    harness: Harness,
    store: Mutex<Store>,
}

/// Handle to a running NinjaOne emulator; dropping it stops the server.
pub struct NinjaOneEmulator {
    shared: Arc<Shared>,
    served: Served,
}

impl fmt::Debug for NinjaOneEmulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NinjaOneEmulator")
            .field("addr", &self.served.addr())
            .finish_non_exhaustive()
    }
}

impl NinjaOneEmulator {
    /// Starts on loopback; tokens are issued to this client id and secret.
    pub async fn start(client_id: &str, client_secret: &str) -> std::io::Result<Self> {
        let harness = Harness::new();
        let shared = Arc::new(Shared {
            harness: harness.clone(),
            store: Mutex::new(Store {
                client_id: client_id.to_owned(),
                client_secret: client_secret.to_owned(),
                tokens: BTreeSet::new(),
                organizations: BTreeMap::new(),
                next_id: 1,
                max_page_size: 1000,
                auto_enroll: None,
                enrolled: BTreeSet::new(),
            }),
        });
        let router = Router::new()
            .route("/ws/oauth/token", post(token))
            .route(
                "/v2/organizations",
                get(list_organizations).post(create_organization),
            )
            .route(
                "/v2/organization/{id}",
                get(get_organization).delete(delete_organization),
            )
            .route(
                "/v2/organization/{id}/locations",
                get(list_locations).post(create_location),
            )
            .route(
                "/v2/organization/{id}/location/{location}/installer/{kind}",
                get(installer),
            )
            .route(
                "/v2/organization/generate-installer",
                post(generate_installer),
            )
            .route("/v2/organization/{id}/devices", get(list_devices))
            .with_state(Arc::clone(&shared));
        let served = serve("ninjaone", router, &harness, None).await?;
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

    /// Caps every page at `n` items (at least 1), whatever the caller asks.
    pub fn set_max_page_size(&self, n: usize) {
        lock(&self.shared.store).max_page_size = n.max(1);
    }

    /// Makes every issued token stale: the next `/v2` call gets `401`.
    pub fn revoke_tokens(&self) {
        lock(&self.shared.store).tokens.clear();
    }

    /// Rotates the API client's secret, as an administrator would: every
    /// issued token is revoked and only `secret` gets a new one.
    pub fn rotate_secret(&self, secret: &str) {
        let mut store = lock(&self.shared.store);
        store.client_secret = secret.to_owned();
        store.tokens.clear();
    }

    /// Seeds an organization (not counted as `organizations.created`).
    pub fn add_organization(&self, name: &str) -> u64 {
        let mut store = lock(&self.shared.store);
        let id = store.next();
        store
            .organizations
            .insert(id, Organization::named(name.to_owned()));
        id
    }

    /// An agent starts reporting from `organization` (in its first location,
    /// if it has one); answers the device id, or `None` if there is no such
    /// organization.
    pub fn add_device(&self, organization: u64, name: &str, online: bool) -> Option<u64> {
        let mut store = lock(&self.shared.store);
        let id = store.next();
        let org = store.organizations.get_mut(&organization)?;
        let location_id = org.locations.keys().next().copied();
        org.devices.insert(
            id,
            Device {
                name: name.to_owned(),
                location_id,
                online,
            },
        );
        Some(id)
    }

    /// `count` devices enroll in `organization` (its first location, if it
    /// has one) and report online, named `{organization}-pc{n}`; answers
    /// their ids (empty if there is no such organization). Counted as
    /// `devices.enrolled`.
    pub fn enroll_devices(&self, organization: u64, count: usize) -> Vec<u64> {
        enroll_in(&self.shared, organization, None, count)
    }

    /// Knob: when an installer link of a location is made, `devices`
    /// devices enroll there after `delay`, once per location (`None`, the
    /// default: nobody runs the installer).
    pub fn set_auto_enroll(&self, auto: Option<AutoEnroll>) {
        lock(&self.shared.store).auto_enroll = auto;
    }

    /// Every organization, by id.
    pub fn organizations(&self) -> Vec<NinjaOrganization> {
        lock(&self.shared.store)
            .organizations
            .iter()
            .map(|(id, org)| NinjaOrganization {
                id: *id,
                name: org.name.clone(),
                node_approval_mode: org.node_approval_mode.clone(),
                locations: org
                    .locations
                    .iter()
                    .map(|(id, l)| (*id, l.name.clone()))
                    .collect(),
                devices: org.devices.len(),
            })
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

    fn page_size(&self, asked: Option<usize>) -> usize {
        asked
            .unwrap_or(DEFAULT_PAGE_SIZE)
            .clamp(1, self.max_page_size)
    }
}

impl Organization {
    fn named(name: String) -> Self {
        Self {
            name,
            description: None,
            node_approval_mode: "AUTOMATIC".to_owned(),
            tags: Vec::new(),
            locations: BTreeMap::new(),
            devices: BTreeMap::new(),
        }
    }

    fn summary(&self, id: u64) -> Value {
        json!({
            "id": id,
            "name": self.name,
            "description": self.description,
            "nodeApprovalMode": self.node_approval_mode,
            "tags": self.tags,
            "fields": {},
            "userData": {},
        })
    }

    fn detailed(&self, id: u64) -> Value {
        let mut value = self.summary(id);
        value["locations"] = self.locations.iter().map(|(lid, l)| l.json(*lid)).collect();
        value["policies"] = json!([]);
        value["settings"] = json!({});
        value
    }
}

impl Location {
    fn json(&self, id: u64) -> Value {
        json!({
            "id": id,
            "name": self.name,
            "address": self.address,
            "description": self.description,
            "tags": [],
            "fields": {},
        })
    }
}

fn random_hex() -> String {
    let bits = getrandom::u64().unwrap_or(0x5eed_5eed_5eed_5eed);
    format!("{bits:016x}")
}

/// The caller's bearer is one the emulator issued, or a `401` answer.
fn authorize(shared: &Shared, headers: &HeaderMap) -> Result<(), Box<Response>> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "));
    match bearer {
        Some(token) if lock(&shared.store).tokens.contains(token) => Ok(()),
        _ => {
            shared.harness.count("auth.refused");
            Err(Box::new(error(
                StatusCode::UNAUTHORIZED,
                "invalid or expired token",
            )))
        }
    }
}

/// `http://HOST` of the request, to build URLs that point back at us.
fn base_of(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1");
    format!("http://{host}")
}

#[derive(Deserialize)]
struct TokenForm {
    grant_type: Option<String>,
    client_id: Option<String>,
    client_secret: Option<String>,
    scope: Option<String>,
}

async fn token(State(shared): State<Arc<Shared>>, Form(form): Form<TokenForm>) -> Response {
    if form.grant_type.as_deref() != Some("client_credentials") {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": "unsupported_grant_type" })),
        )
            .into_response();
    }
    let mut store = lock(&shared.store);
    if form.client_id.as_deref() != Some(store.client_id.as_str())
        || form.client_secret.as_deref() != Some(store.client_secret.as_str())
    {
        shared.harness.count("auth.refused");
        return (
            StatusCode::UNAUTHORIZED,
            Json(json!({ "error": "invalid_client" })),
        )
            .into_response();
    }
    let token = format!("nj-{}", random_hex());
    store.tokens.insert(token.clone());
    shared.harness.count("tokens.issued");
    Json(json!({
        "access_token": token,
        "token_type": "bearer",
        "expires_in": 3600,
        "scope": form.scope.unwrap_or_else(|| "monitoring".to_owned()),
    }))
    .into_response()
}

#[derive(Deserialize)]
struct PageQuery {
    #[serde(rename = "pageSize")]
    page_size: Option<usize>,
    after: Option<u64>,
}

async fn list_organizations(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(page): Query<PageQuery>,
) -> Response {
    if let Err(refused) = authorize(&shared, &headers) {
        return *refused;
    }
    let store = lock(&shared.store);
    let size = store.page_size(page.page_size);
    let after = page.after.unwrap_or(0);
    let items: Vec<Value> = store
        .organizations
        .range(after.saturating_add(1)..)
        .take(size)
        .map(|(id, org)| org.summary(*id))
        .collect();
    Json(items).into_response()
}

#[derive(Deserialize)]
struct NewLocation {
    name: Option<String>,
    address: Option<String>,
    description: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct NewOrganization {
    name: Option<String>,
    description: Option<String>,
    node_approval_mode: Option<String>,
    #[serde(default)]
    tags: Vec<String>,
    #[serde(default)]
    locations: Vec<NewLocation>,
}

fn bad_request(message: &str) -> (StatusCode, Value) {
    (StatusCode::BAD_REQUEST, json!({ "error": message }))
}

async fn create_organization(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(refused) = authorize(&shared, &headers) {
        return *refused;
    }
    shared.harness.idempotent(&headers, || {
        let Ok(new) = serde_json::from_slice::<NewOrganization>(&body) else {
            return bad_request("the body is not an organization");
        };
        let Some(name) = new.name.filter(|n| !n.trim().is_empty()) else {
            return bad_request("name is required");
        };
        let mode = new
            .node_approval_mode
            .unwrap_or_else(|| "AUTOMATIC".to_owned());
        if !["AUTOMATIC", "MANUAL", "REJECT"].contains(&mode.as_str()) {
            return bad_request("nodeApprovalMode must be AUTOMATIC, MANUAL or REJECT");
        }
        let mut store = lock(&shared.store);
        let id = store.next();
        let mut org = Organization::named(name);
        org.description = new.description;
        org.node_approval_mode = mode;
        org.tags = new.tags;
        for location in new.locations {
            let lid = store.next();
            org.locations.insert(
                lid,
                Location {
                    name: location.name.unwrap_or_default(),
                    address: location.address,
                    description: location.description,
                },
            );
            shared.harness.count("locations.created");
        }
        let answer = org.detailed(id);
        store.organizations.insert(id, org);
        shared.harness.count("organizations.created");
        (StatusCode::OK, answer)
    })
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
        Some(org) => Json(org.detailed(id)).into_response(),
        None => error(StatusCode::NOT_FOUND, "organization not found"),
    }
}

async fn delete_organization(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<u64>,
) -> Response {
    if let Err(refused) = authorize(&shared, &headers) {
        return *refused;
    }
    if lock(&shared.store).organizations.remove(&id).is_none() {
        return error(StatusCode::NOT_FOUND, "organization not found");
    }
    shared.harness.count("organizations.deleted");
    StatusCode::NO_CONTENT.into_response()
}

async fn list_locations(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<u64>,
) -> Response {
    if let Err(refused) = authorize(&shared, &headers) {
        return *refused;
    }
    match lock(&shared.store).organizations.get(&id) {
        Some(org) => {
            let items: Vec<Value> = org.locations.iter().map(|(lid, l)| l.json(*lid)).collect();
            Json(items).into_response()
        }
        None => error(StatusCode::NOT_FOUND, "organization not found"),
    }
}

async fn create_location(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<u64>,
    body: axum::body::Bytes,
) -> Response {
    if let Err(refused) = authorize(&shared, &headers) {
        return *refused;
    }
    shared.harness.idempotent(&headers, || {
        let Ok(new) = serde_json::from_slice::<NewLocation>(&body) else {
            return bad_request("the body is not a location");
        };
        let Some(name) = new.name.filter(|n| !n.trim().is_empty()) else {
            return bad_request("name is required");
        };
        let mut store = lock(&shared.store);
        let lid = store.next();
        let Some(org) = store.organizations.get_mut(&id) else {
            return (
                StatusCode::NOT_FOUND,
                json!({ "error": "organization not found" }),
            );
        };
        let location = Location {
            name,
            address: new.address,
            description: new.description,
        };
        let answer = location.json(lid);
        org.locations.insert(lid, location);
        shared.harness.count("locations.created");
        (StatusCode::OK, answer)
    })
}

/// `count` online devices in `organization` (in `location`, else its first
/// location); their ids.
fn enroll_in(shared: &Shared, organization: u64, location: Option<u64>, count: usize) -> Vec<u64> {
    let mut store = lock(&shared.store);
    if !store.organizations.contains_key(&organization) {
        return Vec::new();
    }
    let ids: Vec<u64> = (0..count).map(|_| store.next()).collect();
    let Some(org) = store.organizations.get_mut(&organization) else {
        return Vec::new();
    };
    let location_id = location.or_else(|| org.locations.keys().next().copied());
    for id in &ids {
        let name = enroll::device_name(&org.name, org.devices.len() + 1);
        org.devices.insert(
            *id,
            Device {
                name,
                location_id,
                online: true,
            },
        );
    }
    drop(store);
    for _ in &ids {
        shared.harness.count("devices.enrolled");
    }
    ids
}

/// Schedules the auto-enrollment of a location whose installer link was
/// just made, unless it is off or that location's devices enrolled already.
fn auto_enroll(shared: &Arc<Shared>, organization: u64, location: u64) {
    let auto = {
        let mut store = lock(&shared.store);
        let Some(auto) = store.auto_enroll else {
            return;
        };
        if !store.enrolled.insert((organization, location)) {
            return;
        }
        auto
    };
    let shared = Arc::clone(shared);
    enroll::after(auto.delay, move || {
        enroll_in(&shared, organization, Some(location), auto.devices);
    });
}

/// The installer URL of a location, or why there is none.
fn installer_url(
    shared: &Arc<Shared>,
    base: &str,
    organization: u64,
    location: u64,
    kind: &str,
) -> Result<String, Box<Response>> {
    if !INSTALLER_TYPES.contains(&kind) {
        return Err(Box::new(error(
            StatusCode::BAD_REQUEST,
            "unknown installer type",
        )));
    }
    let store = lock(&shared.store);
    let Some(org) = store.organizations.get(&organization) else {
        return Err(Box::new(error(
            StatusCode::NOT_FOUND,
            "organization not found",
        )));
    };
    if !org.locations.contains_key(&location) {
        return Err(Box::new(error(StatusCode::NOT_FOUND, "location not found")));
    }
    drop(store);
    shared.harness.count("installers.generated");
    auto_enroll(shared, organization, location);
    let extension = kind
        .rsplit('_')
        .next()
        .unwrap_or("bin")
        .to_ascii_lowercase();
    Ok(format!(
        "{base}/agent/installer/{}/org{organization}-loc{location}.{extension}",
        random_hex()
    ))
}

async fn installer(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path((id, location, kind)): Path<(u64, u64, String)>,
) -> Response {
    if let Err(refused) = authorize(&shared, &headers) {
        return *refused;
    }
    match installer_url(&shared, &base_of(&headers), id, location, &kind) {
        Ok(url) => Json(json!({ "url": url })).into_response(),
        Err(refused) => *refused,
    }
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct GenerateInstaller {
    organization_id: u64,
    location_id: u64,
    installer_type: String,
}

async fn generate_installer(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Response {
    if let Err(refused) = authorize(&shared, &headers) {
        return *refused;
    }
    let Ok(ask) = serde_json::from_slice::<GenerateInstaller>(&body) else {
        return error(
            StatusCode::BAD_REQUEST,
            "organizationId, locationId and installerType are required",
        );
    };
    match installer_url(
        &shared,
        &base_of(&headers),
        ask.organization_id,
        ask.location_id,
        &ask.installer_type,
    ) {
        Ok(url) => Json(json!({ "url": url })).into_response(),
        Err(refused) => *refused,
    }
}

async fn list_devices(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(id): Path<u64>,
    Query(page): Query<HashMap<String, String>>,
) -> Response {
    if let Err(refused) = authorize(&shared, &headers) {
        return *refused;
    }
    let (Ok(size), Ok(after)) = (
        page.get("pageSize").map(|s| s.parse::<usize>()).transpose(),
        page.get("after").map(|s| s.parse::<u64>()).transpose(),
    ) else {
        return error(StatusCode::BAD_REQUEST, "pageSize and after are numbers");
    };
    let store = lock(&shared.store);
    let size = store.page_size(size);
    let Some(org) = store.organizations.get(&id) else {
        return error(StatusCode::NOT_FOUND, "organization not found");
    };
    let items: Vec<Value> = org
        .devices
        .range(after.unwrap_or(0).saturating_add(1)..)
        .take(size)
        .map(|(did, d)| {
            json!({
                "id": did,
                "organizationId": id,
                "locationId": d.location_id,
                "nodeClass": "WINDOWS_WORKSTATION",
                "approvalStatus": "APPROVED",
                "offline": !d.online,
                "displayName": d.name,
                "systemName": d.name.to_ascii_uppercase(),
            })
        })
        .collect();
    Json(items).into_response()
}
