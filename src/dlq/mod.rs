//! `tixngo-bridge dlq`: the operator's view of dead letters, and the way back.
//!
//! Dead letters sit in two quorum queues per flow: `<prefix>.<flow>.dlq` (fresh, waiting for the
//! notifier) and `<prefix>.<flow>.parked` (notified, kept for replay). Every command reads both
//! unless `--queue` picks one, and selects messages with the same filters (`--flow`,
//! `--organization`, `--ticket`, `--error-class`, `--since`, `--until`).
//!
//! # Reading without removing
//!
//! A queue is read with `basic.get` and manual acks, up to the message count a passive declare
//! reports when the command reaches that queue (messages arriving meanwhile are left for the
//! next run). Messages not moved or deleted stay unacked on the channel, and closing the channel
//! puts them back. Nothing is ever acked that was not republished (confirmed) or purged.
//!
//! Putting a message back is a *return* for the quorum queue, which raises its
//! `x-delivery-count` (shown by `show` as "returned to queue"). Measured on RabbitMQ 3.10: every
//! `list`/`show` raises it by one for each message read. That is harmless while the dlq and
//! parked queues have no delivery limit (they declare none; RabbitMQ 3.x applies none). From
//! RabbitMQ 4.0 quorum queues get a default delivery limit of 20, and 4.0-4.2 count returns from
//! a closed channel towards it (4.3 no longer does): there, a message listed twenty times would be
//! dropped. Before moving to RabbitMQ 4.0-4.2, give the dlq and parked queues an unlimited delivery
//! limit (policy `delivery-limit: -1`). `list --json` reports `max_delivery_count` to keep an eye
//! on it.
//!
//! # Replay
//!
//! Each matching message is published to the default exchange with its flow's work queue as
//! routing key, `mandatory`, and the publisher confirm is awaited before the original is acked.
//! The default exchange rather than the tickets exchange with `x-original-routing-key`: a replay
//! goes back to the bridge only, never a second time to whatever else S-360's exchange feeds,
//! and it does not depend on bindings. A crash between the confirm and the ack leaves the
//! original in place, so a rerun replays it again (harmless: the flows are idempotent); a crash
//! anywhere else loses nothing either.
//!
//! The replayed message keeps its body and properties (`carried_properties`: message id,
//! content type, correlation id, reply-to...) and its identity headers and `x-first-failure-at`;
//! it gets `x-replay-count` + 1 and loses what described the last failure and the retry budget
//! used ([`ops::cleared_on_replay`]), so it starts with a full set of retries and, if it fails
//! again, is described by that failure only.
//!
//! The flow of a message is its `x-flow` header, else its queue's. Messages the broker
//! dead-lettered itself carry no `x-error-class`: their class comes from `x-death`
//! (`delivery_limit` becomes `delivery-limit`, other reasons `broker-<reason>`), their failure
//! time from the same entry, and their organization and ticket from the body. What cannot be
//! read shows as `unknown` and never stops a command.
//!
//! Exit codes: 0 done, 64 usage (`purge` without `--yes`), 69 RabbitMQ unavailable or a replay
//! refused by it, 75 interrupted by SIGINT/SIGTERM (rerun to continue), 78 configuration.

use std::io::IsTerminal;
use std::process::ExitCode;

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio_util::sync::CancellationToken;

use crate::config::ConfigArg;
use crate::exit::{EXIT_CONFIG, EXIT_OK, EXIT_UNAVAILABLE, EXIT_USAGE};
use args::{DlqCommand, DlqFilterArgs};

pub mod args;
pub mod filter;
pub mod letter;
pub mod ops;
pub mod output;
pub mod source;

pub use filter::{Filter, Rate, parse_rate, parse_time};
pub use letter::DeadLetter;
pub use ops::{DlqError, Listing, ReplayOptions, Session, Summary};
pub use source::Source;

pub use crate::exit::EXIT_INTERRUPTED;

impl From<&DlqFilterArgs> for Filter {
    fn from(args: &DlqFilterArgs) -> Self {
        Self {
            flows: args.flow.clone(),
            organizations: args.organization.clone(),
            tickets: args.ticket.clone(),
            error_classes: args.error_class.clone(),
            since: args.since,
            until: args.until,
            source: args.queue,
        }
    }
}

/// Runs one `dlq` subcommand and returns its exit code.
pub async fn run(command: DlqCommand, shutdown: CancellationToken) -> ExitCode {
    let filter = match &command {
        DlqCommand::List(args) => &args.filter,
        DlqCommand::Show(args) => &args.filter,
        DlqCommand::Replay(args) => &args.filter,
        DlqCommand::Purge(args) => &args.filter,
    };
    if let (Some(since), Some(until)) = (filter.since, filter.until)
        && since >= until
    {
        eprintln!(
            "error: --since ({}) is not before --until ({}): no dead letter can match",
            crate::broker::headers::rfc3339(since),
            crate::broker::headers::rfc3339(until)
        );
        return ExitCode::from(EXIT_USAGE);
    }
    match command {
        DlqCommand::List(args) => {
            let session = match open(&args.config).await {
                Ok(session) => session,
                Err(code) => return code,
            };
            let progress = progress_bar();
            let result = session.list(&Filter::from(&args.filter), &progress).await;
            progress.finish_and_clear();
            session.close().await;
            match result {
                Ok(listing) => {
                    if args.json {
                        crate::output::println(&pretty(&output::listing_json(&listing)));
                    } else {
                        crate::output::print(&output::listing_table(&listing));
                    }
                    ExitCode::from(EXIT_OK)
                }
                Err(error) => failed(&error),
            }
        }
        DlqCommand::Show(args) => {
            let session = match open(&args.config).await {
                Ok(session) => session,
                Err(code) => return code,
            };
            let result = session.show(&Filter::from(&args.filter), args.limit).await;
            session.close().await;
            match result {
                Ok(letters) if args.json => {
                    let all: Vec<_> = letters.iter().map(DeadLetter::to_json).collect();
                    crate::output::println(&pretty(&serde_json::Value::Array(all)));
                    ExitCode::from(EXIT_OK)
                }
                Ok(letters) => {
                    for letter in &letters {
                        crate::output::print(&output::letter_text(letter));
                    }
                    crate::output::println(&format!("{} message(s)", letters.len()));
                    ExitCode::from(EXIT_OK)
                }
                Err(error) => failed(&error),
            }
        }
        DlqCommand::Replay(args) => {
            let session = match open(&args.config).await {
                Ok(session) => session,
                Err(code) => return code,
            };
            let options = ReplayOptions {
                limit: args.limit,
                dry_run: args.dry_run,
                rate: args.rate,
            };
            let progress = progress_bar();
            let (summary, result) = session
                .replay(&Filter::from(&args.filter), &options, &progress, &shutdown)
                .await;
            progress.finish_and_clear();
            session.close().await;
            for letter in &summary.selected {
                crate::output::println(&output::selected_line(letter));
            }
            finish("replayed", &summary, args.dry_run, result)
        }
        DlqCommand::Purge(args) => {
            if !args.yes {
                eprintln!(
                    "error: purge deletes dead letters for good; check them with `dlq list`/`dlq show` and the same filters, then add --yes"
                );
                return ExitCode::from(EXIT_USAGE);
            }
            let session = match open(&args.config).await {
                Ok(session) => session,
                Err(code) => return code,
            };
            let progress = progress_bar();
            let (summary, result) = session
                .purge(&Filter::from(&args.filter), args.limit, &progress, &shutdown)
                .await;
            progress.finish_and_clear();
            session.close().await;
            finish("purged", &summary, false, result)
        }
    }
}

/// Loads the configuration and connects; on failure, prints why and returns the exit code.
async fn open(config: &ConfigArg) -> Result<Session, ExitCode> {
    let settings = crate::config::load(&config.config).map_err(|error| {
        eprintln!("{error}");
        ExitCode::from(EXIT_CONFIG)
    })?;
    Session::open(&settings).await.map_err(|error| {
        eprintln!("error: {}", crate::telemetry::chain(&error));
        ExitCode::from(EXIT_UNAVAILABLE)
    })
}

/// Prints the summary (stdout) and any error (stderr); picks the exit code.
fn finish(verb: &str, summary: &Summary, dry_run: bool, result: Result<(), DlqError>) -> ExitCode {
    crate::output::println(&output::summary_line(verb, summary, dry_run));
    for reason in &summary.failure_reasons {
        eprintln!("failed: {reason}");
    }
    match result {
        Err(error) => failed(&error),
        Ok(()) if summary.failed > 0 => ExitCode::from(EXIT_UNAVAILABLE),
        Ok(()) if summary.interrupted => ExitCode::from(EXIT_INTERRUPTED),
        Ok(()) => ExitCode::from(EXIT_OK),
    }
}

fn failed(error: &DlqError) -> ExitCode {
    eprintln!("error: {}", crate::telemetry::chain(error));
    ExitCode::from(EXIT_UNAVAILABLE)
}

fn pretty(value: &serde_json::Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

/// A progress bar on stdout when it is a terminal; a hidden one otherwise, so that piped or
/// logged output holds only the results.
fn progress_bar() -> ProgressBar {
    if !std::io::stdout().is_terminal() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stdout());
    if let Ok(style) = ProgressStyle::with_template("{spinner} [{bar:30}] {pos}/{len} read  {msg}") {
        bar.set_style(style.progress_chars("=> "));
    }
    bar.enable_steady_tick(std::time::Duration::from_millis(200));
    bar
}
