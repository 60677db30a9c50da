//! Micro-benchmarks of the bridge's per-message hot path, so regressions show up:
//! decode + validate (engine::decode), map or render (built-in mapping and a minijinja template),
//! and encode (joining a batch into the inject call body). No broker or HTTP: the deliveries are
//! built in memory, which is what these functions see in production too.
//!
//! `cargo bench --bench hot_path` (add `-- --quick` for a short run).
// Tests unwrap freely: a panic is a failed test with its reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::hint::black_box;

use criterion::{BatchSize, Criterion, Throughput, criterion_group, criterion_main};
use lapin::BasicProperties;
use lapin::message::Delivery;
use tixngo_bridge::config;
use tixngo_bridge::engine::decode::decode;
use tixngo_bridge::messages::InjectMessage;
use tixngo_bridge::orgs::{Organization, Organizations};
use tixngo_bridge::tixngo::client::inject_body;

/// Tickets per TIXnGO call, as the default `worker.batch_max`.
const BATCH: usize = 50;

fn organizations() -> Organizations {
    let template = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../config/templates/example.json.j2"
    );
    let mut toml = String::new();
    for (org, kind, extra) in [
        ("ACME", "tixngo", String::new()),
        (
            "GLOBEX",
            "tixngo_with_template",
            format!("template = \"{template}\"\n"),
        ),
    ] {
        toml.push_str(&format!(
            "[[interfaces]]\norganization = \"{org}\"\nkind = \"{kind}\"\n{extra}\
             url = \"http://127.0.0.1:9/{org}/organizer/tickets\"\nusername = \"bench@example.org\"\n\
             api_key = \"bench-key\"\nnotification_emails = \"ops@example.org\"\n"
        ));
    }
    let settings = config::from_toml(&toml)
        .and_then(|raw| raw.validate_with(|_| None))
        .expect("the bench configuration is valid");
    Organizations::new(&settings).expect("organizations build")
}

fn delivery(organization: &str, n: usize) -> Delivery {
    let message = tixngo_lab::bench::load::injection(organization, "micro", n).expect("example parses");
    let mut delivery = Delivery::mock(
        n as u64,
        "s360.tickets".into(),
        "ticket.inject".into(),
        false,
        serde_json::to_vec(&message).expect("serializes"),
    );
    delivery.properties = BasicProperties::default().with_content_type("application/json".into());
    delivery
}

fn org<'a>(organizations: &'a Organizations, code: &str) -> &'a Organization {
    organizations.get(code).expect("configured")
}

fn hot_path(c: &mut Criterion) {
    let organizations = organizations();
    let acme = org(&organizations, "ACME");
    let globex = org(&organizations, "GLOBEX");
    let one = delivery("ACME", 1);
    let message: InjectMessage = decode(&one, 1 << 20).expect("valid");

    let mut group = c.benchmark_group("per_message");
    group.throughput(Throughput::Elements(1));
    group.bench_function("decode_validate", |b| {
        b.iter(|| decode::<InjectMessage>(black_box(&one), 1 << 20).expect("valid"))
    });
    group.bench_function("map", |b| {
        b.iter(|| acme.render(black_box(&message)).expect("maps"))
    });
    group.bench_function("template", |b| {
        let message: InjectMessage = decode(&delivery("GLOBEX", 1), 1 << 20).expect("valid");
        b.iter(|| globex.render(black_box(&message)).expect("renders"))
    });
    group.finish();

    let deliveries: Vec<Delivery> = (0..BATCH).map(|n| delivery("ACME", n)).collect();
    let documents: Vec<_> = deliveries
        .iter()
        .map(|d| acme.render(&decode(d, 1 << 20).expect("valid")).expect("maps"))
        .collect();
    let mut group = c.benchmark_group("per_batch_of_50");
    group.throughput(Throughput::Elements(BATCH as u64));
    group.bench_function("encode", |b| {
        b.iter(|| {
            let refs: Vec<_> = documents.iter().collect();
            inject_body(black_box(&refs))
        })
    });
    group.bench_function("decode_validate_map_encode", |b| {
        b.iter_batched(
            || (),
            |()| {
                let documents: Vec<_> = deliveries
                    .iter()
                    .map(|d| {
                        acme.render(&decode(black_box(d), 1 << 20).expect("valid"))
                            .expect("maps")
                    })
                    .collect();
                let refs: Vec<_> = documents.iter().collect();
                inject_body(&refs)
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();
}

criterion_group!(benches, hot_path);
criterion_main!(benches);
