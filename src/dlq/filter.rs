//! Which dead letters a `dlq` command acts on, and the parsers for its time and rate options.

use std::time::Duration;

use chrono::{DateTime, Utc};

use super::letter::DeadLetter;
use super::source::Source;
use crate::config::TopologySettings;
use crate::failure_class::FailureClass;
use crate::flow::Flow;

/// The value `--organization` and `--error-class` take to select messages that name none.
pub const UNKNOWN: &str = "unknown";

/// Every condition must hold; a list holds when it is empty or names the message's value.
#[derive(Debug, Clone, Default)]
pub struct Filter {
    /// Flows whose queues are read (all when empty); also checked against each message's own
    /// flow, which `x-flow` may set to another flow than its queue's.
    pub flows: Vec<Flow>,
    /// Organizations to match; [`UNKNOWN`] matches messages that name none.
    pub organizations: Vec<String>,
    /// Ticket ids to match, exactly.
    pub tickets: Vec<String>,
    /// Error classes to match (`rejected`, `delivery-limit`, ...; [`UNKNOWN`] when underivable).
    pub error_classes: Vec<FailureClass>,
    /// Messages that last failed at or after this time; messages without a failure time never
    /// match a time bound.
    pub since: Option<DateTime<Utc>>,
    /// Messages that last failed before this time.
    pub until: Option<DateTime<Utc>>,
    /// Read only the dlq or only the parked queues (both when `None`).
    pub source: Option<Source>,
}

impl Filter {
    /// The queues to read, flow by flow, dlq before parked.
    pub fn queues(&self, topology: &TopologySettings) -> Vec<(Flow, Source, String)> {
        let flows: &[Flow] = if self.flows.is_empty() {
            Flow::ALL
        } else {
            &self.flows
        };
        let mut queues = Vec::new();
        for &flow in Flow::ALL.iter().filter(|f| flows.contains(f)) {
            for source in Source::ALL {
                if self.source.is_none_or(|s| s == source) {
                    queues.push((flow, source, source.queue(topology, flow)));
                }
            }
        }
        queues
    }

    /// Whether `letter` is selected.
    pub fn matches(&self, letter: &DeadLetter) -> bool {
        let flow_ok = self.flows.is_empty() || self.flows.contains(&letter.flow);
        let organization_ok = self.organizations.is_empty()
            || self
                .organizations
                .iter()
                .any(|o| letter.organization.as_deref().unwrap_or(UNKNOWN) == o);
        let ticket_ok = self.tickets.is_empty()
            || letter
                .ticket_id
                .as_ref()
                .is_some_and(|t| self.tickets.iter().any(|wanted| wanted == t));
        let class_ok = self.error_classes.is_empty() || self.error_classes.contains(&letter.error_class);
        let since_ok = self
            .since
            .is_none_or(|since| letter.failed_at.is_some_and(|at| at >= since));
        let until_ok = self
            .until
            .is_none_or(|until| letter.failed_at.is_some_and(|at| at < until));
        flow_ok && organization_ok && ticket_ok && class_ok && since_ok && until_ok
    }
}

/// `--since`/`--until`: an RFC 3339 time, or a duration ago written the humantime way (`2h`,
/// `30m`, `1day 2h`).
pub fn parse_time(text: &str) -> Result<DateTime<Utc>, String> {
    parse_time_at(text, Utc::now())
}

/// [`parse_time`] with an explicit "now".
pub fn parse_time_at(text: &str, now: DateTime<Utc>) -> Result<DateTime<Utc>, String> {
    if let Ok(at) = DateTime::parse_from_rfc3339(text) {
        return Ok(at.with_timezone(&Utc));
    }
    let ago = humantime::parse_duration(text).map_err(|_| {
        format!("{text:?} is neither an RFC 3339 time (2026-05-01T12:00:00Z) nor a duration ago (2h, 30m)")
    })?;
    chrono::Duration::from_std(ago)
        .ok()
        .and_then(|ago| now.checked_sub_signed(ago))
        .ok_or_else(|| format!("{text:?} reaches too far back"))
}

/// `--rate`: messages per second, written `N`, `N/s`, `N/m` or `N/h` (N may be fractional).
pub fn parse_rate(text: &str) -> Result<Rate, String> {
    let (number, per) = match text.split_once('/') {
        None => (text, 1.0),
        Some((number, "s")) => (number, 1.0),
        Some((number, "m" | "min")) => (number, 60.0),
        Some((number, "h")) => (number, 3600.0),
        Some(_) => return Err(format!("{text:?}: write the rate as N/s, N/m or N/h")),
    };
    let count: f64 = number
        .trim()
        .parse()
        .map_err(|_| format!("{text:?}: {number:?} is not a number"))?;
    let per_second = count / per;
    if !per_second.is_finite() || per_second <= 0.0 {
        return Err(format!("{text:?}: the rate must be above zero"));
    }
    // Below one message a day the interval overflows nothing but is surely a typo.
    if per_second < 1.0 / 86_400.0 {
        return Err(format!("{text:?}: slower than one message a day"));
    }
    Ok(Rate { per_second })
}

/// A replay rate.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Rate {
    /// Messages per second, above zero.
    pub per_second: f64,
}

impl Rate {
    /// Time between two replays.
    pub fn interval(self) -> Duration {
        Duration::from_secs_f64(1.0 / self.per_second)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_are_rfc3339_or_a_duration_ago() {
        let now = DateTime::parse_from_rfc3339("2026-05-01T12:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        assert_eq!(
            parse_time_at("2h", now).unwrap().to_rfc3339(),
            "2026-05-01T10:00:00+00:00"
        );
        assert_eq!(
            parse_time_at("2026-05-01T13:30:00+02:00", now)
                .unwrap()
                .to_rfc3339(),
            "2026-05-01T11:30:00+00:00"
        );
        assert!(parse_time_at("yesterday", now).is_err());
    }

    #[test]
    fn rates_take_a_unit() {
        assert_eq!(parse_rate("10/s").unwrap().per_second, 10.0);
        assert_eq!(parse_rate("5").unwrap().per_second, 5.0);
        assert_eq!(parse_rate("120/m").unwrap().per_second, 2.0);
        assert_eq!(parse_rate("0.5/s").unwrap().interval(), Duration::from_secs(2));
        for bad in ["0/s", "-1", "x/s", "10/d", "inf"] {
            assert!(parse_rate(bad).is_err(), "{bad}");
        }
    }
}
