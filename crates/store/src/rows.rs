//! Rows as the databases return them, and their parsing back into domain
//! types. A value that does not parse is reported as corrupt, never
//! silently dropped or defaulted.

use gatehouse_core::approval::{Approval, Decision, HumanTask};
use gatehouse_core::id::{
    ApprovalId, EventId, HumanTaskId, OperatorId, TenantId, TokenId, WorkflowId,
};
use gatehouse_core::keys::{TenantKey, WrappedKey};
use gatehouse_core::operator::{ApiToken, Operator, OperatorName, Scope, TokenHash};
use gatehouse_core::secret::{SecretMeta, SecretName};
use gatehouse_core::store::StoreError;
use gatehouse_core::tenant::{DisplayName, Region, Tenant, TenantSlug};
use gatehouse_core::workflow::{
    DedupKey, EventKind, EventSource, HistoryEntry, InboundEvent, Instance, StepRun,
};
use serde_json::Value;
use time::OffsetDateTime;

fn corrupt(what: &str) -> impl FnOnce(gatehouse_core::DomainError) -> StoreError + '_ {
    move |e| StoreError::Corrupt(format!("{what}: {e}"))
}

/// Parses a JSON column (stored as text).
fn json(column: &str, text: &str) -> Result<Value, StoreError> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{column}: {e}")))
}

/// Converts a stored integer that must fit a `u32`.
fn small(column: &str, value: i64) -> Result<u32, StoreError> {
    u32::try_from(value)
        .map_err(|_| StoreError::Corrupt(format!("{column}: {value} is out of range")))
}

#[derive(sqlx::FromRow)]
pub(crate) struct TenantRow {
    id: String,
    slug: String,
    display_name: String,
    region: String,
    state: String,
    version: i64,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

impl TryFrom<TenantRow> for Tenant {
    type Error = StoreError;

    fn try_from(row: TenantRow) -> Result<Self, StoreError> {
        Ok(Tenant {
            id: row.id.parse().map_err(corrupt("tenants.id"))?,
            slug: TenantSlug::parse(&row.slug).map_err(corrupt("tenants.slug"))?,
            display_name: DisplayName::parse(&row.display_name)
                .map_err(corrupt("tenants.display_name"))?,
            region: Region::parse(&row.region).map_err(corrupt("tenants.region"))?,
            state: row.state.parse().map_err(corrupt("tenants.state"))?,
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct TenantKeyRow {
    tenant_id: String,
    kek_id: String,
    wrapped: Vec<u8>,
    created_at: OffsetDateTime,
    rewrapped_at: Option<OffsetDateTime>,
}

impl TryFrom<TenantKeyRow> for TenantKey {
    type Error = StoreError;

    fn try_from(row: TenantKeyRow) -> Result<Self, StoreError> {
        Ok(TenantKey {
            tenant_id: row
                .tenant_id
                .parse::<TenantId>()
                .map_err(corrupt("tenant_keys.tenant_id"))?,
            wrapped: WrappedKey {
                kek_id: row.kek_id,
                ciphertext: row.wrapped,
            },
            created_at: row.created_at,
            rewrapped_at: row.rewrapped_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct SecretMetaRow {
    tenant_id: String,
    name: String,
    version: i64,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
}

impl TryFrom<SecretMetaRow> for SecretMeta {
    type Error = StoreError;

    fn try_from(row: SecretMetaRow) -> Result<Self, StoreError> {
        Ok(SecretMeta {
            tenant_id: row
                .tenant_id
                .parse()
                .map_err(corrupt("tenant_secrets.tenant_id"))?,
            name: SecretName::parse(&row.name).map_err(corrupt("tenant_secrets.name"))?,
            version: row.version,
            created_at: row.created_at,
            updated_at: row.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct OperatorRow {
    id: String,
    name: String,
    display_name: String,
    role: String,
    disabled: bool,
    tenant_scope: Option<String>,
    created_at: OffsetDateTime,
}

impl TryFrom<OperatorRow> for Operator {
    type Error = StoreError;

    fn try_from(row: OperatorRow) -> Result<Self, StoreError> {
        Ok(Operator {
            id: row
                .id
                .parse::<OperatorId>()
                .map_err(corrupt("operators.id"))?,
            name: OperatorName::parse(&row.name).map_err(corrupt("operators.name"))?,
            display_name: DisplayName::parse(&row.display_name)
                .map_err(corrupt("operators.display_name"))?,
            role: row.role.parse().map_err(corrupt("operators.role"))?,
            disabled: row.disabled,
            scope: Scope::from_stored(row.tenant_scope.as_deref())
                .map_err(corrupt("operators.tenant_scope"))?,
            created_at: row.created_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct TokenRow {
    id: String,
    operator_id: String,
    name: String,
    token_hash: String,
    created_at: OffsetDateTime,
    expires_at: Option<OffsetDateTime>,
    revoked_at: Option<OffsetDateTime>,
}

impl TryFrom<TokenRow> for ApiToken {
    type Error = StoreError;

    fn try_from(row: TokenRow) -> Result<Self, StoreError> {
        Ok(ApiToken {
            id: row
                .id
                .parse::<TokenId>()
                .map_err(corrupt("api_tokens.id"))?,
            operator_id: row
                .operator_id
                .parse()
                .map_err(corrupt("api_tokens.operator_id"))?,
            name: row.name,
            hash: TokenHash::from_stored(row.token_hash),
            created_at: row.created_at,
            expires_at: row.expires_at,
            revoked_at: row.revoked_at,
        })
    }
}

/// A token joined with its operator (columns of both, operator ones prefixed `op_`).
#[derive(sqlx::FromRow)]
pub(crate) struct TokenWithOperatorRow {
    #[sqlx(flatten)]
    pub(crate) token: TokenRow,
    op_id: String,
    op_name: String,
    op_display_name: String,
    op_role: String,
    op_disabled: bool,
    op_tenant_scope: Option<String>,
    op_created_at: OffsetDateTime,
}

impl TokenWithOperatorRow {
    pub(crate) fn operator(&self) -> Result<Operator, StoreError> {
        Operator::try_from(OperatorRow {
            id: self.op_id.clone(),
            name: self.op_name.clone(),
            display_name: self.op_display_name.clone(),
            role: self.op_role.clone(),
            disabled: self.op_disabled,
            tenant_scope: self.op_tenant_scope.clone(),
            created_at: self.op_created_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct InboundEventRow {
    id: String,
    tenant_id: Option<String>,
    source: String,
    #[sqlx(rename = "type")]
    kind: String,
    dedup_key: String,
    payload: String,
    received_at: OffsetDateTime,
    outcome: Option<String>,
}

impl TryFrom<InboundEventRow> for InboundEvent {
    type Error = StoreError;

    fn try_from(row: InboundEventRow) -> Result<Self, StoreError> {
        Ok(InboundEvent {
            id: row
                .id
                .parse::<EventId>()
                .map_err(corrupt("inbox_events.id"))?,
            tenant_id: row
                .tenant_id
                .map(|t| t.parse::<TenantId>())
                .transpose()
                .map_err(corrupt("inbox_events.tenant_id"))?,
            source: EventSource::parse(&row.source).map_err(corrupt("inbox_events.source"))?,
            kind: EventKind::parse(&row.kind).map_err(corrupt("inbox_events.type"))?,
            dedup_key: DedupKey::parse(&row.dedup_key)
                .map_err(corrupt("inbox_events.dedup_key"))?,
            payload: json("inbox_events.payload", &row.payload)?,
            received_at: row.received_at,
            outcome: row
                .outcome
                .map(|o| json("inbox_events.outcome", &o))
                .transpose()?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct InstanceRow {
    id: String,
    tenant_id: Option<String>,
    template: String,
    template_version: i64,
    definition: String,
    state: String,
    context: String,
    started_by: Option<String>,
    created_by: String,
    created_at: OffsetDateTime,
    updated_at: OffsetDateTime,
    next_run_at: Option<OffsetDateTime>,
    version: i64,
}

impl TryFrom<InstanceRow> for Instance {
    type Error = StoreError;

    fn try_from(row: InstanceRow) -> Result<Self, StoreError> {
        Ok(Instance {
            id: row
                .id
                .parse::<WorkflowId>()
                .map_err(corrupt("workflow_instances.id"))?,
            tenant_id: row
                .tenant_id
                .map(|t| t.parse::<TenantId>())
                .transpose()
                .map_err(corrupt("workflow_instances.tenant_id"))?,
            template: row.template,
            template_version: small("workflow_instances.template_version", row.template_version)?,
            definition: json("workflow_instances.definition", &row.definition)?,
            state: row
                .state
                .parse()
                .map_err(corrupt("workflow_instances.state"))?,
            context: json("workflow_instances.context", &row.context)?,
            started_by: row
                .started_by
                .map(|e| e.parse::<EventId>())
                .transpose()
                .map_err(corrupt("workflow_instances.started_by"))?,
            created_by: row.created_by,
            created_at: row.created_at,
            updated_at: row.updated_at,
            next_run_at: row.next_run_at,
            version: row.version,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct StepRunRow {
    instance_id: String,
    step_id: String,
    state: String,
    attempts: i64,
    idempotency_key: String,
    output: Option<String>,
    error: Option<String>,
    next_attempt_at: Option<OffsetDateTime>,
    updated_at: OffsetDateTime,
}

impl TryFrom<StepRunRow> for StepRun {
    type Error = StoreError;

    fn try_from(row: StepRunRow) -> Result<Self, StoreError> {
        Ok(StepRun {
            instance_id: row
                .instance_id
                .parse::<WorkflowId>()
                .map_err(corrupt("workflow_steps.instance_id"))?,
            step_id: row.step_id,
            state: row.state.parse().map_err(corrupt("workflow_steps.state"))?,
            attempts: small("workflow_steps.attempts", row.attempts)?,
            idempotency_key: row.idempotency_key,
            output: row
                .output
                .map(|o| json("workflow_steps.output", &o))
                .transpose()?,
            error: row.error,
            next_attempt_at: row.next_attempt_at,
            updated_at: row.updated_at,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct HistoryRow {
    instance_id: String,
    seq: i64,
    at: OffsetDateTime,
    kind: String,
    step_id: Option<String>,
    actor: String,
    detail: String,
}

impl TryFrom<HistoryRow> for HistoryEntry {
    type Error = StoreError;

    fn try_from(row: HistoryRow) -> Result<Self, StoreError> {
        Ok(HistoryEntry {
            instance_id: row
                .instance_id
                .parse::<WorkflowId>()
                .map_err(corrupt("workflow_history.instance_id"))?,
            seq: row.seq,
            at: row.at,
            kind: row.kind,
            step_id: row.step_id,
            actor: row.actor,
            detail: json("workflow_history.detail", &row.detail)?,
        })
    }
}

/// An approval joined with one of its decisions (the `d_` columns, all
/// NULL for an approval without decisions): a page of approvals and their
/// decisions comes from one statement, so each approval's state and its
/// decisions are read from the same snapshot.
#[derive(sqlx::FromRow)]
pub(crate) struct ApprovalDecisionRow {
    id: String,
    instance_id: String,
    step_id: String,
    tenant_id: Option<String>,
    state: String,
    plan: String,
    required: i64,
    approver_role: String,
    initiated_by: String,
    prepared_by: String,
    deadline: Option<OffsetDateTime>,
    escalate_to: Option<String>,
    escalated_at: Option<OffsetDateTime>,
    created_at: OffsetDateTime,
    decided_at: Option<OffsetDateTime>,
    d_operator_id: Option<String>,
    d_verdict: Option<String>,
    d_reason: Option<String>,
    d_modified_params: Option<String>,
    d_at: Option<OffsetDateTime>,
}

impl ApprovalDecisionRow {
    fn approval(&self) -> Result<Approval, StoreError> {
        Ok(Approval {
            id: self
                .id
                .parse::<ApprovalId>()
                .map_err(corrupt("approvals.id"))?,
            instance_id: self
                .instance_id
                .parse::<WorkflowId>()
                .map_err(corrupt("approvals.instance_id"))?,
            step_id: self.step_id.clone(),
            tenant_id: self
                .tenant_id
                .as_deref()
                .map(str::parse::<TenantId>)
                .transpose()
                .map_err(corrupt("approvals.tenant_id"))?,
            state: self.state.parse().map_err(corrupt("approvals.state"))?,
            plan: json("approvals.plan", &self.plan)?,
            required: small("approvals.required", self.required)?,
            approver_role: self
                .approver_role
                .parse()
                .map_err(corrupt("approvals.approver_role"))?,
            initiated_by: self.initiated_by.clone(),
            prepared_by: self.prepared_by.clone(),
            deadline: self.deadline,
            escalate_to: self
                .escalate_to
                .as_deref()
                .map(str::parse)
                .transpose()
                .map_err(corrupt("approvals.escalate_to"))?,
            escalated_at: self.escalated_at,
            created_at: self.created_at,
            decided_at: self.decided_at,
            decisions: Vec::new(),
        })
    }

    /// The decision on this row, if there is one; parsed back through
    /// [`Decision::new`], so a stored decision breaking its rules is corrupt.
    fn decision(&self, approval: ApprovalId) -> Result<Option<Decision>, StoreError> {
        let (Some(operator), Some(verdict), Some(reason), Some(at)) = (
            &self.d_operator_id,
            &self.d_verdict,
            &self.d_reason,
            self.d_at,
        ) else {
            return Ok(None);
        };
        let modified = self
            .d_modified_params
            .as_deref()
            .map(|p| json("approval_decisions.modified_params", p))
            .transpose()?;
        Decision::new(
            approval,
            operator
                .parse::<OperatorId>()
                .map_err(corrupt("approval_decisions.operator_id"))?,
            verdict
                .parse()
                .map_err(corrupt("approval_decisions.verdict"))?,
            reason,
            modified,
            at,
        )
        .map(Some)
        .map_err(corrupt("approval_decisions"))
    }
}

/// Folds joined rows (ordered by approval, then decision) into approvals
/// with their decisions, keeping the approvals' order.
pub(crate) fn approvals_from_rows(
    rows: Vec<ApprovalDecisionRow>,
) -> Result<Vec<Approval>, StoreError> {
    let mut approvals: Vec<Approval> = Vec::new();
    for row in rows {
        let id = row
            .id
            .parse::<ApprovalId>()
            .map_err(corrupt("approvals.id"))?;
        if approvals.last().is_none_or(|a| a.id != id) {
            approvals.push(row.approval()?);
        }
        if let Some(approval) = approvals.last_mut()
            && let Some(decision) = row.decision(approval.id)?
        {
            approval.decisions.push(decision);
        }
    }
    Ok(approvals)
}

#[derive(sqlx::FromRow)]
pub(crate) struct HumanTaskRow {
    id: String,
    instance_id: String,
    step_id: String,
    tenant_id: Option<String>,
    state: String,
    decision_support: String,
    outcome: Option<String>,
    evidence: Option<String>,
    completed_by: Option<String>,
    created_at: OffsetDateTime,
    completed_at: Option<OffsetDateTime>,
}

impl TryFrom<HumanTaskRow> for HumanTask {
    type Error = StoreError;

    fn try_from(row: HumanTaskRow) -> Result<Self, StoreError> {
        Ok(HumanTask {
            id: row
                .id
                .parse::<HumanTaskId>()
                .map_err(corrupt("human_tasks.id"))?,
            instance_id: row
                .instance_id
                .parse::<WorkflowId>()
                .map_err(corrupt("human_tasks.instance_id"))?,
            step_id: row.step_id,
            tenant_id: row
                .tenant_id
                .map(|t| t.parse::<TenantId>())
                .transpose()
                .map_err(corrupt("human_tasks.tenant_id"))?,
            state: row.state.parse().map_err(corrupt("human_tasks.state"))?,
            decision_support: json("human_tasks.decision_support", &row.decision_support)?,
            outcome: row
                .outcome
                .map(|o| json("human_tasks.outcome", &o))
                .transpose()?,
            evidence: row.evidence,
            completed_by: row
                .completed_by
                .map(|o| o.parse::<OperatorId>())
                .transpose()
                .map_err(corrupt("human_tasks.completed_by"))?,
            created_at: row.created_at,
            completed_at: row.completed_at,
        })
    }
}
