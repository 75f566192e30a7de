//! Tracking onboardings: where each one is and what holds it up.
//!
//! Everything about stages and steps is derived from the workflow instance
//! (its pinned template and step journal) and the engine's approvals and
//! tasks when asked, never copied: the engine's journal stays the one
//! truth. What the engine does not know (owner, checklist, PSA links, SLA
//! clock) comes from the onboarding's own rows.
//!
//! A stage is *done* when all its steps have succeeded or were skipped; it
//! was *entered* when the stage before it was done (the first stage: when
//! the instance started), and *left* when its last step finished.

use gatehouse_core::approval::{ApprovalState, TaskState};
use gatehouse_core::id::{ApprovalId, HumanTaskId, TenantId, WorkflowId};
use gatehouse_core::onboarding::Onboarding;
use gatehouse_core::store::{ApprovalQuery, InstanceQuery, StoreError, TaskQuery};
use gatehouse_core::workflow::{Instance, InstanceState, StepRun, StepState};
use gatehouse_engine::template::Template;
use serde::Serialize;
use time::OffsetDateTime;
use utoipa::ToSchema;

use super::actions::owner_context;
use super::checklist::{ItemView, onboarding_not_found};
use crate::app::{Actor, App, Page};
use crate::authz::{Permission, authorize_list};
use crate::error::AppError;

/// The template whose instances are onboardings.
pub const TEMPLATE: &str = "client-onboarding";

/// Whether an instance is an onboarding.
pub(crate) fn is_onboarding(instance: &Instance) -> bool {
    instance.template == TEMPLATE
}

/// Which onboardings to list.
#[derive(Debug, Clone, Default)]
pub struct OnboardingFilter {
    /// Only instances in this state.
    pub state: Option<InstanceState>,
    /// Only onboardings currently in this stage (`done` for those past
    /// their last stage).
    pub stage: Option<String>,
}

/// A stage's progress.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct StageProgress {
    /// The stage's id.
    pub id: String,
    /// Its title.
    pub title: String,
    /// `done`, `current` or `pending`.
    pub status: String,
    /// Steps done (succeeded or skipped).
    pub done: u32,
    /// Steps in the stage.
    pub total: u32,
    /// When it was entered.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub entered_at: Option<OffsetDateTime>,
    /// When its last step finished (done stages).
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub left_at: Option<OffsetDateTime>,
}

/// Something that holds an onboarding up, and why.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct Blocker {
    /// `approval`, `human_task`, `step_failed`, `step_retrying` or
    /// `item_overdue`.
    pub kind: String,
    /// The step concerned.
    pub step: Option<String>,
    /// The checklist item concerned (its key).
    pub item: Option<String>,
    /// The approval waited for.
    #[schema(value_type = Option<String>)]
    pub approval: Option<ApprovalId>,
    /// The human task waited for.
    #[schema(value_type = Option<String>)]
    pub task: Option<HumanTaskId>,
    /// Since when.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub since: Option<OffsetDateTime>,
    /// Why, for people.
    pub reason: String,
}

/// An onboarding at a glance.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OnboardingSummary {
    /// The onboarding's id (its workflow instance).
    #[schema(value_type = String)]
    pub id: WorkflowId,
    /// The instance's state (`running`, `waiting`, `completed`, …).
    pub state: String,
    /// The client's name, from the triggering event.
    pub client: Option<String>,
    /// The client's tenant, once created.
    #[schema(value_type = Option<String>)]
    pub tenant: Option<TenantId>,
    /// The tenant's slug (claimed, or from the event before that).
    pub slug: Option<String>,
    /// The MSP's onboarding owner.
    pub owner: Option<String>,
    /// The current stage's id; `done` past the last stage.
    pub stage: String,
    /// The current stage's title.
    pub stage_title: String,
    /// Steps done, in all stages.
    pub steps_done: u32,
    /// Steps in all stages.
    pub steps_total: u32,
    /// When it started.
    #[serde(with = "time::serde::rfc3339")]
    #[schema(value_type = String, format = DateTime)]
    pub started_at: OffsetDateTime,
    /// When the current stage was entered.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub stage_entered_at: Option<OffsetDateTime>,
    /// Seconds in the current stage (while it runs).
    pub seconds_in_stage: Option<i64>,
    /// When the client went live.
    #[serde(with = "time::serde::rfc3339::option")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub go_live_at: Option<OffsetDateTime>,
    /// How many things hold it up.
    pub blocked: usize,
}

/// An onboarding in full.
#[derive(Debug, Clone, Serialize, ToSchema)]
pub struct OnboardingDetail {
    /// The summary.
    #[serde(flatten)]
    pub summary: OnboardingSummary,
    /// Each stage's progress, in order.
    pub stages: Vec<StageProgress>,
    /// What holds it up, and why.
    pub blockers: Vec<Blocker>,
    /// The documentation checklist.
    pub checklist: Vec<ItemView>,
}

/// Whether a step counts as done. A run that was stopped (cancelled or
/// compensated) marks its unreached steps skipped: those did not happen,
/// so only what succeeded counts there.
fn done(state: StepState, stopped: bool) -> bool {
    match state {
        StepState::Succeeded => true,
        StepState::Skipped => !stopped,
        _ => false,
    }
}

/// A run that was stopped before it went live (or is being undone).
fn stopped(state: InstanceState) -> bool {
    matches!(
        state,
        InstanceState::Compensated | InstanceState::Compensating | InstanceState::Cancelled
    )
}

fn terminal(state: InstanceState) -> bool {
    matches!(
        state,
        InstanceState::Completed | InstanceState::Compensated | InstanceState::Cancelled
    )
}

/// The stages of an instance with their progress. A definition that does
/// not parse (a newer format) gives no stages rather than an error.
pub fn stages(instance: &Instance, steps: &[StepRun]) -> Vec<StageProgress> {
    let Ok(template) = serde_json::from_value::<Template>(instance.definition.clone()) else {
        return Vec::new();
    };
    let mut out: Vec<StageProgress> = Vec::with_capacity(template.stages.len());
    let mut entered = Some(instance.created_at);
    let mut current_seen = false;
    for stage in &template.stages {
        let runs: Vec<&StepRun> = stage
            .steps
            .iter()
            .filter_map(|s| steps.iter().find(|r| r.step_id == s.id.as_str()))
            .collect();
        let total = u32::try_from(stage.steps.len()).unwrap_or(u32::MAX);
        let stopped = stopped(instance.state);
        let finished =
            u32::try_from(runs.iter().filter(|r| done(r.state, stopped)).count()).unwrap_or(0);
        let complete = finished == total;
        let left_at = complete
            .then(|| runs.iter().map(|r| r.updated_at).max())
            .flatten();
        let status = if complete {
            "done"
        } else if !current_seen {
            current_seen = true;
            "current"
        } else {
            "pending"
        };
        out.push(StageProgress {
            id: stage.id.as_str().to_owned(),
            title: stage.title.clone(),
            status: status.into(),
            done: finished,
            total,
            entered_at: if status == "pending" { None } else { entered },
            left_at,
        });
        entered = left_at;
    }
    out
}

/// The client's name from the triggering event, if it has one.
fn client_name(instance: &Instance) -> Option<String> {
    instance
        .context
        .pointer("/event/payload/company/name")
        .and_then(|v| v.as_str())
        .map(str::to_owned)
}

fn event_slug(instance: &Instance) -> Option<String> {
    instance
        .context
        .pointer("/event/payload/company/slug")
        .and_then(|v| v.as_str())
        .map(str::to_owned)
}

/// "; checklist: 2 of 8 received, 1 waived, 5 requested (3 overdue)", or
/// nothing without a checklist.
fn checklist_state(items: &[ItemView]) -> String {
    use gatehouse_core::onboarding::ItemState;
    if items.is_empty() {
        return String::new();
    }
    let count = |state: ItemState| items.iter().filter(|i| i.state == state).count();
    let overdue = items.iter().filter(|i| i.overdue).count();
    format!(
        "; checklist: {} of {} received, {} waived, {} requested ({overdue} overdue)",
        count(ItemState::Received),
        items.len(),
        count(ItemState::Waived),
        count(ItemState::Requested),
    )
}

impl App {
    /// A page of onboardings, in start order, optionally in one instance
    /// state or currently in one stage.
    pub async fn list_onboardings(
        &self,
        actor: &Actor,
        filter: OnboardingFilter,
        after: Option<WorkflowId>,
        limit: u32,
    ) -> Result<Page<OnboardingSummary, WorkflowId>, AppError> {
        let within = authorize_list(actor, Permission::ReadWorkflows)?;
        if limit == 0 || limit > 100 {
            return Err(AppError::Invalid(
                "invalid limit: must be between 1 and 100".into(),
            ));
        }
        let mut items = Vec::new();
        let mut cursor = after;
        // The stage is derived, so pages of instances are read until
        // enough match (or none are left).
        loop {
            let batch = self
                .store
                .list_instances(&InstanceQuery {
                    within: within.clone(),
                    tenant: None,
                    state: filter.state,
                    template: Some(TEMPLATE.to_owned()),
                    after: cursor,
                    limit: limit + 1,
                })
                .await?;
            let exhausted = batch.len() <= limit as usize;
            for instance in batch {
                cursor = Some(instance.id);
                let detail = self.onboarding_detail(instance).await?;
                // The client's tenant must be in a scoped operator's reach
                // too, as for one onboarding (`authorize_onboarding_owners`).
                let visible = match (&within, detail.summary.tenant) {
                    (Some(tenants), Some(client)) => tenants.contains(&client),
                    _ => true,
                };
                if visible
                    && filter
                        .stage
                        .as_deref()
                        .is_none_or(|s| s == detail.summary.stage)
                {
                    items.push(detail.summary);
                    if items.len() > limit as usize {
                        break;
                    }
                }
            }
            if items.len() > limit as usize || exhausted {
                break;
            }
        }
        let next = if items.len() > limit as usize {
            items.truncate(limit as usize);
            items.last().map(|s| s.id)
        } else {
            None
        };
        Ok(Page { items, next })
    }

    /// One onboarding: stage, progress, blockers, checklist.
    pub async fn get_onboarding(
        &self,
        actor: &Actor,
        id: WorkflowId,
    ) -> Result<OnboardingDetail, AppError> {
        let instance = match self.store.get_instance(id).await {
            Ok((instance, _)) if is_onboarding(&instance) => instance,
            Ok(_) | Err(StoreError::NotFound(_)) => return Err(onboarding_not_found(id)),
            Err(err) => return Err(err.into()),
        };
        self.authorize_onboarding_owners(actor, Permission::ReadWorkflows, id, instance.tenant_id)
            .await?;
        self.onboarding_detail(instance).await
    }

    async fn onboarding_detail(&self, instance: Instance) -> Result<OnboardingDetail, AppError> {
        let now = self.clock.now();
        let (instance, steps) = self.store.get_instance(instance.id).await?;
        let row = self.onboarding_with_tenant(instance.id).await?;
        let stages = stages(&instance, &steps);
        let checklist = self.item_views(row.as_ref()).await?;
        let blockers = self.blockers(&instance, &steps, &checklist).await?;
        let owner = self.onboarding_owner(row.as_ref()).await?;
        let current = stages.iter().find(|s| s.status == "current");
        let (stage, stage_title, entered) = match (instance.state, current) {
            // Stopped before go-live: that is its stage, whatever ran.
            (InstanceState::Cancelled, _) => ("cancelled".to_owned(), "Cancelled".to_owned(), None),
            (InstanceState::Compensated, _) => (
                "compensated".to_owned(),
                "Compensated (undone)".to_owned(),
                None,
            ),
            (InstanceState::Compensating, _) => {
                ("compensating".to_owned(), "Being undone".to_owned(), None)
            }
            (_, Some(s)) => (s.id.clone(), s.title.clone(), s.entered_at),
            (_, None) => ("done".to_owned(), "Done".to_owned(), None),
        };
        let seconds_in_stage = entered
            .filter(|_| !terminal(instance.state))
            .map(|at| (now - at).whole_seconds().max(0));
        let summary = OnboardingSummary {
            id: instance.id,
            state: instance.state.as_str().to_owned(),
            client: client_name(&instance),
            tenant: row.as_ref().and_then(|o| o.tenant_id),
            slug: row
                .as_ref()
                .map(|o| o.slug.clone())
                .or_else(|| event_slug(&instance)),
            owner,
            stage,
            stage_title,
            steps_done: stages.iter().map(|s| s.done).sum(),
            steps_total: stages.iter().map(|s| s.total).sum(),
            started_at: instance.created_at,
            stage_entered_at: entered,
            seconds_in_stage,
            go_live_at: row.as_ref().and_then(|o| o.go_live_at),
            blocked: blockers.len(),
        };
        Ok(OnboardingDetail {
            summary,
            stages,
            blockers,
            checklist,
        })
    }

    async fn onboarding_owner(&self, row: Option<&Onboarding>) -> Result<Option<String>, AppError> {
        let Some((o, tenant, sealed)) =
            row.and_then(|o| Some((o, o.tenant_id?, o.owner.as_ref()?)))
        else {
            return Ok(None);
        };
        let plain = self
            .keyring
            .open(tenant, &owner_context(o.instance_id), &sealed.0)
            .await?;
        Ok(Some(String::from_utf8_lossy(&plain).into_owned()))
    }

    async fn blockers(
        &self,
        instance: &Instance,
        steps: &[StepRun],
        checklist: &[ItemView],
    ) -> Result<Vec<Blocker>, AppError> {
        let mut out = Vec::new();
        if terminal(instance.state) {
            return Ok(out);
        }
        let blank = |kind: &str, reason: String| Blocker {
            kind: kind.into(),
            step: None,
            item: None,
            approval: None,
            task: None,
            since: None,
            reason,
        };
        if steps.iter().any(|s| s.state == StepState::AwaitingApproval) {
            let approvals = self
                .store
                .list_approvals(&ApprovalQuery {
                    within: None,
                    tenant: None,
                    state: Some(ApprovalState::Pending),
                    instance: Some(instance.id),
                    after: None,
                    limit: 100,
                })
                .await?;
            for a in approvals {
                out.push(Blocker {
                    step: Some(a.step_id.clone()),
                    approval: Some(a.id),
                    since: Some(a.created_at),
                    ..blank(
                        "approval",
                        format!(
                            "step `{}` waits for approval by {} ({} of {} given)",
                            a.step_id,
                            a.approver_role.as_str(),
                            a.decisions.len(),
                            a.required
                        ),
                    )
                });
            }
        }
        if steps.iter().any(|s| s.state == StepState::AwaitingHuman) {
            let tasks = self
                .store
                .list_tasks(&TaskQuery {
                    within: None,
                    tenant: None,
                    state: Some(TaskState::Open),
                    instance: Some(instance.id),
                    after: None,
                    limit: 100,
                })
                .await?;
            // The engine's task carries its own decision support; the
            // checklist's state, which a sign-off is about, is added here.
            let checklist_state = checklist_state(checklist);
            for t in tasks {
                out.push(Blocker {
                    step: Some(t.step_id.clone()),
                    task: Some(t.id),
                    since: Some(t.created_at),
                    ..blank(
                        "human_task",
                        format!(
                            "step `{}` waits for a person to do it{checklist_state}",
                            t.step_id
                        ),
                    )
                });
            }
        }
        for s in steps {
            let error = s
                .error
                .clone()
                .unwrap_or_else(|| "no error recorded".into());
            let (kind, reason) = match s.state {
                StepState::Failed => (
                    "step_failed",
                    format!("step `{}` failed: {error}", s.step_id),
                ),
                StepState::Retrying if s.attempts > 0 => (
                    "step_retrying",
                    format!(
                        "step `{}` failed {} time(s) and is retried: {error}",
                        s.step_id, s.attempts
                    ),
                ),
                _ => continue,
            };
            out.push(Blocker {
                step: Some(s.step_id.clone()),
                since: Some(s.updated_at),
                ..blank(kind, reason)
            });
        }
        for item in checklist.iter().filter(|i| i.overdue) {
            out.push(Blocker {
                item: Some(item.key.clone()),
                since: Some(item.due_at),
                ..blank(
                    "item_overdue",
                    format!("checklist item `{}` ({}) is overdue", item.key, item.title),
                )
            });
        }
        Ok(out)
    }
}
