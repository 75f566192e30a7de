//! Typed, prefixed ids: `ten_01jd8…`, `op_01jd8…`, `apr_01jd8…`.
//!
//! The format is TypeID's: a prefix naming the kind of thing, an underscore,
//! and a UUIDv7 in 26 lowercase Crockford base-32 characters. The UUID is
//! time-ordered, so ids sort by creation time both as strings and in
//! database indexes, and the prefix makes an id readable in logs and
//! impossible to pass where another kind is expected.

use std::fmt;
use std::str::FromStr;

use std::sync::Mutex;

use time::OffsetDateTime;
use uuid::timestamp::context::ContextV7;
use uuid::{Timestamp, Uuid};

use crate::error::DomainError;

const ALPHABET: &[u8; 32] = b"0123456789abcdefghjkmnpqrstvwxyz";
const ENCODED_LEN: usize = 26;

/// Encodes 128 bits as 26 Crockford base-32 characters (the first carries 3 bits).
fn encode(value: u128) -> String {
    let mut out = [0u8; ENCODED_LEN];
    for (i, slot) in out.iter_mut().enumerate() {
        let shift = 5 * (ENCODED_LEN - 1 - i);
        let index = usize::try_from((value >> shift) & 0x1f).unwrap_or(0);
        *slot = ALPHABET[index];
    }
    out.iter().map(|&b| char::from(b)).collect()
}

fn decode(text: &str) -> Option<u128> {
    if text.len() != ENCODED_LEN {
        return None;
    }
    let mut value: u128 = 0;
    for (i, byte) in text.bytes().enumerate() {
        let digit = ALPHABET.iter().position(|&a| a == byte)?;
        // The first character carries only the top 3 bits of 128.
        if i == 0 && digit > 7 {
            return None;
        }
        value = (value << 5) | u128::try_from(digit).ok()?;
    }
    Some(value)
}

/// Keeps ids made in the same millisecond in creation order (RFC 9562
/// §6.2, method 1: a counter seeded at random each millisecond).
static ID_CONTEXT: Mutex<ContextV7> = Mutex::new(ContextV7::new());

/// A new UUIDv7 for the instant `at`, greater than every one this process
/// made before for the same or an earlier instant.
pub fn uuid_v7(at: OffsetDateTime) -> Uuid {
    let nanos = at.unix_timestamp_nanos().max(0);
    let secs = u64::try_from(nanos / 1_000_000_000).unwrap_or(0);
    let subsec = u32::try_from(nanos % 1_000_000_000).unwrap_or(0);
    Uuid::new_v7(Timestamp::from_unix(&ID_CONTEXT, secs, subsec))
}

/// Defines a typed id with the given prefix.
macro_rules! typed_id {
    ($(#[$meta:meta])* $name:ident, $prefix:literal) => {
        $(#[$meta])*
        #[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub struct $name(Uuid);

        impl $name {
            /// The prefix this kind of id carries.
            pub const PREFIX: &'static str = $prefix;

            /// A fresh id, time-ordered at `at`.
            pub fn generate(at: OffsetDateTime) -> Self {
                Self(uuid_v7(at))
            }

            /// The UUID inside.
            pub fn uuid(&self) -> Uuid {
                self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, "{}_{}", $prefix, encode(self.0.as_u128()))
            }
        }

        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                fmt::Display::fmt(self, f)
            }
        }

        impl FromStr for $name {
            type Err = DomainError;

            fn from_str(text: &str) -> Result<Self, Self::Err> {
                let rest = text
                    .strip_prefix(concat!($prefix, "_"))
                    .ok_or_else(|| DomainError::invalid("id", format!("expected an id starting with `{}_`", $prefix)))?;
                decode(rest)
                    .map(|v| Self(Uuid::from_u128(v)))
                    .ok_or_else(|| DomainError::invalid("id", format!("`{text}` is not a well-formed {} id", $prefix)))
            }
        }

        impl serde::Serialize for $name {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }

        impl<'de> serde::Deserialize<'de> for $name {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }

        impl utoipa::PartialSchema for $name {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .pattern(Some(concat!("^", $prefix, "_[0-7][0-9a-hjkmnp-tv-z]{25}$")))
                    .examples([concat!($prefix, "_01jd8x3k2q9f6v0c4m7r5t8w1y")])
                    .into()
            }
        }

        impl utoipa::ToSchema for $name {}
    };
}

typed_id!(
    /// A client tenant.
    TenantId, "ten"
);
typed_id!(
    /// A named group of tenants an operator's scope may name.
    TenantGroupId, "tgr"
);

typed_id!(
    /// An MSP operator (staff account).
    OperatorId, "op"
);
typed_id!(
    /// An API token of an operator.
    TokenId, "tok"
);
typed_id!(
    /// A console session of an operator (signed in with a password).
    SessionId, "ses"
);
typed_id!(
    /// An inbound event in the inbox.
    EventId, "evt"
);
typed_id!(
    /// A workflow instance.
    WorkflowId, "wf"
);
typed_id!(
    /// An approval request of a gated (L2) step.
    ApprovalId, "apr"
);
typed_id!(
    /// A human task of a human-only (L3) step.
    HumanTaskId, "tsk"
);
typed_id!(
    /// A notification in the outbox (an L1 review request).
    NotificationId, "ntf"
);
typed_id!(
    /// An item of an onboarding's documentation checklist.
    ChecklistItemId, "chk"
);
typed_id!(
    /// A tenant's SLA clock (started at go-live).
    SlaId, "sla"
);
typed_id!(
    /// A connector of a tenant (an external system its actions reach).
    ConnectorId, "con"
);
typed_id!(
    /// A delivery attempt of an inbound webhook.
    HookDeliveryId, "hkd"
);
typed_id!(
    /// A knowledge-base article.
    ArticleId, "kba"
);

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn ids_carry_their_prefix_and_round_trip() {
        let at = OffsetDateTime::UNIX_EPOCH;
        let id = TenantId::generate(at);
        let text = id.to_string();
        assert!(text.starts_with("ten_"), "{text}");
        assert_eq!(text.len(), 4 + ENCODED_LEN);
        assert_eq!(text.parse::<TenantId>().unwrap(), id);
    }

    #[test]
    fn an_id_of_another_kind_is_refused() {
        let op = OperatorId::generate(OffsetDateTime::UNIX_EPOCH).to_string();
        let err = op.parse::<TenantId>().unwrap_err();
        assert!(err.to_string().contains("ten_"), "{err}");
    }

    #[test]
    fn malformed_ids_are_refused() {
        for bad in [
            "ten_",
            "ten_8zzzzzzzzzzzzzzzzzzzzzzzzz",
            "ten_0000000000000000000000000!",
            "TEN_00000000000000000000000000",
        ] {
            assert!(bad.parse::<TenantId>().is_err(), "{bad}");
        }
    }

    #[test]
    fn ids_made_in_the_same_instant_keep_their_order() {
        let at = OffsetDateTime::UNIX_EPOCH + time::Duration::days(20_000);
        let ids: Vec<String> = (0..1000)
            .map(|_| TenantId::generate(at).to_string())
            .collect();
        let mut sorted = ids.clone();
        sorted.sort();
        assert_eq!(ids, sorted);
    }

    #[test]
    fn later_ids_sort_after_earlier_ones() {
        let early = TenantId::generate(OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(10));
        let late = TenantId::generate(OffsetDateTime::UNIX_EPOCH + time::Duration::seconds(11));
        assert!(early.to_string() < late.to_string());
    }

    proptest! {
        #[test]
        fn encoding_round_trips_and_preserves_order(a: u128, b: u128) {
            prop_assert_eq!(decode(&encode(a)), Some(a));
            prop_assert_eq!(a.cmp(&b), encode(a).cmp(&encode(b)));
        }
    }
}
