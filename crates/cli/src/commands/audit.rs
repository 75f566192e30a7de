//! `gatehouse audit …`: the audit log.

use std::collections::BTreeMap;
use std::io::{IsTerminal as _, Write as _};
use std::path::PathBuf;
use std::process::ExitCode;

use gatehouse_audit::note::Signer as _;
use gatehouse_core::store::{ActionFilter, AuditCursor};
use gatehouse_server::App;
use gatehouse_server::app::{AuditQuery, AuditVerification, Issued, MAX_AUDIT_PAGE, VerifyRequest};
use gatehouse_server::audit_verify::kept_note_log;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use super::{CLI, open, print_json, print_table};
use crate::CliError;
use crate::config::{Config, ConfigArgs};

/// Audit log subcommands.
#[derive(Debug, clap::Subcommand)]
pub enum AuditCommand {
    /// Print the C2SP verifier key auditors check checkpoints with
    /// (`<name>+<key ID>+<base64>`); creates the signing key on first use.
    PublicKey {
        /// Print the JSON served at /api/v1/audit/public-key instead.
        #[arg(long)]
        json: bool,
    },
    /// Export a tenant's audit facts (OSCAL assessment results).
    Export(super::audit_export::ExportArgs),
    /// Sign a checkpoint of a log at its current size now (or reuse its
    /// latest one if nothing was appended since) and print the signed note,
    /// the file `audit verify --checkpoint` takes.
    Checkpoint {
        /// The log: `system`, a tenant id or a tenant slug.
        log: String,
    },
    /// List entries by time, then log, then index; the cursor for the next
    /// page is printed at the end.
    List {
        /// Only this log: `system`, a tenant id or slug.
        #[arg(long)]
        tenant: Option<String>,
        /// Only by this actor.
        #[arg(long)]
        actor: Option<String>,
        /// Only this action (`event.received`) or prefix (`workflow.*`).
        #[arg(long, value_parser = ActionFilter::parse)]
        action: Option<ActionFilter>,
        /// Only at or after this time (RFC 3339).
        #[arg(long, value_parser = parse_time)]
        since: Option<OffsetDateTime>,
        /// Only before this time (RFC 3339).
        #[arg(long, value_parser = parse_time)]
        until: Option<OffsetDateTime>,
        /// Page size, 1–1000.
        #[arg(long, default_value_t = 100)]
        limit: u32,
        /// The cursor a previous page printed.
        #[arg(long, value_parser = AuditCursor::decode)]
        cursor: Option<AuditCursor>,
        /// Print JSON (`{entries, next_cursor}`) instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Print one entry, with its leaf.
    Show {
        /// The log: `system`, a tenant id or slug.
        log: String,
        /// The entry's index.
        idx: u64,
    },
    /// Print the inclusion proof of an entry.
    Proof {
        /// The log: `system`, a tenant id or slug.
        log: String,
        /// The entry's index.
        index: u64,
        /// The tree size to prove against (default: the whole log).
        #[arg(long)]
        tree_size: Option<u64>,
        /// Print JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// Print the consistency proof between two sizes of a log.
    Consistency {
        /// The log: `system`, a tenant id or slug.
        log: String,
        /// The older size.
        old: u64,
        /// The newer size.
        new: u64,
        /// Print JSON instead.
        #[arg(long)]
        json: bool,
    },
    /// Recompute every log's tree and check every stored checkpoint, and
    /// the checkpoints given. Exits 0 when everything matches, 1 at the
    /// first mismatch (naming the log and the entry or checkpoint), 2 when
    /// verification could not run.
    Verify {
        /// Only this log: `system`, a tenant id or slug.
        #[arg(long)]
        log: Option<String>,
        /// A checkpoint note kept outside the database (one per file); it
        /// is checked against the log its origin names. Repeatable.
        #[arg(long = "checkpoint", value_name = "FILE")]
        checkpoints: Vec<PathBuf>,
        /// Also check that every entry is canonical JSON (RFC 8785); about
        /// twice as slow.
        #[arg(long)]
        canonical: bool,
        /// Print a JSON report instead.
        #[arg(long)]
        json: bool,
    },
}

pub(super) fn parse_time(text: &str) -> Result<OffsetDateTime, String> {
    OffsetDateTime::parse(text, &Rfc3339)
        .map_err(|e| format!("an RFC 3339 time such as 2026-01-31T09:00:00Z: {e}"))
}

/// Runs an audit subcommand.
pub async fn run(args: &ConfigArgs, command: AuditCommand) -> Result<ExitCode, CliError> {
    if let AuditCommand::Verify {
        log,
        checkpoints,
        canonical,
        json,
    } = command
    {
        return Ok(verify(args, log, &checkpoints, canonical, json).await);
    }
    let (config, app) = open(args).await?;
    let result = read(&config, &app, command).await;
    app.store.close().await;
    result.map(|()| ExitCode::SUCCESS)
}

/// The subcommands other than `verify`.
async fn read(config: &Config, app: &App, command: AuditCommand) -> Result<(), CliError> {
    match command {
        AuditCommand::Export(export) => super::audit_export::run(config, app, export).await?,
        AuditCommand::Checkpoint { log } => checkpoint(app, &log).await?,
        AuditCommand::PublicKey { json } => {
            let key = app.audit_public_key()?;
            if json {
                print_json(&key)?;
            } else {
                println!("{}", key.verifier_key);
            }
        }
        AuditCommand::List {
            tenant,
            actor,
            action,
            since,
            until,
            limit,
            cursor,
            json,
        } => {
            if !(1..=MAX_AUDIT_PAGE).contains(&limit) {
                return Err(CliError::Usage(format!(
                    "--limit must be 1–{MAX_AUDIT_PAGE}"
                )));
            }
            let page = app
                .list_audit(
                    &CLI,
                    AuditQuery {
                        log: tenant,
                        actor,
                        action,
                        since,
                        until,
                        cursor,
                        limit,
                    },
                )
                .await?;
            if json {
                print_json(&serde_json::json!({
                    "entries": page.items,
                    "next_cursor": page.next,
                }))?;
            } else {
                let rows: Vec<Vec<String>> = page
                    .items
                    .iter()
                    .map(|e| {
                        vec![
                            e.at.format(&Rfc3339).unwrap_or_else(|_| e.at.to_string()),
                            e.log.clone(),
                            e.idx.to_string(),
                            e.actor.clone(),
                            e.action.clone(),
                            e.subject.clone(),
                        ]
                    })
                    .collect();
                print_table(&["AT", "LOG", "IDX", "ACTOR", "ACTION", "SUBJECT"], &rows);
                if let Some(next) = page.next {
                    println!("next cursor: {next}");
                }
            }
        }
        AuditCommand::Show { log, idx } => {
            print_json(&app.get_audit_entry(&CLI, &log, idx).await?)?;
        }
        AuditCommand::Proof {
            log,
            index,
            tree_size,
            json,
        } => {
            let proof = app.inclusion_proof(&CLI, &log, index, tree_size).await?;
            if json {
                print_json(&proof)?;
            } else {
                println!("log        {}", proof.log);
                println!("index      {}", proof.index);
                println!("tree size  {}", proof.tree_size);
                println!("leaf hash  {}", proof.leaf_hash);
                println!("root       {}", proof.root);
                print_hashes(&proof.proof);
                print_note("checkpoint", proof.checkpoint.as_deref());
            }
        }
        AuditCommand::Consistency {
            log,
            old,
            new,
            json,
        } => {
            let proof = app.consistency_proof(&CLI, &log, old, new).await?;
            if json {
                print_json(&proof)?;
            } else {
                println!("log        {}", proof.log);
                println!("old size   {}", proof.old_size);
                println!("old root   {}", proof.old_root);
                println!("new size   {}", proof.new_size);
                println!("new root   {}", proof.new_root);
                print_hashes(&proof.proof);
                print_note("old checkpoint", proof.old_checkpoint.as_deref());
                print_note("new checkpoint", proof.new_checkpoint.as_deref());
            }
        }
        AuditCommand::Verify { .. } => {
            // `run` handles it: it has exit codes of its own.
            return Err(CliError::Usage("`audit verify` is run by `run`".into()));
        }
    }
    Ok(())
}

/// `gatehouse audit checkpoint LOG`: the note on standard output (so it can
/// be redirected to a file), what was done on standard error.
async fn checkpoint(app: &App, log: &str) -> Result<(), CliError> {
    let issued = app.issue_checkpoint(&CLI, log).await?;
    let what = match issued {
        Issued::New(_) => "signed a new checkpoint",
        Issued::Latest(_) => "nothing appended since the latest checkpoint; reusing it",
    };
    let checkpoint = issued.into_checkpoint();
    eprintln!("{what}: log {}, size {}", checkpoint.log, checkpoint.size);
    print!("{}", checkpoint.note);
    Ok(())
}

fn print_hashes(proof: &[String]) {
    println!("proof      {} hashes", proof.len());
    for hash in proof {
        println!("  {hash}");
    }
}

fn print_note(what: &str, note: Option<&str>) {
    if let Some(note) = note {
        println!("{what}:\n{note}");
    }
}

/// `gatehouse audit verify`: 0 when every log matches, 1 at the first
/// mismatch, 2 when verification could not run.
async fn verify(
    args: &ConfigArgs,
    log: Option<String>,
    files: &[PathBuf],
    canonical: bool,
    json: bool,
) -> ExitCode {
    let app = match open(args).await {
        Ok((_, app)) => app,
        Err(err) => return cannot_verify(&err),
    };
    let outcome = verify_logs(&app, log, files, canonical, json).await;
    app.store.close().await;
    match outcome {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::FAILURE,
        Err(err) => cannot_verify(&err),
    }
}

fn cannot_verify(err: &CliError) -> ExitCode {
    eprintln!("error: {err}");
    ExitCode::from(2)
}

/// Verifies the logs; `Ok(false)` at the first mismatch.
async fn verify_logs(
    app: &App,
    only: Option<String>,
    files: &[PathBuf],
    canonical: bool,
    json: bool,
) -> Result<bool, CliError> {
    let key_name = app
        .audit_signer
        .as_ref()
        .map(|s| s.key_name().to_string())
        .ok_or_else(|| CliError::Usage("the audit signing key is not loaded".into()))?;
    // Kept checkpoints, routed to the log their origin names.
    let mut kept: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for file in files {
        let note = std::fs::read_to_string(file)
            .map_err(|e| CliError::Usage(format!("reading {}: {e}", file.display())))?;
        let log = kept_note_log(&note, &key_name)
            .map_err(|e| CliError::Usage(format!("{}: {e}", file.display())))?;
        kept.entry(log).or_default().push(note);
    }
    let logs: Vec<String> = match only {
        Some(spec) => {
            let log = app.audit_log_of(&CLI, &spec).await?;
            if let Some(other) = kept.keys().find(|l| **l != log) {
                return Err(CliError::Usage(format!(
                    "a --checkpoint file is of log `{other}`, not of `{log}`"
                )));
            }
            vec![log]
        }
        None => {
            let mut logs: Vec<String> = app
                .list_audit_logs(&CLI)
                .await?
                .into_iter()
                .map(|l| l.log)
                .collect();
            // A kept checkpoint of a log that is gone entirely is checked
            // too: it fails, as it should.
            for log in kept.keys() {
                if !logs.contains(log) {
                    logs.push(log.clone());
                }
            }
            logs
        }
    };
    if logs.is_empty() && !json {
        println!("no audit log has entries yet");
    }
    let mut reports = Vec::new();
    let mut all_ok = true;
    for log in logs {
        let request = VerifyRequest {
            kept: kept.remove(&log).unwrap_or_default(),
            check_canonical: canonical,
        };
        let report = match app
            .verify_audit_log(&CLI, &log, request, progress_printer(log.clone()))
            .await
        {
            Ok(report) => report,
            Err(gatehouse_server::AppError::NotFound {
                code: "audit_log_not_found",
                message,
            }) => AuditVerification {
                log: log.clone(),
                verified: false,
                entries: 0,
                root: None,
                checkpoints: 0,
                kept_checkpoints: 0,
                signed_size: None,
                mismatch: Some(gatehouse_server::app::MismatchView {
                    message: format!("{message}, but a kept checkpoint names it"),
                    entry: Some(0),
                    stored_checkpoint: None,
                    kept_checkpoint: None,
                }),
            },
            Err(err) => return Err(err.into()),
        };
        if !json {
            print_report(&report);
        }
        all_ok &= report.verified;
        reports.push(report);
        if !all_ok {
            break;
        }
    }
    if json {
        print_json(&serde_json::json!({ "verified": all_ok, "logs": reports }))?;
    }
    Ok(all_ok)
}

fn print_report(report: &AuditVerification) {
    match &report.mismatch {
        None => println!(
            "ok  {}  {} entries, {} checkpoints{}, root {}",
            report.log,
            report.entries,
            report.checkpoints,
            if report.kept_checkpoints > 0 {
                format!(" (+{} kept)", report.kept_checkpoints)
            } else {
                String::new()
            },
            report.root.as_deref().unwrap_or("-"),
        ),
        Some(mismatch) => println!(
            "MISMATCH  {}  at {}: {}",
            report.log,
            mismatch.position(),
            mismatch.message
        ),
    }
}

/// Progress on stderr: one updating line on a terminal, else a line every
/// 100 000 entries.
fn progress_printer(log: String) -> impl FnMut(gatehouse_audit::Progress) + Send + 'static {
    let tty = std::io::stderr().is_terminal();
    move |p| {
        let total = p
            .expected_entries
            .map(|t| format!(" of {t}"))
            .unwrap_or_default();
        let mut err = std::io::stderr().lock();
        let _ = if tty {
            let end = if Some(p.entries) == p.expected_entries {
                "\n"
            } else {
                ""
            };
            write!(err, "\r{log}: {} entries{total} verified{end}", p.entries)
        } else if p.entries > 0 && Some(p.entries) != p.expected_entries {
            writeln!(err, "{log}: {} entries{total} verified", p.entries)
        } else {
            Ok(())
        };
    }
}
