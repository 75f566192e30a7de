//! The Graph client against the Graph emulator, over real HTTP: tokens per
//! tenant, tenant isolation, the identity lifecycle (users, licences, group
//! members, sessions) and GDAP onboarding, and the failure modes the engine
//! must be able to tell apart.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions fail loudly by design"
)]

use std::sync::Arc;
use std::time::Duration;

use gatehouse_connectors::ConnectorError;
use gatehouse_connectors::graph::{GLOBAL_ADMINISTRATOR, GraphClient, GraphConfig};
use gatehouse_connectors::http::Secret;
use gatehouse_connectors::ports::{GdapRequest, M365, NewDirectoryUser};
use gatehouse_core::clock::SystemClock;
use gatehouse_sandbox::GraphEmulator;
use gatehouse_sandbox::graph::GroupKind;
use serde_json::Value;

const PARTNER: &str = "0a0a0a0a-0000-4000-8000-000000000001";
const CONTOSO: &str = "0c0c0c0c-0000-4000-8000-000000000002";
const FABRIKAM: &str = "0f0f0f0f-0000-4000-8000-000000000003";
const APP: &str = "5e1f0000-0000-4000-8000-00000000a990";
const SECRET: &str = "app-secret-do-not-leak";
const E3: &str = "6fd2c87f-b296-42f0-b197-1e91e994b900";
const USER_ADMIN: &str = "fe930be7-5e62-47db-91af-98c3a49a38b1";

async fn emulator() -> GraphEmulator {
    let emu = GraphEmulator::start().await.unwrap();
    emu.add_partner_tenant(PARTNER, "Gatehouse MSP");
    emu.add_tenant(CONTOSO, "Contoso");
    emu.add_tenant(FABRIKAM, "Fabrikam");
    for tenant in [PARTNER, CONTOSO, FABRIKAM] {
        assert!(emu.consent_app(tenant, APP, SECRET));
    }
    emu
}

fn client(emu: &GraphEmulator, page_size: Option<u32>) -> GraphClient {
    let mut config = GraphConfig::new(PARTNER, APP, Secret::new(SECRET));
    config.login_base = emu.url();
    config.graph_base = emu.url();
    config.timeout = Duration::from_secs(5);
    config.page_size = page_size;
    GraphClient::new(config, Arc::new(SystemClock)).unwrap()
}

fn joiner(upn: &str) -> NewDirectoryUser {
    NewDirectoryUser {
        user_principal_name: upn.to_owned(),
        display_name: "Ada Lovelace".to_owned(),
        mail_nickname: upn.split('@').next().unwrap().to_owned(),
        password: Secret::new("Initial-Passw0rd!"),
        usage_location: Some("GB".to_owned()),
    }
}

async fn raw_token(emu: &GraphEmulator, tenant: &str) -> String {
    let answer: Value = reqwest::Client::new()
        .post(format!("{}/{tenant}/oauth2/v2.0/token", emu.url()))
        .body(format!(
            "grant_type=client_credentials&client_id={APP}&client_secret={SECRET}&scope=https%3A%2F%2Fgraph.microsoft.com%2F.default"
        ))
        .header("content-type", "application/x-www-form-urlencoded")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    answer["access_token"].as_str().unwrap().to_owned()
}

#[tokio::test]
async fn a_token_is_fetched_once_per_tenant_and_again_after_a_401() {
    let emu = emulator().await;
    let graph = client(&emu, None);
    for _ in 0..3 {
        graph
            .find_user(CONTOSO, "nobody@contoso.onmicrosoft.com")
            .await
            .unwrap();
    }
    graph
        .find_user(FABRIKAM, "nobody@fabrikam.onmicrosoft.com")
        .await
        .unwrap();
    graph.gdap_relationships(CONTOSO).await.unwrap();
    let h = emu.harness();
    assert_eq!(h.counted(&format!("tokens.issued:{CONTOSO}")), 1);
    assert_eq!(h.counted(&format!("tokens.issued:{FABRIKAM}")), 1);
    assert_eq!(h.counted(&format!("tokens.issued:{PARTNER}")), 1);

    // Tokens revoked behind the client's back: the next call gets a 401,
    // fetches one new token and succeeds.
    emu.expire_tokens();
    graph
        .find_user(CONTOSO, "nobody@contoso.onmicrosoft.com")
        .await
        .unwrap();
    assert_eq!(h.counted(&format!("tokens.issued:{CONTOSO}")), 2);
    assert_eq!(h.counted("tokens.issued"), 4);
    emu.shutdown().await;
}

#[tokio::test]
async fn one_tenants_token_never_reads_another_tenants_directory() {
    let emu = emulator().await;
    let graph = client(&emu, None);
    let ada = graph
        .create_user(CONTOSO, &joiner("ada@contoso.onmicrosoft.com"), "k1")
        .await
        .unwrap();

    // Through the client: asking Fabrikam finds nothing.
    assert_eq!(
        graph
            .find_user(FABRIKAM, "ada@contoso.onmicrosoft.com")
            .await
            .unwrap(),
        None
    );

    // On the wire, with Fabrikam's token: the user is 404 by id and by UPN,
    // and absent from the list.
    let fabrikam = raw_token(&emu, FABRIKAM).await;
    let http = reqwest::Client::new();
    for path in [
        format!("/v1.0/users/{}", ada.id),
        "/v1.0/users/ada@contoso.onmicrosoft.com".to_owned(),
        format!("/v1.0/users/{}/licenseDetails", ada.id),
    ] {
        let r = http
            .get(format!("{}{path}", emu.url()))
            .bearer_auth(&fabrikam)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "Request_ResourceNotFound");
        assert!(body["error"]["innerError"]["request-id"].is_string());
    }
    let list: Value = http
        .get(format!("{}/v1.0/users", emu.url()))
        .bearer_auth(&fabrikam)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["value"].as_array().unwrap().len(), 0, "{list}");
    // Deleting it with Fabrikam's token does nothing to Contoso.
    let r = http
        .delete(format!("{}/v1.0/users/{}", emu.url(), ada.id))
        .bearer_auth(&fabrikam)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert!(emu.user(CONTOSO, &ada.id).is_some());

    // No token at all: 401 in Graph's shape.
    let r = http
        .get(format!("{}/v1.0/users", emu.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "InvalidAuthenticationToken");
    emu.shutdown().await;
}

#[tokio::test]
async fn a_tenant_that_has_not_consented_is_an_auth_error_without_the_secret() {
    let emu = emulator().await;
    let stranger = "0d0d0d0d-0000-4000-8000-000000000004";
    emu.add_tenant(stranger, "Stranger");
    let graph = client(&emu, None);
    let err = graph
        .find_user(stranger, "x@stranger.onmicrosoft.com")
        .await
        .unwrap_err();
    assert!(matches!(err, ConnectorError::Auth { .. }), "{err:?}");
    assert!(err.to_string().contains("AADSTS700016"), "{err}");
    assert!(!err.to_string().contains(SECRET), "{err}");

    // A wrong secret is refused as well, and never echoed.
    let mut config = GraphConfig::new(PARTNER, APP, Secret::new("wrong-secret-value"));
    config.login_base = emu.url();
    config.graph_base = emu.url();
    let wrong = GraphClient::new(config, Arc::new(SystemClock)).unwrap();
    let err = wrong.gdap_relationships(CONTOSO).await.unwrap_err();
    assert!(matches!(err, ConnectorError::Auth { .. }), "{err:?}");
    assert!(!format!("{err} {err:?}").contains("wrong-secret-value"));

    // A 403 (here: GDAP asked of a tenant that is no partner) is not
    // "fixed" by fetching another token.
    let mut config = GraphConfig::new(CONTOSO, APP, Secret::new(SECRET));
    config.login_base = emu.url();
    config.graph_base = emu.url();
    let not_partner = GraphClient::new(config, Arc::new(SystemClock)).unwrap();
    let err = not_partner.gdap_relationships(FABRIKAM).await.unwrap_err();
    assert!(matches!(err, ConnectorError::Auth { .. }), "{err:?}");
    assert!(err.to_string().contains("not a Microsoft partner"), "{err}");
    assert_eq!(
        emu.harness().counted(&format!("tokens.issued:{CONTOSO}")),
        1
    );

    // A tenant id that is not one never reaches the wire.
    let err = graph.find_user("../users", "x@y").await.unwrap_err();
    assert!(matches!(err, ConnectorError::Config { .. }), "{err:?}");
    emu.shutdown().await;
}

#[tokio::test]
async fn a_user_is_created_once_disabled_revoked_and_deleted() {
    let emu = emulator().await;
    let graph = client(&emu, None);
    let upn = "ada@contoso.onmicrosoft.com";
    let ada = graph
        .create_user(CONTOSO, &joiner(upn), "step-1")
        .await
        .unwrap();
    assert!(ada.account_enabled);
    assert_eq!(ada.user_principal_name, upn);

    // A retry (another key even) finds the user instead of creating again.
    let again = graph
        .create_user(CONTOSO, &joiner(upn), "step-1-retry")
        .await
        .unwrap();
    assert_eq!(again.id, ada.id);
    let h = emu.harness();
    assert_eq!(h.counted("users.created"), 1);
    // The client forwarded the step's key: the same key on the wire replays
    // the first answer instead of creating the (different) user sent.
    let replay: Value = reqwest::Client::new()
        .post(format!("{}/v1.0/users", emu.url()))
        .bearer_auth(raw_token(&emu, CONTOSO).await)
        .header("Idempotency-Key", "step-1")
        .json(&serde_json::json!({
            "accountEnabled": true, "displayName": "Other", "mailNickname": "other",
            "userPrincipalName": "other@contoso.onmicrosoft.com",
            "passwordProfile": {"password": "Other-Passw0rd!"},
        }))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(replay["id"], ada.id.as_str());
    assert_eq!(h.counted("idempotent_replays"), 1);
    assert_eq!(h.counted("users.created"), 1);
    let found = graph
        .find_user(CONTOSO, "ADA@contoso.onmicrosoft.com")
        .await
        .unwrap();
    assert_eq!(found.as_ref().map(|u| u.id.as_str()), Some(ada.id.as_str()));
    assert!(found.unwrap().account_enabled);

    // Leaver: disable, revoke sessions, delete.
    let before = emu.user(CONTOSO, &ada.id).unwrap()["signInSessionsValidFromDateTime"].clone();
    graph
        .set_account_enabled(CONTOSO, &ada.id, false)
        .await
        .unwrap();
    assert_eq!(emu.user(CONTOSO, &ada.id).unwrap()["accountEnabled"], false);
    assert!(
        !graph
            .find_user(CONTOSO, upn)
            .await
            .unwrap()
            .unwrap()
            .account_enabled
    );
    graph
        .revoke_sign_in_sessions(CONTOSO, &ada.id)
        .await
        .unwrap();
    assert_eq!(h.counted("users.sessions_revoked"), 1);
    assert!(
        emu.user(CONTOSO, &ada.id).unwrap()["signInSessionsValidFromDateTime"].as_str()
            >= before.as_str()
    );
    graph.delete_user(CONTOSO, &ada.id).await.unwrap();
    assert_eq!(graph.find_user(CONTOSO, upn).await.unwrap(), None);

    // What is gone stays done: deleting, disabling and revoking succeed.
    graph.delete_user(CONTOSO, &ada.id).await.unwrap();
    graph
        .set_account_enabled(CONTOSO, &ada.id, false)
        .await
        .unwrap();
    graph
        .revoke_sign_in_sessions(CONTOSO, &ada.id)
        .await
        .unwrap();
    assert_eq!(h.counted("users.deleted"), 1);
    // …but enabling someone who is not there is an error.
    let err = graph
        .set_account_enabled(CONTOSO, &ada.id, true)
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(404), "{err:?}");
    emu.shutdown().await;
}

#[tokio::test]
async fn graphs_refusals_of_a_new_user_are_clear_and_never_show_the_password() {
    let emu = emulator().await;
    let graph = client(&emu, None);
    let mut weak = joiner("bob@contoso.onmicrosoft.com");
    weak.password = Secret::new("weakpw");
    let err = graph.create_user(CONTOSO, &weak, "k").await.unwrap_err();
    assert_eq!(err.status(), Some(400), "{err:?}");
    assert!(err.to_string().contains("password complexity"), "{err}");
    assert!(!format!("{err} {err:?}").contains("weakpw"));

    let foreign = joiner("bob@not-their-domain.example");
    let err = graph
        .create_user(CONTOSO, &foreign, "k2")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("verified domain"), "{err}");
    assert!(!err.to_string().contains("Initial-Passw0rd!"), "{err}");
    assert_eq!(emu.harness().counted("users.created"), 0);
    emu.shutdown().await;
}

#[tokio::test]
async fn licences_are_added_and_removed_idempotently() {
    let emu = emulator().await;
    emu.add_sku(CONTOSO, E3, "ENTERPRISEPACK", 5);
    let graph = client(&emu, None);
    let ada = graph
        .create_user(CONTOSO, &joiner("ada@contoso.onmicrosoft.com"), "k")
        .await
        .unwrap();
    let e3 = vec![E3.to_owned()];
    graph
        .assign_licenses(CONTOSO, &ada.id, &e3, &[])
        .await
        .unwrap();
    graph
        .assign_licenses(CONTOSO, &ada.id, &e3, &[])
        .await
        .unwrap();
    assert_eq!(graph.licenses(CONTOSO, &ada.id).await.unwrap(), e3);
    let h = emu.harness();
    assert_eq!(h.counted("licenses.added"), 1);

    graph
        .assign_licenses(CONTOSO, &ada.id, &[], &e3)
        .await
        .unwrap();
    graph
        .assign_licenses(CONTOSO, &ada.id, &[], &e3)
        .await
        .unwrap();
    assert!(graph.licenses(CONTOSO, &ada.id).await.unwrap().is_empty());
    assert_eq!(h.counted("licenses.removed"), 1);

    // Licensing needs a usage location, as in Graph.
    let mut nowhere = joiner("bob@contoso.onmicrosoft.com");
    nowhere.usage_location = None;
    let bob = graph.create_user(CONTOSO, &nowhere, "k2").await.unwrap();
    let err = graph
        .assign_licenses(CONTOSO, &bob.id, &e3, &[])
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400), "{err:?}");
    assert!(err.to_string().contains("usage location"), "{err}");
    // An unknown SKU is refused too.
    let err = graph
        .assign_licenses(CONTOSO, &ada.id, &["not-a-sku".to_owned()], &[])
        .await
        .unwrap_err();
    assert!(err.to_string().contains("valid company License"), "{err}");
    emu.shutdown().await;
}

#[tokio::test]
async fn group_members_are_added_and_removed_idempotently_and_read_across_pages() {
    let emu = emulator().await;
    let group = emu
        .add_group(CONTOSO, "Finance", GroupKind::Security)
        .unwrap();
    let graph = client(&emu, Some(2));
    let mut ids = Vec::new();
    for i in 0..5 {
        let u = graph
            .create_user(
                CONTOSO,
                &joiner(&format!("user{i}@contoso.onmicrosoft.com")),
                &format!("k{i}"),
            )
            .await
            .unwrap();
        graph
            .add_group_member(CONTOSO, &group, &u.id)
            .await
            .unwrap();
        ids.push(u.id);
    }
    // Twice is fine.
    graph
        .add_group_member(CONTOSO, &group, &ids[0])
        .await
        .unwrap();
    let h = emu.harness();
    assert_eq!(h.counted("groups.members_added"), 5);

    // Five members at two a page: three pages, all read.
    let mut members = graph.group_members(CONTOSO, &group).await.unwrap();
    members.sort();
    ids.sort();
    assert_eq!(members, ids);
    let token = raw_token(&emu, CONTOSO).await;
    let first: Value = reqwest::Client::new()
        .get(format!("{}/v1.0/groups/{group}/members?$top=2", emu.url()))
        .bearer_auth(&token)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(first["value"].as_array().unwrap().len(), 2);
    assert!(
        first["@odata.nextLink"]
            .as_str()
            .unwrap()
            .starts_with(&emu.url())
    );

    // Remove, and removing again is fine.
    graph
        .remove_group_member(CONTOSO, &group, &ids[1])
        .await
        .unwrap();
    graph
        .remove_group_member(CONTOSO, &group, &ids[1])
        .await
        .unwrap();
    assert_eq!(h.counted("groups.members_removed"), 1);
    assert_eq!(emu.group_members(CONTOSO, &group).len(), 4);
    emu.shutdown().await;
}

#[tokio::test]
async fn a_mail_enabled_group_refuses_members_with_a_clear_rejection() {
    let emu = emulator().await;
    let graph = client(&emu, None);
    let ada = graph
        .create_user(CONTOSO, &joiner("ada@contoso.onmicrosoft.com"), "k")
        .await
        .unwrap();
    for kind in [GroupKind::MailEnabledSecurity, GroupKind::Distribution] {
        let group = emu.add_group(CONTOSO, "All staff", kind).unwrap();
        let err = graph
            .add_group_member(CONTOSO, &group, &ada.id)
            .await
            .unwrap_err();
        match &err {
            ConnectorError::Rejected {
                status, message, ..
            } => {
                assert_eq!(*status, Some(400));
                assert!(message.contains("mail-enabled"), "{message}");
                assert!(message.contains("Exchange"), "{message}");
            }
            other => panic!("expected a rejection, got {other:?}"),
        }
        let err = graph
            .remove_group_member(CONTOSO, &group, &ada.id)
            .await
            .unwrap_err();
        assert!(err.to_string().contains("Exchange"), "{err}");
        assert!(emu.group_members(CONTOSO, &group).is_empty());
    }
    emu.shutdown().await;
}

fn gdap_request() -> GdapRequest {
    GdapRequest {
        display_name: "Gatehouse MSP - Contoso".to_owned(),
        customer_tenant_id: CONTOSO.to_owned(),
        duration: "P730D".to_owned(),
        roles: vec![USER_ADMIN.to_owned()],
    }
}

#[tokio::test]
async fn gdap_is_requested_approved_and_terminated() {
    let emu = emulator().await;
    let graph = client(&emu, None);
    let rel = graph.request_gdap(&gdap_request(), "gdap-1").await.unwrap();
    assert_eq!(rel.status, "approvalPending");
    assert_eq!(rel.customer_tenant_id, CONTOSO);
    assert_eq!(rel.roles, [USER_ADMIN]);
    assert_eq!(rel.duration, "P730D");

    // A retried step finds the relationship rather than making a second.
    let again = graph
        .request_gdap(&gdap_request(), "gdap-1-retry")
        .await
        .unwrap();
    assert_eq!(again.id, rel.id);
    let h = emu.harness();
    assert_eq!(h.counted("gdap.created"), 1);
    assert_eq!(h.counted("gdap.lockForApproval"), 1);
    assert_eq!(graph.gdap_relationships(CONTOSO).await.unwrap(), [again]);
    assert!(graph.gdap_relationships(FABRIKAM).await.unwrap().is_empty());

    // Access for our technicians waits for the customer's approval.
    let agents = emu
        .add_group(PARTNER, "Helpdesk agents", GroupKind::Security)
        .unwrap();
    let roles = [USER_ADMIN.to_owned()];
    let err = graph
        .assign_gdap_access(&rel.id, &agents, &roles, "access-1")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("approvalPending"), "{err}");

    // The customer's admin accepts.
    assert!(emu.approve_gdap(&rel.id));
    let active = graph.gdap_relationship(&rel.id).await.unwrap().unwrap();
    assert_eq!(active.status, "active");

    // Now the agents' group gets its roles, once however often asked.
    let access = graph
        .assign_gdap_access(&rel.id, &agents, &roles, "access-1")
        .await
        .unwrap();
    let again = graph
        .assign_gdap_access(&rel.id, &agents, &roles, "access-1-retry")
        .await
        .unwrap();
    assert_eq!(access, again);
    assert_eq!(access.security_group_id, agents);
    assert_eq!(access.roles, roles);
    assert_eq!(graph.gdap_access(&rel.id).await.unwrap(), [access]);
    assert_eq!(h.counted("gdap.access_assigned"), 1);
    // A role the relationship does not grant is refused.
    let admins = emu
        .add_group(PARTNER, "Escalation", GroupKind::Security)
        .unwrap();
    let err = graph
        .assign_gdap_access(
            &rel.id,
            &admins,
            &[GLOBAL_ADMINISTRATOR.to_owned()],
            "access-2",
        )
        .await
        .unwrap_err();
    assert_eq!(err.status(), Some(400), "{err:?}");

    graph.terminate_gdap(&rel.id, "end-1").await.unwrap();
    assert_eq!(
        emu.gdap_status(&rel.id).as_deref(),
        Some("terminationRequested")
    );
    graph.terminate_gdap(&rel.id, "end-1-retry").await.unwrap();
    assert_eq!(emu.finish_terminations(), 1);
    graph.terminate_gdap(&rel.id, "end-1-again").await.unwrap();
    assert_eq!(
        graph
            .gdap_relationship(&rel.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        "terminated"
    );
    assert_eq!(h.counted("gdap.terminate"), 1);
    // A relationship that does not exist is already ended.
    graph
        .terminate_gdap("no-such-relationship", "end-2")
        .await
        .unwrap();

    // The ended name cannot be reused for a new request.
    let err = graph
        .request_gdap(&gdap_request(), "gdap-2")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("terminated"), "{err}");
    emu.shutdown().await;
}

#[tokio::test]
async fn only_the_customer_approves_and_a_pending_request_cannot_be_terminated() {
    let emu = emulator().await;
    let graph = client(&emu, None);
    let rel = graph.request_gdap(&gdap_request(), "g").await.unwrap();

    // The partner cannot approve its own request.
    let partner = raw_token(&emu, PARTNER).await;
    let url = format!(
        "{}/v1.0/tenantRelationships/delegatedAdminRelationships/{}/requests",
        emu.url(),
        rel.id
    );
    let http = reqwest::Client::new();
    let r = http
        .post(&url)
        .bearer_auth(&partner)
        .json(&serde_json::json!({"action": "approve"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    // A customer token cannot list the partner's relationships.
    let customer = raw_token(&emu, CONTOSO).await;
    let r = http
        .get(format!(
            "{}/v1.0/tenantRelationships/delegatedAdminRelationships",
            emu.url()
        ))
        .bearer_auth(&customer)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);

    let err = graph.terminate_gdap(&rel.id, "t").await.unwrap_err();
    assert!(matches!(err, ConnectorError::Rejected { .. }), "{err:?}");
    assert!(err.to_string().contains("approvalPending"), "{err}");

    // The customer approves with its own token.
    let r = http
        .post(&url)
        .bearer_auth(&customer)
        .json(&serde_json::json!({"action": "approve"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    assert_eq!(emu.gdap_status(&rel.id).as_deref(), Some("active"));
    emu.shutdown().await;
}

#[tokio::test]
async fn onboarding_sees_the_previous_providers_admin_and_our_break_glass_account() {
    let emu = emulator().await;
    let previous = emu
        .seed_previous_provider(CONTOSO, "0e0e0e0e-0000-4000-8000-000000000005", "Old MSP")
        .unwrap();
    let graph = client(&emu, None);

    // Another partner's relationship is invisible to us (Graph has no
    // customer-side list; see docs/connectors-graph.md).
    assert!(graph.gdap_relationships(CONTOSO).await.unwrap().is_empty());
    assert_eq!(
        graph
            .gdap_relationship(&previous.relationship_id)
            .await
            .unwrap(),
        None
    );

    // Its admin account shows among the Global Administrators.
    let admins = graph
        .directory_role_members(CONTOSO, GLOBAL_ADMINISTRATOR)
        .await
        .unwrap();
    assert_eq!(admins.len(), 1);
    assert_eq!(admins[0].id, previous.admin_user_id);
    assert!(
        admins[0]
            .user_principal_name
            .as_deref()
            .unwrap()
            .starts_with("oldmsp-admin@")
    );

    // Our break-glass account joins the role (twice is fine); theirs goes.
    let mut glass = joiner("breakglass@contoso.onmicrosoft.com");
    glass.display_name = "Break glass".to_owned();
    let glass = graph.create_user(CONTOSO, &glass, "bg").await.unwrap();
    for _ in 0..2 {
        graph
            .add_directory_role_member(CONTOSO, GLOBAL_ADMINISTRATOR, &glass.id)
            .await
            .unwrap();
    }
    graph
        .delete_user(CONTOSO, &previous.admin_user_id)
        .await
        .unwrap();
    let admins = graph
        .directory_role_members(CONTOSO, GLOBAL_ADMINISTRATOR)
        .await
        .unwrap();
    let ids: Vec<&str> = admins.iter().map(|m| m.id.as_str()).collect();
    assert_eq!(ids, [glass.id.as_str()]);
    assert_eq!(emu.harness().counted("roles.members_added"), 1);
    emu.shutdown().await;
}

#[tokio::test]
async fn throttling_and_outages_are_retryable_with_retry_after() {
    let emu = emulator().await;
    let graph = client(&emu, None);
    // A first call, so the token is cached and the fault hits Graph itself.
    graph
        .find_user(CONTOSO, "a@contoso.onmicrosoft.com")
        .await
        .unwrap();

    emu.harness().rate_limit_next(1, 7);
    let err = graph
        .find_user(CONTOSO, "a@contoso.onmicrosoft.com")
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
    graph
        .find_user(CONTOSO, "a@contoso.onmicrosoft.com")
        .await
        .unwrap();

    emu.harness().set_down(true);
    let err = graph
        .create_user(CONTOSO, &joiner("a@contoso.onmicrosoft.com"), "k")
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    emu.harness().set_down(false);
    assert_eq!(emu.harness().counted("users.created"), 0);

    // Nothing listening at all: retryable too.
    let url = emu.url();
    emu.shutdown().await;
    let mut config = GraphConfig::new(PARTNER, APP, Secret::new(SECRET));
    config.login_base = url.clone();
    config.graph_base = url;
    let gone = GraphClient::new(config, Arc::new(SystemClock)).unwrap();
    let err = gone.gdap_relationships(CONTOSO).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
}

#[tokio::test]
async fn admin_accounts_passwords_skus_and_groups_for_onboarding_and_leavers() {
    let emu = emulator().await;
    emu.add_sku(CONTOSO, E3, "ENTERPRISEPACK", 2);
    let graph = client(&emu, None);
    let force = |id: &str| {
        emu.user(CONTOSO, id).unwrap()["passwordProfile"]["forceChangePasswordNextSignIn"]
            .as_bool()
            .unwrap()
    };

    // A joiner changes the first password; a break-glass account keeps it.
    let ada = graph
        .create_user(CONTOSO, &joiner("ada@contoso.onmicrosoft.com"), "j")
        .await
        .unwrap();
    assert!(force(&ada.id));
    let glass = graph
        .create_admin_user(CONTOSO, &joiner("glass@contoso.onmicrosoft.com"), "bg")
        .await
        .unwrap();
    assert!(!force(&glass.id));

    // A leaver's password is reset; a weak one is refused without showing it.
    graph
        .reset_password(CONTOSO, &ada.id, &Secret::new("Fresh-Passw0rd!x"), false)
        .await
        .unwrap();
    assert!(!force(&ada.id));
    assert_eq!(emu.harness().counted("users.password_reset"), 1);
    let err = graph
        .reset_password(CONTOSO, &ada.id, &Secret::new("short"), true)
        .await
        .unwrap_err();
    assert!(err.to_string().contains("password complexity"), "{err}");
    assert!(!format!("{err:?}").contains("short\""), "{err:?}");

    // Free licences, for a plan to check before it promises one.
    graph
        .assign_licenses(CONTOSO, &ada.id, &[E3.to_owned()], &[])
        .await
        .unwrap();
    let skus = graph.subscribed_skus(CONTOSO).await.unwrap();
    assert_eq!(skus.len(), 1);
    assert_eq!(skus[0].part_number, "ENTERPRISEPACK");
    assert_eq!(
        (skus[0].enabled, skus[0].consumed, skus[0].available()),
        (2, 1, 1)
    );

    // A security group is created once and found by name.
    let made = graph
        .create_security_group(CONTOSO, "Gatehouse break-glass", "gh-breakglass", "g1")
        .await
        .unwrap();
    let again = graph
        .create_security_group(CONTOSO, "Gatehouse break-glass", "gh-breakglass", "g2")
        .await
        .unwrap();
    assert_eq!(made, again);
    assert!(made.security_enabled && !made.mail_enabled && !made.unified);
    assert_eq!(emu.harness().counted("groups.created"), 1);
    // Two groups of one name: an error, not a guess.
    emu.add_group(CONTOSO, "Gatehouse break-glass", GroupKind::Security);
    let err = graph
        .find_group(CONTOSO, "Gatehouse break-glass")
        .await
        .unwrap_err();
    assert!(err.to_string().contains("2 groups"), "{err}");
    assert_eq!(
        graph.find_group(CONTOSO, "Nobody's group").await.unwrap(),
        None
    );
    emu.shutdown().await;
}

#[tokio::test]
async fn many_users_are_looked_up_in_batches_of_twenty_within_one_tenant() {
    let emu = emulator().await;
    let mut upns = Vec::new();
    let mut ids = Vec::new();
    for i in 0..23 {
        let upn = format!("user{i}@contoso.onmicrosoft.com");
        ids.push(emu.add_user(CONTOSO, &upn, &format!("User {i}")).unwrap());
        upns.push(upn);
    }
    upns.insert(5, "gone@contoso.onmicrosoft.com".to_owned());
    upns.push("o'brien@contoso.onmicrosoft.com".to_owned());
    let graph = client(&emu, None);
    let found = graph.find_users(CONTOSO, &upns).await.unwrap();
    assert_eq!(found.len(), 25);
    assert_eq!(emu.harness().counted("batch.calls"), 2);
    for (upn, user) in &found {
        if upn.starts_with("gone@") || upn.starts_with("o'brien@") {
            assert_eq!(user, &None, "{upn}");
        } else {
            let user = user.as_ref().unwrap();
            assert_eq!(&user.user_principal_name, upn);
            assert!(user.account_enabled);
        }
    }
    let found_ids: Vec<&str> = found
        .iter()
        .filter_map(|(_, u)| u.as_ref().map(|u| u.id.as_str()))
        .collect();
    assert_eq!(
        found_ids,
        ids.iter().map(String::as_str).collect::<Vec<_>>()
    );

    // The same users are invisible from another tenant, batched or not.
    let none = graph.find_users(FABRIKAM, &upns[..3]).await.unwrap();
    assert!(none.iter().all(|(_, u)| u.is_none()), "{none:?}");
    let http = reqwest::Client::new();
    let answer: Value = http
        .post(format!("{}/v1.0/$batch", emu.url()))
        .bearer_auth(raw_token(&emu, FABRIKAM).await)
        .json(&serde_json::json!({"requests": [
            {"id": "1", "method": "GET", "url": format!("/users/{}", ids[0])},
            {"id": "2", "method": "DELETE", "url": format!("/users/{}", ids[0])},
        ]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(answer["responses"][0]["status"], 404, "{answer}");
    assert_eq!(answer["responses"][1]["status"], 404, "{answer}");
    assert!(emu.user(CONTOSO, &ids[0]).is_some());

    // Graph's limit: at most twenty steps.
    let steps: Vec<Value> = (0..21)
        .map(|i| serde_json::json!({"id": i.to_string(), "method": "GET", "url": "/users"}))
        .collect();
    let r = http
        .post(format!("{}/v1.0/$batch", emu.url()))
        .bearer_auth(raw_token(&emu, CONTOSO).await)
        .json(&serde_json::json!({ "requests": steps }))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    // A throttled batch is retryable like any call.
    emu.harness().rate_limit_next(1, 3);
    let err = graph.find_users(CONTOSO, &upns[..2]).await.unwrap_err();
    assert_eq!(err.retry_after(), Some(Duration::from_secs(3)), "{err:?}");
    emu.shutdown().await;
}

#[tokio::test]
async fn the_emulator_pages_selects_and_refuses_like_graph() {
    let emu = emulator().await;
    for i in 0..5 {
        emu.add_user(CONTOSO, &format!("u{i}@contoso.onmicrosoft.com"), "U")
            .unwrap();
    }
    let token = raw_token(&emu, CONTOSO).await;
    let http = reqwest::Client::new();
    let get = |url: String| {
        let request = http.get(url).bearer_auth(&token);
        async move { request.send().await.unwrap() }
    };

    // Without $select: Graph's default set, which lacks accountEnabled.
    let all: Value = get(format!("{}/v1.0/users", emu.url()))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(all["value"].as_array().unwrap().len(), 5);
    assert!(all["value"][0].get("accountEnabled").is_none(), "{all}");
    assert!(all["value"][0]["userPrincipalName"].is_string());
    assert!(all.get("@odata.nextLink").is_none());

    // $top and $select carry over into the next link, to the last page.
    let mut url = format!("{}/v1.0/users?$top=2&$select=id,accountEnabled", emu.url());
    let mut seen = 0;
    let mut pages = 0;
    loop {
        let page: Value = get(url.clone()).await.json().await.unwrap();
        pages += 1;
        for user in page["value"].as_array().unwrap() {
            assert_eq!(user["accountEnabled"], true);
            assert!(user.get("userPrincipalName").is_none(), "{user}");
            seen += 1;
        }
        match page["@odata.nextLink"].as_str() {
            Some(next) => url = next.to_owned(),
            None => break,
        }
    }
    assert_eq!((seen, pages), (5, 3));

    // Refusals in Graph's shape.
    for (query, code) in [
        ("$select=nonsense", "Request_BadRequest"),
        (
            "$filter=startswith(displayName,'u')",
            "Request_UnsupportedQuery",
        ),
        ("$top=0", "Request_BadRequest"),
    ] {
        let r = get(format!("{}/v1.0/users?{query}", emu.url())).await;
        assert_eq!(r.status(), 400, "{query}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], code, "{query}: {body}");
    }

    // The token endpoint wants the Graph .default scope.
    let r = http
        .post(format!("{}/{CONTOSO}/oauth2/v2.0/token", emu.url()))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!(
            "grant_type=client_credentials&client_id={APP}&client_secret={SECRET}&scope=User.Read"
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"], "invalid_scope");
    emu.shutdown().await;
}

/// The onboarding's reads through the port: the customer's tenant by a
/// verified domain (any case) or by id, a relationship by id, and the
/// members of a role the tenant never activated (none, not an error).
#[tokio::test]
async fn the_port_finds_a_tenant_by_domain_and_reads_roles_and_relationships() {
    let emu = emulator().await;
    assert!(emu.add_domain(CONTOSO, "contoso.example"));
    let graph = client(&emu, None);
    let port: &dyn M365 = &graph;

    let found = port
        .tenant_by_domain("Contoso.Example")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(
        (
            found.tenant_id.as_str(),
            found.display_name.as_str(),
            found.default_domain.as_str()
        ),
        (CONTOSO, "Contoso", "contoso.onmicrosoft.com")
    );
    assert_eq!(
        port.tenant_by_domain("nowhere.example").await.unwrap(),
        None
    );
    assert_eq!(
        port.tenant_by_id(FABRIKAM)
            .await
            .unwrap()
            .unwrap()
            .default_domain,
        "fabrikam.onmicrosoft.com"
    );
    assert_eq!(
        port.tenant_by_id("0d0d0d0d-0000-4000-8000-000000000009")
            .await
            .unwrap(),
        None
    );
    assert!(matches!(
        port.tenant_by_domain("a/b").await,
        Err(ConnectorError::Rejected { .. })
    ));
    // The look-ups use the partner's token.
    assert_eq!(
        emu.harness().counted(&format!("tokens.issued:{PARTNER}")),
        1
    );
    assert_eq!(emu.harness().counted("tenants.looked_up"), 2);

    let admin = emu
        .add_user(CONTOSO, "it@contoso.example", "Contoso IT")
        .unwrap();
    assert!(emu.assign_directory_role(CONTOSO, GLOBAL_ADMINISTRATOR, &admin));
    let members = port
        .directory_role_members(CONTOSO, GLOBAL_ADMINISTRATOR)
        .await
        .unwrap();
    assert_eq!(members.len(), 1);
    assert_eq!(
        members[0].user_principal_name.as_deref(),
        Some("it@contoso.example")
    );
    // Privileged Authentication Administrator is not activated in the emulated tenants.
    let none = port
        .directory_role_members(CONTOSO, "7be44c8a-adaf-4e2a-84d6-ab2649e08a13")
        .await
        .unwrap();
    assert!(none.is_empty());

    let request = GdapRequest {
        display_name: "Gatehouse onboarding".into(),
        customer_tenant_id: CONTOSO.into(),
        duration: "P730D".into(),
        roles: vec![USER_ADMIN.into()],
    };
    let made = port.request_gdap(&request, "k1").await.unwrap();
    let read = port.gdap_relationship(&made.id).await.unwrap().unwrap();
    assert_eq!(read.status, "approvalPending");
    emu.set_auto_accept_gdap(Some(Duration::ZERO));
    let second = port
        .request_gdap(
            &GdapRequest {
                display_name: "Gatehouse second".into(),
                ..request
            },
            "k2",
        )
        .await
        .unwrap();
    assert_eq!(
        port.gdap_relationship(&second.id)
            .await
            .unwrap()
            .unwrap()
            .status,
        "active",
        "accepted by the knob"
    );
    assert_eq!(port.gdap_relationship("no-such-id").await.unwrap(), None);
}
