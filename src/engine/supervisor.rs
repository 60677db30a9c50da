//! The connection supervisor every broker-consuming part runs under (flows, poller, notifier):
//! one session at a time; when a session dies (broker restart, closed connection or channel,
//! network cut), wait a capped, jittered back-off and start a fresh session, which re-declares
//! what it needs and restarts its consumers. lapin's own auto-recovery is not used (it has been
//! reported broken after broker restarts); owning this loop is what the tests exercise.

use std::future::Future;

use backon::{BackoffBuilder, ExponentialBuilder};

use super::EngineError;
use crate::broker::BrokerError;
use crate::context::Context;

/// How a session ended with an error.
#[derive(Debug)]
pub struct SessionFailure {
    /// Whether it got as far as consuming. A part whose broker cannot be reached before any
    /// session consumed stops with [`EngineError::Unavailable`] (exit 69) instead of retrying
    /// forever against a wrong URL.
    pub connected: bool,
    /// Why it ended.
    pub error: BrokerError,
}

impl SessionFailure {
    /// A failure while setting up (connect, declare, consume).
    pub fn setup(error: BrokerError) -> Self {
        Self {
            connected: false,
            error,
        }
    }

    /// A failure after consuming started.
    pub fn running(error: BrokerError) -> Self {
        Self {
            connected: true,
            error,
        }
    }
}

/// Runs `session` again and again until one returns `Ok` (shutdown) or shutdown is signalled.
/// `part` is registered for `/readyz` and marked unready whenever a session ends; the session
/// itself marks it ready once it consumes.
pub async fn supervise<F, Fut>(
    part: &'static str,
    context: &Context,
    mut session: F,
) -> Result<(), EngineError>
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), SessionFailure>>,
{
    let settings = &context.settings;
    context.health.register(part);
    let mut ever_connected = false;
    let mut delays = backoff(settings);
    loop {
        let result = session().await;
        context.health.set_ready(part, false);
        let failure = match result {
            Ok(()) => return Ok(()),
            Err(failure) => failure,
        };
        if failure.connected {
            ever_connected = true;
            // A session that got as far as consuming resets the back-off.
            delays = backoff(settings);
        }
        // Only a broker that cannot be reached at all stops the process at start-up (exit 69:
        // a wrong URL, credentials or TLS set-up should not retry forever). Anything after connecting (a
        // declaration refused, a nacked publish on a queue still electing its leader) is
        // retried like any later failure.
        let unreachable = matches!(
            failure.error,
            BrokerError::Connect { .. }
                | BrokerError::Timeout { .. }
                | BrokerError::TlsFile(_)
                | BrokerError::Runtime(_)
        );
        // A queue or exchange that exists with other arguments will not change by retrying:
        // at start-up, stop with exit 78 and the migration the error describes.
        if !ever_connected
            && let BrokerError::Declare(declare) = &failure.error
            && declare.inequivalent
        {
            tracing::error!(part, error = %crate::telemetry::chain(&failure.error), "topology conflict; stopping");
            return Err(EngineError::Topology {
                part,
                source: Box::new(failure.error),
            });
        }
        if !ever_connected && unreachable {
            return Err(EngineError::Unavailable {
                part,
                source: failure.error,
            });
        }
        context.metrics.reconnect(part);
        let delay = delays.next().unwrap_or(settings.amqp.reconnect_max_delay);
        tracing::warn!(
            part,
            error = %crate::telemetry::chain(&failure.error),
            retry_in = ?delay,
            "broker session ended; reconnecting"
        );
        tokio::select! {
            _ = context.shutdown.cancelled() => return Ok(()),
            _ = tokio::time::sleep(delay) => {}
        }
    }
}

fn backoff(settings: &crate::config::Settings) -> impl Iterator<Item = std::time::Duration> {
    ExponentialBuilder::default()
        .with_min_delay(settings.amqp.reconnect_min_delay)
        .with_max_delay(settings.amqp.reconnect_max_delay)
        .with_jitter()
        .without_max_times()
        .build()
}
