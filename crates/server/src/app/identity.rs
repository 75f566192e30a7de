//! Identity lifecycle for operators: lifecycle events and CSV import, people,
//! the access policy (with its impact before it applies), drift and its
//! remediation, just-in-time elevation, and leavers' revocations. Each call
//! is authorised here; the work is [`crate::identity`]'s.

use gatehouse_core::id::WorkflowId;
use gatehouse_core::tenant::{Tenant, TenantState};
use gatehouse_identity::plan::Impact;
use gatehouse_identity::{Drift, LifecycleEvent};
use serde::Serialize;

use super::{Actor, App, TenantRef};
use crate::authz::Permission;
use crate::error::AppError;
use crate::identity::service::{Ingested, PersonView, Reconciled};
use crate::identity::{IdentityError, RevocationDoc};

/// The largest CSV file accepted.
pub const MAX_IMPORT_BYTES: usize = 16 * 1024 * 1024;

impl From<IdentityError> for AppError {
    fn from(err: IdentityError) -> Self {
        match err {
            IdentityError::Invalid(m) => AppError::Invalid(m),
            IdentityError::NotFound(what) => AppError::NotFound {
                code: "not_found",
                message: format!("no {what}"),
            },
            IdentityError::Store(e) => e.into(),
            IdentityError::Keys(m) => AppError::Unavailable(m),
            IdentityError::System { .. } | IdentityError::Systems(_) => {
                AppError::Unavailable(err.to_string())
            }
        }
    }
}

/// What a CSV import did.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ImportReport {
    /// Rows read (the header excluded).
    pub rows: usize,
    /// Rows applied.
    pub applied: usize,
    /// Rows already imported before (nothing changed).
    pub duplicates: usize,
    /// Rows that could not be imported, by line, with why.
    #[schema(value_type = Vec<Object>)]
    pub errors: Vec<gatehouse_identity::import::RowError>,
    /// Workflow instances started.
    #[schema(value_type = Vec<String>)]
    pub workflows: Vec<WorkflowId>,
}

/// One revocation, as shown.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct RevocationView {
    /// The person's id.
    pub person_id: String,
    /// Their key.
    pub person: String,
    /// When the termination was applied.
    #[serde(with = "time::serde::rfc3339")]
    pub started_at: time::OffsetDateTime,
    /// When it escalates if incomplete.
    #[serde(with = "time::serde::rfc3339")]
    pub deadline_at: time::OffsetDateTime,
    /// When every system showed it: "revocation complete at T".
    #[serde(with = "time::serde::rfc3339::option")]
    pub completed_at: Option<time::OffsetDateTime>,
    /// When it was escalated to a person.
    #[serde(with = "time::serde::rfc3339::option")]
    pub escalated_at: Option<time::OffsetDateTime>,
    /// Attempts so far.
    pub attempts: u32,
    /// What remains, with the last error.
    #[schema(value_type = Vec<Object>)]
    pub remaining: Vec<crate::identity::Remaining>,
}

impl App {
    async fn people_tenant(
        &self,
        actor: &Actor,
        tenant: &TenantRef,
        permission: Permission,
    ) -> Result<Tenant, AppError> {
        let tenant = self.tenant_for(actor, permission, tenant).await?;
        if tenant.state == TenantState::Deleted {
            return Err(AppError::not_found("tenant", &tenant.slug));
        }
        Ok(tenant)
    }

    /// Applies one lifecycle event.
    pub async fn ingest_lifecycle_event(
        &self,
        actor: &Actor,
        tenant: &TenantRef,
        event: LifecycleEvent,
    ) -> Result<Ingested, AppError> {
        let tenant = self
            .people_tenant(actor, tenant, Permission::ManagePeople)
            .await?;
        Ok(self
            .identity
            .ingest(tenant.id, event, &actor.provenance(self.now()))
            .await?)
    }

    /// Imports a CSV file of lifecycle events: bad rows are reported, good
    /// rows applied; `progress` is told after each row.
    pub async fn import_people(
        &self,
        actor: &Actor,
        tenant: &TenantRef,
        csv: &[u8],
        source: &str,
        progress: &(dyn Fn(usize, usize) + Send + Sync),
    ) -> Result<ImportReport, AppError> {
        let tenant = self
            .people_tenant(actor, tenant, Permission::ManagePeople)
            .await?;
        if csv.len() > MAX_IMPORT_BYTES {
            return Err(AppError::Invalid(format!(
                "a CSV import is at most {MAX_IMPORT_BYTES} bytes"
            )));
        }
        let parsed = gatehouse_identity::import::parse(csv, source, self.now())
            .map_err(AppError::Invalid)?;
        let rows = parsed.events.len() + parsed.errors.len();
        let mut report = ImportReport {
            rows,
            applied: 0,
            duplicates: 0,
            errors: parsed.errors,
            workflows: Vec::new(),
        };
        let by = actor.provenance(self.now());
        for (done, (line, event)) in parsed.events.into_iter().enumerate() {
            match self.identity.ingest(tenant.id, event, &by).await {
                Ok(ingested) if ingested.duplicate => report.duplicates += 1,
                Ok(ingested) => {
                    report.applied += 1;
                    report.workflows.extend(ingested.workflows);
                }
                Err(IdentityError::Invalid(message) | IdentityError::NotFound(message)) => {
                    report
                        .errors
                        .push(gatehouse_identity::import::RowError { line, message });
                }
                Err(other) => return Err(other.into()),
            }
            progress(done + 1, rows);
        }
        report.errors.sort_by_key(|e| e.line);
        Ok(report)
    }

    /// A page of people, in id order after `after`.
    pub async fn list_people(
        &self,
        actor: &Actor,
        tenant: &TenantRef,
        after: Option<&str>,
        limit: u32,
    ) -> Result<Vec<PersonView>, AppError> {
        let tenant = self
            .people_tenant(actor, tenant, Permission::ReadPeople)
            .await?;
        Ok(self
            .identity
            .people(tenant.id, after, limit.clamp(1, 1000))
            .await?)
    }

    /// One person (by id or key) with their desired grants.
    pub async fn get_person(
        &self,
        actor: &Actor,
        tenant: &TenantRef,
        person: &str,
    ) -> Result<(PersonView, gatehouse_identity::Desired), AppError> {
        let tenant = self
            .people_tenant(actor, tenant, Permission::ReadPeople)
            .await?;
        let view = self.identity.person(tenant.id, person).await?;
        let sealer = self.identity.core.sealer(tenant.id).await?;
        let desired = self
            .identity
            .desired(tenant.id, &sealer, &view.id, &view.person)
            .await?;
        Ok((view, desired))
    }

    /// Reconciles one person now.
    pub async fn reconcile_person(
        &self,
        actor: &Actor,
        tenant: &TenantRef,
        person: &str,
    ) -> Result<Reconciled, AppError> {
        let tenant = self
            .people_tenant(actor, tenant, Permission::ManagePeople)
            .await?;
        let view = self.identity.person(tenant.id, person).await?;
        Ok(self
            .identity
            .reconcile(tenant.id, &view.id, &actor.provenance(self.now()).actor)
            .await?)
    }

    /// The access policy: version (0: none yet) and text.
    pub async fn access_policy(
        &self,
        actor: &Actor,
        tenant: &TenantRef,
    ) -> Result<(u64, String), AppError> {
        let tenant = self
            .people_tenant(actor, tenant, Permission::ReadPeople)
            .await?;
        Ok(self.identity.policy(tenant.id).await?)
    }

    /// Who would gain and lose what under `text`.
    pub async fn preview_access_policy(
        &self,
        actor: &Actor,
        tenant: &TenantRef,
        text: &str,
    ) -> Result<Vec<Impact>, AppError> {
        let tenant = self
            .people_tenant(actor, tenant, Permission::ReadPeople)
            .await?;
        Ok(self.identity.preview(tenant.id, text).await?)
    }

    /// Replaces the access policy at `version` and reconciles whoever it
    /// affects.
    pub async fn set_access_policy(
        &self,
        actor: &Actor,
        tenant: &TenantRef,
        text: &str,
        version: u64,
    ) -> Result<(u64, Vec<Impact>), AppError> {
        let tenant = self
            .people_tenant(actor, tenant, Permission::ManageAccessPolicy)
            .await?;
        Ok(self
            .identity
            .set_policy(tenant.id, text, version, &actor.provenance(self.now()))
            .await?)
    }

    /// Drift on every system of the tenant.
    pub async fn identity_drift(
        &self,
        actor: &Actor,
        tenant: &TenantRef,
    ) -> Result<Vec<Drift>, AppError> {
        let tenant = self
            .people_tenant(actor, tenant, Permission::ReadPeople)
            .await?;
        Ok(self.identity.drift(tenant.id).await?)
    }

    /// Remediates drift through the engine.
    pub async fn remediate_drift(
        &self,
        actor: &Actor,
        tenant: &TenantRef,
    ) -> Result<(Vec<Drift>, Vec<WorkflowId>), AppError> {
        let tenant = self
            .people_tenant(actor, tenant, Permission::ManagePeople)
            .await?;
        Ok(self
            .identity
            .remediate(tenant.id, &actor.provenance(self.now()).actor)
            .await?)
    }

    /// Asks for just-in-time access.
    pub async fn request_elevation(
        &self,
        actor: &Actor,
        tenant: &TenantRef,
        person: &str,
        elevation: &str,
        duration_secs: u64,
        justification: &str,
    ) -> Result<(String, Vec<WorkflowId>), AppError> {
        let tenant = self
            .people_tenant(actor, tenant, Permission::RequestElevation)
            .await?;
        Ok(self
            .identity
            .request_elevation(
                tenant.id,
                person,
                elevation,
                duration_secs,
                justification,
                &actor.provenance(self.now()),
            )
            .await?)
    }

    /// The tenant's elevations.
    pub async fn list_elevations(
        &self,
        actor: &Actor,
        tenant: &TenantRef,
    ) -> Result<
        Vec<(
            gatehouse_core::identity::StoredElevation,
            crate::identity::ElevationDoc,
        )>,
        AppError,
    > {
        let tenant = self
            .people_tenant(actor, tenant, Permission::ReadPeople)
            .await?;
        let sealer = self.identity.core.sealer(tenant.id).await?;
        Ok(self
            .identity
            .core
            .elevations(tenant.id, &sealer, None)
            .await?)
    }

    /// Ends an elevation now.
    pub async fn end_elevation(
        &self,
        actor: &Actor,
        tenant: &TenantRef,
        id: &str,
    ) -> Result<Vec<WorkflowId>, AppError> {
        let tenant = self
            .people_tenant(actor, tenant, Permission::ManagePeople)
            .await?;
        Ok(self
            .identity
            .end_elevation(tenant.id, id, &actor.provenance(self.now()))
            .await?)
    }

    /// The tenant's revocations, incomplete first.
    pub async fn revocations(
        &self,
        actor: &Actor,
        tenant: &TenantRef,
    ) -> Result<Vec<RevocationView>, AppError> {
        let tenant = self
            .people_tenant(actor, tenant, Permission::ReadPeople)
            .await?;
        Ok(self
            .identity
            .revocations(tenant.id)
            .await?
            .into_iter()
            .map(|(r, doc): (_, RevocationDoc)| RevocationView {
                person_id: r.person_id,
                person: doc.person,
                started_at: r.started_at,
                deadline_at: r.deadline_at,
                completed_at: r.completed_at,
                escalated_at: r.escalated_at,
                attempts: doc.attempts,
                remaining: doc.remaining,
            })
            .collect())
    }
}
