//! `tixngo-bridge run`: starts the requested parts (flows, status poller, notifier) and the
//! operations endpoints, and waits for them to stop.

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::sync::Arc;

use tokio::task::JoinSet;
use tokio_util::sync::CancellationToken;

use crate::config::Settings;
use crate::context::Context;
use crate::engine::{self, EngineError, FlowHandler};
use crate::exit::{EXIT_CONFIG, EXIT_SOFTWARE, EXIT_UNAVAILABLE};
use crate::flows::{Flow, cancel::Cancel, control::Control, inject::Inject, status::Status};
use crate::http::HttpError;
use crate::orgs::OrganizationsError;

/// What one `run` process can do; deployments pick a subset with `--flows`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Part {
    /// Consume one flow's work queue.
    Flow(Flow),
    /// Continuous status retrieval (one active poller per organization across replicas).
    Poller,
    /// Dead-letter digests by e-mail.
    Notifier,
}

impl Part {
    /// Every part a default `run` starts, given what is configured: all flows, the poller when
    /// `status_sync.enabled`, the notifier when enabled and an SMTP server is configured.
    pub fn defaults(settings: &Settings) -> Vec<Part> {
        let mut parts: Vec<Part> = Flow::ALL.iter().copied().map(Part::Flow).collect();
        if settings.status_sync.enabled {
            parts.push(Part::Poller);
        }
        if settings.notifier.enabled && settings.notifier.smtp.is_some() {
            parts.push(Part::Notifier);
        }
        parts
    }

    /// Name used on the command line, in logs and in `/readyz`.
    pub fn as_str(&self) -> &'static str {
        match self {
            Part::Flow(flow) => flow.as_str(),
            Part::Poller => "poller",
            Part::Notifier => "notifier",
        }
    }
}

impl fmt::Display for Part {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Part {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "poller" => Ok(Part::Poller),
            "notifier" => Ok(Part::Notifier),
            other => other.parse::<Flow>().map(Part::Flow).map_err(|_| {
                format!(
                    "unknown part {other:?}: expected inject, cancel, control, status, poller or notifier"
                )
            }),
        }
    }
}

/// Why the bridge stopped with an error.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// Organizations could not be set up.
    #[error(transparent)]
    Organizations(#[from] OrganizationsError),
    /// A part was asked for that the configuration cannot run.
    #[error("cannot run {part}: {reason}")]
    Unconfigured {
        /// The part.
        part: Part,
        /// What is missing.
        reason: String,
    },
    /// The operations endpoints could not start.
    #[error(transparent)]
    Http(#[from] HttpError),
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
            AppError::Organizations(_)
            | AppError::Unconfigured { .. }
            | AppError::Http(_)
            | AppError::Engine(EngineError::Topology { .. }) => EXIT_CONFIG,
            AppError::Engine(EngineError::Unavailable { .. }) => EXIT_UNAVAILABLE,
            AppError::Other(_) => EXIT_SOFTWARE,
        }
    }
}

/// A started bridge.
pub struct RunningApp {
    /// Where `/metrics`, `/healthz` and `/readyz` are served, when enabled.
    pub http_address: Option<SocketAddr>,
    /// Shared state (metrics, health) for callers that look inside, such as tests and `demo`.
    pub context: Context,
    /// The parts' tasks.
    tasks: JoinSet<Result<(), AppError>>,
}

impl RunningApp {
    /// Waits until every part stopped. If one fails, the others are stopped too and the first
    /// error is returned.
    pub async fn wait(mut self) -> Result<(), AppError> {
        let mut first_error = None;
        while let Some(joined) = self.tasks.join_next().await {
            let result = match joined {
                Ok(result) => result,
                Err(join_error) => Err(AppError::Other(anyhow::anyhow!("task failed: {join_error}"))),
            };
            if let Err(error) = result {
                self.context.shutdown.cancel();
                first_error.get_or_insert(error);
            }
        }
        first_error.map_or(Ok(()), Err)
    }
}

/// Starts `parts` and the operations endpoints; they run until `shutdown` is cancelled.
pub async fn start(
    settings: Settings,
    parts: Vec<Part>,
    shutdown: CancellationToken,
) -> Result<RunningApp, AppError> {
    let context = Context::new(settings, shutdown)?;
    if parts.contains(&Part::Notifier) && context.settings.notifier.smtp.is_none() {
        return Err(AppError::Unconfigured {
            part: Part::Notifier,
            reason: "no [notifier.smtp] server is configured".into(),
        });
    }
    let http_address = if context.settings.http.enabled {
        Some(crate::http::spawn(&context).await?)
    } else {
        None
    };
    let mut tasks = JoinSet::new();
    for part in dedup(parts) {
        let context = context.clone();
        match part {
            Part::Flow(Flow::Inject) => tasks.spawn(flow(Inject, context)),
            Part::Flow(Flow::Cancel) => tasks.spawn(flow(Cancel, context)),
            Part::Flow(Flow::Control) => tasks.spawn(flow(Control, context)),
            Part::Flow(Flow::Status) => tasks.spawn(flow(Status, context)),
            Part::Poller => {
                tasks.spawn(async move { crate::poller::run(context).await.map_err(AppError::from) })
            }
            Part::Notifier => {
                tasks.spawn(async move { crate::notifier::run(context).await.map_err(AppError::from) })
            }
        };
    }
    Ok(RunningApp {
        http_address,
        context,
        tasks,
    })
}

/// Runs `parts` until `shutdown` is cancelled.
pub async fn run(settings: Settings, parts: Vec<Part>, shutdown: CancellationToken) -> Result<(), AppError> {
    start(settings, parts, shutdown).await?.wait().await
}

fn dedup(parts: Vec<Part>) -> Vec<Part> {
    let mut seen = Vec::new();
    for part in parts {
        if !seen.contains(&part) {
            seen.push(part);
        }
    }
    seen
}

async fn flow<H: FlowHandler>(handler: H, context: Context) -> Result<(), AppError> {
    engine::run_flow(Arc::new(handler), context)
        .await
        .map_err(AppError::from)
}
