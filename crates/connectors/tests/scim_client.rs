//! The SCIM 2.0 client against the sandbox SCIM application, over real
//! HTTP: users and groups round trips, paging, filter quoting, and the
//! failure modes the engine must tell apart.

#![expect(
    clippy::unwrap_used,
    reason = "test helpers outside #[test] functions fail loudly by design"
)]

use std::sync::Arc;
use std::time::Duration;

use gatehouse_connectors::ConnectorError;
use gatehouse_connectors::http::Secret;
use gatehouse_connectors::scim::{NewScimUser, ScimClient, ScimOptions};
use gatehouse_core::clock::SystemClock;
use gatehouse_sandbox::ScimAppEmulator;
use gatehouse_scim::{PatchOp, PatchOperation, PatchPath};
use reqwest::Url;
use serde_json::json;

const TOKEN: &str = "scim-bearer-do-not-leak";

fn client_with(emu: &ScimAppEmulator, token: &str, page_size: u32) -> ScimClient {
    let options = ScimOptions {
        page_size,
        timeout: Duration::from_secs(5),
    };
    ScimClient::with_options(
        Url::parse(&emu.scim_url()).unwrap(),
        Secret::new(token),
        options,
        Arc::new(SystemClock),
    )
    .unwrap()
}

fn client(emu: &ScimAppEmulator) -> ScimClient {
    client_with(emu, TOKEN, 100)
}

fn person(external_id: &str, user_name: &str) -> NewScimUser {
    NewScimUser {
        external_id: external_id.to_owned(),
        user_name: user_name.to_owned(),
        display_name: "Ada Lovelace".to_owned(),
        given_name: Some("Ada".to_owned()),
        family_name: Some("Lovelace".to_owned()),
        email: Some(user_name.to_owned()),
        active: true,
    }
}

#[tokio::test]
async fn a_user_is_created_found_changed_and_deleted() {
    let emu = ScimAppEmulator::start(TOKEN).await.unwrap();
    let scim = client(&emu);

    let made = scim
        .create_user(&person("per_1", "ada@contoso.com"), "k-create")
        .await
        .unwrap();
    assert_eq!(made.external_id.as_deref(), Some("per_1"));
    assert!(made.active);
    let stored = emu.user_by_name("ada@contoso.com").unwrap();
    assert_eq!(stored["name"]["givenName"], "Ada");
    assert_eq!(stored["emails"][0]["value"], "ada@contoso.com");

    // Found by either key, and by id.
    let by_ext = scim
        .find_user_by_external_id("per_1")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_ext.id, made.id);
    let by_name = scim
        .find_user_by_user_name("ADA@contoso.com")
        .await
        .unwrap()
        .unwrap();
    assert_eq!(by_name.id, made.id);
    assert_eq!(
        scim.user(&made.id).await.unwrap().unwrap().user_name,
        "ada@contoso.com"
    );
    assert!(
        scim.find_user_by_external_id("per_2")
            .await
            .unwrap()
            .is_none()
    );
    assert!(scim.user("nope").await.unwrap().is_none());

    // PATCH with gatehouse-scim's operations.
    let ops = [
        PatchOperation {
            op: PatchOp::Replace,
            path: Some(PatchPath::parse("displayName").unwrap()),
            value: Some(json!("Ada King")),
        },
        PatchOperation {
            op: PatchOp::Add,
            path: Some(PatchPath::parse("roles").unwrap()),
            value: Some(json!([{ "value": "approver" }])),
        },
    ];
    let patched = scim.patch_user(&made.id, &ops).await.unwrap();
    assert_eq!(patched.display_name.as_deref(), Some("Ada King"));
    assert_eq!(patched.roles, ["approver"]);

    scim.set_active(&made.id, false).await.unwrap();
    assert_eq!(
        emu.user_by_name("ada@contoso.com").unwrap()["active"],
        false
    );
    assert!(!scim.user(&made.id).await.unwrap().unwrap().active);

    scim.delete_user(&made.id).await.unwrap();
    assert_eq!(emu.user_count(), 0);
    // Deleting what is gone is done.
    scim.delete_user(&made.id).await.unwrap();
    assert_eq!(emu.harness().counted("users.deleted"), 1);
}

#[tokio::test]
async fn a_create_with_the_same_key_acts_once() {
    let emu = ScimAppEmulator::start(TOKEN).await.unwrap();
    let scim = client(&emu);
    let first = scim
        .create_user(&person("per_1", "ada@contoso.com"), "same-key")
        .await
        .unwrap();
    let again = scim
        .create_user(&person("per_1", "ada@contoso.com"), "same-key")
        .await
        .unwrap();
    assert_eq!(first.id, again.id);
    assert_eq!(emu.harness().counted("users.created"), 1);
}

#[tokio::test]
async fn every_page_is_read() {
    let emu = ScimAppEmulator::start(TOKEN).await.unwrap();
    for i in 0..7 {
        emu.seed_user(&json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": format!("user{i}@contoso.com"),
            "externalId": format!("per_{i}"),
        }))
        .unwrap();
    }
    let scim = client_with(&emu, TOKEN, 2);
    let users = scim.users().await.unwrap();
    let mut names: Vec<String> = users.into_iter().map(|u| u.user_name).collect();
    names.sort();
    let want: Vec<String> = (0..7).map(|i| format!("user{i}@contoso.com")).collect();
    assert_eq!(names, want);
}

#[tokio::test]
async fn filter_values_with_quotes_and_backslashes_match_exactly() {
    let emu = ScimAppEmulator::start(TOKEN).await.unwrap();
    let scim = client(&emu);
    let tricky = r#"o"brien\x"#;
    // A value that would close the string and widen the filter if it were
    // pasted in unquoted.
    let injection = r#"x" or userName pr or externalId eq "y"#;
    scim.create_user(&person(tricky, "obrien@contoso.com"), "k1")
        .await
        .unwrap();
    scim.create_user(&person("per_plain", r#"back\slash"@contoso.com"#), "k2")
        .await
        .unwrap();

    let found = scim
        .find_user_by_external_id(tricky)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.user_name, "obrien@contoso.com");
    let found = scim
        .find_user_by_user_name(r#"back\slash"@contoso.com"#)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(found.external_id.as_deref(), Some("per_plain"));
    assert!(
        scim.find_user_by_external_id(injection)
            .await
            .unwrap()
            .is_none()
    );
    assert!(scim.find_group(injection).await.unwrap().is_none());
}

#[tokio::test]
async fn groups_are_created_found_and_their_members_changed() {
    let emu = ScimAppEmulator::start(TOKEN).await.unwrap();
    let scim = client(&emu);
    let ada = scim
        .create_user(&person("per_1", "ada@contoso.com"), "k1")
        .await
        .unwrap();
    assert!(scim.find_group("Sales \"EMEA\"").await.unwrap().is_none());
    let sales = scim.create_group("Sales \"EMEA\"", "kg").await.unwrap();
    let found = scim.find_group("sales \"emea\"").await.unwrap().unwrap();
    assert_eq!(found.id, sales.id);

    scim.add_member(&sales.id, &ada.id).await.unwrap();
    scim.add_member(&sales.id, &ada.id).await.unwrap();
    let updates = emu.harness().counted("groups.updated");
    assert_eq!(updates, 1, "adding a member twice changes the group once");
    let members = &emu.groups()[0]["members"];
    assert_eq!(members.as_array().unwrap().len(), 1);

    // The user's computed `groups` is read back, and the client learns the
    // application computes it.
    let user = scim.user(&ada.id).await.unwrap().unwrap();
    assert!(scim.returns_groups());
    let groups = scim.groups_of(&user).await.unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].display_name, "Sales \"EMEA\"");

    scim.remove_member(&sales.id, &ada.id).await.unwrap();
    scim.remove_member(&sales.id, &ada.id).await.unwrap();
    assert_eq!(emu.harness().counted("groups.updated"), 2);
    let user = scim.user(&ada.id).await.unwrap().unwrap();
    assert_eq!(user.groups, None, "an empty groups is left out");
    assert!(scim.groups_of(&user).await.unwrap().is_empty());
}

#[tokio::test]
async fn groups_of_asks_the_groups_endpoint_until_the_application_shows_groups() {
    let emu = ScimAppEmulator::start(TOKEN).await.unwrap();
    let ada = emu
        .seed_user(&json!({
            "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
            "userName": "ada@contoso.com",
        }))
        .unwrap();
    let id = ada["id"].as_str().unwrap();
    emu.seed_group(&json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "displayName": "Finance",
        "members": [{ "value": id }],
    }))
    .unwrap();
    let mut user = client(&emu).user(id).await.unwrap().unwrap();
    assert!(user.groups.is_some());
    // As an application that does not compute `groups` would answer, to a
    // client that has never seen one: the Groups endpoint answers.
    user.groups = None;
    let fresh = client(&emu);
    assert!(!fresh.returns_groups());
    let groups = fresh.groups_of(&user).await.unwrap();
    assert_eq!(groups.len(), 1);
    assert_eq!(groups[0].display_name, "Finance");
}

#[tokio::test]
async fn a_429_is_retryable_with_the_applications_delay() {
    let emu = ScimAppEmulator::start(TOKEN).await.unwrap();
    let scim = client(&emu);
    emu.harness().rate_limit_next(1, 7);
    let err = scim
        .find_user_by_user_name("ada@contoso.com")
        .await
        .unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(7)));
    // The next call passes.
    assert!(
        scim.find_user_by_user_name("ada@contoso.com")
            .await
            .unwrap()
            .is_none()
    );

    emu.harness().set_down(true);
    let err = scim.users().await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
}

#[tokio::test]
async fn a_wrong_token_is_an_auth_error_that_does_not_show_the_token() {
    let emu = ScimAppEmulator::start(TOKEN).await.unwrap();
    let scim = client_with(&emu, "wrong-token-value", 100);
    let err = scim.users().await.unwrap_err();
    assert!(
        matches!(
            err,
            ConnectorError::Auth {
                status: Some(401),
                ..
            }
        ),
        "{err:?}"
    );
    let shown = format!("{err} {err:?} {scim:?}");
    assert!(!shown.contains("wrong-token-value"), "{shown}");
    assert_eq!(emu.harness().counted("auth.refused"), 1);
}

#[tokio::test]
async fn a_taken_user_name_is_rejected_naming_uniqueness() {
    let emu = ScimAppEmulator::start(TOKEN).await.unwrap();
    let scim = client(&emu);
    scim.create_user(&person("per_1", "ada@contoso.com"), "k1")
        .await
        .unwrap();
    let err = scim
        .create_user(&person("per_2", "ADA@contoso.com"), "k2")
        .await
        .unwrap_err();
    match &err {
        ConnectorError::Rejected {
            status: Some(409),
            message,
            ..
        } => assert!(message.contains("uniqueness"), "{message}"),
        other => panic!("expected a 409 rejection, got {other:?}"),
    }
    assert_eq!(emu.user_count(), 1);

    // A PATCH the application refuses names its scimType too.
    let id = emu.users()[0]["id"].as_str().unwrap().to_owned();
    let bad = PatchOperation {
        op: PatchOp::Replace,
        path: Some(PatchPath::parse("nosuchattribute").unwrap()),
        value: Some(json!("x")),
    };
    let err = scim.patch_user(&id, &[bad]).await.unwrap_err();
    match &err {
        ConnectorError::Rejected {
            status: Some(400),
            message,
            ..
        } => assert!(message.contains("invalidPath"), "{message}"),
        other => panic!("expected a 400 rejection, got {other:?}"),
    }
}
