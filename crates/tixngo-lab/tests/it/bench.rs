//! `tixngo-lab bench` smoke test: a few hundred tickets through the bridge and the baseline,
//! on this test's own vhost. It asserts that every ticket arrived and that the report carries
//! its figures, never how fast anything was.

use tixngo_bridge::flows::Flow;
use tixngo_lab::bench::{self, BenchArgs};

use crate::helpers::TestBroker;

fn check(phase: &bench::report::Phase, tickets: usize) {
    assert_eq!(phase.tickets, tickets, "{}", phase.name);
    assert_eq!(
        phase.arrived, tickets,
        "{}: every ticket reached the simulator",
        phase.name
    );
    assert!(
        phase.throughput_per_s > 0.0 && phase.elapsed_s > 0.0,
        "{}",
        phase.name
    );
    assert!(phase.latency_ms.p99 >= phase.latency_ms.p50, "{}", phase.name);
    assert!(
        phase.cpu_s_per_1000.is_some() && phase.peak_rss_mib.is_some(),
        "{}",
        phase.name
    );
    assert!(phase.tixngo_calls > 0, "{}", phase.name);
}

#[tokio::test(flavor = "multi_thread")]
async fn bench_in_process_reports_bridge_and_baseline() {
    let broker = TestBroker::new().await;
    let mut args = BenchArgs::new(&broker.amqp_url, 300);
    args.processes = 0;
    let report = bench::run(&args).await.expect("bench runs");
    check(&report.bridge, 300);
    let baseline = report.baseline.as_ref().expect("baseline measured");
    check(baseline, 300);
    assert_eq!(
        baseline.tixngo_calls, 300,
        "the baseline posts one ticket per call"
    );
    assert!(report.ratio.is_some());
    let json = serde_json::to_value(&report).expect("the report serializes");
    for field in ["machine", "settings", "bridge", "baseline", "ratio"] {
        assert!(json.get(field).is_some(), "{field} in {json}");
    }
    assert!(report.text().contains("bridge/baseline"));
}

#[tokio::test(flavor = "multi_thread")]
async fn bench_bridge_process_with_latency_and_rate() {
    let broker = TestBroker::new().await;
    let mut args = BenchArgs::new(&broker.amqp_url, 200);
    args.binary = Some(crate::helpers::workspace_binary("tixngo-bridge"));
    args.lab_binary = Some(env!("CARGO_BIN_EXE_tixngo-lab").into());
    args.tixngo_latency_ms = 5;
    args.rate = Some(2000.0);
    args.flow = Flow::Control;
    let report = bench::run(&args).await.expect("bench runs");
    check(&report.bridge, 200);
    check(report.baseline.as_ref().expect("baseline measured"), 200);
    assert_eq!(report.bridge.measured_on, "child processes");
    assert!(report.littles_law_bound_per_s.is_some() && report.littles_law_efficiency.is_some());
}
