//! The shared simulator state and its Rust API (used by the HTTP handlers and by embedders).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, RwLock};
use std::time::Duration;

use axum::http::HeaderName;
use chrono::Utc;
use tokio_util::sync::CancellationToken;

use super::SimConfig;
use super::faults::Faults;
use super::state::{ChangeRecord, Store, TicketView, Transition, TransitionError};
use super::stats::{Counters, DiffGauge, Stats, TenantStats};
use super::status::Status;

/// Locks a mutex, ignoring poisoning (a panicked holder leaves counters usable).
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn read<T>(m: &RwLock<T>) -> std::sync::RwLockReadGuard<'_, T> {
    m.read().unwrap_or_else(PoisonError::into_inner)
}

fn write<T>(m: &RwLock<T>) -> std::sync::RwLockWriteGuard<'_, T> {
    m.write().unwrap_or_else(PoisonError::into_inner)
}

/// One S-360 organization as TIXnGO sees it.
pub(crate) struct Tenant {
    /// Its own faults, replacing the global ones for it.
    pub(crate) faults: Mutex<Option<Faults>>,
    /// Its tickets and diff log (one mutex per tenant keeps contention local).
    pub(crate) store: Mutex<Store>,
    /// Its diff calls in progress.
    pub(crate) diff: DiffGauge,
}

/// A registered tenant: its key and state.
struct TenantEntry {
    /// The API key its calls must carry (never logged).
    api_key: String,
    /// Its state, shared with calls in progress.
    state: Arc<Tenant>,
}

/// State shared by every handle and handler.
pub(crate) struct Inner {
    /// Header carrying the API key.
    pub(crate) api_key_header: HeaderName,
    /// Most items accepted in one batch call.
    pub(crate) max_batch: usize,
    /// How long a simulated timeout hangs.
    pub(crate) hang: Duration,
    /// Tenants by name.
    tenants: RwLock<HashMap<String, TenantEntry>>,
    /// Faults for tenants without their own.
    global_faults: RwLock<Faults>,
    /// Global counters.
    pub(crate) counters: Counters,
    /// Cancelled when the server stops: releases hanging calls and stops serving.
    pub(crate) shutdown: CancellationToken,
}

/// A cheaply cloneable handle to a TIXnGO simulator (an `Arc` inside).
#[derive(Clone)]
pub struct Simulator {
    /// The shared state.
    pub(crate) inner: Arc<Inner>,
}

impl std::fmt::Debug for Simulator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Simulator")
            .field("tenants", &self.tenant_names())
            .finish_non_exhaustive()
    }
}

/// Outcome of checking a call's credentials.
pub(crate) enum Auth {
    /// The tenant exists and the key matches.
    Ok(Arc<Tenant>),
    /// No key header.
    MissingKey,
    /// Unknown tenant or wrong key (not told apart, on purpose).
    Invalid,
}

impl Simulator {
    /// A simulator with the configured tenants and global faults.
    pub fn new(config: SimConfig) -> Self {
        let sim = Simulator {
            inner: Arc::new(Inner {
                api_key_header: config.api_key_header,
                max_batch: config.max_batch.max(1),
                hang: config.hang,
                tenants: RwLock::new(HashMap::new()),
                global_faults: RwLock::new(config.faults),
                counters: Counters::new(),
                shutdown: CancellationToken::new(),
            }),
        };
        for t in &config.tenants {
            sim.add_tenant(&t.org, &t.api_key);
        }
        sim
    }

    /// Registers a tenant, or changes its API key (its tickets are kept).
    pub fn add_tenant(&self, org: &str, api_key: &str) {
        let mut tenants = write(&self.inner.tenants);
        match tenants.get_mut(org) {
            Some(entry) => entry.api_key = api_key.to_owned(),
            None => {
                tenants.insert(
                    org.to_owned(),
                    TenantEntry {
                        api_key: api_key.to_owned(),
                        state: Arc::new(Tenant {
                            faults: Mutex::new(None),
                            store: Mutex::new(Store::new()),
                            diff: DiffGauge::default(),
                        }),
                    },
                );
            }
        }
    }

    /// Whether a tenant is registered.
    pub fn has_tenant(&self, org: &str) -> bool {
        read(&self.inner.tenants).contains_key(org)
    }

    /// Registered tenant names, sorted.
    pub fn tenant_names(&self) -> Vec<String> {
        let mut names: Vec<String> = read(&self.inner.tenants).keys().cloned().collect();
        names.sort();
        names
    }

    pub(crate) fn tenant(&self, org: &str) -> Option<Arc<Tenant>> {
        read(&self.inner.tenants).get(org).map(|e| e.state.clone())
    }

    pub(crate) fn authenticate(&self, org: &str, key: Option<&[u8]>) -> Auth {
        let Some(key) = key else {
            return Auth::MissingKey;
        };
        match read(&self.inner.tenants).get(org) {
            Some(e) if e.api_key.as_bytes() == key => Auth::Ok(e.state.clone()),
            _ => Auth::Invalid,
        }
    }

    /// Sets faults globally (`None`) or for one tenant. Returns false (and changes nothing) when
    /// the tenant is unknown.
    pub fn set_faults(&self, tenant: Option<&str>, faults: Faults) -> bool {
        match tenant {
            None => {
                *write(&self.inner.global_faults) = faults;
                true
            }
            Some(org) => match self.tenant(org) {
                Some(t) => {
                    *lock(&t.faults) = Some(faults);
                    true
                }
                None => false,
            },
        }
    }

    /// Global faults (`None`), or a tenant's own faults (`None` when it has none or is unknown).
    pub fn faults(&self, tenant: Option<&str>) -> Option<Faults> {
        match tenant {
            None => Some(read(&self.inner.global_faults).clone()),
            Some(org) => self.tenant(org).and_then(|t| lock(&t.faults).clone()),
        }
    }

    /// Clears global faults (`None`) or a tenant's own faults (it falls back to the global ones).
    /// Returns false when the tenant is unknown.
    pub fn clear_faults(&self, tenant: Option<&str>) -> bool {
        match tenant {
            None => {
                *write(&self.inner.global_faults) = Faults::none();
                true
            }
            Some(org) => match self.tenant(org) {
                Some(t) => {
                    *lock(&t.faults) = None;
                    true
                }
                None => false,
            },
        }
    }

    /// The faults that apply to a tenant's calls now.
    pub(crate) fn effective_faults(&self, tenant: &Tenant) -> Faults {
        if let Some(f) = lock(&tenant.faults).as_ref() {
            return f.clone();
        }
        read(&self.inner.global_faults).clone()
    }

    /// What the simulator knows about a ticket id of a tenant (the admin inspection view).
    pub fn ticket(&self, org: &str, ticket_id: &str) -> Option<TicketView> {
        let t = self.tenant(org)?;
        lock(&t.store).view(ticket_id)
    }

    /// A ticket's current status (`None` when unknown or never stored).
    pub fn status(&self, org: &str, ticket_id: &str) -> Option<Status> {
        self.ticket(org, ticket_id).and_then(|v| v.status)
    }

    /// Ids of a tenant's stored tickets, sorted (empty for an unknown tenant).
    pub fn ticket_ids(&self, org: &str) -> Vec<String> {
        self.tenant(org)
            .map(|t| lock(&t.store).ticket_ids())
            .unwrap_or_default()
    }

    /// A tenant's diff log from position `from` (0 = all).
    pub fn changes(&self, org: &str, from: usize) -> Vec<ChangeRecord> {
        self.tenant(org)
            .map(|t| lock(&t.store).changes_from(from))
            .unwrap_or_default()
    }

    /// A spectator-side status change (what a wallet or back office would do).
    pub fn transition(&self, org: &str, ticket_id: &str, to: Status) -> Result<Transition, TransitionError> {
        let t = self
            .tenant(org)
            .ok_or_else(|| TransitionError::UnknownTenant(org.to_owned()))?;
        lock(&t.store).transition(ticket_id, to, Utc::now())
    }

    /// Totals: requests per kind and HTTP status, tickets per status, per-tenant diff
    /// concurrency, faults injected.
    pub fn stats(&self) -> Stats {
        let mut stats = self.inner.counters.snapshot();
        let tenants: Vec<(String, Arc<Tenant>)> = read(&self.inner.tenants)
            .iter()
            .map(|(k, e)| (k.clone(), e.state.clone()))
            .collect();
        for (name, t) in tenants {
            let (counts, changes) = {
                let store = lock(&t.store);
                (*store.counts(), store.change_count())
            };
            let by_status = Status::ALL.iter().map(|s| (*s, counts[s.index()])).collect();
            for s in Status::ALL {
                *stats.tickets_by_status.entry(s).or_default() += counts[s.index()];
            }
            stats.tenants.insert(
                name,
                TenantStats {
                    diff_calls: t.diff.calls(),
                    diff_max_concurrent: t.diff.max(),
                    tickets: counts.iter().sum(),
                    tickets_by_status: by_status,
                    changes: changes as u64,
                },
            );
        }
        stats
    }

    /// Clears tickets, diff logs, counters and faults; keeps tenants and their keys.
    pub fn reset(&self) {
        let tenants: Vec<Arc<Tenant>> = read(&self.inner.tenants)
            .values()
            .map(|e| e.state.clone())
            .collect();
        for t in tenants {
            *lock(&t.store) = Store::new();
            *lock(&t.faults) = None;
            t.diff.reset();
        }
        *write(&self.inner.global_faults) = Faults::none();
        self.inner.counters.reset();
    }

    /// Most items accepted in one batch call.
    pub fn max_batch(&self) -> usize {
        self.inner.max_batch
    }

    /// Releases hanging calls (simulated timeouts) now and from now on, and stops any server
    /// started by [`super::spawn`] or [`super::serve`] for this simulator.
    pub fn shutdown(&self) {
        self.inner.shutdown.cancel();
    }

    /// Waits for a simulated timeout, or less if the simulator is shut down.
    pub(crate) async fn hang(&self) {
        tokio::select! {
            () = tokio::time::sleep(self.inner.hang) => {}
            () = self.inner.shutdown.cancelled() => {}
        }
    }
}
