//! Who may do what: every permission is decided by Cedar policies
//! (`crates/server/policies/gatehouse.cedar`, over the schema
//! `gatehouse.cedarschema` beside it), compiled into the binary and
//! validated in strict mode against the schema before the first decision.
//! [`authorize`] is the one place that asks; services call it before they
//! look anything up.
//!
//! The principal is an operator in one role, scoped to the installation or
//! to some tenants; the resource is the installation or one tenant; the
//! context says how the operator signed in and, when they decide an
//! approval, how they stand to it (docs/authorization.md).

use std::collections::{HashMap, HashSet};
use std::str::FromStr;
use std::sync::LazyLock;

use cedar_policy::{
    Authorizer, Context, Decision, Entities, Entity, EntityId, EntityTypeName, EntityUid,
    PolicySet, Request, RestrictedExpression, Schema, ValidationMode, Validator,
};
use gatehouse_core::approval::Approval;
use gatehouse_core::id::TenantId;
use gatehouse_core::operator::{Operator, Role, Scope};

use crate::app::{Actor, Via};
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

    /// Whether an operator called `name` in `role` over the whole
    /// installation, authenticated `via` ([`Via::as_str`](crate::app::Via::as_str)),
    /// may have `permission` on the installation.
    pub fn allows(
        &self,
        name: &str,
        role: Role,
        via: &str,
        permission: Permission,
    ) -> Result<bool, PolicyError> {
        let who = Who {
            name,
            role,
            via,
            scope: &Scope::Installation,
        };
        Ok(self
            .decide(&who, permission, Target::Installation, &Duties::default())?
            .allowed)
    }

    /// The policies' answer to `who` asking for `permission` on `target`,
    /// with `duties` when deciding an approval.
    fn decide(
        &self,
        who: &Who<'_>,
        permission: Permission,
        target: Target,
        duties: &Duties,
    ) -> Result<Answer, PolicyError> {
        let err = |e: &dyn std::fmt::Display| PolicyError(e.to_string());
        let role = uid("Gatehouse::Role", who.role.as_str())?;
        let principal = uid("Gatehouse::Operator", who.name)?;
        // The reach: the tenants named and the named groups' members, as
        // loaded with the operator on this request.
        let tenants = match who.scope {
            Scope::Installation => Vec::new(),
            Scope::Tenants { reach, .. } => reach
                .iter()
                .map(|t| {
                    uid("Gatehouse::Tenant", &t.to_string())
                        .map(RestrictedExpression::new_entity_uid)
                })
                .collect::<Result<_, _>>()?,
        };
        let attrs = HashMap::from([
            (
                "scoped".to_owned(),
                RestrictedExpression::new_bool(matches!(who.scope, Scope::Tenants { .. })),
            ),
            ("tenants".to_owned(), RestrictedExpression::new_set(tenants)),
        ]);
        let resource = match target {
            Target::Installation | Target::List | Target::Unowned => self.installation.clone(),
            Target::Tenant(id) => uid("Gatehouse::Tenant", &id.to_string())?,
        };
        let mut context = duties.context(who.via);
        if matches!(target, Target::List) {
            context.push(("listing".to_owned(), RestrictedExpression::new_bool(true)));
        }
        let entities = Entities::from_entities(
            [
                Entity::new(principal.clone(), attrs, HashSet::from([role.clone()]))
                    .map_err(|e| err(&e))?,
                Entity::new_no_attrs(role, HashSet::new()),
                Entity::new_no_attrs(resource.clone(), HashSet::new()),
            ],
            Some(&self.schema),
        )
        .map_err(|e| err(&e))?;
        let request = Request::new(
            principal,
            uid("Gatehouse::Action", permission.action())?,
            resource,
            Context::from_pairs(context).map_err(|e| err(&e))?,
            Some(&self.schema),
        )
        .map_err(|e| err(&e))?;
        let response = self
            .authorizer
            .is_authorized(&request, &self.set, &entities);
        if let Some(error) = response.diagnostics().errors().next() {
            return Err(err(error));
        }
        let forbidden_by = if response.decision() == Decision::Allow {
            Vec::new()
        } else {
            response
                .diagnostics()
                .reason()
                .filter_map(|id| self.set.policy(id))
                .filter_map(|policy| policy.annotation("id").map(str::to_owned))
                .collect()
        };
        Ok(Answer {
            allowed: response.decision() == Decision::Allow,
            forbidden_by,
        })
    }
}

/// The policy that keeps a scoped operator to their tenants: its refusal
/// is a 404, so that another tenant's resources seem not to exist.
const STAY_IN_SCOPE: &str = "operators-stay-in-their-tenants";
/// The policy that keeps scoped operators from the installation's own
/// settings.
const INSTALLATION_ONLY: &str = "the-installation-is-for-operators-of-all-tenants";

/// Who asks, as the policies see them.
#[derive(Clone, Copy)]
struct Who<'a> {
    name: &'a str,
    role: Role,
    via: &'a str,
    scope: &'a Scope,
}

impl<'a> Who<'a> {
    fn of(operator: &'a Operator, via: &'a Via) -> Self {
        Self {
            name: operator.name.as_str(),
            role: operator.role,
            via: via.as_str(),
            scope: &operator.scope,
        }
    }
}

/// What a request is about.
#[derive(Debug, Clone, Copy)]
enum Target {
    /// The installation as a whole: its settings (operators, keys, new
    /// tenants) and what belongs to no tenant.
    Installation,
    /// A list across tenants, which the caller limits to a scoped
    /// operator's tenants.
    List,
    /// Something that belongs to the installation rather than to a tenant
    /// (the same resource as `Installation`; a refusal is a 404).
    Unowned,
    /// One tenant and what belongs to it.
    Tenant(TenantId),
}

/// A decision and, for a refusal, the `@id`s of the `forbid` policies that
/// caused it (empty when no `permit` applied).
struct Answer {
    allowed: bool,
    forbidden_by: Vec<String>,
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
    let target = approval
        .tenant_id
        .map_or(Target::Installation, Target::Tenant);
    match policies
        .decide(
            &Who::of(operator, via),
            Permission::DecideApprovals,
            target,
            &duties,
        )
        .map(|answer| answer.allowed)
    {
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

/// Allows or refuses `permission` on the installation as a whole (its
/// operators, keys and lists; a scoped operator's lists are then limited
/// to their tenants by the caller, with [`Actor::within`]). Gatehouse
/// itself (`Actor::System`: its CLI on the host, its workflows) is not an
/// operator and is always allowed; an operator gets what the policies
/// permit, and a decision that cannot be made is a refusal.
pub fn authorize(actor: &Actor, permission: Permission) -> Result<(), AppError> {
    refuse(actor, permission, Target::Installation, || {
        AppError::Internal("the installation itself was out of scope".into())
    })
}

/// Allows or refuses `permission` to read a list across tenants, and says
/// which tenants' entries the caller may show: `None` for all of them,
/// otherwise only a scoped operator's.
pub fn authorize_list(
    actor: &Actor,
    permission: Permission,
) -> Result<Option<Vec<TenantId>>, AppError> {
    refuse(actor, permission, Target::List, || {
        AppError::Internal("a list was out of scope".into())
    })?;
    Ok(actor.within())
}

/// Allows or refuses `permission` on something that belongs to `owner`: a
/// tenant's, or, for `None`, the installation's (a workflow that belongs
/// to no tenant yet, such as an onboarding before its tenant exists). Out
/// of a scoped operator's reach it is `not_found()`.
pub fn authorize_owned(
    actor: &Actor,
    permission: Permission,
    owner: Option<TenantId>,
    not_found: impl FnOnce() -> AppError,
) -> Result<(), AppError> {
    match owner {
        Some(tenant) => authorize_tenant(actor, permission, tenant, not_found),
        None => refuse(actor, permission, Target::Unowned, not_found),
    }
}

/// Allows or refuses `permission` on `tenant` and what belongs to it. A
/// tenant outside a scoped operator's scope is `not_found()`, the same
/// answer as a tenant that does not exist.
pub fn authorize_tenant(
    actor: &Actor,
    permission: Permission,
    tenant: TenantId,
    not_found: impl FnOnce() -> AppError,
) -> Result<(), AppError> {
    refuse(actor, permission, Target::Tenant(tenant), not_found)
}

/// Allows or refuses `permission` to the actor's role and the way they
/// signed in, wherever their scope: the first check of every API route
/// (`http::permissions`), made before the body is read. The services ask
/// again with the resource at hand.
pub fn authorize_role(actor: &Actor, permission: Permission) -> Result<(), AppError> {
    let Actor::Operator { operator, via } = actor else {
        return Ok(());
    };
    let who = Who {
        scope: &Scope::Installation,
        ..Who::of(operator, via)
    };
    refuse_as(&who, permission, Target::Installation, || {
        AppError::Internal("a role check was out of scope".into())
    })
}

fn refuse(
    actor: &Actor,
    permission: Permission,
    target: Target,
    not_found: impl FnOnce() -> AppError,
) -> Result<(), AppError> {
    let Actor::Operator { operator, via } = actor else {
        return Ok(());
    };
    refuse_as(&Who::of(operator, via), permission, target, not_found)
}

fn refuse_as(
    who: &Who<'_>,
    permission: Permission,
    target: Target,
    not_found: impl FnOnce() -> AppError,
) -> Result<(), AppError> {
    let policies = policies().map_err(|e| AppError::Internal(e.to_string()))?;
    let answer = policies
        .decide(who, permission, target, &Duties::default())
        .map_err(|e| AppError::Internal(e.to_string()))?;
    if answer.allowed {
        return Ok(());
    }
    let refused_by = |id: &str| answer.forbidden_by.iter().any(|f| f == id);
    if refused_by(STAY_IN_SCOPE)
        || (refused_by(INSTALLATION_ONLY) && matches!(target, Target::Unowned))
    {
        return Err(not_found());
    }
    if refused_by(INSTALLATION_ONLY) {
        return Err(AppError::Forbidden(format!(
            "{} for all tenants (your role applies to some tenants only)",
            permission.describe(policies)
        )));
    }
    let as_token = Who {
        via: "token",
        ..*who
    };
    if matches!(
        policies.decide(&as_token, permission, target, &Duties::default()),
        Ok(Answer { allowed: true, .. })
    ) {
        // The role would do; how they signed in would not.
        return Err(AppError::NotAllowed(
            "this needs a second factor: sign in again with your TOTP code (or use an API token)"
                .into(),
        ));
    }
    Err(AppError::Forbidden(permission.describe(policies)))
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

    /// The policies' decision for an operator of the whole installation.
    fn decide(name: &str, role: Role, via: &str, permission: Permission, duties: Duties) -> bool {
        let who = Who {
            name,
            role,
            via,
            scope: &Scope::Installation,
        };
        policies()
            .unwrap()
            .decide(&who, permission, Target::Installation, &duties)
            .unwrap()
            .allowed
    }

    #[test]
    fn nobody_decides_on_their_own_work_or_twice() {
        let deciding = |initiated, prepared, decided| Duties {
            deciding: true,
            initiated,
            prepared,
            decided,
        };
        let lead = |duties| {
            decide(
                "lea",
                Role::Lead,
                "session+totp",
                Permission::DecideApprovals,
                duties,
            )
        };
        assert!(lead(deciding(false, false, false)));
        assert!(!lead(deciding(true, false, false)), "started the workflow");
        assert!(!lead(deciding(false, true, false)), "prepared the plan");
        assert!(!lead(deciding(false, false, true)), "decided already");
        // Admins too: the policy is a forbid.
        assert!(!decide(
            "root",
            Role::Admin,
            "token",
            Permission::DecideApprovals,
            deciding(true, false, false)
        ));
        // Other permissions do not care.
        assert!(decide(
            "lea",
            Role::Lead,
            "token",
            Permission::ManageGates,
            deciding(true, true, true)
        ));
    }

    fn scoped(role: Role, tenants: &[TenantId]) -> Actor {
        let Actor::Operator { mut operator, via } = actor(role) else {
            unreachable!()
        };
        operator.scope = Scope::some(tenants.iter().copied().collect(), Default::default());
        Actor::Operator { operator, via }
    }

    fn gone() -> AppError {
        AppError::not_found("tenant", "elsewhere")
    }

    #[test]
    fn a_scoped_operator_acts_in_their_tenants_only() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let (mine, other) = (TenantId::generate(now), TenantId::generate(now));
        let lead = scoped(Role::Lead, &[mine]);
        // Their tenant: the role decides.
        for permission in Permission::ALL {
            assert_eq!(
                authorize_tenant(&lead, permission, mine, gone).is_ok(),
                published(permission).contains(&Role::Lead),
                "{permission:?}"
            );
        }
        assert!(matches!(
            authorize_tenant(&lead, Permission::ManageTenants, mine, gone),
            Err(AppError::Forbidden(_))
        ));
        // Another tenant: whatever the role, it does not exist.
        for role in Role::ALL {
            for permission in Permission::ALL {
                assert!(
                    matches!(
                        authorize_tenant(&scoped(role, &[mine]), permission, other, gone),
                        Err(AppError::NotFound { .. })
                    ),
                    "{role:?} {permission:?}"
                );
            }
        }
        // The installation's settings: refused, saying why.
        let admin = scoped(Role::Admin, &[mine]);
        for permission in [
            Permission::ManageOperators,
            Permission::ReadOperators,
            Permission::ManageKeys,
            Permission::ManageTenants,
        ] {
            assert!(
                matches!(
                    authorize(&admin, permission),
                    Err(AppError::Forbidden(ref why)) if why.contains("some tenants only")
                ),
                "{permission:?}"
            );
        }
        // What belongs to no tenant: not there.
        assert!(matches!(
            authorize_owned(&admin, Permission::ReadWorkflows, None, gone),
            Err(AppError::NotFound { .. })
        ));
        // Lists: allowed, limited to their tenants.
        assert_eq!(
            authorize_list(&lead, Permission::ReadWorkflows).unwrap(),
            Some(vec![mine])
        );
        assert!(matches!(
            authorize_list(&scoped(Role::Technician, &[mine]), Permission::ReadAudit),
            Err(AppError::Forbidden(_))
        ));
        // An operator of the whole installation is not limited at all.
        assert_eq!(
            authorize_list(&actor(Role::Lead), Permission::ReadWorkflows).unwrap(),
            None
        );
        assert!(
            authorize_tenant(&actor(Role::Lead), Permission::ManagePeople, other, gone).is_ok()
        );
        assert!(authorize_owned(&actor(Role::Lead), Permission::ReadWorkflows, None, gone).is_ok());
        // Scoped to nothing: sees nothing.
        assert!(matches!(
            authorize_tenant(
                &scoped(Role::Admin, &[]),
                Permission::ReadTenants,
                mine,
                gone
            ),
            Err(AppError::NotFound { .. })
        ));
    }

    #[test]
    fn a_scoped_operator_decides_only_their_tenants_approvals() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let (mine, other) = (TenantId::generate(now), TenantId::generate(now));
        let lead = scoped(Role::Lead, &[mine]);
        let allowed = |tenant| {
            authorize_owned(&lead, Permission::DecideApprovals, Some(tenant), gone).is_ok()
        };
        assert!(allowed(mine));
        assert!(!allowed(other));
        // The second factor still applies inside the scope.
        let Actor::Operator { operator, .. } = lead else {
            unreachable!()
        };
        let password_only = Actor::Operator {
            operator,
            via: session(false),
        };
        assert!(matches!(
            authorize_tenant(&password_only, Permission::DecideApprovals, mine, gone),
            Err(AppError::NotAllowed(_))
        ));
    }
}
