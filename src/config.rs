//! Layered configuration: a TOML file, then `TIXNGO_BRIDGE__SECTION__KEY` environment overrides.
//!
//! Loading is two steps. [`RawSettings`] is what the file says, deserialized strictly (an unknown
//! key is an error, so a typo never silently falls back to a default). [`RawSettings::validate`]
//! then checks everything at once and either returns [`Settings`], whose secrets are resolved and
//! whose URLs are parsed, or a [`ConfigError`] listing every problem with the organization and
//! field it concerns.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use url::Url;

/// The local RabbitMQ with its default user: `amqp.url` when none is configured, and the default
/// of the tools that run against a local broker (`bench`, `chaos`, `demo`).
pub const LOCAL_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

/// A command-line value that is a secret (a URL with a password): kept in a `SecretString`.
pub fn secret_arg(value: &str) -> Result<SecretString, String> {
    Ok(SecretString::from(value.to_owned()))
}

use crate::flow::Flow;

/// Default configuration file, looked up in the working directory.
pub const DEFAULT_CONFIG_FILE: &str = "tixngo-bridge.toml";

/// The configuration file option shared by every command that needs it.
#[derive(Debug, Clone, clap::Args)]
pub struct ConfigArg {
    /// Configuration file (TOML); `TIXNGO_BRIDGE__SECTION__KEY` variables override it.
    #[arg(long, short = 'c', default_value = DEFAULT_CONFIG_FILE, env = "TIXNGO_BRIDGE_CONFIG")]
    pub config: PathBuf,
}
/// Prefix of environment overrides: `TIXNGO_BRIDGE__AMQP__URL` sets `amqp.url`.
pub const ENV_PREFIX: &str = "TIXNGO_BRIDGE";
/// What every TIXnGO interface URL must end with (S-360's own rule for the interface set-up).
pub const REQUIRED_URL_SUFFIX: &str = "organizer/tickets";

/// The configuration as written, before validation.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSettings {
    /// Broker connection.
    pub amqp: AmqpSettings,
    /// Exchange and queue names, retry tiers.
    pub topology: TopologySettings,
    /// Consume-loop tuning shared by every flow.
    pub worker: WorkerSettings,
    /// HTTP client settings shared by every TIXnGO interface.
    pub tixngo: TixngoSettings,
    /// Metrics and health endpoints.
    pub http: HttpSettings,
    /// Continuous status retrieval (TIXnGO's diff endpoint → `status.changed`).
    pub status_sync: StatusSyncSettings,
    /// Dead-letter digests by e-mail.
    pub notifier: RawNotifierSettings,
    /// One TIXnGO interface per S-360 organization.
    pub interfaces: Vec<RawInterface>,
}

/// Broker connection settings.
#[derive(Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AmqpSettings {
    /// AMQP URI, vhost percent-encoded (`%2f` is `/`). Secret: it may carry a password.
    pub url: SecretString,
    /// Connection name shown by `rabbitmqctl list_connections`, to tell replicas apart.
    pub connection_name: String,
    /// First reconnect delay; doubled on each failure up to `reconnect_max_delay`.
    #[serde(with = "humantime_serde")]
    pub reconnect_min_delay: Duration,
    /// Cap of the reconnect back-off, so a long broker outage is noticed quickly once it ends.
    #[serde(with = "humantime_serde")]
    pub reconnect_max_delay: Duration,
    /// TLS for `amqps://` URLs: extra trusted CA and client certificate.
    pub tls: AmqpTlsSettings,
}

/// TLS settings of the broker connection, used with `amqps://` URLs only.
#[derive(Debug, Clone, Default, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct AmqpTlsSettings {
    /// PEM file of CA certificates trusted in addition to the system roots, for a broker whose
    /// certificate a private CA signed.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
    /// PEM file of the client certificate (and its chain), for brokers that require one
    /// (RabbitMQ `fail_if_no_peer_cert`); goes with `client_key_file`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_cert_file: Option<PathBuf>,
    /// PEM file of the client certificate's private key, unencrypted (PKCS#8, PKCS#1 or SEC1):
    /// lapin takes no key password, so the file's permissions protect it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub client_key_file: Option<PathBuf>,
}

impl Default for AmqpSettings {
    fn default() -> Self {
        Self {
            url: SecretString::from(LOCAL_AMQP_URL),
            connection_name: "tixngo-bridge".to_owned(),
            reconnect_min_delay: Duration::from_millis(200),
            reconnect_max_delay: Duration::from_secs(10),
            tls: AmqpTlsSettings::default(),
        }
    }
}

impl fmt::Debug for AmqpSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("AmqpSettings")
            .field("url", &redact_url(self.url.expose_secret()))
            .field("connection_name", &self.connection_name)
            .field("reconnect_min_delay", &self.reconnect_min_delay)
            .field("reconnect_max_delay", &self.reconnect_max_delay)
            .field("tls", &self.tls)
            .finish()
    }
}

/// Names of everything the bridge declares on the broker.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct TopologySettings {
    /// Topic exchange S-360 publishes ticket events to (`ticket.<flow>` routing keys).
    pub tickets_exchange: String,
    /// Topic exchange the bridge publishes outcomes to, for S-360 to consume.
    pub events_exchange: String,
    /// Direct exchange that routes dead letters to `<prefix>.<flow>.dlq`.
    pub dead_letter_exchange: String,
    /// Prefix of every queue name: `<prefix>.<flow>`, `<prefix>.<flow>.dlq`, …
    pub queue_prefix: String,
    /// Delayed-retry tiers, shortest first; one TTL queue per tier and flow.
    pub retry_tiers: Vec<Delay>,
    /// Deliveries of one message before the broker dead-letters it as a poison message
    /// (quorum queue `x-delivery-limit`): a message that crashes its worker cannot loop forever.
    pub delivery_limit: u32,
}

impl Default for TopologySettings {
    fn default() -> Self {
        Self {
            tickets_exchange: "s360.tickets".to_owned(),
            events_exchange: "s360.ticket-events".to_owned(),
            dead_letter_exchange: "tixngo.dead-letter".to_owned(),
            queue_prefix: "tixngo".to_owned(),
            retry_tiers: [10, 60, 600, 3600]
                .into_iter()
                .map(|s| Delay(Duration::from_secs(s)))
                .collect(),
            delivery_limit: 20,
        }
    }
}

impl TopologySettings {
    /// The retry tiers, in order.
    pub fn tiers(&self) -> Vec<Duration> {
        self.retry_tiers.iter().map(|d| d.0).collect()
    }
}

/// A duration written the human way (`"10s"`, `"1m"`, `"1h"`), for lists of durations.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
pub struct Delay(#[serde(with = "humantime_serde")] pub Duration);

/// Consume-loop settings.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct WorkerSettings {
    /// Unacked deliveries the broker may push to one consumer (AMQP `basic.qos`): what bounds
    /// the memory of a flow. To keep an organization's calls full it must be above
    /// `max_concurrent_calls × batch_max` (the tickets inside its calls) plus the next calls'
    /// worth, and above that again for several organizations busy at once.
    pub prefetch: u16,
    /// TIXnGO calls of one organization in progress at once in this process (all flows
    /// together), each carrying up to `batch_max` tickets. Bounding calls per organization, not
    /// messages per flow, is what hides a remote API's latency (throughput per organization is
    /// up to `max_concurrent_calls × batch_max / latency`) and what keeps one organization's slow
    /// or throttled TIXnGO from taking the capacity of the others.
    pub max_concurrent_calls: usize,
    /// TIXnGO calls in progress at once in this process, all organizations and flows together:
    /// the ceiling on sockets and request memory when many organizations are busy.
    pub max_total_calls: usize,
    /// Longest wait the process does while holding messages: a `Retry-After` (and any quick
    /// retry delay) up to this is waited in process; a longer `Retry-After` pauses the
    /// organization through its breaker and parks the batch in the first retry tier. It is also
    /// how long an organization may keep messages waiting for a free call while the buffer
    /// (`prefetch`) is full before they are parked the same way, so that it cannot stop the
    /// others' messages from being received.
    #[serde(with = "humantime_serde")]
    pub max_in_process_wait: Duration,
    /// Replaced by `max_concurrent_calls` and `max_total_calls`; still read so that an old
    /// configuration fails with a message saying so instead of "unknown field".
    #[serde(default, skip_serializing)]
    pub max_in_flight: Option<usize>,
    /// Quick in-process retries of a transient failure before moving to the first delay tier.
    pub in_process_retries: usize,
    /// First in-process retry delay (exponential with jitter after that).
    #[serde(with = "humantime_serde")]
    pub in_process_min_delay: Duration,
    /// Cap of the in-process retry delay.
    #[serde(with = "humantime_serde")]
    pub in_process_max_delay: Duration,
    /// Most tickets of one organization sent to TIXnGO in one call.
    pub batch_max: usize,
    /// How long a partly filled batch may wait for more tickets.
    #[serde(with = "humantime_serde")]
    pub batch_linger: Duration,
    /// Largest message body accepted; larger ones are dead-lettered as invalid.
    pub max_message_bytes: usize,
    /// How long shutdown waits for in-flight work before leaving it to redelivery.
    #[serde(with = "humantime_serde")]
    pub shutdown_grace: Duration,
}

impl Default for WorkerSettings {
    fn default() -> Self {
        Self {
            prefetch: 2048,
            max_concurrent_calls: 8,
            max_total_calls: 64,
            max_in_process_wait: Duration::from_secs(2),
            max_in_flight: None,
            in_process_retries: 3,
            in_process_min_delay: Duration::from_millis(100),
            in_process_max_delay: Duration::from_secs(2),
            batch_max: 100,
            batch_linger: Duration::from_millis(5),
            max_message_bytes: 1024 * 1024,
            shutdown_grace: Duration::from_secs(30),
        }
    }
}

/// HTTP client settings for TIXnGO.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TixngoSettings {
    /// TCP + TLS connect timeout.
    #[serde(with = "humantime_serde")]
    pub connect_timeout: Duration,
    /// Whole-request timeout; a call taking longer counts as a transient failure.
    #[serde(with = "humantime_serde")]
    pub request_timeout: Duration,
    /// Header carrying the API key unless an interface says otherwise (TIXnGO's name is not
    /// public; see docs/tixngo-api.md).
    pub api_key_header: String,
    /// Most bytes of a TIXnGO error body kept in errors and dead-letter headers.
    pub max_error_body_bytes: usize,
    /// Consecutive transient failures of one organization's TIXnGO that open its breaker.
    pub breaker_threshold: u32,
    /// How long an open breaker waits before letting one probe call through.
    #[serde(with = "humantime_serde")]
    pub breaker_open_for: Duration,
    /// PEM file of CA certificates trusted for every interface in addition to the system roots
    /// (an interface's own `ca_file` replaces this one for it).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

impl Default for TixngoSettings {
    fn default() -> Self {
        Self {
            connect_timeout: Duration::from_secs(5),
            request_timeout: Duration::from_secs(15),
            api_key_header: "X-Api-Key".to_owned(),
            max_error_body_bytes: 1024,
            breaker_threshold: 5,
            breaker_open_for: Duration::from_secs(10),
            ca_file: None,
        }
    }
}

/// The metrics and health endpoints.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct HttpSettings {
    /// Serve `/metrics`, `/healthz` and `/readyz` at all.
    pub enabled: bool,
    /// Where; port 0 picks a free port (tests run many bridges in one process).
    pub listen: SocketAddr,
}

impl Default for HttpSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            listen: SocketAddr::from(([0, 0, 0, 0], 9090)),
        }
    }
}

/// Continuous status retrieval: one poller per organization across all replicas reads TIXnGO's
/// diff endpoint and publishes `status.changed`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct StatusSyncSettings {
    /// Run the poller in `tixngo-bridge run` (the `poller` role).
    pub enabled: bool,
    /// Pause between rounds once TIXnGO has no more changes: how stale S-360's view may get.
    #[serde(with = "humantime_serde")]
    pub interval: Duration,
    /// Changes asked for per diff call.
    pub page_size: u32,
    /// Diff pages read in one round before the token goes back to the queue, so one busy
    /// organization cannot hold a poller forever and a crash repeats at most one round.
    pub max_pages_per_round: u32,
    /// First back-off after a TIXnGO error (doubled up to `error_max_delay`).
    #[serde(with = "humantime_serde")]
    pub error_min_delay: Duration,
    /// Cap of that back-off.
    #[serde(with = "humantime_serde")]
    pub error_max_delay: Duration,
}

impl Default for StatusSyncSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            interval: Duration::from_secs(5),
            page_size: 500,
            max_pages_per_round: 20,
            error_min_delay: Duration::from_secs(1),
            error_max_delay: Duration::from_secs(60),
        }
    }
}

/// How the notifier talks to its SMTP server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum SmtpSecurity {
    /// Plain SMTP (a local relay or a test server only).
    None,
    /// Plain connection upgraded with STARTTLS, which must succeed (port 587 by default).
    #[default]
    Starttls,
    /// TLS from the first byte (SMTPS, port 465 by default).
    Tls,
}

/// The SMTP server as written in the file.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawSmtpSettings {
    /// Server host name (also checked against its certificate).
    pub host: String,
    /// Port; by default 25, 587 or 465 for `none`, `starttls` and `tls`.
    pub port: Option<u16>,
    /// `none`, `starttls` (default) or `tls`.
    pub security: SmtpSecurity,
    /// Login, if the server wants one.
    pub username: Option<String>,
    /// Password, inline (prefer `password_env` or `password_file`).
    pub password: Option<SecretString>,
    /// Environment variable holding the password.
    pub password_env: Option<String>,
    /// File holding the password.
    pub password_file: Option<PathBuf>,
    /// Sender, e.g. `TIXnGO bridge <bridge@example.com>`.
    pub from: String,
    /// Connect and command timeout, so a hanging server cannot stall the notifier.
    #[serde(with = "humantime_serde::option")]
    pub timeout: Option<Duration>,
    /// Extra CA certificate (PEM) trusted for the server, for private relays.
    pub ca_file: Option<PathBuf>,
}

/// The notifier as written in the file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawNotifierSettings {
    /// Run the notifier in `tixngo-bridge run` when SMTP is configured.
    pub enabled: bool,
    /// One digest per organization, flow and error class per window: a storm gives a handful of
    /// e-mails.
    #[serde(with = "humantime_serde")]
    pub window: Duration,
    /// Who is told about dead letters of no known organization, or of one without addresses.
    pub fallback_emails: Vec<String>,
    /// Ticket ids listed in one digest (the count covers the rest).
    pub max_listed: usize,
    /// First back-off while the SMTP server refuses or is down.
    #[serde(with = "humantime_serde")]
    pub retry_min_delay: Duration,
    /// Cap of that back-off.
    #[serde(with = "humantime_serde")]
    pub retry_max_delay: Duration,
    /// The SMTP server; without it the notifier does not run.
    pub smtp: Option<RawSmtpSettings>,
}

impl Default for RawNotifierSettings {
    fn default() -> Self {
        Self {
            enabled: true,
            window: Duration::from_secs(300),
            fallback_emails: Vec::new(),
            max_listed: 50,
            retry_min_delay: Duration::from_secs(1),
            retry_max_delay: Duration::from_secs(60),
            smtp: None,
        }
    }
}

impl fmt::Debug for RawSmtpSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawSmtpSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("username", &self.username)
            .field("password", &self.password.as_ref().map(|_| "***"))
            .finish_non_exhaustive()
    }
}

/// A validated SMTP server.
#[derive(Clone)]
pub struct SmtpSettings {
    /// Host name.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Transport security.
    pub security: SmtpSecurity,
    /// Login and password, when the server wants them.
    pub credentials: Option<(String, SecretString)>,
    /// Sender mailbox.
    pub from: String,
    /// Connect and command timeout.
    pub timeout: Duration,
    /// Extra trusted CA (PEM file).
    pub ca_file: Option<PathBuf>,
}

impl fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("username", &self.credentials.as_ref().map(|(user, _)| user))
            .field("password", &self.credentials.as_ref().map(|_| "***"))
            .field("from", &self.from)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Validated notifier settings.
#[derive(Debug, Clone)]
pub struct NotifierSettings {
    /// Run it (only when `smtp` is set too).
    pub enabled: bool,
    /// Digest window.
    pub window: Duration,
    /// Fallback recipients.
    pub fallback_emails: Vec<String>,
    /// Ticket ids listed per digest.
    pub max_listed: usize,
    /// SMTP back-off start.
    pub retry_min_delay: Duration,
    /// SMTP back-off cap.
    pub retry_max_delay: Duration,
    /// The server; `None`: no notifier.
    pub smtp: Option<SmtpSettings>,
}

/// The two interface types S-360 offers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum InterfaceKind {
    /// The bridge's built-in mapping of S-360 tickets to TIXnGO tickets.
    Tixngo,
    /// The organization's own template shapes the TIXnGO ticket.
    TixngoWithTemplate,
}

/// One TIXnGO interface as written in the file.
#[derive(Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct RawInterface {
    /// S-360 organization code; messages name it in `organization`.
    pub organization: String,
    /// `tixngo` or `tixngo_with_template`.
    pub kind: Option<InterfaceKind>,
    /// Template file, required for `tixngo_with_template`.
    pub template: Option<PathBuf>,
    /// TIXnGO API URL, ending in `organizer/tickets`.
    pub url: String,
    /// Plain HTTP to a non-loopback host is refused unless this is set.
    pub allow_insecure_http: bool,
    /// PEM file of CA certificates trusted for this interface in addition to the system roots
    /// (replaces `tixngo.ca_file` for it), e.g. a staging TIXnGO behind a private CA.
    pub ca_file: Option<PathBuf>,
    /// E-mail of the organizer's TIXnGO admin account; carried, not used for authentication.
    pub username: String,
    /// The API key itself (prefer `api_key_env` or `api_key_file`).
    pub api_key: Option<SecretString>,
    /// Environment variable holding the API key.
    pub api_key_env: Option<String>,
    /// File holding the API key (trailing newline ignored), e.g. a mounted Kubernetes secret.
    pub api_key_file: Option<PathBuf>,
    /// Overrides `tixngo.api_key_header` for this interface.
    pub api_key_header: Option<String>,
    /// Comma-separated addresses told when a ticket of this organization cannot be delivered.
    pub notification_emails: String,
    /// Most TIXnGO calls per second for this organization (none: unlimited), so a backlog
    /// drained after an outage cannot overrun the organizer's API.
    pub rate_limit: Option<f64>,
}

impl fmt::Debug for RawInterface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RawInterface")
            .field("organization", &self.organization)
            .field("kind", &self.kind)
            .field("url", &self.url)
            .field("api_key", &self.api_key.as_ref().map(|_| "***"))
            .field("api_key_env", &self.api_key_env)
            .field("api_key_file", &self.api_key_file)
            .finish_non_exhaustive()
    }
}

/// A validated TIXnGO interface.
#[derive(Clone)]
pub struct Interface {
    /// S-360 organization code.
    pub organization: String,
    /// Built-in mapping or template.
    pub kind: InterfaceKind,
    /// Template file, present exactly when `kind` is `TixngoWithTemplate`.
    pub template: Option<PathBuf>,
    /// Base URL of the organization's tickets API.
    pub url: Url,
    /// TIXnGO admin account e-mail (informational).
    pub username: String,
    /// API key sent in `api_key_header`.
    pub api_key: SecretString,
    /// Header name carrying the key.
    pub api_key_header: String,
    /// Who is told about this organization's dead letters.
    pub notification_emails: Vec<String>,
    /// TIXnGO calls per second at most, if limited.
    pub rate_limit: Option<f64>,
    /// Extra trusted CA (PEM file) for this interface: its own `ca_file`, else `tixngo.ca_file`.
    pub ca_file: Option<PathBuf>,
}

impl fmt::Debug for Interface {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Interface")
            .field("organization", &self.organization)
            .field("kind", &self.kind)
            .field("template", &self.template)
            .field("url", &self.url.as_str())
            .field("username", &self.username)
            .field("api_key", &"***")
            .field("api_key_header", &self.api_key_header)
            .field("notification_emails", &self.notification_emails)
            .field("ca_file", &self.ca_file)
            .finish()
    }
}

/// Validated settings: what the rest of the bridge runs on.
#[derive(Debug, Clone)]
pub struct Settings {
    /// Broker connection.
    pub amqp: AmqpSettings,
    /// Names and retry tiers.
    pub topology: TopologySettings,
    /// Consume-loop tuning.
    pub worker: WorkerSettings,
    /// TIXnGO HTTP client settings.
    pub tixngo: TixngoSettings,
    /// Metrics and health endpoints.
    pub http: HttpSettings,
    /// Continuous status retrieval.
    pub status_sync: StatusSyncSettings,
    /// Dead-letter digests by e-mail.
    pub notifier: NotifierSettings,
    /// Interfaces by organization code.
    pub interfaces: BTreeMap<String, Interface>,
}

/// One configuration problem, located as precisely as possible.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Where: `interfaces[ACME].url`, `worker.prefetch`, or the file name.
    pub location: String,
    /// What is wrong and, where it helps, why.
    pub message: String,
}

impl fmt::Display for Problem {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.location, self.message)
    }
}

/// Configuration that cannot be used, with every problem found.
#[derive(Debug, thiserror::Error)]
#[error("invalid configuration ({} problem(s)):\n{}", .problems.len(), list(.problems))]
pub struct ConfigError {
    /// Every problem, in file order.
    pub problems: Vec<Problem>,
}

fn list(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(|p| format!("  - {p}"))
        .collect::<Vec<_>>()
        .join("\n")
}

impl ConfigError {
    fn one(location: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            problems: vec![Problem {
                location: location.into(),
                message: message.into(),
            }],
        }
    }
}

/// Reads `path` (which must exist) and the process environment, then validates.
pub fn load(path: &Path) -> Result<Settings, ConfigError> {
    let env: HashMap<String, String> = std::env::vars().collect();
    load_with_env(path, env)?.validate_with(|name| std::env::var(name).ok())
}

/// Reads `path` and the given environment map (tests pass their own), without validating.
pub fn load_with_env(path: &Path, env: HashMap<String, String>) -> Result<RawSettings, ConfigError> {
    let location = path.display().to_string();
    if !path.is_file() {
        return Err(ConfigError::one(
            location,
            "configuration file not found (pass --config FILE; config/example.toml is an annotated example)",
        ));
    }
    let overrides = EnvOverrides::new(env);
    config::Config::builder()
        .add_source(config::File::from(path).format(config::FileFormat::Toml))
        .add_source(overrides.clone())
        .build()
        .and_then(|c| c.try_deserialize::<RawSettings>())
        .map_err(|e| ConfigError::one(overrides.blame(&e).unwrap_or(location), e.to_string()))
}

/// Settings that are lists. In the environment they are written comma-separated
/// (`TIXNGO_BRIDGE__TOPOLOGY__RETRY_TIERS=5s,30s`; empty for an empty list); every other
/// setting is taken verbatim as a string and converted to the setting's type, so
/// `TIXNGO_BRIDGE__NOTIFIER__SMTP__PASSWORD=0123` stays `0123`. A test loads every setting
/// through the environment, so a new list setting missing here fails it.
pub const ENV_LIST_SETTINGS: &[&str] = &["topology.retry_tiers", "notifier.fallback_emails"];

/// The `TIXNGO_BRIDGE__SECTION__KEY` variables as a configuration source: values kept as the
/// strings they are (the `config` crate's own parsing turned `0123` into the number 123), list
/// settings split at commas, and each value's origin the variable's name, so an error names it.
#[derive(Debug, Clone)]
struct EnvOverrides {
    /// Setting path (`notifier.smtp.password`) → (variable name, value), for this process's
    /// variables with the prefix.
    values: BTreeMap<String, (String, String)>,
}

impl EnvOverrides {
    fn new(env: HashMap<String, String>) -> Self {
        let prefix = format!("{ENV_PREFIX}__");
        let values = env
            .into_iter()
            .filter_map(|(name, value)| {
                let rest = name.strip_prefix(&prefix)?;
                let key = rest
                    .split("__")
                    .map(str::to_ascii_lowercase)
                    .collect::<Vec<_>>()
                    .join(".");
                Some((key, (name, value)))
            })
            .collect();
        Self { values }
    }

    /// The variable a configuration error is about, when it is about one.
    fn blame(&self, error: &config::ConfigError) -> Option<String> {
        if let config::ConfigError::Type {
            origin: Some(origin), ..
        } = error
            && self.values.values().any(|(name, _)| name == origin)
        {
            return Some(origin.clone());
        }
        let text = error.to_string();
        self.values
            .iter()
            .find(|(key, _)| {
                text.contains(&format!("`{key}`"))
                    || text.contains(&format!("`{key}["))
                    || key
                        .rsplit('.')
                        .next()
                        .is_some_and(|last| text.contains(&format!("unknown field `{last}`")))
            })
            .map(|(_, (name, _))| name.clone())
    }
}

impl config::Source for EnvOverrides {
    fn clone_into_box(&self) -> Box<dyn config::Source + Send + Sync> {
        Box::new(self.clone())
    }

    fn collect(&self) -> Result<config::Map<String, config::Value>, config::ConfigError> {
        Ok(self
            .values
            .iter()
            .map(|(key, (name, value))| {
                let origin = Some(name);
                let kind = if ENV_LIST_SETTINGS.contains(&key.as_str()) {
                    config::ValueKind::Array(
                        value
                            .split(',')
                            .map(str::trim)
                            .filter(|item| !item.is_empty())
                            .map(|item| config::Value::new(origin, item.to_owned()))
                            .collect(),
                    )
                } else {
                    config::ValueKind::String(value.clone())
                };
                (key.clone(), config::Value::new(origin, kind))
            })
            .collect())
    }
}

/// Parses configuration from a TOML string (tests and examples).
pub fn from_toml(text: &str) -> Result<RawSettings, ConfigError> {
    toml::from_str(text).map_err(|e| ConfigError::one("configuration", e.to_string()))
}

impl RawSettings {
    /// Validates with the process environment for `api_key_env`.
    pub fn validate(self) -> Result<Settings, ConfigError> {
        self.validate_with(|name| std::env::var(name).ok())
    }

    /// Validates, looking up `api_key_env` variables with `env`.
    pub fn validate_with(self, env: impl Fn(&str) -> Option<String>) -> Result<Settings, ConfigError> {
        let mut problems = Vec::new();
        let mut push = |location: String, message: String| problems.push(Problem { location, message });

        check_amqp(&self.amqp, &mut push);
        check_topology(&self.topology, &mut push);
        check_worker(&self.worker, &mut push);
        if self.tixngo.request_timeout.is_zero() {
            push(
                "tixngo.request_timeout".into(),
                "must be greater than zero".into(),
            );
        }
        if !is_header_name(&self.tixngo.api_key_header) {
            push(
                "tixngo.api_key_header".into(),
                "is not a valid HTTP header name".into(),
            );
        }
        if let Some(path) = &self.tixngo.ca_file
            && let Err(message) = check_ca_file(path)
        {
            push("tixngo.ca_file".into(), message);
        }
        if self.interfaces.is_empty() {
            push(
                "interfaces".into(),
                "no interface configured: add one [[interfaces]] table per S-360 organization".into(),
            );
        }

        let mut interfaces = BTreeMap::new();
        let mut seen = std::collections::HashSet::new();
        for (index, raw) in self.interfaces.into_iter().enumerate() {
            let label = if raw.organization.trim().is_empty() {
                format!("interfaces[{index}]")
            } else {
                format!("interfaces[{}]", raw.organization)
            };
            if !raw.organization.trim().is_empty() && !seen.insert(raw.organization.trim().to_owned()) {
                push(
                    format!("{label}.organization"),
                    format!(
                        "organization {} has two interfaces; S-360 allows only one TIXnGO interface \
                         per organization (with two, the cancelled and controlled ticket pushes stop working)",
                        raw.organization
                    ),
                );
                continue;
            }
            if let Some(interface) = check_interface(raw, &label, &self.tixngo, &env, &mut push) {
                interfaces.insert(interface.organization.clone(), interface);
            }
        }

        check_status_sync(&self.status_sync, &mut push);
        let notifier = check_notifier(self.notifier, &env, &mut push);

        if problems.is_empty()
            && let Some(notifier) = notifier
        {
            Ok(Settings {
                amqp: self.amqp,
                topology: self.topology,
                worker: self.worker,
                tixngo: self.tixngo,
                http: self.http,
                status_sync: self.status_sync,
                notifier,
                interfaces,
            })
        } else {
            Err(ConfigError { problems })
        }
    }
}

fn check_amqp(amqp: &AmqpSettings, push: &mut impl FnMut(String, String)) {
    match Url::parse(amqp.url.expose_secret()) {
        Ok(url) if matches!(url.scheme(), "amqp" | "amqps") => {}
        Ok(url) => push(
            "amqp.url".into(),
            format!("scheme {} is not amqp or amqps", url.scheme()),
        ),
        // The parser's message never echoes the URL, so the password cannot leak through it.
        Err(e) => push("amqp.url".into(), format!("not a valid URL: {e}")),
    }
    check_amqp_tls(amqp, push);
    if amqp.reconnect_min_delay.is_zero() || amqp.reconnect_min_delay > amqp.reconnect_max_delay {
        push(
            "amqp.reconnect_min_delay".into(),
            "must be above zero and at most amqp.reconnect_max_delay".into(),
        );
    }
}

fn check_amqp_tls(amqp: &AmqpSettings, push: &mut impl FnMut(String, String)) {
    let tls = &amqp.tls;
    if *tls == AmqpTlsSettings::default() {
        return;
    }
    if Url::parse(amqp.url.expose_secret()).is_ok_and(|url| url.scheme() != "amqps") {
        push(
            "amqp.tls".into(),
            "is only used with an amqps:// URL; change amqp.url or remove [amqp.tls]".into(),
        );
    }
    if let Some(path) = &tls.ca_file
        && let Err(message) = check_ca_file(path)
    {
        push("amqp.tls.ca_file".into(), message);
    }
    match (&tls.client_cert_file, &tls.client_key_file) {
        (Some(cert), Some(key)) => {
            if let Err(message) = check_ca_file(cert) {
                push("amqp.tls.client_cert_file".into(), message);
            }
            if let Err(message) = crate::tls::read_private_key(key) {
                push("amqp.tls.client_key_file".into(), message.to_string());
            }
        }
        (None, None) => {}
        _ => push(
            "amqp.tls.client_cert_file".into(),
            "client_cert_file and client_key_file go together".into(),
        ),
    }
}

/// A PEM file that exists and holds at least one certificate.
fn check_ca_file(path: &Path) -> Result<(), String> {
    crate::tls::read_certificates(path)
        .map(|_| ())
        .map_err(|e| e.to_string())
}

fn check_topology(topology: &TopologySettings, push: &mut impl FnMut(String, String)) {
    for (field, value) in [
        ("tickets_exchange", &topology.tickets_exchange),
        ("events_exchange", &topology.events_exchange),
        ("dead_letter_exchange", &topology.dead_letter_exchange),
        ("queue_prefix", &topology.queue_prefix),
    ] {
        if value.is_empty() || value.len() > 200 || value.starts_with("amq.") {
            push(
                format!("topology.{field}"),
                "must be 1 to 200 characters and not start with the reserved `amq.`".into(),
            );
        }
    }
    let tiers = topology.tiers();
    if tiers.is_empty() {
        push(
            "topology.retry_tiers".into(),
            "at least one delay tier is needed".into(),
        );
    }
    if tiers.windows(2).any(|w| w[0] >= w[1]) || tiers.iter().any(|t| t.as_millis() == 0) {
        push(
            "topology.retry_tiers".into(),
            "tiers must be at least 1 ms and strictly increasing, e.g. [\"10s\", \"1m\", \"10m\", \"1h\"]"
                .into(),
        );
    }
    if topology.delivery_limit == 0 {
        push("topology.delivery_limit".into(), "must be at least 1".into());
    }
}

fn check_worker(worker: &WorkerSettings, push: &mut impl FnMut(String, String)) {
    if worker.prefetch == 0 {
        push(
            "worker.prefetch".into(),
            "must be at least 1 (0 would mean unlimited)".into(),
        );
    }
    if worker.max_in_flight.is_some() {
        push(
            "worker.max_in_flight".into(),
            "was replaced by worker.max_concurrent_calls (TIXnGO calls per organization, each up \
             to batch_max tickets) and worker.max_total_calls (per process): remove it"
                .into(),
        );
    }
    if worker.max_concurrent_calls == 0 {
        push("worker.max_concurrent_calls".into(), "must be at least 1".into());
    }
    if worker.max_total_calls < worker.max_concurrent_calls {
        push(
            "worker.max_total_calls".into(),
            "must be at least worker.max_concurrent_calls (one organization could otherwise take \
             every call of the process)"
                .into(),
        );
    }
    if worker.in_process_max_delay > worker.max_in_process_wait {
        push(
            "worker.in_process_max_delay".into(),
            "must be at most worker.max_in_process_wait".into(),
        );
    }
    if worker.batch_max == 0 || worker.batch_max > 1000 {
        push("worker.batch_max".into(), "must be between 1 and 1000".into());
    }
    if worker.max_message_bytes < 1024 {
        push("worker.max_message_bytes".into(), "must be at least 1024".into());
    }
    if worker.in_process_min_delay > worker.in_process_max_delay {
        push(
            "worker.in_process_min_delay".into(),
            "must be at most worker.in_process_max_delay".into(),
        );
    }
}

fn check_status_sync(sync: &StatusSyncSettings, push: &mut impl FnMut(String, String)) {
    if sync.interval.is_zero() {
        push("status_sync.interval".into(), "must be greater than zero".into());
    }
    if sync.page_size == 0 || sync.page_size > 10_000 {
        push(
            "status_sync.page_size".into(),
            "must be between 1 and 10000".into(),
        );
    }
    if sync.max_pages_per_round == 0 {
        push(
            "status_sync.max_pages_per_round".into(),
            "must be at least 1".into(),
        );
    }
    if sync.error_min_delay.is_zero() || sync.error_min_delay > sync.error_max_delay {
        push(
            "status_sync.error_min_delay".into(),
            "must be above zero and at most status_sync.error_max_delay".into(),
        );
    }
}

fn check_notifier(
    raw: RawNotifierSettings,
    env: &impl Fn(&str) -> Option<String>,
    push: &mut impl FnMut(String, String),
) -> Option<NotifierSettings> {
    let mut failed = false;
    let mut fail = |field: &str, message: String| {
        failed = true;
        push(format!("notifier.{field}"), message)
    };
    if raw.window.is_zero() {
        fail("window", "must be greater than zero".into());
    }
    if raw.max_listed == 0 {
        fail("max_listed", "must be at least 1".into());
    }
    if raw.retry_min_delay.is_zero() || raw.retry_min_delay > raw.retry_max_delay {
        fail(
            "retry_min_delay",
            "must be above zero and at most notifier.retry_max_delay".into(),
        );
    }
    for address in &raw.fallback_emails {
        if !is_email(address) {
            fail(
                "fallback_emails",
                format!("{address:?} is not a valid e-mail address"),
            );
        }
    }
    if raw.smtp.is_some() && raw.fallback_emails.is_empty() {
        fail(
            "fallback_emails",
            "required with [notifier.smtp]: who is told about dead letters of no known organization".into(),
        );
    }
    let smtp = raw.smtp.map(|smtp| {
        if smtp.host.trim().is_empty() {
            fail("smtp.host", "is required".into());
        }
        if !is_mailbox(&smtp.from) {
            fail(
                "smtp.from",
                "must be an address or `Name <address>`, e.g. `TIXnGO bridge <bridge@example.com>`".into(),
            );
        }
        let password = match resolve_secret(
            "password",
            &smtp.password,
            &smtp.password_env,
            &smtp.password_file,
            env,
        ) {
            Ok(password) => password,
            Err((field, message)) => {
                fail(&format!("smtp.{field}"), message);
                None
            }
        };
        let credentials = match (smtp.username, password) {
            (Some(user), Some(password)) => Some((user, password)),
            (None, None) => None,
            _ => {
                fail("smtp.username", "username and password go together".into());
                None
            }
        };
        if let Some(ca) = &smtp.ca_file
            && let Err(message) = check_ca_file(ca)
        {
            fail("smtp.ca_file", message);
        }
        SmtpSettings {
            port: smtp.port.unwrap_or(match smtp.security {
                SmtpSecurity::None => 25,
                SmtpSecurity::Starttls => 587,
                SmtpSecurity::Tls => 465,
            }),
            host: smtp.host.trim().to_owned(),
            security: smtp.security,
            credentials,
            from: smtp.from,
            timeout: smtp.timeout.unwrap_or(Duration::from_secs(10)),
            ca_file: smtp.ca_file,
        }
    });
    if failed {
        return None;
    }
    Some(NotifierSettings {
        enabled: raw.enabled,
        window: raw.window,
        fallback_emails: raw.fallback_emails,
        max_listed: raw.max_listed,
        retry_min_delay: raw.retry_min_delay,
        retry_max_delay: raw.retry_max_delay,
        smtp,
    })
}

/// `address` or `Name <address>`, with nothing that could start a new header line.
fn is_mailbox(text: &str) -> bool {
    if text.chars().any(char::is_control) {
        return false;
    }
    match text.rsplit_once('<') {
        Some((_, rest)) => rest.strip_suffix('>').is_some_and(is_email),
        None => is_email(text.trim()),
    }
}

fn check_interface(
    raw: RawInterface,
    label: &str,
    tixngo: &TixngoSettings,
    env: &impl Fn(&str) -> Option<String>,
    push: &mut impl FnMut(String, String),
) -> Option<Interface> {
    let mut failed = false;
    let mut fail = |field: &str, message: String| {
        failed = true;
        push(format!("{label}.{field}"), message)
    };

    let organization = raw.organization.trim().to_owned();
    if organization.is_empty() {
        fail("organization", "is required (the S-360 organization code)".into());
    } else if organization.len() > 64
        || !organization
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        fail(
            "organization",
            "must be 1 to 64 characters among A-Z a-z 0-9 _ - .".into(),
        );
    }

    let kind = match raw.kind {
        Some(kind) => kind,
        None => {
            fail("kind", "is required: `tixngo` or `tixngo_with_template`".into());
            InterfaceKind::Tixngo
        }
    };
    match (kind, &raw.template) {
        (InterfaceKind::TixngoWithTemplate, None) => fail(
            "template",
            "is required for kind `tixngo_with_template` (path to the ticket template)".into(),
        ),
        (InterfaceKind::TixngoWithTemplate, Some(path)) if !path.is_file() => fail(
            "template",
            format!("template file {} does not exist", path.display()),
        ),
        (InterfaceKind::TixngoWithTemplate, Some(path)) => {
            if let Err(error) = crate::tixngo::template::TicketTemplate::load(path) {
                fail("template", error.to_string());
            }
        }
        (InterfaceKind::Tixngo, Some(_)) => fail(
            "template",
            "is only used with kind `tixngo_with_template`; remove it or change the kind".into(),
        ),
        _ => {}
    }

    let url = match check_url(&raw.url, raw.allow_insecure_http) {
        Ok(url) => Some(url),
        Err(message) => {
            fail("url", message);
            None
        }
    };

    let api_key = match resolve_secret("api_key", &raw.api_key, &raw.api_key_env, &raw.api_key_file, env) {
        Ok(Some(key)) => Some(key),
        Ok(None) => {
            fail(
                "api_key",
                "missing: set one of api_key, api_key_env or api_key_file (the TIXnGO API key)".into(),
            );
            None
        }
        Err((field, message)) => {
            fail(&field, message);
            None
        }
    };
    if let Some(key) = &api_key
        && !key.expose_secret().chars().all(|c| c.is_ascii_graphic())
    {
        fail(
            "api_key",
            "contains characters that cannot be sent in an HTTP header".into(),
        );
    }

    let api_key_header = raw
        .api_key_header
        .clone()
        .unwrap_or_else(|| tixngo.api_key_header.clone());
    if !is_header_name(&api_key_header) {
        fail("api_key_header", "is not a valid HTTP header name".into());
    }

    let mut notification_emails = Vec::new();
    for address in raw.notification_emails.split(',').map(str::trim) {
        if address.is_empty() {
            continue;
        }
        if is_email(address) {
            notification_emails.push(address.to_owned());
        } else {
            fail(
                "notification_emails",
                format!("{address:?} is not a valid e-mail address"),
            );
        }
    }

    if let Some(rate) = raw.rate_limit
        && !(rate.is_finite() && (0.01..=100_000.0).contains(&rate))
    {
        fail(
            "rate_limit",
            "must be between 0.01 and 100000 TIXnGO calls per second".into(),
        );
    }

    if let Some(path) = &raw.ca_file
        && let Err(message) = check_ca_file(path)
    {
        fail("ca_file", message);
    }
    let ca_file = raw.ca_file.clone().or_else(|| tixngo.ca_file.clone());

    if failed {
        return None;
    }
    Some(Interface {
        organization,
        kind,
        template: raw.template,
        url: url?,
        username: raw.username,
        api_key: api_key?,
        api_key_header,
        notification_emails,
        rate_limit: raw.rate_limit,
        ca_file,
    })
}

/// A secret given inline, by environment variable or by file (trailing newline ignored).
/// `Ok(None)`: none given. `Err((field, message))`: `field` is `name`, `name_env` or `name_file`.
fn resolve_secret(
    name: &str,
    inline: &Option<SecretString>,
    env_var: &Option<String>,
    file: &Option<PathBuf>,
    env: &impl Fn(&str) -> Option<String>,
) -> Result<Option<SecretString>, (String, String)> {
    match (inline, env_var, file) {
        (Some(value), None, None) => Ok(Some(value.clone())),
        (None, Some(var), None) => match env(var) {
            Some(value) if !value.trim().is_empty() => Ok(Some(SecretString::from(value.trim().to_owned()))),
            _ => Err((
                format!("{name}_env"),
                format!("environment variable {var} is not set or empty"),
            )),
        },
        (None, None, Some(path)) => match std::fs::read_to_string(path) {
            Ok(value) if !value.trim().is_empty() => Ok(Some(SecretString::from(value.trim().to_owned()))),
            Ok(_) => Err((format!("{name}_file"), format!("{} is empty", path.display()))),
            Err(e) => Err((
                format!("{name}_file"),
                format!("cannot read {}: {e}", path.display()),
            )),
        },
        (None, None, None) => Ok(None),
        _ => Err((
            name.to_owned(),
            format!("set only one of {name}, {name}_env and {name}_file"),
        )),
    }
}

fn check_url(raw: &str, allow_insecure_http: bool) -> Result<Url, String> {
    let url = Url::parse(raw.trim()).map_err(|e| format!("{raw:?} is not a valid URL: {e}"))?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err("must not carry credentials; put the API key in api_key_env or api_key_file".into());
    }
    if !url.path().trim_end_matches('/').ends_with(REQUIRED_URL_SUFFIX) || url.path().ends_with('/') {
        return Err(format!(
            "{} must end with `{REQUIRED_URL_SUFFIX}` (S-360's rule for TIXnGO interface URLs)",
            url.as_str()
        ));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err("must not have a query string or fragment".into());
    }
    match url.scheme() {
        "https" => Ok(url),
        "http" if allow_insecure_http || is_loopback(&url) => Ok(url),
        "http" => Err(format!(
            "plain http to {} would send the API key unencrypted; use https, or set allow_insecure_http = true",
            url.host_str().unwrap_or("?")
        )),
        other => Err(format!("scheme {other} is not http or https")),
    }
}

fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        None => false,
    }
}

fn is_header_name(name: &str) -> bool {
    !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b))
}

/// A deliberately plain check (one `@`, a dotted domain, no spaces or control characters): the
/// SMTP server has the last word, this catches typos and header injection at start-up.
pub fn is_email(address: &str) -> bool {
    let Some((local, domain)) = address.split_once('@') else {
        return false;
    };
    !local.is_empty()
        && local.len() <= 64
        && domain.len() <= 253
        && domain.contains('.')
        && !domain.starts_with('.')
        && !domain.ends_with('.')
        && !domain.contains('@')
        && address.chars().all(|c| {
            c.is_ascii_graphic() && !matches!(c, '<' | '>' | ',' | ';' | '"' | '(' | ')' | '[' | ']' | '\\')
        })
}

/// Replaces the password of a URL with `***`, for display.
pub fn redact_url(raw: &str) -> String {
    match Url::parse(raw) {
        Ok(mut url) => {
            if url.password().is_some() {
                let _ = url.set_password(Some("***"));
            }
            url.to_string()
        }
        Err(_) => "<unparsable URL>".to_owned(),
    }
}

impl Settings {
    /// The interface of `organization`, if configured.
    pub fn interface(&self, organization: &str) -> Option<&Interface> {
        self.interfaces.get(organization)
    }

    /// The effective configuration as TOML, secrets replaced by `***` (for `config check`).
    pub fn redacted_toml(&self) -> String {
        let interfaces: Vec<toml::Value> = self
            .interfaces
            .values()
            .map(|i| {
                let mut t = toml::map::Map::new();
                t.insert("organization".into(), i.organization.clone().into());
                t.insert(
                    "kind".into(),
                    match i.kind {
                        InterfaceKind::Tixngo => "tixngo",
                        InterfaceKind::TixngoWithTemplate => "tixngo_with_template",
                    }
                    .into(),
                );
                if let Some(template) = &i.template {
                    t.insert("template".into(), template.display().to_string().into());
                }
                t.insert("url".into(), i.url.to_string().into());
                t.insert("username".into(), i.username.clone().into());
                t.insert("api_key".into(), "***".into());
                t.insert("api_key_header".into(), i.api_key_header.clone().into());
                t.insert(
                    "notification_emails".into(),
                    i.notification_emails.join(", ").into(),
                );
                if let Some(rate) = i.rate_limit {
                    t.insert("rate_limit".into(), rate.into());
                }
                if let Some(ca) = &i.ca_file {
                    t.insert("ca_file".into(), ca.display().to_string().into());
                }
                toml::Value::Table(t)
            })
            .collect();
        let mut root = toml::map::Map::new();
        let mut amqp = toml::map::Map::new();
        amqp.insert("url".into(), redact_url(self.amqp.url.expose_secret()).into());
        amqp.insert("connection_name".into(), self.amqp.connection_name.clone().into());
        amqp.insert(
            "reconnect_min_delay".into(),
            humantime::format_duration(self.amqp.reconnect_min_delay)
                .to_string()
                .into(),
        );
        amqp.insert(
            "reconnect_max_delay".into(),
            humantime::format_duration(self.amqp.reconnect_max_delay)
                .to_string()
                .into(),
        );
        if let Ok(tls) = toml::Value::try_from(&self.amqp.tls) {
            amqp.insert("tls".into(), tls);
        }
        root.insert("amqp".into(), toml::Value::Table(amqp));
        for (key, value) in [
            ("topology", toml::Value::try_from(&self.topology)),
            ("worker", toml::Value::try_from(&self.worker)),
            ("tixngo", toml::Value::try_from(&self.tixngo)),
            ("http", toml::Value::try_from(&self.http)),
            ("status_sync", toml::Value::try_from(&self.status_sync)),
        ] {
            if let Ok(value) = value {
                root.insert(key.into(), value);
            }
        }
        root.insert("notifier".into(), self.redacted_notifier());
        root.insert("interfaces".into(), toml::Value::Array(interfaces));
        toml::to_string_pretty(&toml::Value::Table(root)).unwrap_or_default()
    }

    fn redacted_notifier(&self) -> toml::Value {
        let n = &self.notifier;
        let duration = |d: Duration| toml::Value::from(humantime::format_duration(d).to_string());
        let mut t = toml::map::Map::new();
        t.insert("enabled".into(), n.enabled.into());
        t.insert("window".into(), duration(n.window));
        t.insert("fallback_emails".into(), n.fallback_emails.clone().into());
        t.insert(
            "max_listed".into(),
            i64::try_from(n.max_listed).unwrap_or(i64::MAX).into(),
        );
        t.insert("retry_min_delay".into(), duration(n.retry_min_delay));
        t.insert("retry_max_delay".into(), duration(n.retry_max_delay));
        if let Some(smtp) = &n.smtp {
            let mut m = toml::map::Map::new();
            m.insert("host".into(), smtp.host.clone().into());
            m.insert("port".into(), i64::from(smtp.port).into());
            m.insert(
                "security".into(),
                match smtp.security {
                    SmtpSecurity::None => "none",
                    SmtpSecurity::Starttls => "starttls",
                    SmtpSecurity::Tls => "tls",
                }
                .into(),
            );
            if let Some((user, _)) = &smtp.credentials {
                m.insert("username".into(), user.clone().into());
                m.insert("password".into(), "***".into());
            }
            m.insert("from".into(), smtp.from.clone().into());
            m.insert("timeout".into(), duration(smtp.timeout));
            if let Some(ca) = &smtp.ca_file {
                m.insert("ca_file".into(), ca.display().to_string().into());
            }
            t.insert("smtp".into(), toml::Value::Table(m));
        }
        toml::Value::Table(t)
    }

    /// Flows that have a work queue, for every process role.
    pub fn flows(&self) -> &'static [Flow] {
        Flow::ALL
    }
}
