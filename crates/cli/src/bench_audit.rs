//! `gatehouse bench audit`: the audit log's write path, verification,
//! proofs and OSCAL export.
//!
//! 1. **Appends.** Workflow runs of ten facts each (event, start, gate
//!    request, decision, four steps, review notification, completion) are
//!    queued in the outbox in commits of 256 records, as the engine's
//!    waves queue them, while the sequencer seals each tenant record under
//!    the tenant's key, appends it to the tenant's Merkle log and signs a
//!    checkpoint every 1,000 entries. `appends_per_sec` is the entries
//!    sequenced per second of the whole phase, from the first commit to
//!    the last entry appended.
//! 2. **Verification** of the whole log from the store: every leaf hash
//!    recomputed from its bytes, the tree rebuilt, every checkpoint's
//!    signature and root checked.
//! 3. **Inclusion proofs** for 1,000 random entries against the log's
//!    current size, each fetched from the store and verified.
//! 4. **OSCAL export** of a second tenant whose log holds 100,000 entries
//!    (`--oscal-entries`):
//!    read, unsealed, mapped to runs and serialized.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gatehouse_audit::{Hash, Signer as _};
use gatehouse_core::audit::{AuditRecord, Provenance, action, log_origin};
use gatehouse_core::clock::{Clock, SystemClock};
use gatehouse_core::id::{ApprovalId, EventId, NotificationId, OperatorId, TenantId, WorkflowId};
use gatehouse_core::operator::{Operator, OperatorName, Role};
use gatehouse_core::store::Store;
use gatehouse_core::tenant::{DisplayName, Region, TenantSlug, TenantState};
use gatehouse_server::App;
use gatehouse_server::app::InclusionProof;
use gatehouse_server::app::{NewTenant, TenantRef};
use gatehouse_server::audit_verify::{VerifyStoredOptions, verify_stored};
use gatehouse_vault::{Keyring, LocalKeyFile};
use serde_json::{Value, json};
use time::OffsetDateTime;

use crate::CliError;
use crate::bench::{peak_rss_mb, progress};

/// Records per outbox commit, as a wave of the engine writes them.
const COMMIT: usize = 256;
/// Facts per workflow run.
const RUN_FACTS: u64 = 10;
/// Inclusion proofs measured.
const PROOFS: usize = 1_000;

/// The audit benchmark's settings.
#[derive(Debug, Clone, Copy)]
pub struct AuditBench {
    /// Entries appended to the measured log.
    pub entries: u64,
    /// Entries in the exported tenant's log (whole runs of ten).
    pub oscal_entries: u64,
}

/// The ten facts of one run, in log order, as the engine records them.
fn run_records(tenant: TenantId, operator: OperatorId, at: OffsetDateTime) -> Vec<AuditRecord> {
    let event = EventId::generate(at).to_string();
    let wf = WorkflowId::generate(at).to_string();
    let approval = ApprovalId::generate(at).to_string();
    let fact = |actor: &str, action: &str, subject: &str, details: Value| AuditRecord {
        at,
        tenant_id: Some(tenant),
        actor: actor.to_owned(),
        action: action.to_owned(),
        subject: subject.to_owned(),
        details,
    };
    let step = |seq: u64, kind: &str, actor: &str, step: Option<&str>, detail: Value| {
        fact(
            actor,
            &format!("workflow.{kind}"),
            &wf,
            json!({"template": "bench-onboarding", "template_version": 1, "step": step,
                   "history_seq": seq, "detail": detail}),
        )
    };
    let op = operator.to_string();
    let mut records = vec![
        fact(
            "psa.connectwise",
            "event.received",
            &event,
            json!({"type": "psa.opportunity.won", "dedup_key": format!("deal-{event}"),
                   "outcome": {"instances": [wf]}}),
        ),
        step(
            1,
            "instance.started",
            "system",
            None,
            json!({"template": "bench-onboarding",
            "version": 1, "event": event, "actor": "system"}),
        ),
        step(
            2,
            "approval.requested",
            "system",
            Some("m365"),
            json!({"approval": approval, "gate": "L2"}),
        ),
        step(
            3,
            "approval.approved",
            &op,
            Some("m365"),
            json!({"approval": approval, "by": op,
            "reason": "plan checked against the signed SOW", "override": false}),
        ),
    ];
    for (i, id) in ["m365", "rmm", "docs", "psa"].into_iter().enumerate() {
        records.push(step(
            4 + i as u64,
            "step.succeeded",
            "system",
            Some(id),
            json!({"attempt": 1, "gate": "L2", "action": format!("bench.{id}")}),
        ));
    }
    records.push(step(
        8,
        "notification.queued",
        "system",
        Some("psa"),
        json!({
        "reason": "L1: executed, review requested",
        "notification": NotificationId::generate(at), "recipient": "the default reviewer"}),
    ));
    records.push(step(9, "instance.completed", "system", None, json!({})));
    records
}

/// Queues `entries` facts of `tenant` in commits of [`COMMIT`] while
/// `sequence` drains the outbox; returns when all are appended.
async fn append(
    store: &Arc<dyn Store>,
    clock: &Arc<dyn Clock>,
    sequencer: &gatehouse_server::audit::Sequencer,
    tenant: TenantId,
    operator: OperatorId,
    entries: u64,
    label: &str,
) -> Result<Duration, CliError> {
    let started = Instant::now();
    let producer = {
        let store = store.clone();
        let clock = clock.clone();
        tokio::spawn(async move {
            let mut queued = 0u64;
            let mut pending: Vec<AuditRecord> = Vec::with_capacity(COMMIT + RUN_FACTS as usize);
            while queued < entries {
                while pending.len() < COMMIT {
                    pending.extend(run_records(tenant, operator, clock.now()));
                }
                let take = pending.len().min(COMMIT).min((entries - queued) as usize);
                let batch: Vec<AuditRecord> = pending.drain(..take).collect();
                store.queue_audit(&batch).await?;
                queued += take as u64;
            }
            Ok::<(), CliError>(())
        })
    };
    let mut appended = 0u64;
    let mut producing = Some(producer);
    while appended < entries {
        let n = sequencer
            .run_once(gatehouse_server::audit::SEQUENCE_BATCH)
            .await
            .map_err(|e| CliError::Usage(format!("sequencing: {e}")))?;
        appended += n as u64;
        progress(
            label,
            appended.min(u64::from(u32::MAX)) as u32,
            entries as u32,
        );
        if n == 0 {
            if let Some(p) = producing.as_ref()
                && p.is_finished()
                && let Some(p) = producing.take()
            {
                p.await
                    .map_err(|e| CliError::Usage(format!("the producer failed: {e}")))??;
            }
            tokio::task::yield_now().await;
        }
    }
    if let Some(p) = producing.take() {
        p.await
            .map_err(|e| CliError::Usage(format!("the producer failed: {e}")))??;
    }
    Ok(started.elapsed())
}

/// Runs the benchmark on `store` (migrated here) and returns its result.
pub async fn measure(
    store: Arc<dyn Store>,
    scratch: &std::path::Path,
    bench: &AuditBench,
) -> Result<Value, CliError> {
    if bench.entries == 0 || bench.oscal_entries < RUN_FACTS {
        return Err(CliError::Usage(format!(
            "--entries must be at least 1 and --oscal-entries at least {RUN_FACTS}"
        )));
    }
    let oscal_entries = bench.oscal_entries / RUN_FACTS * RUN_FACTS;
    store.migrate().await?;
    let (provider, _) = LocalKeyFile::open_or_create(&scratch.join("kek.json"))?;
    let keyring = Arc::new(Keyring::new(
        Arc::new(provider),
        store.clone(),
        Duration::from_secs(3600),
    ));
    let clock: Arc<dyn Clock> = Arc::new(SystemClock);
    let engine = Arc::new(gatehouse_engine::runtime::Engine::new(
        store.clone(),
        Arc::new(Vec::<gatehouse_engine::template::Template>::new()),
        Arc::new(gatehouse_engine::action::ActionRegistry::new()),
        clock.clone(),
        Default::default(),
    ));
    let app = App::new(store.clone(), keyring.clone(), clock.clone(), engine);
    let actor = gatehouse_server::Actor::System("bench");
    let mut tenants = Vec::new();
    for slug in ["bench-audit", "bench-oscal"] {
        let new = NewTenant {
            slug: TenantSlug::parse(slug)?,
            display_name: DisplayName::parse(slug)?,
            region: Region::parse("eu")?,
            state: TenantState::Active,
        };
        tenants.push(app.create_tenant(&actor, new).await?.id);
    }
    let operator = Operator::new(
        OperatorName::parse("bench.approver")?,
        DisplayName::parse("Bench Approver")?,
        Role::Lead,
        clock.now(),
    );
    let created = Provenance::system("bench", operator.created_at).record(
        None,
        action::OPERATOR_CREATED,
        operator.id,
        json!({"role": operator.role.as_str()}),
    );
    store.insert_operator(&operator, &[created]).await?;
    eprintln!(
        "bench audit on {}: {} entries",
        store.backend().as_str(),
        bench.entries
    );
    // As `serve` runs it: sealing the tenant's details, signing a
    // checkpoint every 1,000 entries.
    let name = gatehouse_audit::KeyName::parse("gatehouse.bench/audit")
        .map_err(|e| CliError::Usage(e.to_string()))?;
    let signer = gatehouse_vault::AuditSigner::open(
        keyring.provider().as_ref(),
        store.as_ref(),
        name,
        clock.as_ref(),
    )
    .await?;
    let signer = Arc::new(signer);
    let verifier = signer.verifier_key();
    let sequencer = gatehouse_server::audit::Sequencer::new(store.clone(), keyring.clone())
        .with_checkpoints(
            signer.clone(),
            clock.clone(),
            gatehouse_server::audit::CheckpointPolicy::default(),
        );
    // The setup's own records (the tenants, their keys, the operator) are
    // sequenced first, so that only the benchmark's appends are timed.
    sequencer
        .catch_up()
        .await
        .map_err(|e| CliError::Usage(format!("sequencing: {e}")))?;
    let setup = store.audit_head(&tenants[0].to_string()).await?.size;

    // 1. Appends.
    let append_elapsed = append(
        &store,
        &clock,
        &sequencer,
        tenants[0],
        operator.id,
        bench.entries,
        "appends",
    )
    .await?;

    // 2. Verification.
    let log = tenants[0].to_string();
    let options = VerifyStoredOptions::new(
        log_origin(verifier.name().as_str(), &log),
        vec![verifier.clone()],
    );
    let started = Instant::now();
    let report = verify_stored(store.as_ref(), &log, options, |_| {})
        .await
        .map_err(|e| CliError::Usage(format!("verification failed: {e}")))?;
    let verify_elapsed = started.elapsed();
    let size = setup + bench.entries;
    if report.entries != size {
        return Err(CliError::Usage(format!(
            "verified {} entries, expected {size}",
            report.entries
        )));
    }

    // 3. Inclusion proofs.
    let mut latencies = Vec::with_capacity(PROOFS);
    let mut seed = 0x9e37_79b9_7f4a_7c15_u64;
    for _ in 0..PROOFS {
        seed ^= seed << 13;
        seed ^= seed >> 7;
        seed ^= seed << 17;
        let index = seed % size;
        let started = Instant::now();
        let proof = app.inclusion_proof(&actor, &log, index, Some(size)).await?;
        latencies.push(started.elapsed());
        check_proof(&proof)?;
    }
    latencies.sort_unstable();
    let p = |q: f64| latencies[((latencies.len() as f64 * q) as usize).min(latencies.len() - 1)];

    // 4. OSCAL export of a tenant with 100,000 entries.
    append(
        &store,
        &clock,
        &sequencer,
        tenants[1],
        operator.id,
        oscal_entries,
        "oscal tenant appends",
    )
    .await?;
    let started = Instant::now();
    let document = app
        .export_oscal(
            &actor,
            &TenantRef::Id(tenants[1]),
            gatehouse_oscal::Period::default(),
        )
        .await?;
    let bytes = serde_json::to_vec(&document).map_err(|e| CliError::Usage(e.to_string()))?;
    let export_elapsed = started.elapsed();
    let runs = document.assessment_results.results.len();
    if runs as u64 != oscal_entries / RUN_FACTS {
        return Err(CliError::Usage(format!(
            "the export holds {runs} runs, expected {}",
            oscal_entries / RUN_FACTS
        )));
    }

    let ms = |d: Duration| (d.as_secs_f64() * 1e6).round() / 1e3;
    Ok(json!({
        "scenario": "audit",
        "backend": store.backend().as_str(),
        "entries": bench.entries,
        "appends_per_sec": (bench.entries as f64 / append_elapsed.as_secs_f64().max(1e-9)).round(),
        "append_secs": append_elapsed.as_secs_f64(),
        "verify_secs": verify_elapsed.as_secs_f64(),
        "proofs": PROOFS,
        "proof_p50_ms": ms(p(0.50)),
        "proof_p99_ms": ms(p(0.99)),
        "oscal_entries": oscal_entries,
        "oscal_runs": runs,
        "oscal_bytes": bytes.len(),
        "oscal_export_secs": export_elapsed.as_secs_f64(),
        "peak_rss_mb": peak_rss_mb(),
    }))
}

/// Checks a proof the way a client would: the leaf hash up the path
/// reaches the root.
fn check_proof(proof: &InclusionProof) -> Result<(), CliError> {
    let hex = |h: &str| Hash::from_hex(h).map_err(|e| CliError::Usage(e.to_string()));
    let path = proof
        .proof
        .iter()
        .map(|h| hex(h))
        .collect::<Result<Vec<_>, _>>()?;
    gatehouse_audit::verify_inclusion(
        &hex(&proof.leaf_hash)?,
        proof.index,
        proof.tree_size,
        &path,
        &hex(&proof.root)?,
    )
    .map_err(|e| {
        CliError::Usage(format!(
            "proof of entry {} does not verify: {e}",
            proof.index
        ))
    })
}
