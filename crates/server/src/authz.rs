//! Who may do what. The one place that decides, so that policy-based
//! authorization (Cedar, a later step) can replace it without touching the
//! services that call [`authorize`].

use gatehouse_core::operator::Role;

use crate::app::Actor;
use crate::error::AppError;

/// Something an actor wants to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Permission {
    /// See tenants.
    ReadTenants,
    /// Create, change, suspend, offboard and delete tenants.
    ManageTenants,
    /// Store and remove tenants' secrets (connector credentials).
    ManageSecrets,
    /// Read a secret in the clear (connectors do; people normally don't).
    RevealSecrets,
    /// See operators.
    ReadOperators,
    /// Create and disable operators, and manage anyone's tokens.
    ManageOperators,
    /// Rotate key-encryption keys.
    ManageKeys,
    /// Submit events to the workflow engine.
    SubmitEvents,
    /// See workflow instances, approvals and human tasks.
    ReadWorkflows,
    /// Approve, reject or modify gated steps (the engine also checks the
    /// approval's role and separation of duties).
    DecideApprovals,
    /// Record the outcome of human tasks.
    CompleteTasks,
    /// Cancel workflow instances.
    CancelWorkflows,
    /// Raise, lower (never below the floor) or clear a tenant's gate levels.
    ManageGates,
    /// Browse the audit log, fetch proofs, verify it, export it as OSCAL.
    ReadAudit,
    /// Have a checkpoint of an audit log signed now (harmless: it only
    /// signs what is already there).
    IssueCheckpoints,
    /// Work onboarding checklist items: mark received, upload a file,
    /// hand over a secret (which also needs `ManageSecrets`).
    WorkChecklists,
    /// Waive an onboarding checklist item, with a reason.
    WaiveChecklistItems,
    /// Download a file handed over for a checklist item (tenant data in
    /// the clear).
    ReadChecklistFiles,
    /// Read and search a tenant's knowledge base (runbooks, articles).
    ReadKnowledge,
    /// Write and edit a tenant's knowledge-base articles.
    WriteKnowledge,
    /// See a tenant's people, their grants, drift and revocations.
    ReadPeople,
    /// Send lifecycle events (hire, move, leave), import people, reconcile
    /// and remediate drift, end elevations early.
    ManagePeople,
    /// Change a tenant's access policy (role templates and rules).
    ManageAccessPolicy,
    /// Ask for just-in-time elevated access (someone else approves it).
    RequestElevation,
}

impl Permission {
    /// The roles that hold this permission.
    pub fn roles(self) -> &'static [Role] {
        use Role::*;
        match self {
            Self::ReadTenants => &[Admin, Lead, Technician, Auditor],
            Self::ManageTenants => &[Admin],
            Self::ManageSecrets => &[Admin, Lead],
            Self::RevealSecrets => &[],
            Self::ReadOperators => &[Admin, Lead, Auditor],
            Self::ManageOperators => &[Admin],
            Self::ManageKeys => &[Admin],
            Self::SubmitEvents => &[Admin, Lead],
            Self::ReadWorkflows => &[Admin, Lead, Technician, Auditor],
            Self::DecideApprovals => &[Admin, Lead],
            Self::CompleteTasks => &[Admin, Lead, Technician],
            Self::CancelWorkflows => &[Admin, Lead],
            Self::ManageGates => &[Admin, Lead],
            Self::ReadAudit => &[Admin, Lead, Auditor],
            Self::IssueCheckpoints => &[Admin, Lead, Auditor],
            Self::WorkChecklists => &[Admin, Lead, Technician],
            Self::WaiveChecklistItems => &[Admin, Lead],
            Self::ReadChecklistFiles => &[Admin, Lead, Technician],
            Self::ReadKnowledge => &[Admin, Lead, Technician, Auditor],
            Self::WriteKnowledge => &[Admin, Lead, Technician],
            Self::ReadPeople => &[Admin, Lead, Technician, Auditor],
            Self::ManagePeople => &[Admin, Lead],
            Self::ManageAccessPolicy => &[Admin, Lead],
            Self::RequestElevation => &[Admin, Lead, Technician],
        }
    }

    /// The roles that hold this permission, in words: "admin or lead".
    fn describe(self) -> String {
        match self.roles() {
            [] => "Gatehouse itself (no operator role)".into(),
            [only] => only.as_str().into(),
            [rest @ .., last] => {
                let rest: Vec<&str> = rest.iter().map(|r| r.as_str()).collect();
                format!("{} or {}", rest.join(", "), last.as_str())
            }
        }
    }
}

/// Allows or refuses `permission` to `actor`.
pub fn authorize(actor: &Actor, permission: Permission) -> Result<(), AppError> {
    match actor {
        Actor::System(_) => Ok(()),
        Actor::Operator { operator, .. } if permission.roles().contains(&operator.role) => Ok(()),
        Actor::Operator { .. } => Err(AppError::Forbidden(permission.describe())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_core::id::TokenId;
    use gatehouse_core::operator::{Operator, OperatorName};
    use gatehouse_core::tenant::DisplayName;
    use time::OffsetDateTime;

    fn actor(role: Role) -> Actor {
        let now = OffsetDateTime::UNIX_EPOCH;
        Actor::Operator {
            operator: Operator::new(
                OperatorName::parse("x.y").unwrap(),
                DisplayName::parse("X").unwrap(),
                role,
                now,
            ),
            token: Some(TokenId::generate(now)),
        }
    }

    #[test]
    fn only_admins_manage_tenants_and_nobody_reveals_secrets() {
        assert!(authorize(&actor(Role::Admin), Permission::ManageTenants).is_ok());
        for role in [Role::Lead, Role::Technician, Role::Auditor] {
            assert!(matches!(
                authorize(&actor(role), Permission::ManageTenants),
                Err(AppError::Forbidden(ref roles)) if roles == "admin"
            ));
            assert!(authorize(&actor(role), Permission::ReadTenants).is_ok());
        }
        for role in Role::ALL {
            assert!(authorize(&actor(role), Permission::RevealSecrets).is_err());
        }
        assert!(authorize(&Actor::System("cli"), Permission::RevealSecrets).is_ok());
        assert!(authorize(&actor(Role::Technician), Permission::ReadOperators).is_err());
        assert_eq!(
            Permission::ReadOperators.describe(),
            "admin, lead or auditor"
        );
        assert_eq!(Permission::ManageSecrets.describe(), "admin or lead");
    }
}
