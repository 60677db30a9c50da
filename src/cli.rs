//! Command-line interface. Each command maps to one library call; exit codes follow sysexits.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand, ValueEnum};
use tokio_util::sync::CancellationToken;

use crate::app::Part;
use crate::broker::{self, Topology};
use crate::config::{self, DEFAULT_CONFIG_FILE};
use crate::flows::Flow;

/// Success.
pub const EXIT_OK: u8 = 0;
/// Command-line usage error (EX_USAGE).
pub const EXIT_USAGE: u8 = 64;
/// RabbitMQ or TIXnGO unavailable at start-up (EX_UNAVAILABLE).
pub const EXIT_UNAVAILABLE: u8 = 69;
/// Internal error (EX_SOFTWARE).
pub const EXIT_SOFTWARE: u8 = 70;
/// Invalid configuration (EX_CONFIG).
pub const EXIT_CONFIG: u8 = 78;

/// Keeps tickets aligned between S-360 and TIXnGO: consumes S-360's ticket events from
/// RabbitMQ, calls TIXnGO, and reports every outcome back to S-360.
#[derive(Debug, Parser)]
#[command(name = "tixngo-bridge", version, about, long_about = None)]
pub struct Cli {
    /// Log output: human-readable or one JSON object per line.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Pretty, env = "TIXNGO_BRIDGE_LOG_FORMAT")]
    pub log_format: LogFormat,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Log formats.
#[derive(Debug, Clone, Copy, ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Pretty,
    /// One JSON object per line, for log collectors.
    Json,
}

/// The configuration file option shared by every command that needs it.
#[derive(Debug, Clone, Args)]
pub struct ConfigArg {
    /// Configuration file (TOML); `TIXNGO_BRIDGE__SECTION__KEY` variables override it.
    #[arg(long, short = 'c', default_value = DEFAULT_CONFIG_FILE, env = "TIXNGO_BRIDGE_CONFIG")]
    pub config: PathBuf,
}

/// Commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the bridge: consume the flows' queues until SIGTERM or SIGINT.
    Run(RunArgs),
    /// Inspect the configuration.
    #[command(subcommand)]
    Config(ConfigCommand),
    /// Declare or export the RabbitMQ topology (exchanges, queues, bindings).
    #[command(subcommand)]
    Topology(TopologyCommand),
    /// Ask TIXnGO for one ticket's status now, as the status flow would (no RabbitMQ needed).
    Status {
        #[command(flatten)]
        config: ConfigArg,
        /// S-360 organization whose interface to use.
        #[arg(long)]
        organization: String,
        /// Print the answer as JSON (the status flow's reply format).
        #[arg(long)]
        json: bool,
        /// The ticket id.
        ticket_id: String,
    },
    /// The whole system in one process against a local RabbitMQ: an embedded TIXnGO simulator,
    /// SMTP sink and bridge under their own queue prefix, a realistic mix of S-360 messages, and a
    /// summary. With --publish-only, just publish the mix to the configured broker.
    Demo(DemoArgs),
    /// Run the built-in TIXnGO simulator (for tests, demos and benchmarks).
    Sim(crate::sim::SimArgs),
    /// Print the exact TIXnGO ticket the bridge would send for an injection message (built-in
    /// mapping or the organization's template), without RabbitMQ.
    Render {
        #[command(flatten)]
        config: ConfigArg,
        /// S-360 organization whose interface to use.
        #[arg(long)]
        organization: String,
        /// File holding the injection message (JSON).
        #[arg(long)]
        message: PathBuf,
    },
    /// Operators' tools for dead letters: list, show, replay or purge the messages in the flows'
    /// dlq and parked queues.
    #[command(subcommand)]
    Dlq(DlqCommand),
    /// Benchmark a flow end to end against the local RabbitMQ and an embedded simulator, and in
    /// the same run a bare lapin + reqwest baseline over the same tickets (docs/benchmarks.md).
    Bench(crate::bench::BenchArgs),
    /// Prove reliability: many tickets through several bridge processes while processes are
    /// SIGKILLed, the broker fails and TIXnGO errs, then a reconciliation of losses, duplicates
    /// and dead letters; exit 1 unless none is wrong (docs/reliability.md).
    Chaos(crate::chaos::ChaosArgs),
}

impl Command {
    /// The log filter when `RUST_LOG` is not set: `info`, but only errors for the full demo,
    /// whose progress and summary say what happens (and whose broken messages would warn).
    pub fn default_log_filter(&self) -> &'static str {
        match self {
            Command::Demo(args) if !args.publish_only => "error",
            _ => "info",
        }
    }
}

/// `demo` options.
#[derive(Debug, Args)]
pub struct DemoArgs {
    /// With --publish-only: the broker and topology to publish to (required). Otherwise the
    /// broker is taken from it when the file exists (unless --amqp-url is given).
    #[command(flatten)]
    pub config: ConfigArg,
    /// Publish the mix to the configured broker and exit, leaving the work to running bridges
    /// (the docker-compose demo's publisher).
    #[arg(long, conflicts_with_all = ["keep_running", "prefix", "output_dir", "timeout"])]
    pub publish_only: bool,
    /// The RabbitMQ to use (default: the configuration file's, else
    /// amqp://guest:guest@127.0.0.1:5672/%2f). Ignored with --publish-only, which publishes
    /// where the configuration says (so an AMQP_URL in the environment does not conflict).
    #[arg(long, env = "AMQP_URL", hide_env_values = true)]
    pub amqp_url: Option<String>,
    /// Prefix of the demo's queues and exchanges (must contain "demo": the demo empties the
    /// queues under it at start).
    #[arg(long, default_value = crate::demo::DEFAULT_PREFIX)]
    pub prefix: String,
    /// Where to write the demo's configuration, e-mails and metrics (default: a
    /// tixngo-bridge-demo directory in the system's temporary directory).
    #[arg(long)]
    pub output_dir: Option<PathBuf>,
    /// How long to wait for outcomes, status changes and e-mails.
    #[arg(long, value_parser = humantime::parse_duration, default_value = "2m")]
    pub timeout: std::time::Duration,
    /// Leave the bridge, simulator and SMTP sink running after the summary, until Ctrl-C, to
    /// explore /metrics, the simulator and the queues.
    #[arg(long)]
    pub keep_running: bool,
}

/// `run` options.
#[derive(Debug, Args)]
pub struct RunArgs {
    #[command(flatten)]
    pub config: ConfigArg,
    /// Parts to run, comma-separated, among inject, cancel, control, status, poller and
    /// notifier (default: every flow, the poller unless `status_sync.enabled = false`, and the
    /// notifier when SMTP is configured), so deployments can scale them separately.
    #[arg(long, value_delimiter = ',', value_parser = parse_part)]
    pub flows: Vec<Part>,
}

fn parse_part(s: &str) -> Result<Part, String> {
    s.parse()
}

fn parse_flow(s: &str) -> Result<Flow, String> {
    s.parse()
}

/// `config` subcommands.
#[derive(Debug, Subcommand)]
pub enum ConfigCommand {
    /// Validate the configuration and print it with secrets redacted; exit 78 listing every
    /// problem if it is invalid.
    Check(ConfigArg),
}

/// `topology` subcommands.
#[derive(Debug, Subcommand)]
pub enum TopologyCommand {
    /// Declare every exchange, queue and binding on the broker (idempotent).
    Declare(ConfigArg),
    /// Write the topology as a RabbitMQ definitions file (to stdout, or --output).
    Export {
        #[command(flatten)]
        config: ConfigArg,
        /// Output file; stdout if absent.
        #[arg(long, short = 'o')]
        output: Option<PathBuf>,
    },
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
    #[arg(long)]
    pub error_class: Vec<String>,
    /// Only messages that last failed at or after this time: RFC 3339, or a duration ago (2h).
    #[arg(long, value_parser = crate::dlq::parse_time)]
    pub since: Option<chrono::DateTime<chrono::Utc>>,
    /// Only messages that last failed before this time: RFC 3339, or a duration ago (30m).
    #[arg(long, value_parser = crate::dlq::parse_time)]
    pub until: Option<chrono::DateTime<chrono::Utc>>,
    /// Only the dlq queues (fresh dead letters) or only the parked ones; both by default.
    #[arg(long, value_enum)]
    pub queue: Option<crate::dlq::Source>,
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
    #[arg(long, value_parser = crate::dlq::parse_rate)]
    pub rate: Option<crate::dlq::Rate>,
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

/// Parses the command line; usage errors exit 64, `--help` and `--version` exit 0.
pub fn parse() -> Result<Cli, ExitCode> {
    Cli::try_parse().map_err(|e| {
        let _ = e.print();
        if e.use_stderr() {
            ExitCode::from(EXIT_USAGE)
        } else {
            ExitCode::from(EXIT_OK)
        }
    })
}

/// Runs a parsed command to completion.
pub async fn run(cli: Cli) -> ExitCode {
    let shutdown = CancellationToken::new();
    crate::shutdown::cancel_on_signal(shutdown.clone());
    match cli.command {
        Command::Config(ConfigCommand::Check(args)) => config_check(&args),
        Command::Topology(TopologyCommand::Declare(args)) => topology_declare(&args).await,
        Command::Topology(TopologyCommand::Export { config, output }) => topology_export(&config, output),
        Command::Run(args) => {
            let settings = match load(&args.config) {
                Ok(settings) => settings,
                Err(code) => return code,
            };
            let parts = if args.flows.is_empty() {
                Part::defaults(&settings)
            } else {
                args.flows
            };
            report(crate::app::run(settings, parts, shutdown).await)
        }
        Command::Render {
            config,
            organization,
            message,
        } => render(&config, &organization, &message),
        Command::Demo(args) if args.publish_only => demo_publish(&args.config).await,
        Command::Demo(args) => demo(args, shutdown).await,
        Command::Status {
            config,
            organization,
            json,
            ticket_id,
        } => status(&config, &organization, &ticket_id, json).await,
        Command::Dlq(command) => crate::dlq::run(command, shutdown).await,
        Command::Bench(args) => crate::bench::main(args).await,
        Command::Chaos(args) => crate::chaos::main(args).await,
        Command::Sim(args) => report(
            crate::sim::serve(args, async move { shutdown.cancelled().await })
                .await
                .map_err(crate::app::AppError::Other),
        ),
    }
}

/// The configuration's organization `code`, with its TIXnGO client and template; or the exit
/// code after saying what is wrong.
fn configured_organization(
    args: &ConfigArg,
    code: &str,
) -> Result<std::sync::Arc<crate::orgs::Organization>, ExitCode> {
    let settings = load(args)?;
    let organizations = crate::orgs::Organizations::new(&settings).map_err(|error| {
        eprintln!("error: {}", crate::telemetry::chain(&error));
        ExitCode::from(EXIT_CONFIG)
    })?;
    organizations.get(code).cloned().ok_or_else(|| {
        eprintln!("error: no TIXnGO interface is configured for organization {code:?}");
        ExitCode::from(EXIT_USAGE)
    })
}

/// Exit code of `status` for a ticket TIXnGO does not know.
pub const EXIT_NOT_FOUND: u8 = 1;

async fn status(args: &ConfigArg, organization: &str, ticket_id: &str, json: bool) -> ExitCode {
    let org = match configured_organization(args, organization) {
        Ok(org) => org,
        Err(code) => return code,
    };
    let state = match org.client.status(ticket_id).await {
        Ok(state) => state,
        Err(error) => {
            eprintln!("error: {}", crate::telemetry::chain(&error));
            return ExitCode::from(EXIT_UNAVAILABLE);
        }
    };
    let reply = crate::flows::status::StatusReply {
        organization: org.code().to_owned(),
        ticket_id: ticket_id.to_owned(),
        found: state.is_some(),
        s360_status: state
            .as_ref()
            .map(|s| crate::tixngo::S360Status::from_tixngo(&s.status).as_str()),
        tixngo_status: state.map(|s| s.status),
        read_at: crate::broker::headers::rfc3339(chrono::Utc::now()),
    };
    if json {
        println!("{}", serde_json::to_string_pretty(&reply).unwrap_or_default());
    } else if let (Some(tixngo), Some(s360)) = (&reply.tixngo_status, reply.s360_status) {
        println!(
            "{} {}: TIXnGO {tixngo} (S-360: {s360}), read at {}",
            reply.organization, reply.ticket_id, reply.read_at
        );
    } else {
        println!("{} {}: not known to TIXnGO", reply.organization, reply.ticket_id);
    }
    ExitCode::from(if reply.found { EXIT_OK } else { EXIT_NOT_FOUND })
}

async fn demo(args: DemoArgs, shutdown: CancellationToken) -> ExitCode {
    use secrecy::ExposeSecret;
    let amqp_url = match args.amqp_url {
        Some(url) => secrecy::SecretString::from(url),
        None if args.config.config.is_file() => match load(&args.config) {
            Ok(settings) => settings.amqp.url.clone(),
            Err(code) => return code,
        },
        None => secrecy::SecretString::from(crate::demo::DEFAULT_AMQP_URL),
    };
    let mut options = crate::demo::DemoOptions::new(amqp_url);
    options.prefix = args.prefix;
    options.timeout = args.timeout;
    options.progress = true;
    if let Some(dir) = args.output_dir {
        options.output_dir = dir;
    }
    println!(
        "tixngo-bridge demo: RabbitMQ {}, queues and exchanges {}.*, files in {} (bridge logs: RUST_LOG=info)",
        config::redact_url(options.amqp_url.expose_secret()),
        options.prefix,
        options.output_dir.display()
    );
    let program = std::env::current_exe()
        .map(|path| path.display().to_string())
        .unwrap_or_else(|_| "tixngo-bridge".to_owned());
    let failed = |error: crate::demo::RunError| {
        eprintln!("error: {}", crate::telemetry::chain(&error));
        ExitCode::from(error.exit_code())
    };
    let mut demo = match crate::demo::Demo::start(options).await {
        Ok(demo) => demo,
        Err(error) => return failed(error),
    };
    println!(
        "started the TIXnGO simulator, an SMTP sink and the bridge (every flow, the status poller and the notifier)"
    );
    let summary = tokio::select! {
        summary = demo.run() => summary,
        () = shutdown.cancelled() => {
            eprintln!("interrupted");
            let _ = demo.stop().await;
            return ExitCode::from(crate::dlq::EXIT_INTERRUPTED);
        }
    };
    match summary {
        Ok(summary) => {
            println!("\n{summary}");
            print!("{}", demo.where_next(&summary, &program, args.keep_running));
        }
        Err(error) => {
            let _ = demo.stop().await;
            return failed(error);
        }
    }
    if args.keep_running {
        println!("\nEverything keeps running; press Ctrl-C to stop.");
        shutdown.cancelled().await;
    }
    match demo.stop().await {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(error) => failed(error),
    }
}

async fn demo_publish(args: &ConfigArg) -> ExitCode {
    let settings = match load(args) {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    match crate::demo::publish_mix(&settings).await {
        Ok(published) => {
            println!(
                "published (run {}), every message confirmed by the broker:",
                published.run
            );
            for (routing_key, count) in &published.by_routing_key {
                println!("  {routing_key:<16} {count}");
            }
            println!(
                "  of which {} broken on purpose: expect them as invalid-message dead letters and e-mails",
                published.broken
            );
            ExitCode::from(EXIT_OK)
        }
        Err(error) => {
            eprintln!("error: {}", crate::telemetry::chain(&error));
            ExitCode::from(EXIT_UNAVAILABLE)
        }
    }
}

fn report(result: Result<(), crate::app::AppError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(error) => {
            tracing::error!(error = %crate::telemetry::chain(&error), "stopped with an error");
            eprintln!("error: {}", crate::telemetry::chain(&error));
            ExitCode::from(error.exit_code())
        }
    }
}

fn load(args: &ConfigArg) -> Result<config::Settings, ExitCode> {
    config::load(&args.config).map_err(|e| {
        eprintln!("{e}");
        ExitCode::from(EXIT_CONFIG)
    })
}

fn config_check(args: &ConfigArg) -> ExitCode {
    match load(args) {
        Ok(settings) => {
            println!("# {}: valid", args.config.display());
            print!("{}", settings.redacted_toml());
            ExitCode::from(EXIT_OK)
        }
        Err(code) => code,
    }
}

async fn topology_declare(args: &ConfigArg) -> ExitCode {
    let settings = match load(args) {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    let result = async {
        let connection = broker::connect(&settings.amqp, "topology").await?;
        let channel = connection
            .create_channel()
            .await
            .map_err(broker::BrokerError::amqp("channel.open"))?;
        let topology = Topology::new(&settings.topology);
        topology.declare_checked(&channel).await?;
        let _ = connection.close(200, "topology declared".into()).await;
        Ok::<_, broker::BrokerError>(topology)
    }
    .await;
    match result {
        Ok(topology) => {
            println!(
                "declared {} exchanges, {} queues, {} bindings",
                topology.exchanges.len(),
                topology.queues.len(),
                topology.bindings.len()
            );
            ExitCode::from(EXIT_OK)
        }
        Err(error) => {
            eprintln!("error: {}", crate::telemetry::chain(&error));
            match error {
                broker::BrokerError::Declare(declare) if declare.inequivalent => ExitCode::from(EXIT_CONFIG),
                _ => ExitCode::from(EXIT_UNAVAILABLE),
            }
        }
    }
}

fn topology_export(args: &ConfigArg, output: Option<PathBuf>) -> ExitCode {
    let settings = match load(args) {
        Ok(settings) => settings,
        Err(code) => return code,
    };
    let json = Topology::new(&settings.topology).export();
    let text = match serde_json::to_string_pretty(&json) {
        Ok(text) => text + "\n",
        Err(e) => {
            eprintln!("error: {e}");
            return ExitCode::from(EXIT_SOFTWARE);
        }
    };
    match output {
        None => {
            print!("{text}");
            ExitCode::from(EXIT_OK)
        }
        Some(path) => match std::fs::write(&path, text) {
            Ok(()) => ExitCode::from(EXIT_OK),
            Err(e) => {
                eprintln!("error: cannot write {}: {e}", path.display());
                ExitCode::from(EXIT_SOFTWARE)
            }
        },
    }
}

fn render(args: &ConfigArg, organization: &str, message: &std::path::Path) -> ExitCode {
    let org = match configured_organization(args, organization) {
        Ok(org) => org,
        Err(code) => return code,
    };
    let text = match std::fs::read_to_string(message) {
        Ok(text) => text,
        Err(e) => {
            eprintln!("error: cannot read {}: {e}", message.display());
            return ExitCode::from(EXIT_USAGE);
        }
    };
    let result = serde_json::from_str::<crate::messages::InjectMessage>(&text)
        .map_err(|e| format!("message does not match the schema: {e}"))
        .and_then(|m| crate::messages::TicketMessage::validate(&m).map(|()| m))
        .and_then(|m| org.render(&m));
    match result {
        Ok(document) => {
            let pretty = serde_json::from_str::<serde_json::Value>(document.json.get())
                .and_then(|v| serde_json::to_string_pretty(&v))
                .unwrap_or_else(|_| document.json.get().to_owned());
            println!("{pretty}");
            ExitCode::from(EXIT_OK)
        }
        Err(reason) => {
            eprintln!("invalid-message: {reason}");
            ExitCode::from(65)
        }
    }
}
