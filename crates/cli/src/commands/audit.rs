//! `gatehouse audit …`: the audit log.

use std::process::ExitCode;

use super::open;
use crate::CliError;
use crate::config::ConfigArgs;

/// Audit log subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Print the C2SP verifier key auditors check checkpoints with
    /// (`<name>+<key ID>+<base64>`); creates the signing key on first use.
    PublicKey {
        /// Print the JSON served at /api/v1/audit/public-key instead.
        #[arg(long)]
        json: bool,
    },
    /// Export a tenant's audit facts (OSCAL assessment results).
    Export(super::audit_export::ExportArgs),
}

/// Runs an audit subcommand.
pub async fn run(args: &ConfigArgs, command: AuditCommand) -> Result<ExitCode, CliError> {
    let (_, app) = open(args).await?;
    match command {
        AuditCommand::PublicKey { json } => {
            let key = app.audit_public_key()?;
            if json {
                super::print_json(&key)?;
            } else {
                println!("{}", key.verifier_key);
            }
        }
        AuditCommand::Export(export) => super::audit_export::run(&app, export).await?,
    }
    app.store.close().await;
    Ok(ExitCode::SUCCESS)
}
