//! Injected faults: latency, 503s, 429s, hanging requests and outages.

use std::time::Duration;

use rand::RngExt;
use serde::{Deserialize, Serialize};

/// Faults applied to tenant API calls (never to `/admin`).
///
/// Set globally or per tenant (a tenant's own faults replace the global ones for that tenant).
/// JSON form (admin API): camelCase members, all optional, unknown members refused.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", default, deny_unknown_fields)]
pub struct Faults {
    /// Delay added before answering, in ms: exercises client timeouts and concurrency.
    pub latency_ms: u64,
    /// When set (and above `latency_ms`), the delay is drawn uniformly from
    /// `latency_ms..=latency_max_ms`, so replies overtake one another.
    pub latency_max_ms: Option<u64>,
    /// Share (0..=1) of calls answered 503 without being applied: the transient-error path.
    pub error_rate: f64,
    /// Share (0..=1) of calls that hang (default 60 s) so the client times out.
    pub timeout_rate: f64,
    /// Share (0..=1) of calls answered 429 with `Retry-After`, without being applied.
    pub rate_limit_rate: f64,
    /// Value of the `Retry-After` header (seconds) on simulated 429s.
    pub retry_after_secs: u64,
    /// When true every call is answered 503: a full outage, to test recovery and retry storms.
    pub outage: bool,
    /// Whether a hanging call is applied before it hangs (true: the client cannot know whether
    /// its call took effect, which is what makes idempotent retries necessary) or not at all
    /// (false: it ends with 504 after the hang).
    pub timeout_applies: bool,
    /// When set every call is answered with this redirect (`3xx` and `Location`), without being
    /// applied: what a moved TIXnGO endpoint or a hostile proxy does. The bridge must not follow
    /// it with the API key (docs/tixngo-api.md, section on redirects).
    pub redirect: Option<RedirectFault>,
}

/// A redirect answered to every call (see [`Faults::redirect`]).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct RedirectFault {
    /// The 3xx status (301, 302, 303, 307, 308).
    pub status: u16,
    /// The `Location` header's value.
    pub location: String,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            latency_ms: 0,
            latency_max_ms: None,
            error_rate: 0.0,
            timeout_rate: 0.0,
            rate_limit_rate: 0.0,
            retry_after_secs: 1,
            outage: false,
            timeout_applies: true,
            redirect: None,
        }
    }
}

/// A fault chosen for one call (besides latency and outage).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Roll {
    /// Answer 429.
    RateLimited,
    /// Answer 503.
    Unavailable,
    /// Hang.
    Timeout,
}

impl Faults {
    /// No faults at all.
    pub fn none() -> Self {
        Faults::default()
    }

    /// Checks the values make sense (rates within 0..=1, latency range ordered).
    pub fn validate(&self) -> Result<(), String> {
        for (name, rate) in [
            ("errorRate", self.error_rate),
            ("timeoutRate", self.timeout_rate),
            ("rateLimitRate", self.rate_limit_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("{name} must be between 0 and 1"));
            }
        }
        if let Some(redirect) = &self.redirect
            && !(300..=399).contains(&redirect.status)
        {
            return Err("redirect.status must be a 3xx status".to_owned());
        }
        if let Some(max) = self.latency_max_ms
            && max < self.latency_ms
        {
            return Err("latencyMaxMs must not be below latencyMs".to_owned());
        }
        Ok(())
    }

    /// The delay to add to one call.
    pub(crate) fn pick_latency(&self) -> Duration {
        let ms = match self.latency_max_ms {
            Some(max) if max > self.latency_ms => rand::rng().random_range(self.latency_ms..=max),
            _ => self.latency_ms,
        };
        Duration::from_millis(ms)
    }

    /// Draws the fault for one call; shares are exact because one draw decides among them.
    pub(crate) fn roll(&self) -> Option<Roll> {
        let total = self.rate_limit_rate + self.error_rate + self.timeout_rate;
        if total <= 0.0 {
            return None;
        }
        let x: f64 = rand::rng().random();
        if x < self.rate_limit_rate {
            Some(Roll::RateLimited)
        } else if x < self.rate_limit_rate + self.error_rate {
            Some(Roll::Unavailable)
        } else if x < total {
            Some(Roll::Timeout)
        } else {
            None
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_defaults_and_validation() {
        let f: Faults = serde_json::from_str(r#"{"errorRate":0.5}"#).unwrap();
        assert_eq!(f.error_rate, 0.5);
        assert_eq!(f.retry_after_secs, 1);
        assert!(f.timeout_applies);
        assert!(serde_json::from_str::<Faults>(r#"{"errorrate":0.5}"#).is_err());
        let bad = Faults {
            error_rate: 1.5,
            ..Faults::none()
        };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn rolls() {
        assert_eq!(Faults::none().roll(), None);
        let all = Faults {
            error_rate: 1.0,
            ..Faults::none()
        };
        assert_eq!(all.roll(), Some(Roll::Unavailable));
        let rl = Faults {
            rate_limit_rate: 1.0,
            ..Faults::none()
        };
        assert_eq!(rl.roll(), Some(Roll::RateLimited));
        let ranged = Faults {
            latency_ms: 5,
            latency_max_ms: Some(10),
            ..Faults::none()
        };
        for _ in 0..100 {
            let d = ranged.pick_latency().as_millis();
            assert!((5..=10).contains(&d));
        }
    }
}
