//! Continuous status retrieval: the diff poller, in-process.

use std::collections::BTreeSet;

use tixngo_bridge::app::Part;
use tixngo_bridge::flows::Flow;
use tixngo_sim::Status;

use crate::helpers::*;

const FAST: &str = "[status_sync]\ninterval = \"100ms\"\npage_size = 7\n";

#[tokio::test]
async fn spectator_side_changes_become_status_changed_events_in_order() {
    let mut app = spawn_app_parts(FAST, vec![Part::Flow(Flow::Inject), Part::Poller]).await;
    for i in 0..3 {
        app.publish(Flow::Inject, &match_ticket("ACME", &format!("P-{i}")))
            .await;
    }
    // Not event_for: it would skip status.changed events that arrive meanwhile.
    eventually("injected", || app.sim.sim.ticket_ids("ACME").len() == 3).await;
    for i in 0..3 {
        let id = format!("P-{i}");
        app.sim.sim.transition("ACME", &id, Status::Downloaded).unwrap();
        app.sim.sim.transition("ACME", &id, Status::Transferred).unwrap();
        app.sim
            .sim
            .transition("ACME", &id, Status::OnlineActivated)
            .unwrap();
    }
    // 3 injections + 9 transitions, read over several pages of 7.
    let mut seen = Vec::new();
    while seen.len() < 12 {
        let event = app.next_event().await;
        if event["type"] == "status.changed" {
            seen.push((
                event["ticket_id"].as_str().unwrap().to_owned(),
                event["previous_tixngo_status"].as_str().map(str::to_owned),
                event["tixngo_status"].as_str().unwrap().to_owned(),
                event["s360_status"].as_str().unwrap().to_owned(),
            ));
        }
    }
    let for_p0: Vec<_> = seen.iter().filter(|(id, ..)| id == "P-0").collect();
    assert_eq!(
        for_p0
            .iter()
            .map(|(_, prev, now, _)| (prev.as_deref(), now.as_str()))
            .collect::<Vec<_>>(),
        vec![
            (None, "INJECTED"),
            (Some("INJECTED"), "DOWNLOADED"),
            (Some("DOWNLOADED"), "TRANSFERRED"),
            (Some("TRANSFERRED"), "ONLINE_ACTIVATED"),
        ]
    );
    assert!(for_p0.iter().all(|(.., s360)| s360 == "Printed"), "{for_p0:?}");
    let unique: BTreeSet<_> = seen.iter().collect();
    assert_eq!(unique.len(), seen.len(), "no event twice");
    assert!(app.sim.sim.stats().tenants["ACME"].diff_max_concurrent <= 1);
    app.stop().await.unwrap();
}

#[tokio::test]
async fn three_pollers_in_one_vhost_never_poll_an_organization_twice_at_once_and_publish_once() {
    let mut first = spawn_app_parts(FAST, vec![Part::Poller]).await;
    // Two more bridges on the same vhost and simulator.
    let mut others = Vec::new();
    for _ in 0..2 {
        let shutdown = tokio_util::sync::CancellationToken::new();
        let running = tixngo_bridge::app::start(first.settings.clone(), vec![Part::Poller], shutdown.clone())
            .await
            .unwrap();
        others.push((shutdown, tokio::spawn(running.wait())));
    }
    let acme = first.context.organizations.get("ACME").unwrap().clone();
    for i in 0..20 {
        inject_directly(&acme, &format!("T-{i}")).await;
    }
    for i in 0..20 {
        first
            .sim
            .sim
            .transition("ACME", &format!("T-{i}"), Status::Downloaded)
            .unwrap();
    }
    let mut seen = BTreeSet::new();
    let mut count = 0;
    while count < 40 {
        let event = first.next_event().await;
        if event["type"] == "status.changed" && event["organization"] == "ACME" {
            count += 1;
            assert!(
                seen.insert((event["ticket_id"].to_string(), event["tixngo_status"].to_string())),
                "duplicate {event}"
            );
        }
    }
    // Steady state: a few more rounds, nothing new.
    tokio::time::sleep(std::time::Duration::from_millis(500)).await;
    assert_eq!(first.queue_len(EVENTS_QUEUE).await, 0, "no extra events");
    let stats = first.sim.sim.stats();
    assert_eq!(stats.tenants["ACME"].diff_max_concurrent, 1);
    assert_eq!(stats.tenants["GLOBEX"].diff_max_concurrent, 1);
    for (shutdown, task) in others {
        shutdown.cancel();
        task.await.unwrap().unwrap();
    }
    first.stop().await.unwrap();
}

#[tokio::test]
async fn a_restarted_poller_continues_from_the_stored_key() {
    let mut app = spawn_app_parts(FAST, vec![Part::Poller]).await;
    let acme = app.context.organizations.get("ACME").unwrap().clone();
    inject_directly(&acme, "K-1").await;
    let event = app.event_for("status.changed", "K-1").await;
    assert_eq!(event["tixngo_status"], "INJECTED");
    let settings = app.settings.clone();
    app.stop().await.unwrap();

    app.sim.sim.transition("ACME", "K-1", Status::Downloaded).unwrap();
    let shutdown = tokio_util::sync::CancellationToken::new();
    let running = tixngo_bridge::app::start(settings, vec![Part::Poller], shutdown.clone())
        .await
        .unwrap();
    let task = tokio::spawn(running.wait());
    let event = app.event_for("status.changed", "K-1").await;
    assert_eq!(
        event["tixngo_status"], "DOWNLOADED",
        "the injection is not published again"
    );
    tokio::time::sleep(std::time::Duration::from_millis(400)).await;
    assert_eq!(app.queue_len(EVENTS_QUEUE).await, 0, "nothing repeated");
    shutdown.cancel();
    task.await.unwrap().unwrap();
}

/// Injects a ticket straight into the simulator with the organization's own client.
async fn inject_directly(organization: &tixngo_bridge::orgs::Organization, ticket_id: &str) {
    let message: tixngo_bridge::messages::InjectMessage =
        serde_json::from_value(match_ticket(organization.code(), ticket_id)).unwrap();
    let document = organization.render(&message).unwrap();
    organization.client.inject(&[&document]).await.unwrap();
}

/// The done-when: three real `tixngo-bridge run` processes, 100 tickets moved through
/// download, transfer and activation, exactly those changes published, never two polls of one
/// organization at once, and polling goes on after the active process is SIGKILLed.
#[tokio::test]
async fn three_processes_poll_once_and_fail_over_when_the_active_one_is_killed() {
    use futures::StreamExt;
    use lapin::options::{BasicConsumeOptions, QueueBindOptions, QueueDeclareOptions};
    use lapin::types::FieldTable;

    let broker = TestBroker::new().await;
    let sim = spawn_sim().await;
    let toml = test_settings_toml(
        &broker,
        &sim,
        "[status_sync]\ninterval = \"100ms\"\npage_size = 50\n[http]\nenabled = false\n",
    );
    let settings = tixngo_bridge::config::from_toml(&toml)
        .unwrap()
        .validate_with(|_| None)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("bridge.toml");
    std::fs::write(&config, &toml).unwrap();

    let connection = broker.connect().await;
    let channel = connection.create_channel().await.unwrap();
    tixngo_bridge::broker::Topology::new(&settings.topology)
        .declare(&channel)
        .await
        .unwrap();
    channel
        .queue_declare(
            EVENTS_QUEUE.into(),
            QueueDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    channel
        .queue_bind(
            EVENTS_QUEUE.into(),
            settings.topology.events_exchange.as_str().into(),
            "status.changed".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let mut events = channel
        .basic_consume(
            EVENTS_QUEUE.into(),
            "test".into(),
            BasicConsumeOptions {
                no_ack: true,
                ..Default::default()
            },
            FieldTable::default(),
        )
        .await
        .unwrap();

    let logs = dir.path().to_owned();
    let spawn = |n: usize| {
        let log = std::fs::File::create(logs.join(format!("bridge-{n}.log"))).unwrap();
        tokio::process::Command::new(env!("CARGO_BIN_EXE_tixngo-bridge"))
            .args(["run", "--flows", "poller", "--config"])
            .arg(&config)
            .env("RUST_LOG", "tixngo_bridge=debug")
            .stdout(std::process::Stdio::null())
            .stderr(log)
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    };
    let mut processes: Vec<_> = (0..3).map(spawn).collect();
    let token_queue = tixngo_bridge::poller::token_queue(&settings, "ACME");
    // Three processes starting on a loaded 2-core machine: allow more than the usual timeout.
    let deadline = tokio::time::Instant::now() + TIMEOUT * 4;
    while broker.queue_info(&token_queue).await["consumers"] != 3 {
        if tokio::time::Instant::now() > deadline {
            for n in 0..3 {
                let log = std::fs::read_to_string(logs.join(format!("bridge-{n}.log"))).unwrap_or_default();
                eprintln!("--- bridge-{n}.log\n{log}");
            }
            panic!(
                "three pollers never consumed: {}",
                broker.queue_info(&token_queue).await
            );
        }
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }

    let organizations = tixngo_bridge::orgs::Organizations::new(&settings).unwrap();
    let acme = organizations.get("ACME").unwrap();
    let ids: Vec<String> = (0..100).map(|i| format!("X-{i}")).collect();
    for id in &ids {
        inject_directly(acme, id).await;
    }
    let mut expected = BTreeSet::new();
    for id in &ids {
        expected.insert((id.clone(), "INJECTED".to_owned()));
        for status in [Status::Downloaded, Status::Transferred, Status::OnlineActivated] {
            sim.sim.transition("ACME", id, status).unwrap();
            expected.insert((id.clone(), status.as_str().to_owned()));
        }
    }
    let mut receive = async |count: usize, seen: &mut BTreeSet<(String, String)>| {
        for _ in 0..count {
            let delivery = tokio::time::timeout(TIMEOUT, events.next())
                .await
                .expect("status.changed in time")
                .unwrap()
                .unwrap();
            let event: serde_json::Value = serde_json::from_slice(&delivery.data).unwrap();
            let key = (
                event["ticket_id"].as_str().unwrap().to_owned(),
                event["tixngo_status"].as_str().unwrap().to_owned(),
            );
            if !seen.insert(key) {
                for n in 0..3 {
                    let log =
                        std::fs::read_to_string(logs.join(format!("bridge-{n}.log"))).unwrap_or_default();
                    eprintln!("--- bridge-{n}.log\n{log}");
                }
                let changes = sim.sim.changes("ACME", 0);
                let dups: Vec<_> = changes
                    .iter()
                    .filter(|c| c.ticket_id == event["ticket_id"].as_str().unwrap())
                    .collect();
                panic!(
                    "published twice: {event}; the simulator's records for it: {dups:?}; {} records",
                    changes.len()
                );
            }
        }
    };
    let mut seen = BTreeSet::new();
    receive(400, &mut seen).await;
    assert_eq!(seen, expected, "exactly the simulator's changes");

    // Steady state first: the last event of a round is published before the token that records
    // it; a kill in between repeats that round (at-least-once, by design).
    tokio::time::sleep(std::time::Duration::from_secs(1)).await;
    // Kill the process whose consumer is the active one.
    let info = broker.queue_info(&token_queue).await;
    let active = info["consumer_details"]
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["activity_status"] == "single_active")
        .map(|c| {
            c["channel_details"]["connection_name"]
                .as_str()
                .unwrap()
                .to_owned()
        })
        .expect("an active consumer");
    let active = broker.client_connection_name(&active).await;
    let pid: u32 = active
        .rsplit("pid=")
        .next()
        .unwrap()
        .chars()
        .take_while(char::is_ascii_digit)
        .collect::<String>()
        .parse()
        .unwrap_or_else(|_| panic!("no pid in {active:?}"));
    let ours: Vec<_> = processes.iter().map(|p| p.id()).collect();
    let index = processes
        .iter()
        .position(|p| p.id() == Some(pid))
        .unwrap_or_else(|| panic!("active {active:?} (pid {pid}) is not among {ours:?}"));
    let mut killed = processes.remove(index);
    killed.start_kill().unwrap();
    killed.wait().await.unwrap();

    for id in &ids {
        sim.sim.transition("ACME", id, Status::Deactivated).unwrap();
        expected.insert((id.clone(), "DEACTIVATED".to_owned()));
    }
    receive(100, &mut seen).await;
    assert_eq!(seen, expected, "polling went on after the kill");
    let stats = sim.sim.stats();
    assert_eq!(
        stats.tenants["ACME"].diff_max_concurrent, 1,
        "never two polls at once"
    );
    assert_eq!(
        stats.tenants["GLOBEX"].diff_max_concurrent, 1,
        "never two polls at once"
    );
}
