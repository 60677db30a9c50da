//! Logging set-up and error formatting.

use tracing_subscriber::EnvFilter;

/// Log formats.
#[derive(Debug, Clone, Copy, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line, for log collectors.
    Json,
}

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
    // Colour only for a person at a terminal: no escape codes in files, pipes and log collectors
    // (nor with NO_COLOR set, https://no-color.org).
    let ansi = std::io::IsTerminal::is_terminal(&std::io::stderr()) && std::env::var_os("NO_COLOR").is_none();
    let output = tracing_subscriber::fmt::layer()
        .with_writer(std::io::stderr)
        .with_ansi(ansi);
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

/// An error and its whole cause chain on one line: `a: b: c`. A cause the message already
/// includes (an error whose text ends with `…: {source}`) is not repeated.
pub fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        if !text.contains(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    text
}

/// A duration as a person writes it (`8s`, `1m 30s`, `250ms`) for logs, not a struct's Debug.
pub fn human(duration: std::time::Duration) -> String {
    // Whole milliseconds: nobody needs nanoseconds of a back-off.
    let millis = std::time::Duration::from_millis(u64::try_from(duration.as_millis()).unwrap_or(u64::MAX));
    humantime::format_duration(millis).to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("outer: {0}")]
    struct Outer(#[source] Inner);

    #[derive(Debug, thiserror::Error)]
    #[error("inner cause")]
    struct Inner;

    #[test]
    fn a_cause_already_in_the_message_is_not_repeated() {
        assert_eq!(chain(&Outer(Inner)), "outer: inner cause");
    }

    #[test]
    fn durations_read_as_people_write_them() {
        assert_eq!(human(std::time::Duration::from_secs(8)), "8s");
        assert_eq!(human(std::time::Duration::from_millis(90_250)), "1m 30s 250ms");
    }
}
