//! The in-memory indexes of the tenants searched lately, bounded.
//!
//! Plaintext lives in an index only while it is useful: an index not
//! searched for [`CacheLimits::idle`] is dropped, and when more than
//! [`CacheLimits::max_tenants`] are held the least recently used goes.
//! Deleting a tenant evicts its index at once ([`IndexCache::evict`]).
//! Time is read through the caller's clock, so tests need no sleeping.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard};

use gatehouse_core::id::TenantId;
use time::{Duration, OffsetDateTime};

use crate::KbError;
use crate::index::TenantIndex;

/// How many indexes are kept, and for how long.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CacheLimits {
    /// The most tenants whose index is held at once.
    pub max_tenants: usize,
    /// An index unused for this long is dropped.
    pub idle: Duration,
}

impl Default for CacheLimits {
    fn default() -> Self {
        Self {
            max_tenants: 64,
            idle: Duration::minutes(15),
        }
    }
}

/// A tenant's index, shared between the searches and writes that use it.
pub type SharedIndex = Arc<Mutex<TenantIndex>>;

#[derive(Debug)]
struct Entry {
    index: SharedIndex,
    last_used: OffsetDateTime,
}

/// The indexes, by tenant.
#[derive(Debug, Default)]
pub struct IndexCache {
    limits: CacheLimits,
    entries: Mutex<HashMap<TenantId, Entry>>,
}

fn poisoned<T>(_: std::sync::PoisonError<T>) -> KbError {
    KbError::Index("the index cache lock is poisoned (a search panicked)".into())
}

/// Locks one tenant's index.
pub fn lock(index: &SharedIndex) -> Result<MutexGuard<'_, TenantIndex>, KbError> {
    index.lock().map_err(poisoned)
}

impl IndexCache {
    /// An empty cache with these limits.
    pub fn new(limits: CacheLimits) -> Self {
        Self {
            limits,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The limits.
    pub fn limits(&self) -> CacheLimits {
        self.limits
    }

    /// `tenant`'s index (a new, empty one if none is held), marked used at
    /// `now`. Drops idle indexes and, over capacity, the least recently
    /// used ones.
    pub fn get(&self, tenant: TenantId, now: OffsetDateTime) -> Result<SharedIndex, KbError> {
        let mut entries = self.entries.lock().map_err(poisoned)?;
        let idle = self.limits.idle;
        entries.retain(|id, entry| *id == tenant || now - entry.last_used < idle);
        let index = match entries.get_mut(&tenant) {
            Some(entry) => {
                entry.last_used = now;
                entry.index.clone()
            }
            None => {
                let index = Arc::new(Mutex::new(TenantIndex::new()?));
                entries.insert(
                    tenant,
                    Entry {
                        index: index.clone(),
                        last_used: now,
                    },
                );
                index
            }
        };
        while entries.len() > self.limits.max_tenants.max(1) {
            let oldest = entries
                .iter()
                .filter(|(id, _)| **id != tenant)
                .min_by_key(|(_, entry)| entry.last_used)
                .map(|(id, _)| *id);
            match oldest {
                Some(id) => {
                    entries.remove(&id);
                }
                None => break,
            }
        }
        Ok(index)
    }

    /// `tenant`'s index if one is held (without marking it used).
    pub fn peek(&self, tenant: TenantId) -> Result<Option<SharedIndex>, KbError> {
        let entries = self.entries.lock().map_err(poisoned)?;
        Ok(entries.get(&tenant).map(|e| e.index.clone()))
    }

    /// Drops `tenant`'s index (its tenant was deleted, or it is suspect).
    pub fn evict(&self, tenant: TenantId) -> Result<(), KbError> {
        self.entries.lock().map_err(poisoned)?.remove(&tenant);
        Ok(())
    }

    /// Drops every index unused since `now - idle`; returns how many.
    pub fn evict_idle(&self, now: OffsetDateTime) -> Result<usize, KbError> {
        let mut entries = self.entries.lock().map_err(poisoned)?;
        let before = entries.len();
        let idle = self.limits.idle;
        entries.retain(|_, entry| now - entry.last_used < idle);
        Ok(before - entries.len())
    }

    /// How many tenants' indexes are held.
    pub fn len(&self) -> usize {
        self.entries.lock().map(|e| e.len()).unwrap_or_default()
    }

    /// Whether no index is held.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tenant(n: i64) -> TenantId {
        TenantId::generate(OffsetDateTime::UNIX_EPOCH + Duration::seconds(n))
    }

    #[test]
    fn idle_and_least_recently_used_indexes_are_dropped() {
        let cache = IndexCache::new(CacheLimits {
            max_tenants: 2,
            idle: Duration::minutes(10),
        });
        let t0 = OffsetDateTime::UNIX_EPOCH;
        let (a, b, c) = (tenant(1), tenant(2), tenant(3));
        let first = cache.get(a, t0).unwrap();
        assert!(
            Arc::ptr_eq(&first, &cache.get(a, t0).unwrap()),
            "one index per tenant"
        );
        cache.get(b, t0 + Duration::minutes(1)).unwrap();
        cache.get(a, t0 + Duration::minutes(2)).unwrap();
        // Over capacity: b, the least recently used, goes.
        cache.get(c, t0 + Duration::minutes(3)).unwrap();
        assert_eq!(cache.len(), 2);
        assert!(cache.peek(b).unwrap().is_none());
        assert!(cache.peek(a).unwrap().is_some());
        // Idle for ten minutes: gone.
        assert_eq!(cache.evict_idle(t0 + Duration::minutes(12)).unwrap(), 1);
        assert!(cache.peek(a).unwrap().is_none());
        assert!(cache.peek(c).unwrap().is_some());
        cache.evict(c).unwrap();
        assert!(cache.is_empty());
    }
}
