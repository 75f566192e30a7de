//! `gatehouse tenant-group …`: named sets of tenants that operators'
//! scopes may name (`gatehouse operator scope NAME --group SLUG`).

use std::process::ExitCode;

use gatehouse_core::tenant::{DisplayName, TenantSlug};
use gatehouse_core::tenant_group::TenantGroup;
use gatehouse_server::App;
use gatehouse_server::app::{GroupRef, TenantRef};

use super::{CLI, open, print_json, print_table};
use crate::CliError;
use crate::config::ConfigArgs;

/// Tenant group subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum TenantGroupCommand {
    /// Create a group, with its first members.
    Create {
        /// Unique slug (a-z, 0-9, '-').
        slug: String,
        /// What the group is for ("EU clients").
        #[arg(long)]
        name: String,
        /// A member tenant (slug or id); repeatable.
        #[arg(long = "tenant")]
        tenants: Vec<String>,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// List groups and their members.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Show one group (by id or slug).
    Show {
        /// Id or slug.
        group: String,
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Add tenants to a group: operators scoped to it reach them at once.
    Add {
        /// The group's id or slug.
        group: String,
        /// Tenants (slugs or ids).
        #[arg(required = true)]
        tenants: Vec<String>,
    },
    /// Remove tenants from a group: operators scoped to it stop reaching
    /// them at once (unless their scope names them otherwise).
    Remove {
        /// The group's id or slug.
        group: String,
        /// Tenants (slugs or ids).
        #[arg(required = true)]
        tenants: Vec<String>,
    },
    /// Delete a group no operator's scope names.
    Delete {
        /// The group's id or slug.
        group: String,
    },
}

/// Runs a tenant group subcommand.
pub async fn run(args: &ConfigArgs, command: TenantGroupCommand) -> Result<ExitCode, CliError> {
    let (_, app) = open(args).await?;
    match command {
        TenantGroupCommand::Create {
            slug,
            name,
            tenants,
            json,
        } => {
            let tenants: Vec<TenantRef> = tenants.iter().map(|t| TenantRef::parse(t)).collect();
            let group = app
                .create_tenant_group(
                    &CLI,
                    TenantSlug::parse(&slug)?,
                    DisplayName::parse(&name)?,
                    &tenants,
                )
                .await?;
            show(&app, &group, json).await?;
        }
        TenantGroupCommand::List { json } => {
            let groups = app.list_tenant_groups(&CLI).await?;
            if json {
                print_json(&groups)?;
            } else if groups.is_empty() {
                println!(
                    "No tenant groups yet. Create one: gatehouse tenant-group create SLUG --name NAME --tenant TENANT"
                );
            } else {
                let mut rows = Vec::new();
                for group in &groups {
                    rows.push(vec![
                        group.slug.to_string(),
                        group.display_name.as_str().to_owned(),
                        members(&app, group).await,
                    ]);
                }
                print_table(&["SLUG", "NAME", "TENANTS"], &rows);
            }
        }
        TenantGroupCommand::Show { group, json } => {
            let group = app.get_tenant_group(&CLI, &GroupRef::parse(&group)).await?;
            show(&app, &group, json).await?;
        }
        TenantGroupCommand::Add { group, tenants } => {
            change(&app, &group, &tenants, true).await?;
        }
        TenantGroupCommand::Remove { group, tenants } => {
            change(&app, &group, &tenants, false).await?;
        }
        TenantGroupCommand::Delete { group } => {
            app.delete_tenant_group(&CLI, &GroupRef::parse(&group))
                .await?;
            println!("deleted tenant group {group}");
        }
    }
    app.store.close().await;
    Ok(ExitCode::SUCCESS)
}

async fn change(app: &App, group: &str, tenants: &[String], member: bool) -> Result<(), CliError> {
    let group = GroupRef::parse(group);
    let mut now = None;
    for tenant in tenants {
        now = Some(
            app.set_tenant_group_member(&CLI, &group, &TenantRef::parse(tenant), member)
                .await?,
        );
    }
    if let Some(group) = now {
        show(app, &group, false).await?;
    }
    Ok(())
}

async fn show(app: &App, group: &TenantGroup, json: bool) -> Result<(), CliError> {
    if json {
        return print_json(group);
    }
    println!(
        "{} ({}): {}",
        group.slug,
        group.display_name.as_str(),
        group.id
    );
    println!("  tenants: {}", members(app, group).await);
    Ok(())
}

/// The members' slugs (a deleted tenant shows its id), or "none".
async fn members(app: &App, group: &TenantGroup) -> String {
    if group.tenants.is_empty() {
        return "none".into();
    }
    let mut names = Vec::new();
    for id in &group.tenants {
        names.push(match app.get_tenant(&CLI, &TenantRef::Id(*id)).await {
            Ok(tenant) if tenant.state != gatehouse_core::tenant::TenantState::Deleted => {
                tenant.slug.to_string()
            }
            _ => id.to_string(),
        });
    }
    names.join(",")
}
