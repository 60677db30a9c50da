//! What a bench run found, how it is printed, and the `/proc` readings behind it.

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

/// Linux reports process CPU times in clock ticks of `USER_HZ`, which is 100 on every mainstream
/// architecture; reading `sysconf(_SC_CLK_TCK)` would need `libc` and unsafe code.
const CLOCK_TICKS_PER_SECOND: f64 = 100.0;

/// A whole bench run: settings, both phases and their comparison.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Short id in the queue, exchange and ticket names, to find a run's leftovers.
    pub run: String,
    /// Where it ran, so figures are never compared across machines or loads.
    pub machine: Machine,
    /// The settings the bridge ran with.
    pub settings: RunSettings,
    /// The bridge's figures.
    pub bridge: Phase,
    /// The bare lapin + reqwest loop's figures over the same messages (absent with
    /// `--skip-baseline`).
    pub baseline: Option<Phase>,
    /// Bridge throughput divided by baseline throughput: the first target (>= 1.0).
    pub ratio: Option<f64>,
    /// With simulated latency: the most the bridge's call bound allows, `processes ×
    /// max_concurrent_calls × batch_max / mean latency` (Little's law), in tickets/s.
    pub littles_law_bound_per_s: Option<f64>,
    /// Bridge throughput as a share of that bound.
    pub littles_law_efficiency: Option<f64>,
}

/// The machine and its load when the run started and ended.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    /// Logical CPUs this process may use.
    pub cores: usize,
    /// `/proc/loadavg` 1-minute load at the start: other builds on a shared machine skew figures.
    pub load_start: Option<f64>,
    /// The same at the end.
    pub load_end: Option<f64>,
}

impl Machine {
    /// The machine now (end load unknown yet).
    pub fn now() -> Self {
        Machine {
            cores: std::thread::available_parallelism().map_or(1, |n| n.get()),
            load_start: load_average(),
            load_end: None,
        }
    }
}

/// The settings one run used, echoed in the report so a figure always carries its command.
#[derive(Debug, Clone, Serialize)]
pub struct RunSettings {
    /// Which flow's messages were published.
    pub flow: String,
    /// Tickets per phase.
    pub tickets: usize,
    /// Simulated TIXnGO latency per call.
    pub tixngo_latency_ms: u64,
    /// `worker.prefetch` (and the baseline's `basic.qos`).
    pub prefetch: u16,
    /// With a latency range, its upper end (`tixngo_latency_ms` is the lower).
    pub tixngo_latency_max_ms: Option<u64>,
    /// `worker.max_concurrent_calls`.
    pub max_concurrent_calls: usize,
    /// The baseline's concurrent POSTs.
    pub baseline_concurrency: usize,
    /// `worker.batch_max`.
    pub batch_max: usize,
    /// `worker.batch_linger`, in ms.
    pub batch_linger_ms: u64,
    /// Bridge processes; 0 means in the bench's own process.
    pub processes: usize,
    /// `backlog` (everything published before the consumers start) or `rate` (published at
    /// `rate_per_s` while they run).
    pub publish_mode: String,
    /// The requested publish rate in `rate` mode.
    pub rate_per_s: Option<f64>,
}

/// One phase: the bridge or the baseline draining the same tickets.
#[derive(Debug, Clone, Serialize)]
pub struct Phase {
    /// `bridge` or `baseline`.
    pub name: String,
    /// Tickets published.
    pub tickets: usize,
    /// Tickets the simulator had applied when the phase ended: equals `tickets` unless the
    /// phase stalled.
    pub arrived: usize,
    /// Publish throughput (confirmed), tickets/s; in `rate` mode the achieved rate.
    pub publish_per_s: f64,
    /// From consumers started (backlog) or first publish (rate) to the last simulator receipt.
    pub elapsed_s: f64,
    /// `arrived / elapsed_s`: end to end, publish to TIXnGO acknowledged.
    pub throughput_per_s: f64,
    /// Message publish time to simulator receipt, per ticket.
    pub latency_ms: Latency,
    /// Peak resident memory of the consumer processes (`VmHWM`, summed over processes).
    /// In-process runs report the whole bench process (simulator and publisher included).
    pub peak_rss_mib: Option<f64>,
    /// Resident memory while draining, sampled at about every tenth of the tickets: a flat
    /// series is the fourth target.
    pub rss_samples_mib: Vec<f64>,
    /// CPU seconds (user + system) of the consumer processes per 1,000 tickets.
    pub cpu_s_per_1000: Option<f64>,
    /// CPU seconds of the local RabbitMQ (every `beam.smp` process on this machine) per 1,000
    /// tickets, from the consumers' start to the last receipt (in rate mode publishing included):
    /// where the rest of the machine's time goes. `None` when no local broker process is visible.
    pub broker_cpu_s_per_1000: Option<f64>,
    /// CPU seconds of the bench process itself (the simulator, and in rate mode the publisher;
    /// with `--processes 0` the bridge too) per 1,000 tickets over the same span.
    pub bench_cpu_s_per_1000: Option<f64>,
    /// Where the memory and CPU figures come from: `child processes` or `whole bench process`.
    pub measured_on: String,
    /// TIXnGO calls the simulator received in this phase (batching shows as calls < tickets).
    pub tixngo_calls: u64,
}

/// Latency percentiles.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Latency {
    /// Median.
    pub p50: f64,
    /// 99th percentile.
    pub p99: f64,
    /// Worst.
    pub max: f64,
}

impl Latency {
    /// Percentiles of `samples` (milliseconds; sorted here).
    pub fn of(mut samples: Vec<f64>) -> Self {
        if samples.is_empty() {
            return Latency::default();
        }
        samples.sort_by(f64::total_cmp);
        let at = |q: f64| {
            let rank = ((samples.len() as f64) * q).ceil() as usize;
            samples[rank.clamp(1, samples.len()) - 1]
        };
        Latency {
            p50: at(0.50),
            p99: at(0.99),
            max: samples[samples.len() - 1],
        }
    }
}

/// CPU time and memory of one process from `/proc`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ProcUsage {
    /// User + system CPU time.
    pub cpu: Duration,
    /// Peak resident set (`VmHWM`), bytes.
    pub peak_rss: u64,
    /// Current resident set (`VmRSS`), bytes.
    pub rss: u64,
}

impl ProcUsage {
    /// Reads `/proc/<pid>` (`self` for this process); `None` when the process is gone.
    pub fn read(pid: &str) -> Option<Self> {
        let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
        // The command name may hold spaces and parentheses: fields start after the last ')'.
        let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
        // Fields 14 and 15 of proc(5) (utime, stime); index 0 here is field 3.
        let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
        let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
        Some(ProcUsage {
            cpu: Duration::from_secs_f64(ticks as f64 / CLOCK_TICKS_PER_SECOND),
            peak_rss: status_kib(&status, "VmHWM:")? * 1024,
            rss: status_kib(&status, "VmRSS:")? * 1024,
        })
    }
}

fn status_kib(status: &str, key: &str) -> Option<u64> {
    status
        .lines()
        .find_map(|line| line.strip_prefix(key))?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// CPU time of every local RabbitMQ node (`beam.smp` processes), or `None` when there is none.
pub fn broker_cpu() -> Option<Duration> {
    let mut total = None;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let pid = entry.file_name();
        let Some(pid) = pid.to_str().filter(|p| p.bytes().all(|b| b.is_ascii_digit())) else {
            continue;
        };
        let is_broker = std::fs::read_to_string(format!("/proc/{pid}/comm"))
            .is_ok_and(|comm| comm.trim_end() == "beam.smp");
        if let Some(usage) = is_broker.then(|| ProcUsage::read(pid)).flatten() {
            total = Some(total.unwrap_or(Duration::ZERO) + usage.cpu);
        }
    }
    total
}

/// The 1-minute load average.
pub fn load_average() -> Option<f64> {
    std::fs::read_to_string("/proc/loadavg")
        .ok()?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// Bytes to MiB, for printing.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

impl Report {
    /// The human-readable form.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let s = &self.settings;
        let _ = writeln!(
            out,
            "bench run {}: {} x {} tickets, tixngo latency {}{} ms, prefetch {}, calls per organization {} (baseline {} POSTs), batch {} / {} ms, {} process(es), {} publish{}",
            self.run,
            s.flow,
            s.tickets,
            s.tixngo_latency_ms,
            s.tixngo_latency_max_ms
                .map(|m| format!("-{m}"))
                .unwrap_or_default(),
            s.prefetch,
            s.max_concurrent_calls,
            s.baseline_concurrency,
            s.batch_max,
            s.batch_linger_ms,
            s.processes,
            s.publish_mode,
            s.rate_per_s.map(|r| format!(" at {r}/s")).unwrap_or_default()
        );
        let load = |l: Option<f64>| l.map_or("?".to_owned(), |l| format!("{l:.2}"));
        let _ = writeln!(
            out,
            "machine: {} cores, load {} at start, {} at end",
            self.machine.cores,
            load(self.machine.load_start),
            load(self.machine.load_end)
        );
        let _ = writeln!(
            out,
            "{:<9} {:>8} {:>10} {:>10} {:>9} {:>9} {:>9} {:>9} {:>10} {:>8}",
            "",
            "arrived",
            "publish/s",
            "tickets/s",
            "p50 ms",
            "p99 ms",
            "max ms",
            "peak MiB",
            "cpu s/1k",
            "calls"
        );
        for phase in std::iter::once(&self.bridge).chain(self.baseline.iter()) {
            let opt = |v: Option<f64>, p: usize| v.map_or("-".to_owned(), |v| format!("{v:.p$}"));
            let _ = writeln!(
                out,
                "{:<9} {:>8} {:>10.0} {:>10.0} {:>9.1} {:>9.1} {:>9.1} {:>9} {:>10} {:>8}",
                phase.name,
                phase.arrived,
                phase.publish_per_s,
                phase.throughput_per_s,
                phase.latency_ms.p50,
                phase.latency_ms.p99,
                phase.latency_ms.max,
                opt(phase.peak_rss_mib, 1),
                opt(phase.cpu_s_per_1000, 3),
                phase.tixngo_calls
            );
        }
        for phase in std::iter::once(&self.bridge).chain(self.baseline.iter()) {
            let opt = |v: Option<f64>| v.map_or("-".to_owned(), |v| format!("{v:.3}"));
            let _ = writeln!(
                out,
                "{} cpu s/1k while draining: consumers {}, RabbitMQ (local beam.smp) {}, bench process (simulator) {}",
                phase.name,
                opt(phase.cpu_s_per_1000),
                opt(phase.broker_cpu_s_per_1000),
                opt(phase.bench_cpu_s_per_1000)
            );
        }
        if let Some(ratio) = self.ratio {
            let _ = writeln!(out, "bridge/baseline throughput: {ratio:.2}x");
        }
        if let (Some(bound), Some(efficiency)) = (self.littles_law_bound_per_s, self.littles_law_efficiency) {
            let _ = writeln!(
                out,
                "Little's law bound {bound:.0} tickets/s; bridge reaches {:.1} %",
                efficiency * 100.0
            );
        }
        if !self.bridge.rss_samples_mib.is_empty() {
            let samples: Vec<String> = self
                .bridge
                .rss_samples_mib
                .iter()
                .map(|m| format!("{m:.1}"))
                .collect();
            let _ = writeln!(out, "bridge RSS while draining (MiB): {}", samples.join(" "));
        }
        let _ = writeln!(
            out,
            "memory and CPU measured on: bridge {}, baseline {}",
            self.bridge.measured_on,
            self.baseline.as_ref().map_or("-", |b| b.measured_on.as_str())
        );
        if s.publish_mode == "backlog" {
            let _ = writeln!(
                out,
                "(backlog mode: latency includes the time a ticket waited in the queue)"
            );
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_pick_nearest_rank() {
        let latency = Latency::of((1..=100).map(f64::from).collect());
        assert_eq!(latency.p50, 50.0);
        assert_eq!(latency.p99, 99.0);
        assert_eq!(latency.max, 100.0);
        assert_eq!(Latency::of(vec![]).p99, 0.0);
    }

    #[test]
    fn reads_this_process() {
        let usage = ProcUsage::read("self").expect("/proc/self is readable on Linux");
        assert!(usage.peak_rss >= usage.rss && usage.rss > 0);
    }
}
