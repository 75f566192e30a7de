//! `gatehouse scim token create|list|revoke --tenant SLUG`: a tenant's SCIM
//! bearer tokens at the command line. The secret is printed once.

use std::process::ExitCode;

use gatehouse_core::scim::ScimToken;
use gatehouse_server::app::TenantRef;
use serde_json::{Value, json};

use super::{CLI, open, print_json, print_table};
use crate::CliError;
use crate::config::ConfigArgs;

/// SCIM subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ScimCommand {
    /// Manage a tenant's SCIM bearer tokens.
    #[command(subcommand)]
    Token(TokenCommand),
}

/// SCIM token subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum TokenCommand {
    /// Create a token; its secret is printed once and never again.
    Create {
        /// Tenant id or slug.
        #[arg(long)]
        tenant: String,
        /// What the token is for (e.g. `entra-provisioning`).
        #[arg(long, default_value = "")]
        label: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List a tenant's tokens (never their secrets).
    List {
        /// Tenant id or slug.
        #[arg(long)]
        tenant: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Revoke a token.
    Revoke {
        /// Tenant id or slug.
        #[arg(long)]
        tenant: String,
        /// The token's id (`scimtok_…`).
        id: String,
    },
}

fn rfc3339(at: time::OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_else(|_| at.to_string())
}

fn token_json(token: &ScimToken) -> Value {
    json!({
        "id": token.id,
        "tenant_id": token.tenant_id.to_string(),
        "label": token.label,
        "created_by": token.created_by,
        "created_at": rfc3339(token.created_at),
        "revoked_at": token.revoked_at.map(rfc3339),
    })
}

/// Runs a SCIM subcommand.
pub async fn run(args: &ConfigArgs, command: ScimCommand) -> Result<ExitCode, CliError> {
    let (_, app) = open(args).await?;
    let ScimCommand::Token(command) = command;
    match command {
        TokenCommand::Create {
            tenant,
            label,
            json,
        } => {
            let issued = app
                .create_scim_token(&CLI, &TenantRef::parse(&tenant), &label)
                .await?;
            if json {
                let mut doc = token_json(&issued.token);
                doc["secret"] = json!(issued.secret.as_str());
                print_json(&doc)?;
            } else {
                println!("token {} created for tenant {tenant}", issued.token.id);
                println!(
                    "secret (shown once, store it now): {}",
                    issued.secret.as_str()
                );
            }
        }
        TokenCommand::List { tenant, json } => {
            let tokens = app.scim_tokens(&CLI, &TenantRef::parse(&tenant)).await?;
            if json {
                print_json(&tokens.iter().map(token_json).collect::<Vec<_>>())?;
            } else {
                let rows: Vec<Vec<String>> = tokens
                    .iter()
                    .map(|t| {
                        vec![
                            t.id.clone(),
                            t.label.clone(),
                            rfc3339(t.created_at),
                            t.revoked_at.map_or_else(|| "live".to_owned(), rfc3339),
                        ]
                    })
                    .collect();
                print_table(&["ID", "LABEL", "CREATED", "REVOKED"], &rows);
            }
        }
        TokenCommand::Revoke { tenant, id } => {
            app.revoke_scim_token(&CLI, &TenantRef::parse(&tenant), &id)
                .await?;
            println!("token {id} revoked");
        }
    }
    Ok(ExitCode::SUCCESS)
}
