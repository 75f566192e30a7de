//! Storage traits. The SQLite and PostgreSQL back ends in `gatehouse-store`
//! implement them; one conformance suite checks both.
//!
//! Each method is one transaction: a method that changes several rows (a
//! tenant and its key, a deletion and its crypto-shredding) changes all of
//! them or none. Every method on tenant data takes the tenant id and puts it
//! in the `WHERE` clause of every statement it runs.

use std::fmt::Debug;

use async_trait::async_trait;
use time::OffsetDateTime;

use crate::approval::{Approval, ApprovalState, Decision, HumanTask, TaskState};
use crate::audit::{AuditCheckpoint, AuditEntry, AuditHash, AuditHead, AuditNode, AuditRecord};
use crate::gate::GateSetting;
use crate::id::{
    ApprovalId, EventId, HumanTaskId, NotificationId, OperatorId, TenantId, TokenId, WorkflowId,
};
use crate::keys::{TenantKey, WrappedKey};
use crate::notify::{Notification, NotificationState};
use crate::operator::{ApiToken, Operator, OperatorName, TokenHash};
use crate::secret::{SealedSecret, SecretMeta, SecretName};
use crate::tenant::{Tenant, TenantSlug, TenantState};
use crate::workflow::{HistoryEntry, InboundEvent, Instance, InstanceState, Progress, StepRun};

/// What went wrong in storage.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The thing asked for does not exist (or is not visible in this scope).
    #[error("{0} not found")]
    NotFound(&'static str),
    /// A uniqueness rule would be broken (the message names it).
    #[error("{0}")]
    Conflict(String),
    /// The row changed since it was read (optimistic concurrency).
    #[error("{0} was changed by someone else; read it again and retry")]
    Stale(&'static str),
    /// A stored value does not parse back into its domain type.
    #[error("stored data is corrupt: {0}")]
    Corrupt(String),
    /// The value breaks a domain rule, checked before any SQL runs.
    #[error(transparent)]
    Invalid(#[from] crate::error::DomainError),
    /// The database failed; `context` says what we were doing.
    #[error("database error while {context}: {source}")]
    Backend {
        /// What the store was doing.
        context: &'static str,
        /// The driver's error.
        #[source]
        source: Box<dyn std::error::Error + Send + Sync>,
    },
}

/// Shorthand for store results.
pub type StoreResult<T> = Result<T, StoreError>;

/// Which database engine a store runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    /// Embedded SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

impl Backend {
    /// The back end's name, as reported in benchmarks and `/readyz`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Sqlite => "sqlite",
            Self::Postgres => "postgres",
        }
    }
}

/// Migration status, for readiness checks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SchemaStatus {
    /// Migrations applied in the database.
    pub applied: usize,
    /// Migrations this build knows.
    pub known: usize,
}

impl SchemaStatus {
    /// Every known migration is applied.
    pub fn is_current(&self) -> bool {
        self.applied >= self.known
    }
}

/// A page of tenants.
#[derive(Debug, Clone, Default)]
pub struct TenantQuery {
    /// Only these tenants' (a scoped operator's view); `None`: no limit.
    pub within: Option<Vec<TenantId>>,
    /// Only tenants in this state; `None` means every state but `deleted`.
    pub state: Option<TenantState>,
    /// Start after this id (the previous page's last id).
    pub after: Option<TenantId>,
    /// At most this many.
    pub limit: u32,
}

/// Tenants.
///
/// Every method that changes something takes `audit`, the records of the
/// change (built with [`crate::audit::Provenance::record`]), and queues them
/// in the audit outbox in the same transaction: they exist if and only if
/// the change committed. The same holds for the mutations of the other
/// traits here.
#[async_trait]
pub trait TenantStore: Send + Sync {
    /// Stores a new tenant and its wrapped data key, atomically.
    /// A live tenant with the same slug gives [`StoreError::Conflict`].
    async fn insert_tenant(
        &self,
        tenant: &Tenant,
        key: &TenantKey,
        audit: &[AuditRecord],
    ) -> StoreResult<()>;
    /// A tenant by id, in any state (deleted ones as tombstones).
    async fn get_tenant(&self, id: TenantId) -> StoreResult<Tenant>;
    /// A tenant that is not deleted, by slug.
    async fn find_tenant_by_slug(&self, slug: &TenantSlug) -> StoreResult<Tenant>;
    /// Tenants in id (creation) order.
    async fn list_tenants(&self, query: &TenantQuery) -> StoreResult<Vec<Tenant>>;
    /// Writes `tenant`'s display name, region, state and `updated_at` if its
    /// stored version is still `tenant.version - 1`; [`StoreError::Stale`] otherwise.
    async fn update_tenant(&self, tenant: &Tenant, audit: &[AuditRecord]) -> StoreResult<()>;
    /// Marks the tenant deleted (as `update_tenant` does) and, in the same
    /// transaction, destroys its wrapped data key and its sealed secrets.
    async fn delete_tenant(&self, tenant: &Tenant, audit: &[AuditRecord]) -> StoreResult<()>;
}

/// Tenants' wrapped data keys.
#[async_trait]
pub trait TenantKeyStore: Send + Sync {
    /// The tenant's wrapped data key; `NotFound` once it has been destroyed.
    async fn get_tenant_key(&self, tenant: TenantId) -> StoreResult<TenantKey>;
    /// Keys in tenant-id order, after `after`, at most `limit`.
    async fn list_tenant_keys(
        &self,
        after: Option<TenantId>,
        limit: u32,
    ) -> StoreResult<Vec<TenantKey>>;
    /// Replaces the wrapped key if it is still wrapped by `expected_kek`
    /// (so two rotations racing never lose a key); `Stale` otherwise.
    async fn rewrap_tenant_key(
        &self,
        tenant: TenantId,
        expected_kek: &str,
        wrapped: &WrappedKey,
        at: OffsetDateTime,
        audit: &[AuditRecord],
    ) -> StoreResult<()>;
}

/// Tenants' sealed secrets.
#[async_trait]
pub trait SecretStore: Send + Sync {
    /// Creates or overwrites a secret; returns its new metadata.
    async fn put_secret(
        &self,
        tenant: TenantId,
        name: &SecretName,
        sealed: &[u8],
        at: OffsetDateTime,
        audit: &[AuditRecord],
    ) -> StoreResult<SecretMeta>;
    /// A sealed secret.
    async fn get_secret(&self, tenant: TenantId, name: &SecretName) -> StoreResult<SealedSecret>;
    /// The tenant's secrets' metadata, by name.
    async fn list_secrets(&self, tenant: TenantId) -> StoreResult<Vec<SecretMeta>>;
    /// Removes a secret.
    async fn delete_secret(
        &self,
        tenant: TenantId,
        name: &SecretName,
        audit: &[AuditRecord],
    ) -> StoreResult<()>;
}

/// Operators and their API tokens.
#[async_trait]
pub trait OperatorStore: Send + Sync {
    /// Stores the first operator and its token, only if there are no
    /// operators yet (atomically, so two nodes starting together cannot both
    /// bootstrap). Returns whether it did.
    /// The records are written only if it did.
    async fn bootstrap_operator(
        &self,
        operator: &Operator,
        token: &ApiToken,
        audit: &[AuditRecord],
    ) -> StoreResult<bool>;
    /// Stores a new operator; a taken name gives `Conflict`.
    async fn insert_operator(&self, operator: &Operator, audit: &[AuditRecord]) -> StoreResult<()>;
    /// An operator by id.
    async fn get_operator(&self, id: OperatorId) -> StoreResult<Operator>;
    /// An operator by handle.
    async fn find_operator_by_name(&self, name: &OperatorName) -> StoreResult<Operator>;
    /// All operators, by name.
    async fn list_operators(&self) -> StoreResult<Vec<Operator>>;
    /// Enables or disables an operator. Returns whether that changed
    /// anything: the records are written only then.
    async fn set_operator_disabled(
        &self,
        id: OperatorId,
        disabled: bool,
        audit: &[AuditRecord],
    ) -> StoreResult<bool>;
    /// Sets where an operator's role applies. Returns whether that changed
    /// anything: the records are written only then.
    async fn set_operator_scope(
        &self,
        id: OperatorId,
        scope: &crate::operator::Scope,
        audit: &[AuditRecord],
    ) -> StoreResult<bool>;
    /// Stores a newly issued token.
    async fn insert_token(&self, token: &ApiToken, audit: &[AuditRecord]) -> StoreResult<()>;
    /// The token with this hash and its operator (usable or not: the caller decides).
    async fn find_token(&self, hash: &TokenHash) -> StoreResult<(ApiToken, Operator)>;
    /// An operator's tokens, newest first.
    async fn list_tokens(&self, operator: OperatorId) -> StoreResult<Vec<ApiToken>>;
    /// A token by id.
    async fn get_token(&self, id: TokenId) -> StoreResult<ApiToken>;
    /// Revokes a token (idempotent: revoking twice keeps the first time).
    /// Returns whether this call revoked it: the records are written only then.
    async fn revoke_token(
        &self,
        id: TokenId,
        at: OffsetDateTime,
        audit: &[AuditRecord],
    ) -> StoreResult<bool>;
}

/// A page of workflow instances.
#[derive(Debug, Clone, Default)]
pub struct InstanceQuery {
    /// Only these tenants' (a scoped operator's view); `None`: no limit.
    pub within: Option<Vec<TenantId>>,
    /// Only this tenant's instances.
    pub tenant: Option<TenantId>,
    /// Only instances in this state.
    pub state: Option<InstanceState>,
    /// Only instances of this template.
    pub template: Option<String>,
    /// Start after this id (the previous page's last).
    pub after: Option<WorkflowId>,
    /// At most this many.
    pub limit: u32,
}

/// The workflow engine's inbox, instances, step journal and history.
#[async_trait]
pub trait EngineStore: Send + Sync {
    /// Stores an event unless one with the same (source, dedup key) is in
    /// the inbox already. Returns the stored event (the earlier one for a
    /// duplicate, with its outcome if routed) and whether it is new.
    async fn record_event(&self, event: &InboundEvent) -> StoreResult<(InboundEvent, bool)>;
    /// In one transaction: stores `event` (whose outcome is already set)
    /// and the instances it starts, unless an event with the same (source,
    /// dedup key) exists; then nothing is written and the stored event is
    /// returned with `false`. One commit per new event.
    async fn submit_event(
        &self,
        event: &InboundEvent,
        started: &[Progress],
    ) -> StoreResult<(InboundEvent, bool)>;
    /// `submit_event` for many events in ONE transaction (group commit of
    /// concurrent submissions). The answers are in the order of `batch`; a
    /// later item with the same (source, dedup key) as an earlier one is a
    /// duplicate of it. If any item fails, nothing is written and the
    /// error is returned: the caller retries the items one by one.
    async fn submit_events(
        &self,
        batch: &[(InboundEvent, Vec<Progress>)],
    ) -> StoreResult<Vec<(InboundEvent, bool)>>;
    /// In one transaction: records `outcome` on the event (only if it has
    /// none yet; `Stale` otherwise) and creates the instances it started
    /// (each `Progress` with `version == 1`).
    async fn route_event(
        &self,
        event: EventId,
        outcome: &serde_json::Value,
        started: &[Progress],
    ) -> StoreResult<()>;
    /// Events stored but not routed (a crash between the two), oldest first.
    async fn unrouted_events(&self, limit: u32) -> StoreResult<Vec<InboundEvent>>;
    /// An event by id.
    async fn get_event(&self, id: EventId) -> StoreResult<InboundEvent>;
    /// An instance and its step journal (in step-id order).
    async fn get_instance(&self, id: WorkflowId) -> StoreResult<(Instance, Vec<StepRun>)>;
    /// Instances in id (start) order.
    async fn list_instances(&self, query: &InstanceQuery) -> StoreResult<Vec<Instance>>;
    /// An instance's history, in order.
    async fn instance_history(&self, id: WorkflowId) -> StoreResult<Vec<HistoryEntry>>;
    /// Running or compensating instances whose `next_run_at` is at or
    /// before `now`, earliest first.
    async fn due_instances(&self, now: OffsetDateTime, limit: u32) -> StoreResult<Vec<WorkflowId>>;
    /// Claims up to `limit` due instances (as `due_instances`) for `node`
    /// until `lease_until`: those whose lease is free, expired, or already
    /// `node`'s. Two nodes never claim the same instance at once (PostgreSQL:
    /// `FOR UPDATE SKIP LOCKED`). Returns each claimed instance's id and
    /// stored version, earliest due first.
    async fn claim_due(
        &self,
        node: &str,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
        limit: u32,
    ) -> StoreResult<Vec<(WorkflowId, i64)>>;
    /// The stored version of each of `ids` that still exists and can run
    /// (running or compensating): a node checks the instances it holds in
    /// memory against it before running them, so a change made elsewhere (a
    /// cancellation, a decision, another node) is never acted past.
    async fn runnable_versions(&self, ids: &[WorkflowId]) -> StoreResult<Vec<(WorkflowId, i64)>>;
    /// Gives up every lease `node` holds (a clean shutdown), so other nodes
    /// need not wait for them to expire. Returns how many were held.
    async fn release_leases(&self, node: &str) -> StoreResult<u64>;
    /// A subscription to "work may be due" signals from other processes
    /// (PostgreSQL `LISTEN`), or `None` where the store has none (SQLite: one
    /// process, whose engine wakes itself).
    async fn listen_for_work(&self) -> StoreResult<Option<Box<dyn WorkListener>>>;
    /// In one transaction, for every item: inserts the instance (version 1)
    /// or updates it if its stored version is `version - 1` (its state,
    /// context, `updated_at`, `next_run_at` and version: the template, the
    /// pinned definition, the tenant and the creator are fixed when the
    /// instance is created and never rewritten), upserts its
    /// step runs, appends its history, and inserts or updates its approvals
    /// and human tasks (see [`Progress`] for what may change). If any
    /// instance is stale, nothing is written and the result is
    /// `Stale("workflow instance")`; a decided approval or a finished task
    /// that the batch would change gives `Stale("approval")` or
    /// `Stale("human task")`, and likewise nothing is written.
    async fn commit_progress(&self, batch: &[Progress]) -> StoreResult<()>;
}

/// Wakes a node's engine when another process made work due: a new event,
/// a decision, a completed task.
#[async_trait]
pub trait WorkListener: Send + std::fmt::Debug {
    /// Waits for the next signal. An error means the subscription is lost
    /// (the connection dropped); the caller falls back to polling and may
    /// subscribe again.
    async fn recv(&mut self) -> StoreResult<()>;
}

/// The channel on which PostgreSQL stores announce due work.
pub const WORK_CHANNEL: &str = "gatehouse_work";

/// A page of approvals.
#[derive(Debug, Clone, Default)]
pub struct ApprovalQuery {
    /// Only these tenants' (a scoped operator's view); `None`: no limit.
    pub within: Option<Vec<TenantId>>,
    /// Only this tenant's approvals.
    pub tenant: Option<TenantId>,
    /// Only approvals in this state.
    pub state: Option<ApprovalState>,
    /// Only this workflow instance's approvals.
    pub instance: Option<WorkflowId>,
    /// Start after this id (the previous page's last).
    pub after: Option<ApprovalId>,
    /// At most this many.
    pub limit: u32,
}

/// A page of human tasks.
#[derive(Debug, Clone, Default)]
pub struct TaskQuery {
    /// Only these tenants' (a scoped operator's view); `None`: no limit.
    pub within: Option<Vec<TenantId>>,
    /// Only this tenant's tasks.
    pub tenant: Option<TenantId>,
    /// Only tasks in this state.
    pub state: Option<TaskState>,
    /// Only this workflow instance's tasks.
    pub instance: Option<WorkflowId>,
    /// Start after this id (the previous page's last).
    pub after: Option<HumanTaskId>,
    /// At most this many.
    pub limit: u32,
}

/// Approvals (gate L2) and human tasks (gate L3). They are created,
/// escalated and cancelled with the workflow's progress
/// ([`EngineStore::commit_progress`]); decisions and completions come from
/// people, through the two methods here that may also move the workflow on
/// in the same transaction.
#[async_trait]
pub trait GateStore: Send + Sync {
    /// An approval with its decisions, oldest first.
    async fn get_approval(&self, id: ApprovalId) -> StoreResult<Approval>;
    /// Approvals in id (creation) order, each with its decisions, read in
    /// one statement.
    async fn list_approvals(&self, query: &ApprovalQuery) -> StoreResult<Vec<Approval>>;
    /// In one transaction: stores `decision` and the state that
    /// `approval` (as returned by [`Approval::apply`] with this decision,
    /// so `decision` is its last) has now; then, if given, commits
    /// `progress` as [`EngineStore::commit_progress`] does.
    ///
    /// - The approval must still be pending in the database with exactly
    ///   the decisions before this one (so two approvers deciding at once
    ///   cannot both count as the first); otherwise `Stale("approval")`.
    /// - A second decision by the same operator is a `Conflict`.
    /// - So is a decision by whoever initiated the workflow or prepared
    ///   the plan (separation of duties, checked by the database itself),
    ///   and a new state that does not follow from the stored decisions
    ///   and `required`.
    /// - A stale `progress` rolls the decision back too.
    async fn record_decision(
        &self,
        approval: &Approval,
        decision: &Decision,
        progress: Option<&Progress>,
    ) -> StoreResult<()>;
    /// Pending approvals whose deadline is at or before `now` and that are
    /// not escalated yet, earliest deadline first, with their decisions.
    async fn overdue_approvals(
        &self,
        now: OffsetDateTime,
        limit: u32,
    ) -> StoreResult<Vec<Approval>>;
    /// In one transaction: records the escalation of `approval` (its
    /// `escalated_at`, as [`Approval::escalate`] set it) if it is still
    /// pending and not escalated in the
    /// database (`Stale("approval")` otherwise, so two nodes cannot both
    /// escalate it), then commits `progress`, which must be its instance's
    /// (the history entry), as [`EngineStore::commit_progress`] does.
    async fn escalate_approval(&self, approval: &Approval, progress: &Progress) -> StoreResult<()>;
    /// A human task.
    async fn get_task(&self, id: HumanTaskId) -> StoreResult<HumanTask>;
    /// Human tasks in id (creation) order.
    async fn list_tasks(&self, query: &TaskQuery) -> StoreResult<Vec<HumanTask>>;
    /// In one transaction: stores `task` (as returned by
    /// [`HumanTask::complete`]) if it is still open in the database
    /// (`Stale("human task")` otherwise), then commits `progress`, which
    /// must be its instance's, as [`EngineStore::commit_progress`] does.
    async fn complete_task(&self, task: &HumanTask, progress: &Progress) -> StoreResult<()>;
    /// The tenant's gate settings (the last change of each area it has
    /// changed), in area-name order. [`GatePolicy::from_settings`] makes
    /// them a policy.
    ///
    /// [`GatePolicy::from_settings`]: crate::gate::GatePolicy::from_settings
    async fn gate_settings(&self, tenant: TenantId) -> StoreResult<Vec<GateSetting>>;
    /// Stores `setting` as its tenant's setting for its area, replacing
    /// the previous one (a level sets an override, none clears it). The
    /// setting is checked first ([`GateSetting::check`]: a level below the
    /// area's floor is `Invalid` and nothing is written). A deleted tenant
    /// (its key destroyed) gives `NotFound("tenant")`; its settings are
    /// destroyed with its key.
    async fn put_gate_setting(
        &self,
        setting: &GateSetting,
        audit: &[AuditRecord],
    ) -> StoreResult<()>;
}

/// Approvals as `/metrics` shows them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ApprovalStats {
    /// Approvals waiting for decisions.
    pub pending: u64,
    /// When the oldest of them was opened.
    pub oldest_pending_since: Option<OffsetDateTime>,
    /// Decisions that changed the plan (verdict `modify`), ever.
    pub overrides: u64,
}

/// Workflow runs started on one UTC day, of one template, now in one state.
#[derive(Debug, Clone, PartialEq)]
pub struct InstanceDay {
    /// The day they started (UTC).
    pub day: time::Date,
    /// Their template.
    pub template: String,
    /// Their state now.
    pub state: InstanceState,
    /// How many.
    pub count: u64,
    /// For completed runs, the mean time from start to completion, in
    /// seconds.
    pub mean_secs: Option<f64>,
}

/// Aggregates read when `/metrics` is scraped (and by the console's
/// analytics). Each is one or two cheap queries; none reads tenant data.
#[async_trait]
pub trait MetricsStore: Send + Sync {
    /// Workflow instances counted by state; states without any are left
    /// out. `within`: only these tenants' (a scoped operator's view).
    async fn count_instances_by_state(
        &self,
        within: Option<&[TenantId]>,
    ) -> StoreResult<Vec<(InstanceState, u64)>>;
    /// Pending approvals, the oldest one's age and the override count;
    /// `within` as for [`MetricsStore::count_instances_by_state`].
    async fn approval_stats(&self, within: Option<&[TenantId]>) -> StoreResult<ApprovalStats>;
    /// Runs started at or after `since`, by day, template and state, with
    /// the mean duration of the completed ones: throughput, error rate and
    /// provisioning times over time. `within` as above.
    async fn instance_days(
        &self,
        since: OffsetDateTime,
        within: Option<&[TenantId]>,
    ) -> StoreResult<Vec<InstanceDay>>;
}

/// What the workflow engine needs: instances and their journal, approvals
/// and human tasks.
pub trait WorkflowStore: EngineStore + GateStore {}

impl<T: EngineStore + GateStore + ?Sized> WorkflowStore for T {}

/// A page of notifications.
#[derive(Debug, Clone, Default)]
pub struct NotificationQuery {
    /// Only this tenant's notifications.
    pub tenant: Option<TenantId>,
    /// Only notifications in this state.
    pub state: Option<NotificationState>,
    /// Only this workflow instance's notifications.
    pub instance: Option<WorkflowId>,
    /// Start after this id (the previous page's last).
    pub after: Option<NotificationId>,
    /// At most this many.
    pub limit: u32,
}

/// The notification outbox. Notifications are queued with the workflow
/// progress that causes them ([`EngineStore::commit_progress`]); the
/// dispatcher claims the due ones and records each attempt's outcome here.
/// Every mark applies only to a pending notification, so a late attempt
/// cannot undo a final state; marking one that is not pending (or does not
/// exist) is `Stale("notification")` (or `NotFound`).
#[async_trait]
pub trait NotificationStore: Send + Sync {
    /// In one statement: takes up to `limit` pending notifications whose
    /// `next_attempt_at` is at or before `now` (earliest first), moves
    /// their `next_attempt_at` to `lease_until` so that no other claim takes
    /// them while they are being sent, and returns them (with the new
    /// `next_attempt_at`). A dispatcher that dies mid-send leaves them due
    /// again at `lease_until`: delivery is at-least-once.
    async fn claim_notifications(
        &self,
        now: OffsetDateTime,
        lease_until: OffsetDateTime,
        limit: u32,
    ) -> StoreResult<Vec<Notification>>;
    /// Records a successful delivery after `attempts` attempts.
    async fn mark_notification_delivered(
        &self,
        id: NotificationId,
        attempts: u32,
        at: OffsetDateTime,
    ) -> StoreResult<()>;
    /// Records a failed attempt that is retried at `next_attempt_at`.
    async fn mark_notification_retry(
        &self,
        id: NotificationId,
        attempts: u32,
        next_attempt_at: OffsetDateTime,
        error: &str,
    ) -> StoreResult<()>;
    /// Records that delivery was given up after `attempts` attempts.
    async fn mark_notification_failed(
        &self,
        id: NotificationId,
        attempts: u32,
        error: &str,
    ) -> StoreResult<()>;
    /// Notifications in id (creation) order.
    async fn list_notifications(&self, query: &NotificationQuery)
    -> StoreResult<Vec<Notification>>;
}

/// The audit log's storage (docs/audit.md, "Storage"). Records enter the
/// outbox with the changes they record (`commit_progress`, `submit_event`,
/// …); a sequencer takes them in outbox order, gives each its index in its
/// log and appends entries and Merkle nodes with [`AuditStore::append_audit`].
#[async_trait]
pub trait AuditStore: Send + Sync {
    /// Queues `records` in the audit outbox in a transaction of their own,
    /// for facts that change nothing else the store holds (a refused
    /// sign-in, the operations an identity lifecycle applied elsewhere, a
    /// key rotation, a benchmark's synthetic load). A change the store holds must queue its
    /// record in its own transaction instead.
    async fn queue_audit(&self, records: &[AuditRecord]) -> StoreResult<()>;
    /// Up to `limit` outbox records, oldest first, with their outbox ids.
    async fn pending_audit(&self, limit: u32) -> StoreResult<Vec<(i64, AuditRecord)>> {
        self.pending_audit_after(i64::MIN, limit).await
    }
    /// Up to `limit` outbox records whose ids are above `after`, oldest
    /// first: what the sequencer reads next while the records it holds are
    /// still being appended.
    async fn pending_audit_after(
        &self,
        after: i64,
        limit: u32,
    ) -> StoreResult<Vec<(i64, AuditRecord)>>;
    /// In one transaction: moves `log` from `expected_size` to
    /// `expected_size + entries.len()` (`Stale("audit log")` if its size is
    /// another: a second sequencer appended meanwhile), stores `entries`
    /// (whose indexes must run on from `expected_size`) and those of the
    /// completed subtrees `nodes` of height
    /// [`AUDIT_STORED_LEVEL`](crate::audit::AUDIT_STORED_LEVEL) and above
    /// (lower ones are left out: they are hashed from the entries), and
    /// deletes the outbox records `consumed` (`Stale("audit outbox")` if
    /// one is gone).
    async fn append_audit(
        &self,
        log: &str,
        expected_size: u64,
        entries: &[AuditEntry],
        nodes: &[AuditNode],
        consumed: &[i64],
    ) -> StoreResult<()>;
    /// The log's size and frontier (size 0 for a log never appended to).
    async fn audit_head(&self, log: &str) -> StoreResult<AuditHead>;
    /// The hashes of the subtrees `(level, index)`, in the order asked: read
    /// from the node rows, or below
    /// [`AUDIT_STORED_LEVEL`](crate::audit::AUDIT_STORED_LEVEL) hashed from
    /// the entries' leaf hashes. A subtree not complete in the store is
    /// `NotFound("audit node")`.
    async fn audit_nodes(&self, log: &str, ids: &[(u8, u64)]) -> StoreResult<Vec<AuditHash>>;
    /// Up to `limit` entries from index `from` on, in index order.
    async fn audit_entries(&self, log: &str, from: u64, limit: u32)
    -> StoreResult<Vec<AuditEntry>>;
    /// Stores a checkpoint; a second one of the same size is a `Conflict`.
    async fn put_checkpoint(&self, checkpoint: &AuditCheckpoint) -> StoreResult<()>;
    /// The log's checkpoints by size.
    async fn list_checkpoints(&self, log: &str) -> StoreResult<Vec<AuditCheckpoint>>;
    /// Every log with its size, by name.
    async fn audit_logs(&self) -> StoreResult<Vec<(String, u64)>>;
    /// The log's size, or `None` for a log never appended to.
    async fn audit_log_size(&self, log: &str) -> StoreResult<Option<u64>>;
    /// One entry; `NotFound("audit entry")` if the log has none at `idx`.
    async fn audit_entry(&self, log: &str, idx: u64) -> StoreResult<AuditEntry>;
    /// Up to `limit` entries matching `filter`, ordered by time, then log,
    /// then index, starting after `after` (the last row of the previous
    /// page). One index range scan per page (migration 0009).
    async fn list_audit_entries(
        &self,
        filter: &AuditFilter,
        after: Option<&AuditCursor>,
        limit: u32,
    ) -> StoreResult<Vec<AuditRow>>;
    /// The leaves whose index is in `indexes`, in index order: only what
    /// verification reads. Ranges, not counts, so that several can be read
    /// at once without overlapping, whatever rows are missing.
    async fn audit_leaves(
        &self,
        log: &str,
        indexes: std::ops::Range<u64>,
    ) -> StoreResult<Vec<AuditLeaf>>;
    /// The log's checkpoint of exactly `size`, if one is stored.
    async fn audit_checkpoint(&self, log: &str, size: u64) -> StoreResult<Option<AuditCheckpoint>>;
}

/// Which audit entries to list. Every field narrows the result; `None`
/// matches everything.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AuditFilter {
    /// Only this log (a tenant id, or `system`).
    pub log: Option<String>,
    /// Only entries by this actor (exact).
    pub actor: Option<String>,
    /// Only these actions.
    pub action: Option<ActionFilter>,
    /// Only entries at or after this time.
    pub since: Option<OffsetDateTime>,
    /// Only entries before this time (half-open: `since <= at < until`).
    pub until: Option<OffsetDateTime>,
}

/// An action filter: `workflow.step.succeeded` matches that action only;
/// `workflow.*` matches every action that starts with `workflow.`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ActionFilter {
    /// This action exactly.
    Exact(String),
    /// Every action starting with this text, which ends with `.`.
    Prefix(String),
}

impl ActionFilter {
    /// Reads `action` or `prefix.*`. A `*` anywhere else, or an empty
    /// action, is refused.
    pub fn parse(text: &str) -> Result<Self, String> {
        let text = text.trim();
        if let Some(prefix) = text.strip_suffix(".*") {
            if prefix.is_empty() || prefix.contains('*') {
                return Err(format!(
                    "action filter `{text}`: a prefix is `word.*`, such as `workflow.*`"
                ));
            }
            return Ok(Self::Prefix(format!("{prefix}.")));
        }
        if text.is_empty() || text.contains('*') {
            return Err(format!(
                "action filter `{text}`: give an action such as `event.received`, or a prefix such as `workflow.*`"
            ));
        }
        Ok(Self::Exact(text.to_owned()))
    }
}

impl std::fmt::Display for ActionFilter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Exact(action) => f.write_str(action),
            Self::Prefix(prefix) => write!(f, "{prefix}*"),
        }
    }
}

/// Where a page of audit entries ends: the sort key of its last row. Opaque
/// to clients (URL-safe base64 of `<unix microseconds>:<index>:<log>`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditCursor {
    /// The last row's time.
    pub at: OffsetDateTime,
    /// The last row's log.
    pub log: String,
    /// The last row's index.
    pub idx: u64,
}

impl AuditCursor {
    /// The cursor after `row`.
    pub fn after(row: &AuditRow) -> Self {
        Self {
            at: row.entry.at,
            log: row.log.clone(),
            idx: row.entry.idx,
        }
    }

    /// The opaque text handed to clients.
    pub fn encode(&self) -> String {
        use base64::Engine as _;
        let micros = self.at.unix_timestamp_nanos() / 1_000;
        base64::engine::general_purpose::URL_SAFE_NO_PAD
            .encode(format!("{micros}:{}:{}", self.idx, self.log))
    }

    /// Reads a cursor made by [`AuditCursor::encode`].
    pub fn decode(text: &str) -> Result<Self, String> {
        use base64::Engine as _;
        let bad = || "the cursor is not one this server issued".to_owned();
        let bytes = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(text.trim())
            .map_err(|_| bad())?;
        let text = String::from_utf8(bytes).map_err(|_| bad())?;
        let mut parts = text.splitn(3, ':');
        let (Some(micros), Some(idx), Some(log)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad());
        };
        let micros: i128 = micros.parse().map_err(|_| bad())?;
        let at = OffsetDateTime::from_unix_timestamp_nanos(micros.saturating_mul(1_000))
            .map_err(|_| bad())?;
        let idx = idx.parse().map_err(|_| bad())?;
        if log.is_empty() {
            return Err(bad());
        }
        Ok(Self {
            at,
            log: log.to_owned(),
            idx,
        })
    }
}

/// An entry as listed: with the log it belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditRow {
    /// Its log (a tenant id, or `system`).
    pub log: String,
    /// The entry.
    pub entry: AuditEntry,
}

/// What verification reads of an entry: its index, its leaf bytes and the
/// leaf hash stored beside them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AuditLeaf {
    /// The index the row records.
    pub idx: u64,
    /// The canonical JSON.
    pub leaf: String,
    /// The stored `SHA-256(0x00 ‖ leaf)`.
    pub leaf_hash: AuditHash,
}

/// Everything Gatehouse stores, behind one handle.
#[async_trait]
pub trait Store:
    TenantStore
    + TenantKeyStore
    + SecretStore
    + OperatorStore
    + WorkflowStore
    + NotificationStore
    + MetricsStore
    + AuditStore
    + crate::audit_key::AuditKeyStore
    + crate::onboarding::OnboardingStore
    + crate::connector::ConnectorStore
    + crate::hooks::HookStore
    + crate::kb::KbStore
    + crate::scim::ScimStore
    + crate::identity::IdentityStore
    + crate::signin::SignInStore
    + crate::tenant_group::TenantGroupStore
    + Debug
{
    /// Which engine this is.
    fn backend(&self) -> Backend;
    /// Applies pending migrations.
    async fn migrate(&self) -> StoreResult<()>;
    /// How many migrations are applied, of how many known.
    async fn schema_status(&self) -> StoreResult<SchemaStatus>;
    /// Checks that the database answers.
    async fn ping(&self) -> StoreResult<()>;
    /// Closes the connection pool, waiting for connections to be returned.
    async fn close(&self);
}
