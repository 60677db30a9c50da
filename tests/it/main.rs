//! The one integration-test binary: every module below talks to real parts.
mod client;
mod config;
mod dlq;
mod flows;
mod helpers;
mod schemas;
mod sim;
mod templates;
mod topology;
