//! Conformance of the connector directory (`ConnectorStore`) and of the
//! approvals of migration 0011, on SQLite and, with
//! `GATEHOUSE_TEST_DATABASE_URL`, on PostgreSQL.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests fail loudly"
)]

use std::collections::BTreeMap;
use std::sync::Arc;

use gatehouse_core::approval::{Approval, ApprovalRequest, plan};
use gatehouse_core::audit::Provenance;
use gatehouse_core::clock::{Clock, FakeClock};
use gatehouse_core::connector::{ConnectorConfig, ConnectorKind, ConnectorName, ConnectorSpec};
use gatehouse_core::id::WorkflowId;
use gatehouse_core::keys::{TenantKey, WrappedKey};
use gatehouse_core::operator::Role;
use gatehouse_core::secret::SecretName;
use gatehouse_core::store::{Store, StoreError};
use gatehouse_core::tenant::{DisplayName, Region, Tenant, TenantSlug, TenantState};
use gatehouse_core::workflow::{Instance, InstanceState, Progress};
use serde_json::json;
use time::Duration;

struct Case {
    store: Arc<dyn Store>,
    clock: FakeClock,
}

impl Case {
    async fn tenant(&self, slug: &str) -> Tenant {
        let now = self.clock.now();
        self.clock.advance(Duration::milliseconds(1));
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
                ciphertext: slug.as_bytes().to_vec(),
            },
            created_at: now,
            rewrapped_at: None,
        };
        self.store.insert_tenant(&tenant, &key, &[]).await.unwrap();
        tenant
    }

    fn spec(&self, kind: ConnectorKind, company: &str) -> ConnectorSpec {
        ConnectorSpec {
            kind,
            base_url: "https://eu.ninjarmm.com".into(),
            settings: json!({ "company_id": company, "region": "eu" }),
            secrets: BTreeMap::from([(
                "client_secret".to_owned(),
                SecretName::parse("ninjaone.client-secret").unwrap(),
            )]),
        }
    }
}

mod cases {
    use super::*;

    pub async fn connectors_round_trip_per_tenant_with_versions(c: &Case) {
        let acme = c.tenant("acme").await;
        let other = c.tenant("other").await;
        let name = ConnectorName::parse("rmm").unwrap();
        let now = c.clock.now();
        let rmm = ConnectorConfig::new(
            acme.id,
            name.clone(),
            c.spec(ConnectorKind::NinjaOne, "1"),
            now,
        )
        .unwrap();
        let audit = Provenance::system("test", now).record(
            Some(acme.id),
            "tenant.connector.set",
            &name,
            json!({}),
        );
        c.store.put_connector(&rmm, &[audit]).await.unwrap();
        assert_eq!(c.store.get_connector(acme.id, &name).await.unwrap(), rmm);
        assert_eq!(
            c.store.list_connectors(acme.id).await.unwrap(),
            vec![rmm.clone()]
        );
        // Scoped: the other tenant sees nothing, and may use the same name.
        assert!(c.store.list_connectors(other.id).await.unwrap().is_empty());
        assert!(matches!(
            c.store.get_connector(other.id, &name).await,
            Err(StoreError::NotFound("connector"))
        ));
        let theirs = ConnectorConfig::new(
            other.id,
            name.clone(),
            c.spec(ConnectorKind::DattoRmm, "9"),
            now,
        )
        .unwrap();
        c.store.put_connector(&theirs, &[]).await.unwrap();

        // A second version 1 of the same name conflicts.
        let twin = ConnectorConfig::new(
            acme.id,
            name.clone(),
            c.spec(ConnectorKind::NinjaOne, "2"),
            now,
        )
        .unwrap();
        assert!(matches!(
            c.store.put_connector(&twin, &[]).await,
            Err(StoreError::Conflict(_))
        ));

        // Changes are version-checked: a lost write is refused.
        c.clock.advance(Duration::seconds(1));
        let v2 = rmm
            .changed(c.spec(ConnectorKind::NinjaOne, "2"), c.clock.now())
            .unwrap();
        c.store.put_connector(&v2, &[]).await.unwrap();
        let stored = c.store.get_connector(acme.id, &name).await.unwrap();
        assert_eq!(stored.version, 2);
        assert_eq!(stored.id, rmm.id);
        assert_eq!(stored.setting("company_id"), Some("2"));
        let lost = rmm
            .changed(c.spec(ConnectorKind::NinjaOne, "3"), c.clock.now())
            .unwrap();
        assert!(matches!(
            c.store.put_connector(&lost, &[]).await,
            Err(StoreError::Stale("connector"))
        ));

        c.store.delete_connector(acme.id, &name, &[]).await.unwrap();
        assert!(matches!(
            c.store.delete_connector(acme.id, &name, &[]).await,
            Err(StoreError::NotFound("connector"))
        ));
        assert_eq!(c.store.list_connectors(other.id).await.unwrap().len(), 1);
    }

    /// A step may have several approvals (a superseded one and its
    /// successor), but never two pending.
    pub async fn a_step_has_at_most_one_pending_approval(c: &Case) {
        let now = c.clock.now();
        let instance = Instance {
            id: WorkflowId::generate(now),
            tenant_id: None,
            template: "t".into(),
            template_version: 1,
            definition: json!({}),
            state: InstanceState::Waiting,
            context: json!({}),
            started_by: None,
            created_by: "system".into(),
            created_at: now,
            updated_at: now,
            next_run_at: None,
            version: 1,
        };
        let approval = |at| {
            Approval::open(
                ApprovalRequest {
                    instance_id: instance.id,
                    step_id: "grant".into(),
                    tenant_id: None,
                    plan: plan("test.do", json!({})),
                    required: 1,
                    approver_role: Role::Lead,
                    initiated_by: "system".into(),
                    prepared_by: "system".into(),
                    deadline: None,
                    escalate_to: None,
                },
                at,
            )
            .unwrap()
        };
        let first = approval(now);
        c.store
            .commit_progress(&[Progress {
                approvals: vec![first.clone()],
                ..Progress::new(instance.clone(), vec![], vec![])
            }])
            .await
            .unwrap();
        let mut v = instance.clone();
        v.version = 2;
        let second = approval(now + Duration::seconds(1));
        assert!(matches!(
            c.store
                .commit_progress(&[Progress {
                    approvals: vec![second.clone()],
                    ..Progress::new(v.clone(), vec![], vec![])
                }])
                .await,
            Err(StoreError::Conflict(_))
        ));
        let mut cancelled = first.clone();
        assert!(cancelled.cancel(now + Duration::seconds(2)));
        c.store
            .commit_progress(&[Progress {
                approvals: vec![cancelled, second.clone()],
                ..Progress::new(v, vec![], vec![])
            }])
            .await
            .unwrap();
        assert_eq!(c.store.get_approval(second.id).await.unwrap(), second);
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
                    let Some(db) = gatehouse_store::testing::TestDatabase::postgres(concat!("con_", stringify!($case))).await.unwrap() else {
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
    connectors_round_trip_per_tenant_with_versions,
    a_step_has_at_most_one_pending_approval,
);
