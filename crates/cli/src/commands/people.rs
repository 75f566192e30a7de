//! `gatehouse people …`, `gatehouse access-policy …`, `gatehouse elevation …`:
//! identity lifecycle at the command line (reference: docs/identity.md).
//!
//! - `people event --tenant T --person KEY --kind hire [--attr k=v]… [--role R]…`
//! - `people import --tenant T FILE.csv` (a progress bar on stderr, a
//!   per-row error report; bad rows never stop the good ones)
//! - `people list|show|reconcile|drift|revocations`
//! - `access-policy show|preview|set --tenant T [FILE]`
//! - `elevation request|list|revoke`

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::ExitCode;

use gatehouse_identity::{EventKind, LifecycleEvent};
use gatehouse_server::app::TenantRef;
use serde_json::{Value, json};

use super::{CLI, open, print_json, print_table};
use crate::CliError;
use crate::config::ConfigArgs;

/// People subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum PeopleCommand {
    /// Send one lifecycle event (hire, update, leave_of_absence, return,
    /// terminate, contract_end).
    Event {
        /// Tenant id or slug.
        #[arg(long)]
        tenant: String,
        /// The person's key (HR employee number, e-mail).
        #[arg(long)]
        person: String,
        /// What happened.
        #[arg(long)]
        kind: String,
        /// The event's id (default: derived from the arguments, so running
        /// the same command twice changes nothing).
        #[arg(long)]
        id: Option<String>,
        /// A canonical attribute, `name=value` (repeatable).
        #[arg(long = "attr", value_name = "NAME=VALUE")]
        attributes: Vec<String>,
        /// A role template assigned by name (repeatable; replaces the set).
        #[arg(long = "role")]
        roles: Vec<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Import lifecycle events from a CSV file.
    Import {
        /// Tenant id or slug.
        #[arg(long)]
        tenant: String,
        /// The CSV file (header: `person` and other columns).
        file: PathBuf,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List people.
    List {
        /// Tenant id or slug.
        #[arg(long)]
        tenant: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one person, with lineage and what they should hold.
    Show {
        /// Tenant id or slug.
        #[arg(long)]
        tenant: String,
        /// The person's id or key.
        person: String,
    },
    /// Compare one person's desired grants with the systems and start the
    /// workflows that close the gap.
    Reconcile {
        /// Tenant id or slug.
        #[arg(long)]
        tenant: String,
        /// The person's id or key.
        person: String,
    },
    /// Report drift: orphan accounts, leavers still active, grants nobody
    /// approved.
    Drift {
        /// Tenant id or slug.
        #[arg(long)]
        tenant: String,
        /// Also start the workflows that remove what nobody approved.
        #[arg(long)]
        remediate: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Leavers' revocations: when each completed, or what remains.
    Revocations {
        /// Tenant id or slug.
        #[arg(long)]
        tenant: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Access-policy subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum PolicyCommand {
    /// Print the policy (TOML) and its version.
    Show {
        /// Tenant id or slug.
        #[arg(long)]
        tenant: String,
    },
    /// Show who would gain and lose what under FILE; changes nothing.
    Preview {
        /// Tenant id or slug.
        #[arg(long)]
        tenant: String,
        /// The policy file (TOML).
        file: PathBuf,
    },
    /// Make FILE the policy and reconcile everyone it affects.
    Set {
        /// Tenant id or slug.
        #[arg(long)]
        tenant: String,
        /// The policy file (TOML).
        file: PathBuf,
        /// The version it replaces (see `show`; 0 for the first).
        #[arg(long)]
        replaces: u64,
    },
}

/// Elevation subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum ElevationCommand {
    /// Ask for just-in-time access; someone else approves it.
    Request {
        /// Tenant id or slug.
        #[arg(long)]
        tenant: String,
        /// The person's key or id.
        #[arg(long)]
        person: String,
        /// The elevation's id in the tenant's policy.
        #[arg(long)]
        elevation: String,
        /// How long (`30m`, `8h`).
        #[arg(long)]
        duration: String,
        /// Why.
        #[arg(long)]
        justification: String,
    },
    /// List elevations.
    List {
        /// Tenant id or slug.
        #[arg(long)]
        tenant: String,
    },
    /// End an elevation now.
    Revoke {
        /// Tenant id or slug.
        #[arg(long)]
        tenant: String,
        /// The elevation's id (`jit_…`).
        id: String,
    },
}

fn read(path: &PathBuf) -> Result<Vec<u8>, CliError> {
    std::fs::read(path).map_err(|e| CliError::Usage(format!("{}: {e}", path.display())))
}

fn text(path: &PathBuf) -> Result<String, CliError> {
    String::from_utf8(read(path)?)
        .map_err(|_| CliError::Usage(format!("{} is not UTF-8 text", path.display())))
}

/// Runs a people subcommand.
pub async fn run(args: &ConfigArgs, command: PeopleCommand) -> Result<ExitCode, CliError> {
    let (_, app) = open(args).await?;
    match command {
        PeopleCommand::Event {
            tenant,
            person,
            kind,
            id,
            attributes,
            roles,
            json,
        } => {
            let kind = EventKind::parse(&kind).ok_or_else(|| {
                CliError::Usage(format!("--kind `{kind}` is not a lifecycle event"))
            })?;
            let mut attrs = BTreeMap::new();
            for pair in &attributes {
                let (name, value) = pair
                    .split_once('=')
                    .ok_or_else(|| CliError::Usage(format!("--attr `{pair}` is not NAME=VALUE")))?;
                attrs.insert(
                    name.trim().to_owned(),
                    (!value.is_empty()).then(|| value.to_owned()),
                );
            }
            let id = id.unwrap_or_else(|| {
                use sha2::Digest;
                let digest = sha2::Sha256::digest(format!(
                    "{person}\0{}\0{attributes:?}\0{roles:?}",
                    kind.as_str()
                ));
                format!("cli:{}", hex::encode(&digest[..12]))
            });
            let event = LifecycleEvent {
                id,
                person,
                kind,
                source: "cli".into(),
                occurred_at: app.clock.now(),
                attributes: attrs,
                person_kind: None,
                roles: (!roles.is_empty()).then(|| roles.into_iter().collect::<BTreeSet<_>>()),
            };
            let done = app
                .ingest_lifecycle_event(&CLI, &TenantRef::parse(&tenant), event)
                .await?;
            if json {
                print_json(&done)?;
            } else if done.duplicate {
                println!(
                    "{}: this event was received before; nothing changed",
                    done.person
                );
            } else {
                println!(
                    "{}: {} — {} workflow(s) started",
                    done.person,
                    done.status,
                    done.workflows.len()
                );
                for system in &done.unconnected {
                    println!(
                        "warning: the policy names system `{system}`, which the tenant has no connector for"
                    );
                }
            }
        }
        PeopleCommand::Import { tenant, file, json } => {
            let bytes = read(&file)?;
            let label = file.display().to_string();
            let report = app
                .import_people(
                    &CLI,
                    &TenantRef::parse(&tenant),
                    &bytes,
                    "csv",
                    &|done, total| {
                        crate::bench::progress(
                            &label,
                            u32::try_from(done).unwrap_or(u32::MAX),
                            u32::try_from(total).unwrap_or(u32::MAX),
                        );
                    },
                )
                .await?;
            if json {
                print_json(&report)?;
            } else {
                println!(
                    "{} rows: {} applied, {} already imported, {} refused; {} workflow(s) started",
                    report.rows,
                    report.applied,
                    report.duplicates,
                    report.errors.len(),
                    report.workflows.len()
                );
                for error in &report.errors {
                    println!("line {}: {}", error.line, error.message);
                }
            }
            if !report.errors.is_empty() {
                return Ok(ExitCode::from(2));
            }
        }
        PeopleCommand::List { tenant, json } => {
            let tenant = TenantRef::parse(&tenant);
            let mut all = Vec::new();
            let mut after: Option<String> = None;
            loop {
                let page = app
                    .list_people(&CLI, &tenant, after.as_deref(), 1000)
                    .await?;
                let full = page.len() == 1000;
                after = page.last().map(|p| p.id.clone());
                all.extend(page);
                if !full {
                    break;
                }
            }
            if json {
                print_json(&all)?;
            } else {
                let rows: Vec<Vec<String>> = all
                    .iter()
                    .map(|p| {
                        vec![
                            p.id.clone(),
                            p.person.key.clone(),
                            p.person.display_name(),
                            p.person.status.as_str().to_owned(),
                            p.person.attribute("department").unwrap_or("").to_owned(),
                        ]
                    })
                    .collect();
                print_table(&["ID", "KEY", "NAME", "STATUS", "DEPARTMENT"], &rows);
            }
        }
        PeopleCommand::Show { tenant, person } => {
            let (view, desired) = app
                .get_person(&CLI, &TenantRef::parse(&tenant), &person)
                .await?;
            let mut doc = json!(view);
            doc["desired"] = json!(desired.systems);
            print_json(&doc)?;
        }
        PeopleCommand::Reconcile { tenant, person } => {
            let done = app
                .reconcile_person(&CLI, &TenantRef::parse(&tenant), &person)
                .await?;
            print_json(&done)?;
        }
        PeopleCommand::Drift {
            tenant,
            remediate,
            json,
        } => {
            let tenant = TenantRef::parse(&tenant);
            let (items, workflows) = if remediate {
                app.remediate_drift(&CLI, &tenant).await?
            } else {
                (app.identity_drift(&CLI, &tenant).await?, Vec::new())
            };
            if json {
                print_json(&json!({ "items": items, "workflows": workflows }))?;
            } else {
                let rows: Vec<Vec<String>> = items
                    .iter()
                    .map(|d| {
                        let v = json!(d);
                        let field = |k: &str| {
                            v.get(k)
                                .map(|x| match x {
                                    Value::String(s) => s.clone(),
                                    other => other.to_string(),
                                })
                                .unwrap_or_default()
                        };
                        let what = if v.get("remaining").is_some() {
                            field("remaining")
                        } else if v.get("remove").is_some() {
                            field("remove")
                        } else {
                            field("user_name")
                        };
                        vec![
                            field("kind"),
                            field("system"),
                            if v.get("person").is_some() {
                                field("person")
                            } else {
                                field("account")
                            },
                            what,
                        ]
                    })
                    .collect();
                print_table(&["KIND", "SYSTEM", "PERSON/ACCOUNT", "WHAT"], &rows);
                if remediate {
                    println!("{} workflow(s) started", workflows.len());
                }
            }
        }
        PeopleCommand::Revocations { tenant, json } => {
            let items = app.revocations(&CLI, &TenantRef::parse(&tenant)).await?;
            if json {
                print_json(&items)?;
            } else {
                let rows: Vec<Vec<String>> = items
                    .iter()
                    .map(|r| {
                        vec![
                            r.person.clone(),
                            r.started_at.to_string(),
                            r.completed_at.map_or_else(
                                || format!("{} remaining", r.remaining.len()),
                                |t| format!("complete at {t}"),
                            ),
                            r.escalated_at.map(|t| t.to_string()).unwrap_or_default(),
                        ]
                    })
                    .collect();
                print_table(&["PERSON", "STARTED", "STATE", "ESCALATED"], &rows);
            }
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs an access-policy subcommand.
pub async fn run_policy(args: &ConfigArgs, command: PolicyCommand) -> Result<ExitCode, CliError> {
    let (_, app) = open(args).await?;
    match command {
        PolicyCommand::Show { tenant } => {
            let (version, text) = app.access_policy(&CLI, &TenantRef::parse(&tenant)).await?;
            println!("# version {version}");
            print!("{text}");
        }
        PolicyCommand::Preview { tenant, file } => {
            let impact = app
                .preview_access_policy(&CLI, &TenantRef::parse(&tenant), &text(&file)?)
                .await?;
            print_json(&json!({ "impact": impact }))?;
        }
        PolicyCommand::Set {
            tenant,
            file,
            replaces,
        } => {
            let (version, impact) = app
                .set_access_policy(&CLI, &TenantRef::parse(&tenant), &text(&file)?, replaces)
                .await?;
            println!(
                "policy version {version} set; {} people affected",
                impact.len()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

/// Runs an elevation subcommand.
pub async fn run_elevation(
    args: &ConfigArgs,
    command: ElevationCommand,
) -> Result<ExitCode, CliError> {
    let (_, app) = open(args).await?;
    match command {
        ElevationCommand::Request {
            tenant,
            person,
            elevation,
            duration,
            justification,
        } => {
            let secs = gatehouse_identity::policy::parse_duration(&duration)
                .ok_or_else(|| {
                    CliError::Usage(format!(
                        "--duration `{duration}` is not a duration such as 30m or 8h"
                    ))
                })?
                .as_secs();
            let (id, workflows) = app
                .request_elevation(
                    &CLI,
                    &TenantRef::parse(&tenant),
                    &person,
                    &elevation,
                    secs,
                    &justification,
                )
                .await?;
            println!(
                "elevation {id} requested; it waits for approval ({} workflow)",
                workflows.len()
            );
        }
        ElevationCommand::List { tenant } => {
            let rows: Vec<Vec<String>> = app
                .list_elevations(&CLI, &TenantRef::parse(&tenant))
                .await?
                .into_iter()
                .map(|(row, doc)| {
                    vec![
                        row.id,
                        doc.person,
                        doc.elevation,
                        row.state,
                        row.expires_at.map(|t| t.to_string()).unwrap_or_default(),
                    ]
                })
                .collect();
            print_table(&["ID", "PERSON", "ELEVATION", "STATE", "EXPIRES"], &rows);
        }
        ElevationCommand::Revoke { tenant, id } => {
            let workflows = app
                .end_elevation(&CLI, &TenantRef::parse(&tenant), &id)
                .await?;
            println!(
                "elevation {id} ended; {} revocation workflow(s) started",
                workflows.len()
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}
