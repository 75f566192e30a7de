//! `gatehouse hooks`: the webhook intake's delivery records, and the
//! intake's wiring for `serve` (the intake itself and the Autotask poller).

use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use gatehouse_connectors::ports::Psa;
use gatehouse_connectors::webhook::{HttpKeyFetcher, KeyHostAllowlist};
use gatehouse_core::hooks::{DeliveryOutcome, HookSource};
use gatehouse_core::id::HookDeliveryId;
use gatehouse_server::App;
use gatehouse_server::app::TenantRef;
use gatehouse_server::app::hooks::{Intake, IntakeConfig};
use gatehouse_server::intake_poll::AutotaskPoller;
use serde_json::json;

use super::{CLI, open, print_json, print_table};
use crate::CliError;
use crate::config::{Config, ConfigArgs};

/// `gatehouse hooks …`.
#[derive(Debug, clap::Subcommand)]
pub enum HooksCommand {
    /// List a tenant's webhook deliveries, newest first: every attempt,
    /// with its outcome and reason.
    List {
        /// The receiving tenant (`ten_…` or slug); default: the MSP's own
        /// (`msp_tenant`).
        #[arg(long)]
        tenant: Option<String>,
        /// Only from this sender (connectwise, autotask, halopsa, generic).
        #[arg(long)]
        source: Option<String>,
        /// Only with this outcome (accepted, duplicate, bad_signature,
        /// malformed, ignored, failed).
        #[arg(long)]
        outcome: Option<String>,
        /// Only older than this delivery (`hkd_…`, the previous page's last).
        #[arg(long)]
        before: Option<String>,
        /// At most this many.
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Runs a `hooks` command.
pub async fn run(args: &ConfigArgs, command: HooksCommand) -> Result<ExitCode, CliError> {
    let (config, app) = open(args).await?;
    match command {
        HooksCommand::List {
            tenant,
            source,
            outcome,
            before,
            limit,
            json,
        } => {
            let source: Option<HookSource> = source.as_deref().map(str::parse).transpose()?;
            let outcome: Option<DeliveryOutcome> =
                outcome.as_deref().map(str::parse).transpose()?;
            let before: Option<HookDeliveryId> = before.as_deref().map(str::parse).transpose()?;
            let tenant = tenant
                .as_deref()
                .map_or(TenantRef::Slug(config.msp_tenant.clone()), TenantRef::parse);
            let page = app
                .list_hook_deliveries(&CLI, &tenant, source, outcome, before, limit)
                .await?;
            if json {
                print_json(&json!({ "items": page.items, "next": page.next }))?;
            } else {
                let rows: Vec<Vec<String>> = page
                    .items
                    .iter()
                    .map(|d| {
                        vec![
                            d.id.to_string(),
                            d.received_at.to_string(),
                            d.source.to_string(),
                            d.outcome.to_string(),
                            d.event_id.map(|e| e.to_string()).unwrap_or_default(),
                            d.reason.clone().unwrap_or_default(),
                        ]
                    })
                    .collect();
                print_table(
                    &["ID", "RECEIVED", "SOURCE", "OUTCOME", "EVENT", "REASON"],
                    &rows,
                );
                if let Some(next) = page.next {
                    println!("more: --before {next}");
                }
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// The MSP tenant's PSA (`msp_tenant`'s PSA connector, with its sealed
/// credentials), for the intake to read a deal's opportunity and company
/// from, and for the Autotask poller. `None`, with the reason logged, when
/// the MSP has none (or several) or it cannot be opened; a connector set
/// later is used after the next start.
pub async fn msp_psa(config: &Config, app: &App) -> Option<Arc<dyn Psa>> {
    use gatehouse_server::actions::{Directory, VendorFactory, Wanted};
    let actor = gatehouse_server::app::Actor::System("webhook intake");
    let msp = match app
        .get_tenant(&actor, &TenantRef::Slug(config.msp_tenant.clone()))
        .await
    {
        Ok(msp) => msp,
        Err(err) => {
            tracing::info!(%err, "webhook intake: no MSP tenant yet, so no PSA to read deals from");
            return None;
        }
    };
    let directory = Directory::new(
        app.store.clone(),
        app.keyring.clone(),
        app.clock.clone(),
        Arc::new(VendorFactory {
            clock: app.clock.clone(),
        }),
        config.msp_tenant.clone(),
    );
    match directory.psa(msp.id, &Wanted::default()).await {
        Ok((connector, psa)) => {
            tracing::info!(connector = %connector.name, kind = %connector.kind, "webhook intake: reading deals from the MSP's PSA");
            Some(psa)
        }
        Err(err) => {
            tracing::info!(%err, "webhook intake: deals are read from the webhook bodies only");
            None
        }
    }
}

/// The webhook intake `serve` mounts at `/hooks/{source}/{tenant}`, reading
/// deals from `psa` when given (see [`msp_psa`]).
pub fn open_intake(
    config: &Config,
    app: Arc<App>,
    psa: Option<Arc<dyn Psa>>,
) -> Result<Arc<Intake>, CliError> {
    let mut settings = IntakeConfig::new(config.default_region.clone());
    settings.connectwise_key_hosts = KeyHostAllowlist::new(&config.connectwise_key_hosts);
    settings.replay_window = Duration::from_secs(config.hook_replay_window_secs);
    settings.default_owner = config.default_onboarding_owner.clone();
    let fetcher = HttpKeyFetcher::new(Duration::from_secs(10))
        .map_err(|e| CliError::Config(e.to_string()))?;
    let intake = Intake::new(app, settings, Arc::new(fetcher));
    Ok(Arc::new(match psa {
        Some(psa) => intake.with_psa(psa),
        None => intake,
    }))
}

/// Starts the Autotask poller when an Autotask connector is configured
/// (`psa`), stopping when `stopping` turns true. `None` when there is none.
pub fn start_autotask_poller(
    config: &Config,
    intake: Arc<Intake>,
    psa: Option<Arc<dyn Psa>>,
    mut stopping: tokio::sync::watch::Receiver<bool>,
) -> Option<tokio::task::JoinHandle<()>> {
    let psa = psa?;
    let poller = AutotaskPoller::new(
        intake,
        psa,
        TenantRef::Slug(config.msp_tenant.clone()),
        Duration::from_secs(config.autotask_poll_secs.get()),
    );
    Some(tokio::spawn(async move {
        tracing::info!("autotask poller started");
        poller
            .run(async move {
                let _ = stopping.wait_for(|stop| *stop).await;
            })
            .await;
        tracing::info!("autotask poller stopped");
    }))
}
