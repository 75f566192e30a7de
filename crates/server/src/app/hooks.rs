//! The PSA intake: signed webhooks under `/hooks/{source}/{tenant}` turned
//! into one `psa.opportunity.won` event each, deduplicated by the engine.
//!
//! A delivery goes through, in order:
//! 1. **who**: the source and the tenant must exist, and the tenant must
//!    hold the source's hook secret; otherwise 404, the same answer for
//!    each, so a stranger learns nothing about which tenants exist;
//! 2. **proof**: the signature or credential (see
//!    `gatehouse_connectors::webhook`); a failure is 401 and nothing starts;
//! 3. **meaning**: the body is read into a won deal, or ignored (200) or
//!    malformed (400 with the reason);
//! 4. **submission** through [`App::submit_event`]: the engine stores the
//!    event once per (source, dedup key) and starts the onboarding in the
//!    same transaction, so a retried delivery is a duplicate (200 with the
//!    first answer) and never a second onboarding.
//!
//! Every attempt that names an existing tenant, whatever became of it, is
//! recorded in `hook_deliveries` (the body's SHA-256, never the body) with
//! an audit record in the tenant's log, in one transaction. The event
//! itself is written by the engine first: a crash between the two leaves an
//! event without its delivery record, never a delivery record pointing at
//! nothing; the sender's retry is then answered as a duplicate and recorded.
//!
//! The event carries no tenant: a won deal precedes the client's tenant,
//! which the onboarding creates. The receiving tenant (normally the MSP's
//! own, which holds the PSA's secrets) is on the delivery record.

mod normalize;

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use gatehouse_connectors::ports::{Psa, PsaKind, PsaOpportunity};
use gatehouse_connectors::webhook::{
    self, ConnectWiseVerifier, HaloAuth, KeyHostAllowlist, SignatureError, SigningKeyFetcher,
};
use gatehouse_core::audit::Provenance;
use gatehouse_core::hooks::{DeliveryOutcome, DeliveryQuery, HookDelivery, HookSource};
use gatehouse_core::id::{EventId, HookDeliveryId, TenantId, WorkflowId};
use gatehouse_core::notify::EmailAddress;
use gatehouse_core::secret::SecretName;
use gatehouse_core::store::StoreError;
use gatehouse_core::tenant::{Region, Tenant, TenantSlug, TenantState};
use gatehouse_core::workflow::{DedupKey, EventKind, EventSource};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;

use super::{Actor, App, EventSubmission, Page, TenantRef};
use crate::authz::Permission;
use crate::error::AppError;
use normalize::{Defaults, Reading, WonDeal};

/// The event kind every won deal becomes.
pub const WON_EVENT: &str = "psa.opportunity.won";
/// The largest webhook body accepted.
pub const MAX_HOOK_BODY_BYTES: usize = 256 * 1024;
/// The most deliveries one page lists.
pub const MAX_DELIVERY_PAGE: u32 = 500;

/// The secret holding Autotask's webhook secret key.
pub const AUTOTASK_SECRET: &str = "hooks.autotask.secret";
/// The secret holding the credential HaloPSA sends.
pub const HALOPSA_SECRET: &str = "hooks.halopsa.auth";
/// The secret holding the generic webhook's HMAC secret.
pub const GENERIC_SECRET: &str = "hooks.generic.secret";
/// The tenant secret that signs its HR system's deliveries (the generic
/// scheme: HMAC-SHA256 over timestamp and body).
pub const HR_SECRET: &str = "hooks.hr.secret";

const NOT_FOUND: &str = "no such webhook";
const UNVERIFIED: &str = "the webhook's signature or credentials did not verify";

/// How the intake is set up.
#[derive(Debug, Clone)]
pub struct IntakeConfig {
    /// Hosts ConnectWise signing keys may be fetched from.
    pub connectwise_key_hosts: KeyHostAllowlist,
    /// How far the generic webhook's timestamp may be from now.
    pub replay_window: Duration,
    /// The region of a new client when the deal does not say.
    pub default_region: Region,
    /// The onboarding owner when the deal does not name one.
    pub default_owner: Option<EmailAddress>,
}

impl IntakeConfig {
    /// The defaults (ConnectWise's cloud hosts, a five-minute replay
    /// window, no default owner) with `default_region` for new clients.
    pub fn new(default_region: Region) -> Self {
        Self {
            connectwise_key_hosts: KeyHostAllowlist::default(),
            replay_window: webhook::DEFAULT_REPLAY_WINDOW,
            default_region,
            default_owner: None,
        }
    }
}

/// A request's headers, by lower-case name (the HTTP edge fills it).
#[derive(Debug, Clone, Default)]
pub struct HookHeaders(Vec<(String, String)>);

impl HookHeaders {
    /// Adds a header.
    pub fn push(&mut self, name: &str, value: &str) {
        self.0.push((name.to_ascii_lowercase(), value.to_owned()));
    }

    /// The first value of `name`.
    pub fn get(&self, name: &str) -> Option<&str> {
        self.0
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// What the intake answers a delivery it accepted, recognised as a
/// duplicate, or ignored.
#[derive(Debug, Clone, PartialEq, serde::Serialize)]
pub struct HookReply {
    /// The delivery's record.
    pub delivery: HookDeliveryId,
    /// `accepted`, `duplicate` or `ignored`.
    pub outcome: DeliveryOutcome,
    /// Why it was ignored.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// The event (the original one, for a duplicate).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<EventId>,
    /// The workflow instances the event started.
    pub instances: Vec<WorkflowId>,
}

/// The webhook intake: checks, reads, records and submits deliveries.
pub struct Intake {
    app: Arc<App>,
    config: IntakeConfig,
    connectwise: ConnectWiseVerifier,
    psa: Option<Arc<dyn Psa>>,
}

impl fmt::Debug for Intake {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Intake")
            .field("config", &self.config)
            .field("psa", &self.psa.as_ref().map(|p| p.kind()))
            .finish_non_exhaustive()
    }
}

/// What a delivery came to, before it is recorded.
struct Verdict {
    outcome: DeliveryOutcome,
    reason: Option<String>,
    event: Option<EventId>,
    instances: Vec<WorkflowId>,
}

impl Verdict {
    fn reason(outcome: DeliveryOutcome, reason: impl Into<String>) -> Self {
        Self {
            outcome,
            reason: Some(reason.into()),
            event: None,
            instances: Vec::new(),
        }
    }
}

impl Intake {
    /// An intake for `app`, fetching ConnectWise signing keys through
    /// `fetcher` (only from `config.connectwise_key_hosts`).
    pub fn new(app: Arc<App>, config: IntakeConfig, fetcher: Arc<dyn SigningKeyFetcher>) -> Self {
        let connectwise = ConnectWiseVerifier::new(config.connectwise_key_hosts.clone(), fetcher);
        Self {
            app,
            config,
            connectwise,
            psa: None,
        }
    }

    /// Asks `psa` (the MSP's ConnectWise) whether a ConnectWise opportunity
    /// is won and what its company is called, instead of trusting the
    /// callback's copy of the record.
    pub fn with_psa(mut self, psa: Arc<dyn Psa>) -> Self {
        self.psa = Some(psa);
        self
    }

    /// The app behind the intake.
    pub fn app(&self) -> &Arc<App> {
        &self.app
    }

    /// The intake's settings.
    pub fn config(&self) -> &IntakeConfig {
        &self.config
    }

    /// Handles one delivery to `/hooks/{source}/{tenant}`.
    pub async fn receive(
        &self,
        source: &str,
        tenant: &str,
        headers: &HookHeaders,
        body: &[u8],
    ) -> Result<HookReply, AppError> {
        let not_found = || AppError::NotFound {
            code: "hook_not_found",
            message: NOT_FOUND.into(),
        };
        let source: HookSource = source.parse().map_err(|_| not_found())?;
        let tenant = match self.app.find_tenant(&TenantRef::parse(tenant)).await {
            Ok(t) if t.state != TenantState::Deleted => t,
            Ok(_) => return Err(not_found()),
            Err(AppError::NotFound { .. }) => return Err(not_found()),
            Err(other) => return Err(other),
        };
        let received_at = self.app.now();
        let body_sha256 = format!("{:x}", Sha256::digest(body));
        let record = |verdict: &Verdict| HookDelivery {
            id: HookDeliveryId::generate(received_at),
            tenant_id: tenant.id,
            source,
            received_at,
            outcome: verdict.outcome,
            reason: verdict.reason.clone(),
            event_id: verdict.event,
            body_sha256: body_sha256.clone(),
        };

        if let Err(err) = self
            .verify(source, &tenant, headers, body, received_at)
            .await?
        {
            // The key server could not be reached: not the sender's fault,
            // and a 503 makes it deliver again.
            if let SignatureError::KeyFetch(cause) = &err
                && cause.is_retryable()
            {
                let verdict = Verdict::reason(DeliveryOutcome::Failed, err.to_string());
                self.record(&record(&verdict)).await?;
                tracing::warn!(tenant = %tenant.id, %source, reason = %err, "webhook not verified: the signing key is unavailable");
                return Err(AppError::Unavailable(err.to_string()));
            }
            let verdict = Verdict::reason(DeliveryOutcome::BadSignature, err.to_string());
            self.record(&record(&verdict)).await?;
            tracing::warn!(tenant = %tenant.id, %source, reason = %err, "webhook refused");
            return Err(AppError::Unauthenticated(UNVERIFIED));
        }

        let verdict = if source == HookSource::Hr {
            self.process_hr(&tenant, body).await
        } else {
            self.process(source, body).await
        };
        let delivery = record(&verdict);
        self.record(&delivery).await?;
        tracing::info!(tenant = %tenant.id, %source, delivery = %delivery.id, outcome = %delivery.outcome, event = ?delivery.event_id, "webhook received");
        match verdict.outcome {
            DeliveryOutcome::Malformed => Err(AppError::BadRequest {
                status: axum::http::StatusCode::BAD_REQUEST,
                code: "hook_malformed",
                message: verdict.reason.unwrap_or_default(),
            }),
            DeliveryOutcome::Failed => {
                Err(AppError::Unavailable(verdict.reason.unwrap_or_default()))
            }
            outcome => Ok(HookReply {
                delivery: delivery.id,
                outcome,
                reason: verdict.reason,
                event: verdict.event,
                instances: verdict.instances,
            }),
        }
    }

    /// The tenant's hook secret `name`, or 404 if it has none.
    async fn secret(
        &self,
        tenant: TenantId,
        name: &str,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>, AppError> {
        let name = SecretName::parse(name).map_err(|e| AppError::Internal(e.to_string()))?;
        match self
            .app
            .reveal_secret(&Actor::System("webhook intake"), tenant, &name)
            .await
        {
            Ok(value) => Ok(value),
            Err(AppError::NotFound { .. }) => Err(AppError::NotFound {
                code: "hook_not_found",
                message: NOT_FOUND.into(),
            }),
            Err(other) => Err(other),
        }
    }

    /// The outer error is the intake's own failure (404 for a tenant without
    /// the source's secret); the inner one, a delivery that does not verify.
    async fn verify(
        &self,
        source: HookSource,
        tenant: &Tenant,
        headers: &HookHeaders,
        body: &[u8],
        now: OffsetDateTime,
    ) -> Result<Result<(), SignatureError>, AppError> {
        Ok(match source {
            HookSource::ConnectWise => {
                self.connectwise
                    .verify(body, headers.get(webhook::CONNECTWISE_SIGNATURE))
                    .await
            }
            HookSource::Autotask => {
                let secret = self.secret(tenant.id, AUTOTASK_SECRET).await?;
                webhook::verify_autotask(&secret, body, headers.get(webhook::AUTOTASK_SIGNATURE))
            }
            HookSource::HaloPsa => {
                let secret = self.secret(tenant.id, HALOPSA_SECRET).await?;
                let text = String::from_utf8_lossy(&secret);
                HaloAuth::parse(&text).and_then(|auth| auth.verify(headers.get("authorization")))
            }
            HookSource::Generic | HookSource::Hr => {
                let name = if source == HookSource::Hr {
                    HR_SECRET
                } else {
                    GENERIC_SECRET
                };
                let secret = self.secret(tenant.id, name).await?;
                webhook::verify_generic(
                    &secret,
                    body,
                    headers.get(webhook::GENERIC_TIMESTAMP),
                    headers.get(webhook::GENERIC_SIGNATURE),
                    now,
                    self.config.replay_window,
                )
            }
        })
    }

    /// Applies the lifecycle events of a verified HR delivery: one event
    /// (the API's shape) or a JSON array of them, each with its own id, so
    /// a redelivery changes nothing. Refused events are named in the
    /// reason; the delivery is malformed only if none could be applied.
    async fn process_hr(&self, tenant: &Tenant, body: &[u8]) -> Verdict {
        let events: Vec<crate::identity::EventInput> = match serde_json::from_slice::<Value>(body) {
            Ok(Value::Array(items)) => {
                match items.into_iter().map(serde_json::from_value).collect() {
                    Ok(events) => events,
                    Err(e) => {
                        return Verdict::reason(
                            DeliveryOutcome::Malformed,
                            format!("an event is not readable: {e}"),
                        );
                    }
                }
            }
            Ok(one) => match serde_json::from_value(one) {
                Ok(event) => vec![event],
                Err(e) => {
                    return Verdict::reason(
                        DeliveryOutcome::Malformed,
                        format!("the event is not readable: {e}"),
                    );
                }
            },
            Err(e) => {
                return Verdict::reason(
                    DeliveryOutcome::Malformed,
                    format!("the body is not JSON: {e}"),
                );
            }
        };
        if events.is_empty() {
            return Verdict::reason(DeliveryOutcome::Malformed, "the delivery holds no event");
        }
        let now = self.app.now();
        let by = gatehouse_core::audit::Provenance::system("hr webhook", now);
        let (mut applied, mut duplicates, mut refused, mut instances) =
            (0, 0, Vec::new(), Vec::new());
        for input in events {
            let mut input = input;
            input.source.get_or_insert_with(|| "hr".to_owned());
            let id = input.id.clone();
            let event = match input.into_event(now) {
                Ok(event) => event,
                Err(reason) => {
                    refused.push(format!("{id}: {reason}"));
                    continue;
                }
            };
            match self.app.identity.ingest(tenant.id, event, &by).await {
                Ok(done) if done.duplicate => duplicates += 1,
                Ok(done) => {
                    applied += 1;
                    instances.extend(done.workflows);
                }
                Err(
                    crate::identity::IdentityError::Invalid(reason)
                    | crate::identity::IdentityError::NotFound(reason),
                ) => {
                    refused.push(format!("{id}: {reason}"));
                }
                Err(other) => return Verdict::reason(DeliveryOutcome::Failed, other.to_string()),
            }
        }
        let outcome = match (applied, duplicates) {
            (0, 0) => DeliveryOutcome::Malformed,
            (0, _) => DeliveryOutcome::Duplicate,
            _ => DeliveryOutcome::Accepted,
        };
        Verdict {
            outcome,
            reason: (!refused.is_empty()).then(|| format!("refused: {}", refused.join("; "))),
            event: None,
            instances,
        }
    }

    /// Reads a verified body and submits the won deal it describes.
    async fn process(&self, source: HookSource, body: &[u8]) -> Verdict {
        let reading = match source {
            HookSource::ConnectWise => normalize::connectwise(body),
            HookSource::Autotask => normalize::autotask(body),
            HookSource::HaloPsa => normalize::halopsa(body),
            HookSource::Generic => normalize::generic(body),
            HookSource::Hr => {
                return Verdict::reason(
                    DeliveryOutcome::Ignored,
                    "HR deliveries carry lifecycle events",
                );
            }
        };
        let reading = match reading {
            Reading::LookUp {
                opportunity_id,
                from_payload,
                partial,
            } => match &self.psa {
                Some(psa) => match look_up(psa.as_ref(), &opportunity_id, partial).await {
                    Ok(reading) => reading,
                    Err(reason) => return Verdict::reason(DeliveryOutcome::Failed, reason),
                },
                None => *from_payload,
            },
            other => other,
        };
        match reading {
            Reading::Won(deal) => {
                let deal = self.enrich(source, deal).await;
                self.submit(source, &deal).await
            }
            Reading::Ignored(reason) => Verdict::reason(DeliveryOutcome::Ignored, reason),
            Reading::Malformed(reason) => Verdict::reason(DeliveryOutcome::Malformed, reason),
            Reading::LookUp { .. } => Verdict::reason(
                DeliveryOutcome::Failed,
                "the opportunity could not be looked up",
            ),
        }
    }

    /// Fills in a deal's missing domain from its company's website in the
    /// PSA, when the intake has the PSA that sent it. Best effort: a PSA
    /// that cannot answer leaves it missing, and the onboarding's
    /// `m365-tenant` step then says so.
    async fn enrich(&self, source: HookSource, mut deal: WonDeal) -> WonDeal {
        if deal.domain.is_some() {
            return deal;
        }
        let (Some(psa), Some(company)) = (&self.psa, deal.company_id.clone()) else {
            return deal;
        };
        let same = matches!(
            (source, psa.kind()),
            (HookSource::ConnectWise, PsaKind::ConnectWise)
                | (HookSource::Autotask, PsaKind::Autotask)
                | (HookSource::HaloPsa, PsaKind::HaloPsa)
        );
        if !same {
            return deal;
        }
        match psa.company(&company).await {
            Ok(found) => deal.domain = found.and_then(|c| c.domain),
            Err(err) => {
                tracing::warn!(error = %err, "the intake could not read the company's website from the PSA");
            }
        }
        deal
    }

    /// Submits `deal` as one `psa.opportunity.won` event.
    async fn submit(&self, source: HookSource, deal: &WonDeal) -> Verdict {
        match self.won_event(source_name(source), deal).await {
            Ok(submission) => self.submit_event(submission).await,
            Err(verdict) => verdict,
        }
    }

    /// The event for `deal` from `source` (`psa.autotask`, …), or why not.
    async fn won_event(&self, source: &str, deal: &WonDeal) -> Result<EventSubmission, Verdict> {
        let malformed = |reason: String| Verdict::reason(DeliveryOutcome::Malformed, reason);
        let slug = match &deal.slug {
            Some(slug) => slug.clone(),
            None => match deal.company_name.as_deref() {
                Some(name) => match normalize::slug_from_name(name) {
                    Some(base) => self
                        .free_slug(&base)
                        .await
                        .map_err(|e| Verdict::reason(DeliveryOutcome::Failed, e.to_string()))?,
                    None => {
                        return Err(malformed(
                            "company.name has no letters to derive company.slug from".into(),
                        ));
                    }
                },
                // `payload` names the missing name.
                None => "unnamed".into(),
            },
        };
        let defaults = Defaults {
            region: self.config.default_region.clone(),
            owner: self.config.default_owner.clone(),
        };
        let payload = normalize::payload(deal, &slug, &defaults).map_err(malformed)?;
        let internal = |e: gatehouse_core::DomainError| {
            Verdict::reason(DeliveryOutcome::Failed, e.to_string())
        };
        Ok(EventSubmission {
            kind: EventKind::parse(WON_EVENT).map_err(internal)?,
            source: EventSource::parse(source).map_err(internal)?,
            dedup_key: DedupKey::parse(&deal.dedup_key)
                .map_err(|_| malformed("the deal's id is too long or not printable".into()))?,
            tenant: None,
            payload,
        })
    }

    /// Submits an event through the engine (dedup and routing in one
    /// transaction).
    async fn submit_event(&self, submission: EventSubmission) -> Verdict {
        match self
            .app
            .submit_event(&Actor::System("webhook intake"), submission)
            .await
        {
            Ok(submitted) => Verdict {
                outcome: if submitted.duplicate {
                    DeliveryOutcome::Duplicate
                } else {
                    DeliveryOutcome::Accepted
                },
                reason: None,
                event: Some(submitted.event.id),
                instances: submitted.instances,
            },
            Err(err) => {
                tracing::error!(error = %err, "a webhook's event could not be submitted");
                Verdict::reason(DeliveryOutcome::Failed, "the event could not be stored")
            }
        }
    }

    /// The first of `base`, `base-2`, … that no tenant uses.
    async fn free_slug(&self, base: &str) -> Result<String, AppError> {
        for candidate in normalize::slug_candidates(base) {
            let Ok(slug) = TenantSlug::parse(&candidate) else {
                continue;
            };
            match self.app.store.find_tenant_by_slug(&slug).await {
                Err(StoreError::NotFound(_)) => return Ok(candidate),
                Ok(_) => {}
                Err(other) => return Err(other.into()),
            }
        }
        Err(AppError::Invalid(format!(
            "no free tenant slug derived from `{base}`"
        )))
    }

    async fn record(&self, delivery: &HookDelivery) -> Result<(), AppError> {
        let audit = Provenance::system("webhook", delivery.received_at).record(
            Some(delivery.tenant_id),
            delivery.outcome.audit_action(),
            delivery.id,
            json!({
                "source": delivery.source.as_str(),
                "outcome": delivery.outcome.as_str(),
                "reason": delivery.reason,
                "event": delivery.event_id,
                "body_sha256": delivery.body_sha256,
            }),
        );
        self.app
            .store
            .record_hook_delivery(delivery, &[audit])
            .await
            .map_err(AppError::from)
    }
}

/// The event source of a webhook's events.
pub(crate) fn source_name(source: HookSource) -> &'static str {
    match source {
        HookSource::ConnectWise => "psa.connectwise",
        HookSource::Autotask => "psa.autotask",
        HookSource::HaloPsa => "psa.halopsa",
        HookSource::Generic => "webhook.generic",
        HookSource::Hr => "hr",
    }
}

/// Completes a ConnectWise callback from the PSA: whether the opportunity
/// is won (the status's `wonFlag`, which the callback does not carry) and
/// the company's name. A failure is the reason (the sender retries).
async fn look_up(psa: &dyn Psa, id: &str, partial: WonDeal) -> Result<Reading, String> {
    let opportunity = psa
        .opportunity(id)
        .await
        .map_err(|e| format!("the PSA could not be asked about the opportunity: {e}"))?;
    let Some(opportunity) = opportunity else {
        return Ok(Reading::Ignored("the opportunity is not in the PSA".into()));
    };
    if !opportunity.won {
        return Ok(Reading::Ignored(
            "the opportunity's status is not won".into(),
        ));
    }
    let company = psa
        .company(&opportunity.company_id)
        .await
        .map_err(|e| format!("the PSA could not be asked about the company: {e}"))?;
    let domain = company.as_ref().and_then(|c| c.domain.clone());
    Ok(Reading::Won(WonDeal {
        company_id: Some(opportunity.company_id.clone()),
        company_name: company.map(|c| c.name).or(partial.company_name.clone()),
        domain: domain.or(partial.domain.clone()),
        opportunity_id: Some(opportunity.id),
        ..partial
    }))
}

impl App {
    /// A page of `tenant`'s webhook deliveries, newest first.
    pub async fn list_hook_deliveries(
        &self,
        actor: &Actor,
        tenant: &TenantRef,
        source: Option<HookSource>,
        outcome: Option<DeliveryOutcome>,
        before: Option<HookDeliveryId>,
        limit: u32,
    ) -> Result<Page<HookDelivery, HookDeliveryId>, AppError> {
        let tenant = self
            .tenant_for(actor, Permission::ReadTenants, tenant)
            .await?;
        if limit == 0 || limit > MAX_DELIVERY_PAGE {
            return Err(AppError::Invalid(format!(
                "invalid limit: must be 1 to {MAX_DELIVERY_PAGE}"
            )));
        }
        let items = self
            .store
            .list_hook_deliveries(&DeliveryQuery {
                tenant: tenant.id,
                source,
                outcome,
                before,
                limit,
            })
            .await?;
        let next = (items.len() == limit as usize)
            .then(|| items.last().map(|d| d.id))
            .flatten();
        Ok(Page { items, next })
    }
}

impl Intake {
    /// The tenant `tenant` names, unless deleted (for the poller).
    pub(crate) async fn live_tenant(&self, tenant: &TenantRef) -> Result<Tenant, AppError> {
        let found = self.app.find_tenant(tenant).await?;
        if found.state == TenantState::Deleted {
            return Err(super::deleted(&found));
        }
        Ok(found)
    }

    /// Submits an opportunity a poller found won, as `source`
    /// (`psa.autotask`) with the dedup key `{psa}:opportunity:{id}:won`,
    /// and records it as a delivery of `hook` to `tenant` (reason
    /// `polled`), so `hooks list` shows the poller's work beside the
    /// webhooks'. Answers the outcome and the reason.
    pub(crate) async fn submit_polled(
        &self,
        tenant: TenantId,
        hook: HookSource,
        opportunity: &PsaOpportunity,
        company_name: Option<String>,
        domain: Option<String>,
    ) -> Result<(DeliveryOutcome, Option<String>), AppError> {
        let psa = hook.as_str();
        let deal = WonDeal {
            psa: psa.to_owned(),
            dedup_key: format!("{psa}:opportunity:{}:won", opportunity.id),
            company_id: Some(opportunity.company_id.clone()),
            company_name,
            domain,
            opportunity_id: Some(opportunity.id.clone()),
            needs_opportunity: true,
            ..WonDeal::default()
        };
        let verdict = match self.won_event(source_name(hook), &deal).await {
            Ok(submission) => self.submit_event(submission).await,
            Err(verdict) => verdict,
        };
        let received_at = self.app.now();
        let body = serde_json::to_vec(opportunity).unwrap_or_default();
        let reason = match &verdict.reason {
            Some(reason) => format!("polled: {reason}"),
            None => "polled".to_owned(),
        };
        let delivery = HookDelivery {
            id: HookDeliveryId::generate(received_at),
            tenant_id: tenant,
            source: hook,
            received_at,
            outcome: verdict.outcome,
            reason: Some(reason),
            event_id: verdict.event,
            body_sha256: format!("{:x}", Sha256::digest(&body)),
        };
        self.record(&delivery).await?;
        Ok((verdict.outcome, verdict.reason))
    }
}
