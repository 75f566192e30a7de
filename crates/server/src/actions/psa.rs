//! `psa.update_company` and `psa.update_opportunity`: the PSA's records of
//! the client, brought to what the onboarding says.

use std::sync::Arc;

use async_trait::async_trait;
use gatehouse_connectors::ports::{CompanyUpdate, PsaCompany};
use gatehouse_engine::action::{Action, ActionCall, ActionError, Change, Plan};
use serde_json::{Value, json};

use super::{Directory, Wanted, action_error, id_param, optional_text, text};

/// `psa.update_company {tenant, psa?, company_id, status?, contract?}`:
/// sets the company's status and makes sure a contract of that name
/// exists. Output: `{id, name, status, contract, changed}`.
#[derive(Debug, Clone)]
pub struct UpdateCompany(pub Arc<Directory>);

struct CompanyCall {
    id: String,
    update: CompanyUpdate,
}

fn company_call(params: &Value) -> Result<CompanyCall, ActionError> {
    let id = id_param(params, "company_id")?;
    let update = CompanyUpdate {
        status: optional_text(params, "status")?.map(str::to_owned),
        contract: optional_text(params, "contract")?.map(str::to_owned),
    };
    if update.status.is_none() && update.contract.is_none() {
        return Err(ActionError::permanent(
            "give `status`, `contract` or both: there is nothing to change",
        ));
    }
    Ok(CompanyCall { id, update })
}

/// The changes `update` makes to `company`.
fn company_changes(company: &PsaCompany, update: &CompanyUpdate) -> Vec<Change> {
    let target = format!("psa company {} ({})", company.id, company.name);
    let mut changes = Vec::new();
    for (field, now, wanted) in [
        ("status", &company.status, &update.status),
        ("contract", &company.contract, &update.contract),
    ] {
        if let Some(wanted) = wanted
            && now.as_deref() != Some(wanted.as_str())
        {
            changes.push(Change {
                target: target.clone(),
                field: field.into(),
                before: json!(now),
                after: json!(wanted),
            });
        }
    }
    changes
}

fn company_output(company: &PsaCompany, changed: bool) -> Value {
    json!({
        "id": company.id, "name": company.name, "status": company.status,
        "contract": company.contract, "changed": changed,
    })
}

impl UpdateCompany {
    async fn read(
        &self,
        call: &ActionCall<'_>,
    ) -> Result<
        (
            CompanyCall,
            Arc<dyn gatehouse_connectors::ports::Psa>,
            PsaCompany,
        ),
        ActionError,
    > {
        let parsed = company_call(call.params)?;
        let tenant = self.0.tenant_of(call).await?;
        let (_, psa) = self
            .0
            .psa(tenant, &Wanted::from_params(call.params, Some("psa"))?)
            .await?;
        let company = psa
            .company(&parsed.id)
            .await
            .map_err(action_error)?
            .ok_or_else(|| {
                ActionError::permanent(format!("the PSA has no company `{}`", parsed.id))
            })?;
        Ok((parsed, psa, company))
    }
}

#[async_trait]
impl Action for UpdateCompany {
    async fn run(&self, call: ActionCall<'_>) -> Result<Value, ActionError> {
        let (parsed, psa, company) = self.read(&call).await?;
        if company_changes(&company, &parsed.update).is_empty() {
            // Done already (by an earlier attempt, or by someone).
            return Ok(company_output(&company, false));
        }
        let updated = psa
            .update_company(&parsed.id, &parsed.update, call.idempotency_key)
            .await
            .map_err(action_error)?;
        Ok(company_output(&updated, true))
    }

    async fn plan(&self, call: ActionCall<'_>) -> Result<Option<Plan>, ActionError> {
        let (parsed, _, company) = self.read(&call).await?;
        let changes = company_changes(&company, &parsed.update);
        Ok(Some(Plan::new(
            format!("Update PSA company {} ({})", company.id, company.name),
            changes,
            json!({ "company": company }),
        )))
    }
}

/// `psa.update_opportunity {tenant, psa?, opportunity_id, status}`: sets
/// the opportunity's status. Output: `{id, name, status, won, changed}`.
#[derive(Debug, Clone)]
pub struct UpdateOpportunity(pub Arc<Directory>);

impl UpdateOpportunity {
    async fn read(
        &self,
        call: &ActionCall<'_>,
    ) -> Result<
        (
            String,
            String,
            Arc<dyn gatehouse_connectors::ports::Psa>,
            gatehouse_connectors::ports::PsaOpportunity,
        ),
        ActionError,
    > {
        let id = id_param(call.params, "opportunity_id")?;
        let status = text(call.params, "status")?.to_owned();
        let tenant = self.0.tenant_of(call).await?;
        let (_, psa) = self
            .0
            .psa(tenant, &Wanted::from_params(call.params, Some("psa"))?)
            .await?;
        let opportunity = psa
            .opportunity(&id)
            .await
            .map_err(action_error)?
            .ok_or_else(|| ActionError::permanent(format!("the PSA has no opportunity `{id}`")))?;
        Ok((id, status, psa, opportunity))
    }
}

fn opportunity_output(o: &gatehouse_connectors::ports::PsaOpportunity, changed: bool) -> Value {
    json!({ "id": o.id, "name": o.name, "status": o.status, "won": o.won, "changed": changed })
}

#[async_trait]
impl Action for UpdateOpportunity {
    async fn run(&self, call: ActionCall<'_>) -> Result<Value, ActionError> {
        let (id, status, psa, opportunity) = self.read(&call).await?;
        if opportunity.status == status {
            return Ok(opportunity_output(&opportunity, false));
        }
        let updated = psa
            .set_opportunity_status(&id, &status, call.idempotency_key)
            .await
            .map_err(action_error)?;
        Ok(opportunity_output(&updated, true))
    }

    async fn plan(&self, call: ActionCall<'_>) -> Result<Option<Plan>, ActionError> {
        let (_, status, _, opportunity) = self.read(&call).await?;
        let changes = if opportunity.status == status {
            Vec::new()
        } else {
            vec![Change {
                target: format!("psa opportunity {} ({})", opportunity.id, opportunity.name),
                field: "status".into(),
                before: json!(opportunity.status),
                after: json!(status),
            }]
        };
        Ok(Some(Plan::new(
            format!(
                "Set PSA opportunity {}'s status to {status}",
                opportunity.id
            ),
            changes,
            json!({ "opportunity": opportunity }),
        )))
    }
}
