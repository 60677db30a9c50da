//! `tixngo-lab bench`: one whole scenario against the local RabbitMQ and an embedded
//! simulator, and in the same run a bare lapin + reqwest baseline over the same tickets.
//!
//! A run gets its own exchanges and queues (`bench-<run>.*`), deleted at the end, so it never
//! touches a deployment's queues on the same vhost. The simulator has two tenants: `BENCH` (the
//! bridge's interface) and `BASE` (the baseline's), so each phase counts only its own tickets.
//!
//! Per phase: publish the tickets (all first, the default "backlog" mode, or paced with `--rate`
//! while the consumers run), start the consumers, poll the simulator until every ticket was
//! applied, read CPU and memory of the consumer processes from `/proc`, stop them, and compute
//! throughput and latency from the simulator's per-ticket receipt times.

pub mod baseline;
pub mod load;
pub mod report;

use std::path::PathBuf;
use std::process::{ExitCode, Stdio};
use std::sync::Arc;
use std::time::Duration;

use chrono::{DateTime, Utc};
use lapin::options::{ExchangeDeleteOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{Connection, ConnectionProperties};
use secrecy::{ExposeSecret, SecretString};
use tokio::process::{Child, Command};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

use report::{Latency, Machine, Phase, ProcUsage, Report, RunSettings, mib};
use tixngo_bridge::app::{AppError, Part};
use tixngo_bridge::broker::Topology;
use tixngo_bridge::config::{self, Settings, WorkerSettings};
use tixngo_bridge::flows::Flow;
use tixngo_bridge::orgs::Organizations;
use tixngo_sim::{self as sim, Faults, RunningSim, SimConfig, Status};

/// The simulator tenant (and S-360 organization) the bridge serves.
const BRIDGE_ORG: &str = "BENCH";
/// The simulator tenant the baseline posts to.
const BASELINE_ORG: &str = "BASE";
/// How often the simulator is polled for progress.
const POLL: Duration = Duration::from_millis(20);
/// A phase that makes no progress for this long has failed.
const STALL: Duration = Duration::from_secs(60);

/// `bench` options.
#[derive(Debug, Clone, clap::Args)]
pub struct BenchArgs {
    /// Tickets per phase (the bridge's, then the baseline's).
    #[arg(long, default_value_t = 50_000)]
    pub tickets: usize,
    /// Simulated TIXnGO latency per call, in ms (0: instant).
    #[arg(long, default_value_t = 0)]
    pub tixngo_latency_ms: u64,
    /// With a latency: draw each call's latency uniformly from `--tixngo-latency-ms` to this
    /// (a latency range, as a real remote API has).
    #[arg(long)]
    pub tixngo_latency_max_ms: Option<u64>,
    /// `worker.prefetch`, and the baseline's `basic.qos` (default: the bridge's default).
    #[arg(long, default_value_t = WorkerSettings::default().prefetch)]
    pub prefetch: u16,
    /// `worker.max_concurrent_calls`: TIXnGO calls in progress per organization and process.
    #[arg(long, default_value_t = WorkerSettings::default().max_concurrent_calls)]
    pub max_concurrent_calls: usize,
    /// The baseline's concurrent POSTs (one ticket each).
    #[arg(long, default_value_t = 64)]
    pub baseline_concurrency: usize,
    /// `worker.batch_max`: most tickets per TIXnGO call.
    #[arg(long, default_value_t = WorkerSettings::default().batch_max)]
    pub batch_max: usize,
    /// `worker.batch_linger` in ms: how long a partial batch waits for more tickets.
    #[arg(long, default_value_t = WorkerSettings::default().batch_linger.as_millis() as u64)]
    pub batch_linger_ms: u64,
    /// Bridge processes (`tixngo-bridge run`, with a temporary configuration); 0 runs the
    /// bridge and the baseline inside the bench process (memory and CPU then include the
    /// simulator and the publisher).
    #[arg(long, default_value_t = 1)]
    pub processes: usize,
    /// Flow to benchmark: inject, cancel or control (cancel and control first create the
    /// tickets in the simulator, untimed).
    #[arg(long, default_value = "inject", value_parser = parse_flow)]
    pub flow: Flow,
    /// Publish at this many tickets per second while the consumers run (default: publish the
    /// whole backlog first, then start the consumers).
    #[arg(long)]
    pub rate: Option<f64>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// Measure the bridge only.
    #[arg(long)]
    pub skip_baseline: bool,
    /// RabbitMQ to run against; the run's exchanges and queues are `bench-<run>.*`.
    #[arg(
        long,
        env = "AMQP_URL",
        default_value = tixngo_bridge::config::LOCAL_AMQP_URL,
        hide_env_values = true,
        hide_default_value = true,
        value_parser = tixngo_bridge::config::secret_arg
    )]
    pub amqp_url: SecretString,
    /// The `tixngo-bridge` binary to start as bridge processes (default: the one beside this
    /// program, else on PATH).
    #[arg(long, hide = true)]
    pub binary: Option<PathBuf>,
    /// The `tixngo-lab` binary to start as baseline worker processes (default: this program;
    /// tests, whose program is the test binary, name it).
    #[arg(long, hide = true)]
    pub lab_binary: Option<PathBuf>,
    /// Internal: be a baseline worker process for a parent bench (targets in the environment).
    #[arg(long, hide = true)]
    pub baseline_worker: bool,
}

fn parse_flow(s: &str) -> Result<Flow, String> {
    s.parse()
}

impl BenchArgs {
    /// Options with every default, against `amqp_url` (for tests and library callers).
    pub fn new(amqp_url: &str, tickets: usize) -> Self {
        BenchArgs {
            tickets,
            tixngo_latency_ms: 0,
            tixngo_latency_max_ms: None,
            prefetch: WorkerSettings::default().prefetch,
            max_concurrent_calls: WorkerSettings::default().max_concurrent_calls,
            baseline_concurrency: 64,
            batch_max: WorkerSettings::default().batch_max,
            batch_linger_ms: WorkerSettings::default().batch_linger.as_millis() as u64,
            processes: 1,
            flow: Flow::Inject,
            rate: None,
            json: false,
            skip_baseline: false,
            amqp_url: SecretString::from(amqp_url.to_owned()),
            binary: None,
            lab_binary: None,
            baseline_worker: false,
        }
    }
}

/// Why a bench run failed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// The options make no sense.
    #[error("{0}")]
    Usage(String),
    /// RabbitMQ refused or failed an operation.
    #[error("RabbitMQ: {0}")]
    Amqp(#[from] lapin::Error),
    /// Preparing the scenario failed.
    #[error("bench set-up: {0}")]
    Setup(String),
    /// A message could not be built (a defect: the examples are tested).
    #[error("bench message: {0}")]
    Json(#[from] serde_json::Error),
    /// Starting a process, a temporary file or the simulator failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
    /// The in-process bridge stopped with an error.
    #[error(transparent)]
    App(#[from] AppError),
    /// A phase stopped making progress.
    #[error("{phase}: {done} of {expected} tickets applied, then nothing for {STALL:?}")]
    Stalled {
        /// `bridge` or `baseline`.
        phase: &'static str,
        /// Tickets the simulator had.
        done: usize,
        /// Tickets published.
        expected: usize,
    },
    /// A consumer process ended before its work was done.
    #[error("{phase}: a consumer process exited early ({status}); see {log}")]
    Exited {
        /// `bridge` or `baseline`.
        phase: &'static str,
        /// Its exit status.
        status: String,
        /// Its stderr.
        log: String,
    },
}

impl BenchError {
    fn exit_code(&self) -> u8 {
        match self {
            BenchError::Usage(_) => tixngo_bridge::exit::EXIT_USAGE,
            BenchError::Amqp(_) => tixngo_bridge::exit::EXIT_UNAVAILABLE,
            _ => tixngo_bridge::exit::EXIT_SOFTWARE,
        }
    }
}

/// `tixngo-lab bench`: runs and prints, or serves as a baseline worker process.
pub async fn main(args: BenchArgs) -> ExitCode {
    if args.baseline_worker {
        // Stay alive after the work until the parent's SIGTERM, so the parent can still read
        // this process's CPU time and peak memory from /proc.
        let stop = CancellationToken::new();
        tixngo_bridge::shutdown::cancel_on_signal(stop.clone());
        let result = match baseline::Target::from_env(args.prefetch, args.baseline_concurrency, args.tickets)
        {
            Ok(target) => baseline::run(target).await,
            Err(error) => Err(error),
        };
        if result.is_ok() {
            stop.cancelled().await;
        }
        return match result {
            Ok(_) => ExitCode::from(tixngo_bridge::exit::EXIT_OK),
            Err(error) => {
                eprintln!("error: {}", tixngo_bridge::telemetry::chain(&error));
                ExitCode::from(error.exit_code())
            }
        };
    }
    match run(&args).await {
        Ok(report) => {
            if args.json {
                match serde_json::to_string_pretty(&report) {
                    Ok(text) => println!("{text}"),
                    Err(error) => {
                        eprintln!("error: {error}");
                        return ExitCode::from(tixngo_bridge::exit::EXIT_SOFTWARE);
                    }
                }
            } else {
                print!("{}", report.text());
            }
            ExitCode::from(tixngo_bridge::exit::EXIT_OK)
        }
        Err(error) => {
            eprintln!("error: {}", tixngo_bridge::telemetry::chain(&error));
            ExitCode::from(error.exit_code())
        }
    }
}

/// Everything one run shares between its phases.
struct Scenario<'a> {
    /// The options.
    args: &'a BenchArgs,
    /// Run id in names.
    run: String,
    /// The embedded simulator.
    sim: RunningSim,
    /// The bridge's settings (also written for bridge processes).
    settings: Settings,
    /// Their TOML, holding the API key: written only to a 0600 temporary file.
    settings_toml: SecretString,
    /// The baseline tenant's API key.
    baseline_key: SecretString,
    /// The bench's own broker connection (publishing, declaring, cleaning up).
    connection: Connection,
    /// Temporary files to remove at the end.
    temp_files: Vec<PathBuf>,
}

/// Runs the scenario and returns its report.
pub async fn run(args: &BenchArgs) -> Result<Report, BenchError> {
    if args.tickets == 0
        || args.max_concurrent_calls == 0
        || args.baseline_concurrency == 0
        || args.batch_max == 0
        || args.prefetch == 0
    {
        return Err(BenchError::Usage(
            "--tickets, --prefetch, --max-concurrent-calls, --baseline-concurrency and --batch-max \
             must be at least 1"
                .into(),
        ));
    }
    if args.rate.is_some_and(|r| !(r > 0.0 && r.is_finite())) {
        return Err(BenchError::Usage("--rate must be a positive number".into()));
    }
    if args.flow == Flow::Status {
        return Err(BenchError::Usage(
            "--flow must be inject, cancel or control".into(),
        ));
    }
    let mut machine = Machine::now();
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let bridge_key = uuid::Uuid::new_v4().simple().to_string();
    let baseline_key = uuid::Uuid::new_v4().simple().to_string();
    let sim_config = SimConfig {
        faults: Faults {
            latency_ms: args.tixngo_latency_ms,
            latency_max_ms: args.tixngo_latency_max_ms,
            ..Faults::none()
        },
        ..SimConfig::default()
    }
    .with_tenant(BRIDGE_ORG, &bridge_key)
    .with_tenant(BASELINE_ORG, &baseline_key);
    let sim = sim::spawn(sim_config, ([127, 0, 0, 1], 0).into()).await?;
    let toml = settings_toml(args, &run, &sim, &bridge_key);
    let settings = config::from_toml(&toml)
        .and_then(|raw| raw.validate_with(|_| None))
        .map_err(|e| BenchError::Setup(e.to_string()))?;
    let connection = Connection::connect(
        args.amqp_url.expose_secret(),
        ConnectionProperties::default().with_connection_name("tixngo-bridge bench".into()),
    )
    .await?;
    let mut scenario = Scenario {
        args,
        run,
        sim,
        settings,
        settings_toml: SecretString::from(toml),
        baseline_key: SecretString::from(baseline_key),
        connection,
        temp_files: Vec::new(),
    };
    let result = scenario.phases(&mut machine).await;
    scenario.clean_up().await;
    let (bridge, baseline) = result?;
    machine.load_end = report::load_average();
    let ratio = baseline
        .as_ref()
        .filter(|b| b.throughput_per_s > 0.0)
        .map(|b| bridge.throughput_per_s / b.throughput_per_s);
    // Calls of one organization per process × tickets per call / mean latency.
    let mean_latency_ms = match args.tixngo_latency_max_ms {
        Some(max) if max > args.tixngo_latency_ms => (args.tixngo_latency_ms + max) as f64 / 2.0,
        _ => args.tixngo_latency_ms as f64,
    };
    let bound = (mean_latency_ms > 0.0).then(|| {
        (args.processes.max(1) * args.max_concurrent_calls * args.batch_max) as f64
            / (mean_latency_ms / 1000.0)
    });
    Ok(Report {
        run: scenario.run.clone(),
        machine,
        settings: RunSettings {
            flow: args.flow.to_string(),
            tickets: args.tickets,
            tixngo_latency_ms: args.tixngo_latency_ms,
            tixngo_latency_max_ms: args.tixngo_latency_max_ms,
            prefetch: args.prefetch,
            max_concurrent_calls: args.max_concurrent_calls,
            baseline_concurrency: args.baseline_concurrency,
            batch_max: args.batch_max,
            batch_linger_ms: args.batch_linger_ms,
            processes: args.processes,
            publish_mode: if args.rate.is_some() { "rate" } else { "backlog" }.to_owned(),
            rate_per_s: args.rate,
        },
        littles_law_efficiency: bound.map(|b| bridge.throughput_per_s / b),
        littles_law_bound_per_s: bound,
        bridge,
        baseline,
        ratio,
    })
}

/// The bridge's configuration for a run: its own names, the simulator's `BENCH` tenant, and
/// nothing but the benchmarked flow's work (no HTTP endpoints, poller or notifier).
fn settings_toml(args: &BenchArgs, run: &str, sim: &RunningSim, api_key: &str) -> String {
    let quote = |s: &str| toml::Value::String(s.to_owned()).to_string();
    format!(
        "[amqp]\nurl = {url}\nconnection_name = \"tixngo-bridge-bench\"\n\
         [topology]\ntickets_exchange = \"bench-{run}.tickets\"\nevents_exchange = \"bench-{run}.events\"\n\
         dead_letter_exchange = \"bench-{run}.dead-letter\"\nqueue_prefix = \"bench-{run}\"\n\
         [worker]\nprefetch = {prefetch}\nmax_concurrent_calls = {calls}\nbatch_max = {batch}\n\
         batch_linger = \"{linger}ms\"\nshutdown_grace = \"10s\"\n\
         [http]\nenabled = false\n[status_sync]\nenabled = false\n[notifier]\nenabled = false\n\
         [[interfaces]]\norganization = \"{BRIDGE_ORG}\"\nkind = \"tixngo\"\nurl = {base}\n\
         username = \"bench@bench.example\"\napi_key = {key}\nnotification_emails = \"ops@bench.example\"\n",
        url = quote(args.amqp_url.expose_secret()),
        prefetch = args.prefetch,
        calls = args.max_concurrent_calls,
        batch = args.batch_max,
        linger = args.batch_linger_ms,
        base = quote(&sim.base_url(BRIDGE_ORG)),
        key = quote(api_key),
    )
}

/// Writes a new file readable by this user only (bridge configurations hold the AMQP password
/// and API keys); fails if it exists.
pub(crate) fn write_private(path: &std::path::Path, text: &SecretString) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(text.expose_secret().as_bytes())
}

/// Deletes a run's queues (the topology's and `extra`) and exchanges, best effort.
pub(crate) async fn delete_topology(connection: &Connection, settings: &Settings, extra: &[String]) {
    let Ok(channel) = connection.create_channel().await else {
        return;
    };
    let topology = Topology::new(&settings.topology);
    let queues = topology
        .queues
        .iter()
        .map(|q| q.name.clone())
        .chain(extra.iter().cloned());
    for queue in queues {
        let _ = channel
            .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
            .await;
    }
    for exchange in &topology.exchanges {
        let _ = channel
            .exchange_delete(exchange.name.as_str().into(), ExchangeDeleteOptions::default())
            .await;
    }
    let _ = channel.close(200, "bye".into()).await;
}

/// Who consumes during a phase.
enum Consumers {
    /// The bridge inside this process.
    Bridge {
        /// Stops it.
        shutdown: CancellationToken,
        /// Its parts.
        task: JoinHandle<Result<(), AppError>>,
    },
    /// The baseline inside this process.
    Baseline(JoinHandle<Result<usize, BenchError>>),
    /// Child processes, with their stderr files.
    Children(Vec<(Child, PathBuf)>),
}

impl Consumers {
    /// `Some(why)` when a consumer ended while the phase still needs it.
    fn ended(&mut self) -> Option<(String, String)> {
        match self {
            Consumers::Bridge { task, .. } => task
                .is_finished()
                .then(|| ("stopped".to_owned(), "the log above".to_owned())),
            Consumers::Baseline(task) => task
                .is_finished()
                .then(|| ("stopped".to_owned(), "the log above".to_owned())),
            Consumers::Children(children) => {
                children
                    .iter_mut()
                    .find_map(|(child, log)| match child.try_wait() {
                        Ok(Some(status)) => Some((status.to_string(), log.display().to_string())),
                        _ => None,
                    })
            }
        }
    }

    /// CPU and memory of the consumers (summed over processes), or of this whole process.
    fn usage(&self) -> Option<ProcUsage> {
        match self {
            Consumers::Children(children) => {
                let mut total = ProcUsage::default();
                for (child, _) in children {
                    let usage = ProcUsage::read(&child.id()?.to_string())?;
                    total.cpu += usage.cpu;
                    total.peak_rss += usage.peak_rss;
                    total.rss += usage.rss;
                }
                Some(total)
            }
            _ => ProcUsage::read("self"),
        }
    }

    fn measured_on(&self) -> &'static str {
        match self {
            Consumers::Children(_) => "child processes",
            _ => "whole bench process (simulator and publisher included)",
        }
    }

    /// Stops the consumers: SIGTERM to processes (the bridge finishes what it holds), the
    /// shutdown token in process.
    async fn stop(self) -> Result<(), BenchError> {
        match self {
            Consumers::Bridge { shutdown, task } => {
                shutdown.cancel();
                match task.await {
                    Ok(result) => result?,
                    Err(error) => return Err(BenchError::Setup(format!("bridge task failed: {error}"))),
                }
            }
            Consumers::Baseline(task) => match task.await {
                Ok(result) => {
                    result?;
                }
                Err(error) => return Err(BenchError::Setup(format!("baseline task failed: {error}"))),
            },
            Consumers::Children(children) => {
                for (child, _) in &children {
                    if let Some(pid) = child.id() {
                        // `kill` (the command) sends SIGTERM without unsafe code.
                        let _ = Command::new("kill")
                            .args(["-TERM", &pid.to_string()])
                            .status()
                            .await;
                    }
                }
                for (mut child, log) in children {
                    match tokio::time::timeout(Duration::from_secs(20), child.wait()).await {
                        Ok(_) => {
                            let _ = std::fs::remove_file(log);
                        }
                        Err(_) => {
                            let _ = child.start_kill();
                        }
                    }
                }
            }
        }
        Ok(())
    }
}

/// What polling saw until the phase's tickets were all applied.
struct Drained {
    /// Consumer usage when the last ticket arrived, before stopping.
    usage: Option<ProcUsage>,
    /// Resident memory at about every tenth of the tickets.
    rss_samples: Vec<u64>,
}

impl Scenario<'_> {
    async fn phases(&mut self, machine: &mut Machine) -> Result<(Phase, Option<Phase>), BenchError> {
        let flow = self.args.flow;
        let n = self.args.tickets;
        let channel = self.connection.create_channel().await?;
        Topology::new(&self.settings.topology).declare(&channel).await?;
        let mut quorum = FieldTable::default();
        quorum.insert("x-queue-type".into(), AMQPValue::LongString("quorum".into()));
        channel
            .queue_declare(
                self.baseline_queue().as_str().into(),
                QueueDeclareOptions {
                    durable: true,
                    ..Default::default()
                },
                quorum,
            )
            .await?;
        let _ = channel.close(200, "declared".into()).await;
        let organizations = Organizations::new(&self.settings)
            .map_err(|e| BenchError::Setup(tixngo_bridge::telemetry::chain(&e)))?;
        let organization = organizations
            .get(BRIDGE_ORG)
            .ok_or_else(|| BenchError::Setup("the bench interface is missing".into()))?
            .clone();
        if flow != Flow::Inject {
            self.seed(&organization).await?;
        }
        let bodies = (0..n)
            .map(|i| {
                Ok(serde_json::to_vec(&load::message(
                    flow, BRIDGE_ORG, &self.run, i,
                )?)?)
            })
            .collect::<Result<Vec<_>, BenchError>>()?;
        let bridge = self.phase("bridge", Arc::new(bodies)).await?;
        let baseline = if self.args.skip_baseline {
            None
        } else {
            let bodies = (0..n)
                .map(|i| Ok(load::baseline_body(flow, &organization, &self.run, i)?.into_bytes()))
                .collect::<Result<Vec<_>, BenchError>>()?;
            Some(self.phase("baseline", Arc::new(bodies)).await?)
        };
        machine.load_end = report::load_average();
        Ok((bridge, baseline))
    }

    /// For cancel and control: creates the tickets in both tenants first (not timed).
    async fn seed(&self, organization: &tixngo_bridge::orgs::Organization) -> Result<(), BenchError> {
        let http = reqwest::Client::new();
        let keys = [
            (BRIDGE_ORG, self.bridge_key()?),
            (BASELINE_ORG, self.baseline_key.expose_secret().to_owned()),
        ];
        let ids: Vec<usize> = (0..self.args.tickets).collect();
        for chunk in ids.chunks(self.sim.sim.max_batch()) {
            let documents = chunk
                .iter()
                .map(|&i| load::document(organization, &self.run, i))
                .collect::<Result<Vec<_>, _>>()?;
            let body = format!("{{\"tickets\":[{}]}}", documents.join(","));
            for (tenant, key) in &keys {
                let response = http
                    .post(self.sim.base_url(tenant))
                    .header("x-api-key", key.as_str())
                    .header(reqwest::header::CONTENT_TYPE, "application/json")
                    .body(body.clone())
                    .send()
                    .await
                    .map_err(|e| BenchError::Setup(format!("creating the tickets: {e}")))?;
                if !response.status().is_success() {
                    return Err(BenchError::Setup(format!(
                        "creating the tickets: the simulator answered {}",
                        response.status()
                    )));
                }
            }
        }
        Ok(())
    }

    fn bridge_key(&self) -> Result<String, BenchError> {
        self.settings
            .interface(BRIDGE_ORG)
            .map(|i| i.api_key.expose_secret().to_owned())
            .ok_or_else(|| BenchError::Setup("the bench interface is missing".into()))
    }

    fn baseline_queue(&self) -> String {
        format!("bench-{}.baseline", self.run)
    }

    /// Publishes and drains one phase, and measures it.
    async fn phase(&mut self, name: &'static str, bodies: Arc<Vec<Vec<u8>>>) -> Result<Phase, BenchError> {
        let args = self.args;
        let (tenant, exchange, routing_key) = if name == "bridge" {
            (
                BRIDGE_ORG,
                self.settings.topology.tickets_exchange.clone(),
                args.flow.routing_key(),
            )
        } else {
            (BASELINE_ORG, String::new(), self.baseline_queue())
        };
        let calls_before = self.calls();
        let mut publisher = load::Publisher::open(&self.connection).await?;
        let self_before = ProcUsage::read("self");
        let broker_before;
        let bench_before;
        let (consumers, started, backlog, publishing) = match args.rate {
            None => {
                let published =
                    load::publish_all(&mut publisher, &exchange, &routing_key, &bodies, None).await?;
                publisher.close().await;
                let started = Utc::now();
                broker_before = report::broker_cpu();
                bench_before = ProcUsage::read("self");
                (self.start(name).await?, started, Some(published), None)
            }
            Some(rate) => {
                broker_before = report::broker_cpu();
                bench_before = ProcUsage::read("self");
                let consumers = self.start(name).await?;
                let (exchange, routing_key, bodies) = (exchange.clone(), routing_key.clone(), bodies.clone());
                let task = tokio::spawn(async move {
                    let result =
                        load::publish_all(&mut publisher, &exchange, &routing_key, &bodies, Some(rate)).await;
                    publisher.close().await;
                    result
                });
                (consumers, Utc::now(), None, Some(task))
            }
        };
        let mut consumers = consumers;
        let drained = self.drain(name, tenant, &mut consumers).await;
        let broker_cpu = broker_before
            .zip(report::broker_cpu())
            .map(|(before, after)| after.saturating_sub(before));
        let bench_cpu = bench_before
            .zip(ProcUsage::read("self"))
            .map(|(before, after)| after.cpu.saturating_sub(before.cpu));
        let published = match publishing {
            Some(task) => Some(
                task.await
                    .map_err(|e| BenchError::Setup(format!("publisher task failed: {e}")))??,
            ),
            None => None,
        };
        let measured_on = consumers.measured_on().to_owned();
        let stopped = consumers.stop().await;
        let drained = drained?;
        stopped?;
        let (times, publish_rate) = published.or(backlog).unwrap_or_default();
        let started = if args.rate.is_some() {
            times.first().copied().unwrap_or(started)
        } else {
            started
        };
        let (latencies, last) = self.receipts(tenant, &times);
        let arrived = latencies.len();
        let elapsed = last
            .map(|last| (last - started).num_microseconds().unwrap_or_default() as f64 / 1e6)
            .unwrap_or_default()
            .max(1e-6);
        let (cpu, peak) = match (&drained.usage, &self_before, measured_on.as_str()) {
            (Some(usage), _, "child processes") => (Some(usage.cpu), Some(usage.peak_rss)),
            (Some(usage), Some(before), _) => {
                (Some(usage.cpu.saturating_sub(before.cpu)), Some(usage.peak_rss))
            }
            _ => (None, None),
        };
        Ok(Phase {
            name: name.to_owned(),
            tickets: bodies.len(),
            arrived,
            publish_per_s: publish_rate,
            elapsed_s: elapsed,
            throughput_per_s: arrived as f64 / elapsed,
            latency_ms: Latency::of(latencies),
            peak_rss_mib: peak.map(mib),
            rss_samples_mib: drained.rss_samples.into_iter().map(mib).collect(),
            cpu_s_per_1000: cpu.map(|cpu| cpu.as_secs_f64() * 1000.0 / arrived.max(1) as f64),
            broker_cpu_s_per_1000: broker_cpu.map(|cpu| cpu.as_secs_f64() * 1000.0 / arrived.max(1) as f64),
            bench_cpu_s_per_1000: bench_cpu.map(|cpu| cpu.as_secs_f64() * 1000.0 / arrived.max(1) as f64),
            measured_on,
            tixngo_calls: self.calls().saturating_sub(calls_before),
        })
    }

    /// TIXnGO calls of the benchmarked kind received so far.
    fn calls(&self) -> u64 {
        let requests = self.sim.sim.stats().requests;
        match self.args.flow {
            Flow::Cancel => requests.cancel,
            Flow::Control => requests.control,
            _ => requests.inject,
        }
    }

    /// Tickets of `tenant` the simulator has applied the flow to.
    fn applied(&self, tenant: &str) -> usize {
        let stats = self.sim.sim.stats();
        let Some(tenant) = stats.tenants.get(tenant) else {
            return 0;
        };
        let count = |status: Status| tenant.tickets_by_status.get(&status).copied().unwrap_or_default();
        let applied = match self.args.flow {
            Flow::Cancel => count(Status::Deleted) + count(Status::DeletionPending),
            Flow::Control => count(Status::Controlled),
            _ => tenant.tickets,
        };
        usize::try_from(applied).unwrap_or(usize::MAX)
    }

    /// Starts the phase's consumers.
    async fn start(&mut self, name: &'static str) -> Result<Consumers, BenchError> {
        let args = self.args;
        let target = baseline::Target {
            amqp_url: args.amqp_url.clone(),
            queue: self.baseline_queue(),
            post_url: match args.flow {
                Flow::Cancel => format!("{}/cancellations", self.sim.base_url(BASELINE_ORG)),
                Flow::Control => format!("{}/controls", self.sim.base_url(BASELINE_ORG)),
                _ => self.sim.base_url(BASELINE_ORG),
            },
            api_key: self.baseline_key.clone(),
            prefetch: args.prefetch,
            max_in_flight: args.baseline_concurrency,
            tickets: args.tickets,
        };
        if args.processes == 0 {
            return Ok(if name == "bridge" {
                let shutdown = CancellationToken::new();
                let running = tixngo_bridge::app::start(
                    self.settings.clone(),
                    vec![Part::Flow(args.flow)],
                    shutdown.clone(),
                )
                .await?;
                Consumers::Bridge {
                    shutdown,
                    task: tokio::spawn(running.wait()),
                }
            } else {
                Consumers::Baseline(tokio::spawn(baseline::run(target)))
            });
        }
        let mut children = Vec::new();
        if name == "bridge" {
            let binary = bridge_binary(args.binary.as_deref())?;
            let config = self.write_config()?;
            for i in 0..args.processes {
                let log = std::env::temp_dir().join(format!("tixngo-bench-{}-bridge-{i}.log", self.run));
                let child =
                    bridge_process(&binary, &config, args.flow.as_str(), std::fs::File::create(&log)?)
                        .spawn()?;
                children.push((child, log));
            }
        } else {
            let log = std::env::temp_dir().join(format!("tixngo-bench-{}-baseline.log", self.run));
            let lab = match &args.lab_binary {
                Some(path) => path.clone(),
                None => std::env::current_exe()?,
            };
            let child = Command::new(lab)
                .args(["bench", "--baseline-worker"])
                .args(["--prefetch", &args.prefetch.to_string()])
                .args(["--baseline-concurrency", &args.baseline_concurrency.to_string()])
                .args(["--tickets", &args.tickets.to_string()])
                .envs(target.to_env())
                .env_remove("AMQP_URL")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log)?)
                .kill_on_drop(true)
                .spawn()?;
            children.push((child, log));
        }
        Ok(Consumers::Children(children))
    }

    /// Writes the bridge configuration (it holds the AMQP password and the API key) readable by
    /// this user only.
    fn write_config(&mut self) -> Result<PathBuf, BenchError> {
        let path = std::env::temp_dir().join(format!("tixngo-bench-{}.toml", self.run));
        write_private(&path, &self.settings_toml)?;
        self.temp_files.push(path.clone());
        Ok(path)
    }

    /// Polls the simulator until every ticket of the phase was applied.
    async fn drain(
        &self,
        phase: &'static str,
        tenant: &str,
        consumers: &mut Consumers,
    ) -> Result<Drained, BenchError> {
        let n = self.args.tickets;
        let mut rss_samples = Vec::new();
        let mut next_sample = 0;
        let mut last_progress = (0, tokio::time::Instant::now());
        loop {
            let done = self.applied(tenant);
            if done * 10 >= next_sample * n {
                if let Some(usage) = consumers.usage() {
                    rss_samples.push(usage.rss);
                }
                next_sample = done * 10 / n + 1;
            }
            if done >= n {
                return Ok(Drained {
                    usage: consumers.usage(),
                    rss_samples,
                });
            }
            if let Some((status, log)) = consumers.ended() {
                return Err(BenchError::Exited { phase, status, log });
            }
            if done > last_progress.0 {
                last_progress = (done, tokio::time::Instant::now());
            } else if last_progress.1.elapsed() > STALL {
                return Err(BenchError::Stalled {
                    phase,
                    done,
                    expected: n,
                });
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// Per ticket: publish time to the simulator's receipt (when it applied the call), in ms,
    /// and the last receipt.
    fn receipts(&self, tenant: &str, published: &[DateTime<Utc>]) -> (Vec<f64>, Option<DateTime<Utc>>) {
        let mut latencies = Vec::with_capacity(published.len());
        let mut last: Option<DateTime<Utc>> = None;
        for (i, sent) in published.iter().enumerate() {
            let Some(view) = self.sim.sim.ticket(tenant, &load::ticket_id(&self.run, i)) else {
                continue;
            };
            let received = match self.args.flow {
                Flow::Inject => view.created_at,
                _ => view.updated_at,
            };
            let Some(received) = received else { continue };
            latencies.push((received - *sent).num_microseconds().unwrap_or_default() as f64 / 1000.0);
            last = Some(last.map_or(received, |l| l.max(received)));
        }
        (latencies, last)
    }

    /// Deletes the run's queues and exchanges and its temporary files.
    async fn clean_up(&mut self) {
        for path in self.temp_files.drain(..) {
            let _ = std::fs::remove_file(path);
        }
        delete_topology(&self.connection, &self.settings, &[self.baseline_queue()]).await;
        let _ = self.connection.close(200, "bye".into()).await;
    }
}

/// The `tixngo-bridge` binary to start as bridge processes: `explicit` when given, else the one
/// next to this program (cargo builds the workspace's binaries into one directory), else
/// `tixngo-bridge` on `PATH`.
pub(crate) fn bridge_binary(explicit: Option<&std::path::Path>) -> std::io::Result<PathBuf> {
    if let Some(path) = explicit {
        return Ok(path.to_owned());
    }
    let name = format!("tixngo-bridge{}", std::env::consts::EXE_SUFFIX);
    let beside = std::env::current_exe()?.with_file_name(&name);
    Ok(if beside.is_file() {
        beside
    } else {
        PathBuf::from(name)
    })
}

/// A bridge child process (`run --config CONFIG --flows FLOWS`) for `bench` and `chaos`: only
/// its own configuration file counts (`TIXNGO_BRIDGE_CONFIG` removed), logs at `warn` unless
/// `RUST_LOG` says otherwise, stderr to `stderr`, killed if its handle is dropped.
pub(crate) fn bridge_process(
    binary: &std::path::Path,
    config: &std::path::Path,
    flows: &str,
    stderr: std::fs::File,
) -> Command {
    let mut command = Command::new(binary);
    command
        .arg("run")
        .arg("--config")
        .arg(config)
        .args(["--flows", flows])
        .env(
            "RUST_LOG",
            std::env::var("RUST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .env_remove("TIXNGO_BRIDGE_CONFIG")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(stderr)
        .kill_on_drop(true);
    command
}
