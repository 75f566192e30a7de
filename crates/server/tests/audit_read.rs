//! The audit log's read API over real HTTP: browsing with filters and
//! cursors, single entries, logs, inclusion and consistency proofs (checked
//! with the library's verifiers and against a `MemoryTree` of the same
//! leaves) and verification; every route tested as a stranger. On SQLite,
//! and on PostgreSQL when `GATEHOUSE_TEST_DATABASE_URL` is set.

use gatehouse_audit::{
    Checkpoint, Hash, MemoryTree, Signer as _, checkpoint, verify_consistency, verify_inclusion,
};
use gatehouse_core::audit::{AuditCheckpoint, AuditRecord, SYSTEM_LOG, log_origin};
use gatehouse_core::id::TenantId;
use gatehouse_engine::action::ActionRegistry;
use gatehouse_server::audit::Sequencer;
use gatehouse_store::testing::TestDatabase;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use time::OffsetDateTime;

type Error = Box<dyn std::error::Error + Send + Sync>;
type TestResult = Result<(), Error>;

use common::KEY_NAME;
/// Request bodies the test server accepts (the default).
const MAX_BODY: usize = gatehouse_server::http::DEFAULT_MAX_BODY_BYTES;
/// Entries per log written by the test (the API's own records may add more).
const PER_LOG: u64 = 37;

mod common;

use common::Served as TestApp;

impl TestApp {
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
    ) -> Result<(StatusCode, Value), Error> {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        let response = request.send().await?;
        let status = response.status();
        let text = response.text().await?;
        Ok((
            status,
            serde_json::from_str(&text).unwrap_or(Value::String(text)),
        ))
    }

    /// GET as `token`, expecting 200.
    async fn get(&self, path: &str, token: &str) -> Result<Value, Error> {
        let (status, body) = self.call(Method::GET, path, Some(token)).await?;
        if status != StatusCode::OK {
            return Err(format!("GET {path}: {status} {body}").into());
        }
        Ok(body)
    }

    async fn post_admin(&self, path: &str, body: Value) -> Result<Value, Error> {
        let response = self
            .http
            .post(format!("{}{path}", self.base))
            .bearer_auth(&self.admin)
            .json(&body)
            .send()
            .await?;
        let status = response.status();
        let body: Value = response.json().await?;
        if !status.is_success() {
            return Err(format!("POST {path}: {status} {body}").into());
        }
        Ok(body)
    }

    async fn operator(&self, name: &str, role: &str) -> Result<String, Error> {
        let body = self
            .post_admin(
                "/api/v1/operators",
                json!({"name": name, "display_name": name, "role": role}),
            )
            .await?;
        Ok(body["token"]["token"]
            .as_str()
            .ok_or("no token")?
            .to_owned())
    }

    async fn tenant(&self, slug: &str) -> Result<TenantId, Error> {
        let body = self
            .post_admin(
                "/api/v1/tenants",
                json!({"slug": slug, "display_name": slug, "region": "eu"}),
            )
            .await?;
        Ok(body["id"].as_str().ok_or("no id")?.parse()?)
    }
}

fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

fn hashes(value: &Value) -> Result<Vec<Hash>, Error> {
    value
        .as_array()
        .ok_or("not an array")?
        .iter()
        .map(|h| Ok(Hash::from_hex(h.as_str().ok_or("not a string")?)?))
        .collect()
}

fn hash(value: &Value) -> Result<Hash, Error> {
    Ok(Hash::from_hex(value.as_str().ok_or("not a string")?)?)
}

/// Writes `PER_LOG` records to each log, actors and actions varying, and
/// sequences them; signs a checkpoint of the system log at size 20.
async fn fill(t: &TestApp, tenants: &[TenantId]) -> TestResult {
    let start = OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
    let mut records = Vec::new();
    for i in 0..PER_LOG {
        for (l, tenant) in [None]
            .into_iter()
            .chain(tenants.iter().copied().map(Some))
            .enumerate()
        {
            records.push(AuditRecord {
                at: start + time::Duration::seconds(i as i64),
                tenant_id: tenant,
                actor: if (i + l as u64).is_multiple_of(3) {
                    "op_ann".into()
                } else {
                    "op_bob".into()
                },
                action: if i.is_multiple_of(2) {
                    "test.workflow.ran".into()
                } else {
                    "test.event.received".into()
                },
                subject: format!("thing-{i}"),
                details: json!({"n": i}),
            });
        }
    }
    t.app.store.queue_audit(&records).await?;
    let sequencer = Sequencer::new(t.app.store.clone(), t.app.keyring.clone());
    while sequencer.run_once(1000).await? > 0 {}
    Ok(())
}

/// Signs and stores a checkpoint of `log` at its current size.
async fn checkpoint_now(t: &TestApp, log: &str) -> Result<(u64, Hash), Error> {
    let head = t.app.store.audit_head(log).await?;
    let frontier = gatehouse_audit::Frontier::restore(
        head.size,
        head.frontier
            .iter()
            .map(|n| Hash::from_bytes(n.hash))
            .collect(),
    )?;
    let signer = t.app.audit_signer.as_ref().ok_or("no signer")?;
    let note = Checkpoint::new(log_origin(KEY_NAME, log), head.size, frontier.root())?
        .sign(signer.as_ref())
        .await?
        .to_string();
    t.app
        .store
        .put_checkpoint(&AuditCheckpoint {
            log: log.into(),
            size: head.size,
            note,
            created_at: OffsetDateTime::UNIX_EPOCH,
        })
        .await?;
    Ok((head.size, frontier.root()))
}

async fn every_route_refuses_strangers_and_other_roles(t: &TestApp) -> TestResult {
    let acme = t.tenant("acme").await?;
    fill(t, &[acme]).await?;
    let tech = t.operator("tom.tech", "technician").await?;
    let auditor = t.operator("ada.audit", "auditor").await?;
    let routes = [
        (Method::GET, "/api/v1/audit/entries".to_owned()),
        (Method::GET, "/api/v1/audit/logs".to_owned()),
        (Method::GET, "/api/v1/audit/logs/acme/entries/0".to_owned()),
        (
            Method::GET,
            "/api/v1/audit/logs/acme/proofs/inclusion?index=0".to_owned(),
        ),
        (
            Method::GET,
            "/api/v1/audit/logs/acme/proofs/consistency?old=1&new=2".to_owned(),
        ),
        (Method::POST, "/api/v1/audit/logs/acme/verify".to_owned()),
    ];
    for (method, path) in &routes {
        let (status, body) = t.call(method.clone(), path, None).await?;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}: {body}");
        let (status, body) = t
            .call(method.clone(), path, Some("gth_not-a-real-token"))
            .await?;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}: {body}");
        let (status, body) = t.call(method.clone(), path, Some(&tech)).await?;
        assert_eq!(status, StatusCode::FORBIDDEN, "{method} {path}: {body}");
        let (status, body) = t.call(method.clone(), path, Some(&auditor)).await?;
        assert_eq!(status, StatusCode::OK, "{method} {path}: {body}");
        // An unknown tenant's log is not found.
        if !path.starts_with("/api/v1/audit/logs/") {
            continue;
        }
        for other in ["globex", "ten_01jd8x3k2q9f6v0c4m7r5t8w1y"] {
            let path = path.replace("acme", other);
            let (status, body) = t.call(method.clone(), &path, Some(&auditor)).await?;
            assert_eq!(status, StatusCode::NOT_FOUND, "{method} {path}: {body}");
        }
    }
    let (status, body) = t
        .call(
            Method::GET,
            "/api/v1/audit/entries?tenant=globex",
            Some(&auditor),
        )
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(error_code(&body), "tenant_not_found");
    // A tenant that exists but has no log yet.
    t.tenant("initech").await?;
    let (status, body) = t
        .call(
            Method::GET,
            "/api/v1/audit/logs/initech/proofs/inclusion?index=0",
            Some(&auditor),
        )
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(error_code(&body), "audit_log_not_found");
    Ok(())
}

async fn entries_are_browsed_with_filters_and_cursors(t: &TestApp) -> TestResult {
    let acme = t.tenant("acme").await?;
    let globex = t.tenant("globex").await?;
    fill(t, &[acme, globex]).await?;
    let auditor = t.operator("ada.audit", "auditor").await?;

    // Every page of 10 of acme's `op_ann` entries, through the cursor.
    let mut seen = Vec::new();
    let mut path = "/api/v1/audit/entries?tenant=acme&actor=op_ann&limit=10".to_owned();
    loop {
        let page = t.get(&path, &auditor).await?;
        let entries = page["entries"].as_array().ok_or("no entries")?;
        assert!(entries.len() <= 10);
        for e in entries {
            assert_eq!(e["log"], acme.to_string());
            assert_eq!(e["actor"], "op_ann");
            let leaf = e["leaf"].as_str().ok_or("no leaf")?;
            assert_eq!(
                gatehouse_audit::leaf_hash(leaf.as_bytes()).to_hex(),
                e["leaf_hash"].as_str().ok_or("no hash")?
            );
            seen.push(e["subject"].as_str().ok_or("no subject")?.to_owned());
        }
        match page["next_cursor"].as_str() {
            Some(cursor) => {
                path = format!(
                    "/api/v1/audit/entries?tenant=acme&actor=op_ann&limit=10&cursor={cursor}"
                );
            }
            None => break,
        }
    }
    // acme is log 1 in `fill`: its op_ann entries are those with (i+1) % 3 == 0
    // (the API's own records of acme come first and are by the admin).
    let expected: Vec<String> = (0..PER_LOG)
        .filter(|i| (i + 1).is_multiple_of(3))
        .map(|i| format!("thing-{i}"))
        .collect();
    assert_eq!(seen, expected);

    // An action prefix, a time range (half-open) across all logs.
    let page = t
        .get(
            "/api/v1/audit/entries?action=test.workflow.*&since=2024-10-04T00:00:02Z&until=2024-10-04T00:00:06Z&limit=1000",
            &auditor,
        )
        .await?;
    let entries = page["entries"].as_array().ok_or("no entries")?;
    // Seconds 2 and 4, three logs each, by time then log.
    assert_eq!(entries.len(), 6, "{page}");
    assert!(entries.iter().all(|e| e["action"] == "test.workflow.ran"));
    assert!(page.get("next_cursor").is_none());
    let mut logs: Vec<&str> = entries[..3]
        .iter()
        .filter_map(|e| e["log"].as_str())
        .collect();
    let mut sorted = logs.clone();
    sorted.sort_unstable();
    assert_eq!(logs, sorted);
    logs.dedup();
    assert_eq!(logs.len(), 3);

    // Bad input says what is wrong.
    for (query, status, code) in [
        ("since=yesterday", StatusCode::BAD_REQUEST, "invalid_time"),
        (
            "until=2024-13-01T00:00:00Z",
            StatusCode::BAD_REQUEST,
            "invalid_time",
        ),
        (
            "cursor=not-a-cursor",
            StatusCode::BAD_REQUEST,
            "invalid_cursor",
        ),
        (
            "action=work*flow",
            StatusCode::BAD_REQUEST,
            "invalid_action",
        ),
        ("limit=0", StatusCode::UNPROCESSABLE_ENTITY, "invalid_input"),
        (
            "limit=1001",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
        ),
        (
            "since=2024-10-05T00:00:00Z&until=2024-10-04T00:00:00Z",
            StatusCode::UNPROCESSABLE_ENTITY,
            "invalid_input",
        ),
    ] {
        let (got, body) = t
            .call(
                Method::GET,
                &format!("/api/v1/audit/entries?{query}"),
                Some(&auditor),
            )
            .await?;
        assert_eq!(got, status, "{query}: {body}");
        assert_eq!(error_code(&body), code, "{query}: {body}");
    }

    // Logs, with slugs; one entry by log name or slug.
    let logs = t.get("/api/v1/audit/logs", &auditor).await?;
    let logs = logs["logs"].as_array().ok_or("no logs")?;
    let acme_log = logs
        .iter()
        .find(|l| l["log"] == acme.to_string())
        .ok_or("no acme log")?;
    assert_eq!(acme_log["tenant_slug"], "acme");
    assert!(acme_log["size"].as_u64() >= Some(PER_LOG));
    let system = logs
        .iter()
        .find(|l| l["log"] == SYSTEM_LOG)
        .ok_or("no system log")?;
    assert!(system.get("tenant_slug").is_none());
    let by_slug = t.get("/api/v1/audit/logs/acme/entries/4", &auditor).await?;
    let by_id = t
        .get(&format!("/api/v1/audit/logs/{acme}/entries/4"), &auditor)
        .await?;
    assert_eq!(by_slug, by_id);
    assert_eq!(by_slug["idx"], 4);
    let stored = t.app.store.audit_entry(&acme.to_string(), 4).await?;
    assert_eq!(by_slug["leaf"], stored.leaf);
    let (status, body) = t
        .call(
            Method::GET,
            "/api/v1/audit/logs/acme/entries/100000",
            Some(&auditor),
        )
        .await?;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert_eq!(error_code(&body), "audit_entry_not_found");
    Ok(())
}

async fn proofs_verify_against_roots_and_checkpoints(t: &TestApp) -> TestResult {
    fill(t, &[]).await?;
    let auditor = t.operator("ada.audit", "auditor").await?;
    let (signed_size, signed_root) = checkpoint_now(t, SYSTEM_LOG).await?;
    fill(t, &[]).await?;
    let size = t
        .app
        .store
        .audit_log_size(SYSTEM_LOG)
        .await?
        .ok_or("no log")?;
    let mut tree = MemoryTree::new();
    for leaf in t.app.store.audit_entries(SYSTEM_LOG, 0, 100_000).await? {
        tree.push_entry(leaf.leaf.as_bytes())?;
    }
    assert_eq!(tree.size(), size);
    let signer = t.app.audit_signer.as_ref().ok_or("no signer")?;
    let keys = [signer.verifier_key()];

    for index in [0, 1, signed_size - 1, signed_size, size - 1] {
        // Against the whole log.
        let body = t
            .get(
                &format!("/api/v1/audit/logs/system/proofs/inclusion?index={index}"),
                &auditor,
            )
            .await?;
        assert_eq!(body["tree_size"], size);
        let leaf = hash(&body["leaf_hash"])?;
        let root = hash(&body["root"])?;
        let proof = hashes(&body["proof"])?;
        assert_eq!(Some(leaf), tree.leaf(index));
        assert_eq!(root, tree.root());
        assert_eq!(proof, tree.inclusion_proof(index, size)?);
        verify_inclusion(&leaf, index, size, &proof, &root)?;
        // Against the checkpoint's size, with the checkpoint.
        if index < signed_size {
            let body = t
                .get(
                    &format!("/api/v1/audit/logs/system/proofs/inclusion?index={index}&tree_size={signed_size}"),
                    &auditor,
                )
                .await?;
            let note = body["checkpoint"].as_str().ok_or("no checkpoint")?;
            let (cp, _) = checkpoint::open(note, &keys, &log_origin(KEY_NAME, SYSTEM_LOG))?;
            assert_eq!(cp.root(), signed_root);
            assert_eq!(hash(&body["root"])?, signed_root);
            verify_inclusion(
                &leaf,
                index,
                signed_size,
                &hashes(&body["proof"])?,
                &signed_root,
            )?;
        }
    }
    for (old, new) in [
        (0, size),
        (1, size),
        (signed_size, size),
        (3, signed_size),
        (size, size),
    ] {
        let body = t
            .get(
                &format!("/api/v1/audit/logs/system/proofs/consistency?old={old}&new={new}"),
                &auditor,
            )
            .await?;
        let proof = hashes(&body["proof"])?;
        assert_eq!(proof, tree.consistency_proof(old, new)?);
        assert_eq!(hash(&body["old_root"])?, tree.root_at(old)?);
        assert_eq!(hash(&body["new_root"])?, tree.root_at(new)?);
        verify_consistency(
            old,
            new,
            &hash(&body["old_root"])?,
            &hash(&body["new_root"])?,
            &proof,
        )?;
        assert_eq!(body["old_checkpoint"].is_string(), old == signed_size);
    }
    for query in [
        format!("inclusion?index={size}"),
        format!("inclusion?index=0&tree_size={}", size + 1),
        "inclusion?index=0&tree_size=0".to_owned(),
        format!("consistency?old=2&new={}", size + 1),
        "consistency?old=3&new=2".to_owned(),
    ] {
        let (status, body) = t
            .call(
                Method::GET,
                &format!("/api/v1/audit/logs/system/proofs/{query}"),
                Some(&auditor),
            )
            .await?;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{query}: {body}");
        assert!(
            !body["error"]["message"]
                .as_str()
                .unwrap_or_default()
                .is_empty()
        );
    }
    let (status, _) = t
        .call(
            Method::GET,
            "/api/v1/audit/logs/system/proofs/inclusion?index=x",
            Some(&auditor),
        )
        .await?;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);

    // Verification over the API.
    let (status, body) = t
        .call(
            Method::POST,
            "/api/v1/audit/logs/system/verify",
            Some(&auditor),
        )
        .await?;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["verified"], true, "{body}");
    assert_eq!(body["entries"], size);
    assert_eq!(body["checkpoints"], 1);
    assert_eq!(body["signed_size"], signed_size);
    assert_eq!(hash(&body["root"])?, tree.root());
    Ok(())
}

macro_rules! http_tests {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() -> super::TestResult {
                    let db = super::TestDatabase::sqlite().await?;
                    let mut app = super::TestApp::spawn(&db, Vec::new(), super::ActionRegistry::new(), super::MAX_BODY).await?;
                    let result = super::$case(&app).await;
                    app.stop();
                    db.cleanup().await;
                    result
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() -> super::TestResult {
                    let Some(db) = super::TestDatabase::postgres(stringify!($case)).await? else {
                        eprintln!("GATEHOUSE_TEST_DATABASE_URL is not set; the PostgreSQL run is done by .ci/run");
                        return Ok(());
                    };
                    let mut app = super::TestApp::spawn(&db, Vec::new(), super::ActionRegistry::new(), super::MAX_BODY).await?;
                    let result = super::$case(&app).await;
                    app.stop();
                    db.cleanup().await;
                    result
                }
            )*
        }
    };
}

http_tests!(
    every_route_refuses_strangers_and_other_roles,
    entries_are_browsed_with_filters_and_cursors,
    proofs_verify_against_roots_and_checkpoints,
);
