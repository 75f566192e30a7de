//! MSP operators (staff accounts), their roles and their API tokens.
//!
//! A token is shown once, when it is issued, and stored only as its SHA-256
//! hash. Tokens carry 256 bits of randomness, so a fast hash is enough: there
//! is nothing to brute-force that a slow password hash would protect.

use std::collections::BTreeSet;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use utoipa::ToSchema;
use zeroize::Zeroizing;

use crate::error::{DomainError, random_bytes};
use crate::id::{OperatorId, TenantGroupId, TenantId, TokenId};
use crate::tenant::DisplayName;

/// What an operator may do. Policy-based authorization (a later step) maps
/// these roles to permissions; today the server's `authz` module does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize, ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Runs the Gatehouse installation: tenants, operators, keys.
    Admin,
    /// Service lead: owns client onboardings and approves gated steps.
    Lead,
    /// Works checklists and provisioning tasks.
    Technician,
    /// Reads everything, changes nothing.
    Auditor,
}

impl Role {
    /// All roles.
    pub const ALL: [Role; 4] = [Self::Admin, Self::Lead, Self::Technician, Self::Auditor];

    /// The role's name as stored and shown.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Admin => "admin",
            Self::Lead => "lead",
            Self::Technician => "technician",
            Self::Auditor => "auditor",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = DomainError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|r| r.as_str() == text)
            .ok_or_else(|| {
                DomainError::invalid(
                    "role",
                    format!("`{text}` is not one of admin, lead, technician, auditor"),
                )
            })
    }
}

/// An operator's sign-in handle: 2–64 characters of `a-z`, `0-9`, `.`, `_`
/// and `-`, starting with a letter.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, ToSchema)]
#[schema(value_type = String, pattern = "^[a-z][a-z0-9._-]{1,63}$", example = "jane.doe")]
pub struct OperatorName(String);

impl OperatorName {
    /// Validates and wraps a handle.
    pub fn parse(text: &str) -> Result<Self, DomainError> {
        let ok_len = (2..=64).contains(&text.len());
        let ok_first = text.starts_with(|c: char| c.is_ascii_lowercase());
        let ok_rest = text.bytes().all(|b| {
            b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-')
        });
        if ok_len && ok_first && ok_rest {
            Ok(Self(text.to_owned()))
        } else {
            Err(DomainError::invalid(
                "name",
                "must be 2 to 64 characters of a-z, 0-9, '.', '_' or '-', starting with a letter",
            ))
        }
    }

    /// The handle as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for OperatorName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl<'de> Deserialize<'de> for OperatorName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// A member of the MSP's staff who uses Gatehouse.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct Operator {
    /// The operator's id.
    pub id: OperatorId,
    /// The unique sign-in handle.
    pub name: OperatorName,
    /// The operator's full name.
    pub display_name: DisplayName,
    /// What the operator may do.
    pub role: Role,
    /// A disabled operator's tokens stop working at once.
    pub disabled: bool,
    /// Which tenants the role applies to.
    pub scope: Scope,
    /// When the operator was created.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
}

impl Operator {
    /// A new, enabled operator record, not yet stored.
    pub fn new(
        name: OperatorName,
        display_name: DisplayName,
        role: Role,
        now: OffsetDateTime,
    ) -> Self {
        Self {
            id: OperatorId::generate(now),
            name,
            display_name,
            role,
            disabled: false,
            scope: Scope::Installation,
            created_at: now,
        }
    }
}

/// Where an operator's role applies: the whole installation (every
/// tenant, and the installation's own settings: operators, keys, new
/// tenants, tenant groups), or only some tenants. A scoped operator never
/// learns that another tenant exists: its resources answer 404, lists leave
/// it out.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case")]
pub enum Scope {
    /// Every tenant and the installation.
    #[default]
    Installation,
    /// Some tenants only: those named and the members of the groups named
    /// (possibly none: the operator sees nothing until an admin adds one).
    Tenants {
        /// Tenants named one by one.
        tenants: BTreeSet<TenantId>,
        /// Tenant groups named: their members are in reach too.
        #[serde(default)]
        groups: BTreeSet<TenantGroupId>,
        /// Every tenant the role applies to: `tenants` and the groups'
        /// members as they were when the operator was loaded (on every
        /// request). Decisions read this, never `tenants` alone.
        #[serde(default)]
        reach: BTreeSet<TenantId>,
    },
}

impl Scope {
    /// A scope naming tenants and groups; its reach holds the tenants named
    /// until [`Scope::add_group`] adds each group's members.
    pub fn some(tenants: BTreeSet<TenantId>, groups: BTreeSet<TenantGroupId>) -> Self {
        Self::Tenants {
            reach: tenants.clone(),
            tenants,
            groups,
        }
    }

    /// Names a group, whose members join the reach (nothing changes for
    /// the installation scope, which reaches every tenant already).
    pub fn add_group(&mut self, group: TenantGroupId, members: impl IntoIterator<Item = TenantId>) {
        if let Self::Tenants { groups, reach, .. } = self {
            groups.insert(group);
            reach.extend(members);
        }
    }

    /// The groups a scope names.
    pub fn groups(&self) -> impl Iterator<Item = TenantGroupId> + '_ {
        match self {
            Self::Installation => None,
            Self::Tenants { groups, .. } => Some(groups.iter().copied()),
        }
        .into_iter()
        .flatten()
    }

    /// Whether the role applies to `tenant`.
    pub fn includes(&self, tenant: TenantId) -> bool {
        match self {
            Self::Installation => true,
            Self::Tenants { reach, .. } => reach.contains(&tenant),
        }
    }

    /// The tenants a scoped operator's lists are limited to (the reach);
    /// `None` for the whole installation.
    pub fn tenants(&self) -> Option<Vec<TenantId>> {
        match self {
            Self::Installation => None,
            Self::Tenants { reach, .. } => Some(reach.iter().copied().collect()),
        }
    }

    /// How the scope's tenants are stored: `None` for the installation,
    /// otherwise the ids of the tenants named one by one as a JSON array.
    /// The groups named are stored as rows of their own, so that a group
    /// in use cannot be deleted.
    pub fn to_stored(&self) -> Option<String> {
        match self {
            Self::Installation => None,
            Self::Tenants { tenants, .. } => {
                let texts: Vec<String> = tenants.iter().map(ToString::to_string).collect();
                Some(serde_json::Value::from(texts).to_string())
            }
        }
    }

    /// Reads what [`Scope::to_stored`] wrote (no groups yet: the store
    /// adds them and their members).
    pub fn from_stored(stored: Option<&str>) -> Result<Self, DomainError> {
        let Some(text) = stored else {
            return Ok(Self::Installation);
        };
        let ids: Vec<String> = serde_json::from_str(text).map_err(|e| {
            DomainError::invalid("scope", format!("stored scope is unreadable: {e}"))
        })?;
        ids.iter()
            .map(|id| id.parse::<TenantId>())
            .collect::<Result<BTreeSet<_>, _>>()
            .map(|tenants| Self::some(tenants, BTreeSet::new()))
            .map_err(|e| DomainError::invalid("scope", format!("stored scope: {e}")))
    }
}

/// The prefix every Gatehouse API token starts with, so secret scanners and
/// people can recognise one.
pub const TOKEN_PREFIX: &str = "gth_";

/// A bearer token in the clear. Exists only between issuing and showing it
/// once, and between reading the `Authorization` header and hashing it.
/// Its `Debug` never shows the value.
pub struct TokenSecret(Zeroizing<String>);

impl TokenSecret {
    /// A new random token: the prefix and 256 random bits in hex.
    pub fn generate() -> Result<Self, DomainError> {
        let mut bytes = Zeroizing::new([0u8; 32]);
        random_bytes(bytes.as_mut())?;
        let mut text = String::with_capacity(TOKEN_PREFIX.len() + 64);
        text.push_str(TOKEN_PREFIX);
        for b in bytes.iter() {
            text.push_str(&format!("{b:02x}"));
        }
        Ok(Self(Zeroizing::new(text)))
    }

    /// Wraps a token presented by a client (not validated: an unknown token
    /// simply finds no match).
    pub fn presented(text: &str) -> Self {
        Self(Zeroizing::new(text.to_owned()))
    }

    /// The token in the clear, to show once.
    pub fn expose(&self) -> &str {
        &self.0
    }

    /// The hash under which the token is stored and looked up.
    pub fn hash(&self) -> TokenHash {
        let digest = Sha256::digest(self.0.as_bytes());
        TokenHash(digest.iter().map(|b| format!("{b:02x}")).collect())
    }
}

impl fmt::Debug for TokenSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("TokenSecret(<redacted>)")
    }
}

/// The SHA-256 (hex) of a token: what the database holds.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct TokenHash(String);

impl TokenHash {
    /// Wraps a stored hash.
    pub fn from_stored(text: String) -> Self {
        Self(text)
    }

    /// The hash as hex text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// An API token's record: everything but the token itself.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct ApiToken {
    /// The token's id (not secret; used to revoke it).
    pub id: TokenId,
    /// Whose token it is.
    pub operator_id: OperatorId,
    /// What the token is for, such as `laptop` or `ci`.
    pub name: String,
    /// The stored hash.
    #[serde(skip)]
    pub hash: TokenHash,
    /// When it was issued.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// When it stops working, if ever.
    #[serde(with = "time::serde::rfc3339::option")]
    pub expires_at: Option<OffsetDateTime>,
    /// When it was revoked, if it was.
    #[serde(with = "time::serde::rfc3339::option")]
    pub revoked_at: Option<OffsetDateTime>,
}

impl ApiToken {
    /// Issues a new token for `operator`: the record to store and the secret to show once.
    pub fn issue(
        operator: OperatorId,
        name: &str,
        expires_at: Option<OffsetDateTime>,
        now: OffsetDateTime,
    ) -> Result<(Self, TokenSecret), DomainError> {
        let name = name.trim();
        if name.is_empty() || name.chars().count() > 100 || name.chars().any(char::is_control) {
            return Err(DomainError::invalid(
                "token name",
                "must be 1 to 100 printable characters",
            ));
        }
        if expires_at.is_some_and(|at| at <= now) {
            return Err(DomainError::invalid("expires_at", "must be in the future"));
        }
        let secret = TokenSecret::generate()?;
        let token = Self {
            id: TokenId::generate(now),
            operator_id: operator,
            name: name.to_owned(),
            hash: secret.hash(),
            created_at: now,
            expires_at,
            revoked_at: None,
        };
        Ok((token, secret))
    }

    /// Whether the token may be used at `now`.
    pub fn is_usable(&self, now: OffsetDateTime) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|at| at > now)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_scope_reaches_its_tenants_and_its_groups_members() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let named = TenantId::generate(now);
        let member = TenantId::generate(now + time::Duration::seconds(1));
        let stranger = TenantId::generate(now + time::Duration::seconds(2));
        let eu = TenantGroupId::generate(now);
        let other_group = TenantGroupId::generate(now + time::Duration::seconds(3));
        let mut scope = Scope::some([named].into(), [].into());
        scope.add_group(eu, [member]);
        assert!(scope.includes(named) && scope.includes(member));
        assert!(!scope.includes(stranger));
        assert_eq!(scope.tenants(), Some(vec![named, member]));
        assert_eq!(scope.groups().collect::<Vec<_>>(), vec![eu]);
        // The installation reaches everything already.
        let mut everything = Scope::Installation;
        everything.add_group(other_group, [stranger]);
        assert_eq!(everything, Scope::Installation);
        // Stored: the tenants named only; groups are rows of their own.
        let stored = scope.to_stored().unwrap();
        let read = Scope::from_stored(Some(&stored)).unwrap();
        assert!(
            !read.includes(member),
            "the reach comes from the groups' rows"
        );
        assert_eq!(read.groups().count(), 0, "the groups are not in the text");
        assert_eq!(read, Scope::some([named].into(), [].into()));
        assert_eq!(Scope::from_stored(None).unwrap(), Scope::Installation);
        assert!(Scope::Installation.includes(stranger));
        // Scoped to nothing reaches nothing, never everything.
        let none = Scope::some([].into(), [].into());
        assert_eq!(none.tenants(), Some(vec![]));
        assert!(!none.includes(named));
        assert_eq!(
            serde_json::to_value(&scope).unwrap(),
            serde_json::json!({"kind": "tenants", "tenants": [named], "groups": [eu],
                "reach": [named, member]})
        );
    }

    #[test]
    fn tokens_are_random_prefixed_and_hashed() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let op = OperatorId::generate(now);
        let (a, sa) = ApiToken::issue(op, "laptop", None, now).unwrap();
        let (b, sb) = ApiToken::issue(op, "laptop", None, now).unwrap();
        assert!(sa.expose().starts_with(TOKEN_PREFIX));
        assert_eq!(sa.expose().len(), TOKEN_PREFIX.len() + 64);
        assert_ne!(sa.expose(), sb.expose());
        assert_ne!(a.hash, b.hash);
        assert_eq!(TokenSecret::presented(sa.expose()).hash(), a.hash);
        assert!(!format!("{sa:?}").contains(&sa.expose()[4..]));
    }

    #[test]
    fn expired_and_revoked_tokens_are_not_usable() {
        let now = OffsetDateTime::UNIX_EPOCH + time::Duration::days(1);
        let op = OperatorId::generate(now);
        let (mut t, _) =
            ApiToken::issue(op, "ci", Some(now + time::Duration::hours(1)), now).unwrap();
        assert!(t.is_usable(now));
        assert!(!t.is_usable(now + time::Duration::hours(1)));
        t.revoked_at = Some(now);
        assert!(!t.is_usable(now));
        assert!(ApiToken::issue(op, "ci", Some(now), now).is_err());
        assert!(ApiToken::issue(op, "  ", None, now).is_err());
    }

    #[test]
    fn roles_and_names_parse() {
        assert_eq!("auditor".parse::<Role>().unwrap(), Role::Auditor);
        assert!("root".parse::<Role>().is_err());
        assert!(OperatorName::parse("jane.doe").is_ok());
        assert!(OperatorName::parse("Jane").is_err());
        assert!(OperatorName::parse("j").is_err());
    }
}
