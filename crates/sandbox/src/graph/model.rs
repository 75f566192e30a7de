//! The emulated directories: tenants, apps, users, groups, licences,
//! directory roles and GDAP relationships, and the JSON shapes Graph gives
//! them.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::time::Instant;

use axum::http::{HeaderMap, StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde_json::{Value, json};

use crate::emulator::Harness;

/// Unix seconds of the synthetic clock's start: 2026-01-01T00:00:00Z.
const SYNTHETIC_EPOCH: u64 = 1_767_225_600;

/// The fields `GET /users` returns when the caller names none with
/// `$select` (Graph v1.0's default set; `accountEnabled` is not in it).
pub(super) const DEFAULT_USER_FIELDS: &[&str] = &[
    "businessPhones",
    "displayName",
    "givenName",
    "jobTitle",
    "mail",
    "mobilePhone",
    "officeLocation",
    "preferredLanguage",
    "surname",
    "userPrincipalName",
    "id",
];

/// What kind of group, which decides whether Graph may change its members.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupKind {
    /// A security group: members change through `members/$ref`.
    Security,
    /// A Microsoft 365 group (`groupTypes: ["Unified"]`, mail-enabled).
    Microsoft365,
    /// A mail-enabled security group: members change in Exchange only.
    MailEnabledSecurity,
    /// A distribution list: members change in Exchange only.
    Distribution,
}

impl GroupKind {
    fn mail_enabled(self) -> bool {
        !matches!(self, Self::Security)
    }

    fn security_enabled(self) -> bool {
        matches!(self, Self::Security | Self::MailEnabledSecurity)
    }

    /// Whether Graph refuses `members/$ref` on such a group.
    pub(super) fn exchange_managed(self) -> bool {
        matches!(self, Self::MailEnabledSecurity | Self::Distribution)
    }
}

/// A Graph error answer: status, `code` and `message`.
#[derive(Debug, Clone)]
pub(super) struct Fault {
    pub status: StatusCode,
    pub code: &'static str,
    pub message: String,
}

impl Fault {
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
        }
    }

    pub fn bad_request(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "Request_BadRequest", message)
    }

    pub fn not_found(id: &str) -> Self {
        Self::new(
            StatusCode::NOT_FOUND,
            "Request_ResourceNotFound",
            format!(
                "Resource '{id}' does not exist or one of its queried reference-property objects are not present."
            ),
        )
    }

    /// Graph's error body: `{"error":{"code","message","innerError":{…}}}`,
    /// in Graph's key order (a client that keeps only the start of an error
    /// answer must still see the message).
    pub fn body_text(&self) -> String {
        let text = |s: &str| Value::from(s).to_string();
        format!(
            r#"{{"error":{{"code":{},"message":{},"innerError":{{"date":{},"request-id":{},"client-request-id":{}}}}}}}"#,
            text(self.code),
            text(&self.message),
            text(&now_rfc3339()),
            text(&guid()),
            text(&guid()),
        )
    }
}

impl IntoResponse for Fault {
    fn into_response(self) -> Response {
        (
            self.status,
            [(header::CONTENT_TYPE, "application/json")],
            self.body_text(),
        )
            .into_response()
    }
}

/// Runs `effect` once per idempotency key (see [`Harness::idempotent`]),
/// answering a fault in Graph's own shape; faults are never stored.
pub(super) fn idempotent(
    harness: &Harness,
    headers: &HeaderMap,
    effect: impl FnOnce() -> Result<(StatusCode, Value), Fault>,
) -> Response {
    let mut fault = None;
    let response = harness.idempotent(headers, || match effect() {
        Ok(answer) => answer,
        Err(f) => {
            let status = f.status;
            fault = Some(f);
            (status, Value::Null)
        }
    });
    match fault {
        Some(f) => f.into_response(),
        None => response,
    }
}

/// A user in a tenant's directory.
#[derive(Debug, Clone)]
pub(super) struct User {
    pub id: String,
    pub upn: String,
    pub display_name: String,
    pub mail_nickname: String,
    pub account_enabled: bool,
    pub usage_location: Option<String>,
    pub licenses: Vec<String>,
    pub sessions_valid_from: String,
    /// `passwordProfile.forceChangePasswordNextSignIn` of the last password set.
    pub force_change_password: bool,
    pub created: String,
}

impl User {
    /// Every property the emulator keeps, in Graph's names.
    pub fn json(&self) -> Value {
        json!({
            "@odata.type": "#microsoft.graph.user",
            "id": self.id,
            "userPrincipalName": self.upn,
            "displayName": self.display_name,
            "mailNickname": self.mail_nickname,
            "accountEnabled": self.account_enabled,
            "usageLocation": self.usage_location,
            "assignedLicenses": self.licenses.iter()
                .map(|sku| json!({"skuId": sku, "disabledPlans": []}))
                .collect::<Vec<_>>(),
            "signInSessionsValidFromDateTime": self.sessions_valid_from,
            "passwordProfile": {
                "password": null,
                "forceChangePasswordNextSignIn": self.force_change_password,
                "forceChangePasswordNextSignInWithMfa": false,
            },
            "createdDateTime": self.created,
            "businessPhones": [],
            "givenName": null,
            "surname": null,
            "jobTitle": null,
            "mail": null,
            "mobilePhone": null,
            "officeLocation": null,
            "preferredLanguage": null,
        })
    }
}

/// A group.
#[derive(Debug, Clone)]
pub(super) struct Group {
    pub id: String,
    pub display_name: String,
    pub mail_nickname: String,
    pub kind: GroupKind,
    pub members: BTreeSet<String>,
}

impl Group {
    pub fn json(&self) -> Value {
        let group_types: Vec<&str> = if self.kind == GroupKind::Microsoft365 {
            vec!["Unified"]
        } else {
            Vec::new()
        };
        json!({
            "@odata.type": "#microsoft.graph.group",
            "id": self.id,
            "displayName": self.display_name,
            "mailNickname": self.mail_nickname,
            "mailEnabled": self.kind.mail_enabled(),
            "securityEnabled": self.kind.security_enabled(),
            "groupTypes": group_types,
        })
    }
}

/// A subscribed SKU (licence) of a tenant.
#[derive(Debug, Clone)]
pub(super) struct Sku {
    pub sku_id: String,
    pub part_number: String,
    pub enabled_units: u64,
}

/// A GDAP relationship between a partner tenant and a customer tenant.
#[derive(Debug, Clone)]
pub(super) struct Relationship {
    pub id: String,
    pub partner_tenant: String,
    pub customer_tenant: String,
    pub customer_name: String,
    pub display_name: String,
    pub duration: String,
    pub auto_extend: String,
    pub roles: Vec<String>,
    pub status: String,
    pub created: String,
    pub modified: String,
    pub activated: Option<String>,
    pub version: u64,
    /// Access assignments: which partner security group holds which roles.
    pub assignments: Vec<Assignment>,
}

/// A GDAP access assignment: a partner security group and the roles (a
/// subset of the relationship's) its members hold in the customer tenant.
#[derive(Debug, Clone)]
pub(super) struct Assignment {
    pub id: String,
    pub group: String,
    pub roles: Vec<String>,
    pub created: String,
}

impl Assignment {
    pub fn json(&self) -> Value {
        json!({
            "@odata.type": "#microsoft.graph.delegatedAdminAccessAssignment",
            "@odata.etag": "W/\"1\"",
            "id": self.id,
            "status": "active",
            "accessContainer": {
                "accessContainerId": self.group,
                "accessContainerType": "securityGroup",
            },
            "accessDetails": {
                "unifiedRoles": self.roles.iter()
                    .map(|r| json!({"roleDefinitionId": r}))
                    .collect::<Vec<_>>(),
            },
            "createdDateTime": self.created,
            "lastModifiedDateTime": self.created,
        })
    }
}

impl Relationship {
    pub fn json(&self) -> Value {
        json!({
            "@odata.type": "#microsoft.graph.delegatedAdminRelationship",
            "@odata.etag": format!("W/\"{}\"", self.version),
            "id": self.id,
            "displayName": self.display_name,
            "duration": self.duration,
            "customer": {"tenantId": self.customer_tenant, "displayName": self.customer_name},
            "accessDetails": {
                "unifiedRoles": self.roles.iter()
                    .map(|r| json!({"roleDefinitionId": r}))
                    .collect::<Vec<_>>(),
            },
            "status": self.status,
            "autoExtendDuration": self.auto_extend,
            "createdDateTime": self.created,
            "lastModifiedDateTime": self.modified,
            "activatedDateTime": self.activated,
            "endDateTime": null,
        })
    }

    /// Moves to `status`, stamping the change.
    pub fn set_status(&mut self, status: &str) {
        status.clone_into(&mut self.status);
        self.modified = now_rfc3339();
        self.version += 1;
        if status == "active" {
            self.activated = Some(self.modified.clone());
        }
    }
}

/// One tenant (a partner's own or a customer's).
#[derive(Debug, Default)]
pub(super) struct Tenant {
    pub name: String,
    pub partner: bool,
    pub domains: Vec<String>,
    /// Consented app registrations: client id → secret.
    pub apps: HashMap<String, String>,
    pub users: BTreeMap<String, User>,
    pub groups: BTreeMap<String, Group>,
    pub skus: BTreeMap<String, Sku>,
    /// Directory role template id → member user ids.
    pub roles: BTreeMap<String, BTreeSet<String>>,
    /// The organization's `countryLetterCode`; `US` when not set.
    pub country: Option<String>,
}

impl Tenant {
    /// The user with this object id or user principal name (any case).
    pub fn user_id(&self, id_or_upn: &str) -> Option<String> {
        if self.users.contains_key(id_or_upn) {
            return Some(id_or_upn.to_owned());
        }
        self.users
            .values()
            .find(|u| u.upn.eq_ignore_ascii_case(id_or_upn))
            .map(|u| u.id.clone())
    }

    /// Units of `sku` assigned to users.
    pub fn consumed(&self, sku: &str) -> u64 {
        self.users
            .values()
            .filter(|u| u.licenses.iter().any(|l| l == sku))
            .count() as u64
    }
}

/// An issued access token.
#[derive(Debug, Clone)]
pub(super) struct Token {
    pub tenant: String,
}

/// Everything the emulator holds.
#[derive(Debug, Default)]
pub(super) struct Directory {
    pub tenants: BTreeMap<String, Tenant>,
    pub tokens: HashMap<String, Token>,
    pub relationships: BTreeMap<String, Relationship>,
}

/// A random GUID (version 4 layout), as Graph uses for object ids.
pub(super) fn guid() -> String {
    let hi = getrandom::u64().unwrap_or(0x0123_4567_89ab_cdef);
    let lo = getrandom::u64().unwrap_or(0xfedc_ba98_7654_3210);
    let hi = (hi & !0xf000) | 0x4000;
    let lo = (lo & 0x3fff_ffff_ffff_ffff) | 0x8000_0000_0000_0000;
    format!(
        "{:08x}-{:04x}-{:04x}-{:04x}-{:012x}",
        hi >> 32,
        (hi >> 16) & 0xffff,
        hi & 0xffff,
        lo >> 48,
        lo & 0xffff_ffff_ffff
    )
}

/// The synthetic clock: 2026-01-01T00:00:00Z plus the time since the
/// process first asked. The workspace reads the wall clock only through
/// `gatehouse_core::clock`, which the sandbox does not depend on, and no
/// test relies on these values beyond their order.
pub(super) fn now_rfc3339() -> String {
    static START: std::sync::OnceLock<Instant> = std::sync::OnceLock::new();
    let start = START.get_or_init(Instant::now);
    let elapsed = start.elapsed();
    format_rfc3339(SYNTHETIC_EPOCH + elapsed.as_secs(), elapsed.subsec_millis())
}

/// Formats unix seconds as `YYYY-MM-DDThh:mm:ss.mmmZ` (civil calendar from
/// days since the epoch, after Howard Hinnant's published algorithm).
fn format_rfc3339(secs: u64, millis: u32) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1_460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!(
        "{year:04}-{month:02}-{day:02}T{:02}:{:02}:{:02}.{millis:03}Z",
        rem / 3_600,
        (rem % 3_600) / 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_the_synthetic_epoch_and_a_leap_day() {
        assert_eq!(
            format_rfc3339(SYNTHETIC_EPOCH, 0),
            "2026-01-01T00:00:00.000Z"
        );
        // 2028-02-29T12:34:56Z
        assert_eq!(format_rfc3339(1_835_440_496, 7), "2028-02-29T12:34:56.007Z");
    }

    #[test]
    fn guids_have_the_graph_shape() {
        let g = guid();
        let parts: Vec<usize> = g.split('-').map(str::len).collect();
        assert_eq!(parts, [8, 4, 4, 4, 12], "{g}");
        assert_ne!(g, guid());
    }
}
