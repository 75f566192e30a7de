//! The storage port of the SCIM service, and the request logic over it.
//!
//! A store implements [`ScimBackend`]: create, read, replace and delete
//! attributes documents, with a version per resource, and hand out
//! candidates for a list. [`Service`] does the protocol around it: it
//! validates bodies, applies PATCH, computes uniqueness keys, checks
//! `If-Match`, filters, sorts, pages and projects, and renders resources
//! with `schemas`, `id` and `meta`. The HTTP routes call [`Service`] and
//! turn a [`ScimError`] into a response with [`ScimError::to_json`].
//!
//! [`MemoryBackend`] keeps everything in a map; it is the reference the
//! store's conformance tests compare with, and what the tests here use.

use std::collections::BTreeMap;
use std::future::Future;
use std::sync::Mutex;

use serde_json::{Map, Value};
use time::OffsetDateTime;

use crate::error::ScimError;
use crate::filter::Filter;
use crate::list::{ListQuery, ListResponse, list_resources};
use crate::meta::{Meta, etag_list_matches, location, render};
use crate::patch::{PatchRequest, apply_patch};
use crate::project::Projection;
use crate::schema::ResourceType;
use crate::validate::{UniqueKey, Write, prepare_write, unique_keys};

/// A resource as a store keeps it.
#[derive(Debug, Clone, PartialEq)]
pub struct Stored {
    /// The id the store assigned.
    pub id: String,
    /// Incremented on every change; the ETag is `W/"<version>"`.
    pub version: u64,
    /// When it was created.
    pub created: OffsetDateTime,
    /// When it last changed.
    pub last_modified: OffsetDateTime,
    /// The attributes document (see [`crate::validate`]).
    pub attributes: Value,
}

/// What a SCIM store must do. Every method is scoped to one tenant by the
/// implementor (one backend value per tenant, or a tenant held inside).
///
/// Errors are [`ScimError`]s: a store reports a taken uniqueness key as
/// [`ScimError::uniqueness`] and a lost version race as
/// [`ScimError::precondition_failed`].
pub trait ScimBackend: Send + Sync {
    /// Stores a new resource, unless one of `unique` is taken (409).
    fn create(
        &self,
        rt: &ResourceType,
        attributes: Value,
        unique: Vec<UniqueKey>,
    ) -> impl Future<Output = Result<Stored, ScimError>> + Send;

    /// The resource with this id, if any.
    fn get(
        &self,
        rt: &ResourceType,
        id: &str,
    ) -> impl Future<Output = Result<Option<Stored>, ScimError>> + Send;

    /// Replaces a resource if its version is still `expected_version`
    /// (else 412) and none of `unique` is taken by another (else 409).
    /// A missing resource is 404.
    fn replace(
        &self,
        rt: &ResourceType,
        id: &str,
        expected_version: u64,
        attributes: Value,
        unique: Vec<UniqueKey>,
    ) -> impl Future<Output = Result<Stored, ScimError>> + Send;

    /// Deletes a resource; `false` if there was none.
    fn delete(
        &self,
        rt: &ResourceType,
        id: &str,
    ) -> impl Future<Output = Result<bool, ScimError>> + Send;

    /// Every resource that may match `filter` (a superset is fine: the
    /// service applies the filter exactly). A store uses the filter to
    /// narrow with its indexes, e.g. on `userName eq`.
    fn candidates(
        &self,
        rt: &ResourceType,
        filter: Option<&Filter>,
    ) -> impl Future<Output = Result<Vec<Stored>, ScimError>> + Send;
}

/// The SCIM request logic of one tenant over a backend.
#[derive(Debug)]
pub struct Service<B> {
    backend: B,
    base_url: String,
    max_results: usize,
}

impl<B: ScimBackend> Service<B> {
    /// A service answering under `base_url` (the tenant's `/scim/v2/{tenant}`).
    pub fn new(backend: B, base_url: impl Into<String>, max_results: usize) -> Self {
        Self {
            backend,
            base_url: base_url.into().trim_end_matches('/').to_owned(),
            max_results,
        }
    }

    /// The backend.
    pub fn backend(&self) -> &B {
        &self.backend
    }

    /// The rendered resource.
    pub fn render(&self, rt: &ResourceType, stored: &Stored) -> Value {
        let meta = Meta {
            resource_type: rt.id.clone(),
            created: stored.created,
            last_modified: stored.last_modified,
            location: location(&self.base_url, rt, &stored.id),
            version: stored.version,
        };
        render(rt, &stored.id, &stored.attributes, &meta)
    }

    /// POST: 201 with the rendered resource, projected (RFC 7644 §3.9
    /// allows `attributes` on every method; `returned: never` is always
    /// left out).
    pub async fn create(
        &self,
        rt: &ResourceType,
        body: &Value,
        projection: &Projection,
    ) -> Result<Value, ScimError> {
        let attributes = prepare_write(rt, body, Write::Create)?;
        let unique = unique_keys(rt, &attributes);
        let stored = self.backend.create(rt, attributes, unique).await?;
        Ok(projection.apply(rt, &self.render(rt, &stored)))
    }

    /// GET one resource, projected. `If-None-Match` is the caller's: it
    /// compares the rendered `meta.version`.
    pub async fn get(
        &self,
        rt: &ResourceType,
        id: &str,
        projection: &Projection,
    ) -> Result<Value, ScimError> {
        let stored = self.load(rt, id).await?;
        Ok(projection.apply(rt, &self.render(rt, &stored)))
    }

    /// PUT: 200 with the rendered resource, projected.
    pub async fn replace(
        &self,
        rt: &ResourceType,
        id: &str,
        body: &Value,
        if_match: Option<&str>,
        projection: &Projection,
    ) -> Result<Value, ScimError> {
        let mut attempt = 0;
        loop {
            let stored = self.load(rt, id).await?;
            check_if_match(if_match, stored.version)?;
            let attributes = prepare_write(
                rt,
                body,
                Write::Replace {
                    existing: &stored.attributes,
                },
            )?;
            match self
                .write(rt, id, stored.version, attributes, projection)
                .await
            {
                Err(err) if retry_stale(&err, if_match, &mut attempt) => continue,
                answer => return answer,
            }
        }
    }

    /// PATCH: 200 with the rendered resource, projected (RFC 7644 §3.5.2
    /// allows 204; returning the resource is what clients expect). A PATCH
    /// that changes nothing keeps the version.
    pub async fn patch(
        &self,
        rt: &ResourceType,
        id: &str,
        body: &Value,
        if_match: Option<&str>,
        projection: &Projection,
    ) -> Result<Value, ScimError> {
        let request = PatchRequest::from_json(body)?;
        let mut attempt = 0;
        loop {
            let stored = self.load(rt, id).await?;
            check_if_match(if_match, stored.version)?;
            let attributes = apply_patch(rt, &stored.attributes, &request)?;
            if writable(rt, &attributes) == writable(rt, &stored.attributes) {
                return Ok(projection.apply(rt, &self.render(rt, &stored)));
            }
            match self
                .write(rt, id, stored.version, attributes, projection)
                .await
            {
                Err(err) if retry_stale(&err, if_match, &mut attempt) => continue,
                answer => return answer,
            }
        }
    }

    /// Replaces the stored attributes of version `version` (with their
    /// uniqueness keys) and answers the new resource, projected.
    async fn write(
        &self,
        rt: &ResourceType,
        id: &str,
        version: u64,
        attributes: Value,
        projection: &Projection,
    ) -> Result<Value, ScimError> {
        let unique = unique_keys(rt, &attributes);
        let new = self
            .backend
            .replace(rt, id, version, attributes, unique)
            .await?;
        Ok(projection.apply(rt, &self.render(rt, &new)))
    }

    /// DELETE: 204.
    pub async fn delete(
        &self,
        rt: &ResourceType,
        id: &str,
        if_match: Option<&str>,
    ) -> Result<(), ScimError> {
        if if_match.is_some() {
            let stored = self.load(rt, id).await?;
            check_if_match(if_match, stored.version)?;
        }
        if self.backend.delete(rt, id).await? {
            Ok(())
        } else {
            Err(not_found(rt, id))
        }
    }

    /// GET on the endpoint or `POST /.search`.
    pub async fn list(
        &self,
        rt: &ResourceType,
        query: &ListQuery,
    ) -> Result<ListResponse, ScimError> {
        let candidates = self.backend.candidates(rt, query.filter.as_ref()).await?;
        // Rendered one at a time as the filter reads them: each candidate
        // is dropped once rendered, and a non-match once tested, so an
        // unindexed filter over a large tenant holds the matches only.
        let rendered = candidates.into_iter().map(|s| self.render(rt, &s));
        list_resources(rt, rendered, query, self.max_results)
    }

    async fn load(&self, rt: &ResourceType, id: &str) -> Result<Stored, ScimError> {
        self.backend
            .get(rt, id)
            .await?
            .ok_or_else(|| not_found(rt, id))
    }
}

/// The document without its top-level readOnly attributes (such as a
/// User's `groups`, which a store may compute when it reads) and without
/// the readOnly sub-attributes of the others (such as a Group's
/// `members.display`): what a PATCH can change.
fn writable(rt: &ResourceType, attributes: &Value) -> Value {
    use crate::schema::Mutability::ReadOnly;
    let mut out = attributes.clone();
    if let Some(obj) = out.as_object_mut() {
        obj.retain(|name, _| {
            !rt.schema
                .attributes
                .iter()
                .any(|a| a.name.eq_ignore_ascii_case(name) && a.mutability == ReadOnly)
        });
        for (name, value) in obj.iter_mut() {
            let Some(def) = rt
                .schema
                .attributes
                .iter()
                .find(|a| a.name.eq_ignore_ascii_case(name))
            else {
                continue;
            };
            let read_only: Vec<&str> = def
                .sub_attributes
                .iter()
                .filter(|s| s.mutability == ReadOnly)
                .map(|s| s.name.as_str())
                .collect();
            if read_only.is_empty() {
                continue;
            }
            let items: Vec<&mut Value> = match value {
                Value::Array(items) => items.iter_mut().collect(),
                other => vec![other],
            };
            for item in items.into_iter().filter_map(Value::as_object_mut) {
                item.retain(|k, _| !read_only.iter().any(|r| r.eq_ignore_ascii_case(k)));
            }
        }
    }
    out
}

fn not_found(rt: &ResourceType, id: &str) -> ScimError {
    ScimError::not_found(format!("{} {id} not found", rt.name))
}

fn check_if_match(if_match: Option<&str>, version: u64) -> Result<(), ScimError> {
    match if_match {
        Some(h) if !etag_list_matches(h, version) => Err(ScimError::precondition_failed(
            "the resource has changed: If-Match does not name its current version",
        )),
        _ => Ok(()),
    }
}

type Clock = Box<dyn Fn() -> OffsetDateTime + Send + Sync>;

/// Resources by (type, id), each with its uniqueness keys, and who holds
/// each key (so that a write checks its keys without a scan).
#[derive(Default)]
struct Table {
    resources: BTreeMap<(String, String), (Stored, Vec<UniqueKey>)>,
    holders: std::collections::HashMap<(String, UniqueKey), String>,
}

impl Table {
    fn release(&mut self, rt: &ResourceType, keys: &[UniqueKey]) {
        for key in keys {
            self.holders.remove(&(rt.id.clone(), key.clone()));
        }
    }

    fn hold(&mut self, rt: &ResourceType, id: &str, keys: &[UniqueKey]) {
        for key in keys {
            self.holders
                .insert((rt.id.clone(), key.clone()), id.to_owned());
        }
    }
}

/// How many times a write without `If-Match` is applied again to a newer
/// version when another write got there first.
const STALE_RETRIES: u32 = 16;

/// Whether a write that lost a race (`412` from the backend's version
/// check) should be applied again to the newer version: only when the
/// client did not ask for a version (`If-Match`), which makes a PUT or
/// PATCH atomic from the client's side, as RFC 7644 §3.5 expects (two
/// clients adding members to one group both succeed). With `If-Match` the
/// `412` is the answer.
fn retry_stale(err: &ScimError, if_match: Option<&str>, attempt: &mut u32) -> bool {
    *attempt += 1;
    err.status() == 412 && if_match.is_none() && *attempt <= STALE_RETRIES
}

/// An in-memory backend: resources by type and id, with uniqueness keys.
pub struct MemoryBackend {
    inner: Mutex<Table>,
    next_id: Mutex<u64>,
    clock: Clock,
}

impl std::fmt::Debug for MemoryBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MemoryBackend").finish_non_exhaustive()
    }
}

impl MemoryBackend {
    /// An empty backend reading time from `clock`.
    pub fn new(clock: impl Fn() -> OffsetDateTime + Send + Sync + 'static) -> Self {
        Self {
            inner: Mutex::new(Table::default()),
            next_id: Mutex::new(0),
            clock: Box::new(clock),
        }
    }

    /// Edits a resource's stored attributes in place, without copying them:
    /// for edits that cannot break its schema or uniqueness (taking values
    /// out of a multi-valued attribute), where a copy, a patch and a full
    /// validation would cost as much as the resource is large. `edit`
    /// answers whether it changed anything; if it did, the version moves
    /// on. An `edit` that answers an error must have changed nothing. Refuses with `412` if `if_match` does not name the stored
    /// version. Answers the resource without the attribute `omit` (so that
    /// a large one is not copied for the answer either).
    pub fn edit_in_place(
        &self,
        rt: &ResourceType,
        id: &str,
        if_match: Option<&str>,
        edit: impl FnOnce(&mut Map<String, Value>) -> Result<bool, ScimError>,
        omit: &str,
    ) -> Result<Stored, ScimError> {
        let now = (self.clock)();
        let mut map = self.inner.lock().map_err(|_| poisoned())?;
        let Some((stored, _)) = map.resources.get_mut(&(rt.id.clone(), id.to_owned())) else {
            return Err(not_found(rt, id));
        };
        check_if_match(if_match, stored.version)?;
        let Some(attributes) = stored.attributes.as_object_mut() else {
            return Err(ScimError::new(
                500,
                None,
                "a stored resource is not an object",
            ));
        };
        if edit(attributes)? {
            stored.version += 1;
            stored.last_modified = now;
        }
        let kept: Map<String, Value> = attributes
            .iter()
            .filter(|(k, _)| !k.eq_ignore_ascii_case(omit))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        Ok(Stored {
            id: stored.id.clone(),
            version: stored.version,
            created: stored.created,
            last_modified: stored.last_modified,
            attributes: Value::Object(kept),
        })
    }

    /// The stored version of a resource, without copying it.
    pub fn version(&self, rt: &ResourceType, id: &str) -> Result<Option<u64>, ScimError> {
        let map = self.inner.lock().map_err(|_| poisoned())?;
        Ok(map
            .resources
            .get(&(rt.id.clone(), id.to_owned()))
            .map(|(s, _)| s.version))
    }

    fn taken(
        map: &Table,
        rt: &ResourceType,
        except: Option<&str>,
        unique: &[UniqueKey],
    ) -> Option<ScimError> {
        unique
            .iter()
            .find(|k| {
                map.holders
                    .get(&(rt.id.clone(), (*k).clone()))
                    .is_some_and(|holder| Some(holder.as_str()) != except)
            })
            .map(|k| {
                ScimError::uniqueness(format!("{} \"{}\" is already in use", k.attribute, k.value))
            })
    }
}

fn poisoned() -> ScimError {
    ScimError::new(500, None, "the in-memory store is unavailable")
}

impl ScimBackend for MemoryBackend {
    fn create(
        &self,
        rt: &ResourceType,
        attributes: Value,
        unique: Vec<UniqueKey>,
    ) -> impl Future<Output = Result<Stored, ScimError>> + Send {
        let result = (|| {
            let mut map = self.inner.lock().map_err(|_| poisoned())?;
            if let Some(e) = Self::taken(&map, rt, None, &unique) {
                return Err(e);
            }
            let mut next = self.next_id.lock().map_err(|_| poisoned())?;
            *next += 1;
            let now = (self.clock)();
            let stored = Stored {
                id: format!("{:08x}", *next),
                version: 1,
                created: now,
                last_modified: now,
                attributes,
            };
            map.hold(rt, &stored.id, &unique);
            map.resources
                .insert((rt.id.clone(), stored.id.clone()), (stored.clone(), unique));
            Ok(stored)
        })();
        std::future::ready(result)
    }

    fn get(
        &self,
        rt: &ResourceType,
        id: &str,
    ) -> impl Future<Output = Result<Option<Stored>, ScimError>> + Send {
        let result = self.inner.lock().map_err(|_| poisoned()).map(|map| {
            map.resources
                .get(&(rt.id.clone(), id.to_owned()))
                .map(|(s, _)| s.clone())
        });
        std::future::ready(result)
    }

    fn replace(
        &self,
        rt: &ResourceType,
        id: &str,
        expected_version: u64,
        attributes: Value,
        unique: Vec<UniqueKey>,
    ) -> impl Future<Output = Result<Stored, ScimError>> + Send {
        let result = (|| {
            let mut map = self.inner.lock().map_err(|_| poisoned())?;
            if let Some(e) = Self::taken(&map, rt, Some(id), &unique) {
                return Err(e);
            }
            let now = (self.clock)();
            let key = (rt.id.clone(), id.to_owned());
            let Some((stored, keys)) = map.resources.get_mut(&key) else {
                return Err(not_found(rt, id));
            };
            if stored.version != expected_version {
                return Err(ScimError::precondition_failed(
                    "the resource changed meanwhile",
                ));
            }
            stored.version += 1;
            stored.last_modified = now;
            stored.attributes = attributes;
            let answer = stored.clone();
            let released = std::mem::replace(keys, unique.clone());
            map.release(rt, &released);
            map.hold(rt, id, &unique);
            Ok(answer)
        })();
        std::future::ready(result)
    }

    fn delete(
        &self,
        rt: &ResourceType,
        id: &str,
    ) -> impl Future<Output = Result<bool, ScimError>> + Send {
        let result = self.inner.lock().map_err(|_| poisoned()).map(|mut map| {
            let removed = map.resources.remove(&(rt.id.clone(), id.to_owned()));
            if let Some((_, keys)) = &removed {
                map.release(rt, keys);
            }
            removed.is_some()
        });
        std::future::ready(result)
    }

    fn candidates(
        &self,
        rt: &ResourceType,
        _filter: Option<&Filter>,
    ) -> impl Future<Output = Result<Vec<Stored>, ScimError>> + Send {
        let result = self.inner.lock().map_err(|_| poisoned()).map(|map| {
            map.resources
                .iter()
                .filter(|((t, _), _)| *t == rt.id)
                .map(|(_, (s, _))| s.clone())
                .collect()
        });
        std::future::ready(result)
    }
}

/// A borrowed backend is a backend, so a [`Service`] can be made per
/// request over a store that lives longer.
impl<T: ScimBackend> ScimBackend for &T {
    fn create(
        &self,
        rt: &ResourceType,
        attributes: Value,
        unique: Vec<UniqueKey>,
    ) -> impl Future<Output = Result<Stored, ScimError>> + Send {
        (**self).create(rt, attributes, unique)
    }

    fn get(
        &self,
        rt: &ResourceType,
        id: &str,
    ) -> impl Future<Output = Result<Option<Stored>, ScimError>> + Send {
        (**self).get(rt, id)
    }

    fn replace(
        &self,
        rt: &ResourceType,
        id: &str,
        expected_version: u64,
        attributes: Value,
        unique: Vec<UniqueKey>,
    ) -> impl Future<Output = Result<Stored, ScimError>> + Send {
        (**self).replace(rt, id, expected_version, attributes, unique)
    }

    fn delete(
        &self,
        rt: &ResourceType,
        id: &str,
    ) -> impl Future<Output = Result<bool, ScimError>> + Send {
        (**self).delete(rt, id)
    }

    fn candidates(
        &self,
        rt: &ResourceType,
        filter: Option<&Filter>,
    ) -> impl Future<Output = Result<Vec<Stored>, ScimError>> + Send {
        (**self).candidates(rt, filter)
    }
}
