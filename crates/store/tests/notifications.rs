//! Conformance of the notification outbox (`NotificationStore`), on SQLite
//! and, with `GATEHOUSE_TEST_DATABASE_URL`, on PostgreSQL: notifications are
//! queued with workflow progress (or not at all), claimed with a lease,
//! and their attempts recorded only while pending.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests fail loudly"
)]

use std::collections::HashSet;
use std::sync::Arc;

use gatehouse_core::clock::{Clock, FakeClock};
use gatehouse_core::id::{NotificationId, WorkflowId};
use gatehouse_core::notify::{EmailAddress, KIND_L1_REVIEW, Notification, NotificationState};
use gatehouse_core::store::{NotificationQuery, Store, StoreError};
use gatehouse_core::workflow::{Instance, InstanceState, Progress, StepRun};
use serde_json::json;
use time::{Duration, OffsetDateTime};

struct Case {
    store: Arc<dyn Store>,
    clock: FakeClock,
}

impl Case {
    fn now(&self) -> OffsetDateTime {
        let now = self.clock.now();
        self.clock.advance(Duration::milliseconds(1));
        now
    }

    fn instance(&self) -> Instance {
        let now = self.now();
        Instance {
            id: WorkflowId::generate(now),
            tenant_id: None,
            template: "t".into(),
            template_version: 1,
            definition: json!({}),
            state: InstanceState::Running,
            context: json!({}),
            started_by: None,
            created_by: "system".into(),
            created_at: now,
            updated_at: now,
            next_run_at: Some(now),
            version: 1,
        }
    }

    fn notification(&self, instance: &Instance, step: &str) -> Notification {
        Notification::queue(
            instance.id,
            instance.tenant_id,
            step,
            KIND_L1_REVIEW,
            Some(EmailAddress::parse("owner@example.com").unwrap()),
            &format!("Review {step}"),
            json!({"step": step, "names": ["Zoë"]}),
            self.now(),
        )
    }

    fn progress(instance: &Instance, notifications: Vec<Notification>) -> Progress {
        Progress {
            instance: instance.clone(),
            steps: vec![StepRun::pending(instance.id, "a", instance.created_at)],
            history: Vec::new(),
            approvals: Vec::new(),
            tasks: Vec::new(),
            notifications,
        }
    }

    /// A stored instance with `steps.len()` pending notifications.
    async fn queued(&self, steps: &[&str]) -> (Instance, Vec<Notification>) {
        let instance = self.instance();
        let all: Vec<Notification> = steps
            .iter()
            .map(|s| self.notification(&instance, s))
            .collect();
        self.store
            .commit_progress(&[Self::progress(&instance, all.clone())])
            .await
            .unwrap();
        (instance, all)
    }

    async fn list(&self, query: NotificationQuery) -> Vec<Notification> {
        self.store
            .list_notifications(&NotificationQuery {
                limit: if query.limit == 0 { 100 } else { query.limit },
                ..query
            })
            .await
            .unwrap()
    }

    async fn get(&self, id: NotificationId) -> Notification {
        self.list(NotificationQuery::default())
            .await
            .into_iter()
            .find(|n| n.id == id)
            .unwrap()
    }
}

mod cases {
    use super::*;

    pub async fn notifications_travel_with_progress_or_not_at_all(c: &Case) {
        let (instance, queued) = c.queued(&["a", "b"]).await;
        assert_eq!(c.list(NotificationQuery::default()).await, queued);

        // A stale batch writes none of its notifications.
        let stale = Case::progress(&instance, vec![c.notification(&instance, "c")]);
        assert!(matches!(
            c.store.commit_progress(&[stale]).await,
            Err(StoreError::Stale(_))
        ));
        assert_eq!(c.list(NotificationQuery::default()).await.len(), 2);

        // A notification of another instance is refused, and rolls back the batch.
        let other = c.instance();
        let mut next = instance.clone();
        next.version = 2;
        let wrong = Case::progress(&next, vec![c.notification(&other, "x")]);
        assert!(matches!(
            c.store.commit_progress(&[wrong]).await,
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(
            c.store.get_instance(instance.id).await.unwrap().0.version,
            1
        );

        // Queued again (a replayed batch): the stored one is left as it is.
        let mut again = queued[0].clone();
        again.subject = "changed".into();
        c.store
            .commit_progress(&[Case::progress(&next, vec![again])])
            .await
            .unwrap();
        assert_eq!(c.get(queued[0].id).await.subject, "Review a");
    }

    pub async fn due_notifications_are_claimed_once_per_lease(c: &Case) {
        let (_, queued) = c.queued(&["a", "b", "c"]).await;
        let now = c.clock.now();
        let lease = now + Duration::minutes(5);

        let first = c.store.claim_notifications(now, lease, 2).await.unwrap();
        assert_eq!(
            first.iter().map(|n| n.id).collect::<Vec<_>>(),
            vec![queued[0].id, queued[1].id],
            "earliest first, at most the limit"
        );
        assert!(first.iter().all(|n| n.next_attempt_at == Some(lease)));
        let rest = c.store.claim_notifications(now, lease, 10).await.unwrap();
        assert_eq!(
            rest.iter().map(|n| n.id).collect::<Vec<_>>(),
            vec![queued[2].id]
        );
        assert!(
            c.store
                .claim_notifications(now, lease, 10)
                .await
                .unwrap()
                .is_empty()
        );

        // A dispatcher that never reported back: due again when the lease ends.
        let later = c
            .store
            .claim_notifications(lease, lease + Duration::minutes(5), 10)
            .await
            .unwrap();
        assert_eq!(later.len(), 3);
    }

    pub async fn concurrent_claims_never_take_the_same_notification(c: &Case) {
        let steps: Vec<String> = (0..40).map(|i| format!("s{i}")).collect();
        let refs: Vec<&str> = steps.iter().map(String::as_str).collect();
        c.queued(&refs).await;
        let now = c.clock.now();
        let lease = now + Duration::minutes(5);
        let mut claims = tokio::task::JoinSet::new();
        for _ in 0..4 {
            let store = c.store.clone();
            claims.spawn(async move { store.claim_notifications(now, lease, 15).await.unwrap() });
        }
        let mut seen = HashSet::new();
        let mut total = 0;
        while let Some(claimed) = claims.join_next().await {
            for n in claimed.unwrap() {
                total += 1;
                assert!(seen.insert(n.id), "{} was claimed twice", n.id);
            }
        }
        // A claim that lost a race for rows takes fewer (on PostgreSQL it
        // re-checks them and skips them); the rest come with the next claims.
        while total < 40 {
            let claimed = c.store.claim_notifications(now, lease, 15).await.unwrap();
            assert!(!claimed.is_empty(), "{} of 40 claimed, then none", total);
            for n in claimed {
                total += 1;
                assert!(seen.insert(n.id), "{} was claimed twice", n.id);
            }
        }
        assert!(
            c.store
                .claim_notifications(now, lease, 15)
                .await
                .unwrap()
                .is_empty()
        );
    }

    pub async fn attempts_are_recorded_only_while_pending(c: &Case) {
        let (instance, queued) = c.queued(&["a", "b", "c"]).await;
        let (a, b, d) = (queued[0].id, queued[1].id, queued[2].id);
        let now = c.clock.now();
        let retry_at = now + Duration::seconds(120);

        c.store
            .mark_notification_retry(a, 1, retry_at, "webhook: HTTP 503")
            .await
            .unwrap();
        let stored = c.get(a).await;
        assert_eq!(
            (
                stored.state,
                stored.attempts,
                stored.next_attempt_at,
                stored.last_error.as_deref()
            ),
            (
                NotificationState::Pending,
                1,
                Some(retry_at),
                Some("webhook: HTTP 503")
            )
        );
        let due = c
            .store
            .claim_notifications(now, now + Duration::minutes(1), 10)
            .await
            .unwrap();
        assert!(
            due.iter().all(|n| n.id != a),
            "not due before its retry time"
        );

        c.store
            .mark_notification_delivered(a, 2, retry_at)
            .await
            .unwrap();
        let stored = c.get(a).await;
        assert_eq!(
            (
                stored.state,
                stored.attempts,
                stored.delivered_at,
                stored.next_attempt_at
            ),
            (NotificationState::Delivered, 2, Some(retry_at), None)
        );
        c.store
            .mark_notification_failed(b, 1, "webhook: HTTP 400")
            .await
            .unwrap();
        assert_eq!(c.get(b).await.state, NotificationState::Failed);

        // Final states stay final.
        for result in [
            c.store.mark_notification_failed(a, 3, "late").await,
            c.store.mark_notification_retry(b, 2, now, "late").await,
            c.store.mark_notification_delivered(b, 2, now).await,
        ] {
            assert!(
                matches!(result, Err(StoreError::Stale("notification"))),
                "{result:?}"
            );
        }
        let ghost = NotificationId::generate(now);
        assert!(matches!(
            c.store.mark_notification_delivered(ghost, 1, now).await,
            Err(StoreError::NotFound("notification"))
        ));
        assert!(
            c.store
                .claim_notifications(
                    retry_at + Duration::hours(1),
                    retry_at + Duration::hours(2),
                    10
                )
                .await
                .unwrap()
                .iter()
                .all(|n| n.id == d),
            "delivered and failed ones are never claimed"
        );

        // Filters and pages.
        let pending = c
            .list(NotificationQuery {
                state: Some(NotificationState::Pending),
                ..Default::default()
            })
            .await;
        assert_eq!(pending.iter().map(|n| n.id).collect::<Vec<_>>(), vec![d]);
        let (_, others) = c.queued(&["z"]).await;
        let mine = c
            .list(NotificationQuery {
                instance: Some(instance.id),
                ..Default::default()
            })
            .await;
        assert_eq!(mine.len(), 3);
        let page = c
            .list(NotificationQuery {
                after: Some(b),
                limit: 1,
                ..Default::default()
            })
            .await;
        assert_eq!(page.iter().map(|n| n.id).collect::<Vec<_>>(), vec![d]);
        assert_eq!(
            c.list(NotificationQuery::default())
                .await
                .last()
                .map(|n| n.id),
            Some(others[0].id)
        );
    }
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let db = gatehouse_store::testing::TestDatabase::sqlite().await.unwrap();
                    let case = super::Case { store: db.store.clone(), clock: super::FakeClock::default() };
                    super::cases::$case(&case).await;
                    db.cleanup().await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(db) = gatehouse_store::testing::TestDatabase::postgres(stringify!($case)).await.unwrap() else {
                        eprintln!("GATEHOUSE_TEST_DATABASE_URL is not set; the PostgreSQL run is done by .ci/run");
                        return;
                    };
                    let case = super::Case { store: db.store.clone(), clock: super::FakeClock::default() };
                    super::cases::$case(&case).await;
                    db.cleanup().await;
                }
            )*
        }
    };
}

conformance!(
    notifications_travel_with_progress_or_not_at_all,
    due_notifications_are_claimed_once_per_lease,
    concurrent_claims_never_take_the_same_notification,
    attempts_are_recorded_only_while_pending,
);
