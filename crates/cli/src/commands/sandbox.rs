//! `gatehouse sandbox`: every vendor emulator on loopback, until Ctrl-C.
//!
//! For trying connectors and webhooks by hand: the emulators speak the
//! vendors' REST shapes (see `docs/sandbox.md`). Their credentials are
//! generated for this run only and printed, since nothing outside this
//! machine can reach them.

use std::process::ExitCode;

use clap::Args;
use gatehouse_sandbox::Sandbox;
use serde_json::json;

use crate::CliError;

/// Options of `gatehouse sandbox`.
#[derive(Debug, Args)]
pub struct SandboxArgs {
    /// Print what is running (URLs and credentials) as one JSON object.
    #[arg(long)]
    json: bool,
}

/// Runs the sandbox until Ctrl-C or SIGTERM.
pub async fn run(args: SandboxArgs) -> Result<ExitCode, CliError> {
    let sandbox = Sandbox::start()
        .await
        .map_err(|e| CliError::Usage(format!("cannot start the sandbox: {e}")))?;
    let c = &sandbox.credentials;
    let credentials = json!({
        "connectwise": {
            "company_id": c.connectwise.company_id,
            "public_key": c.connectwise.public_key,
            "private_key": c.connectwise.private_key,
            "client_id": c.connectwise.client_id,
        },
        "autotask": {
            "username": c.autotask.username,
            "secret": c.autotask.secret,
            "integration_code": c.autotask.integration_code,
        },
        "halopsa": { "client_id": c.halopsa.client_id, "client_secret": c.halopsa.client_secret },
        "ninjaone": { "client_id": c.ninjaone.0, "client_secret": c.ninjaone.1 },
        "dattormm": { "api_key": c.dattormm.0, "api_secret": c.dattormm.1 },
        "itglue": { "api_key": c.itglue_key },
        "hudu": { "api_key": c.hudu_key },
        "graph": {
            "partner_tenant_id": c.partner_tenant_id,
            "client_id": c.graph_app.0,
            "client_secret": c.graph_app.1,
        },
        "scim": { "bearer_token": c.scim_token },
    });
    let endpoints = sandbox.endpoints();
    if args.json {
        let systems: Vec<_> = endpoints
            .iter()
            .map(|e| json!({ "system": e.system, "url": e.url, "auth": e.auth }))
            .collect();
        println!(
            "{}",
            json!({ "endpoints": systems, "credentials": credentials })
        );
    } else {
        println!("Gatehouse sandbox: emulators on loopback (Ctrl-C stops them)\n");
        for e in &endpoints {
            println!("  {:<16} {:<28} {}", e.system, e.url, e.auth);
        }
        println!("\nCredentials for this run only:");
        match serde_json::to_string_pretty(&credentials) {
            Ok(text) => println!("{text}"),
            Err(e) => return Err(CliError::Usage(format!("cannot show the credentials: {e}"))),
        }
    }
    super::serve::shutdown_signal().await;
    sandbox.shutdown().await;
    Ok(ExitCode::SUCCESS)
}
