//! From a person to the operations that bring a system in line.
//!
//! [`desired`] answers what a person should hold on each system and why
//! (least privilege: only what a template, rule or live elevation
//! justifies). [`diff`] compares that with what one system holds and
//! answers the operations, each in the process area that decides its gate:
//! a joiner's standard access is `joiner_access` (L1), a sensitive
//! entitlement `sensitive_entitlement` (L2), an elevation `elevated_access`
//! (L2), and every removal `revocation` (L0).

use std::collections::{BTreeMap, BTreeSet};

use gatehouse_core::gate::ProcessArea;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::person::{Person, PersonStatus};
use crate::policy::{Entitlement, Policy};

/// Why a person should hold something.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Reason {
    /// A role template that applies to them.
    Role {
        /// The template.
        id: String,
        /// Whether the template marks it sensitive.
        sensitive: bool,
    },
    /// A just-in-time elevation that has not expired.
    Elevation {
        /// The grant's id.
        grant: String,
        /// The elevation it grants.
        elevation: String,
        /// When it ends.
        #[serde(with = "time::serde::rfc3339")]
        until: OffsetDateTime,
    },
}

impl Reason {
    fn area(reasons: &[Reason]) -> ProcessArea {
        if reasons.iter().any(|r| {
            matches!(
                r,
                Reason::Role {
                    sensitive: false,
                    ..
                }
            )
        }) {
            ProcessArea::JoinerAccess
        } else if reasons.iter().any(|r| matches!(r, Reason::Role { .. })) {
            ProcessArea::SensitiveEntitlement
        } else {
            ProcessArea::ElevatedAccess
        }
    }
}

/// A live just-in-time grant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Elevation {
    /// The grant's id.
    pub grant: String,
    /// The elevation (policy id).
    pub elevation: String,
    /// The system.
    pub system: String,
    /// What it grants.
    pub entitlement: Entitlement,
    /// When it ends.
    #[serde(with = "time::serde::rfc3339")]
    pub expires_at: OffsetDateTime,
}

/// What a person should hold on one system.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SystemDesire {
    /// Whether the account should be enabled (false while on leave).
    pub enabled: bool,
    /// The entitlements, each with why. Serialised as a list of
    /// `{"entitlement": …, "why": […]}` (JSON object keys must be text).
    #[serde(with = "entitlement_list")]
    pub entitlements: BTreeMap<Entitlement, Vec<Reason>>,
}

mod entitlement_list {
    use std::collections::BTreeMap;

    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    use super::{Entitlement, Reason};

    #[derive(Serialize, Deserialize)]
    struct Item {
        entitlement: Entitlement,
        why: Vec<Reason>,
    }

    pub fn serialize<S: Serializer>(
        map: &BTreeMap<Entitlement, Vec<Reason>>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.collect_seq(map.iter().map(|(e, why)| Item {
            entitlement: e.clone(),
            why: why.clone(),
        }))
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<BTreeMap<Entitlement, Vec<Reason>>, D::Error> {
        Ok(Vec::<Item>::deserialize(d)?
            .into_iter()
            .map(|i| (i.entitlement, i.why))
            .collect())
    }
}

/// What a person should hold everywhere.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Desired {
    /// By system; a system not named: no account there.
    pub systems: BTreeMap<String, SystemDesire>,
}

/// A person's desired grants: nothing once terminated; accounts disabled
/// (entitlements kept) while on leave; otherwise what the templates that
/// apply and the live elevations justify.
pub fn desired(
    person: &Person,
    policy: &Policy,
    elevations: &[Elevation],
    now: OffsetDateTime,
) -> Desired {
    let mut out = Desired::default();
    if person.status == PersonStatus::Terminated {
        return out;
    }
    let enabled = person.status == PersonStatus::Active;
    for role in policy.roles.iter().filter(|r| r.applies_to(person)) {
        for grant in &role.grants {
            let Some(entitlement) = grant.entitlement() else {
                continue;
            };
            let system = out.systems.entry(grant.system.clone()).or_default();
            system.enabled = enabled;
            system
                .entitlements
                .entry(entitlement)
                .or_default()
                .push(Reason::Role {
                    id: role.id.clone(),
                    sensitive: role.sensitive || grant.sensitive,
                });
        }
    }
    for e in elevations.iter().filter(|e| e.expires_at > now) {
        let system = out.systems.entry(e.system.clone()).or_default();
        system.enabled = enabled;
        system
            .entitlements
            .entry(e.entitlement.clone())
            .or_default()
            .push(Reason::Elevation {
                grant: e.grant.clone(),
                elevation: e.elevation.clone(),
                until: e.expires_at,
            });
    }
    out
}

/// What one system holds for one account.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Held {
    /// Whether the account is enabled.
    pub active: bool,
    /// What it holds.
    pub entitlements: BTreeSet<Entitlement>,
}

/// One change to one account.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(tag = "op", content = "value", rename_all = "snake_case")]
pub enum AccountChange {
    /// Create the account, enabled.
    Create,
    /// Enable it.
    Enable,
    /// Disable it (sign-in blocked).
    Disable,
    /// End every sign-in session (Graph `revokeSignInSessions`).
    RevokeSessions,
    /// Grant an entitlement.
    Add(Entitlement),
    /// Remove an entitlement.
    Remove(Entitlement),
}

impl std::fmt::Display for AccountChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Create => f.write_str("create the account"),
            Self::Enable => f.write_str("enable the account"),
            Self::Disable => f.write_str("disable the account"),
            Self::RevokeSessions => f.write_str("revoke sign-in sessions"),
            Self::Add(e) => write!(f, "add {e}"),
            Self::Remove(e) => write!(f, "remove {e}"),
        }
    }
}

/// One operation of a plan.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Operation {
    /// The system.
    pub system: String,
    /// The change.
    pub change: AccountChange,
    /// The process area that decides its gate.
    pub area: ProcessArea,
    /// Why (for a grant); empty for removals.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<Reason>,
}

/// The operations that bring `system` from `held` to `desire`, in the
/// order they must run: the account's state first when it is blocked
/// (disable, then end sessions, so nobody signs in again in between),
/// grants after it is created or enabled, removals before anything new.
pub fn diff(system: &str, desire: Option<&SystemDesire>, held: Option<&Held>) -> Vec<Operation> {
    let op = |change: AccountChange, area: ProcessArea, reasons: Vec<Reason>| Operation {
        system: system.to_owned(),
        change,
        area,
        reasons,
    };
    let mut ops = Vec::new();
    let empty = BTreeSet::new();
    let held_ents = held.map_or(&empty, |h| &h.entitlements);
    let wanted: BTreeMap<&Entitlement, &Vec<Reason>> = desire
        .map(|d| d.entitlements.iter().collect())
        .unwrap_or_default();
    let enabled = desire.is_some_and(|d| d.enabled);
    match held {
        Some(h) if h.active && !enabled => {
            ops.push(op(
                AccountChange::Disable,
                ProcessArea::Revocation,
                Vec::new(),
            ));
            ops.push(op(
                AccountChange::RevokeSessions,
                ProcessArea::Revocation,
                Vec::new(),
            ));
        }
        None if enabled => ops.push(op(
            AccountChange::Create,
            ProcessArea::JoinerAccess,
            Vec::new(),
        )),
        Some(h) if !h.active && enabled => {
            ops.push(op(
                AccountChange::Enable,
                ProcessArea::JoinerAccess,
                Vec::new(),
            ));
        }
        _ => {}
    }
    for ent in held_ents.iter().filter(|e| !wanted.contains_key(e)) {
        ops.push(op(
            AccountChange::Remove(ent.clone()),
            ProcessArea::Revocation,
            Vec::new(),
        ));
    }
    if held.is_some() || enabled {
        for (ent, reasons) in wanted.iter().filter(|(e, _)| !held_ents.contains(**e)) {
            ops.push(op(
                AccountChange::Add((*ent).clone()),
                Reason::area(reasons),
                (*reasons).clone(),
            ));
        }
    }
    ops
}

/// What a policy change does to one person.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Impact {
    /// The person's key.
    pub person: String,
    /// `system: entitlement` (or `system: account`) they would gain.
    pub gains: Vec<String>,
    /// What they would lose.
    pub loses: Vec<String>,
}

fn flat(desired: &Desired) -> BTreeSet<String> {
    desired
        .systems
        .iter()
        .flat_map(|(system, d)| {
            std::iter::once(format!("{system}: account"))
                .chain(d.entitlements.keys().map(move |e| format!("{system}: {e}")))
        })
        .collect()
}

/// Who gains and who loses what if `after` replaces `before`: only the
/// people whose desired grants change.
pub fn impact<'a>(
    people: impl IntoIterator<Item = (&'a Person, &'a [Elevation])>,
    before: &Policy,
    after: &Policy,
    now: OffsetDateTime,
) -> Vec<Impact> {
    people
        .into_iter()
        .filter_map(|(person, elevations)| {
            let old = flat(&desired(person, before, elevations, now));
            let new = flat(&desired(person, after, elevations, now));
            let gains: Vec<String> = new.difference(&old).cloned().collect();
            let loses: Vec<String> = old.difference(&new).cloned().collect();
            (!gains.is_empty() || !loses.is_empty()).then(|| Impact {
                person: person.key.clone(),
                gains,
                loses,
            })
        })
        .collect()
}

/// Something a system holds that nobody approved.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Drift {
    /// An account that belongs to no person Gatehouse knows.
    Orphan {
        /// The system.
        system: String,
        /// The system's id of the account.
        account: String,
        /// Its sign-in name.
        user_name: String,
    },
    /// A person who left still has an enabled account or entitlements.
    LeaverActive {
        /// The system.
        system: String,
        /// The person's key.
        person: String,
        /// What is still there.
        remaining: Vec<AccountChange>,
    },
    /// A grant no template, rule or elevation justifies (or an enabled
    /// account that should be disabled).
    Unapproved {
        /// The system.
        system: String,
        /// The person's key.
        person: String,
        /// What should go.
        remove: Vec<AccountChange>,
    },
}

/// The drift of one system, given each known person with what they should
/// hold there, and every account the system holds as
/// `(account id, external id, user name, held)`.
pub fn drift(
    system: &str,
    people: &BTreeMap<String, (PersonStatus, Option<SystemDesire>)>,
    accounts: &[(String, Option<String>, String, Held)],
) -> Vec<Drift> {
    let mut out = Vec::new();
    for (account, external, user_name, held) in accounts {
        let Some((status, desire)) = external.as_ref().and_then(|k| people.get(k)) else {
            out.push(Drift::Orphan {
                system: system.to_owned(),
                account: account.clone(),
                user_name: user_name.clone(),
            });
            continue;
        };
        let person = external.clone().unwrap_or_default();
        let removals: Vec<AccountChange> = diff(system, desire.as_ref(), Some(held))
            .into_iter()
            .filter(|op| {
                op.area == ProcessArea::Revocation && op.change != AccountChange::RevokeSessions
            })
            .map(|op| op.change)
            .collect();
        if removals.is_empty() {
            continue;
        }
        out.push(if *status == PersonStatus::Terminated {
            Drift::LeaverActive {
                system: system.to_owned(),
                person,
                remaining: removals,
            }
        } else {
            Drift::Unapproved {
                system: system.to_owned(),
                person,
                remove: removals,
            }
        });
    }
    out
}
