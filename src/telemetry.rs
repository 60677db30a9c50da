//! Logging set-up and error formatting.

use tracing_subscriber::EnvFilter;

use crate::cli::LogFormat;

/// Installs the global subscriber; `RUST_LOG` filters (default `info`).
pub fn init(format: LogFormat) {
    init_with_default(format, "info");
}

/// Installs the global subscriber; `RUST_LOG` filters, else `default` (the demo prints its own
/// progress and keeps the bridge's logs to errors).
pub fn init_with_default(format: LogFormat, default: &str) {
    use tracing_subscriber::Layer;
    use tracing_subscriber::layer::SubscriberExt;
    use tracing_subscriber::util::SubscriberInitExt;

    let filter = EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(default));
    let output = tracing_subscriber::fmt::layer().with_writer(std::io::stderr);
    let output = match format {
        LogFormat::Pretty => output.boxed(),
        LogFormat::Json => output.json().flatten_event(true).boxed(),
    };
    let _ = tracing_subscriber::registry()
        .with(filter)
        .with(tracing_subscriber::filter::filter_fn(|meta| {
            !may_hold_credentials(meta)
        }))
        .with(output)
        .try_init();
}

/// Events that would print a secret even at the level an operator asked for. lapin traces
/// every frame it writes (target `lapin::io_loop`, "will write to buffer"), and the first is
/// Connection.StartOk with the SASL PLAIN response: the AMQP user and password, as bytes.
/// Its errors and warnings stay; only its trace lines go.
///
/// lapin also logs every message the broker returns (an unroutable mandatory publish) at WARN
/// with the whole message, body and headers as byte lists: a spectator's name and e-mail. The
/// bridge logs each unroutable publish itself, without its body, so that target is dropped.
fn may_hold_credentials(meta: &tracing::Metadata<'_>) -> bool {
    (*meta.level() == tracing::Level::TRACE && meta.target() == "lapin::io_loop")
        || meta.target() == "lapin::returned_messages"
}

/// An error and its whole cause chain on one line: `a: b: c`.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
