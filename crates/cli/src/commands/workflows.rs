//! `gatehouse events …`, `gatehouse workflows …` and `gatehouse approvals …`.
//!
//! Reading and submitting act as the local system, like every CLI command.
//! Decisions on approvals must be a person's, so `approve` and `reject` act
//! as the operator named with `--as` (the engine then applies that
//! operator's role and separation of duties).

use std::process::ExitCode;

use gatehouse_core::approval::{Approval, ApprovalState, Verdict};
use gatehouse_core::id::{ApprovalId, WorkflowId};
use gatehouse_core::operator::OperatorName;
use gatehouse_core::workflow::{DedupKey, EventKind, EventSource, Instance, InstanceState};
use gatehouse_server::app::{EventSubmission, GateFilter, MAX_PAGE, TenantRef, WorkflowFilter};
use gatehouse_server::{App, AppError};
use serde_json::{Value, json};

use super::{CLI, open, print_json, print_table};
use crate::CliError;
use crate::config::ConfigArgs;

/// Event subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum EventsCommand {
    /// Submit an event; prints the instances it started.
    Submit {
        /// What happened, such as `psa.opportunity.won`.
        #[arg(long = "type", value_name = "TYPE")]
        kind: String,
        /// The deduplication key: the same key twice is one event.
        #[arg(long)]
        key: String,
        /// Where it came from.
        #[arg(long, default_value = "cli")]
        source: String,
        /// The tenant it concerns (`ten_…` or slug).
        #[arg(long)]
        tenant: Option<String>,
        /// The event's data, as JSON.
        #[arg(long, default_value = "{}")]
        payload: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Workflow subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum WorkflowsCommand {
    /// List workflow instances.
    List {
        /// Only in this state (running, waiting, completed, parked, …).
        #[arg(long)]
        state: Option<String>,
        /// Only this tenant's (`ten_…` or slug).
        #[arg(long)]
        tenant: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show an instance: its steps and history.
    Show {
        /// The instance's id (`wf_…`).
        workflow: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Roll back a completed step that has a compensation: the engine runs
    /// the compensation next; the rest of the workflow is left as it is.
    Rollback {
        /// The instance's id (`wf_…`).
        workflow: String,
        /// The step's id in the template.
        step: String,
        /// Why; recorded in the history.
        #[arg(long)]
        reason: String,
        /// The operator asking (their handle); the local system otherwise.
        #[arg(long = "as", value_name = "OPERATOR_NAME")]
        operator: Option<String>,
    },
    /// Compensate a workflow (after a rejection or failure stopped it, or
    /// instead of letting it go on): every completed step with a
    /// compensation is undone, in reverse order.
    Compensate {
        /// The instance's id (`wf_…`).
        workflow: String,
        /// Why; recorded in the history.
        #[arg(long)]
        reason: String,
        /// The operator asking (their handle); the local system otherwise.
        #[arg(long = "as", value_name = "OPERATOR_NAME")]
        operator: Option<String>,
    },
}

/// Approval subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ApprovalsCommand {
    /// List approvals.
    List {
        /// Only in this state (pending, approved, rejected, cancelled).
        #[arg(long)]
        state: Option<String>,
        /// Only this tenant's (`ten_…` or slug).
        #[arg(long)]
        tenant: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show an approval: its plan and decisions.
    Show {
        /// The approval's id (`apr_…`).
        approval: String,
    },
    /// Approve a gated step, as the named operator.
    Approve {
        /// The approval's id (`apr_…`).
        approval: String,
        /// The operator deciding (their handle).
        #[arg(long = "as", value_name = "OPERATOR_NAME")]
        operator: String,
        /// Why.
        #[arg(long)]
        reason: String,
    },
    /// Reject a gated step, as the named operator.
    Reject {
        /// The approval's id (`apr_…`).
        approval: String,
        /// The operator deciding (their handle).
        #[arg(long = "as", value_name = "OPERATOR_NAME")]
        operator: String,
        /// Why.
        #[arg(long)]
        reason: String,
    },
}

fn workflow_id(text: &str) -> Result<WorkflowId, AppError> {
    text.parse()
        .map_err(|_| AppError::not_found("workflow", text))
}

fn approval_id(text: &str) -> Result<ApprovalId, AppError> {
    text.parse()
        .map_err(|_| AppError::not_found("approval", text))
}

fn summary(instance: &Instance) -> Result<Value, CliError> {
    let mut value = serde_json::to_value(instance).map_err(|e| CliError::Usage(e.to_string()))?;
    if let Some(fields) = value.as_object_mut() {
        fields.remove("definition");
    }
    Ok(value)
}

/// Runs an event subcommand.
pub async fn run_events(args: &ConfigArgs, command: EventsCommand) -> Result<ExitCode, CliError> {
    let (_, app) = open(args).await?;
    match command {
        EventsCommand::Submit {
            kind,
            key,
            source,
            tenant,
            payload,
            json,
        } => {
            let payload: Value = serde_json::from_str(&payload)
                .map_err(|e| CliError::Usage(format!("--payload is not valid JSON: {e}")))?;
            let submitted = app
                .submit_event(
                    &CLI,
                    EventSubmission {
                        kind: EventKind::parse(&kind)?,
                        source: EventSource::parse(&source)?,
                        dedup_key: DedupKey::parse(&key)?,
                        tenant: tenant.as_deref().map(TenantRef::parse),
                        payload,
                    },
                )
                .await?;
            if json {
                print_json(&json!({
                    "event": submitted.event,
                    "duplicate": submitted.duplicate,
                    "instances": submitted.instances,
                }))?;
            } else {
                println!(
                    "{} event {} ({}); started {} workflow(s){}",
                    if submitted.duplicate {
                        "duplicate of"
                    } else {
                        "stored"
                    },
                    submitted.event.id,
                    submitted.event.kind,
                    submitted.instances.len(),
                    if submitted.instances.is_empty() {
                        String::new()
                    } else {
                        format!(
                            ": {}",
                            submitted
                                .instances
                                .iter()
                                .map(ToString::to_string)
                                .collect::<Vec<_>>()
                                .join(", ")
                        )
                    }
                );
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

async fn all_workflows(app: &App, filter: WorkflowFilter) -> Result<Vec<Instance>, CliError> {
    let mut all = Vec::new();
    let mut after = None;
    loop {
        let page = app
            .list_workflows(&CLI, filter.clone(), after, MAX_PAGE)
            .await?;
        all.extend(page.items);
        match page.next {
            Some(next) => after = Some(next),
            None => return Ok(all),
        }
    }
}

/// Runs a workflow subcommand.
pub async fn run_workflows(
    args: &ConfigArgs,
    command: WorkflowsCommand,
) -> Result<ExitCode, CliError> {
    let (_, app) = open(args).await?;
    match command {
        WorkflowsCommand::List {
            state,
            tenant,
            json,
        } => {
            let state: Option<InstanceState> = state.as_deref().map(str::parse).transpose()?;
            let filter = WorkflowFilter {
                tenant: tenant.as_deref().map(TenantRef::parse),
                state,
                template: None,
            };
            let instances = all_workflows(&app, filter).await?;
            if json {
                let items = instances
                    .iter()
                    .map(summary)
                    .collect::<Result<Vec<_>, _>>()?;
                print_json(&json!({ "items": items }))?;
            } else {
                let rows: Vec<Vec<String>> = instances
                    .iter()
                    .map(|i| {
                        vec![
                            i.id.to_string(),
                            format!("{} v{}", i.template, i.template_version),
                            i.state.to_string(),
                            i.tenant_id.map(|t| t.to_string()).unwrap_or_default(),
                            i.updated_at.to_string(),
                        ]
                    })
                    .collect();
                print_table(&["ID", "TEMPLATE", "STATE", "TENANT", "UPDATED"], &rows);
            }
        }
        WorkflowsCommand::Show { workflow, json } => {
            let detail = app.get_workflow(&CLI, workflow_id(&workflow)?).await?;
            if json {
                print_json(&json!({
                    "instance": detail.instance,
                    "steps": detail.steps,
                    "history": detail.history,
                }))?;
            } else {
                let i = &detail.instance;
                println!(
                    "{} {} v{}: {}",
                    i.id, i.template, i.template_version, i.state
                );
                println!(
                    "tenant {}, started by {} at {}",
                    i.tenant_id
                        .map(|t| t.to_string())
                        .unwrap_or_else(|| "-".into()),
                    i.created_by,
                    i.created_at
                );
                println!();
                let steps: Vec<Vec<String>> = detail
                    .steps
                    .iter()
                    .map(|s| {
                        vec![
                            s.step_id.clone(),
                            s.state.as_str().to_owned(),
                            s.attempts.to_string(),
                            s.error.clone().unwrap_or_default(),
                        ]
                    })
                    .collect();
                print_table(&["STEP", "STATE", "ATTEMPTS", "ERROR"], &steps);
                println!();
                let history: Vec<Vec<String>> = detail
                    .history
                    .iter()
                    .map(|h| {
                        vec![
                            h.at.to_string(),
                            h.kind.clone(),
                            h.step_id.clone().unwrap_or_default(),
                            h.actor.clone(),
                        ]
                    })
                    .collect();
                print_table(&["AT", "WHAT", "STEP", "BY"], &history);
            }
        }
        WorkflowsCommand::Rollback {
            workflow,
            step,
            reason,
            operator,
        } => {
            let actor = match operator {
                Some(name) => app.act_as(&OperatorName::parse(&name)?).await?,
                None => CLI,
            };
            let (instance, run) = app
                .rollback_step(&actor, workflow_id(&workflow)?, &step, &reason)
                .await?;
            println!(
                "rollback of step `{}` of {} requested: the step is {}, the workflow {}; the engine runs its compensation next",
                run.step_id,
                instance.id,
                run.state.as_str(),
                instance.state
            );
        }
        WorkflowsCommand::Compensate {
            workflow,
            reason,
            operator,
        } => {
            let actor = match operator {
                Some(name) => app.act_as(&OperatorName::parse(&name)?).await?,
                None => CLI,
            };
            let instance = app
                .compensate_workflow(&actor, workflow_id(&workflow)?, &reason)
                .await?;
            println!(
                "compensation of {} requested: the workflow is {}; the engine undoes its completed steps next, last first",
                instance.id, instance.state
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn show_approval(approval: &Approval) -> Result<(), CliError> {
    println!(
        "{} {}: step `{}` of {}",
        approval.id, approval.state, approval.step_id, approval.instance_id
    );
    println!(
        "needs {} approval(s) by a {}; started by {}",
        approval.required, approval.approver_role, approval.initiated_by
    );
    println!("plan:");
    print_json(&approval.plan)?;
    for decision in &approval.decisions {
        println!(
            "decision: {} by {}: {}",
            decision.verdict, decision.operator_id, decision.reason
        );
    }
    Ok(())
}

/// Runs an approval subcommand.
pub async fn run_approvals(
    args: &ConfigArgs,
    command: ApprovalsCommand,
) -> Result<ExitCode, CliError> {
    let (_, app) = open(args).await?;
    match command {
        ApprovalsCommand::List {
            state,
            tenant,
            json,
        } => {
            let state: Option<ApprovalState> = state.as_deref().map(str::parse).transpose()?;
            let filter = GateFilter {
                tenant: tenant.as_deref().map(TenantRef::parse),
                state,
            };
            let mut approvals = Vec::new();
            let mut after = None;
            loop {
                let page = app
                    .list_approvals(&CLI, filter.clone(), after, MAX_PAGE)
                    .await?;
                approvals.extend(page.items);
                match page.next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
            if json {
                print_json(&json!({ "items": approvals }))?;
            } else {
                let rows: Vec<Vec<String>> = approvals
                    .iter()
                    .map(|a| {
                        vec![
                            a.id.to_string(),
                            a.state.to_string(),
                            a.instance_id.to_string(),
                            a.step_id.clone(),
                            a.approver_role.to_string(),
                            format!("{}/{}", a.approvals_given(), a.required),
                        ]
                    })
                    .collect();
                print_table(
                    &["ID", "STATE", "WORKFLOW", "STEP", "APPROVER", "APPROVALS"],
                    &rows,
                );
            }
        }
        ApprovalsCommand::Show { approval } => {
            show_approval(&app.get_approval(&CLI, approval_id(&approval)?).await?)?;
        }
        ApprovalsCommand::Approve {
            approval,
            operator,
            reason,
        } => decide(&app, &approval, &operator, Verdict::Approve, &reason).await?,
        ApprovalsCommand::Reject {
            approval,
            operator,
            reason,
        } => decide(&app, &approval, &operator, Verdict::Reject, &reason).await?,
    }
    Ok(ExitCode::SUCCESS)
}

async fn decide(
    app: &App,
    approval: &str,
    operator: &str,
    verdict: Verdict,
    reason: &str,
) -> Result<(), CliError> {
    let actor = app.act_as(&OperatorName::parse(operator)?).await?;
    let decided = app
        .decide_approval(&actor, approval_id(approval)?, verdict, reason, None)
        .await?;
    println!(
        "{} by {operator}: {} is now {}",
        verdict, decided.id, decided.state
    );
    Ok(())
}
