//! People: client users, MSP staff assigned to a client, contractors.
//!
//! A person is the fold of their lifecycle events ([`crate::event`]). Their
//! attributes use one canonical schema ([`ATTRIBUTES`]) whatever the source
//! calls them, and each attribute remembers its [`Lineage`].

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

/// The canonical attributes. Sources map their own names onto these.
pub const ATTRIBUTES: &[&str] = &[
    "given_name",
    "family_name",
    "display_name",
    "email",
    "user_name",
    "department",
    "title",
    "manager",
    "location",
    "employment_type",
    "start_date",
    "end_date",
    "contract_end",
];

/// The attributes that hold a calendar date (`YYYY-MM-DD`).
pub const DATE_ATTRIBUTES: &[&str] = &["start_date", "end_date", "contract_end"];

/// Whether `name` is a canonical attribute.
pub fn is_attribute(name: &str) -> bool {
    ATTRIBUTES.contains(&name)
}

/// Who the person is to the MSP.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Serialize, Deserialize,
)]
#[serde(rename_all = "snake_case")]
pub enum PersonKind {
    /// Someone who works for the client.
    #[default]
    ClientUser,
    /// A member of the MSP's team assigned to the client.
    MspStaff,
    /// A contractor, usually with a contract end date.
    Contractor,
}

impl PersonKind {
    /// The name as written in events and rules.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientUser => "client_user",
            Self::MspStaff => "msp_staff",
            Self::Contractor => "contractor",
        }
    }
}

/// Where a person is in their lifecycle.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum PersonStatus {
    /// Working: holds what their roles justify.
    Active,
    /// On leave of absence: accounts disabled, entitlements kept for the
    /// return.
    OnLeave,
    /// Left (termination or contract end): holds nothing anywhere.
    Terminated,
}

impl PersonStatus {
    /// The name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Active => "active",
            Self::OnLeave => "on_leave",
            Self::Terminated => "terminated",
        }
    }
}

/// Which source set an attribute, by which event, when.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Lineage {
    /// The source (`hr:bamboohr`, `scim`, `api`, `csv`).
    pub source: String,
    /// The event that set it.
    pub event: String,
    /// When that event happened.
    #[serde(with = "time::serde::rfc3339")]
    pub at: OffsetDateTime,
}

/// A person in one tenant.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Person {
    /// The key the sources use for them (an HR employee number, a SCIM
    /// `externalId`); unique in the tenant.
    pub key: String,
    /// Who they are to the MSP.
    pub kind: PersonKind,
    /// Where they are in their lifecycle.
    pub status: PersonStatus,
    /// Since when.
    #[serde(with = "time::serde::rfc3339")]
    pub status_since: OffsetDateTime,
    /// Canonical attributes (only those set).
    pub attributes: BTreeMap<String, String>,
    /// Each attribute's lineage.
    pub lineage: BTreeMap<String, Lineage>,
    /// Role templates assigned by name (RBAC), on top of those their
    /// attributes select (ABAC).
    pub roles: BTreeSet<String>,
    /// How many events made them.
    pub events: u64,
    /// The last event applied: its time and id (the fold's order).
    #[serde(with = "time::serde::rfc3339")]
    pub last_event_at: OffsetDateTime,
    /// The kind of the last event applied.
    pub last_kind: crate::event::EventKind,
    /// The id of the last event applied.
    pub last_event: String,
}

impl Person {
    /// An attribute's value.
    pub fn attribute(&self, name: &str) -> Option<&str> {
        self.attributes.get(name).map(String::as_str)
    }

    /// The name to show: `display_name`, else given and family name, else
    /// the key.
    pub fn display_name(&self) -> String {
        if let Some(name) = self.attribute("display_name") {
            return name.to_owned();
        }
        let parts: Vec<&str> = ["given_name", "family_name"]
            .iter()
            .filter_map(|a| self.attribute(a))
            .collect();
        if parts.is_empty() {
            self.key.clone()
        } else {
            parts.join(" ")
        }
    }

    /// The sign-in name: `user_name`, else `email`, else the key.
    pub fn user_name(&self) -> String {
        self.attribute("user_name")
            .or_else(|| self.attribute("email"))
            .unwrap_or(&self.key)
            .to_owned()
    }

    /// Whether this person's contract (or employment) has ended by `today`
    /// (`YYYY-MM-DD`) while they are not yet terminated.
    pub fn contract_ended(&self, today: &str) -> Option<String> {
        if self.status == PersonStatus::Terminated {
            return None;
        }
        self.ends_on().filter(|date| date.as_str() < today)
    }

    /// The earliest of `contract_end` and `end_date`, if either is set.
    pub fn ends_on(&self) -> Option<String> {
        ["contract_end", "end_date"]
            .iter()
            .filter_map(|a| self.attribute(a))
            .min()
            .map(str::to_owned)
    }
}
