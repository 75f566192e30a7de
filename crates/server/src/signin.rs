//! Operators signing in to the console: argon2id passwords, TOTP second
//! factors (RFC 6238), lockout on repeated failures, and sessions.
//!
//! - A password is stored only as its argon2id hash (PHC string, the
//!   `argon2` crate's defaults: 19 MiB, 2 passes, 1 lane, as OWASP
//!   recommends).
//! - A TOTP secret is 160 random bits drawn by the key provider and stored
//!   wrapped by the key-encryption key, bound to a reserved owner id
//!   ([`gatehouse_vault::TOTP_OWNER`]) that no tenant can have; a KEK
//!   rotation rewraps them (`Keyring::with_totp_secrets`). Codes are 6 digits over
//!   30-second steps with HMAC-SHA-1 (what every authenticator app
//!   speaks); one step of clock skew either way is accepted, and each step
//!   signs in at most once.
//! - A wrong name, password or code all give the same answer, and a name
//!   that does not exist costs the same hashing work as one that does.
//!   After [`Lockout::free`] failures in a row the account is locked for a
//!   minute, doubling up to an hour.
//! - A session is 256 random bits in a cookie; the store keeps only its
//!   SHA-256. Sessions end after [`SignInConfig::session_ttl`], at sign-out,
//!   or as soon as the operator is disabled.

use std::sync::LazyLock;

use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gatehouse_core::audit::{Provenance, action as audit_action};
use gatehouse_core::id::{OperatorId, SessionId, TenantId};
use gatehouse_core::operator::{Operator, OperatorName};
use gatehouse_core::signin::{Credentials, Lockout, Session};
use gatehouse_core::store::StoreError;
use hmac::{Hmac, Mac};
use serde_json::json;
use sha2::{Digest, Sha256};
use time::{Duration, OffsetDateTime};
use zeroize::Zeroizing;

use crate::app::{Actor, App, Via};
use crate::authz::{Permission, authorize};
use crate::error::AppError;

/// The answer to every wrong name, password or code.
const WRONG: &str = "the name, password or code is wrong";

/// The shortest password accepted.
pub const MIN_PASSWORD_CHARS: usize = 12;
/// The longest password accepted (hashing is deliberately slow).
pub const MAX_PASSWORD_BYTES: usize = 1024;

/// Seconds per TOTP step.
const TOTP_PERIOD: i64 = 30;
/// Bytes of a TOTP secret (160 bits, RFC 4226's recommendation).
const TOTP_SECRET_BYTES: usize = 20;

/// How sign-in behaves.
#[derive(Debug, Clone, Copy)]
pub struct SignInConfig {
    /// How long a session lasts.
    pub session_ttl: Duration,
    /// How repeated failures lock an account.
    pub lockout: Lockout,
}

impl Default for SignInConfig {
    /// Eight-hour sessions (a working day), the default lockout.
    fn default() -> Self {
        Self {
            session_ttl: Duration::hours(8),
            lockout: Lockout::default(),
        }
    }
}

/// A TOTP secret to hand to the operator's authenticator app, once.
#[derive(Clone)]
pub struct TotpEnrollment {
    /// The secret in base32 (what apps take when typed in).
    pub secret: Zeroizing<String>,
    /// The `otpauth://` URI (what a QR code carries).
    pub uri: Zeroizing<String>,
}

impl std::fmt::Debug for TotpEnrollment {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("TotpEnrollment(<redacted>)")
    }
}

/// A session just opened, and the secret for the browser's cookie (which
/// exists nowhere else).
pub struct SignedIn {
    /// The session.
    pub session: Session,
    /// The operator.
    pub operator: Operator,
    /// The cookie's value.
    pub secret: Zeroizing<String>,
}

impl std::fmt::Debug for SignedIn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SignedIn")
            .field("session", &self.session.id)
            .field("operator", &self.operator.name)
            .finish_non_exhaustive()
    }
}

fn totp_owner() -> Result<TenantId, AppError> {
    gatehouse_vault::totp_owner().map_err(AppError::from)
}

/// The argon2id hash of `password` (PHC string), after checking its length.
pub fn hash_password(password: &str) -> Result<String, AppError> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(AppError::Invalid(format!(
            "a password needs at least {MIN_PASSWORD_CHARS} characters"
        )));
    }
    if password.len() > MAX_PASSWORD_BYTES {
        return Err(AppError::Invalid(format!(
            "a password may have at most {MAX_PASSWORD_BYTES} bytes"
        )));
    }
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|e| AppError::Internal(format!("randomness: {e}")))?;
    let salt = SaltString::encode_b64(&salt).map_err(|e| AppError::Internal(e.to_string()))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|hash| hash.to_string())
        .map_err(|e| AppError::Internal(format!("hashing a password: {e}")))
}

/// A random password of 24 characters (144 bits), for a first sign-in.
pub fn generate_password() -> Result<Zeroizing<String>, AppError> {
    let mut bytes = Zeroizing::new([0u8; 18]);
    getrandom::fill(bytes.as_mut()).map_err(|e| AppError::Internal(format!("randomness: {e}")))?;
    Ok(Zeroizing::new(URL_SAFE_NO_PAD.encode(bytes.as_ref())))
}

/// The current TOTP code of a base32 `secret` (as an authenticator app
/// shows it), for scripts and the demo.
pub fn current_code(secret: &str, now: OffsetDateTime) -> Result<String, AppError> {
    let cleaned: String = secret
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '=')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let bytes = data_encoding::BASE32_NOPAD
        .decode(cleaned.as_bytes())
        .map_err(|e| AppError::Invalid(format!("the secret is not base32: {e}")))?;
    Ok(format!("{:06}", totp_code(&bytes, totp_step(now))))
}

/// Whether `password` matches the PHC string `hash`.
fn password_matches(password: &str, hash: &str) -> bool {
    if password.len() > MAX_PASSWORD_BYTES {
        return false;
    }
    PasswordHash::new(hash).is_ok_and(|parsed| {
        Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok()
    })
}

/// A hash to check against when there is no real one, so that an unknown
/// name takes as long as a wrong password.
static DECOY: LazyLock<Option<String>> =
    LazyLock::new(|| hash_password("decoy password, never matches").ok());

fn spend_decoy_work(password: &str) {
    if let Some(hash) = DECOY.as_deref() {
        let _ = password_matches(password, hash);
    }
}

/// The 6-digit TOTP code of `secret` at time step `step` (RFC 6238 over
/// RFC 4226's HOTP with HMAC-SHA-1).
pub fn totp_code(secret: &[u8], step: i64) -> u32 {
    let Ok(mut mac) = Hmac::<sha1::Sha1>::new_from_slice(secret) else {
        // HMAC takes keys of any length; unreachable, and never a match.
        return u32::MAX;
    };
    mac.update(&step.to_be_bytes());
    let digest = mac.finalize().into_bytes();
    let offset = usize::from(digest[digest.len() - 1] & 0x0f);
    let binary = u32::from_be_bytes([
        digest[offset] & 0x7f,
        digest[offset + 1],
        digest[offset + 2],
        digest[offset + 3],
    ]);
    binary % 1_000_000
}

/// The time step of `now`.
pub fn totp_step(now: OffsetDateTime) -> i64 {
    now.unix_timestamp().div_euclid(TOTP_PERIOD)
}

/// The step whose code `code` is, within one step of `now`, if any.
fn totp_match(secret: &[u8], code: &str, now: OffsetDateTime) -> Option<i64> {
    let code = code.trim();
    if code.len() != 6 || !code.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let code: u32 = code.parse().ok()?;
    let step = totp_step(now);
    // Latest first, so a code that is valid twice records the later step.
    [step + 1, step, step - 1]
        .into_iter()
        .find(|s| totp_code(secret, *s) == code)
}

fn session_hash(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// The CSRF token of the session whose cookie holds `secret`: a keyed hash,
/// so a page can embed it without revealing the cookie, and another site
/// (which cannot read the cookie) cannot compute it.
pub fn csrf_token(secret: &str) -> String {
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return String::new();
    };
    mac.update(b"gatehouse console csrf");
    URL_SAFE_NO_PAD.encode(mac.finalize().into_bytes())
}

impl App {
    /// Whether `actor` may manage `operator`'s credentials: admins may
    /// anyone's, everyone their own.
    fn may_manage_credentials(&self, actor: &Actor, operator: &Operator) -> Result<(), AppError> {
        match actor {
            Actor::Operator { operator: me, .. } if me.id == operator.id => Ok(()),
            _ => authorize(actor, Permission::ManageOperators),
        }
    }

    async fn operator_named(&self, name: &OperatorName) -> Result<Operator, AppError> {
        self.store
            .find_operator_by_name(name)
            .await
            .map_err(|err| match err {
                StoreError::NotFound(_) => AppError::not_found("operator", name),
                other => other.into(),
            })
    }

    async fn credentials_of(&self, operator: OperatorId) -> Result<Credentials, AppError> {
        Ok(self
            .store
            .credentials(operator)
            .await?
            .unwrap_or_else(|| Credentials::empty(operator, self.now())))
    }

    /// Sets `name`'s console password (admins for anyone, operators for
    /// themselves). Clears failures and any lock.
    pub async fn set_password(
        &self,
        actor: &Actor,
        name: &OperatorName,
        password: &str,
    ) -> Result<(), AppError> {
        let operator = self.operator_named(name).await?;
        self.may_manage_credentials(actor, &operator)?;
        let hash = hash_password(password)?;
        let now = self.now();
        let mut credentials = self.credentials_of(operator.id).await?;
        credentials.password_hash = Some(hash);
        credentials.updated_at = now;
        let by = actor.provenance(now);
        let record = by.record(None, audit_action::PASSWORD_SET, operator.id, json!({}));
        self.store.put_credentials(&credentials, &[record]).await?;
        tracing::info!(operator = %operator.id, "console password set");
        Ok(())
    }

    /// Gives `name` a new TOTP secret (replacing any earlier one) and
    /// returns it for their authenticator app; it is shown this once.
    pub async fn enroll_totp(
        &self,
        actor: &Actor,
        name: &OperatorName,
    ) -> Result<TotpEnrollment, AppError> {
        let operator = self.operator_named(name).await?;
        self.may_manage_credentials(actor, &operator)?;
        let (key, wrapped) = self
            .keyring
            .provider()
            .generate(totp_owner()?)
            .await
            .map_err(AppError::from)?;
        let secret = &key.expose()[..TOTP_SECRET_BYTES];
        let base32 = Zeroizing::new(data_encoding::BASE32_NOPAD.encode(secret));
        let uri = Zeroizing::new(format!(
            "otpauth://totp/Gatehouse:{name}?secret={}&issuer=Gatehouse&algorithm=SHA1&digits=6&period={TOTP_PERIOD}",
            base32.as_str()
        ));
        let now = self.now();
        let mut credentials = self.credentials_of(operator.id).await?;
        credentials.totp = Some(wrapped);
        credentials.totp_last_step = None;
        credentials.updated_at = now;
        let by = actor.provenance(now);
        let record = by.record(None, audit_action::TOTP_ENROLLED, operator.id, json!({}));
        self.store.put_credentials(&credentials, &[record]).await?;
        tracing::info!(operator = %operator.id, "TOTP second factor enrolled");
        Ok(TotpEnrollment {
            secret: base32,
            uri,
        })
    }

    /// Signs `name` in with `password` and, when they have enrolled one, a
    /// TOTP `code`. Every wrong answer is the same 401; a locked account
    /// gets 429 with the time the lock ends.
    pub async fn sign_in(
        &self,
        config: &SignInConfig,
        name: &str,
        password: &str,
        code: Option<&str>,
    ) -> Result<SignedIn, AppError> {
        let Ok(name) = OperatorName::parse(name.trim()) else {
            spend_decoy_work(password);
            return Err(AppError::Unauthenticated(WRONG));
        };
        let operator = match self.store.find_operator_by_name(&name).await {
            Ok(operator) => operator,
            Err(StoreError::NotFound(_)) => {
                spend_decoy_work(password);
                return Err(AppError::Unauthenticated(WRONG));
            }
            Err(err) => return Err(err.into()),
        };
        let now = self.now();
        let credentials = self.store.credentials(operator.id).await?;
        let Some(credentials) = credentials.filter(|c| c.password_hash.is_some()) else {
            spend_decoy_work(password);
            return Err(AppError::Unauthenticated(WRONG));
        };
        if credentials.is_locked(now) {
            let until = credentials.locked_until.unwrap_or(now);
            self.refuse_sign_in(&operator, "locked", None).await?;
            return Err(locked(until));
        }
        let hash = credentials.password_hash.as_deref().unwrap_or_default();
        if !password_matches(password, hash) {
            return self.count_failure(config, &operator, "password").await;
        }
        let step = match &credentials.totp {
            None => None,
            Some(wrapped) => {
                let key = self
                    .keyring
                    .provider()
                    .unwrap(totp_owner()?, wrapped)
                    .await
                    .map_err(AppError::from)?;
                let secret = &key.expose()[..TOTP_SECRET_BYTES];
                match code.and_then(|code| totp_match(secret, code, now)) {
                    Some(step) => Some(step),
                    None => return self.count_failure(config, &operator, "code").await,
                }
            }
        };
        if operator.disabled {
            self.refuse_sign_in(&operator, "disabled", None).await?;
            return Err(AppError::Unauthenticated(WRONG));
        }
        let mut bytes = Zeroizing::new([0u8; 32]);
        getrandom::fill(bytes.as_mut())
            .map_err(|e| AppError::Internal(format!("randomness: {e}")))?;
        let secret = Zeroizing::new(URL_SAFE_NO_PAD.encode(bytes.as_ref()));
        let session = Session {
            id: SessionId::generate(now),
            operator_id: operator.id,
            hash: session_hash(&secret),
            second_factor: step.is_some(),
            created_at: now,
            expires_at: now + config.session_ttl,
            revoked_at: None,
        };
        let by = Provenance {
            actor: operator.id.to_string(),
            token: None,
            reason: Some(format!("console session {}", session.id)),
            at: now,
        };
        let record = by.record(
            None,
            audit_action::SIGNED_IN,
            operator.id,
            json!({
                "session": session.id.to_string(),
                "second_factor": session.second_factor,
            }),
        );
        match self.store.open_session(&session, step, &[record]).await {
            Ok(()) => {}
            Err(StoreError::Conflict(_)) => {
                // The code was used already (a replay, or a double submit).
                return self
                    .count_failure(config, &operator, "code used already")
                    .await;
            }
            Err(err) => return Err(err.into()),
        }
        tracing::info!(operator = %operator.id, session = %session.id, "signed in");
        Ok(SignedIn {
            session,
            operator,
            secret,
        })
    }

    async fn refuse_sign_in(
        &self,
        operator: &Operator,
        reason: &str,
        failures: Option<u32>,
    ) -> Result<(), AppError> {
        let by = Provenance::system("console sign-in", self.now());
        let record = by.record(
            None,
            audit_action::SIGN_IN_FAILED,
            operator.id,
            json!({ "reason": reason, "failures": failures }),
        );
        self.store.queue_audit(&[record]).await?;
        Ok(())
    }

    async fn count_failure<T>(
        &self,
        config: &SignInConfig,
        operator: &Operator,
        reason: &str,
    ) -> Result<T, AppError> {
        let now = self.now();
        let by = Provenance::system("console sign-in", now);
        let record = by.record(
            None,
            audit_action::SIGN_IN_FAILED,
            operator.id,
            json!({ "reason": reason }),
        );
        let failures = self
            .store
            .record_sign_in_failure(operator.id, now, config.lockout, &[record])
            .await?;
        tracing::warn!(operator = %operator.id, failures, reason, "sign-in refused");
        match config.lockout.until(failures, now) {
            Some(until) => Err(locked(until)),
            None => Err(AppError::Unauthenticated(WRONG)),
        }
    }

    /// The operator whose session cookie holds `secret`.
    pub async fn authenticate_session(&self, secret: &str) -> Result<(Actor, Session), AppError> {
        const INVALID: &str = "the session has ended; sign in again";
        let (session, operator) = match self.store.find_session(&session_hash(secret)).await {
            Ok(found) => found,
            Err(StoreError::NotFound(_)) => return Err(AppError::Unauthenticated(INVALID)),
            Err(err) => return Err(err.into()),
        };
        if !session.is_usable(self.now()) || operator.disabled {
            return Err(AppError::Unauthenticated(INVALID));
        }
        let actor = Actor::Operator {
            operator,
            via: Via::Session {
                id: session.id,
                second_factor: session.second_factor,
            },
        };
        Ok((actor, session))
    }

    /// Ends `session` (signing out).
    pub async fn sign_out(&self, session: &Session) -> Result<(), AppError> {
        let now = self.now();
        let by = Provenance {
            actor: session.operator_id.to_string(),
            token: None,
            reason: Some(format!("console session {}", session.id)),
            at: now,
        };
        let record = by.record(
            None,
            audit_action::SIGNED_OUT,
            session.operator_id,
            json!({ "session": session.id.to_string() }),
        );
        self.store.end_session(session.id, now, &[record]).await?;
        Ok(())
    }
}

fn locked(until: OffsetDateTime) -> AppError {
    let when = until
        .format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default();
    AppError::BadRequest {
        status: axum::http::StatusCode::TOO_MANY_REQUESTS,
        code: "sign_in_locked",
        message: format!("too many failed sign-ins; try again after {when}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn totp_matches_the_rfc_6238_test_vectors() {
        // RFC 6238 Appendix B, SHA-1, secret "12345678901234567890"; the
        // RFC prints 8 digits, of which a 6-digit code is the last six.
        let secret = b"12345678901234567890";
        for (time, eight) in [
            (59, 94_287_082u32),
            (1_111_111_109, 7_081_804),
            (1_111_111_111, 14_050_471),
            (1_234_567_890, 89_005_924),
            (2_000_000_000, 69_279_037),
            (20_000_000_000, 65_353_130),
        ] {
            let now = OffsetDateTime::from_unix_timestamp(time).unwrap();
            assert_eq!(
                totp_code(secret, totp_step(now)),
                eight % 1_000_000,
                "{time}"
            );
        }
    }

    #[test]
    fn a_code_is_accepted_one_step_either_way_and_no_further() {
        let secret = b"12345678901234567890";
        let now = OffsetDateTime::from_unix_timestamp(1_234_567_890).unwrap();
        let step = totp_step(now);
        for (offset, accepted) in [(-2, false), (-1, true), (0, true), (1, true), (2, false)] {
            let code = format!("{:06}", totp_code(secret, step + offset));
            assert_eq!(
                totp_match(secret, &code, now),
                accepted.then_some(step + offset),
                "offset {offset}"
            );
        }
        assert_eq!(totp_match(secret, "12345", now), None);
        assert_eq!(totp_match(secret, "abcdef", now), None);
    }

    #[test]
    fn passwords_are_argon2id_and_checked() {
        assert!(matches!(hash_password("short"), Err(AppError::Invalid(_))));
        let hash = hash_password("correct horse battery staple").unwrap();
        assert!(hash.starts_with("$argon2id$"), "{hash}");
        assert!(password_matches("correct horse battery staple", &hash));
        assert!(!password_matches("correct horse battery stapler", &hash));
        assert!(!password_matches("anything", "not a phc string"));
    }

    #[test]
    fn the_csrf_token_depends_on_the_session() {
        assert_ne!(csrf_token("a"), csrf_token("b"));
        assert_eq!(csrf_token("a"), csrf_token("a"));
        assert_eq!(csrf_token("a").len(), 43);
    }
}
