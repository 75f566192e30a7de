//! `gatehouse operator …`.

use std::process::ExitCode;

use gatehouse_core::operator::{OperatorName, Role, Scope};
use gatehouse_core::tenant::DisplayName;
use gatehouse_server::app::{GroupRef, TenantRef};

use super::{CLI, open, print_json, print_table};
use crate::CliError;
use crate::config::ConfigArgs;

/// Operator subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum OperatorCommand {
    /// Create an operator and print their first API token (shown once).
    Create {
        /// Sign-in handle (a-z, 0-9, '.', '_', '-').
        name: String,
        /// Full name.
        #[arg(long)]
        display_name: String,
        /// admin, lead, technician or auditor.
        #[arg(long)]
        role: String,
    },
    /// List operators.
    List {
        /// Print JSON.
        #[arg(long)]
        json: bool,
    },
    /// Issue a new API token for an operator (shown once).
    Token {
        /// The operator's handle.
        name: String,
        /// What the token is for.
        #[arg(long, default_value = "cli")]
        label: String,
        /// Expire after this many days.
        #[arg(long)]
        expires_in_days: Option<u16>,
    },
    /// Disable an operator: their tokens stop working at once.
    Disable {
        /// The operator's handle.
        name: String,
    },
    /// Enable a disabled operator.
    Enable {
        /// The operator's handle.
        name: String,
    },
    /// Scope an operator's role to some tenants (`--tenant`) and tenant
    /// groups (`--group`), both repeatable, or to the whole installation
    /// again (`--all`).
    Scope {
        /// The operator's handle.
        name: String,
        /// A tenant (slug or id) the role applies to.
        #[arg(
            long = "tenant",
            required_unless_present_any = ["all", "groups"],
            conflicts_with = "all"
        )]
        tenants: Vec<String>,
        /// A tenant group (slug or id) whose members the role applies to,
        /// now and as the group changes.
        #[arg(long = "group", conflicts_with = "all")]
        groups: Vec<String>,
        /// Every tenant and the installation.
        #[arg(long)]
        all: bool,
    },
    /// Set an operator's console password: a random one, printed once, or
    /// the first line of standard input.
    Password {
        /// The operator's handle.
        name: String,
        /// Read the password from standard input instead.
        #[arg(long)]
        stdin: bool,
    },
    /// Give an operator a new TOTP second factor for the console (replacing
    /// any earlier one); prints the secret and its otpauth:// URI once.
    Totp {
        /// The operator's handle.
        name: String,
    },
    /// Print the current code of a TOTP secret (what an authenticator app
    /// shows), for scripts and the demo.
    Code {
        /// The base32 secret.
        secret: String,
    },
}

/// Runs an operator subcommand.
pub async fn run(args: &ConfigArgs, command: OperatorCommand) -> Result<ExitCode, CliError> {
    if let OperatorCommand::Code { secret } = &command {
        // Needs no database: the code is the secret's and the clock's.
        let now = gatehouse_core::clock::Clock::now(&gatehouse_core::clock::SystemClock);
        println!("{}", gatehouse_server::signin::current_code(secret, now)?);
        return Ok(ExitCode::SUCCESS);
    }
    with_database(args, command).await
}

async fn with_database(args: &ConfigArgs, command: OperatorCommand) -> Result<ExitCode, CliError> {
    let (_, app) = open(args).await?;
    match command {
        OperatorCommand::Create {
            name,
            display_name,
            role,
        } => {
            let role: Role = role.parse()?;
            let (operator, _, secret) = app
                .create_operator(
                    &CLI,
                    OperatorName::parse(&name)?,
                    DisplayName::parse(&display_name)?,
                    role,
                )
                .await?;
            println!(
                "created {} ({}) {}",
                operator.name, operator.role, operator.id
            );
            println!("API token, shown only now:\n\n    {}\n", secret.expose());
        }
        OperatorCommand::List { json } => {
            let operators = app.list_operators(&CLI).await?;
            if json {
                print_json(&operators)?;
            } else {
                let mut rows: Vec<Vec<String>> = Vec::with_capacity(operators.len());
                for o in &operators {
                    rows.push(vec![
                        o.id.to_string(),
                        o.name.to_string(),
                        o.role.to_string(),
                        if o.disabled {
                            "disabled".into()
                        } else {
                            "enabled".into()
                        },
                        describe_scope(&app, &o.scope).await,
                        o.display_name.as_str().to_owned(),
                    ]);
                }
                print_table(
                    &["ID", "NAME", "ROLE", "STATUS", "SCOPE", "DISPLAY NAME"],
                    &rows,
                );
            }
        }
        OperatorCommand::Token {
            name,
            label,
            expires_in_days,
        } => {
            let operator = app
                .find_operator(&CLI, &OperatorName::parse(&name)?)
                .await?;
            let expires =
                expires_in_days.map(|d| app.clock.now() + time::Duration::days(i64::from(d)));
            let (token, secret) = app.issue_token(&CLI, operator.id, &label, expires).await?;
            println!("issued {} for {}", token.id, operator.name);
            println!("API token, shown only now:\n\n    {}\n", secret.expose());
        }
        OperatorCommand::Disable { name } => {
            let operator = app
                .find_operator(&CLI, &OperatorName::parse(&name)?)
                .await?;
            app.set_operator_disabled(&CLI, operator.id, true).await?;
            println!("disabled {}", operator.name);
        }
        OperatorCommand::Enable { name } => {
            let operator = app
                .find_operator(&CLI, &OperatorName::parse(&name)?)
                .await?;
            app.set_operator_disabled(&CLI, operator.id, false).await?;
            println!("enabled {}", operator.name);
        }
        OperatorCommand::Scope {
            name,
            tenants,
            groups,
            all,
        } => {
            let operator = app
                .find_operator(&CLI, &OperatorName::parse(&name)?)
                .await?;
            let tenants: Vec<TenantRef> = tenants.iter().map(|t| TenantRef::parse(t)).collect();
            let groups: Vec<GroupRef> = groups.iter().map(|g| GroupRef::parse(g)).collect();
            let scoped = app
                .set_operator_scope(
                    &CLI,
                    operator.id,
                    (!all).then_some((tenants.as_slice(), groups.as_slice())),
                )
                .await?;
            println!(
                "{} now acts on {}",
                scoped.name,
                describe_scope(&app, &scoped.scope).await
            );
        }
        OperatorCommand::Password { name, stdin } => {
            let name = OperatorName::parse(&name)?;
            let password = if stdin {
                let mut line = zeroize::Zeroizing::new(String::new());
                std::io::stdin().read_line(&mut line)?;
                zeroize::Zeroizing::new(line.trim_end_matches(['\r', '\n']).to_owned())
            } else {
                gatehouse_server::signin::generate_password()?
            };
            app.set_password(&CLI, &name, &password).await?;
            if stdin {
                println!("password set for {name}");
            } else {
                println!(
                    "console password for {name}, shown only now:\n\n    {}\n",
                    password.as_str()
                );
            }
        }
        OperatorCommand::Totp { name } => {
            let name = OperatorName::parse(&name)?;
            let enrollment = app.enroll_totp(&CLI, &name).await?;
            println!(
                "TOTP second factor for {name}, shown only now. Add it to an authenticator app:\n"
            );
            println!("    secret  {}", enrollment.secret.as_str());
            println!("    URI     {}\n", enrollment.uri.as_str());
        }
        // Answered without opening the database.
        OperatorCommand::Code { .. } => {}
    }
    app.store.close().await;
    Ok(ExitCode::SUCCESS)
}

/// "all tenants", or the slugs of the tenants an operator is scoped to (a
/// tenant deleted since shows its id) and of its groups (`group:eu`).
async fn describe_scope(app: &gatehouse_server::App, scope: &Scope) -> String {
    match scope {
        Scope::Installation => "all tenants".into(),
        Scope::Tenants {
            tenants, groups, ..
        } if tenants.is_empty() && groups.is_empty() => "no tenants".into(),
        Scope::Tenants {
            tenants, groups, ..
        } => {
            let mut names = Vec::new();
            for group in groups {
                names.push(
                    match app.get_tenant_group(&CLI, &GroupRef::Id(*group)).await {
                        Ok(found) => format!("group:{}", found.slug),
                        Err(_) => format!("group:{group}"),
                    },
                );
            }
            for id in tenants {
                names.push(match app.get_tenant(&CLI, &TenantRef::Id(*id)).await {
                    Ok(tenant) if tenant.state != gatehouse_core::tenant::TenantState::Deleted => {
                        tenant.slug.to_string()
                    }
                    _ => id.to_string(),
                });
            }
            names.join(",")
        }
    }
}
