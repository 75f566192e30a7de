//! The subcommands.

pub mod audit;
pub mod audit_export;
pub mod connector;
pub mod hooks;
pub mod kb;
pub mod keys;
pub mod onboarding;
pub mod operator;
pub mod people;
pub mod sandbox;
pub mod scim;
pub mod serve;
pub mod tenant;
pub mod tenant_group;
pub mod workflows;

use std::process::ExitCode;

use gatehouse_server::{Actor, App};

use crate::CliError;
use crate::config::{Config, ConfigArgs};
use crate::wiring::{self, Schema};

/// The actor of CLI commands: whoever can run them holds the database and
/// the key file, so they act as the system, not as an operator.
pub const CLI: Actor = Actor::System("local cli");

/// Loads configuration and logging, and opens the services for a command
/// that needs a current schema.
pub async fn open(args: &ConfigArgs) -> Result<(Config, App), CliError> {
    let config = Config::load(args, None)?;
    wiring::init_logging(&config)?;
    let store = wiring::open_store(&config, Schema::RequireCurrent).await?;
    let (app, _) = wiring::open_app(&config, store).await?;
    Ok((config, app))
}

/// `gatehouse migrate`.
pub async fn migrate(args: &ConfigArgs) -> Result<ExitCode, CliError> {
    let config = Config::load(args, None)?;
    wiring::init_logging(&config)?;
    let store = wiring::open_store(&config, Schema::Migrate).await?;
    let status = store.schema_status().await?;
    println!(
        "{} schema is current: {} of {} migrations applied ({})",
        store.backend().as_str(),
        status.applied,
        status.known,
        gatehouse_store::redact_url(&config.database_url)
    );
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

/// Prints `value` as pretty JSON.
pub fn print_json<T: serde::Serialize>(value: &T) -> Result<(), CliError> {
    let text = serde_json::to_string_pretty(value).map_err(|e| CliError::Usage(e.to_string()))?;
    println!("{text}");
    Ok(())
}

/// Prints rows as an aligned table.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.len()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let line = |cells: Vec<String>| {
        cells
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{c:<width$}", width = widths.get(i).copied().unwrap_or(0)))
            .collect::<Vec<_>>()
            .join("  ")
            .trim_end()
            .to_owned()
    };
    println!("{}", line(header.iter().map(|h| h.to_string()).collect()));
    for row in rows {
        println!("{}", line(row.clone()));
    }
}
