//! `tixngo-lab demo`: the whole system in one process against a local RabbitMQ, for a
//! machine without Docker. It starts the TIXnGO simulator (two organizations), a small SMTP sink
//! and the bridge (every flow, the status poller and the notifier with a short window), all under
//! the queue prefix and exchanges of its own prefix (`tixngo-demo` by default), publishes the
//! realistic mix of [`publish`], moves a few tickets on the spectator side, waits until every
//! message has its outcome event, the status changes came back and the dead-letter e-mails
//! arrived, and sums it up.
//!
//! `demo --publish-only` (the docker-compose demo's publisher) only publishes the mix to a
//! configured broker, for bridges running elsewhere.

pub mod publish;
pub mod smtp_sink;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use futures::StreamExt;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions, QueueDeleteOptions};
use lapin::types::FieldTable;
use secrecy::{ExposeSecret, SecretString};
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;

pub use publish::{DemoError, Published, publish_mix, ticket_id};
pub use smtp_sink::{ReceivedMail, SmtpSink};

use tixngo_bridge::app::{AppError, Part};
use tixngo_bridge::broker::{self, BrokerError, Topology};
use tixngo_bridge::config::{self, ConfigError, Settings};
use tixngo_bridge::flows::Flow;
use tixngo_bridge::messages::OutcomeEvent;
use tixngo_sim::{self as sim, RunningSim, SimConfig, Status};

/// The broker used when neither `--amqp-url` (`AMQP_URL`) nor a configuration file names one.
pub const DEFAULT_AMQP_URL: &str = tixngo_bridge::config::LOCAL_AMQP_URL;
/// The demo's queue prefix (and exchange prefix) by default.
pub const DEFAULT_PREFIX: &str = "tixngo-demo";
/// How long the demo waits for everything by default.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(120);
/// The demo's organizations, each a simulator tenant and an interface.
pub const ORGANIZATIONS: [&str; 2] = ["ACME", "GLOBEX"];
/// Where dead letters of no known organization are reported.
pub const FALLBACK_EMAIL: &str = "bridge-ops@demo.example";
/// The spectator-side moves made once the injections are in: (ticket number, statuses in order).
const MOVES: [(usize, &[Status]); 2] = [
    (2, &[Status::Downloaded]),
    (3, &[Status::Downloaded, Status::Transferred]),
];

/// What the demo runs against and where it writes.
#[derive(Debug, Clone)]
pub struct DemoOptions {
    /// The RabbitMQ to use (its vhost included); may hold a password, so never printed as is.
    pub amqp_url: SecretString,
    /// Prefix of the demo's queues and exchanges; must contain `demo`, because the demo deletes
    /// the queues under it at start and must never reach a production prefix.
    pub prefix: String,
    /// Where the demo writes its configuration (`demo.toml`), e-mails (`mail/`) and metrics.
    pub output_dir: PathBuf,
    /// How long to wait for outcomes, status changes and e-mails before giving up.
    pub timeout: Duration,
    /// Show progress on stdout (a bar on a terminal, a few lines otherwise); off in tests.
    pub progress: bool,
}

impl DemoOptions {
    /// The defaults around `amqp_url`, writing under the system's temporary directory.
    pub fn new(amqp_url: SecretString) -> Self {
        Self {
            amqp_url,
            prefix: DEFAULT_PREFIX.to_owned(),
            output_dir: std::env::temp_dir().join("tixngo-bridge-demo"),
            timeout: DEFAULT_TIMEOUT,
            progress: false,
        }
    }
}

/// Why the demo failed.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// The prefix could reach production queues.
    #[error("the demo prefix {0:?} must contain \"demo\": the demo deletes the queues under it at start")]
    Prefix(String),
    /// RabbitMQ could not be reached at start.
    #[error("RabbitMQ is not reachable (scripts/demo starts or installs one; or pass --amqp-url)")]
    Unavailable(#[source] BrokerError),
    /// A broker operation failed after start.
    #[error("RabbitMQ")]
    Broker(#[from] BrokerError),
    /// Publishing the mix failed.
    #[error("cannot publish the mix")]
    Publish(#[from] DemoError),
    /// The generated configuration was refused (a defect, or a bad prefix or URL).
    #[error("the demo's configuration is invalid")]
    Config(#[from] ConfigError),
    /// The bridge could not start or stopped with an error.
    #[error("the bridge failed")]
    App(#[from] AppError),
    /// A local file or socket could not be used.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The simulator refused a spectator-side move.
    #[error("the simulator refused to move ticket {ticket_id} to {status}: {reason}")]
    Move {
        /// The ticket.
        ticket_id: String,
        /// The status asked for.
        status: Status,
        /// The simulator's reason.
        reason: String,
    },
    /// Something did not happen in time.
    #[error(
        "timed out after {after:?} waiting for {what}; is another bridge consuming the {prefix}.* queues?"
    )]
    Timeout {
        /// What was still missing.
        what: String,
        /// The time allowed.
        after: Duration,
        /// The demo prefix.
        prefix: String,
    },
}

impl RunError {
    /// Process exit code (see `cli.rs`).
    pub fn exit_code(&self) -> u8 {
        match self {
            RunError::Prefix(_) => tixngo_bridge::exit::EXIT_USAGE,
            RunError::Unavailable(_) => tixngo_bridge::exit::EXIT_UNAVAILABLE,
            RunError::Config(_) => tixngo_bridge::exit::EXIT_CONFIG,
            RunError::App(error) => error.exit_code(),
            _ => tixngo_bridge::exit::EXIT_SOFTWARE,
        }
    }

    fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> RunError {
        let what = what.into();
        move |source| RunError::Io { what, source }
    }
}

/// Everything the demo started; [`Demo::stop`] (or dropping it) stops it all.
pub struct Demo {
    /// The options it was started with.
    options: DemoOptions,
    /// The bridge's settings, as written to `demo.toml`.
    settings: Settings,
    /// `demo.toml`: the settings, for `dlq` commands and `run` after the demo.
    config_file: PathBuf,
    /// The embedded TIXnGO simulator.
    sim: RunningSim,
    /// The embedded SMTP server the notifier sends to.
    sink: SmtpSink,
    /// Where the bridge serves `/metrics`.
    http_address: Option<SocketAddr>,
    /// The bridge's shared state (its metrics).
    context: tixngo_bridge::context::Context,
    /// Stops the bridge.
    shutdown: CancellationToken,
    /// Stops the bridge when the demo is dropped without [`Demo::stop`].
    _stop_on_drop: tokio_util::sync::DropGuard,
    /// The bridge, until stopped.
    app: Option<JoinHandle<Result<(), AppError>>>,
    /// The demo's own connection (outcome events).
    connection: lapin::Connection,
    /// Every outcome event, from an exclusive queue bound to the events exchange.
    events: lapin::Consumer,
}

/// What happened, for the summary table.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// The run id in the ticket ids (`DEMO-<run>-<ORG>-<n>`).
    pub run: String,
    /// From publishing to the last awaited e-mail or status change.
    pub elapsed: Duration,
    /// Messages published per flow (`inject`, `cancel`, `control`).
    pub published: BTreeMap<String, usize>,
    /// Of which broken on purpose.
    pub broken: usize,
    /// `<flow>.succeeded` events per flow.
    pub delivered: BTreeMap<String, usize>,
    /// `<flow>.dead-lettered` events per flow.
    pub dead_lettered: BTreeMap<String, usize>,
    /// Dead letters by error class.
    pub dead_letters_by_class: BTreeMap<String, usize>,
    /// The e-mails the sink received.
    pub emails: Vec<ReceivedMail>,
    /// `status.changed` events by the new TIXnGO status.
    pub status_changes: BTreeMap<String, usize>,
}

impl Summary {
    /// Every `status.changed` event seen.
    pub fn status_change_count(&self) -> usize {
        self.status_changes.values().sum()
    }
}

/// Running totals while the events come in.
#[derive(Default)]
struct Tally {
    /// Outcome events of the published messages (succeeded or dead-lettered).
    outcomes: usize,
    /// The summary being built.
    summary: Summary,
    /// (ticket id, status) of every status change seen.
    seen_status: BTreeSet<(String, String)>,
    /// Addresses the notifier must write to, given the dead letters so far.
    recipients_due: BTreeSet<String>,
}

impl Tally {
    fn record(&mut self, event: OutcomeEvent, settings: &Settings) {
        if event.kind == "status.changed" {
            let status = event.tixngo_status.unwrap_or_default();
            *self.summary.status_changes.entry(status.clone()).or_default() += 1;
            self.seen_status
                .insert((event.ticket_id.unwrap_or_default(), status));
        } else if let Some(flow) = event.kind.strip_suffix(".succeeded") {
            self.outcomes += 1;
            *self.summary.delivered.entry(flow.to_owned()).or_default() += 1;
        } else if let Some(flow) = event.kind.strip_suffix(".dead-lettered") {
            self.outcomes += 1;
            *self.summary.dead_lettered.entry(flow.to_owned()).or_default() += 1;
            let class = event.error_class.unwrap_or_else(|| "unknown".to_owned());
            *self.summary.dead_letters_by_class.entry(class).or_default() += 1;
            let addresses = event
                .organization
                .as_deref()
                .and_then(|org| settings.interface(org))
                .map(|interface| interface.notification_emails.clone())
                .filter(|emails| !emails.is_empty())
                .unwrap_or_else(|| settings.notifier.fallback_emails.clone());
            self.recipients_due.extend(addresses);
        }
    }
}

/// Progress on stdout: a bar on a terminal, a line per phase otherwise, nothing when off.
struct Progress {
    /// The bar, on a terminal.
    bar: Option<ProgressBar>,
    /// Print phase lines (stdout is not a terminal).
    lines: bool,
}

impl Progress {
    fn new(enabled: bool) -> Self {
        let terminal = enabled && std::io::stdout().is_terminal();
        let bar = terminal.then(|| {
            let bar = ProgressBar::with_draw_target(Some(0), ProgressDrawTarget::stdout());
            bar.set_style(
                ProgressStyle::with_template("{spinner} [{elapsed_precise}] {bar:30} {pos}/{len} {msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_bar()),
            );
            bar.enable_steady_tick(Duration::from_millis(120));
            bar
        });
        Self {
            bar,
            lines: enabled && !terminal,
        }
    }

    fn phase(&self, message: &str, length: usize) {
        if let Some(bar) = &self.bar {
            bar.set_message(message.to_owned());
            bar.set_length(length as u64);
            bar.set_position(0);
        } else if self.lines {
            println!("{message}");
        }
    }

    fn position(&self, done: usize) {
        if let Some(bar) = &self.bar {
            bar.set_position(done as u64);
        }
    }

    fn finish(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

impl Demo {
    /// Starts the SMTP sink, the simulator and the bridge; empties the demo's queues first.
    pub async fn start(options: DemoOptions) -> Result<Demo, RunError> {
        if !options.prefix.contains("demo") {
            return Err(RunError::Prefix(options.prefix.clone()));
        }
        let maildir = options.output_dir.join("mail");
        clear_mail(&maildir).map_err(RunError::io(format!("cannot prepare {}", maildir.display())))?;
        let loopback: SocketAddr = ([127, 0, 0, 1], 0).into();
        let sink = SmtpSink::start(loopback, Some(maildir.clone()))
            .await
            .map_err(RunError::io("cannot start the SMTP sink"))?;
        let keys: Vec<(String, String)> = ORGANIZATIONS
            .iter()
            .map(|org| {
                let key = format!("{}-demo-{}", org.to_lowercase(), uuid::Uuid::new_v4().simple());
                ((*org).to_owned(), key)
            })
            .collect();
        let sim_config = keys.iter().fold(SimConfig::default(), |config, (org, key)| {
            config.with_tenant(org, key)
        });
        let sim = sim::spawn(sim_config, loopback)
            .await
            .map_err(RunError::io("cannot start the TIXnGO simulator"))?;
        let text = settings_toml(&options, &sim, sink.addr.port(), &keys);
        let settings = config::from_toml(&text)?.validate_with(|_| None)?;
        let config_file = options.output_dir.join("demo.toml");
        write_private(&config_file, &text)
            .map_err(RunError::io(format!("cannot write {}", config_file.display())))?;

        let connection = broker::connect(&settings.amqp, "demo")
            .await
            .map_err(RunError::Unavailable)?;
        let channel = connection
            .create_channel()
            .await
            .map_err(BrokerError::amqp("channel.open"))?;
        let topology = Topology::new(&settings.topology);
        let mut stale: Vec<String> = topology.queues.iter().map(|q| q.name.clone()).collect();
        stale.extend(
            settings
                .interfaces
                .keys()
                .map(|org| tixngo_bridge::poller::token_queue(&settings, org)),
        );
        for queue in stale {
            // A previous run's messages and status-sync tokens (which name another simulator's
            // diff position) would muddle this run's figures.
            channel
                .queue_delete(queue.as_str().into(), QueueDeleteOptions::default())
                .await
                .map_err(BrokerError::amqp("delete a previous demo run's queue"))?;
        }
        topology
            .declare(&channel)
            .await
            .map_err(BrokerError::amqp("declare topology"))?;
        let events_queue = channel
            .queue_declare(
                "".into(),
                QueueDeclareOptions {
                    exclusive: true,
                    auto_delete: true,
                    ..QueueDeclareOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(BrokerError::amqp("declare the demo's events queue"))?;
        channel
            .queue_bind(
                events_queue.name().as_str().into(),
                settings.topology.events_exchange.as_str().into(),
                "#".into(),
                QueueBindOptions::default(),
                FieldTable::default(),
            )
            .await
            .map_err(BrokerError::amqp("bind the demo's events queue"))?;
        let events = channel
            .basic_consume(
                events_queue.name().as_str().into(),
                "tixngo-demo-events".into(),
                BasicConsumeOptions {
                    no_ack: true,
                    ..BasicConsumeOptions::default()
                },
                FieldTable::default(),
            )
            .await
            .map_err(BrokerError::amqp("consume the demo's events queue"))?;

        let mut parts: Vec<Part> = Flow::ALL.iter().copied().map(Part::Flow).collect();
        parts.extend([Part::Poller, Part::Notifier]);
        let shutdown = CancellationToken::new();
        let running = tixngo_bridge::app::start(settings.clone(), parts, shutdown.clone()).await?;
        let http_address = running.http_address;
        let context = running.context.clone();
        let app = tokio::spawn(running.wait());
        Ok(Demo {
            options,
            settings,
            config_file,
            sim,
            sink,
            http_address,
            context,
            _stop_on_drop: shutdown.clone().drop_guard(),
            shutdown,
            app: Some(app),
            connection,
            events,
        })
    }

    /// The bridge's settings (what `demo.toml` holds).
    pub fn settings(&self) -> &Settings {
        &self.settings
    }

    /// The embedded SMTP sink.
    pub fn sink(&self) -> &SmtpSink {
        &self.sink
    }

    /// Publishes the mix, moves a few tickets in the simulator, and waits until every message
    /// has its outcome, the moves came back as status changes and every dead letter's
    /// addressee has an e-mail.
    pub async fn run(&mut self) -> Result<Summary, RunError> {
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + self.options.timeout;
        let progress = Progress::new(self.options.progress);
        let published = publish_mix(&self.settings).await?;
        let total: usize = published.by_routing_key.values().sum();
        let mut tally = Tally::default();
        tally.summary.run = published.run.clone();
        tally.summary.broken = published.broken;
        for (routing_key, count) in &published.by_routing_key {
            let flow = routing_key.strip_prefix("ticket.").unwrap_or(routing_key);
            tally.summary.published.insert(flow.to_owned(), *count);
        }

        progress.phase(
            &format!(
                "published {total} messages (run {}, {} broken on purpose); waiting for their outcomes",
                published.run, published.broken
            ),
            total,
        );
        self.pump(&mut tally, &progress, deadline, |tally, _| {
            (tally.outcomes >= total).then_some(()).ok_or_else(|| {
                (
                    tally.outcomes,
                    format!("outcome events: {} of {total}", tally.outcomes),
                )
            })
        })
        .await?;

        let mut due: BTreeSet<(String, String)> = BTreeSet::new();
        for organization in self.settings.interfaces.keys() {
            for (n, statuses) in MOVES {
                let id = ticket_id(&published.run, organization, n);
                for status in statuses {
                    self.sim
                        .sim
                        .transition(organization, &id, *status)
                        .map_err(|error| RunError::Move {
                            ticket_id: id.clone(),
                            status: *status,
                            reason: error.to_string(),
                        })?;
                    due.insert((id.clone(), status.as_str().to_owned()));
                }
            }
        }
        let recipients_due = tally.recipients_due.clone();
        progress.phase(
            &format!(
                "{} spectator-side status moves in the simulator; waiting for the status changes and the dead-letter e-mails to {}",
                due.len(),
                recipients_due.iter().cloned().collect::<Vec<_>>().join(", ")
            ),
            due.len() + recipients_due.len(),
        );
        self.pump(&mut tally, &progress, deadline, |tally, sink| {
            let status_missing: Vec<String> = due
                .difference(&tally.seen_status)
                .map(|(id, status)| format!("{id} {status}"))
                .collect();
            let mailed: BTreeSet<String> = sink
                .received()
                .into_iter()
                .flat_map(|mail| mail.recipients)
                .collect();
            let mail_missing: Vec<&String> = recipients_due.difference(&mailed).collect();
            if status_missing.is_empty() && mail_missing.is_empty() {
                return Ok(());
            }
            let done = due.len() - status_missing.len() + recipients_due.len() - mail_missing.len();
            Err((
                done,
                format!("status changes {status_missing:?} and e-mails to {mail_missing:?}"),
            ))
        })
        .await?;
        progress.finish();
        if progress.lines {
            println!("done");
        }

        let metrics = self.options.output_dir.join("metrics.txt");
        std::fs::write(&metrics, self.context.metrics.encode())
            .map_err(RunError::io(format!("cannot write {}", metrics.display())))?;
        let mut summary = tally.summary;
        summary.emails = self.sink.received();
        summary.elapsed = started.elapsed();
        Ok(summary)
    }

    /// Consumes outcome events into `tally` until `done` says so (`Ok`), or fails at `deadline`
    /// with what `done` said was missing. `done` also reports how far along it is.
    async fn pump(
        &mut self,
        tally: &mut Tally,
        progress: &Progress,
        deadline: tokio::time::Instant,
        done: impl Fn(&Tally, &SmtpSink) -> Result<(), (usize, String)>,
    ) -> Result<(), RunError> {
        loop {
            let missing = match done(tally, &self.sink) {
                Ok(()) => return Ok(()),
                Err((position, missing)) => {
                    progress.position(position);
                    missing
                }
            };
            if tokio::time::Instant::now() >= deadline {
                return Err(RunError::Timeout {
                    what: missing,
                    after: self.options.timeout,
                    prefix: self.options.prefix.clone(),
                });
            }
            match tokio::time::timeout(Duration::from_millis(200), self.events.next()).await {
                Err(_) => {}
                Ok(Some(Ok(delivery))) => match serde_json::from_slice::<OutcomeEvent>(&delivery.data) {
                    Ok(event) => tally.record(event, &self.settings),
                    Err(error) => tracing::warn!(%error, "demo: unreadable outcome event skipped"),
                },
                Ok(Some(Err(error))) => {
                    return Err(BrokerError::amqp("consume outcome events")(error).into());
                }
                Ok(None) => {
                    return Err(RunError::Io {
                        what: "the outcome events consumer".into(),
                        source: std::io::ErrorKind::UnexpectedEof.into(),
                    });
                }
            }
        }
    }

    /// Where to look after the demo: commands that work with its settings, and files. `program`
    /// is how to call this binary; `running` adds the live addresses (`--keep-running`) and a
    /// ticket of `summary`'s run to move in the simulator.
    pub fn where_next(&self, summary: &Summary, program: &str, running: bool) -> String {
        let prefix = &self.options.prefix;
        let config = shell_quote(&self.config_file.display().to_string());
        let (host, vhost) = url::Url::parse(self.options.amqp_url.expose_secret())
            .map(|url| {
                let host = url.host_str().unwrap_or("127.0.0.1").to_owned();
                let vhost = url.path().trim_start_matches('/').to_owned();
                let vhost = percent_decode(if vhost.is_empty() { "/" } else { &vhost });
                (host, vhost)
            })
            .unwrap_or_else(|_| ("127.0.0.1".to_owned(), "/".to_owned()));
        let mut text = String::from("Where to look next:\n");
        text.push_str(&format!(
            "  RabbitMQ UI     http://{host}:15672/#/queues (guest/guest by default): vhost {vhost:?}, queues {prefix}.*;\n                  the broken messages wait in {prefix}.inject.parked after their e-mail\n"
        ));
        text.push_str(&format!(
            "  dead letters    {program} dlq list --config {config}\n                  {program} dlq show --config {config} --limit 3\n"
        ));
        text.push_str(&format!(
            "  e-mails         {}\n",
            self.sink
                .maildir
                .as_deref()
                .map(|dir| format!("{}/*.eml", dir.display()))
                .unwrap_or_default()
        ));
        text.push_str(&format!(
            "  metrics         {} (at the end of the demo)\n",
            self.options.output_dir.join("metrics.txt").display()
        ));
        if running {
            if let Some(address) = self.http_address {
                text.push_str(&format!("                  live: http://{address}/metrics\n"));
            }
            let admin = self.sim.admin_url();
            let ticket = ticket_id(&summary.run, ORGANIZATIONS[0], 4);
            let ticket_url = format!("{admin}/tenants/{}/tickets/{ticket}", ORGANIZATIONS[0]);
            text.push_str(&format!(
                "  simulator       {admin}/stats and {ticket_url}\n                  \
                 move it: curl -X POST -H 'content-type: application/json' -d '{{\"to\":\"DOWNLOADED\"}}' {ticket_url}/transition\n                  \
                 (the poller reports it as status.changed within a second)\n"
            ));
        }
        text.push_str(&format!(
            "  configuration   {config} (the demo bridge's settings; API keys are throw-away)\n"
        ));
        text
    }

    /// Stops the bridge, the simulator and the sink.
    pub async fn stop(mut self) -> Result<(), RunError> {
        self.shutdown.cancel();
        let result = match self.app.take() {
            Some(app) => match app.await {
                Ok(result) => result.map_err(RunError::from),
                Err(error) => Err(RunError::App(AppError::Other(anyhow::anyhow!(
                    "bridge task failed: {error}"
                )))),
            },
            None => Ok(()),
        };
        let _ = self.connection.close(200, "demo over".into()).await;
        let _ = self.sim.shutdown().await;
        self.sink.shutdown().await;
        result
    }
}

/// Runs the whole demo and stops everything: the summary, or why it failed.
pub async fn run(options: DemoOptions) -> Result<Summary, RunError> {
    let mut demo = Demo::start(options).await?;
    let summary = demo.run().await;
    let stopped = demo.stop().await;
    let summary = summary?;
    stopped?;
    Ok(summary)
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(
            f,
            "Summary of run {} ({:.1} s)",
            self.run,
            self.elapsed.as_secs_f64()
        )?;
        writeln!(
            f,
            "  {:<10} {:>10} {:>10} {:>14}",
            "flow", "published", "delivered", "dead-lettered"
        )?;
        let flows: BTreeSet<&String> = self
            .published
            .keys()
            .chain(self.delivered.keys())
            .chain(self.dead_lettered.keys())
            .collect();
        let count = |map: &BTreeMap<String, usize>, key: &str| map.get(key).copied().unwrap_or_default();
        for flow in flows {
            writeln!(
                f,
                "  {flow:<10} {:>10} {:>10} {:>14}",
                count(&self.published, flow),
                count(&self.delivered, flow),
                count(&self.dead_lettered, flow)
            )?;
        }
        writeln!(
            f,
            "  ({} broken on purpose; controls and cancellations may wait in a retry tier until their injection is in)",
            self.broken
        )?;
        writeln!(f, "Dead letters by class")?;
        for (class, n) in &self.dead_letters_by_class {
            writeln!(f, "  {class:<20} {n:>4}")?;
        }
        writeln!(
            f,
            "E-mails received by the demo's SMTP sink: {}",
            self.emails.len()
        )?;
        for mail in &self.emails {
            writeln!(f, "  to {}: {}", mail.recipients.join(", "), mail.subject)?;
        }
        writeln!(
            f,
            "Status changes reported by the poller: {}",
            self.status_change_count()
        )?;
        for (status, n) in &self.status_changes {
            writeln!(f, "  {status:<20} {n:>4}")?;
        }
        Ok(())
    }
}

/// The demo bridge's configuration: its own exchanges and queues under `prefix`, short retry
/// tiers, a fast poller and a short notifier window, and one interface per simulator tenant.
fn settings_toml(
    options: &DemoOptions,
    sim: &RunningSim,
    smtp_port: u16,
    keys: &[(String, String)],
) -> String {
    let quote = |s: &str| toml::Value::String(s.to_owned()).to_string();
    let prefix = &options.prefix;
    let mut text = format!(
        "# Written by `tixngo-lab demo`: the settings of the demo's embedded bridge.\n\
         # Every `tixngo-bridge` command takes it with --config (the simulator and SMTP sink\n\
         # it names live only as long as the demo).\n\n\
         [amqp]\nurl = {}\nconnection_name = \"tixngo-bridge-demo\"\n\n\
         [topology]\ntickets_exchange = {}\nevents_exchange = {}\ndead_letter_exchange = {}\n\
         queue_prefix = {}\nretry_tiers = [\"2s\", \"10s\", \"1m\"]\n\n\
         [http]\nlisten = \"127.0.0.1:0\"\n\n\
         [status_sync]\ninterval = \"500ms\"\n\n\
         [notifier]\nwindow = \"3s\"\nfallback_emails = [{}]\n\n\
         [notifier.smtp]\nhost = \"127.0.0.1\"\nport = {smtp_port}\nsecurity = \"none\"\n\
         from = \"TIXnGO bridge demo <bridge@demo.example>\"\ntimeout = \"10s\"\n",
        quote(options.amqp_url.expose_secret()),
        quote(&format!("{prefix}.s360.tickets")),
        quote(&format!("{prefix}.s360.ticket-events")),
        quote(&format!("{prefix}.dead-letter")),
        quote(prefix),
        quote(FALLBACK_EMAIL),
    );
    for (org, key) in keys {
        let lower = org.to_lowercase();
        text.push_str(&format!(
            "\n[[interfaces]]\norganization = {}\nkind = \"tixngo\"\nurl = {}\nusername = {}\napi_key = {}\nnotification_emails = {}\n",
            quote(org),
            quote(&sim.base_url(org)),
            quote(&format!("admin@{lower}.example")),
            quote(key),
            quote(&format!("ops@{lower}.example")),
        ));
    }
    text
}

/// Creates `dir` and removes the `.eml` files a previous run left there.
fn clear_mail(dir: &Path) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        if path.extension().is_some_and(|x| x == "eml") {
            std::fs::remove_file(path)?;
        }
    }
    Ok(())
}

/// Writes `text` readable by the owner only (it holds the broker URL).
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    use std::io::Write;
    options.open(path)?.write_all(text.as_bytes())
}

fn shell_quote(text: &str) -> String {
    if text
        .chars()
        .all(|c| c.is_ascii_alphanumeric() || "/._-+:=@".contains(c))
    {
        text.to_owned()
    } else {
        format!("'{}'", text.replace('\'', "'\\''"))
    }
}

fn percent_decode(text: &str) -> String {
    url::form_urlencoded::parse(format!("v={}", text.replace('+', "%2B")).as_bytes())
        .next()
        .map(|(_, value)| value.into_owned())
        .unwrap_or_else(|| text.to_owned())
}
