//! SCIM pushes as lifecycle events: when an identity provider (Microsoft
//! Entra ID, Okta) provisions users into a tenant's SCIM endpoint
//! (`/scim/v2/{tenant}/Users`), each accepted write becomes a lifecycle
//! event of the person, so SCIM-provisioned people get their access like
//! anyone else.
//!
//! - The person's key is the user's `externalId` (Entra sends the user's
//!   object id or mail nickname there), else its `userName`.
//! - A user written `active: true` is a `hire` when the person is new or
//!   terminated, an `update` otherwise; `active: false` (Entra's soft
//!   delete, or the user leaving the provisioning scope) and a `DELETE` are
//!   a `terminate`.
//! - The event id is `scim:{resource id}:{version}` (`:deleted` for a
//!   deletion), so a repeated write changes nothing.
//! - Attributes map onto the canonical schema: `name.givenName`,
//!   `name.familyName`, `displayName`, the primary (else first) e-mail,
//!   `userName`, `title`, `userType` (employment type), the first
//!   address's `locality` (location), and from the Enterprise User
//!   extension `department` and `manager.value`.

use std::collections::BTreeMap;

use gatehouse_identity::{EventKind, LifecycleEvent};
use serde_json::Value;
use time::OffsetDateTime;

const ENTERPRISE: &str = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User";

fn text(value: Option<&Value>) -> Option<String> {
    value
        .and_then(Value::as_str)
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_owned)
}

/// The person's key for a SCIM user: `externalId`, else `userName`.
pub fn person_key(user: &Value) -> Option<String> {
    text(user.get("externalId")).or_else(|| text(user.get("userName")))
}

/// The canonical attributes a SCIM user carries.
pub fn attributes(user: &Value) -> BTreeMap<String, Option<String>> {
    let mut out = BTreeMap::new();
    let mut put = |name: &str, value: Option<String>| {
        if let Some(value) = value {
            out.insert(name.to_owned(), Some(value));
        }
    };
    put("given_name", text(user.pointer("/name/givenName")));
    put("family_name", text(user.pointer("/name/familyName")));
    put("display_name", text(user.get("displayName")));
    put("user_name", text(user.get("userName")));
    put("title", text(user.get("title")));
    put("employment_type", text(user.get("userType")));
    let emails = user.get("emails").and_then(Value::as_array);
    let email = emails.and_then(|all| {
        all.iter()
            .find(|e| e.get("primary").and_then(Value::as_bool) == Some(true))
            .or_else(|| all.first())
            .and_then(|e| text(e.get("value")))
    });
    put("email", email);
    put(
        "location",
        user.get("addresses")
            .and_then(Value::as_array)
            .and_then(|a| a.first())
            .and_then(|a| text(a.get("locality"))),
    );
    if let Some(enterprise) = user.get(ENTERPRISE) {
        put("department", text(enterprise.get("department")));
        put("manager", text(enterprise.pointer("/manager/value")));
    }
    out
}

/// The lifecycle event for a user as written (`deleted`: it was deleted),
/// given whether the person is known and active now. `None` when the user
/// names no key.
pub fn event(
    user: &Value,
    deleted: bool,
    person_active: Option<bool>,
    now: OffsetDateTime,
) -> Option<LifecycleEvent> {
    let person = person_key(user)?;
    let id = text(user.get("id")).unwrap_or_default();
    let version = user
        .pointer("/meta/version")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .trim_start_matches("W/")
        .trim_matches('"')
        .to_owned();
    let active = user.get("active").and_then(Value::as_bool).unwrap_or(true);
    let kind = if deleted || !active {
        EventKind::Terminate
    } else if person_active == Some(true) {
        EventKind::Update
    } else {
        EventKind::Hire
    };
    Some(LifecycleEvent {
        id: if deleted {
            format!("scim:{id}:deleted")
        } else {
            format!("scim:{id}:{version}")
        },
        person,
        kind,
        source: "scim".to_owned(),
        occurred_at: now,
        attributes: if kind == EventKind::Terminate {
            BTreeMap::new()
        } else {
            attributes(user)
        },
        person_kind: None,
        roles: None,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn entra_user(active: bool) -> Value {
        json!({
            "id": "u1",
            "externalId": "3f1c9a",
            "userName": "ada@contoso.example",
            "active": active,
            "displayName": "Ada Lovelace",
            "title": "Analyst",
            "name": {"givenName": "Ada", "familyName": "Lovelace"},
            "emails": [{"value": "ada.l@contoso.example", "type": "work"}, {"value": "ada@contoso.example", "primary": true}],
            "addresses": [{"type": "work", "locality": "Paris"}],
            ENTERPRISE: {"department": "Sales", "manager": {"value": "boss-1"}},
            "meta": {"version": "W/\"3\""}
        })
    }

    #[test]
    fn an_entra_user_maps_onto_the_canonical_attributes() {
        let event = event(&entra_user(true), false, None, OffsetDateTime::UNIX_EPOCH).unwrap();
        assert_eq!(event.kind, EventKind::Hire);
        assert_eq!(event.person, "3f1c9a");
        assert_eq!(event.id, "scim:u1:3");
        assert_eq!(event.source, "scim");
        let a = |k: &str| event.attributes.get(k).cloned().flatten();
        assert_eq!(a("email").as_deref(), Some("ada@contoso.example"));
        assert_eq!(a("department").as_deref(), Some("Sales"));
        assert_eq!(a("manager").as_deref(), Some("boss-1"));
        assert_eq!(a("location").as_deref(), Some("Paris"));
        assert_eq!(a("given_name").as_deref(), Some("Ada"));
        assert!(event.validate().is_ok());
    }

    #[test]
    fn inactive_or_deleted_is_a_leaver_and_a_known_active_person_moves() {
        let now = OffsetDateTime::UNIX_EPOCH;
        assert_eq!(
            event(&entra_user(false), false, Some(true), now).map(|e| e.kind),
            Some(EventKind::Terminate)
        );
        let deleted = event(&entra_user(true), true, Some(true), now).unwrap();
        assert_eq!(
            (deleted.kind, deleted.id.as_str()),
            (EventKind::Terminate, "scim:u1:deleted")
        );
        assert_eq!(
            event(&entra_user(true), false, Some(true), now).map(|e| e.kind),
            Some(EventKind::Update)
        );
        assert_eq!(
            event(&entra_user(true), false, Some(false), now).map(|e| e.kind),
            Some(EventKind::Hire),
            "a rehire"
        );
        assert!(
            event(&json!({"id": "x"}), false, None, now).is_none(),
            "no key, no event"
        );
    }
}
