//! The HTTP client for one organization's TIXnGO interface. All interfaces share one reqwest
//! connection pool; each client adds its own base URL and API key.

use std::fmt;
use std::path::Path;
use std::time::Duration;

use reqwest::StatusCode;
use reqwest::header::{HeaderName, HeaderValue, RETRY_AFTER};
use secrecy::ExposeSecret;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use url::Url;

pub use super::document::TicketDocument;
use super::error::{CallError, ErrorClass, ItemError, status_class};
use crate::config::{Interface, TixngoSettings};
use crate::text::truncate;

/// Builds a connection pool trusting the system roots only.
pub fn http_client(settings: &TixngoSettings) -> reqwest::Result<reqwest::Client> {
    builder(settings).build()
}

/// Builds a connection pool trusting the system roots plus, when given, the certificates of the
/// PEM file `ca_file`. Interfaces with the same `ca_file` share one pool.
pub fn http_client_with_ca(
    settings: &TixngoSettings,
    ca_file: Option<&Path>,
) -> Result<reqwest::Client, HttpClientError> {
    let mut builder = builder(settings);
    if let Some(path) = ca_file {
        let pem = crate::tls::read_file(path)?;
        crate::tls::parse_certificates(path, &pem)?;
        let certificates = reqwest::Certificate::from_pem_bundle(&pem).map_err(HttpClientError::Build)?;
        builder = builder.tls_certs_merge(certificates);
    }
    builder.build().map_err(HttpClientError::Build)
}

fn builder(settings: &TixngoSettings) -> reqwest::ClientBuilder {
    reqwest::Client::builder()
        // Never follow a redirect: the API key and the ticket go to the configured origin and
        // scheme only. A 3xx is answered as `CallError::Redirect`, naming `Location`.
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(settings.connect_timeout)
        .timeout(settings.request_timeout)
        .pool_max_idle_per_host(256)
        .user_agent(concat!("tixngo-bridge/", env!("CARGO_PKG_VERSION")))
}

/// Why a TIXnGO connection pool could not be built.
#[derive(Debug, thiserror::Error)]
pub enum HttpClientError {
    /// The CA file cannot be used (it changed since the configuration check).
    #[error(transparent)]
    CaFile(#[from] crate::tls::TlsFileError),
    /// reqwest refused the set-up (TLS back-end).
    #[error("cannot build the TIXnGO HTTP client")]
    Build(#[source] reqwest::Error),
}

/// A ticket TIXnGO accepted (or already had: idempotent repeats count as success).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ItemOk {
    /// The ticket.
    pub ticket_id: String,
    /// TIXnGO's status of the ticket after the call, when it said.
    pub status: Option<String>,
    /// True when TIXnGO already had this exact state (a repeat): no new side effect.
    pub unchanged: bool,
}

/// Per-ticket outcome of a batch call.
pub type ItemResult = Result<ItemOk, ItemError>;

/// One cancellation.
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct CancelItem {
    /// The ticket.
    pub ticket_id: String,
    /// Why S-360 cancelled (or invalidated) it.
    pub reason: String,
    /// Whether the spectator still sees the deleted ticket in the wallet.
    pub show_deleted_ticket: bool,
}

/// One control (gate scan).
#[derive(Debug, Clone, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct ControlItem {
    /// The ticket.
    pub ticket_id: String,
    /// When it was scanned (RFC 3339).
    pub controlled_at: String,
    /// Gate, when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub gate: Option<String>,
    /// Control point (device or lane), when known.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub control_point: Option<String>,
}

/// One ticket's state as TIXnGO reports it.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct TicketState {
    /// The ticket.
    pub ticket_id: String,
    /// Current TIXnGO status.
    pub status: String,
    /// When it last changed (RFC 3339), if TIXnGO says.
    #[serde(default)]
    pub updated_at: Option<String>,
}

/// One change from the diff endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DiffChange {
    /// The ticket.
    pub ticket_id: String,
    /// Status before the change (`None` for the injection itself).
    #[serde(default)]
    pub previous_status: Option<String>,
    /// Status after the change.
    pub status: String,
    /// When it changed (RFC 3339).
    #[serde(default)]
    pub changed_at: Option<String>,
}

/// A page of the diff endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DiffPage {
    /// Changes since the key, oldest first.
    pub changes: Vec<DiffChange>,
    /// Key to ask with next time.
    pub next_page_key: String,
    /// More changes are waiting beyond this page.
    #[serde(default)]
    pub has_more: bool,
}

/// Which batch call a per-ticket code came from: 404 means "not injected yet" (transient) for
/// cancel and control, but is unexpected for an injection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BatchKind {
    Inject,
    Cancel,
    Control,
}

#[derive(Deserialize)]
struct BatchResponse {
    results: Vec<WireItem>,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct WireItem {
    ticket_id: String,
    code: u16,
    #[serde(default)]
    status: Option<String>,
    #[serde(default)]
    message: Option<String>,
    #[serde(default)]
    errors: Vec<WireFieldError>,
}

#[derive(Deserialize)]
struct WireFieldError {
    #[serde(default)]
    field: String,
    #[serde(default)]
    message: String,
}

/// The client of one organization's interface.
#[derive(Clone)]
pub struct TixngoClient {
    /// Shared connection pool.
    http: reqwest::Client,
    /// The organization, for logs.
    organization: String,
    /// `…/organizer/tickets`, ending without a slash.
    base: Url,
    /// Header carrying the key.
    api_key_header: HeaderName,
    /// The key, marked sensitive so no HTTP library prints it.
    api_key: HeaderValue,
    /// Cap on error text kept from TIXnGO's answers.
    max_error_body: usize,
    /// Whole-request timeout, to report in errors.
    timeout: Duration,
}

impl fmt::Debug for TixngoClient {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TixngoClient")
            .field("organization", &self.organization)
            .field("base", &self.base.as_str())
            .field("api_key_header", &self.api_key_header)
            .field("api_key", &"***")
            .finish()
    }
}

/// An interface the client cannot be built for (the configuration check normally prevents it).
#[derive(Debug, thiserror::Error)]
#[error("interface {organization}: {problem}")]
pub struct ClientBuildError {
    /// Organization.
    pub organization: String,
    /// What is wrong.
    pub problem: &'static str,
}

/// The body of an inject call: the documents, already serialized, joined into
/// `{"tickets":[…]}` without parsing them again. Public for the hot-path micro-benchmarks.
pub fn inject_body(tickets: &[&TicketDocument]) -> String {
    let mut body = String::with_capacity(16 + tickets.iter().map(|t| t.json.get().len() + 1).sum::<usize>());
    body.push_str("{\"tickets\":[");
    for (i, ticket) in tickets.iter().enumerate() {
        if i > 0 {
            body.push(',');
        }
        body.push_str(ticket.json.get());
    }
    body.push_str("]}");
    body
}

impl TixngoClient {
    /// A client for `interface`, sharing `http`'s pool.
    pub fn new(
        http: reqwest::Client,
        interface: &Interface,
        settings: &TixngoSettings,
    ) -> Result<Self, ClientBuildError> {
        let error = |problem| ClientBuildError {
            organization: interface.organization.clone(),
            problem,
        };
        let api_key_header = HeaderName::from_bytes(interface.api_key_header.as_bytes())
            .map_err(|_| error("api_key_header is not a valid header name"))?;
        let mut api_key = HeaderValue::from_str(interface.api_key.expose_secret())
            .map_err(|_| error("api_key cannot be sent in an HTTP header"))?;
        api_key.set_sensitive(true);
        Ok(Self {
            http,
            organization: interface.organization.clone(),
            base: interface.url.clone(),
            api_key_header,
            api_key,
            max_error_body: settings.max_error_body_bytes,
            timeout: settings.request_timeout,
        })
    }

    /// The organization this client serves.
    pub fn organization(&self) -> &str {
        &self.organization
    }

    /// Creates tickets from their TIXnGO documents (already mapped or rendered).
    pub async fn inject(&self, tickets: &[&TicketDocument]) -> Result<Vec<ItemResult>, CallError> {
        let body = inject_body(tickets);
        let ids: Vec<Option<String>> = tickets.iter().map(|t| Some(t.ticket_id.clone())).collect();
        let response: BatchResponse = self.post(self.base.clone(), body).await?;
        self.items(BatchKind::Inject, response, &ids)
    }

    /// Deletes tickets.
    pub async fn cancel(&self, items: &[&CancelItem]) -> Result<Vec<ItemResult>, CallError> {
        let body = serde_json::json!({ "cancellations": items }).to_string();
        let ids: Vec<Option<String>> = items.iter().map(|i| Some(i.ticket_id.clone())).collect();
        let response: BatchResponse = self.post(self.path(&["cancellations"]), body).await?;
        self.items(BatchKind::Cancel, response, &ids)
    }

    /// Marks tickets controlled.
    pub async fn control(&self, items: &[&ControlItem]) -> Result<Vec<ItemResult>, CallError> {
        let body = serde_json::json!({ "controls": items }).to_string();
        let ids: Vec<Option<String>> = items.iter().map(|i| Some(i.ticket_id.clone())).collect();
        let response: BatchResponse = self.post(self.path(&["controls"]), body).await?;
        self.items(BatchKind::Control, response, &ids)
    }

    /// One ticket's current state; `None` when TIXnGO does not know the ticket.
    pub async fn status(&self, ticket_id: &str) -> Result<Option<TicketState>, CallError> {
        let request = self.http.get(self.path(&[ticket_id]));
        let response = self.send(request).await?;
        if response.status() == StatusCode::NOT_FOUND {
            return Ok(None);
        }
        self.read(response).await.map(Some)
    }

    /// Changes since `pagination_key` (`None`: from the beginning), at most `limit`.
    pub async fn diff(&self, pagination_key: Option<&str>, limit: u32) -> Result<DiffPage, CallError> {
        let mut url = self.path(&["diff"]);
        {
            let mut query = url.query_pairs_mut();
            if let Some(key) = pagination_key {
                query.append_pair("paginationKey", key);
            }
            query.append_pair("limit", &limit.to_string());
        }
        let response = self.send(self.http.get(url)).await?;
        self.read(response).await
    }

    fn path(&self, segments: &[&str]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        url
    }

    async fn post<T: DeserializeOwned>(&self, url: Url, body: String) -> Result<T, CallError> {
        let request = self
            .http
            .post(url)
            .header(reqwest::header::CONTENT_TYPE, "application/json")
            .body(body);
        let response = self.send(request).await?;
        self.read(response).await
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Result<reqwest::Response, CallError> {
        let response = request
            .header(self.api_key_header.clone(), self.api_key.clone())
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| self.transport_error(e))?;
        let status = response.status();
        if status.is_success() || status == StatusCode::NOT_FOUND {
            return Ok(response);
        }
        if status.is_redirection() {
            let location = response
                .headers()
                .get(reqwest::header::LOCATION)
                .map(|v| truncate(&String::from_utf8_lossy(v.as_bytes()), 256))
                .unwrap_or_else(|| "(no Location header)".to_owned());
            return Err(CallError::Redirect {
                status: status.as_u16(),
                location,
            });
        }
        if status == StatusCode::TOO_MANY_REQUESTS {
            let retry_after = response
                .headers()
                .get(RETRY_AFTER)
                .and_then(|v| v.to_str().ok())
                .and_then(|v| parse_retry_after(v, std::time::SystemTime::now()));
            return Err(CallError::RateLimited { retry_after });
        }
        let body = response.text().await.unwrap_or_default();
        Err(CallError::Status {
            status: status.as_u16(),
            body: truncate(&body, self.max_error_body),
        })
    }

    async fn read<T: DeserializeOwned>(&self, response: reqwest::Response) -> Result<T, CallError> {
        let status = response.status().as_u16();
        let content_type = response
            .headers()
            .get(reqwest::header::CONTENT_TYPE)
            .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned());
        let bytes = response.bytes().await.map_err(|e| self.transport_error(e))?;
        if status == 404 {
            return Err(CallError::Status {
                status,
                body: truncate(&String::from_utf8_lossy(&bytes), self.max_error_body),
            });
        }
        // TIXnGO answers JSON; a `200` with an HTML page is a proxy (or a captive portal), not
        // TIXnGO, whatever the body happens to parse as.
        if !content_type.as_deref().is_some_and(is_json_media_type) {
            return Err(CallError::Protocol {
                status,
                detail: format!(
                    "content type {} is not application/json; the answer begins {}",
                    content_type
                        .as_deref()
                        .map_or_else(|| "(none)".to_owned(), |c| format!("{:?}", truncate(c, 64))),
                    first_bytes(&bytes)
                ),
            });
        }
        serde_json::from_slice(&bytes).map_err(|e| CallError::Protocol {
            status,
            detail: format!("{e}; the answer begins {}", first_bytes(&bytes)),
        })
    }

    fn transport_error(&self, error: reqwest::Error) -> CallError {
        let error = error.without_url();
        if error.is_timeout() {
            CallError::Timeout(self.timeout)
        } else if let Some(tls) = crate::tls::tls_failure(&error) {
            CallError::Tls(tls)
        } else if error.is_connect() {
            let chain = crate::telemetry::chain(&error);
            // hyper-util's connector reports a failed resolution as "dns error"; it has no public
            // type to match on.
            if chain.contains("dns error") {
                CallError::Dns(chain)
            } else {
                CallError::Connect(chain)
            }
        } else {
            CallError::Transport(crate::telemetry::chain(&error))
        }
    }

    fn items(
        &self,
        kind: BatchKind,
        response: BatchResponse,
        ids: &[Option<String>],
    ) -> Result<Vec<ItemResult>, CallError> {
        if response.results.len() != ids.len() {
            return Err(CallError::Protocol {
                status: 200,
                detail: format!("{} results for {} tickets", response.results.len(), ids.len()),
            });
        }
        if let Some(item) = response
            .results
            .iter()
            .find(|item| !documented_code(kind, item.code))
        {
            return Err(CallError::Protocol {
                status: 200,
                detail: format!(
                    "per-ticket code {} for {} is not documented for this call",
                    item.code,
                    truncate(&item.ticket_id, 64)
                ),
            });
        }
        let mut out = Vec::with_capacity(ids.len());
        for (item, expected) in response.results.into_iter().zip(ids) {
            if let Some(expected) = expected
                && *expected != item.ticket_id
            {
                return Err(CallError::Protocol {
                    status: 200,
                    detail: format!("result for {} where {} was expected", item.ticket_id, expected),
                });
            }
            out.push(self.item(kind, item));
        }
        Ok(out)
    }

    fn item(&self, kind: BatchKind, item: WireItem) -> ItemResult {
        match item.code {
            200..=299 => Ok(ItemOk {
                unchanged: item.code == 200 && kind == BatchKind::Inject,
                ticket_id: item.ticket_id,
                status: item.status,
            }),
            code => {
                let class = match (kind, code) {
                    (BatchKind::Cancel | BatchKind::Control, 404) => ErrorClass::Transient,
                    _ => status_class(code),
                };
                let mut message = item
                    .message
                    .unwrap_or_else(|| default_message(kind, code).to_owned());
                if !item.errors.is_empty() {
                    let fields: Vec<String> = item
                        .errors
                        .iter()
                        .map(|e| format!("{}: {}", e.field, e.message))
                        .collect();
                    message = format!("{message} ({})", fields.join("; "));
                }
                Err(ItemError {
                    ticket_id: item.ticket_id,
                    code,
                    class,
                    message: truncate(&message, self.max_error_body),
                })
            }
        }
    }
}

/// The per-ticket codes docs/tixngo-api.md documents for each call (section 9, "Per item").
/// Anything else is a contract TIXnGO broke, not a verdict on the ticket.
fn documented_code(kind: BatchKind, code: u16) -> bool {
    match kind {
        BatchKind::Inject => matches!(code, 200 | 201 | 409 | 422),
        BatchKind::Cancel => matches!(code, 200 | 404 | 422),
        BatchKind::Control => matches!(code, 200 | 404 | 409 | 422),
    }
}

/// `application/json`, with parameters (`; charset=utf-8`) or as a `+json` suffix type.
fn is_json_media_type(value: &str) -> bool {
    let essence = value
        .split(';')
        .next()
        .unwrap_or_default()
        .trim()
        .to_ascii_lowercase();
    essence == "application/json" || (essence.starts_with("application/") && essence.ends_with("+json"))
}

/// The first bytes of an answer the bridge cannot read, for the error message and the log:
/// enough to recognise an HTML error page or a proxy's banner, escaped so that control
/// characters cannot reach a terminal.
fn first_bytes(bytes: &[u8]) -> String {
    const FIRST: usize = 120;
    let head = &bytes[..bytes.len().min(FIRST)];
    let text: String = String::from_utf8_lossy(head).escape_debug().collect();
    if bytes.len() > FIRST {
        format!("\"{text}\" … ({} bytes)", bytes.len())
    } else {
        format!("\"{text}\"")
    }
}

/// `Retry-After` as HTTP defines it (RFC 9110 section 10.2.3): delta-seconds or an HTTP-date
/// (IMF-fixdate, and the obsolete RFC 850 and asctime forms), relative to `now`. A date in the
/// past means "now" (zero); anything else unreadable is ignored (`None`).
pub fn parse_retry_after(value: &str, now: std::time::SystemTime) -> Option<Duration> {
    let value = value.trim();
    if !value.is_empty() && value.bytes().all(|b| b.is_ascii_digit()) {
        // Too many digits for a u64 is still "a very long time".
        return Some(Duration::from_secs(value.parse::<u64>().unwrap_or(u64::MAX)));
    }
    let at = httpdate::parse_http_date(value).ok()?;
    Some(at.duration_since(now).unwrap_or_default())
}

fn default_message(kind: BatchKind, code: u16) -> &'static str {
    match (kind, code) {
        (BatchKind::Inject, 409) => "ticket already exists in TIXnGO with different content",
        (_, 422) => "TIXnGO rejected the ticket as invalid",
        (BatchKind::Cancel | BatchKind::Control, 404) => "ticket not found in TIXnGO (not injected yet?)",
        (BatchKind::Control, 409) => "ticket is deleted in TIXnGO and cannot be controlled",
        _ => "TIXnGO refused the ticket",
    }
}

#[cfg(test)]
mod tests {
    use super::parse_retry_after;
    use std::time::{Duration, UNIX_EPOCH};

    #[test]
    fn retry_after_is_delta_seconds_or_an_http_date() {
        // Sun, 06 Nov 1994 08:49:37 GMT
        let now = UNIX_EPOCH + Duration::from_secs(784_111_777);
        assert_eq!(parse_retry_after("120", now), Some(Duration::from_secs(120)));
        assert_eq!(parse_retry_after(" 0 ", now), Some(Duration::ZERO));
        assert_eq!(
            parse_retry_after("99999999999999999999999", now),
            Some(Duration::from_secs(u64::MAX))
        );
        for date in [
            "Sun, 06 Nov 1994 08:51:37 GMT",
            "Sunday, 06-Nov-94 08:51:37 GMT",
            "Sun Nov  6 08:51:37 1994",
        ] {
            assert_eq!(
                parse_retry_after(date, now),
                Some(Duration::from_secs(120)),
                "{date}"
            );
        }
        assert_eq!(
            parse_retry_after("Sun, 06 Nov 1994 08:00:00 GMT", now),
            Some(Duration::ZERO),
            "a date in the past means now"
        );
        for junk in ["", "-5", "1.5", "soon", "Sun, 06 Nov 1994"] {
            assert_eq!(parse_retry_after(junk, now), None, "{junk:?}");
        }
    }
}
