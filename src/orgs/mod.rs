//! The configured organizations, each with its TIXnGO client and breaker, built once at start-up.

use std::collections::HashMap;
use std::sync::Arc;

pub mod breaker;

use breaker::Breaker;

use tokio::sync::{OwnedSemaphorePermit, Semaphore, watch};

use crate::config::{Interface, InterfaceKind, Settings};
use crate::messages::InjectMessage;
use crate::tixngo::client::{ClientBuildError, HttpClientError, http_client_with_ca};
use crate::tixngo::template::{TemplateError, TicketTemplate};
use crate::tixngo::{TicketDocument, TixngoClient, mapping};

/// One S-360 organization and its TIXnGO interface.
#[derive(Debug)]
pub struct Organization {
    /// Validated interface configuration.
    pub interface: Interface,
    /// Client of the interface.
    pub client: TixngoClient,
    /// Outage protection for this organization only.
    pub breaker: Breaker,
    /// The compiled template of a `tixngo_with_template` interface; `None`: built-in mapping.
    pub template: Option<TicketTemplate>,
    /// Paces TIXnGO calls when the interface sets `rate_limit`.
    limiter: Option<governor::DefaultDirectRateLimiter>,
    /// This organization's `worker.max_concurrent_calls`, shared by every flow of the process:
    /// its TIXnGO cannot hold more calls than these, whatever it does.
    calls: Arc<Semaphore>,
    /// The process's `worker.max_total_calls`, shared by every organization.
    total_calls: Arc<Semaphore>,
    /// Ticks whenever a call slot is given back, so that batchers waiting for one look again.
    call_freed: Arc<watch::Sender<u64>>,
}

/// The right to make one TIXnGO call for one organization: one of its `max_concurrent_calls`
/// and one of the process's `max_total_calls`. Given back (and announced) when dropped.
#[derive(Debug)]
pub struct CallSlot {
    /// The organization's unit; an `Option` only so that `drop` can release it before announcing.
    organization: Option<OwnedSemaphorePermit>,
    /// The process's unit, likewise.
    total: Option<OwnedSemaphorePermit>,
    /// Where a freed slot is announced.
    freed: Arc<watch::Sender<u64>>,
}

impl Drop for CallSlot {
    fn drop(&mut self) {
        // Release first, then announce: a batcher woken by the tick must find the units free.
        self.organization.take();
        self.total.take();
        self.freed.send_modify(|n| *n = n.wrapping_add(1));
    }
}

impl Organization {
    /// S-360 organization code.
    pub fn code(&self) -> &str {
        &self.interface.organization
    }

    /// Waits until this organization's `rate_limit` allows one more TIXnGO call (at once when
    /// there is none).
    pub async fn call_permit(&self) {
        if let Some(limiter) = &self.limiter {
            limiter.until_ready().await;
        }
    }

    /// One call slot of this organization, if one is free now (and one of the process's).
    pub fn try_call_slot(&self) -> Option<CallSlot> {
        let organization = self.calls.clone().try_acquire_owned().ok()?;
        let total = self.total_calls.clone().try_acquire_owned().ok()?;
        Some(CallSlot {
            organization: Some(organization),
            total: Some(total),
            freed: self.call_freed.clone(),
        })
    }

    /// TIXnGO calls of this organization in progress in this process.
    pub fn calls_in_progress(&self, configured: usize) -> usize {
        configured.saturating_sub(self.calls.available_permits())
    }

    /// The TIXnGO ticket document for an injection, or why it cannot be built.
    pub fn render(&self, message: &InjectMessage) -> Result<TicketDocument, String> {
        if let Some(template) = &self.template {
            return template.render(message);
        }
        let json = serde_json::value::to_raw_value(&mapping::ticket(message))
            .map_err(|e| format!("cannot encode ticket: {e}"))?;
        Ok(TicketDocument {
            ticket_id: message.ticket_id.clone(),
            json,
        })
    }
}

/// Every configured organization, by code.
#[derive(Debug, Clone)]
pub struct Organizations {
    /// Organizations by S-360 code.
    by_code: HashMap<String, Arc<Organization>>,
    /// Ticks whenever any organization's call slot is given back.
    call_freed: Arc<watch::Sender<u64>>,
}

/// Why the organizations could not be set up.
#[derive(Debug, thiserror::Error)]
pub enum OrganizationsError {
    /// An HTTP client could not be built (TLS set-up, CA file).
    #[error(transparent)]
    Http(#[from] HttpClientError),
    /// One interface's client could not be built.
    #[error(transparent)]
    Client(#[from] ClientBuildError),
    /// A template could not be loaded (it changed since the configuration was checked).
    #[error(transparent)]
    Template(#[from] TemplateError),
}

impl Organizations {
    /// Builds every organization's client; interfaces trusting the same CA file (or none)
    /// share one connection pool.
    pub fn new(settings: &Settings) -> Result<Self, OrganizationsError> {
        let mut pools: HashMap<Option<&std::path::Path>, reqwest::Client> = HashMap::new();
        let mut by_code = HashMap::new();
        let total_calls = Arc::new(Semaphore::new(settings.worker.max_total_calls.max(1)));
        let call_freed = Arc::new(watch::Sender::new(0u64));
        for interface in settings.interfaces.values() {
            let ca_file = interface.ca_file.as_deref();
            let http = match pools.get(&ca_file) {
                Some(http) => http.clone(),
                None => {
                    let http = http_client_with_ca(&settings.tixngo, ca_file)?;
                    pools.insert(ca_file, http.clone());
                    http
                }
            };
            let client = TixngoClient::new(http, interface, &settings.tixngo)?;
            let breaker = Breaker::new(
                settings.tixngo.breaker_threshold,
                settings.tixngo.breaker_open_for,
            );
            let template = match (interface.kind, &interface.template) {
                (InterfaceKind::TixngoWithTemplate, Some(path)) => Some(TicketTemplate::load(path)?),
                _ => None,
            };
            // One call per period, no burst: a drained backlog arrives evenly.
            let limiter = interface
                .rate_limit
                .and_then(|rate| governor::Quota::with_period(std::time::Duration::from_secs_f64(1.0 / rate)))
                .map(governor::RateLimiter::direct);
            by_code.insert(
                interface.organization.clone(),
                Arc::new(Organization {
                    interface: interface.clone(),
                    client,
                    breaker,
                    template,
                    limiter,
                    calls: Arc::new(Semaphore::new(settings.worker.max_concurrent_calls.max(1))),
                    total_calls: total_calls.clone(),
                    call_freed: call_freed.clone(),
                }),
            );
        }
        Ok(Self { by_code, call_freed })
    }

    /// The organization with this code.
    pub fn get(&self, code: &str) -> Option<&Arc<Organization>> {
        self.by_code.get(code)
    }

    /// Changes whenever a call slot of any organization is given back.
    pub fn call_freed(&self) -> watch::Receiver<u64> {
        self.call_freed.subscribe()
    }

    /// All organizations.
    pub fn iter(&self) -> impl Iterator<Item = &Arc<Organization>> {
        self.by_code.values()
    }
}
