//! `gatehouse bench revocation`: how fast a leaver loses everything.
//!
//! Gatehouse runs as `serve` runs it (the same wiring: the identity core,
//! the engine's worker, the audit sequencer) on the benchmark's scratch
//! database. One client tenant holds `--people` people (10,000 by default)
//! on five systems: four SCIM 2.0 applications and Microsoft 365 through
//! Graph, each a sandbox emulator on loopback. Every person starts with an
//! enabled account and a group on each system; their hire events go
//! through the identity service like any others (each reconciliation reads
//! all five systems and finds nothing to do).
//!
//! Then:
//! - **single**: `--runs` times (200), one person is terminated through the
//!   identity service and the clock runs until their revocation record says
//!   complete — written only once every system has confirmed every
//!   operation (disable, end sessions, remove the group). Each run is then
//!   checked against the emulators themselves. Figures: `single_p50_ms`,
//!   `single_p99_ms`.
//! - **bulk**: `--bulk` people (1,000) are terminated at once; the clock
//!   runs until every one of their revocations is complete:
//!   `bulk_1000_secs` (named for the default; `bulk` says how many).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gatehouse_core::connector::{ConnectorKind, ConnectorName, ConnectorSpec};
use gatehouse_core::secret::SecretName;
use gatehouse_core::store::Store;
use gatehouse_core::tenant::{DisplayName, Region, TenantSlug, TenantState};
use gatehouse_identity::{EventKind, LifecycleEvent};
use gatehouse_sandbox::graph::GroupKind;
use gatehouse_sandbox::{GraphEmulator, ScimAppEmulator};
use gatehouse_server::App;
use gatehouse_server::app::{Actor, NewTenant, TenantRef};
use gatehouse_server::identity::IdentityCore;
use serde_json::{Value, json};

use crate::CliError;
use crate::bench::{peak_rss_mb, progress};
use crate::config::{Config, ConfigArgs, KeyProviderKind};

const ACTOR: Actor = Actor::System("bench revocation");
const CLIENT: &str = "bench-client";
const SCIM_APPS: [&str; 4] = ["crm", "erp", "wiki", "helpdesk"];
const PARTNER: &str = "b0000000-0000-4000-8000-000000000001";
const CUSTOMER: &str = "b0000000-0000-4000-8000-000000000002";
const DOMAIN: &str = "bench.example";

/// The revocation benchmark's settings.
#[derive(Debug, Clone, Copy)]
pub struct RevocationBench {
    /// People in the tenant.
    pub people: u32,
    /// Single terminations measured one after another.
    pub runs: u32,
    /// People terminated at once.
    pub bulk: u32,
}

fn failed(what: &str, e: impl std::fmt::Display) -> CliError {
    CliError::Usage(format!("bench revocation: {what}: {e}"))
}

fn user_name(i: u32) -> String {
    format!("person{i:06}@{DOMAIN}")
}

/// The five systems, seeded.
struct Systems {
    scim: Vec<ScimAppEmulator>,
    graph: GraphEmulator,
    graph_group: String,
    credentials: gatehouse_sandbox::SandboxCredentials,
}

/// Runs the benchmark on `store` (migrated here), with its key file and
/// configuration in `scratch`.
pub async fn measure(
    args: &ConfigArgs,
    store: Arc<dyn Store>,
    scratch: &std::path::Path,
    bench: RevocationBench,
) -> Result<Value, CliError> {
    if bench.runs + bench.bulk > bench.people {
        return Err(CliError::Usage(format!(
            "--runs ({}) and --bulk ({}) together need at least as many --people ({})",
            bench.runs, bench.bulk, bench.people
        )));
    }
    store.migrate().await?;
    let mut scratch_args = args.clone();
    scratch_args.config = None;
    scratch_args.data_dir = Some(scratch.to_path_buf());
    scratch_args.key_file = Some(scratch.join("kek.json"));
    scratch_args.key_provider = Some(KeyProviderKind::Local);
    let config = Config::load(&scratch_args, Some(SocketAddr::from(([127, 0, 0, 1], 0))))?;
    eprintln!(
        "bench revocation on {}: {} people on 5 systems, {} single runs, {} at once",
        store.backend().as_str(),
        bench.people,
        bench.runs,
        bench.bulk
    );
    let (app, _) = crate::wiring::open_app(&config, store.clone()).await?;
    let app = Arc::new(app);
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
    let result = run(&app, bench).await;
    let _ = stop.send(true);
    while workers.join_next().await.is_some() {}
    let mut result = result?;
    result["backend"] = json!(store.backend().as_str());
    result["peak_rss_mb"] = json!(peak_rss_mb());
    Ok(result)
}

async fn run(app: &Arc<App>, bench: RevocationBench) -> Result<Value, CliError> {
    let systems = start_systems().await?;
    let tenant = app
        .create_tenant(
            &ACTOR,
            NewTenant {
                slug: TenantSlug::parse(CLIENT)?,
                display_name: DisplayName::parse("Bench client")?,
                region: Region::parse("eu")?,
                state: TenantState::Active,
            },
        )
        .await?;
    wire(app, &systems).await?;
    let ids = seed(app, &systems, tenant.id, bench.people).await?;

    // Single leavers, one after another.
    let mut single = Vec::with_capacity(bench.runs as usize);
    for i in 0..bench.runs {
        let started = Instant::now();
        terminate(app, tenant.id, i).await?;
        wait_complete(app, tenant.id, std::slice::from_ref(&ids[i as usize])).await?;
        single.push(started.elapsed());
        if i % 10 == 0 {
            check_revoked(&systems, i)?;
        }
        progress("single leavers", i + 1, bench.runs);
    }
    single.sort();

    // Many leavers at once.
    let batch: Vec<u32> = (bench.runs..bench.runs + bench.bulk).collect();
    let started = Instant::now();
    let mut sends = tokio::task::JoinSet::new();
    for chunk in batch.chunks(batch.len().div_ceil(16).max(1)) {
        let app = app.clone();
        let chunk = chunk.to_vec();
        let tenant = tenant.id;
        sends.spawn(async move {
            for i in chunk {
                terminate(&app, tenant, i).await?;
            }
            Ok::<(), CliError>(())
        });
    }
    while let Some(sent) = sends.join_next().await {
        sent.map_err(|e| failed("a sender", e))??;
    }
    eprintln!(
        "{} terminations sent in {:.2} s",
        batch.len(),
        started.elapsed().as_secs_f64()
    );
    let batch_ids: Vec<String> = batch.iter().map(|i| ids[*i as usize].clone()).collect();
    wait_complete(app, tenant.id, &batch_ids).await?;
    let bulk_secs = started.elapsed().as_secs_f64();
    for i in batch.iter().step_by(97) {
        check_revoked(&systems, *i)?;
    }

    let pct = |p: f64| -> f64 {
        let idx = ((single.len() as f64 - 1.0) * p).round() as usize;
        single
            .get(idx)
            .map_or(0.0, |d| (d.as_secs_f64() * 1e5).round() / 100.0)
    };
    Ok(json!({
        "scenario": "revocation",
        "people": bench.people,
        "systems": 5,
        "runs": bench.runs,
        "single_p50_ms": pct(0.50),
        "single_p99_ms": pct(0.99),
        "single_max_ms": pct(1.0),
        "bulk": bench.bulk,
        "bulk_1000_secs": (bulk_secs * 1000.0).round() / 1000.0,
        "bulk_per_sec": (f64::from(bench.bulk) / bulk_secs.max(1e-9)).round(),
    }))
}

async fn start_systems() -> Result<Systems, CliError> {
    let credentials = gatehouse_sandbox::SandboxCredentials::generate()?;
    let mut scim = Vec::new();
    for _ in SCIM_APPS {
        scim.push(ScimAppEmulator::start(&credentials.scim_token).await?);
    }
    let graph = GraphEmulator::start().await?;
    graph.add_partner_tenant(PARTNER, "Bench MSP");
    graph.add_tenant(CUSTOMER, "Bench client");
    graph.add_domain(CUSTOMER, DOMAIN);
    let (app_id, app_secret) = &credentials.graph_app;
    for tenant in [PARTNER, CUSTOMER] {
        graph.consent_app(tenant, app_id, app_secret);
    }
    let graph_group = graph
        .add_group(CUSTOMER, "All staff", GroupKind::Security)
        .ok_or_else(|| failed("graph", "the group could not be made"))?;
    Ok(Systems {
        scim,
        graph,
        graph_group,
        credentials,
    })
}

/// The tenant's five connectors, credentials sealed as its secrets.
async fn wire(app: &App, systems: &Systems) -> Result<(), CliError> {
    let tenant = TenantRef::parse(CLIENT);
    let c = &systems.credentials;
    let mut connectors: Vec<(String, ConnectorKind, String, Value, &str, String)> = SCIM_APPS
        .iter()
        .zip(&systems.scim)
        .map(|(name, emu)| {
            (
                (*name).to_owned(),
                ConnectorKind::Scim,
                emu.scim_url(),
                json!({}),
                "token",
                c.scim_token.clone(),
            )
        })
        .collect();
    connectors.push((
        "m365".to_owned(),
        ConnectorKind::Graph,
        systems.graph.url(),
        json!({"login_base": systems.graph.url(), "partner_tenant_id": PARTNER, "client_id": c.graph_app.0, "customer_tenant_id": CUSTOMER}),
        "client_secret",
        c.graph_app.1.clone(),
    ));
    for (name, kind, base_url, settings, role, value) in connectors {
        let secret = SecretName::parse(&format!("{name}.{}", role.replace('_', "-")))?;
        app.put_secret(&ACTOR, &tenant, &secret, value.as_bytes())
            .await?;
        let spec = ConnectorSpec {
            kind,
            base_url,
            settings,
            secrets: [(role.to_owned(), secret)].into(),
        };
        app.set_connector(&ACTOR, &tenant, &ConnectorName::parse(&name)?, spec)
            .await?;
    }
    Ok(())
}

/// The policy, every person's accounts in the five systems, and their
/// hire events through the identity service.
async fn seed(
    app: &Arc<App>,
    systems: &Systems,
    tenant: gatehouse_core::id::TenantId,
    people: u32,
) -> Result<Vec<String>, CliError> {
    let mut grants: Vec<String> = SCIM_APPS
        .iter()
        .map(|a| format!("{{ system = \"{a}\", group = \"Staff\" }}"))
        .collect();
    grants.push(format!(
        "{{ system = \"m365\", group = \"{}\" }}",
        systems.graph_group
    ));
    let policy = format!(
        "[[role]]\nid = \"staff\"\ntitle = \"Every employee\"\nwhen = 'kind eq \"client_user\"'\ngrants = [{}]\n",
        grants.join(", ")
    );
    app.set_access_policy(&ACTOR, &TenantRef::parse(CLIENT), &policy, 0)
        .await?;

    let sealer = app
        .identity
        .core
        .sealer(tenant)
        .await
        .map_err(|e| failed("the tenant key", e))?;
    let ids: Vec<String> = (0..people)
        .map(|i| IdentityCore::person_id(&sealer, &key(i)))
        .collect();
    for emu in &systems.scim {
        let mut members = Vec::with_capacity(people as usize);
        for (i, id) in ids.iter().enumerate() {
            let user = emu
                .seed_user(&json!({
                    "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
                    "userName": user_name(u32::try_from(i).unwrap_or(u32::MAX)),
                    "externalId": id,
                    "active": true,
                }))
                .map_err(|e| failed("seeding a SCIM user", e))?;
            members.push(json!({ "value": user["id"] }));
        }
        emu.seed_group(&json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
            "displayName": "Staff",
            "members": members,
        }))
        .map_err(|e| failed("seeding a SCIM group", e))?;
    }
    for i in 0..people {
        let id = systems
            .graph
            .add_user(CUSTOMER, &user_name(i), &format!("Person {i}"))
            .ok_or_else(|| failed("graph", "a user could not be added"))?;
        systems
            .graph
            .add_group_member(CUSTOMER, &systems.graph_group, &id);
    }

    // The hires, through the identity service: each reads all five systems
    // and finds them as the policy wants.
    let done = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let mut sends = tokio::task::JoinSet::new();
    let all: Vec<u32> = (0..people).collect();
    for chunk in all.chunks(all.len().div_ceil(16).max(1)) {
        let app = app.clone();
        let chunk = chunk.to_vec();
        let done = done.clone();
        sends.spawn(async move {
            for i in chunk {
                let event = LifecycleEvent {
                    id: format!("hire-{i}"),
                    person: key(i),
                    kind: EventKind::Hire,
                    source: "bench".into(),
                    occurred_at: app.clock.now(),
                    attributes: [("user_name".to_owned(), Some(user_name(i)))].into(),
                    person_kind: None,
                    roles: None,
                };
                let by =
                    gatehouse_core::audit::Provenance::system("bench revocation", app.clock.now());
                let hired = app
                    .identity
                    .ingest(tenant, event, &by)
                    .await
                    .map_err(|e| failed("a hire", e))?;
                if !hired.workflows.is_empty() {
                    return Err(failed(
                        "a hire",
                        format!("{} found its systems out of line", key(i)),
                    ));
                }
                let n = done.fetch_add(1, std::sync::atomic::Ordering::Relaxed) + 1;
                progress("people hired", n, people);
            }
            Ok::<(), CliError>(())
        });
    }
    while let Some(sent) = sends.join_next().await {
        sent.map_err(|e| failed("a sender", e))??;
    }
    Ok(ids)
}

fn key(i: u32) -> String {
    format!("E{i:06}")
}

async fn terminate(
    app: &App,
    tenant: gatehouse_core::id::TenantId,
    i: u32,
) -> Result<(), CliError> {
    let event = LifecycleEvent {
        id: format!("leave-{i}"),
        person: key(i),
        kind: EventKind::Terminate,
        source: "bench".into(),
        occurred_at: app.clock.now(),
        attributes: Default::default(),
        person_kind: None,
        roles: None,
    };
    let by = gatehouse_core::audit::Provenance::system("bench revocation", app.clock.now());
    app.identity
        .ingest(tenant, event, &by)
        .await
        .map_err(|e| failed("a termination", e))?;
    Ok(())
}

/// Waits until every one of `ids` has a complete revocation record.
async fn wait_complete(
    app: &App,
    tenant: gatehouse_core::id::TenantId,
    ids: &[String],
) -> Result<(), CliError> {
    let wanted: std::collections::BTreeSet<&str> = ids.iter().map(String::as_str).collect();
    let poll = if ids.len() == 1 {
        Duration::from_millis(2)
    } else {
        Duration::from_millis(50)
    };
    let deadline = Instant::now() + Duration::from_secs(600);
    loop {
        let done = if let [only] = ids {
            app.store
                .identity_revocation(tenant, only)
                .await?
                .is_some_and(|r| r.completed_at.is_some())
        } else {
            let complete = app
                .store
                .identity_revocations(tenant)
                .await?
                .into_iter()
                .filter(|r| r.completed_at.is_some() && wanted.contains(r.person_id.as_str()))
                .count();
            complete == wanted.len()
        };
        if done {
            return Ok(());
        }
        if Instant::now() > deadline {
            return Err(failed(
                "waiting",
                "revocations did not complete within 10 minutes",
            ));
        }
        tokio::time::sleep(poll).await;
    }
}

/// Checks on the emulators themselves that person `i` holds nothing.
fn check_revoked(systems: &Systems, i: u32) -> Result<(), CliError> {
    let name = user_name(i);
    for (app, emu) in SCIM_APPS.iter().zip(&systems.scim) {
        let user = emu
            .user_by_name(&name)
            .ok_or_else(|| failed(app, format!("{name} is gone")))?;
        if user["active"] != json!(false)
            || user
                .get("groups")
                .is_some_and(|g| g.as_array().is_some_and(|g| !g.is_empty()))
        {
            return Err(failed(app, format!("{name} is not revoked: {user}")));
        }
    }
    let user = systems
        .graph
        .user(CUSTOMER, &name)
        .ok_or_else(|| failed("m365", format!("{name} is gone")))?;
    let id = user["id"].as_str().unwrap_or_default().to_owned();
    if user["accountEnabled"] != json!(false)
        || systems
            .graph
            .group_members(CUSTOMER, &systems.graph_group)
            .contains(&id)
    {
        return Err(failed("m365", format!("{name} is not revoked: {user}")));
    }
    Ok(())
}
