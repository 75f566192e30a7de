//! The service layer: every operation Gatehouse offers, with the actor who
//! performs it. Handlers and CLI commands are thin wrappers around these.

use std::sync::Arc;

use gatehouse_core::clock::Clock;
use gatehouse_core::id::{OperatorId, TenantId, TokenId};
use gatehouse_core::operator::{ApiToken, Operator, OperatorName, Role, TokenSecret};
use gatehouse_core::secret::{SecretMeta, SecretName};
use gatehouse_core::store::{Store, StoreError, TenantQuery};
use gatehouse_core::tenant::{DisplayName, Region, Tenant, TenantAction, TenantSlug, TenantState};
use gatehouse_vault::{Keyring, RotationProgress, RotationReport};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::authz::{Permission, authorize};
use crate::error::AppError;

/// The largest secret value accepted, in bytes.
pub const MAX_SECRET_BYTES: usize = 16 * 1024;
/// The most tenants one page lists.
pub const MAX_PAGE: u32 = 500;

/// Who is acting.
#[derive(Debug, Clone)]
pub enum Actor {
    /// An operator, authenticated by an API token.
    Operator {
        /// The operator.
        operator: Operator,
        /// The token they used.
        token: TokenId,
    },
    /// Gatehouse itself or a local administrator at the CLI (who holds the
    /// database and the key file anyway); the reason says which.
    System(&'static str),
}

impl Actor {
    /// The acting operator's id, if a person acts.
    pub fn operator_id(&self) -> Option<OperatorId> {
        match self {
            Self::Operator { operator, .. } => Some(operator.id),
            Self::System(_) => None,
        }
    }
}

/// A tenant named by id (`ten_…`) or by slug.
#[derive(Debug, Clone)]
pub enum TenantRef {
    /// By id: finds deleted tenants' tombstones too.
    Id(TenantId),
    /// By slug: finds only tenants that are not deleted.
    Slug(TenantSlug),
    /// Neither: finds nothing.
    Invalid(String),
}

impl TenantRef {
    /// Reads what a user typed.
    pub fn parse(text: &str) -> Self {
        if text.starts_with("ten_") {
            text.parse()
                .map(Self::Id)
                .unwrap_or_else(|_| Self::Invalid(text.to_owned()))
        } else {
            TenantSlug::parse(text)
                .map(Self::Slug)
                .unwrap_or_else(|_| Self::Invalid(text.to_owned()))
        }
    }
}

impl std::fmt::Display for TenantRef {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Id(id) => write!(f, "{id}"),
            Self::Slug(slug) => write!(f, "{slug}"),
            Self::Invalid(text) => f.write_str(text),
        }
    }
}

/// A new tenant, as requested.
#[derive(Debug, Clone)]
pub struct NewTenant {
    /// The slug.
    pub slug: TenantSlug,
    /// The display name.
    pub display_name: DisplayName,
    /// The data-residency region.
    pub region: Region,
    /// `provisioning` (to activate later) or `active` (the default).
    pub state: TenantState,
}

/// Changes to a tenant; `None` leaves a field as it is.
#[derive(Debug, Clone, Default)]
pub struct TenantChanges {
    /// A new display name.
    pub display_name: Option<DisplayName>,
    /// A new region (only while provisioning).
    pub region: Option<Region>,
}

/// A page of results and the cursor for the next one.
#[derive(Debug, Clone)]
pub struct Page<T> {
    /// The items.
    pub items: Vec<T>,
    /// Pass as `after` to get the next page; `None` on the last page.
    pub next: Option<TenantId>,
}

/// Everything the services need.
#[derive(Debug, Clone)]
pub struct App {
    /// Where everything is stored.
    pub store: Arc<dyn Store>,
    /// Tenants' data keys.
    pub keyring: Arc<Keyring>,
    /// The time.
    pub clock: Arc<dyn Clock>,
}

impl App {
    /// Wires the services.
    pub fn new(store: Arc<dyn Store>, keyring: Arc<Keyring>, clock: Arc<dyn Clock>) -> Self {
        Self {
            store,
            keyring,
            clock,
        }
    }

    fn now(&self) -> OffsetDateTime {
        self.clock.now()
    }

    // ----- authentication -------------------------------------------------

    /// The actor behind a bearer token, if it is valid, unexpired, unrevoked
    /// and its operator enabled.
    pub async fn authenticate(&self, bearer: &str) -> Result<Actor, AppError> {
        const INVALID: &str = "the bearer token is invalid, expired or revoked";
        let secret = TokenSecret::presented(bearer);
        let (token, operator) = match self.store.find_token(&secret.hash()).await {
            Ok(found) => found,
            Err(StoreError::NotFound(_)) => return Err(AppError::Unauthenticated(INVALID)),
            Err(err) => return Err(err.into()),
        };
        if !token.is_usable(self.now()) || operator.disabled {
            return Err(AppError::Unauthenticated(INVALID));
        }
        Ok(Actor::Operator {
            operator,
            token: token.id,
        })
    }

    /// On an installation without operators, creates the first admin and
    /// returns its token (to show once). Returns `None` if there already are
    /// operators. Safe with several nodes starting at once: one wins.
    pub async fn bootstrap(&self) -> Result<Option<(Operator, TokenSecret)>, AppError> {
        let now = self.now();
        let name = OperatorName::parse("admin")?;
        let operator = Operator::new(
            name,
            DisplayName::parse("Bootstrap administrator")?,
            Role::Admin,
            now,
        );
        let (token, secret) = ApiToken::issue(operator.id, "bootstrap", None, now)?;
        match self.store.bootstrap_operator(&operator, &token).await {
            Ok(true) => Ok(Some((operator, secret))),
            Ok(false) => Ok(None),
            // An operator named `admin` exists though nobody bootstrapped:
            // the installation is set up already.
            Err(StoreError::Conflict(_)) => Ok(None),
            Err(err) => Err(err.into()),
        }
    }

    // ----- tenants --------------------------------------------------------

    async fn find_tenant(&self, tenant: &TenantRef) -> Result<Tenant, AppError> {
        let found = match tenant {
            TenantRef::Id(id) => self.store.get_tenant(*id).await,
            TenantRef::Slug(slug) => self.store.find_tenant_by_slug(slug).await,
            TenantRef::Invalid(_) => Err(StoreError::NotFound("tenant")),
        };
        found.map_err(|err| match err {
            StoreError::NotFound(_) => AppError::not_found("tenant", tenant),
            other => other.into(),
        })
    }

    /// Creates a tenant with its own data key.
    pub async fn create_tenant(&self, actor: &Actor, new: NewTenant) -> Result<Tenant, AppError> {
        authorize(actor, Permission::ManageTenants)?;
        let taken = || AppError::Conflict {
            code: "tenant_slug_taken",
            message: format!("a tenant with slug `{}` already exists", new.slug),
        };
        // Checked first so a duplicate costs no key-service call; the
        // unique index still decides when two requests race.
        match self.store.find_tenant_by_slug(&new.slug).await {
            Ok(_) => return Err(taken()),
            Err(StoreError::NotFound(_)) => {}
            Err(err) => return Err(err.into()),
        }
        let tenant = Tenant::new(
            new.slug.clone(),
            new.display_name.clone(),
            new.region.clone(),
            new.state,
            self.now(),
        )?;
        let key = self
            .keyring
            .new_tenant_key(tenant.id, self.clock.as_ref())
            .await?;
        match self.store.insert_tenant(&tenant, &key).await {
            Ok(()) => {
                tracing::info!(tenant = %tenant.id, slug = %tenant.slug, "tenant created");
                Ok(tenant)
            }
            Err(err) => {
                self.keyring.forget(tenant.id);
                Err(match err {
                    StoreError::Conflict(_) => taken(),
                    other => other.into(),
                })
            }
        }
    }

    /// A tenant by id or slug.
    pub async fn get_tenant(&self, actor: &Actor, tenant: &TenantRef) -> Result<Tenant, AppError> {
        authorize(actor, Permission::ReadTenants)?;
        self.find_tenant(tenant).await
    }

    /// A page of tenants, optionally in one state.
    pub async fn list_tenants(
        &self,
        actor: &Actor,
        state: Option<TenantState>,
        after: Option<TenantId>,
        limit: u32,
    ) -> Result<Page<Tenant>, AppError> {
        authorize(actor, Permission::ReadTenants)?;
        if limit == 0 || limit > MAX_PAGE {
            return Err(AppError::Invalid(format!(
                "invalid limit: must be between 1 and {MAX_PAGE}"
            )));
        }
        // One extra row tells whether there is a next page.
        let mut items = self
            .store
            .list_tenants(&TenantQuery {
                state,
                after,
                limit: limit + 1,
            })
            .await?;
        let next = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items.last().map(|t| t.id)
        } else {
            None
        };
        Ok(Page { items, next })
    }

    /// Changes a tenant's display name or (while provisioning) region.
    pub async fn update_tenant(
        &self,
        actor: &Actor,
        tenant: &TenantRef,
        changes: TenantChanges,
    ) -> Result<Tenant, AppError> {
        authorize(actor, Permission::ManageTenants)?;
        let mut current = self.find_tenant(tenant).await?;
        if current.state == TenantState::Deleted {
            return Err(deleted(&current));
        }
        let before = current.clone();
        if let Some(name) = changes.display_name {
            current.display_name = name;
        }
        if let Some(region) = changes.region {
            current.change_region(region)?;
        }
        if current == before {
            return Ok(current);
        }
        current.version += 1;
        current.updated_at = self.now();
        self.store.update_tenant(&current).await?;
        Ok(current)
    }

    /// Moves a tenant through its lifecycle. `Delete` destroys the tenant's
    /// data key and secrets in the same transaction (crypto-shredding).
    pub async fn transition_tenant(
        &self,
        actor: &Actor,
        tenant: &TenantRef,
        action: TenantAction,
    ) -> Result<Tenant, AppError> {
        authorize(actor, Permission::ManageTenants)?;
        let mut current = self.find_tenant(tenant).await?;
        current.state = current.state.apply(action)?;
        current.version += 1;
        current.updated_at = self.now();
        if action == TenantAction::Delete {
            self.store.delete_tenant(&current).await?;
            self.keyring.forget(current.id);
            tracing::warn!(tenant = %current.id, slug = %current.slug, "tenant deleted; its data key is destroyed");
        } else {
            self.store.update_tenant(&current).await?;
            tracing::info!(tenant = %current.id, state = %current.state, "tenant {}", action.as_str());
        }
        Ok(current)
    }

    // ----- secrets --------------------------------------------------------

    fn secret_context(name: &SecretName) -> String {
        format!("secret:{name}")
    }

    /// Stores (or overwrites) a secret, sealed under the tenant's data key.
    pub async fn put_secret(
        &self,
        actor: &Actor,
        tenant: &TenantRef,
        name: &SecretName,
        value: &[u8],
    ) -> Result<SecretMeta, AppError> {
        authorize(actor, Permission::ManageSecrets)?;
        if value.is_empty() || value.len() > MAX_SECRET_BYTES {
            return Err(AppError::Invalid(format!(
                "invalid value: a secret must be 1 to {MAX_SECRET_BYTES} bytes"
            )));
        }
        let tenant = self.find_tenant(tenant).await?;
        if tenant.state == TenantState::Deleted {
            return Err(deleted(&tenant));
        }
        let sealed = self
            .keyring
            .seal(tenant.id, &Self::secret_context(name), value)
            .await?;
        self.store
            .put_secret(tenant.id, name, &sealed, self.now())
            .await
            .map_err(|err| match err {
                // Deleted between the check above and the write.
                StoreError::NotFound(_) => deleted(&tenant),
                other => other.into(),
            })
    }

    /// The tenant's secrets (names and versions, never values).
    pub async fn list_secrets(
        &self,
        actor: &Actor,
        tenant: &TenantRef,
    ) -> Result<Vec<SecretMeta>, AppError> {
        authorize(actor, Permission::ManageSecrets)?;
        let tenant = self.find_tenant(tenant).await?;
        Ok(self.store.list_secrets(tenant.id).await?)
    }

    /// Removes a secret.
    pub async fn delete_secret(
        &self,
        actor: &Actor,
        tenant: &TenantRef,
        name: &SecretName,
    ) -> Result<(), AppError> {
        authorize(actor, Permission::ManageSecrets)?;
        let tenant = self.find_tenant(tenant).await?;
        self.store
            .delete_secret(tenant.id, name)
            .await
            .map_err(|err| match err {
                StoreError::NotFound(_) => AppError::not_found("secret", name),
                other => other.into(),
            })
    }

    /// A secret in the clear, for connectors. No role of a person holds this.
    pub async fn reveal_secret(
        &self,
        actor: &Actor,
        tenant: TenantId,
        name: &SecretName,
    ) -> Result<Zeroizing<Vec<u8>>, AppError> {
        authorize(actor, Permission::RevealSecrets)?;
        let sealed = self
            .store
            .get_secret(tenant, name)
            .await
            .map_err(|err| match err {
                StoreError::NotFound(_) => AppError::not_found("secret", name),
                other => other.into(),
            })?;
        Ok(self
            .keyring
            .open(tenant, &Self::secret_context(name), &sealed.sealed)
            .await?)
    }

    // ----- operators and tokens -------------------------------------------

    /// Creates an operator and a first token for them (to show once).
    pub async fn create_operator(
        &self,
        actor: &Actor,
        name: OperatorName,
        display_name: DisplayName,
        role: Role,
    ) -> Result<(Operator, ApiToken, TokenSecret), AppError> {
        authorize(actor, Permission::ManageOperators)?;
        let now = self.now();
        let operator = Operator::new(name, display_name, role, now);
        self.store
            .insert_operator(&operator)
            .await
            .map_err(|err| match err {
                StoreError::Conflict(message) => AppError::Conflict {
                    code: "operator_name_taken",
                    message,
                },
                other => other.into(),
            })?;
        let (token, secret) = ApiToken::issue(operator.id, "initial", None, now)?;
        self.store.insert_token(&token).await?;
        tracing::info!(operator = %operator.id, name = %operator.name, role = %operator.role, "operator created");
        Ok((operator, token, secret))
    }

    /// All operators.
    pub async fn list_operators(&self, actor: &Actor) -> Result<Vec<Operator>, AppError> {
        authorize(actor, Permission::ReadOperators)?;
        Ok(self.store.list_operators().await?)
    }

    /// An operator by handle.
    pub async fn find_operator(
        &self,
        actor: &Actor,
        name: &OperatorName,
    ) -> Result<Operator, AppError> {
        authorize(actor, Permission::ReadOperators)?;
        self.store
            .find_operator_by_name(name)
            .await
            .map_err(|err| match err {
                StoreError::NotFound(_) => AppError::not_found("operator", name),
                other => other.into(),
            })
    }

    /// Operators may manage their own tokens; admins anyone's. Someone
    /// else's tokens are reported as not found, never as forbidden.
    async fn authorize_tokens_of(
        &self,
        actor: &Actor,
        operator: OperatorId,
    ) -> Result<Operator, AppError> {
        let not_found = || AppError::not_found("operator", operator);
        if actor.operator_id() != Some(operator) {
            authorize(actor, Permission::ManageOperators).map_err(|_| not_found())?;
        }
        self.store
            .get_operator(operator)
            .await
            .map_err(|err| match err {
                StoreError::NotFound(_) => not_found(),
                other => other.into(),
            })
    }

    /// Issues a new token for `operator`.
    pub async fn issue_token(
        &self,
        actor: &Actor,
        operator: OperatorId,
        name: &str,
        expires_at: Option<OffsetDateTime>,
    ) -> Result<(ApiToken, TokenSecret), AppError> {
        let owner = self.authorize_tokens_of(actor, operator).await?;
        let (token, secret) = ApiToken::issue(owner.id, name, expires_at, self.now())?;
        self.store.insert_token(&token).await?;
        Ok((token, secret))
    }

    /// An operator's tokens (never the secrets).
    pub async fn list_tokens(
        &self,
        actor: &Actor,
        operator: OperatorId,
    ) -> Result<Vec<ApiToken>, AppError> {
        self.authorize_tokens_of(actor, operator).await?;
        Ok(self.store.list_tokens(operator).await?)
    }

    /// Revokes a token at once.
    pub async fn revoke_token(&self, actor: &Actor, token: TokenId) -> Result<ApiToken, AppError> {
        let found = self.store.get_token(token).await.map_err(|err| match err {
            StoreError::NotFound(_) => AppError::not_found("token", token),
            other => other.into(),
        })?;
        // Someone else's token is reported as missing, not as forbidden.
        self.authorize_tokens_of(actor, found.operator_id)
            .await
            .map_err(|_| AppError::not_found("token", token))?;
        self.store.revoke_token(token, self.now()).await?;
        Ok(self.store.get_token(token).await?)
    }

    /// Enables or disables an operator; a disabled operator's tokens stop working.
    pub async fn set_operator_disabled(
        &self,
        actor: &Actor,
        operator: OperatorId,
        disabled: bool,
    ) -> Result<(), AppError> {
        authorize(actor, Permission::ManageOperators)?;
        if disabled && actor.operator_id() == Some(operator) {
            return Err(AppError::Conflict {
                code: "cannot_disable_self",
                message: "you cannot disable yourself".into(),
            });
        }
        self.store
            .set_operator_disabled(operator, disabled)
            .await
            .map_err(|err| match err {
                StoreError::NotFound(_) => AppError::not_found("operator", operator),
                other => other.into(),
            })
    }

    // ----- keys -----------------------------------------------------------

    /// Rotates the key-encryption key and rewraps every tenant's data key.
    pub async fn rotate_keys(
        &self,
        actor: &Actor,
        retire: bool,
        progress: &mut (dyn FnMut(RotationProgress) + Send),
    ) -> Result<RotationReport, AppError> {
        authorize(actor, Permission::ManageKeys)?;
        let report = self
            .keyring
            .rotate_kek(self.clock.as_ref(), retire, progress)
            .await?;
        tracing::warn!(active = %report.active_kek, rewrapped = report.rewrapped, "key-encryption key rotated");
        Ok(report)
    }
}

fn deleted(tenant: &Tenant) -> AppError {
    AppError::Conflict {
        code: "tenant_deleted",
        message: format!("tenant `{}` is deleted", tenant.slug),
    }
}
