//! What every part of a running bridge shares.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::health::Health;
use crate::metrics::Metrics;
use crate::orgs::Organizations;

/// Shared state of one running bridge; cheap to clone.
#[derive(Debug, Clone)]
pub struct Context {
    /// Validated configuration.
    pub settings: Arc<Settings>,
    /// Organizations with their TIXnGO clients and breakers.
    pub organizations: Arc<Organizations>,
    /// This bridge's metrics registry.
    pub metrics: Arc<Metrics>,
    /// Readiness of each part, for `/readyz`.
    pub health: Arc<Health>,
    /// Cancelled on SIGTERM/SIGINT (or by a test): every loop watches it.
    pub shutdown: CancellationToken,
}

impl Context {
    /// Builds the organizations' clients and a fresh metrics registry.
    pub fn new(
        settings: Settings,
        shutdown: CancellationToken,
    ) -> Result<Self, crate::orgs::OrganizationsError> {
        let settings = Arc::new(settings);
        let organizations = Arc::new(Organizations::new(&settings)?);
        Ok(Self {
            metrics: Arc::new(Metrics::new(organizations.clone())),
            health: Arc::new(Health::default()),
            settings,
            organizations,
            shutdown,
        })
    }
}
