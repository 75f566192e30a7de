//! IT Glue: organizations, documents and passwords over its JSON:API.
//!
//! Every call carries the API key in `x-api-key` and speaks
//! `application/vnd.api+json`. Listings are read to the end with
//! `page[size]` and `page[number]` until `meta.next-page` is empty.
//!
//! Choices, following IT Glue's developer documentation:
//! - an organization is found with `filter[name]` and then matched exactly
//!   (IT Glue's filter ignores case);
//! - it is deleted with IT Glue's bulk destroy (`DELETE /organizations`
//!   with a list of ids), which IT Glue carries out in the background;
//! - documents live under their organization,
//!   `/organizations/{id}/relationships/documents` (IT Glue answers `404`
//!   to a top-level `GET /documents`);
//! - passwords are created with `POST /passwords`; the key needs IT Glue's
//!   *Password Access* permission for that, and Gatehouse never reads a
//!   value back.

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

const SYSTEM: &str = "itglue";

/// The JSON:API media type.
const JSON_API: &str = "application/vnd.api+json";

/// How to reach IT Glue.
#[derive(Debug, Clone)]
pub struct ItGlueConfig {
    /// `https://api.itglue.com` (or `api.eu.itglue.com`, `api.au.itglue.com`).
    pub base_url: String,
    /// The API key.
    pub api_key: Secret,
    /// Items asked for per page (1–1000).
    pub page_size: u32,
    /// Each call gives up after this long.
    pub timeout: Duration,
}

impl ItGlueConfig {
    /// Settings with the defaults: 200 a page, 30 s timeout.
    pub fn new(base_url: &str, api_key: Secret) -> Self {
        Self {
            base_url: base_url.to_owned(),
            api_key,
            page_size: 200,
            timeout: Duration::from_secs(30),
        }
    }
}

/// An IT Glue API client; implements [`DocsPlatform`].
#[derive(Debug)]
pub struct ItGlueClient {
    http: Http,
    base: Url,
    api_key: Secret,
    page_size: u32,
}

#[derive(Deserialize)]
struct Resource {
    id: String,
    #[serde(default)]
    attributes: serde_json::Map<String, Value>,
}

impl Resource {
    fn text(&self, name: &str) -> String {
        self.attributes
            .get(name)
            .and_then(Value::as_str)
            .unwrap_or_default()
            .to_owned()
    }
}

#[derive(Deserialize)]
struct One {
    data: Resource,
}

#[derive(Deserialize, Default)]
struct Meta {
    #[serde(rename = "next-page")]
    next_page: Option<u64>,
}

#[derive(Deserialize)]
struct Many {
    data: Vec<Resource>,
    #[serde(default)]
    meta: Meta,
}

impl ItGlueClient {
    /// A client for `config`; `clock` reads `Retry-After` dates.
    pub fn new(config: ItGlueConfig, clock: Arc<dyn Clock>) -> Result<Self, ConnectorError> {
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

    fn request(&self, method: Method, url: Url) -> RequestBuilder {
        self.http
            .client()
            .request(method, url)
            .header("x-api-key", self.api_key.expose())
            .header(header::ACCEPT, JSON_API)
    }

    /// A request with a JSON:API body.
    fn with_body(&self, method: Method, url: Url, body: &Value) -> RequestBuilder {
        self.request(method, url)
            .header(header::CONTENT_TYPE, JSON_API)
            .body(body.to_string())
    }

    async fn json<T: DeserializeOwned>(
        &self,
        request: RequestBuilder,
    ) -> Result<T, ConnectorError> {
        read_json(SYSTEM, self.http.send(request).await?).await
    }

    /// Every resource of a listing, page by page.
    async fn all_pages(
        &self,
        url: Url,
        filters: &[(&str, &str)],
    ) -> Result<Vec<Resource>, ConnectorError> {
        let mut items = Vec::new();
        let mut number: u64 = 1;
        loop {
            let mut page_url = url.clone();
            {
                let mut query = page_url.query_pairs_mut();
                for (name, value) in filters {
                    query.append_pair(name, value);
                }
                query
                    .append_pair("page[size]", &self.page_size.to_string())
                    .append_pair("page[number]", &number.to_string());
            }
            let page: Many = self.json(self.request(Method::GET, page_url)).await?;
            items.extend(page.data);
            match page.meta.next_page {
                Some(next) if next > number => number = next,
                Some(_) => {
                    return Err(ConnectorError::Rejected {
                        system: SYSTEM,
                        status: None,
                        message: "the listing's next page does not move forward".to_owned(),
                    });
                }
                None => return Ok(items),
            }
        }
    }
}

#[async_trait]
impl DocsPlatform for ItGlueClient {
    fn vendor(&self) -> &'static str {
        SYSTEM
    }

    async fn find_organization(
        &self,
        name: &str,
    ) -> Result<Option<DocsOrganization>, ConnectorError> {
        let url = endpoint(&self.base, &["organizations"]);
        let found = self.all_pages(url, &[("filter[name]", name)]).await?;
        let mut exact = found.into_iter().filter(|o| o.text("name") == name);
        let first = exact.next();
        if exact.next().is_some() {
            return Err(ConnectorError::Rejected {
                system: SYSTEM,
                status: None,
                message: format!("more than one organization is called {name:?}"),
            });
        }
        Ok(first.map(|o| DocsOrganization {
            name: o.text("name"),
            id: o.id,
        }))
    }

    async fn create_organization(
        &self,
        name: &str,
        key: &str,
    ) -> Result<DocsOrganization, ConnectorError> {
        let url = endpoint(&self.base, &["organizations"]);
        let body = json!({ "data": { "type": "organizations", "attributes": { "name": name } } });
        let created: One = self
            .json(with_key(self.with_body(Method::POST, url, &body), key))
            .await?;
        Ok(DocsOrganization {
            name: created.data.text("name"),
            id: created.data.id,
        })
    }

    async fn delete_organization(&self, id: &str, key: &str) -> Result<(), ConnectorError> {
        let Ok(id) = id.trim().parse::<u64>() else {
            // IT Glue ids are numbers: this one names nothing there.
            return Ok(());
        };
        let url = endpoint(&self.base, &["organizations"]);
        let body = json!({ "data": [{ "type": "organizations", "attributes": { "id": id } }] });
        match self
            .http
            .send(with_key(self.with_body(Method::DELETE, url, &body), key))
            .await
        {
            Ok(_) => Ok(()),
            Err(e) if e.status() == Some(404) => Ok(()),
            Err(e) => Err(e),
        }
    }

    async fn documents(&self, organization: &str) -> Result<Vec<DocsDocument>, ConnectorError> {
        let url = endpoint(
            &self.base,
            &["organizations", organization, "relationships", "documents"],
        );
        let found = self.all_pages(url, &[]).await?;
        Ok(found
            .into_iter()
            .map(|d| DocsDocument {
                title: d.text("name"),
                organization_id: organization.to_owned(),
                id: d.id,
            })
            .collect())
    }

    async fn create_document(
        &self,
        organization: &str,
        title: &str,
        body_html: &str,
        key: &str,
    ) -> Result<DocsDocument, ConnectorError> {
        let url = endpoint(
            &self.base,
            &["organizations", organization, "relationships", "documents"],
        );
        let body = json!({ "data": { "type": "documents", "attributes": {
            "name": title,
            "content": body_html,
        } } });
        let created: One = self
            .json(with_key(self.with_body(Method::POST, url, &body), key))
            .await?;
        Ok(DocsDocument {
            title: created.data.text("name"),
            organization_id: organization.to_owned(),
            id: created.data.id,
        })
    }

    async fn create_password(
        &self,
        organization: &str,
        name: &str,
        username: &str,
        password: &Secret,
        key: &str,
    ) -> Result<String, ConnectorError> {
        let organization_id =
            organization
                .trim()
                .parse::<u64>()
                .map_err(|_| ConnectorError::Rejected {
                    system: SYSTEM,
                    status: None,
                    message: format!("{organization:?} is not an IT Glue organization id"),
                })?;
        let url = endpoint(&self.base, &["passwords"]);
        let body = json!({ "data": { "type": "passwords", "attributes": {
            "organization-id": organization_id,
            "name": name,
            "username": username,
            "password": password.expose(),
        } } });
        let created: One = self
            .json(with_key(self.with_body(Method::POST, url, &body), key))
            .await?;
        Ok(created.data.id)
    }
}
