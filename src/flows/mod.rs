//! The ticket flows. Each flow file holds only what differs between flows: its message and its
//! TIXnGO call. Everything else (decoding, batching, retries, dead letters, outcomes) is the
//! engine's.

pub use crate::flow::Flow;

pub mod cancel;
pub mod control;
pub mod inject;
pub mod status;
