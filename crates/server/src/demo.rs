//! The demo seed: a synthetic MSP with three client tenants and a small
//! team, so a newcomer has something to look at. Later steps extend it
//! (a won deal waiting at its first approval, people to provision).

use gatehouse_core::operator::{Operator, OperatorName, Role};
use gatehouse_core::secret::SecretName;
use gatehouse_core::store::StoreError;
use gatehouse_core::tenant::{DisplayName, Region, Tenant, TenantSlug, TenantState};

use crate::app::{Actor, App, NewTenant, TenantRef};
use crate::error::AppError;

const TENANTS: [(&str, &str, &str, TenantState); 3] = [
    (
        "northwind-legal",
        "Northwind Legal LLP",
        "eu",
        TenantState::Active,
    ),
    (
        "contoso-dental",
        "Contoso Dental Group",
        "us",
        TenantState::Active,
    ),
    (
        "fabrikam-logistics",
        "Fabrikam Logistics Ltd",
        "uk",
        TenantState::Provisioning,
    ),
];

/// The team: handle, name, role, and the one tenant a member is scoped to
/// (a technician dedicated to one client), if any.
const TEAM: [(&str, &str, Role, Option<&str>); 4] = [
    ("lea.lead", "Lea Lindqvist", Role::Lead, None),
    ("tom.tech", "Tom Okafor", Role::Technician, None),
    ("ada.audit", "Ada Moreau", Role::Auditor, None),
    (
        "cam.client",
        "Cam Ito",
        Role::Technician,
        Some("contoso-dental"),
    ),
];

/// What the demo seed holds.
#[derive(Debug, Clone)]
pub struct DemoSummary {
    /// The demo tenants.
    pub tenants: Vec<Tenant>,
    /// The demo team.
    pub operators: Vec<Operator>,
    /// Whether this call created them (false: they were there already).
    pub created: bool,
    /// The team's console credentials, when this call created them (they
    /// are shown once; `gatehouse operator password|totp` makes new ones).
    pub sign_in: Vec<DemoSignIn>,
}

/// A demo operator's console sign-in.
#[derive(Clone)]
pub struct DemoSignIn {
    /// The operator's handle.
    pub name: OperatorName,
    /// Their role.
    pub role: Role,
    /// Their password.
    pub password: zeroize::Zeroizing<String>,
    /// Their TOTP secret (base32).
    pub totp_secret: zeroize::Zeroizing<String>,
}

impl std::fmt::Debug for DemoSignIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DemoSignIn")
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

/// Seeds the demo MSP unless it is there already. Idempotent.
pub async fn seed(app: &App) -> Result<DemoSummary, AppError> {
    let actor = Actor::System("demo seed");
    let mut created = false;
    let mut tenants = Vec::new();
    for (slug, name, region, state) in TENANTS {
        let slug = TenantSlug::parse(slug)?;
        match app.get_tenant(&actor, &TenantRef::Slug(slug.clone())).await {
            Ok(tenant) => tenants.push(tenant),
            Err(AppError::NotFound { .. }) => {
                let new = NewTenant {
                    slug,
                    display_name: DisplayName::parse(name)?,
                    region: Region::parse(region)?,
                    state,
                };
                let tenant = app.create_tenant(&actor, new).await?;
                // A fake credential, so the secrets API has something to show.
                let secret = SecretName::parse("ninjaone.client-secret")?;
                app.put_secret(
                    &actor,
                    &TenantRef::Id(tenant.id),
                    &secret,
                    b"demo-not-a-real-secret",
                )
                .await?;
                tenants.push(tenant);
                created = true;
            }
            Err(err) => return Err(err),
        }
    }
    let mut operators = Vec::new();
    let mut sign_in = Vec::new();
    for (name, display, role, scoped_to) in TEAM {
        let name = OperatorName::parse(name)?;
        match app.store.find_operator_by_name(&name).await {
            Ok(operator) => operators.push(operator),
            Err(StoreError::NotFound(_)) => {
                let (mut operator, _, _) = app
                    .create_operator(&actor, name.clone(), DisplayName::parse(display)?, role)
                    .await?;
                if let Some(slug) = scoped_to {
                    let tenant = [TenantRef::parse(slug)];
                    operator = app
                        .set_operator_scope(&actor, operator.id, Some((&tenant, &[])))
                        .await?;
                }
                let password = crate::signin::generate_password()?;
                app.set_password(&actor, &name, &password).await?;
                let totp = app.enroll_totp(&actor, &name).await?;
                sign_in.push(DemoSignIn {
                    name,
                    role,
                    password,
                    totp_secret: totp.secret,
                });
                operators.push(operator);
                created = true;
            }
            Err(err) => return Err(err.into()),
        }
    }
    Ok(DemoSummary {
        tenants,
        operators,
        created,
        sign_in,
    })
}
