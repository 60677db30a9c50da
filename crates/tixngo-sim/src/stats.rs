//! Counters kept by the simulator and the statistics views built from them.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};

use serde::Serialize;

use super::status::Status;

/// The kind of a tenant API call.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    /// `POST {base}`.
    Inject,
    /// `POST {base}/cancellations`.
    Cancel,
    /// `POST {base}/controls`.
    Control,
    /// `GET {base}/{ticketId}`.
    Status,
    /// `GET {base}/diff`.
    Diff,
}

impl Kind {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Kind::Inject => "inject",
            Kind::Cancel => "cancel",
            Kind::Control => "control",
            Kind::Status => "status",
            Kind::Diff => "diff",
        }
    }
}

/// A count per call kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct KindCounts {
    /// Injection (`POST {base}`).
    pub inject: u64,
    /// Cancellation (`POST {base}/cancellations`).
    pub cancel: u64,
    /// Control (`POST {base}/controls`).
    pub control: u64,
    /// Single-ticket status (`GET {base}/{ticketId}`).
    pub status: u64,
    /// Diff (`GET {base}/diff`).
    pub diff: u64,
}

/// Request items naming one ticket, per call kind (every item counts, whatever its outcome).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct CallCounts {
    /// Injection items carrying this ticket id.
    pub inject: u64,
    /// Cancellation items carrying this ticket id.
    pub cancel: u64,
    /// Control items carrying this ticket id.
    pub control: u64,
    /// Status reads of this ticket id.
    pub status: u64,
}

impl CallCounts {
    pub(crate) fn add(&mut self, kind: Kind) {
        match kind {
            Kind::Inject => self.inject += 1,
            Kind::Cancel => self.cancel += 1,
            Kind::Control => self.control += 1,
            Kind::Status => self.status += 1,
            Kind::Diff => {}
        }
    }
}

/// Real state changes caused by API calls on one ticket (duplicates do not count).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct SideEffects {
    /// Times the ticket was created by an injection (0 or 1).
    pub created: u64,
    /// Times a cancellation deleted it (0 or 1: a second cancellation is a no-op).
    pub deleted: u64,
    /// Times a control moved it to CONTROLLED.
    pub controlled: u64,
}

/// Faults injected so far, per kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FaultCounts {
    /// Calls delayed by a non-zero latency.
    pub latency: u64,
    /// Calls answered 503 by `errorRate`.
    pub error: u64,
    /// Calls that hung by `timeoutRate`.
    pub timeout: u64,
    /// Calls answered 429 by `rateLimitRate`.
    pub rate_limit: u64,
    /// Calls answered 503 because of `outage`.
    pub outage: u64,
    /// Calls answered with the `redirect` fault's 3xx.
    #[serde(default)]
    pub redirect: u64,
}

/// Tenant API request counts: per call kind (counted on arrival, whatever the outcome) and
/// per HTTP status of the answer.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct RequestStats {
    /// All tenant API requests received.
    pub total: u64,
    /// Injection calls.
    pub inject: u64,
    /// Cancellation calls.
    pub cancel: u64,
    /// Control calls.
    pub control: u64,
    /// Single-ticket status reads.
    pub status: u64,
    /// Diff calls.
    pub diff: u64,
    /// Answers per HTTP status code (counted when the answer is sent).
    pub by_status: BTreeMap<u16, u64>,
}

/// Per-tenant statistics.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TenantStats {
    /// Authenticated diff calls received for this tenant.
    pub diff_calls: u64,
    /// Highest number of this tenant's diff calls in progress at one moment (faults' latency
    /// included): 1 proves a single active poller.
    pub diff_max_concurrent: u64,
    /// Tickets stored for this tenant.
    pub tickets: u64,
    /// Tickets per status for this tenant (every status listed).
    pub tickets_by_status: BTreeMap<Status, u64>,
    /// Change records in this tenant's diff log.
    pub changes: u64,
}

/// Totals over the whole simulator (`GET /admin/stats`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, serde::Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Stats {
    /// Tenant API requests.
    pub requests: RequestStats,
    /// Request items (tickets, cancellations, controls) received per batch kind.
    pub items: KindCounts,
    /// Tickets per status over all tenants (every status listed).
    pub tickets_by_status: BTreeMap<Status, u64>,
    /// Per tenant, by name.
    pub tenants: BTreeMap<String, TenantStats>,
    /// Faults injected.
    pub faults_injected: FaultCounts,
}

/// Which fault counter to bump.
#[derive(Debug, Clone, Copy)]
pub(crate) enum FaultKind {
    /// See [`FaultCounts::latency`].
    Latency,
    /// See [`FaultCounts::error`].
    Error,
    /// See [`FaultCounts::timeout`].
    Timeout,
    /// See [`FaultCounts::rate_limit`].
    RateLimit,
    /// See [`FaultCounts::outage`].
    Outage,
    /// See [`FaultCounts::redirect`].
    Redirect,
}

const KINDS: usize = 5;
const FAULTS: usize = 6;
const STATUS_CODES: usize = 600;

/// Lock-free global counters.
pub(crate) struct Counters {
    /// Requests per kind, indexed by `Kind as usize`.
    requests: [AtomicU64; KINDS],
    /// Items per kind.
    items: [AtomicU64; KINDS],
    /// Responses per HTTP status code (index = code).
    by_status: Vec<AtomicU64>,
    /// Faults per kind, indexed by `FaultKind as usize`.
    faults: [AtomicU64; FAULTS],
}

impl Counters {
    pub(crate) fn new() -> Self {
        Counters {
            requests: Default::default(),
            items: Default::default(),
            by_status: (0..STATUS_CODES).map(|_| AtomicU64::new(0)).collect(),
            faults: Default::default(),
        }
    }

    pub(crate) fn request(&self, kind: Kind) {
        self.requests[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn items(&self, kind: Kind, n: usize) {
        self.items[kind as usize].fetch_add(n as u64, Ordering::Relaxed);
    }

    pub(crate) fn response(&self, code: u16) {
        if let Some(c) = self.by_status.get(usize::from(code)) {
            c.fetch_add(1, Ordering::Relaxed);
        }
    }

    pub(crate) fn fault(&self, kind: FaultKind) {
        self.faults[kind as usize].fetch_add(1, Ordering::Relaxed);
    }

    pub(crate) fn reset(&self) {
        let all = self
            .requests
            .iter()
            .chain(&self.items)
            .chain(&self.by_status)
            .chain(&self.faults);
        for c in all {
            c.store(0, Ordering::Relaxed);
        }
    }

    fn kind_counts(arr: &[AtomicU64; KINDS]) -> KindCounts {
        let get = |k: Kind| arr[k as usize].load(Ordering::Relaxed);
        KindCounts {
            inject: get(Kind::Inject),
            cancel: get(Kind::Cancel),
            control: get(Kind::Control),
            status: get(Kind::Status),
            diff: get(Kind::Diff),
        }
    }

    /// Fills the global parts of [`Stats`] (tickets and tenants are added by the caller).
    pub(crate) fn snapshot(&self) -> Stats {
        let by_kind = Self::kind_counts(&self.requests);
        let by_status = self
            .by_status
            .iter()
            .enumerate()
            .filter_map(|(code, c)| {
                let n = c.load(Ordering::Relaxed);
                (n > 0).then(|| (u16::try_from(code).unwrap_or(u16::MAX), n))
            })
            .collect();
        let f = |k: FaultKind| self.faults[k as usize].load(Ordering::Relaxed);
        Stats {
            requests: RequestStats {
                total: by_kind.inject + by_kind.cancel + by_kind.control + by_kind.status + by_kind.diff,
                inject: by_kind.inject,
                cancel: by_kind.cancel,
                control: by_kind.control,
                status: by_kind.status,
                diff: by_kind.diff,
                by_status,
            },
            items: Self::kind_counts(&self.items),
            tickets_by_status: Status::ALL.iter().map(|s| (*s, 0)).collect(),
            tenants: BTreeMap::new(),
            faults_injected: FaultCounts {
                latency: f(FaultKind::Latency),
                error: f(FaultKind::Error),
                timeout: f(FaultKind::Timeout),
                rate_limit: f(FaultKind::RateLimit),
                outage: f(FaultKind::Outage),
                redirect: f(FaultKind::Redirect),
            },
        }
    }
}

/// Tracks a tenant's diff calls in progress, to prove a single active poller.
#[derive(Default)]
pub(crate) struct DiffGauge {
    /// Diff calls received.
    calls: AtomicU64,
    /// Diff calls in progress now.
    in_flight: AtomicU64,
    /// Highest `in_flight` seen.
    max: AtomicU64,
}

/// Marks one diff call in progress until dropped (so a cancelled call is released too).
pub(crate) struct DiffGuard<'a> {
    /// The gauge to release on drop.
    gauge: &'a DiffGauge,
}

impl DiffGauge {
    pub(crate) fn enter(&self) -> DiffGuard<'_> {
        self.calls.fetch_add(1, Ordering::Relaxed);
        let now = self.in_flight.fetch_add(1, Ordering::SeqCst) + 1;
        self.max.fetch_max(now, Ordering::SeqCst);
        DiffGuard { gauge: self }
    }

    pub(crate) fn calls(&self) -> u64 {
        self.calls.load(Ordering::Relaxed)
    }

    pub(crate) fn max(&self) -> u64 {
        self.max.load(Ordering::SeqCst)
    }

    pub(crate) fn reset(&self) {
        self.calls.store(0, Ordering::Relaxed);
        self.max.store(0, Ordering::SeqCst);
    }
}

impl Drop for DiffGuard<'_> {
    fn drop(&mut self) {
        self.gauge.in_flight.fetch_sub(1, Ordering::SeqCst);
    }
}
