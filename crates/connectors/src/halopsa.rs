//! HaloPSA REST API client.
//!
//! Authentication is OAuth 2.0 client credentials against `/auth/token`
//! (Halo's "Client ID and Secret (Services)" application); the bearer token
//! is cached, and a 401 drops it and retries the call once with a new one
//! (Halo revokes tokens when the application's secret changes).
//!
//! Halo writes by POSTing an array of objects: an object with an `id` is
//! updated, one without is created. Lists page with `pageinate=true`,
//! `page_no`, `page_size` and report `record_count`.
//!
//! Opportunities live in Halo's CRM as tickets of a ticket type; the client
//! is told that type's id ([`HaloPsaConfig::opportunity_ticket_type`]) and
//! the name of the status that means won. A customer's status is its
//! `customertype`, its contract a `ClientContract` whose `ref` is the name.
//! Webhooks (`/api/Webhook`) are registered with
//! [`HaloPsaClient::register_webhook`]; Halo does not sign them, so they
//! carry a secret `Authorization` header.

use std::sync::Arc;

use async_trait::async_trait;
use gatehouse_core::clock::Clock;
use reqwest::{Method, RequestBuilder};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::error::ConnectorError;
use crate::http::{ClientCredentials, Http, Secret, TokenCache};
use crate::ports::{CompanyUpdate, Psa, PsaCompany, PsaKind, PsaOpportunity};
use crate::psa_common::{
    IDEMPOTENCY_KEY, MAX_PAGES, TIMEOUT, check_base_url, missing_is_none, not_found, parse_id,
    parse_time, sub_key, too_many_pages,
};

const SYSTEM: &str = "halopsa";
/// Halo's largest page.
const MAX_PAGE_SIZE: u32 = 100;

/// How to reach and authenticate to HaloPSA.
#[derive(Debug, Clone)]
pub struct HaloPsaConfig {
    /// The instance: `https://msp.halopsa.com` (token at `/auth/token`, API
    /// at `/api`).
    pub base_url: String,
    /// Hosted Halo's tenant name, sent with the token request, if any.
    pub tenant: Option<String>,
    /// The API application's client id.
    pub client_id: String,
    /// The API application's client secret.
    pub client_secret: Secret,
    /// The scope to ask for (`all`, or e.g. `read:tickets edit:tickets
    /// read:customers edit:customers`).
    pub scope: String,
    /// The ticket type id of opportunities in Halo's CRM.
    pub opportunity_ticket_type: u64,
    /// The name of the ticket status that means won (`Won`).
    pub won_status: String,
}

/// How a Halo webhook authenticates to Gatehouse.
#[derive(Debug, Clone)]
pub enum WebhookAuth {
    /// HTTP Basic.
    Basic {
        /// The user name.
        username: String,
        /// The password.
        password: Secret,
    },
    /// `Authorization: Bearer {token}`.
    Bearer(Secret),
}

/// A webhook to register.
#[derive(Debug, Clone)]
pub struct NewWebhook {
    /// Its name.
    pub name: String,
    /// Where Halo posts: Gatehouse's `/hooks/halopsa/{tenant}`.
    pub url: String,
    /// The notification events it fires on (`Ticket Updated`, …).
    pub events: Vec<String>,
    /// How it authenticates.
    pub auth: WebhookAuth,
}

#[derive(Debug, Deserialize)]
struct Client {
    id: u64,
    name: String,
    #[serde(default)]
    customertype: Option<String>,
    #[serde(default)]
    website: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Contract {
    #[serde(rename = "ref")]
    reference: String,
}

#[derive(Debug, Deserialize)]
struct Contracts {
    #[serde(default)]
    contracts: Vec<Contract>,
}

#[derive(Debug, Deserialize)]
struct Ticket {
    id: u64,
    #[serde(default)]
    summary: String,
    #[serde(default)]
    client_id: Option<u64>,
    #[serde(default)]
    tickettype_id: Option<u64>,
    #[serde(default)]
    status_id: Option<u64>,
    #[serde(default)]
    dateclosed: Option<String>,
}

#[derive(Debug, Deserialize)]
struct Tickets {
    #[serde(default)]
    record_count: Option<u64>,
    #[serde(default)]
    tickets: Vec<Ticket>,
}

#[derive(Debug, Deserialize)]
struct Status {
    id: u64,
    name: String,
}

#[derive(Debug, Deserialize)]
struct Webhook {
    id: u64,
    #[serde(default)]
    url: String,
}

#[derive(Debug, Deserialize)]
struct Webhooks {
    #[serde(default)]
    webhooks: Vec<Webhook>,
}

#[derive(Debug, Deserialize)]
struct Saved {
    id: u64,
}

/// A HaloPSA client.
#[derive(Debug)]
pub struct HaloPsaClient {
    http: Http,
    config: HaloPsaConfig,
    tokens: TokenCache,
    page_size: u32,
}

impl HaloPsaClient {
    /// A client for `config`; `clock` reads `Retry-After` dates.
    pub fn new(config: HaloPsaConfig, clock: Arc<dyn Clock>) -> Result<Self, ConnectorError> {
        check_base_url(SYSTEM, "base_url", &config.base_url)?;
        let base = config.base_url.trim_end_matches('/');
        let mut token_url = check_base_url(SYSTEM, "base_url", &format!("{base}/auth/token"))?;
        if let Some(tenant) = &config.tenant {
            token_url.query_pairs_mut().append_pair("tenant", tenant);
        }
        let token_url = token_url.to_string();
        let tokens = TokenCache::new(ClientCredentials {
            token_url,
            client_id: config.client_id.clone(),
            client_secret: config.client_secret.clone(),
            scope: Some(config.scope.clone()),
        });
        Ok(Self {
            http: Http::new(SYSTEM, TIMEOUT, clock)?,
            config,
            tokens,
            page_size: MAX_PAGE_SIZE,
        })
    }

    /// Reads lists `size` records a page (1–100; 100 by default).
    pub fn with_page_size(mut self, size: u32) -> Self {
        self.page_size = size.clamp(1, MAX_PAGE_SIZE);
        self
    }

    fn url(&self, path: &str) -> String {
        format!("{}/api{path}", self.config.base_url.trim_end_matches('/'))
    }

    /// Sends the request `build` makes with a bearer token; on 401 the token
    /// is dropped and the call made once more with a new one.
    async fn call<T: DeserializeOwned>(
        &self,
        build: impl Fn(&str) -> RequestBuilder,
    ) -> Result<T, ConnectorError> {
        let token = self.tokens.bearer(&self.http).await?;
        match self.http.json(build(token.expose())).await {
            Err(error) if error.is_unauthorized() => {
                self.tokens.forget().await;
                let token = self.tokens.bearer(&self.http).await?;
                self.http.json(build(token.expose())).await
            }
            other => other,
        }
    }

    async fn get<T: DeserializeOwned>(
        &self,
        path: &str,
        query: &[(&str, String)],
    ) -> Result<T, ConnectorError> {
        let url = self.url(path);
        self.call(|token| {
            self.http
                .client()
                .get(&url)
                .query(query)
                .bearer_auth(token)
                .header("Accept", "application/json")
        })
        .await
    }

    /// POSTs `objects` (Halo's create-or-update), with an idempotency key.
    async fn save<T: DeserializeOwned>(
        &self,
        path: &str,
        objects: Value,
        key: &str,
    ) -> Result<T, ConnectorError> {
        let url = self.url(path);
        self.call(|token| {
            self.http
                .client()
                .request(Method::POST, &url)
                .bearer_auth(token)
                .header(IDEMPOTENCY_KEY, key)
                .json(&objects)
        })
        .await
    }

    async fn statuses(&self) -> Result<Vec<Status>, ConnectorError> {
        self.get("/Status", &[]).await
    }

    async fn status_named(&self, name: &str) -> Result<Status, ConnectorError> {
        self.statuses()
            .await?
            .into_iter()
            .find(|s| s.name.eq_ignore_ascii_case(name))
            .ok_or_else(|| ConnectorError::Rejected {
                system: SYSTEM,
                status: None,
                message: format!("no ticket status named {name:?}"),
            })
    }

    async fn contracts(&self, client: u64) -> Result<Vec<Contract>, ConnectorError> {
        let answer: Contracts = self
            .get("/ClientContract", &[("client_id", client.to_string())])
            .await?;
        Ok(answer.contracts)
    }

    fn opportunity_of(&self, t: Ticket, statuses: &[Status]) -> PsaOpportunity {
        let status = statuses
            .iter()
            .find(|s| Some(s.id) == t.status_id)
            .map(|s| s.name.clone())
            .unwrap_or_default();
        PsaOpportunity {
            id: t.id.to_string(),
            name: t.summary,
            company_id: t.client_id.map(|c| c.to_string()).unwrap_or_default(),
            won: status.eq_ignore_ascii_case(&self.config.won_status),
            status,
            closed_at: t.dateclosed.as_deref().and_then(parse_time),
        }
    }

    /// The ticket, if it is an opportunity (of the CRM ticket type).
    async fn opportunity_ticket(&self, id: u64) -> Result<Option<Ticket>, ConnectorError> {
        let ticket: Option<Ticket> =
            missing_is_none(self.get(&format!("/Tickets/{id}"), &[]).await)?;
        Ok(ticket.filter(|t| t.tickettype_id == Some(self.config.opportunity_ticket_type)))
    }

    /// Registers a webhook unless one posting to the same URL exists;
    /// answers its id.
    pub async fn register_webhook(
        &self,
        webhook: &NewWebhook,
        key: &str,
    ) -> Result<u64, ConnectorError> {
        let existing: Webhooks = self.get("/Webhook", &[]).await?;
        if let Some(found) = existing.webhooks.iter().find(|w| w.url == webhook.url) {
            return Ok(found.id);
        }
        let mut object = json!({
            "name": webhook.name,
            "url": webhook.url,
            "method": "POST",
            "isactive": true,
            "events": webhook.events.iter().map(|e| json!({ "name": e })).collect::<Vec<_>>(),
        });
        match &webhook.auth {
            WebhookAuth::Basic { username, password } => {
                object["authentication_type"] = json!(1);
                object["basic_username"] = json!(username);
                object["basic_password"] = json!(password.expose());
            }
            WebhookAuth::Bearer(token) => {
                object["authentication_type"] = json!(2);
                object["bearer_token"] = json!(token.expose());
            }
        }
        let saved: Saved = self.save("/Webhook", json!([object]), key).await?;
        Ok(saved.id)
    }
}

#[async_trait]
impl Psa for HaloPsaClient {
    fn kind(&self) -> PsaKind {
        PsaKind::HaloPsa
    }

    async fn company(&self, id: &str) -> Result<Option<PsaCompany>, ConnectorError> {
        let id = parse_id(SYSTEM, id)?;
        let Some(client) =
            missing_is_none(self.get::<Client>(&format!("/Client/{id}"), &[]).await)?
        else {
            return Ok(None);
        };
        let contract = self
            .contracts(id)
            .await?
            .into_iter()
            .next()
            .map(|c| c.reference);
        Ok(Some(PsaCompany {
            id: client.id.to_string(),
            name: client.name,
            status: client.customertype.filter(|t| !t.is_empty()),
            contract,
            domain: client
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
        let client: Client = missing_is_none(self.get(&format!("/Client/{number}"), &[]).await)?
            .ok_or_else(|| not_found(SYSTEM, "client", id))?;
        if let Some(wanted) = &update.status
            && client.customertype.as_deref() != Some(wanted.as_str())
        {
            let _: Value = self
                .save(
                    "/Client",
                    json!([{ "id": number, "customertype": wanted }]),
                    &sub_key(key, "type"),
                )
                .await?;
        }
        if let Some(name) = &update.contract {
            let exists = self
                .contracts(number)
                .await?
                .iter()
                .any(|c| c.reference == *name);
            if !exists {
                let _: Value = self
                    .save(
                        "/ClientContract",
                        json!([{ "client_id": number, "ref": name }]),
                        &sub_key(key, "contract"),
                    )
                    .await?;
            }
        }
        self.company(id)
            .await?
            .ok_or_else(|| not_found(SYSTEM, "client", id))
    }

    async fn opportunity(&self, id: &str) -> Result<Option<PsaOpportunity>, ConnectorError> {
        let id = parse_id(SYSTEM, id)?;
        let Some(ticket) = self.opportunity_ticket(id).await? else {
            return Ok(None);
        };
        let statuses = self.statuses().await?;
        Ok(Some(self.opportunity_of(ticket, &statuses)))
    }

    async fn set_opportunity_status(
        &self,
        id: &str,
        status: &str,
        key: &str,
    ) -> Result<PsaOpportunity, ConnectorError> {
        let number = parse_id(SYSTEM, id)?;
        if self.opportunity_ticket(number).await?.is_none() {
            return Err(not_found(SYSTEM, "opportunity", id));
        }
        let wanted = self.status_named(status).await?;
        let saved: Ticket = self
            .save(
                "/Tickets",
                json!([{ "id": number, "status_id": wanted.id }]),
                key,
            )
            .await?;
        let statuses = self.statuses().await?;
        Ok(self.opportunity_of(saved, &statuses))
    }

    async fn won_opportunities(
        &self,
        since: OffsetDateTime,
    ) -> Result<Vec<PsaOpportunity>, ConnectorError> {
        let statuses = self.statuses().await?;
        let won = self.status_named(&self.config.won_status).await?;
        let mut tickets = Vec::new();
        for page in 1..=MAX_PAGES {
            let answer: Tickets = self
                .get(
                    "/Tickets",
                    &[
                        ("pageinate", "true".to_owned()),
                        ("page_no", page.to_string()),
                        ("page_size", self.page_size.to_string()),
                        (
                            "tickettype_id",
                            self.config.opportunity_ticket_type.to_string(),
                        ),
                        ("status_id", won.id.to_string()),
                    ],
                )
                .await?;
            let short = answer.tickets.len() < self.page_size as usize;
            tickets.extend(answer.tickets);
            let done = answer
                .record_count
                .is_some_and(|total| tickets.len() as u64 >= total);
            if short || done {
                let mut opportunities: Vec<PsaOpportunity> = tickets
                    .into_iter()
                    .map(|t| self.opportunity_of(t, &statuses))
                    .filter(|o| o.won && o.closed_at.is_some_and(|at| at >= since))
                    .collect();
                opportunities.sort_by_key(|o| o.closed_at);
                return Ok(opportunities);
            }
        }
        Err(too_many_pages(SYSTEM))
    }
}
