//! Conformance of the webhook intake's storage (`HookStore`), on SQLite
//! and, with `GATEHOUSE_TEST_DATABASE_URL`, on PostgreSQL: delivery records
//! are scoped by tenant and listed newest first with their audit record
//! queued alongside; a poller's watermark survives and never moves back.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests fail loudly"
)]

use std::sync::Arc;

use gatehouse_core::audit::Provenance;
use gatehouse_core::clock::{Clock, FakeClock};
use gatehouse_core::hooks::{DeliveryOutcome, DeliveryQuery, HookDelivery, HookSource};
use gatehouse_core::id::{HookDeliveryId, TenantId};
use gatehouse_core::keys::{TenantKey, WrappedKey};
use gatehouse_core::store::{Store, StoreError};
use gatehouse_core::tenant::{DisplayName, Region, Tenant, TenantSlug, TenantState};
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

    async fn tenant(&self, slug: &str) -> TenantId {
        let now = self.now();
        let tenant = Tenant::new(
            TenantSlug::parse(slug).unwrap(),
            DisplayName::parse(slug).unwrap(),
            Region::parse("eu").unwrap(),
            TenantState::Active,
            now,
        )
        .unwrap();
        let key = TenantKey {
            tenant_id: tenant.id,
            wrapped: WrappedKey {
                kek_id: "local:1".into(),
                ciphertext: vec![1, 2, 3],
            },
            created_at: now,
            rewrapped_at: None,
        };
        self.store.insert_tenant(&tenant, &key, &[]).await.unwrap();
        tenant.id
    }

    fn delivery(
        &self,
        tenant: TenantId,
        source: HookSource,
        outcome: DeliveryOutcome,
    ) -> HookDelivery {
        let now = self.now();
        HookDelivery {
            id: HookDeliveryId::generate(now),
            tenant_id: tenant,
            source,
            received_at: now,
            outcome,
            reason: (outcome != DeliveryOutcome::Accepted).then(|| "why".to_owned()),
            event_id: None,
            body_sha256: "ab".repeat(32),
        }
    }

    fn query(tenant: TenantId) -> DeliveryQuery {
        DeliveryQuery {
            tenant,
            source: None,
            outcome: None,
            before: None,
            limit: 100,
        }
    }
}

mod cases {
    use super::*;

    pub async fn deliveries_are_scoped_by_tenant_and_listed_newest_first(c: &Case) {
        let acme = c.tenant("acme").await;
        let globex = c.tenant("globex").await;
        let a1 = c.delivery(acme, HookSource::Autotask, DeliveryOutcome::BadSignature);
        let a2 = c.delivery(acme, HookSource::Generic, DeliveryOutcome::Accepted);
        let a3 = c.delivery(acme, HookSource::Autotask, DeliveryOutcome::Ignored);
        let g1 = c.delivery(globex, HookSource::Autotask, DeliveryOutcome::Accepted);
        for d in [&a1, &a2, &a3, &g1] {
            let audit = Provenance::system("webhook", d.received_at).record(
                Some(d.tenant_id),
                d.outcome.audit_action(),
                d.id,
                json!({"source": d.source.as_str()}),
            );
            c.store.record_hook_delivery(d, &[audit]).await.unwrap();
        }
        let all = c
            .store
            .list_hook_deliveries(&Case::query(acme))
            .await
            .unwrap();
        assert_eq!(all, vec![a3.clone(), a2.clone(), a1.clone()]);

        let autotask = c
            .store
            .list_hook_deliveries(&DeliveryQuery {
                source: Some(HookSource::Autotask),
                ..Case::query(acme)
            })
            .await
            .unwrap();
        assert_eq!(
            autotask.iter().map(|d| d.id).collect::<Vec<_>>(),
            vec![a3.id, a1.id]
        );

        let page = c
            .store
            .list_hook_deliveries(&DeliveryQuery {
                before: Some(a3.id),
                limit: 1,
                ..Case::query(acme)
            })
            .await
            .unwrap();
        assert_eq!(page.iter().map(|d| d.id).collect::<Vec<_>>(), vec![a2.id]);

        let accepted = c
            .store
            .list_hook_deliveries(&DeliveryQuery {
                outcome: Some(DeliveryOutcome::Accepted),
                ..Case::query(globex)
            })
            .await
            .unwrap();
        assert_eq!(accepted, vec![g1]);

        // The audit records travelled with the deliveries.
        let queued = c.store.pending_audit(100).await.unwrap();
        let hooks = queued
            .iter()
            .filter(|(_, r)| r.action.starts_with("hook.delivery."))
            .count();
        assert_eq!(hooks, 4);
    }

    pub async fn a_delivery_for_an_unknown_tenant_is_not_found(c: &Case) {
        let stranger = TenantId::generate(c.now());
        let d = c.delivery(stranger, HookSource::Generic, DeliveryOutcome::Malformed);
        let err = c.store.record_hook_delivery(&d, &[]).await.unwrap_err();
        assert!(matches!(err, StoreError::NotFound(_)), "{err}");
    }

    pub async fn the_watermark_persists_and_never_moves_back(c: &Case) {
        let msp = c.tenant("msp").await;
        assert_eq!(
            c.store
                .intake_watermark(msp, "autotask.opportunities")
                .await
                .unwrap(),
            None
        );
        let t1 = c.now();
        let t2 = t1 + Duration::minutes(5);
        c.store
            .set_intake_watermark(msp, "autotask.opportunities", t2, &[])
            .await
            .unwrap();
        c.store
            .set_intake_watermark(msp, "autotask.opportunities", t1, &[])
            .await
            .unwrap();
        assert_eq!(
            c.store
                .intake_watermark(msp, "autotask.opportunities")
                .await
                .unwrap(),
            Some(t2)
        );
        assert_eq!(c.store.intake_watermark(msp, "other").await.unwrap(), None);
        let other = c.tenant("other").await;
        assert_eq!(
            c.store
                .intake_watermark(other, "autotask.opportunities")
                .await
                .unwrap(),
            None
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
    deliveries_are_scoped_by_tenant_and_listed_newest_first,
    a_delivery_for_an_unknown_tenant_is_not_found,
    the_watermark_persists_and_never_moves_back,
);
