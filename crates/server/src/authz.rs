//! Who may do what: every permission is decided by Cedar policies
//! (`crates/server/policies/gatehouse.cedar`, over the schema
//! `gatehouse.cedarschema` beside it), compiled into the binary and
//! validated in strict mode against the schema before the first decision.
//! [`authorize`] is the one place that asks; services call it before they
//! look anything up.
//!
//! Today the resource is the installation and the principal an operator in
//! one role; tenant scopes, separation of duties and "approvals need a
//! second factor" move into the policies as the console's sign-in brings
//! the attributes they need (docs/authorization.md).

use std::collections::HashSet;
use std::str::FromStr;
use std::sync::LazyLock;

use cedar_policy::{
    Authorizer, Context, Decision, Entities, Entity, EntityId, EntityTypeName, EntityUid,
    PolicySet, Request, RestrictedExpression, Schema, ValidationMode, Validator,
};
use gatehouse_core::approval::Approval;
use gatehouse_core::operator::Role;

use crate::app::Actor;
use crate::error::AppError;

/// The policies in force.
pub const POLICIES: &str = include_str!("../policies/gatehouse.cedar");
/// The schema they are validated against.
pub const SCHEMA: &str = include_str!("../policies/gatehouse.cedarschema");

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
    /// Every permission.
    pub const ALL: [Permission; 24] = [
        Self::ReadTenants,
        Self::ManageTenants,
        Self::ManageSecrets,
        Self::RevealSecrets,
        Self::ReadOperators,
        Self::ManageOperators,
        Self::ManageKeys,
        Self::SubmitEvents,
        Self::ReadWorkflows,
        Self::DecideApprovals,
        Self::CompleteTasks,
        Self::CancelWorkflows,
        Self::ManageGates,
        Self::ReadAudit,
        Self::IssueCheckpoints,
        Self::WorkChecklists,
        Self::WaiveChecklistItems,
        Self::ReadChecklistFiles,
        Self::ReadKnowledge,
        Self::WriteKnowledge,
        Self::ReadPeople,
        Self::ManagePeople,
        Self::ManageAccessPolicy,
        Self::RequestElevation,
    ];

    /// The Cedar action's id (`Gatehouse::Action::"…"`).
    pub fn action(self) -> &'static str {
        match self {
            Self::ReadTenants => "ReadTenants",
            Self::ManageTenants => "ManageTenants",
            Self::ManageSecrets => "ManageSecrets",
            Self::RevealSecrets => "RevealSecrets",
            Self::ReadOperators => "ReadOperators",
            Self::ManageOperators => "ManageOperators",
            Self::ManageKeys => "ManageKeys",
            Self::SubmitEvents => "SubmitEvents",
            Self::ReadWorkflows => "ReadWorkflows",
            Self::DecideApprovals => "DecideApprovals",
            Self::CompleteTasks => "CompleteTasks",
            Self::CancelWorkflows => "CancelWorkflows",
            Self::ManageGates => "ManageGates",
            Self::ReadAudit => "ReadAudit",
            Self::IssueCheckpoints => "IssueCheckpoints",
            Self::WorkChecklists => "WorkChecklists",
            Self::WaiveChecklistItems => "WaiveChecklistItems",
            Self::ReadChecklistFiles => "ReadChecklistFiles",
            Self::ReadKnowledge => "ReadKnowledge",
            Self::WriteKnowledge => "WriteKnowledge",
            Self::ReadPeople => "ReadPeople",
            Self::ManagePeople => "ManagePeople",
            Self::ManageAccessPolicy => "ManageAccessPolicy",
            Self::RequestElevation => "RequestElevation",
        }
    }

    /// The roles the policies give this permission, in words: "admin or
    /// lead" (for the answer to a refused request).
    fn describe(self, policies: &Policies) -> String {
        let roles: Vec<&str> = Role::ALL
            .into_iter()
            .filter(|role| {
                policies
                    .allows("someone", *role, "token", self)
                    .unwrap_or(false)
            })
            .map(Role::as_str)
            .collect();
        match roles.as_slice() {
            [] => "Gatehouse itself (no operator role)".into(),
            [only] => (*only).into(),
            [rest @ .., last] => format!("{} or {}", rest.join(", "), last),
        }
    }
}

/// The policies, validated against the schema, and what a request needs.
#[derive(Debug)]
pub struct Policies {
    schema: Schema,
    set: PolicySet,
    authorizer: Authorizer,
    installation: EntityUid,
}

/// Why the policies cannot be used.
#[derive(Debug, thiserror::Error)]
#[error("the authorization policies are unusable: {0}")]
pub struct PolicyError(String);

fn uid(type_name: &str, id: &str) -> Result<EntityUid, PolicyError> {
    let type_name = EntityTypeName::from_str(type_name).map_err(|e| PolicyError(e.to_string()))?;
    Ok(EntityUid::from_type_name_and_id(
        type_name,
        EntityId::new(id),
    ))
}

impl Policies {
    /// Parses `schema` and `policies` and validates them strictly: a policy
    /// naming an action, entity or attribute the schema does not have is
    /// refused, and so is a schema missing one of [`Permission::ALL`].
    pub fn parse(schema: &str, policies: &str) -> Result<Self, PolicyError> {
        let (schema, _warnings) =
            Schema::from_cedarschema_str(schema).map_err(|e| PolicyError(e.to_string()))?;
        let set = PolicySet::from_str(policies).map_err(|e| PolicyError(e.to_string()))?;
        let validation = Validator::new(schema.clone()).validate(&set, ValidationMode::Strict);
        if !validation.validation_passed() {
            return Err(PolicyError(validation.to_string()));
        }
        let known: HashSet<String> = schema
            .actions()
            .map(|a| a.id().unescaped().to_owned())
            .collect();
        if let Some(missing) = Permission::ALL.iter().find(|p| !known.contains(p.action())) {
            return Err(PolicyError(format!(
                "the schema has no action for the permission {missing:?}"
            )));
        }
        Ok(Self {
            schema,
            set,
            authorizer: Authorizer::new(),
            installation: uid("Gatehouse::Installation", "gatehouse")?,
        })
    }

    /// Whether an operator called `name` in `role`, authenticated `via`
    /// ([`Via::as_str`](crate::app::Via::as_str)), may have `permission`.
    pub fn allows(
        &self,
        name: &str,
        role: Role,
        via: &str,
        permission: Permission,
    ) -> Result<bool, PolicyError> {
        self.decide(name, role, via, permission, &Duties::default())
    }

    /// [`Policies::allows`], for deciding an approval whose relation to the
    /// operator is `duties`.
    fn decide(
        &self,
        name: &str,
        role: Role,
        via: &str,
        permission: Permission,
        duties: &Duties,
    ) -> Result<bool, PolicyError> {
        let role = uid("Gatehouse::Role", role.as_str())?;
        let principal = uid("Gatehouse::Operator", name)?;
        let entities = Entities::from_entities(
            [
                Entity::new_no_attrs(principal.clone(), HashSet::from([role.clone()])),
                Entity::new_no_attrs(role, HashSet::new()),
                Entity::new_no_attrs(self.installation.clone(), HashSet::new()),
            ],
            Some(&self.schema),
        )
        .map_err(|e| PolicyError(e.to_string()))?;
        let request = Request::new(
            principal,
            uid("Gatehouse::Action", permission.action())?,
            self.installation.clone(),
            Context::from_pairs(duties.context(via)).map_err(|e| PolicyError(e.to_string()))?,
            Some(&self.schema),
        )
        .map_err(|e| PolicyError(e.to_string()))?;
        let response = self
            .authorizer
            .is_authorized(&request, &self.set, &entities);
        Ok(response.decision() == Decision::Allow)
    }
}

/// How an operator stands to an approval they want to decide.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Duties {
    /// Set when deciding an approval (the rest is then meaningful).
    pub deciding: bool,
    /// They started its workflow.
    pub initiated: bool,
    /// They prepared its plan.
    pub prepared: bool,
    /// They decided it already.
    pub decided: bool,
}

impl Duties {
    /// Where `operator` stands to `approval`.
    pub fn of(operator: &gatehouse_core::operator::Operator, approval: &Approval) -> Self {
        let me = operator.id.to_string();
        Self {
            deciding: true,
            initiated: approval.initiated_by == me,
            prepared: approval.prepared_by == me,
            decided: approval
                .decisions
                .iter()
                .any(|d| d.operator_id == operator.id),
        }
    }

    fn context(&self, via: &str) -> Vec<(String, RestrictedExpression)> {
        let mut pairs = vec![(
            "via".to_owned(),
            RestrictedExpression::new_string(via.to_owned()),
        )];
        if self.deciding {
            for (name, value) in [
                ("initiated", self.initiated),
                ("prepared", self.prepared),
                ("decided", self.decided),
            ] {
                pairs.push((name.to_owned(), RestrictedExpression::new_bool(value)));
            }
        }
        pairs
    }
}

/// Allows or refuses `actor` deciding `approval` by separation of duties
/// (the policies `no-one-decides-on-their-own-work` and
/// `one-decision-per-person`), for a caller that has already passed
/// [`authorize`] with `DecideApprovals` (role and second factor) before
/// reading the approval. A refusal is `409 approval_refused`, naming why.
pub fn authorize_decision(actor: &Actor, approval: &Approval) -> Result<(), AppError> {
    let Actor::Operator { operator, via } = actor else {
        return Ok(());
    };
    let policies = policies().map_err(|e| AppError::Internal(e.to_string()))?;
    let duties = Duties::of(operator, approval);
    match policies.decide(
        operator.name.as_str(),
        operator.role,
        via.as_str(),
        Permission::DecideApprovals,
        &duties,
    ) {
        Ok(true) => Ok(()),
        Ok(false) => Err(AppError::Conflict {
            code: "approval_refused",
            message: if duties.decided {
                "you decided this approval already; another person must decide next".into()
            } else {
                "separation of duties: whoever started the workflow or prepared the plan may not decide its approval".into()
            },
        }),
        Err(err) => Err(AppError::Internal(err.to_string())),
    }
}

/// The policies compiled into this binary.
static BUILT_IN: LazyLock<Result<Policies, PolicyError>> =
    LazyLock::new(|| Policies::parse(SCHEMA, POLICIES));

/// The built-in policies, or why they cannot be used. `serve` checks this
/// before it listens, so a broken policy stops the start instead of
/// refusing every request.
pub fn policies() -> Result<&'static Policies, &'static PolicyError> {
    BUILT_IN.as_ref()
}

/// Allows or refuses `permission` to `actor`. Gatehouse itself
/// (`Actor::System`: its CLI on the host, its workflows) is not an operator
/// and is always allowed; an operator gets what the policies permit, and a
/// decision that cannot be made is a refusal.
pub fn authorize(actor: &Actor, permission: Permission) -> Result<(), AppError> {
    let Actor::Operator { operator, via } = actor else {
        return Ok(());
    };
    let policies = policies().map_err(|e| AppError::Internal(e.to_string()))?;
    match policies.allows(
        operator.name.as_str(),
        operator.role,
        via.as_str(),
        permission,
    ) {
        Ok(true) => Ok(()),
        Ok(false)
            if matches!(
                policies.allows(operator.name.as_str(), operator.role, "token", permission),
                Ok(true)
            ) =>
        {
            // The role would do; how they signed in would not.
            Err(AppError::NotAllowed(
                "this needs a second factor: sign in again with your TOTP code (or use an API token)"
                    .into(),
            ))
        }
        Ok(false) => Err(AppError::Forbidden(permission.describe(policies))),
        Err(err) => Err(AppError::Internal(err.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::app::Via;
    use gatehouse_core::id::{SessionId, TokenId};
    use gatehouse_core::operator::{Operator, OperatorName};
    use gatehouse_core::tenant::DisplayName;
    use time::OffsetDateTime;

    fn actor(role: Role) -> Actor {
        actor_via(
            role,
            Via::Token(TokenId::generate(OffsetDateTime::UNIX_EPOCH)),
        )
    }

    fn actor_via(role: Role, via: Via) -> Actor {
        let now = OffsetDateTime::UNIX_EPOCH;
        Actor::Operator {
            operator: Operator::new(
                OperatorName::parse("x.y").unwrap(),
                DisplayName::parse("X").unwrap(),
                role,
                now,
            ),
            via,
        }
    }

    fn session(second_factor: bool) -> Via {
        Via::Session {
            id: SessionId::generate(OffsetDateTime::UNIX_EPOCH),
            second_factor,
        }
    }

    /// The table of docs/authorization.md, written out independently of
    /// the policies: the roles that hold each permission.
    fn published(permission: Permission) -> &'static [Role] {
        use Permission::*;
        use Role::*;
        match permission {
            ReadTenants | ReadWorkflows | ReadKnowledge | ReadPeople => {
                &[Admin, Lead, Technician, Auditor]
            }
            ManageTenants | ManageOperators | ManageKeys => &[Admin],
            RevealSecrets => &[],
            ReadOperators | ReadAudit | IssueCheckpoints => &[Admin, Lead, Auditor],
            ManageSecrets | SubmitEvents | DecideApprovals | CancelWorkflows | ManageGates
            | WaiveChecklistItems | ManagePeople | ManageAccessPolicy => &[Admin, Lead],
            CompleteTasks | WorkChecklists | ReadChecklistFiles | WriteKnowledge
            | RequestElevation => &[Admin, Lead, Technician],
        }
    }

    #[test]
    fn cedar_decisions_match_the_published_table() {
        let policies = policies().unwrap();
        for permission in Permission::ALL {
            for role in Role::ALL {
                let expected = published(permission).contains(&role);
                assert_eq!(
                    policies.allows("ada", role, "token", permission).unwrap(),
                    expected,
                    "{role:?} {permission:?}"
                );
                assert_eq!(
                    authorize(&actor(role), permission).is_ok(),
                    expected,
                    "{role:?} {permission:?}"
                );
            }
            // Gatehouse itself is not an operator.
            assert!(authorize(&Actor::System("cli"), permission).is_ok());
        }
    }

    #[test]
    fn a_refusal_names_the_roles_that_would_be_allowed() {
        assert!(matches!(
            authorize(&actor(Role::Lead), Permission::ManageTenants),
            Err(AppError::Forbidden(ref roles)) if roles == "admin"
        ));
        assert!(matches!(
            authorize(&actor(Role::Technician), Permission::ReadOperators),
            Err(AppError::Forbidden(ref roles)) if roles == "admin, lead or auditor"
        ));
        assert!(matches!(
            authorize(&actor(Role::Admin), Permission::RevealSecrets),
            Err(AppError::Forbidden(ref roles)) if roles == "Gatehouse itself (no operator role)"
        ));
    }

    #[test]
    fn policies_that_do_not_fit_the_schema_are_refused() {
        // An action the schema does not know.
        let typo = POLICIES.replace("\"ManageKeys\"", "\"ManageKeyz\"");
        let err = Policies::parse(SCHEMA, &typo).unwrap_err().to_string();
        assert!(err.contains("ManageKeyz"), "{err}");
        // A permission the schema forgot.
        let schema = SCHEMA.replace("RequestElevation", "");
        let schema = schema.replace("ManageAccessPolicy,", "ManageAccessPolicy");
        let err = Policies::parse(&schema, "").unwrap_err().to_string();
        assert!(err.contains("RequestElevation"), "{err}");
        // A `forbid` wins over every `permit`.
        let locked = format!(
            "{POLICIES}\nforbid (principal, action == Gatehouse::Action::\"ReadTenants\", resource);"
        );
        let locked = Policies::parse(SCHEMA, &locked).unwrap();
        assert!(
            !locked
                .allows("ada", Role::Admin, "token", Permission::ReadTenants)
                .unwrap()
        );
        assert!(
            locked
                .allows("ada", Role::Admin, "token", Permission::ManageTenants)
                .unwrap()
        );
    }

    #[test]
    fn operator_names_are_ids_not_syntax() {
        let policies = policies().unwrap();
        for name in ["a\"b", "Gatehouse::Role::\"admin\"", "", "ünïcode"] {
            assert!(
                !policies
                    .allows(name, Role::Auditor, "token", Permission::ManageTenants)
                    .unwrap()
            );
            assert!(
                policies
                    .allows(name, Role::Auditor, "token", Permission::ReadAudit)
                    .unwrap()
            );
        }
    }

    #[test]
    fn approvals_need_a_second_factor_when_signed_in_with_a_password() {
        // A password alone: everything the role allows except deciding.
        let password_only = actor_via(Role::Lead, session(false));
        assert!(matches!(
            authorize(&password_only, Permission::DecideApprovals),
            Err(AppError::NotAllowed(ref why)) if why.contains("second factor")
        ));
        assert!(authorize(&password_only, Permission::ReadWorkflows).is_ok());
        assert!(authorize(&password_only, Permission::ManageGates).is_ok());
        // With TOTP, with a token, or at the host's CLI: the role decides.
        for via in [
            session(true),
            Via::Cli,
            Via::Token(TokenId::generate(OffsetDateTime::UNIX_EPOCH)),
        ] {
            assert!(authorize(&actor_via(Role::Lead, via), Permission::DecideApprovals).is_ok());
        }
        // A role without the permission is told about the role, not the factor.
        assert!(matches!(
            authorize(&actor_via(Role::Technician, session(true)), Permission::DecideApprovals),
            Err(AppError::Forbidden(ref roles)) if roles == "admin or lead"
        ));
    }

    #[test]
    fn nobody_decides_on_their_own_work_or_twice() {
        let policies = policies().unwrap();
        let deciding = |initiated, prepared, decided| Duties {
            deciding: true,
            initiated,
            prepared,
            decided,
        };
        let decide = |duties: Duties| {
            policies
                .decide(
                    "lea",
                    Role::Lead,
                    "session+totp",
                    Permission::DecideApprovals,
                    &duties,
                )
                .unwrap()
        };
        assert!(decide(deciding(false, false, false)));
        assert!(
            !decide(deciding(true, false, false)),
            "started the workflow"
        );
        assert!(!decide(deciding(false, true, false)), "prepared the plan");
        assert!(!decide(deciding(false, false, true)), "decided already");
        // Admins too: the policy is a forbid.
        assert!(
            !policies
                .decide(
                    "root",
                    Role::Admin,
                    "token",
                    Permission::DecideApprovals,
                    &deciding(true, false, false)
                )
                .unwrap()
        );
        // Other permissions do not care.
        assert!(
            policies
                .decide(
                    "lea",
                    Role::Lead,
                    "token",
                    Permission::ManageGates,
                    &deciding(true, true, true)
                )
                .unwrap()
        );
    }
}
