//! The connector-backed actions of the onboarding templates (`psa.…`,
//! `rmm.…`, `graph.…`, `docs.…`), and how they find the system to call.
//!
//! Every action:
//! 1. parses its parameters (a missing or malformed one is a permanent
//!    error that names it);
//! 2. resolves the connector of the tenant it works for (the `tenant`
//!    parameter, else the workflow's tenant) through the [`Directory`]: the
//!    tenant's own connector of the needed category, else the MSP tenant's;
//!    opens the credentials it names from the tenant's vault, and has the
//!    [`ConnectorFactory`] build a client;
//! 3. looks for what an earlier attempt created before creating anything
//!    (most vendor APIs ignore `Idempotency-Key`; the key is forwarded
//!    anyway);
//! 4. maps [`ConnectorError`] onto [`ActionError`]: retryable failures keep
//!    the system's `Retry-After`; refused credentials, rejections and
//!    configuration errors are permanent (retrying cannot fix them);
//! 5. answers the JSON the templates read (`id`, `accounts`, …).
//!
//! Actions that change a system also prepare their [`Plan`]: the change as a
//! diff against what the system holds now, for the L2 approval, and
//! re-checked by the engine just before the step runs.

mod docs;
mod graph;
mod graph_access;
mod psa;
mod rmm;

use std::collections::BTreeMap;
use std::sync::Arc;

use gatehouse_connectors::ConnectorError;
use gatehouse_connectors::directory::AccountDirectory;
use gatehouse_connectors::http::Secret;
use gatehouse_connectors::ports::{DocsPlatform, M365, Psa, Rmm};
use gatehouse_core::audit::Provenance;
use gatehouse_core::clock::Clock;
use gatehouse_core::connector::{ConnectorCategory, ConnectorConfig, ConnectorKind, ConnectorName};
use gatehouse_core::id::TenantId;
use gatehouse_core::secret::SecretName;
use gatehouse_core::store::{Store, StoreError};
use gatehouse_core::tenant::{TenantSlug, TenantState};
use gatehouse_engine::action::{ActionCall, ActionError, ActionRegistry};
use gatehouse_vault::Keyring;
use serde_json::{Value, json};

pub use docs::{CreateDocsOrganization, DeleteDocsOrganization};
pub use graph::{CreateAdminAccounts, DeleteAdminAccounts, RequestGdap, TerminateGdap};
pub use graph_access::{AwaitGdap, ResolveCustomerTenant, ReviewPrivilegedAccess};
pub use psa::{UpdateCompany, UpdateOpportunity};
pub use rmm::{
    CreateInstallerLink, CreateLocation, CreateRmmOrganization, DeleteRmmOrganization, VerifyAgents,
};

/// The MSP's own tenant's slug when none is configured.
pub const DEFAULT_MSP_TENANT: &str = "msp";

/// A connector's credentials, opened from the tenant's vault: role (such
/// as `client_secret`) → value. `Debug` shows the roles only.
#[derive(Clone, Default)]
pub struct Credentials(BTreeMap<String, Secret>);

impl Credentials {
    /// Credentials from `(role, value)` pairs.
    pub fn new(values: impl IntoIterator<Item = (String, Secret)>) -> Self {
        Self(values.into_iter().collect())
    }

    /// The credential of `role`, if the connector names one.
    pub fn get(&self, role: &str) -> Option<&Secret> {
        self.0.get(role)
    }

    /// The credential of `role`, or a configuration error naming it.
    pub fn require(&self, system: &'static str, role: &str) -> Result<&Secret, ConnectorError> {
        self.get(role).ok_or_else(|| ConnectorError::Config {
            system,
            message: format!("the connector names no `{role}` secret"),
        })
    }
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.0.keys()).finish()
    }
}

/// Builds vendor clients from a connector's configuration and credentials.
///
/// The production factory is [`VendorFactory`]; tests give their own, with
/// in-test implementations of the ports.
pub trait ConnectorFactory: Send + Sync {
    /// A PSA client (ConnectWise, Autotask, HaloPSA).
    fn psa(
        &self,
        config: &ConnectorConfig,
        credentials: &Credentials,
    ) -> Result<Arc<dyn Psa>, ConnectorError>;
    /// An RMM client (NinjaOne, Datto RMM).
    fn rmm(
        &self,
        config: &ConnectorConfig,
        credentials: &Credentials,
    ) -> Result<Arc<dyn Rmm>, ConnectorError>;
    /// A Microsoft Graph client.
    fn m365(
        &self,
        config: &ConnectorConfig,
        credentials: &Credentials,
    ) -> Result<Arc<dyn M365>, ConnectorError>;
    /// A documentation-platform client (IT Glue, Hudu).
    fn docs(
        &self,
        config: &ConnectorConfig,
        credentials: &Credentials,
    ) -> Result<Arc<dyn DocsPlatform>, ConnectorError>;
    /// The accounts of a system people are provisioned into (a SCIM
    /// application, or Microsoft 365 through Graph). Factories that build
    /// none answer a configuration error.
    fn accounts(
        &self,
        config: &ConnectorConfig,
        credentials: &Credentials,
    ) -> Result<Arc<dyn AccountDirectory>, ConnectorError> {
        let _ = credentials;
        Err(wrong_kind(config, ConnectorCategory::Scim))
    }
}

/// The factory of the real vendor clients.
#[derive(Clone)]
pub struct VendorFactory {
    /// The clock the clients read `Retry-After` and token expiry with.
    pub clock: Arc<dyn Clock>,
}

impl std::fmt::Debug for VendorFactory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("VendorFactory").finish_non_exhaustive()
    }
}

/// A text setting of the connector, or a configuration error naming it.
fn setting<'a>(config: &'a ConnectorConfig, key: &str) -> Result<&'a str, ConnectorError> {
    optional_setting(config, key)?.ok_or_else(|| ConnectorError::Config {
        system: config.kind.as_str(),
        message: format!("connector `{}` has no `{key}` setting", config.name),
    })
}

/// A text setting that may be absent; present but not text is an error.
fn optional_setting<'a>(
    config: &'a ConnectorConfig,
    key: &str,
) -> Result<Option<&'a str>, ConnectorError> {
    match config.settings.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.as_str())),
        Some(_) => Err(ConnectorError::Config {
            system: config.kind.as_str(),
            message: format!("connector `{}`: setting `{key}` must be text", config.name),
        }),
    }
}

/// The vendor clients, built from a connector's `base_url`, `settings` and
/// credentials (see the table in `docs/connectors.md`).
impl ConnectorFactory for VendorFactory {
    fn psa(
        &self,
        config: &ConnectorConfig,
        credentials: &Credentials,
    ) -> Result<Arc<dyn Psa>, ConnectorError> {
        use gatehouse_connectors::{autotask, connectwise, halopsa};
        let system = config.kind.as_str();
        let clock = self.clock.clone();
        Ok(match config.kind {
            ConnectorKind::ConnectWise => Arc::new(connectwise::ConnectWiseClient::new(
                connectwise::ConnectWiseConfig {
                    base_url: config.base_url.clone(),
                    company_id: setting(config, "company_id")?.to_owned(),
                    public_key: setting(config, "public_key")?.to_owned(),
                    private_key: credentials.require(system, "private_key")?.clone(),
                    client_id: setting(config, "client_id")?.to_owned(),
                },
                clock,
            )?),
            ConnectorKind::Autotask => Arc::new(autotask::AutotaskClient::new(
                autotask::AutotaskConfig {
                    discovery_url: config.base_url.clone(),
                    username: setting(config, "username")?.to_owned(),
                    secret: credentials.require(system, "secret")?.clone(),
                    integration_code: setting(config, "integration_code")?.to_owned(),
                },
                clock,
            )?),
            ConnectorKind::HaloPsa => Arc::new(halopsa::HaloPsaClient::new(
                halopsa::HaloPsaConfig {
                    base_url: config.base_url.clone(),
                    tenant: optional_setting(config, "tenant")?.map(str::to_owned),
                    client_id: setting(config, "client_id")?.to_owned(),
                    client_secret: credentials.require(system, "client_secret")?.clone(),
                    scope: optional_setting(config, "scope")?
                        .unwrap_or("all")
                        .to_owned(),
                    opportunity_ticket_type: match config.settings.get("opportunity_ticket_type") {
                        Some(value) => value.as_u64().ok_or_else(|| ConnectorError::Config {
                            system,
                            message: "setting `opportunity_ticket_type` must be a number".into(),
                        })?,
                        None => {
                            return Err(ConnectorError::Config {
                                system,
                                message: format!(
                                    "connector `{}` has no `opportunity_ticket_type` setting",
                                    config.name
                                ),
                            });
                        }
                    },
                    won_status: optional_setting(config, "won_status")?
                        .unwrap_or("Won")
                        .to_owned(),
                },
                clock,
            )?),
            _ => return Err(wrong_kind(config, ConnectorCategory::Psa)),
        })
    }

    fn rmm(
        &self,
        config: &ConnectorConfig,
        credentials: &Credentials,
    ) -> Result<Arc<dyn Rmm>, ConnectorError> {
        use gatehouse_connectors::{dattormm, ninjaone};
        let system = config.kind.as_str();
        let clock = self.clock.clone();
        Ok(match config.kind {
            ConnectorKind::NinjaOne => {
                let mut settings = ninjaone::NinjaOneConfig::new(
                    &config.base_url,
                    setting(config, "client_id")?,
                    credentials.require(system, "client_secret")?.clone(),
                );
                if let Some(scope) = optional_setting(config, "scope")? {
                    settings.scope = Some(scope.to_owned());
                }
                Arc::new(ninjaone::NinjaOneClient::new(settings, clock)?)
            }
            ConnectorKind::DattoRmm => Arc::new(dattormm::DattoRmmClient::new(
                dattormm::DattoRmmConfig::new(
                    &config.base_url,
                    setting(config, "agent_url")?,
                    credentials.require(system, "api_key")?.clone(),
                    credentials.require(system, "api_secret")?.clone(),
                ),
                clock,
            )?),
            _ => return Err(wrong_kind(config, ConnectorCategory::Rmm)),
        })
    }

    fn m365(
        &self,
        config: &ConnectorConfig,
        credentials: &Credentials,
    ) -> Result<Arc<dyn M365>, ConnectorError> {
        use gatehouse_connectors::graph;
        let system = config.kind.as_str();
        match config.kind {
            ConnectorKind::Graph => {
                let mut settings = graph::GraphConfig::new(
                    setting(config, "partner_tenant_id")?,
                    setting(config, "client_id")?,
                    credentials.require(system, "client_secret")?.clone(),
                );
                settings.graph_base = config.base_url.clone();
                if let Some(login) = optional_setting(config, "login_base")? {
                    settings.login_base = login.to_owned();
                }
                Ok(Arc::new(graph::GraphClient::new(
                    settings,
                    self.clock.clone(),
                )?))
            }
            _ => Err(wrong_kind(config, ConnectorCategory::Graph)),
        }
    }

    fn docs(
        &self,
        config: &ConnectorConfig,
        credentials: &Credentials,
    ) -> Result<Arc<dyn DocsPlatform>, ConnectorError> {
        use gatehouse_connectors::{hudu, itglue};
        let system = config.kind.as_str();
        let key = credentials.require(system, "api_key")?.clone();
        let clock = self.clock.clone();
        Ok(match config.kind {
            ConnectorKind::ItGlue => Arc::new(itglue::ItGlueClient::new(
                itglue::ItGlueConfig::new(&config.base_url, key),
                clock,
            )?),
            ConnectorKind::Hudu => Arc::new(hudu::HuduClient::new(
                hudu::HuduConfig::new(&config.base_url, key),
                clock,
            )?),
            _ => return Err(wrong_kind(config, ConnectorCategory::Docs)),
        })
    }

    fn accounts(
        &self,
        config: &ConnectorConfig,
        credentials: &Credentials,
    ) -> Result<Arc<dyn AccountDirectory>, ConnectorError> {
        use gatehouse_connectors::directory::{GraphDirectory, ScimDirectory};
        use gatehouse_connectors::scim::ScimClient;
        let system = config.kind.as_str();
        match config.kind {
            ConnectorKind::Scim => {
                let url = reqwest_url(config)?;
                let client = ScimClient::with_options(
                    url,
                    credentials.require(system, "token")?.clone(),
                    gatehouse_connectors::scim::ScimOptions::default(),
                    self.clock.clone(),
                )?;
                Ok(Arc::new(ScimDirectory::new(Arc::new(client))))
            }
            ConnectorKind::Graph => {
                let client = self.m365(config, credentials)?;
                let customer = setting(config, "customer_tenant_id")?;
                Ok(Arc::new(GraphDirectory::new(client, customer)))
            }
            _ => Err(wrong_kind(config, ConnectorCategory::Scim)),
        }
    }
}

fn wrong_kind(config: &ConnectorConfig, wanted: ConnectorCategory) -> ConnectorError {
    ConnectorError::Config {
        system: config.kind.as_str(),
        message: format!(
            "connector `{}` is a {} connector, not a {wanted} one",
            config.name, config.category
        ),
    }
}

/// Finds the connector an action needs and builds its client.
pub struct Directory {
    store: Arc<dyn Store>,
    keyring: Arc<Keyring>,
    clock: Arc<dyn Clock>,
    factory: Arc<dyn ConnectorFactory>,
    msp_tenant: TenantSlug,
    /// Account systems already built, by connector and its version, so a
    /// burst of provisioning reuses one client (and its token).
    accounts: std::sync::Mutex<BTreeMap<(String, i64), Arc<dyn AccountDirectory>>>,
}

/// One system people are provisioned into: a tenant's own SCIM or Graph
/// connector.
#[derive(Clone)]
pub struct AccountSystem {
    /// The connector's name: what policies call the system.
    pub name: String,
    /// Its kind (`scim`, `graph`).
    pub kind: ConnectorKind,
    /// Its accounts.
    pub directory: Arc<dyn AccountDirectory>,
}

impl std::fmt::Debug for AccountSystem {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AccountSystem")
            .field("name", &self.name)
            .field("kind", &self.kind)
            .finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Directory {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Directory")
            .field("msp_tenant", &self.msp_tenant)
            .finish_non_exhaustive()
    }
}

/// What the parameters of a call ask of the directory.
#[derive(Debug, Clone, Default)]
pub struct Wanted {
    /// `connector`: a connector by name (the tenant's, else the MSP's).
    pub name: Option<ConnectorName>,
    /// A vendor (`psa = "connectwise"`): only connectors of that kind.
    pub kind: Option<ConnectorKind>,
}

impl Wanted {
    /// The `connector` parameter, and `kind_param` (`psa`) if given.
    pub fn from_params(params: &Value, kind_param: Option<&str>) -> Result<Self, ActionError> {
        let name = optional_text(params, "connector")?
            .map(ConnectorName::parse)
            .transpose()
            .map_err(|e| ActionError::permanent(format!("parameter `connector`: {e}")))?;
        let kind = match kind_param {
            Some(key) => optional_text(params, key)?
                .map(str::parse::<ConnectorKind>)
                .transpose()
                .map_err(|e| ActionError::permanent(format!("parameter `{key}`: {e}")))?,
            None => None,
        };
        Ok(Self { name, kind })
    }
}

/// A connector's `base_url` as a URL, or a configuration error naming it.
fn reqwest_url(
    config: &ConnectorConfig,
) -> Result<gatehouse_connectors::scim::Url, ConnectorError> {
    gatehouse_connectors::scim::Url::parse(&config.base_url).map_err(|e| ConnectorError::Config {
        system: config.kind.as_str(),
        message: format!("connector `{}`: base_url is not a URL: {e}", config.name),
    })
}

impl Directory {
    /// A directory over `store`, opening credentials with `keyring`,
    /// building clients with `factory`, falling back to the connectors of
    /// the tenant called `msp_tenant`.
    pub fn new(
        store: Arc<dyn Store>,
        keyring: Arc<Keyring>,
        clock: Arc<dyn Clock>,
        factory: Arc<dyn ConnectorFactory>,
        msp_tenant: TenantSlug,
    ) -> Self {
        Self {
            store,
            keyring,
            clock,
            factory,
            msp_tenant,
            accounts: std::sync::Mutex::new(BTreeMap::new()),
        }
    }

    /// The systems `tenant`'s people are provisioned into: its own
    /// connectors of category SCIM or Graph (never the MSP's: a client's
    /// people live in the client's systems), by name.
    pub async fn account_systems(
        &self,
        tenant: TenantId,
    ) -> Result<Vec<AccountSystem>, ActionError> {
        let connectors = self
            .store
            .list_connectors(tenant)
            .await
            .map_err(|e| store_error("reading the tenant's connectors", e))?;
        let mut systems = Vec::new();
        for config in connectors.into_iter().filter(|c| {
            matches!(
                c.category,
                ConnectorCategory::Scim | ConnectorCategory::Graph
            )
        }) {
            let key = (config.id.to_string(), config.version);
            let cached = self
                .accounts
                .lock()
                .ok()
                .and_then(|cache| cache.get(&key).cloned());
            let directory = match cached {
                Some(directory) => directory,
                None => {
                    let credentials = self.credentials(&config).await?;
                    let directory = self
                        .factory
                        .accounts(&config, &credentials)
                        .map_err(action_error)?;
                    if let Ok(mut cache) = self.accounts.lock() {
                        // Older versions of this connector are stale.
                        let id = key.0.clone();
                        cache.retain(|(c, _), _| *c != id);
                        cache.insert(key, directory.clone());
                    }
                    directory
                }
            };
            systems.push(AccountSystem {
                name: config.name.to_string(),
                kind: config.kind,
                directory,
            });
        }
        Ok(systems)
    }

    /// The tenant a call works for: its `tenant` parameter (an id or a
    /// slug), else the workflow's tenant. The tenant must exist and not be
    /// deleted. A workflow that belongs to a tenant acts on that tenant
    /// only: a `tenant` parameter naming another is refused, so that no
    /// template (or event payload it reads) can reach across tenants; the
    /// installation's workflows (an onboarding, before its tenant exists)
    /// may name any.
    pub async fn tenant_of(&self, call: &ActionCall<'_>) -> Result<TenantId, ActionError> {
        let tenant = match optional_text(call.params, "tenant")? {
            Some(text) if text.starts_with("ten_") => self
                .store
                .get_tenant(
                    text.parse()
                        .map_err(|e| ActionError::permanent(format!("parameter `tenant`: {e}")))?,
                )
                .await
                .map_err(|e| store_error("reading the tenant", e))?,
            Some(text) => {
                let slug = TenantSlug::parse(text)
                    .map_err(|e| ActionError::permanent(format!("parameter `tenant`: {e}")))?;
                self.store
                    .find_tenant_by_slug(&slug)
                    .await
                    .map_err(|e| store_error("reading the tenant", e))?
            }
            None => match call.tenant {
                Some(id) => self
                    .store
                    .get_tenant(id)
                    .await
                    .map_err(|e| store_error("reading the tenant", e))?,
                None => {
                    return Err(ActionError::permanent(
                        "parameter `tenant` is required (the workflow has no tenant)",
                    ));
                }
            },
        };
        if let Some(owner) = call.tenant
            && owner != tenant.id
        {
            return Err(ActionError::permanent(format!(
                "this workflow belongs to tenant {owner} and may not act on tenant `{}`",
                tenant.slug
            )));
        }
        if tenant.state == TenantState::Deleted {
            return Err(ActionError::permanent(format!(
                "tenant `{}` is deleted",
                tenant.slug
            )));
        }
        Ok(tenant.id)
    }

    /// The connector of `category` for `tenant`: see
    /// [`choose`]. Its credentials are opened from the vault of the tenant
    /// that owns the connector.
    pub async fn resolve(
        &self,
        tenant: TenantId,
        category: ConnectorCategory,
        wanted: &Wanted,
    ) -> Result<(ConnectorConfig, Credentials), ActionError> {
        let own = self
            .store
            .list_connectors(tenant)
            .await
            .map_err(|e| store_error("reading the tenant's connectors", e))?;
        let msp = match self.store.find_tenant_by_slug(&self.msp_tenant).await {
            Ok(msp) if msp.id != tenant => self
                .store
                .list_connectors(msp.id)
                .await
                .map_err(|e| store_error("reading the MSP's connectors", e))?,
            Ok(_) | Err(StoreError::NotFound(_)) => Vec::new(),
            Err(err) => return Err(store_error("reading the MSP tenant", err)),
        };
        let config = choose(&own, &msp, category, wanted)
            .map_err(|reason| ActionError::permanent(format!("{category} connector: {reason}")))?
            .clone();
        let credentials = self.credentials(&config).await?;
        Ok((config, credentials))
    }

    async fn credentials(&self, config: &ConnectorConfig) -> Result<Credentials, ActionError> {
        let mut values = BTreeMap::new();
        for (role, name) in &config.secrets {
            let sealed = self
                .store
                .get_secret(config.tenant_id, name)
                .await
                .map_err(|err| match err {
                    StoreError::NotFound(_) => ActionError::permanent(format!(
                        "connector `{}` names secret `{name}`, which tenant {} does not hold",
                        config.name, config.tenant_id
                    )),
                    other => store_error("reading a connector's secret", other),
                })?;
            let value = self
                .keyring
                .open(
                    config.tenant_id,
                    &crate::app::App::secret_context(name),
                    &sealed.sealed,
                )
                .await
                .map_err(|e| {
                    ActionError::retryable(format!(
                        "opening secret `{name}` of connector `{}`: {e}",
                        config.name
                    ))
                })?;
            let text = String::from_utf8(value.to_vec()).map_err(|_| {
                ActionError::permanent(format!(
                    "secret `{name}` of connector `{}` is not text",
                    config.name
                ))
            })?;
            values.insert(role.clone(), Secret::new(text));
        }
        Ok(Credentials(values))
    }

    /// The PSA of `tenant`.
    pub async fn psa(
        &self,
        tenant: TenantId,
        wanted: &Wanted,
    ) -> Result<(ConnectorConfig, Arc<dyn Psa>), ActionError> {
        let (config, credentials) = self.resolve(tenant, ConnectorCategory::Psa, wanted).await?;
        let client = self
            .factory
            .psa(&config, &credentials)
            .map_err(action_error)?;
        Ok((config, client))
    }

    /// The RMM of `tenant`.
    pub async fn rmm(
        &self,
        tenant: TenantId,
        wanted: &Wanted,
    ) -> Result<(ConnectorConfig, Arc<dyn Rmm>), ActionError> {
        let (config, credentials) = self.resolve(tenant, ConnectorCategory::Rmm, wanted).await?;
        let client = self
            .factory
            .rmm(&config, &credentials)
            .map_err(action_error)?;
        Ok((config, client))
    }

    /// Microsoft Graph for `tenant`.
    pub async fn m365(
        &self,
        tenant: TenantId,
        wanted: &Wanted,
    ) -> Result<(ConnectorConfig, Arc<dyn M365>), ActionError> {
        let (config, credentials) = self
            .resolve(tenant, ConnectorCategory::Graph, wanted)
            .await?;
        let client = self
            .factory
            .m365(&config, &credentials)
            .map_err(action_error)?;
        Ok((config, client))
    }

    /// The documentation platform of `tenant`.
    pub async fn docs(
        &self,
        tenant: TenantId,
        wanted: &Wanted,
    ) -> Result<(ConnectorConfig, Arc<dyn DocsPlatform>), ActionError> {
        let (config, credentials) = self
            .resolve(tenant, ConnectorCategory::Docs, wanted)
            .await?;
        let client = self
            .factory
            .docs(&config, &credentials)
            .map_err(action_error)?;
        Ok((config, client))
    }

    /// Whether `tenant` holds a secret called `name`.
    pub async fn has_secret(
        &self,
        tenant: TenantId,
        name: &SecretName,
    ) -> Result<bool, ActionError> {
        match self.store.get_secret(tenant, name).await {
            Ok(_) => Ok(true),
            Err(StoreError::NotFound(_)) => Ok(false),
            Err(err) => Err(store_error("reading a secret", err)),
        }
    }

    /// Seals `value` under `tenant`'s key and stores it as secret `name`
    /// (audited as `tenant.secret.set` by `system`, with `why`; never the
    /// value).
    pub async fn put_secret(
        &self,
        tenant: TenantId,
        name: &SecretName,
        value: &[u8],
        why: &str,
    ) -> Result<(), ActionError> {
        let sealed = self
            .keyring
            .seal(tenant, &crate::app::App::secret_context(name), value)
            .await
            .map_err(|e| ActionError::retryable(format!("sealing secret `{name}`: {e}")))?;
        let now = self.clock.now();
        let audit = Provenance::system("workflow action", now).record(
            Some(tenant),
            gatehouse_core::audit::action::SECRET_SET,
            name,
            json!({ "name": name.as_str(), "value": "set (not recorded)", "why": why }),
        );
        self.store
            .put_secret(tenant, name, &sealed, now, &[audit])
            .await
            .map_err(|e| store_error("storing a secret", e))?;
        Ok(())
    }

    /// Removes `tenant`'s secret `name`; one that is not there is fine.
    pub async fn delete_secret(
        &self,
        tenant: TenantId,
        name: &SecretName,
        why: &str,
    ) -> Result<(), ActionError> {
        let audit = Provenance::system("workflow action", self.clock.now()).record(
            Some(tenant),
            gatehouse_core::audit::action::SECRET_DELETED,
            name,
            json!({ "name": name.as_str(), "why": why }),
        );
        match self.store.delete_secret(tenant, name, &[audit]).await {
            Ok(()) | Err(StoreError::NotFound(_)) => Ok(()),
            Err(err) => Err(store_error("removing a secret", err)),
        }
    }
}

/// Chooses the connector of `category` among a client tenant's own
/// connectors (`own`) and the MSP's (`msp`):
/// - `wanted.name`: the connector of that name, the tenant's first, then
///   the MSP's; it must be of `category` (and of `wanted.kind`, if given);
/// - otherwise the tenant's connectors of `category` (and kind); exactly
///   one must match. None: the same among the MSP's. Several: ambiguous,
///   the step must name one with its `connector` parameter.
pub fn choose<'a>(
    own: &'a [ConnectorConfig],
    msp: &'a [ConnectorConfig],
    category: ConnectorCategory,
    wanted: &Wanted,
) -> Result<&'a ConnectorConfig, String> {
    let fits = |c: &&ConnectorConfig| {
        c.category == category && wanted.kind.is_none_or(|kind| c.kind == kind)
    };
    if let Some(name) = &wanted.name {
        let found = own
            .iter()
            .find(|c| &c.name == name)
            .or_else(|| msp.iter().find(|c| &c.name == name))
            .ok_or_else(|| format!("no connector called `{name}` in the tenant or the MSP's"))?;
        return if fits(&found) {
            Ok(found)
        } else {
            Err(format!(
                "connector `{name}` is a {} ({}) connector",
                found.kind, found.category
            ))
        };
    }
    for (whose, list) in [("the tenant", own), ("the MSP", msp)] {
        let matching: Vec<&ConnectorConfig> = list.iter().filter(fits).collect();
        match matching.as_slice() {
            [] => continue,
            [one] => return Ok(one),
            several => {
                let names: Vec<&str> = several.iter().map(|c| c.name.as_str()).collect();
                return Err(format!(
                    "{whose} has several ({}); name one with the step's `connector` parameter",
                    names.join(", ")
                ));
            }
        }
    }
    let kind = wanted
        .kind
        .map(|k| format!(" of kind {k}"))
        .unwrap_or_default();
    Err(format!(
        "neither the tenant nor the MSP has one{kind}: add one with `gatehouse connector set`"
    ))
}

/// A connector's failure as an action's.
pub fn action_error(err: ConnectorError) -> ActionError {
    match &err {
        ConnectorError::Retryable { retry_after, .. } => ActionError::Retryable {
            message: err.to_string(),
            retry_after: *retry_after,
        },
        ConnectorError::Auth { .. } => ActionError::permanent(format!(
            "{err} (fix the connector's credentials, then retry the step)"
        )),
        ConnectorError::Rejected { .. } | ConnectorError::Config { .. } => {
            ActionError::permanent(err.to_string())
        }
    }
}

/// A storage failure while preparing a call: the database may come back.
fn store_error(context: &str, err: StoreError) -> ActionError {
    match err {
        StoreError::NotFound(what) => ActionError::permanent(format!("{context}: no such {what}")),
        other => ActionError::retryable(format!("{context}: {other}")),
    }
}

/// The string parameter `key`, required and not blank.
pub fn text<'a>(params: &'a Value, key: &str) -> Result<&'a str, ActionError> {
    optional_text(params, key)?.ok_or_else(|| {
        ActionError::permanent(format!(
            "parameter `{key}` is required (a non-empty string)"
        ))
    })
}

/// The string parameter `key`, if given (`null` and `""` count as absent).
pub fn optional_text<'a>(params: &'a Value, key: &str) -> Result<Option<&'a str>, ActionError> {
    match params.get(key) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(text)) if text.trim().is_empty() => Ok(None),
        Some(Value::String(text)) => Ok(Some(text.as_str())),
        Some(other) => Err(ActionError::permanent(format!(
            "parameter `{key}` must be a string, not {other}"
        ))),
    }
}

/// An id parameter: a string, or a number written as one (PSA ids are
/// numbers in some systems).
pub fn id_param(params: &Value, key: &str) -> Result<String, ActionError> {
    match params.get(key) {
        Some(Value::Number(n)) => Ok(n.to_string()),
        _ => text(params, key).map(str::to_owned),
    }
}

/// Registers every connector-backed action, over `directory`.
pub fn register(actions: &mut ActionRegistry, directory: Arc<Directory>) {
    let d = || directory.clone();
    actions.register("psa.update_company", Arc::new(UpdateCompany(d())));
    actions.register("psa.update_opportunity", Arc::new(UpdateOpportunity(d())));
    actions.register(
        "rmm.create_organization",
        Arc::new(CreateRmmOrganization(d())),
    );
    actions.register(
        "rmm.delete_organization",
        Arc::new(DeleteRmmOrganization(d())),
    );
    actions.register("rmm.create_location", Arc::new(CreateLocation(d())));
    actions.register(
        "rmm.create_installer_link",
        Arc::new(CreateInstallerLink(d())),
    );
    actions.register("rmm.verify_agents", Arc::new(VerifyAgents(d())));
    actions.register("graph.request_gdap", Arc::new(RequestGdap(d())));
    actions.register("graph.terminate_gdap", Arc::new(TerminateGdap(d())));
    actions.register(
        "graph.create_admin_accounts",
        Arc::new(CreateAdminAccounts(d())),
    );
    actions.register(
        "graph.delete_admin_accounts",
        Arc::new(DeleteAdminAccounts(d())),
    );
    actions.register(
        "graph.resolve_customer_tenant",
        Arc::new(ResolveCustomerTenant(d())),
    );
    actions.register("graph.await_gdap", Arc::new(AwaitGdap(d())));
    actions.register(
        "graph.review_privileged_access",
        Arc::new(ReviewPrivilegedAccess(d())),
    );
    actions.register(
        "docs.create_organization",
        Arc::new(CreateDocsOrganization(d())),
    );
    actions.register(
        "docs.delete_organization",
        Arc::new(DeleteDocsOrganization(d())),
    );
}

/// The names [`register`] registers.
pub const NAMES: [&str; 16] = [
    "psa.update_company",
    "psa.update_opportunity",
    "rmm.create_organization",
    "rmm.delete_organization",
    "rmm.create_location",
    "rmm.create_installer_link",
    "rmm.verify_agents",
    "graph.request_gdap",
    "graph.terminate_gdap",
    "graph.create_admin_accounts",
    "graph.delete_admin_accounts",
    "graph.resolve_customer_tenant",
    "graph.await_gdap",
    "graph.review_privileged_access",
    "docs.create_organization",
    "docs.delete_organization",
];

#[cfg(test)]
mod tests {
    use super::*;
    use gatehouse_core::connector::ConnectorSpec;

    fn configured(kind: ConnectorKind, base_url: String, settings: Value) -> ConnectorConfig {
        ConnectorConfig::new(
            TenantId::generate(time::OffsetDateTime::UNIX_EPOCH),
            ConnectorName::parse(kind.as_str()).unwrap(),
            ConnectorSpec {
                kind,
                base_url,
                settings,
                secrets: BTreeMap::new(),
            },
            time::OffsetDateTime::UNIX_EPOCH,
        )
        .unwrap()
    }

    fn credentials(pairs: &[(&str, &str)]) -> Credentials {
        Credentials::new(
            pairs
                .iter()
                .map(|(role, value)| ((*role).to_owned(), Secret::new(*value))),
        )
    }

    /// The production factory builds clients that really reach the
    /// systems: here the sandbox's, with the sandbox's credentials.
    #[tokio::test]
    async fn the_vendor_factory_builds_clients_that_reach_the_sandbox() {
        let sandbox = gatehouse_sandbox::Sandbox::start().await.unwrap();
        let c = sandbox.credentials.clone();
        let factory = VendorFactory {
            clock: Arc::new(gatehouse_core::clock::FakeClock::default()),
        };

        let rmm = factory
            .rmm(
                &configured(
                    ConnectorKind::NinjaOne,
                    sandbox.ninjaone.url(),
                    json!({ "client_id": c.ninjaone.0 }),
                ),
                &credentials(&[("client_secret", &c.ninjaone.1)]),
            )
            .unwrap();
        let created = rmm
            .create_organization("Tailspin Toys", "k1")
            .await
            .unwrap();
        let found = rmm.find_organization("Tailspin Toys").await.unwrap();
        assert_eq!(found, Some(created));

        let company = sandbox.connectwise.seed_company("Tailspin Toys", "Active");
        let psa = factory
            .psa(
                &configured(
                    ConnectorKind::ConnectWise,
                    sandbox.connectwise.url(),
                    json!({
                        "company_id": c.connectwise.company_id,
                        "public_key": c.connectwise.public_key,
                        "client_id": c.connectwise.client_id,
                    }),
                ),
                &credentials(&[("private_key", &c.connectwise.private_key)]),
            )
            .unwrap();
        let read = psa.company(&company.to_string()).await.unwrap().unwrap();
        assert_eq!(read.name, "Tailspin Toys");

        let docs = factory
            .docs(
                &configured(ConnectorKind::ItGlue, sandbox.itglue.url(), json!({})),
                &credentials(&[("api_key", &c.itglue_key)]),
            )
            .unwrap();
        assert_eq!(docs.find_organization("Tailspin Toys").await.unwrap(), None);

        // A wrong credential is the system's refusal, not a panic or a hang.
        let refused = factory
            .rmm(
                &configured(
                    ConnectorKind::NinjaOne,
                    sandbox.ninjaone.url(),
                    json!({ "client_id": c.ninjaone.0 }),
                ),
                &credentials(&[("client_secret", "wrong")]),
            )
            .unwrap();
        let err = refused.find_organization("x").await.unwrap_err();
        assert!(matches!(err, ConnectorError::Auth { .. }), "{err}");
        sandbox.shutdown().await;
    }

    #[test]
    fn a_missing_setting_or_credential_is_named() {
        let factory = VendorFactory {
            clock: Arc::new(gatehouse_core::clock::FakeClock::default()),
        };
        let graph = configured(
            ConnectorKind::Graph,
            "https://graph.example".into(),
            json!({ "client_id": "app" }),
        );
        let err = factory
            .m365(&graph, &credentials(&[("client_secret", "s")]))
            .err()
            .unwrap();
        assert!(err.to_string().contains("partner_tenant_id"), "{err}");
        let ninja = configured(
            ConnectorKind::NinjaOne,
            "https://eu.ninjarmm.example".into(),
            json!({ "client_id": "app" }),
        );
        let err = factory.rmm(&ninja, &credentials(&[])).err().unwrap();
        assert!(err.to_string().contains("client_secret"), "{err}");
        let err = factory
            .psa(&ninja, &credentials(&[("client_secret", "s")]))
            .err()
            .unwrap();
        assert!(err.to_string().contains("not a psa one"), "{err}");
    }

    fn connector(tenant: TenantId, name: &str, kind: ConnectorKind) -> ConnectorConfig {
        ConnectorConfig::new(
            tenant,
            ConnectorName::parse(name).unwrap(),
            ConnectorSpec {
                kind,
                base_url: "https://example.test".into(),
                settings: json!({}),
                secrets: BTreeMap::new(),
            },
            time::OffsetDateTime::UNIX_EPOCH,
        )
        .unwrap()
    }

    #[test]
    fn the_clients_own_connector_wins_then_the_msps() {
        let client = TenantId::generate(time::OffsetDateTime::UNIX_EPOCH);
        let msp = TenantId::generate(time::OffsetDateTime::UNIX_EPOCH);
        let own = vec![connector(client, "m365", ConnectorKind::Graph)];
        let theirs = vec![
            connector(msp, "ninja", ConnectorKind::NinjaOne),
            connector(msp, "partner", ConnectorKind::Graph),
            connector(msp, "cw", ConnectorKind::ConnectWise),
            connector(msp, "halo", ConnectorKind::HaloPsa),
        ];
        let none = Wanted::default();
        assert_eq!(
            choose(&own, &theirs, ConnectorCategory::Graph, &none)
                .unwrap()
                .name
                .as_str(),
            "m365"
        );
        assert_eq!(
            choose(&own, &theirs, ConnectorCategory::Rmm, &none)
                .unwrap()
                .name
                .as_str(),
            "ninja"
        );
        let err = choose(&own, &theirs, ConnectorCategory::Psa, &none).unwrap_err();
        assert!(err.contains("several (cw, halo)"), "{err}");
        let halo = Wanted {
            name: None,
            kind: Some(ConnectorKind::HaloPsa),
        };
        assert_eq!(
            choose(&own, &theirs, ConnectorCategory::Psa, &halo)
                .unwrap()
                .name
                .as_str(),
            "halo"
        );
        let named = Wanted {
            name: Some(ConnectorName::parse("partner").unwrap()),
            kind: None,
        };
        assert_eq!(
            choose(&own, &theirs, ConnectorCategory::Graph, &named)
                .unwrap()
                .tenant_id,
            msp
        );
        assert!(
            choose(&own, &theirs, ConnectorCategory::Rmm, &named).is_err(),
            "a graph connector is not an RMM"
        );
        assert!(
            choose(&own, &theirs, ConnectorCategory::Docs, &none)
                .unwrap_err()
                .contains("neither")
        );
    }

    #[test]
    fn connector_errors_keep_their_retry_after_and_hide_nothing_secret() {
        let retry = action_error(ConnectorError::Retryable {
            system: "ninjaone",
            message: "429".into(),
            retry_after: Some(std::time::Duration::from_secs(30)),
        });
        assert_eq!(
            retry,
            ActionError::Retryable {
                message: "ninjaone: 429".into(),
                retry_after: Some(std::time::Duration::from_secs(30))
            }
        );
        assert!(matches!(
            action_error(ConnectorError::Auth {
                system: "graph",
                status: Some(401),
                message: "401".into()
            }),
            ActionError::Permanent { .. }
        ));
        assert!(matches!(
            action_error(ConnectorError::Rejected {
                system: "hudu",
                status: Some(422),
                message: "bad".into()
            }),
            ActionError::Permanent { .. }
        ));
        let creds = Credentials::new([("client_secret".to_owned(), Secret::new("hunter2"))]);
        assert!(!format!("{creds:?}").contains("hunter2"));
    }
}
