//! Client tenants: who they are, where their data lives, and the lifecycle
//! they move through.
//!
//! ```text
//!  provisioning ──activate──► active ◄──activate── suspended
//!       │                      │  └────suspend────►   │
//!       │                      └─offboard─► offboarding ◄─offboard─┘
//!       └──────────delete──────────────────►  deleted  ◄──delete── (suspended, offboarding)
//! ```
//!
//! An active tenant cannot be deleted directly: deletion destroys the
//! tenant's data key (crypto-shredding) and cannot be undone, so it has to be
//! suspended or offboarded first.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use utoipa::ToSchema;

use crate::error::DomainError;
use crate::id::TenantId;

/// A validated tenant slug: 3–63 characters of `a-z`, `0-9` and `-`,
/// starting with a letter, not ending with `-`, without `--`. It is used in
/// URLs (`/scim/v2/{slug}/`), so it follows the rules of a DNS label.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, ToSchema)]
#[schema(value_type = String, pattern = "^[a-z][a-z0-9-]{1,61}[a-z0-9]$", example = "northwind-legal")]
pub struct TenantSlug(String);

impl TenantSlug {
    /// Validates and wraps a slug.
    /// `msp`: the conventional slug of the MSP's own tenant (the
    /// configuration's `msp_tenant` default).
    pub fn msp() -> Self {
        Self("msp".to_owned())
    }

    pub fn parse(text: &str) -> Result<Self, DomainError> {
        let invalid = |reason: &str| DomainError::invalid("slug", reason.to_string());
        if text.len() < 3 || text.len() > 63 {
            return Err(invalid("must be 3 to 63 characters long"));
        }
        if !text
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
        {
            return Err(invalid(
                "may contain only lowercase letters a-z, digits and '-'",
            ));
        }
        if !text.starts_with(|c: char| c.is_ascii_lowercase()) {
            return Err(invalid("must start with a letter"));
        }
        if text.ends_with('-') || text.contains("--") {
            return Err(invalid("must not end with '-' or contain '--'"));
        }
        Ok(Self(text.to_owned()))
    }

    /// The slug as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for TenantSlug {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for TenantSlug {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A human-readable name: 1–200 characters after trimming, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
#[schema(value_type = String, example = "Northwind Legal LLP")]
pub struct DisplayName(String);

impl DisplayName {
    /// Validates, trims and wraps a display name.
    pub fn parse(text: &str) -> Result<Self, DomainError> {
        let trimmed = text.trim();
        if trimmed.is_empty() {
            return Err(DomainError::invalid("display_name", "must not be empty"));
        }
        if trimmed.chars().count() > 200 {
            return Err(DomainError::invalid(
                "display_name",
                "must be at most 200 characters",
            ));
        }
        if trimmed.chars().any(char::is_control) {
            return Err(DomainError::invalid(
                "display_name",
                "must not contain control characters",
            ));
        }
        Ok(Self(trimmed.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for DisplayName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The data-residency region a tenant's data must stay in, such as `eu`,
/// `us`, `uk` or `eu-central`: a lowercase two-letter area, optionally
/// followed by `-` and a more specific part, 2–32 characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, ToSchema)]
#[schema(value_type = String, pattern = "^[a-z]{2}(-[a-z0-9]+)*$", example = "eu")]
pub struct Region(String);

impl Region {
    /// Validates and wraps a region code.
    pub fn parse(text: &str) -> Result<Self, DomainError> {
        let invalid = || {
            DomainError::invalid(
                "region",
                "must be a lowercase region code such as `eu`, `us`, `uk` or `eu-central`",
            )
        };
        if text.len() < 2 || text.len() > 32 {
            return Err(invalid());
        }
        let mut parts = text.split('-');
        let area = parts.next().unwrap_or_default();
        if area.len() != 2 || !area.bytes().all(|b| b.is_ascii_lowercase()) {
            return Err(invalid());
        }
        for part in parts {
            if part.is_empty()
                || !part
                    .bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
            {
                return Err(invalid());
            }
        }
        Ok(Self(text.to_owned()))
    }

    /// The region code as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for Region {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Where a tenant is in its life with the MSP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TenantState {
    /// Being set up; not yet served.
    Provisioning,
    /// Served normally.
    Active,
    /// Temporarily not served (unpaid invoice, incident); data kept.
    Suspended,
    /// The contract is ending; access is being handed back and removed.
    Offboarding,
    /// Gone: the data key is destroyed, only a tombstone remains.
    Deleted,
}

impl TenantState {
    /// All states, in lifecycle order.
    pub const ALL: [TenantState; 5] = [
        Self::Provisioning,
        Self::Active,
        Self::Suspended,
        Self::Offboarding,
        Self::Deleted,
    ];

    /// The state's name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Provisioning => "provisioning",
            Self::Active => "active",
            Self::Suspended => "suspended",
            Self::Offboarding => "offboarding",
            Self::Deleted => "deleted",
        }
    }

    /// The state a lifecycle action leads to from this one, or why it cannot.
    pub fn apply(self, action: TenantAction) -> Result<TenantState, DomainError> {
        use TenantAction as A;
        use TenantState as S;
        let next = match (self, action) {
            (S::Provisioning | S::Suspended, A::Activate) => S::Active,
            (S::Active, A::Suspend) => S::Suspended,
            (S::Active | S::Suspended, A::Offboard) => S::Offboarding,
            (S::Provisioning | S::Suspended | S::Offboarding, A::Delete) => S::Deleted,
            (from, action) => {
                return Err(DomainError::InvalidTransition {
                    from,
                    action: action.as_str(),
                });
            }
        };
        Ok(next)
    }
}

impl fmt::Display for TenantState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for TenantState {
    type Err = DomainError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|s| s.as_str() == text).ok_or_else(|| {
            DomainError::invalid(
                "state",
                format!("`{text}` is not one of provisioning, active, suspended, offboarding, deleted"),
            )
        })
    }
}

/// A lifecycle action on a tenant.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TenantAction {
    /// Start (or resume) serving the tenant.
    Activate,
    /// Stop serving the tenant for now.
    Suspend,
    /// Begin ending the relationship.
    Offboard,
    /// Destroy the tenant's key and data.
    Delete,
}

impl TenantAction {
    /// The action's name, as in the API path.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Activate => "activate",
            Self::Suspend => "suspend",
            Self::Offboard => "offboard",
            Self::Delete => "delete",
        }
    }
}

/// A client organisation the MSP serves.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Tenant {
    /// The tenant's id.
    pub id: TenantId,
    /// The tenant's unique slug (unique among tenants that are not deleted).
    pub slug: TenantSlug,
    /// The tenant's name as people know it.
    pub display_name: DisplayName,
    /// Where the tenant's data must reside.
    pub region: Region,
    /// Where the tenant is in its lifecycle.
    pub state: TenantState,
    /// Incremented by every change; guards against lost updates.
    pub version: i64,
    /// When the tenant was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When the tenant last changed.
    #[serde(with = "time::serde::rfc3339")]
    pub updated_at: OffsetDateTime,
}

impl Tenant {
    /// A new tenant record, not yet stored.
    pub fn new(
        slug: TenantSlug,
        display_name: DisplayName,
        region: Region,
        state: TenantState,
        now: OffsetDateTime,
    ) -> Result<Self, DomainError> {
        if !matches!(state, TenantState::Provisioning | TenantState::Active) {
            return Err(DomainError::invalid(
                "state",
                "a new tenant starts as `provisioning` or `active`",
            ));
        }
        Ok(Self {
            id: TenantId::generate(now),
            slug,
            display_name,
            region,
            state,
            version: 1,
            created_at: now,
            updated_at: now,
        })
    }

    /// Changes the region. Data residency is fixed once a tenant is served,
    /// so this is only allowed while the tenant is being provisioned.
    pub fn change_region(&mut self, region: Region) -> Result<(), DomainError> {
        if region == self.region {
            return Ok(());
        }
        if self.state != TenantState::Provisioning {
            return Err(DomainError::invalid(
                "region",
                "can only change while the tenant is provisioning; data residency is fixed once it is served",
            ));
        }
        self.region = region;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slugs_follow_dns_label_rules() {
        for good in ["acme", "northwind-legal", "a1b", "x".repeat(63).as_str()] {
            assert!(TenantSlug::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "ab",
            "Acme",
            "1acme",
            "acme-",
            "ac--me",
            "ac_me",
            "acmé",
            &"x".repeat(64),
            "",
        ] {
            assert!(TenantSlug::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn display_names_are_trimmed_and_bounded() {
        assert_eq!(
            DisplayName::parse("  Acme Ltd ").unwrap().as_str(),
            "Acme Ltd"
        );
        assert!(DisplayName::parse("   ").is_err());
        assert!(DisplayName::parse("a\u{0}b").is_err());
        assert!(DisplayName::parse(&"é".repeat(201)).is_err());
        assert!(DisplayName::parse(&"é".repeat(200)).is_ok());
    }

    #[test]
    fn regions_are_codes() {
        for good in ["eu", "us", "eu-central", "au-syd1"] {
            assert!(Region::parse(good).is_ok(), "{good}");
        }
        for bad in ["e", "EU", "eur", "eu-", "eu--x", "eu_central", ""] {
            assert!(Region::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn lifecycle_allows_exactly_the_documented_transitions() {
        use TenantAction::*;
        use TenantState::*;
        let allowed = [
            (Provisioning, Activate, Active),
            (Suspended, Activate, Active),
            (Active, Suspend, Suspended),
            (Active, Offboard, Offboarding),
            (Suspended, Offboard, Offboarding),
            (Provisioning, Delete, Deleted),
            (Suspended, Delete, Deleted),
            (Offboarding, Delete, Deleted),
        ];
        for from in TenantState::ALL {
            for action in [Activate, Suspend, Offboard, Delete] {
                let expected = allowed
                    .iter()
                    .find(|(f, a, _)| *f == from && *a == action)
                    .map(|t| t.2);
                match (from.apply(action), expected) {
                    (Ok(next), Some(want)) => assert_eq!(next, want),
                    (Err(DomainError::InvalidTransition { .. }), None) => {}
                    (got, want) => panic!("{from} {action:?}: got {got:?}, want {want:?}"),
                }
            }
        }
    }

    #[test]
    fn region_is_fixed_once_served() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let slug = TenantSlug::parse("acme").unwrap();
        let name = DisplayName::parse("Acme").unwrap();
        let eu = Region::parse("eu").unwrap();
        let us = Region::parse("us").unwrap();
        let mut t = Tenant::new(
            slug.clone(),
            name.clone(),
            eu.clone(),
            TenantState::Provisioning,
            now,
        )
        .unwrap();
        t.change_region(us.clone()).unwrap();
        assert_eq!(t.region, us);
        let mut t = Tenant::new(slug, name, eu, TenantState::Active, now).unwrap();
        assert!(t.change_region(us).is_err());
        assert!(
            Tenant::new(
                t.slug.clone(),
                t.display_name.clone(),
                t.region.clone(),
                TenantState::Deleted,
                now
            )
            .is_err()
        );
    }
}
