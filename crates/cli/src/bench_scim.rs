//! `gatehouse bench scim`: a tenant's SCIM 2.0 service provider under an
//! identity provider's load, over real HTTP.
//!
//! Gatehouse runs in-process as `serve` runs it (the same wiring, the audit
//! sequencer included, on loopback) on the benchmark's scratch database.
//! One tenant and one SCIM token are made directly; everything else goes
//! through `/scim/v2/{tenant}/` with a bounded number of concurrent
//! clients, as an IdP's provisioning agent would:
//!
//! 1. **create** N users shaped like Entra ID's (userName, name, emails,
//!    externalId, the Enterprise extension's department and manager);
//! 2. **get** users by id;
//! 3. **filter** by `userName eq` and `externalId eq` (the lookups Entra ID
//!    and Okta make before every write; both take the blind index);
//! 4. **patch**: Entra-style `Replace` of `title` and `active`;
//! 5. one **unindexed filter**, `name.familyName sw "…"`, a few times and
//!    one at a time: it opens every user of the tenant, so its cost is the
//!    tenant's size;
//! 6. the tenant's `totalResults` over SCIM, to check that N users exist.
//!
//! Figures: requests per second and p50/p99 latency of each operation (as
//! the client sees it), `p99_ms` the worst p99 of create, get, filter and
//! patch, and `peak_rss_mb` of the whole process (server and clients).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::{Duration, Instant};

use gatehouse_core::store::Store;
use gatehouse_core::tenant::{DisplayName, Region, TenantSlug, TenantState};
use gatehouse_server::Actor;
use gatehouse_server::app::{NewTenant, TenantRef};
use gatehouse_server::http::{ApiState, HttpConfig};
use gatehouse_server::metrics::Metrics;
use serde_json::{Value, json};

use crate::CliError;
use crate::bench::{peak_rss_mb, progress};
use crate::config::{Config, ConfigArgs, KeyProviderKind};

const USER: &str = "urn:ietf:params:scim:schemas:core:2.0:User";
const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";
const PATCH_OP: &str = "urn:ietf:params:scim:api:messages:2.0:PatchOp";
const SCIM_JSON: &str = "application/scim+json";
/// The slug of the benchmark's tenant.
const TENANT: &str = "bench-scim";
/// Family names the users are drawn from; the unindexed filter asks for
/// one prefix of them, so it matches about one user in this many.
const FAMILIES: [&str; 16] = [
    "Andersen", "Baker", "Chen", "Dubois", "Evans", "Fischer", "Garcia", "Haddad", "Ito", "Jensen",
    "Kowalski", "Lopez", "Moreau", "Novak", "Okafor", "Patel",
];
const GIVEN: [&str; 8] = [
    "Alex", "Sam", "Kim", "Noor", "Ravi", "Lena", "Tomás", "Yuki",
];
const DEPARTMENTS: [&str; 6] = ["Sales", "Finance", "Engineering", "Support", "Legal", "HR"];
/// Runs of the unindexed filter (each reads the whole tenant).
const SCAN_RUNS: u32 = 5;

/// The SCIM benchmark's settings.
#[derive(Debug, Clone, Copy)]
pub struct ScimBench {
    /// Users created.
    pub users: u32,
    /// Gets, filters and patches measured (each).
    pub samples: u32,
    /// Concurrent clients.
    pub concurrency: u32,
}

/// Runs the benchmark on `store` (migrated here), with its key file and
/// configuration in `scratch`.
pub async fn measure(
    args: &ConfigArgs,
    store: Arc<dyn Store>,
    scratch: &std::path::Path,
    bench: ScimBench,
) -> Result<Value, CliError> {
    store.migrate().await?;
    let mut scratch_args = args.clone();
    scratch_args.config = None;
    scratch_args.data_dir = Some(scratch.to_path_buf());
    scratch_args.key_file = Some(scratch.join("kek.json"));
    scratch_args.key_provider = Some(KeyProviderKind::Local);
    let config = Config::load(&scratch_args, Some(SocketAddr::from(([127, 0, 0, 1], 0))))?;
    eprintln!(
        "bench scim on {}: {} users, {} samples, {} clients",
        store.backend().as_str(),
        bench.users,
        bench.samples,
        bench.concurrency
    );

    // Gatehouse, wired as `serve` wires it (the engine has nothing to do).
    let (app, _) = crate::wiring::open_app(&config, store.clone()).await?;
    app.bootstrap().await?;
    let (stop, stopping) = tokio::sync::watch::channel(false);
    let mut workers = tokio::task::JoinSet::new();
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
    let router = gatehouse_server::http::router(
        ApiState {
            app: app.clone(),
            metrics: Arc::new(Metrics::new()),
        },
        HttpConfig {
            max_body_bytes: config.max_body_bytes,
        },
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

    let result = async {
        let actor = Actor::System("bench");
        app.create_tenant(
            &actor,
            NewTenant {
                slug: TenantSlug::parse(TENANT)?,
                display_name: DisplayName::parse("Bench SCIM")?,
                region: Region::parse("eu")?,
                state: TenantState::Active,
            },
        )
        .await?;
        let token = app
            .create_scim_token(&actor, &TenantRef::parse(TENANT), "bench")
            .await?;
        let client = Client::new(&base, token.secret.as_str())?;
        run(&client, bench).await
    }
    .await;

    let _ = stop.send(true);
    while workers.join_next().await.is_some() {}
    let mut result = result?;
    result["backend"] = json!(store.backend().as_str());
    result["peak_rss_mb"] = json!(peak_rss_mb());
    Ok(result)
}

fn bench_error(what: &str, e: &dyn std::fmt::Display) -> CliError {
    CliError::Usage(format!("bench scim: {what}: {e}"))
}

/// A SCIM client of the benchmark's tenant.
#[derive(Clone)]
struct Client {
    http: reqwest::Client,
    base: String,
    token: Arc<str>,
}

impl Client {
    fn new(base: &str, token: &str) -> Result<Self, CliError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(600))
            .build()
            .map_err(|e| bench_error("the HTTP client", &e))?;
        Ok(Self {
            http,
            base: format!("{base}/scim/v2/{TENANT}"),
            token: token.into(),
        })
    }

    /// One request; `Err` unless the status is `expected`.
    async fn call(
        &self,
        method: reqwest::Method,
        path: &str,
        body: Option<&Value>,
        expected: u16,
    ) -> Result<Value, CliError> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(&*self.token);
        if let Some(body) = body {
            request = request
                .header(reqwest::header::CONTENT_TYPE, SCIM_JSON)
                .body(body.to_string());
        }
        let response = request
            .send()
            .await
            .map_err(|e| bench_error(&format!("{method} {path}"), &e))?;
        let status = response.status().as_u16();
        let text = response
            .text()
            .await
            .map_err(|e| bench_error(&format!("{method} {path}"), &e))?;
        if status != expected {
            return Err(bench_error(
                &format!("{method} {path}"),
                &format!("{status} (expected {expected}): {text}"),
            ));
        }
        if text.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text)
            .map_err(|e| bench_error(&format!("{method} {path}: the answer"), &e))
    }
}

/// User `i`, as Entra ID provisions one.
fn user_body(i: u32) -> Value {
    let family = FAMILIES[i as usize % FAMILIES.len()];
    let given = GIVEN[(i as usize / FAMILIES.len()) % GIVEN.len()];
    let login = format!("{}.{}{i}", given.to_lowercase(), family.to_lowercase());
    let mut user = json!({
        "schemas": [USER, ENTERPRISE],
        "userName": format!("{login}@contoso.example"),
        "externalId": format!("b7e2c0de-0000-4000-8000-{i:012}"),
        "active": true,
        "displayName": format!("{given} {family}"),
        "name": {"givenName": given, "familyName": family, "formatted": format!("{given} {family}")},
        "emails": [{"value": format!("{login}@contoso.example"), "type": "work", "primary": true}],
        "title": "Associate",
        "preferredLanguage": "en-GB",
        (ENTERPRISE): {
            "employeeNumber": format!("{i:07}"),
            "department": DEPARTMENTS[i as usize % DEPARTMENTS.len()],
        },
    });
    if i > 0 {
        // Every user reports to the first of their department's block.
        user[ENTERPRISE]["manager"] =
            json!({"value": format!("b7e2c0de-0000-4000-8000-{:012}", i / 50 * 50)});
    }
    user
}

/// A deterministic spread of indexes in `0..n` (a multiplicative walk), so
/// the reads do not follow the order of creation.
fn pick(sample: u32, n: u32) -> u32 {
    ((u64::from(sample) * 2_654_435_761) % u64::from(n.max(1))) as u32
}

/// Latencies of one operation, in milliseconds.
#[derive(Default)]
struct Timings {
    ms: Vec<f64>,
    elapsed: Duration,
}

impl Timings {
    fn quantile(&self, q: f64) -> f64 {
        let mut sorted = self.ms.clone();
        sorted.sort_by(f64::total_cmp);
        if sorted.is_empty() {
            return 0.0;
        }
        let rank = ((sorted.len() as f64) * q).ceil() as usize;
        round2(sorted[rank.clamp(1, sorted.len()) - 1])
    }

    fn per_sec(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64().max(1e-9);
        ((self.ms.len() as f64 / secs) * 10.0).round() / 10.0
    }
}

fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

/// Runs `count` requests from `concurrency` clients; `op(i)` makes the
/// i-th and returns what it produced.
async fn drive<F, Fut, T>(
    label: &'static str,
    count: u32,
    concurrency: u32,
    op: F,
) -> Result<(Timings, Vec<(u32, T)>), CliError>
where
    F: Fn(u32) -> Fut + Send + Sync + 'static,
    Fut: std::future::Future<Output = Result<T, CliError>> + Send,
    T: Send + 'static,
{
    let op = Arc::new(op);
    let next = Arc::new(AtomicU32::new(0));
    let done = Arc::new(AtomicU32::new(0));
    let started = Instant::now();
    let mut set = tokio::task::JoinSet::new();
    for _ in 0..concurrency.min(count).max(1) {
        let (op, next, done) = (op.clone(), next.clone(), done.clone());
        set.spawn(async move {
            let mut ms = Vec::new();
            let mut out = Vec::new();
            loop {
                let i = next.fetch_add(1, Ordering::Relaxed);
                if i >= count {
                    break;
                }
                let t = Instant::now();
                let produced = op(i).await?;
                ms.push(t.elapsed().as_secs_f64() * 1000.0);
                out.push((i, produced));
                progress(label, done.fetch_add(1, Ordering::Relaxed) + 1, count);
            }
            Ok::<_, CliError>((ms, out))
        });
    }
    let mut timings = Timings::default();
    let mut produced = Vec::with_capacity(count as usize);
    while let Some(joined) = set.join_next().await {
        let (ms, out) = joined.map_err(|e| bench_error("a client failed", &e))??;
        timings.ms.extend(ms);
        produced.extend(out);
    }
    timings.elapsed = started.elapsed();
    Ok((timings, produced))
}

fn one_match(list: &Value, what: &str) -> Result<(), CliError> {
    if list["totalResults"] == 1 {
        Ok(())
    } else {
        Err(bench_error(
            what,
            &format!("expected one match, got {}", list["totalResults"]),
        ))
    }
}

async fn run(client: &Client, bench: ScimBench) -> Result<Value, CliError> {
    let started = Instant::now();
    let (n, samples, clients) = (bench.users, bench.samples, bench.concurrency);

    // 1. Creates.
    let c = client.clone();
    let (create, created) = drive("create", n, clients, move |i| {
        let c = c.clone();
        async move {
            let made = c
                .call(reqwest::Method::POST, "/Users", Some(&user_body(i)), 201)
                .await?;
            made["id"]
                .as_str()
                .map(ToOwned::to_owned)
                .ok_or_else(|| bench_error("create", &"the answer has no id"))
        }
    })
    .await?;
    let mut ids = vec![String::new(); n as usize];
    for (i, id) in created {
        ids[i as usize] = id;
    }
    let ids: Arc<Vec<String>> = Arc::new(ids);

    // 2. Gets by id.
    let (c, idv) = (client.clone(), ids.clone());
    let (get, _) = drive("get", samples, clients, move |s| {
        let (c, idv) = (c.clone(), idv.clone());
        async move {
            let i = pick(s, n);
            let got = c
                .call(
                    reqwest::Method::GET,
                    &format!("/Users/{}", idv[i as usize]),
                    None,
                    200,
                )
                .await?;
            if got["userName"] != user_body(i)["userName"] {
                return Err(bench_error("get", &format!("user {i} read back wrong")));
            }
            Ok(())
        }
    })
    .await?;

    // 3. Equality filters, half on userName, half on externalId.
    let c = client.clone();
    let (filter, _) = drive("filter", samples, clients, move |s| {
        let c = c.clone();
        async move {
            let i = pick(s.wrapping_add(7), n);
            let body = user_body(i);
            let filter = if s % 2 == 0 {
                format!(
                    "userName eq \"{}\"",
                    body["userName"].as_str().unwrap_or("")
                )
            } else {
                format!(
                    "externalId eq \"{}\"",
                    body["externalId"].as_str().unwrap_or("")
                )
            };
            let list = c
                .call(
                    reqwest::Method::GET,
                    &format!("/Users?filter={}", urlencode(&filter)),
                    None,
                    200,
                )
                .await?;
            one_match(&list, &filter)
        }
    })
    .await?;

    // 4. Entra-style PATCH: Replace title and active, values as strings.
    // Each sample patches another user (no two clients race on one user,
    // which would be a 412), so there are at most N of them.
    let (c, idv) = (client.clone(), ids.clone());
    let (patch, _) = drive("patch", samples.min(n), clients, move |s| {
        let (c, idv) = (c.clone(), idv.clone());
        async move {
            let i = pick(s.wrapping_add(13), n);
            let body = json!({
                "schemas": [PATCH_OP],
                "Operations": [
                    {"op": "Replace", "path": "title", "value": format!("Engineer {s}")},
                    {"op": "Replace", "path": "active", "value": if s % 2 == 0 { "False" } else { "True" }},
                ],
            });
            let patched = c
                .call(
                    reqwest::Method::PATCH,
                    &format!("/Users/{}", idv[i as usize]),
                    Some(&body),
                    200,
                )
                .await?;
            if patched["title"] != format!("Engineer {s}") {
                return Err(bench_error("patch", &format!("user {i} was not patched")));
            }
            Ok(())
        }
    })
    .await?;

    // 5. The unindexed filter, one request at a time.
    let c = client.clone();
    let family = FAMILIES[FAMILIES.len() - 1];
    let prefix = &family[..2];
    let (scan, matched) = drive("unindexed filter", SCAN_RUNS, 1, move |_| {
        let c = c.clone();
        async move {
            let filter = format!("name.familyName sw \"{prefix}\"");
            let list = c
                .call(
                    reqwest::Method::GET,
                    &format!("/Users?filter={}&count=1", urlencode(&filter)),
                    None,
                    200,
                )
                .await?;
            Ok(list["totalResults"].as_u64().unwrap_or(0))
        }
    })
    .await?;
    let scan_matches = matched.first().map_or(0, |(_, m)| *m);
    let expected_matches = (0..n).filter(|i| FAMILIES[*i as usize % FAMILIES.len()] == family);
    let expected_matches = expected_matches.count() as u64;
    if scan_matches != expected_matches {
        return Err(bench_error(
            "the unindexed filter",
            &format!("{scan_matches} matches, expected {expected_matches}"),
        ));
    }

    // 6. The tenant holds N users, by SCIM's own count.
    let counted = Instant::now();
    let all = client
        .call(reqwest::Method::GET, "/Users?count=0", None, 200)
        .await?;
    let count_ms = counted.elapsed().as_secs_f64() * 1000.0;
    let total = all["totalResults"].as_u64().unwrap_or(0);
    if total != u64::from(n) {
        return Err(bench_error(
            "the count",
            &format!("the tenant holds {total} users, expected {n}"),
        ));
    }
    eprintln!("users over SCIM: {total}");

    let p99 = [&create, &get, &filter, &patch]
        .iter()
        .map(|t| t.quantile(0.99))
        .fold(0.0, f64::max);
    Ok(json!({
        "scenario": "scim",
        "users": n,
        "samples": samples,
        "concurrency": clients,
        "total_results": total,
        "create_per_sec": create.per_sec(),
        "get_per_sec": get.per_sec(),
        "filter_per_sec": filter.per_sec(),
        "patch_per_sec": patch.per_sec(),
        "p99_ms": p99,
        "create_p50_ms": create.quantile(0.5),
        "create_p99_ms": create.quantile(0.99),
        "get_p50_ms": get.quantile(0.5),
        "get_p99_ms": get.quantile(0.99),
        "filter_p50_ms": filter.quantile(0.5),
        "filter_p99_ms": filter.quantile(0.99),
        "patch_p50_ms": patch.quantile(0.5),
        "patch_p99_ms": patch.quantile(0.99),
        "unindexed_filter": format!("name.familyName sw \"{prefix}\""),
        "unindexed_filter_runs": SCAN_RUNS,
        "unindexed_filter_matches": scan_matches,
        "unindexed_filter_p50_ms": scan.quantile(0.5),
        "unindexed_filter_max_ms": scan.quantile(1.0),
        "count_all_ms": round2(count_ms),
        "elapsed_secs": round2(started.elapsed().as_secs_f64()),
    }))
}

fn urlencode(s: &str) -> String {
    let mut out = String::with_capacity(s.len() * 3);
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}
