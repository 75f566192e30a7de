//! Provenance, walked through end to end: an admin and a lead drive a
//! tenant, its secrets, gates, tokens and a gated, compensatable workflow
//! over the real HTTP API, the KEK is rotated, the sequencer runs, and the
//! stored audit entries are read back. Every change must have left exactly
//! its entries, in the right log, with the right actor and action
//! (docs/audit.md, "What is recorded"). Runs on SQLite and, when
//! `GATEHOUSE_TEST_DATABASE_URL` is set, on PostgreSQL.

use std::collections::BTreeSet;
use std::sync::Arc;

use gatehouse_core::audit::{AuditEntry, SYSTEM_LOG};
use gatehouse_engine::action::{ActionRegistry, Noop};
use gatehouse_engine::template::Template;
use gatehouse_server::Actor;
use gatehouse_server::audit::Sequencer;
use gatehouse_store::testing::TestDatabase;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

/// `test.walk` prepares, then provisions a client (client onboarding is
/// gate L2: it waits for an approval) with a compensation for rollbacks.
fn templates() -> TestResult<Vec<Template>> {
    let catalog: BTreeSet<&str> = ["sandbox.noop"].into();
    let walk = r#"
name = "walk"
version = 1
title = "Walk-through"
area = "documentation"

[[trigger]]
event = "test.walk"

[[stage]]
id = "run"
title = "Run"

[[stage.step]]
id = "prepare"
title = "Prepare"
action = "sandbox.noop"

[[stage.step]]
id = "provision"
title = "Provision"
action = "sandbox.noop"
area = "client_onboarding"
needs = ["prepare"]
compensate = { action = "sandbox.noop" }
"#;
    Ok(vec![Template::from_toml("test/walk.toml", walk, &catalog)?])
}

mod common;

use common::{KEY_NAME, Served as Server, TestResult};

/// Serves the walk-through's template with the no-op action.
async fn serve(db: &TestDatabase) -> TestResult<Server> {
    let mut actions = ActionRegistry::new();
    actions.register("sandbox.noop", Arc::new(Noop));
    Server::spawn(db, templates()?, actions, 4096).await
}

impl Server {
    /// Sends a request with `token`; returns the status and the JSON body
    /// (`Null` if none).
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> TestResult<(StatusCode, Value)> {
        let mut request = self
            .http
            .request(method, format!("{}{path}", self.base))
            .bearer_auth(token);
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await?;
        let status = response.status();
        let text = response.text().await?;
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text)?
        };
        Ok((status, json))
    }

    /// Sends a request that must answer `expect`; returns the body.
    async fn expect(
        &self,
        expect: StatusCode,
        method: Method,
        path: &str,
        token: &str,
        body: Option<Value>,
    ) -> TestResult<Value> {
        let (status, body) = self.call(method.clone(), path, token, body).await?;
        if status != expect {
            return Err(format!("{method} {path}: {status}, not {expect}: {body}").into());
        }
        Ok(body)
    }

    /// Runs engine waves until no instance is due.
    async fn settle(&self) -> TestResult {
        for _ in 0..100 {
            if self.app.engine.tick().await? == 0 {
                return Ok(());
            }
        }
        Err("the engine did not settle".into())
    }

    /// Every entry of `log`, in index order.
    async fn entries(&self, log: &str) -> TestResult<Vec<AuditEntry>> {
        Ok(self.app.store.audit_entries(log, 0, 10_000).await?)
    }
}

/// The string at `pointer` in `value`.
fn text(value: &Value, pointer: &str) -> TestResult<String> {
    value
        .pointer(pointer)
        .and_then(Value::as_str)
        .map(str::to_owned)
        .ok_or_else(|| format!("no string at {pointer} in {value}").into())
}

/// `(actor, action, subject)`, the clear columns of an entry.
type Row = (String, String, String);

fn row(actor: &str, action: &str, subject: &str) -> Row {
    (actor.to_owned(), action.to_owned(), subject.to_owned())
}

fn rows(entries: &[AuditEntry]) -> Vec<Row> {
    entries
        .iter()
        .map(|e| row(&e.actor, &e.action, &e.subject))
        .collect()
}

/// The details of the only system-log entry with `action` on `subject`
/// (the system log's details are in clear in the leaf).
fn details(entries: &[AuditEntry], action: &str, subject: &str) -> TestResult<Value> {
    let mut found = entries
        .iter()
        .filter(|e| e.action == action && e.subject == subject);
    let entry = found
        .next()
        .ok_or_else(|| format!("no `{action}` entry for {subject}"))?;
    if found.next().is_some() {
        return Err(format!("more than one `{action}` entry for {subject}").into());
    }
    let leaf: Value = serde_json::from_str(&entry.leaf)?;
    leaf.get("details")
        .cloned()
        .ok_or_else(|| format!("`{action}` has no details in clear: {leaf}").into())
}

/// Sorted, for comparing sets of entries regardless of the order of
/// records committed together.
fn sorted(mut rows: Vec<Row>) -> Vec<Row> {
    rows.sort();
    rows
}

async fn a_workflow_and_every_api_mutation_leave_their_entries(s: &Server) -> TestResult {
    const DELETE: Method = Method::DELETE;
    const GET: Method = Method::GET;
    const POST: Method = Method::POST;
    const PUT: Method = Method::PUT;
    let admin = s.admin.as_str();
    let me = s
        .expect(StatusCode::OK, GET, "/api/v1/me", admin, None)
        .await?;
    let admin_id = text(&me, "/id")?;
    let admin_tokens = s
        .expect(
            StatusCode::OK,
            GET,
            &format!("/api/v1/operators/{admin_id}/tokens"),
            admin,
            None,
        )
        .await?;
    let bootstrap_token = text(&admin_tokens, "/items/0/id")?;

    // A second operator, who will approve.
    let created = s
        .expect(
            StatusCode::CREATED,
            POST,
            "/api/v1/operators",
            admin,
            Some(json!({"name": "lea.lead", "display_name": "Lea Lead", "role": "lead"})),
        )
        .await?;
    let lead_id = text(&created, "/operator/id")?;
    let lead_token_id = text(&created, "/token/id")?;
    let lead = text(&created, "/token/token")?;

    // A tenant, a secret, a gate.
    let tenant = s
        .expect(
            StatusCode::CREATED,
            POST,
            "/api/v1/tenants",
            admin,
            Some(json!({"slug": "acme", "display_name": "Acme Corp", "region": "eu"})),
        )
        .await?;
    let tenant_id = text(&tenant, "/id")?;
    // A refused mutation records nothing.
    s.expect(
        StatusCode::CONFLICT,
        POST,
        "/api/v1/tenants",
        admin,
        Some(json!({"slug": "acme", "display_name": "Acme again", "region": "eu"})),
    )
    .await?;
    s.expect(
        StatusCode::OK,
        PUT,
        "/api/v1/tenants/acme/secrets/psa.api-key",
        admin,
        Some(json!({"value": "hunter2-not-in-the-log"})),
    )
    .await?;
    s.expect(
        StatusCode::OK,
        PUT,
        "/api/v1/tenants/acme/secrets/old.key",
        admin,
        Some(json!({"value": "hunter3-not-in-the-log"})),
    )
    .await?;
    s.expect(
        StatusCode::NO_CONTENT,
        DELETE,
        "/api/v1/tenants/acme/secrets/old.key",
        admin,
        None,
    )
    .await?;
    s.expect(
        StatusCode::OK,
        PUT,
        "/api/v1/tenants/acme/gates/joiner_access",
        admin,
        Some(json!({"level": "L2", "reason": "the client approves every joiner"})),
    )
    .await?;
    s.expect(
        StatusCode::OK,
        DELETE,
        "/api/v1/tenants/acme/gates/joiner_access",
        admin,
        Some(json!({"reason": "back to the default"})),
    )
    .await?;
    s.expect(
        StatusCode::OK,
        Method::PATCH,
        "/api/v1/tenants/acme",
        admin,
        Some(json!({"display_name": "Acme Corporation"})),
    )
    .await?;

    // The lead disabled (twice: the second changes nothing, records
    // nothing) and enabled again.
    let disable = format!("/api/v1/operators/{lead_id}/disable");
    s.expect(StatusCode::NO_CONTENT, POST, &disable, admin, None)
        .await?;
    s.expect(StatusCode::NO_CONTENT, POST, &disable, admin, None)
        .await?;
    s.expect(
        StatusCode::NO_CONTENT,
        POST,
        &format!("/api/v1/operators/{lead_id}/enable"),
        admin,
        None,
    )
    .await?;

    // A token issued and revoked.
    let issued = s
        .expect(
            StatusCode::CREATED,
            POST,
            &format!("/api/v1/operators/{admin_id}/tokens"),
            admin,
            Some(json!({"name": "laptop"})),
        )
        .await?;
    let laptop = text(&issued, "/id")?;
    s.expect(
        StatusCode::OK,
        DELETE,
        &format!("/api/v1/tokens/{laptop}"),
        admin,
        None,
    )
    .await?;
    // Using the revoked token fails, and records nothing (docs/audit.md:
    // failed authentications are not recorded).
    let (status, _) = s
        .call(GET, "/api/v1/me", &text(&issued, "/token")?, None)
        .await?;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // A second tenant through its whole lifecycle (deleted further down).
    let globex = s
        .expect(
            StatusCode::CREATED,
            POST,
            "/api/v1/tenants",
            admin,
            Some(json!({
                "slug": "globex",
                "display_name": "Globex",
                "region": "us",
                "state": "provisioning",
            })),
        )
        .await?;
    let globex_id = text(&globex, "/id")?;
    for step in ["activate", "suspend", "offboard"] {
        s.expect(
            StatusCode::OK,
            POST,
            &format!("/api/v1/tenants/globex/{step}"),
            admin,
            None,
        )
        .await?;
    }

    // The workflow: submitted by the admin, approved by the lead, then the
    // provisioning step rolled back by the lead.
    let submitted = s
        .expect(
            StatusCode::ACCEPTED,
            POST,
            "/api/v1/events",
            admin,
            Some(json!({
                "type": "test.walk",
                "source": "psa.connectwise",
                "dedup_key": "deal-1",
                "tenant": "acme",
                "payload": {"deal": 1},
            })),
        )
        .await?;
    let event_id = text(&submitted, "/event/id")?;
    let workflow = text(&submitted, "/instances/0")?;
    s.settle().await?;
    let pending = s
        .expect(
            StatusCode::OK,
            GET,
            "/api/v1/approvals?state=pending",
            admin,
            None,
        )
        .await?;
    let approval = text(&pending, "/items/0/id")?;
    s.expect(
        StatusCode::OK,
        POST,
        &format!("/api/v1/approvals/{approval}/approve"),
        &lead,
        Some(json!({"reason": "plan checked against the contract"})),
    )
    .await?;
    s.settle().await?;
    s.expect(
        StatusCode::ACCEPTED,
        POST,
        &format!("/api/v1/workflows/{workflow}/steps/provision/rollback"),
        &lead,
        Some(json!({"reason": "provisioned the wrong plan"})),
    )
    .await?;
    s.settle().await?;
    let detail = s
        .expect(
            StatusCode::OK,
            GET,
            &format!("/api/v1/workflows/{workflow}"),
            admin,
            None,
        )
        .await?;
    let history = detail["history"]
        .as_array()
        .ok_or_else(|| format!("no history: {detail}"))?;

    // The sequencer runs while the tenant still has its key (as it does
    // every second in `serve`); then the tenant is deleted.
    let sequencer = Sequencer::new(s.app.store.clone(), s.app.keyring.clone());
    while sequencer.run_once(1000).await? > 0 {}
    s.expect(
        StatusCode::OK,
        DELETE,
        &format!("/api/v1/tenants/{globex_id}"),
        admin,
        None,
    )
    .await?;

    // The KEK rotation, as `gatehouse keys rotate` does it.
    let report = s
        .app
        .rotate_keys(&Actor::System("local cli"), false, &mut |_| {})
        .await?;

    // Sequence everything, then read the logs.
    while sequencer.run_once(1000).await? > 0 {}
    let system = s.entries(SYSTEM_LOG).await?;
    let tenant_log = s.entries(&tenant_id).await?;
    let globex_log = s.entries(&globex_id).await?;

    // --- The system log ---------------------------------------------------
    let expected_system = vec![
        row("system", "audit.key.created", KEY_NAME),
        row("system", "operator.created", &admin_id),
        row("system", "operator.token.issued", &bootstrap_token),
        row(&admin_id, "operator.created", &lead_id),
        row(&admin_id, "operator.token.issued", &lead_token_id),
        row(&admin_id, "tenant.created", &tenant_id),
        row(&admin_id, "operator.disabled", &lead_id),
        row(&admin_id, "operator.enabled", &lead_id),
        row(&admin_id, "operator.token.issued", &laptop),
        row(&admin_id, "operator.token.revoked", &laptop),
        row(&admin_id, "tenant.created", &globex_id),
        row(&admin_id, "tenant.deleted", &globex_id),
        row("system", "audit.key.rewrapped", KEY_NAME),
        row("system", "keys.kek.rotated", &report.active_kek),
    ];
    assert_eq!(rows(&system), expected_system, "the system log, in order");

    // Details: who acted through which token; ids, slugs and states only.
    let admin_token = bootstrap_token.as_str();
    let created = details(&system, "tenant.created", &tenant_id)?;
    assert_eq!(
        created,
        json!({"slug": "acme", "region": "eu", "state": "active", "token": admin_token})
    );
    assert!(
        !system
            .iter()
            .any(|e| ["Acme Corp", "Globex", "Lea Lead", "lea.lead"]
                .iter()
                .any(|name| e.leaf.contains(name))),
        "no display names in the clear system log"
    );
    assert!(
        !system
            .iter()
            .chain(&tenant_log)
            .chain(&globex_log)
            .any(|e| e.leaf.contains("hunter")),
        "never a secret's value"
    );
    assert_eq!(
        details(&system, "tenant.deleted", &globex_id)?,
        json!({"slug": "globex", "from": "offboarding", "to": "deleted", "token": admin_token})
    );
    assert_eq!(
        details(&system, "operator.disabled", &lead_id)?,
        json!({"token": admin_token})
    );
    assert_eq!(
        details(&system, "operator.created", &lead_id)?,
        json!({"role": "lead", "token": admin_token})
    );
    assert_eq!(
        details(&system, "operator.created", &admin_id)?,
        json!({"role": "admin", "system_reason": "bootstrap"})
    );
    assert_eq!(
        details(&system, "operator.token.issued", &laptop)?,
        json!({"operator": admin_id, "expires_at": null, "token": admin_token})
    );
    assert_eq!(
        details(&system, "operator.token.revoked", &laptop)?,
        json!({"operator": admin_id, "token": admin_token})
    );
    let rotated = details(&system, "keys.kek.rotated", &report.active_kek)?;
    assert_eq!(rotated["rewrapped"], 1, "{rotated}");
    assert_eq!(rotated["audit_keys_rewrapped"], 1, "{rotated}");
    assert_eq!(rotated["system_reason"], "local cli", "{rotated}");
    let rewrapped = details(&system, "audit.key.rewrapped", KEY_NAME)?;
    assert_eq!(rewrapped["to_kek"], json!(report.active_kek), "{rewrapped}");
    assert_ne!(rewrapped["from_kek"], rewrapped["to_kek"], "{rewrapped}");

    // --- The tenants' logs -----------------------------------------------
    // The deleted tenant's log: its lifecycle, in order (its deletion is in
    // the system log).
    assert_eq!(
        rows(&globex_log),
        vec![
            row(&admin_id, "tenant.created", &globex_id),
            row(&admin_id, "key.created", &globex_id),
            row(&admin_id, "tenant.activated", &globex_id),
            row(&admin_id, "tenant.suspended", &globex_id),
            row(&admin_id, "tenant.offboarded", &globex_id),
        ]
    );
    // The first entry of a tenant's log is its creation; the API's
    // mutations follow in order.
    let mutations = vec![
        row(&admin_id, "tenant.created", &tenant_id),
        row(&admin_id, "key.created", &tenant_id),
        row(&admin_id, "tenant.secret.set", "psa.api-key"),
        row(&admin_id, "tenant.secret.set", "old.key"),
        row(&admin_id, "tenant.secret.deleted", "old.key"),
        row(&admin_id, "gate.set", "joiner_access"),
        row(&admin_id, "gate.cleared", "joiner_access"),
        row(&admin_id, "tenant.updated", &tenant_id),
    ];
    assert_eq!(
        rows(&tenant_log[..mutations.len().min(tenant_log.len())]),
        mutations
    );
    // Then the event, one entry per workflow transition, and the rewrap:
    // exactly these, nothing else.
    let mut expected_tenant = mutations.clone();
    expected_tenant.extend([
        row("psa.connectwise", "event.received", &event_id),
        row("system", "key.rewrapped", &tenant_id),
    ]);
    for entry in history {
        expected_tenant.push(row(
            &text(entry, "/actor")?,
            &format!("workflow.{}", text(entry, "/kind")?),
            &workflow,
        ));
    }
    assert_eq!(sorted(rows(&tenant_log)), sorted(expected_tenant));

    // Each transition the issue names is among them, by the right actor.
    let transitions: Vec<(String, String)> = tenant_log
        .iter()
        .filter(|e| e.subject == workflow)
        .map(|e| (e.actor.clone(), e.action.clone()))
        .collect();
    // (`None`: whoever the history names, compared above.)
    for (actor, action) in [
        (None, "workflow.instance.started"),
        (None, "workflow.step.succeeded"),
        (None, "workflow.approval.requested"),
        (Some(lead_id.as_str()), "workflow.approval.approved"),
        (None, "workflow.instance.completed"),
        (Some(lead_id.as_str()), "workflow.step.rollback_requested"),
        (None, "workflow.step.compensated"),
    ] {
        assert!(
            transitions
                .iter()
                .any(|(a, b)| b == action && actor.is_none_or(|actor| a == actor)),
            "no `{action}` by {actor:?} in {transitions:?}"
        );
    }
    // Both steps ran: two successes (prepare, provision).
    assert_eq!(
        transitions
            .iter()
            .filter(|(_, action)| action == "workflow.step.succeeded")
            .count(),
        2,
        "{transitions:?}"
    );
    Ok(())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_a_workflow_and_every_api_mutation_leave_their_entries() -> TestResult {
    let db = TestDatabase::sqlite().await?;
    let mut server = serve(&db).await?;
    let result = a_workflow_and_every_api_mutation_leave_their_entries(&server).await;
    server.stop();
    db.cleanup().await;
    result
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_a_workflow_and_every_api_mutation_leave_their_entries() -> TestResult {
    let Some(db) = TestDatabase::postgres("provenance_walk").await? else {
        eprintln!("GATEHOUSE_TEST_DATABASE_URL is not set; the PostgreSQL run is done by .ci/run");
        return Ok(());
    };
    let mut server = serve(&db).await?;
    let result = a_workflow_and_every_api_mutation_leave_their_entries(&server).await;
    server.stop();
    db.cleanup().await;
    result
}
