//! TIXnGO ticket statuses and the S-360 status each maps to (SecuTix's documented mapping).

use serde::Serialize;

/// The ticket status S-360 knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum S360Status {
    /// INJECTED … any *_ACTIVATED: the ticket is printed.
    Printed,
    /// CONTROLLED.
    Controlled,
    /// DELETION_PENDING or DELETED: cancelled (or invalidated) in S-360.
    Cancelled,
    /// A status SecuTix does not document; S-360 keeps its own.
    Unknown,
}

impl S360Status {
    /// Maps a TIXnGO status.
    pub fn from_tixngo(status: &str) -> Self {
        match status {
            "CONTROLLED" => S360Status::Controlled,
            "DELETION_PENDING" | "DELETED" => S360Status::Cancelled,
            "INJECTED" | "DOWNLOADED" | "ASSIGNED" | "PENDING_TRANSFER" | "FAILURE_TRANSFER" | "FAILURE"
            | "TRANSFERRED" | "DEACTIVATED" => S360Status::Printed,
            s if s.ends_with("ACTIVATED") => S360Status::Printed,
            _ => S360Status::Unknown,
        }
    }

    /// Name used in events.
    pub fn as_str(self) -> &'static str {
        match self {
            S360Status::Printed => "Printed",
            S360Status::Controlled => "Controlled",
            S360Status::Cancelled => "Cancelled",
            S360Status::Unknown => "Unknown",
        }
    }
}
