//! Notifications: the durable outbox of messages to people.
//!
//! An L1 step executes at once and then tells the assigned human, who can
//! review it and ask for a rollback. The message is not sent by the wave
//! that ran the step: a [`Notification`] row is written in the same commit
//! as the step's success (so a crash can never lose it, nor send it for a
//! step that was not recorded), and a dispatcher delivers it afterwards,
//! retrying with backoff. Delivery is therefore at-least-once; the
//! notification's id travels with every attempt (`Idempotency-Key`,
//! `Message-ID`) so that receivers can drop repeats.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use time::OffsetDateTime;

use crate::error::DomainError;
use crate::id::{NotificationId, TenantId, WorkflowId};

/// The kind of the review request an L1 step sends after it executed.
pub const KIND_L1_REVIEW: &str = "l1.review";

/// The longest subject, in characters.
pub const MAX_SUBJECT_CHARS: usize = 200;

/// An e-mail address as used on the SMTP envelope: `local@domain`, at most
/// 254 characters, printable ASCII without spaces, angle brackets, commas,
/// quotes or backslashes. Deliberately stricter than RFC 5321 (no quoted
/// local parts, no address literals): it is written into `RCPT TO:<…>`
/// and into headers, so anything that could break out of them is refused.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct EmailAddress(String);

impl EmailAddress {
    /// Validates and wraps an address.
    pub fn parse(text: &str) -> Result<Self, DomainError> {
        let invalid = |reason: &str| {
            Err(DomainError::invalid(
                "email",
                format!(
                    "`{}` is not an e-mail address: {reason}",
                    text.escape_debug()
                ),
            ))
        };
        if text.is_empty() || text.len() > 254 {
            return invalid("it must be 1 to 254 characters");
        }
        if !text.bytes().all(|b| {
            b.is_ascii_graphic() && !matches!(b, b'<' | b'>' | b',' | b'"' | b'\\' | b'(' | b')')
        }) {
            return invalid(
                "only printable ASCII without spaces, quotes, brackets, commas or backslashes",
            );
        }
        let Some((local, domain)) = text.split_once('@') else {
            return invalid("it has no `@`");
        };
        if local.is_empty() || local.len() > 64 {
            return invalid("the part before `@` must be 1 to 64 characters");
        }
        let labels_ok = domain.split('.').all(|label| {
            !label.is_empty()
                && !label.starts_with('-')
                && !label.ends_with('-')
                && label
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-')
        });
        if domain.is_empty() || !labels_ok {
            return invalid("the domain must be dot-separated labels of letters, digits and `-`");
        }
        Ok(Self(text.to_owned()))
    }

    /// The address as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for EmailAddress {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for EmailAddress {
    type Err = DomainError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::parse(text)
    }
}

impl<'de> Deserialize<'de> for EmailAddress {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        Self::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// Where a notification is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum NotificationState {
    /// Not delivered yet; (re)tried at `next_attempt_at`.
    Pending,
    /// Every configured channel accepted it.
    Delivered,
    /// Given up: a channel refused it for good, or attempts ran out.
    Failed,
}

impl NotificationState {
    /// All states.
    pub const ALL: [Self; 3] = [Self::Pending, Self::Delivered, Self::Failed];

    /// The state's name as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Pending => "pending",
            Self::Delivered => "delivered",
            Self::Failed => "failed",
        }
    }
}

impl FromStr for NotificationState {
    type Err = DomainError;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|s| s.as_str() == text)
            .ok_or_else(|| {
                DomainError::invalid("state", format!("`{text}` is not a notification state"))
            })
    }
}

impl fmt::Display for NotificationState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A message to a person, in the outbox until it is delivered.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Notification {
    /// The notification's id; receivers deduplicate on it.
    pub id: NotificationId,
    /// The tenant the workflow works for, if known.
    pub tenant_id: Option<TenantId>,
    /// The workflow instance.
    pub instance_id: WorkflowId,
    /// The step it is about.
    pub step_id: String,
    /// What it is: [`KIND_L1_REVIEW`].
    pub kind: String,
    /// The assigned human; `None` means the configured default reviewer,
    /// resolved when it is sent.
    pub recipient: Option<EmailAddress>,
    /// One line, for the e-mail subject.
    pub subject: String,
    /// What happened and what the reviewer can do (action, parameters, the
    /// instance and step, how to ask for a rollback).
    pub detail: Value,
    /// When it was queued.
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// Delivery attempts made so far.
    pub attempts: u32,
    /// When the next attempt is due (`Pending`), `None` otherwise.
    #[serde(with = "time::serde::rfc3339::option")]
    pub next_attempt_at: Option<OffsetDateTime>,
    /// Where it is.
    pub state: NotificationState,
    /// Why the last attempt failed (never holds secrets).
    pub last_error: Option<String>,
    /// When it was delivered.
    #[serde(with = "time::serde::rfc3339::option")]
    pub delivered_at: Option<OffsetDateTime>,
}

impl Notification {
    /// A new, pending notification, due at once. The subject is cut to one
    /// line of at most [`MAX_SUBJECT_CHARS`] characters.
    #[expect(
        clippy::too_many_arguments,
        reason = "each argument is a distinct field of the notification"
    )]
    pub fn queue(
        instance_id: WorkflowId,
        tenant_id: Option<TenantId>,
        step_id: &str,
        kind: &str,
        recipient: Option<EmailAddress>,
        subject: &str,
        detail: Value,
        now: OffsetDateTime,
    ) -> Self {
        let subject: String = subject
            .chars()
            .map(|c| if c.is_control() { ' ' } else { c })
            .take(MAX_SUBJECT_CHARS)
            .collect();
        Self {
            id: NotificationId::generate(now),
            tenant_id,
            instance_id,
            step_id: step_id.to_owned(),
            kind: kind.to_owned(),
            recipient,
            subject,
            detail,
            created_at: now,
            attempts: 0,
            next_attempt_at: Some(now),
            state: NotificationState::Pending,
            last_error: None,
            delivered_at: None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_that_could_break_out_of_an_envelope_are_refused() {
        for good in [
            "owner@example.com",
            "a.b+tag@sub.example-x.org",
            "x@localhost",
        ] {
            assert!(EmailAddress::parse(good).is_ok(), "{good}");
        }
        for bad in [
            "",
            "no-at",
            "@example.com",
            "a@",
            "a@-x.com",
            "a@x..com",
            "a b@x.com",
            "a@x.com>\r\nRCPT TO:<evil@x.com",
            "a@x.com\n",
            "\"q\"@x.com",
            "a,b@x.com",
            "ü@x.com",
        ] {
            assert!(EmailAddress::parse(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn a_queued_notification_is_pending_and_due_with_a_one_line_subject() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let n = Notification::queue(
            WorkflowId::generate(now),
            None,
            "grant",
            KIND_L1_REVIEW,
            None,
            "line one\r\nBcc: evil@x.com",
            Value::Null,
            now,
        );
        assert_eq!(n.state, NotificationState::Pending);
        assert_eq!(n.next_attempt_at, Some(now));
        assert!(!n.subject.contains('\n') && !n.subject.contains('\r'));
        assert!(n.id.to_string().starts_with("ntf_"));
    }
}
