//! The service layer: every operation Gatehouse offers, with the actor who
//! performs it. Handlers and CLI commands are thin wrappers around these.

use std::sync::Arc;

use gatehouse_core::approval::ApprovalState;
use gatehouse_core::approval::{Approval, HumanTask, TaskState, Verdict};
use gatehouse_core::audit::{Provenance, action as audit_action};
use gatehouse_core::clock::Clock;
use gatehouse_core::id::{ApprovalId, HumanTaskId, OperatorId, TenantId, TokenId, WorkflowId};
use gatehouse_core::operator::{ApiToken, Operator, OperatorName, Role, Scope, TokenSecret};
use gatehouse_core::secret::{SecretMeta, SecretName};
use gatehouse_core::store::{
    ApprovalQuery, InstanceQuery, Store, StoreError, TaskQuery, TenantQuery,
};
use gatehouse_core::tenant::{DisplayName, Region, Tenant, TenantAction, TenantSlug, TenantState};
use gatehouse_core::workflow::{
    DedupKey, EventKind, EventSource, HistoryEntry, Instance, InstanceState, StepRun,
};
use gatehouse_engine::runtime::{Engine, EngineError, NewEvent, Submitted};
use gatehouse_vault::{Keyring, RotationProgress, RotationReport};
use serde_json::{Value, json};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::authz::{Permission, authorize, authorize_list, authorize_owned};
use crate::error::AppError;

mod audit_key;
mod audit_log;
mod audit_read;
mod checkpoints;
mod oscal;
pub use audit_key::AuditPublicKey;
pub use audit_read::{
    AuditEntryView, AuditLogView, AuditQuery, AuditVerification, ConsistencyProof, InclusionProof,
    MAX_AUDIT_PAGE, MismatchView, VerifyRequest,
};
pub use checkpoints::{CheckpointView, Issued};
pub use oscal::{Fact, assemble};
mod connectors;
mod gates;
pub mod hooks;
pub mod identity;
mod kb;
pub use kb::{ArticleFilter, ArticlePage};
mod scim;
mod tenant_groups;
pub use tenant_groups::GroupRef;

/// The largest secret value accepted, in bytes.
pub const MAX_SECRET_BYTES: usize = 16 * 1024;
/// The most tenants one page lists.
pub const MAX_PAGE: u32 = 500;

/// Who is acting.
#[derive(Debug, Clone)]
pub enum Actor {
    /// An operator, authenticated by an API token or a console session.
    Operator {
        /// The operator.
        operator: Operator,
        /// How they authenticated.
        via: Via,
    },
    /// Gatehouse itself or a local administrator at the CLI (who holds the
    /// database and the key file anyway); the reason says which.
    System(&'static str),
}

/// How an operator authenticated.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Via {
    /// With an API token.
    Token(TokenId),
    /// With a console session, signed in with a password and, if
    /// `second_factor`, a TOTP code.
    Session {
        /// The session.
        id: gatehouse_core::id::SessionId,
        /// Whether a second factor was checked at sign-in.
        second_factor: bool,
    },
    /// Not at all: a local administrator acts as this operator at the CLI
    /// (see [`App::act_as`]).
    Cli,
}

impl Via {
    /// How the policies see it (`context.via`): `token`, `session+totp`,
    /// `session` (a password only) or `cli`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Token(_) => "token",
            Self::Session {
                second_factor: true,
                ..
            } => "session+totp",
            Self::Session { .. } => "session",
            Self::Cli => "cli",
        }
    }
}

impl Actor {
    /// The tenants a list may show this actor: `None` for every tenant
    /// (Gatehouse itself, an operator of the whole installation), or a
    /// scoped operator's tenants. Ask [`crate::authz::authorize_list`],
    /// which checks the permission first.
    pub fn within(&self) -> Option<Vec<TenantId>> {
        match self {
            Self::Operator { operator, .. } => operator.scope.tenants(),
            Self::System(_) => None,
        }
    }

    /// The acting operator's id, if a person acts.
    pub fn operator_id(&self) -> Option<OperatorId> {
        match self {
            Self::Operator { operator, .. } => Some(operator.id),
            Self::System(_) => None,
        }
    }

    /// Who acts, for the audit records of what they change at `at`: the
    /// operator and the token they used, or `system` with its reason.
    pub fn provenance(&self, at: OffsetDateTime) -> Provenance {
        match self {
            Self::Operator { operator, via } => Provenance {
                actor: operator.id.to_string(),
                token: match via {
                    Via::Token(token) => Some(*token),
                    _ => None,
                },
                reason: match via {
                    Via::Token(_) => None,
                    Via::Session { id, .. } => Some(format!("console session {id}")),
                    // A local administrator acts for the operator.
                    Via::Cli => Some("local cli, as the operator".to_owned()),
                },
                at,
            },
            Self::System(reason) => Provenance::system(reason, at),
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
pub struct Page<T, C = TenantId> {
    /// The items.
    pub items: Vec<T>,
    /// Pass as `after` to get the next page; `None` on the last page.
    pub next: Option<C>,
}

/// An event to submit to the workflow engine, as requested.
#[derive(Debug, Clone)]
pub struct EventSubmission {
    /// What happened.
    pub kind: EventKind,
    /// Where it came from.
    pub source: EventSource,
    /// The sender's deduplication key.
    pub dedup_key: DedupKey,
    /// The tenant it concerns, if known.
    pub tenant: Option<TenantRef>,
    /// The event's data.
    pub payload: Value,
}

/// Which workflow instances to list.
#[derive(Debug, Clone, Default)]
pub struct WorkflowFilter {
    /// Only this tenant's.
    pub tenant: Option<TenantRef>,
    /// Only in this state.
    pub state: Option<InstanceState>,
    /// Only of this template.
    pub template: Option<String>,
}

/// Which approvals or tasks to list.
#[derive(Debug, Clone, Default)]
pub struct GateFilter<S> {
    /// Only this tenant's.
    pub tenant: Option<TenantRef>,
    /// Only in this state.
    pub state: Option<S>,
}

/// A workflow instance with its step journal and history.
#[derive(Debug, Clone)]
pub struct WorkflowDetail {
    /// The instance, with its pinned definition.
    pub instance: Instance,
    /// Its steps, in step-id order.
    pub steps: Vec<StepRun>,
    /// Its history, in order.
    pub history: Vec<HistoryEntry>,
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
    /// The workflow engine (whether its worker runs here is the caller's
    /// choice: `serve` runs it, CLI commands only call it).
    pub engine: Arc<Engine>,
    /// The audit log's checkpoint signer (see [`App::with_audit_signer`]).
    pub audit_signer: Option<Arc<gatehouse_vault::AuditSigner>>,
    /// The knowledge base: sealed articles and their in-memory search indexes.
    pub kb: Arc<crate::kb::KbService>,
    /// Identity lifecycle: people, the access policy, provisioning.
    pub identity: Arc<crate::identity::service::IdentityService>,
}

impl App {
    /// Wires the services.
    pub fn new(
        store: Arc<dyn Store>,
        keyring: Arc<Keyring>,
        clock: Arc<dyn Clock>,
        engine: Arc<Engine>,
    ) -> Self {
        let kb = Arc::new(crate::kb::KbService::new(
            store.clone(),
            keyring.clone(),
            clock.clone(),
        ));
        // The real vendor clients and the default MSP tenant; `serve` wires
        // its own core with [`App::with_identity`] so the engine's actions
        // and the API share it.
        let directory = Arc::new(crate::actions::Directory::new(
            store.clone(),
            keyring.clone(),
            clock.clone(),
            Arc::new(crate::actions::VendorFactory {
                clock: clock.clone(),
            }),
            gatehouse_core::tenant::TenantSlug::msp(),
        ));
        let core = Arc::new(crate::identity::IdentityCore::new(
            store.clone(),
            keyring.clone(),
            clock.clone(),
            directory,
            crate::identity::IdentityConfig::default(),
        ));
        let identity = Arc::new(crate::identity::service::IdentityService::new(
            core,
            engine.clone(),
        ));
        Self {
            store,
            keyring,
            clock,
            engine,
            audit_signer: None,
            kb,
            identity,
        }
    }

    /// Uses `core` for identity lifecycle (the one the engine's identity
    /// actions use).
    pub fn with_identity(mut self, core: Arc<crate::identity::IdentityCore>) -> Self {
        self.identity = Arc::new(crate::identity::service::IdentityService::new(
            core,
            self.engine.clone(),
        ));
        self
    }

    pub(crate) fn now(&self) -> OffsetDateTime {
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
            via: Via::Token(token.id),
        })
    }

    /// The named operator as an actor, for a local administrator at the CLI
    /// who records a person's decision on their behalf. Disabled operators
    /// cannot act.
    pub async fn act_as(&self, name: &OperatorName) -> Result<Actor, AppError> {
        let operator = self
            .store
            .find_operator_by_name(name)
            .await
            .map_err(|err| match err {
                StoreError::NotFound(_) => AppError::not_found("operator", name),
                other => other.into(),
            })?;
        if operator.disabled {
            return Err(AppError::NotAllowed(format!(
                "operator `{name}` is disabled"
            )));
        }
        Ok(Actor::Operator {
            operator,
            via: Via::Cli,
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
        let by = Provenance::system("bootstrap", now);
        let audit = [operator_created(&by, &operator), token_issued(&by, &token)];
        match self
            .store
            .bootstrap_operator(&operator, &token, &audit)
            .await
        {
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

    /// The tenant `tenant` names, if `actor` may have `permission` on it. A
    /// tenant outside a scoped operator's reach is the same 404 as one that
    /// does not exist: every tenant-scoped service resolves its tenant here.
    pub(crate) async fn tenant_for(
        &self,
        actor: &Actor,
        permission: Permission,
        tenant: &TenantRef,
    ) -> Result<Tenant, AppError> {
        let found = self.find_tenant(tenant).await?;
        crate::authz::authorize_tenant(actor, permission, found.id, || {
            AppError::not_found("tenant", tenant)
        })?;
        Ok(found)
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
        let by = actor.provenance(tenant.created_at);
        let audit = [
            // The system log holds no tenant-sensitive data: no display name.
            by.record(
                None,
                audit_action::TENANT_CREATED,
                tenant.id,
                json!({
                    "slug": tenant.slug.as_str(),
                    "region": tenant.region.as_str(),
                    "state": tenant.state.as_str(),
                }),
            ),
            by.record(
                Some(tenant.id),
                audit_action::TENANT_CREATED,
                tenant.id,
                json!({
                    "slug": tenant.slug.as_str(),
                    "display_name": tenant.display_name.as_str(),
                    "region": tenant.region.as_str(),
                    "state": tenant.state.as_str(),
                }),
            ),
            by.record(
                Some(tenant.id),
                audit_action::KEY_CREATED,
                tenant.id,
                json!({"kek": key.wrapped.kek_id}),
            ),
        ];
        match self.store.insert_tenant(&tenant, &key, &audit).await {
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
        self.tenant_for(actor, Permission::ReadTenants, tenant)
            .await
    }

    /// A page of tenants, optionally in one state.
    pub async fn list_tenants(
        &self,
        actor: &Actor,
        state: Option<TenantState>,
        after: Option<TenantId>,
        limit: u32,
    ) -> Result<Page<Tenant>, AppError> {
        let within = authorize_list(actor, Permission::ReadTenants)?;
        if limit == 0 || limit > MAX_PAGE {
            return Err(AppError::Invalid(format!(
                "invalid limit: must be between 1 and {MAX_PAGE}"
            )));
        }
        // One extra row tells whether there is a next page.
        let mut items = self
            .store
            .list_tenants(&TenantQuery {
                within,
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
        let mut current = self
            .tenant_for(actor, Permission::ManageTenants, tenant)
            .await?;
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
        // The changed fields only, before and after.
        let (mut old, mut new) = (serde_json::Map::new(), serde_json::Map::new());
        if before.display_name != current.display_name {
            old.insert("display_name".into(), before.display_name.as_str().into());
            new.insert("display_name".into(), current.display_name.as_str().into());
        }
        if before.region != current.region {
            old.insert("region".into(), before.region.as_str().into());
            new.insert("region".into(), current.region.as_str().into());
        }
        let audit = actor.provenance(current.updated_at).record(
            Some(current.id),
            audit_action::TENANT_UPDATED,
            current.id,
            json!({"before": old, "after": new, "version": current.version}),
        );
        self.store.update_tenant(&current, &[audit]).await?;
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
        let mut current = self
            .tenant_for(actor, Permission::ManageTenants, tenant)
            .await?;
        if action == TenantAction::Delete {
            // Crypto-shredding cannot be undone: a decision for an operator
            // of the whole installation, not one scoped to the tenant.
            authorize(actor, Permission::ManageTenants)?;
        }
        let from = current.state;
        current.state = current.state.apply(action)?;
        current.version += 1;
        current.updated_at = self.now();
        let by = actor.provenance(current.updated_at);
        let details = json!({
            "slug": current.slug.as_str(),
            "from": from.as_str(),
            "to": current.state.as_str(),
        });
        let (log, name) = match action {
            TenantAction::Activate => (Some(current.id), audit_action::TENANT_ACTIVATED),
            TenantAction::Suspend => (Some(current.id), audit_action::TENANT_SUSPENDED),
            TenantAction::Offboard => (Some(current.id), audit_action::TENANT_OFFBOARDED),
            // In the system log: the tenant's own log is unreadable once its
            // key is shredded, and the deletion must stay provable.
            TenantAction::Delete => (None, audit_action::TENANT_DELETED),
        };
        let audit = by.record(log, name, current.id, details);
        if action == TenantAction::Delete {
            self.store.delete_tenant(&current, &[audit]).await?;
            self.keyring.forget(current.id);
            self.kb.forget(current.id);
            tracing::warn!(tenant = %current.id, slug = %current.slug, "tenant deleted; its data key is destroyed");
        } else {
            self.store.update_tenant(&current, &[audit]).await?;
            tracing::info!(tenant = %current.id, state = %current.state, "tenant {}", action.as_str());
        }
        Ok(current)
    }

    // ----- secrets --------------------------------------------------------

    pub(crate) fn secret_context(name: &SecretName) -> String {
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
        let tenant = self
            .tenant_for(actor, Permission::ManageSecrets, tenant)
            .await?;
        authorize_intake_secret(actor, name)?;
        if value.is_empty() || value.len() > MAX_SECRET_BYTES {
            return Err(AppError::Invalid(format!(
                "invalid value: a secret must be 1 to {MAX_SECRET_BYTES} bytes"
            )));
        }
        if tenant.state == TenantState::Deleted {
            return Err(deleted(&tenant));
        }
        let sealed = self
            .keyring
            .seal(tenant.id, &Self::secret_context(name), value)
            .await?;
        let now = self.now();
        // The name only: never the value, nor anything derived from it.
        let audit = actor.provenance(now).record(
            Some(tenant.id),
            audit_action::SECRET_SET,
            name,
            json!({"name": name.as_str(), "value": "set (not recorded)"}),
        );
        self.store
            .put_secret(tenant.id, name, &sealed, now, &[audit])
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
        let tenant = self
            .tenant_for(actor, Permission::ManageSecrets, tenant)
            .await?;
        Ok(self.store.list_secrets(tenant.id).await?)
    }

    /// Removes a secret.
    pub async fn delete_secret(
        &self,
        actor: &Actor,
        tenant: &TenantRef,
        name: &SecretName,
    ) -> Result<(), AppError> {
        let tenant = self
            .tenant_for(actor, Permission::ManageSecrets, tenant)
            .await?;
        authorize_intake_secret(actor, name)?;
        let audit = actor.provenance(self.now()).record(
            Some(tenant.id),
            audit_action::SECRET_DELETED,
            name,
            json!({"name": name.as_str()}),
        );
        self.store
            .delete_secret(tenant.id, name, &[audit])
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
        let by = actor.provenance(now);
        self.store
            .insert_operator(&operator, &[operator_created(&by, &operator)])
            .await
            .map_err(|err| match err {
                StoreError::Conflict(message) => AppError::Conflict {
                    code: "operator_name_taken",
                    message,
                },
                other => other.into(),
            })?;
        let (token, secret) = ApiToken::issue(operator.id, "initial", None, now)?;
        self.store
            .insert_token(&token, &[token_issued(&by, &token)])
            .await?;
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
        let audit = token_issued(&actor.provenance(token.created_at), &token);
        self.store.insert_token(&token, &[audit]).await?;
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
        let now = self.now();
        let audit = actor.provenance(now).record(
            None,
            audit_action::TOKEN_REVOKED,
            token,
            json!({"operator": found.operator_id.to_string()}),
        );
        self.store.revoke_token(token, now, &[audit]).await?;
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
        let name = if disabled {
            audit_action::OPERATOR_DISABLED
        } else {
            audit_action::OPERATOR_ENABLED
        };
        let audit = actor
            .provenance(self.now())
            .record(None, name, operator, json!({}));
        self.store
            .set_operator_disabled(operator, disabled, &[audit])
            .await
            .map_err(|err| match err {
                StoreError::NotFound(_) => AppError::not_found("operator", operator),
                other => other.into(),
            })?;
        Ok(())
    }

    /// Sets where an operator's role applies: `None` for the whole
    /// installation, or the tenants and tenant groups named (by id or
    /// slug; at least one of either, and each must exist). Takes effect on
    /// the operator's next request.
    pub async fn set_operator_scope(
        &self,
        actor: &Actor,
        operator: OperatorId,
        scope: Option<(&[TenantRef], &[GroupRef])>,
    ) -> Result<Operator, AppError> {
        authorize(actor, Permission::ManageOperators)?;
        if scope.is_some() && actor.operator_id() == Some(operator) {
            // Scoped, they could not change scopes any more, their own
            // included: another admin (or the host's CLI) must.
            return Err(AppError::Conflict {
                code: "cannot_scope_self",
                message: "you cannot narrow your own scope; have another admin do it".into(),
            });
        }
        let scope = match scope {
            None => Scope::Installation,
            Some(([], [])) => {
                return Err(AppError::Invalid(
                    "name at least one tenant or tenant group, or scope the operator to the whole installation"
                        .into(),
                ));
            }
            Some((tenants, groups)) => {
                let mut ids = std::collections::BTreeSet::new();
                for tenant in tenants {
                    let found = self.find_tenant(tenant).await?;
                    if found.state == TenantState::Deleted {
                        return Err(deleted(&found));
                    }
                    ids.insert(found.id);
                }
                let mut scope = Scope::some(ids, Default::default());
                for group in groups {
                    let found = self.find_tenant_group(group).await?;
                    scope.add_group(found.id, found.tenants);
                }
                scope
            }
        };
        let missing = |err| match err {
            StoreError::NotFound("operator") => AppError::not_found("operator", operator),
            other => AppError::from(other),
        };
        let before = self.store.get_operator(operator).await.map_err(missing)?;
        // The system log holds no tenant data: tenant and group ids, not names.
        let audit = actor.provenance(self.now()).record(
            None,
            audit_action::OPERATOR_SCOPE_CHANGED,
            operator,
            json!({"before": before.scope, "after": scope}),
        );
        self.store
            .set_operator_scope(operator, &scope, &[audit])
            .await
            .map_err(missing)?;
        tracing::info!(operator = %operator, scope = ?scope, "operator scope set");
        Ok(Operator { scope, ..before })
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
        let by = actor.provenance(self.now());
        let report = self
            .keyring
            .rotate_kek(self.clock.as_ref(), &by, retire, progress)
            .await?;
        // Each rewrap recorded itself; this records the rotation as a whole.
        let audit = by.at(self.now()).record(
            None,
            audit_action::KEK_ROTATED,
            &report.active_kek,
            json!({
                "rewrapped": report.rewrapped,
                "already_current": report.already_current,
                "vanished": report.vanished,
                "audit_keys_rewrapped": report.audit_keys_rewrapped,
                "totp_secrets_rewrapped": report.totp_secrets_rewrapped,
                "retired": report.retired,
            }),
        );
        self.store.queue_audit(&[audit]).await?;
        tracing::warn!(active = %report.active_kek, rewrapped = report.rewrapped, "key-encryption key rotated");
        Ok(report)
    }
}

impl App {
    // ----- workflows ------------------------------------------------------

    /// The id of the tenant a list is filtered to, if any, checked as
    /// [`App::tenant_for`] checks it.
    async fn tenant_id(
        &self,
        actor: &Actor,
        permission: Permission,
        tenant: Option<&TenantRef>,
    ) -> Result<Option<TenantId>, AppError> {
        match tenant {
            Some(tenant) => Ok(Some(self.tenant_for(actor, permission, tenant).await?.id)),
            None => Ok(None),
        }
    }

    /// Checks `permission` on workflow `id`, by the tenant that owns it.
    async fn authorize_workflow(
        &self,
        actor: &Actor,
        permission: Permission,
        id: WorkflowId,
    ) -> Result<(), AppError> {
        if matches!(actor, Actor::System(_)) {
            return Ok(());
        }
        let (instance, _) = self.store.get_instance(id).await.map_err(|err| match err {
            StoreError::NotFound(_) => AppError::not_found("workflow", id),
            other => other.into(),
        })?;
        authorize_owned(actor, permission, instance.tenant_id, || {
            AppError::not_found("workflow", id)
        })
    }

    /// Submits an event: stored once per (source, dedup key), and the
    /// instances its triggers name started in the same transaction. A
    /// duplicate gets the first delivery's answer.
    pub async fn submit_event(
        &self,
        actor: &Actor,
        event: EventSubmission,
    ) -> Result<Submitted, AppError> {
        // Events are the installation's intake, whatever tenant they name:
        // the workflows they start may create tenants (a won deal) or act
        // where their payload says, so a scoped operator may not send them.
        authorize(actor, Permission::SubmitEvents)?;
        let tenant_id = match &event.tenant {
            Some(tenant) => Some(
                self.tenant_for(actor, Permission::SubmitEvents, tenant)
                    .await?
                    .id,
            ),
            None => None,
        };
        let by = actor_name(actor);
        let submitted = self
            .engine
            .submit(
                NewEvent {
                    tenant_id,
                    source: event.source,
                    kind: event.kind,
                    dedup_key: event.dedup_key,
                    payload: event.payload,
                },
                &by,
            )
            .await
            .map_err(|err| engine_error(err, "event", "-"))?;
        tracing::info!(event = %submitted.event.id, kind = %submitted.event.kind, duplicate = submitted.duplicate, instances = submitted.instances.len(), "event submitted");
        Ok(submitted)
    }

    /// A page of workflow instances, in start order.
    pub async fn list_workflows(
        &self,
        actor: &Actor,
        filter: WorkflowFilter,
        after: Option<WorkflowId>,
        limit: u32,
    ) -> Result<Page<Instance, WorkflowId>, AppError> {
        let within = authorize_list(actor, Permission::ReadWorkflows)?;
        check_limit(limit)?;
        let tenant = self
            .tenant_id(actor, Permission::ReadWorkflows, filter.tenant.as_ref())
            .await?;
        let items = self
            .store
            .list_instances(&InstanceQuery {
                within,
                tenant,
                state: filter.state,
                template: filter.template,
                after,
                limit: limit + 1,
            })
            .await?;
        Ok(page(items, limit, |i| i.id))
    }

    /// A workflow instance with its steps and history.
    pub async fn get_workflow(
        &self,
        actor: &Actor,
        id: WorkflowId,
    ) -> Result<WorkflowDetail, AppError> {
        let missing = |err| match err {
            StoreError::NotFound(_) => AppError::not_found("workflow", id),
            other => other.into(),
        };
        let (instance, steps) = self.store.get_instance(id).await.map_err(missing)?;
        authorize_owned(actor, Permission::ReadWorkflows, instance.tenant_id, || {
            AppError::not_found("workflow", id)
        })?;
        let history = self.store.instance_history(id).await.map_err(missing)?;
        Ok(WorkflowDetail {
            instance,
            steps,
            history,
        })
    }

    /// Cancels an unfinished workflow instance, with a reason.
    pub async fn cancel_workflow(
        &self,
        actor: &Actor,
        id: WorkflowId,
        reason: &str,
    ) -> Result<Instance, AppError> {
        self.authorize_workflow(actor, Permission::CancelWorkflows, id)
            .await?;
        let instance = self
            .engine
            .cancel(id, &actor_name(actor), reason)
            .await
            .map_err(|err| engine_error(err, "workflow", id))?;
        tracing::warn!(workflow = %id, by = %actor_name(actor), "workflow cancelled");
        Ok(instance)
    }

    /// Asks for the compensation of a stopped or unfinished workflow: every
    /// completed step with a compensation is undone, in reverse order
    /// (after a rejection or a failure parked or cancelled it).
    pub async fn compensate_workflow(
        &self,
        actor: &Actor,
        id: WorkflowId,
        reason: &str,
    ) -> Result<Instance, AppError> {
        self.authorize_workflow(actor, Permission::CancelWorkflows, id)
            .await?;
        let instance = self
            .engine
            .compensate(id, &actor_name(actor), reason)
            .await
            .map_err(|err| engine_error(err, "workflow", id))?;
        tracing::warn!(workflow = %id, by = %actor_name(actor), "workflow compensation requested");
        Ok(instance)
    }

    /// Asks for the rollback of a completed step that has a compensation
    /// (the L1 reviewer's "undo that"): the engine runs the compensation
    /// next and leaves the rest of the workflow as it is.
    pub async fn rollback_step(
        &self,
        actor: &Actor,
        id: WorkflowId,
        step: &str,
        reason: &str,
    ) -> Result<(Instance, StepRun), AppError> {
        self.authorize_workflow(actor, Permission::DecideApprovals, id)
            .await?;
        let rolled = self
            .engine
            .rollback_step(id, step, &actor_name(actor), reason)
            .await
            .map_err(|err| engine_error(err, "workflow", id))?;
        tracing::warn!(workflow = %id, step, by = %actor_name(actor), "step rollback requested");
        Ok(rolled)
    }

    /// A page of approvals, in creation order.
    pub async fn list_approvals(
        &self,
        actor: &Actor,
        filter: GateFilter<ApprovalState>,
        after: Option<ApprovalId>,
        limit: u32,
    ) -> Result<Page<Approval, ApprovalId>, AppError> {
        let within = authorize_list(actor, Permission::ReadWorkflows)?;
        check_limit(limit)?;
        let tenant = self
            .tenant_id(actor, Permission::ReadWorkflows, filter.tenant.as_ref())
            .await?;
        let items = self
            .store
            .list_approvals(&ApprovalQuery {
                within,
                tenant,
                state: filter.state,
                instance: None,
                after,
                limit: limit + 1,
            })
            .await?;
        Ok(page(items, limit, |a| a.id))
    }

    /// An approval with its decisions.
    pub async fn get_approval(&self, actor: &Actor, id: ApprovalId) -> Result<Approval, AppError> {
        let approval = self.store.get_approval(id).await.map_err(|err| match err {
            StoreError::NotFound(_) => AppError::not_found("approval", id),
            other => other.into(),
        })?;
        authorize_owned(actor, Permission::ReadWorkflows, approval.tenant_id, || {
            AppError::not_found("approval", id)
        })?;
        Ok(approval)
    }

    /// The handles of the operators who decided `approval` so far, by id
    /// (what an approval's reader sees next to each decision).
    pub async fn decider_names(
        &self,
        actor: &Actor,
        approval: &Approval,
    ) -> Result<std::collections::BTreeMap<OperatorId, OperatorName>, AppError> {
        authorize_owned(actor, Permission::ReadWorkflows, approval.tenant_id, || {
            AppError::not_found("approval", approval.id)
        })?;
        let mut names = std::collections::BTreeMap::new();
        for decision in &approval.decisions {
            if !names.contains_key(&decision.operator_id) {
                let operator = self.store.get_operator(decision.operator_id).await?;
                names.insert(operator.id, operator.name);
            }
        }
        Ok(names)
    }

    /// Workflow instances counted by state, and the approvals' aggregates
    /// (pending, the oldest's age, overrides): the console's analytics.
    pub async fn workflow_totals(
        &self,
        actor: &Actor,
    ) -> Result<
        (
            Vec<(InstanceState, u64)>,
            gatehouse_core::store::ApprovalStats,
        ),
        AppError,
    > {
        let within = authorize_list(actor, Permission::ReadWorkflows)?;
        Ok((
            self.store
                .count_instances_by_state(within.as_deref())
                .await?,
            self.store.approval_stats(within.as_deref()).await?,
        ))
    }

    /// Workflow runs started in the last `days` days, by day, template and
    /// state, with the completed runs' mean duration: the console's
    /// throughput, error-rate and provisioning-time charts.
    pub async fn workflow_days(
        &self,
        actor: &Actor,
        days: u16,
    ) -> Result<Vec<gatehouse_core::store::InstanceDay>, AppError> {
        let within = authorize_list(actor, Permission::ReadWorkflows)?;
        let today = self.now().to_offset(time::UtcOffset::UTC).date();
        let since = today
            .saturating_sub(time::Duration::days(i64::from(days.saturating_sub(1))))
            .midnight()
            .assume_utc();
        Ok(self.store.instance_days(since, within.as_deref()).await?)
    }

    /// Records a person's decision on an approval; the decision that
    /// settles it moves the workflow on.
    pub async fn decide_approval(
        &self,
        actor: &Actor,
        id: ApprovalId,
        verdict: Verdict,
        reason: &str,
        modified_params: Option<Value>,
    ) -> Result<Approval, AppError> {
        let operator = person(actor, "deciding an approval")?;
        let current = self.store.get_approval(id).await.map_err(|err| match err {
            StoreError::NotFound(_) => AppError::not_found("approval", id),
            other => other.into(),
        })?;
        // Scope, role and second factor; then separation of duties, a
        // policy too, which the engine checks again under its lock, so a
        // decision racing this read is refused as well.
        authorize_owned(
            actor,
            Permission::DecideApprovals,
            current.tenant_id,
            || AppError::not_found("approval", id),
        )?;
        crate::authz::authorize_decision(actor, &current)?;
        let approval = self
            .engine
            .decide(id, operator, verdict, reason, modified_params)
            .await
            .map_err(|err| engine_error(err, "approval", id))?;
        tracing::info!(approval = %id, by = %operator.id, verdict = %verdict, state = %approval.state, "approval decided");
        Ok(approval)
    }

    /// A page of human tasks, in creation order.
    pub async fn list_tasks(
        &self,
        actor: &Actor,
        filter: GateFilter<TaskState>,
        after: Option<HumanTaskId>,
        limit: u32,
    ) -> Result<Page<HumanTask, HumanTaskId>, AppError> {
        let within = authorize_list(actor, Permission::ReadWorkflows)?;
        check_limit(limit)?;
        let tenant = self
            .tenant_id(actor, Permission::ReadWorkflows, filter.tenant.as_ref())
            .await?;
        let items = self
            .store
            .list_tasks(&TaskQuery {
                within,
                tenant,
                state: filter.state,
                instance: None,
                after,
                limit: limit + 1,
            })
            .await?;
        Ok(page(items, limit, |t| t.id))
    }

    /// A human task.
    pub async fn get_task(&self, actor: &Actor, id: HumanTaskId) -> Result<HumanTask, AppError> {
        let task = self.store.get_task(id).await.map_err(|err| match err {
            StoreError::NotFound(_) => AppError::not_found("task", id),
            other => other.into(),
        })?;
        authorize_owned(actor, Permission::ReadWorkflows, task.tenant_id, || {
            AppError::not_found("task", id)
        })?;
        Ok(task)
    }

    /// Records that a person did a human task, and its outcome.
    pub async fn complete_task(
        &self,
        actor: &Actor,
        id: HumanTaskId,
        outcome: Value,
        evidence: Option<&str>,
    ) -> Result<HumanTask, AppError> {
        let operator = person(actor, "completing a human task")?;
        let current = self.store.get_task(id).await.map_err(|err| match err {
            StoreError::NotFound(_) => AppError::not_found("task", id),
            other => other.into(),
        })?;
        authorize_owned(actor, Permission::CompleteTasks, current.tenant_id, || {
            AppError::not_found("task", id)
        })?;
        let task = self
            .engine
            .complete_task(id, operator, outcome, evidence)
            .await
            .map_err(|err| engine_error(err, "task", id))?;
        tracing::info!(task = %id, by = %operator.id, "human task completed");
        Ok(task)
    }
}

/// The secrets that authenticate a PSA's won deals to a tenant: a deal
/// starts an onboarding of the installation's, which creates a tenant, so
/// setting or removing them is for an operator of the whole installation
/// (a scoped operator's `ManageSecrets` on their tenant is not enough). The
/// HR system's secret (`hooks.hr.secret`) stays the tenant's.
const INTAKE_SECRETS: [&str; 3] = [
    crate::app::hooks::AUTOTASK_SECRET,
    crate::app::hooks::HALOPSA_SECRET,
    crate::app::hooks::GENERIC_SECRET,
];

fn authorize_intake_secret(actor: &Actor, name: &SecretName) -> Result<(), AppError> {
    if INTAKE_SECRETS.contains(&name.as_str()) {
        authorize(actor, Permission::ManageSecrets)?;
    }
    Ok(())
}

fn check_limit(limit: u32) -> Result<(), AppError> {
    if limit == 0 || limit > MAX_PAGE {
        return Err(AppError::Invalid(format!(
            "invalid limit: must be between 1 and {MAX_PAGE}"
        )));
    }
    Ok(())
}

/// Cuts the extra row fetched to tell whether there is a next page.
fn page<T, C>(mut items: Vec<T>, limit: u32, id: impl Fn(&T) -> C) -> Page<T, C> {
    let next = if items.len() > limit as usize {
        items.truncate(limit as usize);
        items.last().map(id)
    } else {
        None
    };
    Page { items, next }
}

/// How the engine records who acted: an operator id, or `system`.
fn actor_name(actor: &Actor) -> String {
    match actor {
        Actor::Operator { operator, .. } => operator.id.to_string(),
        Actor::System(_) => "system".into(),
    }
}

/// The record of a new operator: the id and role only, since the system log
/// is in clear and handles and display names may name a person.
fn operator_created(by: &Provenance, operator: &Operator) -> gatehouse_core::audit::AuditRecord {
    by.record(
        None,
        audit_action::OPERATOR_CREATED,
        operator.id,
        json!({"role": operator.role.as_str()}),
    )
}

/// The record of an issued token (the credential event): its id and owner,
/// never its secret or hash.
fn token_issued(by: &Provenance, token: &ApiToken) -> gatehouse_core::audit::AuditRecord {
    by.record(
        None,
        audit_action::TOKEN_ISSUED,
        token.id,
        json!({
            "operator": token.operator_id.to_string(),
            "expires_at": token.expires_at.and_then(|at| at.format(&time::format_description::well_known::Rfc3339).ok()),
        }),
    )
}

/// The person acting; decisions and task completions must be a person's.
fn person<'a>(actor: &'a Actor, what: &str) -> Result<&'a Operator, AppError> {
    match actor {
        Actor::Operator { operator, .. } => Ok(operator),
        Actor::System(_) => Err(AppError::NotAllowed(format!(
            "{what} must be done by a person: use an operator's API token (at the CLI: `--as NAME`)"
        ))),
    }
}

/// Maps what the engine refused or could not find; `entity` is what the
/// request named (`workflow`, `approval`, `task`).
fn engine_error(err: EngineError, entity: &'static str, what: impl std::fmt::Display) -> AppError {
    match err {
        EngineError::Refused(reason) => AppError::Conflict {
            code: match entity {
                "approval" => "approval_refused",
                "task" => "task_refused",
                "workflow" => "workflow_refused",
                _ => "conflict",
            },
            message: reason.to_string(),
        },
        EngineError::Store(StoreError::NotFound(_)) => AppError::not_found(entity, what),
        EngineError::Store(other) => other.into(),
        other => AppError::Internal(other.to_string()),
    }
}

fn deleted(tenant: &Tenant) -> AppError {
    AppError::Conflict {
        code: "tenant_deleted",
        message: format!("tenant `{}` is deleted", tenant.slug),
    }
}
