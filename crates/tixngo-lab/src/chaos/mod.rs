//! `tixngo-lab chaos`: many tickets through several bridge processes while things break, then
//! a reconciliation of what S-360 was told, what TIXnGO holds and what was dead-lettered.
//!
//! One run: an embedded simulator (several tenants, 5xx, hanging calls and one outage injected),
//! `--processes` bridge processes (`tixngo-bridge run` with a generated configuration), a paced
//! confirmed publisher of a mixed plan (injections, then a cancellation or a control for some
//! tickets, shuffled in small windows so a follow-up may arrive before its injection; about 1 %
//! malformed), and a fault schedule: SIGKILL of a random bridge every few seconds (restarted at
//! once), broker faults (a restart command, or force-closing the run's connections through the
//! management API) and the TIXnGO outage. When every ticket is in its expected state (or at the
//! deadline) the bridges are stopped and [`report::Report`] counts what was lost, duplicated and
//! dead-lettered. docs/reliability.md describes it.
//!
//! A run has its own exchanges and queues (`chaos-<run>.*`), deleted at the end.

mod faults;
mod harness;
pub mod plan;
pub mod report;

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use lapin::options::BasicGetOptions;
use lapin::types::AMQPValue;
use rand::{RngExt, SeedableRng};
use secrecy::{ExposeSecret, SecretString};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use faults::{Bridges, broker_fault};
use harness::{Observed, Published, connect, declare_observer, observe, publish};
use plan::{Follow, Plan};
use report::Report;
use tixngo_bridge::broker::Topology;
use tixngo_bridge::config::{self, Settings};
use tixngo_bridge::flows::Flow;
use tixngo_sim::{self as sim, Faults, RunningSim, SimConfig, Status};

/// How often the run loop looks at faults, processes and progress.
const TICK: Duration = Duration::from_millis(250);
/// No outcome event for this long after the bridges stopped: S-360's view is complete.
const EVENTS_QUIET: Duration = Duration::from_secs(3);
/// The retry tiers the run's bridges use: their sum (231 s) outlasts the 30 s outage many times.
pub const RETRY_TIERS: &str = r#"["1s", "5s", "15s", "30s", "60s", "120s"]"#;
/// The bridges' TIXnGO request timeout; simulated hangs last longer (`--hang-ms`).
pub const REQUEST_TIMEOUT: &str = "2s";

/// How the broker is made to fail.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BrokerFaults {
    /// Run `--broker-restart-command` (a dedicated node: scripts/chaos starts one).
    Restart,
    /// Force-close the run's connections (bridges and harness) through the management API.
    Close,
    /// No broker faults.
    None,
}

/// `chaos` options.
#[derive(Debug, Clone, clap::Args)]
pub struct ChaosArgs {
    /// Tickets (well-formed; malformed messages come on top).
    #[arg(long, default_value_t = 20_000)]
    pub tickets: usize,
    /// S-360 organizations (simulator tenants), tickets spread evenly.
    #[arg(long, default_value_t = 3)]
    pub organizations: usize,
    /// Share of tickets that also get a control (the rest of the follow-ups are cancellations).
    #[arg(long, default_value_t = 0.2)]
    pub control_share: f64,
    /// Share of tickets that also get a cancellation.
    #[arg(long, default_value_t = 0.2)]
    pub cancel_share: f64,
    /// Malformed messages, in percent of the tickets: each must end as one dead letter.
    #[arg(long, default_value_t = 1.0)]
    pub malformed_percent: f64,
    /// Bridge processes.
    #[arg(long, default_value_t = 3)]
    pub processes: usize,
    /// Messages published per second (0: all at once).
    #[arg(long, default_value_t = 400.0)]
    pub rate: f64,
    /// SIGKILL a random bridge process this often, in seconds (0: never); it is restarted at once.
    #[arg(long, default_value_t = 5.0)]
    pub kill_every_secs: f64,
    /// Most SIGKILLs (default: no limit within the fault window).
    #[arg(long)]
    pub max_kills: Option<usize>,
    /// Broker fault kind.
    #[arg(long, value_enum, env = "TIXNGO_CHAOS_BROKER_FAULTS", default_value_t = BrokerFaults::Close)]
    pub broker_faults: BrokerFaults,
    /// Broker faults in the run, spread over the fault window.
    #[arg(long, default_value_t = 2)]
    pub broker_fault_count: usize,
    /// Shell command that restarts the broker (`--broker-faults restart`), e.g.
    /// `rabbitmqctl -n NODE stop_app && sleep 3 && rabbitmqctl -n NODE start_app`.
    #[arg(long, env = "TIXNGO_CHAOS_BROKER_RESTART_COMMAND")]
    pub broker_restart_command: Option<String>,
    /// RabbitMQ management API, for `--broker-faults close` (credentials from the AMQP URL).
    #[arg(
        long,
        env = "RABBITMQ_MANAGEMENT_URL",
        default_value = "http://127.0.0.1:15672"
    )]
    pub management_url: String,
    /// Share (0..1) of TIXnGO calls answered 503.
    #[arg(long, default_value_t = 0.05)]
    pub error_rate: f64,
    /// Share (0..1) of TIXnGO calls that hang past the bridge's request timeout (applied first).
    #[arg(long, default_value_t = 0.01)]
    pub timeout_rate: f64,
    /// How long a simulated hang lasts, in ms (the bridges time out after 2 s).
    #[arg(long, default_value_t = 3000)]
    pub hang_ms: u64,
    /// Length of the one full TIXnGO outage, in seconds (0: none).
    #[arg(long, default_value_t = 30)]
    pub outage_secs: u64,
    /// Length of the fault window, in seconds (default: publishing time + 15 s, at least 60 s).
    #[arg(long)]
    pub fault_window_secs: Option<f64>,
    /// Give up waiting for the expected final state after this many seconds.
    #[arg(long, default_value_t = 900)]
    pub deadline_secs: u64,
    /// Seed of the ticket mix and fault choices (default: random, printed in the report).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Print the report as JSON.
    #[arg(long)]
    pub json: bool,
    /// RabbitMQ to run against; the run's exchanges and queues are `chaos-<run>.*`.
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
}

impl ChaosArgs {
    /// Options with every default, against `amqp_url` (for tests and library callers).
    pub fn new(amqp_url: &str, tickets: usize) -> Self {
        ChaosArgs {
            tickets,
            organizations: 3,
            control_share: 0.2,
            cancel_share: 0.2,
            malformed_percent: 1.0,
            processes: 3,
            rate: 400.0,
            kill_every_secs: 5.0,
            max_kills: None,
            broker_faults: BrokerFaults::Close,
            broker_fault_count: 2,
            broker_restart_command: None,
            management_url: "http://127.0.0.1:15672".to_owned(),
            error_rate: 0.05,
            timeout_rate: 0.01,
            hang_ms: 3000,
            outage_secs: 30,
            fault_window_secs: None,
            deadline_secs: 900,
            seed: None,
            json: false,
            amqp_url: SecretString::from(amqp_url.to_owned()),
            binary: None,
        }
    }
}

/// Why a chaos run could not be carried out (a run that finds losses is not an error: its
/// report says so).
#[derive(Debug, thiserror::Error)]
pub enum ChaosError {
    /// The options make no sense.
    #[error("{0}")]
    Usage(String),
    /// RabbitMQ refused or failed an operation the harness cannot retry.
    #[error("RabbitMQ: {0}")]
    Amqp(#[from] lapin::Error),
    /// Preparing the run failed.
    #[error("chaos set-up: {0}")]
    Setup(String),
    /// A message could not be built (a defect: the examples are tested).
    #[error("chaos message: {0}")]
    Json(#[from] serde_json::Error),
    /// Starting a process, a temporary file or the simulator failed.
    #[error(transparent)]
    Io(#[from] std::io::Error),
}

impl ChaosError {
    fn exit_code(&self) -> u8 {
        match self {
            ChaosError::Usage(_) => tixngo_bridge::exit::EXIT_USAGE,
            ChaosError::Amqp(_) => tixngo_bridge::exit::EXIT_UNAVAILABLE,
            _ => tixngo_bridge::exit::EXIT_SOFTWARE,
        }
    }
}

/// Exit code of a run whose reconciliation found a loss, a duplicated side effect or an
/// unexpected (or missing) dead letter.
pub const EXIT_FAILED: u8 = 1;

/// `tixngo-lab chaos`: runs, prints the report, exits 1 unless it passed.
pub async fn main(args: ChaosArgs) -> ExitCode {
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
            if report.passed {
                ExitCode::from(tixngo_bridge::exit::EXIT_OK)
            } else {
                ExitCode::from(EXIT_FAILED)
            }
        }
        Err(error) => {
            eprintln!("error: {}", tixngo_bridge::telemetry::chain(&error));
            ExitCode::from(error.exit_code())
        }
    }
}

pub(crate) fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Runs the scenario and returns its report.
pub async fn run(args: &ChaosArgs) -> Result<Report, ChaosError> {
    check(args)?;
    let started_at = chrono::Utc::now();
    let started = Instant::now();
    let seed = args.seed.unwrap_or_else(|| rand::rng().random());
    let run = uuid::Uuid::new_v4().simple().to_string()[..8].to_owned();
    let plan = Plan::new(args, &run, seed)?;
    let keys: Vec<(String, String)> = plan
        .organizations
        .iter()
        .map(|org| (org.clone(), uuid::Uuid::new_v4().simple().to_string()))
        .collect();
    let mut sim_config = SimConfig {
        hang: Duration::from_millis(args.hang_ms),
        ..SimConfig::default()
    };
    for (org, key) in &keys {
        sim_config = sim_config.with_tenant(org, key);
    }
    let sim = sim::spawn(sim_config, ([127, 0, 0, 1], 0).into()).await?;
    let toml = settings_toml(args, &run, &sim, &keys);
    let settings = config::from_toml(&toml)
        .and_then(|raw| raw.validate_with(|_| None))
        .map_err(|e| ChaosError::Setup(e.to_string()))?;
    let dir = std::env::temp_dir().join(format!("tixngo-chaos-{run}"));
    std::fs::create_dir(&dir)?;
    let mut run_dir = RunDir {
        path: dir.clone(),
        keep: true,
    };
    let config_path = dir.join("bridge.toml");
    crate::bench::write_private(&config_path, &SecretString::from(toml))?;
    let url = args.amqp_url.clone();
    let connection = connect(&url, &format!("tixngo-chaos-{run}-harness")).await?;
    let channel = connection.create_channel().await?;
    Topology::new(&settings.topology).declare(&channel).await?;
    let observed_queue = format!("chaos-{run}.observed");
    declare_observer(&channel, &observed_queue, &settings.topology.events_exchange).await?;
    let _ = channel.close(200, "declared".into()).await;

    let mut context = Context {
        args,
        run: run.clone(),
        sim,
        settings,
        plan: Arc::new(plan),
        observed: Arc::new(Mutex::new(Observed::default())),
        published: Arc::new(Mutex::new(Published::default())),
        observed_queue,
        dir: dir.clone(),
        config_path,
    };
    let result = context.execute(seed).await;
    crate::bench::delete_topology(&connection, &context.settings, &[context.observed_queue.clone()]).await;
    let _ = connection.close(200, "bye".into()).await;
    let mut report = result?;
    report.run = run;
    report.started_at = started_at;
    report.duration_s = started.elapsed().as_secs_f64();
    run_dir.keep = !report.passed;
    report.log_dir = run_dir.keep.then(|| dir.display().to_string());
    Ok(report)
}

/// The run's temporary directory: its configuration file (secrets) is always removed, the
/// bridges' logs only when the run passed.
struct RunDir {
    /// The directory.
    path: PathBuf,
    /// Keep the logs (a failed or aborted run).
    keep: bool,
}

impl Drop for RunDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(self.path.join("bridge.toml"));
        if !self.keep {
            let _ = std::fs::remove_dir_all(&self.path);
        }
    }
}

fn check(args: &ChaosArgs) -> Result<(), ChaosError> {
    let usage = |s: &str| Err(ChaosError::Usage(s.to_owned()));
    if args.tickets == 0 || args.organizations == 0 || args.processes == 0 {
        return usage("--tickets, --organizations and --processes must be at least 1");
    }
    let shares = [
        args.control_share,
        args.cancel_share,
        args.error_rate,
        args.timeout_rate,
    ];
    if shares.iter().any(|s| !(0.0..=1.0).contains(s)) || args.control_share + args.cancel_share > 1.0 {
        return usage("shares and rates must be between 0 and 1, --control-share + --cancel-share at most 1");
    }
    if !(0.0..=100.0).contains(&args.malformed_percent) || !args.rate.is_finite() || args.rate < 0.0 {
        return usage("--malformed-percent must be 0 to 100 and --rate at least 0");
    }
    if !args.kill_every_secs.is_finite() || args.kill_every_secs < 0.0 {
        return usage("--kill-every-secs must be at least 0");
    }
    if args.broker_faults == BrokerFaults::Restart && args.broker_restart_command.is_none() {
        return usage("--broker-faults restart needs --broker-restart-command");
    }
    Ok(())
}

/// The bridges' configuration: the run's names, one interface per organization, retry tiers
/// that outlast the outage, a request timeout below the simulated hang, and only the
/// inject, cancel and control flows.
fn settings_toml(args: &ChaosArgs, run: &str, sim: &RunningSim, keys: &[(String, String)]) -> String {
    let quote = |s: &str| toml::Value::String(s.to_owned()).to_string();
    let mut text = format!(
        "[amqp]\nurl = {url}\nconnection_name = \"tixngo-chaos-{run}-bridge\"\nreconnect_max_delay = \"2s\"\n\
         [topology]\ntickets_exchange = \"chaos-{run}.tickets\"\nevents_exchange = \"chaos-{run}.events\"\n\
         dead_letter_exchange = \"chaos-{run}.dead-letter\"\nqueue_prefix = \"chaos-{run}\"\n\
         retry_tiers = {RETRY_TIERS}\n\
         [worker]\nshutdown_grace = \"10s\"\n\
         [tixngo]\nrequest_timeout = \"{REQUEST_TIMEOUT}\"\n\
         [http]\nenabled = false\n[status_sync]\nenabled = false\n[notifier]\nenabled = false\n",
        url = quote(args.amqp_url.expose_secret()),
    );
    for (org, key) in keys {
        text.push_str(&format!(
            "[[interfaces]]\norganization = {org_q}\nkind = \"tixngo\"\nurl = {base}\n\
             username = \"chaos@chaos.example\"\napi_key = {key}\nnotification_emails = \"ops@chaos.example\"\n",
            org_q = quote(org),
            base = quote(&sim.base_url(org)),
            key = quote(key),
        ));
    }
    text
}

/// Everything a run shares.
struct Context<'a> {
    /// The options.
    args: &'a ChaosArgs,
    /// Run id in names.
    run: String,
    /// The embedded simulator.
    sim: RunningSim,
    /// The bridges' settings (names of queues and exchanges).
    settings: Settings,
    /// What is published and what each ticket must end as.
    plan: Arc<Plan>,
    /// Outcome events seen.
    observed: Arc<Mutex<Observed>>,
    /// Publisher progress.
    published: Arc<Mutex<Published>>,
    /// The harness's outcome-event queue.
    observed_queue: String,
    /// Temporary directory: configuration and bridge logs.
    dir: PathBuf,
    /// The bridges' configuration file (0600).
    config_path: PathBuf,
}

/// When each fault happens, from the start of the run.
#[derive(Debug, Clone)]
struct Schedule {
    /// End of the fault window: no kill or broker fault after it.
    window: Duration,
    /// Broker faults, in order.
    broker: Vec<Duration>,
    /// The TIXnGO outage: start and end.
    outage: Option<(Duration, Duration)>,
}

impl Schedule {
    fn new(args: &ChaosArgs, messages: usize) -> Self {
        let publishing = if args.rate > 0.0 {
            messages as f64 / args.rate
        } else {
            0.0
        };
        let window = args
            .fault_window_secs
            .unwrap_or((publishing + 15.0).max(60.0))
            .max(0.0);
        let broker = match args.broker_faults {
            BrokerFaults::None => Vec::new(),
            _ => (1..=args.broker_fault_count)
                .map(|i| Duration::from_secs_f64(window * i as f64 / (args.broker_fault_count + 1) as f64))
                .collect(),
        };
        let outage = (args.outage_secs > 0).then(|| {
            let start = (window / 2.0 - args.outage_secs as f64 / 2.0).max(0.0);
            (
                Duration::from_secs_f64(start),
                Duration::from_secs_f64(start + args.outage_secs as f64),
            )
        });
        Schedule {
            window: Duration::from_secs_f64(window),
            broker,
            outage,
        }
    }

    /// When the last fault is over.
    fn end(&self) -> Duration {
        self.outage.map_or(self.window, |(_, end)| end.max(self.window))
    }
}

impl Context<'_> {
    async fn execute(&mut self, seed: u64) -> Result<Report, ChaosError> {
        let args = self.args;
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed ^ 0x9e37_79b9_7f4a_7c15);
        let schedule = Schedule::new(args, self.plan.messages.len());
        let faults = Faults {
            error_rate: args.error_rate,
            timeout_rate: args.timeout_rate,
            ..Faults::none()
        };
        self.sim.sim.set_faults(None, faults.clone());
        let stop = CancellationToken::new();
        let observer = tokio::spawn(observe(
            args.amqp_url.clone(),
            format!("tixngo-chaos-{}-harness-events", self.run),
            self.observed_queue.clone(),
            self.observed.clone(),
            stop.clone(),
        ));
        let mut bridges = Bridges::start(self, args.processes)?;
        let publisher = tokio::spawn(publish(
            args.amqp_url.clone(),
            format!("tixngo-chaos-{}-harness-publisher", self.run),
            self.settings.topology.tickets_exchange.clone(),
            self.plan.clone(),
            args.rate,
            self.published.clone(),
            stop.clone(),
        ));
        let progress = progress_bar(self.plan.tickets.len() as u64);
        let started = Instant::now();
        let deadline = started + Duration::from_secs(args.deadline_secs);
        let mut next_kill = Duration::from_secs_f64(args.kill_every_secs);
        let mut broker_faults = schedule.broker.clone().into_iter().peekable();
        let mut broker_task: Option<tokio::task::JoinHandle<Result<(), String>>> = None;
        let mut broker_done = 0usize;
        let mut broker_errors = Vec::new();
        let mut outage_state = 0u8; // 0 before, 1 during, 2 after
        let mut complete = false;
        loop {
            tokio::time::sleep(TICK).await;
            let now = started.elapsed();
            if args.kill_every_secs > 0.0
                && now >= next_kill
                && now < schedule.window
                && args.max_kills.is_none_or(|max| bridges.kills < max)
            {
                bridges.kill_random(&mut rng).await?;
                next_kill += Duration::from_secs_f64(args.kill_every_secs);
            }
            if broker_task.as_ref().is_none_or(|t| t.is_finished()) {
                if let Some(task) = broker_task.take() {
                    broker_done += 1;
                    match task.await {
                        Ok(Ok(())) => {}
                        Ok(Err(error)) => broker_errors.push(error),
                        Err(error) => broker_errors.push(error.to_string()),
                    }
                }
                if broker_faults.next_if(|at| now >= *at).is_some() {
                    broker_task = Some(tokio::spawn(broker_fault(
                        args.clone(),
                        format!("tixngo-chaos-{}", self.run),
                    )));
                }
            }
            if let Some((from, until)) = schedule.outage {
                if outage_state == 0 && now >= from {
                    self.sim.sim.set_faults(
                        None,
                        Faults {
                            outage: true,
                            ..faults.clone()
                        },
                    );
                    outage_state = 1;
                } else if outage_state == 1 && now >= until {
                    self.sim.sim.set_faults(None, faults.clone());
                    outage_state = 2;
                }
            }
            bridges.restart_exited()?;
            let done = self.in_expected_state();
            progress.set_position(done as u64);
            let faults_over =
                now >= schedule.end() && broker_task.is_none() && broker_faults.peek().is_none();
            if faults_over && outage_state != 1 {
                self.sim.sim.set_faults(None, Faults::none());
            }
            let dead_lettered = {
                let observed = lock(&self.observed);
                self.plan
                    .malformed_ids
                    .iter()
                    .filter(|id| observed.dead_lettered.contains(*id))
                    .count()
            };
            if faults_over
                && done == self.plan.tickets.len()
                && dead_lettered == self.plan.malformed_ids.len()
            {
                complete = true;
                break;
            }
            if Instant::now() >= deadline {
                break;
            }
        }
        progress.finish_and_clear();
        stop.cancel();
        let _ = publisher.await;
        // Late duplicates (a killed process's redelivered work) show up now or never.
        tokio::time::sleep(Duration::from_secs(2)).await;
        let kills = bridges.kills;
        let exits = bridges.unexpected_exits;
        let logs = bridges.stop().await;
        self.wait_quiet().await;
        observer.abort();
        let letters = self.read_dead_letters().await?;
        let reconnects = logs
            .iter()
            .filter_map(|log| std::fs::read_to_string(log).ok())
            .map(|text| text.matches("broker session ended; reconnecting").count() as u64)
            .sum();
        let published = *lock(&self.published);
        let observed = lock(&self.observed);
        Ok(report::reconcile(report::Inputs {
            args,
            seed,
            plan: &self.plan,
            sim: &self.sim.sim,
            events: &observed.events,
            letters: &letters,
            complete,
            kills,
            unexpected_exits: exits,
            broker_faults: broker_done,
            broker_errors,
            bridge_reconnects: reconnects,
            harness_reconnects: published.reconnects + observed.reconnects,
            republished: published.republished,
            confirmed: published.confirmed,
        }))
    }

    /// Tickets now in their expected state with their success events seen.
    fn in_expected_state(&self) -> usize {
        let observed = lock(&self.observed);
        self.plan
            .tickets
            .iter()
            .filter(|t| report::ticket_ok(t, &self.sim.sim, &observed.events))
            .count()
    }

    /// Waits until no outcome event arrived for [`EVENTS_QUIET`] (at most a minute).
    async fn wait_quiet(&self) {
        let until = Instant::now() + Duration::from_secs(60);
        loop {
            let last = lock(&self.observed).last_event;
            if last.is_none_or(|l| l.elapsed() >= EVENTS_QUIET) || Instant::now() >= until {
                return;
            }
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }

    /// Takes every dead letter of the run (the queues are deleted afterwards): its S-360
    /// message id (empty when it had none) and error class.
    async fn read_dead_letters(&self) -> Result<Vec<report::Letter>, ChaosError> {
        let until = Instant::now() + Duration::from_secs(120);
        let connection = loop {
            match connect(
                &self.args.amqp_url,
                &format!("tixngo-chaos-{}-harness-dlq", self.run),
            )
            .await
            {
                Ok(c) => break c,
                Err(error) if Instant::now() >= until => return Err(error.into()),
                Err(_) => tokio::time::sleep(Duration::from_millis(500)).await,
            }
        };
        let channel = connection.create_channel().await?;
        let mut letters = Vec::new();
        for flow in [Flow::Inject, Flow::Cancel, Flow::Control] {
            for queue in [
                self.settings.topology.dlq(flow),
                self.settings.topology.parked(flow),
            ] {
                while let Some(got) = channel
                    .basic_get(queue.as_str().into(), BasicGetOptions { no_ack: true })
                    .await?
                {
                    let properties = &got.delivery.properties;
                    let class = properties
                        .headers()
                        .as_ref()
                        .and_then(|h| h.inner().get("x-error-class").cloned())
                        .and_then(|v| match v {
                            AMQPValue::LongString(s) => Some(s.to_string()),
                            AMQPValue::ShortString(s) => Some(s.to_string()),
                            _ => None,
                        })
                        .unwrap_or_else(|| "unknown".to_owned());
                    letters.push(report::Letter {
                        flow: flow.to_string(),
                        message_id: properties
                            .message_id()
                            .as_ref()
                            .map(|m| m.to_string())
                            .unwrap_or_default(),
                        error_class: class,
                    });
                }
            }
        }
        let _ = channel.close(200, "bye".into()).await;
        let _ = connection.close(200, "bye".into()).await;
        Ok(letters)
    }
}

fn progress_bar(len: u64) -> indicatif::ProgressBar {
    use std::io::IsTerminal;
    if !std::io::stderr().is_terminal() {
        return indicatif::ProgressBar::hidden();
    }
    let bar = indicatif::ProgressBar::new(len);
    if let Ok(style) =
        indicatif::ProgressStyle::with_template("{elapsed_precise} [{bar:40}] {pos}/{len} tickets settled")
    {
        bar.set_style(style);
    }
    bar
}

/// A ticket's status in the simulator matches what its plan ends with.
pub(crate) fn expected_status(follow: Follow, status: Option<Status>) -> bool {
    matches!(
        (follow, status),
        (Follow::None, Some(Status::Injected))
            | (Follow::Control, Some(Status::Controlled))
            | (Follow::Cancel, Some(Status::Deleted | Status::DeletionPending))
    )
}
