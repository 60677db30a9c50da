//! Layered configuration: a TOML file, then `TIXNGO_BRIDGE__SECTION__KEY` environment overrides.
//!
//! Loading is two steps. [`RawSettings`] is what the file says, deserialized strictly (an unknown
//! key is an error, so a typo never silently falls back to a default). [`RawSettings::validate`]
//! then checks everything at once and either returns [`Settings`], whose secrets are resolved and
//! whose URLs are parsed, or a [`ConfigError`] listing every problem with the organization and
//! field it concerns.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::{Deserialize, Serialize};
use url::Url;

/// The local RabbitMQ with its default user: `amqp.url` when none is configured, and the default
/// of the tools that run against a local broker (`bench`, `chaos`, `demo`).
pub const LOCAL_AMQP_URL: &str = "amqp://guest:guest@127.0.0.1:5672/%2f";

use crate::flow::Flow;

mod file;
mod redact;
mod secrets;
mod validate;

pub use file::{ENV_LIST_SETTINGS, from_toml, load_with_env};
pub use redact::redact_url;
pub use secrets::secret_arg;

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
#[derive(Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct AmqpSettings {
    /// AMQP URI, vhost percent-encoded (`%2f` is `/`). Secret: it may carry a password.
    #[serde(serialize_with = "redact::url")]
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
#[derive(Clone, Serialize)]
pub struct SmtpSettings {
    /// Host name.
    pub host: String,
    /// Port.
    pub port: u16,
    /// Transport security.
    pub security: SmtpSecurity,
    /// Login and password, when the server wants them.
    #[serde(flatten)]
    pub credentials: Option<SmtpCredentials>,
    /// Sender mailbox.
    pub from: String,
    /// Connect and command timeout.
    #[serde(serialize_with = "humantime_serde::serialize")]
    pub timeout: Duration,
    /// Extra trusted CA (PEM file).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub ca_file: Option<PathBuf>,
}

/// An SMTP login.
#[derive(Clone, Serialize)]
pub struct SmtpCredentials {
    /// User name.
    pub username: String,
    /// Password (printed as `***`).
    #[serde(serialize_with = "redact::secret")]
    pub password: SecretString,
}

impl fmt::Debug for SmtpSettings {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SmtpSettings")
            .field("host", &self.host)
            .field("port", &self.port)
            .field("security", &self.security)
            .field("username", &self.credentials.as_ref().map(|c| &c.username))
            .field("password", &self.credentials.as_ref().map(|_| "***"))
            .field("from", &self.from)
            .field("timeout", &self.timeout)
            .finish()
    }
}

/// Validated notifier settings.
#[derive(Debug, Clone, Serialize)]
pub struct NotifierSettings {
    /// Run it (only when `smtp` is set too).
    pub enabled: bool,
    /// Digest window.
    #[serde(serialize_with = "humantime_serde::serialize")]
    pub window: Duration,
    /// Fallback recipients.
    pub fallback_emails: Vec<String>,
    /// Ticket ids listed per digest.
    pub max_listed: usize,
    /// SMTP back-off start.
    #[serde(serialize_with = "humantime_serde::serialize")]
    pub retry_min_delay: Duration,
    /// SMTP back-off cap.
    #[serde(serialize_with = "humantime_serde::serialize")]
    pub retry_max_delay: Duration,
    /// The server; `None`: no notifier.
    #[serde(skip_serializing_if = "Option::is_none")]
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
#[derive(Clone, Serialize)]
pub struct Interface {
    /// S-360 organization code.
    pub organization: String,
    /// Built-in mapping or template.
    pub kind: InterfaceKind,
    /// Template file, present exactly when `kind` is `TixngoWithTemplate`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub template: Option<PathBuf>,
    /// Base URL of the organization's tickets API.
    #[serde(serialize_with = "redact::display")]
    pub url: Url,
    /// TIXnGO admin account e-mail (informational).
    pub username: String,
    /// API key sent in `api_key_header`.
    #[serde(serialize_with = "redact::secret")]
    pub api_key: SecretString,
    /// Header name carrying the key.
    pub api_key_header: String,
    /// Who is told about this organization's dead letters (printed comma-separated, as written).
    #[serde(serialize_with = "redact::comma_separated")]
    pub notification_emails: Vec<String>,
    /// TIXnGO calls per second at most, if limited.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rate_limit: Option<f64>,
    /// Extra trusted CA (PEM file) for this interface: its own `ca_file`, else `tixngo.ca_file`.
    #[serde(skip_serializing_if = "Option::is_none")]
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

/// Validated settings: what the rest of the bridge runs on. Serialized, it is what
/// `config check` prints (secrets as `***`).
#[derive(Debug, Clone, Serialize)]
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
    /// Interfaces by organization code (printed as the file's `[[interfaces]]` list).
    #[serde(serialize_with = "redact::interfaces")]
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

impl Settings {
    /// The interface of `organization`, if configured.
    pub fn interface(&self, organization: &str) -> Option<&Interface> {
        self.interfaces.get(organization)
    }

    /// Flows that have a work queue, for every process role.
    pub fn flows(&self) -> &'static [Flow] {
        Flow::ALL
    }
}
