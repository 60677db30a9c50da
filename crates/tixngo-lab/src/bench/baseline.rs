//! The baseline: the least a consumer can do per message, a bare lapin + reqwest loop that takes
//! a delivery, POSTs its body (already the TIXnGO request) as it is, and acks. No decoding, no
//! mapping, no batching, no outcome event: what the bridge does on top is what the ratio prices.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use futures::StreamExt;
use lapin::options::{BasicAckOptions, BasicConsumeOptions, BasicQosOptions};
use lapin::types::FieldTable;
use lapin::{Connection, ConnectionProperties};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;

use super::BenchError;

/// Environment variables that hand a baseline worker process its secrets and targets (never the
/// command line, which `ps` shows to everyone).
pub const ENV_AMQP_URL: &str = "TIXNGO_BENCH_AMQP_URL";
/// See [`ENV_AMQP_URL`].
pub const ENV_QUEUE: &str = "TIXNGO_BENCH_QUEUE";
/// See [`ENV_AMQP_URL`].
pub const ENV_POST_URL: &str = "TIXNGO_BENCH_POST_URL";
/// See [`ENV_AMQP_URL`].
pub const ENV_API_KEY: &str = "TIXNGO_BENCH_API_KEY";

/// Where the baseline reads and what it posts to.
#[derive(Debug, Clone)]
pub struct Target {
    /// Broker URL (holds a password: never printed).
    pub amqp_url: SecretString,
    /// Queue holding the prepared bodies.
    pub queue: String,
    /// The simulator endpoint of the bench's flow for the baseline tenant.
    pub post_url: String,
    /// The baseline tenant's API key (a secret).
    pub api_key: SecretString,
    /// `basic.qos`, as the bridge's `worker.prefetch`.
    pub prefetch: u16,
    /// Concurrent POSTs (`--baseline-concurrency`), one ticket each.
    pub max_in_flight: usize,
    /// Stop after this many messages.
    pub tickets: usize,
}

impl Target {
    /// The target a parent bench handed this worker process in its environment.
    pub fn from_env(prefetch: u16, max_in_flight: usize, tickets: usize) -> Result<Self, BenchError> {
        let var = |name: &str| {
            std::env::var(name)
                .map_err(|_| BenchError::Usage(format!("{name} is not set (set by the bench parent)")))
        };
        Ok(Target {
            amqp_url: SecretString::from(var(ENV_AMQP_URL)?),
            queue: var(ENV_QUEUE)?,
            post_url: var(ENV_POST_URL)?,
            api_key: SecretString::from(var(ENV_API_KEY)?),
            prefetch,
            max_in_flight,
            tickets,
        })
    }

    /// The environment that makes a worker process use this target.
    pub fn to_env(&self) -> Vec<(&'static str, String)> {
        vec![
            (ENV_AMQP_URL, self.amqp_url.expose_secret().to_owned()),
            (ENV_QUEUE, self.queue.clone()),
            (ENV_POST_URL, self.post_url.clone()),
            (ENV_API_KEY, self.api_key.expose_secret().to_owned()),
        ]
    }
}

/// Consumes `target.tickets` messages: POST, then ack. Returns how many the simulator refused
/// (acked all the same: the baseline measures the loop, not error handling).
pub async fn run(target: Target) -> Result<usize, BenchError> {
    let connection = Connection::connect(
        target.amqp_url.expose_secret(),
        ConnectionProperties::default().with_connection_name("tixngo-bridge bench baseline".into()),
    )
    .await?;
    let channel = connection.create_channel().await?;
    channel
        .basic_qos(target.prefetch, BasicQosOptions::default())
        .await?;
    let mut consumer = channel
        .basic_consume(
            target.queue.as_str().into(),
            "bench-baseline".into(),
            BasicConsumeOptions::default(),
            FieldTable::default(),
        )
        .await?;
    let http = reqwest::Client::new();
    let semaphore = Arc::new(Semaphore::new(target.max_in_flight.max(1)));
    let done = Arc::new(AtomicUsize::new(0));
    let refused = Arc::new(AtomicUsize::new(0));
    let finished = Arc::new(tokio::sync::Notify::new());
    let mut taken = 0;
    while taken < target.tickets {
        let Some(delivery) = consumer.next().await else {
            break;
        };
        let delivery = delivery?;
        taken += 1;
        let permit = semaphore.clone().acquire_owned().await;
        let request = http
            .post(target.post_url.as_str())
            .header("x-api-key", target.api_key.expose_secret())
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(delivery.data.clone());
        let (done, refused, finished, total) =
            (done.clone(), refused.clone(), finished.clone(), target.tickets);
        tokio::spawn(async move {
            let ok = matches!(request.send().await, Ok(r) if r.status().is_success());
            if !ok {
                refused.fetch_add(1, Ordering::Relaxed);
            }
            let _ = delivery.acker.ack(BasicAckOptions::default()).await;
            drop(permit);
            if done.fetch_add(1, Ordering::AcqRel) + 1 >= total {
                finished.notify_one();
            }
        });
    }
    if taken < target.tickets {
        return Err(BenchError::Setup(format!(
            "the baseline's consumer was closed after {taken} of {} messages",
            target.tickets
        )));
    }
    if done.load(Ordering::Acquire) < taken {
        finished.notified().await;
    }
    let _ = channel.close(200, "bye".into()).await;
    let _ = connection.close(200, "bye".into()).await;
    Ok(refused.load(Ordering::Relaxed))
}
