//! Working the documentation checklist: list an onboarding's items, mark a
//! confirmation received, upload a file (sealed under the tenant's key),
//! hand over a secret (into the tenant's vault through
//! [`App::put_secret`]; the item keeps only its name), waive with a reason,
//! and download a file.
//!
//! An item is always addressed through its onboarding: an item of another
//! onboarding (and so of another tenant) is "not found", never "forbidden".

use gatehouse_core::id::{ChecklistItemId, WorkflowId};
use gatehouse_core::onboarding::{
    ChecklistItem, ItemDecision, ItemFile, ItemKind, ItemState, Onboarding, Sealed,
    action as onboarding_action,
};
use gatehouse_core::secret::SecretName;
use gatehouse_core::store::StoreError;
use serde::Serialize;
use serde_json::json;
use time::OffsetDateTime;
use utoipa::ToSchema;
use zeroize::Zeroizing;

use super::actions::item_owner_context;
use crate::app::{Actor, App, TenantRef};
use crate::authz::{Permission, authorize_owned, authorize_tenant};
use crate::error::AppError;

/// The largest file accepted for a checklist item, in bytes.
pub const MAX_FILE_BYTES: usize = 8 * 1024 * 1024;
/// The longest note or reason, in characters.
const MAX_NOTE_CHARS: usize = 2000;

/// A file as uploaded.
#[derive(Clone)]
pub struct Upload {
    /// Its name (no path).
    pub name: String,
    /// Its media type, as declared.
    pub content_type: String,
    /// Its content.
    pub bytes: Vec<u8>,
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload")
            .field("content_type", &self.content_type)
            .field("size", &self.bytes.len())
            .finish_non_exhaustive()
    }
}

/// A received file, without its content.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct FileView {
    /// The name it was uploaded under.
    pub name: String,
    /// Its media type.
    pub content_type: String,
    /// Its size in bytes.
    pub size: u64,
}

/// A checklist item as shown to operators.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct ItemView {
    /// The item's id.
    #[schema(value_type = String)]
    pub id: ChecklistItemId,
    /// Its key in the onboarding (`msa-sow`).
    pub key: String,
    /// What is asked for.
    pub title: String,
    /// `file`, `secret` or `confirmation`.
    pub kind: ItemKind,
    /// `requested`, `received`, `waived` or `cancelled`.
    pub state: ItemState,
    /// Who is asked.
    pub owner: Option<String>,
    /// When it is due.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub due_at: OffsetDateTime,
    /// Still requested past its due date.
    pub overdue: bool,
    /// Who received, waived or cancelled it.
    pub decided_by: Option<String>,
    /// When.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub decided_at: Option<OffsetDateTime>,
    /// The waiver's reason, or a note.
    pub note: Option<String>,
    /// For a secret: its name in the tenant's vault.
    pub secret_name: Option<String>,
    /// For a file: what was uploaded.
    pub file: Option<FileView>,
    /// When the reminder was sent.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub reminded_at: Option<OffsetDateTime>,
    /// When the overdue escalation was sent.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub overdue_notified_at: Option<OffsetDateTime>,
}

fn file_name_context(item: ChecklistItemId) -> String {
    format!("checklist-file-name:{item}")
}

fn file_context(item: ChecklistItemId) -> String {
    format!("checklist-file:{item}")
}

fn not_found(onboarding: WorkflowId, item: ChecklistItemId) -> AppError {
    AppError::NotFound {
        code: "item_not_found",
        message: format!("onboarding `{onboarding}` has no checklist item `{item}`"),
    }
}

pub(crate) fn onboarding_not_found(id: WorkflowId) -> AppError {
    AppError::NotFound {
        code: "onboarding_not_found",
        message: format!("no onboarding `{id}`"),
    }
}

fn checked_note(text: &str, what: &str) -> Result<String, AppError> {
    let text = text.trim();
    if text.chars().count() > MAX_NOTE_CHARS {
        return Err(AppError::Invalid(format!(
            "invalid {what}: at most {MAX_NOTE_CHARS} characters"
        )));
    }
    Ok(text.to_owned())
}

impl App {
    /// The onboarding's row, once its tenant exists.
    pub(crate) async fn onboarding_with_tenant(
        &self,
        id: WorkflowId,
    ) -> Result<Option<Onboarding>, AppError> {
        match self.store.get_onboarding(id).await {
            Ok(found) => Ok(Some(found)),
            Err(StoreError::NotFound(_)) => Ok(None),
            Err(err) => Err(err.into()),
        }
    }

    /// Item views of an onboarding (empty before its tenant exists).
    pub(crate) async fn item_views(
        &self,
        onboarding: Option<&Onboarding>,
    ) -> Result<Vec<ItemView>, AppError> {
        let Some((o, tenant)) = onboarding.and_then(|o| o.tenant_id.map(|t| (o, t))) else {
            return Ok(Vec::new());
        };
        let items = self.store.list_items(tenant, o.instance_id).await?;
        let sealer = if items.is_empty() {
            None
        } else {
            Some(self.keyring.sealer(tenant).await?)
        };
        let now = self.clock.now();
        let mut views = Vec::with_capacity(items.len());
        for item in items {
            let open = |context: &str, sealed: &Sealed| -> Result<String, AppError> {
                let sealer = sealer
                    .as_ref()
                    .ok_or_else(|| AppError::Internal("no sealer for a sealed value".into()))?;
                let plain = sealer.open(context, &sealed.0)?;
                Ok(String::from_utf8_lossy(&plain).into_owned())
            };
            let owner = item
                .owner
                .as_ref()
                .map(|s| open(&item_owner_context(item.id), s))
                .transpose()?;
            let file = item
                .file
                .as_ref()
                .map(|f| -> Result<FileView, AppError> {
                    Ok(FileView {
                        name: open(&file_name_context(item.id), &f.name)?,
                        content_type: f.content_type.clone(),
                        size: f.size,
                    })
                })
                .transpose()?;
            views.push(ItemView {
                id: item.id,
                key: item.key.as_str().to_owned(),
                title: item.title.clone(),
                kind: item.kind,
                state: item.state,
                owner,
                due_at: item.due_at,
                overdue: item.is_overdue(now),
                decided_by: item.decided_by.clone(),
                decided_at: item.decided_at,
                note: item.note.clone(),
                secret_name: item.secret_name.as_ref().map(|n| n.as_str().to_owned()),
                file,
                reminded_at: item.reminded_at,
                overdue_notified_at: item.overdue_notified_at,
            });
        }
        Ok(views)
    }

    /// An onboarding's checklist.
    pub async fn list_checklist(
        &self,
        actor: &Actor,
        onboarding: WorkflowId,
    ) -> Result<Vec<ItemView>, AppError> {
        self.authorize_onboarding(actor, Permission::ReadWorkflows, onboarding)
            .await?;
        let found = self.require_onboarding(onboarding).await?;
        self.item_views(found.as_ref()).await
    }

    /// Checks `permission` on an onboarding, by both its owners (see
    /// [`App::authorize_onboarding_owners`]). A won deal's onboarding starts
    /// before its client's tenant exists, so its workflow is the
    /// installation's: for operators whose role spans every tenant
    /// (docs/authorization.md).
    pub(crate) async fn authorize_onboarding(
        &self,
        actor: &Actor,
        permission: Permission,
        id: WorkflowId,
    ) -> Result<(), AppError> {
        if matches!(actor, Actor::System(_)) {
            return Ok(());
        }
        let owner = match self.store.get_instance(id).await {
            Ok((instance, _)) if super::tracking::is_onboarding(&instance) => instance.tenant_id,
            Ok(_) | Err(StoreError::NotFound(_)) => return Err(onboarding_not_found(id)),
            Err(err) => return Err(err.into()),
        };
        self.authorize_onboarding_owners(actor, permission, id, owner)
            .await
    }

    /// Checks `permission` on both owners of an onboarding: the tenant its
    /// workflow belongs to (`owner`; none: the installation) and the
    /// client's tenant it created, whose checklist, files and secrets it
    /// holds. Either out of reach is "not found".
    pub(crate) async fn authorize_onboarding_owners(
        &self,
        actor: &Actor,
        permission: Permission,
        id: WorkflowId,
        owner: Option<gatehouse_core::id::TenantId>,
    ) -> Result<(), AppError> {
        authorize_owned(actor, permission, owner, || onboarding_not_found(id))?;
        if let Some(client) = self
            .onboarding_with_tenant(id)
            .await?
            .and_then(|o| o.tenant_id)
            && Some(client) != owner
        {
            authorize_tenant(actor, permission, client, || onboarding_not_found(id))?;
        }
        Ok(())
    }

    /// The instance must be an onboarding; its row, if opened.
    async fn require_onboarding(&self, id: WorkflowId) -> Result<Option<Onboarding>, AppError> {
        match self.store.get_instance(id).await {
            Ok((instance, _)) if super::tracking::is_onboarding(&instance) => {}
            Ok(_) | Err(StoreError::NotFound(_)) => return Err(onboarding_not_found(id)),
            Err(err) => return Err(err.into()),
        }
        self.onboarding_with_tenant(id).await
    }

    /// The item, if it belongs to the onboarding.
    async fn item_of(
        &self,
        onboarding: WorkflowId,
        item: ChecklistItemId,
    ) -> Result<ChecklistItem, AppError> {
        let tenant = self
            .onboarding_with_tenant(onboarding)
            .await?
            .and_then(|o| o.tenant_id)
            .ok_or_else(|| not_found(onboarding, item))?;
        match self.store.get_item(tenant, item).await {
            Ok(found) if found.instance_id == onboarding => Ok(found),
            Ok(_) | Err(StoreError::NotFound(_)) => Err(not_found(onboarding, item)),
            Err(err) => Err(err.into()),
        }
    }

    async fn settle(
        &self,
        actor: &Actor,
        item: &ChecklistItem,
        decision: ItemDecision,
        action: &str,
        mut details: serde_json::Value,
    ) -> Result<ItemView, AppError> {
        if let serde_json::Value::Object(members) = &mut details {
            members.insert("onboarding".into(), json!(item.instance_id));
            members.insert("key".into(), json!(item.key.as_str()));
        }
        let audit =
            actor
                .provenance(decision.at)
                .record(Some(item.tenant_id), action, item.id, details);
        self.store
            .decide_item(
                item.tenant_id,
                item.id,
                ItemState::Requested,
                &decision,
                &[audit],
            )
            .await
            .map_err(|err| match err {
                StoreError::Stale(_) => AppError::Conflict {
                    code: "item_not_requested",
                    message: format!(
                        "checklist item `{}` is no longer requested; read it again",
                        item.key
                    ),
                },
                other => other.into(),
            })?;
        self.item_view(item.instance_id, item.id).await
    }

    async fn item_view(
        &self,
        onboarding: WorkflowId,
        item: ChecklistItemId,
    ) -> Result<ItemView, AppError> {
        let found = self.onboarding_with_tenant(onboarding).await?;
        self.item_views(found.as_ref())
            .await?
            .into_iter()
            .find(|v| v.id == item)
            .ok_or_else(|| not_found(onboarding, item))
    }

    fn requested(item: &ChecklistItem, kind: ItemKind, how: &str) -> Result<(), AppError> {
        if item.kind != kind {
            return Err(AppError::Conflict {
                code: "item_kind_mismatch",
                message: format!(
                    "checklist item `{}` is a {}: {how}",
                    item.key,
                    item.kind.as_str()
                ),
            });
        }
        if item.state != ItemState::Requested {
            return Err(AppError::Conflict {
                code: "item_not_requested",
                message: format!("checklist item `{}` is {}", item.key, item.state),
            });
        }
        Ok(())
    }

    fn by(actor: &Actor) -> String {
        actor
            .operator_id()
            .map_or_else(|| "system".to_owned(), |id| id.to_string())
    }

    /// Marks a confirmation item received.
    pub async fn receive_item(
        &self,
        actor: &Actor,
        onboarding: WorkflowId,
        item: ChecklistItemId,
        note: Option<&str>,
    ) -> Result<ItemView, AppError> {
        self.authorize_onboarding(actor, Permission::WorkChecklists, onboarding)
            .await?;
        let found = self.item_of(onboarding, item).await?;
        Self::requested(
            &found,
            ItemKind::Confirmation,
            "upload the file or hand over the secret instead",
        )?;
        let note = note
            .map(|n| checked_note(n, "note"))
            .transpose()?
            .filter(|n| !n.is_empty());
        self.settle(
            actor,
            &found,
            ItemDecision {
                state: ItemState::Received,
                by: Self::by(actor),
                at: self.clock.now(),
                note: note.clone(),
                secret_name: None,
                file: None,
            },
            onboarding_action::ITEM_RECEIVED,
            json!({"kind": "confirmation", "note": note}),
        )
        .await
    }

    /// Receives a file item: the name and content are sealed under the
    /// tenant's key; the media type and size are kept for the download.
    pub async fn upload_item_file(
        &self,
        actor: &Actor,
        onboarding: WorkflowId,
        item: ChecklistItemId,
        upload: Upload,
    ) -> Result<ItemView, AppError> {
        self.authorize_onboarding(actor, Permission::WorkChecklists, onboarding)
            .await?;
        let found = self.item_of(onboarding, item).await?;
        Self::requested(&found, ItemKind::File, "it is not received by upload")?;
        if upload.bytes.is_empty() || upload.bytes.len() > MAX_FILE_BYTES {
            return Err(AppError::Invalid(format!(
                "invalid file: must be 1 to {MAX_FILE_BYTES} bytes"
            )));
        }
        let name = upload
            .name
            .rsplit(['/', '\\'])
            .next()
            .unwrap_or_default()
            .trim()
            .to_owned();
        if name.is_empty() || name.chars().count() > 255 || name.chars().any(char::is_control) {
            return Err(AppError::Invalid(
                "invalid file name: 1 to 255 characters, no control characters".into(),
            ));
        }
        let content_type = upload.content_type.trim().to_ascii_lowercase();
        let valid_type = content_type.len() <= 127
            && content_type.split_once('/').is_some_and(|(a, b)| {
                !a.is_empty()
                    && !b.is_empty()
                    && content_type
                        .bytes()
                        .all(|c| c.is_ascii_alphanumeric() || b"/+-.;= ".contains(&c) || c == b'_')
            });
        if !valid_type {
            return Err(AppError::Invalid(format!(
                "invalid content type `{}`",
                content_type.escape_debug()
            )));
        }
        let sealer = self.keyring.sealer(found.tenant_id).await?;
        let size = upload.bytes.len() as u64;
        let file = ItemFile {
            name: Sealed(sealer.seal(&file_name_context(item), name.as_bytes())?),
            content_type: content_type.clone(),
            size,
            content: Sealed(sealer.seal(&file_context(item), &upload.bytes)?),
        };
        self.settle(
            actor,
            &found,
            ItemDecision {
                state: ItemState::Received,
                by: Self::by(actor),
                at: self.clock.now(),
                note: None,
                secret_name: None,
                file: Some(file),
            },
            onboarding_action::ITEM_RECEIVED,
            json!({"kind": "file", "file": {"name": name, "content_type": content_type, "size": size}}),
        )
        .await
    }

    /// Receives a secret item: the value goes into the tenant's vault
    /// under `name` (through [`App::put_secret`], so it also needs
    /// `ManageSecrets`); the item records only the name.
    pub async fn hand_over_secret(
        &self,
        actor: &Actor,
        onboarding: WorkflowId,
        item: ChecklistItemId,
        name: &SecretName,
        value: &[u8],
    ) -> Result<ItemView, AppError> {
        self.authorize_onboarding(actor, Permission::WorkChecklists, onboarding)
            .await?;
        let found = self.item_of(onboarding, item).await?;
        Self::requested(&found, ItemKind::Secret, "it is not received as a secret")?;
        self.put_secret(actor, &TenantRef::Id(found.tenant_id), name, value)
            .await?;
        self.settle(
            actor,
            &found,
            ItemDecision {
                state: ItemState::Received,
                by: Self::by(actor),
                at: self.clock.now(),
                note: None,
                secret_name: Some(name.clone()),
                file: None,
            },
            onboarding_action::ITEM_RECEIVED,
            json!({"kind": "secret", "secret_name": name.as_str()}),
        )
        .await
    }

    /// Waives an item that is still requested, with a reason.
    pub async fn waive_item(
        &self,
        actor: &Actor,
        onboarding: WorkflowId,
        item: ChecklistItemId,
        reason: &str,
    ) -> Result<ItemView, AppError> {
        self.authorize_onboarding(actor, Permission::WaiveChecklistItems, onboarding)
            .await?;
        let reason = checked_note(reason, "reason")?;
        if reason.is_empty() {
            return Err(AppError::Invalid(
                "invalid reason: say why the item is not needed".into(),
            ));
        }
        let found = self.item_of(onboarding, item).await?;
        if found.state != ItemState::Requested {
            return Err(AppError::Conflict {
                code: "item_not_requested",
                message: format!("checklist item `{}` is {}", found.key, found.state),
            });
        }
        self.settle(
            actor,
            &found,
            ItemDecision {
                state: ItemState::Waived,
                by: Self::by(actor),
                at: self.clock.now(),
                note: Some(reason.clone()),
                secret_name: None,
                file: None,
            },
            onboarding_action::ITEM_WAIVED,
            json!({"reason": reason}),
        )
        .await
    }

    /// A received file in the clear: its name, media type and content.
    pub async fn download_item_file(
        &self,
        actor: &Actor,
        onboarding: WorkflowId,
        item: ChecklistItemId,
    ) -> Result<(String, String, Zeroizing<Vec<u8>>), AppError> {
        self.authorize_onboarding(actor, Permission::ReadChecklistFiles, onboarding)
            .await?;
        let found = self.item_of(onboarding, item).await?;
        let file = self
            .store
            .item_file(found.tenant_id, item)
            .await
            .map_err(|err| match err {
                StoreError::NotFound(_) => AppError::NotFound {
                    code: "file_not_found",
                    message: format!("checklist item `{}` has no file", found.key),
                },
                other => other.into(),
            })?;
        let sealer = self.keyring.sealer(found.tenant_id).await?;
        let name = sealer.open(&file_name_context(item), &file.name.0)?;
        let content = sealer.open(&file_context(item), &file.content.0)?;
        Ok((
            String::from_utf8_lossy(&name).into_owned(),
            file.content_type,
            content,
        ))
    }
}
