//! `gatehouse audit export`: a tenant's audit facts as an OSCAL document.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use gatehouse_oscal::Period;
use gatehouse_server::App;
use gatehouse_server::app::TenantRef;
use time::OffsetDateTime;

use super::CLI;
use crate::CliError;
use crate::config::Config;

/// The export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ExportFormat {
    /// OSCAL 1.1.3 assessment results, JSON (valid against the NIST 1.2.3 schema).
    Oscal,
}

/// `gatehouse audit export`.
#[derive(Debug, clap::Args)]
pub struct ExportArgs {
    /// The document format.
    #[arg(long, value_enum, default_value = "oscal")]
    pub format: ExportFormat,
    /// The tenant: its slug or id (a deleted tenant by id).
    #[arg(long)]
    pub tenant: String,
    /// Runs started at or after this instant (RFC 3339).
    #[arg(long, value_parser = super::audit::parse_time)]
    pub since: Option<OffsetDateTime>,
    /// Runs started before this instant (RFC 3339).
    #[arg(long, value_parser = super::audit::parse_time)]
    pub until: Option<OffsetDateTime>,
    /// Where to write the document; `-` for standard output. A file is
    /// written whole or not at all (written beside, then renamed).
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs the export. Records still queued in the outbox (no `serve` is
/// sequencing them, say) are appended to their logs first, so the export
/// holds every committed fact; this is safe beside a running `serve`.
pub async fn run(config: &Config, app: &App, args: ExportArgs) -> Result<(), CliError> {
    let ExportFormat::Oscal = args.format;
    let caught_up = crate::wiring::open_sequencer(config, app)?
        .catch_up()
        .await
        .map_err(|e| CliError::Usage(format!("appending queued audit records: {e}")))?;
    if caught_up > 0 {
        eprintln!("appended {caught_up} queued audit record(s) to their logs first");
    }
    let period = Period {
        since: args.since,
        until: args.until,
    };
    let document = app
        .export_oscal(&CLI, &TenantRef::parse(&args.tenant), period)
        .await?;
    let results = &document.assessment_results.results;
    let runs = results.len();
    let bytes = serde_json::to_vec(&document).map_err(|e| CliError::Usage(e.to_string()))?;
    if args.out.as_os_str() == "-" {
        let mut out = std::io::stdout().lock();
        out.write_all(&bytes)?;
        out.write_all(b"\n")?;
        out.flush()?;
    } else {
        write_whole(&args.out, &bytes)?;
        eprintln!(
            "wrote {} ({} bytes): {runs} result(s) for tenant {}",
            args.out.display(),
            bytes.len(),
            args.tenant
        );
    }
    Ok(())
}

/// Writes `bytes` to a temporary file beside `path`, then renames it over
/// `path`, so a reader never sees half a document.
fn write_whole(path: &Path, bytes: &[u8]) -> Result<(), CliError> {
    let name = path
        .file_name()
        .ok_or_else(|| CliError::Usage(format!("--out {} names no file", path.display())))?;
    let mut partial = name.to_owned();
    partial.push(".partial");
    let temp = path.with_file_name(partial);
    let mut file = std::fs::File::create(&temp)?;
    file.write_all(bytes)?;
    file.sync_all()?;
    std::fs::rename(&temp, path)?;
    Ok(())
}
