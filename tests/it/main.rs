//! The one integration-test binary: every module below talks to real parts.
// Tests unwrap freely: a panic is a failed test with its reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]
mod client;
mod config;
mod contract;
mod dlq;
mod faults;
mod flows;
mod helpers;
mod hostile;
mod isolation;
mod notifier;
mod ops;
mod poller;
mod redirects;
mod resilience;
mod schemas;
mod secrets;
mod templates;
mod tls;
mod topology;
mod vocabulary;
