//! ConnectWise PSA (Manage) REST API 3.0 client.
//!
//! Authentication is an API member's keys as HTTP Basic
//! (`{companyId}+{publicKey}` : `{privateKey}`) plus the integration's
//! `clientId` header. Lists are read page by page (`page`, `pageSize`) until
//! a short page; filters are ConnectWise `conditions`, kept to numbers and
//! dates so that no user text needs quoting (names are compared here).
//!
//! Statuses are referred to by name in Gatehouse and by id in ConnectWise:
//! the client reads the status lists to translate. An opportunity is won
//! when its status has `wonFlag`.
//!
//! Won deals reach Gatehouse through a callback (`/system/callbacks`, type
//! `Opportunity`), which [`ConnectWiseClient::register_callback`] sets up;
//! [`Psa::won_opportunities`] is the fallback poll.

use std::sync::Arc;

use async_trait::async_trait;
use gatehouse_core::clock::Clock;
use reqwest::{Method, RequestBuilder};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use serde_json::json;
use time::OffsetDateTime;

use crate::error::ConnectorError;
use crate::http::{Http, Secret};
use crate::ports::{CompanyUpdate, Psa, PsaCompany, PsaKind, PsaOpportunity};
use crate::psa_common::{
    IDEMPOTENCY_KEY, MAX_PAGES, TIMEOUT, check_base_url, format_time, missing_is_none, not_found,
    parse_id, parse_time, sub_key, too_many_pages,
};

const SYSTEM: &str = "connectwise";
/// ConnectWise's largest page.
const MAX_PAGE_SIZE: u32 = 1000;

/// How to reach and authenticate to a ConnectWise PSA.
#[derive(Debug, Clone)]
pub struct ConnectWiseConfig {
    /// The site, without the API path: `https://api-na.myconnectwise.net`.
    pub base_url: String,
    /// The company identifier used at login.
    pub company_id: String,
    /// The API member's public key.
    pub public_key: String,
    /// The API member's private key.
    pub private_key: Secret,
    /// The integration's `clientId` (developer.connectwise.com).
    pub client_id: String,
}

/// A callback (webhook) registration to create.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct NewCallback {
    /// What it is for (at most 100 characters).
    pub description: String,
    /// Where ConnectWise posts: Gatehouse's `/hooks/connectwise/{tenant}`.
    pub url: String,
    /// The object the level refers to (0 for level `Owner`).
    pub object_id: u64,
    /// The record type: `Opportunity`, `Company`, `Ticket`, …
    #[serde(rename = "type")]
    pub kind: String,
    /// The level: `Owner` (all records), `Status`, `Company`, …
    pub level: String,
}

/// A registered callback.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Callback {
    /// ConnectWise's id.
    pub id: u64,
    /// Its description.
    #[serde(default)]
    pub description: String,
    /// Where it posts.
    pub url: String,
    /// The level's object.
    pub object_id: u64,
    /// The record type.
    #[serde(rename = "type")]
    pub kind: String,
    /// The level.
    pub level: String,
    /// Whether it is switched off.
    #[serde(default)]
    pub inactive_flag: bool,
}

#[derive(Debug, Deserialize)]
struct Reference {
    id: u64,
    #[serde(default)]
    name: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Status {
    id: u64,
    name: String,
    #[serde(default)]
    won_flag: bool,
}

#[derive(Debug, Deserialize)]
struct Company {
    id: u64,
    name: String,
    #[serde(default)]
    status: Option<Reference>,
    #[serde(default)]
    website: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Agreement {
    name: String,
    #[serde(default)]
    cancelled_flag: bool,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Opportunity {
    id: u64,
    name: String,
    company: Option<Reference>,
    status: Option<Reference>,
    #[serde(default)]
    closed_date: Option<String>,
}

/// A ConnectWise PSA client.
#[derive(Debug)]
pub struct ConnectWiseClient {
    http: Http,
    config: ConnectWiseConfig,
    page_size: u32,
    agreement_type: Option<u64>,
}

impl ConnectWiseClient {
    /// A client for `config`; `clock` reads `Retry-After` dates.
    pub fn new(config: ConnectWiseConfig, clock: Arc<dyn Clock>) -> Result<Self, ConnectorError> {
        check_base_url(SYSTEM, "base_url", &config.base_url)?;
        Ok(Self {
            http: Http::new(SYSTEM, TIMEOUT, clock)?,
            config,
            page_size: MAX_PAGE_SIZE,
            agreement_type: None,
        })
    }

    /// Reads lists `size` records a page (1–1000; 1000 by default).
    pub fn with_page_size(mut self, size: u32) -> Self {
        self.page_size = size.clamp(1, MAX_PAGE_SIZE);
        self
    }

    /// Creates agreements of this agreement type (ConnectWise requires one;
    /// the id is in Finance → Agreement Types).
    pub fn with_agreement_type(mut self, type_id: u64) -> Self {
        self.agreement_type = Some(type_id);
        self
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        let c = &self.config;
        let url = format!(
            "{}/v4_6_release/apis/3.0{path}",
            c.base_url.trim_end_matches('/')
        );
        self.http
            .client()
            .request(method, url)
            .basic_auth(
                format!("{}+{}", c.company_id, c.public_key),
                Some(c.private_key.expose()),
            )
            .header("clientId", &c.client_id)
            .header("Accept", "application/json")
    }

    async fn get<T: DeserializeOwned>(&self, path: &str) -> Result<T, ConnectorError> {
        self.http.json(self.request(Method::GET, path)).await
    }

    /// Every record of a list, page by page.
    async fn list<T: DeserializeOwned>(
        &self,
        path: &str,
        conditions: Option<&str>,
    ) -> Result<Vec<T>, ConnectorError> {
        let mut all = Vec::new();
        for page in 1..=MAX_PAGES {
            let mut query = vec![
                ("page", page.to_string()),
                ("pageSize", self.page_size.to_string()),
            ];
            if let Some(c) = conditions {
                query.push(("conditions", c.to_owned()));
            }
            let items: Vec<T> = self
                .http
                .json(self.request(Method::GET, path).query(&query))
                .await?;
            let short = items.len() < self.page_size as usize;
            all.extend(items);
            if short {
                return Ok(all);
            }
        }
        Err(too_many_pages(SYSTEM))
    }

    async fn company_statuses(&self) -> Result<Vec<Status>, ConnectorError> {
        self.list("/company/companies/statuses", None).await
    }

    async fn opportunity_statuses(&self) -> Result<Vec<Status>, ConnectorError> {
        self.list("/sales/opportunities/statuses", None).await
    }

    async fn agreements(&self, company: u64) -> Result<Vec<Agreement>, ConnectorError> {
        let all: Vec<Agreement> = self
            .list(
                "/finance/agreements",
                Some(&format!("company/id={company}")),
            )
            .await?;
        Ok(all.into_iter().filter(|a| !a.cancelled_flag).collect())
    }

    async fn patch<T: DeserializeOwned>(
        &self,
        path: &str,
        ops: serde_json::Value,
        key: &str,
    ) -> Result<T, ConnectorError> {
        self.http
            .json(
                self.request(Method::PATCH, path)
                    .header(IDEMPOTENCY_KEY, key)
                    .json(&ops),
            )
            .await
    }

    fn opportunity_of(o: Opportunity, statuses: &[Status]) -> PsaOpportunity {
        let status = o.status.as_ref();
        let known = status.and_then(|s| statuses.iter().find(|st| st.id == s.id));
        PsaOpportunity {
            id: o.id.to_string(),
            name: o.name,
            company_id: o.company.map(|c| c.id.to_string()).unwrap_or_default(),
            status: status
                .and_then(|s| s.name.clone())
                .or_else(|| known.map(|k| k.name.clone()))
                .unwrap_or_default(),
            won: known.is_some_and(|k| k.won_flag),
            closed_at: o.closed_date.as_deref().and_then(parse_time),
        }
    }

    /// The registered callbacks.
    pub async fn callbacks(&self) -> Result<Vec<Callback>, ConnectorError> {
        self.list("/system/callbacks", None).await
    }

    /// Registers a callback unless one with the same URL, type, level and
    /// object is already there (answers that one).
    pub async fn register_callback(
        &self,
        callback: &NewCallback,
        key: &str,
    ) -> Result<Callback, ConnectorError> {
        let existing = self.callbacks().await?.into_iter().find(|c| {
            c.url == callback.url
                && c.kind.eq_ignore_ascii_case(&callback.kind)
                && c.level.eq_ignore_ascii_case(&callback.level)
                && c.object_id == callback.object_id
        });
        if let Some(found) = existing {
            return Ok(found);
        }
        self.http
            .json(
                self.request(Method::POST, "/system/callbacks")
                    .header(IDEMPOTENCY_KEY, key)
                    .json(callback),
            )
            .await
    }

    /// Deletes a callback; deleting one that is not there succeeds.
    pub async fn delete_callback(&self, id: u64) -> Result<(), ConnectorError> {
        let path = format!("/system/callbacks/{id}");
        missing_is_none(self.http.send(self.request(Method::DELETE, &path)).await)?;
        Ok(())
    }
}

#[async_trait]
impl Psa for ConnectWiseClient {
    fn kind(&self) -> PsaKind {
        PsaKind::ConnectWise
    }

    async fn company(&self, id: &str) -> Result<Option<PsaCompany>, ConnectorError> {
        let id = parse_id(SYSTEM, id)?;
        let Some(company) = missing_is_none(
            self.get::<Company>(&format!("/company/companies/{id}"))
                .await,
        )?
        else {
            return Ok(None);
        };
        let contract = self
            .agreements(id)
            .await?
            .into_iter()
            .next()
            .map(|a| a.name);
        Ok(Some(PsaCompany {
            id: company.id.to_string(),
            name: company.name,
            status: company.status.and_then(|s| s.name),
            contract,
            domain: company
                .website
                .as_deref()
                .and_then(crate::ports::domain_from_website),
        }))
    }

    async fn update_company(
        &self,
        id: &str,
        update: &CompanyUpdate,
        key: &str,
    ) -> Result<PsaCompany, ConnectorError> {
        let number = parse_id(SYSTEM, id)?;
        let path = format!("/company/companies/{number}");
        let company: Company = missing_is_none(self.get(&path).await)?
            .ok_or_else(|| not_found(SYSTEM, "company", id))?;
        if let Some(wanted) = &update.status
            && company.status.as_ref().and_then(|s| s.name.as_deref()) != Some(wanted.as_str())
        {
            let status = self
                .company_statuses()
                .await?
                .into_iter()
                .find(|s| s.name.eq_ignore_ascii_case(wanted))
                .ok_or_else(|| ConnectorError::Rejected {
                    system: SYSTEM,
                    status: None,
                    message: format!("no company status named {wanted:?}"),
                })?;
            let ops = json!([{ "op": "replace", "path": "status/id", "value": status.id }]);
            let _: serde_json::Value = self.patch(&path, ops, &sub_key(key, "status")).await?;
        }
        if let Some(name) = &update.contract {
            // Look first: the header alone does not make ConnectWise idempotent.
            let exists = self
                .agreements(number)
                .await?
                .iter()
                .any(|a| a.name == *name);
            if !exists {
                let mut body = json!({ "name": name, "company": { "id": number } });
                if let Some(kind) = self.agreement_type {
                    body["type"] = json!({ "id": kind });
                }
                let _: serde_json::Value = self
                    .http
                    .json(
                        self.request(Method::POST, "/finance/agreements")
                            .header(IDEMPOTENCY_KEY, sub_key(key, "agreement"))
                            .json(&body),
                    )
                    .await?;
            }
        }
        self.company(id)
            .await?
            .ok_or_else(|| not_found(SYSTEM, "company", id))
    }

    async fn opportunity(&self, id: &str) -> Result<Option<PsaOpportunity>, ConnectorError> {
        let id = parse_id(SYSTEM, id)?;
        let Some(o) = missing_is_none(
            self.get::<Opportunity>(&format!("/sales/opportunities/{id}"))
                .await,
        )?
        else {
            return Ok(None);
        };
        let statuses = self.opportunity_statuses().await?;
        Ok(Some(Self::opportunity_of(o, &statuses)))
    }

    async fn set_opportunity_status(
        &self,
        id: &str,
        status: &str,
        key: &str,
    ) -> Result<PsaOpportunity, ConnectorError> {
        let number = parse_id(SYSTEM, id)?;
        let statuses = self.opportunity_statuses().await?;
        let wanted = statuses
            .iter()
            .find(|s| s.name.eq_ignore_ascii_case(status))
            .ok_or_else(|| ConnectorError::Rejected {
                system: SYSTEM,
                status: None,
                message: format!("no opportunity status named {status:?}"),
            })?;
        let ops = json!([{ "op": "replace", "path": "status/id", "value": wanted.id }]);
        let updated: Opportunity = self
            .patch(&format!("/sales/opportunities/{number}"), ops, key)
            .await?;
        Ok(Self::opportunity_of(updated, &statuses))
    }

    async fn won_opportunities(
        &self,
        since: OffsetDateTime,
    ) -> Result<Vec<PsaOpportunity>, ConnectorError> {
        let statuses = self.opportunity_statuses().await?;
        let conditions = format!("closedDate >= [{}]", format_time(since));
        let closed: Vec<Opportunity> = self.list("/sales/opportunities", Some(&conditions)).await?;
        let mut won: Vec<PsaOpportunity> = closed
            .into_iter()
            .map(|o| Self::opportunity_of(o, &statuses))
            .filter(|o| o.won && o.closed_at.is_some_and(|at| at >= since))
            .collect();
        won.sort_by_key(|o| o.closed_at);
        Ok(won)
    }
}
