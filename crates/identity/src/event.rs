//! Lifecycle events and how they change a person.
//!
//! Application is deterministic: a person is the fold of their events in
//! the order `(occurred_at, id)`, so replaying the same events, whatever
//! order they arrived in, gives the same person ([`Person::replay`]). An
//! event that arrives late (older than the last one applied) makes the
//! caller replay; one that arrives in order is applied on top
//! ([`Person::apply`]).

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::person::{DATE_ATTRIBUTES, Lineage, Person, PersonKind, PersonStatus, is_attribute};

/// What happened to a person.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EventKind {
    /// A joiner (or a rehire of someone who left).
    Hire,
    /// A mover: a transfer, a role change, or any change of attributes.
    Update,
    /// A leave of absence begins.
    LeaveOfAbsence,
    /// A leave of absence ends.
    Return,
    /// A leaver.
    Terminate,
    /// A contract reached its end date.
    ContractEnd,
}

impl EventKind {
    /// All kinds.
    pub const ALL: [EventKind; 6] = [
        Self::Hire,
        Self::Update,
        Self::LeaveOfAbsence,
        Self::Return,
        Self::Terminate,
        Self::ContractEnd,
    ];

    /// The name as written in events.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Hire => "hire",
            Self::Update => "update",
            Self::LeaveOfAbsence => "leave_of_absence",
            Self::Return => "return",
            Self::Terminate => "terminate",
            Self::ContractEnd => "contract_end",
        }
    }

    /// Parses a name (`hire`, `transfer` and `role_change` mean `update`,
    /// `leave` means `leave_of_absence`, `termination` means `terminate`).
    pub fn parse(text: &str) -> Option<Self> {
        let text = text.trim().to_ascii_lowercase();
        match text.as_str() {
            "transfer" | "role_change" | "mover" => Some(Self::Update),
            "leave" => Some(Self::LeaveOfAbsence),
            "termination" | "leaver" => Some(Self::Terminate),
            "joiner" | "rehire" => Some(Self::Hire),
            _ => Self::ALL.into_iter().find(|k| k.as_str() == text),
        }
    }

    /// Where the kind sorts among events of the same instant.
    pub fn rank(self) -> u8 {
        match self {
            Self::Hire => 0,
            Self::Update => 1,
            Self::LeaveOfAbsence => 2,
            Self::Return => 3,
            Self::Terminate | Self::ContractEnd => 4,
        }
    }

    /// Whether this event may be the first one of a person.
    pub fn may_create(self) -> bool {
        matches!(self, Self::Hire | Self::Update)
    }
}

/// One lifecycle event from a source.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LifecycleEvent {
    /// Unique per tenant: a repeated id is the same event (deduplicated).
    pub id: String,
    /// The person's key in the tenant.
    pub person: String,
    /// What happened.
    pub kind: EventKind,
    /// Who says so (`hr:bamboohr`, `scim`, `api`, `csv`).
    pub source: String,
    /// When it happened (not when it arrived).
    #[serde(with = "time::serde::rfc3339")]
    pub occurred_at: OffsetDateTime,
    /// Canonical attributes to set; `null` clears one.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub attributes: BTreeMap<String, Option<String>>,
    /// The person's kind, when the source knows it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub person_kind: Option<PersonKind>,
    /// The role templates assigned by name; replaces the earlier set when
    /// given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub roles: Option<BTreeSet<String>>,
}

/// Why an event is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {reason}")]
pub struct EventError {
    /// The field at fault.
    pub field: String,
    /// What is wrong, in words the sender can act on.
    pub reason: String,
}

impl EventError {
    fn new(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

const MAX_KEY: usize = 256;
const MAX_VALUE: usize = 1024;

fn check_text(field: &str, value: &str, max: usize) -> Result<(), EventError> {
    if value.trim().is_empty() {
        return Err(EventError::new(field, "must not be empty"));
    }
    if value.len() > max {
        return Err(EventError::new(
            field,
            format!("is longer than {max} bytes"),
        ));
    }
    if value.chars().any(char::is_control) {
        return Err(EventError::new(
            field,
            "must not contain control characters",
        ));
    }
    Ok(())
}

/// Whether `text` is a calendar date `YYYY-MM-DD`.
pub fn is_date(text: &str) -> bool {
    let format = time::macros::format_description!("[year]-[month]-[day]");
    time::Date::parse(text, format).is_ok()
}

impl LifecycleEvent {
    /// Checks the event on its own: ids and key present and printable,
    /// attribute names canonical, values bounded, dates real dates.
    pub fn validate(&self) -> Result<(), EventError> {
        check_text("id", &self.id, MAX_KEY)?;
        check_text("person", &self.person, MAX_KEY)?;
        check_text("source", &self.source, MAX_KEY)?;
        for (name, value) in &self.attributes {
            if !is_attribute(name) {
                return Err(EventError::new(
                    format!("attributes.{name}"),
                    format!(
                        "is not a canonical attribute (one of {})",
                        crate::person::ATTRIBUTES.join(", ")
                    ),
                ));
            }
            if let Some(value) = value {
                check_text(&format!("attributes.{name}"), value, MAX_VALUE)?;
                if DATE_ATTRIBUTES.contains(&name.as_str()) && !is_date(value) {
                    return Err(EventError::new(
                        format!("attributes.{name}"),
                        format!("`{value}` is not a date (YYYY-MM-DD)"),
                    ));
                }
            }
        }
        if let Some(roles) = &self.roles {
            for role in roles {
                check_text("roles", role, MAX_KEY)?;
            }
        }
        Ok(())
    }

    /// The fold's order: time, then the kind (at one instant a hire comes
    /// before an update, which comes before a leave, a return and a
    /// termination), then the id.
    pub fn order(&self) -> (OffsetDateTime, u8, &str) {
        (self.occurred_at, self.kind.rank(), self.id.as_str())
    }
}

impl Person {
    /// A person from their first event, which must be a hire or an update.
    pub fn new(event: &LifecycleEvent) -> Result<Self, EventError> {
        if !event.kind.may_create() {
            return Err(EventError::new(
                "person",
                format!(
                    "no person `{}` is known here; their first event must be a hire or an update, not `{}`",
                    event.person,
                    event.kind.as_str()
                ),
            ));
        }
        let mut person = Self {
            key: event.person.clone(),
            kind: event.person_kind.unwrap_or_default(),
            status: PersonStatus::Active,
            status_since: event.occurred_at,
            attributes: BTreeMap::new(),
            lineage: BTreeMap::new(),
            roles: BTreeSet::new(),
            events: 0,
            last_event_at: event.occurred_at,
            last_kind: event.kind,
            last_event: String::new(),
        };
        person.apply(event);
        Ok(person)
    }

    /// Folds `events` (any order) into a person. `None` when there are
    /// none; an error when the earliest cannot create a person.
    pub fn replay(events: &[LifecycleEvent]) -> Result<Option<Self>, EventError> {
        let mut sorted: Vec<&LifecycleEvent> = events.iter().collect();
        sorted.sort_by(|a, b| a.order().cmp(&b.order()));
        let mut iter = sorted.into_iter();
        let Some(first) = iter.next() else {
            return Ok(None);
        };
        let mut person = Self::new(first)?;
        for event in iter {
            person.apply(event);
        }
        Ok(Some(person))
    }

    /// Whether `event` sorts after every event applied so far, so applying
    /// it on top equals a replay.
    pub fn applies_in_order(&self, event: &LifecycleEvent) -> bool {
        event.order()
            > (
                self.last_event_at,
                self.last_kind.rank(),
                self.last_event.as_str(),
            )
    }

    /// Applies one event on top. Status changes that do not fit (a return
    /// while not on leave) leave the status as it is; attributes still
    /// apply.
    pub fn apply(&mut self, event: &LifecycleEvent) {
        for (name, value) in &event.attributes {
            match value {
                Some(value) => {
                    self.attributes.insert(name.clone(), value.clone());
                }
                None => {
                    self.attributes.remove(name);
                }
            }
            self.lineage.insert(
                name.clone(),
                Lineage {
                    source: event.source.clone(),
                    event: event.id.clone(),
                    at: event.occurred_at,
                },
            );
        }
        if let Some(kind) = event.person_kind {
            self.kind = kind;
        }
        if let Some(roles) = &event.roles {
            self.roles = roles.clone();
        }
        let next = match (event.kind, self.status) {
            (EventKind::Hire, _) => PersonStatus::Active,
            (EventKind::Update, status) => status,
            (EventKind::LeaveOfAbsence, PersonStatus::Active) => PersonStatus::OnLeave,
            (EventKind::Return, PersonStatus::OnLeave) => PersonStatus::Active,
            (EventKind::Terminate | EventKind::ContractEnd, _) => PersonStatus::Terminated,
            (_, status) => status,
        };
        if next != self.status || self.events == 0 {
            self.status = next;
            self.status_since = event.occurred_at;
        }
        self.events += 1;
        self.last_event_at = event.occurred_at;
        self.last_kind = event.kind;
        self.last_event = event.id.clone();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn at(secs: i64) -> OffsetDateTime {
        OffsetDateTime::from_unix_timestamp(1_780_000_000 + secs)
            .unwrap_or(OffsetDateTime::UNIX_EPOCH)
    }

    fn event(
        id: &str,
        kind: EventKind,
        secs: i64,
        attrs: &[(&str, Option<&str>)],
    ) -> LifecycleEvent {
        LifecycleEvent {
            id: id.to_owned(),
            person: "E1".to_owned(),
            kind,
            source: "hr".to_owned(),
            occurred_at: at(secs),
            attributes: attrs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), v.map(str::to_owned)))
                .collect(),
            person_kind: None,
            roles: None,
        }
    }

    #[test]
    fn a_leaver_is_terminated_and_keeps_lineage() {
        let events = [
            event("1", EventKind::Hire, 0, &[("department", Some("Sales"))]),
            event(
                "2",
                EventKind::Update,
                10,
                &[("department", Some("Finance"))],
            ),
            event("3", EventKind::Terminate, 20, &[]),
        ];
        let person = Person::replay(&events).ok().flatten();
        let person = person.as_ref();
        assert_eq!(person.map(|p| p.status), Some(PersonStatus::Terminated));
        assert_eq!(
            person.and_then(|p| p.attribute("department")),
            Some("Finance")
        );
        assert_eq!(
            person.map(|p| p.lineage["department"].event.as_str()),
            Some("2")
        );
        assert_eq!(person.map(|p| p.status_since), Some(at(20)));
    }

    #[test]
    fn leave_and_return_and_rehire() {
        let mut p = Person::new(&event("1", EventKind::Hire, 0, &[])).ok();
        let p = p.as_mut().map(|p| {
            p.apply(&event("2", EventKind::Return, 5, &[]));
            assert_eq!(
                p.status,
                PersonStatus::Active,
                "a return while active changes nothing"
            );
            p.apply(&event("3", EventKind::LeaveOfAbsence, 10, &[]));
            assert_eq!(p.status, PersonStatus::OnLeave);
            p.apply(&event("4", EventKind::Return, 20, &[]));
            assert_eq!(p.status, PersonStatus::Active);
            p.apply(&event("5", EventKind::ContractEnd, 30, &[]));
            assert_eq!(p.status, PersonStatus::Terminated);
            p.apply(&event("6", EventKind::Hire, 40, &[]));
            p.status
        });
        assert_eq!(p, Some(PersonStatus::Active));
    }

    #[test]
    fn at_one_instant_a_hire_comes_before_a_termination() {
        let events = [
            event("z-hire", EventKind::Hire, 0, &[]),
            event("a-leave", EventKind::Terminate, 0, &[]),
        ];
        let person = Person::replay(&events).ok().flatten();
        assert_eq!(person.map(|p| p.status), Some(PersonStatus::Terminated));
    }

    #[test]
    fn the_first_event_must_create() {
        let err = Person::new(&event("1", EventKind::Terminate, 0, &[])).err();
        assert!(err.is_some_and(|e| e.reason.contains("first event must be a hire")));
    }

    #[test]
    fn validation_names_the_field() {
        let bad = event("1", EventKind::Hire, 0, &[("shoe_size", Some("9"))]);
        assert_eq!(
            bad.validate().err().map(|e| e.field),
            Some("attributes.shoe_size".to_owned())
        );
        let bad = event(
            "1",
            EventKind::Hire,
            0,
            &[("contract_end", Some("31/12/2026"))],
        );
        assert!(
            bad.validate()
                .err()
                .is_some_and(|e| e.reason.contains("not a date"))
        );
        let mut bad = event("1", EventKind::Hire, 0, &[]);
        bad.person = "  ".to_owned();
        assert_eq!(
            bad.validate().err().map(|e| e.field),
            Some("person".to_owned())
        );
        assert!(
            event(
                "1",
                EventKind::Hire,
                0,
                &[("contract_end", Some("2026-12-31"))]
            )
            .validate()
            .is_ok()
        );
    }

    #[test]
    fn kinds_parse_with_their_synonyms() {
        assert_eq!(EventKind::parse("Transfer"), Some(EventKind::Update));
        assert_eq!(EventKind::parse("termination"), Some(EventKind::Terminate));
        assert_eq!(
            EventKind::parse("contract_end"),
            Some(EventKind::ContractEnd)
        );
        assert_eq!(EventKind::parse("promote"), None);
    }

    fn arb_kind() -> impl Strategy<Value = EventKind> {
        prop::sample::select(EventKind::ALL.to_vec())
    }

    proptest! {
        /// Replaying the same events in any arrival order gives the same
        /// person, and applying in order equals replaying.
        #[test]
        fn replay_is_order_independent(
            specs in prop::collection::vec((arb_kind(), 0i64..50, prop::option::of("[a-c]{1,2}")), 1..12),
            seed in any::<u64>(),
        ) {
            let mut events: Vec<LifecycleEvent> = specs
                .iter()
                .enumerate()
                .map(|(i, (kind, secs, dept))| {
                    let attrs = [("department", dept.as_deref())];
                    event(&format!("e{i}"), *kind, *secs, &attrs)
                })
                .collect();
            let first = Person::replay(&events);
            // A deterministic shuffle.
            let n = events.len();
            let mut state = seed;
            for i in (1..n).rev() {
                state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
                let j = usize::try_from(state >> 33).unwrap_or(0) % (i + 1);
                events.swap(i, j);
            }
            let second = Person::replay(&events);
            prop_assert_eq!(&first, &second);
            // Incremental application in order equals the replay.
            events.sort_by(|a, b| a.order().cmp(&b.order()));
            if let Ok(Some(replayed)) = first {
                let mut person = Person::new(&events[0]).ok();
                for e in &events[1..] {
                    if let Some(p) = person.as_mut() {
                        prop_assert!(p.applies_in_order(e));
                        p.apply(e);
                    }
                }
                prop_assert_eq!(person, Some(replayed));
            }
        }
    }
}
