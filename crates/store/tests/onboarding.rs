//! Conformance of `OnboardingStore`, on SQLite and, with
//! `GATEHOUSE_TEST_DATABASE_URL`, on PostgreSQL: repeated requests return
//! what the first one stored, decisions are guarded by the state they
//! expect, every query is scoped by tenant, notices are queued once, and
//! everything goes with the tenant's key.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests fail loudly"
)]

use std::sync::Arc;

use gatehouse_core::clock::{Clock, FakeClock};
use gatehouse_core::id::{ChecklistItemId, SlaId, TenantId, WorkflowId};
use gatehouse_core::keys::{TenantKey, WrappedKey};
use gatehouse_core::notify::Notification;
use gatehouse_core::onboarding::{
    ChecklistItem, ItemDecision, ItemFile, ItemKey, ItemKind, ItemState, NoticeKind, Onboarding,
    PsaLink, Sealed, SlaClock,
};
use gatehouse_core::store::{NotificationQuery, Store, StoreError};
use gatehouse_core::tenant::{DisplayName, Region, Tenant, TenantSlug, TenantState};
use gatehouse_core::workflow::{Instance, InstanceState, Progress};
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

    async fn tenant(&self, slug: &str) -> Tenant {
        let now = self.now();
        let tenant = Tenant::new(
            TenantSlug::parse(slug).unwrap(),
            DisplayName::parse(slug).unwrap(),
            Region::parse("eu").unwrap(),
            TenantState::Provisioning,
            now,
        )
        .unwrap();
        let key = TenantKey {
            tenant_id: tenant.id,
            wrapped: WrappedKey {
                kek_id: "local:1".into(),
                ciphertext: slug.as_bytes().to_vec(),
            },
            created_at: now,
            rewrapped_at: None,
        };
        self.store.insert_tenant(&tenant, &key, &[]).await.unwrap();
        tenant
    }

    async fn instance(&self) -> WorkflowId {
        let now = self.now();
        let instance = Instance {
            id: WorkflowId::generate(now),
            tenant_id: None,
            template: "client-onboarding".into(),
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
        };
        self.store
            .commit_progress(&[Progress {
                instance: instance.clone(),
                steps: Vec::new(),
                history: Vec::new(),
                approvals: Vec::new(),
                tasks: Vec::new(),
                notifications: Vec::new(),
            }])
            .await
            .unwrap();
        instance.id
    }

    async fn onboarding(&self, tenant: TenantId) -> WorkflowId {
        let instance = self.instance().await;
        let now = self.now();
        self.store
            .open_onboarding(
                &Onboarding {
                    instance_id: instance,
                    tenant_id: Some(tenant),
                    slug: "x".into(),
                    owner: None,
                    started_at: now,
                    created_at: now,
                    go_live_at: None,
                },
                &[],
            )
            .await
            .unwrap();
        instance
    }

    fn item(
        &self,
        tenant: TenantId,
        instance: WorkflowId,
        key: &str,
        due_in: Duration,
    ) -> ChecklistItem {
        let now = self.now();
        ChecklistItem {
            id: ChecklistItemId::generate(now),
            tenant_id: tenant,
            instance_id: instance,
            step_id: format!("doc-{key}"),
            key: ItemKey::parse(key).unwrap(),
            title: format!("The {key}"),
            kind: ItemKind::File,
            owner: Some(Sealed(vec![1, 2, 3])),
            due_at: now + due_in,
            state: ItemState::Requested,
            created_at: now,
            decided_by: None,
            decided_at: None,
            note: None,
            secret_name: None,
            file: None,
            reminded_at: None,
            overdue_notified_at: None,
        }
    }

    fn decision(&self, state: ItemState, file: Option<ItemFile>) -> ItemDecision {
        ItemDecision {
            state,
            by: "op_01jd8x3k2q9f6v0c4m7r5t8w1y".into(),
            at: self.now(),
            note: Some("why".into()),
            secret_name: None,
            file,
        }
    }
}

mod cases {
    use super::*;

    pub async fn requests_are_idempotent_and_scoped_by_tenant(c: &Case) {
        let acme = c.tenant("acme").await;
        let globex = c.tenant("globex").await;
        let onboarding = c.onboarding(acme.id).await;
        let first = c.item(acme.id, onboarding, "msa-sow", Duration::days(5));
        let stored = c.store.request_item(&first, &[]).await.unwrap();
        assert_eq!(stored, first);
        // A repeat (new id, new due date) returns the first request.
        let again = c.item(acme.id, onboarding, "msa-sow", Duration::days(9));
        assert_eq!(c.store.request_item(&again, &[]).await.unwrap(), first);
        assert_eq!(
            c.store.list_items(acme.id, onboarding).await.unwrap().len(),
            1
        );
        // Another tenant sees nothing of it.
        assert!(matches!(
            c.store.get_item(globex.id, first.id).await,
            Err(StoreError::NotFound(_))
        ));
        assert!(
            c.store
                .list_items(globex.id, onboarding)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(matches!(
            c.store
                .decide_item(
                    globex.id,
                    first.id,
                    ItemState::Requested,
                    &c.decision(ItemState::Waived, None),
                    &[]
                )
                .await,
            Err(StoreError::NotFound(_))
        ));
        assert_eq!(
            c.store.find_item(first.id).await.unwrap().tenant_id,
            acme.id
        );
    }

    pub async fn decisions_are_guarded_and_files_kept_apart(c: &Case) {
        let acme = c.tenant("acme").await;
        let onboarding = c.onboarding(acme.id).await;
        let item = c
            .store
            .request_item(
                &c.item(acme.id, onboarding, "network-diagram", Duration::days(5)),
                &[],
            )
            .await
            .unwrap();
        let file = ItemFile {
            name: Sealed(b"sealed-name".to_vec()),
            content_type: "image/png".into(),
            size: 4,
            content: Sealed(b"sealed-content".to_vec()),
        };
        let received = c
            .store
            .decide_item(
                acme.id,
                item.id,
                ItemState::Requested,
                &c.decision(ItemState::Received, Some(file.clone())),
                &[],
            )
            .await
            .unwrap();
        assert_eq!(received.state, ItemState::Received);
        let meta = received.file.unwrap();
        assert_eq!((meta.content_type.as_str(), meta.size), ("image/png", 4));
        assert_eq!(c.store.item_file(acme.id, item.id).await.unwrap(), file);
        // Settled once: a second decision is stale.
        assert!(matches!(
            c.store
                .decide_item(
                    acme.id,
                    item.id,
                    ItemState::Requested,
                    &c.decision(ItemState::Waived, None),
                    &[]
                )
                .await,
            Err(StoreError::Stale(_))
        ));
    }

    pub async fn notices_are_queued_once_each(c: &Case) {
        let acme = c.tenant("acme").await;
        let onboarding = c.onboarding(acme.id).await;
        let soon = c
            .store
            .request_item(
                &c.item(acme.id, onboarding, "contacts", Duration::hours(12)),
                &[],
            )
            .await
            .unwrap();
        let later = c
            .store
            .request_item(
                &c.item(acme.id, onboarding, "compliance", Duration::days(10)),
                &[],
            )
            .await
            .unwrap();
        let now = c.clock.now();
        let due = c
            .store
            .due_item_notices(now, Duration::days(1), NoticeKind::Reminder, 10)
            .await
            .unwrap();
        assert_eq!(due.iter().map(|i| i.id).collect::<Vec<_>>(), vec![soon.id]);
        assert!(
            c.store
                .due_item_notices(now, Duration::days(1), NoticeKind::Overdue, 10)
                .await
                .unwrap()
                .is_empty()
        );
        let notice = |kind: &str| {
            Notification::queue(
                onboarding,
                Some(acme.id),
                &soon.step_id,
                kind,
                None,
                "s",
                json!({}),
                now,
            )
        };
        let first = notice("onboarding.item.reminder");
        assert!(
            c.store
                .record_item_notice(&soon, NoticeKind::Reminder, &first, &[])
                .await
                .unwrap()
        );
        assert!(
            !c.store
                .record_item_notice(
                    &soon,
                    NoticeKind::Reminder,
                    &notice("onboarding.item.reminder"),
                    &[]
                )
                .await
                .unwrap()
        );
        let queued = c
            .store
            .list_notifications(&NotificationQuery {
                limit: 10,
                ..NotificationQuery::default()
            })
            .await
            .unwrap();
        assert_eq!(
            queued.iter().map(|n| n.id).collect::<Vec<_>>(),
            vec![first.id]
        );
        assert!(
            c.store
                .due_item_notices(now, Duration::days(1), NoticeKind::Reminder, 10)
                .await
                .unwrap()
                .is_empty()
        );
        // Past due: escalated once; the overdue count follows.
        let past = now + Duration::days(1);
        let overdue = c
            .store
            .due_item_notices(past, Duration::days(1), NoticeKind::Overdue, 10)
            .await
            .unwrap();
        assert_eq!(overdue.len(), 1);
        assert_eq!(
            c.store.onboarding_stats(past).await.unwrap().overdue_items,
            1
        );
        assert!(
            c.store
                .record_item_notice(
                    &soon,
                    NoticeKind::Overdue,
                    &notice("onboarding.item.overdue"),
                    &[]
                )
                .await
                .unwrap()
        );
        assert!(
            c.store
                .due_item_notices(past, Duration::days(1), NoticeKind::Overdue, 10)
                .await
                .unwrap()
                .is_empty()
        );
        assert_eq!(
            c.store
                .get_item(acme.id, later.id)
                .await
                .unwrap()
                .reminded_at,
            None
        );
    }

    pub async fn links_and_sla_clocks_follow_the_tenant_key(c: &Case) {
        let acme = c.tenant("acme").await;
        let onboarding = c.onboarding(acme.id).await;
        let now = c.now();
        let link = PsaLink {
            tenant_id: acme.id,
            psa: "connectwise".into(),
            company_id: "4711".into(),
            instance_id: Some(onboarding),
            linked_at: now,
            unlinked_at: None,
        };
        c.store.link_psa_company(&link, &[]).await.unwrap();
        c.store.link_psa_company(&link, &[]).await.unwrap();
        assert_eq!(c.store.psa_links(acme.id).await.unwrap(), vec![link]);
        assert!(
            c.store
                .unlink_psa_company(acme.id, "4711", c.now(), &[])
                .await
                .unwrap()
        );
        assert!(
            !c.store
                .unlink_psa_company(acme.id, "4711", c.now(), &[])
                .await
                .unwrap()
        );
        let sla = SlaClock {
            id: SlaId::generate(now),
            tenant_id: acme.id,
            instance_id: Some(onboarding),
            contract: "Managed services".into(),
            started_at: now,
            stopped_at: None,
        };
        assert_eq!(c.store.start_sla(&sla, &[]).await.unwrap(), sla);
        assert_eq!(c.store.start_sla(&sla, &[]).await.unwrap(), sla);
        c.store.set_go_live(onboarding, now, &[]).await.unwrap();
        c.store
            .set_go_live(onboarding, now + Duration::days(1), &[])
            .await
            .unwrap();
        assert_eq!(
            c.store.get_onboarding(onboarding).await.unwrap().go_live_at,
            Some(now)
        );
        assert_eq!(
            c.store.onboarding_stats(now).await.unwrap().went_live.len(),
            1
        );
        assert!(
            c.store
                .stop_sla(acme.id, sla.id, c.now(), &[])
                .await
                .unwrap()
        );
        assert!(
            !c.store
                .stop_sla(acme.id, sla.id, c.now(), &[])
                .await
                .unwrap()
        );
        c.store
            .request_item(
                &c.item(acme.id, onboarding, "msa-sow", Duration::days(5)),
                &[],
            )
            .await
            .unwrap();

        // Deleting the tenant destroys its key and everything hanging off it.
        let mut gone = c.store.get_tenant(acme.id).await.unwrap();
        gone.state = TenantState::Deleted;
        gone.version += 1;
        c.store.delete_tenant(&gone, &[]).await.unwrap();
        assert!(c.store.psa_links(acme.id).await.unwrap().is_empty());
        assert!(c.store.sla_clocks(acme.id).await.unwrap().is_empty());
        assert!(
            c.store
                .list_items(acme.id, onboarding)
                .await
                .unwrap()
                .is_empty()
        );
        assert!(matches!(
            c.store.get_onboarding(onboarding).await,
            Err(StoreError::NotFound(_))
        ));
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
                        eprintln!("GATEHOUSE_TEST_DATABASE_URL is not set; skipping the PostgreSQL run");
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
    requests_are_idempotent_and_scoped_by_tenant,
    decisions_are_guarded_and_files_kept_apart,
    notices_are_queued_once_each,
    links_and_sla_clocks_follow_the_tenant_key,
);
