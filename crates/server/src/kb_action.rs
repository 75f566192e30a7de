//! `kb.publish`: the workflow step that publishes a client's runbook into
//! its knowledge base.
//!
//! Parameters (see `client-onboarding.toml`, step `runbooks`):
//!
//! | parameter | meaning |
//! | --- | --- |
//! | `tenant` | the client tenant, by id or slug (default: the instance's tenant) |
//! | `collection` | the collection to publish into, such as `runbooks` |
//! | `from_template` | a built-in template, such as `client-runbook` |
//! | `docs_organization` | optional: the client's organization in the documentation platform, named in the runbook |
//!
//! Output: `{"collection": "runbooks", "articles": ["kba_…", …]}`.
//!
//! The step's idempotency key is the publication's key: the store writes
//! the articles and the key in one transaction, so a retried attempt (or a
//! crash between publishing and the journal recording it) finds the first
//! attempt's articles and returns them instead of publishing twice.

use std::sync::Arc;

use async_trait::async_trait;
use gatehouse_core::audit::Provenance;
use gatehouse_core::clock::Clock;
use gatehouse_core::kb::Collection;
use gatehouse_core::store::{Store, StoreError};
use gatehouse_core::tenant::{Tenant, TenantSlug};
use gatehouse_engine::action::{Action, ActionCall, ActionError};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::AppError;
use crate::kb::KbService;

/// The name templates use.
pub const NAME: &str = "kb.publish";

/// The `kb.publish` action.
#[derive(Debug, Clone)]
pub struct KbPublish {
    kb: Arc<KbService>,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct Params {
    #[serde(default)]
    tenant: Option<String>,
    collection: Collection,
    from_template: String,
    #[serde(default)]
    docs_organization: Option<Value>,
}

impl KbPublish {
    /// The action over the knowledge base `kb` (whose store is `store`).
    pub fn new(kb: Arc<KbService>, store: Arc<dyn Store>, clock: Arc<dyn Clock>) -> Self {
        Self { kb, store, clock }
    }

    async fn tenant(
        &self,
        call: &ActionCall<'_>,
        named: Option<&str>,
    ) -> Result<Tenant, ActionError> {
        let found = match named.map(str::trim).filter(|t| !t.is_empty()) {
            Some(text) if text.starts_with("ten_") => match text.parse() {
                Ok(id) => self.store.get_tenant(id).await,
                Err(err) => return Err(ActionError::permanent(format!("invalid tenant: {err}"))),
            },
            Some(text) => match TenantSlug::parse(text) {
                Ok(slug) => self.store.find_tenant_by_slug(&slug).await,
                Err(err) => return Err(ActionError::permanent(format!("invalid tenant: {err}"))),
            },
            None => match call.tenant {
                Some(id) => self.store.get_tenant(id).await,
                None => {
                    return Err(ActionError::permanent(
                        "kb.publish needs a `tenant` parameter (the instance has no tenant)",
                    ));
                }
            },
        };
        let tenant = found.map_err(|err| match err {
            StoreError::NotFound(_) => ActionError::permanent("kb.publish: no such tenant"),
            other => ActionError::retryable(format!("kb.publish: reading the tenant: {other}")),
        })?;
        // A tenant's workflow publishes to its own tenant only (as
        // `Actions::tenant_of`).
        match call.tenant {
            Some(owner) if owner != tenant.id => Err(ActionError::permanent(format!(
                "kb.publish: this workflow belongs to tenant {owner} and may not publish to `{}`",
                tenant.slug
            ))),
            _ => Ok(tenant),
        }
    }
}

/// Whether retrying can help: the store or key service being down can
/// pass; bad parameters, a deleted tenant or a bad template cannot.
fn action_error(err: AppError) -> ActionError {
    match err {
        AppError::Unavailable(_) | AppError::Internal(_) => {
            ActionError::retryable(format!("kb.publish: {err}"))
        }
        other => ActionError::permanent(format!("kb.publish: {other}")),
    }
}

#[async_trait]
impl Action for KbPublish {
    async fn run(&self, call: ActionCall<'_>) -> Result<Value, ActionError> {
        let params: Params = serde_json::from_value(call.params.clone())
            .map_err(|e| ActionError::permanent(format!("kb.publish: invalid parameters: {e}")))?;
        let tenant = self.tenant(&call, params.tenant.as_deref()).await?;
        let docs_organization = match &params.docs_organization {
            None | Some(Value::Null) => None,
            Some(Value::String(text)) => Some(text.clone()),
            Some(other) => Some(other.to_string()),
        };
        let by = Provenance::system(
            &format!("workflow {} step {}", call.instance, call.step_id),
            self.clock.now(),
        );
        let outcome = self
            .kb
            .publish(
                &by,
                &tenant,
                call.idempotency_key,
                params.collection,
                &params.from_template,
                docs_organization.as_deref(),
            )
            .await
            .map_err(action_error)?;
        if outcome.replayed {
            tracing::info!(tenant = %tenant.id, step = call.step_id, "kb.publish: already published under this key");
        }
        let publication = outcome.publication;
        Ok(json!({
            "collection": publication.collection.as_str(),
            "articles": publication.articles.iter().map(ToString::to_string).collect::<Vec<_>>(),
        }))
    }
}
