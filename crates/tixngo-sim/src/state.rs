//! One tenant's ticket store: tickets, their statuses, the diff log, and the rules applied by
//! injection, cancellation, control and spectator-side transitions.
//!
//! Everything here is synchronous and runs under the tenant's mutex: no I/O, no awaiting.

use std::collections::HashMap;

use chrono::{DateTime, SecondsFormat, Utc};
use serde::{Serialize, Serializer};
use serde_json::Value;

use super::stats::{CallCounts, Kind, SideEffects};
use super::status::{RuleViolation, Status, check_transition};
use super::validate::{Checked, FieldError, NewTicket};

/// Serializes timestamps as RFC 3339 with microseconds and `Z`.
pub(crate) mod ts {
    use super::*;

    pub(crate) fn format(t: &DateTime<Utc>) -> String {
        t.to_rfc3339_opts(SecondsFormat::Micros, true)
    }

    pub(crate) fn micros<S: Serializer>(t: &DateTime<Utc>, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format(t))
    }

    pub(crate) fn micros_opt<S: Serializer>(t: &Option<DateTime<Utc>>, s: S) -> Result<S::Ok, S::Error> {
        match t {
            Some(t) => s.serialize_str(&format(t)),
            None => s.serialize_none(),
        }
    }
}

/// One entry of a ticket's status history.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct HistoryEntry {
    /// The status reached.
    pub status: Status,
    /// When it was reached.
    #[serde(serialize_with = "ts::micros")]
    pub at: DateTime<Utc>,
}

/// One record of the diff log: a status transition of one ticket.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ChangeRecord {
    /// The ticket that changed.
    pub ticket_id: String,
    /// Its status before (`null` for the injection).
    pub previous_status: Option<Status>,
    /// Its status after.
    pub status: Status,
    /// When the change happened.
    #[serde(serialize_with = "ts::micros")]
    pub changed_at: DateTime<Utc>,
}

/// What the simulator knows about one ticket id (the admin inspection view).
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct TicketView {
    /// The ticket id.
    pub ticket_id: String,
    /// Current status; `None` when the id was named by calls but never stored.
    pub status: Option<Status>,
    /// The ticket JSON as injected; `None` when never stored.
    pub ticket: Option<Value>,
    /// Request items that named this ticket, per kind (every item, whatever the outcome).
    pub calls: CallCounts,
    /// Real state changes caused by API calls (duplicates do not count).
    pub side_effects: SideEffects,
    /// Arrival of the first request item naming this ticket (any kind, even a failed one).
    #[serde(serialize_with = "ts::micros")]
    pub first_seen_at: DateTime<Utc>,
    /// When the ticket was stored by its injection; `None` when never stored.
    #[serde(serialize_with = "ts::micros_opt")]
    pub created_at: Option<DateTime<Utc>>,
    /// Last status change; `None` when never stored.
    #[serde(serialize_with = "ts::micros_opt")]
    pub updated_at: Option<DateTime<Utc>>,
    /// Every status reached, oldest first.
    pub history: Vec<HistoryEntry>,
    /// The cancellation item that deleted the ticket (reason, showDeletedTicket), if any.
    pub cancellation: Option<Value>,
    /// The control item that last controlled the ticket (controlledAt, gate...), if any.
    pub control: Option<Value>,
}

/// The per-ticket result of a batch call, as sent on the wire.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct ItemResult {
    /// The item's ticket id; `null` when the item has none (string).
    pub ticket_id: Option<String>,
    /// HTTP-like outcome code for this item.
    pub code: u16,
    /// The ticket's status after the call, when it exists.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<Status>,
    /// Human-readable explanation for non-success codes.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
    /// Field problems of a 422.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub errors: Option<Vec<FieldError>>,
}

impl ItemResult {
    fn ok(ticket_id: String, code: u16, status: Status) -> Self {
        ItemResult {
            ticket_id: Some(ticket_id),
            code,
            status: Some(status),
            message: None,
            errors: None,
        }
    }

    fn fail(ticket_id: Option<String>, code: u16, status: Option<Status>, message: String) -> Self {
        ItemResult {
            ticket_id,
            code,
            status,
            message: Some(message),
            errors: None,
        }
    }

    fn invalid(ticket_id: Option<String>, errors: Vec<FieldError>) -> Self {
        ItemResult {
            ticket_id,
            code: 422,
            status: None,
            message: Some("invalid item".to_owned()),
            errors: Some(errors),
        }
    }
}

/// The answer to a single-ticket status read.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct StatusView {
    /// The ticket id.
    pub ticket_id: String,
    /// Current status.
    pub status: Status,
    /// Last status change.
    #[serde(serialize_with = "ts::micros")]
    pub updated_at: DateTime<Utc>,
    /// Every status reached, oldest first.
    pub history: Vec<HistoryEntry>,
}

/// The outcome of a successful spectator-side transition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Transition {
    /// Status before.
    pub previous_status: Status,
    /// Status now.
    pub status: Status,
    /// False when the ticket already had that status (nothing recorded).
    pub changed: bool,
}

/// Why a transition was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TransitionError {
    /// No such tenant.
    #[error("unknown tenant {0}")]
    UnknownTenant(String),
    /// No such ticket in the tenant.
    #[error("unknown ticket {0}")]
    UnknownTicket(String),
    /// A status rule forbids it.
    #[error(transparent)]
    Rule(#[from] RuleViolation),
}

/// A stored ticket.
struct Record {
    /// The ticket JSON as injected (idempotency compares it whole).
    ticket: Value,
    /// The ticket's `transferable` flag.
    transferable: bool,
    /// Current status.
    status: Status,
    /// Set once the ticket has been CONTROLLED: it can then never be transferred.
    ever_controlled: bool,
    /// When the injection stored it.
    created_at: DateTime<Utc>,
    /// Last status change.
    updated_at: DateTime<Utc>,
    /// Every status reached.
    history: Vec<HistoryEntry>,
    /// The cancellation item that deleted it.
    cancellation: Option<Value>,
    /// The control item that last controlled it.
    control: Option<Value>,
}

/// Everything known about one ticket id, stored or not.
struct Entry {
    /// First request item naming it.
    first_seen_at: DateTime<Utc>,
    /// Items naming it, per kind.
    calls: CallCounts,
    /// Real state changes caused by API calls.
    side_effects: SideEffects,
    /// The stored ticket, once injected.
    record: Option<Record>,
}

/// One tenant's tickets and diff log.
pub(crate) struct Store {
    /// Every ticket id seen, by id.
    entries: HashMap<String, Entry>,
    /// The diff log; a pagination key is an index into it.
    changes: Vec<ChangeRecord>,
    /// Stored tickets per status, indexed by [`Status::index`].
    counts: [u64; Status::ALL.len()],
}

/// A page of the diff log.
pub(crate) struct DiffPage {
    /// The changes on this page, oldest first.
    pub changes: Vec<ChangeRecord>,
    /// Key of the next page.
    pub next: usize,
    /// Whether more changes follow.
    pub has_more: bool,
}

impl Store {
    pub(crate) fn new() -> Self {
        Store {
            entries: HashMap::new(),
            changes: Vec::new(),
            counts: [0; Status::ALL.len()],
        }
    }

    fn entry<'a>(entries: &'a mut HashMap<String, Entry>, id: &str, now: DateTime<Utc>) -> &'a mut Entry {
        entries.entry(id.to_owned()).or_insert_with(|| Entry {
            first_seen_at: now,
            calls: CallCounts::default(),
            side_effects: SideEffects::default(),
            record: None,
        })
    }

    /// Counts an item naming `id` and returns its entry.
    fn note<'a>(
        entries: &'a mut HashMap<String, Entry>,
        id: &str,
        kind: Kind,
        now: DateTime<Utc>,
    ) -> &'a mut Entry {
        let entry = Self::entry(entries, id, now);
        entry.calls.add(kind);
        entry
    }

    /// Moves a stored ticket to `to`, recording history, counts and a change record.
    fn set_status(
        changes: &mut Vec<ChangeRecord>,
        counts: &mut [u64; Status::ALL.len()],
        id: &str,
        record: &mut Record,
        to: Status,
        now: DateTime<Utc>,
    ) {
        let from = record.status;
        counts[from.index()] = counts[from.index()].saturating_sub(1);
        counts[to.index()] += 1;
        record.status = to;
        record.updated_at = now;
        record.ever_controlled |= to == Status::Controlled;
        record.history.push(HistoryEntry { status: to, at: now });
        changes.push(ChangeRecord {
            ticket_id: id.to_owned(),
            previous_status: Some(from),
            status: to,
            changed_at: now,
        });
    }

    /// Applies one injection item.
    pub(crate) fn inject(&mut self, item: Checked<NewTicket>, now: DateTime<Utc>) -> ItemResult {
        let (id, new) = match item {
            Checked::Invalid { ticket_id, errors } => {
                if let Some(id) = &ticket_id {
                    Self::note(&mut self.entries, id, Kind::Inject, now);
                }
                return ItemResult::invalid(ticket_id, errors);
            }
            Checked::Valid { ticket_id, data } => (ticket_id, data),
        };
        let entry = Self::note(&mut self.entries, &id, Kind::Inject, now);
        match &entry.record {
            Some(r) if r.ticket == new.value => ItemResult::ok(id, 200, r.status),
            Some(r) => {
                let msg = format!("ticket {id} already exists with different content");
                ItemResult::fail(Some(id), 409, Some(r.status), msg)
            }
            None => {
                entry.record = Some(Record {
                    ticket: new.value,
                    transferable: new.transferable,
                    status: Status::Injected,
                    ever_controlled: false,
                    created_at: now,
                    updated_at: now,
                    history: vec![HistoryEntry {
                        status: Status::Injected,
                        at: now,
                    }],
                    cancellation: None,
                    control: None,
                });
                entry.side_effects.created += 1;
                self.counts[Status::Injected.index()] += 1;
                self.changes.push(ChangeRecord {
                    ticket_id: id.clone(),
                    previous_status: None,
                    status: Status::Injected,
                    changed_at: now,
                });
                ItemResult::ok(id, 201, Status::Injected)
            }
        }
    }

    /// Applies one cancellation item: any status but DELETED becomes DELETED.
    pub(crate) fn cancel(&mut self, item: Checked<Value>, now: DateTime<Utc>) -> ItemResult {
        let (id, data) = match item {
            Checked::Invalid { ticket_id, errors } => {
                if let Some(id) = &ticket_id {
                    Self::note(&mut self.entries, id, Kind::Cancel, now);
                }
                return ItemResult::invalid(ticket_id, errors);
            }
            Checked::Valid { ticket_id, data } => (ticket_id, data),
        };
        let entry = Self::note(&mut self.entries, &id, Kind::Cancel, now);
        let Some(record) = entry.record.as_mut() else {
            let msg = format!("ticket {id} not found");
            return ItemResult::fail(Some(id), 404, None, msg);
        };
        if record.status != Status::Deleted {
            Self::set_status(
                &mut self.changes,
                &mut self.counts,
                &id,
                record,
                Status::Deleted,
                now,
            );
            record.cancellation = Some(data);
            entry.side_effects.deleted += 1;
        }
        ItemResult::ok(id, 200, Status::Deleted)
    }

    /// Applies one control item.
    pub(crate) fn control(&mut self, item: Checked<Value>, now: DateTime<Utc>) -> ItemResult {
        let (id, data) = match item {
            Checked::Invalid { ticket_id, errors } => {
                if let Some(id) = &ticket_id {
                    Self::note(&mut self.entries, id, Kind::Control, now);
                }
                return ItemResult::invalid(ticket_id, errors);
            }
            Checked::Valid { ticket_id, data } => (ticket_id, data),
        };
        let entry = Self::note(&mut self.entries, &id, Kind::Control, now);
        let Some(record) = entry.record.as_mut() else {
            let msg = format!("ticket {id} not found");
            return ItemResult::fail(Some(id), 404, None, msg);
        };
        if record.status.is_deleted() {
            let msg = format!("ticket {id} is deleted and cannot be controlled");
            return ItemResult::fail(Some(id), 409, Some(record.status), msg);
        }
        if record.status != Status::Controlled {
            Self::set_status(
                &mut self.changes,
                &mut self.counts,
                &id,
                record,
                Status::Controlled,
                now,
            );
            record.control = Some(data);
            entry.side_effects.controlled += 1;
        }
        ItemResult::ok(id, 200, Status::Controlled)
    }

    /// Reads one ticket's status (counts the call).
    pub(crate) fn status(&mut self, id: &str, now: DateTime<Utc>) -> Option<StatusView> {
        let entry = Self::note(&mut self.entries, id, Kind::Status, now);
        let r = entry.record.as_ref()?;
        Some(StatusView {
            ticket_id: id.to_owned(),
            status: r.status,
            updated_at: r.updated_at,
            history: r.history.clone(),
        })
    }

    /// A page of the diff log from `from` (an index); `None` when `from` is past the end.
    pub(crate) fn diff(&self, from: usize, limit: usize) -> Option<DiffPage> {
        let rest = self.changes.get(from..)?;
        let page = &rest[..rest.len().min(limit)];
        Some(DiffPage {
            changes: page.to_vec(),
            next: from + page.len(),
            has_more: rest.len() > page.len(),
        })
    }

    /// A spectator-side (or back-office) status change.
    pub(crate) fn transition(
        &mut self,
        id: &str,
        to: Status,
        now: DateTime<Utc>,
    ) -> Result<Transition, TransitionError> {
        let record = self
            .entries
            .get_mut(id)
            .and_then(|e| e.record.as_mut())
            .ok_or_else(|| TransitionError::UnknownTicket(id.to_owned()))?;
        let from = record.status;
        check_transition(id, from, to, record.ever_controlled, record.transferable)?;
        if from == to {
            return Ok(Transition {
                previous_status: from,
                status: to,
                changed: false,
            });
        }
        Self::set_status(&mut self.changes, &mut self.counts, id, record, to, now);
        Ok(Transition {
            previous_status: from,
            status: to,
            changed: true,
        })
    }

    /// The inspection view of one ticket id.
    pub(crate) fn view(&self, id: &str) -> Option<TicketView> {
        let e = self.entries.get(id)?;
        let r = e.record.as_ref();
        Some(TicketView {
            ticket_id: id.to_owned(),
            status: r.map(|r| r.status),
            ticket: r.map(|r| r.ticket.clone()),
            calls: e.calls,
            side_effects: e.side_effects,
            first_seen_at: e.first_seen_at,
            created_at: r.map(|r| r.created_at),
            updated_at: r.map(|r| r.updated_at),
            history: r.map(|r| r.history.clone()).unwrap_or_default(),
            cancellation: r.and_then(|r| r.cancellation.clone()),
            control: r.and_then(|r| r.control.clone()),
        })
    }

    /// Ids of stored tickets (sorted).
    pub(crate) fn ticket_ids(&self) -> Vec<String> {
        let mut ids: Vec<String> = self
            .entries
            .iter()
            .filter(|(_, e)| e.record.is_some())
            .map(|(id, _)| id.clone())
            .collect();
        ids.sort();
        ids
    }

    /// Stored tickets per status.
    pub(crate) fn counts(&self) -> &[u64; Status::ALL.len()] {
        &self.counts
    }

    /// Number of change records.
    pub(crate) fn change_count(&self) -> usize {
        self.changes.len()
    }

    /// A copy of the change records from `from`.
    pub(crate) fn changes_from(&self, from: usize) -> Vec<ChangeRecord> {
        self.changes.get(from..).map(<[_]>::to_vec).unwrap_or_default()
    }
}
