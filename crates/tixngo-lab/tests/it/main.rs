//! The tools crate's integration tests (bench, chaos, demo), on the bridge's test harness.
// Tests unwrap freely: a panic is a failed test with its reason.
#![allow(clippy::unwrap_used, clippy::expect_used)]
#[path = "../../../../tests/it/helpers.rs"]
#[allow(dead_code)]
mod helpers;

mod bench;
mod chaos;
mod demo;
