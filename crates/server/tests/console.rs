//! The console over real HTTP (no browser): sign-in with password and TOTP,
//! the session cookie's attributes, CSRF, lockout, replayed codes, the
//! second-factor policy, roles, sign-out, and the audit records of it all.
//! `tests/browser.rs` drives the same pages in Chromium.

#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    reason = "integration tests fail loudly"
)]

mod common;

use std::sync::Arc;

use gatehouse_core::clock::Clock;
use gatehouse_core::operator::{OperatorName, Role};
use gatehouse_core::tenant::DisplayName;
use gatehouse_engine::action::{ActionRegistry, Noop};
use gatehouse_engine::template::Template;
use gatehouse_server::Actor;
use gatehouse_store::testing::TestDatabase;
use reqwest::StatusCode;
use reqwest::header::{COOKIE, LOCATION, SET_COOKIE};

use common::Served;

const PASSWORD: &str = "correct horse battery staple";

fn templates() -> Vec<Template> {
    let catalog: std::collections::BTreeSet<&str> = ["sandbox.noop"].into();
    let gated = r#"
name = "gated"
version = 1
title = "Gated"
area = "documentation"

[[trigger]]
event = "test.gated"

[[stage]]
id = "run"
title = "Run"

[[stage.step]]
id = "provision"
title = "Provision"
action = "sandbox.noop"
area = "client_onboarding"
"#;
    let human = r#"
name = "human"
version = 1
title = "Human"
area = "documentation"

[[trigger]]
event = "test.human"

[[stage]]
id = "run"
title = "Run"

[[stage.step]]
id = "handoff"
title = "Handoff meeting"
action = "sandbox.noop"
gate = "L3"
"#;
    vec![
        Template::from_toml("test/gated.toml", gated, &catalog).unwrap(),
        Template::from_toml("test/human.toml", human, &catalog).unwrap(),
    ]
}

async fn spawn(db: &TestDatabase) -> Served {
    let mut actions = ActionRegistry::new();
    actions.register("sandbox.noop", Arc::new(Noop));
    Served::spawn(db, templates(), actions, 64 * 1024)
        .await
        .unwrap()
}

/// An operator with a password and, if `totp`, a second factor; returns
/// the TOTP secret.
async fn operator(app: &Served, name: &str, role: Role, totp: bool) -> Option<String> {
    let system = Actor::System("test");
    let handle = OperatorName::parse(name).unwrap();
    app.app
        .create_operator(
            &system,
            handle.clone(),
            DisplayName::parse(name).unwrap(),
            role,
        )
        .await
        .unwrap();
    app.app
        .set_password(&system, &handle, PASSWORD)
        .await
        .unwrap();
    if totp {
        let enrolled = app.app.enroll_totp(&system, &handle).await.unwrap();
        Some(enrolled.secret.to_string())
    } else {
        None
    }
}

/// A browser without a cookie jar: cookies are handled by hand, so each
/// attribute can be checked.
fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .unwrap()
}

/// The value of cookie `name` set by `response`, and its whole header.
fn set_cookie(response: &reqwest::Response, name: &str) -> Option<(String, String)> {
    response
        .headers()
        .get_all(SET_COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with(&format!("{name}=")))
        .map(|header| {
            let value = header[name.len() + 1..]
                .split(';')
                .next()
                .unwrap_or_default()
                .to_owned();
            (value, header.to_owned())
        })
}

/// The value of a hidden input `name` in `html`.
fn hidden(html: &str, name: &str) -> String {
    let marker = format!("name=\"{name}\" value=\"");
    let start = html
        .find(&marker)
        .unwrap_or_else(|| panic!("no {name} in {html}"))
        + marker.len();
    html[start..].split('"').next().unwrap().to_owned()
}

struct Signed {
    cookie: String,
    csrf: String,
}

impl Served {
    fn code(&self, secret: &str) -> String {
        gatehouse_server::signin::current_code(secret, self.clock.now()).unwrap()
    }

    /// Posts the sign-in form (after fetching it for its token).
    async fn post_sign_in(&self, name: &str, password: &str, code: &str) -> reqwest::Response {
        let http = client();
        let form = http
            .get(format!("{}/console/sign-in", self.base))
            .send()
            .await
            .unwrap();
        assert_eq!(form.status(), StatusCode::OK);
        let (token, _) = set_cookie(&form, "gatehouse_sign_in").expect("a sign-in cookie");
        let csrf = hidden(&form.text().await.unwrap(), "csrf");
        assert_eq!(csrf, token, "double submit: the form echoes the cookie");
        http.post(format!("{}/console/sign-in", self.base))
            .header(COOKIE, format!("gatehouse_sign_in={token}"))
            .form(&[
                ("name", name),
                ("password", password),
                ("code", code),
                ("csrf", &csrf),
            ])
            .send()
            .await
            .unwrap()
    }

    async fn sign_in(&self, name: &str, code: &str) -> Signed {
        let response = self.post_sign_in(name, PASSWORD, code).await;
        assert_eq!(
            response.status(),
            StatusCode::SEE_OTHER,
            "{:?}",
            response.text().await
        );
        let (cookie, _) = set_cookie(&response, "gatehouse_session").unwrap();
        let page = self.page(&cookie, "/console/approvals").await;
        assert_eq!(page.0, StatusCode::OK, "{}", page.1);
        Signed {
            csrf: hidden(&page.1, "csrf"),
            cookie,
        }
    }

    async fn page(&self, cookie: &str, path: &str) -> (StatusCode, String) {
        let response = client()
            .get(format!("{}{path}", self.base))
            .header(COOKIE, format!("gatehouse_session={cookie}"))
            .send()
            .await
            .unwrap();
        (response.status(), response.text().await.unwrap())
    }

    async fn post(
        &self,
        signed: &Signed,
        path: &str,
        form: &[(&str, &str)],
    ) -> (StatusCode, String) {
        let response = client()
            .post(format!("{}{path}", self.base))
            .header(COOKIE, format!("gatehouse_session={}", signed.cookie))
            .form(form)
            .send()
            .await
            .unwrap();
        (response.status(), response.text().await.unwrap())
    }

    /// Creates a tenant as admin.
    async fn create_tenant(&self, slug: &str, name: &str) {
        let response = self
            .http
            .post(format!("{}/api/v1/tenants", self.base))
            .bearer_auth(&self.admin)
            .json(&serde_json::json!({"slug": slug, "display_name": name, "region": "eu"}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
    }

    /// Submits an event of `kind` as admin and runs the engine until idle.
    async fn start(&self, kind: &str, key: &str) {
        let response = self
            .http
            .post(format!("{}/api/v1/events", self.base))
            .bearer_auth(&self.admin)
            .json(&serde_json::json!({"type": kind, "dedup_key": key, "payload": {}}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        for _ in 0..100 {
            if self.app.engine.tick().await.unwrap() == 0 {
                break;
            }
        }
    }

    /// Starts the gated workflow; returns its pending approval's id.
    async fn pending_approval(&self, key: &str) -> String {
        let response = self
            .http
            .post(format!("{}/api/v1/events", self.base))
            .bearer_auth(&self.admin)
            .json(&serde_json::json!({"type": "test.gated", "dedup_key": key, "payload": {}}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::ACCEPTED);
        for _ in 0..100 {
            if self.app.engine.tick().await.unwrap() == 0 {
                break;
            }
        }
        let approvals = self
            .app
            .list_approvals(
                &Actor::System("test"),
                gatehouse_server::app::GateFilter {
                    tenant: None,
                    state: Some(gatehouse_core::approval::ApprovalState::Pending),
                },
                None,
                100,
            )
            .await
            .unwrap();
        approvals
            .items
            .last()
            .expect("a pending approval")
            .id
            .to_string()
    }

    async fn audit_actions(&self) -> Vec<String> {
        let store = &self.app.store;
        let mut actions = Vec::new();
        for (_, record) in store.pending_audit(10_000).await.unwrap() {
            actions.push(record.action);
        }
        actions
    }
}

mod cases {
    use super::*;

    /// Every console route, from the table the router is built from: each
    /// answers (a listed route without a handler fails here), and every
    /// route that needs a session sends a stranger to the sign-in page.
    pub async fn every_console_route_answers_and_refuses_strangers(app: &Served) {
        use gatehouse_server::console::{Access, ROUTES};
        assert!(ROUTES.len() >= 20);
        for (method, path, access) in ROUTES {
            let concrete = path
                .replace("{approval}", "apr_01jd8x3k2q9f6v0c4m7r5t8w1y")
                .replace("{workflow}", "wf_01jd8x3k2q9f6v0c4m7r5t8w1y")
                .replace("{task}", "tsk_01jd8x3k2q9f6v0c4m7r5t8w1y")
                .replace("{tenant}", "acme")
                .replace("{person}", "E100");
            assert!(
                !concrete.contains('{'),
                "a parameter of {path} is not covered"
            );
            let url = format!("{}{concrete}", app.base);
            let response = match method {
                "GET" => client().get(&url).send().await.unwrap(),
                "POST" => client()
                    .post(&url)
                    .form(&[("verdict", "approve"), ("reason", "x"), ("csrf", "x")])
                    .send()
                    .await
                    .unwrap(),
                other => panic!("{other} {path}: a method this test does not know"),
            };
            let status = response.status();
            assert!(
                status != StatusCode::NOT_FOUND && status != StatusCode::METHOD_NOT_ALLOWED,
                "{method} {path} is listed but not served: {status}"
            );
            assert!(
                response.headers()["content-security-policy"]
                    .to_str()
                    .unwrap()
                    .contains("default-src 'none'"),
                "{method} {path}"
            );
            if access == Access::Session {
                assert_eq!(
                    status,
                    StatusCode::SEE_OTHER,
                    "{method} {path} as a stranger"
                );
                let location = response.headers()[LOCATION].to_str().unwrap();
                assert!(
                    location.starts_with("/console/sign-in"),
                    "{method} {path}: {location}"
                );
                if method == "GET" {
                    assert_eq!(location, format!("/console/sign-in?next={concrete}"));
                }
            }
        }
        // A forged session is no session.
        let (status, _) = app.page("not-a-session", "/console/approvals").await;
        assert_eq!(status, StatusCode::SEE_OTHER);
    }

    pub async fn sign_in_with_password_and_totp_sets_a_strict_cookie(app: &Served) {
        let secret = operator(app, "lea.lead", Role::Lead, true).await.unwrap();
        let response = app
            .post_sign_in("lea.lead", PASSWORD, &app.code(&secret))
            .await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER);
        assert_eq!(response.headers()[LOCATION], "/console/approvals");
        let (value, header) = set_cookie(&response, "gatehouse_session").unwrap();
        assert_eq!(value.len(), 43, "256 bits, base64url");
        for attribute in [
            "HttpOnly",
            "Secure",
            "SameSite=Strict",
            "Path=/",
            "Max-Age=28800",
        ] {
            assert!(header.contains(attribute), "{attribute} in {header}");
        }
        let (status, html) = app.page(&value, "/console/approvals").await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            html.contains("Signed in as <strong id=\"operator\">lea.lead</strong>"),
            "{html}"
        );
        assert!(html.contains("No pending approvals"), "{html}");
        let actions = app.audit_actions().await;
        assert!(
            actions.iter().any(|a| a == "operator.signed_in"),
            "{actions:?}"
        );
    }

    pub async fn wrong_answers_are_all_the_same_and_lock_the_account(app: &Served) {
        let secret = operator(app, "lea.lead", Role::Lead, true).await.unwrap();
        let good = app.code(&secret);
        let bad_code = if good == "000000" { "111111" } else { "000000" };
        let attempts = [
            ("lea.lead", "wrong password!!", good.as_str()),
            ("lea.lead", PASSWORD, bad_code),
            ("lea.lead", PASSWORD, ""),
            ("nobody.here", PASSWORD, good.as_str()),
            ("NOT A NAME", PASSWORD, good.as_str()),
        ];
        for (name, password, code) in attempts {
            let response = app.post_sign_in(name, password, code).await;
            assert_eq!(
                response.status(),
                StatusCode::UNAUTHORIZED,
                "{name}/{password}/{code}"
            );
            assert!(set_cookie(&response, "gatehouse_session").is_none());
            let html = response.text().await.unwrap();
            assert!(
                html.contains("the name, password or code is wrong"),
                "{html}"
            );
        }
        // lea.lead has three failures; two more are free, the sixth locks.
        for _ in 0..2 {
            let response = app
                .post_sign_in("lea.lead", "wrong password!!", &good)
                .await;
            assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        }
        let response = app
            .post_sign_in("lea.lead", "wrong password!!", &good)
            .await;
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        // Locked: even the right answer is refused until the lock ends.
        let response = app.post_sign_in("lea.lead", PASSWORD, &good).await;
        assert_eq!(response.status(), StatusCode::TOO_MANY_REQUESTS);
        assert!(response.text().await.unwrap().contains("try again after"));
        app.clock.advance(time::Duration::minutes(2));
        let response = app
            .post_sign_in("lea.lead", PASSWORD, &app.code(&secret))
            .await;
        assert_eq!(response.status(), StatusCode::SEE_OTHER, "the lock ended");
        let failed = app
            .audit_actions()
            .await
            .into_iter()
            .filter(|a| a == "operator.sign_in_failed")
            .count();
        assert_eq!(
            failed, 7,
            "five wrong, then one locking, then one while locked"
        );
    }

    pub async fn a_code_signs_in_once(app: &Served) {
        let secret = operator(app, "lea.lead", Role::Lead, true).await.unwrap();
        let code = app.code(&secret);
        let first = app.post_sign_in("lea.lead", PASSWORD, &code).await;
        assert_eq!(first.status(), StatusCode::SEE_OTHER);
        let replay = app.post_sign_in("lea.lead", PASSWORD, &code).await;
        assert_eq!(replay.status(), StatusCode::UNAUTHORIZED);
        app.clock.advance(time::Duration::seconds(30));
        let next = app
            .post_sign_in("lea.lead", PASSWORD, &app.code(&secret))
            .await;
        assert_eq!(next.status(), StatusCode::SEE_OTHER);
    }

    pub async fn forms_need_the_session_token_and_this_origin(app: &Served) {
        let secret = operator(app, "lea.lead", Role::Lead, true).await.unwrap();
        let approval = app.pending_approval("csrf").await;
        let signed = app.sign_in("lea.lead", &app.code(&secret)).await;
        let path = format!("/console/approvals/{approval}/decide");
        let (status, _) = app
            .post(
                &signed,
                &path,
                &[("verdict", "approve"), ("reason", "ok"), ("csrf", "forged")],
            )
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) = app
            .post(&signed, &path, &[("verdict", "approve"), ("reason", "ok")])
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        // The right token from another site's page.
        let response = client()
            .post(format!("{}{path}", app.base))
            .header(COOKIE, format!("gatehouse_session={}", signed.cookie))
            .header("origin", "https://evil.example")
            .form(&[
                ("verdict", "approve"),
                ("reason", "ok"),
                ("csrf", signed.csrf.as_str()),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        // Nothing was decided; the sign-in form refuses a missing token too.
        let (_, html) = app
            .page(&signed.cookie, &format!("/console/approvals/{approval}"))
            .await;
        assert!(html.contains("<dd id=\"state\">pending</dd>"), "{html}");
        let response = client()
            .post(format!("{}/console/sign-in", app.base))
            .form(&[
                ("name", "lea.lead"),
                ("password", PASSWORD),
                ("code", &app.code(&secret)),
            ])
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::FORBIDDEN);
        assert!(set_cookie(&response, "gatehouse_session").is_none());
    }

    pub async fn approving_needs_the_role_and_a_second_factor(app: &Served) {
        let secret = operator(app, "lea.lead", Role::Lead, true).await.unwrap();
        operator(app, "pat.lead", Role::Lead, false).await;
        let tech_secret = operator(app, "tom.tech", Role::Technician, true)
            .await
            .unwrap();
        let approval = app.pending_approval("decide").await;
        let path = format!("/console/approvals/{approval}/decide");
        let detail = format!("/console/approvals/{approval}");

        // A technician sees it but may not decide.
        let tech = app.sign_in("tom.tech", &app.code(&tech_secret)).await;
        let (status, html) = app.page(&tech.cookie, "/console/approvals").await;
        assert_eq!(status, StatusCode::OK);
        assert!(html.contains(&approval), "{html}");
        let form = [
            ("verdict", "approve"),
            ("reason", "looks fine"),
            ("csrf", tech.csrf.as_str()),
        ];
        let (status, html) = app.post(&tech, &path, &form).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(html.contains("this needs the admin or lead role"), "{html}");

        // A lead with a password only may look, not decide.
        let password_only = app.sign_in("pat.lead", "").await;
        let form = [
            ("verdict", "approve"),
            ("reason", "looks fine"),
            ("csrf", password_only.csrf.as_str()),
        ];
        let (status, html) = app.post(&password_only, &path, &form).await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(html.contains("second factor"), "{html}");

        // A lead with TOTP approves; the plan runs.
        let lead = app.sign_in("lea.lead", &app.code(&secret)).await;
        let (status, html) = app.page(&lead.cookie, &detail).await;
        assert_eq!(status, StatusCode::OK);
        assert!(html.contains("id=\"approve\""), "{html}");
        let form = [
            ("verdict", "approve"),
            ("reason", "plan checked"),
            ("csrf", lead.csrf.as_str()),
        ];
        let (status, html) = app.post(&lead, &path, &form).await;
        assert_eq!(status, StatusCode::OK, "{html}");
        assert!(html.contains("Approved"), "{html}");
        assert!(
            html.contains("<strong>lea.lead</strong> approved"),
            "{html}"
        );
        assert!(!html.contains("id=\"approve\""), "decided: no form");
        let (_, html) = app
            .page(&lead.cookie, "/console/approvals?state=approved")
            .await;
        assert!(html.contains(&approval), "{html}");
    }

    pub async fn signing_out_or_disabling_ends_the_session(app: &Served) {
        let secret = operator(app, "lea.lead", Role::Lead, true).await.unwrap();
        let signed = app.sign_in("lea.lead", &app.code(&secret)).await;
        let (status, _) = app
            .post(&signed, "/console/sign-out", &[("csrf", "wrong")])
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        let (status, _) = app
            .post(
                &signed,
                "/console/sign-out",
                &[("csrf", signed.csrf.as_str())],
            )
            .await;
        assert_eq!(status, StatusCode::SEE_OTHER);
        let (status, _) = app.page(&signed.cookie, "/console/approvals").await;
        assert_eq!(status, StatusCode::SEE_OTHER, "signed out");

        app.clock.advance(time::Duration::seconds(30));
        let again = app.sign_in("lea.lead", &app.code(&secret)).await;
        let lead = app
            .app
            .store
            .find_operator_by_name(&OperatorName::parse("lea.lead").unwrap())
            .await
            .unwrap();
        app.app
            .set_operator_disabled(&Actor::System("test"), lead.id, true)
            .await
            .unwrap();
        let (status, _) = app.page(&again.cookie, "/console/approvals").await;
        assert_eq!(status, StatusCode::SEE_OTHER, "disabled");
        let actions = app.audit_actions().await;
        assert!(
            actions.iter().any(|a| a == "operator.signed_out"),
            "{actions:?}"
        );
    }

    pub async fn totp_secrets_survive_a_kek_rotation_that_retires(app: &Served) {
        let secret = operator(app, "lea.lead", Role::Lead, true).await.unwrap();
        let report = app
            .app
            .rotate_keys(&Actor::System("test"), true, &mut |_| {})
            .await
            .unwrap();
        assert_eq!(report.totp_secrets_rewrapped, 1);
        assert_eq!(report.retired.len(), 1, "the old KEK is gone: {report:?}");
        let secrets = app.app.store.totp_secrets().await.unwrap();
        assert_eq!(secrets.len(), 1);
        assert_eq!(secrets[0].1.kek_id, report.active_kek);
        // The same secret, so the same codes, still sign in.
        app.sign_in("lea.lead", &app.code(&secret)).await;
        let actions = app.audit_actions().await;
        assert!(
            actions.iter().any(|a| a == "operator.totp.rewrapped"),
            "{actions:?}"
        );
    }

    pub async fn tasks_show_decision_support_and_record_the_outcome(app: &Served) {
        let tech_secret = operator(app, "tom.tech", Role::Technician, true)
            .await
            .unwrap();
        let audit_secret = operator(app, "ada.audit", Role::Auditor, true)
            .await
            .unwrap();
        app.start("test.human", "handoff-1").await;
        let tasks = app
            .app
            .list_tasks(
                &Actor::System("test"),
                gatehouse_server::app::GateFilter {
                    tenant: None,
                    state: None,
                },
                None,
                10,
            )
            .await
            .unwrap();
        let task = &tasks.items[0];
        let (id, instance) = (task.id.to_string(), task.instance_id.to_string());

        let tech = app.sign_in("tom.tech", &app.code(&tech_secret)).await;
        let (status, html) = app.page(&tech.cookie, "/console/tasks").await;
        assert_eq!(status, StatusCode::OK);
        assert!(html.contains(&format!("/console/tasks/{id}")), "{html}");
        let (status, html) = app
            .page(&tech.cookie, &format!("/console/tasks/{id}"))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            html.contains("id=\"support\""),
            "decision support shown: {html}"
        );
        let path = format!("/console/tasks/{id}/complete");

        // An auditor reads but does not act.
        let auditor = app.sign_in("ada.audit", &app.code(&audit_secret)).await;
        let form = [
            ("outcome", "{\"signed_off\": true}"),
            ("evidence", "x"),
            ("csrf", auditor.csrf.as_str()),
        ];
        let (status, html) = app.post(&auditor, &path, &form).await;
        assert_eq!(status, StatusCode::FORBIDDEN, "{html}");
        assert!(html.contains("admin, lead or technician"), "{html}");

        // Not JSON: said so, nothing recorded.
        let form = [
            ("outcome", "signed off"),
            ("evidence", ""),
            ("csrf", tech.csrf.as_str()),
        ];
        let (status, html) = app.post(&tech, &path, &form).await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(
            html.contains("not JSON") && html.contains("<dd id=\"state\">open</dd>"),
            "{html}"
        );

        let form = [
            ("outcome", "{\"signed_off\": true}"),
            ("evidence", "meeting notes in PSA ticket 42"),
            ("csrf", tech.csrf.as_str()),
        ];
        let (status, html) = app.post(&tech, &path, &form).await;
        assert_eq!(status, StatusCode::OK, "{html}");
        assert!(
            html.contains("Recorded") && html.contains("<dd id=\"state\">done</dd>"),
            "{html}"
        );

        // The workflow's timeline shows it.
        let (status, html) = app
            .page(&tech.cookie, &format!("/console/workflows/{instance}"))
            .await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            html.contains("id=\"timeline\"") && html.contains("handoff"),
            "{html}"
        );
        let (status, _) = app
            .page(
                &tech.cookie,
                "/console/workflows/wf_01jd8x3k2q9f6v0c4m7r5t8w1y",
            )
            .await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    pub async fn the_audit_browser_lists_verifies_and_exports(app: &Served) {
        let audit_secret = operator(app, "ada.audit", Role::Auditor, true)
            .await
            .unwrap();
        let tech_secret = operator(app, "tom.tech", Role::Technician, true)
            .await
            .unwrap();
        app.create_tenant("acme", "Acme").await;
        let auditor = app.sign_in("ada.audit", &app.code(&audit_secret)).await;
        let sequencer =
            gatehouse_server::audit::Sequencer::new(app.app.store.clone(), app.app.keyring.clone());
        while sequencer.run_once(1000).await.unwrap() > 0 {}

        let (status, html) = app.page(&auditor.cookie, "/console/audit").await;
        assert_eq!(status, StatusCode::OK, "{html}");
        assert!(
            html.contains("operator.signed_in") && html.contains("tenant.created"),
            "{html}"
        );
        let (_, html) = app
            .page(&auditor.cookie, "/console/audit?action=tenant.*")
            .await;
        assert!(
            html.contains("tenant.created") && !html.contains("operator.signed_in"),
            "{html}"
        );
        let (status, html) = app
            .page(&auditor.cookie, "/console/audit?since=yesterday")
            .await;
        assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
        assert!(html.contains("RFC 3339"), "{html}");

        let (status, html) = app
            .post(
                &auditor,
                "/console/audit/verify",
                &[("log", "system"), ("csrf", auditor.csrf.as_str())],
            )
            .await;
        assert_eq!(status, StatusCode::OK, "{html}");
        assert!(html.contains("verified:"), "{html}");

        let response = client()
            .get(format!("{}/console/audit/oscal?tenant=acme", app.base))
            .header(COOKIE, format!("gatehouse_session={}", auditor.cookie))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::OK);
        assert!(
            response.headers()["content-disposition"]
                .to_str()
                .unwrap()
                .contains("oscal-acme.json")
        );
        let document: serde_json::Value = response.json().await.unwrap();
        assert!(
            document["assessment-results"]["uuid"].is_string(),
            "{document}"
        );

        // A technician may not read the audit log.
        let tech = app.sign_in("tom.tech", &app.code(&tech_secret)).await;
        let (status, html) = app.page(&tech.cookie, "/console/audit").await;
        assert_eq!(status, StatusCode::FORBIDDEN);
        assert!(html.contains("admin, lead or auditor"), "{html}");
    }

    pub async fn tenants_and_analytics_render(app: &Served) {
        let secret = operator(app, "ada.audit", Role::Auditor, true)
            .await
            .unwrap();
        app.create_tenant("acme", "Acme <Ltd>").await;
        app.pending_approval("analytics").await;
        let auditor = app.sign_in("ada.audit", &app.code(&secret)).await;

        let (status, html) = app.page(&auditor.cookie, "/console/tenants").await;
        assert_eq!(status, StatusCode::OK);
        assert!(
            html.contains("Acme &lt;Ltd&gt;") && html.contains("<code>acme</code>"),
            "{html}"
        );

        let (status, html) = app.page(&auditor.cookie, "/console/analytics").await;
        assert_eq!(status, StatusCode::OK, "{html}");
        assert!(
            html.contains("<svg") && html.contains("<title>Workflow runs by state</title>"),
            "{html}"
        );
        assert!(
            html.contains("<td>waiting</td><td>1</td>"),
            "one run waits at its gate: {html}"
        );
        assert!(html.contains("<dt>Approvals waiting</dt><dd>1"), "{html}");
        assert!(html.contains("0 clients live"), "{html}");
        // Over time: today's one run, none failed, none completed yet; the
        // revocation chart (auditors read people) with nothing to show.
        let today = app
            .clock
            .now()
            .to_offset(time::UtcOffset::UTC)
            .date()
            .to_string();
        let day_chart = |title: &str| {
            let start = html
                .find(&format!("<title>{title}</title>"))
                .unwrap_or_else(|| panic!("no chart {title}: {html}"));
            html[start..].split("</svg>").next().unwrap().to_owned()
        };
        let started = day_chart("Workflow runs started per day");
        assert!(
            started.contains(&today) && started.contains(">1</text>"),
            "{started}"
        );
        let failing = day_chart("Share of each day&#39;s runs that failed");
        assert!(failing.contains("0 % of 1"), "{failing}");
        let provisioning = day_chart("Mean time to complete, by workflow");
        assert!(provisioning.contains("No data yet"), "{provisioning}");
        let revocations = day_chart("Revocation time, by client");
        assert!(revocations.contains("No data yet"), "{revocations}");
    }

    pub async fn people_pages_follow_the_roles(app: &Served) {
        let secret = operator(app, "tom.tech", Role::Technician, true)
            .await
            .unwrap();
        app.create_tenant("acme", "Acme").await;
        let tech = app.sign_in("tom.tech", &app.code(&secret)).await;
        let (status, html) = app.page(&tech.cookie, "/console/people").await;
        assert_eq!(status, StatusCode::OK);
        assert!(html.contains(">Acme</a>"), "{html}");
        let (status, html) = app.page(&tech.cookie, "/console/people/acme").await;
        assert_eq!(status, StatusCode::OK, "{html}");
        assert!(
            html.contains("No people yet") && html.contains("No elevations requested"),
            "{html}"
        );
        let (status, _) = app.page(&tech.cookie, "/console/people/nobody").await;
        assert_eq!(status, StatusCode::NOT_FOUND);

        // A hire under a policy: the person's page shows what they should
        // hold, and why.
        let policy = r#"
[[role]]
id = "staff"
when = 'kind eq "client_user"'
grants = [{ system = "crm", group = "All staff" }]

[[role]]
id = "sales"
when = 'department eq "Sales"'
grants = [{ system = "crm", group = "Sales" }]

[[role]]
id = "finance-approver"
sensitive = true
grants = [{ system = "erp", role = "approver" }]
"#;
        for (path, body) in [
            (
                "/api/v1/tenants/acme/access-policy",
                serde_json::json!({"text": policy, "version": 0}),
            ),
            (
                "/api/v1/tenants/acme/people/events",
                serde_json::json!({"id": "hr-1", "person": "E100", "kind": "hire",
                       "attributes": {"given_name": "Ada", "family_name": "Lovelace", "department": "Sales"},
                       "roles": ["finance-approver"]}),
            ),
        ] {
            let method = if path.ends_with("policy") {
                reqwest::Method::PUT
            } else {
                reqwest::Method::POST
            };
            let response = app
                .http
                .request(method, format!("{}{path}", app.base))
                .bearer_auth(&app.admin)
                .json(&body)
                .send()
                .await
                .unwrap();
            assert!(
                response.status().is_success(),
                "{path}: {}",
                response.text().await.unwrap()
            );
        }
        let (_, list) = app.page(&tech.cookie, "/console/people/acme").await;
        assert!(list.contains("<code>E100</code></a>"), "{list}");
        let (status, html) = app.page(&tech.cookie, "/console/people/acme/E100").await;
        assert_eq!(status, StatusCode::OK, "{html}");
        for row in [
            "<td>crm</td><td>group &quot;All staff&quot;</td><td>role template staff</td>",
            "<td>crm</td><td>group &quot;Sales&quot;</td><td>role template sales</td>",
            "<td>erp</td><td>role &quot;approver&quot;</td><td>role template finance-approver (sensitive)</td>",
        ] {
            assert!(html.contains(row), "{row} in {html}");
        }
        assert!(html.contains("<dt>department</dt><dd>Sales</dd>"), "{html}");
        let (status, _) = app.page(&tech.cookie, "/console/people/acme/E999").await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    pub async fn sessions_expire(app: &Served) {
        let secret = operator(app, "lea.lead", Role::Lead, true).await.unwrap();
        let signed = app.sign_in("lea.lead", &app.code(&secret)).await;
        app.clock.advance(time::Duration::hours(8));
        let (status, _) = app.page(&signed.cookie, "/console/approvals").await;
        assert_eq!(status, StatusCode::SEE_OTHER);
    }
}

macro_rules! console_tests {
    ($($case:ident),* $(,)?) => {
        mod sqlite {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let db = super::TestDatabase::sqlite().await.unwrap();
                    let mut app = super::spawn(&db).await;
                    super::cases::$case(&app).await;
                    app.stop();
                    db.cleanup().await;
                }
            )*
        }

        mod postgres {
            $(
                #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
                async fn $case() {
                    let Some(db) = super::TestDatabase::postgres(concat!("console_", stringify!($case))).await.unwrap() else {
                        eprintln!("GATEHOUSE_TEST_DATABASE_URL is not set; the PostgreSQL run is done by .ci/run");
                        return;
                    };
                    let mut app = super::spawn(&db).await;
                    super::cases::$case(&app).await;
                    app.stop();
                    db.cleanup().await;
                }
            )*
        }
    };
}

console_tests!(
    every_console_route_answers_and_refuses_strangers,
    sign_in_with_password_and_totp_sets_a_strict_cookie,
    wrong_answers_are_all_the_same_and_lock_the_account,
    a_code_signs_in_once,
    forms_need_the_session_token_and_this_origin,
    approving_needs_the_role_and_a_second_factor,
    signing_out_or_disabling_ends_the_session,
    sessions_expire,
    totp_secrets_survive_a_kek_rotation_that_retires,
    tasks_show_decision_support_and_record_the_outcome,
    the_audit_browser_lists_verifies_and_exports,
    tenants_and_analytics_render,
    people_pages_follow_the_roles,
);
