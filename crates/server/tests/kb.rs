//! The knowledge base over real HTTP, and the `kb.publish` action, on
//! SQLite and (with `GATEHOUSE_TEST_DATABASE_URL`) PostgreSQL: sealed
//! storage, versions, search (ranking, phrases, filters, bad queries),
//! tenant isolation, roles, idempotent publishing and crypto-shredding.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests fail loudly"
)]

use gatehouse_core::id::{ArticleId, TenantId, WorkflowId};
use gatehouse_engine::action::{Action, ActionCall, ActionRegistry};
use gatehouse_server::kb_action::KbPublish;
use gatehouse_store::testing::TestDatabase;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

mod common;

use common::Served as TestApp;

async fn spawn(db: &TestDatabase) -> TestApp {
    TestApp::spawn(db, Vec::new(), ActionRegistry::new(), 64 * 1024)
        .await
        .unwrap()
}

impl TestApp {
    async fn call(
        &self,
        method: Method,
        path: &str,
        token: Option<&str>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut request = self.http.request(method, format!("{}{path}", self.base));
        if let Some(token) = token {
            request = request.bearer_auth(token);
        }
        if let Some(body) = body {
            request = request.json(&body);
        }
        let response = request.send().await.unwrap();
        let status = response.status();
        let text = response.text().await.unwrap();
        let json = if text.is_empty() {
            Value::Null
        } else {
            serde_json::from_str(&text).unwrap_or(Value::String(text))
        };
        (status, json)
    }

    async fn admin(&self, method: Method, path: &str, body: Option<Value>) -> (StatusCode, Value) {
        self.call(method, path, Some(&self.admin), body).await
    }

    async fn create_tenant(&self, slug: &str, name: &str) -> TenantId {
        let (status, body) = self
            .admin(
                Method::POST,
                "/api/v1/tenants",
                Some(json!({"slug": slug, "display_name": name, "region": "eu"})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        body["id"].as_str().unwrap().parse().unwrap()
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

    async fn write(
        &self,
        tenant: &str,
        collection: &str,
        title: &str,
        body: &str,
        tags: &[&str],
    ) -> Value {
        let (status, article) = self
            .admin(
                Method::POST,
                &format!("/api/v1/tenants/{tenant}/kb/articles"),
                Some(json!({"collection": collection, "title": title, "body": body, "tags": tags})),
            )
            .await;
        assert_eq!(status, StatusCode::CREATED, "{article}");
        article
    }

    async fn search(&self, tenant: &str, query: &str) -> (StatusCode, Value) {
        let url = reqwest::Url::parse_with_params(
            &format!("{}/api/v1/tenants/{tenant}/kb/search", self.base),
            &[("q", query)],
        )
        .unwrap();
        let path = format!("{}?{}", url.path(), url.query().unwrap_or_default());
        self.admin(Method::GET, &path, None).await
    }

    async fn hit_ids(&self, tenant: &str, query: &str) -> Vec<String> {
        let (status, body) = self.search(tenant, query).await;
        assert_eq!(status, StatusCode::OK, "{query}: {body}");
        body["hits"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| h["id"].as_str().unwrap().to_owned())
            .collect()
    }

    fn publisher(&self) -> KbPublish {
        KbPublish::new(
            self.app.kb.clone(),
            self.app.store.clone(),
            self.app.clock.clone(),
        )
    }
}

fn id(article: &Value) -> String {
    article["id"].as_str().unwrap().to_owned()
}

/// Whether `needle` occurs in `haystack`.
fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

mod cases {
    use super::*;

    pub async fn articles_are_sealed_versioned_and_searchable(t: &TestApp, db: &TestDatabase) {
        let tenant = t.create_tenant("northwind", "Northwind Legal").await;
        let secret_phrase = "quokka-7731 lives behind the cabinet";
        let firewall = t
            .write(
                "northwind",
                "runbooks",
                "Firewall rules",
                "Ports 443 and 80 are open. Change them only with the client's approval.",
                &["network"],
            )
            .await;
        let network = t
            .write(
                "northwind",
                "runbooks",
                "Network overview",
                &format!(
                    "Two VLANs; the firewall sits between them. The spare switch {secret_phrase}."
                ),
                &["network"],
            )
            .await;
        let backup = t
            .write(
                "northwind",
                "known-issues",
                "Backups",
                "The last tested restore took four hours.",
                &["backup"],
            )
            .await;
        assert_eq!(firewall["version"], 1);
        assert_eq!(firewall["tenant_id"], tenant.to_string());

        // Sealed: neither the stored row nor its history holds the plaintext.
        let network_id: ArticleId = id(&network).parse().unwrap();
        let stored = t.app.store.get_article(tenant, network_id).await.unwrap();
        assert!(!contains(&stored.sealed, b"quokka-7731"));
        assert!(!contains(&stored.sealed, b"Network overview"));
        for version in t
            .app
            .store
            .article_versions(tenant, network_id)
            .await
            .unwrap()
        {
            assert!(!contains(&version.sealed, b"quokka-7731"));
        }
        // Nor does the database file, on SQLite (WAL included).
        if let Some(path) = db.sqlite_path() {
            for file in [path.clone(), path.with_extension("db-wal")] {
                if let Ok(bytes) = std::fs::read(&file) {
                    assert!(
                        !contains(&bytes, b"quokka-7731"),
                        "{} holds the plaintext",
                        file.display()
                    );
                }
            }
        }

        // Search: words of the body and of the title; title hits rank higher.
        assert_eq!(
            t.hit_ids("northwind", "firewall").await,
            vec![id(&firewall), id(&network)]
        );
        assert_eq!(t.hit_ids("northwind", "quokka").await, vec![id(&network)]);
        let (_, found) = t.search("northwind", "firewall").await;
        assert_eq!(found["total"], 2);
        assert_eq!(
            found["hits"][0]["title"]["html"],
            "<mark>Firewall</mark> rules"
        );
        assert!(
            found["hits"][1]["snippet"]["html"]
                .as_str()
                .unwrap()
                .contains("<mark>firewall</mark>")
        );
        // Phrases.
        assert_eq!(
            t.hit_ids("northwind", "\"tested restore\"").await,
            vec![id(&backup)]
        );
        assert!(
            t.hit_ids("northwind", "\"restore tested\"")
                .await
                .is_empty()
        );
        // Filters and paging.
        let (status, filtered) = t
            .admin(
                Method::GET,
                "/api/v1/tenants/northwind/kb/search?q=firewall%20OR%20restore&collection=known-issues",
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{filtered}");
        assert_eq!(filtered["total"], 1);
        assert_eq!(filtered["hits"][0]["id"], id(&backup));
        let (_, second) = t
            .admin(
                Method::GET,
                "/api/v1/tenants/northwind/kb/search?q=firewall&limit=1&offset=1",
                None,
            )
            .await;
        assert_eq!(second["total"], 2);
        assert_eq!(second["hits"].as_array().unwrap().len(), 1);
        assert_eq!(second["hits"][0]["id"], id(&network));

        // An edit: a new version, the history kept, the index updated.
        let path = format!("/api/v1/tenants/northwind/kb/articles/{}", id(&backup));
        let (status, edited) = t
            .admin(
                Method::PUT,
                &path,
                Some(json!({"version": 1, "title": "Backups", "body": "Backups go to the immutable vault nightly.", "tags": ["backup"]})),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{edited}");
        assert_eq!(edited["version"], 2);
        assert!(
            t.hit_ids("northwind", "\"tested restore\"")
                .await
                .is_empty()
        );
        assert_eq!(t.hit_ids("northwind", "immutable").await, vec![id(&backup)]);
        // A stale edit is refused.
        let (status, body) = t
            .admin(
                Method::PUT,
                &path,
                Some(json!({"version": 1, "title": "Lost", "body": "lost"})),
            )
            .await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["error"]["code"], "edit_conflict");
        let (status, history) = t
            .admin(Method::GET, &format!("{path}/versions"), None)
            .await;
        assert_eq!(status, StatusCode::OK, "{history}");
        let bodies: Vec<&str> = history["items"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v["body"].as_str().unwrap())
            .collect();
        assert_eq!(
            bodies,
            vec![
                "The last tested restore took four hours.",
                "Backups go to the immutable vault nightly."
            ]
        );
        let (status, current) = t.admin(Method::GET, &path, None).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(
            current["body"],
            "Backups go to the immutable vault nightly."
        );

        // The list: titles, in creation order, paged.
        let (status, list) = t
            .admin(
                Method::GET,
                "/api/v1/tenants/northwind/kb/articles?limit=2",
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{list}");
        assert_eq!(list["items"].as_array().unwrap().len(), 2);
        assert_eq!(list["items"][0]["title"], "Firewall rules");
        assert!(list["items"][0].get("body").is_none());
        assert_eq!(list["next_cursor"], id(&network));
    }

    pub async fn an_index_built_elsewhere_catches_up_with_the_store(
        t: &TestApp,
        _db: &TestDatabase,
    ) {
        t.create_tenant("catchup", "Catch Up").await;
        let first = t
            .write("catchup", "runbooks", "Printers", "The plotter jams.", &[])
            .await;
        assert_eq!(t.hit_ids("catchup", "plotter").await, vec![id(&first)]);
        // Another node (a second service on the same store, with its own
        // indexes) edits the article: this node's index learns of it at
        // its next search.
        let other = gatehouse_server::kb::KbService::new(
            t.app.store.clone(),
            t.app.keyring.clone(),
            t.app.clock.clone(),
        );
        let tenant = t
            .app
            .store
            .find_tenant_by_slug(&"catchup".parse_slug())
            .await
            .unwrap();
        let by = gatehouse_core::audit::Provenance::system("another node", t.clock_now());
        other
            .update(
                &by,
                &tenant,
                id(&first).parse().unwrap(),
                1,
                None,
                gatehouse_core::kb::ArticleContent::new("Printers", "The scanner jams.", vec![])
                    .unwrap(),
            )
            .await
            .unwrap();
        assert!(t.hit_ids("catchup", "plotter").await.is_empty());
        assert_eq!(t.hit_ids("catchup", "scanner").await, vec![id(&first)]);
    }

    pub async fn tenants_never_see_each_others_articles(t: &TestApp, _db: &TestDatabase) {
        t.create_tenant("alpha", "Alpha").await;
        t.create_tenant("beta", "Beta").await;
        let alpha = t
            .write(
                "alpha",
                "runbooks",
                "Alpha VPN",
                "The alpha concentrator.",
                &[],
            )
            .await;
        let beta = t
            .write(
                "beta",
                "runbooks",
                "Beta VPN",
                "The beta concentrator.",
                &[],
            )
            .await;
        assert_eq!(t.hit_ids("alpha", "concentrator").await, vec![id(&alpha)]);
        assert_eq!(t.hit_ids("beta", "concentrator").await, vec![id(&beta)]);
        // Field syntax cannot reach across either.
        assert!(t.hit_ids("beta", "title:alpha").await.is_empty());
        // Another tenant's article: 404, as if it did not exist.
        for (method, suffix) in [(Method::GET, ""), (Method::GET, "/versions")] {
            let (status, body) = t
                .admin(
                    method,
                    &format!("/api/v1/tenants/beta/kb/articles/{}{suffix}", id(&alpha)),
                    None,
                )
                .await;
            assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
            assert_eq!(body["error"]["code"], "article_not_found");
        }
        let (status, body) = t
            .admin(
                Method::PUT,
                &format!("/api/v1/tenants/beta/kb/articles/{}", id(&alpha)),
                Some(json!({"version": 1, "title": "Taken over", "body": "x"})),
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{body}");
        let (status, _) = t
            .admin(
                Method::GET,
                &format!("/api/v1/tenants/alpha/kb/articles/{}", id(&alpha)),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK, "the article itself is untouched");
        // Unknown tenants and malformed ids are 404 too.
        let (status, _) = t.search("nobody", "vpn").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, _) = t
            .admin(
                Method::GET,
                "/api/v1/tenants/alpha/kb/articles/not-an-id",
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    pub async fn bad_queries_get_400(t: &TestApp, _db: &TestDatabase) {
        t.create_tenant("queries", "Queries").await;
        t.write("queries", "runbooks", "Anything", "Some text.", &[])
            .await;
        for bad in ["", "nosuchfield:x", "title:(open", "\"unclosed"] {
            let (status, body) = t.search("queries", bad).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{bad:?}: {body}");
            assert_eq!(body["error"]["code"], "invalid_query");
        }
        for path in [
            "/api/v1/tenants/queries/kb/search",
            "/api/v1/tenants/queries/kb/search?q=text&limit=0",
            "/api/v1/tenants/queries/kb/search?q=text&limit=101",
            "/api/v1/tenants/queries/kb/search?q=text&offset=10001",
        ] {
            let (status, body) = t.admin(Method::GET, path, None).await;
            assert_eq!(status, StatusCode::BAD_REQUEST, "{path}: {body}");
            assert_eq!(body["error"]["code"], "invalid_query");
        }
        let (status, _) = t
            .admin(
                Method::GET,
                "/api/v1/tenants/queries/kb/search?q=text&collection=Bad%20Name",
                None,
            )
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    }

    pub async fn roles_decide_who_reads_and_writes(t: &TestApp, _db: &TestDatabase) {
        t.create_tenant("roles", "Roles").await;
        let article = t
            .write("roles", "runbooks", "Door codes", "Ask reception.", &[])
            .await;
        let technician = t.operator("tina.tech", "technician").await;
        let auditor = t.operator("audrey.audit", "auditor").await;
        let list = "/api/v1/tenants/roles/kb/articles";
        let new = json!({"collection": "runbooks", "title": "Alarm", "body": "Call the monitoring centre."});
        // Strangers: 401 on every route.
        for (method, path) in [
            (Method::GET, list.to_owned()),
            (Method::POST, list.to_owned()),
            (Method::GET, format!("{list}/{}", id(&article))),
            (
                Method::GET,
                "/api/v1/tenants/roles/kb/search?q=codes".to_owned(),
            ),
        ] {
            let (status, _) = t.call(method, &path, None, Some(new.clone())).await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
            let (status, _) = t
                .call(Method::GET, &path, Some("gh_not_a_token"), None)
                .await;
            assert_eq!(status, StatusCode::UNAUTHORIZED, "{path}");
        }
        // Technicians write.
        let (status, body) = t
            .call(Method::POST, list, Some(&technician), Some(new.clone()))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
        assert_ne!(body["author"], "system");
        // Auditors read and search, but do not write.
        let (status, _) = t.call(Method::GET, list, Some(&auditor), None).await;
        assert_eq!(status, StatusCode::OK);
        let (status, found) = t
            .call(
                Method::GET,
                "/api/v1/tenants/roles/kb/search?q=codes",
                Some(&auditor),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(found["total"], 1);
        let (status, body) = t
            .call(Method::POST, list, Some(&auditor), Some(new.clone()))
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{body}");
        let (status, _) = t
            .call(
                Method::PUT,
                &format!("{list}/{}", id(&article)),
                Some(&auditor),
                Some(json!({"version": 1, "title": "x", "body": "y"})),
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
    }

    pub async fn publishing_twice_with_one_key_makes_one_set(t: &TestApp, _db: &TestDatabase) {
        let tenant = t.create_tenant("contoso", "Contoso Dental").await;
        let publisher = t.publisher();
        let params = json!({
            "tenant": tenant.to_string(),
            "collection": "runbooks",
            "from_template": "client-runbook",
            "docs_organization": "itg-4411",
        });
        let instance = WorkflowId::generate(t.clock_now());
        let call = |attempt| ActionCall {
            instance,
            tenant: None,
            step_id: "runbooks",
            idempotency_key: "wf_x:runbooks",
            params: &params,
            attempt,
        };
        let first = publisher.run(call(1)).await.unwrap();
        let second = publisher.run(call(2)).await.unwrap();
        assert_eq!(
            first, second,
            "the retry returns the first attempt's articles"
        );
        assert_eq!(first["collection"], "runbooks");
        let ids: Vec<String> = first["articles"]
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_str().unwrap().to_owned())
            .collect();
        assert!(ids.len() >= 8, "{first}");
        let (_, list) = t
            .admin(
                Method::GET,
                "/api/v1/tenants/contoso/kb/articles?collection=runbooks&limit=500",
                None,
            )
            .await;
        let listed: Vec<String> = list["items"].as_array().unwrap().iter().map(id).collect();
        assert_eq!(listed, ids, "one set of articles");
        // Rendered with the tenant's details, and searchable.
        let (_, overview) = t
            .admin(
                Method::GET,
                &format!("/api/v1/tenants/contoso/kb/articles/{}", ids[0]),
                None,
            )
            .await;
        assert_eq!(overview["title"], "Contoso Dental: client overview");
        assert!(overview["body"].as_str().unwrap().contains("`itg-4411`"));
        assert_eq!(overview["author"], "system");
        let escalation = t.hit_ids("contoso", "escalation").await;
        assert!(!escalation.is_empty() && escalation.iter().all(|h| ids.contains(h)));
        // Another key publishes another set; a bad template is permanent.
        let again = publisher
            .run(ActionCall {
                idempotency_key: "wf_y:runbooks",
                ..call(1)
            })
            .await
            .unwrap();
        assert_ne!(again["articles"], first["articles"]);
        let bad = json!({"tenant": "contoso", "collection": "runbooks", "from_template": "nope"});
        let err = publisher
            .run(ActionCall {
                params: &bad,
                idempotency_key: "wf_z:runbooks",
                ..call(1)
            })
            .await
            .unwrap_err();
        assert!(
            matches!(err, gatehouse_engine::action::ActionError::Permanent { .. }),
            "{err:?}"
        );
    }

    pub async fn deleting_the_tenant_shreds_its_articles(t: &TestApp, _db: &TestDatabase) {
        let tenant = t.create_tenant("shredded", "Shredded").await;
        let article = t
            .write(
                "shredded",
                "runbooks",
                "Safe",
                "The safe combination is elsewhere.",
                &[],
            )
            .await;
        assert_eq!(
            t.hit_ids("shredded", "combination").await,
            vec![id(&article)]
        );
        assert_eq!(t.app.kb.indexes_held(), 1);
        for step in ["suspend", "delete"] {
            let (method, path) = match step {
                "suspend" => (Method::POST, format!("/api/v1/tenants/{tenant}/suspend")),
                _ => (Method::DELETE, format!("/api/v1/tenants/{tenant}")),
            };
            let (status, body) = t.admin(method, &path, None).await;
            assert!(status.is_success(), "{step}: {status} {body}");
        }
        assert_eq!(t.app.kb.indexes_held(), 0, "the plaintext index is dropped");
        let article_id: ArticleId = id(&article).parse().unwrap();
        assert!(t.app.store.get_article(tenant, article_id).await.is_err());
        let (status, _) = t
            .admin(
                Method::GET,
                &format!("/api/v1/tenants/{tenant}/kb/articles/{}", id(&article)),
                None,
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
        let (status, body) = t.search(&tenant.to_string(), "combination").await;
        assert_eq!(status, StatusCode::CONFLICT, "{body}");
        assert_eq!(body["error"]["code"], "tenant_deleted");
        assert_eq!(t.app.kb.indexes_held(), 0);
    }
}

trait ParseSlug {
    fn parse_slug(&self) -> gatehouse_core::tenant::TenantSlug;
}

impl ParseSlug for str {
    fn parse_slug(&self) -> gatehouse_core::tenant::TenantSlug {
        gatehouse_core::tenant::TenantSlug::parse(self).unwrap()
    }
}

impl TestApp {
    fn clock_now(&self) -> time::OffsetDateTime {
        gatehouse_core::clock::Clock::now(self.clock.as_ref())
    }
}

macro_rules! kb_tests {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let db = super::TestDatabase::sqlite().await.unwrap();
                    let mut app = super::spawn(&db).await;
                    super::cases::$case(&app, &db).await;
                    app.stop();
                    db.cleanup().await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(db) = super::TestDatabase::postgres(concat!("kb_", stringify!($case))).await.unwrap() else {
                        eprintln!("GATEHOUSE_TEST_DATABASE_URL is not set; the PostgreSQL run is done by .ci/run");
                        return;
                    };
                    let mut app = super::spawn(&db).await;
                    super::cases::$case(&app, &db).await;
                    app.stop();
                    db.cleanup().await;
                }
            )*
        }
    };
}

kb_tests!(
    articles_are_sealed_versioned_and_searchable,
    an_index_built_elsewhere_catches_up_with_the_store,
    tenants_never_see_each_others_articles,
    bad_queries_get_400,
    roles_decide_who_reads_and_writes,
    publishing_twice_with_one_key_makes_one_set,
    deleting_the_tenant_shreds_its_articles,
);
