//! L1 review notifications: what the wave queues, and the dispatcher that
//! delivers it.
//!
//! An L1 step executes at once; the wave that records its success also
//! queues a [`Notification`] (see [`review_request`]) in the same commit, so
//! a recorded step always has its review request and a crash never sends one
//! for a step that was not recorded. The [`Dispatcher`] then claims due
//! notifications with a lease, sends each to every configured [`Channel`]
//! (an outbound [`webhook::WebhookChannel`], e-mail over
//! [`smtp::SmtpChannel`]) and records the outcome: delivered, retried with
//! exponential backoff (honouring `Retry-After`), or failed for good.
//!
//! Delivery is at-least-once: a dispatcher that dies (or is stopped) while
//! sending leaves the notification due again when its lease ends, and a
//! retry goes to every channel again. Receivers deduplicate on the
//! notification id, sent as `Idempotency-Key` (webhook) and in the
//! `Message-ID` (e-mail).

pub mod smtp;
pub mod webhook;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use gatehouse_core::clock::Clock;
use gatehouse_core::notify::{EmailAddress, KIND_L1_REVIEW, Notification};
use gatehouse_core::store::{NotificationStore, StoreError};
use gatehouse_core::workflow::Instance;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::retry::{RetryPolicy, random_unit};
use crate::template::Step;

/// The path a reviewer calls to ask for a step's rollback.
pub fn rollback_path(instance: &Instance, step: &Step) -> String {
    format!(
        "/api/v1/workflows/{}/steps/{}/rollback",
        instance.id, step.id
    )
}

/// The review request of an L1 step that has just run with `params`, and the
/// detail of the history entry that records it. The recipient is the step's
/// `reviewer` rendered from the instance's context; when the step names none
/// it is left to the dispatcher's default reviewer, and when it cannot be
/// rendered into an address the default is used too and the reason is kept
/// in the notification and the history (the step has run: its review must
/// not be lost over a bad address).
pub fn review_request(
    instance: &Instance,
    step: &Step,
    params: &Value,
    now: OffsetDateTime,
) -> (Notification, Value) {
    let (recipient, problem) = match step.render_reviewer(&instance.context) {
        None => (None, None),
        Some(Ok(Value::String(text))) => match EmailAddress::parse(text.trim()) {
            Ok(address) => (Some(address), None),
            Err(err) => (None, Some(format!("reviewer: {err}"))),
        },
        Some(Ok(other)) => (
            None,
            Some(format!(
                "reviewer: rendered to {} instead of an e-mail address",
                json_kind(&other)
            )),
        ),
        Some(Err(err)) => (None, Some(err.to_string())),
    };
    let reversible = step.compensate.is_some();
    let rollback =
        reversible.then(|| json!({ "method": "POST", "path": rollback_path(instance, step) }));
    let detail = json!({
        "gate": "L1",
        "template": instance.template,
        "template_version": instance.template_version,
        "instance": instance.id,
        "tenant": instance.tenant_id,
        "step": step.id,
        "step_title": step.title,
        "action": step.action,
        "params": summarize(params, 0),
        "executed_at": now.unix_timestamp(),
        "reversible": reversible,
        "rollback": rollback,
        "reviewer_error": problem,
    });
    let subject = format!(
        "[Gatehouse] Review: {} ({}) ran in {}",
        step.title, step.action, instance.template
    );
    let notification = Notification::queue(
        instance.id,
        instance.tenant_id,
        step.id.as_str(),
        KIND_L1_REVIEW,
        recipient,
        &subject,
        detail,
        now,
    );
    let note = json!({
        "reason": "L1: executed, review requested",
        "notification": notification.id,
        "recipient": notification.recipient.as_ref().map_or("the default reviewer", |r| r.as_str()),
        "reviewer_error": notification.detail.get("reviewer_error"),
    });
    (notification, note)
}

fn json_kind(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "a list",
        Value::Object(_) => "an object",
    }
}

/// Parameters for a reader: long strings and lists cut, deep values elided,
/// so a notification stays small whatever an action was given.
fn summarize(value: &Value, depth: usize) -> Value {
    const MAX_TEXT: usize = 200;
    const MAX_ITEMS: usize = 20;
    const MAX_DEPTH: usize = 4;
    match value {
        Value::String(text) if text.chars().count() > MAX_TEXT => Value::String(format!(
            "{}…",
            text.chars().take(MAX_TEXT).collect::<String>()
        )),
        Value::Array(_) | Value::Object(_) if depth >= MAX_DEPTH => Value::String("…".into()),
        Value::Array(items) => {
            let mut out: Vec<Value> = items
                .iter()
                .take(MAX_ITEMS)
                .map(|v| summarize(v, depth + 1))
                .collect();
            if items.len() > MAX_ITEMS {
                out.push(Value::String(format!("… {} more", items.len() - MAX_ITEMS)));
            }
            Value::Array(out)
        }
        Value::Object(map) => Value::Object(
            map.iter()
                .take(MAX_ITEMS)
                .map(|(k, v)| {
                    let shown = if sensitive(k) {
                        Value::String("[redacted]".into())
                    } else {
                        summarize(v, depth + 1)
                    };
                    (k.clone(), shown)
                })
                .collect(),
        ),
        Value::String(text) if text.starts_with("http://") || text.starts_with("https://") => {
            Value::String(without_secrets(text))
        }
        other => other.clone(),
    }
}

/// Parameters whose values a review request never shows, whatever the
/// action: credentials and the headers that carry them.
fn sensitive(key: &str) -> bool {
    const WORDS: [&str; 10] = [
        "header",
        "authorization",
        "password",
        "passwd",
        "secret",
        "token",
        "api_key",
        "apikey",
        "credential",
        "cookie",
    ];
    let key = key.to_ascii_lowercase();
    WORDS.iter().any(|word| key.contains(word))
}

/// A URL without its query, fragment and user info, which may hold keys.
fn without_secrets(text: &str) -> String {
    match reqwest::Url::parse(text) {
        Ok(mut url) => {
            url.set_query(None);
            url.set_fragment(None);
            let _ = url.set_username("");
            let _ = url.set_password(None);
            url.to_string()
        }
        Err(_) => "[a URL]".to_owned(),
    }
}

/// Why one channel could not deliver a notification. Messages never hold
/// secrets (no webhook URL, no signature).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum DeliveryError {
    /// It may pass (timeout, connection refused, 429, 5xx, SMTP 4xx).
    #[error("{message}")]
    Retryable {
        /// What happened.
        message: String,
        /// The receiver's `Retry-After`, if it sent one.
        retry_after: Option<Duration>,
    },
    /// Retrying cannot help (4xx other than 408/429, SMTP 5xx, no address).
    #[error("{message}")]
    Permanent {
        /// What happened.
        message: String,
    },
}

impl DeliveryError {
    /// A retryable failure without `Retry-After`.
    pub fn retryable(message: impl Into<String>) -> Self {
        Self::Retryable {
            message: message.into(),
            retry_after: None,
        }
    }

    /// A permanent failure.
    pub fn permanent(message: impl Into<String>) -> Self {
        Self::Permanent {
            message: message.into(),
        }
    }
}

/// One way of reaching people.
#[async_trait]
pub trait Channel: Send + Sync + fmt::Debug {
    /// The channel's name in errors and logs: `webhook`, `email`.
    fn name(&self) -> &'static str;
    /// Sends `notification` once. `recipient` is its own, or the default
    /// reviewer; `now` is the dispatcher's clock (signature timestamps,
    /// `Date` headers, `Retry-After` dates).
    async fn send(
        &self,
        notification: &Notification,
        recipient: Option<&EmailAddress>,
        now: OffsetDateTime,
    ) -> Result<(), DeliveryError>;
}

/// Tuning of the dispatcher.
#[derive(Debug, Clone)]
pub struct DispatcherConfig {
    /// Notifications claimed per pass.
    pub batch: u32,
    /// How long an idle dispatcher waits before looking again.
    pub idle_poll: Duration,
    /// How long a claimed notification is withheld from other claims while
    /// it is sent; longer than any channel's timeout.
    pub lease: Duration,
    /// Attempts and backoff (the delay after each failed attempt).
    pub retry: RetryPolicy,
    /// Who gets the notifications whose step names no reviewer.
    pub default_reviewer: Option<EmailAddress>,
}

impl Default for DispatcherConfig {
    /// 32 a pass, a look every 2 s, a 5-minute lease; 10 attempts backing
    /// off from 30 s to an hour (about 4 hours in all).
    fn default() -> Self {
        Self {
            batch: 32,
            idle_poll: Duration::from_secs(2),
            lease: Duration::from_secs(5 * 60),
            retry: RetryPolicy {
                max_attempts: 10,
                initial: Duration::from_secs(30),
                max: Duration::from_secs(60 * 60),
                multiplier: 2.0,
                jitter: 0.2,
            },
            default_reviewer: None,
        }
    }
}

/// What one pass of the dispatcher did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct DispatchReport {
    /// Notifications claimed.
    pub claimed: usize,
    /// Delivered to every channel.
    pub delivered: usize,
    /// Failed this time, to be retried.
    pub retried: usize,
    /// Given up.
    pub failed: usize,
}

/// The outcome of one notification's attempt.
enum Outcome {
    Delivered,
    Retry(OffsetDateTime, String),
    Failed(String),
}

/// Delivers queued notifications to every configured channel.
pub struct Dispatcher {
    store: Arc<dyn NotificationStore>,
    channels: Vec<Arc<dyn Channel>>,
    clock: Arc<dyn Clock>,
    config: DispatcherConfig,
}

impl fmt::Debug for Dispatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Dispatcher")
            .field("channels", &self.channels)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl Dispatcher {
    /// A dispatcher over `store`, sending to `channels`.
    pub fn new(
        store: Arc<dyn NotificationStore>,
        channels: Vec<Arc<dyn Channel>>,
        clock: Arc<dyn Clock>,
        config: DispatcherConfig,
    ) -> Self {
        Self {
            store,
            channels,
            clock,
            config,
        }
    }

    /// Whether any channel is configured. Without one nothing is claimed:
    /// notifications stay pending until a channel is configured.
    pub fn has_channels(&self) -> bool {
        !self.channels.is_empty()
    }

    /// One pass: claims the due notifications, sends them (concurrently)
    /// and records each outcome.
    pub async fn dispatch_due(&self) -> Result<DispatchReport, StoreError> {
        let mut report = DispatchReport::default();
        if self.channels.is_empty() {
            return Ok(report);
        }
        let now = self.clock.now();
        let lease = time::Duration::try_from(self.config.lease).unwrap_or(time::Duration::HOUR);
        let claimed = self
            .store
            .claim_notifications(now, now + lease, self.config.batch)
            .await?;
        report.claimed = claimed.len();
        let mut sends = tokio::task::JoinSet::new();
        for notification in claimed {
            let channels = self.channels.clone();
            let recipient = notification
                .recipient
                .clone()
                .or_else(|| self.config.default_reviewer.clone());
            let retry = self.config.retry;
            sends.spawn(async move {
                let outcome =
                    attempt(&channels, &notification, recipient.as_ref(), retry, now).await;
                (notification, outcome)
            });
        }
        while let Some(joined) = sends.join_next().await {
            let Ok((notification, outcome)) = joined else {
                // A panicking channel: the lease makes it due again.
                tracing::error!("a notification send task failed; it is retried after its lease");
                continue;
            };
            let attempts = notification.attempts.saturating_add(1);
            let (id, instance, step) = (
                notification.id,
                notification.instance_id,
                notification.step_id.as_str(),
            );
            let marked = match &outcome {
                Outcome::Delivered => {
                    report.delivered += 1;
                    tracing::info!(%id, %instance, step, attempts, "notification delivered");
                    self.store
                        .mark_notification_delivered(id, attempts, self.clock.now())
                        .await
                }
                Outcome::Retry(at, error) => {
                    report.retried += 1;
                    tracing::warn!(%id, %instance, step, attempts, %error, retry_at = %at, "notification not delivered; retrying");
                    self.store
                        .mark_notification_retry(id, attempts, *at, error)
                        .await
                }
                Outcome::Failed(error) => {
                    report.failed += 1;
                    tracing::error!(%id, %instance, step, attempts, %error, "notification failed for good");
                    self.store
                        .mark_notification_failed(id, attempts, error)
                        .await
                }
            };
            if let Err(err) = marked {
                tracing::error!(%id, %err, "could not record a notification attempt; it is retried after its lease");
            }
        }
        Ok(report)
    }

    /// Runs until `shutdown` completes: a pass whenever notifications are
    /// due, otherwise a look every `idle_poll`. Store errors are logged and
    /// retried after the poll. A pass interrupted by shutdown leaves its
    /// notifications leased; they are sent again when the lease ends. With
    /// no channel configured it warns once and only waits for shutdown.
    pub async fn run(&self, shutdown: impl std::future::Future<Output = ()>) {
        tokio::pin!(shutdown);
        if self.channels.is_empty() {
            tracing::warn!(
                "no notification channel is configured (notify_webhook_url, smtp_host): L1 review notifications stay queued until one is"
            );
            shutdown.await;
            return;
        }
        loop {
            let full = tokio::select! {
                () = &mut shutdown => return,
                done = self.dispatch_due() => match done {
                    Ok(report) => report.claimed >= usize::try_from(self.config.batch).unwrap_or(usize::MAX),
                    Err(err) => {
                        tracing::error!(%err, "notification dispatch failed; retrying after the idle poll");
                        false
                    }
                },
            };
            if full {
                continue;
            }
            tokio::select! {
                () = &mut shutdown => return,
                () = tokio::time::sleep(self.config.idle_poll) => {}
            }
        }
    }
}

/// Sends to every channel; decides what to record.
async fn attempt(
    channels: &[Arc<dyn Channel>],
    notification: &Notification,
    recipient: Option<&EmailAddress>,
    retry: RetryPolicy,
    now: OffsetDateTime,
) -> Outcome {
    let mut errors = Vec::new();
    let mut permanent = false;
    let mut retry_after: Option<Duration> = None;
    for channel in channels {
        match channel.send(notification, recipient, now).await {
            Ok(()) => {}
            Err(DeliveryError::Permanent { message }) => {
                permanent = true;
                errors.push(format!("{}: {message}", channel.name()));
            }
            Err(DeliveryError::Retryable {
                message,
                retry_after: after,
            }) => {
                retry_after = retry_after.max(after);
                errors.push(format!("{}: {message}", channel.name()));
            }
        }
    }
    if errors.is_empty() {
        return Outcome::Delivered;
    }
    let error = errors.join("; ");
    if permanent {
        return Outcome::Failed(error);
    }
    let attempts = notification.attempts.saturating_add(1);
    match retry.delay(attempts, retry_after, random_unit()) {
        Some(delay) => {
            let delay = time::Duration::try_from(delay).unwrap_or(time::Duration::HOUR);
            Outcome::Retry(now + delay, error)
        }
        None => Outcome::Failed(format!("gave up after {attempts} attempts: {error}")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn review_requests_never_show_credentials() {
        let params = json!({
            "url": "https://user:pw@api.example/hook?key=s3cret#frag",
            "headers": { "Authorization": "Bearer abc" },
            "body": { "name": "Zoë", "api_token": "t0k3n", "nested": { "Password": "x" } },
        });
        let shown = summarize(&params, 0);
        let text = shown.to_string();
        for secret in ["s3cret", "Bearer abc", "t0k3n", "\"x\"", "pw@", "frag"] {
            assert!(!text.contains(secret), "{secret} leaked: {text}");
        }
        assert_eq!(shown["url"], "https://api.example/hook");
        assert_eq!(shown["headers"], "[redacted]");
        assert_eq!(shown["body"]["name"], "Zoë");
        assert_eq!(shown["body"]["nested"]["Password"], "[redacted]");
    }
}
