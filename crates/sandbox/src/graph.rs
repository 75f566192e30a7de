//! Emulator of Microsoft Graph and the Microsoft identity platform's token
//! endpoint, for Gatehouse's Microsoft 365 connector.
//!
//! One loopback server plays both hosts, told apart by path:
//! `POST /{tenant}/oauth2/v2.0/token` is login.microsoftonline.com (client
//! credentials, scope `https://graph.microsoft.com/.default`), `/v1.0/…` is
//! graph.microsoft.com. A token is bound to the tenant it was issued in and
//! every Graph resource is resolved in that tenant only, so a customer's
//! token can never read another customer's directory (the wall Gatehouse
//! relies on: one token cache per tenant).
//!
//! What is modelled, and why (details in `docs/connectors-graph.md`):
//! - tenants (a partner's own, customers') with verified domains and the
//!   app registrations consented in them ([`GraphEmulator::consent_app`]);
//! - users (create with Graph's body and checks, `$filter`/`$select`/`$top`
//!   and `@odata.nextLink` paging, disable, delete, `revokeSignInSessions`),
//!   licences (`subscribedSkus`, `assignLicense`, `licenseDetails`), groups
//!   and their members (`members/$ref`; mail-enabled security groups and
//!   distribution lists refuse it, as Graph does), directory role members
//!   (for admin and break-glass accounts; added and removed through
//!   `members/$ref`), a user's `memberOf` (groups and roles), and the
//!   tenant's `organization` (its country, for usage locations);
//! - GDAP relationships in partner tenants, with Graph's status machine
//!   `created → approvalPending → active → terminationRequested →
//!   terminated`; the customer's approval is [`GraphEmulator::approve_gdap`]
//!   (or an `approve` request made with the customer's token), and the
//!   end of a termination is [`GraphEmulator::finish_terminations`];
//! - a second partner ("the previous provider", [`GraphEmulator::seed_previous_provider`])
//!   whose relationship and admin account onboarding must see removed;
//! - `$batch` (up to 20 steps, run through the same routes and tenant
//!   checks with the batch's token).
//!
//! Errors use Graph's shape `{"error":{"code","message","innerError"}}`;
//! the token endpoint uses the identity platform's `{"error",
//! "error_description"}`. Faults (down, 429 with `Retry-After`, latency)
//! come from the shared [`Harness`] and answer before any handler runs.
//! Side effects are counted by name (`users.created`, `tokens.issued:{tenant}`,
//! `gdap.lockForApproval`, …).

mod batch;
mod directory;
mod gdap;
mod model;
mod odata;
mod routes;
mod tenants;

use std::collections::BTreeSet;
use std::sync::Arc;

use serde_json::Value;

use crate::emulator::{Harness, Served, lock, serve};
use model::{Group, Relationship, User, guid, now_rfc3339};

pub use model::GroupKind;
pub use routes::GRAPH_SCOPE;

/// The Global Administrator directory role template id.
pub const GLOBAL_ADMINISTRATOR: &str = "62e90394-69f5-4237-9190-012177145e10";

/// What [`GraphEmulator::seed_previous_provider`] created.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PreviousProvider {
    /// The previous provider's partner tenant id.
    pub partner_tenant_id: String,
    /// Its active GDAP relationship with the customer.
    pub relationship_id: String,
    /// Its admin account in the customer's directory (a Global
    /// Administrator).
    pub admin_user_id: String,
}

/// Handle to a running Graph emulator on loopback.
#[derive(Debug)]
pub struct GraphEmulator {
    served: Served,
    shared: Arc<routes::Shared>,
}

impl GraphEmulator {
    /// Starts on 127.0.0.1 with a random port and no tenants.
    pub async fn start() -> std::io::Result<Self> {
        let shared = Arc::new(routes::Shared::default());
        let served = serve(
            "graph",
            routes::router(Arc::clone(&shared)),
            &shared.harness,
            None,
        )
        .await?;
        Ok(Self { served, shared })
    }

    /// Base URL, `http://127.0.0.1:PORT`: both the login and the Graph base.
    pub fn url(&self) -> String {
        self.served.url()
    }

    /// Fault knobs and side-effect counters.
    pub fn harness(&self) -> &Harness {
        &self.shared.harness
    }

    /// Stops the server and waits for it.
    pub async fn shutdown(self) {
        self.served.shutdown().await;
    }

    fn add(&self, id: &str, name: &str, partner: bool) {
        let slug: String = name
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect::<String>()
            .to_ascii_lowercase();
        let mut dir = lock(&self.shared.dir);
        let tenant = dir.tenants.entry(id.to_owned()).or_default();
        name.clone_into(&mut tenant.name);
        tenant.partner |= partner;
        let domain = format!("{slug}.onmicrosoft.com");
        if !tenant.domains.contains(&domain) {
            tenant.domains.push(domain);
        }
    }

    /// Adds a customer tenant `id` called `name`, with the verified domain
    /// `{name, letters and digits only, lower case}.onmicrosoft.com`.
    pub fn add_tenant(&self, id: &str, name: &str) {
        self.add(id, name, false);
    }

    /// Adds a partner's own tenant (it may manage GDAP relationships).
    pub fn add_partner_tenant(&self, id: &str, name: &str) {
        self.add(id, name, true);
    }

    /// Adds a verified domain to a tenant; false if there is no such tenant.
    pub fn add_domain(&self, tenant: &str, domain: &str) -> bool {
        let mut dir = lock(&self.shared.dir);
        let Some(t) = dir.tenants.get_mut(tenant) else {
            return false;
        };
        t.domains.push(domain.to_owned());
        true
    }

    /// Sets the organization's country (`countryLetterCode`, `US` until
    /// set); false if there is no such tenant.
    pub fn set_country(&self, tenant: &str, country: &str) -> bool {
        let mut dir = lock(&self.shared.dir);
        let Some(t) = dir.tenants.get_mut(tenant) else {
            return false;
        };
        t.country = Some(country.to_owned());
        true
    }

    /// Consents app `client_id` (with `client_secret`) in `tenant`, so the
    /// token endpoint grants it tokens there; false if there is no such tenant.
    pub fn consent_app(&self, tenant: &str, client_id: &str, client_secret: &str) -> bool {
        let mut dir = lock(&self.shared.dir);
        let Some(t) = dir.tenants.get_mut(tenant) else {
            return false;
        };
        t.apps
            .insert(client_id.to_owned(), client_secret.to_owned());
        true
    }

    /// Invalidates every token issued so far (as if they had expired), so
    /// the next Graph call with one is answered `401`.
    pub fn expire_tokens(&self) {
        lock(&self.shared.dir).tokens.clear();
    }

    /// Adds a subscribed SKU with `units` licences to a tenant.
    pub fn add_sku(&self, tenant: &str, sku_id: &str, part_number: &str, units: u64) -> bool {
        let mut dir = lock(&self.shared.dir);
        let Some(t) = dir.tenants.get_mut(tenant) else {
            return false;
        };
        t.skus.insert(
            sku_id.to_owned(),
            model::Sku {
                sku_id: sku_id.to_owned(),
                part_number: part_number.to_owned(),
                enabled_units: units,
            },
        );
        true
    }

    /// Adds a group of `kind`; answers its id (`None` if no such tenant).
    pub fn add_group(&self, tenant: &str, display_name: &str, kind: GroupKind) -> Option<String> {
        let mut dir = lock(&self.shared.dir);
        let t = dir.tenants.get_mut(tenant)?;
        let group = Group {
            id: guid(),
            display_name: display_name.to_owned(),
            mail_nickname: display_name
                .chars()
                .filter(char::is_ascii_alphanumeric)
                .collect(),
            kind,
            members: BTreeSet::new(),
        };
        let id = group.id.clone();
        t.groups.insert(id.clone(), group);
        Some(id)
    }

    /// Adds an enabled user directly (not counted as a side effect); answers
    /// its id (`None` if no such tenant or the UPN is taken).
    pub fn add_user(&self, tenant: &str, upn: &str, display_name: &str) -> Option<String> {
        let mut dir = lock(&self.shared.dir);
        let t = dir.tenants.get_mut(tenant)?;
        if t.user_id(upn).is_some() {
            return None;
        }
        let now = now_rfc3339();
        let user = User {
            id: guid(),
            upn: upn.to_owned(),
            display_name: display_name.to_owned(),
            mail_nickname: upn.split('@').next().unwrap_or(upn).to_owned(),
            account_enabled: true,
            usage_location: None,
            licenses: Vec::new(),
            sessions_valid_from: now.clone(),
            force_change_password: false,
            created: now,
        };
        let id = user.id.clone();
        t.users.insert(id.clone(), user);
        Some(id)
    }

    /// Makes `user` a member of `group` directly (not counted); false if
    /// the tenant, group or user is unknown.
    pub fn add_group_member(&self, tenant: &str, group: &str, user: &str) -> bool {
        let mut dir = lock(&self.shared.dir);
        let Some(t) = dir.tenants.get_mut(tenant) else {
            return false;
        };
        if !t.users.contains_key(user) {
            return false;
        }
        match t.groups.get_mut(group) {
            Some(g) => {
                g.members.insert(user.to_owned());
                true
            }
            None => false,
        }
    }

    /// Makes `user` a member of a directory role (by role template id);
    /// false if the tenant or user is unknown.
    pub fn assign_directory_role(&self, tenant: &str, role_template_id: &str, user: &str) -> bool {
        let mut dir = lock(&self.shared.dir);
        let Some(t) = dir.tenants.get_mut(tenant) else {
            return false;
        };
        if !t.users.contains_key(user) {
            return false;
        }
        t.roles
            .entry(role_template_id.to_owned())
            .or_default()
            .insert(user.to_owned());
        true
    }

    /// The user (by id or UPN) with every property the emulator keeps, in
    /// Graph's names, whatever `$select` a client would need.
    pub fn user(&self, tenant: &str, id_or_upn: &str) -> Option<Value> {
        let dir = lock(&self.shared.dir);
        let t = dir.tenants.get(tenant)?;
        let id = t.user_id(id_or_upn)?;
        t.users.get(&id).map(User::json)
    }

    /// The ids of a group's members.
    pub fn group_members(&self, tenant: &str, group: &str) -> Vec<String> {
        lock(&self.shared.dir)
            .tenants
            .get(tenant)
            .and_then(|t| t.groups.get(group))
            .map(|g| g.members.iter().cloned().collect())
            .unwrap_or_default()
    }

    /// The status of a GDAP relationship, whichever partner holds it.
    pub fn gdap_status(&self, id: &str) -> Option<String> {
        lock(&self.shared.dir)
            .relationships
            .get(id)
            .map(|r| r.status.clone())
    }

    /// The customer's admin approves relationship `id` (it must be
    /// `approvalPending`); answers whether it became `active`.
    pub fn approve_gdap(&self, id: &str) -> bool {
        tenants::approve(&self.shared, id)
    }

    /// Knob: the customer's admin accepts every relationship locked for
    /// approval from now on, `delay` after the lock (`Duration::ZERO`: at
    /// once); `None` (the default) leaves it to [`Self::approve_gdap`].
    pub fn set_auto_accept_gdap(&self, delay: Option<std::time::Duration>) {
        *lock(&self.shared.auto_accept_gdap) = delay;
    }

    /// The tenant's verified domains, its default (the first) first.
    pub fn domains(&self, tenant: &str) -> Vec<String> {
        lock(&self.shared.dir)
            .tenants
            .get(tenant)
            .map(|t| t.domains.clone())
            .unwrap_or_default()
    }

    /// Completes every requested termination (`terminationRequested →
    /// terminated`), as Microsoft does shortly after the request; answers
    /// how many.
    pub fn finish_terminations(&self) -> usize {
        let mut dir = lock(&self.shared.dir);
        let mut n = 0;
        for r in dir.relationships.values_mut() {
            if r.status == "terminationRequested" {
                r.set_status("terminated");
                n += 1;
            }
        }
        n
    }

    /// Seeds what a previous provider leaves in customer `tenant`: its own
    /// partner tenant `partner_tenant_id` called `partner_name`, an active
    /// GDAP relationship with the customer, and a Global Administrator
    /// account `{slug}-admin@{customer's first domain}`. `None` if the
    /// customer is unknown.
    pub fn seed_previous_provider(
        &self,
        tenant: &str,
        partner_tenant_id: &str,
        partner_name: &str,
    ) -> Option<PreviousProvider> {
        self.add_partner_tenant(partner_tenant_id, partner_name);
        let (customer_name, domain) = {
            let dir = lock(&self.shared.dir);
            let t = dir.tenants.get(tenant)?;
            (t.name.clone(), t.domains.first()?.clone())
        };
        let slug: String = partner_name
            .chars()
            .filter(char::is_ascii_alphanumeric)
            .collect::<String>()
            .to_ascii_lowercase();
        let admin_user_id = self.add_user(
            tenant,
            &format!("{slug}-admin@{domain}"),
            &format!("{partner_name} admin"),
        )?;
        self.assign_directory_role(tenant, GLOBAL_ADMINISTRATOR, &admin_user_id);
        let now = now_rfc3339();
        let relationship = Relationship {
            id: format!("{}-{}", guid(), guid()),
            partner_tenant: partner_tenant_id.to_owned(),
            customer_tenant: tenant.to_owned(),
            customer_name,
            display_name: format!("{partner_name} support"),
            duration: "P730D".to_owned(),
            auto_extend: "PT0S".to_owned(),
            roles: vec![GLOBAL_ADMINISTRATOR.to_owned()],
            status: "active".to_owned(),
            created: now.clone(),
            modified: now.clone(),
            activated: Some(now),
            version: 1,
            assignments: Vec::new(),
        };
        let relationship_id = relationship.id.clone();
        lock(&self.shared.dir)
            .relationships
            .insert(relationship_id.clone(), relationship);
        Some(PreviousProvider {
            partner_tenant_id: partner_tenant_id.to_owned(),
            relationship_id,
            admin_user_id,
        })
    }
}
