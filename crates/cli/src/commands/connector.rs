//! `gatehouse connector list|set|remove`: a tenant's connector directory.

use std::collections::BTreeMap;
use std::process::ExitCode;

use gatehouse_core::connector::{ConnectorKind, ConnectorName, ConnectorSpec};
use gatehouse_core::secret::SecretName;
use gatehouse_server::app::TenantRef;
use serde_json::Value;

use super::{CLI, open, print_json, print_table};
use crate::CliError;
use crate::config::ConfigArgs;

/// Connector subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ConnectorCommand {
    /// List a tenant's connectors.
    List {
        /// Tenant id or slug (the MSP's own tenant is `msp` by default).
        tenant: String,
        /// Print JSON instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Create or replace a tenant's connector. Credentials are not given
    /// here: store them with `gatehouse tenant secret set` and name them
    /// with `--secret ROLE=SECRET_NAME`.
    Set {
        /// Tenant id or slug.
        tenant: String,
        /// The connector's name within the tenant (`rmm`, `ninjaone`, …).
        name: String,
        /// connectwise, autotask, halopsa, ninjaone, dattormm, graph, itglue, hudu or scim.
        #[arg(long)]
        kind: String,
        /// Where its API is (https).
        #[arg(long)]
        base_url: String,
        /// A non-secret setting, `KEY=VALUE` (repeatable): company id,
        /// client id, region, customer tenant id, domain…
        #[arg(long = "setting", value_name = "KEY=VALUE")]
        settings: Vec<String>,
        /// A credential by the name of the tenant secret holding it,
        /// `ROLE=SECRET_NAME` (repeatable), such as `client_secret=ninjaone.client-secret`.
        #[arg(long = "secret", value_name = "ROLE=SECRET_NAME")]
        secrets: Vec<String>,
    },
    /// Remove a tenant's connector.
    Remove {
        /// Tenant id or slug.
        tenant: String,
        /// The connector's name.
        name: String,
    },
}

fn pair<'a>(text: &'a str, what: &str) -> Result<(&'a str, &'a str), CliError> {
    text.split_once('=')
        .filter(|(k, _)| !k.trim().is_empty())
        .ok_or_else(|| CliError::Usage(format!("{what} `{text}` must be KEY=VALUE")))
}

/// Runs a connector subcommand.
pub async fn run(args: &ConfigArgs, command: ConnectorCommand) -> Result<ExitCode, CliError> {
    let (_, app) = open(args).await?;
    match command {
        ConnectorCommand::List { tenant, json } => {
            let items = app
                .list_connectors(&CLI, &TenantRef::parse(&tenant))
                .await?;
            if json {
                print_json(&items)?;
            } else {
                let rows: Vec<Vec<String>> = items
                    .iter()
                    .map(|c| {
                        let secrets: Vec<String> = c
                            .secrets
                            .iter()
                            .map(|(role, name)| format!("{role}={name}"))
                            .collect();
                        vec![
                            c.name.to_string(),
                            c.kind.to_string(),
                            c.base_url.clone(),
                            c.settings.to_string(),
                            secrets.join(","),
                            c.version.to_string(),
                        ]
                    })
                    .collect();
                print_table(
                    &["NAME", "KIND", "BASE URL", "SETTINGS", "SECRETS", "VERSION"],
                    &rows,
                );
            }
        }
        ConnectorCommand::Set {
            tenant,
            name,
            kind,
            base_url,
            settings,
            secrets,
        } => {
            let name = ConnectorName::parse(&name)?;
            let kind: ConnectorKind = kind.parse()?;
            let mut object = serde_json::Map::new();
            for setting in &settings {
                let (key, value) = pair(setting, "--setting")?;
                object.insert(key.trim().to_owned(), Value::String(value.to_owned()));
            }
            let mut named = BTreeMap::new();
            for secret in &secrets {
                let (role, secret) = pair(secret, "--secret")?;
                named.insert(role.trim().to_owned(), SecretName::parse(secret.trim())?);
            }
            let spec = ConnectorSpec {
                kind,
                base_url,
                settings: Value::Object(object),
                secrets: named,
            };
            let (connector, created) = app
                .set_connector(&CLI, &TenantRef::parse(&tenant), &name, spec)
                .await?;
            println!(
                "{} connector {} ({}, version {})",
                if created { "created" } else { "updated" },
                connector.name,
                connector.kind,
                connector.version
            );
        }
        ConnectorCommand::Remove { tenant, name } => {
            let name = ConnectorName::parse(&name)?;
            app.remove_connector(&CLI, &TenantRef::parse(&tenant), &name)
                .await?;
            println!("removed connector {name}");
        }
    }
    Ok(ExitCode::SUCCESS)
}
