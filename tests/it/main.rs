//! The one integration-test binary: every module below talks to real parts.
mod bench;
mod client;
mod config;
mod contract;
mod demo;
mod dlq;
mod flows;
mod helpers;
mod notifier;
mod ops;
mod poller;
mod schemas;
mod sim;
mod templates;
mod topology;
