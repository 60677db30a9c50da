//! The `tixngo-lab` command line: `bench`, `chaos` and `demo`.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};
use tixngo_bridge::cli::{ConfigArg, LogFormat, load};
use tixngo_bridge::exit::{EXIT_INTERRUPTED, EXIT_OK, EXIT_UNAVAILABLE};
use tokio_util::sync::CancellationToken;

/// Tools around tixngo-bridge: benchmark it, prove its reliability, demonstrate it.
#[derive(Debug, Parser)]
#[command(name = "tixngo-lab", version, about, long_about = None)]
pub struct Cli {
    /// Log output: human-readable or one JSON object per line.
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Pretty, env = "TIXNGO_BRIDGE_LOG_FORMAT")]
    pub log_format: LogFormat,

    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Commands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Benchmark a flow end to end against the local RabbitMQ and an embedded simulator, and in
    /// the same run a bare lapin + reqwest baseline over the same tickets (docs/benchmarks.md).
    Bench(crate::bench::BenchArgs),
    /// Prove reliability: many tickets through several bridge processes while processes are
    /// SIGKILLed, the broker fails and TIXnGO errs, then a reconciliation of losses, duplicates
    /// and dead letters; exit 1 unless none is wrong (docs/reliability.md).
    Chaos(crate::chaos::ChaosArgs),
    /// The whole system in one process against a local RabbitMQ: an embedded TIXnGO simulator,
    /// SMTP sink and bridge under their own queue prefix, a realistic mix of S-360 messages, and a
    /// summary. With --publish-only, just publish the mix to the configured broker.
    Demo(DemoArgs),
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

/// Parses the command line; usage errors exit 64, `--help` and `--version` exit 0.
pub fn parse() -> Result<Cli, ExitCode> {
    tixngo_bridge::cli::parse_as::<Cli>()
}

/// Runs a parsed command to completion.
pub async fn run(cli: Cli) -> ExitCode {
    let shutdown = CancellationToken::new();
    tixngo_bridge::shutdown::cancel_on_signal(shutdown.clone());
    match cli.command {
        Command::Bench(args) => crate::bench::main(args).await,
        Command::Chaos(args) => crate::chaos::main(args).await,
        Command::Demo(args) if args.publish_only => demo_publish(&args.config).await,
        Command::Demo(args) => demo(args, shutdown).await,
    }
}

pub async fn demo(args: DemoArgs, shutdown: CancellationToken) -> ExitCode {
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
        "tixngo-lab demo: RabbitMQ {}, queues and exchanges {}.*, files in {} (bridge logs: RUST_LOG=info)",
        tixngo_bridge::config::redact_url(options.amqp_url.expose_secret()),
        options.prefix,
        options.output_dir.display()
    );
    // The commands printed at the end are the bridge's own (`dlq list`, …).
    let program = crate::bench::bridge_binary(None)
        .map(|path| path.display().to_string())
        .unwrap_or_else(|_| "tixngo-bridge".to_owned());
    let failed = |error: crate::demo::RunError| {
        eprintln!("error: {}", tixngo_bridge::telemetry::chain(&error));
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
            return ExitCode::from(EXIT_INTERRUPTED);
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

pub async fn demo_publish(args: &ConfigArg) -> ExitCode {
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
            eprintln!("error: {}", tixngo_bridge::telemetry::chain(&error));
            ExitCode::from(EXIT_UNAVAILABLE)
        }
    }
}
