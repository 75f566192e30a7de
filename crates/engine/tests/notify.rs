//! L1 review notifications end to end, on SQLite and (with
//! `GATEHOUSE_TEST_DATABASE_URL`) on PostgreSQL: an L1 step runs, its review
//! request is committed with it, and the dispatcher delivers it over real
//! TCP to the sandbox's SMTP sink and over real HTTP to a webhook receiver,
//! retrying what may pass and giving up on what cannot.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests fail loudly"
)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use gatehouse_core::clock::{Clock, FakeClock};
use gatehouse_core::id::WorkflowId;
use gatehouse_core::notify::{EmailAddress, Notification, NotificationState};
use gatehouse_core::store::{NotificationQuery, NotificationStore};
use gatehouse_core::workflow::{DedupKey, EventKind, EventSource};
use gatehouse_engine::action::{Action, ActionCall, ActionError, ActionRegistry};
use gatehouse_engine::notify::smtp::SmtpChannel;
use gatehouse_engine::notify::webhook::WebhookChannel;
use gatehouse_engine::notify::{Channel, Dispatcher, DispatcherConfig};
use gatehouse_engine::runtime::{Engine, EngineConfig, NewEvent};
use gatehouse_engine::template::Template;
use gatehouse_sandbox::{SmtpSink, WebhookSink};
use gatehouse_store::testing::TestDatabase;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::Sha256;

const SECRET: &str = "test-webhook-secret-0123456789";

struct Do;

#[async_trait]
impl Action for Do {
    async fn run(&self, call: ActionCall<'_>) -> Result<Value, ActionError> {
        Ok(json!({ "granted": call.params.get("value").cloned() }))
    }
}

struct Catalog;
impl gatehouse_engine::template::ActionCatalog for Catalog {
    fn knows(&self, action: &str) -> bool {
        action.starts_with("test.")
    }
}

/// One stage, one step in `joiner_access` (L1 by default).
fn template(reviewer: Option<&str>) -> Template {
    let reviewer = reviewer.map_or(String::new(), |r| format!("reviewer = \"{r}\"\n"));
    let text = format!(
        r#"name = "grant-access"
version = 1
title = "Grant access"
area = "joiner_access"

[[trigger]]
event = "test.started"

[[stage]]
id = "only"
title = "Only"

[[stage.step]]
id = "grant"
title = "Grant standard access"
action = "test.do"
params = {{ value = "{{{{ event.payload.value }}}}" }}
compensate = {{ action = "test.undo", params = {{}} }}
{reviewer}"#
    );
    Template::from_toml("grant.toml", &text, &Catalog).unwrap_or_else(|e| panic!("{e}\n{text}"))
}

struct Env {
    db: TestDatabase,
    clock: Arc<FakeClock>,
}

impl Env {
    /// Runs one instance of `template` to its end; returns it.
    async fn run(&self, template: Template) -> WorkflowId {
        let mut actions = ActionRegistry::new();
        actions.register("test.do", Arc::new(Do));
        actions.register("test.undo", Arc::new(Do));
        let engine = Engine::new(
            self.db.store.clone(),
            Arc::new(vec![template]),
            Arc::new(actions),
            self.clock.clone(),
            EngineConfig::default(),
        );
        let submitted = engine
            .submit(
                NewEvent {
                    tenant_id: None,
                    source: EventSource::parse("api").unwrap(),
                    kind: EventKind::parse("test.started").unwrap(),
                    dedup_key: DedupKey::parse("k1").unwrap(),
                    payload: json!({ "value": "v", "owner_email": "owner@example.com" }),
                },
                "op_test",
            )
            .await
            .unwrap();
        let mut ticks = 0;
        while engine.tick().await.unwrap() > 0 {
            ticks += 1;
            assert!(ticks < 20, "no quiescence");
        }
        submitted.instances[0]
    }

    async fn notifications(&self, id: WorkflowId) -> Vec<Notification> {
        self.db
            .store
            .list_notifications(&NotificationQuery {
                instance: Some(id),
                limit: 10,
                ..Default::default()
            })
            .await
            .unwrap()
    }

    fn dispatcher(&self, channels: Vec<Arc<dyn Channel>>, default: Option<&str>) -> Dispatcher {
        let store: Arc<dyn NotificationStore> = self.db.store.clone();
        Dispatcher::new(
            store,
            channels,
            self.clock.clone(),
            DispatcherConfig {
                default_reviewer: default.map(|d| EmailAddress::parse(d).unwrap()),
                ..Default::default()
            },
        )
    }
}

fn webhook(sink: &WebhookSink) -> Arc<dyn Channel> {
    Arc::new(WebhookChannel::new(&sink.url(), SECRET, Duration::from_secs(10)).unwrap())
}

fn smtp(sink: &SmtpSink) -> Arc<dyn Channel> {
    Arc::new(SmtpChannel::new(
        "127.0.0.1",
        sink.addr().port(),
        EmailAddress::parse("gatehouse@msp.example").unwrap(),
        Duration::from_secs(10),
    ))
}

/// Verifies `Gatehouse-Signature` as a receiver would, independently of
/// the engine's code.
fn verify(header: &str, body: &[u8]) -> i64 {
    let (t, v1) = header.split_once(',').unwrap();
    let t = t.strip_prefix("t=").unwrap();
    let v1 = v1.strip_prefix("v1=").unwrap();
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(SECRET.as_bytes()).unwrap();
    mac.update(format!("{t}.").as_bytes());
    mac.update(body);
    mac.verify_slice(&hex::decode(v1).unwrap())
        .expect("the signature verifies");
    t.parse().unwrap()
}

mod cases {
    use super::*;

    pub async fn an_l1_review_is_committed_with_its_step_and_delivered(env: &Env) {
        let id = env
            .run(template(Some("{{ event.payload.owner_email }}")))
            .await;

        // Queued in the same commit as the step's success: their history
        // entries carry the same version (seq = version × 1,000,000 + n).
        let queued = env.notifications(id).await;
        assert_eq!(queued.len(), 1);
        let n = &queued[0];
        assert_eq!(n.state, NotificationState::Pending);
        assert_eq!(
            n.recipient.as_ref().map(|r| r.as_str()),
            Some("owner@example.com")
        );
        assert_eq!(n.step_id, "grant");
        assert_eq!(n.detail["action"], "test.do");
        assert_eq!(n.detail["params"]["value"], "v");
        let rollback = format!("/api/v1/workflows/{id}/steps/grant/rollback");
        assert_eq!(n.detail["rollback"]["path"], rollback.as_str());
        let history = env.db.store.instance_history(id).await.unwrap();
        let seq_of = |kind: &str| {
            history
                .iter()
                .find(|h| h.kind == kind && h.step_id.as_deref() == Some("grant"))
                .unwrap_or_else(|| panic!("no {kind}"))
        };
        let queued_entry = seq_of("notification.queued");
        assert_eq!(queued_entry.detail["notification"], n.id.to_string());
        assert_eq!(
            queued_entry.seq / 1_000_000,
            seq_of("step.succeeded").seq / 1_000_000
        );

        let mail = SmtpSink::start().await.unwrap();
        let hooks = WebhookSink::start().await.unwrap();
        let dispatcher = env.dispatcher(vec![webhook(&hooks), smtp(&mail)], None);
        let report = dispatcher.dispatch_due().await.unwrap();
        assert_eq!((report.claimed, report.delivered), (1, 1), "{report:?}");

        let messages = mail.messages();
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].from, "gatehouse@msp.example");
        assert_eq!(messages[0].to, ["owner@example.com"]);
        let data = &messages[0].data;
        assert!(
            data.contains(&format!("Message-ID: <{}@msp.example>\r\n", n.id)),
            "{data}"
        );
        assert!(
            data.contains("Subject: [Gatehouse] Review: Grant standard access (test.do)"),
            "{data}"
        );
        assert!(data.contains(&format!("POST {rollback}")), "{data}");

        let received = hooks.received();
        assert_eq!(received.len(), 1);
        let hook = &received[0];
        assert_eq!(
            hook.header("idempotency-key"),
            Some(n.id.to_string().as_str())
        );
        assert_eq!(hook.header("content-type"), Some("application/json"));
        let t = verify(hook.header("gatehouse-signature").unwrap(), &hook.body);
        assert_eq!(t, env.clock.now().unix_timestamp());
        let body: Value = serde_json::from_slice(&hook.body).unwrap();
        assert_eq!(body["id"], n.id.to_string());
        assert_eq!(body["recipient"], "owner@example.com");
        assert_eq!(body["detail"]["rollback"]["path"], rollback.as_str());

        let stored = &env.notifications(id).await[0];
        assert_eq!(
            (stored.state, stored.attempts),
            (NotificationState::Delivered, 1)
        );
        assert_eq!(dispatcher.dispatch_due().await.unwrap().claimed, 0);
        assert_eq!((mail.messages().len(), hooks.received().len()), (1, 1));
        mail.shutdown().await;
        hooks.shutdown().await;
    }

    pub async fn a_receiver_answering_503_then_200_gets_it_again(env: &Env) {
        let id = env.run(template(None)).await;
        let hooks = WebhookSink::start().await.unwrap();
        hooks.respond_with(503, Some("120"));
        let dispatcher = env.dispatcher(vec![webhook(&hooks)], None);
        let start = env.clock.now();

        let report = dispatcher.dispatch_due().await.unwrap();
        assert_eq!((report.claimed, report.retried), (1, 1), "{report:?}");
        let n = env.notifications(id).await.remove(0);
        assert_eq!((n.state, n.attempts), (NotificationState::Pending, 1));
        assert!(
            n.last_error.as_deref().unwrap().contains("503"),
            "{:?}",
            n.last_error
        );
        let retry_at = n.next_attempt_at.unwrap();
        assert!(
            retry_at >= start + time::Duration::seconds(120),
            "Retry-After honoured: {retry_at}"
        );
        assert_eq!(
            dispatcher.dispatch_due().await.unwrap().claimed,
            0,
            "not due yet"
        );

        env.clock.set(retry_at);
        let report = dispatcher.dispatch_due().await.unwrap();
        assert_eq!(report.delivered, 1, "{report:?}");
        let n = env.notifications(id).await.remove(0);
        assert_eq!((n.state, n.attempts), (NotificationState::Delivered, 2));
        let received = hooks.received();
        assert_eq!(received.len(), 2);
        assert!(
            received
                .iter()
                .all(|h| h.header("idempotency-key") == Some(n.id.to_string().as_str()))
        );
        assert_eq!(
            received[0].body, received[1].body,
            "the same body on every attempt"
        );
        env.clock.advance(time::Duration::days(1));
        assert_eq!(dispatcher.dispatch_due().await.unwrap().claimed, 0);
        hooks.shutdown().await;
    }

    pub async fn a_receiver_answering_400_ends_it(env: &Env) {
        let id = env.run(template(None)).await;
        let hooks = WebhookSink::start().await.unwrap();
        hooks.respond_with(400, None);
        let dispatcher = env.dispatcher(vec![webhook(&hooks)], None);
        let report = dispatcher.dispatch_due().await.unwrap();
        assert_eq!(report.failed, 1, "{report:?}");
        let n = env.notifications(id).await.remove(0);
        assert_eq!(
            (n.state, n.attempts, n.next_attempt_at),
            (NotificationState::Failed, 1, None)
        );
        assert!(
            n.last_error.as_deref().unwrap().contains("400"),
            "{:?}",
            n.last_error
        );
        assert!(
            !n.last_error.as_deref().unwrap().contains(&hooks.url()),
            "no URL in errors"
        );
        env.clock.advance(time::Duration::days(1));
        assert_eq!(dispatcher.dispatch_due().await.unwrap().claimed, 0);
        assert_eq!(hooks.received().len(), 1);
        hooks.shutdown().await;
    }

    pub async fn without_a_named_reviewer_the_default_gets_the_mail(env: &Env) {
        let id = env.run(template(None)).await;
        assert_eq!(env.notifications(id).await[0].recipient, None);

        // Nothing configured: nothing is claimed, it stays pending.
        let idle = env.dispatcher(Vec::new(), None);
        assert!(!idle.has_channels());
        assert_eq!(idle.dispatch_due().await.unwrap().claimed, 0);

        let mail = SmtpSink::start().await.unwrap();
        mail.fail_next(1, "451 4.3.0 try again later");
        let dispatcher = env.dispatcher(vec![smtp(&mail)], Some("lead@msp.example"));
        assert_eq!(dispatcher.dispatch_due().await.unwrap().retried, 1);
        let n = env.notifications(id).await.remove(0);
        assert!(
            n.last_error
                .as_deref()
                .unwrap()
                .contains("`451 4.3.0 try again later`"),
            "{:?}",
            n.last_error
        );

        env.clock.set(n.next_attempt_at.unwrap());
        assert_eq!(dispatcher.dispatch_due().await.unwrap().delivered, 1);
        let messages = mail.messages();
        assert_eq!(messages.len(), 1);
        assert_eq!(messages[0].to, ["lead@msp.example"]);

        mail.shutdown().await;
    }

    pub async fn without_any_reviewer_address_email_fails_and_says_why(env: &Env) {
        let id = env.run(template(None)).await;
        let mail = SmtpSink::start().await.unwrap();
        let dispatcher = env.dispatcher(vec![smtp(&mail)], None);
        assert_eq!(dispatcher.dispatch_due().await.unwrap().failed, 1);
        let n = env.notifications(id).await.remove(0);
        assert_eq!(n.state, NotificationState::Failed);
        assert!(
            n.last_error
                .as_deref()
                .unwrap()
                .contains("notify_default_reviewer"),
            "{:?}",
            n.last_error
        );
        assert!(mail.messages().is_empty());
        mail.shutdown().await;
    }
}

macro_rules! notify_tests {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let db = super::TestDatabase::sqlite().await.unwrap();
                    let env = super::Env { db, clock: std::sync::Arc::new(super::FakeClock::default()) };
                    super::cases::$case(&env).await;
                    env.db.cleanup().await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(db) = super::TestDatabase::postgres(stringify!($case)).await.unwrap() else {
                        eprintln!("GATEHOUSE_TEST_DATABASE_URL is not set; the PostgreSQL run is done by .ci/run");
                        return;
                    };
                    let env = super::Env { db, clock: std::sync::Arc::new(super::FakeClock::default()) };
                    super::cases::$case(&env).await;
                    env.db.cleanup().await;
                }
            )*
        }
    };
}

notify_tests!(
    an_l1_review_is_committed_with_its_step_and_delivered,
    a_receiver_answering_503_then_200_gets_it_again,
    a_receiver_answering_400_ends_it,
    without_a_named_reviewer_the_default_gets_the_mail,
    without_any_reviewer_address_email_fails_and_says_why,
);
