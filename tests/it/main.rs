//! The one integration-test binary: every module below talks to real parts.
mod client;
mod config;
mod contract;
mod demo;
mod dlq;
mod flows;
mod helpers;
mod hostile;
mod notifier;
mod ops;
mod poller;
mod resilience;
mod schemas;
mod secrets;
mod sim;
mod templates;
mod topology;
