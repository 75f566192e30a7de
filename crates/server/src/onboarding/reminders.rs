//! Reminders and overdue escalations of checklist items.
//!
//! A sweep ([`App::send_checklist_notices`]) runs on a timer in `serve`
//! ([`run_reminders`]) and reads "now" from the App's clock, so tests drive
//! it with a `FakeClock`. For each requested item it queues at most one
//! reminder (from [`REMIND_BEFORE`] before the due date, to the item's
//! owner) and one escalation (from the due date, to the onboarding's owner,
//! or the item's owner when none is named) in the notification outbox, and
//! records each in the tenant's audit log. The store marks the item in the
//! same transaction as it queues the notification, guarded by "not marked
//! yet", so sweeps that overlap (two nodes, a restart) send each notice
//! once; the dispatcher then delivers it by webhook and e-mail.
//!
//! An item whose due date has passed before any sweep saw it gets the
//! escalation only: a reminder that something is due after it was due
//! helps nobody.

use std::time::Duration;

use gatehouse_core::notify::{EmailAddress, Notification};
use gatehouse_core::onboarding::{ChecklistItem, NoticeKind, action as onboarding_action};
use serde_json::json;

use super::actions::{item_owner_context, owner_context, rfc3339};
use crate::app::App;
use crate::error::AppError;

/// How long before the due date the reminder goes out.
pub const REMIND_BEFORE: time::Duration = time::Duration::days(1);

/// Items handled per kind per sweep; the rest wait for the next one.
const BATCH: u32 = 200;

/// What one sweep queued.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct NoticeReport {
    /// Reminders queued.
    pub reminders: usize,
    /// Escalations queued.
    pub escalations: usize,
}

impl App {
    /// Queues the reminders and escalations due now (see the module
    /// documentation). An item whose notice cannot be prepared (its
    /// tenant's key is gone, an address does not open) is logged and
    /// skipped; the others go on.
    pub async fn send_checklist_notices(&self) -> Result<NoticeReport, AppError> {
        let mut report = NoticeReport::default();
        // Escalations first: an item past due gets no reminder any more.
        for kind in [NoticeKind::Overdue, NoticeKind::Reminder] {
            let now = self.clock.now();
            let due = self
                .store
                .due_item_notices(now, REMIND_BEFORE, kind, BATCH)
                .await?;
            for item in due {
                match self.queue_notice(&item, kind).await {
                    Ok(true) => match kind {
                        NoticeKind::Reminder => report.reminders += 1,
                        NoticeKind::Overdue => report.escalations += 1,
                    },
                    Ok(false) => {}
                    Err(err) => {
                        tracing::warn!(item = %item.id, tenant = %item.tenant_id, notice = kind.as_str(), %err, "checklist notice not queued");
                    }
                }
            }
        }
        Ok(report)
    }

    async fn queue_notice(&self, item: &ChecklistItem, kind: NoticeKind) -> Result<bool, AppError> {
        let now = self.clock.now();
        let item_owner = match &item.owner {
            Some(sealed) => Some(
                self.keyring
                    .open(item.tenant_id, &item_owner_context(item.id), &sealed.0)
                    .await?,
            ),
            None => None,
        };
        let onboarding_owner = match kind {
            NoticeKind::Reminder => None,
            NoticeKind::Overdue => match self.onboarding_with_tenant(item.instance_id).await? {
                Some(o) => match o.owner {
                    Some(sealed) => Some(
                        self.keyring
                            .open(item.tenant_id, &owner_context(o.instance_id), &sealed.0)
                            .await?,
                    ),
                    None => None,
                },
                None => None,
            },
        };
        let address = |bytes: &[u8]| {
            std::str::from_utf8(bytes)
                .ok()
                .and_then(|s| EmailAddress::parse(s).ok())
        };
        let recipient = onboarding_owner
            .as_deref()
            .and_then(|b| address(b))
            .or_else(|| item_owner.as_deref().and_then(|b| address(b)));
        let due = rfc3339(item.due_at);
        let subject = match kind {
            NoticeKind::Reminder => format!("[Gatehouse] Reminder: {} is due {due}", item.title),
            NoticeKind::Overdue => format!("[Gatehouse] Overdue: {} was due {due}", item.title),
        };
        let path = format!("/api/v1/onboardings/{}/items/{}", item.instance_id, item.id);
        let notification = Notification::queue(
            item.instance_id,
            Some(item.tenant_id),
            &item.step_id,
            kind.notification_kind(),
            recipient.clone(),
            &subject,
            json!({
                "onboarding": item.instance_id,
                "tenant": item.tenant_id,
                "item": item.id,
                "key": item.key.as_str(),
                "title": item.title,
                "kind": item.kind.as_str(),
                "due_at": due,
                "notice": kind.as_str(),
                "item_path": path,
            }),
            now,
        );
        let audit = gatehouse_core::audit::Provenance::system("checklist reminders", now).record(
            Some(item.tenant_id),
            onboarding_action::ITEM_NOTICE,
            item.id,
            json!({
                "notice": kind.as_str(),
                "notification": notification.id,
                "recipient": recipient.as_ref().map(EmailAddress::as_str),
                "key": item.key.as_str(),
                "due_at": due,
            }),
        );
        let queued = self
            .store
            .record_item_notice(item, kind, &notification, &[audit])
            .await?;
        if queued {
            tracing::info!(item = %item.id, tenant = %item.tenant_id, notice = kind.as_str(), notification = %notification.id, "checklist notice queued");
        }
        Ok(queued)
    }
}

/// Sweeps every `every` until `shutdown` resolves. A failed sweep is
/// logged and retried at the next tick; stopping interrupts only the wait
/// between sweeps (a sweep's writes are each one transaction).
pub async fn run_reminders(
    app: App,
    every: Duration,
    shutdown: impl std::future::Future<Output = ()>,
) {
    tokio::pin!(shutdown);
    loop {
        match app.send_checklist_notices().await {
            Ok(report) if report != NoticeReport::default() => {
                tracing::info!(
                    reminders = report.reminders,
                    escalations = report.escalations,
                    "checklist notices queued"
                );
            }
            Ok(_) => {}
            Err(err) => tracing::warn!(%err, "checklist reminder sweep failed"),
        }
        tokio::select! {
            () = &mut shutdown => return,
            () = tokio::time::sleep(every) => {}
        }
    }
}
