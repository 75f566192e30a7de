//! A Datto RMM emulator: the API v2 calls Gatehouse makes to open a
//! client's site and hand out its agent download link.
//!
//! Wire shapes follow Datto RMM's Swagger document and the public
//! PowerShell module that speaks it:
//! - `POST /auth/oauth/token`, HTTP Basic `public-client:public`, form
//!   `grant_type=password&username={apiKey}&password={apiSecret}`, answers a
//!   bearer token. Without the Basic client it is `401`; a wrong key or
//!   secret is `400 {"error":"invalid_grant"}`. Every `/api` call needs the
//!   bearer, or gets `401`.
//! - `GET /api/v2/account/sites?page=&max=` (page numbers from 0) answers
//!   `{pageDetails:{count, totalCount, prevPageUrl, nextPageUrl}, sites:[…]}`;
//!   `nextPageUrl` is absolute, or `null` on the last page.
//! - `PUT /api/v2/site` (`{name, description, notes, onDemand,
//!   splashtopAutoInstall}`) creates a site and answers it.
//! - `GET /api/v2/site/{siteUid}` and `POST /api/v2/site/{siteUid}` (update).
//!   The API has no call that deletes a site, and neither has the emulator.
//! - `GET /api/v2/site/{siteUid}/devices?page=&max=`, paged as above with
//!   `devices:[…]`.
//! - `GET /csm/profile/downloadAgent/{siteUid}`: the agent installer, served
//!   by the web platform (the emulator serves both on one port).
//!
//! Creates honour `Idempotency-Key` through the [`Harness`]. Counters:
//! `tokens.issued`, `auth.refused`, `sites.created`, `sites.updated`,
//! `agents.downloaded`, `devices.enrolled`. Test-facing:
//! [`DattoRmmEmulator::enroll_devices`]; the [`AutoEnroll`] knob
//! ([`DattoRmmEmulator::set_auto_enroll`]) enrolls devices in every new
//! site, whose agent link exists from its creation on.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::{Arc, Mutex};

use axum::body::Bytes;
use axum::extract::{Form, Path, Query, State};
use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use base64::Engine;
use serde::Deserialize;
use serde_json::{Value, json};

use crate::emulator::{Harness, Served, error, lock, serve};
use crate::enroll::{self, AutoEnroll};

/// The page size when a listing names none (Datto's default is 250).
const DEFAULT_PAGE_SIZE: usize = 250;

/// A site as the emulator holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DattoSite {
    /// Datto's numeric id.
    pub id: u64,
    /// Datto's uid, used in every URL.
    pub uid: String,
    /// Its name.
    pub name: String,
    /// Its description.
    pub description: Option<String>,
    /// How many devices report from it.
    pub devices: usize,
}

#[derive(Debug, Clone)]
struct Site {
    id: u64,
    name: String,
    description: Option<String>,
    notes: Option<String>,
    on_demand: bool,
    splashtop_auto_install: bool,
    devices: Vec<(String, String, bool)>,
}

struct Store {
    api_key: String,
    api_secret: String,
    tokens: BTreeSet<String>,
    /// Sites by uid; `order` keeps them in creation order for paging.
    sites: BTreeMap<String, Site>,
    order: Vec<String>,
    next_id: u64,
    max_page_size: usize,
    auto_enroll: Option<AutoEnroll>,
}

struct Shared {
    harness: Harness,
    store: Mutex<Store>,
}

/// Handle to a running Datto RMM emulator; dropping it stops the server.
pub struct DattoRmmEmulator {
    shared: Arc<Shared>,
    served: Served,
}

impl fmt::Debug for DattoRmmEmulator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("DattoRmmEmulator")
            .field("addr", &self.served.addr())
            .finish_non_exhaustive()
    }
}

impl DattoRmmEmulator {
    /// Starts on loopback; tokens are issued for this API key and secret.
    pub async fn start(api_key: &str, api_secret: &str) -> std::io::Result<Self> {
        let harness = Harness::new();
        let shared = Arc::new(Shared {
            harness: harness.clone(),
            store: Mutex::new(Store {
                api_key: api_key.to_owned(),
                api_secret: api_secret.to_owned(),
                tokens: BTreeSet::new(),
                sites: BTreeMap::new(),
                order: Vec::new(),
                next_id: 1,
                max_page_size: DEFAULT_PAGE_SIZE,
                auto_enroll: None,
            }),
        });
        let router = Router::new()
            .route("/auth/oauth/token", post(token))
            .route("/api/v2/account/sites", get(list_sites))
            .route("/api/v2/site", put(create_site))
            .route("/api/v2/site/{uid}", get(get_site).post(update_site))
            .route("/api/v2/site/{uid}/devices", get(list_devices))
            .route("/csm/profile/downloadAgent/{uid}", get(download_agent))
            .with_state(Arc::clone(&shared));
        let served = serve("dattormm", router, &harness, None).await?;
        Ok(Self { shared, served })
    }

    /// Base URL of the API and the web platform, `http://127.0.0.1:PORT`.
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

    /// Makes every issued token stale: the next `/api` call gets `401`.
    pub fn revoke_tokens(&self) {
        lock(&self.shared.store).tokens.clear();
    }

    /// Seeds a site (not counted as `sites.created`); answers its uid.
    pub fn add_site(&self, name: &str) -> String {
        let mut store = lock(&self.shared.store);
        store.insert(Site {
            id: 0,
            name: name.to_owned(),
            description: None,
            notes: None,
            on_demand: false,
            splashtop_auto_install: false,
            devices: Vec::new(),
        })
    }

    /// An agent starts reporting from the site; answers the device uid, or
    /// `None` if there is no such site.
    pub fn add_device(&self, site: &str, hostname: &str, online: bool) -> Option<String> {
        let uid = new_uid();
        let mut store = lock(&self.shared.store);
        let site = store.sites.get_mut(site)?;
        site.devices
            .push((uid.clone(), hostname.to_owned(), online));
        Some(uid)
    }

    /// `count` devices enroll in `site` and report online, named
    /// `{site}-pc{n}`; answers their uids (empty if there is no such site).
    /// Counted as `devices.enrolled`.
    pub fn enroll_devices(&self, site: &str, count: usize) -> Vec<String> {
        enroll_in(&self.shared, site, count)
    }

    /// Knob: every site created from now on gets `devices` devices after
    /// `delay` (`None`, the default: nobody runs the agent).
    pub fn set_auto_enroll(&self, auto: Option<AutoEnroll>) {
        lock(&self.shared.store).auto_enroll = auto;
    }

    /// Every site, in creation order.
    pub fn sites(&self) -> Vec<DattoSite> {
        let store = lock(&self.shared.store);
        store
            .order
            .iter()
            .filter_map(|uid| {
                store.sites.get(uid).map(|s| DattoSite {
                    id: s.id,
                    uid: uid.clone(),
                    name: s.name.clone(),
                    description: s.description.clone(),
                    devices: s.devices.len(),
                })
            })
            .collect()
    }

    /// Stops the server and waits for it.
    pub async fn shutdown(self) {
        self.served.shutdown().await;
    }
}

impl Store {
    fn insert(&mut self, mut site: Site) -> String {
        let uid = new_uid();
        site.id = self.next_id;
        self.next_id += 1;
        self.sites.insert(uid.clone(), site);
        self.order.push(uid.clone());
        uid
    }

    fn page_size(&self, asked: Option<usize>) -> usize {
        asked
            .unwrap_or(DEFAULT_PAGE_SIZE)
            .clamp(1, self.max_page_size)
    }
}

impl Site {
    fn json(&self, uid: &str, base: &str) -> Value {
        let online = self.devices.iter().filter(|d| d.2).count();
        json!({
            "id": self.id,
            "uid": uid,
            "accountUid": "emulated",
            "name": self.name,
            "description": self.description,
            "notes": self.notes,
            "onDemand": self.on_demand,
            "splashtopAutoInstall": self.splashtop_auto_install,
            "proxy": null,
            "devicesStatus": {
                "numberOfDevices": self.devices.len(),
                "numberOfOnlineDevices": online,
                "numberOfOfflineDevices": self.devices.len() - online,
            },
            "portalUrl": format!("{base}/site/{}", self.id),
        })
    }
}

/// `count` online devices in `site`; their uids.
fn enroll_in(shared: &Shared, site: &str, count: usize) -> Vec<String> {
    let mut store = lock(&shared.store);
    let Some(site) = store.sites.get_mut(site) else {
        return Vec::new();
    };
    let mut uids = Vec::with_capacity(count);
    for _ in 0..count {
        let uid = new_uid();
        let name = enroll::device_name(&site.name, site.devices.len() + 1);
        site.devices.push((uid.clone(), name, true));
        uids.push(uid);
    }
    drop(store);
    for _ in &uids {
        shared.harness.count("devices.enrolled");
    }
    uids
}

/// A uid shaped like Datto's (a UUID).
fn new_uid() -> String {
    let a = getrandom::u64().unwrap_or(0x0123_4567_89ab_cdef);
    let b = getrandom::u64().unwrap_or(0xfedc_ba98_7654_3210);
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        a >> 32,
        (a >> 16) & 0xffff,
        a & 0xffff,
        b >> 48,
        b & 0xffff_ffff_ffff
    )
}

fn base_of(headers: &HeaderMap) -> String {
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("127.0.0.1");
    format!("http://{host}")
}

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
                "Full authentication is required",
            )))
        }
    }
}

#[derive(Deserialize)]
struct TokenForm {
    grant_type: Option<String>,
    username: Option<String>,
    password: Option<String>,
}

async fn token(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Form(form): Form<TokenForm>,
) -> Response {
    let basic = base64::engine::general_purpose::STANDARD.encode("public-client:public");
    let client_ok = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Basic "))
        == Some(basic.as_str());
    if !client_ok {
        shared.harness.count("auth.refused");
        return error(StatusCode::UNAUTHORIZED, "bad client credentials");
    }
    if form.grant_type.as_deref() != Some("password") {
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": "unsupported_grant_type" })),
        )
            .into_response();
    }
    let mut store = lock(&shared.store);
    if form.username.as_deref() != Some(store.api_key.as_str())
        || form.password.as_deref() != Some(store.api_secret.as_str())
    {
        shared.harness.count("auth.refused");
        return (
            StatusCode::BAD_REQUEST,
            Json(json!({ "error": "invalid_grant", "error_description": "Bad credentials" })),
        )
            .into_response();
    }
    let bits = getrandom::u64().unwrap_or(7);
    let token = format!("drmm-{bits:016x}");
    store.tokens.insert(token.clone());
    shared.harness.count("tokens.issued");
    Json(json!({
        "access_token": token,
        "token_type": "bearer",
        "expires_in": 359_999,
        "scope": "default",
    }))
    .into_response()
}

#[derive(Deserialize)]
struct PageQuery {
    page: Option<usize>,
    max: Option<usize>,
}

/// `pageDetails` of page `page` (from 0) of `total` items, `size` a page.
fn page_details(base: &str, path: &str, page: usize, size: usize, total: usize) -> Value {
    let start = page.saturating_mul(size);
    let shown = total.saturating_sub(start).min(size);
    let next = (start.saturating_add(size) < total)
        .then(|| format!("{base}{path}?page={}&max={size}", page + 1));
    let prev = (page > 0).then(|| format!("{base}{path}?page={}&max={size}", page - 1));
    json!({ "count": shown, "totalCount": total, "prevPageUrl": prev, "nextPageUrl": next })
}

async fn list_sites(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Query(q): Query<PageQuery>,
) -> Response {
    if let Err(refused) = authorize(&shared, &headers) {
        return *refused;
    }
    let base = base_of(&headers);
    let store = lock(&shared.store);
    let size = store.page_size(q.max);
    let page = q.page.unwrap_or(0);
    let sites: Vec<Value> = store
        .order
        .iter()
        .skip(page.saturating_mul(size))
        .take(size)
        .filter_map(|uid| store.sites.get(uid).map(|s| s.json(uid, &base)))
        .collect();
    let details = page_details(
        &base,
        "/api/v2/account/sites",
        page,
        size,
        store.order.len(),
    );
    Json(json!({ "pageDetails": details, "sites": sites })).into_response()
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SiteBody {
    name: Option<String>,
    description: Option<String>,
    notes: Option<String>,
    on_demand: Option<bool>,
    splashtop_auto_install: Option<bool>,
}

async fn create_site(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    body: Bytes,
) -> Response {
    if let Err(refused) = authorize(&shared, &headers) {
        return *refused;
    }
    let base = base_of(&headers);
    shared.harness.idempotent(&headers, || {
        let Ok(new) = serde_json::from_slice::<SiteBody>(&body) else {
            return (
                StatusCode::BAD_REQUEST,
                json!({ "error": "the body is not a site" }),
            );
        };
        let Some(name) = new.name.filter(|n| !n.trim().is_empty()) else {
            return (
                StatusCode::BAD_REQUEST,
                json!({ "error": "name is required" }),
            );
        };
        let mut store = lock(&shared.store);
        let site = Site {
            id: 0,
            name,
            description: new.description,
            notes: new.notes,
            on_demand: new.on_demand.unwrap_or(false),
            splashtop_auto_install: new.splashtop_auto_install.unwrap_or(false),
            devices: Vec::new(),
        };
        let uid = store.insert(site);
        shared.harness.count("sites.created");
        let answer = store
            .sites
            .get(&uid)
            .map(|s| s.json(&uid, &base))
            .unwrap_or(Value::Null);
        let auto = store.auto_enroll;
        drop(store);
        if let Some(auto) = auto {
            let shared = Arc::clone(&shared);
            enroll::after(auto.delay, move || {
                enroll_in(&shared, &uid, auto.devices);
            });
        }
        (StatusCode::OK, answer)
    })
}

async fn get_site(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(uid): Path<String>,
) -> Response {
    if let Err(refused) = authorize(&shared, &headers) {
        return *refused;
    }
    let base = base_of(&headers);
    match lock(&shared.store).sites.get(&uid) {
        Some(site) => Json(site.json(&uid, &base)).into_response(),
        None => error(StatusCode::NOT_FOUND, "site not found"),
    }
}

async fn update_site(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(uid): Path<String>,
    body: Bytes,
) -> Response {
    if let Err(refused) = authorize(&shared, &headers) {
        return *refused;
    }
    let Ok(change) = serde_json::from_slice::<SiteBody>(&body) else {
        return error(StatusCode::BAD_REQUEST, "the body is not a site");
    };
    let base = base_of(&headers);
    let mut store = lock(&shared.store);
    let Some(site) = store.sites.get_mut(&uid) else {
        return error(StatusCode::NOT_FOUND, "site not found");
    };
    if let Some(name) = change.name.filter(|n| !n.trim().is_empty()) {
        site.name = name;
    }
    if change.description.is_some() {
        site.description = change.description;
    }
    if change.notes.is_some() {
        site.notes = change.notes;
    }
    if let Some(on_demand) = change.on_demand {
        site.on_demand = on_demand;
    }
    if let Some(splashtop) = change.splashtop_auto_install {
        site.splashtop_auto_install = splashtop;
    }
    shared.harness.count("sites.updated");
    Json(site.json(&uid, &base)).into_response()
}

async fn list_devices(
    State(shared): State<Arc<Shared>>,
    headers: HeaderMap,
    Path(uid): Path<String>,
    Query(q): Query<PageQuery>,
) -> Response {
    if let Err(refused) = authorize(&shared, &headers) {
        return *refused;
    }
    let base = base_of(&headers);
    let store = lock(&shared.store);
    let size = store.page_size(q.max);
    let page = q.page.unwrap_or(0);
    let Some(site) = store.sites.get(&uid) else {
        return error(StatusCode::NOT_FOUND, "site not found");
    };
    let devices: Vec<Value> = site
        .devices
        .iter()
        .skip(page.saturating_mul(size))
        .take(size)
        .map(|(duid, hostname, online)| {
            json!({
                "uid": duid,
                "siteId": site.id,
                "siteUid": uid,
                "siteName": site.name,
                "hostname": hostname,
                "online": online,
                "deviceType": { "category": "Desktop", "type": "Desktop" },
                "deleted": false,
            })
        })
        .collect();
    let path = format!("/api/v2/site/{uid}/devices");
    let details = page_details(&base, &path, page, size, site.devices.len());
    Json(json!({ "pageDetails": details, "devices": devices })).into_response()
}

async fn download_agent(State(shared): State<Arc<Shared>>, Path(uid): Path<String>) -> Response {
    if !lock(&shared.store).sites.contains_key(&uid) {
        return error(StatusCode::NOT_FOUND, "site not found");
    }
    shared.harness.count("agents.downloaded");
    (
        [(header::CONTENT_TYPE, "application/octet-stream")],
        format!("emulated Datto RMM agent for site {uid}"),
    )
        .into_response()
}
