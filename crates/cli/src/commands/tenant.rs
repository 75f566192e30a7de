//! `gatehouse tenant …`.

use std::io::Read;
use std::process::ExitCode;

use gatehouse_core::gate::{AreaGate, GateLevel, ProcessArea};
use gatehouse_core::secret::SecretName;
use gatehouse_core::tenant::{DisplayName, Region, Tenant, TenantAction, TenantSlug, TenantState};
use gatehouse_server::app::{NewTenant, TenantChanges, TenantRef};
use zeroize::Zeroizing;

use super::{CLI, open, print_json, print_table};
use crate::CliError;
use crate::config::ConfigArgs;

/// Tenant subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum TenantCommand {
    /// Create a client tenant with its own data key.
    Create {
        /// Unique slug (a-z, 0-9, '-').
        slug: String,
        /// The client's name.
        #[arg(long)]
        name: String,
        /// Data-residency region (eu, us, uk, eu-central, …).
        #[arg(long)]
        region: String,
        /// Create it in `provisioning` instead of `active`.
        #[arg(long)]
        provisioning: bool,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List tenants.
    List {
        /// Only this state (provisioning, active, suspended, offboarding, deleted).
        #[arg(long)]
        state: Option<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one tenant (by id or slug).
    Show {
        /// Id or slug.
        tenant: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Change a tenant's name or (while provisioning) region.
    Update {
        /// Id or slug.
        tenant: String,
        /// New name.
        #[arg(long)]
        name: Option<String>,
        /// New region.
        #[arg(long)]
        region: Option<String>,
    },
    /// Activate a provisioning or suspended tenant.
    Activate {
        /// Id or slug.
        tenant: String,
    },
    /// Suspend an active tenant.
    Suspend {
        /// Id or slug.
        tenant: String,
    },
    /// Start offboarding a tenant.
    Offboard {
        /// Id or slug.
        tenant: String,
    },
    /// Delete a tenant: destroys its data key and secrets. Irreversible.
    Delete {
        /// Id or slug.
        tenant: String,
        /// Confirm that the tenant's data is to be destroyed.
        #[arg(long)]
        yes: bool,
    },
    /// Manage a tenant's secrets.
    #[command(subcommand)]
    Secret(SecretCommand),
    /// Show every process area's gate for a tenant: default, floor,
    /// override and the level its steps run at.
    Gates {
        /// Id or slug.
        tenant: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Set one process area's gate level for a tenant (never below the
    /// area's floor), or clear it back to the default with --clear.
    Gate {
        /// Id or slug.
        tenant: String,
        /// Process area (client_onboarding, joiner_access, revocation, …).
        area: String,
        /// L0, L1, L2 or L3.
        #[arg(required_unless_present = "clear", conflicts_with = "clear")]
        level: Option<String>,
        /// Return the area to its default level.
        #[arg(long)]
        clear: bool,
        /// Why (kept with the setting).
        #[arg(long)]
        reason: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
}

/// Secret subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum SecretCommand {
    /// Store a secret read from standard input (never from an argument,
    /// which other users could see in the process list).
    Set {
        /// Id or slug.
        tenant: String,
        /// Secret name, such as `ninjaone.client-secret`.
        name: String,
    },
    /// List a tenant's secrets (names only).
    List {
        /// Id or slug.
        tenant: String,
    },
    /// Remove a secret.
    Delete {
        /// Id or slug.
        tenant: String,
        /// Secret name.
        name: String,
    },
}

fn print_tenants(tenants: &[Tenant]) {
    let rows: Vec<Vec<String>> = tenants
        .iter()
        .map(|t| {
            vec![
                t.id.to_string(),
                t.slug.to_string(),
                t.state.to_string(),
                t.region.as_str().to_owned(),
                t.display_name.as_str().to_owned(),
            ]
        })
        .collect();
    print_table(&["ID", "SLUG", "STATE", "REGION", "NAME"], &rows);
}

fn print_gates(gates: &[AreaGate]) {
    let rows: Vec<Vec<String>> = gates
        .iter()
        .map(|g| {
            let change = g.last_change.as_ref();
            vec![
                g.area.to_string(),
                g.default.to_string(),
                g.floor.to_string(),
                g.override_level
                    .map_or_else(|| "-".to_owned(), |l| l.to_string()),
                g.effective.to_string(),
                change.map_or_else(String::new, |c| {
                    format!("{} by {}: {}", c.set_at.date(), c.set_by, c.reason)
                }),
            ]
        })
        .collect();
    print_table(
        &[
            "AREA",
            "DEFAULT",
            "FLOOR",
            "OVERRIDE",
            "EFFECTIVE",
            "LAST CHANGE",
        ],
        &rows,
    );
}

fn show(tenant: &Tenant, json: bool) -> Result<(), CliError> {
    if json {
        print_json(tenant)
    } else {
        print_tenants(std::slice::from_ref(tenant));
        Ok(())
    }
}

/// Runs a tenant subcommand.
pub async fn run(args: &ConfigArgs, command: TenantCommand) -> Result<ExitCode, CliError> {
    let (_, app) = open(args).await?;
    match command {
        TenantCommand::Create {
            slug,
            name,
            region,
            provisioning,
            json,
        } => {
            let new = NewTenant {
                slug: TenantSlug::parse(&slug)?,
                display_name: DisplayName::parse(&name)?,
                region: Region::parse(&region)?,
                state: if provisioning {
                    TenantState::Provisioning
                } else {
                    TenantState::Active
                },
            };
            show(&app.create_tenant(&CLI, new).await?, json)?;
        }
        TenantCommand::List { state, json } => {
            let state = state.map(|s| s.parse::<TenantState>()).transpose()?;
            let mut all = Vec::new();
            let mut after = None;
            loop {
                let page = app
                    .list_tenants(&CLI, state, after, gatehouse_server::app::MAX_PAGE)
                    .await?;
                all.extend(page.items);
                match page.next {
                    Some(next) => after = Some(next),
                    None => break,
                }
            }
            if json {
                print_json(&all)?;
            } else if all.is_empty() {
                println!(
                    "No tenants yet. Create one: gatehouse tenant create SLUG --name NAME --region eu"
                );
            } else {
                print_tenants(&all);
            }
        }
        TenantCommand::Show { tenant, json } => show(
            &app.get_tenant(&CLI, &TenantRef::parse(&tenant)).await?,
            json,
        )?,
        TenantCommand::Update {
            tenant,
            name,
            region,
        } => {
            let changes = TenantChanges {
                display_name: name.as_deref().map(DisplayName::parse).transpose()?,
                region: region.as_deref().map(Region::parse).transpose()?,
            };
            show(
                &app.update_tenant(&CLI, &TenantRef::parse(&tenant), changes)
                    .await?,
                false,
            )?;
        }
        TenantCommand::Activate { tenant } => {
            transition(&app, &tenant, TenantAction::Activate).await?
        }
        TenantCommand::Suspend { tenant } => {
            transition(&app, &tenant, TenantAction::Suspend).await?
        }
        TenantCommand::Offboard { tenant } => {
            transition(&app, &tenant, TenantAction::Offboard).await?
        }
        TenantCommand::Delete { tenant, yes } => {
            if !yes {
                return Err(CliError::Usage(format!(
                    "deleting `{tenant}` destroys its data key and every secret; nothing can bring them back. Pass --yes to confirm"
                )));
            }
            transition(&app, &tenant, TenantAction::Delete).await?;
        }
        TenantCommand::Secret(command) => secret(&app, command).await?,
        TenantCommand::Gates { tenant, json } => {
            let (_, gates) = app.tenant_gates(&CLI, &TenantRef::parse(&tenant)).await?;
            if json {
                print_json(&gates)?;
            } else {
                print_gates(&gates);
            }
        }
        TenantCommand::Gate {
            tenant,
            area,
            level,
            clear,
            reason,
            json,
        } => {
            let area: ProcessArea = area.parse()?;
            let level = if clear {
                None
            } else {
                level.map(|l| l.parse::<GateLevel>()).transpose()?
            };
            let gate = app
                .set_tenant_gate(&CLI, &TenantRef::parse(&tenant), area, level, &reason)
                .await?;
            if json {
                print_json(&gate)?;
            } else {
                print_gates(std::slice::from_ref(&gate));
            }
        }
    }
    app.store.close().await;
    Ok(ExitCode::SUCCESS)
}

async fn transition(
    app: &gatehouse_server::App,
    tenant: &str,
    action: TenantAction,
) -> Result<(), CliError> {
    let tenant = app
        .transition_tenant(&CLI, &TenantRef::parse(tenant), action)
        .await?;
    println!("{} is now {}", tenant.slug, tenant.state);
    Ok(())
}

async fn secret(app: &gatehouse_server::App, command: SecretCommand) -> Result<(), CliError> {
    match command {
        SecretCommand::Set { tenant, name } => {
            let name = SecretName::parse(&name)?;
            let mut value = Zeroizing::new(Vec::new());
            std::io::stdin().read_to_end(&mut value)?;
            // A trailing newline from `echo` or a terminal is not part of the secret.
            while value.last().is_some_and(|b| *b == b'\n' || *b == b'\r') {
                value.pop();
            }
            let meta = app
                .put_secret(&CLI, &TenantRef::parse(&tenant), &name, &value)
                .await?;
            println!("stored {} (version {})", meta.name, meta.version);
        }
        SecretCommand::List { tenant } => {
            let items = app.list_secrets(&CLI, &TenantRef::parse(&tenant)).await?;
            let rows: Vec<Vec<String>> = items
                .iter()
                .map(|m| {
                    vec![
                        m.name.to_string(),
                        m.version.to_string(),
                        m.updated_at.to_string(),
                    ]
                })
                .collect();
            print_table(&["NAME", "VERSION", "UPDATED"], &rows);
        }
        SecretCommand::Delete { tenant, name } => {
            let name = SecretName::parse(&name)?;
            app.delete_secret(&CLI, &TenantRef::parse(&tenant), &name)
                .await?;
            println!("deleted {name}");
        }
    }
    Ok(())
}
