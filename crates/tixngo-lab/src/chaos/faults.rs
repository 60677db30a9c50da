//! The faults a chaos run causes outside the simulator: bridge processes SIGKILLed and
//! restarted, and the broker restarted or its connections force-closed.

use std::path::PathBuf;
use std::process::Stdio;
use std::time::Duration;

use rand::{Rng, RngExt};
use secrecy::ExposeSecret;
use serde_json::Value;
use tokio::process::{Child, Command};

use super::{BrokerFaults, ChaosArgs, ChaosError, Context};

/// The bridge processes.
pub(super) struct Bridges {
    /// The `tixngo-bridge` binary (`--binary`, else the one beside this program).
    binary: PathBuf,
    /// The configuration file.
    config: PathBuf,
    /// Per slot: the process and its stderr log.
    children: Vec<(Child, PathBuf)>,
    /// SIGKILLs sent.
    pub(super) kills: usize,
    /// Processes that ended on their own (restarted).
    pub(super) unexpected_exits: usize,
}

impl Bridges {
    pub(super) fn start(context: &Context<'_>, n: usize) -> Result<Self, ChaosError> {
        let binary = crate::bench::bridge_binary(context.args.binary.as_deref())?;
        let mut bridges = Bridges {
            binary,
            config: context.config_path.clone(),
            children: Vec::new(),
            kills: 0,
            unexpected_exits: 0,
        };
        for i in 0..n {
            let log = context.dir.join(format!("bridge-{i}.log"));
            let child = bridges.spawn(&log)?;
            bridges.children.push((child, log));
        }
        Ok(bridges)
    }

    fn spawn(&self, log: &std::path::Path) -> Result<Child, ChaosError> {
        let stderr = std::fs::OpenOptions::new().create(true).append(true).open(log)?;
        Ok(
            crate::bench::bridge_process(&self.binary, &self.config, "inject,cancel,control", stderr)
                .spawn()?,
        )
    }

    /// SIGKILLs one process and starts its replacement.
    pub(super) async fn kill_random(&mut self, rng: &mut impl Rng) -> Result<(), ChaosError> {
        let slot = rng.random_range(0..self.children.len());
        let (child, log) = &mut self.children[slot];
        child.start_kill()?;
        let _ = child.wait().await;
        self.kills += 1;
        let log = log.clone();
        self.children[slot].0 = self.spawn(&log)?;
        Ok(())
    }

    /// Restarts processes that ended on their own (e.g. exit 69: broker down at start-up).
    pub(super) fn restart_exited(&mut self) -> Result<(), ChaosError> {
        for slot in 0..self.children.len() {
            if let Ok(Some(_)) = self.children[slot].0.try_wait() {
                self.unexpected_exits += 1;
                let log = self.children[slot].1.clone();
                self.children[slot].0 = self.spawn(&log)?;
            }
        }
        Ok(())
    }

    /// SIGTERM, then SIGKILL after 30 s; returns the log files.
    pub(super) async fn stop(self) -> Vec<PathBuf> {
        for (child, _) in &self.children {
            if let Some(pid) = child.id() {
                // `kill` (the command) sends SIGTERM without unsafe code.
                let _ = Command::new("kill")
                    .args(["-TERM", &pid.to_string()])
                    .status()
                    .await;
            }
        }
        let mut logs = Vec::new();
        for (mut child, log) in self.children {
            if tokio::time::timeout(Duration::from_secs(30), child.wait())
                .await
                .is_err()
            {
                let _ = child.start_kill();
                let _ = child.wait().await;
            }
            logs.push(log);
        }
        logs
    }
}

/// One broker fault: the restart command, or closing the run's connections.
pub(super) async fn broker_fault(args: ChaosArgs, prefix: String) -> Result<(), String> {
    match args.broker_faults {
        BrokerFaults::None => Ok(()),
        BrokerFaults::Restart => {
            let command = args.broker_restart_command.unwrap_or_default();
            let status = Command::new("sh")
                .args(["-c", &command])
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::null())
                .status()
                .await
                .map_err(|e| format!("broker restart command: {e}"))?;
            if status.success() {
                Ok(())
            } else {
                Err(format!("broker restart command exited {status}"))
            }
        }
        BrokerFaults::Close => close_connections(&args, &prefix).await.map(|_| ()),
    }
}

/// Force-closes every connection of the run (its name starts with `prefix`) on the AMQP URL's
/// vhost, through the management API. Returns how many were closed.
pub async fn close_connections(args: &ChaosArgs, prefix: &str) -> Result<usize, String> {
    let amqp = url::Url::parse(args.amqp_url.expose_secret()).map_err(|_| "the AMQP URL is not a URL")?;
    let user = percent_decode(amqp.username());
    let password = amqp.password().map(percent_decode);
    let vhost = match amqp.path().trim_start_matches('/') {
        "" => "/".to_owned(),
        path => percent_decode(path),
    };
    let encode = |s: &str| -> String {
        url::form_urlencoded::byte_serialize(s.as_bytes())
            .collect::<String>()
            .replace('+', "%20")
    };
    let base = args.management_url.trim_end_matches('/');
    let http = reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .map_err(|e| e.to_string())?;
    let list: Vec<Value> = http
        .get(format!("{base}/api/vhosts/{}/connections", encode(&vhost)))
        .basic_auth(&user, password.as_deref())
        .send()
        .await
        .and_then(|r| r.error_for_status())
        .map_err(|e| format!("management API: {}", e.without_url()))?
        .json()
        .await
        .map_err(|e| format!("management API: {}", e.without_url()))?;
    let mut closed = 0;
    for connection in &list {
        let client_name = connection["client_properties"]["connection_name"]
            .as_str()
            .unwrap_or_default();
        let Some(name) = connection["name"].as_str() else {
            continue;
        };
        if !client_name.starts_with(prefix) {
            continue;
        }
        let response = http
            .delete(format!("{base}/api/connections/{}", encode(name)))
            .basic_auth(&user, password.as_deref())
            .send()
            .await;
        if response.is_ok_and(|r| r.status().is_success()) {
            closed += 1;
        }
    }
    Ok(closed)
}

fn percent_decode(s: &str) -> String {
    url::form_urlencoded::parse(format!("x={s}").as_bytes())
        .next()
        .map(|(_, v)| v.into_owned())
        .unwrap_or_else(|| s.to_owned())
}
