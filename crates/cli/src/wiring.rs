//! Turning configuration into running parts: logging, the store, the key
//! provider, the keyring and the services.

use std::sync::Arc;
use std::time::Duration;

use gatehouse_core::clock::{Clock, SystemClock};
use gatehouse_core::store::Store;
use gatehouse_engine::action::{Action, ActionRegistry, Noop};
use gatehouse_engine::http_action::{self, HttpPost};
use gatehouse_engine::runtime::{Engine, EngineConfig};
use gatehouse_engine::template::{TemplateSet, builtin_actions};
use gatehouse_server::App;
use gatehouse_server::audit::{CheckpointPolicy, Sequencer};
use gatehouse_server::identity::{IdentityConfig, IdentityCore};
use gatehouse_server::kb::KbService;
use gatehouse_server::kb_action::{self, KbPublish};
use gatehouse_server::onboarding::AppSlot;
use gatehouse_vault::{KeyProvider, Keyring, LocalKeyFile, VaultTransit, VaultTransitConfig};

use crate::CliError;
use crate::config::{Config, KeyProviderKind, LogFormat};

/// Sends logs to standard error, as text or JSON.
pub fn init_logging(config: &Config) -> Result<(), CliError> {
    let filter = tracing_subscriber::EnvFilter::try_new(&config.log_level)
        .map_err(|e| CliError::Config(format!("log filter `{}`: {e}", config.log_level)))?;
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()));
    // A second initialisation in one process (tests) keeps the first.
    let _ = match config.log_format {
        LogFormat::Text => builder.try_init(),
        LogFormat::Json => builder.json().flatten_event(true).try_init(),
    };
    Ok(())
}

/// Whether the store may be migrated by this command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Schema {
    /// Apply pending migrations (serve, migrate).
    Migrate,
    /// Refuse to run on an out-of-date schema (every other command).
    RequireCurrent,
}

/// Opens the store named by the configuration.
pub async fn open_store(config: &Config, schema: Schema) -> Result<Arc<dyn Store>, CliError> {
    let store = gatehouse_store::connect(&config.database_url).await?;
    match schema {
        Schema::Migrate => store.migrate().await?,
        Schema::RequireCurrent => {
            let status = store.schema_status().await?;
            if !status.is_current() {
                return Err(CliError::Usage(format!(
                    "the database schema is out of date ({} of {} migrations applied); run `gatehouse migrate` first",
                    status.applied, status.known
                )));
            }
        }
    }
    Ok(store)
}

/// The key provider named by the configuration, and whether it was just
/// created (a new local key file).
pub async fn open_key_provider(config: &Config) -> Result<(Arc<dyn KeyProvider>, bool), CliError> {
    match config.key_provider {
        KeyProviderKind::Local => {
            let (provider, created) = LocalKeyFile::open_or_create(&config.key_file)?;
            if created {
                tracing::warn!(
                    path = %config.key_file.display(),
                    "created a new key file: back it up; without it no tenant data can be read"
                );
            }
            Ok((Arc::new(provider), created))
        }
        KeyProviderKind::VaultTransit => {
            let (Some(addr), Some(token)) = (config.vault_addr.clone(), config.vault_token.clone())
            else {
                return Err(CliError::Config(
                    "the vault-transit key provider needs GATEHOUSE_VAULT_ADDR and GATEHOUSE_VAULT_TOKEN".into(),
                ));
            };
            let provider = VaultTransit::new(VaultTransitConfig {
                addr,
                token,
                mount: config.vault_mount.clone(),
                key: config.vault_key.clone(),
                namespace: config.vault_namespace.clone(),
                ca_cert_pem: match &config.vault_ca_cert {
                    Some(path) => Some(std::fs::read(path).map_err(|e| {
                        CliError::Config(format!("vault_ca_cert {}: {e}", path.display()))
                    })?),
                    None => None,
                },
            })?;
            provider.ensure_key().await?;
            Ok((Arc::new(provider), false))
        }
    }
}

/// The workflow engine over `store`, with the built-in templates and those
/// in `<data_dir>/templates`. Its worker is not started here: `serve` runs
/// it; other commands only call it.
pub fn open_engine(
    config: &Config,
    store: Arc<dyn Store>,
    clock: Arc<dyn Clock>,
    keyring: &Arc<Keyring>,
    onboarding: &AppSlot,
    extra_actions: Vec<(&'static str, Arc<dyn Action>)>,
) -> Result<Arc<Engine>, CliError> {
    // Templates may name every built-in action; those without an
    // implementation yet fail when a step runs, and park the instance.
    let catalog = builtin_actions();
    let templates = TemplateSet::load(&config.data_dir, &catalog)
        .map_err(|e| CliError::Config(format!("workflow templates: {e}")))?;
    let mut actions = ActionRegistry::new();
    actions.register("sandbox.noop", Arc::new(Noop));
    let http_post = HttpPost::new(clock.clone()).map_err(|e| CliError::Config(e.to_string()))?;
    actions.register(http_action::NAME, Arc::new(http_post));
    // The connector-backed actions (psa.…, rmm.…, graph.…, docs.…).
    let directory = gatehouse_server::actions::Directory::new(
        store.clone(),
        keyring.clone(),
        clock.clone(),
        Arc::new(gatehouse_server::actions::VendorFactory {
            clock: clock.clone(),
        }),
        config.msp_tenant.clone(),
    );
    gatehouse_server::actions::register(&mut actions, Arc::new(directory));
    // The onboarding's Gatehouse-side actions need the App, which needs
    // this engine: they get an empty slot that `open_app` fills.
    gatehouse_server::onboarding::register_actions(&mut actions, onboarding);
    for (name, action) in extra_actions {
        actions.register(name, action);
    }
    Ok(Arc::new(Engine::new(
        store,
        Arc::new(templates),
        Arc::new(actions),
        clock,
        EngineConfig {
            node: config.node_id.clone(),
            lease: Duration::from_secs(config.lease_secs),
            ..EngineConfig::default()
        },
    )))
}

/// The services over an open store.
pub async fn open_app(config: &Config, store: Arc<dyn Store>) -> Result<(App, bool), CliError> {
    // The authorization policies are checked before anything else: a
    // policy that does not fit its schema stops the start.
    gatehouse_server::authz::policies().map_err(|e| CliError::Config(e.to_string()))?;
    let (provider, created) = open_key_provider(config).await?;
    let keyring = Arc::new(
        Keyring::new(
            provider,
            store.clone(),
            Duration::from_secs(config.key_cache_ttl_secs),
        )
        .with_audit_keys(store.clone())
        .with_totp_secrets(store.clone()),
    );
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    // One knowledge base (one set of search indexes) for the API and the
    // `kb.publish` action.
    let kb = Arc::new(KbService::new(
        store.clone(),
        keyring.clone(),
        clock.clone(),
    ));
    let kb_publish: Arc<dyn Action> =
        Arc::new(KbPublish::new(kb.clone(), store.clone(), clock.clone()));
    let onboarding = AppSlot::new();
    // One identity core for the API and the engine's identity actions.
    let identity = Arc::new(IdentityCore::new(
        store.clone(),
        keyring.clone(),
        clock.clone(),
        Arc::new(gatehouse_server::actions::Directory::new(
            store.clone(),
            keyring.clone(),
            clock.clone(),
            Arc::new(gatehouse_server::actions::VendorFactory {
                clock: clock.clone(),
            }),
            config.msp_tenant.clone(),
        )),
        IdentityConfig {
            revocation_deadline: Duration::from_secs(config.revocation_deadline_secs),
        },
    ));
    let mut extra = vec![(kb_action::NAME, kb_publish)];
    extra.extend(gatehouse_server::identity::actions::all(&identity));
    let engine = open_engine(
        config,
        store.clone(),
        clock.clone(),
        &keyring,
        &onboarding,
        extra,
    )?;
    let signer = open_audit_signer(config, &keyring, store.as_ref(), clock.as_ref()).await?;
    let mut app = App::new(store, keyring, clock, engine)
        .with_audit_signer(signer)
        .with_identity(identity);
    app.kb = kb;
    onboarding.set(app.clone());
    Ok((app, created))
}

/// The audit sequencer of `app`'s store: seals with its keyring, signs
/// checkpoints with its audit signer as configured.
pub fn open_sequencer(config: &Config, app: &App) -> Result<Sequencer, CliError> {
    let signer = app
        .audit_signer
        .clone()
        .ok_or_else(|| CliError::Config("the audit log's signing key is not loaded".into()))?;
    Ok(
        Sequencer::new(app.store.clone(), app.keyring.clone()).with_checkpoints(
            signer,
            app.clock.clone(),
            CheckpointPolicy {
                entries: config.audit_checkpoint_entries,
                every_secs: config.audit_checkpoint_secs,
            },
        ),
    )
}

/// The audit log's signing key: unwrapped, or created on first start.
async fn open_audit_signer(
    config: &Config,
    keyring: &Keyring,
    store: &dyn Store,
    clock: &dyn Clock,
) -> Result<Arc<gatehouse_vault::AuditSigner>, CliError> {
    let name = gatehouse_audit::KeyName::parse(&config.audit_key_name)
        .map_err(|e| CliError::Config(format!("audit_key_name: {e}")))?;
    let signer =
        gatehouse_vault::AuditSigner::open(keyring.provider().as_ref(), store, name, clock).await?;
    Ok(Arc::new(signer))
}
