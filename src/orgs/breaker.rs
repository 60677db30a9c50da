//! A per-organization circuit breaker around TIXnGO: after a run of transient failures, stop
//! calling that organization's TIXnGO for a while (one probe per interval), so an outage does not
//! burn every message's retry attempts and a recovering TIXnGO is not stormed.

use std::sync::Mutex;
use std::time::{Duration, Instant};

use crate::tixngo::error::PauseReason;

/// Breaker states, as exported in metrics (0 closed, 1 open, 2 half-open).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BreakerState {
    /// Calls flow.
    Closed,
    /// Calls are refused until the interval ends.
    Open,
    /// One probe call is out; others wait for its result.
    HalfOpen,
}

#[derive(Debug)]
enum State {
    Closed { failures: u32 },
    Open { until: Instant },
    HalfOpen,
}

/// The breaker of one organization.
#[derive(Debug)]
pub struct Breaker {
    /// Current state; held only for a few instructions, never across an await.
    state: Mutex<State>,
    /// Consecutive transient failures that open the breaker.
    threshold: u32,
    /// How long it stays open before a probe.
    open_for: Duration,
    /// Why the organization is paused, when it was opened by a failure no ticket can cause
    /// (`trip`): read by the `organization_paused` metric; cleared by a success or an ordinary
    /// transient failure.
    paused: Mutex<Option<PauseReason>>,
}

impl Breaker {
    /// A closed breaker.
    pub fn new(threshold: u32, open_for: Duration) -> Self {
        Self {
            state: Mutex::new(State::Closed { failures: 0 }),
            threshold: threshold.max(1),
            open_for,
            paused: Mutex::new(None),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // A panic while holding this lock cannot leave the state inconsistent: recover it.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether a call may go out now. When the open interval has passed, the first caller gets
    /// `true` and becomes the probe.
    pub fn allow(&self) -> bool {
        let mut state = self.lock();
        match *state {
            State::Closed { .. } => true,
            State::Open { until } if Instant::now() >= until => {
                *state = State::HalfOpen;
                true
            }
            State::Open { .. } | State::HalfOpen => false,
        }
    }

    fn paused_lock(&self) -> std::sync::MutexGuard<'_, Option<PauseReason>> {
        // An Option of a Copy enum cannot be left half-written by a panic: recover it.
        self.paused.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// A failure no ticket can cause (`reason`): open at once, whatever the threshold, until a
    /// probe succeeds. Returns true when this paused an organization that was not paused for
    /// this reason already (the caller logs once, not at every failed probe).
    pub fn trip(&self, reason: PauseReason) -> bool {
        *self.lock() = State::Open {
            until: Instant::now() + self.open_for,
        };
        let previous = self.paused_lock().replace(reason);
        previous != Some(reason)
    }

    /// Why the organization is paused, if a [`Breaker::trip`] opened the breaker.
    pub fn pause_reason(&self) -> Option<PauseReason> {
        *self.paused_lock()
    }

    /// TIXnGO answered (even with a permanent error): it is up. Returns true when this closed
    /// an open (or probing) breaker.
    pub fn record_success(&self) -> bool {
        let mut state = self.lock();
        let was_open = !matches!(*state, State::Closed { .. });
        *state = State::Closed { failures: 0 };
        *self.paused_lock() = None;
        was_open
    }

    /// A transient failure. Returns true when this failure opened the breaker.
    pub fn record_failure(&self) -> bool {
        *self.paused_lock() = None;
        let mut state = self.lock();
        match *state {
            State::Closed { failures } if failures + 1 >= self.threshold => {
                *state = State::Open {
                    until: Instant::now() + self.open_for,
                };
                true
            }
            State::Closed { failures } => {
                *state = State::Closed {
                    failures: failures + 1,
                };
                false
            }
            State::HalfOpen | State::Open { .. } => {
                *state = State::Open {
                    until: Instant::now() + self.open_for,
                };
                true
            }
        }
    }

    /// TIXnGO asked for a pause longer than the process waits in place (`Retry-After` above
    /// `worker.max_in_process_wait`): open now, until at least `pause` from now (an open interval
    /// already reaching further is kept). Returns true when the breaker was closed.
    pub fn hold_open(&self, pause: Duration) -> bool {
        let mut state = self.lock();
        let wanted = Instant::now() + pause;
        let was_closed = matches!(*state, State::Closed { .. });
        let until = match *state {
            State::Open { until } => until.max(wanted),
            _ => wanted,
        };
        *state = State::Open { until };
        was_closed
    }

    /// The current state.
    pub fn state(&self) -> BreakerState {
        match *self.lock() {
            State::Closed { .. } => BreakerState::Closed,
            State::Open { .. } => BreakerState::Open,
            State::HalfOpen => BreakerState::HalfOpen,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn opens_after_threshold_and_probes_once() {
        let breaker = Breaker::new(2, Duration::from_millis(20));
        assert!(breaker.allow());
        assert!(!breaker.record_failure());
        assert!(breaker.record_failure());
        assert_eq!(breaker.state(), BreakerState::Open);
        assert!(!breaker.allow());
        std::thread::sleep(Duration::from_millis(30));
        assert!(breaker.allow(), "first caller after the interval is the probe");
        assert!(!breaker.allow(), "only one probe at a time");
        breaker.record_success();
        assert!(breaker.allow());
        assert_eq!(breaker.state(), BreakerState::Closed);
    }

    #[test]
    fn a_trip_opens_at_once_and_logs_once_per_pause() {
        let breaker = Breaker::new(5, Duration::from_millis(10));
        assert!(breaker.trip(PauseReason::AuthRefused));
        assert_eq!(breaker.state(), BreakerState::Open);
        assert_eq!(breaker.pause_reason(), Some(PauseReason::AuthRefused));
        std::thread::sleep(Duration::from_millis(15));
        assert!(breaker.allow(), "a probe after the interval");
        assert!(
            !breaker.trip(PauseReason::AuthRefused),
            "a failed probe is not a new pause"
        );
        std::thread::sleep(Duration::from_millis(15));
        assert!(breaker.allow());
        assert!(breaker.record_success());
        assert_eq!(breaker.pause_reason(), None);
    }

    #[test]
    fn hold_open_keeps_the_longest_pause() {
        let breaker = Breaker::new(5, Duration::from_millis(10));
        assert!(breaker.hold_open(Duration::from_secs(120)));
        assert!(!breaker.allow());
        assert!(!breaker.hold_open(Duration::from_millis(1)), "already open");
        std::thread::sleep(Duration::from_millis(5));
        assert!(!breaker.allow(), "the 120 s pause is kept");
    }

    #[test]
    fn failed_probe_reopens() {
        let breaker = Breaker::new(1, Duration::from_millis(10));
        breaker.record_failure();
        std::thread::sleep(Duration::from_millis(15));
        assert!(breaker.allow());
        assert!(breaker.record_failure());
        assert!(!breaker.allow());
    }
}
