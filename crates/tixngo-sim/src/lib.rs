//! Built-in TIXnGO simulator (see docs/tixngo-api.md).
//!
//! It speaks the TIXnGO contract the bridge assumes (inject, cancel, control, status, diff)
//! for any number of tenants (S-360 organizations), each at `/{tenant}/organizer/tickets` with its
//! own API key, plus an admin API under `/admin` to inject faults, move tickets on the
//! spectator side, and inspect what happened.
//!
//! It reads requests as raw JSON and shares no types with the bridge's TIXnGO client, so that a
//! contract mistake in one cannot hide in the other.
//!
//! ```no_run
//! # async fn demo() -> std::io::Result<()> {
//! use tixngo_sim::{self as sim, SimConfig};
//! let running = sim::spawn(SimConfig::default().with_tenant("acme", "secret"), "127.0.0.1:0".parse().unwrap()).await?;
//! let url = sim::base_url(running.addr, "acme"); // http://127.0.0.1:PORT/acme/organizer/tickets
//! # let _ = url; Ok(()) }
//! ```

mod admin;
mod api;
mod faults;
mod reply;
mod routes;
mod simulator;
mod state;
mod stats;
mod status;
mod tls;
mod validate;

use std::fmt;
use std::future::Future;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use anyhow::Context;
use axum::http::HeaderName;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use api::{DIFF_DEFAULT_LIMIT, DIFF_MAX_LIMIT};
pub use faults::{Faults, RedirectFault};
pub use simulator::Simulator;
pub use state::{ChangeRecord, HistoryEntry, TicketView, Transition, TransitionError};
pub use stats::{CallCounts, FaultCounts, KindCounts, RequestStats, SideEffects, Stats, TenantStats};
pub use status::{RuleViolation, Status};
pub use tls::{SimTls, SimTlsError};
pub use validate::{FieldError, MAX_BARCODE_CHARS, MAX_TICKET_ID_CHARS};

/// Default listening address of `tixngo-sim`.
pub const DEFAULT_LISTEN: &str = "127.0.0.1:8089";
/// Default name of the header carrying the API key.
pub const DEFAULT_API_KEY_HEADER: &str = "X-Api-Key";
/// Default most items per batch call.
pub const DEFAULT_MAX_BATCH: usize = 1000;
/// Default duration of a simulated timeout.
pub const DEFAULT_HANG: Duration = Duration::from_secs(60);

/// A tenant (S-360 organization) and its API key. `Debug` never shows the key.
#[derive(Clone, PartialEq, Eq)]
pub struct TenantSpec {
    /// The organization name, used as the first URL path segment.
    pub org: String,
    /// The API key its calls must carry (a secret: never logged).
    pub api_key: String,
}

impl fmt::Debug for TenantSpec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TenantSpec")
            .field("org", &self.org)
            .field("api_key", &"<redacted>")
            .finish()
    }
}

impl std::str::FromStr for TenantSpec {
    type Err = String;

    /// Parses `ORG=KEY`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (org, key) = s.split_once('=').ok_or_else(|| "expected ORG=KEY".to_owned())?;
        admin::check_tenant_name(org)?;
        if key.is_empty() {
            return Err("the API key must not be empty".to_owned());
        }
        Ok(TenantSpec {
            org: org.to_owned(),
            api_key: key.to_owned(),
        })
    }
}

fn parse_tenant(s: &str) -> Result<TenantSpec, String> {
    s.parse()
}

fn parse_header_name(s: &str) -> Result<HeaderName, String> {
    HeaderName::from_bytes(s.as_bytes()).map_err(|e| format!("invalid header name: {e}"))
}

fn parse_rate(s: &str) -> Result<f64, String> {
    match s.parse::<f64>() {
        Ok(r) if (0.0..=1.0).contains(&r) => Ok(r),
        _ => Err("expected a number from 0 to 1".to_owned()),
    }
}

fn parse_max_batch(s: &str) -> Result<usize, String> {
    match s.parse::<usize>() {
        Ok(n) if n >= 1 => Ok(n),
        _ => Err("expected a whole number of at least 1".to_owned()),
    }
}

/// Command-line options of `tixngo-sim`.
#[derive(Debug, Clone, clap::Parser)]
#[command(
    name = "tixngo-sim",
    version,
    about = "A TIXnGO API simulator (docs/tixngo-api.md)"
)]
pub struct SimArgs {
    /// Address to listen on (port 0 picks a free port; the address is logged).
    #[arg(long, default_value = DEFAULT_LISTEN)]
    pub listen: SocketAddr,

    /// A tenant (S-360 organization) and its API key, as ORG=KEY; repeat for more tenants.
    /// More can be added at run time with PUT /admin/tenants/{tenant}.
    #[arg(
        long = "tenant",
        value_name = "ORG=KEY",
        value_parser = parse_tenant,
        env = "TIXNGO_SIM_TENANTS",
        value_delimiter = ',',
        hide_env_values = true
    )]
    pub tenants: Vec<TenantSpec>,

    /// Name of the header carrying the API key (the real one is not public, so it is configurable).
    #[arg(long, default_value = DEFAULT_API_KEY_HEADER, value_parser = parse_header_name)]
    pub api_key_header: HeaderName,

    /// Most items accepted in one inject, cancel or control call (more: 413).
    #[arg(long, default_value_t = DEFAULT_MAX_BATCH, value_parser = parse_max_batch)]
    pub max_batch: usize,

    /// Delay added to every tenant API call, in ms (exercises timeouts and concurrency).
    #[arg(long, default_value_t = 0)]
    pub latency_ms: u64,

    /// Upper bound of a uniformly random delay (from --latency-ms), in ms.
    #[arg(long)]
    pub latency_max_ms: Option<u64>,

    /// Share (0 to 1) of tenant API calls answered 503 (transient-error path).
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    pub error_rate: f64,

    /// Share (0 to 1) of tenant API calls that hang so the client times out.
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    pub timeout_rate: f64,

    /// Share (0 to 1) of tenant API calls answered 429 with Retry-After.
    #[arg(long, default_value_t = 0.0, value_parser = parse_rate)]
    pub rate_limit_rate: f64,

    /// Retry-After value (seconds) sent with simulated 429s.
    #[arg(long, default_value_t = 1)]
    pub retry_after_secs: u64,

    /// How long a simulated timeout hangs, in seconds.
    #[arg(long, default_value_t = DEFAULT_HANG.as_secs())]
    pub hang_secs: u64,

    /// Serve HTTPS with this PEM certificate chain (server certificate first); needs --tls-key.
    #[arg(long, value_name = "FILE", requires = "tls_key")]
    pub tls_cert: Option<PathBuf>,

    /// The PEM private key (unencrypted) of --tls-cert.
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,
}

impl SimArgs {
    /// The simulator configuration these options describe.
    pub fn to_config(&self) -> anyhow::Result<SimConfig> {
        let faults = Faults {
            latency_ms: self.latency_ms,
            latency_max_ms: self.latency_max_ms,
            error_rate: self.error_rate,
            timeout_rate: self.timeout_rate,
            rate_limit_rate: self.rate_limit_rate,
            retry_after_secs: self.retry_after_secs,
            ..Faults::none()
        };
        faults.validate().map_err(anyhow::Error::msg)?;
        Ok(SimConfig {
            api_key_header: self.api_key_header.clone(),
            max_batch: self.max_batch,
            tenants: self.tenants.clone(),
            faults,
            hang: Duration::from_secs(self.hang_secs),
        })
    }
}

/// Configuration of a [`Simulator`].
#[derive(Debug, Clone)]
pub struct SimConfig {
    /// Header carrying the API key (`X-Api-Key` by default): the real name is not public.
    pub api_key_header: HeaderName,
    /// Most items accepted in one batch call (1000 by default, as S-360's batches).
    pub max_batch: usize,
    /// Tenants registered at start.
    pub tenants: Vec<TenantSpec>,
    /// Global faults at start.
    pub faults: Faults,
    /// How long a simulated timeout hangs (60 s by default: longer than any sane client timeout).
    pub hang: Duration,
}

impl Default for SimConfig {
    fn default() -> Self {
        SimConfig {
            api_key_header: HeaderName::from_static("x-api-key"),
            max_batch: DEFAULT_MAX_BATCH,
            tenants: Vec::new(),
            faults: Faults::none(),
            hang: DEFAULT_HANG,
        }
    }
}

impl SimConfig {
    /// Adds a tenant registered at start.
    pub fn with_tenant(mut self, org: &str, api_key: &str) -> Self {
        self.tenants.push(TenantSpec {
            org: org.to_owned(),
            api_key: api_key.to_owned(),
        });
        self
    }
}

/// The base URL of a tenant's API on a simulator: `http://{addr}/{org}/organizer/tickets`.
pub fn base_url(addr: SocketAddr, org: &str) -> String {
    format!("http://{addr}/{org}/organizer/tickets")
}

/// A simulator serving HTTP (or HTTPS) in a background task. Dropping it (or [`RunningSim::shutdown`])
/// stops the server and releases hanging calls.
#[derive(Debug)]
pub struct RunningSim {
    /// The address actually bound (useful with port 0).
    pub addr: SocketAddr,
    /// Handle to the simulator's state, for setup and inspection.
    pub sim: Simulator,
    /// `http`, or `https` when served with [`spawn_tls`].
    scheme: &'static str,
    /// The server task, taken by `shutdown`.
    task: Option<JoinHandle<std::io::Result<()>>>,
}

impl RunningSim {
    /// The base URL of a tenant's API on this simulator.
    pub fn base_url(&self, org: &str) -> String {
        format!("{}://{}/{org}/organizer/tickets", self.scheme, self.addr)
    }

    /// The URL of the admin API (`http://{addr}/admin`, or `https://`).
    pub fn admin_url(&self) -> String {
        format!("{}://{}/admin", self.scheme, self.addr)
    }

    /// Stops the server and waits for it to finish.
    pub async fn shutdown(mut self) -> std::io::Result<()> {
        self.sim.shutdown();
        match self.task.take() {
            Some(task) => task.await.map_err(std::io::Error::other)?,
            None => Ok(()),
        }
    }
}

impl Drop for RunningSim {
    fn drop(&mut self) {
        self.sim.shutdown();
    }
}

/// Starts a simulator on `listen` (port 0 allowed) and serves it in a tokio task.
pub async fn spawn(config: SimConfig, listen: SocketAddr) -> std::io::Result<RunningSim> {
    let listener = TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    Ok(serve_in_task(Simulator::new(config), listener, addr, "http"))
}

/// Like [`spawn`], serving HTTPS with `tls`'s certificate.
pub async fn spawn_tls(config: SimConfig, listen: SocketAddr, tls: SimTls) -> std::io::Result<RunningSim> {
    let listener = tls::TlsListener::new(TcpListener::bind(listen).await?, &tls)?;
    let addr = axum::serve::Listener::local_addr(&listener)?;
    Ok(serve_in_task(Simulator::new(config), listener, addr, "https"))
}

/// Serves `sim` on `listener` in a tokio task until the simulator is shut down.
fn serve_in_task<L>(sim: Simulator, listener: L, addr: SocketAddr, scheme: &'static str) -> RunningSim
where
    L: axum::serve::Listener,
    L::Addr: std::fmt::Debug,
{
    let stop = sim.inner.shutdown.clone();
    let app = sim.router();
    let task = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(stop.cancelled_owned())
            .await
    });
    RunningSim {
        addr,
        sim,
        scheme,
        task: Some(task),
    }
}

/// Runs the simulator for the CLI until `shutdown` completes.
pub async fn serve(args: SimArgs, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
    let config = args.to_config()?;
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(cert), Some(key)) => Some(SimTls::from_files(cert, key).context("--tls-cert/--tls-key")?),
        _ => None,
    };
    let sim = Simulator::new(config);
    let listener = TcpListener::bind(args.listen)
        .await
        .with_context(|| format!("cannot listen on {}", args.listen))?;
    let addr = listener.local_addr()?;
    tracing::info!(
        %addr,
        tls = tls.is_some(),
        tenants = ?sim.tenant_names(),
        api_key_header = %args.api_key_header,
        max_batch = args.max_batch,
        "TIXnGO simulator listening"
    );
    let stop = sim.inner.shutdown.clone();
    let signal = async move {
        shutdown.await;
        stop.cancel();
    };
    match tls {
        Some(tls) => axum::serve(tls::TlsListener::new(listener, &tls)?, sim.router())
            .with_graceful_shutdown(signal)
            .await
            .context("simulator server failed")?,
        None => axum::serve(listener, sim.router())
            .with_graceful_shutdown(signal)
            .await
            .context("simulator server failed")?,
    }
    tracing::info!("TIXnGO simulator stopped");
    Ok(())
}
