//! Reconciliation of a chaos run and its report (text table or JSON).

use std::collections::{BTreeMap, HashMap, HashSet};

use chrono::{DateTime, Utc};
use serde::Serialize;

use super::ChaosArgs;
use super::plan::{Follow, Plan, PlannedTicket};
use tixngo_sim::Simulator;

/// Most ticket ids listed per problem in the report.
const LISTED: usize = 20;

/// One dead letter read from the run's DLQs.
#[derive(Debug, Clone, Serialize)]
pub struct Letter {
    /// The flow whose DLQ held it.
    pub flow: String,
    /// The S-360 message id it carries (empty when none).
    pub message_id: String,
    /// Its `x-error-class`.
    pub error_class: String,
}

/// What the reconciliation needs.
pub(crate) struct Inputs<'a> {
    /// The options.
    pub args: &'a ChaosArgs,
    /// The seed used.
    pub seed: u64,
    /// What was published.
    pub plan: &'a Plan,
    /// TIXnGO's state.
    pub sim: &'a Simulator,
    /// Outcome events per (routing key, ticket id).
    pub events: &'a HashMap<(String, String), u32>,
    /// Dead letters.
    pub letters: &'a [Letter],
    /// Whether everything settled before the deadline.
    pub complete: bool,
    /// SIGKILLs sent.
    pub kills: usize,
    /// Bridge processes that ended on their own.
    pub unexpected_exits: usize,
    /// Broker faults carried out.
    pub broker_faults: usize,
    /// Broker faults that failed.
    pub broker_errors: Vec<String>,
    /// Bridge reconnects (from their logs).
    pub bridge_reconnects: u64,
    /// Harness reconnects (publisher and event consumer).
    pub harness_reconnects: u64,
    /// Messages the harness sent twice because their confirm was lost.
    pub republished: usize,
    /// Messages confirmed.
    pub confirmed: usize,
}

/// Whether a ticket is in its expected final state in TIXnGO and S-360 heard every success.
pub(crate) fn ticket_ok(
    ticket: &PlannedTicket,
    sim: &Simulator,
    events: &HashMap<(String, String), u32>,
) -> bool {
    let seen = |kind: &str| events.contains_key(&(kind.to_owned(), ticket.ticket_id.clone()));
    let follow_seen = match ticket.follow {
        Follow::None => true,
        Follow::Control => seen("control.succeeded"),
        Follow::Cancel => seen("cancel.succeeded"),
    };
    seen("inject.succeeded")
        && follow_seen
        && super::expected_status(ticket.follow, sim.status(&ticket.organization, &ticket.ticket_id))
}

/// The figures of one run.
#[derive(Debug, Clone, Serialize)]
pub struct Report {
    /// Run id (names of its queues and exchanges).
    pub run: String,
    /// When it started.
    pub started_at: DateTime<Utc>,
    /// Seed of the mix and fault choices (`--seed` repeats the mix).
    pub seed: u64,
    /// Wall time, in seconds.
    pub duration_s: f64,
    /// Zero lost, zero duplicated side effects, dead letters exactly the malformed messages.
    pub passed: bool,
    /// Whether every ticket settled before `--deadline-secs`.
    pub complete: bool,
    /// Well-formed tickets sent.
    pub tickets: usize,
    /// Tickets by expected final state.
    pub mix: BTreeMap<String, usize>,
    /// Organizations.
    pub organizations: usize,
    /// Messages published (tickets' injections and follow-ups, and the malformed ones).
    pub messages: usize,
    /// Messages the broker confirmed.
    pub confirmed: usize,
    /// Messages the harness sent again after losing their confirm (S-360 duplicates).
    pub republished: usize,
    /// Tickets in their expected final state in TIXnGO with every success event seen.
    pub in_expected_state: usize,
    /// Tickets that are not.
    pub lost: usize,
    /// Some lost ticket ids.
    pub lost_ids: Vec<String>,
    /// Side effects TIXnGO applied more than once (creations, deletions, controls).
    pub duplicated_side_effects: u64,
    /// Some ticket ids with a duplicated side effect.
    pub duplicated_ids: Vec<String>,
    /// Outcome events S-360 received more than once for one ticket and kind (allowed:
    /// at-least-once; docs/reliability.md).
    pub repeated_outcome_events: u64,
    /// Malformed messages published.
    pub malformed: usize,
    /// Distinct messages in the DLQs.
    pub dead_letters: usize,
    /// Dead letters that are not malformed messages.
    pub unexpected_dead_letters: usize,
    /// Some of them: flow, message id, error class.
    pub unexpected: Vec<Letter>,
    /// Malformed messages with no dead letter.
    pub missing_dead_letters: usize,
    /// Extra copies of a dead letter (a kill between its confirm and the ack).
    pub repeated_dead_letters: usize,
    /// Dead letters by error class.
    pub dead_letters_by_class: BTreeMap<String, usize>,
    /// Bridge processes.
    pub processes: usize,
    /// SIGKILLs of bridge processes.
    pub kills: usize,
    /// Bridge processes that exited on their own (e.g. broker down at start-up), restarted.
    pub unexpected_exits: usize,
    /// Broker fault kind.
    pub broker_fault_kind: String,
    /// Broker faults carried out.
    pub broker_faults: usize,
    /// Broker faults that failed (the command's or API's error).
    pub broker_fault_errors: Vec<String>,
    /// Bridge reconnects to the broker (from their logs).
    pub bridge_reconnects: u64,
    /// Harness reconnects (publisher and event consumer).
    pub harness_reconnects: u64,
    /// TIXnGO calls received by the simulator.
    pub tixngo_calls: u64,
    /// TIXnGO calls answered 503 by the error rate.
    pub tixngo_errors: u64,
    /// TIXnGO calls that hung past the bridges' timeout.
    pub tixngo_timeouts: u64,
    /// TIXnGO calls answered 503 during the outage.
    pub tixngo_outage_calls: u64,
    /// Length of the outage, in seconds.
    pub outage_secs: u64,
    /// Where the bridges' logs were kept (only when the run failed).
    pub log_dir: Option<String>,
}

/// Compares the plan with TIXnGO's state, the outcome events and the dead letters.
pub(crate) fn reconcile(inputs: Inputs<'_>) -> Report {
    let Inputs {
        args,
        plan,
        sim,
        events,
        letters,
        ..
    } = inputs;
    let mut lost_ids = Vec::new();
    let mut duplicated_ids = Vec::new();
    let mut lost = 0;
    let mut duplicated = 0;
    let mut mix: BTreeMap<String, usize> = BTreeMap::new();
    for ticket in &plan.tickets {
        let name = match ticket.follow {
            Follow::None => "injected",
            Follow::Control => "injected, controlled",
            Follow::Cancel => "injected, cancelled",
        };
        *mix.entry(name.to_owned()).or_default() += 1;
        if !ticket_ok(ticket, sim, events) {
            lost += 1;
            if lost_ids.len() < LISTED {
                lost_ids.push(ticket.ticket_id.clone());
            }
        }
        if let Some(view) = sim.ticket(&ticket.organization, &ticket.ticket_id) {
            let effects = view.side_effects;
            let extra = effects.created.saturating_sub(1)
                + effects.deleted.saturating_sub(1)
                + effects.controlled.saturating_sub(1);
            if extra > 0 {
                duplicated += extra;
                if duplicated_ids.len() < LISTED {
                    duplicated_ids.push(ticket.ticket_id.clone());
                }
            }
        }
    }
    let repeated_outcome_events = events.values().map(|n| u64::from(n.saturating_sub(1))).sum();
    let malformed: HashSet<&str> = plan.malformed_ids.iter().map(String::as_str).collect();
    let mut distinct: HashSet<&str> = HashSet::new();
    let mut unexpected = Vec::new();
    let mut repeated = 0;
    let mut by_class: BTreeMap<String, usize> = BTreeMap::new();
    for letter in letters {
        *by_class.entry(letter.error_class.clone()).or_default() += 1;
        if !malformed.contains(letter.message_id.as_str()) {
            unexpected.push(letter.clone());
        } else if !distinct.insert(letter.message_id.as_str()) {
            repeated += 1;
        }
    }
    let missing = malformed.len() - distinct.len();
    let unexpected_count = unexpected.len();
    unexpected.truncate(LISTED);
    let stats = sim.stats();
    let passed = lost == 0 && duplicated == 0 && unexpected_count == 0 && missing == 0;
    Report {
        run: String::new(),
        started_at: Utc::now(),
        seed: inputs.seed,
        duration_s: 0.0,
        passed,
        complete: inputs.complete,
        tickets: plan.tickets.len(),
        mix,
        organizations: plan.organizations.len(),
        messages: plan.messages.len(),
        confirmed: inputs.confirmed,
        republished: inputs.republished,
        in_expected_state: plan.tickets.len() - lost,
        lost,
        lost_ids,
        duplicated_side_effects: duplicated,
        duplicated_ids,
        repeated_outcome_events,
        malformed: plan.malformed_ids.len(),
        dead_letters: distinct.len() + unexpected_count,
        unexpected_dead_letters: unexpected_count,
        unexpected,
        missing_dead_letters: missing,
        repeated_dead_letters: repeated,
        dead_letters_by_class: by_class,
        processes: args.processes,
        kills: inputs.kills,
        unexpected_exits: inputs.unexpected_exits,
        broker_fault_kind: format!("{:?}", args.broker_faults).to_lowercase(),
        broker_faults: inputs.broker_faults,
        broker_fault_errors: inputs.broker_errors,
        bridge_reconnects: inputs.bridge_reconnects,
        harness_reconnects: inputs.harness_reconnects,
        tixngo_calls: stats.requests.total,
        tixngo_errors: stats.faults_injected.error,
        tixngo_timeouts: stats.faults_injected.timeout,
        tixngo_outage_calls: stats.faults_injected.outage,
        outage_secs: args.outage_secs,
        log_dir: None,
    }
}

impl Report {
    /// The report as a table.
    pub fn text(&self) -> String {
        let mut out = String::new();
        let mut row = |name: &str, value: String| out.push_str(&format!("{name:<34} {value}\n"));
        row(
            "run",
            format!(
                "{} (seed {}, started {})",
                self.run,
                self.seed,
                self.started_at.to_rfc3339()
            ),
        );
        row("result", if self.passed { "PASSED" } else { "FAILED" }.to_owned());
        row(
            "tickets sent",
            format!("{} across {} organizations", self.tickets, self.organizations),
        );
        for (name, n) in &self.mix {
            row(&format!("  {name}"), n.to_string());
        }
        row(
            "messages published",
            format!(
                "{} ({} sent again by the harness)",
                self.messages, self.republished
            ),
        );
        row("in the expected final state", self.in_expected_state.to_string());
        row("lost", self.lost.to_string());
        row(
            "duplicated side effects",
            self.duplicated_side_effects.to_string(),
        );
        row(
            "repeated outcome events",
            self.repeated_outcome_events.to_string(),
        );
        row(
            "dead letters",
            format!(
                "{} (expected {} malformed; unexpected {}, missing {}, repeated {})",
                self.dead_letters,
                self.malformed,
                self.unexpected_dead_letters,
                self.missing_dead_letters,
                self.repeated_dead_letters
            ),
        );
        row(
            "bridge processes",
            format!(
                "{} ({} SIGKILLed, {} exited on their own; all restarted)",
                self.processes, self.kills, self.unexpected_exits
            ),
        );
        row(
            "broker faults",
            format!("{} × {}", self.broker_faults, self.broker_fault_kind),
        );
        row(
            "reconnects",
            format!(
                "{} bridge, {} harness",
                self.bridge_reconnects, self.harness_reconnects
            ),
        );
        row(
            "TIXnGO calls",
            format!(
                "{} ({} answered 503, {} timed out, {} refused by the {} s outage)",
                self.tixngo_calls,
                self.tixngo_errors,
                self.tixngo_timeouts,
                self.tixngo_outage_calls,
                self.outage_secs
            ),
        );
        row("duration", format!("{:.1} s", self.duration_s));
        if !self.complete {
            row(
                "note",
                "the deadline passed before every ticket settled".to_owned(),
            );
        }
        if !self.lost_ids.is_empty() {
            row("lost (first ids)", self.lost_ids.join(", "));
        }
        if !self.duplicated_ids.is_empty() {
            row("duplicated (first ids)", self.duplicated_ids.join(", "));
        }
        for letter in &self.unexpected {
            row(
                "unexpected dead letter",
                format!("{} {} {}", letter.flow, letter.message_id, letter.error_class),
            );
        }
        for error in &self.broker_fault_errors {
            row("broker fault failed", error.clone());
        }
        if let Some(dir) = &self.log_dir {
            row("bridge logs", dir.clone());
        }
        out
    }
}
