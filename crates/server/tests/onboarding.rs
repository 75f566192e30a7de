//! Client onboarding end to end, on both back ends: a won deal goes through
//! the App with the built-in `client-onboarding` template; what Gatehouse
//! does itself is checked (intake actions, checklist, reminders and
//! escalations with a fake clock, sealed uploads, secret hand-over,
//! tracking, metrics and authorization over HTTP). The connector-backed
//! steps are not registered here; they are not this part's.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests fail loudly"
)]

mod common;

use std::sync::Arc;

use common::{Served, TestResult};
use gatehouse_core::clock::Clock;
use gatehouse_core::id::WorkflowId;
use gatehouse_core::notify::NotificationState;
use gatehouse_core::onboarding::{
    KIND_ITEM_OVERDUE, KIND_ITEM_REMINDER, KIND_OWNER_ASSIGNED, action,
};
use gatehouse_core::store::NotificationQuery;
use gatehouse_engine::action::{ActionCall, ActionError, ActionRegistry};
use gatehouse_engine::template::{TemplateSet, builtin_actions};
use gatehouse_server::onboarding::{AppSlot, register_actions};
use gatehouse_store::testing::TestDatabase;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

const PLAINTEXT: &str = "SIGNED-MSA-PLAINTEXT-7d1e9c";

struct Onb {
    s: Served,
    actions: Arc<ActionRegistry>,
    lead: String,
    tech: String,
    auditor: String,
}

async fn spawn(db: &TestDatabase) -> TestResult<Onb> {
    let set = TemplateSet::builtin(&builtin_actions())?;
    let template = set
        .latest("client-onboarding")
        .ok_or("the built-in onboarding template")?
        .as_ref()
        .clone();
    let slot = AppSlot::new();
    let mut registry = ActionRegistry::new();
    register_actions(&mut registry, &slot);
    let actions = Arc::new(registry.clone());
    let s = Served::spawn(db, vec![template], registry, 64 * 1024).await?;
    slot.set(s.app.as_ref().clone());
    let mut t = Onb {
        s,
        actions,
        lead: String::new(),
        tech: String::new(),
        auditor: String::new(),
    };
    t.lead = t.operator("lea.lead", "lead").await;
    t.tech = t.operator("tom.tech", "technician").await;
    t.auditor = t.operator("ada.audit", "auditor").await;
    Ok(t)
}

impl Onb {
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self
            .s
            .http
            .request(method, format!("{}{path}", self.s.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        let json = serde_json::from_str(&text).unwrap_or(Value::String(text));
        (status, json)
    }

    async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call(method, path, Some(&self.s.admin), body).await
    }

    async fn operator(&self, name: &str, role: &str) -> String {
        let (status, body) = self
            .admin(
                Method::POST,
                "/api/v1/operators",
                Some(json!({"name": name, "display_name": name, "role": role})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["token"]["token"].as_str().unwrap().to_owned()
    }

    async fn settle(&self) {
        for _ in 0..100 {
            if self.s.app.engine.tick().await.unwrap() == 0 {
                return;
            }
        }
        panic!("the engine did not settle");
    }

    /// A won deal for `slug`, submitted as admin; returns the instance.
    async fn won(&self, slug: &str, key: &str) -> WorkflowId {
        let (status, body) = self
            .admin(
                Method::POST,
                "/api/v1/events",
                Some(json!({
                    "type": "psa.opportunity.won",
                    "source": "psa",
                    "dedup_key": key,
                    "payload": {
                        "psa": "connectwise",
                        "company": {"id": 4711, "name": format!("{slug} Ltd"), "slug": slug,
                                    "region": "eu", "m365_tenant_id": "00000000-0000-0000-0000-000000000001"},
                        "opportunity": {"id": 99},
                        "owner": {"email": "owner@msp.example"},
                        "contact": {"email": "it@client.example"}
                    }
                })),
            )
            .await;
        assert_eq!(status, StatusCode::ACCEPTED, "{body}");
        self.settle().await;
        body["instances"][0]["id"]
            .as_str()
            .or_else(|| body["instances"][0].as_str())
            .unwrap_or_else(|| panic!("an instance started: {body}"))
            .parse()
            .unwrap()
    }

    /// Approves, as the lead, the pending approval of `step` in `instance`.
    async fn approve(&self, instance: WorkflowId, step: &str) {
        let (status, list) = self
            .call(
                Method::GET,
                "/api/v1/approvals?state=pending",
                Some(&self.lead),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{list}");
        let approval = list["items"]
            .as_array()
            .unwrap()
            .iter()
            .find(|a| a["instance_id"] == instance.to_string() && a["step_id"] == step)
            .unwrap_or_else(|| panic!("a pending approval of {step}: {list}"))["id"]
            .as_str()
            .unwrap()
            .to_owned();
        let (status, body) = self
            .call(
                Method::POST,
                &format!("/api/v1/approvals/{approval}/approve"),
                Some(&self.lead),
                Some(json!({"reason": "looks right"})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        self.settle().await;
    }

    async fn detail(&self, instance: WorkflowId) -> Value {
        let (status, body) = self
            .call(
                Method::GET,
                &format!("/api/v1/onboardings/{instance}"),
                Some(&self.auditor),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{body}");
        body
    }

    /// Runs an action directly, as the engine would for `instance`.
    async fn run(
        &self,
        name: &str,
        instance: WorkflowId,
        step: &str,
        params: Value,
    ) -> Result<Value, ActionError> {
        let key = format!("{instance}:{step}");
        self.actions
            .get(name)
            .unwrap()
            .run(ActionCall {
                instance,
                tenant: None,
                step_id: step,
                idempotency_key: &key,
                params: &params,
                attempt: 2,
            })
            .await
    }

    fn item<'a>(detail: &'a Value, key: &str) -> &'a Value {
        detail["checklist"]
            .as_array()
            .unwrap()
            .iter()
            .find(|i| i["key"] == key)
            .unwrap_or_else(|| panic!("item {key}: {detail}"))
    }

    async fn notifications(&self, kind: &str) -> usize {
        self.s
            .app
            .store
            .list_notifications(&NotificationQuery {
                tenant: None,
                state: Some(NotificationState::Pending),
                instance: None,
                after: None,
                limit: 500,
            })
            .await
            .unwrap()
            .iter()
            .filter(|n| n.kind == kind)
            .count()
    }

    async fn metrics(&self) -> String {
        self.s
            .http
            .get(format!("{}/metrics", self.s.base))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap()
    }
}

/// The stored sealed columns of every checklist item, read with SQL.
async fn stored_file_bytes(db: &TestDatabase) -> Vec<Vec<u8>> {
    let query =
        "SELECT file_sealed, file_name_sealed FROM checklist_items WHERE file_sealed IS NOT NULL";
    let rows: Vec<(Vec<u8>, Vec<u8>)> = if db.url.starts_with("sqlite:") {
        let pool = sqlx::SqlitePool::connect(&db.url).await.unwrap();
        let rows = sqlx::query_as(query).fetch_all(&pool).await.unwrap();
        pool.close().await;
        rows
    } else {
        let pool = sqlx::PgPool::connect(&db.url).await.unwrap();
        let rows = sqlx::query_as(query).fetch_all(&pool).await.unwrap();
        pool.close().await;
        rows
    };
    rows.into_iter().flat_map(|(a, b)| [a, b]).collect()
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

async fn a_won_deal_is_onboarded_as_far_as_gatehouse_goes(t: &Onb, db: &TestDatabase) {
    let started = t.s.clock.now();
    let acme = t.won("acme", "deal-1").await;

    // Nothing runs before a person approves: the tracking says so.
    let (status, list) = t
        .call(Method::GET, "/api/v1/onboardings", Some(&t.auditor), None)
        .await;
    assert_eq!(status, StatusCode::OK, "{list}");
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["items"][0]["stage"], "intake");
    assert_eq!(list["items"][0]["client"], "acme Ltd");
    let d = t.detail(acme).await;
    let blocker = &d["blockers"][0];
    assert_eq!(blocker["kind"], "approval", "{d}");
    assert_eq!(blocker["step"], "create-tenant");
    assert!(blocker["approval"].as_str().unwrap().starts_with("apr_"));
    assert!(blocker["reason"].as_str().unwrap().contains("lead"), "{d}");
    assert!(d["tenant"].is_null());
    assert_eq!(d["stages"][0]["status"], "current");
    assert_eq!(d["stages"][0]["total"], 3);

    // Intake, approved step by step.
    t.approve(acme, "create-tenant").await;
    t.approve(acme, "link-psa-company").await;
    let d = t.detail(acme).await;
    let tenant_id = d["tenant"]
        .as_str()
        .unwrap_or_else(|| panic!("{d}"))
        .to_owned();
    assert_eq!(d["slug"], "acme");
    assert_eq!(d["owner"], "owner@msp.example");
    assert_eq!(
        t.notifications(KIND_OWNER_ASSIGNED).await,
        1,
        "the owner is told"
    );
    t.run(
        "onboarding.assign_owner",
        acme,
        "assign-owner",
        json!({"tenant": d["tenant"], "owner": "owner@msp.example"}),
    )
    .await
    .unwrap();
    assert_eq!(t.notifications(KIND_OWNER_ASSIGNED).await, 1, "told once");
    // The onboarding now belongs to its tenant: an action naming another
    // tenant is refused (as the engine would call it, with the owner).
    let elsewhere = gatehouse_core::id::TenantId::generate(time::OffsetDateTime::UNIX_EPOCH);
    let params = json!({"tenant": elsewhere, "owner": "owner@msp.example"});
    let key = format!("{acme}:assign-owner");
    let refused = t
        .actions
        .get("onboarding.assign_owner")
        .unwrap()
        .run(ActionCall {
            instance: acme,
            tenant: Some(tenant_id.parse().unwrap()),
            step_id: "assign-owner",
            idempotency_key: &key,
            params: &params,
            attempt: 3,
        })
        .await;
    assert!(
        matches!(&refused, Err(ActionError::Permanent { message }) if message.contains("may not act on tenant")),
        "{refused:?}"
    );
    let (instance, _) = t.s.app.store.get_instance(acme).await.unwrap();
    assert_eq!(
        instance.tenant_id.map(|t| t.to_string()).as_deref(),
        Some(tenant_id.as_str()),
        "create-tenant gave the onboarding to its tenant"
    );
    assert_eq!(d["stage"], "documentation", "{d}");
    assert_eq!(d["stages"][0]["status"], "done");
    let (_, tenant) = t
        .admin(Method::GET, &format!("/api/v1/tenants/{tenant_id}"), None)
        .await;
    assert_eq!(tenant["slug"], "acme");
    assert_eq!(tenant["state"], "provisioning", "{tenant}");
    let links =
        t.s.app
            .store
            .psa_links(tenant_id.parse().unwrap())
            .await
            .unwrap();
    assert_eq!(links.len(), 1);
    assert_eq!(
        (links[0].psa.as_str(), links[0].company_id.as_str()),
        ("connectwise", "4711")
    );

    // The checklist: eight items, due 5 or 10 days after the request.
    let items = d["checklist"].as_array().unwrap();
    assert_eq!(items.len(), 8, "{d}");
    let due = |key: &str| {
        time::OffsetDateTime::parse(
            Onb::item(&d, key)["due_at"].as_str().unwrap(),
            &time::format_description::well_known::Rfc3339,
        )
        .unwrap()
    };
    assert_eq!(due("msa-sow"), started + time::Duration::days(5));
    assert_eq!(due("network-diagram"), started + time::Duration::days(10));
    assert_eq!(Onb::item(&d, "contacts")["owner"], "it@client.example");
    assert_eq!(Onb::item(&d, "credentials")["kind"], "secret");
    assert_eq!(Onb::item(&d, "compliance")["kind"], "confirmation");
    // The L3 sign-off waits for a person.
    assert!(
        d["blockers"]
            .as_array()
            .unwrap()
            .iter()
            .any(|b| b["kind"] == "human_task"
                && b["step"] == "documentation-complete"
                && b["reason"]
                    .as_str()
                    .unwrap()
                    .contains("checklist: 0 of 8 received, 0 waived, 8 requested (0 overdue)")),
        "{d}"
    );

    // Repeated calls with the same key change nothing.
    let again = t
        .run(
            "tenant.create",
            acme,
            "create-tenant",
            json!({"slug": "acme", "display_name": "acme Ltd", "region": "eu"}),
        )
        .await
        .unwrap();
    assert_eq!(again["id"], tenant_id.as_str());
    let msa_id = Onb::item(&d, "msa-sow")["id"].as_str().unwrap().to_owned();
    let again = t
        .run(
            "checklist.request",
            acme,
            "doc-msa-sow",
            json!({"tenant": tenant_id, "item": "msa-sow", "title": "Signed MSA and SOW", "kind": "file",
                   "owner": "owner@msp.example", "due_in": "1d"}),
        )
        .await
        .unwrap();
    assert_eq!(again["item_id"], msa_id.as_str());
    assert_eq!(
        t.detail(acme).await["checklist"].as_array().unwrap().len(),
        8
    );

    // Reminders one day before the due date, once.
    t.s.clock
        .advance(time::Duration::days(4) + time::Duration::hours(12));
    let report = t.s.app.send_checklist_notices().await.unwrap();
    assert_eq!((report.reminders, report.escalations), (3, 0));
    assert_eq!(t.s.app.send_checklist_notices().await.unwrap().reminders, 0);
    assert_eq!(t.notifications(KIND_ITEM_REMINDER).await, 3);
    // Past due: escalated to the onboarding's owner, once.
    t.s.clock.advance(time::Duration::days(1));
    let report = t.s.app.send_checklist_notices().await.unwrap();
    assert_eq!((report.reminders, report.escalations), (0, 3));
    let report = t.s.app.send_checklist_notices().await.unwrap();
    assert_eq!((report.reminders, report.escalations), (0, 0));
    assert_eq!(t.notifications(KIND_ITEM_OVERDUE).await, 3);
    let outbox =
        t.s.app
            .store
            .list_notifications(&NotificationQuery {
                limit: 100,
                ..NotificationQuery::default()
            })
            .await
            .unwrap();
    let overdue: Vec<_> = outbox
        .iter()
        .filter(|n| n.kind == KIND_ITEM_OVERDUE)
        .collect();
    assert!(
        overdue
            .iter()
            .all(|n| n.recipient.as_ref().map(|r| r.as_str()) == Some("owner@msp.example"))
    );
    let audited =
        t.s.app
            .store
            .pending_audit(10_000)
            .await
            .unwrap()
            .into_iter()
            .filter(|(_, r)| r.action == action::ITEM_NOTICE)
            .count();
    assert_eq!(audited, 6, "each notice is in the audit log once");
    let d = t.detail(acme).await;
    let overdue_blockers = d["blockers"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|b| b["kind"] == "item_overdue")
        .count();
    assert_eq!(overdue_blockers, 3, "{d}");
    assert!(
        t.metrics()
            .await
            .contains("gatehouse_onboarding_checklist_overdue_items 3")
    );

    // Upload: sealed at rest, readable by technicians, not by auditors.
    let file_path = format!("/api/v1/onboardings/{acme}/items/{msa_id}/file");
    let upload = |token: &str| {
        t.s.http
            .put(format!("{}{file_path}?name=msa.pdf", t.s.base))
            .bearer_auth(token.to_owned())
            .header("content-type", "application/pdf")
            .body(PLAINTEXT.repeat(10))
            .send()
    };
    assert_eq!(
        upload(&t.auditor).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    let too_big =
        t.s.http
            .put(format!("{}{file_path}?name=big.bin", t.s.base))
            .bearer_auth(t.tech.clone())
            .body(vec![0u8; gatehouse_server::onboarding::MAX_FILE_BYTES + 1])
            .send()
            .await
            .unwrap();
    assert_eq!(too_big.status(), StatusCode::UNPROCESSABLE_ENTITY);
    let far_too_big =
        t.s.http
            .put(format!("{}{file_path}?name=big.bin", t.s.base))
            .bearer_auth(t.tech.clone())
            .body(vec![
                0u8;
                gatehouse_server::onboarding::MAX_FILE_BYTES + 4096
            ])
            .send()
            .await
            .unwrap();
    assert_eq!(far_too_big.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let response = upload(&t.tech).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    let item: Value = response.json().await.unwrap();
    assert_eq!(item["state"], "received", "{item}");
    assert_eq!(item["file"]["name"], "msa.pdf");
    assert_eq!(item["file"]["content_type"], "application/pdf");
    assert_eq!(
        upload(&t.tech).await.unwrap().status(),
        StatusCode::CONFLICT,
        "received once"
    );
    let stored = stored_file_bytes(db).await;
    assert_eq!(stored.len(), 2);
    for bytes in &stored {
        assert!(!contains(bytes, PLAINTEXT.as_bytes()), "the file is sealed");
        assert!(!contains(bytes, b"msa.pdf"), "its name is sealed");
    }
    let download = |token: Option<String>| {
        let mut r = t.s.http.get(format!("{}{file_path}", t.s.base));
        if let Some(token) = token {
            r = r.bearer_auth(token);
        }
        r.send()
    };
    let response = download(Some(t.tech.clone())).await.unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert_eq!(response.headers()["content-type"], "application/pdf");
    assert_eq!(response.text().await.unwrap(), PLAINTEXT.repeat(10));
    assert_eq!(
        download(Some(t.auditor.clone())).await.unwrap().status(),
        StatusCode::FORBIDDEN
    );
    assert_eq!(
        download(None).await.unwrap().status(),
        StatusCode::UNAUTHORIZED
    );

    // A confirmation, a waiver and a secret, each by whom the roles allow.
    let d = t.detail(acme).await;
    let compliance = Onb::item(&d, "compliance")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let path = |id: &str, what: &str| format!("/api/v1/onboardings/{acme}/items/{id}/{what}");
    let (status, _) = t
        .call(
            Method::POST,
            &path(&compliance, "receive"),
            Some(&t.auditor),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    let (status, body) = t
        .call(
            Method::POST,
            &path(&compliance, "receive"),
            Some(&t.tech),
            Some(json!({"note": "no special regime"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["state"], "received");
    let lob = Onb::item(&d, "lob-apps")["id"].as_str().unwrap().to_owned();
    let (status, _) = t
        .call(
            Method::POST,
            &path(&lob, "waive"),
            Some(&t.tech),
            Some(json!({"reason": "none"})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "technicians do not waive");
    let (status, body) = t
        .call(
            Method::POST,
            &path(&lob, "waive"),
            Some(&t.lead),
            Some(json!({"reason": "the client runs no line-of-business apps"})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["state"], "waived");
    assert_eq!(body["note"], "the client runs no line-of-business apps");
    let creds = Onb::item(&d, "credentials")["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let secret = json!({"name": "client.domain-admin", "value": "hunter2-but-longer"});
    let (status, _) = t
        .call(
            Method::POST,
            &path(&creds, "secret"),
            Some(&t.tech),
            Some(secret.clone()),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::FORBIDDEN,
        "the vault needs ManageSecrets"
    );
    let (status, body) = t
        .call(
            Method::POST,
            &path(&creds, "secret"),
            Some(&t.lead),
            Some(secret),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["secret_name"], "client.domain-admin");
    assert!(!body.to_string().contains("hunter2"));
    let (_, secrets) = t
        .admin(
            Method::GET,
            &format!("/api/v1/tenants/{tenant_id}/secrets"),
            None,
        )
        .await;
    assert!(
        secrets.to_string().contains("client.domain-admin"),
        "{secrets}"
    );
    // A confirmation cannot be uploaded; a file item cannot just be confirmed.
    let contacts = Onb::item(&d, "contacts")["id"].as_str().unwrap().to_owned();
    let (status, body) = t
        .call(
            Method::POST,
            &path(&contacts, "receive"),
            Some(&t.tech),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert_eq!(body["error"]["code"], "item_kind_mismatch");

    // Another onboarding: its slug is free; the first one's items are not
    // reachable through it, and a third with a taken slug fails clearly.
    let globex = t.won("globex", "deal-2").await;
    t.approve(globex, "create-tenant").await;
    t.approve(globex, "link-psa-company").await;
    let (status, body) = t
        .call(
            Method::POST,
            &format!("/api/v1/onboardings/{globex}/items/{contacts}/receive"),
            Some(&t.lead),
            Some(json!({})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
    assert_eq!(body["error"]["code"], "item_not_found");
    let (status, _) = t
        .call(
            Method::GET,
            &format!("/api/v1/onboardings/{globex}/items/{msa_id}/file"),
            Some(&t.lead),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let (status, _) = t
        .call(
            Method::GET,
            "/api/v1/onboardings/wf_01jd8x3k2q9f6v0c4m7r5t8w1y",
            Some(&t.lead),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    let dup = t.won("acme", "deal-3").await;
    t.approve(dup, "create-tenant").await;
    let d = t.detail(dup).await;
    let failed = d["blockers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|b| b["kind"] == "step_failed")
        .unwrap_or_else(|| panic!("{d}"));
    assert_eq!(failed["step"], "create-tenant");
    assert!(
        failed["reason"]
            .as_str()
            .unwrap()
            .contains("another tenant holds the slug"),
        "{failed}"
    );

    // Filters: by stage and by state.
    let (_, list) = t
        .call(
            Method::GET,
            "/api/v1/onboardings?stage=documentation",
            Some(&t.tech),
            None,
        )
        .await;
    assert_eq!(list["items"].as_array().unwrap().len(), 2, "{list}");
    let (_, list) = t
        .call(
            Method::GET,
            "/api/v1/onboardings?state=parked",
            Some(&t.tech),
            None,
        )
        .await;
    assert_eq!(list["items"].as_array().unwrap().len(), 1, "{list}");
    assert_eq!(list["items"][0]["id"], dup.to_string());

    // Go-live: the SLA clock starts once, the tenant becomes active, and
    // the time to operational is measured.
    let first = t
        .run(
            "sla.start",
            acme,
            "start-sla",
            json!({"tenant": tenant_id, "contract": "Managed services"}),
        )
        .await
        .unwrap();
    let second = t
        .run(
            "sla.start",
            acme,
            "start-sla",
            json!({"tenant": tenant_id, "contract": "Managed services"}),
        )
        .await
        .unwrap();
    assert_eq!(first["id"], second["id"]);
    let (_, tenant) = t
        .admin(Method::GET, &format!("/api/v1/tenants/{tenant_id}"), None)
        .await;
    assert_eq!(tenant["state"], "active");
    let metrics = t.metrics().await;
    assert!(
        metrics.contains("gatehouse_onboarding_time_to_operational_seconds_count 1"),
        "{metrics}"
    );
    assert!(
        metrics.contains("gatehouse_onboarding_stage_duration_seconds_count{stage=\"intake\"} 2"),
        "{metrics}"
    );
    assert!(t.detail(acme).await["go_live_at"].is_string());
    let stopped = t
        .run(
            "sla.stop",
            acme,
            "start-sla",
            json!({"tenant": tenant_id, "sla": first["id"]}),
        )
        .await
        .unwrap();
    assert_eq!(stopped["stopped"], true);

    // The compensation of tenant.create shreds the tenant and its checklist.
    let deleted = t
        .run(
            "tenant.delete",
            acme,
            "create-tenant",
            json!({"tenant": tenant_id}),
        )
        .await
        .unwrap();
    assert_eq!(deleted["deleted"], true);
    let (_, tenant) = t
        .admin(Method::GET, &format!("/api/v1/tenants/{tenant_id}"), None)
        .await;
    assert_eq!(tenant["state"], "deleted");
    assert!(
        stored_file_bytes(db).await.is_empty(),
        "shredded with the key"
    );
}

async fn strangers_get_401_on_every_onboarding_route(t: &Onb, _db: &TestDatabase) {
    let ids = "wf_01jd8x3k2q9f6v0c4m7r5t8w1y";
    let item = "chk_01jd8x3k2q9f6v0c4m7r5t8w1y";
    for (method, path) in [
        (Method::GET, "/api/v1/onboardings".to_owned()),
        (Method::GET, format!("/api/v1/onboardings/{ids}")),
        (Method::GET, format!("/api/v1/onboardings/{ids}/items")),
        (
            Method::POST,
            format!("/api/v1/onboardings/{ids}/items/{item}/receive"),
        ),
        (
            Method::POST,
            format!("/api/v1/onboardings/{ids}/items/{item}/waive"),
        ),
        (
            Method::POST,
            format!("/api/v1/onboardings/{ids}/items/{item}/secret"),
        ),
        (
            Method::PUT,
            format!("/api/v1/onboardings/{ids}/items/{item}/file?name=a"),
        ),
        (
            Method::GET,
            format!("/api/v1/onboardings/{ids}/items/{item}/file"),
        ),
    ] {
        for token in [None, Some("gth_not-a-real-token")] {
            let (status, body) = t.call(method.clone(), &path, token, Some(json!({}))).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {path}: {body}");
        }
    }
}

macro_rules! onboarding_tests {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let db = super::TestDatabase::sqlite().await.unwrap();
                    let mut t = super::spawn(&db).await.unwrap();
                    super::$case(&t, &db).await;
                    t.s.stop();
                    db.cleanup().await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(db) = super::TestDatabase::postgres(stringify!($case)).await.unwrap() else {
                        eprintln!("GATEHOUSE_TEST_DATABASE_URL is not set; skipping the PostgreSQL run");
                        return;
                    };
                    let mut t = super::spawn(&db).await.unwrap();
                    super::$case(&t, &db).await;
                    t.s.stop();
                    db.cleanup().await;
                }
            )*
        }
    };
}

onboarding_tests!(
    a_won_deal_is_onboarded_as_far_as_gatehouse_goes,
    strangers_get_401_on_every_onboarding_route,
);
