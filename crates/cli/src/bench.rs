//! `gatehouse bench SCENARIO --json`: benchmarks. Progress goes to standard
//! error; the last line on standard output is one JSON object.
//!
//! Benchmarks never touch the configured key file or existing data: they
//! use a temporary directory by default; given a PostgreSQL URL, a
//! throw-away schema that is dropped afterwards; given a SQLite URL, that
//! file only if it holds no tenants.

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use gatehouse_core::clock::{Clock, SystemClock};
use gatehouse_core::secret::SecretName;
use gatehouse_core::store::Store;
use gatehouse_core::tenant::{DisplayName, Region, TenantSlug, TenantState};
use gatehouse_server::App;
use gatehouse_server::app::{NewTenant, TenantRef};
use gatehouse_store::{PgStore, SqliteStore};
use gatehouse_vault::{Keyring, LocalKeyFile};
use serde_json::json;

use crate::CliError;
use crate::config::ConfigArgs;

/// Benchmark options.
#[derive(Debug, clap::Args)]
pub struct BenchArgs {
    /// What to measure.
    #[arg(value_enum)]
    scenario: Scenario,
    /// Print the result as JSON (always the last line).
    #[arg(long)]
    json: bool,
    /// Tenants to create.
    #[arg(long, default_value_t = 1_000)]
    tenants: u32,
    /// Secrets in all.
    #[arg(long, default_value_t = 100_000)]
    secrets: u32,
    /// Concurrent workers (store: 8) or workflows in flight (engine: 64).
    #[arg(long)]
    concurrency: Option<u32>,
    /// Workflows to run (engine).
    #[arg(long, default_value_t = 10_000)]
    workflows: u32,
    /// Steps per workflow (engine).
    #[arg(long, default_value_t = 3)]
    steps: u32,
    /// Entries appended to the measured log (audit).
    #[arg(long, default_value_t = 1_000_000)]
    entries: u64,
    /// Entries in the log exported as OSCAL (audit).
    #[arg(long, default_value_t = 100_000)]
    oscal_entries: u64,
    /// Client onboardings driven to go-live at once (onboarding).
    #[arg(long, default_value_t = 500)]
    clients: u32,
    /// People in the tenant (revocation).
    #[arg(long, default_value_t = 10_000)]
    people: u32,
    /// Single leavers measured one after another (revocation).
    #[arg(long, default_value_t = 200)]
    runs: u32,
    /// Leavers terminated at once (revocation).
    #[arg(long, default_value_t = 1_000)]
    bulk: u32,
    /// Users provisioned over SCIM (scim).
    #[arg(long, default_value_t = 100_000)]
    users: u32,
    /// Gets, filters and patches measured, each (scim).
    #[arg(long, default_value_t = 5_000)]
    samples: u32,
}

#[derive(Debug, Clone, Copy, clap::ValueEnum)]
enum Scenario {
    /// Tenants with their keys, encrypted secrets written and read back.
    Store,
    /// Workflows of L0 no-op steps, journaled like any others.
    Engine,
    /// The audit log: appends, verification, inclusion proofs, OSCAL export.
    Audit,
    /// Won deals driven to go-live against the sandbox, approvals through the API.
    Onboarding,
    /// Leavers revoked on five sandbox systems: one at a time, then many at once.
    Revocation,
    /// A tenant's SCIM service provider: users created, read, filtered and patched over HTTP.
    Scim,
}

/// Peak resident memory of this process, in MiB (Linux `VmHWM`).
pub fn peak_rss_mb() -> f64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|status| {
            status
                .lines()
                .find_map(|l| l.strip_prefix("VmHWM:"))
                .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        })
        .map(|kb| (kb / 1024.0 * 10.0).round() / 10.0)
        .unwrap_or(0.0)
}

fn per_sec(count: u32, elapsed: Duration) -> f64 {
    (f64::from(count) / elapsed.as_secs_f64().max(1e-9)).round()
}

/// Progress on standard error: a line redrawn in place on a terminal, a
/// line per tenth of the work otherwise (CI logs, files).
pub(crate) fn progress(label: &str, done: u32, total: u32) {
    let terminal = std::io::IsTerminal::is_terminal(&std::io::stderr());
    if terminal && (done == total || done.is_multiple_of(1000)) {
        eprint!("\r{label}: {done}/{total}");
        if done == total {
            eprintln!();
        }
        let _ = std::io::stderr().flush();
    } else if !terminal && (done == total || done.is_multiple_of((total / 10).max(1))) {
        eprintln!("{label}: {done}/{total}");
    }
}

/// Runs a benchmark.
pub async fn run(args: &ConfigArgs, bench: BenchArgs) -> Result<ExitCode, CliError> {
    if bench.tenants == 0
        || bench.clients == 0
        || bench.workflows == 0
        || bench.steps == 0
        || bench.people == 0
        || bench.users == 0
        || bench.samples == 0
        || bench.concurrency == Some(0)
    {
        return Err(CliError::Usage(
            "--tenants, --clients, --workflows, --steps, --users, --samples and --concurrency must be at least 1"
                .into(),
        ));
    }
    let scratch = tempfile::tempdir()?;
    let (store, pg): (Arc<dyn Store>, Option<PgStore>) = match &args.database_url {
        Some(url) if url.starts_with("postgres") => {
            let pg = PgStore::connect_isolated(url, "bench").await?;
            (Arc::new(pg.clone()), Some(pg))
        }
        Some(url) => {
            // Only a new file: an installation's database (even one with no
            // tenants yet) must never receive benchmark data.
            let path = url
                .trim_start_matches("sqlite://")
                .trim_start_matches("sqlite:");
            let path = path.split('?').next().unwrap_or(path);
            if std::path::Path::new(path).exists() {
                return Err(CliError::Usage(format!(
                    "{path} exists; the benchmark only writes into a new SQLite file or a PostgreSQL URL"
                )));
            }
            (Arc::new(SqliteStore::connect(url).await?), None)
        }
        None => {
            let url = format!("sqlite://{}", scratch.path().join("bench.db").display());
            (Arc::new(SqliteStore::connect(&url).await?), None)
        }
    };
    let result = match bench.scenario {
        Scenario::Store => measure_store(store.clone(), scratch.path(), &bench).await,
        Scenario::Engine => crate::bench_engine::measure(store.clone(), &bench.engine_args()).await,
        Scenario::Audit => {
            let audit = crate::bench_audit::AuditBench {
                entries: bench.entries,
                oscal_entries: bench.oscal_entries,
            };
            crate::bench_audit::measure(store.clone(), scratch.path(), &audit).await
        }
        Scenario::Onboarding => {
            let onboarding = crate::bench_onboarding::OnboardingBench {
                clients: bench.clients,
            };
            crate::bench_onboarding::measure(args, store.clone(), scratch.path(), onboarding).await
        }
        Scenario::Revocation => {
            let revocation = crate::bench_revocation::RevocationBench {
                people: bench.people,
                runs: bench.runs,
                bulk: bench.bulk,
            };
            crate::bench_revocation::measure(args, store.clone(), scratch.path(), revocation).await
        }
        Scenario::Scim => {
            let scim = crate::bench_scim::ScimBench {
                users: bench.users,
                samples: bench.samples,
                concurrency: bench.concurrency.unwrap_or(16),
            };
            crate::bench_scim::measure(args, store.clone(), scratch.path(), scim).await
        }
    };
    store.close().await;
    // The throw-away schema goes whether the run succeeded or not.
    if let (Some(pg), Some(url)) = (pg, &args.database_url) {
        let admin = PgStore::connect(url).await?;
        admin.drop_named_schema(&pg).await?;
        admin.close_pool().await;
    }
    let result = result?;
    if !bench.json {
        let pretty = serde_json::to_string_pretty(&result).unwrap_or_default();
        eprintln!("{pretty}");
    }
    println!("{result}");
    Ok(ExitCode::SUCCESS)
}

impl BenchArgs {
    fn engine_args(&self) -> crate::bench_engine::EngineBench {
        crate::bench_engine::EngineBench {
            workflows: self.workflows,
            steps: self.steps,
            concurrency: self.concurrency.unwrap_or(64),
        }
    }
}

async fn measure_store(
    store: Arc<dyn Store>,
    scratch: &std::path::Path,
    bench: &BenchArgs,
) -> Result<serde_json::Value, CliError> {
    store.migrate().await?;
    let (provider, _) = LocalKeyFile::open_or_create(&scratch.join("kek.json"))?;
    let keyring = Keyring::new(Arc::new(provider), store.clone(), Duration::from_secs(3600));
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    // The store benchmark never runs workflows; the engine has nothing to do.
    let engine = Arc::new(gatehouse_engine::runtime::Engine::new(
        store.clone(),
        Arc::new(Vec::<gatehouse_engine::template::Template>::new()),
        Arc::new(gatehouse_engine::action::ActionRegistry::new()),
        clock.clone(),
        Default::default(),
    ));
    let app = Arc::new(App::new(store.clone(), Arc::new(keyring), clock, engine));
    let actor = gatehouse_server::Actor::System("bench");
    eprintln!(
        "bench store on {}: {} tenants, {} secrets, {} workers",
        store.backend().as_str(),
        bench.tenants,
        bench.secrets,
        bench.concurrency.unwrap_or(8)
    );

    // 1. Tenants, each with its own wrapped data key.
    let started = Instant::now();
    let mut tenants = Vec::with_capacity(bench.tenants as usize);
    for i in 0..bench.tenants {
        let new = NewTenant {
            slug: TenantSlug::parse(&format!("bench-tenant-{i}"))?,
            display_name: DisplayName::parse(&format!("Bench Tenant {i}"))?,
            region: Region::parse("eu")?,
            state: TenantState::Active,
        };
        tenants.push(app.create_tenant(&actor, new).await?.id);
        progress("tenants", i + 1, bench.tenants);
    }
    let tenant_elapsed = started.elapsed();

    // 2. Secrets, spread over the tenants, written by concurrent workers.
    let tenants = Arc::new(tenants);
    let run_workers = |write: bool| {
        let mut set = tokio::task::JoinSet::new();
        for worker in 0..bench.concurrency.unwrap_or(8) {
            let app = app.clone();
            let tenants = tenants.clone();
            let (total, workers) = (bench.secrets, bench.concurrency.unwrap_or(8));
            set.spawn(async move {
                let actor = gatehouse_server::Actor::System("bench");
                let mut i = worker;
                while i < total {
                    let tenant = tenants[(i % tenants.len() as u32) as usize];
                    let name = SecretName::parse(&format!("bench.secret-{i}"))?;
                    if write {
                        let value = format!("value-{i}-{}", "x".repeat(48));
                        app.put_secret(&actor, &TenantRef::Id(tenant), &name, value.as_bytes())
                            .await?;
                    } else {
                        let value = app.reveal_secret(&actor, tenant, &name).await?;
                        if !value.starts_with(format!("value-{i}-").as_bytes()) {
                            return Err(CliError::Usage(format!("secret {i} read back wrong")));
                        }
                    }
                    i += workers;
                    if worker == 0 {
                        progress(
                            if write {
                                "secret writes"
                            } else {
                                "secret reads"
                            },
                            i.min(total),
                            total,
                        );
                    }
                }
                Ok::<(), CliError>(())
            });
        }
        set
    };
    let started = Instant::now();
    let mut writers = run_workers(true);
    while let Some(joined) = writers.join_next().await {
        joined.map_err(|e| CliError::Usage(format!("a worker failed: {e}")))??;
    }
    let write_elapsed = started.elapsed();

    let started = Instant::now();
    let mut readers = run_workers(false);
    while let Some(joined) = readers.join_next().await {
        joined.map_err(|e| CliError::Usage(format!("a worker failed: {e}")))??;
    }
    let read_elapsed = started.elapsed();
    eprintln!();

    Ok(json!({
        "scenario": "store",
        "backend": store.backend().as_str(),
        "tenants": bench.tenants,
        "secrets": bench.secrets,
        "concurrency": bench.concurrency.unwrap_or(8),
        "tenants_per_sec": per_sec(bench.tenants, tenant_elapsed),
        "secret_writes_per_sec": per_sec(bench.secrets, write_elapsed),
        "secret_reads_per_sec": per_sec(bench.secrets, read_elapsed),
        "tenant_secs": tenant_elapsed.as_secs_f64(),
        "secret_write_secs": write_elapsed.as_secs_f64(),
        "secret_read_secs": read_elapsed.as_secs_f64(),
        "peak_rss_mb": peak_rss_mb(),
    }))
}
