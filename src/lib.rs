//! tixngo-bridge: keeps tickets aligned between S-360 and TIXnGO over RabbitMQ.
#![forbid(unsafe_code)]

pub mod app;
pub mod broker;
pub mod cli;
pub mod config;
pub mod dlq;
pub mod engine;
pub mod flows;
pub mod messages;
pub mod orgs;
pub mod shutdown;
pub mod sim;
pub mod telemetry;
pub mod tixngo;
