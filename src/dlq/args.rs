//! The `dlq` commands' options (parsed by the command line, used here).

use clap::{Args, Subcommand};

use crate::config::ConfigArg;
use crate::failure_class::FailureClass;
use crate::flow::Flow;

fn parse_failure_class(s: &str) -> Result<FailureClass, String> {
    s.parse()
}

fn parse_flow(s: &str) -> Result<Flow, String> {
    s.parse()
}

/// `dlq` subcommands. Each reads the dlq and parked queues of the selected flows.
#[derive(Debug, Subcommand)]
pub enum DlqCommand {
    /// Count the matching dead letters by flow, organization, error class and HTTP status;
    /// every message stays in place.
    List(DlqListArgs),
    /// Print the matching dead letters with their failure headers and body; every message stays
    /// in place.
    Show(DlqShowArgs),
    /// Move the matching dead letters back to their flow's work queue (retry count reset, replay
    /// counted), each confirmed by the broker before it leaves the dead letters.
    Replay(DlqReplayArgs),
    /// Delete the matching dead letters for good (needs --yes).
    Purge(DlqPurgeArgs),
}

/// Which dead letters a `dlq` command acts on: every given condition must hold; a repeated
/// option matches any of its values.
#[derive(Debug, Clone, Args)]
pub struct DlqFilterArgs {
    /// Only these flows (comma-separated or repeated); all by default.
    #[arg(long, value_delimiter = ',', value_parser = parse_flow)]
    pub flow: Vec<Flow>,
    /// Only this organization (repeatable); `unknown` selects messages that name none.
    #[arg(long)]
    pub organization: Vec<String>,
    /// Only this ticket id (repeatable).
    #[arg(long)]
    pub ticket: Vec<String>,
    /// Only this error class (repeatable): invalid-message, rejected, retries-exhausted,
    /// delivery-limit, or unknown.
    #[arg(long, value_parser = parse_failure_class)]
    pub error_class: Vec<FailureClass>,
    /// Only messages that last failed at or after this time: RFC 3339, or a duration ago (2h).
    #[arg(long, value_parser = super::parse_time)]
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Only messages that last failed before this time: RFC 3339, or a duration ago (30m).
    #[arg(long, value_parser = super::parse_time)]
    pub until: Option<chrono::DateTime<chrono::Utc>>,
    /// Only the dlq queues (fresh dead letters) or only the parked ones; both by default.
    #[arg(long, value_enum)]
    pub queue: Option<super::Source>,
}

/// `dlq list` options.
#[derive(Debug, Args)]
pub struct DlqListArgs {
    /// Where RabbitMQ is and what the queues are called.
    #[command(flatten)]
    pub config: ConfigArg,
    /// Which dead letters.
    #[command(flatten)]
    pub filter: DlqFilterArgs,
    /// Print JSON instead of a table.
    #[arg(long)]
    pub json: bool,
}

/// `dlq show` options.
#[derive(Debug, Args)]
pub struct DlqShowArgs {
    /// Where RabbitMQ is and what the queues are called.
    #[command(flatten)]
    pub config: ConfigArg,
    /// Which dead letters.
    #[command(flatten)]
    pub filter: DlqFilterArgs,
    /// Show at most this many messages.
    #[arg(long)]
    pub limit: Option<u64>,
    /// Print a JSON array instead of text.
    #[arg(long)]
    pub json: bool,
}

/// `dlq replay` options.
#[derive(Debug, Args)]
pub struct DlqReplayArgs {
    /// Where RabbitMQ is and what the queues are called.
    #[command(flatten)]
    pub config: ConfigArg,
    /// Which dead letters.
    #[command(flatten)]
    pub filter: DlqFilterArgs,
    /// Replay at most this many messages.
    #[arg(long)]
    pub limit: Option<u64>,
    /// Print what would be replayed; move nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// At most this many replays per second (N/s, N/m or N/h), so a recovering TIXnGO is not
    /// flooded.
    #[arg(long, value_parser = super::parse_rate)]
    pub rate: Option<super::Rate>,
}

/// `dlq purge` options.
#[derive(Debug, Args)]
pub struct DlqPurgeArgs {
    /// Where RabbitMQ is and what the queues are called.
    #[command(flatten)]
    pub config: ConfigArg,
    /// Which dead letters.
    #[command(flatten)]
    pub filter: DlqFilterArgs,
    /// Delete at most this many messages.
    #[arg(long)]
    pub limit: Option<u64>,
    /// Really delete: the messages cannot be recovered.
    #[arg(long)]
    pub yes: bool,
}
