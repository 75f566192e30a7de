//! Datto RMM: sites, agent download links and devices through API v2.
//!
//! Authentication is Datto's password grant: `POST /auth/oauth/token` with
//! HTTP Basic `public-client:public` and the API key and secret as user
//! name and password. The token (valid for about 100 hours) is cached by
//! [`PasswordGrant`]; a call refused with it (`401`) fetches a new
//! one and is tried once more.
//!
//! Datto RMM has sites and no locations, so the [`Rmm`] port maps:
//! - an organization to a site (the id is the site's uid);
//! - the locations of an organization to the site itself: `locations` is a
//!   list of one, and `create_location` creates nothing and answers the
//!   site (the name asked for is not used);
//! - the installer link to the site's agent download,
//!   `{agent_url}/csm/profile/downloadAgent/{siteUid}` (a Windows
//!   executable), after checking the site exists;
//! - deleting an organization to an error: API v2 has no call that deletes
//!   a site, so it must be done in the Datto RMM console.
//!
//! Listings are read to the end by following `pageDetails.nextPageUrl`,
//! which must point at the configured API host (the bearer is never sent
//! anywhere else).

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_trait::async_trait;
use gatehouse_core::clock::Clock;
use reqwest::{RequestBuilder, Url};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;
use tokio::sync::Mutex;

use crate::error::ConnectorError;
use crate::http::{Http, Secret};
use crate::ports::{InstallerLink, Rmm, RmmDevice, RmmLocation, RmmOrganization};
use crate::rest::{endpoint, parse_base, read_json, with_key};

const SYSTEM: &str = "dattormm";

/// The installer type of Datto's agent download.
pub const AGENT_INSTALLER_TYPE: &str = "WINDOWS_EXE";

/// A token is renewed this long before Datto says it expires.
const TOKEN_MARGIN: Duration = Duration::from_secs(60);

/// How to reach one Datto RMM platform.
#[derive(Debug, Clone)]
pub struct DattoRmmConfig {
    /// The API, `https://{platform}-api.centrastage.net`.
    pub api_url: String,
    /// The web platform agents are downloaded from,
    /// `https://{platform}.centrastage.net`.
    pub agent_url: String,
    /// The API key (the password grant's user name).
    pub api_key: Secret,
    /// The API secret key.
    pub api_secret: Secret,
    /// Items asked for per page (1–250).
    pub page_size: u32,
    /// Each call gives up after this long.
    pub timeout: Duration,
}

impl DattoRmmConfig {
    /// Settings with the defaults: 250 a page, 30 s timeout.
    pub fn new(api_url: &str, agent_url: &str, api_key: Secret, api_secret: Secret) -> Self {
        Self {
            api_url: api_url.to_owned(),
            agent_url: agent_url.to_owned(),
            api_key,
            api_secret,
            page_size: 250,
            timeout: Duration::from_secs(30),
        }
    }
}

/// Datto's password grant, with the token kept until shortly before it
/// expires. Concurrent callers wait for one fetch.
#[derive(Debug)]
pub struct PasswordGrant {
    token_url: Url,
    api_key: Secret,
    api_secret: Secret,
    token: Mutex<Option<(Secret, Instant)>>,
}

#[derive(Deserialize)]
struct TokenAnswer {
    access_token: String,
    #[serde(default)]
    expires_in: Option<u64>,
}

impl PasswordGrant {
    /// A cache for the key and secret, empty until the first call.
    pub fn new(token_url: Url, api_key: Secret, api_secret: Secret) -> Self {
        Self {
            token_url,
            api_key,
            api_secret,
            token: Mutex::new(None),
        }
    }

    /// A valid bearer token, fetched if there is none or it is about to
    /// expire. A refused grant is [`ConnectorError::Auth`].
    pub async fn bearer(&self, http: &Http) -> Result<Secret, ConnectorError> {
        let mut token = self.token.lock().await;
        if let Some((value, until)) = token.as_ref()
            && Instant::now() < *until
        {
            return Ok(value.clone());
        }
        let form = [
            ("grant_type", "password"),
            ("username", self.api_key.expose()),
            ("password", self.api_secret.expose()),
        ];
        let request = http
            .client()
            .post(self.token_url.clone())
            .basic_auth("public-client", Some("public"))
            .form(&form);
        let answer: TokenAnswer = match http.json(request).await {
            // Spring's OAuth server refuses a bad key or secret with 400
            // `invalid_grant`.
            Err(ConnectorError::Rejected {
                system,
                status: Some(400),
                message,
            }) => {
                return Err(ConnectorError::Auth {
                    system,
                    status: Some(400),
                    message,
                });
            }
            other => other?,
        };
        let lifetime = Duration::from_secs(answer.expires_in.unwrap_or(3600));
        let value = Secret::new(answer.access_token);
        *token = Some((
            value.clone(),
            Instant::now() + lifetime.saturating_sub(TOKEN_MARGIN),
        ));
        Ok(value)
    }

    /// Drops the cached token, so the next call fetches one.
    pub async fn forget(&self) {
        *self.token.lock().await = None;
    }
}

/// A Datto RMM API client; implements [`Rmm`] (see the module notes for
/// how sites stand in for organizations and locations).
#[derive(Debug)]
pub struct DattoRmmClient {
    http: Http,
    api: Url,
    agent: Url,
    grant: PasswordGrant,
    page_size: u32,
}

#[derive(Deserialize)]
struct Site {
    uid: String,
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Device {
    uid: String,
    hostname: Option<String>,
    site_uid: Option<String>,
    #[serde(default)]
    online: bool,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct PageDetails {
    next_page_url: Option<String>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct SitesPage {
    page_details: PageDetails,
    #[serde(default)]
    sites: Vec<Site>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct DevicesPage {
    page_details: PageDetails,
    #[serde(default)]
    devices: Vec<Device>,
}

impl DattoRmmClient {
    /// A client for `config`; `clock` reads `Retry-After` dates.
    pub fn new(config: DattoRmmConfig, clock: Arc<dyn Clock>) -> Result<Self, ConnectorError> {
        let api = parse_base(SYSTEM, &config.api_url)?;
        let agent = parse_base(SYSTEM, &config.agent_url)?;
        if !(1..=250).contains(&config.page_size) {
            return Err(ConnectorError::Config {
                system: SYSTEM,
                message: "page_size must be between 1 and 250".to_owned(),
            });
        }
        let token_url = endpoint(&api, &["auth", "oauth", "token"]);
        Ok(Self {
            http: Http::new(SYSTEM, config.timeout, clock)?,
            grant: PasswordGrant::new(token_url, config.api_key, config.api_secret),
            api,
            agent,
            page_size: config.page_size,
        })
    }

    /// Sends a request built by `build` with the bearer; a refused call
    /// fetches a new token and is sent once more.
    async fn send(
        &self,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<reqwest::Response, ConnectorError> {
        let mut renewed = false;
        loop {
            let bearer = self.grant.bearer(&self.http).await?;
            let request = build(self.http.client()).bearer_auth(bearer.expose());
            match self.http.send(request).await {
                Err(error) if error.is_unauthorized() && !renewed => {
                    self.grant.forget().await;
                    renewed = true;
                }
                other => return other,
            }
        }
    }

    async fn json<T: DeserializeOwned>(
        &self,
        build: impl Fn(&reqwest::Client) -> RequestBuilder,
    ) -> Result<T, ConnectorError> {
        read_json(SYSTEM, self.send(build).await?).await
    }

    fn site_url(&self, uid: &str, rest: &[&str]) -> Url {
        let mut segments = vec!["api", "v2", "site", uid];
        segments.extend_from_slice(rest);
        endpoint(&self.api, &segments)
    }

    /// The site with this uid, `None` when Datto says there is none.
    async fn site(&self, uid: &str) -> Result<Option<Site>, ConnectorError> {
        if uid.trim().is_empty() {
            return Ok(None);
        }
        let url = self.site_url(uid, &[]);
        match self.json(|c| c.get(url.clone())).await {
            Ok(site) => Ok(Some(site)),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The site with this uid, or a rejection saying it is not there.
    async fn existing_site(&self, uid: &str) -> Result<Site, ConnectorError> {
        self.site(uid)
            .await?
            .ok_or_else(|| ConnectorError::Rejected {
                system: SYSTEM,
                status: Some(404),
                message: format!("no site {uid:?}"),
            })
    }

    /// Every page of a listing from `first`, following `nextPageUrl`.
    async fn all_pages<P: DeserializeOwned, T>(
        &self,
        first: Url,
        split: impl Fn(P) -> (PageDetails, Vec<T>),
    ) -> Result<Vec<T>, ConnectorError> {
        let mut items = Vec::new();
        let mut next = Some(first);
        let mut seen: Vec<Url> = Vec::new();
        while let Some(url) = next.take() {
            if seen.contains(&url) {
                return Err(rejected("the listing pointed back at a page already read"));
            }
            let page: P = self.json(|c| c.get(url.clone())).await?;
            seen.push(url);
            let (details, page_items) = split(page);
            items.extend(page_items);
            next = match details.next_page_url {
                Some(link) if !link.is_empty() => Some(self.same_host(&link)?),
                _ => None,
            };
        }
        Ok(items)
    }

    /// `link` as a URL, if it points at the configured API host.
    fn same_host(&self, link: &str) -> Result<Url, ConnectorError> {
        let url = Url::parse(link).map_err(|_| rejected("nextPageUrl is not a URL"))?;
        if url.origin() != self.api.origin() {
            return Err(rejected("nextPageUrl points away from the API host"));
        }
        Ok(url)
    }

    fn first_page(&self, mut url: Url) -> Url {
        url.query_pairs_mut()
            .append_pair("max", &self.page_size.to_string());
        url
    }
}

#[async_trait]
impl Rmm for DattoRmmClient {
    fn vendor(&self) -> &'static str {
        SYSTEM
    }

    async fn find_organization(
        &self,
        name: &str,
    ) -> Result<Option<RmmOrganization>, ConnectorError> {
        let first = self.first_page(endpoint(&self.api, &["api", "v2", "account", "sites"]));
        let sites = self
            .all_pages(first, |p: SitesPage| (p.page_details, p.sites))
            .await?;
        let mut found = sites.into_iter().filter(|s| s.name == name);
        let first = found.next();
        if found.next().is_some() {
            return Err(rejected(&format!("more than one site is called {name:?}")));
        }
        Ok(first.map(organization))
    }

    async fn organization(&self, id: &str) -> Result<Option<RmmOrganization>, ConnectorError> {
        Ok(self.site(id).await?.map(organization))
    }

    async fn create_organization(
        &self,
        name: &str,
        key: &str,
    ) -> Result<RmmOrganization, ConnectorError> {
        let url = endpoint(&self.api, &["api", "v2", "site"]);
        let body = json!({
            "name": name,
            "onDemand": false,
            "splashtopAutoInstall": false,
        });
        let site: Site = self
            .json(|c| with_key(c.put(url.clone()).json(&body), key))
            .await?;
        Ok(organization(site))
    }

    async fn delete_organization(&self, _id: &str, _key: &str) -> Result<(), ConnectorError> {
        Err(ConnectorError::Config {
            system: SYSTEM,
            message: "Datto RMM's API cannot delete a site; delete it in the Datto RMM console"
                .to_owned(),
        })
    }

    async fn locations(&self, organization: &str) -> Result<Vec<RmmLocation>, ConnectorError> {
        let site = self.existing_site(organization).await?;
        Ok(vec![location(site)])
    }

    async fn create_location(
        &self,
        organization: &str,
        _name: &str,
        _key: &str,
    ) -> Result<RmmLocation, ConnectorError> {
        // A Datto site is its own (only) location: nothing to create.
        let site = self.existing_site(organization).await?;
        Ok(location(site))
    }

    async fn installer_link(
        &self,
        organization: &str,
        location: &str,
    ) -> Result<InstallerLink, ConnectorError> {
        if organization != location {
            return Err(rejected(
                "a Datto RMM site is its own location: organization and location must be the same site uid",
            ));
        }
        let site = self.existing_site(organization).await?;
        let url = endpoint(&self.agent, &["csm", "profile", "downloadAgent", &site.uid]);
        Ok(InstallerLink {
            url: url.to_string(),
            installer_type: AGENT_INSTALLER_TYPE.to_owned(),
        })
    }

    async fn devices(&self, organization: &str) -> Result<Vec<RmmDevice>, ConnectorError> {
        if organization.trim().is_empty() {
            return Err(rejected("an empty site uid"));
        }
        let first = self.first_page(self.site_url(organization, &["devices"]));
        let devices = self
            .all_pages(first, |p: DevicesPage| (p.page_details, p.devices))
            .await?;
        Ok(devices
            .into_iter()
            .map(|d| RmmDevice {
                id: d.uid,
                name: d.hostname.unwrap_or_default(),
                organization_id: d.site_uid.unwrap_or_else(|| organization.to_owned()),
                online: d.online,
            })
            .collect())
    }
}

fn organization(site: Site) -> RmmOrganization {
    RmmOrganization {
        id: site.uid,
        name: site.name,
    }
}

fn location(site: Site) -> RmmLocation {
    RmmLocation {
        id: site.uid.clone(),
        organization_id: site.uid,
        name: site.name,
    }
}

fn rejected(message: &str) -> ConnectorError {
    ConnectorError::Rejected {
        system: SYSTEM,
        status: None,
        message: message.to_owned(),
    }
}
