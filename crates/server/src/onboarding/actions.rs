//! The onboarding template's Gatehouse-side actions.
//!
//! Each is idempotent under the step's idempotency key, as the engine
//! requires: a repeated call (a retry, a re-run after a crash) finds what an
//! earlier attempt recorded instead of acting twice. Most do so through the
//! store (`ON CONFLICT DO NOTHING` and a read back, guarded updates);
//! `tenant.create` claims the slug for its onboarding first (see
//! [`TenantCreate`]).
//!
//! **The construction cycle.** `tenant.create` and `tenant.delete` must
//! follow the App's rules for tenants (its own data key, audit records,
//! crypto-shredding), so they call [`App`]; but `App` holds the engine,
//! which holds its actions. [`AppSlot`] breaks the cycle: the actions are
//! registered with an empty slot, the engine and then the `App` are built,
//! and the wiring fills the slot right after `App::new`. Until then (never,
//! once wired) a call fails as retryable. The slot holds a clone of the
//! `App`, so App → engine → actions → App is a reference cycle: both live
//! as long as the process (`serve`) or the command, so nothing is leaked
//! that would have been freed earlier.

use std::sync::{Arc, OnceLock};

use async_trait::async_trait;
use gatehouse_core::audit::Provenance;
use gatehouse_core::id::{ChecklistItemId, SlaId, TenantId};
use gatehouse_core::notify::EmailAddress;
use gatehouse_core::onboarding::{
    ChecklistItem, ItemDecision, ItemKey, ItemKind, ItemState, Onboarding, PsaLink, Sealed,
    SlaClock, action as onboarding_action,
};
use gatehouse_core::store::StoreError;
use gatehouse_core::tenant::{DisplayName, Region, TenantAction, TenantSlug, TenantState};
use gatehouse_engine::action::{Action, ActionCall, ActionError, ActionRegistry};
use serde::Deserialize;
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::app::{Actor, App, NewTenant, TenantRef};
use crate::error::AppError;

/// Who the actions act as.
const ACTOR: Actor = Actor::System("workflow");

/// The `App`, filled in after it is built (see the module documentation).
#[derive(Debug, Clone, Default)]
pub struct AppSlot(Arc<OnceLock<App>>);

impl AppSlot {
    /// An empty slot.
    pub fn new() -> Self {
        Self::default()
    }

    /// Fills the slot; a second call is ignored (the first `App` stays).
    pub fn set(&self, app: App) {
        let _ = self.0.set(app);
    }

    fn app(&self) -> Result<&App, ActionError> {
        self.0
            .get()
            .ok_or_else(|| ActionError::retryable("the onboarding services are not wired yet"))
    }
}

/// Registers the onboarding actions, all sharing `slot`.
pub fn register_actions(registry: &mut ActionRegistry, slot: &AppSlot) {
    let s = || slot.clone();
    registry.register("tenant.create", Arc::new(TenantCreate(s())));
    registry.register("tenant.delete", Arc::new(TenantDelete(s())));
    registry.register("psa.link_company", Arc::new(PsaLinkCompany(s())));
    registry.register("psa.unlink_company", Arc::new(PsaUnlinkCompany(s())));
    registry.register("onboarding.assign_owner", Arc::new(AssignOwner(s())));
    registry.register("checklist.request", Arc::new(ChecklistRequest(s())));
    registry.register("checklist.cancel", Arc::new(ChecklistCancel(s())));
    registry.register("sla.start", Arc::new(SlaStart(s())));
    registry.register("sla.stop", Arc::new(SlaStop(s())));
}

// ----- helpers ---------------------------------------------------------------

/// Reads a step's parameters into `T`; a mismatch is permanent.
fn params<T: for<'de> Deserialize<'de>>(call: &ActionCall<'_>) -> Result<T, ActionError> {
    T::deserialize(call.params)
        .map_err(|e| ActionError::permanent(format!("invalid parameters: {e}")))
}

/// Maps a service error: what a retry may fix is retryable, the rest not.
fn app_error(context: &str, err: AppError) -> ActionError {
    match err {
        AppError::Unavailable(_) | AppError::Internal(_) => {
            ActionError::retryable(format!("{context}: {err}"))
        }
        other => ActionError::permanent(format!("{context}: {other}")),
    }
}

fn store_error(context: &str, err: StoreError) -> ActionError {
    match err {
        StoreError::NotFound(_)
        | StoreError::Conflict(_)
        | StoreError::Invalid(_)
        | StoreError::Corrupt(_) => ActionError::permanent(format!("{context}: {err}")),
        StoreError::Stale(_) | StoreError::Backend { .. } => {
            ActionError::retryable(format!("{context}: {err}"))
        }
    }
}

/// The `tenant` parameter of an onboarding action. A workflow that belongs
/// to a tenant (an onboarding from `create-tenant` on) acts on that tenant
/// only, as [`crate::actions::Directory::tenant_of`] holds for the
/// connector actions.
fn parse_tenant(call: &ActionCall<'_>, text: &str) -> Result<TenantId, ActionError> {
    let tenant: TenantId = text
        .parse()
        .map_err(|e| ActionError::permanent(format!("invalid tenant: {e}")))?;
    match call.tenant {
        Some(owner) if owner != tenant => Err(ActionError::permanent(format!(
            "this workflow belongs to tenant {owner} and may not act on tenant {tenant}"
        ))),
        _ => Ok(tenant),
    }
}

fn provenance(app: &App) -> Provenance {
    ACTOR.provenance(app.clock.now())
}

/// The sealing context of an onboarding owner's address.
pub(crate) fn owner_context(instance: gatehouse_core::id::WorkflowId) -> String {
    format!("onboarding-owner:{instance}")
}

/// The sealing context of a checklist item's owner's address.
pub(crate) fn item_owner_context(item: ChecklistItemId) -> String {
    format!("checklist-owner:{item}")
}

async fn seal(
    app: &App,
    tenant: TenantId,
    context: &str,
    plain: &[u8],
) -> Result<Sealed, ActionError> {
    let sealer = app
        .keyring
        .sealer(tenant)
        .await
        .map_err(|e| app_error("opening the tenant's key", e.into()))?;
    sealer
        .seal(context, plain)
        .map(Sealed)
        .map_err(|e| app_error("sealing", e.into()))
}

/// A duration as templates write it: a whole number and one unit
/// (`30m`, `12h`, `5d`, `2w`).
fn parse_due_in(text: &str) -> Result<time::Duration, ActionError> {
    let bad = || {
        ActionError::permanent(format!(
            "invalid due_in `{text}`: a whole number and one unit of m, h, d or w, such as `5d`"
        ))
    };
    let split = text.find(|c: char| !c.is_ascii_digit()).ok_or_else(bad)?;
    let (number, unit) = text.split_at(split);
    let n: i64 = number.parse().map_err(|_| bad())?;
    let duration = match unit {
        "m" => time::Duration::minutes(n),
        "h" => time::Duration::hours(n),
        "d" => time::Duration::days(n),
        "w" => time::Duration::weeks(n),
        _ => return Err(bad()),
    };
    if n == 0 || duration > time::Duration::days(366) {
        return Err(ActionError::permanent(format!(
            "invalid due_in `{text}`: between 1m and 366d"
        )));
    }
    Ok(duration)
}

// ----- tenant.create / tenant.delete ----------------------------------------

/// `tenant.create {slug, display_name, region}` → `{id, slug}`.
///
/// Creates the client's tenant through [`App::create_tenant`] (its own data
/// key, audit records), in state `provisioning` until go-live. Idempotent
/// without a table of its own: the first attempt claims the slug for its
/// onboarding (`onboardings.slug`, one row per instance) before creating the
/// tenant, and records the tenant's id there after. A repeated call returns
/// the recorded tenant; if an earlier attempt created the tenant but died
/// before recording it, the tenant with the claimed slug is adopted when it
/// was created after the claim and no other onboarding holds it. A slug
/// held by any other tenant is a permanent failure.
#[derive(Debug)]
pub struct TenantCreate(AppSlot);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantCreateParams {
    slug: TenantSlug,
    display_name: DisplayName,
    region: Region,
}

#[async_trait]
impl Action for TenantCreate {
    async fn run(&self, call: ActionCall<'_>) -> Result<Value, ActionError> {
        let app = self.0.app()?;
        let p: TenantCreateParams = params(&call)?;
        let now = app.clock.now();
        let instance = app
            .store
            .get_instance(call.instance)
            .await
            .map_err(|e| store_error("reading the workflow instance", e))?
            .0;
        let claim = Onboarding {
            instance_id: call.instance,
            tenant_id: None,
            slug: p.slug.as_str().to_owned(),
            owner: None,
            started_at: instance.created_at,
            created_at: now,
            go_live_at: None,
        };
        let opened = provenance(app).record(
            None,
            onboarding_action::ONBOARDING_OPENED,
            call.instance,
            json!({"slug": p.slug.as_str()}),
        );
        let onboarding = app
            .store
            .open_onboarding(&claim, &[opened])
            .await
            .map_err(|e| store_error("opening the onboarding", e))?;
        let done = |id: TenantId, slug: &str| Ok(json!({"id": id, "slug": slug}));
        if let Some(tenant) = onboarding.tenant_id {
            return done(tenant, &onboarding.slug);
        }
        if onboarding.slug != p.slug.as_str() {
            return Err(ActionError::permanent(format!(
                "this onboarding claimed slug `{}`, not `{}`",
                onboarding.slug, p.slug
            )));
        }
        // Created by an earlier attempt that died before recording it?
        if let Some(id) = adoptable(app, &onboarding, &p.slug).await? {
            record_tenant(app, &onboarding, id).await?;
            return done(id, p.slug.as_str());
        }
        let created = app
            .create_tenant(
                &ACTOR,
                NewTenant {
                    slug: p.slug.clone(),
                    display_name: p.display_name,
                    region: p.region,
                    state: TenantState::Provisioning,
                },
            )
            .await;
        let tenant = match created {
            Ok(tenant) => tenant,
            Err(AppError::Conflict {
                code: "tenant_slug_taken",
                message,
            }) => {
                return Err(ActionError::permanent(format!(
                    "{message}: another tenant holds the slug; choose another slug for this client"
                )));
            }
            Err(err) => return Err(app_error("creating the tenant", err)),
        };
        record_tenant(app, &onboarding, tenant.id).await?;
        done(tenant.id, tenant.slug.as_str())
    }

    /// The onboarding belongs to the client's tenant from here on.
    fn creates_workflow_tenant(&self) -> bool {
        true
    }
}

/// The tenant holding `slug`, if this onboarding may adopt it; a permanent
/// failure if another tenant holds it.
async fn adoptable(
    app: &App,
    onboarding: &Onboarding,
    slug: &TenantSlug,
) -> Result<Option<TenantId>, ActionError> {
    let tenant = match app.store.find_tenant_by_slug(slug).await {
        Ok(tenant) => tenant,
        Err(StoreError::NotFound(_)) => return Ok(None),
        Err(err) => return Err(store_error("looking up the slug", err)),
    };
    let others = app
        .store
        .list_onboardings(&gatehouse_core::onboarding::OnboardingQuery {
            within: None,
            tenant: Some(tenant.id),
            after: None,
            limit: 1,
        })
        .await
        .map_err(|e| store_error("looking up the slug's onboarding", e))?;
    if tenant.created_at >= onboarding.created_at && others.is_empty() {
        Ok(Some(tenant.id))
    } else {
        Err(ActionError::permanent(format!(
            "a tenant with slug `{slug}` already exists ({}): another tenant holds the slug; choose another slug for this client",
            tenant.id
        )))
    }
}

async fn record_tenant(
    app: &App,
    onboarding: &Onboarding,
    tenant: TenantId,
) -> Result<(), ActionError> {
    let audit = provenance(app).record(
        Some(tenant),
        onboarding_action::ONBOARDING_OPENED,
        onboarding.instance_id,
        json!({"slug": onboarding.slug, "tenant": tenant}),
    );
    app.store
        .set_onboarding_tenant(onboarding.instance_id, tenant, &[audit])
        .await
        .map_err(|e| store_error("recording the onboarding's tenant", e))
}

/// `tenant.delete {tenant}`: the compensation of `tenant.create`. Follows
/// the tenant lifecycle: an active or suspended tenant is offboarded
/// first, then deleted, which destroys its data key (crypto-shredding) and
/// with it the onboarding's checklist, files and links. A deleted tenant
/// stays deleted (a repeated call succeeds).
#[derive(Debug)]
pub struct TenantDelete(AppSlot);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct TenantParam {
    tenant: String,
}

#[async_trait]
impl Action for TenantDelete {
    async fn run(&self, call: ActionCall<'_>) -> Result<Value, ActionError> {
        let app = self.0.app()?;
        let p: TenantParam = params(&call)?;
        let id = parse_tenant(&call, &p.tenant)?;
        let tenant = app
            .get_tenant(&ACTOR, &TenantRef::Id(id))
            .await
            .map_err(|e| app_error("reading the tenant", e))?;
        let mut state = tenant.state;
        if matches!(state, TenantState::Active | TenantState::Suspended) {
            state = app
                .transition_tenant(&ACTOR, &TenantRef::Id(id), TenantAction::Offboard)
                .await
                .map_err(|e| app_error("offboarding the tenant", e))?
                .state;
        }
        if state != TenantState::Deleted {
            app.transition_tenant(&ACTOR, &TenantRef::Id(id), TenantAction::Delete)
                .await
                .map_err(|e| app_error("deleting the tenant", e))?;
        }
        Ok(json!({"id": id, "deleted": true}))
    }
}

// ----- PSA links ---------------------------------------------------------------

/// `psa.link_company {tenant, psa, company_id}`: records in Gatehouse which
/// PSA company the tenant is (nothing is changed in the PSA).
#[derive(Debug)]
pub struct PsaLinkCompany(AppSlot);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LinkParams {
    tenant: String,
    psa: String,
    company_id: Value,
}

/// A PSA company id: text or a number, as PSAs differ.
fn company_id(value: &Value) -> Result<String, ActionError> {
    let text = match value {
        Value::String(s) => s.trim().to_owned(),
        Value::Number(n) => n.to_string(),
        _ => String::new(),
    };
    if text.is_empty() || text.len() > 128 {
        return Err(ActionError::permanent(
            "invalid company_id: 1 to 128 characters of text or a number",
        ));
    }
    Ok(text)
}

#[async_trait]
impl Action for PsaLinkCompany {
    async fn run(&self, call: ActionCall<'_>) -> Result<Value, ActionError> {
        let app = self.0.app()?;
        let p: LinkParams = params(&call)?;
        let tenant = parse_tenant(&call, &p.tenant)?;
        let company = company_id(&p.company_id)?;
        let psa = p.psa.trim().to_ascii_lowercase();
        if psa.is_empty() || psa.len() > 64 {
            return Err(ActionError::permanent("invalid psa: 1 to 64 characters"));
        }
        let now = app.clock.now();
        let audit = provenance(app).record(
            Some(tenant),
            onboarding_action::PSA_LINKED,
            tenant,
            json!({"psa": psa, "company_id": company, "instance": call.instance}),
        );
        app.store
            .link_psa_company(
                &PsaLink {
                    tenant_id: tenant,
                    psa: psa.clone(),
                    company_id: company.clone(),
                    instance_id: Some(call.instance),
                    linked_at: now,
                    unlinked_at: None,
                },
                &[audit],
            )
            .await
            .map_err(|e| store_error("linking the PSA company", e))?;
        Ok(json!({"tenant": tenant, "psa": psa, "company_id": company}))
    }
}

/// `psa.unlink_company {tenant, company_id}`: the compensation of the link.
/// A tenant already deleted has no links left: that is success.
#[derive(Debug)]
pub struct PsaUnlinkCompany(AppSlot);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UnlinkParams {
    tenant: String,
    company_id: Value,
}

#[async_trait]
impl Action for PsaUnlinkCompany {
    async fn run(&self, call: ActionCall<'_>) -> Result<Value, ActionError> {
        let app = self.0.app()?;
        let p: UnlinkParams = params(&call)?;
        let tenant = parse_tenant(&call, &p.tenant)?;
        let company = company_id(&p.company_id)?;
        let audit = provenance(app).record(
            Some(tenant),
            onboarding_action::PSA_UNLINKED,
            tenant,
            json!({"company_id": company, "instance": call.instance}),
        );
        let unlinked = app
            .store
            .unlink_psa_company(tenant, &company, app.clock.now(), &[audit])
            .await
            .map_err(|e| store_error("unlinking the PSA company", e))?;
        Ok(json!({"tenant": tenant, "company_id": company, "unlinked": unlinked}))
    }
}

// ----- owner -----------------------------------------------------------------

/// `onboarding.assign_owner {tenant, owner}`: names the MSP's onboarding
/// owner (sealed under the tenant's key) and tells them, through the
/// notification outbox, in the same transaction. Overdue checklist items
/// are escalated to them. A repeated call naming the same owner changes
/// nothing and sends nothing.
#[derive(Debug)]
pub struct AssignOwner(AppSlot);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct OwnerParams {
    tenant: String,
    owner: EmailAddress,
}

#[async_trait]
impl Action for AssignOwner {
    async fn run(&self, call: ActionCall<'_>) -> Result<Value, ActionError> {
        let app = self.0.app()?;
        let p: OwnerParams = params(&call)?;
        let tenant = parse_tenant(&call, &p.tenant)?;
        let onboarding = ensure_onboarding(app, &call, tenant).await?;
        let context = owner_context(onboarding.instance_id);
        let output = json!({"tenant": tenant, "onboarding": call.instance, "owner_assigned": true});
        if let Some(current) = &onboarding.owner {
            let current = app
                .keyring
                .open(tenant, &context, &current.0)
                .await
                .map_err(|e| app_error("opening the current owner", e.into()))?;
            if current.as_slice() == p.owner.as_str().as_bytes() {
                return Ok(output);
            }
        }
        let sealed = seal(app, tenant, &context, p.owner.as_str().as_bytes()).await?;
        let now = app.clock.now();
        let notification = gatehouse_core::notify::Notification::queue(
            call.instance,
            Some(tenant),
            call.step_id,
            gatehouse_core::onboarding::KIND_OWNER_ASSIGNED,
            Some(p.owner.clone()),
            &format!("[Gatehouse] You own the onboarding of {}", onboarding.slug),
            json!({
                "onboarding": call.instance,
                "tenant": tenant,
                "slug": onboarding.slug,
                "path": format!("/api/v1/onboardings/{}", call.instance),
            }),
            now,
        );
        // The address goes into the tenant's (sealed) log only.
        let audit = provenance(app).record(
            Some(tenant),
            onboarding_action::OWNER_ASSIGNED,
            call.instance,
            json!({"owner": p.owner.as_str(), "notification": notification.id}),
        );
        app.store
            .set_onboarding_owner(call.instance, &sealed, Some(&notification), &[audit])
            .await
            .map_err(|e| store_error("naming the owner", e))?;
        Ok(output)
    }
}

/// The call's onboarding, opened for `tenant` if `tenant.create` did not
/// open it (a template that starts from an existing tenant).
async fn ensure_onboarding(
    app: &App,
    call: &ActionCall<'_>,
    tenant: TenantId,
) -> Result<Onboarding, ActionError> {
    match app.store.get_onboarding(call.instance).await {
        Ok(found) if found.tenant_id == Some(tenant) => return Ok(found),
        Ok(found) => {
            return Err(ActionError::permanent(format!(
                "onboarding {} belongs to tenant {}, not {tenant}",
                call.instance,
                found
                    .tenant_id
                    .map_or_else(|| "(none yet)".to_owned(), |t| t.to_string())
            )));
        }
        Err(StoreError::NotFound(_)) => {}
        Err(err) => return Err(store_error("reading the onboarding", err)),
    }
    let t = app
        .get_tenant(&ACTOR, &TenantRef::Id(tenant))
        .await
        .map_err(|e| app_error("reading the tenant", e))?;
    let instance = app
        .store
        .get_instance(call.instance)
        .await
        .map_err(|e| store_error("reading the workflow instance", e))?
        .0;
    let audit = provenance(app).record(
        Some(tenant),
        onboarding_action::ONBOARDING_OPENED,
        call.instance,
        json!({"slug": t.slug.as_str(), "tenant": tenant}),
    );
    app.store
        .open_onboarding(
            &Onboarding {
                instance_id: call.instance,
                tenant_id: Some(tenant),
                slug: t.slug.as_str().to_owned(),
                owner: None,
                started_at: instance.created_at,
                created_at: app.clock.now(),
                go_live_at: None,
            },
            &[audit],
        )
        .await
        .map_err(|e| store_error("opening the onboarding", e))
}

// ----- checklist -------------------------------------------------------------

/// `checklist.request {tenant, item, title, kind, owner, due_in}` →
/// `{item_id, key, due_at}`: asks the owner for an item, due `due_in` from
/// now. The item is unique per onboarding and key, so a repeated call
/// returns the first request (and its due date).
#[derive(Debug)]
pub struct ChecklistRequest(AppSlot);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RequestParams {
    tenant: String,
    item: ItemKey,
    title: String,
    kind: String,
    owner: EmailAddress,
    due_in: String,
}

#[async_trait]
impl Action for ChecklistRequest {
    async fn run(&self, call: ActionCall<'_>) -> Result<Value, ActionError> {
        let app = self.0.app()?;
        let p: RequestParams = params(&call)?;
        let tenant = parse_tenant(&call, &p.tenant)?;
        let kind: ItemKind = p
            .kind
            .parse()
            .map_err(|e| ActionError::permanent(format!("{e}")))?;
        let title = p.title.trim();
        if title.is_empty() || title.chars().count() > 200 {
            return Err(ActionError::permanent("invalid title: 1 to 200 characters"));
        }
        let due_in = parse_due_in(&p.due_in)?;
        ensure_onboarding(app, &call, tenant).await?;
        let now = app.clock.now();
        let id = ChecklistItemId::generate(now);
        let owner = seal(
            app,
            tenant,
            &item_owner_context(id),
            p.owner.as_str().as_bytes(),
        )
        .await?;
        let item = ChecklistItem {
            id,
            tenant_id: tenant,
            instance_id: call.instance,
            step_id: call.step_id.to_owned(),
            key: p.item,
            title: title.to_owned(),
            kind,
            owner: Some(owner),
            due_at: now + due_in,
            state: ItemState::Requested,
            created_at: now,
            decided_by: None,
            decided_at: None,
            note: None,
            secret_name: None,
            file: None,
            reminded_at: None,
            overdue_notified_at: None,
        };
        let audit = provenance(app).record(
            Some(tenant),
            onboarding_action::ITEM_REQUESTED,
            id,
            json!({
                "onboarding": call.instance,
                "key": item.key.as_str(),
                "title": item.title,
                "kind": kind.as_str(),
                "owner": p.owner.as_str(),
                "due_at": rfc3339(item.due_at),
            }),
        );
        let stored = app
            .store
            .request_item(&item, &[audit])
            .await
            .map_err(|e| store_error("requesting the item", e))?;
        Ok(json!({
            "item_id": stored.id,
            "key": stored.key.as_str(),
            "due_at": rfc3339(stored.due_at),
        }))
    }
}

/// RFC 3339 text of a time (empty if it cannot be formatted, which a
/// clock's time always can).
pub(crate) fn rfc3339(at: OffsetDateTime) -> String {
    at.format(&time::format_description::well_known::Rfc3339)
        .unwrap_or_default()
}

/// `checklist.cancel {item}`: the compensation of a request. A requested
/// item becomes `cancelled`; one already received or waived is left as it
/// is (what was handed over is not thrown away here; deleting the tenant
/// shreds it), and one whose tenant is gone is already gone.
#[derive(Debug)]
pub struct ChecklistCancel(AppSlot);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct CancelParams {
    item: ChecklistItemId,
}

#[async_trait]
impl Action for ChecklistCancel {
    async fn run(&self, call: ActionCall<'_>) -> Result<Value, ActionError> {
        let app = self.0.app()?;
        let p: CancelParams = params(&call)?;
        let item = match app.store.find_item(p.item).await {
            Ok(item) => item,
            Err(StoreError::NotFound(_)) => {
                return Ok(json!({"item_id": p.item, "state": "gone"}));
            }
            Err(err) => return Err(store_error("reading the item", err)),
        };
        if item.instance_id != call.instance {
            return Err(ActionError::permanent(format!(
                "item {} belongs to another onboarding",
                p.item
            )));
        }
        if item.state != ItemState::Requested {
            return Ok(json!({"item_id": item.id, "state": item.state.as_str()}));
        }
        let now = app.clock.now();
        let audit = provenance(app).record(
            Some(item.tenant_id),
            onboarding_action::ITEM_CANCELLED,
            item.id,
            json!({"onboarding": call.instance, "key": item.key.as_str()}),
        );
        let decided = app
            .store
            .decide_item(
                item.tenant_id,
                item.id,
                ItemState::Requested,
                &ItemDecision {
                    state: ItemState::Cancelled,
                    by: "system".into(),
                    at: now,
                    note: Some("the onboarding was undone".into()),
                    secret_name: None,
                    file: None,
                },
                &[audit],
            )
            .await;
        match decided {
            Ok(item) => Ok(json!({"item_id": item.id, "state": item.state.as_str()})),
            // Settled meanwhile: leave it.
            Err(StoreError::Stale(_)) => Ok(json!({"item_id": item.id, "state": "settled"})),
            Err(err) => Err(store_error("cancelling the item", err)),
        }
    }
}

// ----- SLA clock -------------------------------------------------------------

/// `sla.start {tenant, contract}` → `{id, contract, started_at}`: starts the
/// tenant's SLA clock, records go-live on the onboarding and activates a
/// tenant still `provisioning`. A repeated call finds the clock this
/// onboarding started.
#[derive(Debug)]
pub struct SlaStart(AppSlot);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SlaStartParams {
    tenant: String,
    contract: String,
}

#[async_trait]
impl Action for SlaStart {
    async fn run(&self, call: ActionCall<'_>) -> Result<Value, ActionError> {
        let app = self.0.app()?;
        let p: SlaStartParams = params(&call)?;
        let tenant = parse_tenant(&call, &p.tenant)?;
        let contract = p.contract.trim();
        if contract.is_empty() || contract.chars().count() > 200 {
            return Err(ActionError::permanent(
                "invalid contract: 1 to 200 characters",
            ));
        }
        let clocks = app
            .store
            .sla_clocks(tenant)
            .await
            .map_err(|e| store_error("reading the SLA clocks", e))?;
        let sla = match clocks
            .into_iter()
            .find(|c| c.instance_id == Some(call.instance) && c.contract == contract)
        {
            Some(found) => found,
            None => {
                let now = app.clock.now();
                let sla = SlaClock {
                    id: SlaId::generate(now),
                    tenant_id: tenant,
                    instance_id: Some(call.instance),
                    contract: contract.to_owned(),
                    started_at: now,
                    stopped_at: None,
                };
                let audit = provenance(app).record(
                    Some(tenant),
                    onboarding_action::SLA_STARTED,
                    sla.id,
                    json!({"contract": contract, "onboarding": call.instance}),
                );
                app.store
                    .start_sla(&sla, &[audit])
                    .await
                    .map_err(|e| store_error("starting the SLA clock", e))?
            }
        };
        app.store
            .set_go_live(call.instance, sla.started_at, &[])
            .await
            .map_err(|e| store_error("recording go-live", e))?;
        let current = app
            .get_tenant(&ACTOR, &TenantRef::Id(tenant))
            .await
            .map_err(|e| app_error("reading the tenant", e))?;
        if current.state == TenantState::Provisioning {
            app.transition_tenant(&ACTOR, &TenantRef::Id(tenant), TenantAction::Activate)
                .await
                .map_err(|e| app_error("activating the tenant", e))?;
        }
        Ok(json!({
            "id": sla.id,
            "contract": sla.contract,
            "started_at": rfc3339(sla.started_at),
        }))
    }
}

/// `sla.stop {tenant, sla}`: stops the clock (the compensation of
/// `sla.start`); a clock already stopped, or a tenant already gone, is
/// success.
#[derive(Debug)]
pub struct SlaStop(AppSlot);

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SlaStopParams {
    tenant: String,
    sla: SlaId,
}

#[async_trait]
impl Action for SlaStop {
    async fn run(&self, call: ActionCall<'_>) -> Result<Value, ActionError> {
        let app = self.0.app()?;
        let p: SlaStopParams = params(&call)?;
        let tenant = parse_tenant(&call, &p.tenant)?;
        let audit = provenance(app).record(
            Some(tenant),
            onboarding_action::SLA_STOPPED,
            p.sla,
            json!({"onboarding": call.instance}),
        );
        let stopped = app
            .store
            .stop_sla(tenant, p.sla, app.clock.now(), &[audit])
            .await
            .map_err(|e| store_error("stopping the SLA clock", e))?;
        Ok(json!({"id": p.sla, "stopped": stopped}))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn due_in_is_a_whole_number_and_a_unit() {
        assert_eq!(parse_due_in("5d").ok(), Some(time::Duration::days(5)));
        assert_eq!(parse_due_in("12h").ok(), Some(time::Duration::hours(12)));
        for bad in ["", "5", "d", "1.5d", "0d", "5 d", "400d", "5y"] {
            assert!(parse_due_in(bad).is_err(), "{bad:?}");
        }
    }
}
