//! Prometheus metrics: one registry per running bridge (no process-global state, so tests that
//! run several bridges in one process each read their own figures).
//!
//! Label values come only from configuration or from our own code (flow names, error classes,
//! organization codes that are configured): never from a message field, so a hostile message
//! cannot blow up the number of series.

use std::sync::Arc;
use std::time::Duration;

use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{Histogram, exponential_buckets};
use prometheus_client::registry::Registry;

use crate::orgs::Organizations;
use crate::orgs::breaker::BreakerState;
use crate::tixngo::error::PauseReason;

/// The organization label of a message whose organization is not configured (or unreadable).
pub const UNKNOWN_ORGANIZATION: &str = "unknown";

/// How a message left the bridge.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Outcome {
    /// TIXnGO took it (or it was already so); the outcome event was published.
    Succeeded,
    /// Sent to a delayed-retry tier after a transient failure.
    Retried,
    /// Parked in the first tier because the organization's breaker was open.
    Deferred,
    /// Sent to the dead-letter queue.
    DeadLettered,
    /// Could not be republished; left to the broker for redelivery.
    Requeued,
}

impl Outcome {
    fn as_str(self) -> &'static str {
        match self {
            Outcome::Succeeded => "succeeded",
            Outcome::Retried => "retried",
            Outcome::Deferred => "deferred",
            Outcome::DeadLettered => "dead_lettered",
            Outcome::Requeued => "requeued",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct MessageLabels {
    flow: String,
    organization: String,
    outcome: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct CallLabels {
    organization: String,
    call: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ResponseLabels {
    organization: String,
    call: String,
    status: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TierLabels {
    flow: String,
    tier: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct ClassLabels {
    flow: String,
    class: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct FlowLabels {
    flow: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OrganizationLabels {
    organization: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RefusedLabels {
    /// The organization whose digest it was (`unknown` for the fallback group).
    organization: String,
    /// `true` for a `5xx` (fix the address), `false` for a passing refusal.
    permanent: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RoutingKeyLabels {
    /// The event's routing key (its type: `inject.succeeded`, `status.changed` …).
    routing_key: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct PausedLabels {
    /// The paused organization.
    organization: String,
    /// `PauseReason::as_str`: what the operator must fix.
    reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct TransitionLabels {
    organization: String,
    to: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct OutcomeLabels {
    outcome: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Hash, EncodeLabelSet)]
struct RoleLabels {
    role: String,
}

type LatencyFamily = Family<CallLabels, Histogram, fn() -> Histogram>;

fn latency_histogram() -> Histogram {
    // 1 ms to ~33 s.
    Histogram::new(exponential_buckets(0.001, 2.0, 16))
}

/// Every metric the bridge exports. Cheap to clone pieces of; share it as `Arc<Metrics>`.
#[derive(Debug)]
pub struct Metrics {
    /// What `/metrics` encodes; holds the families below.
    registry: Registry,
    /// Messages settled, by flow, organization and outcome: the throughput and error-rate view.
    messages: Family<MessageLabels, Counter>,
    /// TIXnGO call latency, by organization and call: shows a slow TIXnGO before it times out.
    call_latency: LatencyFamily,
    /// TIXnGO answers by HTTP status (or `timeout`/`connect`/`transport`): tells 4xx from 5xx.
    responses: Family<ResponseLabels, Counter>,
    /// Messages sent to each delayed-retry tier: a growing last tier means dead letters soon.
    retries: Family<TierLabels, Counter>,
    /// Dead letters by flow and error class: what the notifier's e-mails are about.
    dead_letters: Family<ClassLabels, Counter>,
    /// Messages held by this process per flow: at `worker.prefetch` the broker delivers no more.
    in_flight: Family<FlowLabels, Gauge>,
    /// Breaker state per organization (0 closed, 1 open, 2 half-open), read at scrape time.
    breaker_state: Family<OrganizationLabels, Gauge>,
    /// Breaker transitions per organization: an outage shows as `open` then `closed`.
    breaker_transitions: Family<TransitionLabels, Counter>,
    /// 1 while an organization is paused for a failure no ticket can cause (its API key refused,
    /// its host unknown to DNS), by reason; read at scrape time: the alert that says why.
    organization_paused: Family<PausedLabels, Gauge>,
    /// Events for S-360 no queue was bound for, kept in `…events.unrouted`, by routing key: a
    /// missing S-360 consumer or binding (alert on any increase).
    events_unrouted: Family<RoutingKeyLabels, Counter>,
    /// Digest recipients the SMTP server refused, by organization and whether for good
    /// (`5xx`): an address to fix in `notification_emails`.
    email_recipients_refused: Family<RefusedLabels, Counter>,
    /// Notification e-mails by outcome (`sent`, `failed`).
    emails: Family<OutcomeLabels, Counter>,
    /// Broker sessions re-established after a failure, by role (flow, poller, notifier).
    reconnects: Family<RoleLabels, Counter>,
    /// Status changes read from TIXnGO's diff and published to S-360.
    status_changes: Family<OrganizationLabels, Counter>,
    /// The organizations whose breakers are reported.
    organizations: Arc<Organizations>,
}

impl Metrics {
    /// A fresh registry; breaker states are read from `organizations` at each scrape.
    pub fn new(organizations: Arc<Organizations>) -> Self {
        let mut registry = Registry::with_prefix("tixngo_bridge");
        let messages = Family::default();
        let call_latency = LatencyFamily::new_with_constructor(latency_histogram as fn() -> Histogram);
        let responses = Family::default();
        let retries = Family::default();
        let dead_letters = Family::default();
        let in_flight = Family::default();
        let breaker_state = Family::default();
        let breaker_transitions = Family::default();
        let organization_paused = Family::default();
        let events_unrouted = Family::default();
        let email_recipients_refused = Family::default();
        let emails = Family::default();
        let reconnects = Family::default();
        let status_changes = Family::default();
        registry.register(
            "messages",
            "Messages settled, by flow, organization and outcome",
            messages.clone(),
        );
        registry.register(
            "tixngo_call_duration_seconds",
            "TIXnGO call latency, by organization and call",
            call_latency.clone(),
        );
        registry.register(
            "tixngo_responses",
            "TIXnGO answers by organization, call and HTTP status (or timeout/connect/transport)",
            responses.clone(),
        );
        registry.register(
            "retries",
            "Messages sent to a delayed-retry tier",
            retries.clone(),
        );
        registry.register(
            "dead_letters",
            "Messages dead-lettered, by flow and error class",
            dead_letters.clone(),
        );
        registry.register(
            "in_flight",
            "Messages held by this process, per flow",
            in_flight.clone(),
        );
        registry.register(
            "breaker_state",
            "Circuit breaker per organization: 0 closed, 1 open, 2 half-open",
            breaker_state.clone(),
        );
        registry.register(
            "breaker_transitions",
            "Circuit breaker transitions per organization",
            breaker_transitions.clone(),
        );
        registry.register(
            "organization_paused",
            "1 while an organization is paused for a failure no ticket can cause (auth-refused, dns)",
            organization_paused.clone(),
        );
        registry.register(
            "events_unrouted",
            "Events for S-360 that no queue was bound for, kept in the unrouted-events queue",
            events_unrouted.clone(),
        );
        registry.register(
            "email_recipients_refused",
            "Digest recipients the SMTP server refused, by organization and permanence",
            email_recipients_refused.clone(),
        );
        registry.register("emails", "Notification e-mails by outcome", emails.clone());
        registry.register(
            "reconnects",
            "Broker sessions re-established after a failure, by role",
            reconnects.clone(),
        );
        registry.register(
            "status_changes",
            "TIXnGO status changes published to S-360",
            status_changes.clone(),
        );
        Self {
            registry,
            messages,
            call_latency,
            responses,
            retries,
            dead_letters,
            in_flight,
            breaker_state,
            breaker_transitions,
            organization_paused,
            events_unrouted,
            email_recipients_refused,
            emails,
            reconnects,
            status_changes,
            organizations,
        }
    }

    /// The text exposition format, for `/metrics`.
    pub fn encode(&self) -> String {
        for organization in self.organizations.iter() {
            let state = match organization.breaker.state() {
                BreakerState::Closed => 0,
                BreakerState::Open => 1,
                BreakerState::HalfOpen => 2,
            };
            self.breaker_state
                .get_or_create(&OrganizationLabels {
                    organization: organization.code().to_owned(),
                })
                .set(state);
            let paused = organization.breaker.pause_reason();
            for reason in PauseReason::ALL {
                self.organization_paused
                    .get_or_create(&PausedLabels {
                        organization: organization.code().to_owned(),
                        reason: reason.as_str().to_owned(),
                    })
                    .set(i64::from(paused == Some(reason)));
            }
        }
        let mut text = String::new();
        // Writing into a String cannot fail.
        let _ = prometheus_client::encoding::text::encode(&mut text, &self.registry);
        text
    }

    /// A message settled.
    pub fn message(&self, flow: &str, organization: Option<&str>, outcome: Outcome) {
        let organization = self.organization_label(organization);
        self.messages
            .get_or_create(&MessageLabels {
                flow: flow.to_owned(),
                organization,
                outcome: outcome.as_str().to_owned(),
            })
            .inc();
    }

    /// A message went to a delayed-retry tier.
    pub fn retry(&self, flow: &str, tier: Duration) {
        self.retries
            .get_or_create(&TierLabels {
                flow: flow.to_owned(),
                tier: crate::broker::topology::tier_label(tier),
            })
            .inc();
    }

    /// A message was dead-lettered.
    pub fn dead_letter(&self, flow: &str, class: &str) {
        self.dead_letters
            .get_or_create(&ClassLabels {
                flow: flow.to_owned(),
                class: class.to_owned(),
            })
            .inc();
    }

    /// One TIXnGO call finished after `elapsed` with `status` (HTTP code or failure kind).
    pub fn tixngo_call(&self, organization: &str, call: &str, elapsed: Duration, status: &str) {
        self.call_latency
            .get_or_create(&CallLabels {
                organization: organization.to_owned(),
                call: call.to_owned(),
            })
            .observe(elapsed.as_secs_f64());
        self.responses
            .get_or_create(&ResponseLabels {
                organization: organization.to_owned(),
                call: call.to_owned(),
                status: status.to_owned(),
            })
            .inc();
    }

    /// Messages this process holds for `flow`, changed by `delta`.
    pub fn in_flight(&self, flow: &str, delta: i64) {
        self.in_flight
            .get_or_create(&FlowLabels {
                flow: flow.to_owned(),
            })
            .inc_by(delta);
    }

    /// The SMTP server refused one recipient of a digest.
    pub fn email_recipient_refused(&self, organization: &str, permanent: bool) {
        self.email_recipients_refused
            .get_or_create(&RefusedLabels {
                organization: organization.to_owned(),
                permanent: permanent.to_string(),
            })
            .inc();
    }

    /// An event for S-360 found no queue and was kept in the unrouted-events queue.
    pub fn event_unrouted(&self, routing_key: &str) {
        self.events_unrouted
            .get_or_create(&RoutingKeyLabels {
                routing_key: routing_key.to_owned(),
            })
            .inc();
    }

    /// An organization's breaker moved to `to` (`open` or `closed`).
    pub fn breaker_transition(&self, organization: &str, to: &str) {
        self.breaker_transitions
            .get_or_create(&TransitionLabels {
                organization: organization.to_owned(),
                to: to.to_owned(),
            })
            .inc();
    }

    /// A notification e-mail was sent (`sent`) or refused (`failed`).
    pub fn email(&self, outcome: &str) {
        self.emails
            .get_or_create(&OutcomeLabels {
                outcome: outcome.to_owned(),
            })
            .inc();
    }

    /// A broker session for `role` was re-established.
    pub fn reconnect(&self, role: &str) {
        self.reconnects
            .get_or_create(&RoleLabels {
                role: role.to_owned(),
            })
            .inc();
    }

    /// `count` status changes of `organization` were published.
    pub fn status_changes(&self, organization: &str, count: u64) {
        self.status_changes
            .get_or_create(&OrganizationLabels {
                organization: organization.to_owned(),
            })
            .inc_by(count);
    }

    fn organization_label(&self, organization: Option<&str>) -> String {
        match organization {
            Some(code) if self.organizations.get(code).is_some() => code.to_owned(),
            _ => UNKNOWN_ORGANIZATION.to_owned(),
        }
    }
}
