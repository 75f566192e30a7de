//! `gatehouse audit …`: the audit log.

use std::process::ExitCode;

use gatehouse_server::App;
use gatehouse_server::app::Issued;

use super::{CLI, open};
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
    /// Sign a checkpoint of a log at its current size now (or reuse its
    /// latest one if nothing was appended since) and print the signed note,
    /// the file `audit verify --checkpoint` takes.
    Checkpoint {
        /// The log: `system`, a tenant id or a tenant slug.
        log: String,
    },
}

/// Runs an audit subcommand.
pub async fn run(args: &ConfigArgs, command: AuditCommand) -> Result<ExitCode, CliError> {
    let (config, app) = open(args).await?;
    match command {
        AuditCommand::PublicKey { json } => {
            let key = app.audit_public_key()?;
            if json {
                super::print_json(&key)?;
            } else {
                println!("{}", key.verifier_key);
            }
        }
        AuditCommand::Export(export) => super::audit_export::run(&config, &app, export).await?,
        AuditCommand::Checkpoint { log } => checkpoint(&app, &log).await?,
    }
    app.store.close().await;
    Ok(ExitCode::SUCCESS)
}

/// `gatehouse audit checkpoint LOG`: the note on standard output (so it can
/// be redirected to a file), what was done on standard error.
async fn checkpoint(app: &App, log: &str) -> Result<(), CliError> {
    let issued = app.issue_checkpoint(&CLI, log).await?;
    let what = match issued {
        Issued::New(_) => "signed a new checkpoint",
        Issued::Latest(_) => "nothing appended since the latest checkpoint; reusing it",
    };
    let checkpoint = issued.into_checkpoint();
    eprintln!("{what}: log {}, size {}", checkpoint.log, checkpoint.size);
    print!("{}", checkpoint.note);
    Ok(())
}
