//! `rmm.…`: the client's organization, location and agent installer in the
//! RMM, and the check that agents report.

use std::sync::Arc;

use async_trait::async_trait;
use gatehouse_connectors::ports::Rmm;
use gatehouse_engine::action::{Action, ActionCall, ActionError, Change, Plan};
use serde_json::{Value, json};

use super::{Directory, Wanted, action_error, id_param, optional_text, text};

/// The RMM of a call's tenant.
async fn rmm(directory: &Directory, call: &ActionCall<'_>) -> Result<Arc<dyn Rmm>, ActionError> {
    let tenant = directory.tenant_of(call).await?;
    let (_, rmm) = directory
        .rmm(tenant, &Wanted::from_params(call.params, None)?)
        .await?;
    Ok(rmm)
}

/// `rmm.create_organization {tenant, name}`: the organization called
/// `name`, created unless it exists. Output: `{id, name, created}`.
#[derive(Debug, Clone)]
pub struct CreateRmmOrganization(pub Arc<Directory>);

#[async_trait]
impl Action for CreateRmmOrganization {
    async fn run(&self, call: ActionCall<'_>) -> Result<Value, ActionError> {
        let name = text(call.params, "name")?;
        let rmm = rmm(&self.0, &call).await?;
        if let Some(found) = rmm.find_organization(name).await.map_err(action_error)? {
            return Ok(json!({ "id": found.id, "name": found.name, "created": false }));
        }
        let created = rmm
            .create_organization(name, call.idempotency_key)
            .await
            .map_err(action_error)?;
        Ok(json!({ "id": created.id, "name": created.name, "created": true }))
    }

    async fn plan(&self, call: ActionCall<'_>) -> Result<Option<Plan>, ActionError> {
        let name = text(call.params, "name")?;
        let rmm = rmm(&self.0, &call).await?;
        let found = rmm.find_organization(name).await.map_err(action_error)?;
        let changes = if found.is_some() {
            Vec::new()
        } else {
            vec![Change {
                target: format!("{} organization", rmm.vendor()),
                field: "name".into(),
                before: Value::Null,
                after: json!(name),
            }]
        };
        Ok(Some(Plan::new(
            format!("Create the {} organization \"{name}\"", rmm.vendor()),
            changes,
            json!({ "organization": found }),
        )))
    }
}

/// `rmm.delete_organization {tenant, organization}` (the compensation of
/// `rmm.create_organization`): deletes it and its locations; one already
/// gone is fine. Output: `{id, deleted}`.
#[derive(Debug, Clone)]
pub struct DeleteRmmOrganization(pub Arc<Directory>);

#[async_trait]
impl Action for DeleteRmmOrganization {
    async fn run(&self, call: ActionCall<'_>) -> Result<Value, ActionError> {
        let id = id_param(call.params, "organization")?;
        let rmm = rmm(&self.0, &call).await?;
        rmm.delete_organization(&id, call.idempotency_key)
            .await
            .map_err(action_error)?;
        Ok(json!({ "id": id, "deleted": true }))
    }

    async fn plan(&self, call: ActionCall<'_>) -> Result<Option<Plan>, ActionError> {
        let id = id_param(call.params, "organization")?;
        let rmm = rmm(&self.0, &call).await?;
        let found = rmm.organization(&id).await.map_err(action_error)?;
        let changes = found
            .iter()
            .map(|org| Change {
                target: format!("{} organization {}", rmm.vendor(), org.id),
                field: "name".into(),
                before: json!(org.name),
                after: Value::Null,
            })
            .collect();
        Ok(Some(Plan::new(
            format!(
                "Delete the {} organization {id} and its locations",
                rmm.vendor()
            ),
            changes,
            json!({ "organization": found }),
        )))
    }
}

/// `rmm.create_location {tenant, organization, name}`: the location called
/// `name`, created unless it exists. Output: `{id, organization_id, name,
/// created}`.
#[derive(Debug, Clone)]
pub struct CreateLocation(pub Arc<Directory>);

#[async_trait]
impl Action for CreateLocation {
    async fn run(&self, call: ActionCall<'_>) -> Result<Value, ActionError> {
        let organization = id_param(call.params, "organization")?;
        let name = text(call.params, "name")?;
        let rmm = rmm(&self.0, &call).await?;
        let existing = rmm.locations(&organization).await.map_err(action_error)?;
        if let Some(found) = existing.into_iter().find(|l| l.name == name) {
            return Ok(json!({
                "id": found.id, "organization_id": found.organization_id, "name": found.name, "created": false,
            }));
        }
        let created = rmm
            .create_location(&organization, name, call.idempotency_key)
            .await
            .map_err(action_error)?;
        Ok(json!({
            "id": created.id, "organization_id": created.organization_id, "name": created.name, "created": true,
        }))
    }

    async fn plan(&self, call: ActionCall<'_>) -> Result<Option<Plan>, ActionError> {
        let organization = id_param(call.params, "organization")?;
        let name = text(call.params, "name")?;
        let rmm = rmm(&self.0, &call).await?;
        let mut names: Vec<String> = rmm
            .locations(&organization)
            .await
            .map_err(action_error)?
            .into_iter()
            .map(|l| l.name)
            .collect();
        names.sort();
        let changes = if names.iter().any(|n| n == name) {
            Vec::new()
        } else {
            vec![Change {
                target: format!("{} organization {organization}", rmm.vendor()),
                field: format!("locations[{name}]"),
                before: Value::Null,
                after: json!(name),
            }]
        };
        Ok(Some(Plan::new(
            format!("Create the location \"{name}\" in organization {organization}"),
            changes,
            json!({ "organization": organization, "locations": names }),
        )))
    }
}

/// `rmm.create_installer_link {tenant, organization, location,
/// installer_type?}`: the agent installer link of the location (the RMM
/// keeps one per location and type, so asking again is harmless). Output:
/// `{url, installer_type, organization, location}`.
#[derive(Debug, Clone)]
pub struct CreateInstallerLink(pub Arc<Directory>);

#[async_trait]
impl Action for CreateInstallerLink {
    async fn run(&self, call: ActionCall<'_>) -> Result<Value, ActionError> {
        let organization = id_param(call.params, "organization")?;
        let location = id_param(call.params, "location")?;
        let rmm = rmm(&self.0, &call).await?;
        let link = rmm
            .installer_link(&organization, &location)
            .await
            .map_err(action_error)?;
        if let Some(wanted) = optional_text(call.params, "installer_type")?
            && wanted != link.installer_type
        {
            return Err(ActionError::permanent(format!(
                "the RMM offers a {} installer for this location, not {wanted}",
                link.installer_type
            )));
        }
        Ok(json!({
            "url": link.url, "installer_type": link.installer_type,
            "organization": organization, "location": location,
        }))
    }

    async fn plan(&self, call: ActionCall<'_>) -> Result<Option<Plan>, ActionError> {
        let organization = id_param(call.params, "organization")?;
        let location = id_param(call.params, "location")?;
        let rmm = rmm(&self.0, &call).await?;
        let exists = rmm
            .locations(&organization)
            .await
            .map_err(action_error)?
            .iter()
            .any(|l| l.id == location);
        if !exists {
            return Err(ActionError::permanent(format!(
                "organization {organization} has no location {location}"
            )));
        }
        Ok(Some(Plan::new(
            format!("Make the agent installer link of location {location}"),
            vec![Change {
                target: format!("{} location {location}", rmm.vendor()),
                field: "installer_link".into(),
                before: Value::Null,
                after: json!(optional_text(call.params, "installer_type")?.unwrap_or("default")),
            }],
            json!({ "organization": organization, "location": location }),
        )))
    }
}

/// `rmm.verify_agents {tenant, organization, min_devices}` (read-only):
/// succeeds once at least `min_devices` devices of the organization report
/// online; until then a retryable failure, so the step's retry policy
/// polls. Output: `{online, total, min_devices, devices}`.
#[derive(Debug, Clone)]
pub struct VerifyAgents(pub Arc<Directory>);

#[async_trait]
impl Action for VerifyAgents {
    async fn run(&self, call: ActionCall<'_>) -> Result<Value, ActionError> {
        let organization = id_param(call.params, "organization")?;
        let min = match call.params.get("min_devices") {
            None | Some(Value::Null) => 1,
            Some(v) => v.as_u64().filter(|n| *n >= 1).ok_or_else(|| {
                ActionError::permanent(
                    "parameter `min_devices` must be a whole number of at least 1",
                )
            })?,
        };
        let rmm = rmm(&self.0, &call).await?;
        let devices = rmm.devices(&organization).await.map_err(action_error)?;
        let online: Vec<&str> = devices
            .iter()
            .filter(|d| d.online)
            .map(|d| d.name.as_str())
            .collect();
        let count = u64::try_from(online.len()).unwrap_or(u64::MAX);
        if count < min {
            return Err(ActionError::retryable(format!(
                "{count} of the {min} devices needed report online in organization {organization} ({} known)",
                devices.len()
            )));
        }
        Ok(json!({
            "online": count, "total": devices.len(), "min_devices": min, "devices": online,
        }))
    }
}
