//! A scripted operator: takes client onboardings to go-live through
//! Gatehouse's public HTTP API, as the MSP's people would.
//!
//! The end-to-end tests and `gatehouse bench onboarding` need someone to
//! approve every L2 plan, perform every L3 sign-off and work the
//! documentation checklist. Doing that through the API (never through the
//! services in-process) keeps them honest: what the driver can do, a person
//! with a token can do, and nothing else. It speaks only JSON over HTTP, so
//! it lives here, beside the emulators, without depending on Gatehouse's
//! crates.
//!
//! One [`Operator::pass`] acts on everything that waits for a person *now*
//! (pending approvals, open tasks and, before a task, the onboarding's
//! requested checklist items); tests call it between engine ticks, so they
//! stay deterministic. [`Operator::drive`] repeats passes against a running
//! server until the onboardings are operational or a deadline passes, and
//! reads each step's latency from the workflow history.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::sync::Arc;
use std::time::{Duration, Instant};

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

/// Page size of every listing the driver reads.
const PAGE: u32 = 100;

/// What went wrong while driving.
#[derive(Debug, thiserror::Error)]
pub enum OperatorError {
    /// Gatehouse could not be reached.
    #[error("{method} {path}: {source}")]
    Transport {
        /// The method.
        method: Method,
        /// The path (no host, no query secrets: the driver sends none).
        path: String,
        /// The client's error.
        #[source]
        source: reqwest::Error,
    },
    /// Gatehouse answered with an unexpected status.
    #[error("{method} {path}: {status}: {body}")]
    Status {
        /// The method.
        method: Method,
        /// The path.
        path: String,
        /// The status.
        status: StatusCode,
        /// The answer's body (Gatehouse's error object).
        body: String,
    },
    /// An answer did not have the expected shape.
    #[error("{0}")]
    Shape(String),
    /// The onboardings did not all go live before the deadline.
    #[error("not operational after {waited:?}: {stuck}")]
    Deadline {
        /// How long the driver waited.
        waited: Duration,
        /// Where each onboarding that is not live stands.
        stuck: String,
    },
    /// An onboarding stopped without going live (parked, cancelled, …).
    #[error("onboarding {id} is {state}: {why}")]
    Stopped {
        /// The onboarding.
        id: String,
        /// Its workflow state.
        state: String,
        /// Its blockers, as tracking shows them.
        why: String,
    },
}

/// What the driver does with a pending approval.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Approve it, with the driver's reason.
    Approve,
    /// Reject it, with this reason.
    Reject(String),
    /// Leave it pending.
    Skip,
}

/// What one pass did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Pass {
    /// `(onboarding, step)` of each approval approved.
    pub approved: Vec<(String, String)>,
    /// `(onboarding, step)` of each approval rejected.
    pub rejected: Vec<(String, String)>,
    /// `(onboarding, step)` of each task completed.
    pub completed: Vec<(String, String)>,
    /// Checklist items received, uploaded or handed over.
    pub items: u32,
}

impl Pass {
    /// Whether the pass did anything.
    pub fn acted(&self) -> bool {
        !(self.approved.is_empty()
            && self.rejected.is_empty()
            && self.completed.is_empty()
            && self.items == 0)
    }

    fn absorb(&mut self, other: Pass) {
        self.approved.extend(other.approved);
        self.rejected.extend(other.rejected);
        self.completed.extend(other.completed);
        self.items += other.items;
    }
}

/// How long a person's step took, read from the workflow history.
#[derive(Debug, Clone, PartialEq)]
pub struct StepTiming {
    /// The onboarding.
    pub onboarding: String,
    /// The step.
    pub step: String,
    /// `approval` (L2) or `task` (L3).
    pub gate: &'static str,
    /// From the approval being requested (or the task opened) to the step's
    /// success, by the server's clock.
    pub latency: Duration,
}

/// What [`Operator::drive`] did.
#[derive(Debug, Clone, Default)]
pub struct Drive {
    /// Every pass's actions together.
    pub actions: Pass,
    /// Passes made.
    pub passes: u32,
    /// From the first pass to the last onboarding going live.
    pub elapsed: Duration,
    /// Each gated step's latency, per onboarding in order.
    pub steps: Vec<StepTiming>,
    /// Per step, how often its approved plan was found changed before it
    /// ran (`plan.changed`), so people were asked again.
    pub replanned: BTreeMap<String, u32>,
}

/// The scripted operator: a Gatehouse base URL and the tokens it acts with.
#[derive(Clone)]
pub struct Operator {
    http: reqwest::Client,
    base: String,
    approvers: Vec<String>,
    worker: String,
    reason: String,
    concurrency: usize,
}

impl fmt::Debug for Operator {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Operator")
            .field("base", &self.base)
            .field("approvers", &self.approvers.len())
            .finish_non_exhaustive()
    }
}

impl Operator {
    /// An operator at `base` (`http://127.0.0.1:8080`) acting with `token`
    /// for everything. The token's operator must be allowed to decide
    /// approvals, complete tasks, work the checklist and hand over secrets
    /// (a lead or an administrator) and must not have started the workflows.
    pub fn new(base: &str, token: &str) -> Self {
        Self {
            http: reqwest::Client::new(),
            base: base.trim_end_matches('/').to_owned(),
            approvers: vec![token.to_owned()],
            worker: token.to_owned(),
            reason: "reviewed the plan: as expected for a new client".to_owned(),
            concurrency: 8,
        }
    }

    /// How many requests a pass makes at once (8 by default).
    pub fn with_concurrency(mut self, requests: usize) -> Self {
        self.concurrency = requests.max(1);
        self
    }

    /// Adds approvers, for approvals that need several people: each
    /// approval gets one decision from each token until it is settled.
    pub fn with_approvers(mut self, tokens: impl IntoIterator<Item = String>) -> Self {
        self.approvers.extend(tokens);
        self
    }

    /// The reason given with every approval.
    pub fn with_reason(mut self, reason: &str) -> Self {
        reason.clone_into(&mut self.reason);
        self
    }

    async fn call(
        &self,
        token: &str,
        method: Method,
        path: &str,
        body: Option<Body>,
    ) -> Result<Value, OperatorError> {
        let mut request = self
            .http
            .request(method.clone(), format!("{}{path}", self.base))
            .bearer_auth(token);
        request = match body {
            Some(Body::Json(value)) => request.json(&value),
            Some(Body::Bytes(content_type, bytes)) => {
                request.header("content-type", content_type).body(bytes)
            }
            None => request,
        };
        let transport = |source| OperatorError::Transport {
            method: method.clone(),
            path: path.to_owned(),
            source,
        };
        let response = request.send().await.map_err(transport)?;
        let status = response.status();
        let text = response.text().await.map_err(transport)?;
        if !status.is_success() {
            return Err(OperatorError::Status {
                method,
                path: path.to_owned(),
                status,
                body: text,
            });
        }
        if text.is_empty() {
            return Ok(Value::Null);
        }
        serde_json::from_str(&text)
            .map_err(|e| OperatorError::Shape(format!("{method} {path}: not JSON: {e}")))
    }

    /// GET `path` as the worker.
    pub async fn get(&self, path: &str) -> Result<Value, OperatorError> {
        self.call(&self.worker, Method::GET, path, None).await
    }

    /// Every item of a paged listing (`items` and `next_cursor`).
    async fn all(&self, path: &str) -> Result<Vec<Value>, OperatorError> {
        let mut out = Vec::new();
        let sep = if path.contains('?') { '&' } else { '?' };
        let mut after: Option<String> = None;
        loop {
            let page_path = match &after {
                Some(cursor) => format!("{path}{sep}limit={PAGE}&after={cursor}"),
                None => format!("{path}{sep}limit={PAGE}"),
            };
            let page = self.get(&page_path).await?;
            let items = page["items"]
                .as_array()
                .ok_or_else(|| OperatorError::Shape(format!("GET {page_path}: no `items`")))?;
            out.extend(items.iter().cloned());
            match page["next_cursor"].as_str() {
                Some(cursor) if !items.is_empty() => after = Some(cursor.to_owned()),
                _ => return Ok(out),
            }
        }
    }

    /// Every pending approval.
    pub async fn pending_approvals(&self) -> Result<Vec<Value>, OperatorError> {
        self.all("/api/v1/approvals?state=pending").await
    }

    /// Every open human task.
    pub async fn open_tasks(&self) -> Result<Vec<Value>, OperatorError> {
        self.all("/api/v1/tasks?state=open").await
    }

    /// Every onboarding's summary, in start order.
    pub async fn onboardings(&self) -> Result<Vec<Value>, OperatorError> {
        self.all("/api/v1/onboardings").await
    }

    /// One onboarding's detail (stages, blockers, checklist).
    pub async fn onboarding(&self, id: &str) -> Result<Value, OperatorError> {
        self.get(&format!("/api/v1/onboardings/{id}")).await
    }

    /// One workflow with its steps and history.
    pub async fn workflow(&self, id: &str) -> Result<Value, OperatorError> {
        self.get(&format!("/api/v1/workflows/{id}")).await
    }

    /// Approves `approval` with the driver's reason, once per approver
    /// until it is settled.
    pub async fn approve(&self, approval: &Value) -> Result<(), OperatorError> {
        let id = field(approval, "id")?;
        let required = approval["required"].as_u64().unwrap_or(1);
        let given = approval["decisions"].as_array().map_or(0, Vec::len) as u64;
        let needed = required.saturating_sub(given).max(1) as usize;
        if needed > self.approvers.len() {
            return Err(OperatorError::Shape(format!(
                "approval {id} needs {needed} more approvers; the driver has {}",
                self.approvers.len()
            )));
        }
        for token in self.approvers.iter().take(needed) {
            self.call(
                token,
                Method::POST,
                &format!("/api/v1/approvals/{id}/approve"),
                Some(Body::Json(json!({ "reason": self.reason }))),
            )
            .await?;
        }
        Ok(())
    }

    /// Rejects `approval` with `reason`.
    pub async fn reject(&self, approval: &Value, reason: &str) -> Result<(), OperatorError> {
        let id = field(approval, "id")?;
        self.call(
            &self.approvers[0],
            Method::POST,
            &format!("/api/v1/approvals/{id}/reject"),
            Some(Body::Json(json!({ "reason": reason }))),
        )
        .await?;
        Ok(())
    }

    /// Records that the work of `task` was done.
    pub async fn complete_task(&self, task: &Value) -> Result<(), OperatorError> {
        let id = field(task, "id")?;
        let step = task["step_id"].as_str().unwrap_or("the step");
        self.call(
            &self.worker,
            Method::POST,
            &format!("/api/v1/tasks/{id}/complete"),
            Some(Body::Json(json!({
                "outcome": { "done": true, "step": step },
                "evidence": format!("{step}: done and checked by the scripted operator"),
            }))),
        )
        .await?;
        Ok(())
    }

    /// Receives, uploads or hands over every requested checklist item of
    /// `onboarding`; answers how many.
    pub async fn settle_checklist(&self, onboarding: &str) -> Result<u32, OperatorError> {
        let path = format!("/api/v1/onboardings/{onboarding}/items");
        let list = self.get(&path).await?;
        let items = list["items"]
            .as_array()
            .ok_or_else(|| OperatorError::Shape(format!("GET {path}: no `items`")))?;
        let mut settled = 0;
        for item in items.iter().filter(|i| i["state"] == "requested") {
            let id = field(item, "id")?;
            let key = item["key"].as_str().unwrap_or("item");
            let at = format!("{path}/{id}");
            match item["kind"].as_str() {
                Some("file") => {
                    let content = format!("%PDF-1.4\n% {key} for onboarding {onboarding}\n");
                    self.call(
                        &self.worker,
                        Method::PUT,
                        &format!("{at}/file?name={key}.pdf"),
                        Some(Body::Bytes("application/pdf", content.into_bytes())),
                    )
                    .await?;
                }
                Some("secret") => {
                    self.call(
                        &self.worker,
                        Method::POST,
                        &format!("{at}/secret"),
                        Some(Body::Json(json!({
                            "name": format!("onboarding.{key}"),
                            "value": format!("handed-over-{key}"),
                        }))),
                    )
                    .await?;
                }
                _ => {
                    self.call(
                        &self.worker,
                        Method::POST,
                        &format!("{at}/receive"),
                        Some(Body::Json(json!({ "note": "confirmed with the client" }))),
                    )
                    .await?;
                }
            }
            settled += 1;
        }
        Ok(settled)
    }

    /// Acts once on everything that waits for a person in the onboardings
    /// of `scope` (all when `None`): each pending approval as `decide`
    /// says, each open task after settling its onboarding's checklist.
    pub async fn pass(
        &self,
        scope: Option<&BTreeSet<String>>,
        decide: impl Fn(&Value) -> Verdict,
    ) -> Result<Pass, OperatorError> {
        let in_scope = |v: &Value| -> bool {
            v["instance_id"]
                .as_str()
                .is_some_and(|id| scope.is_none_or(|s| s.contains(id)))
        };
        let limit = Arc::new(Semaphore::new(self.concurrency));
        let mut pass = Pass::default();
        let mut decisions = JoinSet::new();
        for approval in self
            .pending_approvals()
            .await?
            .into_iter()
            .filter(|a| in_scope(a))
        {
            let verdict = decide(&approval);
            if verdict == Verdict::Skip {
                continue;
            }
            let me = self.clone();
            let permit = limit.clone().acquire_owned().await.map_err(closed)?;
            decisions.spawn(async move {
                let _permit = permit;
                let who = (
                    field(&approval, "instance_id")?.to_owned(),
                    field(&approval, "step_id")?.to_owned(),
                );
                let done = match &verdict {
                    Verdict::Reject(reason) => me.reject(&approval, reason).await,
                    _ => me.approve(&approval).await,
                };
                match done {
                    Ok(()) => Ok(Some((who, verdict))),
                    // Settled or cancelled meanwhile (another node, a
                    // superseding plan): nothing left to decide.
                    Err(err) if err.is_conflict() => Ok(None),
                    Err(err) => Err(err),
                }
            });
        }
        while let Some(joined) = decisions.join_next().await {
            match joined.map_err(|e| OperatorError::Shape(format!("a decision failed: {e}")))?? {
                Some((who, Verdict::Reject(_))) => pass.rejected.push(who),
                Some((who, _)) => pass.approved.push(who),
                None => {}
            }
        }
        // Tasks by onboarding: the documentation is handed over before
        // anyone signs it off.
        let mut by_onboarding: BTreeMap<String, Vec<Value>> = BTreeMap::new();
        for task in self.open_tasks().await?.into_iter().filter(|t| in_scope(t)) {
            by_onboarding
                .entry(field(&task, "instance_id")?.to_owned())
                .or_default()
                .push(task);
        }
        let mut work = JoinSet::new();
        for (onboarding, tasks) in by_onboarding {
            let me = self.clone();
            let permit = limit.clone().acquire_owned().await.map_err(closed)?;
            work.spawn(async move {
                let _permit = permit;
                let items = me.settle_checklist(&onboarding).await?;
                let mut completed = Vec::new();
                for task in tasks {
                    match me.complete_task(&task).await {
                        Ok(()) => completed
                            .push((onboarding.clone(), field(&task, "step_id")?.to_owned())),
                        Err(err) if err.is_conflict() => {}
                        Err(err) => return Err(err),
                    }
                }
                Ok((items, completed))
            });
        }
        while let Some(joined) = work.join_next().await {
            let (items, completed) =
                joined.map_err(|e| OperatorError::Shape(format!("a task failed: {e}")))??;
            pass.items += items;
            pass.completed.extend(completed);
        }
        Ok(pass)
    }

    /// Passes against a running server, `poll` apart, until every onboarding
    /// in `onboardings` is operational (its workflow completed), one stops
    /// without going live, or `deadline` passes. Then reads each one's step
    /// latencies from its history.
    pub async fn drive(
        &self,
        onboardings: &BTreeSet<String>,
        poll: Duration,
        deadline: Duration,
        mut progress: impl FnMut(usize, usize),
    ) -> Result<Drive, OperatorError> {
        let started = Instant::now();
        let mut drive = Drive::default();
        loop {
            let pass = self.pass(Some(onboardings), |_| Verdict::Approve).await?;
            drive.passes += 1;
            let acted = pass.acted();
            drive.actions.absorb(pass);
            let states: BTreeMap<String, Value> = self
                .onboardings()
                .await?
                .into_iter()
                .filter_map(|o| {
                    let id = o["id"].as_str()?.to_owned();
                    onboardings.contains(&id).then_some((id, o))
                })
                .collect();
            let live = states
                .values()
                .filter(|o| o["state"] == "completed")
                .count();
            progress(live, onboardings.len());
            if let Some((id, o)) = states.iter().find(|(_, o)| {
                matches!(
                    o["state"].as_str(),
                    Some("parked" | "cancelled" | "compensating" | "compensated" | "failed")
                )
            }) {
                let detail = self.onboarding(id).await?;
                return Err(OperatorError::Stopped {
                    id: id.clone(),
                    state: o["state"].as_str().unwrap_or("?").to_owned(),
                    why: detail["blockers"].to_string(),
                });
            }
            if live == onboardings.len() && states.len() == onboardings.len() {
                break;
            }
            if started.elapsed() > deadline {
                let stuck = states
                    .iter()
                    .filter(|(_, o)| o["state"] != "completed")
                    .take(5)
                    .map(|(id, o)| {
                        format!(
                            "{id} {} in {} ({} blocked)",
                            o["state"], o["stage"], o["blocked"]
                        )
                    })
                    .collect::<Vec<_>>()
                    .join("; ");
                return Err(OperatorError::Deadline {
                    waited: started.elapsed(),
                    stuck,
                });
            }
            if !acted {
                tokio::time::sleep(poll).await;
            }
        }
        drive.elapsed = started.elapsed();
        for id in onboardings {
            let history = self.history(id).await?;
            drive.steps.extend(step_timings(id, &history));
            for entry in history.iter().filter(|e| e["kind"] == "plan.changed") {
                let step = entry["step_id"].as_str().unwrap_or("?").to_owned();
                *drive.replanned.entry(step).or_default() += 1;
            }
        }
        Ok(drive)
    }

    /// The latency of each gated step of `onboarding`: from its first
    /// `approval.requested` (L2) or `human_task.created` (L3) to its
    /// `step.succeeded` (or `human_task.completed`), by the server's clock.
    pub async fn step_timings(&self, onboarding: &str) -> Result<Vec<StepTiming>, OperatorError> {
        Ok(step_timings(onboarding, &self.history(onboarding).await?))
    }

    /// A workflow's history entries, oldest first.
    pub async fn history(&self, onboarding: &str) -> Result<Vec<Value>, OperatorError> {
        let mut workflow = self.workflow(onboarding).await?;
        match workflow["history"].take() {
            Value::Array(history) => Ok(history),
            _ => Err(OperatorError::Shape(format!(
                "workflow {onboarding}: no history"
            ))),
        }
    }
}

/// Each gated step's latency in `history` (see [`Operator::step_timings`]).
pub fn step_timings(onboarding: &str, history: &[Value]) -> Vec<StepTiming> {
    let mut ready: BTreeMap<String, (&'static str, OffsetDateTime)> = BTreeMap::new();
    let mut out = Vec::new();
    for entry in history {
        let (Some(step), Some(at)) = (
            entry["step_id"].as_str(),
            entry["at"]
                .as_str()
                .and_then(|t| OffsetDateTime::parse(t, &Rfc3339).ok()),
        ) else {
            continue;
        };
        match entry["kind"].as_str() {
            Some("approval.requested") => {
                ready.entry(step.to_owned()).or_insert(("approval", at));
            }
            Some("human_task.created") => {
                ready.entry(step.to_owned()).or_insert(("task", at));
            }
            Some("step.succeeded" | "human_task.completed") => {
                if let Some((gate, since)) = ready.remove(step) {
                    out.push(StepTiming {
                        onboarding: onboarding.to_owned(),
                        step: step.to_owned(),
                        gate,
                        latency: Duration::try_from(at - since).unwrap_or_default(),
                    });
                }
            }
            _ => {}
        }
    }
    out
}

impl OperatorError {
    /// Whether Gatehouse refused because the thing changed meanwhile (409).
    pub fn is_conflict(&self) -> bool {
        matches!(self, Self::Status { status, .. } if *status == StatusCode::CONFLICT)
    }
}

fn closed(_: tokio::sync::AcquireError) -> OperatorError {
    OperatorError::Shape("the operator's request limiter closed".into())
}

enum Body {
    Json(Value),
    Bytes(&'static str, Vec<u8>),
}

fn field<'a>(value: &'a Value, name: &str) -> Result<&'a str, OperatorError> {
    value[name]
        .as_str()
        .ok_or_else(|| OperatorError::Shape(format!("no `{name}` in {value}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_gated_step_is_timed_from_its_request_to_its_success() {
        let history = vec![
            json!({"kind": "instance.started", "step_id": null, "at": "2026-01-01T00:00:00Z"}),
            json!({"kind": "approval.requested", "step_id": "a", "at": "2026-01-01T00:00:01Z"}),
            json!({"kind": "approval.superseded", "step_id": "a", "at": "2026-01-01T00:00:02Z"}),
            json!({"kind": "approval.requested", "step_id": "a", "at": "2026-01-01T00:00:03Z"}),
            json!({"kind": "step.succeeded", "step_id": "a", "at": "2026-01-01T00:00:04.5Z"}),
            json!({"kind": "human_task.created", "step_id": "t", "at": "2026-01-01T00:00:05Z"}),
            json!({"kind": "human_task.completed", "step_id": "t", "at": "2026-01-01T00:00:06Z"}),
            json!({"kind": "step.succeeded", "step_id": "l0", "at": "2026-01-01T00:00:07Z"}),
        ];
        let timings = step_timings("wf_x", &history);
        assert_eq!(timings.len(), 2, "{timings:?}");
        assert_eq!(timings[0].step, "a");
        assert_eq!(timings[0].gate, "approval");
        assert_eq!(timings[0].latency, Duration::from_millis(3500));
        assert_eq!(timings[1].gate, "task");
        assert_eq!(timings[1].latency, Duration::from_secs(1));
    }
}
