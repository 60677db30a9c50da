//! `demo --publish-only`: the published mix is real work for a running bridge.

use std::collections::BTreeMap;

use tixngo_bridge::flows::Flow;

use crate::helpers::*;

#[tokio::test]
async fn the_demo_mix_is_delivered_and_its_broken_messages_are_dead_lettered() {
    let mut app = spawn_app_with("", &[Flow::Inject, Flow::Cancel, Flow::Control]).await;
    let published = tixngo_bridge::demo::publish_mix(&app.settings).await.unwrap();
    let orgs = app.settings.interfaces.len();
    assert_eq!(published.by_routing_key["ticket.inject"], orgs * 7 + 2);
    assert_eq!(published.broken, orgs + 2);
    let expected = published.by_routing_key.values().sum::<usize>();
    let mut outcomes: BTreeMap<String, usize> = BTreeMap::new();
    for _ in 0..expected {
        let event = app.next_event().await;
        *outcomes
            .entry(event["type"].as_str().unwrap().to_owned())
            .or_default() += 1;
    }
    assert_eq!(
        outcomes.get("inject.succeeded"),
        Some(&(orgs * 6)),
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes.get("inject.dead-lettered"),
        Some(&(orgs + 2)),
        "{outcomes:?}"
    );
    // Control and cancel may race their injection; they retry until it exists.
    assert_eq!(outcomes.get("control.succeeded"), Some(&orgs), "{outcomes:?}");
    assert_eq!(outcomes.get("cancel.succeeded"), Some(&orgs), "{outcomes:?}");
    app.stop().await.unwrap();
}
