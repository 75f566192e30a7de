//! A tenant's access policy: role templates (RBAC) with attribute rules
//! (ABAC), and the entitlements people may hold just in time.
//!
//! Written as TOML an MSP engineer can read and review:
//!
//! ```toml
//! [[role]]
//! id = "staff"
//! title = "Every employee"
//! when = 'kind eq "client_user"'          # an attribute rule (optional)
//! grants = [
//!   { system = "m365", group = "All staff" },
//!   { system = "m365", license = "SPE_E3" },
//! ]
//!
//! [[role]]
//! id = "sales-eu"
//! title = "Sales in the EU"
//! when = 'department eq "Sales" and (location eq "Paris" or location eq "Berlin")'
//! grants = [{ system = "crm", group = "Sales EU" }]
//!
//! [[role]]
//! id = "finance-approver"
//! title = "Finance approvers"             # no rule: assigned by name
//! sensitive = true                        # its grants are approved (L2)
//! grants = [{ system = "erp", role = "approver" }]
//!
//! [[elevation]]
//! id = "m365-global-admin"
//! title = "Global administrator"
//! system = "m365"
//! role = "Global Administrator"
//! max_duration = "8h"
//! ```
//!
//! A template applies to a person when it is assigned to them by name or
//! its `when` rule holds for their attributes. `system` names a connector
//! of the tenant. Every grant on a system implies an account there.

use std::collections::BTreeSet;
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::person::Person;
use crate::rule::Rule;

/// Something a person can hold on a system besides the account itself.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Entitlement {
    /// Membership of a group (by display name on SCIM, by id on Graph).
    Group(String),
    /// A licence (SKU id).
    License(String),
    /// An app role.
    Role(String),
}

impl std::fmt::Display for Entitlement {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Group(g) => write!(f, "group {g:?}"),
            Self::License(l) => write!(f, "licence {l:?}"),
            Self::Role(r) => write!(f, "role {r:?}"),
        }
    }
}

/// One grant as written in a template.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GrantSpec {
    /// The connector (system) it is on.
    pub system: String,
    /// A group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// A licence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    /// An app role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// Sensitive: granting it needs approval (L2) even for a joiner.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sensitive: bool,
}

impl GrantSpec {
    /// The entitlement named; exactly one of `group`, `license`, `role`
    /// (checked by [`Policy::parse`]).
    pub fn entitlement(&self) -> Option<Entitlement> {
        match (&self.group, &self.license, &self.role) {
            (Some(g), None, None) => Some(Entitlement::Group(g.clone())),
            (None, Some(l), None) => Some(Entitlement::License(l.clone())),
            (None, None, Some(r)) => Some(Entitlement::Role(r.clone())),
            _ => None,
        }
    }
}

/// A role template.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RoleTemplate {
    /// Its name, unique in the policy; people are assigned it by this.
    pub id: String,
    /// What it is for.
    #[serde(default)]
    pub title: String,
    /// The attribute rule that selects people (none: assigned by name only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub when: Option<String>,
    /// All its grants are sensitive.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub sensitive: bool,
    /// What it grants.
    pub grants: Vec<GrantSpec>,
    #[serde(skip)]
    rule: Option<Rule>,
}

impl RoleTemplate {
    /// Whether the template applies to `person`: assigned by name, or its
    /// rule holds.
    pub fn applies_to(&self, person: &Person) -> bool {
        person.roles.contains(&self.id) || self.rule.as_ref().is_some_and(|r| r.matches(person))
    }
}

/// An entitlement people may request just in time.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ElevationSpec {
    /// Its name, used in requests.
    pub id: String,
    /// What it is.
    #[serde(default)]
    pub title: String,
    /// The system.
    pub system: String,
    /// A group.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub group: Option<String>,
    /// A licence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub license: Option<String>,
    /// An app role.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// The longest a grant may last (`30m`, `8h`, `2d`).
    pub max_duration: String,
}

impl ElevationSpec {
    /// The entitlement it grants.
    pub fn entitlement(&self) -> Option<Entitlement> {
        GrantSpec {
            system: self.system.clone(),
            group: self.group.clone(),
            license: self.license.clone(),
            role: self.role.clone(),
            sensitive: true,
        }
        .entitlement()
    }

    /// `max_duration` as a duration (checked by [`Policy::parse`]).
    pub fn max(&self) -> Duration {
        parse_duration(&self.max_duration).unwrap_or(Duration::ZERO)
    }
}

/// A tenant's policy.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Role templates.
    #[serde(default, rename = "role")]
    pub roles: Vec<RoleTemplate>,
    /// Entitlements available just in time.
    #[serde(default, rename = "elevation")]
    pub elevations: Vec<ElevationSpec>,
}

/// Why a policy is refused: where, and what is wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{at}: {reason}")]
pub struct PolicyError {
    /// Where (`role[2] (sales-eu).when`).
    pub at: String,
    /// What is wrong.
    pub reason: String,
}

fn err(at: impl Into<String>, reason: impl Into<String>) -> PolicyError {
    PolicyError {
        at: at.into(),
        reason: reason.into(),
    }
}

/// Parses `30s`, `15m`, `8h`, `2d` (whole numbers).
pub fn parse_duration(text: &str) -> Option<Duration> {
    let text = text.trim();
    let split = text.find(|c: char| !c.is_ascii_digit())?;
    let (number, unit) = text.split_at(split);
    let number: u64 = number.parse().ok()?;
    let unit = match unit {
        "s" => 1,
        "m" => 60,
        "h" => 3600,
        "d" => 86_400,
        _ => return None,
    };
    number
        .checked_mul(unit)
        .map(Duration::from_secs)
        .filter(|d| !d.is_zero())
}

fn check_name(at: &str, field: &str, value: &str) -> Result<(), PolicyError> {
    if value.trim().is_empty() || value.len() > 256 || value.chars().any(char::is_control) {
        return Err(err(
            format!("{at}.{field}"),
            "must be 1 to 256 printable characters",
        ));
    }
    Ok(())
}

impl Policy {
    /// Parses and checks a policy written in TOML.
    pub fn parse(text: &str) -> Result<Self, PolicyError> {
        let policy: Policy = toml::from_str(text).map_err(|e| {
            let at = e
                .span()
                .map(|span| {
                    let line = text[..span.start.min(text.len())].lines().count().max(1);
                    format!("line {line}")
                })
                .unwrap_or_else(|| "policy".to_owned());
            err(at, e.message().to_owned())
        })?;
        policy.checked()
    }

    /// Checks a policy built in code or read from JSON, and compiles its
    /// rules.
    pub fn checked(mut self) -> Result<Self, PolicyError> {
        let mut ids = BTreeSet::new();
        for (i, role) in self.roles.iter_mut().enumerate() {
            let at = format!("role[{i}]");
            check_name(&at, "id", &role.id)?;
            let at = format!("role[{i}] ({})", role.id);
            if !ids.insert(role.id.clone()) {
                return Err(err(at, "a role with this id is defined twice"));
            }
            if role.grants.is_empty() {
                return Err(err(format!("{at}.grants"), "a role must grant something"));
            }
            for (g, grant) in role.grants.iter().enumerate() {
                check_name(&format!("{at}.grants[{g}]"), "system", &grant.system)?;
                match grant.entitlement() {
                    Some(
                        Entitlement::Group(v) | Entitlement::License(v) | Entitlement::Role(v),
                    ) => {
                        check_name(&format!("{at}.grants[{g}]"), "value", &v)?;
                    }
                    None => {
                        return Err(err(
                            format!("{at}.grants[{g}]"),
                            "name exactly one of `group`, `license`, `role`",
                        ));
                    }
                }
            }
            role.rule = match &role.when {
                Some(text) => Some(Rule::parse(text).map_err(|e| err(format!("{at}.when"), e))?),
                None => None,
            };
        }
        let mut ids = BTreeSet::new();
        for (i, elevation) in self.elevations.iter().enumerate() {
            let at = format!("elevation[{i}]");
            check_name(&at, "id", &elevation.id)?;
            check_name(&at, "system", &elevation.system)?;
            let at = format!("elevation[{i}] ({})", elevation.id);
            if !ids.insert(elevation.id.clone()) {
                return Err(err(at, "an elevation with this id is defined twice"));
            }
            if elevation.entitlement().is_none() {
                return Err(err(at, "name exactly one of `group`, `license`, `role`"));
            }
            if parse_duration(&elevation.max_duration).is_none() {
                return Err(err(
                    format!("{at}.max_duration"),
                    format!(
                        "`{}` is not a duration such as 30m, 8h or 2d",
                        elevation.max_duration
                    ),
                ));
            }
        }
        Ok(self)
    }

    /// The role template called `id`.
    pub fn role(&self, id: &str) -> Option<&RoleTemplate> {
        self.roles.iter().find(|r| r.id == id)
    }

    /// The elevation called `id`.
    pub fn elevation(&self, id: &str) -> Option<&ElevationSpec> {
        self.elevations.iter().find(|e| e.id == id)
    }

    /// Every system the policy names.
    pub fn systems(&self) -> BTreeSet<&str> {
        self.roles
            .iter()
            .flat_map(|r| r.grants.iter().map(|g| g.system.as_str()))
            .chain(self.elevations.iter().map(|e| e.system.as_str()))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const EXAMPLE: &str = r#"
[[role]]
id = "staff"
title = "Every employee"
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

    #[test]
    fn the_documented_example_parses() {
        let policy = Policy::parse(EXAMPLE).unwrap();
        assert_eq!(policy.roles.len(), 3);
        assert_eq!(
            policy.systems().into_iter().collect::<Vec<_>>(),
            ["crm", "erp", "m365"]
        );
        assert_eq!(
            policy
                .elevation("m365-global-admin")
                .map(ElevationSpec::max),
            Some(Duration::from_secs(8 * 3600))
        );
    }

    #[test]
    fn mistakes_are_named_where_they_are() {
        let e = Policy::parse("[[role]]\nid = \"a\"\nwhen = 'shoe eq \"9\"'\ngrants = [{ system = \"x\", group = \"g\" }]").unwrap_err();
        assert_eq!(e.at, "role[0] (a).when");
        assert!(e.reason.contains("not an attribute"), "{e}");
        let e = Policy::parse(
            "[[role]]\nid = \"a\"\ngrants = [{ system = \"x\", group = \"g\", role = \"r\" }]",
        )
        .unwrap_err();
        assert!(e.reason.contains("exactly one"), "{e}");
        let e = Policy::parse("[[role]]\nid = \"a\"\ngrants = []").unwrap_err();
        assert!(e.reason.contains("must grant"), "{e}");
        let e = Policy::parse("[[role]]\nid = \"a\"\ngrants = [{ system = \"x\", group = \"g\" }]\n[[role]]\nid = \"a\"\ngrants = [{ system = \"x\", group = \"g\" }]").unwrap_err();
        assert!(e.reason.contains("twice"), "{e}");
        let e = Policy::parse(
            "[[elevation]]\nid = \"e\"\nsystem = \"x\"\nrole = \"r\"\nmax_duration = \"forever\"",
        )
        .unwrap_err();
        assert_eq!(e.at, "elevation[0] (e).max_duration");
        let e = Policy::parse(
            "[[role]]\nid = \"a\"\ncolour = \"red\"\ngrants = [{ system = \"x\", group = \"g\" }]",
        )
        .unwrap_err();
        assert!(e.reason.contains("colour"), "{e}");
        assert!(e.at.starts_with("line "), "{e}");
    }

    #[test]
    fn durations() {
        assert_eq!(parse_duration("90s"), Some(Duration::from_secs(90)));
        assert_eq!(parse_duration("2d"), Some(Duration::from_secs(172_800)));
        assert_eq!(parse_duration("0h"), None);
        assert_eq!(parse_duration("h"), None);
        assert_eq!(parse_duration("5w"), None);
    }
}
