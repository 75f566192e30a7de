//! The console's pages and forms.

use std::collections::BTreeMap;

use axum::Form;
use axum::extract::{Path, Query, State};
use axum::http::header::SET_COOKIE;
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Redirect, Response};
use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use gatehouse_core::approval::{Approval, ApprovalState, Verdict};
use gatehouse_core::id::{ApprovalId, TenantId};
use minijinja::{Value, context};
use serde::Deserialize;
use serde_json::json;
use time::OffsetDateTime;

use super::render::{error_page, page};
use super::{Console, SESSION_COOKIE, SIGN_IN_COOKIE, cookie, same_secret, set_cookie};
use crate::app::GateFilter;
use crate::error::AppError;
use crate::http::ApiState;
use crate::onboarding::OnboardingFilter;
use crate::signin::SignInConfig;

/// How an instant is shown: `2026-12-06 09:30 UTC`.
pub(super) fn when(at: OffsetDateTime) -> String {
    let at = at.to_offset(time::UtcOffset::UTC);
    format!(
        "{:04}-{:02}-{:02} {:02}:{:02} UTC",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute()
    )
}

/// Where to go after signing in: only a console path of visible ASCII,
/// never another site (`//host`) and never a header injection.
fn safe_next(next: Option<&str>) -> &str {
    match next {
        Some(next)
            if next.starts_with("/console/")
                && !next.contains("//")
                && next.bytes().all(|b| b.is_ascii_graphic() && b != b'\\') =>
        {
            next
        }
        _ => "/console/approvals",
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct NextQuery {
    next: Option<String>,
}

/// The sign-in form.
pub(super) async fn sign_in_form(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Query(query): Query<NextQuery>,
) -> Response {
    if let Some(secret) = cookie(&headers, SESSION_COOKIE)
        && state.app.authenticate_session(secret).await.is_ok()
    {
        return Redirect::to(safe_next(query.next.as_deref())).into_response();
    }
    sign_in_page(StatusCode::OK, &headers, query.next.as_deref(), "", None)
}

fn sign_in_page(
    status: StatusCode,
    headers: &HeaderMap,
    next: Option<&str>,
    name: &str,
    error: Option<String>,
) -> Response {
    // The double-submit token: the cookie's value, echoed by the form.
    let token = match cookie(headers, SIGN_IN_COOKIE) {
        Some(token)
            if token.len() == 43
                && token
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_') =>
        {
            token.to_owned()
        }
        _ => {
            let mut bytes = [0u8; 32];
            if getrandom::fill(&mut bytes).is_err() {
                return error_page(None, &AppError::Internal("no randomness".into()));
            }
            URL_SAFE_NO_PAD.encode(bytes)
        }
    };
    let mut response = page(
        status,
        "sign_in.html",
        None,
        context! {
            title => "Sign in",
            csrf => token.as_str(),
            next => safe_next(next),
            name,
            error,
        },
    );
    response.headers_mut().append(
        SET_COOKIE,
        set_cookie(SIGN_IN_COOKIE, &token, "/console/sign-in", 3600),
    );
    response
}

#[derive(Debug, Deserialize)]
pub(super) struct SignInForm {
    #[serde(default)]
    name: String,
    #[serde(default)]
    password: String,
    #[serde(default)]
    code: String,
    #[serde(default)]
    csrf: String,
    #[serde(default)]
    next: Option<String>,
}

/// Signs in and sets the session cookie.
pub(super) async fn sign_in(
    State(state): State<ApiState>,
    headers: HeaderMap,
    Form(form): Form<SignInForm>,
) -> Response {
    let next = form.next.as_deref();
    let expected = cookie(&headers, SIGN_IN_COOKIE).unwrap_or_default();
    if expected.is_empty() || !same_secret(&form.csrf, expected) {
        return sign_in_page(
            StatusCode::FORBIDDEN,
            &headers,
            next,
            &form.name,
            Some("The form expired. Please sign in again.".into()),
        );
    }
    let config = SignInConfig::default();
    let code = Some(form.code.as_str()).filter(|c| !c.trim().is_empty());
    match state
        .app
        .sign_in(&config, &form.name, &form.password, code)
        .await
    {
        Ok(signed_in) => {
            let mut response = Redirect::to(safe_next(next)).into_response();
            let ttl = config.session_ttl.whole_seconds();
            let headers = response.headers_mut();
            headers.append(
                SET_COOKIE,
                set_cookie(SESSION_COOKIE, &signed_in.secret, "/", ttl),
            );
            headers.append(
                SET_COOKIE,
                set_cookie(SIGN_IN_COOKIE, "", "/console/sign-in", 0),
            );
            response
        }
        Err(err) => sign_in_page(
            err.status(),
            &headers,
            next,
            &form.name,
            Some(err.public_message()),
        ),
    }
}

#[derive(Debug, Deserialize)]
pub(super) struct CsrfForm {
    #[serde(default)]
    csrf: String,
}

/// Signs out: ends the session and clears the cookie.
pub(super) async fn sign_out(
    State(state): State<ApiState>,
    console: Console,
    Form(form): Form<CsrfForm>,
) -> Response {
    if let Some(refused) = console.csrf_refusal(&form.csrf) {
        return refused;
    }
    if let Err(err) = state.app.sign_out(&console.session).await {
        return error_page(Some(&console), &err);
    }
    let mut response = Redirect::to("/console/sign-in").into_response();
    response
        .headers_mut()
        .append(SET_COOKIE, set_cookie(SESSION_COOKIE, "", "/", 0));
    response
}

#[derive(Debug, Deserialize)]
pub(super) struct ApprovalsQuery {
    state: Option<String>,
}

/// Tenants' names by id, for labels (only those `console` may see).
pub(super) async fn tenant_names(
    state: &ApiState,
    console: &Console,
) -> BTreeMap<TenantId, String> {
    let mut names = BTreeMap::new();
    let mut after = None;
    while let Ok(page) = state
        .app
        .list_tenants(&console.actor, None, after, 100)
        .await
    {
        for tenant in &page.items {
            names.insert(tenant.id, tenant.display_name.as_str().to_owned());
        }
        match page.next {
            Some(next) if !page.items.is_empty() => after = Some(next),
            _ => break,
        }
    }
    names
}

pub(super) fn tenant_label(names: &BTreeMap<TenantId, String>, tenant: Option<TenantId>) -> String {
    match tenant {
        Some(id) => names.get(&id).cloned().unwrap_or_else(|| id.to_string()),
        None => "—".into(),
    }
}

fn approvals_so_far(approval: &Approval) -> usize {
    approval
        .decisions
        .iter()
        .filter(|d| d.verdict.approves())
        .count()
}

fn approval_row(approval: &Approval, names: &BTreeMap<TenantId, String>) -> serde_json::Value {
    json!({
        "id": approval.id.to_string(),
        "tenant": tenant_label(names, approval.tenant_id),
        "step": approval.step_id,
        "summary": approval.plan["diff"]["summary"].as_str().unwrap_or(approval.plan["action"].as_str().unwrap_or("")),
        "state": approval.state.as_str(),
        "approvals": approvals_so_far(approval),
        "required": approval.required,
        "deadline": approval.deadline.map(when),
        "created_at": when(approval.created_at),
        "approver_role": approval.approver_role.as_str(),
    })
}

/// The approvals inbox: pending approvals first (or another state).
pub(super) async fn approvals(
    State(state): State<ApiState>,
    console: Console,
    Query(query): Query<ApprovalsQuery>,
) -> Response {
    let wanted = match query
        .state
        .as_deref()
        .unwrap_or("pending")
        .parse::<ApprovalState>()
    {
        Ok(wanted) => wanted,
        Err(err) => return error_page(Some(&console), &AppError::from(err)),
    };
    let page_of = state
        .app
        .list_approvals(
            &console.actor,
            GateFilter {
                tenant: None,
                state: Some(wanted),
            },
            None,
            100,
        )
        .await;
    let items = match page_of {
        Ok(page_of) => page_of.items,
        Err(err) => return error_page(Some(&console), &err),
    };
    let names = tenant_names(&state, &console).await;
    let rows: Vec<serde_json::Value> = items.iter().map(|a| approval_row(a, &names)).collect();
    page(
        StatusCode::OK,
        "approvals.html",
        Some(&console),
        context! {
            title => "Approvals",
            nav => "approvals",
            state => wanted.as_str(),
            states => ApprovalState::ALL.iter().map(|s| s.as_str()).collect::<Vec<_>>(),
            approvals => Value::from_serialize(&rows),
        },
    )
}

fn approval_view(
    approval: &Approval,
    names: &BTreeMap<TenantId, String>,
    operators: &BTreeMap<String, String>,
) -> serde_json::Value {
    let diff = &approval.plan["diff"];
    let show = |v: &serde_json::Value| match v {
        serde_json::Value::Null => "—".to_owned(),
        serde_json::Value::String(s) => s.clone(),
        other => other.to_string(),
    };
    let changes: Vec<serde_json::Value> = diff["changes"]
        .as_array()
        .map(|changes| {
            changes
                .iter()
                .map(|c| {
                    json!({
                        "target": show(&c["target"]),
                        "field": show(&c["field"]),
                        "before": show(&c["before"]),
                        "after": show(&c["after"]),
                    })
                })
                .collect()
        })
        .unwrap_or_default();
    let recommendation = &approval.plan["recommendation"];
    let decisions: Vec<serde_json::Value> = approval
        .decisions
        .iter()
        .map(|d| {
            let id = d.operator_id.to_string();
            json!({
                "operator": operators.get(&id).cloned().unwrap_or(id),
                "verdict": d.verdict.as_str(),
                "reason": d.reason,
                "at": when(d.at),
            })
        })
        .collect();
    let mut row = approval_row(approval, names);
    if let Some(fields) = row.as_object_mut() {
        fields.insert("instance".into(), json!(approval.instance_id.to_string()));
        fields.insert("action".into(), approval.plan["action"].clone());
        fields.insert(
            "params".into(),
            json!(serde_json::to_string_pretty(&approval.plan["params"]).unwrap_or_default()),
        );
        fields.insert("changes".into(), json!(changes));
        fields.insert("has_diff".into(), json!(!diff.is_null()));
        fields.insert(
            "recommendation".into(),
            if recommendation.is_null() {
                serde_json::Value::Null
            } else {
                json!({
                    "verdict": recommendation["verdict"].as_str().or(recommendation["action"].as_str()),
                    "confidence": recommendation["confidence"].as_f64().map(|c| format!("{:.0} %", c * 100.0)),
                    "rationale": recommendation["rationale"].as_str().or(recommendation["reason"].as_str()),
                    "raw": serde_json::to_string_pretty(recommendation).unwrap_or_default(),
                })
            },
        );
        fields.insert("decisions".into(), json!(decisions));
        fields.insert("fingerprint".into(), diff["fingerprint"].clone());
    }
    row
}

async fn approval_page(
    state: &ApiState,
    console: &Console,
    id: &str,
    status: StatusCode,
    notice: Option<String>,
    error: Option<String>,
) -> Response {
    let Ok(id) = id.parse::<ApprovalId>() else {
        return error_page(Some(console), &AppError::not_found("approval", id));
    };
    let approval = match state.app.get_approval(&console.actor, id).await {
        Ok(approval) => approval,
        Err(err) => return error_page(Some(console), &err),
    };
    let names = tenant_names(state, console).await;
    let operators = match state.app.decider_names(&console.actor, &approval).await {
        Ok(names) => names
            .into_iter()
            .map(|(id, name)| (id.to_string(), name.as_str().to_owned()))
            .collect(),
        Err(err) => return error_page(Some(console), &err),
    };
    let view = approval_view(&approval, &names, &operators);
    page(
        status,
        "approval.html",
        Some(console),
        context! {
            title => format!("Approval {}", approval.id),
            nav => "approvals",
            approval => Value::from_serialize(&view),
            pending => approval.state == ApprovalState::Pending,
            notice,
            error,
        },
    )
}

/// One approval: the plan as a diff, the recommendation, the decisions so
/// far, and the forms to decide.
pub(super) async fn approval(
    State(state): State<ApiState>,
    console: Console,
    Path(id): Path<String>,
) -> Response {
    approval_page(&state, &console, &id, StatusCode::OK, None, None).await
}

#[derive(Debug, Deserialize)]
pub(super) struct DecideForm {
    #[serde(default)]
    verdict: String,
    #[serde(default)]
    reason: String,
    #[serde(default)]
    params: String,
    #[serde(default)]
    csrf: String,
}

/// Approve, reject or modify, with a reason.
pub(super) async fn decide(
    State(state): State<ApiState>,
    console: Console,
    Path(id): Path<String>,
    Form(form): Form<DecideForm>,
) -> Response {
    if let Some(refused) = console.csrf_refusal(&form.csrf) {
        return refused;
    }
    let Ok(approval) = id.parse::<ApprovalId>() else {
        return error_page(Some(&console), &AppError::not_found("approval", &id));
    };
    let outcome = async {
        let verdict: Verdict = form.verdict.parse().map_err(AppError::from)?;
        let params = match verdict {
            Verdict::Modify => Some(serde_json::from_str(&form.params).map_err(|e| {
                AppError::Invalid(format!("the modified parameters are not JSON: {e}"))
            })?),
            _ => None,
        };
        state
            .app
            .decide_approval(&console.actor, approval, verdict, &form.reason, params)
            .await
    }
    .await;
    match outcome {
        Ok(decided) => {
            let notice = match decided.state {
                ApprovalState::Approved => "Approved: the step runs now.".to_owned(),
                ApprovalState::Rejected => "Rejected.".to_owned(),
                _ => format!(
                    "Your decision is recorded; {} of {} approvals so far.",
                    approvals_so_far(&decided),
                    decided.required
                ),
            };
            approval_page(&state, &console, &id, StatusCode::OK, Some(notice), None).await
        }
        Err(err @ AppError::NotFound { .. }) => error_page(Some(&console), &err),
        Err(err) => {
            approval_page(
                &state,
                &console,
                &id,
                err.status(),
                None,
                Some(err.public_message()),
            )
            .await
        }
    }
}

/// The onboarding board: clients by stage, with what blocks them.
pub(super) async fn onboarding_board(State(state): State<ApiState>, console: Console) -> Response {
    let mut items = Vec::new();
    let mut after = None;
    loop {
        let page_of = state
            .app
            .list_onboardings(
                &console.actor,
                OnboardingFilter {
                    state: None,
                    stage: None,
                },
                after,
                100,
            )
            .await;
        match page_of {
            Ok(page_of) => {
                let last = page_of.next;
                items.extend(page_of.items);
                match last {
                    Some(next) if items.len() < 1000 => after = Some(next),
                    _ => break,
                }
            }
            Err(err) => return error_page(Some(&console), &err),
        }
    }
    // Columns in the order stages are first met (the template's order).
    let mut columns: Vec<(String, String, Vec<serde_json::Value>)> = Vec::new();
    for item in &items {
        let card = json!({
            "id": item.id.to_string(),
            "client": item.client.clone().or(item.slug.clone()).unwrap_or_else(|| item.id.to_string()),
            "owner": item.owner,
            "state": item.state,
            "done": item.steps_done,
            "total": item.steps_total,
            "blocked": item.blocked,
            "since": item.stage_entered_at.map(when),
            "go_live": item.go_live_at.map(when),
        });
        match columns.iter_mut().find(|(stage, ..)| *stage == item.stage) {
            Some((.., cards)) => cards.push(card),
            None => columns.push((item.stage.clone(), item.stage_title.clone(), vec![card])),
        }
    }
    let columns: Vec<serde_json::Value> = columns
        .into_iter()
        .map(|(stage, title, cards)| json!({"stage": stage, "title": title, "cards": cards}))
        .collect();
    page(
        StatusCode::OK,
        "onboarding.html",
        Some(&console),
        context! {
            title => "Onboarding",
            nav => "onboarding",
            columns => Value::from_serialize(&columns),
            count => items.len(),
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_console_paths_are_followed_after_sign_in() {
        for good in [
            "/console/approvals",
            "/console/approvals/apr_1?state=pending",
        ] {
            assert_eq!(safe_next(Some(good)), good);
        }
        for bad in [
            "https://evil.example/",
            "//evil.example/console/",
            "/console//evil.example",
            "/console/\\evil.example",
            "/console/a\r\nSet-Cookie: x=1",
            "/console/a b",
            "/consolex",
            "",
        ] {
            assert_eq!(safe_next(Some(bad)), "/console/approvals", "{bad:?}");
        }
        assert_eq!(safe_next(None), "/console/approvals");
    }
}
