//! The knowledge base's storage (`KbStore`) on both back ends: tenant
//! scoping, versions and history, idempotent publications, and articles
//! removed with their tenant's key. Sealing is the service's job (the
//! server's tests check that the stored bytes hold no plaintext); here the
//! sealed bytes are opaque.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests fail loudly"
)]

use std::sync::Arc;

use gatehouse_core::clock::{Clock, FakeClock};
use gatehouse_core::id::ArticleId;
use gatehouse_core::kb::{ArticleQuery, Collection, Publication, Published, StoredArticle};
use gatehouse_core::keys::{TenantKey, WrappedKey};
use gatehouse_core::store::{Store, StoreError};
use gatehouse_core::tenant::{DisplayName, Region, Tenant, TenantSlug, TenantState};
use time::Duration;

struct Case {
    store: Arc<dyn Store>,
    clock: FakeClock,
}

impl Case {
    async fn tenant(&self, slug: &str) -> Tenant {
        let now = self.clock.now();
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

    fn article(&self, tenant: &Tenant, collection: &str, sealed: &[u8]) -> StoredArticle {
        self.clock.advance(Duration::milliseconds(1));
        let now = self.clock.now();
        StoredArticle {
            id: ArticleId::generate(now),
            tenant_id: tenant.id,
            collection: Collection::parse(collection).unwrap(),
            version: 1,
            created_by: "op_author".into(),
            author: "op_author".into(),
            created_at: now,
            updated_at: now,
            sealed: sealed.to_vec(),
        }
    }
}

fn query(collection: Option<&str>, limit: u32) -> ArticleQuery {
    ArticleQuery {
        collection: collection.map(|c| Collection::parse(c).unwrap()),
        after: None,
        limit,
    }
}

mod cases {
    use super::*;

    pub async fn articles_are_scoped_by_tenant(c: &Case) {
        let ours = c.tenant("ours").await;
        let theirs = c.tenant("theirs").await;
        let a = c.article(&ours, "runbooks", b"a");
        let b = c.article(&ours, "known-issues", b"b");
        let t = c.article(&theirs, "runbooks", b"t");
        for article in [&a, &b, &t] {
            c.store.insert_article(article, &[]).await.unwrap();
        }
        assert_eq!(c.store.get_article(ours.id, a.id).await.unwrap(), a);
        // Another tenant's id is not found, never returned.
        assert!(matches!(
            c.store.get_article(ours.id, t.id).await,
            Err(StoreError::NotFound("article"))
        ));
        assert!(matches!(
            c.store.article_versions(ours.id, t.id).await,
            Err(StoreError::NotFound("article"))
        ));
        let all = c
            .store
            .list_articles(ours.id, &query(None, 10))
            .await
            .unwrap();
        assert_eq!(all, vec![a.clone(), b.clone()]);
        let runbooks = c
            .store
            .list_articles(ours.id, &query(Some("runbooks"), 10))
            .await
            .unwrap();
        assert_eq!(runbooks, vec![a.clone()]);
        // Keyset paging.
        let first = c
            .store
            .list_articles(ours.id, &query(None, 1))
            .await
            .unwrap();
        assert_eq!(first, vec![a.clone()]);
        let next = c
            .store
            .list_articles(
                ours.id,
                &ArticleQuery {
                    after: Some(a.id),
                    ..query(None, 1)
                },
            )
            .await
            .unwrap();
        assert_eq!(next, vec![b.clone()]);
        let stamps = c.store.article_stamps(ours.id).await.unwrap();
        assert_eq!(
            stamps.iter().map(|s| (s.id, s.version)).collect::<Vec<_>>(),
            vec![(a.id, 1), (b.id, 1)]
        );
        let by_id = c
            .store
            .articles_by_id(ours.id, &[b.id, t.id, a.id])
            .await
            .unwrap();
        assert_eq!(by_id, vec![a, b], "the other tenant's id is ignored");
    }

    pub async fn edits_keep_history_and_refuse_stale_versions(c: &Case) {
        let tenant = c.tenant("edits").await;
        let first = c.article(&tenant, "runbooks", b"v1");
        c.store.insert_article(&first, &[]).await.unwrap();
        c.clock.advance(Duration::seconds(5));
        let second = StoredArticle {
            version: 2,
            author: "op_editor".into(),
            updated_at: c.clock.now(),
            sealed: b"v2".to_vec(),
            ..first.clone()
        };
        c.store.update_article(&second, &[]).await.unwrap();
        assert_eq!(
            c.store.get_article(tenant.id, first.id).await.unwrap(),
            second
        );
        // A second editor who read version 1 too.
        let racing = StoredArticle {
            sealed: b"lost".to_vec(),
            ..second.clone()
        };
        assert!(matches!(
            c.store.update_article(&racing, &[]).await,
            Err(StoreError::Stale("article"))
        ));
        let history = c.store.article_versions(tenant.id, first.id).await.unwrap();
        assert_eq!(
            history
                .iter()
                .map(|v| (v.version, v.author.as_str(), v.sealed.as_slice()))
                .collect::<Vec<_>>(),
            vec![
                (1, "op_author", b"v1".as_slice()),
                (2, "op_editor", b"v2".as_slice())
            ]
        );
        // Editing an article of another tenant finds nothing.
        let other = c.tenant("other").await;
        let foreign = StoredArticle {
            tenant_id: other.id,
            version: 3,
            ..second
        };
        assert!(matches!(
            c.store.update_article(&foreign, &[]).await,
            Err(StoreError::NotFound("article"))
        ));
    }

    pub async fn a_publication_is_written_once_per_key(c: &Case) {
        let tenant = c.tenant("publish").await;
        let articles = vec![
            c.article(&tenant, "runbooks", b"one"),
            c.article(&tenant, "runbooks", b"two"),
        ];
        let publication = Publication {
            tenant_id: tenant.id,
            key: "wf_1/runbooks".into(),
            collection: Collection::parse("runbooks").unwrap(),
            articles: articles.iter().map(|a| a.id).collect(),
            at: c.clock.now(),
        };
        let first = c
            .store
            .publish_articles(&publication, &articles, &[])
            .await
            .unwrap();
        assert_eq!(first, Published::Created(publication.clone()));
        // A retry renders new articles (new ids) under the same key.
        let retry_articles = vec![c.article(&tenant, "runbooks", b"one again")];
        let retry = Publication {
            articles: retry_articles.iter().map(|a| a.id).collect(),
            at: c.clock.now(),
            ..publication.clone()
        };
        let second = c
            .store
            .publish_articles(&retry, &retry_articles, &[])
            .await
            .unwrap();
        match second {
            Published::Replayed(earlier) => assert_eq!(earlier.articles, publication.articles),
            other => panic!("expected a replay, got {other:?}"),
        }
        assert_eq!(
            c.store
                .list_articles(tenant.id, &query(None, 10))
                .await
                .unwrap()
                .len(),
            2,
            "the retry wrote nothing"
        );
        // The same key in another tenant is another publication.
        let other = c.tenant("publish-other").await;
        let theirs = vec![c.article(&other, "runbooks", b"x")];
        let elsewhere = Publication {
            tenant_id: other.id,
            articles: theirs.iter().map(|a| a.id).collect(),
            ..publication.clone()
        };
        assert!(matches!(
            c.store
                .publish_articles(&elsewhere, &theirs, &[])
                .await
                .unwrap(),
            Published::Created(_)
        ));
        // A publication that does not list its articles is refused.
        let wrong = Publication {
            key: "other-key".into(),
            articles: vec![],
            ..publication
        };
        assert!(matches!(
            c.store.publish_articles(&wrong, &articles, &[]).await,
            Err(StoreError::Conflict(_))
        ));
    }

    pub async fn deleting_the_tenant_removes_its_articles(c: &Case) {
        let mut doomed = c.tenant("doomed").await;
        let kept = c.tenant("kept").await;
        let gone = c.article(&doomed, "runbooks", b"gone");
        let stays = c.article(&kept, "runbooks", b"stays");
        c.store.insert_article(&gone, &[]).await.unwrap();
        c.store.insert_article(&stays, &[]).await.unwrap();
        doomed.state = TenantState::Deleted;
        doomed.version += 1;
        c.store.delete_tenant(&doomed, &[]).await.unwrap();
        assert!(matches!(
            c.store.get_article(doomed.id, gone.id).await,
            Err(StoreError::NotFound(_))
        ));
        assert!(matches!(
            c.store.article_versions(doomed.id, gone.id).await,
            Err(StoreError::NotFound(_))
        ));
        assert!(c.store.article_stamps(doomed.id).await.unwrap().is_empty());
        // Writing to a deleted tenant finds no tenant.
        let late = c.article(&doomed, "runbooks", b"late");
        assert!(matches!(
            c.store.insert_article(&late, &[]).await,
            Err(StoreError::NotFound("tenant"))
        ));
        assert_eq!(c.store.get_article(kept.id, stays.id).await.unwrap(), stays);
    }
}

macro_rules! both_backends {
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
                    let Some(db) = gatehouse_store::testing::TestDatabase::postgres(concat!("kb_", stringify!($case))).await.unwrap() else {
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

both_backends!(
    articles_are_scoped_by_tenant,
    edits_keep_history_and_refuse_stale_versions,
    a_publication_is_written_once_per_key,
    deleting_the_tenant_removes_its_articles,
);
