//! Signing in to the console: an operator's password and second factor,
//! the lockout that slows down guessing, and console sessions.
//!
//! API tokens stay the way programs authenticate; a person in a browser
//! signs in with a password (stored as an argon2id hash) and a TOTP code,
//! and gets a session. The secrets themselves never reach this crate in the
//! clear: the password only as its hash, the TOTP secret only wrapped by
//! the vault's key-encryption key, a session only as the SHA-256 of the
//! cookie's value.

use async_trait::async_trait;
use time::{Duration, OffsetDateTime};

use crate::audit::AuditRecord;
use crate::id::{OperatorId, SessionId};
use crate::keys::WrappedKey;
use crate::operator::Operator;
use crate::store::StoreResult;

/// What an operator signs in with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Credentials {
    /// Whose they are.
    pub operator_id: OperatorId,
    /// The password's argon2id hash in the PHC string format; `None` until
    /// a password is set (such an operator cannot sign in).
    pub password_hash: Option<String>,
    /// The TOTP secret, wrapped by the vault's key-encryption key; `None`
    /// until the operator enrols a second factor.
    pub totp: Option<WrappedKey>,
    /// The last TOTP time step accepted: each code is good for one sign-in.
    pub totp_last_step: Option<i64>,
    /// Failed sign-ins since the last one that succeeded.
    pub failures: u32,
    /// No sign-in is accepted before this instant.
    pub locked_until: Option<OffsetDateTime>,
    /// When any of this last changed.
    pub updated_at: OffsetDateTime,
}

impl Credentials {
    /// No password, no second factor, no failures.
    pub fn empty(operator_id: OperatorId, now: OffsetDateTime) -> Self {
        Self {
            operator_id,
            password_hash: None,
            totp: None,
            totp_last_step: None,
            failures: 0,
            locked_until: None,
            updated_at: now,
        }
    }

    /// Whether sign-ins are refused at `now`.
    pub fn is_locked(&self, now: OffsetDateTime) -> bool {
        self.locked_until.is_some_and(|until| until > now)
    }
}

/// How repeated failures slow an attacker down: after `free` failures in a
/// row, each further one locks the account for `first`, doubling up to
/// `longest`. A correct sign-in (after the lock ends) resets the count.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lockout {
    /// Failures in a row that lock nothing.
    pub free: u32,
    /// The lock after the first failure beyond `free`.
    pub first: Duration,
    /// The longest lock.
    pub longest: Duration,
}

impl Default for Lockout {
    /// Five free tries, then 1 minute, 2, 4, … up to an hour.
    fn default() -> Self {
        Self {
            free: 5,
            first: Duration::minutes(1),
            longest: Duration::hours(1),
        }
    }
}

impl Lockout {
    /// Until when the account is locked after its `failures`-th failure in
    /// a row at `now`, if at all.
    pub fn until(&self, failures: u32, now: OffsetDateTime) -> Option<OffsetDateTime> {
        let beyond = failures.checked_sub(self.free)?.checked_sub(1)?;
        let factor = 1i32.checked_shl(beyond.min(30)).unwrap_or(i32::MAX);
        let lock = self
            .first
            .checked_mul(factor)
            .map_or(self.longest, |d| d.min(self.longest));
        Some(now + lock)
    }
}

/// A console session. The browser holds a random secret in a cookie; the
/// store holds only its hash.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Session {
    /// The session's id (it appears in audit records, the secret never).
    pub id: SessionId,
    /// Who signed in.
    pub operator_id: OperatorId,
    /// The SHA-256 (hex) of the cookie's secret.
    pub hash: String,
    /// Whether a second factor was checked at sign-in.
    pub second_factor: bool,
    /// When it began.
    pub created_at: OffsetDateTime,
    /// When it ends by itself.
    pub expires_at: OffsetDateTime,
    /// When it was ended early (signed out, or the operator disabled).
    pub revoked_at: Option<OffsetDateTime>,
}

impl Session {
    /// Whether it still signs its holder in at `now`.
    pub fn is_usable(&self, now: OffsetDateTime) -> bool {
        self.revoked_at.is_none() && now < self.expires_at
    }
}

/// Where credentials and sessions are kept.
#[async_trait]
pub trait SignInStore: Send + Sync {
    /// The operator's credentials (`None`: nothing set yet).
    async fn credentials(&self, operator: OperatorId) -> StoreResult<Option<Credentials>>;

    /// Stores the password hash and TOTP secret of `credentials` (creating
    /// the row if needed), resetting failures and any lock, with `audit`.
    async fn put_credentials(
        &self,
        credentials: &Credentials,
        audit: &[AuditRecord],
    ) -> StoreResult<()>;

    /// Counts a failed sign-in at `now` atomically and locks the account
    /// as `lockout` says; returns the failures in a row so far. Writes
    /// `audit` in the same transaction.
    async fn record_sign_in_failure(
        &self,
        operator: OperatorId,
        now: OffsetDateTime,
        lockout: Lockout,
        audit: &[AuditRecord],
    ) -> StoreResult<u32>;

    /// Opens `session` for a sign-in that passed: clears failures and
    /// locks and, when a TOTP code of time step `totp_step` was used,
    /// records the step, refusing (`Conflict`) a step that is not later
    /// than the last one accepted, so a code cannot be replayed.
    async fn open_session(
        &self,
        session: &Session,
        totp_step: Option<i64>,
        audit: &[AuditRecord],
    ) -> StoreResult<()>;

    /// The session whose secret hashes to `hash`, and its operator.
    async fn find_session(&self, hash: &str) -> StoreResult<(Session, Operator)>;

    /// Every operator's wrapped TOTP secret (for KEK rotation).
    async fn totp_secrets(&self) -> StoreResult<Vec<(OperatorId, WrappedKey)>>;

    /// Replaces `operator`'s TOTP secret wrapped under `from_kek` with
    /// `new` (the same secret rewrapped), with `audit`; `Stale` if it is no
    /// longer under `from_kek` (re-enrolled or rewrapped meanwhile).
    async fn rewrap_totp_secret(
        &self,
        operator: OperatorId,
        from_kek: &str,
        new: &WrappedKey,
        audit: &[AuditRecord],
    ) -> StoreResult<()>;

    /// Ends a session at `at`; `false` if it had ended already.
    async fn end_session(
        &self,
        id: SessionId,
        at: OffsetDateTime,
        audit: &[AuditRecord],
    ) -> StoreResult<bool>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_lock_starts_after_the_free_tries_and_doubles_up_to_the_longest() {
        let lockout = Lockout::default();
        let now = OffsetDateTime::UNIX_EPOCH;
        for failures in 0..=5 {
            assert_eq!(lockout.until(failures, now), None, "{failures}");
        }
        assert_eq!(lockout.until(6, now), Some(now + Duration::minutes(1)));
        assert_eq!(lockout.until(7, now), Some(now + Duration::minutes(2)));
        assert_eq!(lockout.until(8, now), Some(now + Duration::minutes(4)));
        assert_eq!(lockout.until(12, now), Some(now + Duration::hours(1)));
        assert_eq!(lockout.until(u32::MAX, now), Some(now + Duration::hours(1)));
    }

    #[test]
    fn a_session_ends_when_it_expires_or_is_revoked() {
        let now = OffsetDateTime::UNIX_EPOCH;
        let mut session = Session {
            id: SessionId::generate(now),
            operator_id: OperatorId::generate(now),
            hash: "h".into(),
            second_factor: true,
            created_at: now,
            expires_at: now + Duration::hours(8),
            revoked_at: None,
        };
        assert!(session.is_usable(now + Duration::hours(7)));
        assert!(!session.is_usable(now + Duration::hours(8)));
        session.revoked_at = Some(now);
        assert!(!session.is_usable(now));
    }
}
