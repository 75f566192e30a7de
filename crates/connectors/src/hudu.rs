//! Hudu: companies, articles and asset passwords through API v1.
//!
//! Every call carries the API key in `x-api-key`. The [`DocsPlatform`]
//! port maps an organization to a Hudu company and a document to a
//! knowledge-base article of that company.
//!
//! Listings are read with `page` and `page_size` until a page comes back
//! empty: Hudu gives no total, and a page shorter than asked for is not
//! proof of the end if the instance caps the page size. A company is found
//! with the `name` filter and then matched exactly.
//!
//! Asset passwords need a key with password access; Gatehouse stores them
//! and never reads a value back.

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use gatehouse_core::clock::Clock;
use reqwest::{Method, RequestBuilder, Url, header};
use serde::Deserialize;
use serde::de::DeserializeOwned;
use serde_json::{Value, json};

use crate::error::ConnectorError;
use crate::http::{Http, Secret};
use crate::ports::{DocsDocument, DocsOrganization, DocsPlatform};
use crate::rest::{endpoint, parse_base, read_json, with_key};

const SYSTEM: &str = "hudu";

/// How to reach one Hudu instance.
#[derive(Debug, Clone)]
pub struct HuduConfig {
    /// The instance, `https://docs.example.com` (without `/api/v1`).
    pub base_url: String,
    /// The API key.
    pub api_key: Secret,
    /// Items asked for per page (1–1000).
    pub page_size: u32,
    /// Each call gives up after this long.
    pub timeout: Duration,
}

impl HuduConfig {
    /// Settings with the defaults: 100 a page, 30 s timeout.
    pub fn new(base_url: &str, api_key: Secret) -> Self {
        Self {
            base_url: base_url.to_owned(),
            api_key,
            page_size: 100,
            timeout: Duration::from_secs(30),
        }
    }
}

/// A Hudu API client; implements [`DocsPlatform`].
#[derive(Debug)]
pub struct HuduClient {
    http: Http,
    base: Url,
    api_key: Secret,
    page_size: u32,
}

#[derive(Deserialize)]
struct Company {
    id: u64,
    name: String,
}

#[derive(Deserialize)]
struct Article {
    id: u64,
    name: String,
    company_id: Option<u64>,
}

#[derive(Deserialize)]
struct CompanyAnswer {
    company: Company,
}

#[derive(Deserialize)]
struct ArticleAnswer {
    article: Article,
}

#[derive(Deserialize)]
struct PasswordAnswer {
    asset_password: Created,
}

#[derive(Deserialize)]
struct Created {
    id: u64,
}

impl HuduClient {
    /// A client for `config`; `clock` reads `Retry-After` dates.
    pub fn new(config: HuduConfig, clock: Arc<dyn Clock>) -> Result<Self, ConnectorError> {
        let base = parse_base(SYSTEM, &config.base_url)?;
        if !(1..=1000).contains(&config.page_size) {
            return Err(ConnectorError::Config {
                system: SYSTEM,
                message: "page_size must be between 1 and 1000".to_owned(),
            });
        }
        Ok(Self {
            http: Http::new(SYSTEM, config.timeout, clock)?,
            base,
            api_key: config.api_key,
            page_size: config.page_size,
        })
    }

    fn url(&self, segments: &[&str]) -> Url {
        let mut all = vec!["api", "v1"];
        all.extend_from_slice(segments);
        endpoint(&self.base, &all)
    }

    fn request(&self, method: Method, url: Url) -> RequestBuilder {
        self.http
            .client()
            .request(method, url)
            .header("x-api-key", self.api_key.expose())
            .header(header::ACCEPT, "application/json")
    }

    async fn json<T: DeserializeOwned>(
        &self,
        request: RequestBuilder,
    ) -> Result<T, ConnectorError> {
        read_json(SYSTEM, self.http.send(request).await?).await
    }

    /// Every item under `field` of a paged listing.
    async fn all_pages<T: DeserializeOwned>(
        &self,
        url: Url,
        filters: &[(&str, &str)],
        field: &str,
    ) -> Result<Vec<T>, ConnectorError> {
        let mut items = Vec::new();
        for number in 1u64.. {
            let mut page_url = url.clone();
            {
                let mut query = page_url.query_pairs_mut();
                for (name, value) in filters {
                    query.append_pair(name, value);
                }
                query
                    .append_pair("page", &number.to_string())
                    .append_pair("page_size", &self.page_size.to_string());
            }
            let mut page: Value = self.json(self.request(Method::GET, page_url)).await?;
            let list = page.get_mut(field).map(Value::take).unwrap_or(Value::Null);
            let page: Vec<T> =
                serde_json::from_value(list).map_err(|e| ConnectorError::Rejected {
                    system: SYSTEM,
                    status: None,
                    message: format!("unreadable {field}: {e}"),
                })?;
            if page.is_empty() {
                break;
            }
            items.extend(page);
        }
        Ok(items)
    }
}

#[async_trait]
impl DocsPlatform for HuduClient {
    fn vendor(&self) -> &'static str {
        SYSTEM
    }

    async fn find_organization(
        &self,
        name: &str,
    ) -> Result<Option<DocsOrganization>, ConnectorError> {
        let found: Vec<Company> = self
            .all_pages(self.url(&["companies"]), &[("name", name)], "companies")
            .await?;
        let mut exact = found.into_iter().filter(|c| c.name == name);
        let first = exact.next();
        if exact.next().is_some() {
            return Err(ConnectorError::Rejected {
                system: SYSTEM,
                status: None,
                message: format!("more than one company is called {name:?}"),
            });
        }
        Ok(first.map(organization))
    }

    async fn create_organization(
        &self,
        name: &str,
        key: &str,
    ) -> Result<DocsOrganization, ConnectorError> {
        let body = json!({ "company": { "name": name } });
        let request = self
            .request(Method::POST, self.url(&["companies"]))
            .json(&body);
        let created: CompanyAnswer = self.json(with_key(request, key)).await?;
        Ok(organization(created.company))
    }

    async fn delete_organization(&self, id: &str, key: &str) -> Result<(), ConnectorError> {
        let Ok(id) = id.trim().parse::<u64>() else {
            // Hudu ids are numbers: this one names nothing there.
            return Ok(());
        };
        let url = self.url(&["companies", &id.to_string()]);
        match self
            .http
            .send(with_key(self.request(Method::DELETE, url), key))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.status() == Some(404) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn documents(&self, organization: &str) -> Result<Vec<DocsDocument>, ConnectorError> {
        let company = company_id(organization)?.to_string();
        let found: Vec<Article> = self
            .all_pages(
                self.url(&["articles"]),
                &[("company_id", &company)],
                "articles",
            )
            .await?;
        Ok(found
            .into_iter()
            .map(|a| document(a, organization))
            .collect())
    }

    async fn create_document(
        &self,
        organization: &str,
        title: &str,
        body_html: &str,
        key: &str,
    ) -> Result<DocsDocument, ConnectorError> {
        let company = company_id(organization)?;
        let body = json!({ "article": {
            "name": title,
            "content": body_html,
            "company_id": company,
        } });
        let request = self
            .request(Method::POST, self.url(&["articles"]))
            .json(&body);
        let created: ArticleAnswer = self.json(with_key(request, key)).await?;
        Ok(document(created.article, organization))
    }

    async fn create_password(
        &self,
        organization: &str,
        name: &str,
        username: &str,
        password: &Secret,
        key: &str,
    ) -> Result<String, ConnectorError> {
        let company = company_id(organization)?;
        let body = json!({ "asset_password": {
            "company_id": company,
            "name": name,
            "username": username,
            "password": password.expose(),
        } });
        let request = self
            .request(Method::POST, self.url(&["asset_passwords"]))
            .json(&body);
        let created: PasswordAnswer = self.json(with_key(request, key)).await?;
        Ok(created.asset_password.id.to_string())
    }
}

fn organization(c: Company) -> DocsOrganization {
    DocsOrganization {
        id: c.id.to_string(),
        name: c.name,
    }
}

fn document(a: Article, organization: &str) -> DocsDocument {
    DocsDocument {
        id: a.id.to_string(),
        organization_id: a
            .company_id
            .map_or_else(|| organization.to_owned(), |c| c.to_string()),
        title: a.name,
    }
}

fn company_id(organization: &str) -> Result<u64, ConnectorError> {
    organization
        .trim()
        .parse()
        .map_err(|_| ConnectorError::Rejected {
            system: SYSTEM,
            status: None,
            message: format!("{organization:?} is not a Hudu company id"),
        })
}
