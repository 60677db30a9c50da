//! The one vocabulary of failure classes: what the engine writes in `x-error-class`, what the
//! outcome events, the notifier's digests, the metrics and every `dlq` command say and filter by.
//! A leaf: it imports nothing of the crate.

use std::fmt;
use std::str::FromStr;

/// Why a message failed, as written in `x-error-class` and shown to operators.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum FailureClass {
    /// The message cannot be read or validated (dead-lettered at once).
    InvalidMessage,
    /// TIXnGO refused the ticket for good (dead-lettered at once).
    Rejected,
    /// A passing failure: the message waits in a retry tier. Never a final class: a message
    /// carrying it in a dead-letter queue was between retries when the broker dead-lettered it.
    Transient,
    /// Transient failures outlasted every retry tier.
    RetriesExhausted,
    /// The broker dead-lettered it after too many deliveries (its worker kept crashing).
    DeliveryLimit,
    /// The broker dead-lettered it because a TTL expired outside a retry tier.
    BrokerExpired,
    /// The broker dead-lettered it because a queue was over its length limit.
    BrokerMaxlen,
    /// A consumer other than the bridge rejected it without requeueing.
    BrokerRejected,
    /// Nothing (or nothing known) says why: a message the bridge did not write.
    Unknown,
}

impl FailureClass {
    /// Every class, in the order operators see them.
    pub const ALL: [FailureClass; 9] = [
        FailureClass::InvalidMessage,
        FailureClass::Rejected,
        FailureClass::Transient,
        FailureClass::RetriesExhausted,
        FailureClass::DeliveryLimit,
        FailureClass::BrokerExpired,
        FailureClass::BrokerMaxlen,
        FailureClass::BrokerRejected,
        FailureClass::Unknown,
    ];

    /// The header, metric-label and command-line form (`invalid-message`, …).
    pub fn as_str(self) -> &'static str {
        match self {
            FailureClass::InvalidMessage => "invalid-message",
            FailureClass::Rejected => "rejected",
            FailureClass::Transient => "transient",
            FailureClass::RetriesExhausted => "retries-exhausted",
            FailureClass::DeliveryLimit => "delivery-limit",
            FailureClass::BrokerExpired => "broker-expired",
            FailureClass::BrokerMaxlen => "broker-maxlen",
            FailureClass::BrokerRejected => "broker-rejected",
            FailureClass::Unknown => "unknown",
        }
    }

    /// The class of a dead letter, from the bridge's `x-error-class` (`bridge`) and the reason
    /// of the broker's latest dead-lettering (`x-death`, else `x-first-death-reason`). The
    /// bridge's own class wins, except `transient` (or none): such a message was between retries
    /// when the broker dead-lettered it, so the broker's reason is the real one. The engine, the
    /// notifier and `dlq` all classify with this one function.
    pub fn of_dead_letter(bridge: Option<&str>, broker_reason: Option<&str>) -> FailureClass {
        let bridge = bridge.map(|b| b.parse().unwrap_or(FailureClass::Unknown));
        match (bridge, broker_reason) {
            (Some(class), _) if class != FailureClass::Transient => class,
            (_, Some(reason)) => FailureClass::of_broker_reason(reason),
            (Some(transient), None) => transient,
            (None, None) => FailureClass::Unknown,
        }
    }

    /// The class for RabbitMQ's dead-letter reason (`delivery_limit`, `expired`, `maxlen`,
    /// `rejected`).
    pub fn of_broker_reason(reason: &str) -> FailureClass {
        match reason {
            "delivery_limit" => FailureClass::DeliveryLimit,
            "expired" => FailureClass::BrokerExpired,
            "maxlen" => FailureClass::BrokerMaxlen,
            "rejected" => FailureClass::BrokerRejected,
            _ => FailureClass::Unknown,
        }
    }
}

impl fmt::Display for FailureClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for FailureClass {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        FailureClass::ALL
            .iter()
            .copied()
            .find(|c| c.as_str() == s)
            .ok_or_else(|| {
                let names: Vec<&str> = FailureClass::ALL.iter().map(|c| c.as_str()).collect();
                format!("unknown error class {s:?} (expected one of {})", names.join(", "))
            })
    }
}

#[cfg(test)]
mod tests {
    use super::FailureClass::*;
    use super::*;

    #[test]
    fn one_classifier_for_every_reader() {
        assert_eq!(FailureClass::of_dead_letter(Some("rejected"), None), Rejected);
        assert_eq!(
            FailureClass::of_dead_letter(Some("rejected"), Some("delivery_limit")),
            Rejected
        );
        // Between retries when the broker gave up on it: the broker's reason is the class (the
        // notifier used to e-mail these as `transient`, which `dlq --error-class` never matched).
        assert_eq!(
            FailureClass::of_dead_letter(Some("transient"), Some("delivery_limit")),
            DeliveryLimit
        );
        assert_eq!(
            FailureClass::of_dead_letter(None, Some("delivery_limit")),
            DeliveryLimit
        );
        assert_eq!(FailureClass::of_dead_letter(None, Some("expired")), BrokerExpired);
        assert_eq!(FailureClass::of_dead_letter(Some("made-up"), None), Unknown);
        assert_eq!(FailureClass::of_dead_letter(None, None), Unknown);
        for class in FailureClass::ALL {
            assert_eq!(class.as_str().parse::<FailureClass>(), Ok(class));
        }
    }
}
