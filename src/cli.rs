//! Command-line interface. Each command maps to one library call; exit codes follow sysexits.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use tokio_util::sync::CancellationToken;

use crate::app::Part;
use crate::broker::{self, Topology};
use crate::config;

pub use crate::exit::*;

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

pub use crate::telemetry::LogFormat;

pub use crate::config::ConfigArg;
pub use crate::dlq::args::{
    DlqCommand, DlqFilterArgs, DlqListArgs, DlqPurgeArgs, DlqReplayArgs, DlqShowArgs,
};

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

/// Parses the command line; usage errors exit 64, `--help` and `--version` exit 0.
pub fn parse() -> Result<Cli, ExitCode> {
    parse_as::<Cli>()
}

/// Parses the command line as `C` with this project's exit codes (64 for a usage error, 0 for
/// `--help` and `--version`); the tools' command line uses it too.
pub fn parse_as<C: Parser>() -> Result<C, ExitCode> {
    C::try_parse().map_err(|e| {
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
        Command::Status {
            config,
            organization,
            json,
            ticket_id,
        } => status(&config, &organization, &ticket_id, json).await,
        Command::Dlq(command) => crate::dlq::run(command, shutdown).await,
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
        read_at: crate::text::rfc3339(chrono::Utc::now()),
    };
    use crate::output::escape;
    if json {
        crate::output::println(&serde_json::to_string_pretty(&reply).unwrap_or_default());
    } else if let (Some(tixngo), Some(s360)) = (&reply.tixngo_status, reply.s360_status) {
        crate::output::println(&format!(
            "{} {}: TIXnGO {} (S-360: {s360}), read at {}",
            escape(&reply.organization),
            escape(&reply.ticket_id),
            escape(tixngo),
            reply.read_at
        ));
    } else {
        crate::output::println(&format!(
            "{} {}: not known to TIXnGO",
            escape(&reply.organization),
            escape(&reply.ticket_id)
        ));
    }
    ExitCode::from(if reply.found { EXIT_OK } else { EXIT_NOT_FOUND })
}

fn report(result: Result<(), crate::app::AppError>) -> ExitCode {
    match result {
        Ok(()) => ExitCode::from(EXIT_OK),
        Err(error) => {
            // Once, on stderr (where the logs go too): not also as a log line.
            eprintln!("error: {}", crate::telemetry::chain(&error));
            ExitCode::from(error.exit_code())
        }
    }
}

/// Loads the configuration `args` names, or says what is wrong and gives exit code 78.
pub fn load(args: &ConfigArg) -> Result<config::Settings, ExitCode> {
    config::load(&args.config).map_err(|e| {
        eprintln!("{e}");
        ExitCode::from(EXIT_CONFIG)
    })
}

fn config_check(args: &ConfigArg) -> ExitCode {
    match load(args) {
        Ok(settings) => {
            crate::output::println(&format!("# {}: valid", args.config.display()));
            crate::output::print(&settings.redacted_toml());
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
            crate::output::println(&format!(
                "declared {} exchanges, {} queues, {} bindings",
                topology.exchanges.len(),
                topology.queues.len(),
                topology.bindings.len()
            ));
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
            crate::output::print(&text);
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
    let result = crate::messages::from_json::<crate::messages::InjectMessage>(text.as_bytes())
        .map_err(|e| format!("message does not match the schema: {e}"))
        .and_then(|m| crate::messages::TicketMessage::validate(&m).map(|()| m))
        .and_then(|m| org.render(&m));
    match result {
        Ok(document) => {
            // The bytes of the request's ticket, as they are sent: not re-serialized, so a key
            // written twice or a number's spelling is seen as TIXnGO sees it. A final new line only
            // on a terminal, so `render > ticket.json` holds exactly the ticket.
            crate::output::print(document.json.get());
            if std::io::IsTerminal::is_terminal(&std::io::stdout()) {
                crate::output::print("\n");
            }
            ExitCode::from(EXIT_OK)
        }
        Err(reason) => {
            eprintln!("invalid-message: {}", crate::output::escape(&reason));
            ExitCode::from(EXIT_DATA)
        }
    }
}
