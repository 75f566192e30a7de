//! `gatehouse onboarding …`: track client onboardings and work their
//! documentation checklists from the command line.
//!
//! Reading acts as the local system, like every CLI command. Working an
//! item acts as the operator named with `--as` when given (recorded as
//! theirs, with their role applied), as the local system otherwise.

use std::path::PathBuf;
use std::process::ExitCode;

use gatehouse_core::id::{ChecklistItemId, WorkflowId};
use gatehouse_core::operator::OperatorName;
use gatehouse_core::workflow::InstanceState;
use gatehouse_server::onboarding::{ItemView, MAX_FILE_BYTES, OnboardingFilter, Upload};
use gatehouse_server::{Actor, App};
use serde_json::json;

use super::{CLI, open, print_json, print_table};
use crate::CliError;
use crate::config::ConfigArgs;

/// Onboarding subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum OnboardingCommand {
    /// List onboardings: client, stage, progress, blockers.
    List {
        /// Only in this workflow state (running, waiting, parked, completed, …).
        #[arg(long)]
        state: Option<String>,
        /// Only those currently in this stage (intake, documentation, …, done).
        #[arg(long)]
        stage: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show an onboarding: stages, what blocks it and why, checklist.
    Show {
        /// The onboarding's id (`wf_…`).
        onboarding: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List an onboarding's checklist items.
    Items {
        /// The onboarding's id (`wf_…`).
        onboarding: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Mark a confirmation item received.
    Receive {
        /// The onboarding's id (`wf_…`).
        onboarding: String,
        /// The item's id (`chk_…`).
        item: String,
        /// A note.
        #[arg(long)]
        note: Option<String>,
        /// The operator doing it (their handle); the local system otherwise.
        #[arg(long = "as", value_name = "OPERATOR_NAME")]
        operator: Option<String>,
    },
    /// Upload a file item's file (stored sealed under the tenant's key).
    Upload {
        /// The onboarding's id (`wf_…`).
        onboarding: String,
        /// The item's id (`chk_…`).
        item: String,
        /// The file.
        file: PathBuf,
        /// Its media type.
        #[arg(long, default_value = "application/octet-stream")]
        content_type: String,
        /// The operator doing it (their handle); the local system otherwise.
        #[arg(long = "as", value_name = "OPERATOR_NAME")]
        operator: Option<String>,
    },
    /// Waive an item, with a reason.
    Waive {
        /// The onboarding's id (`wf_…`).
        onboarding: String,
        /// The item's id (`chk_…`).
        item: String,
        /// Why it is not needed.
        #[arg(long)]
        reason: String,
        /// The operator doing it (their handle); the local system otherwise.
        #[arg(long = "as", value_name = "OPERATOR_NAME")]
        operator: Option<String>,
    },
}

fn onboarding_id(text: &str) -> Result<WorkflowId, CliError> {
    text.parse()
        .map_err(|e| CliError::Usage(format!("onboarding `{text}`: {e}")))
}

fn item_id(text: &str) -> Result<ChecklistItemId, CliError> {
    text.parse()
        .map_err(|e| CliError::Usage(format!("item `{text}`: {e}")))
}

async fn actor(app: &App, operator: Option<&str>) -> Result<Actor, CliError> {
    match operator {
        Some(name) => Ok(app.act_as(&OperatorName::parse(name)?).await?),
        None => Ok(CLI),
    }
}

fn when(at: Option<time::OffsetDateTime>) -> String {
    at.and_then(|t| {
        t.format(&time::format_description::well_known::Rfc3339)
            .ok()
    })
    .unwrap_or_else(|| "-".into())
}

fn print_items(items: &[ItemView]) {
    let rows: Vec<Vec<String>> = items
        .iter()
        .map(|i| {
            vec![
                i.id.to_string(),
                i.key.clone(),
                i.kind.to_string(),
                if i.overdue {
                    format!("{} (overdue)", i.state)
                } else {
                    i.state.to_string()
                },
                when(Some(i.due_at)),
                i.owner.clone().unwrap_or_default(),
            ]
        })
        .collect();
    print_table(&["ID", "KEY", "KIND", "STATE", "DUE", "OWNER"], &rows);
}

/// Runs an onboarding subcommand.
pub async fn run(args: &ConfigArgs, command: OnboardingCommand) -> Result<ExitCode, CliError> {
    let (_, app) = open(args).await?;
    match command {
        OnboardingCommand::List { state, stage, json } => {
            let state: Option<InstanceState> = state.as_deref().map(str::parse).transpose()?;
            let mut items = Vec::new();
            let mut after = None;
            loop {
                let page = app
                    .list_onboardings(
                        &CLI,
                        OnboardingFilter {
                            state,
                            stage: stage.clone(),
                        },
                        after,
                        100,
                    )
                    .await?;
                items.extend(page.items);
                match page.next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
            if json {
                print_json(&json!({ "items": items }))?;
            } else {
                let rows: Vec<Vec<String>> = items
                    .iter()
                    .map(|o| {
                        vec![
                            o.id.to_string(),
                            o.client.clone().unwrap_or_default(),
                            o.state.clone(),
                            o.stage.clone(),
                            format!("{}/{}", o.steps_done, o.steps_total),
                            o.blocked.to_string(),
                            o.owner.clone().unwrap_or_default(),
                        ]
                    })
                    .collect();
                print_table(
                    &[
                        "ID", "CLIENT", "STATE", "STAGE", "STEPS", "BLOCKERS", "OWNER",
                    ],
                    &rows,
                );
            }
        }
        OnboardingCommand::Show { onboarding, json } => {
            let d = app
                .get_onboarding(&CLI, onboarding_id(&onboarding)?)
                .await?;
            if json {
                print_json(&d)?;
            } else {
                let s = &d.summary;
                println!(
                    "{} {} ({}): stage {} ({}), {}/{} steps",
                    s.id,
                    s.client.as_deref().unwrap_or("-"),
                    s.state,
                    s.stage,
                    s.stage_title,
                    s.steps_done,
                    s.steps_total
                );
                println!(
                    "tenant {}, owner {}, started {}, in stage since {}, live {}",
                    s.tenant.map_or_else(|| "-".into(), |t| t.to_string()),
                    s.owner.as_deref().unwrap_or("-"),
                    when(Some(s.started_at)),
                    when(s.stage_entered_at),
                    when(s.go_live_at)
                );
                println!();
                let rows: Vec<Vec<String>> = d
                    .stages
                    .iter()
                    .map(|st| {
                        vec![
                            st.id.clone(),
                            st.status.clone(),
                            format!("{}/{}", st.done, st.total),
                            when(st.entered_at),
                            when(st.left_at),
                        ]
                    })
                    .collect();
                print_table(&["STAGE", "STATUS", "STEPS", "ENTERED", "LEFT"], &rows);
                if !d.blockers.is_empty() {
                    println!();
                    println!("Blocked:");
                    for b in &d.blockers {
                        println!("  - [{}] {} (since {})", b.kind, b.reason, when(b.since));
                    }
                }
                if !d.checklist.is_empty() {
                    println!();
                    print_items(&d.checklist);
                }
            }
        }
        OnboardingCommand::Items { onboarding, json } => {
            let items = app
                .list_checklist(&CLI, onboarding_id(&onboarding)?)
                .await?;
            if json {
                print_json(&json!({ "items": items }))?;
            } else {
                print_items(&items);
            }
        }
        OnboardingCommand::Receive {
            onboarding,
            item,
            note,
            operator,
        } => {
            let actor = actor(&app, operator.as_deref()).await?;
            let view = app
                .receive_item(
                    &actor,
                    onboarding_id(&onboarding)?,
                    item_id(&item)?,
                    note.as_deref(),
                )
                .await?;
            println!("{} {}: {}", view.id, view.key, view.state);
        }
        OnboardingCommand::Upload {
            onboarding,
            item,
            file,
            content_type,
            operator,
        } => {
            let actor = actor(&app, operator.as_deref()).await?;
            let size = std::fs::metadata(&file)
                .map_err(|e| CliError::Usage(format!("{}: {e}", file.display())))?
                .len();
            if size > MAX_FILE_BYTES as u64 {
                return Err(CliError::Usage(format!(
                    "{}: {size} bytes; at most {MAX_FILE_BYTES}",
                    file.display()
                )));
            }
            let bytes = std::fs::read(&file)
                .map_err(|e| CliError::Usage(format!("{}: {e}", file.display())))?;
            let name = file
                .file_name()
                .map(|n| n.to_string_lossy().into_owned())
                .unwrap_or_default();
            let view = app
                .upload_item_file(
                    &actor,
                    onboarding_id(&onboarding)?,
                    item_id(&item)?,
                    Upload {
                        name,
                        content_type,
                        bytes,
                    },
                )
                .await?;
            println!("{} {}: {}", view.id, view.key, view.state);
        }
        OnboardingCommand::Waive {
            onboarding,
            item,
            reason,
            operator,
        } => {
            let actor = actor(&app, operator.as_deref()).await?;
            let view = app
                .waive_item(
                    &actor,
                    onboarding_id(&onboarding)?,
                    item_id(&item)?,
                    &reason,
                )
                .await?;
            println!("{} {}: {}", view.id, view.key, view.state);
        }
    }
    Ok(ExitCode::SUCCESS)
}
