//! TIXnGO ticket statuses as the simulator knows them, and the rules between them.
//!
//! This is the simulator's own copy of the status list: it must not share types with the
//! bridge's client, so that a mistake in one cannot hide in the other.

use std::fmt;

use serde::{Deserialize, Serialize};

/// A TIXnGO ticket status (the documented list, see docs/tixngo-api.md).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum Status {
    /// In TIXnGO, not yet in a wallet.
    Injected,
    /// In a spectator's wallet.
    Downloaded,
    /// A guest was named.
    Assigned,
    /// A transfer to another spectator was started.
    PendingTransfer,
    /// A transfer failed.
    FailureTransfer,
    /// A generic failure.
    Failure,
    /// The ticket now belongs to another spectator.
    Transferred,
    /// Barcode shown, activated online.
    OnlineActivated,
    /// Barcode shown, activated offline.
    OfflineActivated,
    /// Barcode shown, activated manually.
    ManualActivated,
    /// Barcode shown, activated over Bluetooth.
    BtActivated,
    /// Barcode shown.
    Activated,
    /// Barcode hidden again.
    Deactivated,
    /// Scanned at the gate.
    Controlled,
    /// Deletion requested, not yet done.
    DeletionPending,
    /// Deleted.
    Deleted,
}

impl Status {
    /// Every status, in declaration order (the order used by statistics).
    pub const ALL: [Status; 16] = [
        Status::Injected,
        Status::Downloaded,
        Status::Assigned,
        Status::PendingTransfer,
        Status::FailureTransfer,
        Status::Failure,
        Status::Transferred,
        Status::OnlineActivated,
        Status::OfflineActivated,
        Status::ManualActivated,
        Status::BtActivated,
        Status::Activated,
        Status::Deactivated,
        Status::Controlled,
        Status::DeletionPending,
        Status::Deleted,
    ];

    /// The wire name, e.g. `PENDING_TRANSFER`.
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Injected => "INJECTED",
            Status::Downloaded => "DOWNLOADED",
            Status::Assigned => "ASSIGNED",
            Status::PendingTransfer => "PENDING_TRANSFER",
            Status::FailureTransfer => "FAILURE_TRANSFER",
            Status::Failure => "FAILURE",
            Status::Transferred => "TRANSFERRED",
            Status::OnlineActivated => "ONLINE_ACTIVATED",
            Status::OfflineActivated => "OFFLINE_ACTIVATED",
            Status::ManualActivated => "MANUAL_ACTIVATED",
            Status::BtActivated => "BT_ACTIVATED",
            Status::Activated => "ACTIVATED",
            Status::Deactivated => "DEACTIVATED",
            Status::Controlled => "CONTROLLED",
            Status::DeletionPending => "DELETION_PENDING",
            Status::Deleted => "DELETED",
        }
    }

    /// Parses a wire name (exact, upper case).
    pub fn parse(name: &str) -> Option<Status> {
        Status::ALL.into_iter().find(|s| s.as_str() == name)
    }

    /// Deleted or on its way to deletion: such a ticket cannot be controlled.
    pub fn is_deleted(self) -> bool {
        matches!(self, Status::DeletionPending | Status::Deleted)
    }

    /// A status that means the ticket is (being) transferred to someone else.
    pub fn is_transfer(self) -> bool {
        matches!(self, Status::PendingTransfer | Status::Transferred)
    }

    /// Position in [`Status::ALL`], used to index per-status counters.
    pub(crate) fn index(self) -> usize {
        self as usize
    }
}

impl fmt::Display for Status {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why a status change was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RuleViolation {
    /// A deleted ticket never changes again.
    #[error("ticket {0} is deleted and cannot change status")]
    Deleted(String),
    /// A ticket pending deletion can only become DELETED.
    #[error("ticket {0} is pending deletion and can only become DELETED")]
    DeletionPending(String),
    /// A ticket that was controlled can no longer be transferred.
    #[error("ticket {0} was controlled and can no longer be transferred")]
    ControlledNoTransfer(String),
    /// The ticket was injected with `transferable: false`.
    #[error("ticket {0} is not transferable")]
    NotTransferable(String),
}

/// Checks whether a ticket in `current` may move to `to`.
///
/// `ever_controlled` is true once the ticket has been CONTROLLED, even if it moved on since;
/// `transferable` is the ticket's `transferable` flag as injected.
pub(crate) fn check_transition(
    ticket_id: &str,
    current: Status,
    to: Status,
    ever_controlled: bool,
    transferable: bool,
) -> Result<(), RuleViolation> {
    if current == Status::Deleted {
        return Err(RuleViolation::Deleted(ticket_id.to_owned()));
    }
    if current == Status::DeletionPending && to != Status::Deleted && to != current {
        return Err(RuleViolation::DeletionPending(ticket_id.to_owned()));
    }
    if to.is_transfer() && (ever_controlled || current == Status::Controlled) {
        return Err(RuleViolation::ControlledNoTransfer(ticket_id.to_owned()));
    }
    if to.is_transfer() && !transferable {
        return Err(RuleViolation::NotTransferable(ticket_id.to_owned()));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wire_names_round_trip() {
        for s in Status::ALL {
            assert_eq!(Status::parse(s.as_str()), Some(s));
            let json = serde_json::to_value(s).unwrap();
            assert_eq!(json, serde_json::Value::String(s.as_str().to_owned()));
        }
        assert_eq!(Status::parse("injected"), None);
    }

    #[test]
    fn rules() {
        use Status::*;
        assert!(check_transition("t", Injected, Downloaded, false, true).is_ok());
        assert!(check_transition("t", Deleted, Downloaded, false, true).is_err());
        assert!(check_transition("t", Deleted, Deleted, false, true).is_err());
        assert!(check_transition("t", DeletionPending, Deleted, false, true).is_ok());
        assert!(check_transition("t", DeletionPending, Activated, false, true).is_err());
        assert!(check_transition("t", Controlled, Transferred, true, true).is_err());
        assert!(check_transition("t", Activated, PendingTransfer, true, true).is_err());
        assert!(check_transition("t", Downloaded, PendingTransfer, false, false).is_err());
        assert!(check_transition("t", Downloaded, FailureTransfer, false, false).is_ok());
        assert!(check_transition("t", Controlled, Deleted, true, true).is_ok());
    }
}
