//! The storage conformance suite: every case runs on SQLite, and on
//! PostgreSQL when `GATEHOUSE_TEST_DATABASE_URL` is set (`.ci/run` sets it).
//! Each case gets a database (or schema) of its own.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests fail loudly"
)]

use std::sync::Arc;

use gatehouse_core::clock::{Clock, FakeClock};
use gatehouse_core::id::TenantId;
use gatehouse_core::keys::{TenantKey, WrappedKey};
use gatehouse_core::operator::{ApiToken, Operator, OperatorName, Role};
use gatehouse_core::secret::SecretName;
use gatehouse_core::store::{Store, StoreError, TenantQuery};
use gatehouse_core::tenant::{DisplayName, Region, Tenant, TenantAction, TenantSlug, TenantState};
use time::Duration;

struct Case {
    store: Arc<dyn Store>,
    clock: FakeClock,
}

impl Case {
    fn tenant(&self, slug: &str, state: TenantState) -> (Tenant, TenantKey) {
        let now = self.clock.now();
        self.clock.advance(Duration::milliseconds(1));
        let tenant = Tenant::new(
            TenantSlug::parse(slug).unwrap(),
            DisplayName::parse(&format!("{slug} Ltd")).unwrap(),
            Region::parse("eu").unwrap(),
            state,
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
        (tenant, key)
    }

    async fn insert(&self, slug: &str) -> Tenant {
        let (tenant, key) = self.tenant(slug, TenantState::Active);
        self.store.insert_tenant(&tenant, &key).await.unwrap();
        tenant
    }

    fn operator(&self, name: &str, role: Role) -> Operator {
        Operator::new(
            OperatorName::parse(name).unwrap(),
            DisplayName::parse(name).unwrap(),
            role,
            self.clock.now(),
        )
    }
}

fn name(text: &str) -> SecretName {
    SecretName::parse(text).unwrap()
}

mod cases {
    use super::*;

    pub async fn migrations_are_current_and_idempotent(c: &Case) {
        let status = c.store.schema_status().await.unwrap();
        assert!(status.is_current(), "{status:?}");
        assert!(status.known >= 1);
        c.store.migrate().await.unwrap();
        assert_eq!(c.store.schema_status().await.unwrap(), status);
        c.store.ping().await.unwrap();
    }

    pub async fn tenants_round_trip(c: &Case) {
        let tenant = c.insert("acme").await;
        assert_eq!(c.store.get_tenant(tenant.id).await.unwrap(), tenant);
        assert_eq!(
            c.store.find_tenant_by_slug(&tenant.slug).await.unwrap(),
            tenant
        );
        let key = c.store.get_tenant_key(tenant.id).await.unwrap();
        assert_eq!(key.wrapped.ciphertext, b"acme");
        let missing = TenantId::generate(c.clock.now());
        assert!(matches!(
            c.store.get_tenant(missing).await,
            Err(StoreError::NotFound("tenant"))
        ));
    }

    pub async fn live_slugs_are_unique(c: &Case) {
        c.insert("acme").await;
        let (dup, key) = c.tenant("acme", TenantState::Provisioning);
        let err = c.store.insert_tenant(&dup, &key).await.unwrap_err();
        assert!(
            matches!(&err, StoreError::Conflict(m) if m.contains("acme")),
            "{err:?}"
        );
        // The failed insert left nothing behind: not the tenant, not its key.
        assert!(matches!(
            c.store.get_tenant(dup.id).await,
            Err(StoreError::NotFound(_))
        ));
        assert!(matches!(
            c.store.get_tenant_key(dup.id).await,
            Err(StoreError::NotFound(_))
        ));
    }

    pub async fn a_deleted_tenants_slug_can_be_reused(c: &Case) {
        let mut old = c.insert("acme").await;
        old.state = old.state.apply(TenantAction::Suspend).unwrap();
        old.version += 1;
        c.store.update_tenant(&old).await.unwrap();
        old.state = TenantState::Deleted;
        old.version += 1;
        c.store.delete_tenant(&old).await.unwrap();
        let new = c.insert("acme").await;
        assert_eq!(
            c.store.find_tenant_by_slug(&new.slug).await.unwrap().id,
            new.id
        );
        assert_eq!(
            c.store.get_tenant(old.id).await.unwrap().state,
            TenantState::Deleted
        );
    }

    pub async fn tenants_list_in_pages_and_by_state(c: &Case) {
        let mut ids = Vec::new();
        for i in 0..7 {
            ids.push(c.insert(&format!("tenant-{i}")).await.id);
        }
        let (suspended, key) = c.tenant("quiet", TenantState::Provisioning);
        c.store.insert_tenant(&suspended, &key).await.unwrap();

        let mut seen = Vec::new();
        let mut after = None;
        loop {
            let page = c
                .store
                .list_tenants(&TenantQuery {
                    state: Some(TenantState::Active),
                    after,
                    limit: 3,
                })
                .await
                .unwrap();
            if page.is_empty() {
                break;
            }
            assert!(page.len() <= 3);
            after = page.last().map(|t| t.id);
            seen.extend(page.into_iter().map(|t| t.id));
        }
        assert_eq!(
            seen, ids,
            "pages cover every active tenant once, in creation order"
        );

        let all = c
            .store
            .list_tenants(&TenantQuery {
                limit: 100,
                ..Default::default()
            })
            .await
            .unwrap();
        assert_eq!(all.len(), 8);
        let provisioning = c
            .store
            .list_tenants(&TenantQuery {
                state: Some(TenantState::Provisioning),
                limit: 100,
                after: None,
            })
            .await
            .unwrap();
        assert_eq!(
            provisioning.iter().map(|t| t.id).collect::<Vec<_>>(),
            vec![suspended.id]
        );
    }

    pub async fn updates_detect_lost_writes(c: &Case) {
        let tenant = c.insert("acme").await;
        let mut first = tenant.clone();
        first.display_name = DisplayName::parse("Acme One").unwrap();
        first.version += 1;
        c.store.update_tenant(&first).await.unwrap();

        let mut second = tenant.clone();
        second.display_name = DisplayName::parse("Acme Two").unwrap();
        second.version += 1;
        assert!(matches!(
            c.store.update_tenant(&second).await,
            Err(StoreError::Stale("tenant"))
        ));
        assert_eq!(
            c.store
                .get_tenant(tenant.id)
                .await
                .unwrap()
                .display_name
                .as_str(),
            "Acme One"
        );

        let mut ghost = c.tenant("ghost", TenantState::Active).0;
        ghost.version += 1;
        assert!(matches!(
            c.store.update_tenant(&ghost).await,
            Err(StoreError::NotFound("tenant"))
        ));
    }

    pub async fn deleting_a_tenant_shreds_its_key_and_secrets(c: &Case) {
        let mut doomed = c.insert("doomed").await;
        let kept = c.insert("kept").await;
        for t in [&doomed, &kept] {
            c.store
                .put_secret(t.id, &name("psa.api-key"), b"sealed", c.clock.now())
                .await
                .unwrap();
        }
        doomed.state = TenantState::Deleted;
        doomed.version += 1;
        c.store.delete_tenant(&doomed).await.unwrap();

        assert!(matches!(
            c.store.get_tenant_key(doomed.id).await,
            Err(StoreError::NotFound(_))
        ));
        assert!(c.store.list_secrets(doomed.id).await.unwrap().is_empty());
        assert_eq!(
            c.store.get_tenant(doomed.id).await.unwrap().state,
            TenantState::Deleted
        );
        assert!(matches!(
            c.store.find_tenant_by_slug(&doomed.slug).await,
            Err(StoreError::NotFound(_))
        ));
        // A write that arrives after the shredding (another node, a slow
        // request) is refused: nothing is left behind under a destroyed key.
        assert!(matches!(
            c.store
                .put_secret(doomed.id, &name("late.write"), b"sealed", c.clock.now())
                .await,
            Err(StoreError::NotFound("tenant key"))
        ));
        assert!(c.store.list_secrets(doomed.id).await.unwrap().is_empty());
        // The other tenant is untouched.
        assert!(c.store.get_tenant_key(kept.id).await.is_ok());
        assert_eq!(c.store.list_secrets(kept.id).await.unwrap().len(), 1);
        // A stale delete is refused.
        let mut again = doomed.clone();
        again.version += 1;
        assert!(matches!(
            c.store.delete_tenant(&doomed).await,
            Err(StoreError::Stale(_))
        ));
    }

    pub async fn keys_list_in_pages_and_rewrap_only_from_the_expected_kek(c: &Case) {
        let mut ids = Vec::new();
        for i in 0..5 {
            ids.push(c.insert(&format!("tenant-{i}")).await.id);
        }
        let first = c.store.list_tenant_keys(None, 3).await.unwrap();
        let rest = c
            .store
            .list_tenant_keys(first.last().map(|k| k.tenant_id), 3)
            .await
            .unwrap();
        let listed: Vec<_> = first.iter().chain(&rest).map(|k| k.tenant_id).collect();
        assert_eq!(listed, ids);

        let new = WrappedKey {
            kek_id: "local:2".into(),
            ciphertext: vec![9; 40],
        };
        let at = c.clock.now();
        c.store
            .rewrap_tenant_key(ids[0], "local:1", &new, at)
            .await
            .unwrap();
        let key = c.store.get_tenant_key(ids[0]).await.unwrap();
        assert_eq!((key.wrapped, key.rewrapped_at), (new.clone(), Some(at)));
        // A second rotation that read the old KEK loses the race, loudly.
        assert!(matches!(
            c.store.rewrap_tenant_key(ids[0], "local:1", &new, at).await,
            Err(StoreError::Stale("tenant key"))
        ));
    }

    pub async fn secrets_are_scoped_to_their_tenant(c: &Case) {
        let a = c.insert("tenant-a").await;
        let b = c.insert("tenant-b").await;
        let t0 = c.clock.now();
        let meta = c
            .store
            .put_secret(a.id, &name("graph.client-secret"), b"one", t0)
            .await
            .unwrap();
        assert_eq!(
            (meta.version, meta.created_at, meta.updated_at),
            (1, t0, t0)
        );
        c.clock.advance(Duration::seconds(5));
        let t1 = c.clock.now();
        let meta = c
            .store
            .put_secret(a.id, &name("graph.client-secret"), b"two", t1)
            .await
            .unwrap();
        assert_eq!(
            (meta.version, meta.created_at, meta.updated_at),
            (2, t0, t1)
        );
        assert_eq!(
            c.store
                .get_secret(a.id, &name("graph.client-secret"))
                .await
                .unwrap()
                .sealed,
            b"two"
        );

        // Tenant B sees none of tenant A's secrets, by name or by listing.
        assert!(matches!(
            c.store.get_secret(b.id, &name("graph.client-secret")).await,
            Err(StoreError::NotFound("secret"))
        ));
        assert!(c.store.list_secrets(b.id).await.unwrap().is_empty());
        assert!(matches!(
            c.store
                .delete_secret(b.id, &name("graph.client-secret"))
                .await,
            Err(StoreError::NotFound(_))
        ));

        c.store
            .put_secret(a.id, &name("autotask.secret"), b"x", t1)
            .await
            .unwrap();
        let names: Vec<_> = c
            .store
            .list_secrets(a.id)
            .await
            .unwrap()
            .into_iter()
            .map(|m| m.name)
            .collect();
        assert_eq!(
            names,
            vec![name("autotask.secret"), name("graph.client-secret")]
        );
        c.store
            .delete_secret(a.id, &name("autotask.secret"))
            .await
            .unwrap();
        assert_eq!(c.store.list_secrets(a.id).await.unwrap().len(), 1);
    }

    pub async fn bootstrap_happens_once(c: &Case) {
        let first = c.operator("admin", Role::Admin);
        let (token, secret) = ApiToken::issue(first.id, "bootstrap", None, c.clock.now()).unwrap();
        assert!(c.store.bootstrap_operator(&first, &token).await.unwrap());

        let second = c.operator("admin2", Role::Admin);
        let (token2, _) = ApiToken::issue(second.id, "bootstrap", None, c.clock.now()).unwrap();
        assert!(!c.store.bootstrap_operator(&second, &token2).await.unwrap());
        // The losing bootstrap left nothing behind.
        assert_eq!(c.store.list_operators().await.unwrap(), vec![first.clone()]);

        let (found, owner) = c.store.find_token(&secret.hash()).await.unwrap();
        assert_eq!((found, owner), (token, first));
        assert!(matches!(
            c.store.find_token(&token2.hash).await,
            Err(StoreError::NotFound("token"))
        ));
    }

    pub async fn operators_and_tokens(c: &Case) {
        let lead = c.operator("lea", Role::Lead);
        c.store.insert_operator(&lead).await.unwrap();
        let dup = c.operator("lea", Role::Auditor);
        assert!(matches!(
            c.store.insert_operator(&dup).await,
            Err(StoreError::Conflict(_))
        ));
        assert_eq!(
            c.store.find_operator_by_name(&lead.name).await.unwrap(),
            lead
        );
        assert_eq!(c.store.get_operator(lead.id).await.unwrap(), lead);

        let now = c.clock.now();
        let (t1, _) =
            ApiToken::issue(lead.id, "laptop", Some(now + Duration::days(30)), now).unwrap();
        c.clock.advance(Duration::seconds(1));
        let (t2, s2) = ApiToken::issue(lead.id, "ci", None, c.clock.now()).unwrap();
        c.store.insert_token(&t1).await.unwrap();
        c.store.insert_token(&t2).await.unwrap();
        let listed: Vec<_> = c
            .store
            .list_tokens(lead.id)
            .await
            .unwrap()
            .into_iter()
            .map(|t| t.id)
            .collect();
        assert_eq!(listed, vec![t2.id, t1.id], "newest first");
        assert_eq!(c.store.get_token(t1.id).await.unwrap(), t1);

        let revoked_at = c.clock.now();
        c.store.revoke_token(t2.id, revoked_at).await.unwrap();
        c.clock.advance(Duration::hours(1));
        c.store.revoke_token(t2.id, c.clock.now()).await.unwrap();
        let (t2_now, _) = c.store.find_token(&s2.hash()).await.unwrap();
        assert_eq!(
            t2_now.revoked_at,
            Some(revoked_at),
            "the first revocation time is kept"
        );

        c.store.set_operator_disabled(lead.id, true).await.unwrap();
        let (_, owner) = c.store.find_token(&t1.hash).await.unwrap();
        assert!(owner.disabled);
    }
}

macro_rules! conformance {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test]
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
                #[tokio::test]
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
    migrations_are_current_and_idempotent,
    tenants_round_trip,
    live_slugs_are_unique,
    a_deleted_tenants_slug_can_be_reused,
    tenants_list_in_pages_and_by_state,
    updates_detect_lost_writes,
    deleting_a_tenant_shreds_its_key_and_secrets,
    keys_list_in_pages_and_rewrap_only_from_the_expected_kek,
    secrets_are_scoped_to_their_tenant,
    bootstrap_happens_once,
    operators_and_tokens,
);
