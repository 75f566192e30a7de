//! Autotask PSA REST API v1.0 client.
//!
//! Autotask hosts each customer in a zone; the client first asks the
//! zone-discovery service (`ZoneInformation?user=`) for the zone's URL and
//! keeps the answer for its lifetime. Every call carries the API user's
//! `UserName`, `Secret` and the integration's `ApiIntegrationCode` headers.
//!
//! Queries (`POST /{Entity}/query`) take Autotask's filter JSON and answer at
//! most 500 records a page; the client follows `pageDetails.nextPageUrl`
//! until there is none, and only to the zone's own host. Picklist values
//! (company types, opportunity statuses) are translated to and from their
//! labels through `entityInformation/fields`.
//!
//! Autotask sends no webhook for opportunities, so a won deal is found by
//! polling [`Psa::won_opportunities`] (statuses labelled `Closed` or
//! `Implemented` by default). Company webhooks, which it does send, are set
//! up with [`AutotaskClient::register_company_webhook`].

use std::sync::Arc;

use async_trait::async_trait;
use gatehouse_core::clock::Clock;
use reqwest::{Method, RequestBuilder};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};
use time::OffsetDateTime;
use tokio::sync::OnceCell;

use crate::error::ConnectorError;
use crate::http::{Http, Secret};
use crate::ports::{CompanyUpdate, Psa, PsaCompany, PsaKind, PsaOpportunity};
use crate::psa_common::{
    IDEMPOTENCY_KEY, MAX_PAGES, TIMEOUT, check_base_url, format_time, missing_is_none, not_found,
    parse_id, parse_time, sub_key, too_many_pages, unreadable,
};

const SYSTEM: &str = "autotask";
/// Autotask's largest page.
const MAX_RECORDS: u32 = 500;
/// Contract type `Recurring Service`, what a managed-services contract is.
const RECURRING_SERVICE: u64 = 7;
/// Contract status `Active`.
const ACTIVE: u64 = 1;

/// How to reach and authenticate to Autotask.
#[derive(Debug, Clone)]
pub struct AutotaskConfig {
    /// The zone-discovery host: `https://webservices.autotask.net`.
    pub discovery_url: String,
    /// The API user's user name (an email address).
    pub username: String,
    /// The API user's secret.
    pub secret: Secret,
    /// The integration's tracking identifier (`ApiIntegrationCode`).
    pub integration_code: String,
}

/// A company webhook to register.
#[derive(Debug, Clone)]
pub struct NewCompanyWebhook {
    /// Its name (at most 50 characters).
    pub name: String,
    /// Where Autotask posts: Gatehouse's `/hooks/autotask/{tenant}`.
    pub url: String,
    /// Where Autotask says it deactivated the webhook (required).
    pub deactivation_url: String,
    /// The HMAC-SHA1 key Autotask signs deliveries with (at most 64 characters).
    pub secret_key: Secret,
    /// Field ids whose change triggers a delivery.
    pub subscribed_fields: Vec<u64>,
    /// Field ids always included in a delivery.
    pub display_always_fields: Vec<u64>,
}

#[derive(Debug, Deserialize)]
struct Zone {
    url: String,
}

#[derive(Debug, Deserialize)]
struct Item<T> {
    item: Option<T>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct PageDetails {
    #[serde(default)]
    next_page_url: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Page<T> {
    items: Vec<T>,
    page_details: Option<PageDetails>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Company {
    id: u64,
    company_name: String,
    #[serde(default)]
    company_type: Option<u64>,
    #[serde(default)]
    web_address: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Contract {
    contract_name: String,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Opportunity {
    id: u64,
    title: String,
    #[serde(rename = "companyID")]
    company_id: Option<u64>,
    status: Option<u64>,
    #[serde(default)]
    closed_date: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct Webhook {
    id: u64,
    #[serde(default)]
    is_ready: bool,
}

#[derive(Debug, Deserialize)]
struct Created {
    #[serde(rename = "itemId")]
    item_id: u64,
}

#[derive(Debug, Deserialize)]
struct Fields {
    fields: Vec<FieldInfo>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct FieldInfo {
    name: String,
    #[serde(default)]
    picklist_values: Option<Vec<Choice>>,
}

#[derive(Debug, Deserialize)]
struct Choice {
    value: String,
    label: String,
}

/// A picklist: values and their labels.
struct Picklist(Vec<(u64, String)>);

impl Picklist {
    fn label(&self, value: Option<u64>) -> Option<String> {
        let value = value?;
        self.0
            .iter()
            .find(|(v, _)| *v == value)
            .map(|(_, l)| l.clone())
    }

    fn value(&self, label: &str) -> Option<u64> {
        self.0
            .iter()
            .find(|(_, l)| l.eq_ignore_ascii_case(label))
            .map(|(v, _)| *v)
    }
}

/// An Autotask client.
#[derive(Debug)]
pub struct AutotaskClient {
    http: Http,
    config: AutotaskConfig,
    clock: Arc<dyn Clock>,
    zone: OnceCell<String>,
    page_size: u32,
    won_statuses: Vec<String>,
}

impl AutotaskClient {
    /// A client for `config`; `clock` reads `Retry-After` dates and dates
    /// new contracts.
    pub fn new(config: AutotaskConfig, clock: Arc<dyn Clock>) -> Result<Self, ConnectorError> {
        check_base_url(SYSTEM, "discovery_url", &config.discovery_url)?;
        Ok(Self {
            http: Http::new(SYSTEM, TIMEOUT, Arc::clone(&clock))?,
            config,
            clock,
            zone: OnceCell::new(),
            page_size: MAX_RECORDS,
            won_statuses: vec!["Closed".into(), "Implemented".into()],
        })
    }

    /// Reads queries `size` records a page (1–500; 500 by default).
    pub fn with_page_size(mut self, size: u32) -> Self {
        self.page_size = size.clamp(1, MAX_RECORDS);
        self
    }

    /// The opportunity status labels that count as won (default `Closed`,
    /// `Implemented`).
    pub fn with_won_statuses(mut self, labels: Vec<String>) -> Self {
        self.won_statuses = labels;
        self
    }

    /// The zone's API base (`…/atservicesrest/v1.0`), discovered once.
    async fn zone(&self) -> Result<&str, ConnectorError> {
        self.zone
            .get_or_try_init(|| async {
                let url = format!(
                    "{}/atservicesrest/v1.0/ZoneInformation",
                    self.config.discovery_url.trim_end_matches('/')
                );
                let request = self
                    .http
                    .client()
                    .get(url)
                    .query(&[("user", self.config.username.as_str())]);
                let zone: Zone = match self.http.json(request).await {
                    Err(ConnectorError::Rejected {
                        status: Some(404),
                        message,
                        ..
                    }) => {
                        return Err(ConnectorError::Auth {
                            system: SYSTEM,
                            status: Some(404),
                            message: format!("zone discovery does not know the user: {message}"),
                        });
                    }
                    other => other?,
                };
                if !zone.url.starts_with("http") {
                    return Err(unreadable(SYSTEM, "the zone URL is not an http(s) URL"));
                }
                Ok(format!("{}/v1.0", zone.url.trim_end_matches('/')))
            })
            .await
            .map(String::as_str)
    }

    fn authenticated(&self, request: RequestBuilder) -> RequestBuilder {
        request
            .header("ApiIntegrationCode", &self.config.integration_code)
            .header("UserName", &self.config.username)
            .header("Secret", self.config.secret.expose())
            .header("Accept", "application/json")
    }

    async fn request(&self, method: Method, path: &str) -> Result<RequestBuilder, ConnectorError> {
        let url = format!("{}{path}", self.zone().await?);
        Ok(self.authenticated(self.http.client().request(method, url)))
    }

    async fn get_item<T: DeserializeOwned>(
        &self,
        entity: &str,
        id: u64,
    ) -> Result<Option<T>, ConnectorError> {
        let request = self
            .request(Method::GET, &format!("/{entity}/{id}"))
            .await?;
        let answer: Option<Item<T>> = missing_is_none(self.http.json(request).await)?;
        Ok(answer.and_then(|a| a.item))
    }

    /// Every record matching `filter`, following `nextPageUrl`.
    async fn query<T: DeserializeOwned>(
        &self,
        entity: &str,
        filter: Value,
    ) -> Result<Vec<T>, ConnectorError> {
        let body = json!({ "MaxRecords": self.page_size, "filter": filter });
        let request = self
            .request(Method::POST, &format!("/{entity}/query"))
            .await?
            .json(&body);
        let mut page: Page<T> = self.http.json(request).await?;
        let zone = self.zone().await?.to_owned();
        let mut all = Vec::new();
        for _ in 0..MAX_PAGES {
            all.extend(page.items);
            let Some(next) = page.page_details.and_then(|d| d.next_page_url) else {
                return Ok(all);
            };
            // The URL comes from the answer: follow it only on the zone's
            // own host, so the credentials never go anywhere else.
            if !same_origin(&next, &zone) {
                return Err(unreadable(SYSTEM, "nextPageUrl points off the zone"));
            }
            let request = self.authenticated(self.http.client().get(next));
            page = self.http.json(request).await?;
        }
        Err(too_many_pages(SYSTEM))
    }

    async fn picklist(&self, entity: &str, field: &str) -> Result<Picklist, ConnectorError> {
        let request = self
            .request(Method::GET, &format!("/{entity}/entityInformation/fields"))
            .await?;
        let fields: Fields = self.http.json(request).await?;
        let values = fields
            .fields
            .into_iter()
            .find(|f| f.name.eq_ignore_ascii_case(field))
            .and_then(|f| f.picklist_values)
            .ok_or_else(|| unreadable(SYSTEM, "the picklist is missing"))?;
        Ok(Picklist(
            values
                .into_iter()
                .filter_map(|c| Some((c.value.parse().ok()?, c.label)))
                .collect(),
        ))
    }

    async fn write(
        &self,
        method: Method,
        path: &str,
        body: &Value,
        key: Option<&str>,
    ) -> Result<u64, ConnectorError> {
        let mut request = self.request(method, path).await?.json(body);
        if let Some(key) = key {
            request = request.header(IDEMPOTENCY_KEY, key);
        }
        let created: Created = self.http.json(request).await?;
        Ok(created.item_id)
    }

    async fn contracts(&self, company: u64) -> Result<Vec<Contract>, ConnectorError> {
        self.query(
            "Contracts",
            json!([{ "op": "eq", "field": "companyID", "value": company },
                   { "op": "eq", "field": "status", "value": ACTIVE }]),
        )
        .await
    }

    fn opportunity_of(&self, o: Opportunity, statuses: &Picklist) -> PsaOpportunity {
        let status = statuses.label(o.status).unwrap_or_default();
        PsaOpportunity {
            id: o.id.to_string(),
            name: o.title,
            company_id: o.company_id.map(|c| c.to_string()).unwrap_or_default(),
            won: self
                .won_statuses
                .iter()
                .any(|w| w.eq_ignore_ascii_case(&status)),
            status,
            closed_at: o.closed_date.as_deref().and_then(parse_time),
        }
    }

    /// Registers a company webhook with its fields, unless one posting to
    /// the same URL exists; answers its id. A webhook found without fields
    /// (an earlier attempt stopped half-way) gets them now.
    pub async fn register_company_webhook(
        &self,
        webhook: &NewCompanyWebhook,
        key: &str,
    ) -> Result<u64, ConnectorError> {
        if webhook.subscribed_fields.is_empty() {
            return Err(ConnectorError::Config {
                system: SYSTEM,
                message: "a company webhook needs at least one subscribed field".into(),
            });
        }
        let existing: Vec<Webhook> = self
            .query(
                "CompanyWebhooks",
                json!([{ "op": "eq", "field": "webhookUrl", "value": webhook.url }]),
            )
            .await?;
        let id = match existing.first() {
            Some(found) if found.is_ready => return Ok(found.id),
            Some(found) => found.id,
            None => {
                let body = json!({
                    "IsActive": true,
                    "Name": webhook.name,
                    "WebhookUrl": webhook.url,
                    "DeactivationUrl": webhook.deactivation_url,
                    "SecretKey": webhook.secret_key.expose(),
                    "IsSubscribedToCreateEvents": true,
                    "IsSubscribedToUpdateEvents": true,
                    "IsSubscribedToDeleteEvents": false,
                    "SendThresholdExceededNotification": true,
                });
                self.write(Method::POST, "/CompanyWebhooks", &body, Some(key))
                    .await?
            }
        };
        let subscribed = webhook.subscribed_fields.iter().map(|f| (*f, true));
        let always = webhook
            .display_always_fields
            .iter()
            .filter(|f| !webhook.subscribed_fields.contains(f))
            .map(|f| (*f, false));
        for (field, is_subscribed) in subscribed.chain(always) {
            let body = json!({
                "FieldID": field,
                "IsSubscribedField": is_subscribed,
                "IsDisplayAlwaysField": !is_subscribed
                    || webhook.display_always_fields.contains(&field),
            });
            self.write(
                Method::POST,
                &format!("/CompanyWebhooks/{id}/Fields"),
                &body,
                Some(&sub_key(key, &format!("field-{field}"))),
            )
            .await?;
        }
        Ok(id)
    }
}

/// Whether `url` is on the same scheme, host and port as `base`.
fn same_origin(url: &str, base: &str) -> bool {
    let origin = |u: &str| -> Option<String> {
        let (scheme, rest) = u.split_once("://")?;
        let host = rest.split('/').next()?;
        Some(format!(
            "{}://{}",
            scheme.to_ascii_lowercase(),
            host.to_ascii_lowercase()
        ))
    };
    origin(url).is_some_and(|o| Some(o) == origin(base))
}

#[async_trait]
impl Psa for AutotaskClient {
    fn kind(&self) -> PsaKind {
        PsaKind::Autotask
    }

    async fn company(&self, id: &str) -> Result<Option<PsaCompany>, ConnectorError> {
        let id = parse_id(SYSTEM, id)?;
        let Some(company) = self.get_item::<Company>("Companies", id).await? else {
            return Ok(None);
        };
        let types = self.picklist("Companies", "companyType").await?;
        let contract = self
            .contracts(id)
            .await?
            .into_iter()
            .next()
            .map(|c| c.contract_name);
        Ok(Some(PsaCompany {
            id: company.id.to_string(),
            name: company.company_name,
            status: types.label(company.company_type),
            contract,
            domain: company
                .web_address
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
        let company: Company = self
            .get_item("Companies", number)
            .await?
            .ok_or_else(|| not_found(SYSTEM, "company", id))?;
        if let Some(wanted) = &update.status {
            let types = self.picklist("Companies", "companyType").await?;
            let value = types
                .value(wanted)
                .ok_or_else(|| ConnectorError::Rejected {
                    system: SYSTEM,
                    status: None,
                    message: format!("no company type named {wanted:?}"),
                })?;
            if company.company_type != Some(value) {
                let body = json!({ "id": number, "companyType": value });
                self.write(
                    Method::PATCH,
                    "/Companies",
                    &body,
                    Some(&sub_key(key, "type")),
                )
                .await?;
            }
        }
        if let Some(name) = &update.contract {
            let exists = self
                .contracts(number)
                .await?
                .iter()
                .any(|c| c.contract_name == *name);
            if !exists {
                let today = self.clock.now();
                let body = json!({
                    "companyID": number,
                    "contractName": name,
                    "contractType": RECURRING_SERVICE,
                    "status": ACTIVE,
                    "startDate": format_time(today),
                    "endDate": format_time(today + time::Duration::days(365)),
                });
                self.write(
                    Method::POST,
                    "/Contracts",
                    &body,
                    Some(&sub_key(key, "contract")),
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
        let Some(o) = self.get_item::<Opportunity>("Opportunities", id).await? else {
            return Ok(None);
        };
        let statuses = self.picklist("Opportunities", "status").await?;
        Ok(Some(self.opportunity_of(o, &statuses)))
    }

    async fn set_opportunity_status(
        &self,
        id: &str,
        status: &str,
        key: &str,
    ) -> Result<PsaOpportunity, ConnectorError> {
        let number = parse_id(SYSTEM, id)?;
        let statuses = self.picklist("Opportunities", "status").await?;
        let value = statuses
            .value(status)
            .ok_or_else(|| ConnectorError::Rejected {
                system: SYSTEM,
                status: None,
                message: format!("no opportunity status named {status:?}"),
            })?;
        let body = json!({ "id": number, "status": value });
        self.write(Method::PATCH, "/Opportunities", &body, Some(key))
            .await?;
        let o: Opportunity = self
            .get_item("Opportunities", number)
            .await?
            .ok_or_else(|| not_found(SYSTEM, "opportunity", id))?;
        Ok(self.opportunity_of(o, &statuses))
    }

    async fn won_opportunities(
        &self,
        since: OffsetDateTime,
    ) -> Result<Vec<PsaOpportunity>, ConnectorError> {
        let statuses = self.picklist("Opportunities", "status").await?;
        let won: Vec<u64> = self
            .won_statuses
            .iter()
            .filter_map(|label| statuses.value(label))
            .collect();
        if won.is_empty() {
            return Err(ConnectorError::Config {
                system: SYSTEM,
                message: "none of the won statuses is an opportunity status here".into(),
            });
        }
        let found: Vec<Opportunity> = self
            .query(
                "Opportunities",
                json!([{ "op": "gte", "field": "closedDate", "value": format_time(since) },
                       { "op": "in", "field": "status", "value": won }]),
            )
            .await?;
        let mut opportunities: Vec<PsaOpportunity> = found
            .into_iter()
            .map(|o| self.opportunity_of(o, &statuses))
            .filter(|o| o.won && o.closed_at.is_some_and(|at| at >= since))
            .collect();
        opportunities.sort_by_key(|o| o.closed_at);
        Ok(opportunities)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_page_urls_must_stay_on_the_zone() {
        let zone = "https://webservices5.autotask.net/atservicesrest/v1.0";
        assert!(same_origin(
            "https://WEBSERVICES5.autotask.net/atservicesrest/v1.0/Companies/query/next?paging=x",
            zone
        ));
        assert!(!same_origin("https://evil.example/atservicesrest", zone));
        assert!(!same_origin("http://webservices5.autotask.net/x", zone));
        assert!(!same_origin("not a url", zone));
    }
}
