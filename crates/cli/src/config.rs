//! Configuration: built-in defaults, overridden by a TOML file, overridden
//! by `GATEHOUSE_*` environment variables, overridden by flags. The table
//! in `docs/configuration.md` lists every setting.

use std::net::SocketAddr;
use std::num::NonZeroU64;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::CliError;

/// Settings from the command line and environment (clap fills these; `None`
/// means "not given", so the file or the default decides).
#[derive(Debug, Default, Clone, clap::Args)]
pub struct ConfigArgs {
    /// Configuration file [default: DATA_DIR/gatehouse.toml, if it exists].
    #[arg(long, env = "GATEHOUSE_CONFIG", global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,
    /// Directory for the database, the key file and other state.
    #[arg(long, env = "GATEHOUSE_DATA_DIR", global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Database URL: sqlite://PATH or postgres://USER@HOST/DB [default: sqlite://DATA_DIR/gatehouse.db].
    #[arg(
        long,
        env = "GATEHOUSE_DATABASE_URL",
        global = true,
        value_name = "URL",
        hide_env_values = true
    )]
    pub database_url: Option<String>,
    /// Log format: text or json.
    #[arg(
        long,
        env = "GATEHOUSE_LOG_FORMAT",
        global = true,
        value_name = "FORMAT"
    )]
    pub log_format: Option<LogFormat>,
    /// Key-encryption-key provider: local or vault-transit.
    #[arg(
        long,
        env = "GATEHOUSE_KEY_PROVIDER",
        global = true,
        value_name = "PROVIDER"
    )]
    pub key_provider: Option<KeyProviderKind>,
    /// Local key file [default: DATA_DIR/kek.json].
    #[arg(long, env = "GATEHOUSE_KEY_FILE", global = true, value_name = "FILE")]
    pub key_file: Option<PathBuf>,
}

/// How logs are written (to standard error).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "snake_case")]
pub enum LogFormat {
    /// For people.
    #[default]
    Text,
    /// One JSON object a line, for log pipelines.
    Json,
}

/// Where the key-encryption keys live.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, clap::ValueEnum, Default)]
#[serde(rename_all = "kebab-case")]
pub enum KeyProviderKind {
    /// A key file on local disk.
    #[default]
    Local,
    /// HashiCorp Vault's Transit engine.
    VaultTransit,
}

/// The configuration file's keys (all optional).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct FileConfig {
    listen: Option<SocketAddr>,
    data_dir: Option<PathBuf>,
    database_url: Option<String>,
    log_format: Option<LogFormat>,
    log_level: Option<String>,
    max_body_bytes: Option<usize>,
    key_cache_ttl_secs: Option<u64>,
    auto_migrate: Option<bool>,
    node_id: Option<String>,
    lease_secs: Option<u64>,
    key_provider: Option<KeyProviderKind>,
    key_file: Option<PathBuf>,
    vault_addr: Option<String>,
    vault_token: Option<String>,
    vault_mount: Option<String>,
    vault_key: Option<String>,
    vault_namespace: Option<String>,
    vault_ca_cert: Option<PathBuf>,
    notify_webhook_url: Option<String>,
    notify_webhook_secret: Option<String>,
    smtp_host: Option<String>,
    smtp_port: Option<u16>,
    smtp_from: Option<String>,
    notify_default_reviewer: Option<String>,
    audit_key_name: Option<String>,
    audit_checkpoint_entries: Option<u64>,
    audit_checkpoint_secs: Option<u64>,
    msp_tenant: Option<String>,
    connectwise_key_hosts: Option<Vec<String>>,
    hook_replay_window_secs: Option<u64>,
    autotask_poll_secs: Option<u64>,
    revocation_deadline_secs: Option<u64>,
    default_region: Option<String>,
    default_onboarding_owner: Option<String>,
}

/// The settings in force.
#[derive(Clone)]
pub struct Config {
    /// Where `serve` listens.
    pub listen: SocketAddr,
    /// The state directory.
    pub data_dir: PathBuf,
    /// The database.
    pub database_url: String,
    /// Log format.
    pub log_format: LogFormat,
    /// Log filter (`info`, `gatehouse=debug,sqlx=warn`, …).
    pub log_level: String,
    /// Largest accepted request body.
    pub max_body_bytes: usize,
    /// How long unwrapped data keys stay in memory.
    pub key_cache_ttl_secs: u64,
    /// Whether `serve` applies migrations at start-up.
    pub auto_migrate: bool,
    /// This node's name in the engine's leases (distinct per node sharing a
    /// database; stable across restarts).
    pub node_id: String,
    /// How long the engine's claim on a due instance lasts.
    pub lease_secs: u64,
    /// Where the KEKs live.
    pub key_provider: KeyProviderKind,
    /// The local key file.
    pub key_file: PathBuf,
    /// Vault address.
    pub vault_addr: Option<String>,
    /// Vault token (secret).
    pub vault_token: Option<String>,
    /// Vault transit mount.
    pub vault_mount: String,
    /// Vault transit key name.
    pub vault_key: String,
    /// Vault namespace.
    pub vault_namespace: Option<String>,
    /// PEM file of a private CA to trust for Vault's TLS.
    pub vault_ca_cert: Option<PathBuf>,
    /// Where L1 review notifications are posted (secret: may carry a token).
    pub notify_webhook_url: Option<String>,
    /// The key that signs webhook bodies (secret).
    pub notify_webhook_secret: Option<String>,
    /// The SMTP server that relays review e-mails.
    pub smtp_host: Option<String>,
    /// Its port.
    pub smtp_port: u16,
    /// The envelope sender and `From` of review e-mails.
    pub smtp_from: Option<String>,
    /// Who reviews L1 steps that name no `reviewer`.
    pub notify_default_reviewer: Option<String>,
    /// The audit log's signing key name (C2SP note key name, also the
    /// checkpoints' origin), fixed when the key is created.
    pub audit_key_name: String,
    /// The sequencer signs a checkpoint of a log once it grew by this many
    /// entries since its latest one (at least 1).
    pub audit_checkpoint_entries: NonZeroU64,
    /// … or when its latest checkpoint is this many seconds old and it grew
    /// (at least 1).
    pub audit_checkpoint_secs: NonZeroU64,
    /// The slug of the MSP's own tenant, whose connectors serve every
    /// client that has none of its own.
    pub msp_tenant: gatehouse_core::tenant::TenantSlug,
    /// Hosts ConnectWise callback signing keys may be fetched from.
    pub connectwise_key_hosts: Vec<String>,
    /// How far a generic webhook's timestamp may be from now, in seconds.
    pub hook_replay_window_secs: u64,
    /// Seconds between two rounds of the Autotask opportunity poller.
    pub autotask_poll_secs: NonZeroU64,
    /// How long a leaver's revocation may stay incomplete before a human
    /// is told exactly what remains (retries go on).
    pub revocation_deadline_secs: u64,
    /// The region of a new client when the won deal does not say.
    pub default_region: gatehouse_core::tenant::Region,
    /// The onboarding owner when the won deal does not name one.
    pub default_onboarding_owner: Option<gatehouse_core::notify::EmailAddress>,
}

impl std::fmt::Debug for Config {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Config")
            .field("listen", &self.listen)
            .field("data_dir", &self.data_dir)
            .field(
                "database_url",
                &gatehouse_store::redact_url(&self.database_url),
            )
            .field("key_provider", &self.key_provider)
            .field("key_file", &self.key_file)
            .field("vault_addr", &self.vault_addr)
            .field(
                "vault_token",
                &self.vault_token.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "notify_webhook_url",
                &self.notify_webhook_url.as_ref().map(|_| "<redacted>"),
            )
            .field(
                "notify_webhook_secret",
                &self.notify_webhook_secret.as_ref().map(|_| "<redacted>"),
            )
            .field("smtp_host", &self.smtp_host)
            .field("smtp_port", &self.smtp_port)
            .field("smtp_from", &self.smtp_from)
            .field("notify_default_reviewer", &self.notify_default_reviewer)
            .finish_non_exhaustive()
    }
}

fn env(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

fn parse_env<T: std::str::FromStr>(name: &str) -> Result<Option<T>, CliError> {
    match env(name) {
        None => Ok(None),
        Some(text) => text
            .parse()
            .map(Some)
            .map_err(|_| CliError::Config(format!("{name}=`{text}` is not a valid value"))),
    }
}

impl Config {
    /// Resolves the configuration. `listen` is the `serve --listen` flag.
    pub fn load(args: &ConfigArgs, listen: Option<SocketAddr>) -> Result<Self, CliError> {
        let early_data_dir = args
            .data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("gatehouse-data"));
        let file = match &args.config {
            Some(path) => read_file(path)?,
            None => {
                let default = early_data_dir.join("gatehouse.toml");
                if default.exists() {
                    read_file(&default)?
                } else {
                    FileConfig::default()
                }
            }
        };
        let data_dir = args
            .data_dir
            .clone()
            .or(file.data_dir)
            .unwrap_or(early_data_dir);
        let database_url = args
            .database_url
            .clone()
            .or(file.database_url)
            .unwrap_or_else(|| format!("sqlite://{}", data_dir.join("gatehouse.db").display()));
        let listen = match listen {
            Some(addr) => addr,
            None => parse_env("GATEHOUSE_LISTEN")?
                .or(file.listen)
                .unwrap_or(SocketAddr::from(([127, 0, 0, 1], 8080))),
        };
        Ok(Self {
            listen,
            log_format: args.log_format.or(file.log_format).unwrap_or_default(),
            log_level: env("GATEHOUSE_LOG")
                .or(file.log_level)
                .unwrap_or_else(|| "info,sqlx=warn".into()),
            max_body_bytes: parse_env("GATEHOUSE_MAX_BODY_BYTES")?
                .or(file.max_body_bytes)
                .unwrap_or(gatehouse_server::http::DEFAULT_MAX_BODY_BYTES),
            key_cache_ttl_secs: parse_env("GATEHOUSE_KEY_CACHE_TTL_SECS")?
                .or(file.key_cache_ttl_secs)
                .unwrap_or(300),
            auto_migrate: parse_env("GATEHOUSE_AUTO_MIGRATE")?
                .or(file.auto_migrate)
                .unwrap_or(true),
            node_id: match env("GATEHOUSE_NODE_ID").or(file.node_id) {
                Some(node) => check_node_id(node)?,
                None => default_node_id(),
            },
            lease_secs: match parse_env("GATEHOUSE_LEASE_SECS")?.or(file.lease_secs) {
                Some(secs @ 1..=86_400) => secs,
                Some(secs) => {
                    return Err(CliError::Config(format!(
                        "lease_secs must be 1 to 86400 seconds (a day), not {secs}"
                    )));
                }
                None => 300,
            },
            key_provider: args.key_provider.or(file.key_provider).unwrap_or_default(),
            key_file: args
                .key_file
                .clone()
                .or(file.key_file)
                .unwrap_or_else(|| data_dir.join("kek.json")),
            vault_addr: env("GATEHOUSE_VAULT_ADDR").or(file.vault_addr),
            vault_token: env("GATEHOUSE_VAULT_TOKEN").or(file.vault_token),
            vault_mount: env("GATEHOUSE_VAULT_MOUNT")
                .or(file.vault_mount)
                .unwrap_or_else(|| "transit".into()),
            vault_key: env("GATEHOUSE_VAULT_KEY")
                .or(file.vault_key)
                .unwrap_or_else(|| "gatehouse".into()),
            vault_namespace: env("GATEHOUSE_VAULT_NAMESPACE").or(file.vault_namespace),
            vault_ca_cert: env("GATEHOUSE_VAULT_CA_CERT")
                .map(PathBuf::from)
                .or(file.vault_ca_cert),
            notify_webhook_url: env("GATEHOUSE_NOTIFY_WEBHOOK_URL").or(file.notify_webhook_url),
            notify_webhook_secret: env("GATEHOUSE_NOTIFY_WEBHOOK_SECRET")
                .or(file.notify_webhook_secret),
            smtp_host: env("GATEHOUSE_SMTP_HOST").or(file.smtp_host),
            smtp_port: parse_env("GATEHOUSE_SMTP_PORT")?
                .or(file.smtp_port)
                .unwrap_or(25),
            smtp_from: env("GATEHOUSE_SMTP_FROM").or(file.smtp_from),
            notify_default_reviewer: env("GATEHOUSE_NOTIFY_DEFAULT_REVIEWER")
                .or(file.notify_default_reviewer),
            audit_key_name: env("GATEHOUSE_AUDIT_KEY_NAME")
                .or(file.audit_key_name)
                .unwrap_or_else(|| "gatehouse.local/audit".into()),
            audit_checkpoint_entries: at_least_one(
                "audit_checkpoint_entries",
                parse_env("GATEHOUSE_AUDIT_CHECKPOINT_ENTRIES")?
                    .or(file.audit_checkpoint_entries)
                    .unwrap_or(1000),
            )?,
            audit_checkpoint_secs: at_least_one(
                "audit_checkpoint_secs",
                parse_env("GATEHOUSE_AUDIT_CHECKPOINT_SECS")?
                    .or(file.audit_checkpoint_secs)
                    .unwrap_or(60),
            )?,
            msp_tenant: {
                let slug = env("GATEHOUSE_MSP_TENANT")
                    .or(file.msp_tenant)
                    .unwrap_or_else(|| gatehouse_server::actions::DEFAULT_MSP_TENANT.into());
                gatehouse_core::tenant::TenantSlug::parse(&slug)
                    .map_err(|e| CliError::Config(format!("msp_tenant `{slug}`: {e}")))?
            },
            connectwise_key_hosts: env("GATEHOUSE_CONNECTWISE_KEY_HOSTS")
                .map(|list| list.split(',').map(|h| h.trim().to_owned()).collect())
                .or(file.connectwise_key_hosts)
                .unwrap_or_else(|| {
                    gatehouse_connectors::webhook::DEFAULT_CONNECTWISE_KEY_HOSTS
                        .iter()
                        .map(|h| (*h).to_owned())
                        .collect()
                }),
            hook_replay_window_secs: match parse_env("GATEHOUSE_HOOK_REPLAY_WINDOW_SECS")?
                .or(file.hook_replay_window_secs)
            {
                Some(secs @ 1..=3600) => secs,
                Some(secs) => {
                    return Err(CliError::Config(format!(
                        "hook_replay_window_secs must be 1 to 3600 seconds, not {secs}"
                    )));
                }
                None => 300,
            },
            autotask_poll_secs: at_least_one(
                "autotask_poll_secs",
                parse_env("GATEHOUSE_AUTOTASK_POLL_SECS")?
                    .or(file.autotask_poll_secs)
                    .unwrap_or(300),
            )?,
            revocation_deadline_secs: at_least_one(
                "revocation_deadline_secs",
                parse_env("GATEHOUSE_REVOCATION_DEADLINE_SECS")?
                    .or(file.revocation_deadline_secs)
                    .unwrap_or(900),
            )?
            .get(),
            default_region: {
                let text = env("GATEHOUSE_DEFAULT_REGION")
                    .or(file.default_region)
                    .unwrap_or_else(|| "eu".into());
                gatehouse_core::tenant::Region::parse(&text)
                    .map_err(|e| CliError::Config(format!("default_region `{text}`: {e}")))?
            },
            default_onboarding_owner: env("GATEHOUSE_DEFAULT_ONBOARDING_OWNER")
                .or(file.default_onboarding_owner)
                .map(|text| {
                    gatehouse_core::notify::EmailAddress::parse(&text)
                        .map_err(|e| CliError::Config(format!("default_onboarding_owner: {e}")))
                })
                .transpose()?,
            data_dir,
            database_url,
        })
    }
}

/// A setting that must be at least 1.
fn at_least_one(name: &str, value: u64) -> Result<NonZeroU64, CliError> {
    NonZeroU64::new(value).ok_or_else(|| CliError::Config(format!("{name} must be at least 1")))
}

/// A node id: 1 to 128 printable ASCII characters without spaces.
fn check_node_id(node: String) -> Result<String, CliError> {
    if node.is_empty() || node.len() > 128 || !node.bytes().all(|b| b.is_ascii_graphic()) {
        return Err(CliError::Config(format!(
            "node_id `{node}` must be 1 to 128 printable ASCII characters without spaces"
        )));
    }
    Ok(node)
}

/// The host's name (stable across restarts, distinct between machines), or
/// `gatehouse` where it cannot be read.
fn default_node_id() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .ok()
        .map(|name| name.trim().to_owned())
        .and_then(|name| check_node_id(name).ok())
        .unwrap_or_else(|| "gatehouse".to_owned())
}

fn read_file(path: &Path) -> Result<FileConfig, CliError> {
    let text = std::fs::read_to_string(path)
        .map_err(|e| CliError::Config(format!("cannot read {}: {e}", path.display())))?;
    toml::from_str(&text).map_err(|e| CliError::Config(format!("{}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_beat_the_file_and_the_file_beats_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("g.toml");
        std::fs::write(&file, "database_url = \"sqlite://from-file.db\"\nkey_cache_ttl_secs = 7\nlog_format = \"json\"\n").unwrap();
        let mut args = ConfigArgs {
            config: Some(file.clone()),
            data_dir: Some(dir.path().into()),
            ..Default::default()
        };
        let config = Config::load(&args, None).unwrap();
        assert_eq!(config.database_url, "sqlite://from-file.db");
        assert_eq!(config.key_cache_ttl_secs, 7);
        assert_eq!(config.log_format, LogFormat::Json);
        assert_eq!(config.key_file, dir.path().join("kek.json"));
        assert_eq!(config.listen.to_string(), "127.0.0.1:8080");
        assert_eq!(config.audit_checkpoint_entries.get(), 1000);
        assert_eq!(config.audit_checkpoint_secs.get(), 60);

        args.database_url = Some("postgres://flag@h/db".into());
        args.log_format = Some(LogFormat::Text);
        let config = Config::load(&args, Some("0.0.0.0:9000".parse().unwrap())).unwrap();
        assert_eq!(config.database_url, "postgres://flag@h/db");
        assert_eq!(config.log_format, LogFormat::Text);
        assert_eq!(config.listen.to_string(), "0.0.0.0:9000");
    }

    #[test]
    fn checkpoint_intervals_are_at_least_one() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("g.toml");
        std::fs::write(
            &file,
            "audit_checkpoint_entries = 5\naudit_checkpoint_secs = 0\n",
        )
        .unwrap();
        let args = ConfigArgs {
            config: Some(file.clone()),
            data_dir: Some(dir.path().into()),
            ..Default::default()
        };
        let err = Config::load(&args, None).err().unwrap().to_string();
        assert!(
            err.contains("audit_checkpoint_secs must be at least 1"),
            "{err}"
        );
        std::fs::write(
            &file,
            "audit_checkpoint_entries = 5\naudit_checkpoint_secs = 7\n",
        )
        .unwrap();
        let config = Config::load(&args, None).unwrap();
        assert_eq!(config.audit_checkpoint_entries.get(), 5);
        assert_eq!(config.audit_checkpoint_secs.get(), 7);
    }

    #[test]
    fn unknown_keys_in_the_file_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("g.toml");
        std::fs::write(&file, "databse_url = \"typo\"\n").unwrap();
        let args = ConfigArgs {
            config: Some(file),
            ..Default::default()
        };
        let err = Config::load(&args, None).err().unwrap().to_string();
        assert!(err.contains("databse_url"), "{err}");
    }

    #[test]
    fn the_default_database_lives_in_the_data_dir() {
        let args = ConfigArgs {
            data_dir: Some("/tmp/gh-nowhere-x".into()),
            ..Default::default()
        };
        let config = Config::load(&args, None).unwrap();
        assert_eq!(
            config.database_url,
            "sqlite:///tmp/gh-nowhere-x/gatehouse.db"
        );
        assert!(!format!("{config:?}").contains("token\": Some(\""));
    }

    #[test]
    fn intake_settings_have_defaults_and_are_checked() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("g.toml");
        let args = ConfigArgs {
            config: Some(file.clone()),
            data_dir: Some(dir.path().into()),
            ..Default::default()
        };
        std::fs::write(&file, "").unwrap();
        let config = Config::load(&args, None).unwrap();
        assert!(
            config
                .connectwise_key_hosts
                .contains(&"api-na.myconnectwise.net".to_owned())
        );
        assert_eq!(config.hook_replay_window_secs, 300);
        assert_eq!(config.autotask_poll_secs.get(), 300);
        assert_eq!(config.revocation_deadline_secs, 900);
        assert_eq!(config.default_region.as_str(), "eu");
        assert_eq!(config.default_onboarding_owner, None);

        std::fs::write(
            &file,
            "connectwise_key_hosts = [\"cw.example.net\"]\nhook_replay_window_secs = 60\nautotask_poll_secs = 30\ndefault_region = \"us\"\ndefault_onboarding_owner = \"lead@msp.example\"\n",
        )
        .unwrap();
        let config = Config::load(&args, None).unwrap();
        assert_eq!(
            config.connectwise_key_hosts,
            vec!["cw.example.net".to_owned()]
        );
        assert_eq!(config.hook_replay_window_secs, 60);
        assert_eq!(config.autotask_poll_secs.get(), 30);
        assert_eq!(config.default_region.as_str(), "us");
        assert_eq!(
            config
                .default_onboarding_owner
                .map(|e| e.as_str().to_owned())
                .as_deref(),
            Some("lead@msp.example")
        );

        for bad in [
            "default_region = \"Europe\"\n",
            "hook_replay_window_secs = 0\n",
            "autotask_poll_secs = 0\n",
            "default_onboarding_owner = \"nobody\"\n",
        ] {
            std::fs::write(&file, bad).unwrap();
            assert!(Config::load(&args, None).is_err(), "{bad}");
        }
    }
}
