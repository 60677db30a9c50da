//! tixngo-bridge: keeps tickets aligned between S-360 and TIXnGO over RabbitMQ.
#![forbid(unsafe_code)]

pub mod app;
pub mod broker;
pub mod cli;
pub mod config;
pub mod context;
pub mod dlq;
pub mod engine;
pub mod exit;
pub mod failure_class;
pub mod flow;
pub mod flows;
pub mod health;
pub mod http;
pub mod messages;
pub mod metrics;
pub mod notifier;
pub mod orgs;
pub mod output;
pub mod poller;
pub mod shutdown;
pub mod telemetry;
pub mod text;
pub mod tixngo;
pub mod tls;
