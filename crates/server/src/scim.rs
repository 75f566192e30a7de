//! The SCIM 2.0 service provider's server side: the per-request
//! [`TenantBackend`] that adapts the store's `ScimStore` port to
//! `gatehouse_scim::ScimBackend` (sealing, the blind index, audit), and the
//! tenants' SCIM bearer tokens.
//!
//! **Encryption at rest.** A resource's attributes document is sealed under
//! the tenant's data key, bound to its type and id. `password` is never
//! stored: Gatehouse does not keep SCIM passwords, so it is dropped before
//! sealing.
//!
//! **Blind index.** Uniqueness (`userName`) and the equality fast paths
//! (`userName eq`, `externalId eq`, Group `displayName eq`; `id eq` reads
//! by primary key) use `HMAC-SHA-256(K, type ‖ 0 ‖ attribute ‖ 0 ‖ value)`
//! of the normalised value (lower-cased unless `caseExact`), where `K` is
//! derived from the tenant's data key for this purpose only. The store sees
//! digests, never values; equal values give equal digests within one
//! tenant only.
//!
//! **Computed `groups`.** A user's read-only `groups` is not stored: group
//! member ids are in the blind index too (`members.value`), and reading a
//! user looks its groups up there (one indexed query per user rendered;
//! a list of many users reads the tenant's groups once instead).
//!
//! **Computed member fields.** A group's members keep only `value` (and
//! the `type` the client gave); `display` and `$ref` are filled in when
//! the group is read, from the member itself, so a renamed user shows its
//! new name (one read per member).
//!
//! **Referential integrity.** Deleting a user or a group removes it from
//! every group's `members` (each group rewritten and audited like a
//! PATCH), before the deletion and again after it, so a member added by a
//! racing write is caught too.
//!
//! **Scaling.** Any other filter (`co`, `sw`, `pr`, `or`, …) reads and opens
//! every resource of the type in the tenant and filters in memory: linear
//! in the tenant's size (see docs/scim.md).

use std::collections::HashMap;
use std::sync::Arc;

use gatehouse_core::audit::AuditRecord;
use gatehouse_core::clock::Clock;
use gatehouse_core::id::TenantId;
use gatehouse_core::scim::{
    IndexEntry, ScimToken, ScimWriteError, StoredScimResource, action, seal_context,
};
use gatehouse_core::store::{Store, StoreError};
use gatehouse_scim::backend::{ScimBackend, Stored};
use gatehouse_scim::filter::{CompValue, CompareOp, Filter};
use gatehouse_scim::validate::{UniqueKey, unique_keys};
use gatehouse_scim::{ResourceType, ScimError};
use gatehouse_vault::TenantSealer;
use hmac::{Hmac, Mac};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use time::OffsetDateTime;
use zeroize::Zeroizing;

/// The purpose the blind-index key is derived for.
const INDEX_PURPOSE: &str = "scim-blind-index";
/// The index attribute of a group's member ids (for a user's `groups`).
const MEMBER_VALUE: &str = "members.value";
/// What a SCIM token starts with.
pub const TOKEN_PREFIX: &str = "gh_scim_";
/// Above this many users, a list reads the tenant's groups once to fill in
/// `groups`, instead of one index query per user.
const GROUPS_BULK_ABOVE: usize = 8;
/// How often removing a deleted member from a group is retried when the
/// group changes meanwhile.
const MEMBER_REMOVAL_TRIES: usize = 5;

/// One tenant's SCIM resources, for the duration of a request.
pub struct TenantBackend {
    store: Arc<dyn Store>,
    tenant: TenantId,
    sealer: TenantSealer,
    /// The derived key, zero-padded to SHA-256's block (as HMAC pads it).
    index_key: Zeroizing<[u8; 64]>,
    actor: String,
    clock: Arc<dyn Clock>,
    /// The tenant's SCIM base URL, for the `$ref`s of members and groups.
    base_url: Option<String>,
}

impl std::fmt::Debug for TenantBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("TenantBackend")
            .field("tenant", &self.tenant)
            .finish_non_exhaustive()
    }
}

fn internal(context: &str, err: impl std::fmt::Display) -> ScimError {
    tracing::error!(%err, "SCIM store failure while {context}");
    ScimError::new(500, None, format!("internal error while {context}"))
}

fn store_error(context: &str) -> impl FnOnce(StoreError) -> ScimError + '_ {
    move |err| internal(context, err)
}

/// Microsecond precision, as both databases store times.
fn truncate(at: OffsetDateTime) -> OffsetDateTime {
    at.replace_nanosecond(at.nanosecond() / 1000 * 1000)
        .unwrap_or(at)
}

fn new_id() -> Result<String, ScimError> {
    let mut b = [0u8; 16];
    getrandom::fill(&mut b).map_err(|e| internal("making an id", e))?;
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let h = hex::encode(b);
    Ok(format!(
        "{}-{}-{}-{}-{}",
        &h[0..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..32]
    ))
}

/// Attributes that get a non-unique equality index, with whether the
/// value is compared exactly.
fn indexed(rt: &ResourceType) -> &'static [(&'static str, bool)] {
    if rt.id == "Group" {
        &[("externalId", true), ("displayName", false)]
    } else {
        &[("externalId", true)]
    }
}

impl TenantBackend {
    /// A backend for `tenant`, acting (in audit records) as `actor`.
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        sealer: TenantSealer,
        actor: String,
    ) -> Self {
        let mut index_key = Zeroizing::new([0u8; 64]);
        index_key[..32].copy_from_slice(sealer.derive_key(INDEX_PURPOSE).as_ref());
        Self {
            tenant: sealer.tenant(),
            index_key,
            store,
            sealer,
            actor,
            clock,
            base_url: None,
        }
    }

    /// Fills in `$ref`s under `base_url` (the tenant's `/scim/v2/{tenant}`).
    #[must_use]
    pub fn with_base_url(mut self, base_url: impl Into<String>) -> Self {
        self.base_url = Some(base_url.into().trim_end_matches('/').to_owned());
        self
    }

    /// The `$ref` of a resource, if the base URL is known.
    fn reference(&self, rt: &ResourceType, id: &str) -> Option<Value> {
        self.base_url
            .as_ref()
            .map(|base| Value::String(format!("{base}{}/{id}", rt.endpoint)))
    }

    /// The blind-index digest of a normalised value.
    pub fn digest(&self, rt: &ResourceType, attribute: &str, value: &str) -> Vec<u8> {
        let mut mac = <Hmac<Sha256> as hmac::digest::KeyInit>::new(&(*self.index_key).into());
        mac.update(rt.id.as_bytes());
        mac.update(&[0]);
        mac.update(attribute.as_bytes());
        mac.update(&[0]);
        mac.update(value.as_bytes());
        mac.finalize().into_bytes().to_vec()
    }

    fn index(
        &self,
        rt: &ResourceType,
        attributes: &Value,
        unique: &[UniqueKey],
    ) -> Vec<IndexEntry> {
        let mut entries: Vec<IndexEntry> = unique
            .iter()
            .map(|k| IndexEntry {
                attribute: k.attribute.clone(),
                digest: self.digest(rt, &k.attribute, &k.value),
                unique: true,
            })
            .collect();
        if rt.id == "Group"
            && let Some(Value::Array(members)) = attributes.get("members")
        {
            for value in members.iter().filter_map(|m| m.get("value")?.as_str()) {
                entries.push(IndexEntry {
                    attribute: MEMBER_VALUE.to_owned(),
                    digest: self.digest(rt, MEMBER_VALUE, value),
                    unique: false,
                });
            }
        }
        for (name, exact) in indexed(rt) {
            if let Some(Value::String(v)) = attributes.get(*name) {
                let v = if *exact { v.clone() } else { v.to_lowercase() };
                entries.push(IndexEntry {
                    attribute: (*name).to_owned(),
                    digest: self.digest(rt, name, &v),
                    unique: false,
                });
            }
        }
        entries
    }

    fn seal(
        &self,
        rt: &ResourceType,
        id: &str,
        mut attributes: Value,
    ) -> Result<(Vec<u8>, Value), ScimError> {
        if let Some(obj) = attributes.as_object_mut() {
            obj.remove("password");
            // Computed on read from the groups' members.
            obj.remove("groups");
            // Computed on read from the members themselves.
            if let Some(Value::Array(members)) = obj.get_mut("members") {
                for member in members.iter_mut().filter_map(Value::as_object_mut) {
                    member.remove("display");
                    member.remove("$ref");
                }
            }
        }
        let plain = Zeroizing::new(
            serde_json::to_vec(&attributes).map_err(|e| internal("encoding a resource", e))?,
        );
        let sealed = self
            .sealer
            .seal(&seal_context(&rt.id, id), &plain)
            .map_err(|e| internal("sealing a resource", e))?;
        Ok((sealed, attributes))
    }

    /// A user's read-only `groups`: the groups listing it as a member,
    /// found through the member index.
    async fn groups_of(&self, user: &str) -> Result<Value, ScimError> {
        let group = ResourceType::group();
        let digest = self.digest(group, MEMBER_VALUE, user);
        let rows = self
            .store
            .scim_list(self.tenant, &group.id, Some((MEMBER_VALUE, &digest)))
            .await
            .map_err(store_error("listing a user's groups"))?;
        let mut groups = Vec::with_capacity(rows.len());
        for row in rows {
            let opened = self.open_sealed(row)?;
            groups.push(self.group_entry(&opened));
        }
        Ok(Value::Array(groups))
    }

    /// A user's `groups` entry for a group it is a direct member of.
    fn group_entry(&self, group: &Stored) -> Value {
        let mut entry = serde_json::Map::new();
        entry.insert("value".into(), Value::String(group.id.clone()));
        if let Some(reference) = self.reference(ResourceType::group(), &group.id) {
            entry.insert("$ref".into(), reference);
        }
        if let Some(name) = group.attributes.get("displayName") {
            entry.insert("display".into(), name.clone());
        }
        entry.insert("type".into(), Value::String("direct".into()));
        Value::Object(entry)
    }

    /// Every group's `groups` entry, by member id: what a list of many
    /// users reads once instead of one index query per user.
    async fn groups_by_member(&self) -> Result<HashMap<String, Vec<Value>>, ScimError> {
        let rows = self
            .store
            .scim_list(self.tenant, &ResourceType::group().id, None)
            .await
            .map_err(store_error("listing groups"))?;
        let mut by_member: HashMap<String, Vec<Value>> = HashMap::new();
        for row in rows {
            let group = self.open_sealed(row)?;
            let entry = self.group_entry(&group);
            if let Some(Value::Array(members)) = group.attributes.get("members") {
                for id in members.iter().filter_map(|m| m.get("value")?.as_str()) {
                    by_member
                        .entry(id.to_owned())
                        .or_default()
                        .push(entry.clone());
                }
            }
        }
        Ok(by_member)
    }

    /// Fills in what is computed on read: a user's `groups`, a group's
    /// members' `display`, `$ref` and `type`.
    async fn complete(&self, rt: &ResourceType, opened: &mut Stored) -> Result<(), ScimError> {
        if rt.id == ResourceType::user().id {
            let groups = self.groups_of(&opened.id).await?;
            set_groups(&mut opened.attributes, groups);
        } else if rt.id == ResourceType::group().id {
            self.resolve_members(&mut opened.attributes).await?;
        }
        Ok(())
    }

    /// A group's members with `display` (the member's `displayName`, else
    /// a user's `userName`), `$ref` and, if the client gave none, `type`.
    /// A member that no longer exists is left as stored.
    async fn resolve_members(&self, attributes: &mut Value) -> Result<(), ScimError> {
        let Some(Value::Array(members)) = attributes.get_mut("members") else {
            return Ok(());
        };
        let (user, group) = (ResourceType::user(), ResourceType::group());
        for member in members.iter_mut().filter_map(Value::as_object_mut) {
            let Some(id) = member.get("value").and_then(Value::as_str) else {
                continue;
            };
            let id = id.to_owned();
            let declared_group = member
                .get("type")
                .and_then(Value::as_str)
                .is_some_and(|t| t.eq_ignore_ascii_case("Group"));
            let order = if declared_group {
                [group, user]
            } else {
                [user, group]
            };
            for rt in order {
                let Some(row) = self
                    .store
                    .scim_get(self.tenant, &rt.id, &id)
                    .await
                    .map_err(store_error("reading a group's member"))?
                else {
                    continue;
                };
                let found = self.open_sealed(row)?;
                let display = found
                    .attributes
                    .get("displayName")
                    .or_else(|| found.attributes.get("userName"))
                    .cloned();
                if let Some(display) = display {
                    member.insert("display".into(), display);
                }
                if let Some(reference) = self.reference(rt, &id) {
                    member.insert("$ref".into(), reference);
                }
                member
                    .entry("type")
                    .or_insert_with(|| Value::String(rt.id.clone()));
                break;
            }
        }
        Ok(())
    }

    /// Removes `id` from every group's `members` (a deleted user or
    /// group). Each group is rewritten through [`ScimBackend::replace`],
    /// so it gets a new version and an audit record; a group that changed
    /// meanwhile is read again.
    async fn remove_member_everywhere(&self, id: &str) -> Result<(), ScimError> {
        let group = ResourceType::group();
        let digest = self.digest(group, MEMBER_VALUE, id);
        for _ in 0..MEMBER_REMOVAL_TRIES {
            let rows = self
                .store
                .scim_list(self.tenant, &group.id, Some((MEMBER_VALUE, &digest)))
                .await
                .map_err(store_error("listing a member's groups"))?;
            if rows.is_empty() {
                return Ok(());
            }
            for row in rows {
                let current = self.open_sealed(row)?;
                let mut attributes = current.attributes;
                if let Some(obj) = attributes.as_object_mut() {
                    let emptied = match obj.get_mut("members") {
                        Some(Value::Array(members)) => {
                            members.retain(|m| m.get("value").and_then(Value::as_str) != Some(id));
                            members.is_empty()
                        }
                        _ => false,
                    };
                    if emptied {
                        obj.remove("members");
                    }
                }
                let unique = unique_keys(group, &attributes);
                match self
                    .replace(group, &current.id, current.version, attributes, unique)
                    .await
                {
                    // A group deleted or changed meanwhile: the next pass
                    // reads the index again.
                    Err(e) if e.status() == 404 || e.status() == 412 => {}
                    other => {
                        other?;
                    }
                }
            }
        }
        Err(ScimError::new(
            409,
            None,
            "the groups of this member kept changing; retry the deletion",
        ))
    }

    /// Opens a stored resource with what is computed on read.
    async fn open(
        &self,
        rt: &ResourceType,
        stored: StoredScimResource,
    ) -> Result<Stored, ScimError> {
        let mut opened = self.open_sealed(stored)?;
        self.complete(rt, &mut opened).await?;
        Ok(opened)
    }

    fn open_sealed(&self, stored: StoredScimResource) -> Result<Stored, ScimError> {
        let plain = self
            .sealer
            .open(
                &seal_context(&stored.resource_type, &stored.id),
                &stored.sealed,
            )
            .map_err(|e| internal("opening a resource", e))?;
        let attributes: Value =
            serde_json::from_slice(&plain).map_err(|e| internal("decoding a resource", e))?;
        Ok(Stored {
            id: stored.id,
            version: stored.version,
            created: stored.created_at,
            last_modified: stored.updated_at,
            attributes,
        })
    }

    fn audit(
        &self,
        at: OffsetDateTime,
        what: &str,
        rt: &ResourceType,
        id: &str,
        version: Option<u64>,
    ) -> AuditRecord {
        AuditRecord {
            at,
            tenant_id: Some(self.tenant),
            actor: self.actor.clone(),
            action: what.to_owned(),
            subject: id.to_owned(),
            details: match version {
                Some(v) => json!({"resource_type": rt.id, "version": v}),
                None => json!({"resource_type": rt.id}),
            },
        }
    }

    /// An equality filter this backend can answer from its index:
    /// `(attribute, normalised value)`, or the id.
    fn fast_path(rt: &ResourceType, filter: &Filter) -> Option<(&'static str, String)> {
        match filter {
            Filter::Compare {
                path,
                op: CompareOp::Eq,
                value: CompValue::String(v),
            } if path.sub_attr.is_none()
                && path
                    .uri
                    .as_deref()
                    .is_none_or(|u| u.eq_ignore_ascii_case(&rt.schema.id)) =>
            {
                let name = path.name.as_str();
                if name.eq_ignore_ascii_case("id") {
                    Some(("id", v.clone()))
                } else if name.eq_ignore_ascii_case("externalId") {
                    Some(("externalId", v.clone()))
                } else if rt.id == "User" && name.eq_ignore_ascii_case("userName") {
                    Some(("userName", v.to_lowercase()))
                } else if rt.id == "Group" && name.eq_ignore_ascii_case("displayName") {
                    Some(("displayName", v.to_lowercase()))
                } else {
                    None
                }
            }
            Filter::And(parts) => parts.iter().find_map(|p| Self::fast_path(rt, p)),
            _ => None,
        }
    }
}

/// Sets a user's computed `groups` (left out when there are none).
fn set_groups(attributes: &mut Value, groups: Value) {
    if let (Some(obj), Some(list)) = (attributes.as_object_mut(), groups.as_array())
        && !list.is_empty()
    {
        obj.insert("groups".into(), groups);
    }
}

fn write_error(rt: &ResourceType, id: &str, err: ScimWriteError) -> ScimError {
    match err {
        ScimWriteError::Taken(attribute) => ScimError::uniqueness(format!(
            "{attribute} is already in use by another {}",
            rt.name
        )),
        ScimWriteError::Stale => ScimError::precondition_failed("the resource changed meanwhile"),
        ScimWriteError::NotFound => ScimError::not_found(format!("{} {id} not found", rt.name)),
    }
}

impl ScimBackend for TenantBackend {
    async fn create(
        &self,
        rt: &ResourceType,
        attributes: Value,
        unique: Vec<UniqueKey>,
    ) -> Result<Stored, ScimError> {
        let id = new_id()?;
        let now = truncate(self.clock.now());
        let (sealed, attributes) = self.seal(rt, &id, attributes)?;
        let row = StoredScimResource {
            tenant_id: self.tenant,
            resource_type: rt.id.clone(),
            id: id.clone(),
            version: 1,
            created_at: now,
            updated_at: now,
            sealed,
        };
        let index = self.index(rt, &attributes, &unique);
        let audit = self.audit(now, action::CREATED, rt, &id, Some(1));
        self.store
            .scim_insert(&row, &index, &[audit])
            .await
            .map_err(store_error("storing a resource"))?
            .map_err(|e| write_error(rt, &id, e))?;
        let mut stored = Stored {
            id,
            version: 1,
            created: now,
            last_modified: now,
            attributes,
        };
        if rt.id == ResourceType::group().id {
            self.resolve_members(&mut stored.attributes).await?;
        }
        Ok(stored)
    }

    async fn get(&self, rt: &ResourceType, id: &str) -> Result<Option<Stored>, ScimError> {
        match self
            .store
            .scim_get(self.tenant, &rt.id, id)
            .await
            .map_err(store_error("reading a resource"))?
        {
            Some(stored) => Ok(Some(self.open(rt, stored).await?)),
            None => Ok(None),
        }
    }

    async fn replace(
        &self,
        rt: &ResourceType,
        id: &str,
        expected_version: u64,
        attributes: Value,
        unique: Vec<UniqueKey>,
    ) -> Result<Stored, ScimError> {
        let Some(current) = self
            .store
            .scim_get(self.tenant, &rt.id, id)
            .await
            .map_err(store_error("reading a resource"))?
        else {
            return Err(write_error(rt, id, ScimWriteError::NotFound));
        };
        if current.version != expected_version {
            return Err(write_error(rt, id, ScimWriteError::Stale));
        }
        let now = truncate(self.clock.now());
        let version = expected_version + 1;
        let (sealed, attributes) = self.seal(rt, id, attributes)?;
        let row = StoredScimResource {
            version,
            updated_at: now,
            sealed,
            ..current
        };
        let index = self.index(rt, &attributes, &unique);
        let audit = self.audit(now, action::UPDATED, rt, id, Some(version));
        self.store
            .scim_replace(&row, &index, &[audit])
            .await
            .map_err(store_error("replacing a resource"))?
            .map_err(|e| write_error(rt, id, e))?;
        let mut stored = Stored {
            id: row.id,
            version,
            created: row.created_at,
            last_modified: now,
            attributes,
        };
        self.complete(rt, &mut stored).await?;
        Ok(stored)
    }

    async fn delete(&self, rt: &ResourceType, id: &str) -> Result<bool, ScimError> {
        // Out of its groups first: if the deletion then fails, the client
        // retries it, and no group is left naming a member that is gone.
        let exists = self
            .store
            .scim_get(self.tenant, &rt.id, id)
            .await
            .map_err(store_error("reading a resource"))?
            .is_some();
        if !exists {
            return Ok(false);
        }
        self.remove_member_everywhere(id).await?;
        let audit = self.audit(truncate(self.clock.now()), action::DELETED, rt, id, None);
        let deleted = self
            .store
            .scim_delete(self.tenant, &rt.id, id, &[audit])
            .await
            .map_err(store_error("deleting a resource"))?;
        // A group that added it meanwhile.
        self.remove_member_everywhere(id).await?;
        Ok(deleted)
    }

    async fn candidates(
        &self,
        rt: &ResourceType,
        filter: Option<&Filter>,
    ) -> Result<Vec<Stored>, ScimError> {
        let rows = match filter.and_then(|f| Self::fast_path(rt, f)) {
            Some(("id", id)) => self
                .store
                .scim_get(self.tenant, &rt.id, &id)
                .await
                .map_err(store_error("reading a resource"))?
                .into_iter()
                .collect(),
            Some((attribute, value)) => {
                let digest = self.digest(rt, attribute, &value);
                self.store
                    .scim_list(self.tenant, &rt.id, Some((attribute, &digest)))
                    .await
                    .map_err(store_error("listing resources"))?
            }
            None => self
                .store
                .scim_list(self.tenant, &rt.id, None)
                .await
                .map_err(store_error("listing resources"))?,
        };
        let mut opened = Vec::with_capacity(rows.len());
        if rt.id == ResourceType::user().id && rows.len() > GROUPS_BULK_ABOVE {
            let mut by_member = self.groups_by_member().await?;
            for row in rows {
                let mut user = self.open_sealed(row)?;
                let groups = by_member.remove(&user.id).unwrap_or_default();
                set_groups(&mut user.attributes, Value::Array(groups));
                opened.push(user);
            }
        } else {
            for row in rows {
                opened.push(self.open(rt, row).await?);
            }
        }
        Ok(opened)
    }
}

/// A new SCIM token's secret, shown once.
#[derive(Debug)]
pub struct IssuedScimToken {
    /// The record (its hash only).
    pub token: ScimToken,
    /// The bearer secret: `gh_scim_` and 43 base64url characters.
    pub secret: Zeroizing<String>,
}

/// SHA-256 of a presented token.
pub fn token_hash(secret: &str) -> Vec<u8> {
    Sha256::digest(secret.as_bytes()).to_vec()
}

/// A fresh token secret (32 random bytes) and its record fields.
pub fn new_token_secret() -> Result<(String, Zeroizing<String>), String> {
    use base64::Engine;
    let mut bytes = Zeroizing::new([0u8; 32]);
    getrandom::fill(bytes.as_mut()).map_err(|e| e.to_string())?;
    let mut idb = [0u8; 8];
    getrandom::fill(&mut idb).map_err(|e| e.to_string())?;
    let secret = Zeroizing::new(format!(
        "{TOKEN_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes.as_ref())
    ));
    Ok((format!("scimtok_{}", hex::encode(idb)), secret))
}
