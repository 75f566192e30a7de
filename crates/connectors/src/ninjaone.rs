//! NinjaOne (RMM): organizations, locations, agent installers and devices
//! through the public API v2.
//!
//! Authentication is OAuth client credentials against
//! `{base}/ws/oauth/token` (scopes `monitoring management`), cached by
//! [`TokenCache`]; a call refused with the cached token (`401`)
//! fetches a new one and is tried once more, since NinjaOne may revoke a
//! token before it says it expires.
//!
//! Listings (`/v2/organizations`, `/v2/organization/{id}/devices`) are read
//! to the end with `pageSize` and the `after` cursor (the last id seen);
//! the end is an empty page, because NinjaOne may answer fewer items than
//! asked for on a page that is not the last.
//!
//! NinjaOne's public API document does not list a call that deletes an
//! organization; the client sends `DELETE /v2/organization/{id}` and treats
//! `404` as already done. Check it against your instance before relying on
//! it (see `docs/connectors-rmm-docs.md`).

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use gatehouse_core::clock::Clock;
use reqwest::{Method, RequestBuilder, Url};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::json;

use crate::error::ConnectorError;
use crate::http::{ClientCredentials, Http, Secret, TokenCache};
use crate::ports::{InstallerLink, Rmm, RmmDevice, RmmLocation, RmmOrganization};
use crate::rest::{endpoint, parse_base, read_json, with_key};

const SYSTEM: &str = "ninjaone";

/// The scopes Gatehouse asks for: reading (`monitoring`) and changing
/// (`management`) organizations and locations.
pub const DEFAULT_SCOPE: &str = "monitoring management";

/// A NinjaOne agent installer type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum InstallerType {
    /// Windows MSI.
    #[default]
    WindowsMsi,
    /// macOS disk image.
    MacDmg,
    /// macOS package.
    MacPkg,
    /// Debian package (x86-64).
    LinuxDeb,
    /// RPM package (x86-64).
    LinuxRpm,
}

impl InstallerType {
    /// NinjaOne's name for it (`WINDOWS_MSI`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::WindowsMsi => "WINDOWS_MSI",
            Self::MacDmg => "MAC_DMG",
            Self::MacPkg => "MAC_PKG",
            Self::LinuxDeb => "LINUX_DEB",
            Self::LinuxRpm => "LINUX_RPM",
        }
    }
}

/// How to reach one NinjaOne instance.
#[derive(Debug, Clone)]
pub struct NinjaOneConfig {
    /// The instance, `https://app.ninjarmm.com` (or `eu.`, `oc.`, `ca.`,
    /// `us2.`), without a trailing path.
    pub base_url: String,
    /// The API client's id.
    pub client_id: String,
    /// The API client's secret.
    pub client_secret: Secret,
    /// The scopes to ask for; [`DEFAULT_SCOPE`] when `None`.
    pub scope: Option<String>,
    /// The installer [`Rmm::installer_link`] hands out.
    pub installer_type: InstallerType,
    /// Items asked for per page (1–1000).
    pub page_size: u32,
    /// Each call gives up after this long.
    pub timeout: Duration,
}

impl NinjaOneConfig {
    /// Settings with the defaults: Windows MSI, 200 a page, 30 s timeout.
    pub fn new(base_url: &str, client_id: &str, client_secret: Secret) -> Self {
        Self {
            base_url: base_url.to_owned(),
            client_id: client_id.to_owned(),
            client_secret,
            scope: None,
            installer_type: InstallerType::default(),
            page_size: 200,
            timeout: Duration::from_secs(30),
        }
    }
}

/// A NinjaOne API client; implements [`Rmm`].
#[derive(Debug)]
pub struct NinjaOneClient {
    http: Http,
    base: Url,
    tokens: TokenCache,
    installer_type: InstallerType,
    page_size: u32,
}

#[derive(Deserialize)]
struct Organization {
    id: u64,
    name: String,
}

#[derive(Deserialize)]
struct Location {
    id: u64,
    name: String,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Device {
    id: u64,
    organization_id: Option<u64>,
    display_name: Option<String>,
    system_name: Option<String>,
    #[serde(default)]
    offline: bool,
}

#[derive(Deserialize)]
struct Installer {
    url: String,
}

impl NinjaOneClient {
    /// A client for `config`; `clock` reads `Retry-After` dates.
    pub fn new(config: NinjaOneConfig, clock: Arc<dyn Clock>) -> Result<Self, ConnectorError> {
        let base = parse_base(SYSTEM, &config.base_url)?;
        if !(1..=1000).contains(&config.page_size) {
            return Err(config_error("page_size must be between 1 and 1000"));
        }
        let token_url = endpoint(&base, &["ws", "oauth", "token"]);
        let tokens = TokenCache::new(ClientCredentials {
            token_url: token_url.to_string(),
            client_id: config.client_id,
            client_secret: config.client_secret,
            scope: Some(config.scope.unwrap_or_else(|| DEFAULT_SCOPE.to_owned())),
        });
        Ok(Self {
            http: Http::new(SYSTEM, config.timeout, clock)?,
            base,
            tokens,
            installer_type: config.installer_type,
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
            let bearer = self.tokens.bearer(&self.http).await?;
            let request = build(self.http.client()).bearer_auth(bearer.expose());
            match self.http.send(request).await {
                Err(error) if error.is_unauthorized() && !renewed => {
                    self.tokens.forget().await;
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

    /// `GET` of `url` that answers `None` on `404`.
    async fn get_optional<T: DeserializeOwned>(
        &self,
        url: Url,
    ) -> Result<Option<T>, ConnectorError> {
        match self.json(|c| c.get(url.clone())).await {
            Ok(value) => Ok(Some(value)),
            Err(e) if e.status() == Some(404) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Every item of a listing paged with `pageSize` and `after`.
    async fn all_pages<T: DeserializeOwned>(
        &self,
        url: Url,
        id_of: impl Fn(&T) -> u64,
    ) -> Result<Vec<T>, ConnectorError> {
        let mut items = Vec::new();
        let mut after: Option<u64> = None;
        loop {
            let mut page_url = url.clone();
            {
                let mut query = page_url.query_pairs_mut();
                query.append_pair("pageSize", &self.page_size.to_string());
                if let Some(after) = after {
                    query.append_pair("after", &after.to_string());
                }
            }
            let page: Vec<T> = self.json(|c| c.get(page_url.clone())).await?;
            let Some(last) = page.last().map(&id_of) else {
                return Ok(items);
            };
            if after.is_some_and(|a| last <= a) {
                return Err(ConnectorError::Rejected {
                    system: SYSTEM,
                    status: None,
                    message: "the listing did not move past its cursor".to_owned(),
                });
            }
            after = Some(last);
            items.extend(page);
        }
    }

    fn organization_url(&self, id: u64, rest: &[&str]) -> Url {
        let id = id.to_string();
        let mut segments = vec!["v2", "organization", id.as_str()];
        segments.extend_from_slice(rest);
        endpoint(&self.base, &segments)
    }
}

#[async_trait]
impl Rmm for NinjaOneClient {
    fn vendor(&self) -> &'static str {
        SYSTEM
    }

    async fn find_organization(
        &self,
        name: &str,
    ) -> Result<Option<RmmOrganization>, ConnectorError> {
        let url = endpoint(&self.base, &["v2", "organizations"]);
        let all: Vec<Organization> = self.all_pages(url, |o: &Organization| o.id).await?;
        let mut found = all.into_iter().filter(|o| o.name == name);
        let first = found.next();
        if found.next().is_some() {
            return Err(ConnectorError::Rejected {
                system: SYSTEM,
                status: None,
                message: format!("more than one organization is called {name:?}"),
            });
        }
        Ok(first.map(organization))
    }

    async fn organization(&self, id: &str) -> Result<Option<RmmOrganization>, ConnectorError> {
        let Some(id) = parse_id(id) else {
            return Ok(None);
        };
        let found: Option<Organization> = self.get_optional(self.organization_url(id, &[])).await?;
        Ok(found.map(organization))
    }

    async fn create_organization(
        &self,
        name: &str,
        key: &str,
    ) -> Result<RmmOrganization, ConnectorError> {
        let url = endpoint(&self.base, &["v2", "organizations"]);
        let body = json!({ "name": name });
        let created: Organization = self
            .json(|c| with_key(c.post(url.clone()).json(&body), key))
            .await?;
        Ok(organization(created))
    }

    async fn delete_organization(&self, id: &str, key: &str) -> Result<(), ConnectorError> {
        let Some(id) = parse_id(id) else {
            // Not a NinjaOne id, so no such organization.
            return Ok(());
        };
        let url = self.organization_url(id, &[]);
        match self
            .send(|c| with_key(c.request(Method::DELETE, url.clone()), key))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.status() == Some(404) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn locations(&self, organization: &str) -> Result<Vec<RmmLocation>, ConnectorError> {
        let id = require_id(organization, "organization")?;
        let url = self.organization_url(id, &["locations"]);
        let found: Vec<Location> = self.json(|c| c.get(url.clone())).await?;
        Ok(found.into_iter().map(|l| location(id, l)).collect())
    }

    async fn create_location(
        &self,
        organization: &str,
        name: &str,
        key: &str,
    ) -> Result<RmmLocation, ConnectorError> {
        let id = require_id(organization, "organization")?;
        let url = self.organization_url(id, &["locations"]);
        let body = json!({ "name": name });
        let created: Location = self
            .json(|c| with_key(c.post(url.clone()).json(&body), key))
            .await?;
        Ok(location(id, created))
    }

    async fn installer_link(
        &self,
        organization: &str,
        location: &str,
    ) -> Result<InstallerLink, ConnectorError> {
        let org = require_id(organization, "organization")?.to_string();
        let loc = require_id(location, "location")?.to_string();
        let kind = self.installer_type.as_str();
        let url = endpoint(
            &self.base,
            &[
                "v2",
                "organization",
                &org,
                "location",
                &loc,
                "installer",
                kind,
            ],
        );
        let installer: Installer = self.json(|c| c.get(url.clone())).await?;
        Ok(InstallerLink {
            url: installer.url,
            installer_type: kind.to_owned(),
        })
    }

    async fn devices(&self, organization: &str) -> Result<Vec<RmmDevice>, ConnectorError> {
        let id = require_id(organization, "organization")?;
        let url = self.organization_url(id, &["devices"]);
        let all: Vec<Device> = self.all_pages(url, |d: &Device| d.id).await?;
        Ok(all
            .into_iter()
            .map(|d| RmmDevice {
                id: d.id.to_string(),
                name: d.display_name.or(d.system_name).unwrap_or_default(),
                organization_id: d.organization_id.unwrap_or(id).to_string(),
                online: !d.offline,
            })
            .collect())
    }
}

fn organization(o: Organization) -> RmmOrganization {
    RmmOrganization {
        id: o.id.to_string(),
        name: o.name,
    }
}

fn location(organization: u64, l: Location) -> RmmLocation {
    RmmLocation {
        id: l.id.to_string(),
        organization_id: organization.to_string(),
        name: l.name,
    }
}

/// NinjaOne ids are numbers; anything else names nothing there.
fn parse_id(id: &str) -> Option<u64> {
    id.trim().parse().ok()
}

fn require_id(id: &str, what: &str) -> Result<u64, ConnectorError> {
    parse_id(id).ok_or_else(|| ConnectorError::Rejected {
        system: SYSTEM,
        status: None,
        message: format!("{id:?} is not a NinjaOne {what} id"),
    })
}

fn config_error(message: &str) -> ConnectorError {
    ConnectorError::Config {
        system: SYSTEM,
        message: message.to_owned(),
    }
}
