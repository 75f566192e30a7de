//! Human-in-the-loop gates: who acts on each kind of change.
//!
//! Every action belongs to a [`ProcessArea`], and every area has a
//! [`GateLevel`] from L0 (the engine just does it) to L3 (the engine never
//! does it; a person does and records the outcome). Each area has a default
//! and a *floor*. A tenant's [`GatePolicy`] may raise an area above its
//! default (a cautious client wants to approve every joiner) and lower it
//! back, but never below the floor: the floor is the MSP's promise about
//! risk, so no configuration file, API call or workflow template can
//! quietly automate what must stay with people. The check lives in the
//! only constructors ([`GatePolicy::set`] and deserialization), so a policy
//! below a floor cannot exist.
//!
//! Revocation is deliberately L0 with an L0 floor: for a leaver, delayed
//! revocation is the danger, not over-eager revocation. A tenant may still
//! raise it.
//!
//! A workflow template may name an explicit level for a step; the level the
//! step runs at is the stricter of that and the tenant's effective level
//! for the step's area ([`resolve`]), and an explicit level below the
//! area's floor is refused when the template is loaded ([`check_explicit`]).

use std::collections::BTreeMap;
use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

use crate::error::DomainError;

/// How much a human is involved before and after an action runs. Levels are
/// ordered: a higher level is stricter (`L0 < L1 < L2 < L3`).
///
/// Serialized as `"L0"` … `"L3"`; lowercase (`"l2"`) is accepted on input.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
pub enum GateLevel {
    /// Fully automated: the engine executes at once; every step is logged.
    #[serde(alias = "l0")]
    L0,
    /// Notify: the engine executes at once, then notifies the assigned
    /// human, who can review and, where the action is reversible, roll it
    /// back.
    #[serde(alias = "l1")]
    L1,
    /// Approve to proceed: the engine prepares the plan (the exact changes)
    /// and a recommendation; nothing executes until a human approves. The
    /// human may modify the plan (recorded as an override) or reject it
    /// (the workflow compensates or stops).
    #[serde(alias = "l2")]
    L2,
    /// Human only: the engine never executes the action. It prepares
    /// decision support (risk, blast radius, reversibility, history); a
    /// human performs the action and records the outcome and evidence.
    #[serde(alias = "l3")]
    L3,
}

impl GateLevel {
    /// All levels, from the most automated to the strictest.
    pub const ALL: [GateLevel; 4] = [Self::L0, Self::L1, Self::L2, Self::L3];

    /// The level's name as stored and shown (`L0` … `L3`).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::L0 => "L0",
            Self::L1 => "L1",
            Self::L2 => "L2",
            Self::L3 => "L3",
        }
    }

    /// Whether the engine itself may ever execute an action at this level
    /// (for L2 only after approval). False only for L3.
    pub fn engine_may_execute(self) -> bool {
        self != Self::L3
    }

    /// Whether a human must approve before anything executes (L2).
    pub fn requires_approval(self) -> bool {
        self == Self::L2
    }

    /// Whether the assigned human is notified after the engine executes (L1).
    pub fn notifies_after_execution(self) -> bool {
        self == Self::L1
    }
}

impl fmt::Display for GateLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for GateLevel {
    type Err = DomainError;

    /// Parses `L0` … `L3`, in either case.
    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|level| level.as_str().eq_ignore_ascii_case(text))
            .ok_or_else(|| {
                DomainError::invalid("gate", format!("`{text}` is not one of L0, L1, L2, L3"))
            })
    }
}

/// The kind of work an action belongs to; it decides the action's default
/// gate level and the floor below which no tenant may lower it.
#[derive(
    Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, ToSchema,
)]
#[serde(rename_all = "snake_case")]
pub enum ProcessArea {
    /// Taking a new client from signed deal to operational. Default L2, floor L2.
    ClientOnboarding,
    /// Creating a client tenant. Default L3, floor L3.
    TenantProvisioning,
    /// Changing how a tenant is isolated from the others. Default L3, floor L3.
    IsolationChange,
    /// One operation applied across many tenants. Default L3, floor L3.
    CrossTenantOperation,
    /// The standard access a joiner gets from their role. Default L1, floor L0.
    JoinerAccess,
    /// Entitlements beyond the standard for a role. Default L2, floor L2.
    SensitiveEntitlement,
    /// Elevated and just-in-time access. Default L2, floor L2.
    ElevatedAccess,
    /// Revoking a leaver's access. Default L0, floor L0: delayed revocation
    /// is the danger, not over-eager revocation.
    Revocation,
    /// Checklist items: documents to collect, knowledge to transfer.
    /// Default L0, floor L0.
    Documentation,
    /// Sending notifications. Default L0, floor L0.
    Notification,
}

impl ProcessArea {
    /// All process areas.
    pub const ALL: [ProcessArea; 10] = [
        Self::ClientOnboarding,
        Self::TenantProvisioning,
        Self::IsolationChange,
        Self::CrossTenantOperation,
        Self::JoinerAccess,
        Self::SensitiveEntitlement,
        Self::ElevatedAccess,
        Self::Revocation,
        Self::Documentation,
        Self::Notification,
    ];

    /// The area's name as stored and shown (`client_onboarding`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            Self::ClientOnboarding => "client_onboarding",
            Self::TenantProvisioning => "tenant_provisioning",
            Self::IsolationChange => "isolation_change",
            Self::CrossTenantOperation => "cross_tenant_operation",
            Self::JoinerAccess => "joiner_access",
            Self::SensitiveEntitlement => "sensitive_entitlement",
            Self::ElevatedAccess => "elevated_access",
            Self::Revocation => "revocation",
            Self::Documentation => "documentation",
            Self::Notification => "notification",
        }
    }

    /// The level the area has when a tenant's policy does not say otherwise.
    pub fn default_level(self) -> GateLevel {
        match self {
            Self::TenantProvisioning | Self::IsolationChange | Self::CrossTenantOperation => {
                GateLevel::L3
            }
            Self::ClientOnboarding | Self::SensitiveEntitlement | Self::ElevatedAccess => {
                GateLevel::L2
            }
            Self::JoinerAccess => GateLevel::L1,
            Self::Revocation | Self::Documentation | Self::Notification => GateLevel::L0,
        }
    }

    /// The lowest level the area may ever run at, whatever a tenant's
    /// policy or a template says.
    pub fn floor(self) -> GateLevel {
        match self {
            Self::JoinerAccess => GateLevel::L0,
            other => other.default_level(),
        }
    }
}

impl fmt::Display for ProcessArea {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ProcessArea {
    type Err = DomainError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|area| area.as_str() == text)
            .ok_or_else(|| {
                let names: Vec<&str> = Self::ALL.iter().map(|a| a.as_str()).collect();
                DomainError::invalid(
                    "process_area",
                    format!("`{text}` is not one of {}", names.join(", ")),
                )
            })
    }
}

/// A tenant's gate levels: the areas it has set explicitly; every other
/// area runs at its default. No entry is ever below its area's floor.
///
/// Serialized as a map from area to level, such as
/// `{"joiner_access": "L2"}`; deserialization enforces the floors.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
#[serde(transparent)]
pub struct GatePolicy {
    /// The areas set explicitly for this tenant.
    overrides: BTreeMap<ProcessArea, GateLevel>,
}

impl GatePolicy {
    /// A policy with no overrides: every area at its default.
    pub fn new() -> Self {
        Self::default()
    }

    /// The level `area` runs at for this tenant: its override, or its default.
    pub fn effective(&self, area: ProcessArea) -> GateLevel {
        self.overrides
            .get(&area)
            .copied()
            .unwrap_or_else(|| area.default_level())
    }

    /// The level set explicitly for `area`, if any.
    pub fn get(&self, area: ProcessArea) -> Option<GateLevel> {
        self.overrides.get(&area).copied()
    }

    /// The explicitly set areas, in a stable order.
    pub fn overrides(&self) -> impl Iterator<Item = (ProcessArea, GateLevel)> + '_ {
        self.overrides.iter().map(|(area, level)| (*area, *level))
    }

    /// Sets `area` to `level` for this tenant. Raising above the default and
    /// lowering again down to the floor are allowed; a level below the
    /// area's floor is refused and leaves the policy unchanged.
    pub fn set(&mut self, area: ProcessArea, level: GateLevel) -> Result<(), DomainError> {
        let floor = area.floor();
        if level < floor {
            return Err(DomainError::invalid(
                "gate",
                format!(
                    "{area} cannot be set to {level}: its floor is {floor}, and no tenant may lower it below that"
                ),
            ));
        }
        self.overrides.insert(area, level);
        Ok(())
    }

    /// Removes the override for `area`, which returns to its default.
    pub fn clear(&mut self, area: ProcessArea) {
        self.overrides.remove(&area);
    }
}

impl<'de> Deserialize<'de> for GatePolicy {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = BTreeMap::<ProcessArea, GateLevel>::deserialize(d)?;
        let mut policy = Self::new();
        for (area, level) in raw {
            policy.set(area, level).map_err(serde::de::Error::custom)?;
        }
        Ok(policy)
    }
}

impl utoipa::PartialSchema for GatePolicy {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{AdditionalProperties, ObjectBuilder, Ref, Type};
        let mut object = ObjectBuilder::new()
            .schema_type(Type::Object)
            .description(Some(
                "Gate levels set explicitly for a tenant, by process area; areas not named run \
                 at their default. A level below an area's floor is refused.",
            ))
            .additional_properties(Some(AdditionalProperties::FreeForm(false)));
        for area in ProcessArea::ALL {
            object = object.property(area.as_str(), Ref::from_schema_name("GateLevel"));
        }
        object.into()
    }
}

impl ToSchema for GatePolicy {
    fn schemas(
        schemas: &mut Vec<(
            String,
            utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
        )>,
    ) {
        use utoipa::PartialSchema;
        schemas.push((GateLevel::name().into(), GateLevel::schema()));
        <GateLevel as ToSchema>::schemas(schemas);
    }
}

/// Checks, when a workflow template is loaded, that a step's explicit level
/// is not below its area's floor. (Between the floor and a tenant's
/// effective level is fine: [`resolve`] raises it per tenant.)
pub fn check_explicit(area: ProcessArea, explicit: GateLevel) -> Result<(), DomainError> {
    let floor = area.floor();
    if explicit < floor {
        return Err(DomainError::invalid(
            "gate",
            format!(
                "a step in process area {area} cannot have gate {explicit}: the area's floor is {floor}"
            ),
        ));
    }
    Ok(())
}

/// The level a step runs at for one tenant: the stricter of the template's
/// explicit level (if any) and the tenant's effective level for the area.
/// An explicit level below the area's floor is an error (see
/// [`check_explicit`]).
pub fn resolve(
    area: ProcessArea,
    explicit: Option<GateLevel>,
    policy: &GatePolicy,
) -> Result<GateLevel, DomainError> {
    let effective = policy.effective(area);
    match explicit {
        Some(level) => {
            check_explicit(area, level)?;
            Ok(level.max(effective))
        }
        None => Ok(effective),
    }
}

/// The longest reason a gate change may carry, in characters.
pub const MAX_GATE_REASON: usize = 2000;

/// The last change of one process area's gate for one tenant: raised or
/// lowered to `level`, or cleared back to the area's default (`level` is
/// `None`), with who did it, when and why.
///
/// A tenant has at most one setting per area. A setting with a level is an
/// override of the area's default; a cleared one keeps only the record of
/// who returned the area to its default. [`GateSetting::check`] is the rule:
/// a level never below the area's floor, and a reason of 1 to
/// [`MAX_GATE_REASON`] characters.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct GateSetting {
    /// The tenant.
    pub tenant_id: crate::id::TenantId,
    /// The process area.
    pub area: ProcessArea,
    /// The level set for the area, or `null` when it was returned to its default.
    pub level: Option<GateLevel>,
    /// Who changed it: an operator id, or `system` (the CLI).
    pub set_by: String,
    /// When.
    #[serde(with = "time::serde::rfc3339")]
    pub set_at: time::OffsetDateTime,
    /// Why, in the words of whoever changed it.
    pub reason: String,
}

impl GateSetting {
    /// A checked setting: see [`GateSetting::check`]. The reason is trimmed.
    pub fn new(
        tenant_id: crate::id::TenantId,
        area: ProcessArea,
        level: Option<GateLevel>,
        set_by: &str,
        reason: &str,
        set_at: time::OffsetDateTime,
    ) -> Result<Self, DomainError> {
        let setting = Self {
            tenant_id,
            area,
            level,
            set_by: set_by.to_owned(),
            set_at,
            reason: reason.trim().to_owned(),
        };
        setting.check()?;
        Ok(setting)
    }

    /// The rules every stored setting obeys: a level is never below its
    /// area's floor (the same rule as [`GatePolicy::set`]); the reason has
    /// 1 to [`MAX_GATE_REASON`] characters and no surrounding whitespace;
    /// `set_by` is not empty.
    pub fn check(&self) -> Result<(), DomainError> {
        if let Some(level) = self.level {
            GatePolicy::new().set(self.area, level)?;
        }
        let reason = self.reason.as_str();
        if reason.is_empty() || reason != reason.trim() || reason.chars().count() > MAX_GATE_REASON
        {
            return Err(DomainError::invalid(
                "reason",
                format!("a gate change needs a reason of 1 to {MAX_GATE_REASON} characters"),
            ));
        }
        if self.set_by.trim().is_empty() {
            return Err(DomainError::invalid(
                "set_by",
                "a gate change must name who made it",
            ));
        }
        Ok(())
    }
}

impl GatePolicy {
    /// The policy that a tenant's settings make: every setting with a level
    /// is an override; cleared ones leave their area at its default. Fails
    /// (naming the area and floor) if a setting is below its floor.
    pub fn from_settings<'a>(
        settings: impl IntoIterator<Item = &'a GateSetting>,
    ) -> Result<Self, DomainError> {
        let mut policy = Self::new();
        for setting in settings {
            if let Some(level) = setting.level {
                policy.set(setting.area, level)?;
            }
        }
        Ok(policy)
    }
}

/// One process area's gate as a tenant has it: the area's default and
/// floor, the tenant's override if any, the level its steps run at, and the
/// last change (set or cleared), if there was one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, ToSchema)]
pub struct AreaGate {
    /// The process area.
    pub area: ProcessArea,
    /// The area's level when no override is set.
    pub default: GateLevel,
    /// The lowest level the area may be set to.
    pub floor: GateLevel,
    /// The tenant's override, or `null` (the default applies).
    #[serde(rename = "override")]
    #[schema(rename = "override")]
    pub override_level: Option<GateLevel>,
    /// The level the area's steps run at for this tenant (a template's
    /// explicit level may still raise a single step).
    pub effective: GateLevel,
    /// The last change of this area for this tenant, if any.
    pub last_change: Option<GateSetting>,
}

impl AreaGate {
    /// Every area, in [`ProcessArea::ALL`] order, as `settings` (one
    /// tenant's) leave it.
    pub fn all(settings: &[GateSetting]) -> Vec<AreaGate> {
        ProcessArea::ALL
            .into_iter()
            .map(|area| {
                let last = settings.iter().find(|s| s.area == area).cloned();
                let override_level = last.as_ref().and_then(|s| s.level);
                AreaGate {
                    area,
                    default: area.default_level(),
                    floor: area.floor(),
                    override_level,
                    effective: override_level.unwrap_or_else(|| area.default_level()),
                    last_change: last,
                }
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    use GateLevel::*;
    use ProcessArea::*;

    /// The defaults and floors of DESIGN §2, written out once more so a
    /// change to either table is a deliberate one.
    const TABLE: [(ProcessArea, &str, GateLevel, GateLevel); 10] = [
        (ClientOnboarding, "client_onboarding", L2, L2),
        (TenantProvisioning, "tenant_provisioning", L3, L3),
        (IsolationChange, "isolation_change", L3, L3),
        (CrossTenantOperation, "cross_tenant_operation", L3, L3),
        (JoinerAccess, "joiner_access", L1, L0),
        (SensitiveEntitlement, "sensitive_entitlement", L2, L2),
        (ElevatedAccess, "elevated_access", L2, L2),
        (Revocation, "revocation", L0, L0),
        (Documentation, "documentation", L0, L0),
        (Notification, "notification", L0, L0),
    ];

    #[test]
    fn levels_are_ordered_from_automated_to_human_only() {
        assert!(L0 < L1 && L1 < L2 && L2 < L3);
        let mut sorted = GateLevel::ALL;
        sorted.sort();
        assert_eq!(sorted, GateLevel::ALL);
        assert!(L0.engine_may_execute() && L1.engine_may_execute() && L2.engine_may_execute());
        assert!(!L3.engine_may_execute());
        assert_eq!(
            GateLevel::ALL.map(GateLevel::requires_approval),
            [false, false, true, false]
        );
        assert_eq!(
            GateLevel::ALL.map(GateLevel::notifies_after_execution),
            [false, true, false, false]
        );
    }

    #[test]
    fn levels_parse_in_either_case_and_display_uppercase() {
        for level in GateLevel::ALL {
            let upper = level.to_string();
            assert_eq!(upper.parse::<GateLevel>().unwrap(), level);
            assert_eq!(upper.to_lowercase().parse::<GateLevel>().unwrap(), level);
        }
        for bad in ["", "L4", "2", "level2", " L2"] {
            let err = bad.parse::<GateLevel>().unwrap_err();
            assert!(err.to_string().contains("L0, L1, L2, L3"), "{err}");
        }
    }

    #[test]
    fn levels_serialize_uppercase_and_accept_lowercase() {
        for level in GateLevel::ALL {
            let json = serde_json::to_string(&level).unwrap();
            assert_eq!(json, format!("\"{level}\""));
            assert_eq!(serde_json::from_str::<GateLevel>(&json).unwrap(), level);
            let lower = json.to_lowercase();
            assert_eq!(serde_json::from_str::<GateLevel>(&lower).unwrap(), level);
        }
        assert!(serde_json::from_str::<GateLevel>("\"L9\"").is_err());
    }

    #[test]
    fn areas_have_the_documented_defaults_and_floors() {
        assert_eq!(ProcessArea::ALL.len(), TABLE.len());
        for (area, name, default, floor) in TABLE {
            assert!(ProcessArea::ALL.contains(&area));
            assert_eq!(area.as_str(), name);
            assert_eq!(area.default_level(), default, "{area}");
            assert_eq!(area.floor(), floor, "{area}");
            assert!(area.floor() <= area.default_level(), "{area}");
        }
    }

    #[test]
    fn areas_round_trip_through_text_and_serde() {
        for area in ProcessArea::ALL {
            assert_eq!(area.to_string().parse::<ProcessArea>().unwrap(), area);
            let json = serde_json::to_string(&area).unwrap();
            assert_eq!(json, format!("\"{}\"", area.as_str()));
            assert_eq!(serde_json::from_str::<ProcessArea>(&json).unwrap(), area);
        }
        let err = "onboarding".parse::<ProcessArea>().unwrap_err();
        let DomainError::Invalid { field, reason } = err else {
            panic!("unexpected error {err:?}");
        };
        assert_eq!(field, "process_area");
        for area in ProcessArea::ALL {
            assert!(reason.contains(area.as_str()), "{reason}");
        }
    }

    #[test]
    fn an_empty_policy_runs_every_area_at_its_default() {
        let policy = GatePolicy::new();
        for area in ProcessArea::ALL {
            assert_eq!(policy.effective(area), area.default_level());
            assert_eq!(policy.get(area), None);
        }
        assert_eq!(policy.overrides().count(), 0);
    }

    #[test]
    fn setting_a_level_obeys_the_floor_for_every_area_and_level() {
        for area in ProcessArea::ALL {
            for level in GateLevel::ALL {
                let mut policy = GatePolicy::new();
                let result = policy.set(area, level);
                if level >= area.floor() {
                    assert_eq!(result, Ok(()), "{area} {level}");
                    assert_eq!(policy.effective(area), level);
                    assert_eq!(policy.get(area), Some(level));
                } else {
                    let Err(DomainError::Invalid { field, reason }) = result else {
                        panic!("{area} {level}: expected refusal, got {result:?}");
                    };
                    assert_eq!(field, "gate");
                    assert!(reason.contains(area.as_str()), "{reason}");
                    assert!(reason.contains(area.floor().as_str()), "{reason}");
                    assert!(reason.contains(level.as_str()), "{reason}");
                    assert_eq!(policy, GatePolicy::new(), "refusal changed the policy");
                }
                // Other areas are untouched.
                for other in ProcessArea::ALL.into_iter().filter(|o| *o != area) {
                    assert_eq!(policy.effective(other), other.default_level());
                }
            }
        }
    }

    #[test]
    fn an_area_can_be_raised_lowered_to_its_floor_and_cleared() {
        let mut policy = GatePolicy::new();
        policy.set(JoinerAccess, L3).unwrap();
        assert_eq!(policy.effective(JoinerAccess), L3);
        policy.set(JoinerAccess, L0).unwrap();
        assert_eq!(policy.effective(JoinerAccess), L0);
        policy.set(Revocation, L2).unwrap();
        policy.set(Revocation, L0).unwrap();
        assert_eq!(policy.effective(Revocation), L0);
        assert!(policy.set(ClientOnboarding, L1).is_err());
        assert!(policy.set(CrossTenantOperation, L2).is_err());
        policy.clear(JoinerAccess);
        assert_eq!(policy.effective(JoinerAccess), L1);
        policy.clear(Notification); // clearing an unset area is a no-op
        assert_eq!(
            policy.overrides().collect::<Vec<_>>(),
            vec![(Revocation, L0)]
        );
    }

    #[test]
    fn policies_round_trip_through_serde() {
        let mut policy = GatePolicy::new();
        policy.set(JoinerAccess, L2).unwrap();
        policy.set(Revocation, L1).unwrap();
        policy.set(ClientOnboarding, L3).unwrap();
        let json = serde_json::to_string(&policy).unwrap();
        assert_eq!(
            json,
            r#"{"client_onboarding":"L3","joiner_access":"L2","revocation":"L1"}"#
        );
        assert_eq!(serde_json::from_str::<GatePolicy>(&json).unwrap(), policy);
        assert_eq!(
            serde_json::from_str::<GatePolicy>("{}").unwrap(),
            GatePolicy::new()
        );
        let lower: GatePolicy = serde_json::from_str(r#"{"joiner_access":"l0"}"#).unwrap();
        assert_eq!(lower.effective(JoinerAccess), L0);
    }

    #[test]
    fn deserialization_enforces_every_floor() {
        for area in ProcessArea::ALL {
            for level in GateLevel::ALL {
                let json = format!(r#"{{"{area}":"{level}"}}"#);
                let result = serde_json::from_str::<GatePolicy>(&json);
                if level >= area.floor() {
                    assert_eq!(result.unwrap().effective(area), level);
                } else {
                    let err = result.unwrap_err().to_string();
                    assert!(err.contains("floor"), "{err}");
                }
            }
        }
        assert!(serde_json::from_str::<GatePolicy>(r#"{"payroll":"L2"}"#).is_err());
        assert!(serde_json::from_str::<GatePolicy>(r#"{"revocation":"L7"}"#).is_err());
    }

    #[test]
    fn explicit_step_levels_below_the_floor_are_refused() {
        for area in ProcessArea::ALL {
            for level in GateLevel::ALL {
                let result = check_explicit(area, level);
                if level >= area.floor() {
                    assert_eq!(result, Ok(()), "{area} {level}");
                } else {
                    let Err(DomainError::Invalid { field, reason }) = result else {
                        panic!("{area} {level}: expected refusal, got {result:?}");
                    };
                    assert_eq!(field, "gate");
                    assert!(reason.contains(area.as_str()), "{reason}");
                    assert!(reason.contains(level.as_str()), "{reason}");
                    assert!(resolve(area, Some(level), &GatePolicy::new()).is_err());
                }
            }
        }
    }

    #[test]
    fn a_step_runs_at_the_stricter_of_its_explicit_and_the_effective_level() {
        let mut raised = GatePolicy::new();
        for area in ProcessArea::ALL {
            raised.set(area, L3).unwrap();
        }
        let mut lowered = GatePolicy::new();
        for area in ProcessArea::ALL {
            lowered.set(area, area.floor()).unwrap();
        }
        for policy in [GatePolicy::new(), raised, lowered] {
            for area in ProcessArea::ALL {
                let effective = policy.effective(area);
                assert_eq!(resolve(area, None, &policy), Ok(effective));
                for level in GateLevel::ALL.into_iter().filter(|l| *l >= area.floor()) {
                    assert_eq!(
                        resolve(area, Some(level), &policy),
                        Ok(level.max(effective)),
                        "{area} {level} {policy:?}"
                    );
                }
            }
        }
    }

    #[test]
    fn the_policy_schema_names_every_area() {
        use utoipa::PartialSchema;
        let schema = serde_json::to_value(GatePolicy::schema()).unwrap();
        for area in ProcessArea::ALL {
            assert_eq!(
                schema["properties"][area.as_str()]["$ref"],
                "#/components/schemas/GateLevel"
            );
        }
        assert_eq!(schema["additionalProperties"], false);
    }

    fn setting(
        area: ProcessArea,
        level: Option<GateLevel>,
        reason: &str,
    ) -> Result<GateSetting, DomainError> {
        GateSetting::new(
            crate::id::TenantId::generate(time::OffsetDateTime::UNIX_EPOCH),
            area,
            level,
            "op_01jd8x3k2q9f6v0c4m7r5t8w1y",
            reason,
            time::OffsetDateTime::UNIX_EPOCH,
        )
    }

    #[test]
    fn a_setting_obeys_the_floor_and_needs_a_reason() {
        let raised = setting(JoinerAccess, Some(L2), "  client asked for approvals  ").unwrap();
        assert_eq!(raised.reason, "client asked for approvals");
        let cleared = setting(ClientOnboarding, None, "back to default").unwrap();
        let Err(DomainError::Invalid { field, reason }) =
            setting(ClientOnboarding, Some(L1), "why not")
        else {
            panic!("a level below the floor was accepted");
        };
        assert_eq!(field, "gate");
        assert!(reason.contains("floor is L2"), "{reason}");
        for bad in ["", "   ", &"x".repeat(MAX_GATE_REASON + 1)] {
            let Err(DomainError::Invalid { field, .. }) = setting(JoinerAccess, Some(L2), bad)
            else {
                panic!("reason {bad:?} was accepted");
            };
            assert_eq!(field, "reason");
        }
        let policy = GatePolicy::from_settings([&raised, &cleared]).unwrap();
        assert_eq!(policy.effective(JoinerAccess), L2);
        assert_eq!(policy.effective(ClientOnboarding), L2);
        assert_eq!(policy.overrides().count(), 1);
        let mut below = raised.clone();
        below.area = Revocation;
        below.level = Some(L0);
        assert!(below.check().is_ok());
        below.area = ElevatedAccess;
        assert!(below.check().is_err());
        assert!(GatePolicy::from_settings([&below]).is_err());
    }

    #[test]
    fn area_gates_list_every_area_with_its_override_and_effective_level() {
        let raised = setting(JoinerAccess, Some(L3), "audit season").unwrap();
        let cleared = setting(Revocation, None, "no longer needed").unwrap();
        let gates = AreaGate::all(&[raised.clone(), cleared.clone()]);
        assert_eq!(gates.len(), ProcessArea::ALL.len());
        for gate in &gates {
            assert_eq!(gate.default, gate.area.default_level());
            assert_eq!(gate.floor, gate.area.floor());
            match gate.area {
                JoinerAccess => {
                    assert_eq!(gate.override_level, Some(L3));
                    assert_eq!(gate.effective, L3);
                    assert_eq!(gate.last_change.as_ref(), Some(&raised));
                }
                Revocation => {
                    assert_eq!(gate.override_level, None);
                    assert_eq!(gate.effective, L0);
                    assert_eq!(gate.last_change.as_ref(), Some(&cleared));
                }
                _ => {
                    assert_eq!(gate.override_level, None);
                    assert_eq!(gate.effective, gate.default);
                    assert_eq!(gate.last_change, None);
                }
            }
        }
        let json = serde_json::to_value(&gates[4]).unwrap();
        assert_eq!(json["area"], "joiner_access");
        assert_eq!(json["override"], "L3");
        assert_eq!(json["effective"], "L3");
        assert_eq!(json["last_change"]["reason"], "audit season");
    }
}
