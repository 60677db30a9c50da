//! The short chaos run (issue 10): a few hundred tickets through three bridge processes (this
//! crate's binary) on this test's own vhost, with one SIGKILL, one force-close of the run's
//! connections, TIXnGO 5xx and hanging calls, then the reconciliation. Nothing may be lost or
//! applied twice, and exactly the malformed messages are dead-lettered. Speed is not asserted.

use tixngo_lab::chaos::{self, BrokerFaults, ChaosArgs};

use crate::helpers::TestBroker;

#[tokio::test(flavor = "multi_thread")]
async fn short_chaos_run_loses_nothing_and_duplicates_nothing() {
    let broker = TestBroker::new().await;
    let mut args = ChaosArgs::new(&broker.amqp_url, 300);
    args.binary = Some(crate::helpers::workspace_binary("tixngo-bridge"));
    args.rate = 100.0;
    args.fault_window_secs = Some(8.0);
    args.kill_every_secs = 3.0;
    args.max_kills = Some(1);
    args.broker_faults = BrokerFaults::Close;
    args.broker_fault_count = 1;
    args.outage_secs = 0;
    args.deadline_secs = 300;
    if let Ok(url) = std::env::var("RABBITMQ_MANAGEMENT_URL") {
        args.management_url = url;
    }
    let report = chaos::run(&args).await.expect("the chaos run completes");
    let text = report.text();
    assert_eq!(report.tickets, 300, "{text}");
    assert_eq!(report.malformed, 3, "{text}");
    assert_eq!(report.kills, 1, "{text}");
    assert_eq!(report.broker_faults, 1, "{text}");
    assert!(report.broker_fault_errors.is_empty(), "{text}");
    assert_eq!(report.lost, 0, "{text}");
    assert_eq!(report.in_expected_state, 300, "{text}");
    assert_eq!(report.duplicated_side_effects, 0, "{text}");
    assert_eq!(report.unexpected_dead_letters, 0, "{text}");
    assert_eq!(report.missing_dead_letters, 0, "{text}");
    assert_eq!(report.dead_letters, report.malformed, "{text}");
    assert!(report.passed && report.complete, "{text}");
}
