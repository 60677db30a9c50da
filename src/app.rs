//! `tixngo-bridge run`: starts the requested flows and waits for them to stop.

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::cli::{EXIT_CONFIG, EXIT_SOFTWARE, EXIT_UNAVAILABLE};
use crate::config::Settings;
use crate::engine::{self, EngineError, FlowHandler};
use crate::flows::{Flow, cancel::Cancel, control::Control, inject::Inject, status::Status};
use crate::orgs::{Organizations, OrganizationsError};

/// Why the bridge stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Organizations could not be set up.
    #[error(transparent)]
    Organizations(#[from] OrganizationsError),
    /// A flow could not start.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// A task panicked or another unexpected failure.
    #[error(transparent)]
    Other(#[from] anyhow::Error),
}

impl AppError {
    /// Process exit code for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            AppError::Organizations(_) => EXIT_CONFIG,
            AppError::Engine(EngineError::Unavailable { .. }) => EXIT_UNAVAILABLE,
            AppError::Other(_) => EXIT_SOFTWARE,
        }
    }
}

/// Runs `flows` until `shutdown` is cancelled. If one flow fails to start, the others are
/// stopped too and the first error is returned.
pub async fn run(settings: Settings, flows: Vec<Flow>, shutdown: CancellationToken) -> Result<(), AppError> {
    let settings = Arc::new(settings);
    let organizations = Arc::new(Organizations::new(&settings)?);
    let mut tasks = tokio::task::JoinSet::new();
    for flow in flows {
        let (settings, organizations, shutdown) = (settings.clone(), organizations.clone(), shutdown.clone());
        match flow {
            Flow::Inject => tasks.spawn(spawn_flow(Inject, settings, organizations, shutdown)),
            Flow::Cancel => tasks.spawn(spawn_flow(Cancel, settings, organizations, shutdown)),
            Flow::Control => tasks.spawn(spawn_flow(Control, settings, organizations, shutdown)),
            Flow::Status => tasks.spawn(spawn_flow(Status, settings, organizations, shutdown)),
        };
    }
    let mut first_error = None;
    while let Some(joined) = tasks.join_next().await {
        let result = match joined {
            Ok(result) => result.map_err(AppError::from),
            Err(join_error) => Err(AppError::Other(anyhow::anyhow!("flow task failed: {join_error}"))),
        };
        if let Err(error) = result {
            shutdown.cancel();
            first_error.get_or_insert(error);
        }
    }
    first_error.map_or(Ok(()), Err)
}

async fn spawn_flow<H: FlowHandler>(
    handler: H,
    settings: Arc<Settings>,
    organizations: Arc<Organizations>,
    shutdown: CancellationToken,
) -> Result<(), EngineError> {
    engine::run_flow(Arc::new(handler), settings, organizations, shutdown).await
}
