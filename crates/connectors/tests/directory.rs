//! The `AccountDirectory` port over a SCIM application and over Microsoft
//! 365, against the sandbox emulators over real HTTP: every change applied
//! twice (the second is a no-op that changes no counter), holdings after a
//! sequence of changes, and the refusals the reconciler must see.

#![expect(
    clippy::unwrap_used,
    clippy::panic,
    reason = "test helpers outside #[test] functions fail loudly by design"
)]

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use gatehouse_connectors::graph::{GraphClient, GraphConfig};
use gatehouse_connectors::http::Secret;
use gatehouse_connectors::scim::{ScimClient, ScimOptions};
use gatehouse_connectors::{
    AccountChange, AccountDirectory, AccountRef, ConnectorError, GraphDirectory, Holdings,
    ScimDirectory,
};
use gatehouse_core::clock::SystemClock;
use gatehouse_sandbox::graph::GroupKind;
use gatehouse_sandbox::{GraphEmulator, ScimAppEmulator};
use reqwest::Url;
use serde_json::json;

const TOKEN: &str = "scim-bearer-do-not-leak";

fn ada() -> AccountRef {
    AccountRef {
        external_id: "per_ada".to_owned(),
        user_name: "ada@contoso.onmicrosoft.com".to_owned(),
        display_name: "Ada Lovelace".to_owned(),
        given_name: Some("Ada".to_owned()),
        family_name: Some("Lovelace".to_owned()),
        email: Some("ada@contoso.onmicrosoft.com".to_owned()),
    }
}

fn set(items: &[&str]) -> BTreeSet<String> {
    items.iter().map(|s| (*s).to_owned()).collect()
}

/// Applies `change` twice: both succeed, and the second changes no counter.
async fn twice(
    dir: &dyn AccountDirectory,
    counts: impl Fn() -> BTreeMap<String, u64>,
    person: &AccountRef,
    change: AccountChange,
) {
    let key = format!("key-{change:?}");
    dir.apply(person, &change, &key)
        .await
        .unwrap_or_else(|e| panic!("{change:?}: {e}"));
    let after_first = counts();
    dir.apply(person, &change, &key)
        .await
        .unwrap_or_else(|e| panic!("{change:?} again: {e}"));
    assert_eq!(
        counts(),
        after_first,
        "{change:?} applied again changed something"
    );
}

// ---- SCIM --------------------------------------------------------------------

async fn scim() -> (ScimAppEmulator, ScimDirectory) {
    let emu = ScimAppEmulator::start(TOKEN).await.unwrap();
    let options = ScimOptions {
        page_size: 2,
        timeout: Duration::from_secs(5),
    };
    let client = ScimClient::with_options(
        Url::parse(&emu.scim_url()).unwrap(),
        Secret::new(TOKEN),
        options,
        Arc::new(SystemClock),
    )
    .unwrap();
    (emu, ScimDirectory::new(Arc::new(client)))
}

#[tokio::test]
async fn scim_changes_are_idempotent_and_holdings_show_them() {
    let (emu, dir) = scim().await;
    let counts = || emu.harness().counts();
    let person = ada();
    assert_eq!(dir.kind(), "scim");
    assert!(dir.holdings(&person).await.unwrap().is_none());

    // Before the account exists: removals and disabling are done already.
    for change in [
        AccountChange::DisableAccount,
        AccountChange::DeleteAccount,
        AccountChange::RemoveGroup("Sales".into()),
        AccountChange::RemoveRole("approver".into()),
    ] {
        dir.apply(&person, &change, "k").await.unwrap();
    }
    assert!(counts().is_empty(), "{:?}", counts());

    twice(&dir, counts, &person, AccountChange::CreateAccount).await;
    assert_eq!(emu.harness().counted("users.created"), 1);
    let stored = emu.user_by_name(&person.user_name).unwrap();
    assert_eq!(stored["externalId"], "per_ada");
    assert_eq!(stored["active"], true);

    for change in [
        AccountChange::AddGroup("Sales".into()),
        AccountChange::AddGroup("Ops".into()),
        AccountChange::AddRole("approver".into()),
        AccountChange::AddRole("viewer".into()),
        AccountChange::RemoveGroup("Ops".into()),
        AccountChange::RemoveRole("viewer".into()),
        AccountChange::RemoveGroup("Never existed".into()),
        AccountChange::DisableAccount,
        AccountChange::RevokeSessions,
        AccountChange::RemoveLicense("sku".into()),
    ] {
        twice(&dir, counts, &person, change).await;
    }
    // AddGroup created each group once.
    assert_eq!(emu.harness().counted("groups.created"), 2);
    assert_eq!(emu.group_count(), 2);

    let held = dir.holdings(&person).await.unwrap().unwrap();
    let id = emu.user_by_name(&person.user_name).unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    assert_eq!(
        held,
        Holdings {
            account_id: id.clone(),
            external_id: Some("per_ada".into()),
            user_name: person.user_name.clone(),
            active: false,
            groups: set(&["Sales"]),
            licenses: BTreeSet::new(),
            roles: set(&["approver"]),
        }
    );

    twice(&dir, counts, &person, AccountChange::EnableAccount).await;
    assert!(dir.holdings(&person).await.unwrap().unwrap().active);

    twice(&dir, counts, &person, AccountChange::DeleteAccount).await;
    assert_eq!(emu.harness().counted("users.deleted"), 1);
    assert!(dir.holdings(&person).await.unwrap().is_none());
}

#[tokio::test]
async fn scim_refuses_what_needs_an_account_or_a_licence() {
    let (emu, dir) = scim().await;
    let person = ada();
    for change in [
        AccountChange::EnableAccount,
        AccountChange::AddGroup("Sales".into()),
        AccountChange::AddRole("approver".into()),
        AccountChange::AddLicense("sku".into()),
    ] {
        let err = dir.apply(&person, &change, "k").await.unwrap_err();
        assert!(
            matches!(err, ConnectorError::Rejected { .. }),
            "{change:?}: {err:?}"
        );
    }
    assert!(emu.harness().counts().is_empty());
}

#[tokio::test]
async fn scim_finds_by_user_name_adopts_an_account_without_an_id_and_refuses_anothers() {
    let (emu, dir) = scim().await;
    let person = ada();
    emu.seed_user(&json!({
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": person.user_name,
    }))
    .unwrap();
    let held = dir.holdings(&person).await.unwrap().unwrap();
    assert_eq!(held.external_id, None);

    dir.apply(&person, &AccountChange::CreateAccount, "k")
        .await
        .unwrap();
    assert_eq!(emu.harness().counted("users.created"), 0);
    assert_eq!(
        emu.user_by_name(&person.user_name).unwrap()["externalId"],
        "per_ada"
    );

    // Someone else's account under the same sign-in name is a conflict:
    // neither read as this person's nor changed.
    let mut other = ada();
    other.external_id = "per_other".into();
    let before = emu.harness().counts();
    for change in [
        AccountChange::CreateAccount,
        AccountChange::DisableAccount,
        AccountChange::DeleteAccount,
    ] {
        let err = dir.apply(&other, &change, "k2").await.unwrap_err();
        match err {
            ConnectorError::Rejected { message, .. } => {
                assert!(message.contains("per_ada"), "{message}");
            }
            other => panic!("expected a rejection, got {other:?}"),
        }
    }
    assert!(dir.holdings(&other).await.is_err());
    assert_eq!(emu.harness().counts(), before);
    assert!(dir.holdings(&person).await.unwrap().unwrap().active);
}

#[tokio::test]
async fn scim_accounts_lists_every_account_over_pages() {
    let (emu, dir) = scim().await;
    for i in 0..5 {
        let mut p = ada();
        p.external_id = format!("per_{i}");
        p.user_name = format!("user{i}@contoso.com");
        dir.apply(&p, &AccountChange::CreateAccount, &format!("k{i}"))
            .await
            .unwrap();
    }
    let mut first = ada();
    first.external_id = "per_0".into();
    first.user_name = "user0@contoso.com".into();
    dir.apply(&first, &AccountChange::AddGroup("Sales".into()), "g")
        .await
        .unwrap();
    let accounts = dir.accounts().await.unwrap();
    assert_eq!(accounts.len(), 5);
    let names: BTreeSet<_> = accounts.iter().map(|h| h.user_name.clone()).collect();
    assert_eq!(names.len(), 5);
    let zero = accounts
        .iter()
        .find(|h| h.external_id.as_deref() == Some("per_0"))
        .unwrap();
    assert_eq!(zero.groups, set(&["Sales"]));
    assert_eq!(emu.user_count(), 5);
}

#[tokio::test]
async fn scim_throttling_reaches_the_caller_as_retryable() {
    let (emu, dir) = scim().await;
    emu.harness().rate_limit_next(1, 11);
    let err = dir.holdings(&ada()).await.unwrap_err();
    assert!(err.is_retryable(), "{err:?}");
    assert_eq!(err.retry_after(), Some(Duration::from_secs(11)));
}

// ---- Graph -------------------------------------------------------------------

const PARTNER: &str = "0a0a0a0a-0000-4000-8000-000000000001";
const CONTOSO: &str = "0c0c0c0c-0000-4000-8000-000000000002";
const APP: &str = "5e1f0000-0000-4000-8000-00000000a990";
const SECRET: &str = "app-secret-do-not-leak";
const E3: &str = "6fd2c87f-b296-42f0-b197-1e91e994b900";
const USER_ADMIN: &str = "fe930be7-5e62-47db-91af-98c3a49a38b1";

async fn graph() -> (GraphEmulator, GraphDirectory) {
    let emu = GraphEmulator::start().await.unwrap();
    emu.add_partner_tenant(PARTNER, "Gatehouse MSP");
    emu.add_tenant(CONTOSO, "Contoso");
    for tenant in [PARTNER, CONTOSO] {
        assert!(emu.consent_app(tenant, APP, SECRET));
    }
    assert!(emu.add_sku(CONTOSO, E3, "ENTERPRISEPACK", 5));
    let mut config = GraphConfig::new(PARTNER, APP, Secret::new(SECRET));
    config.login_base = emu.url();
    config.graph_base = emu.url();
    config.timeout = Duration::from_secs(5);
    config.page_size = Some(2);
    let client = GraphClient::new(config, Arc::new(SystemClock)).unwrap();
    (emu, GraphDirectory::new(Arc::new(client), CONTOSO))
}

#[tokio::test]
async fn graph_changes_are_idempotent_and_holdings_show_them() {
    let (emu, dir) = graph().await;
    // Counters other than token fetches (a fresh token is not a change).
    let counts = || {
        let mut all = emu.harness().counts();
        all.retain(|k, _| !k.starts_with("tokens."));
        all
    };
    let person = ada();
    assert_eq!(dir.kind(), "graph");
    let sales = emu
        .add_group(CONTOSO, "Sales", GroupKind::Security)
        .unwrap();
    let ops = emu.add_group(CONTOSO, "Ops", GroupKind::Security).unwrap();
    assert!(dir.holdings(&person).await.unwrap().is_none());
    assert!(emu.set_country(CONTOSO, "GB"));

    twice(&dir, counts, &person, AccountChange::CreateAccount).await;
    assert_eq!(emu.harness().counted("users.created"), 1);
    let user = emu.user(CONTOSO, &person.user_name).unwrap();
    assert_eq!(user["accountEnabled"], true);
    // The organization's country, so that licensing works.
    assert_eq!(user["usageLocation"], "GB");

    for change in [
        AccountChange::AddGroup(sales.clone()),
        AccountChange::AddGroup(ops.clone()),
        AccountChange::RemoveGroup(ops.clone()),
        AccountChange::AddLicense(E3.into()),
        AccountChange::AddRole(USER_ADMIN.into()),
        AccountChange::DisableAccount,
    ] {
        twice(&dir, counts, &person, change).await;
    }
    assert_eq!(emu.harness().counted("groups.members_added"), 2);
    assert_eq!(emu.harness().counted("groups.members_removed"), 1);
    assert_eq!(emu.harness().counted("licenses.added"), 1);
    assert_eq!(emu.harness().counted("roles.members_added"), 1);
    assert_eq!(emu.harness().counted("users.disabled"), 1);

    let held = dir.holdings(&person).await.unwrap().unwrap();
    assert_eq!(
        held,
        Holdings {
            account_id: user["id"].as_str().unwrap().to_owned(),
            external_id: None,
            user_name: person.user_name.clone(),
            active: false,
            groups: set(&[&sales]),
            licenses: set(&[E3]),
            roles: set(&[USER_ADMIN]),
        }
    );

    for change in [
        AccountChange::RemoveLicense(E3.into()),
        AccountChange::RemoveRole(USER_ADMIN.into()),
        AccountChange::EnableAccount,
    ] {
        twice(&dir, counts, &person, change).await;
    }
    assert_eq!(emu.harness().counted("licenses.removed"), 1);
    assert_eq!(emu.harness().counted("roles.members_removed"), 1);
    let held = dir.holdings(&person).await.unwrap().unwrap();
    assert!(held.active);
    assert!(held.licenses.is_empty());
    assert!(held.roles.is_empty());
    assert_eq!(held.groups, set(&[&sales]));

    // Revoking sessions is an action, not a state: each call revokes.
    dir.apply(&person, &AccountChange::RevokeSessions, "r1")
        .await
        .unwrap();
    assert_eq!(emu.harness().counted("users.sessions_revoked"), 1);

    twice(&dir, counts, &person, AccountChange::DeleteAccount).await;
    assert_eq!(emu.harness().counted("users.deleted"), 1);
    assert!(dir.holdings(&person).await.unwrap().is_none());
    // Everything that removes is done once the account is gone.
    for change in [
        AccountChange::DisableAccount,
        AccountChange::RevokeSessions,
        AccountChange::RemoveGroup(sales.clone()),
        AccountChange::RemoveLicense(E3.into()),
        AccountChange::RemoveRole(USER_ADMIN.into()),
    ] {
        dir.apply(&person, &change, "k").await.unwrap();
    }
}

#[tokio::test]
async fn graph_refuses_a_group_that_does_not_exist_naming_it() {
    let (emu, dir) = graph().await;
    let person = ada();
    dir.apply(&person, &AccountChange::CreateAccount, "k")
        .await
        .unwrap();
    let missing = "00000000-0000-4000-8000-00000000dead";
    let err = dir
        .apply(&person, &AccountChange::AddGroup(missing.into()), "k")
        .await
        .unwrap_err();
    match err {
        ConnectorError::Rejected { message, .. } => assert!(message.contains(missing), "{message}"),
        other => panic!("expected a rejection, got {other:?}"),
    }
    // A licence for a user made elsewhere without a usage location is
    // Graph's refusal, passed on.
    let mut made_elsewhere = ada();
    made_elsewhere.user_name = "grace@contoso.onmicrosoft.com".into();
    emu.add_user(CONTOSO, &made_elsewhere.user_name, "Grace")
        .unwrap();
    let err = dir
        .apply(&made_elsewhere, &AccountChange::AddLicense(E3.into()), "k")
        .await
        .unwrap_err();
    match err {
        ConnectorError::Rejected { message, .. } => {
            assert!(message.contains("usage location"), "{message}");
        }
        other => panic!("expected a rejection, got {other:?}"),
    }
    assert_eq!(emu.harness().counted("licenses.added"), 0);
}

#[tokio::test]
async fn graph_accounts_lists_every_user_with_holdings() {
    let (emu, dir) = graph().await;
    for i in 0..5 {
        emu.add_user(CONTOSO, &format!("user{i}@contoso.onmicrosoft.com"), "U")
            .unwrap();
    }
    let sales = emu
        .add_group(CONTOSO, "Sales", GroupKind::Security)
        .unwrap();
    let mut person = ada();
    person.user_name = "user3@contoso.onmicrosoft.com".into();
    dir.apply(&person, &AccountChange::AddGroup(sales.clone()), "k")
        .await
        .unwrap();
    let accounts = dir.accounts().await.unwrap();
    assert_eq!(accounts.len(), 5);
    let three = accounts
        .iter()
        .find(|h| h.user_name == "user3@contoso.onmicrosoft.com")
        .unwrap();
    assert_eq!(three.groups, set(&[&sales]));
    assert!(accounts.iter().all(|h| h.active && h.external_id.is_none()));
}
