//! `gatehouse`: the control plane for managed service providers.
//!
//! Every command reads the same configuration (see `docs/configuration.md`)
//! and works on the same database and keys as a running server, through the
//! same services and rules as the HTTP API.

#![allow(
    clippy::print_stdout,
    reason = "a command-line tool prints its results on standard output"
)]

mod bench;
mod bench_audit;
mod bench_engine;
mod bench_onboarding;
mod bench_revocation;
mod bench_scim;
mod commands;
mod config;
mod demo;
mod notify;
mod wiring;

use std::process::ExitCode;

use clap::{Parser, Subcommand};

use crate::config::ConfigArgs;

/// Gatehouse: onboard clients, keep access right, administer many tenants, prove it.
#[derive(Debug, Parser)]
#[command(name = "gatehouse", version, about, propagate_version = true)]
struct Cli {
    #[command(flatten)]
    config: ConfigArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    Serve(commands::serve::ServeArgs),
    /// Apply pending database migrations and show the schema status.
    Migrate,
    /// Manage client tenants.
    #[command(subcommand)]
    Tenant(commands::tenant::TenantCommand),
    /// Manage tenant groups: named sets of tenants operators' scopes may name.
    #[command(subcommand)]
    TenantGroup(commands::tenant_group::TenantGroupCommand),
    /// Manage MSP operators and their API tokens.
    #[command(subcommand)]
    Operator(commands::operator::OperatorCommand),
    /// Manage key-encryption keys.
    #[command(subcommand)]
    Keys(commands::keys::KeysCommand),
    /// The audit log: browse entries, proofs, verification, its public key.
    #[command(subcommand)]
    Audit(commands::audit::AuditCommand),
    /// Submit events to the workflow engine.
    #[command(subcommand)]
    Events(commands::workflows::EventsCommand),
    /// See workflow instances, their steps and history.
    #[command(subcommand)]
    Workflows(commands::workflows::WorkflowsCommand),
    /// See and decide approvals of gated steps.
    #[command(subcommand)]
    Approvals(commands::workflows::ApprovalsCommand),
    /// Track client onboardings and work their documentation checklists.
    #[command(subcommand)]
    Onboarding(commands::onboarding::OnboardingCommand),
    /// See the webhook intake's deliveries.
    #[command(subcommand)]
    Hooks(commands::hooks::HooksCommand),
    /// Client runbooks and articles: list, show, add, full-text search.
    #[command(subcommand)]
    Kb(commands::kb::KbCommand),
    /// The SCIM 2.0 service provider: manage tenants' SCIM bearer tokens.
    #[command(subcommand)]
    Scim(commands::scim::ScimCommand),
    /// People: lifecycle events, CSV import, drift, leavers' revocations.
    #[command(subcommand)]
    People(commands::people::PeopleCommand),
    /// A tenant's access policy: role templates and attribute rules.
    #[command(subcommand, name = "access-policy")]
    AccessPolicy(commands::people::PolicyCommand),
    /// Just-in-time elevated access: request, list, end early.
    #[command(subcommand)]
    Elevation(commands::people::ElevationCommand),
    /// Run a benchmark; the last line printed is a JSON object.
    Bench(bench::BenchArgs),
    /// Run the vendor emulators (PSA, RMM, Graph, documentation) on loopback.
    Sandbox(commands::sandbox::SandboxArgs),
    /// Manage tenants' connectors (the PSA, RMM, Microsoft 365 and
    /// documentation systems their actions reach).
    #[command(subcommand)]
    Connector(commands::connector::ConnectorCommand),
}

/// Why a command failed.
#[derive(Debug, thiserror::Error)]
pub enum CliError {
    /// The configuration is wrong.
    #[error("configuration: {0}")]
    Config(String),
    /// The user asked for something that cannot be done as asked.
    #[error("{0}")]
    Usage(String),
    /// Storage failed.
    #[error(transparent)]
    Store(#[from] gatehouse_core::store::StoreError),
    /// Keys failed.
    #[error(transparent)]
    Vault(#[from] gatehouse_vault::VaultError),
    /// The operation was refused or failed.
    /// At the CLI the operator is local, so internal details are shown too.
    #[error("{} ({})", .0, .0.code())]
    App(#[from] gatehouse_server::AppError),
    /// A value did not validate.
    #[error(transparent)]
    Domain(#[from] gatehouse_core::DomainError),
    /// Input or output failed.
    #[error("{0}")]
    Io(#[from] std::io::Error),
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(err) => {
            eprintln!("error: cannot start the async runtime: {err}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli)) {
        Ok(code) => code,
        Err(err) => {
            eprintln!("error: {err}");
            ExitCode::FAILURE
        }
    }
}

async fn run(cli: Cli) -> Result<ExitCode, CliError> {
    match cli.command {
        Command::Serve(args) => commands::serve::run(&cli.config, args).await,
        Command::Migrate => commands::migrate(&cli.config).await,
        Command::Tenant(command) => commands::tenant::run(&cli.config, command).await,
        Command::TenantGroup(command) => commands::tenant_group::run(&cli.config, command).await,
        Command::Operator(command) => commands::operator::run(&cli.config, command).await,
        Command::Keys(command) => commands::keys::run(&cli.config, command).await,
        Command::Kb(command) => commands::kb::run(&cli.config, command).await,
        Command::Scim(command) => commands::scim::run(&cli.config, command).await,
        Command::People(command) => commands::people::run(&cli.config, command).await,
        Command::AccessPolicy(command) => commands::people::run_policy(&cli.config, command).await,
        Command::Elevation(command) => commands::people::run_elevation(&cli.config, command).await,
        Command::Audit(command) => commands::audit::run(&cli.config, command).await,
        Command::Events(command) => commands::workflows::run_events(&cli.config, command).await,
        Command::Workflows(command) => {
            commands::workflows::run_workflows(&cli.config, command).await
        }
        Command::Approvals(command) => {
            commands::workflows::run_approvals(&cli.config, command).await
        }
        Command::Onboarding(command) => commands::onboarding::run(&cli.config, command).await,
        Command::Hooks(command) => commands::hooks::run(&cli.config, command).await,
        Command::Bench(args) => bench::run(&cli.config, args).await,
        Command::Sandbox(args) => commands::sandbox::run(args).await,
        Command::Connector(command) => commands::connector::run(&cli.config, command).await,
    }
}

#[cfg(test)]
mod tests {
    /// Every command and subcommand is well formed (clap checks names,
    /// flags and defaults only when a command is built, so a clash would
    /// otherwise surface as a panic the first time someone types it).
    #[test]
    fn every_command_is_well_formed() {
        use clap::CommandFactory;
        super::Cli::command().debug_assert();
    }
}
