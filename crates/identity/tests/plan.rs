//! Desired grants, plans, impact and drift, from the documented policy.

#![allow(clippy::unwrap_used, reason = "integration tests fail loudly")]

use std::collections::{BTreeMap, BTreeSet};

use gatehouse_core::gate::ProcessArea;
use gatehouse_identity::{
    AccountChange, Drift, Elevation, Entitlement, EventKind, Held, LifecycleEvent, Person,
    PersonStatus, Policy, desired, diff, drift, impact,
};
use time::OffsetDateTime;
use time::macros::datetime;

const POLICY: &str = r#"
[[role]]
id = "staff"
when = 'kind eq "client_user"'
grants = [
  { system = "m365", group = "All staff" },
  { system = "m365", license = "SPE_E3" },
]

[[role]]
id = "sales-eu"
when = 'department eq "Sales" and (location eq "Paris" or location eq "Berlin")'
grants = [{ system = "crm", group = "Sales EU" }]

[[role]]
id = "finance-approver"
sensitive = true
grants = [{ system = "erp", role = "approver" }]

[[elevation]]
id = "m365-global-admin"
system = "m365"
role = "Global Administrator"
max_duration = "8h"
"#;

const NOW: OffsetDateTime = datetime!(2026-12-06 10:00 UTC);

fn person(kind: EventKind, attrs: &[(&str, &str)], roles: &[&str]) -> Person {
    let event = LifecycleEvent {
        id: "e1".into(),
        person: "E1".into(),
        kind: EventKind::Hire,
        source: "hr".into(),
        occurred_at: NOW,
        attributes: attrs
            .iter()
            .map(|(k, v)| ((*k).into(), Some((*v).into())))
            .collect(),
        person_kind: None,
        roles: Some(roles.iter().map(|r| (*r).to_owned()).collect()),
    };
    let mut p = Person::new(&event).unwrap();
    if kind != EventKind::Hire {
        p.apply(&LifecycleEvent {
            id: "e2".into(),
            kind,
            attributes: BTreeMap::new(),
            roles: None,
            ..event
        });
    }
    p
}

fn group(g: &str) -> Entitlement {
    Entitlement::Group(g.into())
}

#[test]
fn rules_and_assignments_select_templates() {
    let policy = Policy::parse(POLICY).unwrap();
    let p = person(
        EventKind::Hire,
        &[("department", "sales"), ("location", "Berlin")],
        &["finance-approver"],
    );
    let d = desired(&p, &policy, &[], NOW);
    let systems: Vec<&str> = d.systems.keys().map(String::as_str).collect();
    assert_eq!(systems, ["crm", "erp", "m365"]);
    assert!(
        d.systems["crm"]
            .entitlements
            .contains_key(&group("Sales EU")),
        "rule match is case-insensitive"
    );
    // Someone in Sales in Madrid gets no EU sales group.
    let p = person(
        EventKind::Hire,
        &[("department", "Sales"), ("location", "Madrid")],
        &[],
    );
    let d = desired(&p, &policy, &[], NOW);
    assert_eq!(d.systems.keys().collect::<Vec<_>>(), ["m365"]);
}

#[test]
fn a_joiner_plan_is_standard_access_with_sensitive_grants_apart() {
    let policy = Policy::parse(POLICY).unwrap();
    let p = person(EventKind::Hire, &[], &["finance-approver"]);
    let d = desired(&p, &policy, &[], NOW);
    let m365 = diff("m365", d.systems.get("m365"), None);
    assert_eq!(m365[0].change, AccountChange::Create);
    assert!(m365.iter().all(|op| op.area == ProcessArea::JoinerAccess));
    assert_eq!(m365.len(), 3);
    let erp = diff("erp", d.systems.get("erp"), None);
    assert_eq!(
        erp[0].area,
        ProcessArea::JoinerAccess,
        "the account itself is standard"
    );
    assert_eq!(
        erp[1].change,
        AccountChange::Add(Entitlement::Role("approver".into()))
    );
    assert_eq!(erp[1].area, ProcessArea::SensitiveEntitlement);
}

#[test]
fn a_plan_is_empty_once_the_system_matches() {
    let policy = Policy::parse(POLICY).unwrap();
    let p = person(EventKind::Hire, &[], &[]);
    let d = desired(&p, &policy, &[], NOW);
    let held = Held {
        active: true,
        entitlements: [group("All staff"), Entitlement::License("SPE_E3".into())].into(),
    };
    assert!(diff("m365", d.systems.get("m365"), Some(&held)).is_empty());
}

#[test]
fn a_leaver_loses_everything_and_sessions_end() {
    let policy = Policy::parse(POLICY).unwrap();
    let p = person(EventKind::Terminate, &[], &[]);
    assert_eq!(p.status, PersonStatus::Terminated);
    let d = desired(&p, &policy, &[], NOW);
    assert!(d.systems.is_empty());
    let held = Held {
        active: true,
        entitlements: [group("All staff"), group("Someone added by hand")].into(),
    };
    let ops = diff("m365", None, Some(&held));
    let changes: Vec<&AccountChange> = ops.iter().map(|o| &o.change).collect();
    assert_eq!(
        changes,
        [
            &AccountChange::Disable,
            &AccountChange::RevokeSessions,
            &AccountChange::Remove(group("All staff")),
            &AccountChange::Remove(group("Someone added by hand")),
        ]
    );
    assert!(ops.iter().all(|o| o.area == ProcessArea::Revocation));
    // Already revoked: nothing left to do.
    assert!(diff("m365", None, Some(&Held::default())).is_empty());
}

#[test]
fn on_leave_disables_and_keeps_entitlements_then_return_enables() {
    let policy = Policy::parse(POLICY).unwrap();
    let p = person(EventKind::LeaveOfAbsence, &[], &[]);
    let d = desired(&p, &policy, &[], NOW);
    let held = Held {
        active: true,
        entitlements: [group("All staff"), Entitlement::License("SPE_E3".into())].into(),
    };
    let changes: Vec<AccountChange> = diff("m365", d.systems.get("m365"), Some(&held))
        .into_iter()
        .map(|o| o.change)
        .collect();
    assert_eq!(
        changes,
        [AccountChange::Disable, AccountChange::RevokeSessions]
    );
    // Nobody on leave gets a new account.
    assert!(diff("m365", d.systems.get("m365"), None).is_empty());
    let back = person(EventKind::Hire, &[], &[]);
    let d = desired(&back, &policy, &[], NOW);
    let disabled = Held {
        active: false,
        ..held
    };
    let changes: Vec<AccountChange> = diff("m365", d.systems.get("m365"), Some(&disabled))
        .into_iter()
        .map(|o| o.change)
        .collect();
    assert_eq!(changes, [AccountChange::Enable]);
}

#[test]
fn an_elevation_is_granted_until_it_expires() {
    let policy = Policy::parse(POLICY).unwrap();
    let p = person(EventKind::Hire, &[], &[]);
    let elevation = Elevation {
        grant: "jit_1".into(),
        elevation: "m365-global-admin".into(),
        system: "m365".into(),
        entitlement: Entitlement::Role("Global Administrator".into()),
        expires_at: NOW + time::Duration::hours(1),
    };
    let held = Held {
        active: true,
        entitlements: [group("All staff"), Entitlement::License("SPE_E3".into())].into(),
    };
    let live = desired(&p, &policy, std::slice::from_ref(&elevation), NOW);
    let ops = diff("m365", live.systems.get("m365"), Some(&held));
    assert_eq!(ops.len(), 1);
    assert_eq!(ops[0].area, ProcessArea::ElevatedAccess);
    let later = NOW + time::Duration::hours(2);
    let expired = desired(&p, &policy, std::slice::from_ref(&elevation), later);
    let mut holding = held.clone();
    holding
        .entitlements
        .insert(Entitlement::Role("Global Administrator".into()));
    let ops = diff("m365", expired.systems.get("m365"), Some(&holding));
    assert_eq!(ops.len(), 1);
    assert_eq!(
        ops[0].change,
        AccountChange::Remove(Entitlement::Role("Global Administrator".into()))
    );
    assert_eq!(ops[0].area, ProcessArea::Revocation);
}

#[test]
fn a_template_change_shows_who_gains_and_loses() {
    let before = Policy::parse(POLICY).unwrap();
    let after =
        Policy::parse(&POLICY.replace(r#"location eq "Berlin""#, r#"location eq "Madrid""#))
            .unwrap();
    let berlin = person(
        EventKind::Hire,
        &[("department", "Sales"), ("location", "Berlin")],
        &[],
    );
    let mut madrid = person(
        EventKind::Hire,
        &[("department", "Sales"), ("location", "Madrid")],
        &[],
    );
    madrid.key = "E2".into();
    let paris = {
        let mut p = person(
            EventKind::Hire,
            &[("department", "Sales"), ("location", "Paris")],
            &[],
        );
        p.key = "E3".into();
        p
    };
    let people = [(&berlin, &[][..]), (&madrid, &[][..]), (&paris, &[][..])];
    let out = impact(people, &before, &after, NOW);
    assert_eq!(out.len(), 2, "Paris is unaffected: {out:?}");
    assert_eq!(out[0].person, "E1");
    assert_eq!(out[0].loses, ["crm: account", "crm: group \"Sales EU\""]);
    assert!(out[0].gains.is_empty());
    assert_eq!(out[1].person, "E2");
    assert_eq!(out[1].gains.len(), 2);
}

#[test]
fn drift_finds_orphans_leavers_and_unapproved_grants() {
    let policy = Policy::parse(POLICY).unwrap();
    let active = person(EventKind::Hire, &[], &[]);
    let want = desired(&active, &policy, &[], NOW)
        .systems
        .get("m365")
        .cloned();
    let people: BTreeMap<String, (PersonStatus, Option<gatehouse_identity::SystemDesire>)> = [
        ("E1".to_owned(), (PersonStatus::Active, want)),
        ("E9".to_owned(), (PersonStatus::Terminated, None)),
    ]
    .into();
    let fine = Held {
        active: true,
        entitlements: [group("All staff"), Entitlement::License("SPE_E3".into())].into(),
    };
    let mut extra = fine.clone();
    extra.entitlements.insert(group("Domain admins"));
    let accounts = vec![
        (
            "a1".to_owned(),
            Some("E1".to_owned()),
            "e1@x".to_owned(),
            extra,
        ),
        ("a2".to_owned(), None, "stranger@x".to_owned(), fine.clone()),
        (
            "a3".to_owned(),
            Some("E9".to_owned()),
            "gone@x".to_owned(),
            Held {
                active: true,
                entitlements: BTreeSet::new(),
            },
        ),
    ];
    let found = drift("m365", &people, &accounts);
    assert_eq!(found.len(), 3, "{found:?}");
    assert!(
        matches!(&found[0], Drift::Unapproved { remove, .. } if remove == &[AccountChange::Remove(group("Domain admins"))])
    );
    assert!(matches!(&found[1], Drift::Orphan { user_name, .. } if user_name == "stranger@x"));
    assert!(
        matches!(&found[2], Drift::LeaverActive { remaining, .. } if remaining == &[AccountChange::Disable])
    );
}

#[test]
fn desired_grants_serialise_to_json_and_back() {
    let policy = Policy::parse(POLICY).unwrap();
    let p = person(
        EventKind::Hire,
        &[("department", "Sales"), ("location", "Paris")],
        &["finance-approver"],
    );
    let d = desired(&p, &policy, &[], NOW);
    let json = serde_json::to_value(&d).unwrap();
    assert_eq!(
        json["systems"]["crm"]["entitlements"][0]["entitlement"]["group"],
        "Sales EU"
    );
    let back: gatehouse_identity::Desired = serde_json::from_value(json).unwrap();
    assert_eq!(back, d);
}
