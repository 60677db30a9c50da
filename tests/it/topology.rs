//! The topology on a real broker: quorum queues with safe dead-lettering, idempotent declares,
//! and the committed definitions file in sync.

use serde_json::Value;
use tixngo_bridge::broker::Topology;
use tixngo_bridge::config::TopologySettings;
use tixngo_bridge::flows::Flow;

use crate::helpers::TestBroker;

#[tokio::test]
async fn declared_twice_is_identical_and_queues_are_quorum_with_safe_dead_lettering() {
    let broker = TestBroker::new().await;
    let settings = TopologySettings::default();
    let topology = Topology::new(&settings);
    let connection = broker.connect().await;
    let channel = connection.create_channel().await.unwrap();
    topology.declare(&channel).await.unwrap();
    topology
        .declare(&channel)
        .await
        .expect("declaring again is a no-op");

    for flow in Flow::ALL {
        let work = broker.queue_info(&settings.work_queue(*flow)).await;
        assert_eq!(work["type"], "quorum", "{work}");
        let args = &work["arguments"];
        assert_eq!(args["x-dead-letter-exchange"], "tixngo.dead-letter");
        assert_eq!(args["x-dead-letter-routing-key"], format!("tixngo.{flow}.dlq"));
        assert_eq!(args["x-dead-letter-strategy"], "at-least-once");
        assert_eq!(args["x-overflow"], "reject-publish");
        assert_eq!(args["x-delivery-limit"], 20);

        for queue in [settings.dlq(*flow), settings.parked(*flow)] {
            assert_eq!(broker.queue_info(&queue).await["type"], "quorum", "{queue}");
        }
        for (tier, label, ms) in [
            (0, "10s", 10_000),
            (1, "1m", 60_000),
            (2, "10m", 600_000),
            (3, "1h", 3_600_000),
        ] {
            let name = settings.retry_queue(*flow, settings.tiers()[tier]);
            assert_eq!(name, format!("tixngo.{flow}.retry.{label}"));
            let retry = broker.queue_info(&name).await;
            assert_eq!(retry["type"], "quorum");
            assert_eq!(retry["arguments"]["x-message-ttl"], ms);
            assert_eq!(retry["arguments"]["x-dead-letter-exchange"], "");
            assert_eq!(
                retry["arguments"]["x-dead-letter-routing-key"],
                format!("tixngo.{flow}")
            );
            assert_eq!(retry["arguments"]["x-dead-letter-strategy"], "at-least-once");
        }
    }
}

#[test]
fn committed_definitions_file_matches_the_default_topology() {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/deploy/rabbitmq/definitions.json");
    let committed: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
    let exported = Topology::new(&TopologySettings::default()).export();
    for key in ["exchanges", "queues", "bindings"] {
        assert_eq!(
            committed[key], exported[key],
            "deploy/rabbitmq/definitions.json is stale: run `cargo run -- topology export -c config/example.toml` and merge"
        );
    }
}
