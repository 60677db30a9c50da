//! The bridge's flows, named once for everything that routes, counts or files by flow
//! (topology, configuration, engine, notifier, dlq, metrics). A leaf: it imports nothing of the
//! crate.

use std::fmt;
use std::str::FromStr;

/// The bridge's flows: one work queue each, plus the notifier which drains dead letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Flow {
    /// A ticket issued in S-360 is created in TIXnGO (and counts as printed).
    Inject,
    /// A cancelled or invalidated ticket is deleted in TIXnGO.
    Cancel,
    /// A ticket scanned at the gate is marked controlled in TIXnGO.
    Control,
    /// TIXnGO's view of a ticket flows back to S-360.
    Status,
}

impl Flow {
    /// Every flow with a work queue.
    pub const ALL: &'static [Flow] = &[Flow::Inject, Flow::Cancel, Flow::Control, Flow::Status];

    /// Lower-case name used in queue names, routing keys, headers and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            Flow::Inject => "inject",
            Flow::Cancel => "cancel",
            Flow::Control => "control",
            Flow::Status => "status",
        }
    }

    /// Routing key S-360 publishes this flow's messages with.
    pub fn routing_key(self) -> String {
        format!("ticket.{}", self.as_str())
    }
}

impl fmt::Display for Flow {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Flow {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Flow::ALL
            .iter()
            .copied()
            .find(|f| f.as_str() == s)
            .ok_or_else(|| format!("unknown flow {s:?} (expected inject, cancel, control or status)"))
    }
}
