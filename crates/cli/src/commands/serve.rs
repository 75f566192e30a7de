//! `gatehouse serve`.

use std::net::SocketAddr;
use std::process::ExitCode;
use std::sync::Arc;

use gatehouse_server::http::{ApiState, HttpConfig};
use gatehouse_server::metrics::Metrics;

use crate::CliError;
use crate::config::{Config, ConfigArgs};
use crate::wiring::{self, Schema};

/// Options of `serve`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// Address to listen on [default: 127.0.0.1:8080].
    #[arg(long, env = "GATEHOUSE_LISTEN", value_name = "ADDR")]
    pub listen: Option<SocketAddr>,
    /// Seed a synthetic MSP with three client tenants (on first start).
    #[arg(long)]
    pub demo: bool,
}

/// Runs the server until SIGTERM or Ctrl-C.
pub async fn run(args: &ConfigArgs, serve: ServeArgs) -> Result<ExitCode, CliError> {
    let mut config = Config::load(args, serve.listen)?;
    if serve.demo {
        // The sandbox ConnectWise serves its callback signing key on
        // loopback, and its won deal names no sales rep.
        if !config
            .connectwise_key_hosts
            .iter()
            .any(|h| h == "127.0.0.1")
        {
            config.connectwise_key_hosts.push("127.0.0.1".to_owned());
        }
        if config.default_onboarding_owner.is_none() {
            config.default_onboarding_owner = Some(gatehouse_core::notify::EmailAddress::parse(
                crate::demo::DEMO_OWNER,
            )?);
        }
    }
    wiring::init_logging(&config)?;
    tracing::info!(config = ?config, "starting");

    let schema = if config.auto_migrate {
        Schema::Migrate
    } else {
        Schema::RequireCurrent
    };
    let store = wiring::open_store(&config, schema).await?;
    let (app, _) = wiring::open_app(&config, store.clone()).await?;
    let dispatcher = crate::notify::open_dispatcher(
        &config,
        store.clone(),
        Arc::new(gatehouse_core::clock::SystemClock),
    )?;

    let bootstrap = app.bootstrap().await?;
    let demo = if serve.demo {
        Some(gatehouse_server::demo::seed(&app).await?)
    } else {
        None
    };
    // The demo's vendor systems: every emulator, in this process.
    let sandbox = if serve.demo {
        let sandbox = gatehouse_sandbox::Sandbox::start().await?;
        crate::demo::wire(&app, &sandbox, &config.msp_tenant).await?;
        Some(Arc::new(sandbox))
    } else {
        None
    };

    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|e| CliError::Usage(format!("cannot listen on {}: {e}", config.listen)))?;
    let addr = listener.local_addr()?;
    let base = format!("http://{addr}");

    // The one place a token is printed: on the operator's terminal, not in the log.
    println!("Gatehouse is listening on {base}");
    if let Some((operator, secret)) = &bootstrap {
        println!();
        println!(
            "First start: created the administrator `{}`. Its API token, shown only now:",
            operator.name
        );
        println!();
        println!("    {}", secret.expose());
        println!();
        println!("Keep it safe. Lost it? `gatehouse operator token admin` issues another.");
    }
    if let Some(demo) = &demo {
        println!();
        println!(
            "Demo MSP {}: tenants {}; team {}.",
            if demo.created {
                "seeded"
            } else {
                "already present"
            },
            demo.tenants
                .iter()
                .map(|t| t.slug.to_string())
                .collect::<Vec<_>>()
                .join(", "),
            demo.operators
                .iter()
                .map(|o| match &o.scope {
                    gatehouse_core::operator::Scope::Installation => {
                        format!("{} ({})", o.name, o.role)
                    }
                    gatehouse_core::operator::Scope::Tenants { reach, .. } => {
                        format!("{} ({}, {} tenant only)", o.name, o.role, reach.len())
                    }
                })
                .collect::<Vec<_>>()
                .join(", "),
        );
        if !demo.sign_in.is_empty() {
            println!();
            println!("Console: {base}/console/ (the team's sign-ins, shown only now):");
            for member in &demo.sign_in {
                println!(
                    "  {:<10} {:<11} password {}  TOTP secret {}",
                    member.name.as_str(),
                    member.role.as_str(),
                    member.password.as_str(),
                    member.totp_secret.as_str()
                );
            }
            println!(
                "  Add a secret to an authenticator app, or print its code: cargo run --release -- operator code <secret>"
            );
        }
        println!("Next:");
        println!("  export GATEHOUSE_TOKEN=<the token above>");
        println!("  curl -H \"Authorization: Bearer $GATEHOUSE_TOKEN\" {base}/api/v1/tenants");
        println!("  cargo run --release -- tenant list");
        println!(
            "  API reference: {base}/api/v1/openapi.json   health: {base}/readyz   metrics: {base}/metrics"
        );
    }

    // One shutdown signal, watched by both the HTTP server and the engine.
    let (stop, stopping) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        // Nobody listening means everything stopped already.
        let _ = stop.send(true);
    });
    let engine = app.engine.clone();
    let engine_worker = {
        let mut stopping = stopping.clone();
        tokio::spawn(async move {
            tracing::info!("workflow engine started");
            // On error the engine logs and retries itself; it stops only on shutdown.
            engine
                .run(async move {
                    let _ = stopping.wait_for(|stop| *stop).await;
                })
                .await;
            tracing::info!("workflow engine stopped");
        })
    };

    // The notification dispatcher: sends queued L1 reviews; stops on the
    // same signal (a send cut short is sent again after its lease).
    let notify_worker = {
        let mut stopping = stopping.clone();
        tokio::spawn(async move {
            tracing::info!("notification dispatcher started");
            dispatcher
                .run(async move {
                    let _ = stopping.wait_for(|stop| *stop).await;
                })
                .await;
            tracing::info!("notification dispatcher stopped");
        })
    };

    // The audit sequencer: appends the records every change queued (in its
    // own transaction) to their logs, sealing tenants' details, and signs
    // checkpoints; stops on the same signal.
    let audit_worker = {
        let mut stopping = stopping.clone();
        let sequencer = wiring::open_sequencer(&config, &app)?;
        tokio::spawn(async move {
            tracing::info!("audit sequencer started");
            sequencer
                .run(std::time::Duration::from_secs(1), async move {
                    let _ = stopping.wait_for(|stop| *stop).await;
                })
                .await;
            tracing::info!("audit sequencer stopped");
        })
    };

    // Checklist reminders and overdue escalations: a sweep every minute
    // (each notice is queued once, in its own transaction); stops on the
    // same signal.
    let reminder_worker = {
        let mut stopping = stopping.clone();
        let app = app.clone();
        tokio::spawn(async move {
            tracing::info!("checklist reminders started");
            gatehouse_server::onboarding::run_reminders(
                app,
                std::time::Duration::from_secs(60),
                async move {
                    let _ = stopping.wait_for(|stop| *stop).await;
                },
            )
            .await;
            tracing::info!("checklist reminders stopped");
        })
    };

    // Contract ends: a sweep every 5 minutes terminates people whose
    // contract or employment end date has passed (one event per date, so a
    // repeated sweep adds nothing); their revocation starts at once.
    let contract_worker = {
        let mut stopping = stopping.clone();
        let identity = app.identity.clone();
        tokio::spawn(async move {
            gatehouse_server::identity::service::run_contract_ends(
                identity,
                std::time::Duration::from_secs(300),
                async move {
                    let _ = stopping.wait_for(|stop| *stop).await;
                },
            )
            .await;
        })
    };

    // The knowledge base's sweeper: drops tenants' search indexes (plaintext
    // in memory) once idle; nothing to finish on shutdown.
    let kb_sweeper = {
        let mut stopping = stopping.clone();
        let kb = app.kb.clone();
        tokio::spawn(async move {
            kb.sweep(std::time::Duration::from_secs(60), async move {
                let _ = stopping.wait_for(|stop| *stop).await;
            })
            .await;
        })
    };

    let state = ApiState {
        app: Arc::new(app),
        metrics: Arc::new(Metrics::new()),
    };
    // The webhook intake (`/hooks/{source}/{tenant}`) and, once an Autotask
    // connector is wired here, its opportunity poller (same shutdown signal).
    let psa = crate::commands::hooks::msp_psa(&config, &state.app).await;
    let autotask = psa
        .clone()
        .filter(|p| p.kind() == gatehouse_connectors::ports::PsaKind::Autotask);
    let intake = crate::commands::hooks::open_intake(&config, state.app.clone(), psa)?;
    let poll_worker = crate::commands::hooks::start_autotask_poller(
        &config,
        intake.clone(),
        autotask,
        stopping.clone(),
    );
    let router = gatehouse_server::http::router(
        state,
        HttpConfig {
            max_body_bytes: config.max_body_bytes,
        },
    );
    let router = gatehouse_server::http::hooks::with_intake(router, intake);
    if let Some(sandbox) = sandbox.clone() {
        // Once the server accepts (the listener is bound, so the callback
        // waits in its backlog until then), the sandbox PSA wins the deal.
        let msp = config.msp_tenant.clone();
        tokio::spawn(async move {
            let clock: Arc<dyn gatehouse_core::clock::Clock> =
                Arc::new(gatehouse_core::clock::SystemClock);
            match crate::demo::send_won_deal(&sandbox, &base, &msp, clock).await {
                Ok(sent) => {
                    println!();
                    println!(
                        "Demo: the sandbox ConnectWise just won a deal for {} and sent its signed callback (intake answered {}).",
                        crate::demo::DEMO_CLIENT,
                        sent["deliveries"]
                    );
                    println!("The client's onboarding waits at its first approval:");
                    println!("  cargo run --release -- approvals list");
                    println!("  cargo run --release -- onboarding list");
                }
                Err(err) => tracing::error!(%err, "demo: the sandbox could not send the won deal"),
            }
        });
    }
    let mut http_stopping = stopping;
    gatehouse_server::http::serve(listener, router, async move {
        let _ = http_stopping.wait_for(|stop| *stop).await;
    })
    .await?;
    tracing::info!("stopped accepting requests; waiting for the engine's wave in flight");
    if let Err(err) = engine_worker.await {
        tracing::error!(%err, "the workflow engine task failed");
    }
    if let Err(err) = notify_worker.await {
        tracing::error!(%err, "the notification dispatcher task failed");
    }
    if let Err(err) = audit_worker.await {
        tracing::error!(%err, "the audit sequencer task failed");
    }
    if let Err(err) = contract_worker.await {
        tracing::warn!(%err, "the contract-end sweep ended abnormally");
    }
    if let Err(err) = reminder_worker.await {
        tracing::error!(%err, "the checklist reminder task failed");
    }
    if let Some(worker) = poll_worker
        && let Err(err) = worker.await
    {
        tracing::error!(%err, "the autotask poller task failed");
    }
    if let Err(err) = kb_sweeper.await {
        tracing::error!(%err, "the knowledge base's index sweeper failed");
    }
    tracing::info!("closing the database");
    store.close().await;
    Ok(ExitCode::SUCCESS)
}

/// Completes on Ctrl-C or SIGTERM.
pub(crate) async fn shutdown_signal() {
    let ctrl_c = async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(%err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    };
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(err) => {
                tracing::error!(%err, "cannot listen for SIGTERM");
                std::future::pending::<()>().await;
            }
        }
    };
    tokio::select! {
        () = ctrl_c => tracing::info!("Ctrl-C: shutting down"),
        () = terminate => tracing::info!("SIGTERM: shutting down"),
    }
}
