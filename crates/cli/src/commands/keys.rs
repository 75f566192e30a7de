//! `gatehouse keys …`.

use std::collections::BTreeMap;
use std::io::Write;
use std::process::ExitCode;

use super::{CLI, open};
use crate::CliError;
use crate::config::ConfigArgs;

/// Key subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Create a new key-encryption key and rewrap every tenant's data key
    /// under it. No tenant data is re-encrypted. Safe to re-run.
    Rotate {
        /// Afterwards, remove old KEK versions that no data key uses.
        #[arg(long)]
        retire: bool,
    },
    /// Show the active KEK and how many data keys each KEK wraps.
    Status,
}

/// Runs a keys subcommand.
pub async fn run(args: &ConfigArgs, command: KeysCommand) -> Result<ExitCode, CliError> {
    let (_, app) = open(args).await?;
    match command {
        KeysCommand::Rotate { retire } => {
            let mut progress = |p: gatehouse_vault::RotationProgress| {
                eprint!(
                    "\rrewrapping data keys: {} seen, {} rewrapped",
                    p.seen, p.rewrapped
                );
                let _ = std::io::stderr().flush();
            };
            let report = app.rotate_keys(&CLI, retire, &mut progress).await?;
            eprintln!();
            println!(
                "active KEK: {}; rewrapped {} data keys ({} already current, {} deleted meanwhile)",
                report.active_kek, report.rewrapped, report.already_current, report.vanished
            );
            println!(
                "rewrapped {} audit signing keys and {} operators' TOTP secrets",
                report.audit_keys_rewrapped, report.totp_secrets_rewrapped
            );
            if retire {
                if report.retired.is_empty() {
                    println!("no KEK versions to retire");
                } else {
                    println!("retired: {}", report.retired.join(", "));
                }
            }
        }
        KeysCommand::Status => {
            let provider = app.keyring.provider();
            println!(
                "provider: {}; active KEK: {}",
                provider.kind(),
                provider.active_kek().await?
            );
            let mut by_kek: BTreeMap<String, u64> = BTreeMap::new();
            let mut after = None;
            loop {
                let page = app.store.list_tenant_keys(after, 1000).await?;
                let Some(last) = page.last() else { break };
                after = Some(last.tenant_id);
                for key in page {
                    *by_kek.entry(key.wrapped.kek_id).or_default() += 1;
                }
            }
            for (kek, count) in by_kek {
                println!("  {kek}: {count} data keys");
            }
            for key in app.store.list_audit_keys().await? {
                let state = if key.retired_at.is_some() {
                    "retired"
                } else {
                    "active"
                };
                println!(
                    "  {}: audit signing key {} ({state})",
                    key.wrapped.kek_id, key.name
                );
            }
        }
    }
    app.store.close().await;
    Ok(ExitCode::SUCCESS)
}
