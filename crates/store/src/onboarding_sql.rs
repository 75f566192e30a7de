//! The SQL behind `OnboardingStore`, written once for both back ends in the
//! way of [`crate::notify_sql`]: `impl_onboarding_store!` instantiates it
//! for a store type with a `pool` (reads) and a `writer` (writes).
//!
//! Repeated calls are the normal case (every workflow step may run twice),
//! so every insert is `ON CONFLICT DO NOTHING` followed by a read of what is
//! stored, and every state change is guarded by the state it expects.
//! Notices (reminders, escalations) are marked on the item with a guarded
//! `UPDATE … WHERE reminded_at IS NULL` in the same transaction as the
//! notification it queues: two sweeps racing queue it once.

use gatehouse_core::onboarding::{
    ChecklistItem, ItemFileMeta, Onboarding, PsaLink, Sealed, SlaClock,
};
use gatehouse_core::store::{StoreError, StoreResult};
use time::OffsetDateTime;

pub(crate) const ONBOARDING_COLUMNS: &str =
    "instance_id, tenant_id, slug, owner_sealed, started_at, created_at, go_live_at";

/// Every column but the file's content, which only `item_file` reads.
pub(crate) const ITEM_COLUMNS: &str = "id, tenant_id, instance_id, step_id, item_key, title, kind, owner_sealed, due_at, state, created_at, decided_by, decided_at, note, secret_name, file_name_sealed, file_content_type, file_size, reminded_at, overdue_notified_at";

pub(crate) const PSA_COLUMNS: &str =
    "tenant_id, psa, company_id, instance_id, linked_at, unlinked_at";

pub(crate) const SLA_COLUMNS: &str = "id, tenant_id, instance_id, contract, started_at, stopped_at";

fn corrupt(table_column: &'static str) -> impl Fn(gatehouse_core::DomainError) -> StoreError {
    move |e| StoreError::Corrupt(format!("{table_column}: {e}"))
}

/// An onboarding as stored.
#[derive(sqlx::FromRow)]
pub(crate) struct OnboardingRow {
    instance_id: String,
    tenant_id: Option<String>,
    slug: String,
    owner_sealed: Option<Vec<u8>>,
    started_at: OffsetDateTime,
    created_at: OffsetDateTime,
    go_live_at: Option<OffsetDateTime>,
}

impl TryFrom<OnboardingRow> for Onboarding {
    type Error = StoreError;

    fn try_from(row: OnboardingRow) -> Result<Self, StoreError> {
        Ok(Onboarding {
            instance_id: row
                .instance_id
                .parse()
                .map_err(corrupt("onboardings.instance_id"))?,
            tenant_id: row
                .tenant_id
                .map(|t| t.parse())
                .transpose()
                .map_err(corrupt("onboardings.tenant_id"))?,
            slug: row.slug,
            owner: row.owner_sealed.map(Sealed),
            started_at: row.started_at,
            created_at: row.created_at,
            go_live_at: row.go_live_at,
        })
    }
}

/// A checklist item as stored (without the file's content).
#[derive(sqlx::FromRow)]
pub(crate) struct ItemRow {
    id: String,
    tenant_id: String,
    instance_id: String,
    step_id: String,
    item_key: String,
    title: String,
    kind: String,
    owner_sealed: Option<Vec<u8>>,
    due_at: OffsetDateTime,
    state: String,
    created_at: OffsetDateTime,
    decided_by: Option<String>,
    decided_at: Option<OffsetDateTime>,
    note: Option<String>,
    secret_name: Option<String>,
    file_name_sealed: Option<Vec<u8>>,
    file_content_type: Option<String>,
    file_size: Option<i64>,
    reminded_at: Option<OffsetDateTime>,
    overdue_notified_at: Option<OffsetDateTime>,
}

impl TryFrom<ItemRow> for ChecklistItem {
    type Error = StoreError;

    fn try_from(row: ItemRow) -> Result<Self, StoreError> {
        let file = match (row.file_name_sealed, row.file_content_type, row.file_size) {
            (Some(name), Some(content_type), Some(size)) => Some(ItemFileMeta {
                name: Sealed(name),
                content_type,
                size: u64::try_from(size).map_err(|_| {
                    StoreError::Corrupt(format!("checklist_items.file_size: {size}"))
                })?,
            }),
            (None, None, None) => None,
            _ => {
                return Err(StoreError::Corrupt(
                    "checklist_items: a file's name, type and size must be stored together".into(),
                ));
            }
        };
        Ok(ChecklistItem {
            id: row.id.parse().map_err(corrupt("checklist_items.id"))?,
            tenant_id: row
                .tenant_id
                .parse()
                .map_err(corrupt("checklist_items.tenant_id"))?,
            instance_id: row
                .instance_id
                .parse()
                .map_err(corrupt("checklist_items.instance_id"))?,
            step_id: row.step_id,
            key: gatehouse_core::onboarding::ItemKey::parse(&row.item_key)
                .map_err(corrupt("checklist_items.item_key"))?,
            title: row.title,
            kind: row.kind.parse().map_err(corrupt("checklist_items.kind"))?,
            owner: row.owner_sealed.map(Sealed),
            due_at: row.due_at,
            state: row
                .state
                .parse()
                .map_err(corrupt("checklist_items.state"))?,
            created_at: row.created_at,
            decided_by: row.decided_by,
            decided_at: row.decided_at,
            note: row.note,
            secret_name: row
                .secret_name
                .map(|n| gatehouse_core::secret::SecretName::parse(&n))
                .transpose()
                .map_err(corrupt("checklist_items.secret_name"))?,
            file,
            reminded_at: row.reminded_at,
            overdue_notified_at: row.overdue_notified_at,
        })
    }
}

/// A PSA link as stored.
#[derive(sqlx::FromRow)]
pub(crate) struct PsaRow {
    tenant_id: String,
    psa: String,
    company_id: String,
    instance_id: Option<String>,
    linked_at: OffsetDateTime,
    unlinked_at: Option<OffsetDateTime>,
}

impl TryFrom<PsaRow> for PsaLink {
    type Error = StoreError;

    fn try_from(row: PsaRow) -> Result<Self, StoreError> {
        Ok(PsaLink {
            tenant_id: row
                .tenant_id
                .parse()
                .map_err(corrupt("tenant_psa_links.tenant_id"))?,
            psa: row.psa,
            company_id: row.company_id,
            instance_id: row
                .instance_id
                .map(|i| i.parse())
                .transpose()
                .map_err(corrupt("tenant_psa_links.instance_id"))?,
            linked_at: row.linked_at,
            unlinked_at: row.unlinked_at,
        })
    }
}

/// An SLA clock as stored.
#[derive(sqlx::FromRow)]
pub(crate) struct SlaRow {
    id: String,
    tenant_id: String,
    instance_id: Option<String>,
    contract: String,
    started_at: OffsetDateTime,
    stopped_at: Option<OffsetDateTime>,
}

impl TryFrom<SlaRow> for SlaClock {
    type Error = StoreError;

    fn try_from(row: SlaRow) -> Result<Self, StoreError> {
        Ok(SlaClock {
            id: row.id.parse().map_err(corrupt("tenant_sla_clocks.id"))?,
            tenant_id: row
                .tenant_id
                .parse()
                .map_err(corrupt("tenant_sla_clocks.tenant_id"))?,
            instance_id: row
                .instance_id
                .map(|i| i.parse())
                .transpose()
                .map_err(corrupt("tenant_sla_clocks.instance_id"))?,
            contract: row.contract,
            started_at: row.started_at,
            stopped_at: row.stopped_at,
        })
    }
}

/// A size as stored.
pub(crate) fn size(n: u64) -> StoreResult<i64> {
    i64::try_from(n).map_err(|_| StoreError::Corrupt(format!("file size {n} is out of range")))
}

macro_rules! impl_onboarding_store {
    ($store:ty, $db:ty) => {
        impl $store {
            /// Maps a foreign-key failure to "not found" with `what`.
            fn onboarding_fk(
                what: &'static str,
                context: &'static str,
            ) -> impl FnOnce(sqlx::Error) -> gatehouse_core::store::StoreError {
                move |err| match crate::engine_sql::violation(&err) {
                    crate::engine_sql::Violation::ForeignKey => {
                        gatehouse_core::store::StoreError::NotFound(what)
                    }
                    _ => crate::db_error(context)(err),
                }
            }

            async fn read_item(
                &self,
                tenant: Option<gatehouse_core::id::TenantId>,
                id: gatehouse_core::id::ChecklistItemId,
            ) -> gatehouse_core::store::StoreResult<gatehouse_core::onboarding::ChecklistItem> {
                let text = format!(
                    "SELECT {} FROM checklist_items WHERE id = $1 AND ($2 IS NULL OR tenant_id = $2)",
                    crate::onboarding_sql::ITEM_COLUMNS
                );
                let row = sqlx::query_as::<_, crate::onboarding_sql::ItemRow>(&text)
                    .bind(id.to_string())
                    .bind(tenant.map(|t| t.to_string()))
                    .fetch_optional(&self.writer)
                    .await
                    .map_err(crate::db_error("reading a checklist item"))?
                    .ok_or(gatehouse_core::store::StoreError::NotFound("checklist item"))?;
                row.try_into()
            }
        }

        #[async_trait::async_trait]
        impl gatehouse_core::onboarding::OnboardingStore for $store {
            async fn open_onboarding(
                &self,
                onboarding: &gatehouse_core::onboarding::Onboarding,
                audit: &[gatehouse_core::audit::AuditRecord],
            ) -> gatehouse_core::store::StoreResult<gatehouse_core::onboarding::Onboarding> {
                use crate::engine_sql::SortableTime;
                let mut tx = self.writer.begin().await.map_err(crate::db_error("starting a transaction"))?;
                let text = format!(
                    "INSERT INTO onboardings ({}) VALUES ($1, $2, $3, $4, $5, $6, $7)
                     ON CONFLICT (instance_id) DO NOTHING",
                    crate::onboarding_sql::ONBOARDING_COLUMNS
                );
                let done = sqlx::query(&text)
                    .bind(onboarding.instance_id.to_string())
                    .bind(onboarding.tenant_id.map(|t| t.to_string()))
                    .bind(onboarding.slug.clone())
                    .bind(onboarding.owner.as_ref().map(|s| s.0.clone()))
                    .bind(SortableTime(onboarding.started_at))
                    .bind(SortableTime(onboarding.created_at))
                    .bind(onboarding.go_live_at.map(SortableTime))
                    .execute(&mut *tx)
                    .await
                    .map_err(Self::onboarding_fk("workflow instance or tenant", "opening an onboarding"))?;
                if done.rows_affected() == 1 {
                    Self::write_audit_records(&mut tx, audit).await?;
                }
                let text = format!(
                    "SELECT {} FROM onboardings WHERE instance_id = $1",
                    crate::onboarding_sql::ONBOARDING_COLUMNS
                );
                let row = sqlx::query_as::<_, crate::onboarding_sql::OnboardingRow>(&text)
                    .bind(onboarding.instance_id.to_string())
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(crate::db_error("reading an onboarding"))?;
                tx.commit().await.map_err(crate::db_error("committing an onboarding"))?;
                row.try_into()
            }

            async fn set_onboarding_tenant(
                &self,
                instance: gatehouse_core::id::WorkflowId,
                tenant: gatehouse_core::id::TenantId,
                audit: &[gatehouse_core::audit::AuditRecord],
            ) -> gatehouse_core::store::StoreResult<()> {
                use gatehouse_core::store::StoreError;
                let mut tx = self.writer.begin().await.map_err(crate::db_error("starting a transaction"))?;
                let done = sqlx::query(
                    "UPDATE onboardings SET tenant_id = $1
                     WHERE instance_id = $2 AND (tenant_id IS NULL OR tenant_id = $1)",
                )
                .bind(tenant.to_string())
                .bind(instance.to_string())
                .execute(&mut *tx)
                .await
                .map_err(Self::onboarding_fk("tenant", "recording an onboarding's tenant"))?;
                if done.rows_affected() != 1 {
                    return Err(StoreError::Conflict(format!(
                        "onboarding {instance} has no claim, or belongs to another tenant"
                    )));
                }
                Self::write_audit_records(&mut tx, audit).await?;
                tx.commit().await.map_err(crate::db_error("committing an onboarding's tenant"))
            }

            async fn set_onboarding_owner(
                &self,
                instance: gatehouse_core::id::WorkflowId,
                owner: &gatehouse_core::onboarding::Sealed,
                notification: Option<&gatehouse_core::notify::Notification>,
                audit: &[gatehouse_core::audit::AuditRecord],
            ) -> gatehouse_core::store::StoreResult<()> {
                use gatehouse_core::store::StoreError;
                let mut tx = self.writer.begin().await.map_err(crate::db_error("starting a transaction"))?;
                let done = sqlx::query("UPDATE onboardings SET owner_sealed = $1 WHERE instance_id = $2")
                    .bind(owner.0.clone())
                    .bind(instance.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(crate::db_error("naming an onboarding's owner"))?;
                if done.rows_affected() != 1 {
                    return Err(StoreError::NotFound("onboarding"));
                }
                if let Some(notification) = notification {
                    let text = <$db as crate::placeholders::Placeholders>::sequential(
                        crate::notify_sql::insert_notifications_sql(1),
                    );
                    crate::notify_sql::bind_notification(sqlx::query(&text), notification)?
                        .execute(&mut *tx)
                        .await
                        .map_err(crate::db_error("queueing an owner's notification"))?;
                }
                Self::write_audit_records(&mut tx, audit).await?;
                tx.commit().await.map_err(crate::db_error("committing an onboarding's owner"))
            }

            async fn set_go_live(
                &self,
                instance: gatehouse_core::id::WorkflowId,
                at: time::OffsetDateTime,
                audit: &[gatehouse_core::audit::AuditRecord],
            ) -> gatehouse_core::store::StoreResult<()> {
                let mut tx = self.writer.begin().await.map_err(crate::db_error("starting a transaction"))?;
                let done = sqlx::query(
                    "UPDATE onboardings SET go_live_at = $1 WHERE instance_id = $2 AND go_live_at IS NULL",
                )
                .bind(crate::engine_sql::SortableTime(at))
                .bind(instance.to_string())
                .execute(&mut *tx)
                .await
                .map_err(crate::db_error("recording go-live"))?;
                if done.rows_affected() == 1 {
                    Self::write_audit_records(&mut tx, audit).await?;
                }
                tx.commit().await.map_err(crate::db_error("committing go-live"))
            }

            async fn get_onboarding(
                &self,
                instance: gatehouse_core::id::WorkflowId,
            ) -> gatehouse_core::store::StoreResult<gatehouse_core::onboarding::Onboarding> {
                let text = format!(
                    "SELECT {} FROM onboardings WHERE instance_id = $1",
                    crate::onboarding_sql::ONBOARDING_COLUMNS
                );
                sqlx::query_as::<_, crate::onboarding_sql::OnboardingRow>(&text)
                    .bind(instance.to_string())
                    .fetch_optional(&self.pool)
                    .await
                    .map_err(crate::db_error("reading an onboarding"))?
                    .ok_or(gatehouse_core::store::StoreError::NotFound("onboarding"))?
                    .try_into()
            }

            async fn list_onboardings(
                &self,
                query: &gatehouse_core::onboarding::OnboardingQuery,
            ) -> gatehouse_core::store::StoreResult<Vec<gatehouse_core::onboarding::Onboarding>> {
                let text = format!(
                    "SELECT {} FROM onboardings
                     WHERE ($1 IS NULL OR tenant_id = $1) AND ($2 IS NULL OR instance_id > $2)
                       AND {}
                     ORDER BY instance_id LIMIT $3",
                    crate::onboarding_sql::ONBOARDING_COLUMNS,
                    <$db as crate::placeholders::IdSet>::within("tenant_id", "$4"),
                );
                let rows = sqlx::query_as::<_, crate::onboarding_sql::OnboardingRow>(&text)
                    .bind(query.tenant.map(|t| t.to_string()))
                    .bind(query.after.map(|a| a.to_string()))
                    .bind(i64::from(query.limit))
                    .bind(crate::placeholders::id_set(query.within.as_deref()))
                    .fetch_all(&self.pool)
                    .await
                    .map_err(crate::db_error("listing onboardings"))?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn request_item(
                &self,
                item: &gatehouse_core::onboarding::ChecklistItem,
                audit: &[gatehouse_core::audit::AuditRecord],
            ) -> gatehouse_core::store::StoreResult<gatehouse_core::onboarding::ChecklistItem> {
                use crate::engine_sql::SortableTime;
                let mut tx = self.writer.begin().await.map_err(crate::db_error("starting a transaction"))?;
                let done = sqlx::query(
                    "INSERT INTO checklist_items
                       (id, tenant_id, instance_id, step_id, item_key, title, kind, owner_sealed, due_at, state, created_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, 'requested', $10)
                     ON CONFLICT (instance_id, item_key) DO NOTHING",
                )
                .bind(item.id.to_string())
                .bind(item.tenant_id.to_string())
                .bind(item.instance_id.to_string())
                .bind(item.step_id.clone())
                .bind(item.key.as_str().to_owned())
                .bind(item.title.clone())
                .bind(item.kind.as_str())
                .bind(item.owner.as_ref().map(|s| s.0.clone()))
                .bind(SortableTime(item.due_at))
                .bind(SortableTime(item.created_at))
                .execute(&mut *tx)
                .await
                .map_err(Self::onboarding_fk("tenant or workflow instance", "requesting a checklist item"))?;
                if done.rows_affected() == 1 {
                    Self::write_audit_records(&mut tx, audit).await?;
                }
                let text = format!(
                    "SELECT {} FROM checklist_items WHERE instance_id = $1 AND item_key = $2",
                    crate::onboarding_sql::ITEM_COLUMNS
                );
                let row = sqlx::query_as::<_, crate::onboarding_sql::ItemRow>(&text)
                    .bind(item.instance_id.to_string())
                    .bind(item.key.as_str().to_owned())
                    .fetch_one(&mut *tx)
                    .await
                    .map_err(crate::db_error("reading a checklist item"))?;
                tx.commit().await.map_err(crate::db_error("committing a checklist item"))?;
                let stored: gatehouse_core::onboarding::ChecklistItem = row.try_into()?;
                if stored.tenant_id != item.tenant_id {
                    return Err(gatehouse_core::store::StoreError::Conflict(format!(
                        "checklist item `{}` of onboarding {} belongs to another tenant",
                        item.key, item.instance_id
                    )));
                }
                Ok(stored)
            }

            async fn get_item(
                &self,
                tenant: gatehouse_core::id::TenantId,
                id: gatehouse_core::id::ChecklistItemId,
            ) -> gatehouse_core::store::StoreResult<gatehouse_core::onboarding::ChecklistItem> {
                self.read_item(Some(tenant), id).await
            }

            async fn find_item(
                &self,
                id: gatehouse_core::id::ChecklistItemId,
            ) -> gatehouse_core::store::StoreResult<gatehouse_core::onboarding::ChecklistItem> {
                self.read_item(None, id).await
            }

            async fn list_items(
                &self,
                tenant: gatehouse_core::id::TenantId,
                instance: gatehouse_core::id::WorkflowId,
            ) -> gatehouse_core::store::StoreResult<Vec<gatehouse_core::onboarding::ChecklistItem>> {
                let text = format!(
                    "SELECT {} FROM checklist_items WHERE tenant_id = $1 AND instance_id = $2 ORDER BY item_key",
                    crate::onboarding_sql::ITEM_COLUMNS
                );
                let rows = sqlx::query_as::<_, crate::onboarding_sql::ItemRow>(&text)
                    .bind(tenant.to_string())
                    .bind(instance.to_string())
                    .fetch_all(&self.pool)
                    .await
                    .map_err(crate::db_error("listing checklist items"))?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn decide_item(
                &self,
                tenant: gatehouse_core::id::TenantId,
                id: gatehouse_core::id::ChecklistItemId,
                from: gatehouse_core::onboarding::ItemState,
                decision: &gatehouse_core::onboarding::ItemDecision,
                audit: &[gatehouse_core::audit::AuditRecord],
            ) -> gatehouse_core::store::StoreResult<gatehouse_core::onboarding::ChecklistItem> {
                use crate::engine_sql::SortableTime;
                use gatehouse_core::store::StoreError;
                if decision.state == gatehouse_core::onboarding::ItemState::Requested {
                    return Err(StoreError::Conflict("an item cannot be decided back to requested".into()));
                }
                let mut tx = self.writer.begin().await.map_err(crate::db_error("starting a transaction"))?;
                let file = decision.file.as_ref();
                let done = sqlx::query(
                    "UPDATE checklist_items SET state = $1, decided_by = $2, decided_at = $3, note = $4,
                            secret_name = $5, file_name_sealed = $6, file_content_type = $7,
                            file_size = $8, file_sealed = $9
                     WHERE id = $10 AND tenant_id = $11 AND state = $12",
                )
                .bind(decision.state.as_str())
                .bind(decision.by.clone())
                .bind(SortableTime(decision.at))
                .bind(decision.note.clone())
                .bind(decision.secret_name.as_ref().map(|n| n.as_str().to_owned()))
                .bind(file.map(|f| f.name.0.clone()))
                .bind(file.map(|f| f.content_type.clone()))
                .bind(file.map(|f| crate::onboarding_sql::size(f.size)).transpose()?)
                .bind(file.map(|f| f.content.0.clone()))
                .bind(id.to_string())
                .bind(tenant.to_string())
                .bind(from.as_str())
                .execute(&mut *tx)
                .await
                .map_err(crate::db_error("deciding a checklist item"))?;
                if done.rows_affected() != 1 {
                    drop(tx);
                    // Missing (or another tenant's), or not in `from` any more.
                    self.read_item(Some(tenant), id).await?;
                    return Err(StoreError::Stale("checklist item"));
                }
                Self::write_audit_records(&mut tx, audit).await?;
                tx.commit().await.map_err(crate::db_error("committing a checklist item"))?;
                self.read_item(Some(tenant), id).await
            }

            async fn item_file(
                &self,
                tenant: gatehouse_core::id::TenantId,
                id: gatehouse_core::id::ChecklistItemId,
            ) -> gatehouse_core::store::StoreResult<gatehouse_core::onboarding::ItemFile> {
                use gatehouse_core::onboarding::{ItemFile, Sealed};
                use gatehouse_core::store::StoreError;
                let row: Option<(Option<Vec<u8>>, Option<String>, Option<i64>, Option<Vec<u8>>)> = sqlx::query_as(
                    "SELECT file_name_sealed, file_content_type, file_size, file_sealed
                     FROM checklist_items WHERE id = $1 AND tenant_id = $2",
                )
                .bind(id.to_string())
                .bind(tenant.to_string())
                .fetch_optional(&self.pool)
                .await
                .map_err(crate::db_error("reading a checklist file"))?;
                match row {
                    None => Err(StoreError::NotFound("checklist item")),
                    Some((Some(name), Some(content_type), Some(size), Some(content))) => Ok(ItemFile {
                        name: Sealed(name),
                        content_type,
                        size: u64::try_from(size)
                            .map_err(|_| StoreError::Corrupt(format!("checklist_items.file_size: {size}")))?,
                        content: Sealed(content),
                    }),
                    Some(_) => Err(StoreError::NotFound("file")),
                }
            }

            async fn due_item_notices(
                &self,
                now: time::OffsetDateTime,
                remind_before: time::Duration,
                kind: gatehouse_core::onboarding::NoticeKind,
                limit: u32,
            ) -> gatehouse_core::store::StoreResult<Vec<gatehouse_core::onboarding::ChecklistItem>> {
                use crate::engine_sql::SortableTime;
                use gatehouse_core::onboarding::NoticeKind;
                // A reminder is due from `due_at - remind_before` until
                // `due_at`; an escalation from `due_at` on.
                let columns = crate::onboarding_sql::ITEM_COLUMNS;
                let query = match kind {
                    NoticeKind::Reminder => sqlx::query_as::<_, crate::onboarding_sql::ItemRow>(&format!(
                        "SELECT {columns} FROM checklist_items
                         WHERE state = 'requested' AND reminded_at IS NULL AND overdue_notified_at IS NULL
                           AND due_at <= $1 AND due_at > $2
                         ORDER BY due_at, id LIMIT $3"
                    ))
                    .bind(SortableTime(now + remind_before))
                    .bind(SortableTime(now))
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await,
                    NoticeKind::Overdue => sqlx::query_as::<_, crate::onboarding_sql::ItemRow>(&format!(
                        "SELECT {columns} FROM checklist_items
                         WHERE state = 'requested' AND overdue_notified_at IS NULL AND due_at <= $1
                         ORDER BY due_at, id LIMIT $2"
                    ))
                    .bind(SortableTime(now))
                    .bind(i64::from(limit))
                    .fetch_all(&self.pool)
                    .await,
                };
                let rows = query.map_err(crate::db_error("finding due checklist notices"))?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn record_item_notice(
                &self,
                item: &gatehouse_core::onboarding::ChecklistItem,
                kind: gatehouse_core::onboarding::NoticeKind,
                notification: &gatehouse_core::notify::Notification,
                audit: &[gatehouse_core::audit::AuditRecord],
            ) -> gatehouse_core::store::StoreResult<bool> {
                use crate::engine_sql::SortableTime;
                use gatehouse_core::onboarding::NoticeKind;
                let column = match kind {
                    NoticeKind::Reminder => "reminded_at",
                    NoticeKind::Overdue => "overdue_notified_at",
                };
                let mut tx = self.writer.begin().await.map_err(crate::db_error("starting a transaction"))?;
                let text = format!(
                    "UPDATE checklist_items SET {column} = $1
                     WHERE id = $2 AND tenant_id = $3 AND state = 'requested' AND {column} IS NULL"
                );
                let done = sqlx::query(&text)
                    .bind(SortableTime(notification.created_at))
                    .bind(item.id.to_string())
                    .bind(item.tenant_id.to_string())
                    .execute(&mut *tx)
                    .await
                    .map_err(crate::db_error("marking a checklist notice"))?;
                if done.rows_affected() != 1 {
                    return Ok(false);
                }
                let text = <$db as crate::placeholders::Placeholders>::sequential(
                    crate::notify_sql::insert_notifications_sql(1),
                );
                crate::notify_sql::bind_notification(sqlx::query(&text), notification)?
                    .execute(&mut *tx)
                    .await
                    .map_err(crate::db_error("queueing a checklist notice"))?;
                Self::write_audit_records(&mut tx, audit).await?;
                tx.commit().await.map_err(crate::db_error("committing a checklist notice"))?;
                Ok(true)
            }

            async fn link_psa_company(
                &self,
                link: &gatehouse_core::onboarding::PsaLink,
                audit: &[gatehouse_core::audit::AuditRecord],
            ) -> gatehouse_core::store::StoreResult<()> {
                use crate::engine_sql::SortableTime;
                let mut tx = self.writer.begin().await.map_err(crate::db_error("starting a transaction"))?;
                let text = format!(
                    "INSERT INTO tenant_psa_links ({}) VALUES ($1, $2, $3, $4, $5, NULL)
                     ON CONFLICT (tenant_id, psa, company_id) DO UPDATE SET
                       instance_id = excluded.instance_id, linked_at = excluded.linked_at, unlinked_at = NULL
                     WHERE tenant_psa_links.unlinked_at IS NOT NULL",
                    crate::onboarding_sql::PSA_COLUMNS
                );
                let done = sqlx::query(&text)
                    .bind(link.tenant_id.to_string())
                    .bind(link.psa.clone())
                    .bind(link.company_id.clone())
                    .bind(link.instance_id.map(|i| i.to_string()))
                    .bind(SortableTime(link.linked_at))
                    .execute(&mut *tx)
                    .await
                    .map_err(Self::onboarding_fk("tenant", "linking a PSA company"))?;
                if done.rows_affected() == 1 {
                    Self::write_audit_records(&mut tx, audit).await?;
                }
                tx.commit().await.map_err(crate::db_error("committing a PSA link"))
            }

            async fn unlink_psa_company(
                &self,
                tenant: gatehouse_core::id::TenantId,
                company_id: &str,
                at: time::OffsetDateTime,
                audit: &[gatehouse_core::audit::AuditRecord],
            ) -> gatehouse_core::store::StoreResult<bool> {
                let mut tx = self.writer.begin().await.map_err(crate::db_error("starting a transaction"))?;
                let done = sqlx::query(
                    "UPDATE tenant_psa_links SET unlinked_at = $1
                     WHERE tenant_id = $2 AND company_id = $3 AND unlinked_at IS NULL",
                )
                .bind(crate::engine_sql::SortableTime(at))
                .bind(tenant.to_string())
                .bind(company_id)
                .execute(&mut *tx)
                .await
                .map_err(crate::db_error("unlinking a PSA company"))?;
                let changed = done.rows_affected() > 0;
                if changed {
                    Self::write_audit_records(&mut tx, audit).await?;
                }
                tx.commit().await.map_err(crate::db_error("committing a PSA unlink"))?;
                Ok(changed)
            }

            async fn psa_links(
                &self,
                tenant: gatehouse_core::id::TenantId,
            ) -> gatehouse_core::store::StoreResult<Vec<gatehouse_core::onboarding::PsaLink>> {
                let text = format!(
                    "SELECT {} FROM tenant_psa_links WHERE tenant_id = $1 ORDER BY psa, company_id",
                    crate::onboarding_sql::PSA_COLUMNS
                );
                let rows = sqlx::query_as::<_, crate::onboarding_sql::PsaRow>(&text)
                    .bind(tenant.to_string())
                    .fetch_all(&self.pool)
                    .await
                    .map_err(crate::db_error("listing PSA links"))?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn start_sla(
                &self,
                sla: &gatehouse_core::onboarding::SlaClock,
                audit: &[gatehouse_core::audit::AuditRecord],
            ) -> gatehouse_core::store::StoreResult<gatehouse_core::onboarding::SlaClock> {
                use crate::engine_sql::SortableTime;
                let mut tx = self.writer.begin().await.map_err(crate::db_error("starting a transaction"))?;
                let text = format!(
                    "INSERT INTO tenant_sla_clocks ({}) VALUES ($1, $2, $3, $4, $5, NULL)
                     ON CONFLICT (id) DO NOTHING",
                    crate::onboarding_sql::SLA_COLUMNS
                );
                let done = sqlx::query(&text)
                    .bind(sla.id.to_string())
                    .bind(sla.tenant_id.to_string())
                    .bind(sla.instance_id.map(|i| i.to_string()))
                    .bind(sla.contract.clone())
                    .bind(SortableTime(sla.started_at))
                    .execute(&mut *tx)
                    .await
                    .map_err(Self::onboarding_fk("tenant", "starting an SLA clock"))?;
                if done.rows_affected() == 1 {
                    Self::write_audit_records(&mut tx, audit).await?;
                }
                let text = format!(
                    "SELECT {} FROM tenant_sla_clocks WHERE id = $1 AND tenant_id = $2",
                    crate::onboarding_sql::SLA_COLUMNS
                );
                let row = sqlx::query_as::<_, crate::onboarding_sql::SlaRow>(&text)
                    .bind(sla.id.to_string())
                    .bind(sla.tenant_id.to_string())
                    .fetch_optional(&mut *tx)
                    .await
                    .map_err(crate::db_error("reading an SLA clock"))?
                    .ok_or(gatehouse_core::store::StoreError::NotFound("SLA clock"))?;
                tx.commit().await.map_err(crate::db_error("committing an SLA clock"))?;
                row.try_into()
            }

            async fn stop_sla(
                &self,
                tenant: gatehouse_core::id::TenantId,
                id: gatehouse_core::id::SlaId,
                at: time::OffsetDateTime,
                audit: &[gatehouse_core::audit::AuditRecord],
            ) -> gatehouse_core::store::StoreResult<bool> {
                let mut tx = self.writer.begin().await.map_err(crate::db_error("starting a transaction"))?;
                let done = sqlx::query(
                    "UPDATE tenant_sla_clocks SET stopped_at = $1
                     WHERE id = $2 AND tenant_id = $3 AND stopped_at IS NULL",
                )
                .bind(crate::engine_sql::SortableTime(at))
                .bind(id.to_string())
                .bind(tenant.to_string())
                .execute(&mut *tx)
                .await
                .map_err(crate::db_error("stopping an SLA clock"))?;
                let changed = done.rows_affected() == 1;
                if changed {
                    Self::write_audit_records(&mut tx, audit).await?;
                }
                tx.commit().await.map_err(crate::db_error("committing an SLA stop"))?;
                Ok(changed)
            }

            async fn sla_clocks(
                &self,
                tenant: gatehouse_core::id::TenantId,
            ) -> gatehouse_core::store::StoreResult<Vec<gatehouse_core::onboarding::SlaClock>> {
                let text = format!(
                    "SELECT {} FROM tenant_sla_clocks WHERE tenant_id = $1 ORDER BY id",
                    crate::onboarding_sql::SLA_COLUMNS
                );
                let rows = sqlx::query_as::<_, crate::onboarding_sql::SlaRow>(&text)
                    .bind(tenant.to_string())
                    .fetch_all(&self.pool)
                    .await
                    .map_err(crate::db_error("listing SLA clocks"))?;
                rows.into_iter().map(TryInto::try_into).collect()
            }

            async fn onboarding_stats(
                &self,
                now: time::OffsetDateTime,
            ) -> gatehouse_core::store::StoreResult<gatehouse_core::onboarding::OnboardingStats> {
                let (overdue,): (i64,) = sqlx::query_as(
                    "SELECT COUNT(*) FROM checklist_items WHERE state = 'requested' AND due_at <= $1",
                )
                .bind(crate::engine_sql::SortableTime(now))
                .fetch_one(&self.pool)
                .await
                .map_err(crate::db_error("counting overdue checklist items"))?;
                let went_live: Vec<(time::OffsetDateTime, time::OffsetDateTime)> = sqlx::query_as(
                    "SELECT started_at, go_live_at FROM onboardings WHERE go_live_at IS NOT NULL",
                )
                .fetch_all(&self.pool)
                .await
                .map_err(crate::db_error("reading go-live times"))?;
                Ok(gatehouse_core::onboarding::OnboardingStats {
                    overdue_items: u64::try_from(overdue).unwrap_or_default(),
                    went_live,
                })
            }
        }
    };
}

pub(crate) use impl_onboarding_store;
