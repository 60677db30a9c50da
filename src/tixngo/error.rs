//! How a TIXnGO failure is classified: retry it (transient) or dead-letter it (permanent).

use std::time::Duration;

/// What the bridge does with a failure.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorClass {
    /// A passing condition (network, timeout, 5xx, 429, ticket not injected yet): retry.
    Transient,
    /// TIXnGO refused the request for good (validation, conflict): dead-letter.
    Permanent,
    /// A failure no ticket can cause and no retry of a ticket can fix (authentication refused,
    /// a revoked key, the configured host unknown to DNS): pause the whole organization (its
    /// breaker opens at once, its messages wait in the first retry tier without using a retry)
    /// until a probe call succeeds. Never a dead letter.
    Pause,
}

/// Why an organization is paused (an [`ErrorClass::Pause`] failure), as the `reason` label of
/// the `organization_paused` metric and in the one log line that announces the pause.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PauseReason {
    /// TIXnGO answered 401 or 403 to a whole call: wrong, rotated or revoked API key.
    AuthRefused,
    /// The configured host name does not resolve.
    Dns,
}

impl PauseReason {
    /// Every reason, for metrics reset at scrape time.
    pub const ALL: [PauseReason; 2] = [PauseReason::AuthRefused, PauseReason::Dns];

    /// Stable label value.
    pub fn as_str(self) -> &'static str {
        match self {
            PauseReason::AuthRefused => "auth-refused",
            PauseReason::Dns => "dns",
        }
    }

    /// What the operator should do, for the log line.
    pub fn remedy(self) -> &'static str {
        match self {
            PauseReason::AuthRefused => {
                "TIXnGO refuses the API key: update the interface's api_key (or TIXnGO's grant)"
            }
            PauseReason::Dns => "the interface url's host does not resolve: check interfaces[].url and DNS",
        }
    }
}

/// A failed call as a whole (nothing in the batch was processed).
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// TCP/TLS connection failed.
    #[error("cannot connect to TIXnGO: {0}")]
    Connect(String),
    /// The configured host name did not resolve: no ticket can cause it, so the organization is
    /// paused ([`ErrorClass::Pause`]) rather than its tickets retried one by one.
    #[error("cannot resolve TIXnGO's host name: {0} (check interfaces[].url)")]
    Dns(String),
    /// The TLS handshake failed: TIXnGO's certificate is not trusted (missing `ca_file`?),
    /// expired or for another name. Retried like a connect error: nothing is dead-lettered for
    /// a problem the operator fixes in the configuration or TIXnGO fixes on its side, and the
    /// organization's breaker opens so the messages wait in the first retry tier meanwhile.
    #[error("TLS handshake with TIXnGO failed: {0} (check interfaces[].ca_file or tixngo.ca_file)")]
    Tls(String),
    /// TIXnGO (or something in front of it) answered a redirect. The bridge never follows one:
    /// the API key and ticket data go to the configured origin and scheme only. Like a TLS
    /// failure this is the operator's to fix (the interface `url`), not the ticket's: retried,
    /// counted by the breaker, never dead-lettered at once.
    #[error(
        "TIXnGO answered HTTP {status} redirecting to {location}; redirects are not followed \
         (the API key goes to the configured URL only): check interfaces[].url"
    )]
    Redirect {
        /// The 3xx status.
        status: u16,
        /// The `Location` header (cut to 256 bytes), or a note that there was none.
        location: String,
    },
    /// No answer within the configured timeout.
    #[error("TIXnGO did not answer within {0:?}")]
    Timeout(Duration),
    /// TIXnGO answered 429.
    #[error("TIXnGO rate limit (429){}", retry_after_text(.retry_after))]
    RateLimited {
        /// `Retry-After`, when TIXnGO sent one.
        retry_after: Option<Duration>,
    },
    /// Any other non-success status.
    #[error("TIXnGO answered HTTP {status}: {body}")]
    Status {
        /// HTTP status.
        status: u16,
        /// Error body, cut to the configured size.
        body: String,
    },
    /// A success status whose answer is not the contract: wrong content type, unparseable JSON,
    /// a result count or ticket id that does not match the batch, an undocumented per-ticket
    /// code. TIXnGO's fault (or a proxy's in front of it), never the ticket's: transient and
    /// counted by the breaker, so a misconfigured proxy answering `200` with HTML does not
    /// dead-letter the traffic. `detail` holds the first bytes of the answer, escaped.
    #[error("unexpected answer from TIXnGO (HTTP {status}): {detail}")]
    Protocol {
        /// HTTP status.
        status: u16,
        /// What did not match docs/tixngo-api.md.
        detail: String,
    },
    /// Another transport failure (body read interrupted, …).
    #[error("TIXnGO request failed: {0}")]
    Transport(String),
}

fn retry_after_text(retry_after: &Option<Duration>) -> String {
    retry_after
        .map(|d| format!(", retry after {d:?}"))
        .unwrap_or_default()
}

impl CallError {
    /// The `status` label of the TIXnGO response metrics: the HTTP status, or what failed.
    pub fn metric_label(&self) -> String {
        match self {
            CallError::Connect(_) => "connect".to_owned(),
            CallError::Dns(_) => "dns".to_owned(),
            CallError::Tls(_) => "tls".to_owned(),
            CallError::Timeout(_) => "timeout".to_owned(),
            CallError::RateLimited { .. } => "429".to_owned(),
            CallError::Redirect { status, .. }
            | CallError::Status { status, .. }
            | CallError::Protocol { status, .. } => status.to_string(),
            CallError::Transport(_) => "transport".to_owned(),
        }
    }

    /// Transient or permanent, per docs/tixngo-api.md.
    pub fn class(&self) -> ErrorClass {
        match self {
            CallError::Connect(_)
            | CallError::Tls(_)
            | CallError::Timeout(_)
            | CallError::RateLimited { .. }
            | CallError::Redirect { .. }
            | CallError::Transport(_)
            // Not the ticket's fault: a proxy or a TIXnGO release broke the contract for every
            // ticket; the breaker stops the traffic while it lasts.
            | CallError::Protocol { .. } => ErrorClass::Transient,
            CallError::Dns(_) => ErrorClass::Pause,
            CallError::Status { status, .. } => status_class(*status),
        }
    }

    /// Why this failure pauses the organization, when it does ([`ErrorClass::Pause`]).
    pub fn pause_reason(&self) -> Option<PauseReason> {
        match self {
            CallError::Dns(_) => Some(PauseReason::Dns),
            CallError::Status { status, .. } if status_class(*status) == ErrorClass::Pause => {
                Some(PauseReason::AuthRefused)
            }
            _ => None,
        }
    }

    /// The HTTP status, when TIXnGO answered.
    pub fn http_status(&self) -> Option<u16> {
        match self {
            CallError::RateLimited { .. } => Some(429),
            CallError::Redirect { status, .. }
            | CallError::Status { status, .. }
            | CallError::Protocol { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// How long TIXnGO asked us to wait, if it did.
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            CallError::RateLimited { retry_after } => *retry_after,
            _ => None,
        }
    }
}

/// Whole-request status classes: 5xx, 408 and 429 pass; 401 and 403 (the key is refused, no
/// ticket can cause that) pause the organization; other 4xx do not pass.
pub fn status_class(status: u16) -> ErrorClass {
    match status {
        408 | 429 | 500..=599 => ErrorClass::Transient,
        401 | 403 => ErrorClass::Pause,
        _ => ErrorClass::Permanent,
    }
}

/// One ticket of a batch that TIXnGO did not accept.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("TIXnGO answered {code} for ticket {ticket_id}: {message}")]
pub struct ItemError {
    /// The ticket.
    pub ticket_id: String,
    /// Per-ticket code (HTTP-like).
    pub code: u16,
    /// Retry or dead-letter.
    pub class: ErrorClass,
    /// TIXnGO's message and field errors, cut to the configured size.
    pub message: String,
}
