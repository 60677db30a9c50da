//! Where dead letters wait: a flow's `dlq` and `parked` queues.

use crate::config::TopologySettings;
use crate::flow::Flow;

/// The two queues of a flow that hold dead letters.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, clap::ValueEnum)]
pub enum Source {
    /// `<prefix>.<flow>.dlq`: fresh dead letters, waiting for the notifier.
    Dlq,
    /// `<prefix>.<flow>.parked`: dead letters already notified, kept for replay.
    Parked,
}

impl Source {
    /// Both sources, in the order they are read.
    pub const ALL: [Source; 2] = [Source::Dlq, Source::Parked];

    /// `dlq` or `parked`.
    pub fn as_str(self) -> &'static str {
        match self {
            Source::Dlq => "dlq",
            Source::Parked => "parked",
        }
    }

    /// This source's queue for `flow`.
    pub fn queue(self, topology: &TopologySettings, flow: Flow) -> String {
        match self {
            Source::Dlq => topology.dlq(flow),
            Source::Parked => topology.parked(flow),
        }
    }
}
