//! `docs.…`: the client's organization in the documentation platform
//! (IT Glue, Hudu).

use std::sync::Arc;

use async_trait::async_trait;
use gatehouse_connectors::ports::DocsPlatform;
use gatehouse_engine::action::{Action, ActionCall, ActionError, Change, Plan};
use serde_json::{Value, json};

use super::{Directory, Wanted, action_error, id_param, text};

async fn docs(
    directory: &Directory,
    call: &ActionCall<'_>,
) -> Result<Arc<dyn DocsPlatform>, ActionError> {
    let tenant = directory.tenant_of(call).await?;
    let (_, docs) = directory
        .docs(tenant, &Wanted::from_params(call.params, None)?)
        .await?;
    Ok(docs)
}

/// `docs.create_organization {tenant, name}`: the organization called
/// `name`, created unless it exists. Output: `{id, name, created}`.
#[derive(Debug, Clone)]
pub struct CreateDocsOrganization(pub Arc<Directory>);

#[async_trait]
impl Action for CreateDocsOrganization {
    async fn run(&self, call: ActionCall<'_>) -> Result<Value, ActionError> {
        let name = text(call.params, "name")?;
        let docs = docs(&self.0, &call).await?;
        if let Some(found) = docs.find_organization(name).await.map_err(action_error)? {
            return Ok(json!({ "id": found.id, "name": found.name, "created": false }));
        }
        let created = docs
            .create_organization(name, call.idempotency_key)
            .await
            .map_err(action_error)?;
        Ok(json!({ "id": created.id, "name": created.name, "created": true }))
    }

    async fn plan(&self, call: ActionCall<'_>) -> Result<Option<Plan>, ActionError> {
        let name = text(call.params, "name")?;
        let docs = docs(&self.0, &call).await?;
        let found = docs.find_organization(name).await.map_err(action_error)?;
        let changes = if found.is_some() {
            Vec::new()
        } else {
            vec![Change {
                target: format!("{} organization", docs.vendor()),
                field: "name".into(),
                before: Value::Null,
                after: json!(name),
            }]
        };
        Ok(Some(Plan::new(
            format!("Create the {} organization \"{name}\"", docs.vendor()),
            changes,
            json!({ "organization": found }),
        )))
    }
}

/// `docs.delete_organization {tenant, organization}` (the compensation of
/// `docs.create_organization`): deletes it; one already gone is fine.
/// Output: `{id, deleted}`.
#[derive(Debug, Clone)]
pub struct DeleteDocsOrganization(pub Arc<Directory>);

#[async_trait]
impl Action for DeleteDocsOrganization {
    async fn run(&self, call: ActionCall<'_>) -> Result<Value, ActionError> {
        let id = id_param(call.params, "organization")?;
        let docs = docs(&self.0, &call).await?;
        docs.delete_organization(&id, call.idempotency_key)
            .await
            .map_err(action_error)?;
        Ok(json!({ "id": id, "deleted": true }))
    }
}
