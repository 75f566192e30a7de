//! The console's other pages: human tasks (L3) with their decision
//! support, a workflow's timeline, and the audit browser with verification
//! and the OSCAL export.

use super::charts::Bar;
use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::header::{CONTENT_DISPOSITION, CONTENT_TYPE};
use axum::http::{HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use gatehouse_core::approval::{HumanTask, TaskState};
use gatehouse_core::id::{HumanTaskId, WorkflowId};
use gatehouse_core::store::{ActionFilter, AuditCursor};
use minijinja::{Value, context};
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::Console;
use super::pages::{tenant_label, tenant_names, when};
use super::render::{error_page, page};
use crate::app::{AuditQuery, VerifyRequest};
use crate::app::{GateFilter, TenantRef};
use crate::error::AppError;
use crate::http::ApiState;

/// `text` percent-encoded for a query string (everything but RFC 3986's
/// unreserved characters).
fn query_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for byte in text.bytes() {
        if byte.is_ascii_alphanumeric() || b"-._~".contains(&byte) {
            out.push(char::from(byte));
        } else {
            out.push_str(&format!("%{byte:02X}"));
        }
    }
    out
}

fn pretty(value: &serde_json::Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_default()
}

#[derive(Debug, Deserialize)]
pub(super) struct StateQuery {
    state: Option<String>,
}

fn task_row(
    task: &HumanTask,
    names: &std::collections::BTreeMap<gatehouse_core::id::TenantId, String>,
) -> serde_json::Value {
    json!({
        "id": task.id.to_string(),
        "instance": task.instance_id.to_string(),
        "step": task.step_id,
        "tenant": tenant_label(names, task.tenant_id),
        "state": task.state.as_str(),
        "created_at": when(task.created_at),
        "risk": task.decision_support["risk"].as_str(),
    })
}

/// Human tasks (L3): what people must do themselves, with decision support.
pub(super) async fn tasks(
    State(state): State<ApiState>,
    console: Console,
    Query(query): Query<StateQuery>,
) -> Response {
    let wanted = match query
        .state
        .as_deref()
        .unwrap_or("open")
        .parse::<TaskState>()
    {
        Ok(wanted) => wanted,
        Err(err) => return error_page(Some(&console), &AppError::from(err)),
    };
    let filter = GateFilter {
        tenant: None,
        state: Some(wanted),
    };
    let items = match state
        .app
        .list_tasks(&console.actor, filter, None, 100)
        .await
    {
        Ok(page_of) => page_of.items,
        Err(err) => return error_page(Some(&console), &err),
    };
    let names = tenant_names(&state, &console).await;
    let rows: Vec<serde_json::Value> = items.iter().map(|t| task_row(t, &names)).collect();
    page(
        StatusCode::OK,
        "tasks.html",
        Some(&console),
        context! {
            title => "Tasks",
            nav => "tasks",
            state => wanted.as_str(),
            states => TaskState::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            tasks => Value::from_serialize(&rows),
        },
    )
}

async fn task_page(
    state: &ApiState,
    console: &Console,
    id: &str,
    status: StatusCode,
    notice: Option<String>,
    error: Option<String>,
) -> Response {
    let Ok(id) = id.parse::<HumanTaskId>() else {
        return error_page(Some(console), &AppError::not_found("task", id));
    };
    let task = match state.app.get_task(&console.actor, id).await {
        Ok(task) => task,
        Err(err) => return error_page(Some(console), &err),
    };
    let names = tenant_names(state, console).await;
    let support: Vec<serde_json::Value> = task
        .decision_support
        .as_object()
        .map(|fields| {
            fields
                .iter()
                .map(|(k, v)| {
                    let text = match v {
                        serde_json::Value::String(s) => s.clone(),
                        other => pretty(other),
                    };
                    json!({"name": k.replace('_', " "), "value": text})
                })
                .collect()
        })
        .unwrap_or_default();
    let mut view = task_row(&task, &names);
    if let Some(fields) = view.as_object_mut() {
        fields.insert("support".into(), json!(support));
        fields.insert("outcome".into(), json!(task.outcome.as_ref().map(pretty)));
        fields.insert("evidence".into(), json!(task.evidence));
        fields.insert("completed_at".into(), json!(task.completed_at.map(when)));
    }
    page(
        status,
        "task.html",
        Some(console),
        context! {
            title => format!("Task {}", task.step_id),
            nav => "tasks",
            task => Value::from_serialize(&view),
            open => task.state == TaskState::Open,
            notice,
            error,
        },
    )
}

/// One human task: its decision support, and the form to record it done.
pub(super) async fn task(
    State(state): State<ApiState>,
    console: Console,
    Path(id): Path<String>,
) -> Response {
    task_page(&state, &console, &id, StatusCode::OK, None, None).await
}

#[derive(Debug, Deserialize)]
pub(super) struct CompleteForm {
    #[serde(default)]
    outcome: String,
    #[serde(default)]
    evidence: String,
    #[serde(default)]
    csrf: String,
}

/// Records a human task as done, with its outcome and evidence.
pub(super) async fn complete_task(
    State(state): State<ApiState>,
    console: Console,
    Path(id): Path<String>,
    Form(form): Form<CompleteForm>,
) -> Response {
    if let Some(refused) = console.csrf_refusal(&form.csrf) {
        return refused;
    }
    let Ok(task) = id.parse::<HumanTaskId>() else {
        return error_page(Some(&console), &AppError::not_found("task", &id));
    };
    let outcome = async {
        let outcome: serde_json::Value = serde_json::from_str(&form.outcome)
            .map_err(|e| AppError::Invalid(format!("the outcome is not JSON: {e}")))?;
        let evidence = Some(form.evidence.trim()).filter(|e| !e.is_empty());
        state
            .app
            .complete_task(&console.actor, task, outcome, evidence)
            .await
    }
    .await;
    match outcome {
        Ok(_) => {
            let notice = Some("Recorded: the workflow goes on.".to_owned());
            task_page(&state, &console, &id, StatusCode::OK, notice, None).await
        }
        Err(err @ AppError::NotFound { .. }) => error_page(Some(&console), &err),
        Err(err) => {
            let message = Some(err.public_message());
            task_page(&state, &console, &id, err.status(), None, message).await
        }
    }
}

/// A workflow instance's timeline: its steps and its history, in order.
pub(super) async fn workflow(
    State(state): State<ApiState>,
    console: Console,
    Path(id): Path<String>,
) -> Response {
    let Ok(id) = id.parse::<WorkflowId>() else {
        return error_page(Some(&console), &AppError::not_found("workflow", &id));
    };
    let detail = match state.app.get_workflow(&console.actor, id).await {
        Ok(detail) => detail,
        Err(err) => return error_page(Some(&console), &err),
    };
    let names = tenant_names(&state, &console).await;
    let steps: Vec<serde_json::Value> = detail
        .steps
        .iter()
        .map(|s| {
            json!({
                "id": s.step_id,
                "state": s.state.as_str(),
                "attempts": s.attempts,
                "error": s.error,
                "updated_at": when(s.updated_at),
            })
        })
        .collect();
    let history: Vec<serde_json::Value> = detail
        .history
        .iter()
        .map(|h| {
            json!({
                "at": when(h.at),
                "kind": h.kind,
                "step": h.step_id,
                "actor": h.actor,
                "detail": if h.detail.as_object().is_some_and(|o| o.is_empty()) || h.detail.is_null() {
                    None
                } else {
                    Some(h.detail.to_string())
                },
            })
        })
        .collect();
    let instance = &detail.instance;
    let view = json!({
        "id": instance.id.to_string(),
        "template": instance.template,
        "version": instance.template_version,
        "state": instance.state.as_str(),
        "tenant": tenant_label(&names, instance.tenant_id),
        "created_by": instance.created_by,
        "created_at": when(instance.created_at),
        "steps": steps,
        "history": history,
    });
    page(
        StatusCode::OK,
        "workflow.html",
        Some(&console),
        context! {
            title => format!("Workflow {}", instance.id),
            nav => "onboarding",
            workflow => Value::from_serialize(&view),
        },
    )
}

#[derive(Debug, Default, Deserialize)]
pub(super) struct AuditForm {
    log: Option<String>,
    actor: Option<String>,
    action: Option<String>,
    since: Option<String>,
    until: Option<String>,
    cursor: Option<String>,
}

fn non_empty(text: Option<&String>) -> Option<&str> {
    text.map(|t| t.trim()).filter(|t| !t.is_empty())
}

fn instant(text: Option<&String>, what: &str) -> Result<Option<OffsetDateTime>, AppError> {
    non_empty(text)
        .map(|t| {
            OffsetDateTime::parse(t, &Rfc3339).map_err(|e| {
                AppError::Invalid(format!(
                    "`{what}` must be an RFC 3339 time (2026-12-01T00:00:00Z): {e}"
                ))
            })
        })
        .transpose()
}

fn audit_query(form: &AuditForm) -> Result<AuditQuery, AppError> {
    Ok(AuditQuery {
        log: non_empty(form.log.as_ref()).map(str::to_owned),
        actor: non_empty(form.actor.as_ref()).map(str::to_owned),
        action: non_empty(form.action.as_ref())
            .map(ActionFilter::parse)
            .transpose()
            .map_err(AppError::Invalid)?,
        since: instant(form.since.as_ref(), "since")?,
        until: instant(form.until.as_ref(), "until")?,
        cursor: non_empty(form.cursor.as_ref())
            .map(AuditCursor::decode)
            .transpose()
            .map_err(|e| AppError::Invalid(format!("invalid cursor: {e}")))?,
        limit: 50,
    })
}

async fn audit_page(
    state: &ApiState,
    console: &Console,
    form: &AuditForm,
    verification: Option<serde_json::Value>,
) -> Response {
    let listed = match audit_query(form) {
        Ok(query) => state.app.list_audit(&console.actor, query).await,
        Err(err) => Err(err),
    };
    let (entries, next, error) = match listed {
        Ok(page_of) => (page_of.items, page_of.next, None),
        Err(err @ (AppError::Forbidden(_) | AppError::NotAllowed(_))) => {
            return error_page(Some(console), &err);
        }
        Err(err) => (Vec::new(), None, Some(err.public_message())),
    };
    let logs = state
        .app
        .list_audit_logs(&console.actor)
        .await
        .unwrap_or_default();
    let rows: Vec<serde_json::Value> = entries
        .iter()
        .map(|e| {
            json!({
                "log": e.log, "idx": e.idx, "at": when(e.at), "actor": e.actor,
                "action": e.action, "subject": e.subject,
            })
        })
        .collect();
    let next_link = next.map(|cursor| {
        let mut pairs = vec![("cursor", cursor)];
        for (key, value) in [
            ("log", &form.log),
            ("actor", &form.actor),
            ("action", &form.action),
            ("since", &form.since),
            ("until", &form.until),
        ] {
            if let Some(value) = non_empty(value.as_ref()) {
                pairs.push((key, value.to_owned()));
            }
        }
        pairs
            .iter()
            .map(|(key, value)| format!("{key}={}", query_escape(value)))
            .collect::<Vec<_>>()
            .join("&")
    });
    let status = if error.is_some() {
        StatusCode::UNPROCESSABLE_ENTITY
    } else {
        StatusCode::OK
    };
    page(
        status,
        "audit.html",
        Some(console),
        context! {
            title => "Audit log",
            nav => "audit",
            entries => Value::from_serialize(&rows),
            logs => Value::from_serialize(&logs),
            filter => context! {
                log => form.log.as_deref().unwrap_or_default(),
                actor => form.actor.as_deref().unwrap_or_default(),
                action => form.action.as_deref().unwrap_or_default(),
                since => form.since.as_deref().unwrap_or_default(),
                until => form.until.as_deref().unwrap_or_default(),
            },
            next => next_link,
            error,
            verification => verification.map(|v| Value::from_serialize(&v)),
        },
    )
}

/// The audit browser: entries with filters and pages, the logs, and
/// verification and OSCAL export per log.
pub(super) async fn audit(
    State(state): State<ApiState>,
    console: Console,
    Query(form): Query<AuditForm>,
) -> Response {
    audit_page(&state, &console, &form, None).await
}

#[derive(Debug, Deserialize)]
pub(super) struct VerifyForm {
    #[serde(default)]
    log: String,
    #[serde(default)]
    csrf: String,
}

/// Recomputes a log's tree and checks its signed checkpoints.
pub(super) async fn verify(
    State(state): State<ApiState>,
    console: Console,
    Form(form): Form<VerifyForm>,
) -> Response {
    if let Some(refused) = console.csrf_refusal(&form.csrf) {
        return refused;
    }
    let request = VerifyRequest {
        kept: Vec::new(),
        check_canonical: false,
    };
    let result = state
        .app
        .verify_audit_log(&console.actor, &form.log, request, |_| {})
        .await;
    let verification = match result {
        Ok(report) => json!({
            "log": report.log,
            "verified": report.verified,
            "entries": report.entries,
            "root": report.root,
            "checkpoints": report.checkpoints,
            "mismatch": report.mismatch.map(|m| m.message),
        }),
        Err(err) => return error_page(Some(&console), &err),
    };
    audit_page(&state, &console, &AuditForm::default(), Some(verification)).await
}

#[derive(Debug, Deserialize)]
pub(super) struct OscalQuery {
    #[serde(default)]
    tenant: String,
}

/// A tenant's OSCAL assessment-results document, as a download.
pub(super) async fn oscal(
    State(state): State<ApiState>,
    console: Console,
    Query(query): Query<OscalQuery>,
) -> Response {
    let tenant = TenantRef::parse(query.tenant.trim());
    let period = gatehouse_oscal::Period {
        since: None,
        until: None,
    };
    match state
        .app
        .export_oscal(&console.actor, &tenant, period)
        .await
    {
        Ok(document) => {
            let mut response = axum::Json(document).into_response();
            let headers = response.headers_mut();
            headers.insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
            let name = format!(
                "attachment; filename=\"oscal-{}.json\"",
                query
                    .tenant
                    .chars()
                    .filter(|c| c.is_ascii_alphanumeric() || *c == '-' || *c == '_')
                    .collect::<String>()
            );
            if let Ok(value) = HeaderValue::from_str(&name) {
                headers.insert(CONTENT_DISPOSITION, value);
            }
            response
        }
        Err(err) => error_page(Some(&console), &err),
    }
}

/// Tenants: every client, its region and lifecycle state.
pub(super) async fn tenants(State(state): State<ApiState>, console: Console) -> Response {
    let mut rows = Vec::new();
    let mut after = None;
    loop {
        let page_of = match state
            .app
            .list_tenants(&console.actor, None, after, 100)
            .await
        {
            Ok(page_of) => page_of,
            Err(err) => return error_page(Some(&console), &err),
        };
        for tenant in &page_of.items {
            rows.push(json!({
                "id": tenant.id.to_string(),
                "slug": tenant.slug.as_str(),
                "name": tenant.display_name.as_str(),
                "region": tenant.region.as_str(),
                "state": tenant.state.as_str(),
                "created_at": when(tenant.created_at),
            }));
        }
        match page_of.next {
            Some(next) if !page_of.items.is_empty() && rows.len() < 5000 => after = Some(next),
            _ => break,
        }
    }
    page(
        StatusCode::OK,
        "tenants.html",
        Some(&console),
        context! {
            title => "Tenants",
            nav => "tenants",
            tenants => Value::from_serialize(&rows),
        },
    )
}

/// Hours, written for people.
fn hours(seconds: f64) -> String {
    if seconds < 60.0 {
        format!("{seconds:.0} s")
    } else if seconds < 3600.0 {
        format!("{:.0} min", seconds / 60.0)
    } else if seconds < 3.0 * 86_400.0 {
        format!("{:.1} h", seconds / 3600.0)
    } else {
        format!("{:.1} d", seconds / 86_400.0)
    }
}

/// A run that did not do what it set out to: parked on a failure, undone,
/// or cancelled.
fn is_failure(state: gatehouse_core::workflow::InstanceState) -> bool {
    use gatehouse_core::workflow::InstanceState::{Cancelled, Compensated, Compensating, Parked};
    matches!(state, Parked | Compensating | Compensated | Cancelled)
}

/// The days the analytics look back over.
const DAYS: u16 = 14;

/// Runs per day and the share that failed (every one of the [`DAYS`] days
/// up to `today`, quiet ones as zero), and the completed runs' mean
/// duration per template (provisioning times), from `days`.
fn over_time(
    days: &[gatehouse_core::store::InstanceDay],
    today: time::Date,
) -> (Vec<Bar>, Vec<Bar>, Vec<Bar>) {
    use std::collections::BTreeMap;
    let mut per_day: BTreeMap<time::Date, (u64, u64)> = (0..i64::from(DAYS))
        .rev()
        .map(|back| (today.saturating_sub(time::Duration::days(back)), (0, 0)))
        .collect();
    let mut per_template: BTreeMap<&str, (u64, f64)> = BTreeMap::new();
    for d in days {
        let entry = per_day.entry(d.day).or_default();
        entry.0 += d.count;
        if is_failure(d.state) {
            entry.1 += d.count;
        }
        if let Some(mean) = d.mean_secs {
            let t = per_template.entry(d.template.as_str()).or_default();
            t.0 += d.count;
            t.1 += mean * d.count as f64;
        }
    }
    let started = per_day
        .iter()
        .map(|(day, (n, _))| Bar {
            label: day.to_string(),
            value: *n as f64,
            shown: n.to_string(),
        })
        .collect();
    let failing = per_day
        .iter()
        .map(|(day, (n, failed))| {
            let share = if *n > 0 {
                *failed as f64 * 100.0 / *n as f64
            } else {
                0.0
            };
            Bar {
                label: day.to_string(),
                value: share,
                shown: format!("{share:.0} % of {n}"),
            }
        })
        .collect();
    let durations = per_template
        .iter()
        .map(|(template, (n, total))| {
            let mean = total / (*n).max(1) as f64;
            Bar {
                label: (*template).to_owned(),
                value: mean,
                shown: format!("{} ({n})", hours(mean)),
            }
        })
        .collect();
    (started, failing, durations)
}

/// Per tenant the caller may see: revocations completed, the median time
/// from termination to every system showing it, and how many finished by
/// their deadline.
async fn revocation_times(state: &ApiState, console: &Console) -> Result<Vec<Bar>, AppError> {
    let mut bars = Vec::new();
    for (id, name) in super::pages::tenant_names(state, console).await {
        let revocations = state
            .app
            .revocations(&console.actor, &crate::app::TenantRef::Id(id))
            .await?;
        let mut done: Vec<(f64, bool)> = revocations
            .iter()
            .filter_map(|r| {
                let at = r.completed_at?;
                Some((
                    (at - r.started_at).as_seconds_f64().max(0.0),
                    at <= r.deadline_at,
                ))
            })
            .collect();
        if done.is_empty() {
            continue;
        }
        done.sort_by(|a, b| a.0.total_cmp(&b.0));
        let median = done[done.len() / 2].0;
        let on_time = done.iter().filter(|(_, ok)| *ok).count();
        bars.push(Bar {
            label: name,
            value: median,
            shown: format!("{} median, {on_time}/{} on time", hours(median), done.len()),
        });
    }
    Ok(bars)
}

/// Analytics, drawn on the server as SVG: workflow runs by state and over
/// the last days (throughput, error rate, provisioning times), human
/// oversight (pending approvals, overrides), revocation times, and time to
/// operational.
pub(super) async fn analytics(State(state): State<ApiState>, console: Console) -> Response {
    use super::charts::bars;
    let (by_state, approvals) = match state.app.workflow_totals(&console.actor).await {
        Ok(totals) => totals,
        Err(err) => return error_page(Some(&console), &err),
    };
    let (started, failing, durations) = match state.app.workflow_days(&console.actor, DAYS).await {
        Ok(days) => over_time(
            &days,
            state.app.now().to_offset(time::UtcOffset::UTC).date(),
        ),
        Err(err) => return error_page(Some(&console), &err),
    };
    // People's access: only for those who may see it.
    let revocations =
        match crate::authz::authorize_list(&console.actor, crate::authz::Permission::ReadPeople) {
            Ok(_) => match revocation_times(&state, &console).await {
                Ok(bars) => Some(bars),
                Err(err) => return error_page(Some(&console), &err),
            },
            Err(_) => None,
        };
    let runs: Vec<Bar> = by_state
        .iter()
        .map(|(s, n)| Bar {
            label: s.as_str().to_owned(),
            value: *n as f64,
            shown: n.to_string(),
        })
        .collect();
    let total: u64 = by_state.iter().map(|(_, n)| n).sum();
    let failed: u64 = by_state
        .iter()
        .filter(|(s, _)| is_failure(*s))
        .map(|(_, n)| n)
        .sum();
    // Time to operational: the onboardings that went live, latest first.
    let mut live = Vec::new();
    let mut after = None;
    loop {
        let filter = crate::onboarding::OnboardingFilter {
            state: None,
            stage: None,
        };
        let page_of = match state
            .app
            .list_onboardings(&console.actor, filter, after, 100)
            .await
        {
            Ok(page_of) => page_of,
            Err(err) => return error_page(Some(&console), &err),
        };
        for item in &page_of.items {
            if let Some(at) = item.go_live_at {
                let seconds = (at - item.started_at).as_seconds_f64().max(0.0);
                let client = item.client.clone().or(item.slug.clone());
                live.push((client.unwrap_or_else(|| item.id.to_string()), seconds));
            }
        }
        match page_of.next {
            Some(next) if live.len() < 1000 => after = Some(next),
            _ => break,
        }
    }
    let mut sorted: Vec<f64> = live.iter().map(|(_, s)| *s).collect();
    sorted.sort_by(f64::total_cmp);
    let median = sorted.get(sorted.len() / 2).copied();
    let operational: Vec<Bar> = live
        .iter()
        .rev()
        .take(20)
        .map(|(client, seconds)| Bar {
            label: client.clone(),
            value: *seconds,
            shown: hours(*seconds),
        })
        .collect();
    let oldest = approvals
        .oldest_pending_since
        .map(|since| hours((state.app.now() - since).as_seconds_f64().max(0.0)));
    page(
        StatusCode::OK,
        "analytics.html",
        Some(&console),
        context! {
            title => "Analytics",
            nav => "analytics",
            runs_chart => bars("Workflow runs by state", &runs),
            runs => Value::from_serialize(by_state.iter().map(|(s, n)| (s.as_str(), *n)).collect::<Vec<_>>()),
            total,
            error_rate => (total > 0).then(|| format!("{:.1} %", failed as f64 * 100.0 / total as f64)),
            pending => approvals.pending,
            oldest,
            overrides => approvals.overrides,
            operational_chart => bars("Time to operational, latest onboardings", &operational),
            days => DAYS,
            started_chart => bars("Workflow runs started per day", &started),
            failing_chart => bars("Share of each day's runs that failed", &failing),
            provisioning_chart => bars("Mean time to complete, by workflow", &durations),
            revocation_chart => revocations.as_ref().map(|r| bars("Revocation time, by client", r)),
            live => live.len(),
            median => median.map(hours),
        },
    )
}
