//! `gatehouse bench onboarding`: N client onboardings at once, from won
//! deals to go-live, against the in-process sandbox, every approval given
//! through the API.
//!
//! Gatehouse runs as `serve` runs it (the same wiring: every action, the
//! engine's worker, the audit sequencer, the webhook intake, on loopback)
//! on the benchmark's scratch database, with the sandbox's emulators as
//! the MSP's connectors (as `serve --demo` wires them). The sandbox
//! ConnectWise then wins N deals at once: N signed callbacks to the
//! intake. The scripted operator (`gatehouse_sandbox::operator`) drives
//! all of them concurrently through the HTTP API — approvals with a
//! reason, sign-offs, the checklist — until every onboarding is
//! operational. The client's side (accepting the GDAP request, agents
//! reporting in) is the sandbox's, through its knobs.
//!
//! Figures: `onboardings_per_min` from the first deal won to the last
//! onboarding completed; `p50_step_ms`/`p99_step_ms` over every gated step
//! of every onboarding, from its approval being requested (or its task
//! opened) to its success, by the server's clock (so they include the
//! operator's polling, as a person's reaction time would); `peak_rss_mb`
//! of the whole process (Gatehouse, the sandbox and the driver).

use std::collections::BTreeSet;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gatehouse_connectors::connectwise::{ConnectWiseClient, ConnectWiseConfig, NewCallback};
use gatehouse_connectors::http::Secret;
use gatehouse_core::clock::{Clock, SystemClock};
use gatehouse_core::operator::{OperatorName, Role};
use gatehouse_core::store::Store;
use gatehouse_core::tenant::DisplayName;
use gatehouse_sandbox::operator::Operator;
use gatehouse_sandbox::{AutoEnroll, Sandbox};
use gatehouse_server::App;
use gatehouse_server::http::{ApiState, HttpConfig};
use gatehouse_server::metrics::Metrics;
use serde_json::{Value, json};

use crate::CliError;
use crate::bench::{peak_rss_mb, progress};
use crate::config::{Config, ConfigArgs, KeyProviderKind};

/// How often the operator looks again when nothing waited for it.
const POLL: Duration = Duration::from_millis(200);

/// The onboarding benchmark's settings.
#[derive(Debug, Clone, Copy)]
pub struct OnboardingBench {
    /// Deals won at once.
    pub clients: u32,
}

/// Runs the benchmark on `store` (migrated here), with its key file and
/// configuration in `scratch`.
pub async fn measure(
    args: &ConfigArgs,
    store: Arc<dyn Store>,
    scratch: &std::path::Path,
    bench: OnboardingBench,
) -> Result<Value, CliError> {
    store.migrate().await?;
    let mut scratch_args = args.clone();
    scratch_args.config = None;
    scratch_args.data_dir = Some(scratch.to_path_buf());
    scratch_args.key_file = Some(scratch.join("kek.json"));
    scratch_args.key_provider = Some(KeyProviderKind::Local);
    let mut config = Config::load(&scratch_args, Some(SocketAddr::from(([127, 0, 0, 1], 0))))?;
    config.connectwise_key_hosts.push("127.0.0.1".to_owned());
    if config.default_onboarding_owner.is_none() {
        config.default_onboarding_owner = Some(gatehouse_core::notify::EmailAddress::parse(
            crate::demo::DEMO_OWNER,
        )?);
    }
    eprintln!(
        "bench onboarding on {}: {} clients",
        store.backend().as_str(),
        bench.clients
    );

    // Gatehouse, wired as `serve` wires it.
    let (app, _) = crate::wiring::open_app(&config, store.clone()).await?;
    app.bootstrap().await?;
    let sandbox = Arc::new(Sandbox::start().await?);
    crate::demo::wire(&app, &sandbox, &config.msp_tenant).await?;
    // The clients act at once: each accepts its GDAP request as it is
    // made, and one device per organization checks in as the installer
    // link is made (the demo waits a few seconds; the benchmark measures
    // Gatehouse, not the clients).
    sandbox.graph.set_auto_accept_gdap(Some(Duration::ZERO));
    sandbox.ninjaone.set_auto_enroll(Some(AutoEnroll {
        devices: 1,
        delay: Duration::ZERO,
    }));
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let mut workers = tokio::task::JoinSet::new();
    {
        let engine = app.engine.clone();
        let mut stopping = stopping.clone();
        workers.spawn(async move {
            engine
                .run(async move {
                    let _ = stopping.wait_for(|stop| *stop).await;
                })
                .await;
        });
    }
    {
        let sequencer = crate::wiring::open_sequencer(&config, &app)?;
        let mut stopping = stopping.clone();
        workers.spawn(async move {
            sequencer
                .run(Duration::from_secs(1), async move {
                    let _ = stopping.wait_for(|stop| *stop).await;
                })
                .await;
        });
    }
    let app = Arc::new(app);
    let psa = crate::commands::hooks::msp_psa(&config, &app).await;
    let intake = crate::commands::hooks::open_intake(&config, app.clone(), psa)?;
    let router = gatehouse_server::http::hooks::with_intake(
        gatehouse_server::http::router(
            ApiState {
                app: app.clone(),
                metrics: Arc::new(Metrics::new()),
            },
            HttpConfig {
                max_body_bytes: config.max_body_bytes,
            },
        ),
        intake,
    );
    let listener = tokio::net::TcpListener::bind(config.listen).await?;
    let base = format!("http://{}", listener.local_addr()?);
    {
        let mut stopping = stopping.clone();
        workers.spawn(async move {
            let _ = gatehouse_server::http::serve(listener, router, async move {
                let _ = stopping.wait_for(|stop| *stop).await;
            })
            .await;
        });
    }

    let result = run(&base, &app, &sandbox, &config, bench).await;

    let _ = stop.send(true);
    while workers.join_next().await.is_some() {}
    if let Ok(sandbox) = Arc::try_unwrap(sandbox) {
        sandbox.shutdown().await;
    }
    let mut result = result?;
    result["backend"] = json!(store.backend().as_str());
    result["peak_rss_mb"] = json!(peak_rss_mb());
    Ok(result)
}

/// Wins the deals and drives them to go-live.
async fn run(
    base: &str,
    app: &App,
    sandbox: &Arc<Sandbox>,
    config: &Config,
    bench: OnboardingBench,
) -> Result<Value, CliError> {
    let bench_error = |what: &str, e: &dyn std::fmt::Display| {
        CliError::Usage(format!("bench onboarding: {what}: {e}"))
    };

    // The operator: a lead of the MSP, with a token of their own (the
    // bench's setup, like `gatehouse operator create`; the lead then does
    // everything through the API).
    let (_, _, lead) = app
        .create_operator(
            &gatehouse_server::Actor::System("bench"),
            OperatorName::parse("bench.lead")?,
            DisplayName::parse("Bench Lead")?,
            Role::Lead,
        )
        .await?;
    let lead = lead.expose();
    let operator = Operator::new(base, lead).with_concurrency(32);

    // The callback, registered in ConnectWise as an MSP engineer would,
    // and the opportunity status the template's last step sets.
    let cw = &sandbox.connectwise;
    cw.add_opportunity_status("Onboarded", true, true);
    let c = &sandbox.credentials.connectwise;
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let client = ConnectWiseClient::new(
        ConnectWiseConfig {
            base_url: cw.url(),
            company_id: c.company_id.clone(),
            public_key: c.public_key.clone(),
            private_key: Secret::new(c.private_key.clone()),
            client_id: c.client_id.clone(),
        },
        clock,
    )
    .map_err(|e| bench_error("the ConnectWise client", &e))?;
    client
        .register_callback(
            &NewCallback {
                description: "Gatehouse: won opportunities start onboardings".into(),
                url: format!("{base}/hooks/connectwise/{}", config.msp_tenant),
                object_id: 0,
                kind: "Opportunity".into(),
                level: "Owner".into(),
            },
            "bench-callback",
        )
        .await
        .map_err(|e| bench_error("registering the callback", &e))?;

    // N clients in the PSA (and their Microsoft 365 tenants), then N deals
    // won at once.
    let opportunities: Vec<u64> = (0..bench.clients)
        .map(|i| seed_client(sandbox, i))
        .collect();
    let started = Instant::now();
    let mut wins = tokio::task::JoinSet::new();
    for opportunity in opportunities {
        let sandbox = sandbox.clone();
        wins.spawn(async move { sandbox.connectwise.win_opportunity(opportunity).await });
    }
    let mut accepted = 0u32;
    while let Some(joined) = wins.join_next().await {
        let deliveries = joined.map_err(|e| bench_error("winning a deal", &e))?;
        accepted += deliveries
            .iter()
            .filter(|d| d.status.is_some_and(|s| (200..300).contains(&s)))
            .count() as u32;
        progress("deals won", accepted, bench.clients);
    }
    if accepted != bench.clients {
        return Err(bench_error(
            "the intake",
            &format!("accepted {accepted} of {} deals", bench.clients),
        ));
    }

    // Every onboarding the deals started, driven to go-live.
    let mut ids = BTreeSet::new();
    let wait_for_all = Instant::now();
    while ids.len() < bench.clients as usize {
        ids = operator
            .onboardings()
            .await
            .map_err(|e| bench_error("listing onboardings", &e))?
            .iter()
            .filter_map(|o| o["id"].as_str().map(str::to_owned))
            .collect();
        if wait_for_all.elapsed() > Duration::from_secs(60) {
            return Err(bench_error(
                "the intake",
                &format!(
                    "{} onboardings started for {} deals",
                    ids.len(),
                    bench.clients
                ),
            ));
        }
        if ids.len() < bench.clients as usize {
            tokio::time::sleep(POLL).await;
        }
    }
    let deadline = Duration::from_secs(600 + u64::from(bench.clients) * 6);
    let clients = bench.clients;
    let drive = operator
        .drive(&ids, POLL, deadline, |live, total| {
            progress("operational", live as u32, total as u32);
        })
        .await
        .map_err(|e| bench_error("driving", &e))?;
    let elapsed = started.elapsed();

    let mut latencies: Vec<f64> = drive
        .steps
        .iter()
        .map(|s| s.latency.as_secs_f64() * 1000.0)
        .collect();
    latencies.sort_by(f64::total_cmp);
    let quantile = |q: f64| -> f64 {
        if latencies.is_empty() {
            return 0.0;
        }
        let rank = ((latencies.len() as f64) * q).ceil() as usize;
        let v = latencies[rank.clamp(1, latencies.len()) - 1];
        (v * 10.0).round() / 10.0
    };
    Ok(json!({
        "scenario": "onboarding",
        "clients": clients,
        "onboardings_per_min": ((f64::from(clients) / (elapsed.as_secs_f64() / 60.0).max(1e-9)) * 10.0).round() / 10.0,
        "p50_step_ms": quantile(0.50),
        "p99_step_ms": quantile(0.99),
        "steps": drive.steps.len(),
        "approvals": drive.actions.approved.len(),
        "approval_steps": drive.steps.iter().filter(|s| s.gate == "approval").count(),
        "replanned": drive.replanned,
        "tasks": drive.actions.completed.len(),
        "checklist_items": drive.actions.items,
        "passes": drive.passes,
        "elapsed_secs": (elapsed.as_secs_f64() * 100.0).round() / 100.0,
    }))
}

/// Client `i` in the sandbox: its ConnectWise company (with its website)
/// and open opportunity (answered), and its Microsoft 365 tenant for the
/// website's domain, with the MSP's app consented.
fn seed_client(sandbox: &Sandbox, i: u32) -> u64 {
    let name = format!("Bench Client {i:05}");
    let domain = format!("bench-client-{i:05}.example");
    let cw = &sandbox.connectwise;
    let company = cw.seed_company(&name, "Active");
    cw.set_company_website(company, &format!("https://www.{domain}"));
    let tenant = format!("b3c00000-0000-4000-8000-{i:012}");
    let graph = &sandbox.graph;
    graph.add_tenant(&tenant, &name);
    graph.add_domain(&tenant, &domain);
    let app = &sandbox.credentials.graph_app;
    graph.consent_app(&tenant, &app.0, &app.1);
    cw.seed_opportunity("Managed services", company, "Open", None)
}
